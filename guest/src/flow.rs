//! The provisioning flows, written against [`Capabilities`] so they run natively in unit tests
//! and inside the component with `wasi:http`, `wasi:clocks` and the `secret-store` import.
//!
//! Operations (paths and fields from `reference/krypton-api.md` §2.2):
//! * `azure-iot`: `POST /v1/provisioning/azure/iot/register` (P6) returns an `operationId`;
//!   then `GET /v1/provisioning/azure/iot/registrations/{operationId}` (P7; network mode uses
//!   `GET`, as SORACOM's sample does) until `status` is `assigned`. Krypton relays DPS states:
//!   `assigning` and `unassigned` mean "not yet"; any other status ends the run with
//!   [`Error::RegistrationFailed`]. The wait between polls is `poll_interval_ms` (SORACOM's
//!   sample uses 1 s), or Krypton's `Retry-After` in seconds when longer, capped at
//!   [`MAX_RETRY_AFTER_MS`]; the whole loop is bounded by the operation deadline.
//! * `aws-iot`: `POST /v1/provisioning/aws/iot/bootstrap` (P1). AWS mints a new key pair and
//!   certificate on every call, so a valid stored bundle is reused unless `force` is set.
//!
//! Request body in network mode: `{"requestParameters": {...}}` when parameters are given,
//! otherwise `{}` (what soratun sends; krypton-api.md §2.1).
//!
//! Nothing is written to the store until a response has been fully validated: a failed,
//! partial or invalid response leaves the previous bundle untouched.

use crate::bundle::{AwsIotBundle, AzureIotBundle, Bundle, FORMAT_VERSION, Secret};
use crate::model::{AuthMode, Error, ProvisionRequest, Report, Target, Timeouts};
use crate::validate;
use serde_json::{Map, Value};

/// Largest response body read, bytes. Krypton bundles are a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest `Retry-After` honoured, ms.
pub const MAX_RETRY_AFTER_MS: u64 = 300_000;
/// Longest error-body excerpt kept in [`Error::HttpStatus`], bytes.
pub const MAX_EXCERPT_BYTES: usize = 512;

/// HTTP method of a Krypton call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A parsed Krypton base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` or `http`.
    pub scheme: String,
    /// `host:port` exactly as given; the port is kept so that 8036 reaches the wire.
    pub authority: String,
    /// Path prefix without a trailing `/` (usually empty).
    pub base_path: String,
}

impl Endpoint {
    /// Parse `https://host[:port][/prefix]`. Errors: [`Error::InvalidRequest`] for anything
    /// else (no scheme, a scheme other than http/https, a query, no host).
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidRequest(format!("endpoint `{url}`: {why}"));
        let uri: http::Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        let scheme = match uri.scheme_str() {
            Some("https") => "https",
            Some("http") => "http",
            Some(other) => return Err(bad(&format!("scheme `{other}` is not http or https"))),
            None => return Err(bad("missing scheme, e.g. https://krypton.soracom.io:8036")),
        };
        let authority = uri.authority().ok_or_else(|| bad("missing host"))?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(bad("missing host, or user info present"));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not allowed"));
        }
        Ok(Endpoint {
            scheme: scheme.to_string(),
            authority: authority.as_str().to_string(),
            base_path: uri.path().trim_end_matches('/').to_string(),
        })
    }
}

/// One HTTP request to Krypton.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: Method,
    /// Path and query below the endpoint, starting with `/`.
    pub path: String,
    pub body: Option<Vec<u8>>,
}

/// A complete HTTP response (the body was read to its framed end).
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the flows need from their environment. In the component these are `wasi:http`,
/// `wasi:clocks`, stderr and the `secret-store` import; in unit tests, fakes.
pub trait Capabilities {
    /// Send one request and read the whole response body (at most `max_body` bytes).
    /// Errors: [`Error::Transport`] or [`Error::Timeout`], with the `wasi:http` error code.
    fn send(
        &mut self,
        endpoint: &Endpoint,
        request: &HttpRequest,
        timeouts: Timeouts,
        max_body: usize,
    ) -> Result<HttpResponse, Error>;
    /// Monotonic time, ms.
    fn monotonic_ms(&self) -> u64;
    /// Wall-clock time, ms since the Unix epoch.
    fn unix_ms(&self) -> u64;
    /// Block for `ms` milliseconds.
    fn sleep_ms(&mut self, ms: u64);
    /// One progress line for the operator. Never called with a secret.
    fn log(&mut self, line: &str);
    fn store_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, Error>;
    fn store_put(&mut self, name: &str, value: &[u8]) -> Result<(), Error>;
}

/// The whole-operation deadline.
struct Deadline {
    start_ms: u64,
    budget_ms: u64,
}

impl Deadline {
    fn remaining(&self, caps: &impl Capabilities) -> u64 {
        let elapsed = caps.monotonic_ms().saturating_sub(self.start_ms);
        self.budget_ms.saturating_sub(elapsed)
    }

    /// Per-request timeouts, none longer than what is left of the deadline.
    /// Errors: [`Error::Timeout`] when nothing is left, naming `what` was about to happen.
    fn clamp(&self, caps: &impl Capabilities, t: Timeouts, what: &str) -> Result<Timeouts, Error> {
        let left = self.remaining(caps);
        if left == 0 {
            return Err(Error::Timeout(format!(
                "the operation deadline of {} ms passed before {what}",
                self.budget_ms
            )));
        }
        let left = u32::try_from(left).unwrap_or(u32::MAX);
        Ok(Timeouts {
            connect_ms: t.connect_ms.min(left),
            first_byte_ms: t.first_byte_ms.min(left),
            between_bytes_ms: t.between_bytes_ms.min(left),
        })
    }
}

/// Everything one run needs, parsed and checked once.
struct Run<'a, C: Capabilities> {
    caps: &'a mut C,
    endpoint: Endpoint,
    timeouts: Timeouts,
    deadline: Deadline,
}

impl<C: Capabilities> Run<'_, C> {
    /// One Krypton call. 2xx is returned; 3xx and >= 400 become [`Error::HttpStatus`]
    /// (redirects are never followed: the body and the device's identity stay with Krypton).
    fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, Error> {
        let what = format!("{} {path}", method.as_str());
        let timeouts = self.deadline.clamp(self.caps, self.timeouts, &what)?;
        let request = HttpRequest {
            method,
            path: format!("{}{path}", self.endpoint.base_path),
            body,
        };
        let started = self.caps.monotonic_ms();
        let response = self
            .caps
            .send(&self.endpoint, &request, timeouts, MAX_BODY_BYTES)?;
        let took = self.caps.monotonic_ms().saturating_sub(started);
        self.caps
            .log(&format!("{what} -> {} ({took} ms)", response.status));
        match response.status {
            200..=299 => Ok(response),
            300..=399 => {
                let location = response.header("location").unwrap_or("(no Location)");
                let target_host = location
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| u.host().map(str::to_string))
                    .unwrap_or_else(|| location.to_string());
                Err(Error::HttpStatus {
                    status: response.status,
                    code: None,
                    message: Some(format!(
                        "redirect to `{target_host}` refused: Krypton calls never follow redirects"
                    )),
                    body_excerpt: String::new(),
                    request: what,
                })
            }
            status => Err(http_status_error(status, &response.body, what)),
        }
    }
}

/// Build [`Error::HttpStatus`] from an error response: Krypton's `{"code","message"}` when the
/// body has them (krypton-api.md §4.1), and at most [`MAX_EXCERPT_BYTES`] of the body.
pub fn http_status_error(status: u16, body: &[u8], request: String) -> Error {
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let text_field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut end = body.len().min(MAX_EXCERPT_BYTES);
    // Do not cut a UTF-8 sequence in half.
    while end > 0 && end < body.len() && (body[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    Error::HttpStatus {
        status,
        code: text_field("code"),
        message: text_field("message"),
        body_excerpt: String::from_utf8_lossy(&body[..end]).into_owned(),
        request,
    }
}

/// Parse a 2xx body as a JSON object. Errors name `body`: not UTF-8, not JSON, not an object.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    let text = std::str::from_utf8(body)
        .map_err(|e| Error::invalid("body", format!("not UTF-8 ({e})")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid("body", format!("not JSON ({e})")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(Error::invalid(
            "body",
            format!("expected a JSON object, got {}", json_type(&other)),
        )),
    }
}

fn json_type(v: &Value) -> &'static str {
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

/// A host name Krypton returned (`host`): non-empty, no scheme, path, or whitespace.
fn host_name(obj: &Map<String, Value>, field: &str) -> Result<String, Error> {
    let host = required_str(obj, field)?.trim();
    if host.contains(['/', ' ', '\t', '\n', '@']) {
        return Err(Error::invalid(field, "not a host name"));
    }
    Ok(host.to_string())
}

/// Build the network-mode body: `{"requestParameters": {...}}`, or `{}` without parameters.
/// Errors: [`Error::InvalidRequest`] when `params` is not a JSON object.
pub fn request_body(params: Option<&str>) -> Result<Vec<u8>, Error> {
    let mut body = Map::new();
    if let Some(text) = params {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::InvalidRequest(format!("requestParameters is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(Error::InvalidRequest(format!(
                "requestParameters must be a JSON object, got {}",
                json_type(&value)
            )));
        }
        body.insert("requestParameters".to_string(), value);
    }
    Ok(serde_json::to_vec(&Value::Object(body)).expect("JSON value serializes"))
}

/// Validated certificate, key and optional root CA from a response, as canonical PEM.
struct Credentials {
    certificate: String,
    private_key: Secret,
    root_ca_certificate: Option<String>,
}

fn credentials(obj: &Map<String, Value>) -> Result<Credentials, Error> {
    let certs = validate::parse_certificates("certificate", required_str(obj, "certificate")?)?;
    let private_key = validate::check_private_key(
        "privateKey",
        required_str(obj, "privateKey")?,
        &certs[0].cert,
    )?;
    let root_ca_certificate = match optional_str(obj, "rootCaCertificate")? {
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

/// An `operationId` goes into a URL path: allow only the characters DPS uses.
fn operation_id(obj: &Map<String, Value>) -> Result<String, Error> {
    let id = required_str(obj, "operationId")?;
    let ok = id.len() <= 256
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~'));
    if !ok {
        return Err(Error::invalid(
            "operationId",
            "contains characters that are not allowed in a URL path segment",
        ));
    }
    Ok(id.to_string())
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3), as ms capped at [`MAX_RETRY_AFTER_MS`].
/// Anything else (an HTTP date, garbage) is `None` and the caller's own interval applies.
pub fn retry_after_ms(response: &HttpResponse) -> Option<u64> {
    let secs: u64 = response.header("retry-after")?.trim().parse().ok()?;
    Some(secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS))
}

/// DPS states that mean "keep polling".
fn is_pending(status: &str) -> bool {
    matches!(status, "assigning" | "unassigned")
}

fn azure_iot<C: Capabilities>(
    run: &mut Run<'_, C>,
    body: Vec<u8>,
    poll_ms: u64,
) -> Result<Bundle, Error> {
    let register = run.call(
        Method::Post,
        "/v1/provisioning/azure/iot/register",
        Some(body),
    )?;
    let obj = json_object(&register.body)?;
    let op = operation_id(&obj)?;
    if let Some(status) = optional_str(&obj, "status")?
        && !is_pending(status)
        && status != "assigned"
    {
        return Err(Error::RegistrationFailed {
            operation_id: op,
            status: status.to_string(),
        });
    }
    run.caps.log(&format!(
        "registration {op} started; polling until assigned"
    ));
    let path = format!("/v1/provisioning/azure/iot/registrations/{op}");
    let mut wait = retry_after_ms(&register).unwrap_or(0).max(poll_ms);
    let mut polls = 0u32;
    loop {
        let left = run.deadline.remaining(run.caps);
        if wait >= left {
            return Err(Error::Timeout(format!(
                "Azure registration {op} was not assigned within the {} ms deadline ({polls} polls)",
                run.deadline.budget_ms
            )));
        }
        run.caps.sleep_ms(wait);
        polls += 1;
        let response = run.call(Method::Get, &path, None)?;
        let obj = json_object(&response.body)?;
        let status = required_str(&obj, "status")?;
        if status == "assigned" {
            let creds = credentials(&obj)?;
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
            return Err(Error::RegistrationFailed {
                operation_id: op,
                status: status.to_string(),
            });
        }
        wait = retry_after_ms(&response).unwrap_or(0).max(poll_ms);
    }
}

fn aws_iot<C: Capabilities>(run: &mut Run<'_, C>, body: Vec<u8>) -> Result<Bundle, Error> {
    let response = run.call(
        Method::Post,
        "/v1/provisioning/aws/iot/bootstrap",
        Some(body),
    )?;
    let obj = json_object(&response.body)?;
    let creds = credentials(&obj)?;
    Ok(Bundle::AwsIot(AwsIotBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: run.caps.unix_ms(),
        region: required_str(&obj, "region")?.to_string(),
        host: host_name(&obj, "host")?,
        client_id: required_str(&obj, "clientId")?.to_string(),
        certificate: creds.certificate,
        private_key: creds.private_key,
        root_ca_certificate: creds.root_ca_certificate,
    }))
}

/// The stored bundle for `target`, if any. Errors: [`Error::Storage`].
pub fn load(caps: &mut impl Capabilities, target: Target) -> Result<Option<Bundle>, Error> {
    match caps.store_get(target.bundle_name())? {
        None => Ok(None),
        Some(bytes) => Bundle::from_bytes(target.bundle_name(), &bytes).map(Some),
    }
}

/// Report what is stored for `target` (WIT `status`).
pub fn status(caps: &mut impl Capabilities, target: Target) -> Result<Option<Report>, Error> {
    load(caps, target)?.map(|b| b.report(true)).transpose()
}

/// Provision `request.target` and store its bundle (WIT `provision`).
///
/// Without `force`, a stored bundle whose certificate is still valid is reported
/// (`reused: true`) and Krypton is not called. A stored bundle that is unreadable or expired
/// is replaced. Errors: every [`Error`] variant; on any error the store is unchanged.
pub fn provision(
    caps: &mut impl Capabilities,
    request: &ProvisionRequest,
) -> Result<Report, Error> {
    if request.mode == AuthMode::Sim {
        return Err(Error::Unsupported(
            "SIM-authenticated mode is not implemented yet; use network mode over SORACOM Air or Arc"
                .to_string(),
        ));
    }
    if !matches!(request.target, Target::AzureIot | Target::AwsIot) {
        return Err(Error::Unsupported(format!(
            "target `{}` is not implemented by this component version",
            request.target.name()
        )));
    }
    let endpoint = Endpoint::parse(&request.endpoint)?;
    let body = request_body(request.request_parameters.as_deref())?;
    let target = request.target;

    if !request.force {
        match load(caps, target) {
            Ok(Some(bundle)) => match bundle.report(true) {
                Ok(report)
                    if report.certificate.as_ref().is_some_and(|c| {
                        c.not_after.saturating_mul(1000) > caps.unix_ms() as i64
                    }) =>
                {
                    caps.log(&format!(
                        "{}: a valid bundle is stored; not calling Krypton (use --force to replace it)",
                        target.name()
                    ));
                    return Ok(report);
                }
                Ok(_) => caps.log(&format!(
                    "{}: the stored certificate has expired; provisioning anew",
                    target.name()
                )),
                Err(e) => caps.log(&format!("{}: {e}; provisioning anew", target.name())),
            },
            Ok(None) => {}
            Err(e) => caps.log(&format!("{}: {e}; provisioning anew", target.name())),
        }
    }

    let start_ms = caps.monotonic_ms();
    let mut run = Run {
        caps,
        endpoint,
        timeouts: request.timeouts,
        deadline: Deadline {
            start_ms,
            budget_ms: u64::from(request.deadline_ms),
        },
    };
    let bundle = match target {
        Target::AzureIot => azure_iot(&mut run, body, u64::from(request.poll_interval_ms))?,
        Target::AwsIot => aws_iot(&mut run, body)?,
        _ => unreachable!("checked above"),
    };
    // Build the report before storing, so a bundle that cannot be reported is never stored.
    let report = bundle.report(false)?;
    caps.store_put(target.bundle_name(), &bundle.to_bytes())?;
    caps.log(&format!(
        "{}: stored bundle `{}`",
        target.name(),
        report.bundle
    ));
    Ok(report)
}
