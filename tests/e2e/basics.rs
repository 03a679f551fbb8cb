//! Issue-2 basics: Azure and AWS IoT happy paths, typed failures, reuse, allow-list, CLI.

use super::support::*;
use krypton_mock::Fault;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn azure_happy_path_stores_exactly_what_krypton_issued() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let report = fx.provisioned(Target::AzureIot).await;

    let issued = mock.issued();
    assert_eq!(issued.len(), 1);
    let issued = &issued[0];
    assert_eq!(issued.target, "azure-iot");
    assert_eq!(ident(&report, "deviceId"), issued.id);
    assert_eq!(ident(&report, "deviceId"), "440101234567890");
    assert_eq!(ident(&report, "host"), "krypton-mock-hub.azure-devices.net");
    assert_eq!(
        ident(&report, "operationId"),
        issued.operation_id.as_deref().unwrap()
    );
    assert!(!report.reused);
    assert_eq!(report.bundle, "azure-iot");
    let cert = report.certificate.as_ref().unwrap();
    let fingerprint: String = Sha256::digest(cert_der(&issued.certificate_pem))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(cert.sha256_fingerprint, fingerprint);
    assert_eq!(cert.subject, "CN=440101234567890");
    assert_eq!(cert.issuer, "CN=Krypton Mock CA");
    assert_eq!(cert.not_after - cert.not_before, 365 * 86400 + 3600);

    let bundle = read_bundle(&fx.store, "azure-iot");
    assert_azure_bundle(&bundle, issued, mock.ca_pem());
    assert_eq!(
        bundle["obtainedAtMs"].as_u64().unwrap(),
        report.obtained_at_ms
    );

    // register, then `assigning` twice (MockConfig default), then `assigned`.
    let (calls, expected) = azure_calls(mock, issued.operation_id.as_deref().unwrap());
    assert_eq!(calls, expected);
    let register = &mock.requests()[0];
    assert_eq!(register.body, b"{}");
    assert_eq!(register.content_type.as_deref(), Some("application/json"));
    // The explicit port reaches the wire in the Host header.
    assert_eq!(
        register.host_header.as_deref(),
        Some(mock.addr().to_string().as_str())
    );

    assert_eq!(mode(&fx.store), 0o700);
    assert_eq!(mode(&fx.store.join("azure-iot.json")), 0o600);
    fx.stop().await;
}

#[tokio::test]
async fn aws_iot_happy_path_with_thing_name() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let mut req = fx.request(Target::AwsIot);
    req.request_parameters = Some(r#"{"thingName":"gateway-7"}"#.into());
    let report = fx.run(&req).await.unwrap();

    let issued = &mock.issued()[0];
    assert_eq!(issued.target, "aws-iot");
    assert_eq!(ident(&report, "clientId"), "gateway-7");
    assert_eq!(
        ident(&report, "host"),
        "krypton-mock-ats.iot.ap-northeast-1.amazonaws.com"
    );
    assert_eq!(ident(&report, "region"), "ap-northeast-1");
    let bundle = read_bundle(&fx.store, "aws-iot");
    assert_aws_iot_bundle(&bundle, issued, "gateway-7");
    // AWS IoT issues RSA 2048 keys as PKCS#1 (CreateKeysAndCertificate); stored as sent.
    let key = bundle["privateKey"].as_str().unwrap();
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    assert_eq!(
        mock.requests()[0].body,
        br#"{"requestParameters":{"thingName":"gateway-7"}}"#
    );
    fx.stop().await;
}

#[tokio::test]
async fn azure_failed_registration_is_typed_and_stores_nothing() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    mock.inject(
        "/v1/provisioning/azure/iot/registrations/",
        Fault::RegistrationStatus("failed".into()),
    );
    let err = fx.run(&fx.request(Target::AzureIot)).await.unwrap_err();
    let ProvisionError::RegistrationFailed(f) = err else {
        panic!("expected RegistrationFailed, got {err:?}")
    };
    assert_eq!(f.status, "failed");
    assert!(f.operation_id.starts_with("4."), "{}", f.operation_id);
    assert_eq!(std::fs::read_dir(&fx.store).unwrap().count(), 0);
    fx.stop().await;
}

#[tokio::test]
async fn http_500_is_typed_and_the_stored_bundle_is_unchanged() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    fx.provisioned(Target::AwsIot).await;
    let path = fx.store.join("aws-iot.json");
    let before = std::fs::read(&path).unwrap();

    mock.inject(
        "/v1/provisioning/aws/",
        http_error(500, "KRY5001", "AWS IoT is unavailable"),
    );
    let mut req = fx.request(Target::AwsIot);
    req.force = true;
    let err = fx.run(&req).await.unwrap_err();
    let ProvisionError::HttpStatus(e) = err else {
        panic!("expected HttpStatus, got {err:?}")
    };
    assert_eq!(e.status, 500);
    assert_eq!(e.code.as_deref(), Some("KRY5001"));
    assert_eq!(e.message.as_deref(), Some("AWS IoT is unavailable"));
    // The request as it went on the wire.
    assert_eq!(
        e.request,
        format!("POST {}/v1/provisioning/aws/iot/bootstrap", mock.endpoint())
    );
    assert_eq!(
        e.body_excerpt,
        r#"{"code":"KRY5001","message":"AWS IoT is unavailable"}"#
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "bundle changed");
    fx.stop().await;
}

#[tokio::test]
async fn malformed_json_is_typed_and_stores_nothing() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    mock.inject("/", Fault::MalformedJson);
    for target in [Target::AzureIot, Target::AwsIot] {
        let err = fx.run(&fx.request(target)).await.unwrap_err();
        let ProvisionError::InvalidResponse(e) = err else {
            panic!("expected InvalidResponse, got {err:?}")
        };
        assert_eq!(e.field, "body");
        assert!(e.reason.starts_with("not JSON"), "{}", e.reason);
    }
    assert_eq!(std::fs::read_dir(&fx.store).unwrap().count(), 0);
    fx.stop().await;
}

#[tokio::test]
async fn a_valid_bundle_is_reused_and_force_replaces_it() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let first = fx.provisioned(Target::AwsIot).await;
    let again = fx.provisioned(Target::AwsIot).await;
    assert!(again.reused);
    assert_eq!(again.certificate, first.certificate);
    assert_eq!(mock.requests().len(), 1, "Krypton was called again");

    let mut req = fx.request(Target::AwsIot);
    req.force = true;
    let forced = fx.run(&req).await.unwrap();
    assert!(!forced.reused);
    assert_eq!(mock.requests().len(), 2);
    let newest = &mock.issued()[1];
    assert_ne!(
        forced.certificate.as_ref().unwrap().sha256_fingerprint,
        first.certificate.as_ref().unwrap().sha256_fingerprint
    );
    let bundle = read_bundle(&fx.store, "aws-iot");
    assert_eq!(bundle["privateKey"], newest.private_key_pem.as_str());

    let (rt, pre) = runtime();
    let status = rt
        .status(pre, fx.secret_store(), Target::AwsIot)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status.certificate, forced.certificate);
    assert!(
        rt.status(pre, fx.secret_store(), Target::AzureIot)
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
    fx.stop().await;
}

#[tokio::test]
async fn hosts_off_the_allow_list_and_untrusted_servers_are_refused() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let req = fx.request(Target::AwsIot);

    let store = fx.secret_store();
    // Allow-list without the mock's port: refused before any connection.
    let elsewhere = policy("https://127.0.0.1:1", Some(mock.ca_pem()));
    let err = failure(elsewhere, &store, &req).await;
    let ProvisionError::Transport(e) = err.error else {
        panic!("expected Transport, got {err:?}")
    };
    assert_eq!(e.kind, TransportKind::Denied);
    assert_eq!(
        e.message,
        format!(
            "the host did not let the request to {} leave: it is not on the host's outbound allow-list",
            mock.endpoint()
        )
    );
    assert_eq!(e.attempts, 1);

    // Allowed, but the mock's CA is not trusted: the TLS handshake fails.
    let err = failure(policy(&mock.endpoint(), None), &store, &req).await;
    let ProvisionError::Transport(e) = err.error else {
        panic!("expected Transport, got {err:?}")
    };
    assert_eq!(e.kind, TransportKind::UntrustedCertificate);
    assert_eq!(e.attempts, 1);
    assert!(mock.requests().is_empty(), "a request reached the server");
    assert_eq!(std::fs::read_dir(&fx.store).unwrap().count(), 0);
    fx.stop().await;
}

#[tokio::test]
async fn cli_mock_and_provision_in_two_processes() {
    // Shell 1: `krypton-host mock` prints {"endpoint","caFile"} and serves.
    let tmp = tempfile::tempdir().unwrap();
    let ca_out = tmp.path().join("ca.pem");
    let mut mock = tokio::process::Command::new(BIN)
        .args([
            "mock",
            "--ca-out",
            ca_out.to_str().unwrap(),
            "--assigning-polls",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(mock.stdout.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line)
        .await
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let endpoint = info["endpoint"].as_str().unwrap().to_string();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    assert_eq!(info["caFile"], ca_out.to_str().unwrap());

    // Shell 2: provision with --json.
    let store = tmp.path().join("store");
    let args = cli(["provision", "azure-iot"])
        .endpoint(&endpoint)
        .ca(&ca_out)
        .store(&store)
        .poll_ms(100)
        .verbose()
        .json();
    let (code, out, err) = args.run().await.parts();
    assert_eq!(code, 0, "stderr:\n{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["target"], "azure-iot");
    assert_eq!(report["deviceId"], "440101234567890");
    assert_eq!(report["host"], "krypton-mock-hub.azure-devices.net");
    assert_eq!(report["reused"], false);
    let bundle = read_bundle(&store, "azure-iot");
    assert_eq!(report["deviceId"], bundle["deviceId"]);
    assert_eq!(report["operationId"], bundle["operationId"]);
    assert_eq!(
        report["certificate"]["sha256Fingerprint"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(mode(&store.join("azure-iot.json")), 0o600);
    assert_eq!(mode(&store), 0o700);

    // Again without --force: reported from the store.
    let (code, out2, err2) = args.run().await.parts();
    assert_eq!(code, 0);
    let again: Value = serde_json::from_str(out2.trim()).unwrap();
    assert_eq!(again["reused"], true);
    assert_eq!(again["certificate"], report["certificate"]);

    // status, text and JSON.
    let (code, status_text, err3) =
        run_cli(&["status", "azure-iot", "--store", store.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err3}");
    assert!(status_text.contains("440101234567890"), "{status_text}");
    let (code, status_json, err4) =
        run_cli(&["status", "--store", store.to_str().unwrap(), "--json"]).await;
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(status_json.trim()).unwrap();
    assert_eq!(status["bundles"].as_array().unwrap().len(), 1);
    assert_eq!(status["bundles"][0]["deviceId"], "440101234567890");

    assert_no_secret(
        &[
            &out,
            &err,
            &out2,
            &err2,
            &status_text,
            &err3,
            &status_json,
            &err4,
        ],
        &key_lines(&store),
    );
    mock.kill().await.unwrap();
}

#[tokio::test]
async fn cli_exit_codes_name_the_error_class() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let base = |target: &str| fx.provision(target).poll_ms(100).json();
    async fn run(command: Cli) -> (i32, Value) {
        let run = command.run().await;
        (run.code, run.json())
    }

    mock.inject(
        "/v1/provisioning/aws/",
        http_error(403, "KRY0403", "not on the SORACOM network"),
    );
    let (code, json) = run(base("aws-iot")).await;
    assert_eq!(code, 6);
    assert_eq!(json["error"]["kind"], "http-status");
    assert_eq!(json["error"]["status"], 403);
    assert_eq!(json["error"]["code"], "KRY0403");
    mock.clear_faults();

    mock.inject(
        "/v1/provisioning/azure/iot/registrations/",
        Fault::RegistrationStatus("disabled".into()),
    );
    let (code, json) = run(base("azure-iot")).await;
    assert_eq!(code, 8);
    assert_eq!(json["error"]["status"], "disabled");
    mock.clear_faults();

    mock.inject("/", Fault::MalformedJson);
    let (code, json) = run(base("aws-iot")).await;
    assert_eq!(code, 7);
    assert_eq!(json["error"]["field"], "body");
    mock.clear_faults();

    let args = base("aws-iot").endpoint("https://127.0.0.1:1"); // nothing listens there
    let (code, json) = run(args).await;
    assert_eq!(code, 4);
    assert_eq!(json["error"]["kind"], "transport");

    let args = base("aws-iot").endpoint("krypton.soracom.io:8036"); // no scheme
    let (code, json) = run(args).await;
    assert_eq!(code, 3);
    // Issue 12: the kind matches the exit code.
    assert_eq!(json["error"]["kind"], "invalid-request");

    // SIM mode without a SIM to reach (no --uicc flags, nothing found): 13.
    let args = base("azure-iot").args(["--mode", "sim"]);
    let (code, json) = run(args).await;
    assert_eq!(code, 13);
    assert_eq!(json["error"]["kind"], "sim");
    assert_eq!(json["error"]["uiccError"], "unavailable");

    // Nothing was stored by any of the failures.
    assert_eq!(fx.status(Some("aws-iot")).run().await.code, 11);
    fx.stop().await;
}

#[tokio::test]
async fn demo_provisions_every_target_and_prints_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let (code, out, err) = run_cli(&["-v", "demo", "--store", store.to_str().unwrap()]).await;
    assert_eq!(code, 0, "stderr:\n{err}");
    assert!(
        out.contains("azure-iot: provisioned bundle `azure-iot`"),
        "{out}"
    );
    assert!(
        out.contains("deviceId                 440101234567890"),
        "{out}"
    );
    assert!(out.contains("host                     krypton-mock-hub.azure-devices.net"));
    assert!(out.contains("aws-iot: provisioned bundle `aws-iot`"));
    assert!(out.contains("clientId                 thing-440101234567890"));
    assert!(out.contains("certificate SHA-256"));
    assert!(out.contains("not after"));
    for name in TARGET_NAMES {
        assert!(
            out.contains(&format!("{name}: provisioned bundle `{name}`")),
            "{name}:\n{out}"
        );
        assert_eq!(mode(&store.join(format!("{name}.json"))), 0o600, "{name}");
    }
    assert!(
        out.contains("pskId                    d-mock440101234567890"),
        "{out}"
    );
    assert_no_secret(&[&out, &err], &key_lines(&store));
    for canary in krypton_mock::canaries() {
        assert!(
            !out.contains(&canary) && !err.contains(&canary),
            "{canary} leaked"
        );
    }
}

#[tokio::test]
async fn read_only_commands_never_create_a_store_and_say_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-store");
    // Issue 12: nothing stored is exit 11 with or without a target.
    let (code, out, _) = run_cli(&["status", "--store", missing.to_str().unwrap(), "--json"]).await;
    assert_eq!(code, 11);
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["bundles"],
        serde_json::json!([])
    );
    let (code, _, _) = run_cli(&["status", "arc", "--store", missing.to_str().unwrap()]).await;
    assert_eq!(code, 11);
    assert!(!missing.exists(), "status created the store");
    // wireguard-config with a store but no arc bundle: exit 11 before any DNS lookup.
    let store = tmp.path().join("store");
    SecretStore::open(&store).unwrap();
    let (code, _, err) = run_cli(&[
        "wireguard-config",
        "--store",
        store.to_str().unwrap(),
        "--out",
        "-",
    ])
    .await;
    assert_eq!(code, 11, "{err}");
    assert!(
        err.contains("no `arc` bundle is stored: run `krypton-host provision arc` first"),
        "{err}"
    );
}
