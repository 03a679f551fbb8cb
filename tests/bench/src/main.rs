//! `krypton-bench`: every figure of `BENCHMARKS.md` in one command.
//!
//! ```sh
//! cargo run --release -p krypton-bench -- --json bench.json        # the full run (~10 min)
//! cargo run --release -p krypton-bench -- --quick                  # every figure, small (seconds)
//! ```
//!
//! Run through `cargo run`, it first builds the `krypton-host` binary of the same profile
//! (`cargo build -p krypton-host-cli`), whose CLI process and size it measures; `--host-bin`
//! names another one instead. The hidden subcommands are the children the figures start.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use krypton_bench::{Bench, Sizes};
use std::path::PathBuf;
use std::process::Command;

/// Benchmarks of the Krypton component, its host, a native build of its logic and curl.
#[derive(Parser)]
#[command(name = "krypton-bench", version)]
struct Cli {
    /// Every figure, small: seconds instead of minutes (CI's smoke test runs this).
    #[arg(long)]
    quick: bool,
    /// Devices of the provisioning storm (default 10000; 100 with --quick), 1 to 100000.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    storm: Option<u32>,
    /// Requests per second the mock serves in the storm (default 100; 50 with --quick), 1 to
    /// 10000; its bucket holds as many.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rate: Option<u32>,
    /// Devices in flight at once in the storm (default 128; 64 with --quick), 1 to 4096.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: Option<u32>,
    /// Round trips per target and way (default 50; 5 with --quick), 1 to 10000.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rounds: Option<u32>,
    /// Also write every figure to this file (JSON).
    #[arg(long)]
    json: Option<PathBuf>,
    /// The `krypton-host` binary to measure (default: built by cargo beside this one).
    #[arg(long)]
    host_bin: Option<PathBuf>,
    /// Measure without a `krypton-host` binary (the CLI figures are left out).
    #[arg(long, conflicts_with = "host_bin")]
    no_host_bin: bool,
    #[command(subcommand)]
    child: Option<Role>,
}

/// The children the figures start (not for direct use).
#[derive(Subcommand)]
enum Role {
    /// Serve the mock Krypton until stdin closes.
    #[command(hide = true, name = "mock-child")]
    Mock {
        #[arg(long)]
        ca_out: PathBuf,
        #[arg(long)]
        rate: Option<u32>,
        #[arg(long)]
        burst: Option<u32>,
    },
    /// The memory record of a daemon-shaped process.
    #[command(hide = true, name = "rss-child")]
    Rss {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        ca_file: PathBuf,
        #[arg(long)]
        work: PathBuf,
        #[arg(long)]
        calls: usize,
        #[arg(long)]
        swaps: usize,
    },
    /// The provisioning storm.
    #[command(hide = true, name = "storm-child")]
    Storm {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        ca_file: PathBuf,
        #[arg(long)]
        work: PathBuf,
        #[arg(long)]
        devices: usize,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        attempts: u32,
    },
}

/// The `krypton-host` binary: `--host-bin`, else (under `cargo run`) built with cargo in this
/// binary's profile and found beside it.
fn host_bin(cli: &Cli) -> anyhow::Result<Option<PathBuf>> {
    if cli.no_host_bin {
        return Ok(None);
    }
    if let Some(bin) = &cli.host_bin {
        return Ok(Some(bin.clone()));
    }
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name("krypton-host");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "krypton-host-cli", "--bin", "krypton-host"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        println!("building the krypton-host binary: {build:?}");
        let status = build.status().context("running cargo build")?;
        anyhow::ensure!(status.success(), "cargo build -p krypton-host-cli failed");
    }
    anyhow::ensure!(
        beside.exists(),
        "no krypton-host binary at {} (run through `cargo run`, give --host-bin, or \
         --no-host-bin)",
        beside.display()
    );
    Ok(Some(beside))
}

fn multi_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.child {
        Some(Role::Mock {
            ca_out,
            rate,
            burst,
        }) => {
            let throttle = rate.map(|r| (r, burst.unwrap_or(r)));
            return multi_thread()?.block_on(krypton_bench::mock_child(ca_out, throttle));
        }
        Some(Role::Rss {
            endpoint,
            ca_file,
            work,
            calls,
            swaps,
        }) => {
            return multi_thread()?.block_on(krypton_bench::memory::rss_child(
                endpoint, ca_file, work, *calls, *swaps,
            ));
        }
        Some(Role::Storm {
            endpoint,
            ca_file,
            work,
            devices,
            concurrency,
            attempts,
        }) => {
            return multi_thread()?.block_on(krypton_bench::storm::storm_child(
                endpoint,
                ca_file,
                work,
                *devices,
                *concurrency,
                *attempts,
            ));
        }
        None => {}
    }
    let mut sizes = if cli.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    if let Some(n) = cli.storm {
        sizes.storm_devices = n as usize;
    }
    if let Some(r) = cli.rate {
        sizes.storm_rate = r;
        sizes.storm_burst = r;
    }
    if let Some(c) = cli.concurrency {
        sizes.storm_concurrency = c as usize;
    }
    if let Some(n) = cli.rounds {
        sizes.rounds = n as usize;
    }
    let bench = Bench {
        sizes,
        exe: std::env::current_exe()?,
        host_bin: host_bin(&cli)?,
        work: tempfile::Builder::new()
            .prefix("krypton-bench-")
            .tempdir()?,
    };
    println!("machine: {}", krypton_bench::machine());
    let figures = krypton_bench::run_all(&bench)?;
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}
