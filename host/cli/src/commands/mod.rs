//! The `krypton-host` command: one module per command, the clap definitions of the command
//! line, and the failure type every command returns. `main.rs` only parses and dispatches.
//!
//! The full build (feature `cli`) has every command. The gateway build (feature `gateway`, no
//! compiler) leaves out those that compile a `.wasm` (`compile`, `sign`, `bench-swap`) and
//! those that need the mock Krypton (`mock`, `demo`), and `publish` (the registry carries `.wasm`
//! components).

pub mod bench_load;
#[cfg(feature = "jit")]
pub mod bench_swap;
#[cfg(feature = "jit")]
pub mod compile;
#[cfg(feature = "cli")]
pub mod demo;
pub mod doctor;
pub mod export;
pub mod help;
pub mod logging;
pub mod malloc;
#[cfg(feature = "cli")]
pub mod mock;
pub mod print;
pub mod provision;
#[cfg(feature = "registry")]
pub mod publish;
pub mod reload;
pub mod run;
pub mod shared;
pub mod sign;
pub mod sim;
pub mod status;
pub mod wireguard_config;

use crate::output;
use clap::{Args, Parser, Subcommand};
use krypton_host::bindings::Failure;
use std::path::PathBuf;

/// The secret store when neither `--store` nor `KRYPTON_STORE` names one.
pub const DEFAULT_STORE: &str = "/var/lib/krypton-host/store";

// The command line (a doc comment here would become clap's long help).
#[allow(missing_docs)]
#[derive(Parser)]
#[command(
    name = "krypton-host",
    version,
    about = "Provision SORACOM Krypton credentials (Azure IoT, AWS IoT, ...) on a gateway through a sandboxed WebAssembly component",
    after_help = output::EXIT_CODES_HELP
)]
pub struct Cli {
    /// More log output (debug level); RUST_LOG overrides.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    // clap reads a doc comment here as help text: the field is documented by its type.
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: Command,
}

// The commands, one module each (doc comments on the variants are their help; one on the enum
// would become the help's text).
#[allow(missing_docs)]
#[derive(Subcommand)]
pub enum Command {
    /// Call Krypton for one target and store its credentials as one bundle.
    ///
    /// Without --force, a stored bundle whose certificate is still valid is reported and
    /// Krypton is not called (AWS IoT bootstrap mints a new certificate on every call).
    #[command(
        after_help = output::EXIT_CODES_HELP,
        after_long_help = format!("{}\n\n{}", provision::EXAMPLES, output::EXIT_CODES_HELP)
    )]
    Provision(provision::ProvisionArgs),
    /// Show what is stored (identifiers, certificate fingerprint and expiry; never keys).
    #[command(after_help = output::EXIT_CODES_HELP)]
    Status(status::StatusArgs),
    /// Serve a mock Krypton over HTTPS on loopback (for tests and CI). Prints one JSON line
    /// {"endpoint": "https://127.0.0.1:PORT", "caFile": "PATH"}, then serves until stopped.
    /// With --sim-subscriber FILE it also serves SIM-authenticated mode (the Keys API) for
    /// the software SIM in FILE.
    #[cfg(feature = "cli")]
    #[command(after_help = output::EXIT_CODES_HELP)]
    Mock(mock::MockArgs),
    /// Provision every target against an in-process mock Krypton into a temporary store,
    /// through the real component, and show what happened.
    #[cfg(feature = "cli")]
    #[command(after_help = output::EXIT_CODES_HELP)]
    Demo(demo::DemoArgs),
    /// Write a stored bundle in a consumer's format: the formats are the component's, each for
    /// some of its targets (`export --help` lists them). Secret files are written 0600, the
    /// others 0644.
    #[command(after_help = output::EXIT_CODES_HELP)]
    Export(export::ExportArgs),
    /// Run as a gateway daemon: keep the configured targets provisioned, hot-swap the
    /// component (file change, SIGHUP or `reload`), answer the control socket.
    #[command(after_help = output::EXIT_CODES_HELP)]
    Run(run::RunArgs),
    /// Ask a running daemon to reload its component (or report its status).
    #[command(after_help = output::EXIT_CODES_HELP)]
    Reload(reload::ReloadArgs),
    /// Make an ed25519 key pair for signing components: the private key to --out (0600),
    /// the public key (for `trusted_public_key`) on stdout.
    #[command(after_help = output::EXIT_CODES_HELP)]
    Keygen(sign::KeygenArgs),
    /// Sign a component for daemons with `trusted_public_key`: writes `<component>.sig`,
    /// binding the component's SHA-256 digest and its version. Exit 3 on bad input.
    #[cfg(feature = "jit")]
    #[command(after_help = output::EXIT_CODES_HELP)]
    Sign(sign::SignArgs),
    /// Push a component to an OCI registry (Wasm OCI artifact layout) with its signature as a
    /// referrer; prints the manifest digest. Exit 4: registry unreachable; 6: an error status.
    #[cfg(feature = "registry")]
    #[command(after_help = output::EXIT_CODES_HELP)]
    Publish(publish::PublishArgs),
    /// Precompile a component for a gateway's architecture (x86_64-unknown-linux-gnu,
    /// aarch64-unknown-linux-gnu) and sign it: writes FILE.cwasm and, with --signing-key,
    /// FILE.cwasm.sig, which the gateway build of krypton-host (no compiler) runs.
    #[cfg(feature = "jit")]
    #[command(after_help = output::EXIT_CODES_HELP)]
    Compile(compile::CompileArgs),
    /// Benchmark: swap the component N times (two versions in turn, precompiled after the first
    /// load of each) and print swap latency and resident memory after 10 and after N swaps.
    #[cfg(feature = "jit")]
    #[command(hide = true)]
    BenchSwap(bench_swap::BenchSwapArgs),
    /// Benchmark: load a signed precompiled component N times (open and hash, signature check,
    /// deserialize and link) and print the median and slowest times.
    #[command(hide = true)]
    BenchLoad(bench_load::BenchLoadArgs),
    /// Check the route to Krypton before provisioning: resolve the endpoint, check each
    /// address against the tunnel's AllowedIPs (wg-quick file or soratun arc.json), try TCP and
    /// TLS, and print what to change.
    #[command(
        after_help = output::EXIT_CODES_HELP,
        after_long_help = format!("{}\n\n{}", doctor::EXAMPLES, output::EXIT_CODES_HELP)
    )]
    Doctor(doctor::DoctorArgs),
    /// Write a wg-quick configuration from the stored `arc` bundle, with Krypton's addresses
    /// routed through the tunnel (the SORACOM Arc AllowedIPs trap, fixed by construction).
    #[command(after_help = output::EXIT_CODES_HELP)]
    WireguardConfig(wireguard_config::WireguardArgs),
    /// The SIM of SIM-authenticated mode: list serial ports, ask a modem about itself, or
    /// read the IMSI through a backend (never a key).
    #[command(
        after_help = output::EXIT_CODES_HELP,
        after_long_help = format!("{}\n\n{}", sim::EXAMPLES, output::EXIT_CODES_HELP)
    )]
    Sim(sim::SimArgs),
}

/// Where the component comes from: `--component` and the key its signature must verify with
/// (every command that loads a component flattens these).
#[derive(Args, Clone)]
pub struct ComponentArgs {
    /// Provisioning component: a .wasm, or a precompiled .cwasm (`krypton-host compile`) with
    /// its .sig beside it. Defaults to the one built into this binary (the gateway build has
    /// none: give a .cwasm).
    #[arg(long, env = "KRYPTON_COMPONENT")]
    pub component: Option<PathBuf>,
    /// The ed25519 public key (base64 or hex, as `keygen` prints it) a component's signature
    /// must verify with; a .cwasm never loads without it, a .wasm then needs its .sig.
    #[arg(long, env = "KRYPTON_TRUSTED_PUBLIC_KEY", value_name = "KEY")]
    pub trusted_public_key: Option<String>,
}

impl ComponentArgs {
    /// A runtime with `limits` and this component loaded through the one loader
    /// ([`shared::load`]; its errors and exit codes).
    pub async fn load_with(
        &self,
        limits: krypton_host::sandbox::SandboxLimits,
    ) -> Result<shared::Loaded, HostFailure> {
        let runtime =
            krypton_host::Runtime::with_limits(limits).map_err(fail(output::exit::INTERNAL))?;
        shared::load(
            runtime,
            self.component.as_deref(),
            self.trusted_public_key.as_deref(),
        )
        .await
    }

    /// [`ComponentArgs::load_with`] with the default limits.
    pub async fn load(&self) -> Result<shared::Loaded, HostFailure> {
        self.load_with(krypton_host::sandbox::SandboxLimits::default())
            .await
    }
}

/// Options every command that reads the store shares.
#[derive(Args)]
pub struct CommonArgs {
    /// Secret store directory (created 0700; one 0600 file per bundle).
    #[arg(long, env = "KRYPTON_STORE", default_value = DEFAULT_STORE)]
    pub store: PathBuf,
    // clap reads a doc comment here as help text: the field is documented by its type.
    #[allow(missing_docs)]
    #[command(flatten)]
    pub source: ComponentArgs,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A failed command and its exit code. `main.rs` prints it once ([`print::print_failure`]),
/// as text on stderr or as the one `--json` object on stdout.
pub struct HostFailure {
    /// The exit code (`crate::output::exit`).
    pub code: u8,
    /// What to print.
    pub detail: Detail,
}

/// What a [`HostFailure`] has to say.
pub enum Detail {
    /// A host-side error; its `--json` kind is the one for its exit code.
    Host(anyhow::Error),
    /// The component's typed error, rendered from its fields.
    Component(Box<Failure>),
    /// Already shown to the operator (the command printed its own result object).
    Shown,
}

/// Turn a host-side error into a [`HostFailure`] with exit code `code` (for `map_err`).
pub fn fail(code: u8) -> impl Fn(anyhow::Error) -> HostFailure + Copy {
    move |error| HostFailure {
        code,
        detail: Detail::Host(error),
    }
}

/// A component error, with the exit code of its kind.
pub fn component_failure(error: Failure) -> HostFailure {
    HostFailure {
        code: output::exit_code(&error.error),
        detail: Detail::Component(Box::new(error)),
    }
}

/// A failure already shown to the operator.
pub fn reported(code: u8) -> HostFailure {
    HostFailure {
        code,
        detail: Detail::Shown,
    }
}
