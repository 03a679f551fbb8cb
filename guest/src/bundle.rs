//! What the component stores: one JSON bundle per target in the host's `secret-store`.
//!
//! The field names are Krypton's own (`deviceId`, `host`, `certificate`, `privateKey`, ...), so
//! an operator reading a bundle sees the API's vocabulary. `formatVersion` lets a later
//! component read bundles written by this one. PEM fields are stored canonical (LF, final newline).

use crate::model::{Error, Report, Target};
use crate::validate;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The bundle format this component writes.
pub const FORMAT_VERSION: u32 = 1;

/// A secret string (a private key). `Debug` never shows the value and there is no `Display`,
/// so it cannot reach a log line or an error by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The secret value, for storing and exporting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Azure IoT Hub credentials from a DPS registration (Krypton P6 + P7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureIotBundle {
    pub format_version: u32,
    /// When Krypton answered `assigned`, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// Azure device ID (the DPS registration ID Krypton used).
    pub device_id: String,
    /// Assigned IoT Hub host name, e.g. `myhub.azure-devices.net`.
    pub host: String,
    /// Krypton/DPS `operationId` of the registration.
    pub operation_id: String,
    /// Device certificate (and chain), PEM.
    pub certificate: String,
    /// Device private key, PEM.
    pub private_key: Secret,
    /// Root CA for the IoT Hub connection, PEM, when Krypton sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_ca_certificate: Option<String>,
}

/// AWS IoT Core credentials (Krypton P1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsIotBundle {
    pub format_version: u32,
    /// When Krypton answered, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// AWS region, e.g. `ap-northeast-1`.
    pub region: String,
    /// AWS IoT data endpoint, e.g. `xxxx-ats.iot.ap-northeast-1.amazonaws.com`.
    pub host: String,
    /// MQTT client ID (the thing name).
    pub client_id: String,
    /// Device certificate (and chain), PEM.
    pub certificate: String,
    /// Device private key, PEM.
    pub private_key: Secret,
    /// Amazon root CA, PEM, when Krypton sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_ca_certificate: Option<String>,
}

/// A stored bundle, tagged by target (`"target": "azure-iot"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "kebab-case")]
pub enum Bundle {
    AzureIot(AzureIotBundle),
    AwsIot(AwsIotBundle),
}

impl Bundle {
    pub fn target(&self) -> Target {
        match self {
            Bundle::AzureIot(_) => Target::AzureIot,
            Bundle::AwsIot(_) => Target::AwsIot,
        }
    }

    /// Serialize for the secret store.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_vec_pretty(self).expect("bundle serializes")
    }

    /// Parse a stored bundle. Errors: [`Error::Storage`] when it is not a bundle of this format.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self, Error> {
        let bundle: Bundle = serde_json::from_slice(bytes).map_err(|e| {
            // serde_json's messages name a position or a field, never a value.
            Error::Storage(format!("stored bundle `{name}` is unreadable: {e}"))
        })?;
        let version = match &bundle {
            Bundle::AzureIot(b) => b.format_version,
            Bundle::AwsIot(b) => b.format_version,
        };
        if version != FORMAT_VERSION {
            return Err(Error::Storage(format!(
                "stored bundle `{name}` has format version {version}, this component reads {FORMAT_VERSION}"
            )));
        }
        Ok(bundle)
    }

    fn certificate_pem(&self) -> &str {
        match self {
            Bundle::AzureIot(b) => &b.certificate,
            Bundle::AwsIot(b) => &b.certificate,
        }
    }

    /// The report for this bundle: identifiers and a summary of its leaf certificate.
    ///
    /// Errors: [`Error::Storage`] when the stored certificate no longer parses.
    pub fn report(&self, reused: bool) -> Result<Report, Error> {
        let target = self.target();
        let certs =
            validate::parse_certificates("certificate", self.certificate_pem()).map_err(|e| {
                Error::Storage(format!("stored bundle `{}`: {e}", target.bundle_name()))
            })?;
        let (obtained_at_ms, identifiers) = match self {
            Bundle::AzureIot(b) => (
                b.obtained_at_ms,
                vec![
                    ("deviceId".to_string(), b.device_id.clone()),
                    ("host".to_string(), b.host.clone()),
                    ("operationId".to_string(), b.operation_id.clone()),
                ],
            ),
            Bundle::AwsIot(b) => (
                b.obtained_at_ms,
                vec![
                    ("clientId".to_string(), b.client_id.clone()),
                    ("host".to_string(), b.host.clone()),
                    ("region".to_string(), b.region.clone()),
                ],
            ),
        };
        Ok(Report {
            target,
            bundle: target.bundle_name().to_string(),
            reused,
            obtained_at_ms,
            identifiers,
            certificate: Some(validate::summarize(&certs[0])),
        })
    }
}
