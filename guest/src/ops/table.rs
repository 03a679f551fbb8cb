//! The one table of Krypton operations: for each target its calls, its parser, its reuse rule
//! and the facts a host reads through `targets()`. Paths and fields come from SORACOM's Krypton
//! documentation and its open-source clients (`soracom/krypton-client-go`,
//! `soracom/soracom-krypton-client-for-java`); choices where the documentation is silent are
//! stated next to the code, in the service's file.
//!
//! The operations are numbered P1–P12 in comments here, in the service files and in the mock:
//!
//! | no. | request | file |
//! | --- | --- | --- |
//! | P1 | `POST /v1/provisioning/aws/iot/bootstrap` | `aws` |
//! | P2 | `POST /v1/provisioning/aws/iot/certificates/{certificateId}` | `aws` |
//! | P3 | `POST /v1/provisioning/aws/iot/ca_certificate` | `aws` |
//! | P4 | `POST /v1/provisioning/aws/cognito/credentials` | `cognito` |
//! | P5 | `POST /v1/provisioning/aws/cognito/open_id_tokens` | `cognito` |
//! | P6 | `POST /v1/provisioning/azure/iot/register` | `azure` |
//! | P7 | `GET` (network mode), `POST` (SIM mode) `/v1/provisioning/azure/iot/registrations/{operationId}` | `azure` |
//! | P8 | `POST /v1/provisioning/azure/iot/bootstrap` (not used) | |
//! | P9 | `POST /v1/provisioning/soracom/inventory/bootstrap` | `inventory` |
//! | P10 | `POST /v1/provisioning/soracom/arc/bootstrap` | `arc` |
//! | P11 | `POST /v1/provisioning/soracom/air/subscriber_metadata` | `air` |
//! | P12 | `POST /v1/provisioning/soracom/air/userdata` | `air` |
//!
//! In SIM-authenticated mode every call is a `POST` to the same path below SORACOM's API
//! (`https://g.api.soracom.io`, `https://api.soracom.io`), its body the SIM-mode body and
//! signed ([`crate::client::Run::sign_with`]).
//!
//! A new operation: a file for its service with `prepare` (or [`prepare_plain`]), its paths
//! and its parser (or its flow), a [`crate::types::bundle::Bundle`] variant, and one row here.

use super::common::{Call, Prepared, post, prepare_plain};
use super::{air, arc, aws, azure, cognito, inventory};
use crate::client::{Capabilities, Run};
use crate::types::bundle::Bundle;
use crate::types::model::{Error, ParameterInfo, Report, Target};
use serde_json::{Map, Value};

/// Checks the request parameters (the JSON object of `requestParameters`, if any) and builds
/// the first body, before the store is read or anything is sent.
pub type Prepare = fn(Option<Map<String, Value>>) -> Result<Prepared, Error>;

/// Turns the 2xx body of a target's single call into a checked bundle: the prepared request,
/// the body, and the time of the answer (ms since the epoch).
pub type Parser = fn(&Prepared, &[u8], u64) -> Result<Bundle, Error>;

/// Makes a target's calls in its own order and returns the checked bundle.
pub type Flow = fn(&mut Run<'_>, Prepared) -> Result<Bundle, Error>;

/// Runs after the bundle is stored: the capabilities, the bundle stored before (if it was
/// usable), the new bundle, and its report (which it may add identifiers to).
pub type AfterStore = fn(&mut dyn Capabilities, Option<&Bundle>, &Bundle, &mut Report);

/// How a target reaches Krypton.
#[derive(Clone, Copy)]
pub enum Calls {
    /// One POST of the prepared body to `path`; the answer goes through `parse`.
    One {
        /// The path below the endpoint.
        path: &'static str,
        /// The answer's parser.
        parse: Parser,
    },
    /// Several calls made by `run`.
    Flow {
        /// The calls, in order, for readers and `target-info`-like listings.
        calls: &'static [Call],
        /// Makes the calls and parses the answers.
        run: Flow,
    },
}

impl Calls {
    /// The calls, in order, as the table lists them.
    pub fn list(&self) -> Vec<Call> {
        match self {
            Calls::One { path, .. } => vec![post(path)],
            Calls::Flow { calls, .. } => calls.to_vec(),
        }
    }
}

/// When a stored bundle is reported instead of calling Krypton again (without `force`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Never: each run asks again (cheap, short-lived or changing values).
    Never,
    /// Always: a new call would re-key the device.
    Always,
    /// While the leaf certificate's `notAfter` is in the future.
    WhileCertificateValid,
    /// Until `margin_ms` before the credentials' own expiry ([`Bundle::expires_at_ms`]).
    UntilExpiry {
        /// How long before the expiry the bundle stops being reused, ms.
        margin_ms: u64,
    },
}

impl Reuse {
    /// Whether `bundle` (whose `report` was built from it) may be reused at `now_ms` (ms since
    /// the epoch).
    pub fn allows(self, bundle: &Bundle, report: &Report, now_ms: u64) -> bool {
        match self {
            Reuse::Never => false,
            Reuse::Always => true,
            Reuse::WhileCertificateValid => report
                .certificate
                .as_ref()
                .is_some_and(|c| c.not_after.saturating_mul(1000) > now_ms as i64),
            Reuse::UntilExpiry { margin_ms } => bundle
                .expires_at_ms()
                .is_some_and(|at| at > now_ms.saturating_add(margin_ms)),
        }
    }
}

/// One target's row.
pub struct Operation {
    /// The target this row serves.
    pub target: Target,
    /// What it provisions, in one line (WIT `target-info.summary`).
    pub summary: &'static str,
    /// Whether every successful call issues new credentials, so that a host must not
    /// re-provision it on a schedule without the operator's consent (WIT
    /// `mints-credentials`).
    pub mints_credentials: bool,
    /// Request parameters Krypton requires (WIT `required-parameters`).
    pub required_parameters: &'static [ParameterInfo],
    /// Checks the request parameters and builds the first body. Errors:
    /// [`Error::InvalidRequest`].
    pub prepare: Prepare,
    /// The calls and the parser.
    pub calls: Calls,
    /// When a stored bundle is reused.
    pub reuse: Reuse,
    /// Whether Krypton's answer holds a credential that exists nowhere else (a private key, a
    /// WireGuard key, a PSK): losing the answer loses the credential, and the next run mints
    /// another. The store is then proved able to take a bundle before any call
    /// ([`super::store::prove_store`]).
    pub probe_store: bool,
    /// What to do once the bundle is stored, if anything.
    pub after_store: Option<AfterStore>,
}

/// Every target this component implements, in the order of the WIT `target` enum.
pub const OPERATIONS: [Operation; 8] = [
    Operation {
        target: Target::AzureIot,
        summary: "Azure IoT Hub device certificate and key through Azure DPS",
        // DPS issues a new certificate and key, but a registration names the same device.
        mints_credentials: false,
        required_parameters: &[],
        prepare: azure::prepare,
        calls: Calls::Flow {
            calls: azure::CALLS,
            run: azure::obtain,
        },
        reuse: Reuse::WhileCertificateValid,
        probe_store: true,
        after_store: Some(azure::after_store),
    },
    Operation {
        target: Target::AwsIot,
        summary: "AWS IoT Core device certificate and key (a new one on every call)",
        // Krypton's bootstrap calls AWS IoT `CreateKeysAndCertificate` ("Creates a 2048-bit
        // RSA key pair and issues an X.509 certificate", AWS IoT API Reference); the previous
        // certificate stays active until it is deactivated.
        mints_credentials: true,
        required_parameters: &[],
        prepare: aws::prepare,
        calls: Calls::Flow {
            calls: aws::CALLS,
            run: aws::obtain,
        },
        reuse: Reuse::WhileCertificateValid,
        probe_store: true,
        after_store: None,
    },
    Operation {
        target: Target::AwsCognito,
        summary: "Amazon Cognito temporary AWS credentials",
        mints_credentials: false,
        required_parameters: &[],
        prepare: prepare_plain,
        calls: Calls::One {
            path: cognito::CREDENTIALS,
            parse: cognito::parse_credentials,
        },
        reuse: Reuse::UntilExpiry {
            margin_ms: cognito::COGNITO_REFRESH_MARGIN_MS,
        },
        probe_store: false,
        after_store: None,
    },
    Operation {
        target: Target::AwsCognitoOpenid,
        summary: "Amazon Cognito OpenID token",
        mints_credentials: false,
        required_parameters: &[],
        prepare: prepare_plain,
        calls: Calls::One {
            path: cognito::OPEN_ID_TOKENS,
            parse: cognito::parse_open_id_token,
        },
        reuse: Reuse::Never,
        probe_store: false,
        after_store: None,
    },
    Operation {
        target: Target::Inventory,
        summary: "SORACOM Inventory LwM2M bootstrap (server URI, PSK identity and key)",
        mints_credentials: false,
        required_parameters: inventory::PARAMETERS,
        prepare: inventory::prepare,
        // A flow of one call: in SIM mode the parser needs the run's CK.
        calls: Calls::Flow {
            calls: inventory::CALLS,
            run: inventory::obtain,
        },
        // A new bootstrap re-keys the device.
        reuse: Reuse::Always,
        probe_store: true,
        after_store: None,
    },
    Operation {
        target: Target::Arc,
        summary: "SORACOM Arc WireGuard keys, address and peer",
        mints_credentials: false,
        required_parameters: &[],
        prepare: prepare_plain,
        calls: Calls::One {
            path: arc::BOOTSTRAP,
            parse: arc::parse_bootstrap,
        },
        // A new bootstrap re-keys the device.
        reuse: Reuse::Always,
        probe_store: true,
        after_store: None,
    },
    Operation {
        target: Target::SubscriberMetadata,
        summary: "SORACOM Air subscriber metadata",
        mints_credentials: false,
        required_parameters: &[],
        prepare: prepare_plain,
        calls: Calls::One {
            path: air::SUBSCRIBER_METADATA,
            parse: air::parse_subscriber_metadata,
        },
        reuse: Reuse::Never,
        probe_store: false,
        after_store: None,
    },
    Operation {
        target: Target::Userdata,
        summary: "SORACOM Air group userdata",
        mints_credentials: false,
        required_parameters: &[],
        prepare: prepare_plain,
        calls: Calls::One {
            path: air::USERDATA,
            parse: air::parse_userdata,
        },
        reuse: Reuse::Never,
        probe_store: false,
        after_store: None,
    },
];

/// The row of `target`.
pub fn operation(target: Target) -> &'static Operation {
    OPERATIONS
        .iter()
        .find(|op| op.target == target)
        .expect("every target has a row")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_target_in_the_order_of_the_wit_enum() {
        let names: Vec<&str> = OPERATIONS.iter().map(|op| op.target.name()).collect();
        assert_eq!(
            names,
            [
                "azure-iot",
                "aws-iot",
                "aws-cognito",
                "aws-cognito-openid",
                "inventory",
                "arc",
                "subscriber-metadata",
                "userdata"
            ]
        );
        for op in &OPERATIONS {
            assert_eq!(operation(op.target).target, op.target);
            assert!(!op.summary.is_empty());
            for call in op.calls.list() {
                assert!(call.path.starts_with("/v1/provisioning/"), "{call:?}");
            }
        }
    }

    #[test]
    fn only_aws_iot_mints_credentials_and_only_inventory_requires_a_parameter() {
        for op in &OPERATIONS {
            assert_eq!(
                op.mints_credentials,
                op.target == Target::AwsIot,
                "{:?}",
                op.target
            );
            let required: Vec<&str> = op.required_parameters.iter().map(|p| p.name).collect();
            let expected: &[&str] = if op.target == Target::Inventory {
                &["endpoint"]
            } else {
                &[]
            };
            assert_eq!(required, expected, "{:?}", op.target);
        }
        let endpoint = &operation(Target::Inventory).required_parameters[0];
        assert_eq!(endpoint.example, "demo-gateway");
        // The example passes the check the request's parameter gets.
        let params = serde_json::json!({"endpoint": endpoint.example});
        assert!((operation(Target::Inventory).prepare)(params.as_object().cloned()).is_ok());
    }
}
