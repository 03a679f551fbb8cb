//! Failures of one call put in words: a transport failure with its kind, message and hint
//! ([`transport_failure`]), whether another attempt may help ([`transient`]), and an HTTP error
//! status with Krypton's `code` and `message` ([`http_status_error`]).

use super::endpoint::{Endpoint, KRYPTON_BASE_URL, KRYPTON_PORT};
use crate::types::model::{Error, TransportError, TransportKind};
use serde_json::{Map, Value};

/// Krypton's network-authenticated host (SORACOM Krypton developer documentation).
const KRYPTON_HOST: &str = "krypton.soracom.io";
/// Longest error-body excerpt kept in [`Error::HttpStatus`], bytes.
pub const MAX_EXCERPT_BYTES: usize = 512;

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
/// `attempts` is 1: [`crate::client::Run::call`] counts the attempts.
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
