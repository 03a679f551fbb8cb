//! `krypton-cli.wasm`: the provisioning component composed with its adapters into a command
//! for the stock `wasmtime` CLI (see `build.rs` for the parts):
//!
//! ```text
//! wasmtime run -S http --dir STORE_DIR::/store krypton-cli.wasm provision azure-iot --json
//! ```
//!
//! `cargo build -p krypton-plugin` writes it to `target/krypton-cli.wasm`.

/// Path of the composed command component.
pub const KRYPTON_CLI_WASM: &str = env!("KRYPTON_CLI_WASM");

/// Path of the provisioning component composed into it (the build `krypton-host` embeds).
pub const GUEST_WASM: &str = env!("KRYPTON_PLUGIN_GUEST_WASM");
