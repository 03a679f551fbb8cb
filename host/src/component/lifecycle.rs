//! The component's life on a gateway: load, check, swap, roll back.
//!
//! A new component becomes current only after every check of the component loader passed
//! (the table in [`crate::component`]'s `loader`, the same loader the command line uses), and,
//! with a version floor, after the floor accepted its version. Every check fails closed: the
//! version that was serving keeps serving. The swap replaces one `Arc`: calls in flight keep
//! the version they started with; new calls get the new one. The first calls of a new version
//! are on probation: if one traps, the previous version is put back and the failure is logged.

use super::loader::{self, ComponentPolicy, Loaded};
use crate::bindings::{Failure, ProvisionReport, ProvisionRequest, Target};
use crate::capability::http::OutboundPolicy;
use crate::capability::store::SecretStore;
use crate::capability::uicc::{SimTimeout, UiccAccess};
use crate::engine::Runtime;
use crate::engine::WallClockLimit;
use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Successful `provision` calls a new version must make before it leaves probation; until then
/// a trap in any call (`status` included) rolls back to the previous version. `status` calls
/// do not count toward it: they are cheap and would end probation before the first real
/// provisioning ran.
pub const PROBATION_CALLS: u32 = 3;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The bytes are those of the current version.
    Unchanged,
    /// The new version (its digest) is current.
    Swapped(String),
}

/// A probation roll back, as told to the hook of [`Lifecycle::on_roll_back`].
#[derive(Debug, Clone)]
pub struct RolledBack {
    /// The digest (SHA-256, hex) of the version that failed.
    pub failed_digest: String,
    /// Its version.
    pub failed_version: String,
    /// The digest of the version put back.
    pub restored_digest: String,
    /// Its version.
    pub restored_version: String,
    /// The error of the call that failed.
    pub reason: String,
}

/// Whose failure a failed [`Lifecycle::reload`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadFault {
    /// The component proves it: unsigned or badly signed, built for another host, a version
    /// the floor refuses (lower, or other bytes signed as the accepted version), or it fails
    /// its own checks (a trap, a sandbox limit of its own, another contract, a signed version
    /// other than the one it reports, targets or facts refused). The same bytes fail again.
    Component,
    /// This host could not finish the checks: the component file, its signature or the floor
    /// file could not be read or written (a full or read-only disk), a resource ran short
    /// (memory for the compiled code), the wall-clock limit (which a loaded machine or a slow
    /// SIM spends too), no component file configured. The same bytes may pass later.
    Host,
}

/// A failed [`Lifecycle::reload`]: its [`ReloadFault`] and the error chain (shown whole by
/// `Display`).
#[derive(Debug)]
pub struct ReloadError {
    /// Whose failure it is.
    pub fault: ReloadFault,
    /// The failure, with its context.
    pub error: anyhow::Error,
}

impl ReloadError {
    /// `error`, as a failure of `fault`.
    pub fn new(fault: ReloadFault, error: anyhow::Error) -> Self {
        ReloadError { fault, error }
    }
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for ReloadError {}

/// Whose failure a failed load is: a refusal (signature, target, floor; the floor file was read
/// before) is the component's; a failed compile, link or self-check is too, unless the error
/// chain holds a host cause, typed: the wall-clock limit ([`WallClockLimit`]), a SIM that did
/// not answer ([`SimTimeout`]), an I/O error (a scratch directory), a memory allocation
/// wasmtime could not make ([`wasmtime::OutOfMemory`], an `mmap` failing with an errno).
fn fault_of(e: &loader::LoadError) -> ReloadFault {
    if e.kind != loader::LoadErrorKind::Failed {
        return ReloadFault::Component;
    }
    let host = e.error.chain().any(|c| {
        c.is::<WallClockLimit>()
            || c.is::<SimTimeout>()
            || c.is::<std::io::Error>()
            || c.is::<wasmtime::OutOfMemory>()
            || c.is::<rustix::io::Errno>()
    });
    if host {
        ReloadFault::Host
    } else {
        ReloadFault::Component
    }
}

/// The hook [`Lifecycle::on_roll_back`] installs.
type RollBackHook = Box<dyn Fn(&RolledBack) + Send + Sync>;

/// The current component and the one before it.
pub struct Lifecycle {
    runtime: Arc<Runtime>,
    path: Option<PathBuf>,
    policy: ComponentPolicy,
    current: RwLock<Arc<Loaded>>,
    previous: Mutex<Option<Arc<Loaded>>>,
    probation: AtomicU32,
    reload_lock: tokio::sync::Mutex<()>,
    on_roll_back: Mutex<Option<RollBackHook>>,
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
                let loaded = loader::load(&runtime, Some(p), &policy).await?;
                if let Some(floor) = &policy.floor {
                    floor.accept_artifact(&loaded.version, signed_digest(&loaded))?;
                }
                loaded
            }
            None => loader::load(&runtime, None, &policy).await?,
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
            on_roll_back: Mutex::new(None),
        })
    }

    /// The version new calls get.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.read().expect("lock").clone()
    }

    /// Load the component file again and swap it in if it changed and passes every check.
    /// Errors: it failed a check; the current version keeps serving. The error is a
    /// [`ReloadError`] (`downcast_ref::<ReloadError>()`): its [`ReloadFault`] says whether the
    /// component itself failed or this host could not finish the checks.
    pub async fn reload(&self) -> anyhow::Result<ReloadOutcome> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let host = |e: anyhow::Error| ReloadError::new(ReloadFault::Host, e);
        let path = self
            .path
            .as_deref()
            .context("the built-in component cannot be reloaded; configure `component`")
            .map_err(host)?;
        let file = loader::read(path).map_err(|e| host(e.error))?;
        if file.digest() == self.current().digest {
            return Ok(ReloadOutcome::Unchanged);
        }
        // The floor file read first: a floor that cannot be read says nothing of the component.
        if let Some(floor) = &self.policy.floor {
            floor.enforced().map_err(host)?;
        }
        let started = std::time::Instant::now();
        let checked = match loader::check_file(&self.runtime, path, file, &self.policy).await {
            Ok(loaded) => match &self.policy.floor {
                Some(floor) => floor
                    .check_artifact(&loaded.version, signed_digest(&loaded))
                    .map_err(|e| ReloadError::new(ReloadFault::Component, e))
                    .and_then(|()| {
                        floor
                            .accept_artifact(&loaded.version, signed_digest(&loaded))
                            .map_err(host)
                    })
                    .map(|()| loaded),
                None => Ok(loaded),
            },
            Err(e) => Err(ReloadError::new(fault_of(&e), e.error)),
        };
        let loaded = match checked {
            Ok(loaded) => Arc::new(loaded),
            Err(e) => {
                tracing::error!(error = %e, fault = ?e.fault, "new component refused; the current one keeps serving");
                return Err(e.into());
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

    /// Run `hook` at every probation roll back, before anything else happens: before the
    /// floor is put back and before the previous version serves again (so that the caller can
    /// record the roll back where a restart finds it). It runs while new calls wait; keep it
    /// short. Replaces an earlier hook.
    pub fn on_roll_back(&self, hook: impl Fn(&RolledBack) + Send + Sync + 'static) {
        *self.on_roll_back.lock().expect("lock") = Some(Box::new(hook));
    }

    /// Put the previous version back if `failed` is still current.
    fn roll_back(&self, failed: &Arc<Loaded>, why: &str) {
        let mut current = self.current.write().expect("lock");
        if !Arc::ptr_eq(&current, failed) {
            return;
        }
        if let Some(previous) = self.previous.lock().expect("lock").take() {
            if let Some(hook) = self.on_roll_back.lock().expect("lock").as_ref() {
                hook(&RolledBack {
                    failed_digest: failed.digest.clone(),
                    failed_version: failed.version.clone(),
                    restored_digest: previous.digest.clone(),
                    restored_version: previous.version.clone(),
                    reason: why.to_string(),
                });
            }
            // The failed version no longer holds the version floor: the operator may install
            // the previous file again (and a restart with it is not taken for a downgrade).
            if let Some(floor) = &self.policy.floor
                && let Err(e) = floor.restore_artifact(&previous.version, signed_digest(&previous))
            {
                tracing::warn!(error = %format!("{e:#}"), "could not put the version floor back");
            }
            tracing::error!(failed = %failed.digest, restored = %previous.digest, reason = why, "new component failed its first calls; rolled back");
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
            // The SIM (a modem, a reader) did not answer in time: the environment failed, not
            // the component; probation neither ends nor rolls back.
            Err(e)
                if e.chain()
                    .any(|c| c.is::<crate::capability::uicc::SimTimeout>()) =>
            {
                tracing::warn!(error = %format!("{e:#}"), "a SIM call outlived the call; not counted against the new component");
            }
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

/// The digest the version floor keeps for `loaded`: a signed component's (an unsigned one
/// proves nothing about who made it, so the same-version rule does not apply to it).
fn signed_digest(loaded: &Loaded) -> Option<&str> {
    loaded.signed.then_some(loaded.digest.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{LoadError, LoadErrorKind};

    fn load_error(kind: LoadErrorKind, error: anyhow::Error) -> LoadError {
        LoadError { kind, error }
    }

    #[test]
    fn a_failed_reload_is_the_components_unless_the_host_caused_it() {
        let wall = anyhow::Error::new(WallClockLimit(
            "the component exceeded the wall-clock limit of 60 s during version; it was stopped"
                .into(),
        ))
        .context("the self-check call failed");
        let sim = anyhow::Error::new(SimTimeout("the modem".into())).context("provision");
        let scratch = anyhow::Error::new(std::io::Error::from_raw_os_error(28))
            .context("the self-check call failed");
        for (e, fault) in [
            (load_error(LoadErrorKind::Failed, wall), ReloadFault::Host),
            (load_error(LoadErrorKind::Failed, sim), ReloadFault::Host),
            (
                load_error(LoadErrorKind::Failed, scratch),
                ReloadFault::Host,
            ),
            (
                load_error(
                    LoadErrorKind::Failed,
                    anyhow::anyhow!("wasm trap: unreachable")
                        .context("the component trapped during version"),
                ),
                ReloadFault::Component,
            ),
            (
                load_error(
                    LoadErrorKind::Refused,
                    anyhow::anyhow!("the signature does not verify"),
                ),
                ReloadFault::Component,
            ),
        ] {
            assert_eq!(fault_of(&e), fault, "{:#}", e.error);
        }
        // The error keeps its whole chain in its text and is found in an anyhow error.
        let e: anyhow::Error = ReloadError::new(
            ReloadFault::Host,
            anyhow::anyhow!("No space left on device").context("writing accepted-version"),
        )
        .into();
        assert_eq!(
            e.to_string(),
            "writing accepted-version: No space left on device"
        );
        assert_eq!(
            e.downcast_ref::<ReloadError>().map(|r| r.fault),
            Some(ReloadFault::Host)
        );
    }
}
