//! Native unit tests of the flows with scripted HTTP responses, a fake clock and an in-memory store.

use crate::bundle::Bundle;
use crate::flow::*;
use crate::model::*;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};

const EC_CRT: &str = include_str!("../testdata/ec.crt");
const EC_SEC1: &str = include_str!("../testdata/ec-sec1.key");
const OTHER_EC: &str = include_str!("../testdata/other-ec-sec1.key");
const ROOT_CRT: &str = include_str!("../testdata/root.crt");

#[derive(Default)]
struct Fake {
    responses: VecDeque<Result<HttpResponse, Error>>,
    requests: Vec<(String, String, Option<String>, Timeouts)>,
    now_ms: u64,
    slept: Vec<u64>,
    store: BTreeMap<String, Vec<u8>>,
    logs: Vec<String>,
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
        _max: usize,
    ) -> Result<HttpResponse, Error> {
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
    fn log(&mut self, line: &str) {
        self.logs.push(line.to_string());
    }
    fn store_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.store.get(name).cloned())
    }
    fn store_put(&mut self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.store.insert(name.to_string(), value.to_vec());
        Ok(())
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
        logs.contains("POST /v1/provisioning/azure/iot/register -> 200"),
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
    assert!(fake.store.is_empty());
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
            request: "POST /v1/provisioning/azure/iot/register".into(),
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
            json!({"region": "r", "host": "h", "clientId": "c", "privateKey": EC_SEC1}),
            "certificate",
            "missing",
        ),
        (
            json!({"region": "r", "host": "h", "clientId": 7, "certificate": EC_CRT, "privateKey": EC_SEC1}),
            "clientId",
            "expected a string, got a number",
        ),
        (
            json!({"region": "r", "host": "h", "clientId": "c", "certificate": EC_CRT, "privateKey": OTHER_EC}),
            "privateKey",
            "the private key does not match the certificate's public key",
        ),
        (
            json!({"region": "r", "host": "h", "clientId": "c", "certificate": EC_CRT, "privateKey": ""}),
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
        matches!(&err, Error::InvalidResponse { field, reason } if field == "body" && reason.starts_with("not JSON")),
        "{err:?}"
    );
    let mut fake = Fake::default().reply_raw(200, &[], b"\xff\xfe");
    let err = provision(&mut fake, &request(Target::AwsIot)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { field, reason } if field == "body" && reason.starts_with("not UTF-8")),
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
    let mut req = request(Target::Arc);
    let err = provision(&mut Fake::default(), &req).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)));
    req.target = Target::AzureIot;
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
fn endpoint_keeps_the_explicit_port_and_prefix() {
    let e = Endpoint::parse("https://krypton.soracom.io:8036/").unwrap();
    assert_eq!(e.authority, "krypton.soracom.io:8036");
    assert_eq!(e.base_path, "");
    let e = Endpoint::parse("http://127.0.0.1:9/prefix/").unwrap();
    assert_eq!(
        (
            e.scheme.as_str(),
            e.authority.as_str(),
            e.base_path.as_str()
        ),
        ("http", "127.0.0.1:9", "/prefix")
    );
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
