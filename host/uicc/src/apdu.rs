//! The USIM's APDUs, built and parsed by pure functions: the one place that knows bytes on the
//! wire, shared by the modem backend (APDUs inside `AT+CSIM`) and the PC/SC backend.
//!
//! Commands use class `00` (ISO/IEC 7816-4 §5.4.1) as SORACOM's clients do
//! (`soracom/endorse-client-go`, `endorse/iso7816.go`). A reply is data followed by the
//! status word SW1 SW2 (ISO/IEC 7816-4 §5.1.3). Under the T=0 protocol a card that has data
//! answers `61 xx` ("xx bytes still available") and the data is fetched with GET RESPONSE;
//! a card that wants another Le answers `6C xx`. [`transceive`] does both dances so that the
//! backends only move bytes.

use crate::{AuthOutcome, Imsi, Secret, UiccError};
use std::fmt;
use zeroize::Zeroizing;

/// File ID of the master file, MF (ETSI TS 102 221 §8.2).
pub const MF: u16 = 0x3F00;
/// File ID of EF_DIR, the list of applications on the UICC (ETSI TS 102 221 §13.1).
pub const EF_DIR: u16 = 0x2F00;
/// File ID of EF_IMSI under the USIM ADF (3GPP TS 31.102 §4.2.2).
pub const EF_IMSI: u16 = 0x6F07;

/// The first 7 bytes of every USIM application ID: the 3GPP RID `A0 00 00 00 87` and the
/// application code `10 02` (ETSI TS 101 220 Annex E; 3GPP TS 31.102 Annex A). Selecting by
/// this partial AID ("DF name", ISO/IEC 7816-4 §7.1.1) reaches the USIM on any card.
pub const USIM_AID_PREFIX: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x87, 0x10, 0x02];

/// SW1 SW2 of AUTHENTICATE when MAC-A is wrong: "authentication error, incorrect MAC"
/// (3GPP TS 31.102 §7.3.1).
pub const SW_AUTH_MAC_FAILURE: (u8, u8) = (0x98, 0x62);

/// Length of AUTS in bytes (TS 33.102 §6.3.3: SQN_MS xor AK*, 48 bits, and MAC-S, 64 bits).
pub const AUTS_LEN: usize = 14;

/// SELECT by file ID, returning the FCP template: `00 A4 00 04 02 <fid>`.
pub fn select_file(fid: u16) -> Vec<u8> {
    let [hi, lo] = fid.to_be_bytes();
    vec![0x00, 0xA4, 0x00, 0x04, 0x02, hi, lo]
}

/// SELECT by DF name (an application ID, whole or its first bytes), returning the FCP
/// template: `00 A4 04 04 <len> <aid>`. `aid` is 1–16 bytes (ISO/IEC 7816-5).
pub fn select_aid(aid: &[u8]) -> Vec<u8> {
    debug_assert!((1..=16).contains(&aid.len()));
    let mut apdu = vec![0x00, 0xA4, 0x04, 0x04, aid.len() as u8];
    apdu.extend_from_slice(aid);
    apdu
}

/// GET RESPONSE for `le` bytes (`00` means 256): `00 C0 00 00 <le>`.
pub fn get_response(le: u8) -> Vec<u8> {
    vec![0x00, 0xC0, 0x00, 0x00, le]
}

/// READ RECORD `record` (1-based, absolute mode) of the current EF, `le` bytes:
/// `00 B2 <record> 04 <le>`.
pub fn read_record(record: u8, le: u8) -> Vec<u8> {
    vec![0x00, 0xB2, record, 0x04, le]
}

/// READ BINARY of the current EF at `offset` (0–32767), `le` bytes: `00 B0 <offset> <le>`.
pub fn read_binary(offset: u16, le: u8) -> Vec<u8> {
    let [hi, lo] = (offset & 0x7FFF).to_be_bytes();
    vec![0x00, 0xB0, hi, lo, le]
}

/// AUTHENTICATE in the 3G security context (TS 31.102 §7.1.2, P2 = `81`, no Le as SORACOM's
/// clients send it): `00 88 00 81 22 10 <RAND> 10 <AUTN>`, 39 bytes.
pub fn authenticate(rand: &[u8; 16], autn: &[u8; 16]) -> Vec<u8> {
    let mut apdu = Vec::with_capacity(39);
    apdu.extend_from_slice(&[0x00, 0x88, 0x00, 0x81, 0x22, 0x10]);
    apdu.extend_from_slice(rand);
    apdu.push(0x10);
    apdu.extend_from_slice(autn);
    apdu
}

/// A card's reply: its data (zeroized on drop: an AUTHENTICATE reply carries CK and IK) and
/// its status word. `Debug` shows the status word and the data's length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    data: Zeroizing<Vec<u8>>,
    /// SW1.
    pub sw1: u8,
    /// SW2.
    pub sw2: u8,
}

impl Response {
    /// Split raw reply bytes into data and status word. `None` when shorter than 2 bytes.
    pub fn parse(bytes: &[u8]) -> Option<Response> {
        let split = bytes.len().checked_sub(2)?;
        Some(Response {
            data: Zeroizing::new(bytes[..split].to_vec()),
            sw1: bytes[split],
            sw2: bytes[split + 1],
        })
    }

    /// The data before the status word.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Whether the command succeeded: `90 00`, or `91 xx` ("normal ending, with a proactive
    /// command pending", ETSI TS 102 221 §10.2.1.1), which SIM toolkit cards answer.
    pub fn is_ok(&self) -> bool {
        (self.sw1, self.sw2) == (0x90, 0x00) || self.sw1 == 0x91
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Response {{ {} data bytes, sw {:02X} {:02X} }}",
            self.data.len(),
            self.sw1,
            self.sw2
        )
    }
}

/// Send `command` with `transmit` (one APDU out, the raw reply back) and follow the T=0
/// dances: on `61 xx` fetch the data with GET RESPONSE (again while the card answers `61`),
/// on `6C xx` send the command again with Le = `xx`. Returns the final reply with all data
/// gathered; its status word is not checked here.
///
/// Errors: whatever `transmit` returns; [`UiccError::Io`] naming `device` when a reply is
/// shorter than a status word, grows past 4 KiB, or the card keeps asking for more.
pub fn transceive<F>(device: &str, transmit: &mut F, command: &[u8]) -> Result<Response, UiccError>
where
    F: FnMut(&[u8]) -> Result<Vec<u8>, UiccError>,
{
    const MAX_DATA: usize = 4096;
    const MAX_ROUNDS: usize = 16;
    let malformed = |detail: &str| UiccError::Io {
        device: device.to_owned(),
        detail: detail.to_owned(),
    };
    // Room for the largest reply up front: a Vec that grows frees its old buffer without
    // zeroizing it.
    let mut data = Zeroizing::new(Vec::with_capacity(MAX_DATA + 258));
    let mut next = command.to_vec();
    let mut le_retried = false;
    for _ in 0..MAX_ROUNDS {
        let raw = Zeroizing::new(transmit(&next)?);
        let reply =
            Response::parse(&raw).ok_or_else(|| malformed("reply shorter than a status word"))?;
        data.extend_from_slice(reply.data());
        if data.len() > MAX_DATA {
            return Err(malformed("reply longer than 4096 bytes"));
        }
        match reply.sw1 {
            0x61 => next = get_response(reply.sw2),
            0x6C if !le_retried => {
                le_retried = true;
                next = with_le(&next, reply.sw2);
            }
            _ => {
                return Ok(Response {
                    data,
                    sw1: reply.sw1,
                    sw2: reply.sw2,
                });
            }
        }
    }
    Err(malformed(
        "the card kept answering 61 xx (more data) to GET RESPONSE",
    ))
}

/// `command` with its Le set to `le`: a 5-byte command (case 2) has its last byte replaced,
/// a longer one (case 3) gets Le appended.
fn with_le(command: &[u8], le: u8) -> Vec<u8> {
    let mut apdu = command.to_vec();
    if apdu.len() == 5 {
        apdu[4] = le;
    } else {
        apdu.push(le);
    }
    apdu
}

/// One BER-TLV data object at the start of `data` (ISO/IEC 7816-4 §5.2.2: tags of one or
/// two bytes, lengths up to `82 xx xx`): `(tag, value, rest)`. `None` when cut short.
fn next_tlv(data: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let (&first, mut rest) = data.split_first()?;
    let mut tag = u16::from(first);
    if first & 0x1F == 0x1F {
        let (&second, after) = rest.split_first()?;
        tag = (tag << 8) | u16::from(second);
        rest = after;
    }
    let (&len0, after) = rest.split_first()?;
    rest = after;
    let len = match len0 {
        0x00..=0x7F => usize::from(len0),
        0x81 => {
            let (&l, after) = rest.split_first()?;
            rest = after;
            usize::from(l)
        }
        0x82 => {
            let (l, after) = rest.split_at_checked(2)?;
            rest = after;
            usize::from(u16::from_be_bytes([l[0], l[1]]))
        }
        _ => return None,
    };
    let (value, rest) = rest.split_at_checked(len)?;
    Some((tag, value, rest))
}

/// The value of the first data object tagged `tag` among the objects in `data`.
fn find_tlv(mut data: &[u8], tag: u16) -> Option<&[u8]> {
    while !data.is_empty() {
        // Padding between objects (`00` or `FF`, ISO/IEC 7816-4 §5.2.2).
        if data[0] == 0x00 || data[0] == 0xFF {
            data = &data[1..];
            continue;
        }
        let (t, value, rest) = next_tlv(data)?;
        if t == tag {
            return Some(value);
        }
        data = rest;
    }
    None
}

/// The record length and record count of a linear-fixed EF from its FCP template (tag `62`,
/// file descriptor tag `82`: descriptor byte, data coding byte, record length on 2 bytes,
/// number of records; ETSI TS 102 221 §11.1.1.4.3). `None` when the FCP has no such data.
pub fn fcp_record_layout(fcp: &[u8]) -> Option<(u16, u8)> {
    let template = find_tlv(fcp, 0x62)?;
    let descriptor = find_tlv(template, 0x82)?;
    match descriptor {
        [_, _, hi, lo, count] => Some((u16::from_be_bytes([*hi, *lo]), *count)),
        _ => None,
    }
}

/// The USIM application ID in one EF_DIR record (application template tag `61`, AID tag
/// `4F`; ETSI TS 102 221 §13.1), when that record is a USIM's (its AID starts with
/// [`USIM_AID_PREFIX`]). An unused record (all `FF`) or another application gives `None`.
pub fn usim_aid_in_dir_record(record: &[u8]) -> Option<Vec<u8>> {
    let template = find_tlv(record, 0x61)?;
    let aid = find_tlv(template, 0x4F)?;
    (aid.len() <= 16 && aid.starts_with(&USIM_AID_PREFIX)).then(|| aid.to_vec())
}

/// The IMSI in EF_IMSI's content (TS 31.102 §4.2.2): byte 1 is the length L (1–8) of the
/// rest; byte 2 has digit 1 in its high nibble and `1001` (odd number of digits) or `0001`
/// (even) in its low one; each later byte has the next digit in its low nibble and the one
/// after in its high nibble, `F` filling the last. Errors: a reason that does not repeat the
/// bytes.
pub fn parse_ef_imsi(content: &[u8]) -> Result<Imsi, &'static str> {
    let (&len, rest) = content.split_first().ok_or("EF_IMSI is empty")?;
    let len = usize::from(len);
    if !(1..=8).contains(&len) || rest.len() < len {
        return Err("EF_IMSI has a bad length byte");
    }
    let bytes = &rest[..len];
    if bytes[0] & 0x07 != 0x01 {
        return Err("EF_IMSI does not hold an IMSI (bad identity type)");
    }
    let odd = bytes[0] & 0x08 != 0;
    let mut nibbles = vec![bytes[0] >> 4];
    for b in &bytes[1..] {
        nibbles.push(b & 0x0F);
        nibbles.push(b >> 4);
    }
    while nibbles.last() == Some(&0x0F) {
        nibbles.pop();
    }
    if nibbles.iter().any(|&n| n > 9) {
        return Err("EF_IMSI has a nibble that is not a decimal digit");
    }
    if (nibbles.len() % 2 == 1) != odd {
        return Err("EF_IMSI's parity bit does not match its number of digits");
    }
    let digits: String = nibbles.iter().map(|&n| char::from(b'0' + n)).collect();
    Imsi::parse(&digits)
}

/// Parse AUTHENTICATE's response data (TS 31.102 §7.1.2.1): `DB` then length-prefixed RES
/// (4–16 bytes), CK (16), IK (16) and, when the card supports GSM access, Kc (8); or `DC` then
/// a length-prefixed 14-byte AUTS. Nothing may follow. Errors: a reason that does not repeat
/// the bytes.
pub fn parse_authenticate(data: &[u8]) -> Result<AuthOutcome, &'static str> {
    fn field<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
        let (&len, after) = rest
            .split_first()
            .ok_or("AUTHENTICATE response cut short")?;
        let (value, after) = after
            .split_at_checked(usize::from(len))
            .ok_or("AUTHENTICATE response cut short")?;
        *rest = after;
        Ok(value)
    }
    let (&tag, mut rest) = data.split_first().ok_or("empty AUTHENTICATE response")?;
    match tag {
        0xDB => {
            let res = field(&mut rest)?;
            let ck = field(&mut rest)?;
            let ik = field(&mut rest)?;
            if !(4..=16).contains(&res.len()) || ck.len() != 16 || ik.len() != 16 {
                return Err("AUTHENTICATE response has a RES, CK or IK of the wrong length");
            }
            if !rest.is_empty() {
                let kc = field(&mut rest)?;
                if kc.len() != 8 || !rest.is_empty() {
                    return Err("AUTHENTICATE response has unexpected bytes after IK");
                }
            }
            Ok(AuthOutcome::Res {
                res: Secret::from_slice(res),
                ck: Secret::from_slice(ck),
                ik: Secret::from_slice(ik),
            })
        }
        0xDC => {
            let auts = field(&mut rest)?;
            let auts: [u8; AUTS_LEN] = auts
                .try_into()
                .map_err(|_| "AUTHENTICATE synchronisation failure without a 14-byte AUTS")?;
            if !rest.is_empty() {
                return Err("AUTHENTICATE response has unexpected bytes after AUTS");
            }
            Ok(AuthOutcome::SyncFailure { auts })
        }
        _ => Err("AUTHENTICATE response starts with neither DB nor DC"),
    }
}

/// Turn AUTHENTICATE's final reply into the crate's outcome (see the crate's table):
/// success with well-formed data -> `Ok`; `98 62` -> [`UiccError::MacFailure`]; another
/// status word -> [`UiccError::Status`]; malformed data -> [`UiccError::Io`] naming `device`.
pub fn authenticate_outcome(device: &str, reply: &Response) -> Result<AuthOutcome, UiccError> {
    if (reply.sw1, reply.sw2) == SW_AUTH_MAC_FAILURE {
        return Err(UiccError::MacFailure);
    }
    if !reply.is_ok() {
        return Err(UiccError::Status {
            device: device.to_owned(),
            command: "AUTHENTICATE",
            sw1: reply.sw1,
            sw2: reply.sw2,
        });
    }
    parse_authenticate(reply.data()).map_err(|detail| UiccError::Io {
        device: device.to_owned(),
        detail: detail.to_owned(),
    })
}

/// Fail with [`UiccError::Status`] unless `reply` succeeded.
pub fn expect_ok(device: &str, command: &'static str, reply: &Response) -> Result<(), UiccError> {
    if reply.is_ok() {
        Ok(())
    } else {
        Err(UiccError::Status {
            device: device.to_owned(),
            command,
            sw1: reply.sw1,
            sw2: reply.sw2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn commands_match_the_clients_bytes() {
        assert_eq!(select_file(MF), h("00A4000402 3F00"));
        assert_eq!(select_file(EF_DIR), h("00A4000402 2F00"));
        assert_eq!(select_file(EF_IMSI), h("00A4000402 6F07"));
        assert_eq!(get_response(0x35), h("00C0000035"));
        assert_eq!(read_record(1, 0x26), h("00B2010426"));
        assert_eq!(read_binary(0, 9), h("00B0000009"));
        assert_eq!(select_aid(&USIM_AID_PREFIX), h("00A4040407 A0000000871002"));
        // The example of the AT-command path: RAND = 11.., AUTN = 22.. (78 hex digits).
        let apdu = authenticate(&[0x11; 16], &[0x22; 16]);
        assert_eq!(
            hex::encode_upper(&apdu),
            "008800812210111111111111111111111111111111111022222222222222222222222222222222"
        );
    }

    #[test]
    fn transceive_follows_61_and_6c() {
        let mut sent = Vec::new();
        let mut card = |apdu: &[u8]| {
            sent.push(hex::encode_upper(apdu));
            Ok(match apdu[1] {
                0x88 => h("6135"),
                0xC0 if apdu[4] == 0x35 => h("6C0C"),
                0xC0 => h("DB08 0102030405060708 AABB 9000"),
                _ => h("6F00"),
            })
        };
        let reply = transceive("card", &mut card, &authenticate(&[1; 16], &[2; 16])).unwrap();
        assert_eq!((reply.sw1, reply.sw2), (0x90, 0x00));
        assert_eq!(reply.data(), h("DB08 0102030405060708 AABB"));
        assert_eq!(&sent[1..], ["00C0000035", "00C000000C"]);
        assert_eq!(format!("{reply:?}"), "Response { 12 data bytes, sw 90 00 }");
    }

    #[test]
    fn transceive_rejects_short_and_endless_replies() {
        let mut short = |_: &[u8]| Ok(vec![0x90]);
        assert!(matches!(
            transceive("r", &mut short, &get_response(0)),
            Err(UiccError::Io { .. })
        ));
        let mut endless = |_: &[u8]| Ok(h("6110"));
        assert!(matches!(
            transceive("r", &mut endless, &get_response(0)),
            Err(UiccError::Io { .. })
        ));
        let mut huge = |_: &[u8]| {
            let mut v = vec![0u8; 300];
            v.extend_from_slice(&h("61FF"));
            Ok(v)
        };
        assert!(matches!(
            transceive("r", &mut huge, &get_response(0)),
            Err(UiccError::Io { .. })
        ));
    }

    #[test]
    fn fcp_and_dir_records() {
        // FCP of a linear-fixed EF_DIR: 2 records of 0x26 bytes.
        let fcp = h("621F 8205 4221002602 83022F00 A506C00140DE0100 8A0105 8B036F0603 800200 4C");
        assert_eq!(fcp_record_layout(&fcp), Some((0x26, 2)));
        assert_eq!(fcp_record_layout(&h("6203 830100")), None);
        // A USIM record (AID + label), padded with FF, as read from a SORACOM SIM's EF_DIR.
        let rec =
            h("61184F10A0000000871002FF33FF01890000010050045553494DFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF");
        assert_eq!(
            usim_aid_in_dir_record(&rec),
            Some(h("A0000000871002FF33FF018900000100"))
        );
        // An ISIM record is not a USIM.
        let isim = h("61184F10A0000000871004FF33FF01890000010050044953494D");
        assert_eq!(usim_aid_in_dir_record(&isim), None);
        assert_eq!(usim_aid_in_dir_record(&[0xFF; 38]), None);
        assert_eq!(usim_aid_in_dir_record(&h("6118 4F10 A000")), None);
    }

    #[test]
    fn ef_imsi() {
        // 15 digits 440103123456789: odd, first byte 0x49 (digit 4, parity 1001).
        let content = h("08 49 04 01 13 32 54 76 98");
        assert_eq!(parse_ef_imsi(&content).unwrap().as_str(), "440103123456789");
        // 14 digits with F filler: even parity (0001).
        let content = h("08 41 04 01 13 32 54 76 F8");
        assert_eq!(parse_ef_imsi(&content).unwrap().as_str(), "44010312345678");
        assert!(
            parse_ef_imsi(&h("08 41 04 01 13 32 54 76 98")).is_err(),
            "parity"
        );
        assert!(
            parse_ef_imsi(&h("09 49 04 01 13 32 54 76 98 00")).is_err(),
            "length"
        );
        assert!(
            parse_ef_imsi(&h("08 4A 04 01 13 32 54 76 98")).is_err(),
            "type"
        );
        assert!(
            parse_ef_imsi(&h("08 49 04 01 1A 32 54 76 98")).is_err(),
            "digit"
        );
        assert!(parse_ef_imsi(&h("08 49 04")).is_err(), "short");
        assert!(parse_ef_imsi(&[]).is_err());
    }

    #[test]
    fn authenticate_responses() {
        let res = "DB08 0102030405060708 10 000102030405060708090A0B0C0D0E0F 10 101112131415161718191A1B1C1D1E1F";
        let Ok(AuthOutcome::Res { res: r, ck, ik }) = parse_authenticate(&h(res)) else {
            panic!("DB not parsed");
        };
        assert_eq!(r.expose(), h("0102030405060708"));
        assert_eq!(ck.expose()[15], 0x0F);
        assert_eq!(ik.expose()[0], 0x10);
        // With Kc.
        assert!(parse_authenticate(&h(&format!("{res} 08 AAAAAAAAAAAAAAAA"))).is_ok());
        // Trailing junk, a short CK, a cut reply.
        assert!(parse_authenticate(&h(&format!("{res} 08 AAAA"))).is_err());
        assert!(parse_authenticate(&h(&format!("{res} 08 AAAAAAAAAAAAAAAA 00"))).is_err());
        assert!(
            parse_authenticate(&h(
                "DB08 0102030405060708 0F 000102030405060708090A0B0C0D0E"
            ))
            .is_err()
        );
        assert!(parse_authenticate(&h("DB08 01020304")).is_err());
        assert!(parse_authenticate(&h("DB02 0102 10")).is_err());
        let auts = "0E 0102030405060708090A0B0C0D0E";
        assert_eq!(
            parse_authenticate(&h(&format!("DC {auts}"))),
            Ok(AuthOutcome::SyncFailure {
                auts: h("0102030405060708090A0B0C0D0E").try_into().unwrap()
            })
        );
        assert!(parse_authenticate(&h("DC 0D 0102030405060708090A0B0C0D")).is_err());
        assert!(parse_authenticate(&h(&format!("DC {auts} 00"))).is_err());
        assert!(parse_authenticate(&h("9000")).is_err());
        assert!(parse_authenticate(&[]).is_err());
    }

    #[test]
    fn authenticate_status_words() {
        let reply = |s: &str| Response::parse(&h(s)).unwrap();
        assert_eq!(
            authenticate_outcome("m", &reply("9862")),
            Err(UiccError::MacFailure)
        );
        assert_eq!(
            authenticate_outcome("m", &reply("6982")),
            Err(UiccError::Status {
                device: "m".into(),
                command: "AUTHENTICATE",
                sw1: 0x69,
                sw2: 0x82
            })
        );
        assert!(matches!(
            authenticate_outcome("m", &reply("DB01 9000")),
            Err(UiccError::Io { .. })
        ));
        let ok = reply("DC0E 0102030405060708090A0B0C0D0E 9000");
        assert!(matches!(
            authenticate_outcome("m", &ok),
            Ok(AuthOutcome::SyncFailure { .. })
        ));
        let err = authenticate_outcome("m", &reply("DB01 9000"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "m: AUTHENTICATE response cut short");
    }
}
