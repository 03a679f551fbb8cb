//! `krypton-host compile COMPONENT --target TRIPLE --out FILE.cwasm [--signing-key KEY]`:
//! precompile a component for a gateway's architecture and sign the artifact, on a build
//! machine (the full build; the gateway build has no compiler). What is signed and how the
//! gateway checks it: `krypton_host::component::precompiled` and `krypton_host::signing`.

use super::{HostFailure, fail};
use crate::output::exit;
use anyhow::Context as _;
use clap::Args;
use krypton_host::component::MAX_COMPONENT_BYTES;
use krypton_host::component::precompiled::{self, FileKind, SUPPORTED_TARGETS};
use krypton_host::engine::{Runtime, WASMTIME_VERSION};
use krypton_host::files;
use krypton_host::signing::{self, PrecompiledFacts};
use serde_json::json;
use std::path::PathBuf;

/// `compile` arguments.
#[derive(Args)]
pub struct CompileArgs {
    /// The component to precompile (a `.wasm` component, e.g. from `cargo guest`).
    pub component: PathBuf,
    /// The gateway's target triple. AArch64 code assumes no optional CPU feature (no LSE
    /// atomics): it runs on any Armv8.0-A core.
    #[arg(long, value_name = "TRIPLE", value_parser = clap::builder::PossibleValuesParser::new(SUPPORTED_TARGETS))]
    pub target: String,
    /// Where to write the precompiled component (mode 0644; replaced if it exists).
    #[arg(long, value_name = "FILE.cwasm")]
    pub out: PathBuf,
    /// Sign the artifact with this ed25519 private key (PKCS#8 PEM from `keygen`, or the
    /// 32-byte seed as base64 or hex): writes `<out>.sig`, binding the artifact's SHA-256 and
    /// target, the wasmtime version, and the component's SHA-256 and version. A gateway runs
    /// only signed artifacts.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Precompile and sign: the component must load and link on this host and pass its
/// self-check, `targets()`, `default-endpoints()` and `export-formats()` (the version signed is
/// the one it reports). Errors (exit 3): unreadable or oversized files, not a `.wasm`
/// component, a bad key, a component that does not load or compile; the artifact or its `.sig`
/// cannot be written (exit 9).
pub async fn compile(args: CompileArgs) -> Result<(), HostFailure> {
    let invalid = fail(exit::INVALID_REQUEST);
    let bytes = files::read_user_file(&args.component, MAX_COMPONENT_BYTES, "the component")
        .map_err(invalid)?;
    if precompiled::kind(&bytes) != FileKind::Component {
        return Err(invalid(anyhow::anyhow!(
            "{} is not a WebAssembly component (.wasm); build one with `cargo guest`",
            args.component.display()
        )));
    }
    let key = match &args.signing_key {
        Some(path) => {
            let text = files::read_user_file(path, signing::MAX_KEY_FILE_BYTES, "the key")
                .map_err(invalid)?;
            Some(
                signing::parse_signing_key(&String::from_utf8_lossy(&text))
                    .with_context(|| format!("reading the key {}", path.display()))
                    .map_err(invalid)?,
            )
        }
        None => None,
    };
    // The component must serve on a host: link it here, ask its version and check its targets,
    // default endpoints and export formats.
    let runtime = Runtime::new().map_err(fail(exit::INTERNAL))?;
    let pre = runtime
        .load(&bytes)
        .with_context(|| format!("loading {}", args.component.display()))
        .map_err(invalid)?;
    let version = krypton_host::component::self_check(&runtime, &pre)
        .await
        .map_err(invalid)?;
    let targets = krypton_host::component::list_targets(&runtime, &pre)
        .await
        .map_err(invalid)?;
    krypton_host::component::component_facts(&runtime, &pre, &targets)
        .await
        .map_err(invalid)?;
    let started = std::time::Instant::now();
    let artifact = tokio::task::block_in_place(|| precompiled::precompile(&bytes, &args.target))
        .map_err(invalid)?;
    let compile_ms = started.elapsed().as_millis() as u64;
    // Neither file is secret; the gateway refuses an artifact that group or others can write.
    files::write_private_file(&args.out, &artifact, 0o644)
        .with_context(|| format!("writing {}", args.out.display()))
        .map_err(fail(exit::STORAGE))?;
    let facts = PrecompiledFacts {
        sha256: signing::digest_hex(&artifact),
        target: args.target.clone(),
        wasmtime: WASMTIME_VERSION.to_string(),
        source_sha256: signing::digest_hex(&bytes),
        version: version.clone(),
    };
    let signature = match &key {
        Some(key) => {
            let text = signing::sign_precompiled(key, &facts).map_err(invalid)?;
            let out = signing::signature_path(&args.out);
            files::write_private_file(&out, text.as_bytes(), 0o644)
                .with_context(|| format!("writing {}", out.display()))
                .map_err(fail(exit::STORAGE))?;
            Some(out)
        }
        None => None,
    };
    if args.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "component": args.component,
                "sourceSha256": facts.source_sha256,
                "version": facts.version,
                "target": facts.target,
                "wasmtime": facts.wasmtime,
                "artifact": args.out,
                "bytes": artifact.len(),
                "sha256": facts.sha256,
                "compileMs": compile_ms,
                "signature": signature,
            })
        );
    } else {
        println!(
            "compiled {} (version {version}, sha256 {}) for {} -> {} ({} bytes, sha256 {}, {compile_ms} ms)",
            args.component.display(),
            facts.source_sha256,
            facts.target,
            args.out.display(),
            artifact.len(),
            facts.sha256
        );
        match &signature {
            Some(sig) => println!("signed -> {}", sig.display()),
            None => eprintln!(
                "warning: not signed: no krypton-host loads an unsigned precompiled component; \
                 compile again with --signing-key KEY"
            ),
        }
    }
    Ok(())
}
