//! Signed component versions (issue 7, item 6): the signature binds a context string, the
//! digest and the version; the self-check must report the signed version; a version lower than
//! the highest accepted one is refused unless a downgrade is allowed; old bare-digest
//! signatures are refused with the way to re-sign.

use super::support::{BIN, Runtime, mode, variant};
use krypton_host::component::ComponentPolicy;
use krypton_host::component::lifecycle::{Lifecycle, ReloadOutcome};
use krypton_host::signing::{self, VersionFloor, signature_path};
use std::path::Path;
use std::sync::Arc;

/// The version the built-in component reports (its crate version).
const REAL_VERSION: &str = env!("CARGO_PKG_VERSION");

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

/// Write the component and its signature for `version` (as a deployment would).
fn install_signed(path: &Path, bytes: &[u8], version: &str) {
    std::fs::write(path, bytes).unwrap();
    std::fs::write(
        signature_path(path),
        signing::sign(&key(), bytes, version).unwrap(),
    )
    .unwrap();
}

fn policy(state: &Path, allow_downgrade: bool) -> ComponentPolicy {
    ComponentPolicy {
        trusted_key: Some(key().verifying_key()),
        floor: Some(VersionFloor::new(state, allow_downgrade)),
    }
}

fn runtime() -> Arc<Runtime> {
    Arc::new(Runtime::new().unwrap())
}

#[tokio::test]
async fn a_signed_version_serves_and_is_recorded_as_the_floor() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("component.wasm");
    install_signed(&file, &variant(1), REAL_VERSION);
    let lifecycle = Lifecycle::start_with(runtime(), Some(file), policy(tmp.path(), false))
        .await
        .unwrap();
    let current = lifecycle.current();
    assert_eq!(current.version, REAL_VERSION);
    assert!(current.signed);
    assert_eq!(current.digest, signing::digest_hex(&variant(1)));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("accepted-version")).unwrap(),
        format!("{REAL_VERSION}\n")
    );
}

#[tokio::test]
async fn a_signature_for_another_version_than_the_self_check_reports_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("component.wasm");
    // A valid signature, but it claims 9.9.9 while the component reports its real version.
    install_signed(&file, &variant(1), "9.9.9");
    let err = Lifecycle::start_with(runtime(), Some(file), policy(tmp.path(), false))
        .await
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains(&format!(
            "the self-check reports version `{REAL_VERSION}`, but the signature is for version `9.9.9`"
        )),
        "{err:#}"
    );
    // Nothing was accepted.
    assert!(!tmp.path().join("accepted-version").exists());
}

#[tokio::test]
async fn a_replayed_older_version_is_refused_before_it_is_compiled() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("component.wasm");
    install_signed(&file, &variant(1), REAL_VERSION);
    let lifecycle = Lifecycle::start_with(runtime(), Some(file.clone()), policy(tmp.path(), false))
        .await
        .unwrap();
    // This host has since accepted a higher version (as after an upgrade to 99.0.0).
    std::fs::write(tmp.path().join("accepted-version"), "99.0.0\n").unwrap();
    // An old, properly signed version is put back: refused, the current one keeps serving.
    install_signed(&file, &variant(2), REAL_VERSION);
    let err = lifecycle.reload().await.unwrap_err();
    assert!(
        format!("{err:#}").contains(&format!(
            "version {REAL_VERSION} is lower than 99.0.0, the highest this host has accepted: refusing a downgrade"
        )),
        "{err:#}"
    );
    assert_eq!(lifecycle.current().digest, signing::digest_hex(&variant(1)));
    // A fresh start with it is refused too.
    let err = Lifecycle::start_with(runtime(), Some(file.clone()), policy(tmp.path(), false))
        .await
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("refusing a downgrade"),
        "{err:#}"
    );
    // The floor is checked before compiling: signed bytes that are no component at all are
    // refused for their version, never handed to the compiler.
    install_signed(&file, b"\0asm but not a component", REAL_VERSION);
    let err = lifecycle.reload().await.unwrap_err();
    assert!(
        format!("{err:#}").contains("refusing a downgrade"),
        "{err:#}"
    );
    assert!(!format!("{err:#}").contains("compiling"), "{err:#}");
    install_signed(&file, &variant(2), REAL_VERSION);
    // Allowed on purpose: it serves, and the floor follows it down.
    let lifecycle = Lifecycle::start_with(runtime(), Some(file.clone()), policy(tmp.path(), true))
        .await
        .unwrap();
    assert_eq!(lifecycle.current().digest, signing::digest_hex(&variant(2)));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("accepted-version")).unwrap(),
        format!("{REAL_VERSION}\n")
    );
    assert_eq!(lifecycle.reload().await.unwrap(), ReloadOutcome::Unchanged);
}

#[tokio::test]
async fn unsigned_old_form_and_tampered_signatures_are_refused() {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    use sha2::Digest as _;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("component.wasm");
    std::fs::write(&file, variant(1)).unwrap();
    let start = || Lifecycle::start_with(runtime(), Some(file.clone()), policy(tmp.path(), false));
    // No .sig at all.
    let err = start().await.err().unwrap();
    assert!(
        format!("{err:#}").contains("the component needs its .sig beside it"),
        "{err:#}"
    );
    // The old form: a bare signature over the digest, valid for the key, binds no version.
    let old = base64::engine::general_purpose::STANDARD
        .encode(key().sign(&sha2::Sha256::digest(variant(1))).to_bytes());
    std::fs::write(signature_path(&file), old).unwrap();
    let err = start().await.err().unwrap();
    assert!(
        format!("{err:#}").contains("re-sign the component with `krypton-host sign`"),
        "{err:#}"
    );
    // A signature file that is not a regular file.
    std::fs::remove_file(signature_path(&file)).unwrap();
    std::fs::create_dir(signature_path(&file)).unwrap();
    let err = start().await.err().unwrap();
    assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    std::fs::remove_dir(signature_path(&file)).unwrap();
    // Signed for other bytes.
    std::fs::write(
        signature_path(&file),
        signing::sign(&key(), &variant(2), REAL_VERSION).unwrap(),
    )
    .unwrap();
    let err = start().await.err().unwrap();
    assert!(format!("{err:#}").contains("for other bytes"), "{err:#}");
    assert!(!tmp.path().join("accepted-version").exists());
}

#[tokio::test]
async fn without_a_key_the_floor_still_holds_the_reported_version() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("component.wasm");
    std::fs::write(&file, variant(1)).unwrap();
    std::fs::write(tmp.path().join("accepted-version"), "99.0.0\n").unwrap();
    let policy = ComponentPolicy {
        trusted_key: None,
        floor: Some(VersionFloor::new(tmp.path(), false)),
    };
    let err = Lifecycle::start_with(runtime(), Some(file), policy)
        .await
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("refusing a downgrade"),
        "{err:#}"
    );
}

#[test]
fn keygen_and_sign_make_a_signature_the_daemon_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("signing.pem");
    let out = std::process::Command::new(BIN)
        .args(["keygen", "--json", "--out"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let public = signing::parse_public_key(answer["publicKey"].as_str().unwrap()).unwrap();
    assert_eq!(mode(&key_file), 0o600);
    // keygen never overwrites a key.
    let again = std::process::Command::new(BIN)
        .args(["keygen", "--out"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));

    // A file that is not a component (here: the private key itself) is named as such, and
    // nothing of it is quoted back.
    let wrong = std::process::Command::new(BIN)
        .arg("sign")
        .arg(&key_file)
        .arg("--key")
        .arg(&key_file)
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(3), "{wrong:?}");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("not a WebAssembly component"), "{stderr}");
    assert!(!stderr.contains("BEGIN PRIVATE KEY"), "{stderr}");

    let component = tmp.path().join("krypton.wasm");
    std::fs::write(&component, variant(3)).unwrap();
    let sign = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .arg("sign")
            .arg(&component)
            .arg("--key")
            .arg(&key_file)
            .args(extra)
            .output()
            .unwrap()
    };
    // A version other than the one the component reports is refused, and nothing is written.
    let wrong = sign(&["--component-version", "9.9.9"]);
    assert_eq!(wrong.status.code(), Some(3), "{wrong:?}");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("a daemon would refuse this signature")
    );
    assert!(!signature_path(&component).exists());
    let signed = sign(&["--json"]);
    assert_eq!(signed.status.code(), Some(0), "{signed:?}");
    let answer: serde_json::Value = serde_json::from_slice(&signed.stdout).unwrap();
    assert_eq!(answer["version"], REAL_VERSION);
    assert_eq!(answer["sha256"], signing::digest_hex(&variant(3)));
    assert_eq!(mode(&signature_path(&component)), 0o644);
    let text = std::fs::read(signature_path(&component)).unwrap();
    assert_eq!(
        signing::verify(&public, &variant(3), &text).unwrap(),
        REAL_VERSION
    );
}
