//! Layer 4, the export formats: a stored bundle rendered as files in the form the software
//! beside the gateway reads (WIT `render-export`), and the `wg-quick` file of WIT
//! `wireguard-config`. The component renders; the host only writes the files.
//!
//! One file per format, each with its consumer in its docs: `pem`, `aziot` (uses `pem`),
//! `aws_iot` (uses `pem`), `wireguard`, `env`. This file holds the table of formats
//! ([`FORMATS`]) and the two entry points that read the store ([`render_export`],
//! [`wireguard_config`]); the format files use only [`crate::types`] and `pem`.
//!
//! Every value is checked again before it is written ([`Bundle::validate`]: a bundle on disk may
//! have been edited since it was stored), and written through a real serializer where one
//! exists (`toml` for `aziot`, `serde_json` for `aws-iot`) or through the one strict function
//! of its format ([`crate::types::text::wg_quick_value`], [`crate::types::text::env_value`]).
//! PEM files are re-encoded from the parsed DER, never copied from the stored text, and a
//! private key is written in a form OpenSSL loads ([`crate::types::validate::exportable_key`]),
//! the file's `converted` saying when that differs from what Krypton sent.

pub mod pem;

pub mod aws_iot;
pub mod aziot;
pub mod env;
pub mod wireguard;

use crate::client::Capabilities;
use crate::ops::store::load;
use crate::types::bundle::{Bundle, stored_error};
use crate::types::model::{Error, ExportFile, Target};

/// Renders a checked bundle for files in `directory`, with Krypton's addresses (for
/// `wireguard`).
pub type Renderer = fn(&Bundle, &str, &[String]) -> Result<Vec<ExportFile>, Error>;

/// One export format.
pub struct Format {
    /// Its name in `render-export`.
    pub name: &'static str,
    /// The targets whose bundle it renders.
    pub targets: &'static [Target],
    /// What it exports, in the words of the error for a target it does not fit.
    pub exports: &'static str,
    /// What it writes and for which consumer, in one line (WIT `export-format.summary`).
    pub summary: &'static str,
    /// Renders a bundle of one of `targets`, already checked with [`Bundle::validate`].
    pub render: Renderer,
}

/// Every format, in the order `target-info.export-formats` lists them.
pub const FORMATS: [Format; 5] = [
    Format {
        name: pem::NAME,
        targets: &[Target::AzureIot, Target::AwsIot],
        exports: "azure-iot and aws-iot certificates",
        summary: "certificate, chain, private key and root CA as PEM files",
        render: pem::render,
    },
    Format {
        name: aziot::NAME,
        targets: &[Target::AzureIot],
        exports: "azure-iot",
        summary: "the PEM files plus the Azure IoT Edge `[provisioning]` section (manual X.509); \
                  the certificates for user aziotcs, the key for aziotks (its certificate and key services)",
        render: aziot::render,
    },
    Format {
        name: aws_iot::NAME,
        targets: &[Target::AwsIot],
        exports: "aws-iot",
        summary: "the PEM files plus aws-iot.json (endpoint, client ID, region) for AWS IoT Device SDKs",
        render: aws_iot::render,
    },
    Format {
        name: wireguard::NAME,
        targets: &[Target::Arc],
        exports: "arc",
        summary: "a wg-quick file for SORACOM Arc, Krypton's addresses routed through the tunnel",
        render: wireguard::render,
    },
    Format {
        name: env::NAME,
        targets: &[Target::AwsCognito],
        exports: "aws-cognito",
        summary: "AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)",
        render: env::render,
    },
];

/// The formats `render-export` accepts for `target` (WIT `target-info.export-formats`), e.g.
/// `["pem", "aziot"]` for `azure-iot`; empty when none.
pub fn names_for(target: Target) -> Vec<&'static str> {
    FORMATS
        .iter()
        .filter(|f| f.targets.contains(&target))
        .map(|f| f.name)
        .collect()
}

/// Render `bundle` as `format` for files written to `directory` (absolute). Every value is
/// checked first ([`Bundle::validate`]).
///
/// Errors: [`Error::InvalidRequest`] for an unknown format, a format the target has no use
/// for, or a directory that is not absolute or holds a control character;
/// [`Error::InvalidResponse`] naming the field when a stored value breaks its rule or cannot be
/// written in the format, its reason starting "stored bundle `<target>`".
pub fn render(
    bundle: &Bundle,
    format: &str,
    directory: &str,
    krypton_addresses: &[String],
) -> Result<Vec<ExportFile>, Error> {
    if !directory.starts_with('/') || directory.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(
            "the export directory must be an absolute path without control characters".into(),
        ));
    }
    let target = bundle.target();
    render_checked(bundle, format, directory, krypton_addresses)
        .map_err(|e| stored_error(target.bundle_name(), e))
}

fn render_checked(
    bundle: &Bundle,
    format: &str,
    directory: &str,
    krypton_addresses: &[String],
) -> Result<Vec<ExportFile>, Error> {
    let target = bundle.target();
    let Some(found) = FORMATS.iter().find(|f| f.name == format) else {
        return Err(Error::InvalidRequest(format!(
            "unknown export format `{format}`; expected pem, aziot, aws-iot, wireguard or env"
        )));
    };
    if !found.targets.contains(&target) {
        return Err(Error::InvalidRequest(format!(
            "format `{format}` does not fit target `{}`; it exports {}",
            target.name(),
            found.exports
        )));
    }
    bundle.validate()?;
    (found.render)(bundle, directory, krypton_addresses)
}

/// A `wg-quick` configuration from the stored `arc` bundle (WIT `wireguard-config`).
/// Errors: [`Error::Storage`] when no `arc` bundle is stored or the store fails;
/// [`Error::InvalidResponse`] naming the field, reason "stored bundle `arc`: ...", when a
/// stored value breaks its rule or cannot be written in a `wg-quick` file; see
/// [`wireguard::wireguard_config`].
pub fn wireguard_config(
    caps: &mut dyn Capabilities,
    krypton_addresses: &[String],
) -> Result<String, Error> {
    match load(caps, Target::Arc)? {
        // The file is run by wg-quick as root: `load` checked every stored value with the
        // rules used for Krypton's answer, and each one reaches the file through
        // `wg_quick_value`.
        Some(Bundle::Arc(bundle)) => wireguard::wireguard_config(&bundle, krypton_addresses)
            .map_err(|e| stored_error("arc", e)),
        _ => Err(Error::Storage(
            "no `arc` bundle is stored: provision `arc` first".into(),
        )),
    }
}

/// Render the stored bundle of `target` as export files (WIT `render-export`); see
/// [`render`]. Errors: [`Error::Storage`] when nothing is stored or the store fails;
/// [`Error::InvalidResponse`] naming the field when a stored value breaks its rule or cannot
/// be written in the format.
pub fn render_export(
    caps: &mut dyn Capabilities,
    target: Target,
    format: &str,
    directory: &str,
    krypton_addresses: &[String],
) -> Result<Vec<ExportFile>, Error> {
    match load(caps, target)? {
        Some(bundle) => render(&bundle, format, directory, krypton_addresses),
        None => Err(Error::Storage(format!(
            "no `{}` bundle is stored: provision `{}` first",
            target.name(),
            target.name()
        ))),
    }
}
