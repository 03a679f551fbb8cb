//! `krypton-host sim`: look at the SIM side of SIM-authenticated mode (the serial ports, a
//! modem's identity, the IMSI through a backend), and [`UiccArgs`], the flags that choose the
//! backend (shared with `provision` and `doctor`).

use super::print::print_json;
use super::{HostFailure, component_failure, fail};
use crate::output::exit;
use clap::{ArgGroup, Args};
use krypton_host::bindings::{Failure, ProvisionError, SimError};
use krypton_host::capability::uicc::{
    BAUD_RANGE, TIMEOUT_MS_RANGE, UiccAccess, UiccConfig, UiccSettings,
};
use krypton_uicc::modem::{self, Modem, ModemConfig, PortKind};
use serde_json::json;
use std::path::PathBuf;

/// How SIM-authenticated mode reaches the SIM (`--uicc` and the backend's settings). Every
/// flag is optional so that a command can tell whether it was given.
#[derive(Args, Clone, Default)]
pub struct UiccArgs {
    /// How to reach the SIM: autodetect (a --sim-file, else a --port, else a PC/SC reader
    /// holding a card when built with PC/SC, else the first USB or PCI serial port whose modem
    /// answers AT+CIMI), modem, pcsc or soft. Default autodetect.
    #[arg(long, value_name = "BACKEND", value_parser = ["autodetect", "modem", "pcsc", "soft"])]
    pub uicc: Option<String>,
    /// The software SIM file: a JSON object with imsi, k, opc, amf and sqn (hex strings as
    /// in 3GPP TS 35.208), mode 0600; its sqn is advanced and written back.
    #[arg(long, value_name = "FILE")]
    pub sim_file: Option<PathBuf>,
    /// The modem's serial port, e.g. /dev/ttyUSB2.
    #[arg(long, value_name = "DEV")]
    pub port: Option<String>,
    /// The modem's baud rate, 300 to 4000000 (default 57600; USB modems ignore it).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(BAUD_RANGE))]
    pub baud: Option<u64>,
    /// Longest wait for one AT command or card exchange, ms, 100 to 600000 (default 10000).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(TIMEOUT_MS_RANGE))]
    pub uicc_timeout_ms: Option<u64>,
}

impl UiccArgs {
    /// Whether any of these flags was given.
    pub fn any_given(&self) -> bool {
        self.uicc.is_some()
            || self.sim_file.is_some()
            || self.port.is_some()
            || self.baud.is_some()
            || self.uicc_timeout_ms.is_some()
    }

    /// The backend configuration these flags ask for, checked by the capability's one check
    /// ([`UiccSettings::check`], the daemon's `[uicc]` keys' too). Errors (usage, exit 2) name
    /// the flag: `--uicc soft` without `--sim-file`, `--uicc modem` given a `--sim-file`, ...
    pub fn to_config(&self) -> Result<UiccConfig, HostFailure> {
        UiccSettings {
            backend: self.uicc.clone(),
            sim_file: self.sim_file.clone(),
            port: self.port.clone(),
            baud: self.baud,
            timeout_ms: self.uicc_timeout_ms,
        }
        .check()
        .map_err(|e| {
            let flag = match e.setting {
                "backend" => "--uicc",
                "sim_file" => "--sim-file",
                "port" => "--port",
                "baud" => "--baud",
                _ => "--uicc-timeout-ms",
            };
            fail(exit::USAGE)(anyhow::anyhow!("{flag}: {}", e.reason))
        })
    }
}

/// Examples shown by `sim --help`.
pub const EXAMPLES: &str = "Examples:
  krypton-host sim --list-ports
  krypton-host sim --device-info --port /dev/ttyUSB2
  krypton-host sim --imsi --uicc soft --sim-file /etc/krypton-host/sim.json
  krypton-host sim --imsi                       # autodetect: the first modem that answers";

/// `sim` arguments.
#[derive(Args)]
#[command(
    group(ArgGroup::new("action").required(true).args(["list_ports", "device_info", "imsi"]))
)]
pub struct SimArgs {
    /// List the serial ports this system has, with their bus (USB, PCI, ...).
    #[arg(long)]
    pub list_ports: bool,
    /// Ask the modem on --port about itself (ATI, AT+CGMI, AT+CGMM, AT+CGMR, AT+CGSN).
    #[arg(long, requires = "port")]
    pub device_info: bool,
    /// Read the SIM's IMSI through the backend the --uicc flags choose.
    #[arg(long)]
    pub imsi: bool,
    // clap reads a doc comment here as help text: the field is documented by its type.
    #[allow(missing_docs)]
    #[command(flatten)]
    pub uicc: UiccArgs,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

fn port_kind(kind: PortKind) -> &'static str {
    match kind {
        PortKind::Usb => "usb",
        PortKind::Pci => "pci",
        PortKind::Bluetooth => "bluetooth",
        PortKind::Other => "other",
    }
}

/// Run `sim`. Errors: exit 13 ([`exit::SIM`]) when the ports cannot be listed, the modem or
/// the backend fails or finds no SIM; 2 for flags that do not fit together.
pub async fn sim(args: SimArgs) -> Result<(), HostFailure> {
    let sim_failure = |e: krypton_uicc::UiccError| fail(exit::SIM)(anyhow::anyhow!("{e}"));
    if args.list_ports {
        let ports = tokio::task::spawn_blocking(modem::list_ports)
            .await
            .map_err(|e| fail(exit::INTERNAL)(e.into()))?
            .map_err(sim_failure)?;
        if args.json {
            let list: Vec<_> = ports
                .iter()
                .map(|p| json!({"port": p.name, "kind": port_kind(p.kind), "description": p.description}))
                .collect();
            print_json(&json!({"ok": true, "ports": list}));
        } else if ports.is_empty() {
            println!("no serial ports");
        } else {
            for p in &ports {
                println!("{:<24} {:<9} {}", p.name, port_kind(p.kind), p.description);
            }
        }
        return Ok(());
    }
    let config = args.uicc.to_config()?;
    if args.device_info {
        let modem_config = ModemConfig {
            port: config.port.clone().unwrap_or_default(),
            baud_rate: config.baud_rate,
            command_timeout: config.command_timeout,
        };
        let info = tokio::task::spawn_blocking(move || {
            Modem::open(&modem_config).and_then(|mut m| m.device_info())
        })
        .await
        .map_err(|e| fail(exit::INTERNAL)(e.into()))?
        .map_err(sim_failure)?;
        let fields = [
            ("identification", &info.identification),
            ("manufacturer", &info.manufacturer),
            ("model", &info.model),
            ("revision", &info.revision),
            ("serialNumber", &info.serial_number),
        ];
        if args.json {
            let mut object = json!({"ok": true, "port": info.port});
            for (key, value) in fields {
                object[key] = json!(value);
            }
            print_json(&object);
        } else {
            println!("{:<16} {}", "port", info.port);
            for (key, value) in fields {
                println!("{key:<16} {}", value.as_deref().unwrap_or("-"));
            }
        }
        return Ok(());
    }
    // --imsi. A failure is reported as `provision --mode sim` reports it (the same JSON
    // fields, `simError` and `uiccError`, and the same flag hints), not as a bare message.
    let as_sim_failure = |e: krypton_uicc::UiccError| {
        component_failure(Failure {
            error: ProvisionError::Sim(SimError::Uicc(
                krypton_host::capability::uicc::to_wit_error(e),
            )),
            hint: None,
        })
    };
    let access = UiccAccess::new(config);
    let imsi = access.read_imsi().await.map_err(as_sim_failure)?;
    let device = access.describe().await.map_err(as_sim_failure)?;
    if args.json {
        print_json(&json!({"ok": true, "uicc": device, "imsi": imsi.as_str()}));
    } else {
        println!("{:<6} {device}", "uicc");
        println!("{:<6} {imsi}", "imsi");
    }
    Ok(())
}
