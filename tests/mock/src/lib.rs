//! A mock SORACOM Krypton (network-authenticated mode) over HTTPS on loopback, for tests, the
//! demo and users' CI.
//!
//! It serves every operation network mode offers (SORACOM's Krypton documentation and its open-
//! source clients, `soracom/krypton-client-go` and `soracom/soracom-krypton-client-for-java`;
//! P1–P12 number the operations as in the guest's crate docs):
//! * P6 `POST /v1/provisioning/azure/iot/register` answers
//!   `{"operationId":"4.<hex>","status":"assigning"}`; P7 `GET|POST …/registrations/{id}`
//!   answers `assigning` [`MockConfig::assigning_polls`] times, then `assigned` with
//!   `deviceId`, `host`, `certificate`, `privateKey` ([`MockConfig::azure_iot_key`], by default
//!   ECDSA P-256 as PKCS#8) and `rootCaCertificate`;
//! * P1 `POST /v1/provisioning/aws/iot/bootstrap` answers `region`, `host`, `clientId`
//!   (`requestParameters.thingName`, else `thing-<IMSI>` like a `thing-$imsi` pattern),
//!   `certificate`, `privateKey` ([`MockConfig::aws_iot_key`], by default RSA 2048 as PKCS#1)
//!   and `rootCaCertificate`; with `skipCertificates: true`
//!   it answers `privateKey`, `clientId`, `host`, `certificateId` (SHA-256 of the DER
//!   certificate, as AWS IoT names certificates), and P2 / P3 serve the rest;
//! * P4 Cognito credentials (`expiration` in the form [`MockConfig::expiration`] picks),
//!   P5 OpenID token, P9 Inventory (`endpoint` required; `applicationKey` returned),
//!   P10 Arc, P11 subscriber metadata (a JSON object), P12 userdata (`text/plain`).
//!
//! Certificates are real X.509 issued by a CA (ECDSA P-256) the mock generates at start, which
//! also signs the mock's own TLS certificate for `localhost`, `127.0.0.1` and `::1`. Device keys
//! come in the shapes the real services issue ([`KeyShape`]): a new key pair for every
//! certificate, each in one PEM block. Secret
//! values that are not keys carry the markers in [`CANARIES`], so tests can prove that no
//! secret reaches a log or a report.
//!
//! Where the real service's behaviour is not documented (the shape of error bodies) the mock
//! picks: errors are `{"code":"KRY…","message":"…"}` with the status; an unknown path or
//! `operationId` is 404 `KRY0404`; Inventory without `endpoint` is 400 `KRY0400`.
//!
//! The Keys API of SIM-authenticated mode is served too ([`keys`]): `POST /v1/keys` (a 3GPP AKA
//! challenge for a subscriber of [`MockConfig::sim_subscribers`], or a resynchronisation with
//! AUTS) and `POST /v1/keys/{keyId}/verify`. A provisioning request that carries
//! `x-soracom-signature` is SIM-authenticated: its signature is checked over the raw bytes
//! received ([`keys::KeysApi::check_signature`]: a verified, unexpired `keyId` in the body,
//! SHA-256 over body, timestamp and CK, a timestamp within ±5 minutes), and anything off is 401
//! `{"code": "KEY0401", "message"}`; the identifiers it issues then use the signing SIM's IMSI.
//! [`MockConfig::require_signatures`] makes an unsigned provisioning request a 401 too (a
//! SIM-mode-only server). [`Fault::AlterSignedBody`] and [`Fault::ClockSkew`] make the check
//! fail as a body changed in transit or a stale timestamp would.
//!
//! Faults are injected per path prefix with [`MockKrypton::inject`] (until cleared) or
//! [`MockKrypton::inject_times`] (for the next N matching requests); see [`Fault`]. Every
//! request is recorded. [`MockConfig::throttle`] rate-limits the provisioning requests as a
//! busy service does: 429 with `Retry-After` ([`Throttle`]).

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::{Request, Response, StatusCode};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub mod keys;

/// Largest request body the mock reads, bytes.
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Cognito secret key the mock issues.
pub const CANARY_SECRET_KEY: &str = "CANARY-cognito-secretKey-2f9d";
/// Cognito session token the mock issues.
pub const CANARY_SESSION_TOKEN: &str = "CANARY-cognito-sessionToken-81ac";
/// OpenID token the mock issues.
pub const CANARY_OPENID_TOKEN: &str = "CANARY-openid-token-5be0";
/// Userdata text the mock serves.
pub const CANARY_USERDATA: &str = "CANARY-userdata-bucket-c41d";
/// Raw bytes of the Inventory application key (16 bytes); sent base64-encoded.
const CANARY_APP_KEY_RAW: &[u8; 16] = b"CANARY-appkey-16";
/// Raw bytes of the Arc client WireGuard private key (32 bytes); sent base64-encoded.
const CANARY_WG_KEY_RAW: &[u8; 32] = b"CANARY-wg-client-private-key-32b";

/// Every secret value (other than PEM keys) the mock issues, as it appears on the wire.
/// A test that finds one of these in a log, report or error has found a leak.
pub fn canaries() -> Vec<String> {
    vec![
        CANARY_SECRET_KEY.into(),
        CANARY_SESSION_TOKEN.into(),
        CANARY_OPENID_TOKEN.into(),
        CANARY_USERDATA.into(),
        BASE64.encode(CANARY_APP_KEY_RAW),
        BASE64.encode(CANARY_WG_KEY_RAW),
        "CANARY".into(),
    ]
}

/// The Cognito identity ID the mock issues for a SIM: `region:uuid`, the shape Amazon Cognito
/// documents (`[\w-]+:[0-9a-f-]+`, at most 55 characters), the last 12 digits of the IMSI as the
/// UUID's last group.
pub fn cognito_identity_id(region: &str, imsi: &str) -> String {
    let tail = &imsi[imsi.len().saturating_sub(12)..];
    format!("{region}:00000000-0000-4000-8000-{tail:0>12}")
}

/// The base64 text of the mock's Arc client private key.
pub fn arc_private_key() -> String {
    BASE64.encode(CANARY_WG_KEY_RAW)
}

/// How the mock writes Cognito `expiration`: epoch ms (SORACOM's Java client reads a `Long` of
/// milliseconds), epoch seconds or ISO-8601 (both in public samples).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpirationFormat {
    /// Epoch milliseconds (what SORACOM's Java client reads).
    EpochMs,
    /// Epoch seconds.
    EpochSecs,
    /// An ISO-8601 / RFC 3339 string.
    Iso8601,
}

/// The key pair issued with a device certificate, and the PEM form its private key is sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyShape {
    /// RSA 2048, PKCS#1 `RSA PRIVATE KEY`: what AWS IoT issues (AWS IoT API Reference,
    /// CreateKeysAndCertificate: "Creates a 2048-bit RSA key pair and issues an X.509
    /// certificate using the issued public key"; its `keyPair.PrivateKey` is PKCS#1 PEM), and
    /// what SORACOM's Krypton AWS IoT example answer carries (`"privateKey":"-----BEGIN RSA
    /// PRIVATE KEY-----…"`).
    Rsa2048Pkcs1,
    /// ECDSA P-256, PKCS#8 `PRIVATE KEY` with the curve in its algorithm (RFC 5208, RFC 5480).
    /// SORACOM's Krypton Azure IoT documentation
    /// (<https://developers.soracom.io/en/docs/krypton/azure-iot/>) shows a PEM `privateKey`
    /// without naming its type; this is the most widely loadable form.
    EcP256Pkcs8,
    /// ECDSA P-256, SEC1 `EC PRIVATE KEY` with its named curve (RFC 5915), as
    /// `openssl ecparam -genkey` writes it.
    EcP256Sec1,
    /// ECDSA P-256, SEC1 `EC PRIVATE KEY` without its curve: valid RFC 5915 (the parameters are
    /// optional) but not loadable by OpenSSL; no real service is known to send it. It keeps
    /// the component's export conversion tested end to end.
    EcP256Sec1NoCurve,
    /// ECDSA P-384, SEC1 `EC PRIVATE KEY` without its curve (as [`KeyShape::EcP256Sec1NoCurve`]).
    EcP384Sec1NoCurve,
}

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
    /// Cognito credentials lifetime, s.
    pub cognito_lifetime_secs: u64,
    /// Form of Cognito `expiration`.
    pub expiration: ExpirationFormat,
    /// Key issued with an Azure IoT certificate (default [`KeyShape::EcP256Pkcs8`]).
    pub azure_iot_key: KeyShape,
    /// Key issued with an AWS IoT certificate (default [`KeyShape::Rsa2048Pkcs1`]).
    pub aws_iot_key: KeyShape,
    /// The Keys API's SIM subscribers: IMSI -> Milenage record (none by default; see
    /// [`keys::SimSubscriber::from_sim_record`] to serve a software SIM file's SIM).
    pub sim_subscribers: HashMap<String, keys::SimSubscriber>,
    /// Status of a `POST /v1/keys` answer that carries a challenge: 200 (default), or 401,
    /// which SORACOM's clients also accept.
    pub keys_challenge_status: u16,
    /// How long a verified `keyId` may sign requests, s (default 7200: the clients reuse one
    /// for up to an hour; the real server's limit is not documented).
    pub sim_key_lifetime_secs: u64,
    /// Refuse unsigned provisioning requests with 401 (default `false`: both modes are
    /// served, a signed request is always checked).
    pub require_signatures: bool,
    /// Serve plain HTTP instead of HTTPS (default `false`), for a client that trusts only the
    /// web PKI roots and so cannot trust the mock's own CA (the stock `wasmtime` CLI's
    /// `wasi:http`). The component allows plain `http://` only to loopback addresses.
    pub plain_http: bool,
    /// Rate-limit the provisioning requests ([`Throttle`]; default `None`: no limit).
    pub throttle: Option<Throttle>,
    /// Issue the Azure device certificate for this subject CN instead of the `deviceId`
    /// (default `None`: the CN is the `deviceId`, as DPS X.509 attestation has it), to serve
    /// an answer that disagrees with itself.
    pub azure_certificate_cn: Option<String>,
}

/// A token bucket over the provisioning requests (paths under `/v1/provisioning/`): it gains
/// `rate_per_sec` tokens a second and holds at most `burst` (full at start); each request
/// takes one. A request that finds none is answered 429 `KRY0429` with `Retry-After` in
/// delay-seconds (RFC 9110 §10.2.3: a whole number): the time until the next token, rounded
/// up, so at least 1. [`MockKrypton::throttled`] counts those answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    /// Tokens gained per second (the sustained rate, requests/s), at least 1.
    pub rate_per_sec: u32,
    /// Most tokens held (the largest burst served at once), at least 1.
    pub burst: u32,
}

/// The state of a [`Throttle`]: tokens held and when they were counted.
struct Bucket {
    throttle: Throttle,
    tokens: f64,
    at: std::time::Instant,
    /// 429 answers sent.
    refused: u64,
}

impl Bucket {
    /// Take a token, or the whole seconds until one is there.
    fn take(&mut self) -> Result<(), u64> {
        let rate = f64::from(self.throttle.rate_per_sec.max(1));
        let now = std::time::Instant::now();
        let gained = now.duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + gained).min(f64::from(self.throttle.burst.max(1)));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        self.refused += 1;
        Err((((1.0 - self.tokens) / rate).ceil() as u64).max(1))
    }
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            assigning_polls: 2,
            retry_after_secs: None,
            imsi: "440101234567890".into(),
            azure_hub: "krypton-mock-hub.azure-devices.net".into(),
            aws_region: "ap-northeast-1".into(),
            cognito_lifetime_secs: 3600,
            expiration: ExpirationFormat::EpochMs,
            azure_iot_key: KeyShape::EcP256Pkcs8,
            aws_iot_key: KeyShape::Rsa2048Pkcs1,
            sim_subscribers: HashMap::new(),
            keys_challenge_status: 200,
            sim_key_lifetime_secs: 7200,
            require_signatures: false,
            plain_http: false,
            throttle: None,
            azure_certificate_cn: None,
        }
    }
}

/// A fault the mock returns for requests whose path starts with a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `status` with a `{"code","message"}` body.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The body's `code`.
        code: String,
        /// The body's `message`.
        message: String,
    },
    /// Answer `status` (e.g. 429 or 503) with `Retry-After: value` and a `{code,message}` body.
    RetryAfter {
        /// The HTTP status code.
        status: u16,
        /// The `Retry-After` header's value as sent (seconds or an HTTP date).
        value: String,
    },
    /// Answer a registration poll with this DPS status (e.g. `failed`).
    RegistrationStatus(String),
    /// Answer 200 with a body that is not valid JSON (cut short).
    MalformedJson,
    /// Answer 200 with bytes that are not UTF-8.
    NonUtf8,
    /// Wait this long before sending the (normal) response headers.
    DelayHeaders(Duration),
    /// Send the headers and half of the normal body, then nothing more.
    StallBody,
    /// Declare the normal body's Content-Length, send half of it, and close the connection.
    TruncateBody,
    /// Send the normal body with chunked framing, 16 bytes per chunk.
    Chunked,
    /// Send the normal body one byte at a time with this pause between bytes (each pause
    /// shorter than any between-bytes timeout, the whole far longer than a deadline).
    Trickle(Duration),
    /// Answer 200 with a JSON object padded to this many bytes.
    Oversized(usize),
    /// Answer 307 with this `Location`.
    Redirect(String),
    /// Send the normal answer with this top-level field set to the number 42.
    WrongType(String),
    /// Send the normal answer without this top-level field.
    DropField(String),
    /// Answer 200 with exactly this JSON.
    Body(Value),
    /// Check a signed request's signature over its body with a space inserted (the same
    /// JSON, other bytes), as if the body had been altered in transit (the answer is then
    /// 401 "signature mismatch").
    AlterSignedBody,
    /// Check a signed request's timestamp against the mock's clock moved by this many ms
    /// (e.g. +10 minutes: the request's timestamp is stale; the answer is then 401).
    ClockSkew(i64),
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The HTTP method (`GET`, `POST`).
    pub method: String,
    /// The request target's path (without the query).
    pub path: String,
    /// The `Host` header as sent (keeps the explicit port).
    pub host_header: Option<String>,
    /// `Content-Type` as sent, if any.
    pub content_type: Option<String>,
    /// `Content-Length` as sent, if any.
    pub content_length: Option<String>,
    /// The request body's bytes.
    pub body: Vec<u8>,
    /// The `x-soracom-*` signature headers as received (all `None` in network mode).
    pub signature: keys::SignatureHeaders,
    /// The key whose signature the mock accepted, for a SIM-authenticated request.
    pub signed_by: Option<keys::SignedBy>,
}

/// Credentials the mock issued, for tests to compare with what was stored.
#[derive(Clone, Debug)]
pub struct Issued {
    /// `azure-iot` or `aws-iot`.
    pub target: &'static str,
    /// Azure `deviceId` or AWS `clientId`.
    pub id: String,
    /// Azure's assigned IoT Hub host name, or the AWS IoT data endpoint host.
    pub host: String,
    /// Azure DPS `operationId` (`None` for AWS IoT).
    pub operation_id: Option<String>,
    /// AWS region (`None` for Azure).
    pub region: Option<String>,
    /// The issued device certificate (PEM).
    pub certificate_pem: String,
    /// The issued private key (PEM, in the shape the mock's options ask for).
    pub private_key_pem: String,
    /// The root CA certificate sent with it (PEM).
    pub root_ca_pem: String,
    /// AWS IoT certificate ID (SHA-256 of the DER certificate, hex).
    pub certificate_id: String,
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

    /// A leaf certificate (PEM), its DER SHA-256 in hex, and its key pair.
    fn issue(
        &self,
        common_name: &str,
        sans: Vec<String>,
        eku: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<(String, String, KeyPair)> {
        let key = KeyPair::generate()?;
        let params = Self::leaf_params(common_name, sans, eku)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let id = sha256_hex(cert.der());
        Ok((cert.pem(), id, key))
    }

    /// A device (TLS client) certificate for a new key pair of `shape`: the certificate PEM,
    /// its DER SHA-256 in hex, and the private key PEM in the shape's form.
    fn issue_device(
        &self,
        common_name: &str,
        shape: KeyShape,
    ) -> anyhow::Result<(String, String, String)> {
        let params =
            Self::leaf_params(common_name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
        let (cert, key_pem) = match shape {
            KeyShape::Rsa2048Pkcs1 => {
                use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
                let public = RsaPublicKey(key.to_public_key().to_pkcs1_der()?.into_vec());
                let cert = params.signed_by(&public, &self.issuer)?;
                (cert, key.to_pkcs1_pem(LineEnding::LF)?.to_string())
            }
            KeyShape::EcP256Pkcs8
            | KeyShape::EcP256Sec1
            | KeyShape::EcP256Sec1NoCurve
            | KeyShape::EcP384Sec1NoCurve => {
                let p384 = shape == KeyShape::EcP384Sec1NoCurve;
                let key = KeyPair::generate_for(if p384 {
                    &rcgen::PKCS_ECDSA_P384_SHA384
                } else {
                    &rcgen::PKCS_ECDSA_P256_SHA256
                })?;
                let cert = params.signed_by(&key, &self.issuer)?;
                let key_pem = match shape {
                    KeyShape::EcP256Pkcs8 => key.serialize_pem(),
                    KeyShape::EcP256Sec1 => sec1_pem(&key, true)?,
                    _ => sec1_pem(&key, false)?,
                };
                (cert, key_pem)
            }
        };
        let id = sha256_hex(cert.der());
        Ok((cert.pem(), id, key_pem))
    }

    fn leaf_params(
        common_name: &str,
        sans: Vec<String>,
        eku: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<CertificateParams> {
        let mut params = CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // Valid from an hour ago (clock skew) for one year, like a real device certificate.
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365);
        params.extended_key_usages = vec![eku];
        Ok(params)
    }
}

/// An RSA public key for rcgen: PKCS#1 `RSAPublicKey` DER (RFC 8017 A.1.1), which rcgen wraps
/// in the certificate's `subjectPublicKeyInfo` with `rsaEncryption`.
struct RsaPublicKey(Vec<u8>);

impl rcgen::PublicKeyData for RsaPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Injection {
    prefix: String,
    fault: Fault,
    /// `None`: until cleared.
    remaining: Option<u32>,
}

struct State {
    config: MockConfig,
    ca: Ca,
    counter: u64,
    /// operationId -> (polls still answered `assigning`, `deviceId` requested at register).
    operations: HashMap<String, (u32, Option<String>)>,
    /// certificateId -> certificate PEM, for the AWS split flow.
    split_certificates: HashMap<String, String>,
    faults: Vec<Injection>,
    requests: Vec<RecordedRequest>,
    issued: Vec<Issued>,
    /// The Keys API's SQNs and issued keys.
    keys: keys::KeysApi,
    /// Inventory application keys a SIM-mode bootstrap let the device derive (base64).
    inventory_keys: Vec<String>,
    /// The token bucket of [`MockConfig::throttle`], made on the first provisioning request.
    bucket: Option<Bucket>,
}

/// Serve HTTP/1.1 on one accepted connection (TLS or plain TCP) until it closes or the mock
/// stops.
async fn serve_connection<IO>(io: IO, state: Arc<Mutex<State>>, mut stopped: watch::Receiver<bool>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::select! {
        _ = conn => {}
        _ = stopped.changed() => {}
    }
}

/// A running mock Krypton. Stops when [`MockKrypton::stop`] is called or it is dropped.
pub struct MockKrypton {
    /// Serving plain HTTP ([`MockConfig::plain_http`]).
    plain_http: bool,
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
        let (server_cert, _, server_key) = ca.issue(
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
        let acceptor = (!config.plain_http).then(|| tokio_rustls::TlsAcceptor::from(Arc::new(tls)));
        let plain_http = config.plain_http;

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
            split_certificates: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            issued: Vec::new(),
            keys: keys::KeysApi::default(),
            inventory_keys: Vec::new(),
            bucket: None,
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
                // Without it, small answers wait ~40 ms for the client's delayed ACK (Nagle).
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let state = serve_state.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            serve_connection(tls, state, stopped).await;
                        }
                        None => serve_connection(tcp, state, stopped).await,
                    }
                });
            }
        });
        Ok(MockKrypton {
            plain_http,
            addr,
            ca_pem,
            state,
            shutdown,
            task: Some(task),
        })
    }

    /// The base URL, e.g. `https://127.0.0.1:41234` (`http://` with [`MockConfig::plain_http`]).
    pub fn endpoint(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}", self.addr)
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
        self.push_fault(path_prefix, fault, None);
    }

    /// Answer the next `times` requests whose path starts with `path_prefix` with `fault`.
    pub fn inject_times(&self, path_prefix: &str, fault: Fault, times: u32) {
        self.push_fault(path_prefix, fault, Some(times));
    }

    fn push_fault(&self, prefix: &str, fault: Fault, remaining: Option<u32>) {
        self.state.lock().unwrap().faults.push(Injection {
            prefix: prefix.to_string(),
            fault,
            remaining,
        });
    }

    /// Remove every injected fault.
    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// Change the answers from now on (e.g. move the device to another IoT Hub).
    pub fn configure(&self, change: impl FnOnce(&mut MockConfig)) {
        change(&mut self.state.lock().unwrap().config);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Every set of credentials issued so far, in order.
    pub fn issued(&self) -> Vec<Issued> {
        self.state.lock().unwrap().issued.clone()
    }

    /// Check a SIM-mode provisioning request's signature against the keys the Keys API issued,
    /// at the current time (see [`keys::KeysApi::check_signature`]). Errors: the status and
    /// `{code, message}` to answer (401; 400 for a body without `keyId`).
    pub fn check_signature(
        &self,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Result<keys::SignedBy, keys::KeysError> {
        let state = self.state.lock().unwrap();
        state.keys.check_signature(
            &keys::SignatureHeaders::from_headers(headers),
            body,
            unix_ms(),
            state.config.sim_key_lifetime_secs,
        )
    }

    /// The `keyId`s the Keys API issued: `(keyId, IMSI, verified)`, sorted.
    pub fn sim_keys(&self) -> Vec<(String, String, bool)> {
        self.state.lock().unwrap().keys.issued()
    }

    /// The Inventory application keys (base64) that SIM-mode bootstraps, answered with
    /// `nonce` and `timestamp`, let the device derive, in order.
    pub fn inventory_application_keys(&self) -> Vec<String> {
        self.state.lock().unwrap().inventory_keys.clone()
    }

    /// XRES, CK and IK of every challenge the Keys API issued and still holds (for tests that
    /// prove these never reach a log or a report).
    pub fn sim_secrets(&self) -> Vec<keys::IssuedSecrets> {
        self.state.lock().unwrap().keys.issued_secrets()
    }

    /// Provisioning requests answered 429 by [`MockConfig::throttle`] so far.
    pub fn throttled(&self) -> u64 {
        let state = self.state.lock().unwrap();
        state.bucket.as_ref().map_or(0, |b| b.refused)
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

/// What the mock would answer before faults: status, content type, body bytes, extra headers.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Self {
        Answer {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(status, &json!({"code": code, "message": message}))
    }
}

/// A response body sent frame by frame (with an optional pause before each), then finished,
/// stalled or broken.
struct ScriptedBody {
    chunks: VecDeque<Bytes>,
    end: BodyEnd,
    pause: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

#[derive(Clone, Copy)]
enum BodyEnd {
    Finish,
    Stall,
    Break,
}

impl http_body::Body for ScriptedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if !self.chunks.is_empty()
            && let Some((every, sleep)) = self.pause.as_mut()
        {
            std::task::ready!(sleep.as_mut().poll(_cx));
            let next = tokio::time::Instant::now() + *every;
            sleep.as_mut().reset(next);
        }
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
        }
        match self.end {
            BodyEnd::Finish => Poll::Ready(None),
            // Never woken: the connection stays open until the client gives up or the mock stops.
            BodyEnd::Stall => Poll::Pending,
            BodyEnd::Break => Poll::Ready(Some(Err(std::io::Error::other("injected truncation")))),
        }
    }
}

type MockBody = BoxBody<Bytes, std::io::Error>;

fn build(answer: Answer, framing: Option<(Vec<Bytes>, BodyEnd, bool)>) -> Response<MockBody> {
    build_paced(answer, framing, None)
}

fn build_paced(
    answer: Answer,
    framing: Option<(Vec<Bytes>, BodyEnd, bool)>,
    pause: Option<Duration>,
) -> Response<MockBody> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", answer.content_type);
    for (name, value) in &answer.headers {
        builder = builder.header(*name, value);
    }
    let body = match framing {
        None => Full::new(Bytes::from(answer.body))
            .map_err(|never| match never {})
            .boxed(),
        Some((chunks, end, declare_length)) => {
            if declare_length {
                builder = builder.header("content-length", answer.body.len());
            }
            ScriptedBody {
                chunks: chunks.into(),
                end,
                pause: pause.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            }
            .boxed()
        }
    };
    builder.body(body).expect("static response parts are valid")
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Response<MockBody> {
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
    let content_length = header("content-length");
    let signature = keys::SignatureHeaders::from_headers(req.headers());
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => {
            return build(
                Answer::error(413, "KRY0413", "request body too large"),
                None,
            );
        }
    };
    tracing::info!(%method, %path, "mock Krypton: request");
    let (mut answer, fault) = {
        let mut state = state.lock().unwrap();
        state.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            host_header,
            content_type,
            content_length,
            body: body.clone(),
            signature: signature.clone(),
            signed_by: None,
        });
        if let Some(secs) = throttle(&mut state, &path) {
            let mut a = Answer::error(429, "KRY0429", "rate limit exceeded; try again later");
            a.headers.push(("retry-after", secs.to_string()));
            return build(a, None);
        }
        let fault = take_fault(&mut state, &path);
        let answer = match &fault {
            Some(Fault::Status {
                status,
                code,
                message,
            }) => Answer::error(*status, code, message),
            Some(Fault::RetryAfter { status, value }) => {
                let mut a = Answer::error(*status, &format!("KRY{status:04}"), "try again later");
                a.headers.push(("retry-after", value.clone()));
                a
            }
            Some(Fault::MalformedJson) => Answer {
                status: 200,
                content_type: "application/json",
                body: br#"{"operationId": "4.0"#.to_vec(),
                headers: Vec::new(),
            },
            Some(Fault::NonUtf8) => Answer {
                status: 200,
                content_type: "application/json",
                body: b"{\"host\": \"\xff\xfe\"}".to_vec(),
                headers: Vec::new(),
            },
            Some(Fault::Oversized(n)) => {
                let pad = "x".repeat(n.saturating_sub(16));
                Answer::json(200, &json!({"pad": pad}))
            }
            Some(Fault::Redirect(location)) => {
                let mut a = Answer::json(307, &json!({}));
                a.headers.push(("location", location.clone()));
                a
            }
            Some(Fault::Body(value)) => Answer::json(200, value),
            _ => route(
                &mut state,
                &method,
                &path,
                &body,
                &signature,
                fault.as_ref(),
            ),
        };
        (answer, fault)
    };
    match fault {
        Some(Fault::DelayHeaders(delay)) => {
            tokio::time::sleep(delay).await;
            build(answer, None)
        }
        Some(ref f @ (Fault::WrongType(ref field) | Fault::DropField(ref field)))
            if answer.status == 200 =>
        {
            let mut value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
            if let Some(obj) = value.as_object_mut() {
                if matches!(f, Fault::WrongType(_)) {
                    obj.insert(field.clone(), json!(42));
                } else {
                    obj.remove(field);
                }
            }
            answer.body = value.to_string().into_bytes();
            build(answer, None)
        }
        Some(Fault::StallBody) => {
            let half = Bytes::from(answer.body[..answer.body.len() / 2].to_vec());
            build(answer, Some((vec![half], BodyEnd::Stall, true)))
        }
        Some(Fault::TruncateBody) => {
            let half = Bytes::from(answer.body[..answer.body.len() / 2].to_vec());
            build(answer, Some((vec![half], BodyEnd::Break, true)))
        }
        Some(Fault::Trickle(pause)) => {
            let bytes = answer
                .body
                .iter()
                .map(|b| Bytes::copy_from_slice(&[*b]))
                .collect();
            build_paced(answer, Some((bytes, BodyEnd::Finish, true)), Some(pause))
        }
        Some(Fault::Chunked) => {
            let chunks = answer
                .body
                .chunks(16)
                .map(|c| Bytes::from(c.to_vec()))
                .collect();
            build(answer, Some((chunks, BodyEnd::Finish, false)))
        }
        _ => build(answer, None),
    }
}

/// [`MockConfig::throttle`]: `None` when the request may be served, else the `Retry-After`
/// seconds of its 429.
fn throttle(state: &mut State, path: &str) -> Option<u64> {
    let throttle = state.config.throttle?;
    if !path.starts_with("/v1/provisioning/") {
        return None;
    }
    let bucket = state.bucket.get_or_insert_with(|| Bucket {
        throttle,
        tokens: f64::from(throttle.burst.max(1)),
        at: std::time::Instant::now(),
        refused: 0,
    });
    bucket.throttle = throttle;
    bucket.take().err()
}

/// The first matching injected fault, counting it down.
fn take_fault(state: &mut State, path: &str) -> Option<Fault> {
    let index = state
        .faults
        .iter()
        .position(|i| path.starts_with(i.prefix.as_str()) && i.remaining != Some(0))?;
    let injection = &mut state.faults[index];
    if let Some(n) = injection.remaining.as_mut() {
        *n -= 1;
    }
    Some(injection.fault.clone())
}

/// SIM-authenticated mode's check of a provisioning request (see the crate docs): `Ok(None)`
/// for an unsigned request the mock serves, `Ok(Some(signer))` for a valid signature, the
/// 401 (or 400) to answer otherwise. Recorded in the request's [`RecordedRequest::signed_by`].
fn check_provisioning_signature(
    state: &mut State,
    body: &[u8],
    signature: &keys::SignatureHeaders,
    fault: Option<&Fault>,
) -> Result<Option<keys::SignedBy>, Answer> {
    if signature.signature.is_none() {
        if state.config.require_signatures {
            let e = keys::KeysError {
                status: 401,
                code: "KEY0401",
                message: "this server accepts SIM-authenticated (signed) requests only: x-soracom-signature is missing".into(),
            };
            return Err(Answer::json(e.status, &e.body()));
        }
        return Ok(None);
    }
    let mut checked = body.to_vec();
    if let Some(Fault::AlterSignedBody) = fault {
        // One space more after the opening brace: the same JSON, other bytes.
        checked.insert(usize::from(checked.first() == Some(&b'{')), b' ');
    }
    let now = match fault {
        Some(Fault::ClockSkew(ms)) => unix_ms().saturating_add_signed(*ms),
        _ => unix_ms(),
    };
    match state
        .keys
        .check_signature(signature, &checked, now, state.config.sim_key_lifetime_secs)
    {
        Ok(signer) => {
            if let Some(last) = state.requests.last_mut() {
                last.signed_by = Some(signer.clone());
            }
            Ok(Some(signer))
        }
        Err(e) => {
            tracing::info!(status = e.status, message = %e.message, "mock Krypton: signature refused");
            Err(Answer::json(e.status, &e.body()))
        }
    }
}

/// The normal answers, per operation.
fn route(
    state: &mut State,
    method: &str,
    path: &str,
    body: &[u8],
    signature: &keys::SignatureHeaders,
    fault: Option<&Fault>,
) -> Answer {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let params = request
        .get("requestParameters")
        .cloned()
        .unwrap_or(Value::Null);
    let param = |name: &str| params.get(name).and_then(Value::as_str).map(str::to_string);
    let mut imsi = state.config.imsi.clone();
    let mut signer_key = None;
    if path.starts_with("/v1/provisioning/") {
        match check_provisioning_signature(state, body, signature, fault) {
            // The identifiers are the signing SIM's, as Krypton issues them for that SIM.
            Ok(Some(signer)) => {
                imsi = signer.imsi;
                signer_key = Some(signer.key_id);
            }
            Ok(None) => {}
            Err(answer) => return answer,
        }
    }
    let now = time::OffsetDateTime::now_utc();
    const REGISTRATIONS: &str = "/v1/provisioning/azure/iot/registrations/";
    const AWS_CERTIFICATES: &str = "/v1/provisioning/aws/iot/certificates/";

    match (method, path) {
        ("POST", "/v1/keys") => match state.keys.start(&state.config.sim_subscribers, body) {
            Ok(challenge) => Answer::json(state.config.keys_challenge_status, &challenge),
            Err(e) => Answer::json(e.status, &e.body()),
        },
        ("POST", p) if p.starts_with("/v1/keys/") && p.ends_with("/verify") => {
            let key_id = &p["/v1/keys/".len()..p.len() - "/verify".len()];
            match state.keys.verify(key_id, body, unix_ms()) {
                Ok(answer) => Answer::json(200, &answer),
                Err(e) => Answer::json(e.status, &e.body()),
            }
        }
        ("POST", "/v1/provisioning/azure/iot/register") => {
            state.counter += 1;
            let op = format!("4.{:016x}", 0x6b72_7970_0000_0000u64 + state.counter);
            let polls = state.config.assigning_polls;
            state
                .operations
                .insert(op.clone(), (polls, param("deviceId")));
            Answer::json(200, &json!({"operationId": op, "status": "assigning"}))
        }
        ("GET" | "POST", p) if p.starts_with(REGISTRATIONS) => {
            let op = p[REGISTRATIONS.len()..].to_string();
            let Some((left, requested_id)) = state.operations.get(&op).cloned() else {
                return Answer::error(404, "KRY0404", "unknown operationId");
            };
            if let Some(Fault::RegistrationStatus(status)) = fault {
                return Answer::json(200, &json!({"operationId": op, "status": status}));
            }
            if left > 0 {
                state
                    .operations
                    .insert(op.clone(), (left - 1, requested_id));
                let mut answer =
                    Answer::json(200, &json!({"operationId": op, "status": "assigning"}));
                if let Some(secs) = state.config.retry_after_secs {
                    answer.headers.push(("retry-after", secs.to_string()));
                }
                return answer;
            }
            let device_id = requested_id.unwrap_or(imsi);
            let host = state.config.azure_hub.clone();
            let shape = state.config.azure_iot_key;
            let cn = state.config.azure_certificate_cn.as_deref();
            let (cert, id, key_pem) = match state.ca.issue_device(cn.unwrap_or(&device_id), shape) {
                Ok(issued) => issued,
                Err(e) => return Answer::error(500, "KRY0500", &format!("mock CA: {e}")),
            };
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
                certificate_id: id,
            });
            Answer::json(
                200,
                &json!({"operationId": op, "status": "assigned", "deviceId": device_id,
                        "host": host, "certificate": cert, "privateKey": key_pem,
                        "rootCaCertificate": root}),
            )
        }
        ("POST", "/v1/provisioning/aws/iot/bootstrap") => {
            let client_id = param("thingName").unwrap_or_else(|| format!("thing-{imsi}"));
            let region = state.config.aws_region.clone();
            let host = format!("krypton-mock-ats.iot.{region}.amazonaws.com");
            let issued = state.ca.issue_device(&client_id, state.config.aws_iot_key);
            let (cert, id, key_pem) = match issued {
                Ok(issued) => issued,
                Err(e) => return Answer::error(500, "KRY0500", &format!("mock CA: {e}")),
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
                certificate_id: id.clone(),
            });
            if params.get("skipCertificates") == Some(&Value::Bool(true)) {
                state.split_certificates.insert(id.clone(), cert);
                return Answer::json(
                    200,
                    &json!({"privateKey": key_pem, "clientId": client_id, "host": host, "certificateId": id}),
                );
            }
            Answer::json(
                200,
                &json!({"region": region, "host": host, "clientId": client_id,
                        "certificate": cert, "privateKey": key_pem, "rootCaCertificate": root}),
            )
        }
        ("POST", p) if p.starts_with(AWS_CERTIFICATES) => {
            match state.split_certificates.get(&p[AWS_CERTIFICATES.len()..]) {
                Some(cert) => Answer::json(200, &json!({"certificate": cert})),
                None => Answer::error(404, "KRY0404", "unknown certificateId"),
            }
        }
        ("POST", "/v1/provisioning/aws/iot/ca_certificate") => {
            Answer::json(200, &json!({"rootCaCertificate": state.ca.cert_pem}))
        }
        ("POST", "/v1/provisioning/aws/cognito/credentials") => {
            let expires = now + time::Duration::seconds(state.config.cognito_lifetime_secs as i64);
            let expiration = match state.config.expiration {
                ExpirationFormat::EpochMs => {
                    json!((expires.unix_timestamp_nanos() / 1_000_000) as u64)
                }
                ExpirationFormat::EpochSecs => json!(expires.unix_timestamp()),
                ExpirationFormat::Iso8601 => json!(
                    expires
                        .replace_nanosecond(0)
                        .unwrap_or(expires)
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                ),
            };
            state.counter += 1;
            Answer::json(
                200,
                &json!({"identityId": cognito_identity_id(&state.config.aws_region, &imsi),
                        "region": state.config.aws_region,
                        "credentials": {"accessKeyId": format!("ASIAMOCK{:08}", state.counter),
                                        "secretKey": CANARY_SECRET_KEY,
                                        "sessionToken": CANARY_SESSION_TOKEN,
                                        "expiration": expiration}}),
            )
        }
        ("POST", "/v1/provisioning/aws/cognito/open_id_tokens") => Answer::json(
            200,
            &json!({"region": state.config.aws_region, "token": CANARY_OPENID_TOKEN,
                    "identityId": cognito_identity_id(&state.config.aws_region, &imsi)}),
        ),
        ("POST", "/v1/provisioning/soracom/inventory/bootstrap") => {
            match request.get("endpoint").and_then(Value::as_str) {
                // A SIM-authenticated bootstrap is answered with `nonce` and `timestamp`: the
                // device derives the key from them and its CK (see
                // `keys::KeysApi::inventory_application_key`).
                Some(_) if signer_key.is_some() => {
                    let mut nonce = [0u8; 16];
                    rsa::rand_core::RngCore::fill_bytes(&mut rsa::rand_core::OsRng, &mut nonce);
                    let timestamp = unix_ms().to_string();
                    let key_id = signer_key.clone().unwrap_or_default();
                    if let Some(key) = state
                        .keys
                        .inventory_application_key(&key_id, &nonce, &timestamp)
                    {
                        state.inventory_keys.push(key);
                    }
                    Answer::json(
                        200,
                        &json!({"serverUri": "coaps://jp.inventory.soracom.io:5684",
                                "pskId": format!("d-mock{}", &imsi[imsi.len().saturating_sub(15)..]),
                                "nonce": BASE64.encode(nonce), "timestamp": timestamp}),
                    )
                }
                Some(_) => Answer::json(
                    200,
                    &json!({"serverUri": "coaps://jp.inventory.soracom.io:5684",
                            "pskId": format!("d-mock{}", &imsi[imsi.len().saturating_sub(15)..]),
                            "applicationKey": BASE64.encode(CANARY_APP_KEY_RAW)}),
                ),
                None => Answer::error(400, "KRY0400", "endpoint is required"),
            }
        }
        ("POST", "/v1/provisioning/soracom/arc/bootstrap") => Answer::json(
            200,
            &json!({"arcClientPeerPrivateKey": BASE64.encode(CANARY_WG_KEY_RAW),
                    "arcClientPeerIpAddress": "10.123.45.6",
                    "arcServerPeerPublicKey": BASE64.encode(b"mock-arc-server-public-key-32byt"),
                    "arcServerEndpoint": "mock.arc.soracom.io:11010",
                    "arcAllowedIPs": ["100.127.0.0/16"]}),
        ),
        ("POST", "/v1/provisioning/soracom/air/subscriber_metadata") => Answer::json(
            200,
            &json!({"imsi": imsi, "msisdn": "812012345678", "groupId": "mock-group-1",
                    "status": "active", "speedClass": "s1.standard",
                    "tags": {"name": "mock-gateway"}}),
        ),
        ("POST", "/v1/provisioning/soracom/air/userdata") => Answer {
            status: 200,
            content_type: "text/plain",
            body: CANARY_USERDATA.as_bytes().to_vec(),
            headers: Vec::new(),
        },
        _ => Answer::error(404, "KRY0404", &format!("no operation at {method} {path}")),
    }
}

/// The current Unix time, ms.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An rcgen EC key as SEC1 `EC PRIVATE KEY` PEM (RFC 5915), its curve named in `parameters`
/// when `with_curve`. rcgen writes PKCS#8 whose inner `ECPrivateKey` names no curve (the
/// algorithm does); that inner key is re-encoded with or without the curve.
fn sec1_pem(key: &KeyPair, with_curve: bool) -> anyhow::Result<String> {
    use pkcs8::der::{Decode, Encode};
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("mock key conversion: {e}");
    let pkcs8_der = key.serialize_der();
    let info = pkcs8::PrivateKeyInfo::from_der(&pkcs8_der).map_err(|e| fail(&e))?;
    let curve = info.algorithm.parameters_oid().map_err(|e| fail(&e))?;
    let mut ec = sec1::EcPrivateKey::from_der(info.private_key).map_err(|e| fail(&e))?;
    ec.parameters = with_curve.then_some(sec1::EcParameters::NamedCurve(curve));
    let der = ec.to_der().map_err(|e| fail(&e))?;
    pkcs8::der::pem::encode_string("EC PRIVATE KEY", pkcs8::LineEnding::LF, &der)
        .map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use krypton_uicc::aka::{UsimVerdict, usim_authenticate};
    use krypton_uicc::soft::SimRecord;

    const SIM: &str = r#"{"imsi": "001010123456789", "k": "465b5ce8b199b49faa5f0a2ee238a6bc",
        "opc": "cd63cb71954a9f4e48a5994e37a02baf", "amf": "8000", "sqn": "000000000020"}"#;

    fn config(challenge_status: u16) -> MockConfig {
        let record = SimRecord::parse(SIM.as_bytes()).unwrap();
        MockConfig {
            sim_subscribers: HashMap::from([keys::SimSubscriber::from_sim_record(&record)]),
            keys_challenge_status: challenge_status,
            ..MockConfig::default()
        }
    }

    fn post(mock: &MockKrypton, path: &str, body: &Value) -> (u16, Value) {
        let mut state = mock.state.lock().unwrap();
        let answer = route(
            &mut state,
            "POST",
            path,
            body.to_string().as_bytes(),
            &keys::SignatureHeaders::default(),
            None,
        );
        (answer.status, serde_json::from_slice(&answer.body).unwrap())
    }

    /// The throttle serves its burst, then refuses with the whole seconds until a token, and
    /// serves again once one has been gained.
    #[test]
    fn throttle_bucket_serves_the_burst_then_refuses() {
        let mut bucket = Bucket {
            throttle: Throttle {
                rate_per_sec: 20,
                burst: 2,
            },
            tokens: 2.0,
            at: std::time::Instant::now(),
            refused: 0,
        };
        assert_eq!(bucket.take(), Ok(()));
        assert_eq!(bucket.take(), Ok(()));
        assert_eq!(
            bucket.take(),
            Err(1),
            "a token is 50 ms away: Retry-After 1 s"
        );
        assert_eq!(bucket.refused, 1);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(bucket.take(), Ok(()));
        assert_eq!(bucket.refused, 1);
    }

    /// The Keys API through the mock's routes, then a request signed with the CK it agreed.
    #[tokio::test]
    async fn keys_api_routes_and_signature_check() {
        let mock = MockKrypton::start("127.0.0.1:0".parse().unwrap(), config(401))
            .await
            .unwrap();
        let (status, challenge) = post(&mock, "/v1/keys", &json!({"imsi": "001010123456789"}));
        assert_eq!(
            status, 401,
            "the challenge comes with the configured status"
        );
        let b64 = |f: &str| -> [u8; 16] {
            BASE64
                .decode(challenge[f].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        };
        let key_id = challenge["keyId"].as_str().unwrap().to_owned();
        let sim = SimRecord::parse(SIM.as_bytes()).unwrap();
        let UsimVerdict::Accept {
            outcome: krypton_uicc::AuthOutcome::Res { res, ck, .. },
            ..
        } = usim_authenticate(&sim.subscriber(), sim.sqn, &b64("rand"), &b64("autn"))
        else {
            panic!("the SIM refused the mock's challenge");
        };
        let (status, _) = post(
            &mock,
            &format!("/v1/keys/{key_id}/verify"),
            &json!({"res": BASE64.encode(res.expose())}),
        );
        assert_eq!(status, 200);
        assert_eq!(
            mock.sim_keys(),
            [(key_id.clone(), "001010123456789".into(), true)]
        );

        let body = format!(r#"{{"keyId":"{key_id}"}}"#);
        let ts = unix_ms().to_string();
        let mut headers = hyper::HeaderMap::new();
        headers.insert("x-soracom-timestamp", ts.parse().unwrap());
        headers.insert("x-soracom-digest-algorithm", "SHA-256".parse().unwrap());
        headers.insert(
            "x-soracom-signature",
            keys::signature(body.as_bytes(), &ts, ck.expose())
                .parse()
                .unwrap(),
        );
        let signed = mock.check_signature(&headers, body.as_bytes()).unwrap();
        assert_eq!(signed.imsi, "001010123456789");
        let err = mock
            .check_signature(&headers, format!(r#"{{"keyId":"{key_id}" }}"#).as_bytes())
            .unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (401, "signature mismatch")
        );

        let (status, error) = post(&mock, "/v1/keys", &json!({"imsi": "001019999999999"}));
        assert_eq!((status, error["code"].as_str()), (404, Some("KEY0404")));
        let (status, error) = post(&mock, "/v1/keys/k-none/verify", &json!({"res": "AAAA"}));
        assert_eq!((status, error["code"].as_str()), (401, Some("KEY0401")));
        mock.stop().await;
    }
}
