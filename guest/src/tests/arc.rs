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
