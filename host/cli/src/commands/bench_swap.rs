//! `krypton-host bench-swap` (hidden): hot-swap latency and resident memory.

use super::{HostFailure, fail};
use crate::output::exit;
use clap::Args;
use krypton_host::component::DEFAULT_COMPONENT;
use krypton_host::engine::Runtime;
use std::time::Instant;

/// `bench-swap` arguments.
#[derive(Args)]
pub struct BenchSwapArgs {
    /// Number of swaps, 1 to 100000.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
}

/// Resident set size of this process, KiB (Linux `/proc/self/status`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Swap the component `--count` times and print swap latencies and resident memory. Errors:
/// exit 1.
pub async fn bench_swap(args: BenchSwapArgs) -> Result<(), HostFailure> {
    use krypton_host::component::lifecycle::Lifecycle;
    let internal = fail(exit::INTERNAL);
    let dir = tempfile::tempdir().map_err(|e| internal(e.into()))?;
    let file = dir.path().join("component.wasm");
    // Two versions that differ only in a custom section.
    let variant = |tag: u8| {
        let mut bytes = DEFAULT_COMPONENT.to_vec();
        bytes.extend_from_slice(&[0, 10, 1, b'b', tag, tag, tag, tag, tag, tag, tag, tag]);
        bytes
    };
    let install = |bytes: &[u8]| -> std::io::Result<()> {
        let tmp = dir.path().join("component.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &file)
    };
    install(&variant(0)).map_err(|e| internal(e.into()))?;
    let runtime = std::sync::Arc::new(Runtime::new().map_err(internal)?);
    let lifecycle = Lifecycle::start(runtime, Some(file.clone()), None)
        .await
        .map_err(internal)?;
    let mut latencies = Vec::new();
    let mut rss_at_10 = 0;
    for i in 1..=args.count {
        install(&variant(1 + (i % 2) as u8)).map_err(|e| internal(e.into()))?;
        let started = Instant::now();
        lifecycle.reload().await.map_err(internal)?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if i == 10 {
            rss_at_10 = rss_kib();
        }
    }
    // The first two swaps compile; the rest load precompiled artifacts from the cache.
    let mut warm: Vec<f64> = latencies.iter().skip(2).copied().collect();
    warm.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        warm.get(((warm.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!("swaps: {}", args.count);
    println!(
        "first two swaps (compile): {:.1} ms, {:.1} ms",
        latencies[0],
        latencies.get(1).copied().unwrap_or(0.0)
    );
    println!(
        "swap from precompiled artifact: median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.9),
        pct(1.0)
    );
    println!(
        "RSS after 10 swaps: {} KiB; after {} swaps: {} KiB",
        rss_at_10,
        args.count,
        rss_kib()
    );
    Ok(())
}
