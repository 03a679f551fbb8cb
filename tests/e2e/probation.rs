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
