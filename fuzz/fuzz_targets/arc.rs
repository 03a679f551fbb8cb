#![no_main]
//! `cargo +nightly fuzz run arc`: the body is `krypton_fuzz_targets::target("arc")`
//! (`tests/fuzz-targets/src/lib.rs`), which `cargo test -p krypton-fuzz-targets` also runs on stable.

libfuzzer_sys::fuzz_target!(|data: &[u8]| krypton_fuzz_targets::target("arc")(data));
