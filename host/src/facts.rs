//! What a component tells the host besides its targets: the base URL of each mode and coverage
//! (`default-endpoints()`, [`crate::runtime::Runtime::facts`]) and a one-line summary of each
//! export format (`export-formats()`). The host keeps no SORACOM host name and no format list
//! of its own: a command or the daemon that is given no endpoint asks [`Facts::endpoint`].
//!
//! A component is code the host did not write, so its answers are checked once, when it is
//! loaded ([`Facts::checked`], called by [`crate::lifecycle::component_facts`]) and refused as
//! a whole: at most [`MAX_ENDPOINTS`] endpoints, each URL an `https` origin (no path, query or
//! user information; [`crate::http::Origin::parse`]) of at most [`MAX_URL_BYTES`] bytes, every
//! mode of the contract present, a coverage a plain name of at most [`MAX_COVERAGE_BYTES`]
//! bytes listed once per mode; at most [`MAX_FORMATS`] formats, each a plain name listed once
//! with a printable summary of at most [`crate::targets::MAX_TEXT_BYTES`] bytes, and every
//! format a target lists described. Nothing the component says then reaches a terminal or a
//! URL unchecked.

use crate::runtime::{AuthMode, DefaultEndpoint, ExportFormat};
use crate::targets::{MAX_TEXT_BYTES, Targets, is_plain_name, shown, text_problem};

/// Most entries of `default-endpoints()`.
pub const MAX_ENDPOINTS: usize = 16;
/// Longest default endpoint URL, bytes.
pub const MAX_URL_BYTES: usize = 256;
/// Longest coverage name, bytes (the contract's rule: 1-32 bytes of `[a-z0-9-]`).
pub const MAX_COVERAGE_BYTES: usize = 32;
/// Most entries of `export-formats()`.
pub const MAX_FORMATS: usize = 64;
/// Longest account name of `export-file.owner`, bytes (POSIX portable user names as
/// `useradd(8)` takes them: 32).
pub const MAX_ACCOUNT_BYTES: usize = 32;

/// Every mode of the contract; each needs a default endpoint.
const MODES: [AuthMode; 2] = [AuthMode::Network, AuthMode::Sim];

/// Answers of `default-endpoints()` or `export-formats()` the host refuses; the text names the
/// call, the entry and why, with the component's own text escaped and cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the component's {0}")]
pub struct InvalidFacts(String);

/// A coverage the component does not list for the mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown coverage `{name}`; the component knows: {expected}")]
pub struct UnknownCoverage {
    /// The name asked for.
    pub name: String,
    /// The mode's coverages, comma-separated, in the component's order (`-` when none).
    pub expected: String,
}

/// The mode as the contract and the command line spell it.
fn mode_name(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Network => "network",
        AuthMode::Sim => "sim",
    }
}

/// An account name as `export-file.owner` must spell it: POSIX portable, `[a-z_][a-z0-9_-]*`,
/// 1 to [`MAX_ACCOUNT_BYTES`] bytes, so that it is safe in a `chown` command and in
/// `getpwnam(3)`.
pub fn is_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ACCOUNT_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// The component's default endpoints and export formats, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    endpoints: Vec<DefaultEndpoint>,
    formats: Vec<ExportFormat>,
}

impl Facts {
    /// The answers as given, checked (see the module docs) against `targets` (each export
    /// format a target lists must be described). Errors: [`InvalidFacts`], naming the first
    /// entry at fault.
    pub fn checked(
        endpoints: Vec<DefaultEndpoint>,
        formats: Vec<ExportFormat>,
        targets: &Targets,
    ) -> Result<Self, InvalidFacts> {
        let bad = |text: String| Err(InvalidFacts(text));
        if endpoints.len() > MAX_ENDPOINTS {
            return bad(format!(
                "default-endpoints() lists {} endpoints; at most {MAX_ENDPOINTS}",
                endpoints.len()
            ));
        }
        for (i, e) in endpoints.iter().enumerate() {
            let at = format!("default-endpoints() entry {i}");
            if let Some(problem) = text_problem(&format!("{at}: url"), &e.url, MAX_URL_BYTES) {
                return bad(problem);
            }
            match crate::http::Origin::parse(&e.url) {
                Ok(origin) if origin.scheme == "https" => {}
                Ok(_) => return bad(format!("{at}: `{}` is not an https URL", shown(&e.url))),
                Err(why) => return bad(format!("{at}: {why:#}")),
            }
            if let Some(c) = &e.coverage
                && !(c.len() <= MAX_COVERAGE_BYTES && is_plain_name(c))
            {
                return bad(format!(
                    "{at}: coverage `{}` is not a plain name (1-{MAX_COVERAGE_BYTES} bytes of `[a-z0-9-]`)",
                    shown(c)
                ));
            }
            if endpoints[..i]
                .iter()
                .any(|o| o.mode == e.mode && o.coverage == e.coverage)
            {
                return bad(format!(
                    "{at}: mode `{}` coverage `{}` is listed twice",
                    mode_name(e.mode),
                    e.coverage.as_deref().unwrap_or("-")
                ));
            }
        }
        for mode in MODES {
            if !endpoints.iter().any(|e| e.mode == mode) {
                return bad(format!(
                    "default-endpoints() has no endpoint for mode `{}`",
                    mode_name(mode)
                ));
            }
        }
        if formats.len() > MAX_FORMATS {
            return bad(format!(
                "export-formats() lists {} formats; at most {MAX_FORMATS}",
                formats.len()
            ));
        }
        for (i, f) in formats.iter().enumerate() {
            let at = format!("export-formats() entry {i}");
            if !is_plain_name(&f.name) || formats[..i].iter().any(|o| o.name == f.name) {
                return bad(format!(
                    "{at}: name `{}` is not a plain name, or is listed twice",
                    shown(&f.name)
                ));
            }
            if let Some(problem) = text_problem(
                &format!("{at} (`{}`): summary", f.name),
                &f.summary,
                MAX_TEXT_BYTES,
            ) {
                return bad(problem);
            }
        }
        for name in targets.export_formats() {
            if !formats.iter().any(|f| f.name == name) {
                return bad(format!(
                    "export-formats() does not describe `{name}`, which targets() lists"
                ));
            }
        }
        Ok(Facts { endpoints, formats })
    }

    /// Every default endpoint, in the component's order.
    pub fn endpoints(&self) -> &[DefaultEndpoint] {
        &self.endpoints
    }

    /// Every export format, in the component's order.
    pub fn formats(&self) -> &[ExportFormat] {
        &self.formats
    }

    /// The coverages the component lists for `mode`, in its order (the first is the default);
    /// empty when the mode has one URL whatever the coverage.
    pub fn coverages(&self, mode: AuthMode) -> Vec<&str> {
        self.endpoints
            .iter()
            .filter(|e| e.mode == mode)
            .filter_map(|e| e.coverage.as_deref())
            .collect()
    }

    /// The base URL of `mode` for `coverage`, or the mode's first (default) entry when
    /// `coverage` is `None`. Errors: [`UnknownCoverage`] for a coverage the component does not
    /// list for the mode.
    pub fn endpoint(
        &self,
        mode: AuthMode,
        coverage: Option<&str>,
    ) -> Result<&str, UnknownCoverage> {
        let mut of_mode = self.endpoints.iter().filter(|e| e.mode == mode);
        let found = match coverage {
            None => of_mode.next(),
            Some(name) => of_mode.find(|e| e.coverage.as_deref() == Some(name)),
        };
        found.map(|e| e.url.as_str()).ok_or_else(|| {
            let known = self.coverages(mode);
            UnknownCoverage {
                name: coverage.unwrap_or_default().to_string(),
                expected: if known.is_empty() {
                    "-".into()
                } else {
                    known.join(", ")
                },
            }
        })
    }

    /// The endpoint a run uses: `explicit` when given, else [`Facts::endpoint`] of `mode` and
    /// `coverage` (a coverage is checked even when `explicit` wins, so that a typo is never
    /// ignored). Errors: [`UnknownCoverage`].
    pub fn endpoint_for(
        &self,
        mode: AuthMode,
        coverage: Option<&str>,
        explicit: Option<&str>,
    ) -> Result<String, UnknownCoverage> {
        let default = self.endpoint(mode, coverage)?;
        Ok(explicit.unwrap_or(default).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Target, TargetInfo};

    fn endpoint(mode: AuthMode, coverage: Option<&str>, url: &str) -> DefaultEndpoint {
        DefaultEndpoint {
            mode,
            coverage: coverage.map(String::from),
            url: url.into(),
        }
    }

    fn format(name: &str) -> ExportFormat {
        ExportFormat {
            name: name.into(),
            summary: format!("{name} files"),
        }
    }

    fn plain() -> Vec<DefaultEndpoint> {
        vec![
            endpoint(AuthMode::Network, None, "https://krypton.example:8036"),
            endpoint(AuthMode::Sim, Some("north"), "https://north.example"),
            endpoint(AuthMode::Sim, Some("south"), "https://south.example"),
        ]
    }

    fn targets(formats: &[&str]) -> Targets {
        Targets::new(vec![TargetInfo {
            target: Target::AzureIot,
            name: "azure-iot".into(),
            summary: String::new(),
            mints_credentials: false,
            export_formats: formats.iter().map(|f| f.to_string()).collect(),
            required_parameters: Vec::new(),
        }])
    }

    #[test]
    fn endpoints_follow_mode_and_coverage_the_first_of_a_mode_by_default() {
        let facts = Facts::checked(plain(), vec![format("pem")], &targets(&["pem"])).unwrap();
        use AuthMode::{Network, Sim};
        assert_eq!(
            facts.endpoint(Network, None).unwrap(),
            "https://krypton.example:8036"
        );
        assert_eq!(facts.endpoint(Sim, None).unwrap(), "https://north.example");
        assert_eq!(
            facts.endpoint(Sim, Some("south")).unwrap(),
            "https://south.example"
        );
        assert_eq!(facts.coverages(Sim), ["north", "south"]);
        assert!(facts.coverages(Network).is_empty());
        let err = facts.endpoint(Sim, Some("west")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown coverage `west`; the component knows: north, south"
        );
        assert_eq!(
            facts
                .endpoint_for(Sim, Some("south"), Some("http://127.0.0.1:1"))
                .unwrap(),
            "http://127.0.0.1:1"
        );
        assert!(facts.endpoint_for(Sim, Some("west"), Some("x")).is_err());
        assert_eq!(
            facts.endpoint_for(Network, None, None).unwrap(),
            "https://krypton.example:8036"
        );
        assert_eq!(facts.formats()[0].name, "pem");
    }

    #[test]
    fn answers_the_host_cannot_serve_are_refused_naming_the_entry() {
        let refused = |endpoints: Vec<DefaultEndpoint>, formats: Vec<ExportFormat>| {
            Facts::checked(endpoints, formats, &targets(&["pem"]))
                .unwrap_err()
                .to_string()
        };
        let with = |i: usize, e: DefaultEndpoint| {
            let mut list = plain();
            list[i] = e;
            list
        };
        let pem = || vec![format("pem")];
        assert_eq!(
            refused(
                with(
                    0,
                    endpoint(AuthMode::Network, None, "http://k.example:8036")
                ),
                pem()
            ),
            "the component's default-endpoints() entry 0: `http://k.example:8036` is not an https URL"
        );
        assert!(
            refused(
                with(0, endpoint(AuthMode::Network, None, "https://k.example/v1")),
                pem()
            )
            .starts_with("the component's default-endpoints() entry 0: `https://k.example/v1`: give the base URL without a path"),
        );
        assert_eq!(
            refused(plain()[..1].to_vec(), pem()),
            "the component's default-endpoints() has no endpoint for mode `sim`"
        );
        assert_eq!(
            refused(
                with(
                    2,
                    endpoint(AuthMode::Sim, Some("north"), "https://n2.example")
                ),
                pem()
            ),
            "the component's default-endpoints() entry 2: mode `sim` coverage `north` is listed twice"
        );
        assert_eq!(
            refused(
                with(
                    1,
                    endpoint(AuthMode::Sim, Some("Nord\u{1b}"), "https://n.example")
                ),
                pem()
            ),
            "the component's default-endpoints() entry 1: coverage `Nord\\u{1b}` is not a plain name (1-32 bytes of `[a-z0-9-]`)"
        );
        assert_eq!(
            refused(
                with(
                    1,
                    endpoint(
                        AuthMode::Sim,
                        None,
                        &format!("https://{}.example", "a".repeat(300))
                    )
                ),
                pem()
            ),
            "the component's default-endpoints() entry 1: url is 316 bytes long; at most 256"
        );
        assert_eq!(
            refused(vec![plain()[0].clone(); 17], pem()),
            "the component's default-endpoints() lists 17 endpoints; at most 16"
        );
        assert_eq!(
            refused(plain(), vec![]),
            "the component's export-formats() does not describe `pem`, which targets() lists"
        );
        assert_eq!(
            refused(plain(), vec![format("pem"), format("pem")]),
            "the component's export-formats() entry 1: name `pem` is not a plain name, or is listed twice"
        );
        let mut escape = format("pem");
        escape.summary = "\u{1b}[2J".into();
        assert_eq!(
            refused(plain(), vec![escape]),
            "the component's export-formats() entry 0 (`pem`): summary `\\u{1b}[2J` holds control characters"
        );
    }

    #[test]
    fn account_names_are_portable_user_names() {
        for good in ["aziotcs", "aziotks", "_svc", "a-b_c9"] {
            assert!(is_account_name(good), "{good}");
        }
        for bad in [
            "",
            "Root",
            "9lives",
            "root;touch /tmp/pwned",
            "a b",
            "x:y",
            &"a".repeat(33),
        ] {
            assert!(!is_account_name(bad), "{bad}");
        }
    }
}
