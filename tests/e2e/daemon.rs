//! The gateway daemon (issue 4): configuration checks, hot swap under load with zero failed
//! calls, refusal of a broken component, roll back of a hostile one, signatures, and the
//! daemon process itself with its control socket.

use super::support::*;
use krypton_host::daemon::GatewayConfig;
use krypton_host::lifecycle::{Lifecycle, ReloadOutcome, signature_path};
use krypton_host::runtime::{DEFAULT_COMPONENT, Runtime, SandboxLimits, Target};
use krypton_host::store::SecretStore;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The same component with a custom section appended: a different digest, the same behaviour.
fn variant(tag: u8) -> Vec<u8> {
    let mut bytes = DEFAULT_COMPONENT.to_vec();
    let name = b"krypton-test";
    let payload = [tag; 8];
    bytes.push(0); // custom section id
    bytes.push((1 + name.len() + payload.len()) as u8); // size (LEB128, < 128)
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(&payload);
    bytes
}

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

#[test]
fn configuration_errors_name_the_key() {
    for (text, key) in [
        (
            "store = '/s'\n[[target]]\nname = 'azure-iot'\ncolour = 'red'",
            "colour",
        ),
        (
            "[[target]]\nname = 'azure-iot'\n[limits]\ncpu_ms = 'fast'",
            "cpu_ms",
        ),
        ("[[target]]\nname = 'azure'", "target[0].name"),
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
    ] {
        let err = format!("{:#}", GatewayConfig::parse(text).unwrap_err());
        assert!(err.contains(key), "{key}: {err}");
    }
    let example = std::fs::read_to_string(format!(
        "{}/../gateway.example.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let config = GatewayConfig::parse(&example).unwrap();
    assert_eq!(config.targets.len(), 2);
    assert_eq!(config.limits.cpu_ms, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_swaps_under_load_then_broken_and_hostile_components() {
    let mock = mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path().join("store")).unwrap();
    let file = tmp.path().join("component.wasm");
    install(&file, &variant(0));
    let runtime = Arc::new(Runtime::with_limits(limits()).unwrap());
    let lifecycle = Arc::new(
        Lifecycle::start(runtime, Some(file.clone()), None)
            .await
            .unwrap(),
    );
    let policy = krypton_host::http::OutboundPolicy::new(
        vec![krypton_host::http::Origin::parse(&mock.endpoint()).unwrap()],
        Some(mock.ca_pem().as_bytes()),
    )
    .unwrap();
    // Provisioned once; later calls are served from the store by whichever version is current.
    lifecycle
        .provision(
            policy.clone(),
            store.clone(),
            &request(Target::AwsIot, mock.endpoint()),
        )
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
        let req = request(Target::AwsIot, mock.endpoint());
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
    install(
        &file,
        &std::fs::read(krypton_test_components::HOSTILE_WASM).unwrap(),
    );
    assert!(matches!(
        lifecycle.reload().await.unwrap(),
        ReloadOutcome::Swapped(_)
    ));
    assert_eq!(lifecycle.current().version, "hostile");
    let mut azure = request(Target::AzureIot, mock.endpoint());
    azure.force = true;
    let trapped = lifecycle
        .provision(policy.clone(), store.clone(), &azure)
        .await;
    assert!(format!("{:#}", trapped.unwrap_err()).contains("CPU limit"));
    assert_eq!(lifecycle.current().digest, serving, "not rolled back");
    let report = lifecycle
        .provision(policy, store, &request(Target::AwsIot, mock.endpoint()))
        .await
        .unwrap()
        .unwrap();
    assert!(report.reused);
    mock.stop().await;
}

#[tokio::test]
async fn with_a_trusted_key_only_signed_components_serve() {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    use sha2::Digest as _;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let sign = |bytes: &[u8]| {
        base64::engine::general_purpose::STANDARD
            .encode(signing.sign(&sha2::Sha256::digest(bytes)).to_bytes())
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("component.wasm");
    install(&file, &variant(1));
    let runtime = Arc::new(Runtime::with_limits(limits()).unwrap());
    let key = Some(signing.verifying_key());
    // Unsigned: refused at start.
    let err = Lifecycle::start(runtime.clone(), Some(file.clone()), key)
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("no signature"), "{err:#}");
    std::fs::write(signature_path(&file), sign(&variant(1))).unwrap();
    let lifecycle = Lifecycle::start(runtime, Some(file.clone()), key)
        .await
        .unwrap();
    // A new version whose signature is for other bytes: refused.
    install(&file, &variant(2));
    let err = lifecycle.reload().await.unwrap_err();
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
    // Signed properly: swapped in.
    std::fs::write(signature_path(&file), sign(&variant(2))).unwrap();
    assert!(matches!(
        lifecycle.reload().await.unwrap(),
        ReloadOutcome::Swapped(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_provisions_its_targets_and_swaps_on_file_change_and_reload() {
    let mock = mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let component = dir.join("component.wasm");
    install(&component, &variant(1));
    std::fs::write(dir.join("ca.pem"), mock.ca_pem()).unwrap();
    let socket = dir.join("control.sock");
    let store = dir.join("store");
    let config = format!(
        "component = '{}'\nstore = '{}'\nendpoint = '{}'\nca_file = '{}'\ncheck_interval_secs = 1\ncontrol_socket = '{}'\n\
         [[target]]\nname = 'azure-iot'\n[[target]]\nname = 'aws-iot'\nparams = {{ thingName = 'gw-daemon' }}\n",
        component.display(),
        store.display(),
        mock.endpoint(),
        dir.join("ca.pem").display(),
        socket.display()
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let mut daemon = tokio::process::Command::new(BIN)
        .args([
            "run",
            "--config",
            dir.join("gateway.toml").to_str().unwrap(),
        ])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let wait_for = async |what: &str, ok: &dyn Fn() -> bool| {
        for _ in 0..300 {
            if ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    };
    wait_for("both bundles", &|| {
        store.join("azure-iot.json").exists() && store.join("aws-iot.json").exists()
    })
    .await;
    assert_eq!(read_bundle(&store, "aws-iot")["clientId"], "gw-daemon");
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
    let pid = daemon.id().unwrap() as i32;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(!socket.exists());
    mock.stop().await;
}

#[tokio::test]
async fn certificates_near_expiry_are_renewed_and_aws_iot_only_when_allowed() {
    use krypton_host::daemon::Daemon;
    let mock = mock().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("ca.pem"), mock.ca_pem()).unwrap();
    let config = |aws_opt_in: bool| {
        format!(
            "store = '{}'\nendpoint = '{}'\nca_file = '{}'\n\
             [renewal]\ncertificate_margin_days = 400\naws_iot_reprovision = {aws_opt_in}\n\
             [[target]]\nname = 'azure-iot'\n[[target]]\nname = 'aws-iot'\n",
            tmp.path().join("store").display(),
            mock.endpoint(),
            tmp.path().join("ca.pem").display()
        )
    };
    // The mock's certificates live 365 days: with a 400-day margin they are always due.
    let daemon = Daemon::start(GatewayConfig::parse(&config(false)).unwrap())
        .await
        .unwrap();
    assert_eq!(daemon.check_all().await, 2, "first pass provisions both");
    assert_eq!(
        daemon.check_all().await,
        1,
        "azure-iot renewed, aws-iot left alone"
    );
    let daemon = Daemon::start(GatewayConfig::parse(&config(true)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        daemon.check_all().await,
        2,
        "with the opt-in aws-iot is renewed too"
    );
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
    mock.stop().await;
}
