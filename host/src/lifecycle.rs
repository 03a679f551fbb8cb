//! The component's life on a gateway: load, check, swap, roll back.
//!
//! A new component becomes current only after every check passed: its optional detached
//! signature (ed25519 over the SHA-256 digest of the bytes, RFC 8032), compilation (cached by
//! wasmtime, keyed by the bytes, the engine configuration and the wasmtime version, so a
//! component seen before loads from its precompiled artifact), linking against this host
//! (`instantiate_pre`), and a self-check call (`version`, whose contract version must be the
//! one this host speaks). The swap replaces one `Arc`: calls in flight keep the version they
//! started with; new calls get the new one. The first calls of a new version are on
//! probation: if one traps, the previous version is put back and the failure is logged.

use crate::http::OutboundPolicy;
use crate::runtime::{
    KryptonPre, ProvisionError, ProvisionReport, ProvisionRequest, Runtime, Target,
};
use crate::store::SecretStore;
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The contract version this host implements (`wit/krypton.wit`).
pub const CONTRACT: &str = "soracom:krypton@0.1.0";
/// Calls of a new version during which a trap rolls back to the previous one.
pub const PROBATION_CALLS: u32 = 3;

/// A checked, linked component version.
pub struct Loaded {
    pub pre: KryptonPre,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    /// The component's own version string.
    pub version: String,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The bytes are those of the current version.
    Unchanged,
    /// The new version (its digest) is current.
    Swapped(String),
}

/// The current component and the one before it.
pub struct Lifecycle {
    runtime: Arc<Runtime>,
    path: Option<PathBuf>,
    trusted_key: Option<ed25519_dalek::VerifyingKey>,
    current: RwLock<Arc<Loaded>>,
    previous: Mutex<Option<Arc<Loaded>>>,
    probation: AtomicU32,
    reload_lock: tokio::sync::Mutex<()>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse a trusted ed25519 public key: 32 bytes as standard base64 or hex.
pub fn parse_public_key(text: &str) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    use base64::Engine as _;
    let text = text.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .filter(|b| b.len() == 32)
        .or_else(|| {
            (text.len() == 64)
                .then(|| {
                    (0..32)
                        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                        .collect::<Option<Vec<u8>>>()
                })
                .flatten()
        })
        .context("the public key must be 32 bytes as base64 or hex")?;
    let array: [u8; 32] = bytes.try_into().expect("length checked");
    ed25519_dalek::VerifyingKey::from_bytes(&array).context("not a valid ed25519 public key")
}

/// The detached signature file of a component: `<component>.sig`, the 64-byte ed25519
/// signature of the component's SHA-256 digest, as standard base64.
pub fn signature_path(component: &Path) -> PathBuf {
    let mut name = component.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

impl Lifecycle {
    /// Load the first version: from `path`, or the built-in component when `None`.
    /// Errors: the first version fails a check (there is nothing to fall back to).
    pub async fn start(
        runtime: Arc<Runtime>,
        path: Option<PathBuf>,
        trusted_key: Option<ed25519_dalek::VerifyingKey>,
    ) -> anyhow::Result<Self> {
        let bytes = match &path {
            Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            None => crate::runtime::DEFAULT_COMPONENT.to_vec(),
        };
        let signature = path.as_deref().map(signature_path);
        let first =
            Self::check(&runtime, trusted_key.as_ref(), &bytes, signature.as_deref()).await?;
        tracing::info!(digest = %first.digest, version = %first.version, "component serving");
        Ok(Lifecycle {
            runtime,
            path,
            trusted_key,
            current: RwLock::new(Arc::new(first)),
            previous: Mutex::new(None),
            probation: AtomicU32::new(0),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Every check a version must pass before it serves.
    async fn check(
        runtime: &Runtime,
        trusted_key: Option<&ed25519_dalek::VerifyingKey>,
        bytes: &[u8],
        signature: Option<&Path>,
    ) -> anyhow::Result<Loaded> {
        let digest = Sha256::digest(bytes);
        if let Some(key) = trusted_key {
            use base64::Engine as _;
            let path = signature.context("a trusted key is configured: the component must come from a file with a .sig beside it")?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("no signature at {}", path.display()))?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .context("the signature is not base64")?;
            let signature = ed25519_dalek::Signature::from_slice(&raw)
                .context("the signature is not 64 bytes")?;
            key.verify_strict(&digest, &signature)
                .context("the signature does not verify with the trusted key")?;
        }
        let pre = runtime.load(bytes)?;
        let (version, contract) = runtime
            .version(&pre)
            .await
            .context("the self-check call failed")?;
        anyhow::ensure!(
            contract == CONTRACT,
            "the component speaks `{contract}`, this host `{CONTRACT}`"
        );
        Ok(Loaded {
            pre,
            digest: hex(&digest),
            version,
        })
    }

    /// The version new calls get.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.read().expect("lock").clone()
    }

    /// Load the component file again and swap it in if it changed and passes every check.
    /// Errors: it failed a check; the current version keeps serving.
    pub async fn reload(&self) -> anyhow::Result<ReloadOutcome> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let path = self
            .path
            .as_deref()
            .context("the built-in component cannot be reloaded; configure `component`")?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if hex(&Sha256::digest(&bytes)) == self.current().digest {
            return Ok(ReloadOutcome::Unchanged);
        }
        let started = std::time::Instant::now();
        let loaded = match Self::check(
            &self.runtime,
            self.trusted_key.as_ref(),
            &bytes,
            Some(&signature_path(path)),
        )
        .await
        {
            Ok(loaded) => Arc::new(loaded),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "new component refused; the current one keeps serving");
                return Err(e);
            }
        };
        let digest = loaded.digest.clone();
        let old = std::mem::replace(&mut *self.current.write().expect("lock"), loaded);
        *self.previous.lock().expect("lock") = Some(old);
        self.probation.store(PROBATION_CALLS, Ordering::SeqCst);
        tracing::info!(%digest, ms = started.elapsed().as_millis() as u64, "component swapped in");
        Ok(ReloadOutcome::Swapped(digest))
    }

    /// Put the previous version back if `failed` is still current.
    fn roll_back(&self, failed: &Arc<Loaded>, why: &str) {
        let mut current = self.current.write().expect("lock");
        if !Arc::ptr_eq(&current, failed) {
            return;
        }
        if let Some(previous) = self.previous.lock().expect("lock").take() {
            tracing::error!(failed = %failed.digest, restored = %previous.digest, reason = why, "new component failed its first calls; rolled back");
            *current = previous;
            self.probation.store(0, Ordering::SeqCst);
        }
    }

    /// After a call of `used`: a trap during probation rolls back.
    fn judge<T>(&self, used: &Arc<Loaded>, outcome: &anyhow::Result<T>) {
        let on_probation =
            Arc::ptr_eq(&self.current(), used) && self.probation.load(Ordering::SeqCst) > 0;
        if !on_probation {
            return;
        }
        match outcome {
            Err(e) => self.roll_back(used, &format!("{e:#}")),
            Ok(_) => {
                let _ = self
                    .probation
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            }
        }
    }

    /// `provision` with the current version (see [`Runtime::provision`]).
    pub async fn provision(
        &self,
        policy: OutboundPolicy,
        secrets: SecretStore,
        request: &ProvisionRequest,
    ) -> anyhow::Result<Result<ProvisionReport, ProvisionError>> {
        let used = self.current();
        let outcome = self
            .runtime
            .provision(&used.pre, policy, secrets, request)
            .await;
        self.judge(&used, &outcome);
        outcome
    }

    /// `status` with the current version (see [`Runtime::status`]).
    pub async fn status(
        &self,
        secrets: SecretStore,
        target: Target,
    ) -> anyhow::Result<Result<Option<ProvisionReport>, ProvisionError>> {
        let used = self.current();
        let outcome = self.runtime.status(&used.pre, secrets, target).await;
        self.judge(&used, &outcome);
        outcome
    }
}
