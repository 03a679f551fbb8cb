//! Unit tests of `signing`.

use super::*;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

#[test]
fn the_payload_binds_context_digest_and_version() {
    let digest = digest_hex(b"component");
    let payload = String::from_utf8(signed_payload(&digest, "1.2.3").unwrap()).unwrap();
    assert_eq!(
        payload,
        format!("soracom-krypton/component-signature/v1\nsha256:{digest}\nversion:1.2.3\n")
    );
    // A version that could add a line is not a version.
    assert!(signed_payload(&digest, "1.2.3\nversion:9.9.9").is_err());
    assert!(signed_payload("ABC", "1.2.3").is_err());
}

#[test]
fn a_signature_verifies_only_for_its_bytes_version_and_key() {
    let sig = sign(&key(), b"v2 bytes", "0.2.0").unwrap();
    assert_eq!(
        verify(&key().verifying_key(), b"v2 bytes", sig.as_bytes()).unwrap(),
        "0.2.0"
    );
    let err = verify(&key().verifying_key(), b"other", sig.as_bytes()).unwrap_err();
    assert!(format!("{err:#}").contains("for other bytes"), "{err:#}");
    // The version changed in the file: the signature no longer matches.
    let edited = sig.replace("\"0.2.0\"", "\"9.0.0\"");
    let err = verify(&key().verifying_key(), b"v2 bytes", edited.as_bytes()).unwrap_err();
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
    let other = SigningKey::from_bytes(&[8u8; 32]);
    let err = verify(&other.verifying_key(), b"v2 bytes", sig.as_bytes()).unwrap_err();
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
}

#[test]
fn a_bare_digest_signature_is_refused_with_the_way_out() {
    let old = base64::engine::general_purpose::STANDARD
        .encode(key().sign(&Sha256::digest(b"v1")).to_bytes());
    let err = verify(&key().verifying_key(), b"v1", old.as_bytes()).unwrap_err();
    assert!(format!("{err:#}").contains("krypton-host sign"), "{err:#}");
    let big = vec![b' '; 5000];
    assert!(verify(&key().verifying_key(), b"v1", &big).is_err());
    let unknown = sign(&key(), b"v1", "0.1.0")
        .unwrap()
        .replace("{", "{\"extra\":1,");
    assert!(verify(&key().verifying_key(), b"v1", unknown.as_bytes()).is_err());
}

#[test]
fn public_keys_parse_from_base64_or_hex_and_never_panic() {
    let public = key().verifying_key();
    let b64 = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
    let hex: String = public
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(parse_public_key(&b64).unwrap(), public);
    assert_eq!(parse_public_key(&hex).unwrap(), public);
    let zero = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    assert!(
        format!("{:#}", parse_public_key(&zero).unwrap_err()).contains("small-order"),
        "the all-zero key was accepted"
    );
    // 64 bytes of text with multi-byte characters: an error, not a panic.
    for bad in [
        "é".repeat(32),
        "ÿ".repeat(32),
        "a".repeat(63) + "é",
        String::new(),
    ] {
        assert!(parse_public_key(&bad).is_err(), "{bad}");
    }
}

#[test]
fn signing_keys_round_trip_through_pkcs8_pem() {
    let (pem, public) = generate_key_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    let key = parse_signing_key(&pem).unwrap();
    assert_eq!(parse_public_key(&public).unwrap(), key.verifying_key());
    let err = parse_signing_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        .unwrap_err();
    assert!(!format!("{err:#}").contains("AAAA"));
}

/// Issue 18, item 18: the key file is the PKCS#8 v1 form OpenSSL writes for
/// `openssl genpkey -algorithm ed25519` (RFC 8410 §7: version 0, the algorithm, the seed as a
/// nested OCTET STRING, no public key): 48 bytes of DER under PEM `PRIVATE KEY`.
#[test]
fn generated_keys_are_pkcs8_v1_without_the_public_key() {
    use base64::Engine as _;
    let (pem, public) = generate_key_pem().unwrap();
    let body: String = pem
        .strip_prefix("-----BEGIN PRIVATE KEY-----\n")
        .and_then(|rest| rest.strip_suffix("-----END PRIVATE KEY-----\n"))
        .unwrap()
        .lines()
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    assert_eq!(der.len(), 48, "{pem}");
    // SEQUENCE(46) { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING(32) } }
    assert_eq!(
        der[..16],
        [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20
        ]
    );
    let seed: [u8; 32] = der[16..].try_into().unwrap();
    let key = parse_signing_key(&pem).unwrap();
    assert_eq!(key.to_bytes(), seed);
    assert_eq!(parse_public_key(&public).unwrap(), key.verifying_key());
}

/// Issue 18, item 18: a key of the older form `keygen` wrote (PKCS#8 v2, RFC 5958, with the
/// public key in `[1]`) still loads: this one has the seed 1, 2, …, 32, and its public key is
/// what `openssl pkey -pubout` derives from that seed.
#[test]
fn keys_of_the_older_v2_form_still_load() {
    let v2 = "-----BEGIN PRIVATE KEY-----\n\
              MFECAQEwBQYDK2VwBCIEIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\n\
              gSEAebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=\n\
              -----END PRIVATE KEY-----\n";
    let key = parse_signing_key(v2).unwrap();
    let seed: Vec<u8> = (1..=32).collect();
    assert_eq!(key.to_bytes().as_slice(), seed.as_slice());
    assert_eq!(
        key.verifying_key(),
        parse_public_key("ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=").unwrap()
    );
}

fn facts(artifact: &[u8]) -> PrecompiledFacts {
    PrecompiledFacts {
        sha256: digest_hex(artifact),
        target: "aarch64-unknown-linux-gnu".into(),
        wasmtime: "48.0.8".into(),
        source_sha256: digest_hex(b"component"),
        version: "0.3.0".into(),
    }
}

#[test]
fn the_precompiled_payload_binds_artifact_target_wasmtime_source_and_version() {
    let facts = facts(b"artifact");
    let payload = String::from_utf8(precompiled_payload(&facts).unwrap()).unwrap();
    assert_eq!(
        payload,
        format!(
            "soracom-krypton/precompiled-signature/v1\nsha256:{}\ntarget:aarch64-unknown-linux-gnu\n\
             wasmtime:48.0.8\nsource-sha256:{}\nversion:0.3.0\n",
            digest_hex(b"artifact"),
            digest_hex(b"component")
        )
    );
    for broken in [
        PrecompiledFacts {
            target: "x86_64\nversion:9.9.9".into(),
            ..facts.clone()
        },
        PrecompiledFacts {
            wasmtime: String::new(),
            ..facts.clone()
        },
        PrecompiledFacts {
            source_sha256: "ABC".into(),
            ..facts.clone()
        },
        PrecompiledFacts {
            version: "one".into(),
            ..facts.clone()
        },
    ] {
        assert!(precompiled_payload(&broken).is_err(), "{broken:?}");
    }
}

#[test]
fn a_precompiled_signature_verifies_only_for_its_artifact_facts_and_key() {
    let sig = sign_precompiled(&key(), &facts(b"artifact")).unwrap();
    assert!(
        sig.starts_with("{\"format\":\"soracom-krypton/precompiled-signature/v1\",\"sha256\":")
    );
    assert!(sig.contains("\"sourceSha256\":"), "{sig}");
    let digest = digest_hex(b"artifact");
    assert_eq!(
        verify_precompiled(&key().verifying_key(), &digest, sig.as_bytes()).unwrap(),
        facts(b"artifact")
    );
    let err = verify_precompiled(
        &key().verifying_key(),
        &digest_hex(b"other"),
        sig.as_bytes(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("for other bytes"), "{err:#}");
    // Another target or source version written into the file: the signature fails.
    for edited in [
        sig.replace("aarch64-unknown-linux-gnu", "x86_64-unknown-linux-gnu"),
        sig.replace("\"0.3.0\"", "\"9.0.0\""),
    ] {
        let err =
            verify_precompiled(&key().verifying_key(), &digest, edited.as_bytes()).unwrap_err();
        assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
    }
    let other = SigningKey::from_bytes(&[8u8; 32]);
    let err = verify_precompiled(&other.verifying_key(), &digest, sig.as_bytes()).unwrap_err();
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
    // A component signature is neither taken for an artifact's, nor the other way round.
    let component_sig = sign(&key(), b"artifact", "0.3.0").unwrap();
    let err =
        verify_precompiled(&key().verifying_key(), &digest, component_sig.as_bytes()).unwrap_err();
    assert!(
        format!("{err:#}").contains("krypton-host compile"),
        "{err:#}"
    );
    let err = verify(&key().verifying_key(), b"artifact", sig.as_bytes()).unwrap_err();
    assert!(format!("{err:#}").contains("not a valid"), "{err:#}");
}

#[test]
fn the_floor_refuses_lower_versions_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let floor = VersionFloor::new(dir.path(), false);
    assert_eq!(floor.highest().unwrap(), None);
    floor.check("0.2.0").unwrap();
    floor.accept("0.2.0").unwrap();
    floor.accept("0.1.5").unwrap(); // not raised
    assert_eq!(floor.highest().unwrap().unwrap().to_string(), "0.2.0");
    let err = floor.check("0.1.9").unwrap_err();
    assert!(
        format!("{err:#}").contains("refusing a downgrade"),
        "{err:#}"
    );
    floor.check("0.2.0").unwrap();
    floor.check("0.10.0").unwrap(); // semver order, not text order
    // Build metadata has no precedence (semver.org §10): 0.2.0+a and 0.2.0+b are equal to
    // 0.2.0, neither raises the floor and neither is a downgrade.
    floor.check("0.2.0+zzz").unwrap();
    floor.accept("0.2.0+zzz").unwrap();
    assert_eq!(floor.highest().unwrap().unwrap().to_string(), "0.2.0");
    floor.check("0.2.0").unwrap();
    // A pre-release of the accepted version comes before it (semver.org §11.3).
    assert!(floor.check("0.2.0-rc.1").is_err());
    assert!(floor.check("hostile").is_err());
    let allowed = VersionFloor::new(dir.path(), true);
    allowed.check("0.1.9").unwrap();
    allowed.accept("0.1.9").unwrap();
    assert_eq!(floor.highest().unwrap().unwrap().to_string(), "0.1.9");
    // After a rollback the floor goes back to the version that serves again.
    floor.accept("0.3.0").unwrap();
    floor.restore("0.1.9").unwrap();
    assert_eq!(floor.highest().unwrap().unwrap().to_string(), "0.1.9");
    floor.check("0.1.9").unwrap();
    // A damaged floor file is an error, not "no floor".
    std::fs::write(dir.path().join("accepted-version"), "garbage").unwrap();
    assert!(floor.check("0.3.0").is_err());
}

#[test]
fn the_floor_a_host_enforces_is_held_in_memory_and_binds_the_bytes_of_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let floor = VersionFloor::new(dir.path(), false);
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    floor.accept_artifact("0.3.0", Some(&a)).unwrap();
    // The file going away lowers nothing while the host runs.
    std::fs::remove_file(dir.path().join("accepted-version")).unwrap();
    let err = floor.check("0.2.9").unwrap_err();
    assert!(format!("{err:#}").contains("lower than 0.3.0"), "{err:#}");
    assert_eq!(floor.enforced().unwrap().unwrap().to_string(), "0.3.0");
    // A lower file is not believed either.
    std::fs::write(dir.path().join("accepted-version"), "0.1.0\n").unwrap();
    assert!(floor.check("0.2.9").is_err());
    // Other bytes signed as the accepted version: refused; the same bytes and a higher
    // version pass; an unsigned component (no digest) is held to the version only.
    let err = floor.check_artifact("0.3.0", Some(&b)).unwrap_err();
    assert!(format!("{err:#}").contains("same-version swap"), "{err:#}");
    floor.check_artifact("0.3.0", Some(&a)).unwrap();
    floor.check_artifact("0.3.1", Some(&b)).unwrap();
    floor.check("0.3.0").unwrap();
    // Accepting again writes the file back.
    floor.accept_artifact("0.3.0", Some(&a)).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("accepted-version")).unwrap(),
        "0.3.0\n"
    );
    // allow_downgrade allows the same-version swap too (logged), as it allows a downgrade.
    let allowed = VersionFloor::new(dir.path(), true);
    allowed.accept_artifact("0.3.0", Some(&a)).unwrap();
    allowed.check_artifact("0.3.0", Some(&b)).unwrap();
    // A roll back puts the floor and its bytes back.
    floor.accept_artifact("0.4.0", Some(&b)).unwrap();
    floor.restore_artifact("0.3.0", Some(&a)).unwrap();
    floor.check_artifact("0.3.0", Some(&a)).unwrap();
    assert!(floor.check_artifact("0.3.0", Some(&b)).is_err());
}

#[test]
fn a_new_floor_starts_from_the_version_the_host_is_built_with() {
    let dir = tempfile::tempdir().unwrap();
    let floor = VersionFloor::new(dir.path(), false);
    floor.seed("0.3.0").unwrap();
    assert!(floor.check("0.2.0").is_err());
    floor.check("0.3.0").unwrap();
    // Seeding never lowers, and writes no file.
    floor.seed("0.1.0").unwrap();
    assert!(floor.check("0.2.0").is_err());
    assert!(!dir.path().join("accepted-version").exists());
    // A file floor above the seed wins.
    std::fs::write(dir.path().join("accepted-version"), "0.5.0\n").unwrap();
    assert!(floor.check("0.4.0").is_err());
    // Clones share the floor.
    let clone = floor.clone();
    std::fs::remove_file(dir.path().join("accepted-version")).unwrap();
    assert!(clone.check("0.4.0").is_err());
}

#[test]
fn a_signature_is_checked_against_a_declared_digest_before_the_bytes() {
    let component = b"component bytes";
    let sig = sign(&key(), component, "0.3.0").unwrap();
    let digest = digest_hex(component);
    assert_eq!(
        verify_digest(&key().verifying_key(), &digest, sig.as_bytes()).unwrap(),
        "0.3.0"
    );
    let err = verify_digest(&key().verifying_key(), &"0".repeat(64), sig.as_bytes()).unwrap_err();
    assert!(format!("{err:#}").contains("for other bytes"), "{err:#}");
}
