//! `wireguard` (target `arc`): the `wg-quick` file of an Arc bundle, as `wireguard-config`
//! writes it.

use crate::types::bundle::{ArcBundle, Bundle};
use crate::types::model::{Error, ExportFile};
use crate::types::net::{Cidr, is_local_address};
use crate::types::text::wg_quick_value;
use std::net::IpAddr;

/// The format's name in `render-export`.
pub const NAME: &str = "wireguard";

/// soratun's `PersistentKeepalive`, s.
const ARC_KEEPALIVE_SECS: u32 = 60;

/// `arc.conf` (owner-only: it holds the WireGuard private key); see [`wireguard_config`].
/// Errors: see [`wireguard_config`]; [`Error::InvalidRequest`] for another bundle.
pub fn render(
    bundle: &Bundle,
    _directory: &str,
    krypton_addresses: &[String],
) -> Result<Vec<ExportFile>, Error> {
    let Bundle::Arc(b) = bundle else {
        return Err(Error::InvalidRequest(format!(
            "format `{NAME}` does not fit target `{}`",
            bundle.target().name()
        )));
    };
    Ok(vec![ExportFile::new(
        "arc.conf",
        wireguard_config(b, krypton_addresses)?,
        true,
    )])
}

/// A `wg-quick` configuration for an Arc bundle (the mapping soratun uses: address /32,
/// keepalive 60 s). Every address in `krypton_addresses` not already inside `AllowedIPs` is
/// added as a single-host route, so the Krypton call cannot leave outside the tunnel.
///
/// Every value reaches the file through [`wg_quick_value`], which refuses anything that could
/// start a line, a comment or a section; callers check the bundle with
/// [`Bundle::validate`] first, so a value that passes its rule is written as it is.
///
/// Errors: [`Error::InvalidRequest`] when an address is not an IP literal;
/// [`Error::InvalidResponse`] naming the field when a value cannot be written safely.
pub fn wireguard_config(bundle: &ArcBundle, krypton_addresses: &[String]) -> Result<String, Error> {
    for net in &bundle.arc_allowed_ips {
        wg_quick_value("arcAllowedIPs", net)?;
    }
    let mut allowed = bundle.arc_allowed_ips.clone();
    let nets: Vec<Cidr> = allowed.iter().filter_map(|c| Cidr::parse(c)).collect();
    let mut added = Vec::new();
    let mut skipped = Vec::new();
    for text in krypton_addresses {
        let ip: IpAddr = text.trim().parse().map_err(|_| {
            Error::InvalidRequest(format!("Krypton address `{text}` is not an IP address"))
        })?;
        // A local address (a test endpoint) must never be routed into the tunnel.
        if is_local_address(ip) {
            skipped.push(ip.to_string());
            continue;
        }
        if !nets.iter().any(|n| n.contains(ip)) {
            let host_route = if ip.is_ipv4() {
                format!("{ip}/32")
            } else {
                format!("{ip}/128")
            };
            if !allowed.contains(&host_route) {
                allowed.push(host_route.clone());
                added.push(host_route);
            }
        }
    }
    let address_prefix = if bundle.arc_client_peer_ip_address.contains(':') {
        128
    } else {
        32
    };
    let mut out = String::new();
    out.push_str(
        "# SORACOM Arc, from the Krypton `arc` bundle. Contains a private key: keep it 0600.\n",
    );
    if !added.is_empty() {
        out.push_str(&format!(
            "# Added so that calls to Krypton go through the tunnel: {}\n",
            added.join(", ")
        ));
    }
    if !skipped.is_empty() {
        out.push_str(&format!(
            "# Not routed (local addresses): {}\n",
            skipped.join(", ")
        ));
    }
    out.push_str("[Interface]\n");
    out.push_str(&format!(
        "Address = {}/{address_prefix}\n",
        wg_quick_value("arcClientPeerIpAddress", &bundle.arc_client_peer_ip_address)?
    ));
    out.push_str(&format!(
        "PrivateKey = {}\n\n",
        wg_quick_value(
            "arcClientPeerPrivateKey",
            bundle.arc_client_peer_private_key.expose()
        )?
    ));
    out.push_str("[Peer]\n");
    out.push_str(&format!(
        "PublicKey = {}\n",
        wg_quick_value("arcServerPeerPublicKey", &bundle.arc_server_peer_public_key)?
    ));
    out.push_str(&format!(
        "Endpoint = {}\n",
        wg_quick_value("arcServerEndpoint", &bundle.arc_server_endpoint)?
    ));
    out.push_str(&format!("AllowedIPs = {}\n", allowed.join(", ")));
    out.push_str(&format!("PersistentKeepalive = {ARC_KEEPALIVE_SECS}\n"));
    Ok(out)
}
