//! Amazon Cognito (targets `aws-cognito` and `aws-cognito-openid`): P4 temporary AWS
//! credentials, P5 an OpenID token. One POST each; the answer is parsed here.

use super::common::{Prepared, checked_str};
use crate::types::bundle::{AwsCognitoBundle, AwsCognitoOpenidBundle, Bundle, FORMAT_VERSION};
use crate::types::identifiers as id;
use crate::types::json::{json_object, json_type, optional_str, required_str};
use crate::types::model::{AuthMode, Error, Secret};
use crate::types::text::env_value;
use serde_json::{Map, Value};

/// P4: temporary AWS credentials.
pub const CREDENTIALS: &str = "/v1/provisioning/aws/cognito/credentials";
/// P5: an OpenID token.
pub const OPEN_ID_TOKENS: &str = "/v1/provisioning/aws/cognito/open_id_tokens";

/// Cognito credentials are refreshed when less than this is left, ms.
pub const COGNITO_REFRESH_MARGIN_MS: u64 = 5 * 60 * 1000;

/// The parser of P4's answer (`now`: ms since the epoch). Errors: [`Error::InvalidResponse`]
/// naming the field.
pub fn parse_credentials(_: &Prepared, body: &[u8], now: u64) -> Result<Bundle, Error> {
    aws_cognito(&json_object(body)?, now)
}

/// The parser of P5's answer (`now`: ms since the epoch). Errors: [`Error::InvalidResponse`]
/// naming the field.
pub fn parse_open_id_token(_: &Prepared, body: &[u8], now: u64) -> Result<Bundle, Error> {
    aws_cognito_openid(&json_object(body)?, now)
}

/// Epoch values at or above this are milliseconds, below it seconds: 1e11 s is the year 5138,
/// 1e11 ms is 1973, so no real expiry is ambiguous.
const EPOCH_MS_THRESHOLD: u64 = 100_000_000_000;

/// Cognito `expiration` as ms since the epoch. Krypton's Java client reads epoch ms
/// (its `expiration` is a `Long` used as a `Date`); samples show epoch seconds and ISO-8601
/// strings. All three are accepted
/// as the same instant; anything else (0, negative, fractional, other text) is an error, never
/// a default.
pub fn parse_expiration(value: Option<&Value>) -> Result<u64, Error> {
    const FIELD: &str = "credentials.expiration";
    match value {
        None | Some(Value::Null) => Err(Error::invalid(FIELD, "missing")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) | None => Err(Error::invalid(
                FIELD,
                "expected a positive whole number of epoch seconds or milliseconds",
            )),
            Some(v) if v >= EPOCH_MS_THRESHOLD => Ok(v),
            Some(v) => Ok(v * 1000),
        },
        Some(Value::String(s)) => {
            let t = time::OffsetDateTime::parse(
                s.trim(),
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| {
                Error::invalid(
                    FIELD,
                    "expected an ISO-8601 date-time such as 2026-11-29T18:00:00Z",
                )
            })?;
            u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .ok()
                .filter(|&ms| ms > 0)
                .ok_or_else(|| Error::invalid(FIELD, "before the Unix epoch"))
        }
        Some(other) => Err(Error::invalid(
            FIELD,
            format!("expected a number or a string, got {}", json_type(other)),
        )),
    }
}

/// P4: Cognito credentials.
fn aws_cognito(obj: &Map<String, Value>, now: u64) -> Result<Bundle, Error> {
    let creds = match obj.get("credentials") {
        Some(Value::Object(c)) => c,
        None | Some(Value::Null) => return Err(Error::invalid("credentials", "missing")),
        Some(other) => {
            return Err(Error::invalid(
                "credentials",
                format!("expected an object, got {}", json_type(other)),
            ));
        }
    };
    let nested = |field: &str| {
        required_str(creds, field).map_err(|e| match e {
            Error::InvalidResponse { reason, .. } => {
                Error::invalid(&format!("credentials.{field}"), reason)
            }
            other => other,
        })
    };
    let access_key_id = nested("accessKeyId")?;
    id::check(
        "credentials.accessKeyId",
        access_key_id,
        id::aws_access_key_id,
    )?;
    // The secret key and the session token follow no published rule, but they are written to
    // an environment file by the `env` export: one that could never be written is refused now.
    let secret_key = nested("secretKey")?;
    env_value("credentials.secretKey", secret_key)?;
    let session_token = nested("sessionToken")?;
    env_value("credentials.sessionToken", session_token)?;
    let region = optional_str(obj, "region")?;
    if let Some(region) = region {
        id::check("region", region, id::aws_region)?;
    }
    Ok(Bundle::AwsCognito(AwsCognitoBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        mode: AuthMode::default(),
        identity_id: checked_str(obj, "identityId", id::cognito_identity_id)?.to_string(),
        region: region.map(str::to_string),
        access_key_id: access_key_id.to_string(),
        secret_key: Secret::new(secret_key.to_string()),
        session_token: Secret::new(session_token.to_string()),
        expiration_ms: parse_expiration(creds.get("expiration"))?,
    }))
}

/// P5: Cognito OpenID token.
fn aws_cognito_openid(obj: &Map<String, Value>, now: u64) -> Result<Bundle, Error> {
    Ok(Bundle::AwsCognitoOpenid(AwsCognitoOpenidBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        mode: AuthMode::default(),
        region: checked_str(obj, "region", id::aws_region)?.to_string(),
        identity_id: checked_str(obj, "identityId", id::cognito_identity_id)?.to_string(),
        token: Secret::new(required_str(obj, "token")?.to_string()),
    }))
}
