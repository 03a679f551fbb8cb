//! One pass over the configured targets: which to provision (nothing stored, a certificate
//! within its renewal margin), each failure's backoff with jitter, and a target's health logged
//! once per change.

use super::PASS_LOCK_WAIT;
use crate::output;
use krypton_host::bindings::{AuthMode, ProvisionRequest, Target};
use krypton_host::options::ProvisionOptions;
use std::time::{Duration, Instant, SystemTime};

use super::Daemon;

/// The wait after `failures` consecutive failures (1 for the first): `base` doubled per
/// further failure, capped at `max`, then drawn uniformly from its upper half using `random`
/// ("equal jitter", so waits grow yet spread out). Saturating: no input overflows.
pub fn failure_backoff(base: Duration, max: Duration, failures: u32, random: u64) -> Duration {
    let doublings = failures.saturating_sub(1);
    let full = if doublings >= 32 {
        max
    } else {
        base.checked_mul(1u32 << doublings).unwrap_or(max).min(max)
    };
    let half = full / 2;
    let spread = (full - half).as_millis() as u64;
    half + Duration::from_millis(if spread == 0 {
        0
    } else {
        random % (spread + 1)
    })
}

/// A random number for jitter: the standard library's per-process random hashing keys
/// (`RandomState` is seeded from the OS and advanced per instance), so no extra dependency.
pub(super) fn jitter_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// One target's health between passes.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// Consecutive failures.
    failures: u32,
    /// No attempt before this instant.
    retry_at: Option<Instant>,
    /// The last failure's text, to log a change of failure once.
    last_error: Option<String>,
}

impl Daemon {
    pub(super) fn request(
        &self,
        target: Target,
        params: Option<String>,
        force: bool,
    ) -> ProvisionRequest {
        ProvisionOptions {
            mode: self.config.auth_mode().unwrap_or(AuthMode::Network),
            request_parameters: params,
            force,
            deadline: Duration::from_secs(self.config.limits.deadline_secs),
            ..ProvisionOptions::default()
        }
        .request(target, &self.endpoint)
    }

    /// Whether `name` is waiting out a backoff at `now`.
    pub(super) fn backing_off(&self, name: &str, now: Instant) -> bool {
        self.health
            .lock()
            .expect("health lock")
            .get(name)
            .and_then(|h| h.retry_at)
            .is_some_and(|at| now < at)
    }

    /// Whether `name`'s last attempt failed.
    pub(super) fn failing(&self, name: &str) -> bool {
        self.health
            .lock()
            .expect("health lock")
            .get(name)
            .is_some_and(|h| h.failures > 0)
    }

    /// Record a target's outcome; logs only when its state changes.
    pub(super) fn record(&self, name: &str, outcome: Result<(), String>) {
        let mut all = self.health.lock().expect("health lock");
        let health = all.entry(name.to_string()).or_default();
        match outcome {
            Ok(()) => {
                if health.failures > 0 {
                    tracing::info!(target = %name, failures = health.failures, "target recovered");
                }
                *health = Health::default();
            }
            Err(error) => {
                health.failures = health.failures.saturating_add(1);
                let wait = failure_backoff(
                    Duration::from_secs(self.config.backoff.base_secs),
                    Duration::from_secs(self.config.backoff.max_secs),
                    health.failures,
                    jitter_seed(),
                );
                health.retry_at = Instant::now().checked_add(wait);
                if health.last_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!(target = %name, %error, retry_in_secs = wait.as_secs(),
                        "provisioning failed; retrying with growing waits (logged again only when this changes)");
                } else {
                    tracing::debug!(target = %name, failures = health.failures, retry_in_secs = wait.as_secs(), "still failing");
                }
                health.last_error = Some(error);
            }
        }
    }

    /// One renewal pass over every configured target; returns how many were provisioned.
    /// Passes never overlap, and each holds the store's writer lock; when a CLI run holds it
    /// for longer than [`PASS_LOCK_WAIT`], the pass is skipped (with a log line).
    pub async fn check_all(&self) -> usize {
        let _pass = self.pass.lock().await;
        let store = self.store.clone();
        let lock = match tokio::task::spawn_blocking(move || store.lock(PASS_LOCK_WAIT)).await {
            Ok(Ok(lock)) => lock,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the store is busy (a `krypton-host provision`?); skipping this pass");
                return 0;
            }
            Err(e) => {
                tracing::error!(error = %e, "taking the store lock");
                return 0;
            }
        };
        let mut provisioned = 0;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        // Range-checked: at most 3650 days.
        let margin = i64::try_from(self.config.renewal.certificate_margin_days)
            .unwrap_or(i64::MAX)
            .saturating_mul(86_400);
        for t in &self.config.targets {
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                tracing::info!(target = %t.name, "stopping: the rest of this pass is left for the next start");
                break;
            }
            // The serving component's list: a component swapped in since the start may lack a
            // target the configuration names.
            let (target, mints_credentials) = match self.lifecycle.current().targets.find(&t.name) {
                Ok(info) => (info.target, info.mints_credentials),
                Err(e) => {
                    self.record(&t.name, Err(format!("the serving component: {e}")));
                    continue;
                }
            };
            if self.backing_off(&t.name, Instant::now()) {
                tracing::debug!(target = %t.name, "backing off after a failure");
                continue;
            }
            let params = t
                .params
                .as_ref()
                .map(|p| serde_json::to_string(p).unwrap_or_else(|_| "{}".into()));
            let force = match self.lifecycle.status(self.store.clone(), target).await {
                Ok(Ok(Some(report))) => {
                    let due = report
                        .certificate
                        .as_ref()
                        .is_some_and(|c| c.not_after.saturating_sub(now) < margin);
                    let allowed = !mints_credentials || self.config.renewal.reprovision_minting;
                    if due && !allowed {
                        tracing::warn!(target = %t.name, "certificate is within the renewal margin; set renewal.reprovision_minting = true to re-provision (each call mints new credentials)");
                    }
                    if due && allowed {
                        tracing::info!(target = %t.name, "certificate is within the renewal margin; renewing it");
                    }
                    due && allowed
                }
                Ok(Ok(None)) => {
                    // A retry after a failure was already logged with that failure.
                    if self.failing(&t.name) {
                        tracing::debug!(target = %t.name, "nothing stored; provisioning again");
                    } else {
                        tracing::info!(target = %t.name, "nothing stored; provisioning");
                    }
                    false
                }
                Ok(Err(e)) => {
                    tracing::debug!(target = %t.name, error = %output::error_text(&e), "status failed");
                    false
                }
                Err(e) => {
                    self.record(&t.name, Err(format!("status call failed: {e:#}")));
                    continue;
                }
            };
            let request = self.request(target, params, force);
            let outcome = match self
                .lifecycle
                .provision_with_uicc(
                    self.policy.clone(),
                    self.store.clone(),
                    self.uicc.clone(),
                    &request,
                )
                .await
            {
                Ok(Ok(report)) if !report.reused => {
                    provisioned += 1;
                    let not_after = report
                        .certificate
                        .as_ref()
                        .map(|c| output::rfc3339(c.not_after));
                    tracing::info!(target = %t.name, bundle = %report.bundle, certificate_not_after = not_after.as_deref().unwrap_or("-"), "provisioned");
                    Ok(())
                }
                Ok(Ok(_)) => {
                    // An unchanged check is not news: debug only (`-v`).
                    tracing::debug!(target = %t.name, "still valid; reused");
                    Ok(())
                }
                Ok(Err(e)) => Err(output::error_text(&e)),
                Err(e) => Err(format!("component failed: {e:#}")),
            };
            self.record(&t.name, outcome);
        }
        drop(lock);
        provisioned
    }
}
