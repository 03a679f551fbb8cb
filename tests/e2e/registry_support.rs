//! A real OCI registry for the tests: Debian's `docker-registry` (the CNCF distribution
//! registry) on 127.0.0.1, a free port, a temporary storage directory, an access log; stopped on
//! drop. Missing binary: a failure under `CI=true` (`.ci/run` installs it), a skip with the reason
//! locally.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Debian's package puts the registry.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Whether the tools a registry test needs are here (`docker-registry`, and `skopeo` when
/// `skopeo` is true). Missing: panics under `CI`, prints why and returns false locally.
pub fn registry_tools_present(skopeo: bool) -> bool {
    let mut missing = Vec::new();
    if !Path::new(REGISTRY_BIN).exists() {
        missing.push("docker-registry");
    }
    if skopeo && !Path::new("/usr/bin/skopeo").exists() {
        missing.push("skopeo");
    }
    if missing.is_empty() {
        return true;
    }
    // CI installs them (`.ci/run`), so there a missing tool is a failure, never a skip.
    assert!(
        std::env::var_os("CI").is_none(),
        "missing {}: install the Debian packages (apt-get install {})",
        missing.join(", "),
        missing.join(" ")
    );
    eprintln!(
        "missing {}; skipped (apt-get install {})",
        missing.join(", "),
        missing.join(" ")
    );
    false
}

/// A running registry; killed (and its storage removed) on drop.
pub struct TestRegistry {
    child: Option<std::process::Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Start one on a free port (a bind race with another test is retried on a new port).
    pub fn start() -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = super::support::closed_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    dir.path().join("storage").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = std::process::Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let addr = format!("127.0.0.1:{port}");
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(&addr).is_ok() {
                    return TestRegistry {
                        child: Some(child),
                        addr,
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT/REPO:TAG`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// The registry's log (access log lines included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Requests the registry logged so far (its access log: one line per request with
    /// `"GET `, `"HEAD `, `"PUT `, ...).
    pub fn requests(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                ["\"GET ", "\"HEAD ", "\"PUT ", "\"POST ", "\"PATCH "]
                    .iter()
                    .any(|m| l.contains(m))
            })
            .count()
    }

    /// Its storage directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Stop it now (the "registry down" case).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One line of the registry's access log (Apache combined format: `"METHOD PATH PROTO" STATUS
/// BYTES "REFERER" "USER-AGENT"`), the fields the tests read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request path.
    pub path: String,
    /// The status code.
    pub status: u16,
    /// The body bytes sent.
    pub bytes: u64,
    /// The user agent.
    pub agent: String,
}

impl TestRegistry {
    /// The access log, parsed (other log lines skipped).
    pub fn accesses(&self) -> Vec<Access> {
        self.log()
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once("] \"")?;
                let (request, rest) = rest.split_once("\" ")?;
                let mut parts = request.split(' ');
                let method = parts.next()?.to_string();
                let path = parts.next()?.to_string();
                let mut fields = rest.splitn(3, ' ');
                let status = fields.next()?.parse().ok()?;
                let bytes = fields.next()?.parse().unwrap_or(0);
                let agent = fields
                    .next()?
                    .rsplit('"')
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                Some(Access {
                    method,
                    path,
                    status,
                    bytes,
                    agent,
                })
            })
            .collect()
    }

    /// The `GET`s of blob `digest` that `krypton-host` made (its user agent), from the access
    /// log: how many, and the bytes the registry sent for them.
    pub fn blob_gets(&self, digest: &str) -> (usize, u64) {
        let suffix = format!("/blobs/{digest}");
        let gets: Vec<Access> = self
            .accesses()
            .into_iter()
            .filter(|a| {
                a.method == "GET"
                    && a.path.ends_with(&suffix)
                    && a.agent.starts_with("krypton-host/")
            })
            .collect();
        (gets.len(), gets.iter().map(|a| a.bytes).sum())
    }
}

/// The built-in component reporting `version` instead of its own (both 5 bytes, e.g. `0.3.0`
/// and `0.3.1`): every occurrence of the built-in version in its data is replaced, so the copy
/// is a valid component whose self-check reports `version` (a second, higher signed release).
pub fn with_version(version: &str) -> Vec<u8> {
    let own = env!("CARGO_PKG_VERSION").as_bytes();
    assert_eq!(
        own.len(),
        version.len(),
        "same length, so the component stays valid"
    );
    let mut bytes = krypton_host::DEFAULT_COMPONENT.to_vec();
    let mut i = 0;
    let mut replaced = 0;
    while let Some(p) = bytes[i..].windows(own.len()).position(|w| w == own) {
        bytes[i + p..i + p + own.len()].copy_from_slice(version.as_bytes());
        i += p + own.len();
        replaced += 1;
    }
    assert!(replaced > 0, "the built-in version is in the component");
    bytes
}
