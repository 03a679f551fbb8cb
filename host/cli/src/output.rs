//! How results reach the operator: human text, `--json` objects and exit codes.
//!
//! The rendering, the exit-code table and the text rules are `krypton_contract`'s, shared with
//! `krypton-cli.wasm`'s command front end; this module converts the host's bindings into the
//! contract's model and adds what only this host says: its words for a refused request and
//! the flags (and `gateway.toml` keys) that set what the component's advice speaks of.
//!
//! Reports carry identifiers, the certificate's SHA-256 fingerprint, subject and validity,
//! never a key (the component's report type has no field that could hold one).

use krypton_contract::model::{self, SimError, UiccError};
use krypton_contract::render::{self, FrontEnd};
use krypton_host::bindings::{AuthMode, Failure, ProvisionError, ProvisionReport};
use serde_json::Value;

pub use krypton_contract::exit::{self, ERROR_KINDS, EXIT_CODES_HELP, error_kind, failure_json};
pub use krypton_contract::text::{MAX_COMPONENT_TEXT_CHARS, is_unprintable, printable, rfc3339};

/// This host's words: it refuses a request that is not on its outbound allow-list, and names
/// its own flags for what the component's advice speaks of ([`host_hint`]).
const HOST: FrontEnd = FrontEnd {
    denied: "refused by this host's outbound allow-list",
    setting_hint: host_hint,
};

/// The `--json` object for a report of the target called `name` (its `target-info.name`):
/// `target`, `bundle`, `reused`, `obtainedAt`, each identifier under the component's name for
/// it, and `certificate` ([`krypton_contract::render::report_json`]).
pub fn report_json(name: &str, report: &ProvisionReport) -> Value {
    render::report_json(name, &report.into())
}

/// Human text for a report of the target called `name`, one fact per line
/// ([`krypton_contract::render::report_text`]).
pub fn report_text(name: &str, report: &ProvisionReport) -> String {
    render::report_text(name, &report.into())
}

/// Exit code for a component error ([`krypton_contract::model::ProvisionError::exit_code`]).
pub fn exit_code(error: &ProvisionError) -> u8 {
    model::ProvisionError::from(error).exit_code()
}

/// The name of an authentication mode in `--json` output and text (the WIT enum case).
pub fn auth_mode(mode: AuthMode) -> &'static str {
    model::AuthMode::from(&mode).name()
}

/// The `--json` object for a component failure: `{"ok": false, "exitCode": N, "error":
/// {"kind": …, …}}` ([`krypton_contract::render::error_json`]).
pub fn error_json(failure: &Failure) -> Value {
    render::error_json(&failure.into())
}

/// This host's own words for what the component's advice calls a request field or a
/// setting, chosen by the error's typed fields (never by its text): the command-line flag
/// (and the daemon's configuration key) that sets it here.
fn host_hint(error: &model::ProvisionError) -> Option<&'static str> {
    use model::ProvisionError;
    match error {
        ProvisionError::Transport(e) if e.kind == model::TransportKind::UntrustedCertificate => {
            Some(
                "here that is --ca-file PEM (or `ca_file` in gateway.toml); a CA file that is \
             already given does not cover this server's name or issuer",
            )
        }
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
/// this host's name for the flag it speaks of, keyed on the error's typed fields only). Every
/// text from the component is stripped of control characters
/// ([`krypton_contract::render::error_text`]).
pub fn error_text(failure: &Failure) -> String {
    render::error_text(&HOST, &failure.into())
}

/// The `status` command's output for what it found ([`krypton_contract::render::Status`]):
/// the `--json` object, or the text with this host's words.
pub fn status(status: &render::Status, json: bool) -> render::StatusOutput {
    if json {
        status.json()
    } else {
        status.text(&HOST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use krypton_host::bindings::{SimError, TransportKind, UiccError};

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

    /// A transport failure of `kind` after `attempts`, advised to `hint`, through the host's
    /// bindings (and so through their conversion into the contract's model).
    fn refused(kind: TransportKind, hint: Option<&str>, attempts: u32) -> Failure {
        let error = krypton_host::bindings::TransportError {
            kind,
            request: "GET https://elsewhere.example/".into(),
            message: "elsewhere.example:443".into(),
            attempts,
        };
        let hint = hint.map(str::to_string);
        Failure {
            error: ProvisionError::Transport(error),
            hint,
        }
    }

    #[test]
    fn every_component_error_kind_matches_its_exit_code() {
        let errors = [
            bare(ProvisionError::InvalidRequest("x".into())),
            bare(ProvisionError::Unsupported("x".into())),
            refused(TransportKind::ConnectionRefused, None, 1),
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
        let expected = [3, 10, 4, 5, 6, 9];
        for (failure, expected) in errors.iter().zip(expected) {
            let v = error_json(failure);
            let code = exit_code(&failure.error);
            assert_eq!(code, expected, "{v}");
            assert_eq!(v["exitCode"], u64::from(code), "{v}");
            assert_eq!(v["error"]["kind"], error_kind(code), "{v}");
            assert_eq!(v["ok"], false);
        }
    }

    #[test]
    fn a_transport_error_is_worded_for_this_host() {
        let e = refused(TransportKind::Denied, None, 1);
        assert_eq!(
            error_text(&e),
            "error: could not reach Krypton: refused by this host's outbound allow-list: \
             elsewhere.example:443 (GET https://elsewhere.example/)"
        );
        let v = error_json(&e);
        assert_eq!(v["error"]["transportKind"], "denied");
        assert_eq!(v["error"]["hint"], Value::Null);
        let e = refused(TransportKind::UntrustedCertificate, Some("give a CA"), 2);
        assert!(
            error_text(&e).ends_with(
                "after 2 attempts\nhint: give a CA\nhint: here that is --ca-file PEM (or \
                 `ca_file` in gateway.toml); a CA file that is already given does not cover \
                 this server's name or issuer"
            ),
            "{}",
            error_text(&e)
        );
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
        // The host's flag is text only: the JSON hint is the component's.
        assert_eq!(
            error_json(&timeout)["error"]["hint"],
            "raise the request's deadline-ms"
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
}
