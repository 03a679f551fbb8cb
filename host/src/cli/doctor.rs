//! `krypton-host doctor`: check the route to Krypton (see `krypton_host::doctor`).

use super::print::print_json;
use super::{DEFAULT_ENDPOINT, HostFailure, fail, reported};
use clap::Args;
use krypton_host::output::{self, exit};
use serde_json::{Value, json};
use std::path::PathBuf;

/// `doctor` arguments.
#[derive(Args)]
pub struct DoctorArgs {
    /// Krypton endpoint to check.
    #[arg(long, env = "KRYPTON_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// A wg-quick configuration whose [Peer] AllowedIPs must route Krypton.
    #[arg(long, conflicts_with = "soratun_config")]
    pub wireguard: Option<PathBuf>,
    /// A soratun arc.json (arcSessionStatus.arcAllowedIPs and additionalAllowedIPs).
    #[arg(long)]
    pub soratun_config: Option<PathBuf>,
    /// Check these addresses instead of resolving the endpoint (repeatable).
    #[arg(long = "address", value_name = "IP")]
    pub addresses: Vec<std::net::IpAddr>,
    /// Extra CA certificates (PEM) for the TLS check.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Skip the TCP and TLS attempts.
    #[arg(long)]
    pub no_connect: bool,
    /// Timeout of each DNS, TCP and TLS step, ms, 1 to 60000.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout_ms: u64,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Diagnose the route to Krypton and print the verdict and advice. Exit code by verdict: 0 ok,
/// 12 not routed, 3 malformed configuration, 4 DNS, TLS or connection failure.
pub async fn doctor(args: DoctorArgs) -> Result<(), HostFailure> {
    use krypton_host::doctor::{self, TunnelSource, Verdict};
    let tunnel = match (&args.wireguard, &args.soratun_config) {
        (Some(p), _) => Some(doctor::read_tunnel(p, TunnelSource::Wireguard)),
        (None, Some(p)) => Some(doctor::read_tunnel(p, TunnelSource::Soratun)),
        (None, None) => None,
    }
    .transpose()
    .map_err(fail(exit::INVALID_REQUEST))?;
    let ca = match &args.ca_file {
        Some(p) => Some(
            krypton_host::files::read_user_file(p, krypton_host::files::MAX_CA_BYTES, "CA file")
                .map_err(fail(exit::INVALID_REQUEST))?,
        ),
        None => None,
    };
    let diagnosis = doctor::diagnose(
        &args.endpoint,
        tunnel,
        args.addresses.clone(),
        ca.as_deref(),
        !args.no_connect,
        std::time::Duration::from_millis(args.timeout_ms),
    )
    .await
    .map_err(fail(exit::INVALID_REQUEST))?;
    let code = match diagnosis.verdict {
        Verdict::Ok => exit::OK,
        Verdict::NotRouted => exit::NOT_ROUTED,
        Verdict::MalformedConfig => exit::INVALID_REQUEST,
        Verdict::DnsFailed | Verdict::TlsFailed | Verdict::Unreachable => exit::TRANSPORT,
    };
    if args.json {
        let mut object = serde_json::to_value(&diagnosis).unwrap_or_else(|_| json!({}));
        if let Some(obj) = object.as_object_mut() {
            obj.insert("ok".into(), json!(code == exit::OK));
            if code != exit::OK {
                let verdict = obj
                    .get("verdict")
                    .and_then(Value::as_str)
                    .unwrap_or("failed");
                let message = format!("verdict {verdict}: {}", diagnosis.advice.join(" "));
                obj.insert("exitCode".into(), json!(code));
                obj.insert(
                    "error".into(),
                    output::failure_json(code, message.trim_end())["error"].clone(),
                );
            }
        }
        print_json(&object);
    } else {
        println!(
            "endpoint   {} ({}:{})",
            diagnosis.endpoint, diagnosis.host, diagnosis.port
        );
        for a in &diagnosis.addresses {
            let routed = match a.routed_through_tunnel {
                _ if a.local => "local address, never routed through the tunnel",
                Some(true) => "routed through the tunnel",
                Some(false) => "NOT routed through the tunnel",
                None => "no tunnel configuration given",
            };
            println!(
                "address    {:<40} {routed}; reachability: {}",
                a.address, a.reachability
            );
        }
        if let Some(t) = &diagnosis.tunnel {
            println!("AllowedIPs {}", t.allowed_ips.join(", "));
        }
        println!(
            "verdict    {}",
            serde_json::to_value(diagnosis.verdict)
                .unwrap_or(Value::Null)
                .as_str()
                .unwrap_or("?")
        );
        for line in &diagnosis.advice {
            println!("  {line}");
        }
    }
    if code == exit::OK {
        Ok(())
    } else {
        Err(reported(code))
    }
}
