//! `krypton-host doctor`: check the route to Krypton (see `krypton_host::doctor`).

use super::print::print_json;
use super::shared::{Loaded, load_default, usage_error};
use super::sim::UiccArgs;
use super::{HostFailure, component_failure, fail, reported};
use clap::Args;
use krypton_host::UiccAccess;
use krypton_host::output::{self, exit};
use krypton_host::runtime::{AuthMode, ProvisionError};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Examples shown by `doctor --help`.
pub const EXAMPLES: &str = "Examples:
  krypton-host doctor --wireguard /etc/wireguard/arc0.conf
  krypton-host doctor --mode sim --uicc modem --port /dev/ttyUSB2
  krypton-host doctor --mode sim --uicc soft --sim-file sim.json --coverage japan --json";

/// `doctor` arguments.
#[derive(Args)]
pub struct DoctorArgs {
    /// Endpoint to check. Default: the component's for the mode (in SIM mode for --coverage),
    /// e.g. https://krypton.soracom.io:8036 in network mode.
    #[arg(long, env = "KRYPTON_ENDPOINT")]
    pub endpoint: Option<String>,
    /// `network` (the route to Krypton) or `sim` (also the SIM: the --uicc backend answers and
    /// the IMSI reads; then the Keys API's host resolves and answers TLS).
    #[arg(long, default_value = "network", value_parser = ["network", "sim"])]
    pub mode: String,
    /// SIM mode's coverage when --endpoint is not given: one the component names (its first
    /// is the default).
    // Checked against the component's `default-endpoints()`; `--help` lists them.
    #[arg(long)]
    pub coverage: Option<String>,
    #[command(flatten)]
    pub uicc: UiccArgs,
    /// A wg-quick configuration whose [Peer] AllowedIPs must route Krypton.
    #[arg(long, conflicts_with = "soratun_config")]
    pub wireguard: Option<PathBuf>,
    /// A soratun arc.json (its routes are read by the component).
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
    /// Provisioning component (a .wasm, or a precompiled .cwasm with its .sig beside it) that
    /// names the default endpoints and reads --soratun-config. Defaults to the one built into
    /// this binary (the gateway build has none: then --endpoint is needed, and --wireguard
    /// instead of --soratun-config).
    #[arg(long, env = "KRYPTON_COMPONENT")]
    pub component: Option<PathBuf>,
    /// The ed25519 public key (base64 or hex) a precompiled component's signature must verify
    /// with; a .cwasm never loads without it.
    #[arg(long, env = "KRYPTON_TRUSTED_PUBLIC_KEY", value_name = "KEY")]
    pub trusted_public_key: Option<String>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The component, when there is one (this build's or --component) or it is needed (no
/// --endpoint, or --soratun-config): it names the default endpoint, reads soratun's file and
/// words the advice that repeats Krypton's facts.
async fn component_for(args: &DoctorArgs) -> Result<Option<Loaded>, HostFailure> {
    let needed = args.endpoint.is_none() || args.soratun_config.is_some();
    if !(needed || args.component.is_some() || cfg!(feature = "jit")) {
        return Ok(None);
    }
    let loaded = load_default(
        args.component.as_deref(),
        args.trusted_public_key.as_deref(),
    )
    .await?;
    loaded.log_loaded();
    Ok(Some(loaded))
}

/// The tunnel of `--wireguard` (read here) or `--soratun-config` (read by the component).
/// Errors (exit 3): an unreadable file, or one that is not such a configuration.
async fn tunnel_for(
    args: &DoctorArgs,
    loaded: Option<&Loaded>,
) -> Result<Option<krypton_host::doctor::Tunnel>, HostFailure> {
    use krypton_host::doctor::{self, Tunnel, TunnelSource};
    let (path, loaded) = match (&args.wireguard, &args.soratun_config, loaded) {
        (Some(p), _, _) => {
            return doctor::read_wireguard(p)
                .map(Some)
                .map_err(fail(exit::INVALID_REQUEST));
        }
        (None, Some(p), Some(loaded)) => (p, loaded),
        _ => return Ok(None),
    };
    let text = doctor::read_tunnel_text(path, TunnelSource::Soratun)
        .map_err(fail(exit::INVALID_REQUEST))?;
    match loaded
        .runtime
        .soratun_routes(&loaded.pre, &text)
        .await
        .map_err(fail(exit::INTERNAL))?
    {
        Ok(entries) => Ok(Some(Tunnel::from_entries(TunnelSource::Soratun, entries))),
        Err(failure) => match &failure.error {
            ProvisionError::InvalidRequest(why) => Err(fail(exit::INVALID_REQUEST)(
                anyhow::anyhow!("{}: {}", path.display(), output::printable(why)),
            )),
            _ => Err(component_failure(failure)),
        },
    }
}

/// Diagnose the route to Krypton (and in SIM mode the SIM first) and print the verdict and
/// advice. Exit code by verdict: 0 ok, 12 not routed, 3 malformed configuration, 4 DNS, TLS or
/// connection failure, 13 the SIM cannot be used (SIM mode).
pub async fn doctor(args: DoctorArgs) -> Result<(), HostFailure> {
    use krypton_host::doctor::{self, Verdict};
    let mode = if args.mode == "sim" {
        AuthMode::Sim
    } else {
        AuthMode::Network
    };
    if mode == AuthMode::Network && (args.uicc.any_given() || args.coverage.is_some()) {
        return Err(fail(exit::USAGE)(anyhow::anyhow!(
            "--uicc, --sim-file, --port, --baud, --uicc-timeout-ms and --coverage check SIM-authenticated mode; add --mode sim"
        )));
    }
    let loaded = component_for(&args).await?;
    let endpoint = match (&loaded, &args.endpoint) {
        (Some(loaded), explicit) => loaded
            .facts
            .endpoint_for(mode, args.coverage.as_deref(), explicit.as_deref())
            .map_err(|e| {
                usage_error(&format!(
                    "invalid value '{}' for '--coverage <COVERAGE>': {e}",
                    args.coverage.as_deref().unwrap_or_default()
                ))
            })?,
        (None, Some(explicit)) => explicit.clone(),
        (None, None) => unreachable!("a component is loaded when no --endpoint is given"),
    };
    let words = doctor::ComponentWords {
        krypton_url: loaded.as_ref().and_then(|l| {
            l.facts
                .endpoint(AuthMode::Network, None)
                .ok()
                .map(str::to_string)
        }),
    };
    let sim = match mode {
        AuthMode::Sim => {
            let access = UiccAccess::new(args.uicc.to_config()?);
            Some(doctor::check_sim(&access).await)
        }
        AuthMode::Network => None,
    };
    let tunnel = tunnel_for(&args, loaded.as_ref()).await?;
    let ca = match &args.ca_file {
        Some(p) => Some(
            krypton_host::files::read_user_file(p, krypton_host::files::MAX_CA_BYTES, "CA file")
                .map_err(fail(exit::INVALID_REQUEST))?,
        ),
        None => None,
    };
    // soratun's change is the component's to word (loaded: it read the file).
    let route_fix = async |routes: Vec<String>| match &loaded {
        Some(l) => l
            .runtime
            .soratun_route_fix(&l.pre, &routes)
            .await
            .map(|line| output::printable(&line)),
        None => anyhow::bail!("no component to word the change"),
    };
    let diagnosis = doctor::diagnose(
        &endpoint,
        tunnel,
        args.addresses.clone(),
        ca.as_deref(),
        !args.no_connect,
        std::time::Duration::from_millis(args.timeout_ms),
        &words,
        route_fix,
    )
    .await
    .map_err(fail(exit::INVALID_REQUEST))?;
    let sim_error = sim.as_ref().and_then(|s| s.error.clone());
    let code = match diagnosis.verdict {
        _ if sim_error.is_some() => exit::SIM,
        Verdict::Ok => exit::OK,
        Verdict::NotRouted => exit::NOT_ROUTED,
        Verdict::MalformedConfig => exit::INVALID_REQUEST,
        Verdict::DnsFailed | Verdict::TlsFailed | Verdict::Unreachable => exit::TRANSPORT,
    };
    if args.json {
        let mut object = serde_json::to_value(&diagnosis).unwrap_or_else(|_| json!({}));
        if let Some(obj) = object.as_object_mut() {
            obj.insert("ok".into(), json!(code == exit::OK));
            if let Some(sim) = &sim {
                obj.insert("mode".into(), json!(output::auth_mode(mode)));
                obj.insert("sim".into(), json!(sim));
            }
            if let Some(e) = &sim_error {
                obj.insert("exitCode".into(), json!(code));
                let mut error = output::failure_json(code, &e.message)["error"].clone();
                error["uiccError"] = json!(e.kind);
                obj.insert("error".into(), error);
            } else if code != exit::OK {
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
        if let Some(sim) = &sim {
            println!("uicc       {}", sim.uicc.as_deref().unwrap_or("-"));
            println!("imsi       {}", sim.imsi.as_deref().unwrap_or("-"));
            if let Some(e) = &sim_error {
                println!("sim        {}: {}", e.kind, e.message);
            }
        }
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
        let route = serde_json::to_value(diagnosis.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "?".into());
        // The verdict is the whole check's: a SIM that cannot be used fails it even when the
        // route to Krypton is fine (the route's own verdict stays in brackets).
        if sim_error.is_some() {
            println!("verdict    sim-unusable (route: {route})");
        } else {
            println!("verdict    {route}");
        }
        for line in &diagnosis.advice {
            println!("  {line}");
        }
        if sim_error.is_some() {
            println!(
                "  The SIM cannot be used (the `sim` line above says why): fix what it names, or \
                 choose the backend with --uicc soft --sim-file FILE, --uicc modem --port DEV (see \
                 `krypton-host sim --list-ports`) or --uicc pcsc."
            );
        }
    }
    if code == exit::OK {
        Ok(())
    } else {
        Err(reported(code))
    }
}
