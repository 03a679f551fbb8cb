//! [`Capabilities`] over the component's imports: `wasi:http/outgoing-handler@0.2.12` for
//! Krypton calls, `wasi:clocks@0.2.12` for deadlines and waits, `wasi:random` for backoff
//! jitter (these three through the `wasi` crate's bindings), stderr (`wasi:cli`, through Rust's
//! std) for progress lines, and, generated from our WIT, `soracom:krypton/secret-store` for
//! bundles and `soracom:krypton/uicc` for the SIM in SIM-authenticated mode.
//!
//! HTTP uses the `wasi:http` bindings directly rather than a client crate: they
//! report the exact `wasi:http` `error-code` for connect and TLS failures (a client that
//! writes the body first can mask them as "connection reset"), they
//! let us pass connect / first-byte / between-bytes timeouts, and they keep the component small.

use crate::bindings::soracom::krypton::secret_store::{self, StoreError};
use crate::bindings::soracom::krypton::uicc;
use crate::client::{
    Capabilities, DNS_NAME_NOT_FOUND, Endpoint, HttpRequest, HttpResponse, Method, SendFailure,
    transient, transport_failure,
};
use crate::types::model::{
    AuthKeys, AuthOutcome, Error, SecretBytes, Timeouts, TransportKind, UiccError,
};
use wasi::clocks::{monotonic_clock, wall_clock};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme, http_error_code,
};
use wasi::io::streams::StreamError;
use wasi::random::random;

/// The component's real capabilities (stateless: every call goes to an import).
pub struct WasiCapabilities;

const USER_AGENT: &str = concat!("krypton-component/", env!("CARGO_PKG_VERSION"));
/// Largest single read from the response body stream, bytes.
const READ_CHUNK: u64 = 64 * 1024;

fn ms_to_ns(ms: u32) -> u64 {
    u64::from(ms) * 1_000_000
}

/// Host-supplied text (a resolver's answer, a TLS alert, an internal error) made safe to
/// show: its first line, control characters dropped, at most 120 characters.
fn plain(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect::<String>()
        .trim()
        .to_string()
}

/// How a failed request is reported.
enum Outcome {
    /// A transport failure of this kind, with what the code adds in plain words.
    Transport(TransportKind, Option<String>),
    /// A single-request timeout, in plain words.
    Timeout(String),
}

/// Classify a `wasi:http` `error-code` (see `wit/deps/http/types.wit`).
fn classify(code: &ErrorCode, timeouts: Timeouts) -> Outcome {
    use TransportKind as K;
    let t = |kind: K, detail: &str| Outcome::Transport(kind, Some(detail.to_string()));
    match code {
        ErrorCode::DnsTimeout => t(K::NameResolutionFailed, "the DNS lookup timed out"),
        ErrorCode::DnsError(p) => match p.rcode.as_deref().map(plain) {
            Some(rcode) if rcode.eq_ignore_ascii_case(DNS_NAME_NOT_FOUND) => {
                Outcome::Transport(K::NameNotFound, None)
            }
            Some(rcode) if !rcode.is_empty() => Outcome::Transport(
                K::NameResolutionFailed,
                Some(format!("the resolver answered: {rcode}")),
            ),
            _ => t(K::NameResolutionFailed, "the resolver failed"),
        },
        ErrorCode::DestinationNotFound => t(K::Unreachable, "the destination was not found"),
        ErrorCode::DestinationUnavailable => t(K::Unreachable, "the destination is unavailable"),
        ErrorCode::DestinationIpProhibited => t(K::Unreachable, "the host prohibits that address"),
        ErrorCode::DestinationIpUnroutable => {
            t(K::Unreachable, "there is no route to that address")
        }
        ErrorCode::ConnectionRefused => Outcome::Transport(K::ConnectionRefused, None),
        ErrorCode::ConnectionTerminated => {
            t(K::ConnectionLost, "the connection was closed or reset")
        }
        ErrorCode::ConnectionTimeout => Outcome::Transport(
            K::ConnectionTimeout,
            Some(format!("{} ms", timeouts.connect_ms)),
        ),
        ErrorCode::ConnectionReadTimeout => Outcome::Timeout(format!(
            "no data within the read timeout ({} ms for the first byte, {} ms between bytes)",
            timeouts.first_byte_ms, timeouts.between_bytes_ms
        )),
        ErrorCode::HttpResponseTimeout => Outcome::Timeout(format!(
            "no answer within the first-byte timeout ({} ms)",
            timeouts.first_byte_ms
        )),
        ErrorCode::ConnectionWriteTimeout => {
            Outcome::Timeout("the request could not be sent within its timeout".to_string())
        }
        ErrorCode::TlsCertificateError => Outcome::Transport(K::UntrustedCertificate, None),
        ErrorCode::TlsProtocolError => t(K::TlsFailure, "a TLS protocol error"),
        ErrorCode::TlsAlertReceived(p) => Outcome::Transport(
            K::TlsFailure,
            Some(match (p.alert_message.as_deref().map(plain), p.alert_id) {
                (Some(m), _) if !m.is_empty() => format!("the server sent the TLS alert `{m}`"),
                (_, Some(id)) => format!("the server sent TLS alert {id}"),
                _ => "the server sent a TLS alert".to_string(),
            }),
        ),
        ErrorCode::HttpRequestDenied => Outcome::Transport(K::Denied, None),
        ErrorCode::HttpProtocolError => Outcome::Transport(K::ProtocolMismatch, None),
        ErrorCode::HttpResponseIncomplete => t(K::ConnectionLost, "the answer was cut short"),
        ErrorCode::ConnectionLimitReached => t(
            K::Other,
            "the host's limit of outgoing requests was reached",
        ),
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestUriTooLong => {
            t(K::Other, "the host refused the request's URL")
        }
        ErrorCode::HttpRequestMethodInvalid => t(K::Other, "the host refused the request's method"),
        ErrorCode::HttpRequestLengthRequired
        | ErrorCode::HttpRequestBodySize(_)
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_)
        | ErrorCode::HttpRequestTrailerSectionSize(_)
        | ErrorCode::HttpRequestTrailerSize(_) => {
            t(K::Other, "the host refused the request's size or framing")
        }
        ErrorCode::HttpResponseHeaderSectionSize(_)
        | ErrorCode::HttpResponseHeaderSize(_)
        | ErrorCode::HttpResponseBodySize(_)
        | ErrorCode::HttpResponseTrailerSectionSize(_)
        | ErrorCode::HttpResponseTrailerSize(_) => {
            t(K::Other, "the answer is larger than the host allows")
        }
        ErrorCode::HttpResponseTransferCoding(p) | ErrorCode::HttpResponseContentCoding(p) => {
            Outcome::Transport(
                K::Other,
                Some(match p.as_deref().map(plain) {
                    Some(c) if !c.is_empty() => {
                        format!("the answer's coding is not supported: {c}")
                    }
                    _ => "the answer's coding is not supported".to_string(),
                }),
            )
        }
        ErrorCode::HttpUpgradeFailed => t(K::Other, "an HTTP upgrade failed"),
        ErrorCode::LoopDetected => t(K::Other, "the host detected a request loop"),
        ErrorCode::ConfigurationError => t(K::Other, "the host's HTTP configuration is invalid"),
        ErrorCode::InternalError(m) => Outcome::Transport(
            K::Other,
            Some(match m.as_deref().map(plain) {
                Some(m) if !m.is_empty() => format!("the host failed: {m}"),
                _ => "the host failed".to_string(),
            }),
        ),
        // A code added by a later `wasi:http`.
        #[allow(unreachable_patterns)]
        _ => t(K::Other, "an error this component does not know"),
    }
}

/// Map a `wasi:http` error code to our error: single-request timeouts are
/// [`Error::Timeout`], the rest [`Error::Transport`] with a kind, a message naming host and
/// port, and a hint ([`crate::client::transport_failure`]). Whether another attempt may help
/// follows the kind ([`crate::client::transient`]); refusals of the request itself (its URL,
/// size, a sandbox limit, the host's configuration) are not retried either.
fn send_failure(
    code: &ErrorCode,
    endpoint: &Endpoint,
    what: &str,
    timeouts: Timeouts,
) -> SendFailure {
    match classify(code, timeouts) {
        Outcome::Timeout(m) => SendFailure {
            error: Error::Timeout(format!("{what}: {m}")),
            transient: true,
        },
        Outcome::Transport(kind, detail) => {
            let refused_request = matches!(
                code,
                ErrorCode::ConnectionLimitReached
                    | ErrorCode::HttpRequestUriInvalid
                    | ErrorCode::HttpRequestUriTooLong
                    | ErrorCode::HttpRequestMethodInvalid
                    | ErrorCode::HttpRequestLengthRequired
                    | ErrorCode::HttpRequestBodySize(_)
                    | ErrorCode::HttpRequestHeaderSectionSize(_)
                    | ErrorCode::HttpRequestHeaderSize(_)
                    | ErrorCode::HttpRequestTrailerSectionSize(_)
                    | ErrorCode::HttpRequestTrailerSize(_)
                    | ErrorCode::ConfigurationError
            );
            SendFailure {
                error: Error::Transport(transport_failure(
                    kind,
                    endpoint,
                    what.to_string(),
                    detail.as_deref(),
                )),
                transient: transient(kind) && !refused_request,
            }
        }
    }
}

/// A failure inside this component's use of `wasi:http` (a resource the host did not give).
fn internal_failure(endpoint: &Endpoint, what: &str, detail: &str) -> SendFailure {
    SendFailure {
        error: Error::Transport(transport_failure(
            TransportKind::Other,
            endpoint,
            what.to_string(),
            Some(detail),
        )),
        transient: true,
    }
}

/// A body-read failure that carries no `error-code`. wasmtime-wasi-http 48 surfaces errors of
/// the response body stream as plain I/O errors (its `http-error-code` only recognises its own
/// `ErrorCode` type), so the text is all there is: keep its first line (the rest may be a
/// host backtrace) and tell timeouts from other failures by it. Other failures are a
/// connection lost mid-answer.
fn body_read_error(debug: &str, endpoint: &Endpoint, what: &str) -> SendFailure {
    let first = plain(debug);
    let first = if first.is_empty() {
        "unknown error".to_string()
    } else {
        first
    };
    let error = if first.contains("timeout") || first.contains("timed out") {
        Error::Timeout(format!("{what}: reading the response body: {first}"))
    } else {
        Error::Transport(transport_failure(
            TransportKind::ConnectionLost,
            endpoint,
            what.to_string(),
            Some(&format!("reading the body: {first}")),
        ))
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
        let what = endpoint.request_line(request.method, &request.path);
        let internal = |m: &str| internal_failure(endpoint, &what, m);

        let mut headers: Vec<(String, Vec<u8>)> = vec![
            ("accept".into(), b"application/json".to_vec()),
            ("user-agent".into(), USER_AGENT.as_bytes().to_vec()),
        ];
        if let Some(body) = &request.body {
            headers.push(("content-type".into(), b"application/json".to_vec()));
            // Set Content-Length ourselves; otherwise the body goes out chunked.
            headers.push(("content-length".into(), body.len().to_string().into_bytes()));
        }
        headers.extend(
            request
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.as_bytes().to_vec())),
        );
        let fields = Fields::from_list(&headers)
            .map_err(|_| internal("the host refused the request headers"))?;
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
            .map_err(|code| send_failure(&code, endpoint, &what, timeouts))?;

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
            Ok(Err(code)) => return Err(send_failure(&code, endpoint, &what, timeouts)),
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
                            Some(code) => send_failure(&code, endpoint, &what, timeouts),
                            None => body_read_error(&e.to_debug_string(), endpoint, &what),
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
            return Err(send_failure(&code, endpoint, &what, timeouts));
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

    fn read_imsi(&mut self) -> Result<String, UiccError> {
        uicc::read_imsi().map_err(uicc_error)
    }

    fn authenticate(&mut self, rand: &[u8], autn: &[u8]) -> Result<AuthOutcome, UiccError> {
        match uicc::authenticate(rand, autn).map_err(uicc_error)? {
            uicc::AuthOutcome::Success(keys) => Ok(AuthOutcome::Success(AuthKeys {
                res: SecretBytes::new(keys.res),
                ck: SecretBytes::new(keys.ck),
                ik: SecretBytes::new(keys.ik),
            })),
            uicc::AuthOutcome::SyncFailure(auts) => Ok(AuthOutcome::SyncFailure(auts)),
        }
    }
}

/// The host's UICC error as the model's (the same cases; host text made safe to show).
fn uicc_error(e: uicc::UiccError) -> UiccError {
    match e {
        uicc::UiccError::Unavailable(m) => UiccError::Unavailable(plain(&m)),
        uicc::UiccError::NoSim(m) => UiccError::NoSim(plain(&m)),
        uicc::UiccError::Io(m) => UiccError::Io(plain(&m)),
        uicc::UiccError::StatusWord(sw) => UiccError::StatusWord {
            sw1: sw.sw1,
            sw2: sw.sw2,
            command: plain(&sw.command),
        },
        uicc::UiccError::MacFailure => UiccError::MacFailure,
    }
}
