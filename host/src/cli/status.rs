//! `krypton-host status [TARGET]`: what is stored, without calling Krypton.

use super::print::print_json;
use super::shared::load_component;
use super::{CommonArgs, HostFailure, fail, reported};
use clap::Args;
use krypton_host::output::{self, exit};
use krypton_host::runtime::{Runtime, Target};
use krypton_host::store::SecretStore;
use serde_json::{Value, json};

#[derive(Args)]
pub struct StatusArgs {
    /// One target; all targets when omitted.
    #[arg(value_parser = output::parse_target)]
    pub target: Option<Target>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `status [TARGET]`: what is stored. Exit 0 when at least one bundle (or TARGET's bundle) is
/// stored, 11 ([`exit::NOT_PROVISIONED`]) when nothing is, whether the store is missing, empty
/// or lacks TARGET; a component error gives its own code. With `--json`: one object,
/// `{"ok", "store", "bundles": [...], "errors": [{"target", "error"}]}`, plus `exitCode` and
/// `error` when `ok` is false.
pub async fn status(args: StatusArgs) -> Result<(), HostFailure> {
    let store_dir = &args.common.store;
    let wanted = args
        .target
        .map(|t| format!("`{}` bundle", output::target_name(t)))
        .unwrap_or_else(|| "bundle".into());
    let run_first = format!(
        "run `krypton-host provision {}` first",
        args.target.map(output::target_name).unwrap_or("TARGET")
    );
    let mut found = Vec::new();
    let mut errors = Vec::new();
    // A read-only command: never create the store.
    let nothing = if !store_dir.exists() {
        Some(format!(
            "no {wanted} is stored: the store {} does not exist; {run_first}",
            store_dir.display()
        ))
    } else {
        let store = SecretStore::open(store_dir)
            .map_err(anyhow::Error::from)
            .map_err(fail(exit::STORAGE))?;
        let runtime = Runtime::new().map_err(fail(exit::INTERNAL))?;
        let pre = load_component(&runtime, args.common.component.as_deref())?;
        let targets: Vec<Target> = match args.target {
            Some(t) => vec![t],
            None => output::ALL_TARGETS.iter().map(|(_, t)| *t).collect(),
        };
        for target in &targets {
            match runtime
                .status(&pre, store.clone(), *target)
                .await
                .map_err(fail(exit::INTERNAL))?
            {
                Ok(Some(report)) => found.push(report),
                Ok(None) => {}
                Err(e) => errors.push((*target, e)),
            }
        }
        (found.is_empty() && errors.is_empty()).then(|| {
            format!(
                "no {wanted} is stored in {}; {run_first}",
                store_dir.display()
            )
        })
    };
    // The first component error decides the code; otherwise "nothing stored" does.
    let failure: Option<(u8, Value, String)> = match (errors.first(), &nothing) {
        (Some((target, e)), _) => {
            let mut error = output::error_json(e)["error"].clone();
            if let Some(obj) = error.as_object_mut() {
                obj.insert("target".into(), json!(output::target_name(*target)));
            }
            Some((output::exit_code(e), error, String::new()))
        }
        (None, Some(message)) => Some((
            exit::NOT_PROVISIONED,
            output::failure_json(exit::NOT_PROVISIONED, message)["error"].clone(),
            format!("error: {message}"),
        )),
        (None, None) => None,
    };
    if args.common.json {
        let bundles: Vec<Value> = found
            .iter()
            .map(|r| {
                let mut v = output::report_json(r);
                if let Some(obj) = v.as_object_mut() {
                    // Every bundle listed here comes from the store; "reused" and "ok" mean
                    // nothing per bundle.
                    obj.remove("reused");
                    obj.remove("ok");
                }
                v
            })
            .collect();
        let errs: Vec<Value> = errors
            .iter()
            .map(|(t, e)| json!({"target": output::target_name(*t), "error": output::error_json(e)["error"]}))
            .collect();
        let mut object = json!({"ok": failure.is_none(), "store": store_dir, "bundles": bundles, "errors": errs});
        if let (Some((code, error, _)), Some(obj)) = (&failure, object.as_object_mut()) {
            obj.insert("exitCode".into(), json!(code));
            obj.insert("error".into(), error.clone());
        }
        print_json(&object);
    } else {
        for report in &found {
            print!("{}", output::report_text(report));
        }
        for (target, e) in &errors {
            eprintln!(
                "{}: {}",
                output::target_name(*target),
                output::error_text(e)
            );
        }
        if let Some((_, _, text)) = &failure
            && !text.is_empty()
        {
            eprintln!("{text}");
        }
    }
    match failure {
        Some((code, _, _)) => Err(reported(code)),
        None => Ok(()),
    }
}
