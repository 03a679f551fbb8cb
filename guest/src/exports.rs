//! Exports: a stored bundle rendered as files in the form the software beside the gateway
//! reads (WIT `render-export`). The component renders; the host only writes the files.
//!
//! Formats and their consumers:
//! * `pem`: certificate (leaf), chain, private key, root CA;
//! * `aziot`: the Azure IoT Identity Service / IoT Edge `config.toml` section for manual X.509
//!   provisioning (`[provisioning] source = "manual"`, `iothub_hostname`, `device_id`,
//!   `[provisioning.authentication] method = "x509"`, `identity_cert` / `identity_pk` as
//!   `file://` URIs), next to the PEM files it points at;
//! * `aws-iot`: PEM files plus `aws-iot.json` with `endpoint`, `port` (8883, MQTT over TLS),
//!   `clientId`, `region` and the file paths, the inputs every AWS IoT Device SDK sample asks for;
//! * `wireguard`: the `wg-quick` file of [`crate::targets::wireguard_config`];
//! * `env`: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` and
//!   `AWS_DEFAULT_REGION`, the AWS SDKs' standard environment variables, one `KEY=value` a line
//!   (systemd `EnvironmentFile=` and `docker --env-file` read it as is).
//!
//! Every value is checked again before it is written ([`Bundle::validate`]: a bundle on disk may
//! have been edited since it was stored), and written through a real serializer where one
//! exists (`toml` for `aziot`, `serde_json` for `aws-iot`) or through the one strict function
//! of its format ([`crate::render::wg_quick_value`], [`crate::render::env_value`]). PEM files
//! are re-encoded from the parsed DER, never copied from the stored text, and a private key is
//! written in a form OpenSSL loads ([`validate::exportable_key`]), the file's `converted`
//! saying when that differs from what Krypton sent.

use crate::bundle::{Bundle, rfc3339, stored_error};
use crate::model::{Error, Target};
use crate::render::{env_value, file_uri};
use crate::targets;
use crate::validate;
use serde::Serialize;

/// One file to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportFile {
    pub name: String,
    pub contents: Vec<u8>,
    /// Owner-only (0600) when true.
    pub secret: bool,
    /// How the file differs from what Krypton sent, in plain words, when it does (WIT
    /// `export-file.converted`): today only a private key converted to a form OpenSSL loads
    /// ([`validate::exportable_key`]).
    pub converted: Option<String>,
}

fn file(name: &str, contents: impl Into<Vec<u8>>, secret: bool) -> ExportFile {
    ExportFile {
        name: name.to_string(),
        contents: contents.into(),
        secret,
        converted: None,
    }
}

/// Certificate (leaf), chain, key and root CA files for a certificate bundle, prefixed
/// `prefix`, each re-encoded from what [`targets::credentials`] parsed (a PEM field edited to
/// carry text around its blocks loses that text). The key is written in a form OpenSSL loads
/// ([`validate::exportable_key`]: an EC key without its curve becomes PKCS#8 with the
/// certificate's curve), and the key file's `converted` says so when it differs from the
/// stored key; the stored bundle itself keeps what Krypton sent.
fn pem_files(
    prefix: &str,
    certificate: &str,
    key: &str,
    root: Option<&str>,
) -> Result<Vec<ExportFile>, Error> {
    let creds = targets::credentials(certificate, key, root)?;
    let certs = validate::parse_certificates("certificate", &creds.certificate)?;
    let key = validate::exportable_key("privateKey", creds.private_key.expose(), &certs[0].cert)?;
    let mut files = vec![
        file(
            &format!("{prefix}-certificate.pem"),
            validate::certificates_to_pem(&certs[..1]),
            false,
        ),
        file(&format!("{prefix}-chain.pem"), creds.certificate, false),
        ExportFile {
            converted: key.converted,
            ..file(&format!("{prefix}-private-key.pem"), key.pem, true)
        },
    ];
    if let Some(root) = creds.root_ca_certificate {
        files.push(file(&format!("{prefix}-root-ca.pem"), root, false));
    }
    Ok(files)
}

/// The Azure IoT Identity Service `config.toml` section for manual X.509 provisioning
/// (Azure IoT Edge documentation, "Create and provision an IoT Edge device on Linux using
/// X.509 certificates": `[provisioning] source = "manual"`, `iothub_hostname`, `device_id`,
/// `[provisioning.authentication] method = "x509"`, `identity_cert`, `identity_pk`).
#[derive(Serialize)]
struct AziotConfig<'a> {
    provisioning: AziotProvisioning<'a>,
}

#[derive(Serialize)]
struct AziotProvisioning<'a> {
    source: &'static str,
    iothub_hostname: &'a str,
    device_id: &'a str,
    authentication: AziotAuthentication,
}

#[derive(Serialize)]
struct AziotAuthentication {
    method: &'static str,
    identity_cert: String,
    identity_pk: String,
}

/// The AWS IoT Device SDK inputs (`aws-iot.json`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AwsIotSdkConfig<'a> {
    endpoint: &'a str,
    /// MQTT over TLS (AWS IoT Core "Device communication protocols": port 8883).
    port: u16,
    client_id: &'a str,
    region: &'a str,
    certificate: String,
    private_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_ca: Option<String>,
}

fn mismatch(target: Target, format: &str, fits: &str) -> Error {
    Error::InvalidRequest(format!(
        "format `{format}` does not fit target `{}`; it exports {fits}",
        target.name()
    ))
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
    let known = ["pem", "aziot", "aws-iot", "wireguard", "env"];
    if !known.contains(&format) {
        return Err(Error::InvalidRequest(format!(
            "unknown export format `{format}`; expected pem, aziot, aws-iot, wireguard or env"
        )));
    }
    let fits = matches!(
        (format, bundle),
        ("pem", Bundle::AzureIot(_) | Bundle::AwsIot(_))
            | ("aziot", Bundle::AzureIot(_))
            | ("aws-iot", Bundle::AwsIot(_))
            | ("wireguard", Bundle::Arc(_))
            | ("env", Bundle::AwsCognito(_))
    );
    if !fits {
        let exports = match format {
            "pem" => "azure-iot and aws-iot certificates",
            "aziot" => "azure-iot",
            "aws-iot" => "aws-iot",
            "wireguard" => "arc",
            _ => "aws-cognito",
        };
        return Err(mismatch(target, format, exports));
    }
    bundle.validate()?;
    match bundle {
        Bundle::AzureIot(b) => {
            let mut files = pem_files(
                "azure-iot",
                &b.certificate,
                b.private_key.expose(),
                b.root_ca_certificate.as_deref(),
            )?;
            if format == "aziot" {
                let config = AziotConfig {
                    provisioning: AziotProvisioning {
                        source: "manual",
                        iothub_hostname: &b.host,
                        device_id: &b.device_id,
                        authentication: AziotAuthentication {
                            method: "x509",
                            identity_cert: file_uri(directory, "azure-iot-chain.pem"),
                            identity_pk: file_uri(directory, "azure-iot-private-key.pem"),
                        },
                    },
                };
                let body = toml::to_string(&config).map_err(|e| {
                    Error::invalid("body", format!("the TOML serializer refused it: {e}"))
                })?;
                let text = format!(
                    "# Azure IoT Identity Service / IoT Edge: manual X.509 provisioning from the Krypton\n\
                     # `azure-iot` bundle. Merge into /etc/aziot/config.toml, then run\n\
                     # `sudo iotedge config apply` (or `sudo aziotctl config apply`).\n{body}"
                );
                files.push(file("aziot-provisioning.toml", text, false));
            }
            Ok(files)
        }
        Bundle::AwsIot(b) => {
            let mut files = pem_files(
                "aws-iot",
                &b.certificate,
                b.private_key.expose(),
                b.root_ca_certificate.as_deref(),
            )?;
            if format == "aws-iot" {
                let dir = directory.trim_end_matches('/');
                let config = AwsIotSdkConfig {
                    endpoint: &b.host,
                    port: 8883,
                    client_id: &b.client_id,
                    region: &b.region,
                    certificate: format!("{dir}/aws-iot-certificate.pem"),
                    private_key: format!("{dir}/aws-iot-private-key.pem"),
                    root_ca: b
                        .root_ca_certificate
                        .as_ref()
                        .map(|_| format!("{dir}/aws-iot-root-ca.pem")),
                };
                let mut text = serde_json::to_string_pretty(&config).map_err(|e| {
                    Error::invalid("body", format!("the JSON serializer refused it: {e}"))
                })?;
                text.push('\n');
                files.push(file("aws-iot.json", text, false));
            }
            Ok(files)
        }
        Bundle::Arc(b) => Ok(vec![file(
            "arc.conf",
            targets::wireguard_config(b, krypton_addresses)?,
            true,
        )]),
        Bundle::AwsCognito(b) => {
            let mut text = format!(
                "# Amazon Cognito credentials from Krypton; they expire at {}.\n\
                 AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_SESSION_TOKEN={}\n",
                rfc3339((b.expiration_ms / 1000) as i64),
                env_value("accessKeyId", &b.access_key_id)?,
                env_value("secretKey", b.secret_key.expose())?,
                env_value("sessionToken", b.session_token.expose())?,
            );
            if let Some(region) = &b.region {
                let region = env_value("region", region)?;
                text.push_str(&format!(
                    "AWS_REGION={region}\nAWS_DEFAULT_REGION={region}\n"
                ));
            }
            Ok(vec![file("aws-cognito.env", text, true)])
        }
        _ => unreachable!("checked by `fits` above"),
    }
}
