//! The export formats and the `wg-quick` file, with hostile stored values.

use super::*;

#[test]
fn wireguard_config_routes_krypton_through_the_tunnel() {
    let mut fake = Fake::default().reply(200, arc_body("beck.arc.soracom.io"));
    provision(&mut fake, &request(Target::Arc)).unwrap();
    let config = wireguard_config(
        &mut fake,
        &[
            "54.250.252.99".into(),
            "54.250.252.67".into(),
            "100.127.1.1".into(),
            "2001:db8::9".into(),
        ],
    )
    .unwrap();
    assert_eq!(
        config,
        format!(
            "# SORACOM Arc, from the Krypton `arc` bundle. Contains a private key: keep it 0600.\n\
             # Added so that calls to Krypton go through the tunnel: 54.250.252.99/32, 2001:db8::9/128\n\
             [Interface]\nAddress = 10.123.45.6/32\nPrivateKey = {WG_PRIV}\n\n[Peer]\nPublicKey = {WG_PUB}\n\
             Endpoint = beck.arc.soracom.io:11010\n\
             AllowedIPs = 100.127.0.0/16, 54.250.252.67/32, 54.250.252.99/32, 2001:db8::9/128\n\
             PersistentKeepalive = 60\n"
        )
    );
    assert!(matches!(
        wireguard_config(&mut fake, &["krypton.soracom.io".into()]),
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        wireguard_config(&mut Fake::default(), &[]),
        Err(Error::Storage(_))
    ));
}

#[test]
fn a_tampered_arc_bundle_never_reaches_a_wireguard_file() {
    let mut fake = Fake::default().reply(200, arc_body("beck.arc.soracom.io:11010"));
    provision(&mut fake, &request(Target::Arc)).unwrap();
    let good = String::from_utf8(fake.store["arc"].clone()).unwrap();
    for (from, to) in [
        (
            "\"100.127.0.0/16\"",
            "\"100.127.0.0/16\\nPostUp = touch /tmp/pwned\"",
        ),
        (
            "beck.arc.soracom.io:11010",
            "beck.arc.soracom.io:11010\\nPostUp = x",
        ),
        (WG_PRIV, "short"),
    ] {
        let bad = good.replace(from, to);
        assert_ne!(bad, good, "{from}");
        fake.store.insert("arc".into(), bad.into_bytes());
        let err = wireguard_config(&mut fake, &[]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidResponse { reason, .. } if reason.starts_with("stored bundle `arc`")),
            "{err:?}"
        );
    }
}

#[test]
fn exports_render_each_consumer_format() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, assigned());
    provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let files = render_export(
        &mut fake,
        Target::AzureIot,
        "aziot",
        "/etc/aziot/krypton",
        &[],
    )
    .unwrap();
    assert_eq!(
        export_names(&files),
        vec![
            ("azure-iot-certificate.pem", false),
            ("azure-iot-chain.pem", false),
            ("azure-iot-private-key.pem", true),
            ("azure-iot-root-ca.pem", false),
            ("aziot-provisioning.toml", false)
        ]
    );
    assert_eq!(files[2].contents, EC_SEC1.as_bytes());
    assert_eq!(files[3].contents, ROOT_CRT.as_bytes());
    let toml = String::from_utf8(files[4].contents.clone()).unwrap();
    assert!(toml.contains(
        "[provisioning]\nsource = \"manual\"\niothub_hostname = \"hub-1.azure-devices.net\"\ndevice_id = \"dev-440101234567890\"\n\n\
         [provisioning.authentication]\nmethod = \"x509\"\n\
         identity_cert = \"file:///etc/aziot/krypton/azure-iot-chain.pem\"\n\
         identity_pk = \"file:///etc/aziot/krypton/azure-iot-private-key.pem\"\n"
    ), "{toml}");

    let mut fake = Fake::default().reply(200, json!({"region": "eu-west-1", "host": "abc-ats.iot.eu-west-1.amazonaws.com",
        "clientId": "thing-1", "certificate": EC_CRT, "privateKey": EC_SEC1, "rootCaCertificate": ROOT_CRT}));
    provision(&mut fake, &request(Target::AwsIot)).unwrap();
    let files =
        render_export(&mut fake, Target::AwsIot, "aws-iot", "/opt/app/certs/", &[]).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&files.last().unwrap().contents).unwrap();
    assert_eq!(
        json,
        json!({"endpoint": "abc-ats.iot.eu-west-1.amazonaws.com", "port": 8883, "clientId": "thing-1",
        "region": "eu-west-1", "certificate": "/opt/app/certs/aws-iot-certificate.pem",
        "privateKey": "/opt/app/certs/aws-iot-private-key.pem", "rootCa": "/opt/app/certs/aws-iot-root-ca.pem"})
    );
    assert_eq!(
        export_names(&render_export(&mut fake, Target::AwsIot, "pem", "/x", &[]).unwrap()).len(),
        4
    );
    for (format, expect) in [
        ("aziot", "does not fit target `aws-iot`"),
        ("env", "does not fit"),
        ("zip", "unknown export format"),
    ] {
        let err = render_export(&mut fake, Target::AwsIot, format, "/x", &[]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRequest(m) if m.contains(expect)),
            "{format}: {err:?}"
        );
    }
    assert!(matches!(
        render_export(&mut fake, Target::AwsIot, "pem", "relative", &[]),
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        render_export(&mut fake, Target::Arc, "wireguard", "/x", &[]),
        Err(Error::Storage(_))
    ));

    let creds = json!({"identityId": OPENID_ID, "region": "ap-northeast-1",
        "credentials": {"accessKeyId": "ASIAEXAMPLE00001", "secretKey": "s3cr3t", "sessionToken": "t0ken", "expiration": 1_800_000_000u64}});
    let mut fake = Fake::default().reply(200, creds);
    provision(&mut fake, &request(Target::AwsCognito)).unwrap();
    let files = render_export(&mut fake, Target::AwsCognito, "env", "/run/app", &[]).unwrap();
    assert_eq!(export_names(&files), vec![("aws-cognito.env", true)]);
    assert_eq!(
        String::from_utf8(files[0].contents.clone()).unwrap(),
        "# Amazon Cognito credentials from Krypton; they expire at 2027-01-15T08:00:00Z.\n\
         AWS_ACCESS_KEY_ID=ASIAEXAMPLE00001\nAWS_SECRET_ACCESS_KEY=s3cr3t\nAWS_SESSION_TOKEN=t0ken\n\
         AWS_REGION=ap-northeast-1\nAWS_DEFAULT_REGION=ap-northeast-1\n"
    );

    let mut fake = Fake::default().reply(200, arc_body("beck.arc.soracom.io"));
    provision(&mut fake, &request(Target::Arc)).unwrap();
    let files = render_export(
        &mut fake,
        Target::Arc,
        "wireguard",
        "/etc/wireguard",
        &["54.250.252.99".into()],
    )
    .unwrap();
    assert_eq!(export_names(&files), vec![("arc.conf", true)]);
    assert_eq!(
        files[0].contents,
        wireguard_config(&mut fake, &["54.250.252.99".into()])
            .unwrap()
            .into_bytes()
    );
}

#[test]
fn pem_format_refuses_or_rewrites_every_hostile_value() {
    for target in [Target::AzureIot, Target::AwsIot] {
        let clean = provisioned(target);
        let good_files = render_export(&mut clean_copy(&clean), target, "pem", "/x", &[]).unwrap();
        for (field, good) in [
            ("certificate", EC_CRT),
            ("privateKey", EC_SEC1),
            ("rootCaCertificate", ROOT_CRT),
        ] {
            for (name, value) in hostile_values(good) {
                let case = format!("{target:?} {field} {name}");
                let mut fake = clean_copy(&clean);
                tamper(&mut fake, target, field, &value);
                match render_export(&mut fake, target, "pem", "/x", &[]) {
                    Err(e) => assert_refused(&e, target, field, &case),
                    // Text glued around a valid block is dropped: the files are re-encoded
                    // from the parsed DER, byte for byte what the clean bundle gives.
                    Ok(files) => {
                        assert_eq!(name, "good value then a section", "{case}");
                        assert_eq!(files, good_files, "{case}");
                    }
                }
            }
        }
    }
}

#[test]
fn aziot_format_refuses_or_round_trips_every_hostile_value() {
    let clean = provisioned(Target::AzureIot);
    let mut accepted = Vec::new();
    for (field, good) in [
        ("host", "hub-1.azure-devices.net"),
        ("deviceId", "dev-440101234567890"),
        ("certificate", EC_CRT),
        ("privateKey", EC_SEC1),
        ("rootCaCertificate", ROOT_CRT),
    ] {
        for (name, value) in hostile_values(good) {
            let case = format!("{field} {name}");
            let mut fake = clean_copy(&clean);
            tamper(&mut fake, Target::AzureIot, field, &value);
            let dir = "/etc/aziot/krypton";
            match render_export(&mut fake, Target::AzureIot, "aziot", dir, &[]) {
                Err(e) => assert_refused(&e, Target::AzureIot, field, &case),
                Ok(files) => {
                    let stored = stored_bundle(&fake, Target::AzureIot);
                    let toml_text = text(files.last().unwrap());
                    let parsed: toml::Table = toml::from_str(&toml_text)
                        .unwrap_or_else(|e| panic!("{case}: not TOML: {e}\n{toml_text}"));
                    let expected: toml::Table = toml::from_str(
                        r#"[provisioning]
source = "manual"
iothub_hostname = "HOST"
device_id = "ID"
[provisioning.authentication]
method = "x509"
identity_cert = "file:///etc/aziot/krypton/azure-iot-chain.pem"
identity_pk = "file:///etc/aziot/krypton/azure-iot-private-key.pem"
"#,
                    )
                    .map(|mut t: toml::Table| {
                        let p = t["provisioning"].as_table_mut().unwrap();
                        p["iothub_hostname"] = stored["host"].as_str().unwrap().into();
                        p["device_id"] = stored["deviceId"].as_str().unwrap().into();
                        t
                    })
                    .unwrap();
                    assert_eq!(parsed, expected, "{case}: extra keys or other values");
                    accepted.push(case);
                }
            }
        }
    }
    // `'`, `=` and `#` are allowed in an IoT Hub device ID: the serializer carries them.
    assert_eq!(
        accepted,
        vec![
            "deviceId single quote",
            "deviceId equals",
            "deviceId hash",
            // PEM text around a valid block is dropped from the PEM files (see `pem`).
            "certificate good value then a section",
            "privateKey good value then a section",
            "rootCaCertificate good value then a section",
        ]
    );
}

#[test]
fn aws_iot_format_refuses_or_round_trips_every_hostile_value() {
    let clean = provisioned(Target::AwsIot);
    let mut accepted = Vec::new();
    for (field, good) in [
        ("host", "abc-ats.iot.ap-northeast-1.amazonaws.com"),
        ("clientId", "thing-1"),
        ("region", "ap-northeast-1"),
        ("certificate", EC_CRT),
        ("privateKey", EC_SEC1),
        ("rootCaCertificate", ROOT_CRT),
    ] {
        for (name, value) in hostile_values(good) {
            let case = format!("{field} {name}");
            let mut fake = clean_copy(&clean);
            tamper(&mut fake, Target::AwsIot, field, &value);
            match render_export(&mut fake, Target::AwsIot, "aws-iot", "/opt/certs", &[]) {
                Err(e) => assert_refused(&e, Target::AwsIot, field, &case),
                Ok(files) => {
                    let stored = stored_bundle(&fake, Target::AwsIot);
                    let parsed: serde_json::Value =
                        serde_json::from_slice(&files.last().unwrap().contents).unwrap();
                    assert_eq!(
                        parsed,
                        json!({"endpoint": stored["host"], "port": 8883,
                               "clientId": stored["clientId"], "region": stored["region"],
                               "certificate": "/opt/certs/aws-iot-certificate.pem",
                               "privateKey": "/opt/certs/aws-iot-private-key.pem",
                               "rootCa": "/opt/certs/aws-iot-root-ca.pem"}),
                        "{case}"
                    );
                    accepted.push(case);
                }
            }
        }
    }
    // An AWS IoT client ID is any UTF-8 without control characters: JSON carries it exactly.
    assert_eq!(
        accepted,
        vec![
            "clientId double quote",
            "clientId single quote",
            "clientId equals",
            "clientId hash",
            "clientId bracket",
            "clientId non-ASCII",
            "certificate good value then a section",
            "privateKey good value then a section",
            "rootCaCertificate good value then a section",
        ]
    );
}

#[test]
fn wireguard_formats_refuse_every_hostile_value() {
    let clean = provisioned(Target::Arc);
    for (field, good) in [
        ("arcClientPeerPrivateKey", WG_PRIV),
        ("arcClientPeerIpAddress", "10.123.45.6"),
        ("arcServerPeerPublicKey", WG_PUB),
        ("arcServerEndpoint", "beck.arc.soracom.io:11010"),
        ("arcAllowedIPs", "100.127.0.0/16"),
    ] {
        for (name, value) in hostile_values(good) {
            let case = format!("{field} {name}");
            let mut fake = clean_copy(&clean);
            tamper(&mut fake, Target::Arc, field, &value);
            let err = wireguard_config(&mut fake, &["54.250.252.99".into()]).unwrap_err();
            assert_refused(
                &err,
                Target::Arc,
                field,
                &format!("wireguard-config {case}"),
            );
            let err = render_export(&mut fake, Target::Arc, "wireguard", "/etc/wireguard", &[])
                .unwrap_err();
            assert_refused(&err, Target::Arc, field, &format!("export {case}"));
        }
    }
}

#[test]
fn wg_quick_rendering_refuses_values_the_rules_would_not_see() {
    // `wireguard_config` itself (not only the bundle check) refuses unsafe values.
    let mut fake = provisioned(Target::Arc);
    let Some(Bundle::Arc(mut b)) = load(&mut fake, Target::Arc).unwrap() else {
        panic!()
    };
    b.arc_server_endpoint = "h:1\nPostUp = id".into();
    assert_eq!(
        crate::formats::wireguard::wireguard_config(&b, &[]).unwrap_err(),
        Error::invalid(
            "arcServerEndpoint",
            "byte 4 is 0x0a, which cannot be written safely in a wg-quick file"
        )
    );
}

#[test]
fn env_format_refuses_or_round_trips_every_hostile_value() {
    let clean = provisioned(Target::AwsCognito);
    let mut accepted = Vec::new();
    for (field, good) in [
        ("accessKeyId", "ASIAEXAMPLE00001"),
        ("secretKey", "s3cr3t/Key+1"),
        ("sessionToken", "t0ken/2+=="),
        ("region", "ap-northeast-1"),
    ] {
        for (name, value) in hostile_values(good) {
            let case = format!("{field} {name}");
            let mut fake = clean_copy(&clean);
            tamper(&mut fake, Target::AwsCognito, field, &value);
            match render_export(&mut fake, Target::AwsCognito, "env", "/run/app", &[]) {
                Err(e) => assert_refused(&e, Target::AwsCognito, field, &case),
                Ok(files) => {
                    let stored = stored_bundle(&fake, Target::AwsCognito);
                    let env = text(&files[0]);
                    let vars: Vec<(&str, &str)> = env
                        .lines()
                        .filter(|l| !l.starts_with('#'))
                        .map(|l| l.split_once('=').unwrap())
                        .collect();
                    let s = |k: &str| stored[k].as_str().unwrap();
                    assert_eq!(
                        vars,
                        vec![
                            ("AWS_ACCESS_KEY_ID", s("accessKeyId")),
                            ("AWS_SECRET_ACCESS_KEY", s("secretKey")),
                            ("AWS_SESSION_TOKEN", s("sessionToken")),
                            ("AWS_REGION", s("region")),
                            ("AWS_DEFAULT_REGION", s("region")),
                        ],
                        "{case}"
                    );
                    accepted.push(case);
                }
            }
        }
    }
    // Only values made of letters, digits and `+ / = - _ . :` are written, unquoted.
    assert_eq!(
        accepted,
        vec![
            "secretKey equals",
            "secretKey 10 KB",
            "sessionToken equals",
            "sessionToken 10 KB",
        ]
    );
}

/// The formats `target-info` lists for each target are exactly those `render-export` accepts.
#[test]
fn each_target_lists_the_formats_render_export_accepts() {
    use crate::formats::{FORMATS, names_for};
    let expected: [(Target, &[&str]); 8] = [
        (Target::AzureIot, &["pem", "aziot"]),
        (Target::AwsIot, &["pem", "aws-iot"]),
        (Target::AwsCognito, &["env"]),
        (Target::AwsCognitoOpenid, &[]),
        (Target::Inventory, &[]),
        (Target::Arc, &["wireguard"]),
        (Target::SubscriberMetadata, &[]),
        (Target::Userdata, &[]),
    ];
    for (target, formats) in expected {
        assert_eq!(names_for(target), formats, "{target:?}");
    }
    for target in [
        Target::AzureIot,
        Target::AwsIot,
        Target::AwsCognito,
        Target::Arc,
    ] {
        let mut fake = provisioned(target);
        for format in FORMATS.iter().map(|f| f.name) {
            let rendered = render_export(&mut fake, target, format, "/x", &[]);
            if names_for(target).contains(&format) {
                assert!(rendered.is_ok(), "{target:?} {format}: {rendered:?}");
            } else {
                assert!(
                    matches!(&rendered, Err(Error::InvalidRequest(m)) if m.contains("does not fit")),
                    "{target:?} {format}: {rendered:?}"
                );
            }
        }
    }
}

/// `aziot` names the account each PEM file is read as (Azure IoT Edge's certificate service
/// `aziotcs`, its key service `aziotks`), the TOML section none; every other format names none.
#[test]
fn aziot_files_name_the_accounts_that_read_them() {
    use crate::formats::FORMATS;
    let mut fake = provisioned(Target::AzureIot);
    let files = render_export(
        &mut fake,
        Target::AzureIot,
        "aziot",
        "/etc/aziot/krypton",
        &[],
    )
    .unwrap();
    let owners: Vec<(&str, Option<&str>)> =
        files.iter().map(|f| (f.name.as_str(), f.owner)).collect();
    assert_eq!(
        owners,
        vec![
            ("azure-iot-certificate.pem", Some("aziotcs")),
            ("azure-iot-chain.pem", Some("aziotcs")),
            ("azure-iot-private-key.pem", Some("aziotks")),
            ("azure-iot-root-ca.pem", Some("aziotcs")),
            ("aziot-provisioning.toml", None),
        ]
    );
    for target in [
        Target::AzureIot,
        Target::AwsIot,
        Target::AwsCognito,
        Target::Arc,
    ] {
        let mut fake = provisioned(target);
        for format in FORMATS.iter().map(|f| f.name).filter(|f| *f != "aziot") {
            if let Ok(files) = render_export(&mut fake, target, format, "/x", &[]) {
                assert!(
                    files.iter().all(|f| f.owner.is_none()),
                    "{target:?} {format}"
                );
            }
        }
    }
}

/// Every format has a one-line summary for a host's help (WIT `export-formats`), every format a
/// target lists is among them, and the summary of `aziot` names its two accounts.
#[test]
fn each_format_has_a_summary_and_every_listed_format_is_described() {
    use crate::formats::FORMATS;
    let names: Vec<&str> = FORMATS.iter().map(|f| f.name).collect();
    assert_eq!(names, ["pem", "aziot", "aws-iot", "wireguard", "env"]);
    let mut listed: Vec<&str> = crate::ops::OPERATIONS
        .iter()
        .flat_map(|op| crate::formats::names_for(op.target))
        .collect();
    listed.sort_unstable();
    listed.dedup();
    let mut described = names.clone();
    described.sort_unstable();
    assert_eq!(listed, described);
    for f in &FORMATS {
        assert!(
            !f.summary.is_empty()
                && f.summary.len() <= 256
                && !f.summary.chars().any(char::is_control),
            "{}: {:?}",
            f.name,
            f.summary
        );
    }
    assert_eq!(
        FORMATS[0].summary,
        "certificate, chain, private key and root CA as PEM files"
    );
    assert!(FORMATS[1].summary.contains("aziotcs") && FORMATS[1].summary.contains("aziotks"));
}
