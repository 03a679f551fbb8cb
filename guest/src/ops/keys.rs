//! SORACOM's Keys API (SIM-authenticated mode): the device proves it holds the SIM through 3GPP
//! AKA and gets a `keyId` whose CK signs its provisioning requests. The exchange follows
//! SORACOM's open-source clients (`soracom/endorse-client-go` `endorse/client.go`
//! `DoAuthentication`, `startAKA`, `finishAKA`; Java `SORACOMEndorseClient.doAuthentication`):
//!
//! 1. the IMSI from the SIM (the host's `uicc`);
//! 2. `POST {endpoint}/v1/keys` `{"imsi"}`: the challenge `{"keyId","rand","autn"}`, with
//!    HTTP 200 or 401 (both clients accept either);
//! 3. AUTHENTICATE on the USIM with RAND and AUTN (3GPP TS 31.102 §7.1.2.1): RES and CK;
//! 4. `POST {endpoint}/v1/keys/{keyId}/verify` `{"res"}`: 200 means verified;
//! 5. on a synchronisation failure in step 3 (AUTS, TS 33.102 §6.3.5): one resynchronisation,
//!    `POST /v1/keys` `{"imsi","rand","auts"}` with the RAND of the failed challenge, then
//!    steps 3 and 4 once more with the new challenge.
//!
//! Binary fields are standard padded base64 (RFC 4648 §4). A verified session is cached
//! ([`super::key_cache`]) unless the request bypasses the cache.
//!
//! Why this sits in the operations layer: it is a SORACOM service call of its own, written
//! like the other services' files over the HTTP policy of [`crate::client::Run`] and the
//! `Capabilities` of layer 2 (the SIM, the store); the orchestration (`provision`) runs it
//! before a target's calls and hands its key to `Run::sign_with`, which signs below without
//! knowing where the key came from.

use super::key_cache;
use crate::client::{Exchange, Method, Run, SimKey, http_status_error};
use crate::types::identifiers as id;
use crate::types::json::{json_object, required_str};
use crate::types::model::{AuthOutcome, Error, KeyCacheUse, SecretBytes, SimError, UiccError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

/// K1: start a key agreement (and resynchronise).
pub const KEYS: &str = "/v1/keys";
/// Largest Keys API answer read, bytes (a challenge is about 100).
pub const MAX_KEYS_BODY_BYTES: usize = 16 * 1024;
/// Longest text of the Keys API's own `code` and `message` kept in an error, characters.
const MAX_SERVER_TEXT: usize = 200;

/// K2: the verification path of `key_id`.
pub fn verify_path(key_id: &str) -> String {
    format!("{KEYS}/{key_id}/verify")
}

/// A Keys API session ready to sign: its key, the IMSI it was agreed for, and whether it came
/// from the cache (then a refusal may only mean it expired on the server).
#[derive(Clone, Debug)]
pub struct Session {
    /// `keyId` and CK.
    pub key: SimKey,
    /// The SIM's IMSI.
    pub imsi: String,
    /// Whether the key was read from the cache rather than agreed in this run.
    pub cached: bool,
}

/// A challenge of K1.
struct Challenge {
    key_id: String,
    rand: Vec<u8>,
    autn: Vec<u8>,
}

fn key_agreement(message: String) -> Error {
    Error::Sim(SimError::KeyAgreement(message))
}

fn uicc(e: UiccError) -> Error {
    Error::Sim(SimError::Uicc(e))
}

/// Server text made safe to show: control characters dropped, at most [`MAX_SERVER_TEXT`].
fn plain(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_SERVER_TEXT)
        .collect()
}

/// A Keys API answer that refuses: the request, the status, SORACOM's `{code, message}`. A
/// server failure (408, 429, 5xx, still failing after the retries) is not a refusal of the SIM:
/// it is reported as the HTTP status it is ([`Error::HttpStatus`]).
fn refused(exchange: &Exchange, what: &str) -> Error {
    let error = http_status_error(
        exchange.response.status,
        &exchange.response.body,
        exchange.request.clone(),
    );
    if matches!(exchange.response.status, 408 | 429 | 500..=599) {
        return error;
    }
    // The status text as `Error`'s Display writes it, with Krypton's code and message passed
    // through `plain` (they become part of a free-text message here).
    let text = match error {
        Error::HttpStatus {
            status,
            code,
            message,
            request,
            ..
        } => {
            let mut text = format!("{request} answered HTTP {status}");
            if let Some(code) = code {
                text.push_str(&format!(" ({})", plain(&code)));
            }
            if let Some(message) = message {
                text.push_str(&format!(": {}", plain(&message)));
            }
            text
        }
        other => other.to_string(),
    };
    key_agreement(format!("{what}: {text}"))
}

/// A binary field of a challenge: standard padded base64 of exactly 16 bytes.
fn bytes16(
    obj: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Vec<u8>, String> {
    let text = required_str(obj, field).map_err(|e| e.to_string())?;
    match BASE64.decode(text) {
        Ok(bytes) if bytes.len() == 16 => Ok(bytes),
        Ok(bytes) => Err(format!(
            "field `{field}`: {} bytes, expected 16",
            bytes.len()
        )),
        Err(_) => Err(format!("field `{field}`: not standard base64")),
    }
}

/// K1, or its resynchronisation when `resync` holds the RAND of the failed challenge and the
/// SIM's AUTS. Errors: [`SimError::KeyAgreement`] for another status than 200 or 401, or a
/// challenge that breaks its rules; transport errors and timeouts as they are.
fn start(
    run: &mut Run<'_>,
    imsi: &str,
    resync: Option<(&[u8], &[u8])>,
) -> Result<Challenge, Error> {
    let body = match resync {
        None => json!({ "imsi": imsi }),
        Some((rand, auts)) => json!({
            "imsi": imsi,
            "rand": BASE64.encode(rand),
            "auts": BASE64.encode(auts),
        }),
    };
    let what = if resync.is_some() {
        "the Keys API refused to resynchronise the SIM"
    } else {
        "the Keys API refused to start a key agreement"
    };
    let exchange = run.exchange(
        Method::Post,
        KEYS,
        Some(body.to_string().into_bytes()),
        MAX_KEYS_BODY_BYTES,
    )?;
    let status = exchange.response.status;
    if !matches!(status, 200 | 401) {
        return Err(refused(&exchange, what));
    }
    let challenge = json_object(&exchange.response.body)
        .map_err(|e| e.to_string())
        .and_then(|obj| {
            let key_id = required_str(&obj, "keyId").map_err(|e| e.to_string())?;
            id::keys_api_key_id(key_id).map_err(|r| format!("field `keyId`: {r}"))?;
            Ok(Challenge {
                key_id: key_id.to_string(),
                rand: bytes16(&obj, "rand")?,
                autn: bytes16(&obj, "autn")?,
            })
        });
    match challenge {
        Ok(challenge) => Ok(challenge),
        // A 401 without a challenge is a refusal.
        Err(_) if status == 401 => Err(refused(&exchange, what)),
        Err(reason) => Err(key_agreement(format!(
            "{} answered HTTP {status} with an unusable challenge: {reason}",
            exchange.request
        ))),
    }
}

/// AUTHENTICATE with the challenge, the answer's lengths checked (RES 4–16 bytes, CK 16,
/// AUTS 14; 3GPP TS 33.102 §6.3). Errors: [`SimError::Uicc`].
fn authenticate(run: &mut Run<'_>, challenge: &Challenge) -> Result<AuthOutcome, Error> {
    let outcome = run
        .caps
        .authenticate(&challenge.rand, &challenge.autn)
        .map_err(uicc)?;
    let bad = |what: String| {
        uicc(UiccError::Io(format!(
            "the SIM's answer to AUTHENTICATE is malformed: {what}"
        )))
    };
    match &outcome {
        AuthOutcome::Success(keys) => {
            if !(4..=16).contains(&keys.res.len()) {
                return Err(bad(format!(
                    "RES of {} bytes, expected 4 to 16",
                    keys.res.len()
                )));
            }
            if keys.ck.len() != 16 {
                return Err(bad(format!("CK of {} bytes, expected 16", keys.ck.len())));
            }
        }
        AuthOutcome::SyncFailure(auts) if auts.len() != 14 => {
            return Err(bad(format!("AUTS of {} bytes, expected 14", auts.len())));
        }
        AuthOutcome::SyncFailure(_) => {}
    }
    Ok(outcome)
}

/// K2 with RES. Errors: [`SimError::KeyAgreement`] for any status but 200.
fn verify(run: &mut Run<'_>, key_id: &str, res: &SecretBytes) -> Result<(), Error> {
    let body = json!({ "res": BASE64.encode(res.expose()) });
    let exchange = run.exchange(
        Method::Post,
        &verify_path(key_id),
        Some(body.to_string().into_bytes()),
        MAX_KEYS_BODY_BYTES,
    )?;
    if exchange.response.status != 200 {
        return Err(refused(
            &exchange,
            "the Keys API did not verify the SIM's answer",
        ));
    }
    Ok(())
}

/// One key agreement for `imsi` (steps 2 to 5 of the module docs), with at most one
/// resynchronisation. Errors: [`SimError::KeyAgreement`], [`SimError::Uicc`], transport
/// errors and timeouts.
pub fn agree(run: &mut Run<'_>, imsi: &str) -> Result<SimKey, Error> {
    run.caps
        .log(&format!("Keys API: key agreement for IMSI {imsi}"));
    let challenge = start(run, imsi, None)?;
    let (challenge, keys) = match authenticate(run, &challenge)? {
        AuthOutcome::Success(keys) => (challenge, keys),
        AuthOutcome::SyncFailure(auts) => {
            run.caps
                .log("Keys API: the SIM reported a synchronisation failure; resynchronising once");
            let again = start(run, imsi, Some((&challenge.rand, &auts)))?;
            match authenticate(run, &again)? {
                AuthOutcome::Success(keys) => (again, keys),
                AuthOutcome::SyncFailure(_) => {
                    return Err(key_agreement(
                        "the SIM reported a synchronisation failure again after the Keys API \
                         resynchronised it"
                            .to_string(),
                    ));
                }
            }
        }
    };
    verify(run, &challenge.key_id, &keys.res)?;
    run.caps
        .log(&format!("Keys API: keyId {} verified", challenge.key_id));
    Ok(SimKey {
        key_id: challenge.key_id,
        ck: keys.ck,
    })
}

/// The SIM's IMSI, checked (6–15 digits). Errors: [`SimError::Uicc`].
fn read_imsi(run: &mut Run<'_>) -> Result<String, Error> {
    let imsi = run.caps.read_imsi().map_err(uicc)?;
    let imsi = imsi.trim().to_string();
    id::imsi(&imsi).map_err(|r| {
        uicc(UiccError::Io(format!(
            "the SIM's IMSI is not 6 to 15 decimal digits: {r}"
        )))
    })?;
    Ok(imsi)
}

/// The session a SIM-mode run signs with: the IMSI is read; with [`KeyCacheUse::Reuse`] a
/// cached session of the same IMSI that has not expired is used as it is; otherwise a key
/// agreement runs ([`agree`]) and its session is cached unless the request says
/// [`KeyCacheUse::Bypass`]. ([`KeyCacheUse::Clear`] deletes the entry before this is called.)
///
/// Errors: see [`agree`]; [`SimError::Uicc`] when the IMSI cannot be read. Nothing is cached
/// on an error.
pub fn establish(run: &mut Run<'_>, use_cache: KeyCacheUse) -> Result<Session, Error> {
    let imsi = read_imsi(run)?;
    if use_cache == KeyCacheUse::Reuse {
        let now = run.caps.unix_ms();
        let origin = run.origin();
        if let Some(key) = key_cache::lookup(run.caps, &imsi, &origin, now) {
            return Ok(Session {
                key,
                imsi,
                cached: true,
            });
        }
    }
    let key = agree(run, &imsi)?;
    if use_cache != KeyCacheUse::Bypass {
        let now = run.caps.unix_ms();
        let origin = run.origin();
        key_cache::save(run.caps, &imsi, &origin, &key, now);
    }
    Ok(Session {
        key,
        imsi,
        cached: false,
    })
}

/// After the server refused a cached session: delete the entry and agree a new key for the
/// same IMSI. The new key is not cached here: the caller caches it ([`remember`]) once the
/// server has accepted it, so a key refused again is never kept. Errors: see [`agree`].
pub fn renew(run: &mut Run<'_>, session: &Session) -> Result<Session, Error> {
    if let Err(e) = key_cache::clear(run.caps) {
        run.caps
            .log(&format!("key cache: could not delete the refused key: {e}"));
    }
    let key = agree(run, &session.imsi)?;
    Ok(Session {
        key,
        imsi: session.imsi.clone(),
        cached: false,
    })
}

/// Cache `session` (a key [`renew`] agreed) now that the server accepted it.
pub fn remember(run: &mut Run<'_>, session: &Session) {
    let now = run.caps.unix_ms();
    let origin = run.origin();
    key_cache::save(run.caps, &session.imsi, &origin, &session.key, now);
}
