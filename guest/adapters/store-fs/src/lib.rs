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
//! WASI has no file modes: files get the host's defaults (its umask), so the host directory
//! itself must be private (`mkdir -m 700`); `krypton-host` sets 0600/0700 itself.

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
            world store-fs {
                export soracom:krypton/secret-store@0.6.0;
            }
        ",
        path: "../../../wit",
        world: "soracom:krypton-plugin/store-fs",
    });
}

use bindings::exports::soracom::krypton::secret_store::{Guest, StoreError};
use krypton_contract::store::{self as layout, MAX_BUNDLE_BYTES};
use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
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
fn store_dir() -> Result<Descriptor, StoreError> {
    wasi::filesystem::preopens::get_directories()
        .into_iter()
        .find_map(|(dir, guest_path)| (guest_path == STORE_DIR).then_some(dir))
        .ok_or_else(|| {
            StoreError::Io(format!(
                "no directory is preopened at {STORE_DIR}; run with --dir HOST_DIR::{STORE_DIR}"
            ))
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
        let tmp_name = layout::temp_file_name(&file_name, wasi::random::random::get_random_u64());
        let tmp = PathBuf::from(STORE_DIR).join(&tmp_name);
        let dir = store_dir()?;
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
