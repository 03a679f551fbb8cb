//! Issue 12: one exit-code and `--json` convention on every command (item 4), and exports as an
//! operator meets them (item 6): format checked before `--out` is created, help for every
//! argument, `--owner`, the `converted` field.

use super::support::*;
use krypton_host_cli::output::{self, ERROR_KINDS};
use krypton_mock::Fault;
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Exactly one JSON object on stdout, nothing else.
fn one_object(stdout: &str, what: &str) -> Value {
    let values: Vec<Value> = serde_json::Deserializer::from_str(stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{stdout}"));
    assert_eq!(values.len(), 1, "{what}: not one JSON value:\n{stdout}");
    assert!(values[0].is_object(), "{what}: not an object: {stdout}");
    values.into_iter().next().unwrap()
}

/// Run `args` (which include `--json`), check the exit code, the one object, its `exitCode`
/// and `error.kind`; returns the object.
async fn expect_failure(args: &[&str], code: u8, kind: &str) -> Value {
    expect_failure_of(&cli(args), code, kind).await
}

/// [`expect_failure`] for a built command line.
async fn expect_failure_of(command: &Cli, code: u8, kind: &str) -> Value {
    let what = command.words().join(" ");
    let (got, stdout, stderr) = command.run().await.parts();
    assert_eq!(
        got,
        i32::from(code),
        "{what}: exit code\n{stdout}\n{stderr}"
    );
    let v = one_object(&stdout, &what);
    assert_eq!(v["ok"], false, "{what}: {v}");
    assert_eq!(v["exitCode"], u64::from(code), "{what}: {v}");
    assert_eq!(v["error"]["kind"], kind, "{what}: {v}");
    assert_eq!(
        output::error_kind(code),
        kind,
        "{what}: the table disagrees"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
            || v["error"]["field"].is_string()
            || v["error"]["status"].is_u64()
            || v["error"]["operationId"].is_string(),
        "{what}: the error says nothing: {v}"
    );
    v
}

#[test]
fn every_exit_code_has_one_kind_and_the_help_lists_it() {
    let mut codes: Vec<u8> = ERROR_KINDS.iter().map(|(_, c)| *c).collect();
    codes.sort_unstable();
    assert_eq!(codes, (1..=13).collect::<Vec<u8>>());
    for (kind, code) in ERROR_KINDS {
        assert_eq!(output::error_kind(code), kind);
        let line = format!("{code:>2}  [{kind}] ");
        assert!(
            output::EXIT_CODES_HELP.contains(&line),
            "help lacks `{line}`"
        );
    }
}

/// Item 4: each class of failure on each command that can meet it: the same situation gives
/// the same code, with `--json` one object whose kind matches the code.
#[tokio::test]
async fn each_command_with_each_class_of_failure_gives_one_code_and_one_object() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let empty = tmp.path().join("empty");
    SecretStore::open(&empty).unwrap();
    // A store path under a regular file: no store can be opened there.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let bad_store = file.join("store");
    let (missing, empty, file, bad_store) = (
        missing.to_str().unwrap(),
        empty.to_str().unwrap(),
        file.to_str().unwrap(),
        bad_store.to_str().unwrap(),
    );
    let out = tmp.path().join("out");
    let out = out.to_str().unwrap();
    let port = closed_port();
    let refused = format!("https://127.0.0.1:{port}");
    // `provision TARGET --endpoint <nothing listens> --store <empty> --json` plus options.
    let to_nothing = |target: &str| {
        cli(["provision", target])
            .endpoint(&refused)
            .set("--store", empty)
            .json()
    };

    // Nothing stored: 11 on every command and with or without a target.
    for store in [missing, empty] {
        for args in [
            vec!["status", "--store", store, "--json"],
            vec!["status", "azure-iot", "--store", store, "--json"],
            vec![
                "export", "aws-iot", "--format", "pem", "--out", out, "--store", store, "--json",
            ],
        ] {
            let v = expect_failure(&args, 11, "not-provisioned").await;
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("krypton-host provision"),
                "{v}"
            );
        }
    }
    assert!(
        !Path::new(missing).exists(),
        "a read-only command created the store"
    );
    assert!(
        !Path::new(out).exists(),
        "export created --out with nothing to write"
    );

    // A store path that cannot be a store: 9 (storage) on every command.
    for args in [
        vec!["provision", "azure-iot", "--store", bad_store, "--json"],
        vec!["status", "--store", file, "--json"],
        vec!["status", "aws-iot", "--store", file, "--json"],
        vec![
            "export", "aws-iot", "--format", "pem", "--out", out, "--store", file, "--json",
        ],
    ] {
        expect_failure(&args, 9, "storage").await;
    }

    // Argument errors, clap's and the host's own: 2, as JSON too.
    expect_failure_of(
        &to_nothing("azure-iot").args(["--backoff-base-ms", "100", "--backoff-max-ms", "10"]),
        2,
        "usage",
    )
    .await;
    for args in [
        vec!["provision", "--json"],
        vec!["provision", "azure", "--json"],
        vec!["provision", "azure-iot", "--deadline-secs", "0", "--json"],
        vec!["status", "--no-such-flag", "--json"],
        vec![
            "export",
            "azure-iot",
            "--format",
            "zip",
            "--out",
            out,
            "--json",
        ],
        vec!["doctor", "--timeout-ms", "0", "--json"],
        vec!["keygen", "--json"],
        vec!["sign", "--json"],
        vec!["--json"],
    ] {
        expect_failure(&args, 2, "usage").await;
    }
    // Without --json a usage error is clap's text on stderr, nothing on stdout.
    let (code, stdout, stderr) = run_cli(&["provision", "azure"]).await;
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(stderr.contains("unknown target `azure`"), "{stderr}");

    // Invalid request or configuration: 3.
    for command in [
        to_nothing("azure-iot").endpoint("ftp://x"),
        to_nothing("aws-iot").args(["--params", "[1]"]),
        cli(["doctor", "--no-connect", "--wireguard", missing, "--json"]),
        to_nothing("azure-iot").set("--ca-file", missing),
    ] {
        expect_failure_of(&command, 3, "invalid-request").await;
    }

    // SIM mode on a host that reaches no SIM: 13.
    expect_failure_of(&to_nothing("azure-iot").args(["--mode", "sim"]), 13, "sim").await;

    // Transport: 4, the typed fields as JSON values (attempts is a number).
    let transport = to_nothing("azure-iot").attempts(1);
    let v = expect_failure_of(&transport, 4, "transport").await;
    assert!(v["error"]["transportKind"].is_string(), "{v}");
    assert!(
        v["error"]["attempts"].is_u64(),
        "attempts must be a JSON number: {v}"
    );
    assert!(v["error"]["request"].is_string(), "{v}");
    assert!(
        v["error"]["hint"].is_string() || v["error"]["hint"].is_null(),
        "{v}"
    );
    // The same failure as text names the request and says what happened.
    let (code, stdout, stderr) = transport.text().run().await.parts();
    assert_eq!((code, stdout.as_str()), (4, ""));
    assert!(
        stderr.contains("error: could not reach Krypton: "),
        "{stderr}"
    );

    // Not routed (doctor): 12.
    let fixture = format!(
        "{}/../../tests/fixtures/wg-not-routed.conf",
        env!("CARGO_MANIFEST_DIR")
    );
    let v = expect_failure(
        &[
            "doctor",
            "--no-connect",
            "--address",
            "54.250.252.99",
            "--wireguard",
            &fixture,
            "--json",
        ],
        12,
        "not-routed",
    )
    .await;
    assert_eq!(v["verdict"], "not-routed", "{v}");
}

/// Item 4: Krypton's own failures through the binary, one class each, and a success.
#[tokio::test]
async fn krypton_failures_and_success_are_one_object_each() {
    let fx = Fixture::new().await;
    let mock = &fx.mock;
    let base = |target: &str| fx.provision(target).attempts(1).poll_ms(100).json();
    mock.inject_times(
        "/v1/provisioning/aws/iot",
        http_error(500, "KRY0500", "injected"),
        1,
    );
    let a = base("aws-iot");
    let v = expect_failure_of(&a, 6, "http-status").await;
    assert_eq!(
        v["error"]["status"], 500,
        "status must be a JSON number: {v}"
    );
    mock.inject_times("/", Fault::MalformedJson, 1);
    let v = expect_failure_of(&a, 7, "invalid-response").await;
    assert!(v["error"]["field"].is_string(), "{v}");
    mock.inject_times(
        "/v1/provisioning/azure/iot/registrations/",
        Fault::RegistrationStatus("failed".into()),
        1,
    );
    expect_failure_of(&base("azure-iot"), 8, "registration-failed").await;

    // Success: one object with "ok": true, on provision and status alike.
    let (code, stdout, stderr) = a.run().await.parts();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(one_object(&stdout, "provision")["ok"], true);
    let (code, stdout, _) = fx.status(None).json().run().await.parts();
    assert_eq!(code, 0);
    let v = one_object(&stdout, "status");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["bundles"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["bundles"][0]["target"], "aws-iot", "{v}");
    // status TARGET for a target not stored, beside one that is: 11, like an empty store.
    expect_failure_of(&fx.status(Some("arc")).json(), 11, "not-provisioned").await;
    fx.stop().await;
}

/// A directory whose `store` holds `targets`, provisioned against a mock that is then stopped.
async fn store_with(targets: &[Target]) -> (tempfile::TempDir, std::path::PathBuf) {
    let fx = Fixture::new().await;
    for target in targets {
        fx.provisioned(*target).await;
    }
    let Fixture {
        mock, tmp, store, ..
    } = fx;
    mock.stop().await;
    (tmp, store)
}

/// `export azure-iot --format FORMAT --out OUT --store STORE`.
fn export_azure(format: &str, out: &Path, store: &Path) -> Cli {
    cli(["export", "azure-iot", "--format", format])
        .set("--out", text(out))
        .store(store)
}

/// Item 6: a format that does not fit the target is refused before `--out` is created.
#[tokio::test]
async fn a_wrong_format_creates_no_directory() {
    let (tmp, store) = store_with(&[Target::AzureIot]).await;
    let out = tmp.path().join("new").join("exports");
    for format in ["env", "wireguard", "aws-iot"] {
        let (code, v, err) = export(&store, "azure-iot", format, &out).await;
        assert_eq!(code, 3, "{format}: {v} {err}");
        assert_eq!(v["error"]["kind"], "invalid-request", "{v}");
        assert!(
            !tmp.path().join("new").exists(),
            "{format}: --out (or its parent) was created"
        );
    }
    // Without --krypton-address, wireguard would resolve Krypton's name (which does not
    // resolve here): the format is still refused first, exit 3, not a DNS error.
    let (code, stdout, _) = export_azure("wireguard", &out, &store)
        .json()
        .run()
        .await
        .parts();
    assert_eq!(code, 3, "{stdout}");
    assert_eq!(
        one_object(&stdout, "wireguard")["error"]["kind"],
        "invalid-request"
    );
    // An unknown owner is refused before anything is created too.
    let (code, stdout, _) = export_azure("pem", &out, &store)
        .args(["--owner", "no-such-user-krypton"])
        .json()
        .run()
        .await
        .parts();
    assert_eq!(code, 3, "{stdout}");
    assert!(
        one_object(&stdout, "owner")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no user `no-such-user-krypton`")
    );
    assert!(!tmp.path().join("new").exists());
}

/// Item 4 and 6: numbers are numbers, `converted` is always present, the text says the mode
/// as 0600 and, for Azure IoT Edge, the exact commands that let its services read the files.
#[tokio::test]
async fn export_reports_numbers_converted_and_the_aziot_ownership_to_set() {
    let (tmp, store) = store_with(&[Target::AzureIot]).await;
    let out = tmp.path().join("aziot");
    let aziot = export_azure("aziot", &out, &store);
    let (code, stdout, stderr) = aziot.clone().json().run().await.parts();
    assert_eq!(code, 0, "{stderr}");
    let v = one_object(&stdout, "export");
    assert_eq!(v["ok"], true);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 5, "{v}");
    for f in files {
        let path = Path::new(f["path"].as_str().unwrap());
        assert_eq!(
            f["bytes"].as_u64(),
            Some(std::fs::metadata(path).unwrap().len()),
            "bytes must be a JSON number: {f}"
        );
        let expected_mode = if f["secret"] == true { "0600" } else { "0644" };
        assert_eq!(f["mode"], expected_mode, "{f}");
        assert_eq!(mode(path), u32::from_str_radix(expected_mode, 8).unwrap());
        assert!(
            f.as_object().unwrap().contains_key("converted")
                && (f["converted"].is_null() || f["converted"].is_string()),
            "{f}"
        );
    }
    let dir = out.canonicalize().unwrap();
    let key = dir.join("azure-iot-private-key.pem");
    assert_eq!(
        v["next"],
        serde_json::json!([
            format!("chmod 0711 {}", dir.display()),
            format!(
                "chown aziotcs:aziotcs {} {} {}",
                dir.join("azure-iot-certificate.pem").display(),
                dir.join("azure-iot-chain.pem").display(),
                dir.join("azure-iot-root-ca.pem").display()
            ),
            format!("chown aziotks:aziotks {}", key.display()),
        ])
    );
    // Text: one line per file, mode in octal with its 0, then the commands.
    let (code, text, _) = aziot.run().await.parts();
    assert_eq!(code, 0);
    let key_bytes = std::fs::metadata(&key).unwrap().len();
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "wrote {} ({key_bytes} bytes, mode 0600",
            key.display()
        )) && l.ends_with(')')),
        "{text}"
    );
    assert!(
        text.contains(&format!("next: chown aziotks:aziotks {}\n", key.display())),
        "{text}"
    );
}

/// Item 6: `--owner USER:GROUP` gives the files and the directory to that owner (root only;
/// otherwise exit 9 naming the step).
#[tokio::test]
async fn export_owner_chowns_the_files_and_the_directory() {
    let (tmp, store) = store_with(&[Target::AwsIot]).await;
    let out = tmp.path().join("for-app");
    let owner = krypton_host::files::resolve_owner("nobody").unwrap();
    let export_as_nobody = async |out: &std::path::Path| {
        cli(["export", "aws-iot", "--format", "aws-iot"])
            .set("--out", text(out))
            .store(&store)
            .args(["--owner", "nobody"])
            .json()
            .run()
            .await
            .parts()
    };
    let (code, stdout, stderr) = export_as_nobody(&out).await;
    if !rustix::process::geteuid().is_root() {
        assert_eq!(code, 9, "{stdout}{stderr}");
        assert_eq!(one_object(&stdout, "owner")["error"]["kind"], "storage");
        return;
    }
    assert_eq!(code, 0, "{stderr}");
    let v = one_object(&stdout, "export");
    assert_eq!(v["owner"], "nobody");
    assert_eq!(v["next"], serde_json::json!([]));
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (owner.uid, owner.gid));
    for f in v["files"].as_array().unwrap() {
        let meta = std::fs::metadata(f["path"].as_str().unwrap()).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (owner.uid, owner.gid), "{f}");
    }
    assert_ne!(owner.uid, 0);

    // A renewal writes into that directory again.
    let (code, _, stderr) = export_as_nobody(&out).await;
    assert_eq!(code, 0, "the renewal was refused: {stderr}");

    // An existing directory keeps its owner (an `--out /etc` must not give /etc away); only
    // the files written are handed over.
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, stderr) = export_as_nobody(&existing).await;
    assert_eq!(code, 0, "{stderr}");
    let meta = std::fs::metadata(&existing).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o755));

    // Nested: the parents it creates are reachable by the owner (0755), the leaf is theirs.
    let nested = tmp.path().join("a").join("b").join("app");
    let (code, _, stderr) = export_as_nobody(&nested).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::metadata(tmp.path().join("a/b")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(std::fs::metadata(&nested).unwrap().uid(), owner.uid);
}

/// Item 4 and 6: every command documents its exit codes; `export` documents each argument.
#[tokio::test]
async fn every_command_documents_its_exit_codes_and_export_its_arguments() {
    for command in [
        "provision",
        "status",
        "mock",
        "demo",
        "export",
        "run",
        "reload",
        "keygen",
        "sign",
        "doctor",
        "wireguard-config",
    ] {
        let (code, stdout, _) = run_cli(&[command, "--help"]).await;
        assert_eq!(code, 0, "{command}");
        assert!(
            stdout.contains("Exit codes") && stdout.contains("11  [not-provisioned]"),
            "{command} --help:\n{stdout}"
        );
    }
    let (_, help, _) = run_cli(&["export", "--help"]).await;
    for needle in [
        "The stored bundle to export: azure-iot (formats pem, aziot)",
        "pem: certificate, chain, private key and root CA",
        "refused before anything is created",
        "Directory to write into",
        "--owner <USER[:GROUP]>",
        "aziotks",
    ] {
        assert!(help.contains(needle), "`{needle}` missing:\n{help}");
    }
}

/// Item 4: sizes in a report are JSON numbers (`"bytes": 27`, not `"27"`), in `provision`
/// and in `status`.
#[tokio::test]
async fn sizes_in_reports_are_json_numbers() {
    let fx = Fixture::new().await;
    for (target, key) in [("userdata", "bytes"), ("subscriber-metadata", "fields")] {
        let (code, stdout, stderr) = fx.provision(target).json().run().await.parts();
        assert_eq!(code, 0, "{stderr}");
        let v = one_object(&stdout, target);
        assert!(v[key].is_u64(), "{target}: `{key}` is not a number: {v}");
        assert!(v[key].as_u64().unwrap() > 0, "{v}");
    }
    let (code, stdout, _) = fx.status(None).json().run().await.parts();
    assert_eq!(code, 0);
    let v = one_object(&stdout, "status");
    let userdata = v["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["target"] == "userdata")
        .unwrap();
    assert_eq!(
        userdata["bytes"],
        krypton_mock::CANARY_USERDATA.len() as u64
    );
    fx.stop().await;
}
