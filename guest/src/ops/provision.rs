//! The orchestration of `provision` and `status`, the top of the operations layer: it reads
//! the store, applies the target's reuse rule, proves the store, in SIM mode establishes the
//! Keys API session ([`super::keys`]), makes the target's calls from [`super::table`], and
//! stores the bundle.

use super::common::Prepared;
use super::store::{Stored, is_newer_format, load, prove_store, read_stored};
use super::table::{Calls, Operation, operation};
use super::{key_cache, keys};
use crate::client::{Capabilities, Method, Run};
use crate::types::bundle::{Bundle, stored_error};
use crate::types::json::parse_params;
use crate::types::model::{AuthMode, Error, KeyCacheUse, ProvisionRequest, Report, Target};

/// The report for `bundle`, with the target's `mints-credentials` fact from the table.
/// Errors: see [`Bundle::report`].
fn report(op: &Operation, bundle: &Bundle, reused: bool) -> Result<Report, Error> {
    let mut report = bundle.report(reused)?;
    report.mints_credentials = op.mints_credentials;
    Ok(report)
}

/// Report what is stored for `target` (WIT `status`). Errors: see [`load`].
pub fn status(caps: &mut dyn Capabilities, target: Target) -> Result<Option<Report>, Error> {
    let name = target.bundle_name();
    let op = operation(target);
    load(caps, target)?
        .map(|b| report(op, &b, true).map_err(|e| stored_error(name, e)))
        .transpose()
}

/// Provision `request.target` and store its bundle (WIT `provision`).
///
/// In SIM-authenticated mode the same happens against the request's endpoint (SORACOM's API:
/// `https://g.api.soracom.io` or `https://api.soracom.io`), every call signed with a Keys API
/// session ([`keys::establish`]: the cached one, or a new key agreement through the SIM),
/// established only once Krypton is to be called; [`KeyCacheUse::Clear`] deletes the cached
/// session first in any case. When the server refuses a cached session (HTTP 401 before it
/// accepted any call of the run), the entry is dropped, one new key agreement runs and the
/// target's calls are made once more. The bundle records the mode it was obtained in.
///
/// The target's [`Operation`] first checks the request parameters; then what is stored is
/// read: a store failure stops the run with [`Error::Storage`], with or without `force`; a
/// bundle that is absent or unusable may be replaced. Without `force`, a stored bundle that the
/// target's [`super::table::Reuse`] rule accepts is reported (`reused: true`) and Krypton is
/// not called. Targets whose answer holds a credential that exists nowhere else
/// ([`Operation::probe_store`]) then [`prove_store`]. The calls are made, the bundle checked
/// and stored, and the target's [`Operation::after_store`] runs (Azure: forget the
/// registration in flight, say when the device moved to another hub or device ID).
///
/// Errors: every [`Error`] variant; on any error the store is unchanged.
pub fn provision(caps: &mut dyn Capabilities, request: &ProvisionRequest) -> Result<Report, Error> {
    let params = parse_params(request.request_parameters.as_deref())?;
    let target = request.target;
    let op = operation(target);
    let sim = request.mode == AuthMode::Sim;
    // Check what can be checked before any call.
    let mut run = Run::new(caps, request)?;
    let prepared = (op.prepare)(params)?;
    if sim && request.sim.key_cache == KeyCacheUse::Clear {
        // Asked for whether or not Krypton is called below.
        key_cache::clear(run.caps)?;
    }

    let previous = match read_stored(run.caps, target)? {
        Stored::Present(bundle) => {
            // The reuse rule holds whatever mode the bundle was obtained in: credentials from
            // network mode serve a SIM-mode request and the reverse, unless forced.
            if !request.force {
                let report = report(op, &bundle, true)?;
                if op.reuse.allows(&bundle, &report, run.caps.unix_ms()) {
                    run.caps.log(&format!(
                        "{}: a valid bundle is stored; reusing it without calling Krypton",
                        target.name()
                    ));
                    return Ok(report);
                }
                run.caps.log(&format!(
                    "{}: the stored bundle is stale; provisioning anew",
                    target.name()
                ));
            }
            Some(bundle)
        }
        // A bundle from a newer component: never replace it silently with an older format.
        Stored::Unusable(e) if is_newer_format(&e) && !request.force => {
            return Err(Error::Storage(format!(
                "{e}; refusing to replace it unless the request sets force"
            )));
        }
        // A bundle that cannot be used is evidence of an edit or a fault on disk, not of "no
        // credentials": replacing it silently would, for AWS IoT, mint a certificate nobody
        // asked for and throw the stored key away. Only a forced run replaces it.
        // The same error `status` and `render-export` give for it, so the same situation has
        // the same exit code everywhere.
        Stored::Unusable(Error::Storage(m)) if !request.force => {
            return Err(Error::Storage(format!(
                "{m}; it is kept as it is: provision with force to replace it"
            )));
        }
        Stored::Unusable(e) if !request.force => return Err(e),
        Stored::Unusable(e) => {
            run.caps
                .log(&format!("{}: {e}; replacing it (forced)", target.name()));
            None
        }
        Stored::Absent => None,
    };
    if op.probe_store {
        prove_store(run.caps)?;
    }

    let mut bundle = if sim {
        let session = keys::establish(&mut run, request.sim.key_cache)?;
        run.sign_with(session.key.clone());
        match obtain(op, &mut run, prepared.clone()) {
            // A cached key the server refuses before accepting any call of this run has
            // expired or been revoked on the server: agree a new one and try once more.
            Err(Error::HttpStatus { status: 401, .. }) if session.cached && !run.key_accepted() => {
                run.caps.log(&format!(
                    "{}: the cached Keys API session was refused (HTTP 401); agreeing a new key \
                     and trying once more",
                    target.name()
                ));
                let session = keys::renew(&mut run, &session)?;
                run.sign_with(session.key.clone());
                let bundle = obtain(op, &mut run, prepared)?;
                keys::remember(&mut run, &session);
                bundle
            }
            other => other?,
        }
    } else {
        obtain(op, &mut run, prepared)?
    };
    bundle.set_mode(request.mode);
    // Build the report before storing, so a bundle that cannot be reported is never stored;
    // it checks every value once more with the rules used when reading it back.
    let mut report = report(op, &bundle, false)?;
    run.caps
        .store_put(target.bundle_name(), &bundle.to_bytes())?;
    if let Some(after_store) = op.after_store {
        after_store(run.caps, previous.as_ref(), &bundle, &mut report);
    }
    run.caps.log(&format!(
        "{}: stored bundle `{}`",
        target.name(),
        report.bundle
    ));
    for w in &report.warnings {
        run.caps.log(&format!(
            "{}: warning: {}: {}",
            target.name(),
            w.check,
            w.message
        ));
    }
    Ok(report)
}

/// The target's calls (signed when the run is), and its checked bundle.
fn obtain(op: &Operation, run: &mut Run<'_>, mut prepared: Prepared) -> Result<Bundle, Error> {
    match op.calls {
        Calls::One { path, parse } => {
            let body = std::mem::take(&mut prepared.body);
            let response = run.call(Method::Post, path, Some(body))?;
            let now = run.caps.unix_ms();
            parse(&prepared, &response.body, now)
        }
        Calls::Flow { run: flow, .. } => flow(run, prepared),
    }
}
