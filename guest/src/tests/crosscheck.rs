//! Answers that disagree with themselves: two views of one fact in one Krypton answer. The
//! bundle is stored (it may be what the service meant), and the disagreement is reported: a
//! log line, `warnings` in the report of `provision`, and the same in `status`.

use super::*;

/// The subject CN of `testdata/ec.crt` (`openssl x509 -in ec.crt -noout -subject`).
const EC_CN: &str = "ec-device";
/// SHA-256 of `testdata/ec.crt`'s DER (`testdata/ec.crt.sha256`).
const EC_SHA256: &str = "219d7d3a4413896a279f20211c78b52d8bad2185434ef17387ea02efd750a9fb";

fn warning(check: &str, message: &str) -> Warning {
    Warning {
        check: check.into(),
        message: message.into(),
    }
}

/// What `status` reports for `target` now.
fn status_warnings(fake: &mut Fake, target: Target) -> Vec<Warning> {
    status(fake, target).unwrap().unwrap().warnings
}

#[test]
fn azure_device_id_that_is_not_the_certificate_cn_is_stored_and_reported() {
    // P7 `assigned`, as Krypton relays DPS: deviceId `dev-440101234567890`, a certificate
    // whose subject is `O=Krypton Test,CN=ec-device`.
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, assigned());
    let report = provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let expected = warning(
        "device-id-vs-certificate-cn",
        "deviceId `dev-440101234567890` is not the certificate's subject CN (`ec-device`): DPS \
         X.509 attestation registers a device under its certificate's CN, so IoT Hub may refuse \
         this device, or it was given another device's identity; check the DPS enrollment and \
         the deviceId Krypton sent",
    );
    assert_eq!(report.warnings, vec![expected.clone()]);
    // Stored all the same, as Krypton sent it.
    let Bundle::AzureIot(b) = Bundle::from_bytes("azure-iot", &fake.store["azure-iot"]).unwrap()
    else {
        panic!("wrong bundle type")
    };
    assert_eq!(b.device_id, "dev-440101234567890");
    assert_eq!(b.certificate, EC_CRT);
    assert_eq!(
        report.certificate.as_ref().unwrap().subject,
        "O=Krypton Test,CN=ec-device"
    );
    // One log line, after the bundle is stored.
    let warned: Vec<&String> = fake.logs.iter().filter(|l| l.contains("warning")).collect();
    assert_eq!(
        warned,
        vec![&format!(
            "azure-iot: warning: device-id-vs-certificate-cn: {}",
            expected.message
        )]
    );
    // `status` reports it too, from what is stored.
    assert_eq!(status_warnings(&mut fake, Target::AzureIot), vec![expected]);

    // The same answer with the CN as deviceId: no warning.
    let mut agreeing = assigned();
    agreeing["deviceId"] = json!(EC_CN);
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, agreeing);
    let report = provision(&mut fake, &request(Target::AzureIot)).unwrap();
    assert_eq!(report.warnings, Vec::new());
    assert!(!fake.logs.iter().any(|l| l.contains("warning")));
    assert_eq!(status_warnings(&mut fake, Target::AzureIot), Vec::new());
}

#[test]
fn aws_iot_certificate_id_and_region_are_checked_against_the_certificate_and_the_host() {
    // P1 with `certificateId` and `region` beside the certificate and the endpoint.
    let answer = |certificate_id: &str, region: &str| {
        json!({"region": region, "host": "abc-ats.iot.ap-northeast-1.amazonaws.com",
               "clientId": "thing-1", "certificate": EC_CRT, "privateKey": EC_SEC1,
               "rootCaCertificate": ROOT_CRT, "certificateId": certificate_id})
    };
    let mut fake = Fake::default().reply(200, answer(CERT_ID, "us-east-1"));
    let report = provision(&mut fake, &request(Target::AwsIot)).unwrap();
    let expected = vec![
        warning(
            "certificate-id-vs-certificate",
            &format!(
                "certificateId `{CERT_ID}` is not the SHA-256 of the stored certificate \
                 (`{EC_SHA256}`), which is how AWS IoT names a certificate: the certificate \
                 returned may not be the one registered for this device"
            ),
        ),
        warning(
            "region-vs-host",
            "region `us-east-1` is not the region of the AWS IoT endpoint \
             `abc-ats.iot.ap-northeast-1.amazonaws.com` (`ap-northeast-1`): AWS IoT things and \
             certificates are regional, so one of the two is wrong",
        ),
    ];
    assert_eq!(report.warnings, expected);
    assert_eq!(
        identifiers(&report),
        vec![
            ("clientId", "thing-1"),
            ("host", "abc-ats.iot.ap-northeast-1.amazonaws.com"),
            ("region", "us-east-1"),
            ("certificateId", CERT_ID)
        ]
    );
    assert!(fake.store.contains_key("aws-iot"));
    assert_eq!(
        fake.logs.iter().filter(|l| l.contains("warning")).count(),
        2
    );
    assert_eq!(status_warnings(&mut fake, Target::AwsIot), expected);

    // The certificate's own SHA-256 (upper case is the same ID) and the endpoint's region.
    let mut fake = Fake::default().reply(
        200,
        answer(&EC_SHA256.to_ascii_uppercase(), "ap-northeast-1"),
    );
    let report = provision(&mut fake, &request(Target::AwsIot)).unwrap();
    assert_eq!(report.warnings, Vec::new());
    // An endpoint that names no region (a custom domain) is not compared.
    let mut custom = answer(EC_SHA256, "eu-west-1");
    custom["host"] = json!("iot.gateway.example.com");
    let mut fake = Fake::default().reply(200, custom);
    assert_eq!(
        provision(&mut fake, &request(Target::AwsIot))
            .unwrap()
            .warnings,
        Vec::new()
    );
}

#[test]
fn cognito_identity_id_of_another_region_is_reported_by_both_targets() {
    // P4: `identityId` `<region>:<uuid>` beside `region`.
    let credentials = |identity: &str| {
        json!({"identityId": identity, "region": "ap-northeast-1",
               "credentials": {"accessKeyId": "ASIAEXAMPLE00001", "secretKey": "s3cr3t/Key+1",
                               "sessionToken": "t0ken/2+==", "expiration": 1_900_000_000u64}})
    };
    let other = "us-west-2:00000000-0000-4000-8000-000000000001";
    let expected = vec![warning(
        "identity-id-vs-region",
        "identityId `us-west-2:00000000-0000-4000-8000-000000000001` belongs to region \
         `us-west-2`, not to region `ap-northeast-1`: a Cognito identity lives in the region \
         of its identity pool, so calls to `ap-northeast-1` will not find it",
    )];
    let mut fake = Fake::default().reply(200, credentials(other));
    let report = provision(&mut fake, &request(Target::AwsCognito)).unwrap();
    assert_eq!(report.warnings, expected);
    assert_eq!(status_warnings(&mut fake, Target::AwsCognito), expected);
    let mut fake = Fake::default().reply(200, credentials(OPENID_ID));
    let report = provision(&mut fake, &request(Target::AwsCognito)).unwrap();
    assert_eq!(report.warnings, Vec::new());

    // P5: the same two views in the OpenID answer.
    let mut fake = Fake::default().reply(
        200,
        json!({"region": "ap-northeast-1", "token": "CANARY-openid", "identityId": other}),
    );
    let report = provision(&mut fake, &request(Target::AwsCognitoOpenid)).unwrap();
    assert_eq!(report.warnings, expected);
    assert_eq!(
        status_warnings(&mut fake, Target::AwsCognitoOpenid),
        expected
    );
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused_and_the_stored_bundle_kept() {
    // Worse than a warning: a bundle whose key is not the certificate's can never connect,
    // so it must not replace credentials that work.
    let mut fake = provisioned(Target::AzureIot);
    let before = fake.store["azure-iot"].clone();
    let mut answer = assigned();
    answer["privateKey"] = json!(OTHER_EC);
    fake = fake
        .reply(200, json!({"operationId": "4.op-9", "status": "assigning"}))
        .reply(200, answer);
    let mut req = request(Target::AzureIot);
    req.force = true;
    let err = provision(&mut fake, &req).unwrap_err();
    assert_eq!(
        err,
        Error::invalid(
            "privateKey",
            "the private key does not match the certificate's public key"
        )
    );
    assert_eq!(fake.store["azure-iot"], before);
}
