//! The software SIM: a USIM's AKA in software, from a JSON file, for tests, demos and CI.
//!
//! The file is one JSON object with exactly these fields, hex strings as in 3GPP TS 35.208's
//! test sets (either case):
//!
//! | field | content |
//! | --- | --- |
//! | `imsi` | the IMSI, 6–15 decimal digits |
//! | `k` | K, the subscriber key: 32 hex digits (16 bytes) |
//! | `opc` | OPc, the operator variant: 32 hex digits (16 bytes) |
//! | `amf` | AMF, 4 hex digits: what the network side puts in AUTN for this SIM (a mock Keys API builds its subscriber record from the same file); the SIM itself takes AMF from each AUTN |
//! | `sqn` | SQN_MS, 12 hex digits (48 bits): the highest SQN this SIM accepted |
//!
//! ```json
//! {"imsi": "001010123456789", "k": "465b5ce8b199b49faa5f0a2ee238a6bc",
//!  "opc": "cd63cb71954a9f4e48a5994e37a02baf", "amf": "b9b9", "sqn": "000000000000"}
//! ```
//!
//! AUTHENTICATE runs as a USIM does it ([`crate::aka::usim_authenticate`], TS 33.102 §6.3.3):
//! MAC-A checked first, then SQN freshness (greater than `sqn`, and at most
//! [`crate::aka::SQN_DELTA`] above it); a fresh SQN is written back to the file **before**
//! RES, CK and IK are answered, so a crash can never make the SIM accept the same challenge
//! twice.
//!
//! One writer at a time: AUTHENTICATE reads, checks and writes the file under an exclusive
//! advisory lock (`flock(2)`) on the file itself, so two processes (or two `SoftSim` values)
//! sharing a SIM file never accept one challenge twice and SQN never goes back. Since the
//! write-back replaces the file, the lock is taken on the file the path names *after* the lock
//! is held (the inode is compared, and the open is retried when another writer replaced it
//! meanwhile). A writer waits at most [`LOCK_WAIT`] for the lock. The rewritten file keeps the
//! owner, group and mode of the one it replaces, so a run as root leaves a user's SIM file
//! theirs.
//!
//! The file is untrusted input and holds keys: it is read without following a symbolic link,
//! must be a regular file that group and others cannot access (mode 0600 or stricter), is at
//! most 4 KiB, and is validated field by field; errors name the field and never repeat a
//! value. It is written back atomically: a new 0600 file in the same directory (created with
//! `O_EXCL`), fsynced, renamed over the old one, then the directory fsynced (POSIX `rename(2)`
//! is atomic within a file system). The file is read again for every call, so it is always
//! the one source of SQN.

use crate::aka::{SQN_MAX, UsimVerdict, usim_authenticate};
use crate::milenage::Subscriber;
use crate::{AuthOutcome, Imsi, Key128, Uicc, UiccError};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Largest software SIM file accepted, bytes.
pub const MAX_SIM_FILE_BYTES: u64 = 4096;

/// Longest wait for the SIM file's lock, held by another writer, before AUTHENTICATE fails
/// with [`UiccError::Io`] ("another process is using it").
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The content of a software SIM file. `Debug` shows neither key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRecord {
    /// The IMSI.
    pub imsi: Imsi,
    /// K.
    pub k: Key128,
    /// OPc.
    pub opc: Key128,
    /// AMF for the network side.
    pub amf: [u8; 2],
    /// SQN_MS: the highest SQN accepted, at most [`SQN_MAX`].
    pub sqn: u64,
}

impl SimRecord {
    /// Parse and validate the file's bytes. Errors: a sentence naming the field, never its
    /// value.
    pub fn parse(bytes: &[u8]) -> Result<SimRecord, String> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("not valid JSON (line {}, column {})", e.line(), e.column()))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err("must be one JSON object".into());
        };
        let mut take = |field: &str| -> Result<Zeroizing<String>, String> {
            match map.remove(field) {
                Some(serde_json::Value::String(s)) => Ok(Zeroizing::new(s)),
                Some(_) => Err(format!("field `{field}` must be a string")),
                None => Err(format!("field `{field}` is missing")),
            }
        };
        let imsi = take("imsi")?;
        let imsi = Imsi::parse(&imsi).map_err(|why| format!("field `imsi`: {why}"))?;
        let k = Key128::new(hex_field(&take("k")?, "k")?);
        let opc = Key128::new(hex_field(&take("opc")?, "opc")?);
        let amf = hex_field::<2>(&take("amf")?, "amf")?;
        let sqn = hex_field::<6>(&take("sqn")?, "sqn")?;
        if let Some(name) = map.keys().next() {
            let shown: String = name.chars().take(32).collect();
            return Err(format!("unknown field {shown:?}"));
        }
        Ok(SimRecord {
            imsi,
            k,
            opc,
            amf,
            sqn: crate::aka::sqn_from_bytes(&sqn),
        })
    }

    /// The file's text for this record: the five fields, lowercase hex, one per line.
    pub fn to_json(&self) -> Zeroizing<String> {
        let k = Zeroizing::new(hex::encode(self.k.expose()));
        let opc = Zeroizing::new(hex::encode(self.opc.expose()));
        Zeroizing::new(format!(
            "{{\n  \"imsi\": \"{}\",\n  \"k\": \"{}\",\n  \"opc\": \"{}\",\n  \"amf\": \"{}\",\n  \"sqn\": \"{}\"\n}}\n",
            self.imsi,
            *k,
            *opc,
            hex::encode(self.amf),
            hex::encode(crate::aka::sqn_to_bytes(self.sqn)),
        ))
    }

    /// The subscriber's Milenage keys.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber::new(self.k.clone(), self.opc.clone())
    }
}

/// Exactly `2 * N` hex digits into `N` bytes (zeroized on error paths by the caller's
/// `Zeroizing` input; the output is copied into a key type at once).
fn hex_field<const N: usize>(text: &str, field: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    if text.len() != 2 * N || hex::decode_to_slice(text, &mut out).is_err() {
        return Err(format!(
            "field `{field}` must be {} hex digits ({N} bytes)",
            2 * N
        ));
    }
    Ok(out)
}

/// A software SIM backed by a file (see the module's documentation).
#[derive(Debug, Clone)]
pub struct SoftSim {
    path: PathBuf,
}

impl SoftSim {
    /// Use the SIM file at `path`, reading and validating it once now. Errors:
    /// [`UiccError::NoSim`] when it does not exist; [`UiccError::Io`] naming the file when it
    /// cannot be read or is invalid.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, UiccError> {
        let sim = SoftSim { path: path.into() };
        sim.load()?;
        Ok(sim)
    }

    /// Write `record` to a new SIM file at `path` (or replace one), atomically and 0600, and
    /// use it. For tests and demos. Errors: [`UiccError::Io`] naming the file.
    pub fn create(path: impl Into<PathBuf>, record: &SimRecord) -> Result<Self, UiccError> {
        let sim = SoftSim { path: path.into() };
        sim.store(record)?;
        Ok(sim)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, detail: impl std::fmt::Display) -> UiccError {
        UiccError::Io {
            device: format!("software SIM {}", self.path.display()),
            detail: detail.to_string(),
        }
    }

    /// Read and validate the file now.
    pub fn load(&self) -> Result<SimRecord, UiccError> {
        let (file, _) = self.open_checked()?;
        self.read(&file)
    }

    /// Open the file for reading without following a symbolic link, and check it is a
    /// regular file that group and others cannot access.
    fn open_checked(&self) -> Result<(File, fs::Metadata), UiccError> {
        let file = OpenOptions::new()
            .read(true)
            // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
            // forever; it changes nothing for a regular file (the only kind read below).
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => UiccError::NoSim(format!(
                    "software SIM file {} does not exist",
                    self.path.display()
                )),
                _ if e.raw_os_error() == Some(libc::ELOOP) => {
                    self.io("is a symbolic link; it is not followed")
                }
                _ => self.io(format_args!("cannot open: {e}")),
            })?;
        let meta = file
            .metadata()
            .map_err(|e| self.io(format_args!("cannot stat: {e}")))?;
        if !meta.file_type().is_file() {
            return Err(self.io("is not a regular file"));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(self.io("group or others can access it; it holds keys (chmod 600)"));
        }
        Ok((file, meta))
    }

    /// Read and validate the content of an open, checked file.
    fn read(&self, file: &File) -> Result<SimRecord, UiccError> {
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_SIM_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io(format_args!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_SIM_FILE_BYTES {
            return Err(self.io(format_args!("is larger than {MAX_SIM_FILE_BYTES} bytes")));
        }
        SimRecord::parse(&bytes).map_err(|e| self.io(e))
    }

    /// The file the path names, open and exclusively locked (`flock(2)`), with its metadata.
    /// The lock is released when the returned file is closed. A file replaced by another
    /// writer while this one waited is opened again: the lock must be on the file the path
    /// names once it is held. Errors: those of [`SoftSim::load`]; [`UiccError::Io`] when the
    /// lock is not had within [`LOCK_WAIT`].
    fn lock(&self) -> Result<(File, fs::Metadata), UiccError> {
        let give_up = Instant::now() + LOCK_WAIT;
        loop {
            let (file, meta) = self.open_checked()?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(self.io(format_args!(
                        "another process is using it (its lock was held for more than {} s)",
                        LOCK_WAIT.as_secs()
                    )));
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(self.io(format_args!("cannot lock: {e}")));
                }
            }
            match fs::symlink_metadata(&self.path) {
                Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {
                    return Ok((file, meta));
                }
                // Replaced (or removed) while this writer waited: start over on what the path
                // names now.
                _ if Instant::now() < give_up => continue,
                _ => return Err(self.io("it kept being replaced while waiting for its lock")),
            }
        }
    }

    /// Replace the file with `record`: temp file (0600, `O_EXCL`) in the same directory,
    /// fsync, rename, fsync of the directory. A symbolic link or non-file at the path is
    /// refused, never followed or replaced.
    ///
    /// The new file gets the owner, group and mode of the one it replaces (a run as root keeps
    /// a user's file theirs), or 0600 and the caller's owner when there was none.
    fn store(&self, record: &SimRecord) -> Result<(), UiccError> {
        let old = match fs::symlink_metadata(&self.path) {
            Ok(meta) if !meta.file_type().is_file() => {
                return Err(self.io("is a symbolic link or not a regular file; not replaced"));
            }
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(format_args!("cannot stat: {e}"))),
        };
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.tmp-", name.as_deref().unwrap_or("sim")))
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(|e| {
                self.io(format_args!(
                    "cannot create a temporary file beside it: {e}"
                ))
            })?;
        let text = record.to_json();
        tmp.write_all(text.as_bytes())
            .map_err(|e| self.io(format_args!("cannot write the new SQN: {e}")))?;
        if let Some(old) = &old {
            self.keep_owner_and_mode(tmp.as_file(), old)?;
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| self.io(format_args!("cannot write the new SQN: {e}")))?;
        tmp.persist(&self.path).map_err(|e| {
            self.io(format_args!(
                "cannot rename the new file into place: {}",
                e.error
            ))
        })?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(format_args!("cannot sync its directory: {e}")))
    }
}

impl SoftSim {
    /// Give `new` (the replacement, still a temporary file) the owner, group and owner
    /// permission bits of `old`. Group and other bits are never copied: the file holds keys.
    fn keep_owner_and_mode(&self, new: &File, old: &fs::Metadata) -> Result<(), UiccError> {
        let mine = new
            .metadata()
            .map_err(|e| self.io(format_args!("cannot stat the temporary file: {e}")))?;
        if (mine.uid(), mine.gid()) != (old.uid(), old.gid()) {
            std::os::unix::fs::fchown(new, Some(old.uid()), Some(old.gid())).map_err(|e| {
                self.io(format_args!(
                    "cannot give the new file the owner of the old one ({}:{}): {e}",
                    old.uid(),
                    old.gid()
                ))
            })?;
        }
        new.set_permissions(fs::Permissions::from_mode(old.mode() & 0o700))
            .map_err(|e| self.io(format_args!("cannot set the new file's mode: {e}")))
    }
}

impl Uicc for SoftSim {
    fn describe(&self) -> String {
        format!("software SIM {}", self.path.display())
    }

    fn read_imsi(&mut self) -> Result<Imsi, UiccError> {
        Ok(self.load()?.imsi)
    }

    fn authenticate(&mut self, rand: &[u8; 16], autn: &[u8; 16]) -> Result<AuthOutcome, UiccError> {
        // Read, check and write back under the file's lock: one writer at a time.
        let (lock, _) = self.lock()?;
        let mut record = self.read(&lock)?;
        let verdict = usim_authenticate(&record.subscriber(), record.sqn, rand, autn);
        let answer = match verdict {
            UsimVerdict::Accept { sqn, outcome } => {
                debug_assert!(sqn <= SQN_MAX && sqn > record.sqn);
                record.sqn = sqn;
                self.store(&record)?;
                tracing::debug!(sim = %self.path.display(), sqn, "software SIM accepted a challenge");
                Ok(outcome)
            }
            UsimVerdict::Resync { outcome } => {
                tracing::debug!(sim = %self.path.display(), sqn_ms = record.sqn, "software SIM: SQN not fresh, answering AUTS");
                Ok(outcome)
            }
            UsimVerdict::MacFailure => Err(UiccError::MacFailure),
        };
        drop(lock);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aka::{generate_vector, recover_sqn_ms};

    const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
    const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";

    fn json(k: &str, sqn: &str) -> String {
        format!(
            r#"{{"imsi": "001010123456789", "k": "{k}", "opc": "{OPC}", "amf": "8000", "sqn": "{sqn}"}}"#
        )
    }

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("sim.json");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn parse_is_strict_and_never_echoes_keys() {
        assert!(SimRecord::parse(json(K, "000000000020").as_bytes()).is_ok());
        let upper = json(&K.to_uppercase(), "0000000000AB");
        assert_eq!(SimRecord::parse(upper.as_bytes()).unwrap().sqn, 0xab);
        let cases = [
            (
                json(&K[..30], "000000000000"),
                "field `k` must be 32 hex digits (16 bytes)",
            ),
            (
                json(&format!("{}zz", &K[..30]), "000000000000"),
                "field `k` must be 32 hex digits",
            ),
            (json(K, "0000000000"), "field `sqn` must be 12 hex digits"),
            (
                json(K, "000000000000").replace("8000", "80"),
                "field `amf` must be 4 hex digits",
            ),
            (
                json(K, "000000000000").replace("001010123456789", "0010"),
                "field `imsi`: an IMSI has 6 to 15 digits",
            ),
            (
                json(K, "000000000000").replace(r#""opc""#, r#""op""#),
                "field `opc` is missing",
            ),
            (
                json(K, "000000000000").replace(&format!("\"{K}\""), "12"),
                "field `k` must be a string",
            ),
            (
                json(K, "000000000000").replace('}', r#", "extra": 1}"#),
                "unknown field \"extra\"",
            ),
            (
                json(K, "000000000000").replace("001010123456789", "00101012345678a"),
                "field `imsi`",
            ),
            ("[]".into(), "must be one JSON object"),
            (format!("{{\"k\": \"{K}"), "not valid JSON"),
        ];
        for (text, want) in cases {
            let err = SimRecord::parse(text.as_bytes()).unwrap_err();
            assert!(err.starts_with(want), "{err} (wanted {want})");
            assert!(
                !err.to_lowercase().contains(&K[..12]) && !err.contains(&OPC[..12]),
                "{err}"
            );
        }
    }

    #[test]
    fn file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SoftSim::open(dir.path().join("none.json")).unwrap_err();
        assert!(matches!(missing, UiccError::NoSim(_)), "{missing}");

        let path = write(dir.path(), &json(K, "000000000000"), 0o644);
        let err = SoftSim::open(&path).unwrap_err().to_string();
        assert!(err.contains("group or others can access it"), "{err}");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let err = SoftSim::open(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");

        let big = write(
            dir.path(),
            &format!("{}{}", json(K, "000000000000"), " ".repeat(5000)),
            0o600,
        );
        let err = SoftSim::open(&big).unwrap_err().to_string();
        assert!(err.contains("larger than 4096 bytes"), "{err}");

        // A FIFO is refused at once, not waited on for a writer.
        let fifo = dir.path().join("fifo.json");
        let status = std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let fifo_path = fifo.clone();
        std::thread::spawn(move || tx.send(SoftSim::open(&fifo_path).map(|_| ())));
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("opening a FIFO must not block")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");

        // World-writable and group-readable files are refused like 0644.
        for mode in [0o602, 0o640, 0o666] {
            let path = write(dir.path(), &json(K, "000000000000"), mode);
            let err = SoftSim::open(&path).unwrap_err().to_string();
            assert!(
                err.contains("group or others can access it"),
                "{mode:o}: {err}"
            );
        }

        let bad = write(dir.path(), &json(&K[..31], "000000000000"), 0o600);
        let err = SoftSim::open(&bad).unwrap_err().to_string();
        assert!(
            err.ends_with("field `k` must be 32 hex digits (16 bytes)"),
            "{err}"
        );
        assert!(!err.contains(&K[..12]));
    }

    #[test]
    fn authenticate_advances_sqn_atomically_and_resyncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &json(K, "000000000020"), 0o600);
        let mut sim = SoftSim::open(&path).unwrap();
        assert_eq!(sim.read_imsi().unwrap().as_str(), "001010123456789");
        let sub = sim.load().unwrap().subscriber();

        // A fresh challenge: RES = XRES, and the file now holds the new SQN, still 0600.
        let v = generate_vector(&sub, 0x21, [0x80, 0x00], [5; 16]);
        let AuthOutcome::Res { res, ck, .. } = sim.authenticate(&v.rand, &v.autn).unwrap() else {
            panic!("fresh challenge refused");
        };
        assert_eq!(res, v.xres);
        assert_eq!(ck, v.ck);
        assert_eq!(sim.load().unwrap().sqn, 0x21);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sim.json"], "no temporary file left behind");

        // Replayed: a sync failure from which the network recovers SQN_MS = 0x21; the file is
        // unchanged.
        let before = fs::read(&path).unwrap();
        let AuthOutcome::SyncFailure { auts } = sim.authenticate(&v.rand, &v.autn).unwrap() else {
            panic!("replayed challenge accepted");
        };
        assert_eq!(recover_sqn_ms(&sub, &v.rand, &auts), Ok(0x21));
        assert_eq!(fs::read(&path).unwrap(), before);

        // The wrong network key: MAC failure, file unchanged.
        let other = crate::milenage::Subscriber::new(Key128::new([1; 16]), sub.opc().clone());
        let w = generate_vector(&other, 0x30, [0x80, 0x00], [6; 16]);
        assert_eq!(
            sim.authenticate(&w.rand, &w.autn),
            Err(UiccError::MacFailure)
        );
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn create_writes_a_private_file_and_refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let record = SimRecord::parse(json(K, "0000000000ff").as_bytes()).unwrap();
        let shown = format!("{record:?}");
        assert!(
            shown.contains("k: <redacted 16 bytes>, opc: <redacted 16 bytes>"),
            "{shown}"
        );
        assert!(
            !shown.contains("70, 91, 92"),
            "K (46 5b 5c …) shown: {shown}"
        );
        let path = dir.path().join("new.json");
        let sim = SoftSim::create(&path, &record).unwrap();
        assert_eq!(sim.load().unwrap(), record);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let target = dir.path().join("target.json");
        fs::write(&target, "x").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = SoftSim::create(&link, &record).unwrap_err().to_string();
        assert!(err.contains("not replaced"), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"x");
    }

    /// Two writers on one SIM file (each its own `SoftSim`, as two processes would have)
    /// answer the same challenges at once: no challenge is accepted twice, and a reader that
    /// watches the file never sees SQN go down.
    #[test]
    fn concurrent_writers_never_accept_a_challenge_twice_nor_lower_sqn() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        const N: u64 = 40;
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &json(K, "000000000000"), 0o600);
        let sub = SoftSim::open(&path).unwrap().load().unwrap().subscriber();
        let vectors: Arc<Vec<_>> = Arc::new(
            (1..=N)
                .map(|sqn| generate_vector(&sub, sqn, [0x80, 0x00], [sqn as u8; 16]))
                .collect(),
        );
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let sim = SoftSim { path };
                let mut seen = vec![0];
                while !done.load(Ordering::SeqCst) {
                    let sqn = sim.load().unwrap().sqn;
                    if sqn != *seen.last().unwrap() {
                        seen.push(sqn);
                    }
                }
                seen
            })
        };
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (path, vectors, accepted) = (path.clone(), vectors.clone(), accepted.clone());
                std::thread::spawn(move || {
                    let mut sim = SoftSim::open(&path).unwrap();
                    for (i, v) in vectors.iter().enumerate() {
                        if let AuthOutcome::Res { .. } = sim.authenticate(&v.rand, &v.autn).unwrap()
                        {
                            accepted.lock().unwrap().push(i as u64 + 1);
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let seen = watcher.join().unwrap();
        let mut accepted = accepted.lock().unwrap().clone();
        let all = accepted.len();
        accepted.sort_unstable();
        accepted.dedup();
        assert_eq!(all, accepted.len(), "a challenge was accepted twice");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "SQN went down: {seen:?}"
        );
        assert_eq!(SoftSim::open(&path).unwrap().load().unwrap().sqn, N);
    }

    /// Root rewriting a user's SIM file keeps its owner, group and mode.
    #[test]
    fn a_rewrite_keeps_owner_group_and_mode() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &json(K, "000000000000"), 0o400);
        // As root (CI containers, this test's usual home) the file goes to `nobody`; as
        // another user it stays theirs, and the test checks the mode only.
        let (uid, gid) = if nix_is_root() {
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            (65534, 65534)
        } else {
            let meta = fs::metadata(&path).unwrap();
            (meta.uid(), meta.gid())
        };
        let mut sim = SoftSim::open(&path).unwrap();
        let sub = sim.load().unwrap().subscriber();
        let v = generate_vector(&sub, 1, [0x80, 0x00], [1; 16]);
        assert!(matches!(
            sim.authenticate(&v.rand, &v.autn).unwrap(),
            AuthOutcome::Res { .. }
        ));
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        assert_eq!(meta.permissions().mode() & 0o7777, 0o400);
        assert_eq!(sim.load().unwrap().sqn, 1);
    }

    fn nix_is_root() -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        fs::metadata(dir.path()).unwrap().uid() == 0
    }
}
