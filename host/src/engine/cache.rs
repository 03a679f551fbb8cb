//! The compile cache (feature `jit`): compiled components kept in a private directory so that
//! a CLI call after the first skips Cranelift (~0.5 s in a debug build, ~0.2 s in release).
//!
//! Compiled code is native code wasmtime runs without checks, so the directory must be ours
//! alone ([`CachePolicy`]); entries are named by the component's SHA-256, the wasmtime version
//! and the engine's compatibility hash ([`Runtime::cache_key`]), written atomically, and read
//! through the checked directory descriptor.
//!
//! The cache is bounded: after each write, the least recently used entries go until at most
//! [`MAX_CACHE_ENTRIES`] entries of at most [`MAX_CACHE_BYTES`] in all remain (a read marks an
//! entry used by setting its modification time), so a daemon whose component changes at every
//! release keeps the serving component and the one before it, not one entry per release ever
//! compiled.

use super::Runtime;
#[cfg(feature = "jit")]
use rustix::fs::OFlags;
#[cfg(feature = "jit")]
use sha2::{Digest as _, Sha256};
#[cfg(feature = "jit")]
use std::ffi::CString;
#[cfg(feature = "jit")]
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
#[cfg(feature = "jit")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
#[cfg(feature = "jit")]
use wasmtime::component::Component;

/// Where compiled components are cached when the environment decides
/// ([`CachePolicy::FromEnvironment`]): `$KRYPTON_CACHE_DIR` (empty: no cache), else
/// `$XDG_CACHE_HOME/krypton-host`, else `$HOME/.cache/krypton-host`. The directory is used
/// only if it passes the checks of [`CachePolicy`].
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KRYPTON_CACHE_DIR") {
        return (!dir.is_empty()).then(|| dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("krypton-host"))
}

/// Where a [`Runtime`] keeps compiled components.
///
/// Compiled code is native code that the host runs without further checks, so a cache
/// directory is used only when nobody else can write to it: it must be owned by the effective
/// user, have mode 0700 (no group or other bits), and not be a symlink. A missing directory is
/// created with mode 0700 (its parents with the default mode). Otherwise caching is off for
/// this runtime and one warning says why and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachePolicy {
    /// The directory of [`cache_dir`] (environment variables), if any.
    FromEnvironment,
    /// This directory, e.g. `<state directory>/cache` for the daemon.
    Directory(PathBuf),
    /// Compile every component on load.
    Off,
}

/// Largest cache entry read, bytes (the compiled component is ~5 MiB).
pub const MAX_CACHE_ENTRY_BYTES: u64 = 256 * 1024 * 1024;

/// Most entries the cache keeps: after each write, the least recently used entries beyond
/// this count go (an entry read counts as used). Four is room for the serving component, the
/// one before it (a roll-back target) and two more; an entry is 2.6 to 5 MB.
pub const MAX_CACHE_ENTRIES: usize = 4;

/// Most bytes the cache's entries may take together: after each write, the least recently used
/// entries go until the rest fit (the entry just written always stays).
pub const MAX_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Version of wasmtime this host is built with (pinned `=48.0.8` in `host/Cargo.toml`; a unit
/// test checks it against `Cargo.lock`). Part of every cache key.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Age after which a cache temp file is taken for the leftover of a crashed write and removed
/// when a runtime opens the cache (a write takes well under a second).
pub const STALE_CACHE_TEMP: Duration = Duration::from_secs(60 * 60);

#[cfg(feature = "jit")]
/// Prefix of cache temp files.
const CACHE_TEMP_PREFIX: &str = ".tmp-";

#[cfg(feature = "jit")]
/// Bytes of the SHA-256 of the serialized component that starts every cache entry.
const ENTRY_DIGEST_BYTES: usize = 32;

#[cfg(feature = "jit")]
/// An open cache directory that passed the checks of [`CachePolicy`]. Entries are reached only
/// through the descriptor (`openat`, `renameat`), so replacing the directory's path after the
/// check changes nothing.
pub(super) struct CompileCache {
    dir: std::fs::File,
    path: PathBuf,
}

#[cfg(feature = "jit")]
fn lowercase_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(feature = "jit")]
fn c_name(name: &str) -> std::io::Result<CString> {
    CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

#[cfg(feature = "jit")]
/// `openat(2)` relative to `dir`, never following a symlink in the last component
/// (`O_NOFOLLOW | O_CLOEXEC` are added to `flags`); `mode` is the mode of a created file.
fn open_at(
    dir: &std::fs::File,
    name: &str,
    flags: OFlags,
    mode: u32,
) -> std::io::Result<std::fs::File> {
    let name = c_name(name)?;
    let fd = rustix::fs::openat(
        dir,
        name.as_c_str(),
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(mode),
    )?;
    Ok(std::fs::File::from(fd))
}

#[cfg(feature = "jit")]
/// `renameat(2)` of `from` to `to`, both relative to `dir`.
fn rename_at(dir: &std::fs::File, from: &str, to: &str) -> std::io::Result<()> {
    let (from, to) = (c_name(from)?, c_name(to)?);
    Ok(rustix::fs::renameat(
        dir,
        from.as_c_str(),
        dir,
        to.as_c_str(),
    )?)
}

#[cfg(feature = "jit")]
/// `unlinkat(2)` of `name` relative to `dir`; a failure is ignored (best-effort clean-up).
fn unlink_at(dir: &std::fs::File, name: &str) {
    if let Ok(name) = c_name(name) {
        let _ = rustix::fs::unlinkat(dir, name.as_c_str(), rustix::fs::AtFlags::empty());
    }
}

#[cfg(feature = "jit")]
impl CompileCache {
    /// Open `path` as a cache directory, or say why it cannot be one.
    fn open(path: &Path) -> Result<Self, String> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create its parent directory: {e}"))?;
                }
                match std::fs::DirBuilder::new().mode(0o700).create(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("cannot create it: {e}")),
                }
            }
            Err(e) => return Err(format!("cannot inspect it: {e}")),
            Ok(_) => {}
        }
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR)
                {
                    "it is a symlink or not a directory".to_string()
                } else {
                    format!("cannot open it: {e}")
                }
            })?;
        let meta = dir
            .metadata()
            .map_err(|e| format!("cannot inspect it: {e}"))?;
        let euid = rustix::process::geteuid().as_raw();
        if meta.uid() != euid {
            return Err(format!(
                "it is owned by uid {}, not by this process's uid {euid}",
                meta.uid()
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode != 0o700 {
            return Err(format!("its mode is {mode:04o}, not 0700"));
        }
        let cache = CompileCache {
            dir,
            path: path.to_path_buf(),
        };
        cache.remove_stale_temp_files();
        Ok(cache)
    }

    /// Remove temp files older than [`STALE_CACHE_TEMP`]: what a crash in the middle of
    /// [`CompileCache::write`] leaves. Names come from listing the path; each is then checked
    /// and removed relative to the checked descriptor, never following a symlink.
    fn remove_stale_temp_files(&self) {
        let Ok(listing) = std::fs::read_dir(&self.path) else {
            return;
        };
        for entry in listing.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !name.starts_with(CACHE_TEMP_PREFIX) {
                continue;
            }
            let Ok(file) = open_at(&self.dir, &name, OFlags::RDONLY | OFlags::NONBLOCK, 0) else {
                continue;
            };
            let stale = file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_CACHE_TEMP);
            if stale {
                tracing::debug!(file = %name, "removing a stale cache temp file");
                unlink_at(&self.dir, &name);
            }
        }
    }

    /// The entry `name`, without its leading digest, if it is present, a regular file owned by
    /// us of at most [`MAX_CACHE_ENTRY_BYTES`], and its digest matches; `None` otherwise.
    fn read(&self, name: &str) -> Option<Vec<u8>> {
        use std::io::Read as _;
        let file = match open_at(&self.dir, name, OFlags::RDONLY | OFlags::NONBLOCK, 0) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!(entry = name, error = %e, "cache entry unreadable; compiling");
                return None;
            }
        };
        let meta = file.metadata().ok()?;
        let euid = rustix::process::geteuid().as_raw();
        if !meta.is_file() || meta.uid() != euid || meta.len() > MAX_CACHE_ENTRY_BYTES {
            tracing::debug!(entry = name, "cache entry is not a file of ours; compiling");
            return None;
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        (&file)
            .take(MAX_CACHE_ENTRY_BYTES)
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() < ENTRY_DIGEST_BYTES {
            tracing::debug!(
                entry = name,
                bytes = bytes.len(),
                "cache entry truncated; compiling"
            );
            return None;
        }
        let body = bytes.split_off(ENTRY_DIGEST_BYTES);
        if Sha256::digest(&body)[..] != bytes[..] {
            tracing::debug!(
                entry = name,
                "cache entry does not match its digest; compiling"
            );
            return None;
        }
        // Used now: the pruning of `write` removes the least recently used entries first.
        if let Err(e) = file.set_modified(std::time::SystemTime::now()) {
            tracing::debug!(entry = name, error = %e, "could not mark the cache entry used");
        }
        Some(body)
    }

    /// Write `body` as entry `name`: a new 0600 temp file (`O_EXCL`), the digest and the body,
    /// fsync, rename over the entry, fsync the directory. The temp file is removed on failure.
    fn write(&self, name: &str, body: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = format!(
            "{CACHE_TEMP_PREFIX}{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let result = (|| {
            let mut file = open_at(
                &self.dir,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                0o600,
            )?;
            file.write_all(&Sha256::digest(body))?;
            file.write_all(body)?;
            file.sync_all()?;
            rename_at(&self.dir, &tmp, name)?;
            self.dir.sync_all()
        })();
        if result.is_err() {
            unlink_at(&self.dir, &tmp);
        }
        result?;
        self.prune(name);
        Ok(())
    }

    /// Remove the least recently used entries (oldest modification time first) until at most
    /// [`MAX_CACHE_ENTRIES`] entries of at most [`MAX_CACHE_BYTES`] in all remain; `keep`, the
    /// entry just written, always stays. Temp files are left to
    /// [`CompileCache::remove_stale_temp_files`]; a failure is ignored (best effort).
    fn prune(&self, keep: &str) {
        let Ok(listing) = std::fs::read_dir(&self.path) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, u64, String)> = listing
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                if name.starts_with(CACHE_TEMP_PREFIX) || !name.ends_with(".cwasm") {
                    return None;
                }
                let meta = entry.metadata().ok()?;
                meta.is_file()
                    .then(|| Some((meta.modified().ok()?, meta.len(), name)))
                    .flatten()
            })
            .collect();
        // Newest first; the entry just written first of all.
        entries.sort_by_key(|e| std::cmp::Reverse((e.2 == keep, e.0)));
        let mut total = 0u64;
        for (kept, (_, len, name)) in entries.into_iter().enumerate() {
            total = total.saturating_add(len);
            if name != keep && (kept >= MAX_CACHE_ENTRIES || total > MAX_CACHE_BYTES) {
                tracing::debug!(entry = %name, "removing a least recently used cache entry");
                unlink_at(&self.dir, &name);
                total -= len;
            }
        }
    }
}

/// A compiled component, linked and ready to instantiate (cheap to clone).
#[cfg(feature = "jit")]
/// A `std::hash::Hasher` that feeds SHA-256, to turn wasmtime's compatibility hash (a
/// `Hash` value) into stable bytes.
struct Sha256Hasher(Sha256);

#[cfg(feature = "jit")]
impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

impl Runtime {
    /// The cache of `policy`, or `None` (with one warning saying why) when its directory fails
    /// the checks of [`CachePolicy`].
    #[cfg(feature = "jit")]
    pub(super) fn open_cache(policy: CachePolicy) -> Option<CompileCache> {
        let dir = match policy {
            CachePolicy::FromEnvironment => cache_dir(),
            CachePolicy::Directory(dir) => Some(dir),
            CachePolicy::Off => None,
        };
        dir.and_then(|dir| match CompileCache::open(&dir) {
            Ok(cache) => Some(cache),
            Err(why) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "compilation cache off: {why}. Components are compiled on every load. To \
                     cache, give a directory owned by this user with mode 0700 (mkdir -m 0700 \
                     DIR), not a symlink (KRYPTON_CACHE_DIR, or empty to turn this warning off)"
                );
                None
            }
        })
    }

    /// The cache directory in use, if caching is on.
    #[cfg(feature = "jit")]
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_ref().map(|c| c.path.as_path())
    }

    /// The cache directory in use: none in the gateway build, which compiles nothing.
    #[cfg(not(feature = "jit"))]
    pub fn cache_dir(&self) -> Option<&Path> {
        None
    }

    /// The cache entry name of a component (feature `jit`): `<SHA-256 of the component bytes>-<wasmtime
    /// version>-<SHA-256 of the engine's precompile compatibility hash>.cwasm`, all hex.
    #[cfg(feature = "jit")]
    pub fn cache_key(&self, bytes: &[u8]) -> String {
        let mut compat = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut compat);
        format!(
            "{}-{WASMTIME_VERSION}-{}.cwasm",
            lowercase_hex(&Sha256::digest(bytes)),
            lowercase_hex(&compat.0.finalize())
        )
    }

    /// Compile `bytes`, or load the cached compilation of exactly these bytes for this engine.
    /// An entry that is missing, truncated, corrupt or refused by wasmtime is compiled anew
    /// and rewritten.
    #[cfg(feature = "jit")]
    pub(super) fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        let Some(cache) = &self.cache else {
            return Ok(Component::new(&self.engine, bytes)?);
        };
        let key = self.cache_key(bytes);
        if let Some(body) = cache.read(&key) {
            // SAFETY: wasmtime runs deserialized code unchecked, so the bytes must be what
            // `Component::serialize` (or `Engine::precompile_component`) produced with an engine
            // of this configuration. The entry's name carries the engine's precompile
            // compatibility hash and the wasmtime version (see `cache_key`), and `deserialize`
            // itself refuses bytes whose recorded wasmtime version or compilation settings differ
            // from this engine's. The entry was read through a
            // directory descriptor that was checked to be ours, mode 0700 and not a symlink, so
            // only this user (or root) can have written it; its SHA-256 matches, so it is
            // whole; and only `CompileCache::write` below writes entries, with what
            // `Component::serialize` produced for this key's bytes and engine.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize(&self.engine, &body) };
            match loaded {
                Ok(component) => {
                    tracing::debug!(entry = %key, "compiled component loaded from the cache");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::debug!(entry = %key, error = %e, "cache entry refused; compiling")
                }
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        match component.serialize() {
            Ok(body) => {
                if let Err(e) = cache.write(&key, &body) {
                    tracing::warn!(dir = %cache.path.display(), error = %e, "could not write the compilation cache entry");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not serialize the compiled component"),
        }
        Ok(component)
    }
}
