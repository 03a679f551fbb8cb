//! Builds the provisioning component (`guest/`, wasm32-wasip2) so the host binary can embed it
//! as its default component (`KRYPTON_GUEST_WASM_PATH`, read with `include_bytes!`), and passes
//! the target triple the host is built for (`KRYPTON_BUILD_TARGET`, the platform precompiled
//! components must be compiled for).
//!
//! The nested build, the `rustup target add` on a fresh machine and the dep-info driven reruns
//! are in `host/build-support` (shared with `tests/components/build.rs`). An operator or packager
//! may set `KRYPTON_GUEST_WASM=FILE` to embed a prebuilt component instead. The gateway build
//! (without the `jit` feature) embeds no component and builds none.

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo::rustc-env=KRYPTON_BUILD_TARGET={target}");
    if std::env::var_os("CARGO_FEATURE_JIT").is_none() {
        return;
    }
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
