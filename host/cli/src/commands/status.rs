//! `krypton-host status [TARGET]`: what is stored, without calling Krypton.

use super::{CommonArgs, HostFailure, fail, reported};
use crate::output::{self, exit};
use clap::Args;
use krypton_contract::render::Status;
use krypton_host::bindings::TargetInfo;
use krypton_host::capability::store::SecretStore;

/// `status` arguments.
#[derive(Args)]
pub struct StatusArgs {
    /// One target; all targets when omitted.
    pub target: Option<String>,
    // clap reads a doc comment here as help text: the field is documented by its type.
    #[allow(missing_docs)]
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `status [TARGET]`: what is stored, each bundle with the mode it was obtained in (`mode`:
/// `network` or `sim`). Exit 0 when at least one bundle (or TARGET's bundle) is
/// stored, 11 ([`exit::NOT_PROVISIONED`]) when nothing is, whether the store is missing, empty
/// or lacks TARGET; a component error gives its own code. With `--json`: one object,
/// `{"ok", "store", "bundles": [...], "errors": [{"target", "error"}]}`, plus `exitCode` and
/// `error` when `ok` is false.
pub async fn status(args: StatusArgs) -> Result<(), HostFailure> {
    let store_dir = &args.common.store;
    // A read-only command: never create the store. The component names the targets: it is
    // loaded to check TARGET, and to list what a store holds.
    let store_exists = store_dir.exists();
    let loaded = if args.target.is_some() || store_exists {
        Some(args.common.source.load().await?)
    } else {
        None
    };
    let target = match (&args.target, &loaded) {
        (Some(name), Some(loaded)) => Some(loaded.target(name, "[TARGET]")?),
        _ => None,
    };
    if let Some(loaded) = &loaded {
        loaded.log_loaded();
    }
    let wanted = target
        .as_ref()
        .map(|t| format!("`{}` bundle", t.name))
        .unwrap_or_else(|| "bundle".into());
    let run_first = format!(
        "run `krypton-host provision {}` first",
        target.as_ref().map_or("TARGET", |t| t.name.as_str())
    );
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let nothing = if let (true, Some(loaded)) = (store_exists, &loaded) {
        let store = SecretStore::open(store_dir)
            .map_err(anyhow::Error::from)
            .map_err(fail(exit::STORAGE))?;
        let targets: Vec<TargetInfo> = match &target {
            Some(t) => vec![t.clone()],
            None => loaded.targets.all().to_vec(),
        };
        for info in targets {
            match loaded
                .runtime
                .status(&loaded.pre, store.clone(), info.target)
                .await
                .map_err(fail(exit::INTERNAL))?
            {
                Ok(Some(report)) => found.push((info.name, report)),
                Ok(None) => {}
                Err(e) => errors.push((info.name, e)),
            }
        }
        (found.is_empty() && errors.is_empty()).then(|| {
            format!(
                "no {wanted} is stored in {}; {run_first}",
                store_dir.display()
            )
        })
    } else {
        Some(format!(
            "no {wanted} is stored: the store {} does not exist; {run_first}",
            store_dir.display()
        ))
    };
    let status = Status {
        store: store_dir.display().to_string(),
        bundles: found.into_iter().map(|(n, r)| (n, (&r).into())).collect(),
        errors: errors.into_iter().map(|(n, e)| (n, (&e).into())).collect(),
        nothing,
    };
    let out = output::status(&status, args.common.json);
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    match out.code {
        0 => Ok(()),
        code => Err(reported(code)),
    }
}
