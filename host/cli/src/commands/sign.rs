//! `krypton-host keygen` and `krypton-host sign`: make an ed25519 key pair, and sign a
//! component file so that a daemon with `trusted_public_key` accepts it (the payload and the
//! `.sig` format are in `krypton_host::signing`).

use super::{HostFailure, fail};
use crate::output::exit;
use anyhow::Context as _;
use clap::Args;
#[cfg(feature = "jit")]
use krypton_host::component::MAX_COMPONENT_BYTES;
#[cfg(feature = "jit")]
use krypton_host::engine::Runtime;
use krypton_host::files;
use krypton_host::signing;
use serde_json::json;
use std::path::PathBuf;

/// `keygen` arguments.
#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600). Refused if it exists.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `sign` arguments.
#[cfg(feature = "jit")]
#[derive(Args)]
pub struct SignArgs {
    /// The component file to sign (a `.wasm` component).
    pub component: PathBuf,
    /// The ed25519 private key: PKCS#8 PEM (from `keygen` or `openssl genpkey -algorithm
    /// ed25519`), or the 32-byte seed as base64 or hex.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The version to sign. Default: the version the component itself reports (it is loaded
    /// and asked, in the sandbox). When given, it must equal what the component reports.
    #[arg(long = "component-version", value_name = "SEMVER")]
    pub version: Option<String>,
    /// Where to write the signature. Default: `<component>.sig`, where the daemon looks.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Make a key pair: the private key to `--out` (0600, never overwritten), the public key on
/// stdout in the form `trusted_public_key` takes. Errors: the file exists (exit 3) or cannot
/// be written (exit 9).
pub fn keygen(args: KeygenArgs) -> Result<(), HostFailure> {
    if std::fs::symlink_metadata(&args.out).is_ok() {
        return Err(fail(exit::INVALID_REQUEST)(anyhow::anyhow!(
            "{} exists; choose another path (a signing key is never overwritten)",
            args.out.display()
        )));
    }
    let (pem, public) = signing::generate_key_pem().map_err(fail(exit::INTERNAL))?;
    files::write_private_file(&args.out, pem.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", args.out.display()))
        .map_err(fail(exit::STORAGE))?;
    if args.json {
        println!(
            "{}",
            json!({"ok": true, "privateKeyFile": args.out, "publicKey": public})
        );
    } else {
        println!("{public}");
        eprintln!(
            "wrote the private key to {} (mode 0600); put the line above in gateway.toml as \
             trusted_public_key = \"{public}\"",
            args.out.display()
        );
    }
    Ok(())
}

/// Sign a component: checks that it loads and reports the version being signed, then writes
/// the `.sig`. Errors (exit 3): unreadable or oversized files, a bad key, a component that does
/// not load or reports another version; the `.sig` cannot be written (exit 9).
#[cfg(feature = "jit")]
pub async fn sign(args: SignArgs) -> Result<(), HostFailure> {
    let invalid = fail(exit::INVALID_REQUEST);
    let bytes = files::read_user_file(&args.component, MAX_COMPONENT_BYTES, "the component")
        .map_err(invalid)?;
    let key_text = files::read_user_file(&args.key, signing::MAX_KEY_FILE_BYTES, "the key")
        .map_err(invalid)?;
    let key = signing::parse_signing_key(&String::from_utf8_lossy(&key_text))
        .with_context(|| format!("reading the key {}", args.key.display()))
        .map_err(invalid)?;
    let runtime = Runtime::new().map_err(fail(exit::INTERNAL))?;
    let pre = runtime
        .load(&bytes)
        .with_context(|| format!("loading {}", args.component.display()))
        .map_err(invalid)?;
    let (reported, _contract) = runtime.version(&pre).await.map_err(invalid)?;
    let version = match args.version {
        Some(v) if v != reported => {
            return Err(invalid(anyhow::anyhow!(
                "the component reports version `{}`, not `{v}`: a daemon would refuse this signature",
                reported.escape_debug()
            )));
        }
        Some(v) => v,
        None => reported,
    };
    let text = signing::sign(&key, &bytes, &version).map_err(invalid)?;
    let out = args
        .out
        .unwrap_or_else(|| signing::signature_path(&args.component));
    // Not secret: readable by the daemon's user.
    files::write_private_file(&out, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", out.display()))
        .map_err(fail(exit::STORAGE))?;
    let digest = signing::digest_hex(&bytes);
    if args.json {
        println!(
            "{}",
            json!({"ok": true, "signature": out, "sha256": digest, "version": version})
        );
    } else {
        println!(
            "signed {} (sha256 {digest}, version {version}) -> {}",
            args.component.display(),
            out.display()
        );
    }
    Ok(())
}
