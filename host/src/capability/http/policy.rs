//! [`OutboundPolicy`]: the allow-list, the TLS roots (web PKI plus a CA file), and the
//! connection code of one request (one HTTP/1.1 connection per request, as wasmtime-wasi-http
//! 48's `default_send_request`).

use super::body::*;
use super::errors::*;
use super::*;

use anyhow::Context as _;
use http_body_util::BodyExt;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions};

/// Read a CA bundle: a regular file (a symlink to one is fine) of at most
/// [`MAX_CA_FILE_BYTES`]. The file is opened with `O_NONBLOCK` so that a FIFO cannot block the
/// host, then checked with `fstat` on the open descriptor.
///
/// Errors: the path cannot be opened, is not a regular file (directory, FIFO, device, socket),
/// or is larger than the cap; each names the path and what to pass instead.
pub(super) fn read_ca_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("reading CA file {}", path.display()))?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        anyhow::bail!(
            "CA file {} is {what}: pass a regular file holding PEM certificates",
            path.display()
        );
    }
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_CA_FILE_BYTES,
        "CA file {} is larger than {MAX_CA_FILE_BYTES} bytes: pass only the CA certificates to trust",
        path.display()
    );
    Ok(bytes)
}

/// Where the component may connect and whom it trusts. Cheap to clone.
#[derive(Clone)]
pub struct OutboundPolicy {
    allowed: Arc<Vec<Origin>>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundPolicy")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl OutboundPolicy {
    /// A policy that allows exactly the listed origins (scheme, host and port; see
    /// [`Origin::parse`]) and trusts the web PKI roots plus every certificate in
    /// `extra_ca_pem` (PEM text, may be empty).
    ///
    /// Errors: the PEM holds no certificate, or a certificate rustls refuses as a root.
    pub fn new(allowed: Vec<Origin>, extra_ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        if let Some(pem) = extra_ca_pem {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .context("the CA bundle is not valid PEM")?;
            anyhow::ensure!(
                !certs.is_empty(),
                "the CA bundle holds no CERTIFICATE block"
            );
            for cert in certs {
                roots
                    .add(cert)
                    .context("a certificate in the CA bundle cannot be used as a trust root")?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS configuration")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(OutboundPolicy {
            allowed: Arc::new(allowed),
            tls: Arc::new(tls),
        })
    }

    /// Like [`OutboundPolicy::new`], reading the CA bundle from a regular file of at most
    /// [`MAX_CA_FILE_BYTES`].
    ///
    /// Errors: those of [`OutboundPolicy::new`], and a CA file that cannot be read, is not a
    /// regular file, or is too large.
    pub fn with_ca_file(allowed: Vec<Origin>, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let pem = ca_file.map(read_ca_file).transpose()?;
        Self::new(allowed, pem.as_deref()).with_context(|| match ca_file {
            Some(p) => format!("CA file {}", p.display()),
            None => "TLS roots".to_string(),
        })
    }

    /// A TLS handshake over `tcp` with this policy's roots, within `timeout` (for
    /// `doctor`). Errors: why the handshake failed, classified as for a Krypton call.
    pub async fn tls_handshake(
        &self,
        tcp: TcpStream,
        server_name: &str,
        timeout: Duration,
    ) -> Result<(), HandshakeFailure> {
        let name = match server_name.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::from(ip),
            Err(_) => ServerName::try_from(server_name.to_string()).map_err(|_| {
                HandshakeFailure::Other("the host is not a valid server name".into())
            })?,
        };
        match tokio::time::timeout(
            timeout,
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(handshake_failure(&e)),
            Err(_) => Err(HandshakeFailure::Other(format!(
                "no handshake within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Whether `scheme://host:port` is on the allow-list (see [`Origin::matches`]).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allowed.iter().any(|o| o.matches(scheme, host, port))
    }

    /// The allow-list.
    pub fn allowed(&self) -> &[Origin] {
        &self.allowed
    }
}

impl OutboundPolicy {
    pub(super) async fn send(
        self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<RequestOptions>,
    ) -> SendResult {
        let uri = request.uri().clone();
        let use_tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        // `Uri::host` keeps an IPv6 literal's brackets.
        let host = uri
            .host()
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let scheme = uri.scheme_str().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
        if !self.allows(scheme, &host, port) {
            tracing::warn!(%scheme, %host, port, "outbound request refused: not on the allow-list");
            return Err(HttpError::HttpRequestDenied);
        }
        let opt = options.unwrap_or_default();
        let connect_timeout = opt.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let first_byte_timeout = opt.first_byte_timeout.unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
        let between_bytes = opt
            .between_bytes_timeout
            .unwrap_or(DEFAULT_BETWEEN_BYTES_TIMEOUT)
            .max(Duration::from_millis(1));

        tracing::debug!(%host, port, uri = %uri, "connecting");
        // DNS and TCP share the connect timeout.
        let connect_by = tokio::time::Instant::now() + connect_timeout;
        let addrs = match tokio::time::timeout_at(connect_by, lookup(&host, port)).await {
            Ok(result) => result?,
            Err(_) => return Err(HttpError::DnsTimeout),
        };
        let tcp = match tokio::time::timeout_at(connect_by, TcpStream::connect(&addrs[..])).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(connect_error(&e)),
            Err(_) => return Err(HttpError::ConnectionTimeout),
        };
        let _ = tcp.set_nodelay(true);

        // One HTTP/1.1 connection over TLS (or plain TCP for an http:// endpoint).
        let handshake = async {
            let stream: Box<dyn Io> = if use_tls {
                let name = match host.parse::<std::net::IpAddr>() {
                    Ok(ip) => ServerName::from(ip),
                    Err(_) => ServerName::try_from(host.clone())
                        .map_err(|_| HttpError::HttpRequestUriInvalid)?,
                };
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| tls_error(&e))?;
                Box::new(tls)
            } else {
                Box::new(tcp)
            };
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(hyper_error)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection closed with an error");
                }
            });
            Ok::<_, HttpError>(sender)
        };
        let mut sender = tokio::time::timeout(connect_timeout, handshake)
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;

        // The request line carries only the path (origin-form): we never talk to a proxy.
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .build()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;

        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| HttpError::ConnectionReadTimeout)?
            .map_err(hyper_error)?;
        // Bodies are read by their framing, never "until close": without Content-Length or
        // chunked transfer coding a connection cut short looks like a complete answer.
        if !has_framing(&response) {
            tracing::warn!(status = %response.status(), "refusing a close-delimited response body");
            return Err(HttpError::HttpResponseTransferCoding(Some(
                "close-delimited body (no Content-Length, not chunked)".into(),
            )));
        }
        let response = response.map(|inner| {
            TimedBody {
                inner,
                between_bytes,
                sleep: Box::pin(tokio::time::sleep(between_bytes)),
            }
            .boxed_unsync()
        });
        Ok((response, Box::new(async { Ok(()) }) as BoxFuture<_>))
    }
}
