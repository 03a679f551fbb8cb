//! The registry transport under a hostile or busy registry (issue 18, items 2, 6, 7, 8 and the
//! publish and `Retry-After` half of 17): the token flow is bounded in time and size and sends
//! credentials only to the registry's own origin or over TLS; SIGTERM stops a daemon whose first
//! pull hangs on a dripping realm; a loopback registry is never reached through a proxy; a token
//! that is not a header value is a clear error; no token or password reaches the log at trace
//! level; credential files are checked like the configuration; `429`/`503` with `Retry-After`
//! are waited out, never busy-polled; `publish` re-lists a signature a racing writer dropped.
//!
//! [`Gate`] is a small HTTP/1.1 server on 127.0.0.1 (one request per connection) that answers
//! by a handler: itself (a 401 with a token challenge, a token, a drip), or by forwarding the
//! request to Debian's `docker-registry` behind it.

use super::registry_support::*;
use super::support::*;
use krypton_host::signing;
use krypton_host_cli::registry::{Auth, Registry, RegistryError, Settings, Source};
use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request a [`Gate`] received.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler answers.
enum Reply {
    /// This whole response (the gate adds `Connection: close`).
    Send(Vec<u8>),
    /// A `200` with this start of a body, then one more byte per second until the peer leaves.
    Drip(Vec<u8>),
}

/// What a handler may use: the gate's own address and the registry behind it.
struct Ctx {
    addr: String,
    upstream: Option<String>,
}

impl Ctx {
    /// The request as the registry behind the gate answers it.
    fn forward(&self, r: &Request) -> Vec<u8> {
        self.raw(&r.method, &r.path, &r.headers, &r.body)
    }

    /// One request to the registry behind the gate; its whole response.
    fn raw(&self, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
        let upstream = self
            .upstream
            .as_deref()
            .expect("a gate with a registry behind it");
        let mut s = TcpStream::connect(upstream).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        for (k, v) in headers {
            if !["connection", "content-length", "host", "authorization"]
                .contains(&k.to_ascii_lowercase().as_str())
            {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str(&format!(
            "Host: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        ));
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    }
}

type Handler = dyn Fn(&Request, &Ctx) -> Reply + Send + Sync;

/// A loopback HTTP server answering by a handler, recording every request.
struct Gate {
    addr: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Gate {
    fn start(
        upstream: Option<String>,
        handler: impl Fn(&Request, &Ctx) -> Reply + Send + Sync + 'static,
    ) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let ctx = Arc::new(Ctx {
            addr: addr.clone(),
            upstream,
        });
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (handler, ctx, record) = (handler.clone(), ctx.clone(), record.clone());
                std::thread::spawn(move || serve(stream, &*handler, &ctx, &record));
            }
        });
        Gate { addr, seen }
    }

    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, pred: impl Fn(&Request) -> bool) -> usize {
        self.seen().iter().filter(|r| pred(r)).count()
    }
}

fn serve(stream: TcpStream, handler: &Handler, ctx: &Ctx, record: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let (method, path) = (
        words.next().unwrap_or("").to_string(),
        words.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request = Request {
        method,
        path,
        headers,
        body,
    };
    record.lock().unwrap().push(request.clone());
    let mut out = stream;
    match handler(&request, ctx) {
        Reply::Send(response) => {
            let _ = out.write_all(&close(&response));
        }
        Reply::Drip(start) => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            if out.write_all(head.as_bytes()).is_err() || out.write_all(&start).is_err() {
                return;
            }
            for _ in 0..600 {
                std::thread::sleep(Duration::from_secs(1));
                if out.write_all(b" ").is_err() {
                    return;
                }
            }
        }
    }
}

/// `response` with its `Connection` header replaced by `Connection: close`.
fn close(response: &[u8]) -> Vec<u8> {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return response.to_vec();
    };
    let head = String::from_utf8_lossy(&response[..end]);
    let mut out: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response[end + 4..]);
    bytes
}

/// A whole response.
fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A `401` sending the client to `realm` for a token (the distribution token spec's challenge).
fn challenge(realm: &str) -> Vec<u8> {
    let value = format!(
        "Bearer realm=\"{realm}\",service=\"gate\",scope=\"repository:krypton/component:pull,push\""
    );
    response(
        "401 Unauthorized",
        &[
            ("WWW-Authenticate", &value),
            ("Content-Type", "application/json"),
        ],
        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
}

/// A gate in front of `upstream` (or of nothing: 404) that wants `Bearer TOKEN`, hands it out
/// at `/token` as `token_body` (to anyone, or only with `basic` as the Authorization value).
fn token_gate(
    upstream: Option<String>,
    token: &str,
    token_body: Vec<u8>,
    basic: Option<String>,
) -> Gate {
    let want = format!("Bearer {token}");
    Gate::start(upstream, move |r, ctx| {
        if r.path.starts_with("/token") {
            if let Some(b) = &basic
                && r.header("authorization") != Some(b.as_str())
            {
                return Reply::Send(response("401 Unauthorized", &[], b""));
            }
            return Reply::Send(response(
                "200 OK",
                &[("Content-Type", "application/json")],
                &token_body,
            ));
        }
        if r.header("authorization") != Some(want.as_str()) {
            return Reply::Send(challenge(&format!("http://{}/token", ctx.addr)));
        }
        match &ctx.upstream {
            Some(_) => Reply::Send(ctx.forward(r)),
            None => Reply::Send(response("404 Not Found", &[], b"")),
        }
    })
}

fn insecure(auth: Auth) -> Settings {
    Settings {
        insecure: true,
        ca_file: None,
        auth,
    }
}

/// A component file (any bytes: `publish` of an unsigned component loads nothing) in `dir`.
fn component(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("component.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `component` with a `.sig` beside it, signed by a new key for `version`.
fn signed_component(dir: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = component(dir, bytes);
    let (pem, _) = signing::generate_key_pem().unwrap();
    let key = signing::parse_signing_key(&pem).unwrap();
    let sig = signing::sign(&key, bytes, "1.2.3").unwrap();
    std::fs::write(signing::signature_path(&path), sig).unwrap();
    path
}

fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

const LIMIT: Duration = Duration::from_secs(120);

// Item 8: a token that is not an HTTP header value (RFC 9110 §5.5) is a clear error naming the
// registry, with the exit code and JSON of a refused answer, never a panic.
#[tokio::test]
async fn a_token_with_a_control_character_is_a_clear_error_naming_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let file = component(dir.path(), b"\0asm not really");
    for body in [
        &br#"{"token":"abc\u0001def"}"#[..],
        br#"{"token":"abc\ndef"}"#,
        br#"{"access_token":"abc def"}"#,
    ] {
        let gate = token_gate(None, "unused", body.to_vec(), None);
        let to = format!("{}/krypton/component:v1", gate.addr);
        let run = cli(["publish", file.to_str().unwrap(), "--to", &to, "--insecure"])
            .json()
            .run_within(LIMIT)
            .await;
        let v = run.json();
        assert_eq!(
            run.code,
            7,
            "{}: {}",
            String::from_utf8_lossy(body),
            run.stderr
        );
        assert_eq!(v["ok"], false);
        assert_eq!(v["exitCode"], 7);
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(&gate.addr), "{message}");
        assert!(message.contains("token"), "{message}");
        assert!(message.contains("RFC 9110"), "{message}");
    }
    // The same from a token file: refused before any request, exit 3.
    let token = secret_file(dir.path(), "token", "abc\u{1}def\n");
    let run = cli([
        "publish",
        file.to_str().unwrap(),
        "--to",
        "127.0.0.1:9/krypton/component:v1",
        "--insecure",
        "--token-file",
        token.to_str().unwrap(),
    ])
    .json()
    .run_within(LIMIT)
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.json()["exitCode"], 3);
}

// Item 2: a realm that floods is cut at the token cap.
#[tokio::test]
async fn a_flooding_realm_is_cut_at_the_token_cap() {
    let mut body = br#"{"token":"tok","pad":""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
    body.extend_from_slice(b"\"}");
    let gate = token_gate(None, "tok", body, None);
    let source = Source::parse(&format!("{}/krypton/component:v1", gate.addr)).unwrap();
    let registry = Registry::new(&source, &insecure(Auth::Anonymous)).unwrap();
    let err = registry.resolve(&source).await.unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("token"), "{err}");
    assert!(err.to_string().contains("65536 bytes"), "{err}");
}

// Item 2: basic credentials never go to a plain-HTTP realm on another origin.
#[tokio::test]
async fn basic_credentials_never_go_to_a_plain_http_realm_elsewhere() {
    let elsewhere = Gate::start(None, |_, _| {
        Reply::Send(response("200 OK", &[], br#"{"token":"stolen"}"#))
    });
    let realm = format!(
        "http://localhost:{}/token",
        elsewhere.addr.rsplit(':').next().unwrap()
    );
    let gate = Gate::start(None, move |_, _| Reply::Send(challenge(&realm)));
    let source = Source::parse(&format!("{}/krypton/component:v1", gate.addr)).unwrap();
    let auth = Auth::Basic {
        username: "user".into(),
        password: "secret".into(),
    };
    let registry = Registry::new(&source, &insecure(auth)).unwrap();
    let err = registry.resolve(&source).await.unwrap_err();
    assert!(matches!(err, RegistryError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("realm"), "{err}");
    assert_eq!(elsewhere.seen().len(), 0, "the other origin was contacted");
}

// Item 2: SIGTERM stops a daemon whose first pull hangs on a realm that drips a byte a second,
// within SHUTDOWN_GRACE (the bound the daemon documents), with a clean exit.
#[tokio::test]
async fn sigterm_stops_a_daemon_stuck_on_a_dripping_realm() {
    let gate = Gate::start(None, |r, ctx| {
        if r.path.starts_with("/token") {
            Reply::Drip(b"{".to_vec())
        } else {
            Reply::Send(challenge(&format!("http://{}/token", ctx.addr)))
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = signing::generate_key_pem().unwrap();
    let config = GatewayToml::default()
        .following(dir.path(), &gate.addr, &public)
        .string("endpoint", &format!("https://127.0.0.1:{}", closed_port()))
        .target("arc")
        .write(&dir.path().join("gateway.toml"));
    let log = dir.path().join("daemon.log");
    let daemon = spawn_daemon(&config, &log);
    wait_until("the token request", || {
        gate.count(|r| r.path.starts_with("/token")) > 0
    })
    .await;
    stop_within(
        daemon,
        krypton_host_cli::daemon::SHUTDOWN_GRACE + Duration::from_secs(10),
    )
    .await;
}

// Item 7: with every proxy variable pointing at a listener, a loopback registry is reached
// directly, and the proxy never hears of it.
#[tokio::test]
async fn a_loopback_registry_is_never_reached_through_a_proxy() {
    if !registry_tools_present(false) {
        return;
    }
    let registry = TestRegistry::start();
    let proxy = Gate::start(None, |_, _| {
        Reply::Send(response("502 Bad Gateway", &[], b""))
    });
    let dir = tempfile::tempdir().unwrap();
    let file = signed_component(dir.path(), b"\0asm proxied?");
    let url = format!("http://{}", proxy.addr);
    let mut run = cli([
        "publish",
        file.to_str().unwrap(),
        "--to",
        &registry.reference("krypton/component:v1"),
        "--insecure",
    ])
    .json();
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        run = run.env(var, &url);
    }
    let run = run
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .run_within(LIMIT)
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        proxy.seen().len(),
        0,
        "the proxy was asked: {:?}",
        proxy.seen().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}

// Item 6: a publish with basic credentials and a registry token, at trace level and -v: the
// token, the password and their basic-auth encoding never reach the output.
#[tokio::test]
async fn no_token_or_password_reaches_the_log_at_trace_level() {
    use base64::Engine as _;
    if !registry_tools_present(false) {
        return;
    }
    let registry = TestRegistry::start();
    let token = format!("canary-token-{}", signing::digest_hex(b"token canary"));
    let password = format!("canary-password-{}", &signing::digest_hex(b"pw")[..16]);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("user:{password}"))
    );
    let gate = token_gate(
        Some(registry.addr.clone()),
        &token,
        format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#).into_bytes(),
        Some(basic.clone()),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = signed_component(dir.path(), b"\0asm canary");
    let password_file = secret_file(dir.path(), "password", &password);
    let run = cli([
        "publish",
        file.to_str().unwrap(),
        "--to",
        &format!("{}/krypton/component:v1", gate.addr),
        "--insecure",
        "--username",
        "user",
        "--password-file",
        password_file.to_str().unwrap(),
    ])
    .verbose()
    .log("trace")
    .run_within(LIMIT)
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(gate.count(|r| r.path.starts_with("/token")) >= 1);
    assert!(
        gate.count(|r| r.header("authorization") == Some(&format!("Bearer {token}"))) > 3,
        "the token was not used"
    );
    let basic_b64 = basic.trim_start_matches("Basic ");
    for (name, secret) in [
        ("token", token.as_str()),
        ("password", &password),
        ("basic", basic_b64),
    ] {
        assert!(!run.stderr.contains(secret), "the {name} is in stderr");
        assert!(!run.stdout.contains(secret), "the {name} is in stdout");
    }
    assert!(
        run.stderr.len() > 1000,
        "trace logging produced little: {}",
        run.stderr
    );
}

// Item 6: password, token and CA files are checked like gateway.toml (owner root or this user,
// not writable by others) and secrets are not readable by group or others.
#[tokio::test]
async fn credential_files_are_checked_like_the_configuration() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = component(dir.path(), b"\0asm");
    let token = secret_file(dir.path(), "token", "good-token");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not even pem").unwrap();
    let publish = |extra: &[&str]| {
        let mut args = vec![
            "publish".to_string(),
            file.to_str().unwrap().to_string(),
            "--to".into(),
            "127.0.0.1:9/krypton/component:v1".into(),
            "--insecure".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        cli(args).json()
    };
    for (mode, path, flag, words) in [
        (0o644, &token, "--token-file", "group or others can read"),
        (0o620, &token, "--token-file", "group or others can change"),
        (0o666, &ca, "--ca-file", "group or others can change"),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        let run = publish(&[flag, path.to_str().unwrap()])
            .run_within(LIMIT)
            .await;
        assert_eq!(run.code, 3, "{mode:o} {flag}: {}", run.stderr);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(words), "{mode:o} {flag}: {message}");
        assert!(message.contains(path.to_str().unwrap()), "{message}");
    }
    // Owned by another user (the tests may run as root: chown is then possible).
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    if std::os::unix::fs::chown(&token, Some(65534), None).is_ok()
        && krypton_host::files::effective_uid() == 0
    {
        let run = publish(&["--token-file", token.to_str().unwrap()])
            .run_within(LIMIT)
            .await;
        assert_eq!(run.code, 3, "{}", run.stderr);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("owned by uid 65534"), "{message}");
    }
}

// Item 17: a 429 or 503 with Retry-After (seconds or an HTTP-date) is waited out and retried;
// one that asks for longer than a request may wait is returned with its delay, after one
// request (never busy-polled).
#[tokio::test]
async fn retry_after_is_honoured_and_never_busy_polled() {
    if !registry_tools_present(false) {
        return;
    }
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let file = signed_component(dir.path(), b"\0asm busy");
    let run = cli([
        "publish",
        file.to_str().unwrap(),
        "--to",
        &registry.reference("krypton/component:v1"),
        "--insecure",
    ])
    .run_within(LIMIT)
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let date = httpdate_in(2);
    for (status, after) in [
        ("429 Too Many Requests", "1".to_string()),
        ("503 Service Unavailable", date),
    ] {
        let busy = Arc::new(Mutex::new(1));
        let left = busy.clone();
        let after2 = after.clone();
        let gate = Gate::start(Some(registry.addr.clone()), move |r, ctx| {
            let mut left = left.lock().unwrap();
            if r.path.contains("/manifests/v1") && *left > 0 {
                *left -= 1;
                return Reply::Send(response(status, &[("Retry-After", &after2)], b""));
            }
            Reply::Send(ctx.forward(r))
        });
        let source = Source::parse(&format!("{}/krypton/component:v1", gate.addr)).unwrap();
        let client = Registry::new(&source, &insecure(Auth::Anonymous)).unwrap();
        let digest = client.resolve(&source).await.unwrap();
        assert!(digest.starts_with("sha256:"), "{digest}");
        assert_eq!(
            gate.count(|r| r.path.contains("/manifests/v1")),
            2,
            "{status} {after}"
        );
    }
    let gate = Gate::start(None, |_, _| {
        Reply::Send(response(
            "429 Too Many Requests",
            &[("Retry-After", "3600")],
            b"slow down",
        ))
    });
    let source = Source::parse(&format!("{}/krypton/component:v1", gate.addr)).unwrap();
    let client = Registry::new(&source, &insecure(Auth::Anonymous)).unwrap();
    let err = client.resolve(&source).await.unwrap_err();
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(3600)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(gate.seen().len(), 1);
    // The follower's poll loop waits for this instant: not before the hour the registry named.
    let not_before = client
        .not_before()
        .expect("a long Retry-After is remembered");
    let left = not_before.saturating_duration_since(std::time::Instant::now());
    assert!(
        left > Duration::from_secs(3500) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
}

/// An HTTP-date (RFC 9110 §5.6.7) `secs` seconds from now.
fn httpdate_in(secs: u64) -> String {
    krypton_host_cli::registry::http_date(std::time::SystemTime::now() + Duration::from_secs(secs))
}

/// The referrers-tag index the registry holds for `digest`, straight from it.
fn referrers_tag_index(registry: &TestRegistry, digest: &str) -> Value {
    let ctx = Ctx {
        addr: registry.addr.clone(),
        upstream: Some(registry.addr.clone()),
    };
    let path = format!(
        "/v2/krypton/component/manifests/{}",
        digest.replacen(':', "-", 1)
    );
    let accept = vec![(
        "Accept".to_string(),
        "application/vnd.oci.image.index.v1+json".to_string(),
    )];
    let raw = ctx.raw("GET", &path, &accept, b"");
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    serde_json::from_slice(&raw[end + 4..]).unwrap()
}

// Item 17: a racing writer that overwrites the referrers tag right after this publish wrote it
// (what a second `publish` of the same digest does) no longer loses the signature: publish
// re-reads, adds it again, and exits 0 only once it is listed; a registry that keeps dropping
// it makes publish fail saying so.
#[tokio::test]
async fn publish_relists_a_signature_a_racing_writer_dropped() {
    if !registry_tools_present(false) {
        return;
    }
    let registry = TestRegistry::start();
    for always in [false, true] {
        let dropped = Arc::new(Mutex::new(0));
        let count = dropped.clone();
        let gate = Gate::start(Some(registry.addr.clone()), move |r, ctx| {
            let answer = ctx.forward(r);
            let mut n = count.lock().unwrap();
            if r.method == "PUT" && r.path.contains("/manifests/sha256-") && (always || *n == 0) {
                *n += 1;
                let empty = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
                let headers = vec![(
                    "Content-Type".to_string(),
                    "application/vnd.oci.image.index.v1+json".to_string(),
                )];
                ctx.raw("PUT", &r.path, &headers, empty);
            }
            Reply::Send(answer)
        });
        let dir = tempfile::tempdir().unwrap();
        let bytes = format!("\0asm race {always}");
        let file = signed_component(dir.path(), bytes.as_bytes());
        let run = cli([
            "publish",
            file.to_str().unwrap(),
            "--to",
            &format!("{}/krypton/component:v1", gate.addr),
            "--insecure",
        ])
        .json()
        .run_within(LIMIT)
        .await;
        let v = run.json();
        if always {
            assert_eq!(run.code, 6, "{}", run.stderr);
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains("is not listed"), "{message}");
            continue;
        }
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(*dropped.lock().unwrap(), 1);
        let index = referrers_tag_index(&registry, v["digest"].as_str().unwrap());
        let listed: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["digest"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [v["signatureDigest"].as_str().unwrap()], "{index}");
    }
}

/// A layer download cut short keeps what arrived, and the next try asks for the rest with a
/// `Range` request: a slow cellular link completes a large layer across polls instead of
/// starting it over at each one (item 1 of the hardening issue: "a slow cellular link never
/// completes a large pull and restarts it at each poll").
#[tokio::test(flavor = "multi_thread")]
async fn a_layer_cut_short_is_resumed_where_it_stopped() {
    if !registry_tools_present(false) {
        return;
    }
    let registry = TestRegistry::start();
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    component.extend((0..300_000u32).map(|i| (i % 251) as u8));
    let source = Source::parse(&registry.reference("krypton/component:big")).unwrap();
    let direct = Registry::new(&source, &insecure(Auth::Anonymous)).unwrap();
    let published = direct
        .publish(&source, &component, Some("0.3.0"), None)
        .await
        .unwrap();
    // The first GET of the layer stops after 100,000 bytes of its body.
    const CUT: usize = 100_000;
    let cut_done = Arc::new(Mutex::new(false));
    let flag = cut_done.clone();
    let layer = published.layer_digest.clone();
    let gate = Gate::start(Some(registry.addr.clone()), move |r, ctx| {
        let whole = ctx.forward(r);
        let mut done = flag.lock().unwrap();
        if r.method == "GET" && r.path.ends_with(&format!("/blobs/{layer}")) && !*done {
            *done = true;
            let end = whole.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            return Reply::Send(whole[..end + CUT].to_vec());
        }
        Reply::Send(whole)
    });
    let source = Source::parse(&format!("{}/krypton/component:big", gate.addr)).unwrap();
    let client = Registry::new(&source, &insecure(Auth::Anonymous)).unwrap();
    let mut bytes = 0;
    let announced = client
        .announced(&source, &published.digest, &mut bytes)
        .await
        .unwrap();
    assert_eq!(announced.layer.digest, published.layer_digest);
    assert_eq!(announced.layer.size, component.len() as u64);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("layer.wasm");
    let partial = krypton_host_cli::registry::partial_path(&dest);

    let mut first = 0;
    let err = client
        .layer_to_file(&source, &announced.layer, &dest, &mut first)
        .await
        .unwrap_err();
    assert!(
        matches!(err.error, RegistryError::Unreachable(_)),
        "{err:?}"
    );
    assert_eq!(first, CUT as u64);
    assert!(!dest.exists());
    assert_eq!(std::fs::read(&partial).unwrap(), component[..CUT]);

    let mut second = 0;
    client
        .layer_to_file(&source, &announced.layer, &dest, &mut second)
        .await
        .unwrap();
    assert_eq!(second, (component.len() - CUT) as u64, "only the rest");
    assert_eq!(std::fs::read(&dest).unwrap(), component);
    assert!(!partial.exists());
    let gets: Vec<Option<String>> = gate
        .seen()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .ends_with(&format!("/blobs/{}", published.layer_digest))
        })
        .map(|r| r.header("Range").map(str::to_string))
        .collect();
    assert_eq!(gets, vec![None, Some(format!("bytes={CUT}-"))]);

    // A partial file that does not belong to the layer (damaged on disk) fails the digest
    // check, is removed, and the next try starts over.
    std::fs::remove_file(&dest).unwrap();
    std::fs::write(&partial, vec![0xAA; CUT]).unwrap();
    let mut third = 0;
    let err = client
        .layer_to_file(&source, &announced.layer, &dest, &mut third)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("arrived as"), "{err:?}");
    assert!(!partial.exists() && !dest.exists());
    let mut fourth = 0;
    client
        .layer_to_file(&source, &announced.layer, &dest, &mut fourth)
        .await
        .unwrap();
    assert_eq!(fourth, component.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), component);
}
