//! `krypton-host provision TARGET`: call Krypton for one target and store its bundle.

use super::print::print_json;
use super::shared::{load, lock_store};
use super::{CommonArgs, DEFAULT_ENDPOINT, HostFailure, component_failure, fail};
use clap::Args;
use krypton_host::ProvisionOptions;
use krypton_host::http::{self, OutboundPolicy};
use krypton_host::output::{self, exit};
use krypton_host::runtime::{AuthMode, Runtime};
use krypton_host::store::SecretStore;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `provision` arguments.
#[derive(Args)]
pub struct ProvisionArgs {
    /// azure-iot | aws-iot | aws-cognito | aws-cognito-openid | inventory | arc |
    /// subscriber-metadata | userdata
    pub target: String,
    /// Krypton base URL.
    #[arg(long, env = "KRYPTON_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Extra CA certificates (PEM) to trust for the endpoint, added to the web PKI roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Provision even if a valid bundle is stored (replaces it only on success).
    #[arg(long)]
    pub force: bool,
    /// How the device authenticates: `network` (over SORACOM Air or Arc) or `sim`
    /// (SIM-authenticated; not implemented by this component version: exit 10).
    #[arg(long, default_value = "network", value_parser = ["network", "sim"])]
    pub mode: String,
    /// One request parameter, sent as a string in `requestParameters` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params_kv: Vec<String>,
    /// `requestParameters` as a JSON object; --param entries are merged over it.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Whole-operation deadline, seconds (all calls and Azure polling), 1 to 86400.
    #[arg(long, default_value_t = ProvisionOptions::DEFAULT_DEADLINE.as_secs() as u32, value_parser = clap::value_parser!(u32).range(1..=86_400))]
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

/// Provision one target: check the arguments, load the component and resolve TARGET with it,
/// take the store's writer lock, call the component, print its report. Errors: the exit code of
/// each failure (usage 2, invalid request 3, storage 9, the component error's own code).
pub async fn provision(args: ProvisionArgs) -> Result<(), HostFailure> {
    let origin = http::Origin::parse(&args.endpoint).map_err(fail(exit::INVALID_REQUEST))?;
    if args.endpoint.starts_with("http://") {
        tracing::warn!(endpoint = %args.endpoint, "plain http: credentials would cross the network unencrypted (use only for tests)");
    }
    let policy = OutboundPolicy::with_ca_file(vec![origin], args.ca_file.as_deref())
        .map_err(fail(exit::INVALID_REQUEST))?;
    if args.backoff_max_ms < args.backoff_base_ms {
        return Err(fail(exit::USAGE)(anyhow::anyhow!(
            "--backoff-max-ms ({}) is less than --backoff-base-ms ({})",
            args.backoff_max_ms,
            args.backoff_base_ms
        )));
    }
    let request_parameters = request_parameters(&args)?;
    let options = ProvisionOptions {
        mode: if args.mode == "sim" {
            AuthMode::Sim
        } else {
            AuthMode::Network
        },
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
    let runtime = Runtime::with_limits(options.sandbox_limits()).map_err(fail(exit::INTERNAL))?;
    let loaded = load(runtime, args.common.component.as_deref()).await?;
    // The component knows the targets: an unknown name is a usage error, before the store is
    // touched.
    let target = loaded.target(&args.target, "<TARGET>")?;
    loaded.log_loaded();
    let request = options.request(target.target, &args.endpoint);
    let store = SecretStore::open(&args.common.store)
        .map_err(anyhow::Error::from)
        .map_err(fail(exit::STORAGE))?;
    // One writer per store: held until this run has stored its result.
    let _writer = lock_store(&store, Duration::from_secs(args.lock_wait_secs)).await?;
    tracing::info!(
        target = %target.name,
        endpoint = %args.endpoint,
        store = %args.common.store.display(),
        "provisioning"
    );
    let started = Instant::now();
    let outcome = loaded
        .runtime
        .provision(&loaded.pre, policy, store, &request)
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
