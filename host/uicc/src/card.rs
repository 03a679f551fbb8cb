//! A USIM reached with raw APDUs (ISO/IEC 7816-4): the command sequence of a card reader,
//! independent of how the bytes travel. The PC/SC backend gives it a channel through
//! pcsc-lite; tests give it a simulated card.
//!
//! The sequence is the one of SORACOM's clients (`soracom/endorse-client-go`,
//! `endorse/iso7816.go`), made strict where they are lenient (every step must succeed, and
//! every EF_DIR record is searched rather than only the first):
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
//! The USIM's AID is read once per card and remembered; AUTHENTICATE selects the ADF again
//! first, as both clients do. The `61 xx` and `6C xx` replies of T=0 are followed by
//! [`apdu::transceive`].

use crate::apdu::{self, Response};
use crate::{AuthOutcome, Imsi, Uicc, UiccError};

/// Moves one APDU to a card and its raw reply (data and status word) back.
pub trait CardChannel: Send {
    /// The reader or channel, for error messages, e.g. `PC/SC reader "Gemalto USB"`.
    fn name(&self) -> &str;

    /// Send `apdu` and return the card's raw reply. Errors: [`UiccError::NoSim`] when the
    /// card is gone; [`UiccError::Io`] naming the reader otherwise.
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, UiccError>;
}

/// A USIM behind a [`CardChannel`].
#[derive(Debug)]
pub struct UsimCard<C> {
    channel: C,
    aid: Option<Vec<u8>>,
}

impl<C: CardChannel> UsimCard<C> {
    /// Talk to the card behind `channel`.
    pub fn new(channel: C) -> Self {
        UsimCard { channel, aid: None }
    }

    /// The channel.
    pub fn channel(&self) -> &C {
        &self.channel
    }

    fn io(&self, detail: &str) -> UiccError {
        UiccError::Io {
            device: self.channel.name().to_owned(),
            detail: detail.to_owned(),
        }
    }

    fn transceive(&mut self, command: &[u8]) -> Result<Response, UiccError> {
        let device = self.channel.name().to_owned();
        let channel = &mut self.channel;
        apdu::transceive(&device, &mut |a: &[u8]| channel.transmit(a), command)
    }

    fn expect(&mut self, command: &'static str, apdu: &[u8]) -> Result<Response, UiccError> {
        let reply = self.transceive(apdu)?;
        apdu::expect_ok(self.channel.name(), command, &reply)?;
        Ok(reply)
    }

    /// The USIM's AID from EF_DIR (read once, then remembered).
    fn usim_aid(&mut self) -> Result<Vec<u8>, UiccError> {
        if let Some(aid) = &self.aid {
            return Ok(aid.clone());
        }
        self.expect("SELECT MF", &apdu::select_file(apdu::MF))?;
        let fcp = self.expect("SELECT EF_DIR", &apdu::select_file(apdu::EF_DIR))?;
        let (len, count) = apdu::fcp_record_layout(fcp.data())
            .ok_or_else(|| self.io("EF_DIR's FCP has no record layout"))?;
        let len = u8::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| self.io("EF_DIR's records are not 1-255 bytes"))?;
        for record in 1..=count {
            let reply = self.expect("READ RECORD EF_DIR", &apdu::read_record(record, len))?;
            if let Some(aid) = apdu::usim_aid_in_dir_record(reply.data()) {
                self.aid = Some(aid.clone());
                return Ok(aid);
            }
        }
        Err(UiccError::NoSim(format!(
            "{}: the card has no USIM application",
            self.channel.name()
        )))
    }

    fn select_usim(&mut self) -> Result<(), UiccError> {
        let aid = self.usim_aid()?;
        self.expect("SELECT ADF USIM", &apdu::select_aid(&aid))
            .map(drop)
    }
}

impl<C: CardChannel> Uicc for UsimCard<C> {
    fn describe(&self) -> String {
        self.channel.name().to_owned()
    }

    fn read_imsi(&mut self) -> Result<Imsi, UiccError> {
        self.select_usim()?;
        self.expect("SELECT EF_IMSI", &apdu::select_file(apdu::EF_IMSI))?;
        let content = self.expect("READ BINARY EF_IMSI", &apdu::read_binary(0, 9))?;
        apdu::parse_ef_imsi(content.data()).map_err(|why| self.io(why))
    }

    fn authenticate(&mut self, rand: &[u8; 16], autn: &[u8; 16]) -> Result<AuthOutcome, UiccError> {
        self.select_usim()?;
        let reply = self.transceive(&apdu::authenticate(rand, autn))?;
        apdu::authenticate_outcome(self.channel.name(), &reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key128;
    use crate::aka::{UsimVerdict, generate_vector, recover_sqn_ms, usim_authenticate};
    use crate::milenage::Subscriber;

    const USIM_AID: &str = "A0000000871002FF33FF018900000100";

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn subscriber() -> Subscriber {
        let k: [u8; 16] = h("465b5ce8b199b49faa5f0a2ee238a6bc").try_into().unwrap();
        let opc: [u8; 16] = h("cd63cb71954a9f4e48a5994e37a02baf").try_into().unwrap();
        Subscriber::new(Key128::new(k), Key128::new(opc))
    }

    /// A T=0 UICC with a USIM (preceded by an ISIM in EF_DIR), as far as the sequence needs:
    /// it answers `61 xx` to SELECT and AUTHENTICATE, `6C xx` to a GET RESPONSE with the wrong
    /// Le, and runs Milenage for AUTHENTICATE with its own SQN_MS.
    struct SimulatedUsim {
        current: u16,
        usim_selected: bool,
        pending: Vec<u8>,
        sqn_ms: u64,
        log: Vec<String>,
        present: bool,
    }

    impl SimulatedUsim {
        fn new(sqn_ms: u64) -> Self {
            SimulatedUsim {
                current: 0,
                usim_selected: false,
                pending: Vec::new(),
                sqn_ms,
                log: Vec::new(),
                present: true,
            }
        }

        /// Keep `data` for GET RESPONSE and say how much there is.
        fn respond_later(&mut self, data: Vec<u8>) -> Vec<u8> {
            let len = data.len() as u8;
            self.pending = data;
            vec![0x61, len]
        }
    }

    impl CardChannel for SimulatedUsim {
        fn name(&self) -> &str {
            "simulated reader"
        }

        fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, UiccError> {
            self.log.push(hex::encode_upper(apdu));
            if !self.present {
                return Err(UiccError::NoSim("simulated reader: no card".into()));
            }
            let ok = |mut data: Vec<u8>| {
                data.extend_from_slice(&[0x90, 0x00]);
                data
            };
            Ok(match (apdu[1], apdu[2]) {
                (0xA4, 0x00) => {
                    let fid = u16::from_be_bytes([apdu[5], apdu[6]]);
                    let fcp = match fid {
                        apdu::MF => {
                            self.usim_selected = false;
                            h("6207 8201 78 83023F00")
                        }
                        apdu::EF_DIR => h("620E 8205 4221002602 83022F00 8A0105"),
                        apdu::EF_IMSI if self.usim_selected => {
                            h("620C 8202 4121 83026F07 80020009")
                        }
                        _ => return Ok(vec![0x6A, 0x82]),
                    };
                    self.current = fid;
                    self.respond_later(fcp)
                }
                (0xA4, 0x04) if apdu[5..] == h(USIM_AID)[..] => {
                    self.usim_selected = true;
                    self.respond_later(h("6208 8202 7821 8402A000"))
                }
                (0xA4, 0x04) => vec![0x6A, 0x82],
                (0xC0, _) if self.pending.is_empty() => vec![0x69, 0x85],
                (0xC0, _) if usize::from(apdu[4]) != self.pending.len() => {
                    vec![0x6C, self.pending.len() as u8]
                }
                (0xC0, _) => ok(std::mem::take(&mut self.pending)),
                (0xB2, record) if self.current == apdu::EF_DIR => {
                    let body = match record {
                        1 => "61184F10A0000000871004FF33FF01890000010050044953494D",
                        2 => "61184F10A0000000871002FF33FF01890000010050045553494D",
                        _ => return Ok(vec![0x6A, 0x83]),
                    };
                    let mut data = h(body);
                    data.resize(usize::from(apdu[4]), 0xFF);
                    ok(data)
                }
                (0xB0, _) if self.current == apdu::EF_IMSI => ok(h("08 49 04 01 13 32 54 76 98")),
                (0x88, _) if self.usim_selected => {
                    let rand: [u8; 16] = apdu[6..22].try_into().unwrap();
                    let autn: [u8; 16] = apdu[23..39].try_into().unwrap();
                    match usim_authenticate(&subscriber(), self.sqn_ms, &rand, &autn) {
                        UsimVerdict::MacFailure => vec![0x98, 0x62],
                        UsimVerdict::Resync {
                            outcome: AuthOutcome::SyncFailure { auts },
                        } => self.respond_later([&[0xDC, 0x0E][..], &auts].concat()),
                        UsimVerdict::Accept {
                            sqn,
                            outcome: AuthOutcome::Res { res, ck, ik },
                        } => {
                            self.sqn_ms = sqn;
                            // With Kc (GSM access), 53 bytes as SORACOM's SIMs answer.
                            let data = [
                                &[0xDB, 0x08][..],
                                res.expose(),
                                &[0x10],
                                ck.expose(),
                                &[0x10],
                                ik.expose(),
                                &[0x08],
                                &[0x4B; 8],
                            ]
                            .concat();
                            self.respond_later(data)
                        }
                        _ => unreachable!(),
                    }
                }
                _ => vec![0x6D, 0x00],
            })
        }
    }

    #[test]
    fn the_reader_sequence_against_a_simulated_usim() {
        let mut card = UsimCard::new(SimulatedUsim::new(0x20));
        assert_eq!(card.read_imsi().unwrap().as_str(), "440103123456789");
        assert_eq!(
            card.channel().log,
            [
                "00A40004023F00",
                "00C0000009",
                "00A40004022F00",
                "00C0000010",
                "00B2010426",
                "00B2020426",
                &format!("00A4040410{USIM_AID}"),
                "00C000000A",
                "00A40004026F07",
                "00C000000E",
                "00B0000009",
            ]
        );

        // A fresh challenge: RES = XRES; AUTHENTICATE selects the ADF again, and the AID is
        // not read again.
        let v = generate_vector(&subscriber(), 0x21, [0x80, 0x00], [3; 16]);
        let AuthOutcome::Res { res, ck, .. } = card.authenticate(&v.rand, &v.autn).unwrap() else {
            panic!("no RES");
        };
        assert_eq!((res, ck), (v.xres.clone(), v.ck.clone()));
        let log = &card.channel().log[11..];
        assert_eq!(log[0], format!("00A4040410{USIM_AID}"));
        assert!(log[2].starts_with("0088008122"));
        assert_eq!(log[3], "00C0000035");

        // Replayed: AUTS with the card's SQN_MS; a stranger's challenge: MAC failure.
        let Ok(AuthOutcome::SyncFailure { auts }) = card.authenticate(&v.rand, &v.autn) else {
            panic!("no AUTS");
        };
        assert_eq!(recover_sqn_ms(&subscriber(), &v.rand, &auts), Ok(0x21));
        let stranger = Subscriber::new(Key128::new([9; 16]), subscriber().opc().clone());
        let w = generate_vector(&stranger, 0x30, [0x80, 0x00], [4; 16]);
        assert_eq!(
            card.authenticate(&w.rand, &w.autn),
            Err(UiccError::MacFailure)
        );
    }

    #[test]
    fn a_card_without_a_usim_or_without_a_card() {
        struct NoUsim;
        impl CardChannel for NoUsim {
            fn name(&self) -> &str {
                "r"
            }
            fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, UiccError> {
                Ok(match apdu[1] {
                    0xA4 if apdu[6] == 0x00 && apdu[5] == 0x2F => {
                        h("620E 8205 4221002601 83022F00 8A0105 9000")
                    }
                    0xA4 => h("9000"),
                    _ => {
                        let mut r = h("61184F10A0000000871004FF33FF01890000010050044953494D");
                        r.resize(0x26, 0xFF);
                        r.extend_from_slice(&[0x90, 0x00]);
                        r
                    }
                })
            }
        }
        let err = UsimCard::new(NoUsim).read_imsi().unwrap_err();
        assert_eq!(
            err,
            UiccError::NoSim("r: the card has no USIM application".into())
        );

        let mut gone = SimulatedUsim::new(0);
        gone.present = false;
        assert!(matches!(
            UsimCard::new(gone).read_imsi(),
            Err(UiccError::NoSim(_))
        ));
    }

    #[test]
    fn a_failing_step_names_its_command() {
        struct Refuses;
        impl CardChannel for Refuses {
            fn name(&self) -> &str {
                "r"
            }
            fn transmit(&mut self, _: &[u8]) -> Result<Vec<u8>, UiccError> {
                Ok(vec![0x6A, 0x82])
            }
        }
        let err = UsimCard::new(Refuses).read_imsi().unwrap_err();
        assert_eq!(err.to_string(), "r: the card answered 6A 82 to SELECT MF");
    }
}
