//! Layer 2, the HTTP policy: one Krypton call with its deadline, timeouts, retries and errors,
//! written against [`Capabilities`] so that it runs natively in unit tests and inside the
//! component over WASI.
//!
//! Files, lowest first (each uses only the ones before it and [`crate::types`]):
//! `endpoint` (the base URL, the request line), `capabilities` (the environment's trait: HTTP,
//! clocks, store and the SIM; the HTTP shapes), `errors` (transport failures and HTTP error
//! statuses in words), `signing` (SIM mode's body and request signature), `call` (the deadline
//! and [`Run::call`] with its retry policy, signing in SIM mode).

pub mod endpoint;

pub mod capabilities;
pub mod errors;
pub mod signing;

pub mod call;

pub use call::{Deadline, Exchange, MAX_BODY_BYTES, MAX_RETRY_AFTER_MS, Run, retry_after_ms};
pub use capabilities::{Capabilities, HttpRequest, HttpResponse, SendFailure};
pub use endpoint::{DEFAULT_ENDPOINTS, Endpoint, KRYPTON_BASE_URL, KRYPTON_PORT, Method};
pub use errors::{
    DNS_NAME_NOT_FOUND, MAX_EXCERPT_BYTES, http_status_error, transient, transport_failure,
};
pub use signing::{SimKey, signature, sim_body};
