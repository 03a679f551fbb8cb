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
async fn run_traced(command: Cli) -> (i32, String, String) {
    command.log(TRACE_FILTER).run().await.parts()
}

#[tokio::test]
async fn no_secret_reaches_stdout_stderr_errors_or_json() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let args = |target: &str, json: bool| {
        let command = fx
            .provision(target)
            .poll_ms(100)
            .force()
            .args(["--params", r#"{"endpoint":"gw-1"}"#])
            .verbose();
        if json { command.json() } else { command }
    };
    let mut outputs = Vec::new();
    for name in TARGET_NAMES {
        for json in [false, true] {
            let (code, out, err) = run_traced(args(name, json)).await;
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
                let (code, out, err) = run_traced(args(target, json)).await;
                assert_eq!(code, 7, "{target}/{field}: {out}{err}");
                outputs.push(out);
                outputs.push(err);
            }
        }
    }
    // `status` and `status --json` over everything stored.
    for json in [false, true] {
        let status = fx.status(None).verbose();
        let (code, out, err) = run_traced(if json { status.json() } else { status }).await;
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
    assert_no_secret(&refs, &key_lines(&fx.store));
    fx.stop().await;
}

/// Every form a binary secret could take in a log line: lowercase and uppercase hex, padded
/// standard base64.
fn forms(bytes: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        hex.clone(),
        hex.to_uppercase(),
        base64::engine::general_purpose::STANDARD.encode(bytes),
    ]
}

/// SIM-authenticated mode (issue 10 "Secrets"): K and OPc of the software SIM, and RES (XRES),
/// CK and IK of every challenge the mock issued, never reach stdout or stderr at trace level,
/// for every operation, on success and on failure (a refused challenge, a refused
/// verification, a tampered request).
#[tokio::test]
async fn no_sim_secret_reaches_stdout_or_stderr() {
    use super::sim::{K, OPC, OTHER_K, SimSetup};
    let s = SimSetup::new(K, 0, 0).await;
    let mut outputs = Vec::new();
    let mut run = async |target: &str, extra: &[&str], want: i32| {
        let command = s.sim(target, extra).verbose();
        for json in [true, false] {
            let command = if json {
                command.clone()
            } else {
                command.clone().text()
            };
            let (code, out, err) = run_traced(command).await;
            assert_eq!(code, want, "{target} {extra:?}: {out}{err}");
            outputs.push(out);
            outputs.push(err);
        }
    };
    for name in TARGET_NAMES {
        // The first run of each target agrees a new key (no cache), the second reuses it.
        run(
            name,
            &["--force", "--no-key-cache", "--param", "endpoint=gw-1"],
            0,
        )
        .await;
        run(name, &["--force", "--param", "endpoint=gw-1"], 0).await;
    }
    s.mock.inject(
        "/v1/keys/",
        http_error(401, "KEY0401", "verification failed"),
    );
    run("aws-iot", &["--force", "--no-key-cache"], 13).await;
    s.mock.clear_faults();
    s.mock.inject("/v1/provisioning/", Fault::AlterSignedBody);
    run("aws-iot", &["--force", "--no-key-cache"], 6).await;
    s.mock.clear_faults();
    // A SIM whose K the Keys API does not know: the SIM refuses the challenge.
    let wrong = super::sim::record(OTHER_K, 0);
    krypton_uicc::soft::SoftSim::create(&s.sim_file, &wrong).unwrap();
    run("aws-iot", &["--force", "--no-key-cache"], 13).await;
    for (command, want) in [
        (s.status(None).verbose(), 0),
        (s.status(None).verbose().json(), 0),
    ] {
        let (code, out, err) = run_traced(command).await;
        assert_eq!(code, want, "{err}");
        outputs.push(out);
        outputs.push(err);
    }

    let everything = outputs.join("\n");
    assert!(everything.contains("TRACE"), "not verbose");
    let secrets = s.mock.sim_secrets();
    assert!(secrets.len() >= 10, "{} challenges", secrets.len());
    let mut needles: Vec<String> = vec![
        K.into(),
        K.to_uppercase(),
        OPC.into(),
        OPC.to_uppercase(),
        OTHER_K.into(),
        OTHER_K.to_uppercase(),
    ];
    for issued in &secrets {
        needles.extend(forms(&issued.xres));
        needles.extend(forms(&issued.ck));
        needles.extend(forms(&issued.ik));
    }
    for needle in &needles {
        assert!(
            !everything.contains(needle.as_str()),
            "a SIM secret leaked: {needle}"
        );
    }
    for canary in mock::canaries() {
        assert!(!everything.contains(&canary), "canary `{canary}` leaked");
    }
    let refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    assert_no_secret(&refs, &key_lines(&s.store));
    s.stop().await;
}

/// Issue 18, item 6: every command is non-dumpable from its start (`prctl(PR_SET_DUMPABLE, 0)`,
/// `RLIMIT_CORE` 0), not only `run`: a crash of `provision`, `export`, `sim` or `keygen` must
/// not write the keys, CK or a software SIM's K/OPc it holds to a core file. Each command
/// reports, at debug level, what `prctl(PR_GET_DUMPABLE)` and `getrlimit(RLIMIT_CORE)` say
/// after the call; and a `provision` in flight shows `Max core file size` 0 in its
/// `/proc/PID/limits`, read from outside.
#[tokio::test]
async fn every_command_that_holds_secrets_is_non_dumpable() {
    let fx = Fixture::new().await;
    let dir = fx.dir();
    let sim_file = dir.join("sim.json");
    let key_file = dir.join("signing.pem");
    let out_dir = dir.join("export");
    let commands: Vec<Cli> = vec![
        fx.provision("azure-iot").attempts(1),
        fx.status(None),
        cli(["export", "azure-iot", "--format", "pem", "--out"])
            .arg(text(&out_dir))
            .set("--store", text(&fx.store)),
        cli(["sim", "--imsi", "--uicc", "soft", "--sim-file"]).arg(text(&sim_file)),
        cli(["keygen", "--out"]).arg(text(&key_file)),
    ];
    for command in commands {
        let words = command.words().join(" ");
        let (_, _, stderr) = command
            .log("debug,wasmtime=warn,cranelift=warn")
            .run()
            .await
            .parts();
        assert!(
            stderr.contains("core dumps off") && stderr.contains("dumpable=0 core_limit=0"),
            "{words}: {stderr}"
        );
    }

    // From outside: a provision held up by a slow Krypton.
    fx.mock.inject(
        "/v1/provisioning/azure/iot/register",
        krypton_mock::Fault::DelayHeaders(std::time::Duration::from_secs(5)),
    );
    let child = tokio::process::Command::new(BIN)
        .args(fx.provision("azure-iot").attempts(1).words())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let limits = format!("/proc/{}/limits", child.id().unwrap());
    let mut seen = String::new();
    for _ in 0..200 {
        seen = std::fs::read_to_string(&limits).unwrap_or_default();
        let core = seen.lines().find(|l| l.starts_with("Max core file size"));
        // Soft and hard limit 0 (the soft one may be 0 already when inherited).
        if core.is_some_and(|l| l.split_whitespace().skip(4).take(2).eq(["0", "0"])) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let core = seen
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_default()
        .split_whitespace()
        .skip(4)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(core, ["0", "0"], "{seen}");
    drop(child);
    fx.stop().await;
}
