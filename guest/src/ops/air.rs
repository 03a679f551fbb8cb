//! SORACOM Air (targets `subscriber-metadata` and `userdata`): P11 the SIM's subscriber
//! metadata, P12 its group's userdata. One POST each; the answer is parsed here.

use super::common::Prepared;
use crate::types::bundle::{Bundle, FORMAT_VERSION, SubscriberMetadataBundle, UserdataBundle};
use crate::types::json::{json_object, text_body};
use crate::types::model::{AuthMode, Error, Secret};

/// P11: the subscriber metadata.
pub const SUBSCRIBER_METADATA: &str = "/v1/provisioning/soracom/air/subscriber_metadata";
/// P12: the group's userdata.
pub const USERDATA: &str = "/v1/provisioning/soracom/air/userdata";

/// The parser of P11's answer (`now`: ms since the epoch): the JSON object as sent, with the
/// identifiers a report shows (`imsi`, `msisdn`, `groupId`, `status`) checked.
/// Errors: [`Error::InvalidResponse`] naming `body` or the identifier.
pub fn parse_subscriber_metadata(_: &Prepared, body: &[u8], now: u64) -> Result<Bundle, Error> {
    let bundle = Bundle::SubscriberMetadata(SubscriberMetadataBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        mode: AuthMode::default(),
        metadata: json_object(body)?,
    });
    bundle.validate()?;
    Ok(bundle)
}

/// The parser of P12's answer (`now`: ms since the epoch): the raw text (userdata is not
/// JSON). Errors: [`Error::InvalidResponse`] naming `body` when it is not UTF-8.
pub fn parse_userdata(_: &Prepared, body: &[u8], now: u64) -> Result<Bundle, Error> {
    Ok(Bundle::Userdata(UserdataBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        mode: AuthMode::default(),
        userdata: Secret::new(text_body(body)?.to_string()),
    }))
}
