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
//! The signature is the `.sig` file of [`krypton_host::signing`] (context, digest, version, ed25519),
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
//! Every request, pull, push and token, goes through one `reqwest` client ([`Registry`]): a
//! total deadline per request ([`REQUEST_TIMEOUT`], [`TOKEN_TIMEOUT`], [`layer_deadline`] for a
//! layer; reqwest's `timeout` covers the body) and an idle cut ([`READ_IDLE_TIMEOUT`]), every
//! body read under a cap and counted ([`Registry::requests`]), a whole `publish` under
//! [`PUBLISH_TIMEOUT`]. A layer download cut short is continued with a `Range` request
//! ([`Registry::layer_to_file`]). Pushes are the distribution spec's monolithic upload
//! (`POST` a session, `PUT` the blob with its digest) and a manifest `PUT`; `oci-client` is used
//! for its reference parser only (it reads bodies whole, logs the token answer at debug level
//! and panics on a token that is not a header value). TLS is rustls with the system's roots
//! plus `ca_file`.
//!
//! Auth: anonymous, basic (user and a password read from a file), or a bearer token read from a
//! file ([`Auth`]); the files are checked like the configuration ([`read_credential`]). On a
//! `401` with a `Bearer` challenge the token flow (distribution spec token authentication, RFC
//! 6750) runs once: `GET realm?service=…&scope=…` under [`TOKEN_TIMEOUT`] and
//! [`MAX_TOKEN_RESPONSE_BYTES`]; basic credentials go only to a realm on the registry's own
//! origin or over HTTPS, and a token must be visible ASCII ([`check_token`]). No token or
//! password is logged: the `Authorization` values are marked sensitive.
//!
//! Proxies: a loopback or `insecure` registry is always reached directly (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY` are ignored for it, since the credentials would go to the proxy in
//! clear); any other registry follows those variables and `NO_PROXY`.
//!
//! Busy registries: a `429` or `503` with `Retry-After` (seconds or an HTTP-date) is waited out
//! within the request up to [`MAX_RETRY_AFTER_WAIT`]; a longer delay comes back in the error
//! ([`RegistryError::retry_after`]) for the caller to honour; without `Retry-After` nothing is
//! retried at once.
//!
//! # Fail-closed table
//!
//! Everything a registry sends is untrusted input. What is refused, and why:
//!
//! | refused | why |
//! | --- | --- |
//! | plain HTTP to a registry that is not loopback (`insecure = true` with another host) | anyone on the path could swap the bytes; the signature would still stop them, but the daemon's view of the tag would be theirs |
//! | a reference without a registry host, a tag or a digest, or with a non-SHA-256 digest | an implicit `docker.io` or `latest` is not a deployment decision |
//! | a manifest over [`MAX_MANIFEST_BYTES`], a signature over [`krypton_host::signing::MAX_SIGNATURE_FILE_BYTES`], a layer over [`krypton_host::component::MAX_COMPONENT_BYTES`] (declared or streamed) | memory is bounded before parsing |
//! | a manifest whose SHA-256 is not the digest asked for, a blob whose SHA-256 is not its descriptor's | content addressing is the only integrity the registry offers |
//! | a manifest of another media type, a config other than [`WASM_CONFIG_MEDIA_TYPE`], not exactly one [`WASM_LAYER_MEDIA_TYPE`] layer | not the Wasm artifact layout: nothing else is handed to the compiler |
//! | more than [`MAX_REFERRERS`] signature referrers considered; a referrer whose `subject` is not the component | a hostile index cannot make a pull unbounded, nor pass off another artifact's signature |
//! | (daemon) no signature verifying with `trusted_public_key`, a version below the floor | see [`krypton_host::signing`]; checked before anything is written or compiled |
//!
//! A daemon that meets any of these keeps serving what it serves ([`follow`]).

//!
//! # Files
//!
//! `source.rs`: a reference and the credentials; `manifest.rs`: the OCI documents and the
//! layout check; `client.rs`: the bounded HTTP client (every request counted and capped);
//! `pull.rs` and `publish.rs`: the two directions; `follow.rs`: the daemon's follower.

mod client;
pub mod follow;
mod manifest;
mod publish;
mod pull;
mod source;

use client::Extra;
pub use client::{Published, Pulled, Registry, Settings, check_token, http_date, read_credential};
pub use manifest::{Descriptor, Index, Manifest, check_component_manifest};
pub use pull::{Announced, Lookup, LookupError, Referrers, partial_path};
pub use source::{Auth, Source, credential_path};

use anyhow::Context as _;
use krypton_host::signing;
use serde::Deserialize;
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
/// The largest signature referrer manifest fetched (bytes): one written by `publish` is about
/// 600 bytes (a config descriptor, one layer, a subject, an annotation or two). A listed
/// referrer that declares more is refused without a request, and one fetched is read under
/// the smaller of this and its declared size, so that junk referrers of an unsigned digest
/// cost at most [`MAX_REFERRERS`] × this per poll.
pub const MAX_REFERRER_MANIFEST_BYTES: u64 = 16 * 1024;
/// Most signature referrers of one component considered.
pub const MAX_REFERRERS: usize = 16;
/// Longest wait for a registry connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one registry request, body included (a 64 MiB layer at ~1 MB/s fits).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest a transfer may go without a byte before it is cut (reqwest's `read_timeout`):
/// a stalled link fails fast, a slow one keeps going.
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The slowest rate a layer download is given time for, bytes per second (2 KiB/s, 16 kbit/s:
/// below what an NB-IoT or a weak LTE-M link carries): a layer of N bytes has
/// max([`REQUEST_TIMEOUT`], N / this) in all, e.g. 21 min for 2.5 MB, 9 h for the 64 MiB cap.
pub const MIN_LAYER_RATE: u64 = 2 * 1024;

/// The deadline of a layer download of `bytes` bytes (see [`MIN_LAYER_RATE`]).
pub fn layer_deadline(bytes: u64) -> Duration {
    REQUEST_TIMEOUT.max(Duration::from_secs(bytes / MIN_LAYER_RATE))
}
/// Largest password or token file read, bytes.
pub const MAX_SECRET_FILE_BYTES: u64 = 16 * 1024;
/// Longest wait for the registry's token flow (one request to the realm, body included).
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token answer read from a realm, bytes (a real one, a JWT, is a few KiB).
pub const MAX_TOKEN_RESPONSE_BYTES: u64 = 64 * 1024;
/// Longest registry token accepted, bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest `Retry-After` one request waits out itself before it retries; a registry asking for
/// longer gets an error that carries the delay ([`RegistryError::retry_after`]).
pub const MAX_RETRY_AFTER_WAIT: Duration = Duration::from_secs(60);
/// Most `Retry-After` waits within one request.
pub const MAX_RETRY_AFTER_WAITS: u32 = 2;
/// The longest delay a `Retry-After` is taken at (1 h): a longer one (or one that would
/// overflow a clock, e.g. `Retry-After: 18446744073709551615`) counts as this, so that a
/// misconfigured registry, proxy or CDN error page can pause a follower for an hour, not for
/// years.
pub const MAX_HONOURED_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Longest a whole `publish` may take (every blob, manifest and referrer push).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How many times `publish` writes the referrers tag and reads it back before it gives up on
/// seeing its signature listed (a racing publisher of the same digest can overwrite it).
pub const REFERRERS_TAG_ATTEMPTS: u32 = 5;

/// The empty JSON object, the content of the empty descriptor.
pub(super) const EMPTY_JSON: &[u8] = b"{}";

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
        /// The delay the registry asked for with `Retry-After` (RFC 9110 §10.2.3), if any:
        /// the next attempt must not come sooner.
        retry_after: Option<Duration>,
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
    /// The delay the registry asked for (`Retry-After` on a `429` or `503`) before the next
    /// request, if it asked.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether trying the same thing later may succeed (the registry down or answering 5xx, a
    /// transfer cut short): such an error is retried at the next poll and never remembered.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable(_) | RegistryError::NotFound(_) => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            RegistryError::Invalid(_) | RegistryError::Config(_) => false,
        }
    }

    /// Whether the error says nothing about the artifact asked for, so that a follower asks
    /// again later rather than take the thing as missing: [`Self::is_transient`], and also an
    /// authorization refused (`401`, `403`: an expired token, or a rate limit some registries
    /// answer with `403`), `429`, and a setting or local file of this host ([`Self::Config`]).
    pub fn is_retryable(&self) -> bool {
        self.is_transient()
            || matches!(self, RegistryError::Config(_))
            || matches!(self, RegistryError::Status { status, .. } if matches!(status, 401 | 403 | 429))
    }
}

type Result<T> = std::result::Result<T, RegistryError>;

pub(super) fn invalid(text: impl Into<String>) -> RegistryError {
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

/// Untrusted text made safe for a terminal: at most 200 characters (the rest counted), control
/// and bidirectional formatting characters replaced (`krypton_contract::text::printable_to`).
pub(super) fn printable(text: &str) -> String {
    krypton_contract::text::printable_to(text, 200)
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    printable(&text)
}

pub(super) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Read a `.sig` text's digest and version without a key (for `publish` of an existing
/// `.sig`). Errors: not the JSON object of [`krypton_host::signing`], or for other bytes than
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
    use manifest::descriptor;

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
        big.layers[0].size = krypton_host::component::MAX_COMPONENT_BYTES + 1;
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
        // A secret file readable by others is refused (checked like the configuration).
        let err = Auth::from_files(None, None, Some(&token)).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        use std::os::unix::fs::PermissionsExt as _;
        for file in [&token, &dir.path().join("pass")] {
            std::fs::write(file, "").unwrap();
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
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
        // Debug (what a `?settings` in a log line prints) names no secret.
        let basic = Auth::Basic {
            username: "gw".into(),
            password: "pa55word".into(),
        };
        assert_eq!(
            format!("{basic:?}"),
            r#"Basic { username: "gw", password: "<redacted>" }"#
        );
        let settings = Settings {
            auth: Auth::Bearer("s3cret-token".into()),
            ..Default::default()
        };
        let text = format!("{settings:?}");
        assert!(text.contains("Bearer(<redacted>)"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
