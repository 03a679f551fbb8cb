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
    /// Only report the serving component's digest and version (and, for a registry-fed
    /// daemon, the registry words: `manifest`, `polls`, `refused`, `pulled`, …).
    #[arg(long)]
    pub status: bool,
    /// Print one JSON object on stdout instead of the daemon's line: `ok`, `answer` (the line),
    /// and for `--status` `digest`, `version` and every `key=value` word as a string, except
    /// `pulled`: an object of manifest digest → bytes read from the registry for it.
    #[arg(long)]
    pub json: bool,
}

/// The daemon's answer line as the `--json` object (see [`ReloadArgs::json`]).
pub fn answer_json(answer: &str, status: bool) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("ok".into(), answer.starts_with("ok").into());
    object.insert("answer".into(), answer.into());
    if status && answer.starts_with("ok") {
        let mut words = answer.split_whitespace().skip(1);
        if let Some(digest) = words.next() {
            object.insert("digest".into(), digest.into());
        }
        if let Some(version) = words.next() {
            object.insert("version".into(), version.into());
        }
        for (key, value) in words.filter_map(|w| w.split_once('=')) {
            let value = if key == "pulled" {
                value
                    .split(',')
                    .filter_map(|e| e.rsplit_once('/'))
                    .filter_map(|(d, n)| Some((d.to_string(), n.parse::<u64>().ok()?.into())))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            } else {
                value.into()
            };
            object.insert(key.into(), value);
        }
    }
    object.into()
}

/// Send `reload` (or `status`) to a daemon's control socket and print its answer. Errors: the
/// socket cannot be reached (exit 4), the daemon refused (exit 3).
pub async fn reload(args: ReloadArgs) -> Result<(), HostFailure> {
    let command = if args.status { "status" } else { "reload" };
    let answer = crate::daemon::send_control(&args.socket, command)
        .await
        .map_err(fail(exit::TRANSPORT))?;
    if args.json {
        println!("{}", answer_json(answer.trim_end(), args.status));
    } else {
        println!("{answer}");
    }
    if answer.starts_with("ok") {
        Ok(())
    } else {
        Err(reported(exit::INVALID_REQUEST))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_becomes_one_json_object() {
        let d = format!("sha256:{}", "a".repeat(64));
        let line = format!(
            "ok abc 0.3.0 signed=true dumpable=0 manifest={d} refused=1 pulled={d}/978,sha256:bb/5"
        );
        let v = answer_json(&line, true);
        assert_eq!(v["ok"], true);
        assert_eq!(v["digest"], "abc");
        assert_eq!(v["version"], "0.3.0");
        assert_eq!(v["refused"], "1");
        assert_eq!(v["pulled"][&d], 978);
        assert_eq!(v["pulled"]["sha256:bb"], 5);
        let v = answer_json("error refused", true);
        assert_eq!(v["ok"], false);
        assert_eq!(v["answer"], "error refused");
        assert!(v.get("digest").is_none());
    }
}
