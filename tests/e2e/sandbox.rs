//! The sandbox against a component that misbehaves on purpose (tests/components/hostile):
//! each misbehaviour is stopped with a clear error, nothing half-written is left, and the same
//! runtime then serves the real component normally (issue 4 "Sandbox").

use super::support::*;
use krypton_host::http::{OutboundPolicy, host_port};
use krypton_host::runtime::{ProvisionError, Runtime, SandboxLimits, Target};
use krypton_host::store::SecretStore;
use std::time::{Duration, Instant};

fn limits() -> SandboxLimits {
    SandboxLimits {
        memory_bytes: 32 * 1024 * 1024,
        // Generous enough that honest work under a loaded CI machine stays inside it.
        cpu: Duration::from_millis(2_000),
        wall: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn hostile_components_are_stopped_and_the_runtime_keeps_serving() {
    let rt = Runtime::with_limits(limits()).unwrap();
    let hostile = rt
        .load(&std::fs::read(krypton_test_components::HOSTILE_WASM).unwrap())
        .unwrap();
    let good = rt.load(krypton_host::runtime::DEFAULT_COMPONENT).unwrap();
    let mock = mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path().join("store")).unwrap();
    let policy = || {
        OutboundPolicy::new(
            vec![host_port(&mock.endpoint()).unwrap()],
            Some(mock.ca_pem().as_bytes()),
        )
        .unwrap()
    };
    let run = |target| {
        let req = request(target, mock.endpoint());
        let rt = &rt;
        let hostile = &hostile;
        let store = store.clone();
        let policy = policy();
        async move {
            let started = Instant::now();
            let outcome = rt.provision(hostile, policy, store, &req).await;
            (outcome, started.elapsed())
        }
    };

    // An infinite loop: stopped by the CPU limit.
    let (outcome, took) = run(Target::AzureIot).await;
    let err = format!("{:#}", outcome.unwrap_err());
    assert!(err.contains("exceeded its CPU limit of 2000 ms"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // A memory bomb: stopped by the memory cap.
    let (outcome, _) = run(Target::AwsIot).await;
    let err = format!("{:#}", outcome.unwrap_err());
    assert!(err.contains("exceeded its memory limit of 32 MiB"), "{err}");

    // A host that is not on the allow-list: refused by the host, reported by the component.
    let (outcome, _) = run(Target::AwsCognito).await;
    let ProvisionError::Transport(m) = outcome.unwrap().unwrap_err() else {
        panic!("expected Transport")
    };
    assert!(m.contains("HttpRequestDenied"), "{m}");

    // A flood of stderr: the call ends; the log budget bounds what reaches the journal.
    let (outcome, _) = run(Target::AwsCognitoOpenid).await;
    assert!(matches!(
        outcome.unwrap(),
        Err(ProvisionError::Unsupported(_))
    ));

    // A trap right after a bundle write: the write is whole, nothing temporary is left.
    let (outcome, _) = run(Target::Arc).await;
    assert!(format!("{:#}", outcome.unwrap_err()).contains("trapped during provision"));
    assert_eq!(
        std::fs::read(store.dir().join("arc.json")).unwrap(),
        br#"{"written":"before the trap"}"#
    );
    let names: Vec<_> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["arc.json"]);

    // Blocked in a host call for an hour: stopped by the wall-clock limit.
    let (outcome, took) = run(Target::Inventory).await;
    let err = format!("{:#}", outcome.unwrap_err());
    assert!(
        err.contains("exceeded the wall-clock limit of 5 s"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");

    // The same runtime still serves the real component, and polling time is not CPU time:
    // an Azure registration that waits 3 x 800 ms in host calls stays under the 2 s limit.
    let mut req = request(Target::AzureIot, mock.endpoint());
    req.poll_interval_ms = 800;
    let report = rt
        .provision(&good, policy(), store.clone(), &req)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ident(&report, "deviceId"), "440101234567890");
    mock.stop().await;
}
