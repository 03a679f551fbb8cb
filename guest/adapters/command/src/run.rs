//! The commands over the provisioning component's exports, printed as `krypton-host` prints
//! them (its `output` module: `report_json`, `report_text`, `error_json`, `error_text`, and
//! `status`'s object).

use crate::args::{self, Command};
use crate::output::{
    INTERNAL, NOT_PROVISIONED, USAGE, error_kind, failure_json, printable, rfc3339,
};
use serde_json::{Map, Value, json};

// SAFETY: the only unsafe code is what wit-bindgen generates (the canonical ABI glue of the
// imported `provisioning` interface).
#[allow(unsafe_code)]
// Generated from the WIT, whose `///` comments are the documentation of these items.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package soracom:krypton-plugin;
            world command {
                import soracom:krypton/provisioning@0.5.0;
            }
        ",
        path: "../../../wit",
        world: "soracom:krypton-plugin/command",
        generate_all,
    });
}

use bindings::soracom::krypton::provisioning;
use bindings::soracom::krypton::types::{
    AuthMode, Failure, HttpTimeouts, KeyCacheUse, ProvisionError, ProvisionReport,
    ProvisionRequest, RetryPolicy, SimError, SimOptions, TargetInfo, TransportKind, UiccError,
};

/// The secret store's directory as the component's `secret-store` sees it.
const STORE: &str = "/store";

/// Run the command line `argv` (without the program name); the exit code.
pub fn main(argv: Vec<String>) -> u8 {
    let json = args::wants_json(&argv);
    let command = match args::parse(&argv) {
        Ok(command) => command,
        Err(message) => return usage(json, &message),
    };
    match command {
        Command::Help => {
            println!("{}", args::USAGE);
            0
        }
        Command::Provision {
            target,
            endpoint,
            params,
            force,
            json,
        } => provision(&target, endpoint, &params, force, json),
        Command::Status { target, json } => status(target.as_deref(), json),
    }
}

/// A usage error: the JSON object or the text, exit 2.
fn usage(json: bool, message: &str) -> u8 {
    if json {
        println!("{}", failure_json(USAGE, message));
    } else {
        eprintln!("error: {message}\n\n{}", args::USAGE);
    }
    USAGE
}

/// The component's target called `name`; an unknown name is a usage error as `krypton-host`
/// words it.
fn target(name: &str, arg: &str) -> Result<TargetInfo, String> {
    let targets = provisioning::targets();
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let found = targets.iter().find(|t| t.name == name).cloned();
    found.ok_or_else(|| {
        format!(
            "invalid value '{}' for '{arg}': not a target of this component (its targets: {})",
            printable(name),
            names.join(", ")
        )
    })
}

fn provision(
    name: &str,
    endpoint: String,
    params: &[(String, String)],
    force: bool,
    json: bool,
) -> u8 {
    let info = match target(name, "<TARGET>") {
        Ok(info) => info,
        Err(message) => return usage(json, &message),
    };
    let request_parameters = (!params.is_empty()).then(|| {
        let map: Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::Object(map).to_string()
    });
    // krypton-host's defaults (`ProvisionOptions::default()`): a 120 s deadline, 1 s between
    // Azure polls, 10 s to connect, 30 s per read, 4 attempts with backoff from 0.5 s to 8 s.
    let request = ProvisionRequest {
        target: info.target,
        mode: AuthMode::Network,
        endpoint,
        request_parameters,
        force,
        deadline_ms: 120_000,
        poll_interval_ms: 1_000,
        timeouts: HttpTimeouts {
            connect_ms: 10_000,
            first_byte_ms: 30_000,
            between_bytes_ms: 30_000,
        },
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay_ms: 500,
            max_delay_ms: 8_000,
        },
        sim: SimOptions {
            key_cache: KeyCacheUse::Reuse,
        },
    };
    match provisioning::provision(&request) {
        Ok(report) => {
            if json {
                println!("{}", report_json(&info.name, &report));
            } else {
                print!("{}", report_text(&info.name, &report));
            }
            0
        }
        Err(failure) => {
            let code = exit_code(&failure.error);
            if json {
                println!("{}", error_json(&failure));
            } else {
                eprintln!("{}", error_text(&failure));
            }
            code
        }
    }
}

fn status(name: Option<&str>, json: bool) -> u8 {
    let targets = match name {
        Some(name) => match target(name, "[TARGET]") {
            Ok(info) => vec![info],
            Err(message) => return usage(json, &message),
        },
        None => provisioning::targets(),
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for info in targets {
        match provisioning::status(info.target) {
            Ok(Some(report)) => found.push((info.name, report)),
            Ok(None) => {}
            Err(e) => errors.push((info.name, e)),
        }
    }
    let wanted = name.map_or_else(|| "bundle".to_string(), |n| format!("`{n}` bundle"));
    let nothing = (found.is_empty() && errors.is_empty()).then(|| {
        format!(
            "no {wanted} is stored in {STORE}; run `krypton-cli.wasm provision {}` first",
            name.unwrap_or("TARGET")
        )
    });
    // The first component error decides the code; otherwise "nothing stored" does.
    let failure: Option<(u8, Value, String)> = match (errors.first(), &nothing) {
        (Some((name, e)), _) => {
            let mut error = error_json(e)["error"].clone();
            if let Some(obj) = error.as_object_mut() {
                obj.insert("target".into(), json!(name));
            }
            Some((exit_code(&e.error), error, String::new()))
        }
        (None, Some(message)) => Some((
            NOT_PROVISIONED,
            failure_json(NOT_PROVISIONED, message)["error"].clone(),
            format!("error: {message}"),
        )),
        (None, None) => None,
    };
    if json {
        let bundles: Vec<Value> = found
            .iter()
            .map(|(name, r)| {
                let mut v = report_json(name, r);
                if let Some(obj) = v.as_object_mut() {
                    obj.remove("reused");
                    obj.remove("ok");
                    obj.insert("mode".into(), json!(auth_mode(r.mode)));
                }
                v
            })
            .collect();
        let errs: Vec<Value> = errors
            .iter()
            .map(|(name, e)| json!({"target": name, "error": error_json(e)["error"]}))
            .collect();
        let mut object =
            json!({"ok": failure.is_none(), "store": STORE, "bundles": bundles, "errors": errs});
        if let (Some((code, error, _)), Some(obj)) = (&failure, object.as_object_mut()) {
            obj.insert("exitCode".into(), json!(code));
            obj.insert("error".into(), error.clone());
        }
        println!("{object}");
    } else {
        for (name, report) in &found {
            print!("{}", report_text(name, report));
            println!("  {:<24} {}", "mode", auth_mode(report.mode));
        }
        for (name, e) in &errors {
            eprintln!("{name}: {}", error_text(e));
        }
        if let Some((_, _, text)) = &failure
            && !text.is_empty()
        {
            eprintln!("{text}");
        }
    }
    failure.map_or(0, |(code, _, _)| code)
}

fn auth_mode(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Network => "network",
        AuthMode::Sim => "sim",
    }
}

/// `krypton-host`'s `report_json`: `ok`, `target`, `bundle`, `reused`, `obtainedAt`, each
/// identifier and size under the component's name for it, and `certificate`.
fn report_json(name: &str, report: &ProvisionReport) -> Value {
    let mut obj = Map::new();
    obj.insert("ok".into(), json!(true));
    obj.insert("target".into(), json!(name));
    obj.insert("bundle".into(), json!(report.bundle));
    obj.insert("reused".into(), json!(report.reused));
    obj.insert(
        "obtainedAt".into(),
        json!(rfc3339((report.obtained_at_ms / 1000) as i64)),
    );
    for (key, value) in &report.identifiers {
        if !obj.contains_key(key) && key != "certificate" {
            obj.insert(key.clone(), json!(value));
        }
    }
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

/// `krypton-host`'s `report_text`: one fact per line.
fn report_text(name: &str, report: &ProvisionReport) -> String {
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
    for (key, value) in &report.identifiers {
        let (key, value) = (printable(key), printable(value));
        out.push_str(&format!("  {key:<24} {value}\n"));
    }
    for (key, value) in &report.sizes {
        let key = printable(key);
        out.push_str(&format!("  {key:<24} {value}\n"));
    }
    if let Some(c) = &report.certificate {
        let line = |k: &str, v: String| format!("  {k:<24} {v}\n");
        out.push_str(&line(
            "certificate SHA-256",
            printable(&c.sha256_fingerprint),
        ));
        out.push_str(&line("subject", printable(&c.subject)));
        out.push_str(&line("issuer", printable(&c.issuer)));
        out.push_str(&line("not after", rfc3339(c.not_after)));
    }
    out
}

/// The exit code of a component error (`krypton-host`'s `output::exit_code`).
fn exit_code(error: &ProvisionError) -> u8 {
    let kind = match error {
        ProvisionError::InvalidRequest(_) => "invalid-request",
        ProvisionError::Unsupported(_) => "unsupported",
        ProvisionError::Transport(_) => "transport",
        ProvisionError::Timeout(_) => "timeout",
        ProvisionError::HttpStatus(_) => "http-status",
        ProvisionError::InvalidResponse(_) => "invalid-response",
        ProvisionError::RegistrationFailed(_) => "registration-failed",
        ProvisionError::Storage(_) => "storage",
        ProvisionError::Sim(_) => "sim",
    };
    crate::output::ERROR_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(INTERNAL, |(_, code)| *code)
}

fn transport_kind(kind: TransportKind) -> &'static str {
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

/// The transport kind in plain words (`krypton-host`'s `transport_kind_text`).
fn transport_kind_text(kind: TransportKind) -> &'static str {
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
        TransportKind::Denied => "refused by this runtime's outbound policy",
        TransportKind::Other => "transport error",
    }
}

fn uicc_error(error: &UiccError) -> (&'static str, String) {
    match error {
        UiccError::Unavailable(m) => ("unavailable", format!("no SIM access: {}", printable(m))),
        UiccError::NoSim(m) => ("no-sim", format!("no SIM: {}", printable(m))),
        UiccError::Io(m) => (
            "io",
            format!("SIM reader or modem failed: {}", printable(m)),
        ),
        UiccError::StatusWord(sw) => (
            "status-word",
            format!(
                "the SIM answered status {:02X} {:02X} to {}",
                sw.sw1,
                sw.sw2,
                printable(&sw.command)
            ),
        ),
        UiccError::MacFailure => (
            "mac-failure",
            "the SIM rejected the Keys API's challenge (MAC failure, 98 62)".into(),
        ),
    }
}

/// `krypton-host`'s `error_json`: `{"ok": false, "exitCode", "error": {"kind", typed
/// fields, "hint"}}`.
fn error_json(failure: &Failure) -> Value {
    let hint = failure.hint.as_deref().map(printable_json);
    let mut detail = match &failure.error {
        ProvisionError::InvalidRequest(m)
        | ProvisionError::Unsupported(m)
        | ProvisionError::Timeout(m)
        | ProvisionError::Storage(m) => json!({"message": m}),
        ProvisionError::Transport(e) => json!({
            "transportKind": transport_kind(e.kind), "request": e.request,
            "message": e.message, "hint": hint, "attempts": e.attempts,
        }),
        ProvisionError::HttpStatus(e) => json!({
            "status": e.status, "code": e.code, "message": e.message,
            "bodyExcerpt": e.body_excerpt, "request": e.request,
        }),
        ProvisionError::InvalidResponse(e) => json!({"field": e.field, "reason": e.reason}),
        ProvisionError::RegistrationFailed(e) => {
            json!({"operationId": e.operation_id, "status": e.status})
        }
        ProvisionError::Sim(SimError::KeyAgreement(m)) => {
            json!({"simError": "key-agreement", "message": m})
        }
        ProvisionError::Sim(SimError::Uicc(u)) => {
            let (kind, message) = uicc_error(u);
            let mut v = json!({"simError": "uicc", "uiccError": kind, "message": message});
            if let (UiccError::StatusWord(sw), Some(obj)) = (u, v.as_object_mut()) {
                obj.insert("sw1".into(), json!(sw.sw1));
                obj.insert("sw2".into(), json!(sw.sw2));
                obj.insert("command".into(), json!(sw.command));
            }
            v
        }
    };
    let code = exit_code(&failure.error);
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("kind".into(), json!(error_kind(code)));
        if let Some(hint) = hint {
            obj.insert("hint".into(), json!(hint));
        }
    }
    json!({"ok": false, "exitCode": code, "error": detail})
}

/// A hint bounded as `krypton-host` bounds it in JSON (its characters kept: JSON escapes them).
fn printable_json(text: &str) -> String {
    match text.char_indices().nth(crate::output::MAX_TEXT_CHARS) {
        None => text.to_string(),
        Some((at, _)) => format!("{}... ({} more bytes)", &text[..at], text.len() - at),
    }
}

/// `krypton-host`'s `error_text` (without its own flag names: this command has only
/// `--endpoint`, `--param` and `--force`).
fn error_text(failure: &Failure) -> String {
    let mut s = match &failure.error {
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
            format!("error: SIM-authenticated mode: {}", uicc_error(u).1)
        }
        ProvisionError::Sim(SimError::KeyAgreement(m)) => format!(
            "error: SIM-authenticated mode: the Keys API did not authenticate the SIM: {}",
            printable(m)
        ),
    };
    if let Some(hint) = &failure.hint {
        s.push_str(&format!("\nhint: {}", printable(hint)));
    }
    s
}
