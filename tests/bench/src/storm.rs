//! Figure 4: a provisioning storm. N devices provision `aws-iot` (one request each), each in
//! its own instance with its own store and its own `thingName`, at most C at once, against a
//! mock that serves R requests/s (a token bucket holding at most B) and answers the rest 429
//! with `Retry-After` in whole seconds. The component retries by its own policy (it honours
//! `Retry-After`; `--max-attempts` 20). The ideal is N / R seconds.
//!
//! The storm runs in a child process (`krypton-bench storm-child`) whose resident memory is
//! sampled at every tenth of the devices done, and whose peak (`VmHWM`) is reported.

use crate::stats::round3;
use crate::{Bench, MockChild, rss_kib, status_kib};
use krypton_host::capability::http::Origin;
use krypton_host::component::DEFAULT_COMPONENT;
use krypton_host::{OutboundPolicy, ProvisionOptions, SecretStore};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `krypton-bench storm-child`: run the storm against `endpoint` and print its record as one
/// JSON line. Errors: the component does not load.
pub async fn storm_child(
    endpoint: &str,
    ca_file: &Path,
    work: &Path,
    devices: usize,
    concurrency: usize,
    attempts: u32,
) -> anyhow::Result<()> {
    let runtime = Arc::new(crate::runtime(&work.join("cache"))?);
    let pre = runtime.load(DEFAULT_COMPONENT)?;
    let ca_pem = std::fs::read(ca_file)?;
    let policy = OutboundPolicy::new(vec![Origin::parse(endpoint)?], Some(&ca_pem))?;
    let options = ProvisionOptions {
        max_attempts: attempts,
        deadline: Duration::from_secs(600),
        ..crate::options()
    };
    let base = crate::host_request(&runtime, &pre, "aws-iot", endpoint, &options).await?;
    let rss_start = rss_kib();
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..devices {
        let (runtime, pre, policy, slots) =
            (runtime.clone(), pre.clone(), policy.clone(), slots.clone());
        let mut request = base.clone();
        request.request_parameters =
            Some(json!({"thingName": format!("storm-{i:05}")}).to_string());
        let dir = work.join("devices").join(format!("d{i:05}"));
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            let store = SecretStore::open(&dir)?;
            let outcome = runtime.provision(&pre, policy, store, &request).await?;
            let report = outcome
                .map_err(|f| anyhow::anyhow!("{}", krypton_host_cli::output::error_text(&f)))?;
            anyhow::ensure!(!report.reused, "a stored bundle was reused");
            anyhow::Ok(())
        });
    }
    let mut done = 0usize;
    let mut failures = 0u64;
    let mut first_failure = None;
    let mut rss_by_tenth = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        done += 1;
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failures += 1;
                first_failure.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert_with(|| e.to_string());
            }
        }
        if devices >= 10 && done.is_multiple_of(devices / 10) && rss_by_tenth.len() < 10 {
            rss_by_tenth.push(rss_kib());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "devices": devices,
            "seconds": round3(seconds),
            "failures": failures,
            "firstFailure": first_failure,
            "rssStartKiB": rss_start,
            "rssByTenthKiB": rss_by_tenth,
            "rssPeakKiB": status_kib("VmHWM"),
        })
    );
    Ok(())
}

/// Measure figure 4. Errors: the mock or the child could not run or report.
pub fn measure(bench: &Bench) -> anyhow::Result<Value> {
    let sizes = &bench.sizes;
    let mock = MockChild::start(
        &bench.exe,
        &bench.work.path().join("storm-ca.pem"),
        Some((sizes.storm_rate, sizes.storm_burst)),
    )?;
    let work = bench.dir("storm")?;
    let mut record = mock.run_child(
        &bench.exe,
        "storm-child",
        &work,
        &[
            ("--devices", sizes.storm_devices.to_string()),
            ("--concurrency", sizes.storm_concurrency.to_string()),
            ("--attempts", sizes.storm_attempts.to_string()),
        ],
    )?;
    let tally = mock.stop()?;
    // The stores hold one bundle per device: remove them before the next figure.
    let _ = std::fs::remove_dir_all(&work);
    let ideal = sizes.storm_devices as f64 / f64::from(sizes.storm_rate.max(1));
    let seconds = record["seconds"].as_f64().unwrap_or(0.0);
    record["rate"] = json!(sizes.storm_rate);
    record["burst"] = json!(sizes.storm_burst);
    record["concurrency"] = json!(sizes.storm_concurrency);
    record["maxAttempts"] = json!(sizes.storm_attempts);
    record["idealSeconds"] = json!(round3(ideal));
    record["overIdeal"] = json!(round3(seconds / ideal));
    record["requests"] = json!(tally.requests);
    record["throttled"] = json!(tally.throttled);
    let served_rate = (tally.requests - tally.throttled) as f64 / seconds.max(1e-9);
    record["servedPerSecond"] = json!(round3(served_rate));
    println!(
        "storm: {} devices, {} at once, mock at {}/s (burst {}): {:.2} s against the ideal {:.2} s ({:.3}x), {} failures, {} requests of which {} throttled (429); RSS peak {} KiB, by tenth {} KiB",
        sizes.storm_devices,
        sizes.storm_concurrency,
        sizes.storm_rate,
        sizes.storm_burst,
        seconds,
        ideal,
        seconds / ideal,
        record["failures"],
        tally.requests,
        tally.throttled,
        record["rssPeakKiB"],
        record["rssByTenthKiB"],
    );
    if let Some(first) = record["firstFailure"].as_str() {
        println!("  first failure: {first}");
    }
    Ok(record)
}
