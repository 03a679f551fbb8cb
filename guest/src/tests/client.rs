//! The HTTP policy: endpoints, retries and backoff, `Retry-After`, redirects, error statuses, transport failures in words.

use super::*;

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
            request: "POST https://krypton.example:8036/v1/provisioning/azure/iot/register".into(),
        }
    );
    assert_eq!(fake.store, before);
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
fn endpoint_keeps_the_explicit_port_and_knows_the_default_one() {
    let e = Endpoint::parse("https://krypton.soracom.io:8036/").unwrap();
    assert_eq!(e.authority, "krypton.soracom.io:8036");
    assert_eq!(
        (e.host.as_str(), e.port, e.port_given),
        ("krypton.soracom.io", 8036, true)
    );
    assert_eq!(
        e.request_line(Method::Post, "/v1/provisioning/aws/iot/bootstrap"),
        "POST https://krypton.soracom.io:8036/v1/provisioning/aws/iot/bootstrap"
    );
    // No port: the scheme's is what is connected to, and the request line says so.
    let e = Endpoint::parse("https://krypton.soracom.io").unwrap();
    assert_eq!((e.port, e.port_given), (443, false));
    assert_eq!(
        e.request_line(Method::Get, "/x"),
        "GET https://krypton.soracom.io:443/x"
    );
    let e = Endpoint::parse("http://[::1]:9").unwrap();
    assert_eq!(
        (e.scheme.as_str(), e.host.as_str(), e.port),
        ("http", "::1", 9)
    );
    assert_eq!(e.host_port(), "[::1]:9");
    let e = Endpoint::parse("http://127.0.0.1").unwrap();
    assert_eq!((e.port, e.port_given), (80, false));
}

#[test]
fn an_endpoint_with_a_path_is_refused_naming_it() {
    // It used to be kept as a prefix: `https://h/v1` requested `/v1/v1/provisioning/...`.
    for url in [
        "https://krypton.soracom.io:8036/v1",
        "https://krypton.soracom.io/v1/",
        "http://127.0.0.1:9/prefix/",
    ] {
        let Err(Error::InvalidRequest(m)) = Endpoint::parse(url) else {
            panic!("{url} was accepted")
        };
        assert_eq!(
            m,
            format!(
                "endpoint `{url}`: give the base URL without a path, e.g. \
                 https://krypton.soracom.io:8036 (the component adds the path \
                 `/v1/provisioning/...` itself)"
            )
        );
    }
    let mut fake = Fake::default();
    let mut req = request(Target::AwsIot);
    req.endpoint = "https://krypton.example:8036/v1".into();
    assert!(matches!(
        provision(&mut fake, &req),
        Err(Error::InvalidRequest(_))
    ));
    assert!(fake.requests.is_empty());
}

#[test]
fn transient_failures_are_retried_with_jittered_backoff() {
    let mut fake = Fake {
        random: 123_456,
        ..Fake::default()
    };
    fake.responses
        .push_back(send_failed(TransportKind::ConnectionRefused));
    let mut fake = fake
        .reply(503, json!({"code": "KRY503", "message": "busy"}))
        .reply(200, aws_ok());
    provision(&mut fake, &with_retries(Target::AwsIot, 4)).unwrap();
    assert_eq!(fake.requests.len(), 3);
    // Full jitter: random % (min(max, base * 2^n) + 1) with base 500 ms, max 8 s.
    assert_eq!(fake.slept, vec![123_456 % 501, 123_456 % 1001]);
    assert!(fake.store.contains_key("aws-iot"));
}

#[test]
fn retry_after_is_honoured_in_seconds_and_as_an_http_date() {
    // 1_800_000_000_000 ms = Fri, 15 Jan 2027 08:00:00 GMT; the fake clock adds 10 ms per call.
    let mut fake = Fake::default()
        .reply_raw(429, &[("retry-after", "7")], b"")
        .reply_raw(
            503,
            &[("retry-after", "Fri, 15 Jan 2027 08:00:30 GMT")],
            b"",
        )
        .reply_raw(503, &[("retry-after", "soon")], b"")
        .reply_raw(503, &[("retry-after", "86400")], b"")
        .reply(200, aws_ok());
    fake.random = 99;
    let mut req = with_retries(Target::AwsIot, 5);
    req.deadline_ms = 3_600_000;
    provision(&mut fake, &req).unwrap();
    assert_eq!(fake.slept[0], 7_000);
    // The date is 30 s after the fake clock's start; 20 ms and 7 s have passed since.
    assert_eq!(fake.slept[1], 30_000 - 7_000 - 20);
    // A malformed value falls back to backoff (99 % (2000 + 1)).
    assert_eq!(fake.slept[2], 99);
    // One day is capped at 300 s.
    assert_eq!(fake.slept[3], MAX_RETRY_AFTER_MS);
}

#[test]
fn the_final_error_says_what_was_tried() {
    let mut fake = Fake::default();
    for _ in 0..3 {
        fake = fake.reply(502, json!({"code": "KRY502", "message": "upstream"}));
    }
    let err = provision(&mut fake, &with_retries(Target::AwsIot, 3)).unwrap_err();
    let Error::HttpStatus {
        status,
        request,
        code,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(status, 502);
    assert_eq!(code.as_deref(), Some("KRY502"));
    assert_eq!(request, format!("{BOOTSTRAP_LINE} (after 3 attempts)"));
    assert_eq!(fake.requests.len(), 3);

    let mut fake = Fake::default();
    for _ in 0..2 {
        fake.responses
            .push_back(send_failed(TransportKind::ConnectionRefused));
    }
    let err = provision(&mut fake, &with_retries(Target::AwsIot, 2)).unwrap_err();
    let Error::Transport(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.kind, TransportKind::ConnectionRefused);
    assert_eq!(e.request, BOOTSTRAP_LINE);
    assert_eq!(e.attempts, 2);
    assert_eq!(
        e.message,
        "krypton.example:8036 refused the connection: nothing listens on port 8036 there"
    );
}

#[test]
fn client_errors_and_permanent_failures_are_not_retried() {
    let mut fake = Fake::default().reply(400, json!({"code": "KRY400", "message": "bad"}));
    assert!(matches!(
        provision(&mut fake, &with_retries(Target::AwsIot, 5)).unwrap_err(),
        Error::HttpStatus { status: 400, .. }
    ));
    assert_eq!(fake.requests.len(), 1);
    let mut fake = Fake::default();
    fake.responses
        .push_back(send_failed(TransportKind::UntrustedCertificate));
    assert_eq!(
        provision(&mut fake, &with_retries(Target::AwsIot, 5)).unwrap_err(),
        Error::Transport(failure(TransportKind::UntrustedCertificate))
    );
    assert!(fake.slept.is_empty());
    // A name that does not exist and another protocol are not retried either; a resolver
    // failure, a refused or lost connection, a connect timeout and no route may be.
    for kind in [
        TransportKind::NameNotFound,
        TransportKind::ProtocolMismatch,
        TransportKind::TlsFailure,
        TransportKind::Denied,
    ] {
        let mut fake = Fake::default();
        fake.responses.push_back(send_failed(kind));
        let err = provision(&mut fake, &with_retries(Target::AwsIot, 5)).unwrap_err();
        assert!(
            matches!(&err, Error::Transport(e) if e.kind == kind && e.attempts == 1),
            "{err:?}"
        );
        assert_eq!(fake.requests.len(), 1, "{kind:?}");
    }
    for kind in [
        TransportKind::NameResolutionFailed,
        TransportKind::ConnectionRefused,
        TransportKind::ConnectionTimeout,
        TransportKind::Unreachable,
        TransportKind::ConnectionLost,
    ] {
        let mut fake = Fake::default();
        fake.responses.push_back(send_failed(kind));
        fake = fake.reply(200, aws_ok());
        provision(&mut fake, &with_retries(Target::AwsIot, 5)).unwrap();
        assert_eq!(fake.requests.len(), 2, "{kind:?}");
    }
}

#[test]
fn retries_stop_at_the_deadline() {
    let mut fake = Fake::default()
        .reply_raw(503, &[("retry-after", "60")], b"")
        .reply(200, aws_ok());
    let mut req = with_retries(Target::AwsIot, 5);
    req.deadline_ms = 30_000;
    let err = provision(&mut fake, &req).unwrap_err();
    assert!(
        matches!(err, Error::HttpStatus { status: 503, .. }),
        "{err:?}"
    );
    assert!(fake.slept.is_empty());
    assert!(
        fake.logs
            .iter()
            .any(|l| l.contains("would pass the operation deadline"))
    );
}

#[test]
fn endpoints_with_an_impossible_port_are_refused() {
    for url in [
        "https://127.0.0.1:99999",
        "https://127.0.0.1:0",
        "https://h:65536",
    ] {
        assert!(
            matches!(Endpoint::parse(url), Err(Error::InvalidRequest(m)) if m.contains("port")),
            "{url}"
        );
    }
    let long = format!("https://{}", "a".repeat(5000));
    let Err(Error::InvalidRequest(m)) = Endpoint::parse(&format!("{long}?q")) else {
        panic!()
    };
    assert!(m.len() < 200, "{m}");
}

#[test]
fn every_transport_kind_is_put_in_plain_words_with_its_own_hint() {
    let krypton = Endpoint::parse("https://krypton.example:8036").unwrap();
    let no_port = Endpoint::parse("https://krypton.example").unwrap();
    let plain = Endpoint::parse("http://127.0.0.1:8080").unwrap();
    let words = |kind, e: &Endpoint, detail: Option<&str>| {
        let t = transport_failure(kind, e, "R".into(), detail);
        assert_eq!((t.kind, t.request.as_str(), t.attempts), (kind, "R", 1));
        (t.message, t.hint.unwrap_or_default())
    };
    let air_arc = "Krypton's network mode answers only requests that leave over a SORACOM Air \
                   cellular session or a SORACOM Arc tunnel: on Air check the cellular \
                   connection; on Arc Krypton's address must be inside the tunnel's AllowedIPs";
    use TransportKind as K;
    let cases: Vec<(K, &Endpoint, Option<&str>, String, String)> = vec![
        (
            K::NameNotFound,
            &krypton,
            None,
            "the name `krypton.example` does not exist (DNS: no such name); nothing was sent to port 8036".into(),
            "the name does not exist: check the spelling of the endpoint's host `krypton.example` (Krypton is krypton.soracom.io)".into(),
        ),
        (
            K::NameResolutionFailed,
            &krypton,
            Some("the resolver answered: temporary failure"),
            "the name `krypton.example` could not be looked up (the resolver answered: temporary failure); nothing was sent to port 8036".into(),
            "the DNS resolver did not answer: check the device's DNS settings and network; a later attempt may pass".into(),
        ),
        (
            K::ConnectionRefused,
            &no_port,
            None,
            "krypton.example:443 refused the connection: nothing listens on port 443 there".into(),
            "the endpoint has no port, so 443 was tried: Krypton listens on 8036, e.g. https://krypton.soracom.io:8036".into(),
        ),
        (
            K::ConnectionRefused,
            &krypton,
            None,
            "krypton.example:8036 refused the connection: nothing listens on port 8036 there".into(),
            "nothing listens on krypton.example:8036: check the endpoint's host and port (Krypton listens on 8036) and that the server runs".into(),
        ),
        (
            K::ConnectionTimeout,
            &krypton,
            Some("10000 ms"),
            "no connection to krypton.example:8036 within the connect timeout (10000 ms)".into(),
            air_arc.into(),
        ),
        (
            K::Unreachable,
            &krypton,
            None,
            "krypton.example:8036 cannot be reached: there is no route to that address".into(),
            air_arc.into(),
        ),
        (
            K::UntrustedCertificate,
            &krypton,
            None,
            "the TLS certificate of krypton.example:8036 is not trusted (issued by an unknown CA, expired, or issued for another name)".into(),
            "the server's certificate is not trusted: for a private or test endpoint, give its CA to the host (the CA file option)".into(),
        ),
        (
            K::TlsFailure,
            &krypton,
            Some("the server sent the TLS alert `handshake failure`"),
            "the TLS handshake with krypton.example:8036 failed (the server sent the TLS alert `handshake failure`)".into(),
            "the server at krypton.example:8036 does not accept this TLS connection: check that the endpoint is Krypton's (https://krypton.soracom.io:8036)".into(),
        ),
        (
            K::ProtocolMismatch,
            &krypton,
            None,
            "the server at krypton.example:8036 does not speak HTTPS (it answered in another protocol, such as plain HTTP)".into(),
            "this server does not speak HTTPS: Krypton speaks HTTPS on port 8036 (https://krypton.soracom.io:8036); check the endpoint's port".into(),
        ),
        (
            K::ProtocolMismatch,
            &plain,
            None,
            "the server at 127.0.0.1:8080 does not speak plain HTTP (it answered in another protocol, such as HTTPS)".into(),
            "this server speaks HTTPS: use https://".into(),
        ),
        (
            K::ConnectionLost,
            &krypton,
            Some("the answer was cut short"),
            "the connection to krypton.example:8036 broke before the answer was complete (the answer was cut short)".into(),
            "the connection broke mid-answer: a later attempt may pass; if it keeps happening, check the network path to Krypton".into(),
        ),
        (
            K::Denied,
            &krypton,
            None,
            "the host did not let the request to https://krypton.example:8036 leave: it is not on the host's outbound allow-list".into(),
            "only the endpoint and the origins the host allows may be reached: check the endpoint".into(),
        ),
    ];
    for (kind, e, detail, message, hint) in cases {
        assert_eq!(words(kind, e, detail), (message, hint), "{kind:?}");
    }
    let other = transport_failure(K::Other, &krypton, "R".into(), Some("the host failed"));
    assert_eq!(
        other.message,
        "the request to krypton.example:8036 failed: the host failed"
    );
    assert_eq!(other.hint, None);
}

#[test]
fn krypton_s_own_name_not_found_points_at_the_resolver_not_the_spelling() {
    let real = Endpoint::parse("https://krypton.soracom.io:8036").unwrap();
    let t = transport_failure(TransportKind::NameNotFound, &real, "R".into(), None);
    let hint = t.hint.unwrap();
    assert!(
        hint.starts_with("Krypton's own name did not resolve: this gateway's DNS does not know"),
        "{hint}"
    );
    assert!(!hint.contains("spelling"), "{hint}");
}

#[test]
fn plain_http_is_allowed_to_loopback_only_and_refused_before_any_request() {
    for url in [
        "http://127.0.0.1:8036",
        "http://127.8.9.10",
        "http://[::1]:9",
        "http://localhost:8080",
        "http://LOCALHOST",
    ] {
        let e = Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(e.scheme, "http", "{url}");
    }
    for url in [
        "http://krypton.soracom.io:8036",
        "http://10.0.0.1",
        "http://[::2]:9",
        "http://0.0.0.0:80",
        "http://localhost.example",
        "http://128.0.0.1",
    ] {
        let Err(Error::InvalidRequest(m)) = Endpoint::parse(url) else {
            panic!("{url} was accepted")
        };
        assert_eq!(
            m,
            format!("endpoint `{url}`: {}", endpoint::PLAIN_HTTP_ADVICE)
        );
    }
    // Refused by the request's first step: nothing is sent, nothing stored.
    let mut fake = Fake::default();
    let mut req = request(Target::AwsIot);
    req.endpoint = "http://krypton.example:8036".into();
    let Err(Error::InvalidRequest(m)) = provision(&mut fake, &req) else {
        panic!("plain http to another host was accepted")
    };
    assert!(m.contains("use https://"), "{m}");
    assert!(fake.requests.is_empty() && fake.store.is_empty());
}

/// WIT `default-endpoints`: Krypton's network-mode URL, then SIM mode's API per coverage,
/// global first (the default); each one an endpoint this component accepts.
#[test]
fn default_endpoints_cover_each_mode_global_first() {
    let listed: Vec<(AuthMode, Option<&str>, &str)> = DEFAULT_ENDPOINTS
        .iter()
        .map(|e| (e.mode, e.coverage, e.url))
        .collect();
    assert_eq!(
        listed,
        vec![
            (AuthMode::Network, None, "https://krypton.soracom.io:8036"),
            (AuthMode::Sim, Some("global"), "https://g.api.soracom.io"),
            (AuthMode::Sim, Some("japan"), "https://api.soracom.io"),
        ]
    );
    for e in &DEFAULT_ENDPOINTS {
        let parsed = Endpoint::parse(e.url).unwrap();
        assert_eq!(parsed.scheme, "https", "{}", e.url);
    }
    assert_eq!(
        Endpoint::parse(DEFAULT_ENDPOINTS[0].url).unwrap().port,
        8036
    );
}
