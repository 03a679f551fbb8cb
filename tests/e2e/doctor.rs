//! `krypton-host doctor` verdicts on fixture tunnel configurations (issue 4 "doctor").

use super::support::*;
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
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

/// `doctor --json --endpoint ENDPOINT`: (exit code, stdout, stderr).
async fn doctor_at(endpoint: &str) -> (i32, String, String) {
    cli(["doctor", "--json"])
        .endpoint(endpoint)
        .run()
        .await
        .parts()
}

#[tokio::test]
async fn reachability_is_checked_with_tcp_and_tls() {
    let fx = Fixture::new().await;
    let endpoint = fx.endpoint();
    let (code, out, err) = cli(["doctor", "--json"])
        .endpoint(&endpoint)
        .ca(&fx.ca)
        .run()
        .await
        .parts();
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["addresses"][0]["reachability"], "ok");
    assert_eq!(json["addresses"][0]["routedThroughTunnel"], Value::Null);
    // Without the mock's CA the TLS step fails: a TLS diagnosis with the CA-file advice, not
    // "unreachable ... check the cellular route".
    let (code, out, _) = doctor_at(&endpoint).await;
    assert_eq!(code, 4);
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        json["addresses"][0]["reachability"],
        "tls: certificate not trusted (issued by an unknown CA)"
    );
    assert_eq!(json["verdict"], "tls-failed");
    let hostport = endpoint.trim_start_matches("https://");
    assert_eq!(
        json["advice"],
        serde_json::json!([format!(
            "the TLS certificate of {hostport} is not trusted (issued by an unknown CA): for a \
             private or test endpoint (such as `krypton-host mock`), pass its CA with --ca-file"
        )])
    );
    assert!(!out.contains("cellular"), "{out}");
    fx.stop().await;
    let closed = closed_port();
    let (code, out, _) = doctor_at(&format!("https://127.0.0.1:{closed}")).await;
    assert_eq!(code, 4);
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        json["addresses"][0]["reachability"],
        "tcp: connection refused"
    );
    assert_eq!(json["verdict"], "unreachable");
    // Refused is said as refused, not as a cellular route problem.
    assert_eq!(
        json["advice"][0],
        format!(
            "127.0.0.1:{closed} refused the connection: nothing listens on port {closed} there"
        )
    );
    assert!(!out.contains("cellular"), "{out}");
    // No port in the endpoint: 443 was tried, and doctor says Krypton's port, as provision does.
    // (Nothing listens on 443 on a test machine.)
    let (code, out, _) = doctor_at("https://127.0.0.1").await;
    assert_eq!(code, 4, "{out}");
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        json["advice"][1],
        "the endpoint has no port, so 443 was tried: Krypton listens on 8036, e.g. \
         https://krypton.soracom.io:8036"
    );

    // A server that speaks plain HTTP: TLS fails, and doctor says it is not TLS.
    let (port, _) = super::failures::plain_http_server().await;
    let (code, out, _) = doctor_at(&format!("https://127.0.0.1:{port}")).await;
    assert_eq!(code, 4);
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        json["addresses"][0]["reachability"],
        "tls: the server does not speak TLS"
    );
    assert_eq!(json["verdict"], "tls-failed");
    assert_eq!(
        json["advice"][0],
        format!(
            "127.0.0.1:{port} does not speak TLS: Krypton speaks HTTPS on port 8036 \
             (https://krypton.soracom.io:8036); check the endpoint's port"
        )
    );
    // The same server named with http://: no TLS is attempted, and it answers.
    let (code, out, _) = doctor_at(&format!("http://127.0.0.1:{port}")).await;
    assert_eq!(code, 0, "{out}");
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["addresses"][0]["reachability"], "ok");
}

#[tokio::test]
async fn a_loopback_endpoint_is_never_asked_into_allowed_ips() {
    // The mock on 127.0.0.1 with a tunnel configuration: wireguard-config never routes a
    // local address, so doctor must not ask for 127.0.0.1/32 either.
    let fx = Fixture::new().await;
    let args = cli(["doctor", "--wireguard", &fixture("wg-routed.conf")])
        .endpoint(&fx.endpoint())
        .ca(&fx.ca);
    let (code, out, err) = args.clone().json().run().await.parts();
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["verdict"], "ok");
    assert_eq!(json["addresses"][0]["address"], "127.0.0.1");
    assert_eq!(json["addresses"][0]["local"], true);
    assert_eq!(json["addresses"][0]["reachability"], "ok");
    assert_eq!(
        json["advice"],
        serde_json::json!([
            "127.0.0.1 is local (loopback or link-local): local addresses never go through the \
             tunnel, and wireguard-config leaves them out of AllowedIPs too; nothing to add"
        ])
    );
    let (code, text, _) = args.run().await.parts();
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("127.0.0.1/32"), "{text}");
    assert!(!text.contains("of 127.0.0.1"), "{text}");
    assert!(
        text.contains("local address, never routed through the tunnel"),
        "{text}"
    );
    fx.stop().await;
}

/// The `AllowedIPs = ` line of a wg-quick text.
fn allowed_ips_line(config: &str) -> &str {
    config
        .lines()
        .find(|l| l.starts_with("AllowedIPs = "))
        .unwrap_or_else(|| panic!("no AllowedIPs in {config}"))
}

/// `doctor --json --no-connect` on one address and one wg-quick file.
async fn doctor_on(address: &str, wg: &std::path::Path) -> (i32, Value, String) {
    let (code, out, err) = run_cli(&[
        "doctor",
        "--json",
        "--no-connect",
        "--address",
        address,
        "--wireguard",
        wg.to_str().unwrap(),
    ])
    .await;
    let json = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, json, err)
}

#[tokio::test]
async fn doctor_and_wireguard_config_agree_on_every_address() {
    // One rule for local addresses, used by both commands: for each address, wireguard-config
    // adds a route exactly when doctor (on the configuration without it) asks for one, both
    // call the same addresses local, and doctor accepts what wireguard-config wrote.
    let fx = Fixture::new().await;
    fx.provisioned(Target::Arc).await;
    let tmp = &fx.tmp;
    let wireguard = |address: String| {
        let store = fx.store.to_str().unwrap().to_string();
        async move {
            let (code, out, err) = run_cli(&[
                "wireguard-config",
                "--store",
                &store,
                "--out",
                "-",
                "--krypton-address",
                &address,
            ])
            .await;
            assert_eq!(code, 0, "{address}: {err}");
            out
        }
    };
    // The bundle's own routes (100.127.0.0/16): an address inside adds nothing.
    let base = wireguard("100.127.0.1".into()).await;
    assert_eq!(allowed_ips_line(&base), "AllowedIPs = 100.127.0.0/16");
    let base_file = tmp.path().join("base.conf");
    std::fs::write(&base_file, &base).unwrap();

    // (address, local, routed by the bundle's AllowedIPs)
    let table = [
        ("127.0.0.1", true, false),
        ("127.8.9.10", true, false),
        ("::1", true, false),
        ("0.0.0.0", true, false),
        ("::", true, false),
        ("169.254.10.20", true, false),
        ("fe80::1", true, false),
        ("::ffff:127.0.0.1", true, false),
        ("54.250.252.99", false, false),
        ("10.0.0.1", false, false),
        ("2001:db8::1", false, false),
        ("100.127.10.1", false, true),
    ];
    for (address, local, inside) in table {
        let config = wireguard(address.to_string()).await;
        let added = allowed_ips_line(&config) != "AllowedIPs = 100.127.0.0/16";
        let said_local = config.contains(&format!("# Not routed (local addresses): {address}\n"));
        let (code, json, err) = doctor_on(address, &base_file).await;
        let asks = json["verdict"] == "not-routed";
        assert_eq!(
            added, asks,
            "{address}: wireguard-config {config}\ndoctor {json} {err}"
        );
        assert_eq!(said_local, local, "{address}: {config}");
        assert_eq!(json["addresses"][0]["local"], local, "{address}: {json}");
        assert_eq!(added, !local && !inside, "{address}");
        assert_eq!(code, if asks { 12 } else { 0 }, "{address}: {json}");
        // What wireguard-config wrote is what doctor wants.
        let written = tmp.path().join("written.conf");
        std::fs::write(&written, &config).unwrap();
        let (code, json, _) = doctor_on(address, &written).await;
        assert_eq!(
            (code, &json["verdict"]),
            (0, &Value::from("ok")),
            "{address}: {json}"
        );
    }
    fx.stop().await;
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
    assert_eq!(
        json["advice"],
        serde_json::json!([
            "the name krypton.invalid does not exist (DNS: no such name): check the spelling \
             of the endpoint's host, or pass --address IP"
        ])
    );
}
