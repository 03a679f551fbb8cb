//! SORACOM Inventory (target `inventory`): P9 the LwM2M bootstrap, with the device's endpoint
//! client name as the required request parameter `endpoint`.

use super::common::{Prepared, checked_str};
use crate::types::bundle::{Bundle, FORMAT_VERSION, InventoryBundle};
use crate::types::identifiers as id;
use crate::types::json::{json_object, optional_str};
use crate::types::model::{Error, ParameterInfo, Secret};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// P9: the LwM2M bootstrap.
pub const BOOTSTRAP: &str = "/v1/provisioning/soracom/inventory/bootstrap";

/// Inventory's one required parameter: the LwM2M endpoint client name (OMA LwM2M 1.1
/// "Endpoint Client Name"), sent at the top level and inside `requestParameters`.
pub const PARAMETERS: &[ParameterInfo] = &[ParameterInfo {
    name: "endpoint",
    description: "the LwM2M endpoint client name the device registers with in SORACOM Inventory",
    example: "demo-gateway",
}];

/// The request parameter `endpoint`, checked ([`id::lwm2m_endpoint_name`]).
/// Errors: [`Error::InvalidRequest`] naming the parameter when it is missing, empty or breaks
/// the rule.
fn endpoint_parameter(params: Option<&Map<String, Value>>) -> Result<String, Error> {
    let endpoint = params
        .and_then(|p| p.get("endpoint"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::InvalidRequest(
                "inventory needs the request parameter `endpoint`: the LwM2M endpoint \
                 client name"
                    .into(),
            )
        })?;
    id::lwm2m_endpoint_name(&endpoint).map_err(|r| {
        Error::InvalidRequest(format!("endpoint is not an LwM2M endpoint name: {r}"))
    })?;
    Ok(endpoint)
}

/// Check `endpoint` and build the body: SORACOM's Go client sends `endpoint` at the top level
/// and keeps it inside `requestParameters` too; so does this one.
/// Errors: [`Error::InvalidRequest`] naming the parameter when it is missing, empty or not
/// an LwM2M endpoint name ([`id::lwm2m_endpoint_name`]).
pub fn prepare(params: Option<Map<String, Value>>) -> Result<Prepared, Error> {
    let endpoint = endpoint_parameter(params.as_ref())?;
    let mut body = Map::new();
    body.insert("endpoint".into(), Value::String(endpoint));
    body.insert(
        "requestParameters".into(),
        Value::Object(params.clone().unwrap_or_default()),
    );
    Ok(Prepared {
        body: serde_json::to_vec(&Value::Object(body)).expect("JSON serializes"),
        params,
    })
}

/// The Inventory DTLS-PSK key Krypton derives for SIM-authenticated calls when it sends
/// `nonce` + `timestamp` instead of `applicationKey` (SORACOM's Go client
/// `calculateInventoryApplicationKey`, Java `EndorseAPI.calculateApplicationKey`): the first 16 bytes
/// of SHA-256(base64-decoded nonce ‖ timestamp as ASCII ‖ CK), as standard base64.
///
/// Errors: [`Error::InvalidResponse`] on `nonce` when it is not base64.
pub fn inventory_application_key(
    nonce_b64: &str,
    timestamp: &str,
    ck: &[u8],
) -> Result<String, Error> {
    let nonce = BASE64
        .decode(nonce_b64.trim())
        .map_err(|_| Error::invalid("nonce", "not standard base64"))?;
    let mut hasher = Sha256::new();
    hasher.update(&nonce);
    hasher.update(timestamp.as_bytes());
    hasher.update(ck);
    Ok(BASE64.encode(&hasher.finalize()[..16]))
}

/// The parser of P9's answer (`now`: ms since the epoch). Network mode must receive
/// `applicationKey`; the `nonce`/`timestamp` variant needs the SIM's CK, which only
/// SIM-authenticated mode has. Errors: [`Error::InvalidResponse`] naming the field.
pub fn parse_bootstrap(prepared: &Prepared, body: &[u8], now: u64) -> Result<Bundle, Error> {
    let endpoint = endpoint_parameter(prepared.params.as_ref())?;
    let obj = json_object(body)?;
    let application_key = match optional_str(&obj, "applicationKey")? {
        Some(key) => key.trim().to_string(),
        None if obj.contains_key("nonce") => {
            return Err(Error::invalid(
                "applicationKey",
                "missing: Krypton sent nonce/timestamp, which only SIM-authenticated mode can turn into a key",
            ));
        }
        None => return Err(Error::invalid("applicationKey", "missing")),
    };
    match BASE64.decode(&application_key) {
        Ok(bytes) if bytes.len() == 16 => {}
        Ok(bytes) => {
            return Err(Error::invalid(
                "applicationKey",
                format!("expected 16 bytes, got {}", bytes.len()),
            ));
        }
        Err(_) => return Err(Error::invalid("applicationKey", "not standard base64")),
    }
    let server_uri = checked_str(&obj, "serverUri", id::coap_uri)?;
    Ok(Bundle::Inventory(InventoryBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        endpoint,
        server_uri: server_uri.to_string(),
        psk_id: checked_str(&obj, "pskId", id::psk_identity)?.to_string(),
        application_key: Secret::new(application_key),
    }))
}
