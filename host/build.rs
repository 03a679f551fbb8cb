//! Builds the provisioning component (`guest/`, wasm32-wasip2) so the host binary can embed it
//! as its default component.
//!
//! A nested `cargo build` writes to `target/guest-build/` (its own directory: cargo locks per
//! build directory, and the outer build holds `target/debug` or `target/release`). On a fresh
//! machine the `wasm32-wasip2` target may be missing (rustup does not add targets listed in
//! rust-toolchain.toml when RUSTUP_AUTO_INSTALL=0), so it is added here with `rustup` first.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn target_installed(rustc: &str) -> bool {
    Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| dir.join("libstd.rlib").exists() || has_std(&dir))
}

fn has_std(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    })
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for path in ["guest/src", "guest/Cargo.toml", "wit", "Cargo.lock"] {
        println!("cargo::rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo::rerun-if-env-changed=KRYPTON_GUEST_WASM");

    // An operator or packager may supply a prebuilt component instead.
    let dest = out_dir.join("krypton_guest.wasm");
    if let Ok(prebuilt) = std::env::var("KRYPTON_GUEST_WASM") {
        std::fs::copy(&prebuilt, &dest)
            .unwrap_or_else(|e| panic!("KRYPTON_GUEST_WASM={prebuilt}: {e}"));
        println!(
            "cargo::rustc-env=KRYPTON_GUEST_WASM_PATH={}",
            dest.display()
        );
        return;
    }

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if !target_installed(&rustc) {
        println!(
            "cargo::warning=the {TARGET} target is missing; running `rustup target add {TARGET}`"
        );
        let ok = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !target_installed(&rustc) {
            panic!(
                "the {TARGET} Rust target is not installed and `rustup target add {TARGET}` failed; \
                 install it by hand and build again"
            );
        }
    }

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guest-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--package",
            "krypton-guest",
            "--target",
            TARGET,
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
        .expect("running cargo for the guest component");
    assert!(
        status.success(),
        "building the guest component failed (see above)"
    );
    let built = target_dir
        .join(TARGET)
        .join("guest-release")
        .join("krypton_guest.wasm");
    std::fs::copy(&built, &dest).expect("copying the guest component");
    println!(
        "cargo::rustc-env=KRYPTON_GUEST_WASM_PATH={}",
        dest.display()
    );
}
