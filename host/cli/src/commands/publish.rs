//! `krypton-host publish COMPONENT --to REGISTRY/REPO:TAG`: push a component to an OCI registry
//! in the Wasm OCI artifact layout, with its signature as a referrer (see
//! `crate::registry`).

use super::{HostFailure, fail};
use crate::output::exit;
use crate::registry::{Auth, Registry, RegistryError, Settings, Source};
use anyhow::Context as _;
use clap::Args;
use krypton_host::component::MAX_COMPONENT_BYTES;
use krypton_host::engine::Runtime;
use krypton_host::files;
use krypton_host::signing;
use serde_json::json;
use std::path::PathBuf;

/// `publish` arguments.
#[derive(Args)]
pub struct PublishArgs {
    /// The component file (a `.wasm` component).
    pub component: PathBuf,
    /// Where to push: `HOST[:PORT]/REPO:TAG` (an `oci://` prefix is accepted).
    #[arg(long, value_name = "REGISTRY/REPO:TAG")]
    pub to: String,
    /// Sign with this ed25519 key (PKCS#8 PEM from `keygen`, or a 32-byte seed as base64 or
    /// hex). Without it, `COMPONENT.sig` is attached when present; without either the
    /// component is pushed unsigned (daemons with `trusted_public_key` refuse it).
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Plain HTTP: only to a registry on this machine (localhost, 127.0.0.1, ::1).
    #[arg(long)]
    pub insecure: bool,
    /// Extra CA certificates (PEM) for the registry, besides the system's roots.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Basic authentication: the user name (with --password-file).
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,
    /// Basic authentication: a file holding the password.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Bearer authentication: a file holding the token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Exit code of a registry error: 4 unreachable, 6 an error status (401/403: credentials),
/// 7 a refused answer, 3 a setting.
fn registry_failure(e: RegistryError) -> HostFailure {
    let code = match &e {
        RegistryError::Unreachable(_) => exit::TRANSPORT,
        RegistryError::Status { .. } | RegistryError::NotFound(_) => exit::HTTP_STATUS,
        RegistryError::Invalid(_) => exit::INVALID_RESPONSE,
        RegistryError::Config(_) => exit::INVALID_REQUEST,
    };
    let advice = match &e {
        RegistryError::Unreachable(_) => {
            "; is the registry running and reachable (a registry on this machine without TLS needs --insecure)?"
        }
        RegistryError::Status {
            status: 401 | 403, ..
        } => "; check --username/--password-file or --token-file",
        _ => "",
    };
    fail(code)(anyhow::anyhow!("{e}{advice}"))
}

/// Push the component, attach its signature, print the manifest digest. Errors: exit 3 for
/// unreadable files, a bad key, a component that does not load or a `.sig` for other bytes;
/// 4 the registry is unreachable; 6 it answered an error status; 7 it answered something
/// refused.
pub async fn publish(args: PublishArgs) -> Result<(), HostFailure> {
    let invalid = fail(exit::INVALID_REQUEST);
    let target = Source::parse(&args.to).map_err(registry_failure)?;
    if target.tag().is_none() {
        return Err(invalid(anyhow::anyhow!(
            "--to needs a tag (REGISTRY/REPO:TAG): daemons follow tags, and promotion re-tags a digest"
        )));
    }
    let bytes = files::read_user_file(&args.component, MAX_COMPONENT_BYTES, "the component")
        .map_err(invalid)?;
    let sig_path = signing::signature_path(&args.component);
    let (signature, version) = match &args.signing_key {
        Some(key_path) => {
            let key_text = files::read_user_file(key_path, signing::MAX_KEY_FILE_BYTES, "the key")
                .map_err(invalid)?;
            let key = signing::parse_signing_key(&String::from_utf8_lossy(&key_text))
                .with_context(|| format!("reading the key {}", key_path.display()))
                .map_err(invalid)?;
            let runtime = Runtime::new().map_err(fail(exit::INTERNAL))?;
            let pre = runtime
                .load(&bytes)
                .with_context(|| format!("loading {}", args.component.display()))
                .map_err(invalid)?;
            let (version, _contract) = runtime.version(&pre).await.map_err(invalid)?;
            let text = signing::sign(&key, &bytes, &version).map_err(invalid)?;
            (Some(text.into_bytes()), Some(version))
        }
        None if std::fs::symlink_metadata(&sig_path).is_ok() => {
            let text = files::read_user_file(
                &sig_path,
                signing::MAX_SIGNATURE_FILE_BYTES,
                "the signature file",
            )
            .map_err(invalid)?;
            let version = crate::registry::signature_version(&text, &bytes)
                .with_context(|| format!("{}", sig_path.display()))
                .map_err(invalid)?;
            (Some(text), Some(version))
        }
        None => {
            tracing::warn!(
                "no --signing-key and no {}: pushing unsigned; daemons with trusted_public_key will refuse it",
                sig_path.display()
            );
            (None, None)
        }
    };
    let auth = Auth::from_files(
        args.username.as_deref(),
        args.password_file.as_deref(),
        args.token_file.as_deref(),
    )
    .map_err(registry_failure)?;
    let settings = Settings {
        insecure: args.insecure,
        ca_file: args.ca_file.clone(),
        auth,
    };
    let registry = Registry::new(&target, &settings).map_err(registry_failure)?;
    // Each request has its own deadline; the whole push has one too.
    let published = tokio::time::timeout(
        crate::registry::PUBLISH_TIMEOUT,
        registry.publish(&target, &bytes, version.as_deref(), signature.as_deref()),
    )
    .await
    .map_err(|_| {
        RegistryError::Unreachable(format!(
            "publishing to {} took longer than {} s",
            target.registry(),
            crate::registry::PUBLISH_TIMEOUT.as_secs()
        ))
    })
    .and_then(|r| r)
    .map_err(registry_failure)?;
    if args.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "reference": target.to_string(),
                "tag": target.tag(),
                "digest": published.digest,
                "layerDigest": published.layer_digest,
                "version": version,
                "signatureDigest": published.signature_digest,
                "referrers": published.referrers,
            })
        );
    } else {
        println!("{}", published.digest);
        match &published.signature_digest {
            Some(sig) => eprintln!(
                "pushed {} ({}) to {target}, signature {sig} ({})",
                args.component.display(),
                version.as_deref().unwrap_or("-"),
                published.referrers.unwrap_or("-")
            ),
            None => eprintln!("pushed {} to {target} UNSIGNED", args.component.display()),
        }
    }
    Ok(())
}
