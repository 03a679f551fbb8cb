//! Steps several commands share: load the component and resolve names against its targets,
//! take the store's writer lock, open a store that must hold a target's bundle, find Krypton's
//! addresses.

use super::{HostFailure, component_failure, fail};
use anyhow::Context as _;
use krypton_host::http;
use krypton_host::lifecycle;
use krypton_host::output::exit;
use krypton_host::runtime::{DEFAULT_COMPONENT, KryptonPre, Runtime, TargetInfo};
use krypton_host::store::SecretStore;
use krypton_host::targets::Targets;
use std::path::Path;
use std::time::Instant;

/// Read (`path`) or take the built-in component and compile and link it; exit 3 for an
/// unreadable file, 1 when it does not load. Logs nothing: see [`Loaded::log_loaded`].
fn load_component(runtime: &Runtime, path: Option<&Path>) -> Result<Compiled, HostFailure> {
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
    Ok(Compiled {
        pre,
        origin,
        bytes: bytes.len(),
        ms: started.elapsed().as_millis() as u64,
    })
}

/// A compiled component and where it came from, for the log line.
struct Compiled {
    pre: KryptonPre,
    origin: String,
    bytes: usize,
    ms: u64,
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

/// A runtime with a loaded component and the component's targets.
pub struct Loaded {
    pub runtime: Runtime,
    pub pre: KryptonPre,
    pub targets: Targets,
    /// Where the component came from (`built-in` or its path), its size in bytes, and the
    /// time it took to load, ms.
    origin: (String, usize, u64),
}

/// Load the component (`path`, else the built-in one) into `runtime` and ask it for its
/// targets. Exit 3 for an unreadable file, 1 when it does not load or its `targets()` fails.
/// The caller logs the load with [`Loaded::log_loaded`].
pub async fn load(runtime: Runtime, path: Option<&Path>) -> Result<Loaded, HostFailure> {
    let Compiled {
        pre,
        origin,
        bytes,
        ms,
    } = load_component(&runtime, path)?;
    let targets = lifecycle::list_targets(&runtime, &pre)
        .await
        .map_err(fail(exit::INTERNAL))?;
    Ok(Loaded {
        runtime,
        pre,
        targets,
        origin: (origin, bytes, ms),
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
