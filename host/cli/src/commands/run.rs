//! `krypton-host run --config FILE`: the gateway daemon (see `crate::daemon`).

use super::{HostFailure, fail};
use crate::output::exit;
use anyhow::Context as _;
use clap::Args;
use krypton_host::capability::http;
use std::path::{Path, PathBuf};

/// `run` arguments.
#[derive(Args)]
pub struct RunArgs {
    /// Configuration file (see gateway.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Use this secret store instead of the file's `store` key.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Use this state directory instead of the file's `state_dir` key.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Use this control socket instead of the file's `control_socket` key.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Use this Krypton endpoint instead of the file's `endpoint` key.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Use this CA file instead of the file's `ca_file` key.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

/// Start the daemon on `--config` (with the command-line overrides) and serve until SIGINT or
/// SIGTERM. Errors: a configuration or start failure (exit 3), a failure while running (exit
/// 1).
pub async fn run_daemon(args: RunArgs) -> Result<(), HostFailure> {
    use crate::daemon::{Daemon, GatewayConfig};
    // Core dumps are off since `main` (for every command): the control socket reports it.
    let mut config = GatewayConfig::load(&args.config).map_err(fail(exit::INVALID_REQUEST))?;
    // Command-line overrides (relative paths are taken from the working directory).
    let absolute = |flag: &str, p: &Path| {
        std::path::absolute(p)
            .with_context(|| format!("{flag} {}", p.display()))
            .map_err(fail(exit::INVALID_REQUEST))
    };
    if let Some(p) = &args.store {
        config.store = absolute("--store", p)?;
    }
    if let Some(p) = &args.state_dir {
        config.state_dir = absolute("--state-dir", p)?;
    }
    if let Some(p) = &args.control_socket {
        config.control_socket = Some(absolute("--control-socket", p)?);
    }
    if let Some(p) = &args.ca_file {
        config.ca_file = Some(absolute("--ca-file", p)?);
    }
    if let Some(url) = &args.endpoint {
        http::Origin::parse(url)
            .context("--endpoint")
            .map_err(fail(exit::INVALID_REQUEST))?;
        config.endpoint = Some(url.clone());
    }
    // SIGTERM is handled from here on, before the (possibly slow) start: a stop requested
    // while the component compiles is honoured once the start is done, instead of killing the
    // process with the signal's default action half-way through.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")
        .map_err(fail(exit::INTERNAL))?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop.send(true);
    });
    // The start may wait on a registry (the first pull of an `oci://` component): a stop
    // requested meanwhile gives it SHUTDOWN_GRACE to finish, as a pass gets, then the process
    // exits without serving, whatever the registry does.
    let start = Daemon::start(config);
    tokio::pin!(start);
    let mut stop_seen = stopped.clone();
    let started = tokio::select! {
        started = &mut start => started,
        _ = stop_seen.changed() => {
            match tokio::time::timeout(crate::daemon::SHUTDOWN_GRACE, &mut start).await {
                Ok(Ok(daemon)) => Ok(daemon),
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "stopped; the start had failed");
                    return Ok(());
                }
                Err(_) => {
                    tracing::warn!(
                        "stopped before the start finished (still waiting after {} s)",
                        crate::daemon::SHUTDOWN_GRACE.as_secs()
                    );
                    return Ok(());
                }
            }
        }
    };
    let daemon = started.map_err(fail(exit::INVALID_REQUEST))?;
    daemon.run(stopped).await.map_err(fail(exit::INTERNAL))
}
