//! The secret store's layout on disk, the same for `krypton-host` (`--store DIR`) and the
//! `store-fs` adapter (the directory preopened at `/store`), so that either reads what the
//! other wrote:
//!
//! - one file per bundle, `<name>.json` ([`bundle_file_name`]), directly in the store
//!   directory; a name is 1-64 bytes of `[a-z0-9-]` ([`is_valid_name`], the rule WIT
//!   `store-error.invalid-name` states), so it can neither leave the directory nor start with
//!   a dot;
//! - a bundle is at most [`MAX_BUNDLE_BYTES`], on write and on read;
//! - a write goes to a temporary file in the same directory, `.<name>.json.tmp-<16 hex
//!   digits>` ([`temp_file_name`]), which is synced, renamed over the bundle (POSIX
//!   `rename(2)` is atomic within a file system) and followed by a sync of the directory: a
//!   crash leaves the old bundle or the new one, never a mix. A dot-file cannot collide with
//!   a bundle, and the 16 hex digits are unique among the writers of one directory: the host
//!   writes its process id (high 32 bits) and a counter (low 32 bits), the adapter (which has
//!   no process id under WASI) a random number;
//! - [`LOCK_FILE`] (`.lock`) is `krypton-host`'s lock among its own processes (`flock(2)`);
//! - [`RUN_LOCK_FILE`] (`.run-lock`) is the writer lock every writer shares, `krypton-host`
//!   and the `store-fs` adapter of a stock runtime alike (WASI has no `flock(2)`): a writer
//!   creates it exclusively (`O_CREAT|O_EXCL`, `wasi:filesystem` `open-at` with `create` and
//!   `exclusive`) holding a token that says who it is ([`RunLockHolder`]), keeps it while it
//!   writes and removes it when done. A writer that finds it present is refused ("another run
//!   holds the store", [`run_lock_busy_message`]) unless it is stale: its modification time
//!   is [`RUN_LOCK_STALE_AFTER`] or more away from now (the run that wrote it was killed), or
//!   it names a `krypton-host` process while the finder holds `krypton-host`'s `flock(2)` (no
//!   such process can be alive then). Only a writer holding it removes leftover temp files
//!   ([`is_temp_file_name`]): a temp file is in flight exactly while its writer holds the lock.
//!
//! A bundle is read by [`read_bundle`]: only a regular file, never more than the cap.

use std::fmt;
use std::fs;
use std::io::{ErrorKind, Read as _};
use std::path::Path;

/// Largest bundle accepted, bytes. Krypton bundles are a few KiB.
pub const MAX_BUNDLE_BYTES: u64 = 1024 * 1024;

/// Longest bundle name, bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// The writer lock's file inside the store directory.
pub const LOCK_FILE: &str = ".lock";

/// The writer lock every writer of the store shares (see the module docs): `krypton-host`
/// and a stock runtime's `store-fs` adapter exclude each other through it.
pub const RUN_LOCK_FILE: &str = ".run-lock";

/// Age from which a [`RUN_LOCK_FILE`] whose writer cannot be asked counts as left by a killed
/// run: 5 minutes, more than twice the 120 s deadline a stock run (`krypton-cli.wasm`) gives a
/// provisioning call, after which the component stops on its own. Its age is the distance
/// between its modification time and now, either way (a clock set back does not keep a
/// leftover alive for good).
pub const RUN_LOCK_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// Longest [`RUN_LOCK_FILE`] content read, bytes: a token is at most 22 bytes.
pub const MAX_RUN_LOCK_BYTES: u64 = 64;

/// Who wrote a [`RUN_LOCK_FILE`], parsed from its content ([`RunLockHolder::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLockHolder {
    /// `krypton-host` process `pid` (content `host <pid>`).
    Host(u32),
    /// A run of a WASI runtime (content `wasi <16 hex digits>`): a random run id, as WASI has
    /// no process id.
    Wasi(u64),
    /// Anything else (a partly written or foreign file): judged by its age only.
    Unknown,
}

impl RunLockHolder {
    /// The file content that names this holder: `host <pid>\n`, `wasi <16 hex>\n` (empty
    /// for [`RunLockHolder::Unknown`]).
    pub fn token(&self) -> String {
        match self {
            RunLockHolder::Host(pid) => format!("host {pid}\n"),
            RunLockHolder::Wasi(run) => format!("wasi {run:016x}\n"),
            RunLockHolder::Unknown => String::new(),
        }
    }

    /// The holder a lock file's content names (surrounding white space ignored).
    pub fn parse(content: &[u8]) -> Self {
        let text = std::str::from_utf8(content).unwrap_or("").trim();
        let host = text.strip_prefix("host ").and_then(|pid| pid.parse().ok());
        let wasi = text
            .strip_prefix("wasi ")
            .filter(|run| run.len() == 16)
            .and_then(|run| u64::from_str_radix(run, 16).ok());
        match (host, wasi) {
            (Some(pid), _) => RunLockHolder::Host(pid),
            (_, Some(run)) => RunLockHolder::Wasi(run),
            _ => RunLockHolder::Unknown,
        }
    }
}

impl fmt::Display for RunLockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunLockHolder::Host(pid) => write!(f, "krypton-host process {pid}"),
            RunLockHolder::Wasi(run) => write!(f, "a WASI runtime's run {run:016x}"),
            RunLockHolder::Unknown => f.write_str("an unknown writer"),
        }
    }
}

/// Whether a [`RUN_LOCK_FILE`] modified at `modified` counts as left by a killed run at
/// `now` (both in seconds since the Unix epoch): their distance, either way, is at least
/// [`RUN_LOCK_STALE_AFTER`]. A `krypton-host` holding its own `flock(2)` also treats a
/// [`RunLockHolder::Host`] lock as stale, whatever its age (see the module docs).
pub fn is_run_lock_stale(modified_secs: u64, now_secs: u64) -> bool {
    modified_secs.abs_diff(now_secs) >= RUN_LOCK_STALE_AFTER.as_secs()
}

/// The error of a writer refused because `holder` holds the store at `dir` (as the writer
/// names it) since `age_secs` seconds: what to do next included.
pub fn run_lock_busy_message(dir: &Path, holder: RunLockHolder, age_secs: u64) -> String {
    format!(
        "another run holds the store {dir}: {holder} took its writer lock {age_secs} s ago; \
         try again when it has finished (if no run is going on, one was killed: its lock counts \
         as stale {stale} s after it was taken, or remove {lock})",
        dir = dir.display(),
        stale = RUN_LOCK_STALE_AFTER.as_secs(),
        lock = dir.join(RUN_LOCK_FILE).display(),
    )
}

/// What a temp file's name holds between the file it replaces and its unique digits.
const TEMP_INFIX: &str = ".tmp-";

/// Why a store operation failed (mirrors WIT `store-error`; the host's store and the
/// adapter's convert it into their own bindings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The name is not 1-64 bytes of `[a-z0-9-]` (at most 80 characters of it).
    InvalidName(String),
    /// The value exceeds [`MAX_BUNDLE_BYTES`] (the limit, bytes).
    TooLarge(u64),
    /// A file-system failure; names the operation and path, never the content.
    Io(String),
}

impl StoreError {
    /// An I/O failure: `WHAT PATH: ERROR` (e.g. `reading /store/arc.json: permission
    /// denied`).
    pub fn io(what: &str, path: &Path, e: std::io::Error) -> Self {
        StoreError::Io(format!("{what} {}: {e}", path.display()))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InvalidName(name) => write!(
                f,
                "invalid bundle name `{name}`: use 1-64 characters of a-z, 0-9 and -"
            ),
            StoreError::TooLarge(max) => write!(f, "bundle larger than {max} bytes"),
            StoreError::Io(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StoreError {}

/// Whether `name` is a bundle name the store accepts: 1-64 bytes of `[a-z0-9-]`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The file of the bundle `name` inside the store directory: `<name>.json`. Errors:
/// [`StoreError::InvalidName`] (with the first 80 characters of `name`) when it is not
/// [`is_valid_name`].
pub fn bundle_file_name(name: &str) -> Result<String, StoreError> {
    if !is_valid_name(name) {
        return Err(StoreError::InvalidName(name.chars().take(80).collect()));
    }
    Ok(format!("{name}.json"))
}

/// The temporary file an atomic write of `file_name` goes through, in the same directory:
/// `.<file_name>.tmp-<unique as 16 lowercase hex digits>`.
pub fn temp_file_name(file_name: &str, unique: u64) -> String {
    format!(".{file_name}{TEMP_INFIX}{unique:016x}")
}

/// Whether a file name in the store directory is a bundle's temporary file (a dot-file with
/// `.json.tmp-` in it), as [`temp_file_name`] writes and as earlier versions wrote
/// (`.<name>.json.tmp-<pid>-<n>`): left over, it may hold a private key.
pub fn is_temp_file_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(&format!(".json{TEMP_INFIX}"))
}

/// The bundle file at `path`, or `None` when there is none. Only a regular file (not a
/// symlink, a directory or a device) of at most [`MAX_BUNDLE_BYTES`] is read: `open` opens it
/// once those checks passed (it gets the file's metadata, e.g. to check the mode, and may
/// refuse with an error of its own), and at most the cap is read from what it returns.
///
/// Errors: [`StoreError::Io`] (naming the path) when the file cannot be examined, opened or
/// read, or is not a regular file; [`StoreError::TooLarge`] when it is over the cap.
pub fn read_bundle(
    path: &Path,
    open: impl FnOnce(&fs::Metadata) -> Result<fs::File, StoreError>,
) -> Result<Option<Vec<u8>>, StoreError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("reading", path, e)),
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
    let file = open(&meta)?;
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("reading", path, e))?;
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(StoreError::TooLarge(MAX_BUNDLE_BYTES));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_path_is_built() {
        assert_eq!(bundle_file_name("azure-iot").unwrap(), "azure-iot.json");
        assert_eq!(bundle_file_name(&"a".repeat(64)).unwrap().len(), 69);
        for bad in [
            "",
            "../x",
            "a/b",
            "UPPER",
            ".hidden",
            "a_b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
            assert!(
                matches!(bundle_file_name(bad), Err(StoreError::InvalidName(_))),
                "{bad:?}"
            );
        }
        // The name in the error is cut to 80 characters.
        let long = "X".repeat(200);
        assert_eq!(
            bundle_file_name(&long),
            Err(StoreError::InvalidName("X".repeat(80)))
        );
        assert_eq!(
            StoreError::InvalidName("A".into()).to_string(),
            "invalid bundle name `A`: use 1-64 characters of a-z, 0-9 and -"
        );
        assert_eq!(
            StoreError::TooLarge(MAX_BUNDLE_BYTES).to_string(),
            "bundle larger than 1048576 bytes"
        );
    }

    #[test]
    fn temp_files_are_dot_files_with_sixteen_hex_digits() {
        assert_eq!(
            temp_file_name("aws-iot.json", 0x0000_04d2_0000_0003),
            ".aws-iot.json.tmp-000004d200000003"
        );
        assert!(is_temp_file_name(".aws-iot.json.tmp-000004d200000003"));
        // What earlier versions of the host wrote is a leftover too.
        assert!(is_temp_file_name(".aws-iot.json.tmp-1234-3"));
        for other in ["aws-iot.json", LOCK_FILE, ".aws-iot.json", "x.json.tmp-1"] {
            assert!(!is_temp_file_name(other), "{other}");
        }
    }

    #[test]
    fn run_lock_tokens_round_trip_and_age_decides_staleness() {
        for holder in [
            RunLockHolder::Host(4242),
            RunLockHolder::Wasi(0x00ab_cdef_0123_4567),
        ] {
            assert!(holder.token().len() as u64 <= MAX_RUN_LOCK_BYTES);
            assert_eq!(RunLockHolder::parse(holder.token().as_bytes()), holder);
        }
        assert_eq!(RunLockHolder::Host(7).token(), "host 7\n");
        assert_eq!(RunLockHolder::Wasi(1).token(), "wasi 0000000000000001\n");
        for junk in [
            &b""[..],
            b"host",
            b"host x",
            b"wasi 12",
            b"wasi zzzzzzzzzzzzzzzz",
            b"\xff",
        ] {
            assert_eq!(
                RunLockHolder::parse(junk),
                RunLockHolder::Unknown,
                "{junk:?}"
            );
        }
        assert!(!is_run_lock_stale(1_000, 1_000));
        assert!(!is_run_lock_stale(1_000, 1_299));
        assert!(is_run_lock_stale(1_000, 1_300));
        // A clock set back: a lock "from the future" is old too.
        assert!(is_run_lock_stale(1_300, 1_000));
        assert!(!is_run_lock_stale(1_299, 1_000));
        assert!(!is_temp_file_name(RUN_LOCK_FILE));
        assert_eq!(
            run_lock_busy_message(Path::new("/store"), RunLockHolder::Wasi(1), 12),
            "another run holds the store /store: a WASI runtime's run 0000000000000001 took its \
             writer lock 12 s ago; try again when it has finished (if no run is going on, one was \
             killed: its lock counts as stale 300 s after it was taken, or remove /store/.run-lock)"
        );
    }

    #[test]
    fn only_a_regular_file_within_the_cap_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let open = |p: &Path| {
            let p = p.to_path_buf();
            move |_: &fs::Metadata| fs::File::open(&p).map_err(|e| StoreError::io("opening", &p, e))
        };
        let path = dir.path().join("arc.json");
        assert_eq!(read_bundle(&path, open(&path)), Ok(None));
        fs::write(&path, b"{}").unwrap();
        assert_eq!(read_bundle(&path, open(&path)), Ok(Some(b"{}".to_vec())));
        fs::File::create(&path)
            .unwrap()
            .set_len(MAX_BUNDLE_BYTES + 1)
            .unwrap();
        assert_eq!(
            read_bundle(&path, open(&path)),
            Err(StoreError::TooLarge(MAX_BUNDLE_BYTES))
        );
        let sub = dir.path().join("dir.json");
        fs::create_dir(&sub).unwrap();
        assert_eq!(
            read_bundle(&sub, open(&sub)),
            Err(StoreError::Io(format!(
                "{} is not a regular file (a symlink or a device?); remove it",
                sub.display()
            )))
        );
        // `open` may refuse, with its own error.
        fs::write(&path, b"{}").unwrap();
        let refused = read_bundle(&path, |_| Err(StoreError::Io("no".into())));
        assert_eq!(refused, Err(StoreError::Io("no".into())));
    }
}
