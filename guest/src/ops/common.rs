//! What every operation shares: the checked request ([`Prepared`]), the calls it makes
//! ([`Call`]), and the reading of identifier fields from Krypton's answers.

use crate::client::Method;
use crate::types::identifiers::{self as id, Rule};
use crate::types::json::{request_body, required_str};
use crate::types::model::Error;
use serde_json::{Map, Value};

/// One Krypton call of an operation, as the table lists it: `path` is below the endpoint; a
/// `{name}` in it stands for a value from an earlier answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// The HTTP method.
    pub method: Method,
    /// The path below the endpoint.
    pub path: &'static str,
}

/// A POST to `path`.
pub const fn post(path: &'static str) -> Call {
    Call {
        method: Method::Post,
        path,
    }
}

/// What a run sends, decided and checked before any call or store access.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// The request parameters as checked and normalised by the operation's `prepare` (e.g.
    /// AWS IoT's `skipCertificates` as a JSON boolean); `None` when none were given.
    pub params: Option<Map<String, Value>>,
    /// The JSON body of the first call.
    pub body: Vec<u8>,
}

/// The `prepare` of operations that check nothing: the body is `{"requestParameters": ...}`,
/// or `{}` without parameters ([`request_body`]). Never fails.
pub fn prepare_plain(params: Option<Map<String, Value>>) -> Result<Prepared, Error> {
    Ok(Prepared {
        body: request_body(params.as_ref()),
        params,
    })
}

/// A string field of Krypton's answer that must follow `rule` ([`crate::types::identifiers`]).
/// Errors: [`Error::InvalidResponse`] naming `field` (missing, empty, mistyped or breaking the
/// rule).
pub fn checked_str<'m>(
    obj: &'m Map<String, Value>,
    field: &str,
    rule: Rule,
) -> Result<&'m str, Error> {
    let value = required_str(obj, field)?.trim();
    id::check(field, value, rule)?;
    Ok(value)
}

/// A host name Krypton returned (`host`): a DNS name ([`id::dns_name`]), not a URL.
pub fn host_name(obj: &Map<String, Value>, field: &str) -> Result<String, Error> {
    checked_str(obj, field, id::dns_name).map(str::to_string)
}
