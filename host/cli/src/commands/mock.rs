//! `krypton-host mock`: serve the mock Krypton (crate `krypton-mock`) on loopback.

use super::print::print_json;
use super::{HostFailure, fail};
use crate::output::exit;
use anyhow::Context as _;
use clap::Args;
use krypton_mock::{ExpirationFormat, Fault, MockConfig, MockKrypton};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `mock` arguments.
#[derive(Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where to write the mock CA certificate (PEM). Default: a file in a new temp directory.
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// Times an Azure registration answers `assigning` before `assigned`, 0 to 1000.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub assigning_polls: u32,
    /// Retry-After seconds sent with `assigning` answers, 0 to 86400.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub retry_after: Option<u32>,
    /// Answer every request under PATH_PREFIX with STATUS and a {code,message} body
    /// (repeatable), e.g. /v1/provisioning/aws=500.
    #[arg(long = "fail", value_name = "PATH_PREFIX=STATUS")]
    pub fail: Vec<String>,
    /// Answer Azure registration polls with this DPS status, e.g. `failed`.
    #[arg(long)]
    pub registration_status: Option<String>,
    /// Answer every request with malformed JSON.
    #[arg(long)]
    pub malformed_json: bool,
    /// Form of Cognito `expiration`: ms (epoch milliseconds), s (epoch seconds) or iso.
    #[arg(long, default_value = "ms", value_parser = ["ms", "s", "iso"])]
    pub expiration_format: String,
    /// Serve SIM-authenticated mode for the SIM in this software SIM file (the JSON of
    /// `provision --sim-file`: imsi, k, opc, amf, sqn): the Keys API challenges it and
    /// checks its signed requests (repeatable, one SIM per file).
    #[arg(long, value_name = "FILE")]
    pub sim_subscriber: Vec<PathBuf>,
    /// Refuse unsigned provisioning requests (401): serve SIM-authenticated mode only.
    #[arg(long)]
    pub require_signatures: bool,
    /// Serve plain HTTP instead of HTTPS (for a runtime that trusts only the web PKI roots,
    /// such as the stock `wasmtime` CLI); the component allows http:// only to loopback.
    #[arg(long)]
    pub plain_http: bool,
}

/// The Keys API's subscriber records from software SIM files: IMSI -> record. Errors (exit
/// 3): a file that cannot be read or is not a valid software SIM.
fn sim_subscribers(
    files: &[PathBuf],
) -> Result<std::collections::HashMap<String, krypton_mock::keys::SimSubscriber>, HostFailure> {
    let mut subscribers = std::collections::HashMap::new();
    for path in files {
        let record = krypton_uicc::soft::SoftSim::open(path)
            .and_then(|sim| sim.load())
            .map_err(|e| fail(exit::INVALID_REQUEST)(anyhow::anyhow!("--sim-subscriber: {e}")))?;
        let (imsi, subscriber) = krypton_mock::keys::SimSubscriber::from_sim_record(&record);
        subscribers.insert(imsi, subscriber);
    }
    Ok(subscribers)
}

/// Serve the mock Krypton until SIGINT or SIGTERM, after printing its endpoint and CA file as
/// one JSON line. Errors: a bad `--fail` or listen address, a `--sim-subscriber` file that is
/// not a software SIM, or the CA file cannot be written (exit 3).
pub async fn mock(args: MockArgs) -> Result<(), HostFailure> {
    let config = MockConfig {
        sim_subscribers: sim_subscribers(&args.sim_subscriber)?,
        require_signatures: args.require_signatures,
        plain_http: args.plain_http,
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
