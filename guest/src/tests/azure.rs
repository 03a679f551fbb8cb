//! Azure IoT Hub through DPS: register, poll, resume a registration in flight, a moved device.

use super::*;

#[test]
fn azure_registers_polls_and_stores_one_bundle() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply_raw(
            200,
            &[("retry-after", "3")],
            br#"{"operationId":"4.op-1","status":"assigning"}"#,
        )
        .reply(200, assigned());
    let report = provision(&mut fake, &request(Target::AzureIot)).unwrap();

    let calls: Vec<_> = fake
        .requests
        .iter()
        .map(|(m, p, b, _)| (m.as_str(), p.as_str(), b.as_deref()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("POST", "/v1/provisioning/azure/iot/register", Some("{}")),
            (
                "GET",
                "/v1/provisioning/azure/iot/registrations/4.op-1",
                None
            ),
            (
                "GET",
                "/v1/provisioning/azure/iot/registrations/4.op-1",
                None
            ),
        ]
    );
    // 1 s poll interval, then Krypton's Retry-After of 3 s.
    assert_eq!(fake.slept, vec![1000, 3000]);
    assert_eq!(
        identifiers(&report),
        vec![
            ("deviceId", "dev-440101234567890"),
            ("host", "hub-1.azure-devices.net"),
            ("operationId", "4.op-1")
        ]
    );
    assert!(!report.reused);
    assert_eq!(report.bundle, "azure-iot");
    let Bundle::AzureIot(b) = Bundle::from_bytes("azure-iot", &fake.store["azure-iot"]).unwrap()
    else {
        panic!("wrong bundle type")
    };
    assert_eq!(b.device_id, "dev-440101234567890");
    assert_eq!(b.host, "hub-1.azure-devices.net");
    assert_eq!(b.certificate, EC_CRT);
    assert_eq!(b.private_key.expose(), EC_SEC1);
    assert_eq!(b.root_ca_certificate.as_deref(), Some(ROOT_CRT));
    assert_eq!(b.obtained_at_ms, 1_800_000_000_000 + fake.now_ms);
    // Logs name calls and outcomes, never key material.
    let logs = fake.logs.join("\n");
    assert!(
        logs.contains(
            "POST https://krypton.example:8036/v1/provisioning/azure/iot/register -> 200"
        ),
        "{logs}"
    );
    assert!(!logs.contains("PRIVATE KEY"));
}

#[test]
fn azure_failed_status_is_typed_and_stores_nothing() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-2", "status": "assigning"}))
        .reply(200, json!({"operationId": "4.op-2", "status": "failed"}));
    let err = provision(&mut fake, &request(Target::AzureIot)).unwrap_err();
    assert_eq!(
        err,
        Error::RegistrationFailed {
            operation_id: "4.op-2".into(),
            status: "failed".into()
        }
    );
    assert!(fake.store.is_empty());
}

#[test]
fn azure_polling_is_bounded_by_the_deadline() {
    let mut fake =
        Fake::default().reply(200, json!({"operationId": "4.op-3", "status": "assigning"}));
    for _ in 0..10 {
        fake = fake.reply(200, json!({"operationId": "4.op-3", "status": "assigning"}));
    }
    let mut req = request(Target::AzureIot);
    req.deadline_ms = 3_500;
    let err = provision(&mut fake, &req).unwrap_err();
    let Error::Timeout(msg) = err else {
        panic!("expected a timeout, got {err:?}")
    };
    assert!(
        msg.contains("4.op-3") && msg.contains("3500 ms") && msg.contains("3 polls"),
        "{msg}"
    );
    // No bundle; only the registration in flight, to be resumed by the next run.
    assert_eq!(
        fake.store.keys().collect::<Vec<_>>(),
        vec!["azure-iot-pending"]
    );
    // Each request's timeouts were clamped to what was left of the deadline.
    assert!(fake.requests.iter().all(|r| r.3.first_byte_ms <= 3_500));
}

#[test]
fn operation_id_must_be_safe_in_a_path() {
    let mut fake = Fake::default().reply(
        200,
        json!({"operationId": "../../aws/iot/bootstrap", "status": "assigning"}),
    );
    let err = provision(&mut fake, &request(Target::AzureIot)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { field, .. } if field == "operationId"),
        "{err:?}"
    );
    assert_eq!(fake.requests.len(), 1);
}

#[test]
fn a_moved_device_replaces_hub_id_certificate_and_key_together() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, assigned());
    provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let rsa_crt = include_str!("../../testdata/rsa.crt");
    let rsa_key = include_str!("../../testdata/rsa-pkcs1.key");
    let moved = json!({"operationId": "4.op-2", "status": "assigned", "deviceId": "dev-moved",
        "host": "hub-2.azure-devices.net", "certificate": rsa_crt, "privateKey": rsa_key});
    let mut fake = Fake {
        store: fake.store,
        ..Fake::default()
    }
    .reply(200, json!({"operationId": "4.op-2", "status": "assigning"}))
    .reply(200, moved);
    let mut req = request(Target::AzureIot);
    req.force = true;
    provision(&mut fake, &req).unwrap();
    let Bundle::AzureIot(b) = Bundle::from_bytes("azure-iot", &fake.store["azure-iot"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (
            b.device_id.as_str(),
            b.host.as_str(),
            b.operation_id.as_str()
        ),
        ("dev-moved", "hub-2.azure-devices.net", "4.op-2")
    );
    assert_eq!(b.certificate, rsa_crt);
    assert_eq!(b.private_key.expose(), rsa_key);
    assert_eq!(
        b.root_ca_certificate, None,
        "the old root CA must not survive the swap"
    );
}

#[test]
fn an_interrupted_azure_registration_is_resumed_not_repeated() {
    // Run 1: registered, then the deadline passes while DPS is still assigning.
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-7", "status": "assigning"}))
        .reply(200, json!({"operationId": "4.op-7", "status": "assigning"}));
    let mut req = request(Target::AzureIot);
    req.deadline_ms = 1_500;
    assert!(
        matches!(provision(&mut fake, &req), Err(Error::Timeout(m)) if m.contains("the next run resumes it"))
    );
    assert!(fake.store.contains_key("azure-iot-pending"));
    assert!(!fake.store.contains_key("azure-iot"));

    // Run 2 (after a restart): no second register; polls 4.op-7 until assigned.
    let mut assigned_7 = assigned();
    assigned_7["operationId"] = json!("4.op-7");
    let mut fake = Fake {
        store: fake.store,
        now_ms: fake.now_ms,
        ..Fake::default()
    }
    .reply(200, assigned_7);
    let report = provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let paths: Vec<_> = fake.requests.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        paths,
        vec!["/v1/provisioning/azure/iot/registrations/4.op-7"]
    );
    assert_eq!(identifiers(&report)[2], ("operationId", "4.op-7"));
    assert!(
        !fake.store.contains_key("azure-iot-pending"),
        "a finished registration is forgotten"
    );

    // A stored registration Krypton no longer knows: registered anew.
    let mut fake = Fake::default()
        .reply(
            404,
            json!({"code": "KRY0404", "message": "unknown operationId"}),
        )
        .reply(200, json!({"operationId": "4.op-8", "status": "assigning"}))
        .reply(200, assigned());
    fake.store.insert(
        "azure-iot-pending".into(),
        format!(
            r#"{{"operationId":"4.gone","startedAtMs":{}}}"#,
            1_800_000_000_000u64
        )
        .into_bytes(),
    );
    provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let paths: Vec<_> = fake.requests.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/v1/provisioning/azure/iot/registrations/4.gone",
            "/v1/provisioning/azure/iot/register",
            "/v1/provisioning/azure/iot/registrations/4.op-8"
        ]
    );

    // A failed registration is forgotten too.
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-9", "status": "assigning"}))
        .reply(200, json!({"operationId": "4.op-9", "status": "failed"}));
    assert!(provision(&mut fake, &request(Target::AzureIot)).is_err());
    assert!(fake.store.is_empty());
}

#[test]
fn an_unreadable_pending_registration_stops_azure_before_krypton() {
    for force in [false, true] {
        let mut fake = Fake {
            fail_get: vec![crate::ops::azure::AZURE_PENDING],
            ..Fake::default()
        };
        let err = provision(&mut fake, &request_for(Target::AzureIot, force)).unwrap_err();
        assert_eq!(
            err,
            Error::Storage(
                "reading /store/azure-iot-pending.json failed: Input/output error".into()
            )
        );
        assert!(fake.requests.is_empty());
        assert!(fake.store.is_empty());
    }
}

// A device that moved is said so, field by field.

#[test]
fn a_moved_azure_device_is_logged_once_and_reported_field_by_field() {
    let cases = [
        (
            "hub-2.azure-devices.net",
            "dev-440101234567890",
            vec![("previousHost", "hub-1.azure-devices.net")],
            Some(
                "azure-iot: the device moved: IoT Hub `hub-1.azure-devices.net` -> \
                 `hub-2.azure-devices.net`",
            ),
        ),
        (
            "hub-1.azure-devices.net",
            "dev-renamed",
            vec![("previousDeviceId", "dev-440101234567890")],
            Some("azure-iot: the device moved: device ID `dev-440101234567890` -> `dev-renamed`"),
        ),
        (
            "hub-2.azure-devices.net",
            "dev-renamed",
            vec![
                ("previousHost", "hub-1.azure-devices.net"),
                ("previousDeviceId", "dev-440101234567890"),
            ],
            Some(
                "azure-iot: the device moved: IoT Hub `hub-1.azure-devices.net` -> \
                 `hub-2.azure-devices.net`, device ID `dev-440101234567890` -> `dev-renamed`",
            ),
        ),
        (
            "hub-1.azure-devices.net",
            "dev-440101234567890",
            vec![],
            None,
        ),
    ];
    for (host, device_id, previous, line) in cases {
        let mut first = Fake::default()
            .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
            .reply(200, assigned());
        provision(&mut first, &request(Target::AzureIot)).unwrap();
        let mut again = assigned();
        again["host"] = json!(host);
        again["deviceId"] = json!(device_id);
        let mut fake = Fake {
            store: first.store,
            ..Fake::default()
        }
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, again);
        let report = provision(&mut fake, &request_for(Target::AzureIot, true)).unwrap();
        let mut expected = vec![
            ("deviceId", device_id),
            ("host", host),
            ("operationId", "4.op-1"),
        ];
        expected.extend(previous);
        assert_eq!(identifiers(&report), expected);
        let moved: Vec<&String> = fake.logs.iter().filter(|l| l.contains("moved")).collect();
        assert_eq!(moved, line.map(str::to_string).iter().collect::<Vec<_>>());
        // No secret in the line.
        assert!(!fake.logs.join("\n").contains("PRIVATE KEY"));
    }
}
