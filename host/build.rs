//! Builds the provisioning component (`guest/`, wasm32-wasip2) so the host binary can embed it
//! as its default component (`KRYPTON_GUEST_WASM_PATH`, read with `include_bytes!`).
//!
//! The nested build, the `rustup target add` on a fresh machine and the dep-info driven reruns
//! are in `host/build-support` (shared with `tests/components/build.rs`). An operator or packager
//! may set `KRYPTON_GUEST_WASM=FILE` to embed a prebuilt component instead.

fn main() {
    let wasm = krypton_build_support::Component {
        package: "krypton-guest",
        dir: "guest",
        prebuilt_env: Some("KRYPTON_GUEST_WASM"),
        inputs: &["wit"],
    }
    .build();
    println!(
        "cargo::rustc-env=KRYPTON_GUEST_WASM_PATH={}",
        wasm.display()
    );
}
