//! The one-call targets Cognito OpenID, subscriber metadata and userdata.

use super::*;

#[test]
fn openid_token_metadata_and_userdata() {
    let mut fake = Fake::default().reply(
        200,
        json!({"region": "ap-northeast-1", "token": "CANARY-openid", "identityId": OPENID_ID}),
    );
    let report = provision(&mut fake, &request(Target::AwsCognitoOpenid)).unwrap();
    assert_eq!(
        fake.requests[0].1,
        "/v1/provisioning/aws/cognito/open_id_tokens"
    );
    assert_eq!(
        identifiers(&report),
        vec![("identityId", OPENID_ID), ("region", "ap-northeast-1")]
    );

    let metadata = json!({"imsi": "440101234567890", "groupId": "g-1", "tags": {"name": "gw"}, "speedClass": "s1.fast"});
    let mut fake = Fake::default().reply(200, metadata.clone());
    let report = provision(&mut fake, &request(Target::SubscriberMetadata)).unwrap();
    assert_eq!(
        fake.requests[0].1,
        "/v1/provisioning/soracom/air/subscriber_metadata"
    );
    assert_eq!(
        identifiers(&report),
        vec![("imsi", "440101234567890"), ("groupId", "g-1"),]
    );
    assert_eq!(report.sizes, vec![("fields".to_string(), 4)]);
    let Bundle::SubscriberMetadata(b) =
        Bundle::from_bytes("m", &fake.store["subscriber-metadata"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(serde_json::Value::Object(b.metadata), metadata);

    let mut fake =
        Fake::default().reply_raw(200, &[("content-type", "text/plain")], b"my-bucket\nline 2");
    let report = provision(&mut fake, &request(Target::Userdata)).unwrap();
    assert_eq!(fake.requests[0].1, "/v1/provisioning/soracom/air/userdata");
    assert!(identifiers(&report).is_empty());
    assert_eq!(report.sizes, vec![("bytes".to_string(), 16)]);
    let Bundle::Userdata(b) = Bundle::from_bytes("u", &fake.store["userdata"]).unwrap() else {
        panic!()
    };
    assert_eq!(b.userdata.expose(), "my-bucket\nline 2");
    // Always fetched again: userdata changes with the group's configuration.
    let mut fake2 = Fake {
        store: fake.store.clone(),
        ..Fake::default()
    }
    .reply_raw(200, &[], b"v2");
    assert!(
        !provision(&mut fake2, &request(Target::Userdata))
            .unwrap()
            .reused
    );
}
