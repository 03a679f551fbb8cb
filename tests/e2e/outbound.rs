//! Outbound HTTP through the binary (issue 7 "Configuration", "files read from user paths"):
//! `--ca-file` must name a regular file; the endpoint's scheme is part of the allow-list.

use super::support::*;
use std::time::Duration;

/// `provision aws-iot` against the fixture's mock with `--ca-file PATH`, at most 30 s (a FIFO
/// used to block the host for ever).
async fn provision_with_ca(fx: &Fixture, ca: &std::path::Path) -> (i32, String) {
    // The CLI must not hang reading the CA file.
    let run = fx
        .provision("aws-iot")
        .ca(ca)
        .json()
        .run_within(Duration::from_secs(30))
        .await;
    (run.code, format!("{}{}", run.stdout, run.stderr))
}

#[tokio::test]
async fn a_ca_file_that_is_not_a_regular_file_is_refused_with_a_clear_error() {
    let fx = Fixture::new().await;
    let tmp = &fx.tmp;
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
        let (code, out) = provision_with_ca(&fx, &path).await;
        assert_eq!(code, 3, "{}: {out}", path.display());
        assert!(out.contains(expected), "{}: {out}", path.display());
        assert!(out.contains(path.to_str().unwrap()), "{out}");
    }
    assert!(fx.mock.requests().is_empty());

    // A symlink to the real CA file works.
    let link = tmp.path().join("ca-link.pem");
    std::os::unix::fs::symlink(&fx.ca, &link).unwrap();
    let (code, out) = provision_with_ca(&fx, &link).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(fx.mock.requests().len(), 1);
    fx.stop().await;
}
