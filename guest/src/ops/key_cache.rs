//! The Keys API session cache of SIM-authenticated mode: `(IMSI, Keys API origin, keyId, CK,
//! expiry)` kept in the host's secret store under one reserved name ([`KEY_CACHE`], not a
//! target's name), so that one AKA signs every provisioning call of the next hour. SORACOM's
//! open-source clients keep the same entry for 3600 s from its creation and drop entries of
//! another IMSI on lookup (`soracom/endorse-client-go` `endorse/key_cache.go`; Java
//! `keycache/JCEKeyCache.java`).
//!
//! A session is bound to the Keys API it was agreed with: the entry records that endpoint's
//! origin (`scheme://host:port`, RFC 6454 §4, the port always written) and is used only by a
//! run whose endpoint has the same origin. The same store pointed at another endpoint agrees a
//! new key there: the CK of one Keys API never signs a request sent to another. An entry
//! without an origin (format 1, written by older versions) is discarded.
//!
//! The entry is read back as untrusted input: anything that breaks a rule is discarded, never
//! used. The CK is never logged and never named in an error.

#[cfg(doc)]
use crate::client::Endpoint;
use crate::client::{Capabilities, SimKey};
use crate::types::identifiers as id;
use crate::types::model::{Error, SecretBytes};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// Secret-store name of the cached session.
pub const KEY_CACHE: &str = "sim-key";
/// How long a Keys API session is reused from its creation, ms (3600 s, as SORACOM's clients).
pub const KEY_LIFETIME_MS: u64 = 3_600_000;
/// The entry format this component writes (2: with the Keys API's origin).
const ENTRY_VERSION: u32 = 2;
/// Longest origin an entry may hold, characters (a host name is at most 253).
const MAX_ORIGIN_CHARS: usize = 300;

/// The stored entry (JSON, field names as below).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    format_version: u32,
    /// The IMSI the session was agreed for.
    imsi: String,
    /// The origin of the Keys API the session was agreed with, `https://host:port`.
    origin: String,
    /// The Keys API's `keyId`.
    key_id: String,
    /// The CK, standard base64 of 16 bytes.
    ck: String,
    /// When the key agreement was verified, ms since the epoch.
    created_at_ms: u64,
    /// `created_at_ms` + [`KEY_LIFETIME_MS`].
    expires_at_ms: u64,
}

/// Why a cached entry is not used.
fn unusable(entry: &Entry, imsi: &str, origin: &str, now_ms: u64) -> Option<&'static str> {
    if entry.format_version != ENTRY_VERSION {
        return Some("it is of another format (an older version's, bound to no Keys API)");
    }
    if id::imsi(&entry.imsi).is_err()
        || id::keys_api_key_id(&entry.key_id).is_err()
        || !matches!(BASE64.decode(&entry.ck), Ok(ck) if ck.len() == 16)
        || entry.expires_at_ms != entry.created_at_ms.saturating_add(KEY_LIFETIME_MS)
        || entry.origin.is_empty()
        || entry.origin.chars().count() > MAX_ORIGIN_CHARS
    {
        return Some("it breaks its rules");
    }
    if entry.imsi != imsi {
        return Some("it belongs to another SIM (the IMSI changed)");
    }
    if entry.origin != origin {
        return Some("it was agreed with another Keys API (the endpoint changed)");
    }
    if entry.created_at_ms > now_ms {
        return Some("it was created in the future (the clock changed)");
    }
    if now_ms >= entry.expires_at_ms {
        return Some("it has expired");
    }
    None
}

/// The cached session for `imsi` with the Keys API at `origin` ([`Endpoint::origin`]) at
/// `now_ms` (ms since the epoch), if one is usable. An entry that is unreadable, of another
/// IMSI or Keys API, expired or breaking its rules is deleted (one log line says why, without
/// the key). A store that fails to read is logged and treated as an
/// empty cache: the run agrees a new key instead.
pub fn lookup(
    caps: &mut dyn Capabilities,
    imsi: &str,
    origin: &str,
    now_ms: u64,
) -> Option<SimKey> {
    let bytes = match caps.store_get(KEY_CACHE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(e) => {
            caps.log(&format!("key cache: not read ({e}); agreeing a new key"));
            return None;
        }
    };
    let why = match serde_json::from_slice::<Entry>(&bytes) {
        Ok(entry) => match unusable(&entry, imsi, origin, now_ms) {
            None => {
                let ck = BASE64.decode(&entry.ck).unwrap_or_default();
                caps.log(&format!(
                    "key cache: reusing keyId {} ({} s left)",
                    entry.key_id,
                    (entry.expires_at_ms - now_ms) / 1000
                ));
                return Some(SimKey {
                    key_id: entry.key_id,
                    ck: SecretBytes::new(ck),
                });
            }
            Some(why) => why,
        },
        Err(_) => "it is unreadable",
    };
    caps.log(&format!("key cache: discarding the cached key: {why}"));
    if let Err(e) = caps.store_delete(KEY_CACHE) {
        caps.log(&format!("key cache: could not delete the entry: {e}"));
    }
    None
}

/// Cache `key`, agreed for `imsi` with the Keys API at `origin` and verified at `now_ms`. A
/// store that cannot take it is logged: the key still signs this run, and the next run agrees
/// a new one.
pub fn save(caps: &mut dyn Capabilities, imsi: &str, origin: &str, key: &SimKey, now_ms: u64) {
    let entry = Entry {
        format_version: ENTRY_VERSION,
        imsi: imsi.to_string(),
        origin: origin.to_string(),
        key_id: key.key_id.clone(),
        ck: BASE64.encode(key.ck.expose()),
        created_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(KEY_LIFETIME_MS),
    };
    let bytes = serde_json::to_vec_pretty(&entry).expect("the entry serializes");
    if let Err(e) = caps.store_put(KEY_CACHE, &bytes) {
        caps.log(&format!(
            "key cache: not saved ({e}); the next run agrees a new key"
        ));
    }
}

/// Delete the cached session, if any.
///
/// Errors: [`Error::Storage`] when the store fails: the request asked for the cache to be
/// cleared, and a run must not go on as if it were.
pub fn clear(caps: &mut dyn Capabilities) -> Result<(), Error> {
    if caps.store_delete(KEY_CACHE)? {
        caps.log("key cache: cleared");
    }
    Ok(())
}
