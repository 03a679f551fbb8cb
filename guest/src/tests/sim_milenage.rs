//! The Keys API exchange against real 3GPP AKA: a USIM and a Keys API that both run Milenage
//! (`krypton-uicc`, checked against TS 35.208), the network verifying RES and every
//! signature with its own CK. Resynchronisation here is the real one: the USIM's AUTS lets the
//! network recover the SIM's SQN.

use super::*;
use crate::client::signing::signature;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use krypton_uicc::Key128;
use krypton_uicc::aka::{UsimVerdict, generate_vector, recover_sqn_ms, usim_authenticate};
use krypton_uicc::milenage::Subscriber;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

const IMSI: &str = "001010000000001";

fn hex16(text: &str) -> [u8; 16] {
    let bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// TS 35.208 test set 1: K and OPc.
fn subscriber() -> Subscriber {
    Subscriber::new(
        Key128::new(hex16("465b5ce8b199b49faa5f0a2ee238a6bc")),
        Key128::new(hex16("cd63cb71954a9f4e48a5994e37a02baf")),
    )
}

/// What the network side saw.
#[derive(Default)]
struct Network {
    /// The next SQN the network issues.
    sqn: u64,
    /// Challenges issued: keyId -> (XRES, CK).
    issued: HashMap<String, (Vec<u8>, Vec<u8>)>,
    /// Verified keyIds.
    verified: Vec<String>,
    /// Resynchronisations that recovered the SIM's SQN.
    resyncs: u32,
    /// Provisioning calls whose signature verified.
    signed_ok: u32,
}

fn answer(status: u16, body: serde_json::Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![],
        body: body.to_string().into_bytes(),
    }
}

/// A Keys API and a provisioning endpoint over Milenage, with `sub`'s keys.
fn keys_api(sub: Subscriber, net: Rc<RefCell<Network>>) -> Server {
    let mut counter = 0u8;
    Box::new(move |request| {
        let body: serde_json::Value =
            serde_json::from_slice(request.body.as_deref().unwrap_or(b"{}")).unwrap();
        let mut net = net.borrow_mut();
        if request.path == "/v1/keys" {
            assert_eq!(body["imsi"], IMSI);
            if let Some(auts) = body["auts"].as_str() {
                let rand: [u8; 16] = BASE64
                    .decode(body["rand"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap();
                let auts: [u8; 14] = BASE64.decode(auts).unwrap().try_into().unwrap();
                let sqn_ms = recover_sqn_ms(&sub, &rand, &auts).expect("MAC-S verifies");
                net.sqn = sqn_ms + 1;
                net.resyncs += 1;
            }
            counter += 1;
            let rand = [counter; 16];
            let vector = generate_vector(&sub, net.sqn, [0x80, 0x00], rand);
            net.sqn += 1;
            let key_id = format!("k-{counter}");
            net.issued.insert(
                key_id.clone(),
                (vector.xres.expose().to_vec(), vector.ck.expose().to_vec()),
            );
            return answer(
                401,
                json!({"keyId": key_id, "rand": BASE64.encode(vector.rand), "autn": BASE64.encode(vector.autn)}),
            );
        }
        if let Some(key_id) = request
            .path
            .strip_prefix("/v1/keys/")
            .and_then(|p| p.strip_suffix("/verify"))
        {
            let res = BASE64.decode(body["res"].as_str().unwrap()).unwrap();
            let ok = net.issued.get(key_id).is_some_and(|(xres, _)| *xres == res);
            if ok {
                net.verified.push(key_id.to_string());
                return answer(200, json!({}));
            }
            return answer(401, json!({"code": "AUTH", "message": "RES mismatch"}));
        }
        // A provisioning call: the signature over the raw bytes with the keyId's CK.
        let key_id = body["keyId"].as_str().unwrap_or_default();
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let good = net.verified.iter().any(|k| k == key_id)
            && net.issued.get(key_id).is_some_and(|(_, ck)| {
                header("x-soracom-signature")
                    == signature(
                        request.body.as_deref().unwrap(),
                        &header("x-soracom-timestamp"),
                        &SecretBytes::new(ck.clone()),
                    )
            });
        if !good {
            return answer(401, json!({"code": "SIG", "message": "bad signature"}));
        }
        net.signed_ok += 1;
        answer(200, json!({"imsi": IMSI, "groupId": "g-1"}))
    })
}

/// A USIM with `sub`'s keys that has accepted SQNs up to `sqn_ms`.
fn usim(sub: Subscriber, sqn_ms: u64) -> Usim {
    let mut sqn_ms = sqn_ms;
    Box::new(move |rand, autn| {
        let rand: [u8; 16] = rand.try_into().unwrap();
        let autn: [u8; 16] = autn.try_into().unwrap();
        match usim_authenticate(&sub, sqn_ms, &rand, &autn) {
            UsimVerdict::Accept { sqn, outcome } => {
                sqn_ms = sqn;
                match outcome {
                    krypton_uicc::AuthOutcome::Res { res, ck, ik } => {
                        Ok(AuthOutcome::Success(AuthKeys {
                            res: SecretBytes::new(res.expose().to_vec()),
                            ck: SecretBytes::new(ck.expose().to_vec()),
                            ik: SecretBytes::new(ik.expose().to_vec()),
                        }))
                    }
                    other => panic!("{other:?}"),
                }
            }
            UsimVerdict::Resync {
                outcome: krypton_uicc::AuthOutcome::SyncFailure { auts },
            } => Ok(AuthOutcome::SyncFailure(auts.to_vec())),
            UsimVerdict::Resync { .. } => unreachable!(),
            UsimVerdict::MacFailure => Err(UiccError::MacFailure),
        }
    })
}

fn request_sim() -> ProvisionRequest {
    let mut req = request(Target::SubscriberMetadata);
    req.mode = AuthMode::Sim;
    req
}

#[test]
fn milenage_aka_with_resynchronisation_signs_with_the_networks_ck() {
    let net = Rc::new(RefCell::new(Network {
        sqn: 1,
        ..Network::default()
    }));
    // The SIM has seen SQN 40: the network's first challenge (SQN 1) is stale.
    let mut fake = Fake {
        imsi: Some(IMSI.into()),
        usim: Some(usim(subscriber(), 40)),
        server: Some(keys_api(subscriber(), net.clone())),
        ..Fake::default()
    };
    let report = provision(&mut fake, &request_sim()).unwrap();
    assert_eq!(report.mode, AuthMode::Sim);
    {
        let net = net.borrow();
        assert_eq!(net.resyncs, 1);
        assert_eq!(net.verified, ["k-2"]);
        assert_eq!(net.signed_ok, 1);
    }
    let paths: Vec<&str> = fake.requests.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/keys",
            "/v1/keys",
            "/v1/keys/k-2/verify",
            "/v1/provisioning/soracom/air/subscriber_metadata"
        ]
    );
    // Within the hour the cached key (and CK) signs again without AKA.
    provision(&mut fake, &request_sim()).unwrap();
    assert_eq!(net.borrow().signed_ok, 2);
    assert_eq!(fake.auth_calls.len(), 2);
}

#[test]
fn a_sim_with_another_k_rejects_the_challenge_and_nothing_is_cached() {
    let net = Rc::new(RefCell::new(Network {
        sqn: 1,
        ..Network::default()
    }));
    let other = Subscriber::new(
        Key128::new(hex16("0396eb317b6d1c36f19c1c84cd6ffd16")),
        Key128::new(hex16("53c15671c60a4b731c55b4a441c0bde2")),
    );
    let mut fake = Fake {
        imsi: Some(IMSI.into()),
        usim: Some(usim(other, 0)),
        server: Some(keys_api(subscriber(), net.clone())),
        ..Fake::default()
    };
    let err = provision(&mut fake, &request_sim()).unwrap_err();
    assert_eq!(err, Error::Sim(SimError::Uicc(UiccError::MacFailure)));
    assert!(net.borrow().verified.is_empty());
    assert!(fake.store.is_empty());
}
