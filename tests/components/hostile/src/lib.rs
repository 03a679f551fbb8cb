//! A component with the real world's exports that misbehaves on purpose, one way per target:
//! * `azure-iot`: spins forever (CPU deadline);
//! * `aws-iot`: allocates until memory runs out (memory cap);
//! * `aws-cognito`: calls a host that is not on the allow-list;
//! * `aws-cognito-openid`: floods stderr (log budget);
//! * `arc`: writes a bundle, then traps mid-way (store consistency);
//! * `inventory`: blocks in a host call for an hour (wall-clock deadline);
//! * `userdata`: traps at once.
//!
//! A request whose `request-parameters` is `hostile:NAME` (not JSON: only this component reads
//! it) picks one of the behaviours of [`by_name`] instead, whatever the target; `hostile:hint-escape`
//! and `hostile:hint-huge` fail with a hint that holds terminal escapes, or is 1 MiB long.
//!
//! `targets()` takes no argument: it answers the list [`TARGETS_MARKER`] names. As built, that
//! is the empty list (the component claims no target, and passes every load check); a test
//! that wants a hostile list writes a copy of the component file with the marker's name
//! replaced by another of the same length (see [`hostile_targets`]). The same marker picks a
//! hostile answer of `default-endpoints()` (see [`hostile_endpoints`]); every other marker
//! answers a list the host accepts.

#![cfg(target_arch = "wasm32")]

// SAFETY: the only unsafe code is what wit-bindgen generates (the canonical ABI glue of the
// world's imports and exports); the misbehaviour below is all safe Rust.
#[allow(unsafe_code)]
// Generated from the WIT, whose `///` comments are the documentation of these items.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "soracom:krypton/krypton",
        generate_all,
    });
}

use bindings::exports::soracom::krypton::provisioning::Guest;
use bindings::soracom::krypton::secret_store;
use bindings::soracom::krypton::types::{
    AuthMode, DefaultEndpoint, ExportFile, ExportFormat, Failure, ParameterInfo, ProvisionError,
    ProvisionReport, ProvisionRequest, RouteEntry, Target, TargetInfo, TransportError,
    TransportKind,
};
use bindings::wasi::clocks::monotonic_clock;
use bindings::wasi::http::{outgoing_handler, types as http};

struct Hostile;

/// A transport error carrying only a message (the hostile component classifies nothing).
fn transport(message: impl Into<String>) -> ProvisionError {
    ProvisionError::Transport(TransportError {
        kind: TransportKind::Other,
        request: String::new(),
        message: message.into(),
        attempts: 1,
    })
}

impl From<ProvisionError> for Failure {
    fn from(error: ProvisionError) -> Self {
        Failure { error, hint: None }
    }
}

impl Guest for Hostile {
    fn provision(request: ProvisionRequest) -> Result<ProvisionReport, Failure> {
        let hint = match request.request_parameters.as_deref() {
            Some("hostile:hint-escape") => {
                Some("\u{1b}]0;pwned\u{7}\u{1b}[2J\rrun \u{202e}gnp.exe".into())
            }
            Some("hostile:hint-huge") => Some("h".repeat(1 << 20)),
            _ => None,
        };
        if hint.is_some() {
            let error = ProvisionError::InvalidRequest("hostile hint".into());
            return Err(Failure { error, hint });
        }
        provision(request).map_err(Failure::from)
    }

    /// Nothing is stored, except under the `export` list: a report for any target.
    fn status(target: Target) -> Result<Option<ProvisionReport>, Failure> {
        if targets_marker() != b"export" {
            return Ok(None);
        }
        Ok(Some(ProvisionReport {
            target,
            bundle: "arc".into(),
            reused: true,
            obtained_at_ms: 0,
            identifiers: Vec::new(),
            certificate: None,
            sizes: Vec::new(),
            mints_credentials: false,
            mode: AuthMode::Network,
            warnings: Vec::new(),
        }))
    }

    fn wireguard_config(_: Vec<String>) -> Result<String, Failure> {
        Err(ProvisionError::Unsupported("hostile".into()).into())
    }

    /// Under the `export` list, the files its formats name (see [`hostile_targets`]).
    fn render_export(
        _: Target,
        format: String,
        _: String,
        _: Vec<String>,
    ) -> Result<Vec<ExportFile>, Failure> {
        let file = |name: &str, converted: Option<&str>| ExportFile {
            name: name.into(),
            contents: b"hostile\n".to_vec(),
            secret: false,
            converted: converted.map(String::from),
            owner: None,
        };
        match format.as_str() {
            "escape-name" => Ok(vec![file("ok.pem", None), file("\u{1b}[2Jx.pem", None)]),
            "twice" => Ok(vec![file("x.pem", None), file("x.pem", None)]),
            "escape-converted" => Ok(vec![file("x.pem", Some("\u{1b}]0;pwned\u{7}done"))]),
            "shell-owner" => Ok(vec![ExportFile {
                owner: Some("root;touch /tmp/pwned".into()),
                ..file("x.pem", None)
            }]),
            "owned" => Ok(vec![
                ExportFile {
                    owner: Some("svc-a".into()),
                    ..file("a.pem", None)
                },
                file("notes.txt", None),
                ExportFile {
                    owner: Some("svc-b".into()),
                    ..file("b.pem", None)
                },
                ExportFile {
                    owner: Some("svc-a".into()),
                    ..file("c.pem", None)
                },
            ]),
            _ => Err(ProvisionError::Unsupported("hostile".into()).into()),
        }
    }

    /// The list [`TARGETS_MARKER`] names (the empty list as built).
    fn targets() -> Vec<TargetInfo> {
        hostile_targets()
    }

    fn version() -> (String, String) {
        ("hostile".into(), "soracom:krypton@0.6.0".into())
    }

    /// The list [`TARGETS_MARKER`] names for endpoints (a plain list otherwise).
    fn default_endpoints() -> Vec<DefaultEndpoint> {
        hostile_endpoints()
    }

    /// Every format the targets list, each described as `hostile`.
    fn export_formats() -> Vec<ExportFormat> {
        let mut formats: Vec<ExportFormat> = Vec::new();
        for name in hostile_targets().into_iter().flat_map(|t| t.export_formats) {
            if !formats.iter().any(|f| f.name == name) {
                formats.push(ExportFormat {
                    name,
                    summary: "hostile".into(),
                });
            }
        }
        formats
    }

    fn soratun_routes(_: String) -> Result<Vec<RouteEntry>, Failure> {
        Err(ProvisionError::Unsupported("hostile".into()).into())
    }

    fn soratun_route_fix(_: Vec<String>) -> String {
        "hostile".into()
    }
}

/// One default endpoint.
fn endpoint(mode: AuthMode, coverage: Option<&str>, url: &str) -> DefaultEndpoint {
    DefaultEndpoint {
        mode,
        coverage: coverage.map(String::from),
        url: url.into(),
    }
}

/// The `default-endpoints()` answers by marker name:
/// * `http-endpoint`: network mode's URL is plain `http://`;
/// * `no-sim`: no entry for SIM mode;
/// * `path-endpoint`: a URL with a path;
/// * anything else: one entry per mode on `.invalid` hosts (RFC 2606), a list the host accepts.
fn hostile_endpoints() -> Vec<DefaultEndpoint> {
    let sim = endpoint(AuthMode::Sim, Some("global"), "https://sim.hostile.invalid");
    match targets_marker() {
        b"http-endpoint" => vec![
            endpoint(
                AuthMode::Network,
                None,
                "http://krypton.hostile.invalid:8036",
            ),
            sim,
        ],
        b"no-sim" => vec![endpoint(
            AuthMode::Network,
            None,
            "https://krypton.hostile.invalid:8036",
        )],
        b"path-endpoint" => vec![
            endpoint(
                AuthMode::Network,
                None,
                "https://krypton.hostile.invalid/v1",
            ),
            sim,
        ],
        _ => vec![
            endpoint(
                AuthMode::Network,
                None,
                "https://krypton.hostile.invalid:8036",
            ),
            sim,
        ],
    }
}

/// Which list `targets()` answers: the name after the prefix `krypton-hostile-targets:`, up to
/// the first NUL. The bytes sit in the component's data segment, read through `black_box` so
/// that the compiler keeps them; a test replaces the name in a copy of the file (same length).
#[used]
static TARGETS_MARKER: [u8; 40] = *b"krypton-hostile-targets:empty\0\0\0\0\0\0\0\0\0\0\0";

/// The marker's name (see [`TARGETS_MARKER`]).
fn targets_marker() -> &'static [u8] {
    let marker: &'static [u8; 40] = std::hint::black_box(&TARGETS_MARKER);
    let name = &marker[24..];
    &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())]
}

/// One target entry.
fn entry(target: Target, name: &str) -> TargetInfo {
    TargetInfo {
        target,
        name: name.into(),
        summary: "hostile".into(),
        mints_credentials: false,
        export_formats: Vec::new(),
        required_parameters: Vec::new(),
    }
}

/// The lists by marker name:
/// * `empty`: no target (as built);
/// * `many`: 5,000 entries;
/// * `escape`: a name with terminal escape sequences;
/// * `dotdot`: the name `../../azure-iot`;
/// * `duplicate`: `azure-iot` twice;
/// * `mismatch`: the `aws-iot` case named `azure-iot`;
/// * `huge-summary`: a summary of 1 MiB;
/// * `format`: the export format `../../x`;
/// * `huge-example`: a required parameter whose example is 1 MiB;
/// * `arc`: one plain `arc` entry (a list the host accepts);
/// * `export`: `arc` with the formats `escape-name` (a file name with an escape sequence),
///   `twice` (one file name twice), `escape-converted` (a `converted` note with escapes),
///   `shell-owner` (an `owner` that is a shell command) and `owned` (files owned by `svc-a`,
///   none, `svc-b`, `svc-a`), and `status` reports a stored bundle.
fn hostile_targets() -> Vec<TargetInfo> {
    match targets_marker() {
        b"many" => vec![entry(Target::AzureIot, "azure-iot"); 5_000],
        b"escape" => vec![entry(
            Target::AzureIot,
            "\u{1b}]0;pwned\u{7}\u{1b}[2Jazure-iot",
        )],
        b"dotdot" => vec![entry(Target::AzureIot, "../../azure-iot")],
        b"duplicate" => vec![
            entry(Target::AzureIot, "azure-iot"),
            entry(Target::AzureIot, "azure-iot"),
        ],
        b"mismatch" => vec![entry(Target::AwsIot, "azure-iot")],
        b"huge-summary" => {
            let mut e = entry(Target::AzureIot, "azure-iot");
            e.summary = "\u{1b}[31m".repeat(1 << 18);
            vec![e]
        }
        b"format" => {
            let mut e = entry(Target::AzureIot, "azure-iot");
            e.export_formats = vec!["pem".into(), "../../x".into()];
            vec![e]
        }
        b"huge-example" => {
            let mut e = entry(Target::Inventory, "inventory");
            e.required_parameters = vec![ParameterInfo {
                name: "endpoint".into(),
                description: "hostile".into(),
                example: "e".repeat(1 << 20),
            }];
            vec![e]
        }
        b"arc" => vec![entry(Target::Arc, "arc")],
        b"export" => {
            let mut e = entry(Target::Arc, "arc");
            e.export_formats = [
                "escape-name",
                "twice",
                "escape-converted",
                "shell-owner",
                "owned",
            ]
            .map(String::from)
            .to_vec();
            vec![e]
        }
        _ => Vec::new(),
    }
}

/// The misbehaviour for `request` (see the crate docs).
fn provision(request: ProvisionRequest) -> Result<ProvisionReport, ProvisionError> {
    if let Some(name) = request
        .request_parameters
        .as_deref()
        .and_then(|p| p.strip_prefix("hostile:"))
    {
        return by_name(name, &request.endpoint);
    }
    match request.target {
        Target::AzureIot => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Target::AwsIot => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Target::AwsCognito => {
            let req = http::OutgoingRequest::new(http::Fields::new());
            let _ = req.set_scheme(Some(&http::Scheme::Http));
            let _ = req.set_authority(Some("192.0.2.1:80"));
            let _ = req.set_path_with_query(Some("/exfiltrate"));
            let future =
                outgoing_handler::handle(req, None).map_err(|e| transport(format!("{e:?}")))?;
            loop {
                if let Some(result) = future.get() {
                    return match result {
                        Ok(Ok(_)) => Err(transport("reached it")),
                        Ok(Err(code)) => Err(transport(format!("{code:?}"))),
                        Err(()) => Err(transport("taken")),
                    };
                }
                future.subscribe().block();
            }
        }
        Target::AwsCognitoOpenid => {
            let line = "x".repeat(1023);
            for _ in 0..2_000 {
                eprintln!("{line}");
            }
            Err(ProvisionError::Unsupported("flooded stderr".into()))
        }
        Target::Arc => {
            secret_store::put("arc", br#"{"written":"before the trap"}"#)
                .map_err(|_| ProvisionError::Storage("put".into()))?;
            panic!("trap in the middle of provisioning");
        }
        Target::Inventory => {
            monotonic_clock::subscribe_duration(3_600_000_000_000).block();
            Err(ProvisionError::Timeout("slept an hour".into()))
        }
        _ => panic!("trap at once"),
    }
}

/// `scheme://authority` of the endpoint, split.
fn authority(endpoint: &str) -> &str {
    endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
}

/// An outgoing GET to `authority` under `scheme`, with `headers`.
fn request(
    scheme: http::Scheme,
    authority: &str,
    headers: &[(String, Vec<u8>)],
) -> Result<outgoing_handler::FutureIncomingResponse, ProvisionError> {
    let fields = http::Fields::from_list(headers)
        .map_err(|e| ProvisionError::InvalidRequest(format!("headers: {e:?}")))?;
    let req = http::OutgoingRequest::new(fields);
    let _ = req.set_scheme(Some(&scheme));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some("/hostile"));
    outgoing_handler::handle(req, None).map_err(|e| transport(format!("{e:?}")))
}

/// Wait for a response and report it as an error naming what happened.
fn outcome(future: outgoing_handler::FutureIncomingResponse) -> ProvisionError {
    loop {
        if let Some(result) = future.get() {
            return match result {
                Ok(Ok(r)) => transport(format!("answered {}", r.status())),
                Ok(Err(code)) => transport(format!("{code:?}")),
                Err(()) => transport("taken"),
            };
        }
        future.subscribe().block();
    }
}

/// The behaviours chosen by name (`hostile:NAME[:ARG]`):
/// * `downgrade`: a plain `http://` request to the endpoint's `host:port` (scheme check);
/// * `requests`: 1,000 requests to the endpoint without waiting for answers (requests per call);
/// * `header-count`: one request with 100 header fields (header count);
/// * `header-bytes`: one request with a 12 KiB header value (header bytes);
/// * `resources`: 100,000 `fields` resources kept alive (host resources);
/// * `log-lines`: a million empty lines on stderr (log lines);
/// * `log-bytes`: 2,000 lines of 1 KiB on stderr (log bytes);
/// * `grow-memory`: 100 MiB in 1 MiB steps (the memory budget);
/// * `spin-wall:MS`: spins until MS ms of wall-clock time have passed (it reads the clock every
///   million iterations), then answers `unsupported`;
/// * `sleep:MS`: blocks in a host call for MS ms, then answers `unsupported`;
/// * `store-flood`: puts 1,000 bundles of 64 KiB under distinct names (store writes per call);
/// * `store-bytes`: puts one 1 MiB bundle five times (store bytes per call);
/// * `random-big`: asks the host for 64 MiB of random bytes at once (random size);
/// * `random-loop`: asks for 4 KiB of random bytes ten million times (the host's CPU).
fn by_name(name: &str, endpoint: &str) -> Result<ProvisionReport, ProvisionError> {
    let (name, arg) = name.split_once(':').unwrap_or((name, ""));
    let arg: u64 = arg.parse().unwrap_or(0);
    match name {
        "downgrade" => Err(outcome(request(
            http::Scheme::Http,
            authority(endpoint),
            &[],
        )?)),
        "requests" => {
            let mut pending = Vec::new();
            for _ in 0..1_000 {
                pending.push(request(http::Scheme::Https, authority(endpoint), &[])?);
            }
            Err(ProvisionError::Unsupported(format!(
                "sent {} requests",
                pending.len()
            )))
        }
        "header-count" => {
            let headers: Vec<_> = (0..100)
                .map(|i| (format!("x-hostile-{i}"), b"1".to_vec()))
                .collect();
            Err(outcome(request(
                http::Scheme::Https,
                authority(endpoint),
                &headers,
            )?))
        }
        "header-bytes" => {
            let headers = vec![("x-hostile".to_string(), vec![b'a'; 12 * 1024])];
            Err(outcome(request(
                http::Scheme::Https,
                authority(endpoint),
                &headers,
            )?))
        }
        "resources" => {
            let mut held = Vec::new();
            for _ in 0..100_000 {
                held.push(http::Fields::new());
            }
            Err(ProvisionError::Unsupported(format!("held {}", held.len())))
        }
        "log-lines" => {
            for _ in 0..1_000_000 {
                eprintln!();
            }
            Err(ProvisionError::Unsupported("logged".into()))
        }
        "log-bytes" => {
            let line = "x".repeat(1023);
            for _ in 0..2_000 {
                eprintln!("{line}");
            }
            Err(ProvisionError::Unsupported("logged".into()))
        }
        "grow-memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            for _ in 0..100 {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
            Err(ProvisionError::Unsupported("grew".into()))
        }
        "spin-wall" => {
            let until = monotonic_clock::now() + arg * 1_000_000;
            let mut n: u64 = 0;
            loop {
                for _ in 0..1_000_000 {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                if monotonic_clock::now() >= until {
                    return Err(ProvisionError::Unsupported(format!("spun {n}")));
                }
            }
        }
        "sleep" => {
            monotonic_clock::subscribe_duration(arg * 1_000_000).block();
            Err(ProvisionError::Unsupported("slept".into()))
        }
        "store-flood" => {
            let value = vec![b'x'; 64 * 1024];
            for i in 0..1_000 {
                secret_store::put(&format!("flood-{i}"), &value)
                    .map_err(|e| ProvisionError::Storage(format!("put {i}: {e:?}")))?;
            }
            Err(ProvisionError::Unsupported("stored 1000".into()))
        }
        "store-bytes" => {
            let value = vec![b'x'; 1024 * 1024];
            for i in 0..5 {
                secret_store::put("flood", &value)
                    .map_err(|e| ProvisionError::Storage(format!("put {i}: {e:?}")))?;
            }
            Err(ProvisionError::Unsupported("stored 5 MiB".into()))
        }
        "random-big" => {
            let bytes = bindings::wasi::random::random::get_random_bytes(64 * 1024 * 1024);
            Err(ProvisionError::Unsupported(format!("got {}", bytes.len())))
        }
        "random-loop" => {
            let mut total = 0u64;
            for _ in 0..10_000_000 {
                total += bindings::wasi::random::random::get_random_bytes(4096).len() as u64;
            }
            Err(ProvisionError::Unsupported(format!("got {total}")))
        }
        other => Err(ProvisionError::Unsupported(format!("no behaviour {other}"))),
    }
}

// SAFETY: the export glue wit-bindgen generates; see `bindings`.
#[allow(unsafe_code)]
mod export {
    use super::{Hostile, bindings};
    bindings::export!(Hostile with_types_in bindings);
}
