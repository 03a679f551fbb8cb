//! `aws-iot` (target `aws-iot`): the PEM files plus `aws-iot.json`, the inputs every AWS IoT
//! Device SDK sample asks for, written by `serde_json`.

use super::pem::pem_files;
use crate::types::bundle::Bundle;
use crate::types::model::{Error, ExportFile};
use serde::Serialize;

/// The format's name in `render-export`.
pub const NAME: &str = "aws-iot";

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

/// The PEM files and `aws-iot.json` (`endpoint`, `port` 8883, `clientId`, `region`, the
/// files' paths in `directory`). Errors: see [`pem_files`]; [`Error::InvalidResponse`] on
/// `body` when the serializer refuses; [`Error::InvalidRequest`] for another bundle.
pub fn render(bundle: &Bundle, directory: &str, _: &[String]) -> Result<Vec<ExportFile>, Error> {
    let Bundle::AwsIot(b) = bundle else {
        return Err(Error::InvalidRequest(format!(
            "format `{NAME}` does not fit target `{}`",
            bundle.target().name()
        )));
    };
    let mut files = pem_files(
        "aws-iot",
        &b.certificate,
        b.private_key.expose(),
        b.root_ca_certificate.as_deref(),
    )?;
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
    let mut text = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::invalid("body", format!("the JSON serializer refused it: {e}")))?;
    text.push('\n');
    files.push(ExportFile::new("aws-iot.json", text, false));
    Ok(files)
}
