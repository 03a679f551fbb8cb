//! `soracom:krypton/secret-store@0.6.0` over `wasi:filesystem`: the secret store of the
//! provisioning component on a runtime that offers only WASI (the stock `wasmtime` CLI), for
//! composition into `krypton-cli.wasm`.
//!
//! Layout: `krypton-host`'s, from the same source (`krypton_contract::store`): one file
//! `<name>.json` per bundle in the directory preopened at the guest path [`STORE_DIR`]
//! (`wasmtime run --dir HOST_DIR::/store`), names checked (1-64 bytes of `[a-z0-9-]`) before
//! any path is built, bundles of at most `MAX_BUNDLE_BYTES`. A `put` writes a temporary file
//! `.<name>.json.tmp-<16 hex digits>` (a random number: WASI has no process id) in that
//! directory, syncs it, renames it over the bundle and syncs the directory, so that after a
//! crash the store holds the old bundle or the new one, never a mix (`wasi:filesystem`
//! `rename-at` is POSIX `rename(2)` on a POSIX host: atomic within a file system).
//!
//! One writer at a time: WASI has no `flock(2)`, so the writer lock is the file
//! `krypton_contract::store::RUN_LOCK_FILE` (`/store/.run-lock`), created exclusively
//! (`open-at` with `create` and `exclusive`: `O_CREAT|O_EXCL` on a POSIX host) and holding
//! `wasi <random run id>`; `krypton-host` creates the same file under its own `flock(2)`, so
//! the two exclude each other. Its scope is the run: this component also exports
//! `soracom:krypton-plugin/run-lock`, whose `acquire` the command front end calls before
//! `provision` (so the check, the mint and the store of one run are one unit, and a second
//! run fails at once with "another run holds the store ...", exit 9, before anything reaches
//! Krypton) and whose `release` it calls when `provision` returned. A `put` or `delete` with
//! no lock held takes it (a front end that never calls `acquire`) and keeps it to the end of
//! the process; each write first checks that the lock file still holds this run's id. A
//! run killed before `release` leaves its lock: it counts as stale
//! [`RUN_LOCK_STALE_AFTER`](krypton_contract::store::RUN_LOCK_STALE_AFTER) (5 minutes) after
//! it was written (by its modification time), when the next writer removes it and takes its
//! own. Holding the lock, a run removes leftover temp files (which may hold private keys):
//! a temp file is in flight only while its writer holds the lock. Removing a stale lock and
//! creating one's own are two steps (WASI has no atomic "replace if unchanged"): two writers
//! that take over the same stale lock in the same instant may both create theirs, one after
//! the other; the one whose lock was removed finds another id in the file at its first write
//! (the component's store probe, made before any call to Krypton) and stops, writing nothing.
//!
//! WASI has no file modes (`wasi:filesystem` 0.2 has neither `chmod` nor a mode on create,
//! and its `stat` reports none), so this adapter can neither set nor check them: files get
//! the runtime's defaults (its umask: 0644 in the usual case). The documented invocation
//! makes that safe: a private preopened directory (`mkdir -m 700`) and `umask 077` before
//! `wasmtime run` (README, docs/other-runtimes.md). `krypton-host` sets 0600/0700 itself and
//! refuses a store directory group or others can reach.

#![cfg(target_arch = "wasm32")]

// SAFETY: the only unsafe code is what wit-bindgen generates (the canonical ABI glue of the
// exported interface); the store itself is safe Rust over `std::fs`.
#[allow(unsafe_code)]
// Generated from the WIT, whose `///` comments are the documentation of these items.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package soracom:krypton-plugin;
            /// The writer lock of one run of a stock runtime (see the crate docs).
            interface run-lock {
                /// Take the store's writer lock for this run; an error (the message to print,
                /// e.g. another run holds the store) when it cannot be had.
                acquire: func() -> result<_, string>;
                /// Release the lock taken by `acquire` or by a write, if still this run's.
                release: func();
            }
            world store-fs {
                export soracom:krypton/secret-store@0.6.0;
                export run-lock;
            }
        ",
        path: "../../../wit",
        world: "soracom:krypton-plugin/store-fs",
    });
}

use bindings::exports::soracom::krypton::secret_store::{Guest, StoreError};
use bindings::exports::soracom::krypton_plugin::run_lock;
use krypton_contract::store::{self as layout, MAX_BUNDLE_BYTES, RUN_LOCK_FILE, RunLockHolder};
use std::cell::Cell;
use std::fs;
use std::io::{ErrorKind, Read as _};
use std::path::{Path, PathBuf};
use wasi::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

/// The guest path of the store's preopened directory.
pub const STORE_DIR: &str = "/store";

struct Store;

impl From<layout::StoreError> for StoreError {
    fn from(e: layout::StoreError) -> Self {
        match e {
            layout::StoreError::InvalidName(name) => StoreError::InvalidName(name),
            layout::StoreError::TooLarge(max) => StoreError::TooLarge(max),
            layout::StoreError::Io(message) => StoreError::Io(message),
        }
    }
}

/// The bundle file of `name`, after checking the name as the contract says
/// ([`layout::bundle_file_name`]).
fn bundle_path(name: &str) -> Result<PathBuf, StoreError> {
    Ok(PathBuf::from(STORE_DIR).join(layout::bundle_file_name(name)?))
}

/// An I/O error naming the operation and the file, never the value.
fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> StoreError {
    layout::StoreError::io(what, path, e).into()
}

/// Sync the store directory so that a rename or removal survives a power cut. A runtime that
/// cannot sync a directory (`wasi:filesystem` leaves it to the host) answers "unsupported";
/// the file itself was synced, so that is not an error.
fn sync_dir() -> Result<(), StoreError> {
    let dir = std::path::Path::new(STORE_DIR);
    match fs::File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::Unsupported | ErrorKind::PermissionDenied
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(io("syncing", dir, e)),
    }
}

/// The preopened store directory ([`STORE_DIR`]) as a `wasi:filesystem` descriptor. Errors:
/// the runtime preopened no such directory (`--dir HOST_DIR::/store` missing).
fn store_dir() -> Result<Descriptor, String> {
    wasi::filesystem::preopens::get_directories()
        .into_iter()
        .find_map(|(dir, guest_path)| (guest_path == STORE_DIR).then_some(dir))
        .ok_or_else(|| {
            format!(
                "no directory is preopened at {STORE_DIR}; run with --dir HOST_DIR::{STORE_DIR}"
            )
        })
}

/// Create `name` in `dir` (it must not exist), write all of `value` and sync it.
///
/// Written on `wasi:filesystem` itself rather than `std::fs`: std's `OpenOptions` asks for
/// more descriptor flags than a write needs (the `mutate-directory` right of WASI preview 1's
/// heritage), which some runtimes refuse (jco's Node.js shim answers `unsupported`); this asks
/// for `write` only and never follows a symlink.
fn write_synced(dir: &Descriptor, name: &str, value: &[u8]) -> Result<(), std::io::Error> {
    let file = dir
        .open_at(
            PathFlags::empty(),
            name,
            OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
            DescriptorFlags::WRITE,
        )
        .map_err(wasi_error)?;
    let mut offset = 0usize;
    while offset < value.len() {
        let written = file
            .write(&value[offset..], offset as u64)
            .map_err(wasi_error)?;
        if written == 0 {
            return Err(std::io::Error::new(ErrorKind::WriteZero, "wrote 0 bytes"));
        }
        offset += written as usize;
    }
    file.sync().map_err(wasi_error)
}

/// A `wasi:filesystem` error code as an `io::Error` with its WASI name (no value in it).
fn wasi_error(code: ErrorCode) -> std::io::Error {
    let kind = match code {
        ErrorCode::Unsupported => ErrorKind::Unsupported,
        ErrorCode::Access | ErrorCode::NotPermitted => ErrorKind::PermissionDenied,
        ErrorCode::Exist => ErrorKind::AlreadyExists,
        ErrorCode::NoEntry => ErrorKind::NotFound,
        _ => ErrorKind::Other,
    };
    std::io::Error::new(kind, format!("{code:?}"))
}

thread_local! {
    /// The run id this instance wrote into [`RUN_LOCK_FILE`] while it holds the lock.
    static HELD: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The guest path of the writer lock file.
fn run_lock_path() -> PathBuf {
    PathBuf::from(STORE_DIR).join(RUN_LOCK_FILE)
}

/// Who holds the lock file now (`None`: there is none).
fn run_lock_holder() -> Result<Option<RunLockHolder>, std::io::Error> {
    let mut content = Vec::new();
    match fs::File::open(run_lock_path()) {
        Ok(file) => {
            file.take(layout::MAX_RUN_LOCK_BYTES)
                .read_to_end(&mut content)?;
            Ok(Some(RunLockHolder::parse(&content)))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Take the writer lock for this instance (see the crate docs), then remove leftover temp
/// files. Errors: the message to print (another run holds the store, or an I/O failure).
fn acquire() -> Result<(), String> {
    if HELD.get().is_some() {
        return Ok(());
    }
    let dir = store_dir()?;
    let run = wasi::random::random::get_random_u64();
    let path = run_lock_path();
    let failed = |what: &str, e: std::io::Error| layout::StoreError::io(what, &path, e).to_string();
    // Three tries: a stale lock removed, then another run's removal racing ours.
    for _ in 0..3 {
        match write_synced(
            &dir,
            RUN_LOCK_FILE,
            RunLockHolder::Wasi(run).token().as_bytes(),
        ) {
            Ok(()) => {
                HELD.set(Some(run));
                remove_leftovers(&dir);
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => {
                // Created but not written: not a lock anyone can name.
                let _ = dir.unlink_file_at(RUN_LOCK_FILE);
                return Err(failed("creating", e));
            }
        }
        let modified = match dir.stat_at(PathFlags::empty(), RUN_LOCK_FILE) {
            Ok(stat) => stat.data_modification_timestamp.map_or(0, |t| t.seconds),
            Err(ErrorCode::NoEntry) => continue,
            Err(e) => return Err(failed("examining", wasi_error(e))),
        };
        let holder = run_lock_holder()
            .map_err(|e| failed("reading", e))?
            .unwrap_or(RunLockHolder::Unknown);
        let now = wasi::clocks::wall_clock::now().seconds;
        if !layout::is_run_lock_stale(modified, now) {
            let age = now.saturating_sub(modified);
            return Err(layout::run_lock_busy_message(
                Path::new(STORE_DIR),
                holder,
                age,
            ));
        }
        match dir.unlink_file_at(RUN_LOCK_FILE) {
            Ok(()) | Err(ErrorCode::NoEntry) => {}
            Err(e) => return Err(failed("removing the stale lock", wasi_error(e))),
        }
    }
    Err(format!(
        "{}: created and removed by other runs three times in a row; try again",
        path.display()
    ))
}

/// Remove the temp files a killed writer left (they may hold private keys); called with the
/// lock held, when none can be in flight. Best effort: a failure leaves the file for the next
/// writer.
fn remove_leftovers(dir: &Descriptor) {
    let Ok(entries) = fs::read_dir(STORE_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        if let Some(name) = entry
            .file_name()
            .to_str()
            .filter(|n| layout::is_temp_file_name(n))
        {
            let _ = dir.unlink_file_at(name);
        }
    }
    let _ = sync_dir();
}

/// Release the lock when this instance still holds it (the file names its run id).
fn release() {
    let Some(run) = HELD.take() else { return };
    let ours = matches!(run_lock_holder(), Ok(Some(RunLockHolder::Wasi(id))) if id == run);
    if let (true, Ok(dir)) = (ours, store_dir()) {
        let _ = dir.unlink_file_at(RUN_LOCK_FILE);
        let _ = sync_dir();
    }
}

/// Before a write: hold the lock (taking it if no one called `acquire`), and check that the
/// file still names this run (a run that took it over as stale would write too).
fn ensure_writer() -> Result<(), StoreError> {
    let Some(run) = HELD.get() else {
        return acquire().map_err(StoreError::Io);
    };
    match run_lock_holder() {
        Ok(Some(RunLockHolder::Wasi(id))) if id == run => Ok(()),
        _ => {
            HELD.set(None);
            Err(StoreError::Io(format!(
                "{} no longer holds this run's id (another run took the store over); nothing \
                 was written: run again",
                run_lock_path().display()
            )))
        }
    }
}

impl run_lock::Guest for Store {
    fn acquire() -> Result<(), String> {
        acquire()
    }

    fn release() {
        release()
    }
}

impl Guest for Store {
    fn get(name: String) -> Result<Option<Vec<u8>>, StoreError> {
        let path = bundle_path(&name)?;
        let open = |_: &fs::Metadata| {
            fs::File::open(&path).map_err(|e| layout::StoreError::io("reading", &path, e))
        };
        Ok(layout::read_bundle(&path, open)?)
    }

    fn put(name: String, value: Vec<u8>) -> Result<(), StoreError> {
        let file_name = layout::bundle_file_name(&name)?;
        let path = PathBuf::from(STORE_DIR).join(&file_name);
        if value.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(StoreError::TooLarge(MAX_BUNDLE_BYTES));
        }
        ensure_writer()?;
        let tmp_name = layout::temp_file_name(&file_name, wasi::random::random::get_random_u64());
        let tmp = PathBuf::from(STORE_DIR).join(&tmp_name);
        let dir = store_dir().map_err(StoreError::Io)?;
        if let Err(e) = write_synced(&dir, &tmp_name, &value) {
            let _ = dir.unlink_file_at(&tmp_name);
            return Err(io("writing", &tmp, e));
        }
        if let Err(e) = dir.rename_at(&tmp_name, &dir, &file_name) {
            let _ = dir.unlink_file_at(&tmp_name);
            return Err(io("renaming into place", &path, wasi_error(e)));
        }
        sync_dir()
    }

    fn delete(name: String) -> Result<bool, StoreError> {
        let path = bundle_path(&name)?;
        ensure_writer()?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir().map(|()| true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("removing", &path, e)),
        }
    }
}

// SAFETY: the export glue wit-bindgen generates; see `bindings`.
#[allow(unsafe_code)]
mod export {
    use super::{Store, bindings};
    bindings::export!(Store with_types_in bindings);
}
