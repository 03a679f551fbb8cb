//! SIM-mode requests: the body every provisioning call carries (`keyId` plus the request's
//! fields) and its signature with the SIM's CK. Both follow SORACOM's open-source clients
//! (`soracom/endorse-client-go` `endorse/client.go` `PostWithSignature` and
//! `calculateSignature`; `soracom/krypton-client-go` `krypton/operations.go` for the body).

use crate::types::model::{Error, SecretBytes};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Header carrying the request's time: Unix time in milliseconds, decimal ASCII.
pub const TIMESTAMP_HEADER: &str = "x-soracom-timestamp";
/// Header naming the digest algorithm; `SHA-256` is the only one SORACOM's clients use.
pub const ALGORITHM_HEADER: &str = "x-soracom-digest-algorithm";
/// Header carrying the signature: standard base64 (RFC 4648 §4, padded) of the digest.
pub const SIGNATURE_HEADER: &str = "x-soracom-signature";
/// The digest algorithm's name as sent.
pub const ALGORITHM: &str = "SHA-256";

/// The Keys API session a SIM-mode run signs with: the `keyId` the Keys API issued and the CK
/// (16 bytes) that AUTHENTICATE returned for the same challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimKey {
    /// The Keys API's `keyId` (not secret: it goes in every body).
    pub key_id: String,
    /// The SIM's CK for that key agreement (secret: never logged, never in an error).
    pub ck: SecretBytes,
}

/// The signature of one request: standard base64 of SHA-256(`body` ‖ `timestamp` ‖ CK), a
/// plain hash of the concatenation (not an HMAC), over exactly the bytes sent.
pub fn signature(body: &[u8], timestamp: &str, ck: &SecretBytes) -> String {
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(timestamp.as_bytes());
    hasher.update(ck.expose());
    BASE64.encode(hasher.finalize())
}

/// The three signature headers for `body` sent at `unix_ms` (ms since the epoch).
pub fn signature_headers(body: &[u8], unix_ms: u64, ck: &SecretBytes) -> Vec<(String, String)> {
    let timestamp = unix_ms.to_string();
    let signature = signature(body, &timestamp, ck);
    vec![
        (TIMESTAMP_HEADER.to_string(), timestamp),
        (ALGORITHM_HEADER.to_string(), ALGORITHM.to_string()),
        (SIGNATURE_HEADER.to_string(), signature),
    ]
}

/// The SIM-mode body built from a network-mode body (`{}`, `{"requestParameters":{…}}`, or
/// Inventory's `{"endpoint":…,"requestParameters":{…}}`): `keyId` first, then the network
/// body's other top-level fields (Inventory's `endpoint`), then `requestParameters`, `null`
/// when there are none. This is the order and shape of the Go client's request structs
/// (`{"keyId":"…","requestParameters":…}`, Inventory `{"keyId":"…","endpoint":"…",
/// "requestParameters":…}`).
///
/// Errors: [`Error::InvalidRequest`] when `network_body` is not a JSON object (the operations
/// build it, so this is a fault of this component).
pub fn sim_body(key_id: &str, network_body: &[u8]) -> Result<Vec<u8>, Error> {
    let fields: Map<String, Value> = if network_body.is_empty() {
        Map::new()
    } else {
        serde_json::from_slice(network_body).map_err(|_| {
            Error::InvalidRequest("the request body is not a JSON object".to_string())
        })?
    };
    let json = |v: &Value| serde_json::to_string(v).expect("JSON value serializes");
    let mut out = format!("{{\"keyId\":{}", json(&Value::String(key_id.to_string())));
    for (name, value) in fields.iter().filter(|(n, _)| *n != "requestParameters") {
        out.push_str(&format!(
            ",{}:{}",
            json(&Value::String(name.clone())),
            json(value)
        ));
    }
    let params = fields.get("requestParameters").unwrap_or(&Value::Null);
    out.push_str(&format!(",\"requestParameters\":{}}}", json(params)));
    Ok(out.into_bytes())
}
