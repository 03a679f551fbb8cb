//! What the component stores: one JSON bundle per target in the host's `secret-store`.
//!
//! The field names are Krypton's own (`deviceId`, `host`, `certificate`, `privateKey`, ...), so
//! an operator reading a bundle sees the API's vocabulary. `formatVersion` lets a later
//! component read bundles written by this one. PEM fields are stored canonical (LF, final newline).

use super::identifiers::{self as id, Rule};
use super::model::{AuthMode, Error, Report, Secret, Target, Warning};
use super::validate;
use serde::{Deserialize, Serialize};

/// The bundle format this component writes.
pub const FORMAT_VERSION: u32 = 1;

/// Azure IoT Hub credentials from a DPS registration (Krypton P6 + P7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureIotBundle {
    /// The bundle format this component wrote ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// When Krypton answered `assigned`, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// The mode the bundle was obtained in; written only when `sim` (absent: network).
    #[serde(default, skip_serializing_if = "AuthMode::is_network")]
    pub mode: AuthMode,
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

/// AWS IoT Core credentials (Krypton P1, or P1 + P2 + P3 in the split flow).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsIotBundle {
    /// The bundle format this component wrote ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// When Krypton answered, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// The mode the bundle was obtained in; written only when `sim` (absent: network).
    #[serde(default, skip_serializing_if = "AuthMode::is_network")]
    pub mode: AuthMode,
    /// AWS region, e.g. `ap-northeast-1`.
    pub region: String,
    /// AWS IoT data endpoint, e.g. `xxxx-ats.iot.ap-northeast-1.amazonaws.com`.
    pub host: String,
    /// MQTT client ID: Krypton's `clientId`, else the thing name.
    pub client_id: String,
    /// Device certificate (and chain), PEM.
    pub certificate: String,
    /// Device private key, PEM.
    pub private_key: Secret,
    /// Amazon root CA, PEM, when Krypton sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_ca_certificate: Option<String>,
    /// AWS IoT certificate ID, when Krypton sent one (split flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
}

/// Amazon Cognito temporary credentials (Krypton P4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsCognitoBundle {
    /// The bundle format this component wrote ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// When Krypton answered, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// The mode the bundle was obtained in; written only when `sim` (absent: network).
    #[serde(default, skip_serializing_if = "AuthMode::is_network")]
    pub mode: AuthMode,
    /// Cognito identity ID, e.g. `ap-northeast-1:1234…`.
    pub identity_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// AWS region, when Krypton sent one.
    pub region: Option<String>,
    /// AWS access key ID (an identifier, not a secret, per AWS).
    pub access_key_id: String,
    /// AWS secret access key.
    pub secret_key: Secret,
    /// AWS session token.
    pub session_token: Secret,
    /// When the credentials expire, ms since the Unix epoch (normalised from ms, s or ISO-8601).
    pub expiration_ms: u64,
}

/// Amazon Cognito OpenID token (Krypton P5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsCognitoOpenidBundle {
    /// The bundle format this component wrote ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// When Krypton answered, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// The mode the bundle was obtained in; written only when `sim` (absent: network).
    #[serde(default, skip_serializing_if = "AuthMode::is_network")]
    pub mode: AuthMode,
    /// AWS region.
    pub region: String,
    /// Cognito identity ID.
    pub identity_id: String,
    /// The OpenID token.
    pub token: Secret,
}

/// SORACOM Inventory (LwM2M) bootstrap credentials (Krypton P9).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryBundle {
    /// The bundle format this component wrote ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// When Krypton answered, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// The mode the bundle was obtained in; written only when `sim` (absent: network).
    #[serde(default, skip_serializing_if = "AuthMode::is_network")]
    pub mode: AuthMode,
    /// The LwM2M endpoint client name the device registered with.
    pub endpoint: String,
    /// LwM2M server URI, e.g. `coaps://jp.inventory.soracom.io:5684`.
    pub server_uri: String,
    /// DTLS-PSK identity (the Inventory device ID, `d-…`).
    pub psk_id: String,
    /// DTLS-PSK key, standard base64 of 16 bytes.
    pub application_key: Secret,
}

/// SORACOM Arc WireGuard parameters (Krypton P10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArcBundle {
    /// The bundle format this component wrote ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// When Krypton answered, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// The mode the bundle was obtained in; written only when `sim` (absent: network).
    #[serde(default, skip_serializing_if = "AuthMode::is_network")]
    pub mode: AuthMode,
    /// WireGuard private key of this client, base64 (44 characters).
    pub arc_client_peer_private_key: Secret,
    /// The client's tunnel address (IPv4 literal).
    pub arc_client_peer_ip_address: String,
    /// WireGuard public key of the Arc server, base64 (44 characters).
    pub arc_server_peer_public_key: String,
    /// `host:port` exactly as Krypton sent it, `:11010` added when it had no port.
    pub arc_server_endpoint: String,
    /// CIDRs routed through the tunnel.
    #[serde(rename = "arcAllowedIPs")]
    pub arc_allowed_ips: Vec<String>,
}

/// SORACOM Air subscriber metadata (Krypton P11): the JSON object as Krypton sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriberMetadataBundle {
    /// The bundle format this component wrote ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// When Krypton answered, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// The mode the bundle was obtained in; written only when `sim` (absent: network).
    #[serde(default, skip_serializing_if = "AuthMode::is_network")]
    pub mode: AuthMode,
    /// The metadata object as Krypton sent it.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// SORACOM Air group userdata (Krypton P12): raw text, not JSON. Treated as secret because
/// operators put anything there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserdataBundle {
    /// The bundle format this component wrote ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// When Krypton answered, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// The mode the bundle was obtained in; written only when `sim` (absent: network).
    #[serde(default, skip_serializing_if = "AuthMode::is_network")]
    pub mode: AuthMode,
    /// The group's userdata, as text.
    pub userdata: Secret,
}

/// A stored bundle, tagged by target (`"target": "azure-iot"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "kebab-case")]
pub enum Bundle {
    /// Target `azure-iot`.
    AzureIot(AzureIotBundle),
    /// Target `aws-iot`.
    AwsIot(AwsIotBundle),
    /// Target `aws-cognito`.
    AwsCognito(AwsCognitoBundle),
    /// Target `aws-cognito-openid`.
    AwsCognitoOpenid(AwsCognitoOpenidBundle),
    /// Target `inventory`.
    Inventory(InventoryBundle),
    /// Target `arc`.
    Arc(ArcBundle),
    /// Target `subscriber-metadata`.
    SubscriberMetadata(SubscriberMetadataBundle),
    /// Target `userdata`.
    Userdata(UserdataBundle),
}

/// Subscriber-metadata fields that reach a report, with their rules.
const METADATA_IDENTIFIERS: [(&str, Rule); 4] = [
    ("imsi", id::imsi),
    ("msisdn", id::msisdn),
    ("groupId", id::soracom_word),
    ("status", id::soracom_word),
];

/// An error about a value of the stored bundle `name` (read back from the store, not just
/// received from Krypton): [`Error::InvalidResponse`] keeps its field and says in the reason
/// that the stored bundle is at fault and what to do; other errors pass through.
pub fn stored_error(name: &str, e: Error) -> Error {
    match e {
        Error::InvalidResponse { field, reason, .. } => Error::InvalidResponse {
            field,
            stored: true,
            reason: format!(
                "stored bundle `{name}`: {reason} (the file was changed after it was stored, or \
                 written by another program; it is kept as it is: provision `{name}` again with \
                 force to replace it)"
            ),
        },
        other => other,
    }
}

/// Seconds since the epoch as RFC 3339 UTC: the contract's one rendering of a date, the same
/// as the front ends print.
pub use krypton_contract::rfc3339;

fn ids(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Bundle {
    /// The target this bundle belongs to.
    pub fn target(&self) -> Target {
        match self {
            Bundle::AzureIot(_) => Target::AzureIot,
            Bundle::AwsIot(_) => Target::AwsIot,
            Bundle::AwsCognito(_) => Target::AwsCognito,
            Bundle::AwsCognitoOpenid(_) => Target::AwsCognitoOpenid,
            Bundle::Inventory(_) => Target::Inventory,
            Bundle::Arc(_) => Target::Arc,
            Bundle::SubscriberMetadata(_) => Target::SubscriberMetadata,
            Bundle::Userdata(_) => Target::Userdata,
        }
    }

    /// The mode this bundle was obtained in.
    pub fn mode(&self) -> AuthMode {
        match self {
            Bundle::AzureIot(b) => b.mode,
            Bundle::AwsIot(b) => b.mode,
            Bundle::AwsCognito(b) => b.mode,
            Bundle::AwsCognitoOpenid(b) => b.mode,
            Bundle::Inventory(b) => b.mode,
            Bundle::Arc(b) => b.mode,
            Bundle::SubscriberMetadata(b) => b.mode,
            Bundle::Userdata(b) => b.mode,
        }
    }

    /// Record the mode the bundle was obtained in (the parsers build bundles in the default,
    /// network; the orchestration sets the run's mode before storing).
    pub fn set_mode(&mut self, mode: AuthMode) {
        match self {
            Bundle::AzureIot(b) => b.mode = mode,
            Bundle::AwsIot(b) => b.mode = mode,
            Bundle::AwsCognito(b) => b.mode = mode,
            Bundle::AwsCognitoOpenid(b) => b.mode = mode,
            Bundle::Inventory(b) => b.mode = mode,
            Bundle::Arc(b) => b.mode = mode,
            Bundle::SubscriberMetadata(b) => b.mode = mode,
            Bundle::Userdata(b) => b.mode = mode,
        }
    }

    fn header(&self) -> (u32, u64) {
        match self {
            Bundle::AzureIot(b) => (b.format_version, b.obtained_at_ms),
            Bundle::AwsIot(b) => (b.format_version, b.obtained_at_ms),
            Bundle::AwsCognito(b) => (b.format_version, b.obtained_at_ms),
            Bundle::AwsCognitoOpenid(b) => (b.format_version, b.obtained_at_ms),
            Bundle::Inventory(b) => (b.format_version, b.obtained_at_ms),
            Bundle::Arc(b) => (b.format_version, b.obtained_at_ms),
            Bundle::SubscriberMetadata(b) => (b.format_version, b.obtained_at_ms),
            Bundle::Userdata(b) => (b.format_version, b.obtained_at_ms),
        }
    }

    /// Serialize for the secret store.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing strings, integers and JSON values cannot fail.
        serde_json::to_vec_pretty(self).expect("bundle serializes")
    }

    /// Parse a stored bundle. Errors: [`Error::Storage`] when it is not a bundle of this format.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self, Error> {
        let bundle: Bundle = serde_json::from_slice(bytes).map_err(|e| {
            // serde_json's messages name a position or a field, never a value.
            Error::Storage(format!("stored bundle `{name}` is unreadable: {e}"))
        })?;
        let (version, _) = bundle.header();
        if version != FORMAT_VERSION {
            return Err(Error::Storage(format!(
                "stored bundle `{name}` has format version {version}, this component reads {FORMAT_VERSION}"
            )));
        }
        Ok(bundle)
    }

    /// Check every field that reaches a report, an export or a `wg-quick` file against the
    /// rules of the service that owns it ([`super::identifiers`]), and the credentials again
    /// (certificate chain, key matching the certificate, root CA). Secrets that are only
    /// stored (Cognito secret key and session token, OpenID token, Inventory key, userdata)
    /// are checked by the renderer that writes them, if any.
    ///
    /// Errors: [`Error::InvalidResponse`] naming the bundle field (Krypton's name), with the
    /// rule that was broken; the value is never echoed.
    pub fn validate(&self) -> Result<(), Error> {
        let check = |field: &str, value: &str, rule: Rule| id::check(field, value, rule);
        match self {
            Bundle::AzureIot(b) => {
                check("deviceId", &b.device_id, id::iot_hub_device_id)?;
                check("host", &b.host, id::dns_name)?;
                check("operationId", &b.operation_id, id::dps_operation_id)?;
                validate::credentials(
                    &b.certificate,
                    b.private_key.expose(),
                    b.root_ca_certificate.as_deref(),
                )?;
            }
            Bundle::AwsIot(b) => {
                check("region", &b.region, id::aws_region)?;
                check("host", &b.host, id::dns_name)?;
                check("clientId", &b.client_id, id::aws_iot_client_id)?;
                if let Some(cid) = &b.certificate_id {
                    check("certificateId", cid, id::aws_certificate_id)?;
                }
                validate::credentials(
                    &b.certificate,
                    b.private_key.expose(),
                    b.root_ca_certificate.as_deref(),
                )?;
            }
            Bundle::AwsCognito(b) => {
                check("identityId", &b.identity_id, id::cognito_identity_id)?;
                check("accessKeyId", &b.access_key_id, id::aws_access_key_id)?;
                if let Some(region) = &b.region {
                    check("region", region, id::aws_region)?;
                }
            }
            Bundle::AwsCognitoOpenid(b) => {
                check("identityId", &b.identity_id, id::cognito_identity_id)?;
                check("region", &b.region, id::aws_region)?;
            }
            Bundle::Inventory(b) => {
                check("endpoint", &b.endpoint, id::lwm2m_endpoint_name)?;
                check("serverUri", &b.server_uri, id::coap_uri)?;
                check("pskId", &b.psk_id, id::psk_identity)?;
            }
            Bundle::Arc(b) => {
                check(
                    "arcClientPeerPrivateKey",
                    b.arc_client_peer_private_key.expose(),
                    id::wireguard_key,
                )?;
                check(
                    "arcClientPeerIpAddress",
                    &b.arc_client_peer_ip_address,
                    id::ip_address,
                )?;
                check(
                    "arcServerPeerPublicKey",
                    &b.arc_server_peer_public_key,
                    id::wireguard_key,
                )?;
                check(
                    "arcServerEndpoint",
                    &b.arc_server_endpoint,
                    id::host_and_port,
                )?;
                if b.arc_allowed_ips.is_empty() {
                    return Err(Error::invalid("arcAllowedIPs", "empty"));
                }
                for (i, net) in b.arc_allowed_ips.iter().enumerate() {
                    id::cidr(net).map_err(|r| {
                        Error::invalid("arcAllowedIPs", format!("entry {}: {r}", i + 1))
                    })?;
                }
            }
            Bundle::SubscriberMetadata(b) => {
                for (field, rule) in METADATA_IDENTIFIERS {
                    if let Some(value) = b.metadata.get(field).and_then(|v| v.as_str()) {
                        check(field, value, rule)?;
                    }
                }
            }
            Bundle::Userdata(_) => {}
        }
        Ok(())
    }

    fn certificate_pem(&self) -> Option<&str> {
        match self {
            Bundle::AzureIot(b) => Some(&b.certificate),
            Bundle::AwsIot(b) => Some(&b.certificate),
            _ => None,
        }
    }

    /// When the bundle's credentials expire, ms since the Unix epoch, for bundles that carry
    /// an expiry of their own (Cognito's `expiration`); `None` for the others.
    pub fn expires_at_ms(&self) -> Option<u64> {
        match self {
            Bundle::AwsCognito(b) => Some(b.expiration_ms),
            _ => None,
        }
    }

    /// The report for this bundle: identifiers (never secrets) and a summary of its leaf
    /// certificate, if it has one. Every value is checked with [`Bundle::validate`] first.
    ///
    /// Errors: [`Error::InvalidResponse`] naming the field that breaks its rule (callers
    /// reading a stored bundle wrap it with [`stored_error`]).
    pub fn report(&self, reused: bool) -> Result<Report, Error> {
        let target = self.target();
        // A report is rendered output: every value in it is checked first.
        self.validate()?;
        let leaf = match self.certificate_pem() {
            Some(pem) => Some(validate::parse_certificates("certificate", pem)?.remove(0)),
            None => None,
        };
        let certificate = leaf.as_ref().map(validate::summarize);
        let identifiers = match self {
            Bundle::AzureIot(b) => ids(&[
                ("deviceId", &b.device_id),
                ("host", &b.host),
                ("operationId", &b.operation_id),
            ]),
            Bundle::AwsIot(b) => {
                let mut v = ids(&[
                    ("clientId", &b.client_id),
                    ("host", &b.host),
                    ("region", &b.region),
                ]);
                if let Some(id) = &b.certificate_id {
                    v.push(("certificateId".into(), id.clone()));
                }
                v
            }
            Bundle::AwsCognito(b) => {
                let mut v = ids(&[
                    ("identityId", &b.identity_id),
                    ("accessKeyId", &b.access_key_id),
                ]);
                if let Some(region) = &b.region {
                    v.push(("region".into(), region.clone()));
                }
                v.push((
                    "expiration".into(),
                    rfc3339((b.expiration_ms / 1000) as i64),
                ));
                v
            }
            Bundle::AwsCognitoOpenid(b) => {
                ids(&[("identityId", &b.identity_id), ("region", &b.region)])
            }
            Bundle::Inventory(b) => ids(&[
                ("endpoint", &b.endpoint),
                ("serverUri", &b.server_uri),
                ("pskId", &b.psk_id),
            ]),
            Bundle::Arc(b) => ids(&[
                ("arcClientPeerIpAddress", &b.arc_client_peer_ip_address),
                ("arcServerEndpoint", &b.arc_server_endpoint),
                ("arcServerPeerPublicKey", &b.arc_server_peer_public_key),
                ("arcAllowedIPs", &b.arc_allowed_ips.join(",")),
            ]),
            Bundle::SubscriberMetadata(b) => {
                let mut v = Vec::new();
                for (key, _) in METADATA_IDENTIFIERS {
                    if let Some(value) = b.metadata.get(key).and_then(|v| v.as_str()) {
                        v.push((key.to_string(), value.to_string()));
                    }
                }
                v
            }
            Bundle::Userdata(_) => Vec::new(),
        };
        let sizes = match self {
            Bundle::SubscriberMetadata(b) => vec![("fields".to_string(), b.metadata.len() as u64)],
            Bundle::Userdata(b) => vec![("bytes".to_string(), b.userdata.expose().len() as u64)],
            _ => Vec::new(),
        };
        let (_, obtained_at_ms) = self.header();
        let warnings = self.cross_checks(certificate.as_ref(), leaf.as_ref());
        Ok(Report {
            target,
            bundle: target.bundle_name().to_string(),
            reused,
            obtained_at_ms,
            identifiers,
            certificate,
            sizes,
            // The operations layer knows which targets mint credentials; it sets this.
            mints_credentials: false,
            mode: self.mode(),
            warnings,
        })
    }

    /// Where one answer carries two views of one fact and they disagree. Such a bundle is
    /// still stored (it may be what the service meant) and reported, with one [`Warning`] per
    /// disagreement, in this order:
    ///
    /// * `device-id-vs-certificate-cn` (Azure IoT): DPS X.509 attestation identifies a device
    ///   by its certificate: the registration ID, which becomes the IoT Hub device ID, is the
    ///   subject common name (CN) of the device certificate (Microsoft Learn, Azure IoT Hub
    ///   Device Provisioning Service, "X.509 certificate attestation"). A `deviceId` that is
    ///   not the CN is a device that may fail at IoT Hub, or one given another device's
    ///   identity.
    /// * `certificate-id-vs-certificate` (AWS IoT): a certificate ID is the SHA-256 of the
    ///   DER certificate (AWS IoT API Reference, `Certificate.certificateId`: 64 hex digits;
    ///   the value `aws iot describe-certificate` shows for a certificate's fingerprint).
    /// * `region-vs-host` (AWS IoT): the region is also named by the data endpoint,
    ///   `<prefix>-ats.iot.<region>.amazonaws.com` (AWS IoT Developer Guide, "AWS IoT device
    ///   data and service endpoints"); checked only when the host has that form.
    /// * `identity-id-vs-region` (Amazon Cognito, both targets): an identity ID is
    ///   `<region>:<uuid>`, the region of its identity pool (Amazon Cognito Identity API
    ///   Reference, `IdentityId`, "Pattern: `[\w-]+:[0-9a-f-]+`"); checked when a region is
    ///   stored.
    ///
    /// `summary` and `leaf` are the stored leaf certificate's (for the targets that have one).
    /// A private key that does not match its certificate is not a warning: such a bundle can
    /// never connect, so it is refused before it is stored ([`validate::credentials`]) and the
    /// credentials already stored are kept.
    pub fn cross_checks(
        &self,
        summary: Option<&super::model::CertificateSummary>,
        leaf: Option<&validate::ParsedCertificate>,
    ) -> Vec<Warning> {
        let warn = |check: &str, message: String| Warning {
            check: check.to_string(),
            message,
        };
        let mut warnings = Vec::new();
        match self {
            Bundle::AzureIot(b) => {
                let cn = leaf.and_then(|l| validate::subject_common_name(&l.cert));
                if cn.as_deref() != Some(b.device_id.as_str()) {
                    let cn = cn.map_or_else(|| "none".to_string(), |cn| quoted(&cn));
                    warnings.push(warn(
                        "device-id-vs-certificate-cn",
                        format!(
                            "deviceId `{}` is not the certificate's subject CN ({cn}): DPS X.509 \
                             attestation registers a device under its certificate's CN, so IoT \
                             Hub may refuse this device, or it was given another device's \
                             identity; check the DPS enrollment and the deviceId Krypton sent",
                            b.device_id
                        ),
                    ));
                }
            }
            Bundle::AwsIot(b) => {
                if let (Some(id), Some(summary)) = (&b.certificate_id, summary)
                    && !id.eq_ignore_ascii_case(&summary.sha256_fingerprint)
                {
                    warnings.push(warn(
                        "certificate-id-vs-certificate",
                        format!(
                            "certificateId `{id}` is not the SHA-256 of the stored certificate \
                             (`{}`), which is how AWS IoT names a certificate: the certificate \
                             returned may not be the one registered for this device",
                            summary.sha256_fingerprint
                        ),
                    ));
                }
                if let Some(host_region) = id::aws_iot_host_region(&b.host)
                    && host_region != b.region
                {
                    warnings.push(warn(
                        "region-vs-host",
                        format!(
                            "region `{}` is not the region of the AWS IoT endpoint `{}` \
                             (`{host_region}`): AWS IoT things and certificates are regional, so \
                             one of the two is wrong",
                            b.region, b.host
                        ),
                    ));
                }
            }
            Bundle::AwsCognito(AwsCognitoBundle {
                identity_id,
                region: Some(region),
                ..
            })
            | Bundle::AwsCognitoOpenid(AwsCognitoOpenidBundle {
                identity_id,
                region,
                ..
            }) => {
                let prefix = identity_id.split_once(':').map_or("", |(p, _)| p);
                if prefix != region {
                    warnings.push(warn(
                        "identity-id-vs-region",
                        format!(
                            "identityId `{identity_id}` belongs to region `{prefix}`, not to \
                             region `{region}`: a Cognito identity lives in the region of its \
                             identity pool, so calls to `{region}` will not find it"
                        ),
                    ));
                }
            }
            _ => {}
        }
        warnings
    }
}

/// A value from a certificate for a warning's text: control characters escaped
/// ([`validate::escape_controls`]), at most 128 characters, in backquotes.
fn quoted(value: &str) -> String {
    let escaped = validate::escape_controls(value);
    match escaped.char_indices().nth(128) {
        Some((cut, _)) => format!("`{}...`", &escaped[..cut]),
        None => format!("`{escaped}`"),
    }
}
