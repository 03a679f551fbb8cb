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

fn artifact(n: u8, version: &str) -> Installed {
    Installed {
        manifest: format!("sha256:{}", char::from(b'a' + n).to_string().repeat(64)),
        sha256: char::from(b'0' + n).to_string().repeat(64),
        version: version.into(),
    }
}

#[test]
fn a_reload_the_host_could_not_finish_backs_off_and_one_the_component_fails_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = follower(tmp.path());
    let new = artifact(2, "0.3.1");
    // The floor file could not be written (a full disk), then the wall-clock limit.
    for (n, cause) in [
        "writing accepted-version: No space left on device (os error 28)",
        "the component exceeded the wall-clock limit of 60 s during version; it was stopped",
    ]
    .into_iter()
    .enumerate()
    {
        let e: anyhow::Error =
            ReloadError::new(ReloadFault::Host, anyhow::anyhow!("{cause}")).into();
        f.reload_failed(&new, &e);
        let state = f.state();
        assert!(state.refused.is_empty(), "{cause}");
        assert_eq!(
            state
                .backoff
                .iter()
                .find(|(d, _, _)| *d == new.manifest)
                .map(|(_, n, _)| *n),
            Some(u32::try_from(n).unwrap() + 1),
            "{cause}"
        );
    }
    // Its verified blob stays for the retry when the other blobs are cleaned.
    let blob = f.blob_path(&new.sha256);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, b"verified").unwrap();
    f.remove_other_blobs();
    assert!(blob.exists());
    assert_eq!(f.state().retrying.as_ref(), Some(&new));
    // A trap in the self-check is the component's: refused for good.
    let e: anyhow::Error = ReloadError::new(
        ReloadFault::Component,
        anyhow::anyhow!("wasm trap: unreachable").context("the self-check call failed"),
    )
    .into();
    f.reload_failed(&new, &e);
    let state = f.state();
    assert_eq!(state.refused.len(), 1);
    assert_eq!(state.refused[0].digest, new.manifest);
    assert_eq!(
        state.refused[0].reason,
        "the self-check call failed: wasm trap: unreachable"
    );
    assert!(state.backoff.is_empty());
    assert_eq!(state.retrying, None);
}

#[test]
fn a_signature_refused_for_authorization_or_a_setting_is_asked_again() {
    let status = |status: u16| RegistryError::Status {
        status,
        what: "the signature blob".into(),
        detail: "denied".into(),
        retry_after: None,
    };
    for e in [
        status(401),
        status(403),
        status(429),
        status(503),
        RegistryError::Config("the token file is unreadable".into()),
        RegistryError::NotFound("the signature blob".into()),
    ] {
        assert!(e.is_retryable(), "{e}");
    }
    for e in [
        status(400),
        status(404),
        RegistryError::Invalid("a .sig over its size cap".into()),
    ] {
        assert!(!e.is_retryable(), "{e}");
    }
}

#[test]
fn no_signature_listed_is_retried_for_a_grace_and_one_that_does_not_verify_is_final() {
    let tmp = tempfile::tempdir().unwrap();
    let f = follower(tmp.path());
    let d = artifact(3, "0.4.0").manifest;
    for try_ in 1..=UNSIGNED_GRACE_TRIES {
        match f.no_signature(&d, "referrers API", None) {
            Refusal::Retry(text) => assert!(
                text.contains(&format!("try {try_} of {UNSIGNED_GRACE_TRIES}")),
                "{text}"
            ),
            Refusal::Final(text) => panic!("try {try_} refused for good: {text}"),
        }
        // What `poll_once` does with a retry.
        f.back_off(&d);
    }
    match f.no_signature(&d, "referrers API", None) {
        Refusal::Final(text) => assert!(
            text.starts_with(
                "unsigned: no signature referrer in the referrers API listing after 4 tries"
            ),
            "{text}"
        ),
        Refusal::Retry(text) => panic!("still retried after the grace: {text}"),
    }
    // Listed but not verifying: final at the first try.
    let other = artifact(4, "0.4.0").manifest;
    match f.no_signature(&other, "referrers API", Some("bad signature".into())) {
        Refusal::Final(text) => assert_eq!(
            text,
            "no signature verifies with trusted_public_key (bad signature)"
        ),
        Refusal::Retry(text) => panic!("a bad signature retried: {text}"),
    }
}

#[test]
fn a_stale_registry_state_does_not_lower_the_floor_but_a_swap_cut_short_does() {
    let tmp = tempfile::tempdir().unwrap();
    let floor_file = tmp.path().join("accepted-version");
    let kept = artifact(1, "0.3.1");
    // The operator served a file component at 0.5.0 since; current.json names 0.3.1, nothing
    // pending.
    std::fs::write(&floor_file, "0.5.0\n").unwrap();
    let f = follower(tmp.path());
    let err = format!("{:#}", f.reconcile_floor(&kept, None).unwrap_err());
    assert!(
        err.contains("version 0.3.1")
            && err.contains("floor 0.5.0")
            && err.contains("allow_downgrade"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&floor_file).unwrap(), "0.5.0\n");
    assert_eq!(
        f.floor
            .enforced()
            .unwrap()
            .map(|v| v.to_string())
            .as_deref(),
        Some("0.5.0")
    );
    // A pending artifact of another version proves no cut swap either.
    let f = follower(tmp.path());
    f.reconcile_floor(&kept, Some(&artifact(2, "0.4.0")))
        .unwrap_err();
    assert_eq!(std::fs::read_to_string(&floor_file).unwrap(), "0.5.0\n");
    // allow_downgrade keeps it (the lifecycle then accepts it, lowering the floor).
    let mut f = follower(tmp.path());
    f.floor = VersionFloor::new(tmp.path(), true);
    f.reconcile_floor(&kept, None).unwrap();
    // A swap to 0.5.0 cut short (current.json names it pending): the floor goes back.
    let f = follower(tmp.path());
    f.reconcile_floor(&kept, Some(&artifact(2, "0.5.0")))
        .unwrap();
    assert_eq!(std::fs::read_to_string(&floor_file).unwrap(), "0.3.1\n");
}
