//! The AT-command backend against a fake modem on a pseudo-terminal: the modem's side reads
//! each command line and answers with recorded replies, including `61 xx` (GET RESPONSE),
//! `ERROR`, `+CME ERROR`, unsolicited lines, and silence.

use krypton_uicc::aka::{
    AuthVector, UsimVerdict, generate_vector, recover_sqn_ms, usim_authenticate,
};
use krypton_uicc::milenage::Subscriber;
use krypton_uicc::modem::serialport::{SerialPort, TTYPort};
use krypton_uicc::modem::{Modem, ModemConfig};
use krypton_uicc::{AuthOutcome, Key128, Uicc, UiccError};
use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IMSI: &str = "440103123456789";
const SELECT_USIM: &str = r#"AT+CSIM=24,"00A4040407A0000000871002""#;

/// One exchange: the command line the modem expects, and what it writes back (`None`: it
/// stays silent).
type Step = (String, Option<String>);

fn step(cmd: &str, reply: &str) -> Step {
    (cmd.to_owned(), Some(reply.to_owned()))
}

/// The modem's side of a pseudo-terminal, running in a thread.
struct FakeModem {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<(Vec<String>, Vec<String>)>>,
}

impl FakeModem {
    /// The command lines the modem received, after checking that each was the one expected.
    /// The modem hangs up only now (or when dropped): a master side that closes early makes
    /// the port's reads fail.
    fn finish(mut self) -> Vec<String> {
        drop(self.stop.take());
        let (received, unexpected) = self.handle.take().unwrap().join().unwrap();
        assert!(unexpected.is_empty(), "unexpected commands: {unexpected:?}");
        received
    }
}

impl Drop for FakeModem {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

/// Start a fake modem on the master side of a new pseudo-terminal. It answers `script` in
/// order, echoing the first command (echo is on until `ATE0`). A command it did not expect
/// gets `ERROR`, and [`FakeModem::finish`] fails the test.
fn fake_modem(script: Vec<Step>) -> (TTYPort, FakeModem) {
    let (mut master, slave) = TTYPort::pair().expect("a pseudo-terminal pair");
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let mut received = Vec::new();
        let mut unexpected = Vec::new();
        for (i, (expected, reply)) in script.into_iter().enumerate() {
            let Some(line) = read_command(&mut master, &stopped) else {
                break;
            };
            received.push(line.clone());
            let mut out = String::new();
            if i == 0 {
                out.push_str(&line);
                out.push('\r');
            }
            if line != expected {
                unexpected.push(format!("{line} (expected {expected})"));
                out.push_str("\r\nERROR\r\n");
            } else if let Some(reply) = reply {
                out.push_str(&reply);
            }
            // The port may be closed already (a test that expects an error drops it).
            let _ = master
                .write_all(out.as_bytes())
                .and_then(|()| master.flush());
        }
        let _ = stopped.recv_timeout(Duration::from_secs(30));
        (received, unexpected)
    });
    (
        slave,
        FakeModem {
            stop: Some(stop),
            handle: Some(handle),
        },
    )
}

/// One command line (up to CR), or `None` after 10 s without one or once the test is done.
fn read_command(master: &mut TTYPort, stopped: &mpsc::Receiver<()>) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while Instant::now() < deadline {
        if let Err(mpsc::TryRecvError::Disconnected) = stopped.try_recv() {
            return None;
        }
        match master.read(&mut byte) {
            Ok(1) if byte[0] == b'\r' => return Some(String::from_utf8(line).unwrap()),
            Ok(1) => line.push(byte[0]),
            _ => {}
        }
    }
    None
}

fn modem_on(slave: TTYPort, timeout: Duration) -> Result<Modem, UiccError> {
    let name = slave.name().unwrap();
    Modem::from_port(Box::new(slave), name, timeout)
}

fn subscriber() -> Subscriber {
    // 3GPP TS 35.208 test set 1.
    let k: [u8; 16] = hex::decode("465b5ce8b199b49faa5f0a2ee238a6bc")
        .unwrap()
        .try_into()
        .unwrap();
    let opc: [u8; 16] = hex::decode("cd63cb71954a9f4e48a5994e37a02baf")
        .unwrap()
        .try_into()
        .unwrap();
    Subscriber::new(Key128::new(k), Key128::new(opc))
}

fn csim_command(apdu_hex: &str) -> String {
    format!("AT+CSIM={},\"{apdu_hex}\"", apdu_hex.len())
}

fn authenticate_command(v: &AuthVector) -> String {
    csim_command(
        &format!(
            "0088008122 10{} 10{}",
            hex::encode_upper(v.rand),
            hex::encode_upper(v.autn)
        )
        .replace(' ', ""),
    )
}

/// The same AUTHENTICATE with Le `00` appended, as SORACOM's Java client sends it first.
fn authenticate_with_le(v: &AuthVector) -> String {
    let plain = authenticate_command(v);
    let hex = plain.split('"').nth(1).unwrap();
    csim_command(&format!("{hex}00"))
}

fn csim_reply(hex: &str) -> String {
    format!("\r\n+CSIM: {},\"{hex}\"\r\n\r\nOK\r\n", hex.len())
}

/// What a USIM with SQN_MS = `sqn_ms` answers to `v`: the response data in hex, with `9000`.
fn card_answer(v: &AuthVector, sqn_ms: u64) -> String {
    let outcome = match usim_authenticate(&subscriber(), sqn_ms, &v.rand, &v.autn) {
        UsimVerdict::Accept { outcome, .. } | UsimVerdict::Resync { outcome } => outcome,
        UsimVerdict::MacFailure => panic!("test vector rejected"),
    };
    let data = match outcome {
        AuthOutcome::Res { res, ck, ik } => format!(
            "DB{:02X}{}10{}10{}08{}",
            res.len(),
            hex::encode_upper(res.expose()),
            hex::encode_upper(ck.expose()),
            hex::encode_upper(ik.expose()),
            "0011223344556677"
        ),
        AuthOutcome::SyncFailure { auts } => format!("DC0E{}", hex::encode_upper(auts)),
    };
    format!("{data}9000")
}

#[test]
fn imsi_and_authenticate_with_get_response() {
    let v = generate_vector(&subscriber(), 0x40, [0x80, 0x00], [0x11; 16]);
    let answer = card_answer(&v, 0x20);
    assert_eq!(
        answer.len(),
        110,
        "53 data bytes and SW, as SORACOM's clients expect"
    );
    let get_response = format!("00C00000{:02X}", answer.len() / 2 - 2);
    let (slave, modem_side) = fake_modem(vec![
        step("ATE0V1", "\r\nOK\r\n"),
        // An unsolicited line before the IMSI is not taken for it.
        step("AT+CIMI", &format!("\r\n+CREG: 1\r\n{IMSI}\r\n\r\nOK\r\n")),
        step(SELECT_USIM, &csim_reply("6121")),
        step(&authenticate_command(&v), &csim_reply("6135")),
        step(&csim_command(&get_response), &csim_reply(&answer)),
    ]);
    let mut modem = modem_on(slave, Duration::from_secs(5)).unwrap();
    assert_eq!(modem.read_imsi().unwrap().as_str(), IMSI);
    let AuthOutcome::Res { res, ck, ik } = modem.authenticate(&v.rand, &v.autn).unwrap() else {
        panic!("no RES");
    };
    assert_eq!(res, v.xres);
    assert_eq!(ck, v.ck);
    assert_eq!(ik, v.ik);
    let received = modem_side.finish();
    assert_eq!(received[4], r#"AT+CSIM=10,"00C0000035""#);
    assert!(
        modem.describe().starts_with("modem /dev/pts/"),
        "{}",
        modem.describe()
    );
}

#[test]
fn a_modem_that_fetches_the_response_itself_and_a_sync_failure() {
    // Some modems run GET RESPONSE themselves and answer the data with 9000 at once.
    let v = generate_vector(&subscriber(), 0x10, [0x80, 0x00], [0x22; 16]);
    let answer = card_answer(&v, 0x20);
    assert!(answer.starts_with("DC0E"));
    let (slave, modem_side) = fake_modem(vec![
        step("ATE0V1", "\r\nOK\r\n"),
        step(SELECT_USIM, &csim_reply("9000")),
        step(&authenticate_command(&v), &csim_reply(&answer)),
    ]);
    let mut modem = modem_on(slave, Duration::from_secs(5)).unwrap();
    let AuthOutcome::SyncFailure { auts } = modem.authenticate(&v.rand, &v.autn).unwrap() else {
        panic!("no AUTS");
    };
    assert_eq!(recover_sqn_ms(&subscriber(), &v.rand, &auts), Ok(0x20));
    assert_eq!(modem_side.finish().len(), 3);
}

#[test]
fn a_modem_that_wants_le_gets_it_on_the_second_try() {
    let v = generate_vector(&subscriber(), 0x40, [0x80, 0x00], [0x55; 16]);
    let answer = card_answer(&v, 0x20);
    let (slave, modem_side) = fake_modem(vec![
        step("ATE0V1", "\r\nOK\r\n"),
        step(SELECT_USIM, &csim_reply("6121")),
        step(&authenticate_command(&v), "\r\nERROR\r\n"),
        step(&authenticate_with_le(&v), &csim_reply("6135")),
        step(r#"AT+CSIM=10,"00C0000035""#, &csim_reply(&answer)),
    ]);
    let mut modem = modem_on(slave, Duration::from_secs(5)).unwrap();
    let outcome = modem.authenticate(&v.rand, &v.autn).unwrap();
    assert!(matches!(outcome, AuthOutcome::Res { ref res, .. } if *res == v.xres));
    let received = modem_side.finish();
    assert!(received[3].starts_with("AT+CSIM=80,") && received[3].ends_with("00\""));
}

#[test]
fn error_and_cme_error() {
    let v = generate_vector(&subscriber(), 0x40, [0x80, 0x00], [0x33; 16]);
    let (slave, modem_side) = fake_modem(vec![
        step("ATE0V1", "\r\nOK\r\n"),
        step("AT+CIMI", "\r\n+CME ERROR: 10\r\n"),
        step("AT+CIMI", "\r\n+CME ERROR: SIM PIN required\r\n"),
        // A SELECT the modem refuses is tolerated; the AUTHENTICATE it refuses is not.
        step(SELECT_USIM, "\r\nERROR\r\n"),
        step(&authenticate_command(&v), "\r\nERROR\r\n"),
        step(&authenticate_with_le(&v), "\r\nERROR\r\n"),
        step(SELECT_USIM, "\r\n+CME ERROR: 4\r\n"),
        step(
            &authenticate_command(&v),
            "\r\n+CME ERROR: operation not allowed\r\n",
        ),
        step(SELECT_USIM, "\r\n+CME ERROR: 13\r\n"),
    ]);
    let mut modem = modem_on(slave, Duration::from_secs(5)).unwrap();
    let err = modem.read_imsi().unwrap_err();
    assert!(
        matches!(&err, UiccError::NoSim(m) if m.contains("+CME ERROR: 10 (SIM not inserted) to AT+CIMI")),
        "{err}"
    );
    let err = modem.read_imsi().unwrap_err();
    assert!(
        matches!(&err, UiccError::Io { detail, .. } if detail == "the modem answered +CME ERROR: SIM PIN required to AT+CIMI"),
        "{err}"
    );
    let err = modem.authenticate(&v.rand, &v.autn).unwrap_err();
    assert!(
        matches!(&err, UiccError::Io { detail, .. } if detail == "the modem answered ERROR to AT+CSIM"),
        "{err}"
    );
    let err = modem.authenticate(&v.rand, &v.autn).unwrap_err();
    assert!(
        matches!(&err, UiccError::Io { detail, .. } if detail.contains("+CME ERROR: operation not allowed")),
        "{err}"
    );
    let err = modem.authenticate(&v.rand, &v.autn).unwrap_err();
    let received = modem_side.finish();
    assert!(matches!(&err, UiccError::NoSim(_)), "{err} {received:?}");
    assert_eq!(received.len(), 9, "{received:?}");
}

#[test]
fn status_words_mac_failure_and_malformed_replies() {
    let v = generate_vector(&subscriber(), 0x40, [0x80, 0x00], [0x44; 16]);
    let answer = card_answer(&v, 0x20);
    // Cut the reply inside CK: the error must not show any of it.
    let cut = format!("{}9000", &answer[..60]);
    let (slave, modem_side) = fake_modem(vec![
        step("ATE0V1", "\r\nOK\r\n"),
        step(SELECT_USIM, &csim_reply("9000")),
        step(&authenticate_command(&v), &csim_reply("9862")),
        step(SELECT_USIM, &csim_reply("9000")),
        step(&authenticate_command(&v), &csim_reply("6982")),
        step(SELECT_USIM, &csim_reply("9000")),
        step(&authenticate_command(&v), &csim_reply(&cut)),
        step(SELECT_USIM, &csim_reply("9000")),
        // The length does not match the hex digits.
        step(
            &authenticate_command(&v),
            &format!("\r\n+CSIM: 4,\"{answer}\"\r\n\r\nOK\r\n"),
        ),
        step(SELECT_USIM, &csim_reply("9000")),
        step(&authenticate_command(&v), "\r\nOK\r\n"),
    ]);
    let mut modem = modem_on(slave, Duration::from_secs(5)).unwrap();
    assert_eq!(
        modem.authenticate(&v.rand, &v.autn),
        Err(UiccError::MacFailure)
    );
    let err = modem.authenticate(&v.rand, &v.autn).unwrap_err();
    assert!(
        matches!(
            err,
            UiccError::Status {
                command: "AUTHENTICATE",
                sw1: 0x69,
                sw2: 0x82,
                ..
            }
        ),
        "{err}"
    );
    for want in [
        "AUTHENTICATE response cut short",
        "AT+CSIM: malformed +CSIM line in the reply to AT+CSIM",
        "AT+CSIM: no +CSIM line in the reply to AT+CSIM",
    ] {
        let err = modem.authenticate(&v.rand, &v.autn).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(want), "{shown}");
        assert!(
            !shown.contains(&answer[20..36]),
            "an error shows part of CK: {shown}"
        );
    }
    assert_eq!(modem_side.finish().len(), 11);
}

#[test]
fn silence_is_a_timeout_naming_the_port() {
    let (slave, _modem_side) = fake_modem(vec![("ATE0V1".into(), None)]);
    let name = slave.name().unwrap();
    let started = Instant::now();
    let err = modem_on(slave, Duration::from_millis(300)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        err,
        UiccError::Io {
            device: name,
            detail: "ATE0V1: no final result code within 300 ms".into()
        }
    );
}

#[test]
fn an_endless_reply_is_cut_off() {
    // A device that streams lines without a final result code (a GPS port, say).
    let flood = "+CREG: 1\r\n".repeat(3000);
    let (slave, modem_side) = fake_modem(vec![step("ATE0V1", &flood)]);
    let err = modem_on(slave, Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(&err, UiccError::Io { detail, .. } if detail == "ATE0V1: reply longer than 16384 bytes"),
        "{err}"
    );
    modem_side.finish();
}

#[test]
fn open_by_path_and_device_info() {
    let (slave, modem_side) = fake_modem(vec![
        step("ATE0V1", "\r\nOK\r\n"),
        step(
            "ATI",
            "\r\nManufacturer: QUALCOMM INCORPORATED\r\nModel: EC25\r\nRevision: EC25JFAR06A06M4G\r\n\r\nOK\r\n",
        ),
        step("AT+CGMI", "\r\nQuectel\r\n\r\nOK\r\n"),
        step("AT+CGMM", "\r\nEC25\r\n\r\nOK\r\n"),
        step(
            "AT+CGMR",
            "\r\n+CGMR: EC25JFAR06A06M4G\u{1b}[0m\r\n\r\nOK\r\n",
        ),
        step("AT+CGSN", "\r\nERROR\r\n"),
    ]);
    // The test keeps the slave side open, so that the master never sees a hang-up; the modem
    // opens the same terminal again by its path, as it opens /dev/ttyUSB2.
    let path = slave.name().unwrap();
    let mut modem = Modem::open(&ModemConfig {
        command_timeout: Duration::from_secs(5),
        ..ModemConfig::new(path.clone())
    })
    .unwrap();
    let info = modem.device_info().unwrap();
    assert_eq!(info.port, path);
    assert_eq!(
        info.identification.as_deref(),
        Some("Manufacturer: QUALCOMM INCORPORATED / Model: EC25 / Revision: EC25JFAR06A06M4G")
    );
    assert_eq!(info.manufacturer.as_deref(), Some("Quectel"));
    assert_eq!(info.model.as_deref(), Some("EC25"));
    assert_eq!(info.revision.as_deref(), Some("EC25JFAR06A06M4G?[0m"));
    assert_eq!(info.serial_number, None);
    assert_eq!(modem_side.finish().len(), 6);
    drop(slave);
}

/// A modem that answers `ATE0V1` and then never answers `AT+CIMI`: with a command timeout of
/// 30 s and a deadline 400 ms away, the wait ends at the deadline, and the error says so and
/// names the port. Once the deadline has passed, no command is written at all.
#[test]
fn the_callers_deadline_bounds_every_command() {
    let (slave, modem_side) =
        fake_modem(vec![step("ATE0V1", "\r\nOK\r\n"), ("AT+CIMI".into(), None)]);
    let name = slave.name().unwrap();
    let deadline = Instant::now() + Duration::from_millis(400);
    let mut modem = Modem::from_port_until(
        Box::new(slave),
        name.clone(),
        Duration::from_secs(30),
        Some(deadline),
    )
    .unwrap();
    let err = modem.read_imsi().unwrap_err();
    assert!(Instant::now() >= deadline);
    let UiccError::Io { device, detail } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(device, &name);
    assert_eq!(
        detail,
        "AT+CIMI: no final result code before the run's deadline; the host stopped waiting"
    );
    let err = modem.read_imsi().unwrap_err().to_string();
    assert!(
        err.ends_with("AT+CIMI: the run's deadline has passed; the command was not sent"),
        "{err}"
    );
    assert_eq!(modem_side.finish(), ["ATE0V1", "AT+CIMI"]);
}
