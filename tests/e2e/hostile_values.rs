//! Issue 7 items 1, 5 and 10 end to end: hostile values from Krypton or edited into a stored
//! bundle never reach a file, and a store that cannot keep a credential stops the run before
//! Krypton is called. Real component, real host, the mock's raw-body fault.

use super::support::*;
use krypton_mock::Fault;
use serde_json::{Value, json};
use std::path::Path;

const ARC_BOOTSTRAP: &str = "/v1/provisioning/soracom/arc/bootstrap";
const AZURE_POLL: &str = "/v1/provisioning/azure/iot/registrations/";
/// The issue's first sample: line breaks, no spaces or slashes.
const HOSTILE_ENDPOINT: &str = "x\n[Interface]\nPostUp=id\n[Peer]\nEndpoint=b.example:11010";

#[tokio::test]
async fn an_arc_endpoint_with_line_breaks_is_refused_and_nothing_is_stored() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    mock.inject(
        ARC_BOOTSTRAP,
        Fault::Body(json!({
            "arcClientPeerPrivateKey": krypton_mock::arc_private_key(),
            "arcClientPeerIpAddress": "10.123.45.6",
            "arcServerPeerPublicKey": krypton_mock::arc_private_key(),
            "arcServerEndpoint": HOSTILE_ENDPOINT,
            "arcAllowedIPs": ["100.127.0.0/16"],
        })),
    );
    let err = fx.run(&fx.request(Target::Arc)).await.unwrap_err();
    let (field, reason) = invalid(err);
    assert_eq!(field, "arcServerEndpoint");
    assert!(!reason.contains("PostUp"), "the value is echoed: {reason}");
    assert_eq!(bundle_files(&fx.store), Vec::<String>::new());

    // The binary: exit 7 (invalid response), the field named, nothing stored.
    let store_dir = fx.path("cli-store");
    let run = fx.provision("arc").store(&store_dir).json().run().await;
    assert_eq!(run.code, 7, "{}\n{}", run.stdout, run.stderr);
    let json = run.json();
    assert_eq!(json["error"]["kind"], "invalid-response");
    assert_eq!(json["error"]["field"], "arcServerEndpoint");
    assert_eq!(bundle_files(&store_dir), Vec::<String>::new());
    fx.stop().await;
}

#[tokio::test]
async fn an_azure_device_id_with_a_quote_and_a_line_break_is_refused_and_nothing_is_stored() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    // A real certificate and key from the mock, so that only the device ID is wrong.
    let scratch = SecretStore::open(fx.path("scratch")).unwrap();
    provision(mock, &scratch, &fx.request(Target::AzureIot))
        .await
        .unwrap();
    let issued = mock.issued()[0].clone();
    mock.inject(
        AZURE_POLL,
        Fault::Body(json!({
            "operationId": "4.hostile", "status": "assigned",
            "deviceId": "gw\"\nsource = \"dps\"",
            "host": "krypton-mock-hub.azure-devices.net",
            "certificate": issued.certificate_pem, "privateKey": issued.private_key_pem,
        })),
    );
    let err = fx.run(&fx.request(Target::AzureIot)).await.unwrap_err();
    let (field, reason) = invalid(err);
    assert_eq!(field, "deviceId");
    assert!(reason.contains("Azure IoT Hub deviceId"), "{reason}");
    // Neither the bundle nor the registration in flight is kept.
    assert_eq!(bundle_files(&fx.store), Vec::<String>::new());
    fx.stop().await;
}

/// A fixture whose store holds good `arc`, `azure-iot`, `aws-iot` and `aws-cognito` bundles.
async fn provisioned_store() -> Fixture {
    let fx = Fixture::new().await;
    for target in [
        Target::Arc,
        Target::AzureIot,
        Target::AwsIot,
        Target::AwsCognito,
    ] {
        fx.provisioned(target).await;
    }
    fx
}

/// Set `field` of the bundle file `name` to `value`, as someone editing it on disk would.
fn edit_bundle(store_dir: &Path, name: &str, field: &str, value: Value) {
    let path = store_dir.join(format!("{name}.json"));
    let mut bundle: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    bundle[field] = value;
    std::fs::write(&path, serde_json::to_vec_pretty(&bundle).unwrap()).unwrap();
}

#[tokio::test]
async fn an_edited_bundle_is_refused_by_wireguard_config_and_export_and_nothing_is_written() {
    let fx = provisioned_store().await;
    let (tmp, store_dir) = (&fx.tmp, &fx.store);
    let store = store_dir.to_str().unwrap();

    // (bundle, field, hostile value, export format)
    let cases = [
        (
            "arc",
            "arcServerEndpoint",
            json!(HOSTILE_ENDPOINT),
            "wireguard",
        ),
        (
            "arc",
            "arcAllowedIPs",
            json!(["100.127.0.0/16\nPostUp = id"]),
            "wireguard",
        ),
        (
            "arc",
            "arcClientPeerIpAddress",
            json!("10.0.0.1 #"),
            "wireguard",
        ),
        ("azure-iot", "deviceId", json!("gw\"\n[x]"), "aziot"),
        (
            "azure-iot",
            "host",
            json!("hub.example\"\nsource=1"),
            "aziot",
        ),
        (
            "aws-iot",
            "host",
            json!("https://evil.example/x"),
            "aws-iot",
        ),
        ("aws-iot", "region", json!("ap-northeast-1\n"), "aws-iot"),
        ("aws-cognito", "secretKey", json!("s3cr3t\nAWS_X=1"), "env"),
        ("aws-cognito", "accessKeyId", json!("ASIA \"x\""), "env"),
    ];
    for (name, field, value, format) in cases {
        let case = format!("{name} {field}");
        let original = std::fs::read(store_dir.join(format!("{name}.json"))).unwrap();
        edit_bundle(store_dir, name, field, value);

        // Exit 7, the error naming the field and the bundle; stderr.
        let unusable = async |command: Cli| {
            let (code, out, err) = command
                .store(store_dir)
                .args(["--krypton-address", "54.250.252.99"])
                .run()
                .await
                .parts();
            assert_eq!(code, 7, "{case}: {out}\n{err}");
            assert!(
                err.contains(&format!(
                    "error: the stored bundle is unusable: field `{field}`: stored bundle `{name}`: "
                )),
                "{case}: {err}"
            );
            err
        };
        if name == "arc" {
            let out_file = tmp.path().join("arc0.conf");
            let err = unusable(cli(["wireguard-config"]).set("--out", text(&out_file))).await;
            assert!(
                !err.contains("PostUp"),
                "{case}: the value is echoed: {err}"
            );
            assert!(!out_file.exists(), "{case}: a wg-quick file was written");
        }

        let out_dir = tmp.path().join(format!("export-{name}-{field}"));
        // Invalid (7), not storage (9): the env case is issue 7 item 10.
        unusable(cli(["export", name, "--format", format]).set("--out", text(&out_dir))).await;
        assert_eq!(
            bundle_files(&out_dir),
            Vec::<String>::new(),
            "{case}: files written"
        );

        std::fs::write(store_dir.join(format!("{name}.json")), original).unwrap();
    }
    // Restored, every format works again (the refusals above were about the values).
    let out_dir = tmp.path().join("export-ok");
    let (code, _, err) = run_cli(&[
        "export",
        "aws-cognito",
        "--format",
        "env",
        "--out",
        out_dir.to_str().unwrap(),
        "--store",
        store,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    fx.stop().await;
}

#[tokio::test]
async fn an_edited_device_id_that_the_rules_allow_still_yields_valid_toml() {
    let fx = provisioned_store().await;
    let (tmp, store_dir) = (&fx.tmp, &fx.store);
    // `'`, `=`, `#` and `$` are allowed in an IoT Hub device ID.
    let device_id = "gw'1=#$";
    edit_bundle(store_dir, "azure-iot", "deviceId", json!(device_id));
    let out_dir = tmp.path().join("aziot");
    let (code, _, err) = run_cli(&[
        "export",
        "azure-iot",
        "--format",
        "aziot",
        "--out",
        out_dir.to_str().unwrap(),
        "--store",
        store_dir.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(out_dir.join("aziot-provisioning.toml")).unwrap();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    let provisioning = parsed["provisioning"].as_table().unwrap();
    assert_eq!(provisioning["device_id"].as_str(), Some(device_id));
    let mut keys: Vec<&String> = provisioning.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        vec!["authentication", "device_id", "iothub_hostname", "source"]
    );
    fx.stop().await;
}

#[tokio::test]
async fn a_store_that_fails_stops_the_run_before_any_request_reaches_krypton() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    fx.secret_store(); // made now, as a run makes it
    // Root ignores file modes, so break the store another way: the bundle's path is a
    // directory (reads fail with an I/O error).
    std::fs::create_dir(fx.store.join("aws-iot.json")).unwrap();
    for force in [false, true] {
        let mut req = fx.request(Target::AwsIot);
        req.force = force;
        let err = fx.run(&req).await.unwrap_err();
        match err {
            ProvisionError::Storage(m) => assert!(m.contains("aws-iot.json"), "{m}"),
            other => panic!("force={force}: expected Storage, got {other:?}"),
        }
        assert_eq!(
            mock.requests().len(),
            0,
            "force={force}: Krypton was called"
        );
    }
    std::fs::remove_dir(fx.store.join("aws-iot.json")).unwrap();

    // A store that reads but cannot take a bundle: the probe's path is a directory, so the
    // write (rename into place) fails. AWS IoT, Arc and Inventory are refused before Krypton.
    std::fs::create_dir(fx.store.join("store-probe.json")).unwrap();
    for (target, params) in [
        (Target::AwsIot, None),
        (Target::Arc, None),
        (Target::Inventory, Some(r#"{"endpoint":"gw-0042"}"#)),
    ] {
        let mut req = fx.request(target);
        req.request_parameters = params.map(str::to_string);
        let err = fx.run(&req).await.unwrap_err();
        match err {
            ProvisionError::Storage(m) => {
                assert!(m.contains("Krypton was not called"), "{m}")
            }
            other => panic!("{target:?}: expected Storage, got {other:?}"),
        }
        assert_eq!(mock.requests().len(), 0, "{target:?}: Krypton was called");
    }
    assert_eq!(bundle_files(&fx.store), vec!["store-probe.json"]);

    // The binary says so with the storage exit code.
    let (code, out, err) = fx.provision("aws-iot").json().run().await.parts();
    assert_eq!(code, 9, "{out}\n{err}");
    assert_eq!(mock.requests().len(), 0);
    fx.stop().await;
}

/// A stored `aws-iot` bundle edited on disk is kept as it is: a run without force stops before
/// Krypton (no certificate is minted, the stored key is not thrown away); a forced run
/// replaces it.
#[tokio::test]
async fn an_edited_aws_iot_bundle_is_not_replaced_without_force_and_nothing_is_minted() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let store = &fx.store;
    let args = |force: bool| {
        let command = fx.provision("aws-iot");
        if force { command.force() } else { command }
    };
    let run = async |command: Cli| command.run().await.parts();
    let (code, out, err) = run(args(false)).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let bootstraps = || {
        mock.requests()
            .iter()
            .filter(|r| r.path.ends_with("/aws/iot/bootstrap"))
            .count()
    };
    assert_eq!(bootstraps(), 1);
    let file = store.join("aws-iot.json");
    let edited = std::fs::read_to_string(&file).unwrap().replace(
        "\"region\": \"ap-northeast-1\"",
        "\"region\": \"bad region\"",
    );
    assert!(edited.contains("bad region"), "the edit did not apply");
    std::fs::write(&file, &edited).unwrap();

    let (code, out, err) = run(args(false)).await;
    // The code and words `status` and `export` use for the same bundle.
    assert_eq!(code, 7, "{out}\n{err}");
    assert!(
        err.contains(
            "error: the stored bundle is unusable: field `region`: stored bundle `aws-iot`"
        ),
        "{err}"
    );
    // The component's advice names the request field; the host names its flag for it.
    assert!(err.contains("again with force"), "{err}");
    assert!(err.contains("\nhint: here that is --force"), "{err}");
    assert_eq!(bootstraps(), 1, "a certificate was minted");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), edited);

    let (code, out, err) = run(args(true)).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(bootstraps(), 2);
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap()
            .contains("bad region")
    );
    fx.stop().await;
}
