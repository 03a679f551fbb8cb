//! `krypton-host run`: keep targets provisioned, hot-swap the component, answer a control
//! socket. Configuration is one TOML file (see `gateway.example.toml`); every key is checked
//! at start against its documented range and an error names the key.
//!
//! The loop: every `check_interval_secs`, one pass (never two at once: passes run one after
//! the other on one task, a tick missed while a pass runs is skipped) takes the store's writer
//! lock and checks each configured target through the component's `status`; a target is
//! provisioned when nothing is stored, when the certificate's `notAfter` is within
//! `renewal.certificate_margin_days` (for a target whose every call mints new credentials, as
//! the component's `targets()` says with `mints-credentials`, only with
//! `renewal.reprovision_minting = true`, formerly `aws_iot_reprovision`), and otherwise left to
//! the component's own reuse rules. The configured target names are checked against the
//! component's `targets()` at start. A target that
//! fails is retried after an exponential backoff with jitter (`[backoff]`), and its state is
//! logged once per change (failing, failing differently, recovered), not once per pass.
//!
//! One daemon per store and per control socket: the daemon holds `<store>/.daemon.lock` and
//! `<control_socket>.lock` (`flock(2)`) for its whole life; a second one is refused with the
//! first one's pid. The control socket is created inside a private (0700) directory and moved
//! into place already 0600, peers are checked with `SO_PEERCRED` (same uid or root, see
//! `unix(7)`), and request lines are bounded to [`MAX_CONTROL_LINE`] bytes. A new component
//! arrives by replacing the file (polled every second), by `SIGHUP`, or by `krypton-host
//! reload` over the control socket.

use crate::facts::Facts;
use crate::files::{self, FileLock, LockError};
use crate::http::{Origin, OutboundPolicy};
use crate::lifecycle::{ComponentPolicy, Lifecycle, ReloadOutcome, parse_public_key};
use crate::options::ProvisionOptions;
use crate::output;
use crate::runtime::{AuthMode, CachePolicy, ProvisionRequest, Runtime, SandboxLimits, Target};
use crate::signing::VersionFloor;
use crate::store::SecretStore;
use crate::uicc::{BackendKind, UiccAccess, UiccConfig};
use anyhow::Context as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt};

/// Longest control request line accepted, bytes (`reload` and `status` need 7).
pub const MAX_CONTROL_LINE: u64 = 256;

/// How long a daemon pass waits for the store's writer lock (held by a CLI `provision`)
/// before it skips this pass.
pub const PASS_LOCK_WAIT: Duration = Duration::from_secs(10);

/// How long a stopping daemon lets a pass in progress finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The documented range of each numeric key (inclusive), checked at start.
pub mod ranges {
    use std::ops::RangeInclusive;
    /// `check_interval_secs`: 1 s to 1 day.
    pub const CHECK_INTERVAL_SECS: RangeInclusive<u64> = 1..=86_400;
    /// `limits.memory_mib`: 8 MiB (the component needs ~2) to 4 GiB (the wasm32 address space).
    pub const MEMORY_MIB: RangeInclusive<u64> = 8..=4_096;
    /// `limits.cpu_ms`: 1 ms to 10 min of the component's own CPU time per call.
    pub const CPU_MS: RangeInclusive<u64> = 1..=600_000;
    /// `limits.deadline_secs`: 1 s to 1 day per provisioning run.
    pub const DEADLINE_SECS: RangeInclusive<u64> = 1..=86_400;
    /// `renewal.certificate_margin_days`: 0 to 10 years.
    pub const MARGIN_DAYS: RangeInclusive<u64> = 0..=3_650;
    /// `backoff.base_secs`: 1 s to 1 day.
    pub const BACKOFF_BASE_SECS: RangeInclusive<u64> = 1..=86_400;
    /// `backoff.max_secs`: 1 s to 7 days, and at least `backoff.base_secs`.
    pub const BACKOFF_MAX_SECS: RangeInclusive<u64> = 1..=604_800;
    /// `uicc.baud`: the modem's baud rate (USB modems ignore it).
    pub const UICC_BAUD: RangeInclusive<u64> = 300..=4_000_000;
    /// `uicc.timeout_ms`: one AT command or APDU exchange, 100 ms to 10 minutes.
    pub const UICC_TIMEOUT_MS: RangeInclusive<u64> = 100..=600_000;
}

fn default_store() -> PathBuf {
    "/var/lib/krypton-host/store".into()
}
fn default_state_dir() -> PathBuf {
    "/var/lib/krypton-host/state".into()
}
fn default_interval() -> u64 {
    // Checks are local (status, and reuse decisions inside the component) unless something is
    // due, so they are cheap; five minutes keeps hour-long Cognito credentials fresh.
    300
}
fn default_mode() -> String {
    "network".into()
}

/// The daemon's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Component file: a `.wasm`, or a precompiled `.cwasm` (`krypton-host compile`, needs
    /// `trusted_public_key`); the built-in component when absent (then it cannot be
    /// hot-swapped; the gateway build has none and needs a `.cwasm`).
    /// `oci://HOST[:PORT]/REPO:TAG` (or `…@sha256:DIGEST`) follows a registry instead, with
    /// `[registry]` and `trusted_public_key` (see [`crate::registry::follow`]; full build only).
    pub component: Option<PathBuf>,
    /// `[registry]`: how to reach the registry of an `oci://` component.
    #[cfg(feature = "registry")]
    pub registry: Option<crate::registry::follow::RegistrySection>,
    /// `[registry]`: refused, this build has no registry support (feature `registry`).
    #[cfg(not(feature = "registry"))]
    pub registry: Option<toml::Table>,
    /// Secret store directory (0700; created when missing).
    #[serde(default = "default_store")]
    pub store: PathBuf,
    /// The daemon's own state (highest accepted component version, compile cache): a
    /// directory created 0700, refused when group or others can reach it.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Krypton's base URL; without it, the component's default for the mode (in SIM mode for
    /// `coverage`), see [`GatewayConfig::endpoint`].
    pub endpoint: Option<String>,
    /// `network` (over SORACOM Air or Arc) or `sim` (SIM-authenticated, with `[uicc]`).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// SIM mode's coverage when `endpoint` is not set: one the component names in its
    /// `default-endpoints()` (a plain name, e.g. `japan`); its first SIM-mode entry when unset.
    pub coverage: Option<String>,
    /// `[uicc]`: how SIM mode reaches the SIM.
    pub uicc: Option<UiccSection>,
    /// Extra CA certificates (PEM) to trust for the endpoint.
    pub ca_file: Option<PathBuf>,
    /// Where the component may connect besides the endpoint, in Spin's
    /// `allowed_outbound_hosts` form (`https://host:port`).
    pub allowed_outbound_hosts: Option<Vec<String>>,
    /// Seconds between renewal checks, [`ranges::CHECK_INTERVAL_SECS`].
    #[serde(default = "default_interval")]
    pub check_interval_secs: u64,
    /// Unix socket for `krypton-host reload` (0600, created inside a private directory).
    pub control_socket: Option<PathBuf>,
    /// ed25519 public key (base64 or hex); when set, a component needs a valid `.sig`
    /// binding its digest and version (see [`crate::signing`]). A precompiled component
    /// always needs it.
    pub trusted_public_key: Option<String>,
    /// Let a component file with a lower version than the highest accepted one (kept in
    /// `state_dir`) serve. Off by default: an older version is refused as a replay.
    #[serde(default)]
    pub allow_downgrade: bool,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[renewal]`.
    #[serde(default)]
    pub renewal: RenewalConfig,
    /// `[backoff]`.
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// Targets to keep provisioned.
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,
}

/// `[limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Linear memory per call, MiB, [`ranges::MEMORY_MIB`].
    pub memory_mib: u64,
    /// The component's own execution time per call, ms, [`ranges::CPU_MS`].
    pub cpu_ms: u64,
    /// A whole provisioning run, s, [`ranges::DEADLINE_SECS`].
    pub deadline_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_mib: 64,
            cpu_ms: 10_000,
            deadline_secs: ProvisionOptions::DEFAULT_DEADLINE.as_secs(),
        }
    }
}

/// `[renewal]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenewalConfig {
    /// Re-provision a certificate this many days before `notAfter`, [`ranges::MARGIN_DAYS`].
    pub certificate_margin_days: u64,
    /// Also renew targets whose every call mints new credentials (`mints-credentials` in the
    /// component's `targets()`; AWS IoT issues a new certificate and key per call, and the old
    /// one stays active until it is deactivated). Off by default: such a target is only
    /// provisioned when nothing is stored. `aws_iot_reprovision`, the key's earlier name, is
    /// accepted too.
    #[serde(alias = "aws_iot_reprovision")]
    pub reprovision_minting: bool,
}

impl Default for RenewalConfig {
    fn default() -> Self {
        RenewalConfig {
            certificate_margin_days: 30,
            reprovision_minting: false,
        }
    }
}

/// `[backoff]`: waits after a target fails, doubling per consecutive failure from `base_secs`
/// up to `max_secs`, each drawn at random from its upper half ("equal jitter").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// First wait after a failure, s, [`ranges::BACKOFF_BASE_SECS`].
    pub base_secs: u64,
    /// Longest wait, s, [`ranges::BACKOFF_MAX_SECS`], at least `base_secs`.
    pub max_secs: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base_secs: 60,
            max_secs: 3_600,
        }
    }
}

/// `[uicc]`: the SIM of SIM-authenticated mode (the CLI's `--uicc`, `--sim-file`, `--port`,
/// `--baud`, `--uicc-timeout-ms`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiccSection {
    /// `autodetect` (default), `modem`, `pcsc` or `soft`.
    pub backend: String,
    /// The software SIM file (JSON, 0600), for `soft` (and picked first by `autodetect`).
    pub sim_file: Option<PathBuf>,
    /// The modem's serial port, e.g. `/dev/ttyUSB2`.
    pub port: Option<String>,
    /// The modem's baud rate, [`ranges::UICC_BAUD`] (default 57600).
    pub baud: u64,
    /// Longest wait for one AT command, ms, [`ranges::UICC_TIMEOUT_MS`] (default 10000).
    pub timeout_ms: u64,
}

impl Default for UiccSection {
    fn default() -> Self {
        let defaults = UiccConfig::default();
        UiccSection {
            backend: "autodetect".into(),
            sim_file: None,
            port: None,
            baud: defaults.baud_rate.into(),
            timeout_ms: defaults.command_timeout.as_millis() as u64,
        }
    }
}

impl UiccSection {
    /// The `krypton-uicc` configuration, each key checked against its range. Errors name the
    /// key.
    pub fn to_config(&self) -> anyhow::Result<UiccConfig> {
        let backend: BackendKind = self
            .backend
            .parse()
            .map_err(|e| anyhow::anyhow!("key `uicc.backend`: {e}"))?;
        check_range("uicc.baud", self.baud, ranges::UICC_BAUD)?;
        check_range("uicc.timeout_ms", self.timeout_ms, ranges::UICC_TIMEOUT_MS)?;
        if let Some(path) = &self.sim_file {
            anyhow::ensure!(
                path.is_absolute(),
                "key `uicc.sim_file`: `{}` must be an absolute path",
                path.display()
            );
        }
        anyhow::ensure!(
            backend != BackendKind::Soft || self.sim_file.is_some(),
            "key `uicc.sim_file`: backend `soft` needs the software SIM file"
        );
        if let Some(port) = &self.port {
            anyhow::ensure!(
                port.starts_with('/') && !port.chars().any(char::is_control),
                "key `uicc.port`: `{}` must be a device path such as /dev/ttyUSB2",
                port.escape_debug()
            );
        }
        Ok(UiccConfig {
            backend,
            sim_file: self.sim_file.clone(),
            port: self.port.clone(),
            baud_rate: u32::try_from(self.baud).unwrap_or(u32::MAX),
            command_timeout: Duration::from_millis(self.timeout_ms),
            ..UiccConfig::default()
        })
    }
}

/// `[[target]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The target's name, one of the component's (`target-info.name`).
    pub name: String,
    /// `requestParameters`.
    pub params: Option<toml::Table>,
}

fn check_range(key: &str, value: u64, range: RangeInclusive<u64>) -> anyhow::Result<()> {
    anyhow::ensure!(
        range.contains(&value),
        "key `{key}`: {value} is out of range; use {} to {}",
        range.start(),
        range.end()
    );
    Ok(())
}

impl GatewayConfig {
    /// Parse and check a configuration. Errors name the key and the reason (TOML syntax and
    /// type errors quote the offending line, key included).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: GatewayConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(endpoint) = &config.endpoint {
            Origin::parse(endpoint).context("key `endpoint`")?;
        }
        config.auth_mode()?;
        config.coverage_name()?;
        match (config.auth_mode()?, &config.uicc) {
            (AuthMode::Sim, Some(section)) => {
                section.to_config()?;
            }
            (AuthMode::Sim, None) => {}
            (AuthMode::Network, Some(_)) => {
                anyhow::bail!("key `uicc`: the [uicc] section is for mode = \"sim\"")
            }
            (AuthMode::Network, None) => anyhow::ensure!(
                config.coverage.is_none(),
                "key `coverage`: it picks the endpoint of mode = \"sim\""
            ),
        }
        check_range(
            "check_interval_secs",
            config.check_interval_secs,
            ranges::CHECK_INTERVAL_SECS,
        )?;
        check_range(
            "limits.memory_mib",
            config.limits.memory_mib,
            ranges::MEMORY_MIB,
        )?;
        check_range("limits.cpu_ms", config.limits.cpu_ms, ranges::CPU_MS)?;
        check_range(
            "limits.deadline_secs",
            config.limits.deadline_secs,
            ranges::DEADLINE_SECS,
        )?;
        check_range(
            "renewal.certificate_margin_days",
            config.renewal.certificate_margin_days,
            ranges::MARGIN_DAYS,
        )?;
        check_range(
            "backoff.base_secs",
            config.backoff.base_secs,
            ranges::BACKOFF_BASE_SECS,
        )?;
        check_range(
            "backoff.max_secs",
            config.backoff.max_secs,
            ranges::BACKOFF_MAX_SECS,
        )?;
        anyhow::ensure!(
            config.backoff.max_secs >= config.backoff.base_secs,
            "key `backoff.max_secs`: {} is less than backoff.base_secs ({})",
            config.backoff.max_secs,
            config.backoff.base_secs
        );
        anyhow::ensure!(
            !config.targets.is_empty(),
            "key `target`: list at least one [[target]]"
        );
        // The names are checked against the component's targets when the daemon starts
        // ([`Daemon::start`]): the component, not this host, knows them.
        for (i, t) in config.targets.iter().enumerate() {
            // One bundle per target: a second entry would provision the same bundle with other
            // parameters, each pass undoing the other.
            if let Some(first) = config.targets[..i].iter().position(|o| o.name == t.name) {
                anyhow::bail!(
                    "key `target[{i}].name`: `{}` is already listed as target[{first}]; list each target once",
                    t.name
                );
            }
        }
        for (i, url) in config.allowed_outbound_hosts.iter().flatten().enumerate() {
            Origin::parse(url)
                .map_err(|e| anyhow::anyhow!("key `allowed_outbound_hosts[{i}]`: {e:#}"))?;
        }
        if let Some(key) = &config.trusted_public_key {
            parse_public_key(key).context("key `trusted_public_key`")?;
        }
        config.check_registry()?;
        for (key, path) in [
            ("store", Some(&config.store)),
            ("state_dir", Some(&config.state_dir)),
            ("control_socket", config.control_socket.as_ref()),
        ] {
            if let Some(path) = path {
                anyhow::ensure!(
                    path.is_absolute(),
                    "key `{key}`: `{}` must be an absolute path",
                    path.display()
                );
            }
        }
        Ok(config)
    }

    /// Read and parse a configuration file: a regular file of at most
    /// [`files::MAX_CONFIG_BYTES`] bytes, UTF-8, owned by root or this user and writable by
    /// nobody else ([`files::read_trusted_text`]).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = files::read_trusted_text(path, files::MAX_CONFIG_BYTES, "configuration file")?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// The `oci://…` reference of a registry-fed component, if `component` is one.
    pub fn registry_reference(&self) -> Option<String> {
        let text = self.component.as_deref()?.to_str()?;
        text.starts_with("oci://").then(|| text.to_string())
    }

    /// The component file watched for changes: `component` unless it is a registry reference.
    fn component_file(&self) -> Option<&Path> {
        self.component
            .as_deref()
            .filter(|_| self.registry_reference().is_none())
    }

    /// An `oci://` component needs a trusted key (anyone who can push to the tag could
    /// otherwise replace the component) and a build with the `registry` feature; `[registry]`
    /// needs an `oci://` component. Errors name the key.
    fn check_registry(&self) -> anyhow::Result<()> {
        let Some(reference) = self.registry_reference() else {
            anyhow::ensure!(
                self.registry.is_none(),
                "key `registry`: the [registry] table is for component = \"oci://HOST/REPO:TAG\""
            );
            return Ok(());
        };
        #[cfg(feature = "registry")]
        return {
            crate::registry::Source::parse(&reference).context("key `component`")?;
            anyhow::ensure!(
                self.trusted_public_key.is_some(),
                "key `trusted_public_key`: a component from a registry must be signed; set the \
                 public key from `krypton-host keygen` (publish with --signing-key)"
            );
            self.registry.clone().unwrap_or_default().check()
        };
        #[cfg(not(feature = "registry"))]
        anyhow::bail!(
            "key `component`: `{reference}` needs a krypton-host built with the `registry` feature"
        )
    }

    /// `mode`: `network` or `sim`. Errors name the key.
    pub fn auth_mode(&self) -> anyhow::Result<AuthMode> {
        match self.mode.as_str() {
            "network" => Ok(AuthMode::Network),
            "sim" => Ok(AuthMode::Sim),
            other => anyhow::bail!(
                "key `mode`: `{}` is not a mode; use \"network\" or \"sim\"",
                other.escape_debug()
            ),
        }
    }

    /// `coverage`, checked to be a plain name (1-32 bytes of `[a-z0-9-]`; whether the
    /// component knows it is checked at start, [`GatewayConfig::endpoint`]); `None` when unset.
    /// Errors name the key.
    pub fn coverage_name(&self) -> anyhow::Result<Option<&str>> {
        match self.coverage.as_deref() {
            Some(name)
                if name.is_empty()
                    || name.len() > crate::facts::MAX_COVERAGE_BYTES
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
            {
                anyhow::bail!(
                    "key `coverage`: `{}` is not a coverage name (1-32 bytes of `[a-z0-9-]`)",
                    name.escape_debug()
                )
            }
            other => Ok(other),
        }
    }

    /// The endpoint this configuration uses: `endpoint`, else the default the component names
    /// for the mode and `coverage` ([`Facts::endpoint_for`]). Errors name the key: a coverage
    /// the component does not know.
    pub fn endpoint(&self, facts: &Facts) -> anyhow::Result<String> {
        facts
            .endpoint_for(
                self.auth_mode()?,
                self.coverage_name()?,
                self.endpoint.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("key `coverage`: {e}"))
    }

    /// The SIM access of this configuration: none in network mode; in SIM mode the `[uicc]`
    /// section's backend (autodetect without one). Errors name the key.
    pub fn uicc_access(&self) -> anyhow::Result<UiccAccess> {
        if self.auth_mode()? == AuthMode::Network {
            return Ok(UiccAccess::none());
        }
        let section = self.uicc.as_ref().map_or_else(
            || UiccSection::default().to_config(),
            UiccSection::to_config,
        )?;
        Ok(UiccAccess::new(section))
    }

    /// The sandbox limits the configuration asks for (ranges checked by [`Self::parse`], so no
    /// product overflows: 4096 MiB and 1 day + 60 s fit).
    fn sandbox_limits(&self) -> SandboxLimits {
        SandboxLimits {
            memory_bytes: usize::try_from(self.limits.memory_mib.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            cpu: Duration::from_millis(self.limits.cpu_ms),
            wall: Duration::from_secs(self.limits.deadline_secs)
                .saturating_add(ProvisionOptions::WALL_SLACK),
        }
    }
}

/// Turn off core dumps and `ptrace` attach by other processes of the same user for this
/// process (`prctl(2)`, `PR_SET_DUMPABLE` 0): a crash must not write keys and tokens held in
/// memory to a core file. Errors: the `prctl` call failed (errno).
pub fn disable_core_dumps() -> anyhow::Result<()> {
    use rustix::process::{DumpableBehavior, set_dumpable_behavior};
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| anyhow::anyhow!("prctl(PR_SET_DUMPABLE, 0): {}", std::io::Error::from(e)))
}

/// This process's `prctl(PR_GET_DUMPABLE)`: 0 when core dumps are off, 1 or 2 otherwise (-1
/// should the call fail).
pub fn dumpable() -> i32 {
    rustix::process::dumpable_behavior().map_or(-1, |b| b as i32)
}

/// Whether a control-socket peer may talk to the daemon: the same effective uid, or root
/// (credentials from `SO_PEERCRED`, `unix(7)`).
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid || peer_uid == 0
}

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
fn jitter_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// One target's health between passes.
#[derive(Debug, Default)]
struct Health {
    /// Consecutive failures.
    failures: u32,
    /// No attempt before this instant.
    retry_at: Option<Instant>,
    /// The last failure's text, to log a change of failure once.
    last_error: Option<String>,
}

/// A running daemon's parts, shared by its tasks.
pub struct Daemon {
    /// The configuration it runs with (overrides applied).
    pub config: GatewayConfig,
    /// The serving component and its swaps.
    pub lifecycle: Arc<Lifecycle>,
    store: SecretStore,
    /// The endpoint every pass calls: `endpoint`, else the first component's default for the
    /// mode and coverage (resolved once at start, as the outbound policy is; a swapped-in
    /// version keeps it, a restart asks again).
    endpoint: String,
    policy: OutboundPolicy,
    /// The SIM in SIM mode (opened on first use, kept for the daemon's life); none otherwise.
    uicc: UiccAccess,
    health: Mutex<HashMap<String, Health>>,
    /// Held so that passes never overlap, whoever calls [`Daemon::check_all`].
    pass: tokio::sync::Mutex<()>,
    /// Set when the daemon is stopping: a pass in progress starts no further target.
    stopping: std::sync::atomic::AtomicBool,
    listener: Mutex<Option<tokio::net::UnixListener>>,
    /// The registry an `oci://` component is followed from.
    #[cfg(feature = "registry")]
    follower: Option<Arc<crate::registry::follow::Follower>>,
    /// `<store>/.daemon.lock` and `<control_socket>.lock`, held for the daemon's life.
    _instance_locks: Vec<FileLock>,
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The lock file beside a path: `<path>.lock`.
fn lock_path_for(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn instance_lock(path: &Path, what: &str) -> anyhow::Result<FileLock> {
    FileLock::acquire(path, Duration::ZERO).map_err(|e| match e {
        LockError::Busy { holder, .. } => anyhow::anyhow!(
            "{what} is already used by another krypton-host daemon ({}; lock file {}): stop it first \
             (`systemctl stop krypton-host`), or give this one its own store and socket",
            holder
                .map(|p| format!("process {p}"))
                .unwrap_or_else(|| "pid unknown".into()),
            path.display()
        ),
        e => anyhow::anyhow!("{what}: {e}"),
    })
}

/// Create the control socket at `path` so that it is never reachable by others: bind inside a
/// fresh 0700 directory beside it, set 0600 there, then `rename(2)` it into place. The caller
/// holds `<path>.lock`, so a socket already at `path` is a dead daemon's and is replaced.
fn bind_control_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .context("key `control_socket`: needs a directory")?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => anyhow::bail!(
            "key `control_socket`: {} exists and is not a socket; remove it or choose another path",
            path.display()
        ),
        _ => {}
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let private = parent.join(format!(".{name}.bind-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("key `control_socket`: creating {}", private.display()))?;
    let result = (|| {
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
        let staged = private.join("s");
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        // Nobody else can reach `staged` (its directory is 0700): setting the mode here, before
        // the socket becomes visible at `path`, leaves no moment when it is open to others.
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        listener.set_nonblocking(true)?;
        anyhow::Ok(tokio::net::UnixListener::from_std(listener)?)
    })()
    .with_context(|| format!("key `control_socket`: binding {}", path.display()));
    let _ = std::fs::remove_dir_all(&private);
    result
}

impl Daemon {
    /// Check the configuration's resources and load the first component: the state
    /// directory (created 0700), the store (one daemon per store), the control socket (one
    /// daemon per socket), the outbound policy (the endpoint plus `allowed_outbound_hosts`),
    /// and the component. Errors name the key at fault, and for a second daemon the first
    /// one's pid.
    pub async fn start(config: GatewayConfig) -> anyhow::Result<Arc<Self>> {
        files::private_dir(&config.state_dir, "key `state_dir`")?;
        let store = SecretStore::open(&config.store).context("key `store`")?;
        let mut locks = vec![instance_lock(
            &store.dir().join(".daemon.lock"),
            &format!("key `store`: the store {}", store.dir().display()),
        )?];
        if let Some(path) = &config.control_socket {
            // A missing socket directory is created 0700 (systemd's RuntimeDirectory= does the
            // same); an existing one is used as it is.
            if let Some(parent) = path.parent().filter(|p| !p.exists()) {
                files::private_dir(parent, "key `control_socket`")?;
            }
            locks.push(instance_lock(
                &lock_path_for(path),
                &format!("key `control_socket`: the socket {}", path.display()),
            )?);
        }
        let uicc = config.uicc_access()?;
        let mut allowed = Vec::new();
        for (i, url) in config.allowed_outbound_hosts.iter().flatten().enumerate() {
            allowed.push(
                Origin::parse(url).with_context(|| format!("key `allowed_outbound_hosts[{i}]`"))?,
            );
        }
        // The CA file is checked now, before the component is compiled; the policy is made
        // once the component has named the default endpoint (below).
        OutboundPolicy::with_ca_file(allowed.clone(), config.ca_file.as_deref())
            .context("key `ca_file`")?;
        // The compile cache lives in the daemon's own private state directory, never in a
        // directory named by the environment: a planted entry there would be native code run
        // unverified, which would defeat the signature check of the component.
        let runtime = Arc::new(Runtime::with_options(
            config.sandbox_limits(),
            CachePolicy::Directory(config.state_dir.join("cache")),
        )?);
        let key = config
            .trusted_public_key
            .as_deref()
            .map(parse_public_key)
            .transpose()?;
        let floor = VersionFloor::new(&config.state_dir, config.allow_downgrade);
        // A registry-fed component is pulled (or taken from state_dir) into a file first; from
        // then on it goes through the same file path as any component.
        #[cfg(feature = "registry")]
        let follower = match (config.registry_reference(), key) {
            (Some(reference), Some(key)) => Some(Arc::new(
                crate::registry::follow::Follower::prepare(
                    crate::registry::Source::parse(&reference)?,
                    &config.registry.clone().unwrap_or_default(),
                    &config.state_dir,
                    key,
                    floor.clone(),
                )
                .await?,
            )),
            _ => None,
        };
        #[cfg(feature = "registry")]
        let component_file = match &follower {
            Some(f) => Some(f.component_path()),
            None => config.component.clone(),
        };
        #[cfg(not(feature = "registry"))]
        let component_file = config.component.clone();
        let policy_for_components = ComponentPolicy {
            trusted_key: key,
            floor: Some(floor),
        };
        let lifecycle = Arc::new(
            Lifecycle::start_with(runtime, component_file, policy_for_components)
                .await
                .context(if config.component.is_some() {
                    "key `component`"
                } else {
                    "the built-in component"
                })?,
        );
        #[cfg(feature = "registry")]
        if let Some(f) = &follower {
            f.started(&lifecycle).context("key `state_dir`")?;
        }
        // The component knows the targets and the default endpoints: every configured name
        // must be one of them, and the endpoint its mode's unless one is configured.
        let served = lifecycle.current();
        let endpoint = config.endpoint(&served.facts)?;
        allowed.insert(0, Origin::parse(&endpoint).context("key `endpoint`")?);
        let policy = OutboundPolicy::with_ca_file(allowed, config.ca_file.as_deref())
            .context("key `ca_file`")?;
        for (i, t) in config.targets.iter().enumerate() {
            served
                .targets
                .find(&t.name)
                .map_err(|e| anyhow::anyhow!("key `target[{i}].name`: {e}"))?;
        }
        // Last, so that a refused start leaves no socket behind.
        let listener = config
            .control_socket
            .as_deref()
            .map(bind_control_socket)
            .transpose()?;
        Ok(Arc::new(Daemon {
            config,
            lifecycle,
            store,
            endpoint,
            policy,
            uicc,
            health: Mutex::new(HashMap::new()),
            pass: tokio::sync::Mutex::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            listener: Mutex::new(listener),
            #[cfg(feature = "registry")]
            follower,
            _instance_locks: locks,
        }))
    }

    /// The daemon's state directory (`state_dir`, 0700): for state that must survive
    /// restarts, such as the highest accepted component version and the compile cache.
    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }

    /// The endpoint every pass calls (see [`GatewayConfig::endpoint`]).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Where the component may connect: the endpoint plus `allowed_outbound_hosts`.
    pub fn outbound_policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    fn request(&self, target: Target, params: Option<String>, force: bool) -> ProvisionRequest {
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
    fn backing_off(&self, name: &str, now: Instant) -> bool {
        self.health
            .lock()
            .expect("health lock")
            .get(name)
            .and_then(|h| h.retry_at)
            .is_some_and(|at| now < at)
    }

    /// Whether `name`'s last attempt failed.
    fn failing(&self, name: &str) -> bool {
        self.health
            .lock()
            .expect("health lock")
            .get(name)
            .is_some_and(|h| h.failures > 0)
    }

    /// Record a target's outcome; logs only when its state changes.
    fn record(&self, name: &str, outcome: Result<(), String>) {
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

    /// Answer one control-socket connection: `reload` or `status`, one line each, from a peer
    /// with the daemon's uid or root only.
    async fn control(self: &Arc<Self>, stream: tokio::net::UnixStream) {
        let own = rustix::process::geteuid().as_raw();
        match stream.peer_cred() {
            Ok(cred) if peer_allowed(cred.uid(), own) => {}
            Ok(cred) => {
                tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), "control socket: refused a peer with another uid");
                let mut stream = stream;
                // Take (and ignore) its request line first, so that it reads the answer.
                let mut ignored = Vec::new();
                let mut reader = tokio::io::BufReader::new((&mut stream).take(MAX_CONTROL_LINE));
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    reader.read_until(b'\n', &mut ignored),
                )
                .await;
                let _ = stream
                    .write_all(b"error permission denied: only the daemon's user or root may use this socket\n")
                    .await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket: no peer credentials; refused");
                return;
            }
        }
        let (read, mut write) = stream.into_split();
        let mut bytes = Vec::new();
        let mut reader = tokio::io::BufReader::new(read.take(MAX_CONTROL_LINE + 1));
        if tokio::time::timeout(Duration::from_secs(5), reader.read_until(b'\n', &mut bytes))
            .await
            .is_err()
        {
            return;
        }
        let answer = if bytes.len() as u64 > MAX_CONTROL_LINE {
            format!("error request longer than {MAX_CONTROL_LINE} bytes; use reload or status\n")
        } else {
            match String::from_utf8_lossy(&bytes).trim() {
                "reload" => match self.reload_and_log("control socket").await {
                    Ok(ReloadOutcome::Swapped(d)) => format!("ok swapped {d}\n"),
                    Ok(ReloadOutcome::Unchanged) => {
                        format!("ok unchanged {}\n", self.lifecycle.current().digest)
                    }
                    Err(e) => format!("error {}\n", format!("{e:#}").replace('\n', " ")),
                },
                "status" => {
                    let c = self.lifecycle.current();
                    #[cfg(feature = "registry")]
                    let registry = self
                        .follower
                        .as_ref()
                        .map(|f| f.status_words())
                        .unwrap_or_default();
                    #[cfg(not(feature = "registry"))]
                    let registry = "";
                    format!(
                        "ok {} {} signed={} dumpable={}{registry}\n",
                        c.digest,
                        c.version.escape_debug(),
                        c.signed,
                        dumpable()
                    )
                }
                other => format!(
                    "error unknown command `{}`; use reload or status\n",
                    other
                        .chars()
                        .take(40)
                        .filter(|c| !c.is_control())
                        .collect::<String>()
                ),
            }
        };
        let _ = write.write_all(answer.as_bytes()).await;
    }

    /// Reload the component after `cause` (SIGHUP, a file change) and log the outcome in one
    /// line: swapped (with the digest), unchanged, or refused (the current one keeps serving).
    async fn reload_and_log(&self, cause: &str) -> anyhow::Result<ReloadOutcome> {
        let outcome = self.lifecycle.reload().await;
        match &outcome {
            Ok(ReloadOutcome::Swapped(digest)) => {
                tracing::info!(%cause, %digest, "reload: component swapped in")
            }
            Ok(ReloadOutcome::Unchanged) => tracing::info!(
                %cause,
                digest = %self.lifecycle.current().digest,
                "reload: component unchanged; still serving"
            ),
            Err(e) => tracing::warn!(
                %cause,
                error = %format!("{e:#}"),
                "reload: refused; the current component keeps serving"
            ),
        }
        outcome
    }

    /// Run until `shutdown` turns true.
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let listener = self.listener.lock().expect("listener lock").take();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        // Passes run one after the other on this task; a tick missed during a slow pass is
        // skipped, not queued.
        // On shutdown the call in progress is let finish (an AWS IoT certificate minted but not
        // yet stored would be lost), up to SHUTDOWN_GRACE, and no further target is started.
        let mut passes = {
            let me = self.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let mut checks =
                    tokio::time::interval(Duration::from_secs(me.config.check_interval_secs));
                checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = checks.tick() => { me.check_all().await; }
                    }
                }
            })
        };
        #[cfg(feature = "registry")]
        let following = self
            .follower
            .clone()
            .map(|f| tokio::spawn(f.follow(self.lifecycle.clone(), shutdown.clone())));
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut stamp = self.config.component_file().and_then(file_stamp);
        tracing::info!(targets = self.config.targets.len(), "daemon running");
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
                    break;
                }
                _ = watch.tick() => {
                    if let Some(path) = self.config.component_file() {
                        let now = file_stamp(path);
                        if now.is_some() && now != stamp {
                            stamp = now;
                            tracing::info!(file = %path.display(), "component file changed");
                            let _ = self.reload_and_log("file change").await;
                        }
                    }
                }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the component");
                    let _ = self.reload_and_log("SIGHUP").await;
                }
                accepted = async {
                    match &listener {
                        Some(l) => l.accept().await.map(|(s, _)| s),
                        None => std::future::pending().await,
                    }
                } => {
                    if let Ok(stream) = accepted {
                        let me = self.clone();
                        tokio::spawn(async move { me.control(stream).await });
                    }
                }
            }
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut passes)
            .await
            .is_err()
        {
            tracing::warn!(
                "a pass was still running after {} s; stopping it",
                SHUTDOWN_GRACE.as_secs()
            );
            passes.abort();
        }
        #[cfg(feature = "registry")]
        if let Some(task) = following {
            task.abort();
        }
        if let Some(path) = &self.config.control_socket {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!("daemon stopped");
        Ok(())
    }
}

/// `krypton-host reload`: ask a running daemon to reload; returns its one-line answer.
pub async fn send_control(socket: &Path, command: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| {
            format!(
                "connecting to {} (is `krypton-host run` running?)",
                socket.display()
            )
        })?;
    // A daemon that refuses this peer may answer and close before the request is written:
    // its answer is what counts.
    let written = stream.write_all(format!("{command}\n").as_bytes()).await;
    let mut answer = Vec::new();
    let read = tokio::io::BufReader::new(stream.take(64 * 1024))
        .read_until(b'\n', &mut answer)
        .await;
    if answer.is_empty() {
        written?;
        read?;
        anyhow::bail!(
            "{} closed the connection without an answer",
            socket.display()
        );
    }
    Ok(String::from_utf8_lossy(&answer).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        format!("{:#}", GatewayConfig::parse(text).unwrap_err())
    }

    /// The built-in component's default endpoints, checked as at the daemon's start.
    fn builtin_facts() -> Facts {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let runtime =
                Runtime::with_options(SandboxLimits::default(), CachePolicy::Off).unwrap();
            let pre = runtime.load(crate::runtime::DEFAULT_COMPONENT).unwrap();
            let targets = crate::lifecycle::list_targets(&runtime, &pre)
                .await
                .unwrap();
            crate::lifecycle::component_facts(&runtime, &pre, &targets)
                .await
                .unwrap()
        })
    }

    #[test]
    fn sim_mode_takes_a_uicc_section_checked_key_by_key() {
        let target = "\n[[target]]\nname = \"arc\"\n";
        let config = GatewayConfig::parse(&format!(
            "mode = \"sim\"\ncoverage = \"japan\"\n[uicc]\nbackend = \"soft\"\nsim_file = \"/etc/krypton-host/sim.json\"\nbaud = 115200\ntimeout_ms = 2000\n{target}"
        ))
        .unwrap();
        assert_eq!(config.auth_mode().unwrap(), AuthMode::Sim);
        // The endpoints are the component's: the host names none of its own.
        let facts = builtin_facts();
        assert_eq!(config.endpoint(&facts).unwrap(), "https://api.soracom.io");
        let uicc = config.uicc.as_ref().unwrap().to_config().unwrap();
        assert_eq!(uicc.backend, BackendKind::Soft);
        assert_eq!(uicc.baud_rate, 115_200);
        assert_eq!(uicc.command_timeout, Duration::from_millis(2000));
        assert!(config.uicc_access().unwrap().is_configured());

        // SIM mode without [uicc]: autodetect, the global API; an explicit endpoint wins.
        let config = GatewayConfig::parse(&format!("mode = \"sim\"{target}")).unwrap();
        assert_eq!(config.endpoint(&facts).unwrap(), "https://g.api.soracom.io");
        let config = GatewayConfig::parse(&format!(
            "mode = \"sim\"\nendpoint = \"https://127.0.0.1:9\"{target}"
        ))
        .unwrap();
        assert_eq!(config.endpoint(&facts).unwrap(), "https://127.0.0.1:9");
        // Network mode is unchanged, and has no SIM access.
        let config = GatewayConfig::parse(target).unwrap();
        assert_eq!(
            config.endpoint(&facts).unwrap(),
            "https://krypton.soracom.io:8036"
        );
        assert!(!config.uicc_access().unwrap().is_configured());
        // A coverage the component does not know is refused when the endpoint is resolved,
        // naming the key (the name's spelling is checked when the file is parsed).
        let config =
            GatewayConfig::parse(&format!("mode = \"sim\"\ncoverage = \"mars\"{target}")).unwrap();
        assert_eq!(
            format!("{:#}", config.endpoint(&facts).unwrap_err()),
            "key `coverage`: unknown coverage `mars`; the component knows: global, japan"
        );

        for (text, key) in [
            ("mode = \"satellite\"", "key `mode`"),
            ("mode = \"sim\"\ncoverage = \"Mars!\"", "key `coverage`"),
            ("coverage = \"japan\"", "key `coverage`"),
            ("[uicc]\nbackend = \"soft\"", "key `uicc`"),
            (
                "mode = \"sim\"\n[uicc]\nbackend = \"usb\"",
                "key `uicc.backend`",
            ),
            ("mode = \"sim\"\n[uicc]\nbaud = 9", "key `uicc.baud`"),
            (
                "mode = \"sim\"\n[uicc]\ntimeout_ms = 0",
                "key `uicc.timeout_ms`",
            ),
            (
                "mode = \"sim\"\n[uicc]\nbackend = \"soft\"",
                "key `uicc.sim_file`",
            ),
            (
                "mode = \"sim\"\n[uicc]\nsim_file = \"sim.json\"",
                "key `uicc.sim_file`",
            ),
            (
                "mode = \"sim\"\n[uicc]\nport = \"ttyUSB2\"",
                "key `uicc.port`",
            ),
            ("mode = \"sim\"\n[uicc]\nreader = \"x\"", "reader"),
            ("mode = \"sim\"\n[uicc]\nbaud = 4000001", "key `uicc.baud`"),
            ("mode = \"sim\"\n[uicc]\nbaud = -1", "baud = -1"),
            (
                "mode = \"sim\"\n[uicc]\ntimeout_ms = 600001",
                "key `uicc.timeout_ms`",
            ),
            (
                "mode = \"sim\"\n[uicc]\ntimeout_ms = 9223372036854775807",
                "key `uicc.timeout_ms`",
            ),
        ] {
            let err = parse_err(&format!("{text}{target}"));
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn the_renewal_opt_in_has_a_generic_name_and_keeps_its_old_one() {
        let parse = |key: &str| {
            GatewayConfig::parse(&format!(
                "[renewal]\n{key} = true\n[[target]]\nname = 'arc'"
            ))
        };
        assert!(
            parse("reprovision_minting")
                .unwrap()
                .renewal
                .reprovision_minting
        );
        assert!(
            parse("aws_iot_reprovision")
                .unwrap()
                .renewal
                .reprovision_minting
        );
        assert!(
            !GatewayConfig::parse("[[target]]\nname = 'arc'")
                .unwrap()
                .renewal
                .reprovision_minting
        );
    }

    #[test]
    fn waits_double_with_jitter_up_to_the_cap_and_never_overflow() {
        let base = Duration::from_secs(60);
        let max = Duration::from_secs(3600);
        // Lowest and highest draw for each failure count: [full/2, full], full = 60 s * 2^(n-1).
        for (failures, full) in [
            (1, 60),
            (2, 120),
            (3, 240),
            (6, 1920),
            (7, 3600),
            (50, 3600),
        ] {
            let full = Duration::from_secs(full);
            assert_eq!(
                failure_backoff(base, max, failures, 0),
                full / 2,
                "{failures}"
            );
            let spread = (full - full / 2).as_millis() as u64;
            assert_eq!(
                failure_backoff(base, max, failures, spread),
                full,
                "{failures}"
            );
            assert_eq!(failure_backoff(base, max, failures, u64::MAX), {
                full / 2 + Duration::from_millis(u64::MAX % (spread + 1))
            });
        }
        assert_eq!(failure_backoff(base, max, u32::MAX, 0), max / 2);
        assert_eq!(failure_backoff(base, max, 0, 0), base / 2);
        let huge = Duration::from_secs(u64::MAX / 2);
        assert_eq!(
            failure_backoff(huge, Duration::MAX, 3, 0),
            Duration::MAX / 2
        );
        // Two draws differ (the jitter is random).
        let draws: std::collections::HashSet<u64> = (0..16).map(|_| jitter_seed()).collect();
        assert!(draws.len() > 1);
    }

    #[test]
    fn only_the_same_uid_or_root_may_use_the_socket() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(65534, 1000));
        assert!(!peer_allowed(1000, 0));
    }
}
