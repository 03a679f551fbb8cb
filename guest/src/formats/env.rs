//! `env` (target `aws-cognito`): `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION` and `AWS_DEFAULT_REGION`, the AWS SDKs' standard
//! environment variables, one `KEY=value` a line (systemd `EnvironmentFile=` and
//! `docker --env-file` read it as is).

use crate::types::bundle::{Bundle, rfc3339};
use crate::types::model::{Error, ExportFile};
use crate::types::text::env_value;

/// The format's name in `render-export`.
pub const NAME: &str = "env";

/// `aws-cognito.env` (owner-only), every value through [`env_value`]. Errors:
/// [`Error::InvalidResponse`] naming the field whose value cannot be written;
/// [`Error::InvalidRequest`] for another bundle.
pub fn render(bundle: &Bundle, _directory: &str, _: &[String]) -> Result<Vec<ExportFile>, Error> {
    let Bundle::AwsCognito(b) = bundle else {
        return Err(Error::InvalidRequest(format!(
            "format `{NAME}` does not fit target `{}`",
            bundle.target().name()
        )));
    };
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
    Ok(vec![ExportFile::new("aws-cognito.env", text, true)])
}
