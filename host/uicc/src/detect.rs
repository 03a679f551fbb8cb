//! Choosing the backend: `--uicc autodetect|modem|pcsc|soft` and what goes with it.
//!
//! | `backend` | what [`open`] does |
//! | --- | --- |
//! | `soft` | the software SIM in `sim_file` (required) |
//! | `modem` | the modem on `port`; without one, the first serial port that answers (as autodetect) |
//! | `pcsc` | the card in `reader`, or in the first reader that holds one (needs the `pcsc` feature) |
//! | `autodetect` (default) | in this order: a `sim_file` given → software SIM; a `port` given → modem; the `pcsc` feature on and a reader holding a card → PC/SC; a USB or PCI serial port that answers `ATE0V1` and `AT+CIMI` → modem; otherwise [`UiccError::Unavailable`] |
//!
//! Probing writes `ATE0V1` and `AT+CIMI` to the USB and PCI serial ports the system lists, one
//! after the other, each with `probe_timeout`, and takes the first that returns an IMSI, as
//! SORACOM's clients do (`soracom/endorse-client-go`, `uicc_interface.go`). Unlike them, it
//! leaves built-in UARTs (`ttyS*`, `ttyAMA*`) and Bluetooth ports alone: those are often a
//! console or another device, which must not receive AT commands. A modem on a UART is named
//! with `port`.
//!
//! What autodetect touches, exactly, for each USB or PCI serial port (sysfs lists them):
//!
//! 1. it reads, without opening the port, whether another process holds it: a descriptor on the
//!    same device in any `/proc/PID/fd` it may read (all of them as root), or a UUCP lock file
//!    (`/run/lock/LCK..NAME`, `/var/lock/LCK..NAME`, as pppd, minicom and ModemManager's
//!    users write) naming a live process. Such a port is skipped: nothing is written to it and
//!    its settings are not changed (ModemManager, pppd, an RS-485 application keep it);
//! 2. it opens the port (`O_NOCTTY`, non-blocking) and saves its terminal settings
//!    (`tcgetattr`); a port that cannot be opened or is not a terminal is skipped;
//! 3. it opens it again as the modem backend does: exclusive (`TIOCEXCL` and an exclusive
//!    `flock`, so a port that another program opened that way is skipped too), 8N1, raw, at the
//!    configured baud rate;
//! 4. it writes `ATE0V1` and then `AT+CIMI` (each ended by CR), waiting at most
//!    `probe_timeout` for each answer;
//! 5. a port that does not answer with an IMSI is closed and its saved settings are put back
//!    (`tcsetattr`); the first that does is kept as the modem.
//!
//! Opening and closing a serial port may change its modem-control lines (DTR and RTS follow
//! the `HUPCL` setting on close): a device that reacts to those should be kept out of
//! autodetect's reach by naming the modem's `port` (or the `soft`/`pcsc` backend).

use crate::modem::{self, Modem, ModemConfig};
use crate::soft::SoftSim;
use crate::{Uicc, UiccError};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Which backend to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// Probe what exists (see the module's table).
    #[default]
    Autodetect,
    /// A modem on a serial port, AT commands.
    Modem,
    /// A PC/SC card reader.
    Pcsc,
    /// The software SIM file.
    Soft,
}

impl FromStr for BackendKind {
    type Err = String;
    /// `autodetect`, `modem`, `pcsc` or `soft`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "autodetect" => Ok(BackendKind::Autodetect),
            "modem" => Ok(BackendKind::Modem),
            "pcsc" => Ok(BackendKind::Pcsc),
            "soft" => Ok(BackendKind::Soft),
            _ => Err("the UICC backend is one of autodetect, modem, pcsc, soft".into()),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Autodetect => "autodetect",
            BackendKind::Modem => "modem",
            BackendKind::Pcsc => "pcsc",
            BackendKind::Soft => "soft",
        })
    }
}

/// Everything [`open`] needs: the CLI's `--uicc`, `--sim-file`, `--port`, … or the daemon's
/// `[uicc]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiccConfig {
    /// Which backend; default [`BackendKind::Autodetect`].
    pub backend: BackendKind,
    /// The software SIM file.
    pub sim_file: Option<PathBuf>,
    /// The modem's serial port.
    pub port: Option<String>,
    /// The modem's baud rate; default [`modem::DEFAULT_BAUD_RATE`].
    pub baud_rate: u32,
    /// Longest wait for one AT command; default [`modem::DEFAULT_COMMAND_TIMEOUT`].
    pub command_timeout: Duration,
    /// Longest wait for each probed port's answer; default [`modem::DEFAULT_PROBE_TIMEOUT`].
    pub probe_timeout: Duration,
    /// The PC/SC reader's name.
    pub reader: Option<String>,
    /// No modem command of [`open`] (the `ATE0V1` of opening, autodetect's probes) waits past
    /// this instant: what is left of the caller's run. `None` (the default): only the
    /// timeouts above bound it.
    pub deadline: Option<Instant>,
}

impl Default for UiccConfig {
    fn default() -> Self {
        UiccConfig {
            backend: BackendKind::Autodetect,
            sim_file: None,
            port: None,
            baud_rate: modem::DEFAULT_BAUD_RATE,
            command_timeout: modem::DEFAULT_COMMAND_TIMEOUT,
            probe_timeout: modem::DEFAULT_PROBE_TIMEOUT,
            reader: None,
            deadline: None,
        }
    }
}

/// Open the backend `config` asks for (see the module's table). Errors: those of the backend
/// chosen; [`UiccError::Unavailable`] when none can serve.
pub fn open(config: &UiccConfig) -> Result<Box<dyn Uicc>, UiccError> {
    let modem_on = |port: &str| {
        Modem::open_until(
            &ModemConfig {
                port: port.to_owned(),
                baud_rate: config.baud_rate,
                command_timeout: config.command_timeout,
            },
            config.deadline,
        )
    };
    match config.backend {
        BackendKind::Soft => match &config.sim_file {
            Some(path) => Ok(Box::new(SoftSim::open(path)?)),
            None => Err(UiccError::Unavailable(
                "the software SIM needs a SIM file".into(),
            )),
        },
        BackendKind::Modem => match &config.port {
            Some(port) => Ok(Box::new(modem_on(port)?)),
            None => probe_ports(config)?.ok_or_else(|| {
                UiccError::Unavailable("no USB or PCI serial port answered AT+CIMI".into())
            }),
        },
        BackendKind::Pcsc => open_pcsc(config),
        BackendKind::Autodetect => {
            if let Some(path) = &config.sim_file {
                return Ok(Box::new(SoftSim::open(path)?));
            }
            if let Some(port) = &config.port {
                return Ok(Box::new(modem_on(port)?));
            }
            #[cfg(feature = "pcsc")]
            match open_pcsc(config) {
                Ok(reader) => return Ok(reader),
                Err(e) => tracing::debug!(error = %e, "autodetect: no PC/SC card"),
            }
            probe_ports(config)?.ok_or_else(|| {
                UiccError::Unavailable(format!(
                    "no software SIM file, no modem port, {}and no USB or PCI serial port answered AT+CIMI",
                    if cfg!(feature = "pcsc") {
                        "no PC/SC reader holding a card, "
                    } else {
                        ""
                    }
                ))
            })
        }
    }
}

#[cfg(feature = "pcsc")]
fn open_pcsc(config: &UiccConfig) -> Result<Box<dyn Uicc>, UiccError> {
    Ok(Box::new(crate::pcsc::open(config.reader.as_deref())?))
}

#[cfg(not(feature = "pcsc"))]
fn open_pcsc(_: &UiccConfig) -> Result<Box<dyn Uicc>, UiccError> {
    Err(UiccError::Unavailable(
        "this build has no PC/SC support (cargo feature `pcsc`)".into(),
    ))
}

/// The first serial port that answers `ATE0V1` and `AT+CIMI`, as a modem with the configured
/// command timeout. `Ok(None)` when none does.
fn probe_ports(config: &UiccConfig) -> Result<Option<Box<dyn Uicc>>, UiccError> {
    Ok(probe_listed(config, probe_candidates(modem::list_ports()?)))
}

/// [`probe_ports`] over `ports`: each one another process holds is skipped, each other one
/// gets its terminal settings back when it is not a modem (see the module).
fn probe_listed(config: &UiccConfig, ports: Vec<modem::PortInfo>) -> Option<Box<dyn Uicc>> {
    for port in ports {
        if config.deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::debug!(port = %port.name, "autodetect: the deadline has passed; not probed");
            break;
        }
        if let Some(why) = held_by_another(&port.name) {
            tracing::info!(port = %port.name, "autodetect: port left alone: {why}");
            continue;
        }
        let saved = match SavedSettings::take(&port.name) {
            Ok(saved) => saved,
            Err(why) => {
                tracing::debug!(port = %port.name, "autodetect: not probed: {why}");
                continue;
            }
        };
        let probed = modem::probe(
            &port.name,
            config.baud_rate,
            config.probe_timeout,
            config.deadline,
        );
        match probed {
            Ok((mut modem, _imsi)) => {
                tracing::debug!(port = %port.name, "autodetect: a modem answered");
                modem.set_command_timeout(config.command_timeout);
                return Some(Box::new(modem));
            }
            Err(e) => {
                saved.restore(&port.name);
                tracing::debug!(port = %port.name, error = %e, "autodetect: not a modem with a SIM; its settings were put back")
            }
        }
    }
    None
}

/// A port's terminal settings as they were before autodetect opened it, and the descriptor
/// they were read through (kept open until they are put back).
struct SavedSettings {
    file: File,
    termios: nix::sys::termios::Termios,
}

impl SavedSettings {
    /// Open `port` without making it the controlling terminal and without waiting for carrier,
    /// and read its settings. Errors: why it cannot be (not openable, not a terminal).
    fn take(port: &str) -> Result<SavedSettings, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(port)
            .map_err(|e| format!("cannot open it: {e}"))?;
        let termios = nix::sys::termios::tcgetattr(file.as_raw_fd())
            .map_err(|e| format!("not a terminal: {e}"))?;
        Ok(SavedSettings { file, termios })
    }

    /// Put the saved settings back (best effort: a failure is logged).
    fn restore(self, port: &str) {
        if let Err(e) = nix::sys::termios::tcsetattr(
            self.file.as_raw_fd(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.termios,
        ) {
            tracing::warn!(%port, error = %e, "autodetect: could not put the port's settings back");
        }
    }
}

/// Why another process holds `port`, if one does: a descriptor on the same device in a
/// `/proc/PID/fd` this process may read, or a UUCP lock file naming a live process. `None`
/// when neither is seen (a process whose `/proc` entries are hidden from this user is not).
fn held_by_another(port: &str) -> Option<String> {
    if let Some(name) = Path::new(port).file_name().and_then(|n| n.to_str()) {
        for dir in ["/run/lock", "/var/lock"] {
            let lock = Path::new(dir).join(format!("LCK..{name}"));
            let Ok(text) = fs::read(&lock) else { continue };
            // HDB UUCP lock files hold the PID in ASCII (FHS 3.0 §5.9); anything else is
            // taken as held too.
            let pid = std::str::from_utf8(&text[..text.len().min(64)])
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok());
            match pid {
                Some(pid) if !Path::new(&format!("/proc/{pid}")).exists() => continue,
                Some(pid) => return Some(format!("{} names process {pid}", lock.display())),
                None => return Some(format!("{} exists", lock.display())),
            }
        }
    }
    let device = fs::metadata(port).ok()?;
    if !device.file_type().is_char_device() {
        return None;
    }
    let me = std::process::id();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let path = fd.path();
            if !fs::read_link(&path).is_ok_and(|l| l.starts_with("/dev/")) {
                continue;
            }
            if fs::metadata(&path)
                .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == device.rdev())
            {
                let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some(format!(
                    "process {pid} ({}) has it open",
                    comm.trim().chars().take(32).collect::<String>()
                ));
            }
        }
    }
    None
}

/// The ports autodetect may write AT commands to: USB and PCI ones (see the module).
fn probe_candidates(ports: Vec<modem::PortInfo>) -> Vec<modem::PortInfo> {
    ports
        .into_iter()
        .filter(|p| matches!(p.kind, modem::PortKind::Usb | modem::PortKind::Pci))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autodetect_probes_usb_and_pci_ports_only() {
        use modem::{PortInfo, PortKind};
        let port = |name: &str, kind| PortInfo {
            name: name.into(),
            kind,
            description: String::new(),
        };
        let listed = vec![
            port("/dev/ttyS0", PortKind::Other),
            port("/dev/ttyUSB2", PortKind::Usb),
            port("/dev/rfcomm0", PortKind::Bluetooth),
            port("/dev/ttyXRUSB0", PortKind::Pci),
        ];
        let names: Vec<_> = probe_candidates(listed)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["/dev/ttyUSB2", "/dev/ttyXRUSB0"]);
    }

    #[test]
    fn kinds_parse_and_print() {
        for kind in ["autodetect", "modem", "pcsc", "soft"] {
            assert_eq!(kind.parse::<BackendKind>().unwrap().to_string(), kind);
        }
        assert!("usb".parse::<BackendKind>().is_err());
    }

    #[test]
    fn soft_needs_a_file_and_autodetect_prefers_it() {
        let config = UiccConfig {
            backend: BackendKind::Soft,
            ..UiccConfig::default()
        };
        assert!(matches!(
            open(&config).map(|_| ()),
            Err(UiccError::Unavailable(_))
        ));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.json");
        let record = crate::soft::SimRecord::parse(
            br#"{"imsi":"001010000000001","k":"000102030405060708090a0b0c0d0e0f","opc":"000102030405060708090a0b0c0d0e0f","amf":"8000","sqn":"000000000000"}"#,
        )
        .unwrap();
        SoftSim::create(&path, &record).unwrap();
        let config = UiccConfig {
            sim_file: Some(path.clone()),
            port: Some("/dev/null-not-a-modem".into()),
            ..UiccConfig::default()
        };
        let mut uicc = open(&config).unwrap();
        assert_eq!(uicc.describe(), format!("software SIM {}", path.display()));
        assert_eq!(uicc.read_imsi().unwrap().as_str(), "001010000000001");
    }

    #[test]
    fn pcsc_without_the_feature_is_unavailable() {
        if cfg!(feature = "pcsc") {
            return;
        }
        let config = UiccConfig {
            backend: BackendKind::Pcsc,
            ..UiccConfig::default()
        };
        assert!(matches!(
            open(&config).map(|_| ()),
            Err(UiccError::Unavailable(_))
        ));
    }

    #[test]
    fn a_named_port_that_does_not_exist_is_an_io_error() {
        let config = UiccConfig {
            backend: BackendKind::Modem,
            port: Some("/dev/krypton-uicc-no-such-port".into()),
            ..UiccConfig::default()
        };
        let err = open(&config).map(|_| ()).unwrap_err();
        assert!(
            matches!(&err, UiccError::Io { device, .. } if device == "/dev/krypton-uicc-no-such-port"),
            "{err}"
        );
    }

    /// A pseudo-terminal's master side (kept by the test) and the slave's path (what
    /// autodetect is given as a USB port), the slave side closed.
    fn pty() -> (serialport::TTYPort, String) {
        use serialport::SerialPort as _;
        let (mut master, slave) = serialport::TTYPort::pair().expect("a pseudo-terminal pair");
        let path = slave.name().unwrap();
        drop(slave);
        master.set_timeout(Duration::from_millis(50)).unwrap();
        (master, path)
    }

    fn usb(name: &str) -> Vec<modem::PortInfo> {
        vec![modem::PortInfo {
            name: name.into(),
            kind: modem::PortKind::Usb,
            description: String::new(),
        }]
    }

    /// What the master side received within `wait` (a bounded wait for something that
    /// must not come).
    fn received(master: &mut serialport::TTYPort, wait: Duration) -> Vec<u8> {
        use std::io::Read as _;
        let until = Instant::now() + wait;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while Instant::now() < until {
            if let Ok(n) = master.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        got
    }

    /// Issue 18, item 13: a port another process holds open (as ModemManager or pppd hold a
    /// modem's) is skipped: autodetect writes nothing to it and finds no modem.
    #[test]
    fn a_port_another_process_holds_open_is_left_alone() {
        let (mut master, path) = pty();
        let holder_tty = File::options().read(true).write(true).open(&path).unwrap();
        let mut holder = std::process::Command::new("sleep")
            .arg("60")
            .stdin(holder_tty)
            .spawn()
            .unwrap();
        let why = held_by_another(&path);
        let config = UiccConfig {
            probe_timeout: Duration::from_millis(300),
            ..UiccConfig::default()
        };
        let found = probe_listed(&config, usb(&path));
        let got = received(&mut master, Duration::from_millis(500));
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(found.is_none());
        assert_eq!(
            String::from_utf8_lossy(&got),
            "",
            "autodetect wrote to a port another process holds"
        );
        assert_eq!(
            why,
            Some(format!("process {} (sleep) has it open", holder.id()))
        );
        // Once the holder is gone, the same port is probed (and answers nothing).
        assert_eq!(held_by_another(&path), None);
        let watch = std::thread::spawn(move || received(&mut master, Duration::from_millis(600)));
        assert!(probe_listed(&config, usb(&path)).is_none());
        let got = watch.join().unwrap();
        assert!(
            String::from_utf8_lossy(&got).starts_with("ATE0V1\r"),
            "{got:?}"
        );
    }

    /// Issue 18, item 13: a port that is not a modem gets its terminal settings back.
    #[test]
    fn the_settings_of_a_port_that_is_not_a_modem_are_put_back() {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        let (mut master, path) = pty();
        // The settings of a port in use as a console: canonical mode, echo, 9600 baud.
        let tty = File::options().read(true).write(true).open(&path).unwrap();
        let mut before = tcgetattr(tty.as_raw_fd()).unwrap();
        before.local_flags |= LocalFlags::ICANON | LocalFlags::ECHO;
        nix::sys::termios::cfsetspeed(&mut before, nix::sys::termios::BaudRate::B9600).unwrap();
        tcsetattr(tty.as_raw_fd(), SetArg::TCSANOW, &before).unwrap();
        let before = tcgetattr(tty.as_raw_fd()).unwrap();
        // The master side answers ERROR to whatever it gets: a device, not a modem.
        let answer = std::thread::spawn(move || {
            use std::io::Write as _;
            let got = received(&mut master, Duration::from_millis(600));
            let _ = master.write_all(b"\r\nERROR\r\n");
            (master, got)
        });
        drop(tty);
        let config = UiccConfig {
            probe_timeout: Duration::from_millis(300),
            baud_rate: 115_200,
            ..UiccConfig::default()
        };
        assert!(probe_listed(&config, usb(&path)).is_none());
        let (_master, got) = answer.join().unwrap();
        assert!(
            String::from_utf8_lossy(&got).starts_with("ATE0V1\r"),
            "{got:?}"
        );
        let tty = File::options().read(true).write(true).open(&path).unwrap();
        let after = tcgetattr(tty.as_raw_fd()).unwrap();
        assert_eq!(after.local_flags, before.local_flags);
        assert_eq!(after.input_flags, before.input_flags);
        assert_eq!(after.output_flags, before.output_flags);
        assert_eq!(after.control_flags, before.control_flags);
        assert_eq!(
            nix::sys::termios::cfgetospeed(&after),
            nix::sys::termios::BaudRate::B9600
        );
    }
}
