//! The only ways a value is written into a file format that has no serializer.
//!
//! TOML and JSON go through `toml` and `serde_json`. Two formats have no well-kept Rust
//! serializer, so each gets exactly one strict function that every value passes through:
//!
//! * [`wg_quick_value`] for `wg-quick` files: wg-quick(8) reads `Key = Value` lines, treats `#`
//!   as the start of a comment and `[` as a section, and hands some keys (`PostUp`, ...) to
//!   bash. It has no quoting at all, so a value is refused unless every character is one that
//!   the WireGuard values it carries (base64 keys, IP addresses, CIDRs, `host:port`) use.
//! * [`env_value`] for `KEY=value` environment files read by systemd (`EnvironmentFile=`,
//!   systemd.exec(5): quotes and backslashes are interpreted) and by `docker --env-file`
//!   (docker run reference: the value is taken literally, quotes included). No quoting works
//!   the same for both readers, so a value is refused unless it needs none.
//!
//! Refusing is [`Error::InvalidResponse`] naming the field; the value is never echoed.

use super::model::Error;

/// Longest value either function accepts, bytes. STS session tokens are the longest values
/// written (AWS: "we recommend that you make no assumptions about the maximum size"; observed
/// tokens are 1-2 KiB), so the cap is generous; it only bounds the output.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

fn refuse(field: &str, value: &str, allowed: impl Fn(u8) -> bool, what: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "empty"));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::invalid(
            field,
            format!(
                "{} bytes, more than the {MAX_VALUE_BYTES}-byte limit for a {what} value",
                value.len()
            ),
        ));
    }
    if let Some(i) = value.bytes().position(|b| !allowed(b)) {
        let b = value.as_bytes()[i];
        let shown = if b.is_ascii_graphic() {
            format!("`{}`", b as char)
        } else {
            format!("0x{b:02x}")
        };
        return Err(Error::invalid(
            field,
            format!(
                "byte {} is {shown}, which cannot be written safely in a {what}",
                i + 1
            ),
        ));
    }
    Ok(())
}

/// `value` unchanged when it can be written as a `wg-quick` value: ASCII letters, digits and
/// `. : / + = [ ] -` only (base64 keys, IPv4/IPv6 addresses and CIDRs, `host:port`,
/// `[v6]:port`), at most [`MAX_VALUE_BYTES`].
///
/// Errors: [`Error::InvalidResponse`] naming `field` for anything else (a line break, `#`,
/// a space, a quote, NUL, non-ASCII, an empty value).
pub fn wg_quick_value<'v>(field: &str, value: &'v str) -> Result<&'v str, Error> {
    refuse(
        field,
        value,
        |b| b.is_ascii_alphanumeric() || b".:/+=[]-".contains(&b),
        "wg-quick file",
    )?;
    Ok(value)
}

/// `value` unchanged when it can be written after `KEY=` in an environment file without
/// quoting: ASCII letters, digits and `+ / = - _ . :` only (AWS access key IDs, base64 secret
/// keys and session tokens, region codes), at most [`MAX_VALUE_BYTES`].
///
/// Errors: [`Error::InvalidResponse`] naming `field` for anything else (a line break, a
/// space, a quote, `#`, `$`, a backslash, NUL, non-ASCII, an empty value).
pub fn env_value<'v>(field: &str, value: &'v str) -> Result<&'v str, Error> {
    refuse(
        field,
        value,
        |b| b.is_ascii_alphanumeric() || b"+/=-_.:".contains(&b),
        "KEY=value environment file",
    )?;
    Ok(value)
}

/// A `file://` URI for the absolute path `directory/name` (RFC 8089 §2): each byte outside
/// the RFC 3986 §3.3 path characters that need no escaping (unreserved and `/`) is
/// percent-encoded (RFC 3986 §2.1), so a directory holding a space, `#` or `?` still yields one
/// valid URI. Hand-written: a URL crate would add size for eight lines.
pub fn file_uri(directory: &str, name: &str) -> String {
    let path = format!("{}/{name}", directory.trim_end_matches('/'));
    let mut out = String::from("file://");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hostile inputs of issue 7: every one is refused by both functions.
    fn hostile() -> Vec<String> {
        vec![
            String::new(),
            "a\nb".into(),
            "a\rb".into(),
            "a\"b".into(),
            "a'b".into(),
            "a#b".into(),
            "a\0b".into(),
            "caf\u{e9}".into(),
            "a b".into(),
            "a\\b".into(),
            "a$b".into(),
            "x".repeat(MAX_VALUE_BYTES + 1),
        ]
    }

    #[test]
    fn wg_quick_values_are_refused_unless_plainly_safe() {
        for ok in [
            "Q0FOQVJZLXdpcmVndWFyZC1wcml2YXRlLWtleS0zMmI=",
            "10.123.45.6/32",
            "2001:db8::1/128",
            "beck.arc.soracom.io:11010",
            "[2001:db8::1]:11010",
        ] {
            assert_eq!(wg_quick_value("f", ok), Ok(ok));
        }
        for bad in hostile().into_iter().chain([
            "a=b\n[Interface]".into(),
            "[Peer]\nPostUp=id".into(),
            "a,b".into(),
        ]) {
            match wg_quick_value("arcServerEndpoint", &bad) {
                Err(Error::InvalidResponse { field, reason, .. }) => {
                    assert_eq!(field, "arcServerEndpoint");
                    assert!(!reason.contains("caf"), "{reason}");
                }
                other => panic!("{:?} gave {other:?}", &bad[..bad.len().min(20)]),
            }
        }
        // `=` and `[` alone are fine in a value (base64 padding, IPv6 literals): only a line
        // break could start a new key or section, and line breaks are refused.
        assert!(wg_quick_value("f", "[Interface]").is_ok());
    }

    #[test]
    fn env_values_are_refused_unless_plainly_safe() {
        for ok in [
            "ASIAMOCK00000001",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "a=b",
            "ap-northeast-1",
        ] {
            assert_eq!(env_value("f", ok), Ok(ok));
        }
        let big = "x".repeat(10 * 1024);
        assert_eq!(env_value("f", &big), Ok(big.as_str()));
        for bad in hostile()
            .into_iter()
            .chain(["[x]".into(), "a`b".into(), "a%b".into()])
        {
            match env_value("sessionToken", &bad) {
                Err(Error::InvalidResponse { field, .. }) => assert_eq!(field, "sessionToken"),
                other => panic!("{:?} gave {other:?}", &bad[..bad.len().min(20)]),
            }
        }
        assert_eq!(
            env_value("secretKey", "a\nAWS_X=1"),
            Err(Error::invalid(
                "secretKey",
                "byte 2 is 0x0a, which cannot be written safely in a KEY=value environment file"
            ))
        );
    }

    #[test]
    fn file_uris_escape_what_a_path_may_hold() {
        assert_eq!(
            file_uri("/var/lib/x/", "azure-iot-chain.pem"),
            "file:///var/lib/x/azure-iot-chain.pem"
        );
        assert_eq!(
            file_uri("/tmp/a b#c?\"d\ne", "k.pem"),
            "file:///tmp/a%20b%23c%3F%22d%0Ae/k.pem"
        );
        assert_eq!(file_uri("/caf\u{e9}", "k"), "file:///caf%C3%A9/k");
    }
}
