//! The wasmtime side: one [`Engine`] and [`Linker`] per process, a fresh [`Store`] per call.
//!
//! The linker offers the component exactly what `wit/krypton.wit` imports: WASI 0.2.12 from
//! `wasmtime-wasi` (clocks, random, stdio; no preopened directories, no environment, no
//! sockets granted), `wasi:http@0.2.12` from `wasmtime-wasi-http` with our
//! [`OutboundPolicy`] as the sender, and `soracom:krypton/secret-store` backed by
//! [`SecretStore`]. Each call gets its own store with a memory cap, so one call cannot see
//! another's state and a misbehaving component cannot grow without bound.

use crate::http::OutboundPolicy;
use crate::store::{SecretStore, StoreError as DiskStoreError};
use anyhow::Context as _;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{CallHook, Config, Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Host bindings generated from `wit/krypton.wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "soracom:krypton/krypton",
        exports: { default: async },
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
    AuthMode, CertificateSummary, ExportFile, HttpTimeouts, ProvisionError, ProvisionReport,
    ProvisionRequest, RetryPolicy, Target,
};

/// The component's stderr, turned into `tracing` events (target `component`), one per line.
///
/// Lines are cut at [`GUEST_LOG_LINE_BYTES`] and a call may log at most
/// [`GUEST_LOG_BUDGET_BYTES`]; past that, output is dropped with one warning, so a component
/// that floods stderr cannot flood the gateway's journal.
struct GuestLog {
    line: Vec<u8>,
    logged: usize,
    muted: bool,
}

/// Longest component log line kept, bytes.
pub const GUEST_LOG_LINE_BYTES: usize = 4096;
/// Most component log output per call, bytes.
pub const GUEST_LOG_BUDGET_BYTES: usize = 256 * 1024;

impl GuestLog {
    fn new() -> Self {
        GuestLog {
            line: Vec::new(),
            logged: 0,
            muted: false,
        }
    }

    fn emit(&mut self) {
        if self.muted {
            self.line.clear();
            return;
        }
        self.logged += self.line.len();
        if self.logged > GUEST_LOG_BUDGET_BYTES {
            self.muted = true;
            tracing::warn!(target: "component", "component log budget of {GUEST_LOG_BUDGET_BYTES} bytes used up; dropping the rest of this call's output");
        } else {
            let text = String::from_utf8_lossy(&self.line);
            tracing::info!(target: "component", "{text}");
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

/// Most linear memory one call may use, bytes. The component needs ~2 MiB.
pub const MEMORY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// How often the engine's epoch advances; the granularity of the CPU deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-call limits of the sandbox.
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// Linear memory cap, bytes; growing past it traps.
    pub memory_bytes: usize,
    /// Time the component may spend executing its own code (time inside host calls such as
    /// HTTP or sleeps does not count), measured with epoch interruption and call hooks.
    pub cpu: Duration,
    /// Time a whole call may take, host calls included.
    pub wall: Duration,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes: MEMORY_LIMIT_BYTES,
            cpu: Duration::from_secs(10),
            wall: Duration::from_secs(15 * 60),
        }
    }
}

/// Time the component spent in its own code, from call hooks: everything since the start
/// minus the time inside host functions.
struct CpuMeter {
    started: Instant,
    in_host_since: Option<Instant>,
    in_host: Duration,
    budget: Duration,
    exceeded: bool,
}

impl CpuMeter {
    fn wasm_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.in_host)
    }
}

/// The embedded default component, built from `guest/` by `host/build.rs`.
pub const DEFAULT_COMPONENT: &[u8] = include_bytes!(env!("KRYPTON_GUEST_WASM_PATH"));

/// Per-call state: WASI contexts, the outbound policy, the secret store and limits.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    policy: OutboundPolicy,
    secrets: SecretStore,
    limits: StoreLimits,
    cpu: CpuMeter,
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
            hooks: &mut self.policy,
        }
    }
}

impl secret_store::Host for HostState {
    fn get(&mut self, name: String) -> Result<Option<Vec<u8>>, secret_store::StoreError> {
        self.secrets.get(&name).map_err(to_wit_store_error)
    }

    fn put(&mut self, name: String, value: Vec<u8>) -> Result<(), secret_store::StoreError> {
        self.secrets
            .put(&name, &value)
            .map_err(to_wit_store_error)?;
        tracing::info!(bundle = %name, bytes = value.len(), dir = %self.secrets.dir().display(), "bundle stored");
        Ok(())
    }

    fn delete(&mut self, name: String) -> Result<bool, secret_store::StoreError> {
        self.secrets.delete(&name).map_err(to_wit_store_error)
    }
}

impl bindings::soracom::krypton::types::Host for HostState {}

fn to_wit_store_error(e: DiskStoreError) -> secret_store::StoreError {
    match e {
        DiskStoreError::InvalidName(n) => secret_store::StoreError::InvalidName(n),
        DiskStoreError::TooLarge(n) => secret_store::StoreError::TooLarge(n),
        DiskStoreError::Io(m) => secret_store::StoreError::Io(m),
    }
}

/// Where compiled components are cached: `$KRYPTON_CACHE_DIR` (empty: no cache), else
/// `$XDG_CACHE_HOME/krypton-host`, else `$HOME/.cache/krypton-host`.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("KRYPTON_CACHE_DIR") {
        return (!dir.is_empty()).then(|| dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    Some(base.join("krypton-host"))
}

/// A compiled component, linked and ready to instantiate (cheap to clone).
pub type KryptonPre = bindings::KryptonPre<HostState>;

/// The engine and linker, built once and shared by every component version and call.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: SandboxLimits,
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

impl Runtime {
    /// Build the engine and link WASI, `wasi:http` and the secret store.
    ///
    /// Compiled components are cached on disk (wasmtime's cache, keyed by the component's
    /// bytes, the engine configuration and the wasmtime version) in [`cache_dir`], so a CLI
    /// call after the first skips compilation (~0.5 s in a debug build, ~0.2 s in release).
    pub fn new() -> anyhow::Result<Self> {
        Self::with_limits(SandboxLimits::default())
    }

    /// [`Runtime::new`] with explicit per-call limits.
    pub fn with_limits(limits: SandboxLimits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        if let Some(dir) = cache_dir() {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(&dir);
            match wasmtime::Cache::new(cache) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "compilation cache disabled")
                }
            }
        }
        let engine = Engine::new(&config)?;
        start_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        secret_store::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        Ok(Runtime {
            engine,
            linker,
            limits,
        })
    }

    /// Compile `bytes` (a component) and check it links against this host.
    ///
    /// Errors: not a component, or it imports something this host does not offer.
    pub fn load(&self, bytes: &[u8]) -> anyhow::Result<KryptonPre> {
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .context("compiling the component")?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("linking the component against this host")?;
        KryptonPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export soracom:krypton/provisioning")
    }

    fn store(&self, policy: OutboundPolicy, secrets: SecretStore) -> Store<HostState> {
        // No env, no args, no preopens, no sockets; stderr carries the component's progress
        // lines into the host's log.
        let wasi = WasiCtx::builder()
            .stderr(wasmtime_wasi::cli::AsyncStdoutStream::new(
                8192,
                GuestLog::new(),
            ))
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState {
                wasi,
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                policy,
                secrets,
                limits: StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes)
                    .instances(8)
                    .trap_on_grow_failure(true)
                    .build(),
                cpu: CpuMeter {
                    started: Instant::now(),
                    in_host_since: None,
                    in_host: Duration::ZERO,
                    budget: self.limits.cpu,
                    exceeded: false,
                },
            },
        );
        store.limiter(|s| &mut s.limits);
        store.call_hook(|mut ctx, hook| {
            let cpu = &mut ctx.data_mut().cpu;
            match hook {
                CallHook::CallingHost => cpu.in_host_since = Some(Instant::now()),
                CallHook::ReturningFromHost => {
                    if let Some(since) = cpu.in_host_since.take() {
                        cpu.in_host += since.elapsed();
                    }
                }
                CallHook::CallingWasm | CallHook::ReturningFromWasm => {}
            }
            Ok(())
        });
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let cpu = &mut ctx.data_mut().cpu;
            if cpu.wasm_time() > cpu.budget {
                cpu.exceeded = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store
    }

    /// A store for calls that need no network: the allow-list is empty.
    fn offline_store(&self, secrets: SecretStore) -> anyhow::Result<Store<HostState>> {
        Ok(self.store(OutboundPolicy::new(Vec::new(), None)?, secrets))
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
        let cpu = &store.data().cpu;
        match outcome {
            Err(_) => anyhow::bail!(
                "the component exceeded the wall-clock limit of {} s during {what}; it was stopped",
                wall.as_secs()
            ),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if cpu.exceeded => Err(anyhow::Error::from(e).context(format!(
                "the component exceeded its CPU limit of {} ms during {what}; it was stopped",
                cpu.budget.as_millis()
            ))),
            Ok(Err(e)) => {
                let e = anyhow::Error::from(e);
                let text = format!("{e:#}");
                // StoreLimits with trap_on_grow_failure: wasmtime's message for the refused grow.
                if text.contains("forcing trap when growing memory") {
                    Err(e.context(format!(
                        "the component exceeded its memory limit of {} MiB during {what}; it was stopped",
                        self.limits.memory_bytes / (1024 * 1024)
                    )))
                } else {
                    Err(e.context(format!("the component trapped during {what}")))
                }
            }
        }
    }

    /// Run `provision` in a fresh instance.
    ///
    /// The outer error is a host or component failure (a trap, a link error); the inner one
    /// is the component's typed [`ProvisionError`].
    pub async fn provision(
        &self,
        pre: &KryptonPre,
        policy: OutboundPolicy,
        secrets: SecretStore,
        request: &ProvisionRequest,
    ) -> anyhow::Result<Result<ProvisionReport, ProvisionError>> {
        let mut store = self.store(policy, secrets);
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
    ) -> anyhow::Result<Result<Option<ProvisionReport>, ProvisionError>> {
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
    ) -> anyhow::Result<Result<String, ProvisionError>> {
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
    ) -> anyhow::Result<Result<Vec<ExportFile>, ProvisionError>> {
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

    /// The component's `(version, contract version)`.
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
