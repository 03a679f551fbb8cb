//! `krypton-host export`: each format written with the right modes and the consumer's shape
//! (issue 4 "Exports").

use super::support::*;
use krypton_mock as mock;
use serde_json::Value;
use std::path::Path;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn every_format_is_written_in_its_consumers_shape() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let store_dir = &fx.store;
    for target in [
        Target::AzureIot,
        Target::AwsIot,
        Target::AwsCognito,
        Target::Arc,
    ] {
        fx.provisioned(target).await;
    }
    let issued = mock.issued();
    let out = fx.path("out");

    // aziot: PEM files plus the [provisioning] section pointing at them.
    let (code, json, err) = export(store_dir, "azure-iot", "aziot", &out).await;
    assert_eq!(code, 0, "{err}");
    let files: Vec<(String, String)> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let name_mode: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, m)| {
            (
                Path::new(p).file_name().unwrap().to_str().unwrap(),
                m.as_str(),
            )
        })
        .collect();
    assert_eq!(
        name_mode,
        vec![
            ("azure-iot-certificate.pem", "0644"),
            ("azure-iot-chain.pem", "0644"),
            ("azure-iot-private-key.pem", "0600"),
            ("azure-iot-root-ca.pem", "0644"),
            ("aziot-provisioning.toml", "0644")
        ]
    );
    assert_eq!(mode(&out.join("azure-iot-private-key.pem")), 0o600);
    assert_eq!(mode(&out.join("aziot-provisioning.toml")), 0o644);
    assert_eq!(
        read(&out.join("azure-iot-private-key.pem")),
        issued[0].private_key_pem
    );
    assert_eq!(
        read(&out.join("azure-iot-certificate.pem")),
        issued[0].certificate_pem
    );
    let toml = read(&out.join("aziot-provisioning.toml"));
    let dir = std::fs::canonicalize(&out).unwrap();
    assert!(toml.contains("[provisioning]\nsource = \"manual\"\niothub_hostname = \"krypton-mock-hub.azure-devices.net\"\ndevice_id = \"440101234567890\"\n"), "{toml}");
    assert!(toml.contains(&format!(
        "[provisioning.authentication]\nmethod = \"x509\"\nidentity_cert = \"file://{0}/azure-iot-chain.pem\"\nidentity_pk = \"file://{0}/azure-iot-private-key.pem\"\n",
        dir.display()
    )), "{toml}");

    // aws-iot: files plus the SDK JSON.
    let (code, _, err) = export(store_dir, "aws-iot", "aws-iot", &out).await;
    assert_eq!(code, 0, "{err}");
    let sdk: Value = serde_json::from_str(&read(&out.join("aws-iot.json"))).unwrap();
    assert_eq!(sdk["endpoint"], issued[1].host.as_str());
    assert_eq!(sdk["clientId"], issued[1].id.as_str());
    assert_eq!(sdk["region"], "ap-northeast-1");
    assert_eq!(sdk["port"], 8883);
    assert_eq!(
        read(Path::new(sdk["privateKey"].as_str().unwrap())),
        issued[1].private_key_pem
    );
    assert_eq!(
        read(Path::new(sdk["rootCa"].as_str().unwrap())),
        mock.ca_pem()
    );

    // env: the AWS standard variables, owner-only.
    let (code, _, err) = export(store_dir, "aws-cognito", "env", &out).await;
    assert_eq!(code, 0, "{err}");
    let env = read(&out.join("aws-cognito.env"));
    assert_eq!(mode(&out.join("aws-cognito.env")), 0o600);
    let vars: Vec<(&str, &str)> = env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_once('=').unwrap())
        .collect();
    let stored = read_bundle(store_dir, "aws-cognito");
    assert_eq!(
        vars,
        vec![
            ("AWS_ACCESS_KEY_ID", stored["accessKeyId"].as_str().unwrap()),
            ("AWS_SECRET_ACCESS_KEY", mock::CANARY_SECRET_KEY),
            ("AWS_SESSION_TOKEN", mock::CANARY_SESSION_TOKEN),
            ("AWS_REGION", "ap-northeast-1"),
            ("AWS_DEFAULT_REGION", "ap-northeast-1")
        ]
    );

    // wireguard: wg-quick with Krypton routed, owner-only.
    let (code, _, err) = export(store_dir, "arc", "wireguard", &out).await;
    assert_eq!(code, 0, "{err}");
    let wg = read(&out.join("arc.conf"));
    assert_eq!(mode(&out.join("arc.conf")), 0o600);
    assert!(
        wg.contains("AllowedIPs = 100.127.0.0/16, 54.250.252.99/32\n"),
        "{wg}"
    );
    assert!(wg.contains(&format!("PrivateKey = {}\n", mock::arc_private_key())));

    // pem for AWS IoT; a format that does not fit; nothing stored.
    let (code, json, _) = export(store_dir, "aws-iot", "pem", &out).await;
    assert_eq!((code, json["files"].as_array().unwrap().len()), (0, 4));
    let (code, json, _) = export(store_dir, "aws-iot", "aziot", &out).await;
    assert_eq!(code, 3);
    assert_eq!(json["error"]["kind"], "invalid-request");
    let (code, _, err) = export(store_dir, "inventory", "pem", &out).await;
    assert_eq!(code, 11, "{err}");
    fx.stop().await;
}

#[tokio::test]
async fn export_output_names_files_but_never_prints_a_secret() {
    let fx = Fixture::new().await;
    fx.provisioned(Target::AwsIot).await;
    let out = fx.path("certs");
    let (code, stdout, err) = cli(["export", "aws-iot", "--format", "aws-iot"])
        .set("--out", text(&out))
        .store(&fx.store)
        .verbose()
        .run()
        .await
        .parts();
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("aws-iot-private-key.pem (") && stdout.contains("mode 0600"),
        "{stdout}"
    );
    assert_eq!(mode(&out), 0o700);
    assert_no_secret(&[&stdout, &err], &key_lines(&fx.store));
    fx.stop().await;
}
