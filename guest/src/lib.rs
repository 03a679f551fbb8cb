//! SORACOM Krypton provisioning component (`soracom:krypton/krypton`, `wit/krypton.wit`).
//!
//! The component owns every Krypton fact: paths, fields, validation, polling, what is stored,
//! the advice that goes with an error. It is built in five layers; each uses only the ones
//! below it, never one above, and nothing goes in a circle:
//!
//! | layer | module | what |
//! | --- | --- | --- |
//! | 5 | `lib.rs` (`glue`), `wasi_capabilities` | the WIT glue: exports mapped onto the layers below, [`client::Capabilities`] over the imports (the `wasi` crate's WASI bindings, our `secret-store` and `uicc`) |
//! | 4 | [`formats`] | export formats, one file each (`pem`, `aziot`, `aws_iot`, `wireguard` with the `wg-quick` rendering, `env`) |
//! | 3 | [`ops`] | the operations: one file per service (`azure`, `aws`, `cognito`, `inventory`, `arc`, `air`) in one table (`table`), SORACOM's Keys API of SIM mode (`keys`, with its cache `key_cache`), `provision`/`status` at the top (`provision`) |
//! | 2 | [`client`] | the HTTP policy: endpoint, deadline, timeouts, retries, one call, its errors, SIM mode's signed requests (`signing`); the `Capabilities` trait (HTTP, clocks, store, the SIM) |
//! | 1 | [`types`] | the types and pure rules: WIT mirrors and errors (`model`), identifiers, JSON reading, text and network rules, certificate and key validation, bundles |
//!
//! Module tree:
//!
//! ```text
//! lib.rs          layer 5: crate docs, bindings, `glue` (the `Guest` impl)
//! wasi_capabilities.rs
//!                 layer 5: Capabilities over wasi:http, wasi:clocks, wasi:random (the `wasi`
//!                          crate), secret-store and uicc (generated here)
//! formats/        layer 4: mod.rs (format table, render-export, wireguard-config)
//!                          pem.rs, aziot.rs, aws_iot.rs, wireguard.rs, env.rs
//! ops/            layer 3: common.rs, store.rs, key_cache.rs < keys.rs, azure.rs, aws.rs,
//!                          cognito.rs, inventory.rs, arc.rs, air.rs < table.rs < provision.rs
//! client/         layer 2: endpoint.rs < capabilities.rs, errors.rs, signing.rs < call.rs
//! types/          layer 1: model.rs < identifiers.rs, json.rs, net.rs, text.rs < validate.rs
//!                          < bundle.rs
//! ```
//!
//! Inside a layer, `a < b` means `b` may use `a`, never the reverse; a `mod.rs` only declares
//! and re-exports, except in `formats`, whose `mod.rs` is the top of that layer. The unit test
//! `layers::no_module_imports_one_above_it` reads the sources and fails on an import against
//! this order.
//!
//! No `unsafe` is written here (the workspace lints deny `unsafe_code` and warn on
//! `missing_docs`): it is allowed only on the code wit-bindgen generates (`bindings` and the
//! export glue).
//!
//! Everything below layer 5 is plain Rust, unit-tested natively with a scripted fake
//! (`cargo test -p krypton-guest --lib`).

pub mod client;
pub mod formats;
pub mod ops;
pub mod types;

#[cfg(target_arch = "wasm32")]
mod wasi_capabilities;

// SAFETY: the only unsafe code of the crate is what wit-bindgen generates: the canonical ABI
// lifting and lowering of our own interfaces' imports and exports, checked against the WIT
// by wit-bindgen and by the component's type check when a host instantiates it.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
// Generated from the WIT, whose `///` comments are the documentation of these items.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "soracom:krypton/krypton",
        // Only our own interfaces (`secret-store`, `uicc`, `types`, `provisioning`) are generated; the
        // WASI interfaces the world imports, and those they use, are the `wasi` crate's.
        with: {
            "wasi:http/outgoing-handler@0.2.12": wasi::http::outgoing_handler,
            "wasi:http/types@0.2.12": wasi::http::types,
            "wasi:io/error@0.2.12": wasi::io::error,
            "wasi:io/poll@0.2.12": wasi::io::poll,
            "wasi:io/streams@0.2.12": wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasi::clocks::monotonic_clock,
            "wasi:clocks/wall-clock@0.2.12": wasi::clocks::wall_clock,
            "wasi:random/random@0.2.12": wasi::random::random,
        },
    });
}

#[cfg(target_arch = "wasm32")]
mod glue {
    use crate::bindings::exports::soracom::krypton::provisioning::Guest;
    use crate::bindings::soracom::krypton::types as wit;
    use crate::bindings::soracom::krypton::uicc;
    use crate::types::model::{self, AuthMode, Target};
    use crate::wasi_capabilities::WasiCapabilities;
    use crate::{formats, ops};

    struct Component;

    fn target_from(t: wit::Target) -> Target {
        match t {
            wit::Target::AzureIot => Target::AzureIot,
            wit::Target::AwsIot => Target::AwsIot,
            wit::Target::AwsCognito => Target::AwsCognito,
            wit::Target::AwsCognitoOpenid => Target::AwsCognitoOpenid,
            wit::Target::Inventory => Target::Inventory,
            wit::Target::Arc => Target::Arc,
            wit::Target::SubscriberMetadata => Target::SubscriberMetadata,
            wit::Target::Userdata => Target::Userdata,
        }
    }

    fn target_to(t: Target) -> wit::Target {
        match t {
            Target::AzureIot => wit::Target::AzureIot,
            Target::AwsIot => wit::Target::AwsIot,
            Target::AwsCognito => wit::Target::AwsCognito,
            Target::AwsCognitoOpenid => wit::Target::AwsCognitoOpenid,
            Target::Inventory => wit::Target::Inventory,
            Target::Arc => wit::Target::Arc,
            Target::SubscriberMetadata => wit::Target::SubscriberMetadata,
            Target::Userdata => wit::Target::Userdata,
        }
    }

    fn report_to(r: model::Report) -> wit::ProvisionReport {
        wit::ProvisionReport {
            target: target_to(r.target),
            bundle: r.bundle,
            reused: r.reused,
            obtained_at_ms: r.obtained_at_ms,
            identifiers: r.identifiers,
            sizes: r.sizes,
            mints_credentials: r.mints_credentials,
            mode: mode_to(r.mode),
            warnings: r
                .warnings
                .into_iter()
                .map(|w| wit::ReportWarning {
                    check: w.check,
                    message: w.message,
                })
                .collect(),
            certificate: r.certificate.map(|c| wit::CertificateSummary {
                sha256_fingerprint: c.sha256_fingerprint,
                subject: c.subject,
                issuer: c.issuer,
                not_before: c.not_before,
                not_after: c.not_after,
            }),
        }
    }

    fn kind_to(k: model::TransportKind) -> wit::TransportKind {
        use model::TransportKind as K;
        match k {
            K::NameNotFound => wit::TransportKind::NameNotFound,
            K::NameResolutionFailed => wit::TransportKind::NameResolutionFailed,
            K::ConnectionRefused => wit::TransportKind::ConnectionRefused,
            K::ConnectionTimeout => wit::TransportKind::ConnectionTimeout,
            K::Unreachable => wit::TransportKind::Unreachable,
            K::UntrustedCertificate => wit::TransportKind::UntrustedCertificate,
            K::TlsFailure => wit::TransportKind::TlsFailure,
            K::ProtocolMismatch => wit::TransportKind::ProtocolMismatch,
            K::ConnectionLost => wit::TransportKind::ConnectionLost,
            K::Denied => wit::TransportKind::Denied,
            K::Other => wit::TransportKind::Other,
        }
    }

    fn mode_to(m: AuthMode) -> wit::AuthMode {
        match m {
            AuthMode::Network => wit::AuthMode::Network,
            AuthMode::Sim => wit::AuthMode::Sim,
        }
    }

    /// A UICC error of the model as the WIT's (the same cases).
    fn uicc_error_to(e: model::UiccError) -> uicc::UiccError {
        use model::UiccError as U;
        match e {
            U::Unavailable(m) => uicc::UiccError::Unavailable(m),
            U::NoSim(m) => uicc::UiccError::NoSim(m),
            U::Io(m) => uicc::UiccError::Io(m),
            U::StatusWord { sw1, sw2, command } => {
                uicc::UiccError::StatusWord(uicc::StatusWord { sw1, sw2, command })
            }
            U::MacFailure => uicc::UiccError::MacFailure,
        }
    }

    /// The error and its advice for network mode ([`model::Failure`]).
    fn failure(e: model::Error) -> wit::Failure {
        failure_in(e, AuthMode::Network)
    }

    /// The error and its advice for `mode` ([`model::Failure::in_mode`]).
    fn failure_in(e: model::Error, mode: AuthMode) -> wit::Failure {
        use model::Error as E;
        let model::Failure { error, hint } = model::Failure::in_mode(e, mode);
        let error = match error {
            E::InvalidRequest(m) => wit::ProvisionError::InvalidRequest(m),
            E::Unsupported(m) => wit::ProvisionError::Unsupported(m),
            E::Transport(t) => wit::ProvisionError::Transport(wit::TransportError {
                kind: kind_to(t.kind),
                request: t.request,
                message: t.message,
                attempts: t.attempts,
            }),
            E::Timeout(m) => wit::ProvisionError::Timeout(m),
            E::HttpStatus {
                status,
                code,
                message,
                body_excerpt,
                request,
            } => wit::ProvisionError::HttpStatus(wit::HttpStatusError {
                status,
                code,
                message,
                body_excerpt,
                request,
            }),
            E::InvalidResponse {
                field,
                reason,
                stored,
            } => wit::ProvisionError::InvalidResponse(wit::InvalidResponse {
                field,
                reason,
                stored,
            }),
            E::RegistrationFailed {
                operation_id,
                status,
            } => wit::ProvisionError::RegistrationFailed(wit::RegistrationFailure {
                operation_id,
                status,
            }),
            E::Storage(m) => wit::ProvisionError::Storage(m),
            E::Sim(model::SimError::Uicc(e)) => {
                wit::ProvisionError::Sim(wit::SimError::Uicc(uicc_error_to(e)))
            }
            E::Sim(model::SimError::KeyAgreement(m)) => {
                wit::ProvisionError::Sim(wit::SimError::KeyAgreement(m))
            }
        };
        wit::Failure { error, hint }
    }

    impl Guest for Component {
        fn provision(request: wit::ProvisionRequest) -> Result<wit::ProvisionReport, wit::Failure> {
            let mode = match request.mode {
                wit::AuthMode::Network => AuthMode::Network,
                wit::AuthMode::Sim => AuthMode::Sim,
            };
            let request = model::ProvisionRequest {
                target: target_from(request.target),
                mode,
                endpoint: request.endpoint,
                request_parameters: request.request_parameters,
                force: request.force,
                deadline_ms: request.deadline_ms,
                poll_interval_ms: request.poll_interval_ms,
                timeouts: model::Timeouts {
                    connect_ms: request.timeouts.connect_ms,
                    first_byte_ms: request.timeouts.first_byte_ms,
                    between_bytes_ms: request.timeouts.between_bytes_ms,
                },
                retry: model::RetryPolicy {
                    max_attempts: request.retry.max_attempts,
                    base_delay_ms: request.retry.base_delay_ms,
                    max_delay_ms: request.retry.max_delay_ms,
                },
                sim: model::SimOptions {
                    key_cache: match request.sim.key_cache {
                        wit::KeyCacheUse::Reuse => model::KeyCacheUse::Reuse,
                        wit::KeyCacheUse::Bypass => model::KeyCacheUse::Bypass,
                        wit::KeyCacheUse::Clear => model::KeyCacheUse::Clear,
                    },
                },
            };
            ops::provision(&mut WasiCapabilities, &request)
                .map(report_to)
                .map_err(|e| failure_in(e, mode))
        }

        fn status(target: wit::Target) -> Result<Option<wit::ProvisionReport>, wit::Failure> {
            ops::status(&mut WasiCapabilities, target_from(target))
                .map(|r| r.map(report_to))
                .map_err(failure)
        }

        fn wireguard_config(krypton_addresses: Vec<String>) -> Result<String, wit::Failure> {
            formats::wireguard_config(&mut WasiCapabilities, &krypton_addresses).map_err(failure)
        }

        fn render_export(
            target: wit::Target,
            format: String,
            directory: String,
            krypton_addresses: Vec<String>,
        ) -> Result<Vec<wit::ExportFile>, wit::Failure> {
            formats::render_export(
                &mut WasiCapabilities,
                target_from(target),
                &format,
                &directory,
                &krypton_addresses,
            )
            .map(|files| {
                files
                    .into_iter()
                    .map(|f| wit::ExportFile {
                        name: f.name,
                        contents: f.contents,
                        secret: f.secret,
                        converted: f.converted,
                        owner: f.owner.map(str::to_string),
                    })
                    .collect()
            })
            .map_err(failure)
        }

        fn targets() -> Vec<wit::TargetInfo> {
            ops::OPERATIONS
                .iter()
                .map(|op| wit::TargetInfo {
                    target: target_to(op.target),
                    name: op.target.name().to_string(),
                    summary: op.summary.to_string(),
                    mints_credentials: op.mints_credentials,
                    export_formats: formats::names_for(op.target)
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                    required_parameters: op
                        .required_parameters
                        .iter()
                        .map(|p| wit::ParameterInfo {
                            name: p.name.to_string(),
                            description: p.description.to_string(),
                            example: p.example.to_string(),
                        })
                        .collect(),
                })
                .collect()
        }

        fn version() -> (String, String) {
            (
                env!("CARGO_PKG_VERSION").to_string(),
                "soracom:krypton@0.6.0".to_string(),
            )
        }

        fn default_endpoints() -> Vec<wit::DefaultEndpoint> {
            crate::client::DEFAULT_ENDPOINTS
                .iter()
                .map(|e| wit::DefaultEndpoint {
                    mode: mode_to(e.mode),
                    coverage: e.coverage.map(str::to_string),
                    url: e.url.to_string(),
                })
                .collect()
        }

        fn export_formats() -> Vec<wit::ExportFormat> {
            formats::FORMATS
                .iter()
                .map(|f| wit::ExportFormat {
                    name: f.name.to_string(),
                    summary: f.summary.to_string(),
                })
                .collect()
        }

        fn soratun_routes(text: String) -> Result<Vec<wit::RouteEntry>, wit::Failure> {
            ops::arc::soratun_routes(&text)
                .map(|entries| {
                    entries
                        .into_iter()
                        .map(|e| wit::RouteEntry {
                            location: e.location,
                            entry: e.entry,
                            problem: e.problem,
                        })
                        .collect()
                })
                .map_err(failure)
        }

        fn soratun_route_fix(routes: Vec<String>) -> String {
            ops::arc::soratun_route_fix(&routes)
        }
    }

    // SAFETY: the export glue wit-bindgen generates (the canonical ABI entry points calling
    // `Component`'s safe functions); see `bindings`.
    #[allow(unsafe_code)]
    mod export {
        use super::Component;
        crate::bindings::export!(Component with_types_in crate::bindings);
    }
}

#[cfg(test)]
mod layers;
#[cfg(test)]
mod tests;
