//! Precompiled components (issue 11, section 1): `krypton-host compile` for x86-64 and AArch64,
//! the signed `.cwasm` provisioning through the full build and through the gateway build (no
//! compiler), hot swaps of `.cwasm` files in the daemon's lifecycle, and every refusal: an
//! artifact for another architecture, unsigned, tampered, signed by another key, for another
//! wasmtime, writable by others; a `.wasm` handed to the gateway build. A refusal stores
//! nothing and calls Krypton never.

use super::support::*;
use krypton_host::component::ComponentPolicy;
use krypton_host::component::lifecycle::{Lifecycle, ReloadOutcome};
use krypton_host::component::precompiled::{self, FileKind, HOST_TARGET};
use krypton_host::engine::WASMTIME_VERSION;
use krypton_host::signing::{self, PrecompiledFacts, signature_path};
use krypton_mock::MockKrypton;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The version the built-in component reports (its crate version).
const REAL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The AArch64 triple on an x86-64 host and the other way round: an artifact this host refuses.
fn foreign_target() -> &'static str {
    if HOST_TARGET.starts_with("x86_64-") {
        "aarch64-unknown-linux-gnu"
    } else {
        "x86_64-unknown-linux-gnu"
    }
}

/// This host's target among those `compile` accepts.
fn own_target() -> &'static str {
    if HOST_TARGET.starts_with("x86_64-") {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    }
}

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
}

/// `(source, artifact)`: the built-in component compiled for `target` through the library,
/// once per test binary (the CLI's `compile` has its own test).
fn artifact(target: &'static str) -> &'static (Vec<u8>, Vec<u8>) {
    type Compiled = &'static (Vec<u8>, Vec<u8>);
    static CACHE: OnceLock<std::sync::Mutex<Vec<(&'static str, Compiled)>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    if let Some((_, found)) = cache.iter().find(|(t, _)| *t == target) {
        return found;
    }
    let compiled = precompiled::precompile(DEFAULT_COMPONENT, target).unwrap();
    let entry: Compiled = Box::leak(Box::new((DEFAULT_COMPONENT.to_vec(), compiled)));
    cache.push((target, entry));
    entry
}

/// What a signature made by `compile` binds for `source` compiled to `artifact` for `target`.
fn facts(source: &[u8], artifact: &[u8], target: &str) -> PrecompiledFacts {
    PrecompiledFacts {
        sha256: signing::digest_hex(artifact),
        target: target.to_string(),
        wasmtime: WASMTIME_VERSION.to_string(),
        source_sha256: signing::digest_hex(source),
        version: REAL_VERSION.to_string(),
    }
}

/// Write `artifact` to `path` (0644) and, when given, its `.sig`.
fn install(path: &Path, artifact: &[u8], sig: Option<String>) {
    std::fs::write(path, artifact).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sig_path = signature_path(path);
    let _ = std::fs::remove_file(&sig_path);
    if let Some(text) = sig {
        std::fs::write(sig_path, text).unwrap();
    }
}

/// Install this host's signed artifact of the built-in component at `dir/name`.
fn install_signed(dir: &Path, name: &str) -> PathBuf {
    let (source, compiled) = artifact(own_target());
    let path = dir.join(name);
    let sig = signing::sign_precompiled(&key(), &facts(source, compiled, own_target())).unwrap();
    install(&path, compiled, Some(sig));
    path
}

/// `provision azure-iot` through `bin` with the `.cwasm` at `component`, against the
/// fixture's mock, no compile cache: `(exit code, the JSON object on stdout or Null, stderr)`.
async fn provision_with(
    bin: &str,
    fx: &Fixture,
    component: &Path,
    trusted: Option<&str>,
) -> (i32, Value, String) {
    let mut command = fx
        .provision("azure-iot")
        .poll_ms(100)
        .attempts(1)
        .set("--component", text(component))
        .json()
        .bin(bin)
        .env_remove("KRYPTON_COMPONENT")
        .env_remove("KRYPTON_TRUSTED_PUBLIC_KEY")
        .env("KRYPTON_CACHE_DIR", "");
    if let Some(key) = trusted {
        command = command.args(["--trusted-public-key", key]);
    }
    let run = command.run().await;
    (run.code, run.json_or_null(), run.stderr)
}

/// The Azure report and bundle hold exactly what the mock issued, field by field.
fn assert_azure_provisioned(mock: &MockKrypton, report: &Value, store: &Path) {
    let issued = &mock.issued()[0];
    assert_eq!(issued.target, "azure-iot");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["target"], "azure-iot");
    assert_eq!(report["reused"], false);
    assert_eq!(report["deviceId"], issued.id.as_str());
    assert_eq!(report["host"], issued.host.as_str());
    assert_eq!(
        report["operationId"],
        issued.operation_id.as_deref().unwrap()
    );
    let bundle = read_bundle(store, "azure-iot");
    assert_eq!(bundle["deviceId"], issued.id.as_str());
    assert_eq!(bundle["host"], issued.host.as_str());
    assert_eq!(
        bundle["operationId"],
        issued.operation_id.as_deref().unwrap()
    );
    assert_eq!(bundle["certificate"], issued.certificate_pem.as_str());
    assert_eq!(bundle["privateKey"], issued.private_key_pem.as_str());
    assert_eq!(bundle["rootCaCertificate"], issued.root_ca_pem.as_str());
    assert_key_matches_cert(
        bundle["privateKey"].as_str().unwrap(),
        bundle["certificate"].as_str().unwrap(),
    );
    assert_eq!(mode(&store.join("azure-iot.json")), 0o600);
    assert_eq!(mode(store), 0o700);
}

/// A refused run: exit 3, the one JSON object names the reason, Krypton was never called and
/// nothing was stored.
fn assert_refused(fx: &Fixture, outcome: &(i32, Value, String), expected: &[&str]) {
    let (code, json, stderr) = outcome;
    assert_eq!(*code, 3, "{json} {stderr}");
    assert_eq!(json["ok"], false, "{json}");
    assert_eq!(json["error"]["kind"], "invalid-request", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    for part in expected {
        assert!(message.contains(part), "`{part}` not in: {message}");
    }
    assert!(fx.mock.requests().is_empty(), "Krypton was called");
    let store = &fx.store;
    assert!(
        !store.exists() || std::fs::read_dir(store).unwrap().next().is_none(),
        "something was stored"
    );
}

/// `compile` for this host and for the other architecture through the CLI; the full build
/// then provisions from this host's signed `.cwasm` and refuses the other one with what to run.
#[tokio::test]
async fn compile_then_the_full_build_provisions_from_the_signed_cwasm() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = tmp.path().join("krypton.wasm");
    std::fs::write(&wasm, DEFAULT_COMPONENT).unwrap();
    let key_file = tmp.path().join("signing.key");
    let seed: String = key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(&key_file, seed).unwrap();
    let mut outputs = Vec::new();
    for target in [own_target(), foreign_target()] {
        let out = tmp.path().join(format!("{target}.cwasm"));
        let (code, stdout, stderr) = run_cli(&[
            "compile",
            wasm.to_str().unwrap(),
            "--target",
            target,
            "--out",
            out.to_str().unwrap(),
            "--signing-key",
            key_file.to_str().unwrap(),
            "--json",
        ])
        .await;
        assert_eq!(code, 0, "{stderr}");
        let report: Value = serde_json::from_str(stdout.trim()).unwrap();
        let written = std::fs::read(&out).unwrap();
        assert_eq!(precompiled::kind(&written), FileKind::Precompiled);
        assert_eq!(report["ok"], true);
        assert_eq!(report["target"], target);
        assert_eq!(report["version"], REAL_VERSION);
        assert_eq!(report["wasmtime"], WASMTIME_VERSION);
        assert_eq!(
            report["sourceSha256"],
            signing::digest_hex(DEFAULT_COMPONENT)
        );
        assert_eq!(report["sha256"], signing::digest_hex(&written));
        assert_eq!(report["bytes"], written.len());
        assert_eq!(report["artifact"], out.to_str().unwrap());
        assert_eq!(report["signature"], signature_path(&out).to_str().unwrap());
        assert_eq!(mode(&out), 0o644);
        // The `.sig` binds exactly these facts.
        let sig = std::fs::read(signature_path(&out)).unwrap();
        let bound = signing::verify_precompiled(
            &key().verifying_key(),
            &signing::digest_hex(&written),
            &sig,
        )
        .unwrap();
        assert_eq!(bound, facts(DEFAULT_COMPONENT, &written, target));
        outputs.push(out);
    }
    // An unsupported target is a usage error, before anything is compiled.
    let (code, _, stderr) = run_cli(&[
        "compile",
        wasm.to_str().unwrap(),
        "--target",
        "riscv64gc-unknown-linux-gnu",
        "--out",
        tmp.path().join("x.cwasm").to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("aarch64-unknown-linux-gnu"), "{stderr}");

    // This host's artifact provisions, field by field.
    let fx = Fixture::new().await;
    let trusted = public_key_b64(&key());
    let (code, report, stderr) = provision_with(BIN, &fx, &outputs[0], Some(&trusted)).await;
    assert_eq!(code, 0, "{stderr}");
    assert_azure_provisioned(&fx.mock, &report, &fx.store);
    // status from the same artifact.
    let (code, stdout, stderr) = fx
        .status(Some("azure-iot"))
        .set("--component", text(&outputs[0]))
        .args(["--trusted-public-key", &trusted])
        .json()
        .run()
        .await
        .parts();
    assert_eq!(code, 0, "{stderr}");
    let status: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        status["bundles"][0]["deviceId"], report["deviceId"],
        "{status}"
    );
    fx.stop().await;

    // The other architecture's artifact: refused with the command that makes the right one.
    let fx = Fixture::new().await;
    let outcome = provision_with(BIN, &fx, &outputs[1], Some(&trusted)).await;
    assert_refused(
        &fx,
        &outcome,
        &[
            &format!("was compiled for {}", foreign_target()),
            &format!("this host is {HOST_TARGET}"),
            &format!("krypton-host compile COMPONENT.wasm --target {HOST_TARGET}"),
        ],
    );
    fx.stop().await;
}

/// Unsigned, tampered, wrongly signed, wrong-target, wrong-wasmtime, a component's `.sig`,
/// writable by others, no trusted key: each refused with its reason, exit 3, nothing stored.
#[tokio::test]
async fn artifacts_that_fail_a_check_are_refused_and_store_nothing() {
    let (source, compiled) = artifact(own_target());
    let good = facts(source, compiled, own_target());
    let sign = |facts: &PrecompiledFacts| Some(signing::sign_precompiled(&key(), facts).unwrap());
    let mut tampered = compiled.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x40;
    let (foreign_source, foreign) = artifact(foreign_target());
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[10u8; 32]);
    let trusted = public_key_b64(&key());
    // (case, artifact bytes, its `.sig`, the trusted key given, what the refusal says)
    type Case<'a> = (
        &'a str,
        Vec<u8>,
        Option<String>,
        Option<&'a str>,
        Vec<String>,
    );
    let cases: Vec<Case> = vec![
        (
            "unsigned",
            compiled.clone(),
            None,
            Some(&trusted),
            vec![
                "needs its signature beside it".into(),
                "--signing-key".into(),
            ],
        ),
        (
            "no trusted key",
            compiled.clone(),
            sign(&good),
            None,
            vec!["runs only when its signature verifies with a trusted key".into()],
        ),
        (
            "tampered",
            tampered,
            sign(&good),
            Some(&trusted),
            vec!["is for other bytes".into()],
        ),
        (
            "another key",
            compiled.clone(),
            Some(signing::sign_precompiled(&other_key, &good).unwrap()),
            Some(&trusted),
            vec!["does not verify with the trusted key".into()],
        ),
        (
            "another target",
            foreign.clone(),
            sign(&facts(foreign_source, foreign, foreign_target())),
            Some(&trusted),
            vec![format!("was compiled for {}", foreign_target())],
        ),
        (
            "another wasmtime",
            compiled.clone(),
            sign(&PrecompiledFacts {
                wasmtime: "47.0.0".into(),
                ..good.clone()
            }),
            Some(&trusted),
            vec![format!(
                "compiled by wasmtime 47.0.0, and this host runs wasmtime {WASMTIME_VERSION}"
            )],
        ),
        (
            "a component signature",
            compiled.clone(),
            Some(signing::sign(&key(), compiled, REAL_VERSION).unwrap()),
            Some(&trusted),
            vec!["is a component signature".into()],
        ),
    ];
    for (_case, bytes, sig, key, expected) in cases {
        let fx = Fixture::new().await;
        let file = fx.path("krypton.cwasm");
        install(&file, &bytes, sig);
        let outcome = provision_with(BIN, &fx, &file, key).await;
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        assert_refused(&fx, &outcome, &expected);
        fx.stop().await;
    }
    // Native code that group or others could rewrite under the mapping.
    let fx = Fixture::new().await;
    let file = install_signed(fx.dir(), "krypton.cwasm");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
    let outcome = provision_with(BIN, &fx, &file, Some(&trusted)).await;
    assert_refused(&fx, &outcome, &["has mode 664", "chmod go-w"]);
    fx.stop().await;
}

/// The daemon's lifecycle serves a `.cwasm`, hot-swaps to another one, refuses a tampered one
/// (the current one keeps serving), and never starts from an artifact without a trusted key.
#[tokio::test]
async fn the_daemon_lifecycle_hot_swaps_cwasm_files() {
    let tmp = tempfile::tempdir().unwrap();
    let file = install_signed(tmp.path(), "krypton.cwasm");
    let runtime = Arc::new(Runtime::new().unwrap());
    let err = Lifecycle::start_with(
        runtime.clone(),
        Some(file.clone()),
        ComponentPolicy::default(),
    )
    .await
    .err()
    .unwrap();
    assert!(
        format!("{err:#}").contains("runs only when its signature verifies with a trusted key"),
        "{err:#}"
    );
    // The next build below is signed as the same version: allowed on purpose (other bytes
    // signed as the serving version are refused like a downgrade unless allowed).
    let policy = ComponentPolicy {
        trusted_key: Some(key().verifying_key()),
        floor: Some(signing::VersionFloor::new(tmp.path(), true)),
    };
    let lifecycle = Lifecycle::start_with(runtime, Some(file.clone()), policy)
        .await
        .unwrap();
    let (_, first) = artifact(own_target());
    let current = lifecycle.current();
    assert!(current.signed);
    assert_eq!(current.version, REAL_VERSION);
    assert_eq!(current.digest, signing::digest_hex(first));
    assert_eq!(current.targets.find("azure-iot").unwrap().name, "azure-iot");
    assert_eq!(lifecycle.reload().await.unwrap(), ReloadOutcome::Unchanged);

    // A new build, precompiled and signed: swapped in. (Compiled code keeps no custom section,
    // so a variant of the component compiles to the same bytes; the new artifact is the first
    // one with bytes appended after its last ELF section, which wasmtime leaves unread.)
    let (source, _) = artifact(own_target());
    let mut second = first.clone();
    second.extend_from_slice(b"next build");
    let second = &second;
    let tmp_file = tmp.path().join("next.cwasm");
    let sig = signing::sign_precompiled(&key(), &facts(source, second, own_target())).unwrap();
    install(&tmp_file, second, Some(sig.clone()));
    std::fs::rename(signature_path(&tmp_file), signature_path(&file)).unwrap();
    std::fs::rename(&tmp_file, &file).unwrap();
    let digest = signing::digest_hex(second);
    assert_eq!(
        lifecycle.reload().await.unwrap(),
        ReloadOutcome::Swapped(digest.clone())
    );
    assert_eq!(lifecycle.current().digest, digest);
    // It serves: a status call through the swapped-in version.
    let store = krypton_host::SecretStore::open(tmp.path().join("store")).unwrap();
    let target = lifecycle
        .current()
        .targets
        .find("azure-iot")
        .unwrap()
        .target;
    assert_eq!(
        lifecycle.status(store, target).await.unwrap().unwrap(),
        None
    );

    // A tampered file with the old signature: refused, the swapped-in version keeps serving.
    let mut tampered = second.clone();
    let middle = tampered.len() / 3;
    tampered[middle] ^= 1;
    install(&file, &tampered, Some(sig));
    let err = lifecycle.reload().await.unwrap_err();
    assert!(format!("{err:#}").contains("is for other bytes"), "{err:#}");
    assert_eq!(lifecycle.current().digest, digest);
}

/// The gateway binary (`--no-default-features --features gateway`): found through
/// `KRYPTON_GATEWAY_BIN`, which `.ci/run` sets after building it; required under CI.
fn gateway_bin() -> Option<String> {
    match std::env::var("KRYPTON_GATEWAY_BIN") {
        Ok(bin) if !bin.is_empty() => {
            assert!(
                Path::new(&bin).is_file(),
                "KRYPTON_GATEWAY_BIN={bin} is not a file"
            );
            Some(bin)
        }
        _ => {
            let how = "build it with `cargo build -p krypton-host-cli --no-default-features --features \
                       gateway`, copy target/debug/krypton-host elsewhere, and set \
                       KRYPTON_GATEWAY_BIN to the copy (.ci/run does)";
            assert!(
                std::env::var_os("CI").is_none(),
                "KRYPTON_GATEWAY_BIN is not set: {how}"
            );
            eprintln!("the gateway build is not available; skipped ({how})");
            None
        }
    }
}

/// The gateway build provisions from a signed `.cwasm`, field by field; it refuses a `.wasm`,
/// runs nothing without `--component`, and has no `compile`, `sign`, `mock` or `demo`.
#[tokio::test]
async fn the_gateway_build_provisions_from_a_signed_cwasm_and_refuses_a_wasm() {
    let Some(gateway) = gateway_bin() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = install_signed(tmp.path(), "krypton.cwasm");
    let trusted = public_key_b64(&key());
    let fx = Fixture::new().await;
    let (code, report, stderr) = provision_with(&gateway, &fx, &file, Some(&trusted)).await;
    assert_eq!(code, 0, "{stderr}");
    assert_azure_provisioned(&fx.mock, &report, &fx.store);
    fx.stop().await;

    // A .wasm: refused with the way out, nothing called or stored.
    let fx = Fixture::new().await;
    let wasm = fx.path("krypton.wasm");
    std::fs::write(&wasm, DEFAULT_COMPONENT).unwrap();
    let outcome = provision_with(&gateway, &fx, &wasm, Some(&trusted)).await;
    assert_refused(
        &fx,
        &outcome,
        &[
            "has no compiler and runs only signed precompiled components",
            &format!("krypton-host compile COMPONENT.wasm --target {HOST_TARGET}"),
        ],
    );
    fx.stop().await;

    // No --component: there is no built-in component to fall back on.
    let out = std::process::Command::new(&gateway)
        .args(["status", "azure-iot", "--store"])
        .arg(tmp.path().join("none"))
        .arg("--json")
        .env_remove("KRYPTON_COMPONENT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has no built-in component: give --component FILE.cwasm"),
        "{json}"
    );
    for absent in ["compile", "sign", "mock", "demo", "bench-swap"] {
        let out = std::process::Command::new(&gateway)
            .arg(absent)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{absent}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"),
            "{absent}"
        );
    }
}

/// Wait until the daemon has provisioned `azure-iot` again (its pass runs the component's
/// `status` and `provision`, so its code runs), then check that the daemon is alive and
/// serves `digest` at `version`.
async fn serves_after_a_pass(
    daemon: &mut tokio::process::Child,
    socket: &Path,
    bundle: &Path,
    digest: &str,
    log: &Path,
) {
    let _ = std::fs::remove_file(bundle);
    for _ in 0..600 {
        if bundle.exists() {
            break;
        }
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!(
                "the daemon died ({status:?}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        bundle.exists(),
        "no pass provisioned: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon died");
    let status = daemon_status(socket).await;
    assert_eq!(status["serving"], digest, "{status:?}");
    assert_eq!(status["signed"], "true", "{status:?}");
    let answer = control(socket, "status").await;
    assert_eq!(
        answer.split_whitespace().nth(2),
        Some(REAL_VERSION),
        "{answer}"
    );
}

/// Issue 18, item 4: what runs is exactly the bytes that were verified. Under a running
/// daemon serving a signed `.cwasm`, the file is truncated in place (`: > artifact`), then
/// overwritten in place with other native code (`cp other artifact`, which opens with
/// `O_TRUNC` and writes the same inode): each time the daemon refuses the changed file, keeps
/// serving the verified version (a pass provisions, status answers, no SIGBUS), until a swap
/// verifies a new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_overwritten_in_place_changes_nothing_until_a_swap_verifies_it() {
    let fx = Fixture::new().await;
    let file = install_signed(fx.dir(), "krypton.cwasm");
    let (_, first) = artifact(own_target());
    let digest = signing::digest_hex(first);
    let socket = fx.path("control.sock");
    let log = fx.path("daemon.log");
    let bundle = fx.store.join("azure-iot.json");
    let config = fx
        .gateway()
        .path("component", &file)
        .string("trusted_public_key", &public_key_b64(&key()))
        .set("check_interval_secs", 1)
        .path("control_socket", &socket)
        // The last step swaps in a new build signed as the same version: allowed on purpose
        // (otherwise refused like a downgrade).
        .set("allow_downgrade", true)
        .target("azure-iot")
        .write(&fx.path("gateway.toml"));
    let mut daemon = spawn_daemon(&config, &log);
    wait_until("the first bundle", || bundle.exists()).await;
    serves_after_a_pass(&mut daemon, &socket, &bundle, &digest, &log).await;

    // `: > artifact`: the same inode, now empty.
    let shell = |script: &str| {
        let status = std::process::Command::new("sh")
            .args(["-c", script, "sh", file.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    };
    let inode =
        |path: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
    let before = inode(&file);
    shell(": > \"$1\"");
    assert_eq!(inode(&file), before);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0);
    let answer = control(&socket, "reload").await;
    assert!(answer.starts_with("error "), "{answer}");
    serves_after_a_pass(&mut daemon, &socket, &bundle, &digest, &log).await;

    // `cp other artifact`: other native code (the other architecture's artifact) in the same
    // inode, with the first one's `.sig` still beside it.
    let (_, other) = artifact(foreign_target());
    let other_path = fx.path("other.cwasm");
    std::fs::write(&other_path, other).unwrap();
    shell(&format!("cp '{}' \"$1\"", other_path.display()));
    assert_eq!(inode(&file), before);
    assert_eq!(std::fs::read(&file).unwrap(), *other);
    let answer = control(&socket, "reload").await;
    assert!(answer.starts_with("error "), "{answer}");
    serves_after_a_pass(&mut daemon, &socket, &bundle, &digest, &log).await;

    // A new signed file: verified, then swapped in.
    let mut second = first.clone();
    second.extend_from_slice(b"next build");
    let sig = signing::sign_precompiled(&key(), &facts(DEFAULT_COMPONENT, &second, own_target()))
        .unwrap();
    install(&file, &second, Some(sig));
    let second_digest = signing::digest_hex(&second);
    // (The file watcher may have swapped it in first.)
    let answer = control(&socket, "reload").await;
    assert!(
        [
            format!("ok swapped {second_digest}"),
            format!("ok unchanged {second_digest}")
        ]
        .contains(&answer.trim().to_string()),
        "{answer}"
    );
    serves_after_a_pass(&mut daemon, &socket, &bundle, &second_digest, &log).await;
    stop(daemon).await;
    fx.stop().await;
}
