//! The host trusts no `targets()` list and no hint blindly: the hostile component answers a
//! hostile list when its marker is rewritten (see `tests/components/hostile`), and fails with a
//! hostile hint on request. A refused list stops the CLI with exit 1 before the store is made,
//! and a daemon keeps serving the version it has.

use super::support::*;
use krypton_host::component::lifecycle::{Lifecycle, ReloadOutcome};
use krypton_host_cli::output;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MARKER: &[u8] = b"krypton-hostile-targets:empty";

/// A copy of the hostile component in `dir` whose `targets()` answers the list `name` (at most
/// 16 bytes: the marker's room).
fn hostile_with_targets(dir: &Path, name: &str) -> PathBuf {
    let mut bytes = hostile_wasm();
    let starts: Vec<usize> = bytes
        .windows(MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == MARKER)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.len(), 1, "the marker is in the component once");
    let at = starts[0] + MARKER.len() - "empty".len();
    let room = &mut bytes[at..at + 16];
    assert!(name.len() <= room.len());
    room.fill(0);
    room[..name.len()].copy_from_slice(name.as_bytes());
    let path = dir.join(format!("hostile-{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every hostile list, and the refusal the CLI prints for it (after `error: `).
const REFUSED: [(&str, &str); 8] = [
    (
        "many",
        "the component's targets() lists 5000 targets; at most 64",
    ),
    (
        "escape",
        "the component's targets() entry 0: name `\\u{1b}]0;pwned\\u{7}\\u{1b}[2Jazure-iot` is not a plain name (1-64 bytes of `[a-z0-9-]`, words starting with a letter)",
    ),
    (
        "dotdot",
        "the component's targets() entry 0: name `../../azure-iot` is not a plain name (1-64 bytes of `[a-z0-9-]`, words starting with a letter)",
    ),
    (
        "duplicate",
        "the component's targets() entry 1: `azure-iot` is listed twice",
    ),
    (
        "mismatch",
        "the component's targets() entry 0: name `azure-iot` does not match its target case `aws-iot`",
    ),
    (
        "huge-summary",
        "the component's targets() entry 0 (`azure-iot`): summary is 1310720 bytes long; at most 256",
    ),
    (
        "format",
        "the component's targets() entry 0 (`azure-iot`): export format `../../x` is not a plain name",
    ),
    (
        "huge-example",
        "the component's targets() entry 0 (`inventory`): parameter `endpoint`: example is 1048576 bytes long; at most 256",
    ),
];

#[tokio::test]
async fn a_hostile_targets_list_stops_the_cli_with_exit_1_before_the_store_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    for (name, refusal) in REFUSED {
        let component = hostile_with_targets(tmp.path(), name);
        for args in [
            vec![
                "provision",
                "azure-iot",
                "--endpoint",
                "https://127.0.0.1:1",
            ],
            vec!["status"],
            vec!["export", "azure-iot", "--format", "pem", "--out"],
        ] {
            let mut args: Vec<&str> = args;
            let out = tmp.path().join("out");
            if args[0] == "export" {
                args.push(out.to_str().unwrap());
            }
            if args[0] == "status" {
                // `status` loads the component only to list a store that exists.
                std::fs::create_dir_all(&store).unwrap();
                std::fs::set_permissions(
                    &store,
                    std::os::unix::fs::PermissionsExt::from_mode(0o700),
                )
                .unwrap();
            }
            args.extend([
                "--component",
                component.to_str().unwrap(),
                "--store",
                store.to_str().unwrap(),
            ]);
            let (code, stdout, stderr) = run_cli(&args).await;
            assert_eq!(code, 1, "{name} {args:?}: {stderr}");
            assert_eq!(stdout, "", "{name}");
            assert!(
                stderr.contains(&format!("error: {refusal}")),
                "{name} {args:?}: {stderr}"
            );
            // Bounded, and never a raw escape from the component on the terminal.
            assert!(stderr.len() < 2048, "{name}: {} bytes", stderr.len());
            assert!(!stderr.contains('\u{1b}'), "{name}: {stderr:?}");
            assert!(!out.exists(), "{name}: export made its directory");
            if args[0] != "status" {
                assert!(!store.exists(), "{name} {args:?}: the store was made");
            }
            let _ = std::fs::remove_dir(&store);
        }
    }
}

#[tokio::test]
async fn a_plain_targets_list_is_served_and_names_outside_it_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let component = hostile_with_targets(tmp.path(), "arc");
    let store = tmp.path().join("store");
    let common = [
        "--component",
        component.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ];
    let mut args = vec!["provision", "azure-iot"];
    args.extend(common);
    let (code, _, stderr) = run_cli(&args).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("invalid value 'azure-iot' for '<TARGET>': unknown target `azure-iot`; expected one of: arc"),
        "{stderr}"
    );
    let mut args = vec!["status", "arc"];
    args.extend(common);
    let (code, _, stderr) = run_cli(&args).await;
    assert_eq!(code, 11, "{stderr}");
    assert!(
        stderr.contains("no `arc` bundle is stored: the store"),
        "{stderr}"
    );
}

/// A daemon's lifecycle in `dir` that refuses to start on the hostile component `hostile` (its
/// error names `refusal`), then starts on the built-in component: the lifecycle, its component
/// file and the serving digest.
async fn refused_at_start_then_serving(
    dir: &Path,
    hostile: &str,
    refusal: &str,
) -> (Lifecycle, PathBuf, String) {
    let runtime = Arc::new(Runtime::new().unwrap());
    let file = dir.join("component.wasm");
    std::fs::copy(hostile_with_targets(dir, hostile), &file).unwrap();
    let refused = Lifecycle::start(runtime.clone(), Some(file.clone()), None).await;
    let message = format!("{:#}", refused.err().unwrap());
    assert!(message.contains(refusal), "{message}");
    std::fs::write(&file, DEFAULT_COMPONENT).unwrap();
    let lifecycle = Lifecycle::start(runtime, Some(file.clone()), None)
        .await
        .unwrap();
    let serving = lifecycle.current().digest.clone();
    (lifecycle, file, serving)
}

#[tokio::test]
async fn a_daemon_refuses_a_hostile_targets_list_at_start_and_on_swap() {
    let tmp = tempfile::tempdir().unwrap();
    // At start: nothing to fall back to, so the start fails with the refusal.
    let (lifecycle, file, serving) =
        refused_at_start_then_serving(tmp.path(), "escape", REFUSED[1].1).await;

    // On a swap: the serving version keeps serving, for every hostile list.
    let names = lifecycle.current().targets.names().join(",");
    assert_eq!(names, TARGET_NAMES.join(","));
    for (name, refusal) in REFUSED {
        let next = hostile_with_targets(tmp.path(), name);
        std::fs::rename(&next, &file).unwrap();
        let message = format!("{:#}", lifecycle.reload().await.unwrap_err());
        assert!(message.contains(refusal), "{name}: {message}");
        assert_eq!(lifecycle.current().digest, serving, "{name}");
    }
    // The version with a plain list swaps in: the check refuses only what is wrong.
    std::fs::rename(hostile_with_targets(tmp.path(), "arc"), &file).unwrap();
    assert!(matches!(
        lifecycle.reload().await.unwrap(),
        ReloadOutcome::Swapped(_)
    ));
    assert_eq!(lifecycle.current().targets.names(), ["arc"]);
}

#[tokio::test]
async fn a_hostile_hint_reaches_the_operator_bounded_and_without_escapes() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = Runtime::new().unwrap();
    let pre = rt.load(&hostile_wasm()).unwrap();
    let store = SecretStore::open(tmp.path().join("store")).unwrap();
    let mut req = request(Target::Userdata, "https://127.0.0.1:1".into());
    let policy = policy(&req.endpoint, None);

    req.request_parameters = Some("hostile:hint-escape".into());
    let failure = rt
        .provision(&pre, policy.clone(), store.clone(), &req)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        output::error_text(&failure),
        "error: invalid request: hostile hint\nhint: ?]0;pwned??[2J?run ?gnp.exe"
    );
    // JSON escapes control characters itself; the text is the component's.
    assert_eq!(
        output::error_json(&failure)["error"]["hint"],
        "\u{1b}]0;pwned\u{7}\u{1b}[2J\rrun \u{202e}gnp.exe"
    );

    req.request_parameters = Some("hostile:hint-huge".into());
    let failure = rt
        .provision(&pre, policy, store, &req)
        .await
        .unwrap()
        .unwrap_err();
    let cut = format!(
        "{}... ({} more bytes)",
        "h".repeat(output::MAX_COMPONENT_TEXT_CHARS),
        (1 << 20) - output::MAX_COMPONENT_TEXT_CHARS
    );
    assert_eq!(
        output::error_text(&failure),
        format!("error: invalid request: hostile hint\nhint: {cut}")
    );
    assert_eq!(output::error_json(&failure)["error"]["hint"], cut.as_str());
}

/// The hostile component's `export` list with a store whose `status` reports a bundle, and
/// an `--out` that does not exist yet.
struct ExportScene {
    _tmp: tempfile::TempDir,
    component: PathBuf,
    store: PathBuf,
    out: PathBuf,
}

impl ExportScene {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let component = hostile_with_targets(tmp.path(), "export");
        let store = tmp.path().join("store");
        SecretStore::open(&store).unwrap();
        let out = tmp.path().join("out");
        ExportScene {
            _tmp: tmp,
            component,
            store,
            out,
        }
    }

    /// `export arc --format FORMAT` into `out`, with `extra` arguments.
    async fn export(&self, format: &str, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec![
            "export",
            "arc",
            "--format",
            format,
            "--out",
            self.out.to_str().unwrap(),
            "--component",
            self.component.to_str().unwrap(),
            "--store",
            self.store.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_cli(&args).await
    }
}

#[tokio::test]
async fn export_files_the_component_names_badly_are_refused_before_anything_is_created() {
    let scene = ExportScene::new();
    let out = &scene.out;
    let export = async |format: &str| scene.export(format, &[]).await;
    for (format, shown) in [("escape-name", "\\u{1b}[2Jx.pem"), ("twice", "x.pem")] {
        let (code, stdout, stderr) = export(format).await;
        assert_eq!(code, 1, "{format}: {stderr}");
        assert_eq!(stdout, "");
        assert!(
            stderr.contains(&format!(
                "error: the component asked to write `{shown}`, which is not a plain file name or is named twice"
            )),
            "{format}: {stderr}"
        );
        assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
        assert!(!out.exists(), "{format}: --out was created");
    }
    // A note about the file is the component's text: printed without its escapes.
    let (code, stdout, stderr) = export("escape-converted").await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "wrote {} (8 bytes, mode 0644; converted: ?]0;pwned?done)\n",
            out.canonicalize().unwrap().join("x.pem").display()
        )
    );
}

/// Every hostile `default-endpoints()` answer, and the refusal the CLI prints for it.
const REFUSED_ENDPOINTS: [(&str, &str); 3] = [
    (
        "http-endpoint",
        "the component's default-endpoints() entry 0: `http://krypton.hostile.invalid:8036` is not an https URL",
    ),
    (
        "no-sim",
        "the component's default-endpoints() has no endpoint for mode `sim`",
    ),
    (
        "path-endpoint",
        "the component's default-endpoints() entry 0: `https://krypton.hostile.invalid/v1`: give the base URL without a path",
    ),
];

/// Issue 17, item 4: the self-check accepts only what the host serves. A component whose
/// default endpoints are not https origins, or miss a mode, is refused by the CLI (exit 1,
/// before the store is made) and by a daemon at start and on a swap.
#[tokio::test]
async fn hostile_default_endpoints_are_refused_before_a_component_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    for (name, refusal) in REFUSED_ENDPOINTS {
        let component = hostile_with_targets(tmp.path(), name);
        let (code, stdout, stderr) = run_cli(&[
            "provision",
            "arc",
            "--endpoint",
            "https://127.0.0.1:1",
            "--component",
            component.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ])
        .await;
        assert_eq!(code, 1, "{name}: {stderr}");
        assert_eq!(stdout, "", "{name}");
        assert!(
            stderr.contains(&format!("error: {refusal}")),
            "{name}: {stderr}"
        );
        assert!(!store.exists(), "{name}: the store was made");
    }

    let (lifecycle, file, serving) =
        refused_at_start_then_serving(tmp.path(), "no-sim", REFUSED_ENDPOINTS[1].1).await;
    for (name, refusal) in REFUSED_ENDPOINTS {
        std::fs::rename(hostile_with_targets(tmp.path(), name), &file).unwrap();
        let message = format!("{:#}", lifecycle.reload().await.unwrap_err());
        assert!(message.contains(refusal), "{name}: {message}");
        assert_eq!(lifecycle.current().digest, serving, "{name}");
    }
    // A plain answer swaps in, and its endpoints are the ones served.
    std::fs::rename(hostile_with_targets(tmp.path(), "arc"), &file).unwrap();
    assert!(matches!(
        lifecycle.reload().await.unwrap(),
        ReloadOutcome::Swapped(_)
    ));
    let facts = &lifecycle.current().facts;
    assert_eq!(
        facts
            .endpoint(krypton_host::bindings::AuthMode::Network, None)
            .unwrap(),
        "https://krypton.hostile.invalid:8036"
    );
}

/// Issue 17, item 4: the host names no SORACOM host of its own. Given no endpoint, `doctor`
/// checks the component's network-mode endpoint, and a coverage the component does not name
/// is a usage error of `provision` before the store is made.
#[tokio::test]
async fn the_default_endpoint_and_the_coverages_are_the_components() {
    let tmp = tempfile::tempdir().unwrap();
    let component = hostile_with_targets(tmp.path(), "arc");
    let (code, stdout, stderr) = run_cli(&[
        "doctor",
        "--json",
        "--no-connect",
        "--address",
        "192.0.2.1",
        "--component",
        component.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["endpoint"], "https://krypton.hostile.invalid:8036");
    assert_eq!(json["host"], "krypton.hostile.invalid");
    assert_eq!(json["port"], 8036);

    let store = tmp.path().join("store");
    let (code, _, stderr) = run_cli(&[
        "provision",
        "arc",
        "--mode",
        "sim",
        "--coverage",
        "japan",
        "--component",
        component.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "invalid value 'japan' for '--coverage <COVERAGE>': unknown coverage `japan`; the component knows: global"
        ),
        "{stderr}"
    );
    assert!(!store.exists(), "the store was made");
}

/// Issue 17, item 4: the accounts that must own exported files are the component's
/// (`export-file.owner`): the host groups the files by account, in the order the files first
/// name them, and refuses an owner that is not an account name before anything is created.
#[tokio::test]
async fn export_owners_are_the_components_and_checked() {
    let scene = ExportScene::new();
    let out = &scene.out;
    let export = async |format: &str| scene.export(format, &["--json"]).await;
    let (code, stdout, stderr) = export("shell-owner").await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "the component named `root;touch /tmp/pwned` as the owner of `x.pem`, which is not an account name"
        ),
        "{stdout}"
    );
    assert!(!out.exists(), "--out was created");

    let (code, stdout, stderr) = export("owned").await;
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let dir = out.canonicalize().unwrap();
    let at = |name: &str| dir.join(name).display().to_string();
    assert_eq!(
        v["next"],
        serde_json::json!([
            format!("chmod 0711 {}", dir.display()),
            format!("chown svc-a:svc-a {} {}", at("a.pem"), at("c.pem")),
            format!("chown svc-b:svc-b {}", at("b.pem")),
        ])
    );
}
