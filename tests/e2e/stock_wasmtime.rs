//! `krypton-cli.wasm` (the provisioning component composed with its adapters by
//! `guest/plugin`) on the stock `wasmtime` CLI 48.0.x, against the mock Krypton over plain
//! HTTP on loopback (stock wasmtime trusts only the web PKI roots, so it cannot trust the
//! mock's CA): the same bundles, the same `--json` shapes and the same exit codes as
//! `krypton-host`.
//!
//! CI installs the CLI (`.ci/run`: `cargo install wasmtime-cli --version 48.0.8 --locked`), so
//! there a missing `wasmtime` is a failure, never a skip; elsewhere the test says why it skips.

use crate::support::*;
use krypton_mock::{Fault, MockConfig, MockKrypton};
use krypton_plugin::{GUEST_WASM, KRYPTON_CLI_WASM};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The stock CLI: `$WASMTIME`, else `wasmtime` on `PATH`, else `~/.cargo/bin/wasmtime`
/// (where `cargo install` puts it); `None` when there is none.
fn stock_wasmtime() -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("wasmtime"))
                .collect()
        })
        .unwrap_or_default();
    std::env::var_os("WASMTIME")
        .map(PathBuf::from)
        .into_iter()
        .chain(on_path)
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/wasmtime")))
        .find(|candidate| candidate.is_file())
}

/// The CLI, or `None` after saying why the test skips (a failure under `CI`).
fn wasmtime_or_skip() -> Option<PathBuf> {
    let found = stock_wasmtime();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the wasmtime CLI is missing: cargo install wasmtime-cli --version 48.0.8 --locked"
        );
        eprintln!(
            "the wasmtime CLI is not installed; skipped (cargo install wasmtime-cli --version 48.0.8 --locked)"
        );
    }
    found
}

/// `wasmtime run -S http --dir STORE::/store krypton-cli.wasm ARGS...`: (exit code, stdout,
/// stderr).
async fn run_stock(wasmtime: &Path, store: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(wasmtime)
        .args(["run", "-S", "http", "--dir"])
        .arg(format!("{}::/store", store.display()))
        .arg(KRYPTON_CLI_WASM)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `wasmtime run ...` as [`run_stock`] does, started and left running (killed when dropped).
fn spawn_stock(wasmtime: &Path, store: &Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(wasmtime)
        .args(["run", "-S", "http", "--dir"])
        .arg(format!("{}::/store", store.display()))
        .arg(KRYPTON_CLI_WASM)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Wait (bounded: 120 s) until the mock has received a request whose path starts with
/// `prefix`, i.e. a run is inside its Krypton call, holding the store's writer lock.
async fn until_requested(mock: &MockKrypton, prefix: &str) {
    for _ in 0..2400 {
        if mock.requests().iter().any(|r| r.path.starts_with(prefix)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no request to {prefix} within 120 s");
}

/// Set a file's modification time `ago` into the past (a leftover from a run killed then).
fn age(path: &Path, ago: std::time::Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

/// A new directory, mode 0700: the store directory as the README says to create it (WASI sets
/// no modes, and `krypton-host` refuses a store others can reach).
fn private_dir(path: &Path) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().mode(0o700).create(path).unwrap();
    path.to_path_buf()
}

async fn plain_mock() -> MockKrypton {
    let config = MockConfig {
        plain_http: true,
        ..MockConfig::default()
    };
    MockKrypton::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

/// The keys of a JSON object, sorted, nested objects as `key.sub`.
fn shape(value: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Value::Object(map) = value {
        for (k, v) in map {
            keys.push(k.clone());
            if let Value::Object(_) = v {
                keys.extend(shape(v).into_iter().map(|sub| format!("{k}.{sub}")));
            }
        }
    }
    keys.sort();
    keys
}

#[test]
fn the_composed_component_embeds_the_hosts_component_byte_for_byte() {
    let guest = std::fs::read(GUEST_WASM).unwrap();
    assert!(
        guest == DEFAULT_COMPONENT,
        "guest/plugin built another provisioning component"
    );
    let cli = std::fs::read(KRYPTON_CLI_WASM).unwrap();
    let found = cli
        .windows(DEFAULT_COMPONENT.len())
        .filter(|w| *w == DEFAULT_COMPONENT)
        .count();
    assert_eq!(
        found, 1,
        "krypton-cli.wasm does not hold the embedded component once"
    );
    eprintln!(
        "krypton-cli.wasm: {} bytes, of which the provisioning component {} bytes",
        cli.len(),
        DEFAULT_COMPONENT.len()
    );
}

#[test]
fn the_composed_component_imports_only_wasi_and_exports_wasi_cli_run() {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, KRYPTON_CLI_WASM).unwrap();
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    assert!(!imports.is_empty());
    for name in &imports {
        assert!(
            name.starts_with("wasi:"),
            "import `{name}` is left open: {imports:?}"
        );
    }
    // What `wasmtime run -S http` provides: the WASI 0.2 command world and wasi:http.
    for name in &imports {
        let package = name.split('/').next().unwrap();
        assert!(
            [
                "wasi:cli",
                "wasi:io",
                "wasi:clocks",
                "wasi:random",
                "wasi:filesystem",
                "wasi:http",
                "wasi:sockets"
            ]
            .contains(&package),
            "{name}"
        );
    }
    let exports: Vec<String> = ty
        .exports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    assert!(
        exports.len() == 1 && exports[0].starts_with("wasi:cli/run@0.2."),
        "{exports:?}"
    );
}

#[tokio::test]
async fn stock_wasmtime_provisions_azure_and_aws_and_stores_what_krypton_issued() {
    let Some(wasmtime) = wasmtime_or_skip() else {
        return;
    };
    let mock = plain_mock().await;
    let endpoint = mock.endpoint();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    let tmp = tempfile::tempdir().unwrap();
    let store = private_dir(&tmp.path().join("store"));

    // azure-iot: register, poll until assigned.
    let (code, out, err) = run_stock(
        &wasmtime,
        &store,
        &["provision", "azure-iot", "--endpoint", &endpoint, "--json"],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    let issued = mock.issued()[0].clone();
    assert_eq!(issued.target, "azure-iot");
    assert_eq!(report["ok"], true);
    assert_eq!(report["target"], "azure-iot");
    assert_eq!(report["reused"], false);
    assert_eq!(report["deviceId"], issued.id.as_str());
    assert_eq!(report["host"], "krypton-mock-hub.azure-devices.net");
    assert_eq!(report["certificate"]["subject"], "CN=440101234567890");
    let bundle = read_bundle(&store, "azure-iot");
    assert_azure_bundle(&bundle, &issued, mock.ca_pem());
    let (calls, expected) = azure_calls(&mock, issued.operation_id.as_deref().unwrap());
    assert_eq!(calls, expected);

    // aws-iot with a request parameter.
    let (code, out, err) = run_stock(
        &wasmtime,
        &store,
        &[
            "provision",
            "aws-iot",
            "--endpoint",
            &endpoint,
            "--param",
            "thingName=gateway-7",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let aws: Value = serde_json::from_str(out.trim()).unwrap();
    let issued = mock.issued()[1].clone();
    assert_eq!(issued.target, "aws-iot");
    assert_eq!(aws["clientId"], "gateway-7");
    assert_eq!(aws["region"], "ap-northeast-1");
    let bundle = read_bundle(&store, "aws-iot");
    assert_aws_iot_bundle(&bundle, &issued, "gateway-7");
    assert_eq!(
        mock.requests().last().unwrap().body,
        br#"{"requestParameters":{"thingName":"gateway-7"}}"#
    );
    // Only the two bundle files: no temporary file is left behind.
    let mut files: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["aws-iot.json", "azure-iot.json"]);

    // A second run reuses the stored bundle without calling Krypton.
    let before = mock.requests().len();
    let (code, out, _) = run_stock(
        &wasmtime,
        &store,
        &["provision", "azure-iot", "--endpoint", &endpoint, "--json"],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["reused"],
        true
    );
    assert_eq!(mock.requests().len(), before);

    // status --json: krypton-host's object, read from the same store.
    let (code, out, err) = run_stock(&wasmtime, &store, &["status", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(status["ok"], true);
    assert_eq!(status["store"], "/store");
    let names: Vec<&str> = status["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["azure-iot", "aws-iot"]);
    assert_eq!(status["bundles"][0]["mode"], "network");
    let host_store = store.to_str().unwrap();
    let (host_code, host_out, host_err) =
        run_cli(&["status", "--store", host_store, "--json"]).await;
    assert_eq!(host_code, 0, "{host_out}\n{host_err}");
    let host_status: Value = serde_json::from_str(host_out.trim()).unwrap();
    assert_eq!(shape(&status), shape(&host_status));
    for i in 0..2 {
        assert_eq!(
            shape(&status["bundles"][i]),
            shape(&host_status["bundles"][i])
        );
        let mut ours = status["bundles"][i].clone();
        let mut theirs = host_status["bundles"][i].clone();
        ours.as_object_mut().unwrap().remove("store");
        theirs.as_object_mut().unwrap().remove("store");
        assert_eq!(ours, theirs);
    }
    // The report of a provision has krypton-host's shape too.
    let tls = Fixture::new().await;
    let host = tls.provision("azure-iot").json().run().await;
    assert_eq!(host.code, 0, "{}", host.stderr);
    assert_eq!(shape(&report), shape(&host.json()));
    tls.stop().await;

    // The text report, as krypton-host prints it.
    let (code, out, _) = run_stock(&wasmtime, &store, &["status", "aws-iot"]).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("aws-iot: stored bundle `aws-iot` (obtained "),
        "{out}"
    );
    assert!(
        out.contains("  mode                     network\n"),
        "{out}"
    );
    mock.stop().await;
}

#[tokio::test]
async fn on_stock_wasmtime_a_failed_call_stores_nothing_and_exits_with_krypton_hosts_code() {
    let Some(wasmtime) = wasmtime_or_skip() else {
        return;
    };
    let mock = plain_mock().await;
    let endpoint = mock.endpoint();
    let tmp = tempfile::tempdir().unwrap();
    let store = private_dir(&tmp.path().join("store"));
    let empty = |store: &Path| std::fs::read_dir(store).unwrap().count() == 0;

    // HTTP 500 on every AWS call: exit 6, the typed fields, nothing stored.
    mock.inject(
        "/v1/provisioning/aws/",
        http_error(500, "KRY5001", "AWS IoT is unavailable"),
    );
    let (code, out, err) = run_stock(
        &wasmtime,
        &store,
        &["provision", "aws-iot", "--endpoint", &endpoint, "--json"],
    )
    .await;
    assert_eq!(code, 6, "{out}\n{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["exitCode"], 6);
    assert_eq!(v["error"]["kind"], "http-status");
    assert_eq!(v["error"]["status"], 500);
    assert_eq!(v["error"]["code"], "KRY5001");
    assert!(empty(&store));

    // A failed DPS registration: exit 8, nothing stored (the pending registration is not kept
    // once it has ended).
    mock.inject(
        "/v1/provisioning/azure/iot/registrations/",
        Fault::RegistrationStatus("failed".into()),
    );
    let (code, out, _) = run_stock(
        &wasmtime,
        &store,
        &["provision", "azure-iot", "--endpoint", &endpoint, "--json"],
    )
    .await;
    assert_eq!(code, 8, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["error"]["kind"],
        "registration-failed"
    );
    let leftover: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "azure-iot-pending.json")
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
    assert!(!store.join("azure-iot.json").exists());

    // Malformed JSON: exit 7; text output names the field, stores nothing.
    let store2 = private_dir(&tmp.path().join("store2"));
    mock.clear_faults();
    mock.inject("/", Fault::MalformedJson);
    let (code, out, err) = run_stock(
        &wasmtime,
        &store2,
        &["provision", "aws-iot", "--endpoint", &endpoint],
    )
    .await;
    assert_eq!(code, 7, "{out}\n{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: Krypton's answer is unusable: field `body`")),
        "{err}"
    );
    assert!(empty(&store2));

    // Plain http to a host that is not loopback: refused before any request, exit 3.
    let before = mock.requests().len();
    let (code, out, _) = run_stock(
        &wasmtime,
        &store2,
        &[
            "provision",
            "aws-iot",
            "--endpoint",
            "http://krypton.soracom.io:8036",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 3, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["kind"], "invalid-request");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("loopback"),
        "{v}"
    );
    assert_eq!(mock.requests().len(), before);
    assert!(empty(&store2));

    // Nothing stored: status is exit 11; a bad command line exit 2, as JSON with --json; an
    // unknown target is a usage error too.
    let (code, out, _) = run_stock(&wasmtime, &store2, &["status", "--json"]).await;
    assert_eq!(code, 11, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["error"]["kind"].clone()),
        (Value::Bool(false), "not-provisioned".into())
    );
    let (code, out, _) = run_stock(&wasmtime, &store2, &["provision", "--bogus", "--json"]).await;
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["error"]["kind"],
        "usage"
    );
    let (code, _, err) = run_stock(&wasmtime, &store2, &["provision", "nope"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a target of this component"), "{err}");
    mock.stop().await;
}

/// Issue 18 item 14: two stock runs on one store that would each mint an AWS IoT certificate.
/// The first holds the store's writer lock (`.run-lock`) through its Krypton call (delayed
/// 15 s by the mock); the second, started meanwhile, fails at once (exit 9, "another run
/// holds the store") before calling Krypton, and only one certificate is minted and stored.
#[tokio::test]
async fn two_stock_runs_on_one_store_do_not_both_write() {
    let Some(wasmtime) = wasmtime_or_skip() else {
        return;
    };
    let mock = plain_mock().await;
    let endpoint = mock.endpoint();
    let tmp = tempfile::tempdir().unwrap();
    let store = private_dir(&tmp.path().join("store"));
    mock.inject_times(
        "/v1/provisioning/aws/",
        Fault::DelayHeaders(std::time::Duration::from_secs(15)),
        1,
    );
    let args = [
        "provision",
        "aws-iot",
        "--endpoint",
        &endpoint,
        "--param",
        "thingName=gateway-7",
        "--json",
    ];
    let first = spawn_stock(&wasmtime, &store, &args);
    until_requested(&mock, "/v1/provisioning/aws/").await;
    let (code, out, err) = run_stock(&wasmtime, &store, &args).await;
    assert_eq!(code, 9, "{out}\n{err}");
    assert_eq!(
        std::fs::read_to_string(store.join(".run-lock"))
            .unwrap()
            .split(' ')
            .next(),
        Some("wasi")
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "storage");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("another run holds the store /store: a WASI runtime's run "),
        "{message}"
    );
    assert!(message.contains("remove /store/.run-lock"), "{message}");
    let aws_calls = |mock: &MockKrypton| {
        mock.requests()
            .iter()
            .filter(|r| r.path.starts_with("/v1/provisioning/aws/"))
            .count()
    };
    assert_eq!(aws_calls(&mock), 1, "the refused run called Krypton");
    let done = first.wait_with_output().await.unwrap();
    let out = String::from_utf8(done.stdout).unwrap();
    assert_eq!(done.status.code(), Some(0), "{out}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(mock.issued().len(), 1);
    let issued = mock.issued()[0].clone();
    assert_eq!(report["reused"], false);
    assert_aws_iot_bundle(&read_bundle(&store, "aws-iot"), &issued, "gateway-7");
    // The lock went with its run.
    assert_eq!(names(&store), ["aws-iot.json"]);
    mock.stop().await;
}

/// Issue 18 item 14: a stock run killed in the middle of its run leaves its lock and (had it
/// been killed mid-write) a temp file holding a key. While the lock is fresh, a next run and
/// `krypton-host` both refuse the store and leave the temp file alone (it may be in flight);
/// once the lock is stale (5 minutes), the next stock run removes both, provisions and
/// leaves nothing behind.
#[tokio::test]
async fn a_killed_stock_runs_leftovers_are_cleaned_by_the_next_run() {
    let Some(wasmtime) = wasmtime_or_skip() else {
        return;
    };
    let mock = plain_mock().await;
    let endpoint = mock.endpoint();
    let tmp = tempfile::tempdir().unwrap();
    let store = private_dir(&tmp.path().join("store"));
    mock.inject_times(
        "/v1/provisioning/aws/",
        Fault::DelayHeaders(std::time::Duration::from_secs(60)),
        1,
    );
    let args = ["provision", "aws-iot", "--endpoint", &endpoint, "--json"];
    let mut killed = spawn_stock(&wasmtime, &store, &args);
    until_requested(&mock, "/v1/provisioning/aws/").await;
    killed.kill().await.unwrap();
    let leftover = store.join(".aws-iot.json.tmp-00c0ffee00c0ffee");
    std::fs::write(&leftover, b"-----BEGIN PRIVATE KEY-----").unwrap();

    // Fresh: refused, the temp file kept.
    let (code, out, _) = run_stock(&wasmtime, &store, &args).await;
    assert_eq!(code, 9, "{out}");
    assert_eq!(
        names(&store),
        [".aws-iot.json.tmp-00c0ffee00c0ffee", ".run-lock"]
    );
    let host = run_cli(&[
        "provision",
        "aws-iot",
        "--store",
        store.to_str().unwrap(),
        "--endpoint",
        &endpoint,
        "--lock-wait-secs",
        "0",
        "--json",
    ])
    .await;
    assert_eq!(host.0, 9, "{}\n{}", host.1, host.2);
    assert!(leftover.exists(), "an in-flight temp file was removed");

    // Stale: the next stock run takes over, cleans and provisions.
    age(
        &store.join(".run-lock"),
        std::time::Duration::from_secs(301),
    );
    let (code, out, err) = run_stock(&wasmtime, &store, &args).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(bundle_files(&store), ["aws-iot.json"]);
    assert_eq!(mock.issued().len(), 2);
    mock.stop().await;
}

/// Issue 18 item 14: `krypton-host`'s clean-up of temp files spares a stock run's in-flight
/// one (a fresh `.run-lock` of a WASI run): `provision` is refused (exit 9) and the file stays;
/// with the lock stale, `provision` removes both and leaves no lock of its own behind.
#[tokio::test]
async fn krypton_host_keeps_a_stock_runs_in_flight_temp_file() {
    let fx = Fixture::new().await;
    private_dir(&fx.store);
    let in_flight = fx.store.join(".aws-iot.json.tmp-0123456789abcdef");
    let run_lock = fx.store.join(".run-lock");
    std::fs::write(&in_flight, b"-----BEGIN PRIVATE KEY-----").unwrap();
    std::fs::write(&run_lock, "wasi 00000000feedf00d\n").unwrap();
    let refused = fx
        .provision("aws-iot")
        .args(["--lock-wait-secs", "1"])
        .json()
        .run()
        .await;
    assert_eq!(refused.code, 9, "{}", refused.stderr);
    let v = refused.json();
    assert_eq!(v["error"]["kind"], "storage");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("a `wasmtime run` of krypton-cli.wasm"),
        "{message}"
    );
    assert!(
        message.contains(&run_lock.display().to_string()),
        "{message}"
    );
    assert!(
        in_flight.exists(),
        "krypton-host removed a stock run's in-flight temp file"
    );
    assert_eq!(
        std::fs::read_to_string(&run_lock).unwrap(),
        "wasi 00000000feedf00d\n"
    );
    assert!(fx.mock.requests().is_empty());

    age(&run_lock, std::time::Duration::from_secs(300));
    let done = fx.provision("aws-iot").json().run().await;
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(!in_flight.exists(), "a killed run's temp file survived");
    assert!(!run_lock.exists(), "krypton-host left its .run-lock behind");
    assert!(fx.store.join("aws-iot.json").exists());
    fx.stop().await;
}
