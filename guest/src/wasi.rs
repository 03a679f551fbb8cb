//! [`Capabilities`] over the component's imports: `wasi:http/outgoing-handler@0.2.12` for
//! Krypton calls, `wasi:clocks@0.2.12` for deadlines and waits, stderr (`wasi:cli`, through
//! Rust's std) for progress lines, and `soracom:krypton/secret-store` for bundles.
//!
//! HTTP uses the generated `wasi:http` bindings directly rather than a client crate: they
//! report the exact `wasi:http` `error-code` for connect and TLS failures (a client that
//! writes the body first can mask them as "connection reset"; build-recipe pitfall 7), they
//! let us pass connect / first-byte / between-bytes timeouts, and they keep the component small.

use crate::bindings::soracom::krypton::secret_store::{self, StoreError};
use crate::bindings::wasi::clocks::{monotonic_clock, wall_clock};
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme, http_error_code,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::bindings::wasi::random::random;
use crate::flow::{Capabilities, Endpoint, HttpRequest, HttpResponse, Method, SendFailure};
use crate::model::{Error, Timeouts};

/// The component's real capabilities (stateless: every call goes to an import).
pub struct WasiCapabilities;

const USER_AGENT: &str = concat!("krypton-component/", env!("CARGO_PKG_VERSION"));
/// Largest single read from the response body stream, bytes.
const READ_CHUNK: u64 = 64 * 1024;

fn ms_to_ns(ms: u32) -> u64 {
    u64::from(ms) * 1_000_000
}

/// Map a `wasi:http` error code to our error: timeouts are [`Error::Timeout`], the rest
/// [`Error::Transport`]. `what` says which request it was. Refusals that another attempt
/// cannot change (the host's allow-list, a rejected certificate, a malformed URL) are not
/// transient; connection failures and timeouts are.
fn transport_error(code: &ErrorCode, what: &str) -> SendFailure {
    match code {
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout
        | ErrorCode::DnsTimeout => SendFailure {
            error: Error::Timeout(format!("{what}: {code:?}")),
            transient: true,
        },
        ErrorCode::HttpRequestDenied => SendFailure {
            error: Error::Transport(format!(
                "{what}: the host refused the request (HttpRequestDenied): the destination is not on its outbound allow-list"
            )),
            transient: false,
        },
        ErrorCode::TlsCertificateError
        | ErrorCode::TlsProtocolError
        | ErrorCode::TlsAlertReceived(_)
        | ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::ConfigurationError => SendFailure {
            error: Error::Transport(format!("{what}: {code:?}")),
            transient: false,
        },
        _ => SendFailure {
            error: Error::Transport(format!("{what}: {code:?}")),
            transient: true,
        },
    }
}

/// A body-read failure that carries no `error-code`. wasmtime-wasi-http 48 surfaces errors of
/// the response body stream as plain I/O errors (its `http-error-code` only recognises its own
/// `ErrorCode` type), so the text is all there is: keep its first line (the rest may be a
/// host backtrace) and tell timeouts from other failures by it.
fn body_read_error(debug: &str, what: &str) -> SendFailure {
    let first = debug.lines().next().unwrap_or("unknown error").trim();
    let error = if first.contains("timeout") || first.contains("timed out") {
        Error::Timeout(format!("{what}: reading the response body: {first}"))
    } else {
        Error::Transport(format!("{what}: reading the response body failed: {first}"))
    };
    SendFailure {
        error,
        transient: true,
    }
}

fn permanent(error: Error) -> SendFailure {
    SendFailure {
        error,
        transient: false,
    }
}

fn store_error(e: StoreError) -> Error {
    Error::Storage(match e {
        StoreError::InvalidName(n) => format!("invalid bundle name: {n}"),
        StoreError::TooLarge(limit) => format!("bundle larger than the store's {limit}-byte limit"),
        StoreError::Io(m) => m,
    })
}

impl Capabilities for WasiCapabilities {
    fn send(
        &mut self,
        endpoint: &Endpoint,
        request: &HttpRequest,
        timeouts: Timeouts,
        total_ms: u64,
        max_body: usize,
    ) -> Result<HttpResponse, SendFailure> {
        let give_up_at = self.monotonic_ms().saturating_add(total_ms);
        let what = format!("{} {}", request.method.as_str(), request.path);
        let internal = |m: &str| SendFailure {
            error: Error::Transport(format!("{what}: {m}")),
            transient: true,
        };

        let mut headers: Vec<(String, Vec<u8>)> = vec![
            ("accept".into(), b"application/json".to_vec()),
            ("user-agent".into(), USER_AGENT.as_bytes().to_vec()),
        ];
        if let Some(body) = &request.body {
            headers.push(("content-type".into(), b"application/json".to_vec()));
            // Set Content-Length ourselves; otherwise the body goes out chunked.
            headers.push(("content-length".into(), body.len().to_string().into_bytes()));
        }
        let fields = Fields::from_list(&headers).map_err(|e| internal(&format!("{e:?}")))?;
        let outgoing = OutgoingRequest::new(fields);
        let method = match request.method {
            Method::Get => WasiMethod::Get,
            Method::Post => WasiMethod::Post,
        };
        let scheme = if endpoint.scheme == "http" {
            Scheme::Http
        } else {
            Scheme::Https
        };
        outgoing
            .set_method(&method)
            .and_then(|_| outgoing.set_scheme(Some(&scheme)))
            .and_then(|_| outgoing.set_authority(Some(&endpoint.authority)))
            .and_then(|_| outgoing.set_path_with_query(Some(&request.path)))
            .map_err(|_| internal("the host rejected the request line"))?;

        let options = RequestOptions::new();
        // The host may not support a given timeout; it then applies its own.
        let _ = options.set_connect_timeout(Some(ms_to_ns(timeouts.connect_ms)));
        let _ = options.set_first_byte_timeout(Some(ms_to_ns(timeouts.first_byte_ms)));
        let _ = options.set_between_bytes_timeout(Some(ms_to_ns(timeouts.between_bytes_ms)));

        let out_body = outgoing
            .body()
            .map_err(|_| internal("request body unavailable"))?;
        let future = outgoing_handler::handle(outgoing, Some(options))
            .map_err(|code| transport_error(&code, &what))?;

        // Write the body in pieces the stream accepts (blocking_write_and_flush takes at most
        // 4096 bytes per call). A write failure usually means the connection failed; the
        // response future then carries the precise error code, so it is consulted first.
        let mut write_failed = false;
        {
            let stream = out_body
                .write()
                .map_err(|_| internal("request body stream unavailable"))?;
            if let Some(body) = &request.body {
                for chunk in body.chunks(4096) {
                    if stream.blocking_write_and_flush(chunk).is_err() {
                        write_failed = true;
                        break;
                    }
                }
            }
        }
        if !write_failed && OutgoingBody::finish(out_body, None).is_err() {
            write_failed = true;
        }

        let response = loop {
            match future.get() {
                Some(result) => break result,
                None => future.subscribe().block(),
            }
        };
        let response = match response {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => return Err(transport_error(&code, &what)),
            Err(()) => return Err(internal("response already taken")),
        };
        if write_failed {
            return Err(internal("the request body could not be sent"));
        }

        let status = response.status();
        let headers: Vec<(String, String)> = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    String::from_utf8_lossy(&value).into_owned(),
                )
            })
            .collect();

        let incoming = response
            .consume()
            .map_err(|_| internal("response body unavailable"))?;
        let mut body = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|_| internal("response body stream unavailable"))?;
            loop {
                match stream.blocking_read(READ_CHUNK) {
                    Ok(chunk) => {
                        // A server that trickles bytes never trips the between-bytes timeout;
                        // the operation deadline still holds.
                        if self.monotonic_ms() >= give_up_at {
                            return Err(SendFailure {
                                error: Error::Timeout(format!(
                                    "{what}: the operation deadline passed while the body was still arriving ({} bytes so far)",
                                    body.len() + chunk.len()
                                )),
                                transient: false,
                            });
                        }
                        if body.len() + chunk.len() > max_body {
                            return Err(permanent(Error::invalid(
                                "body",
                                format!("response body larger than the {max_body}-byte limit"),
                            )));
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(match http_error_code(&e) {
                            Some(code) => transport_error(&code, &what),
                            None => body_read_error(&e.to_debug_string(), &what),
                        });
                    }
                }
            }
        }
        // The body's framing (Content-Length or chunked) is checked by the host's HTTP stack;
        // a short or broken body surfaces here as an error on the trailers future.
        let trailers = IncomingBody::finish(incoming);
        let trailers = loop {
            match trailers.get() {
                Some(result) => break result,
                None => trailers.subscribe().block(),
            }
        };
        if let Ok(Err(code)) = trailers {
            return Err(transport_error(&code, &what));
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    fn monotonic_ms(&self) -> u64 {
        monotonic_clock::now() / 1_000_000
    }

    fn unix_ms(&self) -> u64 {
        let now = wall_clock::now();
        now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
    }

    fn sleep_ms(&mut self, ms: u64) {
        monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
    }

    fn random_u64(&mut self) -> u64 {
        random::get_random_u64()
    }

    fn log(&mut self, line: &str) {
        eprintln!("krypton-component: {line}");
    }

    fn store_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        secret_store::get(name).map_err(store_error)
    }

    fn store_put(&mut self, name: &str, value: &[u8]) -> Result<(), Error> {
        secret_store::put(name, value).map_err(store_error)
    }

    fn store_delete(&mut self, name: &str) -> Result<bool, Error> {
        secret_store::delete(name).map_err(store_error)
    }
}
