//! Files and directories that decide what the host trusts (issue 7 review): the daemon's
//! configuration must belong to root or the daemon's user and be writable by nobody else; the
//! store and the state directory must be the running user's own, and not symbolic links.

use krypton_host::capability::store::SecretStore;
use krypton_host::files;
use krypton_host_cli::daemon::GatewayConfig;
use std::os::unix::fs::PermissionsExt;

/// A user id that is not the one the tests run as (the `nobody` convention).
const OTHER_UID: u32 = 65534;

fn config_in(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "store = '{}'\nstate_dir = '{}'\n[[target]]\nname = 'aws-cognito'\n",
            dir.join("store").display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

#[test]
fn a_configuration_others_can_change_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = config_in(tmp.path());
    GatewayConfig::load(&path).unwrap();

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = format!("{:#}", GatewayConfig::load(&path).unwrap_err());
    assert!(
        err.contains("has mode 666: group or others can change it") && err.contains("chmod go-w"),
        "{err}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    if files::effective_uid() == 0 {
        std::os::unix::fs::chown(&path, Some(OTHER_UID), None).unwrap();
        let err = format!("{:#}", GatewayConfig::load(&path).unwrap_err());
        assert!(
            err.contains(&format!(
                "is owned by uid {OTHER_UID}: it must belong to root"
            )),
            "{err}"
        );
    }
}

#[test]
fn a_store_or_state_directory_of_another_user_or_behind_a_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = SecretStore::open(&link).unwrap_err().to_string();
    assert!(err.contains("is a symbolic link"), "{err}");
    let err = format!(
        "{:#}",
        files::private_dir(&link, "key `state_dir`").unwrap_err()
    );
    assert!(
        err.starts_with("key `state_dir`:") && err.contains("symbolic link"),
        "{err}"
    );
    SecretStore::open(&real).unwrap();

    if files::effective_uid() == 0 {
        std::os::unix::fs::chown(&real, Some(OTHER_UID), None).unwrap();
        let err = SecretStore::open(&real).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "is owned by uid {OTHER_UID}, not by the user this runs as"
            )),
            "{err}"
        );
        // Nothing was written into it.
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }
}

#[test]
fn a_shared_directory_as_the_store_gets_a_subdirectory_suggested_not_a_chmod() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let err = SecretStore::open(&shared).unwrap_err().to_string();
    assert!(
        err.contains("anyone can write in it; use a directory of its own, e.g. ")
            && err.contains("shared/krypton-host"),
        "{err}"
    );
    assert!(!err.contains("chmod"), "{err}");
    assert_eq!(
        std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777,
        0o1777,
        "the shared directory's mode was changed"
    );
}
