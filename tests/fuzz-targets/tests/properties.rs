//! Property tests (proptest) of the policies and the cryptography the fuzz targets lean on:
//!
//! * the retry and backoff policy of every Krypton call (`krypton_guest::client::Run::call`):
//!   attempts, backoff bounds, `Retry-After` in both forms of RFC 9110 §10.2.3
//!   (delay-seconds and HTTP-date), never a wait past the deadline;
//! * signatures and key derivation: SIM mode's request signature and Inventory key (SHA-256
//!   over the exact bytes, as SORACOM's clients compute them), 3GPP AKA on Milenage (TS 33.102
//!   §6.3: the USIM accepts exactly what the network generated, resynchronises on a stale SQN,
//!   refuses any changed bit of AUTN), and the `.sig` files of components (sign, verify, any
//!   changed bit refused);
//! * the CIDR coverage `doctor` (ipnet) and `wireguard-config` (the component's `Cidr`) use,
//!   against a brute-force check on small random prefixes, IPv4 and IPv6, and against each
//!   other.
//!

use krypton_fuzz_targets::{FAKE_EPOCH_MS, FakeCaps, request};
use krypton_guest::client::{HttpResponse, MAX_RETRY_AFTER_MS, Method, Run, retry_after_ms};
use krypton_guest::types::model::{AuthMode, Error, Target};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `cases` cases, no failure file (a failure prints its shrunk input).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Retry and backoff
// ---------------------------------------------------------------------------------------------

/// How one scripted answer asks to be retried.
#[derive(Clone, Debug)]
enum Hint {
    None,
    Seconds(u64),
    /// An HTTP-date this many seconds after the fake's clock (negative: in the past).
    DateIn(i64),
    Garbage(String),
}

fn hint() -> impl Strategy<Value = Hint> {
    prop_oneof![
        Just(Hint::None),
        (0u64..400).prop_map(Hint::Seconds),
        (-100i64..400).prop_map(Hint::DateIn),
        "[a-z0-9 ,.:-]{0,20}".prop_map(Hint::Garbage),
    ]
}

fn http_date(unix_ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms))
}

/// The wait `Retry-After` asks for at `now_ms`, as RFC 9110 §10.2.3 defines it (an HTTP-date
/// has whole seconds), capped at the policy's ceiling; `None` when the value is malformed.
fn expected_hint_ms(value: &str, now_ms: u64) -> Option<u64> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS));
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(at_ms.saturating_sub(now_ms).min(MAX_RETRY_AFTER_MS))
}

proptest! {
    #![proptest_config(config(256))]

    /// One call against a server that answers 503 (each with its `Retry-After` form) and then
    /// perhaps 200: the attempts, each wait and the deadline obey the policy.
    #[test]
    fn retries_obey_attempts_backoff_retry_after_and_the_deadline(
        max_attempts in 1u32..8,
        base in 10u32..2_000,
        spread in 0u32..20_000,
        deadline_ms in 1_000u32..120_000,
        send_ms in 0u64..3_000,
        hints in prop::collection::vec(hint(), 1..8),
        succeeds_after in prop::option::of(0usize..8),
        random in prop::collection::vec(any::<u64>(), 8),
    ) {
        let max_delay = base + spread;
        let mut caps = FakeCaps { send_ms, ..FakeCaps::default() };
        caps.random = random.iter().copied().collect();
        let mut sent_values = Vec::new();
        for (i, hint) in hints.iter().enumerate() {
            if succeeds_after == Some(i) {
                break;
            }
            // The value is fixed when scripted; a date is relative to the time of the answer,
            // which the fake's clock reaches later, so it is computed from the start time plus
            // this test's own bound on it (checked below through `expected_hint_ms`).
            let value = match hint {
                Hint::None => None,
                Hint::Seconds(s) => Some(s.to_string()),
                Hint::DateIn(s) => Some(http_date(
                    (FAKE_EPOCH_MS as i64 + s * 1000).max(0) as u64,
                )),
                Hint::Garbage(g) => Some(g.clone()),
            };
            sent_values.push(value.clone());
            caps.responses.push_back(Ok(HttpResponse {
                status: 503,
                headers: value.map(|v| ("retry-after".to_string(), v)).into_iter().collect(),
                body: br#"{"code":"X","message":"busy"}"#.to_vec(),
            }));
        }
        caps.responses.push_back(Ok(HttpResponse { status: 200, headers: vec![], body: b"{}".to_vec() }));
        let mut req = request(Target::Userdata, AuthMode::Network);
        req.retry.max_attempts = max_attempts;
        req.retry.base_delay_ms = base;
        req.retry.max_delay_ms = max_delay;
        req.deadline_ms = deadline_ms;
        let outcome = {
            let mut run = Run::new(&mut caps, &req).unwrap();
            run.call(Method::Post, "/v1/provisioning/soracom/air/userdata", Some(b"{}".to_vec()))
        };
        let sends = caps.sent.len();
        prop_assert!(sends >= 1 && sends as u32 <= max_attempts, "{sends} sends, at most {max_attempts}");
        prop_assert_eq!(caps.slept_ms.len(), sends - 1, "one wait between attempts");
        // Every wait: Retry-After's (capped) when it parses, else backoff with full jitter,
        // at most base * 2^(attempt-1) and the ceiling; it ends before the deadline.
        let mut now = 0u64;
        let mut jitter = random.iter();
        for (i, wait) in caps.slept_ms.iter().enumerate() {
            now += send_ms;
            let expected = sent_values[i]
                .as_deref()
                .and_then(|v| expected_hint_ms(v, FAKE_EPOCH_MS + now));
            match expected {
                Some(ms) => prop_assert_eq!(*wait, ms, "Retry-After {:?}", sent_values[i]),
                None => {
                    let cap = (u64::from(base) << i).min(u64::from(max_delay));
                    prop_assert!(*wait <= cap, "backoff {wait} > {cap} before attempt {}", i + 2);
                    prop_assert_eq!(*wait, jitter.next().unwrap() % (cap + 1), "full jitter from the random source");
                }
            }
            now += wait;
            prop_assert!(now < u64::from(deadline_ms), "a wait ended at {now} ms, past the {deadline_ms} ms deadline");
        }
        // The outcome: success only through a 200; else the last 503, with the attempts made.
        match outcome {
            Ok(r) => prop_assert_eq!(r.status, 200),
            Err(Error::HttpStatus { status, request, .. }) => {
                prop_assert_eq!(status, 503);
                if sends > 1 {
                    let tail = format!("(after {sends} attempts)");
                    prop_assert!(request.ends_with(&tail), "{request}");
                }
            }
            Err(Error::Timeout(m)) => prop_assert!(m.contains("deadline"), "{m}"),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    /// `Retry-After: <delay-seconds>`: that many seconds, capped.
    #[test]
    fn retry_after_seconds_are_seconds_capped(secs in any::<u64>(), pad in "[ \t]{0,2}") {
        let response = HttpResponse { status: 429, headers: vec![("retry-after".into(), format!("{pad}{secs}{pad}"))], body: vec![] };
        prop_assert_eq!(retry_after_ms(&response, FAKE_EPOCH_MS), Some(secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS)));
    }

    /// `Retry-After: <HTTP-date>` in each of the three forms RFC 9110 §5.6.7 makes recipients
    /// accept (IMF-fixdate, RFC 850, asctime): the time until then, 0 when past, capped.
    #[test]
    fn retry_after_dates_in_every_form_count_from_now(at_secs in 0u64..4_000_000_000, now_ms in 0u64..4_000_000_000_000) {
        let fixdate = http_date(at_secs * 1000);
        let t = time_parts(&fixdate);
        let rfc850 = format!("{}, {:02}-{}-{:02} {} GMT", long_day(&t.0), t.1, t.2, t.3 % 100, t.4);
        let asctime = format!("{} {} {:>2} {} {}", t.0, t.2, t.1, t.4, t.3);
        let expected = (at_secs * 1000).saturating_sub(now_ms).min(MAX_RETRY_AFTER_MS);
        for value in [fixdate.clone(), asctime] {
            let response = HttpResponse { status: 503, headers: vec![("retry-after".into(), value.clone())], body: vec![] };
            prop_assert_eq!(retry_after_ms(&response, now_ms), Some(expected), "{}", value);
        }
        // A two-digit year is read in the 50-year window of RFC 9110 §5.6.7; only years it
        // maps back to themselves are checked.
        if (1970..2020).contains(&t.3) {
            let response = HttpResponse { status: 503, headers: vec![("retry-after".into(), rfc850.clone())], body: vec![] };
            prop_assert_eq!(retry_after_ms(&response, now_ms), Some(expected), "{}", rfc850);
        }
    }

    /// A value that is neither form is ignored (the caller's backoff applies).
    #[test]
    fn retry_after_garbage_is_ignored(value in "[0-9]{1,5}\\.[0-9]{1,3}|-[0-9]{1,5}|[a-zA-Z ]{1,30}|[0-9]{1,3}s") {
        let response = HttpResponse { status: 503, headers: vec![("retry-after".into(), value.clone())], body: vec![] };
        prop_assert_eq!(retry_after_ms(&response, FAKE_EPOCH_MS), None, "{}", value);
    }
}

/// (weekday, day, month, year, hh:mm:ss) of an IMF-fixdate.
fn time_parts(fixdate: &str) -> (String, u32, String, u32, String) {
    let p: Vec<&str> = fixdate
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .collect();
    (
        p[0].into(),
        p[1].parse().unwrap(),
        p[2].into(),
        p[3].parse().unwrap(),
        p[4].into(),
    )
}

fn long_day(short: &str) -> &'static str {
    match short {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    }
}

#[test]
fn retry_after_forms_of_rfc_9110_agree() {
    // RFC 9110 §5.6.7's example, in its three forms, and §10.2.3's delay-seconds example.
    let now = 784_111_777_000 - 120_000; // two minutes before Sun, 06 Nov 1994 08:49:37 GMT
    for value in [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "120",
    ] {
        let response = HttpResponse {
            status: 503,
            headers: vec![("retry-after".into(), value.into())],
            body: vec![],
        };
        assert_eq!(retry_after_ms(&response, now), Some(120_000), "{value}");
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures and key derivation
// ---------------------------------------------------------------------------------------------

mod crypto {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use krypton_guest::client::signature;
    use krypton_guest::client::signing::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers};
    use krypton_guest::ops::inventory::inventory_application_key;
    use krypton_guest::types::model::SecretBytes;
    use krypton_uicc::aka::{
        SQN_DELTA, SQN_MAX, UsimVerdict, generate_vector, recover_sqn_ms, usim_authenticate,
    };
    use krypton_uicc::milenage::Subscriber;
    use krypton_uicc::{AuthOutcome, Key128};
    use sha2::{Digest as _, Sha256};

    fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[bit / 8] ^= 1 << (bit % 8);
        out
    }

    proptest! {
        #![proptest_config(config(128))]

        /// SIM mode's signature is standard base64 of SHA-256(body ‖ timestamp ‖ CK), the
        /// headers carry the timestamp as sent, and a changed bit anywhere changes it.
        #[test]
        fn request_signature_covers_body_timestamp_and_ck(
            body in prop::collection::vec(any::<u8>(), 0..256),
            unix_ms in any::<u64>(),
            ck in prop::array::uniform16(any::<u8>()),
            which in 0usize..3,
            bit in any::<usize>(),
        ) {
            let ts = unix_ms.to_string();
            let key = SecretBytes::new(ck.to_vec());
            let expected = BASE64.encode(Sha256::new().chain_update(&body).chain_update(&ts).chain_update(ck).finalize());
            prop_assert_eq!(signature(&body, &ts, &key), expected.clone());
            let headers = signature_headers(&body, unix_ms, &key);
            let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            prop_assert_eq!(get(TIMESTAMP_HEADER), Some(ts.clone()));
            prop_assert_eq!(get(SIGNATURE_HEADER), Some(expected.clone()));
            let changed = match which {
                0 if !body.is_empty() => signature(&flip(&body, bit % (body.len() * 8)), &ts, &key),
                1 => signature(&body, &flip(ts.as_bytes(), bit % (ts.len() * 8)).iter().map(|b| *b as char).collect::<String>(), &key),
                _ => signature(&body, &ts, &SecretBytes::new(flip(&ck, bit % 128))),
            };
            if which != 0 || !body.is_empty() {
                prop_assert_ne!(changed, expected);
            }
        }

        /// The Inventory key of SIM mode: the first 16 bytes of SHA-256(nonce ‖ timestamp ‖
        /// CK), base64; any nonce of 1 to 64 bytes, none longer.
        #[test]
        fn inventory_key_is_the_truncated_digest(
            nonce in prop::collection::vec(any::<u8>(), 0..80),
            ts in "[0-9]{1,19}",
            ck in prop::array::uniform16(any::<u8>()),
        ) {
            let got = inventory_application_key(&BASE64.encode(&nonce), &ts, &ck);
            if nonce.is_empty() || nonce.len() > 64 {
                prop_assert!(got.is_err());
            } else {
                let digest = Sha256::new().chain_update(&nonce).chain_update(&ts).chain_update(ck).finalize();
                prop_assert_eq!(got.unwrap(), BASE64.encode(&digest[..16]));
            }
        }

        /// AKA on Milenage: the USIM accepts what the network generated (same RES, CK, IK),
        /// asks to resynchronise on a stale SQN with an AUTS the network reads back, and
        /// refuses an AUTN with any one bit changed.
        #[test]
        fn aka_round_trips_resyncs_and_refuses_changed_bits(
            k in prop::array::uniform16(any::<u8>()),
            opc in prop::array::uniform16(any::<u8>()),
            rand in prop::array::uniform16(any::<u8>()),
            amf in prop::array::uniform2(any::<u8>()),
            sqn in 1u64..=SQN_MAX,
            behind in any::<u64>(),
            bit in 0usize..128,
        ) {
            let sub = Subscriber::new(Key128::new(k), Key128::new(opc));
            let vector = generate_vector(&sub, sqn, amf, rand);
            // Fresh: the USIM's highest SQN is below it, by at most Δ (TS 33.102 Annex C.2.1).
            let sqn_ms = sqn - 1 - behind % sqn.min(SQN_DELTA);
            match usim_authenticate(&sub, sqn_ms, &rand, &vector.autn) {
                UsimVerdict::Accept { sqn: accepted, outcome: AuthOutcome::Res { res, ck, ik } } => {
                    prop_assert_eq!(accepted, sqn);
                    prop_assert_eq!(res, vector.xres.clone());
                    prop_assert_eq!(ck, vector.ck.clone());
                    prop_assert_eq!(ik, vector.ik.clone());
                }
                other => prop_assert!(false, "{other:?}"),
            }
            // Too far ahead: more than Δ above the USIM's highest SQN is a resynchronisation.
            if sqn > SQN_DELTA + 1 {
                let sqn_ms = behind % (sqn - SQN_DELTA);
                prop_assert!(
                    matches!(usim_authenticate(&sub, sqn_ms, &rand, &vector.autn), UsimVerdict::Resync { .. }),
                    "SQN {sqn} accepted {} above SQN_MS", sqn - sqn_ms
                );
            }
            // Stale: the USIM has seen this SQN or a later one.
            let sqn_ms = sqn + behind % (SQN_MAX - sqn + 1);
            match usim_authenticate(&sub, sqn_ms, &rand, &vector.autn) {
                UsimVerdict::Resync { outcome: AuthOutcome::SyncFailure { auts } } => {
                    prop_assert_eq!(recover_sqn_ms(&sub, &rand, &auts), Ok(sqn_ms));
                    let bad: [u8; 14] = flip(&auts, bit % 112).try_into().unwrap();
                    prop_assert!(recover_sqn_ms(&sub, &rand, &bad).is_err(), "a changed AUTS was read");
                }
                other => prop_assert!(false, "{other:?}"),
            }
            let autn: [u8; 16] = flip(&vector.autn, bit).try_into().unwrap();
            prop_assert_eq!(usim_authenticate(&sub, 0, &rand, &autn), UsimVerdict::MacFailure);
        }
    }

    proptest! {
        #![proptest_config(config(24))]

        /// A component's `.sig`: what `sign` writes verifies with the key and names the
        /// version; one changed bit in the file or in the component, or another key, and it
        /// is refused.
        #[test]
        fn component_signatures_verify_and_refuse_any_changed_bit(
            seed in prop::array::uniform32(any::<u8>()),
            other_seed in prop::array::uniform32(any::<u8>()),
            component in prop::collection::vec(any::<u8>(), 1..512),
            version in (0u64..100, 0u64..100, 0u64..1000, prop::option::of("[a-z]{1,8}\\.[1-9][0-9]{0,2}")),
            sig_bit in any::<usize>(),
            component_bit in any::<usize>(),
        ) {
            use krypton_host::signing::{sign, verify};
            let version = match &version.3 {
                Some(pre) => format!("{}.{}.{}-{pre}", version.0, version.1, version.2),
                None => format!("{}.{}.{}", version.0, version.1, version.2),
            };
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let sig = sign(&key, &component, &version).unwrap();
            prop_assert_eq!(verify(&key.verifying_key(), &component, sig.as_bytes()).unwrap(), version);
            let bad_sig = flip(sig.as_bytes(), sig_bit % (sig.len() * 8));
            prop_assert!(verify(&key.verifying_key(), &component, &bad_sig).is_err(), "a changed .sig verified");
            let bad_component = flip(&component, component_bit % (component.len() * 8));
            prop_assert!(verify(&key.verifying_key(), &bad_component, sig.as_bytes()).is_err());
            if other_seed != seed {
                let other = ed25519_dalek::SigningKey::from_bytes(&other_seed);
                prop_assert!(verify(&other.verifying_key(), &component, sig.as_bytes()).is_err());
            }
        }
    }

    /// Every one of the ~2,000 single-bit changes of one `.sig` file is refused.
    #[test]
    fn every_single_bit_change_of_a_sig_file_is_refused() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let component = b"\0asm\x0d\0\x01\0component bytes";
        let sig = krypton_host::signing::sign(&key, component, "1.2.3").unwrap();
        let verifying = key.verifying_key();
        let mut accepted = Vec::new();
        for bit in 0..sig.len() * 8 {
            let bad = flip(sig.as_bytes(), bit);
            if krypton_host::signing::verify(&verifying, component, &bad).is_ok() {
                accepted.push(bit);
            }
        }
        assert_eq!(accepted, Vec::<usize>::new(), "changed bits accepted");
    }
}

// ---------------------------------------------------------------------------------------------
// CIDR coverage (doctor and wireguard-config)
// ---------------------------------------------------------------------------------------------

mod cidr {
    use super::*;
    use krypton_guest::types::bundle::ArcBundle;
    use krypton_guest::types::net::{Cidr, is_local_address};
    use krypton_host_cli::doctor::Tunnel;
    use std::collections::BTreeSet;

    /// Every address of `net/prefix` (an IPv4 or IPv6 prefix with at most 2^12 addresses),
    /// enumerated one by one.
    fn enumerate(net: IpAddr, prefix: u8) -> BTreeSet<IpAddr> {
        match net {
            IpAddr::V4(a) => {
                let host_bits = 32 - u32::from(prefix);
                let base = u32::from(a) & !((1u64 << host_bits) - 1) as u32;
                (0..1u32 << host_bits)
                    .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
                    .collect()
            }
            IpAddr::V6(a) => {
                let host_bits = 128 - u32::from(prefix);
                let base = u128::from(a) & !((1u128 << host_bits) - 1);
                (0..1u128 << host_bits)
                    .map(|i| IpAddr::V6(Ipv6Addr::from(base + i)))
                    .collect()
            }
        }
    }

    /// A small network (IPv4 /20 to /32, IPv6 /116 to /128) and addresses in and around it.
    fn net_and_probes() -> impl Strategy<Value = (IpAddr, u8, Vec<IpAddr>)> {
        let v4 = (
            any::<u32>(),
            20u8..=32,
            prop::collection::vec((any::<u32>(), 0u32..32), 1..24),
        )
            .prop_map(|(a, p, probes)| {
                let probes = probes
                    .into_iter()
                    // Near the network: a few low bits changed, or one bit anywhere.
                    .map(|(r, bit)| {
                        IpAddr::V4(Ipv4Addr::from(if r % 2 == 0 {
                            a ^ (r & 0x1fff)
                        } else {
                            a ^ (1 << bit)
                        }))
                    })
                    .collect();
                (IpAddr::V4(Ipv4Addr::from(a)), p, probes)
            });
        let v6 = (
            any::<u128>(),
            116u8..=128,
            prop::collection::vec((any::<u128>(), 0u32..128), 1..24),
        )
            .prop_map(|(a, p, probes)| {
                let probes = probes
                    .into_iter()
                    .map(|(r, bit)| {
                        IpAddr::V6(Ipv6Addr::from(if r % 2 == 0 {
                            a ^ (r & 0x1fff)
                        } else {
                            a ^ (1 << bit)
                        }))
                    })
                    .collect();
                (IpAddr::V6(Ipv6Addr::from(a)), p, probes)
            });
        prop_oneof![v4, v6]
    }

    proptest! {
        #![proptest_config(config(256))]

        /// `wireguard-config`'s `Cidr` and `doctor`'s `AllowedIPs` coverage agree with the
        /// enumerated network, for addresses inside, next to and far from it, and for the
        /// other address family.
        #[test]
        fn coverage_agrees_with_brute_force((net, prefix, probes) in net_and_probes()) {
            let text = format!("{net}/{prefix}");
            let members = enumerate(net, prefix);
            let cidr = Cidr::parse(&text).unwrap();
            let tunnel = Tunnel::from_wireguard(&format!("[Peer]\nAllowedIPs = {text}\n")).unwrap();
            prop_assert!(tunnel.bad_entries.is_empty());
            let other_family: IpAddr = if net.is_ipv4() { "::ffff:10.0.0.1".parse().unwrap() } else { "10.0.0.1".parse().unwrap() };
            for ip in probes.iter().copied().chain(members.iter().take(3).copied()).chain([other_family]) {
                let truth = members.contains(&ip);
                prop_assert_eq!(cidr.contains(ip), truth, "Cidr {} / {}", text, ip);
                prop_assert_eq!(tunnel.routes(ip), truth, "doctor {} / {}", text, ip);
            }
        }

        /// What `wireguard-config` writes, `doctor` reads as routing every Krypton address
        /// that is not local, and nothing else is added: the two commands agree.
        #[test]
        fn doctor_finds_routed_every_address_wireguard_config_adds(
            nets in prop::collection::vec(net_and_probes(), 1..4),
            extra in prop::collection::vec(any::<u32>(), 0..4),
        ) {
            let allowed: Vec<String> = nets.iter().map(|(n, p, _)| format!("{n}/{p}")).collect();
            let addresses: Vec<IpAddr> = nets
                .iter()
                .flat_map(|(_, _, probes)| probes.iter().take(2).copied())
                .chain(extra.iter().map(|a| IpAddr::V4(Ipv4Addr::from(*a))))
                .collect();
            let bundle = ArcBundle {
                format_version: 1,
                obtained_at_ms: FAKE_EPOCH_MS,
                mode: AuthMode::Network,
                arc_client_peer_private_key: krypton_guest::types::model::Secret::new("Q0FOQVJZLXdpcmVndWFyZC1wcml2YXRlLWtleS0zMmI=".into()),
                arc_client_peer_ip_address: "10.123.45.6".into(),
                arc_server_peer_public_key: "c2VydmVyLXB1YmxpYy1rZXktb2YtMzItYnl0ZXMhISE=".into(),
                arc_server_endpoint: "beck.arc.soracom.io:11010".into(),
                arc_allowed_ips: allowed.clone(),
            };
            let texts: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
            let config = krypton_guest::formats::wireguard::wireguard_config(&bundle, &texts).unwrap();
            let tunnel = Tunnel::from_wireguard(&config).unwrap();
            prop_assert!(tunnel.bad_entries.is_empty(), "{:?}", tunnel.bad_entries);
            let sets: Vec<BTreeSet<IpAddr>> = nets.iter().map(|(n, p, _)| enumerate(*n, *p)).collect();
            let covered_before = |ip: IpAddr| sets.iter().any(|s| s.contains(&ip));
            for ip in &addresses {
                if is_local_address(*ip) {
                    prop_assert_eq!(tunnel.routes(*ip), covered_before(*ip), "a local address was added: {}", ip);
                } else {
                    prop_assert!(tunnel.routes(*ip), "doctor finds {ip} not routed in:\n{config}");
                }
            }
            // Only host routes of the given addresses were added, after the bundle's own.
            prop_assert_eq!(&tunnel.allowed_ips[..allowed.len()], &allowed[..]);
            for added in &tunnel.allowed_ips[allowed.len()..] {
                let (ip, prefix) = added.split_once('/').unwrap();
                let ip: IpAddr = ip.parse().unwrap();
                prop_assert!(addresses.contains(&ip) && !covered_before(ip), "{added}");
                prop_assert_eq!(prefix, if ip.is_ipv4() { "32" } else { "128" });
            }
        }
    }
}
