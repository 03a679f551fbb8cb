//! SIM-authenticated mode against a hostile Keys API and hostile local inputs (issue 10's
//! review): challenges that break their rules, verify answers that are huge or failing, a
//! SIM that can never accept (one resynchronisation, then stop), a 401 loop on a cached key
//! (one new key agreement, one retry, then stop), a redirect on `/v1/keys`, a FIFO as the
//! software SIM file, and a modem port that is not a serial port. Every failure stores
//! nothing, caches nothing and makes a bounded number of requests (counted on the mock).

use super::sim::{IMSI, K, PtyModem, SimSetup, pty_modem};
use super::support::*;
use krypton_mock::Fault;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt as _;

/// Requests the mock received whose path is exactly `path` or starts with `prefix`.
fn count(s: &SimSetup, what: impl Fn(&str) -> bool) -> usize {
    s.mock.requests().iter().filter(|r| what(&r.path)).count()
}

fn verifies(s: &SimSetup) -> usize {
    count(s, |p| p.starts_with("/v1/keys/") && p.ends_with("/verify"))
}

fn provisioning(s: &SimSetup) -> usize {
    count(s, |p| p.starts_with("/v1/provisioning/"))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn hostile_challenges_are_refused_before_the_sim_sees_them() {
    let s = SimSetup::new(K, 0, 0).await;
    let good = |key_id: Value, rand: Value, autn: Value| json!({"keyId": key_id, "rand": rand, "autn": autn});
    let r16 = json!(b64(&[1; 16]));
    let huge_id = "k".repeat(10 * 1024);
    let cases: Vec<(&str, Fault)> = vec![
        (
            "RAND of 15 bytes",
            Fault::Body(good(json!("k-1"), json!(b64(&[1; 15])), r16.clone())),
        ),
        (
            "AUTN of 17 bytes",
            Fault::Body(good(json!("k-1"), r16.clone(), json!(b64(&[1; 17])))),
        ),
        (
            "RAND not base64",
            Fault::Body(good(json!("k-1"), json!("!!not base64!!"), r16.clone())),
        ),
        (
            "RAND unpadded",
            Fault::Body(good(
                json!("k-1"),
                json!("AQEBAQEBAQEBAQEBAQEBAQ"),
                r16.clone(),
            )),
        ),
        (
            "keyId with _",
            Fault::Body(good(json!("k_1"), r16.clone(), r16.clone())),
        ),
        (
            "keyId with /",
            Fault::Body(good(json!("k/../../x"), r16.clone(), r16.clone())),
        ),
        (
            "keyId ..",
            Fault::Body(good(json!(".."), r16.clone(), r16.clone())),
        ),
        (
            "keyId .",
            Fault::Body(good(json!("."), r16.clone(), r16.clone())),
        ),
        (
            "keyId of 10 KB",
            Fault::Body(good(json!(huge_id), r16.clone(), r16.clone())),
        ),
        (
            "keyId a number",
            Fault::Body(good(json!(42), r16.clone(), r16.clone())),
        ),
        (
            "no autn",
            Fault::Body(json!({"keyId": "k-1", "rand": r16.clone()})),
        ),
        ("not JSON", Fault::MalformedJson),
        ("a huge body", Fault::Oversized(4 * 1024 * 1024)),
    ];
    for (what, fault) in cases {
        s.mock.clear_faults();
        s.mock.inject("/v1/keys", fault);
        let keys_before = count(&s, |p| p == "/v1/keys");
        let (code, r, err) = s.provision("aws-iot", &[]).await;
        assert_ne!(code, 0, "{what}: {r}\n{err}");
        assert!(
            code == 13 || code == 7,
            "{what}: a refused key agreement (13) or an unusable answer (7): {r}\n{err}"
        );
        if code == 13 {
            assert_eq!(r["error"]["simError"], "key-agreement", "{what}: {r}");
        }
        let message = r["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.len() < 2048,
            "{what}: a bounded message: {}",
            message.len()
        );
        assert!(
            !message.contains("kkkkkkkkkkkkkkkkkkkk"),
            "{what}: the keyId is not echoed"
        );
        assert_eq!(
            count(&s, |p| p == "/v1/keys") - keys_before,
            1,
            "{what}: one K1, no retry"
        );
        assert_eq!(verifies(&s), 0, "{what}: never verified");
        assert_eq!(provisioning(&s), 0, "{what}");
        assert_eq!(s.sim_sqn(), 0, "{what}: the SIM never accepted it");
        assert!(s.cached_key().is_none(), "{what}");
        assert!(s.bundles().is_empty(), "{what}");
    }
    // Nothing but the Keys API's own path was ever requested.
    assert!(
        s.mock.requests().iter().all(|r| r.path == "/v1/keys"),
        "{:?}",
        s.mock
            .requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    s.stop().await;
}

#[tokio::test]
async fn verify_answers_that_are_huge_or_failing_cache_and_store_nothing() {
    let s = SimSetup::new(K, 0, 0).await;
    // 200 with a 4 MB body.
    s.mock
        .inject("/v1/keys/", Fault::Oversized(4 * 1024 * 1024));
    let (code, r, err) = s.provision("aws-iot", &[]).await;
    assert_ne!(code, 0, "{r}\n{err}");
    assert_eq!(verifies(&s), 1);
    assert!(s.cached_key().is_none(), "{r}");
    assert!(s.bundles().is_empty());
    assert_eq!(provisioning(&s), 0);

    // 500, retried up to --max-attempts (3 here) and no more.
    s.mock.clear_faults();
    s.mock
        .inject("/v1/keys/", http_error(500, "KEY0500", "internal"));
    let before = verifies(&s);
    let run = s
        .sim(
            "aws-iot",
            &["--backoff-base-ms", "10", "--backoff-max-ms", "20"],
        )
        .attempts(3)
        .run()
        .await;
    let (r, err) = (run.json(), &run.stderr);
    let code = run.code;
    assert_eq!(code, 6, "{r}\n{err}");
    assert_eq!(r["error"]["status"], 500);
    assert_eq!(verifies(&s) - before, 3, "bounded by --max-attempts");
    assert!(s.cached_key().is_none());
    assert!(s.bundles().is_empty());
    assert_eq!(provisioning(&s), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_sim_that_never_accepts_stops_after_one_resynchronisation() {
    // SQN_MS at its largest value (2^48 - 1): every challenge the Keys API can issue is stale
    // for this SIM, so the server answers sync-failure-inducing challenges forever.
    let s = SimSetup::new(K, (1 << 48) - 1, 0).await;
    let before = std::fs::read(&s.sim_file).unwrap();
    let (code, r, err) = s.provision("aws-iot", &[]).await;
    assert_eq!(code, 13, "{r}\n{err}");
    assert_eq!(r["error"]["simError"], "key-agreement");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("synchronisation failure again"),
        "{r}"
    );
    assert_eq!(
        count(&s, |p| p == "/v1/keys"),
        2,
        "one challenge, one resynchronisation"
    );
    assert_eq!(verifies(&s), 0);
    assert_eq!(provisioning(&s), 0);
    assert!(s.cached_key().is_none());
    assert!(s.bundles().is_empty());
    assert_eq!(
        std::fs::read(&s.sim_file).unwrap(),
        before,
        "the SIM file is unchanged"
    );
    let mode = std::fs::metadata(&s.sim_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    s.stop().await;
}

#[tokio::test]
async fn a_401_loop_on_a_cached_key_re_agrees_once_retries_once_and_stops() {
    let s = SimSetup::new(K, 0, 0).await;
    let (code, _, err) = s.provision("userdata", &[]).await;
    assert_eq!(code, 0, "{err}");
    let stored = std::fs::read(s.store.join("userdata.json")).unwrap();
    assert!(s.cached_key().is_some());
    let (keys0, verifies0, prov0) = (
        count(&s, |p| p == "/v1/keys"),
        verifies(&s),
        provisioning(&s),
    );

    s.mock.inject(
        "/v1/provisioning/",
        http_error(401, "KEY0401", "unknown keyId"),
    );
    let (code, r, err) = s.provision("userdata", &[]).await;
    assert_eq!(code, 6, "{r}\n{err}");
    assert_eq!(r["error"]["status"], 401);
    assert_eq!(
        count(&s, |p| p == "/v1/keys") - keys0,
        1,
        "one new key agreement"
    );
    assert_eq!(verifies(&s) - verifies0, 1);
    assert_eq!(
        provisioning(&s) - prov0,
        2,
        "the refused call and one retry"
    );
    assert_eq!(
        std::fs::read(s.store.join("userdata.json")).unwrap(),
        stored,
        "the previous bundle is unchanged"
    );
    assert!(
        s.cached_key().is_none(),
        "neither the refused key nor the new one the server refused too is cached"
    );

    // A key agreed in this run is not renewed on a 401: one call, no second key agreement.
    let (keys1, prov1) = (count(&s, |p| p == "/v1/keys"), provisioning(&s));
    let (code, _, err) = s.provision("userdata", &["--no-key-cache"]).await;
    assert_eq!(code, 6, "{err}");
    assert_eq!(count(&s, |p| p == "/v1/keys") - keys1, 1);
    assert_eq!(provisioning(&s) - prov1, 1);
    s.stop().await;
}

#[tokio::test]
async fn a_redirect_on_the_keys_api_is_never_followed() {
    let s = SimSetup::new(K, 0, 0).await;
    let elsewhere = format!("{}/v1/elsewhere", s.mock.endpoint());
    s.mock.inject("/v1/keys", Fault::Redirect(elsewhere));
    let (code, r, err) = s.provision("aws-iot", &[]).await;
    assert!(code == 13 || code == 6, "{r}\n{err}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("307"),
        "{r}"
    );
    let paths: Vec<String> = s.mock.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        ["/v1/keys"],
        "one request, the Location not followed"
    );
    assert!(s.cached_key().is_none());
    assert!(s.bundles().is_empty());
    assert_eq!(s.sim_sqn(), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_fifo_as_the_sim_file_or_a_non_serial_port_fails_at_once() {
    let s = SimSetup::new(K, 0, 0).await;
    let fifo = s.tmp.path().join("fifo.json");
    let status = std::process::Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(60);
    // A FIFO must not block the host.
    let (code, out, err) = cli(["sim", "--imsi", "--uicc", "soft", "--sim-file"])
        .arg(text(&fifo))
        .json()
        .run_within(limit)
        .await
        .parts();
    assert_eq!(code, 13, "{out}\n{err}");
    assert!(out.contains("not a regular file"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    let regular = s.tmp.path().join("not-a-tty");
    std::fs::write(&regular, "").unwrap();
    for port in ["/dev/null", regular.to_str().unwrap()] {
        let (code, out, err) = cli(["sim", "--imsi", "--uicc", "modem", "--port", port])
            .args(["--uicc-timeout-ms", "500"])
            .json()
            .run_within(limit)
            .await
            .parts();
        assert_eq!(code, 13, "{port}: {out}\n{err}");
        assert!(out.contains(port), "the error names the port: {out}");
    }
    let _ = IMSI;
    s.stop().await;
}

/// A modem on a pseudo-terminal that answers every command correctly, each reply `delay`
/// after the command (just under the per-reply timeout): `ATE0V1` and `AT+CIMI` (the IMSI),
/// anything else `ERROR`. Returns the slave's path and a flag that stops it.
fn slow_modem(delay: std::time::Duration) -> PtyModem {
    pty_modem(delay, |_| "\r\nERROR\r\n".to_string())
}

/// Item 10 of issue 18: a modem whose every reply comes just under the per-reply timeout
/// (40 s of 41 s) cannot hold a run past its deadline (2 s; the wall-clock limit of the call
/// is 62 s, and opening the port and reading the IMSI alone would take 80 s): the SIM call
/// stops at the deadline, and the error is the SIM's (exit 13, `uiccError: io`, naming the
/// port and the deadline), never the component's ("exceeded the wall-clock limit").
#[tokio::test]
async fn a_slow_modem_is_bounded_by_the_run_deadline_and_blamed_not_the_component() {
    let s = SimSetup::new(K, 0, 0).await;
    let (port, stop, modem) = slow_modem(std::time::Duration::from_secs(40));
    let (code, out, err) =
        s.fx.provision("aws-cognito")
            .args(["--mode", "sim", "--uicc", "modem", "--port", &port])
            .args(["--uicc-timeout-ms", "41000", "--deadline-secs", "2"])
            .attempts(1)
            .json()
            .run_within(std::time::Duration::from_secs(50))
            .await
            .parts();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    modem.join().unwrap();
    assert_eq!(code, 13, "{out}\n{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["uiccError"], "io", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(&port), "names the modem: {message}");
    assert!(message.contains("deadline"), "{message}");
    assert!(
        !out.contains("wall-clock") && !err.contains("wall-clock"),
        "{out}\n{err}"
    );
    assert!(s.mock.requests().is_empty(), "nothing was sent: no IMSI");
    assert!(s.bundles().is_empty());
    s.stop().await;
}
