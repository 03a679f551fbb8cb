//! SORACOM Arc (target `arc`): P10 the WireGuard bootstrap. One POST; the answer is parsed
//! here. The `wg-quick` rendering of the bundle is an export format
//! (`crate::formats::wireguard`).

use super::common::{Prepared, checked_str};
use crate::types::bundle::{ArcBundle, Bundle, FORMAT_VERSION};
use crate::types::identifiers as id;
use crate::types::json::{json_object, json_type, required_str};
use crate::types::model::{AuthMode, Error, Secret};
use serde_json::{Map, Value};

/// P10: the WireGuard bootstrap.
pub const BOOTSTRAP: &str = "/v1/provisioning/soracom/arc/bootstrap";

/// Arc's WireGuard port when `arcServerEndpoint` names none (soratun `arcServerEndpointDefaultPort`).
pub const ARC_DEFAULT_PORT: u16 = 11010;

/// A WireGuard key ([`id::wireguard_key`]).
fn wireguard_key(obj: &Map<String, Value>, field: &str) -> Result<String, Error> {
    checked_str(obj, field, id::wireguard_key).map(str::to_string)
}

/// `host:port` ([`id::split_host_port`]: a DNS name or an IP literal, then a port) with
/// [`ARC_DEFAULT_PORT`] added when there is no port; the host text is kept as given (never
/// replaced by a resolved address).
fn arc_endpoint(obj: &Map<String, Value>) -> Result<String, Error> {
    const FIELD: &str = "arcServerEndpoint";
    let text = required_str(obj, FIELD)?.trim();
    let (host, port) = id::split_host_port(text).map_err(|r| {
        Error::invalid(
            FIELD,
            format!("expected host:port, e.g. xxx.arc.soracom.io:11010: {r}"),
        )
    })?;
    Ok(match port {
        Some(_) => text.to_string(),
        None => format!("{host}:{ARC_DEFAULT_PORT}"),
    })
}

/// The parser of P10's answer (`now`: ms since the epoch): the five fields validated.
/// Errors: [`Error::InvalidResponse`] naming the field.
pub fn parse_bootstrap(_: &Prepared, body: &[u8], now: u64) -> Result<Bundle, Error> {
    let obj = &json_object(body)?;
    let private_key = wireguard_key(obj, "arcClientPeerPrivateKey")?;
    let public_key = wireguard_key(obj, "arcServerPeerPublicKey")?;
    let ip = checked_str(obj, "arcClientPeerIpAddress", id::ip_address)?;
    let allowed = match obj.get("arcAllowedIPs") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_str().map(str::trim) {
                Some(net) if id::cidr(net).is_ok() => Ok(net.to_string()),
                _ => Err(Error::invalid(
                    "arcAllowedIPs",
                    format!("entry {} is not a CIDR such as 100.127.0.0/16", i + 1),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => return Err(Error::invalid("arcAllowedIPs", "empty")),
        None | Some(Value::Null) => return Err(Error::invalid("arcAllowedIPs", "missing")),
        Some(other) => {
            return Err(Error::invalid(
                "arcAllowedIPs",
                format!("expected an array of CIDRs, got {}", json_type(other)),
            ));
        }
    };
    Ok(Bundle::Arc(ArcBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        mode: AuthMode::default(),
        arc_client_peer_private_key: Secret::new(private_key),
        arc_client_peer_ip_address: ip.to_string(),
        arc_server_peer_public_key: public_key,
        arc_server_endpoint: arc_endpoint(obj)?,
        arc_allowed_ips: allowed,
    }))
}
