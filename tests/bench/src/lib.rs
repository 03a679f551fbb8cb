//! # krypton-bench
//!
//! The figures of `BENCHMARKS.md`, measured on loopback against the mock Krypton
//! (`krypton-mock`), every ratio within one run:
//!
//! 1. [`round_trip`]: one provisioning round trip (`azure-iot`, `aws-iot`) through the
//!    component in the host (the library, and the `krypton-host` CLI process), through a native
//!    build of the same guest logic ([`native`]), and through `curl` processes making the same
//!    requests;
//! 2. [`loading`]: loading a new version (JIT compile, compile-cache hit, precompiled artifact)
//!    and the instantiate + call overhead of one call;
//! 3. [`memory`]: sizes, and resident memory idle, after calls and after swaps;
//! 4. [`storm`]: a provisioning storm of many devices, each its own instance and store, at
//!    bounded concurrency against a mock that throttles with 429 and `Retry-After`;
//! 5. [`swap`]: hot swaps under load, with the failed calls counted.
//!
//! The mock runs in a child process ([`MockChild`]), and so do the memory and storm
//! measurements, so that each resident-memory figure is that of a process doing only that.
//! `krypton-bench` (`src/main.rs`) is the one command; `--json FILE` writes every figure.
//! Timings are printed and written, never asserted.

pub mod loading;
pub mod memory;
pub mod native;
pub mod round_trip;
pub mod stats;
pub mod storm;
pub mod swap;

use anyhow::Context as _;
use krypton_host::ProvisionOptions;
use krypton_host::bindings::ProvisionRequest;
use krypton_host::component::DEFAULT_COMPONENT;
use krypton_host::engine::{CachePolicy, Runtime};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// How big each measurement is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Round trips per target and way (figure 1).
    pub rounds: usize,
    /// JIT compilations timed (figure 2).
    pub jit_loads: usize,
    /// Compile-cache hits and precompiled loads timed (figure 2).
    pub warm_loads: usize,
    /// Instantiate + call measurements (figure 2).
    pub overhead_calls: usize,
    /// Provisioning calls before the "after calls" resident memory (figure 3).
    pub calls: usize,
    /// Swaps before the "after swaps" resident memory (figure 3).
    pub swaps: usize,
    /// Devices of the storm (figure 4).
    pub storm_devices: usize,
    /// Requests per second the mock serves in the storm (figure 4).
    pub storm_rate: u32,
    /// Tokens the mock's bucket holds at most in the storm (figure 4).
    pub storm_burst: u32,
    /// Devices in flight at once in the storm (figure 4).
    pub storm_concurrency: usize,
    /// Attempts per call in the storm (the CLI's `--max-attempts`, 1 to 20; figure 4).
    pub storm_attempts: u32,
    /// Seconds of each phase of the hot-swap figure (figure 5).
    pub swap_secs: f64,
    /// Provisioning loops running while swapping (figure 5).
    pub swap_workers: usize,
}

impl Sizes {
    /// The full run: 10,000 devices at 100 requests/s (an ideal of 100 s), 1,000 calls, 500
    /// swaps.
    pub fn full() -> Self {
        Sizes {
            rounds: 50,
            jit_loads: 3,
            warm_loads: 30,
            overhead_calls: 2000,
            calls: 1000,
            swaps: 500,
            storm_devices: 10_000,
            storm_rate: 100,
            storm_burst: 100,
            storm_concurrency: 128,
            storm_attempts: 20,
            swap_secs: 10.0,
            swap_workers: 2,
        }
    }

    /// `--quick`: every figure in seconds (what CI's smoke test runs).
    pub fn quick() -> Self {
        Sizes {
            rounds: 5,
            jit_loads: 1,
            warm_loads: 5,
            overhead_calls: 100,
            calls: 50,
            swaps: 20,
            storm_devices: 100,
            storm_rate: 50,
            storm_burst: 50,
            storm_concurrency: 64,
            storm_attempts: 20,
            swap_secs: 1.0,
            swap_workers: 2,
        }
    }
}

/// What every figure needs: the work directory, the compile cache, the binaries.
pub struct Bench {
    /// The figures' sizes.
    pub sizes: Sizes,
    /// The `krypton-bench` binary, to start the children.
    pub exe: PathBuf,
    /// The `krypton-host` binary of figures 1 and 3, if there is one.
    pub host_bin: Option<PathBuf>,
    /// A private (0700) temporary directory for stores, caches and files.
    pub work: tempfile::TempDir,
}

impl Bench {
    /// The compile cache shared by the runtimes and CLI processes of the run (`work/cache`).
    pub fn cache_dir(&self) -> PathBuf {
        self.work.path().join("cache")
    }

    /// A directory under the work directory, mode 0700 (a store or a cache may be made in it).
    pub fn dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = self.work.path().join(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }
}

/// The options every provisioning call of the bench uses: `--force` (every call reaches the
/// mock), the CLI's smallest poll interval (100 ms), the rest the defaults.
pub fn options() -> ProvisionOptions {
    ProvisionOptions {
        force: true,
        poll_interval: Duration::from_millis(POLL_INTERVAL_MS),
        ..ProvisionOptions::default()
    }
}

/// The Azure poll interval of every way, ms (the CLI's smallest `--poll-interval-ms`).
pub const POLL_INTERVAL_MS: u64 = 100;

/// A runtime with the sandbox limits of [`options`] and the compile cache at `cache`.
/// Errors: the engine cannot be built.
pub fn runtime(cache: &Path) -> anyhow::Result<Runtime> {
    Runtime::with_options(
        options().sandbox_limits(),
        CachePolicy::Directory(cache.to_path_buf()),
    )
}

/// The host's request for the target named `name` (`aws-iot`, `azure-iot`) of `pre`.
/// Errors: the component does not list it.
pub async fn host_request(
    runtime: &Runtime,
    pre: &krypton_host::KryptonPre,
    name: &str,
    endpoint: &str,
    options: &ProvisionOptions,
) -> anyhow::Result<ProvisionRequest> {
    let targets = krypton_host::component::list_targets(runtime, pre).await?;
    let target = targets.find(name)?.target;
    Ok(options.request(target, endpoint))
}

/// The built-in component with a custom section of 8 `tag` bytes appended (WebAssembly Core
/// Specification §5.5.3: id 0, size, name `b`, contents): a new version with the same code,
/// as `krypton-host bench-swap` makes them.
pub fn component_variant(tag: u8) -> Vec<u8> {
    let mut bytes = DEFAULT_COMPONENT.to_vec();
    bytes.extend_from_slice(&[0, 10, 1, b'b', tag, tag, tag, tag, tag, tag, tag, tag]);
    bytes
}

/// Write `bytes` to `file` as one unit (a temp file renamed over it), as an operator
/// installing a new version would. Errors: the files cannot be written.
pub fn install(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}

/// A field of `/proc/self/status` in KiB (`VmRSS`: resident now; `VmHWM`: the peak), 0 when
/// unreadable (proc(5)).
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Resident set size of this process, KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS")
}

/// The mock Krypton in a child process (`krypton-bench mock-child`), so its own memory (it
/// records every request) stays out of the measured process. Stopped when dropped.
pub struct MockChild {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
    /// The mock's base URL (`https://127.0.0.1:PORT`).
    pub endpoint: String,
    /// The mock CA certificate file.
    pub ca_file: PathBuf,
}

/// What the mock child reports when it stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct MockTally {
    /// Requests received.
    pub requests: u64,
    /// 429 answers of the throttle.
    pub throttled: u64,
}

impl MockChild {
    /// Start it with the CA file written to `ca_file`, throttled at `throttle` (rate, burst)
    /// when given. Errors: the child does not start or does not report its endpoint.
    pub fn start(exe: &Path, ca_file: &Path, throttle: Option<(u32, u32)>) -> anyhow::Result<Self> {
        let mut command = Command::new(exe);
        command.arg("mock-child").arg("--ca-out").arg(ca_file);
        if let Some((rate, burst)) = throttle {
            command
                .arg("--rate")
                .arg(rate.to_string())
                .arg("--burst")
                .arg(burst.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} mock-child", exe.display()))?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("the child's stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let started: serde_json::Value =
            serde_json::from_str(&line).context("the mock child's first line")?;
        let endpoint = started["endpoint"]
            .as_str()
            .context("the mock child reported no endpoint")?
            .to_string();
        Ok(MockChild {
            child,
            stdin,
            stdout,
            endpoint,
            ca_file: ca_file.to_path_buf(),
        })
    }

    /// Run `exe ROLE --endpoint … --ca-file … --work WORK` followed by `args` (the memory and
    /// storm children, which measure against this mock) and parse the JSON record the child
    /// prints on stdout. Errors: the child cannot start, or prints no JSON (its stderr is in
    /// the error).
    pub fn run_child(
        &self,
        exe: &Path,
        role: &str,
        work: &Path,
        args: &[(&str, String)],
    ) -> anyhow::Result<serde_json::Value> {
        let mut command = Command::new(exe);
        command
            .arg(role)
            .arg("--endpoint")
            .arg(&self.endpoint)
            .arg("--ca-file")
            .arg(&self.ca_file)
            .arg("--work")
            .arg(work);
        for (flag, value) in args {
            command.arg(flag).arg(value);
        }
        let out = command
            .output()
            .with_context(|| format!("running {role}"))?;
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "{role} reported nothing: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// The CA certificate (PEM). Errors: the file cannot be read.
    pub fn ca_pem(&self) -> anyhow::Result<Vec<u8>> {
        Ok(std::fs::read(&self.ca_file)?)
    }

    /// Stop it and take its tally. Errors: it reported none.
    pub fn stop(mut self) -> anyhow::Result<MockTally> {
        drop(self.stdin.take());
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let _ = self.child.wait();
        let tally: serde_json::Value =
            serde_json::from_str(&line).context("the mock child's last line")?;
        Ok(MockTally {
            requests: tally["requests"].as_u64().unwrap_or(0),
            throttled: tally["throttled"].as_u64().unwrap_or(0),
        })
    }
}

impl Drop for MockChild {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `krypton-bench mock-child`: serve the mock (keys of both targets ECDSA P-256, see
/// `BENCHMARKS.md`; Azure registrations assigned at the first poll), print
/// `{"endpoint"}`, serve until stdin closes, then print `{"requests","throttled"}`.
/// Errors: the mock cannot start.
pub async fn mock_child(ca_out: &Path, throttle: Option<(u32, u32)>) -> anyhow::Result<()> {
    use krypton_mock::{KeyShape, MockConfig, MockKrypton, Throttle};
    let config = MockConfig {
        assigning_polls: 0,
        aws_iot_key: KeyShape::EcP256Pkcs8,
        azure_iot_key: KeyShape::EcP256Pkcs8,
        throttle: throttle.map(|(rate_per_sec, burst)| Throttle {
            rate_per_sec,
            burst,
        }),
        ..MockConfig::default()
    };
    let mock = MockKrypton::start("127.0.0.1:0".parse()?, config).await?;
    std::fs::write(ca_out, mock.ca_pem())?;
    println!("{}", serde_json::json!({"endpoint": mock.endpoint()}));
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await?;
    let tally = serde_json::json!({
        "requests": mock.requests().len(),
        "throttled": mock.throttled(),
    });
    mock.stop().await;
    println!("{tally}");
    Ok(())
}

/// Run every figure and return them as one JSON object (also printed as they come).
/// Errors: a figure could not be measured (a failed call is counted, not an error).
pub fn run_all(bench: &Bench) -> anyhow::Result<serde_json::Value> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let round_trip = round_trip::measure(bench, &tokio)?;
    let loading = loading::measure(bench, &tokio)?;
    let memory = memory::measure(bench)?;
    let storm = storm::measure(bench)?;
    let swap = swap::measure(bench, &tokio)?;
    Ok(serde_json::json!({
        "machine": machine(),
        "sizes": format!("{:?}", bench.sizes),
        "secondsTaken": stats::round3(started.elapsed().as_secs_f64()),
        "roundTrip": round_trip,
        "loading": loading,
        "memory": memory,
        "storm": storm,
        "hotSwap": swap,
    }))
}

/// The machine: CPU model (`/proc/cpuinfo`), logical CPUs, memory (`/proc/meminfo`), kernel,
/// the UTC date.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    serde_json::json!({
        "cpu": model,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memoryKiB": mem_kib,
        "kernel": kernel.trim(),
        "date": date,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
