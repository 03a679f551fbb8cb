//! SORACOM Arc: the bootstrap's fields.

use super::*;

#[test]
fn arc_fields_are_validated_and_the_endpoint_text_kept() {
    for (endpoint, stored) in [
        ("beck.arc.soracom.io:11010", "beck.arc.soracom.io:11010"),
        ("beck.arc.soracom.io", "beck.arc.soracom.io:11010"),
        ("[2001:db8::1]:5555", "[2001:db8::1]:5555"),
    ] {
        let mut fake = Fake::default().reply(200, arc_body(endpoint));
        let report = provision(&mut fake, &request(Target::Arc)).unwrap();
        assert_eq!(fake.requests[0].1, "/v1/provisioning/soracom/arc/bootstrap");
        assert_eq!(identifiers(&report)[1], ("arcServerEndpoint", stored));
    }
    let cases = [
        (
            "arcClientPeerPrivateKey",
            json!("tooshort"),
            "not a WireGuard key (44 characters of base64, 32 bytes)",
        ),
        (
            "arcServerPeerPublicKey",
            json!(42),
            "expected a string, got a number",
        ),
        (
            "arcClientPeerIpAddress",
            json!("10.0.0.300"),
            "not an IPv4 or IPv6 address",
        ),
        (
            "arcServerEndpoint",
            json!("host:99999"),
            "expected host:port, e.g. xxx.arc.soracom.io:11010: the port is not a number from 1 to 65535 (RFC 3986 §3.2.3)",
        ),
        (
            "arcAllowedIPs",
            json!(["100.127.0.0/16", "100.127.0.0/40"]),
            "entry 2 is not a CIDR such as 100.127.0.0/16",
        ),
        ("arcAllowedIPs", json!([]), "empty"),
    ];
    for (field, value, reason) in cases {
        let mut body = arc_body("x:1");
        body[field] = value;
        let mut fake = Fake::default().reply(200, body);
        assert_eq!(
            provision(&mut fake, &request(Target::Arc)).unwrap_err(),
            Error::invalid(field, reason)
        );
        assert!(fake.store.is_empty());
    }
}

/// soratun's `arc.json`: both route lists, in file order, each entry trimmed and located; a
/// value that is not a string is reported with its JSON text; a file with neither list, or not
/// JSON, is refused.
#[test]
fn soratun_routes_are_read_from_both_lists() {
    use crate::ops::arc::{soratun_route_fix, soratun_routes};
    let text = r#"{"arcSessionStatus": {"arcAllowedIPs": ["100.127.0.0/16", " 54.250.252.67/32 "]},
        "additionalAllowedIPs": ["10.0.0.0/8", 7]}"#;
    let entries = soratun_routes(text).unwrap();
    let seen: Vec<(&str, &str, Option<&str>)> = entries
        .iter()
        .map(|e| (e.location.as_str(), e.entry.as_str(), e.problem.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("arcSessionStatus.arcAllowedIPs[0]", "100.127.0.0/16", None),
            (
                "arcSessionStatus.arcAllowedIPs[1]",
                "54.250.252.67/32",
                None
            ),
            ("additionalAllowedIPs[0]", "10.0.0.0/8", None),
            ("additionalAllowedIPs[1]", "7", Some("not a string")),
        ]
    );
    assert_eq!(
        soratun_routes(r#"{"additionalAllowedIPs": []}"#).unwrap(),
        vec![]
    );
    for (bad, why) in [
        (
            "{}",
            "neither `arcSessionStatus.arcAllowedIPs` nor `additionalAllowedIPs` is present",
        ),
        (r#"{"additionalAllowedIPs": "10.0.0.0/8"}"#, "neither"),
        ("not json", "not JSON: "),
    ] {
        let err = soratun_routes(bad).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRequest(m) if m.starts_with(why)),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(
        soratun_route_fix(&["54.250.252.99/32".into(), "2001:db8::9/128".into()]),
        "\"additionalAllowedIPs\": [\"54.250.252.99/32\", \"2001:db8::9/128\"]   \
         (or: soratun ... --additional-allowed-ips 54.250.252.99/32,2001:db8::9/128)"
    );
}
