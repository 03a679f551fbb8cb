//! The modem backend: a cellular modem's serial port and AT commands (3GPP TS 27.007).
//!
//! What is sent, as SORACOM's clients send it (`soracom/endorse-client-go`, `endorse/comm.go`;
//! `soracom/soracom-krypton-client-for-java`'s endorse client, `CommManager`):
//!
//! | step | command | reply |
//! | --- | --- | --- |
//! | on open | `ATE0V1` (echo off, verbose result codes; ITU-T V.250) | `OK` |
//! | IMSI | `AT+CIMI` (TS 27.007 §5.6) | the IMSI's digits, `OK` |
//! | select the USIM | `AT+CSIM=24,"00A4040407A0000000871002"` (SELECT by the USIM's partial AID) | `+CSIM: 4,"61xx"` or `"9000"`; a refusal is tolerated, as the clients send no SELECT on this path |
//! | AUTHENTICATE | `AT+CSIM=78,"0088008122 10<RAND> 10<AUTN>"` (TS 27.007 §8.17, TS 31.102 §7.1.2) | `+CSIM: 4,"61xx"` |
//! | GET RESPONSE | `AT+CSIM=10,"00C00000xx"` | `+CSIM: <n>,"DB…9000"` or `"DC…9000"` |
//!
//! An APDU the modem answers with `ERROR` is sent once more with Le `00` appended
//! (`AT+CSIM=80,"…00"`), the form SORACOM's Java client tries first.
//!
//! Commands end with CR; a reply is the lines up to a final result code: `OK`, or a failure,
//! `ERROR` or `+CME ERROR: <n or text>` (TS 27.007 §9.2). The echo of a command and empty
//! lines are skipped; unsolicited lines (`+CREG: …`, `RING`) are ignored where the expected
//! line is known. Each command waits at most the configured command timeout for its final
//! result code, and never past the caller's deadline ([`Modem::open_until`],
//! [`Uicc::set_deadline`]: what is left of the run): a modem whose every reply comes just under
//! the command timeout cannot hold a run past its end. A command is not even written once the
//! deadline has passed. A reply longer than 16 KiB is refused. `+CME ERROR` 10 (SIM not
//! inserted), 13 (SIM failure) and 15 (SIM wrong) mean no usable SIM ([`UiccError::NoSim`]).
//!
//! The serial port is opened with the `serialport` crate (serialport-rs) without its default
//! `libudev` feature: ports are listed from sysfs, so the host needs no system library; 8 data
//! bits, no parity, 1 stop bit, no flow control, exclusive access (`TIOCEXCL` and `flock`).
//! Replies are untrusted: what reaches an error message is printable ASCII, cut to 64
//! characters, and never a `+CSIM` reply (an AUTHENTICATE reply carries CK and IK).

use crate::apdu::{self, Response};
use crate::{AuthOutcome, Imsi, Uicc, UiccError};
use serialport::{ClearBuffer, SerialPort, SerialPortType};
use std::io::{ErrorKind, Read as _, Write as _};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The `serialport` crate this backend is built on, for callers that open a port themselves
/// ([`Modem::from_port`]).
pub use serialport;

/// Default baud rate: what SORACOM's `krypton-cli` uses (USB modems ignore it).
pub const DEFAULT_BAUD_RATE: u32 = 57_600;
/// Default time a command may take to its final result code.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time autodetect gives each serial port to answer.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest reply to one command, bytes.
const MAX_REPLY_BYTES: usize = 16 * 1024;
/// How long one read waits before the deadline is checked again.
const READ_SLICE: Duration = Duration::from_millis(50);

/// Where and how to reach the modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemConfig {
    /// The serial port, e.g. `/dev/ttyUSB2`.
    pub port: String,
    /// Baud rate; default [`DEFAULT_BAUD_RATE`].
    pub baud_rate: u32,
    /// Longest wait for one command's final result code; default [`DEFAULT_COMMAND_TIMEOUT`].
    pub command_timeout: Duration,
}

impl ModemConfig {
    /// `port` with the default baud rate and timeout.
    pub fn new(port: impl Into<String>) -> Self {
        ModemConfig {
            port: port.into(),
            baud_rate: DEFAULT_BAUD_RATE,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }
}

/// A serial port that the system lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The device path, e.g. `/dev/ttyUSB2`.
    pub name: String,
    /// The bus it hangs on.
    pub kind: PortKind,
    /// What the system says about it, e.g. `USB 12d1:1506 HUAWEI_MOBILE HUAWEI_MOBILE`.
    pub description: String,
}

/// The bus of a serial port, as the system reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// USB (`ttyUSB*`, `ttyACM*`): where cellular modems usually are.
    Usb,
    /// PCI or PCIe.
    Pci,
    /// Bluetooth (`rfcomm*`).
    Bluetooth,
    /// A built-in UART or anything else (`ttyS*`, `ttyAMA*`): often a console.
    Other,
}

/// The serial ports this system has (sysfs on Linux). For `--list-ports` and autodetect.
/// Errors: [`UiccError::Io`] when the system cannot be asked.
pub fn list_ports() -> Result<Vec<PortInfo>, UiccError> {
    let ports = serialport::available_ports().map_err(|e| UiccError::Io {
        device: "serial ports".into(),
        detail: format!("cannot list them: {e}"),
    })?;
    Ok(ports
        .into_iter()
        .map(|p| {
            let (kind, description) = match p.port_type {
                SerialPortType::UsbPort(usb) => (
                    PortKind::Usb,
                    printable(
                        &format!(
                            "USB {:04x}:{:04x} {} {}",
                            usb.vid,
                            usb.pid,
                            usb.manufacturer.unwrap_or_default(),
                            usb.product.unwrap_or_default()
                        ),
                        128,
                    ),
                ),
                SerialPortType::PciPort => (PortKind::Pci, "PCI".into()),
                SerialPortType::BluetoothPort => (PortKind::Bluetooth, "Bluetooth".into()),
                SerialPortType::Unknown => (PortKind::Other, "unknown".into()),
            };
            PortInfo {
                name: p.port_name,
                kind,
                description,
            }
        })
        .collect())
}

/// What a modem says about itself (ITU-T V.250 `ATI`; TS 27.007 §5.1–5.4 `+CGMI`, `+CGMM`,
/// `+CGMR`, `+CGSN`). A field is `None` when the modem refused that command. Values are
/// printable ASCII, at most 128 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The serial port.
    pub port: String,
    /// `ATI`: identification text.
    pub identification: Option<String>,
    /// `AT+CGMI`: manufacturer.
    pub manufacturer: Option<String>,
    /// `AT+CGMM`: model.
    pub model: Option<String>,
    /// `AT+CGMR`: firmware revision.
    pub revision: Option<String>,
    /// `AT+CGSN`: serial number (the IMEI).
    pub serial_number: Option<String>,
}

/// Why one AT command failed, before it is put in the caller's words.
enum AtFailure {
    /// The final result code `ERROR`.
    Error,
    /// `+CME ERROR: …`: the number when numeric, and the (cleaned) text.
    Cme(Option<u16>, String),
    /// The port failed, timed out, or sent too much.
    Io(String),
}

/// A modem on a serial port, echo off and verbose result codes on.
pub struct Modem {
    port: Box<dyn SerialPort>,
    name: String,
    command_timeout: Duration,
    /// No command waits past this instant (the caller's run deadline), when set.
    deadline: Option<Instant>,
}

impl std::fmt::Debug for Modem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Modem")
            .field("port", &self.name)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

impl Modem {
    /// Open the port in `config` and send `ATE0V1`. Errors: [`UiccError::Io`] naming the port
    /// when it cannot be opened or does not answer `OK` in time.
    pub fn open(config: &ModemConfig) -> Result<Modem, UiccError> {
        Modem::open_until(config, None)
    }

    /// [`Modem::open`], with every command (`ATE0V1` included) bounded by `deadline` as well
    /// as by the command timeout (see [`Uicc::set_deadline`]). Errors: as [`Modem::open`].
    pub fn open_until(config: &ModemConfig, deadline: Option<Instant>) -> Result<Modem, UiccError> {
        let port = serialport::new(&config.port, config.baud_rate)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(READ_SLICE)
            .open()
            .map_err(|e| UiccError::Io {
                device: config.port.clone(),
                detail: format!("cannot open the serial port: {e}"),
            })?;
        Modem::from_port_until(port, config.port.clone(), config.command_timeout, deadline)
    }

    /// Use a port that is already open (a pseudo-terminal in tests, a port set up by the
    /// caller) and send `ATE0V1`. `name` names it in errors. Errors: as [`Modem::open`].
    pub fn from_port(
        port: Box<dyn SerialPort>,
        name: impl Into<String>,
        command_timeout: Duration,
    ) -> Result<Modem, UiccError> {
        Modem::from_port_until(port, name, command_timeout, None)
    }

    /// [`Modem::from_port`] with every command bounded by `deadline` too (see
    /// [`Uicc::set_deadline`]). Errors: as [`Modem::open`].
    pub fn from_port_until(
        mut port: Box<dyn SerialPort>,
        name: impl Into<String>,
        command_timeout: Duration,
        deadline: Option<Instant>,
    ) -> Result<Modem, UiccError> {
        let name = name.into();
        port.set_timeout(READ_SLICE).map_err(|e| UiccError::Io {
            device: name.clone(),
            detail: format!("cannot set the read timeout: {e}"),
        })?;
        let mut modem = Modem {
            port,
            name,
            command_timeout,
            deadline,
        };
        modem
            .command("ATE0V1")
            .map_err(|f| modem.error("ATE0V1", f))?;
        Ok(modem)
    }

    /// The port's name.
    pub fn port_name(&self) -> &str {
        &self.name
    }

    fn io(&self, detail: impl Into<String>) -> UiccError {
        UiccError::Io {
            device: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// Put a failed command (`what`: the command without its arguments) in plain words.
    fn error(&self, what: &str, failure: AtFailure) -> UiccError {
        match failure {
            AtFailure::Error => self.io(format!("the modem answered ERROR to {what}")),
            AtFailure::Cme(Some(code @ (10 | 13 | 15)), text) => UiccError::NoSim(format!(
                "{}: the modem answered +CME ERROR: {code} ({text}) to {what}",
                self.name
            )),
            AtFailure::Cme(code, text) => {
                let lower = text.to_ascii_lowercase();
                if ["sim not inserted", "sim failure", "sim wrong"]
                    .iter()
                    .any(|t| lower.contains(t))
                {
                    UiccError::NoSim(format!(
                        "{}: the modem answered +CME ERROR: {text} to {what}",
                        self.name
                    ))
                } else {
                    match code {
                        Some(code) => self.io(format!(
                            "the modem answered +CME ERROR: {code} ({text}) to {what}"
                        )),
                        None => self.io(format!("the modem answered +CME ERROR: {text} to {what}")),
                    }
                }
            }
            AtFailure::Io(detail) => self.io(format!("{what}: {detail}")),
        }
    }

    /// Send one command line (`cmd`, without the CR) and gather the lines of its reply up to
    /// `OK`. The lines are zeroized when dropped.
    fn command(&mut self, cmd: &str) -> Result<Vec<Zeroizing<String>>, AtFailure> {
        let own = Instant::now() + self.command_timeout;
        // The earlier of the command timeout and the caller's deadline; `by_caller` when the
        // latter, so that the error says which one ended the wait.
        let (deadline, by_caller) = match self.deadline {
            Some(caller) if caller < own => (caller, true),
            _ => (own, false),
        };
        if by_caller && Instant::now() >= deadline {
            return Err(AtFailure::Io(
                "the run's deadline has passed; the command was not sent".into(),
            ));
        }
        // Stale bytes (a late reply, an unsolicited line) must not be taken for this reply.
        let _ = self.port.clear(ClearBuffer::Input);
        let mut line = Zeroizing::new(Vec::with_capacity(cmd.len() + 1));
        line.extend_from_slice(cmd.as_bytes());
        line.push(b'\r');
        self.port
            .write_all(&line)
            .and_then(|()| self.port.flush())
            .map_err(|e| AtFailure::Io(format!("cannot write to the port: {e}")))?;

        // Sized up front: a Vec that grows frees its old buffer without zeroizing it.
        let mut pending = Zeroizing::new(Vec::with_capacity(MAX_REPLY_BYTES + 256));
        let mut lines = Vec::new();
        let mut chunk = Zeroizing::new([0u8; 256]);
        loop {
            // Complete lines first, so a reply that arrived in one read is handled at once.
            while let Some(end) = pending.iter().position(|&b| b == b'\r' || b == b'\n') {
                let raw: Zeroizing<Vec<u8>> = Zeroizing::new(pending.drain(..=end).collect());
                let text = Zeroizing::new(
                    String::from_utf8_lossy(&raw[..raw.len() - 1])
                        .trim()
                        .to_owned(),
                );
                if text.is_empty() || *text == cmd {
                    continue;
                }
                if *text == "OK" {
                    return Ok(lines);
                }
                if let Some(rest) = text.strip_prefix("+CME ERROR:") {
                    let rest = rest.trim();
                    return Err(AtFailure::Cme(rest.parse().ok(), cme_text(rest)));
                }
                if text.starts_with("+CMS ERROR:") || text.ends_with("ERROR") {
                    return Err(AtFailure::Error);
                }
                lines.push(text);
            }
            let now = Instant::now();
            if now >= deadline && by_caller {
                return Err(AtFailure::Io(
                    "no final result code before the run's deadline; the host stopped waiting"
                        .into(),
                ));
            }
            if now >= deadline {
                return Err(AtFailure::Io(format!(
                    "no final result code within {} ms",
                    self.command_timeout.as_millis()
                )));
            }
            let _ = self.port.set_timeout(READ_SLICE.min(deadline - now));
            match self.port.read(&mut chunk[..]) {
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(n) => {
                    pending.extend_from_slice(&chunk[..n]);
                    if pending.len() + lines.iter().map(|l| l.len()).sum::<usize>()
                        > MAX_REPLY_BYTES
                    {
                        return Err(AtFailure::Io(format!(
                            "reply longer than {MAX_REPLY_BYTES} bytes"
                        )));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(AtFailure::Io(format!("cannot read from the port: {e}"))),
            }
        }
    }

    /// One APDU through `AT+CSIM` (TS 27.007 §8.17): the raw reply (data and status word).
    fn csim(&mut self, apdu: &[u8]) -> Result<Vec<u8>, AtFailure> {
        let hex = hex::encode_upper(apdu);
        let lines = self.command(&format!("AT+CSIM={},\"{hex}\"", hex.len()))?;
        let reply = lines
            .iter()
            .find_map(|l| l.strip_prefix("+CSIM:"))
            .ok_or_else(|| AtFailure::Io("no +CSIM line in the reply to AT+CSIM".into()))?;
        parse_csim(reply)
            .ok_or_else(|| AtFailure::Io("malformed +CSIM line in the reply to AT+CSIM".into()))
    }

    /// Send an APDU with [`apdu::transceive`] (the `61 xx` / `6C xx` dances) over `AT+CSIM`.
    ///
    /// A modem that answers `ERROR` to `command` itself (not to a GET RESPONSE) gets it once
    /// more with Le `00` appended: SORACOM's Java client sends AUTHENTICATE that way first
    /// (`CommManager`), the Go client without Le, so modems exist that want either.
    fn transceive(&mut self, command: &[u8]) -> Result<Response, UiccError> {
        let device = self.name.clone();
        let mut le_tried = false;
        let mut transmit = |a: &[u8]| match self.csim(a) {
            Err(AtFailure::Error) if a == command && !le_tried => {
                le_tried = true;
                tracing::debug!(port = %self.name, "AT+CSIM answered ERROR; sending the APDU again with Le 00");
                let with_le = [a, &[0x00]].concat();
                self.csim(&with_le).map_err(|f| self.error("AT+CSIM", f))
            }
            other => other.map_err(|f| self.error("AT+CSIM", f)),
        };
        apdu::transceive(&device, &mut transmit, command)
    }

    /// Ask the modem about itself (`ATI`, `AT+CGMI`, `AT+CGMM`, `AT+CGMR`, `AT+CGSN`). A
    /// command the modem refuses leaves its field `None`. Errors: [`UiccError::Io`] when the
    /// port fails or a command times out.
    pub fn device_info(&mut self) -> Result<DeviceInfo, UiccError> {
        let mut ask = |cmd: &str, prefix: &str| -> Result<Option<String>, UiccError> {
            match self.command(cmd) {
                Ok(lines) => {
                    let text = lines
                        .iter()
                        .map(|l| {
                            l.strip_prefix(prefix)
                                .unwrap_or(l)
                                .trim()
                                .trim_matches('"')
                                .to_owned()
                        })
                        .collect::<Vec<_>>()
                        .join(" / ");
                    Ok(Some(printable(&text, 128)).filter(|t| !t.is_empty()))
                }
                Err(AtFailure::Io(detail)) => Err(self.error(cmd, AtFailure::Io(detail))),
                Err(_) => Ok(None),
            }
        };
        Ok(DeviceInfo {
            identification: ask("ATI", "")?,
            manufacturer: ask("AT+CGMI", "+CGMI:")?,
            model: ask("AT+CGMM", "+CGMM:")?,
            revision: ask("AT+CGMR", "+CGMR:")?,
            serial_number: ask("AT+CGSN", "+CGSN:")?,
            port: self.name.clone(),
        })
    }
}

/// The hex payload of a `+CSIM: <length>,"<hex>"` line (after the `+CSIM:` prefix), when the
/// length matches the number of hex digits, the digits are even and at least a status word.
/// Quotes are optional (some modems leave them out).
pub fn parse_csim(rest: &str) -> Option<Vec<u8>> {
    let (len, hex) = rest.trim().split_once(',')?;
    let len: usize = len.trim().parse().ok()?;
    let hex = hex.trim();
    let hex = hex
        .strip_prefix('"')
        .and_then(|h| h.strip_suffix('"'))
        .unwrap_or(hex);
    if len != hex.len() || len < 4 || !len.is_multiple_of(2) {
        return None;
    }
    hex::decode(hex).ok()
}

/// Printable ASCII of `text`, at most `max` characters (other characters become `?`).
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The text of a `+CME ERROR`: the verbose text as sent (cleaned), or the meaning of a number
/// from TS 27.007 §9.2.1 for the SIM-related codes.
fn cme_text(rest: &str) -> String {
    match rest.parse::<u16>() {
        Ok(10) => "SIM not inserted".into(),
        Ok(11) => "SIM PIN required".into(),
        Ok(12) => "SIM PUK required".into(),
        Ok(13) => "SIM failure".into(),
        Ok(14) => "SIM busy".into(),
        Ok(15) => "SIM wrong".into(),
        Ok(_) => "see 3GPP TS 27.007 section 9.2".into(),
        Err(_) => printable(rest, 64),
    }
}

impl Uicc for Modem {
    fn describe(&self) -> String {
        format!("modem {}", self.name)
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    fn read_imsi(&mut self) -> Result<Imsi, UiccError> {
        let lines = self
            .command("AT+CIMI")
            .map_err(|f| self.error("AT+CIMI", f))?;
        let digits = lines
            .iter()
            .map(|l| {
                l.strip_prefix("+CIMI:")
                    .unwrap_or(l)
                    .trim()
                    .trim_matches('"')
            })
            .find(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| self.io("the reply to AT+CIMI has no IMSI"))?;
        Imsi::parse(digits)
            .map_err(|why| self.io(format!("the reply to AT+CIMI is not an IMSI: {why}")))
    }

    fn authenticate(&mut self, rand: &[u8; 16], autn: &[u8; 16]) -> Result<AuthOutcome, UiccError> {
        // Make sure the USIM is the current application of the basic channel. Modems that
        // manage the card themselves may refuse a SELECT through +CSIM; SORACOM's clients send
        // none on this path, so a refusal is not fatal (AUTHENTICATE then answers for itself).
        match self.csim(&apdu::select_aid(&apdu::USIM_AID_PREFIX)) {
            Ok(_) => {}
            Err(AtFailure::Io(detail)) => {
                return Err(self.error("AT+CSIM (SELECT USIM)", AtFailure::Io(detail)));
            }
            Err(f @ AtFailure::Cme(..)) => {
                let e = self.error("AT+CSIM (SELECT USIM)", f);
                if matches!(e, UiccError::NoSim(_)) {
                    return Err(e);
                }
                tracing::debug!(error = %e, "SELECT of the USIM refused; sending AUTHENTICATE anyway");
            }
            Err(AtFailure::Error) => {
                tracing::debug!(port = %self.name, "SELECT of the USIM answered ERROR; sending AUTHENTICATE anyway");
            }
        }
        let reply = self.transceive(&apdu::authenticate(rand, autn))?;
        apdu::authenticate_outcome(&self.name, &reply)
    }
}

/// Autodetect's look at one port: open it with `probe_timeout` per command, and keep it when
/// it answers `ATE0V1` and `AT+CIMI` with an IMSI (the official clients take the first port
/// that returns one), each command bounded by `deadline` too. Errors: as [`Modem::open`] and
/// [`Uicc::read_imsi`].
pub fn probe(
    port: &str,
    baud_rate: u32,
    probe_timeout: Duration,
    deadline: Option<Instant>,
) -> Result<(Modem, Imsi), UiccError> {
    let mut modem = Modem::open_until(
        &ModemConfig {
            port: port.to_owned(),
            baud_rate,
            command_timeout: probe_timeout,
        },
        deadline,
    )?;
    let imsi = modem.read_imsi()?;
    Ok((modem, imsi))
}

impl Modem {
    /// Set the longest wait for one command's final result code (after a probe, for example).
    pub fn set_command_timeout(&mut self, timeout: Duration) {
        self.command_timeout = timeout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csim_lines() {
        assert_eq!(parse_csim(r#" 4,"6135""#), Some(vec![0x61, 0x35]));
        assert_eq!(parse_csim(" 4,9000"), Some(vec![0x90, 0x00]));
        assert_eq!(parse_csim(r#" 6,"6135""#), None, "length mismatch");
        assert_eq!(parse_csim(r#" 2,"61""#), None, "shorter than a status word");
        assert_eq!(parse_csim(r#" 3,"613""#), None, "odd");
        assert_eq!(parse_csim(r#" 4,"61zz""#), None, "not hex");
        assert_eq!(parse_csim(r#""6135""#), None, "no length");
    }

    #[test]
    fn cme_texts_and_printable() {
        assert_eq!(cme_text("10"), "SIM not inserted");
        assert_eq!(cme_text("SIM not inserted"), "SIM not inserted");
        assert_eq!(cme_text("bad\u{1b}[31m"), "bad?[31m");
        assert_eq!(printable(&"x".repeat(100), 64).len(), 64);
    }

    #[test]
    fn ports_can_be_listed_without_libudev() {
        // Whatever this machine has (often nothing); the call itself must work.
        let ports = list_ports().unwrap();
        assert!(
            ports.iter().all(|p| p.name.starts_with("/dev/")),
            "{ports:?}"
        );
    }
}
