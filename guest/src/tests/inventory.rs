//! SORACOM Inventory: the `endpoint` parameter, the application key.

use super::*;

#[test]
fn inventory_needs_an_endpoint_and_an_application_key() {
    let mut req = request(Target::Inventory);
    assert!(
        matches!(provision(&mut Fake::default(), &req), Err(Error::InvalidRequest(m)) if m.contains("endpoint"))
    );
    req.request_parameters = Some(r#"{"endpoint":"gw-0042"}"#.into());
    let mut fake = Fake::default().reply(
        200,
        json!({"serverUri": "coaps://jp.inventory.soracom.io:5684",
        "pskId": "d-0123456789abcdefghij", "applicationKey": "gvFdTTvSWsNoTX/kjBNRKQ=="}),
    );
    let report = provision(&mut fake, &req).unwrap();
    assert_eq!(
        fake.requests[0].2.as_deref(),
        Some(r#"{"endpoint":"gw-0042","requestParameters":{"endpoint":"gw-0042"}}"#)
    );
    assert_eq!(
        identifiers(&report),
        vec![
            ("endpoint", "gw-0042"),
            ("serverUri", "coaps://jp.inventory.soracom.io:5684"),
            ("pskId", "d-0123456789abcdefghij")
        ]
    );
    for (body, field, reason) in [
        (
            json!({"serverUri": "coaps://x:5684", "pskId": "d-1", "nonce": "AAECAwQFBgcICQoLDA0ODw==", "timestamp": "1700000000123"}),
            "applicationKey",
            "missing: Krypton sent nonce/timestamp, which only SIM-authenticated mode can turn into a key",
        ),
        (
            json!({"serverUri": "coaps://x:5684", "pskId": "d-1", "applicationKey": "AAAA"}),
            "applicationKey",
            "expected 16 bytes, got 3",
        ),
        (
            json!({"serverUri": "x", "pskId": "d-1", "applicationKey": "gvFdTTvSWsNoTX/kjBNRKQ=="}),
            "serverUri",
            "not a URI (expected e.g. coaps://host:5684)",
        ),
    ] {
        let mut fake = Fake::default().reply(200, body);
        assert_eq!(
            provision(&mut fake, &req).unwrap_err(),
            Error::invalid(field, reason)
        );
    }
}

#[test]
fn inventory_key_derivation_matches_the_reference_vector() {
    // The derivation of SORACOM's clients (Go `calculateInventoryApplicationKey`, Java
    // `EndorseAPI.calculateApplicationKey`): nonce AAECAwQFBgcICQoLDA0ODw==, timestamp
    // 1700000000123, CK 00..0f.
    let ck: Vec<u8> = (0u8..16).collect();
    assert_eq!(
        crate::ops::inventory::inventory_application_key(
            "AAECAwQFBgcICQoLDA0ODw==",
            "1700000000123",
            &ck
        )
        .unwrap(),
        "gvFdTTvSWsNoTX/kjBNRKQ=="
    );
}
