//! SIM-authenticated mode: the signature and the Inventory key against the reference vectors,
//! the Keys API exchange (challenge with 200 or 401, resynchronisation, refusals, the SIM's
//! errors), every operation signed, the key cache (reuse, expiry, another IMSI, bypass,
//! clear, a refused cached key) and no CK or RES in any text.

use super::*;
use crate::client::signing::{signature, sim_body};
use crate::ops::key_cache::{KEY_CACHE, KEY_LIFETIME_MS};
use crate::ops::keys::MAX_KEYS_BODY_BYTES;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

const IMSI: &str = "440101234567890";
/// CK and RES of the scripted SIM: recognisable, so that a leak is found (the canary).
const CK: &[u8; 16] = b"CANARY-CK-0123!!";
const RES: &[u8; 8] = b"RES-CNRY";
const IK: &[u8; 16] = b"CANARY-IK-0123!!";
const RAND1: [u8; 16] = [0x11; 16];
const AUTN1: [u8; 16] = [0x22; 16];
const RAND2: [u8; 16] = [0x33; 16];
const AUTN2: [u8; 16] = [0x44; 16];
const AUTS: [u8; 14] = [0x55; 14];

fn challenge(key_id: &str, rand: &[u8], autn: &[u8]) -> serde_json::Value {
    json!({"keyId": key_id, "rand": BASE64.encode(rand), "autn": BASE64.encode(autn)})
}

fn keys(ck: &[u8]) -> Result<AuthOutcome, UiccError> {
    Ok(AuthOutcome::Success(AuthKeys {
        res: SecretBytes::new(RES.to_vec()),
        ck: SecretBytes::new(ck.to_vec()),
        ik: SecretBytes::new(IK.to_vec()),
    }))
}

/// A fake SIM with `IMSI` whose AUTHENTICATE succeeds once with `CK`, and a Keys API that
/// issues `k-1` and verifies it.
fn sim_fake() -> Fake {
    let mut fake = Fake::default()
        .reply(200, challenge("k-1", &RAND1, &AUTN1))
        .reply(200, json!({}));
    fake.imsi = Some(IMSI.into());
    fake.auth.push_back(keys(CK));
    fake
}

fn sim_request(target: Target) -> ProvisionRequest {
    let mut req = request_for(target, false);
    req.mode = AuthMode::Sim;
    req
}

/// The body of request `i`, as JSON.
fn body(fake: &Fake, i: usize) -> serde_json::Value {
    serde_json::from_str(fake.requests[i].2.as_deref().unwrap()).unwrap()
}

fn header<'f>(fake: &'f Fake, i: usize, name: &str) -> Option<&'f str> {
    fake.headers[i]
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Request `i` is a POST signed with `ck` over the exact bytes sent, carrying `key_id` first.
fn assert_signed(fake: &Fake, i: usize, key_id: &str, ck: &[u8]) {
    let (method, path, body, _) = &fake.requests[i];
    let body = body.as_deref().unwrap_or_else(|| panic!("{path}: no body"));
    assert_eq!(method, "POST", "{path}");
    assert_eq!(
        header(fake, i, "x-soracom-digest-algorithm"),
        Some("SHA-256")
    );
    let ts = header(fake, i, "x-soracom-timestamp").expect("timestamp");
    let ts_ms: u64 = ts.parse().expect("decimal ms");
    assert!(
        (1_800_000_000_000..1_800_000_000_000 + 10 * KEY_LIFETIME_MS).contains(&ts_ms),
        "{ts}"
    );
    let mut hasher = Sha256::new();
    hasher.update(body.as_bytes());
    hasher.update(ts.as_bytes());
    hasher.update(ck);
    assert_eq!(
        header(fake, i, "x-soracom-signature"),
        Some(BASE64.encode(hasher.finalize()).as_str()),
        "{path}: the signature does not verify over the body sent"
    );
    assert!(
        body.starts_with(&format!("{{\"keyId\":\"{key_id}\"")),
        "{path}: {body}"
    );
    assert_eq!(fake.headers[i].len(), 3, "{path}");
}

fn assert_unsigned(fake: &Fake, i: usize) {
    assert!(fake.headers[i].is_empty(), "{:?}", fake.requests[i].1);
}

/// The Keys API calls of one key agreement, at `i` and `i + 1`.
fn assert_key_agreement(fake: &Fake, i: usize, key_id: &str) {
    assert_eq!(fake.requests[i].1, "/v1/keys");
    assert_eq!(body(fake, i), json!({"imsi": IMSI}));
    assert_eq!(fake.requests[i + 1].1, format!("/v1/keys/{key_id}/verify"));
    assert_eq!(body(fake, i + 1), json!({"res": BASE64.encode(RES)}));
    for j in [i, i + 1] {
        assert_eq!(fake.requests[j].0, "POST");
        assert_unsigned(fake, j);
        assert_eq!(fake.max_bodies[j], MAX_KEYS_BODY_BYTES);
    }
}

fn cached(fake: &Fake) -> Option<serde_json::Value> {
    fake.store
        .get(KEY_CACHE)
        .map(|b| serde_json::from_slice(b).unwrap())
}

#[test]
fn the_signature_matches_the_reference_vector() {
    // SHA-256(body ‖ ts ‖ CK), base64: the calculation of SORACOM's clients
    // (endorse-client-go `calculateSignature`), CK 00..0f, ts 1700000000000.
    let ck = SecretBytes::new((0u8..16).collect());
    assert_eq!(
        signature(
            br#"{"keyId":"k-example","requestParameters":null}"#,
            "1700000000000",
            &ck
        ),
        "td6bGy7X4vl9DKW2zJRc/ff5Cng4k0Y+ogOLdWvtfHY="
    );
    // The same body as the component builds it for a call without parameters.
    assert_eq!(
        sim_body("k-example", b"{}").unwrap(),
        br#"{"keyId":"k-example","requestParameters":null}"#
    );
}

#[test]
fn sim_bodies_put_the_key_id_first_as_the_go_client() {
    assert_eq!(
        String::from_utf8(
            sim_body("k-1", br#"{"requestParameters":{"thingName":"t","a":1}}"#).unwrap()
        )
        .unwrap(),
        r#"{"keyId":"k-1","requestParameters":{"a":1,"thingName":"t"}}"#
    );
    assert_eq!(
        String::from_utf8(
            sim_body(
                "k-1",
                br#"{"endpoint":"gw-0042","requestParameters":{"endpoint":"gw-0042"}}"#
            )
            .unwrap()
        )
        .unwrap(),
        r#"{"keyId":"k-1","endpoint":"gw-0042","requestParameters":{"endpoint":"gw-0042"}}"#
    );
}

#[test]
fn the_inventory_key_comes_from_nonce_timestamp_and_ck_with_the_exact_digits() {
    let ck = (0u8..16).collect::<Vec<u8>>();
    let mut req = sim_request(Target::Inventory);
    req.force = true;
    // The timestamp as a JSON string and as a JSON number: the same digits, the same key.
    for raw in [
        &br#"{"serverUri":"coaps://jp.inventory.soracom.io:5684","pskId":"d-0123456789abcdefghij","nonce":"AAECAwQFBgcICQoLDA0ODw==","timestamp":"1700000000123"}"#[..],
        &br#"{"serverUri":"coaps://jp.inventory.soracom.io:5684","pskId":"d-0123456789abcdefghij","nonce":"AAECAwQFBgcICQoLDA0ODw==","timestamp":1700000000123}"#[..],
    ] {
        let mut fake = Fake::default()
            .reply(200, challenge("k-1", &RAND1, &AUTN1))
            .reply(200, json!({}))
            .reply_raw(200, &[], raw);
        fake.imsi = Some(IMSI.into());
        fake.auth.push_back(keys(&ck));
        provision(&mut fake, &req).unwrap();
        assert_eq!(
            stored_bundle(&fake, Target::Inventory)["applicationKey"],
            "gvFdTTvSWsNoTX/kjBNRKQ=="
        );
        assert_eq!(stored_bundle(&fake, Target::Inventory)["mode"], "sim");
        assert_signed(&fake, 2, "k-1", &ck);
        assert_eq!(
            fake.requests[2].2.as_deref(),
            Some(
                r#"{"keyId":"k-1","endpoint":"gw-0042","requestParameters":{"endpoint":"gw-0042"}}"#
            )
        );
    }
    // A number that is not whole digits is refused, never formatted again.
    for timestamp in [
        "1.700000000123e12",
        "1700000000123.0",
        "-1",
        "\"17000x\"",
        "null",
    ] {
        let raw = format!(
            r#"{{"serverUri":"coaps://x.example:5684","pskId":"d-1","nonce":"AAECAwQFBgcICQoLDA0ODw==","timestamp":{timestamp}}}"#
        );
        let mut fake = Fake::default().reply_raw(200, &[], raw.as_bytes());
        fake.imsi = Some(IMSI.into());
        fake.store.insert(
            KEY_CACHE.into(),
            cache_entry(IMSI, "k-9", 1_800_000_000_000),
        );
        let err = provision(&mut fake, &req).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidResponse { field, .. } if field == "timestamp"),
            "{timestamp}: {err:?}"
        );
        assert!(!fake.store.contains_key("inventory"));
    }
}

/// A cache entry as the component writes it, created at `created` (ms since the epoch).
fn cache_entry(imsi: &str, key_id: &str, created: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "formatVersion": 2, "imsi": imsi, "origin": "https://krypton.example:8036",
        "keyId": key_id, "ck": BASE64.encode(CK),
        "createdAtMs": created, "expiresAtMs": created + KEY_LIFETIME_MS,
    }))
    .unwrap()
}

/// The scripted answers of `target`'s calls, and the paths they go to.
fn script(fake: Fake, target: Target) -> (Fake, Vec<&'static str>) {
    match target {
        Target::AzureIot => (
            fake.reply(200, json!({"operationId": "4.op-1", "status": "assigning"}))
                .reply(200, assigned()),
            vec![
                "/v1/provisioning/azure/iot/register",
                "/v1/provisioning/azure/iot/registrations/4.op-1",
            ],
        ),
        Target::AwsIot => (
            fake.reply(200, aws_ok()),
            vec!["/v1/provisioning/aws/iot/bootstrap"],
        ),
        Target::AwsCognito => (
            fake.reply(
                200,
                json!({"identityId": OPENID_ID, "credentials": {"accessKeyId": "ASIAEXAMPLE00001",
                       "secretKey": "s3cr3t/Key+1", "sessionToken": "t0ken/2+==",
                       "expiration": 1_900_000_000u64}}),
            ),
            vec!["/v1/provisioning/aws/cognito/credentials"],
        ),
        Target::AwsCognitoOpenid => (
            fake.reply(
                200,
                json!({"region": "ap-northeast-1", "token": "tok", "identityId": OPENID_ID}),
            ),
            vec!["/v1/provisioning/aws/cognito/open_id_tokens"],
        ),
        Target::Inventory => (
            fake.reply(
                200,
                json!({"serverUri": "coaps://jp.inventory.soracom.io:5684",
                       "pskId": "d-0123456789abcdefghij", "applicationKey": "gvFdTTvSWsNoTX/kjBNRKQ=="}),
            ),
            vec!["/v1/provisioning/soracom/inventory/bootstrap"],
        ),
        Target::Arc => (
            fake.reply(200, arc_body("beck.arc.soracom.io:11010")),
            vec!["/v1/provisioning/soracom/arc/bootstrap"],
        ),
        Target::SubscriberMetadata => (
            fake.reply(200, json!({"imsi": IMSI, "groupId": "g-1"})),
            vec!["/v1/provisioning/soracom/air/subscriber_metadata"],
        ),
        Target::Userdata => (
            fake.reply_raw(200, &[], b"bucket-name"),
            vec!["/v1/provisioning/soracom/air/userdata"],
        ),
    }
}

#[test]
fn every_operation_runs_in_sim_mode_signed_with_the_agreed_key() {
    for target in ALL_TARGETS {
        let (mut fake, paths) = script(sim_fake(), target);
        let report = provision(&mut fake, &sim_request(target)).unwrap();
        assert_eq!(report.mode, AuthMode::Sim, "{target:?}");
        assert!(!report.reused);
        assert_key_agreement(&fake, 0, "k-1");
        assert_eq!(fake.auth_calls, vec![(RAND1.to_vec(), AUTN1.to_vec())]);
        let sent: Vec<&str> = fake.requests[2..].iter().map(|r| r.1.as_str()).collect();
        assert_eq!(sent, paths, "{target:?}");
        for i in 2..fake.requests.len() {
            assert_signed(&fake, i, "k-1", CK);
        }
        let first = body(&fake, 2);
        let expected_params = match target {
            Target::Inventory => json!({"endpoint": "gw-0042"}),
            _ => serde_json::Value::Null,
        };
        assert_eq!(first["requestParameters"], expected_params, "{target:?}");
        if target == Target::AzureIot {
            // The status poll is a signed POST carrying the operation ID.
            assert_eq!(
                body(&fake, 3),
                json!({"keyId": "k-1", "requestParameters": {"operationId": "4.op-1"}})
            );
        }
        assert_eq!(stored_bundle(&fake, target)["mode"], "sim", "{target:?}");
        assert_eq!(
            status(&mut fake, target).unwrap().unwrap().mode,
            AuthMode::Sim
        );
        let entry = cached(&fake).expect("the session is cached");
        assert_eq!(entry["imsi"], IMSI);
        assert_eq!(entry["keyId"], "k-1");
        assert_eq!(
            entry["expiresAtMs"].as_u64().unwrap() - entry["createdAtMs"].as_u64().unwrap(),
            3_600_000
        );
    }
}

#[test]
fn the_aws_split_flow_signs_each_of_its_three_calls() {
    let mut req = sim_request(Target::AwsIot);
    req.request_parameters = Some(r#"{"skipCertificates":true}"#.into());
    let mut fake = sim_fake()
        .reply(
            200,
            json!({"host": "abc-ats.iot.ap-northeast-1.amazonaws.com", "clientId": "thing-1",
                   "privateKey": EC_SEC1, "certificateId": CERT_ID}),
        )
        .reply(200, json!({"certificate": EC_CRT}))
        .reply(200, json!({"rootCaCertificate": ROOT_CRT}));
    provision(&mut fake, &req).unwrap();
    assert_eq!(fake.requests.len(), 5);
    for i in 2..5 {
        assert_signed(&fake, i, "k-1", CK);
    }
    assert_eq!(
        body(&fake, 2),
        json!({"keyId": "k-1", "requestParameters": {"skipCertificates": true}})
    );
    assert_eq!(fake.requests[3].1, CERT_PATH);
}

#[test]
fn a_network_bundle_has_no_mode_field_and_old_bundles_read_as_network() {
    let mut fake = provisioned(Target::Arc);
    let stored = stored_bundle(&fake, Target::Arc);
    assert!(
        stored.get("mode").is_none(),
        "network bundles are written as before"
    );
    let report = status(&mut fake, Target::Arc).unwrap().unwrap();
    assert_eq!(report.mode, AuthMode::Network);
    // A bundle obtained in network mode is reused by a SIM-mode request (no SIM, no call).
    let again = provision(&mut fake, &sim_request(Target::Arc)).unwrap();
    assert!(again.reused);
    assert_eq!(again.mode, AuthMode::Network);
    assert!(fake.requests.is_empty());
    assert!(fake.auth_calls.is_empty());
}

#[test]
fn a_challenge_answered_with_401_is_accepted() {
    let mut fake = Fake::default()
        .reply(401, challenge("k-1", &RAND1, &AUTN1))
        .reply(200, json!({}))
        .reply_raw(200, &[], b"bucket-name");
    fake.imsi = Some(IMSI.into());
    fake.auth.push_back(keys(CK));
    provision(&mut fake, &sim_request(Target::Userdata)).unwrap();
    assert_key_agreement(&fake, 0, "k-1");
    assert_signed(&fake, 2, "k-1", CK);
}

#[test]
fn a_synchronisation_failure_resynchronises_once() {
    let mut fake = Fake::default()
        .reply(200, challenge("k-1", &RAND1, &AUTN1))
        .reply(200, challenge("k-2", &RAND2, &AUTN2))
        .reply(200, json!({}))
        .reply_raw(200, &[], b"bucket-name");
    fake.imsi = Some(IMSI.into());
    fake.auth
        .push_back(Ok(AuthOutcome::SyncFailure(AUTS.to_vec())));
    fake.auth.push_back(keys(CK));
    provision(&mut fake, &sim_request(Target::Userdata)).unwrap();
    assert_eq!(
        body(&fake, 1),
        json!({"imsi": IMSI, "rand": BASE64.encode(RAND1), "auts": BASE64.encode(AUTS)})
    );
    assert_eq!(
        fake.auth_calls,
        vec![
            (RAND1.to_vec(), AUTN1.to_vec()),
            (RAND2.to_vec(), AUTN2.to_vec())
        ]
    );
    assert_eq!(fake.requests[2].1, "/v1/keys/k-2/verify");
    assert_signed(&fake, 3, "k-2", CK);
    assert_eq!(cached(&fake).unwrap()["keyId"], "k-2");

    // A second synchronisation failure ends the run: one resynchronisation only.
    let mut fake = Fake::default()
        .reply(200, challenge("k-1", &RAND1, &AUTN1))
        .reply(200, challenge("k-2", &RAND2, &AUTN2));
    fake.imsi = Some(IMSI.into());
    fake.auth
        .push_back(Ok(AuthOutcome::SyncFailure(AUTS.to_vec())));
    fake.auth
        .push_back(Ok(AuthOutcome::SyncFailure(AUTS.to_vec())));
    let err = provision(&mut fake, &sim_request(Target::Userdata)).unwrap_err();
    assert!(
        matches!(&err, Error::Sim(SimError::KeyAgreement(m)) if m.contains("synchronisation failure again")),
        "{err:?}"
    );
    assert_eq!(fake.requests.len(), 2);
    assert!(fake.store.is_empty());
}

#[test]
fn a_wrong_res_is_refused_and_nothing_is_cached_or_stored() {
    let mut fake = Fake::default()
        .reply(200, challenge("k-1", &RAND1, &AUTN1))
        .reply(401, json!({"code": "AUTH0001", "message": "Invalid RES"}));
    fake.imsi = Some(IMSI.into());
    fake.auth.push_back(keys(CK));
    let req = sim_request(Target::Arc);
    let err = provision(&mut fake, &req).unwrap_err();
    match &err {
        Error::Sim(SimError::KeyAgreement(m)) => {
            assert!(m.starts_with("the Keys API did not verify the SIM's answer: POST https://krypton.example:8036/v1/keys/k-1/verify answered HTTP 401 (AUTH0001): Invalid RES"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Failure::in_mode(err, AuthMode::Sim).hint.as_deref(),
        Some(SIM_REFUSED_HINT)
    );
    assert_eq!(fake.requests.len(), 2, "no provisioning call");
    assert!(
        !fake.store.contains_key(KEY_CACHE) && !fake.store.contains_key("arc"),
        "{:?}",
        fake.store.keys()
    );
}

#[test]
fn refusals_and_unusable_challenges_of_the_keys_api_are_key_agreement_errors() {
    let too_long = "k".repeat(257);
    let cases: Vec<(u16, serde_json::Value, &str)> = vec![
        (
            403,
            json!({"code": "KEY0003", "message": "SIM authentication is not enabled"}),
            "the Keys API refused to start a key agreement: POST https://krypton.example:8036/v1/keys answered HTTP 403 (KEY0003): SIM authentication is not enabled",
        ),
        (
            401,
            json!({"code": "KEY0001", "message": "unknown IMSI"}),
            "answered HTTP 401 (KEY0001): unknown IMSI",
        ),
        (
            200,
            challenge("k_1", &RAND1, &AUTN1),
            "unusable challenge: field `keyId`",
        ),
        (200, challenge(&too_long, &RAND1, &AUTN1), "field `keyId`"),
        (
            200,
            challenge("k-1", &RAND1[..15], &AUTN1),
            "field `rand`: 15 bytes, expected 16",
        ),
        (
            200,
            json!({"keyId": "k-1", "rand": BASE64.encode(RAND1).trim_end_matches('='), "autn": BASE64.encode(AUTN1)}),
            "field `rand`: not standard base64",
        ),
        (
            200,
            json!({"keyId": "k-1", "rand": BASE64.encode(RAND1)}),
            "`autn`: missing",
        ),
    ];
    // A server failure is reported as the status it is, not as a refusal of the SIM.
    let mut fake = Fake::default().reply(503, json!({"code": "E503", "message": "maintenance"}));
    fake.imsi = Some(IMSI.into());
    let err = provision(&mut fake, &sim_request(Target::Userdata)).unwrap_err();
    assert!(
        matches!(&err, Error::HttpStatus { status: 503, request, .. } if request.ends_with("/v1/keys")),
        "{err:?}"
    );
    for (status, answer, expect) in cases {
        let mut fake = Fake::default().reply(status, answer);
        fake.imsi = Some(IMSI.into());
        let err = provision(&mut fake, &sim_request(Target::Userdata)).unwrap_err();
        assert!(
            matches!(&err, Error::Sim(SimError::KeyAgreement(m)) if m.contains(expect)),
            "{expect}: {err:?}"
        );
        assert!(fake.auth_calls.is_empty(), "{expect}");
        assert!(fake.store.is_empty(), "{expect}");
    }
}

#[test]
fn the_sims_errors_are_typed_and_stop_the_run() {
    // No SIM access on this host: nothing is sent.
    let mut fake = Fake::default();
    let err = provision(&mut fake, &sim_request(Target::Arc)).unwrap_err();
    assert!(
        matches!(&err, Error::Sim(SimError::Uicc(UiccError::Unavailable(_)))),
        "{err:?}"
    );
    assert!(fake.requests.is_empty());
    assert_eq!(
        Failure::in_mode(err, AuthMode::Sim).hint.as_deref(),
        Some(SIM_UNAVAILABLE_HINT)
    );

    // MAC failure: the challenge is not from the SIM's network.
    let mut fake = Fake::default().reply(200, challenge("k-1", &RAND1, &AUTN1));
    fake.imsi = Some(IMSI.into());
    fake.auth.push_back(Err(UiccError::MacFailure));
    let err = provision(&mut fake, &sim_request(Target::Arc)).unwrap_err();
    assert_eq!(err, Error::Sim(SimError::Uicc(UiccError::MacFailure)));
    assert_eq!(fake.requests.len(), 1, "no verify, no provisioning call");
    assert!(fake.store.is_empty());
    assert_eq!(
        Failure::in_mode(err, AuthMode::Sim).hint.as_deref(),
        Some(SIM_MAC_FAILURE_HINT)
    );

    // A status word, and an answer of the wrong shape.
    for (answer, expect) in [
        (
            Err(UiccError::StatusWord {
                sw1: 0x69,
                sw2: 0x85,
                command: "AUTHENTICATE".into(),
            }),
            "the SIM answered AUTHENTICATE with status 69 85",
        ),
        (
            Ok(AuthOutcome::Success(AuthKeys {
                res: SecretBytes::new(RES.to_vec()),
                ck: SecretBytes::new(CK[..8].to_vec()),
                ik: SecretBytes::new(IK.to_vec()),
            })),
            "CK of 8 bytes, expected 16",
        ),
        (
            Ok(AuthOutcome::SyncFailure(vec![1; 3])),
            "AUTS of 3 bytes, expected 14",
        ),
    ] {
        let mut fake = Fake::default().reply(200, challenge("k-1", &RAND1, &AUTN1));
        fake.imsi = Some(IMSI.into());
        fake.auth.push_back(answer);
        let err = provision(&mut fake, &sim_request(Target::Arc)).unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
        assert!(matches!(err, Error::Sim(SimError::Uicc(_))));
        assert_eq!(
            Failure::in_mode(err, AuthMode::Sim).hint.as_deref(),
            Some(SIM_DEVICE_HINT)
        );
        assert!(fake.store.is_empty());
    }

    // An IMSI that is not 6 to 15 digits.
    let mut fake = Fake {
        imsi: Some("44010123456789X".into()),
        ..Fake::default()
    };
    let err = provision(&mut fake, &sim_request(Target::Arc)).unwrap_err();
    assert!(
        matches!(&err, Error::Sim(SimError::Uicc(UiccError::Io(m))) if m.contains("IMSI")),
        "{err:?}"
    );
}

#[test]
fn a_cached_key_is_reused_without_aka_until_it_expires() {
    let (mut fake, _) = script(sim_fake(), Target::SubscriberMetadata);
    provision(&mut fake, &sim_request(Target::SubscriberMetadata)).unwrap();
    assert_eq!(fake.auth_calls.len(), 1);
    fake.requests.clear();
    fake.headers.clear();

    // Within the hour: the cached key signs, no Keys API call, no AUTHENTICATE.
    let (mut fake, _) = script(fake, Target::SubscriberMetadata);
    provision(&mut fake, &sim_request(Target::SubscriberMetadata)).unwrap();
    assert_eq!(fake.requests.len(), 1);
    assert_signed(&fake, 0, "k-1", CK);
    assert_eq!(fake.auth_calls.len(), 1);
    fake.requests.clear();
    fake.headers.clear();

    // An hour after its creation: a new key agreement, and the cache holds the new key.
    fake.now_ms += KEY_LIFETIME_MS;
    let mut fake = fake
        .reply(200, challenge("k-2", &RAND2, &AUTN2))
        .reply(200, json!({}));
    fake.auth.push_back(keys(CK));
    let (mut fake, _) = script(fake, Target::SubscriberMetadata);
    provision(&mut fake, &sim_request(Target::SubscriberMetadata)).unwrap();
    assert_key_agreement(&fake, 0, "k-2");
    assert_signed(&fake, 2, "k-2", CK);
    assert_eq!(fake.auth_calls.len(), 2);
    assert_eq!(cached(&fake).unwrap()["keyId"], "k-2");
    assert!(fake.logs.iter().any(|l| l.contains("it has expired")));
}

/// Issue 18, item 11: a session agreed with one Keys API is never used with another. The
/// same store pointed at another endpoint within the hour agrees a new key there (the first
/// endpoint's CK signs nothing sent to it), and the cache then holds the new endpoint's key;
/// an entry that names no endpoint (an older version's) is discarded.
#[test]
fn a_key_cached_for_another_endpoint_is_never_sent_there() {
    let (mut fake, _) = script(sim_fake(), Target::SubscriberMetadata);
    provision(&mut fake, &sim_request(Target::SubscriberMetadata)).unwrap();
    assert_eq!(fake.auth_calls.len(), 1);
    fake.requests.clear();
    fake.headers.clear();

    // Another endpoint, same store, within the hour: a key agreement of its own.
    const OTHER_CK: &[u8; 16] = b"OTHER-CK-456789!";
    let mut fake = fake
        .reply(200, challenge("k-2", &RAND2, &AUTN2))
        .reply(200, json!({}));
    fake.auth.push_back(keys(OTHER_CK));
    fake.authority = Some("elsewhere.example");
    let (mut fake, _) = script(fake, Target::SubscriberMetadata);
    let mut req = sim_request(Target::SubscriberMetadata);
    req.endpoint = "https://elsewhere.example".into();
    provision(&mut fake, &req).unwrap();
    assert_key_agreement(&fake, 0, "k-2");
    assert_signed(&fake, 2, "k-2", OTHER_CK);
    assert_eq!(fake.auth_calls.len(), 2);
    let entry = cached(&fake).unwrap();
    assert_eq!(entry["keyId"], "k-2");
    assert_eq!(entry["origin"], "https://elsewhere.example:443");
    assert!(
        fake.logs
            .iter()
            .any(|l| l.contains("it was agreed with another Keys API")),
        "{:?}",
        fake.logs
    );

    // An entry of the older format, which names no endpoint: discarded, a new agreement.
    let mut fake = sim_fake();
    let mut old: serde_json::Value =
        serde_json::from_slice(&cache_entry(IMSI, "k-9", 1_800_000_000_000)).unwrap();
    old["formatVersion"] = json!(1);
    old.as_object_mut().unwrap().remove("origin");
    fake.store
        .insert(KEY_CACHE.into(), serde_json::to_vec(&old).unwrap());
    let (mut fake, _) = script(fake, Target::Userdata);
    provision(&mut fake, &sim_request(Target::Userdata)).unwrap();
    assert_key_agreement(&fake, 0, "k-1");
    assert_eq!(
        cached(&fake).unwrap()["origin"],
        "https://krypton.example:8036"
    );
}

#[test]
fn a_key_cached_for_another_imsi_is_discarded() {
    let mut fake = sim_fake();
    fake.store.insert(
        KEY_CACHE.into(),
        cache_entry("440109999999999", "k-9", 1_800_000_000_000),
    );
    let (mut fake, _) = script(fake, Target::Userdata);
    provision(&mut fake, &sim_request(Target::Userdata)).unwrap();
    assert_key_agreement(&fake, 0, "k-1");
    assert_eq!(cached(&fake).unwrap()["imsi"], IMSI);
    assert!(fake.logs.iter().any(|l| l.contains("another SIM")));

    // An entry edited on disk (a CK of the wrong length) is discarded too.
    let mut fake = sim_fake();
    let mut entry: serde_json::Value =
        serde_json::from_slice(&cache_entry(IMSI, "k-9", 1_800_000_000_000)).unwrap();
    entry["ck"] = json!("AAAA");
    fake.store
        .insert(KEY_CACHE.into(), serde_json::to_vec(&entry).unwrap());
    let (mut fake, _) = script(fake, Target::Userdata);
    provision(&mut fake, &sim_request(Target::Userdata)).unwrap();
    assert_key_agreement(&fake, 0, "k-1");
}

#[test]
fn bypass_neither_reads_nor_writes_the_cache_and_clear_deletes_it_first() {
    let old = cache_entry(IMSI, "k-9", 1_800_000_000_000);
    let mut req = sim_request(Target::Userdata);
    req.sim.key_cache = KeyCacheUse::Bypass;
    let mut fake = sim_fake();
    fake.store.insert(KEY_CACHE.into(), old.clone());
    let (mut fake, _) = script(fake, Target::Userdata);
    provision(&mut fake, &req).unwrap();
    assert_key_agreement(&fake, 0, "k-1");
    assert_eq!(fake.store[KEY_CACHE], old, "the cache is untouched");
    assert!(
        !fake.store_calls.iter().any(|c| c.ends_with(KEY_CACHE)),
        "{:?}",
        fake.store_calls
    );

    req.sim.key_cache = KeyCacheUse::Clear;
    let mut fake = sim_fake();
    fake.store.insert(KEY_CACHE.into(), old.clone());
    let (mut fake, _) = script(fake, Target::Userdata);
    provision(&mut fake, &req).unwrap();
    assert_key_agreement(&fake, 0, "k-1");
    assert_eq!(cached(&fake).unwrap()["keyId"], "k-1");
    assert_eq!(
        fake.store_calls
            .iter()
            .filter(|c| c.ends_with(KEY_CACHE))
            .collect::<Vec<_>>(),
        ["delete sim-key", "put sim-key"]
    );

    // Clear is honoured even when a stored bundle is reused and nothing is called.
    let mut fake = provisioned(Target::Arc);
    fake.store.insert(KEY_CACHE.into(), old);
    let mut req = sim_request(Target::Arc);
    req.sim.key_cache = KeyCacheUse::Clear;
    assert!(provision(&mut fake, &req).unwrap().reused);
    assert!(!fake.store.contains_key(KEY_CACHE));
}

#[test]
fn a_cached_key_refused_with_401_gets_one_new_agreement_and_one_retry() {
    let mut fake = Fake::default()
        .reply(401, json!({"code": "SEC0001", "message": "unknown keyId"}))
        .reply(200, challenge("k-2", &RAND2, &AUTN2))
        .reply(200, json!({}))
        .reply_raw(200, &[], b"bucket-name");
    fake.imsi = Some(IMSI.into());
    fake.auth.push_back(keys(CK));
    fake.store.insert(
        KEY_CACHE.into(),
        cache_entry(IMSI, "k-9", 1_800_000_000_000),
    );
    let report = provision(&mut fake, &sim_request(Target::Userdata)).unwrap();
    assert_eq!(report.mode, AuthMode::Sim);
    let paths: Vec<&str> = fake.requests.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/provisioning/soracom/air/userdata",
            "/v1/keys",
            "/v1/keys/k-2/verify",
            "/v1/provisioning/soracom/air/userdata"
        ]
    );
    assert_signed(&fake, 0, "k-9", CK);
    assert_key_agreement(&fake, 1, "k-2");
    assert_signed(&fake, 3, "k-2", CK);
    assert_eq!(cached(&fake).unwrap()["keyId"], "k-2");

    // Refused again: the error is reported, no third attempt.
    let mut fake = Fake::default()
        .reply(401, json!({}))
        .reply(200, challenge("k-2", &RAND2, &AUTN2))
        .reply(200, json!({}))
        .reply(401, json!({"code": "SEC0001", "message": "bad signature"}));
    fake.imsi = Some(IMSI.into());
    fake.auth.push_back(keys(CK));
    fake.store.insert(
        KEY_CACHE.into(),
        cache_entry(IMSI, "k-9", 1_800_000_000_000),
    );
    let err = provision(&mut fake, &sim_request(Target::Userdata)).unwrap_err();
    assert!(
        matches!(err, Error::HttpStatus { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(fake.requests.len(), 4);
    assert_eq!(
        Failure::in_mode(err, AuthMode::Sim).hint.as_deref(),
        Some(SIM_REFUSED_HINT)
    );
    assert!(!fake.store.contains_key("userdata"));

    // A key agreed in this run that is refused: no second agreement.
    let mut fake = sim_fake().reply(401, json!({}));
    let err = provision(&mut fake, &sim_request(Target::Userdata)).unwrap_err();
    assert!(matches!(err, Error::HttpStatus { status: 401, .. }));
    assert_eq!(fake.requests.len(), 3);
}

#[test]
fn transport_advice_in_sim_mode_names_the_endpoint_not_air_or_arc() {
    let err = Error::Transport(failure(TransportKind::ConnectionTimeout));
    let network = Failure::in_mode(err.clone(), AuthMode::Network)
        .hint
        .unwrap();
    assert!(network.contains("SORACOM Air"), "{network}");
    let sim = Failure::in_mode(err, AuthMode::Sim).hint.unwrap();
    assert!(sim.contains("https://g.api.soracom.io"), "{sim}");
    assert!(!sim.contains("Arc") && !sim.contains("8036"), "{sim}");
    let timeout = Failure::in_mode(Error::Timeout("x".into()), AuthMode::Sim)
        .hint
        .unwrap();
    assert!(timeout.contains("deadline-ms") && !timeout.contains("AllowedIPs"));
}

/// Every way CK or RES could be written as text.
fn canaries() -> Vec<String> {
    let mut v = Vec::new();
    for secret in [&CK[..], &RES[..], &IK[..]] {
        v.push(String::from_utf8_lossy(secret).into_owned());
        v.push(BASE64.encode(secret));
        v.push(secret.iter().map(|b| format!("{b:02x}")).collect());
        v.push(secret.iter().map(|b| format!("{b:02X}")).collect());
        v.push(format!("{secret:?}"));
    }
    v
}

fn assert_no_canary(text: &str, case: &str) {
    for canary in canaries() {
        assert!(!text.contains(&canary), "{case}: a secret leaked: {text}");
    }
}

#[test]
fn ck_and_res_never_reach_an_error_a_hint_or_a_log_line() {
    type Setup = fn() -> Fake;
    let cases: Vec<(&str, Setup)> = vec![
        ("success", || script(sim_fake(), Target::Inventory).0),
        ("verify refused", || {
            let mut fake = Fake::default()
                .reply(200, challenge("k-1", &RAND1, &AUTN1))
                .reply(400, json!({"code": "E", "message": "bad res"}));
            fake.imsi = Some(IMSI.into());
            fake.auth.push_back(keys(CK));
            fake
        }),
        ("provisioning refused", || {
            sim_fake().reply(403, json!({"code": "E", "message": "no"}))
        }),
        ("provisioning answer invalid", || {
            sim_fake().reply(200, json!({"serverUri": "x"}))
        }),
        ("cached key refused twice", || {
            let mut fake = Fake::default()
                .reply(401, json!({}))
                .reply(200, challenge("k-2", &RAND2, &AUTN2))
                .reply(200, json!({}))
                .reply(401, json!({}));
            fake.imsi = Some(IMSI.into());
            fake.auth.push_back(keys(CK));
            fake.store.insert(
                KEY_CACHE.into(),
                cache_entry(IMSI, "k-9", 1_800_000_000_000),
            );
            fake
        }),
        ("transport failure", || {
            let mut fake = sim_fake();
            fake.responses
                .push_back(send_failed(TransportKind::ConnectionRefused));
            fake
        }),
    ];
    for (case, setup) in cases {
        let mut fake = setup();
        let outcome = provision(&mut fake, &sim_request(Target::Inventory));
        if let Err(e) = outcome {
            let failure = Failure::in_mode(e.clone(), AuthMode::Sim);
            assert_no_canary(&e.to_string(), case);
            assert_no_canary(&format!("{e:?}"), case);
            assert_no_canary(failure.hint.as_deref().unwrap_or_default(), case);
        } else {
            let report = status(&mut fake, Target::Inventory).unwrap().unwrap();
            assert_no_canary(&format!("{report:?}"), case);
            assert_no_canary(&String::from_utf8_lossy(&fake.store["inventory"]), case);
        }
        for line in &fake.logs {
            assert_no_canary(line, case);
        }
        // Only the cache holds the CK, and never RES.
        for (name, value) in &fake.store {
            if name != KEY_CACHE {
                assert_no_canary(&String::from_utf8_lossy(value), case);
            }
        }
        assert!(format!("{:?}", SecretBytes::new(CK.to_vec())).contains("redacted"));
    }
}
