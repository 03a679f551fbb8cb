//! The Keys API of SIM-authenticated mode (mock): 3GPP AKA with Milenage subscriber records,
//! and the check of a signed provisioning request.
//!
//! The real server is not public; this follows what SORACOM's clients send and accept
//! (`soracom/endorse-client-go`, `endorse/client.go`; `soracom/soracom-endorse-client-for-java`,
//! `EndorseAPI`) and the network side of AKA (3GPP TS 33.102 §6.3, Milenage TS 35.206):
//!
//! * `POST /v1/keys` with `{"imsi": "<IMSI>"}`: a new challenge for that subscriber. The
//!   network's SQN goes up by one, RAND is 16 random bytes, and the answer is
//!   [`MockConfig::keys_challenge_status`](crate::MockConfig::keys_challenge_status) (200, or
//!   401 as the clients also accept) with `{"keyId", "rand", "autn"}` (standard base64 with
//!   padding). A `keyId` is `k-` and 16 hex digits (never `_`: the clients split their cache
//!   alias on it).
//! * `POST /v1/keys` with `{"imsi", "rand", "auts"}`: resynchronisation (TS 33.102 §6.3.5).
//!   `rand` must be one this mock issued to that IMSI; SQN_MS is recovered from AUTS with f5*
//!   and checked with f1*; the network's SQN becomes at least SQN_MS, and a new challenge is
//!   answered as above.
//! * `POST /v1/keys/{keyId}/verify` with `{"res": "<b64>"}` (Go client) or `{"xres": …}`
//!   (Java client): 200 `{}` when it equals XRES; the key is then usable to sign for
//!   [`MockConfig::sim_key_lifetime_secs`](crate::MockConfig::sim_key_lifetime_secs). A wrong
//!   RES is 401 and the key is discarded.
//! * [`KeysApi::check_signature`]: a provisioning request is signed by a verified, unexpired
//!   key when `x-soracom-signature` is the base64 of SHA-256(body bytes ‖
//!   `x-soracom-timestamp` ‖ CK), `x-soracom-digest-algorithm` is `SHA-256` (any case), and
//!   the timestamp (Unix ms) is within ±5 minutes of the mock's clock (the real window is not
//!   documented).
//!
//! Failures are `{"code", "message"}` with 400 (malformed body), 401 (authentication: a wrong
//! RES, AUTS or signature, an unknown, unverified or expired `keyId`, a timestamp outside the
//! window) or 404 (no subscriber with that IMSI). No message contains a key, RES or CK.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use krypton_uicc::aka::{self, AuthVector};
use krypton_uicc::milenage::Subscriber;
use krypton_uicc::soft::SimRecord;
use krypton_uicc::{Key128, Secret};
use rsa::rand_core::{OsRng, RngCore as _};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Largest difference between a request's timestamp and the mock's clock, ms (±5 minutes).
pub const TIMESTAMP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// A SIM subscriber's record on the network side: Milenage keys, the AMF put in AUTN, and the
/// network's SQN (SQN_HE) to start from. `Debug` shows neither key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimSubscriber {
    /// K.
    pub k: Key128,
    /// OPc.
    pub opc: Key128,
    /// AMF put in AUTN.
    pub amf: [u8; 2],
    /// The SQN the network last used; the next challenge uses this plus one.
    pub sqn: u64,
}

impl SimSubscriber {
    /// The network's record for the SIM in a software SIM file's record: the same K, OPc and
    /// AMF, and the SIM's SQN as the network's starting point (returns the IMSI too).
    pub fn from_sim_record(record: &SimRecord) -> (String, SimSubscriber) {
        (
            record.imsi.to_string(),
            SimSubscriber {
                k: record.k.clone(),
                opc: record.opc.clone(),
                amf: record.amf,
                sqn: record.sqn,
            },
        )
    }

    fn milenage(&self) -> Subscriber {
        Subscriber::new(self.k.clone(), self.opc.clone())
    }
}

/// A failed Keys API call or signature check: HTTP status and the `{code, message}` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysError {
    /// 400, 401 or 404.
    pub status: u16,
    /// `KEY0400`, `KEY0401` or `KEY0404`.
    pub code: &'static str,
    /// What was wrong, without secrets.
    pub message: String,
}

impl KeysError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        let code = match status {
            400 => "KEY0400",
            404 => "KEY0404",
            _ => "KEY0401",
        };
        KeysError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The JSON body: `{"code", "message"}`.
    pub fn body(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

/// One challenge the mock issued.
#[derive(Debug)]
struct IssuedKey {
    imsi: String,
    rand: [u8; 16],
    xres: Secret,
    ck: Secret,
    ik: Secret,
    /// When verify succeeded, Unix ms.
    verified_at_ms: Option<u64>,
}

/// The secrets of one challenge the mock issued: XRES (= the SIM's RES), CK and IK. Only for
/// tests that prove these never reach a log or a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedSecrets {
    /// XRES, 8 bytes.
    pub xres: Vec<u8>,
    /// CK, 16 bytes.
    pub ck: Vec<u8>,
    /// IK, 16 bytes.
    pub ik: Vec<u8>,
}

/// A key that signed a request: the SIM it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedBy {
    /// The `keyId`.
    pub key_id: String,
    /// The IMSI whose AKA made it.
    pub imsi: String,
}

/// The three signature headers of a SIM-mode request, as received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `x-soracom-timestamp`.
    pub timestamp: Option<String>,
    /// `x-soracom-digest-algorithm`.
    pub algorithm: Option<String>,
    /// `x-soracom-signature`.
    pub signature: Option<String>,
}

impl SignatureHeaders {
    /// Take them from a request's headers (values that are not visible ASCII count as absent).
    pub fn from_headers(headers: &hyper::HeaderMap) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        SignatureHeaders {
            timestamp: get("x-soracom-timestamp"),
            algorithm: get("x-soracom-digest-algorithm"),
            signature: get("x-soracom-signature"),
        }
    }
}

/// `base64(SHA-256(body ‖ timestamp ‖ CK))`: the `x-soracom-signature` of a request.
pub fn signature(body: &[u8], timestamp: &str, ck: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(body);
    h.update(timestamp.as_bytes());
    h.update(ck);
    BASE64.encode(h.finalize())
}

/// The Keys API's state: the network's SQN per subscriber and the keys issued.
#[derive(Debug, Default)]
pub struct KeysApi {
    /// IMSI -> SQN_HE, once the subscriber was first challenged.
    sqn: HashMap<String, u64>,
    keys: HashMap<String, IssuedKey>,
}

fn decode_field<const N: usize>(request: &Value, field: &str) -> Result<[u8; N], KeysError> {
    let text = request
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| KeysError::new(400, format!("`{field}` is missing or not a string")))?;
    BASE64
        .decode(text)
        .ok()
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or_else(|| KeysError::new(400, format!("`{field}` is not {N} bytes in base64")))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl KeysApi {
    /// `POST /v1/keys`: a challenge, or a resynchronisation then a challenge (see the module).
    /// Returns the answer's JSON; the caller sends it with the configured challenge status.
    pub fn start(
        &mut self,
        subscribers: &HashMap<String, SimSubscriber>,
        body: &[u8],
    ) -> Result<Value, KeysError> {
        let request: Value = serde_json::from_slice(body)
            .map_err(|_| KeysError::new(400, "the body is not JSON"))?;
        let imsi = request
            .get("imsi")
            .and_then(Value::as_str)
            .ok_or_else(|| KeysError::new(400, "`imsi` is missing or not a string"))?
            .to_owned();
        let subscriber = subscribers
            .get(&imsi)
            .ok_or_else(|| KeysError::new(404, "no SIM subscriber has this IMSI"))?;
        let sub = subscriber.milenage();
        let sqn_he = self.sqn.entry(imsi.clone()).or_insert(subscriber.sqn);
        if request.get("auts").is_some() || request.get("rand").is_some() {
            let rand: [u8; 16] = decode_field(&request, "rand")?;
            let auts: [u8; 14] = decode_field(&request, "auts")?;
            if !self.keys.values().any(|k| k.imsi == imsi && k.rand == rand) {
                return Err(KeysError::new(401, "`rand` was not issued to this IMSI"));
            }
            let sqn_ms = aka::recover_sqn_ms(&sub, &rand, &auts)
                .map_err(|_| KeysError::new(401, "AUTS rejected: its MAC-S does not match"))?;
            *sqn_he = (*sqn_he).max(sqn_ms);
            tracing::info!(%imsi, sqn_ms, "mock Keys API: resynchronised");
        }
        *sqn_he = (*sqn_he + 1) & aka::SQN_MAX;
        let mut rand = [0u8; 16];
        OsRng.fill_bytes(&mut rand);
        let AuthVector {
            rand,
            autn,
            xres,
            ck,
            ik,
        } = aka::generate_vector(&sub, *sqn_he, subscriber.amf, rand);
        let mut id = [0u8; 8];
        OsRng.fill_bytes(&mut id);
        let key_id = format!("k-{}", hex::encode(id));
        self.keys.insert(
            key_id.clone(),
            IssuedKey {
                imsi,
                rand,
                xres,
                ck,
                ik,
                verified_at_ms: None,
            },
        );
        Ok(json!({"keyId": key_id, "rand": BASE64.encode(rand), "autn": BASE64.encode(autn)}))
    }

    /// `POST /v1/keys/{keyId}/verify` with `res` or `xres`; `now_ms` is Unix ms.
    pub fn verify(&mut self, key_id: &str, body: &[u8], now_ms: u64) -> Result<Value, KeysError> {
        let request: Value = serde_json::from_slice(body)
            .map_err(|_| KeysError::new(400, "the body is not JSON"))?;
        let field = if request.get("res").is_some() {
            "res"
        } else {
            "xres"
        };
        let res = request
            .get(field)
            .and_then(Value::as_str)
            .and_then(|t| BASE64.decode(t).ok())
            .ok_or_else(|| KeysError::new(400, "`res` (or `xres`) is missing or not base64"))?;
        let key = self
            .keys
            .get_mut(key_id)
            .ok_or_else(|| KeysError::new(401, "unknown keyId"))?;
        if !constant_time_eq(&res, key.xres.expose()) {
            self.keys.remove(key_id);
            return Err(KeysError::new(
                401,
                "verification failed: RES does not match",
            ));
        }
        key.verified_at_ms.get_or_insert(now_ms);
        Ok(json!({}))
    }

    /// Check a provisioning request's signature (see the module): the `keyId` in its JSON
    /// body, the three headers, SHA-256 over the exact `body` bytes. `now_ms` is Unix ms;
    /// `lifetime_secs` how long a verified key may sign. Errors: 401 (400 for a body without
    /// a `keyId`).
    pub fn check_signature(
        &self,
        headers: &SignatureHeaders,
        body: &[u8],
        now_ms: u64,
        lifetime_secs: u64,
    ) -> Result<SignedBy, KeysError> {
        let unauthorized = |m: &str| KeysError::new(401, m);
        let request: Value = serde_json::from_slice(body)
            .map_err(|_| KeysError::new(400, "the body is not JSON"))?;
        let key_id = request
            .get("keyId")
            .and_then(Value::as_str)
            .ok_or_else(|| KeysError::new(400, "`keyId` is missing or not a string"))?;
        let algorithm = headers
            .algorithm
            .as_deref()
            .ok_or_else(|| unauthorized("x-soracom-digest-algorithm is missing"))?;
        if !algorithm.eq_ignore_ascii_case("SHA-256") {
            return Err(unauthorized("x-soracom-digest-algorithm must be SHA-256"));
        }
        let timestamp = headers
            .timestamp
            .as_deref()
            .ok_or_else(|| unauthorized("x-soracom-timestamp is missing"))?;
        let ts: u64 = (1..=16)
            .contains(&timestamp.len())
            .then(|| timestamp.parse().ok())
            .flatten()
            .filter(|_| timestamp.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| unauthorized("x-soracom-timestamp is not Unix milliseconds"))?;
        if ts.abs_diff(now_ms) > TIMESTAMP_WINDOW_MS {
            return Err(unauthorized(
                "x-soracom-timestamp is more than 5 minutes from the server's clock",
            ));
        }
        let sent = headers
            .signature
            .as_deref()
            .ok_or_else(|| unauthorized("x-soracom-signature is missing"))?;
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| unauthorized("unknown keyId"))?;
        let verified_at = key
            .verified_at_ms
            .ok_or_else(|| unauthorized("keyId not verified"))?;
        if now_ms.saturating_sub(verified_at) > lifetime_secs.saturating_mul(1000) {
            return Err(unauthorized("keyId expired"));
        }
        let expected = signature(body, timestamp, key.ck.expose());
        if !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
            return Err(unauthorized("signature mismatch"));
        }
        Ok(SignedBy {
            key_id: key_id.to_owned(),
            imsi: key.imsi.clone(),
        })
    }

    /// SORACOM Inventory's application key for a SIM-mode bootstrap answered with `nonce` and
    /// `timestamp` instead of `applicationKey`: base64 of the first 16 bytes of
    /// SHA-256(nonce ‖ timestamp ‖ CK) with the CK of `key_id` (SORACOM's clients,
    /// `calculateInventoryApplicationKey`). `None` for an unknown `keyId`.
    pub fn inventory_application_key(
        &self,
        key_id: &str,
        nonce: &[u8],
        timestamp: &str,
    ) -> Option<String> {
        use sha2::{Digest, Sha256};
        let key = self.keys.get(key_id)?;
        let mut h = Sha256::new();
        h.update(nonce);
        h.update(timestamp.as_bytes());
        h.update(key.ck.expose());
        Some(BASE64.encode(&h.finalize()[..16]))
    }

    /// XRES, CK and IK of every challenge still held (for canary tests).
    pub fn issued_secrets(&self) -> Vec<IssuedSecrets> {
        self.keys
            .values()
            .map(|k| IssuedSecrets {
                xres: k.xres.expose().to_vec(),
                ck: k.ck.expose().to_vec(),
                ik: k.ik.expose().to_vec(),
            })
            .collect()
    }

    /// The `keyId`s issued so far with their IMSI and whether they were verified.
    pub fn issued(&self) -> Vec<(String, String, bool)> {
        let mut all: Vec<_> = self
            .keys
            .iter()
            .map(|(id, k)| (id.clone(), k.imsi.clone(), k.verified_at_ms.is_some()))
            .collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use krypton_uicc::aka::{UsimVerdict, usim_authenticate};
    use krypton_uicc::{AuthOutcome, Imsi};

    const IMSI: &str = "001010123456789";

    fn record(sqn: u64) -> SimRecord {
        SimRecord {
            imsi: Imsi::parse(IMSI).unwrap(),
            k: Key128::new(
                hex::decode("465b5ce8b199b49faa5f0a2ee238a6bc")
                    .unwrap()
                    .try_into()
                    .unwrap(),
            ),
            opc: Key128::new(
                hex::decode("cd63cb71954a9f4e48a5994e37a02baf")
                    .unwrap()
                    .try_into()
                    .unwrap(),
            ),
            amf: [0x80, 0x00],
            sqn,
        }
    }

    fn table(sqn: u64) -> HashMap<String, SimSubscriber> {
        HashMap::from([SimSubscriber::from_sim_record(&record(sqn))])
    }

    fn challenge(answer: &Value) -> (String, [u8; 16], [u8; 16]) {
        let b = |f: &str| {
            BASE64
                .decode(answer[f].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        };
        (
            answer["keyId"].as_str().unwrap().to_owned(),
            b("rand"),
            b("autn"),
        )
    }

    /// The SIM's side with SQN_MS = `sqn_ms`.
    fn sim(sqn_ms: u64, rand: &[u8; 16], autn: &[u8; 16]) -> UsimVerdict {
        usim_authenticate(&record(0).subscriber(), sqn_ms, rand, autn)
    }

    #[test]
    fn inventory_key_matches_the_reference_vector() {
        let mut api = KeysApi::default();
        api.keys.insert(
            "k-example".into(),
            IssuedKey {
                imsi: IMSI.into(),
                rand: [0; 16],
                xres: Secret::from_slice(&[0; 8]),
                ck: Secret::from_slice(&(0u8..16).collect::<Vec<_>>()),
                ik: Secret::from_slice(&[0; 16]),
                verified_at_ms: Some(0),
            },
        );
        let nonce = BASE64.decode("AAECAwQFBgcICQoLDA0ODw==").unwrap();
        assert_eq!(
            api.inventory_application_key("k-example", &nonce, "1700000000123")
                .as_deref(),
            Some("gvFdTTvSWsNoTX/kjBNRKQ==")
        );
        assert_eq!(api.inventory_application_key("k-none", &nonce, "1"), None);
    }

    #[test]
    fn signature_matches_the_reference_vector() {
        let ck: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            signature(
                br#"{"keyId":"k-example","requestParameters":null}"#,
                "1700000000000",
                &ck
            ),
            "td6bGy7X4vl9DKW2zJRc/ff5Cng4k0Y+ogOLdWvtfHY="
        );
    }

    #[test]
    fn aka_verify_and_signed_requests() {
        let mut api = KeysApi::default();
        let subscribers = table(0x20);
        let answer = api
            .start(&subscribers, format!(r#"{{"imsi":"{IMSI}"}}"#).as_bytes())
            .unwrap();
        let (key_id, rand, autn) = challenge(&answer);
        assert!(key_id.starts_with("k-") && !key_id.contains('_'));
        let UsimVerdict::Accept {
            sqn,
            outcome: AuthOutcome::Res { res, ck, .. },
        } = sim(0x20, &rand, &autn)
        else {
            panic!("the SIM refused the challenge");
        };
        assert_eq!(sqn, 0x21);

        // A signature before verify is refused.
        let now = 1_700_000_000_000u64;
        let body = format!(r#"{{"keyId":"{key_id}","requestParameters":{{}}}}"#);
        let headers = |ts: u64, body: &str, ck: &[u8]| SignatureHeaders {
            timestamp: Some(ts.to_string()),
            algorithm: Some("sha-256".into()),
            signature: Some(signature(body.as_bytes(), &ts.to_string(), ck)),
        };
        let err = api
            .check_signature(
                &headers(now, &body, ck.expose()),
                body.as_bytes(),
                now,
                3600,
            )
            .unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (401, "keyId not verified")
        );

        // Verify with `xres` (the Java client's name) and sign.
        let verify = json!({"xres": BASE64.encode(res.expose())}).to_string();
        assert_eq!(api.verify(&key_id, verify.as_bytes(), now), Ok(json!({})));
        assert_eq!(api.issued(), [(key_id.clone(), IMSI.to_owned(), true)]);
        let signed = api
            .check_signature(
                &headers(now - 299_000, &body, ck.expose()),
                body.as_bytes(),
                now,
                3600,
            )
            .unwrap();
        assert_eq!(
            signed,
            SignedBy {
                key_id: key_id.clone(),
                imsi: IMSI.into()
            }
        );

        // Tampered body, stale timestamp, wrong CK, wrong algorithm, expired key.
        let tampered = body.replace("{}}", r#"{"x":1}}"#);
        let cases = [
            (
                headers(now, &body, ck.expose()),
                tampered.clone(),
                now,
                "signature mismatch",
            ),
            (
                headers(now - 301_000, &body, ck.expose()),
                body.clone(),
                now,
                "x-soracom-timestamp is more than 5 minutes from the server's clock",
            ),
            (
                headers(now, &body, &[0u8; 16]),
                body.clone(),
                now,
                "signature mismatch",
            ),
            (
                SignatureHeaders {
                    algorithm: Some("SHA-1".into()),
                    ..headers(now, &body, ck.expose())
                },
                body.clone(),
                now,
                "x-soracom-digest-algorithm must be SHA-256",
            ),
            (
                headers(now + 3_601_000, &body, ck.expose()),
                body.clone(),
                now + 3_601_000,
                "keyId expired",
            ),
            (
                SignatureHeaders {
                    timestamp: Some("1.7e12".into()),
                    ..headers(now, &body, ck.expose())
                },
                body.clone(),
                now,
                "x-soracom-timestamp is not Unix milliseconds",
            ),
        ];
        for (h, b, at, want) in cases {
            let err = api.check_signature(&h, b.as_bytes(), at, 3600).unwrap_err();
            assert_eq!(
                (err.status, err.code, err.message.as_str()),
                (401, "KEY0401", want)
            );
            assert_eq!(err.body()["code"], "KEY0401");
        }
    }

    #[test]
    fn wrong_res_discards_the_key_and_accepts_res_too() {
        let mut api = KeysApi::default();
        let subscribers = table(0);
        let start = format!(r#"{{"imsi":"{IMSI}"}}"#);
        let (key_id, _, _) = challenge(&api.start(&subscribers, start.as_bytes()).unwrap());
        let wrong = json!({"res": BASE64.encode([0u8; 8])}).to_string();
        let err = api.verify(&key_id, wrong.as_bytes(), 0).unwrap_err();
        assert_eq!(err.status, 401);
        assert_eq!(
            api.verify(&key_id, wrong.as_bytes(), 0)
                .unwrap_err()
                .message,
            "unknown keyId"
        );

        let (key_id, rand, autn) = challenge(&api.start(&subscribers, start.as_bytes()).unwrap());
        let UsimVerdict::Accept {
            outcome: AuthOutcome::Res { res, .. },
            ..
        } = sim(0, &rand, &autn)
        else {
            panic!()
        };
        let right = json!({"res": BASE64.encode(res.expose())}).to_string();
        assert!(api.verify(&key_id, right.as_bytes(), 0).is_ok());
    }

    #[test]
    fn resynchronisation_with_auts() {
        let mut api = KeysApi::default();
        // The network thinks SQN is 5; the SIM has already seen 0x100.
        let subscribers = table(5);
        let start = format!(r#"{{"imsi":"{IMSI}"}}"#);
        let (_, rand, autn) = challenge(&api.start(&subscribers, start.as_bytes()).unwrap());
        let UsimVerdict::Resync {
            outcome: AuthOutcome::SyncFailure { auts },
        } = sim(0x100, &rand, &autn)
        else {
            panic!("a stale SQN was accepted");
        };
        let resync =
            json!({"imsi": IMSI, "rand": BASE64.encode(rand), "auts": BASE64.encode(auts)});
        let (_, rand2, autn2) = challenge(
            &api.start(&subscribers, resync.to_string().as_bytes())
                .unwrap(),
        );
        assert!(matches!(
            sim(0x100, &rand2, &autn2),
            UsimVerdict::Accept { sqn: 0x101, .. }
        ));

        // A tampered AUTS, or a RAND the mock never issued, is refused.
        let mut bad = auts;
        bad[0] ^= 1;
        let tampered =
            json!({"imsi": IMSI, "rand": BASE64.encode(rand), "auts": BASE64.encode(bad)});
        let err = api
            .start(&subscribers, tampered.to_string().as_bytes())
            .unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (401, "AUTS rejected: its MAC-S does not match")
        );
        let foreign =
            json!({"imsi": IMSI, "rand": BASE64.encode([1u8; 16]), "auts": BASE64.encode(auts)});
        assert_eq!(
            api.start(&subscribers, foreign.to_string().as_bytes())
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn malformed_and_unknown() {
        let mut api = KeysApi::default();
        let subscribers = table(0);
        assert_eq!(api.start(&subscribers, b"{").unwrap_err().status, 400);
        assert_eq!(api.start(&subscribers, b"{}").unwrap_err().status, 400);
        assert_eq!(
            api.start(&subscribers, br#"{"imsi":"001019999999999"}"#)
                .unwrap_err()
                .status,
            404
        );
        let half = json!({"imsi": IMSI, "rand": BASE64.encode([0u8; 16])});
        assert_eq!(
            api.start(&subscribers, half.to_string().as_bytes())
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            api.verify("k-none", br#"{"res":"AAAA"}"#, 0)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            api.verify("k-none", br#"{"res":7}"#, 0).unwrap_err().status,
            400
        );
        let err = api
            .check_signature(
                &SignatureHeaders::default(),
                br#"{"keyId":"k-none"}"#,
                0,
                3600,
            )
            .unwrap_err();
        assert_eq!(err.status, 401);
        assert_eq!(
            api.check_signature(&SignatureHeaders::default(), b"{}", 0, 3600)
                .unwrap_err()
                .status,
            400
        );
    }
}
