//! Builds `tests/components/hostile` for wasm32-wasip2 with a nested cargo call (the pattern
//! wasmtime uses for its own test programs; the code is shared with `host/build.rs` in
//! `host/build-support`), so sandbox tests run a real misbehaving component.
//! Only tests depend on this crate.

fn main() {
    let wasm = krypton_build_support::Component {
        package: "krypton-hostile",
        dir: "tests/components/hostile",
        prebuilt_env: None,
        inputs: &["wit"],
    }
    .build();
    println!("cargo::rustc-env=KRYPTON_HOSTILE_WASM={}", wasm.display());
}
