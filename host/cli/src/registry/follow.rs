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
//! | `current.json` | the serving artifact (manifest digest, component SHA-256, version), the one before it, and the one a swap or a roll back is moving away from or to (`pending`); written (temp file, fsync, rename) before a swap starts, after it ends, and at a roll back before anything else |
//! | `refused.json` | manifest digests refused for good, with the reason (at most [`MAX_REFUSED`], each reason at most [`MAX_REASON_CHARS`]; the oldest is dropped with a log line) |
//!
//! So a restart without network serves the last artifact that was swapped in, checked again.
//!
//! # Trust before bytes
//!
//! A new digest costs its manifest and its referrers listing; the signature (over the layer
//! digest the manifest declares) and the version floor are checked before any layer byte is
//! fetched, so an unsigned digest or a downgrade costs no layer. The layer then streams into
//! `blobs/` (a temp file under its declared size, hashed on the way, renamed when it matches);
//! a verified blob already there is not fetched again. The bytes read per digest are counted
//! (`reload --status`: `pulled=`).
//!
//! # The floor and the registry state move as one
//!
//! The lifecycle writes `accepted-version` when a swap passes its checks; `current.json` names
//! the swap as `pending` before it starts and as current after it. The artifact `current.json`
//! names as current was verified and served by this host: a floor above its version with an
//! artifact of the floor's version `pending` is a swap cut short between the two files (a power
//! cut), so the floor goes back to the kept version (logged) and the swap is tried again at the
//! next poll. A floor above it with no such swap pending is newer than the state (a file
//! component of a higher version served since): the floor stays, and the kept artifact is
//! refused as a downgrade unless `allow_downgrade` (the tag is pulled again).
//! At a probation roll back, `current.json` is written first (the previous artifact current,
//! the failed one pending) and the served file, then `refused.json`, then the floor: a restart
//! or a `SIGHUP` at any point serves the previous artifact.
//!
//! What happens to a new digest:
//!
//! | outcome | remembered | logged |
//! | --- | --- | --- |
//! | the registry is down, answers an error, sends something malformed, missing or too large; no readable referrers listing (a referrers tag missing or holding an image manifest); a signature referrer that cannot be fetched (also on a 401, 403 or 429, or a local credential problem); no signature referrer listed, for the first [`UNSIGNED_GRACE_TRIES`] tries; a swap this host could not finish ([`ReloadFault::Host`]: a floor file not written, memory, the wall-clock limit) | no: retried, backing off per digest (the interval doubled per failure, at most [`RETRY_BACKOFF_MAX`], ±10 %) | when the error starts or changes (naming the lookup that failed: manifest, referrers API, referrers tag, signature blob, layer), and when it clears |
//! | still no signature referrer listed after [`UNSIGNED_GRACE_TRIES`] tries, a listed signature not verifying, a downgrade, other bytes signed as the serving version, a check the component fails ([`ReloadFault::Component`]), a roll back in probation caused by the component (a trap, the CPU limit) | yes, in `refused.json` | once |
//! | a roll back in probation on the wall-clock limit (which host calls, a slow modem, can spend) | no: backed off and retried | once per roll back |
//! | swapped in | it is the current artifact | once |

use super::pull::LookupError;
use super::{Auth, MAX_REFERRERS, Registry, RegistryError, Settings, Source};
use anyhow::Context as _;
use krypton_host::component::lifecycle::{
    Lifecycle, ReloadError, ReloadFault, ReloadOutcome, RolledBack,
};
use krypton_host::files;
use krypton_host::signing::{self, VersionFloor};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

/// Most refused digests remembered (the oldest is forgotten first, with a log line).
pub const MAX_REFUSED: usize = 32;
/// Longest refusal reason kept in `refused.json`, characters (the rest is cut and counted).
pub const MAX_REASON_CHARS: usize = 400;
/// Longest wait before a digest whose pull failed is tried again (never below the interval).
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// Tries of a digest whose complete referrers listing names no signature that are retried
/// (backing off) before it is refused for good as unsigned: a publisher that moves the tag
/// before it attaches the signature is not refused by every gateway polling in between. With
/// the back-off, the last of them comes some 7 poll intervals after the first (an hour at the
/// default interval of 300 s). A signature that is listed but does not verify is refused at once.
pub const UNSIGNED_GRACE_TRIES: u32 = 3;
/// Digests whose retry back-off and pulled bytes are remembered (the oldest is forgotten).
const MAX_TRACKED: usize = 8;
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
    /// A swap to it, or a roll back from it, not known to be finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<Installed>,
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
    /// Digests whose pull failed: failures so far and when to try again.
    backoff: VecDeque<(String, u32, Instant)>,
    /// Bytes read from the registry per digest pulled (manifests, listings, signatures,
    /// layer), the newest last.
    pulled: VecDeque<(String, u64)>,
    /// The artifact [`Follower::install`] is swapping in.
    swapping: Option<Installed>,
    /// A roll back of a version swapped in whose swap was not recorded yet (its first call
    /// failed before [`Follower::install`] took the swap into its state).
    early_roll_back: Option<RolledBack>,
    /// The artifact backing off after a failure on this host's side (a swap it could not
    /// finish, a roll back on the wall-clock limit): its verified blob is kept for the retry.
    retrying: Option<Installed>,
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

impl From<LookupError> for Refusal {
    fn from(e: LookupError) -> Self {
        Refusal::Retry(e.to_string())
    }
}

impl From<RegistryError> for Refusal {
    fn from(e: RegistryError) -> Self {
        Refusal::Retry(e.to_string())
    }
}

/// The version this host is built with (the built-in component's): a registry-fed daemon on a
/// new state directory accepts nothing older.
pub const BUILT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The wait before trying a digest again after `failures` failed pulls: the interval doubled
/// per failure, at most [`RETRY_BACKOFF_MAX`] (or the interval when it is longer), ±10 %
/// drawn from `random`.
pub fn retry_backoff(interval: Duration, failures: u32, random: u64) -> Duration {
    let cap = RETRY_BACKOFF_MAX.max(interval);
    let doubled = interval.saturating_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX));
    jittered(doubled.min(cap), random)
}

/// `reason` cut to [`MAX_REASON_CHARS`] characters (the rest counted).
fn bounded_reason(reason: &str) -> String {
    krypton_contract::text::printable_to(reason, MAX_REASON_CHARS)
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
    /// pulled now. The floor is reconciled with the kept state first (a swap or a roll back cut
    /// short, see the module docs) and, on a new state directory, starts at [`BUILT_VERSION`].
    /// Errors: the directory cannot be made private, the registry settings are wrong, the floor
    /// cannot be read or written, or nothing is kept and the pull fails or is refused (the
    /// message says why; the daemon does not start without a component).
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
        let pending = follower.load_state();
        let kept = follower.state().current.clone();
        let pinned_elsewhere = kept.as_ref().is_some_and(|k| {
            follower
                .source
                .digest()
                .is_some_and(|pinned| pinned != k.manifest)
        });
        if let Some(kept) = kept.filter(|_| !pinned_elsewhere) {
            match follower
                .reconcile_floor(&kept, pending.as_ref())
                .and_then(|()| follower.materialize(&kept))
            {
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
        follower
            .floor
            .seed(BUILT_VERSION)
            .context("key `state_dir`: the version floor")?;
        let digest = follower
            .registry
            .resolve(&follower.source)
            .await
            .with_context(|| {
                format!(
                    "key `component`: resolving {} (the tag lookup failed)",
                    follower.source
                )
            })?;
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

    /// The floor and the kept state as one unit (module docs). A floor file above the kept
    /// version is a swap or a roll back cut short between `accepted-version` and
    /// `current.json` only when `current.json` names an artifact of the floor's version as
    /// `pending`: then the floor goes back to the kept version (logged) and the swap is tried
    /// again at the next poll. Otherwise the state is older than the floor (say, the daemon
    /// served a file component of a higher version since): the floor stays, and the kept
    /// artifact is refused as a downgrade unless `allow_downgrade`. The kept version is held
    /// as the floor in memory when it is kept. Errors: the floor cannot be read or written, or
    /// the kept artifact is refused (the message names both versions).
    fn reconcile_floor(&self, kept: &Installed, pending: Option<&Installed>) -> anyhow::Result<()> {
        let kept_version = signing::parse_version(&kept.version)?;
        if let Some(floor) = self.floor.highest()?
            && floor.cmp_precedence(&kept_version).is_gt()
        {
            let cut_short = pending.is_some_and(|p| {
                signing::parse_version(&p.version).is_ok_and(|v| v.cmp_precedence(&floor).is_eq())
            });
            if cut_short {
                tracing::warn!(kept = %kept.version, floor = %floor,
                    pending = %pending.map_or("-", |p| p.manifest.as_str()),
                    "the version floor is above the component kept from the registry: a swap or a roll back was cut short between the two; the floor goes back to the kept version");
                self.floor
                    .restore_artifact(&kept.version, Some(&kept.sha256))
                    .context("key `state_dir`: putting the version floor back")?;
            } else {
                self.floor
                    .check_artifact(&kept.version, Some(&kept.sha256))
                    .with_context(|| {
                        format!(
                            "the registry component kept in state_dir (version {}) is older than the version floor {floor}, and no swap to {floor} was under way: the kept state predates the floor",
                            kept.version
                        )
                    })?;
            }
        }
        self.floor
            .seed(&kept.version)
            .context("key `state_dir`: the version floor")
    }

    /// The component file the lifecycle serves: `<state_dir>/registry/component.wasm`.
    pub fn component_path(&self) -> PathBuf {
        self.dir.join("component.wasm")
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("registry state lock")
    }

    /// After the lifecycle started with [`Self::component_path`]: record it as the current
    /// artifact (`current.json`) and have every probation roll back recorded at once (see the
    /// module docs). Errors: the file cannot be written.
    pub fn started(self: &Arc<Self>, lifecycle: &Lifecycle) -> anyhow::Result<()> {
        let serving = lifecycle.current().digest.clone();
        let matches = self
            .state()
            .current
            .as_ref()
            .is_some_and(|c| c.sha256 == serving);
        anyhow::ensure!(matches, "the registry component is not the one serving");
        let me = Arc::downgrade(self);
        lifecycle.on_roll_back(move |rolled| {
            if let Some(me) = me.upgrade() {
                me.rolled_back(rolled);
            }
        });
        self.save_pointer(None)
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{sha256}.wasm"))
    }

    /// Read `current.json` and `refused.json`; the `pending` artifact of `current.json`.
    fn load_state(&self) -> Option<Installed> {
        let read = |name: &str| -> Option<Vec<u8>> {
            let path = self.dir.join(name);
            std::fs::symlink_metadata(&path).ok()?;
            match files::read_user_file(&path, MAX_STATE_FILE_BYTES, name) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "ignoring a damaged registry state file (it is replaced at the next change)");
                    None
                }
            }
        };
        let mut state = self.state();
        let mut pending = None;
        if let Some(bytes) = read("current.json") {
            match serde_json::from_slice::<Pointer>(&bytes) {
                Ok(p) => {
                    state.current = Some(p.current);
                    state.previous = p.previous;
                    pending = p.pending;
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a damaged current.json"),
            }
        }
        if let Some(bytes) = read("refused.json") {
            match serde_json::from_slice::<Vec<Refused>>(&bytes) {
                Ok(list) => {
                    let dropped = list.len().saturating_sub(MAX_REFUSED);
                    if dropped > 0 {
                        tracing::warn!(
                            dropped,
                            "refused.json holds more than {MAX_REFUSED} digests; the oldest are forgotten"
                        );
                    }
                    state.refused = list
                        .into_iter()
                        .skip(dropped)
                        .map(|r| Refused {
                            reason: bounded_reason(&r.reason),
                            digest: r.digest,
                        })
                        .collect();
                }
                Err(e) => tracing::warn!(error = %e, "ignoring a damaged refused.json"),
            }
        }
        pending
    }

    /// Write `current.json` (with `pending`, when a swap or a roll back is under way) and, when
    /// nothing is pending, remove the blobs of other artifacts.
    fn save_pointer(&self, pending: Option<&Installed>) -> anyhow::Result<()> {
        let state = self.state();
        let Some(current) = state.current.clone() else {
            return Ok(());
        };
        let pointer = Pointer {
            source: self.source.to_string(),
            current,
            previous: state.previous.clone(),
            pending: pending.cloned(),
        };
        drop(state);
        files::write_private_file(
            &self.dir.join("current.json"),
            &serde_json::to_vec(&pointer)?,
            0o600,
        )
        .context("writing the registry state")?;
        if pending.is_none() {
            self.remove_other_blobs();
        }
        Ok(())
    }

    fn remove_other_blobs(&self) {
        let keep: Vec<String> = {
            let state = self.state();
            [&state.current, &state.previous, &state.retrying]
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

    /// Copy a kept artifact (checked: SHA-256, signature, and the signed version it is kept
    /// as) to the served component file.
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
        let version = signing::verify(&self.key, &bytes, &sig)?;
        anyhow::ensure!(
            version == installed.version,
            "{} is signed as version {version}, not {} as the registry state says",
            wasm.display(),
            installed.version
        );
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

    /// Pull `digest` trust first (manifest, signature over the declared layer digest, version
    /// floor, then the layer unless a verified copy is kept) into `blobs/`, counting the bytes
    /// read.
    async fn fetch(&self, digest: &str) -> Result<Installed, Refusal> {
        let mut bytes = 0;
        let outcome = self.fetch_counting(digest, &mut bytes).await;
        let mut state = self.state();
        match state.pulled.iter_mut().find(|(d, _)| d == digest) {
            Some((_, total)) => *total += bytes,
            None => {
                if state.pulled.len() >= MAX_TRACKED {
                    state.pulled.pop_front();
                }
                state.pulled.push_back((digest.to_string(), bytes));
            }
        }
        outcome
    }

    async fn fetch_counting(&self, digest: &str, bytes: &mut u64) -> Result<Installed, Refusal> {
        let announced = self.registry.announced(&self.source, digest, bytes).await?;
        let sha256 = announced.sha256().to_string();
        let (version, sig) = self.verified_signature(digest, &sha256, bytes).await?;
        // A floor file that cannot be read says nothing about the artifact: retried.
        self.floor
            .enforced()
            .map_err(|e| Refusal::Retry(format!("reading the version floor: {e:#}")))?;
        self.floor
            .check_artifact(&version, Some(&sha256))
            .map_err(|e| Refusal::Final(format!("{e:#}")))?;
        let wasm = self.blob_path(&sha256);
        if !kept_blob_matches(&wasm, &sha256) {
            self.registry
                .layer_to_file(&self.source, &announced.layer, &wasm, bytes)
                .await?;
        }
        files::write_private_file(&signing::signature_path(&wasm), &sig, 0o600)
            .map_err(|e| Refusal::Retry(format!("keeping the signature in state_dir: {e}")))?;
        Ok(Installed {
            manifest: digest.to_string(),
            sha256,
            version,
        })
    }

    /// The version signed by the first signature referrer of `digest` that verifies with the
    /// trusted key over the layer digest `sha256`, and its `.sig`. Final only when a complete
    /// listing proves it: no signature referrer, or none verifying; retried when a listing or a
    /// signature could not be read.
    async fn verified_signature(
        &self,
        digest: &str,
        sha256: &str,
        bytes: &mut u64,
    ) -> Result<(String, Vec<u8>), Refusal> {
        let listing = self
            .registry
            .signature_referrers(&self.source, digest, bytes)
            .await?;
        let mut unreadable = None;
        let mut failed = None;
        for entry in &listing.candidates {
            match self
                .registry
                .signature(&self.source, digest, entry, false, bytes)
                .await
            {
                Ok(None) => {}
                Ok(Some(sig)) => match signing::verify_digest(&self.key, sha256, &sig) {
                    Ok(version) => return Ok((version, sig)),
                    Err(e) => {
                        failed.get_or_insert(format!("{e:#}"));
                    }
                },
                Err(e) if e.error.is_retryable() => {
                    unreadable.get_or_insert(e.to_string());
                }
                Err(e) => {
                    failed.get_or_insert(e.to_string());
                }
            }
        }
        if let Some(text) = unreadable {
            return Err(Refusal::Retry(text));
        }
        if listing.cut {
            return Err(Refusal::Retry(format!(
                "{} lookup: none of the {MAX_REFERRERS} newest signature referrers verifies and more are listed; asked again later",
                listing.from
            )));
        }
        Err(self.no_signature(digest, &listing.from.to_string(), failed))
    }

    /// The verdict on `digest` when no signature referrer of a complete listing (`from`)
    /// verified: refused for good when one was listed and `failed` (its error); when none was
    /// listed, retried for the first [`UNSIGNED_GRACE_TRIES`] tries of the digest (its
    /// signature may not be attached yet), then refused as unsigned.
    fn no_signature(&self, digest: &str, from: &str, failed: Option<String>) -> Refusal {
        if let Some(last) = failed {
            return Refusal::Final(format!(
                "no signature verifies with trusted_public_key ({last})"
            ));
        }
        let tried = self
            .state()
            .backoff
            .iter()
            .find(|(d, _, _)| d == digest)
            .map_or(0, |(_, n, _)| *n);
        if tried < UNSIGNED_GRACE_TRIES {
            return Refusal::Retry(format!(
                "no signature referrer in the {from} listing yet (try {} of {UNSIGNED_GRACE_TRIES} before the digest is refused as unsigned)",
                tried + 1
            ));
        }
        Refusal::Final(format!(
            "unsigned: no signature referrer in the {from} listing after {} tries (publish it with --signing-key, or with its .sig beside it)",
            tried + 1
        ))
    }

    fn refuse(&self, digest: &str, reason: String) {
        let list = note_refusal(&mut self.state(), digest, &reason);
        self.write_refused(digest, &reason, list);
    }

    /// Log a refusal and write `refused.json` (`list`, as [`note_refusal`] left it).
    fn write_refused(&self, digest: &str, reason: &str, list: Vec<Refused>) {
        tracing::error!(source = %self.source, %digest, %reason,
            "registry component refused; the current one keeps serving (this digest is not pulled again)");
        if let Err(e) = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|b| files::write_private_file(&self.dir.join("refused.json"), &b, 0o600))
        {
            tracing::warn!(error = %e, "could not write refused.json");
        }
    }

    /// A probation roll back, told by the lifecycle before anything else runs. In memory at
    /// once, under the lock a poll takes (so that no poll pulls the failed digest again): the
    /// previous artifact current, the failed digest refused (or backing off). Then on disk:
    /// `current.json` (the failed one pending) and the served file, then `refused.json`.
    fn rolled_back(&self, rolled: &RolledBack) {
        let (failed, restored, recorded, verdict) = {
            let mut state = self.state();
            let (current, previous) = (state.current.clone(), state.previous.clone());
            let (failed, restored, recorded) = match (current, previous) {
                (Some(c), Some(p))
                    if c.sha256 == rolled.failed_digest && p.sha256 == rolled.restored_digest =>
                {
                    let (failed, restored) = (c, p);
                    state.current = Some(restored.clone());
                    state.previous = None;
                    (failed, restored, true)
                }
                (Some(c), _) if c.sha256 == rolled.restored_digest => {
                    // The swap under way ([`Self::install`]) sees it; `current.json` still
                    // names the restored artifact as current.
                    let Some(failed) = state
                        .swapping
                        .clone()
                        .filter(|s| s.sha256 == rolled.failed_digest)
                    else {
                        return;
                    };
                    state.early_roll_back = Some(rolled.clone());
                    (failed, c, false)
                }
                _ => return,
            };
            let verdict = if is_environmental(&rolled.reason) {
                state.retrying = Some(failed.clone());
                Err(note_back_off(&mut state, &failed.manifest, self.interval))
            } else {
                let reason = format!(
                    "version {} failed its probation (a trap in its first calls: {}) and was rolled back",
                    failed.version, rolled.reason
                );
                let list = note_refusal(&mut state, &failed.manifest, &reason);
                Ok((reason, list))
            };
            (failed, restored, recorded, verdict)
        };
        let written = if recorded {
            self.save_pointer(Some(&failed))
        } else {
            Ok(())
        };
        // The served file goes back now: a `SIGHUP` must not find the failed one.
        if let Err(e) = written.and_then(|()| self.materialize(&restored)) {
            tracing::warn!(error = %format!("{e:#}"), "could not record the roll back");
        }
        match verdict {
            Ok((reason, list)) => self.write_refused(&failed.manifest, &reason, list),
            Err(wait) => {
                tracing::warn!(source = %self.source, digest = %failed.manifest, version = %failed.version,
                    reason = %rolled.reason, retry_in_s = wait.as_secs(),
                    "registry component rolled back on the wall-clock limit, which host calls can spend: not refused for good; tried again after a back-off")
            }
        }
    }

    /// Count a failed pull of `digest`; the wait before the next try.
    fn back_off(&self, digest: &str) -> Duration {
        note_back_off(&mut self.state(), digest, self.interval)
    }

    /// One poll: resolve the tag, and install a new digest unless it is backing off.
    pub async fn poll_once(&self, lifecycle: &Lifecycle) {
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
                            "registry poll failed (the tag lookup); still serving, retrying at the next poll (logged again only when this changes)");
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
                || state
                    .backoff
                    .iter()
                    .any(|(d, _, at)| *d == digest && Instant::now() < *at)
            {
                return;
            }
        }
        let retrying = self.state().backoff.iter().any(|(d, _, _)| *d == digest);
        if retrying {
            tracing::debug!(source = %self.source, %digest, "pulling the new digest again");
        } else {
            tracing::info!(source = %self.source, %digest, "new digest at the tag; pulling");
        }
        let installed = match self.fetch(&digest).await {
            Ok(i) => i,
            Err(Refusal::Final(reason)) => return self.refuse(&digest, reason),
            Err(Refusal::Retry(text)) => {
                let wait = self.back_off(&digest);
                let mut state = self.state();
                let key = format!("{digest} {text}");
                if state.pull_error.as_deref() != Some(key.as_str()) {
                    tracing::warn!(source = %self.source, %digest, error = %text, retry_in_s = wait.as_secs(),
                        "pulling the new digest failed; still serving, retrying after a back-off (logged again only when this changes)");
                    state.pull_error = Some(key);
                }
                return;
            }
        };
        {
            let mut state = self.state();
            state.pull_error = None;
        }
        self.install(lifecycle, installed).await;
    }

    /// Swap a fetched artifact in: `current.json` names it pending first (so that a power cut
    /// at any point leaves a state the next start serves), then the served file, the lifecycle's
    /// checks and swap, and `current.json` again.
    async fn install(&self, lifecycle: &Lifecycle, installed: Installed) {
        // A roll back during the pull may have refused it meanwhile.
        if self
            .state()
            .refused
            .iter()
            .any(|r| r.digest == installed.manifest)
        {
            return;
        }
        if let Err(e) = self
            .save_pointer(Some(&installed))
            .and_then(|()| self.materialize(&installed))
        {
            tracing::warn!(error = %format!("{e:#}"), "could not write the new component");
            return;
        }
        self.state().swapping = Some(installed.clone());
        let reloaded = lifecycle.reload().await;
        {
            let mut state = self.state();
            if !matches!(reloaded, Ok(ReloadOutcome::Swapped(_))) {
                state.swapping = None;
            }
            // Its failures so far count until it is installed (a reload that fails on the
            // host's side backs off further).
            if reloaded.is_ok() {
                state.backoff.retain(|(d, _, _)| *d != installed.manifest);
            }
        }
        match reloaded {
            Ok(ReloadOutcome::Swapped(_)) => {
                let early = {
                    let mut state = self.state();
                    // Under the one lock the roll back hook takes: a roll back is either seen
                    // here or finds the swap recorded.
                    state.swapping = None;
                    match state
                        .early_roll_back
                        .take()
                        .filter(|r| r.failed_digest == installed.sha256)
                    {
                        Some(rolled) => Some(rolled),
                        None => {
                            state.previous = state.current.take();
                            state.current = Some(installed.clone());
                            None
                        }
                    }
                };
                if early.is_some() {
                    // Rolled back (and remembered) before the swap was recorded: the state
                    // still names the previous artifact; the pending mark goes.
                    if let Err(e) = self.save_pointer(None) {
                        tracing::warn!(error = %format!("{e:#}"), "could not record the roll back");
                    }
                    return;
                }
                tracing::info!(source = %self.source, manifest = %installed.manifest, version = %installed.version,
                    "registry component swapped in (on probation)");
                if let Err(e) = self.save_pointer(None) {
                    tracing::warn!(error = %format!("{e:#}"), "could not record the new component");
                }
            }
            Ok(ReloadOutcome::Unchanged) => {
                tracing::info!(source = %self.source, manifest = %installed.manifest,
                    "the same component under a new manifest digest; still serving");
                self.state().current = Some(installed);
                let _ = self.save_pointer(None);
            }
            Err(e) => {
                self.reload_failed(&installed, &e);
                let current = self.state().current.clone();
                if let Some(current) = current
                    && let Err(e) = self
                        .materialize(&current)
                        .and_then(|()| self.save_pointer(None))
                {
                    tracing::warn!(error = %format!("{e:#}"), "could not put the served file back");
                }
            }
        }
    }

    /// A reload of `installed` failed with `e`: refused for good when the component proves it
    /// ([`ReloadFault::Component`]: its signature, its version, its own checks); backed off
    /// and retried when this host could not finish the checks ([`ReloadFault::Host`]: a disk
    /// full or read-only, memory, the wall-clock limit), or when the error does not say.
    fn reload_failed(&self, installed: &Installed, e: &anyhow::Error) {
        let fault = e
            .downcast_ref::<ReloadError>()
            .map_or(ReloadFault::Host, |r| r.fault);
        match fault {
            ReloadFault::Component => self.refuse(&installed.manifest, format!("{e:#}")),
            ReloadFault::Host => {
                let wait = {
                    let mut state = self.state();
                    state.retrying = Some(installed.clone());
                    note_back_off(&mut state, &installed.manifest, self.interval)
                };
                tracing::warn!(source = %self.source, digest = %installed.manifest, version = %installed.version,
                    error = %format!("{e:#}"), retry_in_s = wait.as_secs(),
                    "this host could not finish the checks of the new component (not its fault): not refused for good; tried again after a back-off");
            }
        }
    }

    /// Poll until `stop` turns true (a pinned digest is never polled again once serving). The
    /// first poll comes after a random part of the interval.
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
            // A registry that answered 429/503 with a long Retry-After is not polled before
            // the time it named.
            if let Some(at) = self.registry.not_before() {
                wait = wait.max(at.saturating_duration_since(Instant::now()));
            }
        }
    }

    /// The `status` words of the control socket: ` source=… manifest=… last_poll=… polls=N
    /// requests=N refused=N pulled=DIGEST/BYTES,…` (times RFC 3339, `never` before the first
    /// poll; `pulled` lists the bytes read from the registry for each of the last digests
    /// pulled, `-` when none).
    pub fn status_words(&self) -> String {
        let state = self.state();
        let pulled = if state.pulled.is_empty() {
            "-".to_string()
        } else {
            state
                .pulled
                .iter()
                .map(|(d, n)| format!("{d}/{n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            " source={} manifest={} last_poll={} polls={} requests={} refused={} pulled={pulled}",
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

/// Remember `digest` as refused in `state` (the oldest forgotten, with a log line, past
/// [`MAX_REFUSED`]); the list to write.
fn note_refusal(state: &mut State, digest: &str, reason: &str) -> Vec<Refused> {
    state.backoff.retain(|(d, _, _)| d != digest);
    if state
        .retrying
        .as_ref()
        .is_some_and(|r| r.manifest == digest)
    {
        state.retrying = None;
    }
    if state.refused.len() >= MAX_REFUSED
        && let Some(oldest) = state.refused.pop_front()
    {
        tracing::info!(digest = %oldest.digest, "refused.json is full ({MAX_REFUSED}); forgetting its oldest refusal");
    }
    state.refused.push_back(Refused {
        digest: digest.to_string(),
        reason: bounded_reason(reason),
    });
    state.refused.iter().cloned().collect()
}

/// Count a failed try of `digest` in `state`; the wait before the next one.
fn note_back_off(state: &mut State, digest: &str, interval: Duration) -> Duration {
    let failures = match state.backoff.iter().position(|(d, _, _)| d == digest) {
        Some(i) => state.backoff.remove(i).map_or(1, |(_, n, _)| n + 1),
        None => 1,
    };
    let wait = retry_backoff(interval, failures, random());
    if state.backoff.len() >= MAX_TRACKED {
        state.backoff.pop_front();
    }
    state
        .backoff
        .push_back((digest.to_string(), failures, Instant::now() + wait));
    wait
}

/// Whether a roll back's reason may be the environment's doing rather than the component's:
/// the wall-clock limit, which host calls (a slow modem, a stuck reader, the network) spend
/// too. A trap or the CPU limit is the component's own.
fn is_environmental(reason: &str) -> bool {
    reason.contains("wall-clock limit")
}

/// Whether `path` holds a component whose SHA-256 is `sha256` (a verified blob kept from an
/// earlier try).
fn kept_blob_matches(path: &Path, sha256: &str) -> bool {
    files::read_user_file(
        path,
        krypton_host::component::MAX_COMPONENT_BYTES,
        "the kept component",
    )
    .is_ok_and(|bytes| signing::digest_hex(&bytes) == sha256)
}

#[cfg(test)]
mod tests;
