//! Text that reaches a terminal, and dates.
//!
//! Every text a component or the network hands a front end (a hint, a message, an identifier)
//! is code or data the front end did not write: it is bounded and stripped of characters that
//! drive a terminal before it is printed ([`printable`]). `--json` output keeps the characters
//! (JSON escapes them) and bounds the length only ([`bounded`]).

use std::borrow::Cow;

/// Most characters of one text from the component that reach the operator (a hint, a message,
/// a reason); the rest is cut and counted. Krypton's own error bodies reach the component as at
/// most 512 bytes, so only a component gone wrong reaches this.
pub const MAX_COMPONENT_TEXT_CHARS: usize = 4096;

/// Characters never printed as they are: control characters (Unicode general category `Cc`:
/// escape sequences, carriage returns, line feeds) and the bidirectional formatting characters
/// of Unicode's Bidirectional Algorithm (UAX #9: `U+061C`, `U+200E`, `U+200F`,
/// `U+202A`-`U+202E`, `U+2066`-`U+2069`), which reorder what a terminal shows.
pub fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` cut to `max_chars` characters, followed by `... (N more bytes)` (how many bytes were
/// cut) when it was longer; borrowed when nothing was cut.
pub fn bounded_to(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((at, _)) => Cow::Owned(format!(
            "{}... ({} more bytes)",
            &text[..at],
            text.len() - at
        )),
    }
}

/// `text` cut to [`MAX_COMPONENT_TEXT_CHARS`] characters ([`bounded_to`]).
pub fn bounded(text: &str) -> Cow<'_, str> {
    bounded_to(text, MAX_COMPONENT_TEXT_CHARS)
}

/// Text made safe for a terminal: at most `max_chars` characters ([`bounded_to`]), and every
/// [`is_unprintable`] character becomes `?`.
pub fn printable_to(text: &str, max_chars: usize) -> String {
    bounded_to(text, max_chars)
        .chars()
        .map(|c| if is_unprintable(c) { '?' } else { c })
        .collect()
}

/// Text from the network or the component made safe for a terminal: bounded
/// ([`MAX_COMPONENT_TEXT_CHARS`]), and every [`is_unprintable`] character (escape sequences,
/// carriage returns, bidirectional overrides) becomes `?`.
pub fn printable(text: &str) -> String {
    printable_to(text, MAX_COMPONENT_TEXT_CHARS)
}

/// Seconds since the Unix epoch as RFC 3339 UTC (RFC 3339 §5.6, `2026-11-29T18:00:00Z`); the
/// number itself when it is outside what a date can hold (years -9999 to 9999).
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_become_question_marks() {
        assert_eq!(printable("ok \u{1b}[2J\r\nx"), "ok ?[2J??x");
        // Every bidirectional formatting character of UAX #9, and C1 controls (U+0085, U+009B).
        let bidi = "\u{061c}\u{200e}\u{200f}\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}\u{2066}\u{2067}\u{2068}\u{2069}";
        assert_eq!(printable(bidi), "?".repeat(12));
        assert_eq!(printable("a\u{85}b\u{9b}c\u{7f}"), "a?b?c?");
        // Their neighbours are text: a zero-width joiner, a no-break space, Japanese.
        assert_eq!(
            printable("\u{200d}\u{a0}ソラコム"),
            "\u{200d}\u{a0}ソラコム"
        );
        assert!(!is_unprintable('\u{2065}') && !is_unprintable('\u{206a}'));
    }

    #[test]
    fn long_text_is_cut_and_counted_in_bytes() {
        let long = format!("{}é\u{1b}", "h".repeat(MAX_COMPONENT_TEXT_CHARS));
        assert_eq!(
            printable(&long),
            format!("{}... (3 more bytes)", "h".repeat(MAX_COMPONENT_TEXT_CHARS))
        );
        assert_eq!(printable_to("a\u{1b}bcdef", 3), "a?b... (4 more bytes)");
        assert_eq!(printable_to("abc", 3), "abc");
        // JSON keeps the characters and bounds the length only.
        assert_eq!(bounded_to("\u{1b}bcd", 2), "\u{1b}b... (2 more bytes)");
        assert!(matches!(bounded("short"), Cow::Borrowed("short")));
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        // Beyond year 9999: the number.
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }
}
