//! Components delivered through an OCI registry: publish a signed component, pull it back, and
//! let a daemon follow a tag (feature `registry`).
//!
//! # The artifact
//!
//! A component is stored in the CNCF TAG Runtime "Wasm OCI artifact" layout, the one wasmtime's,
//! wasmCloud's and Spin's tooling read (and the `oci-wasm` crate writes): an OCI image manifest
//! (`application/vnd.oci.image.manifest.v1+json`, OCI image spec v1.1) whose config has media
//! type [`WASM_CONFIG_MEDIA_TYPE`] and whose one layer, of media type [`WASM_LAYER_MEDIA_TYPE`],
//! holds the component bytes; the layer digest is the component's SHA-256. The config is a small
//! JSON object (`architecture` `wasm`, `os` `wasip2`, `layerDigests`, `created`), as `oci-wasm`
//! writes it; we do not use `oci-wasm` itself because it parses the component's WIT to fill
//! optional fields, which would put a WIT toolchain into the daemon for nothing it checks.
//!
//! # The signature: an OCI referrer, found through the referrers tag
//!
//! The signature is the `.sig` file of [`crate::signing`] (context, digest, version, ed25519),
//! pushed as a referrer: an image manifest with `artifactType` [`SIGNATURE_ARTIFACT_TYPE`], the
//! empty config (`application/vnd.oci.empty.v1+json`, `{}`), one layer holding the `.sig` bytes
//! and `subject` = the component manifest (OCI image spec v1.1, "Guidance for an empty
//! descriptor" and the `subject` field). A referrer rather than an annotated second tag, because
//! it travels with the digest it signs: re-tagging a digest (promotion from `canary` to
//! `stable`) keeps its signature without re-signing, and `skopeo`, `oras` and `cosign` list it.
//!
//! Finding it: the OCI distribution spec 1.1, "Listing Referrers", is `GET
//! /v2/<name>/referrers/<digest>`; a registry without that API answers 404 (Debian's
//! `docker-registry` 2.8 does), and the spec's "Referrers Tag Schema" is the fallback: a tag named
//! `sha256-<hex of the subject digest>` pointing at an image index of the referring manifests,
//! which the *pushing client* maintains (pull the index, add the descriptor, push it back;
//! "Pushing Manifests with Subject"). `oci-client` 0.15 neither writes nor reads that tag, so this
//! module does both ([`referrers_tag`]): a publish asks the referrers API first and updates the
//! tag only when the API is missing; a pull asks the API and falls back to the tag on 404.
//!
//! # Transport
//!
//! Pushes go through `oci-client` (chunked upload with monolithic fallback, token negotiation).
//! Pulls are plain `GET`/`HEAD` requests through `reqwest` (the version `oci-client` uses), because
//! `oci-client` reads manifest bodies whole with no bound; here every body is read under a cap
//! and counted ([`Registry::requests`]). TLS is rustls with the system's roots plus `ca_file`.
//! Auth: anonymous, basic (user and a password read from a file), or a bearer token read from a
//! file ([`Auth`]); on a `401` the registry's token flow (Docker registry v2 token
//! authentication) is run once through `oci-client` and its token used.
//!
//! # Fail-closed table
//!
//! Everything a registry sends is untrusted input. What is refused, and why:
//!
//! | refused | why |
//! | --- | --- |
//! | plain HTTP to a registry that is not loopback (`insecure = true` with another host) | anyone on the path could swap the bytes; the signature would still stop them, but the daemon's view of the tag would be theirs |
//! | a reference without a registry host, a tag or a digest, or with a non-SHA-256 digest | an implicit `docker.io` or `latest` is not a deployment decision |
//! | a manifest over [`MAX_MANIFEST_BYTES`], a signature over [`crate::signing::MAX_SIGNATURE_FILE_BYTES`], a layer over [`crate::lifecycle::MAX_COMPONENT_BYTES`] (declared or streamed) | memory is bounded before parsing |
//! | a manifest whose SHA-256 is not the digest asked for, a blob whose SHA-256 is not its descriptor's | content addressing is the only integrity the registry offers |
//! | a manifest of another media type, a config other than [`WASM_CONFIG_MEDIA_TYPE`], not exactly one [`WASM_LAYER_MEDIA_TYPE`] layer | not the Wasm artifact layout: nothing else is handed to the compiler |
//! | more than [`MAX_REFERRERS`] signature referrers considered; a referrer whose `subject` is not the component | a hostile index cannot make a pull unbounded, nor pass off another artifact's signature |
//! | (daemon) no signature verifying with `trusted_public_key`, a version below the floor | see [`crate::signing`]; checked before anything is written or compiled |
//!
//! A daemon that meets any of these keeps serving what it serves ([`follow`]).

pub mod follow;

use crate::signing;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The config media type of the Wasm OCI artifact layout (CNCF TAG Runtime).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type of the Wasm OCI artifact layout: the component bytes.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// OCI image manifest (OCI image spec v1.1).
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (OCI image spec v1.1): the referrers tag and the referrers API answer.
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The empty descriptor's media type (OCI image spec v1.1, "Guidance for an empty descriptor").
pub const OCI_EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The `artifactType` of a signature referrer, and the media type of its one layer (the `.sig`).
pub const SIGNATURE_ARTIFACT_TYPE: &str =
    "application/vnd.soracom.krypton.component-signature.v1+json";
/// Largest manifest or index read, bytes (a real one is under 1 KiB).
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;
/// Most signature referrers of one component considered.
pub const MAX_REFERRERS: usize = 16;
/// Longest wait for a registry connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one registry request, body included (a 64 MiB layer at ~1 MB/s fits).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest password or token file read, bytes.
pub const MAX_SECRET_FILE_BYTES: u64 = 16 * 1024;

/// The empty JSON object, the content of the empty descriptor.
const EMPTY_JSON: &[u8] = b"{}";

/// What went wrong talking to a registry, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached (connection refused, DNS, TLS, timeout): retry later.
    #[error("the registry could not be reached: {0}")]
    Unreachable(String),
    /// The registry answered with an error status (401/403: check the credentials).
    #[error("the registry answered HTTP {status} for {what}: {detail}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// What was asked for.
        what: String,
        /// The start of the registry's error body, printable.
        detail: String,
    },
    /// Something asked for does not exist (a tag, a manifest, a blob).
    #[error("not found in the registry: {0}")]
    NotFound(String),
    /// The registry sent something refused by the fail-closed table (size, digest, media type,
    /// shape).
    #[error("refused what the registry sent: {0}")]
    Invalid(String),
    /// A setting or a local file is wrong (reference, auth files, CA file, insecure to a
    /// non-loopback host).
    #[error("{0}")]
    Config(String),
}

impl RegistryError {
    /// Whether trying the same thing later may succeed (the registry down or answering 5xx, a
    /// transfer cut short): such an error is retried at the next poll and never remembered.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable(_) | RegistryError::NotFound(_) => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            RegistryError::Invalid(_) | RegistryError::Config(_) => false,
        }
    }
}

type Result<T> = std::result::Result<T, RegistryError>;

fn invalid(text: impl Into<String>) -> RegistryError {
    RegistryError::Invalid(text.into())
}

/// `sha256:<64 lowercase hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", signing::digest_hex(bytes))
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits (the only algorithm accepted).
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The referrers tag of a subject digest (OCI distribution spec 1.1, "Referrers Tag Schema"):
/// `<alg>-<ref>`, e.g. `sha256-0123…`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// A registry reference with an explicit host: `HOST[:PORT]/REPO:TAG` or
/// `HOST[:PORT]/REPO@sha256:DIGEST` (written `oci://…` in `gateway.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    reference: oci_client::Reference,
}

impl Source {
    /// Parse `HOST[:PORT]/REPO:TAG` or `…@sha256:HEX`, with or without the `oci://` prefix.
    /// Errors: no host (a first path segment without `.` or `:` and not `localhost`, which
    /// would silently mean Docker Hub), neither tag nor digest, a digest that is not SHA-256, or
    /// what the OCI distribution spec's name and tag grammar refuses.
    pub fn parse(text: &str) -> Result<Self> {
        let bare = text.strip_prefix("oci://").unwrap_or(text);
        let advice =
            "write it as oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:DIGEST";
        let (host, rest) = bare.split_once('/').ok_or_else(|| {
            RegistryError::Config(format!(
                "`{}` names no registry host; {advice}",
                bare.escape_debug()
            ))
        })?;
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(RegistryError::Config(format!(
                "`{}` names no registry host (`{}` would be taken for a Docker Hub repository); {advice}",
                bare.escape_debug(),
                host.escape_debug()
            )));
        }
        let last = rest.rsplit('/').next().unwrap_or(rest);
        if !last.contains(':') && !last.contains('@') {
            return Err(RegistryError::Config(format!(
                "`{}` has no tag or digest (no implicit `latest`); {advice}",
                bare.escape_debug()
            )));
        }
        let reference: oci_client::Reference = bare.parse().map_err(|e| {
            RegistryError::Config(format!("`{}`: {e}; {advice}", bare.escape_debug()))
        })?;
        if reference.registry() != host {
            return Err(RegistryError::Config(format!(
                "`{}`: the registry host must be written out; {advice}",
                bare.escape_debug()
            )));
        }
        if let Some(digest) = reference.digest()
            && !is_sha256_digest(digest)
        {
            return Err(RegistryError::Config(format!(
                "`{}`: only sha256 digests (64 lowercase hex digits) are accepted",
                bare.escape_debug()
            )));
        }
        Ok(Source { reference })
    }

    /// The registry host (and port) as written.
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// The repository name.
    pub fn repository(&self) -> &str {
        self.reference.repository()
    }

    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.reference.tag()
    }

    /// The pinned digest, when the reference has one (it is then never polled).
    pub fn digest(&self) -> Option<&str> {
        self.reference.digest()
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> Source {
        Source {
            reference: oci_client::Reference::with_digest(
                self.registry().to_string(),
                self.repository().to_string(),
                digest.to_string(),
            ),
        }
    }

    /// The same repository at `tag`.
    pub fn at_tag(&self, tag: &str) -> Source {
        Source {
            reference: oci_client::Reference::with_tag(
                self.registry().to_string(),
                self.repository().to_string(),
                tag.to_string(),
            ),
        }
    }

    /// Whether the registry host is loopback (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn is_loopback(&self) -> bool {
        let host = self.registry();
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}", self.reference.whole())
    }
}

/// How to authenticate to the registry.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP basic (RFC 7617): user name and password.
    Basic {
        /// The user name.
        username: String,
        /// The password (never logged).
        password: String,
    },
    /// A bearer token (RFC 6750), e.g. a registry access token.
    Bearer(String),
}

impl Auth {
    /// Build from settings: `username` with `password_file`, or `token_file`, or neither.
    /// The files are read bounded to [`MAX_SECRET_FILE_BYTES`], trimmed of one line end.
    /// Errors: both kinds given, a user without a password file (or the reverse), an unreadable
    /// or empty file (the error names the file, never its content).
    pub fn from_files(
        username: Option<&str>,
        password_file: Option<&Path>,
        token_file: Option<&Path>,
    ) -> Result<Self> {
        let read = |path: &Path, what: &str| -> Result<String> {
            let bytes = crate::files::read_user_file(path, MAX_SECRET_FILE_BYTES, what)
                .map_err(|e| RegistryError::Config(format!("{e:#}")))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                RegistryError::Config(format!("{} is not UTF-8 text", path.display()))
            })?;
            let text = text.trim_end_matches(['\n', '\r']).to_string();
            if text.is_empty() || text.chars().any(char::is_control) {
                return Err(RegistryError::Config(format!(
                    "{} must hold one line: the {what}",
                    path.display()
                )));
            }
            Ok(text)
        };
        match (username, password_file, token_file) {
            (None, None, None) => Ok(Auth::Anonymous),
            (Some(u), Some(p), None) => Ok(Auth::Basic {
                username: u.to_string(),
                password: read(p, "registry password")?,
            }),
            (None, None, Some(t)) => Ok(Auth::Bearer(read(t, "registry token")?)),
            (_, _, Some(_)) => Err(RegistryError::Config(
                "give either a token file or a user name with a password file, not both".into(),
            )),
            _ => Err(RegistryError::Config(
                "basic authentication needs both the user name and the password file".into(),
            )),
        }
    }

    fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Auth::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        }
    }

    fn header(&self) -> Option<String> {
        use base64::Engine as _;
        match self {
            Auth::Anonymous => None,
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
        }
    }
}

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

/// An OCI descriptor (OCI image spec v1.1, "Descriptors"), the fields this module reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: String,
    /// `sha256:<hex>` of the referenced content.
    pub digest: String,
    /// Its size, bytes.
    pub size: u64,
    /// In an index entry or a referrers answer: the referrer's `artifactType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image manifest, the fields this module reads or writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_MANIFEST_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Set on an artifact (the signature referrer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (the signature's component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations (`org.opencontainers.image.version`, `…created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image index, as the referrers API and the referrers tag hold it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_INDEX_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The referring manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
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

/// One registry: a client for pushes (`oci-client`), one for bounded pulls (`reqwest`), the
/// credentials, and a count of the requests made.
pub struct Registry {
    oci: oci_client::Client,
    http: reqwest::Client,
    scheme: &'static str,
    auth: Auth,
    /// A token from the registry's token flow, after a 401.
    token: tokio::sync::Mutex<Option<String>>,
    requests: Arc<AtomicU64>,
}

impl Registry {
    /// A client for `source`'s registry with `settings`.
    /// Errors ([`RegistryError::Config`]): `insecure` to a registry that is not loopback, an
    /// unreadable or invalid CA file.
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
                crate::files::read_user_file(path, crate::files::MAX_CA_BYTES, "the CA file")
                    .map_err(|e| RegistryError::Config(format!("{e:#}")))
            })
            .transpose()?;
        let mut http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .https_only(!settings.insecure)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("krypton-host/", env!("CARGO_PKG_VERSION")));
        let mut extra = Vec::new();
        if let Some(pem) = &ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                RegistryError::Config(format!("the CA file holds no PEM certificate: {e}"))
            })? {
                http = http.add_root_certificate(cert);
            }
            extra.push(oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: pem.clone(),
            });
        }
        let http = http
            .build()
            .map_err(|e| RegistryError::Config(format!("building the HTTP client: {e}")))?;
        let oci = oci_client::Client::new(oci_client::client::ClientConfig {
            protocol: if settings.insecure {
                oci_client::client::ClientProtocol::Http
            } else {
                oci_client::client::ClientProtocol::Https
            },
            extra_root_certificates: extra,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(REQUEST_TIMEOUT),
            ..Default::default()
        });
        Ok(Registry {
            oci,
            http,
            scheme: if settings.insecure { "http" } else { "https" },
            auth: settings.auth.clone(),
            token: tokio::sync::Mutex::new(None),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Requests this client sent to the registry for pulls and referrer look-ups (pushes go
    /// through `oci-client` and are not counted).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn url(&self, source: &Source, kind: &str, reference: &str) -> String {
        format!(
            "{}://{}/v2/{}/{kind}/{reference}",
            self.scheme,
            source.reference.resolve_registry(),
            source.repository()
        )
    }

    /// One request, retried once with a registry token after a 401. `None` on 404.
    async fn send(
        &self,
        source: &Source,
        method: reqwest::Method,
        url: &str,
        accept: &str,
    ) -> Result<Option<reqwest::Response>> {
        let mut tried_token = false;
        loop {
            let token = self.token.lock().await.clone();
            let header = token
                .map(|t| format!("Bearer {t}"))
                .or_else(|| self.auth.header());
            let mut request = self
                .http
                .request(method.clone(), url)
                .header(reqwest::header::ACCEPT, accept);
            if let Some(h) = header {
                request = request.header(reqwest::header::AUTHORIZATION, h);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let response = request
                .send()
                .await
                .map_err(|e| RegistryError::Unreachable(error_chain(&e)))?;
            match response.status().as_u16() {
                404 => return Ok(None),
                401 if !tried_token && !matches!(self.auth, Auth::Bearer(_)) => {
                    tried_token = true;
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    let token = self
                        .oci
                        .auth(
                            &source.reference,
                            &self.auth.to_oci(),
                            oci_client::RegistryOperation::Pull,
                        )
                        .await
                        .map_err(|e| RegistryError::Status {
                            status: 401,
                            what: "a registry token".into(),
                            detail: printable(&e.to_string()),
                        })?;
                    match token {
                        Some(t) => *self.token.lock().await = Some(t),
                        None => return Err(status_error(response, url).await),
                    }
                }
                200..=299 => return Ok(Some(response)),
                _ => return Err(status_error(response, url).await),
            }
        }
    }

    /// `GET` a body of at most `cap` bytes (declared or streamed); `None` on 404.
    async fn get_bounded(
        &self,
        source: &Source,
        url: &str,
        accept: &str,
        cap: u64,
    ) -> Result<Option<(Option<String>, Vec<u8>)>> {
        let Some(mut response) = self.send(source, reqwest::Method::GET, url, accept).await? else {
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
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RegistryError::Unreachable(error_chain(&e)))?
        {
            if body.len() as u64 + chunk.len() as u64 > cap {
                return Err(invalid(format!(
                    "{url} sent more than the {cap} bytes accepted"
                )));
            }
            body.extend_from_slice(&chunk);
        }
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
    async fn manifest_bytes(
        &self,
        source: &Source,
        digest: &str,
        accept: &str,
    ) -> Result<Option<(Option<String>, Vec<u8>)>> {
        let url = self.url(source, "manifests", digest);
        let Some((content_type, body)) = self
            .get_bounded(source, &url, accept, MAX_MANIFEST_BYTES)
            .await?
        else {
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
    async fn blob(&self, source: &Source, descriptor: &Descriptor, cap: u64) -> Result<Vec<u8>> {
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

    /// The referrers of `digest` (OCI distribution spec 1.1): the referrers API, or on 404 the
    /// referrers tag. `None` when neither exists.
    async fn referrers(&self, source: &Source, digest: &str) -> Result<Option<Index>> {
        let url = self.url(source, "referrers", digest);
        let body = match self
            .get_bounded(source, &url, OCI_INDEX_MEDIA_TYPE, MAX_MANIFEST_BYTES)
            .await?
        {
            Some((_, body)) => body,
            None => {
                let url = self.url(source, "manifests", &referrers_tag(digest));
                match self
                    .get_bounded(source, &url, OCI_INDEX_MEDIA_TYPE, MAX_MANIFEST_BYTES)
                    .await?
                {
                    Some((_, body)) => body,
                    None => return Ok(None),
                }
            }
        };
        let index: Index = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("the referrers index of {digest}: {e}")))?;
        Ok(Some(index))
    }

    /// Whether the registry serves the referrers API (one `GET`; 404 means it does not).
    async fn has_referrers_api(&self, source: &Source, digest: &str) -> Result<bool> {
        let url = self.url(source, "referrers", digest);
        Ok(self
            .get_bounded(source, &url, OCI_INDEX_MEDIA_TYPE, MAX_MANIFEST_BYTES)
            .await?
            .is_some())
    }

    /// Pull the component at `digest`: its manifest (checked against the Wasm layout), its
    /// layer (checked against the layer digest, capped at
    /// [`crate::lifecycle::MAX_COMPONENT_BYTES`]) and the `.sig` of each signature referrer.
    /// Errors: see the fail-closed table in the module docs.
    pub async fn pull(&self, source: &Source, digest: &str) -> Result<Pulled> {
        let (content_type, body) = self
            .manifest_bytes(source, digest, OCI_MANIFEST_MEDIA_TYPE)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("the manifest {digest}")))?;
        let manifest = check_component_manifest(content_type.as_deref(), &body)?;
        let layer = &manifest.layers[0];
        let component = self
            .blob(source, layer, crate::lifecycle::MAX_COMPONENT_BYTES)
            .await?;
        let mut signatures = Vec::new();
        if let Some(index) = self.referrers(source, digest).await? {
            for entry in index
                .manifests
                .iter()
                .filter(|d| d.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT_TYPE))
                .take(MAX_REFERRERS)
            {
                signatures.push(self.signature(source, digest, entry).await?);
            }
        }
        Ok(Pulled {
            digest: digest.to_string(),
            component,
            signatures,
            version_annotation: manifest
                .annotations
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.version"))
                .map(|v| printable(v)),
        })
    }

    /// The `.sig` bytes of one signature referrer of `subject`.
    async fn signature(
        &self,
        source: &Source,
        subject: &str,
        entry: &Descriptor,
    ) -> Result<Vec<u8>> {
        if !is_sha256_digest(&entry.digest) {
            return Err(invalid("a referrer with a digest that is not sha256"));
        }
        let (_, body) = self
            .manifest_bytes(source, &entry.digest, OCI_MANIFEST_MEDIA_TYPE)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("the referrer {}", entry.digest)))?;
        let manifest: Manifest = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("the referrer {}: {e}", entry.digest)))?;
        if manifest.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject) {
            return Err(invalid(format!(
                "the referrer {} does not name {subject} as its subject",
                entry.digest
            )));
        }
        match manifest.layers.as_slice() {
            [layer] if layer.media_type == SIGNATURE_ARTIFACT_TYPE => {
                self.blob(source, layer, signing::MAX_SIGNATURE_FILE_BYTES)
                    .await
            }
            _ => Err(invalid(format!(
                "the signature referrer {} must have one layer of type {SIGNATURE_ARTIFACT_TYPE}",
                entry.digest
            ))),
        }
    }

    /// Push `component` to `target` (a tag) in the Wasm OCI artifact layout: the blobs, the
    /// manifest by digest, then, with `signature` (a `.sig` text for these bytes), its signature
    /// referrer and the referrers tag when the registry has no referrers API, and last the tag. `version` goes into the manifest's
    /// `org.opencontainers.image.version` annotation.
    /// Errors: the registry is unreachable or refuses a push (401/403: credentials), `target`
    /// has no tag.
    pub async fn publish(
        &self,
        target: &Source,
        component: &[u8],
        version: Option<&str>,
        signature: Option<&[u8]>,
    ) -> Result<Published> {
        if target.tag().is_none() || target.digest().is_some() {
            return Err(RegistryError::Config(
                "publish needs a tag: REGISTRY/REPO:TAG".into(),
            ));
        }
        let auth = self.auth.to_oci();
        self.oci
            .auth(
                &target.reference,
                &auth,
                oci_client::RegistryOperation::Push,
            )
            .await
            .map_err(oci_error)?;
        let layer_digest = sha256_digest(component);
        let created = crate::output::rfc3339(now_secs());
        let config = serde_json::to_vec(&serde_json::json!({
            "created": created,
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer_digest],
        }))
        .map_err(|e| invalid(e.to_string()))?;
        let config_digest = sha256_digest(&config);
        self.push_blob(target, component, &layer_digest).await?;
        self.push_blob(target, &config, &config_digest).await?;
        let mut annotations = BTreeMap::from([(
            "org.opencontainers.image.created".to_string(),
            created.clone(),
        )]);
        if let Some(v) = version {
            annotations.insert("org.opencontainers.image.version".into(), v.to_string());
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.into()),
            artifact_type: None,
            config: descriptor(WASM_CONFIG_MEDIA_TYPE, &config),
            layers: vec![descriptor(WASM_LAYER_MEDIA_TYPE, component)],
            subject: None,
            annotations: Some(annotations),
        };
        let body = serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))?;
        let digest = sha256_digest(&body);
        let size = body.len() as u64;
        // By digest first; the tag moves last, once the signature can be found: a daemon that
        // polls in between must never see the new digest without its signature.
        self.push_manifest(
            &target.at_digest(&digest),
            body.clone(),
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .await?;
        let mut published = Published {
            digest: digest.clone(),
            layer_digest,
            signature_digest: None,
            referrers: None,
        };
        let Some(sig) = signature else {
            self.push_manifest(target, body, OCI_MANIFEST_MEDIA_TYPE)
                .await?;
            return Ok(published);
        };
        let body_for_tag = body;
        self.push_blob(target, EMPTY_JSON, &sha256_digest(EMPTY_JSON))
            .await?;
        self.push_blob(target, sig, &sha256_digest(sig)).await?;
        let referrer = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.into()),
            artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.into()),
            config: descriptor(OCI_EMPTY_MEDIA_TYPE, EMPTY_JSON),
            layers: vec![descriptor(SIGNATURE_ARTIFACT_TYPE, sig)],
            subject: Some(Descriptor {
                media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
                digest: digest.clone(),
                size,
                artifact_type: None,
                annotations: None,
            }),
            annotations: Some(BTreeMap::from([(
                "org.opencontainers.image.created".to_string(),
                created,
            )])),
        };
        let body = serde_json::to_vec(&referrer).map_err(|e| invalid(e.to_string()))?;
        let referrer_digest = sha256_digest(&body);
        let entry = Descriptor {
            media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
            digest: referrer_digest.clone(),
            size: body.len() as u64,
            artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.into()),
            annotations: None,
        };
        self.push_manifest(
            &target.at_digest(&referrer_digest),
            body,
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .await?;
        published.signature_digest = Some(referrer_digest);
        if self.has_referrers_api(target, &digest).await? {
            published.referrers = Some("referrers-api");
        } else {
            self.add_to_referrers_tag(target, &digest, entry).await?;
            published.referrers = Some("referrers-tag");
        }
        self.push_manifest(target, body_for_tag, OCI_MANIFEST_MEDIA_TYPE)
            .await?;
        Ok(published)
    }

    /// Add `entry` to the referrers tag of `subject` (pull the index or start an empty one, add
    /// the descriptor unless present, push it back). Two publishers racing on one subject can
    /// lose an entry: the distribution spec 1.1 offers no conditional push for this tag.
    async fn add_to_referrers_tag(
        &self,
        target: &Source,
        subject: &str,
        entry: Descriptor,
    ) -> Result<()> {
        let tag = referrers_tag(subject);
        let url = self.url(target, "manifests", &tag);
        let mut index = match self
            .get_bounded(target, &url, OCI_INDEX_MEDIA_TYPE, MAX_MANIFEST_BYTES)
            .await?
        {
            Some((_, body)) => serde_json::from_slice::<Index>(&body)
                .map_err(|e| invalid(format!("the referrers tag {tag}: {e}")))?,
            None => Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX_MEDIA_TYPE.into()),
                manifests: Vec::new(),
            },
        };
        if index.manifests.iter().any(|d| d.digest == entry.digest) {
            return Ok(());
        }
        index.manifests.push(entry);
        let body = serde_json::to_vec(&index).map_err(|e| invalid(e.to_string()))?;
        self.push_manifest(&target.at_tag(&tag), body, OCI_INDEX_MEDIA_TYPE)
            .await
    }

    async fn push_blob(&self, target: &Source, bytes: &[u8], digest: &str) -> Result<()> {
        self.oci
            .push_blob(&target.reference, bytes, digest)
            .await
            .map(|_| ())
            .map_err(oci_error)
    }

    async fn push_manifest(&self, target: &Source, body: Vec<u8>, media_type: &str) -> Result<()> {
        let content_type = http::HeaderValue::from_str(media_type)
            .map_err(|e| invalid(format!("media type: {e}")))?;
        self.oci
            .push_manifest_raw(&target.reference, body, content_type)
            .await
            .map(|_| ())
            .map_err(oci_error)
    }
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: None,
    }
}

/// Check a component manifest against the Wasm OCI artifact layout: an OCI image manifest
/// (Content-Type, when sent, and `mediaType`), schema 2, config [`WASM_CONFIG_MEDIA_TYPE`],
/// exactly one [`WASM_LAYER_MEDIA_TYPE`] layer with a sha256 digest and a size within
/// [`crate::lifecycle::MAX_COMPONENT_BYTES`]. Errors: [`RegistryError::Invalid`] naming what
/// differs.
pub fn check_component_manifest(content_type: Option<&str>, body: &[u8]) -> Result<Manifest> {
    if let Some(ct) = content_type
        && ct != OCI_MANIFEST_MEDIA_TYPE
    {
        return Err(invalid(format!(
            "the manifest is `{}`, not an OCI image manifest ({OCI_MANIFEST_MEDIA_TYPE})",
            printable(ct)
        )));
    }
    let manifest: Manifest =
        serde_json::from_slice(body).map_err(|e| invalid(format!("the manifest: {e}")))?;
    if manifest.schema_version != 2
        || manifest
            .media_type
            .as_deref()
            .is_some_and(|m| m != OCI_MANIFEST_MEDIA_TYPE)
    {
        return Err(invalid(
            "the manifest is not an OCI image manifest (schema 2)",
        ));
    }
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(invalid(format!(
            "the config is `{}`, not a Wasm component ({WASM_CONFIG_MEDIA_TYPE})",
            printable(&manifest.config.media_type)
        )));
    }
    match manifest.layers.as_slice() {
        [layer] if layer.media_type == WASM_LAYER_MEDIA_TYPE => {
            if !is_sha256_digest(&layer.digest) {
                return Err(invalid("the layer digest is not sha256"));
            }
            if layer.size > crate::lifecycle::MAX_COMPONENT_BYTES {
                return Err(invalid(format!(
                    "the layer is declared {} bytes, more than the {} accepted for a component",
                    layer.size,
                    crate::lifecycle::MAX_COMPONENT_BYTES
                )));
            }
        }
        layers => {
            return Err(invalid(format!(
                "a Wasm component artifact has exactly one layer of type {WASM_LAYER_MEDIA_TYPE}; \
                 this one has {} ({})",
                layers.len(),
                layers
                    .iter()
                    .take(4)
                    .map(|l| printable(&l.media_type))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(manifest)
}

/// Untrusted text made safe for a terminal: at most 200 characters (the rest counted), control
/// and bidirectional formatting characters replaced (`krypton_contract::text::printable_to`).
fn printable(text: &str) -> String {
    krypton_contract::text::printable_to(text, 200)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    printable(&text)
}

async fn status_error(response: reqwest::Response, url: &str) -> RegistryError {
    let status = response.status().as_u16();
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
        what: url.to_string(),
        detail: printable(&String::from_utf8_lossy(&detail)),
    }
}

fn oci_error(e: oci_client::errors::OciDistributionError) -> RegistryError {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::RequestError(r) => RegistryError::Unreachable(error_chain(&r)),
        E::AuthenticationFailure(text) => RegistryError::Status {
            status: 401,
            what: "authentication".into(),
            detail: printable(&text),
        },
        E::UnauthorizedError { url } => RegistryError::Status {
            status: 401,
            what: printable(&url),
            detail: "unauthorized: check the credentials".into(),
        },
        E::ServerError { code, url, message } => RegistryError::Status {
            status: code,
            what: printable(&url),
            detail: printable(&message),
        },
        other => RegistryError::Status {
            status: 0,
            what: "a push".into(),
            detail: error_chain(&other),
        },
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Read a `.sig` text's digest and version without a key (for `publish` of an existing
/// `.sig`). Errors: not the JSON object of [`crate::signing`], or for other bytes than
/// `component`.
pub fn signature_version(sig: &[u8], component: &[u8]) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Fields {
        format: String,
        sha256: String,
        version: String,
    }
    anyhow::ensure!(
        sig.len() as u64 <= signing::MAX_SIGNATURE_FILE_BYTES,
        "the signature file is larger than {} bytes",
        signing::MAX_SIGNATURE_FILE_BYTES
    );
    let fields: Fields = serde_json::from_slice(sig).context(
        "the signature file is not a component signature; make it with `krypton-host sign`",
    )?;
    anyhow::ensure!(
        fields.format == signing::SIGNATURE_CONTEXT,
        "the signature file has format `{}`; re-sign with `krypton-host sign`",
        fields.format.escape_debug()
    );
    anyhow::ensure!(
        fields.sha256 == signing::digest_hex(component),
        "the signature file is for other bytes (sha256 {}); re-sign the component",
        fields.sha256.escape_debug()
    );
    signing::parse_version(&fields.version)?;
    Ok(fields.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_need_a_host_and_a_tag_or_a_sha256_digest() {
        let s = Source::parse("oci://127.0.0.1:5000/krypton/component:stable").unwrap();
        assert_eq!(
            (s.registry(), s.repository(), s.tag()),
            ("127.0.0.1:5000", "krypton/component", Some("stable"))
        );
        assert!(s.is_loopback());
        assert_eq!(
            s.to_string(),
            "oci://127.0.0.1:5000/krypton/component:stable"
        );
        let d = format!("registry.example:443/k@sha256:{}", "a".repeat(64));
        let s = Source::parse(&d).unwrap();
        assert_eq!(s.digest().unwrap(), format!("sha256:{}", "a".repeat(64)));
        assert!(!s.is_loopback());
        assert!(Source::parse("localhost/k:v1").unwrap().is_loopback());
        // The distribution reference grammar has no IPv6 literal: refused, not misread.
        assert!(Source::parse("[::1]:5000/k:v1").is_err());
        for bad in [
            "krypton/component:stable",
            "component:stable",
            "127.0.0.1:5000/krypton/component",
            "127.0.0.1:5000/k@sha512:abcd",
            "127.0.0.1:5000/K:UPPER",
            "",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn insecure_is_refused_off_loopback() {
        let settings = Settings {
            insecure: true,
            ..Settings::default()
        };
        let far = Source::parse("registry.example/k:v1").unwrap();
        let err = Registry::new(&far, &settings).err().unwrap();
        assert!(
            err.to_string()
                .contains("only to a registry on this machine"),
            "{err}"
        );
        let near = Source::parse("127.0.0.1:5000/k:v1").unwrap();
        assert!(Registry::new(&near, &settings).is_ok());
    }

    #[test]
    fn the_component_manifest_must_be_the_wasm_layout() {
        let wasm = b"\0asm";
        let good = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.into()),
            artifact_type: None,
            config: descriptor(WASM_CONFIG_MEDIA_TYPE, b"{}"),
            layers: vec![descriptor(WASM_LAYER_MEDIA_TYPE, wasm)],
            subject: None,
            annotations: None,
        };
        let body = serde_json::to_vec(&good).unwrap();
        check_component_manifest(Some(OCI_MANIFEST_MEDIA_TYPE), &body).unwrap();
        let mut tar = good.clone();
        tar.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar".into();
        let err = check_component_manifest(None, &serde_json::to_vec(&tar).unwrap()).unwrap_err();
        assert!(err.to_string().contains("exactly one layer"), "{err}");
        let mut big = good.clone();
        big.layers[0].size = crate::lifecycle::MAX_COMPONENT_BYTES + 1;
        assert!(check_component_manifest(None, &serde_json::to_vec(&big).unwrap()).is_err());
        let mut config = good.clone();
        config.config.media_type = "application/vnd.oci.image.config.v1+json".into();
        assert!(check_component_manifest(None, &serde_json::to_vec(&config).unwrap()).is_err());
        assert!(check_component_manifest(Some("application/json"), &body).is_err());
        assert!(check_component_manifest(None, b"[]").is_err());
        assert_eq!(
            referrers_tag(&format!("sha256:{}", "b".repeat(64))),
            format!("sha256-{}", "b".repeat(64))
        );
    }

    #[test]
    fn auth_comes_from_files_and_never_echoes_them() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        match Auth::from_files(None, None, Some(&token)).unwrap() {
            Auth::Bearer(t) => assert_eq!(t, "s3cret-token"),
            other => panic!("{other:?}"),
        }
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "two\nlines\n").unwrap();
        let err = Auth::from_files(Some("u"), Some(&pass), None).unwrap_err();
        assert!(!err.to_string().contains("lines"), "{err}");
        assert!(Auth::from_files(Some("u"), None, None).is_err());
        assert!(Auth::from_files(Some("u"), Some(&pass), Some(&token)).is_err());
        assert!(matches!(
            Auth::from_files(None, None, None).unwrap(),
            Auth::Anonymous
        ));
    }
}
