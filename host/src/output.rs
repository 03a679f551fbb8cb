//! How results reach the operator: human text, `--json` objects and exit codes.
//!
//! Reports carry identifiers, the certificate's SHA-256 fingerprint, subject and validity,
//! never a key (the component's report type has no field that could hold one).

use crate::runtime::{ProvisionError, ProvisionReport, Target, TransportKind};
use serde_json::{Map, Value, json};

/// Exit codes of `krypton-host` (also listed in `--help`).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Host failure: the component could not be loaded or trapped, or another internal error.
    pub const INTERNAL: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// Invalid request or configuration: endpoint, parameters, CA file.
    pub const INVALID_REQUEST: u8 = 3;
    /// Could not reach Krypton: DNS, connect, TLS, refused by the allow-list.
    pub const TRANSPORT: u8 = 4;
    /// A timeout or the operation deadline passed.
    pub const TIMEOUT: u8 = 5;
    /// Krypton answered with an HTTP error status (or a redirect).
    pub const HTTP_STATUS: u8 = 6;
    /// Krypton answered 200 with an unusable body.
    pub const INVALID_RESPONSE: u8 = 7;
    /// The Azure DPS registration ended without an assignment.
    pub const REGISTRATION_FAILED: u8 = 8;
    /// The secret store failed.
    pub const STORAGE: u8 = 9;
    /// The component does not support the target or mode.
    pub const UNSUPPORTED: u8 = 10;
    /// Nothing is stored: `status TARGET`, or `wireguard-config` without an `arc` bundle.
    pub const NOT_PROVISIONED: u8 = 11;
    /// `doctor`: an address of Krypton is outside the tunnel's `AllowedIPs`.
    pub const NOT_ROUTED: u8 = 12;
}

/// Every error `kind` of `--json` output with its exit code: the one table both are derived
/// from. An error object is `{"ok": false, "exitCode": N, "error": {"kind": K, "message": …}}`
/// where `K` is the kind listed here for `N` (component errors add their typed fields).
pub const ERROR_KINDS: [(&str, u8); 12] = [
    ("internal", exit::INTERNAL),
    ("usage", exit::USAGE),
    ("invalid-request", exit::INVALID_REQUEST),
    ("transport", exit::TRANSPORT),
    ("timeout", exit::TIMEOUT),
    ("http-status", exit::HTTP_STATUS),
    ("invalid-response", exit::INVALID_RESPONSE),
    ("registration-failed", exit::REGISTRATION_FAILED),
    ("storage", exit::STORAGE),
    ("unsupported", exit::UNSUPPORTED),
    ("not-provisioned", exit::NOT_PROVISIONED),
    ("not-routed", exit::NOT_ROUTED),
];

/// The error `kind` for an exit code ([`ERROR_KINDS`]); `internal` for a code not listed.
pub fn error_kind(code: u8) -> &'static str {
    ERROR_KINDS
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(k, _)| *k)
        .unwrap_or("internal")
}

/// The `--json` object for a failure that is not a component error: `{"ok": false,
/// "exitCode": code, "error": {"kind": error_kind(code), "message": message}}`.
pub fn failure_json(code: u8, message: &str) -> Value {
    json!({"ok": false, "exitCode": code, "error": {"kind": error_kind(code), "message": message}})
}

/// The text for `--help`: each exit code with its `--json` error kind.
pub const EXIT_CODES_HELP: &str = "Exit codes (the same on every command; with --json the error object's \"kind\" is the name in brackets):
  0  success
  1  [internal] host failure (component could not load, trapped)
  2  [usage] bad command line (with --json: one JSON object on stdout too)
  3  [invalid-request] invalid request or configuration (endpoint, parameters, CA file, config keys)
  4  [transport] Krypton (or the daemon's control socket) unreachable: DNS, connect, TLS, not on the allow-list
  5  [timeout] a request, or the whole operation's deadline
  6  [http-status] Krypton answered an HTTP error status or a redirect
  7  [invalid-response] Krypton's answer, or a stored bundle, is unusable (JSON, fields, certificate or key)
  8  [registration-failed] Azure DPS registration ended without an assignment
  9  [storage] secret store or output file failure (path, permissions, lock held)
 10  [unsupported] target or mode not supported by the component
 11  [not-provisioned] nothing stored: status (with or without TARGET), export, wireguard-config
 12  [not-routed] doctor: Krypton's address is outside the tunnel's AllowedIPs";

/// Parse a target name (`azure-iot`, `aws-iot`, ...).
pub fn parse_target(name: &str) -> Result<Target, String> {
    ALL_TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<_> = ALL_TARGETS.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown target `{name}`; expected one of: {}",
                names.join(", ")
            )
        })
}

/// Every target, by CLI name, in the WIT's order.
pub const ALL_TARGETS: [(&str, Target); 8] = [
    ("azure-iot", Target::AzureIot),
    ("aws-iot", Target::AwsIot),
    ("aws-cognito", Target::AwsCognito),
    ("aws-cognito-openid", Target::AwsCognitoOpenid),
    ("inventory", Target::Inventory),
    ("arc", Target::Arc),
    ("subscriber-metadata", Target::SubscriberMetadata),
    ("userdata", Target::Userdata),
];

/// The CLI name of a target.
pub fn target_name(target: Target) -> &'static str {
    ALL_TARGETS
        .iter()
        .find(|(_, t)| *t == target)
        .map(|(n, _)| *n)
        .expect("every target is listed")
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-29T18:00:00Z`); the number itself when
/// it is outside what a date can hold.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// The `--json` object for a report: `target`, `bundle`, `reused`, `obtainedAt`, each
/// identifier under its Krypton name (`deviceId`, `host`, ...), and `certificate`.
pub fn report_json(report: &ProvisionReport) -> Value {
    let mut obj = Map::new();
    obj.insert("ok".into(), json!(true));
    obj.insert("target".into(), json!(target_name(report.target)));
    obj.insert("bundle".into(), json!(report.bundle));
    obj.insert("reused".into(), json!(report.reused));
    obj.insert(
        "obtainedAt".into(),
        json!(rfc3339((report.obtained_at_ms / 1000) as i64)),
    );
    for (key, value) in &report.identifiers {
        obj.insert(key.clone(), json!(value));
    }
    // Sizes are numbers, and JSON numbers (`"bytes": 27`).
    for (key, value) in &report.sizes {
        obj.insert(key.clone(), json!(value));
    }
    if let Some(c) = &report.certificate {
        obj.insert(
            "certificate".into(),
            json!({
                "sha256Fingerprint": c.sha256_fingerprint,
                "subject": c.subject,
                "issuer": c.issuer,
                "notBefore": rfc3339(c.not_before),
                "notAfter": rfc3339(c.not_after),
            }),
        );
    }
    Value::Object(obj)
}

/// Human text for a report, one fact per line.
pub fn report_text(report: &ProvisionReport) -> String {
    let mut out = format!(
        "{}: {} bundle `{}` (obtained {})\n",
        target_name(report.target),
        if report.reused {
            "stored"
        } else {
            "provisioned"
        },
        report.bundle,
        rfc3339((report.obtained_at_ms / 1000) as i64)
    );
    for (key, value) in &report.identifiers {
        out.push_str(&format!("  {key:<24} {value}\n"));
    }
    for (key, value) in &report.sizes {
        out.push_str(&format!("  {key:<24} {value}\n"));
    }
    if let Some(c) = &report.certificate {
        out.push_str(&format!(
            "  {:<24} {}\n",
            "certificate SHA-256", c.sha256_fingerprint
        ));
        out.push_str(&format!("  {:<24} {}\n", "subject", c.subject));
        out.push_str(&format!("  {:<24} {}\n", "issuer", c.issuer));
        out.push_str(&format!("  {:<24} {}\n", "not after", rfc3339(c.not_after)));
    }
    out
}

/// Exit code for a component error.
pub fn exit_code(error: &ProvisionError) -> u8 {
    match error {
        ProvisionError::InvalidRequest(_) => exit::INVALID_REQUEST,
        ProvisionError::Unsupported(_) => exit::UNSUPPORTED,
        ProvisionError::Transport(_) => exit::TRANSPORT,
        ProvisionError::Timeout(_) => exit::TIMEOUT,
        ProvisionError::HttpStatus(_) => exit::HTTP_STATUS,
        ProvisionError::InvalidResponse(_) => exit::INVALID_RESPONSE,
        ProvisionError::RegistrationFailed(_) => exit::REGISTRATION_FAILED,
        ProvisionError::Storage(_) => exit::STORAGE,
    }
}

/// The name of a transport kind in `--json` output (the WIT enum case).
pub fn transport_kind(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::NameNotFound => "name-not-found",
        TransportKind::NameResolutionFailed => "name-resolution-failed",
        TransportKind::ConnectionRefused => "connection-refused",
        TransportKind::ConnectionTimeout => "connection-timeout",
        TransportKind::Unreachable => "unreachable",
        TransportKind::UntrustedCertificate => "untrusted-certificate",
        TransportKind::TlsFailure => "tls-failure",
        TransportKind::ProtocolMismatch => "protocol-mismatch",
        TransportKind::ConnectionLost => "connection-lost",
        TransportKind::Denied => "denied",
        TransportKind::Other => "other",
    }
}

/// The transport kind in plain words, for text output.
pub fn transport_kind_text(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::NameNotFound => "the name does not exist",
        TransportKind::NameResolutionFailed => "the name could not be resolved",
        TransportKind::ConnectionRefused => "connection refused",
        TransportKind::ConnectionTimeout => "no answer to the connection attempt",
        TransportKind::Unreachable => "the address is unreachable",
        TransportKind::UntrustedCertificate => "the server's TLS certificate is not trusted",
        TransportKind::TlsFailure => "the TLS handshake failed",
        TransportKind::ProtocolMismatch => "the server speaks another protocol",
        TransportKind::ConnectionLost => "the connection was lost",
        TransportKind::Denied => "refused by this host's outbound allow-list",
        TransportKind::Other => "transport error",
    }
}

/// The `--json` object for a component error: `{"ok": false, "exitCode": N, "error": {"kind":
/// …, …}}`, the kind taken from [`ERROR_KINDS`] for the error's exit code. A transport error
/// carries its typed fields: `transportKind` (the WIT enum case), `request` (as sent),
/// `message`, `hint` (string or null) and `attempts` (a number).
pub fn error_json(error: &ProvisionError) -> Value {
    let detail = match error {
        ProvisionError::InvalidRequest(m) => json!({"message": m}),
        ProvisionError::Unsupported(m) => json!({"message": m}),
        ProvisionError::Transport(e) => json!({
            "transportKind": transport_kind(e.kind), "request": e.request,
            "message": e.message, "hint": e.hint, "attempts": e.attempts,
        }),
        ProvisionError::Timeout(m) => json!({"message": m}),
        ProvisionError::HttpStatus(e) => json!({
            "status": e.status, "code": e.code, "message": e.message,
            "bodyExcerpt": e.body_excerpt, "request": e.request,
        }),
        ProvisionError::InvalidResponse(e) => {
            json!({"field": e.field, "reason": e.reason})
        }
        ProvisionError::RegistrationFailed(e) => json!({
            "operationId": e.operation_id, "status": e.status,
        }),
        ProvisionError::Storage(m) => json!({"message": m}),
    };
    let code = exit_code(error);
    let mut detail = detail;
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("kind".into(), json!(error_kind(code)));
    }
    json!({"ok": false, "exitCode": code, "error": detail})
}

/// Text from the network made safe for a terminal: control characters (escape sequences,
/// carriage returns) become `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Human text for an error: what happened, then what to do next. Text that came from Krypton
/// is stripped of control characters.
pub fn error_text(error: &ProvisionError) -> String {
    match error {
        // Every text from the component passes through `printable`: a component is code the
        // host did not write, and its words must not drive the operator's terminal either.
        ProvisionError::InvalidRequest(m) => format!("error: invalid request: {}", printable(m)),
        ProvisionError::Unsupported(m) => format!("error: not supported: {}", printable(m)),
        ProvisionError::Transport(e) => {
            let mut s = format!(
                "error: could not reach Krypton: {}: {}",
                transport_kind_text(e.kind),
                printable(&e.message)
            );
            if !e.request.is_empty() {
                s.push_str(&format!(" ({})", printable(&e.request)));
            }
            if e.attempts > 1 {
                s.push_str(&format!(" after {} attempts", e.attempts));
            }
            if let Some(hint) = &e.hint {
                s.push_str(&format!("\nhint: {}", printable(hint)));
            }
            // The component speaks of "the CA file option"; this host's name for it, chosen by
            // the typed kind, never by the text.
            if e.kind == TransportKind::UntrustedCertificate {
                s.push_str(
                    "\nhint: here that is --ca-file PEM (or `ca_file` in gateway.toml); a CA \
                     file that is already given does not cover this server's name or issuer",
                );
            }
            s
        }
        ProvisionError::Timeout(m) => format!(
            "error: timed out: {}\n\
             hint: on SORACOM Arc a request to Krypton times out when Krypton's address is not \
             inside the WireGuard AllowedIPs; otherwise raise --deadline-secs.",
            printable(m)
        ),
        ProvisionError::HttpStatus(e) => {
            let mut s = format!(
                "error: {} answered HTTP {}",
                printable(&e.request),
                e.status
            );
            if let Some(code) = &e.code {
                s.push_str(&format!(" ({})", printable(code)));
            }
            if let Some(message) = &e.message {
                s.push_str(&format!(": {}", printable(message)));
            } else if !e.body_excerpt.is_empty() {
                s.push_str(&format!(": {}", printable(&e.body_excerpt)));
            }
            if matches!(e.status, 401 | 403) {
                s.push_str(
                    "\nhint: check that Krypton is enabled for this SIM's group and that the \
                     request leaves over SORACOM Air or Arc",
                );
            }
            s
        }
        // The component starts the reason with "stored bundle `NAME`" when the value came from
        // the store (checked again before it is rendered) rather than from Krypton.
        ProvisionError::InvalidResponse(e) if e.reason.starts_with("stored bundle `") => format!(
            "error: the stored bundle is unusable: field `{}`: {}\n\
             nothing was written; provision the target again with --force to replace the bundle",
            printable(&e.field),
            printable(&e.reason)
        ),
        ProvisionError::InvalidResponse(e) => format!(
            "error: Krypton's answer is unusable: field `{}`: {}\nnothing was stored; the previous bundle is unchanged",
            printable(&e.field),
            printable(&e.reason)
        ),
        ProvisionError::RegistrationFailed(e) => format!(
            "error: Azure DPS registration {} ended with status `{}`\n\
             hint: check the DPS enrollment and the Krypton Azure IoT configuration of the SIM's group",
            printable(&e.operation_id),
            printable(&e.status)
        ),
        ProvisionError::Storage(m) => format!("error: secret store: {}", printable(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_text_cannot_drive_the_terminal_in_any_error() {
        let evil = "x\u{1b}]0;owned\u{7}\ry".to_string();
        for error in [
            ProvisionError::InvalidRequest(evil.clone()),
            ProvisionError::Unsupported(evil.clone()),
            ProvisionError::Timeout(evil.clone()),
            ProvisionError::Storage(evil.clone()),
        ] {
            let text = error_text(&error);
            assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
            assert!(text.contains("x?]0;owned??y"), "{text:?}");
        }
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn text_from_the_network_cannot_drive_the_terminal() {
        assert_eq!(printable("ok \u{1b}[2J\r\nx"), "ok ?[2J??x");
    }

    fn transport(kind: TransportKind, hint: Option<&str>, attempts: u32) -> ProvisionError {
        ProvisionError::Transport(crate::runtime::TransportError {
            kind,
            request: "POST https://krypton.example:8036/v1/provisioning/aws/iot/bootstrap".into(),
            message: "connection refused by 127.0.0.1:8036".into(),
            hint: hint.map(str::to_string),
            attempts,
        })
    }

    #[test]
    fn every_component_error_kind_matches_its_exit_code() {
        use crate::runtime::TransportKind as K;
        let errors = [
            ProvisionError::InvalidRequest("x".into()),
            ProvisionError::Unsupported("x".into()),
            transport(K::ConnectionRefused, None, 1),
            ProvisionError::Timeout("x".into()),
            ProvisionError::HttpStatus(
                crate::runtime::bindings::soracom::krypton::types::HttpStatusError {
                    status: 500,
                    code: None,
                    message: None,
                    body_excerpt: String::new(),
                    request: "POST /v1/x".into(),
                },
            ),
            ProvisionError::Storage("x".into()),
        ];
        for error in &errors {
            let v = error_json(error);
            let code = exit_code(error);
            assert_eq!(v["exitCode"], u64::from(code), "{v}");
            assert_eq!(v["error"]["kind"], error_kind(code), "{v}");
            assert_eq!(v["ok"], false);
        }
    }

    #[test]
    fn a_transport_error_is_rendered_from_its_fields() {
        let e = transport(
            TransportKind::ConnectionRefused,
            Some("the endpoint has no port: Krypton listens on 8036"),
            4,
        );
        assert_eq!(
            error_json(&e),
            json!({"ok": false, "exitCode": 4, "error": {
                "kind": "transport", "transportKind": "connection-refused",
                "request": "POST https://krypton.example:8036/v1/provisioning/aws/iot/bootstrap",
                "message": "connection refused by 127.0.0.1:8036",
                "hint": "the endpoint has no port: Krypton listens on 8036",
                "attempts": 4,
            }})
        );
        assert_eq!(
            error_text(&e),
            "error: could not reach Krypton: connection refused: connection refused by \
             127.0.0.1:8036 (POST https://krypton.example:8036/v1/provisioning/aws/iot/bootstrap) \
             after 4 attempts\nhint: the endpoint has no port: Krypton listens on 8036"
        );
        // One attempt, no hint: neither is mentioned.
        let e = transport(TransportKind::NameNotFound, None, 1);
        let text = error_text(&e);
        assert!(text.starts_with("error: could not reach Krypton: the name does not exist: "));
        assert!(
            !text.contains("attempts") && !text.contains("hint"),
            "{text}"
        );
        assert_eq!(error_json(&e)["error"]["hint"], Value::Null);
    }

    #[test]
    fn every_target_name_round_trips() {
        for (name, target) in ALL_TARGETS {
            assert_eq!(parse_target(name), Ok(target));
            assert_eq!(target_name(target), name);
        }
        assert!(
            parse_target("azure")
                .unwrap_err()
                .contains("azure-iot, aws-iot")
        );
    }
}
