#![no_main]
//! `cargo +nightly fuzz run inventory`: the body is `krypton_fuzz_targets::target("inventory")`
//! (`tests/fuzz-targets/src/lib.rs`), which `cargo test -p krypton-fuzz-targets` also runs on stable.

libfuzzer_sys::fuzz_target!(|data: &[u8]| krypton_fuzz_targets::target("inventory")(data));
