//! The registry client: one `reqwest` client for every request (pulls, pushes, the token
//! flow); every request counted, under a total deadline, every body capped, `Retry-After`
//! honoured.

use super::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Plain HTTP; allowed only to a loopback registry (see [`Registry::new`]).
    pub insecure: bool,
    /// Extra CA certificates (PEM) trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Credentials.
    pub auth: Auth,
}

/// Settings of one request beyond the defaults ([`Registry::send_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Extra {
    /// Ask for the bytes from this offset on (`Range: bytes=N-`, RFC 9110 §14.2): a resumed
    /// download.
    pub range_from: Option<u64>,
    /// A total deadline other than [`REQUEST_TIMEOUT`] (a large layer on a slow link).
    pub deadline: Option<Duration>,
}

/// What [`Registry::publish`] pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The component manifest's digest (what the tag now points at).
    pub digest: String,
    /// The layer digest: `sha256:` + the component's SHA-256.
    pub layer_digest: String,
    /// The signature referrer's manifest digest, when a signature was attached.
    pub signature_digest: Option<String>,
    /// How the referrer can be found: `referrers-api` or `referrers-tag` (the fallback tag was
    /// updated).
    pub referrers: Option<&'static str>,
}

/// A component pulled and checked against the layout (not yet against a trusted key).
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The component manifest's digest.
    pub digest: String,
    /// The component bytes (their SHA-256 is the layer digest).
    pub component: Vec<u8>,
    /// The `.sig` texts of its signature referrers (at most [`MAX_REFERRERS`]), newest last as
    /// the index lists them.
    pub signatures: Vec<Vec<u8>>,
    /// The manifest's `org.opencontainers.image.version` annotation, if any (informative).
    pub version_annotation: Option<String>,
}

/// One registry: the bounded HTTP client every request goes through (pulls, pushes, the token
/// flow), the credentials, and a count of the requests made.
pub struct Registry {
    pub(super) http: reqwest::Client,
    pub(super) scheme: &'static str,
    /// `scheme://host:port` of the registry: credentials go only here (and to a token realm
    /// over TLS).
    pub(super) origin: reqwest::Url,
    /// The registry as written, for error messages.
    pub(super) name: String,
    pub(super) auth: Auth,
    /// A token from the registry's token flow, after a 401.
    pub(super) token: tokio::sync::Mutex<Option<String>>,
    pub(super) requests: Arc<AtomicU64>,
    /// The latest instant a `Retry-After` longer than this client waits out itself asked for:
    /// no request should go out before it (see [`Registry::not_before`]).
    pub(super) not_before: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Registry {
    /// A client for `source`'s registry with `settings`.
    ///
    /// Every request has a total deadline ([`REQUEST_TIMEOUT`], [`TOKEN_TIMEOUT`] for the token
    /// flow) that covers the body. A loopback or `insecure` registry is always reached directly,
    /// never through a proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and their lowercase forms
    /// are ignored for it); any other registry follows those variables and `NO_PROXY` as
    /// reqwest reads them.
    /// Errors ([`RegistryError::Config`]): `insecure` to a registry that is not loopback, an
    /// unreadable, unsafe (see [`read_credential`]) or invalid CA file.
    pub fn new(source: &Source, settings: &Settings) -> Result<Self> {
        if settings.insecure && !source.is_loopback() {
            return Err(RegistryError::Config(format!(
                "plain HTTP (insecure) is allowed only to a registry on this machine (localhost, \
                 127.0.0.1, ::1), not `{}`: serve the registry over TLS and trust its CA with \
                 ca_file (--ca-file)",
                source.registry().escape_debug()
            )));
        }
        let ca = settings
            .ca_file
            .as_deref()
            .map(|path| {
                read_credential(
                    &credential_path(path, std::env::var_os("CREDENTIALS_DIRECTORY").as_deref())?,
                    krypton_host::files::MAX_CA_BYTES,
                    "the registry CA file",
                    false,
                )
            })
            .transpose()?;
        let mut http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .read_timeout(READ_IDLE_TIMEOUT)
            .https_only(!settings.insecure)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("krypton-host/", env!("CARGO_PKG_VERSION")));
        if settings.insecure || source.is_loopback() {
            http = http.no_proxy();
        }
        if let Some(pem) = &ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                RegistryError::Config(format!("the CA file holds no PEM certificate: {e}"))
            })? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|e| RegistryError::Config(format!("building the HTTP client: {e}")))?;
        let scheme = if settings.insecure { "http" } else { "https" };
        let origin = reqwest::Url::parse(&format!(
            "{scheme}://{}/",
            source.reference.resolve_registry()
        ))
        .map_err(|e| {
            RegistryError::Config(format!(
                "`{}` is not a host name: {e}",
                source.registry().escape_debug()
            ))
        })?;
        Ok(Registry {
            http,
            scheme,
            origin,
            name: source.registry().to_string(),
            auth: settings.auth.clone(),
            token: tokio::sync::Mutex::new(None),
            requests: Arc::new(AtomicU64::new(0)),
            not_before: std::sync::Mutex::new(None),
        })
    }

    /// Requests this client sent to the registry (pulls, pushes, referrer look-ups and token
    /// requests).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(super) fn url(&self, source: &Source, kind: &str, reference: &str) -> String {
        format!(
            "{}://{}/v2/{}/{kind}/{reference}",
            self.scheme,
            source.reference.resolve_registry(),
            source.repository()
        )
    }

    /// Whether `url` is on the registry's own origin (scheme, host and port).
    fn same_origin(&self, url: &reqwest::Url) -> bool {
        url.scheme() == self.origin.scheme()
            && url.host_str() == self.origin.host_str()
            && url.port_or_known_default() == self.origin.port_or_known_default()
    }

    /// One request, retried once with a registry token after a 401. `None` on 404.
    pub(super) async fn send(
        &self,
        source: &Source,
        method: reqwest::Method,
        url: &str,
        accept: &str,
    ) -> Result<Option<reqwest::Response>> {
        self.send_body(source, method, url, accept, None).await
    }

    /// [`Registry::send`] with a body and its content type (a push). The credentials (the
    /// token, or basic) go only to the registry's own origin. A 401 runs the token flow once
    /// ([`Registry::fetch_token`]); a 429 or 503 with a `Retry-After` of at most
    /// [`MAX_RETRY_AFTER_WAIT`] is waited out and retried, at most [`MAX_RETRY_AFTER_WAITS`]
    /// times; any other 429/503 is returned with its `Retry-After` in
    /// [`RegistryError::Status::retry_after`], so that the caller waits at least that long.
    pub(super) async fn send_body(
        &self,
        source: &Source,
        method: reqwest::Method,
        url: &str,
        accept: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Option<reqwest::Response>> {
        self.send_with(source, method, url, accept, body, &Extra::default())
            .await
    }

    /// [`Registry::send_body`] with [`Extra`] settings (a `Range`, a longer deadline).
    pub(super) async fn send_with(
        &self,
        source: &Source,
        method: reqwest::Method,
        url: &str,
        accept: &str,
        body: Option<(&str, &[u8])>,
        extra: &Extra,
    ) -> Result<Option<reqwest::Response>> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| invalid(format!("the URL {}: {e}", printable(url))))?;
        let mut tried_token = false;
        let mut waits = 0;
        loop {
            let token = self.token.lock().await.clone();
            let header = token
                .map(|t| format!("Bearer {t}"))
                .or_else(|| self.auth.header())
                .filter(|_| self.same_origin(&parsed));
            let mut request = self
                .http
                .request(method.clone(), parsed.clone())
                .header(reqwest::header::ACCEPT, accept);
            if let Some(from) = extra.range_from {
                request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
            }
            if let Some(deadline) = extra.deadline {
                request = request.timeout(deadline);
            }
            if let Some(h) = header {
                request = request.header(reqwest::header::AUTHORIZATION, self.authorization(&h)?);
            }
            if let Some((content_type, bytes)) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(bytes.to_vec());
            } else if method == reqwest::Method::POST || method == reqwest::Method::PUT {
                request = request.header(reqwest::header::CONTENT_LENGTH, 0);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let response = request.send().await.map_err(|e| self.unreachable(&e))?;
            match response.status().as_u16() {
                404 => return Ok(None),
                401 if !tried_token && !matches!(self.auth, Auth::Bearer(_)) => {
                    tried_token = true;
                    let challenge = response
                        .headers()
                        .get(reqwest::header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match challenge.as_deref().and_then(bearer_challenge) {
                        Some(c) => {
                            let token = self.fetch_token(source, &c).await?;
                            *self.token.lock().await = Some(token);
                        }
                        None => return Err(status_error(response, url).await),
                    }
                }
                status @ (429 | 503) => {
                    let after = retry_after(response.headers(), std::time::SystemTime::now());
                    match after {
                        Some(wait)
                            if wait <= MAX_RETRY_AFTER_WAIT && waits < MAX_RETRY_AFTER_WAITS =>
                        {
                            waits += 1;
                            tracing::info!(registry = %self.name, status, wait_s = wait.as_secs(),
                                "the registry asks to retry later (Retry-After); waiting");
                            drop(response);
                            tokio::time::sleep(wait).await;
                        }
                        _ => {
                            let e = status_error(response, url).await;
                            self.hold_off(e.retry_after());
                            return Err(e);
                        }
                    }
                }
                200..=299 => return Ok(Some(response)),
                _ => return Err(status_error(response, url).await),
            }
        }
    }

    /// `h` (`Basic …` or `Bearer …`) as an `Authorization` value, marked sensitive so that no
    /// debug output of the request shows it. Errors ([`RegistryError::Config`]): not an HTTP
    /// header value (RFC 9110 §5.5).
    fn authorization(&self, h: &str) -> Result<reqwest::header::HeaderValue> {
        let mut value = reqwest::header::HeaderValue::from_str(h).map_err(|_| {
            RegistryError::Config(format!(
                "the credentials for {} are not an HTTP header value (RFC 9110 §5.5)",
                self.name
            ))
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Remember that the registry asked for no request during `wait` (from now).
    fn hold_off(&self, wait: Option<Duration>) {
        if let Some(wait) = wait {
            let now = std::time::Instant::now();
            let until = now
                .checked_add(wait.min(MAX_HONOURED_RETRY_AFTER))
                .unwrap_or(now);
            let mut slot = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(slot.map_or(until, |t| t.max(until)));
        }
    }

    /// The instant before which the registry asked not to be called again: the end of the
    /// longest `Retry-After` (RFC 9110 §10.2.3) of a 429 or 503 this client did not wait out
    /// itself (longer than [`MAX_RETRY_AFTER_WAIT`], or after [`MAX_RETRY_AFTER_WAITS`]
    /// waits). `None` when no such answer came, or it has passed. The follower does not poll
    /// before it.
    pub fn not_before(&self) -> Option<std::time::Instant> {
        let slot = *self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        slot.filter(|t| *t > std::time::Instant::now())
    }

    fn unreachable(&self, e: &reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            RegistryError::Unreachable(format!(
                "{} did not answer within its deadline ({} s for a request, {} s for a token): {}",
                self.name,
                REQUEST_TIMEOUT.as_secs(),
                TOKEN_TIMEOUT.as_secs(),
                error_chain(e)
            ))
        } else {
            RegistryError::Unreachable(error_chain(e))
        }
    }

    /// The registry token flow (the distribution spec's token authentication, an OAuth 2.0
    /// bearer token, RFC 6750): `GET realm?service=…&scope=…`, with the basic credentials when
    /// there are some, read under [`MAX_TOKEN_RESPONSE_BYTES`] within [`TOKEN_TIMEOUT`]; the
    /// `token` (or `access_token`) field of the JSON answer, checked as a header value.
    /// Errors: a realm neither on the registry's origin nor HTTPS ([`RegistryError::Config`]:
    /// credentials and tokens would cross the network in clear), the realm unreachable or
    /// slower than its deadline, an error status, an answer over the cap, not JSON, without a
    /// token, or with a token that is not a header value ([`RegistryError::Invalid`]).
    async fn fetch_token(&self, source: &Source, challenge: &Challenge) -> Result<String> {
        let mut realm = reqwest::Url::parse(&challenge.realm).map_err(|e| {
            invalid(format!(
                "{} named the token realm `{}`: {e}",
                self.name,
                printable(&challenge.realm)
            ))
        })?;
        if realm.scheme() != "https" && !self.same_origin(&realm) {
            return Err(RegistryError::Config(format!(
                "{} sends clients for a token to `{}`, plain HTTP on another host: refused, the \
                 credentials and the token would cross the network in clear; the realm must be \
                 HTTPS or on the registry itself",
                self.name,
                printable(realm.as_str())
            )));
        }
        {
            let mut query = realm.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            let default_scope = format!("repository:{}:pull", source.repository());
            query.append_pair(
                "scope",
                challenge.scope.as_deref().unwrap_or(&default_scope),
            );
        }
        let mut request = self.http.get(realm.clone()).timeout(TOKEN_TIMEOUT);
        if let (Auth::Basic { .. }, Some(h)) = (&self.auth, self.auth.header()) {
            request = request.header(reqwest::header::AUTHORIZATION, self.authorization(&h)?);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let what = format!("a registry token from {}", printable(&challenge.realm));
        if !response.status().is_success() {
            return Err(match status_error(response, &what).await {
                RegistryError::Status {
                    status,
                    what,
                    detail,
                    retry_after,
                } => RegistryError::Status {
                    status,
                    what,
                    detail: if status == 401 || status == 403 {
                        format!("{detail}: check the credentials")
                    } else {
                        detail
                    },
                    retry_after,
                },
                other => other,
            });
        }
        let body = read_capped(response, MAX_TOKEN_RESPONSE_BYTES, &what)
            .await
            .map_err(|e| match e {
                RegistryError::Unreachable(text) if text.contains("deadline") => {
                    RegistryError::Unreachable(text)
                }
                other => other,
            })?;
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            invalid(format!(
                "{} answered the token request with something other than a token: {e}",
                self.name
            ))
        })?;
        let token = answer.token.or(answer.access_token).ok_or_else(|| {
            invalid(format!(
                "{} answered the token request without a `token`",
                self.name
            ))
        })?;
        check_token(&token).map_err(|why| {
            invalid(format!(
                "the registry token from {} (realm {}) {why}: refused",
                self.name,
                printable(&challenge.realm)
            ))
        })?;
        Ok(token)
    }

    /// `GET` a body of at most `cap` bytes (declared or streamed); `None` on 404.
    pub(super) async fn get_bounded(
        &self,
        source: &Source,
        url: &str,
        accept: &str,
        cap: u64,
    ) -> Result<Option<(Option<String>, Vec<u8>)>> {
        let Some(response) = self.send(source, reqwest::Method::GET, url, accept).await? else {
            return Ok(None);
        };
        if let Some(length) = response.content_length()
            && length > cap
        {
            return Err(invalid(format!(
                "{url} is {length} bytes, more than the {cap} accepted"
            )));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let body = read_capped(response, cap, url).await?;
        Ok(Some((content_type, body)))
    }

    /// The digest a tag points at now (one `HEAD` request; a `GET` of the manifest when the
    /// registry sends no `Docker-Content-Digest`), or the pinned digest without a request.
    /// Errors: unreachable, the tag does not exist ([`RegistryError::NotFound`]), an error
    /// status, a digest that is not SHA-256.
    pub async fn resolve(&self, source: &Source) -> Result<String> {
        if let Some(digest) = source.digest() {
            return Ok(digest.to_string());
        }
        let tag = source.tag().unwrap_or_default();
        let url = self.url(source, "manifests", tag);
        let response = self
            .send(source, reqwest::Method::HEAD, &url, OCI_MANIFEST_MEDIA_TYPE)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("{source}")))?;
        let header = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let digest = match header {
            Some(d) => d,
            None => {
                let (_, body) = self
                    .get_bounded(source, &url, OCI_MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES)
                    .await?
                    .ok_or_else(|| RegistryError::NotFound(format!("{source}")))?;
                sha256_digest(&body)
            }
        };
        if !is_sha256_digest(&digest) {
            return Err(invalid(format!(
                "the registry named the digest `{}`; only sha256 is accepted",
                printable(&digest)
            )));
        }
        Ok(digest)
    }

    /// Fetch a manifest by digest and check its bytes hash to it. `None` on 404.
    pub(super) async fn manifest_bytes(
        &self,
        source: &Source,
        digest: &str,
        accept: &str,
    ) -> Result<Option<(Option<String>, Vec<u8>)>> {
        self.manifest_bytes_capped(source, digest, accept, MAX_MANIFEST_BYTES)
            .await
    }

    /// [`Registry::manifest_bytes`] with a cap of its own (at most `cap` bytes).
    pub(super) async fn manifest_bytes_capped(
        &self,
        source: &Source,
        digest: &str,
        accept: &str,
        cap: u64,
    ) -> Result<Option<(Option<String>, Vec<u8>)>> {
        let url = self.url(source, "manifests", digest);
        let Some((content_type, body)) = self.get_bounded(source, &url, accept, cap).await? else {
            return Ok(None);
        };
        let actual = sha256_digest(&body);
        if actual != digest {
            return Err(invalid(format!(
                "the manifest {digest} arrived with sha256 {actual}"
            )));
        }
        Ok(Some((content_type, body)))
    }

    /// Fetch a blob of at most `cap` bytes and check it against `descriptor`.
    pub(super) async fn blob(
        &self,
        source: &Source,
        descriptor: &Descriptor,
        cap: u64,
    ) -> Result<Vec<u8>> {
        if !is_sha256_digest(&descriptor.digest) {
            return Err(invalid(format!(
                "a descriptor names the digest `{}`; only sha256 is accepted",
                printable(&descriptor.digest)
            )));
        }
        if descriptor.size > cap {
            return Err(invalid(format!(
                "the blob {} is declared {} bytes, more than the {cap} accepted",
                descriptor.digest, descriptor.size
            )));
        }
        let url = self.url(source, "blobs", &descriptor.digest);
        let (_, body) = self
            .get_bounded(source, &url, "*/*", descriptor.size)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("the blob {}", descriptor.digest)))?;
        if body.len() as u64 != descriptor.size || sha256_digest(&body) != descriptor.digest {
            return Err(invalid(format!(
                "the blob {} arrived as {} bytes with sha256 {} (declared {} bytes)",
                descriptor.digest,
                body.len(),
                sha256_digest(&body),
                descriptor.size
            )));
        }
        Ok(body)
    }

    /// Whether the registry serves the referrers API (one `GET`; 404 means it does not).
    pub(super) async fn has_referrers_api(&self, source: &Source, digest: &str) -> Result<bool> {
        let url = self.url(source, "referrers", digest);
        Ok(self
            .get_bounded(source, &url, OCI_INDEX_MEDIA_TYPE, MAX_MANIFEST_BYTES)
            .await?
            .is_some())
    }
}

/// A response's body, at most `cap` bytes (declared or streamed), within the request's deadline.
/// Errors: more than `cap` ([`RegistryError::Invalid`], naming `what`), the transfer cut or
/// slower than the deadline ([`RegistryError::Unreachable`]).
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
    what: &str,
) -> Result<Vec<u8>> {
    if let Some(length) = response.content_length()
        && length > cap
    {
        return Err(invalid(format!(
            "{what} is {length} bytes, more than the {cap} bytes accepted"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        RegistryError::Unreachable(if e.is_timeout() {
            format!(
                "{what}: not received within its deadline: {}",
                error_chain(&e)
            )
        } else {
            error_chain(&e)
        })
    })? {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(invalid(format!(
                "{what} sent more than the {cap} bytes accepted"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A `WWW-Authenticate` challenge of the `Bearer` scheme (RFC 6750 §3; the distribution spec's
/// token authentication names `realm`, `service` and `scope`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Challenge {
    pub(super) realm: String,
    pub(super) service: Option<String>,
    pub(super) scope: Option<String>,
}

/// Parse a `Bearer` challenge: `Bearer` (any case), then `name=value` pairs separated by commas,
/// each value a token or a quoted-string (RFC 9110 §11.2, §5.6.4: `\` escapes one character).
/// `None` when the scheme is not `Bearer`, there is no `realm`, or the syntax is broken. One
/// challenge per header value is read (registries send one).
pub(super) fn bearer_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim_start();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service, mut scope) = (None, None, None);
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let (name, after) = rest.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let value;
        if let Some(quoted) = after.strip_prefix('"') {
            let mut text = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => text.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => text.push(c),
                }
            }
            value = text;
            rest = &quoted[end?..];
        } else {
            let end = after.find([',', ' ', '\t']).unwrap_or(after.len());
            value = after[..end].to_string();
            rest = &after[end..];
        }
        match name.as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
    }
    Some(Challenge {
        realm: realm?,
        service,
        scope,
    })
}

/// Why `token` cannot be sent as `Authorization: Bearer <token>`, if it cannot: empty, longer
/// than [`MAX_TOKEN_BYTES`], or with a byte outside the visible ASCII characters (a control
/// character, a space, DEL or non-ASCII). RFC 9110 §5.5 allows no control character in a field
/// value, and a space inside the token would split it (RFC 6750 §2.1's `b64token` is visible
/// ASCII only).
pub fn check_token(token: &str) -> std::result::Result<(), String> {
    if token.is_empty() {
        return Err("is empty".into());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!("is longer than {MAX_TOKEN_BYTES} bytes"));
    }
    match token.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
        Some(at) => Err(format!(
            "holds a character not allowed in an HTTP header (byte {at} is {:#04x}; RFC 9110 \
             §5.5 allows visible ASCII only in a token)",
            token.as_bytes()[at]
        )),
        None => Ok(()),
    }
}

/// The delay a `Retry-After` header asks for (RFC 9110 §10.2.3: a number of seconds, or an
/// HTTP-date, counted from `now`); `None` without the header or with a value that is neither.
/// A date in the past is zero; a delay over [`MAX_HONOURED_RETRY_AFTER`] is that.
pub(super) fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = if let Ok(secs) = text.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(text).ok()?;
        at.duration_since(now).unwrap_or_default()
    };
    Some(wait.min(MAX_HONOURED_RETRY_AFTER))
}

/// `at` as an HTTP-date (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(at: std::time::SystemTime) -> String {
    httpdate::fmt_http_date(at)
}

/// Read a credential file the daemon or `publish` was given: like the configuration
/// ([`krypton_host::files::read_trusted_text`]: a regular file under `cap` bytes, owned by root
/// or this user, not writable by group or others) and, when `secret`, not readable by group or
/// others either.
/// Errors ([`RegistryError::Config`]): each names the file and the `chmod`/`chown` that fixes it.
pub fn read_credential(path: &Path, cap: u64, what: &str, secret: bool) -> Result<Vec<u8>> {
    let read = if secret {
        krypton_host::files::read_trusted_secret
    } else {
        krypton_host::files::read_trusted_text
    };
    let text = read(path, cap, what).map_err(|e| RegistryError::Config(format!("{e:#}")))?;
    Ok(text.into_bytes())
}

pub(super) async fn status_error(response: reqwest::Response, url: &str) -> RegistryError {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers(), std::time::SystemTime::now());
    let mut detail = Vec::new();
    let mut response = response;
    while let Ok(Some(chunk)) = response.chunk().await {
        detail.extend_from_slice(&chunk);
        if detail.len() > 512 {
            break;
        }
    }
    RegistryError::Status {
        status,
        what: printable(url),
        detail: printable(&String::from_utf8_lossy(&detail)),
        retry_after,
    }
}

#[cfg(test)]
mod transport_tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_quoted_and_bare_values() {
        let c = bearer_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:k:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.example/token");
        assert_eq!(c.service.as_deref(), Some("registry.example"));
        assert_eq!(c.scope.as_deref(), Some("repository:k:pull,push"));
        let c = bearer_challenge(r#"bearer realm=https://a/t, service="s\"q""#).unwrap();
        assert_eq!(
            (c.realm.as_str(), c.service.as_deref()),
            ("https://a/t", Some("s\"q"))
        );
        assert_eq!(c.scope, None);
        assert!(bearer_challenge(r#"Basic realm="x""#).is_none());
        assert!(bearer_challenge(r#"Bearer service="x""#).is_none());
        assert!(bearer_challenge(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn tokens_must_be_visible_ascii() {
        assert!(check_token("eyJhbGciOi.J9-_~+/=").is_ok());
        for bad in ["", "a\u{1}b", "a\nb", "a b", "a\u{7f}", "é"] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
        assert!(check_token(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(reqwest::header::RETRY_AFTER, "30".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        let date = http_date(now + Duration::from_secs(90));
        headers.insert(reqwest::header::RETRY_AFTER, date.parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(90)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            http_date(now - Duration::from_secs(5)).parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
        // Huge delays (one that would overflow `Instant + Duration`, a date in the year 9999)
        // count as the hour at most.
        for huge in [
            u64::MAX.to_string(),
            "9223372036854775808".to_string(),
            "Fri, 31 Dec 9999 23:59:59 GMT".to_string(),
        ] {
            headers.insert(reqwest::header::RETRY_AFTER, huge.parse().unwrap());
            assert_eq!(
                retry_after(&headers, now),
                Some(MAX_HONOURED_RETRY_AFTER),
                "{huge}"
            );
        }
    }

    #[test]
    fn relative_credential_paths_come_from_the_credentials_directory() {
        let dir = std::ffi::OsStr::new("/run/credentials/krypton-host.service");
        assert_eq!(
            credential_path(Path::new("registry-token"), Some(dir)).unwrap(),
            Path::new("/run/credentials/krypton-host.service/registry-token")
        );
        assert_eq!(
            credential_path(Path::new("/etc/k/token"), Some(dir)).unwrap(),
            Path::new("/etc/k/token")
        );
        assert!(credential_path(Path::new("registry-token"), None).is_err());
        assert!(credential_path(Path::new("../etc/shadow"), Some(dir)).is_err());
        assert!(credential_path(Path::new("a/b"), Some(dir)).is_err());
    }
}
