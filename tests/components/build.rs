//! Builds `tests/components/hostile` for wasm32-wasip2 with a nested cargo call (the pattern
//! wasmtime uses for its own test programs), so sandbox tests run a real misbehaving component.
//! Only tests depend on this crate.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().parent().unwrap().to_path_buf();
    for path in [
        "tests/components/hostile/src",
        "tests/components/hostile/Cargo.toml",
        "wit",
    ] {
        println!("cargo::rerun-if-changed={}", root.join(path).display());
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guest-build");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args([
            "build",
            "--package",
            "krypton-hostile",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "guest-release",
            "--locked",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("running cargo for the hostile component");
    assert!(
        status.success(),
        "building the hostile test component failed"
    );
    let built = target_dir.join("wasm32-wasip2/guest-release/krypton_hostile.wasm");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("krypton_hostile.wasm");
    std::fs::copy(&built, &dest).expect("copying the hostile component");
    println!("cargo::rustc-env=KRYPTON_HOSTILE_WASM={}", dest.display());
}
