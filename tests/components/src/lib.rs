//! Test-only components, built by this crate's build script.

/// Path of the hostile component (see `tests/components/hostile`).
pub const HOSTILE_WASM: &str = env!("KRYPTON_HOSTILE_WASM");
