//! [`OutboundCall`]: the `wasi:http` hooks of one call (its request budget in front of the
//! [`OutboundPolicy`]), and the response body with the between-bytes timeout.

use super::body::*;
use super::policy::*;
use super::*;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiHttpHooks};

use crate::sandbox::LimitTrip;

/// The `wasi:http` hooks of one call: an [`OutboundPolicy`] plus the call's request count.
/// A request past [`MAX_REQUESTS_PER_CALL`], or with more than [`MAX_REQUEST_HEADERS`] fields or
/// [`MAX_REQUEST_HEADER_BYTES`] of headers, is refused without a connection, and the limit is
/// recorded in the call's [`LimitTrip`] so that the runtime stops the call when the component
/// gets control back.
pub struct OutboundCall {
    policy: OutboundPolicy,
    sent: u32,
    trip: LimitTrip,
}

impl OutboundCall {
    /// The hooks of one call under `policy`; limits are reported to `trip`.
    pub fn new(policy: OutboundPolicy, trip: LimitTrip) -> Self {
        OutboundCall {
            policy,
            sent: 0,
            trip,
        }
    }

    /// Requests this call has asked to send so far, refused ones included.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// The limit `request` breaks, if any, with the error the component gets for it.
    pub(super) fn over_limit<B>(
        &mut self,
        request: &http::Request<B>,
    ) -> Option<(String, HttpError)> {
        self.sent = self.sent.saturating_add(1);
        if self.sent > MAX_REQUESTS_PER_CALL {
            return Some((
                format!("its limit of {MAX_REQUESTS_PER_CALL} outgoing requests per call"),
                HttpError::ConnectionLimitReached,
            ));
        }
        let headers = request.headers();
        if headers.len() > MAX_REQUEST_HEADERS {
            return Some((
                format!(
                    "its limit of {MAX_REQUEST_HEADERS} header fields per request (it sent {})",
                    headers.len()
                ),
                HttpError::HttpRequestHeaderSectionSize(None),
            ));
        }
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if bytes > MAX_REQUEST_HEADER_BYTES {
            return Some((
                format!(
                    "its limit of {MAX_REQUEST_HEADER_BYTES} header bytes per request (it sent {bytes})"
                ),
                HttpError::HttpRequestHeaderSectionSize(u32::try_from(bytes).ok()),
            ));
        }
        None
    }
}

impl WasiHttpHooks for OutboundCall {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<RequestOptions>,
        _fut: BoxFuture<Result<(), HttpError>>,
    ) -> BoxFuture<SendResult> {
        if let Some((limit, error)) = self.over_limit(&request) {
            tracing::warn!(limit = %limit, "outbound request refused: the component exceeded a sandbox limit");
            self.trip.trip(limit);
            return Box::new(async move { Err(error) });
        }
        let policy = self.policy.clone();
        Box::new(async move { policy.send(request, options).await })
    }
}
