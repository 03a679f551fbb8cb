//! Shared helpers: one compiled component, the [`Fixture`] most tests start from (a mock, a
//! private directory with the mock's CA and a store), the binary's command lines ([`Cli`]), the
//! daemon's configuration ([`GatewayToml`]) and process, requests, bundle readers.
//!
//! The tests reach the host library through the paths used here and re-exported below, so
//! that a move of its modules is fixed in this one file.
#![allow(dead_code)]

mod cli;
mod fixture;
mod gateway;

pub use cli::{BIN, Cli, cli, text};
pub use fixture::Fixture;
pub use gateway::{
    GatewayToml, control, daemon_status, signal, spawn_daemon, spawn_run, stop, stop_within,
    wait_until,
};
pub use krypton_host::DEFAULT_COMPONENT;
pub use krypton_host::ProvisionOptions;
pub use krypton_host::bindings::{
    Failure, ProvisionError, ProvisionReport, ProvisionRequest, Target, TransportError,
    TransportKind,
};
pub use krypton_host::capability::http::{Origin, OutboundPolicy};
pub use krypton_host::capability::store::SecretStore;
pub use krypton_host::engine::{KryptonPre, Runtime};
pub use krypton_host::sandbox::SandboxLimits;
pub use krypton_host_cli::daemon::{Daemon, GatewayConfig};
use krypton_mock::{Fault, MockConfig, MockKrypton};
use serde_json::Value;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

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

/// An allow-list of the mock's origin, trusting its CA.
pub fn policy_for(mock: &MockKrypton) -> OutboundPolicy {
    policy(&mock.endpoint(), Some(mock.ca_pem()))
}

/// An allow-list of `endpoint`'s origin alone, trusting the PEM `ca` when given.
pub fn policy(endpoint: &str, ca: Option<&str>) -> OutboundPolicy {
    OutboundPolicy::new(
        vec![Origin::parse(endpoint).unwrap()],
        ca.map(str::as_bytes),
    )
    .unwrap()
}

/// `req` through the shared runtime under `policy`: the component's failure (error and hint).
/// Panics on a trap or a success.
pub async fn failure(
    policy: OutboundPolicy,
    store: &SecretStore,
    req: &ProvisionRequest,
) -> Failure {
    let (rt, pre) = runtime();
    rt.provision(pre, policy, store.clone(), req)
        .await
        .expect("no trap")
        .expect_err("the run succeeded")
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
    cli(args).run().await.parts()
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
    let run = cli(["export", target, "--format", format])
        .set("--out", text(out))
        .store(store)
        .args(["--krypton-address", "54.250.252.99"])
        .json()
        .run()
        .await;
    (run.code, run.json_or_null(), run.stderr)
}

/// Krypton's error answer: HTTP `status` with a body of `code` and `message`.
pub fn http_error(status: u16, code: &str, message: &str) -> Fault {
    Fault::Status {
        status,
        code: code.into(),
        message: message.into(),
    }
}

/// An Azure IoT bundle holds exactly what the mock issued (`issued`, its CA `ca_pem`): the
/// identifiers, and the certificate, key and root CA with their line ends as stored; the key
/// belongs to the certificate.
pub fn assert_azure_bundle(bundle: &Value, issued: &krypton_mock::Issued, ca_pem: &str) {
    assert_eq!(bundle["target"], "azure-iot");
    assert_eq!(bundle["formatVersion"], 1);
    assert_eq!(bundle["deviceId"], issued.id.as_str());
    assert_eq!(bundle["host"], issued.host.as_str());
    assert_eq!(
        bundle["operationId"],
        issued.operation_id.as_deref().unwrap()
    );
    assert_eq!(
        bundle["certificate"],
        issued.certificate_pem.replace("\r\n", "\n").as_str()
    );
    assert_eq!(
        bundle["privateKey"],
        issued.private_key_pem.replace("\r\n", "\n").as_str()
    );
    assert_eq!(
        bundle["rootCaCertificate"],
        ca_pem.replace("\r\n", "\n").as_str()
    );
    assert_key_matches_cert(
        bundle["privateKey"].as_str().unwrap(),
        bundle["certificate"].as_str().unwrap(),
    );
}

/// An AWS IoT bundle holds exactly what the mock issued (`issued`) for `client_id`: the
/// host, region and certificate, and the private key as sent, which belongs to the certificate.
pub fn assert_aws_iot_bundle(bundle: &Value, issued: &krypton_mock::Issued, client_id: &str) {
    assert_eq!(bundle["target"], "aws-iot");
    assert_eq!(bundle["clientId"], client_id);
    assert_eq!(bundle["host"], issued.host.as_str());
    assert_eq!(bundle["region"], "ap-northeast-1");
    assert_eq!(
        bundle["certificate"],
        issued.certificate_pem.replace("\r\n", "\n").as_str()
    );
    let key = bundle["privateKey"].as_str().unwrap();
    assert_eq!(key, issued.private_key_pem.as_str());
    assert_key_matches_cert(key, bundle["certificate"].as_str().unwrap());
}

/// The Azure IoT calls the mock received, as `METHOD PATH`, and the calls of one
/// registration `op` with the mock's default two `assigning` polls: register, then three polls.
pub fn azure_calls(mock: &MockKrypton, op: &str) -> (Vec<String>, Vec<String>) {
    let calls = mock
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let poll = format!("GET /v1/provisioning/azure/iot/registrations/{op}");
    let expected = vec![
        "POST /v1/provisioning/azure/iot/register".to_string(),
        poll.clone(),
        poll.clone(),
        poll,
    ];
    (calls, expected)
}

/// The field and reason of an [`ProvisionError::InvalidResponse`]; panics on another error.
pub fn invalid(err: ProvisionError) -> (String, String) {
    match err {
        ProvisionError::InvalidResponse(e) => (e.field, e.reason),
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
}

/// The built-in component with a custom section appended: other bytes (a digest of its own
/// per `tag`), the same behaviour.
pub fn variant(tag: u8) -> Vec<u8> {
    let mut bytes = DEFAULT_COMPONENT.to_vec();
    let name = b"krypton-test";
    let payload = [tag; 8];
    bytes.push(0); // custom section id
    bytes.push((1 + name.len() + payload.len()) as u8); // size (LEB128, < 128)
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(&payload);
    bytes
}

/// The hostile test component's bytes (`tests/components/hostile`).
pub fn hostile_wasm() -> Vec<u8> {
    std::fs::read(krypton_test_components::HOSTILE_WASM).unwrap()
}

/// An Ed25519 public key as `trusted_public_key` and `--trusted-public-key` take it (base64).
pub fn public_key_b64(key: &ed25519_dalek::SigningKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes())
}

/// The names in `dir`, sorted (empty when it cannot be read).
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The names in a store directory but its lock file, sorted.
pub fn bundle_files(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|name| name != krypton_host::capability::store::LOCK_FILE)
        .collect()
}
