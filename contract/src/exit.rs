//! Exit codes, each with the `kind` of its `--json` error object: one table that
//! `krypton-host` and `krypton-cli.wasm` both exit by, and that `--help` lists.

use crate::model::ProvisionError;
use serde_json::{Value, json};

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

/// Every error `kind` of `--json` output with its exit code: the one table both are derived
/// from. An error object is `{"ok": false, "exitCode": N, "error": {"kind": K, "message": …}}`
/// where `K` is the kind listed here for `N` (component errors add their typed fields).
pub const ERROR_KINDS: [(&str, u8); 13] = [
    ("internal", INTERNAL),
    ("usage", USAGE),
    ("invalid-request", INVALID_REQUEST),
    ("transport", TRANSPORT),
    ("timeout", TIMEOUT),
    ("http-status", HTTP_STATUS),
    ("invalid-response", INVALID_RESPONSE),
    ("registration-failed", REGISTRATION_FAILED),
    ("storage", STORAGE),
    ("unsupported", UNSUPPORTED),
    ("not-provisioned", NOT_PROVISIONED),
    ("not-routed", NOT_ROUTED),
    ("sim", SIM),
];

/// The error `kind` for an exit code ([`ERROR_KINDS`]); `internal` for a code not listed.
pub fn error_kind(code: u8) -> &'static str {
    ERROR_KINDS
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("internal", |(k, _)| k)
}

/// The `--json` object for a failure that is not a component error: `{"ok": false,
/// "exitCode": code, "error": {"kind": error_kind(code), "message": message}}`.
pub fn failure_json(code: u8, message: &str) -> Value {
    json!({"ok": false, "exitCode": code, "error": {"kind": error_kind(code), "message": message}})
}

impl ProvisionError {
    /// The exit code of this component error: one per WIT case, [`SIM`] for every SIM
    /// failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ProvisionError::InvalidRequest(_) => INVALID_REQUEST,
            ProvisionError::Unsupported(_) => UNSUPPORTED,
            ProvisionError::Transport(_) => TRANSPORT,
            ProvisionError::Timeout(_) => TIMEOUT,
            ProvisionError::HttpStatus(_) => HTTP_STATUS,
            ProvisionError::InvalidResponse(_) => INVALID_RESPONSE,
            ProvisionError::RegistrationFailed(_) => REGISTRATION_FAILED,
            ProvisionError::Storage(_) => STORAGE,
            ProvisionError::Sim(_) => SIM,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SimError, UiccError};

    #[test]
    fn every_code_has_one_kind_and_one_help_line() {
        let expected = [
            (1, "internal"),
            (2, "usage"),
            (3, "invalid-request"),
            (4, "transport"),
            (5, "timeout"),
            (6, "http-status"),
            (7, "invalid-response"),
            (8, "registration-failed"),
            (9, "storage"),
            (10, "unsupported"),
            (11, "not-provisioned"),
            (12, "not-routed"),
            (13, "sim"),
        ];
        for (code, kind) in expected {
            assert_eq!(error_kind(code), kind);
            let line = format!("{code:>3}  [{kind}] ");
            assert!(EXIT_CODES_HELP.contains(&line), "{line:?}");
        }
        assert_eq!(ERROR_KINDS.len(), expected.len());
        // A code nobody listed is internal; 0 is success, not an error kind.
        assert_eq!(error_kind(200), "internal");
        assert_eq!(error_kind(OK), "internal");
        assert!(EXIT_CODES_HELP.contains("\n  0  success\n"));
    }

    #[test]
    fn a_failure_object_names_its_kind() {
        assert_eq!(
            failure_json(USAGE, "m"),
            json!({"ok": false, "exitCode": 2, "error": {"kind": "usage", "message": "m"}})
        );
        assert_eq!(
            failure_json(NOT_PROVISIONED, "none")["error"]["kind"],
            "not-provisioned"
        );
    }

    #[test]
    fn each_component_error_has_its_code() {
        let cases = [
            (ProvisionError::InvalidRequest("x".into()), 3),
            (ProvisionError::Unsupported("x".into()), 10),
            (ProvisionError::Timeout("x".into()), 5),
            (ProvisionError::Storage("x".into()), 9),
            (ProvisionError::Sim(SimError::KeyAgreement("x".into())), 13),
            (
                ProvisionError::Sim(SimError::Uicc(UiccError::MacFailure)),
                13,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error:?}");
        }
    }
}
