//! Native unit tests of the operations, the HTTP policy and the export formats with scripted
//! HTTP responses, a fake clock and an in-memory store ([`Fake`]), one file per service or
//! layer. The helpers shared by the files are here.

use crate::client::*;
use crate::formats::{render_export, wireguard_config};
use crate::ops::store::{STORE_PROBE_BYTES, load};
use crate::ops::{operation, provision, status};
use crate::types::bundle::Bundle;
use crate::types::model::*;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};

mod air;
mod arc;
mod aws;
mod azure;
mod client;
mod cognito;
mod crosscheck;
mod formats;
mod hints;
mod inventory;
mod orchestration;
mod sim;
mod sim_milenage;

const EC_CRT: &str = include_str!("../../testdata/ec.crt");
const EC_SEC1: &str = include_str!("../../testdata/ec-sec1.key");
const OTHER_EC: &str = include_str!("../../testdata/other-ec-sec1.key");
const ROOT_CRT: &str = include_str!("../../testdata/root.crt");

/// A USIM that computes its answer to AUTHENTICATE from RAND and AUTN.
type Usim = Box<dyn FnMut(&[u8], &[u8]) -> Result<AuthOutcome, UiccError>>;
/// A server that computes its answer to a request.
type Server = Box<dyn FnMut(&HttpRequest) -> HttpResponse>;

#[derive(Default)]
struct Fake {
    /// The authority requests must go to, when not `krypton.example:8036` (the requests'
    /// default endpoint).
    authority: Option<&'static str>,
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
    /// The extra headers of each request, in the order of `requests`.
    headers: Vec<Vec<(String, String)>>,
    /// The answer bound of each request, bytes, in the order of `requests`.
    max_bodies: Vec<usize>,
    /// The SIM's IMSI; `None`: the `uicc` answers `unavailable`.
    imsi: Option<String>,
    /// Scripted answers to AUTHENTICATE, in order.
    auth: VecDeque<Result<AuthOutcome, UiccError>>,
    /// Every AUTHENTICATE call: RAND and AUTN.
    auth_calls: Vec<(Vec<u8>, Vec<u8>)>,
    /// A USIM computing its answers (instead of `auth`).
    usim: Option<Usim>,
    /// A server computing its answers (instead of `responses`), given the request and its
    /// extra headers.
    server: Option<Server>,
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
        max: usize,
    ) -> Result<HttpResponse, SendFailure> {
        self.max_bodies.push(max);
        assert_eq!(
            endpoint.authority,
            self.authority.unwrap_or("krypton.example:8036")
        );
        self.requests.push((
            request.method.as_str().to_string(),
            request.path.clone(),
            request
                .body
                .as_ref()
                .map(|b| String::from_utf8(b.clone()).unwrap()),
            timeouts,
        ));
        self.headers.push(request.headers.clone());
        self.now_ms += 10;
        if let Some(server) = self.server.as_mut() {
            return Ok(server(request));
        }
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
    fn read_imsi(&mut self) -> Result<String, UiccError> {
        self.imsi
            .clone()
            .ok_or_else(|| UiccError::Unavailable("no uicc backend is configured".into()))
    }
    fn authenticate(&mut self, rand: &[u8], autn: &[u8]) -> Result<AuthOutcome, UiccError> {
        self.auth_calls.push((rand.to_vec(), autn.to_vec()));
        if let Some(usim) = self.usim.as_mut() {
            return usim(rand, autn);
        }
        self.auth
            .pop_front()
            .expect("a scripted AUTHENTICATE answer")
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
        sim: SimOptions::default(),
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

/// An AWS IoT certificate ID: 64 hex digits.
const CERT_ID: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";
const CERT_PATH: &str = "/v1/provisioning/aws/iot/certificates/ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

/// A Cognito identity ID (`region:uuid`).
const OPENID_ID: &str = "ap-northeast-1:00000000-0000-4000-8000-000000000001";

const WG_PRIV: &str = "Q0FOQVJZLXdpcmVndWFyZC1wcml2YXRlLWtleS0zMmI="; // 32 bytes
const WG_PUB: &str = "c2VydmVyLXB1YmxpYy1rZXktb2YtMzItYnl0ZXMhISE=";

fn arc_body(endpoint: &str) -> serde_json::Value {
    json!({"arcClientPeerPrivateKey": WG_PRIV, "arcClientPeerIpAddress": "10.123.45.6",
           "arcServerPeerPublicKey": WG_PUB, "arcServerEndpoint": endpoint,
           "arcAllowedIPs": ["100.127.0.0/16", "54.250.252.67/32"]})
}

fn export_names(files: &[crate::types::model::ExportFile]) -> Vec<(&str, bool)> {
    files.iter().map(|f| (f.name.as_str(), f.secret)).collect()
}

/// Every target, for the store tests (no credential minted without a place to keep it).
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

/// A request that passes `prepare` for every target (Inventory needs its endpoint name).
fn request_for(target: Target, force: bool) -> ProvisionRequest {
    let mut req = request(target);
    if target == Target::Inventory {
        req.request_parameters = Some(r#"{"endpoint":"gw-0042"}"#.into());
    }
    req.force = force;
    req
}

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

fn clean_copy(fake: &Fake) -> Fake {
    Fake {
        store: fake.store.clone(),
        ..Fake::default()
    }
}
