//! The model the renderers read: plain Rust mirrors of the WIT types of
//! `soracom:krypton/types` and `soracom:krypton/uicc` (`wit/krypton.wit`), field for field,
//! named as the generated bindings name them.
//!
//! Only what a report or an error is rendered from is mirrored: a [`ProvisionReport`] has no
//! `target` (a renderer names the target by its `target-info.name`) and no
//! `mints-credentials`. Each front end converts its generated types into these with `From`.

/// How the device proved itself to Krypton (WIT `auth-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Over a SORACOM Air or Arc session, without credentials.
    Network,
    /// SIM authentication (3GPP AKA with the Keys API).
    Sim,
}

impl AuthMode {
    /// The WIT enum case, as `--json` output and text name the mode: `network` or `sim`.
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Network => "network",
            AuthMode::Sim => "sim",
        }
    }
}

/// Non-secret facts about a stored X.509 certificate (WIT `certificate-summary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// SHA-256 over the DER certificate, 64 lowercase hex digits.
    pub sha256_fingerprint: String,
    /// Subject as an RFC 4514 string.
    pub subject: String,
    /// Issuer as an RFC 4514 string.
    pub issuer: String,
    /// Validity start, seconds since the Unix epoch.
    pub not_before: i64,
    /// Validity end, seconds since the Unix epoch.
    pub not_after: i64,
}

/// What a provisioning run did or what is stored (WIT `provision-report`, without `target`
/// and `mints-credentials`); never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionReport {
    /// Secret-store name of the bundle.
    pub bundle: String,
    /// `true` when a valid stored bundle was reported instead of calling Krypton.
    pub reused: bool,
    /// When the bundle was obtained from Krypton, milliseconds since the Unix epoch.
    pub obtained_at_ms: u64,
    /// Non-secret identifiers in Krypton's own field names, in the component's order.
    pub identifiers: Vec<(String, String)>,
    /// The device certificate, for targets that issue one.
    pub certificate: Option<CertificateSummary>,
    /// Non-secret sizes of what is stored (e.g. `bytes`), in the component's order.
    pub sizes: Vec<(String, u64)>,
    /// The mode the bundle was obtained in.
    pub mode: AuthMode,
    /// Where two views of one fact in the bundle disagree, in the component's order.
    pub warnings: Vec<ReportWarning>,
}

/// Two views of one fact in what Krypton answered that disagree (WIT `report-warning`), e.g.
/// an Azure `deviceId` that is not its certificate's subject CN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportWarning {
    /// The check that found it, a plain name, e.g. `device-id-vs-certificate-cn`.
    pub check: String,
    /// What disagrees and what it means, in one line.
    pub message: String,
}

/// What kind of transport failure happened (WIT `transport-kind`), so that a front end can act
/// on it (and say what to do) without reading text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The host name does not exist (DNS NXDOMAIN). Not retried.
    NameNotFound,
    /// The resolver failed (no answer, a server failure); may be transient.
    NameResolutionFailed,
    /// Nothing listens on that address and port.
    ConnectionRefused,
    /// No connection within the connect timeout.
    ConnectionTimeout,
    /// The address cannot be reached (no route).
    Unreachable,
    /// The server's TLS certificate is not trusted (unknown issuer, expired, other name).
    UntrustedCertificate,
    /// Another TLS failure (handshake, protocol version, an alert).
    TlsFailure,
    /// The server speaks another protocol (plain HTTP against TLS or the reverse). Not retried.
    ProtocolMismatch,
    /// The connection broke after it was made (reset, closed early, a truncated body).
    ConnectionLost,
    /// The runtime refused the request before it left (not on its allow-list).
    Denied,
    /// Anything else.
    Other,
}

impl TransportKind {
    /// The WIT enum case, as `--json` output names it (`connection-refused`).
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::NameNotFound => "name-not-found",
            TransportKind::NameResolutionFailed => "name-resolution-failed",
            TransportKind::ConnectionRefused => "connection-refused",
            TransportKind::ConnectionTimeout => "connection-timeout",
            TransportKind::Unreachable => "unreachable",
            TransportKind::UntrustedCertificate => "untrusted-certificate",
            TransportKind::TlsFailure => "tls-failure",
            TransportKind::ProtocolMismatch => "protocol-mismatch",
            TransportKind::ConnectionLost => "connection-lost",
            TransportKind::Denied => "denied",
            TransportKind::Other => "other",
        }
    }
}

/// A transport failure (WIT `transport-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// What kind of failure.
    pub kind: TransportKind,
    /// The request as it went on the wire (`POST https://host:port/path`).
    pub request: String,
    /// What happened, in plain words.
    pub message: String,
    /// Attempts made, the first included.
    pub attempts: u32,
}

/// An HTTP error status from Krypton (WIT `http-status-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpStatusError {
    /// The HTTP status code.
    pub status: u16,
    /// Krypton's `code`, when its body had one.
    pub code: Option<String>,
    /// Krypton's `message`, when its body had one.
    pub message: Option<String>,
    /// At most 512 bytes of the body as lossy UTF-8.
    pub body_excerpt: String,
    /// The method and path that failed.
    pub request: String,
}

/// An answer or a stored bundle that cannot be used (WIT `invalid-response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidResponse {
    /// The JSON field at fault, or `body`.
    pub field: String,
    /// Why, without secret values.
    pub reason: String,
    /// `true` when the value came from the secret store, `false` when from Krypton.
    pub stored: bool,
}

/// A DPS registration that ended unassigned (WIT `registration-failure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationFailure {
    /// The DPS operation id.
    pub operation_id: String,
    /// The DPS status Krypton reported (`failed`, `disabled`, ...).
    pub status: String,
}

/// A status word of an APDU that failed (WIT `status-word`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusWord {
    /// First byte of the status word.
    pub sw1: u8,
    /// Second byte of the status word.
    pub sw2: u8,
    /// The command that got it, e.g. `AUTHENTICATE`.
    pub command: String,
}

/// Why a UICC call failed (WIT `uicc-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiccError {
    /// No SIM access on this runtime; the text says what to configure.
    Unavailable(String),
    /// The modem or reader holds no SIM.
    NoSim(String),
    /// The reader or modem failed.
    Io(String),
    /// The card answered a status word other than success.
    StatusWord(StatusWord),
    /// The USIM rejected the challenge (status `98 62`).
    MacFailure,
}

impl UiccError {
    /// The WIT case, as `--json` output names it (`uiccError`): `unavailable`, `no-sim`,
    /// `io`, `status-word` or `mac-failure`.
    pub fn name(&self) -> &'static str {
        match self {
            UiccError::Unavailable(_) => "unavailable",
            UiccError::NoSim(_) => "no-sim",
            UiccError::Io(_) => "io",
            UiccError::StatusWord(_) => "status-word",
            UiccError::MacFailure => "mac-failure",
        }
    }
}

/// Why SIM-authenticated mode failed (WIT `sim-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// The runtime's `uicc` answered an error.
    Uicc(UiccError),
    /// The Keys API refused the key agreement or the verification.
    KeyAgreement(String),
}

/// Why a call failed (WIT `provision-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionError {
    /// Refused before anything was sent.
    InvalidRequest(String),
    /// Not implemented by the component.
    Unsupported(String),
    /// Connection, DNS, TLS or protocol failure.
    Transport(TransportError),
    /// A deadline passed.
    Timeout(String),
    /// Krypton answered with an error status.
    HttpStatus(HttpStatusError),
    /// Krypton answered 200 with something unusable, or a stored bundle is unusable.
    InvalidResponse(InvalidResponse),
    /// The Azure DPS registration ended without an assignment.
    RegistrationFailed(RegistrationFailure),
    /// The secret store failed.
    Storage(String),
    /// SIM-authenticated mode failed.
    Sim(SimError),
}

/// A failed call: what went wrong and the component's advice (WIT `failure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub error: ProvisionError,
    /// What to do next, in the component's words; `None` when it gives no advice.
    pub hint: Option<String>,
}

impl From<ProvisionError> for Failure {
    /// A failure without advice.
    fn from(error: ProvisionError) -> Self {
        Failure { error, hint: None }
    }
}
