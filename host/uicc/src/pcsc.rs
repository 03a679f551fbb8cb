//! The PC/SC card-reader backend (cargo feature `pcsc`): a SIM in a reader, reached through
//! pcsc-lite with ISO/IEC 7816-4 APDUs. Building needs libpcsclite (Debian: `libpcsclite-dev`);
//! running needs the PC/SC daemon (Debian: `pcscd`).
//!
//! The sequence is the one of SORACOM's clients (`soracom/endorse-client-go`,
//! `endorse/iso7816.go`), made strict where they are lenient:
//!
//! | step | APDU | expectation |
//! | --- | --- | --- |
//! | SELECT MF | `00 A4 00 04 02 3F00` | success |
//! | SELECT EF_DIR | `00 A4 00 04 02 2F00` (+ GET RESPONSE) | an FCP with the record length and count |
//! | READ RECORD n | `00 B2 0n 04 <len>` | the first record whose AID starts with `A0 00 00 00 87 10 02` (ETSI TS 101 220 Annex E) is the USIM |
//! | SELECT ADF USIM | `00 A4 04 04 <len> <AID>` | success |
//! | SELECT EF_IMSI | `00 A4 00 04 02 6F07` | success |
//! | READ BINARY | `00 B0 00 00 09` | EF_IMSI (TS 31.102 §4.2.2) |
//! | AUTHENTICATE | `00 88 00 81 22 10 <RAND> 10 <AUTN>` (+ GET RESPONSE) | see the crate's outcome table |
//!
//! The `61 xx` and `6C xx` replies of the T=0 protocol are followed by [`apdu::transceive`];
//! pcsc-lite does not fetch the response itself.

use crate::apdu::{self, Response};
use crate::{AuthOutcome, Imsi, Uicc, UiccError};
use pcsc::{Context, Protocols, Scope, ShareMode};
use std::ffi::CString;
use zeroize::Zeroizing;

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

/// A SIM in a PC/SC reader.
pub struct PcscReader {
    card: pcsc::Card,
    reader: String,
    aid: Option<Vec<u8>>,
}

impl std::fmt::Debug for PcscReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscReader")
            .field("reader", &self.reader)
            .finish()
    }
}

impl PcscReader {
    /// Connect to the card in `reader`, or without a name to the first reader that holds a
    /// card. Errors: [`UiccError::Unavailable`] when there is no service or no reader;
    /// [`UiccError::NoSim`] when no reader holds a card; [`UiccError::Io`] otherwise.
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
        if names.is_empty() {
            return Err(UiccError::Unavailable("no PC/SC reader".into()));
        }
        let mut last = None;
        for name in names {
            let shown = format!("PC/SC reader {:?}", name.to_string_lossy());
            match ctx.connect(&name, ShareMode::Shared, Protocols::ANY) {
                Ok(card) => {
                    return Ok(PcscReader {
                        card,
                        reader: shown,
                        aid: None,
                    });
                }
                Err(e) => last = Some(map_error(&shown, e)),
            }
        }
        Err(last.unwrap_or_else(|| UiccError::Unavailable("no PC/SC reader".into())))
    }

    fn transceive(&mut self, command: &[u8]) -> Result<Response, UiccError> {
        let device = self.reader.clone();
        let card = &self.card;
        let mut transmit = |a: &[u8]| {
            let mut buf = Zeroizing::new([0u8; pcsc::MAX_BUFFER_SIZE]);
            card.transmit(a, &mut buf[..])
                .map(|r| r.to_vec())
                .map_err(|e| map_error(&device, e))
        };
        apdu::transceive(&self.reader, &mut transmit, command)
    }

    fn expect(&mut self, command: &'static str, apdu: &[u8]) -> Result<Response, UiccError> {
        let reply = self.transceive(apdu)?;
        apdu::expect_ok(&self.reader, command, &reply)?;
        Ok(reply)
    }

    /// The USIM's AID from EF_DIR (read once, then remembered).
    fn usim_aid(&mut self) -> Result<Vec<u8>, UiccError> {
        if let Some(aid) = &self.aid {
            return Ok(aid.clone());
        }
        self.expect("SELECT MF", &apdu::select_file(apdu::MF))?;
        let fcp = self.expect("SELECT EF_DIR", &apdu::select_file(apdu::EF_DIR))?;
        let (len, count) = apdu::fcp_record_layout(fcp.data()).ok_or_else(|| UiccError::Io {
            device: self.reader.clone(),
            detail: "EF_DIR's FCP has no record layout".into(),
        })?;
        let len = u8::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| UiccError::Io {
                device: self.reader.clone(),
                detail: "EF_DIR's records are not 1-255 bytes".into(),
            })?;
        for record in 1..=count {
            let reply = self.expect("READ RECORD EF_DIR", &apdu::read_record(record, len))?;
            if let Some(aid) = apdu::usim_aid_in_dir_record(reply.data()) {
                self.aid = Some(aid.clone());
                return Ok(aid);
            }
        }
        Err(UiccError::NoSim(format!(
            "{}: the card has no USIM application",
            self.reader
        )))
    }

    fn select_usim(&mut self) -> Result<(), UiccError> {
        let aid = self.usim_aid()?;
        self.expect("SELECT ADF USIM", &apdu::select_aid(&aid))
            .map(drop)
    }
}

impl Uicc for PcscReader {
    fn describe(&self) -> String {
        self.reader.clone()
    }

    fn read_imsi(&mut self) -> Result<Imsi, UiccError> {
        self.select_usim()?;
        self.expect("SELECT EF_IMSI", &apdu::select_file(apdu::EF_IMSI))?;
        let content = self.expect("READ BINARY EF_IMSI", &apdu::read_binary(0, 9))?;
        apdu::parse_ef_imsi(content.data()).map_err(|why| UiccError::Io {
            device: self.reader.clone(),
            detail: why.to_owned(),
        })
    }

    fn authenticate(&mut self, rand: &[u8; 16], autn: &[u8; 16]) -> Result<AuthOutcome, UiccError> {
        self.select_usim()?;
        let reply = self.transceive(&apdu::authenticate(rand, autn))?;
        apdu::authenticate_outcome(&self.reader, &reply)
    }
}
