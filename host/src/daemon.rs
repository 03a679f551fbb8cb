//! `krypton-host run`: keep targets provisioned, hot-swap the component, answer a control
//! socket. Configuration is one TOML file (see `gateway.example.toml`); every key is checked
//! at start and an error names the key.
//!
//! The loop: every `check_interval_secs`, each configured target is checked through the
//! component's `status`; it is provisioned when nothing is stored, when the certificate's
//! `notAfter` is within `renewal.certificate_margin_days` (for `aws-iot` only with
//! `renewal.aws_iot_reprovision = true`, since every call mints a new certificate), and
//! otherwise left to the component's own reuse rules (Cognito credentials are refreshed five
//! minutes before expiry). A new component arrives by replacing the file (polled every second),
//! by `SIGHUP`, or by `krypton-host reload` over the control socket (mode 0600).

use crate::http::{OutboundPolicy, host_port};
use crate::lifecycle::{Lifecycle, ReloadOutcome, parse_public_key};
use crate::output;
use crate::runtime::{
    AuthMode, HttpTimeouts, ProvisionRequest, RetryPolicy, Runtime, SandboxLimits, Target,
};
use crate::store::SecretStore;
use anyhow::Context as _;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

fn default_endpoint() -> String {
    "https://krypton.soracom.io:8036".into()
}
fn default_store() -> PathBuf {
    "/var/lib/krypton-host/store".into()
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
    /// Component file; the built-in component when absent (then it cannot be hot-swapped).
    pub component: Option<PathBuf>,
    #[serde(default = "default_store")]
    pub store: PathBuf,
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// `network` (the only mode implemented).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Extra CA certificates (PEM) to trust for the endpoint.
    pub ca_file: Option<PathBuf>,
    /// Where the component may connect, in Spin's `allowed_outbound_hosts` form
    /// (`https://host:port`); defaults to the endpoint alone.
    pub allowed_outbound_hosts: Option<Vec<String>>,
    /// Seconds between renewal checks.
    #[serde(default = "default_interval")]
    pub check_interval_secs: u64,
    /// Unix socket for `krypton-host reload` (created 0600).
    pub control_socket: Option<PathBuf>,
    /// ed25519 public key (base64 or hex); when set, a component needs a valid `.sig`.
    pub trusted_public_key: Option<String>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub renewal: RenewalConfig,
    /// Targets to keep provisioned.
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,
}

/// `[limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub memory_mib: u64,
    pub cpu_ms: u64,
    pub deadline_secs: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_mib: 64,
            cpu_ms: 10_000,
            deadline_secs: 120,
        }
    }
}

/// `[renewal]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenewalConfig {
    pub certificate_margin_days: u64,
    pub aws_iot_reprovision: bool,
}

impl Default for RenewalConfig {
    fn default() -> Self {
        RenewalConfig {
            certificate_margin_days: 30,
            aws_iot_reprovision: false,
        }
    }
}

/// `[[target]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    /// `requestParameters`.
    pub params: Option<toml::Table>,
}

impl GatewayConfig {
    /// Parse and check a configuration. Errors name the key and the reason.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: GatewayConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        host_port(&config.endpoint).context("key `endpoint`")?;
        anyhow::ensure!(
            config.mode == "network",
            "key `mode`: only `network` is implemented"
        );
        anyhow::ensure!(
            config.check_interval_secs > 0,
            "key `check_interval_secs`: must be at least 1"
        );
        anyhow::ensure!(
            config.limits.memory_mib >= 8,
            "key `limits.memory_mib`: must be at least 8"
        );
        anyhow::ensure!(
            config.limits.cpu_ms > 0,
            "key `limits.cpu_ms`: must be at least 1"
        );
        anyhow::ensure!(
            config.limits.deadline_secs > 0,
            "key `limits.deadline_secs`: must be at least 1"
        );
        anyhow::ensure!(
            !config.targets.is_empty(),
            "key `target`: list at least one [[target]]"
        );
        for (i, t) in config.targets.iter().enumerate() {
            output::parse_target(&t.name)
                .map_err(|e| anyhow::anyhow!("key `target[{i}].name`: {e}"))?;
        }
        for (i, url) in config.allowed_outbound_hosts.iter().flatten().enumerate() {
            host_port(url)
                .map_err(|e| anyhow::anyhow!("key `allowed_outbound_hosts[{i}]`: {e:#}"))?;
        }
        if let Some(key) = &config.trusted_public_key {
            parse_public_key(key).context("key `trusted_public_key`")?;
        }
        Ok(config)
    }

    /// Read and parse a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }
}

/// A running daemon's parts, shared by its tasks.
pub struct Daemon {
    pub config: GatewayConfig,
    pub lifecycle: Arc<Lifecycle>,
    store: SecretStore,
    policy: OutboundPolicy,
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Daemon {
    /// Check the configuration's resources and load the first component.
    pub async fn start(config: GatewayConfig) -> anyhow::Result<Arc<Self>> {
        let limits = SandboxLimits {
            memory_bytes: (config.limits.memory_mib * 1024 * 1024) as usize,
            cpu: Duration::from_millis(config.limits.cpu_ms),
            wall: Duration::from_secs(u64::from(config.limits.deadline_secs) + 60),
        };
        let runtime = Arc::new(Runtime::with_limits(limits)?);
        let key = config
            .trusted_public_key
            .as_deref()
            .map(parse_public_key)
            .transpose()?;
        let lifecycle = Arc::new(Lifecycle::start(runtime, config.component.clone(), key).await?);
        let store = SecretStore::open(&config.store).context("key `store`")?;
        let policy = OutboundPolicy::with_ca_file(
            vec![crate::http::Origin::parse(&config.endpoint)?],
            config.ca_file.as_deref(),
        )
        .context("key `ca_file`")?;
        Ok(Arc::new(Daemon {
            config,
            lifecycle,
            store,
            policy,
        }))
    }

    fn request(&self, target: Target, params: Option<String>, force: bool) -> ProvisionRequest {
        ProvisionRequest {
            target,
            mode: AuthMode::Network,
            endpoint: self.config.endpoint.clone(),
            request_parameters: params,
            force,
            deadline_ms: self.config.limits.deadline_secs.saturating_mul(1000),
            poll_interval_ms: 1000,
            timeouts: HttpTimeouts {
                connect_ms: 10_000,
                first_byte_ms: 30_000,
                between_bytes_ms: 30_000,
            },
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay_ms: 500,
                max_delay_ms: 8_000,
            },
        }
    }

    /// One renewal pass over every configured target; returns how many were provisioned.
    pub async fn check_all(&self) -> usize {
        let mut provisioned = 0;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let margin = (self.config.renewal.certificate_margin_days * 86_400) as i64;
        for t in &self.config.targets {
            let Ok(target) = output::parse_target(&t.name) else {
                continue;
            };
            let params = t
                .params
                .as_ref()
                .map(|p| serde_json::to_string(p).unwrap_or_else(|_| "{}".into()));
            let force = match self.lifecycle.status(self.store.clone(), target).await {
                Ok(Ok(Some(report))) => {
                    let due = report
                        .certificate
                        .as_ref()
                        .is_some_and(|c| c.not_after - now < margin);
                    let allowed =
                        target != Target::AwsIot || self.config.renewal.aws_iot_reprovision;
                    if due && !allowed {
                        tracing::warn!(target = %t.name, "certificate is within the renewal margin; set renewal.aws_iot_reprovision = true to re-provision (mints a new certificate)");
                    }
                    due && allowed
                }
                Ok(Ok(None)) => false,
                Ok(Err(e)) => {
                    tracing::warn!(target = %t.name, error = %output::error_text(&e), "status failed");
                    false
                }
                Err(e) => {
                    tracing::error!(target = %t.name, error = %format!("{e:#}"), "status call failed");
                    continue;
                }
            };
            let request = self.request(target, params, force);
            match self
                .lifecycle
                .provision(self.policy.clone(), self.store.clone(), &request)
                .await
            {
                Ok(Ok(report)) if !report.reused => {
                    provisioned += 1;
                    tracing::info!(target = %t.name, "provisioned");
                }
                Ok(Ok(_)) => tracing::debug!(target = %t.name, "still valid"),
                Ok(Err(e)) => {
                    tracing::warn!(target = %t.name, error = %output::error_text(&e), "provisioning failed; will retry next check")
                }
                Err(e) => {
                    tracing::error!(target = %t.name, error = %format!("{e:#}"), "component failed")
                }
            }
        }
        provisioned
    }

    /// Answer one control-socket connection: `reload` or `status`, one line each.
    async fn control(self: &Arc<Self>, stream: tokio::net::UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(read);
        if tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
            .await
            .is_err()
        {
            return;
        }
        let answer = match line.trim() {
            "reload" => match self.lifecycle.reload().await {
                Ok(ReloadOutcome::Swapped(d)) => format!("ok swapped {d}\n"),
                Ok(ReloadOutcome::Unchanged) => {
                    format!("ok unchanged {}\n", self.lifecycle.current().digest)
                }
                Err(e) => format!("error {}\n", format!("{e:#}").replace('\n', " ")),
            },
            "status" => {
                let c = self.lifecycle.current();
                format!("ok {} {}\n", c.digest, c.version)
            }
            other => format!(
                "error unknown command `{}`; use reload or status\n",
                other.chars().take(40).collect::<String>()
            ),
        };
        let _ = write.write_all(answer.as_bytes()).await;
    }

    /// Run until `shutdown` turns true.
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let listener = match &self.config.control_socket {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                let listener = tokio::net::UnixListener::bind(path)
                    .with_context(|| format!("key `control_socket`: binding {}", path.display()))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
                Some(listener)
            }
            None => None,
        };
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut checks =
            tokio::time::interval(Duration::from_secs(self.config.check_interval_secs));
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        let mut stamp = self.config.component.as_deref().and_then(file_stamp);
        tracing::info!(targets = self.config.targets.len(), "daemon running");
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = checks.tick() => {
                    let me = self.clone();
                    tokio::spawn(async move { me.check_all().await; });
                }
                _ = watch.tick() => {
                    if let Some(path) = self.config.component.as_deref() {
                        let now = file_stamp(path);
                        if now.is_some() && now != stamp {
                            stamp = now;
                            tracing::info!(file = %path.display(), "component file changed");
                            let _ = self.lifecycle.reload().await;
                        }
                    }
                }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the component");
                    let _ = self.lifecycle.reload().await;
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
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut answer = String::new();
    tokio::io::BufReader::new(stream)
        .read_line(&mut answer)
        .await?;
    Ok(answer.trim_end().to_string())
}
