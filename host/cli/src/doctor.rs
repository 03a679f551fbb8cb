//! `krypton-host doctor`: is the path to Krypton right, before a provisioning run?
//!
//! Network-authenticated Krypton only answers requests that leave over the SIM's SORACOM
//! session. On SORACOM Arc that means through the WireGuard tunnel, and WireGuard routes only
//! the destinations in the peer's `AllowedIPs`: when Krypton's address is missing there, the
//! request leaves over the ordinary internet and times out (wg-quick(8) and SORACOM Arc
//! documentation on `AllowedIPs`). This
//! module resolves the endpoint, checks each address against the tunnel's `AllowedIPs` (from a
//! `wg-quick` file, or the routes the component reads from soratun's configuration:
//! [`Tunnel::from_entries`]), tries TCP and TLS with short timeouts, and says exactly what to
//! add. CIDRs are parsed with `ipnet`; the `wg-quick` format (WireGuard's, not SORACOM's) is
//! read line by line (`Key = value` in `[Section]`s, `#` comments), which is all of its syntax
//! that matters here. soratun's file is SORACOM Arc's client configuration: its field names and
//! the change that fixes a route are the component's (`soratun-routes`, `soratun-route-fix`).

use ipnet::IpNet;
use krypton_host::bindings::RouteEntry;
use krypton_host::capability::http::{HandshakeFailure, OutboundPolicy};
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
    /// soratun's configuration (`arc.json`), read by the component.
    Soratun,
}

/// One `AllowedIPs` entry that is not a CIDR, reported by position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadEntry {
    /// Where it was: `line 7`, or the component's location in soratun's file.
    pub location: String,
    /// The entry as written.
    pub entry: String,
    /// Why it is not a CIDR (the parser's words).
    pub reason: String,
}

/// The tunnel's routes as read from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tunnel {
    /// Which kind of file it came from.
    pub source: TunnelSource,
    /// Valid entries, as written (trimmed).
    pub allowed_ips: Vec<String>,
    #[serde(skip)]
    nets: Vec<IpNet>,
    /// Entries that are not CIDRs, in file order.
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

    /// The tunnel of `entries` the component read from a configuration of `source` (soratun's
    /// `arc.json`: `soratun-routes`), in file order: an entry with a `problem` is a bad entry as
    /// it is, the others are checked as CIDRs as a `wg-quick` line's are.
    pub fn from_entries(source: TunnelSource, entries: Vec<RouteEntry>) -> Tunnel {
        let mut tunnel = Tunnel {
            source,
            allowed_ips: Vec::new(),
            nets: Vec::new(),
            bad_entries: Vec::new(),
        };
        // The location and the problem are the component's words: printed without escapes.
        for e in entries {
            let location = crate::output::printable(&e.location);
            match e.problem {
                Some(reason) => tunnel.bad_entries.push(BadEntry {
                    location,
                    entry: e.entry,
                    reason: crate::output::printable(&reason),
                }),
                None => parse_entry(&e.entry, location, &mut tunnel),
            }
        }
        tunnel
    }

    /// Whether `ip` is routed through the tunnel.
    pub fn routes(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The exact `wg-quick` line that routes `missing` through the tunnel; `None` for a
    /// soratun configuration, whose change the component words ([`host_routes`] are what to
    /// give it).
    pub fn fix(&self, missing: &[IpAddr]) -> Option<String> {
        match self.source {
            TunnelSource::Wireguard => {
                let mut all = self.allowed_ips.clone();
                all.extend(host_routes(missing));
                Some(format!("AllowedIPs = {}", all.join(", ")))
            }
            TunnelSource::Soratun => None,
        }
    }
}

/// A single-host route for each address (`54.250.252.99/32`, `2001:db8::9/128`).
pub fn host_routes(addresses: &[IpAddr]) -> Vec<String> {
    addresses
        .iter()
        .map(|ip| IpNet::from(*ip).to_string())
        .collect()
}

/// Whether `ip` is a local address that is never routed through the tunnel: loopback
/// (`127.0.0.0/8`, `::1`), unspecified (`0.0.0.0`, `::`) or link-local (`169.254.0.0/16`,
/// `fe80::/10`; RFC 3927, RFC 4291 §2.5.6), an IPv4-mapped IPv6 address by its IPv4 address.
/// Such an address never leaves this machine or its link. This is the rule `wireguard-config`
/// applies (the component's `types::net::is_local_address`): it never adds a local address to
/// `AllowedIPs`, so `doctor` never asks for one. The end-to-end test
/// `doctor::doctor_and_wireguard_config_agree_on_every_address` runs both commands on the
/// same addresses and compares their verdicts.
pub fn is_local_address(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || v6.is_unicast_link_local(),
    }
}

/// What was found for one address of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressCheck {
    /// One address the endpoint's name resolved to (or one given with `--address`).
    pub address: IpAddr,
    /// A local address ([`is_local_address`]): never routed through the tunnel, and never
    /// something to add to `AllowedIPs`.
    pub local: bool,
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
    /// An address answered TCP but the TLS handshake failed (an untrusted certificate, a
    /// server that does not speak TLS, an alert), and none passed.
    TlsFailed,
    /// No address answered TCP + TLS.
    Unreachable,
    /// Everything checked is in order.
    Ok,
}

/// The whole diagnosis, printed as text or `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// The endpoint as given.
    pub endpoint: String,
    /// Its host name (or address).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// What was found for each address.
    pub addresses: Vec<AddressCheck>,
    /// The tunnel configuration read, when one was given.
    pub tunnel: Option<Tunnel>,
    /// The most serious finding.
    pub verdict: Verdict,
    /// What to do, including the exact line to add when an address is not routed.
    pub advice: Vec<String>,
}

/// `doctor --mode sim`'s look at the SIM: the backend that answered and the IMSI it read (an
/// identifier; never a key), or the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimCheck {
    /// What the backend talks to (`software SIM /path`, `modem /dev/ttyUSB2`, ...).
    pub uicc: Option<String>,
    /// The IMSI read (6 to 15 digits).
    pub imsi: Option<String>,
    /// Why the SIM could not be used: the `uicc-error` case (`unavailable`, `no-sim`, `io`,
    /// `status-word`, `mac-failure`) and its text.
    pub error: Option<SimCheckError>,
}

/// A failed [`SimCheck`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimCheckError {
    /// The `uicc-error` case.
    pub kind: &'static str,
    /// What went wrong, naming the device; no secret.
    pub message: String,
}

/// Open the backend of `uicc` and read the IMSI (the first two steps of SIM-authenticated
/// mode, without a Keys API call). Never fails: a failure is in [`SimCheck::error`].
pub async fn check_sim(uicc: &krypton_host::capability::uicc::UiccAccess) -> SimCheck {
    use krypton_uicc::UiccError;
    let kind = |e: &UiccError| match e {
        UiccError::Unavailable(_) => "unavailable",
        UiccError::NoSim(_) => "no-sim",
        UiccError::Io { .. } => "io",
        UiccError::Status { .. } => "status-word",
        UiccError::MacFailure => "mac-failure",
    };
    let failed = |device: Option<String>, e: UiccError| SimCheck {
        uicc: device,
        imsi: None,
        error: Some(SimCheckError {
            kind: kind(&e),
            message: e.to_string(),
        }),
    };
    let device = match uicc.describe().await {
        Ok(device) => device,
        Err(e) => return failed(None, e),
    };
    match uicc.read_imsi().await {
        Ok(imsi) => SimCheck {
            uicc: Some(device),
            imsi: Some(imsi.to_string()),
            error: None,
        },
        Err(e) => failed(Some(device), e),
    }
}

/// What TCP then TLS to one address found.
enum Reach {
    Ok,
    Skipped,
    /// TCP failed, in plain words.
    Tcp(String),
    /// TCP worked, TLS failed.
    Tls(HandshakeFailure),
}

impl Reach {
    /// The `reachability` text: `ok`, `skipped`, `tcp: …` or `tls: …`.
    fn text(&self) -> String {
        match self {
            Reach::Ok => "ok".into(),
            Reach::Skipped => "skipped".into(),
            Reach::Tcp(m) => format!("tcp: {m}"),
            Reach::Tls(HandshakeFailure::Untrusted(why)) => {
                format!("tls: certificate not trusted ({why})")
            }
            Reach::Tls(HandshakeFailure::NotTls) => "tls: the server does not speak TLS".into(),
            Reach::Tls(HandshakeFailure::Other(m)) => format!("tls: {m}"),
        }
    }
}

/// TCP then (for `https`) TLS to `ip:port` with `timeout` each.
async fn reach(
    ip: IpAddr,
    port: u16,
    server_name: &str,
    policy: &OutboundPolicy,
    tls: bool,
    timeout: Duration,
) -> Reach {
    let addr = std::net::SocketAddr::new(ip, port);
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Reach::Tcp("connection refused".into());
        }
        Ok(Err(e)) => return Reach::Tcp(e.to_string()),
        Err(_) => return Reach::Tcp(format!("no answer within {} ms", timeout.as_millis())),
    };
    if !tls {
        // A plain `http://` endpoint (a test server): TCP is all there is to check.
        return Reach::Ok;
    }
    match policy.tls_handshake(tcp, server_name, timeout).await {
        Ok(()) => Reach::Ok,
        Err(e) => Reach::Tls(e),
    }
}

/// What the component says that `doctor`'s advice repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentWords {
    /// Krypton's network-mode base URL (the component's `default-endpoints()`), named in the
    /// advice for a wrong port; `None` when no component was loaded.
    pub krypton_url: Option<String>,
}

/// Run the checks. `addresses` replaces DNS resolution when not empty; `connect` false skips
/// the TCP/TLS attempts. `route_fix` words the change for a tunnel whose [`Tunnel::fix`] is
/// `None` (soratun's: the component's `soratun-route-fix`), given the [`host_routes`] to add.
/// Errors: a bad endpoint or CA, or `route_fix`'s error.
// The arguments are the command's options; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn diagnose(
    endpoint: &str,
    tunnel: Option<Tunnel>,
    addresses: Vec<IpAddr>,
    ca_pem: Option<&[u8]>,
    connect: bool,
    timeout: Duration,
    words: &ComponentWords,
    route_fix: impl AsyncFnOnce(Vec<String>) -> anyhow::Result<String>,
) -> anyhow::Result<Diagnosis> {
    // The same check as every command's endpoint (no path, no user information).
    let origin = krypton_host::capability::http::Origin::parse(endpoint)?;
    let (host, port) = (origin.host.clone(), origin.port);
    let explicit_port = endpoint
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.port_u16())
        .is_some();
    let mut advice = Vec::new();
    // Krypton's URL and port as the component names them, for the advice on a wrong port.
    let krypton = words.krypton_url.as_deref().and_then(|url| {
        krypton_host::capability::http::Origin::parse(url)
            .ok()
            .map(|o| (url.to_string(), o.port))
    });
    let resolved: Vec<IpAddr> = if !addresses.is_empty() {
        addresses
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        vec![ip]
    } else {
        // The resolver the Krypton call uses, so that a name that does not exist is told
        // apart from a resolver that failed, as in the call's error.
        match tokio::time::timeout(timeout, krypton_host::capability::http::lookup(&host, port))
            .await
        {
            Ok(Ok(addrs)) => {
                let mut ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
                ips.dedup();
                ips
            }
            Ok(Err(wasmtime_wasi_http::Error::DnsError { rcode: Some(r), .. }))
                if r == krypton_host::capability::http::DNS_NAME_NOT_FOUND =>
            {
                advice.push(format!(
                    "the name {host} does not exist (DNS: no such name): check the spelling of \
                     the endpoint's host, or pass --address IP"
                ));
                Vec::new()
            }
            Ok(Err(e)) => {
                advice.push(format!(
                    "{host} could not be looked up ({e}). Check DNS over the SORACOM session, or \
                     pass --address IP."
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
    let tls = origin.scheme == "https";
    let policy = OutboundPolicy::new(vec![origin], ca_pem)?;
    let mut checks = Vec::new();
    let mut tls_failures = Vec::new();
    for ip in &resolved {
        let routed = tunnel.as_ref().map(|t| t.routes(*ip));
        let outcome = if connect {
            reach(*ip, port, &host, &policy, tls, timeout).await
        } else {
            Reach::Skipped
        };
        if let Reach::Tls(e) = &outcome {
            tls_failures.push(e.clone());
        }
        checks.push(AddressCheck {
            address: *ip,
            local: is_local_address(*ip),
            routed_through_tunnel: routed,
            reachability: outcome.text(),
        });
    }
    // Local addresses are never routed through the tunnel, by design: nothing to add.
    let missing: Vec<IpAddr> = checks
        .iter()
        .filter(|c| c.routed_through_tunnel == Some(false) && !c.local)
        .map(|c| c.address)
        .collect();
    // "54.250.252.99 (an address of krypton.example)"; an IP endpoint is named once.
    let named = |ips: &[IpAddr]| {
        let list = ips
            .iter()
            .map(|ip| ip.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if host.parse::<IpAddr>().is_ok() {
            list
        } else if ips.len() == 1 {
            format!("{list} (an address of {host})")
        } else {
            format!("{list} (addresses of {host})")
        }
    };
    if let Some(t) = &tunnel {
        let local: Vec<IpAddr> = checks
            .iter()
            .filter(|c| c.local)
            .map(|c| c.address)
            .collect();
        if !local.is_empty() {
            advice.push(format!(
                "{} {} local (loopback or link-local): local addresses never go through the \
                 tunnel, and wireguard-config leaves them out of AllowedIPs too; nothing to add",
                named(&local),
                if local.len() == 1 { "is" } else { "are" }
            ));
        }
        if !missing.is_empty() {
            advice.push(format!(
                "{} {} outside the tunnel's AllowedIPs: the Krypton call would leave outside \
                 SORACOM Arc and time out. Set:",
                named(&missing),
                if missing.len() == 1 { "is" } else { "are" }
            ));
            advice.push(match t.fix(&missing) {
                Some(line) => line,
                None => route_fix(host_routes(&missing)).await?,
            });
        }
        for bad in &t.bad_entries {
            advice.push(format!(
                "AllowedIPs entry `{}` at {}: {}",
                bad.entry, bad.location, bad.reason
            ));
        }
    }
    let answered = checks.iter().any(|c| c.reachability == "ok");
    let verdict = if !missing.is_empty() {
        Verdict::NotRouted
    } else if resolved.is_empty() {
        Verdict::DnsFailed
    } else if tunnel.as_ref().is_some_and(|t| !t.bad_entries.is_empty()) {
        Verdict::MalformedConfig
    } else if connect && !answered && !tls_failures.is_empty() {
        let hp = format!("{host}:{port}");
        for failure in &tls_failures {
            let line = match failure {
                HandshakeFailure::Untrusted(why) => format!(
                    "the TLS certificate of {hp} is not trusted ({why}): for a private or test \
                     endpoint (such as `krypton-host mock`), pass its CA with --ca-file"
                ),
                HandshakeFailure::NotTls => match &krypton {
                    Some((url, port)) => format!(
                        "{hp} does not speak TLS: Krypton speaks HTTPS on port {port} \
                         ({url}); check the endpoint's port"
                    ),
                    None => format!("{hp} does not speak TLS: check the endpoint's port"),
                },
                HandshakeFailure::Other(m) => format!("the TLS handshake with {hp} failed: {m}"),
            };
            if !advice.contains(&line) {
                advice.push(line);
            }
        }
        Verdict::TlsFailed
    } else if connect && !answered {
        let all_refused = !checks.is_empty()
            && checks
                .iter()
                .all(|c| c.reachability == "tcp: connection refused");
        if all_refused {
            advice.push(format!(
                "{host}:{port} refused the connection: nothing listens on port {port} there"
            ));
            if !explicit_port {
                advice.push(match &krypton {
                    Some((url, krypton_port)) => format!(
                        "the endpoint has no port, so {port} was tried: Krypton listens on \
                         {krypton_port}, e.g. {url}"
                    ),
                    None => format!("the endpoint has no port, so {port} was tried"),
                });
            }
        } else {
            advice.push(format!(
                "no address of {host}:{port} answered; on SORACOM Air check the cellular route, on Arc the tunnel"
            ));
        }
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

/// Read a tunnel configuration file of either kind as text: a regular UTF-8 file of at most
/// [`krypton_host::files::MAX_TUNNEL_CONFIG_BYTES`] bytes (a FIFO, device or directory is refused at
/// once, see [`krypton_host::files::read_user_file`]). Errors name the option.
pub fn read_tunnel_text(path: &Path, source: TunnelSource) -> anyhow::Result<String> {
    let what = match source {
        TunnelSource::Wireguard => "wg-quick configuration (--wireguard)",
        TunnelSource::Soratun => "soratun configuration (--soratun-config)",
    };
    krypton_host::files::read_user_text(path, krypton_host::files::MAX_TUNNEL_CONFIG_BYTES, what)
}

/// Read a `wg-quick` file ([`read_tunnel_text`], [`Tunnel::from_wireguard`]). Errors name the
/// file and the option.
pub fn read_wireguard(path: &Path) -> anyhow::Result<Tunnel> {
    use anyhow::Context as _;
    let text = read_tunnel_text(path, TunnelSource::Wireguard)?;
    Tunnel::from_wireguard(&text).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests;
