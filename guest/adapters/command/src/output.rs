//! The pure pieces of `krypton-host`'s output that this front end repeats (its `output`
//! module is part of the native host and cannot be linked into a component): the exit-code
//! table with each code's `--json` error kind, RFC 3339 dates, and text made safe for a
//! terminal. The end-to-end tests compare this front end's objects with `krypton-host`'s.

use serde_json::{Value, json};

/// Every error `kind` of `--json` output with its exit code, as `krypton-host` lists them
/// (`krypton-host --help`, the README's exit-code table).
pub const ERROR_KINDS: [(&str, u8); 13] = [
    ("internal", 1),
    ("usage", 2),
    ("invalid-request", 3),
    ("transport", 4),
    ("timeout", 5),
    ("http-status", 6),
    ("invalid-response", 7),
    ("registration-failed", 8),
    ("storage", 9),
    ("unsupported", 10),
    ("not-provisioned", 11),
    ("not-routed", 12),
    ("sim", 13),
];

/// Exit code: internal failure (a component call that could not be made).
pub const INTERNAL: u8 = 1;
/// Exit code: bad command line.
pub const USAGE: u8 = 2;
/// Exit code: nothing stored.
pub const NOT_PROVISIONED: u8 = 11;

/// The error `kind` for an exit code; `internal` for a code not listed.
pub fn error_kind(code: u8) -> &'static str {
    ERROR_KINDS
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("internal", |(k, _)| k)
}

/// The `--json` object of a failure that is not a component error: `{"ok": false,
/// "exitCode": code, "error": {"kind", "message"}}`.
pub fn failure_json(code: u8, message: &str) -> Value {
    json!({"ok": false, "exitCode": code, "error": {"kind": error_kind(code), "message": message}})
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

/// Most characters of one text from the component that reach a terminal.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Text from the network or the component made safe for a terminal: at most
/// [`MAX_TEXT_CHARS`] characters, and every control character and bidirectional formatting
/// character (Unicode UAX #9: `U+061C`, `U+200E`, `U+200F`, `U+202A`-`U+202E`,
/// `U+2066`-`U+2069`) becomes `?`.
pub fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_TEXT_CHARS)
        .map(|c| {
            let bidi = matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi { '?' } else { c }
        })
        .collect();
    if let Some((at, _)) = text.char_indices().nth(MAX_TEXT_CHARS) {
        out.push_str(&format!("... ({} more bytes)", text.len() - at));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_dates_are_krypton_hosts() {
        assert_eq!(error_kind(USAGE), "usage");
        assert_eq!(error_kind(13), "sim");
        assert_eq!(error_kind(200), "internal");
        assert_eq!(
            failure_json(2, "m"),
            json!({"ok": false, "exitCode": 2, "error": {"kind": "usage", "message": "m"}})
        );
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(printable("ok \u{1b}[2J\r\nx\u{202e}"), "ok ?[2J??x?");
    }
}
