//! Files the host reads from paths a user gives, files it writes with secrets in them, private
//! directories, and advisory locks.
//!
//! * [`read_user_file`]: a regular file only (never a FIFO, device or directory), opened without
//!   blocking, read up to a size cap; every error names the file and what it was for.
//! * [`write_private_file`]: the one atomic writer for the secret store, exports and
//!   `wireguard-config`: a temp file in the same directory created `O_CREAT | O_EXCL |
//!   O_NOFOLLOW` with mode 0600, its final mode set on the open descriptor (`fchmod(2)`), written,
//!   `fsync(2)`ed, renamed over the target (`rename(2)` is atomic within a file system and never
//!   follows a symlink at the destination), then the directory fsynced so the rename survives a
//!   power cut. A temp file is removed when any step fails. A symlink, directory or device at
//!   the target is refused rather than replaced.
//! * [`private_dir`]: a directory only the owner can reach (created 0700, refused when group or
//!   others have access).
//! * [`FileLock`]: an exclusive `flock(2)` on a lock file, with the holder's pid written into the
//!   file for error messages only (the kernel lock decides; a pid in a file can be stale or
//!   belong to another pid namespace).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Largest configuration file read (`run --config`), bytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Largest component file read (`--component`), bytes. The component is ~300 KiB.
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest tunnel configuration read (`doctor --wireguard`, `--soratun-config`), bytes.
pub const MAX_TUNNEL_CONFIG_BYTES: u64 = 1024 * 1024;
/// Largest CA bundle read (`--ca-file`), bytes (the whole Mozilla bundle is ~250 KiB).
pub const MAX_CA_BYTES: u64 = 4 * 1024 * 1024;

/// Read the file a user named, for `what` (e.g. "the configuration file"), refusing anything
/// that is not a regular file and anything larger than `max_bytes` bytes.
///
/// A symlink is followed (operators link configuration files), but what it names must be a
/// regular file. The file is opened with `O_NONBLOCK` so that a FIFO cannot stall the caller
/// (`open(2)` of a FIFO for reading otherwise waits for a writer), and its type is checked on
/// the open descriptor (`fstat(2)`), so a swap between check and read is impossible.
///
/// Errors (each names `what` and the path, and says what to do): the file is missing or
/// unreadable, is not a regular file (directory, FIFO, socket, device), or is larger than
/// `max_bytes`.
pub fn read_user_file(path: &Path, max_bytes: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    read_with_metadata(path, max_bytes, what).map(|(bytes, _)| bytes)
}

/// [`read_user_file`], with the metadata of the descriptor the bytes were read from (so that
/// owner and mode checks judge the file that was read, not whatever the path names later).
fn read_with_metadata(
    path: &Path,
    max_bytes: u64,
    what: &str,
) -> anyhow::Result<(Vec<u8>, fs::Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{what} {}: cannot open it: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        anyhow::bail!(
            "{what} {} is not a regular file (a directory, FIFO, socket or device); give the path of a file",
            path.display()
        );
    }
    if meta.len() > max_bytes {
        anyhow::bail!(
            "{what} {} is {} bytes, more than the {max_bytes} bytes allowed; is it the right file?",
            path.display(),
            meta.len()
        );
    }
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("{what} {}: reading it: {e}", path.display()))?;
    if bytes.len() as u64 > max_bytes {
        anyhow::bail!(
            "{what} {} grew past the {max_bytes} bytes allowed while it was read",
            path.display()
        );
    }
    Ok((bytes, meta))
}

/// The effective uid of this process (`geteuid(2)`).
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// [`read_user_text`] for a file that decides what this process trusts (the daemon's
/// configuration: its trusted key, component and hosts): it must also be owned by root or by
/// the user this runs as, and not writable by group or others, or anyone who could write it
/// could replace the trusted key.
///
/// Errors: those of [`read_user_text`], or the owner or mode above, naming the file and the
/// `chown`/`chmod` that fixes it.
pub fn read_trusted_text(path: &Path, max_bytes: u64, what: &str) -> anyhow::Result<String> {
    read_trusted(path, max_bytes, what, false)
}

/// [`read_trusted_text`] for a file that holds a secret (a registry password or token): it
/// must not be readable by group or others either.
///
/// Errors: those of [`read_trusted_text`], or a mode with group or other read access, naming
/// the file and the `chmod 600` that fixes it.
pub fn read_trusted_secret(path: &Path, max_bytes: u64, what: &str) -> anyhow::Result<String> {
    read_trusted(path, max_bytes, what, true)
}

fn read_trusted(path: &Path, max_bytes: u64, what: &str, secret: bool) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    // The owner and mode checked are those of the descriptor read (fstat), so a file swapped
    // in after the read cannot lend its owner and mode to the bytes read before.
    let (bytes, meta) = read_with_metadata(path, max_bytes, what)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{what} {} is not UTF-8 text", path.display()))?;
    let euid = effective_uid();
    anyhow::ensure!(
        meta.uid() == 0 || meta.uid() == euid,
        "{what} {} is owned by uid {}: it must belong to root or to the user this runs as \
         (uid {euid}), since it names the keys and hosts to trust (`chown root` it)",
        path.display(),
        meta.uid()
    );
    let mode = meta.permissions().mode() & 0o777;
    anyhow::ensure!(
        mode & 0o022 == 0,
        "{what} {} has mode {mode:03o}: group or others can change it, and it names the keys and \
         hosts to trust; `chmod go-w` it",
        path.display()
    );
    anyhow::ensure!(
        !secret || mode & 0o044 == 0,
        "{what} {} has mode {mode:03o}: group or others can read the secret in it; `chmod 600` it \
         (a systemd service reads a root-only file through LoadCredential=)",
        path.display()
    );
    Ok(text)
}

/// [`read_user_file`] for text: errors also when the file is not UTF-8.
pub fn read_user_text(path: &Path, max_bytes: u64, what: &str) -> anyhow::Result<String> {
    String::from_utf8(read_user_file(path, max_bytes, what)?)
        .map_err(|_| anyhow::anyhow!("{what} {} is not UTF-8 text", path.display()))
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temp file name [`write_private_file`] uses for `path`, in the same directory:
/// `krypton_contract::store::temp_file_name`, `.<file name>.tmp-<16 hex digits>`, the digits
/// this process's id (high 32 bits) and a counter (low 32 bits), so that no two writers of a
/// directory pick the same name. The secret store removes such leftovers while it holds its
/// lock.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let unique = (u64::from(std::process::id()) << 32)
        | (TMP_COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff);
    parent_dir(path).join(krypton_contract::store::temp_file_name(&name, unique))
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn with_path(what: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Replace `path` with `bytes` atomically, final mode `mode` (e.g. `0o600` for secrets,
/// `0o644` for certificates and configuration). See the module docs for the protocol.
///
/// Errors (`std::io::Error`, the message names the step and the path): `path` exists and is
/// a symlink, a directory or anything but a regular file (`InvalidInput`); the temp file cannot
/// be created, written, synced or renamed; the directory cannot be synced. The temp file is
/// gone after any error.
pub fn write_private_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_private_file_with(path, bytes, mode, None, |_| Ok(()))
}

/// A file owner for `chown`: numeric user and group ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// `fchown(2)` on an open descriptor; an id of `u32::MAX` (`-1`) leaves that id as it is.
fn fchown(file: &File, owner: Owner) -> std::io::Result<()> {
    use rustix::fs::{Gid, Uid};
    let uid = (owner.uid != u32::MAX).then(|| Uid::from_raw(owner.uid));
    let gid = (owner.gid != u32::MAX).then(|| Gid::from_raw(owner.gid));
    Ok(rustix::fs::fchown(file, uid, gid)?)
}

/// Give the directory `dir` to `owner`: opened with `O_DIRECTORY | O_NOFOLLOW` (a symlink is
/// refused, never followed), then `fchown(2)` on that descriptor.
/// Errors: `dir` is a symlink or not a directory; `fchown` fails (`EPERM` when not root).
pub fn chown_dir(dir: &Path, owner: Owner) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| with_path("opening", dir, e))?;
    fchown(&file, owner).map_err(|e| with_path("changing the owner of", dir, e))
}

/// Resolve `USER[:GROUP]` (names, or numeric ids) to ids through the system's user and group
/// databases (`getpwnam_r(3)`, `getgrnam_r(3)` through `nix`, so `/etc/passwd`, NSS...). Without `:GROUP`,
/// the user's primary group. Errors: an unknown user or group, named in plain words.
pub fn resolve_owner(spec: &str) -> anyhow::Result<Owner> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    anyhow::ensure!(
        !user.is_empty(),
        "--owner `{spec}`: give USER or USER:GROUP"
    );
    let (uid, primary_gid) = lookup_user(user)?
        .ok_or_else(|| anyhow::anyhow!("--owner: there is no user `{user}` on this system"))?;
    let gid = match group {
        None | Some("") => primary_gid,
        Some(g) => lookup_group(g)?
            .ok_or_else(|| anyhow::anyhow!("--owner: there is no group `{g}` on this system"))?,
    };
    Ok(Owner { uid, gid })
}

/// `(uid, primary gid)` of a user name, or of a numeric id.
fn lookup_user(name: &str) -> anyhow::Result<Option<(u32, u32)>> {
    anyhow::ensure!(!name.contains('\0'), "--owner: invalid user name");
    if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
        return Ok(Some((user.uid.as_raw(), user.gid.as_raw())));
    }
    match name.parse::<u32>() {
        // A numeric id with no entry: its group stays as it is (`-1` to fchown(2)).
        Ok(uid) => Ok(Some((uid, u32::MAX))),
        Err(_) => Ok(None),
    }
}

/// The gid of a group name, or of a numeric id.
fn lookup_group(name: &str) -> anyhow::Result<Option<u32>> {
    anyhow::ensure!(!name.contains('\0'), "--owner: invalid group name");
    if let Ok(Some(group)) = nix::unistd::Group::from_name(name) {
        return Ok(Some(group.gid.as_raw()));
    }
    Ok(name.parse::<u32>().ok())
}

/// [`write_private_file`] with a hook run just before the rename (tests stage failures there).
fn write_private_file_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<Owner>,
    before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = stage(path, bytes, mode, owner)?;
    let result = (|| {
        before_rename(&tmp)?;
        fs::rename(&tmp, path).map_err(|e| with_path("renaming into place", path, e))?;
        sync_dir(parent_dir(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The first half of the write protocol: refuse a `path` that exists and is not a regular
/// file, then write `bytes` in full to a new temp file beside it (mode and owner set on the
/// descriptor, no symlink followed, fsynced) and return the temp file's path. On failure the
/// temp file is removed.
fn stage(path: &Path, bytes: &[u8], mode: u32, owner: Option<Owner>) -> std::io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} exists and is not a regular file (a symlink, directory or device); \
                     it is never followed or replaced: remove it or choose another path",
                    path.display()
                ),
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(with_path("inspecting", path, e)),
    }
    let tmp = temp_path_for(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| with_path("creating", &tmp, e))?;
        // fchmod(2) on the descriptor: the umask cannot widen or narrow it, and no path is
        // looked up again.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| with_path("setting the mode of", &tmp, e))?;
        if let Some(owner) = owner {
            fchown(&file, owner).map_err(|e| with_path("changing the owner of", &tmp, e))?;
        }
        file.write_all(bytes)
            .map_err(|e| with_path("writing", &tmp, e))?;
        file.sync_all().map_err(|e| with_path("syncing", &tmp, e))
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Write several files of one directory as a set: each is first written in full to its temp
/// file (the protocol of [`write_private_file`]: mode and owner set on the descriptor, no
/// symlink followed, fsync), and only when every one is written are they renamed into place
/// and the directory synced. A failure while writing leaves every old file as it was and
/// removes every temp file, so an export never pairs a new certificate with an old key.
/// `files` holds `(path, bytes, mode)`, all in one directory.
///
/// Errors: the first failure, naming the operation and the path.
pub fn write_private_files(
    files: &[(PathBuf, &[u8], u32)],
    owner: Option<Owner>,
) -> std::io::Result<()> {
    let mut staged: Vec<(PathBuf, &Path)> = Vec::with_capacity(files.len());
    let result = (|| {
        for (path, bytes, mode) in files {
            staged.push((stage(path, bytes, *mode, owner)?, path.as_path()));
        }
        for (tmp, path) in &staged {
            fs::rename(tmp, path).map_err(|e| with_path("renaming into place", path, e))?;
        }
        match files.first() {
            Some((path, _, _)) => sync_dir(parent_dir(path)),
            None => Ok(()),
        }
    })();
    if result.is_err() {
        for (tmp, _) in &staged {
            let _ = fs::remove_file(tmp);
        }
    }
    result
}

/// Check that `dir` is a directory fit to receive exported credentials: owned by root or the
/// user this runs as, and writable by nobody else (or another user could replace a file between
/// two exports, or plant one that a consumer then trusts).
///
/// Errors: not a directory, another owner, or group/other write bits, with the fix to apply.
///
/// `export_owner` is the uid of `--owner`, whose directory from an earlier export is accepted
/// too (so that a renewal can write there again).
pub fn safe_output_dir(dir: &Path, export_owner: Option<u32>) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", dir.display());
    let euid = effective_uid();
    anyhow::ensure!(
        meta.uid() == 0 || meta.uid() == euid || Some(meta.uid()) == export_owner,
        "{} is owned by uid {}: exported credentials go only into a directory of root, of \
         this user (uid {euid}) or of the --owner user; choose another --out",
        dir.display(),
        meta.uid()
    );
    let mode = meta.permissions().mode() & 0o7777;
    anyhow::ensure!(
        mode & 0o022 == 0,
        "{} has mode {:03o}: group or others could replace the exported files; `chmod go-w` it \
         or choose another --out",
        dir.display(),
        mode & 0o777
    );
    Ok(())
}

/// `fsync(2)` a directory, so that a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path("syncing directory", dir, e))
}

/// Make sure `dir` is a directory only its owner can reach: create it (parents as needed, the
/// leaf exactly 0700) when missing; refuse an existing one that is not a directory (a symlink
/// is followed: `/var/lib` layouts use them) or that group or others can reach. The mode of an
/// existing directory is never changed (think of `/tmp` given by mistake). `what` names the
/// configuration key or option for the error messages.
pub fn private_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => anyhow::bail!(
            "{what}: {} is a symbolic link; give the directory itself",
            dir.display()
        ),
        Ok(meta) if !meta.is_dir() => {
            anyhow::bail!("{what}: {} exists and is not a directory", dir.display())
        }
        Ok(meta) => {
            // Whoever owns the directory can replace what is in it (a bundle, the version
            // floor), so it must be ours.
            let euid = effective_uid();
            anyhow::ensure!(
                meta.uid() == euid,
                "{what}: the directory {} is owned by uid {}, not by the user this runs as \
                 (uid {euid}); use a directory of this user, or `chown` it if it holds nothing \
                 of another user's",
                dir.display(),
                meta.uid()
            );
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o002 != 0 {
                // A shared directory such as /tmp: never suggest changing its mode.
                anyhow::bail!(
                    "{what}: the directory {} has mode {mode:03o}: anyone can write in it; \
                     use a directory of its own, e.g. {}",
                    dir.display(),
                    dir.join("krypton-host").display()
                );
            }
            anyhow::ensure!(
                mode & 0o077 == 0,
                "{what}: the directory {} has mode {mode:03o}: group or others can reach it; \
                 use a dedicated directory, or `chmod 700` it if it holds nothing else",
                dir.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| anyhow::anyhow!("{what}: creating {}: {e}", dir.display()))?;
            // The umask may have removed bits; make the leaf exactly 0700.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| anyhow::anyhow!("{what}: setting mode 0700 on {}: {e}", dir.display()))
        }
        Err(e) => anyhow::bail!("{what}: reading {}: {e}", dir.display()),
    }
}

/// An exclusive advisory lock (`flock(2)`, `LOCK_EX`) on a lock file; released when dropped
/// (or when the process dies: the kernel drops `flock` locks with the last descriptor).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another open file description holds the lock; `holder` is the pid written in the file
    /// by its holder, when there is one (for the message only).
    #[error("{} is locked by {}", path.display(), holder.map(|p| format!("process {p}")).unwrap_or_else(|| "another process".into()))]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// The pid its holder wrote into it, if any.
        holder: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    #[error("lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

impl FileLock {
    /// Take the lock at `path` (created 0600 when missing; a symlink is refused), waiting up to
    /// `wait` (polling every 50 ms; `Duration::ZERO` tries once). On success the holder's pid
    /// is written into the file.
    ///
    /// Errors: [`LockError::Busy`] when another holder kept it for the whole wait (with the
    /// pid it wrote), [`LockError::Io`] when the file cannot be opened or locked.
    pub fn acquire(path: &Path, wait: Duration) -> Result<FileLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io)?;
        let started = Instant::now();
        loop {
            use rustix::fs::FlockOperation;
            let err = match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) => std::io::Error::from(e),
            };
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(err));
            }
            if started.elapsed() >= wait {
                return Err(LockError::Busy {
                    path: path.to_path_buf(),
                    holder: Self::holder(path),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // For messages only: who holds it.
        let _ = file.set_len(0);
        let _ = (&file).write_all(format!("{}\n", std::process::id()).as_bytes());
        let _ = file.flush();
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The pid the current holder wrote into the lock file at `path`, if readable.
    pub fn holder(path: &Path) -> Option<u32> {
        let mut text = String::new();
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .ok()?
            .take(32)
            .read_to_string(&mut text)
            .ok()?;
        text.trim().parse().ok()
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests;
