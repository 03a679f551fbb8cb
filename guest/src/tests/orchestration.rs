//! The orchestration: reuse, the store before any call, the store probe, unusable bundles, hostile values in reports and answers.

use super::*;

#[test]
fn a_valid_stored_bundle_is_reused_without_force() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, assigned());
    let first = provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let calls = fake.requests.len();
    let again = provision(&mut fake, &request(Target::AzureIot)).unwrap();
    assert_eq!(fake.requests.len(), calls, "Krypton was called again");
    assert!(again.reused);
    assert_eq!(again.identifiers, first.identifiers);
    assert_eq!(again.certificate, first.certificate);
    assert_eq!(status(&mut fake, Target::AzureIot).unwrap(), Some(again));
    assert_eq!(status(&mut fake, Target::AwsIot).unwrap(), None);
}

#[test]
fn invalid_responses_name_the_field_and_store_nothing() {
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (
            json!({"region": "ap-northeast-1", "host": "h.example", "clientId": "c", "privateKey": EC_SEC1}),
            "certificate",
            "missing",
        ),
        (
            json!({"region": "ap-northeast-1", "host": "h.example", "clientId": 7, "certificate": EC_CRT, "privateKey": EC_SEC1}),
            "clientId",
            "expected a string, got a number",
        ),
        (
            json!({"region": "ap-northeast-1", "host": "h.example", "clientId": "c", "certificate": EC_CRT, "privateKey": OTHER_EC}),
            "privateKey",
            "the private key does not match the certificate's public key",
        ),
        (
            json!({"region": "ap-northeast-1", "host": "h.example", "clientId": "c", "certificate": EC_CRT, "privateKey": ""}),
            "privateKey",
            "empty",
        ),
        (
            json!([1, 2]),
            "body",
            "expected a JSON object, got an array",
        ),
    ];
    for (body, field, reason) in cases {
        let mut fake = Fake::default().reply(200, body);
        let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
        assert_eq!(err, Error::invalid(field, reason));
        assert!(fake.store.is_empty());
    }
    let mut fake = Fake::default().reply_raw(200, &[], b"{\"region\": ");
    let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { field, reason, .. } if field == "body" && reason.starts_with("not JSON")),
        "{err:?}"
    );
    let mut fake = Fake::default().reply_raw(200, &[], b"\xff\xfe");
    let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { field, reason, .. } if field == "body" && reason.starts_with("not UTF-8")),
        "{err:?}"
    );
}

#[test]
fn bad_requests_are_refused_before_any_call() {
    for (endpoint, params, expect) in [
        ("krypton.example:8036", None, "missing scheme"),
        ("ftp://krypton.example", None, "scheme `ftp`"),
        (
            "https://krypton.example:8036",
            Some("[1]"),
            "must be a JSON object",
        ),
        ("https://krypton.example:8036", Some("{"), "not JSON"),
    ] {
        let mut fake = Fake::default();
        let mut req = request(Target::AwsIot);
        req.endpoint = endpoint.into();
        req.request_parameters = params.map(str::to_string);
        let err = provision(&mut fake, &req).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRequest(m) if m.contains(expect)),
            "{err:?}"
        );
        assert!(fake.requests.is_empty());
    }
    // SIM mode is implemented: on a host without SIM access it stops with a typed uicc error
    // before any call, and a bad request is refused before the SIM is asked.
    let mut req = request(Target::AzureIot);
    req.mode = AuthMode::Sim;
    let mut fake = Fake::default();
    assert!(matches!(
        provision(&mut fake, &req).unwrap_err(),
        Error::Sim(SimError::Uicc(UiccError::Unavailable(_)))
    ));
    assert!(fake.requests.is_empty());
    req.request_parameters = Some("[1]".into());
    assert!(matches!(
        provision(&mut Fake::default(), &req).unwrap_err(),
        Error::InvalidRequest(_)
    ));
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, assigned());
    provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let bundle = Bundle::from_bytes("azure-iot", &fake.store["azure-iot"]).unwrap();
    let debug = format!("{bundle:?}");
    assert!(debug.contains("Secret(<redacted>)"));
    assert!(!debug.contains("PRIVATE KEY"));
}

#[test]
fn stored_bundles_of_another_target_or_a_newer_format_are_not_replaced_silently() {
    let mut fake = Fake::default().reply(200, aws_ok());
    provision(&mut fake, &request(Target::AwsIot)).unwrap();
    let aws = fake.store["aws-iot"].clone();
    // An aws-iot bundle under the azure-iot name.
    fake.store.insert("azure-iot".into(), aws.clone());
    let err = status(&mut fake, Target::AzureIot).unwrap_err();
    assert_eq!(
        err,
        Error::Storage("stored bundle `azure-iot` holds a `aws-iot` bundle".into())
    );
    // A newer format: provision refuses without force and stores nothing.
    let newer = String::from_utf8(aws)
        .unwrap()
        .replace("\"formatVersion\": 1", "\"formatVersion\": 2");
    fake.store
        .insert("aws-iot".into(), newer.clone().into_bytes());
    let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
    assert!(
        matches!(&err, Error::Storage(m) if m.contains("format version 2") && m.contains("unless the request sets force")),
        "{err:?}"
    );
    assert_eq!(fake.store["aws-iot"], newer.into_bytes());
    assert_eq!(fake.requests.len(), 1);
}

#[test]
fn a_store_that_cannot_be_read_stops_every_target_before_krypton_with_and_without_force() {
    for target in ALL_TARGETS {
        for force in [false, true] {
            let mut fake = Fake {
                fail_get: vec!["*"],
                ..Fake::default()
            };
            let err = provision(&mut fake, &request_for(target, force)).unwrap_err();
            assert_eq!(
                err,
                Error::Storage(format!(
                    "reading /store/{}.json failed: Input/output error",
                    target.bundle_name()
                )),
                "{target:?} force={force}"
            );
            assert!(
                fake.requests.is_empty(),
                "{target:?} force={force}: Krypton was called"
            );
            assert_eq!(
                fake.store_calls,
                vec![format!("get {}", target.bundle_name())]
            );
        }
    }
}

#[test]
fn minting_targets_prove_the_store_takes_a_bundle_before_krypton() {
    for target in [
        Target::AwsIot,
        Target::Arc,
        Target::Inventory,
        Target::AzureIot,
    ] {
        for force in [false, true] {
            // The store reads, but cannot write (full, read-only) or cannot delete.
            for (fail_put, fail_delete, detail) in [
                (
                    vec!["*"],
                    vec![],
                    "writing /store/.store-probe.json.tmp failed: No space left on device",
                ),
                (
                    vec![],
                    vec!["*"],
                    "removing /store/store-probe.json failed: Read-only file system",
                ),
            ] {
                let mut fake = Fake {
                    fail_put,
                    fail_delete,
                    ..Fake::default()
                };
                let err = provision(&mut fake, &request_for(target, force)).unwrap_err();
                assert_eq!(
                    err,
                    Error::Storage(format!(
                        "the store cannot take a new bundle ({detail}); Krypton was not called, \
                         so no credential was issued. Fix the store (space, permissions, files \
                         in the way) and run again"
                    )),
                    "{target:?} force={force}"
                );
                assert!(fake.requests.is_empty(), "{target:?}: Krypton was called");
            }
        }
    }
    // A store that works: the probe is written at full size, removed, then Krypton is called.
    let mut fake = Fake::default().reply(200, aws_ok());
    provision(&mut fake, &request(Target::AwsIot)).unwrap();
    assert_eq!(
        fake.store_calls,
        vec![
            "get aws-iot",
            "put store-probe",
            "delete store-probe",
            "put aws-iot"
        ]
    );
    assert_eq!(fake.store.keys().collect::<Vec<_>>(), vec!["aws-iot"]);
    assert_eq!(STORE_PROBE_BYTES, 16 * 1024);
}

#[test]
fn targets_that_mint_nothing_do_not_probe() {
    let mut fake = Fake::default().reply(200, json!({"imsi": "440101234567890"}));
    provision(&mut fake, &request(Target::SubscriberMetadata)).unwrap();
    assert_eq!(
        fake.store_calls,
        vec!["get subscriber-metadata", "put subscriber-metadata"]
    );
    assert!(!operation(Target::AwsCognito).probe_store);
    assert!(operation(Target::AwsIot).probe_store);
}

#[test]
fn unusable_content_is_never_reused_and_replaced_only_when_forced() {
    // Not JSON, another target's bundle, a value that breaks its rule: never reused; without
    // force the run stops before Krypton (nothing minted), with force it is replaced.
    let mut good = Fake::default().reply(200, aws_ok());
    provision(&mut good, &request(Target::AwsIot)).unwrap();
    let stored = String::from_utf8(good.store["aws-iot"].clone()).unwrap();
    for content in [
        "not json".to_string(),
        stored.replace("\"thing-1\"", "\"$thing\""),
        stored.replace(
            "\"abc-ats.iot.ap-northeast-1.amazonaws.com\"",
            "\"https://evil.example/\"",
        ),
    ] {
        let mut fake = Fake::default().reply(200, aws_ok());
        fake.store
            .insert("aws-iot".into(), content.clone().into_bytes());
        let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
        // The error `status` gives for the same bundle: storage when it cannot be read at all,
        // invalid-response naming the field when a value breaks its rule.
        let message = match &err {
            Error::Storage(m) => m.clone(),
            Error::InvalidResponse { reason, .. } => reason.clone(),
            other => panic!("expected Storage or InvalidResponse, got {other:?}"),
        };
        assert!(
            message.contains("it is kept as it is: provision"),
            "{message}"
        );
        assert!(message.contains("force to replace it"), "{message}");
        assert_eq!(
            std::mem::discriminant(&err),
            std::mem::discriminant(&status(&mut fake, Target::AwsIot).unwrap_err()),
            "provision and status disagree"
        );
        assert_eq!(fake.requests.len(), 0, "Krypton was called");
        assert_eq!(
            fake.store["aws-iot"],
            content.as_bytes(),
            "the bundle changed"
        );

        let mut forced = request(Target::AwsIot);
        forced.force = true;
        let report = provision(&mut fake, &forced).unwrap();
        assert!(!report.reused);
        assert_eq!(fake.requests.len(), 1);
        assert_eq!(fake.store["aws-iot"].len(), good.store["aws-iot"].len());
        assert!(
            fake.logs
                .iter()
                .any(|l| l.ends_with("; replacing it (forced)")),
            "{:?}",
            fake.logs
        );
    }
}

#[test]
fn reports_refuse_every_hostile_stored_identifier() {
    let mut accepted = Vec::new();
    for (target, fields) in [
        (
            Target::AzureIot,
            vec![
                ("deviceId", "dev-440101234567890"),
                ("host", "hub-1.azure-devices.net"),
                ("operationId", "4.op-1"),
            ],
        ),
        (
            Target::AwsIot,
            vec![
                ("clientId", "thing-1"),
                ("host", "abc-ats.iot.ap-northeast-1.amazonaws.com"),
                ("region", "ap-northeast-1"),
            ],
        ),
        (
            Target::AwsCognito,
            vec![
                ("identityId", OPENID_ID),
                ("accessKeyId", "ASIAEXAMPLE00001"),
                ("region", "ap-northeast-1"),
            ],
        ),
        (
            Target::Arc,
            vec![
                ("arcClientPeerIpAddress", "10.123.45.6"),
                ("arcServerEndpoint", "beck.arc.soracom.io:11010"),
                ("arcServerPeerPublicKey", WG_PUB),
                ("arcAllowedIPs", "100.127.0.0/16"),
            ],
        ),
    ] {
        let clean = provisioned(target);
        for (field, good) in fields {
            for (name, value) in hostile_values(good) {
                let case = format!("{target:?} {field} {name}");
                let mut fake = clean_copy(&clean);
                tamper(&mut fake, target, field, &value);
                match status(&mut fake, target) {
                    Err(e) => assert_refused(&e, target, field, &case),
                    Ok(Some(report)) => {
                        // Only an AWS IoT client ID or an IoT Hub device ID may hold some of
                        // these; the report carries the value exactly.
                        assert!(
                            [(Target::AwsIot, "clientId"), (Target::AzureIot, "deviceId")]
                                .contains(&(target, field)),
                            "{case}"
                        );
                        assert_eq!(identifiers(&report)[0], (field, value.as_str()));
                        accepted.push(case);
                    }
                    Ok(None) => panic!("{case}: nothing stored?"),
                }
            }
        }
    }
    assert_eq!(
        accepted,
        vec![
            "AzureIot deviceId single quote",
            "AzureIot deviceId equals",
            "AzureIot deviceId hash",
            "AwsIot clientId double quote",
            "AwsIot clientId single quote",
            "AwsIot clientId equals",
            "AwsIot clientId hash",
            "AwsIot clientId bracket",
            "AwsIot clientId non-ASCII",
        ]
    );
}

#[test]
fn hostile_values_from_krypton_are_refused_naming_the_field_and_nothing_is_stored() {
    // The two samples first.
    let mut fake = Fake::default().reply(
        200,
        arc_body("x\n[Interface]\nPostUp=id\n[Peer]\nEndpoint=b.example:11010"),
    );
    let err = provision(&mut fake, &request(Target::Arc)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { field, .. } if field == "arcServerEndpoint"),
        "{err:?}"
    );
    assert!(fake.store.is_empty());
    let mut body = assigned();
    body["deviceId"] = json!("dev\"\nx");
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, body);
    let err = provision(&mut fake, &request(Target::AzureIot)).unwrap_err();
    assert_eq!(
        err,
        Error::invalid(
            "deviceId",
            "byte 4 is `\"`; only ASCII letters, digits and - . + % _ # * ? ! ( ) , : = @ $ ' \
             (Azure IoT Hub deviceId) are allowed"
        )
    );
    assert!(
        fake.store.is_empty(),
        "nothing stored, not even the pending registration"
    );

    // Then every identifier field of every target, with every hostile value.
    let aws = json!({"region": "ap-northeast-1", "host": "abc-ats.iot.ap-northeast-1.amazonaws.com",
        "clientId": "thing-1", "certificate": EC_CRT, "privateKey": EC_SEC1});
    let cognito = json!({"identityId": OPENID_ID, "region": "ap-northeast-1",
        "credentials": {"accessKeyId": "ASIAEXAMPLE00001", "secretKey": "s3cr3t",
                        "sessionToken": "t0ken", "expiration": 1_900_000_000u64}});
    let openid = json!({"region": "ap-northeast-1", "token": "tok", "identityId": OPENID_ID});
    let inventory = json!({"serverUri": "coaps://jp.inventory.soracom.io:5684",
        "pskId": "d-0123456789abcdefghij", "applicationKey": "gvFdTTvSWsNoTX/kjBNRKQ=="});
    let metadata = json!({"imsi": "440101234567890", "msisdn": "812012345678",
        "groupId": "g-1", "status": "active"});
    let cases: Vec<(Target, serde_json::Value, Vec<&str>)> = vec![
        (Target::AzureIot, assigned(), vec!["deviceId", "host"]),
        (Target::AwsIot, aws, vec!["host", "clientId", "region"]),
        (Target::AwsCognito, cognito, vec!["identityId", "region"]),
        (
            Target::AwsCognitoOpenid,
            openid,
            vec!["identityId", "region"],
        ),
        (Target::Inventory, inventory, vec!["serverUri", "pskId"]),
        (
            Target::Arc,
            arc_body("beck.arc.soracom.io:11010"),
            vec![
                "arcClientPeerPrivateKey",
                "arcClientPeerIpAddress",
                "arcServerPeerPublicKey",
                "arcServerEndpoint",
            ],
        ),
        (
            Target::SubscriberMetadata,
            metadata,
            vec!["imsi", "msisdn", "groupId", "status"],
        ),
    ];
    let mut accepted = Vec::new();
    for (target, body, fields) in cases {
        for field in fields {
            let good = body[field].as_str().unwrap().to_string();
            for (name, value) in hostile_values(&good) {
                let case = format!("{target:?} {field} {name}");
                let mut answer = body.clone();
                answer[field] = json!(value);
                let mut fake = match target {
                    Target::AzureIot => Fake::default()
                        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"})),
                    _ => Fake::default(),
                }
                .reply(200, answer);
                match provision(&mut fake, &request_for(target, false)) {
                    Err(Error::InvalidResponse { field: f, .. }) => {
                        assert_eq!(f, field, "{case}");
                        assert!(fake.store.is_empty(), "{case}: something was stored");
                    }
                    Ok(report) => {
                        let stored =
                            String::from_utf8(fake.store[target.bundle_name()].clone()).unwrap();
                        let bundle: serde_json::Value = serde_json::from_str(&stored).unwrap();
                        assert_eq!(bundle[field], json!(value.trim()), "{case}");
                        assert!(
                            report
                                .identifiers
                                .iter()
                                .any(|(k, v)| k == field && *v == value)
                        );
                        accepted.push(case);
                    }
                    Err(other) => panic!("{case}: {other:?}"),
                }
            }
        }
    }
    assert_eq!(
        accepted,
        vec![
            "AzureIot deviceId single quote",
            "AzureIot deviceId equals",
            "AzureIot deviceId hash",
            "AwsIot clientId double quote",
            "AwsIot clientId single quote",
            "AwsIot clientId equals",
            "AwsIot clientId hash",
            "AwsIot clientId bracket",
            "AwsIot clientId non-ASCII",
        ]
    );
}
