//! The sandbox of one call: the limits a component runs under and the parts of a store that
//! enforce them.
//!
//! Every call gets a fresh store ([`crate::engine`]) whose limits add up across the whole call:
//! one memory budget for all its linear memories and tables ([`SandboxLimits::memory_bytes`]),
//! caps on instances, memories, tables, table elements and host resources, a CPU limit counted
//! in the thread CPU time spent in the component ([`SandboxLimits::cpu`], checked every
//! [`EPOCH_TICK`]), a wall-clock limit ([`SandboxLimits::wall`]) and a bounded log sink for the
//! component's stderr. The capabilities add their own per-call caps (requests and headers in
//! [`crate::capability::http`], store writes in [`crate::capability::store`]).
//!
//! The first limit a call breaks is recorded in its [`LimitTrip`], which every part of the
//! store shares; the engine stops the call as soon as the component gets control back and names
//! that limit in the call's error. This module imports nothing of the crate: each capability and
//! the engine build on it.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The first sandbox limit a call ran into, shared by the parts of one call's store (the
/// resource limiter, the `wasi:http` hooks, the log sink, the CPU meter). Set once: the first
/// limit wins. The runtime stops the call as soon as the component gets control back, and names
/// the limit in the call's error. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct LimitTrip(Arc<OnceLock<String>>);

impl LimitTrip {
    /// Record that the call broke `limit` (text such as `its limit of 64 outgoing requests per
    /// call`); a later limit does not replace the first.
    pub fn trip(&self, limit: String) {
        let _ = self.0.set(limit);
    }

    /// The limit the call broke, if any.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    /// `Err` (a trap that names the limit) once a limit was broken.
    pub(crate) fn trap(&self) -> wasmtime::Result<()> {
        match self.get() {
            Some(limit) => Err(wasmtime::format_err!(
                "the component exceeded {limit}; it was stopped"
            )),
            None => Ok(()),
        }
    }
}

/// The component's stderr, turned into `tracing` events (target `component`), one per line.
///
/// Lines are cut at [`GUEST_LOG_LINE_BYTES`]; a call may log at most [`GUEST_LOG_LINES`] lines
/// and [`GUEST_LOG_BUDGET_BYTES`] bytes. Past either, the rest is dropped with one warning and
/// the call is stopped (the limit is recorded in its [`LimitTrip`]), so a component that floods
/// stderr can flood neither the gateway's journal nor the host's CPU.
pub(crate) struct GuestLog {
    line: Vec<u8>,
    logged: usize,
    lines: usize,
    muted: bool,
    trip: LimitTrip,
}

/// Longest component log line kept, bytes (the rest of the line is dropped).
pub const GUEST_LOG_LINE_BYTES: usize = 4096;
/// Most component log output per call, bytes (line breaks not counted). An Azure registration
/// polled every second for an hour logs about 3,600 lines of ~100 bytes.
pub const GUEST_LOG_BUDGET_BYTES: usize = 1024 * 1024;
/// Most component log lines per call, empty lines included.
pub const GUEST_LOG_LINES: usize = 10_000;
/// Bytes of component stderr buffered before the component waits for the log to take them.
pub const GUEST_LOG_BUFFER_BYTES: usize = 8192;

impl GuestLog {
    /// A sink whose breaking of a limit is recorded in `trip`.
    pub(crate) fn new(trip: LimitTrip) -> Self {
        GuestLog {
            line: Vec::new(),
            logged: 0,
            lines: 0,
            muted: false,
            trip,
        }
    }

    fn mute(&mut self, limit: String) {
        self.muted = true;
        tracing::warn!(target: "component", "the component exceeded {limit}; dropping the rest of this call's output and stopping the call");
        self.trip.trip(limit);
    }

    fn emit(&mut self) {
        if !self.muted {
            self.lines += 1;
            self.logged += self.line.len();
            if self.lines > GUEST_LOG_LINES {
                self.mute(format!("its log limit of {GUEST_LOG_LINES} lines per call"));
            } else if self.logged > GUEST_LOG_BUDGET_BYTES {
                self.mute(format!(
                    "its log limit of {GUEST_LOG_BUDGET_BYTES} bytes per call"
                ));
            } else {
                let text = String::from_utf8_lossy(&self.line);
                tracing::info!(target: "component", "{text}");
            }
        }
        self.line.clear();
    }
}

impl tokio::io::AsyncWrite for GuestLog {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        for &byte in buf {
            if byte == b'\n' {
                self.emit();
            } else if self.line.len() < GUEST_LOG_LINE_BYTES {
                self.line.push(byte);
            }
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        std::task::Poll::Ready(Ok(()))
    }
}

/// Default total memory of one call, bytes: all its linear memories and tables together
/// (tables at [`TABLE_ELEMENT_BYTES`] per element). The component needs ~2 MiB.
pub const MEMORY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// Bytes one table element is counted as: wasmtime stores one pointer per element (its
/// `ResourceLimiter::table_growing` documentation).
pub const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Most elements in one table (the component's function table has a few hundred).
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Most core module instances per call (the component has 3: its code and two shims).
pub const MAX_INSTANCES: usize = 8;

/// Most linear memories per call, over all instances (the component has 1).
pub const MAX_MEMORIES: usize = 2;

/// Most tables per call, over all instances (the component has 2).
pub const MAX_TABLES: usize = 4;

/// Most host resources (handles in the call's `ResourceTable`: streams, pollables, HTTP
/// fields, requests, responses, ...) alive at once in one call. The component holds about a
/// dozen during an HTTP exchange.
pub const MAX_HOST_RESOURCES: usize = 1024;

/// How often the engine's epoch advances; the granularity of the CPU deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Default CPU time of one call: the component's own execution, 10 s.
pub const CPU_LIMIT: Duration = Duration::from_secs(10);

/// Default wall-clock time of one call, host calls included, 15 min.
pub const WALL_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The memory limit an operator may set, MiB, inclusive (the daemon's `limits.memory_mib`): 8
/// MiB (the component needs ~2) to 4 GiB (the wasm32 address space).
pub const MEMORY_MIB_RANGE: std::ops::RangeInclusive<u64> = 8..=4_096;
/// The CPU limit an operator may set, ms, inclusive (the daemon's `limits.cpu_ms`): 1 ms to 10
/// min of the component's own CPU time per call.
pub const CPU_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=600_000;

/// Per-call limits of the sandbox. The counts and sizes that do not vary per deployment are
/// the constants of this module ([`MAX_INSTANCES`], [`MAX_MEMORIES`], [`MAX_TABLES`],
/// [`MAX_TABLE_ELEMENTS`], [`MAX_HOST_RESOURCES`], [`GUEST_LOG_LINES`],
/// [`GUEST_LOG_BUDGET_BYTES`], and in [`crate::capability::http`] the request and header caps).
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// Total memory of the call, bytes: the sum of all its linear memories and tables;
    /// growing past it traps. Default [`MEMORY_LIMIT_BYTES`].
    pub memory_bytes: usize,
    /// CPU time the component may spend executing its own code: the CPU time of the thread
    /// running it (`CLOCK_THREAD_CPUTIME_ID`, clock_gettime(2)) while inside wasm, so neither
    /// time inside host calls (HTTP, sleeps) nor time the thread waited for a CPU counts.
    /// Checked every [`EPOCH_TICK`]. Default [`CPU_LIMIT`].
    pub cpu: Duration,
    /// Time a whole call may take, host calls included. Default [`WALL_LIMIT`].
    pub wall: Duration,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes: MEMORY_LIMIT_BYTES,
            cpu: CPU_LIMIT,
            wall: WALL_LIMIT,
        }
    }
}

/// The store's `ResourceLimiter`: one memory budget for the whole call instead of a cap per
/// linear memory, plus the count and size caps.
pub(crate) struct SandboxLimiter {
    budget: usize,
    used: usize,
    trip: LimitTrip,
}

impl SandboxLimiter {
    /// A limiter with `budget` bytes for all memories and tables of a call.
    pub(crate) fn new(budget: usize, trip: LimitTrip) -> Self {
        SandboxLimiter {
            budget,
            used: 0,
            trip,
        }
    }

    /// Charge `bytes` more to the budget, or trip the memory limit.
    fn charge(&mut self, bytes: usize) -> wasmtime::Result<bool> {
        let total = self.used.saturating_add(bytes);
        if total > self.budget {
            let limit = format!(
                "its memory limit of {} MiB (all linear memories and tables of the call together)",
                self.budget / (1024 * 1024)
            );
            self.trip.trip(limit.clone());
            return Err(wasmtime::format_err!(
                "the component exceeded {limit}; it was stopped"
            ));
        }
        self.used = total;
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for SandboxLimiter {
    // Wasmtime asks before creating a memory (current 0) and before each growth. A growth that
    // is allowed here but then fails (past the memory's own maximum) stays charged: wasmtime
    // does not say by how much a failure was, and guessing low would let a loop of failed
    // growths reclaim budget it never gave back.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.charge(desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            let limit = format!("its table limit of {MAX_TABLE_ELEMENTS} elements per table");
            self.trip.trip(limit.clone());
            return Err(wasmtime::format_err!(
                "the component exceeded {limit}; it was stopped"
            ));
        }
        self.charge(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// The CPU time of the calling thread (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, POSIX
/// clock_gettime(2)), and the thread's id to tell whether two samples are comparable.
fn thread_cpu_sample() -> CpuSample {
    use rustix::time::{ClockId, clock_gettime};
    // Infallible for a clock Linux has; a negative field (never seen) counts as no sample.
    let ts = clock_gettime(ClockId::ThreadCPUTime);
    let cpu = u64::try_from(ts.tv_sec)
        .ok()
        .zip(u32::try_from(ts.tv_nsec).ok())
        .map(|(secs, nanos)| Duration::new(secs, nanos));
    CpuSample {
        thread: rustix::thread::gettid(),
        cpu,
        wall: Instant::now(),
    }
}

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    thread: rustix::process::Pid,
    cpu: Option<Duration>,
    wall: Instant,
}

impl CpuSample {
    /// CPU time from `self` to `now`. Wasm runs on a fiber that only changes threads inside
    /// host calls, so both samples come from one thread; should they not (or should the clock
    /// fail), the wall time between them is counted instead, which can only overcount.
    fn until(&self, now: &CpuSample) -> Duration {
        match (self.cpu, now.cpu) {
            (Some(a), Some(b)) if self.thread == now.thread => b.saturating_sub(a),
            _ => now.wall.saturating_duration_since(self.wall),
        }
    }
}

/// CPU time the component spent in its own code: call hooks sample the thread's CPU clock at
/// each transition into wasm and add the stretch at each transition out; the epoch callback
/// adds the stretch running so far.
///
/// Host calls count too, when they return on the thread they were made on: work the host does
/// for the component (random bytes, hashing, writing a bundle) is the component's CPU as much
/// as its own code. A host call that suspends (an HTTP wait, a sleep) may resume on another
/// thread; its CPU time cannot be attributed and is not counted, and waiting uses none.
pub(crate) struct CpuMeter {
    in_wasm_since: Option<CpuSample>,
    in_host_since: Option<CpuSample>,
    used: Duration,
    budget: Duration,
}

impl CpuMeter {
    /// A meter with `budget` of CPU time for the call.
    pub(crate) fn new(budget: Duration) -> Self {
        CpuMeter {
            in_wasm_since: None,
            in_host_since: None,
            used: Duration::ZERO,
            budget,
        }
    }

    /// The component starts running (a call into wasm).
    pub(crate) fn enter(&mut self) {
        self.in_wasm_since = Some(thread_cpu_sample());
    }

    /// The component returns to the host.
    pub(crate) fn leave(&mut self) {
        if let Some(since) = self.in_wasm_since.take() {
            self.used += since.until(&thread_cpu_sample());
        }
    }

    /// The component calls the host.
    pub(crate) fn call_host(&mut self) {
        self.leave();
        self.in_host_since = Some(thread_cpu_sample());
    }

    /// A host call returns to the component.
    pub(crate) fn return_from_host(&mut self) {
        if let Some(since) = self.in_host_since.take() {
            let now = thread_cpu_sample();
            if let (Some(a), Some(b)) = (since.cpu, now.cpu)
                && since.thread == now.thread
            {
                self.used += b.saturating_sub(a);
            }
        }
        self.enter();
    }

    /// Record the CPU limit in `trip` once the time used is past the budget.
    pub(crate) fn trip_if_over(&self, trip: &LimitTrip) {
        if self.used > self.budget {
            trip.trip(format!("its CPU limit of {} ms", self.budget.as_millis()));
        }
    }

    /// Add the running stretch and start a new one.
    pub(crate) fn checkpoint(&mut self) {
        if let Some(since) = self.in_wasm_since {
            let now = thread_cpu_sample();
            self.used += since.until(&now);
            self.in_wasm_since = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_samples_count_thread_cpu_time_not_waiting() {
        let start = thread_cpu_sample();
        std::thread::sleep(Duration::from_millis(300));
        let slept = start.until(&thread_cpu_sample());
        assert!(slept < Duration::from_millis(100), "{slept:?}");
        // Spinning adds CPU time. On a loaded machine the thread gets only part of the wall
        // time, so spin until 50 ms of CPU time have passed, bounded by 30 s of wall time: a
        // sampler that did not count CPU time never gets there.
        let start = thread_cpu_sample();
        let mut n = 0u64;
        let t = Instant::now();
        let mut spun = Duration::ZERO;
        while spun < Duration::from_millis(50) && t.elapsed() < Duration::from_secs(30) {
            for _ in 0..10_000 {
                n = std::hint::black_box(n.wrapping_add(1));
            }
            spun = start.until(&thread_cpu_sample());
        }
        assert!(
            spun >= Duration::from_millis(50),
            "{spun:?} after {:?}",
            t.elapsed()
        );
        // Samples from two threads are not compared: the wall time between them counts.
        let here = thread_cpu_sample();
        let there = std::thread::spawn(thread_cpu_sample).join().unwrap();
        assert_ne!(here.thread, there.thread);
        assert_eq!(here.until(&there), there.wall.duration_since(here.wall));
    }
}
