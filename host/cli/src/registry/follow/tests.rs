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
