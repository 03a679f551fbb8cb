//! Per-target Krypton operations: what to send, what to expect, what to store.
//! Paths and fields come from SORACOM's Krypton documentation and its open-source clients
//! (`soracom/krypton-client-go`, `soracom/soracom-krypton-client-for-java`); choices where the
//! documentation is silent are stated next to the code.
//!
//! The operations are numbered P1–P12 in comments here and in the mock:
//!
//! | no. | request |
//! | --- | --- |
//! | P1 | `POST /v1/provisioning/aws/iot/bootstrap` |
//! | P2 | `POST /v1/provisioning/aws/iot/certificates/{certificateId}` |
//! | P3 | `POST /v1/provisioning/aws/iot/ca_certificate` |
//! | P4 | `POST /v1/provisioning/aws/cognito/credentials` |
//! | P5 | `POST /v1/provisioning/aws/cognito/open_id_tokens` |
//! | P6 | `POST /v1/provisioning/azure/iot/register` |
//! | P7 | `GET` (network mode) `/v1/provisioning/azure/iot/registrations/{operationId}` |
//! | P8 | `POST /v1/provisioning/azure/iot/bootstrap` (not used) |
//! | P9 | `POST /v1/provisioning/soracom/inventory/bootstrap` |
//! | P10 | `POST /v1/provisioning/soracom/arc/bootstrap` |
//! | P11 | `POST /v1/provisioning/soracom/air/subscriber_metadata` |
//! | P12 | `POST /v1/provisioning/soracom/air/userdata` |

use crate::bundle::{
    ArcBundle, AwsCognitoBundle, AwsCognitoOpenidBundle, AwsIotBundle, AzureIotBundle, Bundle,
    FORMAT_VERSION, InventoryBundle, Secret, SubscriberMetadataBundle, UserdataBundle,
};
use crate::flow::{
    Capabilities, Method, Run, json_object, json_type, optional_str, request_body, required_str,
    retry_after_ms, text_body,
};
use crate::identifiers::{self as id, Rule};
use crate::model::{Error, ParameterInfo, Target, TargetInfo};
use crate::render::wg_quick_value;
use crate::validate;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// Every target this component implements, in the order of the WIT `target` enum.
pub const ALL: [Target; 8] = [
    Target::AzureIot,
    Target::AwsIot,
    Target::AwsCognito,
    Target::AwsCognitoOpenid,
    Target::Inventory,
    Target::Arc,
    Target::SubscriberMetadata,
    Target::Userdata,
];

/// Inventory's one required parameter: the LwM2M endpoint client name (OMA LwM2M 1.1
/// "Endpoint Client Name"), sent at the top level and inside `requestParameters`.
const INVENTORY_PARAMETERS: &[ParameterInfo] = &[ParameterInfo {
    name: "endpoint",
    description: "the LwM2M endpoint client name the device registers with in SORACOM Inventory",
    example: "demo-gateway",
}];

/// What the component knows about `target` (WIT `target-info`). Only `aws-iot` mints new
/// credentials on every call: Krypton's bootstrap creates a new certificate and key with AWS
/// IoT `CreateKeysAndCertificate` ("Creates a 2048-bit RSA key pair and issues an X.509
/// certificate", AWS IoT API Reference), and the previous certificate stays active.
pub fn info(target: Target) -> TargetInfo {
    let (summary, mints_credentials, export_formats, required_parameters): (
        &'static str,
        bool,
        &'static [&'static str],
        &'static [ParameterInfo],
    ) = match target {
        Target::AzureIot => (
            "Azure IoT Hub device certificate and key through Azure DPS",
            false,
            &["pem", "aziot"],
            &[],
        ),
        Target::AwsIot => (
            "AWS IoT Core device certificate and key (a new one on every call)",
            true,
            &["pem", "aws-iot"],
            &[],
        ),
        Target::AwsCognito => (
            "Amazon Cognito temporary AWS credentials",
            false,
            &["env"],
            &[],
        ),
        Target::AwsCognitoOpenid => ("Amazon Cognito OpenID token", false, &[], &[]),
        Target::Inventory => (
            "SORACOM Inventory LwM2M bootstrap (server URI, PSK identity and key)",
            false,
            &[],
            INVENTORY_PARAMETERS,
        ),
        Target::Arc => (
            "SORACOM Arc WireGuard keys, address and peer",
            false,
            &["wireguard"],
            &[],
        ),
        Target::SubscriberMetadata => ("SORACOM Air subscriber metadata", false, &[], &[]),
        Target::Userdata => ("SORACOM Air group userdata", false, &[], &[]),
    };
    TargetInfo {
        target,
        summary,
        mints_credentials,
        export_formats,
        required_parameters,
    }
}

/// Arc's WireGuard port when `arcServerEndpoint` names none (soratun `arcServerEndpointDefaultPort`).
pub const ARC_DEFAULT_PORT: u16 = 11010;
/// soratun's `PersistentKeepalive`, s.
const ARC_KEEPALIVE_SECS: u32 = 60;

/// What one run will do, decided (and validated) before any call.
pub enum Plan {
    AzureIot {
        body: Vec<u8>,
    },
    AwsIot {
        body: Vec<u8>,
        split: bool,
        thing_name: Option<String>,
    },
    Inventory {
        body: Vec<u8>,
        endpoint: String,
    },
    /// One POST whose answer maps onto one bundle.
    Single {
        target: Target,
        path: &'static str,
        body: Vec<u8>,
    },
}

/// A string field of Krypton's answer that must follow `rule` ([`crate::identifiers`]).
/// Errors: [`Error::InvalidResponse`] naming `field` (missing, empty, mistyped or breaking the
/// rule).
fn checked_str<'m>(obj: &'m Map<String, Value>, field: &str, rule: Rule) -> Result<&'m str, Error> {
    let value = required_str(obj, field)?.trim();
    id::check(field, value, rule)?;
    Ok(value)
}

/// Decide the calls for `target`. Errors: [`Error::InvalidRequest`] for parameters that
/// cannot be right (a bad `thingName`, a missing Inventory `endpoint`).
pub fn plan(target: Target, params: Option<Map<String, Value>>) -> Result<Plan, Error> {
    Ok(match target {
        Target::AzureIot => {
            // The `deviceId` parameter is the registration ID Krypton sends to DPS.
            if let Some(value) = params.as_ref().and_then(|p| p.get("deviceId")) {
                match value {
                    Value::String(s) => id::dps_registration_id(s).map_err(|r| {
                        Error::InvalidRequest(format!("deviceId is not a DPS registration ID: {r}"))
                    })?,
                    Value::Null => {}
                    other => {
                        return Err(Error::InvalidRequest(format!(
                            "deviceId must be a string, got {}",
                            json_type(other)
                        )));
                    }
                }
            }
            Plan::AzureIot {
                body: request_body(params.as_ref()),
            }
        }
        Target::AwsIot => {
            let mut params = params;
            let mut thing_name = None;
            let mut split = false;
            if let Some(p) = params.as_mut() {
                match p.get("thingName") {
                    None | Some(Value::Null) => {}
                    // Empty means "let the group's thingNamePattern decide": send no thingName.
                    Some(Value::String(s)) if s.is_empty() => {
                        p.remove("thingName");
                    }
                    Some(Value::String(s)) if id::aws_thing_name(s).is_ok() => {
                        thing_name = Some(s.clone())
                    }
                    Some(Value::String(_)) => {
                        return Err(Error::InvalidRequest(
                            "thingName must be 1-128 characters of A-Z, a-z, 0-9, ':', '_' and '-'"
                                .into(),
                        ));
                    }
                    Some(other) => {
                        return Err(Error::InvalidRequest(format!(
                            "thingName must be a string, got {}",
                            json_type(other)
                        )));
                    }
                }
                // A host may pass `skipCertificates` as the string "true"; Krypton expects a
                // boolean.
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
                    split = skip;
                }
            }
            Plan::AwsIot {
                body: request_body(params.as_ref()),
                split,
                thing_name,
            }
        }
        Target::Inventory => {
            let endpoint = params
                .as_ref()
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
            // SORACOM's Go client sends `endpoint` at the top level and keeps it inside
            // `requestParameters` too; do the same.
            let mut body = Map::new();
            body.insert("endpoint".into(), Value::String(endpoint.clone()));
            body.insert(
                "requestParameters".into(),
                Value::Object(params.unwrap_or_default()),
            );
            Plan::Inventory {
                body: serde_json::to_vec(&Value::Object(body)).expect("JSON serializes"),
                endpoint,
            }
        }
        Target::AwsCognito => single(target, "/v1/provisioning/aws/cognito/credentials", params),
        Target::AwsCognitoOpenid => single(
            target,
            "/v1/provisioning/aws/cognito/open_id_tokens",
            params,
        ),
        Target::Arc => single(target, "/v1/provisioning/soracom/arc/bootstrap", params),
        Target::SubscriberMetadata => single(
            target,
            "/v1/provisioning/soracom/air/subscriber_metadata",
            params,
        ),
        Target::Userdata => single(target, "/v1/provisioning/soracom/air/userdata", params),
    })
}

fn single(target: Target, path: &'static str, params: Option<Map<String, Value>>) -> Plan {
    Plan::Single {
        target,
        path,
        body: request_body(params.as_ref()),
    }
}

/// Make the calls of `plan` and return the validated bundle (nothing is stored here).
pub fn execute<C: Capabilities>(
    run: &mut Run<'_, C>,
    plan: Plan,
    poll_ms: u64,
) -> Result<Bundle, Error> {
    match plan {
        Plan::AzureIot { body } => azure_iot(run, body, poll_ms),
        Plan::AwsIot {
            body,
            split,
            thing_name,
        } => aws_iot(run, body, split, thing_name),
        Plan::Inventory { body, endpoint } => inventory(run, body, endpoint),
        Plan::Single { target, path, body } => {
            let response = run.call(Method::Post, path, Some(body))?;
            let now = run.caps.unix_ms();
            match target {
                Target::AwsCognito => aws_cognito(&json_object(&response.body)?, now),
                Target::AwsCognitoOpenid => aws_cognito_openid(&json_object(&response.body)?, now),
                Target::Arc => arc(&json_object(&response.body)?, now),
                Target::SubscriberMetadata => {
                    let bundle = Bundle::SubscriberMetadata(SubscriberMetadataBundle {
                        format_version: FORMAT_VERSION,
                        obtained_at_ms: now,
                        metadata: json_object(&response.body)?,
                    });
                    // The identifiers a report shows (`imsi`, `msisdn`, `groupId`, `status`).
                    bundle.validate()?;
                    Ok(bundle)
                }
                Target::Userdata => Ok(Bundle::Userdata(UserdataBundle {
                    format_version: FORMAT_VERSION,
                    obtained_at_ms: now,
                    userdata: Secret::new(text_body(&response.body)?.to_string()),
                })),
                Target::AzureIot | Target::AwsIot | Target::Inventory => {
                    unreachable!("planned separately")
                }
            }
        }
    }
}

/// Validated certificate, key and optional root CA, as canonical PEM.
pub struct Credentials {
    /// The certificate and its chain, leaf first.
    pub certificate: String,
    pub private_key: Secret,
    pub root_ca_certificate: Option<String>,
}

/// Parse and check a certificate (chain), its private key and an optional root CA, and
/// re-encode each as canonical PEM from the parsed DER (see [`validate`]).
/// Errors: [`Error::InvalidResponse`] naming `certificate`, `privateKey` or
/// `rootCaCertificate`.
pub fn credentials(
    cert_pem: &str,
    key_pem: &str,
    root_pem: Option<&str>,
) -> Result<Credentials, Error> {
    let certs = validate::parse_certificates("certificate", cert_pem)?;
    let private_key = validate::check_private_key("privateKey", key_pem, &certs[0].cert)?;
    let root_ca_certificate = match root_pem {
        Some(text) => Some(validate::certificates_to_pem(
            &validate::parse_certificates("rootCaCertificate", text)?,
        )),
        None => None,
    };
    Ok(Credentials {
        certificate: validate::certificates_to_pem(&certs),
        private_key: Secret::new(private_key),
        root_ca_certificate,
    })
}

/// A host name Krypton returned (`host`): a DNS name ([`id::dns_name`]), not a URL.
fn host_name(obj: &Map<String, Value>, field: &str) -> Result<String, Error> {
    checked_str(obj, field, id::dns_name).map(str::to_string)
}

/// DPS states that mean "keep polling". Krypton relays DPS's vocabulary (`assigning`,
/// `assigned`, `failed`, `disabled`, `unassigned`); `unassigned` is the state before DPS
/// starts work, so it is treated as pending too.
fn is_pending(status: &str) -> bool {
    matches!(status, "assigning" | "unassigned")
}

/// P6 + P7: register, then poll until `assigned`. Network mode polls with `GET`, as SORACOM's
/// sample does; the wait is `poll_ms` (the sample uses 1 s) or Krypton's `Retry-After` when
/// longer; the loop ends at the operation deadline.
/// Store name of an Azure registration in flight.
pub const AZURE_PENDING: &str = "azure-iot-pending";
/// A stored in-flight registration older than this is not resumed, ms (DPS keeps operation
/// status for a limited time; a day-old one is registered anew).
pub const AZURE_PENDING_MAX_AGE_MS: u64 = 60 * 60 * 1000;

/// A registration in flight, stored between `register` and `assigned` so that a crash or a
/// power cut resumes polling instead of registering again.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PendingRegistration {
    operation_id: String,
    started_at_ms: u64,
}

/// The registration to resume, if a recent one is stored. A record that cannot be parsed, is
/// too old or holds an unusable operation ID is ignored (registered anew).
/// Errors: [`Error::Storage`] when the store itself fails: a registration must not be started
/// without knowing whether one is in flight.
fn pending_registration<C: Capabilities>(run: &mut Run<'_, C>) -> Result<Option<String>, Error> {
    let Some(bytes) = run.caps.store_get(AZURE_PENDING)? else {
        return Ok(None);
    };
    let Ok(pending) = serde_json::from_slice::<PendingRegistration>(&bytes) else {
        return Ok(None);
    };
    let age = run.caps.unix_ms().saturating_sub(pending.started_at_ms);
    let id_ok = id::dps_operation_id(&pending.operation_id).is_ok();
    Ok((id_ok && age < AZURE_PENDING_MAX_AGE_MS).then_some(pending.operation_id))
}

/// P6 + P7: register (or resume a stored registration), then poll until `assigned`.
fn azure_iot<C: Capabilities>(
    run: &mut Run<'_, C>,
    body: Vec<u8>,
    poll_ms: u64,
) -> Result<Bundle, Error> {
    if let Some(op) = pending_registration(run)? {
        run.caps
            .log(&format!("resuming registration {op} found in the store"));
        match poll_registration(run, op.clone(), poll_ms, 0) {
            // DPS no longer knows it: register anew.
            Err(Error::HttpStatus { status: 404, .. }) => {
                run.caps.log(&format!(
                    "registration {op} is unknown to Krypton; registering anew"
                ));
                let _ = run.caps.store_delete(AZURE_PENDING);
            }
            other => return other,
        }
    }
    let register = run.call(
        Method::Post,
        "/v1/provisioning/azure/iot/register",
        Some(body),
    )?;
    let obj = json_object(&register.body)?;
    let op = checked_str(&obj, "operationId", id::dps_operation_id)?.to_string();
    if let Some(status) = optional_str(&obj, "status")?
        && !is_pending(status)
        && status != "assigned"
    {
        return Err(Error::RegistrationFailed {
            operation_id: op,
            status: status.to_string(),
        });
    }
    // Remember it before the first wait: from here a restart resumes instead of registering.
    let pending = PendingRegistration {
        operation_id: op.clone(),
        started_at_ms: run.caps.unix_ms(),
    };
    run.caps.store_put(
        AZURE_PENDING,
        &serde_json::to_vec(&pending).expect("serializes"),
    )?;
    run.caps.log(&format!(
        "registration {op} started; polling until assigned"
    ));
    let first_wait = retry_after_ms(&register, run.caps.unix_ms()).unwrap_or(0);
    poll_registration(run, op, poll_ms, first_wait)
}

/// Poll P7 until `assigned` (the bundle), another final status (the pending registration is
/// forgotten) or the deadline (it is kept, to be resumed).
fn poll_registration<C: Capabilities>(
    run: &mut Run<'_, C>,
    op: String,
    poll_ms: u64,
    first_wait: u64,
) -> Result<Bundle, Error> {
    let path = format!("/v1/provisioning/azure/iot/registrations/{op}");
    let mut wait = first_wait.max(poll_ms);
    let mut polls = 0u32;
    let not_assigned = |polls: u32, budget_ms: u64| {
        Error::Timeout(format!(
            "Azure registration {op} was not assigned within the {budget_ms} ms deadline ({polls} polls); \
             the next run resumes it"
        ))
    };
    loop {
        // A wait that ends at or after the deadline (a sleep may overshoot) is the same outcome.
        if wait >= run.deadline.remaining(run.caps) {
            return Err(not_assigned(polls, run.deadline.budget_ms));
        }
        run.caps.sleep_ms(wait);
        if run.deadline.remaining(run.caps) == 0 {
            return Err(not_assigned(polls, run.deadline.budget_ms));
        }
        polls += 1;
        let response = match run.call(Method::Get, &path, None) {
            Ok(response) => response,
            // The deadline ran out during this poll: the registration is still in flight.
            Err(Error::Timeout(_)) if run.deadline.remaining(run.caps) == 0 => {
                return Err(not_assigned(polls, run.deadline.budget_ms));
            }
            Err(e) => return Err(e),
        };
        let obj = json_object(&response.body)?;
        let status = required_str(&obj, "status")?;
        if status == "assigned" {
            let now = run.caps.unix_ms();
            let bundle = assigned(&obj, op, now);
            if bundle.is_err() {
                // Asking again would get the same answer: forget the registration, so that
                // nothing of this run stays in the store.
                let _ = run.caps.store_delete(AZURE_PENDING);
            }
            return bundle;
        }
        if !is_pending(status) {
            let _ = run.caps.store_delete(AZURE_PENDING);
            return Err(Error::RegistrationFailed {
                operation_id: op,
                status: status.to_string(),
            });
        }
        wait = retry_after_ms(&response, run.caps.unix_ms())
            .unwrap_or(0)
            .max(poll_ms);
    }
}

/// The bundle from an `assigned` registration status (P7).
fn assigned(obj: &Map<String, Value>, op: String, now: u64) -> Result<Bundle, Error> {
    let device_id = checked_str(obj, "deviceId", id::iot_hub_device_id)?.to_string();
    let host = host_name(obj, "host")?;
    let creds = credentials(
        required_str(obj, "certificate")?,
        required_str(obj, "privateKey")?,
        optional_str(obj, "rootCaCertificate")?,
    )?;
    Ok(Bundle::AzureIot(AzureIotBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        device_id,
        host,
        operation_id: op,
        certificate: creds.certificate,
        private_key: creds.private_key,
        root_ca_certificate: creds.root_ca_certificate,
    }))
}

/// The region of an AWS IoT data endpoint, `xxxx-ats.iot.<region>.amazonaws.com[.cn]`.
fn region_from_host(host: &str) -> Option<String> {
    let rest = host.split_once(".iot.")?.1;
    let region = rest.split('.').next()?;
    (!region.is_empty()).then(|| region.to_string())
}

/// P1, and in the split flow (`skipCertificates: true`, for small devices) P2 + P3:
/// the bundle is built only when every call succeeded.
fn aws_iot<C: Capabilities>(
    run: &mut Run<'_, C>,
    body: Vec<u8>,
    split: bool,
    thing_name: Option<String>,
) -> Result<Bundle, Error> {
    let response = run.call(
        Method::Post,
        "/v1/provisioning/aws/iot/bootstrap",
        Some(body),
    )?;
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
        None => region_from_host(&host)
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
            &format!("/v1/provisioning/aws/iot/certificates/{certificate_id}"),
            Some(b"{}".to_vec()),
        )?;
        let cert = json_object(&cert.body)?;
        let ca = run.call(
            Method::Post,
            "/v1/provisioning/aws/iot/ca_certificate",
            Some(b"{}".to_vec()),
        )?;
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
        region,
        host,
        client_id,
        certificate: creds.certificate,
        private_key: creds.private_key,
        root_ca_certificate: creds.root_ca_certificate,
        certificate_id,
    }))
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
    crate::render::env_value("credentials.secretKey", secret_key)?;
    let session_token = nested("sessionToken")?;
    crate::render::env_value("credentials.sessionToken", session_token)?;
    let region = optional_str(obj, "region")?;
    if let Some(region) = region {
        id::check("region", region, id::aws_region)?;
    }
    Ok(Bundle::AwsCognito(AwsCognitoBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
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
        region: checked_str(obj, "region", id::aws_region)?.to_string(),
        identity_id: checked_str(obj, "identityId", id::cognito_identity_id)?.to_string(),
        token: Secret::new(required_str(obj, "token")?.to_string()),
    }))
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

/// P9: Inventory bootstrap. Network mode must receive `applicationKey`; the `nonce`/`timestamp`
/// variant needs the SIM's CK, which only SIM-authenticated mode has.
fn inventory<C: Capabilities>(
    run: &mut Run<'_, C>,
    body: Vec<u8>,
    endpoint: String,
) -> Result<Bundle, Error> {
    let response = run.call(
        Method::Post,
        "/v1/provisioning/soracom/inventory/bootstrap",
        Some(body),
    )?;
    let obj = json_object(&response.body)?;
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
        obtained_at_ms: run.caps.unix_ms(),
        endpoint,
        server_uri: server_uri.to_string(),
        psk_id: checked_str(&obj, "pskId", id::psk_identity)?.to_string(),
        application_key: Secret::new(application_key),
    }))
}

/// A WireGuard key ([`id::wireguard_key`]).
fn wireguard_key(obj: &Map<String, Value>, field: &str) -> Result<String, Error> {
    checked_str(obj, field, id::wireguard_key).map(str::to_string)
}

/// An IP network `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parse `192.0.2.0/24` or `2001:db8::/32`. The address is parsed by `std::net`; the prefix
    /// is one integer bounded by the address family, which needs no library.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `host:port` ([`id::split_host_port`]: a DNS name or an IP literal, then a port) with
/// [`ARC_DEFAULT_PORT`] added when there is no port; the host text is kept as given (never
/// replaced by a resolved address).
fn arc_endpoint(obj: &Map<String, Value>) -> Result<String, Error> {
    const FIELD: &str = "arcServerEndpoint";
    let text = required_str(obj, FIELD)?.trim();
    let (host, port) = id::split_host_port(text).map_err(|r| {
        Error::invalid(
            FIELD,
            format!("expected host:port, e.g. xxx.arc.soracom.io:11010: {r}"),
        )
    })?;
    Ok(match port {
        Some(_) => text.to_string(),
        None => format!("{host}:{ARC_DEFAULT_PORT}"),
    })
}

/// P10: Arc bootstrap, the five fields validated.
fn arc(obj: &Map<String, Value>, now: u64) -> Result<Bundle, Error> {
    let private_key = wireguard_key(obj, "arcClientPeerPrivateKey")?;
    let public_key = wireguard_key(obj, "arcServerPeerPublicKey")?;
    let ip = checked_str(obj, "arcClientPeerIpAddress", id::ip_address)?;
    let allowed = match obj.get("arcAllowedIPs") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_str().map(str::trim) {
                Some(net) if id::cidr(net).is_ok() => Ok(net.to_string()),
                _ => Err(Error::invalid(
                    "arcAllowedIPs",
                    format!("entry {} is not a CIDR such as 100.127.0.0/16", i + 1),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => return Err(Error::invalid("arcAllowedIPs", "empty")),
        None | Some(Value::Null) => return Err(Error::invalid("arcAllowedIPs", "missing")),
        Some(other) => {
            return Err(Error::invalid(
                "arcAllowedIPs",
                format!("expected an array of CIDRs, got {}", json_type(other)),
            ));
        }
    };
    Ok(Bundle::Arc(ArcBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        arc_client_peer_private_key: Secret::new(private_key),
        arc_client_peer_ip_address: ip.to_string(),
        arc_server_peer_public_key: public_key,
        arc_server_endpoint: arc_endpoint(obj)?,
        arc_allowed_ips: allowed,
    }))
}

/// Whether `ip` is a local address that is never routed through the tunnel: loopback
/// (`127.0.0.0/8`, `::1`), unspecified (`0.0.0.0`, `::`) or link-local (`169.254.0.0/16`,
/// `fe80::/10`; RFC 3927, RFC 4291 §2.5.6), an IPv4-mapped IPv6 address by its IPv4 address.
/// Such an address never leaves this machine or its link, so a route into the tunnel would be
/// wrong (a test endpoint on loopback must keep working). `krypton-host doctor` applies the same
/// rule (`host/src/doctor.rs`, `is_local_address`); an end-to-end test runs both commands on
/// the same addresses and compares their verdicts.
pub fn is_local_address(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || v6.is_unicast_link_local(),
    }
}

/// A `wg-quick` configuration for an Arc bundle (the mapping soratun uses: address /32,
/// keepalive 60 s). Every address in `krypton_addresses` not already inside `AllowedIPs` is
/// added as a single-host route, so the Krypton call cannot leave outside the tunnel.
///
/// Every value reaches the file through [`wg_quick_value`], which refuses anything that could
/// start a line, a comment or a section; callers check the bundle with
/// [`Bundle::validate`] first, so a value that passes its rule is written as it is.
///
/// Errors: [`Error::InvalidRequest`] when an address is not an IP literal;
/// [`Error::InvalidResponse`] naming the field when a value cannot be written safely.
pub fn wireguard_config(bundle: &ArcBundle, krypton_addresses: &[String]) -> Result<String, Error> {
    for net in &bundle.arc_allowed_ips {
        wg_quick_value("arcAllowedIPs", net)?;
    }
    let mut allowed = bundle.arc_allowed_ips.clone();
    let nets: Vec<Cidr> = allowed.iter().filter_map(|c| Cidr::parse(c)).collect();
    let mut added = Vec::new();
    let mut skipped = Vec::new();
    for text in krypton_addresses {
        let ip: IpAddr = text.trim().parse().map_err(|_| {
            Error::InvalidRequest(format!("Krypton address `{text}` is not an IP address"))
        })?;
        // A local address (a test endpoint) must never be routed into the tunnel.
        if is_local_address(ip) {
            skipped.push(ip.to_string());
            continue;
        }
        if !nets.iter().any(|n| n.contains(ip)) {
            let host_route = if ip.is_ipv4() {
                format!("{ip}/32")
            } else {
                format!("{ip}/128")
            };
            if !allowed.contains(&host_route) {
                allowed.push(host_route.clone());
                added.push(host_route);
            }
        }
    }
    let address_prefix = if bundle.arc_client_peer_ip_address.contains(':') {
        128
    } else {
        32
    };
    let mut out = String::new();
    out.push_str(
        "# SORACOM Arc, from the Krypton `arc` bundle. Contains a private key: keep it 0600.\n",
    );
    if !added.is_empty() {
        out.push_str(&format!(
            "# Added so that calls to Krypton go through the tunnel: {}\n",
            added.join(", ")
        ));
    }
    if !skipped.is_empty() {
        out.push_str(&format!(
            "# Not routed (local addresses): {}\n",
            skipped.join(", ")
        ));
    }
    out.push_str("[Interface]\n");
    out.push_str(&format!(
        "Address = {}/{address_prefix}\n",
        wg_quick_value("arcClientPeerIpAddress", &bundle.arc_client_peer_ip_address)?
    ));
    out.push_str(&format!(
        "PrivateKey = {}\n\n",
        wg_quick_value(
            "arcClientPeerPrivateKey",
            bundle.arc_client_peer_private_key.expose()
        )?
    ));
    out.push_str("[Peer]\n");
    out.push_str(&format!(
        "PublicKey = {}\n",
        wg_quick_value("arcServerPeerPublicKey", &bundle.arc_server_peer_public_key)?
    ));
    out.push_str(&format!(
        "Endpoint = {}\n",
        wg_quick_value("arcServerEndpoint", &bundle.arc_server_endpoint)?
    ));
    out.push_str(&format!("AllowedIPs = {}\n", allowed.join(", ")));
    out.push_str(&format!("PersistentKeepalive = {ARC_KEEPALIVE_SECS}\n"));
    Ok(out)
}
