//! Outbound HTTP through the binary (issue 7 "Configuration", "files read from user paths"):
//! `--ca-file` must name a regular file; the endpoint's scheme is part of the allow-list.

use super::support::*;
use std::time::Duration;

/// `provision` with `--ca-file PATH`, at most 30 s (a FIFO used to block the host for ever).
async fn provision_with_ca(
    endpoint: &str,
    ca: &std::path::Path,
    store: &std::path::Path,
) -> (i32, String) {
    let args = [
        "provision",
        "aws-iot",
        "--endpoint",
        endpoint,
        "--ca-file",
        ca.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--json",
    ];
    let run = run_cli(&args);
    let (code, stdout, stderr) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the CLI hung reading the CA file");
    (code, format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn a_ca_file_that_is_not_a_regular_file_is_refused_with_a_clear_error() {
    let mock = mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let fifo = tmp.path().join("ca-fifo.pem");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let cases = [
        (
            fifo.clone(),
            "is a FIFO: pass a regular file holding PEM certificates",
        ),
        (
            tmp.path().to_path_buf(),
            "is a directory: pass a regular file holding PEM certificates",
        ),
        (
            std::path::PathBuf::from("/dev/zero"),
            "is a device: pass a regular file holding PEM certificates",
        ),
    ];
    for (path, expected) in cases {
        let (code, out) = provision_with_ca(&mock.endpoint(), &path, &store).await;
        assert_eq!(code, 3, "{}: {out}", path.display());
        assert!(out.contains(expected), "{}: {out}", path.display());
        assert!(out.contains(path.to_str().unwrap()), "{out}");
    }
    assert!(mock.requests().is_empty());

    // A symlink to the real CA file works.
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, mock.ca_pem()).unwrap();
    let link = tmp.path().join("ca-link.pem");
    std::os::unix::fs::symlink(&ca, &link).unwrap();
    let (code, out) = provision_with_ca(&mock.endpoint(), &link, &store).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(mock.requests().len(), 1);
    mock.stop().await;
}
