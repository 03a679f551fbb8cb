//! Figure 5: hot swap under load. W loops provision `aws-iot` through a `Lifecycle` (the
//! daemon's) for S seconds without swaps, then S seconds while another loop installs a new
//! version of the component file and swaps it in (`Lifecycle::reload`) as fast as it can.
//! Both versions are in the compile cache before the clock starts. Every failed call and
//! failed swap is counted.

use crate::stats::{Samples, round3};
use crate::{Bench, MockChild, component_variant, install, options};
use krypton_host::capability::http::Origin;
use krypton_host::component::lifecycle::{Lifecycle, ReloadOutcome};
use krypton_host::{OutboundPolicy, SecretStore};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Calls made and failed by the loops of one phase, and their latencies.
struct Load {
    calls: u64,
    failed: u64,
    latencies: Samples,
}

/// Run `workers` provisioning loops until `stop` is set.
async fn load(
    lifecycle: Arc<Lifecycle>,
    policy: OutboundPolicy,
    stores: Vec<SecretStore>,
    request: krypton_host::bindings::ProvisionRequest,
    stop: Arc<AtomicBool>,
) -> Load {
    let failed = Arc::new(AtomicU64::new(0));
    let mut loops = tokio::task::JoinSet::new();
    for store in stores {
        let (lifecycle, policy, request, stop, failed) = (
            lifecycle.clone(),
            policy.clone(),
            request.clone(),
            stop.clone(),
            failed.clone(),
        );
        loops.spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                match lifecycle
                    .provision(policy.clone(), store.clone(), &request)
                    .await
                {
                    Ok(Ok(report)) if !report.reused => {
                        latencies.push(started.elapsed().as_secs_f64() * 1000.0)
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            latencies
        });
    }
    let mut latencies = Samples::default();
    while let Some(Ok(done)) = loops.join_next().await {
        latencies.0.extend(done);
    }
    let failed = failed.load(Ordering::SeqCst);
    Load {
        calls: latencies.len() as u64 + failed,
        failed,
        latencies,
    }
}

/// Measure figure 5. Errors: the mock or the component could not start.
pub fn measure(bench: &Bench, tokio: &tokio::runtime::Runtime) -> anyhow::Result<Value> {
    let sizes = &bench.sizes;
    let mock = MockChild::start(&bench.exe, &bench.work.path().join("swap-ca.pem"), None)?;
    let ca_pem = mock.ca_pem()?;
    let cache = bench.dir("swap-cache")?;
    let runtime = Arc::new(crate::runtime(&cache)?);
    // Both versions compiled into the cache before the clock starts.
    runtime.load(&component_variant(1))?;
    runtime.load(&component_variant(2))?;
    let file = bench.work.path().join("swap-component.wasm");
    install(&file, &component_variant(1))?;
    let period = Duration::from_secs_f64(sizes.swap_secs);
    let record = tokio.block_on(async {
        let lifecycle = Arc::new(Lifecycle::start(runtime.clone(), Some(file.clone()), None).await?);
        let policy = OutboundPolicy::new(vec![Origin::parse(&mock.endpoint)?], Some(&ca_pem))?;
        let pre = lifecycle.current().pre.clone();
        let request =
            crate::host_request(&runtime, &pre, "aws-iot", &mock.endpoint, &options()).await?;
        let stores = (0..sizes.swap_workers)
            .map(|w| SecretStore::open(bench.dir(&format!("swap-store-{w}"))?).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<Vec<_>>>()?;

        let stop = Arc::new(AtomicBool::new(false));
        let quiet = tokio::spawn(load(
            lifecycle.clone(),
            policy.clone(),
            stores.clone(),
            request.clone(),
            stop.clone(),
        ));
        tokio::time::sleep(period).await;
        stop.store(true, Ordering::SeqCst);
        let quiet = quiet.await?;

        let stop = Arc::new(AtomicBool::new(false));
        let busy = tokio::spawn(load(
            lifecycle.clone(),
            policy.clone(),
            stores.clone(),
            request.clone(),
            stop.clone(),
        ));
        let started = Instant::now();
        let (mut swaps, mut failed_swaps, mut unchanged) = (0u64, 0u64, 0u64);
        let mut swap_ms = Samples::default();
        let mut tag = 1u8;
        while started.elapsed() < period {
            tag = 3 - tag;
            install(&file, &component_variant(tag))?;
            let one = Instant::now();
            match lifecycle.reload().await {
                Ok(ReloadOutcome::Swapped(_)) => {
                    swaps += 1;
                    swap_ms.push(one.elapsed().as_secs_f64() * 1000.0);
                }
                Ok(ReloadOutcome::Unchanged) => unchanged += 1,
                Err(_) => failed_swaps += 1,
            }
        }
        let swapping_secs = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        let busy = busy.await?;
        let quiet_rate = quiet.calls as f64 / sizes.swap_secs;
        let busy_rate = busy.calls as f64 / swapping_secs;
        println!(
            "hot swap under load ({} loops): {:.1} swaps/s ({} swaps, {} failed, swap {}); calls {:.1}/s while swapping ({} calls, {} failed) against {:.1}/s without ({} calls, {} failed)",
            sizes.swap_workers,
            swaps as f64 / swapping_secs,
            swaps,
            failed_swaps,
            swap_ms.text(),
            busy_rate,
            busy.calls,
            busy.failed,
            quiet_rate,
            quiet.calls,
            quiet.failed,
        );
        anyhow::Ok(json!({
            "workers": sizes.swap_workers,
            "seconds": round3(swapping_secs),
            "swaps": swaps,
            "swapsPerSecond": round3(swaps as f64 / swapping_secs),
            "failedSwaps": failed_swaps,
            "unchangedSwaps": unchanged,
            "swap": swap_ms.json(),
            "callsWhileSwapping": busy.calls,
            "failedCallsWhileSwapping": busy.failed,
            "callsPerSecondWhileSwapping": round3(busy_rate),
            "callWhileSwapping": busy.latencies.json(),
            "callsWithoutSwaps": quiet.calls,
            "failedCallsWithoutSwaps": quiet.failed,
            "callsPerSecondWithoutSwaps": round3(quiet_rate),
            "callWithoutSwaps": quiet.latencies.json(),
            "callRateRatio": round3(busy_rate / quiet_rate),
        }))
    })?;
    mock.stop()?;
    Ok(record)
}
