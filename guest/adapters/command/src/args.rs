//! The command line. Two commands with five options do not justify an argument-parsing crate
//! in a component whose size matters (clap adds hundreds of KB to a wasm build); this parser
//! accepts what `krypton-host`'s clap definition accepts for these options (`--opt VALUE` and
//! `--opt=VALUE`, options before or after the target) and refuses anything else as a usage
//! error (exit 2).

/// The default Krypton endpoint of network-authenticated mode (SORACOM's Krypton
/// documentation: `krypton.soracom.io`, port 8036), as `krypton-host` defaults to it.
pub const DEFAULT_ENDPOINT: &str = "https://krypton.soracom.io:8036";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `provision <target> [--endpoint URL] [--param k=v]... [--force] [--json]`.
    Provision {
        /// The target's name as the contract spells it (`azure-iot`).
        target: String,
        /// Krypton's base URL.
        endpoint: String,
        /// `requestParameters` as `(key, value)` strings, in order; a later key replaces an
        /// earlier one.
        params: Vec<(String, String)>,
        /// Call Krypton even when a valid bundle is stored.
        force: bool,
        /// One JSON object on stdout.
        json: bool,
    },
    /// `status [<target>] [--json]`.
    Status {
        /// One target, or all.
        target: Option<String>,
        /// One JSON object on stdout.
        json: bool,
    },
    /// `help`, `--help` or `-h`.
    Help,
}

/// The usage text.
pub const USAGE: &str = "usage: krypton-cli.wasm provision <TARGET> [--endpoint URL] [--param KEY=VALUE]... [--force] [--json]
       krypton-cli.wasm status [TARGET] [--json]
run with: wasmtime run -S http --dir STORE_DIR::/store krypton-cli.wasm ...";

/// Whether `--json` is among the arguments: a usage error is then a JSON object too.
pub fn wants_json(args: &[String]) -> bool {
    args.iter().any(|a| a == "--json")
}

/// Parse the arguments after the program name. Errors: a usage message (exit 2).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter();
    let command = match it.next().map(String::as_str) {
        Some("provision") => "provision",
        Some("status") => "status",
        Some("help" | "--help" | "-h") => return Ok(Command::Help),
        Some(other) => {
            return Err(format!(
                "unrecognized subcommand '{other}': the commands are provision and status"
            ));
        }
        None => return Err("a command is required: provision or status".into()),
    };
    let mut target = None;
    let mut endpoint = None;
    let mut params = Vec::new();
    let (mut force, mut json) = (false, false);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().cloned().ok_or_else(|| {
                    format!("a value is required for '{name}' but none was supplied")
                }),
            }
        };
        match (command, flag) {
            (_, "--json") if inline.is_none() => json = true,
            ("provision", "--force") if inline.is_none() => force = true,
            ("provision", "--endpoint") => {
                if endpoint.replace(value("--endpoint <URL>")?).is_some() {
                    return Err(
                        "the argument '--endpoint <URL>' cannot be used multiple times".into(),
                    );
                }
            }
            ("provision", "--param") => {
                let kv = value("--param <KEY=VALUE>")?;
                let (key, value) = kv
                    .split_once('=')
                    .filter(|(key, _)| !key.is_empty())
                    .ok_or_else(|| format!("--param `{kv}` must look like KEY=VALUE"))?;
                params.push((key.to_string(), value.to_string()));
            }
            (_, "--help" | "-h") => return Ok(Command::Help),
            (_, flag) if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unexpected argument '{arg}' found"));
            }
            (_, _) if target.is_none() => target = Some(arg.clone()),
            (_, _) => return Err(format!("unexpected argument '{arg}' found")),
        }
    }
    Ok(match command {
        "provision" => Command::Provision {
            target: target.ok_or("the following required arguments were not provided: <TARGET>")?,
            endpoint: endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
            params,
            force,
            json,
        },
        _ => Command::Status { target, json },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn provision_takes_its_options_in_any_order() {
        assert_eq!(
            parse(&args(
                "provision aws-iot --endpoint=http://127.0.0.1:9 --param thingName=gw-1 --force --json --param a=b=c"
            )),
            Ok(Command::Provision {
                target: "aws-iot".into(),
                endpoint: "http://127.0.0.1:9".into(),
                params: vec![
                    ("thingName".into(), "gw-1".into()),
                    ("a".into(), "b=c".into())
                ],
                force: true,
                json: true,
            })
        );
        assert_eq!(
            parse(&args("provision --json azure-iot")),
            Ok(Command::Provision {
                target: "azure-iot".into(),
                endpoint: DEFAULT_ENDPOINT.into(),
                params: vec![],
                force: false,
                json: true,
            })
        );
        assert_eq!(
            parse(&args("status --json")),
            Ok(Command::Status {
                target: None,
                json: true
            })
        );
        assert_eq!(
            parse(&args("status arc")),
            Ok(Command::Status {
                target: Some("arc".into()),
                json: false
            })
        );
    }

    #[test]
    fn anything_else_is_a_usage_error() {
        for line in [
            "",
            "frobnicate",
            "provision",
            "provision aws-iot extra",
            "provision aws-iot --endpoint",
            "provision aws-iot --param novalue",
            "provision aws-iot --param =v",
            "provision aws-iot --endpoint a --endpoint b",
            "provision aws-iot --mode sim",
            "status --force",
            "status a b",
            "provision aws-iot --json=yes",
        ] {
            assert!(parse(&args(line)).is_err(), "{line:?} was accepted");
        }
        assert!(wants_json(&args("provision --json --bogus")));
    }
}
