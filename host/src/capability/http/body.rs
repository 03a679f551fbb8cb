//! The types of one request's exchange: the connection trait, the sender's result, and the
//! response body with the between-bytes timeout.

use super::errors::*;
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use wasmtime_wasi_http::Error as HttpError;

pub(super) type BoxFuture<T> = Box<dyn Future<Output = T> + Send>;

/// A TCP or TLS stream.
pub(super) trait Io:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}
pub(super) type SendResult = Result<
    (
        http::Response<wasmtime_wasi_http::WasiBody>,
        BoxFuture<Result<(), HttpError>>,
    ),
    HttpError,
>;

/// A response body that fails when no frame arrives within the between-bytes timeout.
pub(super) struct TimedBody {
    pub(super) inner: hyper::body::Incoming,
    pub(super) between_bytes: Duration,
    pub(super) sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + self.between_bytes;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(hyper_error(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// Whether a response's body is delimited by Content-Length or chunked coding, or has no body
/// (1xx, 204, 304; RFC 9112 §6.3).
pub(super) fn has_framing<B>(response: &http::Response<B>) -> bool {
    let status = response.status().as_u16();
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return true;
    }
    let headers = response.headers();
    headers.contains_key(http::header::CONTENT_LENGTH)
        || headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
            })
}
