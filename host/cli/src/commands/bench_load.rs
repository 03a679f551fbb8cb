//! `krypton-host bench-load FILE.cwasm --trusted-public-key KEY` (hidden): the time to load a
//! signed precompiled component, step by step, in both builds (the gateway build has no other
//! way to load one).

use super::{HostFailure, fail};
use crate::output::exit;
use anyhow::Context as _;
use clap::Args;
use krypton_host::component::precompiled::Artifact;
use krypton_host::engine::{CachePolicy, Runtime};
use krypton_host::sandbox::SandboxLimits;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `bench-load` arguments.
#[derive(Args)]
pub struct BenchLoadArgs {
    /// The precompiled component (with its `.sig` beside it).
    pub component: PathBuf,
    /// The ed25519 public key its signature verifies with (base64 or hex).
    #[arg(long, env = "KRYPTON_TRUSTED_PUBLIC_KEY", value_name = "KEY")]
    pub trusted_public_key: String,
    /// Number of loads, 1 to 100000.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
}

/// Resident set size of this process, KiB (Linux `/proc/self/status`, `VmRSS`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Median and slowest of `samples`, ms.
fn median_max(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let ms = |d: Option<&Duration>| d.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
    (ms(samples.get(samples.len() / 2)), ms(samples.last()))
}

/// Load the artifact `--count` times into one runtime (as a daemon's hot swap does) and print
/// the median and slowest time of each step: open and SHA-256, signature and target check,
/// deserialize and link; then one instantiate and `version` call. Errors: exit 3 for a bad key
/// or a refused artifact, 1 otherwise.
pub async fn bench_load(args: BenchLoadArgs) -> Result<(), HostFailure> {
    let invalid = fail(exit::INVALID_REQUEST);
    let key = krypton_host::signing::parse_public_key(&args.trusted_public_key)
        .context("--trusted-public-key")
        .map_err(invalid)?;
    let runtime = Runtime::with_options(SandboxLimits::default(), CachePolicy::Off)
        .map_err(fail(exit::INTERNAL))?;
    let rss_before = rss_kib();
    let (mut open, mut verify, mut load, mut total) = (vec![], vec![], vec![], vec![]);
    let mut bytes = 0;
    let mut last = None;
    for _ in 0..args.count {
        let started = Instant::now();
        let artifact = Artifact::open(&args.component).map_err(invalid)?;
        let opened = Instant::now();
        bytes = artifact.bytes;
        let verified = artifact.verify(Some(&key)).map_err(invalid)?;
        let checked = Instant::now();
        let pre = verified.load(&runtime).map_err(fail(exit::INTERNAL))?;
        let done = Instant::now();
        open.push(opened - started);
        verify.push(checked - opened);
        load.push(done - checked);
        total.push(done - started);
        last = Some(pre);
    }
    let pre = last.expect("at least one load");
    let started = Instant::now();
    let version = krypton_host::component::self_check(&runtime, &pre)
        .await
        .map_err(fail(exit::INTERNAL))?;
    let first_call = started.elapsed();
    let started = Instant::now();
    krypton_host::component::self_check(&runtime, &pre)
        .await
        .map_err(fail(exit::INTERNAL))?;
    let second_call = started.elapsed();
    println!(
        "precompiled component: {} ({bytes} bytes, version {version}), {} loads",
        args.component.display(),
        args.count
    );
    for (name, samples) in [
        ("open + SHA-256", &mut open),
        ("signature + target check", &mut verify),
        ("deserialize + link", &mut load),
        ("load, total", &mut total),
    ] {
        let (median, max) = median_max(samples);
        println!("{name}: median {median:.3} ms, max {max:.3} ms");
    }
    println!(
        "instantiate + version call: first {:.3} ms, second {:.3} ms",
        first_call.as_secs_f64() * 1000.0,
        second_call.as_secs_f64() * 1000.0
    );
    println!("RSS: {rss_before} KiB before, {} KiB after", rss_kib());
    Ok(())
}
