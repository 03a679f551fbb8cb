//! `krypton-host reload --socket PATH`: ask a running daemon to reload its component.

use super::{HostFailure, fail, reported};
use crate::output::exit;
use clap::Args;
use std::path::PathBuf;

/// `reload` arguments.
#[derive(Args)]
pub struct ReloadArgs {
    /// The daemon's control socket (`control_socket` in its configuration).
    #[arg(long)]
    pub socket: PathBuf,
    /// Only report the serving component's digest and version.
    #[arg(long)]
    pub status: bool,
}

/// Send `reload` (or `status`) to a daemon's control socket and print its answer. Errors: the
/// socket cannot be reached (exit 4), the daemon refused (exit 3).
pub async fn reload(args: ReloadArgs) -> Result<(), HostFailure> {
    let command = if args.status { "status" } else { "reload" };
    let answer = crate::daemon::send_control(&args.socket, command)
        .await
        .map_err(fail(exit::TRANSPORT))?;
    println!("{answer}");
    if answer.starts_with("ok") {
        Ok(())
    } else {
        Err(reported(exit::INVALID_REQUEST))
    }
}
