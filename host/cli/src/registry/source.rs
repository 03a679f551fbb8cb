//! A registry reference (`HOST[:PORT]/REPO:TAG` or `@sha256:…`) and the credentials.

use super::*;
use std::path::{Path, PathBuf};

/// Where a credential file is: `path` itself when absolute; otherwise `path` inside
/// `credentials_dir`, the directory systemd names in `$CREDENTIALS_DIRECTORY` for the
/// credentials a unit loads with `LoadCredential=ID:/etc/krypton-host/registry-token` (readable
/// by the service's user even with `DynamicUser=yes`, while the source stays root-owned 0600;
/// systemd.exec(5), "Credentials"). A relative path must be one plain file name.
/// Errors ([`RegistryError::Config`]): a relative path without `$CREDENTIALS_DIRECTORY`, or one
/// that is not a single file name.
pub fn credential_path(path: &Path, credentials_dir: Option<&std::ffi::OsStr>) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let single = path.components().count() == 1
        && matches!(
            path.components().next(),
            Some(std::path::Component::Normal(_))
        );
    match credentials_dir {
        Some(dir) if single && !dir.is_empty() => Ok(Path::new(dir).join(path)),
        Some(_) => Err(RegistryError::Config(format!(
            "`{}`: a relative credential path must be one file name in $CREDENTIALS_DIRECTORY",
            path.display()
        ))),
        None => Err(RegistryError::Config(format!(
            "`{}` is relative and $CREDENTIALS_DIRECTORY is not set: give an absolute path, or \
             load the file with systemd's LoadCredential= and name its ID here",
            path.display()
        ))),
    }
}

/// A registry reference with an explicit host: `HOST[:PORT]/REPO:TAG` or
/// `HOST[:PORT]/REPO@sha256:DIGEST` (written `oci://…` in `gateway.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub(super) reference: oci_client::Reference,
}

impl Source {
    /// Parse `HOST[:PORT]/REPO:TAG` or `…@sha256:HEX`, with or without the `oci://` prefix.
    /// Errors: no host (a first path segment without `.` or `:` and not `localhost`, which
    /// would silently mean Docker Hub), neither tag nor digest, a digest that is not SHA-256, or
    /// what the OCI distribution spec's name and tag grammar refuses.
    pub fn parse(text: &str) -> Result<Self> {
        let bare = text.strip_prefix("oci://").unwrap_or(text);
        let advice =
            "write it as oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:DIGEST";
        let (host, rest) = bare.split_once('/').ok_or_else(|| {
            RegistryError::Config(format!(
                "`{}` names no registry host; {advice}",
                bare.escape_debug()
            ))
        })?;
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(RegistryError::Config(format!(
                "`{}` names no registry host (`{}` would be taken for a Docker Hub repository); {advice}",
                bare.escape_debug(),
                host.escape_debug()
            )));
        }
        let last = rest.rsplit('/').next().unwrap_or(rest);
        if !last.contains(':') && !last.contains('@') {
            return Err(RegistryError::Config(format!(
                "`{}` has no tag or digest (no implicit `latest`); {advice}",
                bare.escape_debug()
            )));
        }
        let reference: oci_client::Reference = bare.parse().map_err(|e| {
            RegistryError::Config(format!("`{}`: {e}; {advice}", bare.escape_debug()))
        })?;
        if reference.registry() != host {
            return Err(RegistryError::Config(format!(
                "`{}`: the registry host must be written out; {advice}",
                bare.escape_debug()
            )));
        }
        if let Some(digest) = reference.digest()
            && !is_sha256_digest(digest)
        {
            return Err(RegistryError::Config(format!(
                "`{}`: only sha256 digests (64 lowercase hex digits) are accepted",
                bare.escape_debug()
            )));
        }
        Ok(Source { reference })
    }

    /// The registry host (and port) as written.
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// The repository name.
    pub fn repository(&self) -> &str {
        self.reference.repository()
    }

    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.reference.tag()
    }

    /// The pinned digest, when the reference has one (it is then never polled).
    pub fn digest(&self) -> Option<&str> {
        self.reference.digest()
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> Source {
        Source {
            reference: oci_client::Reference::with_digest(
                self.registry().to_string(),
                self.repository().to_string(),
                digest.to_string(),
            ),
        }
    }

    /// The same repository at `tag`.
    pub fn at_tag(&self, tag: &str) -> Source {
        Source {
            reference: oci_client::Reference::with_tag(
                self.registry().to_string(),
                self.repository().to_string(),
                tag.to_string(),
            ),
        }
    }

    /// Whether the registry host is loopback (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn is_loopback(&self) -> bool {
        let host = self.registry();
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}", self.reference.whole())
    }
}

/// How to authenticate to the registry. Its `Debug` form names the kind and the user name,
/// never the password or the token.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP basic (RFC 7617): user name and password.
    Basic {
        /// The user name.
        username: String,
        /// The password (never logged).
        password: String,
    },
    /// A bearer token (RFC 6750), e.g. a registry access token.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Auth {
    /// Build from settings: `username` with `password_file`, or `token_file`, or neither.
    /// The files are read bounded to [`MAX_SECRET_FILE_BYTES`], trimmed of one line end, and
    /// checked like the configuration and as secrets ([`read_credential`]: owner root or this
    /// user, mode without group or other access). A relative path is taken from systemd's
    /// `$CREDENTIALS_DIRECTORY` ([`credential_path`]).
    /// Errors: both kinds given, a user without a password file (or the reverse), an unreadable,
    /// unsafe or empty file, a user name with `:` or a control character, a token that is not
    /// an HTTP header value ([`check_token`]); each names the file, never its content.
    pub fn from_files(
        username: Option<&str>,
        password_file: Option<&Path>,
        token_file: Option<&Path>,
    ) -> Result<Self> {
        let read = |path: &Path, what: &str| -> Result<String> {
            let path = credential_path(path, std::env::var_os("CREDENTIALS_DIRECTORY").as_deref())?;
            let bytes = read_credential(
                &path,
                MAX_SECRET_FILE_BYTES,
                &format!("the {what} file"),
                true,
            )?;
            let text = String::from_utf8(bytes).map_err(|_| {
                RegistryError::Config(format!("{} is not UTF-8 text", path.display()))
            })?;
            let text = text.trim_end_matches(['\n', '\r']).to_string();
            if text.is_empty() || text.chars().any(char::is_control) {
                return Err(RegistryError::Config(format!(
                    "{} must hold one line: the {what} (no control character, RFC 9110 §5.5)",
                    path.display()
                )));
            }
            Ok(text)
        };
        if let Some(u) = username
            && (u.is_empty() || u.contains(':') || u.chars().any(char::is_control))
        {
            return Err(RegistryError::Config(
                "the registry user name must be non-empty, without `:` (RFC 7617 §2) or a control character".into(),
            ));
        }
        match (username, password_file, token_file) {
            (None, None, None) => Ok(Auth::Anonymous),
            (Some(u), Some(p), None) => Ok(Auth::Basic {
                username: u.to_string(),
                password: read(p, "registry password")?,
            }),
            (None, None, Some(t)) => {
                let token = read(t, "registry token")?;
                check_token(&token).map_err(|why| {
                    RegistryError::Config(format!("the registry token in {} {why}", t.display()))
                })?;
                Ok(Auth::Bearer(token))
            }
            (_, _, Some(_)) => Err(RegistryError::Config(
                "give either a token file or a user name with a password file, not both".into(),
            )),
            _ => Err(RegistryError::Config(
                "basic authentication needs both the user name and the password file".into(),
            )),
        }
    }

    pub(super) fn header(&self) -> Option<String> {
        use base64::Engine as _;
        match self {
            Auth::Anonymous => None,
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
        }
    }
}
