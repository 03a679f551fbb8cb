//! Exports: a stored bundle rendered as files in the form the software beside the gateway
//! reads (WIT `render-export`). The component renders; the host only writes the files.
//!
//! Formats and their consumers:
//! * `pem`: certificate (leaf), chain (as stored), private key, root CA;
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

use crate::bundle::{Bundle, rfc3339};
use crate::model::{Error, Target};
use crate::targets;
use crate::validate;

/// One file to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportFile {
    pub name: String,
    pub contents: Vec<u8>,
    /// Owner-only (0600) when true.
    pub secret: bool,
}

fn file(name: &str, contents: impl Into<Vec<u8>>, secret: bool) -> ExportFile {
    ExportFile {
        name: name.to_string(),
        contents: contents.into(),
        secret,
    }
}

/// A TOML basic string (TOML 1.0 §String): quotes and backslashes escaped; control characters
/// cannot occur (the values were validated as host names, IDs and paths).
fn toml_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `file://` URI of `name` in `directory` (an absolute path).
fn file_uri(directory: &str, name: &str) -> String {
    format!("file://{}/{name}", directory.trim_end_matches('/'))
}

/// Certificate, chain, key and root CA files for a certificate bundle, prefixed `prefix`.
fn pem_files(
    prefix: &str,
    certificate: &str,
    key: &str,
    root: Option<&str>,
) -> Result<Vec<ExportFile>, Error> {
    let certs = validate::parse_certificates("certificate", certificate)
        .map_err(|e| Error::Storage(format!("stored bundle `{prefix}`: {e}")))?;
    let mut files = vec![
        file(
            &format!("{prefix}-certificate.pem"),
            validate::certificates_to_pem(&certs[..1]),
            false,
        ),
        file(&format!("{prefix}-chain.pem"), certificate, false),
        file(&format!("{prefix}-private-key.pem"), key, true),
    ];
    if let Some(root) = root {
        files.push(file(&format!("{prefix}-root-ca.pem"), root, false));
    }
    Ok(files)
}

fn mismatch(target: Target, format: &str, fits: &str) -> Error {
    Error::InvalidRequest(format!(
        "format `{format}` does not fit target `{}`; it exports {fits}",
        target.name()
    ))
}

/// Render `bundle` as `format` for files written to `directory` (absolute). Errors:
/// [`Error::InvalidRequest`] for an unknown format, a format the target has no use for, or a
/// relative directory; [`Error::Storage`] when the stored values are unusable.
pub fn render(
    bundle: &Bundle,
    format: &str,
    directory: &str,
    krypton_addresses: &[String],
) -> Result<Vec<ExportFile>, Error> {
    if !directory.starts_with('/') || directory.contains(['\n', '"']) {
        return Err(Error::InvalidRequest(format!(
            "export directory `{directory}` must be an absolute path"
        )));
    }
    let target = bundle.target();
    match (format, bundle) {
        ("pem", Bundle::AzureIot(b)) => pem_files(
            "azure-iot",
            &b.certificate,
            b.private_key.expose(),
            b.root_ca_certificate.as_deref(),
        ),
        ("pem", Bundle::AwsIot(b)) => pem_files(
            "aws-iot",
            &b.certificate,
            b.private_key.expose(),
            b.root_ca_certificate.as_deref(),
        ),
        ("pem", _) => Err(mismatch(
            target,
            format,
            "azure-iot and aws-iot certificates",
        )),
        ("aziot", Bundle::AzureIot(b)) => {
            let mut files = pem_files(
                "azure-iot",
                &b.certificate,
                b.private_key.expose(),
                b.root_ca_certificate.as_deref(),
            )?;
            let config = format!(
                "# Azure IoT Identity Service / IoT Edge: manual X.509 provisioning from the Krypton\n\
                 # `azure-iot` bundle (operation {op}). Merge into /etc/aziot/config.toml, then run\n\
                 # `sudo iotedge config apply` (or `sudo aziotctl config apply`).\n\
                 [provisioning]\n\
                 source = \"manual\"\n\
                 iothub_hostname = {hub}\n\
                 device_id = {device}\n\
                 \n\
                 [provisioning.authentication]\n\
                 method = \"x509\"\n\
                 identity_cert = {cert}\n\
                 identity_pk = {key}\n",
                op = b.operation_id,
                hub = toml_string(&b.host),
                device = toml_string(&b.device_id),
                cert = toml_string(&file_uri(directory, "azure-iot-chain.pem")),
                key = toml_string(&file_uri(directory, "azure-iot-private-key.pem")),
            );
            files.push(file("aziot-provisioning.toml", config, false));
            Ok(files)
        }
        ("aziot", _) => Err(mismatch(target, format, "azure-iot")),
        ("aws-iot", Bundle::AwsIot(b)) => {
            let mut files = pem_files(
                "aws-iot",
                &b.certificate,
                b.private_key.expose(),
                b.root_ca_certificate.as_deref(),
            )?;
            let dir = directory.trim_end_matches('/');
            let mut json = serde_json::json!({
                "endpoint": b.host,
                "port": 8883,
                "clientId": b.client_id,
                "region": b.region,
                "certificate": format!("{dir}/aws-iot-certificate.pem"),
                "privateKey": format!("{dir}/aws-iot-private-key.pem"),
            });
            if b.root_ca_certificate.is_some() {
                json["rootCa"] = format!("{dir}/aws-iot-root-ca.pem").into();
            }
            let mut text = serde_json::to_string_pretty(&json).expect("JSON serializes");
            text.push('\n');
            files.push(file("aws-iot.json", text, false));
            Ok(files)
        }
        ("aws-iot", _) => Err(mismatch(target, format, "aws-iot")),
        ("wireguard", Bundle::Arc(b)) => {
            targets::revalidate_arc(b)?;
            Ok(vec![file(
                "arc.conf",
                targets::wireguard_config(b, krypton_addresses)?,
                true,
            )])
        }
        ("wireguard", _) => Err(mismatch(target, format, "arc")),
        ("env", Bundle::AwsCognito(b)) => {
            let values = [
                b.access_key_id.as_str(),
                b.secret_key.expose(),
                b.session_token.expose(),
            ];
            if values
                .iter()
                .any(|v| v.contains(['\n', '\r', ' ', '"', '\'']))
            {
                return Err(Error::Storage(
                    "stored bundle `aws-cognito` holds a value that cannot be written as KEY=value"
                        .into(),
                ));
            }
            let mut text = format!(
                "# Amazon Cognito credentials from Krypton; they expire at {}.\n\
                 AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_SESSION_TOKEN={}\n",
                rfc3339((b.expiration_ms / 1000) as i64),
                values[0],
                values[1],
                values[2],
            );
            if let Some(region) = b.region.as_deref().filter(|r| !r.contains(['\n', ' '])) {
                text.push_str(&format!(
                    "AWS_REGION={region}\nAWS_DEFAULT_REGION={region}\n"
                ));
            }
            Ok(vec![file("aws-cognito.env", text, true)])
        }
        ("env", _) => Err(mismatch(target, format, "aws-cognito")),
        (other, _) => Err(Error::InvalidRequest(format!(
            "unknown export format `{other}`; expected pem, aziot, aws-iot, wireguard or env"
        ))),
    }
}
