//! AWS IoT Core (target `aws-iot`): P1 bootstrap, and in the split flow
//! (`skipCertificates: true`, for small devices) P2 the certificate and P3 the CA certificate.
//! Every successful bootstrap mints a new certificate and key (Krypton calls AWS IoT
//! `CreateKeysAndCertificate`, AWS IoT API Reference), so a stored one is reused while valid.

use super::common::{Call, Prepared, checked_str, host_name, post};
use crate::client::{Method, Run};
use crate::types::bundle::{AwsIotBundle, Bundle, FORMAT_VERSION};
use crate::types::identifiers as id;
use crate::types::json::{json_object, json_type, optional_str, request_body, required_str};
use crate::types::model::{AuthMode, Error};
use crate::types::validate::credentials;
use serde_json::{Map, Value};

/// P1: the thing, its certificate and key.
pub const BOOTSTRAP: &str = "/v1/provisioning/aws/iot/bootstrap";
/// P2 (split flow): the certificate; the `certificateId` follows.
pub const CERTIFICATES: &str = "/v1/provisioning/aws/iot/certificates/";
/// P3 (split flow): the root CA certificate.
pub const CA_CERTIFICATE: &str = "/v1/provisioning/aws/iot/ca_certificate";

/// The calls, in order (P2 and P3 only in the split flow).
pub const CALLS: &[Call] = &[
    post(BOOTSTRAP),
    post("/v1/provisioning/aws/iot/certificates/{certificateId}"),
    post(CA_CERTIFICATE),
];

/// Check the request parameters: `thingName` follows AWS IoT's rule ([`id::aws_thing_name`];
/// an empty one is dropped so that the group's `thingNamePattern` decides), and
/// `skipCertificates` is a boolean (the string `"true"` or `"false"` a host may pass becomes
/// one, since Krypton expects a JSON boolean).
///
/// Errors: [`Error::InvalidRequest`] naming `thingName` or `skipCertificates`.
pub fn prepare(params: Option<Map<String, Value>>) -> Result<Prepared, Error> {
    let mut params = params;
    if let Some(p) = params.as_mut() {
        match p.get("thingName") {
            None | Some(Value::Null) => {}
            // Empty means "let the group's thingNamePattern decide": send no thingName.
            Some(Value::String(s)) if s.is_empty() => {
                p.remove("thingName");
            }
            Some(Value::String(s)) if id::aws_thing_name(s).is_ok() => {}
            Some(Value::String(_)) => {
                return Err(Error::InvalidRequest(
                    "thingName must be 1-128 characters of A-Z, a-z, 0-9, ':', '_' and '-'".into(),
                ));
            }
            Some(other) => {
                return Err(Error::InvalidRequest(format!(
                    "thingName must be a string, got {}",
                    json_type(other)
                )));
            }
        }
        let skip = match p.get("skipCertificates") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) if s == "true" => Some(true),
            Some(Value::String(s)) if s == "false" => Some(false),
            None | Some(Value::Null) => None,
            Some(_) => {
                return Err(Error::InvalidRequest(
                    "skipCertificates must be true or false".into(),
                ));
            }
        };
        if let Some(skip) = skip {
            p.insert("skipCertificates".into(), Value::Bool(skip));
        }
    }
    Ok(Prepared {
        body: request_body(params.as_ref()),
        params,
    })
}

/// P1, and in the split flow (`skipCertificates: true`, for small devices) P2 + P3:
/// the bundle is built only when every call succeeded.
pub fn obtain(run: &mut Run<'_>, prepared: Prepared) -> Result<Bundle, Error> {
    // `prepare` normalised both: a `thingName` left in the parameters follows its rule, and
    // `skipCertificates` is a JSON boolean.
    let params = prepared.params.unwrap_or_default();
    let thing_name = params
        .get("thingName")
        .and_then(Value::as_str)
        .map(str::to_string);
    let split = params.get("skipCertificates") == Some(&Value::Bool(true));
    let body = prepared.body;
    let response = run.call(Method::Post, BOOTSTRAP, Some(body))?;
    let obj = json_object(&response.body)?;
    let host = host_name(&obj, "host")?;
    // The MQTT client ID: Krypton's `clientId`, else the thing name it reports, else ours.
    let client_id = match (
        optional_str(&obj, "clientId")?,
        optional_str(&obj, "thingName")?,
    ) {
        (Some(client), _) => {
            id::check("clientId", client, id::aws_iot_client_id)?;
            client.to_string()
        }
        (None, Some(thing)) => {
            id::check("thingName", thing, id::aws_thing_name)?;
            thing.to_string()
        }
        (None, None) => thing_name.ok_or_else(|| Error::invalid("clientId", "missing"))?,
    };
    let region = match optional_str(&obj, "region")? {
        Some(r) => r.to_string(),
        None => id::aws_iot_host_region(&host)
            .map(str::to_string)
            .ok_or_else(|| Error::invalid("region", "missing, and `host` names no region"))?,
    };
    id::check("region", &region, id::aws_region)?;
    // Split flow when asked for, or when Krypton answered with a certificate ID only.
    let split = split
        || (optional_str(&obj, "certificate")?.is_none()
            && optional_str(&obj, "certificateId")?.is_some());
    let (creds, certificate_id) = if split {
        let certificate_id =
            checked_str(&obj, "certificateId", id::aws_certificate_id)?.to_string();
        let cert = run.call(
            Method::Post,
            &format!("{CERTIFICATES}{certificate_id}"),
            Some(b"{}".to_vec()),
        )?;
        let cert = json_object(&cert.body)?;
        let ca = run.call(Method::Post, CA_CERTIFICATE, Some(b"{}".to_vec()))?;
        let ca = json_object(&ca.body)?;
        let creds = credentials(
            required_str(&cert, "certificate")?,
            required_str(&obj, "privateKey")?,
            Some(required_str(&ca, "rootCaCertificate")?),
        )?;
        (creds, Some(certificate_id))
    } else {
        let creds = credentials(
            required_str(&obj, "certificate")?,
            required_str(&obj, "privateKey")?,
            optional_str(&obj, "rootCaCertificate")?,
        )?;
        let certificate_id = match optional_str(&obj, "certificateId")? {
            Some(cid) => {
                id::check("certificateId", cid, id::aws_certificate_id)?;
                Some(cid.to_string())
            }
            None => None,
        };
        (creds, certificate_id)
    };
    Ok(Bundle::AwsIot(AwsIotBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: run.caps.unix_ms(),
        mode: AuthMode::default(),
        region,
        host,
        client_id,
        certificate: creds.certificate,
        private_key: creds.private_key,
        root_ca_certificate: creds.root_ca_certificate,
        certificate_id,
    }))
}
