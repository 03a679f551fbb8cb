//! The outbound HTTP capability behind `wasi:http/outgoing-handler@0.2.12`.
//!
//! wasmtime-wasi-http's stock sender trusts only the compiled-in web PKI roots, reaches any
//! host, and knows no extra CA. [`OutboundPolicy`] replaces it through the
//! [`WasiHttpHooks::send_request`] hook:
//! * only origins (`scheme://host:port`) on the allow-list are reached; anything else, including
//!   the right `host:port` under another scheme, is refused with `HttpRequestDenied` before a
//!   socket is opened (fail closed: an empty list allows nothing);
//! * TLS uses rustls with the Mozilla roots (`webpki-roots`) plus any CA bundle the operator
//!   passes (`--ca-file`), e.g. the mock Krypton's test CA;
//! * the guest's connect / first-byte / between-bytes timeouts apply, with host defaults when
//!   the guest sets none;
//! * one call may send at most [`MAX_REQUESTS_PER_CALL`] requests, each with at most
//!   [`MAX_REQUEST_HEADERS`] header fields and [`MAX_REQUEST_HEADER_BYTES`] of header names and
//!   values ([`OutboundCall`], the per-call half of the hooks).
//!
//! The connection code follows wasmtime-wasi-http 48's `default_send_request` (one HTTP/1.1
//! connection per request), with our TLS configuration and allow-list in front of it.
//!
//! The capability's parts: [`Origin`] and [`OutboundPolicy`] (`origin.rs`, `policy.rs`: what
//! the embedder allows and trusts, and the connection code), [`OutboundCall`] (`hook.rs`: one
//! call's hooks with its request budget), the resolver and the mapping of connection, TLS and
//! HTTP failures onto `wasi:http` error codes (`errors.rs`), and [`HttpCtx`] with
//! [`add_to_linker`], in the manner of `wasmtime-wasi-http`'s own `WasiHttpCtxView`.

mod body;
mod errors;
mod hook;
mod origin;
mod policy;

pub use errors::{
    DNS_FAILURE, DNS_NAME_NOT_FOUND, DNS_NO_ADDRESS, DNS_TEMPORARY_FAILURE, HandshakeFailure,
    lookup,
};
pub use hook::OutboundCall;
pub use origin::{Origin, host_port, redacted};
pub use policy::OutboundPolicy;

use crate::sandbox::LimitTrip;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Host default TCP + TLS connect timeout when the guest sets none.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Host default wait for the first byte of a response when the guest sets none.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Host default wait between two chunks of a response body when the guest sets none.
pub const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest CA bundle read, bytes (the whole Mozilla bundle is ~250 KiB).
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Most outgoing HTTP requests one call may send, refused ones included. The next one is
/// refused with `connection-limit-reached` and the call is stopped. The component sends one
/// request per Krypton call and attempt: an Azure registration polled every second (the
/// default) for the default 120 s deadline sends about 120, so the cap leaves twice that (a
/// runaway loop is stopped within a few hundred requests, not at the deadline).
pub const MAX_REQUESTS_PER_CALL: u32 = 256;

/// Most header fields in one outgoing request, the `Host` field wasmtime adds included.
pub const MAX_REQUEST_HEADERS: usize = 64;

/// Most bytes of header names plus values in one outgoing request (8 KiB, the request
/// header budget common HTTP servers and proxies enforce).
pub const MAX_REQUEST_HEADER_BYTES: usize = 8 * 1024;

/// Most bytes one `wasi:http` `fields` resource may hold in memory, as wasmtime-wasi-http
/// counts them (`WasiHttpCtx::set_field_size_limit`: names and values plus bookkeeping). Twice
/// [`MAX_REQUEST_HEADER_BYTES`], so the per-request cap is the one a component meets first.
pub const FIELDS_MEMORY_BYTES: usize = 2 * MAX_REQUEST_HEADER_BYTES;

/// One call's `wasi:http` state: wasmtime-wasi-http's context (with this module's field-size
/// cap) and the call's [`OutboundCall`] hooks.
pub struct HttpCtx {
    ctx: WasiHttpCtx,
    hooks: OutboundCall,
}

impl HttpCtx {
    /// The `wasi:http` state of one call under `policy`; a broken limit is recorded in `trip`.
    pub fn new(policy: OutboundPolicy, trip: LimitTrip) -> Self {
        let mut ctx = WasiHttpCtx::new();
        ctx.set_field_size_limit(FIELDS_MEMORY_BYTES);
        HttpCtx {
            ctx,
            hooks: OutboundCall::new(policy, trip),
        }
    }

    /// The view wasmtime-wasi-http's `Host` implementations take, over the call's resource
    /// `table`.
    pub fn view<'a>(&'a mut self, table: &'a mut ResourceTable) -> WasiHttpCtxView<'a> {
        WasiHttpCtxView {
            ctx: &mut self.ctx,
            table,
            hooks: &mut self.hooks,
        }
    }
}

/// Link `wasi:http` (types and outgoing-handler, WASI 0.2.12) into `linker`, served through the
/// store data's [`WasiHttpView`] (which hands out [`HttpCtx::view`]). Errors: already linked.
pub fn add_to_linker<T: WasiHttpView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> anyhow::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    Ok(())
}

#[cfg(test)]
mod tests;
