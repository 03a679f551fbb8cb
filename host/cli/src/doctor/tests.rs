//! Unit tests of `doctor`.

use super::*;

#[test]
fn wireguard_entries_are_read_per_peer_and_bad_ones_reported() {
    let t = Tunnel::from_wireguard(
        "[Interface]\nAllowedIPs = 1.1.1.1/32\n[Peer]\nPublicKey = x\nAllowedIPs = 100.127.0.0/16,  54.250.252.67/32 # comment\nAllowedIPs = 10.0.0.300/8, 10.1.2.3, 1.2.3.4 /32\n",
    )
    .unwrap();
    assert_eq!(
        t.allowed_ips,
        vec!["100.127.0.0/16", "54.250.252.67/32", "10.1.2.3"]
    );
    assert_eq!(t.bad_entries.len(), 2);
    assert_eq!(t.bad_entries[0].location, "line 6");
    assert_eq!(
        t.bad_entries[1].reason,
        "contains whitespace inside the entry"
    );
    assert!(t.routes("54.250.252.67".parse().unwrap()));
    assert!(
        !t.routes("1.1.1.1".parse().unwrap()),
        "[Interface] lines are not routes"
    );
    assert_eq!(
        t.fix(&["54.250.252.99".parse().unwrap()]).as_deref(),
        Some("AllowedIPs = 100.127.0.0/16, 54.250.252.67/32, 10.1.2.3, 54.250.252.99/32")
    );
    assert!(Tunnel::from_wireguard("[Interface]\nAddress = 10.0.0.1/32\n").is_err());
}

/// soratun's lists as the component reads them (`soratun-routes`): the entries are
/// checked here as CIDRs, one with a problem is reported as it is, and the change is the
/// component's to word.
#[test]
fn soratun_lists_are_merged() {
    let entry = |location: &str, entry: &str, problem: Option<&str>| RouteEntry {
        location: location.into(),
        entry: entry.into(),
        problem: problem.map(String::from),
    };
    let t = Tunnel::from_entries(
        TunnelSource::Soratun,
        vec![
            entry("arcSessionStatus.arcAllowedIPs[0]", "100.127.0.0/16", None),
            entry("additionalAllowedIPs[0]", "10.128.0.0/9", None),
            entry("additionalAllowedIPs[1]", "7", Some("not a string")),
            entry("additionalAllowedIPs[2]", "10.0.0.300/8", None),
        ],
    );
    assert_eq!(t.allowed_ips, vec!["100.127.0.0/16", "10.128.0.0/9"]);
    assert_eq!(t.bad_entries[0].location, "additionalAllowedIPs[1]");
    assert_eq!(t.bad_entries[0].reason, "not a string");
    assert_eq!(t.bad_entries[1].entry, "10.0.0.300/8");
    assert!(t.routes("10.200.0.1".parse().unwrap()));
    assert_eq!(t.fix(&["54.250.252.99".parse().unwrap()]), None);
    assert_eq!(
        host_routes(&[
            "54.250.252.99".parse().unwrap(),
            "2001:db8::9".parse().unwrap()
        ]),
        ["54.250.252.99/32", "2001:db8::9/128"]
    );
}

#[test]
fn local_addresses_are_loopback_unspecified_and_link_local() {
    for local in [
        "127.0.0.1",
        "127.255.0.9",
        "0.0.0.0",
        "169.254.1.1",
        "::1",
        "::",
        "fe80::1",
        "::ffff:127.0.0.1",
    ] {
        assert!(is_local_address(local.parse().unwrap()), "{local}");
    }
    for routed in [
        "54.250.252.99",
        "10.0.0.1",
        "100.127.0.1",
        "2001:db8::1",
        "::ffff:54.1.1.1",
    ] {
        assert!(!is_local_address(routed.parse().unwrap()), "{routed}");
    }
}

#[tokio::test]
async fn advice_names_each_address_once_and_never_asks_for_a_local_one() {
    let tunnel = Tunnel::from_wireguard("[Peer]\nAllowedIPs = 100.127.0.0/16\n").unwrap();
    let addresses: Vec<IpAddr> = ["54.1.1.1", "54.1.1.2", "127.0.0.1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let never = async |_: Vec<String>| -> anyhow::Result<String> {
        unreachable!("a wg-quick fix is the host's")
    };
    let d = diagnose(
        "https://krypton.soracom.io:8036",
        Some(tunnel),
        addresses.clone(),
        None,
        false,
        Duration::from_millis(100),
        &ComponentWords::default(),
        never,
    )
    .await
    .unwrap();
    assert_eq!(d.verdict, Verdict::NotRouted);
    assert_eq!(
        d.advice,
        vec![
            "127.0.0.1 (an address of krypton.soracom.io) is local (loopback or link-local): \
             local addresses never go through the tunnel, and wireguard-config leaves them \
             out of AllowedIPs too; nothing to add",
            "54.1.1.1, 54.1.1.2 (addresses of krypton.soracom.io) are outside the tunnel's \
             AllowedIPs: the Krypton call would leave outside SORACOM Arc and time out. Set:",
            "AllowedIPs = 100.127.0.0/16, 54.1.1.1/32, 54.1.1.2/32",
        ]
    );
    assert_eq!(
        d.addresses.iter().map(|a| a.local).collect::<Vec<_>>(),
        vec![false, false, true]
    );

    // soratun's change is the component's, given the routes to add.
    let tunnel = Tunnel::from_entries(
        TunnelSource::Soratun,
        vec![RouteEntry {
            location: "additionalAllowedIPs[0]".into(),
            entry: "100.127.0.0/16".into(),
            problem: None,
        }],
    );
    let d = diagnose(
        "https://krypton.soracom.io:8036",
        Some(tunnel),
        addresses,
        None,
        false,
        Duration::from_millis(100),
        &ComponentWords::default(),
        async |routes: Vec<String>| Ok(format!("add {}", routes.join(" and "))),
    )
    .await
    .unwrap();
    assert_eq!(d.advice[2], "add 54.1.1.1/32 and 54.1.1.2/32");
}
