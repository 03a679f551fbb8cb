//! # krypton-host
//!
//! The wasmtime host for the SORACOM Krypton provisioning component, as a library. The
//! `krypton-host` command for gateways (`krypton-host-cli`, in `host/cli`) is a layer over it.
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
//! * [`component::load`]: the one loader of a component file (`.wasm`, or a signed `.cwasm`)
//!   with every check, and [`component::Lifecycle`] for hot swap with probation and roll back;
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
//! runs only precompiled components, see [`component::precompiled`]), then:
//!
//! 1. creates a [`Runtime`] and loads the built-in component with [`Runtime::load`];
//! 2. checks that it speaks this host's contract with [`component::self_check`];
//! 3. asks it for its targets ([`component::list_targets`]) and picks one by name;
//! 4. asks it for its default endpoints ([`component::component_facts`]): the host names no
//!    SORACOM host of its own;
//! 5. provisions it into a [`SecretStore`] through an [`OutboundPolicy`] that allows only the
//!    Krypton endpoint, with [`ProvisionOptions`];
//! 6. prints the report, or the failure with the component's advice.
//!
//! ```no_run
//! use krypton_host::bindings::AuthMode;
//! use krypton_host::capability::http::Origin;
//! use krypton_host::{
//!     DEFAULT_COMPONENT, OutboundPolicy, ProvisionOptions, Runtime, SecretStore, component,
//! };
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let runtime = Runtime::new()?;
//!     let pre = runtime.load(DEFAULT_COMPONENT)?;
//!     let version = component::self_check(&runtime, &pre).await?;
//!     println!("component {version}");
//!
//!     // The component names its targets; the host keeps no list of its own.
//!     let targets = component::list_targets(&runtime, &pre).await?;
//!     let target = targets.find("azure-iot")?;
//!
//!     // Network mode's base URL, as the component knows it.
//!     let facts = component::component_facts(&runtime, &pre, &targets).await?;
//!     let endpoint = facts.endpoint(AuthMode::Network, None)?;
//!     let policy = OutboundPolicy::new(vec![Origin::parse(endpoint)?], None)?;
//!     let store = SecretStore::open("/var/lib/my-gateway/krypton")?;
//!     let request = ProvisionOptions::default().request(target.target, endpoint);
//!     match runtime.provision(&pre, policy, store, &request).await? {
//!         Ok(report) => println!("{}: stored as `{}`", target.name, report.bundle),
//!         Err(failure) => eprintln!("{:?} ({})", failure.error, failure.hint.unwrap_or_default()),
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Modules, lowest layer first
//!
//! Each layer uses only the layers below it; the unit test `layers::no_module_imports_one_above_it`
//! fails on an import that goes upward.
//!
//! | layer | module | what it holds |
//! | --- | --- | --- |
//! | 0 | [`files`] | files from user paths, the atomic private-file writer, locks |
//! | 1 | [`bindings`], [`sandbox`] | the contract's generated types; the per-call limits and the limit trip |
//! | 2 | [`signing`], [`options`] | ed25519 signatures of components and artifacts, the version floor; the run options |
//! | 3 | [`capability`] | `http`, `store`, `uicc`: each its context, `Host` impl and `add_to_linker` |
//! | 4 | [`engine`] | the wasmtime engine and linker, the store per call, the compile cache, the one typed call |
//! | 5 | [`component`] | file kinds and precompiled artifacts, the one loader, targets, default endpoints and export formats, the lifecycle |

#[allow(missing_docs)]
pub mod bindings;
pub mod capability;
pub mod component;
pub mod engine;
pub mod files;
#[cfg(test)]
mod layers;
pub mod options;
pub mod sandbox;
pub mod signing;

pub use capability::http::OutboundPolicy;
pub use capability::store::SecretStore;
pub use capability::uicc::UiccAccess;
#[cfg(feature = "jit")]
pub use component::DEFAULT_COMPONENT;
pub use engine::{KryptonPre, Runtime};
pub use options::ProvisionOptions;
