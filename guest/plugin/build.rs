//! Builds the provisioning component and its three adapters (`guest/adapters/`) for
//! wasm32-wasip2 with the shared build support (`host/build-support`), then composes them with
//! wac-graph into `krypton-cli.wasm`, a `wasi:cli/run` command whose only imports are WASI's:
//!
//! | part | exports | imports plugged |
//! | --- | --- | --- |
//! | `krypton-command` (root) | `wasi:cli/run` | `provisioning`, `types`, `uicc` (types), `run-lock` |
//! | `krypton-guest` | `provisioning` | `secret-store`, `uicc`, `types` |
//! | `krypton-store-fs` | `secret-store`, `run-lock` (the store's writer lock for one run) | |
//! | `krypton-uicc-unavailable` | `uicc`, `types` | |
//!
//! The result is `$OUT_DIR/krypton-cli.wasm`, copied to `<target>/krypton-cli.wasm` for the
//! README's `wasmtime run` command. The provisioning component is the file `krypton-host`
//! embeds (the same nested build, the same bytes), embedded unchanged.

use krypton_build_support::Component;
use krypton_build_support::compose::{Part, compose};
use std::path::PathBuf;

fn main() {
    let guest = Component {
        package: "krypton-guest",
        dir: "guest",
        prebuilt_env: Some("KRYPTON_GUEST_WASM"),
        inputs: &["wit"],
    }
    .build();
    let adapter = |package: &'static str, dir: &'static str| {
        Component {
            package,
            dir,
            prebuilt_env: None,
            inputs: &["wit"],
        }
        .build()
    };
    let command = adapter("krypton-command", "guest/adapters/command");
    let store = adapter("krypton-store-fs", "guest/adapters/store-fs");
    let uicc = adapter(
        "krypton-uicc-unavailable",
        "guest/adapters/uicc-unavailable",
    );

    let parts = [
        Part {
            name: "soracom:krypton-command",
            wasm: &command,
        },
        Part {
            name: "soracom:krypton-guest",
            wasm: &guest,
        },
        Part {
            name: "soracom:krypton-store-fs",
            wasm: &store,
        },
        Part {
            name: "soracom:krypton-uicc-unavailable",
            wasm: &uicc,
        },
    ];
    let composed = compose(&parts, 0).unwrap_or_else(|e| panic!("composing krypton-cli.wasm: {e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let cli = out.join("krypton-cli.wasm");
    std::fs::write(&cli, &composed).unwrap_or_else(|e| panic!("{}: {e}", cli.display()));
    // A stable path for people: `<target>/krypton-cli.wasm` (OUT_DIR is `<target>/<profile>/build/krypton-plugin-<hash>/out`).
    if let Some(target) = out.ancestors().nth(4) {
        let _ = std::fs::write(target.join("krypton-cli.wasm"), &composed);
    }
    println!("cargo::rustc-env=KRYPTON_CLI_WASM={}", cli.display());
    println!(
        "cargo::rustc-env=KRYPTON_PLUGIN_GUEST_WASM={}",
        guest.display()
    );
}
