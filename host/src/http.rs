//! The outbound HTTP capability behind `wasi:http/outgoing-handler@0.2.12`.
//!
//! wasmtime-wasi-http's stock sender trusts only the compiled-in web PKI roots, reaches any
//! host, and knows no extra CA. [`OutboundPolicy`] replaces it through the
//! [`WasiHttpHooks::send_request`] hook:
//! * only origins (`scheme://host:port`) on the allow-list are reached; anything else, including
//!   the right `host:port` under another scheme, is refused with `HttpRequestDenied` before a
//!   socket is opened (fail closed: an empty list allows nothing);
//! * TLS uses rustls with the Mozilla roots (`webpki-roots`) plus any CA bundle the operator
//!   passes (`--ca-file`), e.g. the mock Krypton's test CA;
//! * the guest's connect / first-byte / between-bytes timeouts apply, with host defaults when
//!   the guest sets none;
//! * one call may send at most [`MAX_REQUESTS_PER_CALL`] requests, each with at most
//!   [`MAX_REQUEST_HEADERS`] header fields and [`MAX_REQUEST_HEADER_BYTES`] of header names and
//!   values ([`OutboundCall`], the per-call half of the hooks).
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

use crate::runtime::LimitTrip;

/// Host default TCP + TLS connect timeout when the guest sets none.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Host default wait for the first byte of a response when the guest sets none.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Host default wait between two chunks of a response body when the guest sets none.
pub const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest CA bundle read, bytes (the whole Mozilla bundle is ~250 KiB).
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Most outgoing HTTP requests one call may send, refused ones included. The next one is
/// refused with `connection-limit-reached` and the call is stopped. The component sends one
/// request per Krypton call and attempt: an Azure registration polled every second (the
/// default) for the default 120 s deadline sends about 120, so the cap leaves twice that (a
/// runaway loop is stopped within a few hundred requests, not at the deadline).
pub const MAX_REQUESTS_PER_CALL: u32 = 256;

/// Most header fields in one outgoing request, the `Host` field wasmtime adds included.
pub const MAX_REQUEST_HEADERS: usize = 64;

/// Most bytes of header names plus values in one outgoing request (8 KiB, the request
/// header budget common HTTP servers and proxies enforce).
pub const MAX_REQUEST_HEADER_BYTES: usize = 8 * 1024;

/// Most bytes one `wasi:http` `fields` resource may hold in memory, as wasmtime-wasi-http
/// counts them (`WasiHttpCtx::set_field_size_limit`: names and values plus bookkeeping). Twice
/// [`MAX_REQUEST_HEADER_BYTES`], so the per-request cap is the one a component meets first.
pub const FIELDS_MEMORY_BYTES: usize = 2 * MAX_REQUEST_HEADER_BYTES;

/// Read a CA bundle: a regular file (a symlink to one is fine) of at most
/// [`MAX_CA_FILE_BYTES`]. The file is opened with `O_NONBLOCK` so that a FIFO cannot block the
/// host, then checked with `fstat` on the open descriptor.
///
/// Errors: the path cannot be opened, is not a regular file (directory, FIFO, device, socket),
/// or is larger than the cap; each names the path and what to pass instead.
fn read_ca_file(path: &Path) -> anyhow::Result<Vec<u8>> {
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

/// One entry of the outbound allow-list: a scheme, a host and a port, compared as a whole
/// (the "origin" of RFC 6454 §4), written as a URL like Spin's `allowed_outbound_hosts`
/// entries: `https://krypton.soracom.io:8036`, `http://127.0.0.1:8080`; the port defaults to the
/// scheme's (443, 80). Wildcards are not supported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `https` or `http`, lowercase.
    pub scheme: String,
    /// A DNS name (lowercase) or an IP literal (IPv6 without brackets).
    pub host: String,
    /// 1-65535.
    pub port: u16,
}

impl Origin {
    /// The origin of an absolute `http(s)` URL, e.g. `https://krypton.soracom.io:8036`. A path
    /// of `/` or none is accepted (so a Krypton endpoint, which has no path, parses);
    /// user information, another path, a query or a fragment are refused, since an allow-list
    /// entry cannot limit them.
    ///
    /// Errors: not a URL, a scheme other than `http`/`https`, no host, a port outside 1-65535,
    /// or any of the parts above.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (host, port) = host_port(url)?;
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("`{}` is not a URL", redacted(url)))?;
        // Messages below show the URL without any password it carries.
        let url = &redacted(url);
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        anyhow::ensure!(
            !uri.authority().is_some_and(|a| a.as_str().contains('@')),
            "`{url}`: user information (`user@`) is not allowed"
        );
        anyhow::ensure!(
            matches!(
                uri.path_and_query().map(|p| p.as_str()),
                None | Some("") | Some("/")
            ) && !url.contains('#'),
            "`{url}`: give the base URL without a path, query or fragment, e.g. https://krypton.soracom.io:8036"
        );
        anyhow::ensure!(
            host.parse::<std::net::IpAddr>().is_ok()
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'),
            "`{url}`: the host must be a DNS name or an IP address (wildcards are not supported)"
        );
        Ok(Origin { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` goes to this origin: the scheme and port
    /// equal, the host equal ignoring ASCII case (IP literals compared as addresses, so
    /// `[::1]` and `[0::1]` are one host).
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let same_host = match (
            self.host.parse::<std::net::IpAddr>(),
            host.parse::<std::net::IpAddr>(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => self.host.eq_ignore_ascii_case(host),
        };
        self.port == port && self.scheme.eq_ignore_ascii_case(scheme) && same_host
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
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

/// `url` as it may be shown in a message or a log: user information (`user:password@`, RFC
/// 3986 §3.2.1, which "is deprecated" for passwords) is replaced by `***@`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `host:port` of a URL, with the scheme's default port filled in.
///
/// Errors: the text is not an absolute http(s) URL with a host.
pub fn host_port(raw: &str) -> anyhow::Result<(String, u16)> {
    // Messages show the URL without any password it carries.
    let url = &redacted(raw);
    let uri: http::Uri = raw
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

/// The `wasi:http` hooks of one call: an [`OutboundPolicy`] plus the call's request count.
/// A request past [`MAX_REQUESTS_PER_CALL`], or with more than [`MAX_REQUEST_HEADERS`] fields or
/// [`MAX_REQUEST_HEADER_BYTES`] of headers, is refused without a connection, and the limit is
/// recorded in the call's [`LimitTrip`] so that the runtime stops the call when the component
/// gets control back.
pub struct OutboundCall {
    policy: OutboundPolicy,
    sent: u32,
    trip: LimitTrip,
}

impl OutboundCall {
    /// The hooks of one call under `policy`; limits are reported to `trip`.
    pub fn new(policy: OutboundPolicy, trip: LimitTrip) -> Self {
        OutboundCall {
            policy,
            sent: 0,
            trip,
        }
    }

    /// Requests this call has asked to send so far, refused ones included.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// The limit `request` breaks, if any, with the error the component gets for it.
    fn over_limit<B>(&mut self, request: &http::Request<B>) -> Option<(String, HttpError)> {
        self.sent = self.sent.saturating_add(1);
        if self.sent > MAX_REQUESTS_PER_CALL {
            return Some((
                format!("its limit of {MAX_REQUESTS_PER_CALL} outgoing requests per call"),
                HttpError::ConnectionLimitReached,
            ));
        }
        let headers = request.headers();
        if headers.len() > MAX_REQUEST_HEADERS {
            return Some((
                format!(
                    "its limit of {MAX_REQUEST_HEADERS} header fields per request (it sent {})",
                    headers.len()
                ),
                HttpError::HttpRequestHeaderSectionSize(None),
            ));
        }
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if bytes > MAX_REQUEST_HEADER_BYTES {
            return Some((
                format!(
                    "its limit of {MAX_REQUEST_HEADER_BYTES} header bytes per request (it sent {bytes})"
                ),
                HttpError::HttpRequestHeaderSectionSize(u32::try_from(bytes).ok()),
            ));
        }
        None
    }
}

impl WasiHttpHooks for OutboundCall {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<RequestOptions>,
        _fut: BoxFuture<Result<(), HttpError>>,
    ) -> BoxFuture<SendResult> {
        if let Some((limit, error)) = self.over_limit(&request) {
            tracing::warn!(limit = %limit, "outbound request refused: the component exceeded a sandbox limit");
            self.trip.trip(limit);
            return Box::new(async move { Err(error) });
        }
        let policy = self.policy.clone();
        Box::new(async move { policy.send(request, options).await })
    }
}

/// The `rcode` of the `dns-error` this host reports for a name that does not exist
/// (`getaddrinfo` answered `EAI_NONAME`). The component matches it as data: `NXDOMAIN` is
/// RFC 2136 §2.2's name for RCODE 3 ("Name Error", RFC 1035 §4.1.1); such a name is not
/// looked up again. Every other resolver failure is a `dns-error` with another `rcode`
/// ([`DNS_TEMPORARY_FAILURE`], [`DNS_FAILURE`], ...), which the component may retry.
pub const DNS_NAME_NOT_FOUND: &str = "NXDOMAIN";
/// The `rcode` for a resolver that did not answer or answered SERVFAIL (`EAI_AGAIN`).
pub const DNS_TEMPORARY_FAILURE: &str = "temporary failure";
/// The `rcode` for a resolver failure that is not temporary (`EAI_FAIL`).
pub const DNS_FAILURE: &str = "resolver failure";
/// The `rcode` for a name that exists but has no address (`EAI_NODATA`).
pub const DNS_NO_ADDRESS: &str = "no address for the name";

/// The `dns-error` for a failed `getaddrinfo(3)`, by its return code (POSIX `EAI_*`, glibc's
/// `EAI_NODATA`): `EAI_SYSTEM` carries the `errno` text, any other code `gai_strerror(3)`'s.
fn dns_error(error: dns_lookup::LookupError) -> HttpError {
    use dns_lookup::LookupErrorKind as Kind;
    let rcode = match error.kind() {
        Kind::NoName => DNS_NAME_NOT_FOUND.to_string(),
        Kind::Again => DNS_TEMPORARY_FAILURE.to_string(),
        Kind::Fail => DNS_FAILURE.to_string(),
        Kind::NoData => DNS_NO_ADDRESS.to_string(),
        _ => {
            // dns-lookup's text for a code is "failed to lookup address information: " and
            // gai_strerror's text; for EAI_SYSTEM it is the errno's, as std prints it.
            let text = error.to_string();
            let text = text
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&text);
            format!("resolver error: {text}")
        }
    };
    HttpError::DnsError {
        rcode: Some(rcode),
        info_code: None,
    }
}

/// Resolve `host` (a DNS name or an IP literal) to the addresses to connect to, in the
/// resolver's order, with the system resolver (`getaddrinfo(3)`: `/etc/hosts`, then DNS, as
/// `nsswitch.conf` says), through the `dns-lookup` crate rather than std's or tokio's lookups,
/// which turn the resolver's `EAI_*` code into text: the code is what tells a name that does
/// not exist (never retried) from a resolver that did not answer (may be retried).
///
/// Errors: `dns-error` with the `rcode` of [`dns_error`].
pub(crate) async fn lookup(host: &str, port: u16) -> Result<Vec<std::net::SocketAddr>, HttpError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![std::net::SocketAddr::new(ip, port)]);
    }
    if host.contains('\0') {
        return Err(HttpError::HttpRequestUriInvalid);
    }
    let name = host.to_string();
    tokio::task::spawn_blocking(move || getaddrinfo(&name, port))
        .await
        .map_err(|_| HttpError::InternalError(Some("the resolver task failed".into())))?
}

/// `getaddrinfo(3)` of `name` for stream sockets: each address once, in the resolver's order,
/// with `port`. Errors: [`dns_error`]; a list without an IPv4 or IPv6 address is `EAI_NODATA`.
fn getaddrinfo(name: &str, port: u16) -> Result<Vec<std::net::SocketAddr>, HttpError> {
    use std::net::SocketAddr;
    let hints = dns_lookup::AddrInfoHints {
        socktype: dns_lookup::SockType::Stream.into(),
        ..dns_lookup::AddrInfoHints::default()
    };
    let list = dns_lookup::getaddrinfo(Some(name), None, Some(hints)).map_err(dns_error)?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    // An entry of another address family is an `Err` of the iterator: skipped.
    for info in list.flatten() {
        let addr = match info.sockaddr {
            SocketAddr::V4(v4) => SocketAddr::new((*v4.ip()).into(), port),
            SocketAddr::V6(v6) => SocketAddr::V6(std::net::SocketAddrV6::new(
                *v6.ip(),
                port,
                0,
                v6.scope_id(),
            )),
        };
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(dns_error(dns_lookup::LookupError::new(libc::EAI_NODATA)));
    }
    Ok(addrs)
}

/// The `wasi:http` error for a failed TCP connect, by the OS error (connect(2)).
fn connect_error(e: &std::io::Error) -> HttpError {
    use std::io::ErrorKind as K;
    tracing::debug!(error = %e, "connect failed");
    match e.kind() {
        K::ConnectionRefused => HttpError::ConnectionRefused,
        K::TimedOut => HttpError::ConnectionTimeout,
        K::HostUnreachable => HttpError::DestinationUnavailable,
        K::NetworkUnreachable | K::AddrNotAvailable => HttpError::DestinationIpUnroutable,
        K::ConnectionReset | K::ConnectionAborted => HttpError::ConnectionTerminated,
        K::PermissionDenied => HttpError::DestinationIpProhibited,
        _ => HttpError::InternalError(Some(format!("connecting failed: {e}"))),
    }
}

/// Why a TLS handshake failed, in plain words (for `doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The server's certificate is not trusted; why (e.g. "issued by an unknown CA").
    Untrusted(String),
    /// The server answered with something that is not TLS (e.g. plain HTTP).
    NotTls,
    /// Another failure (an alert, a closed connection, a timeout).
    Other(String),
}

/// Why rustls rejected a certificate, in plain words.
fn certificate_reason(e: &rustls::CertificateError) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => "issued by an unknown CA",
        C::Expired | C::ExpiredContext { .. } => "expired",
        C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet",
        C::NotValidForName | C::NotValidForNameContext { .. } => "issued for another name",
        C::Revoked => "revoked",
        C::BadSignature => "its signature does not verify",
        _ => "rejected",
    }
}

/// Classify a failed handshake like [`tls_error`] does for a Krypton call.
fn handshake_failure(e: &std::io::Error) -> HandshakeFailure {
    let reason = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => certificate_reason(c),
        _ => "rejected",
    };
    match tls_error(e) {
        HttpError::TlsCertificateError => HandshakeFailure::Untrusted(reason.to_string()),
        HttpError::HttpProtocolError => HandshakeFailure::NotTls,
        HttpError::TlsAlertReceived {
            alert_message: Some(m),
            ..
        } => HandshakeFailure::Other(format!("the server sent the TLS alert `{m}`")),
        HttpError::ConnectionTerminated => {
            HandshakeFailure::Other("the server closed the connection during the handshake".into())
        }
        _ => HandshakeFailure::Other("a TLS protocol error".into()),
    }
}

/// The plain name of a TLS alert (RFC 8446 §6, RFC 5246 §7.2).
fn alert_name(alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    let name = match alert {
        A::CloseNotify => "close notify",
        A::UnexpectedMessage => "unexpected message",
        A::BadRecordMac => "bad record MAC",
        A::RecordOverflow => "record overflow",
        A::HandshakeFailure => "handshake failure",
        A::BadCertificate => "bad certificate",
        A::UnsupportedCertificate => "unsupported certificate",
        A::CertificateRevoked => "certificate revoked",
        A::CertificateExpired => "certificate expired",
        A::CertificateUnknown => "certificate unknown",
        A::IllegalParameter => "illegal parameter",
        A::UnknownCA => "unknown CA",
        A::AccessDenied => "access denied",
        A::DecodeError => "decode error",
        A::DecryptError => "decrypt error",
        A::ProtocolVersion => "protocol version",
        A::InsufficientSecurity => "insufficient security",
        A::InternalError => "internal error",
        A::InappropriateFallback => "inappropriate fallback",
        A::UserCanceled => "user canceled",
        A::MissingExtension => "missing extension",
        A::UnsupportedExtension => "unsupported extension",
        A::UnrecognisedName => "unrecognised name",
        A::CertificateRequired => "certificate required",
        A::NoApplicationProtocol => "no application protocol",
        other => return format!("alert {}", u8::from(other)),
    };
    name.to_string()
}

/// The `wasi:http` error for a failed TLS handshake: a certificate rustls rejects (unknown
/// issuer, expired, another name) is `tls-certificate-error`; an answer that is not TLS at
/// all (a plain-HTTP server answers the ClientHello with `HTTP/1.1 400 ...`, whose first byte
/// is no TLS content type) is `HTTP-protocol-error`, so that the component reports another
/// protocol; an alert from the server is `TLS-alert-received`; a connection closed mid-way
/// `connection-terminated`; the rest `TLS-protocol-error`.
fn tls_error(e: &std::io::Error) -> HttpError {
    use rustls::{Error as TlsError, InvalidMessage};
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<TlsError>());
    tracing::debug!(error = %e, "TLS handshake failed");
    match inner {
        Some(TlsError::InvalidCertificate(_)) => HttpError::TlsCertificateError,
        Some(TlsError::InvalidMessage(
            InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
        )) => HttpError::HttpProtocolError,
        Some(TlsError::AlertReceived(alert)) => HttpError::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(alert_name(*alert)),
        },
        Some(_) => HttpError::TlsProtocolError,
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted => HttpError::ConnectionTerminated,
            _ => HttpError::TlsProtocolError,
        },
    }
}

/// The `wasi:http` error for a failed HTTP/1.1 exchange, logged once at debug level. An
/// answer that does not parse as HTTP/1.1 (a TLS server answers a plain-text request with a
/// TLS alert record) is `HTTP-protocol-error`, which the component reports as another
/// protocol and does not retry.
fn hyper_error(e: hyper::Error) -> HttpError {
    tracing::debug!(error = %e, "HTTP/1.1 exchange failed");
    if e.is_parse_too_large() {
        HttpError::HttpResponseHeaderSectionSize(None)
    } else if e.is_parse() || e.is_parse_status() {
        HttpError::HttpProtocolError
    } else if e.is_incomplete_message() {
        HttpError::HttpResponseIncomplete
    } else if e.is_timeout() {
        HttpError::HttpResponseTimeout
    } else if e.is_canceled() || e.is_closed() {
        HttpError::ConnectionTerminated
    } else if let Some(io) =
        std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>())
    {
        // An I/O failure under hyper: a body cut short by the peer closing is incomplete.
        match io.kind() {
            std::io::ErrorKind::UnexpectedEof => HttpError::HttpResponseIncomplete,
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => HttpError::ConnectionTerminated,
            std::io::ErrorKind::TimedOut => HttpError::ConnectionReadTimeout,
            _ => HttpError::InternalError(Some(format!("{e}: {io}"))),
        }
    } else {
        HttpError::InternalError(Some(e.to_string()))
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
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(hyper_error(e)))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_never_reaches_a_message() {
        assert_eq!(
            redacted("https://user:secretpw@127.0.0.1:8036/x"),
            "https://***@127.0.0.1:8036/x"
        );
        assert_eq!(
            redacted("https://krypton.soracom.io:8036"),
            "https://krypton.soracom.io:8036"
        );
        for url in [
            "https://user:secretpw@127.0.0.1:8036",
            "https://user:secretpw@127.0.0.1:99999",
            "ftp://user:secretpw@host",
        ] {
            let err = format!("{:#}", Origin::parse(url).unwrap_err());
            assert!(!err.contains("secretpw"), "{err}");
            assert!(err.contains("***@"), "{err}");
        }
    }

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
    fn allow_list_matches_scheme_host_and_port_exactly() {
        let policy = OutboundPolicy::new(
            vec![Origin::parse("https://Krypton.soracom.io:8036").unwrap()],
            None,
        )
        .unwrap();
        assert!(policy.allows("https", "krypton.soracom.io", 8036));
        assert!(policy.allows("HTTPS", "KRYPTON.SORACOM.IO", 8036));
        // The right host and port under another scheme: refused (a downgrade to plain text).
        assert!(!policy.allows("http", "krypton.soracom.io", 8036));
        assert!(!policy.allows("ftp", "krypton.soracom.io", 8036));
        assert!(!policy.allows("https", "krypton.soracom.io", 443));
        assert!(!policy.allows("https", "evil.example", 8036));
        assert!(!policy.allows("https", "krypton.soracom.io.evil.example", 8036));
        assert!(
            !OutboundPolicy::new(Vec::new(), None)
                .unwrap()
                .allows("http", "localhost", 80)
        );
        let plain =
            OutboundPolicy::new(vec![Origin::parse("http://127.0.0.1:8080").unwrap()], None)
                .unwrap();
        assert!(plain.allows("http", "127.0.0.1", 8080));
        assert!(!plain.allows("https", "127.0.0.1", 8080));
        let v6 =
            OutboundPolicy::new(vec![Origin::parse("https://[::1]:9").unwrap()], None).unwrap();
        assert!(v6.allows("https", "[0:0::1]", 9));
        assert!(v6.allows("https", "::1", 9));
        assert!(!v6.allows("https", "::2", 9));
    }

    #[test]
    fn origins_parse_field_by_field() {
        let o = Origin::parse("HTTPS://Krypton.Soracom.IO:8036").unwrap();
        assert_eq!(o.scheme, "https");
        assert_eq!(o.host, "krypton.soracom.io");
        assert_eq!(o.port, 8036);
        assert_eq!(o.to_string(), "https://krypton.soracom.io:8036");
        let o = Origin::parse("http://h").unwrap();
        assert_eq!(
            (o.scheme.as_str(), o.host.as_str(), o.port),
            ("http", "h", 80)
        );
        let o = Origin::parse("https://h/").unwrap();
        assert_eq!(
            (o.scheme.as_str(), o.host.as_str(), o.port),
            ("https", "h", 443)
        );
        let o = Origin::parse("https://[::1]:9").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 9));
        assert_eq!(o.to_string(), "https://[::1]:9");
        for bad in [
            "https://h:99999",
            "https://h:0",
            "https://h:abc",
            "https://[::1]:70000",
            "ftp://h",
            "h:8036",
            "//h:8036",
            "https://user@h",
            "https://h/path",
            "https://h/?q=1",
            "https://h#frag",
            "*://h:8036",
            "https://*.example.com",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            host_port("https://[::1]:9/x").unwrap(),
            ("::1".to_string(), 9)
        );
        assert_eq!(host_port("https://h").unwrap(), ("h".to_string(), 443));
        assert!(OutboundPolicy::new(Vec::new(), Some(b"not pem")).is_err());
    }

    fn get(headers: &[(&str, String)]) -> http::Request<()> {
        let mut b = http::Request::builder().uri("https://h:1/");
        for (n, v) in headers {
            b = b.header(*n, v.as_str());
        }
        b.body(()).unwrap()
    }

    #[test]
    fn per_call_request_and_header_limits() {
        let policy = OutboundPolicy::new(Vec::new(), None).unwrap();
        let trip = LimitTrip::default();
        let mut call = OutboundCall::new(policy.clone(), trip.clone());
        for _ in 0..MAX_REQUESTS_PER_CALL {
            assert!(call.over_limit(&get(&[])).is_none());
        }
        let (limit, error) = call.over_limit(&get(&[])).unwrap();
        assert_eq!(limit, "its limit of 256 outgoing requests per call");
        assert!(matches!(error, HttpError::ConnectionLimitReached));
        assert_eq!(call.sent(), MAX_REQUESTS_PER_CALL + 1);

        let mut call = OutboundCall::new(policy.clone(), trip.clone());
        let many: Vec<_> = (0..=MAX_REQUEST_HEADERS)
            .map(|i| ("x-h", format!("{i}")))
            .collect();
        let exact: Vec<_> = many[..MAX_REQUEST_HEADERS].to_vec();
        assert!(call.over_limit(&get(&exact)).is_none());
        let (limit, error) = call.over_limit(&get(&many)).unwrap();
        assert_eq!(
            limit,
            "its limit of 64 header fields per request (it sent 65)"
        );
        assert!(matches!(
            error,
            HttpError::HttpRequestHeaderSectionSize(None)
        ));

        // 3 bytes of name plus the value: exactly at the cap passes, one byte more does not.
        let at_cap = "v".repeat(MAX_REQUEST_HEADER_BYTES - 3);
        assert!(call.over_limit(&get(&[("x-h", at_cap.clone())])).is_none());
        let (limit, error) = call
            .over_limit(&get(&[("x-h", format!("{at_cap}v"))]))
            .unwrap();
        assert_eq!(
            limit,
            "its limit of 8192 header bytes per request (it sent 8193)"
        );
        assert!(matches!(
            error,
            HttpError::HttpRequestHeaderSectionSize(Some(8193))
        ));
    }

    #[test]
    fn ca_files_must_be_regular_files() {
        let tmp = tempfile::tempdir().unwrap();
        let err = format!("{:#}", read_ca_file(tmp.path()).unwrap_err());
        assert!(err.contains("is a directory: pass a regular file"), "{err}");
        let err = format!("{:#}", read_ca_file(Path::new("/dev/null")).unwrap_err());
        assert!(err.contains("is a device"), "{err}");
        // A FIFO with no writer: opening it for reading without O_NONBLOCK blocks forever.
        let fifo = tmp.path().join("ca.pem");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_ca_file(&path).map_err(|e| format!("{e:#}")));
        });
        let outcome = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("reading a FIFO as the CA file blocked the host");
        let err = outcome.unwrap_err();
        assert!(err.contains("is a FIFO: pass a regular file"), "{err}");
        // A symlink to a regular file is fine (distributions link CA bundles).
        let real = tmp.path().join("real.pem");
        std::fs::write(&real, b"pem").unwrap();
        let link = tmp.path().join("link.pem");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read_ca_file(&link).unwrap(), b"pem");
        std::fs::write(&real, vec![b'a'; MAX_CA_FILE_BYTES as usize + 1]).unwrap();
        let err = format!("{:#}", read_ca_file(&real).unwrap_err());
        assert!(err.contains("is larger than 4194304 bytes"), "{err}");
    }

    fn rcode(e: HttpError) -> String {
        match e {
            HttpError::DnsError { rcode, .. } => rcode.unwrap(),
            other => panic!("expected DnsError, got {other:?}"),
        }
    }

    #[test]
    fn resolver_codes_become_dns_errors_the_component_tells_apart() {
        use dns_lookup::LookupError;
        assert_eq!(
            rcode(dns_error(LookupError::new(libc::EAI_NONAME))),
            "NXDOMAIN"
        );
        assert_eq!(
            rcode(dns_error(LookupError::new(libc::EAI_AGAIN))),
            "temporary failure"
        );
        assert_eq!(
            rcode(dns_error(LookupError::new(libc::EAI_FAIL))),
            "resolver failure"
        );
        assert_eq!(
            rcode(dns_error(LookupError::new(libc::EAI_NODATA))),
            "no address for the name"
        );
        assert!(
            rcode(dns_error(LookupError::new(libc::EAI_MEMORY))).starts_with("resolver error: ")
        );
    }

    #[tokio::test]
    async fn a_name_under_invalid_is_not_found_and_literals_are_not_looked_up() {
        // `.invalid` never resolves (RFC 6761 §6.4): the resolver says so at once.
        assert_eq!(
            rcode(lookup("does-not-exist.invalid", 8036).await.unwrap_err()),
            DNS_NAME_NOT_FOUND
        );
        assert_eq!(
            lookup("127.0.0.1", 9).await.unwrap(),
            vec!["127.0.0.1:9".parse().unwrap()]
        );
        assert_eq!(
            lookup("::1", 9).await.unwrap(),
            vec!["[::1]:9".parse().unwrap()]
        );
        let local = lookup("localhost", 9).await.unwrap();
        assert!(
            local.iter().all(|a| a.ip().is_loopback() && a.port() == 9),
            "{local:?}"
        );
    }

    #[test]
    fn tls_and_connect_failures_get_their_own_codes() {
        let wrap = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert!(matches!(
            tls_error(&wrap(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))),
            HttpError::TlsCertificateError
        ));
        assert!(matches!(
            tls_error(&wrap(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            ))),
            HttpError::HttpProtocolError
        ));
        let HttpError::TlsAlertReceived {
            alert_id,
            alert_message,
        } = tls_error(&wrap(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure,
        )))
        else {
            panic!()
        };
        assert_eq!(alert_id, Some(0x28));
        assert_eq!(alert_message.as_deref(), Some("handshake failure"));
        assert!(matches!(
            tls_error(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            HttpError::ConnectionTerminated
        ));
        use std::io::ErrorKind as K;
        for (kind, expected) in [
            (K::ConnectionRefused, "connection refused"),
            (K::TimedOut, "connection timeout"),
            (K::HostUnreachable, "destination unavailable"),
            (
                K::NetworkUnreachable,
                "destination IP address is unroutable",
            ),
            (K::ConnectionReset, "connection terminated"),
        ] {
            assert_eq!(
                connect_error(&std::io::Error::from(kind)).to_string(),
                expected
            );
        }
    }
}
