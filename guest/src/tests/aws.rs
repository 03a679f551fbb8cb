//! AWS IoT: bootstrap, the split flow, `thingName`.

use super::*;

#[test]
fn aws_iot_bootstrap_sends_parameters_and_stores_fields() {
    let mut fake = Fake::default().reply(
        200,
        json!({"region": "ap-northeast-1", "host": "abc-ats.iot.ap-northeast-1.amazonaws.com",
               "clientId": "thing-440101234567890", "certificate": EC_CRT.replace('\n', "\r\n"),
               "privateKey": EC_SEC1, "rootCaCertificate": ROOT_CRT}),
    );
    let mut req = request(Target::AwsIot);
    req.request_parameters = Some(r#"{"thingName":"gw-1","custom":[1,2]}"#.into());
    let report = provision(&mut fake, &req).unwrap();
    assert_eq!(fake.requests[0].0, "POST");
    assert_eq!(fake.requests[0].1, "/v1/provisioning/aws/iot/bootstrap");
    assert_eq!(
        fake.requests[0].2.as_deref(),
        Some(r#"{"requestParameters":{"custom":[1,2],"thingName":"gw-1"}}"#)
    );
    assert_eq!(
        identifiers(&report),
        vec![
            ("clientId", "thing-440101234567890"),
            ("host", "abc-ats.iot.ap-northeast-1.amazonaws.com"),
            ("region", "ap-northeast-1")
        ]
    );
    let Bundle::AwsIot(b) = Bundle::from_bytes("aws-iot", &fake.store["aws-iot"]).unwrap() else {
        panic!("wrong bundle type")
    };
    assert_eq!(b.certificate, EC_CRT, "stored with LF line endings");
    assert_eq!(b.private_key.expose(), EC_SEC1);
}

#[test]
fn aws_split_flow_fetches_certificate_and_root_ca_then_stores_once() {
    let mut fake = Fake::default()
        .reply(
            200,
            json!({"privateKey": EC_SEC1, "host": "abc-ats.iot.eu-west-1.amazonaws.com",
                           "thingName": "gw-9", "certificateId": CERT_ID}),
        )
        .reply(200, json!({"certificate": EC_CRT}))
        .reply(200, json!({"rootCaCertificate": ROOT_CRT}));
    let mut req = request(Target::AwsIot);
    req.request_parameters = Some(r#"{"skipCertificates":"true","thingName":""}"#.into());
    let report = provision(&mut fake, &req).unwrap();
    let calls: Vec<_> = fake
        .requests
        .iter()
        .map(|r| (r.1.as_str(), r.2.as_deref()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "/v1/provisioning/aws/iot/bootstrap",
                Some(r#"{"requestParameters":{"skipCertificates":true}}"#)
            ),
            (CERT_PATH, Some("{}")),
            ("/v1/provisioning/aws/iot/ca_certificate", Some("{}")),
        ]
    );
    assert_eq!(
        identifiers(&report),
        vec![
            ("clientId", "gw-9"),
            ("host", "abc-ats.iot.eu-west-1.amazonaws.com"),
            ("region", "eu-west-1"),
            ("certificateId", CERT_ID)
        ]
    );
    let Bundle::AwsIot(b) = Bundle::from_bytes("aws-iot", &fake.store["aws-iot"]).unwrap() else {
        panic!()
    };
    assert_eq!(b.root_ca_certificate.as_deref(), Some(ROOT_CRT));
    assert_eq!(b.certificate, EC_CRT);

    // The CA call fails: nothing is stored.
    let mut fake = Fake::default()
        .reply(200, json!({"privateKey": EC_SEC1, "host": "h.iot.eu-west-1.amazonaws.com", "clientId": "c", "certificateId": CERT_ID}))
        .reply(200, json!({"certificate": EC_CRT}))
        .reply(500, json!({"code": "KRY500", "message": "x"}));
    req.request_parameters = Some(r#"{"skipCertificates":true}"#.into());
    assert!(provision(&mut fake, &req).is_err());
    assert!(fake.store.is_empty());
}

#[test]
fn thing_name_is_validated_locally() {
    for bad in [
        r#"{"thingName":"has space"}"#,
        r#"{"thingName":"é"}"#,
        r#"{"thingName":7}"#,
    ] {
        let mut req = request(Target::AwsIot);
        req.request_parameters = Some(bad.into());
        let mut fake = Fake::default();
        assert!(
            matches!(provision(&mut fake, &req), Err(Error::InvalidRequest(_))),
            "{bad}"
        );
        assert!(fake.requests.is_empty());
    }
    let long = format!(r#"{{"thingName":"{}"}}"#, "a".repeat(129));
    let mut req = request(Target::AwsIot);
    req.request_parameters = Some(long);
    assert!(matches!(
        provision(&mut Fake::default(), &req),
        Err(Error::InvalidRequest(_))
    ));
    // The client ID falls back to the requested thing name.
    let mut fake = Fake::default().reply(
        200,
        json!({"region": "ap-northeast-1", "host": "h.example", "certificate": EC_CRT, "privateKey": EC_SEC1}),
    );
    req.request_parameters = Some(format!(
        r#"{{"thingName":"{}","x":1}}"#,
        "a:b_c-D".repeat(2)
    ));
    let report = provision(&mut fake, &req).unwrap();
    assert_eq!(identifiers(&report)[0], ("clientId", "a:b_c-Da:b_c-D"));
    assert_eq!(
        fake.requests[0].2.as_deref(),
        Some(r#"{"requestParameters":{"thingName":"a:b_c-Da:b_c-D","x":1}}"#)
    );
}
