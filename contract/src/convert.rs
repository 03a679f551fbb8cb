//! The conversions from a front end's generated bindings into the [`crate::model`].
//!
//! wasmtime's `bindgen!` (the host) and wit-bindgen's `generate!` (the adapters) name the
//! types, fields and cases of `wit/krypton.wit` alike (`ProvisionReport`, `obtained_at_ms`,
//! `TransportKind::NameNotFound`), so the `From` impls are written once here, as a macro that
//! each front end invokes on its own generated modules (the impls must live in the crate
//! whose types they convert).

/// `impl From<&T> for krypton_contract::model::T` for each type of the model, where `T` is
/// the generated type of the same name in `types` (the `soracom:krypton/types` interface) or
/// `uicc` (`soracom:krypton/uicc`: `UiccError`, `StatusWord`).
///
/// ```ignore
/// krypton_contract::from_bindings!(
///     crate::bindings::soracom::krypton::types,
///     crate::bindings::soracom::krypton::uicc
/// );
/// ```
#[macro_export]
macro_rules! from_bindings {
    ($($types:ident)::+, $($uicc:ident)::+) => {
        const _: () = {
            use $($types)::+ as wit;
            use $($uicc)::+ as wit_uicc;
            use $crate::model as m;

            impl ::core::convert::From<&wit::AuthMode> for m::AuthMode {
                fn from(mode: &wit::AuthMode) -> Self {
                    match mode {
                        wit::AuthMode::Network => m::AuthMode::Network,
                        wit::AuthMode::Sim => m::AuthMode::Sim,
                    }
                }
            }

            impl ::core::convert::From<&wit::CertificateSummary> for m::CertificateSummary {
                fn from(c: &wit::CertificateSummary) -> Self {
                    m::CertificateSummary {
                        sha256_fingerprint: c.sha256_fingerprint.clone(),
                        subject: c.subject.clone(),
                        issuer: c.issuer.clone(),
                        not_before: c.not_before,
                        not_after: c.not_after,
                    }
                }
            }

            impl ::core::convert::From<&wit::ProvisionReport> for m::ProvisionReport {
                fn from(r: &wit::ProvisionReport) -> Self {
                    m::ProvisionReport {
                        bundle: r.bundle.clone(),
                        reused: r.reused,
                        obtained_at_ms: r.obtained_at_ms,
                        identifiers: r.identifiers.clone(),
                        certificate: r.certificate.as_ref().map(m::CertificateSummary::from),
                        sizes: r.sizes.clone(),
                        mode: m::AuthMode::from(&r.mode),
                        warnings: r
                            .warnings
                            .iter()
                            .map(|w| m::ReportWarning {
                                check: w.check.clone(),
                                message: w.message.clone(),
                            })
                            .collect(),
                    }
                }
            }

            impl ::core::convert::From<&wit::TransportKind> for m::TransportKind {
                fn from(kind: &wit::TransportKind) -> Self {
                    use wit::TransportKind as K;
                    match kind {
                        K::NameNotFound => m::TransportKind::NameNotFound,
                        K::NameResolutionFailed => m::TransportKind::NameResolutionFailed,
                        K::ConnectionRefused => m::TransportKind::ConnectionRefused,
                        K::ConnectionTimeout => m::TransportKind::ConnectionTimeout,
                        K::Unreachable => m::TransportKind::Unreachable,
                        K::UntrustedCertificate => m::TransportKind::UntrustedCertificate,
                        K::TlsFailure => m::TransportKind::TlsFailure,
                        K::ProtocolMismatch => m::TransportKind::ProtocolMismatch,
                        K::ConnectionLost => m::TransportKind::ConnectionLost,
                        K::Denied => m::TransportKind::Denied,
                        K::Other => m::TransportKind::Other,
                    }
                }
            }

            impl ::core::convert::From<&wit_uicc::UiccError> for m::UiccError {
                fn from(error: &wit_uicc::UiccError) -> Self {
                    use wit_uicc::UiccError as U;
                    match error {
                        U::Unavailable(s) => m::UiccError::Unavailable(s.clone()),
                        U::NoSim(s) => m::UiccError::NoSim(s.clone()),
                        U::Io(s) => m::UiccError::Io(s.clone()),
                        U::StatusWord(sw) => m::UiccError::StatusWord(m::StatusWord {
                            sw1: sw.sw1,
                            sw2: sw.sw2,
                            command: sw.command.clone(),
                        }),
                        U::MacFailure => m::UiccError::MacFailure,
                    }
                }
            }

            impl ::core::convert::From<&wit::ProvisionError> for m::ProvisionError {
                fn from(error: &wit::ProvisionError) -> Self {
                    use wit::ProvisionError as E;
                    match error {
                        E::InvalidRequest(s) => m::ProvisionError::InvalidRequest(s.clone()),
                        E::Unsupported(s) => m::ProvisionError::Unsupported(s.clone()),
                        E::Transport(e) => m::ProvisionError::Transport(m::TransportError {
                            kind: m::TransportKind::from(&e.kind),
                            request: e.request.clone(),
                            message: e.message.clone(),
                            attempts: e.attempts,
                        }),
                        E::Timeout(s) => m::ProvisionError::Timeout(s.clone()),
                        E::HttpStatus(e) => m::ProvisionError::HttpStatus(m::HttpStatusError {
                            status: e.status,
                            code: e.code.clone(),
                            message: e.message.clone(),
                            body_excerpt: e.body_excerpt.clone(),
                            request: e.request.clone(),
                        }),
                        E::InvalidResponse(e) => {
                            m::ProvisionError::InvalidResponse(m::InvalidResponse {
                                field: e.field.clone(),
                                reason: e.reason.clone(),
                                stored: e.stored,
                            })
                        }
                        E::RegistrationFailed(e) => {
                            m::ProvisionError::RegistrationFailed(m::RegistrationFailure {
                                operation_id: e.operation_id.clone(),
                                status: e.status.clone(),
                            })
                        }
                        E::Storage(s) => m::ProvisionError::Storage(s.clone()),
                        E::Sim(wit::SimError::Uicc(u)) => {
                            m::ProvisionError::Sim(m::SimError::Uicc(m::UiccError::from(u)))
                        }
                        E::Sim(wit::SimError::KeyAgreement(s)) => {
                            m::ProvisionError::Sim(m::SimError::KeyAgreement(s.clone()))
                        }
                    }
                }
            }

            impl ::core::convert::From<&wit::Failure> for m::Failure {
                fn from(failure: &wit::Failure) -> Self {
                    m::Failure {
                        error: m::ProvisionError::from(&failure.error),
                        hint: failure.hint.clone(),
                    }
                }
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use crate::model::*;

    // The model is shaped as the generated bindings are: converting it into itself checks
    // that every field lands in its namesake.
    crate::from_bindings!(crate::model, crate::model);

    #[test]
    fn every_field_lands_in_its_namesake() {
        let report = ProvisionReport {
            bundle: "b".into(),
            reused: true,
            obtained_at_ms: 7,
            identifiers: vec![("k".into(), "v".into())],
            certificate: Some(CertificateSummary {
                sha256_fingerprint: "f".into(),
                subject: "s".into(),
                issuer: "i".into(),
                not_before: 1,
                not_after: 2,
            }),
            sizes: vec![("bytes".into(), 3)],
            mode: AuthMode::Sim,
            warnings: vec![ReportWarning {
                check: "c".into(),
                message: "m".into(),
            }],
        };
        assert_eq!(ProvisionReport::from(&report), report);
        let failures = [
            ProvisionError::InvalidRequest("a".into()),
            ProvisionError::Unsupported("b".into()),
            ProvisionError::Transport(TransportError {
                kind: TransportKind::UntrustedCertificate,
                request: "r".into(),
                message: "m".into(),
                attempts: 3,
            }),
            ProvisionError::Timeout("c".into()),
            ProvisionError::HttpStatus(HttpStatusError {
                status: 404,
                code: Some("c".into()),
                message: Some("m".into()),
                body_excerpt: "x".into(),
                request: "r".into(),
            }),
            ProvisionError::InvalidResponse(InvalidResponse {
                field: "f".into(),
                reason: "r".into(),
                stored: true,
            }),
            ProvisionError::RegistrationFailed(RegistrationFailure {
                operation_id: "o".into(),
                status: "s".into(),
            }),
            ProvisionError::Storage("d".into()),
            ProvisionError::Sim(SimError::KeyAgreement("k".into())),
            ProvisionError::Sim(SimError::Uicc(UiccError::StatusWord(StatusWord {
                sw1: 1,
                sw2: 2,
                command: "c".into(),
            }))),
            ProvisionError::Sim(SimError::Uicc(UiccError::NoSim("n".into()))),
            ProvisionError::Sim(SimError::Uicc(UiccError::MacFailure)),
        ];
        for error in failures {
            let failure = Failure {
                error,
                hint: Some("h".into()),
            };
            assert_eq!(Failure::from(&failure), failure);
        }
        for kind in [
            TransportKind::NameNotFound,
            TransportKind::NameResolutionFailed,
            TransportKind::ConnectionRefused,
            TransportKind::ConnectionTimeout,
            TransportKind::Unreachable,
            TransportKind::UntrustedCertificate,
            TransportKind::TlsFailure,
            TransportKind::ProtocolMismatch,
            TransportKind::ConnectionLost,
            TransportKind::Denied,
            TransportKind::Other,
        ] {
            assert_eq!(TransportKind::from(&kind), kind);
        }
    }
}
