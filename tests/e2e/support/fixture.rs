//! [`Fixture`]: what most end-to-end tests start from. A running mock, a private temporary
//! directory with the mock's CA written to `ca.pem` once, and a store path in it (`store`,
//! created only when something opens it), with the ways in: the library
//! ([`Fixture::run`]), the binary ([`Fixture::provision`]) and the daemon's configuration
//! ([`Fixture::gateway`]).

use super::cli::{Cli, cli, text};
use super::gateway::GatewayToml;
use super::{provision, request};
use krypton_host::bindings::{ProvisionError, ProvisionReport, ProvisionRequest, Target};
use krypton_host::capability::store::SecretStore;
use krypton_mock::{MockConfig, MockKrypton};
use std::path::{Path, PathBuf};

/// A mock on 127.0.0.1 (port 0), a private temporary directory, the mock's CA and a store
/// path in it.
pub struct Fixture {
    pub mock: MockKrypton,
    pub tmp: tempfile::TempDir,
    /// `DIR/ca.pem`: the mock's CA certificate, for `--ca-file` and `ca_file`.
    pub ca: PathBuf,
    /// `DIR/store`: the store the fixture's runs use (made by the first run that opens it).
    pub store: PathBuf,
}

impl Fixture {
    /// A mock with the default configuration.
    pub async fn new() -> Fixture {
        Fixture::with_config(MockConfig::default()).await
    }

    /// A mock with `config`.
    pub async fn with_config(config: MockConfig) -> Fixture {
        let mock = MockKrypton::start("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap();
        Fixture::around(mock)
    }

    /// A fixture around a mock started elsewhere (on another address).
    pub fn around(mock: MockKrypton) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca.pem");
        std::fs::write(&ca, mock.ca_pem()).unwrap();
        let store = tmp.path().join("store");
        Fixture {
            mock,
            tmp,
            ca,
            store,
        }
    }

    /// The private temporary directory.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// `DIR/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The mock's base URL.
    pub fn endpoint(&self) -> String {
        self.mock.endpoint()
    }

    /// The store, opened (and so created) through the library.
    pub fn secret_store(&self) -> SecretStore {
        SecretStore::open(&self.store).unwrap()
    }

    /// The tests' request for `target` against the mock (see [`super::options`]).
    pub fn request(&self, target: Target) -> ProvisionRequest {
        request(target, self.mock.endpoint())
    }

    /// `req` through the library (the shared runtime) into the fixture's store.
    pub async fn run(&self, req: &ProvisionRequest) -> Result<ProvisionReport, ProvisionError> {
        provision(&self.mock, &self.secret_store(), req).await
    }

    /// `target` provisioned through the library; panics on a failure.
    pub async fn provisioned(&self, target: Target) -> ProvisionReport {
        self.run(&self.request(target))
            .await
            .unwrap_or_else(|e| panic!("{target:?}: {e:?}"))
    }

    /// `krypton-host provision TARGET --endpoint <mock> --ca-file DIR/ca.pem --store DIR/store`.
    pub fn provision(&self, target: &str) -> Cli {
        cli(["provision", target])
            .endpoint(&self.mock.endpoint())
            .ca(&self.ca)
            .store(&self.store)
    }

    /// `krypton-host status [TARGET] --store DIR/store`.
    pub fn status(&self, target: Option<&str>) -> Cli {
        cli(["status"])
            .args(target)
            .set("--store", text(&self.store))
    }

    /// A daemon configuration against the mock: `store`, `state_dir = DIR/state`,
    /// `endpoint`, `ca_file`.
    pub fn gateway(&self) -> GatewayToml {
        GatewayToml::default()
            .path("store", &self.store)
            .path("state_dir", &self.path("state"))
            .string("endpoint", &self.mock.endpoint())
            .path("ca_file", &self.ca)
    }

    /// Stop the mock (the directory goes when the fixture is dropped).
    pub async fn stop(self) {
        self.mock.stop().await;
    }
}
