//! `aziot` (target `azure-iot`): the PEM files plus the Azure IoT Identity Service / IoT Edge
//! `config.toml` section for manual X.509 provisioning, written by the `toml` serializer.

use super::pem::pem_files;
use crate::types::bundle::Bundle;
use crate::types::model::{Error, ExportFile};
use crate::types::text::file_uri;
use serde::Serialize;

/// The format's name in `render-export`.
pub const NAME: &str = "aziot";

/// The user Azure IoT Edge's certificate service (`aziot-certd`) runs as, which reads the
/// certificate files; its primary group has the same name (Azure IoT Edge documentation,
/// "Create and provision an IoT Edge device on Linux using X.509 certificates": the
/// certificates must be readable by `aziotcs`, the private key by `aziotks`).
pub const CERTIFICATE_SERVICE_USER: &str = "aziotcs";
/// The user Azure IoT Edge's key service (`aziot-keyd`) runs as, which reads the private key
/// file (same source).
pub const KEY_SERVICE_USER: &str = "aziotks";

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

/// The PEM files and `aziot-provisioning.toml`, whose `identity_cert` / `identity_pk` are
/// `file://` URIs of the chain and key in `directory`. Each PEM file names the account that
/// reads it ([`KEY_SERVICE_USER`] for the private key, [`CERTIFICATE_SERVICE_USER`] for the
/// others); the TOML section is merged by the operator and has no owner. Errors: see [`pem_files`];
/// [`Error::InvalidResponse`] on `body` when the serializer refuses; [`Error::InvalidRequest`]
/// for another bundle.
pub fn render(bundle: &Bundle, directory: &str, _: &[String]) -> Result<Vec<ExportFile>, Error> {
    let Bundle::AzureIot(b) = bundle else {
        return Err(Error::InvalidRequest(format!(
            "format `{NAME}` does not fit target `{}`",
            bundle.target().name()
        )));
    };
    let mut files = pem_files(
        "azure-iot",
        &b.certificate,
        b.private_key.expose(),
        b.root_ca_certificate.as_deref(),
    )?;
    for file in &mut files {
        file.owner = Some(if file.secret {
            KEY_SERVICE_USER
        } else {
            CERTIFICATE_SERVICE_USER
        });
    }
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
    let body = toml::to_string(&config)
        .map_err(|e| Error::invalid("body", format!("the TOML serializer refused it: {e}")))?;
    let text = format!(
        "# Azure IoT Identity Service / IoT Edge: manual X.509 provisioning from the Krypton\n\
         # `azure-iot` bundle. Merge into /etc/aziot/config.toml, then run\n\
         # `sudo iotedge config apply` (or `sudo aziotctl config apply`).\n{body}"
    );
    files.push(ExportFile::new("aziot-provisioning.toml", text, false));
    Ok(files)
}
