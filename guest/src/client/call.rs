//! The HTTP side of every Krypton operation, written against [`Capabilities`] so it runs
//! natively in unit tests and inside the component with `wasi:http`, `wasi:clocks`,
//! `wasi:random` and the `secret-store` import. The operations above use [`Run::call`].
//!
//! Policy (every wait is bounded):
//! * per-request connect / first-byte / between-bytes timeouts, each clamped to what is left
//!   of the whole-operation deadline;
//! * retries only where repeating is safe: connection failures and single-request timeouts,
//!   HTTP 408, 429 and 5xx; exponential backoff with full jitter, or `Retry-After` (seconds or
//!   an HTTP date, RFC 9110 §10.2.3) capped at [`MAX_RETRY_AFTER_MS`]; never past the deadline;
//!   the final error says how many attempts were made;
//! * redirects are never followed: a 3xx is [`Error::HttpStatus`] naming the target host, and
//!   no body or identity goes there;
//! * bodies are read to their framed end with a cap of [`MAX_BODY_BYTES`].
//!
//! Nothing is written to the store until a response has been fully validated: a failed,
//! partial or invalid response leaves the previous bundle untouched.

use super::capabilities::{Capabilities, HttpRequest, HttpResponse};
use super::endpoint::{Endpoint, Method};
use super::errors::http_status_error;
use super::signing::{SimKey, signature_headers, sim_body};
use crate::types::model::{Error, ProvisionRequest, RetryPolicy, Timeouts};

/// Largest response body read, bytes. Krypton bundles are a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest `Retry-After` honoured, ms.
pub const MAX_RETRY_AFTER_MS: u64 = 300_000;

/// The whole-operation deadline.
pub struct Deadline {
    start_ms: u64,
    /// The whole operation's budget, ms (the request's `deadline-ms`).
    pub budget_ms: u64,
}

impl Deadline {
    /// What is left of the deadline, ms (0 once it has passed).
    pub fn remaining(&self, caps: &dyn Capabilities) -> u64 {
        let elapsed = caps.monotonic_ms().saturating_sub(self.start_ms);
        self.budget_ms.saturating_sub(elapsed)
    }

    /// Per-request timeouts, none longer than what is left of the deadline.
    /// Errors: [`Error::Timeout`] when nothing is left, naming `what` was about to happen.
    fn clamp(&self, caps: &dyn Capabilities, t: Timeouts, what: &str) -> Result<Timeouts, Error> {
        let left = self.remaining(caps);
        if left == 0 {
            return Err(Error::Timeout(format!(
                "the operation deadline of {} ms passed before {what}",
                self.budget_ms
            )));
        }
        let left = u32::try_from(left).unwrap_or(u32::MAX);
        Ok(Timeouts {
            connect_ms: t.connect_ms.min(left),
            first_byte_ms: t.first_byte_ms.min(left),
            between_bytes_ms: t.between_bytes_ms.min(left),
        })
    }
}

/// Everything one run needs, parsed and checked once.
pub struct Run<'a> {
    /// The environment: HTTP, clocks, random, log and store.
    pub caps: &'a mut dyn Capabilities,
    endpoint: Endpoint,
    timeouts: Timeouts,
    retry: RetryPolicy,
    /// The whole-operation deadline.
    pub deadline: Deadline,
    /// Wait between polls of a long-running operation when Krypton sends no `Retry-After`, ms.
    pub poll_interval_ms: u64,
    /// The Keys API session every call is signed with, in SIM mode.
    signer: Option<SimKey>,
    /// Whether a signed call got a 2xx answer with the current key.
    key_accepted: bool,
}

/// One exchange's final answer ([`Run::exchange`]).
pub struct Exchange {
    /// The answer, whatever its status.
    pub response: HttpResponse,
    /// The request as it went on the wire (`POST https://…/v1/keys`).
    pub what: String,
    /// The same, with the attempts made when there was more than one, for error texts.
    pub request: String,
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date, as ms from `now_unix_ms`,
/// capped at [`MAX_RETRY_AFTER_MS`]. A malformed value is `None` (the caller's backoff applies).
pub fn retry_after_ms(response: &HttpResponse, now_unix_ms: u64) -> Option<u64> {
    let value = response.header("retry-after")?.trim();
    let ms = if let Ok(secs) = value.parse::<u64>() {
        secs.saturating_mul(1000)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
        at_ms.saturating_sub(now_unix_ms)
    };
    Some(ms.min(MAX_RETRY_AFTER_MS))
}

/// Statuses worth another attempt: 408 Request Timeout, 429 Too Many Requests, 5xx.
fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

impl<'a> Run<'a> {
    /// Start a run: parse the endpoint and set the deadline clock.
    /// Errors: [`Error::InvalidRequest`] for an endpoint [`Endpoint::parse`] refuses.
    pub fn new(caps: &'a mut dyn Capabilities, request: &ProvisionRequest) -> Result<Self, Error> {
        let endpoint = Endpoint::parse(&request.endpoint)?;
        let start_ms = caps.monotonic_ms();
        Ok(Run {
            caps,
            endpoint,
            timeouts: request.timeouts,
            retry: request.retry,
            deadline: Deadline {
                start_ms,
                budget_ms: u64::from(request.deadline_ms),
            },
            poll_interval_ms: u64::from(request.poll_interval_ms),
            signer: None,
            key_accepted: false,
        })
    }

    /// Backoff with full jitter before attempt `attempt + 1`, ms.
    fn backoff_ms(&mut self, attempt: u32) -> u64 {
        let exp = u64::from(self.retry.base_delay_ms).saturating_mul(1u64 << attempt.min(30));
        let cap = exp.min(u64::from(self.retry.max_delay_ms));
        if cap == 0 {
            0
        } else {
            self.caps.random_u64() % (cap + 1)
        }
    }

    /// Sign every later call with `key` (SIM-authenticated mode): each body becomes the SIM-mode
    /// body ([`sim_body`]: `keyId` first) and carries the three `x-soracom-*` headers, the
    /// timestamp taken again for every attempt. Every SIM-mode call is a `POST`.
    pub fn sign_with(&mut self, key: SimKey) {
        self.signer = Some(key);
        self.key_accepted = false;
    }

    /// The origin of this run's endpoint ([`Endpoint::origin`]): in SIM mode, the Keys API a
    /// session is agreed with and bound to.
    pub fn origin(&self) -> String {
        self.endpoint.origin()
    }

    /// The Keys API session this run signs with, if it is a SIM-mode run.
    pub fn sim_key(&self) -> Option<&SimKey> {
        self.signer.as_ref()
    }

    /// Whether a signed call of this run got a 2xx answer with the current key (then a later
    /// 401 is not about the key having expired before the run).
    pub fn key_accepted(&self) -> bool {
        self.key_accepted
    }

    /// One exchange with the retry policy, without judging the final status: the Keys API
    /// answers its challenge with 200 or 401, so its caller reads the status itself.
    /// `max_body` bounds the answer, bytes. Nothing is signed. The returned `request` is the
    /// request line with the attempts made, for error texts.
    ///
    /// Errors: [`Error::Transport`] or [`Error::Timeout`] after the last attempt.
    pub fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        max_body: usize,
    ) -> Result<Exchange, Error> {
        self.attempts(method, path, body, max_body, None)
    }

    fn attempts(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        max_body: usize,
        signer: Option<&SimKey>,
    ) -> Result<Exchange, Error> {
        let what = self.endpoint.request_line(method, path);
        let mut request = HttpRequest {
            method,
            path: path.to_string(),
            body,
            headers: Vec::new(),
        };
        let mut attempt = 1u32;
        let outcome = loop {
            let timeouts = self.deadline.clamp(self.caps, self.timeouts, &what)?;
            if let Some(key) = signer {
                // The timestamp is the time of this attempt: a retry after a backoff still
                // falls inside the server's window.
                let body = request.body.as_deref().unwrap_or_default();
                request.headers = signature_headers(body, self.caps.unix_ms(), &key.ck);
            }
            let started = self.caps.monotonic_ms();
            let total_ms = self.deadline.remaining(self.caps);
            let outcome = self
                .caps
                .send(&self.endpoint, &request, timeouts, total_ms, max_body);
            let took = self.caps.monotonic_ms().saturating_sub(started);
            let (retry, hint, summary) = match &outcome {
                Ok(r) => {
                    self.caps
                        .log(&format!("{what} -> {} ({took} ms)", r.status));
                    (
                        retryable_status(r.status),
                        retry_after_ms(r, self.caps.unix_ms()),
                        format!("HTTP {}", r.status),
                    )
                }
                Err(f) => {
                    self.caps
                        .log(&format!("{what} failed after {took} ms: {}", f.error));
                    (f.transient, None, f.error.to_string())
                }
            };
            if !retry || attempt >= self.retry.max_attempts.max(1) {
                break outcome;
            }
            let wait = match hint {
                Some(ms) => ms,
                None => self.backoff_ms(attempt - 1),
            };
            if wait >= self.deadline.remaining(self.caps) {
                self.caps.log(&format!(
                    "{what}: not retrying: waiting {wait} ms would pass the operation deadline"
                ));
                break outcome;
            }
            self.caps.log(&format!(
                "{what}: attempt {attempt} failed ({summary}); retrying in {wait} ms"
            ));
            self.caps.sleep_ms(wait);
            attempt += 1;
        };
        let tried = if attempt > 1 {
            format!(" (after {attempt} attempts)")
        } else {
            String::new()
        };
        let response = outcome.map_err(|f| match f.error {
            Error::Transport(mut e) => {
                e.attempts = attempt;
                Error::Transport(e)
            }
            Error::Timeout(m) => Error::Timeout(format!("{m}{tried}")),
            other => other,
        })?;
        Ok(Exchange {
            response,
            what,
            request: format!("{}{tried}", self.endpoint.request_line(method, path)),
        })
    }

    /// One Krypton call with the retry policy. A 2xx response is returned; 3xx and >= 400
    /// become [`Error::HttpStatus`]; transport failures [`Error::Transport`] or
    /// [`Error::Timeout`]. When more than one attempt was made, the error says so. In a
    /// SIM-mode run ([`Run::sign_with`]) the body is the SIM-mode body and the request is
    /// signed.
    pub fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, Error> {
        let body = match &self.signer {
            Some(key) => Some(sim_body(&key.key_id, body.as_deref().unwrap_or(b"{}"))?),
            None => body,
        };
        let signer = self.signer.take();
        let exchange = self.attempts(method, path, body, MAX_BODY_BYTES, signer.as_ref());
        self.signer = signer;
        let Exchange {
            response,
            what,
            request,
        } = exchange?;
        if self.signer.is_some() && (200..=299).contains(&response.status) {
            self.key_accepted = true;
        }
        match response.status {
            200..=299 => Ok(response),
            300..=399 => {
                let location = response.header("location").unwrap_or("(no Location)");
                let target_host = location
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| u.host().map(str::to_string))
                    .unwrap_or_else(|| location.to_string());
                Err(Error::HttpStatus {
                    status: response.status,
                    code: None,
                    message: Some(format!(
                        "redirect to `{target_host}` refused: Krypton calls never follow redirects"
                    )),
                    body_excerpt: String::new(),
                    request: what,
                })
            }
            status => Err(http_status_error(status, &response.body, request)),
        }
    }
}
