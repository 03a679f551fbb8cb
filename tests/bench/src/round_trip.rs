//! Figure 1: one provisioning round trip, four ways, interleaved (one of each per round, the
//! order turning every round) so that all see the same machine:
//!
//! * `wasm`: the component in the host, through the library (`Runtime::provision`: a fresh
//!   store and instance per call), compiled component from memory;
//! * `native`: the same guest logic built natively ([`crate::native`]);
//! * `cli`: a `krypton-host provision TARGET --force --json` process, the compile cache warm;
//! * `curl`: `curl` processes sending the same requests (for `azure-iot`: the registration, the
//!   same 100 ms wait, the poll).
//!
//! `azure-iot` includes the poll interval (100 ms, the CLI's smallest) in every way; its
//! `active` figures subtract it.

use crate::stats::{Samples, paired_ratio, round3};
use crate::{Bench, MockChild, POLL_INTERVAL_MS, host_request, options, runtime};
use anyhow::Context as _;
use krypton_guest::types::model;
use krypton_host::capability::http::Origin;
use krypton_host::component::DEFAULT_COMPONENT;
use krypton_host::{OutboundPolicy, SecretStore};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The targets measured: name and the guest's target.
const TARGETS: [(&str, model::Target); 2] = [
    ("azure-iot", model::Target::AzureIot),
    ("aws-iot", model::Target::AwsIot),
];

/// The guest's request for `target`, the same values as the host's (see [`crate::options`]).
fn guest_request(target: model::Target, endpoint: &str) -> model::ProvisionRequest {
    let host = options().request(krypton_host::bindings::Target::AwsIot, endpoint);
    model::ProvisionRequest {
        target,
        mode: model::AuthMode::Network,
        endpoint: endpoint.to_string(),
        request_parameters: None,
        force: true,
        deadline_ms: host.deadline_ms,
        poll_interval_ms: host.poll_interval_ms,
        timeouts: model::Timeouts {
            connect_ms: host.timeouts.connect_ms,
            first_byte_ms: host.timeouts.first_byte_ms,
            between_bytes_ms: host.timeouts.between_bytes_ms,
        },
        retry: model::RetryPolicy {
            max_attempts: host.retry.max_attempts,
            base_delay_ms: host.retry.base_delay_ms,
            max_delay_ms: host.retry.max_delay_ms,
        },
        sim: model::SimOptions::default(),
    }
}

/// One `curl` request: the status and body. Errors: curl cannot run.
fn curl(ca: &Path, method: &str, url: &str, body: Option<&str>) -> anyhow::Result<(u16, String)> {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--cacert"])
        .arg(ca)
        .args(["-X", method, "-H", "accept: application/json"])
        .args(["-w", "\n%{http_code}"]);
    if let Some(body) = body {
        command.args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = command.arg(url).output().context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((status.trim().parse().unwrap_or(0), body.to_string()))
}

/// The same requests as the component makes, with curl: `Ok(true)` when the last answered 200.
fn curl_round(ca: &Path, endpoint: &str, target: &str) -> anyhow::Result<bool> {
    if target == "aws-iot" {
        let (status, _) = curl(
            ca,
            "POST",
            &format!("{endpoint}/v1/provisioning/aws/iot/bootstrap"),
            Some("{}"),
        )?;
        return Ok(status == 200);
    }
    let (status, body) = curl(
        ca,
        "POST",
        &format!("{endpoint}/v1/provisioning/azure/iot/register"),
        Some("{}"),
    )?;
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(op) = answer["operationId"].as_str().filter(|_| status == 200) else {
        return Ok(false);
    };
    std::thread::sleep(std::time::Duration::from_millis(POLL_INTERVAL_MS));
    let (status, body) = curl(
        ca,
        "GET",
        &format!("{endpoint}/v1/provisioning/azure/iot/registrations/{op}"),
        None,
    )?;
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    Ok(status == 200 && answer["status"] == "assigned")
}

/// One CLI process: `Ok(true)` when it exited 0 with `"ok": true`.
fn cli_round(
    host_bin: &Path,
    bench: &Bench,
    mock: &MockChild,
    store: &Path,
    target: &str,
) -> anyhow::Result<bool> {
    let out = Command::new(host_bin)
        .args(["provision", target, "--force", "--json", "-q", "--endpoint"])
        .arg(&mock.endpoint)
        .arg("--ca-file")
        .arg(&mock.ca_file)
        .arg("--store")
        .arg(store)
        .args(["--poll-interval-ms", &POLL_INTERVAL_MS.to_string()])
        .env("KRYPTON_CACHE_DIR", bench.cache_dir())
        .output()
        .context("running krypton-host")?;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok(out.status.success() && report["ok"] == true)
}

/// The ways measured, by name, with their samples and failures.
#[derive(Default)]
struct Way {
    samples: Samples,
    failures: u64,
}

/// Measure figure 1. Errors: the mock, the runtime or a tool could not start.
pub fn measure(bench: &Bench, tokio: &tokio::runtime::Runtime) -> anyhow::Result<Value> {
    let mock = MockChild::start(&bench.exe, &bench.work.path().join("rt-ca.pem"), None)?;
    let ca_pem = mock.ca_pem()?;
    let runtime = runtime(&bench.cache_dir())?;
    let pre = runtime.load(DEFAULT_COMPONENT)?;
    let policy = OutboundPolicy::new(vec![Origin::parse(&mock.endpoint)?], Some(&ca_pem))?;
    let agent = crate::native::agent(&ca_pem)?;
    let curl_found = Command::new("curl").arg("--version").output().is_ok();
    if !curl_found {
        println!("round trip: curl is not installed; its way is left out");
    }
    let mut figures = serde_json::Map::new();
    for (name, guest_target) in TARGETS {
        let request = tokio.block_on(host_request(
            &runtime,
            &pre,
            name,
            &mock.endpoint,
            &options(),
        ))?;
        let wasm_store = SecretStore::open(bench.dir(&format!("rt-{name}-wasm"))?)?;
        let native_store = SecretStore::open(bench.dir(&format!("rt-{name}-native"))?)?;
        let cli_store = bench.dir(&format!("rt-{name}-cli"))?;
        let native_request = guest_request(guest_target, &mock.endpoint);
        let mut ways: [(&str, Way); 4] = Default::default();
        for (slot, label) in ways.iter_mut().zip(["wasm", "native", "cli", "curl"]) {
            slot.0 = label;
        }
        // Rounds 0 and 1 warm up (TLS, caches, page faults) and are not kept.
        for round in 0..bench.sizes.rounds + 2 {
            for k in 0..4 {
                let way = (round + k) % 4;
                let started = Instant::now();
                let ok = match way {
                    0 => {
                        let outcome = tokio.block_on(runtime.provision(
                            &pre,
                            policy.clone(),
                            wasm_store.clone(),
                            &request,
                        ))?;
                        outcome.is_ok_and(|r| !r.reused)
                    }
                    1 => {
                        let mut caps = crate::native::NativeCapabilities::new(
                            agent.clone(),
                            native_store.clone(),
                        );
                        krypton_guest::ops::provision(&mut caps, &native_request)
                            .is_ok_and(|r| !r.reused)
                    }
                    2 => match &bench.host_bin {
                        Some(bin) => cli_round(bin, bench, &mock, &cli_store, name)?,
                        None => continue,
                    },
                    _ if curl_found => curl_round(&mock.ca_file, &mock.endpoint, name)?,
                    _ => continue,
                };
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                if round >= 2 {
                    let slot = &mut ways[way].1;
                    if ok {
                        slot.samples.push(ms);
                    } else {
                        slot.failures += 1;
                    }
                }
            }
        }
        let wait = if name == "azure-iot" {
            POLL_INTERVAL_MS as f64
        } else {
            0.0
        };
        let active = |s: &Samples| Samples(s.0.iter().map(|x| (x - wait).max(0.0)).collect());
        let [(_, wasm), (_, native), (_, cli), (_, curl)] = &ways;
        let mut figure = json!({
            "pollWaitMs": wait,
            "ratios": {
                "wasmOverNative": round3(wasm.samples.median() / native.samples.median()),
                "wasmOverNativePaired": round3(paired_ratio(&wasm.samples, &native.samples)),
                "wasmOverNativeActive": round3(active(&wasm.samples).median() / active(&native.samples).median()),
                "cliOverCurl": round3(cli.samples.median() / curl.samples.median()),
                "cliOverCurlPaired": round3(paired_ratio(&cli.samples, &curl.samples)),
                "cliOverCurlActive": round3(active(&cli.samples).median() / active(&curl.samples).median()),
                "cliOverWasm": round3(cli.samples.median() / wasm.samples.median()),
            },
        });
        println!("round trip {name}:");
        for (label, way) in &ways {
            figure[*label] = way.samples.json();
            figure[*label]["failures"] = json!(way.failures);
            println!(
                "  {label:<7} {} failures {}",
                way.samples.text(),
                way.failures
            );
        }
        println!(
            "  wasm/native {:.3} (paired {:.3}, without the poll wait {:.3}); cli/curl {:.3} (paired {:.3}, without the poll wait {:.3})",
            figure["ratios"]["wasmOverNative"].as_f64().unwrap_or(0.0),
            figure["ratios"]["wasmOverNativePaired"]
                .as_f64()
                .unwrap_or(0.0),
            figure["ratios"]["wasmOverNativeActive"]
                .as_f64()
                .unwrap_or(0.0),
            figure["ratios"]["cliOverCurl"].as_f64().unwrap_or(0.0),
            figure["ratios"]["cliOverCurlPaired"]
                .as_f64()
                .unwrap_or(0.0),
            figure["ratios"]["cliOverCurlActive"]
                .as_f64()
                .unwrap_or(0.0),
        );
        figures.insert(name.to_string(), figure);
    }
    mock.stop()?;
    Ok(Value::Object(figures))
}
