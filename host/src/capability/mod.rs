//! The capabilities the host grants a component, one module each, in the manner of
//! `wasmtime-wasi-http` and Spin's factors: each owns its per-call context (`*Ctx`), implements
//! its import's `Host` trait on it, and has an `add_to_linker` that the engine calls with a
//! projection out of its store data. A capability knows nothing of the engine or of the other
//! capabilities; it reads only [`crate::bindings`], [`crate::sandbox`] (the call's limit trip)
//! and [`crate::files`].
//!
//! | capability | import | what the embedder gives | per call |
//! | --- | --- | --- | --- |
//! | [`http`] | `wasi:http/outgoing-handler@0.2.12` | an [`http::OutboundPolicy`]: allow-listed origins, TLS roots plus a CA file | [`http::HttpCtx`]: request budget, header caps, timeouts |
//! | [`store`] | `soracom:krypton/secret-store` | a [`store::SecretStore`]: a private directory | [`store::StoreCtx`]: write budget |
//! | [`uicc`] | `soracom:krypton/uicc` | a [`uicc::UiccAccess`]: none, or a modem, reader or software SIM | [`uicc::UiccCtx`] |
//!
//! WASI's clocks, random and stdio come from `wasmtime-wasi` directly (the engine's store
//! state), with no directory, environment or socket granted.

pub mod http;
pub mod store;
pub mod uicc;
