//! What both sides of the `soracom:krypton` contract (`wit/krypton.wit`) need, written once.
//!
//! The contract has two kinds of front end: `krypton-host` (native, wasmtime) and the
//! adapters that make the same provisioning component run on a stock WASI runtime
//! (`krypton-cli.wasm`: the command front end `guest/adapters/command` and the secret store
//! `guest/adapters/store-fs`, both built for `wasm32-wasip2`). They must print the same
//! reports and errors, exit with the same codes and keep bundles in the same layout, so that
//! a store written by one is read by the other and a script reads both alike. Each side used
//! to carry its own copy of those rules, and the copies drifted. This crate is the one source:
//!
//! - [`model`]: plain Rust mirrors of the WIT types the renderers read (a report and its
//!   certificate summary, a failure with its hint, error kinds, transport kinds). Each side
//!   converts its generated bindings into them with `From` (wasmtime's `bindgen!` types in
//!   the host, wit-bindgen's in the adapters), written once as the macro [`from_bindings!`]
//!   that each side invokes on its generated modules, so this crate depends on neither
//!   generator.
//! - [`exit`]: the exit codes, each with the `kind` of its `--json` error object, and the
//!   exit-code text of `--help`.
//! - [`render`]: the text and `--json` forms of a report, a failure and `status`.
//! - [`text`]: [`text::printable`] (bounded text without control or bidirectional formatting
//!   characters) and [`text::rfc3339`].
//! - [`store`]: the secret store's layout on disk (the bundle-name rule, file name, size cap,
//!   temp-file name, lock file) and the one way to read a bundle file.
//!
//! Plain Rust with `serde_json` and `time` only: it builds natively and for `wasm32-wasip2`.

mod convert;
pub mod exit;
pub mod model;
pub mod render;
pub mod store;
pub mod text;

pub use text::{printable, rfc3339};
