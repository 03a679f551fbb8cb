//! The daemon's configuration: one TOML file (see `gateway.example.toml`). Every key is
//! checked at start against its documented range ([`ranges`]), and an error names the key.

use anyhow::Context as _;
use krypton_host::bindings::AuthMode;
use krypton_host::capability::http::Origin;
use krypton_host::capability::uicc::{UiccAccess, UiccConfig, UiccSettings};
use krypton_host::component::facts::Facts;
use krypton_host::files::{self};
use krypton_host::options::ProvisionOptions;
use krypton_host::sandbox::SandboxLimits;
use krypton_host::signing::parse_public_key;
use serde::Deserialize;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The documented range of each numeric key (inclusive), checked at start.
pub mod ranges {
    use std::ops::RangeInclusive;
    /// `check_interval_secs`: 1 s to 1 day.
    pub const CHECK_INTERVAL_SECS: RangeInclusive<u64> = 1..=86_400;
    /// `limits.memory_mib`: the sandbox's [`krypton_host::sandbox::MEMORY_MIB_RANGE`].
    pub const MEMORY_MIB: RangeInclusive<u64> = krypton_host::sandbox::MEMORY_MIB_RANGE;
    /// `limits.cpu_ms`: the sandbox's [`krypton_host::sandbox::CPU_MS_RANGE`].
    pub const CPU_MS: RangeInclusive<u64> = krypton_host::sandbox::CPU_MS_RANGE;
    /// `limits.deadline_secs`: the run options' [`krypton_host::options::DEADLINE_SECS_RANGE`]
    /// (`--deadline-secs`).
    pub const DEADLINE_SECS: RangeInclusive<u64> = krypton_host::options::DEADLINE_SECS_RANGE;
    /// `renewal.certificate_margin_days`: 0 to 10 years.
    pub const MARGIN_DAYS: RangeInclusive<u64> = 0..=3_650;
    /// `backoff.base_secs`: 1 s to 1 day.
    pub const BACKOFF_BASE_SECS: RangeInclusive<u64> = 1..=86_400;
    /// `backoff.max_secs`: 1 s to 7 days, and at least `backoff.base_secs`.
    pub const BACKOFF_MAX_SECS: RangeInclusive<u64> = 1..=604_800;
    /// `uicc.baud`: the capability's [`krypton_host::capability::uicc::BAUD_RANGE`].
    pub const UICC_BAUD: RangeInclusive<u64> = krypton_host::capability::uicc::BAUD_RANGE;
    /// `uicc.timeout_ms`: the capability's [`krypton_host::capability::uicc::TIMEOUT_MS_RANGE`].
    pub const UICC_TIMEOUT_MS: RangeInclusive<u64> =
        krypton_host::capability::uicc::TIMEOUT_MS_RANGE;
}

pub(super) fn default_store() -> PathBuf {
    "/var/lib/krypton-host/store".into()
}
pub(super) fn default_state_dir() -> PathBuf {
    "/var/lib/krypton-host/state".into()
}
pub(super) fn default_interval() -> u64 {
    // Checks are local (status, and reuse decisions inside the component) unless something is
    // due, so they are cheap; five minutes keeps hour-long Cognito credentials fresh.
    300
}
pub(super) fn default_mode() -> String {
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
    /// binding its digest and version (see [`krypton_host::signing`]). A precompiled component
    /// always needs it.
    pub trusted_public_key: Option<String>,
    /// Let a component file with a lower version than the highest accepted one (kept in
    /// `state_dir`) serve, or a signed one with other bytes than the accepted one of the same
    /// version. Off by default: both are refused as a replay.
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
    /// The `krypton-uicc` configuration: the section's keys checked by the capability's one
    /// check ([`UiccSettings::check`], the flags' too), and the SIM file an absolute path (a
    /// daemon's working directory is `/`). Errors name the key.
    pub fn to_config(&self) -> anyhow::Result<UiccConfig> {
        if let Some(path) = &self.sim_file {
            anyhow::ensure!(
                path.is_absolute(),
                "key `uicc.sim_file`: `{}` must be an absolute path",
                path.display()
            );
        }
        UiccSettings {
            backend: Some(self.backend.clone()),
            sim_file: self.sim_file.clone(),
            port: self.port.clone(),
            baud: Some(self.baud),
            timeout_ms: Some(self.timeout_ms),
        }
        .check()
        .map_err(|e| anyhow::anyhow!("key `uicc.{}`: {}", e.setting, e.reason))
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

pub(super) fn check_range(key: &str, value: u64, range: RangeInclusive<u64>) -> anyhow::Result<()> {
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
    pub(super) fn component_file(&self) -> Option<&Path> {
        self.component
            .as_deref()
            .filter(|_| self.registry_reference().is_none())
    }

    /// An `oci://` component needs a trusted key (anyone who can push to the tag could
    /// otherwise replace the component) and a build with the `registry` feature; `[registry]`
    /// needs an `oci://` component. Errors name the key.
    pub(super) fn check_registry(&self) -> anyhow::Result<()> {
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
                    || name.len() > krypton_host::component::facts::MAX_COVERAGE_BYTES
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
    pub(super) fn sandbox_limits(&self) -> SandboxLimits {
        SandboxLimits {
            memory_bytes: usize::try_from(self.limits.memory_mib.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            cpu: Duration::from_millis(self.limits.cpu_ms),
            wall: Duration::from_secs(self.limits.deadline_secs)
                .saturating_add(ProvisionOptions::WALL_SLACK),
        }
    }
}
