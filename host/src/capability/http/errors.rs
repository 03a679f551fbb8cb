//! The resolver (`getaddrinfo(3)` with its `EAI_*` code kept) and the mapping of connection,
//! TLS and HTTP failures onto `wasi:http` error codes.

use wasmtime_wasi_http::Error as HttpError;

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
pub(super) fn dns_error(error: dns_lookup::LookupError) -> HttpError {
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
pub async fn lookup(host: &str, port: u16) -> Result<Vec<std::net::SocketAddr>, HttpError> {
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
pub(super) fn getaddrinfo(name: &str, port: u16) -> Result<Vec<std::net::SocketAddr>, HttpError> {
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
pub(super) fn connect_error(e: &std::io::Error) -> HttpError {
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
pub(super) fn certificate_reason(e: &rustls::CertificateError) -> &'static str {
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
pub(super) fn handshake_failure(e: &std::io::Error) -> HandshakeFailure {
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
pub(super) fn alert_name(alert: rustls::AlertDescription) -> String {
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
pub(super) fn tls_error(e: &std::io::Error) -> HttpError {
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
pub(super) fn hyper_error(e: hyper::Error) -> HttpError {
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
