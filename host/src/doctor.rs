//! `krypton-host doctor`: is the path to Krypton right, before a provisioning run?
//!
//! Network-authenticated Krypton only answers requests that leave over the SIM's SORACOM
//! session. On SORACOM Arc that means through the WireGuard tunnel, and WireGuard routes only
//! the destinations in the peer's `AllowedIPs`: when Krypton's address is missing there, the
//! request leaves over the ordinary internet and times out (around-krypton.md §4.3). This
//! module resolves the endpoint, checks each address against the tunnel's `AllowedIPs` (from a
//! `wg-quick` file or a soratun `arc.json`, including `additionalAllowedIPs`), tries TCP and TLS
//! with short timeouts, and says exactly what to add. CIDRs are parsed with `ipnet`; the
//! `wg-quick` format is read line by line (`Key = value` in `[Section]`s, `#` comments), which
//! is all of its syntax that matters here.

use crate::http::{OutboundPolicy, host_port};
use ipnet::IpNet;
use serde::Serialize;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// Where the tunnel's `AllowedIPs` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelSource {
    /// A `wg-quick` configuration file.
    Wireguard,
    /// A soratun `arc.json`.
    Soratun,
}

/// One `AllowedIPs` entry that is not a CIDR, reported by position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadEntry {
    /// Where it was: `line 7` or `arcSessionStatus.arcAllowedIPs[2]`.
    pub location: String,
    /// The entry as written.
    pub entry: String,
    pub reason: String,
}

/// The tunnel's routes as read from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tunnel {
    pub source: TunnelSource,
    /// Valid entries, as written (trimmed).
    pub allowed_ips: Vec<String>,
    #[serde(skip)]
    nets: Vec<IpNet>,
    pub bad_entries: Vec<BadEntry>,
}

fn parse_entry(text: &str, location: String, tunnel: &mut Tunnel) {
    let entry = text.trim();
    if entry.is_empty() {
        return;
    }
    // A bare address is a host route in wg-quick as well.
    let parsed = entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from));
    match parsed {
        Ok(net) => {
            tunnel.allowed_ips.push(entry.to_string());
            tunnel.nets.push(net);
        }
        Err(_) => tunnel.bad_entries.push(BadEntry {
            location,
            entry: entry.to_string(),
            reason: if entry.contains(char::is_whitespace) {
                "contains whitespace inside the entry".into()
            } else {
                "not an IP network such as 100.127.0.0/16".into()
            },
        }),
    }
}

impl Tunnel {
    /// Read `AllowedIPs` from every `[Peer]` section of a `wg-quick` file.
    /// Errors: the file cannot be read, or has no `AllowedIPs` in a `[Peer]`.
    pub fn from_wireguard(text: &str) -> anyhow::Result<Tunnel> {
        let mut tunnel = Tunnel {
            source: TunnelSource::Wireguard,
            allowed_ips: Vec::new(),
            nets: Vec::new(),
            bad_entries: Vec::new(),
        };
        let mut in_peer = false;
        let mut seen = false;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.starts_with('[') {
                in_peer = line.eq_ignore_ascii_case("[peer]");
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if in_peer && key.trim().eq_ignore_ascii_case("allowedips") {
                seen = true;
                for entry in value.split(',') {
                    parse_entry(entry, format!("line {}", n + 1), &mut tunnel);
                }
            }
        }
        anyhow::ensure!(seen, "no `AllowedIPs` line in a [Peer] section");
        Ok(tunnel)
    }

    /// Read `arcSessionStatus.arcAllowedIPs` and `additionalAllowedIPs` from soratun's
    /// `arc.json`. Errors: not JSON, or neither list present.
    pub fn from_soratun(text: &str) -> anyhow::Result<Tunnel> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| anyhow::anyhow!("not JSON: {e}"))?;
        let mut tunnel = Tunnel {
            source: TunnelSource::Soratun,
            allowed_ips: Vec::new(),
            nets: Vec::new(),
            bad_entries: Vec::new(),
        };
        let lists = [
            (
                "arcSessionStatus.arcAllowedIPs",
                json.pointer("/arcSessionStatus/arcAllowedIPs"),
            ),
            ("additionalAllowedIPs", json.get("additionalAllowedIPs")),
        ];
        let mut seen = false;
        for (name, list) in lists {
            let Some(list) = list.and_then(|l| l.as_array()) else {
                continue;
            };
            seen = true;
            for (i, item) in list.iter().enumerate() {
                let location = format!("{name}[{i}]");
                match item.as_str() {
                    Some(s) => parse_entry(s, location, &mut tunnel),
                    None => tunnel.bad_entries.push(BadEntry {
                        location,
                        entry: item.to_string(),
                        reason: "not a string".into(),
                    }),
                }
            }
        }
        anyhow::ensure!(
            seen,
            "neither `arcSessionStatus.arcAllowedIPs` nor `additionalAllowedIPs` is present"
        );
        Ok(tunnel)
    }

    /// Whether `ip` is routed through the tunnel.
    pub fn routes(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The exact configuration change that routes `missing` through the tunnel.
    pub fn fix(&self, missing: &[IpAddr]) -> String {
        let routes: Vec<String> = missing
            .iter()
            .map(|ip| IpNet::from(*ip).to_string())
            .collect();
        match self.source {
            TunnelSource::Wireguard => {
                let mut all = self.allowed_ips.clone();
                all.extend(routes);
                format!("AllowedIPs = {}", all.join(", "))
            }
            TunnelSource::Soratun => format!(
                "\"additionalAllowedIPs\": [{}]   (or: soratun ... --additional-allowed-ips {})",
                routes
                    .iter()
                    .map(|r| format!("\"{r}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                routes.join(",")
            ),
        }
    }
}

/// What was found for one address of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressCheck {
    pub address: IpAddr,
    /// `None` when no tunnel configuration was given.
    pub routed_through_tunnel: Option<bool>,
    /// `ok`, `skipped`, or what failed (`tcp: …`, `tls: …`).
    pub reachability: String,
}

/// The verdict, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// An address is outside `AllowedIPs`: the call would leave outside the tunnel.
    NotRouted,
    /// The endpoint's name did not resolve.
    DnsFailed,
    /// The tunnel configuration has entries that are not CIDRs.
    MalformedConfig,
    /// No address answered TCP + TLS.
    Unreachable,
    /// Everything checked is in order.
    Ok,
}

/// The whole diagnosis, printed as text or `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    pub endpoint: String,
    pub host: String,
    pub port: u16,
    pub addresses: Vec<AddressCheck>,
    pub tunnel: Option<Tunnel>,
    pub verdict: Verdict,
    /// What to do, including the exact line to add when an address is not routed.
    pub advice: Vec<String>,
}

/// TCP then TLS to `ip:port` with `timeout` each; `ok` or what failed.
async fn reach(
    ip: IpAddr,
    port: u16,
    server_name: &str,
    policy: &OutboundPolicy,
    timeout: Duration,
) -> String {
    let addr = std::net::SocketAddr::new(ip, port);
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return format!("tcp: {e}"),
        Err(_) => return format!("tcp: no answer within {} ms", timeout.as_millis()),
    };
    match policy.tls_handshake(tcp, server_name, timeout).await {
        Ok(()) => "ok".into(),
        Err(e) => format!("tls: {e}"),
    }
}

/// Run the checks. `addresses` replaces DNS resolution when not empty; `connect` false skips
/// the TCP/TLS attempts.
pub async fn diagnose(
    endpoint: &str,
    tunnel: Option<Tunnel>,
    addresses: Vec<IpAddr>,
    ca_pem: Option<&[u8]>,
    connect: bool,
    timeout: Duration,
) -> anyhow::Result<Diagnosis> {
    let (host, port) = host_port(endpoint)?;
    let mut advice = Vec::new();
    let resolved: Vec<IpAddr> = if !addresses.is_empty() {
        addresses
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        vec![ip]
    } else {
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(addrs)) => {
                let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                ips.dedup();
                ips
            }
            Ok(Err(e)) => {
                advice.push(format!(
                    "{host} does not resolve ({e}). Check DNS over the SORACOM session, or pass --address IP."
                ));
                Vec::new()
            }
            Err(_) => {
                advice.push(format!(
                    "resolving {host} took longer than {} ms",
                    timeout.as_millis()
                ));
                Vec::new()
            }
        }
    };
    let policy = OutboundPolicy::new(vec![crate::http::Origin::parse(endpoint)?], ca_pem)?;
    let mut checks = Vec::new();
    for ip in &resolved {
        let routed = tunnel.as_ref().map(|t| t.routes(*ip));
        let reachability = if connect {
            reach(*ip, port, &host, &policy, timeout).await
        } else {
            "skipped".into()
        };
        checks.push(AddressCheck {
            address: *ip,
            routed_through_tunnel: routed,
            reachability,
        });
    }
    let missing: Vec<IpAddr> = checks
        .iter()
        .filter(|c| c.routed_through_tunnel == Some(false))
        .map(|c| c.address)
        .collect();
    if let Some(t) = &tunnel {
        if !missing.is_empty() {
            advice.push(format!(
                "{} of {host} is outside the tunnel's AllowedIPs: the Krypton call would leave outside \
                 SORACOM Arc and time out. Set:",
                missing.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ")
            ));
            advice.push(t.fix(&missing));
        }
        for bad in &t.bad_entries {
            advice.push(format!(
                "AllowedIPs entry `{}` at {}: {}",
                bad.entry, bad.location, bad.reason
            ));
        }
    }
    let verdict = if !missing.is_empty() {
        Verdict::NotRouted
    } else if resolved.is_empty() {
        Verdict::DnsFailed
    } else if tunnel.as_ref().is_some_and(|t| !t.bad_entries.is_empty()) {
        Verdict::MalformedConfig
    } else if connect && !checks.iter().any(|c| c.reachability == "ok") {
        advice.push(format!(
            "no address of {host}:{port} answered; on SORACOM Air check the cellular route, on Arc the tunnel"
        ));
        Verdict::Unreachable
    } else {
        Verdict::Ok
    };
    Ok(Diagnosis {
        endpoint: endpoint.to_string(),
        host,
        port,
        addresses: checks,
        tunnel,
        verdict,
        advice,
    })
}

/// Read a tunnel configuration file of either kind: a regular UTF-8 file of at most
/// [`crate::files::MAX_TUNNEL_CONFIG_BYTES`] bytes (a FIFO, device or directory is refused at
/// once, see [`crate::files::read_user_file`]). Errors name the file and the option.
pub fn read_tunnel(path: &Path, source: TunnelSource) -> anyhow::Result<Tunnel> {
    use anyhow::Context as _;
    let what = match source {
        TunnelSource::Wireguard => "wg-quick configuration (--wireguard)",
        TunnelSource::Soratun => "soratun configuration (--soratun-config)",
    };
    let text = crate::files::read_user_text(path, crate::files::MAX_TUNNEL_CONFIG_BYTES, what)?;
    match source {
        TunnelSource::Wireguard => Tunnel::from_wireguard(&text),
        TunnelSource::Soratun => Tunnel::from_soratun(&text),
    }
    .with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests {
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
            t.fix(&["54.250.252.99".parse().unwrap()]),
            "AllowedIPs = 100.127.0.0/16, 54.250.252.67/32, 10.1.2.3, 54.250.252.99/32"
        );
        assert!(Tunnel::from_wireguard("[Interface]\nAddress = 10.0.0.1/32\n").is_err());
    }

    #[test]
    fn soratun_lists_are_merged() {
        let t = Tunnel::from_soratun(
            r#"{"additionalAllowedIPs": ["10.128.0.0/9", 7],
                "arcSessionStatus": {"arcAllowedIPs": ["100.127.0.0/16"]}}"#,
        )
        .unwrap();
        assert_eq!(t.allowed_ips, vec!["100.127.0.0/16", "10.128.0.0/9"]);
        assert_eq!(t.bad_entries[0].location, "additionalAllowedIPs[1]");
        assert!(
            t.fix(&["54.250.252.99".parse().unwrap()])
                .starts_with("\"additionalAllowedIPs\": [\"54.250.252.99/32\"]")
        );
        assert!(Tunnel::from_soratun("{}").is_err());
        assert!(Tunnel::from_soratun("not json").is_err());
    }
}
