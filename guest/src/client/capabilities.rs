//! What the layers above need from their environment ([`Capabilities`]), and the shapes of one
//! HTTP exchange.

use super::endpoint::{Endpoint, Method};
use crate::types::model::{AuthOutcome, Error, Timeouts, UiccError};

/// One HTTP request to Krypton.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: Method,
    /// Path and query below the endpoint, starting with `/`.
    pub path: String,
    /// The JSON body, if any (sent with its `Content-Length`).
    pub body: Option<Vec<u8>>,
    /// Headers beyond the ones every request carries (`accept`, `user-agent`, and with a
    /// body `content-type` and `content-length`): in SIM mode the three `x-soracom-*`
    /// signature headers. Names lowercase.
    pub headers: Vec<(String, String)>,
}

/// A complete HTTP response (the body was read to its framed end).
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// Header names lowercase.
    pub headers: Vec<(String, String)>,
    /// The whole body, at most the `max_body` the caller gave.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A failed send: the error, and whether sending again may succeed (connection refused or
/// reset, a timeout) or cannot (TLS certificate rejected, refused by the host's allow-list,
/// an oversized body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendFailure {
    /// What happened.
    pub error: Error,
    /// Whether another attempt may succeed.
    pub transient: bool,
}

/// What the operations need from their environment. In the component these are `wasi:http`,
/// `wasi:clocks`, `wasi:random`, stderr and the `secret-store` import; in unit tests, fakes.
pub trait Capabilities {
    /// Send one request and read the whole response body (at most `max_body` bytes), giving
    /// up with [`Error::Timeout`] once `total_ms` have passed, however the server paces it.
    fn send(
        &mut self,
        endpoint: &Endpoint,
        request: &HttpRequest,
        timeouts: Timeouts,
        total_ms: u64,
        max_body: usize,
    ) -> Result<HttpResponse, SendFailure>;
    /// Monotonic time, ms.
    fn monotonic_ms(&self) -> u64;
    /// Wall-clock time, ms since the Unix epoch.
    fn unix_ms(&self) -> u64;
    /// Block for `ms` milliseconds.
    fn sleep_ms(&mut self, ms: u64);
    /// A random number (backoff jitter; not for keys).
    fn random_u64(&mut self) -> u64;
    /// One progress line for the operator. Never called with a secret.
    fn log(&mut self, line: &str);
    /// The value stored under `name`, `None` when there is none. Errors: [`Error::Storage`].
    fn store_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Store `value` under `name` as one unit, replacing what was there. Errors:
    /// [`Error::Storage`].
    fn store_put(&mut self, name: &str, value: &[u8]) -> Result<(), Error>;
    /// Remove a stored value; `true` when there was one.
    fn store_delete(&mut self, name: &str) -> Result<bool, Error>;
    /// The SIM's IMSI (6 to 15 decimal digits, ITU-T E.212), through the host's `uicc`.
    /// Errors: the host's [`UiccError`] (`unavailable` on a host without SIM access).
    fn read_imsi(&mut self) -> Result<String, UiccError>;
    /// AUTHENTICATE in the 3G security context with `rand` and `autn` (16 bytes each; 3GPP
    /// TS 31.102 §7.1.2.1): RES, CK and IK, or AUTS on a synchronisation failure.
    /// Errors: the host's [`UiccError`] (`mac-failure` when the USIM rejects the challenge).
    fn authenticate(&mut self, rand: &[u8], autn: &[u8]) -> Result<AuthOutcome, UiccError>;
}
