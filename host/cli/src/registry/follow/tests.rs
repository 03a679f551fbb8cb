//! Unit tests of `follow`.

use super::*;

#[test]
fn polls_spread_within_ten_percent() {
    let i = Duration::from_secs(10);
    assert_eq!(jittered(i, 0), Duration::from_secs(9));
    assert_eq!(jittered(i, 200), Duration::from_secs(11));
    assert_eq!(jittered(i, 100), Duration::from_secs(10));
    for r in [1u64, 57, 99_999, u64::MAX] {
        let d = jittered(i, r);
        assert!(
            d >= Duration::from_secs(9) && d <= Duration::from_secs(11),
            "{d:?}"
        );
    }
}

#[test]
fn an_oci_component_needs_a_key_and_registry_needs_an_oci_component() {
    use crate::daemon::GatewayConfig;
    let public = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(
            ed25519_dalek::SigningKey::from_bytes(&[7; 32])
                .verifying_key()
                .as_bytes(),
        )
    };
    let key = &format!("trusted_public_key = '{public}'\n");
    let target = "[[target]]\nname = 'arc'\n";
    let oci = "component = 'oci://127.0.0.1:5000/krypton/component:stable'\n";
    let config = GatewayConfig::parse(&format!(
        "{oci}{key}[registry]\npoll_interval_s = 5\ninsecure = true\n{target}"
    ))
    .unwrap();
    assert_eq!(
        config.registry_reference().as_deref(),
        Some("oci://127.0.0.1:5000/krypton/component:stable")
    );
    assert_eq!(config.registry.unwrap().poll_interval_s, 5);
    for (text, expected) in [
        (format!("{oci}{target}"), "key `trusted_public_key`"),
        (
            format!("{key}[registry]\ninsecure = true\n{target}"),
            "key `registry`",
        ),
        (
            format!("component = 'oci://krypton/component:stable'\n{key}{target}"),
            "key `component`",
        ),
        (
            format!("{oci}{key}[registry]\npoll_interval_s = 0\n{target}"),
            "key `registry.poll_interval_s`",
        ),
        (
            format!("{oci}{key}[registry]\nbogus = 1\n{target}"),
            "bogus",
        ),
    ] {
        let err = format!("{:#}", GatewayConfig::parse(&text).unwrap_err());
        assert!(err.contains(expected), "{text}: {err}");
    }
    // A file component is unchanged and keeps being watched.
    let config =
        GatewayConfig::parse(&format!("component = '/var/lib/k/c.wasm'\n{target}")).unwrap();
    assert_eq!(config.registry_reference(), None);
}

#[test]
fn the_section_is_checked_key_by_key() {
    let ok = RegistrySection::default();
    ok.check().unwrap();
    for (section, key) in [
        (
            RegistrySection {
                poll_interval_s: 0,
                ..RegistrySection::default()
            },
            "registry.poll_interval_s",
        ),
        (
            RegistrySection {
                ca_file: Some("certs/ca.pem".into()),
                ..RegistrySection::default()
            },
            "registry.ca_file",
        ),
        (
            RegistrySection {
                username: Some("u".into()),
                ..RegistrySection::default()
            },
            "registry.password_file",
        ),
    ] {
        let err = format!("{:#}", section.check().unwrap_err());
        assert!(err.contains(key), "{err}");
    }
}

fn follower(dir: &Path) -> Follower {
    let source = Source::parse("oci://127.0.0.1:5000/krypton/component:stable").unwrap();
    let registry = Registry::new(
        &source,
        &Settings {
            insecure: true,
            ..Settings::default()
        },
    )
    .unwrap();
    let registry_dir = dir.join("registry");
    std::fs::create_dir_all(&registry_dir).unwrap();
    Follower {
        source,
        registry,
        dir: registry_dir,
        interval: Duration::from_secs(10),
        key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key(),
        floor: VersionFloor::new(dir, false),
        state: Mutex::new(State::default()),
    }
}

#[test]
fn refusals_are_bounded_per_entry_and_in_all_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let f = follower(tmp.path());
    // Oversized reasons (a hostile .sig's fields end up in them), more than MAX_REFUSED.
    for i in 0..(MAX_REFUSED + 8) {
        f.refuse(&format!("sha256:{i:064x}"), "x".repeat(20_000));
    }
    let file = tmp.path().join("registry/refused.json");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size <= MAX_STATE_FILE_BYTES, "refused.json is {size} bytes");
    // A restart reads every refusal back: the newest MAX_REFUSED, oldest dropped.
    let again = follower(tmp.path());
    again.load_state();
    let state = again.state();
    assert_eq!(state.refused.len(), MAX_REFUSED);
    assert_eq!(state.refused[0].digest, format!("sha256:{:064x}", 8));
    assert_eq!(
        state.refused[MAX_REFUSED - 1].digest,
        format!("sha256:{:064x}", MAX_REFUSED + 7)
    );
    assert!(
        state
            .refused
            .iter()
            .all(|r| r.reason.chars().count() <= MAX_REASON_CHARS + 32)
    );
}

#[test]
fn failed_pulls_back_off_exponentially_within_a_cap() {
    let i = Duration::from_secs(10);
    assert_eq!(retry_backoff(i, 1, 100), Duration::from_secs(20));
    assert_eq!(retry_backoff(i, 3, 100), Duration::from_secs(80));
    assert_eq!(retry_backoff(i, 40, 100), RETRY_BACKOFF_MAX);
    assert_eq!(retry_backoff(i, 3, 0), Duration::from_secs(72));
    // An interval above the cap: the interval.
    let day = Duration::from_secs(86_400);
    assert_eq!(retry_backoff(day, 5, 100), day);
    let tmp = tempfile::tempdir().unwrap();
    let f = follower(tmp.path());
    let d = "sha256:".to_string() + &"1".repeat(64);
    let first = f.back_off(&d);
    let second = f.back_off(&d);
    assert!(first >= Duration::from_secs(18) && first <= Duration::from_secs(22));
    assert!(second >= Duration::from_secs(36) && second <= Duration::from_secs(44));
}

#[test]
fn a_roll_back_on_the_wall_clock_limit_backs_off_and_a_trap_is_refused_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let f = follower(tmp.path());
    let installed = |n: u8, version: &str| Installed {
        manifest: format!("sha256:{}", char::from(b'a' + n).to_string().repeat(64)),
        sha256: char::from(b'0' + n).to_string().repeat(64),
        version: version.into(),
    };
    let (old, new) = (installed(1, "0.3.0"), installed(2, "0.3.1"));
    let rolled = |reason: &str| RolledBack {
        failed_digest: new.sha256.clone(),
        failed_version: new.version.clone(),
        restored_digest: old.sha256.clone(),
        restored_version: old.version.clone(),
        reason: reason.into(),
    };
    for (reason, refused) in [
        (
            "the component exceeded the wall-clock limit of 60 s during provision; it was stopped",
            0,
        ),
        ("the component exceeded its CPU limit", 1),
    ] {
        {
            let mut state = f.state();
            state.current = Some(new.clone());
            state.previous = Some(old.clone());
        }
        f.rolled_back(&rolled(reason));
        let state = f.state();
        assert_eq!(state.current.as_ref(), Some(&old), "{reason}");
        assert_eq!(state.refused.len(), refused, "{reason}");
        assert_eq!(
            state.backoff.iter().any(|(d, _, _)| *d == new.manifest),
            refused == 0,
            "{reason}"
        );
    }
    // Written before anything else: the failed artifact is pending, the restored one current.
    let pointer: Pointer =
        serde_json::from_slice(&std::fs::read(tmp.path().join("registry/current.json")).unwrap())
            .unwrap();
    assert_eq!(pointer.current, old);
    assert_eq!(pointer.pending, Some(new.clone()));
    let refused: Vec<Refused> =
        serde_json::from_slice(&std::fs::read(tmp.path().join("registry/refused.json")).unwrap())
            .unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].digest, new.manifest);
    assert!(
        refused[0].reason.contains("CPU limit"),
        "{}",
        refused[0].reason
    );
}
