//! The commands over the provisioning component's exports, printed as `krypton-host` prints
//! them: both render through `krypton_contract` (reports, errors, `status`, exit codes).

use crate::args::{self, Command};
use krypton_contract::exit::{STORAGE, USAGE, failure_json};
use krypton_contract::model;
use krypton_contract::printable;
use krypton_contract::render::{self, FrontEnd, Status, StatusOutput};
use serde_json::{Map, Value};

// SAFETY: the only unsafe code is what wit-bindgen generates (the canonical ABI glue of the
// imported `provisioning` interface).
#[allow(unsafe_code)]
// Generated from the WIT, whose `///` comments are the documentation of these items.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package soracom:krypton-plugin;
            /// The writer lock of one run, exported by the `store-fs` adapter (see its docs).
            interface run-lock {
                /// Take the store's writer lock for this run; an error (the message to print,
                /// e.g. another run holds the store) when it cannot be had.
                acquire: func() -> result<_, string>;
                /// Release the lock taken by `acquire` or by a write, if still this run's.
                release: func();
            }
            world command {
                import soracom:krypton/provisioning@0.6.0;
                import run-lock;
            }
        ",
        path: "../../../wit",
        world: "soracom:krypton-plugin/command",
        generate_all,
    });
}

use bindings::soracom::krypton::provisioning;
use bindings::soracom::krypton::types::{
    AuthMode, HttpTimeouts, KeyCacheUse, ProvisionRequest, RetryPolicy, SimOptions, TargetInfo,
};
use bindings::soracom::krypton_plugin::run_lock;

krypton_contract::from_bindings!(
    bindings::soracom::krypton::types,
    bindings::soracom::krypton::uicc
);

/// The secret store's directory as the component's `secret-store` sees it.
const STORE: &str = "/store";

/// This front end's words: the runtime (not `krypton-host`) refuses a request by its own
/// outbound policy, and the only settings are `--endpoint`, `--param` and `--force`, which
/// the component's advice already names as request fields.
const FRONT: FrontEnd = FrontEnd {
    denied: "refused by this runtime's outbound policy",
    setting_hint: |_| None,
};

/// Run the command line `argv` (without the program name); the exit code.
pub fn main(argv: Vec<String>) -> u8 {
    let json = args::wants_json(&argv);
    let command = match args::parse(&argv) {
        Ok(command) => command,
        Err(message) => return usage(json, &message),
    };
    match command {
        Command::Help => {
            println!("{}", args::USAGE);
            0
        }
        Command::Provision {
            target,
            endpoint,
            params,
            force,
            json,
        } => provision(&target, endpoint, &params, force, json),
        Command::Status { target, json } => status(target.as_deref(), json),
    }
}

/// A usage error: the JSON object or the text, exit 2.
fn usage(json: bool, message: &str) -> u8 {
    if json {
        println!("{}", failure_json(USAGE, message));
    } else {
        eprintln!("error: {message}\n\n{}", args::USAGE);
    }
    USAGE
}

/// The component's target called `name`; an unknown name is a usage error as `krypton-host`
/// words it.
fn target(name: &str, arg: &str) -> Result<TargetInfo, String> {
    let targets = provisioning::targets();
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let found = targets.iter().find(|t| t.name == name).cloned();
    found.ok_or_else(|| {
        format!(
            "invalid value '{}' for '{arg}': not a target of this component (its targets: {})",
            printable(name),
            names.join(", ")
        )
    })
}

fn provision(
    name: &str,
    endpoint: String,
    params: &[(String, String)],
    force: bool,
    json: bool,
) -> u8 {
    let info = match target(name, "<TARGET>") {
        Ok(info) => info,
        Err(message) => return usage(json, &message),
    };
    let request_parameters = (!params.is_empty()).then(|| {
        let map: Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::Object(map).to_string()
    });
    // krypton-host's defaults (`ProvisionOptions::default()`): a 120 s deadline, 1 s between
    // Azure polls, 10 s to connect, 30 s per read, 4 attempts with backoff from 0.5 s to 8 s.
    let request = ProvisionRequest {
        target: info.target,
        mode: AuthMode::Network,
        endpoint,
        request_parameters,
        force,
        deadline_ms: 120_000,
        poll_interval_ms: 1_000,
        timeouts: HttpTimeouts {
            connect_ms: 10_000,
            first_byte_ms: 30_000,
            between_bytes_ms: 30_000,
        },
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay_ms: 500,
            max_delay_ms: 8_000,
        },
        sim: SimOptions {
            key_cache: KeyCacheUse::Reuse,
        },
    };
    // One writer per store for the whole check-mint-store run: a second run fails here,
    // before anything reaches Krypton (the lock is released when `_writer` drops).
    let _writer = match RunLock::acquire() {
        Ok(lock) => lock,
        Err(message) => {
            if json {
                println!("{}", failure_json(STORAGE, &message));
            } else {
                eprintln!("error: {message}");
            }
            return STORAGE;
        }
    };
    match provisioning::provision(&request) {
        Ok(report) => {
            let report = model::ProvisionReport::from(&report);
            if json {
                println!("{}", render::report_json(&info.name, &report));
            } else {
                print!("{}", render::report_text(&info.name, &report));
            }
            0
        }
        Err(failure) => {
            let failure = model::Failure::from(&failure);
            if json {
                println!("{}", render::error_json(&failure));
            } else {
                eprintln!("{}", render::error_text(&FRONT, &failure));
            }
            failure.error.exit_code()
        }
    }
}

/// The store's writer lock for one `provision` (the `store-fs` adapter's `run-lock`),
/// released on drop, i.e. when `provision` returned, whatever it answered. A trap or a kill
/// leaves the lock file; the next run takes it over once it is stale (5 minutes).
struct RunLock;

impl RunLock {
    fn acquire() -> Result<Self, String> {
        run_lock::acquire().map(|()| RunLock)
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        run_lock::release();
    }
}

fn status(name: Option<&str>, json: bool) -> u8 {
    let targets = match name {
        Some(name) => match target(name, "[TARGET]") {
            Ok(info) => vec![info],
            Err(message) => return usage(json, &message),
        },
        None => provisioning::targets(),
    };
    let mut bundles = Vec::new();
    let mut errors = Vec::new();
    for info in targets {
        match provisioning::status(info.target) {
            Ok(Some(report)) => bundles.push((info.name, (&report).into())),
            Ok(None) => {}
            Err(e) => errors.push((info.name, (&e).into())),
        }
    }
    let wanted = name.map_or_else(|| "bundle".to_string(), |n| format!("`{n}` bundle"));
    let nothing = (bundles.is_empty() && errors.is_empty()).then(|| {
        format!(
            "no {wanted} is stored in {STORE}; run `krypton-cli.wasm provision {}` first",
            name.unwrap_or("TARGET")
        )
    });
    let status = Status {
        store: STORE.into(),
        bundles,
        errors,
        nothing,
    };
    let StatusOutput {
        stdout,
        stderr,
        code,
    } = if json {
        status.json()
    } else {
        status.text(&FRONT)
    };
    print!("{stdout}");
    eprint!("{stderr}");
    code
}
