//! Amazon Cognito: credentials, their expiry and refresh.

use super::*;

#[test]
fn cognito_expiration_accepts_ms_seconds_and_iso_as_the_same_instant() {
    use crate::ops::cognito::parse_expiration;
    let instant = 1_800_000_000_000u64; // 2027-01-15T08:00:00Z
    assert_eq!(
        parse_expiration(Some(&json!(1_800_000_000_000u64))),
        Ok(instant)
    );
    assert_eq!(
        parse_expiration(Some(&json!(1_800_000_000u64))),
        Ok(instant)
    );
    assert_eq!(
        parse_expiration(Some(&json!("2027-01-15T08:00:00Z"))),
        Ok(instant)
    );
    assert_eq!(
        parse_expiration(Some(&json!("2027-01-15T17:00:00+09:00"))),
        Ok(instant)
    );
    assert_eq!(
        parse_expiration(Some(&json!("2027-01-15T08:00:00.250Z"))),
        Ok(instant + 250)
    );
    for bad in [
        json!(0),
        json!(-5),
        json!(1.5),
        json!("tomorrow"),
        json!("1800000000"),
        json!(true),
        json!({}),
    ] {
        let err = parse_expiration(Some(&bad)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidResponse { field, .. } if field == "credentials.expiration"),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(
        parse_expiration(None),
        Err(Error::invalid("credentials.expiration", "missing"))
    );
}

#[test]
fn cognito_credentials_are_stored_and_refreshed_before_expiry() {
    let now_s = 1_800_000_000u64;
    let creds = |exp: u64| {
        json!({"identityId": "ap-northeast-1:abcd", "region": "ap-northeast-1",
        "credentials": {"accessKeyId": "ASIAEXAMPLE00001", "secretKey": "CANARY-secret", "sessionToken": "CANARY-token", "expiration": exp}})
    };
    let mut fake = Fake::default()
        .reply(200, creds(now_s + 3600))
        .reply(200, creds(now_s + 7200));
    let report = provision(&mut fake, &request(Target::AwsCognito)).unwrap();
    assert_eq!(
        fake.requests[0].1,
        "/v1/provisioning/aws/cognito/credentials"
    );
    assert_eq!(
        identifiers(&report),
        vec![
            ("identityId", "ap-northeast-1:abcd"),
            ("accessKeyId", "ASIAEXAMPLE00001"),
            ("region", "ap-northeast-1"),
            ("expiration", "2027-01-15T09:00:00Z")
        ]
    );
    let Bundle::AwsCognito(b) =
        Bundle::from_bytes("aws-cognito", &fake.store["aws-cognito"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(b.secret_key.expose(), "CANARY-secret");
    assert_eq!(b.session_token.expose(), "CANARY-token");
    assert_eq!(b.expiration_ms, (now_s + 3600) * 1000);
    // Valid for an hour: reused.
    assert!(
        provision(&mut fake, &request(Target::AwsCognito))
            .unwrap()
            .reused
    );
    // Four minutes before expiry: refreshed.
    fake.now_ms += 56 * 60 * 1000;
    let fresh = provision(&mut fake, &request(Target::AwsCognito)).unwrap();
    assert!(!fresh.reused);
    assert_eq!(fake.requests.len(), 2);
    // A nested field error names its path.
    let mut fake = Fake::default().reply(
        200,
        json!({"identityId": "x", "credentials": {"accessKeyId": "ASIAEXAMPLE00001", "secretKey": 5}}),
    );
    assert_eq!(
        provision(&mut fake, &request(Target::AwsCognito)).unwrap_err(),
        Error::invalid("credentials.secretKey", "expected a string, got a number")
    );
}
