//! The quick form of the bench (`krypton-bench --quick`) still runs: every figure is measured,
//! and the counts are right (every call succeeded, every device provisioned with exactly one
//! served request, no failed swap). Timings are printed by the bench, never asserted here.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The `krypton-host` binary cargo built beside this package's binary (`cargo test` at the
/// workspace root builds it for the host's end-to-end tests).
fn host_bin() -> Option<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_krypton-bench")).with_file_name("krypton-host");
    bin.exists().then_some(bin)
}

fn n(figure: &Value) -> u64 {
    figure["n"].as_u64().unwrap_or(0)
}

#[test]
fn quick_bench_measures_every_figure_without_a_failure() {
    let curl = Command::new("curl").arg("--version").output().is_ok();
    if !curl {
        assert!(!in_ci(), "curl is needed by the bench's curl figure");
        println!("curl is not installed: its figure is not checked");
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_krypton-bench"));
    command.arg("--quick").arg("--json").arg(&json);
    let host = host_bin();
    match &host {
        Some(bin) => command.arg("--host-bin").arg(bin),
        None => {
            assert!(
                !in_ci(),
                "no krypton-host binary beside krypton-bench (cargo test at the workspace root builds it)"
            );
            println!(
                "no krypton-host binary beside krypton-bench: the CLI figures are not checked"
            );
            command.arg("--no-host-bin")
        }
    };
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "krypton-bench --quick failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();

    // 1. Round trips: --quick makes 5 per target and way, none failed.
    for target in ["azure-iot", "aws-iot"] {
        let figure = &figures["roundTrip"][target];
        let mut ways = vec!["wasm", "native"];
        if host.is_some() {
            ways.push("cli");
        }
        if curl {
            ways.push("curl");
        }
        for way in ways {
            assert_eq!(n(&figure[way]), 5, "{target} {way}: {figure}");
            assert_eq!(figure[way]["failures"], 0, "{target} {way}: {figure}");
        }
    }
    // 2. Loading: 1 JIT compile, 5 cache hits and precompiled loads, 100 calls.
    let loading = &figures["loading"];
    assert_eq!(n(&loading["jitCompile"]), 1);
    assert_eq!(n(&loading["cacheHit"]), 5);
    assert_eq!(n(&loading["precompiledFile"]), 5);
    assert_eq!(n(&loading["instantiateCall"]), 100);
    assert_eq!(
        loading["componentBytes"].as_u64(),
        Some(krypton_host::DEFAULT_COMPONENT.len() as u64)
    );
    // 3. Memory: 50 calls and 20 swaps, none failed; a resident size was read at each point.
    let memory = &figures["memory"];
    assert_eq!(
        (memory["calls"].as_u64(), memory["failedCalls"].as_u64()),
        (Some(50), Some(0))
    );
    assert_eq!(
        (memory["swaps"].as_u64(), memory["failedSwaps"].as_u64()),
        (Some(20), Some(0))
    );
    for key in [
        "rssIdleKiB",
        "rssAfterCallsKiB",
        "rssAfterSwapsKiB",
        "rssPeakKiB",
    ] {
        assert!(memory[key].as_u64().unwrap_or(0) > 0, "{key}: {memory}");
    }
    if host.is_some() {
        assert_eq!(memory["benchSwapCli"]["ok"], true, "{memory}");
    }
    // 4. Storm: 100 devices, none failed, each served exactly once (the rest were 429s).
    let storm = &figures["storm"];
    assert_eq!(storm["devices"], 100, "{storm}");
    assert_eq!(storm["failures"], 0, "{storm}");
    let (requests, throttled) = (
        storm["requests"].as_u64().unwrap(),
        storm["throttled"].as_u64().unwrap(),
    );
    assert_eq!(requests - throttled, 100, "{storm}");
    // 5. Hot swap under load: swaps happened, no call and no swap failed.
    let swap = &figures["hotSwap"];
    assert!(swap["swaps"].as_u64().unwrap_or(0) > 0, "{swap}");
    assert_eq!(swap["failedSwaps"], 0, "{swap}");
    assert_eq!(swap["failedCallsWhileSwapping"], 0, "{swap}");
    assert_eq!(swap["failedCallsWithoutSwaps"], 0, "{swap}");
    assert!(
        swap["callsWhileSwapping"].as_u64().unwrap_or(0) > 0,
        "{swap}"
    );
}
