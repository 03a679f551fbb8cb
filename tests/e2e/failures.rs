//! One test per failure class (issue 3 "HTTP behaviour", "Response validation"): each asserts
//! the error variant and that a bundle stored before the failing run is byte-for-byte unchanged.

use super::support::*;
use krypton_host::mock::{Fault, MockKrypton};
use krypton_host::runtime::{ProvisionError, ProvisionReport, ProvisionRequest, Target};
use krypton_host::store::SecretStore;
use std::time::{Duration, Instant};

const BOOTSTRAP: &str = "/v1/provisioning/aws/iot/bootstrap";

/// A mock, and a store that already holds a good `aws-iot` bundle.
struct Scene {
    mock: MockKrypton,
    store: SecretStore,
    before: Vec<u8>,
    _tmp: tempfile::TempDir,
}

impl Scene {
    async fn new() -> Scene {
        let mock = mock().await;
        let tmp = tempfile::tempdir().unwrap();
        let store = SecretStore::open(tmp.path().join("store")).unwrap();
        provision(&mock, &store, &request(Target::AwsIot, mock.endpoint()))
            .await
            .unwrap();
        let before = std::fs::read(store.dir().join("aws-iot.json")).unwrap();
        Scene {
            mock,
            store,
            before,
            _tmp: tmp,
        }
    }

    /// A forced AWS IoT run, so that the stored bundle is at stake.
    fn forced(&self) -> ProvisionRequest {
        let mut req = request(Target::AwsIot, self.mock.endpoint());
        req.force = true;
        req
    }

    async fn run(&self, req: &ProvisionRequest) -> Result<ProvisionReport, ProvisionError> {
        provision(&self.mock, &self.store, req).await
    }

    fn assert_unchanged(&self) {
        let now = std::fs::read(self.store.dir().join("aws-iot.json")).unwrap();
        assert_eq!(now, self.before, "the stored bundle changed");
        assert_eq!(std::fs::read_dir(self.store.dir()).unwrap().count(), 1);
    }

    /// Requests received after the set-up run.
    fn calls(&self) -> usize {
        self.mock.requests().len() - 1
    }
}

fn invalid(err: ProvisionError) -> (String, String) {
    match err {
        ProvisionError::InvalidResponse(e) => (e.field, e.reason),
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
}

#[tokio::test]
async fn retry_after_is_honoured_then_the_call_succeeds() {
    let s = Scene::new().await;
    s.mock.inject_times(
        BOOTSTRAP,
        Fault::RetryAfter {
            status: 503,
            value: "1".into(),
        },
        1,
    );
    let mut req = s.forced();
    req.retry.max_attempts = 2;
    let started = Instant::now();
    let report = s.run(&req).await.unwrap();
    // The wait is Krypton's (1 s), not the 10 ms backoff: a lower bound, not a speed target.
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(s.calls(), 2);
    assert_eq!(
        report.certificate.unwrap().sha256_fingerprint,
        s.mock.issued()[1].certificate_id
    );
    s.mock.stop().await;
}

#[tokio::test]
async fn exhausted_retries_say_what_was_tried() {
    let s = Scene::new().await;
    s.mock.inject(
        BOOTSTRAP,
        Fault::Status {
            status: 503,
            code: "KRY0503".into(),
            message: "maintenance".into(),
        },
    );
    let mut req = s.forced();
    req.retry.max_attempts = 3;
    let ProvisionError::HttpStatus(e) = s.run(&req).await.unwrap_err() else {
        panic!("expected HttpStatus")
    };
    assert_eq!(e.status, 503);
    assert_eq!(e.code.as_deref(), Some("KRY0503"));
    assert_eq!(e.request, format!("POST {BOOTSTRAP} (after 3 attempts)"));
    assert_eq!(s.calls(), 3);
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let s = Scene::new().await;
    s.mock.inject(
        BOOTSTRAP,
        Fault::Status {
            status: 403,
            code: "KRY0403".into(),
            message: "SIM not in a Krypton group".into(),
        },
    );
    let mut req = s.forced();
    req.retry.max_attempts = 4;
    let ProvisionError::HttpStatus(e) = s.run(&req).await.unwrap_err() else {
        panic!("expected HttpStatus")
    };
    assert_eq!(
        (e.status, e.message.as_deref()),
        (403, Some("SIM not in a Krypton group"))
    );
    assert_eq!(s.calls(), 1);
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn a_transient_error_while_polling_azure_is_retried() {
    let mock = mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path().join("store")).unwrap();
    mock.inject_times(
        "/v1/provisioning/azure/iot/registrations/",
        Fault::Status {
            status: 502,
            code: "KRY0502".into(),
            message: "DPS unavailable".into(),
        },
        1,
    );
    let mut req = request(Target::AzureIot, mock.endpoint());
    req.retry.max_attempts = 2;
    let report = provision(&mock, &store, &req).await.unwrap();
    assert_eq!(ident(&report, "deviceId"), "440101234567890");
    // register + (502, retried) + 2 x assigning + assigned
    assert_eq!(mock.requests().len(), 5);
    mock.stop().await;
}

#[tokio::test]
async fn slow_headers_hit_the_first_byte_timeout() {
    let s = Scene::new().await;
    s.mock
        .inject(BOOTSTRAP, Fault::DelayHeaders(Duration::from_secs(5)));
    let mut req = s.forced();
    req.timeouts.first_byte_ms = 300;
    let err = s.run(&req).await.unwrap_err();
    assert!(
        matches!(&err, ProvisionError::Timeout(m) if m.contains("ConnectionReadTimeout")),
        "{err:?}"
    );
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn a_stalled_body_hits_the_between_bytes_timeout() {
    let s = Scene::new().await;
    s.mock.inject(BOOTSTRAP, Fault::StallBody);
    let mut req = s.forced();
    req.timeouts.between_bytes_ms = 300;
    let err = s.run(&req).await.unwrap_err();
    assert!(
        matches!(&err, ProvisionError::Timeout(m) if m.contains("reading the response body: connection read timeout")),
        "{err:?}"
    );
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn the_operation_deadline_bounds_azure_polling() {
    let mock = mock().await;
    mock.configure(|c| c.assigning_polls = 1_000);
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path().join("store")).unwrap();
    let mut req = request(Target::AzureIot, mock.endpoint());
    req.deadline_ms = 1_000;
    req.poll_interval_ms = 100;
    let err = provision(&mock, &store, &req).await.unwrap_err();
    let ProvisionError::Timeout(m) = err else {
        panic!("expected Timeout, got {err:?}")
    };
    assert!(
        m.contains("was not assigned within the 1000 ms deadline"),
        "{m}"
    );
    assert!(mock.requests().len() <= 11, "polling was not bounded");
    // No bundle: only the registration in flight, which the next run resumes.
    let names: Vec<_> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["azure-iot-pending.json"]);
    let registers = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/register"))
        .count();
    assert_eq!(registers, 1);

    mock.stop().await;
}

#[tokio::test]
async fn a_truncated_body_is_a_transport_error() {
    let s = Scene::new().await;
    s.mock.inject(BOOTSTRAP, Fault::TruncateBody);
    let err = s.run(&s.forced()).await.unwrap_err();
    assert!(matches!(&err, ProvisionError::Transport(_)), "{err:?}");
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn chunked_framing_is_read_to_its_end() {
    let s = Scene::new().await;
    s.mock.inject(BOOTSTRAP, Fault::Chunked);
    let report = s.run(&s.forced()).await.unwrap();
    let issued = &s.mock.issued()[1];
    assert_eq!(
        report.certificate.unwrap().sha256_fingerprint,
        issued.certificate_id
    );
    let bundle = read_bundle(s.store.dir(), "aws-iot");
    assert_eq!(bundle["privateKey"], issued.private_key_pem.as_str());
    s.mock.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let s = Scene::new().await;
    s.mock.inject(BOOTSTRAP, Fault::Oversized(2 * 1024 * 1024));
    let (field, reason) = invalid(s.run(&s.forced()).await.unwrap_err());
    assert_eq!(field, "body");
    assert_eq!(reason, "response body larger than the 1048576-byte limit");
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let s = Scene::new().await;
    s.mock.inject(
        BOOTSTRAP,
        Fault::Redirect("https://collector.example.net/steal".into()),
    );
    let ProvisionError::HttpStatus(e) = s.run(&s.forced()).await.unwrap_err() else {
        panic!("expected HttpStatus")
    };
    assert_eq!(e.status, 307);
    assert!(e.message.unwrap().contains("`collector.example.net`"));
    assert_eq!(s.calls(), 1, "the redirect was followed");
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn wrong_types_and_missing_fields_name_the_field() {
    let s = Scene::new().await;
    for (fault, field, reason) in [
        (
            Fault::WrongType("host".into()),
            "host",
            "expected a string, got a number",
        ),
        (
            Fault::WrongType("privateKey".into()),
            "privateKey",
            "expected a string, got a number",
        ),
        (
            Fault::WrongType("certificate".into()),
            "certificate",
            "expected a string, got a number",
        ),
        (
            Fault::DropField("certificate".into()),
            "certificate",
            "missing",
        ),
        (
            Fault::DropField("privateKey".into()),
            "privateKey",
            "missing",
        ),
    ] {
        s.mock.clear_faults();
        s.mock.inject(BOOTSTRAP, fault);
        assert_eq!(
            invalid(s.run(&s.forced()).await.unwrap_err()),
            (field.to_string(), reason.to_string())
        );
        s.assert_unchanged();
    }
    s.mock.stop().await;
}

#[tokio::test]
async fn bodies_that_are_not_utf8_or_not_json_are_typed() {
    let s = Scene::new().await;
    s.mock.inject(BOOTSTRAP, Fault::NonUtf8);
    let (field, reason) = invalid(s.run(&s.forced()).await.unwrap_err());
    assert_eq!(field, "body");
    assert!(reason.starts_with("not UTF-8"), "{reason}");
    s.mock.clear_faults();
    s.mock.inject(BOOTSTRAP, Fault::MalformedJson);
    let (field, reason) = invalid(s.run(&s.forced()).await.unwrap_err());
    assert_eq!(field, "body");
    assert!(reason.starts_with("not JSON"), "{reason}");
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn a_key_that_does_not_match_is_refused() {
    let s = Scene::new().await;
    // A well-formed answer whose key belongs to another certificate (the first run's).
    let first = s.mock.issued()[0].clone();
    let second_cert = {
        // Provision once more to get a second certificate, then restore the first bundle.
        let tmp = tempfile::tempdir().unwrap();
        let other = SecretStore::open(tmp.path().join("store")).unwrap();
        provision(&s.mock, &other, &request(Target::AwsIot, s.mock.endpoint()))
            .await
            .unwrap();
        s.mock.issued()[1].certificate_pem.clone()
    };
    s.mock.inject(
        BOOTSTRAP,
        Fault::Body(serde_json::json!({
            "region": "ap-northeast-1", "host": first.host, "clientId": first.id,
            "certificate": second_cert, "privateKey": first.private_key_pem,
        })),
    );
    let (field, reason) = invalid(s.run(&s.forced()).await.unwrap_err());
    assert_eq!(field, "privateKey");
    assert_eq!(
        reason,
        "the private key does not match the certificate's public key"
    );
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn connection_failures_are_retried_then_reported() {
    let port = closed_port();
    let s = Scene::new().await;
    let endpoint = format!("https://127.0.0.1:{port}");
    let mut req = request(Target::AwsIot, endpoint.clone());
    req.force = true;
    req.retry.max_attempts = 3;
    let (rt, pre) = runtime();
    let policy = krypton_host::http::OutboundPolicy::new(
        vec![krypton_host::http::Origin::parse(&endpoint).unwrap()],
        Some(s.mock.ca_pem().as_bytes()),
    )
    .unwrap();
    let err = rt
        .provision(pre, policy, s.store.clone(), &req)
        .await
        .unwrap()
        .unwrap_err();
    let ProvisionError::Transport(e) = err else {
        panic!("expected Transport, got {err:?}")
    };
    let m = e.message;
    assert!(
        m.contains("ConnectionRefused") && m.ends_with("(after 3 attempts)"),
        "{m}"
    );
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn a_trickling_body_cannot_outlast_the_operation_deadline() {
    let s = Scene::new().await;
    // ~1600 bytes at one byte per 20 ms would take ~30 s; no single gap trips a timeout.
    s.mock
        .inject(BOOTSTRAP, Fault::Trickle(Duration::from_millis(20)));
    let mut req = s.forced();
    req.deadline_ms = 1_500;
    req.timeouts.between_bytes_ms = 1_000;
    let started = Instant::now();
    let err = s.run(&req).await.unwrap_err();
    assert!(
        matches!(&err, ProvisionError::Timeout(m) if m.contains("deadline passed while the body was still arriving")),
        "{err:?}"
    );
    // Bounded by the deadline, not by the server (an upper bound on a failure, not a speed target).
    assert!(started.elapsed() < Duration::from_secs(10));
    s.assert_unchanged();
    s.mock.stop().await;
}

#[tokio::test]
async fn ipv6_endpoints_and_impossible_ports() {
    let mock = krypton_host::mock::MockKrypton::start(
        "[::1]:0".parse().unwrap(),
        krypton_host::mock::MockConfig::default(),
    )
    .await
    .unwrap();
    assert!(mock.endpoint().starts_with("https://[::1]:"));
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path().join("store")).unwrap();
    let report = provision(&mock, &store, &request(Target::Userdata, mock.endpoint()))
        .await
        .unwrap();
    assert_eq!(
        ident(&report, "bytes"),
        krypton_host::mock::CANARY_USERDATA.len().to_string()
    );

    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, mock.ca_pem()).unwrap();
    for endpoint in [
        "https://127.0.0.1:99999",
        "https://127.0.0.1:0",
        "https://[::1]:abc",
    ] {
        let (code, out, _) = run_cli(&[
            "provision",
            "userdata",
            "--endpoint",
            endpoint,
            "--ca-file",
            ca.to_str().unwrap(),
            "--store",
            tmp.path().join("s2").to_str().unwrap(),
            "--json",
        ])
        .await;
        assert_eq!(code, 3, "{endpoint}: {out}");
        assert!(
            out.contains("port must be a number from 1 to 65535"),
            "{out}"
        );
    }
    mock.stop().await;
}

#[tokio::test]
async fn wireguard_config_never_replaces_a_symlink_or_device() {
    let mock = mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let store = SecretStore::open(&store_dir).unwrap();
    provision(&mock, &store, &request(Target::Arc, mock.endpoint()))
        .await
        .unwrap();
    let target = tmp.path().join("elsewhere.conf");
    std::fs::write(&target, b"keep me").unwrap();
    let link = tmp.path().join("link.conf");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for out in [link.to_str().unwrap(), tmp.path().to_str().unwrap()] {
        let (code, _, err) = run_cli(&[
            "wireguard-config",
            "--store",
            store_dir.to_str().unwrap(),
            "--out",
            out,
            "--krypton-address",
            "192.0.2.1",
        ])
        .await;
        assert_eq!(code, 9, "{out}: {err}");
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    mock.stop().await;
}

#[tokio::test]
async fn a_server_that_never_answers_the_handshake_hits_the_connect_timeout() {
    // The kernel completes the TCP handshake from the backlog; nothing ever speaks TLS.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let s = Scene::new().await;
    let mut req = request(Target::AwsIot, format!("https://127.0.0.1:{port}"));
    req.force = true;
    req.timeouts.connect_ms = 300;
    let (rt, pre) = runtime();
    let policy = krypton_host::http::OutboundPolicy::new(
        vec![krypton_host::http::Origin::parse(&format!("https://127.0.0.1:{port}")).unwrap()],
        None,
    )
    .unwrap();
    let err = rt
        .provision(pre, policy, s.store.clone(), &req)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, ProvisionError::Timeout(m) if m.contains("ConnectionTimeout")),
        "{err:?}"
    );
    s.assert_unchanged();
    drop(silent);
    s.mock.stop().await;
}

#[tokio::test]
async fn an_interrupted_azure_registration_is_resumed_after_a_restart() {
    let mock = mock().await;
    mock.configure(|c| c.assigning_polls = 3);
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path().join("store")).unwrap();
    // Run 1 ends (deadline) while DPS is still assigning: a power cut would look the same.
    let mut req = request(Target::AzureIot, mock.endpoint());
    req.poll_interval_ms = 100;
    req.deadline_ms = 250;
    assert!(matches!(
        provision(&mock, &store, &req).await,
        Err(ProvisionError::Timeout(_))
    ));
    assert!(store.dir().join("azure-iot-pending.json").exists());
    // Run 2 resumes the stored operation: one register in all, and the bundle is stored.
    req.deadline_ms = 20_000;
    let report = provision(&mock, &store, &req).await.unwrap();
    let registers: Vec<_> = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/register"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(registers.len(), 1, "registered again instead of resuming");
    assert_eq!(
        ident(&report, "operationId"),
        mock.issued()[0].operation_id.as_deref().unwrap()
    );
    assert!(!store.dir().join("azure-iot-pending.json").exists());
    mock.stop().await;
}
