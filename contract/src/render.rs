//! Reports, failures and `status` as an operator reads them: human text and `--json` objects.
//!
//! A report carries identifiers, the certificate's SHA-256 fingerprint, subject and validity,
//! never a key (the contract's report type has no field that could hold one). Every text from
//! the component passes through [`printable`] before it reaches a terminal; `--json` objects
//! keep the component's characters (JSON escapes them) and bound its hint ([`bounded`]).
//!
//! What differs between the front ends is named in a [`FrontEnd`]: who refuses a request
//! before it leaves, and the front end's own names for the settings the component's advice
//! speaks of. Everything else is the same bytes on every front end.

use crate::exit::{NOT_PROVISIONED, error_kind, failure_json};
use crate::model::{Failure, ProvisionError, ProvisionReport, SimError, TransportKind, UiccError};
use crate::text::{bounded, printable, rfc3339};
use serde_json::{Map, Value, json};

/// What a front end says in its own words.
#[derive(Debug, Clone, Copy)]
pub struct FrontEnd {
    /// The text of [`TransportKind::Denied`]: who refused the request before it left (e.g.
    /// `refused by this host's outbound allow-list`).
    pub denied: &'static str,
    /// This front end's own words for what the component's advice calls a request field or a
    /// setting (its command-line flag), chosen by the error's typed fields, never its text;
    /// printed as a second `hint:` line after the component's.
    pub setting_hint: fn(&ProvisionError) -> Option<&'static str>,
}

impl FrontEnd {
    /// The transport kind in plain words, for text output.
    pub fn transport_kind_text(&self, kind: TransportKind) -> &'static str {
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
            TransportKind::Denied => self.denied,
            TransportKind::Other => "transport error",
        }
    }
}

/// One line of a report's text: two spaces, the key left-aligned in 24 columns, the value.
fn line(key: &str, value: &str) -> String {
    format!("  {key:<24} {value}\n")
}

/// The `--json` object for a report of the target called `name` (its `target-info.name`):
/// `ok` (true), `target`, `bundle`, `reused`, `obtainedAt` (RFC 3339), each identifier and
/// size under the component's name for it (strings and numbers; one never replaces a key
/// already there, `certificate` or `warnings`), `certificate` (`sha256Fingerprint`,
/// `subject`, `issuer`, `notBefore`, `notAfter`) when the report has one, and `warnings`
/// (always: `[{"check", "message"}]`, empty when the bundle agrees with itself).
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
    let warnings: Vec<Value> = report
        .warnings
        .iter()
        .map(|w| json!({"check": w.check, "message": w.message}))
        .collect();
    obj.insert("warnings".into(), Value::Array(warnings));
    // The component names identifiers and sizes: one never replaces a key of this object
    // (`ok`, `target`, `warnings`, ...) or an earlier one, and `certificate` is the front
    // end's.
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

/// Human text for a report of the target called `name`: a first line `NAME: provisioned
/// bundle `B` (obtained DATE)` (`stored` when reused), then one indented line per identifier,
/// size and certificate fact, then one `warning` line per warning (`CHECK: MESSAGE`), each
/// ending in a line feed.
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
        out.push_str(&line(&printable(key), &printable(value)));
    }
    for (key, value) in &report.sizes {
        out.push_str(&line(&printable(key), &value.to_string()));
    }
    if let Some(c) = &report.certificate {
        out.push_str(&line(
            "certificate SHA-256",
            &printable(&c.sha256_fingerprint),
        ));
        out.push_str(&line("subject", &printable(&c.subject)));
        out.push_str(&line("issuer", &printable(&c.issuer)));
        out.push_str(&line("not after", &rfc3339(c.not_after)));
    }
    for w in &report.warnings {
        out.push_str(&line(
            "warning",
            &format!("{}: {}", printable(&w.check), printable(&w.message)),
        ));
    }
    out
}

/// A `uicc-error` in plain words (its text made [`printable`]).
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
            let mut v = json!({"simError": "uicc", "uiccError": u.name(),
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

/// The `--json` object for a component failure: `{"ok": false, "exitCode": N, "error":
/// {"kind": …, …}}`, the kind taken from [`crate::exit::ERROR_KINDS`] for the error's exit
/// code, then the error's typed fields, and `hint` (the component's advice, text, [`bounded`])
/// when it gives one. A transport error always carries `hint` (text or null) beside
/// `transportKind` (the WIT enum case), `request` (as sent), `message` and `attempts` (a
/// number).
pub fn error_json(failure: &Failure) -> Value {
    let error = &failure.error;
    let hint = failure.hint.as_deref().map(bounded);
    let mut detail = match error {
        ProvisionError::InvalidRequest(m)
        | ProvisionError::Unsupported(m)
        | ProvisionError::Timeout(m)
        | ProvisionError::Storage(m) => json!({"message": m}),
        ProvisionError::Transport(e) => json!({
            "transportKind": e.kind.name(), "request": e.request,
            "message": e.message, "hint": hint, "attempts": e.attempts,
        }),
        ProvisionError::HttpStatus(e) => json!({
            "status": e.status, "code": e.code, "message": e.message,
            "bodyExcerpt": e.body_excerpt, "request": e.request,
        }),
        ProvisionError::InvalidResponse(e) => json!({"field": e.field, "reason": e.reason}),
        ProvisionError::RegistrationFailed(e) => json!({
            "operationId": e.operation_id, "status": e.status,
        }),
        ProvisionError::Sim(e) => sim_error_json(e),
    };
    let code = error.exit_code();
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("kind".into(), json!(error_kind(code)));
        if let Some(hint) = hint {
            obj.insert("hint".into(), json!(hint));
        }
    }
    json!({"ok": false, "exitCode": code, "error": detail})
}

/// Human text for a failure: `error: ` and what happened, then `hint: ` and the component's
/// advice, then `hint: ` and the front end's name for the setting it speaks of
/// ([`FrontEnd::setting_hint`]). Every text from the component is made [`printable`]. No
/// final line feed.
pub fn error_text(front: &FrontEnd, failure: &Failure) -> String {
    let mut s = match &failure.error {
        ProvisionError::InvalidRequest(m) => format!("error: invalid request: {}", printable(m)),
        ProvisionError::Unsupported(m) => format!("error: not supported: {}", printable(m)),
        ProvisionError::Transport(e) => {
            let mut s = format!(
                "error: could not reach Krypton: {}: {}",
                front.transport_kind_text(e.kind),
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
    if let Some(hint) = (front.setting_hint)(&failure.error) {
        s.push_str(&format!("\nhint: {hint}"));
    }
    s
}

/// What `status` found in a store, to render: the bundles, the component errors and, when
/// nothing was found, why (all three as the front end gathered them).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The store as the operator named it (`--json` `store`).
    pub store: String,
    /// Each stored bundle: the target's name and its report.
    pub bundles: Vec<(String, ProvisionReport)>,
    /// Each target whose status failed: its name and the failure.
    pub errors: Vec<(String, Failure)>,
    /// When nothing is stored: the message (e.g. `no bundle is stored in /store; run ...`).
    pub nothing: Option<String>,
}

/// What a rendered [`Status`] prints, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusOutput {
    /// Everything for standard output (each line ends in a line feed).
    pub stdout: String,
    /// Everything for standard error (each line ends in a line feed).
    pub stderr: String,
    /// 0; the first component error's code; or [`NOT_PROVISIONED`] when nothing is stored.
    pub code: u8,
}

impl Status {
    /// The failure that decides the exit code: the first component error (its `--json` error
    /// object with `target` added, and no text: the error is printed already), otherwise
    /// "nothing stored" ([`NOT_PROVISIONED`], with `error: MESSAGE` as text).
    fn failure(&self) -> Option<(u8, Value, String)> {
        match (self.errors.first(), &self.nothing) {
            (Some((name, e)), _) => {
                let mut error = error_json(e)["error"].clone();
                if let Some(obj) = error.as_object_mut() {
                    obj.insert("target".into(), json!(name));
                }
                Some((e.error.exit_code(), error, String::new()))
            }
            (None, Some(message)) => Some((
                NOT_PROVISIONED,
                failure_json(NOT_PROVISIONED, message)["error"].clone(),
                format!("error: {message}"),
            )),
            (None, None) => None,
        }
    }

    /// The `--json` form: one object on stdout, `{"ok", "store", "bundles": [...], "errors":
    /// [{"target", "error"}]}`, plus `exitCode` and `error` when `ok` is false. Each bundle is
    /// its [`report_json`] without `ok` and `reused` (every bundle here comes from the store),
    /// with `mode` (`network` or `sim`).
    pub fn json(&self) -> StatusOutput {
        let failure = self.failure();
        let bundles: Vec<Value> = self
            .bundles
            .iter()
            .map(|(name, r)| {
                let mut v = report_json(name, r);
                if let Some(obj) = v.as_object_mut() {
                    obj.remove("reused");
                    obj.remove("ok");
                    obj.insert("mode".into(), json!(r.mode.name()));
                }
                v
            })
            .collect();
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|(name, e)| json!({"target": name, "error": error_json(e)["error"]}))
            .collect();
        let mut object = json!({"ok": failure.is_none(), "store": self.store,
                                "bundles": bundles, "errors": errors});
        if let (Some((code, error, _)), Some(obj)) = (&failure, object.as_object_mut()) {
            obj.insert("exitCode".into(), json!(code));
            obj.insert("error".into(), error.clone());
        }
        StatusOutput {
            stdout: format!("{object}\n"),
            stderr: String::new(),
            code: failure.map_or(0, |(code, _, _)| code),
        }
    }

    /// The text form: each bundle's [`report_text`] and a `mode` line on stdout; each error
    /// as `TARGET: ` and its [`error_text`], then the "nothing stored" message, on stderr.
    pub fn text(&self, front: &FrontEnd) -> StatusOutput {
        let failure = self.failure();
        let mut stdout = String::new();
        for (name, report) in &self.bundles {
            stdout.push_str(&report_text(name, report));
            stdout.push_str(&line("mode", report.mode.name()));
        }
        let mut stderr = String::new();
        for (name, e) in &self.errors {
            stderr.push_str(&format!("{name}: {}\n", error_text(front, e)));
        }
        if let Some((_, _, text)) = &failure
            && !text.is_empty()
        {
            stderr.push_str(&format!("{text}\n"));
        }
        StatusOutput {
            stdout,
            stderr,
            code: failure.map_or(0, |(code, _, _)| code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        AuthMode, CertificateSummary, HttpStatusError, InvalidResponse, RegistrationFailure,
        ReportWarning, StatusWord, TransportError,
    };

    /// A front end with the host's words for `denied` and a hint for timeouts only.
    const FRONT: FrontEnd = FrontEnd {
        denied: "refused by this host's outbound allow-list",
        setting_hint: |e| {
            matches!(e, ProvisionError::Timeout(_)).then_some("here that is --deadline-secs")
        },
    };

    fn bare(error: ProvisionError) -> Failure {
        Failure::from(error)
    }

    fn report() -> ProvisionReport {
        ProvisionReport {
            bundle: "aws-iot".into(),
            reused: true,
            obtained_at_ms: 1_700_000_000_999,
            identifiers: vec![
                ("clientId".into(), "dev-1".into()),
                ("host".into(), "a1.iot.example".into()),
            ],
            certificate: Some(CertificateSummary {
                sha256_fingerprint: "ab".repeat(32),
                subject: "CN=dev-1".into(),
                issuer: "CN=Krypton CA".into(),
                not_before: 0,
                not_after: 4_102_444_799,
            }),
            sizes: vec![("bytes".into(), 27)],
            mode: AuthMode::Sim,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_report_as_json_field_by_field() {
        let v = report_json("aws-iot", &report());
        assert_eq!(
            v,
            json!({
                "ok": true, "target": "aws-iot", "bundle": "aws-iot", "reused": true,
                "obtainedAt": "2023-11-14T22:13:20Z", "clientId": "dev-1",
                "host": "a1.iot.example", "bytes": 27, "warnings": [],
                "certificate": {
                    "sha256Fingerprint": "ab".repeat(32), "subject": "CN=dev-1",
                    "issuer": "CN=Krypton CA", "notBefore": "1970-01-01T00:00:00Z",
                    "notAfter": "2099-12-31T23:59:59Z",
                },
            })
        );
    }

    #[test]
    fn a_report_as_text_line_by_line() {
        let text = report_text("aws-iot", &report());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "aws-iot: stored bundle `aws-iot` (obtained 2023-11-14T22:13:20Z)",
                "  clientId                 dev-1",
                "  host                     a1.iot.example",
                "  bytes                    27",
                &format!("  certificate SHA-256      {}", "ab".repeat(32)),
                "  subject                  CN=dev-1",
                "  issuer                   CN=Krypton CA",
                "  not after                2099-12-31T23:59:59Z",
            ]
        );
        assert!(text.ends_with('\n'));
        let mut fresh = report();
        fresh.reused = false;
        fresh.certificate = None;
        assert!(report_text("x", &fresh).starts_with("x: provisioned bundle `aws-iot` "));
    }

    #[test]
    fn warnings_as_json_and_as_text_lines() {
        let mut r = report();
        r.certificate = None;
        r.identifiers = vec![("warnings".into(), "none".into())];
        r.warnings = vec![
            ReportWarning {
                check: "device-id-vs-certificate-cn".into(),
                message: "deviceId `a` is not the certificate's subject CN (`b`)".into(),
            },
            ReportWarning {
                check: "region-vs-host".into(),
                message: "x\u{1b}[2Jy".into(),
            },
        ];
        let v = report_json("azure-iot", &r);
        assert_eq!(
            v["warnings"],
            json!([
                {"check": "device-id-vs-certificate-cn",
                 "message": "deviceId `a` is not the certificate's subject CN (`b`)"},
                {"check": "region-vs-host", "message": "x\u{1b}[2Jy"},
            ])
        );
        let text = report_text("azure-iot", &r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[lines.len() - 2..],
            [
                "  warning                  device-id-vs-certificate-cn: deviceId `a` is not the \
                 certificate's subject CN (`b`)",
                "  warning                  region-vs-host: x?[2Jy",
            ]
        );
        let status = Status {
            store: "/s".into(),
            bundles: vec![("azure-iot".into(), r)],
            errors: Vec::new(),
            nothing: None,
        };
        let out: Value = serde_json::from_str(&status.json().stdout).unwrap();
        assert_eq!(
            out["bundles"][0]["warnings"][0]["check"],
            "device-id-vs-certificate-cn"
        );
        assert!(
            status
                .text(&FRONT)
                .stdout
                .contains("  warning                  region-vs-host: x?[2Jy\n")
        );
    }

    #[test]
    fn a_components_identifiers_never_replace_the_reports_own_keys() {
        let mut r = report();
        r.certificate = None;
        r.identifiers = vec![
            ("ok".into(), "false".into()),
            ("certificate".into(), "none".into()),
            ("serverEndpoint".into(), "a:11010".into()),
            ("serverEndpoint".into(), "b:11010".into()),
        ];
        r.sizes = vec![("reused".into(), 1), ("bytes".into(), 27)];
        let v = report_json("arc", &r);
        assert_eq!(v["ok"], true);
        assert_eq!(v["reused"], true);
        assert_eq!(v["serverEndpoint"], "a:11010");
        assert!(v.get("certificate").is_none());
        r.identifiers = vec![("\u{1b}[2Jkey".into(), "v\u{202e}al".into())];
        assert!(report_text("arc", &r).contains("  ?[2Jkey                  v?al\n"));
    }

    fn transport(kind: TransportKind, hint: Option<&str>, attempts: u32) -> Failure {
        Failure {
            error: ProvisionError::Transport(TransportError {
                kind,
                request: "POST https://krypton.example:8036/v1/x".into(),
                message: "connection refused by 127.0.0.1:8036".into(),
                attempts,
            }),
            hint: hint.map(str::to_string),
        }
    }

    #[test]
    fn a_transport_failure_field_by_field() {
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
            error_text(&FRONT, &e),
            "error: could not reach Krypton: connection refused: connection refused by \
             127.0.0.1:8036 (POST https://krypton.example:8036/v1/x) \
             after 4 attempts\nhint: the endpoint has no port: Krypton listens on 8036"
        );
        // One attempt, no hint: neither is mentioned, and the JSON hint is null.
        let e = transport(TransportKind::Denied, None, 1);
        assert_eq!(
            error_text(&FRONT, &e),
            "error: could not reach Krypton: refused by this host's outbound allow-list: \
             connection refused by 127.0.0.1:8036 (POST https://krypton.example:8036/v1/x)"
        );
        assert_eq!(error_json(&e)["error"]["hint"], Value::Null);
        assert_eq!(error_json(&e)["error"]["transportKind"], "denied");
    }

    #[test]
    fn other_failures_field_by_field() {
        let http = bare(ProvisionError::HttpStatus(HttpStatusError {
            status: 403,
            code: Some("AUTH0001".into()),
            message: None,
            body_excerpt: "{\"code\":\"AUTH0001\"}".into(),
            request: "POST /v1/provisioning/aws/iot/bootstrap".into(),
        }));
        assert_eq!(
            error_json(&http),
            json!({"ok": false, "exitCode": 6, "error": {
                "kind": "http-status", "status": 403, "code": "AUTH0001", "message": null,
                "bodyExcerpt": "{\"code\":\"AUTH0001\"}",
                "request": "POST /v1/provisioning/aws/iot/bootstrap",
            }})
        );
        assert_eq!(
            error_text(&FRONT, &http),
            "error: POST /v1/provisioning/aws/iot/bootstrap answered HTTP 403 (AUTH0001): \
             {\"code\":\"AUTH0001\"}"
        );
        let dps = bare(ProvisionError::RegistrationFailed(RegistrationFailure {
            operation_id: "op-1".into(),
            status: "disabled".into(),
        }));
        assert_eq!(
            error_json(&dps)["error"],
            json!({"kind": "registration-failed", "operationId": "op-1", "status": "disabled"})
        );
        assert_eq!(
            error_text(&FRONT, &dps),
            "error: Azure DPS registration op-1 ended with status `disabled`"
        );
        let stored = Failure {
            error: ProvisionError::InvalidResponse(InvalidResponse {
                field: "region".into(),
                reason: "not a region".into(),
                stored: true,
            }),
            hint: Some("provision again with force".into()),
        };
        assert_eq!(
            error_json(&stored),
            json!({"ok": false, "exitCode": 7, "error": {
                "kind": "invalid-response", "field": "region", "reason": "not a region",
                "hint": "provision again with force",
            }})
        );
        assert_eq!(
            error_text(&FRONT, &stored),
            "error: the stored bundle is unusable: field `region`: not a region\n\
             nothing was written\nhint: provision again with force"
        );
    }

    #[test]
    fn the_components_hint_comes_first_then_the_front_ends_setting() {
        let timeout = Failure {
            error: ProvisionError::Timeout("deadline of 1000 ms passed".into()),
            hint: Some("raise the request's deadline-ms\u{1b}[2J".into()),
        };
        assert_eq!(
            error_text(&FRONT, &timeout),
            "error: timed out: deadline of 1000 ms passed\n\
             hint: raise the request's deadline-ms?[2J\n\
             hint: here that is --deadline-secs"
        );
        // JSON keeps the hint's characters (JSON escapes them).
        assert_eq!(
            error_json(&timeout)["error"]["hint"],
            "raise the request's deadline-ms\u{1b}[2J"
        );
        assert!(
            error_json(&bare(ProvisionError::Storage("x".into())))["error"]
                .get("hint")
                .is_none()
        );
    }

    #[test]
    fn sim_failures_carry_their_typed_fields() {
        let sw = bare(ProvisionError::Sim(SimError::Uicc(UiccError::StatusWord(
            StatusWord {
                sw1: 0x69,
                sw2: 0x82,
                command: "AUTHENTICATE".into(),
            },
        ))));
        assert_eq!(
            error_json(&sw),
            json!({"ok": false, "exitCode": 13, "error": {
                "kind": "sim", "simError": "uicc", "uiccError": "status-word",
                "message": "the SIM answered status 69 82 to AUTHENTICATE",
                "sw1": 0x69, "sw2": 0x82, "command": "AUTHENTICATE",
            }})
        );
        assert_eq!(
            error_text(&FRONT, &sw),
            "error: SIM-authenticated mode: the SIM answered status 69 82 to AUTHENTICATE"
        );
        let refused = bare(ProvisionError::Sim(SimError::KeyAgreement("401".into())));
        assert_eq!(
            error_json(&refused)["error"],
            json!({"kind": "sim", "simError": "key-agreement", "message": "401"})
        );
        let mac = bare(ProvisionError::Sim(SimError::Uicc(UiccError::MacFailure)));
        assert_eq!(error_json(&mac)["error"]["uiccError"], "mac-failure");
        assert!(error_text(&FRONT, &mac).contains("(MAC failure, 98 62)"));
    }

    #[test]
    fn status_with_bundles_errors_or_nothing() {
        let failed = bare(ProvisionError::Storage("disk".into()));
        let status = Status {
            store: "/store".into(),
            bundles: vec![("aws-iot".into(), report())],
            errors: vec![("arc".into(), failed)],
            nothing: None,
        };
        let out = status.json();
        assert_eq!(out.code, 9);
        assert!(out.stderr.is_empty() && out.stdout.ends_with('\n'));
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["store"], "/store");
        assert_eq!(v["exitCode"], 9);
        assert_eq!(
            v["error"],
            json!({"kind": "storage", "message": "disk", "target": "arc"})
        );
        assert_eq!(
            v["errors"],
            json!([{"target": "arc", "error": {"kind": "storage", "message": "disk"}}])
        );
        let bundle = &v["bundles"][0];
        assert_eq!(bundle["mode"], "sim");
        assert!(bundle.get("ok").is_none() && bundle.get("reused").is_none());
        assert_eq!(bundle["clientId"], "dev-1");

        let out = status.text(&FRONT);
        assert_eq!(out.code, 9);
        assert!(out.stdout.ends_with("\n  mode                     sim\n"));
        assert_eq!(out.stderr, "arc: error: secret store: disk\n");

        let nothing = Status {
            store: "/store".into(),
            bundles: vec![],
            errors: vec![],
            nothing: Some("no bundle is stored in /store".into()),
        };
        let out = nothing.text(&FRONT);
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (11, "", "error: no bundle is stored in /store\n")
        );
        let out = nothing.json();
        assert_eq!(out.stdout.lines().count(), 1);
        assert_eq!(
            serde_json::from_str::<Value>(&out.stdout).unwrap(),
            json!({"ok": false, "store": "/store", "bundles": [], "errors": [], "exitCode": 11,
                   "error": {"kind": "not-provisioned", "message": "no bundle is stored in /store"}})
        );
        let found = Status {
            errors: vec![],
            ..status
        };
        assert_eq!(found.json().code, 0);
        assert_eq!(found.text(&FRONT).stderr, "");
    }
}
