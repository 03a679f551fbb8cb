//! Per-target Krypton operations: what to send, what to expect, what to store.
//! Paths and fields come from `reference/krypton-api.md` §2.2 (P1–P12); choices where the
//! reference is silent are stated next to the code.

use crate::bundle::{
    ArcBundle, AwsCognitoBundle, AwsCognitoOpenidBundle, AwsIotBundle, AzureIotBundle, Bundle,
    FORMAT_VERSION, InventoryBundle, Secret, SubscriberMetadataBundle, UserdataBundle,
};
use crate::flow::{
    Capabilities, Method, Run, json_object, json_type, optional_str, request_body, required_str,
    retry_after_ms, text_body,
};
use crate::model::{Error, Target};
use crate::validate;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

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

/// AWS thing names: 1–128 of `[A-Za-z0-9:_-]` (AWS IoT `CreateThing`).
fn valid_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// Decide the calls for `target`. Errors: [`Error::InvalidRequest`] for parameters that
/// cannot be right (a bad `thingName`, a missing Inventory `endpoint`).
pub fn plan(target: Target, params: Option<Map<String, Value>>) -> Result<Plan, Error> {
    Ok(match target {
        Target::AzureIot => Plan::AzureIot {
            body: request_body(params.as_ref()),
        },
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
                    Some(Value::String(s)) if valid_thing_name(s) => thing_name = Some(s.clone()),
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
                // `--param skipCertificates=true` arrives as a string; Krypton expects a boolean.
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
                        "inventory needs the LwM2M endpoint name: --param endpoint=NAME".into(),
                    )
                })?;
            // SORACOM's Go client sends `endpoint` at the top level and keeps it inside
            // `requestParameters` too (krypton-api.md §2.1); do the same.
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
                    Ok(Bundle::SubscriberMetadata(SubscriberMetadataBundle {
                        format_version: FORMAT_VERSION,
                        obtained_at_ms: now,
                        metadata: json_object(&response.body)?,
                    }))
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
struct Credentials {
    certificate: String,
    private_key: Secret,
    root_ca_certificate: Option<String>,
}

fn credentials(
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

/// A host name Krypton returned (`host`): non-empty, no scheme, path, or whitespace.
fn host_name(obj: &Map<String, Value>, field: &str) -> Result<String, Error> {
    let host = required_str(obj, field)?.trim();
    if host.contains(['/', ' ', '\t', '\n', '@']) {
        return Err(Error::invalid(field, "not a host name"));
    }
    Ok(host.to_string())
}

/// An identifier that goes into a URL path: only unreserved characters (RFC 3986 §2.3).
fn path_segment(obj: &Map<String, Value>, field: &str) -> Result<String, Error> {
    let id = required_str(obj, field)?;
    let ok = id.len() <= 256
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~'));
    if !ok {
        return Err(Error::invalid(
            field,
            "contains characters that are not allowed in a URL path segment",
        ));
    }
    Ok(id.to_string())
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

/// The registration to resume, if a recent one is stored.
fn pending_registration<C: Capabilities>(run: &mut Run<'_, C>) -> Option<String> {
    let bytes = run.caps.store_get(AZURE_PENDING).ok()??;
    let pending: PendingRegistration = serde_json::from_slice(&bytes).ok()?;
    let age = run.caps.unix_ms().saturating_sub(pending.started_at_ms);
    let id_ok = !pending.operation_id.is_empty()
        && pending
            .operation_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~'));
    (id_ok && age < AZURE_PENDING_MAX_AGE_MS).then_some(pending.operation_id)
}

/// P6 + P7: register (or resume a stored registration), then poll until `assigned`.
fn azure_iot<C: Capabilities>(
    run: &mut Run<'_, C>,
    body: Vec<u8>,
    poll_ms: u64,
) -> Result<Bundle, Error> {
    if let Some(op) = pending_registration(run) {
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
    let op = path_segment(&obj, "operationId")?;
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
    loop {
        if wait >= run.deadline.remaining(run.caps) {
            return Err(Error::Timeout(format!(
                "Azure registration {op} was not assigned within the {} ms deadline ({polls} polls); \
                 the next run resumes it",
                run.deadline.budget_ms
            )));
        }
        run.caps.sleep_ms(wait);
        polls += 1;
        let response = run.call(Method::Get, &path, None)?;
        let obj = json_object(&response.body)?;
        let status = required_str(&obj, "status")?;
        if status == "assigned" {
            let creds = credentials(
                required_str(&obj, "certificate")?,
                required_str(&obj, "privateKey")?,
                optional_str(&obj, "rootCaCertificate")?,
            )?;
            return Ok(Bundle::AzureIot(AzureIotBundle {
                format_version: FORMAT_VERSION,
                obtained_at_ms: run.caps.unix_ms(),
                device_id: required_str(&obj, "deviceId")?.to_string(),
                host: host_name(&obj, "host")?,
                operation_id: op,
                certificate: creds.certificate,
                private_key: creds.private_key,
                root_ca_certificate: creds.root_ca_certificate,
            }));
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
    let client_id = match optional_str(&obj, "clientId")?.or(optional_str(&obj, "thingName")?) {
        Some(id) => id.to_string(),
        None => thing_name.ok_or_else(|| Error::invalid("clientId", "missing"))?,
    };
    let region = match optional_str(&obj, "region")? {
        Some(r) => r.to_string(),
        None => region_from_host(&host)
            .ok_or_else(|| Error::invalid("region", "missing, and `host` names no region"))?,
    };
    // Split flow when asked for, or when Krypton answered with a certificate ID only.
    let split = split
        || (optional_str(&obj, "certificate")?.is_none()
            && optional_str(&obj, "certificateId")?.is_some());
    let (creds, certificate_id) = if split {
        let certificate_id = path_segment(&obj, "certificateId")?;
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
        let id = optional_str(&obj, "certificateId")?.map(str::to_string);
        (creds, id)
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
/// (krypton-api.md P4); samples show epoch seconds and ISO-8601 strings. All three are accepted
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
    Ok(Bundle::AwsCognito(AwsCognitoBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        identity_id: required_str(obj, "identityId")?.to_string(),
        region: optional_str(obj, "region")?.map(str::to_string),
        access_key_id: nested("accessKeyId")?.to_string(),
        secret_key: Secret::new(nested("secretKey")?.to_string()),
        session_token: Secret::new(nested("sessionToken")?.to_string()),
        expiration_ms: parse_expiration(creds.get("expiration"))?,
    }))
}

/// P5: Cognito OpenID token.
fn aws_cognito_openid(obj: &Map<String, Value>, now: u64) -> Result<Bundle, Error> {
    Ok(Bundle::AwsCognitoOpenid(AwsCognitoOpenidBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        region: required_str(obj, "region")?.to_string(),
        identity_id: required_str(obj, "identityId")?.to_string(),
        token: Secret::new(required_str(obj, "token")?.to_string()),
    }))
}

/// The Inventory DTLS-PSK key Krypton derives for SIM-authenticated calls when it sends
/// `nonce` + `timestamp` instead of `applicationKey` (krypton-api.md §3.5): the first 16 bytes
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
    let server_uri = required_str(&obj, "serverUri")?;
    if !server_uri.contains("://") {
        return Err(Error::invalid(
            "serverUri",
            "not a URI (expected e.g. coaps://host:5684)",
        ));
    }
    Ok(Bundle::Inventory(InventoryBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: run.caps.unix_ms(),
        endpoint,
        server_uri: server_uri.to_string(),
        psk_id: required_str(&obj, "pskId")?.to_string(),
        application_key: Secret::new(application_key),
    }))
}

/// A WireGuard key: 44 characters of standard base64 encoding 32 bytes.
fn wireguard_key(obj: &Map<String, Value>, field: &str) -> Result<String, Error> {
    let key = required_str(obj, field)?.trim();
    match BASE64.decode(key) {
        Ok(bytes) if key.len() == 44 && bytes.len() == 32 => Ok(key.to_string()),
        _ => Err(Error::invalid(
            field,
            "not a WireGuard key (44 characters of base64, 32 bytes)",
        )),
    }
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

/// `host:port` with [`ARC_DEFAULT_PORT`] added when there is no port; the host text is kept
/// as given (never replaced by a resolved address).
fn arc_endpoint(obj: &Map<String, Value>) -> Result<String, Error> {
    const FIELD: &str = "arcServerEndpoint";
    let text = required_str(obj, FIELD)?.trim();
    let bad = || Error::invalid(FIELD, "expected host:port, e.g. xxx.arc.soracom.io:11010");
    if text.contains(['/', ' ', '@']) {
        return Err(bad());
    }
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => (format!("[{host}]"), None),
            p => (
                format!("[{host}]"),
                Some(p.strip_prefix(':').ok_or_else(bad)?),
            ),
        }
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (text.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    match port {
        None => Ok(format!("{host}:{ARC_DEFAULT_PORT}")),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(text.to_string()),
            _ => Err(bad()),
        },
    }
}

/// P10: Arc bootstrap, the five fields validated.
fn arc(obj: &Map<String, Value>, now: u64) -> Result<Bundle, Error> {
    let private_key = wireguard_key(obj, "arcClientPeerPrivateKey")?;
    let public_key = wireguard_key(obj, "arcServerPeerPublicKey")?;
    let ip = required_str(obj, "arcClientPeerIpAddress")?.trim();
    if ip.parse::<IpAddr>().is_err() {
        return Err(Error::invalid(
            "arcClientPeerIpAddress",
            "not an IP address",
        ));
    }
    let allowed = match obj.get("arcAllowedIPs") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_str().and_then(Cidr::parse) {
                Some(_) => Ok(v.as_str().unwrap_or_default().trim().to_string()),
                None => Err(Error::invalid(
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

/// Check a stored Arc bundle with the rules applied to Krypton's answer ([`arc`]), so that a
/// bundle edited on disk cannot inject lines into a `wg-quick` file.
/// Errors: [`Error::Storage`] naming the field.
pub fn revalidate_arc(bundle: &ArcBundle) -> Result<(), Error> {
    let value = serde_json::to_value(bundle).expect("bundle serializes");
    let obj = value.as_object().expect("a struct serializes to an object");
    match arc(obj, bundle.obtained_at_ms) {
        Ok(Bundle::Arc(checked)) if checked.arc_server_endpoint == bundle.arc_server_endpoint => {
            Ok(())
        }
        Ok(_) => Err(Error::Storage(
            "stored bundle `arc`: arcServerEndpoint is not host:port".into(),
        )),
        Err(Error::InvalidResponse { field, reason }) => Err(Error::Storage(format!(
            "stored bundle `arc`: {field}: {reason}"
        ))),
        Err(other) => Err(other),
    }
}

/// A `wg-quick` configuration for an Arc bundle (the mapping soratun uses: address /32,
/// keepalive 60 s). Every address in `krypton_addresses` not already inside `AllowedIPs` is
/// added as a single-host route, so the Krypton call cannot leave outside the tunnel.
///
/// Errors: [`Error::InvalidRequest`] when an address is not an IP literal.
pub fn wireguard_config(bundle: &ArcBundle, krypton_addresses: &[String]) -> Result<String, Error> {
    let mut allowed = bundle.arc_allowed_ips.clone();
    let nets: Vec<Cidr> = allowed.iter().filter_map(|c| Cidr::parse(c)).collect();
    let mut added = Vec::new();
    let mut skipped = Vec::new();
    for text in krypton_addresses {
        let ip: IpAddr = text.trim().parse().map_err(|_| {
            Error::InvalidRequest(format!("Krypton address `{text}` is not an IP address"))
        })?;
        // A local address (a test endpoint) must never be routed into the tunnel.
        if ip.is_loopback() || ip.is_unspecified() {
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
        bundle.arc_client_peer_ip_address
    ));
    out.push_str(&format!(
        "PrivateKey = {}\n\n",
        bundle.arc_client_peer_private_key.expose()
    ));
    out.push_str("[Peer]\n");
    out.push_str(&format!(
        "PublicKey = {}\n",
        bundle.arc_server_peer_public_key
    ));
    out.push_str(&format!("Endpoint = {}\n", bundle.arc_server_endpoint));
    out.push_str(&format!("AllowedIPs = {}\n", allowed.join(", ")));
    out.push_str(&format!("PersistentKeepalive = {ARC_KEEPALIVE_SECS}\n"));
    Ok(out)
}
