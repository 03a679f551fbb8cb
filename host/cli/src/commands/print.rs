//! Printing shared by the commands: one JSON object on stdout, and a failure as text on
//! stderr or as the `--json` object.

use super::{Detail, HostFailure};
use crate::output;
use serde_json::Value;
use std::io::Write as _;
use std::process::ExitCode;

/// Print `value` as one line of JSON on stdout and flush it.
pub fn print_json(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Print `failure` once (as the one `--json` object on stdout when `json`, as text on stderr
/// otherwise; nothing when the command already showed it) and return its exit code.
pub fn print_failure(failure: HostFailure, json: bool) -> ExitCode {
    let HostFailure { code, detail } = failure;
    match detail {
        Detail::Host(error) if json => {
            print_json(&output::failure_json(code, &format!("{error:#}")))
        }
        Detail::Host(error) => eprintln!("error: {error:#}"),
        Detail::Component(error) if json => print_json(&output::error_json(&error)),
        Detail::Component(error) => eprintln!("{}", output::error_text(&error)),
        Detail::Shown => {}
    }
    ExitCode::from(code)
}
