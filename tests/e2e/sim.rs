//! SIM-authenticated mode end to end (issue 10): `krypton-host provision --mode sim --uicc
//! soft --sim-file FILE` against the mock, whose Keys API holds the same SIM's Milenage record
//! and which refuses unsigned provisioning requests. Every operation, the AKA exchange with
//! resynchronisation, wrong keys, tampered and stale requests, the key cache (reuse, expiry,
//! `--no-key-cache`, `--clear-key-cache`), a host without SIM access, the SQN written back,
//! `status`, `doctor --mode sim` and `sim --imsi`.

use super::support::*;
use krypton_mock::keys::SimSubscriber;
use krypton_mock::{self as mock, Fault, MockConfig, MockKrypton};
use krypton_uicc::soft::{SimRecord, SoftSim};
use serde_json::{Value, json};
use std::path::PathBuf;

pub const IMSI: &str = "001010123456789";
/// K and OPc of 3GPP TS 35.208 test set 1.
pub const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
pub const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
/// Another subscriber key: a SIM the Keys API does not know by this K.
pub const OTHER_K: &str = "0396eb317b6d1c36f19c1c84cd6ffd16";

/// A software SIM record with `k` and SQN `sqn`.
pub fn record(k: &str, sqn: u64) -> SimRecord {
    SimRecord::parse(
        format!(r#"{{"imsi":"{IMSI}","k":"{k}","opc":"{OPC}","amf":"8000","sqn":"{sqn:012x}"}}"#)
            .as_bytes(),
    )
    .unwrap()
}

/// A fixture whose mock serves SIM mode only, and a software SIM file in its directory.
pub struct SimSetup {
    pub fx: Fixture,
    pub sim_file: PathBuf,
}

impl std::ops::Deref for SimSetup {
    type Target = Fixture;

    fn deref(&self) -> &Fixture {
        &self.fx
    }
}

impl SimSetup {
    /// The mock's subscriber starts at `network_sqn` with K of test set 1; the SIM file holds
    /// `sim_k` and `sim_sqn`.
    pub async fn new(sim_k: &str, sim_sqn: u64, network_sqn: u64) -> Self {
        Self::with_config(sim_k, sim_sqn, network_sqn, |_| {}).await
    }

    pub async fn with_config(
        sim_k: &str,
        sim_sqn: u64,
        network_sqn: u64,
        change: impl FnOnce(&mut MockConfig),
    ) -> Self {
        let (imsi, subscriber) = SimSubscriber::from_sim_record(&record(K, network_sqn));
        let mut config = MockConfig {
            sim_subscribers: [(imsi, subscriber)].into(),
            require_signatures: true,
            ..MockConfig::default()
        };
        change(&mut config);
        let fx = Fixture::with_config(config).await;
        let sim_file = fx.path("sim.json");
        SoftSim::create(&sim_file, &record(sim_k, sim_sqn)).unwrap();
        SimSetup { fx, sim_file }
    }

    /// `provision TARGET --mode sim --uicc soft --sim-file … --endpoint <mock> --ca-file …
    /// --store … --poll-interval-ms 100 --max-attempts 1 --json` plus `extra`.
    pub fn sim(&self, target: &str, extra: &[&str]) -> Cli {
        self.fx
            .provision(target)
            .args(["--mode", "sim", "--uicc", "soft", "--sim-file"])
            .arg(text(&self.sim_file))
            .poll_ms(100)
            .attempts(1)
            .json()
            .args(extra)
    }

    /// Run `provision` (see [`SimSetup::sim`]): exit code, the JSON object, stderr.
    pub async fn provision(&self, target: &str, extra: &[&str]) -> (i32, Value, String) {
        let run = self.sim(target, extra).run().await;
        (run.code, run.json(), run.stderr)
    }

    /// Stop the mock.
    pub async fn stop(self) {
        self.fx.stop().await;
    }

    /// `POST /v1/keys` calls the mock received (key agreements and resynchronisations).
    pub fn key_agreements(&self) -> usize {
        self.mock
            .requests()
            .iter()
            .filter(|r| r.path == "/v1/keys")
            .count()
    }

    /// The SQN in the software SIM file now.
    pub fn sim_sqn(&self) -> u64 {
        SoftSim::open(&self.sim_file).unwrap().load().unwrap().sqn
    }

    /// The cached Keys API session (`sim-key` in the store), if any.
    pub fn cached_key(&self) -> Option<Value> {
        let path = self.store.join("sim-key.json");
        path.exists()
            .then(|| serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
    }

    /// The bundles stored (file names without `.json`, the key cache excluded), sorted.
    pub fn bundles(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.store) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n != "sim-key.json")
            .map(|n| n.trim_end_matches(".json").to_string())
            .collect();
        names.sort();
        names
    }
}

/// Every provisioning request the mock received since `from` was signed by a verified key
/// of the SIM, with the three headers and the `keyId` of the body.
fn assert_all_signed(mock: &MockKrypton, from: usize) {
    let requests = mock.requests();
    let provisioning: Vec<_> = requests[from..]
        .iter()
        .filter(|r| r.path.starts_with("/v1/provisioning/"))
        .collect();
    assert!(!provisioning.is_empty());
    for r in provisioning {
        assert_eq!(r.method, "POST", "SIM mode posts everything: {}", r.path);
        let sig = &r.signature;
        assert!(
            sig.timestamp
                .as_deref()
                .is_some_and(|t| t.len() == 13 && t.bytes().all(|b| b.is_ascii_digit())),
            "{}: {sig:?}",
            r.path
        );
        assert!(
            sig.algorithm
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case("SHA-256"))
        );
        assert_eq!(sig.signature.as_deref().map(str::len), Some(44));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let signer = r
            .signed_by
            .as_ref()
            .expect("the mock accepted the signature");
        assert_eq!(body["keyId"], signer.key_id.as_str(), "{}", r.path);
        assert_eq!(signer.imsi, IMSI);
        assert!(
            mock.sim_keys()
                .iter()
                .any(|(id, imsi, verified)| id == &signer.key_id && imsi == IMSI && *verified)
        );
    }
}

#[tokio::test]
async fn every_operation_in_sim_mode_with_one_key_agreement() {
    let s = SimSetup::new(K, 0, 0).await;
    let mock = &s.mock;

    let (code, r, err) = s.provision("azure-iot", &[]).await;
    assert_eq!(code, 0, "{r}\n{err}");
    let issued = mock.issued()[0].clone();
    assert_eq!(issued.id, IMSI, "the device ID is the signing SIM's IMSI");
    assert_eq!(r["deviceId"], IMSI);
    assert_eq!(r["host"], "krypton-mock-hub.azure-devices.net");
    let b = read_bundle(&s.store, "azure-iot");
    assert_eq!(b["deviceId"], IMSI);
    assert_eq!(b["certificate"], issued.certificate_pem.as_str());
    assert_eq!(b["privateKey"], issued.private_key_pem.as_str());
    assert_eq!(b["rootCaCertificate"], mock.ca_pem());
    assert_eq!(
        b["operationId"],
        issued.operation_id.clone().unwrap().as_str()
    );
    assert_eq!(b["mode"], "sim");
    assert_key_matches_cert(
        b["privateKey"].as_str().unwrap(),
        b["certificate"].as_str().unwrap(),
    );
    // One key agreement; the SIM accepted SQN 1 and wrote it back.
    assert_eq!(s.key_agreements(), 1);
    assert_eq!(s.sim_sqn(), 1);
    let cached = s.cached_key().expect("the session is cached");
    assert_eq!(cached["imsi"], IMSI);
    assert_eq!(mode(&s.store.join("sim-key.json")), 0o600);
    // The registration poll is a signed POST too.
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.path.contains("/registrations/") && r.method == "POST")
    );

    let (code, r, err) = s
        .provision("aws-iot", &["--param", "thingName=gw-sim-1"])
        .await;
    assert_eq!(code, 0, "{err}");
    let issued = mock.issued()[1].clone();
    assert_eq!(r["clientId"], "gw-sim-1");
    let b = read_bundle(&s.store, "aws-iot");
    assert_eq!(b["clientId"], "gw-sim-1");
    assert_eq!(b["region"], "ap-northeast-1");
    assert_eq!(b["certificate"], issued.certificate_pem.as_str());
    assert_eq!(b["privateKey"], issued.private_key_pem.as_str());
    assert_key_matches_cert(
        b["privateKey"].as_str().unwrap(),
        b["certificate"].as_str().unwrap(),
    );

    let identity = mock::cognito_identity_id("ap-northeast-1", IMSI);
    let (code, _, err) = s.provision("aws-cognito", &[]).await;
    assert_eq!(code, 0, "{err}");
    let b = read_bundle(&s.store, "aws-cognito");
    assert_eq!(b["identityId"], identity.as_str());
    assert_eq!(b["secretKey"], mock::CANARY_SECRET_KEY);
    assert_eq!(b["sessionToken"], mock::CANARY_SESSION_TOKEN);

    let (code, _, err) = s.provision("aws-cognito-openid", &[]).await;
    assert_eq!(code, 0, "{err}");
    let b = read_bundle(&s.store, "aws-cognito-openid");
    assert_eq!(b["identityId"], identity.as_str());
    assert_eq!(b["token"], mock::CANARY_OPENID_TOKEN);

    // Inventory: SIM mode is answered with nonce and timestamp; the component derives the
    // application key from them and its CK, as the mock does.
    let (code, r, err) = s
        .provision("inventory", &["--param", "endpoint=gw-sim"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["pskId"], format!("d-mock{IMSI}"));
    let b = read_bundle(&s.store, "inventory");
    assert_eq!(b["endpoint"], "gw-sim");
    assert_eq!(b["serverUri"], "coaps://jp.inventory.soracom.io:5684");
    let derived = mock.inventory_application_keys();
    assert_eq!(derived.len(), 1);
    assert_eq!(b["applicationKey"], derived[0].as_str());

    let (code, _, err) = s.provision("arc", &[]).await;
    assert_eq!(code, 0, "{err}");
    let b = read_bundle(&s.store, "arc");
    assert_eq!(
        b["arcClientPeerPrivateKey"],
        mock::arc_private_key().as_str()
    );
    assert_eq!(b["arcServerEndpoint"], "mock.arc.soracom.io:11010");

    let (code, r, err) = s.provision("subscriber-metadata", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["fields"], 6);
    assert_eq!(
        read_bundle(&s.store, "subscriber-metadata")["metadata"]["imsi"],
        IMSI
    );

    let (code, r, err) = s.provision("userdata", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["bytes"], mock::CANARY_USERDATA.len());
    assert_eq!(
        read_bundle(&s.store, "userdata")["userdata"],
        mock::CANARY_USERDATA
    );

    // Eight operations, one AKA: the cached key signed every later request.
    assert_eq!(s.key_agreements(), 1);
    assert_eq!(s.sim_sqn(), 1);
    assert_all_signed(mock, 0);
    let key_ids: std::collections::BTreeSet<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.signed_by.as_ref().map(|k| k.key_id.clone()))
        .collect();
    assert_eq!(key_ids.len(), 1);

    // `status` names the mode of every bundle.
    let (code, out, err) = s.status(None).json().run().await.parts();
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(out.trim()).unwrap();
    let bundles = status["bundles"].as_array().unwrap();
    assert_eq!(bundles.len(), 8);
    assert!(bundles.iter().all(|b| b["mode"] == "sim"), "{status}");
    let (code, out, _) = s.status(Some("arc")).run().await.parts();
    assert_eq!(code, 0);
    assert!(out.contains("mode") && out.contains("sim"), "{out}");
    s.stop().await;
}

#[tokio::test]
async fn a_sim_ahead_of_the_keys_api_is_resynchronised_once() {
    // The SIM has accepted SQN 0x100; the Keys API starts at 0.
    let s = SimSetup::new(K, 0x100, 0).await;
    let (code, r, err) = s.provision("aws-cognito", &[]).await;
    assert_eq!(code, 0, "{r}\n{err}");
    let starts: Vec<Value> = s
        .mock
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/keys")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(starts.len(), 2, "a challenge, then one resynchronisation");
    assert_eq!(starts[0], json!({"imsi": IMSI}));
    assert_eq!(starts[1]["imsi"], IMSI);
    assert!(starts[1]["rand"].is_string() && starts[1]["auts"].is_string());
    assert_eq!(
        s.sim_sqn(),
        0x101,
        "the SQN after resynchronisation, written back"
    );
    assert_all_signed(&s.mock, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_wrong_key_or_a_refused_verification_stores_and_caches_nothing() {
    // The SIM's K is not the Keys API's: the SIM refuses the challenge (MAC failure).
    let s = SimSetup::new(OTHER_K, 0, 0).await;
    let (code, r, err) = s.provision("aws-iot", &[]).await;
    assert_eq!(code, 13, "{r}\n{err}");
    assert_eq!(r["exitCode"], 13);
    assert_eq!(r["error"]["kind"], "sim");
    assert_eq!(r["error"]["simError"], "uicc");
    assert_eq!(r["error"]["uiccError"], "mac-failure");
    assert!(s.cached_key().is_none());
    assert!(s.bundles().is_empty());
    assert_eq!(s.sim_sqn(), 0, "a refused challenge does not move the SQN");
    assert!(
        !s.mock
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/v1/provisioning/"))
    );
    let (code, out, err) = s.sim("aws-iot", &[]).text().run().await.parts();
    assert_eq!(code, 13);
    assert!(out.is_empty());
    assert!(err.contains("MAC failure"), "{err}");
    s.stop().await;

    // The right K, but the Keys API refuses the verification.
    let s = SimSetup::new(K, 0, 0).await;
    s.mock.inject(
        "/v1/keys/",
        http_error(401, "KEY0401", "verification failed"),
    );
    let (code, r, err) = s.provision("aws-iot", &[]).await;
    assert_eq!(code, 13, "{r}\n{err}");
    assert_eq!(r["error"]["kind"], "sim");
    assert_eq!(r["error"]["simError"], "key-agreement");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("verify"),
        "{r}"
    );
    assert!(s.cached_key().is_none());
    assert!(s.bundles().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn tampered_and_stale_requests_are_refused_and_store_nothing() {
    let s = SimSetup::new(K, 0, 0).await;
    for fault in [Fault::AlterSignedBody, Fault::ClockSkew(10 * 60 * 1000)] {
        s.mock.clear_faults();
        s.mock.inject("/v1/provisioning/", fault.clone());
        for extra in [&[][..], &["--no-key-cache"][..]] {
            let (code, r, err) = s.provision("aws-iot", extra).await;
            assert_eq!(code, 6, "{fault:?} {extra:?}: {r}\n{err}");
            assert_eq!(r["error"]["kind"], "http-status");
            assert_eq!(r["error"]["status"], 401);
            assert_eq!(r["error"]["code"], "KEY0401");
            assert!(s.bundles().is_empty(), "{fault:?}");
        }
    }
    let messages: Vec<Value> = s
        .mock
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/provisioning/"))
        .map(|r| json!(r.signed_by.is_some()))
        .collect();
    assert!(messages.iter().all(|m| m == &json!(false)), "none accepted");
    // Without the fault the same SIM provisions.
    s.mock.clear_faults();
    let (code, _, err) = s.provision("aws-iot", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.bundles(), ["aws-iot"]);
    s.stop().await;
}

#[tokio::test]
async fn the_key_cache_is_reused_refreshed_bypassed_and_cleared() {
    let s = SimSetup::with_config(K, 0, 0, |c| c.sim_key_lifetime_secs = 10).await;
    let (code, _, err) = s.provision("userdata", &[]).await;
    assert_eq!(code, 0, "{err}");
    let first = s.cached_key().unwrap();
    assert_eq!(s.key_agreements(), 1);

    // Reused: no AKA.
    let (code, _, err) = s.provision("userdata", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.key_agreements(), 1);
    assert_eq!(s.cached_key().unwrap()["keyId"], first["keyId"]);

    // The server's lifetime (10 s here) passes: the cached key is refused with 401, and the
    // component agrees a new one and caches it.
    tokio::time::sleep(std::time::Duration::from_millis(10_500)).await;
    let (code, _, err) = s.provision("userdata", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.key_agreements(), 2);
    let second = s.cached_key().unwrap();
    assert_ne!(second["keyId"], first["keyId"]);

    // The cache's own hour has passed: a new AKA before any provisioning call.
    let mut expired = second.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    expired["createdAtMs"] = json!(now - 3_601_000);
    expired["expiresAtMs"] = json!(now - 1_000);
    std::fs::write(s.store.join("sim-key.json"), expired.to_string()).unwrap();
    let refused_before = refused(&s.mock);
    let (code, _, err) = s.provision("userdata", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.key_agreements(), 3);
    assert_eq!(
        refused(&s.mock),
        refused_before,
        "no request was signed with it"
    );
    let third = s.cached_key().unwrap();
    assert_ne!(third["keyId"], second["keyId"]);

    // --no-key-cache: a new AKA, the cache neither read nor written.
    let (code, _, err) = s.provision("userdata", &["--no-key-cache"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.key_agreements(), 4);
    assert_eq!(s.cached_key().unwrap(), third);

    // --clear-key-cache: deleted, a new AKA, the new session cached.
    let (code, _, err) = s.provision("userdata", &["--clear-key-cache"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.key_agreements(), 5);
    assert_ne!(s.cached_key().unwrap()["keyId"], third["keyId"]);
    assert_eq!(s.sim_sqn(), 5);

    // The two do not go together, and neither goes with network mode.
    let (code, r, _) = s
        .provision("userdata", &["--no-key-cache", "--clear-key-cache"])
        .await;
    assert_eq!((code, r["error"]["kind"].as_str()), (2, Some("usage")));
    s.stop().await;
}

/// Provisioning requests the mock refused (no accepted signature).
fn refused(mock: &MockKrypton) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/provisioning/") && r.signed_by.is_none())
        .count()
}

/// A software SIM file that breaks its rules (a short K, a missing file) is a configuration
/// problem: `unavailable` naming the file and the field, never a "reader or modem failed".
#[tokio::test]
async fn a_broken_software_sim_file_is_unavailable_naming_the_field_not_a_reader_failure() {
    let s = SimSetup::new(K, 0, 0).await;
    let text = std::fs::read_to_string(&s.sim_file).unwrap();
    let mut record: Value = serde_json::from_str(&text).unwrap();
    record["k"] = Value::String("465b5ce8b199b49f".into());
    std::fs::write(&s.sim_file, record.to_string()).unwrap();
    let command = s.sim("aws-iot", &[]);
    let (code, out, _) = command.run().await.parts();
    assert_eq!(code, 13, "{out}");
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["error"]["kind"], "sim");
    assert_eq!(r["error"]["uiccError"], "unavailable", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("software SIM file cannot be used") && message.contains("`k`"),
        "{message}"
    );
    assert!(!message.contains("reader or modem failed"), "{message}");

    std::fs::remove_file(&s.sim_file).unwrap();
    let (code, out, _) = command.run().await.parts();
    assert_eq!(code, 13, "{out}");
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["error"]["uiccError"], "unavailable", "{r}");
    assert!(s.mock.requests().is_empty(), "nothing was sent");
    assert!(s.bundles().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn sim_mode_without_sim_access_is_unavailable_and_names_the_flags() {
    let s = SimSetup::new(K, 0, 0).await;
    let base = cli(["provision", "aws-iot", "--mode", "sim"])
        .endpoint(&s.endpoint())
        .store(&s.store);
    let (code, out, _) = base.clone().json().run().await.parts();
    assert_eq!(code, 13, "{out}");
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["error"]["kind"], "sim");
    assert_eq!(r["error"]["uiccError"], "unavailable");
    let (code, _, err) = base.run().await.parts();
    assert_eq!(code, 13);
    assert!(
        err.contains("--uicc") && err.contains("--sim-file"),
        "the hint names the flags: {err}"
    );
    assert!(s.mock.requests().is_empty(), "nothing was sent");
    assert!(s.bundles().is_empty());

    // SIM-mode flags without --mode sim, and --uicc soft without a file: usage errors.
    for args in [
        vec!["provision", "aws-iot", "--sim-file", "x.json", "--json"],
        vec!["provision", "aws-iot", "--no-key-cache", "--json"],
        vec![
            "provision",
            "aws-iot",
            "--mode",
            "sim",
            "--uicc",
            "soft",
            "--json",
        ],
    ] {
        let (code, out, _) = run_cli(&args).await;
        assert_eq!(code, 2, "{args:?}: {out}");
        let r: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(r["error"]["kind"], "usage");
    }
    s.stop().await;
}

#[tokio::test]
async fn unsigned_requests_are_refused_by_a_sim_only_server() {
    let s = SimSetup::new(K, 0, 0).await;
    let (code, out, err) =
        s.fx.provision("userdata")
            .attempts(1)
            .json()
            .run()
            .await
            .parts();
    assert_eq!(code, 6, "{out}{err}");
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["error"]["status"], 401);
    assert_eq!(r["error"]["code"], "KEY0401");
    assert!(s.bundles().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn doctor_and_sim_commands_read_the_imsi_never_a_key() {
    let s = SimSetup::new(K, 0, 0).await;
    let endpoint = s.mock.endpoint();
    let sim_file = s.sim_file.to_str().unwrap();
    // `doctor --mode sim` with the software SIM in `file`, against the mock.
    let doctor = |file: &str| {
        cli([
            "doctor",
            "--mode",
            "sim",
            "--uicc",
            "soft",
            "--sim-file",
            file,
        ])
        .endpoint(&endpoint)
        .ca(&s.ca)
    };
    let (code, out, err) = doctor(sim_file).json().run().await.parts();
    assert_eq!(code, 0, "{out}{err}");
    let d: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(d["ok"], true);
    assert_eq!(d["mode"], "sim");
    assert_eq!(d["sim"]["imsi"], IMSI);
    assert_eq!(
        d["sim"]["uicc"],
        format!("software SIM {}", s.sim_file.display())
    );
    assert_eq!(d["verdict"], "ok");

    let (code, out, _) =
        run_cli(&["doctor", "--mode", "sim", "--endpoint", &endpoint, "--json"]).await;
    assert_eq!(code, 13, "{out}");
    let d: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(d["error"]["kind"], "sim");
    assert_eq!(d["sim"]["error"]["kind"], "unavailable");
    // In text, a SIM that cannot be used is the verdict, never "ok" before exit 13.
    let missing = s.tmp.path().join("missing.json");
    let (code, out, err) = doctor(missing.to_str().unwrap()).run().await.parts();
    assert_eq!(code, 13, "{out}{err}");
    assert!(out.contains("verdict    sim-unusable (route: ok)"), "{out}");
    assert!(!out.contains("verdict    ok"), "{out}");

    let imsi = |file: &str| cli(["sim", "--imsi", "--uicc", "soft", "--sim-file", file]);
    let (code, out, err) = imsi(sim_file).run().await.parts();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(IMSI), "{out}");
    // A SIM that cannot be read: the same JSON fields as `provision --mode sim`, and the
    // flags named in the text.
    let missing_file = missing.to_str().unwrap();
    let (code, out, _) = imsi(missing_file).json().run().await.parts();
    assert_eq!(code, 13, "{out}");
    let f: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(f["error"]["kind"], "sim");
    assert_eq!(f["error"]["simError"], "uicc");
    assert_eq!(f["error"]["uiccError"], "unavailable");
    let (code, _, text) = imsi(missing_file).run().await.parts();
    assert_eq!(code, 13);
    assert!(
        text.contains("hint: ") && text.contains("--sim-file"),
        "{text}"
    );
    let (code, out, _) = run_cli(&["sim", "--list-ports", "--json"]).await;
    assert_eq!(code, 0);
    assert!(serde_json::from_str::<Value>(out.trim()).unwrap()["ports"].is_array());
    for out in [&out, &err] {
        assert!(!out.to_lowercase().contains(K) && !out.to_lowercase().contains(OPC));
    }
    s.stop().await;
}

#[tokio::test]
async fn the_daemon_keeps_targets_provisioned_in_sim_mode() {
    let s = SimSetup::new(K, 0, 0).await;
    let config = s
        .gateway()
        .string("mode", "sim")
        .table(&format!(
            "[uicc]\nbackend = 'soft'\nsim_file = '{}'\ntimeout_ms = 5000",
            s.sim_file.display()
        ))
        .target("aws-cognito")
        .target("arc");
    let daemon = Daemon::start(config.parse()).await.unwrap();
    assert_eq!(
        daemon.check_all().await,
        2,
        "both provisioned in the first pass"
    );
    assert_eq!(daemon.check_all().await, 0, "both still valid");
    assert_eq!(s.key_agreements(), 1, "one AKA for the daemon's passes");
    assert_all_signed(&s.mock, 0);
    for name in ["aws-cognito", "arc"] {
        assert_eq!(read_bundle(&s.store, name)["mode"], "sim");
    }
    drop(daemon);
    s.stop().await;
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Hex digits into bytes; empty when they are not an even number of hex digits.
fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_default()
}

/// A modem on a pseudo-terminal whose SIM is a software USIM with the test set's keys: it
/// answers `ATE0V1`, `AT+CIMI`, `ATI`, `AT+CGMI` and `AT+CSIM` (SELECT, AUTHENTICATE with
/// the `61 xx` answer, GET RESPONSE) as a modem holding that SIM would (3GPP TS 27.007 §8.17,
/// TS 31.102 §7.1.2), and `ERROR` to anything else. Returns the slave's path (what
/// `--port` names) and a flag that stops the modem.
fn fake_usim_modem(sqn: u64) -> PtyModem {
    use krypton_uicc::aka::{UsimVerdict, usim_authenticate};
    let subscriber = record(K, 0).subscriber();
    let mut sqn_ms = sqn;
    let mut pending: Vec<u8> = Vec::new();
    pty_modem(std::time::Duration::ZERO, move |cmd| {
        let csim = |hex: &str| format!("\r\n+CSIM: {},\"{}\"\r\n\r\nOK\r\n", hex.len(), hex);
        match cmd {
            "ATI" => "\r\nkrypton test modem\r\n\r\nOK\r\n".to_string(),
            "AT+CGMI" => "\r\n+CGMI: krypton-tests\r\n\r\nOK\r\n".to_string(),
            c if c.starts_with("AT+CSIM=") => {
                let hex = c
                    .split_once(',')
                    .map(|(_, h)| h.trim_matches('"'))
                    .unwrap_or("");
                let apdu = hex_decode(hex);
                match apdu.get(..2) {
                    Some([0x00, 0xA4]) => csim("9000"),
                    Some([0x00, 0x88]) if apdu.len() >= 39 => {
                        let rand: [u8; 16] = apdu[6..22].try_into().unwrap();
                        let autn: [u8; 16] = apdu[23..39].try_into().unwrap();
                        pending = match usim_authenticate(&subscriber, sqn_ms, &rand, &autn) {
                            UsimVerdict::Accept {
                                sqn,
                                outcome: krypton_uicc::AuthOutcome::Res { res, ck, ik },
                            } => {
                                sqn_ms = sqn;
                                let mut data = vec![0xDB, res.len() as u8];
                                data.extend_from_slice(res.expose());
                                data.push(16);
                                data.extend_from_slice(ck.expose());
                                data.push(16);
                                data.extend_from_slice(ik.expose());
                                data
                            }
                            UsimVerdict::Resync {
                                outcome: krypton_uicc::AuthOutcome::SyncFailure { auts },
                            } => [&[0xDC, 14][..], &auts].concat(),
                            _ => Vec::new(),
                        };
                        if pending.is_empty() {
                            csim("9862")
                        } else {
                            csim(&format!("61{:02X}", pending.len()))
                        }
                    }
                    Some([0x00, 0xC0]) if !pending.is_empty() => {
                        let data = std::mem::take(&mut pending);
                        csim(&format!("{}9000", hex_upper(&data)))
                    }
                    _ => csim("6D00"),
                }
            }
            _ => "\r\nERROR\r\n".to_string(),
        }
    })
}

/// A fake modem's slave path (what `--port` names), the flag that stops it, and its thread.
pub type PtyModem = (
    String,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
);

/// A modem on a pseudo-terminal: each command line (CR-terminated, trimmed) gets `ATE0V1` →
/// `OK` and `AT+CIMI` → [`IMSI`] (3GPP TS 27.007 §5.6), any other non-empty one what `answer`
/// says, each reply `delay` after its command.
pub fn pty_modem(
    delay: std::time::Duration,
    mut answer: impl FnMut(&str) -> String + Send + 'static,
) -> PtyModem {
    use krypton_uicc::modem::serialport::{SerialPort, TTYPort};
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let (mut master, slave) = TTYPort::pair().expect("a pseudo-terminal pair");
    let path = slave.name().unwrap();
    // The CLI opens the slave by its path; this end closes so that it can.
    drop(slave);
    master
        .set_timeout(std::time::Duration::from_millis(50))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !stopped.load(Ordering::SeqCst) {
            match master.read(&mut byte) {
                Ok(1) if byte[0] == b'\r' => {}
                Ok(1) if byte[0] == b'\n' => continue,
                Ok(1) => {
                    line.push(byte[0]);
                    continue;
                }
                Ok(_) => continue,
                Err(_) => {
                    // No slave open between two CLI runs: wait for the next one.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                }
            }
            let cmd = String::from_utf8_lossy(&line).trim().to_string();
            line.clear();
            let reply = match cmd.as_str() {
                "" => continue,
                "ATE0V1" => "\r\nOK\r\n".to_string(),
                "AT+CIMI" => format!("\r\n{IMSI}\r\n\r\nOK\r\n"),
                other => answer(other),
            };
            let until = std::time::Instant::now() + delay;
            while std::time::Instant::now() < until && !stopped.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = master
                .write_all(reply.as_bytes())
                .and_then(|()| master.flush());
        }
    });
    (path, stop, handle)
}

/// The AT-command backend end to end: the CLI reaches a (fake) modem on a pseudo-terminal by
/// its path, reads the IMSI with `AT+CIMI` and runs AUTHENTICATE through `AT+CSIM` for the
/// Keys API, resynchronisation included; `sim --device-info` and `sim --imsi` ask it too.
#[tokio::test]
async fn sim_mode_through_a_modem_on_a_pseudo_terminal() {
    // The modem's SIM has seen SQN 0x40; the Keys API starts at 0: one resynchronisation.
    let s = SimSetup::new(K, 0, 0).await;
    let (port, stop, modem) = fake_usim_modem(0x40);
    let (code, out, err) =
        s.fx.provision("aws-cognito")
            .args(["--mode", "sim", "--uicc", "modem", "--port", &port])
            .args(["--baud", "115200", "--uicc-timeout-ms", "3000"])
            .json()
            .run()
            .await
            .parts();
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        s.key_agreements(),
        2,
        "a challenge, then the resynchronisation"
    );
    assert_all_signed(&s.mock, 0);
    assert_eq!(read_bundle(&s.store, "aws-cognito")["mode"], "sim");

    let (code, out, err) = run_cli(&[
        "sim", "--imsi", "--uicc", "modem", "--port", &port, "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["imsi"], IMSI);
    assert!(v["uicc"].as_str().unwrap().contains(&port), "{v}");
    let (code, out, err) = run_cli(&["sim", "--device-info", "--port", &port, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["identification"], "krypton test modem");
    assert_eq!(v["manufacturer"], "krypton-tests");
    assert_eq!(v["model"], Value::Null, "refused with ERROR");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    modem.join().unwrap();

    // A port that does not exist: an I/O error naming it, exit 13.
    let (code, out, _) = cli(["provision", "arc", "--mode", "sim", "--uicc", "modem"])
        .args(["--port", "/dev/krypton-no-such-port"])
        .endpoint(&s.endpoint())
        .store(&s.store)
        .json()
        .run()
        .await
        .parts();
    assert_eq!(code, 13, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["uiccError"], "io");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/dev/krypton-no-such-port")
    );
    s.stop().await;
}

/// Issue 18, item 13: the shipped drop-in for SIM mode opens the devices a modem or reader
/// needs (and only those), and `systemd-analyze verify` accepts the unit with it, without a
/// warning; a broken line in the drop-in is seen by the same check (it is read).
#[test]
fn the_sim_mode_drop_in_opens_the_devices_and_verifies() {
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let drop_in = std::fs::read_to_string(format!("{root}/krypton-host-sim.conf")).unwrap();
    let values = |key: &str| -> Vec<String> {
        drop_in
            .lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
            .map(|v| v.trim().to_string())
            .collect()
    };
    assert_eq!(values("PrivateDevices"), ["no"]);
    assert_eq!(values("DevicePolicy"), ["closed"]);
    assert_eq!(values("DeviceAllow"), ["char-ttyUSB rw", "char-ttyACM rw"]);
    assert_eq!(values("SupplementaryGroups"), ["dialout"]);

    let analyze = std::path::Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing: install the Debian package `systemd`"
        );
        eprintln!("systemd-analyze is not installed; skipped");
        return;
    }
    let unit = std::fs::read_to_string(format!("{root}/krypton-host.service"))
        .unwrap()
        .replace("/usr/local/bin/krypton-host", BIN);
    let verify = |drop_in: &str| {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("krypton-host.service");
        std::fs::write(&path, &unit).unwrap();
        let dir = tmp.path().join("krypton-host.service.d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("sim.conf"), drop_in).unwrap();
        let out = std::process::Command::new(analyze)
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = verify(&drop_in);
    assert!(ok, "{stderr}");
    assert!(stderr.trim().is_empty(), "{stderr}");
    let (_, stderr) = verify(&format!("{drop_in}DeviceAllow=no-such-device rw\n"));
    assert!(
        stderr.contains("sim.conf"),
        "the drop-in was not read: {stderr}"
    );
}
