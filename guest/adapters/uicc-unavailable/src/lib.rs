//! `soracom:krypton/uicc@0.6.0` for a runtime with no SIM access (the stock `wasmtime` CLI,
//! any WASI runtime): every call answers `unavailable`, as the contract asks of a host without
//! the capability, so the provisioning component links and its network mode works; SIM mode
//! fails with the `sim` error (exit 13) and says where SIM mode runs.
//!
//! It also exports `soracom:krypton/types@0.6.0`, which holds types only: the provisioning
//! component and the command front end import it (their interfaces use its types), and a
//! composition leaves no `soracom:krypton/*` import open when one component exports it. Its
//! types use `uicc-error`, hence its place here, beside `uicc`.

#![cfg(target_arch = "wasm32")]

// SAFETY: the only unsafe code is what wit-bindgen generates (the canonical ABI glue of the
// exported interfaces).
#[allow(unsafe_code)]
// Generated from the WIT, whose `///` comments are the documentation of these items.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package soracom:krypton-plugin;
            world uicc-unavailable {
                export soracom:krypton/uicc@0.6.0;
                export soracom:krypton/types@0.6.0;
            }
        ",
        path: "../../../wit",
        world: "soracom:krypton-plugin/uicc-unavailable",
    });
}

use bindings::exports::soracom::krypton::uicc::{AuthOutcome, Guest, UiccError};

/// What every call answers: the runtime cannot reach a SIM, and where SIM mode runs.
pub const UNAVAILABLE: &str =
    "this runtime has no SIM access: use krypton-host for SIM-authenticated mode";

struct NoUicc;

impl Guest for NoUicc {
    fn read_imsi() -> Result<String, UiccError> {
        Err(UiccError::Unavailable(UNAVAILABLE.into()))
    }

    fn authenticate(_rand: Vec<u8>, _autn: Vec<u8>) -> Result<AuthOutcome, UiccError> {
        Err(UiccError::Unavailable(UNAVAILABLE.into()))
    }
}

// SAFETY: the export glue wit-bindgen generates; see `bindings`.
#[allow(unsafe_code)]
mod export {
    use super::{NoUicc, bindings};
    bindings::export!(NoUicc with_types_in bindings);
}
