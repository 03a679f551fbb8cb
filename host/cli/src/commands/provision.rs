//! `krypton-host provision TARGET`: call Krypton for one target and store its bundle.

use super::print::print_json;
use super::shared::{lock_store, usage_error};
use super::sim::UiccArgs;
use super::{CommonArgs, HostFailure, component_failure, fail};
use crate::output::{self, exit};
use clap::Args;
use krypton_host::bindings::{AuthMode, KeyCacheUse};
use krypton_host::capability::http::{self, OutboundPolicy};
use krypton_host::capability::store::SecretStore;
use krypton_host::{ProvisionOptions, UiccAccess};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Examples shown by `provision --help`.
pub const EXAMPLES: &str = "Examples:
  krypton-host provision azure-iot
  krypton-host provision aws-iot --param thingName=gw-0042 --json
  krypton-host provision aws-iot --mode sim --uicc modem --port /dev/ttyUSB2
  krypton-host provision inventory --mode sim --coverage japan --param endpoint=gw-1
  krypton-host provision arc --mode sim --uicc soft --sim-file sim.json --endpoint https://127.0.0.1:PORT --ca-file mock-ca.pem";

/// `provision` arguments.
#[derive(Args)]
pub struct ProvisionArgs {
    /// A target of the component (`--help` lists them).
    pub target: String,
    /// Krypton base URL. Default: the component's for the mode (in SIM mode for --coverage),
    /// e.g. https://krypton.soracom.io:8036 in network mode.
    #[arg(long, env = "KRYPTON_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Extra CA certificates (PEM) to trust for the endpoint, added to the web PKI roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Provision even if a valid bundle is stored (replaces it only on success).
    #[arg(long)]
    pub force: bool,
    /// How the device authenticates: `network` (the request leaves over SORACOM Air or Arc)
    /// or `sim` (SIM-authenticated over any network: AKA with SORACOM's Keys API through the
    /// SIM the --uicc flags reach, then every request signed).
    #[arg(long, default_value = "network", value_parser = ["network", "sim"])]
    pub mode: String,
    /// SIM mode's coverage when --endpoint is not given: one the component names (its first
    /// is the default).
    // Checked against the component's `default-endpoints()`; `--help` lists them.
    #[arg(long)]
    pub coverage: Option<String>,
    // clap reads a doc comment here as help text: the field is documented by its type.
    #[allow(missing_docs)]
    #[command(flatten)]
    pub uicc: UiccArgs,
    /// SIM mode: run AKA now and neither read nor write the cached Keys API session.
    #[arg(long, conflicts_with = "clear_key_cache")]
    pub no_key_cache: bool,
    /// SIM mode: delete the cached Keys API session first, then run AKA and cache the new one.
    #[arg(long)]
    pub clear_key_cache: bool,
    /// One request parameter, sent as a string in `requestParameters` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params_kv: Vec<String>,
    /// `requestParameters` as a JSON object; --param entries are merged over it.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Whole-operation deadline, seconds (all calls and Azure polling), 1 to 86400.
    #[arg(long, default_value_t = ProvisionOptions::DEFAULT_DEADLINE.as_secs() as u32, value_parser = clap::value_parser!(u32).range(*krypton_host::options::DEADLINE_SECS_RANGE.start() as i64..=*krypton_host::options::DEADLINE_SECS_RANGE.end() as i64))]
    pub deadline_secs: u32,
    /// Wait between Azure registration polls when Krypton sends no Retry-After, ms, 100 to
    /// 300000.
    #[arg(long, default_value_t = ProvisionOptions::DEFAULT_POLL_INTERVAL.as_millis() as u32, value_parser = clap::value_parser!(u32).range(100..=300_000))]
    pub poll_interval_ms: u32,
    /// TCP + TLS connect timeout per request, seconds, 1 to 3600.
    #[arg(long, default_value_t = ProvisionOptions::DEFAULT_CONNECT_TIMEOUT.as_secs() as u32, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub connect_timeout_secs: u32,
    /// Timeout for the first response byte and between body chunks, seconds, 1 to 3600.
    #[arg(long, default_value_t = ProvisionOptions::DEFAULT_READ_TIMEOUT.as_secs() as u32, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub read_timeout_secs: u32,
    /// Attempts per Krypton call, the first included, 1 to 20. Retried: connection errors,
    /// timeouts, HTTP 408, 429 and 5xx; backoff with full jitter, or Krypton's Retry-After
    /// (max 300 s).
    #[arg(long, default_value_t = ProvisionOptions::DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_attempts: u32,
    /// Backoff base, ms (doubles per attempt), 10 to 60000.
    #[arg(long, default_value_t = ProvisionOptions::DEFAULT_BACKOFF_BASE.as_millis() as u32, value_parser = clap::value_parser!(u32).range(10..=60_000))]
    pub backoff_base_ms: u32,
    /// Backoff ceiling, ms, 10 to 300000, at least --backoff-base-ms.
    #[arg(long, default_value_t = ProvisionOptions::DEFAULT_BACKOFF_MAX.as_millis() as u32, value_parser = clap::value_parser!(u32).range(10..=300_000))]
    pub backoff_max_ms: u32,
    /// How long to wait for the store's writer lock when another `provision` or the daemon
    /// holds it, seconds, 0 (fail at once) to 3600.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub lock_wait_secs: u64,
    // clap reads a doc comment here as help text: the field is documented by its type.
    #[allow(missing_docs)]
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `requestParameters` from `--params` (a JSON object) with `--param KEY=VALUE` entries
/// (strings) merged over it; `None` when neither is given. Errors (exit 3): `--params` is not
/// a JSON object, a `--param` is not `KEY=VALUE`.
pub fn request_parameters(args: &ProvisionArgs) -> Result<Option<String>, HostFailure> {
    if args.params.is_none() && args.params_kv.is_empty() {
        return Ok(None);
    }
    let mut map = match &args.params {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(fail(exit::INVALID_REQUEST)(anyhow::anyhow!(
                    "--params must be a JSON object, e.g. '{{\"thingName\":\"gw-1\"}}'"
                )));
            }
            Err(e) => {
                return Err(fail(exit::INVALID_REQUEST)(anyhow::anyhow!(
                    "--params is not JSON: {e}"
                )));
            }
        },
        None => Map::new(),
    };
    for kv in &args.params_kv {
        let (key, value) = kv
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| {
                fail(exit::INVALID_REQUEST)(anyhow::anyhow!(
                    "--param `{kv}` must look like KEY=VALUE"
                ))
            })?;
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(Some(Value::Object(map).to_string()))
}

/// The SIM access and key-cache use of a run: in SIM mode the backend the `--uicc` flags
/// choose; in network mode none, and a SIM-mode flag is a usage error (exit 2) rather than
/// silently ignored.
fn sim_settings(
    args: &ProvisionArgs,
    mode: AuthMode,
) -> Result<(UiccAccess, KeyCacheUse), HostFailure> {
    let key_cache = if args.no_key_cache {
        KeyCacheUse::Bypass
    } else if args.clear_key_cache {
        KeyCacheUse::Clear
    } else {
        KeyCacheUse::Reuse
    };
    if mode == AuthMode::Network {
        let given = [
            (
                args.uicc.any_given(),
                "--uicc, --sim-file, --port, --baud, --uicc-timeout-ms",
            ),
            (args.coverage.is_some(), "--coverage"),
            (
                args.no_key_cache || args.clear_key_cache,
                "--no-key-cache, --clear-key-cache",
            ),
        ];
        if let Some((_, flags)) = given.iter().find(|(given, _)| *given) {
            return Err(fail(exit::USAGE)(anyhow::anyhow!(
                "{flags}: SIM-authenticated mode only; add --mode sim"
            )));
        }
        return Ok((UiccAccess::none(), key_cache));
    }
    Ok((UiccAccess::new(args.uicc.to_config()?), key_cache))
}

/// Provision one target: check the arguments, load the component and resolve TARGET with it,
/// take the store's writer lock, call the component, print its report. Errors: the exit code of
/// each failure (usage 2, invalid request 3, storage 9, the component error's own code).
pub async fn provision(args: ProvisionArgs) -> Result<(), HostFailure> {
    let mode = if args.mode == "sim" {
        AuthMode::Sim
    } else {
        AuthMode::Network
    };
    let (uicc, key_cache) = sim_settings(&args, mode)?;
    if let Some(url) = &args.endpoint {
        http::Origin::parse(url).map_err(fail(exit::INVALID_REQUEST))?;
    }
    if args.backoff_max_ms < args.backoff_base_ms {
        return Err(fail(exit::USAGE)(anyhow::anyhow!(
            "--backoff-max-ms ({}) is less than --backoff-base-ms ({})",
            args.backoff_max_ms,
            args.backoff_base_ms
        )));
    }
    let request_parameters = request_parameters(&args)?;
    let options = ProvisionOptions {
        mode,
        key_cache,
        request_parameters,
        force: args.force,
        deadline: Duration::from_secs(args.deadline_secs.into()),
        poll_interval: Duration::from_millis(args.poll_interval_ms.into()),
        connect_timeout: Duration::from_secs(args.connect_timeout_secs.into()),
        read_timeout: Duration::from_secs(args.read_timeout_secs.into()),
        max_attempts: args.max_attempts,
        backoff_base: Duration::from_millis(args.backoff_base_ms.into()),
        backoff_max: Duration::from_millis(args.backoff_max_ms.into()),
    };
    // The whole call may take the operation deadline plus a minute of slack; past that the
    // host stops the component even if it ignores its own deadline.
    let loaded = args
        .common
        .source
        .load_with(options.sandbox_limits())
        .await?;
    // The component knows the targets: an unknown name is a usage error, before the store is
    // touched.
    let target = loaded.target(&args.target, "<TARGET>")?;
    // The component names the default endpoint of each mode and coverage.
    let endpoint = loaded
        .facts
        .endpoint_for(mode, args.coverage.as_deref(), args.endpoint.as_deref())
        .map_err(|e| {
            usage_error(&format!(
                "invalid value '{}' for '--coverage <COVERAGE>': {e}",
                args.coverage.as_deref().unwrap_or_default()
            ))
        })?;
    let origin = http::Origin::parse(&endpoint).map_err(fail(exit::INVALID_REQUEST))?;
    if endpoint.starts_with("http://") {
        tracing::warn!(endpoint = %endpoint, "plain http: credentials would cross the network unencrypted (use only for tests)");
    }
    let policy = OutboundPolicy::with_ca_file(vec![origin], args.ca_file.as_deref())
        .map_err(fail(exit::INVALID_REQUEST))?;
    loaded.log_loaded();
    let request = options.request(target.target, &endpoint);
    let store = SecretStore::open(&args.common.store)
        .map_err(anyhow::Error::from)
        .map_err(fail(exit::STORAGE))?;
    // One writer per store: held until this run has stored its result.
    let _writer = lock_store(&store, Duration::from_secs(args.lock_wait_secs)).await?;
    tracing::info!(
        target = %target.name,
        endpoint = %endpoint,
        mode = output::auth_mode(mode),
        store = %args.common.store.display(),
        "provisioning"
    );
    let started = Instant::now();
    let outcome = loaded
        .runtime
        .provision_with_uicc(&loaded.pre, policy, store, uicc, &request)
        .await
        .map_err(fail(exit::INTERNAL))?;
    let ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(report) => {
            tracing::info!(ms, reused = report.reused, "done");
            if args.common.json {
                print_json(&output::report_json(&target.name, &report));
            } else {
                print!("{}", output::report_text(&target.name, &report));
            }
            Ok(())
        }
        Err(error) => {
            tracing::debug!(ms, "failed");
            Err(component_failure(error))
        }
    }
}
