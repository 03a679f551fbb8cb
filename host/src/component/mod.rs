//! The component: what a component file is ([`precompiled`]: `.wasm` or a signed `.cwasm`,
//! made by `krypton-host compile`), the one loader that reads, checks, links and self-checks
//! it for the command line and the daemon alike ([`load`], with a typed [`LoadError`]), its
//! targets by name ([`targets`]), its default endpoints and export formats ([`facts`]), and its life on a gateway: hot swap, probation, roll back
//! ([`lifecycle`]).
//!
//! This layer sits on the engine ([`crate::engine`]) and the signatures
//! ([`crate::signing`]); nothing below it imports it.
//!
//! # The loader's checks
//!
//! In this order, cheapest and safest first, so untrusted bytes are never compiled when a
//! signature is required:
//!
//! | check | refused when | [`LoadErrorKind`] |
//! | --- | --- | --- |
//! | a component given | none given and the build has no built-in one (the gateway build) | `Usage` |
//! | read | not a regular file, larger than [`MAX_COMPONENT_BYTES`], a `.wasm` in the gateway build | `Refused` |
//! | signature (with a trusted key) | no `.sig`, other bytes, bad signature, old form | `Refused` (see [`crate::signing`]) |
//! | a precompiled component (`.cwasm`) | no trusted key, or any check of [`precompiled`] (signature, target, wasmtime version) | `Refused` |
//! | version floor (with a state directory), signed version | lower than the highest accepted | `Refused` |
//! | compile (or deserialize) and link | not a component, imports this host does not offer | `Failed` |
//! | self-check (`version`, then `targets`, then `default-endpoints` and `export-formats`) | traps, another contract, a version other than the signed one, answers the host cannot serve ([`Targets::checked`], [`facts::Facts::checked`]) | `Failed` |
//! | version floor, reported version (no trusted key) | lower than the highest accepted | `Refused` |
//!
//! Every row fails closed. The built-in component (embedded in the binary, feature `jit`) is
//! trusted as part of the binary: it needs no signature and is not held to the version floor.

pub mod facts;
pub mod lifecycle;
mod loader;
pub mod precompiled;
pub mod targets;

pub use lifecycle::{Lifecycle, PROBATION_CALLS, ReloadOutcome};
pub use loader::{
    CONTRACT, ComponentPolicy, LoadError, LoadErrorKind, Loaded, MAX_COMPONENT_BYTES, check_file,
    component_facts, list_targets, load, read, self_check,
};
pub use targets::Targets;

/// The embedded default component, built from `guest/` by `host/build.rs` (feature `jit`: a
/// `.wasm` needs the compiler; the gateway build embeds none).
#[cfg(feature = "jit")]
pub const DEFAULT_COMPONENT: &[u8] = include_bytes!(env!("KRYPTON_GUEST_WASM_PATH"));
