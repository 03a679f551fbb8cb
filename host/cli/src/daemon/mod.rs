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
//! One daemon per state directory, per store and per control socket: the daemon holds
//! `<state_dir>/.daemon.lock`, `<store>/.daemon.lock` and `<control_socket>.lock` (`flock(2)`)
//! for its whole life; a second one is refused (exit 3) with the first one's pid. The control socket is created inside a private (0700) directory and moved
//! into place already 0600, peers are checked with `SO_PEERCRED` (same uid or root, see
//! `unix(7)`), and request lines are bounded to [`MAX_CONTROL_LINE`] bytes. A new component
//! arrives by replacing the file (polled every second), by `SIGHUP`, or by `krypton-host
//! reload` over the control socket.

//!
//! The daemon's rooms: [`config`] (the TOML file, each section checked by one function with its
//! documented range), [`renewal`] (one pass over the targets, the backoff), [`control`] (the
//! control socket), and this file (start, the run loop, signals, hot swap).

pub mod config;
mod control;
mod renewal;

pub use config::{
    BackoffConfig, GatewayConfig, LimitsConfig, RenewalConfig, TargetConfig, UiccSection, ranges,
};
use control::bind_control_socket;
pub use control::{MAX_CONTROL_LINE, peer_allowed, send_control};
use renewal::Health;
pub use renewal::failure_backoff;

use anyhow::Context as _;
use krypton_host::capability::http::{Origin, OutboundPolicy};
use krypton_host::capability::store::SecretStore;
use krypton_host::capability::uicc::UiccAccess;
use krypton_host::component::ComponentPolicy;
use krypton_host::component::lifecycle::{Lifecycle, ReloadOutcome};
use krypton_host::engine::{CachePolicy, Runtime};
use krypton_host::files::{self, FileLock, LockError};
use krypton_host::signing::VersionFloor;
use krypton_host::signing::parse_public_key;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long a daemon pass waits for the store's writer lock (held by a CLI `provision`)
/// before it skips this pass.
pub const PASS_LOCK_WAIT: Duration = Duration::from_secs(10);

/// How long a stopping daemon lets a pass in progress finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Turn off core dumps and `ptrace` attach by other processes of the same user for this
/// process (`prctl(2)`, `PR_SET_DUMPABLE` 0), and set its core file size limit to 0
/// (`setrlimit(2)`, `RLIMIT_CORE`; inherited by any child): a crash must not write keys, tokens,
/// CK or a software SIM's K and OPc held in memory to a core file. `main` calls it first, for
/// every command. Errors: either call failed (errno).
pub fn disable_core_dumps() -> anyhow::Result<()> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| anyhow::anyhow!("prctl(PR_SET_DUMPABLE, 0): {}", std::io::Error::from(e)))?;
    let none = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    setrlimit(Resource::Core, none)
        .map_err(|e| anyhow::anyhow!("setrlimit(RLIMIT_CORE, 0): {}", std::io::Error::from(e)))
}

/// This process's core file size limit (`getrlimit(2)`, `RLIMIT_CORE`, the soft limit),
/// bytes; `None` for unlimited.
pub fn core_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Core).current
}

/// This process's `prctl(PR_GET_DUMPABLE)`: 0 when core dumps are off, 1 or 2 otherwise (-1
/// should the call fail).
pub fn dumpable() -> i32 {
    rustix::process::dumpable_behavior().map_or(-1, |b| b as i32)
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
    /// `<store>/.daemon.lock`, `<control_socket>.lock` and `<state_dir>/.daemon.lock`, held for
    /// the daemon's life.
    _instance_locks: Vec<FileLock>,
}

pub(super) fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The lock file beside a path: `<path>.lock`.
pub(super) fn lock_path_for(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

pub(super) fn instance_lock(path: &Path, what: &str) -> anyhow::Result<FileLock> {
    FileLock::acquire(path, Duration::ZERO).map_err(|e| match e {
        LockError::Busy { holder, .. } => anyhow::anyhow!(
            "{what} is already used by another krypton-host daemon ({}; lock file {}): stop it first \
             (`systemctl stop krypton-host`), or give this one its own store, socket and state_dir",
            holder
                .map(|p| format!("process {p}"))
                .unwrap_or_else(|| "pid unknown".into()),
            path.display()
        ),
        e => anyhow::anyhow!("{what}: {e}"),
    })
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
        // One daemon per state directory: two daemons with their own stores and sockets would
        // otherwise rewrite each other's registry state, version floor and compile cache.
        locks.push(instance_lock(
            &config.state_dir.join(".daemon.lock"),
            &format!(
                "key `state_dir`: the state directory {}",
                config.state_dir.display()
            ),
        )?);
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

    /// Reload the component after `cause` (SIGHUP, a file change) and log the outcome in one
    /// line: swapped (with the digest), unchanged, or refused (the current one keeps serving).
    pub(super) async fn reload_and_log(&self, cause: &str) -> anyhow::Result<ReloadOutcome> {
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

#[cfg(test)]
mod tests {
    use super::renewal::jitter_seed;
    use super::*;
    use krypton_host::bindings::AuthMode;
    use krypton_host::capability::uicc::BackendKind;
    use krypton_host::component::facts::Facts;
    use krypton_host::sandbox::SandboxLimits;

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
            let pre = runtime.load(krypton_host::DEFAULT_COMPONENT).unwrap();
            let targets = krypton_host::component::list_targets(&runtime, &pre)
                .await
                .unwrap();
            krypton_host::component::component_facts(&runtime, &pre, &targets)
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
