//! How results reach the operator: human text, `--json` objects and exit codes.
//!
//! Reports carry identifiers, the certificate's SHA-256 fingerprint, subject and validity,
//! never a key (the component's report type has no field that could hold one).

use krypton_host::bindings::{
    AuthMode, Failure, ProvisionError, ProvisionReport, SimError, TransportKind, UiccError,
};
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
    /// SIM-authenticated mode failed: the SIM could not be reached or refused the challenge,
    /// or the Keys API did not verify it.
    pub const SIM: u8 = 13;
}

/// Every error `kind` of `--json` output with its exit code: the one table both are derived
/// from. An error object is `{"ok": false, "exitCode": N, "error": {"kind": K, "message": …}}`
/// where `K` is the kind listed here for `N` (component errors add their typed fields).
pub const ERROR_KINDS: [(&str, u8); 13] = [
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
    ("sim", exit::SIM),
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
 12  [not-routed] doctor: Krypton's address is outside the tunnel's AllowedIPs
 13  [sim] SIM-authenticated mode: the SIM unreachable or refusing the challenge, or the Keys API refusing it";

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

/// The `--json` object for a report of the target called `name` (its `target-info.name`):
/// `target`, `bundle`, `reused`, `obtainedAt`, each identifier under the component's name for
/// it, and `certificate`.
pub fn report_json(name: &str, report: &ProvisionReport) -> Value {
    let mut obj = Map::new();
    obj.insert("ok".into(), json!(true));
    obj.insert("target".into(), json!(name));
    obj.insert("bundle".into(), json!(report.bundle));
    obj.insert("reused".into(), json!(report.reused));
    obj.insert(
        "obtainedAt".into(),
        json!(rfc3339((report.obtained_at_ms / 1000) as i64)),
    );
    // The component names identifiers and sizes: one never replaces a key of this object
    // (`ok`, `target`, ...) or an earlier one, and `certificate` is the host's.
    for (key, value) in &report.identifiers {
        if !obj.contains_key(key) && key != "certificate" {
            obj.insert(key.clone(), json!(value));
        }
    }
    // Sizes are numbers, and JSON numbers (`"bytes": 27`).
    for (key, value) in &report.sizes {
        if !obj.contains_key(key) && key != "certificate" {
            obj.insert(key.clone(), json!(value));
        }
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

/// Human text for a report of the target called `name`, one fact per line.
pub fn report_text(name: &str, report: &ProvisionReport) -> String {
    let mut out = format!(
        "{}: {} bundle `{}` (obtained {})\n",
        printable(name),
        if report.reused {
            "stored"
        } else {
            "provisioned"
        },
        printable(&report.bundle),
        rfc3339((report.obtained_at_ms / 1000) as i64)
    );
    // The report's texts come from the component: filtered as its errors are.
    for (key, value) in &report.identifiers {
        let (key, value) = (printable(key), printable(value));
        out.push_str(&format!("  {key:<24} {value}\n"));
    }
    for (key, value) in &report.sizes {
        let key = printable(key);
        out.push_str(&format!("  {key:<24} {value}\n"));
    }
    if let Some(c) = &report.certificate {
        out.push_str(&format!(
            "  {:<24} {}\n",
            "certificate SHA-256",
            printable(&c.sha256_fingerprint)
        ));
        out.push_str(&format!("  {:<24} {}\n", "subject", printable(&c.subject)));
        out.push_str(&format!("  {:<24} {}\n", "issuer", printable(&c.issuer)));
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
        ProvisionError::Sim(_) => exit::SIM,
    }
}

/// The name of an authentication mode in `--json` output and text (the WIT enum case).
pub fn auth_mode(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Network => "network",
        AuthMode::Sim => "sim",
    }
}

/// The name of a `uicc-error` case in `--json` output (the WIT case).
pub fn uicc_error_kind(error: &UiccError) -> &'static str {
    match error {
        UiccError::Unavailable(_) => "unavailable",
        UiccError::NoSim(_) => "no-sim",
        UiccError::Io(_) => "io",
        UiccError::StatusWord(_) => "status-word",
        UiccError::MacFailure => "mac-failure",
    }
}

/// A `uicc-error` in plain words (its text stripped of control characters).
fn uicc_error_text(error: &UiccError) -> String {
    match error {
        UiccError::Unavailable(m) => format!("no SIM access: {}", printable(m)),
        UiccError::NoSim(m) => format!("no SIM: {}", printable(m)),
        UiccError::Io(m) => format!("SIM reader or modem failed: {}", printable(m)),
        UiccError::StatusWord(sw) => format!(
            "the SIM answered status {:02X} {:02X} to {}",
            sw.sw1,
            sw.sw2,
            printable(&sw.command)
        ),
        UiccError::MacFailure => "the SIM rejected the Keys API's challenge (MAC failure, 98 62): the SIM and the Keys API do not share its key"
            .into(),
    }
}

/// The `--json` fields of a SIM failure: `simError` (`uicc` or `key-agreement`), `message`,
/// and for a `uicc` error `uiccError` (the WIT case) with `sw1`, `sw2` (numbers) and
/// `command` for a status word.
fn sim_error_json(error: &SimError) -> Value {
    match error {
        SimError::KeyAgreement(m) => json!({"simError": "key-agreement", "message": m}),
        SimError::Uicc(u) => {
            let mut v = json!({"simError": "uicc", "uiccError": uicc_error_kind(u),
                               "message": uicc_error_text(u)});
            if let (UiccError::StatusWord(sw), Some(obj)) = (u, v.as_object_mut()) {
                obj.insert("sw1".into(), json!(sw.sw1));
                obj.insert("sw2".into(), json!(sw.sw2));
                obj.insert("command".into(), json!(sw.command));
            }
            v
        }
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

/// The `--json` object for a component failure: `{"ok": false, "exitCode": N, "error":
/// {"kind": …, …}}`, the kind taken from [`ERROR_KINDS`] for the error's exit code, then the
/// error's typed fields, and `hint` (the component's advice, text) when it gives one. A
/// transport error always carries `hint` (text or null) beside `transportKind` (the WIT enum
/// case), `request` (as sent), `message` and `attempts` (a number).
pub fn error_json(failure: &Failure) -> Value {
    let error = &failure.error;
    let mut detail = match error {
        ProvisionError::InvalidRequest(m) => json!({"message": m}),
        ProvisionError::Unsupported(m) => json!({"message": m}),
        ProvisionError::Transport(e) => json!({
            "transportKind": transport_kind(e.kind), "request": e.request,
            "message": e.message, "hint": failure.hint.as_deref().map(bounded), "attempts": e.attempts,
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
        ProvisionError::Sim(e) => sim_error_json(e),
    };
    let code = exit_code(error);
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("kind".into(), json!(error_kind(code)));
        if let Some(hint) = &failure.hint {
            obj.insert("hint".into(), json!(bounded(hint)));
        }
    }
    json!({"ok": false, "exitCode": code, "error": detail})
}

/// Most characters of one text from the component that reach the operator (a hint, a message,
/// a reason); the rest is cut and counted. Krypton's own error bodies reach the component as at
/// most 512 bytes, so only a component gone wrong reaches this.
pub const MAX_COMPONENT_TEXT_CHARS: usize = 4096;

/// Characters never printed as they are: control characters (escape sequences, carriage
/// returns, line feeds) and the bidirectional formatting characters of Unicode's Bidirectional
/// Algorithm (UAX #9: `U+061C`, `U+200E`, `U+200F`, `U+202A`-`U+202E`, `U+2066`-`U+2069`), which
/// reorder what a terminal shows.
pub fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` cut to [`MAX_COMPONENT_TEXT_CHARS`] characters, with how many bytes were cut.
fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_COMPONENT_TEXT_CHARS) {
        None => std::borrow::Cow::Borrowed(text),
        Some((at, _)) => std::borrow::Cow::Owned(format!(
            "{}... ({} more bytes)",
            &text[..at],
            text.len() - at
        )),
    }
}

/// Text from the network or the component made safe for a terminal: bounded
/// ([`MAX_COMPONENT_TEXT_CHARS`]), and every [`is_unprintable`] character (escape sequences,
/// carriage returns, bidirectional overrides) becomes `?`.
pub fn printable(text: &str) -> String {
    bounded(text)
        .chars()
        .map(|c| if is_unprintable(c) { '?' } else { c })
        .collect()
}

/// This host's own words for what the component's advice calls a request field or a
/// setting, chosen by the error's typed fields (never by its text): the command-line flag
/// (and the daemon's configuration key) that sets it here.
fn host_hint(error: &ProvisionError) -> Option<&'static str> {
    match error {
        ProvisionError::Transport(e) if e.kind == TransportKind::UntrustedCertificate => Some(
            "here that is --ca-file PEM (or `ca_file` in gateway.toml); a CA file that is \
             already given does not cover this server's name or issuer",
        ),
        ProvisionError::Timeout(_) => {
            Some("here that is --deadline-secs (or `limits.deadline_secs` in gateway.toml)")
        }
        ProvisionError::InvalidResponse(e) if e.stored => Some("here that is --force"),
        ProvisionError::Sim(SimError::Uicc(UiccError::Unavailable(_))) => Some(
            "here that is --uicc soft --sim-file FILE (a software SIM), --uicc modem --port DEV \
             (a modem), or --uicc pcsc (a card reader); the daemon's [uicc] section in gateway.toml",
        ),
        ProvisionError::Sim(SimError::Uicc(UiccError::NoSim(_) | UiccError::Io(_))) => Some(
            "here that is --uicc, --sim-file, --port, --baud and --uicc-timeout-ms (the [uicc] \
             section in gateway.toml); `krypton-host sim --list-ports` lists serial ports",
        ),
        _ => None,
    }
}

/// Human text for a failure: what happened, then what to do next (the component's hint, then
/// this host's name for the flag it speaks of, keyed on the error's typed fields only). Every text from the
/// component is stripped of control characters.
pub fn error_text(failure: &Failure) -> String {
    let mut s = match &failure.error {
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
            s
        }
        ProvisionError::Timeout(m) => format!("error: timed out: {}", printable(m)),
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
            s
        }
        // The component says (typed) whether the value came from the store, checked again
        // before it is rendered, rather than from Krypton.
        ProvisionError::InvalidResponse(e) if e.stored => format!(
            "error: the stored bundle is unusable: field `{}`: {}\nnothing was written",
            printable(&e.field),
            printable(&e.reason)
        ),
        ProvisionError::InvalidResponse(e) => format!(
            "error: Krypton's answer is unusable: field `{}`: {}\nnothing was stored; the previous bundle is unchanged",
            printable(&e.field),
            printable(&e.reason)
        ),
        ProvisionError::RegistrationFailed(e) => format!(
            "error: Azure DPS registration {} ended with status `{}`",
            printable(&e.operation_id),
            printable(&e.status)
        ),
        ProvisionError::Storage(m) => format!("error: secret store: {}", printable(m)),
        ProvisionError::Sim(SimError::Uicc(u)) => {
            format!("error: SIM-authenticated mode: {}", uicc_error_text(u))
        }
        ProvisionError::Sim(SimError::KeyAgreement(m)) => format!(
            "error: SIM-authenticated mode: the Keys API did not authenticate the SIM: {}",
            printable(m)
        ),
    };
    if let Some(hint) = &failure.hint {
        s.push_str(&format!("\nhint: {}", printable(hint)));
    }
    if let Some(hint) = host_hint(&failure.error) {
        s.push_str(&format!("\nhint: {hint}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure without advice.
    fn bare(error: ProvisionError) -> Failure {
        Failure { error, hint: None }
    }

    #[test]
    fn component_text_cannot_drive_the_terminal_in_any_error() {
        let evil = "x\u{1b}]0;owned\u{7}\ry".to_string();
        for error in [
            ProvisionError::InvalidRequest(evil.clone()),
            ProvisionError::Unsupported(evil.clone()),
            ProvisionError::Timeout(evil.clone()),
            ProvisionError::Storage(evil.clone()),
        ] {
            let text = error_text(&Failure {
                error,
                hint: Some(evil.clone()),
            });
            assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
            assert!(text.contains("x?]0;owned??y"), "{text:?}");
        }
    }

    #[test]
    fn sim_failures_are_exit_13_with_their_typed_fields_and_the_flags_to_set() {
        use krypton_host::bindings::StatusWord;
        let unavailable = Failure {
            error: ProvisionError::Sim(SimError::Uicc(UiccError::Unavailable(
                "no SIM access configured".into(),
            ))),
            hint: Some("configure the SIM".into()),
        };
        assert_eq!(exit_code(&unavailable.error), exit::SIM);
        assert_eq!(error_kind(exit::SIM), "sim");
        let v = error_json(&unavailable);
        assert_eq!(v["exitCode"], 13);
        assert_eq!(v["error"]["kind"], "sim");
        assert_eq!(v["error"]["simError"], "uicc");
        assert_eq!(v["error"]["uiccError"], "unavailable");
        assert_eq!(v["error"]["hint"], "configure the SIM");
        let text = error_text(&unavailable);
        assert!(
            text.starts_with("error: SIM-authenticated mode: no SIM access: "),
            "{text}"
        );
        assert!(
            text.contains(
                "hint: configure the SIM\nhint: here that is --uicc soft --sim-file FILE"
            ),
            "{text}"
        );

        let sw = bare(ProvisionError::Sim(SimError::Uicc(UiccError::StatusWord(
            StatusWord {
                sw1: 0x69,
                sw2: 0x82,
                command: "AUTHENTICATE".into(),
            },
        ))));
        let v = error_json(&sw);
        assert_eq!(
            (v["error"]["sw1"].as_u64(), v["error"]["sw2"].as_u64()),
            (Some(0x69), Some(0x82))
        );
        assert_eq!(v["error"]["command"], "AUTHENTICATE");
        assert!(error_text(&sw).contains("status 69 82 to AUTHENTICATE"));

        let refused = bare(ProvisionError::Sim(SimError::KeyAgreement(
            "POST /v1/keys/k-1/verify answered 401".into(),
        )));
        let v = error_json(&refused);
        assert_eq!(v["error"]["simError"], "key-agreement");
        assert!(v["error"].get("uiccError").is_none());
        assert!(!error_text(&refused).contains("hint"));
        assert_eq!(
            error_json(&bare(ProvisionError::Sim(SimError::Uicc(
                UiccError::MacFailure
            ))))["error"]["uiccError"],
            "mac-failure"
        );
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

    fn transport(kind: TransportKind, hint: Option<&str>, attempts: u32) -> Failure {
        Failure {
            error: ProvisionError::Transport(krypton_host::bindings::TransportError {
                kind,
                request: "POST https://krypton.example:8036/v1/x".into(),
                message: "connection refused by 127.0.0.1:8036".into(),
                attempts,
            }),
            hint: hint.map(str::to_string),
        }
    }

    #[test]
    fn every_component_error_kind_matches_its_exit_code() {
        use krypton_host::bindings::TransportKind as K;
        let errors = [
            bare(ProvisionError::InvalidRequest("x".into())),
            bare(ProvisionError::Unsupported("x".into())),
            transport(K::ConnectionRefused, None, 1),
            bare(ProvisionError::Timeout("x".into())),
            bare(ProvisionError::HttpStatus(
                krypton_host::bindings::soracom::krypton::types::HttpStatusError {
                    status: 500,
                    code: None,
                    message: None,
                    body_excerpt: String::new(),
                    request: "POST /x".into(),
                },
            )),
            bare(ProvisionError::Storage("x".into())),
        ];
        for failure in &errors {
            let v = error_json(failure);
            let code = exit_code(&failure.error);
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
                "request": "POST https://krypton.example:8036/v1/x",
                "message": "connection refused by 127.0.0.1:8036",
                "hint": "the endpoint has no port: Krypton listens on 8036",
                "attempts": 4,
            }})
        );
        assert_eq!(
            error_text(&e),
            "error: could not reach Krypton: connection refused: connection refused by \
             127.0.0.1:8036 (POST https://krypton.example:8036/v1/x) \
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
    fn the_components_hint_comes_first_then_this_hosts_flag() {
        let timeout = Failure {
            error: ProvisionError::Timeout("deadline of 1000 ms passed".into()),
            hint: Some("raise the request's deadline-ms".into()),
        };
        assert_eq!(
            error_text(&timeout),
            "error: timed out: deadline of 1000 ms passed\n\
             hint: raise the request's deadline-ms\n\
             hint: here that is --deadline-secs (or `limits.deadline_secs` in gateway.toml)"
        );
        // Every error with advice carries it in JSON; one without has no `hint` (transport
        // errors excepted: theirs is always there, text or null).
        assert_eq!(
            error_json(&timeout)["error"]["hint"],
            "raise the request's deadline-ms"
        );
        assert!(
            error_json(&bare(ProvisionError::Storage("x".into())))["error"]
                .get("hint")
                .is_none()
        );
        let stored = |stored: bool| Failure {
            error: ProvisionError::InvalidResponse(
                krypton_host::bindings::soracom::krypton::types::InvalidResponse {
                    field: "region".into(),
                    reason: "not a region".into(),
                    stored,
                },
            ),
            hint: stored.then(|| "provision again with force".into()),
        };
        assert!(error_text(&stored(true)).ends_with(
            "nothing was written\nhint: provision again with force\nhint: here that is --force"
        ));
        assert!(error_text(&stored(false)).ends_with("the previous bundle is unchanged"));
    }

    #[test]
    fn a_components_identifiers_never_replace_the_reports_own_keys() {
        let report = ProvisionReport {
            target: krypton_host::bindings::Target::Arc,
            bundle: "arc".into(),
            reused: false,
            obtained_at_ms: 0,
            identifiers: vec![
                ("ok".into(), "false".into()),
                ("target".into(), "azure-iot".into()),
                ("certificate".into(), "none".into()),
                ("serverEndpoint".into(), "a:11010".into()),
                ("serverEndpoint".into(), "b:11010".into()),
            ],
            certificate: None,
            sizes: vec![("reused".into(), 1), ("bytes".into(), 27)],
            mints_credentials: false,
            mode: AuthMode::Network,
        };
        assert_eq!(
            report_json("arc", &report),
            json!({
                "ok": true, "target": "arc", "bundle": "arc", "reused": false,
                "obtainedAt": "1970-01-01T00:00:00Z", "serverEndpoint": "a:11010", "bytes": 27,
            })
        );
        let mut hostile = report.clone();
        hostile.identifiers = vec![("\u{1b}[2Jkey".into(), "v\u{202e}al".into())];
        assert!(report_text("arc", &hostile).contains("  ?[2Jkey                  v?al\n"));
    }
}
