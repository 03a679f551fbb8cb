//! `krypton-host`: the wasmtime host for the SORACOM Krypton provisioning component.
//!
//! The host grants capabilities and manages the component's life; it never parses a Krypton
//! response (that is the component's job, see `guest/`).
//! * [`runtime`]: engine, linker, per-call store with limits, calls into the component;
//! * [`http`]: outbound HTTP policy (allow-list, TLS roots, timeouts);
//! * [`store`]: the on-disk secret store (atomic bundle replacement, 0700/0600);
//! * [`output`]: reports, errors and exit codes for the CLI;
//! * [`doctor`]: checks the route to Krypton (the SORACOM Arc `AllowedIPs` trap);
//! * [`files`]: files read from user paths, the atomic private-file writer, locks.

pub mod daemon;
pub mod doctor;
pub mod files;
pub mod http;
pub mod lifecycle;
pub mod output;
pub mod runtime;
pub mod signing;
pub mod store;
