//! The one loader of a component, for the command line and the daemon alike: read the file
//! (or take the built-in component), check it, compile or deserialize it, link it, and run its
//! self-check, in the order of the table in the [`crate::component`] docs.

use crate::component::facts::Facts;
use crate::component::precompiled::{Artifact, ComponentFile};
use crate::component::targets::Targets;
use crate::engine::{KryptonPre, Runtime};
use crate::signing::VersionFloor;
use anyhow::Context as _;
use std::path::Path;

/// The contract version this host implements (`wit/krypton.wit`). A 0.x contract breaks on a
/// minor bump (0.2.0 errors had no `failure` record and no `targets()`; 0.4.0 components have
/// no `default-endpoints()`), so a component must speak exactly this version to be served.
pub const CONTRACT: &str = "soracom:krypton@0.6.0";
/// Largest component file read, bytes (the provisioning component is under 1 MiB).
pub use crate::files::MAX_COMPONENT_BYTES;

/// The self-check every component passes before it serves: its `version` call, in the
/// sandbox. Returns the component's own version (e.g. `0.3.0`). Errors: the call traps or hits
/// a sandbox limit, or the component speaks another contract than [`CONTRACT`].
pub async fn self_check(runtime: &Runtime, pre: &KryptonPre) -> anyhow::Result<String> {
    let (version, contract) = runtime
        .version(pre)
        .await
        .context("the self-check call failed")?;
    anyhow::ensure!(
        contract == CONTRACT,
        "the component speaks `{}`, this host `{CONTRACT}`",
        contract.escape_debug()
    );
    Ok(version)
}

/// The component's targets (its `targets()` call), checked by [`Targets::checked`]. Errors:
/// the call traps or hits a sandbox limit, or the list is refused
/// ([`crate::component::targets::InvalidTargets`]: a name that is not its case's plain spelling, a
/// duplicate, an oversized or unprintable text); a component that fails either does not serve.
pub async fn list_targets(runtime: &Runtime, pre: &KryptonPre) -> anyhow::Result<Targets> {
    let list = runtime
        .targets(pre)
        .await
        .context("the component's targets() call failed")?;
    Ok(Targets::checked(list)?)
}

/// The component's default endpoints and export formats (its `default-endpoints()` and
/// `export-formats()` calls, one instance), checked by [`Facts::checked`] against its
/// `targets`. Errors: a call traps or hits a sandbox limit, or the answers are refused
/// ([`super::facts::InvalidFacts`]: an endpoint that is not an `https` origin, a mode without
/// one, a bad coverage or format name, an oversized or unprintable text, a format a target
/// lists but nothing describes); a component that fails either does not serve.
pub async fn component_facts(
    runtime: &Runtime,
    pre: &KryptonPre,
    targets: &Targets,
) -> anyhow::Result<Facts> {
    let (endpoints, formats) = runtime
        .facts(pre)
        .await
        .context("the component's default-endpoints() or export-formats() call failed")?;
    Ok(Facts::checked(endpoints, formats, targets)?)
}

/// A checked, linked component version.
pub struct Loaded {
    /// The compiled, linked component.
    pub pre: KryptonPre,
    /// SHA-256 of the component file's bytes (of a precompiled component: of the artifact), hex.
    pub digest: String,
    /// The component's own version string (equal to the signed one when signed).
    pub version: String,
    /// The targets it implements (its `targets()` call, made once when it was checked).
    pub targets: Targets,
    /// Its default endpoints and export formats (made once when it was checked).
    pub facts: Facts,
    /// Whether a trusted key's signature covered this version.
    pub signed: bool,
    /// Size of the component file (or artifact), bytes.
    pub bytes: usize,
}

/// What a component file must satisfy besides compiling and passing its self-check.
#[derive(Debug, Clone, Default)]
pub struct ComponentPolicy {
    /// When set, a component file needs a `.sig` beside it (see [`crate::signing`]).
    pub trusted_key: Option<ed25519_dalek::VerifyingKey>,
    /// When set, a version lower than the highest accepted one is refused.
    pub floor: Option<VersionFloor>,
}

/// What kind of failure stopped a load: it says which exit code the command line gives and
/// whether the daemon may keep serving the version it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// Nothing to load was given (the gateway build has no built-in component): exit 2.
    Usage,
    /// The file, its signature or its version is refused before anything runs (unreadable,
    /// unsigned or badly signed, another target, a downgrade): exit 3.
    Refused,
    /// The component was accepted but does not compile, link or pass its self-check: exit 1.
    Failed,
}

/// Why a component did not load: its [`LoadErrorKind`] and the error chain, whose text says
/// what was refused and what to do.
#[derive(Debug)]
pub struct LoadError {
    /// What kind of failure this is.
    pub kind: LoadErrorKind,
    /// The failure, with its context.
    pub error: anyhow::Error,
}

impl LoadError {
    #[cfg_attr(feature = "jit", allow(dead_code))]
    fn usage(error: anyhow::Error) -> Self {
        LoadError {
            kind: LoadErrorKind::Usage,
            error,
        }
    }

    fn refused(error: anyhow::Error) -> Self {
        LoadError {
            kind: LoadErrorKind::Refused,
            error,
        }
    }

    fn failed(error: anyhow::Error) -> Self {
        LoadError {
            kind: LoadErrorKind::Failed,
            error,
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for LoadError {}

/// Load the component at `path` (the built-in one when `None`) into `runtime` under `policy`,
/// through every check of the table above. Returns the linked, self-checked component with its
/// targets. Errors: a [`LoadError`] whose kind names the failed row.
pub async fn load(
    runtime: &Runtime,
    path: Option<&Path>,
    policy: &ComponentPolicy,
) -> Result<Loaded, LoadError> {
    match path {
        None => check_builtin(runtime).await,
        Some(path) => {
            let file = read(path)?;
            check_file(runtime, path, file, policy).await
        }
    }
}

/// Read a component file: a regular file of at most [`MAX_COMPONENT_BYTES`], a `.wasm` or a
/// precompiled component ([`ComponentFile`]). Errors: `Refused`, naming the path.
pub fn read(path: &Path) -> Result<ComponentFile, LoadError> {
    ComponentFile::read(path, "the component").map_err(LoadError::refused)
}

/// The checks of [`load`] after the read, for `file` read from `path` (a reload reads the file
/// first, to compare its digest with the serving version's).
pub async fn check_file(
    runtime: &Runtime,
    path: &Path,
    file: ComponentFile,
    policy: &ComponentPolicy,
) -> Result<Loaded, LoadError> {
    match file {
        ComponentFile::Wasm(bytes) => check_wasm(runtime, policy, &bytes, path).await,
        ComponentFile::Precompiled(artifact) => {
            check_precompiled(runtime, policy, artifact, path).await
        }
    }
}

/// The context of a compile, deserialize or link failure: which file it was.
fn loading(path: &Path) -> impl FnOnce(anyhow::Error) -> LoadError + '_ {
    move |e| LoadError::failed(e.context(format!("loading component ({})", path.display())))
}

/// The built-in component: none in the gateway build.
#[cfg(not(feature = "jit"))]
async fn check_builtin(_runtime: &Runtime) -> Result<Loaded, LoadError> {
    Err(LoadError::usage(anyhow::anyhow!(
        "this gateway build of krypton-host has no built-in component: give --component \
         FILE.cwasm (or KRYPTON_COMPONENT, or `component` in the daemon's configuration), a \
         component precompiled and signed on a build machine with `krypton-host compile \
         COMPONENT.wasm --target {} --out FILE.cwasm --signing-key KEY`, and the key that \
         signed it (--trusted-public-key, or `trusted_public_key`)",
        crate::engine::kind::HOST_TARGET
    )))
}

/// The built-in component: compiled, linked and self-checked (no signature, no floor).
#[cfg(feature = "jit")]
async fn check_builtin(runtime: &Runtime) -> Result<Loaded, LoadError> {
    let bytes = crate::component::DEFAULT_COMPONENT;
    let pre = runtime
        .load(bytes)
        .context("loading component (built-in)")
        .map_err(LoadError::failed)?;
    let digest = crate::signing::digest_hex(bytes);
    self_checked(runtime, pre, digest, None, bytes.len()).await
}

/// The linked component `pre`, self-checked: its version (which must be `signed`, the version
/// its signature names, when there is one), targets and facts, with its `digest` and size in
/// `bytes`. Any check failing is `Failed`.
async fn self_checked(
    runtime: &Runtime,
    pre: KryptonPre,
    digest: String,
    signed: Option<&str>,
    bytes: usize,
) -> Result<Loaded, LoadError> {
    let version = self_check(runtime, &pre).await.map_err(LoadError::failed)?;
    if let Some(signed) = signed {
        same_version(&version, signed)?;
    }
    let targets = list_targets(runtime, &pre)
        .await
        .map_err(LoadError::failed)?;
    let facts = component_facts(runtime, &pre, &targets)
        .await
        .map_err(LoadError::failed)?;
    Ok(Loaded {
        pre,
        digest,
        version,
        targets,
        facts,
        signed: signed.is_some(),
        bytes,
    })
}

/// The signed version must be the one the component reports.
fn same_version(version: &str, signed: &str) -> Result<(), LoadError> {
    if version == signed {
        return Ok(());
    }
    Err(LoadError::failed(anyhow::anyhow!(
        "the self-check reports version `{}`, but the signature is for version `{signed}`",
        version.escape_debug()
    )))
}

/// Every check a precompiled component passes before it serves: its signature with the
/// trusted key (required), its target and wasmtime version ([`Artifact::verify`]), the
/// version floor, then deserialize and link, the self-check (the signed version), the
/// targets.
async fn check_precompiled(
    runtime: &Runtime,
    policy: &ComponentPolicy,
    artifact: Artifact,
    path: &Path,
) -> Result<Loaded, LoadError> {
    let bytes = usize::try_from(artifact.bytes).unwrap_or(usize::MAX);
    let verified = artifact
        .verify(policy.trusted_key.as_ref())
        .map_err(LoadError::refused)?;
    let signed = verified.facts.version.clone();
    if let Some(floor) = &policy.floor {
        floor.check(&signed).map_err(LoadError::refused)?;
    }
    let digest = verified.digest().to_string();
    let pre = verified.load(runtime).map_err(loading(path))?;
    self_checked(runtime, pre, digest, Some(&signed), bytes).await
}

/// The gateway build compiles nothing: a `.wasm` is refused with the way out.
#[cfg(not(feature = "jit"))]
async fn check_wasm(
    _runtime: &Runtime,
    _policy: &ComponentPolicy,
    bytes: &[u8],
    _path: &Path,
) -> Result<Loaded, LoadError> {
    Err(LoadError::refused(anyhow::anyhow!(
        "{}",
        crate::engine::kind::gateway_refusal(bytes)
    )))
}

/// Every check a `.wasm` component must pass before it serves (the table above): its
/// `signature` when a trusted key is set, the floor, compile and link, the self-check.
#[cfg(feature = "jit")]
async fn check_wasm(
    runtime: &Runtime,
    policy: &ComponentPolicy,
    bytes: &[u8],
    path: &Path,
) -> Result<Loaded, LoadError> {
    let signature = &crate::signing::signature_path(path);
    let signed_version = match &policy.trusted_key {
        Some(key) => {
            let text = crate::files::read_user_file(
                signature,
                crate::signing::MAX_SIGNATURE_FILE_BYTES,
                "the signature file",
            )
            .context("a trusted key is configured: the component needs its .sig beside it")
            .map_err(LoadError::refused)?;
            let version = crate::signing::verify(key, bytes, &text)
                .with_context(|| format!("checking {}", signature.display()))
                .map_err(LoadError::refused)?;
            if let Some(floor) = &policy.floor {
                floor.check(&version).map_err(LoadError::refused)?;
            }
            Some(version)
        }
        None => None,
    };
    let pre = runtime.load(bytes).map_err(loading(path))?;
    let digest = crate::signing::digest_hex(bytes);
    let loaded = self_checked(runtime, pre, digest, signed_version.as_deref(), bytes.len()).await?;
    if signed_version.is_none()
        && let Some(floor) = &policy.floor
    {
        floor.check(&loaded.version).map_err(LoadError::refused)?;
    }
    Ok(loaded)
}
