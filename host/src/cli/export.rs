//! `krypton-host export TARGET --format F --out DIR`: write a stored bundle in a consumer's
//! format, all files or none.

use super::print::print_json;
use super::shared::{krypton_addresses, load_default, open_with_bundle, usage_error};
use super::{DEFAULT_STORE, HostFailure, component_failure, fail};
use anyhow::Context as _;
use clap::Args;
use krypton_host::output::{self, exit};
use serde_json::json;
use std::path::{Path, PathBuf};

/// `export` arguments.
#[derive(Args)]
pub struct ExportArgs {
    /// The stored bundle to export: a target of the component with export formats.
    // `--help` lists the component's (`help::with_component`).
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// The format to write, one the component offers for TARGET. A format that does not fit
    /// the target is refused before anything is created.
    // Checked against the component's `export-formats`; `--help` lists them with summaries.
    #[arg(long)]
    pub format: String,
    /// Directory to write into (created 0700 when missing; a symlink is refused).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Give the written files and the directory to USER (and GROUP; default: the user's
    /// primary group), by fchown(2) on the open files, never following a symlink (needs root).
    /// Without it, a format whose files its consumer reads as a system account (the component
    /// names it for each file) prints the `chmod`/`chown` commands that give them to it.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub owner: Option<String>,
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
    /// wireguard: Krypton endpoint whose addresses are routed through the tunnel.
    /// Default: the component's network-mode endpoint (e.g. https://krypton.soracom.io:8036).
    #[arg(long, env = "KRYPTON_ENDPOINT")]
    pub endpoint: Option<String>,
    /// wireguard: route these addresses instead of resolving the endpoint (repeatable).
    #[arg(long = "krypton-address", value_name = "IP")]
    pub krypton_addresses: Vec<String>,
    /// Print one JSON object on stdout instead of text: {"ok", "target", "format",
    /// "directory", "owner", "files": [{"path", "mode" (octal text, e.g. "0600"), "bytes"
    /// (a number), "secret", "converted" (text or null)}], "next": [commands]}.
    #[arg(long)]
    pub json: bool,
}

/// `export`: check the target and format with the component first (a format that does not fit
/// the target, or no bundle, creates nothing), then create `--out` (0700) when missing and
/// write the files, owned by `--owner` when given.
pub async fn export(args: ExportArgs) -> Result<(), HostFailure> {
    use std::os::unix::fs::DirBuilderExt;
    // The component knows the targets and formats: a name it does not know is a usage error,
    // as clap gives one, before anything else is checked.
    let loaded = load_default(
        args.component.as_deref(),
        args.trusted_public_key.as_deref(),
    )
    .await?;
    let target = loaded.target(&args.target, "<TARGET>")?;
    let formats = loaded.targets.export_formats();
    if !formats.contains(&args.format.as_str()) {
        return Err(usage_error(&format!(
            "invalid value '{}' for '--format <FORMAT>'\n  [possible values: {}]",
            args.format,
            formats.join(", ")
        )));
    }
    loaded.log_loaded();
    let owner = args
        .owner
        .as_deref()
        .map(krypton_host::files::resolve_owner)
        .transpose()
        .map_err(fail(exit::INVALID_REQUEST))?;
    let store = open_with_bundle(&args.store, &loaded, &target).await?;
    let exists = match std::fs::symlink_metadata(&args.out) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(fail(exit::INVALID_REQUEST)(anyhow::anyhow!(
                "--out {} is a symlink; symlinks are never followed for secret files: give the real directory",
                args.out.display()
            )));
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(fail(exit::INVALID_REQUEST)(anyhow::anyhow!(
                "--out {} exists and is not a directory",
                args.out.display()
            )));
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let render = async |dir: &Path, addresses: &[String]| match loaded
        .runtime
        .render_export(
            &loaded.pre,
            store.clone(),
            target.target,
            &args.format,
            &dir.to_string_lossy(),
            addresses,
        )
        .await
        .map_err(fail(exit::INTERNAL))?
    {
        Ok(files) => check_file_names(&files).map(|()| files),
        Err(e) => Err(component_failure(e)),
    };
    // Where the files will be: the directory's real path when it exists, else the absolute
    // path it will have.
    let planned = if exists {
        std::fs::canonicalize(&args.out)
    } else {
        std::path::absolute(&args.out)
    }
    .with_context(|| format!("resolving {}", args.out.display()))
    .map_err(fail(exit::STORAGE))?;
    // The component checks the format against the target (and the stored values) first, before
    // anything is created and before Krypton's name is looked up: a format that does not fit
    // is exit 3 even where that name cannot be resolved. Only `wireguard` needs the addresses,
    // and renders again with them.
    let mut files = render(&planned, &[]).await?;
    let addresses = if args.format == "wireguard" {
        let addresses =
            krypton_addresses(&args.krypton_addresses, args.endpoint.as_deref(), &loaded).await?;
        files = render(&planned, &addresses).await?;
        addresses
    } else {
        Vec::new()
    };
    if !exists {
        // Parents this creates are 0755 (root's, writable by nobody else), so that the user of
        // `--owner` can reach the leaf; the leaf is 0700 and becomes theirs below.
        if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .with_context(|| format!("creating {}", parent.display()))
                .map_err(fail(exit::STORAGE))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))
            .map_err(fail(exit::STORAGE))?;
    }
    let out = std::fs::canonicalize(&args.out)
        .with_context(|| format!("resolving {}", args.out.display()))
        .map_err(fail(exit::STORAGE))?;
    if out != planned {
        // A parent was a symlink: the files name their real place.
        files = render(&out, &addresses).await?;
    }
    krypton_host::files::safe_output_dir(&out, owner.map(|o| o.uid))
        .context("--out")
        .map_err(fail(exit::STORAGE))?;
    let mut written = Vec::new();
    let mut plan = Vec::with_capacity(files.len());
    for f in &files {
        let path = out.join(&f.name);
        let mode = if f.secret { 0o600 } else { 0o644 };
        written.push(json!({
            "path": path,
            "mode": format!("{mode:04o}"),
            "bytes": f.contents.len(),
            "secret": f.secret,
            "converted": f.converted,
        }));
        plan.push((path, f.contents.as_slice(), mode));
    }
    // All files or none: a certificate is never left beside the key of another pair.
    krypton_host::files::write_private_files(&plan, owner)
        .with_context(|| format!("writing the export into {}", out.display()))
        .map_err(fail(exit::STORAGE))?;
    // Only a directory this export created is handed over: an existing `--out` (think
    // `/etc`) keeps its owner, and the files in it are the owner's to read.
    if let (Some(owner), false) = (owner, exists) {
        krypton_host::files::chown_dir(&out, owner).map_err(|e| fail(exit::STORAGE)(e.into()))?;
    }
    let next = export_next_steps(&out, &files, owner.is_some());
    if args.json {
        print_json(&json!({
            "ok": true,
            "target": target.name,
            "format": args.format,
            "directory": out,
            "owner": args.owner,
            "files": written,
            "next": next,
        }));
    } else {
        for (w, f) in written.iter().zip(&files) {
            let converted = f
                .converted
                .as_deref()
                .map(|c| format!("; converted: {}", output::printable(c)))
                .unwrap_or_default();
            println!(
                "wrote {} ({} bytes, mode {}{converted})",
                w["path"].as_str().unwrap_or_default(),
                f.contents.len(),
                w["mode"].as_str().unwrap_or_default()
            );
        }
        for line in &next {
            println!("next: {line}");
        }
    }
    Ok(())
}

/// The component names the files; the host refuses, before anything is created, a name that
/// is not plain (1-255 bytes of `[A-Za-z0-9._-]`, not starting with `.`) or is given twice,
/// or an owner that is not a portable account name ([`krypton_host::facts::is_account_name`])
/// (exit 1: the component is at fault).
fn check_file_names(files: &[krypton_host::runtime::ExportFile]) -> Result<(), HostFailure> {
    for f in files {
        if let Some(owner) = f
            .owner
            .as_deref()
            .filter(|o| !krypton_host::facts::is_account_name(o))
        {
            return Err(fail(exit::INTERNAL)(anyhow::anyhow!(
                "the component named `{}` as the owner of `{}`, which is not an account name (1-{} bytes of `[a-z0-9_-]`, not starting with a digit or `-`)",
                output::printable(&owner.escape_debug().to_string()),
                output::printable(&f.name.escape_debug().to_string()),
                krypton_host::facts::MAX_ACCOUNT_BYTES
            )));
        }
        let plain = !f.name.is_empty()
            && f.name.len() <= 255
            && !f.name.starts_with('.')
            && f.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !plain || files.iter().filter(|o| o.name == f.name).count() > 1 {
            return Err(fail(exit::INTERNAL)(anyhow::anyhow!(
                "the component asked to write `{}`, which is not a plain file name or is named twice",
                output::printable(&f.name.escape_debug().to_string())
            )));
        }
    }
    Ok(())
}

/// Shell commands an operator still has to run for the consumer to read the files, one per
/// entry. Without `--owner`, when the component names the account a file's consumer reads it
/// as (`export-file.owner`, a user whose primary group has the same name): `chmod 0711` on
/// the 0700 directory so that those accounts get through, then one `chown USER:USER` per
/// account, in the order the files first name them, for its files.
pub fn export_next_steps(
    dir: &Path,
    files: &[krypton_host::runtime::ExportFile],
    owner_given: bool,
) -> Vec<String> {
    let mut owners: Vec<&str> = Vec::new();
    for owner in files.iter().filter_map(|f| f.owner.as_deref()) {
        if !owners.contains(&owner) {
            owners.push(owner);
        }
    }
    if owners.is_empty() || owner_given {
        return Vec::new();
    }
    let quote = |p: &Path| shell_quote(&p.to_string_lossy());
    let mut steps = vec![format!("chmod 0711 {}", quote(dir))];
    for owner in owners {
        let paths: Vec<String> = files
            .iter()
            .filter(|f| f.owner.as_deref() == Some(owner))
            .map(|f| quote(&dir.join(&f.name)))
            .collect();
        steps.push(format!(
            "chown {}:{} {}",
            shell_quote(owner),
            shell_quote(owner),
            paths.join(" ")
        ));
    }
    steps
}

/// A word for `sh`: unchanged when it holds only safe characters, else in single quotes.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
