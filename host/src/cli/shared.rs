//! Steps several commands share: load the component and resolve names against its targets,
//! take the store's writer lock, open a store that must hold a target's bundle, find Krypton's
//! addresses.

use super::{HostFailure, component_failure, fail};
use anyhow::Context as _;
use krypton_host::facts::Facts;
use krypton_host::http;
use krypton_host::lifecycle;
use krypton_host::output::exit;
use krypton_host::precompiled::ComponentFile;
use krypton_host::runtime::{KryptonPre, Runtime, TargetInfo};
use krypton_host::store::SecretStore;
use krypton_host::targets::Targets;
use std::path::Path;
use std::time::Instant;

/// Read (`path`) or take the built-in component and compile and link it; exit 3 for an
/// unreadable file, 1 when it does not load. A precompiled component (`.cwasm`) loads only
/// when its signature verifies with `trusted_key` (base64 or hex), for this host: exit 3 for a
/// missing or bad key and every refusal of [`krypton_host::precompiled`], 1 when wasmtime or
/// the linker refuses it anyway. The gateway build has no built-in component (exit 2 without
/// `--component`) and refuses a `.wasm` (exit 3). Logs nothing: see [`Loaded::log_loaded`].
fn load_component(
    runtime: &Runtime,
    path: Option<&Path>,
    trusted_key: Option<&str>,
) -> Result<Compiled, HostFailure> {
    let started = Instant::now();
    let Some(p) = path else {
        return load_builtin(runtime, started);
    };
    let origin = p.display().to_string();
    let file = ComponentFile::read(p, "component").map_err(fail(exit::INVALID_REQUEST))?;
    let bytes = file.len() as usize;
    let (pre, signed_version) = match file {
        #[cfg(not(feature = "jit"))]
        ComponentFile::Wasm(bytes) => {
            return Err(fail(exit::INVALID_REQUEST)(anyhow::anyhow!(
                "{origin}: {}",
                krypton_host::precompiled::gateway_refusal(&bytes)
            )));
        }
        #[cfg(feature = "jit")]
        ComponentFile::Wasm(bytes) => (
            runtime
                .load(&bytes)
                .with_context(|| format!("loading component ({origin})"))
                .map_err(fail(exit::INTERNAL))?,
            None,
        ),
        ComponentFile::Precompiled(artifact) => {
            let key = trusted_key
                .map(krypton_host::signing::parse_public_key)
                .transpose()
                .context("--trusted-public-key")
                .map_err(fail(exit::INVALID_REQUEST))?;
            let verified = artifact
                .verify(key.as_ref())
                .map_err(fail(exit::INVALID_REQUEST))?;
            let pre = verified
                .load(runtime)
                .with_context(|| format!("loading component ({origin})"))
                .map_err(fail(exit::INTERNAL))?;
            (pre, Some(verified.facts.version.clone()))
        }
    };
    Ok(Compiled {
        pre,
        origin,
        bytes,
        ms: started.elapsed().as_millis() as u64,
        signed_version,
    })
}

/// The component built into this binary, compiled and linked (exit 1 when it does not load).
#[cfg(feature = "jit")]
fn load_builtin(runtime: &Runtime, started: Instant) -> Result<Compiled, HostFailure> {
    let bytes = krypton_host::runtime::DEFAULT_COMPONENT;
    let pre = runtime
        .load(bytes)
        .context("loading component (built-in)")
        .map_err(fail(exit::INTERNAL))?;
    Ok(Compiled {
        pre,
        origin: "built-in".to_string(),
        bytes: bytes.len(),
        ms: started.elapsed().as_millis() as u64,
        signed_version: None,
    })
}

/// The gateway build has no built-in component: a usage error (exit 2) that says what to give.
#[cfg(not(feature = "jit"))]
fn load_builtin(_runtime: &Runtime, _started: Instant) -> Result<Compiled, HostFailure> {
    Err(fail(exit::USAGE)(anyhow::anyhow!(
        "this gateway build of krypton-host has no built-in component: give --component \
         FILE.cwasm (or KRYPTON_COMPONENT), a component precompiled and signed on a build \
         machine with `krypton-host compile COMPONENT.wasm --target {} --out FILE.cwasm \
         --signing-key KEY`, and --trusted-public-key KEY",
        krypton_host::precompiled::HOST_TARGET
    )))
}

/// A compiled component and where it came from, for the log line.
struct Compiled {
    pre: KryptonPre,
    origin: String,
    bytes: usize,
    ms: u64,
    /// The version a precompiled component's signature names (checked against its own).
    signed_version: Option<String>,
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
            .endpoint(krypton_host::runtime::AuthMode::Network, None)
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
    pub runtime: Runtime,
    pub pre: KryptonPre,
    pub targets: Targets,
    /// The component's default endpoints and export formats, checked.
    pub facts: Facts,
    /// Where the component came from (`built-in` or its path), its size in bytes, and the
    /// time it took to load, ms.
    origin: (String, usize, u64),
}

/// Load the component (`path`, else the built-in one) into `runtime` and ask it for its
/// targets, default endpoints and export formats. Exit 3 for an unreadable file or a refused
/// precompiled component (`trusted_key` is the key its signature must verify with), 1 when it
/// does not load, its `targets()`, `default-endpoints()` or `export-formats()` fails or is
/// refused, or it reports another version than the signed one. The caller logs the load with
/// [`Loaded::log_loaded`].
pub async fn load(
    runtime: Runtime,
    path: Option<&Path>,
    trusted_key: Option<&str>,
) -> Result<Loaded, HostFailure> {
    let Compiled {
        pre,
        origin,
        bytes,
        ms,
        signed_version,
    } = load_component(&runtime, path, trusted_key)?;
    if let Some(signed) = signed_version {
        let version = lifecycle::self_check(&runtime, &pre)
            .await
            .map_err(fail(exit::INTERNAL))?;
        if version != signed {
            return Err(fail(exit::INTERNAL)(anyhow::anyhow!(
                "the component reports version `{}`, but its signature is for version `{signed}`",
                version.escape_debug()
            )));
        }
    }
    let targets = lifecycle::list_targets(&runtime, &pre)
        .await
        .map_err(fail(exit::INTERNAL))?;
    let facts = lifecycle::component_facts(&runtime, &pre, &targets)
        .await
        .map_err(fail(exit::INTERNAL))?;
    Ok(Loaded {
        runtime,
        pre,
        targets,
        facts,
        origin: (origin, bytes, ms),
    })
}

/// [`load`] into a runtime with the default sandbox limits, for a command that makes no
/// provisioning call (its wall-clock limit is the default's).
pub async fn load_default(
    path: Option<&Path>,
    trusted_key: Option<&str>,
) -> Result<Loaded, HostFailure> {
    let runtime = Runtime::new().map_err(fail(exit::INTERNAL))?;
    load(runtime, path, trusted_key).await
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
