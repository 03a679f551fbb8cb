//! # krypton-host-cli
//!
//! The `krypton-host` command for gateways, over the [`krypton_host`] library: the commands
//! ([`commands`], one file each), the daemon that renews credentials and hot-swaps the component
//! ([`daemon`]), the OCI registry client and follower ([`registry`], feature `registry`), the
//! route diagnosis ([`doctor`]) and the text and `--json` output with the exit-code table
//! ([`output`]).
//!
//! The library crate grants capabilities and runs the component; everything an operator types,
//! reads or configures lives here. The binary (`src/main.rs`) only parses the command line and
//! dispatches. This crate is a library as well so that the end-to-end tests and the fuzz targets
//! can drive its parsers (the daemon's configuration, a registry reference, a tunnel file)
//! without a process.
//!
//! Features: `cli` (the default, the full build: the compiler, the registry, the mock Krypton of
//! `mock` and `demo`) and `gateway` (no compiler: signed precompiled components only).

pub mod commands;
pub mod daemon;
pub mod doctor;
#[cfg(test)]
mod layers;
pub mod output;
#[cfg(feature = "registry")]
pub mod registry;
