//! Precompiled components: made on a build machine by `krypton-host compile`, run by gateways
//! whose `krypton-host` has no compiler (the gateway build, `--no-default-features --features
//! gateway`).
//!
//! A precompiled component (a `.cwasm` file) is native code for one target triple, made with
//! wasmtime's cross-compilation: an engine configured with `Config::target` and the host's own
//! settings ([`crate::engine::engine_config`]) runs `Engine::precompile_component`
//! ([`precompile`], feature `jit`). Wasmtime runs such code without checking it, so
//! deserializing is unsafe by contract (its `Component::deserialize_file` documentation): only
//! bytes that wasmtime itself produced may be loaded. This host therefore loads an artifact
//! only when its signature (`<artifact>.sig`, [`crate::signing`]'s precompiled format) verifies
//! with a trusted key, and in this order:
//!
//! | check | refused when |
//! | --- | --- |
//! | open ([`ComponentFile::read`]) | not a regular file, over [`MAX_COMPONENT_BYTES`], owned by neither root nor this user, writable by group or others (someone else could change the native code) |
//! | trusted key | none given: an artifact never loads unsigned |
//! | signature ([`Artifact::verify`]) | no `.sig`, a component's `.sig`, other bytes, a bad signature |
//! | target and wasmtime version | compiled for another architecture or OS, or by another wasmtime |
//! | deserialize ([`VerifiedArtifact::load`]) | wasmtime refuses it (settings, CPU features) |
//! | link, then the self-check of [`crate::component::lifecycle`] | as for a `.wasm`; the reported version must be the signed one |
//!
//! The file is read once, into memory, and hashed on the way; wasmtime deserializes those very
//! bytes (`Component::deserialize`, which copies them into its own anonymous mapping), never the
//! file. So what runs is exactly what was verified: a file renamed over the path, or the same
//! file overwritten or truncated in place (`cp` and `scp` write in place) while the component
//! serves, changes nothing until a reload verifies the new bytes. (A mapping of the file itself,
//! `Component::deserialize_file`, would keep following the file for every page not yet copied:
//! an in-place overwrite would change verified code, a truncation would end in `SIGBUS`.) The
//! cost is memory: the artifact's size in heap while it loads, and its size in anonymous memory
//! (rather than in the shared page cache) while the component is loaded.
//!
//! The gateway build has no built-in component (a built-in one would have to be precompiled for
//! every target the binary is built for): it needs `--component FILE.cwasm` (or `component` in
//! the daemon's configuration) and a trusted key.
//!
//! CPU features: with `Config::target` set, wasmtime infers no CPU feature of the build
//! machine (`Config::target` documentation), so an artifact uses only the target's baseline. For
//! AArch64 the baseline is also set explicitly ([`AARCH64_BASELINE`]): Armv8.0-A, without the
//! LSE atomics (FEAT_LSE) that cloud build machines have and Raspberry Pi class boards lack; an
//! artifact that assumed them would be refused on such a gateway (wasmtime issues #6932, #4224).

pub use crate::engine::kind::{FileKind, HOST_TARGET, compile_hint, gateway_refusal, kind};
use crate::engine::{KryptonPre, Runtime, WASMTIME_VERSION};
use crate::files::MAX_COMPONENT_BYTES;
use crate::signing::{self, PrecompiledFacts};
use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

/// The targets `krypton-host compile --target` accepts: 64-bit Linux gateways on x86-64 and
/// AArch64 (the two code generators of the full build).
pub const SUPPORTED_TARGETS: &[&str] = &["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

/// The AArch64 CPU feature baseline of every artifact compiled for AArch64: each optional
/// feature Cranelift can use, off (Cranelift's `arm64` settings: `has_lse` is FEAT_LSE, the
/// Large System Extensions atomics; `has_pauth` FEAT_PAuth; `has_fp16` FEAT_FP16;
/// `has_dotprod` FEAT_DotProd; `has_i8mm` FEAT_I8MM). The code then runs on any Armv8.0-A
/// core (Cortex-A53 and up, the Raspberry Pi 3 and 4 included); wasmtime refuses, at load, an
/// artifact compiled with a feature the gateway's CPU lacks.
pub const AARCH64_BASELINE: &[(&str, &str)] = &[
    ("has_lse", "false"),
    ("has_pauth", "false"),
    ("has_fp16", "false"),
    ("has_dotprod", "false"),
    ("has_i8mm", "false"),
];

/// Compile `component` (a `.wasm`) for `target`, one of [`SUPPORTED_TARGETS`]: an engine with
/// this host's settings ([`crate::engine::engine_config`]), `Config::target(target)`, and for
/// AArch64 the [`AARCH64_BASELINE`], runs `Engine::precompile_component`. Returns the artifact
/// bytes (an ELF file). Errors: another target, or Cranelift refuses the component.
#[cfg(feature = "jit")]
pub fn precompile(component: &[u8], target: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        SUPPORTED_TARGETS.contains(&target),
        "unsupported target `{}`: choose one of {}",
        target.escape_debug(),
        SUPPORTED_TARGETS.join(", ")
    );
    let mut config = crate::engine::engine_config();
    config.target(target)?;
    if target.starts_with("aarch64-") {
        for (flag, value) in AARCH64_BASELINE {
            // SAFETY: `cranelift_flag_set` is unsafe because a wrong flag could break the
            // invariants of the generated code. These flags only turn optional AArch64
            // instructions off (each is `false`, Cranelift's own default), so the code uses
            // fewer instructions, never different semantics, and wasmtime still checks every
            // setting against the gateway when the artifact is loaded.
            #[allow(unsafe_code)]
            unsafe {
                config.cranelift_flag_set(flag, value);
            }
        }
    }
    let engine = wasmtime::Engine::new(&config)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("configuring the compiler for {target}"))?;
    engine
        .precompile_component(component)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling the component for {target}"))
}

/// Whether `target` runs on this host: the same architecture and operating system (the first
/// and third fields of the triple; wasmtime checks the same two).
fn same_platform(target: &str, host: &str) -> bool {
    fn fields(triple: &str) -> (Option<&str>, Option<&str>) {
        let mut parts = triple.split('-');
        (parts.next(), parts.nth(1))
    }
    fields(target) == fields(host)
}

/// A component file: a `.wasm` component (its bytes), or a precompiled artifact (open, not yet
/// verified).
pub enum ComponentFile {
    /// A WebAssembly component (or anything that is not an artifact: the compiler decides).
    Wasm(Vec<u8>),
    /// A precompiled component.
    Precompiled(Artifact),
}

impl ComponentFile {
    /// Read the file at `path` (`what` names it in errors): an ELF file is opened as an
    /// [`Artifact`], anything else is read with [`crate::files::read_user_file`] as before.
    /// Errors: those of either.
    pub fn read(path: &Path, what: &str) -> anyhow::Result<Self> {
        if let Some(file) = open_if_elf(path) {
            return Ok(ComponentFile::Precompiled(Artifact::from_file(
                path, file, what,
            )?));
        }
        Ok(ComponentFile::Wasm(crate::files::read_user_file(
            path,
            MAX_COMPONENT_BYTES,
            what,
        )?))
    }

    /// SHA-256 of the file's bytes, hex.
    pub fn digest(&self) -> String {
        match self {
            ComponentFile::Wasm(bytes) => signing::digest_hex(bytes),
            ComponentFile::Precompiled(artifact) => artifact.digest.clone(),
        }
    }

    /// The file's size, bytes.
    pub fn len(&self) -> u64 {
        match self {
            ComponentFile::Wasm(bytes) => bytes.len() as u64,
            ComponentFile::Precompiled(artifact) => artifact.bytes,
        }
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The open regular file at `path` when it starts with the ELF magic (`\x7fELF`); `None`
/// otherwise, or when it cannot be opened (the `.wasm` path then says why).
fn open_if_elf(path: &Path) -> Option<std::fs::File> {
    use std::io::{Seek as _, SeekFrom};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.file_type().is_file() {
        return None;
    }
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).ok()?;
    (&magic == b"\x7fELF").then_some(())?;
    file.seek(SeekFrom::Start(0)).ok()?;
    Some(file)
}

/// A precompiled component file, read into memory, with the SHA-256 of those bytes. Not loadable
/// until [`Artifact::verify`] has checked its signature.
pub struct Artifact {
    /// The bytes read from the file: those hashed, those verified, those deserialized.
    code: Vec<u8>,
    path: PathBuf,
    /// SHA-256 of the file's bytes, 64 lowercase hex digits.
    pub digest: String,
    /// The file's size, bytes.
    pub bytes: u64,
}

impl Artifact {
    /// Open the artifact at `path`, read it into memory and hash it. Errors: not a regular
    /// file, larger than [`MAX_COMPONENT_BYTES`], owned by neither root nor this user, or
    /// writable by group or others (native code that someone else could change), each naming
    /// the fix.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| {
                anyhow::anyhow!(
                    "the precompiled component {}: cannot open it: {e}",
                    path.display()
                )
            })?;
        Self::from_file(path, file, "the precompiled component")
    }

    fn from_file(path: &Path, file: std::fs::File, what: &str) -> anyhow::Result<Self> {
        let meta = file
            .metadata()
            .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
        anyhow::ensure!(
            meta.file_type().is_file(),
            "{what} {} is not a regular file; give the path of a .cwasm file",
            path.display()
        );
        anyhow::ensure!(
            meta.len() <= MAX_COMPONENT_BYTES,
            "{what} {} is {} bytes, more than the {MAX_COMPONENT_BYTES} bytes allowed",
            path.display(),
            meta.len()
        );
        let euid = crate::files::effective_uid();
        anyhow::ensure!(
            meta.uid() == 0 || meta.uid() == euid,
            "{what} {} is owned by uid {}: native code runs only from a file of root or of the \
             user this runs as (uid {euid}); `chown` it",
            path.display(),
            meta.uid()
        );
        let mode = meta.mode() & 0o777;
        anyhow::ensure!(
            mode & 0o022 == 0,
            "{what} {} has mode {mode:03o}: group or others could change the native code it \
             holds; `chmod go-w` it",
            path.display()
        );
        // Into memory, capped (the size from `fstat` is only a hint: the file may change while
        // it is read); what is hashed below is what `VerifiedArtifact::load` deserializes.
        let mut code = Vec::with_capacity(meta.len() as usize);
        (&file)
            .take(MAX_COMPONENT_BYTES + 1)
            .read_to_end(&mut code)
            .map_err(|e| anyhow::anyhow!("{what} {}: reading it: {e}", path.display()))?;
        anyhow::ensure!(
            code.len() as u64 <= MAX_COMPONENT_BYTES,
            "{what} {} grew past the {MAX_COMPONENT_BYTES} bytes allowed while it was read",
            path.display()
        );
        let digest = Sha256::digest(&code)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Artifact {
            bytes: code.len() as u64,
            code,
            path: path.to_path_buf(),
            digest,
        })
    }

    /// Check the artifact's signature (`<artifact>.sig`) with `key`, then that it was compiled
    /// for this host's architecture and operating system ([`HOST_TARGET`]) by this wasmtime
    /// ([`WASMTIME_VERSION`]). Returns the artifact, now loadable, with what its signature binds.
    ///
    /// Errors, each with what to do: no key (an artifact never loads unsigned), no `.sig`, a
    /// signature that does not verify ([`signing::verify_precompiled`]), another target or
    /// wasmtime version.
    pub fn verify(
        self,
        key: Option<&ed25519_dalek::VerifyingKey>,
    ) -> anyhow::Result<VerifiedArtifact> {
        let key = key.with_context(|| {
            format!(
                "{} is a precompiled component: native code runs only when its signature \
                 verifies with a trusted key; give the key that signed it (--trusted-public-key \
                 KEY or KRYPTON_TRUSTED_PUBLIC_KEY; the daemon's `trusted_public_key`)",
                self.path.display()
            )
        })?;
        let sig_path = signing::signature_path(&self.path);
        let text = crate::files::read_user_file(
            &sig_path,
            signing::MAX_SIGNATURE_FILE_BYTES,
            "the signature file",
        )
        .with_context(|| {
            format!(
                "a precompiled component needs its signature beside it; `krypton-host compile \
                 … --signing-key KEY` writes {}",
                sig_path.display()
            )
        })?;
        let facts = signing::verify_precompiled(key, &self.digest, &text)
            .with_context(|| format!("checking {}", sig_path.display()))?;
        anyhow::ensure!(
            same_platform(&facts.target, HOST_TARGET),
            "{} was compiled for {}, and this host is {HOST_TARGET}: compile the component for \
             this host on a build machine, `krypton-host compile COMPONENT.wasm --target \
             {HOST_TARGET} --out FILE.cwasm --signing-key KEY`",
            self.path.display(),
            facts.target
        );
        anyhow::ensure!(
            facts.wasmtime == WASMTIME_VERSION,
            "{} was compiled by wasmtime {}, and this host runs wasmtime {WASMTIME_VERSION}: \
             compile it again with a krypton-host of this version, `krypton-host compile \
             COMPONENT.wasm --target {HOST_TARGET} --out FILE.cwasm --signing-key KEY`",
            self.path.display(),
            facts.wasmtime
        );
        Ok(VerifiedArtifact {
            artifact: self,
            facts,
        })
    }
}

/// An artifact whose signature verified for this host: what [`VerifiedArtifact::load`] may
/// deserialize.
pub struct VerifiedArtifact {
    artifact: Artifact,
    /// What the signature binds: the artifact's digest and target, the wasmtime version, the
    /// source component's digest and version.
    pub facts: PrecompiledFacts,
}

impl VerifiedArtifact {
    /// SHA-256 of the artifact, hex.
    pub fn digest(&self) -> &str {
        &self.artifact.digest
    }

    /// Deserialize the verified bytes into `runtime`'s engine (`Component::deserialize`, which
    /// copies them into memory of its own: the file is not read again) and link it; the bytes
    /// are freed once loaded. Errors: wasmtime refuses it (other engine settings, a CPU feature
    /// this machine lacks), or it does not link (another contract).
    pub fn load(self, runtime: &Runtime) -> anyhow::Result<KryptonPre> {
        // SAFETY: wasmtime runs deserialized code unchecked, so the bytes must be what
        // `Engine::precompile_component` produced. `Artifact::verify` has checked, before this
        // can be called, that an ed25519 signature of a trusted key covers the SHA-256 of
        // exactly these bytes, held in memory since they were hashed (`krypton-host compile`
        // signs only what wasmtime produced), for this architecture and OS and this wasmtime
        // version; wasmtime itself refuses an artifact whose settings or CPU features differ
        // from this engine's. `deserialize` copies the bytes into its own mapping, so nothing
        // done to the file afterwards (an overwrite or truncation in place) reaches the code.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(runtime.engine(), &self.artifact.code) }
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "loading the precompiled component {} (compile it again for this host: {})",
                    self.artifact.path.display(),
                    compile_hint()
                )
            })?;
        runtime.link(&component)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_compare_architecture_and_os() {
        assert!(same_platform(
            "x86_64-unknown-linux-gnu",
            "x86_64-unknown-linux-musl"
        ));
        assert!(!same_platform(
            "aarch64-unknown-linux-gnu",
            "x86_64-unknown-linux-gnu"
        ));
        assert!(!same_platform(
            "x86_64-apple-darwin",
            "x86_64-unknown-linux-gnu"
        ));
        assert!(!same_platform("", "x86_64-unknown-linux-gnu"));
    }

    #[test]
    fn kinds_come_from_the_magic() {
        assert_eq!(kind(b"\0asm\x0d\0\x01\0"), FileKind::Component);
        assert_eq!(kind(b"\x7fELF\x02\x01\x01"), FileKind::Other);
        assert_eq!(kind(b"key = 1"), FileKind::Other);
        assert!(gateway_refusal(b"\0asm\x0d\0\x01\0").contains("krypton-host compile"));
    }

    /// The AArch64 artifact records each baseline flag as off (wasmtime keeps the compiler's
    /// settings in the artifact's `.wasmtime.engine` section, postcard-encoded: the name, then
    /// `FlagValue::Bool` (variant 2) and `false`).
    #[cfg(feature = "jit")]
    #[test]
    fn an_aarch64_artifact_assumes_no_optional_cpu_feature() {
        let artifact = precompile(
            crate::component::DEFAULT_COMPONENT,
            "aarch64-unknown-linux-gnu",
        )
        .unwrap();
        assert_eq!(kind(&artifact), FileKind::Precompiled);
        for (flag, _) in AARCH64_BASELINE {
            let mut needle = vec![flag.len() as u8];
            needle.extend_from_slice(flag.as_bytes());
            needle.extend_from_slice(&[2, 0]);
            assert!(
                artifact.windows(needle.len()).any(|w| w == needle),
                "{flag} is not recorded as false"
            );
        }
        let err = precompile(
            crate::component::DEFAULT_COMPONENT,
            "riscv64gc-unknown-linux-gnu",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu"));
    }
}
