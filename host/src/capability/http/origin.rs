//! [`Origin`]: one entry of the outbound allow-list, and the URL helpers messages use.

use anyhow::Context as _;
/// One entry of the outbound allow-list: a scheme, a host and a port, compared as a whole
/// (the "origin" of RFC 6454 §4), written as a URL like Spin's `allowed_outbound_hosts`
/// entries: `https://krypton.example:8036`, `http://127.0.0.1:8080`; the port defaults to the
/// scheme's (443, 80). Wildcards are not supported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `https` or `http`, lowercase.
    pub scheme: String,
    /// A DNS name (lowercase) or an IP literal (IPv6 without brackets).
    pub host: String,
    /// 1-65535.
    pub port: u16,
}

impl Origin {
    /// The origin of an absolute `http(s)` URL, e.g. `https://krypton.example:8036`. A path
    /// of `/` or none is accepted (so a Krypton endpoint, which has no path, parses);
    /// user information, another path, a query or a fragment are refused, since an allow-list
    /// entry cannot limit them.
    ///
    /// Errors: not a URL, a scheme other than `http`/`https`, no host, a port outside 1-65535,
    /// or any of the parts above.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (host, port) = host_port(url)?;
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("`{}` is not a URL", redacted(url)))?;
        // Messages below show the URL without any password it carries.
        let url = &redacted(url);
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        anyhow::ensure!(
            !uri.authority().is_some_and(|a| a.as_str().contains('@')),
            "`{url}`: user information (`user@`) is not allowed"
        );
        anyhow::ensure!(
            matches!(
                uri.path_and_query().map(|p| p.as_str()),
                None | Some("") | Some("/")
            ) && !url.contains('#'),
            "`{url}`: give the base URL without a path, query or fragment, e.g. https://krypton.soracom.io:8036"
        );
        anyhow::ensure!(
            host.parse::<std::net::IpAddr>().is_ok()
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'),
            "`{url}`: the host must be a DNS name or an IP address (wildcards are not supported)"
        );
        Ok(Origin { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` goes to this origin: the scheme and port
    /// equal, the host equal ignoring ASCII case (IP literals compared as addresses, so
    /// `[::1]` and `[0::1]` are one host).
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let same_host = match (
            self.host.parse::<std::net::IpAddr>(),
            host.parse::<std::net::IpAddr>(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => self.host.eq_ignore_ascii_case(host),
        };
        self.port == port && self.scheme.eq_ignore_ascii_case(scheme) && same_host
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// `url` as it may be shown in a message or a log: user information (`user:password@`, RFC
/// 3986 §3.2.1, which "is deprecated" for passwords) is replaced by `***@`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `host:port` of a URL, with the scheme's default port filled in.
///
/// Errors: the text is not an absolute http(s) URL with a host.
pub fn host_port(raw: &str) -> anyhow::Result<(String, u16)> {
    // Messages show the URL without any password it carries.
    let url = &redacted(raw);
    let uri: http::Uri = raw
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => anyhow::bail!("`{url}` must start with https:// (or http://)"),
    };
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .with_context(|| format!("`{url}` has no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    // `http::Uri` accepts any digits after the colon and then reports no port: check the text,
    // or an impossible port would silently become the scheme's default.
    let after_host = match authority.as_str().rfind(']') {
        Some(i) => &authority.as_str()[i + 1..],
        None => authority.as_str(),
    };
    let port = match after_host.rsplit_once(':') {
        Some((_, text)) => match text.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => anyhow::bail!("`{url}`: the port must be a number from 1 to 65535"),
        },
        None => default_port,
    };
    Ok((host.to_ascii_lowercase(), port))
}
