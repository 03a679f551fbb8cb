//! One test per failure class (issue 3 "HTTP behaviour", "Response validation"): each asserts
//! the error variant and that a bundle stored before the failing run is byte-for-byte unchanged.

use super::support::*;
use krypton_mock::Fault;
use std::time::{Duration, Instant};

const BOOTSTRAP: &str = "/v1/provisioning/aws/iot/bootstrap";

/// A fixture whose store already holds a good `aws-iot` bundle.
struct Scene {
    fx: Fixture,
    before: Vec<u8>,
}

impl std::ops::Deref for Scene {
    type Target = Fixture;

    fn deref(&self) -> &Fixture {
        &self.fx
    }
}

impl Scene {
    async fn new() -> Scene {
        let fx = Fixture::new().await;
        fx.provisioned(Target::AwsIot).await;
        let before = std::fs::read(fx.store.join("aws-iot.json")).unwrap();
        Scene { fx, before }
    }

    /// A forced AWS IoT run, so that the stored bundle is at stake.
    fn forced(&self) -> ProvisionRequest {
        let mut req = self.request(Target::AwsIot);
        req.force = true;
        req
    }

    fn assert_unchanged(&self) {
        let now = std::fs::read(self.store.join("aws-iot.json")).unwrap();
        assert_eq!(now, self.before, "the stored bundle changed");
        assert_eq!(std::fs::read_dir(&self.store).unwrap().count(), 1);
    }

    /// Requests received after the set-up run.
    fn calls(&self) -> usize {
        self.mock.requests().len() - 1
    }

    async fn stop(self) {
        self.fx.stop().await;
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
    s.stop().await;
}

#[tokio::test]
async fn exhausted_retries_say_what_was_tried() {
    let s = Scene::new().await;
    s.mock
        .inject(BOOTSTRAP, http_error(503, "KRY0503", "maintenance"));
    let mut req = s.forced();
    req.retry.max_attempts = 3;
    let ProvisionError::HttpStatus(e) = s.run(&req).await.unwrap_err() else {
        panic!("expected HttpStatus")
    };
    assert_eq!(e.status, 503);
    assert_eq!(e.code.as_deref(), Some("KRY0503"));
    assert_eq!(
        e.request,
        format!("POST {}{BOOTSTRAP} (after 3 attempts)", s.mock.endpoint())
    );
    assert_eq!(s.calls(), 3);
    s.assert_unchanged();
    s.stop().await;
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let s = Scene::new().await;
    s.mock.inject(
        BOOTSTRAP,
        http_error(403, "KRY0403", "SIM not in a Krypton group"),
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
    s.stop().await;
}

#[tokio::test]
async fn a_transient_error_while_polling_azure_is_retried() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    mock.inject_times(
        "/v1/provisioning/azure/iot/registrations/",
        http_error(502, "KRY0502", "DPS unavailable"),
        1,
    );
    let mut req = fx.request(Target::AzureIot);
    req.retry.max_attempts = 2;
    let report = fx.run(&req).await.unwrap();
    assert_eq!(ident(&report, "deviceId"), "440101234567890");
    // register + (502, retried) + 2 x assigning + assigned
    assert_eq!(mock.requests().len(), 5);
    fx.stop().await;
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
        matches!(&err, ProvisionError::Timeout(m) if m == &format!(
            "POST {}{BOOTSTRAP}: no data within the read timeout (300 ms for the first byte, 5000 ms between bytes)",
            s.mock.endpoint()
        )),
        "{err:?}"
    );
    s.assert_unchanged();
    s.stop().await;
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
    s.stop().await;
}

#[tokio::test]
async fn the_operation_deadline_bounds_azure_polling() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    mock.configure(|c| c.assigning_polls = 1_000);
    let mut req = fx.request(Target::AzureIot);
    req.deadline_ms = 1_000;
    req.poll_interval_ms = 100;
    let err = fx.run(&req).await.unwrap_err();
    let ProvisionError::Timeout(m) = err else {
        panic!("expected Timeout, got {err:?}")
    };
    assert!(
        m.contains("was not assigned within the 1000 ms deadline"),
        "{m}"
    );
    assert!(mock.requests().len() <= 11, "polling was not bounded");
    // No bundle: only the registration in flight, which the next run resumes.
    assert_eq!(names(&fx.store), vec!["azure-iot-pending.json"]);
    let registers = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/register"))
        .count();
    assert_eq!(registers, 1);
    fx.stop().await;
}

#[tokio::test]
async fn a_truncated_body_is_a_transport_error() {
    let s = Scene::new().await;
    s.mock.inject(BOOTSTRAP, Fault::TruncateBody);
    let err = s.run(&s.forced()).await.unwrap_err();
    // A connection lost mid-answer, in plain words (no host error text in Debug form).
    let ProvisionError::Transport(e) = &err else {
        panic!("expected Transport, got {err:?}")
    };
    assert_eq!(e.kind, TransportKind::ConnectionLost, "{e:?}");
    let hostport = s.mock.endpoint().replace("https://", "");
    assert_eq!(
        e.message,
        format!(
            "the connection to {hostport} broke before the answer was complete (the answer was \
             cut short)"
        )
    );
    s.assert_unchanged();
    s.stop().await;
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
    let bundle = read_bundle(&s.store, "aws-iot");
    assert_eq!(bundle["privateKey"], issued.private_key_pem.as_str());
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let s = Scene::new().await;
    s.mock.inject(BOOTSTRAP, Fault::Oversized(2 * 1024 * 1024));
    let (field, reason) = invalid(s.run(&s.forced()).await.unwrap_err());
    assert_eq!(field, "body");
    assert_eq!(reason, "response body larger than the 1048576-byte limit");
    s.assert_unchanged();
    s.stop().await;
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
    s.stop().await;
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
    s.stop().await;
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
    s.stop().await;
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
        provision(&s.mock, &other, &s.request(Target::AwsIot))
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
    s.stop().await;
}

#[tokio::test]
async fn connection_failures_are_retried_then_reported() {
    let port = closed_port();
    let s = Scene::new().await;
    let endpoint = format!("https://127.0.0.1:{port}");
    let mut req = request(Target::AwsIot, endpoint.clone());
    req.force = true;
    req.retry.max_attempts = 3;
    let err = failure(
        policy(&endpoint, Some(s.mock.ca_pem())),
        &s.secret_store(),
        &req,
    )
    .await;
    let ProvisionError::Transport(e) = err.error else {
        panic!("expected Transport, got {err:?}")
    };
    assert_eq!(e.kind, TransportKind::ConnectionRefused);
    assert_eq!(e.attempts, 3);
    assert_eq!(e.request, format!("POST {endpoint}{BOOTSTRAP}"));
    assert_eq!(
        e.message,
        format!("127.0.0.1:{port} refused the connection: nothing listens on port {port} there")
    );
    s.assert_unchanged();
    s.stop().await;
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
    assert!(started.elapsed() < Duration::from_secs(25));
    s.assert_unchanged();
    s.stop().await;
}

#[tokio::test]
async fn ipv6_endpoints_and_impossible_ports() {
    let fx = Fixture::around(
        krypton_mock::MockKrypton::start(
            "[::1]:0".parse().unwrap(),
            krypton_mock::MockConfig::default(),
        )
        .await
        .unwrap(),
    );
    assert!(fx.endpoint().starts_with("https://[::1]:"));
    let report = fx.provisioned(Target::Userdata).await;
    assert_eq!(
        report.sizes,
        vec![(
            "bytes".to_string(),
            krypton_mock::CANARY_USERDATA.len() as u64
        )]
    );

    for endpoint in [
        "https://127.0.0.1:99999",
        "https://127.0.0.1:0",
        "https://[::1]:abc",
    ] {
        let run = fx
            .provision("userdata")
            .endpoint(endpoint)
            .store(&fx.path("s2"))
            .json()
            .run()
            .await;
        let (code, out) = (run.code, run.stdout);
        assert_eq!(code, 3, "{endpoint}: {out}");
        assert!(
            out.contains("port must be a number from 1 to 65535"),
            "{out}"
        );
    }
    fx.stop().await;
}

#[tokio::test]
async fn wireguard_config_never_replaces_a_symlink_or_device() {
    let fx = Fixture::new().await;
    fx.provisioned(Target::Arc).await;
    let target = fx.path("elsewhere.conf");
    std::fs::write(&target, b"keep me").unwrap();
    let link = fx.path("link.conf");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for out in [link.to_str().unwrap(), fx.dir().to_str().unwrap()] {
        let (code, _, err) = run_cli(&[
            "wireguard-config",
            "--store",
            fx.store.to_str().unwrap(),
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
    fx.stop().await;
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
    let err = failure(
        policy(&format!("https://127.0.0.1:{port}"), None),
        &s.secret_store(),
        &req,
    )
    .await;
    // No connection (TCP and TLS) within the connect timeout: a transport failure with the
    // Air/Arc advice, retried (the request allows one attempt here).
    let hint = err.hint.clone();
    let ProvisionError::Transport(e) = err.error else {
        panic!("expected Transport, got {err:?}")
    };
    assert_eq!(e.kind, TransportKind::ConnectionTimeout);
    assert_eq!(
        e.message,
        format!("no connection to 127.0.0.1:{port} within the connect timeout (300 ms)")
    );
    assert!(hint.unwrap().contains("SORACOM Arc tunnel"));
    s.assert_unchanged();
    drop(silent);
    s.stop().await;
}

#[tokio::test]
async fn an_interrupted_azure_registration_is_resumed_after_a_restart() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    mock.configure(|c| c.assigning_polls = 3);
    // Run 1 ends (deadline) while DPS is still assigning: a power cut would look the same.
    let mut req = fx.request(Target::AzureIot);
    req.poll_interval_ms = 100;
    req.deadline_ms = 250;
    assert!(matches!(
        fx.run(&req).await,
        Err(ProvisionError::Timeout(_))
    ));
    assert!(fx.store.join("azure-iot-pending.json").exists());
    // Run 2 resumes the stored operation: one register in all, and the bundle is stored.
    req.deadline_ms = 20_000;
    let report = fx.run(&req).await.unwrap();
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
    assert!(!fx.store.join("azure-iot-pending.json").exists());
    fx.stop().await;
}

// Issue 12 item 2: every transport failure says what was tried and what to do, through the
// library and through the binary, field by field.

/// A forced `aws-iot` run against `endpoint` (allowed by the policy, trusting `ca` when
/// given) with up to `attempts` attempts; the transport error it ends with, and its hint.
async fn transport_error(
    endpoint: &str,
    ca: Option<&str>,
    attempts: u32,
) -> (TransportError, Option<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path().join("store")).unwrap();
    let mut req = request(Target::AwsIot, endpoint.to_string());
    req.retry.max_attempts = attempts;
    let err = failure(policy(endpoint, ca), &store, &req).await;
    assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
    match err.error {
        ProvisionError::Transport(e) => (e, err.hint),
        other => panic!("expected Transport, got {other:?}"),
    }
}

/// The same run through the binary: `(exit code, the --json error object, stderr of the
/// text run)`. `extra` adds options (a CA file, attempts).
async fn cli_transport_error(endpoint: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let tmp = tempfile::tempdir().unwrap();
    let command = cli(["provision", "aws-iot"])
        .endpoint(endpoint)
        .store(&tmp.path().join("store"))
        .args(["--backoff-base-ms", "10", "--backoff-max-ms", "20"])
        .args(extra);
    let text = command.run().await;
    let json = command.json().run().await;
    assert_eq!(text.code, json.code, "{}{}", text.stderr, json.stderr);
    (text.code, json.json()["error"].clone(), text.stderr)
}

/// What a run must report: kind, request, message, hint, attempts.
struct Expected {
    kind: TransportKind,
    kind_name: &'static str,
    request: String,
    message: String,
    hint: String,
    attempts: u32,
}

impl Expected {
    fn check(&self, (e, hint): &(TransportError, Option<String>)) {
        assert_eq!(e.kind, self.kind, "{e:?}");
        assert_eq!(e.request, self.request);
        assert_eq!(e.message, self.message);
        assert_eq!(hint.as_deref(), Some(self.hint.as_str()));
        assert_eq!(e.attempts, self.attempts);
        for text in [&e.message, &e.request, &self.hint] {
            assert!(
                !text.contains("ErrorCode") && !text.contains("Payload"),
                "{text}"
            );
        }
    }

    fn check_cli(&self, (code, error, text): &(i32, serde_json::Value, String)) {
        assert_eq!(*code, 4, "{error} {text}");
        assert_eq!(error["kind"], "transport", "{error}");
        assert_eq!(error["transportKind"], self.kind_name, "{error}");
        assert_eq!(error["request"], self.request.as_str());
        assert_eq!(error["message"], self.message.as_str());
        assert_eq!(error["hint"], self.hint.as_str());
        assert_eq!(error["attempts"], self.attempts);
        assert!(text.contains(&self.message), "{text}");
        assert!(text.contains(&format!("hint: {}", self.hint)), "{text}");
        assert!(
            !text.contains("ErrorCode") && !text.contains("Payload") && !text.contains("hyper::"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_name_that_does_not_exist_is_reported_once_not_retried() {
    // `.invalid` never resolves (RFC 6761 §6.4); the resolver answers at once, no network.
    let endpoint = "https://does-not-exist.invalid:8036";
    let expected = Expected {
        kind: TransportKind::NameNotFound,
        kind_name: "name-not-found",
        request: format!("POST {endpoint}{BOOTSTRAP}"),
        message: "the name `does-not-exist.invalid` does not exist (DNS: no such name); nothing \
                  was sent to port 8036"
            .into(),
        hint: "the name does not exist: check the spelling of the endpoint's host \
               `does-not-exist.invalid` (Krypton is krypton.soracom.io)"
            .into(),
        attempts: 1,
    };
    expected.check(&transport_error(endpoint, None, 4).await);
    expected.check_cli(&cli_transport_error(endpoint, &["--max-attempts", "4"]).await);
}

#[tokio::test]
async fn a_closed_port_and_a_missing_port_say_which_port_was_tried() {
    let port = closed_port();
    let endpoint = format!("https://127.0.0.1:{port}");
    let expected = Expected {
        kind: TransportKind::ConnectionRefused,
        kind_name: "connection-refused",
        request: format!("POST {endpoint}{BOOTSTRAP}"),
        message: format!(
            "127.0.0.1:{port} refused the connection: nothing listens on port {port} there"
        ),
        hint: format!(
            "nothing listens on 127.0.0.1:{port}: check the endpoint's host and port (Krypton \
             listens on 8036) and that the server runs"
        ),
        attempts: 2,
    };
    expected.check(&transport_error(&endpoint, None, 2).await);
    expected.check_cli(&cli_transport_error(&endpoint, &["--max-attempts", "2"]).await);

    // No port: 443 was tried (nothing listens there on this machine), and the hint says
    // where Krypton listens.
    let expected = Expected {
        kind: TransportKind::ConnectionRefused,
        kind_name: "connection-refused",
        request: format!("POST https://127.0.0.1:443{BOOTSTRAP}"),
        message: "127.0.0.1:443 refused the connection: nothing listens on port 443 there".into(),
        hint: "the endpoint has no port, so 443 was tried: Krypton listens on 8036, e.g. \
               https://krypton.soracom.io:8036"
            .into(),
        attempts: 1,
    };
    expected.check(&transport_error("https://127.0.0.1", None, 1).await);
    expected.check_cli(&cli_transport_error("https://127.0.0.1", &["--max-attempts", "1"]).await);
}

/// A plain-HTTP server on loopback that answers anything with `400 Bad Request` (as HTTP
/// servers answer a TLS ClientHello); counts the connections it accepted.
pub(crate) async fn plain_http_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_another_protocol_and_not_retried() {
    let (port, accepted) = plain_http_server().await;
    let endpoint = format!("https://127.0.0.1:{port}");
    let expected = Expected {
        kind: TransportKind::ProtocolMismatch,
        kind_name: "protocol-mismatch",
        request: format!("POST {endpoint}{BOOTSTRAP}"),
        message: format!(
            "the server at 127.0.0.1:{port} does not speak HTTPS (it answered in another \
             protocol, such as plain HTTP)"
        ),
        hint: "this server does not speak HTTPS: Krypton speaks HTTPS on port 8036 \
               (https://krypton.soracom.io:8036); check the endpoint's port"
            .into(),
        attempts: 1,
    };
    expected.check(&transport_error(&endpoint, None, 4).await);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    expected.check_cli(&cli_transport_error(&endpoint, &["--max-attempts", "4"]).await);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn http_to_the_tls_mock_is_another_protocol_logged_once_at_debug() {
    let mock = mock().await;
    let endpoint = mock.endpoint().replace("https://", "http://");
    let hostport = endpoint.trim_start_matches("http://").to_string();
    let expected = Expected {
        kind: TransportKind::ProtocolMismatch,
        kind_name: "protocol-mismatch",
        request: format!("POST {endpoint}{BOOTSTRAP}"),
        message: format!(
            "the server at {hostport} does not speak plain HTTP (it answered in another \
             protocol, such as HTTPS)"
        ),
        hint: "this server speaks HTTPS: use https://".into(),
        attempts: 1,
    };
    expected.check(&transport_error(&endpoint, None, 4).await);
    expected.check_cli(&cli_transport_error(&endpoint, &["--max-attempts", "4"]).await);
    assert!(mock.requests().is_empty());
    // With debug logs: one line for the one attempt, no warning, no Debug text.
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = cli(["provision", "aws-iot"])
        .endpoint(&endpoint)
        .store(&tmp.path().join("store"))
        .attempts(4)
        .log("debug")
        .run()
        .await
        .parts();
    assert_eq!(code, 4, "{err}");
    assert_eq!(err.matches("HTTP/1.1 exchange failed").count(), 1, "{err}");
    // The only warning is the one about plain http itself.
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("plain http: credentials would cross the network unencrypted"));
    assert!(
        !err.contains("Parse(Version)") && !err.contains("hyper::Error"),
        "{err}"
    );
    mock.stop().await;
}

#[tokio::test]
async fn an_untrusted_certificate_gets_the_ca_hint_and_is_not_retried() {
    let mock = mock().await;
    let endpoint = mock.endpoint();
    let hostport = endpoint.trim_start_matches("https://").to_string();
    let expected = Expected {
        kind: TransportKind::UntrustedCertificate,
        kind_name: "untrusted-certificate",
        request: format!("POST {endpoint}{BOOTSTRAP}"),
        message: format!(
            "the TLS certificate of {hostport} is not trusted (issued by an unknown CA, \
             expired, or issued for another name)"
        ),
        hint: "the server's certificate is not trusted: for a private or test endpoint, give \
               its CA to the host (the CA file option)"
            .into(),
        attempts: 1,
    };
    expected.check(&transport_error(&endpoint, None, 4).await);
    let cli = cli_transport_error(&endpoint, &["--max-attempts", "4"]).await;
    expected.check_cli(&cli);
    // The host names its own option for "the CA file option", chosen by the typed kind.
    assert!(
        cli.2
            .contains("hint: here that is --ca-file PEM (or `ca_file` in gateway.toml)"),
        "{}",
        cli.2
    );
    assert!(mock.requests().is_empty());
    mock.stop().await;
}

#[tokio::test]
async fn an_endpoint_with_a_path_is_refused_before_any_request() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let endpoint = format!("{}/v1", mock.endpoint());
    let mut req = request(Target::AwsIot, endpoint.clone());
    req.force = true;
    // The library: the component refuses it (the host's allow-list has the base URL).
    let err = fx.run(&req).await.unwrap_err();
    let ProvisionError::InvalidRequest(m) = err else {
        panic!("expected InvalidRequest, got {err:?}")
    };
    assert_eq!(
        m,
        format!(
            "endpoint `{endpoint}`: give the base URL without a path, e.g. \
             https://krypton.soracom.io:8036 (the component adds the path \
             `/v1/provisioning/...` itself)"
        )
    );
    // The binary: refused with the same advice, exit 3.
    let (code, _, err) = fx
        .provision("aws-iot")
        .endpoint(&endpoint)
        .store(&fx.path("s2"))
        .run()
        .await
        .parts();
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("`{endpoint}`: give the base URL without a path")),
        "{err}"
    );
    assert!(
        err.contains("e.g. https://krypton.soracom.io:8036"),
        "{err}"
    );
    assert!(mock.requests().is_empty());
    fx.stop().await;
}
