//! `krypton-host wireguard-config --out FILE`: a wg-quick file from the stored `arc` bundle.

use super::shared::{krypton_addresses, load_default, open_with_bundle};
use super::{DEFAULT_STORE, HostFailure, component_failure, fail};
use anyhow::Context as _;
use clap::Args;
use krypton_host::output::exit;
use std::path::PathBuf;

/// `wireguard-config` arguments.
#[derive(Args)]
pub struct WireguardArgs {
    /// Secret store directory.
    #[arg(long, env = "KRYPTON_STORE", default_value = DEFAULT_STORE)]
    pub store: PathBuf,
    /// Provisioning component: a .wasm, or a precompiled .cwasm with its .sig beside it.
    /// Defaults to the one built into this binary (the gateway build has none).
    #[arg(long, env = "KRYPTON_COMPONENT")]
    pub component: Option<PathBuf>,
    /// The ed25519 public key (base64 or hex) a precompiled component's signature must verify
    /// with; a .cwasm never loads without it.
    #[arg(long, env = "KRYPTON_TRUSTED_PUBLIC_KEY", value_name = "KEY")]
    pub trusted_public_key: Option<String>,
    /// File to write (mode 0600; it holds the WireGuard private key). `-` writes to stdout.
    #[arg(long)]
    pub out: PathBuf,
    /// Krypton endpoint whose host name is resolved and routed through the tunnel.
    /// Default: the component's network-mode endpoint (e.g. https://krypton.soracom.io:8036).
    #[arg(long, env = "KRYPTON_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Route these addresses instead of resolving the endpoint (repeatable).
    #[arg(long = "krypton-address", value_name = "IP")]
    pub krypton_addresses: Vec<String>,
}

/// The contract's name of the `wg-quick` export format (`render-export`).
const WIREGUARD_FORMAT: &str = "wireguard";

/// Write the wg-quick file for the stored bundle of the target the component exports as
/// `wireguard`. Errors: nothing stored (exit 11), Krypton's name unresolved (exit 4), the file
/// cannot be written (exit 9), the component error's own code.
pub async fn wireguard_config(args: WireguardArgs) -> Result<(), HostFailure> {
    let loaded = load_default(
        args.component.as_deref(),
        args.trusted_public_key.as_deref(),
    )
    .await?;
    loaded.log_loaded();
    // The component's `wireguard-config` renders the bundle of the target it exports as
    // `wireguard` (its `target-info`): that is the bundle that must be stored.
    let target = loaded
        .targets
        .all()
        .iter()
        .find(|t| t.export_formats.iter().any(|f| f == WIREGUARD_FORMAT))
        .cloned()
        .ok_or_else(|| {
            fail(exit::UNSUPPORTED)(anyhow::anyhow!(
                "the component has no target with a `{WIREGUARD_FORMAT}` export"
            ))
        })?;
    // Say "nothing stored" before trying DNS, which fails off the SORACOM network anyway.
    let store = open_with_bundle(&args.store, &loaded, &target).await?;
    let addresses =
        krypton_addresses(&args.krypton_addresses, args.endpoint.as_deref(), &loaded).await?;
    let config = match loaded
        .runtime
        .wireguard_config(&loaded.pre, store, &addresses)
        .await
        .map_err(fail(exit::INTERNAL))?
    {
        Ok(config) => config,
        Err(e) => return Err(component_failure(e)),
    };
    if args.out.as_os_str() == "-" {
        print!("{config}");
        return Ok(());
    }
    krypton_host::files::write_private_file(&args.out, config.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", args.out.display()))
        .map_err(fail(exit::STORAGE))?;
    eprintln!("wrote {} (mode 0600)", args.out.display());
    Ok(())
}
