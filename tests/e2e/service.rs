//! Item 9: the systemd unit runs the daemon as a dedicated, confined user, and is valid.

use super::support::BIN;

fn unit_text() -> String {
    std::fs::read_to_string(format!(
        "{}/../../krypton-host.service",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The values of `key=` lines in the unit.
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_string())
        .collect()
}

#[test]
fn the_unit_confines_the_daemon_and_keeps_secrets_in() {
    let text = unit_text();
    let user = values(&text, "DynamicUser") == ["yes"] || !values(&text, "User").is_empty();
    assert!(user, "no dedicated user");
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("LimitCORE", "0"),
        ("StateDirectoryMode", "0700"),
        ("UMask", "0077"),
    ] {
        assert_eq!(values(&text, key), [want], "{key}");
    }
    let state = values(&text, "StateDirectory").join(" ");
    for dir in ["krypton-host", "krypton-host/store", "krypton-host/state"] {
        assert!(
            state.split_whitespace().any(|d| d == dir),
            "StateDirectory lacks {dir}"
        );
    }
    // The compile cache is under state_dir (a private directory the daemon checks), not in a
    // directory the environment names.
    assert!(values(&text, "CacheDirectory").is_empty());
    assert!(!text.contains("KRYPTON_CACHE_DIR"));
    // A path that may be missing stops the unit unless it carries the "-" prefix.
    for key in [
        "ReadWritePaths",
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "ExecPaths",
    ] {
        for entry in values(&text, key)
            .iter()
            .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        {
            assert!(
                entry.starts_with('-'),
                "{key}={entry} stops the unit when missing"
            );
        }
    }
    // wasmtime needs to map compiled code executable.
    assert!(
        values(&text, "MemoryDenyWriteExecute")
            .iter()
            .all(|v| v != "yes")
    );
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let analyze = std::path::Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        // CI installs it (`.ci/run`), so there a missing tool is a failure, never a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing: install the Debian package `systemd`"
        );
        eprintln!(
            "systemd-analyze is not installed; skipped (install the Debian package `systemd`)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let unit = tmp.path().join("krypton-host.service");
    let text = unit_text().replace("/usr/local/bin/krypton-host", BIN);
    assert!(text.contains(BIN));
    std::fs::write(&unit, text).unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys and bad values are only warnings: there must be none.
    assert!(stderr.trim().is_empty(), "{stderr}");
}
