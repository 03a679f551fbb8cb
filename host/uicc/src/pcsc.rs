//! The PC/SC card-reader backend (cargo feature `pcsc`): a SIM in a reader, reached through
//! pcsc-lite (the `pcsc` crate). Building needs libpcsclite (Debian: `libpcsclite-dev`);
//! running needs the PC/SC daemon (Debian: `pcscd`). The APDU sequence is [`crate::card`]'s;
//! this module only moves the bytes. pcsc-lite does not fetch a T=0 response by itself, so the
//! `61 xx` GET RESPONSE dance is [`crate::apdu::transceive`]'s.

use crate::UiccError;
use crate::card::{CardChannel, UsimCard};
use pcsc::{Context, Protocols, Scope, ShareMode};
use std::ffi::CString;
use zeroize::Zeroizing;

/// A SIM in a PC/SC reader.
pub type PcscReader = UsimCard<PcscChannel>;

/// The readers pcsc-lite knows. Errors: [`UiccError::Unavailable`] when the PC/SC service is
/// not running; [`UiccError::Io`] otherwise.
pub fn list_readers() -> Result<Vec<String>, UiccError> {
    let ctx = establish()?;
    match ctx.list_readers_owned() {
        Ok(readers) => Ok(readers
            .into_iter()
            .map(|r| r.to_string_lossy().into_owned())
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(map_error("PC/SC", e)),
    }
}

fn establish() -> Result<Context, UiccError> {
    Context::establish(Scope::User).map_err(|e| match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped => {
            UiccError::Unavailable(format!("the PC/SC service (pcscd) is not running: {e}"))
        }
        e => map_error("PC/SC", e),
    })
}

fn map_error(device: &str, e: pcsc::Error) -> UiccError {
    match e {
        pcsc::Error::NoSmartcard | pcsc::Error::RemovedCard => {
            UiccError::NoSim(format!("{device}: no card in the reader ({e})"))
        }
        pcsc::Error::NoReadersAvailable => UiccError::Unavailable(format!("no PC/SC reader: {e}")),
        e => UiccError::Io {
            device: device.to_owned(),
            detail: e.to_string(),
        },
    }
}

/// A connection to the card in one reader.
pub struct PcscChannel {
    card: pcsc::Card,
    reader: String,
}

impl std::fmt::Debug for PcscChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscChannel")
            .field("reader", &self.reader)
            .finish()
    }
}

impl CardChannel for PcscChannel {
    fn name(&self) -> &str {
        &self.reader
    }

    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, UiccError> {
        let mut buf = Zeroizing::new([0u8; pcsc::MAX_BUFFER_SIZE]);
        self.card
            .transmit(apdu, &mut buf[..])
            .map(|r| r.to_vec())
            .map_err(|e| map_error(&self.reader, e))
    }
}

/// Connect to the card in `reader`, or without a name to the first reader that holds a card
/// (T=0 or T=1, shared access). Errors: [`UiccError::Unavailable`] when there is no service
/// or no reader; [`UiccError::NoSim`] when no reader holds a card; [`UiccError::Io`]
/// otherwise.
pub fn open(reader: Option<&str>) -> Result<PcscReader, UiccError> {
    let ctx = establish()?;
    let names: Vec<CString> = match reader {
        Some(name) => vec![CString::new(name).map_err(|_| UiccError::Io {
            device: "PC/SC".into(),
            detail: "a reader name cannot contain a NUL byte".into(),
        })?],
        None => ctx
            .list_readers_owned()
            .map_err(|e| map_error("PC/SC", e))?,
    };
    let mut last = UiccError::Unavailable("no PC/SC reader".into());
    for name in names {
        let shown = format!("PC/SC reader {:?}", name.to_string_lossy());
        match ctx.connect(&name, ShareMode::Shared, Protocols::ANY) {
            Ok(card) => {
                return Ok(UsimCard::new(PcscChannel {
                    card,
                    reader: shown,
                }));
            }
            Err(e) => last = map_error(&shown, e),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without pcscd (as on CI), or without a reader, the backend is unavailable, not broken;
    /// with a reader and a card, it connects.
    #[test]
    fn without_a_service_or_reader_it_is_unavailable() {
        match open(None) {
            Ok(card) => assert!(crate::Uicc::describe(&card).starts_with("PC/SC reader")),
            Err(e) => assert!(
                matches!(e, UiccError::Unavailable(_) | UiccError::NoSim(_)),
                "{e}"
            ),
        }
        assert!(matches!(
            list_readers(),
            Ok(_) | Err(UiccError::Unavailable(_))
        ));
    }
}
