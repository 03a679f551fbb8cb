//! `pem` (targets `azure-iot`, `aws-iot`): certificate (leaf), chain, private key, root CA.

use crate::types::bundle::Bundle;
use crate::types::model::{Error, ExportFile};
use crate::types::validate;

/// The format's name in `render-export`.
pub const NAME: &str = "pem";

/// Certificate (leaf), chain, key and root CA files for a certificate bundle, prefixed
/// `prefix`, each re-encoded from what [`validate::credentials`] parsed (a PEM field edited to
/// carry text around its blocks loses that text). The key is written in a form OpenSSL loads
/// ([`validate::exportable_key`]: an EC key without its curve becomes PKCS#8 with the
/// certificate's curve), and the key file's `converted` says so when it differs from the
/// stored key; the stored bundle itself keeps what Krypton sent.
///
/// Errors: [`Error::InvalidResponse`] naming `certificate`, `privateKey` or
/// `rootCaCertificate`.
pub fn pem_files(
    prefix: &str,
    certificate: &str,
    key: &str,
    root: Option<&str>,
) -> Result<Vec<ExportFile>, Error> {
    let creds = validate::credentials(certificate, key, root)?;
    let certs = validate::parse_certificates("certificate", &creds.certificate)?;
    let key = validate::exportable_key("privateKey", creds.private_key.expose(), &certs[0].cert)?;
    let mut files = vec![
        ExportFile::new(
            &format!("{prefix}-certificate.pem"),
            validate::certificates_to_pem(&certs[..1]),
            false,
        ),
        ExportFile::new(&format!("{prefix}-chain.pem"), creds.certificate, false),
        ExportFile {
            converted: key.converted,
            ..ExportFile::new(&format!("{prefix}-private-key.pem"), key.pem, true)
        },
    ];
    if let Some(root) = creds.root_ca_certificate {
        files.push(ExportFile::new(
            &format!("{prefix}-root-ca.pem"),
            root,
            false,
        ));
    }
    Ok(files)
}

/// The PEM files of an `azure-iot` or `aws-iot` bundle, prefixed with the target's name.
/// Errors: see [`pem_files`]; [`Error::InvalidRequest`] for another bundle.
pub fn render(bundle: &Bundle, _directory: &str, _: &[String]) -> Result<Vec<ExportFile>, Error> {
    match bundle {
        Bundle::AzureIot(b) => pem_files(
            "azure-iot",
            &b.certificate,
            b.private_key.expose(),
            b.root_ca_certificate.as_deref(),
        ),
        Bundle::AwsIot(b) => pem_files(
            "aws-iot",
            &b.certificate,
            b.private_key.expose(),
            b.root_ca_certificate.as_deref(),
        ),
        other => Err(Error::InvalidRequest(format!(
            "format `{NAME}` does not fit target `{}`",
            other.target().name()
        ))),
    }
}
