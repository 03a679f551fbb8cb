//! Steps several commands share: load the component, take the store's writer lock, open a
//! store that must hold a target's bundle, find Krypton's addresses.

use super::{HostFailure, component_failure, fail};
use anyhow::Context as _;
use krypton_host::http;
use krypton_host::output::{self, exit};
use krypton_host::runtime::{DEFAULT_COMPONENT, KryptonPre, Runtime, Target};
use krypton_host::store::SecretStore;
use std::path::Path;
use std::time::Instant;

pub fn load_component(runtime: &Runtime, path: Option<&Path>) -> Result<KryptonPre, HostFailure> {
    let started = Instant::now();
    let (bytes, origin) = match path {
        Some(p) => (
            krypton_host::files::read_user_file(
                p,
                krypton_host::files::MAX_COMPONENT_BYTES,
                "component",
            )
            .map_err(fail(exit::INVALID_REQUEST))?,
            p.display().to_string(),
        ),
        None => (DEFAULT_COMPONENT.to_vec(), "built-in".to_string()),
    };
    let pre = runtime
        .load(&bytes)
        .with_context(|| format!("loading component ({origin})"))
        .map_err(fail(exit::INTERNAL))?;
    tracing::info!(
        component = %origin,
        bytes = bytes.len(),
        ms = started.elapsed().as_millis() as u64,
        "component loaded"
    );
    Ok(pre)
}

/// Take the store's writer lock, waiting up to `wait`; exit 9 with the holder's pid otherwise.
pub async fn lock_store(
    store: &SecretStore,
    wait: std::time::Duration,
) -> Result<krypton_host::store::StoreLock, HostFailure> {
    let store = store.clone();
    let dir = store.dir().to_path_buf();
    match tokio::task::spawn_blocking(move || store.lock(wait)).await {
        Ok(Ok(lock)) => Ok(lock),
        Ok(Err(krypton_host::files::LockError::Busy { holder, .. })) => {
            Err(fail(exit::STORAGE)(anyhow::anyhow!(
                "the store {} is in use by {} (another `krypton-host provision`, or the daemon's pass); \
                 waited {} s: try again when it has finished, or raise --lock-wait-secs",
                dir.display(),
                holder
                    .map(|p| format!("process {p}"))
                    .unwrap_or_else(|| "another process".into()),
                wait.as_secs()
            )))
        }
        Ok(Err(e)) => Err(fail(exit::STORAGE)(e.into())),
        Err(e) => Err(fail(exit::INTERNAL)(e.into())),
    }
}

/// Krypton's addresses for a wg-quick file: the given ones, else the endpoint's host resolved.
pub async fn krypton_addresses(
    given: &[String],
    endpoint: &str,
) -> Result<Vec<String>, HostFailure> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    // The same check as every other command's endpoint (no path, no user information).
    let origin = http::Origin::parse(endpoint)
        .context("--endpoint")
        .map_err(fail(exit::INVALID_REQUEST))?;
    let (host, port) = (origin.host, origin.port);
    let resolved: Vec<String> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| {
            format!("resolving {host} (or pass --krypton-address IP for each of its addresses)")
        })
        .map_err(fail(exit::TRANSPORT))?
        .map(|addr| addr.ip().to_string())
        .collect();
    tracing::info!(%host, addresses = ?resolved, "resolved Krypton's addresses");
    Ok(resolved)
}

/// The runtime, component and store for a command that needs `target`'s bundle; exit 11 with
/// what to run first when there is none. Never creates the store.
pub async fn open_with_bundle(
    store_dir: &Path,
    component: Option<&Path>,
    target: Target,
) -> Result<(Runtime, KryptonPre, SecretStore), HostFailure> {
    let name = output::target_name(target);
    if !store_dir.exists() {
        return Err(fail(exit::NOT_PROVISIONED)(anyhow::anyhow!(
            "no store at {}: run `krypton-host provision {name}` first",
            store_dir.display()
        )));
    }
    let store = SecretStore::open(store_dir)
        .map_err(anyhow::Error::from)
        .map_err(fail(exit::STORAGE))?;
    let runtime = Runtime::new().map_err(fail(exit::INTERNAL))?;
    let pre = load_component(&runtime, component)?;
    match runtime
        .status(&pre, store.clone(), target)
        .await
        .map_err(fail(exit::INTERNAL))?
    {
        Ok(Some(_)) => Ok((runtime, pre, store)),
        Ok(None) => Err(fail(exit::NOT_PROVISIONED)(anyhow::anyhow!(
            "no `{name}` bundle is stored: run `krypton-host provision {name}` first"
        ))),
        Err(e) => Err(component_failure(e)),
    }
}
