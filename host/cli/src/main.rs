//! `krypton-host`: provision SORACOM Krypton credentials on a gateway through the sandboxed
//! provisioning component. Run `krypton-host --help`. This file only parses the command line
//! and dispatches; each command lives in `commands/` of the `krypton_host_cli` library.

use krypton_host_cli::commands as cli;

use cli::print::{print_failure, print_json};
use cli::{Cli, Command};
use krypton_host_cli::output::{self, exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    // First of all, for every command: no core file may carry the keys, tokens, CK or SIM
    // secrets a command holds (`provision`, `export`, `sim`, `keygen`, `run`, ...).
    let core_dumps = krypton_host_cli::daemon::disable_core_dumps();
    cli::malloc::limit_malloc_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async_main(core_dumps)),
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            ExitCode::from(exit::INTERNAL)
        }
    }
}

/// `--json` anywhere on the command line: argument errors are then reported as one JSON
/// object too.
fn json_requested() -> bool {
    std::env::args_os().skip(1).any(|a| a == "--json")
}

/// Parse the command line. `--help` and `--version` print and exit 0 (the help names what the
/// built-in component says: `cli::help`); any other clap error exits 2 ([`exit::USAGE`]), as
/// `{"ok":false,"exitCode":2,"error":{"kind":"usage", "message":…}}` on stdout when `--json` is
/// among the arguments, as clap's text otherwise.
async fn parse_cli() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    use clap::{CommandFactory as _, FromArgMatches as _};
    let mut command = Cli::command();
    if cli::help::requested() {
        command = cli::help::with_component(command).await;
    }
    match command
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json_requested() {
                let text = e.render().to_string();
                let message = text.trim().strip_prefix("error: ").unwrap_or(text.trim());
                print_json(&output::failure_json(exit::USAGE, message));
            } else {
                let _ = e.print();
            }
            Err(ExitCode::from(exit::USAGE))
        }
    }
}

async fn async_main(core_dumps: anyhow::Result<()>) -> ExitCode {
    let cli = match parse_cli().await {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    cli::logging::init_logging(&cli);
    match core_dumps {
        Ok(()) => tracing::debug!(
            dumpable = krypton_host_cli::daemon::dumpable(),
            core_limit = krypton_host_cli::daemon::core_limit().map_or(-1, |l| l as i64),
            "core dumps off"
        ),
        Err(e) => {
            return print_failure(
                cli::fail(exit::INTERNAL)(e.context("turning core dumps off")),
                json_requested(),
            );
        }
    }
    let json = match &cli.command {
        Command::Provision(a) => a.common.json,
        Command::Status(a) => a.common.json,
        Command::Doctor(a) => a.json,
        Command::Export(a) => a.json,
        #[cfg(feature = "cli")]
        Command::Mock(_) | Command::Demo(_) => false,
        #[cfg(feature = "jit")]
        Command::BenchSwap(_) => false,
        Command::Reload(a) => a.json,
        Command::WireguardConfig(_) | Command::Run(_) | Command::BenchLoad(_) => false,
        Command::Keygen(a) => a.json,
        #[cfg(feature = "jit")]
        Command::Sign(a) => a.json,
        #[cfg(feature = "registry")]
        Command::Publish(a) => a.json,
        #[cfg(feature = "jit")]
        Command::Compile(a) => a.json,
        Command::Sim(a) => a.json,
    };
    let result = match cli.command {
        Command::Provision(args) => cli::provision::provision(args).await,
        Command::Status(args) => cli::status::status(args).await,
        #[cfg(feature = "cli")]
        Command::Mock(args) => cli::mock::mock(args).await,
        #[cfg(feature = "cli")]
        Command::Demo(args) => cli::demo::demo(args).await,
        Command::WireguardConfig(args) => cli::wireguard_config::wireguard_config(args).await,
        Command::Doctor(args) => cli::doctor::doctor(args).await,
        Command::Export(args) => cli::export::export(args).await,
        Command::Run(args) => cli::run::run_daemon(args).await,
        Command::Reload(args) => cli::reload::reload(args).await,
        #[cfg(feature = "jit")]
        Command::BenchSwap(args) => cli::bench_swap::bench_swap(args).await,
        Command::BenchLoad(args) => cli::bench_load::bench_load(args).await,
        Command::Keygen(args) => cli::sign::keygen(args),
        #[cfg(feature = "jit")]
        Command::Sign(args) => cli::sign::sign(args).await,
        #[cfg(feature = "registry")]
        Command::Publish(args) => cli::publish::publish(args).await,
        #[cfg(feature = "jit")]
        Command::Compile(args) => cli::compile::compile(args).await,
        Command::Sim(args) => cli::sim::sim(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => print_failure(failure, json),
    }
}
