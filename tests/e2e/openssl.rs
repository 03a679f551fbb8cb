//! Every exported certificate and private key loads in OpenSSL, the library that the AWS IoT
//! Device SDKs, Python's `ssl`, `cryptography`, curl and the Azure IoT Identity Service build on
//! (issue 12 item 1): for each target that carries a key and each of its export formats, through
//! the `krypton-host export` command a user runs,
//! * `openssl pkey -in KEY -noout` and `openssl x509 -in CERT -noout` load the files,
//! * the key's public half (`openssl pkey -pubout`) equals the certificate's
//!   (`openssl x509 -pubkey -noout`),
//! * `openssl verify -purpose sslclient` chains the certificate to the exported root CA,
//! * and `openssl s_server` on loopback, with the exported pair, completes a mutually
//!   authenticated TLS handshake with `openssl s_client` presenting the same pair, each side
//!   trusting only the exported root CA: what a device's TLS stack does with them.
//!
//! The mock issues keys in the real services' shapes (AWS IoT: RSA 2048, PKCS#1; Azure IoT:
//! ECDSA P-256, PKCS#8), and, as a mock option, SEC1 `EC PRIVATE KEY` without its curve, which
//! OpenSSL cannot load as sent: the export must convert it, and say so in `converted`, while
//! the stored bundle keeps what Krypton sent.
//!
//! These tests need the `openssl` command-line tool (Debian package `openssl`, installed by
//! `.ci/run`). Without it they fail, naming the package: they are the proof that a consumer can
//! load the exports and are never skipped.

use super::support::*;
use krypton_mock::{KeyShape, MockConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Upper bound for one `openssl` process; a safety net so that a hung handshake fails the test
/// instead of hanging it, not a measurement.
const BOUND: Duration = Duration::from_secs(60);

/// Run `openssl ARGS`; returns (success, stdout, stderr). Panics, naming the package to
/// install, when the tool is missing.
async fn openssl(args: &[&str]) -> (bool, String, String) {
    let child = tokio::process::Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| missing_openssl(e));
    let out = tokio::time::timeout(BOUND, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`openssl {}` did not finish", args.join(" ")))
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn missing_openssl(e: std::io::Error) -> ! {
    panic!(
        "the `openssl` command-line tool cannot be run ({e}). These tests prove that exported \
         keys and certificates load in OpenSSL and are never skipped: install it \
         (Debian/Ubuntu: `apt-get install -y openssl`)."
    )
}

/// The files one export hands to its consumer.
struct Exported {
    certificate: PathBuf,
    key: PathBuf,
    root: PathBuf,
}

/// Where the consumer of `format` is told to find the certificate and key: the paths in the
/// format's own configuration file where it has one, else the PEM files by name.
fn consumer_paths(target: &str, format: &str, out: &Path) -> Exported {
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    match format {
        "aws-iot" => {
            let sdk: Value = serde_json::from_str(&read("aws-iot.json")).unwrap();
            let path = |k: &str| PathBuf::from(sdk[k].as_str().unwrap());
            Exported {
                certificate: path("certificate"),
                key: path("privateKey"),
                root: path("rootCa"),
            }
        }
        "aziot" => {
            let config: toml::Value = toml::from_str(&read("aziot-provisioning.toml")).unwrap();
            let auth = &config["provisioning"]["authentication"];
            let path = |k: &str| {
                let uri = auth[k].as_str().unwrap();
                PathBuf::from(uri.strip_prefix("file://").unwrap())
            };
            Exported {
                certificate: path("identity_cert"),
                key: path("identity_pk"),
                root: out.join("azure-iot-root-ca.pem"),
            }
        }
        _ => Exported {
            certificate: out.join(format!("{target}-certificate.pem")),
            key: out.join(format!("{target}-private-key.pem")),
            root: out.join(format!("{target}-root-ca.pem")),
        },
    }
}

/// Load, compare and verify with the OpenSSL tools; then one TLS handshake.
async fn assert_openssl_uses(files: &Exported, what: &str) {
    let key = files.key.to_str().unwrap();
    let cert = files.certificate.to_str().unwrap();
    let root = files.root.to_str().unwrap();
    let (ok, _, err) = openssl(&["pkey", "-in", key, "-noout"]).await;
    assert!(ok, "{what}: openssl cannot load the key: {err}");
    for pem in [cert, root] {
        let (ok, _, err) = openssl(&["x509", "-in", pem, "-noout"]).await;
        assert!(ok, "{what}: openssl cannot load {pem}: {err}");
    }
    let (ok, key_public, err) = openssl(&["pkey", "-in", key, "-pubout"]).await;
    assert!(ok, "{what}: {err}");
    let (ok, cert_public, err) = openssl(&["x509", "-in", cert, "-pubkey", "-noout"]).await;
    assert!(ok, "{what}: {err}");
    assert!(
        key_public.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{what}"
    );
    assert_eq!(
        key_public, cert_public,
        "{what}: the key's public half is not the certificate's"
    );
    let (ok, stdout, err) =
        openssl(&["verify", "-purpose", "sslclient", "-CAfile", root, cert]).await;
    assert!(ok, "{what}: {stdout}{err}");
    assert_eq!(stdout, format!("{cert}: OK\n"), "{what}");
    handshake(files, what).await;
}

/// `openssl s_server` on 127.0.0.1 (port 0, one connection) with the exported pair, requiring
/// a client certificate; `openssl s_client` presents the same pair. Each side verifies the
/// other against the exported root CA only (`-verify_return_error`). The device certificates
/// are TLS client certificates (extended key usage `clientAuth`), so the client checks the
/// server's with `-purpose sslclient`.
async fn handshake(files: &Exported, what: &str) {
    let key = files.key.to_str().unwrap();
    let cert = files.certificate.to_str().unwrap();
    let root = files.root.to_str().unwrap();
    let mut server = tokio::process::Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1"])
        .args(["-cert", cert, "-key", key, "-CAfile", root])
        .args(["-Verify", "1", "-verify_return_error"])
        // s_server ends the connection when its stdin ends: keep it open until the client is done.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| missing_openssl(e));
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut seen = String::new();
    let port = tokio::time::timeout(BOUND, async {
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).await.unwrap() == 0 {
                return None;
            }
            seen.push_str(&line);
            if let Some(port) = line.trim().strip_prefix("ACCEPT 127.0.0.1:") {
                return Some(port.to_string());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: s_server never listened: {seen}"));
    let Some(port) = port else {
        let mut err = String::new();
        server
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        panic!("{what}: s_server refused the exported pair: {seen}{err}");
    };
    let connect = format!("127.0.0.1:{port}");
    let (ok, client_out, client_err) = openssl(&[
        "s_client",
        "-connect",
        &connect,
        "-cert",
        cert,
        "-key",
        key,
        "-CAfile",
        root,
        "-verify_return_error",
        "-purpose",
        "sslclient",
        "-brief",
    ])
    .await;
    drop(server.stdin.take());
    let mut rest = String::new();
    let status = tokio::time::timeout(BOUND, async {
        stdout.read_to_string(&mut rest).await.unwrap();
        server.wait().await.unwrap()
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: s_server did not end after its one connection"));
    let mut server_err = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut server_err)
        .await
        .unwrap();
    assert!(
        ok,
        "{what}: s_client failed: {client_out}{client_err}\nserver: {rest}{server_err}"
    );
    assert!(
        client_err.contains("CONNECTION ESTABLISHED\n")
            && client_err.contains("Verification: OK\n"),
        "{what}: {client_err}"
    );
    assert!(
        rest.contains("   1 server accepts that finished\n"),
        "{what}: the server did not complete the handshake: {rest}{server_err}"
    );
    assert!(status.success(), "{what}: s_server: {rest}{server_err}");
}

/// What each export of a mock with `config` must look like: per target, the key's PEM label and
/// the `converted` text of the key file.
struct Case {
    target: Target,
    name: &'static str,
    formats: [&'static str; 2],
    label: &'static str,
    converted: Option<&'static str>,
}

/// Azure IoT (formats pem and aziot) and AWS IoT (pem and aws-iot), each with the label and
/// `converted` text its exported key must show.
fn both(
    (azure_label, azure_converted): (&'static str, Option<&'static str>),
    (aws_label, aws_converted): (&'static str, Option<&'static str>),
) -> [Case; 2] {
    [
        Case {
            target: Target::AzureIot,
            name: "azure-iot",
            formats: ["pem", "aziot"],
            label: azure_label,
            converted: azure_converted,
        },
        Case {
            target: Target::AwsIot,
            name: "aws-iot",
            formats: ["pem", "aws-iot"],
            label: aws_label,
            converted: aws_converted,
        },
    ]
}

async fn round_trip(config: MockConfig, cases: &[Case]) {
    let fx = Fixture::with_config(config).await;
    let (mock, store_dir) = (&fx.mock, &fx.store);
    for case in cases {
        fx.provisioned(case.target).await;
    }
    let issued = mock.issued();
    for (case, issued) in cases.iter().zip(&issued) {
        assert_eq!(issued.target, case.name);
        // The stored bundle keeps the key as Krypton sent it.
        let stored = read_bundle(store_dir, case.name);
        assert_eq!(stored["privateKey"], issued.private_key_pem.as_str());
        // What the component says about each file it renders, in every format: only the key
        // file can differ from what Krypton sent.
        let (rt, pre) = runtime();
        let n = case.name;
        for format in case.formats {
            let files = rt
                .render_export(pre, fx.secret_store(), case.target, format, "/export", &[])
                .await
                .unwrap()
                .unwrap();
            let converted: Vec<(&str, Option<&str>)> = files
                .iter()
                .map(|f| (f.name.as_str(), f.converted.as_deref()))
                .collect();
            let mut expected = vec![
                (format!("{n}-certificate.pem"), None),
                (format!("{n}-chain.pem"), None),
                (format!("{n}-private-key.pem"), case.converted),
                (format!("{n}-root-ca.pem"), None),
            ];
            match format {
                "aziot" => expected.push(("aziot-provisioning.toml".into(), None)),
                "aws-iot" => expected.push(("aws-iot.json".into(), None)),
                _ => {}
            }
            let expected: Vec<(&str, Option<&str>)> = expected
                .iter()
                .map(|(name, c)| (name.as_str(), *c))
                .collect();
            assert_eq!(converted, expected, "{n} {format}");
        }
        for format in case.formats {
            let out = fx.path(&format!("{n}-{format}"));
            let (code, json, err) = export(store_dir, n, format, &out).await;
            assert_eq!(code, 0, "export {n} {format}: {err}");
            assert_eq!(json["ok"], true);
            let files = consumer_paths(n, format, &out);
            let key = std::fs::read_to_string(&files.key).unwrap();
            assert!(
                key.starts_with(&format!("-----BEGIN {}-----\n", case.label)),
                "{n} {format}: {}",
                key.lines().next().unwrap_or_default()
            );
            if case.converted.is_none() {
                assert_eq!(key, issued.private_key_pem, "{n} {format}: not as sent");
            }
            assert_eq!(
                std::fs::read_to_string(&files.root).unwrap(),
                mock.ca_pem(),
                "{n} {format}"
            );
            assert_openssl_uses(&files, &format!("{n} {format}")).await;
        }
    }
    fx.stop().await;
}

#[tokio::test]
async fn keys_in_the_services_shapes_load_in_openssl_and_complete_a_tls_handshake() {
    let config = MockConfig::default();
    assert_eq!(
        (config.azure_iot_key, config.aws_iot_key),
        (KeyShape::EcP256Pkcs8, KeyShape::Rsa2048Pkcs1)
    );
    round_trip(
        config,
        &both(("PRIVATE KEY", None), ("RSA PRIVATE KEY", None)),
    )
    .await;
}

#[tokio::test]
async fn ec_keys_sent_without_their_curve_are_exported_in_a_form_openssl_loads() {
    let config = MockConfig {
        azure_iot_key: KeyShape::EcP384Sec1NoCurve,
        aws_iot_key: KeyShape::EcP256Sec1NoCurve,
        ..MockConfig::default()
    };
    round_trip(
        config,
        &both(
            (
                "PRIVATE KEY",
                Some("EC PRIVATE KEY without its curve -> PKCS#8 PRIVATE KEY (P-384)"),
            ),
            (
                "PRIVATE KEY",
                Some("EC PRIVATE KEY without its curve -> PKCS#8 PRIVATE KEY (P-256)"),
            ),
        ),
    )
    .await;
}

#[tokio::test]
async fn sec1_keys_that_name_their_curve_are_exported_as_sent() {
    let config = MockConfig {
        azure_iot_key: KeyShape::EcP256Sec1,
        aws_iot_key: KeyShape::EcP256Sec1,
        ..MockConfig::default()
    };
    round_trip(
        config,
        &both(("EC PRIVATE KEY", None), ("EC PRIVATE KEY", None)),
    )
    .await;
}

/// The shape that needs converting really is one OpenSSL refuses as sent (else the test above
/// would prove nothing).
#[tokio::test]
async fn openssl_refuses_a_sec1_key_without_its_curve_as_sent() {
    let fx = Fixture::with_config(MockConfig {
        aws_iot_key: KeyShape::EcP256Sec1NoCurve,
        ..MockConfig::default()
    })
    .await;
    fx.provisioned(Target::AwsIot).await;
    let sent = fx.path("as-sent.pem");
    std::fs::write(&sent, &fx.mock.issued()[0].private_key_pem).unwrap();
    let (ok, _, _) = openssl(&["pkey", "-in", sent.to_str().unwrap(), "-noout"]).await;
    assert!(!ok, "openssl loaded a SEC1 key without its curve");
    fx.stop().await;
}

/// Issue 18, item 18: the key `krypton-host keygen` writes is the form `openssl genpkey
/// -algorithm ed25519` writes (the same DER structure, PKCS#8 v1 of RFC 8410 §7), OpenSSL loads
/// it, and the public key `openssl pkey -pubout` derives is the one `keygen` printed; a key
/// OpenSSL made signs through `krypton-host sign`'s parser to the same public key too.
#[tokio::test]
async fn keygen_writes_a_key_openssl_loads_and_derives_the_same_public_key() {
    use base64::Engine as _;
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("keygen.pem");
    let run = cli(["keygen", "--json", "--out", ours.to_str().unwrap()])
        .run()
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let public = run.json()["publicKey"].as_str().unwrap().to_string();
    let path = ours.to_str().unwrap();
    let (ok, _, stderr) = openssl(&["pkey", "-in", path, "-noout"]).await;
    assert!(ok, "openssl cannot load the keygen key: {stderr}");
    let spki = tmp.path().join("public.der");
    let (ok, _, stderr) = openssl(&[
        "pkey",
        "-in",
        path,
        "-pubout",
        "-outform",
        "DER",
        "-out",
        spki.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{stderr}");
    let spki = std::fs::read(&spki).unwrap();
    // SubjectPublicKeyInfo of an Ed25519 key (RFC 8410 §4): 12 bytes of header, the key.
    assert_eq!(spki.len(), 44);
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(b64.encode(&spki[12..]), public);

    // OpenSSL's own key: the same DER structure (the 16 bytes before the seed) and length.
    let theirs = tmp.path().join("openssl.pem");
    let (ok, _, stderr) = openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        theirs.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{stderr}");
    let der = |file: &Path| {
        let text = std::fs::read_to_string(file).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        b64.decode(body).unwrap()
    };
    let (ours_der, theirs_der) = (der(&ours), der(&theirs));
    assert_eq!(ours_der.len(), theirs_der.len());
    assert_eq!(ours_der.len(), 48);
    assert_eq!(ours_der[..16], theirs_der[..16]);
    let pem_lines = |file: &Path| {
        let text = std::fs::read_to_string(file).unwrap();
        (
            text.lines().next().unwrap().to_string(),
            text.lines().last().unwrap().to_string(),
        )
    };
    assert_eq!(pem_lines(&ours), pem_lines(&theirs));
}
