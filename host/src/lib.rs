//! # krypton-host
//!
//! The wasmtime host for the SORACOM Krypton provisioning component, as a library. The
//! `krypton-host` command (feature `cli`, on by default) is a thin layer over it.
//!
//! The host grants capabilities and manages the component's life; it never parses a Krypton
//! response (that is the component's job, see `guest/`), and knows Krypton only through the
//! contract in `wit/krypton.wit`.
//!
//! # The public API
//!
//! * [`Runtime`]: one wasmtime engine and linker; [`Runtime::load`] compiles and links a
//!   component ([`DEFAULT_COMPONENT`] is the one built into this crate) into a [`KryptonPre`],
//!   and each call ([`Runtime::provision`], [`Runtime::status`], [`Runtime::targets`], ...)
//!   runs in a fresh, limited instance;
//! * [`SecretStore`]: the on-disk secret store the component writes its bundles to
//!   (directory 0700, one 0600 file per bundle, replaced atomically);
//! * [`OutboundPolicy`]: where the component may connect, and which CA certificates it trusts;
//! * [`ProvisionOptions`]: deadline, poll interval, timeouts and retries of a run, with the
//!   defaults every caller shares;
//! * [`UiccAccess`]: the SIM a SIM-authenticated run uses ([`Runtime::provision_with_uicc`]);
//!   none unless granted.
//!
//! # Examples
//!
//! An embedder depends on the crate without the CLI and with the compiler
//! (`krypton-host = { path = "…", default-features = false, features = ["jit"] }`, which also
//! leaves out the mock Krypton and its certificate-minting crates; without `jit` the library
//! runs only precompiled components, see [`precompiled`]), then:
//!
//! 1. creates a [`Runtime`] and loads the built-in component with [`Runtime::load`];
//! 2. checks that it speaks this host's contract with [`lifecycle::self_check`];
//! 3. asks it for its targets ([`lifecycle::list_targets`]) and picks one by name;
//! 4. asks it for its default endpoints ([`lifecycle::component_facts`]): the host names no
//!    SORACOM host of its own;
//! 5. provisions it into a [`SecretStore`] through an [`OutboundPolicy`] that allows only the
//!    Krypton endpoint, with [`ProvisionOptions`];
//! 6. prints the report, or the failure with the component's advice.
//!
//! ```no_run
//! use krypton_host::http::Origin;
//! use krypton_host::runtime::AuthMode;
//! use krypton_host::{
//!     DEFAULT_COMPONENT, OutboundPolicy, ProvisionOptions, Runtime, SecretStore, lifecycle, output,
//! };
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let runtime = Runtime::new()?;
//!     let component = runtime.load(DEFAULT_COMPONENT)?;
//!     let version = lifecycle::self_check(&runtime, &component).await?;
//!     println!("component {version}");
//!
//!     // The component names its targets; the host keeps no list of its own.
//!     let targets = lifecycle::list_targets(&runtime, &component).await?;
//!     let target = targets.find("azure-iot")?;
//!
//!     // Network mode's base URL, as the component knows it.
//!     let facts = lifecycle::component_facts(&runtime, &component, &targets).await?;
//!     let endpoint = facts.endpoint(AuthMode::Network, None)?;
//!     let policy = OutboundPolicy::new(vec![Origin::parse(endpoint)?], None)?;
//!     let store = SecretStore::open("/var/lib/my-gateway/krypton")?;
//!     let request = ProvisionOptions::default().request(target.target, endpoint);
//!     match runtime.provision(&component, policy, store, &request).await? {
//!         Ok(report) => print!("{}", output::report_text(&target.name, &report)),
//!         Err(failure) => eprintln!("{}", output::error_text(&failure)),
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Modules
//!
//! * [`runtime`]: engine, linker, per-call store with limits, calls into the component;
//! * [`lifecycle`]: load, check, hot-swap and roll back a component file;
//! * [`http`]: outbound HTTP policy (allow-list, TLS roots, timeouts);
//! * [`store`]: the on-disk secret store (atomic bundle replacement, 0700/0600);
//! * [`files`]: files read from user paths, the one atomic private-file writer (the store's
//!   bundles, exports, keys), locks;
//! * [`options`]: the run options, [`ProvisionOptions`];
//! * [`output`]: reports, errors and exit codes as text and JSON;
//! * [`daemon`]: the gateway daemon (`krypton-host run`);
//! * [`doctor`]: checks the route to Krypton (the SORACOM Arc `AllowedIPs` trap);
//! * [`signing`]: ed25519 signatures of component files;
//! * `registry` (feature `registry`, on with `cli`): components published to and followed from
//!   an OCI registry, in the Wasm OCI artifact layout, signatures as OCI referrers;
//! * [`signing`]: ed25519 signatures of component files and of precompiled components;
//! * [`precompiled`]: components precompiled for a gateway (`krypton-host compile`) and the
//!   checks before one is loaded;
//! * [`targets`]: the component's targets by name (the host keeps no list of its own);
//! * [`facts`]: the component's default endpoints and export formats, checked at load;
//! * [`uicc`]: the SIM of SIM-authenticated mode ([`UiccAccess`], over `krypton-uicc`).

pub mod daemon;
pub mod doctor;
pub mod facts;
pub mod files;
pub mod http;
pub mod lifecycle;
pub mod options;
pub mod output;
pub mod precompiled;
#[cfg(feature = "registry")]
pub mod registry;
pub mod runtime;
pub mod signing;
pub mod store;
pub mod targets;
pub mod uicc;

pub use http::OutboundPolicy;
pub use options::ProvisionOptions;
#[cfg(feature = "jit")]
pub use runtime::DEFAULT_COMPONENT;
pub use runtime::{KryptonPre, Runtime};
pub use store::SecretStore;
pub use uicc::UiccAccess;
