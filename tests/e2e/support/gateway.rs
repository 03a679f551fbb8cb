//! The daemon: [`GatewayToml`], its configuration built key by key, and the `krypton-host run`
//! process (start, signal, stop, wait for a condition).

use super::cli::BIN;
use krypton_host_cli::daemon::GatewayConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A `gateway.toml`: top-level keys (in the order first set), then tables, then targets.
#[derive(Debug, Clone, Default)]
pub struct GatewayToml {
    keys: Vec<(String, String)>,
    tables: Vec<String>,
    targets: Vec<String>,
}

impl GatewayToml {
    /// `key = value`, `value` as TOML (a later call replaces the value).
    pub fn set(mut self, key: &str, value: impl std::fmt::Display) -> GatewayToml {
        let value = value.to_string();
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.keys.push((key.to_string(), value)),
        }
        self
    }

    /// `key = 'text'`.
    pub fn string(self, key: &str, text: &str) -> GatewayToml {
        self.set(key, format!("'{text}'"))
    }

    /// `key = 'PATH'`.
    pub fn path(self, key: &str, path: &Path) -> GatewayToml {
        self.set(key, format!("'{}'", path.display()))
    }

    /// A daemon in `dir` (its store, state directory and control socket there) following the
    /// tag `krypton/component:stable` of the registry at `registry` (`HOST:PORT`, plain HTTP),
    /// whose versions `public` signs, polled every second.
    pub fn following(self, dir: &Path, registry: &str, public: &str) -> GatewayToml {
        self.string(
            "component",
            &format!("oci://{registry}/krypton/component:stable"),
        )
        .string("trusted_public_key", public)
        .path("store", &dir.join("store"))
        .path("state_dir", &dir.join("state"))
        .path("control_socket", &dir.join("control.sock"))
        .table("[registry]\npoll_interval_s = 1\ninsecure = true")
    }

    /// Lines of a table (`[limits]\ncpu_ms = 2000`), after the top-level keys.
    pub fn table(mut self, text: &str) -> GatewayToml {
        self.tables.push(text.trim_end().to_string());
        self
    }

    /// `[[target]]\nname = 'NAME'`.
    pub fn target(self, name: &str) -> GatewayToml {
        self.target_with(name, "")
    }

    /// A target with more lines (`params = { ... }`).
    pub fn target_with(mut self, name: &str, lines: &str) -> GatewayToml {
        let mut text = format!("[[target]]\nname = '{name}'\n");
        if !lines.is_empty() {
            text.push_str(lines.trim_end());
            text.push('\n');
        }
        self.targets.push(text);
        self
    }

    /// The TOML text.
    pub fn text(&self) -> String {
        let mut text: String = self
            .keys
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        for table in &self.tables {
            text.push_str(table);
            text.push('\n');
        }
        for target in &self.targets {
            text.push_str(target);
        }
        text
    }

    /// Written to `path`; returns it.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.text()).unwrap();
        path.to_path_buf()
    }

    /// Parsed as the daemon parses it; panics when refused.
    pub fn parse(&self) -> GatewayConfig {
        GatewayConfig::parse(&self.text()).unwrap_or_else(|e| panic!("{e:#}\n{}", self.text()))
    }
}

/// `krypton-host run ARGS...` with `RUST_LOG` set to `log_filter` (removed when `None`), stdout
/// discarded and stderr into the file `log`; killed when dropped.
pub fn spawn_run(args: &[&str], log: &Path, log_filter: Option<&str>) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(BIN);
    command.arg("run").args(args);
    match log_filter {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// `krypton-host run --config CONFIG` at log level info, its stderr into `log`.
pub fn spawn_daemon(config: &Path, log: &Path) -> tokio::process::Child {
    spawn_run(&["--config", config.to_str().unwrap()], log, Some("info"))
}

/// Send `sig` to our own child (`kill(2)`).
pub fn signal(child: &tokio::process::Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// SIGTERM, then the exit within 20 s, which must be a success.
pub async fn stop(daemon: tokio::process::Child) {
    stop_within(daemon, Duration::from_secs(20)).await;
}

/// SIGTERM, then the exit within `limit`, which must be a success.
pub async fn stop_within(mut daemon: tokio::process::Child, limit: Duration) {
    signal(&daemon, rustix::process::Signal::TERM);
    let status = tokio::time::timeout(limit, daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Wait (at most 30 s, checking every 50 ms) until `ok`; panics naming `what`.
pub async fn wait_until(what: &str, ok: impl Fn() -> bool) {
    for _ in 0..600 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The daemon's answer to `status` on its control socket, as `key=value` words (empty while
/// it does not answer); the digest it serves under `serving`.
pub async fn daemon_status(socket: &Path) -> std::collections::HashMap<String, String> {
    let answer = krypton_host_cli::daemon::send_control(socket, "status")
        .await
        .unwrap_or_default();
    let mut words: std::collections::HashMap<String, String> = answer
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(digest) = answer.split_whitespace().nth(1) {
        words.insert("serving".into(), digest.to_string());
    }
    words
}

/// `request` to the daemon's control socket; its answer.
pub async fn control(socket: &Path, request: &str) -> String {
    krypton_host_cli::daemon::send_control(socket, request)
        .await
        .unwrap()
}
