//! The `soracom:krypton/secret-store` capability: named bundles in a directory on disk.
//!
//! Layout: `<dir>/<name>.json`, the directory mode 0700, each file 0600, owned by the user the
//! host runs as. A put writes a temporary file in the same directory (created 0600 with
//! `O_EXCL`), fsyncs it, renames it over the old file and fsyncs the directory, so a crash or
//! power cut at any point leaves either the old bundle or the new one, never a mix (POSIX
//! `rename(2)` is atomic within a file system). The host never parses a bundle: its content
//! is the component's business.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest bundle accepted, bytes. Krypton bundles are a few KiB.
pub const MAX_BUNDLE_BYTES: u64 = 1024 * 1024;

/// Why a store operation failed (mirrors WIT `store-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The name is not 1-64 bytes of `[a-z0-9-]`.
    #[error("invalid bundle name `{0}`: use 1-64 characters of a-z, 0-9 and -")]
    InvalidName(String),
    /// The value exceeds [`MAX_BUNDLE_BYTES`].
    #[error("bundle larger than {0} bytes")]
    TooLarge(u64),
    /// A file-system failure; names the operation and path, never the content.
    #[error("{0}")]
    Io(String),
}

/// A directory of bundles. Cheap to clone; every operation goes to the file system.
#[derive(Debug, Clone)]
pub struct SecretStore {
    dir: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

impl SecretStore {
    /// Open the store at `dir`, creating it (mode 0700, parents as needed) when missing.
    ///
    /// An existing directory is used only when group and others have no access to it: the
    /// store never loosens or tightens the mode of a directory it did not create (think of
    /// `--store /tmp` by mistake). Errors: [`StoreError::Io`] when the directory cannot be
    /// created, is not a directory, or is open to group or others.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = dir.into();
        match fs::metadata(&dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(StoreError::Io(format!(
                    "the store path {} exists and is not a directory",
                    dir.display()
                )));
            }
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(StoreError::Io(format!(
                        "the store directory {} has mode {mode:03o}: group or others can reach it; \
                         use a dedicated directory, or `chmod 700` it if it holds nothing else",
                        dir.display()
                    )));
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| io_err("creating store directory", &dir, e))?;
                // The umask may have removed bits; make the leaf exactly 0700.
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| io_err("setting mode 0700 on", &dir, e))?;
            }
            Err(e) => return Err(io_err("reading", &dir, e)),
        }
        let store = SecretStore { dir };
        store.remove_stale_temp_files();
        Ok(store)
    }

    /// Remove temporary files left by a writer that was killed mid-write (they may hold a
    /// private key that a later rotation would otherwise leave behind). A temp file whose
    /// writer process is still alive is left alone.
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((_, tail)) = name.split_once(".json.tmp-") else {
                continue;
            };
            if !name.starts_with('.') {
                continue;
            }
            let pid = tail.split('-').next().unwrap_or_default();
            let alive = !pid.is_empty() && Path::new("/proc").join(pid).exists();
            if !alive && fs::remove_file(entry.path()).is_ok() {
                tracing::warn!(file = %entry.path().display(), "removed a temporary bundle file left by an interrupted write");
            }
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, StoreError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(StoreError::InvalidName(name.chars().take(80).collect()));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// The bundle stored under `name`, or `None`. Only a regular file (not a symlink) of at
    /// most [`MAX_BUNDLE_BYTES`] is read.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        use std::io::Read as _;
        let path = self.path(name)?;
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &path, e)),
        };
        if !meta.file_type().is_file() {
            return Err(StoreError::Io(format!(
                "{} is not a regular file (a symlink or a device?); remove it",
                path.display()
            )));
        }
        if meta.len() > MAX_BUNDLE_BYTES {
            return Err(StoreError::TooLarge(MAX_BUNDLE_BYTES));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(file = %path.display(), mode = format!("{mode:03o}"), "bundle file is readable by group or others; it should be 0600 (it will be on the next write)");
        }
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(MAX_BUNDLE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| io_err("reading", &path, e))?;
        if bytes.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(StoreError::TooLarge(MAX_BUNDLE_BYTES));
        }
        Ok(Some(bytes))
    }

    /// Replace the bundle under `name` atomically (see the module docs).
    pub fn put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name)?;
        if value.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(StoreError::TooLarge(MAX_BUNDLE_BYTES));
        }
        let tmp = self.dir.join(format!(
            ".{name}.json.tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io_err("creating", &tmp, e))?;
            file.write_all(value)
                .map_err(|e| io_err("writing", &tmp, e))?;
            file.sync_all().map_err(|e| io_err("syncing", &tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| io_err("renaming into place", &path, e))?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("syncing directory", &self.dir, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Remove the bundle under `name`; `true` when there was one.
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io_err("syncing directory", &self.dir, e))?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("removing", &path, e)),
        }
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
    fn stale_temp_files_go_and_odd_files_are_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let store = SecretStore::open(&dir).unwrap();
        // A writer that no longer exists (pid 0 has no /proc entry) left a temp file.
        fs::write(dir.join(".aws-iot.json.tmp-0-3"), b"half").unwrap();
        let live = format!(".aws-iot.json.tmp-{}-9", std::process::id());
        fs::write(dir.join(&live), b"in progress").unwrap();
        SecretStore::open(&dir).unwrap();
        assert!(!dir.join(".aws-iot.json.tmp-0-3").exists());
        assert!(dir.join(&live).exists(), "a live writer's file was removed");
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
