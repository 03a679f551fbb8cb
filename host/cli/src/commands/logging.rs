//! Log output on stderr (`-v`, `-q`, `RUST_LOG`).

use super::{Cli, Command};

/// Send log lines to stderr at the level `-v`/`-q` ask for (`RUST_LOG` overrides); the
/// daemon shows the component's own progress lines only with `-v`.
pub fn init_logging(cli: &Cli) {
    let default = if cli.verbose {
        "debug"
    } else if cli.quiet {
        "warn"
    } else {
        "info"
    };
    // The daemon logs changes of state and its own actions; the component's progress lines
    // (target `component`, e.g. "a valid bundle is stored") are detail there, shown with -v
    // or RUST_LOG=component=info. Component warnings always show.
    let quiet_component = matches!(cli.command, Command::Run(_)) && !cli.verbose;
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let base = env.unwrap_or_else(|| format!("{default},wasmtime=warn,cranelift=warn"));
    let directives = if quiet_component && !base.contains("component") {
        format!("{base},component=warn")
    } else {
        base
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .compact()
        .init();
}
