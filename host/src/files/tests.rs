//! Unit tests of `files`.

use super::*;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn user_files_must_be_regular_and_small() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(dir.join("ok"), b"hello").unwrap();
    assert_eq!(
        read_user_file(&dir.join("ok"), 5, "the test file").unwrap(),
        b"hello"
    );
    let err = read_user_file(&dir.join("ok"), 4, "the test file").unwrap_err();
    assert!(err.to_string().contains("more than the 4 bytes"), "{err}");
    let err = read_user_file(dir, 100, "the test file").unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    // A FIFO with no writer: refused at once, not waited on.
    let fifo = dir.join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let err = read_user_file(&fifo, 100, "the test file").unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = read_user_file(&dir.join("missing"), 100, "the test file").unwrap_err();
    assert!(err.to_string().contains("the test file"), "{err}");
    let err = read_user_file(Path::new("/dev/zero"), 100, "the test file").unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn private_files_get_their_mode_on_the_open_file_and_symlinks_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The umask cannot widen or narrow the mode.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    write_private_file(&dir.join("public.pem"), b"cert", 0o644).unwrap();
    rustix::process::umask(old);
    assert_eq!(mode(&dir.join("public.pem")), 0o644);
    write_private_file(&dir.join("secret"), b"one", 0o600).unwrap();
    write_private_file(&dir.join("secret"), b"two", 0o600).unwrap();
    assert_eq!(fs::read(dir.join("secret")).unwrap(), b"two");
    assert_eq!(mode(&dir.join("secret")), 0o600);
    // A symlink at the target is neither followed nor replaced.
    let victim = dir.join("victim");
    fs::write(&victim, b"keep").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("link")).unwrap();
    let err = write_private_file(&dir.join("link"), b"evil", 0o600).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
    assert!(
        fs::symlink_metadata(dir.join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A failed rename (a directory in the way cannot be replaced by a file) leaves no temp.
    fs::create_dir(dir.join("sub")).unwrap();
    let err = write_private_file(&dir.join("sub"), b"x", 0o600).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["link", "public.pem", "secret", "sub", "victim"]);
}

#[test]
fn owners_resolve_by_name_and_by_number() {
    assert_eq!(resolve_owner("root").unwrap(), Owner { uid: 0, gid: 0 });
    assert_eq!(
        resolve_owner("root:root").unwrap(),
        Owner { uid: 0, gid: 0 }
    );
    // A numeric id without an entry: its group is left as it is.
    assert_eq!(
        resolve_owner("4000000").unwrap(),
        Owner {
            uid: 4_000_000,
            gid: u32::MAX
        }
    );
    assert_eq!(
        resolve_owner("4000000:4000001").unwrap(),
        Owner {
            uid: 4_000_000,
            gid: 4_000_001
        }
    );
    let e = resolve_owner("no-such-user-krypton")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "--owner: there is no user `no-such-user-krypton` on this system"
    );
    let e = resolve_owner("root:no-such-group-krypton")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "--owner: there is no group `no-such-group-krypton` on this system"
    );
    assert!(resolve_owner(":root").is_err());
}

#[test]
fn a_write_that_fails_midway_removes_its_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("arc.conf");
    // A directory (not empty) appears at the target before the rename: rename(2) fails.
    let err = write_private_file_with(&target, b"secret", 0o600, None, |temp| {
        assert!(temp.exists());
        fs::create_dir(&target)?;
        fs::write(target.join("inside"), b"x")
    })
    .unwrap_err();
    assert!(err.to_string().contains("renaming into place"), "{err}");
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["arc.conf"], "the temp file was left behind");
    // Creating the temp file fails (its name is too long): nothing is left either.
    let long = "x".repeat(250);
    let err = write_private_file(&tmp.path().join(&long), b"x", 0o600).unwrap_err();
    assert!(err.to_string().contains("creating"), "{err}");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn private_dirs_are_created_0700_and_shared_ones_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let nested = tmp.path().join("a/b/state");
    private_dir(&nested, "key `state_dir`").unwrap();
    assert_eq!(mode(&nested), 0o700);
    let shared = tmp.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o750)).unwrap();
    let err = private_dir(&shared, "key `state_dir`")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("key `state_dir`") && err.contains("mode 750"),
        "{err}"
    );
    assert_eq!(
        mode(&shared),
        0o750,
        "an existing directory's mode was changed"
    );
}

#[test]
fn a_lock_is_exclusive_and_names_its_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(".lock");
    let held = FileLock::acquire(&path, Duration::ZERO).unwrap();
    assert_eq!(mode(&path), 0o600);
    // flock is per open file description: a second open in this process conflicts too.
    let started = Instant::now();
    match FileLock::acquire(&path, Duration::from_millis(200)) {
        Err(LockError::Busy { holder, .. }) => {
            assert_eq!(holder, Some(std::process::id()))
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    drop(held);
    FileLock::acquire(&path, Duration::ZERO).unwrap();
    // A symlink as the lock file is refused.
    std::os::unix::fs::symlink(&path, tmp.path().join("link")).unwrap();
    assert!(matches!(
        FileLock::acquire(&tmp.path().join("link"), Duration::ZERO),
        Err(LockError::Io { .. })
    ));
}
