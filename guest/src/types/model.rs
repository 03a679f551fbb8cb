//! Plain-Rust mirrors of the WIT types (`wit/krypton.wit`, package `soracom:krypton@0.6.0`).
//!
//! The provisioning logic works on these so that it compiles and unit-tests natively; `lib.rs`
//! converts them to and from the generated bindings one-to-one.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What to provision (WIT `target`). One bundle per target, stored under [`Target::bundle_name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `azure-iot`: Azure IoT Hub through Azure DPS.
    AzureIot,
    /// `aws-iot`: AWS IoT Core.
    AwsIot,
    /// `aws-cognito`: Amazon Cognito temporary credentials.
    AwsCognito,
    /// `aws-cognito-openid`: an Amazon Cognito OpenID token.
    AwsCognitoOpenid,
    /// `inventory`: SORACOM Inventory (LwM2M) bootstrap.
    Inventory,
    /// `arc`: SORACOM Arc (WireGuard).
    Arc,
    /// `subscriber-metadata`: SORACOM Air subscriber metadata.
    SubscriberMetadata,
    /// `userdata`: SORACOM Air group userdata.
    Userdata,
}

impl Target {
    /// The CLI and secret-store name, e.g. `azure-iot`.
    pub fn name(self) -> &'static str {
        match self {
            Target::AzureIot => "azure-iot",
            Target::AwsIot => "aws-iot",
            Target::AwsCognito => "aws-cognito",
            Target::AwsCognitoOpenid => "aws-cognito-openid",
            Target::Inventory => "inventory",
            Target::Arc => "arc",
            Target::SubscriberMetadata => "subscriber-metadata",
            Target::Userdata => "userdata",
        }
    }

    /// The secret-store name of this target's bundle (the target's name).
    pub fn bundle_name(self) -> &'static str {
        self.name()
    }
}

/// How the device authenticates (WIT `auth-mode`). Stored in a bundle as `"mode"`: `sim`
/// is written, `network` is not (a bundle without the field was obtained in network mode, as
/// every bundle written before SIM mode existed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The SIM is recognised by its SORACOM Air session or Arc tunnel.
    #[default]
    Network,
    /// SIM authentication over any network: 3GPP AKA with SORACOM's Keys API through the
    /// host's `uicc`, then every provisioning request signed with the CK it yields.
    Sim,
}

impl AuthMode {
    /// `network` or `sim`, as the WIT and the bundles spell it.
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Network => "network",
            AuthMode::Sim => "sim",
        }
    }

    /// Whether this is network mode (the default, not written into bundles).
    pub fn is_network(&self) -> bool {
        *self == AuthMode::Network
    }
}

/// What to do with the cached Keys API session (WIT `key-cache-use`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyCacheUse {
    /// Reuse a cached session of the same IMSI that has not expired; otherwise run AKA and
    /// cache the new session.
    #[default]
    Reuse,
    /// Run AKA; neither read nor write the cache.
    Bypass,
    /// Delete the cached session, then run AKA and cache the new session.
    Clear,
}

/// Options of SIM-authenticated mode (WIT `sim-options`); ignored in network mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimOptions {
    /// Use of the key cache.
    pub key_cache: KeyCacheUse,
}

/// Secret bytes (RES, CK, IK). `Debug` never shows them and there is no `Display`, so they
/// cannot reach a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wrap secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }
    /// The bytes, for hashing and for the Keys API only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// RES, CK and IK from a successful AUTHENTICATE (WIT `auth-keys`; 3GPP TS 33.102 §6.3.3):
/// RES 4 to 16 bytes, CK and IK 16 bytes each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthKeys {
    /// The USIM's response to the challenge.
    pub res: SecretBytes,
    /// The cipher key, which signs SIM-mode requests.
    pub ck: SecretBytes,
    /// The integrity key (not used by the Keys API).
    pub ik: SecretBytes,
}

/// The USIM's answer to AUTHENTICATE (WIT `auth-outcome`; 3GPP TS 31.102 §7.1.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Success: RES, CK, IK.
    Success(AuthKeys),
    /// Synchronisation failure: AUTS (14 bytes, TS 33.102 §6.3.5), for the Keys API's
    /// resynchronisation.
    SyncFailure(Vec<u8>),
}

/// Why a UICC call failed (WIT `uicc-error`). No case carries a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UiccError {
    /// The host has no SIM access; the text says what to configure.
    Unavailable(String),
    /// The modem or reader holds no SIM.
    NoSim(String),
    /// The reader or modem failed (I/O, a timeout, a reply cut short).
    Io(String),
    /// The card answered a status word other than success (ISO/IEC 7816-4 §5.6).
    StatusWord {
        /// First status byte.
        sw1: u8,
        /// Second status byte.
        sw2: u8,
        /// The command that got it, e.g. `AUTHENTICATE`.
        command: String,
    },
    /// The USIM rejected the challenge: MAC failure, status `98 62` (3GPP TS 31.102 §7.3.1).
    MacFailure,
}

/// Why SIM-authenticated mode failed before a provisioning request could be signed (WIT
/// `sim-error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimError {
    /// The host's `uicc` answered an error.
    Uicc(UiccError),
    /// The Keys API refused the key agreement or the verification, or answered something
    /// unusable; the text names the call and the status, never a key.
    KeyAgreement(String),
}

/// Per-request HTTP timeouts in milliseconds (WIT `http-timeouts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP and TLS connect, ms.
    pub connect_ms: u32,
    /// Until the first byte of the answer, ms.
    pub first_byte_ms: u32,
    /// Between two chunks of the body, ms.
    pub between_bytes_ms: u32,
}

/// Retry policy for failed Krypton calls (WIT `retry-policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff base, ms.
    pub base_delay_ms: u32,
    /// Backoff ceiling, ms.
    pub max_delay_ms: u32,
}

/// One provisioning run (WIT `provision-request`).
#[derive(Clone, Debug)]
pub struct ProvisionRequest {
    /// What to provision.
    pub target: Target,
    /// How the device authenticates.
    pub mode: AuthMode,
    /// Krypton base URL such as `https://krypton.soracom.io:8036`.
    pub endpoint: String,
    /// JSON object text for `requestParameters`; `None` sends `{}`.
    pub request_parameters: Option<String>,
    /// Call Krypton even when a valid bundle is stored (WIT `force`).
    pub force: bool,
    /// Whole-operation deadline, ms.
    pub deadline_ms: u32,
    /// Azure poll interval when no `Retry-After` arrives, ms.
    pub poll_interval_ms: u32,
    /// Per-request timeouts.
    pub timeouts: Timeouts,
    /// Retries of one call.
    pub retry: RetryPolicy,
    /// Options of SIM-authenticated mode (ignored in network mode).
    pub sim: SimOptions,
}

/// Non-secret facts about a certificate (WIT `certificate-summary`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateSummary {
    /// SHA-256 of the DER certificate, 64 lowercase hex digits.
    pub sha256_fingerprint: String,
    /// Subject distinguished name (RFC 4514 text, control characters escaped).
    pub subject: String,
    /// Issuer distinguished name, as `subject`.
    pub issuer: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

/// What was stored (WIT `provision-report`). Carries no secret by construction: it is built
/// only from identifiers and a [`CertificateSummary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The target provisioned or reported.
    pub target: Target,
    /// The bundle's name in the secret store.
    pub bundle: String,
    /// `true` when a stored bundle was reported instead of calling Krypton.
    pub reused: bool,
    /// When Krypton answered, ms since the Unix epoch.
    pub obtained_at_ms: u64,
    /// Non-secret identifiers under Krypton's field names, in a stable order.
    pub identifiers: Vec<(String, String)>,
    /// The leaf certificate, for targets that have one.
    pub certificate: Option<CertificateSummary>,
    /// Sizes of what is stored (WIT `sizes`).
    pub sizes: Vec<(String, u64)>,
    /// Whether provisioning this target again issues new credentials (WIT
    /// `mints-credentials`); the operations layer sets it from its table.
    pub mints_credentials: bool,
    /// The mode the bundle was obtained in (WIT `provision-report.mode`).
    pub mode: AuthMode,
    /// Where two views of one fact in what is stored disagree (WIT `provision-report.warnings`),
    /// in a stable order; empty when they agree.
    pub warnings: Vec<Warning>,
}

/// Two views of one fact in Krypton's answer that disagree (WIT `report-warning`): the bundle is
/// stored (it may be what the service meant), and the disagreement is reported. Carries
/// identifiers only, never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The check, a plain name (`[a-z0-9-]`), e.g. `device-id-vs-certificate-cn`.
    pub check: String,
    /// What disagrees and what it means, in one line, naming both values.
    pub message: String,
}

/// A request parameter a target needs (WIT `parameter-info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterInfo {
    /// The key inside `requestParameters`, e.g. `endpoint`.
    pub name: &'static str,
    /// What it is, in one line.
    pub description: &'static str,
    /// A value that works against a test Krypton.
    pub example: &'static str,
}

/// Why a run failed (WIT `provision-error`). Messages never contain secret values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Refused before anything was sent (bad parameters, bad endpoint).
    InvalidRequest(String),
    /// A target or mode this component does not implement.
    Unsupported(String),
    /// Krypton could not be reached.
    Transport(TransportError),
    /// A read timed out, or the operation deadline passed.
    Timeout(String),
    /// Krypton answered an HTTP error status or a redirect.
    HttpStatus {
        /// The HTTP status.
        status: u16,
        /// Krypton's error `code`, when the body has one.
        code: Option<String>,
        /// Krypton's error `message`, when the body has one.
        message: Option<String>,
        /// At most the first 512 bytes of the body, as text.
        body_excerpt: String,
        /// The request as it went on the wire, with the attempts made.
        request: String,
    },
    /// An answer (or a stored bundle) that cannot be used.
    InvalidResponse {
        /// The field at fault (Krypton's name), or `body`.
        field: String,
        /// Why, never echoing the value.
        reason: String,
        /// `true` when the value came from the secret store (a bundle checked again before it
        /// is reported or rendered), `false` when Krypton sent it in this call.
        stored: bool,
    },
    /// The Azure DPS registration ended without an assignment.
    RegistrationFailed {
        /// The DPS `operationId`.
        operation_id: String,
        /// The final status DPS reported (`failed`, `disabled`, ...).
        status: String,
    },
    /// The secret store failed, or holds nothing usable.
    Storage(String),
    /// SIM-authenticated mode failed before a provisioning request could be signed.
    Sim(SimError),
}

/// What kind of transport failure happened (WIT `transport-kind`): the contract's own
/// mirror, which the front ends render.
pub use krypton_contract::model::TransportKind;

/// A transport failure (WIT `transport-error`): what was tried, what happened, what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    /// What kind of failure.
    pub kind: TransportKind,
    /// The request as it went on the wire: `POST https://krypton.soracom.io:8036/v1/...`.
    pub request: String,
    /// What happened, in plain words, naming the host and port tried.
    pub message: String,
    /// What to do about it, naming request fields and parameters (never a host's flags).
    pub hint: Option<String>,
    /// Attempts made, the first included.
    pub attempts: u32,
}

/// Advice for a timeout: SORACOM Arc routes only the destinations in the peer's
/// `AllowedIPs` (wg-quick(8)), so a call to a Krypton address outside them leaves without the
/// SIM's identity and goes unanswered.
pub const TIMEOUT_HINT: &str = "on SORACOM Arc a request to Krypton times out when Krypton's \
address is not inside the WireGuard AllowedIPs; otherwise raise the request's deadline-ms";
/// Advice for HTTP 401 and 403: Krypton answers only SIMs whose group enables it, and only
/// over their SORACOM Air session or Arc tunnel (SORACOM Krypton documentation).
pub const FORBIDDEN_HINT: &str = "check that Krypton is enabled for this SIM's group and that \
the request leaves over SORACOM Air or Arc";
/// Advice for a DPS registration that ended without an assignment (Azure IoT Hub DPS
/// documentation: the enrollment decides the assignment).
pub const REGISTRATION_HINT: &str = "check the DPS enrollment and the Krypton Azure IoT \
configuration of the SIM's group";
/// Advice for a stored bundle that breaks its rules: only a forced run replaces it.
pub const STORED_BUNDLE_HINT: &str = "provision the target again with force to replace the bundle";

/// A failed call with its advice (WIT `failure`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub error: Error,
    /// What to do next, naming request fields (`force`, `deadline-ms`) and request parameters
    /// (`endpoint`), never a host's command-line flags; `None` when there is no advice.
    pub hint: Option<String>,
}

/// SORACOM's two bases of SIM-authenticated mode (SORACOM's open-source Krypton clients,
/// `soracom/krypton-client-go` `krypton/client.go`, `soracom/soracom-krypton-client-for-java`
/// `ProvisioningApiEndpoint.java`), named in advice.
const SIM_ENDPOINTS: &str =
    "https://g.api.soracom.io for global coverage, https://api.soracom.io for Japan coverage";

/// Advice for a refusal by the Keys API or by a provisioning call in SIM mode (HTTP 401 or 403,
/// a key agreement that did not verify): SORACOM's documentation lists the plans that support
/// SIM authentication, and Krypton answers only SIMs whose group enables it.
pub const SIM_REFUSED_HINT: &str = "check that the SIM's plan supports SIM authentication, that Krypton is enabled in the SIM's group, and that the endpoint matches the SIM's coverage (https://g.api.soracom.io for global coverage, https://api.soracom.io for Japan coverage)";

/// Advice for a challenge the USIM rejected (MAC failure, 3GPP TS 33.102 §6.3.3): the
/// challenge did not come from the SIM's home network.
pub const SIM_MAC_FAILURE_HINT: &str = "the SIM did not accept the Keys API's challenge: the endpoint does not serve this SIM (check the coverage: https://g.api.soracom.io for global, https://api.soracom.io for Japan), or the SIM is not a SORACOM SIM";

/// Advice for a host without SIM access.
pub const SIM_UNAVAILABLE_HINT: &str = "SIM-authenticated mode needs the SIM: configure the host's uicc backend (a modem, a PC/SC card reader or a software SIM), or use network mode over SORACOM Air or Arc";

/// Advice for a uicc backend that failed or found no SIM.
pub const SIM_DEVICE_HINT: &str = "check the host's uicc backend: that the SIM is inserted, the modem or reader is connected and answers, and no other program holds it";

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let hint = error.hint();
        Failure { error, hint }
    }
}

impl Failure {
    /// The error with the advice for `mode` ([`Error::hint_in`]).
    pub fn in_mode(error: Error, mode: AuthMode) -> Self {
        let hint = error.hint_in(mode);
        Failure { error, hint }
    }
}

impl Error {
    /// What to do about this error, by kind: a transport error's own hint (it depends on the
    /// endpoint and the failure), [`TIMEOUT_HINT`], [`FORBIDDEN_HINT`] for HTTP 401 and 403,
    /// [`REGISTRATION_HINT`], [`STORED_BUNDLE_HINT`] for a stored value; `None` otherwise.
    pub fn hint(&self) -> Option<String> {
        self.hint_in(AuthMode::Network)
    }

    /// What to do about this error in `mode`. Network mode: see [`Error::hint`]. SIM mode
    /// reaches SORACOM's API over any network, so the advice about SORACOM Air, Arc and
    /// Krypton's port 8036 gives way to advice about the SIM, its plan and group, the uicc
    /// backend and the coverage's endpoint; a [`Error::Sim`] has its own advice in either mode.
    pub fn hint_in(&self, mode: AuthMode) -> Option<String> {
        let sim_route = || {
            format!(
                "check the endpoint ({SIM_ENDPOINTS}) and this device's route to it; SIM \
                 authentication works over any network"
            )
        };
        match (mode, self) {
            (_, Error::Sim(SimError::Uicc(UiccError::Unavailable(_)))) => {
                return Some(SIM_UNAVAILABLE_HINT.to_string());
            }
            (_, Error::Sim(SimError::Uicc(UiccError::MacFailure))) => {
                return Some(SIM_MAC_FAILURE_HINT.to_string());
            }
            (_, Error::Sim(SimError::Uicc(_))) => return Some(SIM_DEVICE_HINT.to_string()),
            (_, Error::Sim(SimError::KeyAgreement(_))) => {
                return Some(SIM_REFUSED_HINT.to_string());
            }
            (AuthMode::Sim, Error::Transport(t)) => {
                return Some(match t.kind {
                    TransportKind::UntrustedCertificate | TransportKind::Denied => {
                        t.hint.clone().unwrap_or_else(sim_route)
                    }
                    _ => sim_route(),
                });
            }
            (AuthMode::Sim, Error::Timeout(_)) => {
                return Some(format!(
                    "{}; or raise the request's deadline-ms",
                    sim_route()
                ));
            }
            (
                AuthMode::Sim,
                Error::HttpStatus {
                    status: 401 | 403, ..
                },
            ) => return Some(SIM_REFUSED_HINT.to_string()),
            _ => {}
        }
        match self {
            Error::Transport(t) => t.hint.clone(),
            Error::Timeout(_) => Some(TIMEOUT_HINT.to_string()),
            Error::HttpStatus {
                status: 401 | 403, ..
            } => Some(FORBIDDEN_HINT.to_string()),
            Error::RegistrationFailed { .. } => Some(REGISTRATION_HINT.to_string()),
            Error::InvalidResponse { stored: true, .. } => Some(STORED_BUNDLE_HINT.to_string()),
            _ => None,
        }
    }

    /// An [`Error::InvalidResponse`] for `field`.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Error::InvalidResponse {
            field: field.to_string(),
            reason: reason.into(),
            stored: false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::Transport(e) => write!(f, "transport error: {}", e.message),
            Error::Timeout(m) => write!(f, "timeout: {m}"),
            Error::HttpStatus {
                status,
                code,
                message,
                request,
                ..
            } => {
                write!(f, "{request} answered HTTP {status}")?;
                if let Some(code) = code {
                    write!(f, " ({code})")?;
                }
                if let Some(message) = message {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Error::InvalidResponse { field, reason, .. } => {
                write!(f, "invalid response: field `{field}`: {reason}")
            }
            Error::RegistrationFailed {
                operation_id,
                status,
            } => write!(
                f,
                "Azure DPS registration {operation_id} ended with status `{status}`"
            ),
            Error::Storage(m) => write!(f, "secret store: {m}"),
            Error::Sim(SimError::KeyAgreement(m)) => write!(f, "SIM authentication: {m}"),
            Error::Sim(SimError::Uicc(e)) => write!(f, "SIM authentication: {e}"),
        }
    }
}

impl fmt::Display for UiccError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UiccError::Unavailable(m) => write!(f, "the host has no SIM access: {m}"),
            UiccError::NoSim(m) => write!(f, "no SIM: {m}"),
            UiccError::Io(m) => write!(f, "the SIM could not be reached: {m}"),
            UiccError::StatusWord { sw1, sw2, command } => {
                write!(
                    f,
                    "the SIM answered {command} with status {sw1:02X} {sw2:02X}"
                )
            }
            UiccError::MacFailure => write!(
                f,
                "the SIM rejected the challenge (MAC failure, status 98 62): it did not come \
                 from the SIM's home network"
            ),
        }
    }
}

/// A secret string (a private key). `Debug` never shows the value and there is no `Display`,
/// so it cannot reach a log line or an error by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The secret value, for storing and exporting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One file to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportFile {
    /// File name, no directory.
    pub name: String,
    /// The bytes to write.
    pub contents: Vec<u8>,
    /// Owner-only (0600) when true.
    pub secret: bool,
    /// How the file differs from what Krypton sent, in plain words, when it does (WIT
    /// `export-file.converted`): today only a private key converted to a form OpenSSL loads
    /// (`crate::types::validate::exportable_key`).
    pub converted: Option<String>,
    /// The system account the file's consumer reads it as (WIT `export-file.owner`), e.g.
    /// `aziotks`; `None` when whoever runs the consumer reads it.
    pub owner: Option<&'static str>,
}

impl ExportFile {
    /// A file named `name` (no directory) holding `contents`, owner-only when `secret`, as
    /// Krypton sent it (`converted: None`), read by whoever runs its consumer (`owner: None`).
    pub fn new(name: &str, contents: impl Into<Vec<u8>>, secret: bool) -> Self {
        ExportFile {
            name: name.to_string(),
            contents: contents.into(),
            secret,
            converted: None,
            owner: None,
        }
    }
}

/// A base URL the component calls when the host names none (WIT `default-endpoint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultEndpoint {
    /// The mode it serves.
    pub mode: AuthMode,
    /// The SORACOM coverage it serves (`global`, `japan`); `None` when the mode has one URL
    /// whatever the coverage.
    pub coverage: Option<&'static str>,
    /// The base URL, an `https` origin.
    pub url: &'static str,
}

/// One routed entry of a tunnel client's configuration (WIT `route-entry`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    /// Where it is in the file, e.g. `additionalAllowedIPs[0]`.
    pub location: String,
    /// The entry as written (trimmed), or the JSON text of an entry that is not a string.
    pub entry: String,
    /// Why it cannot be a route at all (`not a string`); `None` for the host to check.
    pub problem: Option<String>,
}
