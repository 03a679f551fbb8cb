//! The control socket: created private (inside a 0700 directory, moved into place already
//! 0600), peers checked with `SO_PEERCRED` (same uid or root, `unix(7)`), request lines bounded
//! to [`MAX_CONTROL_LINE`] bytes; `reload` and `status` are the requests.

use super::dumpable;
use anyhow::Context as _;
use krypton_host::component::lifecycle::ReloadOutcome;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt};

use super::Daemon;

/// Longest control request line accepted, bytes (`reload` and `status` need 7).
pub const MAX_CONTROL_LINE: u64 = 256;

/// Whether a control-socket peer may talk to the daemon: the same effective uid, or root
/// (credentials from `SO_PEERCRED`, `unix(7)`).
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid || peer_uid == 0
}

/// Create the control socket at `path` so that it is never reachable by others: bind inside a
/// fresh 0700 directory beside it, set 0600 there, then `rename(2)` it into place. The caller
/// holds `<path>.lock`, so a socket already at `path` is a dead daemon's and is replaced.
pub(super) fn bind_control_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
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
    /// Answer one control-socket connection: `reload` or `status`, one line each, from a peer
    /// with the daemon's uid or root only.
    pub(super) async fn control(self: &Arc<Self>, stream: tokio::net::UnixStream) {
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
