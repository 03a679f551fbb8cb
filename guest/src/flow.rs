//! The HTTP side of every Krypton operation, written against [`Capabilities`] so it runs
//! natively in unit tests and inside the component with `wasi:http`, `wasi:clocks`,
//! `wasi:random` and the `secret-store` import. Per-target logic is in [`crate::targets`].
//!
//! Policy (every wait is bounded):
//! * per-request connect / first-byte / between-bytes timeouts, each clamped to what is left
//!   of the whole-operation deadline;
//! * retries only where repeating is safe: connection failures and single-request timeouts,
//!   HTTP 408, 429 and 5xx; exponential backoff with full jitter, or `Retry-After` (seconds or
//!   an HTTP date, RFC 9110 §10.2.3) capped at [`MAX_RETRY_AFTER_MS`]; never past the deadline;
//!   the final error says how many attempts were made;
//! * redirects are never followed: a 3xx is [`Error::HttpStatus`] naming the target host, and
//!   no body or identity goes there;
//! * bodies are read to their framed end with a cap of [`MAX_BODY_BYTES`].
//!
//! Nothing is written to the store until a response has been fully validated: a failed,
//! partial or invalid response leaves the previous bundle untouched.

use crate::bundle::{Bundle, stored_error};
use crate::model::{
    AuthMode, Error, ProvisionRequest, Report, RetryPolicy, Target, Timeouts, TransportError,
    TransportKind,
};
use crate::targets;
use serde_json::{Map, Value};

/// Krypton's network-authenticated host (SORACOM Krypton developer documentation).
const KRYPTON_HOST: &str = "krypton.soracom.io";

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

/// A parsed Krypton base URL: `scheme://host[:port]`, nothing more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` or `http`.
    pub scheme: String,
    /// `host:port` exactly as given; the port is kept so that 8036 reaches the wire.
    pub authority: String,
    /// The host: a DNS name or an IP literal (an IPv6 literal without brackets).
    pub host: String,
    /// The port connected to: the one given, else the scheme's (443, 80).
    pub port: u16,
    /// Whether the URL named the port (`false`: [`Endpoint::port`] is the scheme's default).
    pub port_given: bool,
}

/// The port Krypton's network-authenticated endpoint listens on (krypton.soracom.io:8036).
pub const KRYPTON_PORT: u16 = 8036;
/// Krypton's base URL, shown in advice.
pub const KRYPTON_BASE_URL: &str = "https://krypton.soracom.io:8036";

impl Endpoint {
    /// Parse `https://host[:port]` (a trailing `/` is fine). Errors: [`Error::InvalidRequest`]
    /// naming the endpoint for anything else: no scheme, a scheme other than http/https, no
    /// host, user info, a query, or a path (the component adds `/v1/provisioning/...` itself,
    /// so a base URL ending in `/v1` would request `/v1/v1/...`).
    pub fn parse(url: &str) -> Result<Self, Error> {
        // Echo at most 100 characters of what was given.
        let shown: String = url.chars().take(100).collect();
        let shown = if shown.len() < url.len() {
            format!("{shown}…")
        } else {
            shown
        };
        let bad = |why: &str| Error::InvalidRequest(format!("endpoint `{shown}`: {why}"));
        let uri: http::Uri = url.parse().map_err(|e| {
            bad(&format!(
                "not a URL ({e}); the form is https://host[:port], the port from 1 to 65535"
            ))
        })?;
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
        if !matches!(uri.path(), "" | "/") {
            return Err(bad(&format!(
                "give the base URL without a path, e.g. {KRYPTON_BASE_URL} (the component adds \
                 the path `/v1/provisioning/...` itself)"
            )));
        }
        // `http::Uri` accepts any digits after the colon and then reports no port; check the text.
        let after_host = match authority.as_str().rfind(']') {
            Some(i) => &authority.as_str()[i + 1..],
            None => authority.as_str(),
        };
        let given = match after_host.rsplit_once(':') {
            Some((_, port)) => match port.parse::<u16>() {
                Ok(p @ 1..=65535) => Some(p),
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
            None => None,
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        Ok(Endpoint {
            scheme: scheme.to_string(),
            authority: authority.as_str().to_string(),
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: given.unwrap_or(default_port),
            port_given: given.is_some(),
        })
    }

    /// `host:port` as connected to, the port always written (`[::1]:9` for IPv6).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A request as it goes on the wire: `POST https://krypton.soracom.io:8036/v1/...`.
    pub fn request_line(&self, method: Method, path: &str) -> String {
        format!(
            "{} {}://{}{path}",
            method.as_str(),
            self.scheme,
            self.host_port()
        )
    }
}

/// The `rcode` a host puts in `dns-error` for a name that does not exist. Matched as data
/// (ASCII case ignored): `NXDOMAIN` is RFC 2136 §2.2's name for RCODE 3, "Name Error" in RFC
/// 1035 §4.1.1. Any other `dns-error` is a resolver failure that may pass on another attempt.
pub const DNS_NAME_NOT_FOUND: &str = "NXDOMAIN";

/// Whether another attempt may succeed after a failure of this kind: a name that does not
/// exist, a certificate that is not trusted, another protocol, a refusal by the host or a TLS
/// failure give the same answer again; a resolver, connection or route failure may pass.
pub fn transient(kind: TransportKind) -> bool {
    !matches!(
        kind,
        TransportKind::NameNotFound
            | TransportKind::UntrustedCertificate
            | TransportKind::TlsFailure
            | TransportKind::ProtocolMismatch
            | TransportKind::Denied
    )
}

const AIR_ARC_ADVICE: &str = "Krypton's network mode answers only requests that leave over a \
SORACOM Air cellular session or a SORACOM Arc tunnel: on Air check the cellular connection; on \
Arc Krypton's address must be inside the tunnel's AllowedIPs";

/// Put a transport failure in words: `kind` as classified from the `wasi:http` error code,
/// `request` as it went on the wire ([`Endpoint::request_line`]), `detail` what the code
/// adds in plain words (a resolver's answer, a TLS alert, a timeout in ms), if anything.
/// The message names the host and port tried; the hint is the advice for the kind (the
/// Air/Arc advice only for a connect timeout or an unreachable address; the missing-port
/// advice when the endpoint named no port and the failure is one a wrong port causes).
/// `attempts` is 1: [`Run::call`] counts the attempts.
pub fn transport_failure(
    kind: TransportKind,
    endpoint: &Endpoint,
    request: String,
    detail: Option<&str>,
) -> TransportError {
    let hp = endpoint.host_port();
    let host = &endpoint.host;
    let port = endpoint.port;
    let detail_suffix = detail.map(|d| format!(" ({d})")).unwrap_or_default();
    let no_port = (!endpoint.port_given).then(|| {
        format!(
            "the endpoint has no port, so {port} was tried: Krypton listens on {KRYPTON_PORT}, \
             e.g. {KRYPTON_BASE_URL}"
        )
    });
    let (message, hint) = match kind {
        TransportKind::NameNotFound => (
            format!(
                "the name `{host}` does not exist (DNS: no such name); nothing was sent to port {port}"
            ),
            Some(if host.eq_ignore_ascii_case(KRYPTON_HOST) {
                // The right name, and still not found: the resolver is the problem, not the
                // spelling (a gateway whose DNS only answers over its SORACOM session).
                format!(
                    "Krypton's own name did not resolve: this gateway's DNS does not know \
                     `{host}`; check the resolver and that traffic leaves over SORACOM Air or Arc \
                     (for a test server, use its endpoint instead)"
                )
            } else {
                format!(
                    "the name does not exist: check the spelling of the endpoint's host `{host}` \
                     (Krypton is {KRYPTON_HOST})"
                )
            }),
        ),
        TransportKind::NameResolutionFailed => (
            format!(
                "the name `{host}` could not be looked up{detail_suffix}; nothing was sent to port {port}"
            ),
            Some(
                "the DNS resolver did not answer: check the device's DNS settings and network; \
                 a later attempt may pass"
                    .to_string(),
            ),
        ),
        TransportKind::ConnectionRefused => (
            format!("{hp} refused the connection: nothing listens on port {port} there"),
            Some(no_port.unwrap_or_else(|| {
                format!(
                    "nothing listens on {hp}: check the endpoint's host and port (Krypton \
                     listens on {KRYPTON_PORT}) and that the server runs"
                )
            })),
        ),
        TransportKind::ConnectionTimeout => (
            format!("no connection to {hp} within the connect timeout{detail_suffix}"),
            Some(match no_port {
                Some(p) => format!("{p}; otherwise: {AIR_ARC_ADVICE}"),
                None => AIR_ARC_ADVICE.to_string(),
            }),
        ),
        TransportKind::Unreachable => (
            format!(
                "{hp} cannot be reached: {}",
                detail.unwrap_or("there is no route to that address")
            ),
            Some(AIR_ARC_ADVICE.to_string()),
        ),
        TransportKind::UntrustedCertificate => (
            format!(
                "the TLS certificate of {hp} is not trusted (issued by an unknown CA, expired, \
                 or issued for another name)"
            ),
            Some(
                "the server's certificate is not trusted: for a private or test endpoint, give \
                 its CA to the host (the CA file option)"
                    .to_string(),
            ),
        ),
        TransportKind::TlsFailure => (
            format!("the TLS handshake with {hp} failed{detail_suffix}"),
            Some(no_port.unwrap_or_else(|| {
                format!(
                    "the server at {hp} does not accept this TLS connection: check that the \
                     endpoint is Krypton's ({KRYPTON_BASE_URL})"
                )
            })),
        ),
        TransportKind::ProtocolMismatch if endpoint.scheme == "http" => (
            format!(
                "the server at {hp} does not speak plain HTTP (it answered in another protocol, \
                 such as HTTPS)"
            ),
            Some("this server speaks HTTPS: use https://".to_string()),
        ),
        TransportKind::ProtocolMismatch => (
            format!(
                "the server at {hp} does not speak HTTPS (it answered in another protocol, such \
                 as plain HTTP)"
            ),
            Some(no_port.unwrap_or_else(|| {
                format!(
                    "this server does not speak HTTPS: Krypton speaks HTTPS on port \
                     {KRYPTON_PORT} ({KRYPTON_BASE_URL}); check the endpoint's port"
                )
            })),
        ),
        TransportKind::ConnectionLost => (
            format!("the connection to {hp} broke before the answer was complete{detail_suffix}"),
            Some(
                "the connection broke mid-answer: a later attempt may pass; if it keeps \
                 happening, check the network path to Krypton"
                    .to_string(),
            ),
        ),
        TransportKind::Denied => (
            format!(
                "the host did not let the request to {}://{hp} leave: it is not on the host's \
                 outbound allow-list",
                endpoint.scheme
            ),
            Some(
                "only the endpoint and the origins the host allows may be reached: check the \
                 endpoint"
                    .to_string(),
            ),
        ),
        TransportKind::Other => (
            format!(
                "the request to {hp} failed: {}",
                detail.unwrap_or("an unexpected error")
            ),
            None,
        ),
    };
    TransportError {
        kind,
        request,
        message,
        hint,
        attempts: 1,
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

/// A failed send: the error, and whether sending again may succeed (connection refused or
/// reset, a timeout) or cannot (TLS certificate rejected, refused by the host's allow-list,
/// an oversized body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendFailure {
    pub error: Error,
    pub transient: bool,
}

/// What the flows need from their environment. In the component these are `wasi:http`,
/// `wasi:clocks`, `wasi:random`, stderr and the `secret-store` import; in unit tests, fakes.
pub trait Capabilities {
    /// Send one request and read the whole response body (at most `max_body` bytes), giving
    /// up with [`Error::Timeout`] once `total_ms` have passed, however the server paces it.
    fn send(
        &mut self,
        endpoint: &Endpoint,
        request: &HttpRequest,
        timeouts: Timeouts,
        total_ms: u64,
        max_body: usize,
    ) -> Result<HttpResponse, SendFailure>;
    /// Monotonic time, ms.
    fn monotonic_ms(&self) -> u64;
    /// Wall-clock time, ms since the Unix epoch.
    fn unix_ms(&self) -> u64;
    /// Block for `ms` milliseconds.
    fn sleep_ms(&mut self, ms: u64);
    /// A random number (backoff jitter; not for keys).
    fn random_u64(&mut self) -> u64;
    /// One progress line for the operator. Never called with a secret.
    fn log(&mut self, line: &str);
    fn store_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, Error>;
    fn store_put(&mut self, name: &str, value: &[u8]) -> Result<(), Error>;
    /// Remove a stored value; `true` when there was one.
    fn store_delete(&mut self, name: &str) -> Result<bool, Error>;
}

/// The whole-operation deadline.
pub struct Deadline {
    start_ms: u64,
    pub budget_ms: u64,
}

impl Deadline {
    pub fn remaining(&self, caps: &impl Capabilities) -> u64 {
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
pub struct Run<'a, C: Capabilities> {
    pub caps: &'a mut C,
    endpoint: Endpoint,
    timeouts: Timeouts,
    retry: RetryPolicy,
    pub deadline: Deadline,
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date, as ms from `now_unix_ms`,
/// capped at [`MAX_RETRY_AFTER_MS`]. A malformed value is `None` (the caller's backoff applies).
pub fn retry_after_ms(response: &HttpResponse, now_unix_ms: u64) -> Option<u64> {
    let value = response.header("retry-after")?.trim();
    let ms = if let Ok(secs) = value.parse::<u64>() {
        secs.saturating_mul(1000)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
        at_ms.saturating_sub(now_unix_ms)
    };
    Some(ms.min(MAX_RETRY_AFTER_MS))
}

/// Statuses worth another attempt: 408 Request Timeout, 429 Too Many Requests, 5xx.
fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

impl<'a, C: Capabilities> Run<'a, C> {
    /// Start a run: parse the endpoint and set the deadline clock.
    pub fn new(caps: &'a mut C, request: &ProvisionRequest) -> Result<Self, Error> {
        let endpoint = Endpoint::parse(&request.endpoint)?;
        let start_ms = caps.monotonic_ms();
        Ok(Run {
            caps,
            endpoint,
            timeouts: request.timeouts,
            retry: request.retry,
            deadline: Deadline {
                start_ms,
                budget_ms: u64::from(request.deadline_ms),
            },
        })
    }

    /// Backoff with full jitter before attempt `attempt + 1`, ms.
    fn backoff_ms(&mut self, attempt: u32) -> u64 {
        let exp = u64::from(self.retry.base_delay_ms).saturating_mul(1u64 << attempt.min(30));
        let cap = exp.min(u64::from(self.retry.max_delay_ms));
        if cap == 0 {
            0
        } else {
            self.caps.random_u64() % (cap + 1)
        }
    }

    /// One Krypton call with the retry policy. A 2xx response is returned; 3xx and >= 400
    /// become [`Error::HttpStatus`]; transport failures [`Error::Transport`] or
    /// [`Error::Timeout`]. When more than one attempt was made, the error says so.
    pub fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, Error> {
        let what = self.endpoint.request_line(method, path);
        let request = HttpRequest {
            method,
            path: path.to_string(),
            body,
        };
        let mut attempt = 1u32;
        let outcome = loop {
            let timeouts = self.deadline.clamp(self.caps, self.timeouts, &what)?;
            let started = self.caps.monotonic_ms();
            let total_ms = self.deadline.remaining(self.caps);
            let outcome =
                self.caps
                    .send(&self.endpoint, &request, timeouts, total_ms, MAX_BODY_BYTES);
            let took = self.caps.monotonic_ms().saturating_sub(started);
            let (retry, hint, summary) = match &outcome {
                Ok(r) => {
                    self.caps
                        .log(&format!("{what} -> {} ({took} ms)", r.status));
                    (
                        retryable_status(r.status),
                        retry_after_ms(r, self.caps.unix_ms()),
                        format!("HTTP {}", r.status),
                    )
                }
                Err(f) => {
                    self.caps
                        .log(&format!("{what} failed after {took} ms: {}", f.error));
                    (f.transient, None, f.error.to_string())
                }
            };
            if !retry || attempt >= self.retry.max_attempts.max(1) {
                break outcome;
            }
            let wait = match hint {
                Some(ms) => ms,
                None => self.backoff_ms(attempt - 1),
            };
            if wait >= self.deadline.remaining(self.caps) {
                self.caps.log(&format!(
                    "{what}: not retrying: waiting {wait} ms would pass the operation deadline"
                ));
                break outcome;
            }
            self.caps.log(&format!(
                "{what}: attempt {attempt} failed ({summary}); retrying in {wait} ms"
            ));
            self.caps.sleep_ms(wait);
            attempt += 1;
        };
        let tried = if attempt > 1 {
            format!(" (after {attempt} attempts)")
        } else {
            String::new()
        };
        let response = outcome.map_err(|f| match f.error {
            Error::Transport(mut e) => {
                e.attempts = attempt;
                Error::Transport(e)
            }
            Error::Timeout(m) => Error::Timeout(format!("{m}{tried}")),
            other => other,
        })?;
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
            status => Err(http_status_error(
                status,
                &response.body,
                format!("{what}{tried}"),
            )),
        }
    }
}

/// Build [`Error::HttpStatus`] from an error response: Krypton's `{"code","message"}` when the
/// body has them (the shape SORACOM's API errors use), and at most [`MAX_EXCERPT_BYTES`] of the body.
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

/// What the store holds for one target.
#[derive(Debug)]
pub enum Stored {
    /// Nothing is stored under the target's name.
    Absent,
    /// Something is stored but it cannot be used: not a bundle of this format, a bundle of
    /// another target, or a value that breaks its rule (the error says which). A provisioning
    /// run may replace it.
    Unusable(Error),
    /// A bundle whose every value passed [`Bundle::validate`].
    Present(Bundle),
}

/// Read and check the bundle stored for `target`.
///
/// Errors: [`Error::Storage`] only when the `secret-store` capability itself failed (I/O,
/// too large, a name refused): then nothing is known about what is stored, and no run may
/// go on as if nothing were. Problems with the content are [`Stored::Unusable`].
pub fn read_stored(caps: &mut impl Capabilities, target: Target) -> Result<Stored, Error> {
    let name = target.bundle_name();
    let Some(bytes) = caps.store_get(name)? else {
        return Ok(Stored::Absent);
    };
    let bundle = match Bundle::from_bytes(name, &bytes) {
        Ok(bundle) => bundle,
        Err(e) => return Ok(Stored::Unusable(e)),
    };
    if bundle.target() != target {
        return Ok(Stored::Unusable(Error::Storage(format!(
            "stored bundle `{name}` holds a `{}` bundle",
            bundle.target().name()
        ))));
    }
    Ok(match bundle.validate() {
        Ok(()) => Stored::Present(bundle),
        Err(e) => Stored::Unusable(stored_error(name, e)),
    })
}

/// The stored bundle for `target`, if any, checked ([`read_stored`]).
///
/// Errors: [`Error::Storage`] when the store fails, or the bundle is unreadable, of another
/// format version or of another target; [`Error::InvalidResponse`] naming the field when a
/// stored value breaks its rule (reason "stored bundle `<target>`: ...").
pub fn load(caps: &mut impl Capabilities, target: Target) -> Result<Option<Bundle>, Error> {
    match read_stored(caps, target)? {
        Stored::Absent => Ok(None),
        Stored::Unusable(e) => Err(e),
        Stored::Present(bundle) => Ok(Some(bundle)),
    }
}

fn is_newer_format(e: &Error) -> bool {
    matches!(e, Error::Storage(m) if m.contains("has format version"))
}

/// Report what is stored for `target` (WIT `status`). Errors: see [`load`].
pub fn status(caps: &mut impl Capabilities, target: Target) -> Result<Option<Report>, Error> {
    let name = target.bundle_name();
    load(caps, target)?
        .map(|b| b.report(true).map_err(|e| stored_error(name, e)))
        .transpose()
}

/// Secret-store name of the probe value [`prove_store`] writes and removes.
pub const STORE_PROBE: &str = "store-probe";
/// Size of the probe value, bytes: more than the largest bundle this component writes (an
/// `aws-iot` bundle with an RSA-2048 key, a certificate chain and a root CA is about 7 KiB).
pub const STORE_PROBE_BYTES: usize = 16 * 1024;

/// Whether a run of `target` makes Krypton issue a credential that exists only in its answer
/// (a private key, a WireGuard key, a PSK): losing that answer loses the credential, and the
/// next run mints another (AWS IoT certificates pile up in the customer's account; Arc and
/// Inventory re-key the device). Azure DPS issues a new certificate and key too.
pub fn mints_credentials(target: Target) -> bool {
    matches!(
        target,
        Target::AwsIot | Target::Arc | Target::Inventory | Target::AzureIot
    )
}

/// Prove that the store can take a bundle before Krypton is asked to mint one: put a
/// [`STORE_PROBE_BYTES`] value under [`STORE_PROBE`], then delete it. A full, read-only or
/// failing store is found here, before any credential exists, rather than after Krypton has
/// issued one that could not be kept. (Checking free space instead would need a capability
/// the contract does not have, and would not catch a read-only or failing store.)
///
/// Errors: [`Error::Storage`] saying the store cannot take a bundle and nothing was asked of
/// Krypton.
pub fn prove_store(caps: &mut impl Capabilities) -> Result<(), Error> {
    let cannot = |e: Error| {
        let detail = match e {
            Error::Storage(m) => m,
            other => other.to_string(),
        };
        Error::Storage(format!(
            "the store cannot take a new bundle ({detail}); Krypton was not called, so no \
             credential was issued. Fix the store (space, permissions, files in the way) and \
             run again"
        ))
    };
    let mut probe = Vec::with_capacity(STORE_PROBE_BYTES);
    probe.extend_from_slice(b"{\"probe\":\"");
    probe.resize(STORE_PROBE_BYTES - 2, b'0');
    probe.extend_from_slice(b"\"}");
    caps.store_put(STORE_PROBE, &probe).map_err(cannot)?;
    caps.store_delete(STORE_PROBE).map_err(cannot)?;
    Ok(())
}

/// Provision `request.target` and store its bundle (WIT `provision`).
///
/// Before any Krypton call, what is stored is read: a store failure stops the run with
/// [`Error::Storage`], with or without `force`; a bundle that is absent or unusable may be
/// replaced. Without `force`, a stored bundle that [`Bundle::reusable`] accepts is reported
/// (`reused: true`) and Krypton is not called. Targets that mint credentials
/// ([`mints_credentials`]) then [`prove_store`]. When an Azure device comes back on another hub
/// or under another device ID, one log line says so and the report carries `previousHost` /
/// `previousDeviceId`.
///
/// Errors: every [`Error`] variant; on any error the store is unchanged.
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
    let params = parse_params(request.request_parameters.as_deref())?;
    let target = request.target;
    // Check what can be checked before any call.
    let mut run = Run::new(caps, request)?;
    let plan = targets::plan(target, params)?;

    let previous = match read_stored(run.caps, target)? {
        Stored::Present(bundle) => {
            if !request.force {
                let report = bundle.report(true)?;
                if bundle.reusable(&report, run.caps.unix_ms()) {
                    run.caps.log(&format!(
                        "{}: a valid bundle is stored; reusing it without calling Krypton",
                        target.name()
                    ));
                    return Ok(report);
                }
                run.caps.log(&format!(
                    "{}: the stored bundle is stale; provisioning anew",
                    target.name()
                ));
            }
            Some(bundle)
        }
        // A bundle from a newer component: never replace it silently with an older format.
        Stored::Unusable(e) if is_newer_format(&e) && !request.force => {
            return Err(Error::Storage(format!(
                "{e}; refusing to replace it unless the request sets force"
            )));
        }
        // A bundle that cannot be used is evidence of an edit or a fault on disk, not of "no
        // credentials": replacing it silently would, for AWS IoT, mint a certificate nobody
        // asked for and throw the stored key away. Only a forced run replaces it.
        // The same error `status` and `render-export` give for it, so the same situation has
        // the same exit code everywhere.
        Stored::Unusable(Error::Storage(m)) if !request.force => {
            return Err(Error::Storage(format!(
                "{m}; it is kept as it is: provision with force to replace it"
            )));
        }
        Stored::Unusable(e) if !request.force => return Err(e),
        Stored::Unusable(e) => {
            run.caps
                .log(&format!("{}: {e}; replacing it (forced)", target.name()));
            None
        }
        Stored::Absent => None,
    };
    if mints_credentials(target) {
        prove_store(run.caps)?;
    }

    let bundle = targets::execute(&mut run, plan, u64::from(request.poll_interval_ms))?;
    // Build the report before storing, so a bundle that cannot be reported is never stored;
    // it checks every value once more with the rules used when reading it back.
    let mut report = bundle.report(false)?;
    run.caps
        .store_put(target.bundle_name(), &bundle.to_bytes())?;
    if target == Target::AzureIot {
        // The registration is complete; a failure here only means a later run polls a
        // finished operation once more.
        if let Err(e) = run.caps.store_delete(targets::AZURE_PENDING) {
            run.caps.log(&format!(
                "azure-iot: could not forget the finished registration: {e}"
            ));
        }
    }
    if let (Some(Bundle::AzureIot(old)), Bundle::AzureIot(new)) = (&previous, &bundle) {
        let mut changes = Vec::new();
        if old.host != new.host {
            changes.push(format!("IoT Hub `{}` -> `{}`", old.host, new.host));
            report
                .identifiers
                .push(("previousHost".into(), old.host.clone()));
        }
        if old.device_id != new.device_id {
            changes.push(format!(
                "device ID `{}` -> `{}`",
                old.device_id, new.device_id
            ));
            report
                .identifiers
                .push(("previousDeviceId".into(), old.device_id.clone()));
        }
        if !changes.is_empty() {
            run.caps.log(&format!(
                "azure-iot: the device moved: {}",
                changes.join(", ")
            ));
        }
    }
    run.caps.log(&format!(
        "{}: stored bundle `{}`",
        target.name(),
        report.bundle
    ));
    Ok(report)
}

/// A `wg-quick` configuration from the stored `arc` bundle (WIT `wireguard-config`).
/// Errors: [`Error::Storage`] when no `arc` bundle is stored or the store fails;
/// [`Error::InvalidResponse`] naming the field, reason "stored bundle `arc`: ...", when a
/// stored value breaks its rule or cannot be written in a `wg-quick` file; see
/// [`targets::wireguard_config`].
pub fn wireguard_config(
    caps: &mut impl Capabilities,
    krypton_addresses: &[String],
) -> Result<String, Error> {
    match load(caps, Target::Arc)? {
        // The file is run by wg-quick as root: `load` checked every stored value with the
        // rules used for Krypton's answer, and each one reaches the file through
        // `wg_quick_value`.
        Some(Bundle::Arc(bundle)) => targets::wireguard_config(&bundle, krypton_addresses)
            .map_err(|e| stored_error("arc", e)),
        _ => Err(Error::Storage(
            "no `arc` bundle is stored: provision `arc` first".into(),
        )),
    }
}

/// Render the stored bundle of `target` as export files (WIT `render-export`); see
/// [`crate::exports::render`]. Errors: [`Error::Storage`] when nothing is stored or the store
/// fails; [`Error::InvalidResponse`] naming the field when a stored value breaks its rule or
/// cannot be written in the format.
pub fn render_export(
    caps: &mut impl Capabilities,
    target: Target,
    format: &str,
    directory: &str,
    krypton_addresses: &[String],
) -> Result<Vec<crate::exports::ExportFile>, Error> {
    match load(caps, target)? {
        Some(bundle) => crate::exports::render(&bundle, format, directory, krypton_addresses),
        None => Err(Error::Storage(format!(
            "no `{}` bundle is stored: provision `{}` first",
            target.name(),
            target.name()
        ))),
    }
}
