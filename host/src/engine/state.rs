//! The store data of one call ([`HostState`]): each capability's context side by side, the
//! WASI context and resource table they share, and the sandbox's parts. The engine builds one
//! per call ([`new_store`]) and drops it with the call; nothing outlives a call but what the
//! capabilities write (bundles in the secret store).

use crate::capability::http::{HttpCtx, OutboundPolicy};
use crate::capability::store::{SecretStore, StoreCtx};
use crate::capability::uicc::{UiccAccess, UiccCtx};
use crate::sandbox::{
    CpuMeter, GUEST_LOG_BUFFER_BYTES, GuestLog, LimitTrip, MAX_HOST_RESOURCES, SandboxLimiter,
    SandboxLimits,
};
use wasmtime::component::ResourceTable;
use wasmtime::{CallHook, Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

/// Per-call state: the WASI context and resource table, each capability's context
/// (`wasi:http`, the secret store, the SIM), and the sandbox's limiter, CPU meter and trip.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) http: HttpCtx,
    pub(crate) store: StoreCtx,
    pub(crate) uicc: UiccCtx,
    limiter: SandboxLimiter,
    cpu: CpuMeter,
    pub(crate) trip: LimitTrip,
}

/// Largest `wasi:random` request, bytes (wasmtime's default is 64 MiB: a host-side allocation
/// and CPU the component would not pay for). The component asks for 8 bytes at a time.
pub const MAX_RANDOM_BYTES: u64 = 4096;

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
        self.http.view(&mut self.table)
    }
}

/// A fresh store for one call on `engine`, under `limits`: no environment, arguments,
/// preopened directories or sockets; stderr carries the component's progress lines into the
/// host's log (bounded, [`GuestLog`]); the capabilities get `policy`, `secrets` and `uicc`; the
/// limiter, the CPU meter (call hooks and epoch callbacks) and the trip are installed.
pub(crate) fn new_store(
    engine: &Engine,
    limits: &SandboxLimits,
    policy: OutboundPolicy,
    secrets: SecretStore,
    uicc: UiccAccess,
) -> Store<HostState> {
    let trip = LimitTrip::default();
    let wasi = WasiCtx::builder()
        .stderr(wasmtime_wasi::cli::AsyncStdoutStream::new(
            GUEST_LOG_BUFFER_BYTES,
            GuestLog::new(trip.clone()),
        ))
        .max_random_size(MAX_RANDOM_BYTES)
        .build();
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HOST_RESOURCES);
    let mut store = Store::new(
        engine,
        HostState {
            wasi,
            table,
            http: HttpCtx::new(policy, trip.clone()),
            store: StoreCtx::new(secrets, trip.clone()),
            uicc: UiccCtx::new(uicc, limits.wall),
            limiter: SandboxLimiter::new(limits.memory_bytes, trip.clone()),
            cpu: CpuMeter::new(limits.cpu),
            trip,
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
