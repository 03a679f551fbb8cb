//! Every failure's advice in `failure.hint`, in the component's words.

use super::*;

/// Every failure of a run carries its advice in `failure.hint`, worded with request fields and
/// parameters: one case per kind, checked field by field.
#[test]
fn every_failure_carries_its_hint_in_the_component_s_words() {
    let fail =
        |fake: &mut Fake, req: &ProvisionRequest| Failure::from(provision(fake, req).unwrap_err());

    // Timeout: the Arc AllowedIPs trap, or a longer deadline.
    let mut fake = Fake::default();
    for _ in 0..10 {
        fake = fake.reply(200, json!({"operationId": "4.op-3", "status": "assigning"}));
    }
    let mut req = request(Target::AzureIot);
    req.deadline_ms = 3_500;
    let f = fail(&mut fake, &req);
    assert!(matches!(f.error, Error::Timeout(_)), "{f:?}");
    assert_eq!(
        f.hint.as_deref(),
        Some(
            "on SORACOM Arc a request to Krypton times out when Krypton's address is not inside \
             the WireGuard AllowedIPs; otherwise raise the request's deadline-ms"
        )
    );

    // HTTP 401 and 403: Krypton enabled for the group, the request over Air or Arc.
    for status in [401, 403] {
        let mut fake = Fake::default().reply(status, json!({"code": "AUTH", "message": "no"}));
        let f = fail(&mut fake, &request(Target::Userdata));
        assert!(
            matches!(&f.error, Error::HttpStatus { status: s, .. } if *s == status),
            "{f:?}"
        );
        assert_eq!(
            f.hint.as_deref(),
            Some(
                "check that Krypton is enabled for this SIM's group and that the request leaves \
                 over SORACOM Air or Arc"
            )
        );
    }
    // Other statuses have no advice.
    let mut fake = Fake::default().reply(404, json!({}));
    assert_eq!(fail(&mut fake, &request(Target::Userdata)).hint, None);

    // Registration failed: the DPS enrollment and the group's Krypton Azure IoT configuration.
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-2", "status": "assigning"}))
        .reply(200, json!({"operationId": "4.op-2", "status": "failed"}));
    let f = fail(&mut fake, &request(Target::AzureIot));
    assert_eq!(
        f.error,
        Error::RegistrationFailed {
            operation_id: "4.op-2".into(),
            status: "failed".into()
        }
    );
    assert_eq!(
        f.hint.as_deref(),
        Some("check the DPS enrollment and the Krypton Azure IoT configuration of the SIM's group")
    );

    // Krypton's answer unusable: not from the store, no advice.
    let mut fake = Fake::default().reply_raw(200, &[], b"not json");
    let f = fail(&mut fake, &request(Target::Arc));
    assert!(
        matches!(&f.error, Error::InvalidResponse { field, stored: false, .. } if field == "body"),
        "{f:?}"
    );
    assert_eq!(f.hint, None);

    // A stored bundle that breaks its rule: `stored`, and provision again with force.
    let mut fake = Fake::default().reply(200, arc_body("beck.arc.soracom.io:11010"));
    provision(&mut fake, &request(Target::Arc)).unwrap();
    let bad = String::from_utf8(fake.store["arc"].clone())
        .unwrap()
        .replace("beck.arc.soracom.io:11010", "beck arc");
    fake.store.insert("arc".into(), bad.into_bytes());
    let f = Failure::from(status(&mut fake, Target::Arc).unwrap_err());
    assert!(
        matches!(&f.error, Error::InvalidResponse { field, reason, stored: true }
            if field == "arcServerEndpoint" && reason.starts_with("stored bundle `arc`: ")),
        "{f:?}"
    );
    assert_eq!(
        f.hint.as_deref(),
        Some("provision the target again with force to replace the bundle")
    );

    // A transport error keeps the hint it was given for its endpoint.
    let krypton = Endpoint::parse("https://krypton.example").unwrap();
    let t = transport_failure(TransportKind::ConnectionRefused, &krypton, "R".into(), None);
    let f = Failure::from(Error::Transport(t.clone()));
    assert_eq!(f.hint, t.hint);
    assert_eq!(
        f.hint.as_deref(),
        Some(
            "the endpoint has no port, so 443 was tried: Krypton listens on 8036, e.g. \
             https://krypton.soracom.io:8036"
        )
    );

    // A request refused before any call: the message names the parameter, no advice.
    let mut req = request(Target::Inventory);
    req.request_parameters = Some("{}".into());
    let f = fail(&mut Fake::default(), &req);
    assert_eq!(
        f.error,
        Error::InvalidRequest(
            "inventory needs the request parameter `endpoint`: the LwM2M endpoint client name"
                .into()
        )
    );
    assert_eq!(f.hint, None);
}

/// No message or hint of the component names a host's command-line flag.
#[test]
fn messages_name_request_fields_never_command_line_flags() {
    let mut fake = Fake::default();
    let mut texts = vec![
        Failure::from(wireguard_config(&mut fake, &[]).unwrap_err()),
        Failure::from(render_export(&mut fake, Target::AwsIot, "pem", "/x", &[]).unwrap_err()),
    ];
    let mut req = request(Target::Inventory);
    req.request_parameters = Some("{}".into());
    texts.push(Failure::from(provision(&mut fake, &req).unwrap_err()));
    fake.store.insert(
        "arc".into(),
        br#"{"target":"arc","formatVersion":2}"#.to_vec(),
    );
    texts.push(Failure::from(
        provision(&mut fake, &request(Target::Arc)).unwrap_err(),
    ));
    for f in texts {
        let text = format!("{} {}", f.error, f.hint.unwrap_or_default());
        assert!(!text.contains("--"), "{text}");
        assert!(!text.contains("krypton-host"), "{text}");
    }
}
