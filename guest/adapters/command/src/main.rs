//! The command front end of `krypton-cli.wasm`: a `wasi:cli/run` command for the stock
//! `wasmtime` CLI (or any WASI 0.2 runtime with `wasi:http`) that does what `krypton-host
//! provision` and `krypton-host status` do, through the provisioning component's exports:
//!
//! ```text
//! provision <target> [--endpoint URL] [--param k=v]... [--force] [--json]
//! status [<target>] [--json]
//! ```
//!
//! The output is `krypton-host`'s, rendered by the same code (`krypton_contract`): the same
//! report text, the same `--json` objects and the same exit codes (0, 2 usage, 3 invalid
//! request, ... 13 SIM; `krypton-host --help` lists them), set with `wasi:cli/exit`
//! `exit-with-code` (WASI 0.2.12). The secret store is the composed `secret-store` adapter's
//! directory, the guest path `/store`; `provision` holds that adapter's writer lock
//! (`run-lock`) from before the component's first look at the store to after its last write,
//! so a second run on the same store fails at once (exit 9, "another run holds the store").

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod args;

#[cfg(target_arch = "wasm32")]
mod run;

#[cfg(target_arch = "wasm32")]
fn main() {
    let code = run::main(std::env::args().skip(1).collect());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    if code != 0 {
        wasi::cli::exit::exit_with_code(code);
    }
}

/// Natively there is nothing to run: the parser and the output are unit-tested.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("krypton_command is a WebAssembly command: build it for wasm32-wasip2");
    std::process::exit(1);
}
