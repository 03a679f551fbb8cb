//! The compilation cache cannot be planted (issue 7 "The compilation cache"): compiled code is
//! run unchecked, so it is read only from a directory that is ours, 0700 and not a symlink;
//! entries are named by the component digest, the wasmtime version and the engine's
//! compatibility hash, written whole (0600), and a damaged entry is compiled anew.
//!
//! The "planted entry" used below is the hostile component's own, valid entry stored under the
//! real component's name: if the runtime used it, loading the real component would run the
//! hostile one (its `version` says `hostile`).

use super::support::*;
use krypton_host::engine::CachePolicy;
use sha2::Digest as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Log lines captured from the current thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run `f` with `tracing` events at WARN and above captured; returns its value and the text.
fn capture_warnings<R>(f: impl FnOnce() -> R) -> (R, String) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    (value, text)
}

fn runtime_with_cache(dir: &Path) -> Runtime {
    Runtime::with_options(
        SandboxLimits::default(),
        CachePolicy::Directory(dir.to_path_buf()),
    )
    .unwrap()
}

/// A valid entry for the hostile component, made in a private directory of its own.
fn hostile_entry(tmp: &Path) -> Vec<u8> {
    let dir = tmp.join("hostile-cache");
    let rt = runtime_with_cache(&dir);
    rt.load(&hostile_wasm()).unwrap();
    std::fs::read(dir.join(rt.cache_key(&hostile_wasm()))).unwrap()
}

/// The digest at the start of an entry matches the rest.
fn assert_whole(entry: &[u8]) {
    assert!(entry.len() > 1024, "entry of {} bytes", entry.len());
    assert_eq!(&entry[..32], &sha2::Sha256::digest(&entry[32..])[..]);
}

#[tokio::test]
async fn a_cache_directory_others_could_write_is_never_used() {
    let tmp = tempfile::tempdir().unwrap();
    let planted = hostile_entry(tmp.path());
    let key = Runtime::with_options(SandboxLimits::default(), CachePolicy::Off)
        .unwrap()
        .cache_key(DEFAULT_COMPONENT);

    // Owned by another user (nobody, uid 65534), mode 0700 (chown needs root, as on a gateway).
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    // Ours, but group and others may read and enter it (0755).
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Ours, 0700, but reached through a symlink.
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let euid = rustix::process::geteuid().as_raw();
    let cases: [(&Path, &Path, String); 3] = [
        (
            &foreign,
            &foreign,
            format!("it is owned by uid 65534, not by this process's uid {euid}"),
        ),
        (&open, &open, "its mode is 0755, not 0700".to_string()),
        (
            &link,
            &real,
            "it is a symlink or not a directory".to_string(),
        ),
    ];
    for (dir, holds, why) in cases {
        let why = why.as_str();
        std::fs::write(holds.join(&key), &planted).unwrap();
        let before = names(holds);
        let ((rt, pre), warnings) = capture_warnings(|| {
            let rt = runtime_with_cache(dir);
            let pre = rt.load(DEFAULT_COMPONENT).unwrap();
            (rt, pre)
        });
        // One warning, saying why and what to do.
        assert_eq!(warnings.lines().count(), 1, "{warnings}");
        assert!(warnings.contains(" WARN "), "{warnings}");
        assert!(warnings.contains("compilation cache off"), "{warnings}");
        assert!(warnings.contains(why), "{why}: {warnings}");
        assert!(warnings.contains("mkdir -m 0700"), "{warnings}");
        assert!(rt.cache_dir().is_none());
        // The planted entry was not run, and nothing was written there.
        let (version, _) = rt.version(&pre).await.unwrap();
        assert_ne!(
            version,
            "hostile",
            "{}: the planted entry ran",
            dir.display()
        );
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
        assert_eq!(names(holds), before, "{}", dir.display());
        assert_eq!(std::fs::read(holds.join(&key)).unwrap(), planted);
    }
}

#[tokio::test]
async fn a_private_cache_directory_holds_one_whole_private_entry_per_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state").join("cache");

    // Missing: created 0700, then one entry named by the key, 0600, whole; no temp file left.
    let (rt, warnings) = capture_warnings(|| runtime_with_cache(&dir));
    assert_eq!(warnings, "");
    assert_eq!(rt.cache_dir(), Some(dir.as_path()));
    assert_eq!(mode(&dir), 0o700);
    let pre = rt.load(DEFAULT_COMPONENT).unwrap();
    let key = rt.cache_key(DEFAULT_COMPONENT);
    let digest = hex(&sha2::Sha256::digest(DEFAULT_COMPONENT));
    assert!(key.starts_with(&format!("{digest}-48.0.8-")), "{key}");
    assert!(key.ends_with(".cwasm"), "{key}");
    assert_eq!(key.len(), 64 + "-48.0.8-".len() + 64 + ".cwasm".len());
    assert_eq!(names(&dir), vec![key.clone()]);
    assert_eq!(mode(&dir.join(&key)), 0o600);
    assert_whole(&std::fs::read(dir.join(&key)).unwrap());
    assert_eq!(rt.version(&pre).await.unwrap().0, env!("CARGO_PKG_VERSION"));

    // Leftovers of a crashed write: an hour-old temp file goes when a runtime opens the
    // cache, a fresh one (a write in progress elsewhere) stays.
    let old = dir.join(format!(".tmp-1-0-{key}"));
    let fresh = dir.join(format!(".tmp-2-0-{key}"));
    for path in [&old, &fresh] {
        std::fs::write(path, b"partial").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600))
        .unwrap();
    runtime_with_cache(&dir);
    assert!(!old.exists());
    assert!(fresh.exists());
    std::fs::remove_file(&fresh).unwrap();

    // Other bytes, other key; the same bytes in another runtime with the same engine
    // configuration, the same key.
    assert_ne!(rt.cache_key(&hostile_wasm()), key);
    assert_eq!(runtime_with_cache(&dir).cache_key(DEFAULT_COMPONENT), key);

    // The entry is what a later load runs: a valid entry of another component under this key
    // is used (which is why the directory must be private).
    let planted = hostile_entry(tmp.path());
    std::fs::write(dir.join(&key), &planted).unwrap();
    let rt = runtime_with_cache(&dir);
    let pre = rt.load(DEFAULT_COMPONENT).unwrap();
    assert_eq!(rt.version(&pre).await.unwrap().0, "hostile");
}

#[tokio::test]
async fn truncated_empty_or_garbage_entries_are_compiled_anew_and_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let rt = runtime_with_cache(&dir);
    rt.load(DEFAULT_COMPONENT).unwrap();
    let key = rt.cache_key(DEFAULT_COMPONENT);
    let entry = dir.join(&key);
    let good = std::fs::read(&entry).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let mut garbage = vec![0u8; 4096];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    // Garbage that carries its own valid digest: only wasmtime can refuse it.
    let mut digested = sha2::Sha256::digest(&garbage).to_vec();
    digested.extend_from_slice(&garbage);
    let cases: [(&str, Vec<u8>); 6] = [
        ("empty", Vec::new()),
        ("shorter than the digest", good[..20].to_vec()),
        ("truncated to half", good[..good.len() / 2].to_vec()),
        ("one byte changed", flipped),
        ("garbage", garbage),
        ("garbage with a matching digest", digested),
    ];
    for (what, bytes) in cases {
        std::fs::write(&entry, &bytes).unwrap();
        let rt = runtime_with_cache(&dir);
        let pre = rt
            .load(DEFAULT_COMPONENT)
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(
            rt.version(&pre).await.unwrap().0,
            env!("CARGO_PKG_VERSION"),
            "{what}"
        );
        let rewritten = std::fs::read(&entry).unwrap();
        assert_ne!(rewritten, bytes, "{what}: not rewritten");
        assert_eq!(rewritten.len(), good.len(), "{what}");
        assert_whole(&rewritten);
        assert_eq!(mode(&entry), 0o600, "{what}");
        assert_eq!(names(&dir), vec![key.clone()], "{what}");
    }

    // An entry that is a symlink (to a valid entry elsewhere) is not followed.
    let elsewhere = tmp.path().join("elsewhere.cwasm");
    std::fs::write(&elsewhere, hostile_entry(tmp.path())).unwrap();
    std::fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
    let rt = runtime_with_cache(&dir);
    let pre = rt.load(DEFAULT_COMPONENT).unwrap();
    assert_eq!(rt.version(&pre).await.unwrap().0, env!("CARGO_PKG_VERSION"));
    assert!(!std::fs::symlink_metadata(&entry).unwrap().is_symlink());
    assert_whole(&std::fs::read(&entry).unwrap());
}

/// The CLI takes its cache from `KRYPTON_CACHE_DIR`: a 0755 directory is refused with one
/// warning and stays empty; a missing one is created 0700 and holds one entry.
#[tokio::test]
async fn the_cli_uses_an_environment_cache_directory_only_when_it_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    // `status` reads an existing store (it never creates one).
    let store = tmp.path().join("store");
    krypton_host::capability::store::SecretStore::open(&store).unwrap();
    let run = async |cache: &PathBuf| {
        let out = tokio::process::Command::new(BIN)
            .args(["status", "--store", store.to_str().unwrap(), "--json"])
            .env("KRYPTON_CACHE_DIR", cache)
            .env_remove("RUST_LOG")
            .env_remove("KRYPTON_STORE")
            .output()
            .await
            .unwrap();
        (out.status.code(), String::from_utf8(out.stderr).unwrap())
    };
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, stderr) = run(&open).await;
    // An empty store: "nothing stored" (exit 11) after the component was loaded.
    assert_eq!(code, Some(11), "{stderr}");
    assert_eq!(
        stderr.matches("compilation cache off").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("its mode is 0755, not 0700"), "{stderr}");
    assert!(names(&open).is_empty());

    let fresh = tmp.path().join("fresh");
    let (code, stderr) = run(&fresh).await;
    assert_eq!(code, Some(11), "{stderr}");
    assert!(!stderr.contains("compilation cache"), "{stderr}");
    assert_eq!(mode(&fresh), 0o700);
    let entries = names(&fresh);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].ends_with(".cwasm"));
    assert_eq!(mode(&fresh.join(&entries[0])), 0o600);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(fresh.join(&entries[0]))
        .unwrap();
    file.write_all(b"tail").unwrap();
    // A damaged entry: the CLI still works, and the entry is whole again.
    let (code, stderr) = run(&fresh).await;
    assert_eq!(code, Some(11), "{stderr}");
    assert_whole(&std::fs::read(fresh.join(&entries[0])).unwrap());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Issue 18, item 15: the cache does not grow with every component ever compiled. After more
/// distinct components than [`MAX_CACHE_ENTRIES`] are compiled, the directory holds exactly
/// that many entries, at most [`MAX_CACHE_BYTES`] in all: the most recently used ones. An entry
/// used again (the serving component loaded anew) counts as recent, so the current and the
/// previous component stay while older ones go.
#[tokio::test]
async fn the_cache_keeps_only_its_most_recently_used_entries() {
    use krypton_host::engine::{MAX_CACHE_BYTES, MAX_CACHE_ENTRIES};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let rt = runtime_with_cache(&dir);
    let load = |tag: u8| {
        let bytes = variant(tag);
        rt.load(&bytes).unwrap();
        rt.cache_key(&bytes)
    };
    let size = |names: &[String]| -> u64 {
        names
            .iter()
            .map(|n| std::fs::metadata(dir.join(n)).unwrap().len())
            .sum()
    };
    let compiled: Vec<String> = (0..MAX_CACHE_ENTRIES as u8 + 3)
        .map(|i| load(40 + i))
        .collect();
    let held = names(&dir);
    let mut newest = compiled[compiled.len() - MAX_CACHE_ENTRIES..].to_vec();
    newest.sort();
    assert_eq!(held, newest);
    assert!(size(&held) <= MAX_CACHE_BYTES, "{}", size(&held));

    // The oldest entry still held is used again (a cache hit), then one more component is
    // compiled: the entry used again stays, the oldest of the others goes.
    let oldest_held = compiled[compiled.len() - MAX_CACHE_ENTRIES].clone();
    let reused = load(40 + (compiled.len() - MAX_CACHE_ENTRIES) as u8);
    assert_eq!(reused, oldest_held);
    let newer = load(99);
    let held = names(&dir);
    assert_eq!(held.len(), MAX_CACHE_ENTRIES, "{held:?}");
    assert!(held.contains(&reused), "{held:?}");
    assert!(held.contains(&newer), "{held:?}");
    assert!(
        !held.contains(&compiled[compiled.len() - MAX_CACHE_ENTRIES + 1]),
        "{held:?}"
    );
}

/// Issue 18, item 15: one daemon per `state_dir`. A second daemon with its own store and
/// socket but the first one's state directory is refused (exit 3, naming `state_dir` and the
/// first one's pid) and touches nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_one_state_dir_is_refused() {
    let fx = Fixture::new().await;
    let dir = fx.dir();
    let first = fx
        .gateway()
        .path("control_socket", &dir.join("first.sock"))
        .target("azure-iot");
    let _running = Daemon::start(first.parse()).await.unwrap();
    let state = fx.path("state");
    let before = names(&state);
    let second = fx
        .gateway()
        .path("store", &dir.join("store2"))
        .path("control_socket", &dir.join("second.sock"))
        .target("azure-iot")
        .write(&dir.join("second.toml"));
    // Bounded, and killed if it runs: a daemon that started would serve forever.
    let child = tokio::process::Command::new(BIN)
        .args(["run", "--config", second.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the second daemon started and kept running")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("key `state_dir`"), "{stderr}");
    assert!(
        stderr.contains(&format!("process {}", std::process::id())),
        "{stderr}"
    );
    assert!(!dir.join("second.sock").exists());
    assert_eq!(names(&state), before);
    fx.stop().await;
}
