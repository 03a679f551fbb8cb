//! The engine: one wasmtime [`Engine`] and [`Linker`] per process, a fresh [`Store`] per call.
//!
//! The linker offers the component exactly what `wit/krypton.wit` imports, each import added by
//! the capability that owns it: WASI 0.2.12 from `wasmtime-wasi` (clocks, random, stdio; no
//! preopened directories, no environment, no sockets granted), `wasi:http@0.2.12`
//! ([`crate::capability::http`], our [`OutboundPolicy`] as the sender),
//! `soracom:krypton/secret-store` ([`crate::capability::store`]) and `soracom:krypton/uicc`
//! ([`crate::capability::uicc`], none unless the caller grants SIM access). Each call gets its
//! own store ([`state`]) under the limits of [`crate::sandbox`], so one call cannot see
//! another's state and a misbehaving component cannot grow without bound. Every export is called
//! through one generic typed call ([`Runtime::call`]) under the wall-clock limit. Compiled
//! components are cached only in a directory nobody else can write ([`CachePolicy`]).
//!
//! With the `jit` feature (the full build) the runtime compiles components with Cranelift. The
//! gateway build has no compiler: it runs signed precompiled components only
//! ([`crate::component::precompiled`]), and [`Runtime::load`] refuses a `.wasm` there with the
//! way out ([`kind::gateway_refusal`]). Both builds configure their engines with
//! [`engine_config`], so a component precompiled by one loads in the other.

mod cache;
pub mod kind;
pub mod state;

#[cfg(feature = "jit")]
use cache::CompileCache;
pub use cache::{
    CachePolicy, MAX_CACHE_BYTES, MAX_CACHE_ENTRIES, MAX_CACHE_ENTRY_BYTES, STALE_CACHE_TEMP,
    WASMTIME_VERSION, cache_dir,
};
pub use state::{HostState, MAX_RANDOM_BYTES};

use crate::bindings::{
    self, DefaultEndpoint, ExportFile, ExportFormat, Failure, ProvisionReport, ProvisionRequest,
    RouteEntry, Target, TargetInfo,
};
use crate::capability::http::OutboundPolicy;
use crate::capability::store::SecretStore;
use crate::capability::uicc::UiccAccess;
use crate::sandbox::{
    EPOCH_TICK, MAX_HOST_RESOURCES, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES, SandboxLimits,
};
use anyhow::Context as _;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

/// A component compiled and linked against this host, ready to instantiate once per call.
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
/// ([`crate::component::precompiled::precompile`]) starts from this same configuration.
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

/// A call stopped by the wall-clock limit (`0`: the message). Host calls (a slow modem, the
/// network) and a loaded machine spend that time too, so it proves nothing about the component
/// on its own: a caller deciding whether to try the same component again finds it with
/// `downcast_ref::<WallClockLimit>()` on the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WallClockLimit(pub String);
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
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        crate::capability::http::add_to_linker(&mut linker)?;
        crate::capability::store::add_to_linker(&mut linker, |s| &mut s.store)?;
        crate::capability::uicc::add_to_linker(&mut linker, |s| &mut s.uicc)?;
        Ok(Runtime {
            engine,
            linker,
            limits,
            #[cfg(feature = "jit")]
            cache,
        })
    }

    /// The engine, for [`crate::component::precompiled`] (deserializing a checked artifact).
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

    /// Compile `bytes` (a component) and check it links against this host.
    ///
    /// Errors: not a component, or it imports something this host does not offer; in the
    /// gateway build (no `jit` feature) always, with the way out: a precompiled component
    /// ([`crate::component::precompiled`]).
    #[cfg(not(feature = "jit"))]
    pub fn load(&self, bytes: &[u8]) -> anyhow::Result<KryptonPre> {
        anyhow::bail!("{}", kind::gateway_refusal(bytes))
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
            kind::kind(bytes) != kind::FileKind::Precompiled,
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

    /// A store for calls that need no network: the allow-list is empty.
    fn offline_store(&self, secrets: SecretStore) -> anyhow::Result<Store<HostState>> {
        Ok(self.store(
            OutboundPolicy::new(Vec::new(), None)?,
            secrets,
            UiccAccess::none(),
        ))
    }

    /// A fresh store for one call under this runtime's limits.
    fn store(
        &self,
        policy: OutboundPolicy,
        secrets: SecretStore,
        uicc: UiccAccess,
    ) -> Store<HostState> {
        state::new_store(&self.engine, &self.limits, policy, secrets, uicc)
    }

    /// A store for a call that touches no bundle (`targets`, `version`): no network, and an
    /// empty throwaway secret store, removed with the returned directory.
    fn scratch_store(&self) -> anyhow::Result<(Store<HostState>, tempfile::TempDir)> {
        let scratch = tempfile::tempdir()?;
        let store = self.offline_store(SecretStore::open(scratch.path().join("store"))?)?;
        Ok((store, scratch))
    }

    /// The one typed call into the component: instantiate `pre` in `store`, run `call` on the
    /// instance's bindings ([`bindings::Krypton`]), all within the wall-clock limit, and name
    /// the limit that stopped it (see `guarded`). Every public call below is this with its
    /// store and its export.
    ///
    /// Errors: the instantiation or the call traps, or a sandbox limit stops it.
    pub async fn call<R>(
        &self,
        pre: &KryptonPre,
        store: &mut Store<HostState>,
        what: &str,
        call: impl AsyncFnOnce(&bindings::Krypton, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> anyhow::Result<R> {
        self.guarded(store, what, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            call(&instance, store).await
        })
        .await
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
            // A SIM call still waiting on its device: the environment's failure.
            Err(_) if let Some(stuck) = state.uicc.stuck() => Err(anyhow::Error::new(stuck)
                .context(format!(
                    "the wall-clock limit of {} s stopped {what} while the SIM was busy",
                    wall.as_secs()
                ))),
            Err(_) => Err(anyhow::Error::new(WallClockLimit(format!(
                "the component exceeded the wall-clock limit of {} s during {what}; it was stopped",
                wall.as_secs()
            )))),
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
        // SIM calls end by the request's deadline (and before the wall-clock limit).
        store
            .data_mut()
            .uicc
            .limit_to(std::time::Duration::from_millis(request.deadline_ms.into()));
        self.call(pre, &mut store, "provision", async |k, store| {
            k.soracom_krypton_provisioning()
                .call_provision(store, request)
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
        self.call(pre, &mut store, "status", async |k, store| {
            k.soracom_krypton_provisioning()
                .call_status(store, target)
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
        self.call(pre, &mut store, "wireguard-config", async |k, store| {
            k.soracom_krypton_provisioning()
                .call_wireguard_config(store, krypton_addresses)
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
        self.call(pre, &mut store, "render-export", async |k, store| {
            k.soracom_krypton_provisioning()
                .call_render_export(store, target, format, directory, krypton_addresses)
                .await
        })
        .await
    }

    /// The targets the component implements, in the order of the contract's `target` enum:
    /// each with its name (also its bundle's name), whether a call mints new credentials, its
    /// export formats and its required request parameters. The host keeps no list of its own.
    /// Errors: the call traps or hits a sandbox limit.
    pub async fn targets(&self, pre: &KryptonPre) -> anyhow::Result<Vec<TargetInfo>> {
        let (mut store, _scratch) = self.scratch_store()?;
        self.call(pre, &mut store, "targets", async |k, store| {
            k.soracom_krypton_provisioning().call_targets(store).await
        })
        .await
    }

    /// The component's default endpoints (`default-endpoints()`: each mode's base URL, per
    /// coverage) and export formats (`export-formats()`), unchecked: see
    /// [`crate::component::component_facts`]. Errors: a call traps or hits a sandbox limit.
    pub async fn facts(
        &self,
        pre: &KryptonPre,
    ) -> anyhow::Result<(Vec<DefaultEndpoint>, Vec<ExportFormat>)> {
        let (mut store, _scratch) = self.scratch_store()?;
        self.call(
            pre,
            &mut store,
            "default-endpoints and export-formats",
            async |k, store| {
                let p = k.soracom_krypton_provisioning();
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
        let (mut store, _scratch) = self.scratch_store()?;
        self.call(pre, &mut store, "soratun-routes", async |k, store| {
            k.soracom_krypton_provisioning()
                .call_soratun_routes(store, text)
                .await
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
        let (mut store, _scratch) = self.scratch_store()?;
        self.call(pre, &mut store, "soratun-route-fix", async |k, store| {
            k.soracom_krypton_provisioning()
                .call_soratun_route_fix(store, routes)
                .await
        })
        .await
    }

    /// The component's `(version, contract version)`, e.g. `("0.6.0",
    /// "soracom:krypton@0.6.0")`.
    pub async fn version(&self, pre: &KryptonPre) -> anyhow::Result<(String, String)> {
        let (mut store, _scratch) = self.scratch_store()?;
        self.call(pre, &mut store, "version", async |k, store| {
            k.soracom_krypton_provisioning().call_version(store).await
        })
        .await
    }
}

#[cfg(all(test, feature = "jit"))]
mod tests {
    use super::*;
    use crate::component::DEFAULT_COMPONENT;
    use std::time::Duration;

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
                crate::component::CONTRACT
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
}
