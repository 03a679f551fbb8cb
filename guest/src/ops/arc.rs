//! SORACOM Arc (target `arc`): P10 the WireGuard bootstrap. One POST; the answer is parsed
//! here. The `wg-quick` rendering of the bundle is an export format
//! (`crate::formats::wireguard`). Also Arc's client configuration (soratun's `arc.json`) as a
//! host's route check reads it: [`soratun_routes`] and [`soratun_route_fix`].

use super::common::{Prepared, checked_str};
use crate::types::bundle::{ArcBundle, Bundle, FORMAT_VERSION};
use crate::types::identifiers as id;
use crate::types::json::{json_object, json_type, required_str};
use crate::types::model::{AuthMode, Error, RouteEntry, Secret};
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

/// The two route lists of soratun's `arc.json` (soratun, `soracom/soratun`: the Arc session
/// SORACOM sent, `arcSessionStatus.arcAllowedIPs`, and the operator's own
/// `additionalAllowedIPs`), as a JSON pointer and the name shown for an entry's location.
const SORATUN_ROUTE_LISTS: [(&str, &str); 2] = [
    (
        "/arcSessionStatus/arcAllowedIPs",
        "arcSessionStatus.arcAllowedIPs",
    ),
    ("/additionalAllowedIPs", "additionalAllowedIPs"),
];

/// Every entry of soratun's two route lists (WIT `soratun-routes`), in file order: a string
/// trimmed for the host to check as a CIDR, any other value as its JSON text with the problem
/// `not a string`. Errors: [`Error::InvalidRequest`] when `text` is not JSON or holds neither
/// list as an array.
pub fn soratun_routes(text: &str) -> Result<Vec<RouteEntry>, Error> {
    let json: Value =
        serde_json::from_str(text).map_err(|e| Error::InvalidRequest(format!("not JSON: {e}")))?;
    let mut entries = Vec::new();
    let mut seen = false;
    for (pointer, name) in SORATUN_ROUTE_LISTS {
        let Some(list) = json.pointer(pointer).and_then(Value::as_array) else {
            continue;
        };
        seen = true;
        for (i, item) in list.iter().enumerate() {
            let location = format!("{name}[{i}]");
            entries.push(match item.as_str() {
                Some(s) => RouteEntry {
                    location,
                    entry: s.trim().to_string(),
                    problem: None,
                },
                None => RouteEntry {
                    location,
                    entry: item.to_string(),
                    problem: Some("not a string".into()),
                },
            });
        }
    }
    if !seen {
        return Err(Error::InvalidRequest(format!(
            "neither `{}` nor `{}` is present",
            SORATUN_ROUTE_LISTS[0].1, SORATUN_ROUTE_LISTS[1].1
        )));
    }
    Ok(entries)
}

/// The change to soratun's configuration that routes `routes` (CIDRs) through the tunnel
/// (WIT `soratun-route-fix`): the `additionalAllowedIPs` line of `arc.json`, or soratun's flag.
pub fn soratun_route_fix(routes: &[String]) -> String {
    let quoted: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "\"additionalAllowedIPs\": [{}]   (or: soratun ... --additional-allowed-ips {})",
        quoted.join(", "),
        routes.join(",")
    )
}
