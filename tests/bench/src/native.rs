//! The guest's provisioning logic built natively: [`NativeCapabilities`] implements the
//! guest's [`Capabilities`] with a blocking HTTP client (`ureq` over rustls with ring, the
//! crypto the host's TLS uses) and the host's own [`SecretStore`], so that the only difference
//! from the component in the host is WebAssembly, the component model and `wasi:http`.
//!
//! Like the host (one HTTP/1.1 connection per request, as wasmtime-wasi-http's
//! `default_send_request`), it keeps no idle connection: every request opens its own.

use krypton_guest::client::{
    Capabilities, Endpoint, HttpRequest, HttpResponse, Method, SendFailure, transport_failure,
};
use krypton_guest::types::model::{AuthOutcome, Error, Timeouts, TransportKind, UiccError};
use krypton_host::SecretStore;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The `user-agent` the native build sends.
const USER_AGENT: &str = concat!("krypton-native-bench/", env!("CARGO_PKG_VERSION"));

/// A `ureq` agent that trusts only the PEM certificates in `ca_pem` (the mock Krypton's CA)
/// and keeps no idle connection. Errors: `ca_pem` holds no valid certificate.
pub fn agent(ca_pem: &[u8]) -> anyhow::Result<ureq::Agent> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let ca = Certificate::from_pem(ca_pem)
        .map_err(|e| anyhow::anyhow!("the CA certificate: {e}"))?
        .to_owned();
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .user_agent(USER_AGENT)
        .build();
    Ok(config.into())
}

/// [`Capabilities`] natively: HTTP through a `ureq` agent, bundles in a host [`SecretStore`],
/// `std` clocks and sleep. No SIM: [`Capabilities::read_imsi`] and
/// [`Capabilities::authenticate`] answer `unavailable`. Progress lines are dropped (the host
/// turns the component's into log records that no subscriber prints in the bench either).
pub struct NativeCapabilities {
    agent: ureq::Agent,
    store: SecretStore,
    random: u64,
}

impl NativeCapabilities {
    /// Capabilities over `agent` (see [`agent`]) and `store`.
    pub fn new(agent: ureq::Agent, store: SecretStore) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
        seed.write_u64(0);
        NativeCapabilities {
            agent,
            store,
            random: seed.finish() | 1,
        }
    }
}

/// The process's monotonic clock origin.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn failure(endpoint: &Endpoint, what: &str, e: &ureq::Error) -> SendFailure {
    let detail = e.to_string();
    let (error, transient) = match e {
        ureq::Error::Timeout(_) => (Error::Timeout(format!("{what}: {detail}")), true),
        ureq::Error::BodyExceedsLimit(limit) => (
            Error::invalid(
                "body",
                format!("response body larger than the {limit}-byte limit"),
            ),
            false,
        ),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => (
            Error::Transport(transport_failure(
                TransportKind::ConnectionRefused,
                endpoint,
                what.to_string(),
                None,
            )),
            true,
        ),
        _ => (
            Error::Transport(transport_failure(
                TransportKind::Other,
                endpoint,
                what.to_string(),
                Some(&detail),
            )),
            true,
        ),
    };
    SendFailure { error, transient }
}

impl Capabilities for NativeCapabilities {
    fn send(
        &mut self,
        endpoint: &Endpoint,
        request: &HttpRequest,
        timeouts: Timeouts,
        total_ms: u64,
        max_body: usize,
    ) -> Result<HttpResponse, SendFailure> {
        let url = format!(
            "{}://{}{}",
            endpoint.scheme, endpoint.authority, request.path
        );
        let what = endpoint.request_line(request.method, &request.path);
        let ms = |ms: u32| Some(Duration::from_millis(u64::from(ms)));
        let result = match request.method {
            Method::Get => {
                let mut builder = self
                    .agent
                    .get(&url)
                    .config()
                    .timeout_connect(ms(timeouts.connect_ms))
                    .timeout_recv_response(ms(timeouts.first_byte_ms))
                    .timeout_recv_body(ms(timeouts.between_bytes_ms))
                    .timeout_global(Some(Duration::from_millis(total_ms)))
                    .build()
                    .header("accept", "application/json");
                for (name, value) in &request.headers {
                    builder = builder.header(name, value);
                }
                builder.call()
            }
            Method::Post => {
                let mut builder = self
                    .agent
                    .post(&url)
                    .config()
                    .timeout_connect(ms(timeouts.connect_ms))
                    .timeout_recv_response(ms(timeouts.first_byte_ms))
                    .timeout_recv_body(ms(timeouts.between_bytes_ms))
                    .timeout_global(Some(Duration::from_millis(total_ms)))
                    .build()
                    .header("accept", "application/json")
                    .header("content-type", "application/json");
                for (name, value) in &request.headers {
                    builder = builder.header(name, value);
                }
                builder.send(request.body.as_deref().unwrap_or_default())
            }
        };
        let mut response = result.map_err(|e| failure(endpoint, &what, &e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(max_body as u64)
            .read_to_vec()
            .map_err(|e| failure(endpoint, &what, &e))?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    fn monotonic_ms(&self) -> u64 {
        origin().elapsed().as_millis() as u64
    }

    fn unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn sleep_ms(&mut self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn random_u64(&mut self) -> u64 {
        // xorshift64 (Marsaglia, "Xorshift RNGs", 2003): backoff jitter only, never keys.
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        x
    }

    fn log(&mut self, _line: &str) {}

    fn store_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.store
            .get(name)
            .map_err(|e| Error::Storage(e.to_string()))
    }

    fn store_put(&mut self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.store
            .put(name, value)
            .map_err(|e| Error::Storage(e.to_string()))
    }

    fn store_delete(&mut self, name: &str) -> Result<bool, Error> {
        self.store
            .delete(name)
            .map_err(|e| Error::Storage(e.to_string()))
    }

    fn read_imsi(&mut self) -> Result<String, UiccError> {
        Err(UiccError::Unavailable("no SIM in the native bench".into()))
    }

    fn authenticate(&mut self, _rand: &[u8], _autn: &[u8]) -> Result<AuthOutcome, UiccError> {
        Err(UiccError::Unavailable("no SIM in the native bench".into()))
    }
}
