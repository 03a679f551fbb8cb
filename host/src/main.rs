//! `krypton-host`: provision SORACOM Krypton credentials on a gateway through the sandboxed
//! provisioning component. Run `krypton-host --help`.

mod cli {
    //! Command bodies that live in their own files.
    pub mod sign;
}

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use krypton_host::http::{self, OutboundPolicy};
use krypton_mock::{ExpirationFormat, Fault, MockConfig, MockKrypton};
use krypton_host::output::{self, exit};
use krypton_host::runtime::{
    AuthMode, DEFAULT_COMPONENT, HttpTimeouts, KryptonPre, ProvisionError, ProvisionRequest,
    RetryPolicy, Runtime, SandboxLimits, Target,
};
use krypton_host::store::SecretStore;
use serde_json::{Map, Value, json};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Krypton's network-authenticated endpoint (SORACOM Krypton documentation; soratun's Krypton
/// client uses the same).
const DEFAULT_ENDPOINT: &str = "https://krypton.soracom.io:8036";
const DEFAULT_STORE: &str = "/var/lib/krypton-host/store";

#[derive(Parser)]
#[command(
    name = "krypton-host",
    version,
    about = "Provision SORACOM Krypton credentials (Azure IoT, AWS IoT, ...) on a gateway through a sandboxed WebAssembly component",
    after_help = output::EXIT_CODES_HELP
)]
struct Cli {
    /// More log output (debug level); RUST_LOG overrides.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Call Krypton for one target and store its credentials as one bundle.
    ///
    /// Without --force, a stored bundle whose certificate is still valid is reported and
    /// Krypton is not called (AWS IoT bootstrap mints a new certificate on every call).
    #[command(after_help = output::EXIT_CODES_HELP)]
    Provision(ProvisionArgs),
    /// Show what is stored (identifiers, certificate fingerprint and expiry; never keys).
    #[command(after_help = output::EXIT_CODES_HELP)]
    Status(StatusArgs),
    /// Serve a mock Krypton over HTTPS on loopback (for tests and CI). Prints one JSON line
    /// {"endpoint": "https://127.0.0.1:PORT", "caFile": "PATH"}, then serves until stopped.
    #[command(after_help = output::EXIT_CODES_HELP)]
    Mock(MockArgs),
    /// Provision every target against an in-process mock Krypton into a temporary store,
    /// through the real component, and show what happened.
    #[command(after_help = output::EXIT_CODES_HELP)]
    Demo(DemoArgs),
    /// Write a stored bundle in a consumer's format: pem (azure-iot, aws-iot), aziot
    /// (azure-iot: Azure IoT Edge / Identity Service manual X.509), aws-iot (aws-iot: files plus
    /// a JSON for AWS IoT Device SDKs), wireguard (arc: wg-quick), env (aws-cognito: AWS
    /// environment variables). Secret files are written 0600, the others 0644.
    #[command(after_help = output::EXIT_CODES_HELP)]
    Export(ExportArgs),
    /// Run as a gateway daemon: keep the configured targets provisioned, hot-swap the
    /// component (file change, SIGHUP or `reload`), answer the control socket.
    #[command(after_help = output::EXIT_CODES_HELP)]
    Run(RunArgs),
    /// Ask a running daemon to reload its component (or report its status).
    #[command(after_help = output::EXIT_CODES_HELP)]
    Reload(ReloadArgs),
    /// Make an ed25519 key pair for signing components: the private key to --out (0600),
    /// the public key (for `trusted_public_key`) on stdout.
    #[command(after_help = output::EXIT_CODES_HELP)]
    Keygen(cli::sign::KeygenArgs),
    /// Sign a component for daemons with `trusted_public_key`: writes `<component>.sig`,
    /// binding the component's SHA-256 digest and its version. Exit 3 on bad input.
    #[command(after_help = output::EXIT_CODES_HELP)]
    Sign(cli::sign::SignArgs),
    /// Benchmark: swap the component N times (two versions in turn, precompiled after the first
    /// load of each) and print swap latency and resident memory after 10 and after N swaps.
    #[command(hide = true)]
    BenchSwap(BenchSwapArgs),
    /// Check the route to Krypton before provisioning: resolve the endpoint, check each
    /// address against the tunnel's AllowedIPs (wg-quick file or soratun arc.json), try TCP and
    /// TLS, and print what to change.
    #[command(after_help = output::EXIT_CODES_HELP)]
    Doctor(DoctorArgs),
    /// Write a wg-quick configuration from the stored `arc` bundle, with Krypton's addresses
    /// routed through the tunnel (the SORACOM Arc AllowedIPs trap, fixed by construction).
    #[command(after_help = output::EXIT_CODES_HELP)]
    WireguardConfig(WireguardArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file (see gateway.example.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Use this secret store instead of the file's `store` key.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Use this state directory instead of the file's `state_dir` key.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Use this control socket instead of the file's `control_socket` key.
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// Use this Krypton endpoint instead of the file's `endpoint` key.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Use this CA file instead of the file's `ca_file` key.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
}

#[derive(Args)]
struct BenchSwapArgs {
    /// Number of swaps, 1 to 100000.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
}

#[derive(Args)]
struct ReloadArgs {
    /// The daemon's control socket (`control_socket` in its configuration).
    #[arg(long)]
    socket: PathBuf,
    /// Only report the serving component's digest and version.
    #[arg(long)]
    status: bool,
}

#[derive(Args)]
struct ExportArgs {
    /// The stored bundle to export: azure-iot (formats pem, aziot), aws-iot (pem, aws-iot),
    /// arc (wireguard), aws-cognito (env).
    #[arg(value_parser = output::parse_target, value_name = "TARGET")]
    target: Target,
    /// pem: certificate, chain, private key and root CA as PEM files; aziot: the PEM files plus
    /// the Azure IoT Edge `[provisioning]` section; aws-iot: the PEM files plus aws-iot.json
    /// for AWS IoT Device SDKs; wireguard: a wg-quick file; env: AWS environment variables.
    /// A format that does not fit the target is refused before anything is created.
    #[arg(long, value_parser = ["pem", "aziot", "aws-iot", "wireguard", "env"])]
    format: String,
    /// Directory to write into (created 0700 when missing; a symlink is refused).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Give the written files and the directory to USER (and GROUP; default: the user's
    /// primary group), by fchown(2) on the open files, never following a symlink (needs root).
    /// Without it, `--format aziot` prints the `chmod`/`chown` Azure IoT Edge's services
    /// (aziotcs for certificates, aziotks for the key) need.
    #[arg(long, value_name = "USER[:GROUP]")]
    owner: Option<String>,
    /// Secret store directory.
    #[arg(long, env = "KRYPTON_STORE", default_value = DEFAULT_STORE)]
    store: PathBuf,
    /// Provisioning component (.wasm). Defaults to the one built into this binary.
    #[arg(long, env = "KRYPTON_COMPONENT")]
    component: Option<PathBuf>,
    /// wireguard: Krypton endpoint whose addresses are routed through the tunnel.
    #[arg(long, env = "KRYPTON_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// wireguard: route these addresses instead of resolving the endpoint (repeatable).
    #[arg(long = "krypton-address", value_name = "IP")]
    krypton_addresses: Vec<String>,
    /// Print one JSON object on stdout instead of text: {"ok", "target", "format",
    /// "directory", "owner", "files": [{"path", "mode" (octal text, e.g. "0600"), "bytes"
    /// (a number), "secret", "converted" (text or null)}], "next": [commands]}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DoctorArgs {
    /// Krypton endpoint to check.
    #[arg(long, env = "KRYPTON_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// A wg-quick configuration whose [Peer] AllowedIPs must route Krypton.
    #[arg(long, conflicts_with = "soratun_config")]
    wireguard: Option<PathBuf>,
    /// A soratun arc.json (arcSessionStatus.arcAllowedIPs and additionalAllowedIPs).
    #[arg(long)]
    soratun_config: Option<PathBuf>,
    /// Check these addresses instead of resolving the endpoint (repeatable).
    #[arg(long = "address", value_name = "IP")]
    addresses: Vec<std::net::IpAddr>,
    /// Extra CA certificates (PEM) for the TLS check.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Skip the TCP and TLS attempts.
    #[arg(long)]
    no_connect: bool,
    /// Timeout of each DNS, TCP and TLS step, ms, 1 to 60000.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    timeout_ms: u64,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct WireguardArgs {
    /// Secret store directory.
    #[arg(long, env = "KRYPTON_STORE", default_value = DEFAULT_STORE)]
    store: PathBuf,
    /// Provisioning component (.wasm). Defaults to the one built into this binary.
    #[arg(long, env = "KRYPTON_COMPONENT")]
    component: Option<PathBuf>,
    /// File to write (mode 0600; it holds the WireGuard private key). `-` writes to stdout.
    #[arg(long)]
    out: PathBuf,
    /// Krypton endpoint whose host name is resolved and routed through the tunnel.
    #[arg(long, env = "KRYPTON_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// Route these addresses instead of resolving the endpoint (repeatable).
    #[arg(long = "krypton-address", value_name = "IP")]
    krypton_addresses: Vec<String>,
}

#[derive(Args)]
struct CommonArgs {
    /// Secret store directory (created 0700; one 0600 file per bundle).
    #[arg(long, env = "KRYPTON_STORE", default_value = DEFAULT_STORE)]
    store: PathBuf,
    /// Provisioning component (.wasm). Defaults to the one built into this binary.
    #[arg(long, env = "KRYPTON_COMPONENT")]
    component: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ProvisionArgs {
    /// azure-iot | aws-iot | aws-cognito | aws-cognito-openid | inventory | arc |
    /// subscriber-metadata | userdata
    #[arg(value_parser = output::parse_target)]
    target: Target,
    /// Krypton base URL.
    #[arg(long, env = "KRYPTON_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// Extra CA certificates (PEM) to trust for the endpoint, added to the web PKI roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Provision even if a valid bundle is stored (replaces it only on success).
    #[arg(long)]
    force: bool,
    /// How the device authenticates: `network` (over SORACOM Air or Arc) or `sim`
    /// (SIM-authenticated; not implemented by this component version: exit 10).
    #[arg(long, default_value = "network", value_parser = ["network", "sim"])]
    mode: String,
    /// One request parameter, sent as a string in `requestParameters` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params_kv: Vec<String>,
    /// `requestParameters` as a JSON object; --param entries are merged over it.
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// Whole-operation deadline, seconds (all calls and Azure polling), 1 to 86400.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    deadline_secs: u32,
    /// Wait between Azure registration polls when Krypton sends no Retry-After, ms, 100 to
    /// 300000.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..=300_000))]
    poll_interval_ms: u32,
    /// TCP + TLS connect timeout per request, seconds, 1 to 3600.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    connect_timeout_secs: u32,
    /// Timeout for the first response byte and between body chunks, seconds, 1 to 3600.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    read_timeout_secs: u32,
    /// Attempts per Krypton call, the first included, 1 to 20. Retried: connection errors,
    /// timeouts, HTTP 408, 429 and 5xx; backoff with full jitter, or Krypton's Retry-After
    /// (max 300 s).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    max_attempts: u32,
    /// Backoff base, ms (doubles per attempt), 10 to 60000.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(10..=60_000))]
    backoff_base_ms: u32,
    /// Backoff ceiling, ms, 10 to 300000, at least --backoff-base-ms.
    #[arg(long, default_value_t = 8000, value_parser = clap::value_parser!(u32).range(10..=300_000))]
    backoff_max_ms: u32,
    /// How long to wait for the store's writer lock when another `provision` or the daemon
    /// holds it, seconds, 0 (fail at once) to 3600.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    lock_wait_secs: u64,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct StatusArgs {
    /// One target; all targets when omitted.
    #[arg(value_parser = output::parse_target)]
    target: Option<Target>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the mock CA certificate (PEM). Default: a file in a new temp directory.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Times an Azure registration answers `assigning` before `assigned`, 0 to 1000.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=1_000))]
    assigning_polls: u32,
    /// Retry-After seconds sent with `assigning` answers, 0 to 86400.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=86_400))]
    retry_after: Option<u32>,
    /// Answer every request under PATH_PREFIX with STATUS and a {code,message} body
    /// (repeatable), e.g. /v1/provisioning/aws=500.
    #[arg(long = "fail", value_name = "PATH_PREFIX=STATUS")]
    fail: Vec<String>,
    /// Answer Azure registration polls with this DPS status, e.g. `failed`.
    #[arg(long)]
    registration_status: Option<String>,
    /// Answer every request with malformed JSON.
    #[arg(long)]
    malformed_json: bool,
    /// Form of Cognito `expiration`: ms (epoch milliseconds), s (epoch seconds) or iso.
    #[arg(long, default_value = "ms", value_parser = ["ms", "s", "iso"])]
    expiration_format: String,
}

#[derive(Args)]
struct DemoArgs {
    /// Keep the demo's store in this directory instead of a temporary one.
    #[arg(long)]
    store: Option<PathBuf>,
}

/// A failed command and its exit code. [`async_main`] prints it once, as text on stderr or
/// as the one `--json` object on stdout.
struct HostFailure {
    code: u8,
    detail: Detail,
}

/// What a [`HostFailure`] has to say.
enum Detail {
    /// A host-side error; its `--json` kind is the one for its exit code.
    Host(anyhow::Error),
    /// The component's typed error, rendered from its fields.
    Component(ProvisionError),
    /// Already shown to the operator (the command printed its own result object).
    Shown,
}

fn fail(code: u8) -> impl Fn(anyhow::Error) -> HostFailure + Copy {
    move |error| HostFailure {
        code,
        detail: Detail::Host(error),
    }
}

/// A component error, with the exit code of its kind.
fn component_failure(error: ProvisionError) -> HostFailure {
    HostFailure {
        code: output::exit_code(&error),
        detail: Detail::Component(error),
    }
}

/// A failure already shown to the operator.
fn reported(code: u8) -> HostFailure {
    HostFailure {
        code,
        detail: Detail::Shown,
    }
}

fn init_logging(cli: &Cli) {
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

fn load_component(runtime: &Runtime, path: Option<&Path>) -> Result<KryptonPre, HostFailure> {
    let started = Instant::now();
    let (bytes, origin) = match path {
        Some(p) => (
            krypton_host::files::read_user_file(
                p,
                krypton_host::files::MAX_COMPONENT_BYTES,
                "component",
            )
            .map_err(fail(exit::INVALID_REQUEST))?,
            p.display().to_string(),
        ),
        None => (DEFAULT_COMPONENT.to_vec(), "built-in".to_string()),
    };
    let pre = runtime
        .load(&bytes)
        .with_context(|| format!("loading component ({origin})"))
        .map_err(fail(exit::INTERNAL))?;
    tracing::info!(
        component = %origin,
        bytes = bytes.len(),
        ms = started.elapsed().as_millis() as u64,
        "component loaded"
    );
    Ok(pre)
}

fn request_parameters(args: &ProvisionArgs) -> Result<Option<String>, HostFailure> {
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

async fn provision(args: ProvisionArgs) -> Result<(), HostFailure> {
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
    let store = SecretStore::open(&args.common.store)
        .map_err(anyhow::Error::from)
        .map_err(fail(exit::STORAGE))?;
    // One writer per store: held until this run has stored its result.
    let _writer = lock_store(&store, std::time::Duration::from_secs(args.lock_wait_secs)).await?;
    let request = ProvisionRequest {
        target: args.target,
        mode: if args.mode == "sim" {
            AuthMode::Sim
        } else {
            AuthMode::Network
        },
        endpoint: args.endpoint.clone(),
        request_parameters,
        force: args.force,
        deadline_ms: args.deadline_secs.saturating_mul(1000),
        poll_interval_ms: args.poll_interval_ms,
        timeouts: HttpTimeouts {
            connect_ms: args.connect_timeout_secs.saturating_mul(1000),
            first_byte_ms: args.read_timeout_secs.saturating_mul(1000),
            between_bytes_ms: args.read_timeout_secs.saturating_mul(1000),
        },
        retry: RetryPolicy {
            max_attempts: args.max_attempts,
            base_delay_ms: args.backoff_base_ms,
            max_delay_ms: args.backoff_max_ms,
        },
    };
    // The whole call may take the operation deadline plus a minute of slack; past that the
    // host stops the component even if it ignores its own deadline.
    let limits = SandboxLimits {
        wall: std::time::Duration::from_secs(u64::from(args.deadline_secs) + 60),
        ..SandboxLimits::default()
    };
    let runtime = Runtime::with_limits(limits).map_err(fail(exit::INTERNAL))?;
    let pre = load_component(&runtime, args.common.component.as_deref())?;
    tracing::info!(
        target = output::target_name(args.target),
        endpoint = %args.endpoint,
        store = %args.common.store.display(),
        "provisioning"
    );
    let started = Instant::now();
    let outcome = runtime
        .provision(&pre, policy, store, &request)
        .await
        .map_err(fail(exit::INTERNAL))?;
    let ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(report) => {
            tracing::info!(ms, reused = report.reused, "done");
            if args.common.json {
                print_json(&output::report_json(&report));
            } else {
                print!("{}", output::report_text(&report));
            }
            Ok(())
        }
        Err(error) => {
            tracing::debug!(ms, "failed");
            Err(component_failure(error))
        }
    }
}

/// Take the store's writer lock, waiting up to `wait`; exit 9 with the holder's pid otherwise.
async fn lock_store(
    store: &SecretStore,
    wait: std::time::Duration,
) -> Result<krypton_host::store::StoreLock, HostFailure> {
    let store = store.clone();
    let dir = store.dir().to_path_buf();
    match tokio::task::spawn_blocking(move || store.lock(wait)).await {
        Ok(Ok(lock)) => Ok(lock),
        Ok(Err(krypton_host::files::LockError::Busy { holder, .. })) => {
            Err(fail(exit::STORAGE)(anyhow::anyhow!(
                "the store {} is in use by {} (another `krypton-host provision`, or the daemon's pass); \
                 waited {} s: try again when it has finished, or raise --lock-wait-secs",
                dir.display(),
                holder
                    .map(|p| format!("process {p}"))
                    .unwrap_or_else(|| "another process".into()),
                wait.as_secs()
            )))
        }
        Ok(Err(e)) => Err(fail(exit::STORAGE)(e.into())),
        Err(e) => Err(fail(exit::INTERNAL)(e.into())),
    }
}

fn print_json(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// `status [TARGET]`: what is stored. Exit 0 when at least one bundle (or TARGET's bundle) is
/// stored, 11 ([`exit::NOT_PROVISIONED`]) when nothing is, whether the store is missing, empty
/// or lacks TARGET; a component error gives its own code. With `--json`: one object,
/// `{"ok", "store", "bundles": [...], "errors": [{"target", "error"}]}`, plus `exitCode` and
/// `error` when `ok` is false.
async fn status(args: StatusArgs) -> Result<(), HostFailure> {
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

async fn mock(args: MockArgs) -> Result<(), HostFailure> {
    let config = MockConfig {
        assigning_polls: args.assigning_polls,
        retry_after_secs: args.retry_after,
        expiration: match args.expiration_format.as_str() {
            "s" => ExpirationFormat::EpochSecs,
            "iso" => ExpirationFormat::Iso8601,
            _ => ExpirationFormat::EpochMs,
        },
        ..MockConfig::default()
    };
    let server = MockKrypton::start(args.listen, config)
        .await
        .map_err(fail(exit::INVALID_REQUEST))?;
    for spec in &args.fail {
        let (prefix, status) = spec
            .rsplit_once('=')
            .and_then(|(p, s)| Some((p, s.parse::<u16>().ok().filter(|s| (100..=599).contains(s))?)))
            .ok_or_else(|| {
                fail(exit::INVALID_REQUEST)(anyhow::anyhow!(
                    "--fail `{spec}` must look like PATH_PREFIX=STATUS, e.g. /v1/provisioning/aws=500"
                ))
            })?;
        server.inject(
            prefix,
            Fault::Status {
                status,
                code: format!("KRY{status:04}"),
                message: format!("injected failure (HTTP {status})"),
            },
        );
    }
    if let Some(status) = args.registration_status {
        server.inject(
            "/v1/provisioning/azure/iot/registrations/",
            Fault::RegistrationStatus(status),
        );
    }
    if args.malformed_json {
        server.inject("/", Fault::MalformedJson);
    }
    let (ca_file, _tmp) = match args.ca_out {
        Some(path) => (path, None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("krypton-mock-")
                .tempdir()
                .context("creating a temp directory")
                .map_err(fail(exit::INTERNAL))?;
            (dir.path().join("mock-ca.pem"), Some(dir))
        }
    };
    std::fs::write(&ca_file, server.ca_pem())
        .with_context(|| format!("writing {}", ca_file.display()))
        .map_err(fail(exit::INVALID_REQUEST))?;
    print_json(&json!({"endpoint": server.endpoint(), "caFile": ca_file}));
    tracing::info!(endpoint = %server.endpoint(), "mock Krypton serving; Ctrl-C or SIGTERM stops it");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")
        .map_err(fail(exit::INTERNAL))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!(requests = server.requests().len(), "mock Krypton stopping");
    server.stop().await;
    Ok(())
}

async fn demo(args: DemoArgs) -> Result<(), HostFailure> {
    let internal = fail(exit::INTERNAL);
    let server = MockKrypton::start(
        "127.0.0.1:0".parse().expect("literal"),
        MockConfig::default(),
    )
    .await
    .map_err(fail(exit::INTERNAL))?;
    let tmp = tempfile::Builder::new()
        .prefix("krypton-demo-")
        .tempdir()
        .map_err(|e| internal(e.into()))?;
    let args_store_given = args.store.is_some();
    let store_dir = args.store.unwrap_or_else(|| tmp.path().join("store"));
    let store = SecretStore::open(&store_dir).map_err(|e| fail(exit::STORAGE)(e.into()))?;
    let _writer = lock_store(&store, std::time::Duration::from_secs(30)).await?;
    println!("Mock Krypton (HTTPS, test CA) at {}", server.endpoint());
    println!(
        "Secret store: {}{}",
        store_dir.display(),
        if args_store_given {
            ""
        } else {
            " (temporary; removed at exit, keep it with --store DIR)"
        }
    );
    let runtime = Runtime::new().map_err(fail(exit::INTERNAL))?;
    let pre = load_component(&runtime, None)?;
    let (version, contract) = runtime.version(&pre).await.map_err(fail(exit::INTERNAL))?;
    println!("Component: krypton-guest {version} ({contract})\n");
    let origin = http::Origin::parse(&server.endpoint()).map_err(fail(exit::INTERNAL))?;
    let policy = OutboundPolicy::new(vec![origin], Some(server.ca_pem().as_bytes()))
        .map_err(fail(exit::INTERNAL))?;
    for (name, target) in output::ALL_TARGETS {
        // Inventory needs the LwM2M endpoint name of the device.
        let request_parameters =
            (target == Target::Inventory).then(|| r#"{"endpoint":"demo-gateway"}"#.to_string());
        tracing::debug!(target = name, "demo: provisioning");
        let request = ProvisionRequest {
            target,
            mode: AuthMode::Network,
            endpoint: server.endpoint(),
            request_parameters,
            force: false,
            deadline_ms: 30_000,
            poll_interval_ms: 200,
            timeouts: HttpTimeouts {
                connect_ms: 5_000,
                first_byte_ms: 10_000,
                between_bytes_ms: 10_000,
            },
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay_ms: 100,
                max_delay_ms: 1_000,
            },
        };
        let started = Instant::now();
        let outcome = runtime
            .provision(&pre, policy.clone(), store.clone(), &request)
            .await
            .map_err(fail(exit::INTERNAL))?;
        match outcome {
            Ok(report) => {
                print!("{}", output::report_text(&report));
                println!("  ({} ms)\n", started.elapsed().as_millis());
            }
            Err(e) => return Err(component_failure(e)),
        }
    }
    println!("Krypton calls made by the component:");
    for r in server.requests() {
        println!("  {} {}", r.method, r.path);
    }
    println!("\nBundles on disk (no key is printed here or in any log):");
    let mut entries: Vec<_> = std::fs::read_dir(&store_dir)
        .map_err(|e| internal(e.into()))?
        .flatten()
        .collect();
    // Bundles only, not the lock file.
    entries.retain(|e| !e.file_name().to_string_lossy().starts_with('.'));
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        use std::os::unix::fs::PermissionsExt;
        let meta = entry.metadata().map_err(|e| internal(e.into()))?;
        println!(
            "  {:04o}  {:>6} bytes  {}",
            meta.permissions().mode() & 0o777,
            meta.len(),
            entry.path().display()
        );
    }
    server.stop().await;
    Ok(())
}

/// Krypton's addresses for a wg-quick file: the given ones, else the endpoint's host resolved.
async fn krypton_addresses(given: &[String], endpoint: &str) -> Result<Vec<String>, HostFailure> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    // The same check as every other command's endpoint (no path, no user information).
    let origin = http::Origin::parse(endpoint)
        .context("--endpoint")
        .map_err(fail(exit::INVALID_REQUEST))?;
    let (host, port) = (origin.host, origin.port);
    let resolved: Vec<String> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| {
            format!("resolving {host} (or pass --krypton-address IP for each of its addresses)")
        })
        .map_err(fail(exit::TRANSPORT))?
        .map(|addr| addr.ip().to_string())
        .collect();
    tracing::info!(%host, addresses = ?resolved, "resolved Krypton's addresses");
    Ok(resolved)
}

/// The runtime, component and store for a command that needs `target`'s bundle; exit 11 with
/// what to run first when there is none. Never creates the store.
async fn open_with_bundle(
    store_dir: &Path,
    component: Option<&Path>,
    target: Target,
) -> Result<(Runtime, KryptonPre, SecretStore), HostFailure> {
    let name = output::target_name(target);
    if !store_dir.exists() {
        return Err(fail(exit::NOT_PROVISIONED)(anyhow::anyhow!(
            "no store at {}: run `krypton-host provision {name}` first",
            store_dir.display()
        )));
    }
    let store = SecretStore::open(store_dir)
        .map_err(anyhow::Error::from)
        .map_err(fail(exit::STORAGE))?;
    let runtime = Runtime::new().map_err(fail(exit::INTERNAL))?;
    let pre = load_component(&runtime, component)?;
    match runtime
        .status(&pre, store.clone(), target)
        .await
        .map_err(fail(exit::INTERNAL))?
    {
        Ok(Some(_)) => Ok((runtime, pre, store)),
        Ok(None) => Err(fail(exit::NOT_PROVISIONED)(anyhow::anyhow!(
            "no `{name}` bundle is stored: run `krypton-host provision {name}` first"
        ))),
        Err(e) => Err(component_failure(e)),
    }
}

/// `export`: check the target and format with the component first (a format that does not fit
/// the target, or no bundle, creates nothing), then create `--out` (0700) when missing and
/// write the files, owned by `--owner` when given.
async fn export(args: ExportArgs) -> Result<(), HostFailure> {
    use std::os::unix::fs::DirBuilderExt;
    let owner = args
        .owner
        .as_deref()
        .map(krypton_host::files::resolve_owner)
        .transpose()
        .map_err(fail(exit::INVALID_REQUEST))?;
    let (runtime, pre, store) =
        open_with_bundle(&args.store, args.component.as_deref(), args.target).await?;
    let exists = match std::fs::symlink_metadata(&args.out) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(fail(exit::INVALID_REQUEST)(anyhow::anyhow!(
                "--out {} is a symlink; symlinks are never followed for secret files: give the real directory",
                args.out.display()
            )));
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(fail(exit::INVALID_REQUEST)(anyhow::anyhow!(
                "--out {} exists and is not a directory",
                args.out.display()
            )));
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let render = async |dir: &Path, addresses: &[String]| match runtime
        .render_export(
            &pre,
            store.clone(),
            args.target,
            &args.format,
            &dir.to_string_lossy(),
            addresses,
        )
        .await
        .map_err(fail(exit::INTERNAL))?
    {
        Ok(files) => Ok(files),
        Err(e) => Err(component_failure(e)),
    };
    // Where the files will be: the directory's real path when it exists, else the absolute
    // path it will have.
    let planned = if exists {
        std::fs::canonicalize(&args.out)
    } else {
        std::path::absolute(&args.out)
    }
    .with_context(|| format!("resolving {}", args.out.display()))
    .map_err(fail(exit::STORAGE))?;
    // The component checks the format against the target (and the stored values) first, before
    // anything is created and before Krypton's name is looked up: a format that does not fit
    // is exit 3 even where that name cannot be resolved. Only `wireguard` needs the addresses,
    // and renders again with them.
    let mut files = render(&planned, &[]).await?;
    let addresses = if args.format == "wireguard" {
        let addresses = krypton_addresses(&args.krypton_addresses, &args.endpoint).await?;
        files = render(&planned, &addresses).await?;
        addresses
    } else {
        Vec::new()
    };
    if !exists {
        // Parents this creates are 0755 (root's, writable by nobody else), so that the user of
        // `--owner` can reach the leaf; the leaf is 0700 and becomes theirs below.
        if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .with_context(|| format!("creating {}", parent.display()))
                .map_err(fail(exit::STORAGE))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))
            .map_err(fail(exit::STORAGE))?;
    }
    let out = std::fs::canonicalize(&args.out)
        .with_context(|| format!("resolving {}", args.out.display()))
        .map_err(fail(exit::STORAGE))?;
    if out != planned {
        // A parent was a symlink: the files name their real place.
        files = render(&out, &addresses).await?;
    }
    krypton_host::files::safe_output_dir(&out, owner.map(|o| o.uid))
        .context("--out")
        .map_err(fail(exit::STORAGE))?;
    let mut written = Vec::new();
    let mut plan = Vec::with_capacity(files.len());
    for f in &files {
        // The component names files; the host still refuses anything but a plain name.
        if f.name.is_empty() || f.name.contains('/') || f.name.starts_with('.') {
            return Err(fail(exit::INTERNAL)(anyhow::anyhow!(
                "the component asked to write `{}`, which is not a plain file name",
                f.name.escape_debug()
            )));
        }
        let path = out.join(&f.name);
        let mode = if f.secret { 0o600 } else { 0o644 };
        written.push(json!({
            "path": path,
            "mode": format!("{mode:04o}"),
            "bytes": f.contents.len(),
            "secret": f.secret,
            "converted": f.converted,
        }));
        plan.push((path, f.contents.as_slice(), mode));
    }
    // All files or none: a certificate is never left beside the key of another pair.
    krypton_host::files::write_private_files(&plan, owner)
        .with_context(|| format!("writing the export into {}", out.display()))
        .map_err(fail(exit::STORAGE))?;
    // Only a directory this export created is handed over: an existing `--out` (think
    // `/etc`) keeps its owner, and the files in it are the owner's to read.
    if let (Some(owner), false) = (owner, exists) {
        krypton_host::files::chown_dir(&out, owner).map_err(|e| fail(exit::STORAGE)(e.into()))?;
    }
    let next = export_next_steps(&args.format, &out, &files, owner.is_some());
    if args.json {
        print_json(&json!({
            "ok": true,
            "target": output::target_name(args.target),
            "format": args.format,
            "directory": out,
            "owner": args.owner,
            "files": written,
            "next": next,
        }));
    } else {
        for (w, f) in written.iter().zip(&files) {
            let converted = f
                .converted
                .as_deref()
                .map(|c| format!("; converted: {c}"))
                .unwrap_or_default();
            println!(
                "wrote {} ({} bytes, mode {}{converted})",
                w["path"].as_str().unwrap_or_default(),
                f.contents.len(),
                w["mode"].as_str().unwrap_or_default()
            );
        }
        for line in &next {
            println!("next: {line}");
        }
    }
    Ok(())
}

/// Shell commands an operator still has to run for the consumer to read the files, one per
/// entry. For `aziot` without `--owner`: Azure IoT Edge's certificate service (user `aziotcs`)
/// reads the certificates and its key service (user `aziotks`) reads the private key, each as
/// its own user (Azure IoT Edge documentation, "Create and provision an IoT Edge device on
/// Linux using X.509 certificates"), and the 0700 directory must let them through.
fn export_next_steps(
    format: &str,
    dir: &Path,
    files: &[krypton_host::runtime::ExportFile],
    owner_given: bool,
) -> Vec<String> {
    if format != "aziot" || owner_given {
        return Vec::new();
    }
    let quote = |p: &Path| shell_quote(&p.to_string_lossy());
    let of = |secret: bool| -> Vec<String> {
        files
            .iter()
            .filter(|f| f.secret == secret && f.name.ends_with(".pem"))
            .map(|f| quote(&dir.join(&f.name)))
            .collect()
    };
    let (certs, keys) = (of(false), of(true));
    let mut steps = vec![format!("chmod 0711 {}", quote(dir))];
    if !certs.is_empty() {
        steps.push(format!("chown aziotcs:aziotcs {}", certs.join(" ")));
    }
    if !keys.is_empty() {
        steps.push(format!("chown aziotks:aziotks {}", keys.join(" ")));
    }
    steps
}

/// A word for `sh`: unchanged when it holds only safe characters, else in single quotes.
fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

async fn run_daemon(args: RunArgs) -> Result<(), HostFailure> {
    use krypton_host::daemon::{Daemon, GatewayConfig};
    // First of all: no core dump may carry the keys this process will hold.
    krypton_host::daemon::disable_core_dumps().map_err(fail(exit::INTERNAL))?;
    let mut config = GatewayConfig::load(&args.config).map_err(fail(exit::INVALID_REQUEST))?;
    // Command-line overrides (relative paths are taken from the working directory).
    let absolute = |flag: &str, p: &Path| {
        std::path::absolute(p)
            .with_context(|| format!("{flag} {}", p.display()))
            .map_err(fail(exit::INVALID_REQUEST))
    };
    if let Some(p) = &args.store {
        config.store = absolute("--store", p)?;
    }
    if let Some(p) = &args.state_dir {
        config.state_dir = absolute("--state-dir", p)?;
    }
    if let Some(p) = &args.control_socket {
        config.control_socket = Some(absolute("--control-socket", p)?);
    }
    if let Some(p) = &args.ca_file {
        config.ca_file = Some(absolute("--ca-file", p)?);
    }
    if let Some(url) = &args.endpoint {
        http::Origin::parse(url)
            .context("--endpoint")
            .map_err(fail(exit::INVALID_REQUEST))?;
        config.endpoint = url.clone();
    }
    // SIGTERM is handled from here on, before the (possibly slow) start: a stop requested
    // while the component compiles is honoured once the start is done, instead of killing the
    // process with the signal's default action half-way through.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")
        .map_err(fail(exit::INTERNAL))?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop.send(true);
    });
    let daemon = Daemon::start(config)
        .await
        .map_err(fail(exit::INVALID_REQUEST))?;
    daemon.run(stopped).await.map_err(fail(exit::INTERNAL))
}

/// Resident set size of this process, KiB (Linux `/proc/self/status`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

async fn bench_swap(args: BenchSwapArgs) -> Result<(), HostFailure> {
    use krypton_host::lifecycle::Lifecycle;
    let internal = fail(exit::INTERNAL);
    let dir = tempfile::tempdir().map_err(|e| internal(e.into()))?;
    let file = dir.path().join("component.wasm");
    // Two versions that differ only in a custom section.
    let variant = |tag: u8| {
        let mut bytes = DEFAULT_COMPONENT.to_vec();
        bytes.extend_from_slice(&[0, 10, 1, b'b', tag, tag, tag, tag, tag, tag, tag, tag]);
        bytes
    };
    let install = |bytes: &[u8]| -> std::io::Result<()> {
        let tmp = dir.path().join("component.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &file)
    };
    install(&variant(0)).map_err(|e| internal(e.into()))?;
    let runtime = std::sync::Arc::new(Runtime::new().map_err(internal)?);
    let lifecycle = Lifecycle::start(runtime, Some(file.clone()), None)
        .await
        .map_err(internal)?;
    let mut latencies = Vec::new();
    let mut rss_at_10 = 0;
    for i in 1..=args.count {
        install(&variant(1 + (i % 2) as u8)).map_err(|e| internal(e.into()))?;
        let started = Instant::now();
        lifecycle.reload().await.map_err(internal)?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if i == 10 {
            rss_at_10 = rss_kib();
        }
    }
    // The first two swaps compile; the rest load precompiled artifacts from the cache.
    let mut warm: Vec<f64> = latencies.iter().skip(2).copied().collect();
    warm.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        warm.get(((warm.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!("swaps: {}", args.count);
    println!(
        "first two swaps (compile): {:.1} ms, {:.1} ms",
        latencies[0],
        latencies.get(1).copied().unwrap_or(0.0)
    );
    println!(
        "swap from precompiled artifact: median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.9),
        pct(1.0)
    );
    println!(
        "RSS after 10 swaps: {} KiB; after {} swaps: {} KiB",
        rss_at_10,
        args.count,
        rss_kib()
    );
    Ok(())
}

async fn reload(args: ReloadArgs) -> Result<(), HostFailure> {
    let command = if args.status { "status" } else { "reload" };
    let answer = krypton_host::daemon::send_control(&args.socket, command)
        .await
        .map_err(fail(exit::TRANSPORT))?;
    println!("{answer}");
    if answer.starts_with("ok") {
        Ok(())
    } else {
        Err(reported(exit::INVALID_REQUEST))
    }
}

async fn doctor(args: DoctorArgs) -> Result<(), HostFailure> {
    use krypton_host::doctor::{self, TunnelSource, Verdict};
    let tunnel = match (&args.wireguard, &args.soratun_config) {
        (Some(p), _) => Some(doctor::read_tunnel(p, TunnelSource::Wireguard)),
        (None, Some(p)) => Some(doctor::read_tunnel(p, TunnelSource::Soratun)),
        (None, None) => None,
    }
    .transpose()
    .map_err(fail(exit::INVALID_REQUEST))?;
    let ca = match &args.ca_file {
        Some(p) => Some(
            krypton_host::files::read_user_file(p, krypton_host::files::MAX_CA_BYTES, "CA file")
                .map_err(fail(exit::INVALID_REQUEST))?,
        ),
        None => None,
    };
    let diagnosis = doctor::diagnose(
        &args.endpoint,
        tunnel,
        args.addresses.clone(),
        ca.as_deref(),
        !args.no_connect,
        std::time::Duration::from_millis(args.timeout_ms),
    )
    .await
    .map_err(fail(exit::INVALID_REQUEST))?;
    let code = match diagnosis.verdict {
        Verdict::Ok => exit::OK,
        Verdict::NotRouted => exit::NOT_ROUTED,
        Verdict::MalformedConfig => exit::INVALID_REQUEST,
        Verdict::DnsFailed | Verdict::TlsFailed | Verdict::Unreachable => exit::TRANSPORT,
    };
    if args.json {
        let mut object = serde_json::to_value(&diagnosis).unwrap_or_else(|_| json!({}));
        if let Some(obj) = object.as_object_mut() {
            obj.insert("ok".into(), json!(code == exit::OK));
            if code != exit::OK {
                let verdict = obj
                    .get("verdict")
                    .and_then(Value::as_str)
                    .unwrap_or("failed");
                let message = format!("verdict {verdict}: {}", diagnosis.advice.join(" "));
                obj.insert("exitCode".into(), json!(code));
                obj.insert(
                    "error".into(),
                    output::failure_json(code, message.trim_end())["error"].clone(),
                );
            }
        }
        print_json(&object);
    } else {
        println!(
            "endpoint   {} ({}:{})",
            diagnosis.endpoint, diagnosis.host, diagnosis.port
        );
        for a in &diagnosis.addresses {
            let routed = match a.routed_through_tunnel {
                _ if a.local => "local address, never routed through the tunnel",
                Some(true) => "routed through the tunnel",
                Some(false) => "NOT routed through the tunnel",
                None => "no tunnel configuration given",
            };
            println!(
                "address    {:<40} {routed}; reachability: {}",
                a.address, a.reachability
            );
        }
        if let Some(t) = &diagnosis.tunnel {
            println!("AllowedIPs {}", t.allowed_ips.join(", "));
        }
        println!(
            "verdict    {}",
            serde_json::to_value(diagnosis.verdict)
                .unwrap_or(Value::Null)
                .as_str()
                .unwrap_or("?")
        );
        for line in &diagnosis.advice {
            println!("  {line}");
        }
    }
    if code == exit::OK {
        Ok(())
    } else {
        Err(reported(code))
    }
}

async fn wireguard_config(args: WireguardArgs) -> Result<(), HostFailure> {
    // Say "nothing stored" before trying DNS, which fails off the SORACOM network anyway.
    let (runtime, pre, store) =
        open_with_bundle(&args.store, args.component.as_deref(), Target::Arc).await?;
    let addresses = krypton_addresses(&args.krypton_addresses, &args.endpoint).await?;
    let config = match runtime
        .wireguard_config(&pre, store, &addresses)
        .await
        .map_err(fail(exit::INTERNAL))?
    {
        Ok(config) => config,
        Err(e) => return Err(component_failure(e)),
    };
    if args.out.as_os_str() == "-" {
        print!("{config}");
        return Ok(());
    }
    krypton_host::files::write_private_file(&args.out, config.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", args.out.display()))
        .map_err(fail(exit::STORAGE))?;
    eprintln!("wrote {} (mode 0600)", args.out.display());
    Ok(())
}

/// Bound glibc's per-thread malloc arenas. Each hot swap frees and reallocates megabytes of
/// compiled code and buffers on whichever worker thread runs it; with one arena per thread
/// (glibc's default, up to 8 x cores) the freed space is not reused across arenas and the
/// resident size climbs with every swap (measured: 22 MiB after 10 swaps, 189 MiB after 500;
/// with two arenas it stays at 25 MiB). Must run before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only adjusts allocator tuning; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async_main()),
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

/// Parse the command line. `--help` and `--version` print and exit 0; any other clap error
/// exits 2 ([`exit::USAGE`]), as `{"ok":false,"exitCode":2,"error":{"kind":"usage",
/// "message":…}}` on stdout when `--json` is among the arguments, as clap's text otherwise.
fn parse_cli() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
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

async fn async_main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging(&cli);
    let json = match &cli.command {
        Command::Provision(a) => a.common.json,
        Command::Status(a) => a.common.json,
        Command::Doctor(a) => a.json,
        Command::Export(a) => a.json,
        Command::Mock(_)
        | Command::Demo(_)
        | Command::WireguardConfig(_)
        | Command::Run(_)
        | Command::Reload(_)
        | Command::BenchSwap(_) => false,
        Command::Keygen(a) => a.json,
        Command::Sign(a) => a.json,
    };
    let result = match cli.command {
        Command::Provision(args) => provision(args).await,
        Command::Status(args) => status(args).await,
        Command::Mock(args) => mock(args).await,
        Command::Demo(args) => demo(args).await,
        Command::WireguardConfig(args) => wireguard_config(args).await,
        Command::Doctor(args) => doctor(args).await,
        Command::Export(args) => export(args).await,
        Command::Run(args) => run_daemon(args).await,
        Command::Reload(args) => reload(args).await,
        Command::BenchSwap(args) => bench_swap(args).await,
        Command::Keygen(args) => cli::sign::keygen(args),
        Command::Sign(args) => cli::sign::sign(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(HostFailure { code, detail }) => {
            match detail {
                Detail::Host(error) if json => {
                    print_json(&output::failure_json(code, &format!("{error:#}")))
                }
                Detail::Host(error) => eprintln!("error: {error:#}"),
                Detail::Component(error) if json => print_json(&output::error_json(&error)),
                Detail::Component(error) => eprintln!("{}", output::error_text(&error)),
                Detail::Shown => {}
            }
            ExitCode::from(code)
        }
    }
}
