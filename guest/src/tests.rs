//! Native unit tests of the flows with scripted HTTP responses, a fake clock and an in-memory store.

use crate::client::*;
use crate::formats::{render_export, wireguard_config};
use crate::ops::store::{STORE_PROBE_BYTES, load};
use crate::ops::{operation, provision, status};
use crate::types::bundle::Bundle;
use crate::types::model::*;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};

const EC_CRT: &str = include_str!("../testdata/ec.crt");
const EC_SEC1: &str = include_str!("../testdata/ec-sec1.key");
const OTHER_EC: &str = include_str!("../testdata/other-ec-sec1.key");
const ROOT_CRT: &str = include_str!("../testdata/root.crt");

#[derive(Default)]
struct Fake {
    responses: VecDeque<Result<HttpResponse, SendFailure>>,
    random: u64,
    requests: Vec<(String, String, Option<String>, Timeouts)>,
    now_ms: u64,
    slept: Vec<u64>,
    store: BTreeMap<String, Vec<u8>>,
    logs: Vec<String>,
    /// Store names whose `get` / `put` / `delete` fail like a broken store (`*`: all).
    fail_get: Vec<&'static str>,
    fail_put: Vec<&'static str>,
    fail_delete: Vec<&'static str>,
    /// Every store call, in order: `get NAME`, `put NAME`, `delete NAME`.
    store_calls: Vec<String>,
}

fn fails(list: &[&str], name: &str) -> bool {
    list.iter().any(|n| *n == "*" || *n == name)
}

impl Fake {
    fn reply(mut self, status: u16, body: serde_json::Value) -> Self {
        self.responses.push_back(Ok(HttpResponse {
            status,
            headers: vec![],
            body: body.to_string().into_bytes(),
        }));
        self
    }
    fn reply_raw(mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Self {
        self.responses.push_back(Ok(HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }));
        self
    }
}

impl Capabilities for Fake {
    fn send(
        &mut self,
        endpoint: &Endpoint,
        request: &HttpRequest,
        timeouts: Timeouts,
        _total_ms: u64,
        _max: usize,
    ) -> Result<HttpResponse, SendFailure> {
        assert_eq!(endpoint.authority, "krypton.example:8036");
        self.requests.push((
            request.method.as_str().to_string(),
            request.path.clone(),
            request
                .body
                .as_ref()
                .map(|b| String::from_utf8(b.clone()).unwrap()),
            timeouts,
        ));
        self.now_ms += 10;
        self.responses.pop_front().expect("a scripted response")
    }
    fn monotonic_ms(&self) -> u64 {
        self.now_ms
    }
    fn unix_ms(&self) -> u64 {
        1_800_000_000_000 + self.now_ms
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.slept.push(ms);
        self.now_ms += ms;
    }
    fn random_u64(&mut self) -> u64 {
        self.random
    }
    fn log(&mut self, line: &str) {
        self.logs.push(line.to_string());
    }
    fn store_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.store_calls.push(format!("get {name}"));
        if fails(&self.fail_get, name) {
            return Err(Error::Storage(format!(
                "reading /store/{name}.json failed: Input/output error"
            )));
        }
        Ok(self.store.get(name).cloned())
    }
    fn store_put(&mut self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.store_calls.push(format!("put {name}"));
        if fails(&self.fail_put, name) {
            return Err(Error::Storage(format!(
                "writing /store/.{name}.json.tmp failed: No space left on device"
            )));
        }
        self.store.insert(name.to_string(), value.to_vec());
        Ok(())
    }
    fn store_delete(&mut self, name: &str) -> Result<bool, Error> {
        self.store_calls.push(format!("delete {name}"));
        if fails(&self.fail_delete, name) {
            return Err(Error::Storage(format!(
                "removing /store/{name}.json failed: Read-only file system"
            )));
        }
        Ok(self.store.remove(name).is_some())
    }
}

fn request(target: Target) -> ProvisionRequest {
    ProvisionRequest {
        target,
        mode: AuthMode::Network,
        endpoint: "https://krypton.example:8036".into(),
        request_parameters: None,
        force: false,
        deadline_ms: 60_000,
        poll_interval_ms: 1000,
        timeouts: Timeouts {
            connect_ms: 10_000,
            first_byte_ms: 30_000,
            between_bytes_ms: 30_000,
        },
        retry: RetryPolicy {
            max_attempts: 1,
            base_delay_ms: 500,
            max_delay_ms: 8_000,
        },
    }
}

fn assigned() -> serde_json::Value {
    json!({"operationId": "4.op-1", "status": "assigned", "deviceId": "dev-440101234567890",
           "host": "hub-1.azure-devices.net", "certificate": EC_CRT, "privateKey": EC_SEC1,
           "rootCaCertificate": ROOT_CRT, "unknownField": 42})
}

fn identifiers(r: &Report) -> Vec<(&str, &str)> {
    r.identifiers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn azure_registers_polls_and_stores_one_bundle() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply_raw(
            200,
            &[("retry-after", "3")],
            br#"{"operationId":"4.op-1","status":"assigning"}"#,
        )
        .reply(200, assigned());
    let report = provision(&mut fake, &request(Target::AzureIot)).unwrap();

    let calls: Vec<_> = fake
        .requests
        .iter()
        .map(|(m, p, b, _)| (m.as_str(), p.as_str(), b.as_deref()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("POST", "/v1/provisioning/azure/iot/register", Some("{}")),
            (
                "GET",
                "/v1/provisioning/azure/iot/registrations/4.op-1",
                None
            ),
            (
                "GET",
                "/v1/provisioning/azure/iot/registrations/4.op-1",
                None
            ),
        ]
    );
    // 1 s poll interval, then Krypton's Retry-After of 3 s.
    assert_eq!(fake.slept, vec![1000, 3000]);
    assert_eq!(
        identifiers(&report),
        vec![
            ("deviceId", "dev-440101234567890"),
            ("host", "hub-1.azure-devices.net"),
            ("operationId", "4.op-1")
        ]
    );
    assert!(!report.reused);
    assert_eq!(report.bundle, "azure-iot");
    let Bundle::AzureIot(b) = Bundle::from_bytes("azure-iot", &fake.store["azure-iot"]).unwrap()
    else {
        panic!("wrong bundle type")
    };
    assert_eq!(b.device_id, "dev-440101234567890");
    assert_eq!(b.host, "hub-1.azure-devices.net");
    assert_eq!(b.certificate, EC_CRT);
    assert_eq!(b.private_key.expose(), EC_SEC1);
    assert_eq!(b.root_ca_certificate.as_deref(), Some(ROOT_CRT));
    assert_eq!(b.obtained_at_ms, 1_800_000_000_000 + fake.now_ms);
    // Logs name calls and outcomes, never key material.
    let logs = fake.logs.join("\n");
    assert!(
        logs.contains(
            "POST https://krypton.example:8036/v1/provisioning/azure/iot/register -> 200"
        ),
        "{logs}"
    );
    assert!(!logs.contains("PRIVATE KEY"));
}

#[test]
fn azure_failed_status_is_typed_and_stores_nothing() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-2", "status": "assigning"}))
        .reply(200, json!({"operationId": "4.op-2", "status": "failed"}));
    let err = provision(&mut fake, &request(Target::AzureIot)).unwrap_err();
    assert_eq!(
        err,
        Error::RegistrationFailed {
            operation_id: "4.op-2".into(),
            status: "failed".into()
        }
    );
    assert!(fake.store.is_empty());
}

#[test]
fn azure_polling_is_bounded_by_the_deadline() {
    let mut fake =
        Fake::default().reply(200, json!({"operationId": "4.op-3", "status": "assigning"}));
    for _ in 0..10 {
        fake = fake.reply(200, json!({"operationId": "4.op-3", "status": "assigning"}));
    }
    let mut req = request(Target::AzureIot);
    req.deadline_ms = 3_500;
    let err = provision(&mut fake, &req).unwrap_err();
    let Error::Timeout(msg) = err else {
        panic!("expected a timeout, got {err:?}")
    };
    assert!(
        msg.contains("4.op-3") && msg.contains("3500 ms") && msg.contains("3 polls"),
        "{msg}"
    );
    // No bundle; only the registration in flight, to be resumed by the next run.
    assert_eq!(
        fake.store.keys().collect::<Vec<_>>(),
        vec!["azure-iot-pending"]
    );
    // Each request's timeouts were clamped to what was left of the deadline.
    assert!(fake.requests.iter().all(|r| r.3.first_byte_ms <= 3_500));
}

#[test]
fn http_error_keeps_code_message_and_existing_bundle() {
    let mut fake = Fake::default().reply(200, assigned()).reply(
        500,
        json!({"code": "KRY0001", "message": "upstream cloud failure"}),
    );
    // A bundle is already stored (written by a previous run).
    fake.responses.push_front(Ok(HttpResponse {
        status: 200,
        headers: vec![],
        body: br#"{"operationId":"4.op-1","status":"assigning"}"#.to_vec(),
    }));
    provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let before = fake.store.clone();

    let mut req = request(Target::AzureIot);
    req.force = true;
    let err = provision(&mut fake, &req).unwrap_err();
    assert_eq!(
        err,
        Error::HttpStatus {
            status: 500,
            code: Some("KRY0001".into()),
            message: Some("upstream cloud failure".into()),
            body_excerpt: r#"{"code":"KRY0001","message":"upstream cloud failure"}"#.into(),
            request: "POST https://krypton.example:8036/v1/provisioning/azure/iot/register".into(),
        }
    );
    assert_eq!(fake.store, before);
}

#[test]
fn a_valid_stored_bundle_is_reused_without_force() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, assigned());
    let first = provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let calls = fake.requests.len();
    let again = provision(&mut fake, &request(Target::AzureIot)).unwrap();
    assert_eq!(fake.requests.len(), calls, "Krypton was called again");
    assert!(again.reused);
    assert_eq!(again.identifiers, first.identifiers);
    assert_eq!(again.certificate, first.certificate);
    assert_eq!(status(&mut fake, Target::AzureIot).unwrap(), Some(again));
    assert_eq!(status(&mut fake, Target::AwsIot).unwrap(), None);
}

#[test]
fn aws_iot_bootstrap_sends_parameters_and_stores_fields() {
    let mut fake = Fake::default().reply(
        200,
        json!({"region": "ap-northeast-1", "host": "abc-ats.iot.ap-northeast-1.amazonaws.com",
               "clientId": "thing-440101234567890", "certificate": EC_CRT.replace('\n', "\r\n"),
               "privateKey": EC_SEC1, "rootCaCertificate": ROOT_CRT}),
    );
    let mut req = request(Target::AwsIot);
    req.request_parameters = Some(r#"{"thingName":"gw-1","custom":[1,2]}"#.into());
    let report = provision(&mut fake, &req).unwrap();
    assert_eq!(fake.requests[0].0, "POST");
    assert_eq!(fake.requests[0].1, "/v1/provisioning/aws/iot/bootstrap");
    assert_eq!(
        fake.requests[0].2.as_deref(),
        Some(r#"{"requestParameters":{"custom":[1,2],"thingName":"gw-1"}}"#)
    );
    assert_eq!(
        identifiers(&report),
        vec![
            ("clientId", "thing-440101234567890"),
            ("host", "abc-ats.iot.ap-northeast-1.amazonaws.com"),
            ("region", "ap-northeast-1")
        ]
    );
    let Bundle::AwsIot(b) = Bundle::from_bytes("aws-iot", &fake.store["aws-iot"]).unwrap() else {
        panic!("wrong bundle type")
    };
    assert_eq!(b.certificate, EC_CRT, "stored with LF line endings");
    assert_eq!(b.private_key.expose(), EC_SEC1);
}

#[test]
fn invalid_responses_name_the_field_and_store_nothing() {
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (
            json!({"region": "ap-northeast-1", "host": "h.example", "clientId": "c", "privateKey": EC_SEC1}),
            "certificate",
            "missing",
        ),
        (
            json!({"region": "ap-northeast-1", "host": "h.example", "clientId": 7, "certificate": EC_CRT, "privateKey": EC_SEC1}),
            "clientId",
            "expected a string, got a number",
        ),
        (
            json!({"region": "ap-northeast-1", "host": "h.example", "clientId": "c", "certificate": EC_CRT, "privateKey": OTHER_EC}),
            "privateKey",
            "the private key does not match the certificate's public key",
        ),
        (
            json!({"region": "ap-northeast-1", "host": "h.example", "clientId": "c", "certificate": EC_CRT, "privateKey": ""}),
            "privateKey",
            "empty",
        ),
        (
            json!([1, 2]),
            "body",
            "expected a JSON object, got an array",
        ),
    ];
    for (body, field, reason) in cases {
        let mut fake = Fake::default().reply(200, body);
        let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
        assert_eq!(err, Error::invalid(field, reason));
        assert!(fake.store.is_empty());
    }
    let mut fake = Fake::default().reply_raw(200, &[], b"{\"region\": ");
    let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { field, reason, .. } if field == "body" && reason.starts_with("not JSON")),
        "{err:?}"
    );
    let mut fake = Fake::default().reply_raw(200, &[], b"\xff\xfe");
    let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { field, reason, .. } if field == "body" && reason.starts_with("not UTF-8")),
        "{err:?}"
    );
}

#[test]
fn redirects_are_refused_and_name_the_target_host() {
    let mut fake =
        Fake::default().reply_raw(307, &[("location", "https://evil.example/steal")], b"");
    let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
    let Error::HttpStatus {
        status, message, ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(status, 307);
    assert!(message.unwrap().contains("`evil.example`"));
    assert_eq!(fake.requests.len(), 1);
}

#[test]
fn bad_requests_are_refused_before_any_call() {
    for (endpoint, params, expect) in [
        ("krypton.example:8036", None, "missing scheme"),
        ("ftp://krypton.example", None, "scheme `ftp`"),
        (
            "https://krypton.example:8036",
            Some("[1]"),
            "must be a JSON object",
        ),
        ("https://krypton.example:8036", Some("{"), "not JSON"),
    ] {
        let mut fake = Fake::default();
        let mut req = request(Target::AwsIot);
        req.endpoint = endpoint.into();
        req.request_parameters = params.map(str::to_string);
        let err = provision(&mut fake, &req).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRequest(m) if m.contains(expect)),
            "{err:?}"
        );
        assert!(fake.requests.is_empty());
    }
    let mut req = request(Target::AzureIot);
    req.mode = AuthMode::Sim;
    assert!(matches!(
        provision(&mut Fake::default(), &req).unwrap_err(),
        Error::Unsupported(_)
    ));
}

#[test]
fn operation_id_must_be_safe_in_a_path() {
    let mut fake = Fake::default().reply(
        200,
        json!({"operationId": "../../aws/iot/bootstrap", "status": "assigning"}),
    );
    let err = provision(&mut fake, &request(Target::AzureIot)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { field, .. } if field == "operationId"),
        "{err:?}"
    );
    assert_eq!(fake.requests.len(), 1);
}

#[test]
fn error_excerpt_is_bounded_and_utf8_safe() {
    let body = "é".repeat(400); // 800 bytes
    let Error::HttpStatus {
        body_excerpt, code, ..
    } = http_status_error(502, body.as_bytes(), "POST /x".into())
    else {
        panic!()
    };
    assert_eq!(body_excerpt.len(), 512);
    assert_eq!(body_excerpt, "é".repeat(256));
    assert_eq!(code, None);
}

#[test]
fn endpoint_keeps_the_explicit_port_and_knows_the_default_one() {
    let e = Endpoint::parse("https://krypton.soracom.io:8036/").unwrap();
    assert_eq!(e.authority, "krypton.soracom.io:8036");
    assert_eq!(
        (e.host.as_str(), e.port, e.port_given),
        ("krypton.soracom.io", 8036, true)
    );
    assert_eq!(
        e.request_line(Method::Post, "/v1/provisioning/aws/iot/bootstrap"),
        "POST https://krypton.soracom.io:8036/v1/provisioning/aws/iot/bootstrap"
    );
    // No port: the scheme's is what is connected to, and the request line says so.
    let e = Endpoint::parse("https://krypton.soracom.io").unwrap();
    assert_eq!((e.port, e.port_given), (443, false));
    assert_eq!(
        e.request_line(Method::Get, "/x"),
        "GET https://krypton.soracom.io:443/x"
    );
    let e = Endpoint::parse("http://[::1]:9").unwrap();
    assert_eq!(
        (e.scheme.as_str(), e.host.as_str(), e.port),
        ("http", "::1", 9)
    );
    assert_eq!(e.host_port(), "[::1]:9");
    let e = Endpoint::parse("http://127.0.0.1").unwrap();
    assert_eq!((e.port, e.port_given), (80, false));
}

#[test]
fn an_endpoint_with_a_path_is_refused_naming_it() {
    // It used to be kept as a prefix: `https://h/v1` requested `/v1/v1/provisioning/...`.
    for url in [
        "https://krypton.soracom.io:8036/v1",
        "https://krypton.soracom.io/v1/",
        "http://127.0.0.1:9/prefix/",
    ] {
        let Err(Error::InvalidRequest(m)) = Endpoint::parse(url) else {
            panic!("{url} was accepted")
        };
        assert_eq!(
            m,
            format!(
                "endpoint `{url}`: give the base URL without a path, e.g. \
                 https://krypton.soracom.io:8036 (the component adds the path \
                 `/v1/provisioning/...` itself)"
            )
        );
    }
    let mut fake = Fake::default();
    let mut req = request(Target::AwsIot);
    req.endpoint = "https://krypton.example:8036/v1".into();
    assert!(matches!(
        provision(&mut fake, &req),
        Err(Error::InvalidRequest(_))
    ));
    assert!(fake.requests.is_empty());
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, assigned());
    provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let bundle = Bundle::from_bytes("azure-iot", &fake.store["azure-iot"]).unwrap();
    let debug = format!("{bundle:?}");
    assert!(debug.contains("Secret(<redacted>)"));
    assert!(!debug.contains("PRIVATE KEY"));
}

fn with_retries(target: Target, attempts: u32) -> ProvisionRequest {
    let mut req = request(target);
    req.retry.max_attempts = attempts;
    req
}

fn endpoint() -> Endpoint {
    Endpoint::parse("https://krypton.example:8036").unwrap()
}

const BOOTSTRAP_LINE: &str = "POST https://krypton.example:8036/v1/provisioning/aws/iot/bootstrap";

fn failure(kind: TransportKind) -> TransportError {
    transport_failure(kind, &endpoint(), BOOTSTRAP_LINE.to_string(), None)
}

fn send_failed(kind: TransportKind) -> Result<HttpResponse, SendFailure> {
    Err(SendFailure {
        error: Error::Transport(failure(kind)),
        transient: crate::client::transient(kind),
    })
}

fn aws_ok() -> serde_json::Value {
    json!({"region": "ap-northeast-1", "host": "abc-ats.iot.ap-northeast-1.amazonaws.com",
           "clientId": "thing-1", "certificate": EC_CRT, "privateKey": EC_SEC1})
}

#[test]
fn transient_failures_are_retried_with_jittered_backoff() {
    let mut fake = Fake {
        random: 123_456,
        ..Fake::default()
    };
    fake.responses
        .push_back(send_failed(TransportKind::ConnectionRefused));
    let mut fake = fake
        .reply(503, json!({"code": "KRY503", "message": "busy"}))
        .reply(200, aws_ok());
    provision(&mut fake, &with_retries(Target::AwsIot, 4)).unwrap();
    assert_eq!(fake.requests.len(), 3);
    // Full jitter: random % (min(max, base * 2^n) + 1) with base 500 ms, max 8 s.
    assert_eq!(fake.slept, vec![123_456 % 501, 123_456 % 1001]);
    assert!(fake.store.contains_key("aws-iot"));
}

#[test]
fn retry_after_is_honoured_in_seconds_and_as_an_http_date() {
    // 1_800_000_000_000 ms = Fri, 15 Jan 2027 08:00:00 GMT; the fake clock adds 10 ms per call.
    let mut fake = Fake::default()
        .reply_raw(429, &[("retry-after", "7")], b"")
        .reply_raw(
            503,
            &[("retry-after", "Fri, 15 Jan 2027 08:00:30 GMT")],
            b"",
        )
        .reply_raw(503, &[("retry-after", "soon")], b"")
        .reply_raw(503, &[("retry-after", "86400")], b"")
        .reply(200, aws_ok());
    fake.random = 99;
    let mut req = with_retries(Target::AwsIot, 5);
    req.deadline_ms = 3_600_000;
    provision(&mut fake, &req).unwrap();
    assert_eq!(fake.slept[0], 7_000);
    // The date is 30 s after the fake clock's start; 20 ms and 7 s have passed since.
    assert_eq!(fake.slept[1], 30_000 - 7_000 - 20);
    // A malformed value falls back to backoff (99 % (2000 + 1)).
    assert_eq!(fake.slept[2], 99);
    // One day is capped at 300 s.
    assert_eq!(fake.slept[3], MAX_RETRY_AFTER_MS);
}

#[test]
fn the_final_error_says_what_was_tried() {
    let mut fake = Fake::default();
    for _ in 0..3 {
        fake = fake.reply(502, json!({"code": "KRY502", "message": "upstream"}));
    }
    let err = provision(&mut fake, &with_retries(Target::AwsIot, 3)).unwrap_err();
    let Error::HttpStatus {
        status,
        request,
        code,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(status, 502);
    assert_eq!(code.as_deref(), Some("KRY502"));
    assert_eq!(request, format!("{BOOTSTRAP_LINE} (after 3 attempts)"));
    assert_eq!(fake.requests.len(), 3);

    let mut fake = Fake::default();
    for _ in 0..2 {
        fake.responses
            .push_back(send_failed(TransportKind::ConnectionRefused));
    }
    let err = provision(&mut fake, &with_retries(Target::AwsIot, 2)).unwrap_err();
    let Error::Transport(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.kind, TransportKind::ConnectionRefused);
    assert_eq!(e.request, BOOTSTRAP_LINE);
    assert_eq!(e.attempts, 2);
    assert_eq!(
        e.message,
        "krypton.example:8036 refused the connection: nothing listens on port 8036 there"
    );
}

#[test]
fn client_errors_and_permanent_failures_are_not_retried() {
    let mut fake = Fake::default().reply(400, json!({"code": "KRY400", "message": "bad"}));
    assert!(matches!(
        provision(&mut fake, &with_retries(Target::AwsIot, 5)).unwrap_err(),
        Error::HttpStatus { status: 400, .. }
    ));
    assert_eq!(fake.requests.len(), 1);
    let mut fake = Fake::default();
    fake.responses
        .push_back(send_failed(TransportKind::UntrustedCertificate));
    assert_eq!(
        provision(&mut fake, &with_retries(Target::AwsIot, 5)).unwrap_err(),
        Error::Transport(failure(TransportKind::UntrustedCertificate))
    );
    assert!(fake.slept.is_empty());
    // A name that does not exist and another protocol are not retried either; a resolver
    // failure, a refused or lost connection, a connect timeout and no route may be.
    for kind in [
        TransportKind::NameNotFound,
        TransportKind::ProtocolMismatch,
        TransportKind::TlsFailure,
        TransportKind::Denied,
    ] {
        let mut fake = Fake::default();
        fake.responses.push_back(send_failed(kind));
        let err = provision(&mut fake, &with_retries(Target::AwsIot, 5)).unwrap_err();
        assert!(
            matches!(&err, Error::Transport(e) if e.kind == kind && e.attempts == 1),
            "{err:?}"
        );
        assert_eq!(fake.requests.len(), 1, "{kind:?}");
    }
    for kind in [
        TransportKind::NameResolutionFailed,
        TransportKind::ConnectionRefused,
        TransportKind::ConnectionTimeout,
        TransportKind::Unreachable,
        TransportKind::ConnectionLost,
    ] {
        let mut fake = Fake::default();
        fake.responses.push_back(send_failed(kind));
        fake = fake.reply(200, aws_ok());
        provision(&mut fake, &with_retries(Target::AwsIot, 5)).unwrap();
        assert_eq!(fake.requests.len(), 2, "{kind:?}");
    }
}

#[test]
fn retries_stop_at_the_deadline() {
    let mut fake = Fake::default()
        .reply_raw(503, &[("retry-after", "60")], b"")
        .reply(200, aws_ok());
    let mut req = with_retries(Target::AwsIot, 5);
    req.deadline_ms = 30_000;
    let err = provision(&mut fake, &req).unwrap_err();
    assert!(
        matches!(err, Error::HttpStatus { status: 503, .. }),
        "{err:?}"
    );
    assert!(fake.slept.is_empty());
    assert!(
        fake.logs
            .iter()
            .any(|l| l.contains("would pass the operation deadline"))
    );
}

/// An AWS IoT certificate ID: 64 hex digits.
const CERT_ID: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";
const CERT_PATH: &str = "/v1/provisioning/aws/iot/certificates/ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";
/// A Cognito identity ID (`region:uuid`).
const OPENID_ID: &str = "ap-northeast-1:00000000-0000-4000-8000-000000000001";

#[test]
fn aws_split_flow_fetches_certificate_and_root_ca_then_stores_once() {
    let mut fake = Fake::default()
        .reply(
            200,
            json!({"privateKey": EC_SEC1, "host": "abc-ats.iot.eu-west-1.amazonaws.com",
                           "thingName": "gw-9", "certificateId": CERT_ID}),
        )
        .reply(200, json!({"certificate": EC_CRT}))
        .reply(200, json!({"rootCaCertificate": ROOT_CRT}));
    let mut req = request(Target::AwsIot);
    req.request_parameters = Some(r#"{"skipCertificates":"true","thingName":""}"#.into());
    let report = provision(&mut fake, &req).unwrap();
    let calls: Vec<_> = fake
        .requests
        .iter()
        .map(|r| (r.1.as_str(), r.2.as_deref()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "/v1/provisioning/aws/iot/bootstrap",
                Some(r#"{"requestParameters":{"skipCertificates":true}}"#)
            ),
            (CERT_PATH, Some("{}")),
            ("/v1/provisioning/aws/iot/ca_certificate", Some("{}")),
        ]
    );
    assert_eq!(
        identifiers(&report),
        vec![
            ("clientId", "gw-9"),
            ("host", "abc-ats.iot.eu-west-1.amazonaws.com"),
            ("region", "eu-west-1"),
            ("certificateId", CERT_ID)
        ]
    );
    let Bundle::AwsIot(b) = Bundle::from_bytes("aws-iot", &fake.store["aws-iot"]).unwrap() else {
        panic!()
    };
    assert_eq!(b.root_ca_certificate.as_deref(), Some(ROOT_CRT));
    assert_eq!(b.certificate, EC_CRT);

    // The CA call fails: nothing is stored.
    let mut fake = Fake::default()
        .reply(200, json!({"privateKey": EC_SEC1, "host": "h.iot.eu-west-1.amazonaws.com", "clientId": "c", "certificateId": CERT_ID}))
        .reply(200, json!({"certificate": EC_CRT}))
        .reply(500, json!({"code": "KRY500", "message": "x"}));
    req.request_parameters = Some(r#"{"skipCertificates":true}"#.into());
    assert!(provision(&mut fake, &req).is_err());
    assert!(fake.store.is_empty());
}

#[test]
fn thing_name_is_validated_locally() {
    for bad in [
        r#"{"thingName":"has space"}"#,
        r#"{"thingName":"é"}"#,
        r#"{"thingName":7}"#,
    ] {
        let mut req = request(Target::AwsIot);
        req.request_parameters = Some(bad.into());
        let mut fake = Fake::default();
        assert!(
            matches!(provision(&mut fake, &req), Err(Error::InvalidRequest(_))),
            "{bad}"
        );
        assert!(fake.requests.is_empty());
    }
    let long = format!(r#"{{"thingName":"{}"}}"#, "a".repeat(129));
    let mut req = request(Target::AwsIot);
    req.request_parameters = Some(long);
    assert!(matches!(
        provision(&mut Fake::default(), &req),
        Err(Error::InvalidRequest(_))
    ));
    // The client ID falls back to the requested thing name.
    let mut fake = Fake::default().reply(
        200,
        json!({"region": "ap-northeast-1", "host": "h.example", "certificate": EC_CRT, "privateKey": EC_SEC1}),
    );
    req.request_parameters = Some(format!(
        r#"{{"thingName":"{}","x":1}}"#,
        "a:b_c-D".repeat(2)
    ));
    let report = provision(&mut fake, &req).unwrap();
    assert_eq!(identifiers(&report)[0], ("clientId", "a:b_c-Da:b_c-D"));
    assert_eq!(
        fake.requests[0].2.as_deref(),
        Some(r#"{"requestParameters":{"thingName":"a:b_c-Da:b_c-D","x":1}}"#)
    );
}

#[test]
fn cognito_expiration_accepts_ms_seconds_and_iso_as_the_same_instant() {
    use crate::ops::cognito::parse_expiration;
    let instant = 1_800_000_000_000u64; // 2027-01-15T08:00:00Z
    assert_eq!(
        parse_expiration(Some(&json!(1_800_000_000_000u64))),
        Ok(instant)
    );
    assert_eq!(
        parse_expiration(Some(&json!(1_800_000_000u64))),
        Ok(instant)
    );
    assert_eq!(
        parse_expiration(Some(&json!("2027-01-15T08:00:00Z"))),
        Ok(instant)
    );
    assert_eq!(
        parse_expiration(Some(&json!("2027-01-15T17:00:00+09:00"))),
        Ok(instant)
    );
    assert_eq!(
        parse_expiration(Some(&json!("2027-01-15T08:00:00.250Z"))),
        Ok(instant + 250)
    );
    for bad in [
        json!(0),
        json!(-5),
        json!(1.5),
        json!("tomorrow"),
        json!("1800000000"),
        json!(true),
        json!({}),
    ] {
        let err = parse_expiration(Some(&bad)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidResponse { field, .. } if field == "credentials.expiration"),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(
        parse_expiration(None),
        Err(Error::invalid("credentials.expiration", "missing"))
    );
}

#[test]
fn cognito_credentials_are_stored_and_refreshed_before_expiry() {
    let now_s = 1_800_000_000u64;
    let creds = |exp: u64| {
        json!({"identityId": "ap-northeast-1:abcd", "region": "ap-northeast-1",
        "credentials": {"accessKeyId": "ASIAEXAMPLE00001", "secretKey": "CANARY-secret", "sessionToken": "CANARY-token", "expiration": exp}})
    };
    let mut fake = Fake::default()
        .reply(200, creds(now_s + 3600))
        .reply(200, creds(now_s + 7200));
    let report = provision(&mut fake, &request(Target::AwsCognito)).unwrap();
    assert_eq!(
        fake.requests[0].1,
        "/v1/provisioning/aws/cognito/credentials"
    );
    assert_eq!(
        identifiers(&report),
        vec![
            ("identityId", "ap-northeast-1:abcd"),
            ("accessKeyId", "ASIAEXAMPLE00001"),
            ("region", "ap-northeast-1"),
            ("expiration", "2027-01-15T09:00:00Z")
        ]
    );
    let Bundle::AwsCognito(b) =
        Bundle::from_bytes("aws-cognito", &fake.store["aws-cognito"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(b.secret_key.expose(), "CANARY-secret");
    assert_eq!(b.session_token.expose(), "CANARY-token");
    assert_eq!(b.expiration_ms, (now_s + 3600) * 1000);
    // Valid for an hour: reused.
    assert!(
        provision(&mut fake, &request(Target::AwsCognito))
            .unwrap()
            .reused
    );
    // Four minutes before expiry: refreshed.
    fake.now_ms += 56 * 60 * 1000;
    let fresh = provision(&mut fake, &request(Target::AwsCognito)).unwrap();
    assert!(!fresh.reused);
    assert_eq!(fake.requests.len(), 2);
    // A nested field error names its path.
    let mut fake = Fake::default().reply(
        200,
        json!({"identityId": "x", "credentials": {"accessKeyId": "ASIAEXAMPLE00001", "secretKey": 5}}),
    );
    assert_eq!(
        provision(&mut fake, &request(Target::AwsCognito)).unwrap_err(),
        Error::invalid("credentials.secretKey", "expected a string, got a number")
    );
}

#[test]
fn openid_token_metadata_and_userdata() {
    let mut fake = Fake::default().reply(
        200,
        json!({"region": "ap-northeast-1", "token": "CANARY-openid", "identityId": OPENID_ID}),
    );
    let report = provision(&mut fake, &request(Target::AwsCognitoOpenid)).unwrap();
    assert_eq!(
        fake.requests[0].1,
        "/v1/provisioning/aws/cognito/open_id_tokens"
    );
    assert_eq!(
        identifiers(&report),
        vec![("identityId", OPENID_ID), ("region", "ap-northeast-1")]
    );

    let metadata = json!({"imsi": "440101234567890", "groupId": "g-1", "tags": {"name": "gw"}, "speedClass": "s1.fast"});
    let mut fake = Fake::default().reply(200, metadata.clone());
    let report = provision(&mut fake, &request(Target::SubscriberMetadata)).unwrap();
    assert_eq!(
        fake.requests[0].1,
        "/v1/provisioning/soracom/air/subscriber_metadata"
    );
    assert_eq!(
        identifiers(&report),
        vec![("imsi", "440101234567890"), ("groupId", "g-1"),]
    );
    assert_eq!(report.sizes, vec![("fields".to_string(), 4)]);
    let Bundle::SubscriberMetadata(b) =
        Bundle::from_bytes("m", &fake.store["subscriber-metadata"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(serde_json::Value::Object(b.metadata), metadata);

    let mut fake =
        Fake::default().reply_raw(200, &[("content-type", "text/plain")], b"my-bucket\nline 2");
    let report = provision(&mut fake, &request(Target::Userdata)).unwrap();
    assert_eq!(fake.requests[0].1, "/v1/provisioning/soracom/air/userdata");
    assert!(identifiers(&report).is_empty());
    assert_eq!(report.sizes, vec![("bytes".to_string(), 16)]);
    let Bundle::Userdata(b) = Bundle::from_bytes("u", &fake.store["userdata"]).unwrap() else {
        panic!()
    };
    assert_eq!(b.userdata.expose(), "my-bucket\nline 2");
    // Always fetched again: userdata changes with the group's configuration.
    let mut fake2 = Fake {
        store: fake.store.clone(),
        ..Fake::default()
    }
    .reply_raw(200, &[], b"v2");
    assert!(
        !provision(&mut fake2, &request(Target::Userdata))
            .unwrap()
            .reused
    );
}

#[test]
fn inventory_needs_an_endpoint_and_an_application_key() {
    let mut req = request(Target::Inventory);
    assert!(
        matches!(provision(&mut Fake::default(), &req), Err(Error::InvalidRequest(m)) if m.contains("endpoint"))
    );
    req.request_parameters = Some(r#"{"endpoint":"gw-0042"}"#.into());
    let mut fake = Fake::default().reply(
        200,
        json!({"serverUri": "coaps://jp.inventory.soracom.io:5684",
        "pskId": "d-0123456789abcdefghij", "applicationKey": "gvFdTTvSWsNoTX/kjBNRKQ=="}),
    );
    let report = provision(&mut fake, &req).unwrap();
    assert_eq!(
        fake.requests[0].2.as_deref(),
        Some(r#"{"endpoint":"gw-0042","requestParameters":{"endpoint":"gw-0042"}}"#)
    );
    assert_eq!(
        identifiers(&report),
        vec![
            ("endpoint", "gw-0042"),
            ("serverUri", "coaps://jp.inventory.soracom.io:5684"),
            ("pskId", "d-0123456789abcdefghij")
        ]
    );
    for (body, field, reason) in [
        (
            json!({"serverUri": "coaps://x:5684", "pskId": "d-1", "nonce": "AAECAwQFBgcICQoLDA0ODw==", "timestamp": "1700000000123"}),
            "applicationKey",
            "missing: Krypton sent nonce/timestamp, which only SIM-authenticated mode can turn into a key",
        ),
        (
            json!({"serverUri": "coaps://x:5684", "pskId": "d-1", "applicationKey": "AAAA"}),
            "applicationKey",
            "expected 16 bytes, got 3",
        ),
        (
            json!({"serverUri": "x", "pskId": "d-1", "applicationKey": "gvFdTTvSWsNoTX/kjBNRKQ=="}),
            "serverUri",
            "not a URI (expected e.g. coaps://host:5684)",
        ),
    ] {
        let mut fake = Fake::default().reply(200, body);
        assert_eq!(
            provision(&mut fake, &req).unwrap_err(),
            Error::invalid(field, reason)
        );
    }
}

#[test]
fn inventory_key_derivation_matches_the_reference_vector() {
    // The derivation of SORACOM's clients (Go `calculateInventoryApplicationKey`, Java
    // `EndorseAPI.calculateApplicationKey`): nonce AAECAwQFBgcICQoLDA0ODw==, timestamp
    // 1700000000123, CK 00..0f.
    let ck: Vec<u8> = (0u8..16).collect();
    assert_eq!(
        crate::ops::inventory::inventory_application_key(
            "AAECAwQFBgcICQoLDA0ODw==",
            "1700000000123",
            &ck
        )
        .unwrap(),
        "gvFdTTvSWsNoTX/kjBNRKQ=="
    );
}

const WG_PRIV: &str = "Q0FOQVJZLXdpcmVndWFyZC1wcml2YXRlLWtleS0zMmI="; // 32 bytes
const WG_PUB: &str = "c2VydmVyLXB1YmxpYy1rZXktb2YtMzItYnl0ZXMhISE=";

fn arc_body(endpoint: &str) -> serde_json::Value {
    json!({"arcClientPeerPrivateKey": WG_PRIV, "arcClientPeerIpAddress": "10.123.45.6",
           "arcServerPeerPublicKey": WG_PUB, "arcServerEndpoint": endpoint,
           "arcAllowedIPs": ["100.127.0.0/16", "54.250.252.67/32"]})
}

#[test]
fn arc_fields_are_validated_and_the_endpoint_text_kept() {
    for (endpoint, stored) in [
        ("beck.arc.soracom.io:11010", "beck.arc.soracom.io:11010"),
        ("beck.arc.soracom.io", "beck.arc.soracom.io:11010"),
        ("[2001:db8::1]:5555", "[2001:db8::1]:5555"),
    ] {
        let mut fake = Fake::default().reply(200, arc_body(endpoint));
        let report = provision(&mut fake, &request(Target::Arc)).unwrap();
        assert_eq!(fake.requests[0].1, "/v1/provisioning/soracom/arc/bootstrap");
        assert_eq!(identifiers(&report)[1], ("arcServerEndpoint", stored));
    }
    let cases = [
        (
            "arcClientPeerPrivateKey",
            json!("tooshort"),
            "not a WireGuard key (44 characters of base64, 32 bytes)",
        ),
        (
            "arcServerPeerPublicKey",
            json!(42),
            "expected a string, got a number",
        ),
        (
            "arcClientPeerIpAddress",
            json!("10.0.0.300"),
            "not an IPv4 or IPv6 address",
        ),
        (
            "arcServerEndpoint",
            json!("host:99999"),
            "expected host:port, e.g. xxx.arc.soracom.io:11010: the port is not a number from 1 to 65535 (RFC 3986 §3.2.3)",
        ),
        (
            "arcAllowedIPs",
            json!(["100.127.0.0/16", "100.127.0.0/40"]),
            "entry 2 is not a CIDR such as 100.127.0.0/16",
        ),
        ("arcAllowedIPs", json!([]), "empty"),
    ];
    for (field, value, reason) in cases {
        let mut body = arc_body("x:1");
        body[field] = value;
        let mut fake = Fake::default().reply(200, body);
        assert_eq!(
            provision(&mut fake, &request(Target::Arc)).unwrap_err(),
            Error::invalid(field, reason)
        );
        assert!(fake.store.is_empty());
    }
}

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
fn a_moved_device_replaces_hub_id_certificate_and_key_together() {
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, assigned());
    provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let rsa_crt = include_str!("../testdata/rsa.crt");
    let rsa_key = include_str!("../testdata/rsa-pkcs1.key");
    let moved = json!({"operationId": "4.op-2", "status": "assigned", "deviceId": "dev-moved",
        "host": "hub-2.azure-devices.net", "certificate": rsa_crt, "privateKey": rsa_key});
    let mut fake = Fake {
        store: fake.store,
        ..Fake::default()
    }
    .reply(200, json!({"operationId": "4.op-2", "status": "assigning"}))
    .reply(200, moved);
    let mut req = request(Target::AzureIot);
    req.force = true;
    provision(&mut fake, &req).unwrap();
    let Bundle::AzureIot(b) = Bundle::from_bytes("azure-iot", &fake.store["azure-iot"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (
            b.device_id.as_str(),
            b.host.as_str(),
            b.operation_id.as_str()
        ),
        ("dev-moved", "hub-2.azure-devices.net", "4.op-2")
    );
    assert_eq!(b.certificate, rsa_crt);
    assert_eq!(b.private_key.expose(), rsa_key);
    assert_eq!(
        b.root_ca_certificate, None,
        "the old root CA must not survive the swap"
    );
}

#[test]
fn stored_bundles_of_another_target_or_a_newer_format_are_not_replaced_silently() {
    let mut fake = Fake::default().reply(200, aws_ok());
    provision(&mut fake, &request(Target::AwsIot)).unwrap();
    let aws = fake.store["aws-iot"].clone();
    // An aws-iot bundle under the azure-iot name.
    fake.store.insert("azure-iot".into(), aws.clone());
    let err = status(&mut fake, Target::AzureIot).unwrap_err();
    assert_eq!(
        err,
        Error::Storage("stored bundle `azure-iot` holds a `aws-iot` bundle".into())
    );
    // A newer format: provision refuses without force and stores nothing.
    let newer = String::from_utf8(aws)
        .unwrap()
        .replace("\"formatVersion\": 1", "\"formatVersion\": 2");
    fake.store
        .insert("aws-iot".into(), newer.clone().into_bytes());
    let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
    assert!(
        matches!(&err, Error::Storage(m) if m.contains("format version 2") && m.contains("unless the request sets force")),
        "{err:?}"
    );
    assert_eq!(fake.store["aws-iot"], newer.into_bytes());
    assert_eq!(fake.requests.len(), 1);
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
fn endpoints_with_an_impossible_port_are_refused() {
    for url in [
        "https://127.0.0.1:99999",
        "https://127.0.0.1:0",
        "https://h:65536",
    ] {
        assert!(
            matches!(Endpoint::parse(url), Err(Error::InvalidRequest(m)) if m.contains("port")),
            "{url}"
        );
    }
    let long = format!("https://{}", "a".repeat(5000));
    let Err(Error::InvalidRequest(m)) = Endpoint::parse(&format!("{long}?q")) else {
        panic!()
    };
    assert!(m.len() < 200, "{m}");
}

fn export_names(files: &[crate::types::model::ExportFile]) -> Vec<(&str, bool)> {
    files.iter().map(|f| (f.name.as_str(), f.secret)).collect()
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
fn an_interrupted_azure_registration_is_resumed_not_repeated() {
    // Run 1: registered, then the deadline passes while DPS is still assigning.
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-7", "status": "assigning"}))
        .reply(200, json!({"operationId": "4.op-7", "status": "assigning"}));
    let mut req = request(Target::AzureIot);
    req.deadline_ms = 1_500;
    assert!(
        matches!(provision(&mut fake, &req), Err(Error::Timeout(m)) if m.contains("the next run resumes it"))
    );
    assert!(fake.store.contains_key("azure-iot-pending"));
    assert!(!fake.store.contains_key("azure-iot"));

    // Run 2 (after a restart): no second register; polls 4.op-7 until assigned.
    let mut assigned_7 = assigned();
    assigned_7["operationId"] = json!("4.op-7");
    let mut fake = Fake {
        store: fake.store,
        now_ms: fake.now_ms,
        ..Fake::default()
    }
    .reply(200, assigned_7);
    let report = provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let paths: Vec<_> = fake.requests.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        paths,
        vec!["/v1/provisioning/azure/iot/registrations/4.op-7"]
    );
    assert_eq!(identifiers(&report)[2], ("operationId", "4.op-7"));
    assert!(
        !fake.store.contains_key("azure-iot-pending"),
        "a finished registration is forgotten"
    );

    // A stored registration Krypton no longer knows: registered anew.
    let mut fake = Fake::default()
        .reply(
            404,
            json!({"code": "KRY0404", "message": "unknown operationId"}),
        )
        .reply(200, json!({"operationId": "4.op-8", "status": "assigning"}))
        .reply(200, assigned());
    fake.store.insert(
        "azure-iot-pending".into(),
        format!(
            r#"{{"operationId":"4.gone","startedAtMs":{}}}"#,
            1_800_000_000_000u64
        )
        .into_bytes(),
    );
    provision(&mut fake, &request(Target::AzureIot)).unwrap();
    let paths: Vec<_> = fake.requests.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/v1/provisioning/azure/iot/registrations/4.gone",
            "/v1/provisioning/azure/iot/register",
            "/v1/provisioning/azure/iot/registrations/4.op-8"
        ]
    );

    // A failed registration is forgotten too.
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-9", "status": "assigning"}))
        .reply(200, json!({"operationId": "4.op-9", "status": "failed"}));
    assert!(provision(&mut fake, &request(Target::AzureIot)).is_err());
    assert!(fake.store.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Issue 7 item 5: no credential minted without a place to keep it.

const ALL_TARGETS: [Target; 8] = [
    Target::AzureIot,
    Target::AwsIot,
    Target::AwsCognito,
    Target::AwsCognitoOpenid,
    Target::Inventory,
    Target::Arc,
    Target::SubscriberMetadata,
    Target::Userdata,
];

/// A request that passes `plan` for every target (Inventory needs its endpoint name).
fn request_for(target: Target, force: bool) -> ProvisionRequest {
    let mut req = request(target);
    if target == Target::Inventory {
        req.request_parameters = Some(r#"{"endpoint":"gw-0042"}"#.into());
    }
    req.force = force;
    req
}

#[test]
fn a_store_that_cannot_be_read_stops_every_target_before_krypton_with_and_without_force() {
    for target in ALL_TARGETS {
        for force in [false, true] {
            let mut fake = Fake {
                fail_get: vec!["*"],
                ..Fake::default()
            };
            let err = provision(&mut fake, &request_for(target, force)).unwrap_err();
            assert_eq!(
                err,
                Error::Storage(format!(
                    "reading /store/{}.json failed: Input/output error",
                    target.bundle_name()
                )),
                "{target:?} force={force}"
            );
            assert!(
                fake.requests.is_empty(),
                "{target:?} force={force}: Krypton was called"
            );
            assert_eq!(
                fake.store_calls,
                vec![format!("get {}", target.bundle_name())]
            );
        }
    }
}

#[test]
fn an_unreadable_pending_registration_stops_azure_before_krypton() {
    for force in [false, true] {
        let mut fake = Fake {
            fail_get: vec![crate::ops::azure::AZURE_PENDING],
            ..Fake::default()
        };
        let err = provision(&mut fake, &request_for(Target::AzureIot, force)).unwrap_err();
        assert_eq!(
            err,
            Error::Storage(
                "reading /store/azure-iot-pending.json failed: Input/output error".into()
            )
        );
        assert!(fake.requests.is_empty());
        assert!(fake.store.is_empty());
    }
}

#[test]
fn minting_targets_prove_the_store_takes_a_bundle_before_krypton() {
    for target in [
        Target::AwsIot,
        Target::Arc,
        Target::Inventory,
        Target::AzureIot,
    ] {
        for force in [false, true] {
            // The store reads, but cannot write (full, read-only) or cannot delete.
            for (fail_put, fail_delete, detail) in [
                (
                    vec!["*"],
                    vec![],
                    "writing /store/.store-probe.json.tmp failed: No space left on device",
                ),
                (
                    vec![],
                    vec!["*"],
                    "removing /store/store-probe.json failed: Read-only file system",
                ),
            ] {
                let mut fake = Fake {
                    fail_put,
                    fail_delete,
                    ..Fake::default()
                };
                let err = provision(&mut fake, &request_for(target, force)).unwrap_err();
                assert_eq!(
                    err,
                    Error::Storage(format!(
                        "the store cannot take a new bundle ({detail}); Krypton was not called, \
                         so no credential was issued. Fix the store (space, permissions, files \
                         in the way) and run again"
                    )),
                    "{target:?} force={force}"
                );
                assert!(fake.requests.is_empty(), "{target:?}: Krypton was called");
            }
        }
    }
    // A store that works: the probe is written at full size, removed, then Krypton is called.
    let mut fake = Fake::default().reply(200, aws_ok());
    provision(&mut fake, &request(Target::AwsIot)).unwrap();
    assert_eq!(
        fake.store_calls,
        vec![
            "get aws-iot",
            "put store-probe",
            "delete store-probe",
            "put aws-iot"
        ]
    );
    assert_eq!(fake.store.keys().collect::<Vec<_>>(), vec!["aws-iot"]);
    assert_eq!(STORE_PROBE_BYTES, 16 * 1024);
}

#[test]
fn targets_that_mint_nothing_do_not_probe() {
    let mut fake = Fake::default().reply(200, json!({"imsi": "440101234567890"}));
    provision(&mut fake, &request(Target::SubscriberMetadata)).unwrap();
    assert_eq!(
        fake.store_calls,
        vec!["get subscriber-metadata", "put subscriber-metadata"]
    );
    assert!(!operation(Target::AwsCognito).probe_store);
    assert!(operation(Target::AwsIot).probe_store);
}

#[test]
fn unusable_content_is_never_reused_and_replaced_only_when_forced() {
    // Not JSON, another target's bundle, a value that breaks its rule: never reused; without
    // force the run stops before Krypton (nothing minted), with force it is replaced.
    let mut good = Fake::default().reply(200, aws_ok());
    provision(&mut good, &request(Target::AwsIot)).unwrap();
    let stored = String::from_utf8(good.store["aws-iot"].clone()).unwrap();
    for content in [
        "not json".to_string(),
        stored.replace("\"thing-1\"", "\"$thing\""),
        stored.replace(
            "\"abc-ats.iot.ap-northeast-1.amazonaws.com\"",
            "\"https://evil.example/\"",
        ),
    ] {
        let mut fake = Fake::default().reply(200, aws_ok());
        fake.store
            .insert("aws-iot".into(), content.clone().into_bytes());
        let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
        // The error `status` gives for the same bundle: storage when it cannot be read at all,
        // invalid-response naming the field when a value breaks its rule.
        let message = match &err {
            Error::Storage(m) => m.clone(),
            Error::InvalidResponse { reason, .. } => reason.clone(),
            other => panic!("expected Storage or InvalidResponse, got {other:?}"),
        };
        assert!(
            message.contains("it is kept as it is: provision"),
            "{message}"
        );
        assert!(message.contains("force to replace it"), "{message}");
        assert_eq!(
            std::mem::discriminant(&err),
            std::mem::discriminant(&status(&mut fake, Target::AwsIot).unwrap_err()),
            "provision and status disagree"
        );
        assert_eq!(fake.requests.len(), 0, "Krypton was called");
        assert_eq!(
            fake.store["aws-iot"],
            content.as_bytes(),
            "the bundle changed"
        );

        let mut forced = request(Target::AwsIot);
        forced.force = true;
        let report = provision(&mut fake, &forced).unwrap();
        assert!(!report.reused);
        assert_eq!(fake.requests.len(), 1);
        assert_eq!(fake.store["aws-iot"].len(), good.store["aws-iot"].len());
        assert!(
            fake.logs
                .iter()
                .any(|l| l.ends_with("; replacing it (forced)")),
            "{:?}",
            fake.logs
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 7 item 10: a device that moved is said so, field by field.

#[test]
fn a_moved_azure_device_is_logged_once_and_reported_field_by_field() {
    let cases = [
        (
            "hub-2.azure-devices.net",
            "dev-440101234567890",
            vec![("previousHost", "hub-1.azure-devices.net")],
            Some(
                "azure-iot: the device moved: IoT Hub `hub-1.azure-devices.net` -> \
                 `hub-2.azure-devices.net`",
            ),
        ),
        (
            "hub-1.azure-devices.net",
            "dev-renamed",
            vec![("previousDeviceId", "dev-440101234567890")],
            Some("azure-iot: the device moved: device ID `dev-440101234567890` -> `dev-renamed`"),
        ),
        (
            "hub-2.azure-devices.net",
            "dev-renamed",
            vec![
                ("previousHost", "hub-1.azure-devices.net"),
                ("previousDeviceId", "dev-440101234567890"),
            ],
            Some(
                "azure-iot: the device moved: IoT Hub `hub-1.azure-devices.net` -> \
                 `hub-2.azure-devices.net`, device ID `dev-440101234567890` -> `dev-renamed`",
            ),
        ),
        (
            "hub-1.azure-devices.net",
            "dev-440101234567890",
            vec![],
            None,
        ),
    ];
    for (host, device_id, previous, line) in cases {
        let mut first = Fake::default()
            .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
            .reply(200, assigned());
        provision(&mut first, &request(Target::AzureIot)).unwrap();
        let mut again = assigned();
        again["host"] = json!(host);
        again["deviceId"] = json!(device_id);
        let mut fake = Fake {
            store: first.store,
            ..Fake::default()
        }
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, again);
        let report = provision(&mut fake, &request_for(Target::AzureIot, true)).unwrap();
        let mut expected = vec![
            ("deviceId", device_id),
            ("host", host),
            ("operationId", "4.op-1"),
        ];
        expected.extend(previous);
        assert_eq!(identifiers(&report), expected);
        let moved: Vec<&String> = fake.logs.iter().filter(|l| l.contains("moved")).collect();
        assert_eq!(moved, line.map(str::to_string).iter().collect::<Vec<_>>());
        // No secret in the line.
        assert!(!fake.logs.join("\n").contains("PRIVATE KEY"));
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 7 item 1: hostile values in every rendered field of every format.

/// The hostile values of issue 7, by name: line breaks, CR, quotes, `=`, `#`, `[`, NUL,
/// non-ASCII and a 10 KB string; plus, per field, the field's good value with a `wg-quick`
/// section glued after a line break (the issue's first sample).
fn hostile_values(good: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("LF", "a\nb".to_string()),
        ("CR", "a\rb".to_string()),
        ("double quote", "a\"b".to_string()),
        ("single quote", "a'b".to_string()),
        ("equals", "a=b".to_string()),
        ("hash", "a#b".to_string()),
        ("bracket", "a[b".to_string()),
        ("NUL", "a\0b".to_string()),
        ("non-ASCII", "caf\u{e9}".to_string()),
        ("10 KB", "x".repeat(10 * 1024)),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    v.push((
        "good value then a section".into(),
        format!("{good}\n[Interface]\nPostUp=id\n[Peer]\nEndpoint=b.example:11010"),
    ));
    v
}

/// A fake whose store holds a good bundle of `target`, provisioned through the real flow.
fn provisioned(target: Target) -> Fake {
    let mut fake = match target {
        Target::AzureIot => Fake::default()
            .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
            .reply(200, assigned()),
        Target::AwsIot => Fake::default().reply(
            200,
            json!({"region": "ap-northeast-1", "host": "abc-ats.iot.ap-northeast-1.amazonaws.com",
                   "clientId": "thing-1", "certificate": EC_CRT, "privateKey": EC_SEC1,
                   "rootCaCertificate": ROOT_CRT}),
        ),
        Target::AwsCognito => Fake::default().reply(
            200,
            json!({"identityId": OPENID_ID, "region": "ap-northeast-1",
                   "credentials": {"accessKeyId": "ASIAEXAMPLE00001", "secretKey": "s3cr3t/Key+1",
                                   "sessionToken": "t0ken/2+==", "expiration": 1_900_000_000u64}}),
        ),
        Target::Arc => Fake::default().reply(200, arc_body("beck.arc.soracom.io:11010")),
        other => panic!("no fixture for {other:?}"),
    };
    provision(&mut fake, &request(target)).unwrap();
    fake.requests.clear();
    fake
}

/// Store `value` in `field` of the stored bundle of `target` (an edit on disk). For
/// `arcAllowedIPs` the value replaces the first entry.
fn tamper(fake: &mut Fake, target: Target, field: &str, value: &str) {
    let name = target.bundle_name();
    let mut bundle: serde_json::Value = serde_json::from_slice(&fake.store[name]).unwrap();
    if field == "arcAllowedIPs" {
        bundle[field][0] = json!(value);
    } else {
        bundle[field] = json!(value);
    }
    fake.store
        .insert(name.into(), serde_json::to_vec(&bundle).unwrap());
}

fn stored_bundle(fake: &Fake, target: Target) -> serde_json::Value {
    serde_json::from_slice(&fake.store[target.bundle_name()]).unwrap()
}

/// The refusal every format must give for a value it cannot write: `invalid-response`
/// naming `field`, saying it is the stored bundle, never echoing the value.
fn assert_refused(err: &Error, target: Target, field: &str, case: &str) {
    match err {
        Error::InvalidResponse {
            field: f, reason, ..
        } => {
            assert_eq!(f, field, "{case}: {reason}");
            assert!(
                reason.starts_with(&format!("stored bundle `{}`: ", target.bundle_name())),
                "{case}: {reason}"
            );
            for marker in ["PostUp", "caf\u{e9}", "xxxxxxxx", "a\nb"] {
                assert!(
                    !reason.contains(marker),
                    "{case}: the reason echoes the value"
                );
            }
        }
        other => panic!("{case}: expected invalid-response on `{field}`, got {other:?}"),
    }
}

fn text(file: &crate::types::model::ExportFile) -> String {
    String::from_utf8(file.contents.clone()).unwrap()
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

fn clean_copy(fake: &Fake) -> Fake {
    Fake {
        store: fake.store.clone(),
        ..Fake::default()
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

#[test]
fn reports_refuse_every_hostile_stored_identifier() {
    let mut accepted = Vec::new();
    for (target, fields) in [
        (
            Target::AzureIot,
            vec![
                ("deviceId", "dev-440101234567890"),
                ("host", "hub-1.azure-devices.net"),
                ("operationId", "4.op-1"),
            ],
        ),
        (
            Target::AwsIot,
            vec![
                ("clientId", "thing-1"),
                ("host", "abc-ats.iot.ap-northeast-1.amazonaws.com"),
                ("region", "ap-northeast-1"),
            ],
        ),
        (
            Target::AwsCognito,
            vec![
                ("identityId", OPENID_ID),
                ("accessKeyId", "ASIAEXAMPLE00001"),
                ("region", "ap-northeast-1"),
            ],
        ),
        (
            Target::Arc,
            vec![
                ("arcClientPeerIpAddress", "10.123.45.6"),
                ("arcServerEndpoint", "beck.arc.soracom.io:11010"),
                ("arcServerPeerPublicKey", WG_PUB),
                ("arcAllowedIPs", "100.127.0.0/16"),
            ],
        ),
    ] {
        let clean = provisioned(target);
        for (field, good) in fields {
            for (name, value) in hostile_values(good) {
                let case = format!("{target:?} {field} {name}");
                let mut fake = clean_copy(&clean);
                tamper(&mut fake, target, field, &value);
                match status(&mut fake, target) {
                    Err(e) => assert_refused(&e, target, field, &case),
                    Ok(Some(report)) => {
                        // Only an AWS IoT client ID or an IoT Hub device ID may hold some of
                        // these; the report carries the value exactly.
                        assert!(
                            [(Target::AwsIot, "clientId"), (Target::AzureIot, "deviceId")]
                                .contains(&(target, field)),
                            "{case}"
                        );
                        assert_eq!(identifiers(&report)[0], (field, value.as_str()));
                        accepted.push(case);
                    }
                    Ok(None) => panic!("{case}: nothing stored?"),
                }
            }
        }
    }
    assert_eq!(
        accepted,
        vec![
            "AzureIot deviceId single quote",
            "AzureIot deviceId equals",
            "AzureIot deviceId hash",
            "AwsIot clientId double quote",
            "AwsIot clientId single quote",
            "AwsIot clientId equals",
            "AwsIot clientId hash",
            "AwsIot clientId bracket",
            "AwsIot clientId non-ASCII",
        ]
    );
}

#[test]
fn hostile_values_from_krypton_are_refused_naming_the_field_and_nothing_is_stored() {
    // The issue's two samples first.
    let mut fake = Fake::default().reply(
        200,
        arc_body("x\n[Interface]\nPostUp=id\n[Peer]\nEndpoint=b.example:11010"),
    );
    let err = provision(&mut fake, &request(Target::Arc)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { field, .. } if field == "arcServerEndpoint"),
        "{err:?}"
    );
    assert!(fake.store.is_empty());
    let mut body = assigned();
    body["deviceId"] = json!("dev\"\nx");
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
        .reply(200, body);
    let err = provision(&mut fake, &request(Target::AzureIot)).unwrap_err();
    assert_eq!(
        err,
        Error::invalid(
            "deviceId",
            "byte 4 is `\"`; only ASCII letters, digits and - . + % _ # * ? ! ( ) , : = @ $ ' \
             (Azure IoT Hub deviceId) are allowed"
        )
    );
    assert!(
        fake.store.is_empty(),
        "nothing stored, not even the pending registration"
    );

    // Then every identifier field of every target, with every hostile value.
    let aws = json!({"region": "ap-northeast-1", "host": "abc-ats.iot.ap-northeast-1.amazonaws.com",
        "clientId": "thing-1", "certificate": EC_CRT, "privateKey": EC_SEC1});
    let cognito = json!({"identityId": OPENID_ID, "region": "ap-northeast-1",
        "credentials": {"accessKeyId": "ASIAEXAMPLE00001", "secretKey": "s3cr3t",
                        "sessionToken": "t0ken", "expiration": 1_900_000_000u64}});
    let openid = json!({"region": "ap-northeast-1", "token": "tok", "identityId": OPENID_ID});
    let inventory = json!({"serverUri": "coaps://jp.inventory.soracom.io:5684",
        "pskId": "d-0123456789abcdefghij", "applicationKey": "gvFdTTvSWsNoTX/kjBNRKQ=="});
    let metadata = json!({"imsi": "440101234567890", "msisdn": "812012345678",
        "groupId": "g-1", "status": "active"});
    let cases: Vec<(Target, serde_json::Value, Vec<&str>)> = vec![
        (Target::AzureIot, assigned(), vec!["deviceId", "host"]),
        (Target::AwsIot, aws, vec!["host", "clientId", "region"]),
        (Target::AwsCognito, cognito, vec!["identityId", "region"]),
        (
            Target::AwsCognitoOpenid,
            openid,
            vec!["identityId", "region"],
        ),
        (Target::Inventory, inventory, vec!["serverUri", "pskId"]),
        (
            Target::Arc,
            arc_body("beck.arc.soracom.io:11010"),
            vec![
                "arcClientPeerPrivateKey",
                "arcClientPeerIpAddress",
                "arcServerPeerPublicKey",
                "arcServerEndpoint",
            ],
        ),
        (
            Target::SubscriberMetadata,
            metadata,
            vec!["imsi", "msisdn", "groupId", "status"],
        ),
    ];
    let mut accepted = Vec::new();
    for (target, body, fields) in cases {
        for field in fields {
            let good = body[field].as_str().unwrap().to_string();
            for (name, value) in hostile_values(&good) {
                let case = format!("{target:?} {field} {name}");
                let mut answer = body.clone();
                answer[field] = json!(value);
                let mut fake = match target {
                    Target::AzureIot => Fake::default()
                        .reply(200, json!({"operationId": "4.op-1", "status": "assigning"})),
                    _ => Fake::default(),
                }
                .reply(200, answer);
                match provision(&mut fake, &request_for(target, false)) {
                    Err(Error::InvalidResponse { field: f, .. }) => {
                        assert_eq!(f, field, "{case}");
                        assert!(fake.store.is_empty(), "{case}: something was stored");
                    }
                    Ok(report) => {
                        let stored =
                            String::from_utf8(fake.store[target.bundle_name()].clone()).unwrap();
                        let bundle: serde_json::Value = serde_json::from_str(&stored).unwrap();
                        assert_eq!(bundle[field], json!(value.trim()), "{case}");
                        assert!(
                            report
                                .identifiers
                                .iter()
                                .any(|(k, v)| k == field && *v == value)
                        );
                        accepted.push(case);
                    }
                    Err(other) => panic!("{case}: {other:?}"),
                }
            }
        }
    }
    assert_eq!(
        accepted,
        vec![
            "AzureIot deviceId single quote",
            "AzureIot deviceId equals",
            "AzureIot deviceId hash",
            "AwsIot clientId double quote",
            "AwsIot clientId single quote",
            "AwsIot clientId equals",
            "AwsIot clientId hash",
            "AwsIot clientId bracket",
            "AwsIot clientId non-ASCII",
        ]
    );
}

#[test]
fn every_transport_kind_is_put_in_plain_words_with_its_own_hint() {
    let krypton = Endpoint::parse("https://krypton.example:8036").unwrap();
    let no_port = Endpoint::parse("https://krypton.example").unwrap();
    let plain = Endpoint::parse("http://127.0.0.1:8080").unwrap();
    let words = |kind, e: &Endpoint, detail: Option<&str>| {
        let t = transport_failure(kind, e, "R".into(), detail);
        assert_eq!((t.kind, t.request.as_str(), t.attempts), (kind, "R", 1));
        (t.message, t.hint.unwrap_or_default())
    };
    let air_arc = "Krypton's network mode answers only requests that leave over a SORACOM Air \
                   cellular session or a SORACOM Arc tunnel: on Air check the cellular \
                   connection; on Arc Krypton's address must be inside the tunnel's AllowedIPs";
    use TransportKind as K;
    let cases: Vec<(K, &Endpoint, Option<&str>, String, String)> = vec![
        (
            K::NameNotFound,
            &krypton,
            None,
            "the name `krypton.example` does not exist (DNS: no such name); nothing was sent to port 8036".into(),
            "the name does not exist: check the spelling of the endpoint's host `krypton.example` (Krypton is krypton.soracom.io)".into(),
        ),
        (
            K::NameResolutionFailed,
            &krypton,
            Some("the resolver answered: temporary failure"),
            "the name `krypton.example` could not be looked up (the resolver answered: temporary failure); nothing was sent to port 8036".into(),
            "the DNS resolver did not answer: check the device's DNS settings and network; a later attempt may pass".into(),
        ),
        (
            K::ConnectionRefused,
            &no_port,
            None,
            "krypton.example:443 refused the connection: nothing listens on port 443 there".into(),
            "the endpoint has no port, so 443 was tried: Krypton listens on 8036, e.g. https://krypton.soracom.io:8036".into(),
        ),
        (
            K::ConnectionRefused,
            &krypton,
            None,
            "krypton.example:8036 refused the connection: nothing listens on port 8036 there".into(),
            "nothing listens on krypton.example:8036: check the endpoint's host and port (Krypton listens on 8036) and that the server runs".into(),
        ),
        (
            K::ConnectionTimeout,
            &krypton,
            Some("10000 ms"),
            "no connection to krypton.example:8036 within the connect timeout (10000 ms)".into(),
            air_arc.into(),
        ),
        (
            K::Unreachable,
            &krypton,
            None,
            "krypton.example:8036 cannot be reached: there is no route to that address".into(),
            air_arc.into(),
        ),
        (
            K::UntrustedCertificate,
            &krypton,
            None,
            "the TLS certificate of krypton.example:8036 is not trusted (issued by an unknown CA, expired, or issued for another name)".into(),
            "the server's certificate is not trusted: for a private or test endpoint, give its CA to the host (the CA file option)".into(),
        ),
        (
            K::TlsFailure,
            &krypton,
            Some("the server sent the TLS alert `handshake failure`"),
            "the TLS handshake with krypton.example:8036 failed (the server sent the TLS alert `handshake failure`)".into(),
            "the server at krypton.example:8036 does not accept this TLS connection: check that the endpoint is Krypton's (https://krypton.soracom.io:8036)".into(),
        ),
        (
            K::ProtocolMismatch,
            &krypton,
            None,
            "the server at krypton.example:8036 does not speak HTTPS (it answered in another protocol, such as plain HTTP)".into(),
            "this server does not speak HTTPS: Krypton speaks HTTPS on port 8036 (https://krypton.soracom.io:8036); check the endpoint's port".into(),
        ),
        (
            K::ProtocolMismatch,
            &plain,
            None,
            "the server at 127.0.0.1:8080 does not speak plain HTTP (it answered in another protocol, such as HTTPS)".into(),
            "this server speaks HTTPS: use https://".into(),
        ),
        (
            K::ConnectionLost,
            &krypton,
            Some("the answer was cut short"),
            "the connection to krypton.example:8036 broke before the answer was complete (the answer was cut short)".into(),
            "the connection broke mid-answer: a later attempt may pass; if it keeps happening, check the network path to Krypton".into(),
        ),
        (
            K::Denied,
            &krypton,
            None,
            "the host did not let the request to https://krypton.example:8036 leave: it is not on the host's outbound allow-list".into(),
            "only the endpoint and the origins the host allows may be reached: check the endpoint".into(),
        ),
    ];
    for (kind, e, detail, message, hint) in cases {
        assert_eq!(words(kind, e, detail), (message, hint), "{kind:?}");
    }
    let other = transport_failure(K::Other, &krypton, "R".into(), Some("the host failed"));
    assert_eq!(
        other.message,
        "the request to krypton.example:8036 failed: the host failed"
    );
    assert_eq!(other.hint, None);
}

#[test]
fn krypton_s_own_name_not_found_points_at_the_resolver_not_the_spelling() {
    let real = Endpoint::parse("https://krypton.soracom.io:8036").unwrap();
    let t = transport_failure(TransportKind::NameNotFound, &real, "R".into(), None);
    let hint = t.hint.unwrap();
    assert!(
        hint.starts_with("Krypton's own name did not resolve: this gateway's DNS does not know"),
        "{hint}"
    );
    assert!(!hint.contains("spelling"), "{hint}");
}

/// Every failure of a run carries its advice in `failure.hint`, worded with request fields and
/// parameters: one case per kind, checked field by field.
#[test]
fn every_failure_carries_its_hint_in_the_component_s_words() {
    let fail =
        |fake: &mut Fake, req: &ProvisionRequest| Failure::from(provision(fake, req).unwrap_err());

    // Timeout: the Arc AllowedIPs trap, or a longer deadline.
    let mut fake = Fake::default();
    for _ in 0..10 {
        fake = fake.reply(200, json!({"operationId": "4.op-3", "status": "assigning"}));
    }
    let mut req = request(Target::AzureIot);
    req.deadline_ms = 3_500;
    let f = fail(&mut fake, &req);
    assert!(matches!(f.error, Error::Timeout(_)), "{f:?}");
    assert_eq!(
        f.hint.as_deref(),
        Some(
            "on SORACOM Arc a request to Krypton times out when Krypton's address is not inside \
             the WireGuard AllowedIPs; otherwise raise the request's deadline-ms"
        )
    );

    // HTTP 401 and 403: Krypton enabled for the group, the request over Air or Arc.
    for status in [401, 403] {
        let mut fake = Fake::default().reply(status, json!({"code": "AUTH", "message": "no"}));
        let f = fail(&mut fake, &request(Target::Userdata));
        assert!(
            matches!(&f.error, Error::HttpStatus { status: s, .. } if *s == status),
            "{f:?}"
        );
        assert_eq!(
            f.hint.as_deref(),
            Some(
                "check that Krypton is enabled for this SIM's group and that the request leaves \
                 over SORACOM Air or Arc"
            )
        );
    }
    // Other statuses have no advice.
    let mut fake = Fake::default().reply(404, json!({}));
    assert_eq!(fail(&mut fake, &request(Target::Userdata)).hint, None);

    // Registration failed: the DPS enrollment and the group's Krypton Azure IoT configuration.
    let mut fake = Fake::default()
        .reply(200, json!({"operationId": "4.op-2", "status": "assigning"}))
        .reply(200, json!({"operationId": "4.op-2", "status": "failed"}));
    let f = fail(&mut fake, &request(Target::AzureIot));
    assert_eq!(
        f.error,
        Error::RegistrationFailed {
            operation_id: "4.op-2".into(),
            status: "failed".into()
        }
    );
    assert_eq!(
        f.hint.as_deref(),
        Some("check the DPS enrollment and the Krypton Azure IoT configuration of the SIM's group")
    );

    // Krypton's answer unusable: not from the store, no advice.
    let mut fake = Fake::default().reply_raw(200, &[], b"not json");
    let f = fail(&mut fake, &request(Target::Arc));
    assert!(
        matches!(&f.error, Error::InvalidResponse { field, stored: false, .. } if field == "body"),
        "{f:?}"
    );
    assert_eq!(f.hint, None);

    // A stored bundle that breaks its rule: `stored`, and provision again with force.
    let mut fake = Fake::default().reply(200, arc_body("beck.arc.soracom.io:11010"));
    provision(&mut fake, &request(Target::Arc)).unwrap();
    let bad = String::from_utf8(fake.store["arc"].clone())
        .unwrap()
        .replace("beck.arc.soracom.io:11010", "beck arc");
    fake.store.insert("arc".into(), bad.into_bytes());
    let f = Failure::from(status(&mut fake, Target::Arc).unwrap_err());
    assert!(
        matches!(&f.error, Error::InvalidResponse { field, reason, stored: true }
            if field == "arcServerEndpoint" && reason.starts_with("stored bundle `arc`: ")),
        "{f:?}"
    );
    assert_eq!(
        f.hint.as_deref(),
        Some("provision the target again with force to replace the bundle")
    );

    // A transport error keeps the hint it was given for its endpoint.
    let krypton = Endpoint::parse("https://krypton.example").unwrap();
    let t = transport_failure(TransportKind::ConnectionRefused, &krypton, "R".into(), None);
    let f = Failure::from(Error::Transport(t.clone()));
    assert_eq!(f.hint, t.hint);
    assert_eq!(
        f.hint.as_deref(),
        Some(
            "the endpoint has no port, so 443 was tried: Krypton listens on 8036, e.g. \
             https://krypton.soracom.io:8036"
        )
    );

    // A request refused before any call: the message names the parameter, no advice.
    let mut req = request(Target::Inventory);
    req.request_parameters = Some("{}".into());
    let f = fail(&mut Fake::default(), &req);
    assert_eq!(
        f.error,
        Error::InvalidRequest(
            "inventory needs the request parameter `endpoint`: the LwM2M endpoint client name"
                .into()
        )
    );
    assert_eq!(f.hint, None);
}

/// No message or hint of the component names a host's command-line flag.
#[test]
fn messages_name_request_fields_never_command_line_flags() {
    let mut fake = Fake::default();
    let mut texts = vec![
        Failure::from(wireguard_config(&mut fake, &[]).unwrap_err()),
        Failure::from(render_export(&mut fake, Target::AwsIot, "pem", "/x", &[]).unwrap_err()),
    ];
    let mut req = request(Target::Inventory);
    req.request_parameters = Some("{}".into());
    texts.push(Failure::from(provision(&mut fake, &req).unwrap_err()));
    fake.store.insert(
        "arc".into(),
        br#"{"target":"arc","formatVersion":2}"#.to_vec(),
    );
    texts.push(Failure::from(
        provision(&mut fake, &request(Target::Arc)).unwrap_err(),
    ));
    for f in texts {
        let text = format!("{} {}", f.error, f.hint.unwrap_or_default());
        assert!(!text.contains("--"), "{text}");
        assert!(!text.contains("krypton-host"), "{text}");
    }
}
