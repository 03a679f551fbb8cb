//! Every network-mode target end to end, stored values checked field by field against what
//! the mock issued (issue 3 "Operations").

use super::support::*;
use krypton_mock::{self as mock, ExpirationFormat, MockConfig};
use serde_json::{Value, json};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn aws_iot_split_flow_stores_only_after_all_three_calls() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let mut req = fx.request(Target::AwsIot);
    req.request_parameters =
        Some(r#"{"skipCertificates":true,"thingName":"small-device-1"}"#.into());
    let report = fx.run(&req).await.unwrap();

    let issued = &mock.issued()[0];
    let calls: Vec<_> = mock.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        calls,
        vec![
            "/v1/provisioning/aws/iot/bootstrap".to_string(),
            format!(
                "/v1/provisioning/aws/iot/certificates/{}",
                issued.certificate_id
            ),
            "/v1/provisioning/aws/iot/ca_certificate".to_string(),
        ]
    );
    assert_eq!(ident(&report, "clientId"), "small-device-1");
    assert_eq!(
        ident(&report, "region"),
        "ap-northeast-1",
        "derived from the host"
    );
    assert_eq!(ident(&report, "certificateId"), issued.certificate_id);
    let bundle = read_bundle(&fx.store, "aws-iot");
    assert_eq!(bundle["certificateId"], issued.certificate_id.as_str());
    assert_eq!(bundle["certificate"], issued.certificate_pem.as_str());
    assert_eq!(bundle["privateKey"], issued.private_key_pem.as_str());
    assert_eq!(bundle["rootCaCertificate"], mock.ca_pem());
    assert_eq!(
        report.certificate.as_ref().unwrap().sha256_fingerprint,
        issued.certificate_id,
        "AWS names a certificate by its SHA-256"
    );
    fx.stop().await;
}

#[tokio::test]
async fn cognito_expiration_in_every_form_is_the_same_instant() {
    for format in [
        ExpirationFormat::EpochMs,
        ExpirationFormat::EpochSecs,
        ExpirationFormat::Iso8601,
    ] {
        let fx = Fixture::with_config(MockConfig {
            expiration: format,
            ..MockConfig::default()
        })
        .await;
        let mock = &fx.mock;
        let before = now_ms();
        let report = fx.provisioned(Target::AwsCognito).await;
        let b = read_bundle(&fx.store, "aws-cognito");
        assert_eq!(
            b["identityId"],
            "ap-northeast-1:00000000-0000-4000-8000-101234567890"
        );
        assert_eq!(b["region"], "ap-northeast-1");
        assert_eq!(b["accessKeyId"], "ASIAMOCK00000001");
        assert_eq!(b["secretKey"], mock::CANARY_SECRET_KEY);
        assert_eq!(b["sessionToken"], mock::CANARY_SESSION_TOKEN);
        let expiration = b["expirationMs"].as_u64().unwrap();
        // One hour from now, to the second (ISO and seconds drop the milliseconds).
        assert!(
            expiration + 1000 >= before + 3_600_000 && expiration <= now_ms() + 3_600_000,
            "{format:?}: {expiration} vs {before}"
        );
        assert_eq!(ident(&report, "accessKeyId"), "ASIAMOCK00000001");
        assert!(report.certificate.is_none());
        // Valid for an hour: a second run reuses it.
        let again = fx.provisioned(Target::AwsCognito).await;
        assert!(again.reused, "{format:?}");
        assert_eq!(mock.requests().len(), 1);
        fx.stop().await;
    }
}

#[tokio::test]
async fn openid_inventory_metadata_and_userdata() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;

    fx.provisioned(Target::AwsCognitoOpenid).await;
    let b = read_bundle(&fx.store, "aws-cognito-openid");
    assert_eq!(b["region"], "ap-northeast-1");
    assert_eq!(b["token"], mock::CANARY_OPENID_TOKEN);
    assert_eq!(
        b["identityId"],
        "ap-northeast-1:00000000-0000-4000-8000-101234567890"
    );

    let mut req = fx.request(Target::Inventory);
    req.request_parameters = Some(r#"{"endpoint":"gw-0042","custom":"kept"}"#.into());
    let report = fx.run(&req).await.unwrap();
    let sent: Value = serde_json::from_slice(&mock.requests().last().unwrap().body).unwrap();
    assert_eq!(
        sent,
        json!({"endpoint": "gw-0042", "requestParameters": {"endpoint": "gw-0042", "custom": "kept"}})
    );
    let b = read_bundle(&fx.store, "inventory");
    assert_eq!(b["endpoint"], "gw-0042");
    assert_eq!(b["serverUri"], "coaps://jp.inventory.soracom.io:5684");
    assert_eq!(b["pskId"], "d-mock440101234567890");
    assert_eq!(b["applicationKey"], "Q0FOQVJZLWFwcGtleS0xNg==");
    assert_eq!(ident(&report, "pskId"), "d-mock440101234567890");

    fx.provisioned(Target::SubscriberMetadata).await;
    let b = read_bundle(&fx.store, "subscriber-metadata");
    assert_eq!(
        b["metadata"],
        json!({"imsi": "440101234567890", "msisdn": "812012345678", "groupId": "mock-group-1",
               "status": "active", "speedClass": "s1.standard", "tags": {"name": "mock-gateway"}})
    );

    fx.provisioned(Target::Userdata).await;
    assert_eq!(
        read_bundle(&fx.store, "userdata")["userdata"],
        mock::CANARY_USERDATA
    );

    // Every one of them was a POST with `{}` unless parameters were given.
    for r in mock.requests() {
        assert_eq!(r.method, "POST");
        if !r.path.ends_with("inventory/bootstrap") {
            assert_eq!(r.body, b"{}", "{}", r.path);
        }
    }
    fx.stop().await;
}

#[tokio::test]
async fn arc_bundle_and_wireguard_config_route_krypton_through_the_tunnel() {
    let fx = Fixture::new().await;
    let store_dir = &fx.store;
    let report = fx.provisioned(Target::Arc).await;
    let b = read_bundle(store_dir, "arc");
    assert_eq!(
        b["arcClientPeerPrivateKey"],
        mock::arc_private_key().as_str()
    );
    assert_eq!(b["arcClientPeerIpAddress"], "10.123.45.6");
    assert_eq!(b["arcServerEndpoint"], "mock.arc.soracom.io:11010");
    assert_eq!(b["arcAllowedIPs"], json!(["100.127.0.0/16"]));
    assert_eq!(b["arcServerPeerPublicKey"].as_str().unwrap().len(), 44);
    assert_eq!(
        ident(&report, "arcServerEndpoint"),
        "mock.arc.soracom.io:11010"
    );

    // The CLI writes the file 0600 and never prints the key.
    let out_file = fx.path("arc0.conf");
    let (code, out, err) = run_cli(&[
        "wireguard-config",
        "--store",
        store_dir.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
        "--krypton-address",
        "54.250.252.99",
        "--krypton-address",
        "100.127.10.1",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&out_file), 0o600);
    let config = std::fs::read_to_string(&out_file).unwrap();
    assert!(config.contains(&format!("PrivateKey = {}\n", mock::arc_private_key())));
    assert!(config.contains("Address = 10.123.45.6/32\n"));
    assert!(config.contains("Endpoint = mock.arc.soracom.io:11010\n"));
    // 100.127.10.1 is already inside 100.127.0.0/16; 54.250.252.99 is added.
    assert!(
        config.contains("AllowedIPs = 100.127.0.0/16, 54.250.252.99/32\n"),
        "{config}"
    );
    assert_no_secret(&[&out, &err], &key_lines(store_dir));

    // A name instead of an address is refused by the component.
    let (code, _, err) = run_cli(&[
        "wireguard-config",
        "--store",
        store_dir.to_str().unwrap(),
        "--out",
        "-",
        "--krypton-address",
        "krypton.soracom.io",
    ])
    .await;
    assert_eq!(code, 3, "{err}");
    fx.stop().await;
}

#[tokio::test]
async fn a_device_moved_to_another_hub_is_replaced_as_one_unit() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    fx.provisioned(Target::AzureIot).await;
    let old = read_bundle(&fx.store, "azure-iot");

    mock.configure(|c| c.azure_hub = "moved-hub.azure-devices.net".into());
    let mut req = fx.request(Target::AzureIot);
    req.force = true;
    req.request_parameters = Some(r#"{"deviceId":"gateway-moved"}"#.into());
    let report = fx.run(&req).await.unwrap();
    let new = read_bundle(&fx.store, "azure-iot");
    // The report says where the device was (issue 7 item 10), after the usual identifiers.
    let ids: Vec<(&str, &str)> = report
        .identifiers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("deviceId", "gateway-moved"),
            ("host", "moved-hub.azure-devices.net"),
            ("operationId", new["operationId"].as_str().unwrap()),
            ("previousHost", "krypton-mock-hub.azure-devices.net"),
            ("previousDeviceId", "440101234567890"),
        ]
    );
    let issued = &mock.issued()[1];
    assert_eq!(new["host"], "moved-hub.azure-devices.net");
    assert_eq!(new["deviceId"], "gateway-moved");
    assert_eq!(new["certificate"], issued.certificate_pem.as_str());
    assert_eq!(new["privateKey"], issued.private_key_pem.as_str());
    for field in [
        "host",
        "deviceId",
        "operationId",
        "certificate",
        "privateKey",
    ] {
        assert_ne!(new[field], old[field], "{field} was not replaced");
    }
    assert_key_matches_cert(
        new["privateKey"].as_str().unwrap(),
        new["certificate"].as_str().unwrap(),
    );
    fx.stop().await;
}

#[tokio::test]
async fn large_request_bodies_and_unknown_parameters_pass_through() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let big = "p".repeat(20_000);
    let params = json!({"deviceId": "big-params", "note": big, "nested": {"k": [1, 2, 3]}});
    let mut req = fx.request(Target::AzureIot);
    req.request_parameters = Some(params.to_string());
    fx.run(&req).await.unwrap();
    let register = &mock.requests()[0];
    let sent: Value = serde_json::from_slice(&register.body).unwrap();
    assert_eq!(sent, json!({"requestParameters": params}));
    assert_eq!(
        register.content_length.as_deref(),
        Some(register.body.len().to_string().as_str())
    );
    assert!(register.body.len() > 20_000);
    assert_eq!(
        read_bundle(&fx.store, "azure-iot")["deviceId"],
        "big-params"
    );
    fx.stop().await;
}
