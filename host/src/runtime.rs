//! The wasmtime side: one [`Engine`] and [`Linker`] per process, a fresh [`Store`] per call.
//!
//! The linker offers the component exactly what `wit/krypton.wit` imports: WASI 0.2.12 from
//! `wasmtime-wasi` (clocks, random, stdio; no preopened directories, no environment, no
//! sockets granted), `wasi:http@0.2.12` from `wasmtime-wasi-http` with our
//! [`OutboundPolicy`] as the sender, and `soracom:krypton/secret-store` backed by
//! [`SecretStore`], and `soracom:krypton/uicc` backed by [`UiccAccess`] (none unless the
//! caller grants SIM access). Each call gets its own store with limits that add up (one memory budget
//! for all its memories and tables, caps on instances, memories, tables, table elements, host
//! resources, requests, headers and log lines, a CPU limit in thread CPU time, a wall-clock
//! limit), so one call cannot see another's state and a misbehaving component cannot grow
//! without bound. Compiled components are cached only in a directory nobody else can write
//! ([`CachePolicy`]).
//!
//! With the `jit` feature (the full build) the runtime compiles components with Cranelift. The
//! gateway build has no compiler: it runs signed precompiled components only
//! ([`crate::precompiled`]), and [`Runtime::load`] refuses a `.wasm` there with the way out.
//! Both builds configure their engines with [`engine_config`], so a component precompiled by
//! one loads in the other.

use crate::http::{OutboundCall, OutboundPolicy};
use crate::store::{SecretStore, StoreError as DiskStoreError};
use crate::uicc::UiccAccess;
use anyhow::Context as _;
#[cfg(feature = "jit")]
use rustix::fs::OFlags;
#[cfg(feature = "jit")]
use sha2::{Digest as _, Sha256};
#[cfg(feature = "jit")]
use std::ffi::CString;
#[cfg(feature = "jit")]
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
#[cfg(feature = "jit")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{CallHook, Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Host bindings generated from `wit/krypton.wit` (generated code: its items carry the WIT's
/// own doc comments where it has them).
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "soracom:krypton/krypton",
        exports: { default: async },
        // The SIM's calls block on a modem or a card reader: the host runs them on a
        // blocking thread and awaits them.
        imports: { "soracom:krypton/uicc": async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
        require_store_data_send: true,
        additional_derives: [PartialEq],
    });
}

use bindings::soracom::krypton::secret_store;
pub use bindings::soracom::krypton::types::{
    AuthMode, CertificateSummary, DefaultEndpoint, ExportFile, ExportFormat, Failure, HttpTimeouts,
    KeyCacheUse, ParameterInfo, ProvisionError, ProvisionReport, ProvisionRequest, RetryPolicy,
    RouteEntry, SimError, SimOptions, Target, TargetInfo, TransportError, TransportKind,
};
pub use bindings::soracom::krypton::uicc::{StatusWord, UiccError};

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

    fn trap(&self) -> wasmtime::Result<()> {
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
struct GuestLog {
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
    fn new(trip: LimitTrip) -> Self {
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

/// Per-call limits of the sandbox. The counts and sizes that do not vary per deployment are
/// the constants of this module ([`MAX_INSTANCES`], [`MAX_MEMORIES`], [`MAX_TABLES`],
/// [`MAX_TABLE_ELEMENTS`], [`MAX_HOST_RESOURCES`], [`GUEST_LOG_LINES`],
/// [`GUEST_LOG_BUDGET_BYTES`], and in [`crate::http`] the request and header caps).
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
struct SandboxLimiter {
    budget: usize,
    used: usize,
    trip: LimitTrip,
}

impl SandboxLimiter {
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
struct CpuMeter {
    in_wasm_since: Option<CpuSample>,
    in_host_since: Option<CpuSample>,
    used: Duration,
    budget: Duration,
}

impl CpuMeter {
    fn enter(&mut self) {
        self.in_wasm_since = Some(thread_cpu_sample());
    }

    fn leave(&mut self) {
        if let Some(since) = self.in_wasm_since.take() {
            self.used += since.until(&thread_cpu_sample());
        }
    }

    fn call_host(&mut self) {
        self.leave();
        self.in_host_since = Some(thread_cpu_sample());
    }

    fn return_from_host(&mut self) {
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
    fn trip_if_over(&self, trip: &LimitTrip) {
        if self.used > self.budget {
            trip.trip(format!("its CPU limit of {} ms", self.budget.as_millis()));
        }
    }

    /// Add the running stretch and start a new one.
    fn checkpoint(&mut self) {
        if let Some(since) = self.in_wasm_since {
            let now = thread_cpu_sample();
            self.used += since.until(&now);
            self.in_wasm_since = Some(now);
        }
    }
}

/// The embedded default component, built from `guest/` by `host/build.rs` (feature `jit`: a
/// `.wasm` needs the compiler; the gateway build embeds none).
#[cfg(feature = "jit")]
pub const DEFAULT_COMPONENT: &[u8] = include_bytes!(env!("KRYPTON_GUEST_WASM_PATH"));

/// Per-call state: WASI contexts, the outbound hooks, the secret store, the SIM access and
/// limits.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: OutboundCall,
    secrets: SecretStore,
    uicc: UiccAccess,
    limiter: SandboxLimiter,
    cpu: CpuMeter,
    trip: LimitTrip,
    store_writes: StoreWrites,
}

/// Most secret-store writes (puts and deletes) one call may make. A provisioning run makes at
/// most five (a probe put and delete, a pending registration, the bundle, forgetting the
/// registration); each write is fsynced, so an unbounded loop would wear the gateway's flash.
pub const MAX_STORE_WRITES_PER_CALL: u32 = 32;
/// Most bytes one call may put into the secret store, in total.
pub const MAX_STORE_BYTES_PER_CALL: usize = 4 * 1024 * 1024;
/// Largest `wasi:random` request, bytes (wasmtime's default is 64 MiB: a host-side allocation
/// and CPU the component would not pay for). The component asks for 8 bytes at a time.
pub const MAX_RANDOM_BYTES: u64 = 4096;

/// Secret-store writes of one call, against [`MAX_STORE_WRITES_PER_CALL`] and
/// [`MAX_STORE_BYTES_PER_CALL`].
#[derive(Default)]
struct StoreWrites {
    writes: u32,
    bytes: usize,
}

impl StoreWrites {
    /// Count one write of `bytes`; past a limit the call is stopped (the limit is recorded in
    /// `trip`) and the write is refused, so nothing reaches the disk.
    fn charge(&mut self, trip: &LimitTrip, bytes: usize) -> Result<(), secret_store::StoreError> {
        self.writes = self.writes.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
        let broken = if self.writes > MAX_STORE_WRITES_PER_CALL {
            Some(format!(
                "its limit of {MAX_STORE_WRITES_PER_CALL} secret-store writes per call"
            ))
        } else if self.bytes > MAX_STORE_BYTES_PER_CALL {
            Some(format!(
                "its limit of {MAX_STORE_BYTES_PER_CALL} secret-store bytes per call"
            ))
        } else {
            None
        };
        match broken {
            Some(limit) => {
                let message = format!("refused: {limit}");
                trip.trip(limit);
                Err(secret_store::StoreError::Io(message))
            }
            None => Ok(()),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl secret_store::Host for HostState {
    fn get(&mut self, name: String) -> Result<Option<Vec<u8>>, secret_store::StoreError> {
        self.secrets.get(&name).map_err(to_wit_store_error)
    }

    fn put(&mut self, name: String, value: Vec<u8>) -> Result<(), secret_store::StoreError> {
        self.store_writes.charge(&self.trip, value.len())?;
        self.secrets
            .put(&name, &value)
            .map_err(to_wit_store_error)?;
        tracing::info!(bundle = %name, bytes = value.len(), dir = %self.secrets.dir().display(), "bundle stored");
        Ok(())
    }

    fn delete(&mut self, name: String) -> Result<bool, secret_store::StoreError> {
        self.store_writes.charge(&self.trip, 0)?;
        self.secrets.delete(&name).map_err(to_wit_store_error)
    }
}

impl bindings::soracom::krypton::types::Host for HostState {}

impl HostState {
    /// The SIM access this call was granted.
    pub(crate) fn uicc(&self) -> &UiccAccess {
        &self.uicc
    }
}

fn to_wit_store_error(e: DiskStoreError) -> secret_store::StoreError {
    match e {
        DiskStoreError::InvalidName(n) => secret_store::StoreError::InvalidName(n),
        DiskStoreError::TooLarge(n) => secret_store::StoreError::TooLarge(n),
        DiskStoreError::Io(m) => secret_store::StoreError::Io(m),
    }
}

/// Where compiled components are cached when the environment decides
/// ([`CachePolicy::FromEnvironment`]): `$KRYPTON_CACHE_DIR` (empty: no cache), else
/// `$XDG_CACHE_HOME/krypton-host`, else `$HOME/.cache/krypton-host`. The directory is used
/// only if it passes the checks of [`CachePolicy`].
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KRYPTON_CACHE_DIR") {
        return (!dir.is_empty()).then(|| dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("krypton-host"))
}

/// Where a [`Runtime`] keeps compiled components.
///
/// Compiled code is native code that the host runs without further checks, so a cache
/// directory is used only when nobody else can write to it: it must be owned by the effective
/// user, have mode 0700 (no group or other bits), and not be a symlink. A missing directory is
/// created with mode 0700 (its parents with the default mode). Otherwise caching is off for
/// this runtime and one warning says why and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachePolicy {
    /// The directory of [`cache_dir`] (environment variables), if any.
    FromEnvironment,
    /// This directory, e.g. `<state directory>/cache` for the daemon.
    Directory(PathBuf),
    /// Compile every component on load.
    Off,
}

/// Largest cache entry read, bytes (the compiled component is ~5 MiB).
pub const MAX_CACHE_ENTRY_BYTES: u64 = 256 * 1024 * 1024;

/// Version of wasmtime this host is built with (pinned `=48.0.8` in `host/Cargo.toml`; a unit
/// test checks it against `Cargo.lock`). Part of every cache key.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Age after which a cache temp file is taken for the leftover of a crashed write and removed
/// when a runtime opens the cache (a write takes well under a second).
pub const STALE_CACHE_TEMP: Duration = Duration::from_secs(60 * 60);

#[cfg(feature = "jit")]
/// Prefix of cache temp files.
const CACHE_TEMP_PREFIX: &str = ".tmp-";

#[cfg(feature = "jit")]
/// Bytes of the SHA-256 of the serialized component that starts every cache entry.
const ENTRY_DIGEST_BYTES: usize = 32;

#[cfg(feature = "jit")]
/// An open cache directory that passed the checks of [`CachePolicy`]. Entries are reached only
/// through the descriptor (`openat`, `renameat`), so replacing the directory's path after the
/// check changes nothing.
struct CompileCache {
    dir: std::fs::File,
    path: PathBuf,
}

#[cfg(feature = "jit")]
fn lowercase_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(feature = "jit")]
fn c_name(name: &str) -> std::io::Result<CString> {
    CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

#[cfg(feature = "jit")]
/// `openat(2)` relative to `dir`, never following a symlink in the last component
/// (`O_NOFOLLOW | O_CLOEXEC` are added to `flags`); `mode` is the mode of a created file.
fn open_at(
    dir: &std::fs::File,
    name: &str,
    flags: OFlags,
    mode: u32,
) -> std::io::Result<std::fs::File> {
    let name = c_name(name)?;
    let fd = rustix::fs::openat(
        dir,
        name.as_c_str(),
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(mode),
    )?;
    Ok(std::fs::File::from(fd))
}

#[cfg(feature = "jit")]
/// `renameat(2)` of `from` to `to`, both relative to `dir`.
fn rename_at(dir: &std::fs::File, from: &str, to: &str) -> std::io::Result<()> {
    let (from, to) = (c_name(from)?, c_name(to)?);
    Ok(rustix::fs::renameat(
        dir,
        from.as_c_str(),
        dir,
        to.as_c_str(),
    )?)
}

#[cfg(feature = "jit")]
/// `unlinkat(2)` of `name` relative to `dir`; a failure is ignored (best-effort clean-up).
fn unlink_at(dir: &std::fs::File, name: &str) {
    if let Ok(name) = c_name(name) {
        let _ = rustix::fs::unlinkat(dir, name.as_c_str(), rustix::fs::AtFlags::empty());
    }
}

#[cfg(feature = "jit")]
impl CompileCache {
    /// Open `path` as a cache directory, or say why it cannot be one.
    fn open(path: &Path) -> Result<Self, String> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create its parent directory: {e}"))?;
                }
                match std::fs::DirBuilder::new().mode(0o700).create(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("cannot create it: {e}")),
                }
            }
            Err(e) => return Err(format!("cannot inspect it: {e}")),
            Ok(_) => {}
        }
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR)
                {
                    "it is a symlink or not a directory".to_string()
                } else {
                    format!("cannot open it: {e}")
                }
            })?;
        let meta = dir
            .metadata()
            .map_err(|e| format!("cannot inspect it: {e}"))?;
        let euid = rustix::process::geteuid().as_raw();
        if meta.uid() != euid {
            return Err(format!(
                "it is owned by uid {}, not by this process's uid {euid}",
                meta.uid()
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode != 0o700 {
            return Err(format!("its mode is {mode:04o}, not 0700"));
        }
        let cache = CompileCache {
            dir,
            path: path.to_path_buf(),
        };
        cache.remove_stale_temp_files();
        Ok(cache)
    }

    /// Remove temp files older than [`STALE_CACHE_TEMP`]: what a crash in the middle of
    /// [`CompileCache::write`] leaves. Names come from listing the path; each is then checked
    /// and removed relative to the checked descriptor, never following a symlink.
    fn remove_stale_temp_files(&self) {
        let Ok(listing) = std::fs::read_dir(&self.path) else {
            return;
        };
        for entry in listing.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !name.starts_with(CACHE_TEMP_PREFIX) {
                continue;
            }
            let Ok(file) = open_at(&self.dir, &name, OFlags::RDONLY | OFlags::NONBLOCK, 0) else {
                continue;
            };
            let stale = file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_CACHE_TEMP);
            if stale {
                tracing::debug!(file = %name, "removing a stale cache temp file");
                unlink_at(&self.dir, &name);
            }
        }
    }

    /// The entry `name`, without its leading digest, if it is present, a regular file owned by
    /// us of at most [`MAX_CACHE_ENTRY_BYTES`], and its digest matches; `None` otherwise.
    fn read(&self, name: &str) -> Option<Vec<u8>> {
        use std::io::Read as _;
        let file = match open_at(&self.dir, name, OFlags::RDONLY | OFlags::NONBLOCK, 0) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!(entry = name, error = %e, "cache entry unreadable; compiling");
                return None;
            }
        };
        let meta = file.metadata().ok()?;
        let euid = rustix::process::geteuid().as_raw();
        if !meta.is_file() || meta.uid() != euid || meta.len() > MAX_CACHE_ENTRY_BYTES {
            tracing::debug!(entry = name, "cache entry is not a file of ours; compiling");
            return None;
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_CACHE_ENTRY_BYTES)
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() < ENTRY_DIGEST_BYTES {
            tracing::debug!(
                entry = name,
                bytes = bytes.len(),
                "cache entry truncated; compiling"
            );
            return None;
        }
        let body = bytes.split_off(ENTRY_DIGEST_BYTES);
        if Sha256::digest(&body)[..] != bytes[..] {
            tracing::debug!(
                entry = name,
                "cache entry does not match its digest; compiling"
            );
            return None;
        }
        Some(body)
    }

    /// Write `body` as entry `name`: a new 0600 temp file (`O_EXCL`), the digest and the body,
    /// fsync, rename over the entry, fsync the directory. The temp file is removed on failure.
    fn write(&self, name: &str, body: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = format!(
            "{CACHE_TEMP_PREFIX}{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let result = (|| {
            let mut file = open_at(
                &self.dir,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                0o600,
            )?;
            file.write_all(&Sha256::digest(body))?;
            file.write_all(body)?;
            file.sync_all()?;
            rename_at(&self.dir, &tmp, name)?;
            self.dir.sync_all()
        })();
        if result.is_err() {
            unlink_at(&self.dir, &tmp);
        }
        result
    }
}

/// A compiled component, linked and ready to instantiate (cheap to clone).
pub type KryptonPre = bindings::KryptonPre<HostState>;

/// The engine and linker, built once and shared by every component version and call.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: SandboxLimits,
    #[cfg(feature = "jit")]
    cache: Option<CompileCache>,
}

/// The engine settings of every build: epoch interruption (the CPU limit), everything else
/// wasmtime's defaults for the cargo features both builds share (`host/Cargo.toml`).
///
/// A precompiled component records the settings it was compiled with, and
/// `Component::deserialize` refuses it on an engine whose settings differ (wasmtime's
/// `Engine::precompile_component` documentation), so the engine that compiles for a gateway
/// ([`crate::precompiled::precompile`]) starts from this same configuration.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config
}

/// Advance `engine`'s epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("krypton-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

#[cfg(feature = "jit")]
/// A `std::hash::Hasher` that feeds SHA-256, to turn wasmtime's compatibility hash (a
/// `Hash` value) into stable bytes.
struct Sha256Hasher(Sha256);

#[cfg(feature = "jit")]
impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

impl Runtime {
    /// Build the engine and link WASI, `wasi:http` and the secret store, with the default
    /// limits and the cache directory of the environment ([`CachePolicy::FromEnvironment`]).
    ///
    /// A CLI call after the first skips compilation (~0.5 s in a debug build, ~0.2 s in release).
    pub fn new() -> anyhow::Result<Self> {
        Self::with_limits(SandboxLimits::default())
    }

    /// [`Runtime::new`] with explicit per-call limits.
    pub fn with_limits(limits: SandboxLimits) -> anyhow::Result<Self> {
        Self::with_options(limits, CachePolicy::FromEnvironment)
    }

    /// A runtime with explicit per-call limits and compilation cache.
    ///
    /// Errors: the engine or linker cannot be built (never for a cache problem: an unusable
    /// cache directory turns caching off with one warning).
    pub fn with_options(limits: SandboxLimits, cache: CachePolicy) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config())?;
        #[cfg(feature = "jit")]
        let cache = Self::open_cache(cache);
        #[cfg(not(feature = "jit"))]
        let _no_compiler_no_cache = cache;
        start_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        secret_store::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::soracom::krypton::uicc::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        Ok(Runtime {
            engine,
            linker,
            limits,
            #[cfg(feature = "jit")]
            cache,
        })
    }

    /// The cache of `policy`, or `None` (with one warning saying why) when its directory fails
    /// the checks of [`CachePolicy`].
    #[cfg(feature = "jit")]
    fn open_cache(policy: CachePolicy) -> Option<CompileCache> {
        let dir = match policy {
            CachePolicy::FromEnvironment => cache_dir(),
            CachePolicy::Directory(dir) => Some(dir),
            CachePolicy::Off => None,
        };
        dir.and_then(|dir| match CompileCache::open(&dir) {
            Ok(cache) => Some(cache),
            Err(why) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "compilation cache off: {why}. Components are compiled on every load. To \
                     cache, give a directory owned by this user with mode 0700 (mkdir -m 0700 \
                     DIR), not a symlink (KRYPTON_CACHE_DIR, or empty to turn this warning off)"
                );
                None
            }
        })
    }

    /// The cache directory in use, if caching is on.
    #[cfg(feature = "jit")]
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_ref().map(|c| c.path.as_path())
    }

    /// The cache directory in use: none in the gateway build, which compiles nothing.
    #[cfg(not(feature = "jit"))]
    pub fn cache_dir(&self) -> Option<&Path> {
        None
    }

    /// The engine, for [`crate::precompiled`] (deserializing a checked artifact).
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Link a compiled component against this host (WASI, `wasi:http`, the secret store, the
    /// SIM). Errors: it imports something this host does not offer, or does not export
    /// `soracom:krypton/provisioning`.
    pub(crate) fn link(&self, component: &Component) -> anyhow::Result<KryptonPre> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .context("linking the component against this host")?;
        KryptonPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export soracom:krypton/provisioning")
    }

    /// The cache entry name of a component (feature `jit`): `<SHA-256 of the component bytes>-<wasmtime
    /// version>-<SHA-256 of the engine's precompile compatibility hash>.cwasm`, all hex.
    #[cfg(feature = "jit")]
    pub fn cache_key(&self, bytes: &[u8]) -> String {
        let mut compat = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut compat);
        format!(
            "{}-{WASMTIME_VERSION}-{}.cwasm",
            lowercase_hex(&Sha256::digest(bytes)),
            lowercase_hex(&compat.0.finalize())
        )
    }

    /// Compile `bytes`, or load the cached compilation of exactly these bytes for this engine.
    /// An entry that is missing, truncated, corrupt or refused by wasmtime is compiled anew
    /// and rewritten.
    #[cfg(feature = "jit")]
    fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        let Some(cache) = &self.cache else {
            return Ok(Component::new(&self.engine, bytes)?);
        };
        let key = self.cache_key(bytes);
        if let Some(body) = cache.read(&key) {
            // SAFETY: wasmtime runs deserialized code unchecked, so the bytes must be what
            // `Component::serialize` (or `Engine::precompile_component`) produced with an engine
            // of this configuration. The entry's name carries the engine's precompile
            // compatibility hash and the wasmtime version (see `cache_key`), and `deserialize`
            // itself refuses bytes whose recorded wasmtime version or compilation settings differ
            // from this engine's. The entry was read through a
            // directory descriptor that was checked to be ours, mode 0700 and not a symlink, so
            // only this user (or root) can have written it; its SHA-256 matches, so it is
            // whole; and only `CompileCache::write` below writes entries, with what
            // `Component::serialize` produced for this key's bytes and engine.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize(&self.engine, &body) };
            match loaded {
                Ok(component) => {
                    tracing::debug!(entry = %key, "compiled component loaded from the cache");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::debug!(entry = %key, error = %e, "cache entry refused; compiling")
                }
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        match component.serialize() {
            Ok(body) => {
                if let Err(e) = cache.write(&key, &body) {
                    tracing::warn!(dir = %cache.path.display(), error = %e, "could not write the compilation cache entry");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not serialize the compiled component"),
        }
        Ok(component)
    }

    /// Compile `bytes` (a component) and check it links against this host.
    ///
    /// Errors: not a component, or it imports something this host does not offer; in the
    /// gateway build (no `jit` feature) always, with the way out: a precompiled component
    /// ([`crate::precompiled`]).
    #[cfg(not(feature = "jit"))]
    pub fn load(&self, bytes: &[u8]) -> anyhow::Result<KryptonPre> {
        anyhow::bail!("{}", crate::precompiled::gateway_refusal(bytes))
    }

    /// Compile `bytes` (a component) and check it links against this host.
    ///
    /// Errors: not a component, or it imports something this host does not offer.
    #[cfg(feature = "jit")]
    pub fn load(&self, bytes: &[u8]) -> anyhow::Result<KryptonPre> {
        // wasmtime would also take WebAssembly text and answer a stray file (a key, a config)
        // with a parser diagnostic that quotes its first line; a component file is binary and
        // starts with the `\0asm` magic (WebAssembly Core Specification §5.5.16).
        anyhow::ensure!(
            crate::precompiled::kind(bytes) != crate::precompiled::FileKind::Precompiled,
            "this is a precompiled component (`krypton-host compile`): it loads only with its \
             signature and a trusted key (`--component FILE.cwasm --trusted-public-key KEY`)"
        );
        anyhow::ensure!(
            bytes.starts_with(b"\0asm"),
            "not a WebAssembly component: the file does not start with the `\\0asm` magic \
             (build one with `cargo guest`)"
        );
        let component = self.compile(bytes).context("compiling the component")?;
        self.link(&component)
    }

    fn store(
        &self,
        policy: OutboundPolicy,
        secrets: SecretStore,
        uicc: UiccAccess,
    ) -> Store<HostState> {
        let trip = LimitTrip::default();
        // No env, no args, no preopens, no sockets; stderr carries the component's progress
        // lines into the host's log.
        let wasi = WasiCtx::builder()
            .stderr(wasmtime_wasi::cli::AsyncStdoutStream::new(
                GUEST_LOG_BUFFER_BYTES,
                GuestLog::new(trip.clone()),
            ))
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(crate::http::FIELDS_MEMORY_BYTES);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HOST_RESOURCES);
        let mut store = Store::new(
            &self.engine,
            HostState {
                wasi,
                http,
                table,
                outbound: OutboundCall::new(policy, trip.clone()),
                secrets,
                uicc,
                limiter: SandboxLimiter {
                    budget: self.limits.memory_bytes,
                    used: 0,
                    trip: trip.clone(),
                },
                cpu: CpuMeter {
                    in_wasm_since: None,
                    in_host_since: None,
                    used: Duration::ZERO,
                    budget: self.limits.cpu,
                },
                trip,
                store_writes: StoreWrites::default(),
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.call_hook(|mut ctx, hook| {
            let state = ctx.data_mut();
            match hook {
                CallHook::CallingWasm => state.cpu.enter(),
                CallHook::ReturningFromHost => {
                    state.cpu.return_from_host();
                    state.cpu.trip_if_over(&state.trip);
                    // A host call that broke a limit (a request, a log line, CPU spent by the
                    // host on its behalf) stops the call here, before the component runs again.
                    state.trip.trap()?;
                }
                CallHook::CallingHost => state.cpu.call_host(),
                CallHook::ReturningFromWasm => state.cpu.leave(),
            }
            Ok(())
        });
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.cpu.checkpoint();
            state.cpu.trip_if_over(&state.trip);
            if state.trip.get().is_some() {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store
    }

    /// A store for calls that need no network: the allow-list is empty.
    fn offline_store(&self, secrets: SecretStore) -> anyhow::Result<Store<HostState>> {
        Ok(self.store(
            OutboundPolicy::new(Vec::new(), None)?,
            secrets,
            UiccAccess::none(),
        ))
    }

    /// Run `call` on `store` within the wall-clock limit, and name the limit that stopped it.
    async fn guarded<R>(
        &self,
        store: &mut Store<HostState>,
        what: &str,
        call: impl AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> anyhow::Result<R> {
        let wall = self.limits.wall;
        let outcome = tokio::time::timeout(wall, call(store)).await;
        let state = store.data();
        let stopped =
            |limit: &str| format!("the component exceeded {limit} during {what}; it was stopped");
        match outcome {
            Err(_) => anyhow::bail!(
                "the component exceeded the wall-clock limit of {} s during {what}; it was stopped",
                wall.as_secs()
            ),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let e = anyhow::Error::from(e);
                if let Some(limit) = state.trip.get() {
                    return Err(e.context(stopped(limit)));
                }
                // Limits wasmtime enforces itself, named by its messages (wasmtime 48:
                // `Store::bump_resource_counts`, `ResourceTableError::Full`).
                let text = format!("{e:#}");
                let named = [
                    (
                        "instance count too high",
                        format!("its limit of {MAX_INSTANCES} instances"),
                    ),
                    (
                        "memory count too high",
                        format!("its limit of {MAX_MEMORIES} linear memories"),
                    ),
                    (
                        "table count too high",
                        format!("its limit of {MAX_TABLES} tables"),
                    ),
                    (
                        "resource table has no free keys",
                        format!("its limit of {MAX_HOST_RESOURCES} host resources"),
                    ),
                ];
                match named.iter().find(|(needle, _)| text.contains(needle)) {
                    Some((_, limit)) => Err(e.context(stopped(limit))),
                    None => Err(e.context(format!("the component trapped during {what}"))),
                }
            }
        }
    }

    /// Run `provision` in a fresh instance, without SIM access (network mode; a SIM-mode
    /// request fails with the `uicc` error `unavailable`).
    ///
    /// The outer error is a host or component failure (a trap, a link error); the inner one
    /// is the component's typed [`Failure`]: a [`ProvisionError`] and the component's advice.
    pub async fn provision(
        &self,
        pre: &KryptonPre,
        policy: OutboundPolicy,
        secrets: SecretStore,
        request: &ProvisionRequest,
    ) -> anyhow::Result<Result<ProvisionReport, Failure>> {
        self.provision_with_uicc(pre, policy, secrets, UiccAccess::none(), request)
            .await
    }

    /// [`Runtime::provision`] with SIM access: `uicc` answers the component's
    /// `soracom:krypton/uicc` calls (SIM-authenticated mode). Errors: as
    /// [`Runtime::provision`].
    pub async fn provision_with_uicc(
        &self,
        pre: &KryptonPre,
        policy: OutboundPolicy,
        secrets: SecretStore,
        uicc: UiccAccess,
        request: &ProvisionRequest,
    ) -> anyhow::Result<Result<ProvisionReport, Failure>> {
        let mut store = self.store(policy, secrets, uicc);
        self.guarded(&mut store, "provision", async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .soracom_krypton_provisioning()
                .call_provision(&mut *store, request)
                .await
        })
        .await
    }

    /// Run `status` in a fresh instance (no network: the allow-list is empty).
    pub async fn status(
        &self,
        pre: &KryptonPre,
        secrets: SecretStore,
        target: Target,
    ) -> anyhow::Result<Result<Option<ProvisionReport>, Failure>> {
        let mut store = self.offline_store(secrets)?;
        self.guarded(&mut store, "status", async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .soracom_krypton_provisioning()
                .call_status(&mut *store, target)
                .await
        })
        .await
    }

    /// Render the stored `arc` bundle as a `wg-quick` configuration that routes
    /// `krypton_addresses` through the tunnel (no network).
    pub async fn wireguard_config(
        &self,
        pre: &KryptonPre,
        secrets: SecretStore,
        krypton_addresses: &[String],
    ) -> anyhow::Result<Result<String, Failure>> {
        let mut store = self.offline_store(secrets)?;
        self.guarded(&mut store, "wireguard-config", async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .soracom_krypton_provisioning()
                .call_wireguard_config(&mut *store, krypton_addresses)
                .await
        })
        .await
    }

    /// Render the stored bundle of `target` as export files (no network).
    pub async fn render_export(
        &self,
        pre: &KryptonPre,
        secrets: SecretStore,
        target: Target,
        format: &str,
        directory: &str,
        krypton_addresses: &[String],
    ) -> anyhow::Result<Result<Vec<ExportFile>, Failure>> {
        let mut store = self.offline_store(secrets)?;
        self.guarded(&mut store, "render-export", async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .soracom_krypton_provisioning()
                .call_render_export(&mut *store, target, format, directory, krypton_addresses)
                .await
        })
        .await
    }

    /// The targets the component implements, in the order of the contract's `target` enum:
    /// each with its name (also its bundle's name), whether a call mints new credentials, its
    /// export formats and its required request parameters. The host keeps no list of its own.
    /// Errors: the call traps or hits a sandbox limit.
    pub async fn targets(&self, pre: &KryptonPre) -> anyhow::Result<Vec<TargetInfo>> {
        // `targets` touches no bundle; give it an empty throwaway store.
        let scratch = tempfile::tempdir()?;
        let mut store = self.offline_store(SecretStore::open(scratch.path().join("store"))?)?;
        self.guarded(&mut store, "targets", async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .soracom_krypton_provisioning()
                .call_targets(&mut *store)
                .await
        })
        .await
    }

    /// One call that touches no bundle and no network (`what` names it in errors), in a fresh
    /// instance with an empty throwaway store.
    async fn offline_call<R>(
        &self,
        pre: &KryptonPre,
        what: &str,
        call: impl AsyncFnOnce(
            &bindings::exports::soracom::krypton::provisioning::Guest,
            &mut Store<HostState>,
        ) -> wasmtime::Result<R>,
    ) -> anyhow::Result<R> {
        let scratch = tempfile::tempdir()?;
        let mut store = self.offline_store(SecretStore::open(scratch.path().join("store"))?)?;
        self.guarded(&mut store, what, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            call(instance.soracom_krypton_provisioning(), store).await
        })
        .await
    }

    /// The component's default endpoints (`default-endpoints()`: each mode's base URL, per
    /// coverage) and export formats (`export-formats()`), unchecked: see
    /// [`crate::lifecycle::component_facts`]. Errors: a call traps or hits a sandbox limit.
    pub async fn facts(
        &self,
        pre: &KryptonPre,
    ) -> anyhow::Result<(Vec<DefaultEndpoint>, Vec<ExportFormat>)> {
        self.offline_call(
            pre,
            "default-endpoints and export-formats",
            async |p, store| {
                let endpoints = p.call_default_endpoints(&mut *store).await?;
                let formats = p.call_export_formats(&mut *store).await?;
                Ok((endpoints, formats))
            },
        )
        .await
    }

    /// The routed entries of soratun's `arc.json` (`text`), as the component reads them
    /// (`soratun-routes`). The outer error is a trap or a sandbox limit; the inner one the
    /// component's (`invalid-request` for a text that is not such a file).
    pub async fn soratun_routes(
        &self,
        pre: &KryptonPre,
        text: &str,
    ) -> anyhow::Result<Result<Vec<RouteEntry>, Failure>> {
        self.offline_call(pre, "soratun-routes", async |p, store| {
            p.call_soratun_routes(&mut *store, text).await
        })
        .await
    }

    /// The change to soratun's configuration that routes `routes` (CIDRs) through the tunnel,
    /// in the component's words (`soratun-route-fix`). Errors: a trap or a sandbox limit.
    pub async fn soratun_route_fix(
        &self,
        pre: &KryptonPre,
        routes: &[String],
    ) -> anyhow::Result<String> {
        self.offline_call(pre, "soratun-route-fix", async |p, store| {
            p.call_soratun_route_fix(&mut *store, routes).await
        })
        .await
    }

    /// The component's `(version, contract version)`, e.g. `("0.5.0",
    /// "soracom:krypton@0.5.0")`.
    pub async fn version(&self, pre: &KryptonPre) -> anyhow::Result<(String, String)> {
        // `version` touches no bundle; give it an empty throwaway store.
        let scratch = tempfile::tempdir()?;
        let mut store = self.offline_store(SecretStore::open(scratch.path().join("store"))?)?;
        self.guarded(&mut store, "version", async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .soracom_krypton_provisioning()
                .call_version(&mut *store)
                .await
        })
        .await
    }
}

#[cfg(all(test, feature = "jit"))]
mod tests {
    use super::*;

    #[test]
    fn the_wasmtime_version_in_cache_keys_is_the_one_built() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        assert!(
            lock.contains(&format!(
                "name = \"wasmtime\"\nversion = \"{WASMTIME_VERSION}\"\n"
            )),
            "update WASMTIME_VERSION to the wasmtime version in Cargo.lock"
        );
    }

    /// Instantiate a component (WAT text) in a call's store, under the runtime's limits,
    /// without calling it.
    async fn instantiate(rt: &Runtime, wat: &str) -> anyhow::Result<()> {
        let component = Component::new(&rt.engine, wat)?;
        let scratch = tempfile::tempdir()?;
        let mut store = rt.offline_store(SecretStore::open(scratch.path().join("store"))?)?;
        rt.guarded(&mut store, "instantiate", async |store| {
            rt.linker
                .instantiate_async(&mut *store, &component)
                .await
                .map(|_| ())
        })
        .await
    }

    fn repeat(text: &str, n: usize) -> String {
        text.repeat(n)
    }

    /// Limits a Rust component cannot reach (it has one memory, a fixed number of instances
    /// and tables): hand-written components, in the same stores the runtime gives each call.
    /// After each refusal the same runtime serves the real component.
    #[tokio::test]
    async fn memories_tables_and_instances_add_up_and_are_capped() {
        let rt = Runtime::with_options(
            SandboxLimits {
                memory_bytes: 32 * 1024 * 1024,
                cpu: Duration::from_secs(5),
                wall: Duration::from_secs(20),
            },
            CachePolicy::Off,
        )
        .unwrap();
        let good = rt.load(DEFAULT_COMPONENT).unwrap();
        let cases = [
            // Two memories of 20 MiB (320 pages of 64 KiB): each under the 32 MiB budget, not
            // both together.
            (
                "(component (core module $m (memory 320) (memory 320)) (core instance (instantiate $m)))"
                    .to_string(),
                "exceeded its memory limit of 32 MiB (all linear memories and tables of the call together)",
            ),
            // One table of 2.5M elements (20 MB at 8 bytes an element).
            (
                "(component (core module $m (memory 320) (table 2500000 funcref)) (core instance (instantiate $m)))"
                    .to_string(),
                "exceeded its table limit of 100000 elements per table",
            ),
            // Five one-element tables: nothing to speak of in bytes, too many in number.
            (
                format!(
                    "(component (core module $m {}) (core instance (instantiate $m)))",
                    repeat("(table 1 funcref)", 5)
                ),
                "exceeded its limit of 4 tables",
            ),
            (
                "(component (core module $m (memory 1) (memory 1) (memory 1)) (core instance (instantiate $m)))"
                    .to_string(),
                "exceeded its limit of 2 linear memories",
            ),
            (
                format!(
                    "(component (core module $m) {})",
                    repeat("(core instance (instantiate $m))", 9)
                ),
                "exceeded its limit of 8 instances",
            ),
        ];
        for (wat, expected) in cases {
            let err = format!("{:#}", instantiate(&rt, &wat).await.unwrap_err());
            assert!(err.contains(expected), "{wat}: {err}");
            assert!(err.contains("during instantiate; it was stopped"), "{err}");
            assert_eq!(
                rt.version(&good).await.unwrap().1,
                crate::lifecycle::CONTRACT
            );
        }
        // Within every cap: a 20 MiB memory, two tables of 90,000 elements, 8 instances.
        instantiate(
            &rt,
            &format!(
                "(component (core module $m (memory 320) (table 90000 funcref) (table 90000 funcref)) \
                 (core instance (instantiate $m)) (core module $e) {})",
                repeat("(core instance (instantiate $e))", 7)
            ),
        )
        .await
        .unwrap();
    }

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
