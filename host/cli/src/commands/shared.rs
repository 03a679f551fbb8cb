//! Steps several commands share: load the component and resolve names against its targets,
//! take the store's writer lock, open a store that must hold a target's bundle, find Krypton's
//! addresses.

use super::{HostFailure, component_failure, fail};
use crate::output::exit;
use anyhow::Context as _;
use krypton_host::bindings::TargetInfo;
use krypton_host::capability::http;
use krypton_host::capability::store::SecretStore;
use krypton_host::component::facts::Facts;
use krypton_host::component::targets::Targets;
use krypton_host::component::{self, ComponentPolicy, LoadErrorKind};
use krypton_host::engine::{KryptonPre, Runtime};
use std::path::Path;
use std::time::Instant;

/// Take the store's writer lock, waiting up to `wait`; exit 9 with the holder's pid otherwise.
pub async fn lock_store(
    store: &SecretStore,
    wait: std::time::Duration,
) -> Result<krypton_host::capability::store::StoreLock, HostFailure> {
    let store = store.clone();
    let dir = store.dir().to_path_buf();
    match tokio::task::spawn_blocking(move || store.lock(wait)).await {
        Ok(Ok(lock)) => Ok(lock),
        Ok(Err(krypton_host::files::LockError::Busy { holder, path })) => {
            Err(fail(exit::STORAGE)(anyhow::anyhow!(
                "the store {} is in use by {} (another `krypton-host provision`, the daemon's pass, \
                 or a `wasmtime run` of krypton-cli.wasm; lock file {}); waited {} s: try again when \
                 it has finished, or raise --lock-wait-secs",
                dir.display(),
                holder
                    .map(|p| format!("process {p}"))
                    .unwrap_or_else(|| "another process".into()),
                path.display(),
                wait.as_secs()
            )))
        }
        Ok(Err(e)) => Err(fail(exit::STORAGE)(e.into())),
        Err(e) => Err(fail(exit::INTERNAL)(e.into())),
    }
}

/// Krypton's addresses for a wg-quick file: the given ones, else the endpoint's host resolved
/// (`endpoint`, else the component's network-mode endpoint: the tunnel carries network mode).
pub async fn krypton_addresses(
    given: &[String],
    endpoint: Option<&str>,
    loaded: &Loaded,
) -> Result<Vec<String>, HostFailure> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let endpoint = match endpoint {
        Some(url) => url,
        None => loaded
            .facts
            .endpoint(krypton_host::bindings::AuthMode::Network, None)
            .map_err(|e| fail(exit::INTERNAL)(e.into()))?,
    };
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

/// A runtime with a loaded component and the component's targets.
pub struct Loaded {
    /// The runtime the component was loaded into.
    pub runtime: Runtime,
    /// The linked component.
    pub pre: KryptonPre,
    /// Its targets, checked.
    pub targets: Targets,
    /// The component's default endpoints and export formats, checked.
    pub facts: Facts,
    /// Where the component came from (`built-in` or its path), its size in bytes, and the
    /// time it took to load, ms.
    origin: (String, usize, u64),
}

/// Load the component (`path`, else the built-in one) into `runtime` through the library's
/// one loader ([`krypton_host::component::load`], the daemon's too), with `trusted_key` (base64
/// or hex) as the key a signature must verify with. Its [`LoadErrorKind`] is the exit code:
/// 2 when there is nothing to load (the gateway build has no built-in component), 3 for a bad
/// key, an unreadable file or a refused signature, artifact or version, 1 when the component
/// does not compile, link or pass its self-check. The caller logs the load with
/// [`Loaded::log_loaded`].
pub async fn load(
    runtime: Runtime,
    path: Option<&Path>,
    trusted_key: Option<&str>,
) -> Result<Loaded, HostFailure> {
    let started = Instant::now();
    let policy = ComponentPolicy {
        trusted_key: trusted_key
            .map(krypton_host::signing::parse_public_key)
            .transpose()
            .context("--trusted-public-key")
            .map_err(fail(exit::INVALID_REQUEST))?,
        floor: None,
    };
    let loaded = component::load(&runtime, path, &policy)
        .await
        .map_err(|e| {
            let code = match e.kind {
                LoadErrorKind::Usage => exit::USAGE,
                LoadErrorKind::Refused => exit::INVALID_REQUEST,
                LoadErrorKind::Failed => exit::INTERNAL,
            };
            fail(code)(e.error)
        })?;
    let origin = path.map_or_else(|| "built-in".to_string(), |p| p.display().to_string());
    Ok(Loaded {
        runtime,
        pre: loaded.pre,
        targets: loaded.targets,
        facts: loaded.facts,
        origin: (origin, loaded.bytes, started.elapsed().as_millis() as u64),
    })
}

/// A command-line value the component refuses, as clap words a usage error (exit 2): `message`
/// is clap's `invalid value 'V' for 'ARG'…` line.
pub fn usage_error(message: &str) -> HostFailure {
    fail(exit::USAGE)(anyhow::anyhow!(
        "{message}\n\nFor more information, try '--help'."
    ))
}

impl Loaded {
    /// Log "component loaded" (info). Commands call it once the names on their command line
    /// are resolved, so that a usage error is clap's text alone, as before any log line.
    pub fn log_loaded(&self) {
        let (origin, bytes, ms) = &self.origin;
        tracing::info!(component = %origin, bytes, ms, "component loaded");
    }

    /// The component's target called `name`, given as the argument `arg` (`<TARGET>` or
    /// `[TARGET]`, as clap names it); a usage error listing the component's names otherwise.
    pub fn target(&self, name: &str, arg: &str) -> Result<TargetInfo, HostFailure> {
        self.targets
            .find(name)
            .cloned()
            .map_err(|e| usage_error(&format!("invalid value '{name}' for '{arg}': {e}")))
    }
}

/// The store for a command that needs `target`'s bundle; exit 11 with what to run first when
/// there is none. Never creates the store.
pub async fn open_with_bundle(
    store_dir: &Path,
    loaded: &Loaded,
    target: &TargetInfo,
) -> Result<SecretStore, HostFailure> {
    let name = &target.name;
    if !store_dir.exists() {
        return Err(fail(exit::NOT_PROVISIONED)(anyhow::anyhow!(
            "no store at {}: run `krypton-host provision {name}` first",
            store_dir.display()
        )));
    }
    let store = SecretStore::open(store_dir)
        .map_err(anyhow::Error::from)
        .map_err(fail(exit::STORAGE))?;
    match loaded
        .runtime
        .status(&loaded.pre, store.clone(), target.target)
        .await
        .map_err(fail(exit::INTERNAL))?
    {
        Ok(Some(_)) => Ok(store),
        Ok(None) => Err(fail(exit::NOT_PROVISIONED)(anyhow::anyhow!(
            "no `{name}` bundle is stored: run `krypton-host provision {name}` first"
        ))),
        Err(e) => Err(component_failure(e)),
    }
}
