//! Unit tests of the outbound HTTP capability.

use super::body::*;
use super::errors::*;
use super::hook::*;
use super::policy::*;
use super::*;
use std::path::Path;
use wasmtime_wasi_http::Error as HttpError;

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
        OutboundPolicy::new(vec![Origin::parse("http://127.0.0.1:8080").unwrap()], None).unwrap();
    assert!(plain.allows("http", "127.0.0.1", 8080));
    assert!(!plain.allows("https", "127.0.0.1", 8080));
    let v6 = OutboundPolicy::new(vec![Origin::parse("https://[::1]:9").unwrap()], None).unwrap();
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
    assert!(rcode(dns_error(LookupError::new(libc::EAI_MEMORY))).starts_with("resolver error: "));
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
