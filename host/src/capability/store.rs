//! The `soracom:krypton/secret-store` capability: named bundles in a directory on disk.
//!
//! Layout: `krypton_contract::store`'s, which the `store-fs` adapter of `krypton-cli.wasm`
//! follows too: `<dir>/<name>.json`, names of 1-64 bytes of `[a-z0-9-]`, bundles of at most
//! [`MAX_BUNDLE_BYTES`]. Here the directory is mode 0700, each file 0600, owned by the user
//! the host runs as. A put writes a temporary file `.<name>.json.tmp-<16 hex digits>` in the
//! same directory (created 0600 with `O_EXCL`), fsyncs it, renames it over the old file and
//! fsyncs the directory, so a crash or power cut at any point leaves either the old bundle or
//! the new one, never a mix (POSIX `rename(2)` is atomic within a file system); the protocol
//! is `files::write_private_file`. The host never parses a bundle: its content is the
//! component's business.
//!
//! One writer at a time: every provisioning run holds the store's `flock(2)` lock
//! ([`SecretStore::lock`], file `.lock`), so the CLI and the daemon never provision the same
//! store at once, and under it the writer lock file every writer shares, `.run-lock`
//! (`krypton_contract::store::RUN_LOCK_FILE`): a stock runtime's `store-fs` adapter has no
//! `flock(2)` (WASI has none) and creates that file exclusively for its run instead. So
//! `krypton-host` and a `wasmtime run` of `krypton-cli.wasm` exclude each other, and temp
//! files are removed only by a writer holding both, never while a stock run writes one.
//!
//! The capability's parts, in the manner of `wasmtime-wasi`: [`SecretStore`] is the directory
//! (opened by the embedder, shared by calls); [`StoreCtx`] is one call's state (the store, its
//! write budget of [`MAX_STORE_WRITES_PER_CALL`] writes and [`MAX_STORE_BYTES_PER_CALL`] bytes,
//! the call's [`LimitTrip`]) and implements the import's `Host` trait; [`add_to_linker`] links
//! the import for any store data that can hand out its [`StoreCtx`].

use crate::bindings::soracom::krypton::secret_store;
use crate::files::{FileLock, LockError};
use crate::sandbox::LimitTrip;
use krypton_contract::store as layout;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use krypton_contract::store::{LOCK_FILE, MAX_BUNDLE_BYTES, StoreError};

/// A directory of bundles. Cheap to clone; every operation goes to the file system.
#[derive(Debug, Clone)]
pub struct SecretStore {
    dir: PathBuf,
}

/// Proof that this process holds a store's writer lock; dropping it releases the lock (the
/// shared `.run-lock` file is removed, then the `flock(2)` released).
#[derive(Debug)]
pub struct StoreLock {
    /// The `.run-lock` file this process created, and the token it wrote there.
    run_lock: PathBuf,
    token: String,
    _lock: FileLock,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // Only our own: a file holding another token is not ours to remove.
        if read_run_lock(&self.run_lock).is_ok_and(|content| content == self.token.as_bytes()) {
            let _ = fs::remove_file(&self.run_lock);
        }
    }
}

/// The content of a `.run-lock` file (at most `MAX_RUN_LOCK_BYTES`, never through a symlink).
fn read_run_lock(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut content = Vec::new();
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?
        .take(layout::MAX_RUN_LOCK_BYTES)
        .read_to_end(&mut content)?;
    Ok(content)
}

/// Why the shared `.run-lock` could not be taken.
enum RunLockRefused {
    /// Another writer's fresh lock: who, and how old it is (seconds).
    Busy(layout::RunLockHolder, u64),
    /// The file could not be created, read or removed.
    Io(std::io::Error),
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::io(what, path, e)
}

impl SecretStore {
    /// Open the store at `dir`, creating it (mode 0700, parents as needed) when missing.
    ///
    /// An existing directory is used only when group and others have no access to it: the
    /// store never loosens or tightens the mode of a directory it did not create (think of
    /// `--store /tmp` by mistake). Errors: [`StoreError::Io`] when the directory cannot be
    /// created, is not a directory, or is open to group or others.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        crate::files::private_dir(&dir, "the secret store")
            .map_err(|e| StoreError::Io(format!("{e:#}")))?;
        Ok(SecretStore { dir })
    }

    /// Take the store's writer lock: an exclusive `flock(2)` on `<dir>/.lock`, waiting up to
    /// `wait` (`Duration::ZERO`: one try). Every provisioning run (CLI `provision`, `demo`, each
    /// daemon pass) holds it from before the first read to after the last write, so two
    /// writers never call Krypton for the same store at once. The lock is released when the
    /// returned guard is dropped, or by the kernel when the process dies.
    ///
    /// Under the `flock(2)`, the shared writer lock file `.run-lock` is created (`O_EXCL`,
    /// holding `host <pid>`) and removed again when the guard is dropped. A `.run-lock` found
    /// there is taken over when it names a `krypton-host` process (none can be alive while this
    /// one holds the `flock(2)`) or is stale (`RUN_LOCK_STALE_AFTER` from its modification
    /// time: the stock run that wrote it was killed); otherwise a stock run is writing, and
    /// the lock counts as busy (retried until `wait` is over).
    ///
    /// While holding both, temp files left by an interrupted write (`.<name>.json.tmp-*`) are
    /// removed: no other writer can be mid-write, whatever pid a file name carries (pids are
    /// reused, and a container has its own).
    ///
    /// Errors: [`LockError::Busy`] with the holder's pid (as written in the lock file) when it
    /// stayed locked for the whole wait, or without one (the path is `.run-lock`'s) when a
    /// stock run held the store for the whole wait; [`LockError::Io`] when a lock file cannot
    /// be used. This blocks the calling thread; from async code use `spawn_blocking`.
    pub fn lock(&self, wait: Duration) -> Result<StoreLock, LockError> {
        let started = std::time::Instant::now();
        let run_lock = self.dir.join(layout::RUN_LOCK_FILE);
        loop {
            let lock = FileLock::acquire(
                &self.dir.join(LOCK_FILE),
                wait.saturating_sub(started.elapsed()),
            )?;
            match self.take_run_lock(&run_lock) {
                Ok(token) => {
                    self.remove_stale_temp_files();
                    return Ok(StoreLock {
                        run_lock,
                        token,
                        _lock: lock,
                    });
                }
                Err(RunLockRefused::Io(source)) => {
                    return Err(LockError::Io {
                        path: run_lock,
                        source,
                    });
                }
                Err(RunLockRefused::Busy(holder, age)) => {
                    if started.elapsed() >= wait {
                        tracing::warn!("{}", layout::run_lock_busy_message(&self.dir, holder, age));
                        return Err(LockError::Busy {
                            path: run_lock,
                            holder: None,
                        });
                    }
                    drop(lock);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Create `.run-lock` holding this process's token (see [`SecretStore::lock`]), taking
    /// over one that is left over; the token written. Called with the `flock(2)` held.
    fn take_run_lock(&self, path: &Path) -> Result<String, RunLockRefused> {
        use std::io::Write as _;
        let token = layout::RunLockHolder::Host(std::process::id()).token();
        // The token is written to `.run-lock.host` first and hard-linked into place (`link(2)`
        // fails when the target exists), so `.run-lock` never exists without its token, even
        // if this process is killed half-way: an empty one would have to be judged by its age.
        // Only the `flock(2)` holder writes that staging file, so one fixed name does.
        let staged = self.dir.join(format!("{}.host", layout::RUN_LOCK_FILE));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&staged)
            .map_err(RunLockRefused::Io)?;
        file.write_all(token.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(RunLockRefused::Io)?;
        let result = self.link_run_lock(&staged, path);
        let _ = fs::remove_file(&staged);
        result.map(|()| token)
    }

    /// Hard-link `staged` to the `.run-lock` at `path`, taking over a leftover (see
    /// [`SecretStore::take_run_lock`]).
    fn link_run_lock(&self, staged: &Path, path: &Path) -> Result<(), RunLockRefused> {
        // Three tries: a leftover removed, then a stock run's own removal racing ours.
        for _ in 0..3 {
            match fs::hard_link(staged, path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(RunLockRefused::Io(e)),
            }
            let meta = match fs::symlink_metadata(path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(RunLockRefused::Io(e)),
            };
            let content = read_run_lock(path).unwrap_or_default();
            let holder = layout::RunLockHolder::parse(&content);
            let secs = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            };
            let modified = meta.modified().map_or(0, secs);
            let now = secs(std::time::SystemTime::now());
            let stale = matches!(holder, layout::RunLockHolder::Host(_))
                || !meta.file_type().is_file()
                || layout::is_run_lock_stale(modified, now);
            if !stale {
                return Err(RunLockRefused::Busy(holder, now.saturating_sub(modified)));
            }
            match fs::remove_file(path) {
                Ok(()) => {
                    tracing::warn!(file = %path.display(), %holder, "removed a writer lock left by a killed run");
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(RunLockRefused::Io(e)),
            }
        }
        Err(RunLockRefused::Io(std::io::Error::new(
            ErrorKind::WouldBlock,
            "created and removed by others three times in a row; try again",
        )))
    }

    /// Remove temporary files left by a writer that was killed mid-write (they may hold a
    /// private key that a later rotation would otherwise leave behind). Only called with both
    /// writer locks held (`.lock` and `.run-lock`): no writer can be mid-write then.
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !layout::is_temp_file_name(name) {
                continue;
            }
            if fs::remove_file(entry.path()).is_ok() {
                tracing::warn!(file = %entry.path().display(), "removed a temporary bundle file left by an interrupted write");
            }
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, StoreError> {
        Ok(self.dir.join(layout::bundle_file_name(name)?))
    }

    /// The bundle stored under `name`, or `None`. Only a regular file (not a symlink) of at
    /// most [`MAX_BUNDLE_BYTES`] is read.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(name)?;
        layout::read_bundle(&path, |meta| {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(file = %path.display(), mode = format!("{mode:03o}"), "bundle file is readable by group or others; it should be 0600 (it will be on the next write)");
            }
            // O_NOFOLLOW and a type check on the open descriptor: a symlink or FIFO swapped in
            // after the check on the path is refused, not followed or waited on.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| io_err("reading", &path, e))?;
            if !file
                .metadata()
                .map_err(|e| io_err("reading", &path, e))?
                .is_file()
            {
                return Err(StoreError::Io(format!(
                    "{} is not a regular file; remove it",
                    path.display()
                )));
            }
            Ok(file)
        })
    }

    /// Replace the bundle under `name` atomically (see the module docs).
    pub fn put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name)?;
        if value.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(StoreError::TooLarge(MAX_BUNDLE_BYTES));
        }
        crate::files::write_private_file(&path, value, 0o600)
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    /// Remove the bundle under `name`; `true` when there was one.
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                crate::files::sync_dir(&self.dir).map_err(|e| StoreError::Io(e.to_string()))?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("removing", &path, e)),
        }
    }
}

/// Most secret-store writes (puts and deletes) one call may make. A provisioning run makes at
/// most five (a probe put and delete, a pending registration, the bundle, forgetting the
/// registration); each write is fsynced, so an unbounded loop would wear the gateway's flash.
pub const MAX_STORE_WRITES_PER_CALL: u32 = 32;
/// Most bytes one call may put into the secret store, in total.
pub const MAX_STORE_BYTES_PER_CALL: usize = 4 * 1024 * 1024;
/// Secret-store writes of one call, against [`MAX_STORE_WRITES_PER_CALL`] and
/// [`MAX_STORE_BYTES_PER_CALL`].
#[derive(Default)]
struct StoreWrites {
    writes: u32,
    bytes: usize,
}

impl StoreWrites {
    /// Count one write of `bytes`; past a limit the call is stopped (the limit is recorded in
    /// `trip`) and the write is refused, so nothing reaches the disk.
    fn charge(&mut self, trip: &LimitTrip, bytes: usize) -> Result<(), secret_store::StoreError> {
        self.writes = self.writes.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
        let broken = if self.writes > MAX_STORE_WRITES_PER_CALL {
            Some(format!(
                "its limit of {MAX_STORE_WRITES_PER_CALL} secret-store writes per call"
            ))
        } else if self.bytes > MAX_STORE_BYTES_PER_CALL {
            Some(format!(
                "its limit of {MAX_STORE_BYTES_PER_CALL} secret-store bytes per call"
            ))
        } else {
            None
        };
        match broken {
            Some(limit) => {
                let message = format!("refused: {limit}");
                trip.trip(limit);
                Err(secret_store::StoreError::Io(message))
            }
            None => Ok(()),
        }
    }
}

/// One call's view of the secret store: the store, the call's write budget and its
/// [`LimitTrip`]. Implements `soracom:krypton/secret-store`.
pub struct StoreCtx {
    store: SecretStore,
    writes: StoreWrites,
    trip: LimitTrip,
}

impl StoreCtx {
    /// The secret store of one call, whose broken write limit is recorded in `trip`.
    pub fn new(store: SecretStore, trip: LimitTrip) -> Self {
        StoreCtx {
            store,
            writes: StoreWrites::default(),
            trip,
        }
    }
}

impl secret_store::Host for StoreCtx {
    fn get(&mut self, name: String) -> Result<Option<Vec<u8>>, secret_store::StoreError> {
        self.store.get(&name).map_err(to_wit_store_error)
    }

    fn put(&mut self, name: String, value: Vec<u8>) -> Result<(), secret_store::StoreError> {
        self.writes.charge(&self.trip, value.len())?;
        self.store.put(&name, &value).map_err(to_wit_store_error)?;
        tracing::info!(bundle = %name, bytes = value.len(), dir = %self.store.dir().display(), "bundle stored");
        Ok(())
    }

    fn delete(&mut self, name: String) -> Result<bool, secret_store::StoreError> {
        self.writes.charge(&self.trip, 0)?;
        self.store.delete(&name).map_err(to_wit_store_error)
    }
}

/// Link `soracom:krypton/secret-store` into `linker`, served by the [`StoreCtx`] that `get`
/// hands out of the store data. Errors: the interface is linked already.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut StoreCtx,
) -> anyhow::Result<()> {
    secret_store::add_to_linker::<T, wasmtime::component::HasSelf<StoreCtx>>(linker, get)?;
    Ok(())
}

fn to_wit_store_error(e: StoreError) -> secret_store::StoreError {
    match e {
        StoreError::InvalidName(n) => secret_store::StoreError::InvalidName(n),
        StoreError::TooLarge(n) => secret_store::StoreError::TooLarge(n),
        StoreError::Io(m) => secret_store::StoreError::Io(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SecretStore::open(tmp.path().join("store")).unwrap();
        assert_eq!(store.get("azure-iot").unwrap(), None);
        store.put("azure-iot", b"one").unwrap();
        store.put("azure-iot", b"two").unwrap();
        assert_eq!(
            store.get("azure-iot").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.dir().join("azure-iot.json")), 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["azure-iot.json"]);
        assert!(store.delete("azure-iot").unwrap());
        assert!(!store.delete("azure-iot").unwrap());
    }

    #[test]
    fn a_shared_directory_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
        let err = SecretStore::open(&shared).unwrap_err();
        assert!(err.to_string().contains("has mode 755"), "{err}");
        assert_eq!(
            fs::metadata(&shared).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(
            SecretStore::open(&file)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
        // Created with parents; the leaf is 0700.
        let nested = tmp.path().join("a/b/store");
        SecretStore::open(&nested).unwrap();
        assert_eq!(
            fs::metadata(&nested).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn stale_temp_files_go_under_the_lock_and_odd_files_are_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let store = SecretStore::open(&dir).unwrap();
        // Two leftovers: one names a pid that does not exist, one names this live process
        // (pids repeat, and a container has its own): the lock, not the pid, decides.
        let dead = dir.join(".aws-iot.json.tmp-0-3");
        let live = dir.join(format!(".aws-iot.json.tmp-{}-9", std::process::id()));
        fs::write(&dead, b"half").unwrap();
        fs::write(&live, b"half too").unwrap();
        // Opening (no lock) removes nothing: another process may be mid-write.
        SecretStore::open(&dir).unwrap();
        assert!(dead.exists() && live.exists());
        let held = store.lock(Duration::ZERO).unwrap();
        assert!(!dead.exists(), "a stale temp file survived the lock");
        assert!(
            !live.exists(),
            "a temp file naming a live pid survived the lock"
        );
        // A second writer is refused while the first holds the lock, and learns its pid.
        fs::write(&dead, b"half").unwrap();
        match store.lock(Duration::from_millis(100)) {
            Err(LockError::Busy { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        assert!(dead.exists(), "removed without holding the lock");
        drop(held);
        drop(store.lock(Duration::ZERO).unwrap());
        assert!(!dead.exists());
        std::os::unix::fs::symlink("/dev/zero", dir.join("userdata.json")).unwrap();
        assert!(
            matches!(store.get("userdata"), Err(StoreError::Io(m)) if m.contains("not a regular file"))
        );
        let big = fs::File::create(dir.join("arc.json")).unwrap();
        big.set_len(MAX_BUNDLE_BYTES + 1).unwrap();
        assert_eq!(
            store.get("arc"),
            Err(StoreError::TooLarge(MAX_BUNDLE_BYTES))
        );
    }

    /// Issue 18 item 14: a stock run's in-flight temp file, under its fresh `.run-lock`,
    /// survives the host's lock (which is refused); with the lock stale, both go.
    #[test]
    fn a_stock_runs_lock_keeps_its_temp_file_and_a_stale_one_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let store = SecretStore::open(&dir).unwrap();
        let run_lock = dir.join(layout::RUN_LOCK_FILE);
        let in_flight = dir.join(layout::temp_file_name("aws-iot.json", 0x1234));
        let stock = layout::RunLockHolder::Wasi(0xfeed).token();
        fs::write(&run_lock, &stock).unwrap();
        fs::write(&in_flight, b"private key in flight").unwrap();
        match store.lock(Duration::from_millis(120)) {
            Err(LockError::Busy { path, holder }) => {
                assert_eq!(path, run_lock);
                assert_eq!(holder, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            in_flight.exists(),
            "a stock run's in-flight temp file was removed"
        );
        assert_eq!(fs::read_to_string(&run_lock).unwrap(), stock);
        // The stock run was killed: its lock is left, 5 minutes old.
        let old = std::time::SystemTime::now() - layout::RUN_LOCK_STALE_AFTER;
        fs::File::options()
            .write(true)
            .open(&run_lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let held = store.lock(Duration::ZERO).unwrap();
        assert!(!in_flight.exists(), "a killed run's temp file survived");
        let own = format!("host {}\n", std::process::id());
        assert_eq!(fs::read_to_string(&run_lock).unwrap(), own);
        assert_eq!(
            fs::metadata(&run_lock).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(held);
        assert!(!run_lock.exists(), "the host left its .run-lock behind");
        // A killed krypton-host's `.run-lock` is taken over at once (the flock is free).
        fs::write(&run_lock, layout::RunLockHolder::Host(u32::MAX).token()).unwrap();
        let held = store.lock(Duration::ZERO).unwrap();
        assert_eq!(fs::read_to_string(&run_lock).unwrap(), own);
        // A lock file another writer replaced is not removed by our release.
        fs::write(&run_lock, &stock).unwrap();
        drop(held);
        assert_eq!(fs::read_to_string(&run_lock).unwrap(), stock);
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SecretStore::open(tmp.path().join("store")).unwrap();
        for bad in ["../x", "a/b", "", "UPPER", ".hidden", &"a".repeat(65)] {
            assert!(
                matches!(store.put(bad, b"x"), Err(StoreError::InvalidName(_))),
                "{bad}"
            );
        }
        let big = vec![0u8; MAX_BUNDLE_BYTES as usize + 1];
        assert_eq!(
            store.put("big", &big),
            Err(StoreError::TooLarge(MAX_BUNDLE_BYTES))
        );
    }
}
