//! A mock SORACOM Krypton (network-authenticated mode) over HTTPS on loopback, for tests, the
//! demo and users' CI.
//!
//! It follows `reference/krypton-api.md` for the operations this project implements:
//! * P6 `POST /v1/provisioning/azure/iot/register` answers
//!   `{"operationId":"4.<hex>","status":"assigning"}`;
//! * P7 `GET|POST /v1/provisioning/azure/iot/registrations/{operationId}` answers `assigning`
//!   [`MockConfig::assigning_polls`] times, then `assigned` with `deviceId`, `host`,
//!   `certificate`, `privateKey` (PKCS#8) and `rootCaCertificate`;
//! * P1 `POST /v1/provisioning/aws/iot/bootstrap` answers `region`, `host`, `clientId`
//!   (`requestParameters.thingName` when given, else `thing-<IMSI>`, like a `thing-$imsi`
//!   pattern), `certificate`, `privateKey` (SEC1 `EC PRIVATE KEY`) and `rootCaCertificate`.
//!
//! Certificates are real X.509 (ECDSA P-256) issued by a CA the mock generates at start, which
//! also signs the mock's own TLS certificate for `localhost` and `127.0.0.1`.
//!
//! Where the real service's behaviour is unknown (krypton-api.md §4.1, marked [U]) the mock
//! picks: errors are `{"code":"KRY…","message":"…"}` with the status; an unknown path is 404
//! `KRY0404`; an unknown `operationId` is 404 `KRY0404`.
//!
//! Faults are injected per path prefix with [`MockKrypton::inject`]; every request is recorded.

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest request body the mock reads, bytes.
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// How the mock answers.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Times a registration answers `assigning` before `assigned`.
    pub assigning_polls: u32,
    /// `Retry-After` seconds sent with `assigning` answers, if any.
    pub retry_after_secs: Option<u32>,
    /// The IMSI of the "calling SIM", used in the identifiers the mock issues.
    pub imsi: String,
    /// Azure IoT Hub host name issued.
    pub azure_hub: String,
    /// AWS region issued.
    pub aws_region: String,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            assigning_polls: 2,
            retry_after_secs: None,
            imsi: "440101234567890".into(),
            azure_hub: "krypton-mock-hub.azure-devices.net".into(),
            aws_region: "ap-northeast-1".into(),
        }
    }
}

/// A fault the mock returns for every request whose path starts with a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `status` with a `{"code","message"}` body.
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// Answer a registration poll with this DPS status (e.g. `failed`).
    RegistrationStatus(String),
    /// Answer 200 with a body that is not valid JSON (cut short).
    MalformedJson,
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The `Host` header as sent (keeps the explicit port).
    pub host_header: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Credentials the mock issued, for tests to compare with what was stored.
#[derive(Clone, Debug)]
pub struct Issued {
    /// `azure-iot` or `aws-iot`.
    pub target: &'static str,
    /// Azure `deviceId` or AWS `clientId`.
    pub id: String,
    pub host: String,
    pub operation_id: Option<String>,
    pub region: Option<String>,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub root_ca_pem: String,
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl Ca {
    fn new() -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Krypton Mock CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A leaf certificate and its key pair.
    fn issue(
        &self,
        common_name: &str,
        sans: Vec<String>,
        eku: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<(String, KeyPair)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // Valid from an hour ago (clock skew) for one year, like a real device certificate.
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365);
        params.extended_key_usages = vec![eku];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key))
    }
}

struct State {
    config: MockConfig,
    ca: Ca,
    counter: u64,
    /// operationId -> polls still answered `assigning`.
    operations: HashMap<String, u32>,
    faults: Vec<(String, Fault)>,
    requests: Vec<RecordedRequest>,
    issued: Vec<Issued>,
}

/// A running mock Krypton. Stops when [`MockKrypton::stop`] is called or it is dropped.
pub struct MockKrypton {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<Mutex<State>>,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MockKrypton {
    /// Bind `listen` (use `127.0.0.1:0` for a free port) and serve until stopped.
    ///
    /// Errors: the address cannot be bound, or certificate generation fails.
    pub async fn start(listen: SocketAddr, config: MockConfig) -> anyhow::Result<Self> {
        let ca = Ca::new()?;
        let (server_cert, server_key) = ca.issue(
            "localhost",
            vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(server_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der())
            .map_err(|e| anyhow::anyhow!("mock server key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the mock Krypton to {listen}"))?;
        let addr = listener.local_addr()?;
        let ca_pem = ca.cert_pem.clone();
        let state = Arc::new(Mutex::new(State {
            config,
            ca,
            counter: 0,
            operations: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            issued: Vec::new(),
        }));
        let (shutdown, mut stopped) = watch::channel(false);
        let serve_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(_) => continue,
                    },
                    _ = stopped.changed() => break,
                };
                let acceptor = acceptor.clone();
                let state = serve_state.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        Ok(MockKrypton {
            addr,
            ca_pem,
            state,
            shutdown,
            task: Some(task),
        })
    }

    /// The base URL, e.g. `https://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mock CA certificate (PEM) to trust, e.g. with `--ca-file`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Answer every request whose path starts with `path_prefix` with `fault`, until cleared.
    pub fn inject(&self, path_prefix: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push((path_prefix.to_string(), fault));
    }

    /// Remove every injected fault.
    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Every set of credentials issued so far, in order.
    pub fn issued(&self) -> Vec<Issued> {
        self.state.lock().unwrap().issued.clone()
    }

    /// Stop accepting and close open connections.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockKrypton {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    raw_response(status, "application/json", body.to_string().into_bytes())
}

fn raw_response(status: u16, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn error_response(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({"code": code, "message": message}))
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let host_header = header("host");
    let content_type = header("content-type");
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => return error_response(413, "KRY0413", "request body too large"),
    };
    let mut state = state.lock().unwrap();
    state.requests.push(RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        host_header,
        content_type,
        body: body.clone(),
    });
    let fault = state
        .faults
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map(|(_, f)| f.clone());
    match fault {
        Some(Fault::Status {
            status,
            code,
            message,
        }) => return error_response(status, &code, &message),
        Some(Fault::MalformedJson) => {
            return raw_response(200, "application/json", br#"{"operationId": "4.0"#.to_vec());
        }
        Some(Fault::RegistrationStatus(_)) | None => {}
    }
    let params: Value = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("requestParameters").cloned())
        .unwrap_or(Value::Null);

    const REGISTRATIONS: &str = "/v1/provisioning/azure/iot/registrations/";
    match (method.as_str(), path.as_str()) {
        ("POST", "/v1/provisioning/azure/iot/register") => {
            state.counter += 1;
            let op = format!("4.{:016x}", 0x6b72_7970_0000_0000u64 + state.counter);
            let polls = state.config.assigning_polls;
            state.operations.insert(op.clone(), polls);
            json_response(200, &json!({"operationId": op, "status": "assigning"}))
        }
        ("GET" | "POST", p) if p.starts_with(REGISTRATIONS) => {
            let op = p[REGISTRATIONS.len()..].to_string();
            let Some(left) = state.operations.get(&op).copied() else {
                return error_response(404, "KRY0404", "unknown operationId");
            };
            if let Some(Fault::RegistrationStatus(status)) = fault {
                return json_response(200, &json!({"operationId": op, "status": status}));
            }
            if left > 0 {
                state.operations.insert(op.clone(), left - 1);
                let mut response =
                    json_response(200, &json!({"operationId": op, "status": "assigning"}));
                if let Some(secs) = state.config.retry_after_secs {
                    response
                        .headers_mut()
                        .insert("retry-after", secs.to_string().parse().expect("digits"));
                }
                return response;
            }
            let device_id = params
                .get("deviceId")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| state.config.imsi.clone());
            let host = state.config.azure_hub.clone();
            let (cert, key) =
                match state
                    .ca
                    .issue(&device_id, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
                {
                    Ok(pair) => pair,
                    Err(e) => return error_response(500, "KRY0500", &format!("mock CA: {e}")),
                };
            let key_pem = key.serialize_pem(); // PKCS#8 "PRIVATE KEY"
            let root = state.ca.cert_pem.clone();
            state.issued.push(Issued {
                target: "azure-iot",
                id: device_id.clone(),
                host: host.clone(),
                operation_id: Some(op.clone()),
                region: None,
                certificate_pem: cert.clone(),
                private_key_pem: key_pem.clone(),
                root_ca_pem: root.clone(),
            });
            json_response(
                200,
                &json!({"operationId": op, "status": "assigned", "deviceId": device_id,
                        "host": host, "certificate": cert, "privateKey": key_pem,
                        "rootCaCertificate": root}),
            )
        }
        ("POST", "/v1/provisioning/aws/iot/bootstrap") => {
            let client_id = params
                .get("thingName")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("thing-{}", state.config.imsi));
            let region = state.config.aws_region.clone();
            let host = format!("krypton-mock-ats.iot.{region}.amazonaws.com");
            let issued = state
                .ca
                .issue(&client_id, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
                .and_then(|(cert, key)| Ok((cert, sec1_pem(&key)?)));
            let (cert, key_pem) = match issued {
                Ok(pair) => pair,
                Err(e) => return error_response(500, "KRY0500", &format!("mock CA: {e}")),
            };
            let root = state.ca.cert_pem.clone();
            state.issued.push(Issued {
                target: "aws-iot",
                id: client_id.clone(),
                host: host.clone(),
                operation_id: None,
                region: Some(region.clone()),
                certificate_pem: cert.clone(),
                private_key_pem: key_pem.clone(),
                root_ca_pem: root.clone(),
            });
            json_response(
                200,
                &json!({"region": region, "host": host, "clientId": client_id,
                        "certificate": cert, "privateKey": key_pem, "rootCaCertificate": root}),
            )
        }
        _ => error_response(404, "KRY0404", &format!("no operation at {method} {path}")),
    }
}

/// The key as SEC1 `EC PRIVATE KEY` PEM, the form AWS-style bundles often carry.
fn sec1_pem(key: &KeyPair) -> anyhow::Result<String> {
    use p256::pkcs8::{DecodePrivateKey, LineEnding};
    let secret = p256::SecretKey::from_pkcs8_der(&key.serialize_der())
        .map_err(|e| anyhow::anyhow!("mock key conversion: {e}"))?;
    Ok(secret
        .to_sec1_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("mock key conversion: {e}"))?
        .to_string())
}
