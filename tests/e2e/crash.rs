//! Crash consistency: writers killed with SIGKILL at random points.
//!
//! * `store_writes_killed_leave_old_or_new`: a child process (this test binary again, running
//!   [`store_writer_child`]) replaces bundles through the real [`SecretStore`] in a loop and
//!   says after each put which version it wrote; the parent kills it after a random delay.
//!   Every bundle on disk must then be, byte for byte, the last version acknowledged or the one
//!   after it; a temp file left by the kill must be gone once the next writer takes the store's
//!   lock (the store's documented behaviour); and the next writer must succeed.
//! * `azure_provision_killed_resumes_without_registering_again`: the real `krypton-host provision
//!   azure-iot --force` against the mock, killed at random points, half of the runs while the
//!   mock holds the registration in `assigning` (between register and assigned). The stored
//!   bundle is the old one or exactly the credentials the mock issued last; the next run
//!   succeeds; when the kill left the registration in flight in the store, the next run resumes
//!   it and does not register again (the mock's request counts say so).
//!
//! * `registry_swaps_killed_still_serve_at_the_next_start` (issue 18, item 3): a daemon
//!   following a tag of Debian's `docker-registry` swaps in a new signed version at each run
//!   (0.3.1, 0.3.2, …) and is killed with SIGKILL at a random point between the publish and the
//!   end of the swap (pull, compile, the version floor, the registry state). The next start
//!   must serve (exit 3 from refusing its own kept artifact was the fault) one of the published
//!   versions, with its own bytes. `a_floor_written_before_the_registry_state_still_serves` sets
//!   up the one crash point that used to stop a daemon for good, deterministically.
//!
//! Runs: [`DEFAULT_RUNS`] each by default; `KRYPTON_CRASH_RUNS=N` sets the count (the long mode:
//! `KRYPTON_CRASH_RUNS=1000 cargo test --test e2e crash -- --nocapture`), `KRYPTON_CRASH_SEED=S`
//! replays a seed (each test prints the seed it used).

use crate::registry_support::{TestRegistry, registry_tools_present, with_version};
use crate::support::{
    BIN, DEFAULT_COMPONENT, Fixture, GatewayToml, SecretStore, assert_azure_bundle, closed_port,
    daemon_status, public_key_b64, spawn_daemon, stop,
};
use krypton_host_cli::registry::{Registry, Settings, Source};
use krypton_mock::{Fault, MockKrypton};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kill runs per test when `KRYPTON_CRASH_RUNS` is not set (what CI runs).
const DEFAULT_RUNS: usize = 24;
/// The built-in component's version.
const REAL_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The environment variable that makes [`store_writer_child`] a writer: the store directory.
const CHILD_DIR: &str = "KRYPTON_CRASH_CHILD_STORE";
/// The first version the child writes (the parent passes the next one after the last run).
const CHILD_FROM: &str = "KRYPTON_CRASH_CHILD_FROM";
/// Bundle names the writer child replaces, in turn.
const NAMES: [&str; 3] = ["azure-iot", "aws-iot", "arc"];

fn runs() -> usize {
    std::env::var("KRYPTON_CRASH_RUNS")
        .ok()
        .map(|v| v.parse().expect("KRYPTON_CRASH_RUNS is a number of runs"))
        .unwrap_or(DEFAULT_RUNS)
}

/// The test's RNG: the seed from `KRYPTON_CRASH_SEED`, else a fresh one; printed either way.
fn rng(test: &str) -> StdRng {
    let seed = std::env::var("KRYPTON_CRASH_SEED")
        .ok()
        .map(|v| v.parse().expect("KRYPTON_CRASH_SEED is a u64"))
        .unwrap_or_else(rand::random::<u64>);
    println!("{test}: seed {seed} (replay with KRYPTON_CRASH_SEED={seed})");
    StdRng::seed_from_u64(seed)
}

/// Version `version` of bundle `name`: JSON whose size varies from 1 KiB to ~192 KiB with the
/// version (so kills land in writes of every length), its filler derived from name and
/// version, so a torn or mixed file differs from every version. Cheap to build, so that the
/// writer spends its time writing.
fn bundle_bytes(name: &str, version: u64) -> Vec<u8> {
    let len = 1024 + (version.wrapping_mul(7919) % 48) as usize * 4096;
    let block: String = Sha256::digest(format!("{name}/{version}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let filler = block.repeat(len / block.len() + 1);
    format!(
        r#"{{"formatVersion":1,"target":"{name}","version":{version},"privateKey":"{filler}"}}"#
    )
    .into_bytes()
}

/// The version a bundle file holds, checked byte for byte against [`bundle_bytes`].
fn version_on_disk(dir: &Path, name: &str) -> Option<u64> {
    let bytes = match std::fs::read(dir.join(format!("{name}.json"))) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("reading {name}: {e}"),
    };
    let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{name}.json is not a complete bundle ({} bytes): {e}",
            bytes.len()
        )
    });
    let version = value["version"].as_u64().expect("a version");
    assert!(
        bytes == bundle_bytes(name, version),
        "{name}.json says version {version} but its bytes are not that version's"
    );
    Some(version)
}

/// Temp files of the atomic writer (`.<name>.json.tmp-<16 hex digits>`) in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".json.tmp-"))
        .collect()
}

/// The writer process of `store_writes_killed_leave_old_or_new`. It does nothing unless that
/// test started it (with [`CHILD_DIR`] set): then it takes the store's lock as every writer
/// does and replaces the bundles in turn, version after version, printing
/// `crash-writer wrote <name> <version>` after each put returned, until it is killed (after
/// `crash-writer ready` once it holds the store).
#[test]
#[ignore = "the writer child of crash::store_writes_killed_leave_old_or_new, started by it"]
fn store_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    use std::io::Write as _;
    let from: u64 = std::env::var(CHILD_FROM).unwrap().parse().unwrap();
    let store = SecretStore::open(PathBuf::from(dir)).unwrap();
    let _lock = store.lock(Duration::ZERO).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "crash-writer ready").unwrap();
    out.flush().unwrap();
    for version in from.. {
        for name in NAMES {
            store.put(name, &bundle_bytes(name, version)).unwrap();
            writeln!(out, "crash-writer wrote {name} {version}").unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn store_writes_killed_leave_old_or_new() {
    let runs = runs();
    let mut rng = rng("store_writes_killed_leave_old_or_new");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    SecretStore::open(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    // The version on disk per name after the last run.
    let mut acked: BTreeMap<&str, u64> = BTreeMap::new();
    let mut next_from = 1u64;
    let (mut temp_left, mut newer_than_ack, mut killed_before_ready, mut writes) = (0, 0, 0, 0);
    let started = Instant::now();
    for run in 0..runs {
        let mut child = Command::new(&exe)
            .args([
                "crash::store_writer_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &dir)
            .env(CHILD_FROM, next_from.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Lines are read on a thread and passed on: the kill must not wait for the pipe. The
        // child's lines may follow libtest's `test … ... ` on the same line.
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("crash-writer ") {
                    let _ = lines_tx.send(line[at + "crash-writer ".len()..].to_string());
                }
            }
        });
        // One kill in ten lands anywhere in start-up; the others a random time after the
        // writer has the store, from at once to dozens of writes in.
        let early = rng.random_range(0..10) == 0;
        let mut lines = Vec::new();
        if early {
            std::thread::sleep(Duration::from_micros(rng.random_range(0..50_000)));
        } else {
            let ready = lines_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the writer child says it is ready");
            assert_eq!(ready, "ready");
            std::thread::sleep(Duration::from_micros(rng.random_range(0..60_000)));
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "run {run}: the writer was not killed: {status}"
        );
        reader.join().unwrap();
        lines.extend(lines_rx.try_iter());
        if early && !lines.iter().any(|l| l == "ready") {
            killed_before_ready += 1;
        }
        // What this run acknowledged, per name.
        let mut acked_now: BTreeMap<&str, u64> = BTreeMap::new();
        for line in &lines {
            if let Some(rest) = line.strip_prefix("wrote ") {
                let (name, version) = rest.split_once(' ').unwrap();
                let name = NAMES.iter().find(|n| **n == name).unwrap();
                acked_now.insert(name, version.parse().unwrap());
                writes += 1;
            }
        }
        // Each bundle: the old one (the last version acknowledged, in this run or before it)
        // or the new one (the version this run put next: killed after the rename, before the
        // acknowledgement), never anything else.
        let mut highest = next_from - 1;
        for name in NAMES {
            let on_disk = version_on_disk(&dir, name);
            let old = acked_now.get(name).or(acked.get(name)).copied();
            let new = acked_now.get(name).map_or(next_from, |a| a + 1);
            if on_disk == Some(new) {
                newer_than_ack += 1;
            } else {
                assert_eq!(
                    on_disk, old,
                    "run {run}: {name} is neither the old bundle nor the new one (version {new})"
                );
            }
            highest = highest.max(on_disk.unwrap_or(0));
            if let Some(v) = on_disk {
                acked.insert(name, v);
            }
        }
        // A kill mid-write may leave a temp file; the next writer's lock removes it.
        if !temp_files(&dir).is_empty() {
            temp_left += 1;
            let store = SecretStore::open(&dir).unwrap();
            drop(store.lock(Duration::ZERO).unwrap());
            assert_eq!(
                temp_files(&dir),
                Vec::<String>::new(),
                "run {run}: the next lock left temp files"
            );
        }
        next_from = highest + 1;
    }
    // The next run succeeds: lock, replace every bundle, read each back.
    let store = SecretStore::open(&dir).unwrap();
    let lock = store.lock(Duration::ZERO).unwrap();
    for name in NAMES {
        store.put(name, &bundle_bytes(name, next_from)).unwrap();
        assert_eq!(version_on_disk(&dir, name), Some(next_from));
    }
    drop(lock);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        names,
        [".lock", "arc.json", "aws-iot.json", "azure-iot.json"]
    );
    println!(
        "store_writes_killed_leave_old_or_new: {runs} kills in {:.1} s, {writes} puts acknowledged: \
         {temp_left} kills left a temp file (removed by the next lock), {newer_than_ack} bundles \
         were already the new version (killed between rename and acknowledgement), \
         {killed_before_ready} kills came before the writer had the store",
        started.elapsed().as_secs_f64()
    );
}

/// `krypton-host provision azure-iot --force` against the fixture's mock, the compile cache
/// in `cache`.
fn provision_command(fx: &Fixture, cache: &Path) -> Command {
    let words = fx
        .provision("azure-iot")
        .force()
        .json()
        .poll_ms(100)
        .set("--deadline-secs", "60")
        .words();
    let mut command = Command::new(BIN);
    command
        .args(words)
        .env("KRYPTON_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .env_remove("KRYPTON_STORE")
        .env_remove("KRYPTON_ENDPOINT");
    command
}

/// A whole [`provision_command`] run, which must succeed (`what` names it when it fails).
fn provision_ok(fx: &Fixture, cache: &Path, what: &str) {
    let out = provision_command(fx, cache).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const REGISTER: &str = "/v1/provisioning/azure/iot/register";
const REGISTRATIONS: &str = "/v1/provisioning/azure/iot/registrations/";

fn registers(mock: &MockKrypton) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == REGISTER)
        .count()
}

/// The Azure bundle on disk, checked: exactly the credentials the mock issued for its
/// `operationId` (certificate, key, device ID, host). Returns the raw bytes and the operation.
fn azure_bundle(mock: &MockKrypton, store: &Path) -> (Vec<u8>, String) {
    let bytes = std::fs::read(store.join("azure-iot.json")).unwrap();
    let bundle: Value = serde_json::from_slice(&bytes).expect("a complete bundle");
    let op = bundle["operationId"].as_str().unwrap().to_string();
    // The last issuance: a resumed operation may be assigned (and issued) more than once.
    let issued = mock
        .issued()
        .into_iter()
        .rev()
        .find(|i| i.operation_id.as_deref() == Some(op.as_str()))
        .unwrap_or_else(|| panic!("the stored bundle names operation {op}, never assigned"));
    assert_azure_bundle(&bundle, &issued, mock.ca_pem());
    (bytes, op)
}

/// The registration in flight the store holds, if any (`azure-iot-pending.json`).
fn pending_operation(store: &Path) -> Option<String> {
    let bytes = std::fs::read(store.join("azure-iot-pending.json")).ok()?;
    let value: Value = serde_json::from_slice(&bytes).expect("a complete pending record");
    Some(value["operationId"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_provision_killed_resumes_without_registering_again() {
    let runs = runs();
    let mut rng = rng("azure_provision_killed_resumes_without_registering_again");
    let fx = Fixture::new().await;
    let (mock, store) = (&fx.mock, &fx.store);
    let cache = fx.path("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();

    // A first complete run fills the compile cache; the second gives the "old" bundle and how
    // long a whole run takes.
    let mut whole_run = Duration::ZERO;
    for _ in 0..2 {
        let started = Instant::now();
        provision_ok(&fx, &cache, "a complete run");
        whole_run = started.elapsed();
    }
    let (mut old, _) = azure_bundle(mock, store);

    let (mut held_runs, mut resumed, mut registered_again, mut replaced, mut before_register) =
        (0, 0, 0, 0, 0);
    let started = Instant::now();
    for run in 0..runs {
        // Half of the runs: the mock holds the registration in `assigning`, and the kill lands
        // after the register call; the others are killed anywhere in a whole run.
        let held = run % 2 == 1;
        if held {
            mock.inject(REGISTRATIONS, Fault::RegistrationStatus("assigning".into()));
        }
        let registers_before = registers(mock);
        let mut child = provision_command(&fx, &cache)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if held {
            held_runs += 1;
            while registers(mock) == registers_before {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "run {run}: the run ended before registering"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..400_000))).await;
        } else {
            let span = whole_run.as_micros() as u64 * 6 / 5;
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..span))).await;
        }
        child.kill().unwrap(); // SIGKILL (or nothing, when the run already ended)
        child.wait().unwrap();
        mock.clear_faults();
        let registered = registers(mock) > registers_before;

        // Old or new: the old bundle's bytes, or exactly what the mock issued last.
        let (now, op) = azure_bundle(mock, store);
        if now != old {
            assert!(!held, "run {run}: a held registration stored a bundle");
            let last = mock.issued().last().unwrap().operation_id.clone().unwrap();
            assert_eq!(op, last, "run {run}: the bundle is not the newest issued");
            replaced += 1;
        }
        // The next run succeeds, resuming a registration left in flight.
        let pending = pending_operation(store);
        let registers_before = registers(mock);
        provision_ok(&fx, &cache, &format!("run {run}: the next run"));
        let (next, next_op) = azure_bundle(mock, store);
        let new_registers = registers(mock) - registers_before;
        match pending {
            Some(op) => {
                assert_eq!(
                    new_registers, 0,
                    "run {run}: registered again instead of resuming {op}"
                );
                assert_eq!(next_op, op, "run {run}: the next run did not resume {op}");
                resumed += 1;
            }
            None => {
                // Killed before the register call, or after it but before the registration
                // in flight was stored: there was nothing to resume, so the next run
                // registers once.
                assert_eq!(new_registers, 1, "run {run}");
                if registered {
                    registered_again += 1;
                } else {
                    before_register += 1;
                }
            }
        }
        assert_eq!(
            pending_operation(store),
            None,
            "run {run}: the finished registration stayed"
        );
        let leftovers: Vec<_> = std::fs::read_dir(store)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".lock" && n != "azure-iot.json")
            .collect();
        assert_eq!(
            leftovers,
            Vec::<String>::new(),
            "run {run}: files left after the next run"
        );
        old = next;
    }
    if held_runs >= 4 {
        assert!(
            resumed > 0,
            "no kill left a registration in flight to resume"
        );
    }
    println!(
        "azure_provision_killed_resumes_without_registering_again: {runs} kills in {:.1} s \
         (a whole run {} ms): {held_runs} held between register and assigned, {replaced} \
         killed after the new bundle was stored; the next run resumed {resumed} registrations \
         left in flight without registering; it registered once after {before_register} kills \
         before the register call and {registered_again} between the register call and the \
         storing of its operation",
        started.elapsed().as_secs_f64(),
        whole_run.as_millis()
    );
}

/// The `i`-th release after the built-in version 0.3.0: `0.3.1`, `0.3.2`, … (always five
/// bytes, so [`with_version`] can patch it in).
fn release(i: usize) -> String {
    let n = 31 + i;
    assert!(n <= 999, "at most 968 releases");
    format!("{}.{}.{}", n / 100, n / 10 % 10, n % 10)
}

/// A daemon following `krypton/component:stable` of `registry`, polling every second.
fn following_config(dir: &Path, registry: &str, public: &str) -> PathBuf {
    GatewayToml::default()
        .following(dir, registry, public)
        .string("endpoint", &format!("https://127.0.0.1:{}", closed_port()))
        .target("arc")
        .write(&dir.join("gateway.toml"))
}

/// Publish `bytes` signed as `version` under the tag; the manifest digest.
async fn publish_signed(
    client: &Registry,
    tag: &Source,
    key: &ed25519_dalek::SigningKey,
    bytes: &[u8],
    version: &str,
) -> String {
    let sig = krypton_host::signing::sign(key, bytes, version).unwrap();
    client
        .publish(tag, bytes, Some(version), Some(sig.as_bytes()))
        .await
        .unwrap()
        .digest
}

/// Wait (at most 90 s) until the daemon serves; panics with its log when it exits first (exit 3
/// after refusing its own kept artifact was the fault) or never answers.
async fn serving(
    daemon: &mut tokio::process::Child,
    socket: &Path,
    log: &Path,
    what: &str,
) -> std::collections::HashMap<String, String> {
    for _ in 0..900 {
        let s = daemon_status(socket).await;
        if s.contains_key("manifest") {
            return s;
        }
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!(
                "{what}: the daemon exited ({status}) instead of serving:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: the daemon did not answer:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_floor_written_before_the_registry_state_still_serves() {
    if !registry_tools_present(false) {
        return;
    }
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let tag = Source::parse(&reg.reference("krypton/component:stable")).unwrap();
    let client = Registry::new(&tag, &insecure_settings()).unwrap();
    let v1 = publish_signed(&client, &tag, &key, DEFAULT_COMPONENT, REAL_VERSION).await;
    let config = following_config(tmp.path(), &reg.addr, &public_key_b64(&key));
    let socket = tmp.path().join("control.sock");
    let log = tmp.path().join("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    assert_eq!(
        serving(&mut daemon, &socket, &log, "v1").await["manifest"],
        v1
    );
    stop(daemon).await;
    // The state a power cut left between the lifecycle's `accepted-version` (0.3.1, the swap
    // that was under way) and the follower's `current.json` (still v1 current, the 0.3.1
    // artifact pending: the follower writes that before the swap starts).
    std::fs::write(tmp.path().join("state/accepted-version"), "0.3.1\n").unwrap();
    let pointer = tmp.path().join("state/registry/current.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&pointer).unwrap()).unwrap();
    state["pending"] = serde_json::json!({
        "manifest": format!("sha256:{}", "c".repeat(64)),
        "sha256": "d".repeat(64),
        "version": "0.3.1",
    });
    std::fs::write(&pointer, serde_json::to_vec(&state).unwrap()).unwrap();
    let log = tmp.path().join("daemon2.log");
    let mut daemon = spawn_daemon(&config, &log);
    let s = serving(&mut daemon, &socket, &log, "after the cut").await;
    assert_eq!(s["manifest"], v1);
    assert_eq!(
        s["serving"],
        krypton_host::signing::digest_hex(DEFAULT_COMPONENT)
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("state/accepted-version")).unwrap(),
        format!("{REAL_VERSION}\n"),
        "the floor is back at the kept version"
    );
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_swaps_killed_still_serve_at_the_next_start() {
    if !registry_tools_present(false) {
        return;
    }
    let runs = runs();
    let mut rng = rng("registry_swaps_killed_still_serve_at_the_next_start");
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
    let tag = Source::parse(&reg.reference("krypton/component:stable")).unwrap();
    let client = Registry::new(&tag, &insecure_settings()).unwrap();
    // manifest digest -> component SHA-256 of every version published.
    let mut published = BTreeMap::new();
    let mut order = Vec::new();
    let v0 = publish_signed(&client, &tag, &key, DEFAULT_COMPONENT, REAL_VERSION).await;
    published.insert(
        v0.clone(),
        krypton_host::signing::digest_hex(DEFAULT_COMPONENT),
    );
    order.push(v0.clone());
    let config = following_config(tmp.path(), &reg.addr, &public_key_b64(&key));
    let socket = tmp.path().join("control.sock");
    let mut log = tmp.path().join("daemon-start.log");
    let mut daemon = spawn_daemon(&config, &log);
    serving(&mut daemon, &socket, &log, "the first start").await;

    // One whole swap, unkilled, gives the span the kills are drawn from.
    let first = with_version(&release(0));
    let started = Instant::now();
    let d = publish_signed(&client, &tag, &key, &first, &release(0)).await;
    published.insert(d.clone(), krypton_host::signing::digest_hex(&first));
    order.push(d.clone());
    while daemon_status(&socket).await.get("manifest") != Some(&d) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first swap did not finish:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let whole_swap = started.elapsed();

    let (mut old_served, mut new_served, mut mid_swap) = (0, 0, 0);
    let started = Instant::now();
    for run in 0..runs {
        let version = release(run + 1);
        let bytes = with_version(&version);
        let before = daemon_status(&socket).await["manifest"].clone();
        let d = publish_signed(&client, &tag, &key, &bytes, &version).await;
        published.insert(d.clone(), krypton_host::signing::digest_hex(&bytes));
        order.push(d.clone());
        let span = whole_swap.as_micros() as u64 * 6 / 5;
        tokio::time::sleep(Duration::from_micros(rng.random_range(0..span))).await;
        daemon.start_kill().unwrap(); // SIGKILL
        daemon.wait().await.unwrap();
        // Was the kill inside a swap (a `pending` artifact recorded, the swap not ended)?
        let state = std::fs::read(tmp.path().join("state/registry/current.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        if state.as_ref().is_some_and(|s| {
            !s.get("pending")
                .unwrap_or(&serde_json::Value::Null)
                .is_null()
        }) {
            mid_swap += 1;
        }

        log = tmp.path().join(format!("daemon-{run}.log"));
        daemon = spawn_daemon(&config, &log);
        let s = serving(
            &mut daemon,
            &socket,
            &log,
            &format!("run {run} ({version})"),
        )
        .await;
        let manifest = &s["manifest"];
        // What served before the publish, the new version, or one published in between that
        // the daemon had not swapped in yet when `before` was read: never an older one.
        let rank = |m: &String| order.iter().position(|o| o == m);
        assert!(
            rank(manifest).is_some() && rank(manifest) >= rank(&before),
            "run {run}: serving {manifest}, older than the version before ({before}) or never published"
        );
        assert_eq!(
            Some(&s["serving"]),
            published.get(manifest),
            "run {run}: the served bytes are not those of {manifest}"
        );
        if *manifest == d {
            new_served += 1;
        } else {
            old_served += 1;
        }
    }
    println!(
        "registry_swaps_killed_still_serve_at_the_next_start: {runs} kills in {:.1} s (a whole \
         swap {} ms), {mid_swap} of them inside a swap (`pending` recorded): the next start served \
         the version before {old_served} times, the new one {new_served} times, and never refused \
         to start",
        started.elapsed().as_secs_f64(),
        whole_swap.as_millis()
    );
    // The long mode must have hit the window it exists for (a kill between the swap's first
    // and last write), not only the quiet time before the poll.
    if runs >= 100 {
        assert!(mid_swap > 0, "no kill of {runs} landed inside a swap");
    }
    stop(daemon).await;
}

fn insecure_settings() -> Settings {
    Settings {
        insecure: true,
        ..Settings::default()
    }
}
