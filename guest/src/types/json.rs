//! Reading Krypton's JSON answers and building its request bodies. Errors name the field and
//! the JSON type found, never the value.

use super::model::Error;
use serde_json::{Map, Value};

/// A 2xx body as UTF-8 text. Errors name `body`.
pub fn text_body(body: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(body).map_err(|e| Error::invalid("body", format!("not UTF-8 ({e})")))
}

/// Parse a 2xx body as a JSON object. Errors name `body`: not UTF-8, not JSON, not an object.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    let value: Value = serde_json::from_str(text_body(body)?)
        .map_err(|e| Error::invalid("body", format!("not JSON ({e})")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(Error::invalid(
            "body",
            format!("expected a JSON object, got {}", json_type(&other)),
        )),
    }
}

/// The JSON type of a value, for error messages that must not echo the value.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A required, non-empty string field. Errors name the field and the type found, never the value.
pub fn required_str<'m>(obj: &'m Map<String, Value>, field: &str) -> Result<&'m str, Error> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(Error::invalid(field, "missing")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(Error::invalid(field, "empty")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(Error::invalid(
            field,
            format!("expected a string, got {}", json_type(other)),
        )),
    }
}

/// An optional string field: absent, `null` or empty is `None`; another type is an error.
pub fn optional_str<'m>(
    obj: &'m Map<String, Value>,
    field: &str,
) -> Result<Option<&'m str>, Error> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::invalid(
            field,
            format!("expected a string, got {}", json_type(other)),
        )),
    }
}

/// Parse `requestParameters` text. Errors: [`Error::InvalidRequest`] when it is not a JSON object.
pub fn parse_params(params: Option<&str>) -> Result<Option<Map<String, Value>>, Error> {
    let Some(text) = params else {
        return Ok(None);
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::InvalidRequest(format!("requestParameters is not JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(Some(map)),
        other => Err(Error::InvalidRequest(format!(
            "requestParameters must be a JSON object, got {}",
            json_type(&other)
        ))),
    }
}

/// The network-mode body: `{"requestParameters": {...}}`, or `{}` without parameters
/// (what soratun sends). Unknown keys pass through unchanged.
pub fn request_body(params: Option<&Map<String, Value>>) -> Vec<u8> {
    let mut body = Map::new();
    if let Some(params) = params {
        body.insert(
            "requestParameters".to_string(),
            Value::Object(params.clone()),
        );
    }
    serde_json::to_vec(&Value::Object(body)).expect("JSON value serializes")
}
