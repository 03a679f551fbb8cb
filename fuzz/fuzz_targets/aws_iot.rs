#![no_main]
//! `cargo +nightly fuzz run aws_iot`: the body is `krypton_fuzz_targets::target("aws_iot")`
//! (`tests/fuzz-targets/src/lib.rs`), which `cargo test -p krypton-fuzz-targets` also runs on stable.

libfuzzer_sys::fuzz_target!(|data: &[u8]| krypton_fuzz_targets::target("aws_iot")(data));
