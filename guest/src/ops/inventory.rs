//! SORACOM Inventory (target `inventory`): P9 the LwM2M bootstrap, with the device's endpoint
//! client name as the required request parameter `endpoint`. In SIM mode Krypton may answer
//! `nonce` + `timestamp` instead of the key, which the SIM's CK turns into it.

use super::common::{Call, Prepared, checked_str, post};
use crate::client::{Method, Run};
use crate::types::bundle::{Bundle, FORMAT_VERSION, InventoryBundle};
use crate::types::identifiers as id;
use crate::types::json::{json_object, optional_str, required_str};
use crate::types::model::{AuthMode, Error, ParameterInfo, Secret, SecretBytes};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::value::RawValue;
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

/// The calls, in order.
pub const CALLS: &[Call] = &[post(BOOTSTRAP)];

/// Longest `nonce` accepted, bytes once decoded.
const MAX_NONCE_BYTES: usize = 64;
/// Longest `timestamp` accepted, digits (a Java `long`, as SORACOM's Java client reads it).
const MAX_TIMESTAMP_DIGITS: usize = 19;

/// The Inventory DTLS-PSK key a SIM-mode client derives when Krypton sends `nonce` +
/// `timestamp` instead of `applicationKey` (SORACOM's Go client
/// `calculateInventoryApplicationKey`, Java `EndorseAPI.calculateApplicationKey`): the first 16
/// bytes of SHA-256(base64-decoded nonce ‖ timestamp as ASCII ‖ CK), as standard base64.
///
/// Errors: [`Error::InvalidResponse`] on `nonce` when it is not standard base64 of 1 to 64
/// bytes.
pub fn inventory_application_key(
    nonce_b64: &str,
    timestamp: &str,
    ck: &[u8],
) -> Result<String, Error> {
    let nonce = BASE64
        .decode(nonce_b64.trim())
        .map_err(|_| Error::invalid("nonce", "not standard base64"))?;
    if nonce.is_empty() || nonce.len() > MAX_NONCE_BYTES {
        return Err(Error::invalid(
            "nonce",
            format!("{} bytes, expected 1 to {MAX_NONCE_BYTES}", nonce.len()),
        ));
    }
    let mut hasher = Sha256::new();
    hasher.update(&nonce);
    hasher.update(timestamp.as_bytes());
    hasher.update(ck);
    Ok(BASE64.encode(&hasher.finalize()[..16]))
}

/// `timestamp` exactly as Krypton wrote it: the text of a JSON string, or the digits of a JSON
/// number taken from the raw body (never a number formatted again, which could turn
/// `1700000000123` into `1.700000000123e12`). Either way 1 to 19 decimal digits.
///
/// Errors: [`Error::InvalidResponse`] on `timestamp` (missing, another type, not digits).
pub fn raw_timestamp(body: &[u8]) -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        timestamp: Option<&'a RawValue>,
    }
    let raw: Raw<'_> = serde_json::from_slice(body)
        .map_err(|e| Error::invalid("body", format!("not JSON ({e})")))?;
    let text = raw
        .timestamp
        .map(RawValue::get)
        .ok_or_else(|| Error::invalid("timestamp", "missing"))?;
    let digits = if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map_err(|_| Error::invalid("timestamp", "not a JSON string"))?
    } else {
        text.to_string()
    };
    if digits.is_empty()
        || digits.len() > MAX_TIMESTAMP_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Error::invalid(
            "timestamp",
            format!("expected 1 to {MAX_TIMESTAMP_DIGITS} decimal digits (epoch ms)"),
        ));
    }
    Ok(digits)
}

/// P9: the bootstrap, signed in SIM mode; the answer parsed with the run's CK, if any
/// ([`parse_bootstrap`]).
pub fn obtain(run: &mut Run<'_>, prepared: Prepared) -> Result<Bundle, Error> {
    let response = run.call(Method::Post, BOOTSTRAP, Some(prepared.body.clone()))?;
    let now = run.caps.unix_ms();
    let ck = run.sim_key().map(|k| k.ck.clone());
    parse_bootstrap(&prepared, &response.body, now, ck.as_ref())
}

/// The parser of P9's answer (`now`: ms since the epoch; `ck`: the SIM's CK in SIM mode).
/// Krypton sends `applicationKey`, or `nonce` + `timestamp` from which a SIM-mode client
/// derives it ([`inventory_application_key`]); network mode has no CK, so it must receive
/// `applicationKey`. Errors: [`Error::InvalidResponse`] naming the field.
pub fn parse_bootstrap(
    prepared: &Prepared,
    body: &[u8],
    now: u64,
    ck: Option<&SecretBytes>,
) -> Result<Bundle, Error> {
    let endpoint = endpoint_parameter(prepared.params.as_ref())?;
    let obj = json_object(body)?;
    let application_key = match (optional_str(&obj, "applicationKey")?, ck) {
        (Some(key), _) => key.trim().to_string(),
        (None, Some(ck)) if obj.contains_key("nonce") => {
            let nonce = required_str(&obj, "nonce")?;
            inventory_application_key(nonce, &raw_timestamp(body)?, ck.expose())?
        }
        (None, None) if obj.contains_key("nonce") => {
            return Err(Error::invalid(
                "applicationKey",
                "missing: Krypton sent nonce/timestamp, which only SIM-authenticated mode can turn into a key",
            ));
        }
        (None, _) => return Err(Error::invalid("applicationKey", "missing")),
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
        mode: AuthMode::default(),
        endpoint,
        server_uri: server_uri.to_string(),
        psk_id: checked_str(&obj, "pskId", id::psk_identity)?.to_string(),
        application_key: Secret::new(application_key),
    }))
}
