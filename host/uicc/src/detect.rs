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

use crate::modem::{self, Modem, ModemConfig};
use crate::soft::SoftSim;
use crate::{Uicc, UiccError};
use std::fmt;
use std::path::PathBuf;
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
    for port in probe_candidates(modem::list_ports()?) {
        if config.deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::debug!(port = %port.name, "autodetect: the deadline has passed; not probed");
            break;
        }
        match modem::probe(
            &port.name,
            config.baud_rate,
            config.probe_timeout,
            config.deadline,
        ) {
            Ok((mut modem, _imsi)) => {
                tracing::debug!(port = %port.name, "autodetect: a modem answered");
                modem.set_command_timeout(config.command_timeout);
                return Ok(Some(Box::new(modem)));
            }
            Err(e) => {
                tracing::debug!(port = %port.name, error = %e, "autodetect: not a modem with a SIM")
            }
        }
    }
    Ok(None)
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
}
