//! Secrets never leave the store (issue 3 "Secrets"): every target, at the most verbose log
//! level, on success and on failure, with the mock's canary values in every secret field.

use super::support::*;
use krypton_mock::{self as mock, Fault};
use serde_json::Value;

/// Trace level for everything that handles Krypton's answers: the host, the component's log,
/// the HTTP and TLS stacks and the WASI layers. (Not the code generator: Cranelift at trace
/// level writes gigabytes about machine code, none of it about data.)
const TRACE_FILTER: &str = "debug,krypton_host=trace,component=trace,hyper=trace,\
    hyper_util=trace,rustls=trace,tokio_rustls=trace,wasmtime_wasi_http=trace,\
    wasmtime_wasi=trace,wasmtime_wasi_io=trace,cranelift_codegen=off,cranelift_frontend=off,\
    regalloc2=off,wasmtime_cranelift=off,wasmtime_internal_cranelift=off,wasmtime_environ=off,\
    wasmparser=off";

/// Run the CLI at trace level (RUST_LOG overrides -v).
async fn run_traced(args: &[&str]) -> (i32, String, String) {
    run_cli_with_log(args, Some(TRACE_FILTER)).await
}

#[tokio::test]
async fn no_secret_reaches_stdout_stderr_errors_or_json() {
    let mock = mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, mock.ca_pem()).unwrap();
    let store = tmp.path().join("store");
    let endpoint = mock.endpoint();
    let args = |target: &str, json: bool| {
        let mut v: Vec<String> = [
            "-v",
            "provision",
            target,
            "--endpoint",
            &endpoint,
            "--ca-file",
            ca.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--poll-interval-ms",
            "100",
            "--force",
            "--params",
            r#"{"endpoint":"gw-1"}"#,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if json {
            v.push("--json".into());
        }
        v
    };
    let mut outputs = Vec::new();
    for name in TARGET_NAMES {
        for json in [false, true] {
            let a = args(name, json);
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            let (code, out, err) = run_traced(&refs).await;
            assert_eq!(code, 0, "{name}: {err}");
            if json {
                let report: Value = serde_json::from_str(out.trim()).unwrap();
                assert_eq!(report["target"], name);
            }
            outputs.push(out);
            outputs.push(err);
        }
    }
    // Failures that touch secret fields: a wrong type and a missing value in each.
    for (path, field, target) in [
        (
            "/v1/provisioning/aws/cognito/credentials",
            "credentials",
            "aws-cognito",
        ),
        (
            "/v1/provisioning/aws/cognito/open_id_tokens",
            "token",
            "aws-cognito-openid",
        ),
        (
            "/v1/provisioning/soracom/inventory/bootstrap",
            "applicationKey",
            "inventory",
        ),
        (
            "/v1/provisioning/soracom/arc/bootstrap",
            "arcClientPeerIpAddress",
            "arc",
        ),
        ("/v1/provisioning/aws/iot/bootstrap", "host", "aws-iot"),
    ] {
        for fault in [
            Fault::WrongType(field.into()),
            Fault::DropField(field.into()),
        ] {
            mock.clear_faults();
            mock.inject(path, fault);
            for json in [false, true] {
                let a = args(target, json);
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                let (code, out, err) = run_traced(&refs).await;
                assert_eq!(code, 7, "{target}/{field}: {out}{err}");
                outputs.push(out);
                outputs.push(err);
            }
        }
    }
    // `status` and `status --json` over everything stored.
    for json in [false, true] {
        let mut a = vec!["-v", "status", "--store", store.to_str().unwrap()];
        if json {
            a.push("--json");
        }
        let (code, out, err) = run_traced(&a).await;
        assert_eq!(code, 0, "{err}");
        outputs.push(out);
        outputs.push(err);
    }
    let everything = outputs.join("\n");
    assert!(
        everything.contains("TRACE") || everything.contains("DEBUG"),
        "not verbose"
    );
    for canary in mock::canaries() {
        assert!(!everything.contains(&canary), "canary `{canary}` leaked");
    }
    let refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    assert_no_secret(&refs, &key_lines(&store));
    mock.stop().await;
}
