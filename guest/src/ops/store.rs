//! What the secret store holds for a target, read and checked before any Krypton call, and
//! the probe that proves the store can take a new bundle.

use crate::client::Capabilities;
use crate::types::bundle::{Bundle, stored_error};
use crate::types::model::{Error, Target};

/// What the store holds for one target.
#[derive(Debug)]
pub enum Stored {
    /// Nothing is stored under the target's name.
    Absent,
    /// Something is stored but it cannot be used: not a bundle of this format, a bundle of
    /// another target, or a value that breaks its rule (the error says which). A provisioning
    /// run may replace it.
    Unusable(Error),
    /// A bundle whose every value passed [`Bundle::validate`].
    Present(Bundle),
}

/// Read and check the bundle stored for `target`.
///
/// Errors: [`Error::Storage`] only when the `secret-store` capability itself failed (I/O,
/// too large, a name refused): then nothing is known about what is stored, and no run may
/// go on as if nothing were. Problems with the content are [`Stored::Unusable`].
pub fn read_stored(caps: &mut dyn Capabilities, target: Target) -> Result<Stored, Error> {
    let name = target.bundle_name();
    let Some(bytes) = caps.store_get(name)? else {
        return Ok(Stored::Absent);
    };
    let bundle = match Bundle::from_bytes(name, &bytes) {
        Ok(bundle) => bundle,
        Err(e) => return Ok(Stored::Unusable(e)),
    };
    if bundle.target() != target {
        return Ok(Stored::Unusable(Error::Storage(format!(
            "stored bundle `{name}` holds a `{}` bundle",
            bundle.target().name()
        ))));
    }
    Ok(match bundle.validate() {
        Ok(()) => Stored::Present(bundle),
        Err(e) => Stored::Unusable(stored_error(name, e)),
    })
}

/// The stored bundle for `target`, if any, checked ([`read_stored`]).
///
/// Errors: [`Error::Storage`] when the store fails, or the bundle is unreadable, of another
/// format version or of another target; [`Error::InvalidResponse`] naming the field when a
/// stored value breaks its rule (reason "stored bundle `<target>`: ...").
pub fn load(caps: &mut dyn Capabilities, target: Target) -> Result<Option<Bundle>, Error> {
    match read_stored(caps, target)? {
        Stored::Absent => Ok(None),
        Stored::Unusable(e) => Err(e),
        Stored::Present(bundle) => Ok(Some(bundle)),
    }
}

/// Whether `e` says the stored bundle is of a newer format than this component reads.
pub fn is_newer_format(e: &Error) -> bool {
    matches!(e, Error::Storage(m) if m.contains("has format version"))
}

/// Secret-store name of the probe value [`prove_store`] writes and removes.
pub const STORE_PROBE: &str = "store-probe";
/// Size of the probe value, bytes: more than the largest bundle this component writes (an
/// `aws-iot` bundle with an RSA-2048 key, a certificate chain and a root CA is about 7 KiB).
pub const STORE_PROBE_BYTES: usize = 16 * 1024;

/// Prove that the store can take a bundle before Krypton is asked to mint one: put a
/// [`STORE_PROBE_BYTES`] value under [`STORE_PROBE`], then delete it. A full, read-only or
/// failing store is found here, before any credential exists, rather than after Krypton has
/// issued one that could not be kept. (Checking free space instead would need a capability
/// the contract does not have, and would not catch a read-only or failing store.)
///
/// Errors: [`Error::Storage`] saying the store cannot take a bundle and nothing was asked of
/// Krypton.
pub fn prove_store(caps: &mut dyn Capabilities) -> Result<(), Error> {
    let cannot = |e: Error| {
        let detail = match e {
            Error::Storage(m) => m,
            other => other.to_string(),
        };
        Error::Storage(format!(
            "the store cannot take a new bundle ({detail}); Krypton was not called, so no \
             credential was issued. Fix the store (space, permissions, files in the way) and \
             run again"
        ))
    };
    let mut probe = Vec::with_capacity(STORE_PROBE_BYTES);
    probe.extend_from_slice(b"{\"probe\":\"");
    probe.resize(STORE_PROBE_BYTES - 2, b'0');
    probe.extend_from_slice(b"\"}");
    caps.store_put(STORE_PROBE, &probe).map_err(cannot)?;
    caps.store_delete(STORE_PROBE).map_err(cannot)?;
    Ok(())
}
