//! Figure 3: sizes and resident memory.
//!
//! * sizes: the built-in component and the `krypton-host` binary (as built: the profile is in
//!   the machine record; the release profile strips it);
//! * resident memory (`VmRSS`, proc(5)) of a child process (`krypton-bench rss-child`) serving
//!   the component as the daemon does (`Lifecycle` over a component file): idle after the
//!   first load, after N `aws-iot` provisioning calls, after M swaps; and its peak (`VmHWM`);
//! * `krypton-host bench-swap --count M`: the CLI binary's own swap latency and memory.

use crate::stats::{Samples, round3};
use crate::{Bench, MockChild, component_variant, install, options, rss_kib, status_kib};
use anyhow::Context as _;
use krypton_host::capability::http::Origin;
use krypton_host::component::lifecycle::Lifecycle;
use krypton_host::{OutboundPolicy, SecretStore};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

/// `krypton-bench rss-child`: the memory record of a daemon-shaped process, as one JSON line.
/// Errors: the component does not load.
pub async fn rss_child(
    endpoint: &str,
    ca_file: &Path,
    work: &Path,
    calls: usize,
    swaps: usize,
) -> anyhow::Result<()> {
    let before = rss_kib();
    let runtime = Arc::new(crate::runtime(&work.join("cache"))?);
    let file = work.join("component.wasm");
    install(&file, &component_variant(0))?;
    let lifecycle = Lifecycle::start(runtime.clone(), Some(file.clone()), None).await?;
    let idle = rss_kib();
    let ca_pem = std::fs::read(ca_file)?;
    let policy = OutboundPolicy::new(vec![Origin::parse(endpoint)?], Some(&ca_pem))?;
    let store_dir = work.join("store");
    let store = SecretStore::open(&store_dir)?;
    let pre = lifecycle.current().pre.clone();
    let request = crate::host_request(&runtime, &pre, "aws-iot", endpoint, &options()).await?;
    let mut failed_calls = 0u64;
    for _ in 0..calls {
        match lifecycle
            .provision(policy.clone(), store.clone(), &request)
            .await
        {
            Ok(Ok(report)) if !report.reused => {}
            _ => failed_calls += 1,
        }
    }
    let after_calls = rss_kib();
    let mut swap_ms = Samples::default();
    let mut failed_swaps = 0u64;
    for i in 1..=swaps {
        install(&file, &component_variant(1 + (i % 2) as u8))?;
        let started = Instant::now();
        match lifecycle.reload().await {
            Ok(_) => swap_ms.push(started.elapsed().as_secs_f64() * 1000.0),
            Err(_) => failed_swaps += 1,
        }
    }
    let after_swaps = rss_kib();
    // The first two swaps compile their version; the rest are compile-cache hits.
    let warm = Samples(swap_ms.0.iter().skip(2).copied().collect());
    println!(
        "{}",
        json!({
            "rssStartKiB": before,
            "rssIdleKiB": idle,
            "rssAfterCallsKiB": after_calls,
            "rssAfterSwapsKiB": after_swaps,
            "rssPeakKiB": status_kib("VmHWM"),
            "calls": calls,
            "failedCalls": failed_calls,
            "swaps": swaps,
            "failedSwaps": failed_swaps,
            "swapFromCache": warm.json(),
        })
    );
    Ok(())
}

/// Measure figure 3. Errors: a child could not run or report.
pub fn measure(bench: &Bench) -> anyhow::Result<Value> {
    let sizes = &bench.sizes;
    let mock = MockChild::start(&bench.exe, &bench.work.path().join("mem-ca.pem"), None)?;
    let work = bench.dir("rss-child")?;
    let mut record = mock.run_child(
        &bench.exe,
        "rss-child",
        &work,
        &[
            ("--calls", sizes.calls.to_string()),
            ("--swaps", sizes.swaps.to_string()),
        ],
    )?;
    mock.stop()?;

    let component = krypton_host::DEFAULT_COMPONENT.len();
    let host_bytes = bench
        .host_bin
        .as_ref()
        .and_then(|b| std::fs::metadata(b).ok())
        .map(|m| m.len());
    // The CLI binary's own hot-swap bench, with its allocator settings.
    let bench_swap = match &bench.host_bin {
        Some(bin) => {
            let out = Command::new(bin)
                .args(["bench-swap", "--count", &sizes.swaps.max(3).to_string()])
                .env("KRYPTON_CACHE_DIR", bench.dir("bench-swap-cache")?)
                .output()
                .context("running krypton-host bench-swap")?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            json!({"ok": out.status.success(), "output": text.lines().collect::<Vec<_>>()})
        }
        None => Value::Null,
    };
    let kib = |key: &str| record[key].as_u64().unwrap_or(0);
    println!("sizes and memory:");
    println!("  component               {component} bytes");
    match (&bench.host_bin, host_bytes) {
        (Some(bin), Some(bytes)) => println!(
            "  krypton-host binary     {bytes} bytes ({})",
            bin.display()
        ),
        _ => println!("  krypton-host binary     not measured (no binary)"),
    }
    println!(
        "  RSS idle {} KiB; after {} calls {} KiB ({} failed); after {} swaps {} KiB ({} failed); peak {} KiB",
        kib("rssIdleKiB"),
        sizes.calls,
        kib("rssAfterCallsKiB"),
        kib("failedCalls"),
        sizes.swaps,
        kib("rssAfterSwapsKiB"),
        kib("failedSwaps"),
        kib("rssPeakKiB"),
    );
    if let Some(lines) = bench_swap["output"].as_array() {
        for line in lines {
            println!("  bench-swap: {}", line.as_str().unwrap_or_default());
        }
    }
    let calls_growth = kib("rssAfterCallsKiB") as i64 - kib("rssIdleKiB") as i64;
    let swaps_growth = kib("rssAfterSwapsKiB") as i64 - kib("rssAfterCallsKiB") as i64;
    let idle_mib = round3(kib("rssIdleKiB") as f64 / 1024.0);
    record["componentBytes"] = json!(component);
    record["hostBinaryBytes"] = json!(host_bytes);
    record["hostBinary"] = json!(bench.host_bin.as_ref().map(|b| b.display().to_string()));
    record["callsGrowthKiB"] = json!(calls_growth);
    record["swapsGrowthKiB"] = json!(swaps_growth);
    record["benchSwapCli"] = bench_swap;
    record["rssIdleMiB"] = json!(idle_mib);
    Ok(record)
}
