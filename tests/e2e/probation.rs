//! Probation of a new component version (issue 7 review): cheap `status` calls do not end it,
//! so a version that only fails in `provision` is still rolled back.

use super::support::*;
use krypton_host::component::lifecycle::{Lifecycle, PROBATION_CALLS, ReloadOutcome};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn status_calls_do_not_end_probation_and_a_failing_provision_rolls_back() {
    let fx = Fixture::new().await;
    let file = fx.path("component.wasm");
    std::fs::write(&file, DEFAULT_COMPONENT).unwrap();
    let runtime = Arc::new(
        Runtime::with_limits(SandboxLimits {
            cpu: Duration::from_millis(300),
            wall: Duration::from_secs(20),
            ..SandboxLimits::default()
        })
        .unwrap(),
    );
    let lifecycle = Lifecycle::start(runtime, Some(file.clone()), None)
        .await
        .unwrap();
    let serving = lifecycle.current().digest.clone();
    let store = fx.secret_store();

    // The hostile component answers `status` well and spins in `provision azure-iot`.
    let tmp_file = fx.path("next.wasm");
    std::fs::write(&tmp_file, hostile_wasm()).unwrap();
    std::fs::rename(&tmp_file, &file).unwrap();
    assert!(matches!(
        lifecycle.reload().await.unwrap(),
        ReloadOutcome::Swapped(_)
    ));
    assert_eq!(lifecycle.current().version, "hostile");
    // More successful status calls than the probation length, as a daemon's passes make.
    for _ in 0..(PROBATION_CALLS * 3) {
        lifecycle
            .status(store.clone(), Target::AzureIot)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(lifecycle.current().version, "hostile", "still on probation");
    let mut azure = fx.request(Target::AzureIot);
    azure.force = true;
    let trapped = lifecycle
        .provision(policy_for(&fx.mock), store.clone(), &azure)
        .await;
    assert!(
        format!("{:#}", trapped.unwrap_err()).contains("CPU limit"),
        "the hostile provision did not trap"
    );
    assert_eq!(lifecycle.current().digest, serving, "not rolled back");
    fx.stop().await;
}

/// Issue 18, item 5: a probation roll back of a registry component is recorded before anything
/// else runs. The daemon is killed (SIGKILL) as soon as the lifecycle logs the roll back, long
/// before its next poll: the next start serves the previous version, and remembers the failed
/// one as refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_roll_back_is_recorded_before_a_restart_can_serve_the_failed_version() {
    use super::registry_support::*;
    use krypton_host::signing;
    use krypton_host_cli::registry::{Registry, Settings, Source};
    if !registry_tools_present(false) {
        return;
    }
    let reg = TestRegistry::start();
    let fx = Fixture::new().await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let tag = Source::parse(&reg.reference("krypton/component:stable")).unwrap();
    let client = Registry::new(
        &tag,
        &Settings {
            insecure: true,
            ..Settings::default()
        },
    )
    .unwrap();
    let publish = async |bytes: &[u8], version: &str| {
        let sig = signing::sign(&key, bytes, version).unwrap();
        client
            .publish(&tag, bytes, Some(version), Some(sig.as_bytes()))
            .await
            .unwrap()
            .digest
    };
    let v1 = publish(DEFAULT_COMPONENT, env!("CARGO_PKG_VERSION")).await;
    let dir = fx.path("gw");
    std::fs::create_dir_all(&dir).unwrap();
    // Polls every 4 s: the kill lands long before the next one.
    let config = fx
        .gateway()
        .string(
            "component",
            &format!("oci://{}/krypton/component:stable", reg.addr),
        )
        .string("trusted_public_key", &public_key_b64(&key))
        .path("store", &dir.join("store"))
        .path("state_dir", &dir.join("state"))
        .path("control_socket", &dir.join("control.sock"))
        .table("[registry]\npoll_interval_s = 4\ninsecure = true")
        .set("check_interval_secs", 1)
        .table("[limits]\ncpu_ms = 2000")
        .table("[backoff]\nbase_secs = 1\nmax_secs = 2")
        .target("arc")
        .write(&dir.join("gateway.toml"));
    let socket = dir.join("control.sock");
    let log = dir.join("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    wait_until("v1", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("daemon running")
    })
    .await;
    assert_eq!(daemon_status(&socket).await["manifest"], v1);
    let failing = super::fleet::trapping(b"0.9.0-h");
    let v3 = publish(&failing, "0.9.0-h").await;
    for _ in 0..1200 {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("new component failed its first calls; rolled back")
        {
            break;
        }
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    daemon.start_kill().unwrap(); // SIGKILL, right after the roll back
    daemon.wait().await.unwrap();
    let first = std::fs::read_to_string(&log).unwrap();
    assert!(first.contains("rolled back"), "no roll back:\n{first}");

    let log2 = dir.join("daemon2.log");
    let daemon = spawn_daemon(&config, &log2);
    wait_until("the restart", || {
        std::fs::read_to_string(&log2)
            .unwrap_or_default()
            .contains("daemon running")
    })
    .await;
    let s = daemon_status(&socket).await;
    assert_eq!(
        s["serving"],
        signing::digest_hex(DEFAULT_COMPONENT),
        "the restart serves the version that failed ({v3}):\n{first}\n---\n{}",
        std::fs::read_to_string(&log2).unwrap()
    );
    assert_eq!(s["manifest"], v1);
    assert_eq!(
        s["refused"],
        "1",
        "the failed digest is remembered:\n{first}\n---\n{}",
        std::fs::read_to_string(&log2).unwrap()
    );
    stop(daemon).await;
    fx.stop().await;
}
