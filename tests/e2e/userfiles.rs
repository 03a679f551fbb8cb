//! Item 8: files read from paths the user gives (regular files only, with a size cap) and
//! the files exports write (no symlink followed, the mode set on the open file).

use super::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
}

/// Run the binary, failing the test if it does not finish in 20 s (a FIFO read used to block
/// forever).
async fn run_bounded(args: &[&str]) -> (i32, String, String) {
    bounded(cli(args)).await
}

/// [`run_bounded`] for a built command line.
async fn bounded(command: Cli) -> (i32, String, String) {
    command.run_within(Duration::from_secs(20)).await.parts()
}

#[tokio::test]
async fn fifos_directories_and_huge_files_are_refused_as_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let huge = dir.join("huge.conf");
    let mut text = String::from("[Interface]\n[Peer]\n");
    while text.len() <= 1024 * 1024 {
        text.push_str("AllowedIPs = 100.127.0.0/16\n");
    }
    std::fs::write(&huge, &text).unwrap();
    let fifo_s = fifo.to_str().unwrap();
    let dir_s = dir.to_str().unwrap();
    let huge_s = huge.to_str().unwrap();
    let store = dir.join("store");
    let store_s = store.to_str().unwrap();
    let doctor = |flag: &'static str, path: &'static str| -> Vec<String> {
        vec![
            "doctor".into(),
            "--no-connect".into(),
            "--address".into(),
            "100.127.0.1".into(),
            flag.into(),
            path.into(),
        ]
    };
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (doctor("--wireguard", leak(fifo_s)), "not a regular file"),
        (doctor("--wireguard", leak(dir_s)), "not a regular file"),
        (
            doctor("--wireguard", leak(huge_s)),
            "more than the 1048576 bytes",
        ),
        (
            doctor("--soratun-config", leak(fifo_s)),
            "not a regular file",
        ),
        (doctor("--ca-file", leak(fifo_s)), "not a regular file"),
        (
            vec![
                "status".into(),
                "--store".into(),
                store_s.into(),
                "--component".into(),
                fifo_s.into(),
            ],
            "not a regular file",
        ),
        (
            vec!["run".into(), "--config".into(), fifo_s.into()],
            "not a regular file",
        ),
        (
            vec!["run".into(), "--config".into(), huge_s.into()],
            "more than the 1048576 bytes",
        ),
    ];
    std::fs::create_dir(&store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, stderr) = run_bounded(&args).await;
        assert_eq!(code, 3, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn exports_never_follow_symlinks_and_set_modes_on_the_open_file() {
    let fx = Fixture::new().await;
    let dir = fx.dir();
    for target in [Target::AzureIot, Target::Arc] {
        fx.provisioned(target).await;
    }
    let store_s = fx.store.to_str().unwrap().to_string();
    let pem = |out: &Path| {
        cli(["export", "azure-iot", "--format", "pem"])
            .set("--out", text(out))
            .store(&fx.store)
    };
    let export = async |out: &Path| bounded(pem(out)).await;
    // --out is a symlink to another directory: refused, nothing written there.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("out-link")).unwrap();
    let (code, _, stderr) = export(&dir.join("out-link")).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("is a symlink"), "{stderr}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // A symlink planted at the private key's name: neither followed nor replaced.
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o700)).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("azure-iot-private-key.pem")).unwrap();
    let (code, _, stderr) = export(&out).await;
    assert_eq!(code, 9, "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_eq!(
        mode(&victim),
        0o644,
        "the symlink's target had its mode changed"
    );
    // All files or none: the certificate was not written without its key.
    assert!(
        !out.join("azure-iot-certificate.pem").exists(),
        "half an export was written"
    );
    // No temp file is left behind in the directory.
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Without the trap: secret 0600, the others 0644, whatever the umask.
    std::fs::remove_file(out.join("azure-iot-private-key.pem")).unwrap();
    // The umask is set by a shell that then execs the binary (`sh -c 'umask 277; exec "$0"
    // "$@"' BIN ARGS...`): the same child process, with no unsafe `pre_exec` hook.
    let mut command = tokio::process::Command::new("sh");
    command
        .args(["-c", "umask 277 && exec \"$0\" \"$@\"", BIN])
        .args(pem(&out).words())
        .env_remove("RUST_LOG");
    let status = command.status().await.unwrap();
    assert!(status.success());
    assert_eq!(mode(&out.join("azure-iot-private-key.pem")), 0o600);
    assert_eq!(mode(&out.join("azure-iot-certificate.pem")), 0o644);

    // A directory others can write: another user could swap the files; refused, nothing
    // written.
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, stderr) = export(&open).await;
    assert_eq!(code, 9, "{stderr}");
    assert!(
        stderr.contains("has mode 777: group or others could replace the exported files"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);

    // wireguard-config: a symlink at --out is refused and its target untouched.
    std::os::unix::fs::symlink(&victim, dir.join("arc0.conf")).unwrap();
    let (code, _, stderr) = run_bounded(&[
        "wireguard-config",
        "--store",
        &store_s,
        "--out",
        dir.join("arc0.conf").to_str().unwrap(),
        "--krypton-address",
        "54.250.252.99",
    ])
    .await;
    assert_eq!(code, 9, "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    fx.stop().await;
}
