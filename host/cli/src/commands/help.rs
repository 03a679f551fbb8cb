//! `--help` in the component's words: the targets, export formats, coverages and default
//! endpoints that help texts name come from the built-in component (its `targets()`,
//! `default-endpoints()` and `export-formats()`), never from a list written here. Without one
//! (the gateway build), or when it fails to load, the help keeps its generic wording.

use clap::Command;
#[cfg(feature = "jit")]
use krypton_host::bindings::AuthMode;
#[cfg(feature = "jit")]
use krypton_host::component::facts::Facts;
#[cfg(feature = "jit")]
use krypton_host::component::targets::Targets;

/// The commands whose help names what the component says.
const WORDED: [&str; 5] = [
    "provision",
    "doctor",
    "status",
    "export",
    "wireguard-config",
];

/// Whether the command line asks for the help of a command in [`WORDED`] (`-h`, `--help`, or
/// the `help` command): only then is the component asked for its words.
pub fn requested() -> bool {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let help = args.first().is_some_and(|a| a == "help")
        || args.iter().any(|a| a == "-h" || a == "--help");
    help && args.iter().any(|a| WORDED.iter().any(|w| a == w))
}

/// `command` with the built-in component's targets, formats and endpoints in its help texts.
#[cfg(feature = "jit")]
pub async fn with_component(command: Command) -> Command {
    match builtin().await {
        Ok((targets, facts)) => worded(command, &targets, &facts),
        Err(_) => command,
    }
}

/// Without a built-in component the help keeps its generic wording.
#[cfg(not(feature = "jit"))]
pub async fn with_component(command: Command) -> Command {
    command
}

/// The built-in component's targets and facts, checked as for any command.
#[cfg(feature = "jit")]
async fn builtin() -> anyhow::Result<(Targets, Facts)> {
    let runtime = krypton_host::Runtime::new()?;
    let loaded = krypton_host::component::load(
        &runtime,
        None,
        &krypton_host::component::ComponentPolicy::default(),
    )
    .await?;
    Ok((loaded.targets, loaded.facts))
}

/// `command` with its help texts naming what `targets` and `facts` say.
#[cfg(feature = "jit")]
pub fn worded(command: Command, targets: &Targets, facts: &Facts) -> Command {
    let names = targets.names().join(", ");
    let network = facts
        .endpoint(AuthMode::Network, None)
        .unwrap_or_default()
        .to_string();
    let endpoint = format!(
        "Krypton base URL. Default: {network} in network mode; in SIM mode the API of --coverage."
    );
    let coverages: Vec<String> = facts
        .coverages(AuthMode::Sim)
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let url = facts.endpoint(AuthMode::Sim, Some(c)).unwrap_or_default();
            let default = if i == 0 { ", the default" } else { "" };
            format!("{c} ({url}{default})")
        })
        .collect();
    let coverage = format!(
        "SIM mode's API when --endpoint is not given: {}.",
        coverages.join(", ")
    );
    let exported: Vec<String> = targets
        .all()
        .iter()
        .filter(|t| !t.export_formats.is_empty())
        .enumerate()
        .map(|(i, t)| {
            let formats = t.export_formats.join(", ");
            if i == 0 {
                format!("{} (formats {formats})", t.name)
            } else {
                format!("{} ({formats})", t.name)
            }
        })
        .collect();
    let format_help = format!(
        "{}. A format that does not fit the target is refused before anything is created \
         [possible values: {}].",
        facts
            .formats()
            .iter()
            .map(|f| format!("{}: {}", f.name, f.summary))
            .collect::<Vec<_>>()
            .join("; "),
        facts
            .formats()
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let set = |text: String| move |arg: clap::Arg| arg.help(text.clone()).long_help(text);
    command
        .mut_subcommand("provision", |c| {
            c.mut_arg(
                "target",
                set(format!("A target of the component: {names}.")),
            )
            .mut_arg("endpoint", set(endpoint.clone()))
            .mut_arg("coverage", set(coverage.clone()))
        })
        .mut_subcommand("doctor", |c| {
            c.mut_arg(
                "endpoint",
                set(format!(
                    "Endpoint to check. Default: {network} in network mode; in SIM mode the API \
                     of --coverage."
                )),
            )
            .mut_arg("coverage", set(coverage.clone()))
        })
        .mut_subcommand("status", |c| {
            c.mut_arg(
                "target",
                set(format!("One target ({names}); all targets when omitted.")),
            )
        })
        .mut_subcommand("export", |c| {
            c.mut_arg(
                "target",
                set(format!(
                    "The stored bundle to export: {}.",
                    exported.join(", ")
                )),
            )
            .mut_arg("format", set(format_help.clone()))
            .mut_arg(
                "endpoint",
                set(format!(
                    "wireguard: Krypton endpoint whose addresses are routed through the tunnel \
                     (default: {network})."
                )),
            )
        })
        .mut_subcommand("wireguard-config", |c| {
            c.mut_arg(
                "endpoint",
                set(format!(
                    "Krypton endpoint whose host name is resolved and routed through the tunnel \
                     (default: {network})."
                )),
            )
        })
}
