//! The UICC capability of SIM-authenticated mode: read the SIM's IMSI and run the USIM's
//! AUTHENTICATE command (3G security context) with a RAND and an AUTN from SORACOM's Keys API.
//!
//! In SIM-authenticated mode a device proves that it holds its SIM through 3GPP AKA
//! (TS 33.102 §6.3) with the Keys API, then signs each provisioning request with the CK that
//! AKA yields. SORACOM's open-source clients (`soracom/endorse-client-go`,
//! `soracom/soracom-krypton-client-for-java`) reach the SIM through a card reader or a modem;
//! this crate does the same for the host, one capability in the way Spin's factors are built:
//! a trait ([`Uicc`]) and backends behind it.
//!
//! | backend | module | reaches the USIM through | for |
//! | --- | --- | --- | --- |
//! | modem | [`modem`] | a serial port and AT commands: `AT+CIMI`, `AT+CSIM` (3GPP TS 27.007 §8.17) | gateways with a cellular modem |
//! | PC/SC reader | `pcsc` (cargo feature `pcsc`), on [`card`] | a card reader, ISO/IEC 7816-4 APDUs (TS 31.102 §7) | a SIM in a USB reader |
//! | software SIM | [`soft`] | a JSON file with K, OPc, AMF and SQN; Milenage (TS 35.206) | tests, demos, CI |
//!
//! The PC/SC backend needs libpcsclite to build (Debian: `libpcsclite-dev`) and the PC/SC
//! daemon to run (Debian: `pcscd`); the others need no system library.
//!
//! [`detect::open`] picks one from a [`detect::UiccConfig`] (`autodetect` probes what exists).
//! The APDUs both hardware backends send are built and parsed by the pure functions of
//! [`apdu`], and a card reader's command sequence is [`card`]'s; the Milenage functions and the
//! network's side of AKA (for a mock Keys API) are in [`milenage`] and [`aka`].
//!
//! # Example
//!
//! A software SIM answers a challenge that the network's side made, as a Keys API would:
//!
//! ```
//! use krypton_uicc::soft::{SimRecord, SoftSim};
//! use krypton_uicc::{AuthOutcome, BackendKind, UiccConfig, aka};
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("sim.json");
//! // K and OPc of 3GPP TS 35.208 test set 1.
//! let record = SimRecord::parse(
//!     br#"{"imsi": "001010123456789", "k": "465b5ce8b199b49faa5f0a2ee238a6bc",
//!          "opc": "cd63cb71954a9f4e48a5994e37a02baf", "amf": "8000", "sqn": "000000000000"}"#,
//! )?;
//! SoftSim::create(&path, &record)?;
//!
//! let config = UiccConfig { backend: BackendKind::Soft, sim_file: Some(path), ..UiccConfig::default() };
//! let mut uicc = krypton_uicc::open(&config)?;
//! assert_eq!(uicc.read_imsi()?.as_str(), "001010123456789");
//!
//! let challenge = aka::generate_vector(&record.subscriber(), 1, record.amf, [7; 16]);
//! match uicc.authenticate(&challenge.rand, &challenge.autn)? {
//!     // RES goes to the Keys API's verify call; CK signs the provisioning requests.
//!     AuthOutcome::Res { res, ck, .. } => assert_eq!((res, ck), (challenge.xres, challenge.ck)),
//!     // The SIM has seen a higher SQN: AUTS (and RAND) go back to the Keys API.
//!     AuthOutcome::SyncFailure { auts } => unreachable!("{auts:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # AUTHENTICATE outcomes (fail-closed)
//!
//! Anything that is not one of the two well-formed answers is an error; no partial result is
//! ever returned.
//!
//! | the USIM answers | [`Uicc::authenticate`] returns |
//! | --- | --- |
//! | `DB` tag, then RES (4–16 bytes), CK (16), IK (16) and optionally Kc, status `90 00` | `Ok(`[`AuthOutcome::Res`]`)` |
//! | `DC` tag, then a 14-byte AUTS (the SQN was not fresh, TS 33.102 §6.3.5), status `90 00` | `Ok(`[`AuthOutcome::SyncFailure`]`)` |
//! | status `98 62` (authentication error, incorrect MAC, TS 31.102 §7.3.1) | `Err(`[`UiccError::MacFailure`]`)` |
//! | any other status word | `Err(`[`UiccError::Status`]`)` |
//! | a reply cut short, with wrong lengths, an unknown tag, trailing bytes, or no reply in time | `Err(`[`UiccError::Io`]`)` |
//! | no SIM in the modem or reader, or no software SIM file | `Err(`[`UiccError::NoSim`]`)` |
//! | no backend configured or found | `Err(`[`UiccError::Unavailable`]`)` |
//!
//! # Secrets
//!
//! RES, CK and IK (and a software SIM's K and OPc) are held in [`Secret`] / [`Key128`]: their
//! `Debug` prints `<redacted N bytes>` and they are zeroized on drop. No error, log line or
//! `Debug` output of this crate contains them, nor the raw AUTHENTICATE reply that carries them.
//!
//! # Sources
//!
//! 3GPP TS 33.102 (AKA, resynchronisation), TS 35.205/35.206/35.208 (Milenage and its test
//! data), TS 31.102 (USIM files and the AUTHENTICATE command), TS 27.007 (`+CIMI`, `+CSIM`,
//! `+CME ERROR`), ISO/IEC 7816-4 (APDUs, status words, SELECT, READ RECORD/BINARY, GET
//! RESPONSE), and SORACOM's clients named above for the exact command sequences they send.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod aka;
pub mod apdu;
pub mod card;
pub mod detect;
pub mod milenage;
pub mod modem;
#[cfg(feature = "pcsc")]
pub mod pcsc;
mod secret;
pub mod soft;

pub use detect::{BackendKind, UiccConfig, open};
pub use secret::{Key128, Secret};

use std::fmt;

/// The UICC as SIM-authenticated mode needs it: the IMSI and AUTHENTICATE.
///
/// Calls block on I/O (a serial port, a card reader, a file): an async host calls them from a
/// blocking task. One call at a time per value (`&mut self`); share one behind a mutex.
pub trait Uicc: Send {
    /// What this backend talks to, for logs and error messages: e.g. `modem /dev/ttyUSB2`,
    /// `PC/SC reader "Gemalto USB"`, `software SIM /etc/sim.json`. Never a secret.
    fn describe(&self) -> String;

    /// Read the IMSI (3GPP TS 23.003 §2.2: 6–15 decimal digits; from EF_IMSI, TS 31.102
    /// §4.2.2, or `AT+CIMI`, TS 27.007 §5.6).
    ///
    /// Errors: [`UiccError::NoSim`] when there is no SIM; [`UiccError::Io`] when the device
    /// fails or answers something that is not an IMSI; [`UiccError::Status`] for a status word.
    fn read_imsi(&mut self) -> Result<Imsi, UiccError>;

    /// Run AUTHENTICATE in the 3G security context (TS 31.102 §7.1.2, P2 = `81`) with a
    /// 16-byte RAND and a 16-byte AUTN. See the crate's outcome table: well-formed answers
    /// are `Ok`, everything else is an error.
    fn authenticate(&mut self, rand: &[u8; 16], autn: &[u8; 16]) -> Result<AuthOutcome, UiccError>;

    /// Bound every later call by `deadline` (`None`: no bound but the backend's own timeouts):
    /// a call that would wait past it stops there with [`UiccError::Io`] naming the device. A
    /// host passes what is left of its run. The modem honours it between reads; a backend
    /// whose transfer cannot be interrupted (a PC/SC `SCardTransmit`, a software SIM file)
    /// ignores it, and the caller bounds its wait itself.
    fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        let _ = deadline;
    }
}

impl<T: Uicc + ?Sized> Uicc for Box<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn read_imsi(&mut self) -> Result<Imsi, UiccError> {
        (**self).read_imsi()
    }
    fn authenticate(&mut self, rand: &[u8; 16], autn: &[u8; 16]) -> Result<AuthOutcome, UiccError> {
        (**self).authenticate(rand, autn)
    }
    fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        (**self).set_deadline(deadline)
    }
}

/// The two well-formed answers to AUTHENTICATE (TS 31.102 §7.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// "Successful 3G authentication" (tag `DB`): the network was authenticated.
    Res {
        /// RES, 4–16 bytes (8 with Milenage); sent to the Keys API's verify call.
        res: Secret,
        /// CK, 16 bytes: the key that signs SIM-mode requests.
        ck: Secret,
        /// IK, 16 bytes.
        ik: Secret,
    },
    /// "Synchronisation failure" (tag `DC`): the SQN in AUTN was not fresh. AUTS (14 bytes:
    /// SQN_MS xor AK*, 6, then MAC-S, 8; TS 33.102 §6.3.3) goes back to the Keys API, which
    /// resynchronises and sends a new challenge. AUTS is not secret.
    SyncFailure {
        /// AUTS, 14 bytes.
        auts: [u8; 14],
    },
}

/// Why a UICC call failed. Every variant names the device (port, reader, file) where there is
/// one, and none carries a secret or a raw reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UiccError {
    /// There is no SIM: the modem says so (`+CME ERROR: 10`, "SIM not inserted", TS 27.007
    /// §9.2.1), the reader has no card, or the software SIM file does not exist.
    #[error("no SIM: {0}")]
    NoSim(String),
    /// The reader, modem or software SIM file failed: it could not be opened, read or written,
    /// timed out, or answered something malformed. `device` names the port, reader or file.
    #[error("{device}: {detail}")]
    Io {
        /// The port (`/dev/ttyUSB2`), reader name or file path.
        device: String,
        /// What went wrong, without secrets.
        detail: String,
    },
    /// The card answered a status word (ISO/IEC 7816-4 §5.1.3) other than success.
    #[error("{device}: the card answered {sw1:02X} {sw2:02X} to {command}")]
    Status {
        /// The port or reader.
        device: String,
        /// The command, e.g. `AUTHENTICATE`, `SELECT EF_IMSI`.
        command: &'static str,
        /// SW1.
        sw1: u8,
        /// SW2.
        sw2: u8,
    },
    /// The USIM rejected the challenge: MAC-A did not match (status `98 62`, TS 31.102
    /// §7.3.1; TS 33.102 §6.3.3), so the network and the SIM do not share K.
    #[error("authentication rejected by the SIM: the network's MAC did not match")]
    MacFailure,
    /// No backend can serve: none configured, none found by autodetect, or the backend was
    /// not built in (e.g. PC/SC without the `pcsc` feature).
    #[error("no UICC available: {0}")]
    Unavailable(String),
}

/// An IMSI: 6–15 decimal digits (3GPP TS 23.003 §2.2 allows at most 15; the clients and this
/// crate refuse fewer than 6, which cannot hold an MCC and an MNC with an MSIN).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Imsi(String);

impl Imsi {
    /// Check `text` (no surrounding spaces) and wrap it. Errors: a reason, in plain words,
    /// that does not repeat `text`.
    pub fn parse(text: &str) -> Result<Imsi, &'static str> {
        if !(6..=15).contains(&text.len()) {
            return Err("an IMSI has 6 to 15 digits");
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err("an IMSI has decimal digits only");
        }
        Ok(Imsi(text.to_owned()))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Imsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Imsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Imsi({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imsi_rules() {
        assert_eq!(
            Imsi::parse("440103123456789").unwrap().as_str(),
            "440103123456789"
        );
        assert!(Imsi::parse("44010").is_err());
        assert!(Imsi::parse("4401031234567890").is_err());
        assert!(Imsi::parse("44010312345678a").is_err());
        assert!(Imsi::parse(" 44010312345678").is_err());
    }

    #[test]
    fn outcome_debug_hides_keys() {
        let o = AuthOutcome::Res {
            res: Secret::from_slice(&[0x5A; 8]),
            ck: Secret::from_slice(&[0x5B; 16]),
            ik: Secret::from_slice(&[0x5C; 16]),
        };
        let shown = format!("{o:?}");
        assert!(shown.contains("<redacted 16 bytes>"), "{shown}");
        assert!(!shown.contains("90") && !shown.contains("91") && !shown.contains("92"));
    }
}
