//! `krypton-host demo`: provision every target against an in-process mock Krypton.

use super::shared::{load, lock_store};
use super::{HostFailure, component_failure, fail};
use crate::output::{self, exit};
use clap::Args;
use krypton_host::ProvisionOptions;
use krypton_host::capability::http::{self, OutboundPolicy};
use krypton_host::capability::store::SecretStore;
use krypton_host::engine::Runtime;
use krypton_mock::{MockConfig, MockKrypton};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `demo` arguments.
#[derive(Args)]
pub struct DemoArgs {
    /// Keep the demo's store in this directory instead of a temporary one.
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// The demo's run options: a mock on loopback answers at once, so shorter waits than the
/// defaults keep the demo quick.
fn demo_options() -> ProvisionOptions {
    ProvisionOptions {
        deadline: Duration::from_secs(30),
        poll_interval: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        max_attempts: 3,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..ProvisionOptions::default()
    }
}

/// Provision every target the component lists against an in-process mock Krypton into a
/// temporary (or `--store`) store and print the reports, the calls made and the bundle files
/// with their modes. Errors: the first failure (its exit code).
pub async fn demo(args: DemoArgs) -> Result<(), HostFailure> {
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
    let _writer = lock_store(&store, Duration::from_secs(30)).await?;
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
    let loaded = load(runtime, None, None).await?;
    loaded.log_loaded();
    let (runtime, pre) = (&loaded.runtime, &loaded.pre);
    let (version, contract) = runtime.version(pre).await.map_err(fail(exit::INTERNAL))?;
    println!("Component: krypton-guest {version} ({contract})\n");
    let origin = http::Origin::parse(&server.endpoint()).map_err(fail(exit::INTERNAL))?;
    let policy = OutboundPolicy::new(vec![origin], Some(server.ca_pem().as_bytes()))
        .map_err(fail(exit::INTERNAL))?;
    for info in loaded.targets.all() {
        // Every parameter the target requires, with the component's example value.
        let request_parameters = (!info.required_parameters.is_empty()).then(|| {
            let map: Map<String, Value> = info
                .required_parameters
                .iter()
                .map(|p| (p.name.clone(), Value::String(p.example.clone())))
                .collect();
            Value::Object(map).to_string()
        });
        tracing::debug!(target = %info.name, "demo: provisioning");
        let request = ProvisionOptions {
            request_parameters,
            ..demo_options()
        }
        .request(info.target, &server.endpoint());
        let started = Instant::now();
        let outcome = runtime
            .provision(pre, policy.clone(), store.clone(), &request)
            .await
            .map_err(fail(exit::INTERNAL))?;
        match outcome {
            Ok(report) => {
                print!("{}", output::report_text(&info.name, &report));
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
