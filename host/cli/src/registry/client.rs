//! The registry client: `oci-client` for pushes and the token flow, `reqwest` for bounded
//! pulls; every request counted, every body capped.

use super::*;
use std::path::PathBuf;
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
    pub(super) oci: oci_client::Client,
    pub(super) http: reqwest::Client,
    pub(super) scheme: &'static str,
    pub(super) auth: Auth,
    /// A token from the registry's token flow, after a 401.
    pub(super) token: tokio::sync::Mutex<Option<String>>,
    pub(super) requests: Arc<AtomicU64>,
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
                krypton_host::files::read_user_file(
                    path,
                    krypton_host::files::MAX_CA_BYTES,
                    "the CA file",
                )
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

    pub(super) fn url(&self, source: &Source, kind: &str, reference: &str) -> String {
        format!(
            "{}://{}/v2/{}/{kind}/{reference}",
            self.scheme,
            source.reference.resolve_registry(),
            source.repository()
        )
    }

    /// One request, retried once with a registry token after a 401. `None` on 404.
    pub(super) async fn send(
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
    pub(super) async fn get_bounded(
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
    pub(super) async fn manifest_bytes(
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

    /// The referrers of `digest` (OCI distribution spec 1.1): the referrers API, or on 404 the
    /// referrers tag. `None` when neither exists.
    #[allow(dead_code)] // pulls list referrers with `Registry::signature_referrers` (pull.rs)
    pub(super) async fn referrers(&self, source: &Source, digest: &str) -> Result<Option<Index>> {
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
    pub(super) async fn has_referrers_api(&self, source: &Source, digest: &str) -> Result<bool> {
        let url = self.url(source, "referrers", digest);
        Ok(self
            .get_bounded(source, &url, OCI_INDEX_MEDIA_TYPE, MAX_MANIFEST_BYTES)
            .await?
            .is_some())
    }
}

pub(super) async fn status_error(response: reqwest::Response, url: &str) -> RegistryError {
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

pub(super) fn oci_error(e: oci_client::errors::OciDistributionError) -> RegistryError {
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
