//! Component signatures: what is signed, the `.sig` file, and the version floor that stops a
//! replayed older component.
//!
//! A bare signature over a component's digest proves only that the bytes were signed once: any
//! component ever signed (a vulnerable one included) could be put back. So the signed payload
//! binds three things, each on its own line of ASCII text:
//!
//! ```text
//! soracom-krypton/component-signature/v1
//! sha256:<64 lowercase hex digits of SHA-256 over the component bytes>
//! version:<the component's semantic version, as its `version` export reports it>
//! ```
//!
//! The first line is a context string, so a signature made for this purpose cannot be taken
//! for a signature over anything else made with the same key (the domain-separation practice of
//! RFC 8032 §8.3). The signature is ed25519 (RFC 8032, strict verification) over those bytes.
//!
//! The `.sig` file beside a component is one JSON object:
//!
//! ```json
//! {"format":"soracom-krypton/component-signature/v1","sha256":"…","version":"0.2.0","signature":"<base64>"}
//! ```
//!
//! It is untrusted input: bounded to [`MAX_SIGNATURE_FILE_BYTES`], every field checked, and
//! unknown fields refused. The older form (a bare base64 signature over the digest) is refused
//! with a message saying how to re-sign.
//!
//! # Precompiled components
//!
//! A precompiled component (`krypton-host compile`, see [`crate::component::precompiled`]) is native code
//! for one target, which wasmtime runs without further checks, so it travels with a signature
//! of its own kind. Its payload binds the artifact to the component it was compiled from and
//! to where it can run, one field a line:
//!
//! ```text
//! soracom-krypton/precompiled-signature/v1
//! sha256:<SHA-256 of the artifact bytes, 64 lowercase hex digits>
//! target:<the target triple it was compiled for, e.g. aarch64-unknown-linux-gnu>
//! wasmtime:<the wasmtime version that compiled it>
//! source-sha256:<SHA-256 of the source component (.wasm)>
//! version:<the source component's semantic version>
//! ```
//!
//! Its own context string keeps a component signature from being taken for an artifact
//! signature and back (RFC 8032 §8.3, domain separation); ed25519 (RFC 8032, strict
//! verification) as above. The `.sig` beside the artifact (`<artifact>.sig`) is one JSON
//! object, bounded and strict as the component's:
//!
//! ```json
//! {"format":"soracom-krypton/precompiled-signature/v1","sha256":"…","target":"x86_64-unknown-linux-gnu","wasmtime":"48.0.8","sourceSha256":"…","version":"0.3.0","signature":"<base64>"}
//! ```
//!
//! The version rule: a host with a state directory keeps the highest version it has accepted
//! ([`VersionFloor`]) and refuses a lower one unless the operator allows a downgrade. Versions
//! are compared by precedence as Semantic Versioning 2.0.0 defines it (semver.org §11; build
//! metadata does not count, §10) with the `semver` crate's `cmp_precedence`.

use anyhow::Context as _;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The context string, first line of every signed payload and the `format` of a `.sig` file.
pub const SIGNATURE_CONTEXT: &str = "soracom-krypton/component-signature/v1";
/// Largest `.sig` file read, bytes (a real one is about 250).
pub const MAX_SIGNATURE_FILE_BYTES: u64 = 4096;
/// Longest component version accepted, bytes.
pub const MAX_VERSION_BYTES: usize = 64;
/// Largest key file read (`sign --key`), bytes.
pub const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn digest_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A component version: a semantic version (semver.org) of at most [`MAX_VERSION_BYTES`].
/// Errors: empty, too long, or not `MAJOR.MINOR.PATCH[-pre][+build]`.
pub fn parse_version(text: &str) -> anyhow::Result<semver::Version> {
    anyhow::ensure!(
        !text.is_empty() && text.len() <= MAX_VERSION_BYTES,
        "a component version must be 1-{MAX_VERSION_BYTES} bytes"
    );
    semver::Version::parse(text).map_err(|e| {
        anyhow::anyhow!(
            "`{}` is not a semantic version such as 0.2.0: {e}",
            text.escape_debug()
        )
    })
}

/// The exact bytes an ed25519 signature covers (see the module docs).
/// Errors: `version` is not a valid version (it could otherwise break the line structure).
pub fn signed_payload(digest_hex: &str, version: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        digest_hex.len() == 64
            && digest_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "the digest must be 64 lowercase hex digits"
    );
    parse_version(version)?;
    Ok(format!("{SIGNATURE_CONTEXT}\nsha256:{digest_hex}\nversion:{version}\n").into_bytes())
}

/// The `.sig` file, as written by [`sign`] and read by [`verify`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    format: String,
    sha256: String,
    version: String,
    /// 64 bytes, standard base64 (RFC 4648 §4).
    signature: String,
}

/// The detached signature file of a component: `<component>.sig`.
pub fn signature_path(component: &Path) -> PathBuf {
    let mut name = component.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Sign `component` as `version`: the text of its `.sig` file (one JSON object and a newline).
/// Errors: `version` is not a valid version.
pub fn sign(key: &SigningKey, component: &[u8], version: &str) -> anyhow::Result<String> {
    let digest = digest_hex(component);
    let payload = signed_payload(&digest, version)?;
    let signature = key.sign(&payload);
    let file = SignatureFile {
        format: SIGNATURE_CONTEXT.into(),
        sha256: digest,
        version: version.into(),
        signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
    };
    Ok(serde_json::to_string(&file)? + "\n")
}

/// Check a `.sig` file's text against `component` and `key`; returns the signed version.
///
/// Errors (each says what to do): the file is too large, not the JSON object above (including
/// the older bare-base64 form), of another format, for other bytes, or its signature does not
/// verify with `key` (strict RFC 8032 verification).
pub fn verify(key: &VerifyingKey, component: &[u8], sig_text: &[u8]) -> anyhow::Result<String> {
    verify_digest(key, &digest_hex(component), sig_text)
}

/// [`verify`] for a component known only by its SHA-256 (`digest`, 64 lowercase hex digits),
/// e.g. the layer digest a registry manifest declares, before its bytes are fetched: the
/// signature covers the digest, so it can be checked first; the bytes must then hash to
/// `digest`. Errors: as [`verify`].
pub fn verify_digest(key: &VerifyingKey, digest: &str, sig_text: &[u8]) -> anyhow::Result<String> {
    anyhow::ensure!(
        sig_text.len() as u64 <= MAX_SIGNATURE_FILE_BYTES,
        "the signature file is larger than {MAX_SIGNATURE_FILE_BYTES} bytes"
    );
    let file: SignatureFile = serde_json::from_slice(sig_text).map_err(|e| {
        if sig_text.first().is_some_and(|b| *b != b'{') {
            anyhow::anyhow!(
                "the signature file is in the old form (a bare signature over the digest), which \
                 does not bind the version; re-sign the component with `krypton-host sign`"
            )
        } else {
            anyhow::anyhow!("the signature file is not a valid {SIGNATURE_CONTEXT} object: {e}")
        }
    })?;
    anyhow::ensure!(
        file.format == SIGNATURE_CONTEXT,
        "the signature file has format `{}`, expected `{SIGNATURE_CONTEXT}`",
        file.format.escape_debug()
    );
    anyhow::ensure!(
        file.sha256 == digest,
        "the signature file is for other bytes (sha256 {}, the component is {digest})",
        file.sha256.escape_debug()
    );
    let payload = signed_payload(digest, &file.version)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(file.signature.trim())
        .context("the signature is not base64")?;
    let signature =
        ed25519_dalek::Signature::from_slice(&raw).context("the signature is not 64 bytes")?;
    key.verify_strict(&payload, &signature)
        .context("the signature does not verify with the trusted key")?;
    Ok(file.version)
}

/// The context string of precompiled components: first line of their signed payload and the
/// `format` of their `.sig` file (see the module docs).
pub const PRECOMPILED_SIGNATURE_CONTEXT: &str = "soracom-krypton/precompiled-signature/v1";
/// Longest target triple or wasmtime version accepted in a precompiled signature, bytes.
pub const MAX_PRECOMPILED_FIELD_BYTES: usize = 64;

/// What a precompiled component's signature binds (all but the context string and the
/// signature itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrecompiledFacts {
    /// SHA-256 of the artifact bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// The target triple it was compiled for (`Config::target`), e.g.
    /// `aarch64-unknown-linux-gnu`.
    pub target: String,
    /// The wasmtime version that compiled it (an artifact loads only into the same version).
    pub wasmtime: String,
    /// SHA-256 of the source component, 64 lowercase hex digits.
    pub source_sha256: String,
    /// The source component's semantic version, as its `version` export reports it.
    pub version: String,
}

fn is_digest_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A target triple or a wasmtime version of a precompiled signature: 1 to
/// [`MAX_PRECOMPILED_FIELD_BYTES`] bytes of `a-z`, `0-9`, `_`, `.`, `-` (nothing that could
/// add a line to the payload).
fn check_plain_field(name: &str, text: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !text.is_empty()
            && text.len() <= MAX_PRECOMPILED_FIELD_BYTES
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)),
        "the {name} `{}` is not 1-{MAX_PRECOMPILED_FIELD_BYTES} characters of a-z, 0-9, `_`, `.`, `-`",
        text.escape_debug()
    );
    Ok(())
}

/// The exact bytes the ed25519 signature of a precompiled component covers (see the module
/// docs). Errors: a field breaks its rule (digests: 64 lowercase hex digits; target and
/// wasmtime version: [`MAX_PRECOMPILED_FIELD_BYTES`] plain characters; version: a semantic
/// version).
pub fn precompiled_payload(facts: &PrecompiledFacts) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        is_digest_hex(&facts.sha256) && is_digest_hex(&facts.source_sha256),
        "the digests must be 64 lowercase hex digits"
    );
    check_plain_field("target", &facts.target)?;
    check_plain_field("wasmtime version", &facts.wasmtime)?;
    parse_version(&facts.version)?;
    Ok(format!(
        "{PRECOMPILED_SIGNATURE_CONTEXT}\nsha256:{}\ntarget:{}\nwasmtime:{}\nsource-sha256:{}\nversion:{}\n",
        facts.sha256, facts.target, facts.wasmtime, facts.source_sha256, facts.version
    )
    .into_bytes())
}

/// The `.sig` file of a precompiled component (the fields of [`PrecompiledFacts`] between
/// `format` and `signature`; serde's `flatten` would not refuse unknown fields).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrecompiledSignatureFile {
    format: String,
    sha256: String,
    target: String,
    wasmtime: String,
    source_sha256: String,
    version: String,
    /// 64 bytes, standard base64 (RFC 4648 §4).
    signature: String,
}

impl PrecompiledSignatureFile {
    fn facts(&self) -> PrecompiledFacts {
        PrecompiledFacts {
            sha256: self.sha256.clone(),
            target: self.target.clone(),
            wasmtime: self.wasmtime.clone(),
            source_sha256: self.source_sha256.clone(),
            version: self.version.clone(),
        }
    }
}

/// Sign a precompiled component: the text of its `.sig` file (one JSON object and a newline).
/// `facts.sha256` must be the artifact's digest. Errors: a field breaks its rule
/// ([`precompiled_payload`]).
pub fn sign_precompiled(key: &SigningKey, facts: &PrecompiledFacts) -> anyhow::Result<String> {
    let payload = precompiled_payload(facts)?;
    let file = PrecompiledSignatureFile {
        format: PRECOMPILED_SIGNATURE_CONTEXT.into(),
        sha256: facts.sha256.clone(),
        target: facts.target.clone(),
        wasmtime: facts.wasmtime.clone(),
        source_sha256: facts.source_sha256.clone(),
        version: facts.version.clone(),
        signature: base64::engine::general_purpose::STANDARD.encode(key.sign(&payload).to_bytes()),
    };
    Ok(serde_json::to_string(&file)? + "\n")
}

/// Check the `.sig` text of a precompiled component whose bytes have the SHA-256
/// `artifact_digest` (hex) against `key`; returns what it binds (the caller then checks the
/// target and wasmtime version against its own).
///
/// Errors (each says what to do): the file is too large or not the JSON object above, is a
/// component's signature (`krypton-host sign`) rather than an artifact's, is for other bytes,
/// a field breaks its rule, or the signature does not verify with `key` (strict RFC 8032
/// verification).
pub fn verify_precompiled(
    key: &VerifyingKey,
    artifact_digest: &str,
    sig_text: &[u8],
) -> anyhow::Result<PrecompiledFacts> {
    anyhow::ensure!(
        sig_text.len() as u64 <= MAX_SIGNATURE_FILE_BYTES,
        "the signature file is larger than {MAX_SIGNATURE_FILE_BYTES} bytes"
    );
    // The format first: a component's `.sig` beside an artifact gets its own message.
    #[derive(Deserialize)]
    struct Format {
        format: Option<String>,
    }
    let format = serde_json::from_slice::<Format>(sig_text)
        .ok()
        .and_then(|f| f.format);
    anyhow::ensure!(
        format.as_deref() != Some(SIGNATURE_CONTEXT),
        "the signature file is a component signature (`krypton-host sign`), not the signature \
         of a precompiled component: `krypton-host compile COMPONENT --target TRIPLE --out \
         FILE.cwasm --signing-key KEY` writes both the artifact and its signature"
    );
    let file: PrecompiledSignatureFile = serde_json::from_slice(sig_text).map_err(|e| {
        anyhow::anyhow!(
            "the signature file is not a valid {PRECOMPILED_SIGNATURE_CONTEXT} object: {e}"
        )
    })?;
    anyhow::ensure!(
        file.format == PRECOMPILED_SIGNATURE_CONTEXT,
        "the signature file has format `{}`, expected `{PRECOMPILED_SIGNATURE_CONTEXT}`",
        file.format.escape_debug()
    );
    let facts = file.facts();
    anyhow::ensure!(
        facts.sha256 == artifact_digest,
        "the signature file is for other bytes (sha256 {}, the artifact is {artifact_digest})",
        facts.sha256.escape_debug()
    );
    let payload = precompiled_payload(&facts)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(file.signature.trim())
        .context("the signature is not base64")?;
    let signature =
        ed25519_dalek::Signature::from_slice(&raw).context("the signature is not 64 bytes")?;
    key.verify_strict(&payload, &signature)
        .context("the signature does not verify with the trusted key")?;
    Ok(facts)
}

fn decode_32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .filter(|b| b.len() == 32)
        .or_else(|| {
            // Hex: 64 ASCII hex digits. Checked as bytes first, so multi-byte characters can
            // never split a slice.
            (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| {
                    text.as_bytes()
                        .chunks(2)
                        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                        .collect::<Option<Vec<u8>>>()
                })
                .flatten()
        })?;
    bytes.try_into().ok()
}

/// Parse a trusted ed25519 public key: 32 bytes as standard base64 (44 characters) or hex (64).
/// Errors: any other text, or 32 bytes that are not a valid curve point.
pub fn parse_public_key(text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes = decode_32(text).context("the public key must be 32 bytes as base64 or hex")?;
    let key = VerifyingKey::from_bytes(&bytes).context("not a valid ed25519 public key")?;
    // A small-order point (the all-zero key, for one) verifies no honest signature, and
    // with a lax verifier would verify forged ones (RFC 8032 §5.1.7; `verify_strict`).
    anyhow::ensure!(
        !key.is_weak(),
        "not a usable ed25519 public key (a small-order point): generate one with `krypton-host keygen`"
    );
    Ok(key)
}

/// Read an ed25519 signing key: a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`, as written by
/// [`generate_key_pem`] or `openssl genpkey -algorithm ed25519`), or the 32-byte seed as base64
/// or hex. Errors never echo the key text.
pub fn parse_signing_key(text: &str) -> anyhow::Result<SigningKey> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    if text.contains("-----BEGIN") {
        return SigningKey::from_pkcs8_pem(text).map_err(|_| {
            anyhow::anyhow!("not an unencrypted PKCS#8 ed25519 private key (PEM `PRIVATE KEY`)")
        });
    }
    let seed = decode_32(text)
        .context("the signing key must be PKCS#8 PEM, or 32 bytes as base64 or hex")?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A new ed25519 key pair from the operating system's random source (`getrandom(2)`): the
/// private key as PKCS#8 PEM, and the public key as base64 (the form `trusted_public_key` takes).
///
/// The PEM is the form `openssl genpkey -algorithm ed25519` writes: a `OneAsymmetricKey` of
/// version 0 (PKCS#8 v1) holding only the seed, without the optional public key (RFC 8410 §7).
/// OpenSSL 3.0 and Python's `cryptography` refuse the version 1 form with the public key that
/// `SigningKey::to_pkcs8_pem` writes; [`parse_signing_key`] reads both.
pub fn generate_key_pem() -> anyhow::Result<(String, String)> {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let seed_only = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let pem = seed_only
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    Ok((pem.to_string(), public))
}

/// The highest component version a host has accepted, kept in `<state_dir>/accepted-version`
/// (one line, written by temp file, fsync and rename, mode 0600), and held in memory.
///
/// What a running host enforces is the higher of the file and what it holds in memory (the
/// highest version it read, seeded or accepted, and the SHA-256 of the signed component it
/// accepted at that version): removing or lowering the file while it runs lowers nothing. Only
/// [`VersionFloor::restore`] (a roll back) and an allowed downgrade lower it. Clones share one
/// floor.
#[derive(Debug, Clone)]
pub struct VersionFloor {
    file: PathBuf,
    allow_downgrade: bool,
    held: std::sync::Arc<std::sync::Mutex<Held>>,
}

/// The floor held in memory.
#[derive(Debug, Default)]
struct Held {
    version: Option<semver::Version>,
    /// SHA-256 (hex) of the signed component accepted at `version`, when one was.
    sha256: Option<String>,
}

/// Largest `accepted-version` file read, bytes.
const MAX_FLOOR_FILE_BYTES: u64 = 256;

impl VersionFloor {
    /// The floor kept in `state_dir` (which must exist); `allow_downgrade` lets a lower version
    /// in (it is logged, and it lowers the floor), and other bytes signed as the accepted version.
    pub fn new(state_dir: &Path, allow_downgrade: bool) -> Self {
        VersionFloor {
            file: state_dir.join("accepted-version"),
            allow_downgrade,
            held: Default::default(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest accepted version recorded in the file, if one is.
    /// Errors: the file cannot be read, is not a regular file, or does not hold a version
    /// (the operator removes it to start over).
    pub fn highest(&self) -> anyhow::Result<Option<semver::Version>> {
        match std::fs::symlink_metadata(&self.file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("reading {}: {e}", self.file.display()),
            Ok(_) => {}
        }
        let bytes = crate::files::read_user_file(
            &self.file,
            MAX_FLOOR_FILE_BYTES,
            "the accepted-version file",
        )?;
        let text = String::from_utf8(bytes)
            .ok()
            .with_context(|| format!("{} is not text", self.file.display()))?;
        parse_version(text.trim())
            .map(Some)
            .with_context(|| format!("{} (remove it to reset the floor)", self.file.display()))
    }

    /// The floor enforced now: the higher of the file and the floor held in memory (which
    /// takes the file's value when it is higher). Errors: as [`VersionFloor::highest`].
    pub fn enforced(&self) -> anyhow::Result<Option<semver::Version>> {
        let file = self.highest()?;
        let mut held = self.held();
        if let Some(file) = file
            && held
                .version
                .as_ref()
                .is_none_or(|h| file.cmp_precedence(h).is_gt())
        {
            held.version = Some(file);
            held.sha256 = None;
        }
        Ok(held.version.clone())
    }

    /// Hold at least `version` as the floor in memory (the file is not written): a new state
    /// directory then starts from the version the host is built or configured with, not from
    /// zero. Errors: `version` is not a version, or the file cannot be read.
    pub fn seed(&self, version: &str) -> anyhow::Result<()> {
        let version = parse_version(version)?;
        let enforced = self.enforced()?;
        if enforced.is_none_or(|e| version.cmp_precedence(&e).is_gt()) {
            let mut held = self.held();
            held.version = Some(version);
            held.sha256 = None;
        }
        Ok(())
    }

    /// Whether `version` may serve. Errors: it is not a version, or it is lower than the
    /// floor and downgrades are not allowed.
    pub fn check(&self, version: &str) -> anyhow::Result<()> {
        self.check_artifact(version, None)
    }

    /// [`VersionFloor::check`] for a signed component whose bytes have SHA-256 `sha256` (hex):
    /// besides a lower version, other bytes signed as the version accepted last are refused
    /// unless downgrades are allowed (a signed build of the serving version cannot be swapped
    /// for another one by whoever can deliver files). Errors: as [`VersionFloor::check`].
    pub fn check_artifact(&self, version: &str, sha256: Option<&str>) -> anyhow::Result<()> {
        let candidate = parse_version(version).context(
            "the version rule needs a semantic version to compare with the highest accepted one",
        )?;
        let Some(highest) = self.enforced()? else {
            return Ok(());
        };
        match candidate.cmp_precedence(&highest) {
            std::cmp::Ordering::Less => {
                anyhow::ensure!(
                    self.allow_downgrade,
                    "version {candidate} is lower than {highest}, the highest this host has accepted: \
                     refusing a downgrade (set `allow_downgrade = true` to allow it on purpose)"
                );
                tracing::warn!(%candidate, %highest, "downgrade allowed by the configuration");
            }
            std::cmp::Ordering::Equal => {
                let accepted = self.held().sha256.clone();
                if let (Some(accepted), Some(sha256)) = (accepted, sha256)
                    && accepted != sha256
                {
                    anyhow::ensure!(
                        self.allow_downgrade,
                        "version {candidate} is the version this host accepted, but with other \
                         bytes (sha256 {sha256}, accepted {accepted}): refusing a same-version \
                         swap (publish it as a higher version, or set `allow_downgrade = true` to \
                         allow it on purpose)"
                    );
                    tracing::warn!(%candidate, %sha256, "same-version swap allowed by the configuration");
                }
            }
            std::cmp::Ordering::Greater => {}
        }
        Ok(())
    }

    /// Record `version` as accepted: it becomes the floor when it is higher (or when a
    /// downgrade was allowed). Errors: the file cannot be written.
    pub fn accept(&self, version: &str) -> anyhow::Result<()> {
        self.accept_artifact(version, None)
    }

    /// [`VersionFloor::accept`] for a signed component whose bytes have SHA-256 `sha256`: it
    /// also becomes the accepted artifact of its version. Errors: the file cannot be written.
    pub fn accept_artifact(&self, version: &str, sha256: Option<&str>) -> anyhow::Result<()> {
        let candidate = parse_version(version)?;
        let raise = match self.enforced()? {
            Some(highest) => match candidate.cmp_precedence(&highest) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Less => self.allow_downgrade,
                std::cmp::Ordering::Equal => {
                    // The file may be missing or lower while memory holds the floor.
                    self.highest()?
                        .is_none_or(|file| file.cmp_precedence(&candidate).is_lt())
                }
            },
            None => true,
        };
        if raise {
            self.write(&candidate)?;
        }
        let mut held = self.held();
        if raise || held.version.is_none() {
            held.version = Some(candidate);
        }
        if sha256.is_some() {
            held.sha256 = sha256.map(str::to_string);
        }
        Ok(())
    }

    /// Put the floor back to `version` after a rollback: the version that failed probation no
    /// longer holds the floor, so the previous file can be installed again. `sha256` is the
    /// restored component's, when signed. Errors: `version` is not a version, or the file
    /// cannot be written.
    pub fn restore(&self, version: &str) -> anyhow::Result<()> {
        self.restore_artifact(version, None)
    }

    /// [`VersionFloor::restore`] naming the restored signed component's SHA-256.
    pub fn restore_artifact(&self, version: &str, sha256: Option<&str>) -> anyhow::Result<()> {
        let version = parse_version(version)?;
        {
            let mut held = self.held();
            held.version = Some(version.clone());
            held.sha256 = sha256.map(str::to_string);
        }
        self.write(&version)
    }

    fn write(&self, version: &semver::Version) -> anyhow::Result<()> {
        crate::files::write_private_file(&self.file, format!("{version}\n").as_bytes(), 0o600)
            .with_context(|| format!("writing {}", self.file.display()))
    }
}

#[cfg(test)]
mod tests;
