//! The daemon following a registry tag: `component = "oci://HOST[:PORT]/REPO:TAG"` (or
//! `…@sha256:DIGEST`, pulled once) with a `[registry]` table.
//!
//! Every `poll_interval_s` (±10 % jitter, so that a fleet spreads out), one `HEAD` of the tag.
//! A digest not seen before is pulled (manifest, layer, signature referrers; see
//! [`super::Registry::pull`]), its signature is verified with `trusted_public_key` (required
//! with a registry source) and its version against the floor, all before anything is written.
//! Then it is written into the state directory and swapped in through the daemon's ordinary
//! component-file path ([`Lifecycle::reload`]: the same checks, probation and roll back).
//!
//! In `<state_dir>/registry/` (0700):
//!
//! | file | what |
//! | --- | --- |
//! | `blobs/<sha256>.wasm`, `.wasm.sig` | the current and the previous component with their `.sig` (others are removed) |
//! | `component.wasm`, `.wasm.sig` | the file the lifecycle serves, copied from `blobs/` |
//! | `current.json` | the serving artifact (manifest digest, component SHA-256, version) and the one before it; written (temp file, fsync, rename) only after a swap |
//! | `refused.json` | manifest digests refused for good, with the reason (at most [`MAX_REFUSED`]) |
//!
//! So a restart without network serves the last artifact that was swapped in, checked again.
//!
//! What happens to a new digest:
//!
//! | outcome | remembered | logged |
//! | --- | --- | --- |
//! | the registry is down, answers an error, or sends something malformed, missing or too large | no: retried at the next poll | when the error starts or changes, and when it clears |
//! | unsigned, no signature verifying, a downgrade, a failed check, a roll back in probation | yes, in `refused.json` | once |
//! | swapped in | it is the current artifact | once |

use super::{Auth, Registry, RegistryError, Settings, Source};
use anyhow::Context as _;
use krypton_host::component::lifecycle::{Lifecycle, ReloadOutcome};
use krypton_host::files;
use krypton_host::signing::{self, VersionFloor};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most refused digests remembered (the oldest is forgotten first).
pub const MAX_REFUSED: usize = 32;
/// `registry.poll_interval_s`: 1 s to 1 day.
pub const POLL_INTERVAL_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;
/// Largest `current.json` or `refused.json` read, bytes.
const MAX_STATE_FILE_BYTES: u64 = 64 * 1024;

fn default_poll() -> u64 {
    300
}

/// `[registry]`: how the daemon reaches the registry of an `oci://` component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// Seconds between polls of the tag, [`POLL_INTERVAL_SECS`]; each wait is drawn within ±10 %.
    #[serde(default = "default_poll")]
    pub poll_interval_s: u64,
    /// Plain HTTP: only to a loopback registry (refused otherwise).
    #[serde(default)]
    pub insecure: bool,
    /// Extra CA certificates (PEM) for the registry, besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Basic authentication: the user name (with `password_file`).
    pub username: Option<String>,
    /// Basic authentication: a file holding the password (one line).
    pub password_file: Option<PathBuf>,
    /// Bearer authentication: a file holding the token (one line).
    pub token_file: Option<PathBuf>,
}

impl Default for RegistrySection {
    fn default() -> Self {
        RegistrySection {
            poll_interval_s: default_poll(),
            insecure: false,
            ca_file: None,
            username: None,
            password_file: None,
            token_file: None,
        }
    }
}

impl RegistrySection {
    /// Check the keys that need no file: the interval's range, absolute paths, the auth
    /// combination. Errors name the key.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            POLL_INTERVAL_SECS.contains(&self.poll_interval_s),
            "key `registry.poll_interval_s`: {} is out of range; use {} to {}",
            self.poll_interval_s,
            POLL_INTERVAL_SECS.start(),
            POLL_INTERVAL_SECS.end()
        );
        for (key, path) in [
            ("registry.ca_file", &self.ca_file),
            ("registry.password_file", &self.password_file),
            ("registry.token_file", &self.token_file),
        ] {
            if let Some(p) = path {
                // A relative path is a credential systemd loaded (LoadCredential=), found in
                // $CREDENTIALS_DIRECTORY when the daemon starts (see `credential_path`).
                anyhow::ensure!(
                    p.is_absolute() || p.components().count() == 1,
                    "key `{key}`: `{}` must be an absolute path, or the ID of a credential \
                     systemd loads (LoadCredential=), read from $CREDENTIALS_DIRECTORY",
                    p.display()
                );
            }
        }
        match (&self.username, &self.password_file, &self.token_file) {
            (Some(_), Some(_), None) | (None, None, _) => Ok(()),
            (_, _, Some(_)) => anyhow::bail!(
                "key `registry.token_file`: give a token or a username with password_file, not both"
            ),
            (Some(_), None, None) => {
                anyhow::bail!("key `registry.password_file`: basic auth needs it with username")
            }
            (None, Some(_), None) => {
                anyhow::bail!("key `registry.username`: basic auth needs it with password_file")
            }
        }
    }

    /// The client settings, with the auth files read. Errors name the key.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let auth = Auth::from_files(
            self.username.as_deref(),
            self.password_file.as_deref(),
            self.token_file.as_deref(),
        )
        .context("key `registry` (auth)")?;
        Ok(Settings {
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            auth,
        })
    }
}

/// One artifact installed from the registry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Installed {
    /// Manifest digest.
    manifest: String,
    /// Component SHA-256, hex.
    sha256: String,
    /// Signed version.
    version: String,
}

/// `current.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pointer {
    source: String,
    current: Installed,
    previous: Option<Installed>,
}

/// One entry of `refused.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Refused {
    digest: String,
    reason: String,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Installed>,
    previous: Option<Installed>,
    refused: VecDeque<Refused>,
    last_poll: Option<i64>,
    /// The last failure to resolve the tag, to log a change once.
    last_error: Option<String>,
    /// The last failure to pull a new digest (digest and error), to log a change once.
    pull_error: Option<String>,
    polls: u64,
}

/// A registry-fed component source: the state files, the client, the counters.
pub struct Follower {
    source: Source,
    registry: Registry,
    dir: PathBuf,
    interval: Duration,
    key: ed25519_dalek::VerifyingKey,
    floor: VersionFloor,
    state: Mutex<State>,
}

/// Why a digest was not installed.
enum Refusal {
    /// Retried at the next poll.
    Retry(String),
    /// Remembered.
    Final(String),
}

impl From<RegistryError> for Refusal {
    fn from(e: RegistryError) -> Self {
        Refusal::Retry(e.to_string())
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `interval` scaled by a factor in [0.9, 1.1] drawn from `random`.
pub fn jittered(interval: Duration, random: u64) -> Duration {
    let permille = 900 + random % 201;
    interval.mul_f64(permille as f64 / 1000.0)
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl Follower {
    /// Set up `<state_dir>/registry` for `source` and make sure a component is there to serve:
    /// the one kept from an earlier run (checked again: its bytes and signature), else one
    /// pulled now. Errors: the directory cannot be made private, the registry settings are
    /// wrong, or nothing is kept and the pull fails or is refused (the message says why; the
    /// daemon does not start without a component).
    pub async fn prepare(
        source: Source,
        section: &RegistrySection,
        state_dir: &Path,
        key: ed25519_dalek::VerifyingKey,
        floor: VersionFloor,
    ) -> anyhow::Result<Self> {
        let dir = state_dir.join("registry");
        files::private_dir(&dir, "key `state_dir`")?;
        files::private_dir(&dir.join("blobs"), "key `state_dir`")?;
        let registry = Registry::new(&source, &section.settings()?)
            .map_err(|e| anyhow::anyhow!("key `component`: {e}"))?;
        let follower = Follower {
            source,
            registry,
            dir,
            interval: Duration::from_secs(section.poll_interval_s),
            key,
            floor,
            state: Mutex::new(State::default()),
        };
        follower.load_state();
        let kept = follower.state().current.clone();
        let pinned_elsewhere = kept.as_ref().is_some_and(|k| {
            follower
                .source
                .digest()
                .is_some_and(|pinned| pinned != k.manifest)
        });
        if let Some(kept) = kept.filter(|_| !pinned_elsewhere) {
            match follower.materialize(&kept) {
                Ok(()) => {
                    tracing::info!(source = %follower.source, manifest = %kept.manifest, version = %kept.version,
                        "starting with the component kept from the registry; polling for a newer one");
                    return Ok(follower);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "the kept registry component is unusable; pulling again");
                    follower.state().current = None;
                }
            }
        }
        let digest = follower
            .registry
            .resolve(&follower.source)
            .await
            .with_context(|| format!("key `component`: resolving {}", follower.source))?;
        let installed = match follower.fetch(&digest).await {
            Ok(i) => i,
            Err(Refusal::Retry(e) | Refusal::Final(e)) => {
                anyhow::bail!(
                    "key `component`: {} at {digest}: {e} (nothing is kept in state_dir yet, so the daemon cannot start without it)",
                    follower.source
                )
            }
        };
        follower.materialize(&installed)?;
        follower.state().current = Some(installed);
        Ok(follower)
    }

    /// The component file the lifecycle serves: `<state_dir>/registry/component.wasm`.
    pub fn component_path(&self) -> PathBuf {
        self.dir.join("component.wasm")
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("registry state lock")
    }

    /// After the lifecycle started with [`Self::component_path`]: record it as the current
    /// artifact (`current.json`). Errors: the file cannot be written.
    pub fn started(&self, lifecycle: &Lifecycle) -> anyhow::Result<()> {
        let serving = lifecycle.current().digest.clone();
        let matches = self
            .state()
            .current
            .as_ref()
            .is_some_and(|c| c.sha256 == serving);
        anyhow::ensure!(matches, "the registry component is not the one serving");
        self.save_pointer()
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{sha256}.wasm"))
    }

    fn load_state(&self) {
        let read = |name: &str| -> Option<Vec<u8>> {
            let path = self.dir.join(name);
            std::fs::symlink_metadata(&path).ok()?;
            match files::read_user_file(&path, MAX_STATE_FILE_BYTES, name) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "ignoring a damaged registry state file");
                    None
                }
            }
        };
        let mut state = self.state();
        if let Some(bytes) = read("current.json") {
            match serde_json::from_slice::<Pointer>(&bytes) {
                Ok(p) => {
                    state.current = Some(p.current);
                    state.previous = p.previous;
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a damaged current.json"),
            }
        }
        if let Some(bytes) = read("refused.json") {
            match serde_json::from_slice::<Vec<Refused>>(&bytes) {
                Ok(list) => {
                    state.refused = list.into_iter().rev().take(MAX_REFUSED).rev().collect();
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a damaged refused.json"),
            }
        }
    }

    fn save_pointer(&self) -> anyhow::Result<()> {
        let state = self.state();
        let Some(current) = state.current.clone() else {
            return Ok(());
        };
        let pointer = Pointer {
            source: self.source.to_string(),
            current,
            previous: state.previous.clone(),
        };
        drop(state);
        files::write_private_file(
            &self.dir.join("current.json"),
            &serde_json::to_vec(&pointer)?,
            0o600,
        )
        .context("writing the registry state")?;
        self.remove_other_blobs();
        Ok(())
    }

    fn remove_other_blobs(&self) {
        let keep: Vec<String> = {
            let state = self.state();
            [&state.current, &state.previous]
                .into_iter()
                .flatten()
                .map(|i| i.sha256.clone())
                .collect()
        };
        let Ok(entries) = std::fs::read_dir(self.dir.join("blobs")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.split('.').next().unwrap_or("");
            if !keep.iter().any(|k| k == stem) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Copy a kept artifact (checked: SHA-256 and signature) to the served component file.
    fn materialize(&self, installed: &Installed) -> anyhow::Result<()> {
        let wasm = self.blob_path(&installed.sha256);
        let bytes = files::read_user_file(
            &wasm,
            krypton_host::component::MAX_COMPONENT_BYTES,
            "the kept component",
        )?;
        let sig = files::read_user_file(
            &signing::signature_path(&wasm),
            signing::MAX_SIGNATURE_FILE_BYTES,
            "the kept signature",
        )?;
        anyhow::ensure!(
            signing::digest_hex(&bytes) == installed.sha256,
            "{} does not hash to its name",
            wasm.display()
        );
        signing::verify(&self.key, &bytes, &sig)?;
        let path = self.component_path();
        files::write_private_files(
            &[
                (signing::signature_path(&path), &sig, 0o600),
                (path, &bytes, 0o600),
            ],
            None,
        )
        .context("writing the served component")?;
        Ok(())
    }

    /// Pull `digest`, verify its signature and version, and keep it in `blobs/`.
    async fn fetch(&self, digest: &str) -> Result<Installed, Refusal> {
        let pulled = self.registry.pull(&self.source, digest).await?;
        if pulled.signatures.is_empty() {
            return Err(Refusal::Final(
                "unsigned: no signature referrer (publish it with --signing-key, or with its .sig beside it)"
                    .into(),
            ));
        }
        let mut last = String::new();
        let mut verified = None;
        for sig in &pulled.signatures {
            match signing::verify(&self.key, &pulled.component, sig) {
                Ok(version) => {
                    verified = Some((version, sig));
                    break;
                }
                Err(e) => last = format!("{e:#}"),
            }
        }
        let Some((version, sig)) = verified else {
            return Err(Refusal::Final(format!(
                "no signature verifies with trusted_public_key ({last})"
            )));
        };
        self.floor
            .check(&version)
            .map_err(|e| Refusal::Final(format!("{e:#}")))?;
        let sha256 = signing::digest_hex(&pulled.component);
        let wasm = self.blob_path(&sha256);
        files::write_private_files(
            &[
                (signing::signature_path(&wasm), sig, 0o600),
                (wasm, &pulled.component, 0o600),
            ],
            None,
        )
        .map_err(|e| Refusal::Retry(format!("keeping the component in state_dir: {e}")))?;
        Ok(Installed {
            manifest: digest.to_string(),
            sha256,
            version,
        })
    }

    fn refuse(&self, digest: &str, reason: String) {
        tracing::error!(source = %self.source, %digest, %reason,
            "registry component refused; the current one keeps serving (this digest is not pulled again)");
        let list: Vec<Refused> = {
            let mut state = self.state();
            if state.refused.len() >= MAX_REFUSED {
                state.refused.pop_front();
            }
            state.refused.push_back(Refused {
                digest: digest.to_string(),
                reason,
            });
            state.refused.iter().cloned().collect()
        };
        if let Err(e) = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|b| files::write_private_file(&self.dir.join("refused.json"), &b, 0o600))
        {
            tracing::warn!(error = %e, "could not write refused.json");
        }
    }

    /// A roll back in probation put the previous component back: remember the failed digest
    /// and point the state at the one serving.
    fn check_rollback(&self, lifecycle: &Lifecycle) {
        let serving = lifecycle.current().digest.clone();
        let (failed, previous) = {
            let state = self.state();
            match (&state.current, &state.previous) {
                (Some(c), Some(p)) if c.sha256 != serving && p.sha256 == serving => {
                    (c.clone(), p.clone())
                }
                _ => return,
            }
        };
        {
            let mut state = self.state();
            state.current = Some(previous.clone());
            state.previous = None;
        }
        self.refuse(
            &failed.manifest,
            format!(
                "version {} failed its probation (a trap in its first calls) and was rolled back",
                failed.version
            ),
        );
        if let Err(e) = self
            .materialize(&previous)
            .and_then(|()| self.save_pointer())
        {
            tracing::warn!(error = %format!("{e:#}"), "could not record the roll back");
        }
    }

    /// One poll: notice a roll back, resolve the tag, and install a new digest.
    pub async fn poll_once(&self, lifecycle: &Lifecycle) {
        self.check_rollback(lifecycle);
        let resolved = self.registry.resolve(&self.source).await;
        let digest = {
            let mut state = self.state();
            state.polls += 1;
            state.last_poll = Some(now_secs());
            match resolved {
                Ok(d) => {
                    if state.last_error.take().is_some() {
                        tracing::info!(source = %self.source, "registry reachable again");
                    }
                    d
                }
                Err(e) => {
                    let text = e.to_string();
                    if state.last_error.as_deref() != Some(text.as_str()) {
                        tracing::warn!(source = %self.source, error = %text,
                            "registry poll failed; still serving, retrying at the next poll (logged again only when this changes)");
                        state.last_error = Some(text);
                    }
                    return;
                }
            }
        };
        {
            let state = self.state();
            if state.current.as_ref().is_some_and(|c| c.manifest == digest)
                || state.refused.iter().any(|r| r.digest == digest)
            {
                return;
            }
        }
        let retrying = self
            .state()
            .pull_error
            .as_deref()
            .is_some_and(|e| e.starts_with(&format!("{digest} ")));
        if retrying {
            tracing::debug!(source = %self.source, %digest, "pulling the new digest again");
        } else {
            tracing::info!(source = %self.source, %digest, "new digest at the tag; pulling");
        }
        let installed = match self.fetch(&digest).await {
            Ok(i) => i,
            Err(Refusal::Final(reason)) => return self.refuse(&digest, reason),
            Err(Refusal::Retry(text)) => {
                let mut state = self.state();
                let key = format!("{digest} {text}");
                if state.pull_error.as_deref() != Some(key.as_str()) {
                    tracing::warn!(source = %self.source, %digest, error = %text,
                        "pulling the new digest failed; still serving, retrying at the next poll (logged again only when this changes)");
                    state.pull_error = Some(key);
                }
                return;
            }
        };
        self.state().pull_error = None;
        let path = self.component_path();
        if let Err(e) = self.materialize(&installed) {
            tracing::warn!(error = %format!("{e:#}"), "could not write the new component");
            return;
        }
        match lifecycle.reload().await {
            Ok(ReloadOutcome::Swapped(_)) => {
                {
                    let mut state = self.state();
                    state.previous = state.current.take();
                    state.current = Some(installed.clone());
                }
                tracing::info!(source = %self.source, manifest = %installed.manifest, version = %installed.version,
                    "registry component swapped in (on probation)");
                if let Err(e) = self.save_pointer() {
                    tracing::warn!(error = %format!("{e:#}"), "could not record the new component");
                }
            }
            Ok(ReloadOutcome::Unchanged) => {
                tracing::info!(source = %self.source, manifest = %installed.manifest,
                    "the same component under a new manifest digest; still serving");
                self.state().current = Some(installed);
                let _ = self.save_pointer();
            }
            Err(e) => {
                self.refuse(&installed.manifest, format!("{e:#}"));
                let current = self.state().current.clone();
                if let Some(current) = current
                    && let Err(e) = self.materialize(&current)
                {
                    tracing::warn!(error = %format!("{e:#}"), "could not put the served file back");
                }
                let _ = path;
            }
        }
    }

    /// Poll until `stop` turns true (a pinned digest is never polled: only roll backs are
    /// noticed). The first poll comes after a random part of the interval.
    pub async fn follow(
        self: Arc<Self>,
        lifecycle: Arc<Lifecycle>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut wait = self.interval.mul_f64((random() % 1001) as f64 / 1000.0);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(wait) => self.poll_once(&lifecycle).await,
            }
            wait = jittered(self.interval, random());
        }
    }

    /// The `status` words of the control socket: ` source=… manifest=… last_poll=… polls=N
    /// requests=N refused=N` (times RFC 3339, `never` before the first poll).
    pub fn status_words(&self) -> String {
        let state = self.state();
        format!(
            " source={} manifest={} last_poll={} polls={} requests={} refused={}",
            self.source,
            state.current.as_ref().map_or("-", |c| c.manifest.as_str()),
            state
                .last_poll
                .map_or_else(|| "never".to_string(), crate::output::rfc3339),
            state.polls,
            self.registry.requests(),
            state.refused.len()
        )
    }
}

#[cfg(test)]
mod tests;
