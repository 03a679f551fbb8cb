//! Where Krypton calls go: the base URL parsed once ([`Endpoint`]) and the request line as it
//! goes on the wire ([`Endpoint::request_line`]).

use crate::types::model::{AuthMode, DefaultEndpoint, Error};

/// HTTP method of a Krypton call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET` (network-mode polling of an Azure registration).
    Get,
    /// `POST` (every other call).
    Post,
}

impl Method {
    /// The method as it goes on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A parsed Krypton base URL: `scheme://host[:port]`, nothing more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` or `http`.
    pub scheme: String,
    /// `host:port` exactly as given; the port is kept so that 8036 reaches the wire.
    pub authority: String,
    /// The host: a DNS name or an IP literal (an IPv6 literal without brackets).
    pub host: String,
    /// The port connected to: the one given, else the scheme's (443, 80).
    pub port: u16,
    /// Whether the URL named the port (`false`: [`Endpoint::port`] is the scheme's default).
    pub port_given: bool,
}

/// The port Krypton's network-authenticated endpoint listens on (krypton.soracom.io:8036).
pub const KRYPTON_PORT: u16 = 8036;
/// Krypton's base URL, shown in advice.
pub const KRYPTON_BASE_URL: &str = "https://krypton.soracom.io:8036";

/// SIM-authenticated mode's base URL for SORACOM's global coverage, which serves the Keys API
/// and the provisioning paths (SORACOM API documentation; `soracom/krypton-client-go`
/// `krypton/client.go`, `soracom/soracom-krypton-client-for-java` `ProvisioningApiEndpoint`).
pub const SIM_GLOBAL_BASE_URL: &str = "https://g.api.soracom.io";
/// SIM-authenticated mode's base URL for SORACOM's Japan coverage (same sources).
pub const SIM_JAPAN_BASE_URL: &str = "https://api.soracom.io";

/// The base URLs the component calls when the host names none (WIT `default-endpoints`): one
/// for network mode, one per coverage in SIM mode; the first entry of a mode is its default.
pub const DEFAULT_ENDPOINTS: [DefaultEndpoint; 3] = [
    DefaultEndpoint {
        mode: AuthMode::Network,
        coverage: None,
        url: KRYPTON_BASE_URL,
    },
    DefaultEndpoint {
        mode: AuthMode::Sim,
        coverage: Some("global"),
        url: SIM_GLOBAL_BASE_URL,
    },
    DefaultEndpoint {
        mode: AuthMode::Sim,
        coverage: Some("japan"),
        url: SIM_JAPAN_BASE_URL,
    },
];

/// Why a plain `http://` endpoint is refused, and what to do instead. Krypton's answers carry
/// private keys and tokens: only a test server on this machine may receive requests in clear
/// text (a runtime whose HTTP client trusts only the web PKI roots reaches a local mock Krypton
/// that way).
pub const PLAIN_HTTP_ADVICE: &str = "plain http is allowed only to a loopback address \
(127.0.0.0/8, ::1, localhost), where a test server runs; use https:// (Krypton speaks HTTPS: \
https://krypton.soracom.io:8036)";

/// Whether `host` (a DNS name or an IP literal without brackets) is this machine's loopback:
/// `localhost` (RFC 6761 §6.3: it always resolves to loopback), an address in 127.0.0.0/8
/// (RFC 1122 §3.2.1.3) or `::1` (RFC 4291 §2.5.3).
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Endpoint {
    /// Parse `https://host[:port]` (a trailing `/` is fine), or `http://host[:port]` when the
    /// host is a loopback address ([`is_loopback_host`]). Errors: [`Error::InvalidRequest`]
    /// naming the endpoint for anything else: no scheme, a scheme other than http/https, plain
    /// http to another host ([`PLAIN_HTTP_ADVICE`]), no host, user info, a query, or a path (the
    /// component adds `/v1/provisioning/...` itself, so a base URL ending in `/v1` would
    /// request `/v1/v1/...`).
    pub fn parse(url: &str) -> Result<Self, Error> {
        // Echo at most 100 characters of what was given.
        let shown: String = url.chars().take(100).collect();
        let shown = if shown.len() < url.len() {
            format!("{shown}…")
        } else {
            shown
        };
        let bad = |why: &str| Error::InvalidRequest(format!("endpoint `{shown}`: {why}"));
        let uri: http::Uri = url.parse().map_err(|e| {
            bad(&format!(
                "not a URL ({e}); the form is https://host[:port], the port from 1 to 65535"
            ))
        })?;
        let scheme = match uri.scheme_str() {
            Some("https") => "https",
            Some("http") => "http",
            Some(other) => return Err(bad(&format!("scheme `{other}` is not http or https"))),
            None => return Err(bad("missing scheme, e.g. https://krypton.soracom.io:8036")),
        };
        let authority = uri.authority().ok_or_else(|| bad("missing host"))?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(bad("missing host, or user info present"));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not allowed"));
        }
        if !matches!(uri.path(), "" | "/") {
            return Err(bad(&format!(
                "give the base URL without a path, e.g. {KRYPTON_BASE_URL} (the component adds \
                 the path `/v1/provisioning/...` itself)"
            )));
        }
        // `http::Uri` accepts any digits after the colon and then reports no port; check the text.
        let after_host = match authority.as_str().rfind(']') {
            Some(i) => &authority.as_str()[i + 1..],
            None => authority.as_str(),
        };
        let given = match after_host.rsplit_once(':') {
            Some((_, port)) => match port.parse::<u16>() {
                Ok(p @ 1..=65535) => Some(p),
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
            None => None,
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if scheme == "http" && !is_loopback_host(&host) {
            return Err(bad(PLAIN_HTTP_ADVICE));
        }
        Ok(Endpoint {
            scheme: scheme.to_string(),
            authority: authority.as_str().to_string(),
            host,
            port: given.unwrap_or(default_port),
            port_given: given.is_some(),
        })
    }

    /// `host:port` as connected to, the port always written (`[::1]:9` for IPv6).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The origin (RFC 6454 §4: scheme, host, port), the port always written:
    /// `https://krypton.soracom.io:8036`, `https://g.api.soracom.io:443`. Two endpoints with the
    /// same origin reach the same server.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.host_port())
    }

    /// A request as it goes on the wire: `POST https://krypton.soracom.io:8036/v1/...`.
    pub fn request_line(&self, method: Method, path: &str) -> String {
        format!(
            "{} {}://{}{path}",
            method.as_str(),
            self.scheme,
            self.host_port()
        )
    }
}
