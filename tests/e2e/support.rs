//! Shared helpers: one compiled component, a mock per test, requests, bundle readers, and the
//! binary runner.
#![allow(dead_code)]

use krypton_host::ProvisionOptions;
use krypton_host::bindings::{ProvisionError, ProvisionReport, ProvisionRequest, Target};
use krypton_host::capability::http::{Origin, OutboundPolicy};
use krypton_host::capability::store::SecretStore;
use krypton_host::component::DEFAULT_COMPONENT;
use krypton_host::engine::{KryptonPre, Runtime};
use krypton_mock::{MockConfig, MockKrypton};
use serde_json::Value;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_krypton-host");

/// One engine and one compiled component for all library-level tests.
pub fn runtime() -> &'static (Runtime, KryptonPre) {
    static RT: OnceLock<(Runtime, KryptonPre)> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = Runtime::new().unwrap();
        let pre = rt.load(DEFAULT_COMPONENT).unwrap();
        (rt, pre)
    })
}

pub async fn mock() -> MockKrypton {
    MockKrypton::start("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .unwrap()
}

pub fn policy_for(mock: &MockKrypton) -> OutboundPolicy {
    OutboundPolicy::new(
        vec![Origin::parse(&mock.endpoint()).unwrap()],
        Some(mock.ca_pem().as_bytes()),
    )
    .unwrap()
}

/// The tests' run options: one attempt, short waits (the mock answers on loopback).
pub fn options() -> ProvisionOptions {
    ProvisionOptions {
        deadline: Duration::from_secs(20),
        poll_interval: Duration::from_millis(20),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        max_attempts: 1,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        ..ProvisionOptions::default()
    }
}

pub fn request(target: Target, endpoint: String) -> ProvisionRequest {
    options().request(target, &endpoint)
}

/// Provision through the shared runtime; the component's error without its hint.
pub async fn provision(
    mock: &MockKrypton,
    store: &SecretStore,
    req: &ProvisionRequest,
) -> Result<ProvisionReport, ProvisionError> {
    let (rt, pre) = runtime();
    rt.provision(pre, policy_for(mock), store.clone(), req)
        .await
        .expect("no trap")
        .map_err(|failure| failure.error)
}

/// Every target the component ships, in the contract's order.
pub const TARGET_NAMES: [&str; 8] = [
    "azure-iot",
    "aws-iot",
    "aws-cognito",
    "aws-cognito-openid",
    "inventory",
    "arc",
    "subscriber-metadata",
    "userdata",
];

pub fn ident<'a>(report: &'a ProvisionReport, key: &str) -> &'a str {
    report
        .identifiers
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no identifier {key}"))
}

pub fn read_bundle(dir: &Path, name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap()
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// DER of the first certificate in a PEM text.
pub fn cert_der(pem_text: &str) -> Vec<u8> {
    rustls::pki_types::pem::PemObject::from_pem_slice(pem_text.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap()
}

/// The key's public half appears in the certificate: the pair matches. RSA (PKCS#1) or P-256
/// (SEC1 or PKCS#8) keys, the shapes the mock issues by default.
pub fn assert_key_matches_cert(key_pem: &str, cert_pem: &str) {
    use p256::pkcs8::DecodePrivateKey;
    if key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::EncodePublicKey;
        let spki = rsa::RsaPrivateKey::from_pkcs1_pem(key_pem)
            .unwrap()
            .to_public_key()
            .to_public_key_der()
            .unwrap();
        let der = cert_der(cert_pem);
        assert!(
            der.windows(spki.as_bytes().len())
                .any(|w| w == spki.as_bytes()),
            "the stored key does not belong to the stored certificate"
        );
        return;
    }
    let secret = if key_pem.contains("BEGIN EC PRIVATE KEY") {
        p256::SecretKey::from_sec1_pem(key_pem).unwrap()
    } else {
        p256::SecretKey::from_pkcs8_pem(key_pem).unwrap()
    };
    let point = secret.public_key().to_sec1_bytes();
    let der = cert_der(cert_pem);
    assert!(
        der.windows(point.len()).any(|w| w == &point[..]),
        "the stored key does not belong to the stored certificate"
    );
}

/// Run the binary; returns (exit code, stdout, stderr).
pub async fn run_cli(args: &[&str]) -> (i32, String, String) {
    run_cli_with_log(args, None).await
}

/// [`run_cli`] with `RUST_LOG` set to `log_filter` (unset when `None`).
pub async fn run_cli_with_log(args: &[&str], log_filter: Option<&str>) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(BIN);
    match log_filter {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    let out = command
        .args(args)
        .env_remove("KRYPTON_STORE")
        .env_remove("KRYPTON_ENDPOINT")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Every secret stored under `dir`: the base64 lines of PEM private keys, and the whole value
/// of every other secret field (Cognito keys and tokens, Inventory and WireGuard keys, userdata).
pub fn key_lines(dir: &Path) -> Vec<String> {
    const SECRET_FIELDS: [&str; 6] = [
        "arcClientPeerPrivateKey",
        "secretKey",
        "sessionToken",
        "token",
        "applicationKey",
        "userdata",
    ];
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        // Bundles only: not the store's lock files.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let bundle: Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        if let Some(key) = bundle["privateKey"].as_str() {
            lines.extend(
                key.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .map(str::to_string),
            );
        }
        for field in SECRET_FIELDS {
            if let Some(value) = bundle[field].as_str() {
                lines.push(value.to_string());
            }
        }
    }
    assert!(!lines.is_empty());
    lines
}

pub fn assert_no_secret(outputs: &[&str], key_lines: &[String]) {
    for out in outputs {
        assert!(
            !out.contains("PRIVATE KEY"),
            "output mentions a private key:\n{out}"
        );
        for line in key_lines {
            assert!(
                !out.contains(line.as_str()),
                "key material in output:\n{out}"
            );
        }
    }
}

/// A loopback port with nothing listening on it (bound, noted, closed).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `krypton-host export TARGET --format FORMAT --out OUT --store STORE --krypton-address
/// 54.250.252.99 --json` (the address keeps `wireguard` from resolving Krypton's name):
/// `(exit code, the JSON object on stdout or Null, stderr)`.
pub async fn export(store: &Path, target: &str, format: &str, out: &Path) -> (i32, Value, String) {
    let (code, stdout, err) = run_cli(&[
        "export",
        target,
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--krypton-address",
        "54.250.252.99",
        "--json",
    ])
    .await;
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (code, json, err)
}
