//! The outbound HTTP capability behind `wasi:http/outgoing-handler@0.2.12`.
//!
//! wasmtime-wasi-http's stock sender trusts only the compiled-in web PKI roots, reaches any
//! host, and knows no extra CA. [`OutboundPolicy`] replaces it through the
//! [`WasiHttpHooks::send_request`] hook:
//! * only `host:port` pairs on the allow-list are reached; anything else is refused with
//!   `HttpRequestDenied` before a socket is opened (fail closed: an empty list allows nothing);
//! * TLS uses rustls with the Mozilla roots (`webpki-roots`) plus any CA bundle the operator
//!   passes (`--ca-file`), e.g. the mock Krypton's test CA;
//! * the guest's connect / first-byte / between-bytes timeouts apply, with host defaults when
//!   the guest sets none.
//!
//! The connection code follows wasmtime-wasi-http 48's `default_send_request` (one HTTP/1.1
//! connection per request), with our TLS configuration and allow-list in front of it.

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiHttpHooks};

/// Host default timeouts when the guest sets none.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest CA bundle read, bytes (the whole Mozilla bundle is ~250 KiB).
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

fn read_ca_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("reading CA file {}", path.display()))?;
    let meta = file.metadata()?;
    anyhow::ensure!(
        meta.is_file(),
        "CA file {} is not a regular file",
        path.display()
    );
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_CA_FILE_BYTES,
        "CA file {} is larger than {MAX_CA_FILE_BYTES} bytes",
        path.display()
    );
    Ok(bytes)
}

/// Where the component may connect and whom it trusts. Cheap to clone.
#[derive(Clone)]
pub struct OutboundPolicy {
    allowed: Arc<Vec<(String, u16)>>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundPolicy")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

/// `host:port` of a URL, with the scheme's default port filled in.
///
/// Errors: the text is not an absolute http(s) URL with a host.
pub fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => anyhow::bail!("`{url}` must start with https:// (or http://)"),
    };
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .with_context(|| format!("`{url}` has no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    // `http::Uri` accepts any digits after the colon and then reports no port: check the text,
    // or an impossible port would silently become the scheme's default.
    let after_host = match authority.as_str().rfind(']') {
        Some(i) => &authority.as_str()[i + 1..],
        None => authority.as_str(),
    };
    let port = match after_host.rsplit_once(':') {
        Some((_, text)) => match text.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => anyhow::bail!("`{url}`: the port must be a number from 1 to 65535"),
        },
        None => default_port,
    };
    Ok((host.to_ascii_lowercase(), port))
}

impl OutboundPolicy {
    /// A policy that allows exactly the listed `host:port` pairs and trusts the web PKI roots
    /// plus every certificate in `extra_ca_pem` (PEM text, may be empty).
    ///
    /// Errors: the PEM holds no certificate, or a certificate rustls refuses as a root.
    pub fn new(allowed: Vec<(String, u16)>, extra_ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
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
    pub fn with_ca_file(
        allowed: Vec<(String, u16)>,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let pem = ca_file.map(read_ca_file).transpose()?;
        Self::new(allowed, pem.as_deref()).with_context(|| match ca_file {
            Some(p) => format!("CA file {}", p.display()),
            None => "TLS roots".to_string(),
        })
    }

    /// A TLS handshake over `tcp` with this policy's roots, within `timeout` (for
    /// `doctor`). Errors: the handshake's failure, as text.
    pub async fn tls_handshake(
        &self,
        tcp: TcpStream,
        server_name: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let name = match server_name.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::from(ip),
            Err(_) => ServerName::try_from(server_name.to_string())
                .map_err(|e| format!("invalid server name: {e}"))?,
        };
        match tokio::time::timeout(
            timeout,
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no handshake within {} ms", timeout.as_millis())),
        }
    }

    /// Whether `host:port` is on the allow-list.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed
            .iter()
            .any(|(h, p)| *p == port && h.eq_ignore_ascii_case(host))
    }
}

type BoxFuture<T> = Box<dyn Future<Output = T> + Send>;

/// A TCP or TLS stream.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}
type SendResult = Result<
    (
        http::Response<wasmtime_wasi_http::WasiBody>,
        BoxFuture<Result<(), HttpError>>,
    ),
    HttpError,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<RequestOptions>,
        _fut: BoxFuture<Result<(), HttpError>>,
    ) -> BoxFuture<SendResult> {
        let policy = self.clone();
        Box::new(async move { policy.send(request, options).await })
    }
}

/// A response body that fails when no frame arrives within the between-bytes timeout.
struct TimedBody {
    inner: hyper::body::Incoming,
    between_bytes: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + self.between_bytes;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::Hyper(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// Whether a response's body is delimited by Content-Length or chunked coding, or has no body
/// (1xx, 204, 304; RFC 9112 §6.3).
fn has_framing<B>(response: &http::Response<B>) -> bool {
    let status = response.status().as_u16();
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return true;
    }
    let headers = response.headers();
    headers.contains_key(http::header::CONTENT_LENGTH)
        || headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
            })
}

impl OutboundPolicy {
    async fn send(
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
        let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
        if !self.allows(&host, port) {
            tracing::warn!(%host, port, "outbound request refused: not on the allow-list");
            return Err(HttpError::HttpRequestDenied);
        }
        let opt = options.unwrap_or_default();
        let connect_timeout = opt.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let first_byte_timeout = opt.first_byte_timeout.unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
        let between_bytes = opt
            .between_bytes_timeout
            .unwrap_or(DEFAULT_BETWEEN_BYTES_TIMEOUT)
            .max(Duration::from_millis(1));

        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        tracing::debug!(%addr, uri = %uri, "connecting");
        let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(HttpError::ConnectionRefused);
            }
            Ok(Err(e)) => return Err(HttpError::Connect(e)),
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
                    .map_err(|e| {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        HttpError::TlsCertificateError
                    })?;
                Box::new(tls)
            } else {
                Box::new(tcp)
            };
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
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
            .map_err(|_| HttpError::ConnectionReadTimeout)??;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> http::Response<()> {
        let mut b = http::Response::builder().status(status);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn close_delimited_bodies_have_no_framing() {
        assert!(has_framing(&response(200, &[("content-length", "12")])));
        assert!(has_framing(&response(
            200,
            &[("transfer-encoding", "chunked")]
        )));
        assert!(has_framing(&response(
            200,
            &[("transfer-encoding", "gzip, Chunked")]
        )));
        assert!(has_framing(&response(204, &[])));
        assert!(has_framing(&response(304, &[])));
        assert!(!has_framing(&response(200, &[])));
        assert!(!has_framing(&response(500, &[("connection", "close")])));
    }

    #[test]
    fn allow_list_matches_host_and_port_exactly() {
        let policy = OutboundPolicy::new(
            vec![host_port("https://Krypton.soracom.io:8036").unwrap()],
            None,
        )
        .unwrap();
        assert!(policy.allows("krypton.soracom.io", 8036));
        assert!(policy.allows("KRYPTON.SORACOM.IO", 8036));
        assert!(!policy.allows("krypton.soracom.io", 443));
        assert!(!policy.allows("evil.example", 8036));
        assert!(
            !OutboundPolicy::new(Vec::new(), None)
                .unwrap()
                .allows("localhost", 80)
        );
        assert_eq!(
            host_port("https://[::1]:9/x").unwrap(),
            ("::1".to_string(), 9)
        );
        assert_eq!(host_port("https://h").unwrap(), ("h".to_string(), 443));
        for bad in [
            "https://h:99999",
            "https://h:0",
            "https://h:abc",
            "https://[::1]:70000",
        ] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
        assert!(host_port("ftp://h").is_err());
        assert!(OutboundPolicy::new(Vec::new(), Some(b"not pem")).is_err());
    }
}
