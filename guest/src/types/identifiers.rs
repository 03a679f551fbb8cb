//! The rules every identifier from Krypton must follow, one checking function per kind.
//!
//! Each rule is the owning service's own, from its public documentation (cited next to the
//! function). Values are checked twice: when Krypton's answer is parsed (a breach is
//! [`Error::InvalidResponse`] naming the field, and nothing is stored) and again when a stored
//! bundle is rendered into a report, an export or a `wg-quick` file (a bundle on disk may have
//! been edited). The checks are hand-written because each is a short character-class and
//! length rule; a regular-expression crate would add size to the component for no gain.
//!
//! Every function returns `Err(reason)` with a reason that never echoes the value (a hostile
//! value must not reach a log line or a terminal); [`check`] turns it into an error naming the
//! field.

use super::model::Error;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a value breaks its rule (never the value itself).
pub type Reason = String;

/// A checking function: `Ok` when `value` follows the rule.
pub type Rule = fn(&str) -> Result<(), Reason>;

/// Check `value` of `field` against `rule`. Errors: [`Error::InvalidResponse`] naming `field`.
pub fn check(field: &str, value: &str, rule: Rule) -> Result<(), Error> {
    rule(value).map_err(|reason| Error::invalid(field, reason))
}

fn length(value: &str, min: usize, max: usize, unit: &str) -> Result<(), Reason> {
    if value.len() < min || value.len() > max {
        return Err(format!(
            "{} bytes long; the rule allows {min} to {max} {unit}",
            value.len()
        ));
    }
    Ok(())
}

fn only(value: &str, allowed: impl Fn(u8) -> bool, what: &str) -> Result<(), Reason> {
    match value.bytes().position(|b| !allowed(b)) {
        None => Ok(()),
        Some(i) => Err(format!(
            "byte {} is {}; only {what} are allowed",
            i + 1,
            describe(value.as_bytes()[i])
        )),
    }
}

/// A byte named without echoing text around it: printable ASCII as itself, others in hex.
fn describe(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", b as char)
    } else if b == b' ' {
        "a space".into()
    } else {
        format!("0x{b:02x}")
    }
}

/// A DNS host name: labels of ASCII letters, digits and `-`, each 1–63 bytes, not starting or
/// ending with `-`, separated by `.`, at most 253 bytes in all, no trailing dot. Not a URL: no
/// scheme, port, path or user info.
///
/// Source: RFC 1035 §2.3.1 "Preferred name syntax" and §2.3.4 "Size limits", as relaxed by
/// RFC 1123 §2.1 (a label may start with a digit). Used for the Azure IoT Hub `host`
/// (`<hub>.azure-devices.net`) and the AWS IoT `host` data endpoint
/// (`<prefix>-ats.iot.<region>.amazonaws.com`), both DNS names.
pub fn dns_name(value: &str) -> Result<(), Reason> {
    length(value, 1, 253, "bytes (RFC 1035 §2.3.4)")?;
    only(
        value,
        |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.',
        "letters, digits, `-` and `.` (a DNS name, RFC 1123 §2.1; not a URL)",
    )?;
    for (i, label) in value.split('.').enumerate() {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "label {} is {} bytes; each label is 1 to 63 bytes (RFC 1035 §2.3.4)",
                i + 1,
                label.len()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "label {} starts or ends with `-` (RFC 1035 §2.3.1)",
                i + 1
            ));
        }
    }
    Ok(())
}

/// A host and port, `host:port`, `[ipv6]:port`, or the same without a port: the host is a DNS
/// name ([`dns_name`]), an IPv4 literal, or an IPv6 literal in brackets (RFC 3986 §3.2.2);
/// the port is 1–5 decimal digits from 1 to 65535 (RFC 3986 §3.2.3). Returns the host text
/// and the port, `None` when absent.
///
/// Used for the Arc `arcServerEndpoint`, which WireGuard's `Endpoint =` reads the same way
/// (wg(8) "CONFIGURATION FILE FORMAT": "Endpoint — an endpoint IP or hostname, followed by a
/// colon, and then a port number").
pub fn split_host_port(value: &str) -> Result<(&str, Option<u16>), Reason> {
    length(value, 1, 253 + 6, "bytes (a DNS name and a port)")?;
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 literal without its closing `]`".to_string())?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| "the text in brackets is not an IPv6 address".to_string())?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| "text after `]` is not `:port`".to_string())?,
            ),
        };
        (&value[..v6.len() + 2], port)
    } else {
        let (host, port) = match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        };
        if host.parse::<Ipv4Addr>().is_err() {
            dns_name(host)
                .map_err(|r| format!("the host is not a DNS name or an IP address: {r}"))?;
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(port_number(p)?),
    };
    Ok((host, port))
}

/// [`split_host_port`] as a [`Rule`]: a host, optionally with a port.
pub fn host_port(value: &str) -> Result<(), Reason> {
    split_host_port(value).map(|_| ())
}

/// [`split_host_port`] with the port required.
pub fn host_and_port(value: &str) -> Result<(), Reason> {
    match split_host_port(value)? {
        (_, Some(_)) => Ok(()),
        (_, None) => Err("no port: expected host:port".into()),
    }
}

fn port_number(p: &str) -> Result<u16, Reason> {
    let bad = || "the port is not a number from 1 to 65535 (RFC 3986 §3.2.3)".to_string();
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad()),
    }
}

/// An Azure IoT Hub device ID: a case-sensitive string of up to 128 ASCII 7-bit alphanumeric
/// characters plus `- . + % _ # * ? ! ( ) , : = @ $ '`.
///
/// Source: Azure IoT Hub documentation, "Understand the identity registry in your IoT hub",
/// section "Device identity properties", `deviceId`
/// (<https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry#device-identity-properties>).
pub fn iot_hub_device_id(value: &str) -> Result<(), Reason> {
    length(value, 1, 128, "characters (Azure IoT Hub deviceId)")?;
    only(
        value,
        |b| b.is_ascii_alphanumeric() || b"-.+%_#*?!(),:=@$'".contains(&b),
        "ASCII letters, digits and - . + % _ # * ? ! ( ) , : = @ $ ' (Azure IoT Hub deviceId)",
    )
}

/// An Azure DPS registration ID: a case-insensitive string of up to 128 alphanumeric
/// characters plus `: . _ -`, with no special character at the start or the end.
///
/// Source: Azure IoT Hub DPS REST API, "Runtime Registration - Register Device",
/// `DeviceRegistration.registrationId`
/// (<https://learn.microsoft.com/rest/api/iot-dps/device/runtime-registration/register-device>).
/// Krypton's `requestParameters.deviceId` for `azure-iot` is the registration ID sent to DPS.
pub fn dps_registration_id(value: &str) -> Result<(), Reason> {
    length(value, 1, 128, "characters (DPS registration ID)")?;
    only(
        value,
        |b| b.is_ascii_alphanumeric() || b":._-".contains(&b),
        "ASCII letters, digits and : . _ - (DPS registration ID)",
    )?;
    let edge = |b: u8| b.is_ascii_alphanumeric();
    let bytes = value.as_bytes();
    if !edge(bytes[0]) || !edge(bytes[bytes.len() - 1]) {
        return Err("starts or ends with a special character (DPS registration ID)".into());
    }
    Ok(())
}

/// A DPS `operationId`: it goes into the path of the registration poll, so only RFC 3986
/// §2.3 unreserved characters (`A-Z a-z 0-9 - . _ ~`), at most 256 bytes.
///
/// Source: DPS documents no character set for operation IDs ("Runtime Registration - Operation
/// Status Lookup" takes it as a path parameter); the unreserved set is what RFC 3986 §2.3
/// allows in a path segment without percent-encoding. Observed IDs look like `4.<hex>`.
pub fn dps_operation_id(value: &str) -> Result<(), Reason> {
    length(value, 1, 256, "bytes")?;
    only(
        value,
        |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b),
        "characters allowed in a URL path segment (A-Z a-z 0-9 - . _ ~, RFC 3986 §2.3)",
    )
}

/// An AWS IoT thing name: 1–128 characters of `[a-zA-Z0-9:_-]`.
///
/// Source: AWS IoT API Reference, "CreateThing", `thingName`: "Length Constraints: Minimum
/// length of 1. Maximum length of 128. Pattern: `[a-zA-Z0-9:_-]+`"
/// (<https://docs.aws.amazon.com/iot/latest/apireference/API_CreateThing.html>).
pub fn aws_thing_name(value: &str) -> Result<(), Reason> {
    length(value, 1, 128, "characters (AWS IoT thing name)")?;
    only(
        value,
        |b| b.is_ascii_alphanumeric() || b":_-".contains(&b),
        "A-Z a-z 0-9 : _ - (AWS IoT thing name)",
    )
}

/// An AWS IoT MQTT client ID: 1–128 bytes of UTF-8, not starting with `$`, and no control
/// character.
///
/// Sources: AWS General Reference, "AWS IoT Core endpoints and quotas", message broker
/// "Client ID size: 128 bytes of UTF-8 encoded characters"
/// (<https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits>);
/// AWS IoT Data Plane API "SendDirectMessage", `clientId`: "can't start with a dollar sign
/// ($)"; MQTT 3.1.1 §1.5.3: a UTF-8 string MUST NOT include U+0000 and SHOULD NOT include
/// the control characters U+0001–U+001F and U+007F–U+009F (all refused here).
pub fn aws_iot_client_id(value: &str) -> Result<(), Reason> {
    length(value, 1, 128, "bytes of UTF-8 (AWS IoT client ID)")?;
    if value.starts_with('$') {
        return Err("starts with `$`, which AWS IoT reserves".into());
    }
    if let Some(i) = value.chars().position(char::is_control) {
        return Err(format!(
            "character {} is a control character (MQTT 3.1.1 §1.5.3)",
            i + 1
        ));
    }
    Ok(())
}

/// An AWS IoT certificate ID: 64 hexadecimal digits (the SHA-256 of the certificate).
///
/// Source: AWS IoT API Reference, "Certificate" data type, `certificateId`: "Length
/// Constraints: Fixed length of 64. Pattern: `(0x)?[a-fA-F0-9]+`"
/// (<https://docs.aws.amazon.com/iot/latest/apireference/API_Certificate.html>).
pub fn aws_certificate_id(value: &str) -> Result<(), Reason> {
    length(value, 64, 64, "hexadecimal digits (AWS IoT certificateId)")?;
    only(
        value,
        |b| b.is_ascii_hexdigit(),
        "hexadecimal digits (AWS IoT certificateId)",
    )
}

/// The region an AWS IoT data endpoint names, `<prefix>-ats.iot.<region>.amazonaws.com[.cn]`
/// (AWS IoT Developer Guide, "AWS IoT device data and service endpoints"); `None` when the
/// host has no `.iot.` label followed by one.
pub fn aws_iot_host_region(host: &str) -> Option<&str> {
    let rest = host.split_once(".iot.")?.1;
    let region = rest.split('.').next()?;
    (!region.is_empty()).then_some(region)
}

/// An AWS region code such as `ap-northeast-1`, `us-gov-west-1` or `cn-north-1`: a 2–4 letter
/// area, one to three lowercase words, and a number, separated by `-`; at most 32 bytes.
///
/// Source: the shape shared by every partition's `regionRegex` in the AWS SDKs' endpoint
/// partitions (`partitions.json`, e.g. `^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$` for `aws`,
/// `^us\-gov\-\w+\-\d+$` for `aws-us-gov`), and AWS General Reference "Regions and Zones".
/// Used for AWS IoT and Amazon Cognito regions.
pub fn aws_region(value: &str) -> Result<(), Reason> {
    let bad = || "not an AWS region code such as ap-northeast-1".to_string();
    length(value, 1, 32, "bytes (AWS region)")?;
    only(
        value,
        |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-',
        "lowercase letters, digits and `-` (AWS region)",
    )?;
    let parts: Vec<&str> = value.split('-').collect();
    if !(3..=5).contains(&parts.len()) {
        return Err(bad());
    }
    let (area, rest) = parts.split_first().ok_or_else(bad)?;
    let (number, words) = rest.split_last().ok_or_else(bad)?;
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    if !(2..=4).contains(&area.len()) || !letters(area) || !words.iter().all(|w| letters(w)) {
        return Err(bad());
    }
    if number.is_empty() || number.len() > 3 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(())
}

/// An Amazon Cognito identity ID: 1–55 characters matching `[\w-]+:[0-9a-f-]+`
/// (`region:uuid`).
///
/// Source: Amazon Cognito Identity API Reference, "GetCredentialsForIdentity", `IdentityId`:
/// "Length Constraints: Minimum length of 1. Maximum length of 55. Pattern:
/// `[\w-]+:[0-9a-f-]+`"
/// (<https://docs.aws.amazon.com/cognitoidentity/latest/APIReference/API_GetCredentialsForIdentity.html>).
pub fn cognito_identity_id(value: &str) -> Result<(), Reason> {
    length(value, 1, 55, "characters (Cognito IdentityId)")?;
    let (region, id) = value
        .split_once(':')
        .ok_or_else(|| "no `:` between region and ID (Cognito IdentityId)".to_string())?;
    if region.is_empty() || id.is_empty() {
        return Err("an empty region or ID part (Cognito IdentityId)".into());
    }
    only(
        region,
        |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
        "word characters and `-` before the `:` (Cognito IdentityId)",
    )?;
    only(
        id,
        |b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-',
        "lowercase hexadecimal digits and `-` after the `:` (Cognito IdentityId)",
    )
}

/// An AWS access key ID: 16–128 word characters (`[A-Za-z0-9_]`).
///
/// Source: IAM API Reference, "AccessKey" data type, `AccessKeyId`: "Length Constraints:
/// Minimum length of 16. Maximum length of 128. Pattern: `[\w]+`"
/// (<https://docs.aws.amazon.com/IAM/latest/APIReference/API_AccessKey.html>).
pub fn aws_access_key_id(value: &str) -> Result<(), Reason> {
    length(value, 16, 128, "characters (AWS access key ID)")?;
    only(
        value,
        |b| b.is_ascii_alphanumeric() || b == b'_',
        "A-Z a-z 0-9 _ (AWS access key ID)",
    )
}

/// A WireGuard key: exactly 44 characters of standard base64 (RFC 4648 §4, with padding)
/// encoding 32 bytes.
///
/// Source: wg(8), "COMMANDS" `genkey`/`pubkey` and "CONFIGURATION FILE FORMAT" (`PrivateKey`,
/// `PublicKey`: "a base64 private key generated by wg genkey" / "a base64 public key
/// calculated by wg pubkey"); Curve25519 keys are 32 bytes (RFC 7748 §5).
pub fn wireguard_key(value: &str) -> Result<(), Reason> {
    let bad = || "not a WireGuard key (44 characters of base64, 32 bytes)".to_string();
    if value.len() != 44 {
        return Err(bad());
    }
    match BASE64.decode(value) {
        Ok(bytes) if bytes.len() == 32 => Ok(()),
        _ => Err(bad()),
    }
}

/// An IPv4 or IPv6 address literal, nothing around it (RFC 791 dotted quad as `std::net`
/// reads it; RFC 4291 §2.2 text forms for IPv6).
pub fn ip_address(value: &str) -> Result<(), Reason> {
    value
        .parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| "not an IPv4 or IPv6 address".to_string())
}

/// A network in CIDR notation, `address/prefix`, the prefix 1–3 decimal digits no larger than
/// the address family allows (RFC 4632 §3.1; RFC 4291 §2.3 for IPv6).
pub fn cidr(value: &str) -> Result<(), Reason> {
    let bad = || "not a CIDR such as 100.127.0.0/16".to_string();
    let (addr, prefix) = value.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok(())
}

/// An LwM2M server URI as SORACOM Inventory sends it, e.g. `coaps://jp.inventory.soracom.io:5684`:
/// scheme `coap`, `coaps`, `coap+tcp` or `coaps+tcp`, `://`, a host ([`split_host_port`]),
/// an optional port, and an optional path of RFC 3986 unreserved characters and `/`; no user
/// info, query or fragment.
///
/// Sources: RFC 7252 §6.1–6.2 (`coap`/`coaps` URI schemes), RFC 8323 §8.1–8.2
/// (`coap+tcp`/`coaps+tcp`), RFC 3986 §3 (URI syntax); OMA LwM2M Security object resource 0
/// "LwM2M Server URI".
pub fn coap_uri(value: &str) -> Result<(), Reason> {
    length(value, 1, 512, "bytes")?;
    let (scheme, rest) = value
        .split_once("://")
        .ok_or_else(|| "not a URI (expected e.g. coaps://host:5684)".to_string())?;
    if !matches!(scheme, "coap" | "coaps" | "coap+tcp" | "coaps+tcp") {
        return Err(
            "the scheme is not coap, coaps, coap+tcp or coaps+tcp (RFC 7252, RFC 8323)".into(),
        );
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    split_host_port(authority).map_err(|r| format!("the authority: {r}"))?;
    only(
        path,
        |b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b),
        "unreserved characters and `/` in the path (RFC 3986 §2.3)",
    )
}

/// An Inventory DTLS-PSK identity (`pskId`, the Inventory device ID such as `d-abc123…`):
/// 1–128 bytes of RFC 3986 unreserved characters and `:`.
///
/// Sources: RFC 4279 §5.1 (a PSK identity is a character string; implementations must support
/// identities of at least 128 octets, the length allowed here); SORACOM Inventory device IDs
/// are `d-` followed by letters and digits. The character set is this component's choice: the
/// identity reaches reports, so no space, quote or control character is accepted.
pub fn psk_identity(value: &str) -> Result<(), Reason> {
    length(value, 1, 128, "bytes (DTLS PSK identity)")?;
    only(
        value,
        |b| b.is_ascii_alphanumeric() || b"-._~:".contains(&b),
        "A-Z a-z 0-9 - . _ ~ : (PSK identity)",
    )
}

/// An LwM2M endpoint client name (`endpoint`), e.g. `urn:imei:490154203237518`: 1–256 bytes of
/// RFC 3986 unreserved characters and `: @ ! $ ( ) * ,`, so it is safe as the `ep=` query
/// value of an LwM2M Register (`/rd?ep=…`) without percent-encoding.
///
/// Sources: OMA LwM2M TS Core §6.2.1 (Register, `ep` parameter, a URN is recommended, RFC
/// 8141); RFC 3986 §3.4 (query characters, leaving out the `& = ; +` delimiters).
pub fn lwm2m_endpoint_name(value: &str) -> Result<(), Reason> {
    length(value, 1, 256, "bytes (LwM2M endpoint name)")?;
    only(
        value,
        |b| b.is_ascii_alphanumeric() || b"-._~:@!$()*,".contains(&b),
        "A-Z a-z 0-9 and - . _ ~ : @ ! $ ( ) * , (LwM2M endpoint name)",
    )
}

/// An IMSI: 6–15 decimal digits (ITU-T E.212 §2.2: MCC 3 digits, MNC 2–3, MSIN; 15 digits at
/// most).
pub fn imsi(value: &str) -> Result<(), Reason> {
    length(value, 6, 15, "digits (ITU-T E.212)")?;
    only(value, |b| b.is_ascii_digit(), "decimal digits (IMSI)")
}

/// An MSISDN in international form without `+`: 1–15 decimal digits (ITU-T E.164 §6: at most
/// 15 digits).
pub fn msisdn(value: &str) -> Result<(), Reason> {
    length(value, 1, 15, "digits (ITU-T E.164)")?;
    only(value, |b| b.is_ascii_digit(), "decimal digits (MSISDN)")
}

/// A SORACOM identifier or state word from subscriber metadata (`groupId`, `status`): 1–64
/// bytes of ASCII letters, digits, `-` and `_`.
///
/// Source: SORACOM API reference, `Subscriber` and `Group` models (`groupId` is a UUID-like
/// ID; `status` is one of `ready`, `active`, `inactive`, `standby`, `suspended`,
/// `terminated`, ...). The character set is this component's choice: both reach reports.
pub fn soracom_word(value: &str) -> Result<(), Reason> {
    length(value, 1, 64, "bytes")?;
    only(
        value,
        |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
        "A-Z a-z 0-9 - _",
    )
}

/// Longest Keys API `keyId` accepted, bytes. The Keys API does not document its form; the
/// bound keeps a hostile answer out of the store, the URL and every body.
pub const KEY_ID_MAX: usize = 256;

/// A Keys API `keyId` (`POST /v1/keys`): 1–[`KEY_ID_MAX`] bytes that can go into a URL path
/// segment unescaped (RFC 3986 §3.3 `pchar` without `%`), without `_`. SORACOM's clients cache a
/// session under `<IMSI>_<keyId>` and split the alias at `_` (`soracom/endorse-client-go`
/// `endorse/key_cache.go`), so a `keyId` holding `_` cannot come from their server. The
/// dot-segments `.` and `..` are refused too: in `/v1/keys/{keyId}/verify` they would name
/// another path once a server or proxy removes them (RFC 3986 §5.2.4).
pub fn keys_api_key_id(value: &str) -> Result<(), Reason> {
    length(value, 1, KEY_ID_MAX, "bytes")?;
    if value == "." || value == ".." {
        return Err("a dot-segment (`.` or `..`) is not a path segment of its own".to_string());
    }
    only(
        value,
        |b| b.is_ascii_alphanumeric() || b"-.~!$&'()*+,;=:@".contains(&b),
        "A-Z a-z 0-9 and - . ~ ! $ & ' ( ) * + , ; = : @ (no `_`, `/` or `%`)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(rule: Rule, values: &[&str]) {
        for v in values {
            assert_eq!(rule(v), Ok(()), "{v:?} should pass");
        }
    }

    fn bad(rule: Rule, values: &[&str]) {
        for v in values {
            assert!(rule(v).is_err(), "{v:?} should fail");
        }
    }

    /// Hostile values every rule must refuse (none of the rules allows any of them).
    fn hostile() -> Vec<String> {
        vec![
            "".into(),
            "a\nb".into(),
            "a\rb".into(),
            "a\"b".into(),
            "a\0b".into(),
            "a b".into(),
            "caf\u{e9}".into(),
            "x".repeat(10 * 1024),
        ]
    }

    fn refuses_hostile(rule: Rule) {
        for v in hostile() {
            assert!(rule(&v).is_err(), "{:?} should fail", &v[..v.len().min(20)]);
        }
    }

    #[test]
    fn dns_names() {
        ok(
            dns_name,
            &[
                "krypton-mock-hub.azure-devices.net",
                "abcd1234-ats.iot.ap-northeast-1.amazonaws.com",
                "a",
                "1example.com",
                &format!("{}.com", "a".repeat(63)),
            ],
        );
        bad(
            dns_name,
            &[
                "https://hub.azure-devices.net",
                "hub.azure-devices.net/path",
                "hub.azure-devices.net:443",
                "hub..net",
                "hub.net.",
                "-hub.net",
                "hub-.net",
                "user@hub.net",
                "under_score.net",
                "#x.net",
                "[x].net",
                "x=y.net",
                "x'.net",
                &format!("{}.com", "a".repeat(64)),
                &format!("{}a", "a.".repeat(127)),
            ],
        );
        refuses_hostile(dns_name);
    }

    #[test]
    fn host_and_ports() {
        assert_eq!(
            split_host_port("mock.arc.soracom.io:11010"),
            Ok(("mock.arc.soracom.io", Some(11010)))
        );
        assert_eq!(
            split_host_port("mock.arc.soracom.io"),
            Ok(("mock.arc.soracom.io", None))
        );
        assert_eq!(
            split_host_port("192.0.2.1:51820"),
            Ok(("192.0.2.1", Some(51820)))
        );
        assert_eq!(
            split_host_port("[2001:db8::1]:11010"),
            Ok(("[2001:db8::1]", Some(11010)))
        );
        assert_eq!(
            split_host_port("[2001:db8::1]"),
            Ok(("[2001:db8::1]", None))
        );
        bad(
            host_port,
            &[
                "x\n[Interface]\nPostUp=id\n[Peer]\nEndpoint=b.example:11010",
                "host:0",
                "host:65536",
                "host:+1",
                "host:",
                "host:1:2",
                "2001:db8::1",
                "[2001:db8::1",
                "[not-v6]:1",
                "[2001:db8::1]x",
                "a/b:1",
                "a b:1",
                "user@host:1",
                "host:11010#",
            ],
        );
        refuses_hostile(host_port);
        assert_eq!(host_and_port("host:1"), Ok(()));
        assert!(host_and_port("host").is_err());
    }

    #[test]
    fn azure_ids() {
        ok(
            iot_hub_device_id,
            &[
                "440101234567890",
                "dev-1",
                "a.b+c%d_e#f*g?h!i(j)k,l:m=n@o$p'q",
            ],
        );
        bad(
            iot_hub_device_id,
            &[
                "dev\"1",
                "dev\n1",
                "dev/1",
                "dev;1",
                "dev[1]",
                "dev\\1",
                &"a".repeat(129),
            ],
        );
        refuses_hostile(iot_hub_device_id);
        ok(dps_registration_id, &["gateway-moved", "a:b.c_d-e", "A1"]);
        bad(
            dps_registration_id,
            &[
                "-a",
                "a-",
                ".a",
                "a:",
                "a#b",
                "a=b",
                "a'b",
                "a[b",
                &"a".repeat(129),
            ],
        );
        refuses_hostile(dps_registration_id);
        ok(dps_operation_id, &["4.op-1", "4.0123abcd", "a~b_c"]);
        bad(
            dps_operation_id,
            &["a/b", "a?b", "a#b", "..%2f", &"a".repeat(257)],
        );
        refuses_hostile(dps_operation_id);
    }

    #[test]
    fn aws_ids() {
        ok(
            aws_thing_name,
            &["gateway-7", "thing-440101234567890", "a:b_c-d"],
        );
        bad(aws_thing_name, &["a.b", "a#b", "a=b", &"a".repeat(129)]);
        refuses_hostile(aws_thing_name);

        ok(
            aws_iot_client_id,
            &[
                "thing-440101234567890",
                "a b",
                "caf\u{e9}",
                "a\"b#c=d[e'f",
                &"a".repeat(128),
            ],
        );
        bad(
            aws_iot_client_id,
            &[
                "",
                "$aws",
                "a\nb",
                "a\rb",
                "a\0b",
                "a\u{7f}b",
                "a\u{85}b",
                &"a".repeat(129),
            ],
        );
        // 43 two-byte characters are 86 bytes (fine); 65 are 130 bytes (too many).
        assert_eq!(aws_iot_client_id(&"\u{e9}".repeat(43)), Ok(()));
        assert!(aws_iot_client_id(&"\u{e9}".repeat(65)).is_err());

        ok(
            aws_certificate_id,
            &[&"ab12".repeat(16), &"AB12".repeat(16)],
        );
        bad(
            aws_certificate_id,
            &[&"ab12".repeat(15), &"g".repeat(64), &"a".repeat(65)],
        );
        refuses_hostile(aws_certificate_id);

        ok(
            aws_region,
            &[
                "ap-northeast-1",
                "us-east-1",
                "us-gov-west-1",
                "cn-northwest-1",
                "us-isob-east-1",
                "eusc-de-east-1",
            ],
        );
        bad(
            aws_region,
            &[
                "ap-northeast",
                "AP-NORTHEAST-1",
                "ap_northeast_1",
                "northeast-1",
                "ap--1",
                "a-b-1",
                "ap-northeast-1x",
                "ap-northeast-1234",
            ],
        );
        refuses_hostile(aws_region);

        ok(
            cognito_identity_id,
            &[
                "ap-northeast-1:00000000-0000-4000-8000-101234567890",
                "us_east-1:abc-123",
            ],
        );
        bad(
            cognito_identity_id,
            &[
                "ap-northeast-1:mock-identity",
                "ap-northeast-1",
                ":abc",
                "ap-northeast-1:",
                "ap northeast:abc",
                &format!("ap-northeast-1:{}", "a".repeat(41)),
            ],
        );
        refuses_hostile(cognito_identity_id);

        ok(
            aws_access_key_id,
            &["ASIAMOCK00000001", "AKIA_0123456789ABCDEF"],
        );
        bad(
            aws_access_key_id,
            &["ASIAMOCK0000001", "ASIA-MOCK-000000001", &"A".repeat(129)],
        );
        refuses_hostile(aws_access_key_id);
    }

    #[test]
    fn wireguard_values() {
        let key = BASE64.encode([7u8; 32]);
        ok(wireguard_key, &[&key]);
        let mut newline = key.clone();
        newline.replace_range(10..11, "\n");
        bad(
            wireguard_key,
            &[
                &BASE64.encode([7u8; 31]),
                &format!("{}\n", &key[..43]),
                &newline,
                &format!(" {}", &key[1..]),
                &BASE64.encode([7u8; 33]),
            ],
        );
        refuses_hostile(wireguard_key);

        ok(ip_address, &["10.123.45.6", "2001:db8::1"]);
        bad(
            ip_address,
            &[
                "10.123.45.6/32",
                " 10.0.0.1",
                "10.0.0.1\n",
                "fe80::1%eth0",
                "host",
            ],
        );
        refuses_hostile(ip_address);

        ok(
            cidr,
            &[
                "100.127.0.0/16",
                "0.0.0.0/0",
                "2001:db8::/32",
                "10.0.0.1/32",
            ],
        );
        bad(
            cidr,
            &[
                "100.127.0.0",
                "100.127.0.0/33",
                "2001:db8::/129",
                "10.0.0.0/+8",
                " 10.0.0.0/8",
                "10.0.0.0/8\n",
                "10.0.0.0/0008",
            ],
        );
        refuses_hostile(cidr);
    }

    #[test]
    fn inventory_values() {
        ok(
            coap_uri,
            &[
                "coaps://jp.inventory.soracom.io:5684",
                "coap://192.0.2.1",
                "coaps+tcp://[2001:db8::1]:5684/bs",
            ],
        );
        bad(
            coap_uri,
            &[
                "https://x.example",
                "coaps://",
                "coaps://x.example:0",
                "coaps://u@x.example",
                "coaps://x.example/?q",
                "coaps://x.example/#f",
                "jp.inventory.soracom.io",
            ],
        );
        refuses_hostile(coap_uri);
        ok(psk_identity, &["d-mock440101234567890", "d-abc.def_1~2:3"]);
        bad(psk_identity, &["d#1", "d=1", "d'1", "d[1"]);
        refuses_hostile(psk_identity);
        ok(
            lwm2m_endpoint_name,
            &["urn:imei:490154203237518", "gw-1", "a@b!c$(d)*e,f"],
        );
        bad(lwm2m_endpoint_name, &["a&b", "a=b", "a#b", "a'b", "a[b"]);
        refuses_hostile(lwm2m_endpoint_name);
    }

    #[test]
    fn subscriber_values() {
        ok(imsi, &["440101234567890", "440101"]);
        bad(imsi, &["4401", "4401012345678901", "44010123456789a"]);
        refuses_hostile(imsi);
        ok(msisdn, &["812012345678"]);
        bad(msisdn, &["+812012345678", "8120123456789012"]);
        refuses_hostile(msisdn);
        ok(soracom_word, &["active", "mock-group-1", "a_b"]);
        bad(soracom_word, &["a.b", "a#b", "a=b"]);
        refuses_hostile(soracom_word);
    }

    #[test]
    fn errors_name_the_field_and_never_echo_the_value() {
        let e = check("deviceId", "SECRET-LOOKING\"VALUE\n", iot_hub_device_id).unwrap_err();
        let Error::InvalidResponse { field, reason, .. } = e else {
            panic!("expected InvalidResponse")
        };
        assert_eq!(field, "deviceId");
        assert!(!reason.contains("SECRET"), "{reason}");
        assert!(reason.contains("byte 15 is `\"`"), "{reason}");
    }

    #[test]
    fn keys_api_key_id_is_one_plain_path_segment() {
        ok(
            keys_api_key_id,
            &["k-0123456789abcdef", "a.b", "...", "x~y:z@1"],
        );
        let long = "k".repeat(KEY_ID_MAX + 1);
        let huge = "k".repeat(10 * 1024);
        bad(
            keys_api_key_id,
            &[
                "", ".", "..", "a_b", "a/b", "../x", "a%2Fb", "a b", "a?b", "a#b", &long, &huge,
            ],
        );
    }
}
