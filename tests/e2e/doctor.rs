//! `krypton-host doctor` verdicts on fixture tunnel configurations (issue 4 "doctor").

use super::support::*;
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn doctor(args: &[&str]) -> (i32, Value, String) {
    let mut all = vec![
        "doctor",
        "--json",
        "--no-connect",
        "--address",
        "54.250.252.99",
    ];
    all.extend_from_slice(args);
    let (code, out, err) = run_cli(&all).await;
    let json = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, json, err)
}

#[tokio::test]
async fn routed_configurations_pass() {
    for args in [
        vec!["--wireguard", "wg-routed.conf"],
        vec!["--soratun-config", "arc-routed.json"],
    ] {
        let path = fixture(args[1]);
        let (code, json, err) = doctor(&[args[0], &path]).await;
        assert_eq!(code, 0, "{json} {err}");
        assert_eq!(json["verdict"], "ok");
        assert_eq!(json["addresses"][0]["address"], "54.250.252.99");
        assert_eq!(json["addresses"][0]["routedThroughTunnel"], true);
        assert_eq!(json["addresses"][0]["reachability"], "skipped");
        assert_eq!(json["host"], "krypton.soracom.io");
        assert_eq!(json["port"], 8036);
    }
}

#[tokio::test]
async fn not_routed_configurations_get_the_exact_line_to_add() {
    let (code, json, _) = doctor(&["--wireguard", &fixture("wg-not-routed.conf")]).await;
    assert_eq!(code, 12);
    assert_eq!(json["verdict"], "not-routed");
    assert_eq!(json["addresses"][0]["routedThroughTunnel"], false);
    assert_eq!(
        json["advice"][1],
        "AllowedIPs = 100.127.0.0/21, 100.127.8.0/23, 54.250.252.67/32, 54.250.252.99/32"
    );
    let (code, json, _) = doctor(&["--soratun-config", &fixture("arc-not-routed.json")]).await;
    assert_eq!(code, 12);
    assert!(
        json["advice"][1]
            .as_str()
            .unwrap()
            .starts_with("\"additionalAllowedIPs\": [\"54.250.252.99/32\"]"),
        "{json}"
    );
    // Text output names the address and the fix.
    let (code, out, _) = run_cli(&[
        "doctor",
        "--no-connect",
        "--address",
        "54.250.252.99",
        "--wireguard",
        &fixture("wg-not-routed.conf"),
    ])
    .await;
    assert_eq!(code, 12);
    assert!(
        out.contains("54.250.252.99") && out.contains("NOT routed through the tunnel"),
        "{out}"
    );
    assert!(out.contains(
        "AllowedIPs = 100.127.0.0/21, 100.127.8.0/23, 54.250.252.67/32, 54.250.252.99/32"
    ));
}

#[tokio::test]
async fn malformed_entries_are_reported_one_by_one() {
    let (code, json, _) = doctor(&["--wireguard", &fixture("wg-malformed.conf")]).await;
    assert_eq!(code, 3);
    assert_eq!(json["verdict"], "malformed-config");
    let bad = json["tunnel"]["badEntries"].as_array().unwrap();
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0]["entry"], "100.127.0.0/33");
    assert_eq!(bad[0]["location"], "line 6");
    assert_eq!(bad[1]["entry"], "10.0.0.0 /8");
    assert_eq!(bad[1]["reason"], "contains whitespace inside the entry");
    // The valid entries still count: the address is routed.
    assert_eq!(json["addresses"][0]["routedThroughTunnel"], true);
    // A file that is not a tunnel configuration at all.
    let (code, _, err) = run_cli(&[
        "doctor",
        "--no-connect",
        "--soratun-config",
        &fixture("README.md"),
    ])
    .await;
    assert_eq!(code, 3, "{err}");
}

#[tokio::test]
async fn reachability_is_checked_with_tcp_and_tls() {
    let mock = mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, mock.ca_pem()).unwrap();
    let endpoint = mock.endpoint();
    let (code, out, err) = run_cli(&[
        "doctor",
        "--json",
        "--endpoint",
        &endpoint,
        "--ca-file",
        ca.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["addresses"][0]["reachability"], "ok");
    assert_eq!(json["addresses"][0]["routedThroughTunnel"], Value::Null);
    // Without the mock's CA the TLS step fails; nothing listening fails at TCP.
    let (code, out, _) = run_cli(&["doctor", "--json", "--endpoint", &endpoint]).await;
    assert_eq!(code, 4);
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        json["addresses"][0]["reachability"]
            .as_str()
            .unwrap()
            .starts_with("tls: "),
        "{json}"
    );
    assert_eq!(json["verdict"], "unreachable");
    mock.stop().await;
    let closed = closed_port();
    let (code, out, _) = run_cli(&[
        "doctor",
        "--json",
        "--endpoint",
        &format!("https://127.0.0.1:{closed}"),
    ])
    .await;
    assert_eq!(code, 4);
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        json["addresses"][0]["reachability"]
            .as_str()
            .unwrap()
            .starts_with("tcp: "),
        "{json}"
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_reported() {
    // `.invalid` never resolves (RFC 6761 §6.4).
    let (code, out, _) = run_cli(&[
        "doctor",
        "--json",
        "--timeout-ms",
        "3000",
        "--endpoint",
        "https://krypton.invalid:8036",
        "--wireguard",
        &fixture("wg-routed.conf"),
    ])
    .await;
    assert_eq!(code, 4, "{out}");
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["verdict"], "dns-failed");
    assert_eq!(json["addresses"], serde_json::json!([]));
    assert!(
        json["advice"][0]
            .as_str()
            .unwrap()
            .contains("krypton.invalid"),
        "{json}"
    );
}
