//! The component's life on a gateway: load, check, swap, roll back.
//!
//! A new component becomes current only after every check passed, in this order (cheapest and
//! safest first, so untrusted bytes are never compiled when a signature is required):
//!
//! | check | refused when | what the operator sees |
//! | --- | --- | --- |
//! | read | not a regular file, larger than [`MAX_COMPONENT_BYTES`] | `reading …` |
//! | signature (with a trusted key) | no `.sig`, other bytes, bad signature, old form | see [`crate::signing`] |
//! | a precompiled component (`.cwasm`) | no trusted key, or any check of [`crate::precompiled`] (signature, target, wasmtime version) | what to run on a build machine |
//! | version floor (with a state directory), signed version | lower than the highest accepted | `refusing a downgrade` |
//! | compile and link | not a component, imports this host does not offer | `compiling …`, `linking …` |
//! | self-check (`version`, then `targets`, then `default-endpoints` and `export-formats`) | traps, another contract, a version other than the signed one, answers the host cannot serve ([`Targets::checked`], [`Facts::checked`]) | `the self-check …`, `the component's targets() …`, `the component's default-endpoints() …` |
//! | version floor, reported version (no trusted key) | lower than the highest accepted | `refusing a downgrade` |
//!
//! Every row fails closed: the version that was serving keeps serving. The swap replaces one
//! `Arc`: calls in flight keep the version they started with; new calls get the new one. The
//! first calls of a new version are on probation: if one traps, the previous version is put
//! back and the failure is logged. The built-in component (embedded in the binary) is trusted
//! as part of the binary: it needs no signature and is not held to the version floor. The
//! gateway build has no built-in component and runs precompiled components only.

use crate::facts::Facts;
use crate::http::OutboundPolicy;
use crate::precompiled::{Artifact, ComponentFile};
use crate::runtime::{Failure, KryptonPre, ProvisionReport, ProvisionRequest, Runtime, Target};
use crate::signing::{self, VersionFloor};
use crate::store::SecretStore;
use crate::targets::Targets;
use crate::uicc::UiccAccess;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The contract version this host implements (`wit/krypton.wit`). A 0.x contract breaks on a
/// minor bump (0.2.0 errors had no `failure` record and no `targets()`; 0.4.0 components have
/// no `default-endpoints()`), so a component must speak exactly this version to be served.
pub const CONTRACT: &str = "soracom:krypton@0.5.0";
/// Successful `provision` calls a new version must make before it leaves probation; until then
/// a trap in any call (`status` included) rolls back to the previous version. `status` calls
/// do not count toward it: they are cheap and would end probation before the first real
/// provisioning ran.
pub const PROBATION_CALLS: u32 = 3;

/// Largest component file read, bytes (the provisioning component is under 1 MiB).
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;

/// The self-check every component passes before it serves: its `version` call, in the
/// sandbox. Returns the component's own version (e.g. `0.3.0`). Errors: the call traps or hits
/// a sandbox limit, or the component speaks another contract than [`CONTRACT`].
pub async fn self_check(runtime: &Runtime, pre: &KryptonPre) -> anyhow::Result<String> {
    let (version, contract) = runtime
        .version(pre)
        .await
        .context("the self-check call failed")?;
    anyhow::ensure!(
        contract == CONTRACT,
        "the component speaks `{}`, this host `{CONTRACT}`",
        contract.escape_debug()
    );
    Ok(version)
}

/// The component's targets (its `targets()` call), checked by [`Targets::checked`]. Errors:
/// the call traps or hits a sandbox limit, or the list is refused
/// ([`crate::targets::InvalidTargets`]: a name that is not its case's plain spelling, a
/// duplicate, an oversized or unprintable text); a component that fails either does not serve.
pub async fn list_targets(runtime: &Runtime, pre: &KryptonPre) -> anyhow::Result<Targets> {
    let list = runtime
        .targets(pre)
        .await
        .context("the component's targets() call failed")?;
    Ok(Targets::checked(list)?)
}

/// The component's default endpoints and export formats (its `default-endpoints()` and
/// `export-formats()` calls, one instance), checked by [`Facts::checked`] against its
/// `targets`. Errors: a call traps or hits a sandbox limit, or the answers are refused
/// ([`crate::facts::InvalidFacts`]: an endpoint that is not an `https` origin, a mode without
/// one, a bad coverage or format name, an oversized or unprintable text, a format a target
/// lists but nothing describes); a component that fails either does not serve.
pub async fn component_facts(
    runtime: &Runtime,
    pre: &KryptonPre,
    targets: &Targets,
) -> anyhow::Result<Facts> {
    let (endpoints, formats) = runtime
        .facts(pre)
        .await
        .context("the component's default-endpoints() or export-formats() call failed")?;
    Ok(Facts::checked(endpoints, formats, targets)?)
}

/// A checked, linked component version.
pub struct Loaded {
    /// The compiled, linked component.
    pub pre: KryptonPre,
    /// SHA-256 of the component file's bytes (of a precompiled component: of the artifact), hex.
    pub digest: String,
    /// The component's own version string (equal to the signed one when signed).
    pub version: String,
    /// The targets it implements (its `targets()` call, made once when it was checked).
    pub targets: Targets,
    /// Its default endpoints and export formats (made once when it was checked).
    pub facts: Facts,
    /// Whether a trusted key's signature covered this version.
    pub signed: bool,
}

/// What a component file must satisfy besides compiling and passing its self-check.
#[derive(Debug, Clone, Default)]
pub struct ComponentPolicy {
    /// When set, a component file needs a `.sig` beside it (see [`crate::signing`]).
    pub trusted_key: Option<ed25519_dalek::VerifyingKey>,
    /// When set, a version lower than the highest accepted one is refused.
    pub floor: Option<VersionFloor>,
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
    policy: ComponentPolicy,
    current: RwLock<Arc<Loaded>>,
    previous: Mutex<Option<Arc<Loaded>>>,
    probation: AtomicU32,
    reload_lock: tokio::sync::Mutex<()>,
}

pub use crate::signing::{parse_public_key, signature_path};

/// Read a component file: a regular file of at most [`MAX_COMPONENT_BYTES`], a `.wasm` or a
/// precompiled component ([`ComponentFile`]).
fn read_component(path: &Path) -> anyhow::Result<ComponentFile> {
    ComponentFile::read(path, "the component")
}

impl Lifecycle {
    /// Load the first version: from `path`, or the built-in component when `None`.
    /// Errors: the first version fails a check (there is nothing to fall back to).
    pub async fn start(
        runtime: Arc<Runtime>,
        path: Option<PathBuf>,
        trusted_key: Option<ed25519_dalek::VerifyingKey>,
    ) -> anyhow::Result<Self> {
        let policy = ComponentPolicy {
            trusted_key,
            floor: None,
        };
        Self::start_with(runtime, path, policy).await
    }

    /// [`Lifecycle::start`] with a full [`ComponentPolicy`] (the daemon's: trusted key and
    /// version floor). The first version from a file is recorded in the floor.
    pub async fn start_with(
        runtime: Arc<Runtime>,
        path: Option<PathBuf>,
        policy: ComponentPolicy,
    ) -> anyhow::Result<Self> {
        let first = match &path {
            Some(p) => {
                let file = read_component(p)?;
                let loaded = Self::check_file(&runtime, &policy, file, p).await?;
                if let Some(floor) = &policy.floor {
                    floor.accept(&loaded.version)?;
                }
                loaded
            }
            None => Self::check_builtin(&runtime).await?,
        };
        tracing::info!(digest = %first.digest, version = %first.version, signed = first.signed, "component serving");
        Ok(Lifecycle {
            runtime,
            path,
            policy,
            current: RwLock::new(Arc::new(first)),
            previous: Mutex::new(None),
            probation: AtomicU32::new(0),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The built-in component: none in the gateway build.
    #[cfg(not(feature = "jit"))]
    async fn check_builtin(_runtime: &Runtime) -> anyhow::Result<Loaded> {
        anyhow::bail!(
            "this gateway build of krypton-host has no built-in component: set `component` to a \
             precompiled component (.cwasm, made by `krypton-host compile` on a build machine) \
             and `trusted_public_key` to the key that signed it"
        )
    }

    /// The built-in component: compiled, linked and self-checked (no signature, no floor).
    #[cfg(feature = "jit")]
    async fn check_builtin(runtime: &Runtime) -> anyhow::Result<Loaded> {
        let bytes = crate::runtime::DEFAULT_COMPONENT;
        let pre = runtime.load(bytes)?;
        let version = self_check(runtime, &pre).await?;
        let targets = list_targets(runtime, &pre).await?;
        let facts = component_facts(runtime, &pre, &targets).await?;
        Ok(Loaded {
            pre,
            digest: signing::digest_hex(bytes),
            version,
            targets,
            facts,
            signed: false,
        })
    }

    /// [`Lifecycle::check`] or [`Lifecycle::check_precompiled`], by the kind of `file` (read from
    /// `path`).
    async fn check_file(
        runtime: &Runtime,
        policy: &ComponentPolicy,
        file: ComponentFile,
        path: &Path,
    ) -> anyhow::Result<Loaded> {
        match file {
            ComponentFile::Wasm(bytes) => {
                Self::check(runtime, policy, &bytes, &signature_path(path)).await
            }
            ComponentFile::Precompiled(artifact) => {
                Self::check_precompiled(runtime, policy, artifact).await
            }
        }
    }

    /// Every check a precompiled component passes before it serves: its signature with the
    /// trusted key (required), its target and wasmtime version ([`Artifact::verify`]), the
    /// version floor, then deserialize and link, the self-check (the signed version), the
    /// targets.
    async fn check_precompiled(
        runtime: &Runtime,
        policy: &ComponentPolicy,
        artifact: Artifact,
    ) -> anyhow::Result<Loaded> {
        let verified = artifact.verify(policy.trusted_key.as_ref())?;
        let signed = verified.facts.version.clone();
        if let Some(floor) = &policy.floor {
            floor.check(&signed)?;
        }
        let pre = verified.load(runtime)?;
        let version = self_check(runtime, &pre).await?;
        anyhow::ensure!(
            version == signed,
            "the self-check reports version `{}`, but the signature is for version `{signed}`",
            version.escape_debug()
        );
        let targets = list_targets(runtime, &pre).await?;
        let facts = component_facts(runtime, &pre, &targets).await?;
        Ok(Loaded {
            pre,
            digest: verified.digest().to_string(),
            version,
            targets,
            facts,
            signed: true,
        })
    }

    /// Every check a component file must pass before it serves (the table in the module docs).
    async fn check(
        runtime: &Runtime,
        policy: &ComponentPolicy,
        bytes: &[u8],
        signature: &Path,
    ) -> anyhow::Result<Loaded> {
        let signed_version = match &policy.trusted_key {
            Some(key) => {
                let text = crate::files::read_user_file(
                    signature,
                    signing::MAX_SIGNATURE_FILE_BYTES,
                    "the signature file",
                )
                .context("a trusted key is configured: the component needs its .sig beside it")?;
                let version = signing::verify(key, bytes, &text)
                    .with_context(|| format!("checking {}", signature.display()))?;
                if let Some(floor) = &policy.floor {
                    floor.check(&version)?;
                }
                Some(version)
            }
            None => None,
        };
        let pre = runtime.load(bytes)?;
        let version = self_check(runtime, &pre).await?;
        match &signed_version {
            Some(signed) => anyhow::ensure!(
                &version == signed,
                "the self-check reports version `{}`, but the signature is for version `{signed}`",
                version.escape_debug()
            ),
            None => {
                if let Some(floor) = &policy.floor {
                    floor.check(&version)?;
                }
            }
        }
        let targets = list_targets(runtime, &pre).await?;
        let facts = component_facts(runtime, &pre, &targets).await?;
        Ok(Loaded {
            pre,
            digest: signing::digest_hex(bytes),
            version,
            targets,
            facts,
            signed: signed_version.is_some(),
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
        let file = read_component(path)?;
        if file.digest() == self.current().digest {
            return Ok(ReloadOutcome::Unchanged);
        }
        let started = std::time::Instant::now();
        let checked = match Self::check_file(&self.runtime, &self.policy, file, path).await {
            Ok(loaded) => match &self.policy.floor {
                Some(floor) => floor.accept(&loaded.version).map(|()| loaded),
                None => Ok(loaded),
            },
            Err(e) => Err(e),
        };
        let loaded = match checked {
            Ok(loaded) => Arc::new(loaded),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "new component refused; the current one keeps serving");
                return Err(e);
            }
        };
        let digest = loaded.digest.clone();
        let version = loaded.version.clone();
        let old = std::mem::replace(&mut *self.current.write().expect("lock"), loaded);
        *self.previous.lock().expect("lock") = Some(old);
        self.probation.store(PROBATION_CALLS, Ordering::SeqCst);
        tracing::info!(%digest, %version, ms = started.elapsed().as_millis() as u64, "component swapped in");
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
            // The failed version no longer holds the version floor: the operator may install
            // the previous file again (and a restart with it is not taken for a downgrade).
            if let Some(floor) = &self.policy.floor
                && let Err(e) = floor.restore(&previous.version)
            {
                tracing::warn!(error = %format!("{e:#}"), "could not put the version floor back");
            }
            *current = previous;
            self.probation.store(0, Ordering::SeqCst);
        }
    }

    /// After a call of `used`: a trap during probation rolls back; a success counts toward the
    /// end of probation when `counts` (a `provision` call).
    fn judge<T>(&self, used: &Arc<Loaded>, outcome: &anyhow::Result<T>, counts: bool) {
        let on_probation =
            Arc::ptr_eq(&self.current(), used) && self.probation.load(Ordering::SeqCst) > 0;
        if !on_probation {
            return;
        }
        match outcome {
            Err(e) => self.roll_back(used, &format!("{e:#}")),
            Ok(_) if !counts => {}
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
    ) -> anyhow::Result<Result<ProvisionReport, Failure>> {
        self.provision_with_uicc(policy, secrets, UiccAccess::none(), request)
            .await
    }

    /// [`Lifecycle::provision`] with SIM access (see [`Runtime::provision_with_uicc`]).
    pub async fn provision_with_uicc(
        &self,
        policy: OutboundPolicy,
        secrets: SecretStore,
        uicc: UiccAccess,
        request: &ProvisionRequest,
    ) -> anyhow::Result<Result<ProvisionReport, Failure>> {
        let used = self.current();
        let outcome = self
            .runtime
            .provision_with_uicc(&used.pre, policy, secrets, uicc, request)
            .await;
        self.judge(&used, &outcome, true);
        outcome
    }

    /// `status` with the current version (see [`Runtime::status`]).
    pub async fn status(
        &self,
        secrets: SecretStore,
        target: Target,
    ) -> anyhow::Result<Result<Option<ProvisionReport>, Failure>> {
        let used = self.current();
        let outcome = self.runtime.status(&used.pre, secrets, target).await;
        self.judge(&used, &outcome, false);
        outcome
    }
}
