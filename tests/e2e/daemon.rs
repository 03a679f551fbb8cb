//! The gateway daemon (issue 4): configuration checks, hot swap under load with zero failed
//! calls, refusal of a broken component, roll back of a hostile one, signatures, and the
//! daemon process itself with its control socket.

use super::support::*;
use krypton_host::component::lifecycle::{Lifecycle, ReloadOutcome};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Replace `path` atomically, as an operator's deployment should.
fn install(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn limits() -> SandboxLimits {
    SandboxLimits {
        cpu: Duration::from_millis(500),
        wall: Duration::from_secs(20),
        ..SandboxLimits::default()
    }
}

#[tokio::test]
async fn configuration_errors_name_the_key() {
    for (text, key) in [
        (
            "store = '/s'\n[[target]]\nname = 'azure-iot'\ncolour = 'red'",
            "colour",
        ),
        (
            "[[target]]\nname = 'azure-iot'\n[limits]\ncpu_ms = 'fast'",
            "cpu_ms",
        ),
        ("endpoint = 'ftp://x'\n[[target]]\nname = 'arc'", "endpoint"),
        (
            "check_interval_secs = 0\n[[target]]\nname = 'arc'",
            "check_interval_secs",
        ),
        (
            "trusted_public_key = 'abc'\n[[target]]\nname = 'arc'",
            "trusted_public_key",
        ),
        ("store = '/s'", "target"),
        (
            "allowed_outbound_hosts = ['krypton']\n[[target]]\nname = 'arc'",
            "allowed_outbound_hosts[0]",
        ),
        (
            "[[target]]\nname = 'arc'\n[[target]]\nname = 'aws-iot'\n[[target]]\nname = 'arc'",
            "key `target[2].name`: `arc` is already listed as target[0]",
        ),
        (
            "trusted_public_key = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='\n[[target]]\nname = 'arc'",
            "small-order",
        ),
    ] {
        let err = format!("{:#}", GatewayConfig::parse(text).unwrap_err());
        assert!(err.contains(key), "{key}: {err}");
    }
    // Target names are the component's: an unknown one is refused when the daemon starts and
    // has the component's list, naming the key.
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "store = '{}'\nstate_dir = '{}'\n[[target]]\nname = 'azure'",
        tmp.path().join("store").display(),
        tmp.path().join("state").display()
    );
    let err = Daemon::start(GatewayConfig::parse(&text).unwrap())
        .await
        .err()
        .expect("an unknown target is refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("key `target[0].name`: unknown target `azure`; expected one of: azure-iot"),
        "{err}"
    );
    let example = std::fs::read_to_string(format!(
        "{}/../../gateway.example.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let config = GatewayConfig::parse(&example).unwrap();
    assert_eq!(config.targets.len(), 2);
    assert_eq!(config.limits.cpu_ms, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_swaps_under_load_then_broken_and_hostile_components() {
    let fx = Fixture::new().await;
    let store = fx.secret_store();
    let file = fx.path("component.wasm");
    install(&file, &variant(0));
    let runtime = Arc::new(Runtime::with_limits(limits()).unwrap());
    let lifecycle = Arc::new(
        Lifecycle::start(runtime, Some(file.clone()), None)
            .await
            .unwrap(),
    );
    let policy = policy_for(&fx.mock);
    // Provisioned once; later calls are served from the store by whichever version is current.
    lifecycle
        .provision(policy.clone(), store.clone(), &fx.request(Target::AwsIot))
        .await
        .unwrap()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut callers = Vec::new();
    for _ in 0..2 {
        let (lifecycle, store, policy, stop, ok, failed) = (
            lifecycle.clone(),
            store.clone(),
            policy.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        let req = fx.request(Target::AwsIot);
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match lifecycle
                    .provision(policy.clone(), store.clone(), &req)
                    .await
                {
                    Ok(Ok(report)) if report.reused => ok.fetch_add(1, Ordering::SeqCst),
                    other => {
                        eprintln!("failed call: {other:?}");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    // Two versions in turn: every reload is a real swap (new digest), and after the first two
    // each one loads from the precompiled artifact in the cache.
    let mut digests = std::collections::HashSet::new();
    let mut swaps = 0;
    for i in 1..=100u8 {
        install(&file, &variant(1 + i % 2));
        match lifecycle.reload().await.unwrap() {
            ReloadOutcome::Swapped(d) => {
                digests.insert(d);
                swaps += 1;
            }
            other => panic!("swap {i}: {other:?}"),
        }
    }
    assert_eq!(swaps, 100);
    stop.store(true, Ordering::SeqCst);
    for c in callers {
        c.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "calls failed during swaps"
    );
    assert!(
        ok.load(Ordering::SeqCst) >= 20,
        "too few calls ran: {}",
        ok.load(Ordering::SeqCst)
    );
    assert_eq!(digests.len(), 2);
    assert_eq!(lifecycle.reload().await.unwrap(), ReloadOutcome::Unchanged);

    // A broken component is refused; the current one keeps serving.
    let serving = lifecycle.current().digest.clone();
    install(&file, b"\0asm not really a component");
    assert!(lifecycle.reload().await.is_err());
    assert_eq!(lifecycle.current().digest, serving);

    // A hostile one passes the checks, traps on its first call, and is rolled back.
    install(&file, &hostile_wasm());
    assert!(matches!(
        lifecycle.reload().await.unwrap(),
        ReloadOutcome::Swapped(_)
    ));
    assert_eq!(lifecycle.current().version, "hostile");
    let mut azure = fx.request(Target::AzureIot);
    azure.force = true;
    let trapped = lifecycle
        .provision(policy.clone(), store.clone(), &azure)
        .await;
    assert!(format!("{:#}", trapped.unwrap_err()).contains("CPU limit"));
    assert_eq!(lifecycle.current().digest, serving, "not rolled back");
    let report = lifecycle
        .provision(policy, store, &fx.request(Target::AwsIot))
        .await
        .unwrap()
        .unwrap();
    assert!(report.reused);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_provisions_its_targets_and_swaps_on_file_change_and_reload() {
    let fx = Fixture::new().await;
    let component = fx.path("component.wasm");
    install(&component, &variant(1));
    let socket = fx.path("control.sock");
    let store = &fx.store;
    let config = fx
        .gateway()
        .path("component", &component)
        .set("check_interval_secs", 1)
        .path("control_socket", &socket)
        .target("azure-iot")
        .target_with("aws-iot", "params = { thingName = 'gw-daemon' }")
        .write(&fx.path("gateway.toml"));
    let daemon = spawn_run(
        &["--config", config.to_str().unwrap()],
        &fx.path("daemon.log"),
        None,
    );
    wait_until("both bundles", || {
        store.join("azure-iot.json").exists() && store.join("aws-iot.json").exists()
    })
    .await;
    assert_eq!(read_bundle(store, "aws-iot")["clientId"], "gw-daemon");
    assert_eq!(mode(&socket), 0o600);
    let (code, out, _) =
        run_cli(&["reload", "--socket", socket.to_str().unwrap(), "--status"]).await;
    assert_eq!(code, 0);
    let first = out.split_whitespace().nth(1).unwrap().to_string();
    // Replace the file: the watcher swaps it in.
    install(&component, &variant(2));
    let socket_text = socket.to_str().unwrap().to_string();
    let mut swapped = None;
    for _ in 0..100 {
        let (_, out, _) = run_cli(&["reload", "--socket", &socket_text, "--status"]).await;
        let digest = out
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if digest != first {
            swapped = Some(digest);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let swapped = swapped.expect("the file change was not picked up");
    let (code, out, _) = run_cli(&["reload", "--socket", &socket_text]).await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("ok unchanged {swapped}"));
    // A broken file: refused, the daemon keeps serving the last good one.
    install(&component, b"broken");
    let (code, out, _) = run_cli(&["reload", "--socket", &socket_text]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("error "), "{out}");
    let (_, out, _) = run_cli(&["reload", "--socket", &socket_text, "--status"]).await;
    assert!(out.contains(&swapped), "{out}");
    // SIGTERM: a clean stop that removes the socket.
    stop_within(daemon, Duration::from_secs(10)).await;
    assert!(!socket.exists());
    fx.stop().await;
}

#[tokio::test]
async fn certificates_near_expiry_are_renewed_and_aws_iot_only_when_allowed() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let config = |aws_opt_in: bool| {
        fx.gateway()
            .table(&format!(
                "[renewal]\ncertificate_margin_days = 400\naws_iot_reprovision = {aws_opt_in}"
            ))
            .target("azure-iot")
            .target("aws-iot")
            .parse()
    };
    // The mock's certificates live 365 days: with a 400-day margin they are always due.
    let daemon = Daemon::start(config(false)).await.unwrap();
    assert_eq!(daemon.check_all().await, 2, "first pass provisions both");
    assert_eq!(
        daemon.check_all().await,
        1,
        "azure-iot renewed, aws-iot left alone"
    );
    // One daemon per store: the first one goes before the second starts.
    drop(daemon);
    let daemon = Daemon::start(config(true)).await.unwrap();
    assert_eq!(
        daemon.check_all().await,
        2,
        "with the opt-in aws-iot is renewed too"
    );
    drop(daemon);
    let registers = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/register"))
        .count();
    let bootstraps = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/iot/bootstrap"))
        .count();
    assert_eq!((registers, bootstraps), (3, 2));
    fx.stop().await;
}

/// Item 7: every numeric key has a range checked at start, with the key's name; no value
/// wraps or panics. Each bad value through `GatewayConfig::parse` and through the binary.
#[tokio::test]
async fn out_of_range_values_are_refused_with_the_key_name_and_no_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let base = format!(
        "store = '{}'\nstate_dir = '{}'\n",
        tmp.path().join("store").display(),
        tmp.path().join("state").display()
    );
    let cases: &[(&str, &str)] = &[
        // (configuration lines, key the error must name)
        ("[limits]\nmemory_mib = 17592186044416", "limits.memory_mib"),
        ("[limits]\nmemory_mib = 4097", "limits.memory_mib"),
        ("[limits]\nmemory_mib = 7", "limits.memory_mib"),
        ("[limits]\ncpu_ms = 0", "limits.cpu_ms"),
        ("[limits]\ncpu_ms = 9223372036854775807", "limits.cpu_ms"),
        ("[limits]\ndeadline_secs = 0", "limits.deadline_secs"),
        (
            "[limits]\ndeadline_secs = 4294967295",
            "limits.deadline_secs",
        ),
        ("[limits]\ndeadline_secs = -1", "deadline_secs"),
        (
            "check_interval_secs = 18446744073709551615",
            "check_interval_secs",
        ),
        (
            "check_interval_secs = 9223372036854775807",
            "check_interval_secs",
        ),
        ("check_interval_secs = 0", "check_interval_secs"),
        ("check_interval_secs = 1.5", "check_interval_secs"),
        (
            "[renewal]\ncertificate_margin_days = 9223372036854775807",
            "renewal.certificate_margin_days",
        ),
        ("[backoff]\nbase_secs = 0", "backoff.base_secs"),
        ("[backoff]\nmax_secs = 604801", "backoff.max_secs"),
        (
            "[backoff]\nbase_secs = 100\nmax_secs = 10",
            "backoff.max_secs",
        ),
        ("store = 'relative/store'", "store"),
        ("state_dir = 'state'", "state_dir"),
        ("control_socket = 'control.sock'", "control_socket"),
    ];
    for (i, (lines, key)) in cases.iter().enumerate() {
        // Later keys win in our checks, so the case goes first, before the defaults.
        let (top, table) = match lines.split_once('[') {
            Some((top, rest)) => (top.to_string(), format!("[{rest}")),
            None => (lines.to_string(), String::new()),
        };
        let base_lines = if top.contains("store =") || top.contains("state_dir =") {
            String::new()
        } else {
            base.clone()
        };
        let text = format!("{top}\n{base_lines}[[target]]\nname = 'arc'\n{table}\n");
        let parsed = std::panic::catch_unwind(|| GatewayConfig::parse(&text));
        let err = match parsed {
            Ok(Ok(_)) => panic!("case {i} ({lines}) was accepted"),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => panic!("case {i} ({lines}) panicked"),
        };
        assert!(err.contains(key), "case {i}: `{key}` not named in: {err}");
        // The binary: exit 3 (invalid configuration), the key named, no panic.
        let file = tmp.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, &text).unwrap();
        let (code, _, stderr) = run_cli(&["run", "--config", file.to_str().unwrap()]).await;
        assert_eq!(code, 3, "case {i} ({lines}): {stderr}");
        assert!(stderr.contains(key), "case {i}: {stderr}");
        assert!(!stderr.contains("panicked"), "case {i}: {stderr}");
    }
    assert!(
        !tmp.path().join("state").exists(),
        "a refused configuration created its state directory"
    );
}

/// Item 7: numeric command-line options have ranges too; `--poll-interval-ms 0` with
/// `--backoff-base-ms 0` no longer hammers Krypton.
#[tokio::test]
async fn out_of_range_options_are_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let endpoint = format!("https://127.0.0.1:{}", closed_port());
    let common = [
        "provision",
        "azure-iot",
        "--endpoint",
        &endpoint,
        "--store",
        store.to_str().unwrap(),
    ];
    for (extra, named) in [
        (&["--poll-interval-ms", "0"][..], "--poll-interval-ms"),
        (&["--backoff-base-ms", "0"][..], "--backoff-base-ms"),
        (&["--backoff-max-ms", "0"][..], "--backoff-max-ms"),
        (&["--deadline-secs", "4294967295"][..], "--deadline-secs"),
        (
            &["--connect-timeout-secs", "100000"][..],
            "--connect-timeout-secs",
        ),
        (&["--read-timeout-secs", "0"][..], "--read-timeout-secs"),
        (&["--max-attempts", "1000000"][..], "--max-attempts"),
        (&["--lock-wait-secs", "3601"][..], "--lock-wait-secs"),
        (
            &["--backoff-base-ms", "1000", "--backoff-max-ms", "100"][..],
            "--backoff-max-ms",
        ),
    ] {
        let args: Vec<&str> = common
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect();
        let (code, _, stderr) = run_cli(&args).await;
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(stderr.contains(named), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!store.exists(), "a refused command line created the store");
    let (code, _, stderr) = run_cli(&["doctor", "--timeout-ms", "0", "--no-connect"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--timeout-ms"), "{stderr}");
}

/// Item 7: `allowed_outbound_hosts` is applied: the endpoint and the listed hosts are allowed,
/// nothing else. Item 7: `state_dir` is created 0700, and a shared one is refused.
#[tokio::test]
async fn extra_outbound_hosts_are_allowed_and_the_state_dir_is_private() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let tmp = &fx.tmp;
    let config = fx
        .gateway()
        .set(
            "allowed_outbound_hosts",
            "['https://extra.example:8443', 'https://second.example']",
        )
        .target("arc");
    let daemon = Daemon::start(config.parse()).await.unwrap();
    let (host, port) = krypton_host::capability::http::host_port(&mock.endpoint()).unwrap();
    let policy = daemon.outbound_policy();
    assert!(policy.allows("https", &host, port), "the endpoint");
    assert!(
        !policy.allows("http", &host, port),
        "the endpoint over plain HTTP"
    );
    assert!(policy.allows("https", "extra.example", 8443));
    assert!(policy.allows("https", "second.example", 443));
    assert!(
        !policy.allows("http", "second.example", 443),
        "another scheme"
    );
    assert!(
        !policy.allows("https", "extra.example", 443),
        "another port"
    );
    assert!(!policy.allows("https", "other.example", 443));
    assert!(!policy.allows("https", "second.example", 8443));
    assert_eq!(daemon.state_dir(), tmp.path().join("state"));
    assert_eq!(mode(&tmp.path().join("state")), 0o700);
    // Item 2: the daemon's compile cache is in its own state directory, whatever the
    // environment says, and holds the entry of the component it compiled.
    let cache = tmp.path().join("state/cache");
    assert_eq!(mode(&cache), 0o700);
    let entries: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(mode(&cache.join(&entries[0])), 0o600);
    drop(daemon);

    // A state directory that others can reach is refused, named, and left as it is.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        tmp.path().join("state"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let err = Daemon::start(config.parse()).await.err().unwrap();
    let err = format!("{err:#}");
    assert!(
        err.contains("state_dir") && err.contains("mode 755"),
        "{err}"
    );
    assert_eq!(mode(&tmp.path().join("state")), 0o755);
    fx.stop().await;
}

/// Item 4: a slow pass and the next tick never both call Krypton: two passes started at once
/// run one after the other, and the second finds the first one's bundle (one mint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_passes_mint_once() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    mock.inject_times(
        "/v1/provisioning/aws/iot/bootstrap",
        krypton_mock::Fault::DelayHeaders(Duration::from_millis(1500)),
        1,
    );
    let daemon = Daemon::start(fx.gateway().target("aws-iot").parse())
        .await
        .unwrap();
    let (a, b) = tokio::join!(daemon.check_all(), daemon.check_all());
    assert_eq!(a + b, 1, "both passes provisioned");
    let mints = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/aws/iot/bootstrap"))
        .count();
    assert_eq!(mints, 1);
    fx.stop().await;
}

/// Item 4: the CLI and the daemon provisioning one store at the same moment mint one
/// certificate between them: the second writer waits for the store lock, then reuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_daemon_on_one_store_mint_once() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    // Slow answers, so that without a lock both writers are in flight together.
    mock.inject(
        "/v1/provisioning/aws/iot/bootstrap",
        krypton_mock::Fault::DelayHeaders(Duration::from_millis(1500)),
    );
    let dir = fx.dir();
    let store = &fx.store;
    let config = fx
        .gateway()
        .set("check_interval_secs", 1)
        .target("aws-iot")
        .write(&dir.join("gateway.toml"));
    let daemon = spawn_daemon(&config, &dir.join("daemon.log"));
    let (code, out, stderr) = fx.provision("aws-iot").json().run().await.parts();
    assert_eq!(code, 0, "{out}{stderr}");
    wait_until("the daemon's pass", || store.join("aws-iot.json").exists()).await;
    // Let the daemon run a few more passes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop(daemon).await;
    let mints = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/aws/iot/bootstrap"))
        .count();
    assert_eq!(
        mints,
        1,
        "{}",
        std::fs::read_to_string(dir.join("daemon.log")).unwrap()
    );
    fx.stop().await;
}

/// Item 4: a CLI run that cannot get the lock in time fails with exit 9 and names the pid
/// that holds it.
#[tokio::test]
async fn a_busy_store_names_its_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path().join("store")).unwrap();
    let _held = store.lock(Duration::ZERO).unwrap();
    let endpoint = format!("https://127.0.0.1:{}", closed_port());
    let (code, _, stderr) = run_cli(&[
        "provision",
        "azure-iot",
        "--endpoint",
        &endpoint,
        "--store",
        store.dir().to_str().unwrap(),
        "--lock-wait-secs",
        "1",
    ])
    .await;
    assert_eq!(code, 9, "{stderr}");
    assert!(
        stderr.contains(&format!("in use by process {}", std::process::id())),
        "{stderr}"
    );
}

/// Items 4, 8 and 9: one daemon per store and per socket (the second is refused with the
/// first's pid, and the first's socket keeps answering); the socket is 0600 from the moment it
/// appears; core dumps are off; long request lines are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_is_refused_and_the_first_keeps_its_socket() {
    let fx = Fixture::new().await;
    let dir = fx.dir();
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    let socket = run.join("control.sock");
    let other_socket = run.join("other.sock");
    let store = fx.store.clone();
    let write_config = |name: &str, store: &Path, socket: &Path| {
        fx.gateway()
            .path("store", store)
            .set("check_interval_secs", 3600)
            .path("control_socket", socket)
            .target("aws-cognito")
            .write(&dir.join(name))
    };
    let first_config = write_config("first.toml", &store, &socket);
    // A umask that would leave a freshly bound socket open to everyone.
    let log = std::fs::File::create(dir.join("first.log")).unwrap();
    // The umask is set by a shell that then execs the binary (`sh -c 'umask 0; exec "$0" "$@"'
    // BIN ARGS...`): the same child process (same pid), with no unsafe `pre_exec` hook.
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "umask 0 && exec \"$0\" \"$@\"", BIN])
        .args(["run", "--config", first_config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let first = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let first_pid = first.id().unwrap();
    // The first sight of the socket: already 0600 (it was never bound at this path).
    let mut seen = None;
    for _ in 0..200_000 {
        if let Ok(meta) = std::fs::symlink_metadata(&socket) {
            use std::os::unix::fs::PermissionsExt;
            seen = Some(meta.permissions().mode() & 0o777);
            break;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    assert_eq!(seen, Some(0o600), "the socket appeared with another mode");
    let socket_text = socket.to_str().unwrap().to_string();
    let (code, status, _) = run_cli(&["reload", "--socket", &socket_text, "--status"]).await;
    assert_eq!(code, 0, "{status}");
    assert!(
        status.trim().ends_with("dumpable=0"),
        "core dumps are on: {status}"
    );
    // Nothing but the socket and its lock is left in the directory.
    let mut names: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["control.sock", "control.sock.lock"]);

    // Same store, another socket.
    let second = write_config("second.toml", &store, &other_socket);
    let (code, _, stderr) = run_cli(&["run", "--config", second.to_str().unwrap()]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains(&format!("process {first_pid}")), "{stderr}");
    assert!(stderr.contains("key `store`"), "{stderr}");
    assert!(!other_socket.exists());
    // Same socket, another store.
    let third = write_config("third.toml", &dir.join("store2"), &socket);
    let (code, _, stderr) = run_cli(&["run", "--config", third.to_str().unwrap()]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains(&format!("process {first_pid}")), "{stderr}");
    assert!(stderr.contains("key `control_socket`"), "{stderr}");
    // The first one still answers on its socket.
    let (code, again, _) = run_cli(&["reload", "--socket", &socket_text, "--status"]).await;
    assert_eq!((code, &again), (0, &status));

    // A request line longer than the bound is refused, not buffered.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let _ = stream.write_all(&[b's'; 1000]).await;
    // The daemon closes with bytes unread, which may end the stream with ECONNRESET after
    // the answer: keep what arrived.
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("error request longer than 256 bytes"),
        "{answer}"
    );

    // Item 8: a peer with another uid is refused even when the socket was opened up by
    // mistake (needs root to run a child as `nobody`).
    if rustix::process::geteuid().is_root() {
        use std::os::unix::fs::PermissionsExt;
        for path in [dir, run.as_path()] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let out = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new(BIN)
                .args(["reload", "--socket", &socket_text, "--status"])
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap()
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("error permission denied"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(out.status.code(), Some(0));
        let log = std::fs::read_to_string(dir.join("first.log")).unwrap();
        assert!(log.contains("refused a peer with another uid"), "{log}");
    }
    stop(first).await;
    assert!(!socket.exists());
    fx.stop().await;
}

/// Item 5: a failing target is retried at growing intervals, not at every tick, and its
/// failure is logged once, not once per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_backs_off_and_logs_once() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    mock.inject(
        "/v1/provisioning/aws/cognito",
        http_error(403, "KRY0403", "denied"),
    );
    let dir = fx.dir();
    let config = fx
        .gateway()
        .set("check_interval_secs", 1)
        .table("[backoff]\nbase_secs = 1\nmax_secs = 4")
        .target("aws-cognito")
        .write(&dir.join("gateway.toml"));
    let daemon = spawn_daemon(&config, &dir.join("daemon.log"));
    // Note when each attempt arrives, for 10 s (10 ticks).
    let mut arrivals = Vec::new();
    let started = std::time::Instant::now();
    let mut seen = 0;
    while started.elapsed() < Duration::from_secs(12) {
        let now = mock.requests().len();
        if now > seen {
            seen = now;
            arrivals.push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(daemon).await;
    let attempts = mock.requests().len();
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    // Every tick would be about 12 attempts; with waits of 0.5-1, 1-2, 2-4, 2-4 s (each
    // rounded up to the next 1 s tick): at most 6.
    assert!(
        (2..=6).contains(&attempts),
        "{attempts} attempts: {arrivals:?}\n{log}"
    );
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.last()
            .is_some_and(|g| *g >= Duration::from_millis(1900)),
        "the waits did not grow: {gaps:?}"
    );
    let failures = log.matches("provisioning failed").count();
    assert_eq!(failures, 1, "{log}");
    fx.stop().await;
}

/// Item 7: a `trusted_public_key` of multi-byte characters (64 bytes, as long as a hex key) is
/// an error naming the key, not a panic. The parser is in `lifecycle.rs`.
#[tokio::test]
async fn a_multi_byte_trusted_key_is_refused_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let key = format!("a{}a", "é".repeat(31));
    assert_eq!(key.len(), 64);
    let text = format!(
        "store = '{}'\nstate_dir = '{}'\ntrusted_public_key = '{key}'\n[[target]]\nname = 'arc'\n",
        tmp.path().join("store").display(),
        tmp.path().join("state").display()
    );
    let parsed = std::panic::catch_unwind(|| GatewayConfig::parse(&text));
    let err = format!("{:#}", parsed.expect("panicked").unwrap_err());
    assert!(err.contains("trusted_public_key"), "{err}");
    let file = tmp.path().join("gateway.toml");
    std::fs::write(&file, &text).unwrap();
    let (code, _, stderr) = run_cli(&["run", "--config", file.to_str().unwrap()]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Issue 12 item 5: `gateway.example.toml` itself starts as shipped (built-in component), its
/// paths and endpoint redirected by the documented `run` flags; it provisions its targets,
/// answers `reload --status`, and stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_configuration_starts_as_shipped() {
    let fx = Fixture::new().await;
    let dir = fx.dir();
    let example = format!("{}/../../gateway.example.toml", env!("CARGO_MANIFEST_DIR"));
    // The socket's directory does not exist yet: the daemon creates it 0700.
    let (store, socket) = (&fx.store, dir.join("run").join("control.sock"));
    let daemon = spawn_run(
        &[
            "--config",
            &example,
            "--store",
            store.to_str().unwrap(),
            "--state-dir",
            dir.join("state").to_str().unwrap(),
            "--control-socket",
            socket.to_str().unwrap(),
            "--endpoint",
            &fx.endpoint(),
            "--ca-file",
            fx.ca.to_str().unwrap(),
        ],
        &dir.join("daemon.log"),
        Some("info"),
    );
    let read_log = || std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    wait_until("the example's two targets", || {
        store.join("azure-iot.json").exists() && store.join("aws-cognito.json").exists()
    })
    .await;
    let (code, out, err) =
        run_cli(&["reload", "--socket", socket.to_str().unwrap(), "--status"]).await;
    assert_eq!(code, 0, "{out}{err}\n{}", read_log());
    assert!(out.starts_with("ok "), "{out}");
    assert_eq!(mode(&dir.join("run")), 0o700);
    stop(daemon).await;
    assert!(!socket.exists(), "the socket outlived the daemon");
    let log = read_log();
    assert!(log.contains("component serving"), "{log}");
    assert!(log.contains("daemon stopped"), "{log}");
    fx.stop().await;
}

/// Issue 12 item 5: an error from a configured path names its key.
#[tokio::test]
async fn errors_from_configured_paths_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("ca.pem"), b"").unwrap();
    for (extra, key) in [
        (
            format!("component = '{}'", dir.join("missing.wasm").display()),
            "key `component`",
        ),
        (
            format!("ca_file = '{}'", dir.join("missing.pem").display()),
            "key `ca_file`",
        ),
    ] {
        let text = format!(
            "{extra}\nstore = '{}'\nstate_dir = '{}'\n[[target]]\nname = 'arc'\n",
            dir.join("store").display(),
            dir.join("state").display()
        );
        std::fs::write(dir.join("gateway.toml"), text).unwrap();
        let (code, _, err) = run_cli(&[
            "run",
            "--config",
            dir.join("gateway.toml").to_str().unwrap(),
        ])
        .await;
        assert_eq!(code, 3, "{err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(err.contains("missing"), "{err}");
    }
}

/// Issue 12 item 6: a pass that finds every bundle still valid logs nothing at info (the
/// component's "reusing" line is detail, shown with -v), and a SIGHUP with an unchanged
/// component logs that outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_checks_stay_quiet_and_sighup_logs_its_outcome() {
    let fx = Fixture::new().await;
    let dir = fx.dir();
    let component = dir.join("component.wasm");
    install(&component, &variant(1));
    let config = fx
        .gateway()
        .path("component", &component)
        .set("check_interval_secs", 1)
        .path("control_socket", &dir.join("control.sock"))
        .target("azure-iot")
        .write(&dir.join("gateway.toml"));
    let log_path = dir.join("daemon.log");
    // Info for everything, debug for the daemon's own "still valid" line only (to count
    // passes); the component's lines stay at their default for the daemon.
    let daemon = spawn_run(
        &["--config", config.to_str().unwrap()],
        &log_path,
        Some("info,krypton_host_cli::daemon=debug"),
    );
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until("two passes that reuse the bundle", || {
        read_log().matches("still valid; reused").count() >= 2
    })
    .await;
    signal(&daemon, rustix::process::Signal::HUP);
    wait_until("the SIGHUP outcome", || {
        read_log().contains("reload: component unchanged; still serving")
    })
    .await;
    // A reload asked over the control socket is logged with its outcome too.
    let answer = control(&dir.join("control.sock"), "reload").await;
    assert!(answer.starts_with("ok unchanged "), "{answer}");
    wait_until("the control socket's reload outcome", || {
        read_log().contains("cause=control socket")
    })
    .await;
    stop(daemon).await;
    let log = read_log();
    assert_eq!(log.matches(" provisioned").count(), 1, "{log}");
    assert_eq!(
        log.matches("nothing stored; provisioning").count(),
        1,
        "{log}"
    );
    for noise in ["a valid bundle is stored", "--force", "not calling Krypton"] {
        assert!(!log.contains(noise), "`{noise}` logged at info:\n{log}");
    }
    assert!(log.contains("cause=SIGHUP"), "{log}");
    fx.stop().await;
}

/// A SIGTERM during a pass lets the call in flight finish (its credentials are stored) but
/// starts no further target (issue 7 review).
#[tokio::test]
async fn a_stop_during_a_pass_starts_no_further_target() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    mock.inject(
        "/v1/provisioning/aws/cognito/credentials",
        krypton_mock::Fault::DelayHeaders(Duration::from_millis(2000)),
    );
    let dir = fx.dir();
    let store = &fx.store;
    let config = fx
        .gateway()
        .set("check_interval_secs", 3600)
        .target("aws-cognito")
        .target("aws-cognito-openid")
        .write(&dir.join("gateway.toml"));
    let daemon = spawn_daemon(&config, &dir.join("daemon.log"));
    wait_until("the first call", || {
        mock.requests()
            .iter()
            .any(|r| r.path.ends_with("/aws/cognito/credentials"))
    })
    .await;
    stop(daemon).await;
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert!(
        store.join("aws-cognito.json").exists(),
        "the call in flight was not let finish:\n{log}"
    );
    assert!(
        !mock
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/open_id_tokens")),
        "a target was started after the stop:\n{log}"
    );
    assert!(
        log.contains("stopping: the rest of this pass is left for the next start"),
        "{log}"
    );
    fx.stop().await;
}
