//! The short form of the fuzzing, on stable: every target of `fuzz/` runs each file of its
//! seed corpus (`fuzz/corpus/<target>/`), then [`DEFAULT_CASES`] inputs proptest derives from
//! the seeds (bit flips, byte changes, cuts, insertions, splices with another seed) and some
//! arbitrary bytes. cargo-fuzz needs a nightly toolchain (its sanitizer and coverage options
//! are `-Z` flags), which CI cannot install; the long runs are `cargo +nightly fuzz run` (see
//! `fuzz/README.md`). `KRYPTON_FUZZ_CASES=N` sets the number of generated inputs per target.

use krypton_fuzz_targets::{SEPARATOR, TARGETS, provision, target};
use krypton_guest::types::model::{AuthMode, Target};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::PathBuf;

/// Generated inputs per target when `KRYPTON_FUZZ_CASES` is not set (what CI runs).
const DEFAULT_CASES: u32 = 200;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The seed corpus of `name`, sorted by file name.
fn seeds(name: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("corpus").join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// One change to a seed.
#[derive(Clone, Debug)]
enum Edit {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Cut(usize, usize),
    Insert(usize, Vec<u8>),
    /// Replace from here with the tail of another seed (from its own offset).
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::FlipBit(at, bit)),
        (
            any::<usize>(),
            prop_oneof![
                Just(SEPARATOR),
                Just(b'"'),
                Just(b'{'),
                Just(0),
                any::<u8>()
            ]
        )
            .prop_map(|(at, b)| Edit::SetByte(at, b)),
        (any::<usize>(), 0usize..64).prop_map(|(at, len)| Edit::Cut(at, len)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(at, other, from)| Edit::Splice(at, other, from)),
    ]
}

fn apply(seeds: &[Vec<u8>], seed: usize, edits: &[Edit]) -> Vec<u8> {
    let mut data = seeds[seed % seeds.len()].clone();
    for e in edits {
        let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
        match e {
            Edit::FlipBit(at, bit) if !data.is_empty() => {
                let i = at % data.len();
                data[i] ^= 1 << bit;
            }
            Edit::SetByte(at, b) if !data.is_empty() => {
                let i = at % data.len();
                data[i] = *b;
            }
            Edit::Cut(at, len) => {
                let start = pos(*at, data.len());
                let end = (start + len).min(data.len());
                data.drain(start..end);
            }
            Edit::Insert(at, bytes) => {
                let start = pos(*at, data.len());
                data.splice(start..start, bytes.iter().copied());
            }
            Edit::Splice(at, other, from) => {
                let other = &seeds[other % seeds.len()];
                let start = pos(*at, data.len());
                let from = pos(*from, other.len());
                data.truncate(start);
                data.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    data
}

fn cases() -> u32 {
    std::env::var("KRYPTON_FUZZ_CASES")
        .ok()
        .map(|v| v.parse().expect("KRYPTON_FUZZ_CASES is a number"))
        .unwrap_or(DEFAULT_CASES)
}

/// Run target `name` on its seeds, then on generated inputs; a panic fails the test with the
/// (shrunk) input.
fn smoke(name: &str) {
    let body = target(name);
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "no seed for {name}");
    for seed in &seeds {
        body(seed);
    }
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let mutated = (any::<usize>(), prop::collection::vec(edit(), 1..8));
    runner
        .run(&mutated, |(seed, edits)| {
            body(&apply(&seeds, seed, &edits));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut runner = TestRunner::new(Config {
        cases: cases() / 4,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..512), |data| {
            body(&data);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

macro_rules! smoke_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { smoke(stringify!($name)); })*
        /// Every target has a test here, a file in `fuzz/fuzz_targets/` and a seed corpus.
        #[test]
        fn every_target_is_driven_and_has_a_fuzz_target_file() {
            let mut tested = vec![$(stringify!($name)),*];
            tested.sort();
            let mut listed: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            listed.sort();
            assert_eq!(tested, listed);
            let mut files: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            files.sort();
            assert_eq!(files, listed);
        }
    };
}

smoke_tests!(
    azure_iot,
    aws_iot,
    aws_cognito,
    aws_cognito_openid,
    inventory,
    arc,
    air_subscriber_metadata,
    air_userdata,
    keys_api,
    pem_key,
    stored_bundle,
    retry_after,
    doctor_wireguard,
    doctor_soratun,
    gateway_config,
    signature_file,
    host_pem,
    sim_file,
);

/// The seeds reach the parsers' far end: a seed of each response target provisions (so
/// generated inputs start from answers that pass every check, not only from early refusals).
#[test]
fn a_seed_of_each_response_target_provisions() {
    let cases = [
        ("azure_iot", Target::AzureIot, AuthMode::Network),
        ("aws_iot", Target::AwsIot, AuthMode::Network),
        ("aws_cognito", Target::AwsCognito, AuthMode::Network),
        (
            "aws_cognito_openid",
            Target::AwsCognitoOpenid,
            AuthMode::Network,
        ),
        ("inventory", Target::Inventory, AuthMode::Network),
        ("arc", Target::Arc, AuthMode::Network),
        (
            "air_subscriber_metadata",
            Target::SubscriberMetadata,
            AuthMode::Network,
        ),
        ("air_userdata", Target::Userdata, AuthMode::Network),
        ("keys_api", Target::SubscriberMetadata, AuthMode::Sim),
    ];
    for (name, target, mode) in cases {
        let mut errors = Vec::new();
        let provisioned = seeds(name)
            .iter()
            .any(|seed| match provision(target, mode, seed) {
                (caps, Ok(report)) => {
                    assert_eq!(report.bundle, target.bundle_name());
                    caps.store.contains_key(target.bundle_name())
                }
                (_, Err(e)) => {
                    errors.push(e.to_string());
                    false
                }
            });
        assert!(provisioned, "{name}: no seed provisions: {errors:?}");
    }
}
