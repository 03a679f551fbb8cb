//! The `soracom:krypton/uicc` import: the SIM of SIM-authenticated mode, reached through the
//! `krypton-uicc` crate (a modem with AT commands, a PC/SC reader, or a software SIM file).
//!
//! A [`UiccAccess`] is what a host grants a call: [`UiccAccess::none`] (the default: every
//! call answers `unavailable`, so a host without SIM access still links and serves the
//! component in network mode), or [`UiccAccess::new`] with a [`UiccConfig`] (the backend is
//! opened on the first call, as `krypton_uicc::open` picks it, and kept for the next ones).
//! One value is shared by every call of a process (it is cheap to clone): the backend sits
//! behind a mutex, one APDU exchange at a time, and each call runs on a blocking thread
//! (`tokio::task::spawn_blocking`), since a modem or a card reader blocks on I/O.
//!
//! A call's SIM access is bounded by what is left of the call ([`UiccCtx`]'s deadline: the
//! request's deadline, and never later than [`WALL_RESERVE_MAX`] (or a tenth of the limit)
//! before the call's wall-clock limit). The deadline goes to the backend (a modem stops waiting
//! between two reads), and the host waits for the backend no longer than it either: a stuck
//! reader or modem is left to its own thread (a plain thread, so that the process can still
//! exit) and the call gets an `io` error naming the device and the deadline, which the
//! component reports as the SIM's failure. That thread keeps the device until the backend
//! returns; meanwhile a call with a deadline is answered at once with an `io` error saying the
//! device is still busy (no thread is started for it), and a call that was already waiting for
//! the device gives up at its own deadline. A call never reaches the backend past its deadline,
//! so a reader that comes back runs no command for a caller long gone, and a hung device keeps
//! one thread, not one per call. Should the wall-clock limit ever stop a call while
//! a SIM call is still waiting, the call's error is a [`SimTimeout`]: an environment failure,
//! which the component's lifecycle does not count against the component (no roll-back).
//!
//! Inputs are bounded before they reach a backend: RAND and AUTN must be 16 bytes each
//! (3GPP TS 33.102 §6.3.3), anything else is an `io` error naming the length. RES, CK and IK
//! are secrets: they go to the component and nowhere else (no log line, no error text).

use crate::bindings::soracom::krypton::uicc as wit;
use krypton_uicc::{AuthOutcome, Imsi, Uicc, UiccError};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use krypton_uicc::{BackendKind, UiccConfig};

/// The text of the `unavailable` answer of a host given no SIM access.
pub const NOT_CONFIGURED: &str = "no SIM access configured: this host was given no UICC backend (a software SIM file, a modem port or a PC/SC reader)";

/// Length of RAND and of AUTN, bytes (3GPP TS 33.102 §6.3.3).
pub const CHALLENGE_BYTES: usize = 16;

/// The modem's baud rate, inclusive range (`--baud`, key `uicc.baud`; USB modems ignore it).
pub const BAUD_RANGE: RangeInclusive<u64> = 300..=4_000_000;
/// Longest wait for one AT command or APDU exchange, ms, inclusive range (`--uicc-timeout-ms`,
/// key `uicc.timeout_ms`): 100 ms to 10 minutes.
pub const TIMEOUT_MS_RANGE: RangeInclusive<u64> = 100..=600_000;

/// The most a call's SIM access ends before the call's wall-clock limit (less for a limit under
/// 50 s: a tenth of it): the component then has that long to report the SIM's failure before
/// the limit would stop it.
pub const WALL_RESERVE_MAX: Duration = Duration::from_secs(5);

/// A call was stopped by its wall-clock limit while a SIM call was still waiting on the device
/// (`0`: which one). An environment failure, not the component's: the lifecycle does not roll
/// a new version back for it (`downcast_ref::<SimTimeout>()` on the call's error chain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} did not answer before the call's time ran out; the host stopped waiting for it (check the modem, card reader or SIM file: this is not the component's failure)"
)]
pub struct SimTimeout(pub String);

/// The SIM settings as an operator gives them, before they are checked: the command line's
/// `--uicc`, `--sim-file`, `--port`, `--baud`, `--uicc-timeout-ms`, or the daemon's `[uicc]`
/// section (`backend`, `sim_file`, `port`, `baud`, `timeout_ms`). Both call
/// [`UiccSettings::check`], so a flag and its key accept the same values. `None` is the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UiccSettings {
    /// `autodetect` (the default), `modem`, `pcsc` or `soft`.
    pub backend: Option<String>,
    /// The software SIM file.
    pub sim_file: Option<PathBuf>,
    /// The modem's serial port, a device path such as `/dev/ttyUSB2`.
    pub port: Option<String>,
    /// The modem's baud rate, [`BAUD_RANGE`].
    pub baud: Option<u64>,
    /// Longest wait for one AT command or card exchange, ms, [`TIMEOUT_MS_RANGE`].
    pub timeout_ms: Option<u64>,
}

/// A SIM setting that failed [`UiccSettings::check`]: which one (the `[uicc]` key's name:
/// `backend`, `sim_file`, `port`, `baud`, `timeout_ms`) and why, in words that fit a flag and a
/// key alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SettingError {
    /// The setting, as the `[uicc]` key names it.
    pub setting: &'static str,
    /// Why it was refused, and what to give instead.
    pub reason: String,
}

fn refused(setting: &'static str, reason: String) -> SettingError {
    SettingError { setting, reason }
}

/// `value` within `range`, or why not.
fn in_range(
    setting: &'static str,
    value: u64,
    range: &RangeInclusive<u64>,
) -> Result<(), SettingError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(refused(
        setting,
        format!(
            "{value} is out of range; use {} to {}",
            range.start(),
            range.end()
        ),
    ))
}

impl UiccSettings {
    /// The `krypton-uicc` configuration these settings ask for. Errors: an unknown backend, a
    /// baud rate or timeout out of its range, `soft` without a SIM file, `modem` or `pcsc`
    /// given a SIM file, a port that is not a device path.
    pub fn check(&self) -> Result<UiccConfig, SettingError> {
        let defaults = UiccConfig::default();
        let backend: BackendKind = self
            .backend
            .as_deref()
            .unwrap_or("autodetect")
            .parse()
            .map_err(|e: String| refused("backend", e))?;
        if let Some(baud) = self.baud {
            in_range("baud", baud, &BAUD_RANGE)?;
        }
        if let Some(ms) = self.timeout_ms {
            in_range("timeout_ms", ms, &TIMEOUT_MS_RANGE)?;
        }
        if backend == BackendKind::Soft && self.sim_file.is_none() {
            return Err(refused(
                "sim_file",
                "the `soft` backend needs the software SIM file".into(),
            ));
        }
        if matches!(backend, BackendKind::Modem | BackendKind::Pcsc) && self.sim_file.is_some() {
            return Err(refused(
                "sim_file",
                format!(
                    "the SIM file is the software SIM: use it with the `soft` or `autodetect` \
                     backend, not `{backend}`"
                ),
            ));
        }
        if let Some(port) = &self.port
            && (!port.starts_with('/') || port.chars().any(char::is_control))
        {
            return Err(refused(
                "port",
                format!(
                    "`{}` must be a device path such as /dev/ttyUSB2",
                    port.escape_debug()
                ),
            ));
        }
        Ok(UiccConfig {
            backend,
            sim_file: self.sim_file.clone(),
            port: self.port.clone(),
            baud_rate: self
                .baud
                .map_or(defaults.baud_rate, |b| u32::try_from(b).unwrap_or(u32::MAX)),
            command_timeout: self
                .timeout_ms
                .map_or(defaults.command_timeout, Duration::from_millis),
            ..defaults
        })
    }
}

/// The SIM access a host grants its calls (see the module). Cheap to clone; clones share the
/// backend.
#[derive(Clone)]
pub struct UiccAccess(Option<Arc<Shared>>);

struct Shared {
    config: Option<UiccConfig>,
    /// What the backend is, for errors that must name it while it is busy: the configured
    /// port, reader or file (or `describe()` of a backend given ready).
    label: String,
    /// Which call holds the device: `None` when it is free, else that call's deadline
    /// (`Some(None)`: a call without one). A call takes it before `device` and lets go of it
    /// after (see [`Claim`]), so that others can wait for it no longer than their deadline and
    /// can tell a holder that passed its own.
    holder: Mutex<Option<Option<Instant>>>,
    /// Notified each time the holder lets go of the device.
    freed: Condvar,
    /// The open backend; `None` until the first call, and again after an I/O error (the
    /// next call opens it anew).
    device: Mutex<Option<Box<dyn Uicc>>>,
}

impl Shared {
    fn new(config: Option<UiccConfig>, label: String, device: Option<Box<dyn Uicc>>) -> Self {
        Shared {
            config,
            label,
            holder: Mutex::new(None),
            freed: Condvar::new(),
            device: Mutex::new(device),
        }
    }

    /// The answer of a call whose deadline passed before the device answered.
    fn late(&self) -> UiccError {
        UiccError::Io {
            device: self.label.clone(),
            detail: "no answer before the run's deadline; the host stopped waiting (check the \
                     modem or card reader)"
                .into(),
        }
    }

    /// Whether the device is held by a call whose deadline has passed: a call abandoned by its
    /// caller, waiting on a backend that does not answer.
    fn held_past_deadline(&self) -> bool {
        let holder = self.holder.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(*holder, Some(Some(d)) if Instant::now() >= d)
    }

    /// Take the device for a call bounded by `deadline`, waiting for the holder to let go no
    /// later than it. Errors: the deadline passed first (the `late` answer).
    fn claim(&self, deadline: Option<Instant>) -> Result<Claim<'_>, UiccError> {
        let mut holder = self.holder.lock().unwrap_or_else(PoisonError::into_inner);
        while holder.is_some() {
            holder = match deadline {
                None => self
                    .freed
                    .wait(holder)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(self.late());
                    }
                    self.freed
                        .wait_timeout(holder, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(self.late());
        }
        *holder = Some(deadline);
        Ok(Claim(self))
    }
}

/// A call's hold on the device, from [`Shared::claim`]; dropping it lets go and wakes the
/// calls waiting for it.
struct Claim<'a>(&'a Shared);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        *self.0.holder.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.0.freed.notify_all();
    }
}

impl std::fmt::Debug for UiccAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("UiccAccess(none)"),
            Some(shared) => f
                .debug_struct("UiccAccess")
                .field("config", &shared.config)
                .finish_non_exhaustive(),
        }
    }
}

impl Default for UiccAccess {
    fn default() -> Self {
        UiccAccess::none()
    }
}

impl UiccAccess {
    /// No SIM access: every call answers `unavailable(`[`NOT_CONFIGURED`]`)`.
    pub fn none() -> Self {
        UiccAccess(None)
    }

    /// The backend `config` names, opened by `krypton_uicc::open` on the first call (errors
    /// of opening are that call's answer; the next call tries again).
    pub fn new(config: UiccConfig) -> Self {
        let name = label(&config);
        UiccAccess(Some(Arc::new(Shared::new(Some(config), name, None))))
    }

    /// A backend opened by the caller (a fake in tests, a reader set up by an embedder).
    pub fn from_uicc(uicc: Box<dyn Uicc>) -> Self {
        UiccAccess(Some(Arc::new(Shared::new(
            None,
            uicc.describe(),
            Some(uicc),
        ))))
    }

    /// Whether SIM access was configured at all.
    pub fn is_configured(&self) -> bool {
        self.0.is_some()
    }

    /// Run `f` on the backend on a thread of its own, opening it first when needed, and wait
    /// for it no later than `deadline` (which the backend is given too). An I/O error closes
    /// the backend, so that the next call reopens the device. Past the deadline the call
    /// answers an `Io` error naming the device and leaves the thread to finish on its own: a
    /// plain thread, not the runtime's blocking pool, so that it never keeps the process from
    /// exiting. While such a thread still holds the device, a call with a deadline answers at
    /// once an `Io` error saying the device is busy, and starts no thread.
    async fn with_device<R: Send + 'static>(
        &self,
        deadline: Option<Instant>,
        f: impl FnOnce(&mut dyn Uicc) -> Result<R, UiccError> + Send + 'static,
    ) -> Result<R, UiccError> {
        let Some(shared) = self.0.clone() else {
            return Err(UiccError::Unavailable(NOT_CONFIGURED.into()));
        };
        if let Some(d) = deadline {
            if Instant::now() >= d {
                return Err(shared.late());
            }
            if shared.held_past_deadline() {
                return Err(UiccError::Io {
                    device: shared.label.clone(),
                    detail: "the SIM device is still busy with an earlier call that passed its \
                             deadline; try again once it answers (check the modem or card \
                             reader)"
                        .into(),
                });
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("krypton-uicc".into())
            .spawn(move || {
                let _ = tx.send(run_on_device(&worker, deadline, f));
            })
            .map_err(|e| UiccError::Io {
                device: shared.label.clone(),
                detail: format!("cannot start the SIM call: {e}"),
            })?;
        let gone = || UiccError::Io {
            device: shared.label.clone(),
            detail: "the SIM call did not complete".into(),
        };
        match deadline {
            None => rx.await.unwrap_or_else(|_| Err(gone())),
            Some(d) => match tokio::time::timeout_at(d.into(), rx).await {
                Ok(result) => result.unwrap_or_else(|_| Err(gone())),
                Err(_) => Err(shared.late()),
            },
        }
    }

    /// What the backend talks to (`software SIM /path`, `modem /dev/ttyUSB2`, ...), opening
    /// it if needed. Errors: as [`UiccAccess::read_imsi`].
    pub async fn describe(&self) -> Result<String, UiccError> {
        self.with_device(None, |uicc| Ok(uicc.describe())).await
    }

    /// Read the IMSI (an identifier, not a secret). Errors: `Unavailable` without SIM access
    /// or when no backend can be found, `NoSim`, `Io` naming the device, `Status`.
    pub async fn read_imsi(&self) -> Result<Imsi, UiccError> {
        self.read_imsi_until(None).await
    }

    /// [`UiccAccess::read_imsi`], waiting no later than `deadline` (see the module).
    pub async fn read_imsi_until(&self, deadline: Option<Instant>) -> Result<Imsi, UiccError> {
        self.with_device(deadline, |uicc| uicc.read_imsi()).await
    }

    /// Run AUTHENTICATE (3G context) with `rand` and `autn`, 16 bytes each. Errors: an `Io`
    /// error naming the length when either is not 16 bytes (nothing reaches the backend),
    /// else those of [`Uicc::authenticate`].
    pub async fn authenticate(&self, rand: &[u8], autn: &[u8]) -> Result<AuthOutcome, UiccError> {
        self.authenticate_until(None, rand, autn).await
    }

    /// [`UiccAccess::authenticate`], waiting no later than `deadline` (see the module).
    pub async fn authenticate_until(
        &self,
        deadline: Option<Instant>,
        rand: &[u8],
        autn: &[u8],
    ) -> Result<AuthOutcome, UiccError> {
        let rand = challenge_part("RAND", rand)?;
        let autn = challenge_part("AUTN", autn)?;
        self.with_device(deadline, move |uicc| uicc.authenticate(&rand, &autn))
            .await
    }
}

/// The body of [`UiccAccess::with_device`]'s thread: take the device (waiting no later than
/// `deadline`: past it, the `late` answer, and the backend is not called), open the backend if
/// needed (bounded by `deadline`), give it the deadline, run `f`; an I/O error closes the
/// backend.
fn run_on_device<R>(
    shared: &Shared,
    deadline: Option<Instant>,
    f: impl FnOnce(&mut dyn Uicc) -> Result<R, UiccError>,
) -> Result<R, UiccError> {
    let _claim = shared.claim(deadline)?;
    let mut device = shared.device.lock().unwrap_or_else(|e| e.into_inner());
    if device.is_none() {
        let mut config = shared
            .config
            .clone()
            .ok_or_else(|| UiccError::Unavailable(NOT_CONFIGURED.into()))?;
        config.deadline = deadline;
        let opened = krypton_uicc::open(&config).map_err(|e| unusable_file(&config, e))?;
        tracing::debug!(uicc = %opened.describe(), "UICC backend opened");
        *device = Some(opened);
    }
    let uicc = device.as_mut().expect("opened above");
    uicc.set_deadline(deadline);
    let result = f(uicc.as_mut());
    if matches!(result, Err(UiccError::Io { .. })) {
        *device = None;
    }
    result
}

/// What `config` names, for errors while the backend is busy or not yet open.
fn label(config: &UiccConfig) -> String {
    match (&config.sim_file, &config.port, &config.reader) {
        (Some(file), _, _) => format!("software SIM {}", file.display()),
        (None, Some(port), _) => format!("modem {port}"),
        (None, None, Some(reader)) => format!("PC/SC reader {reader:?}"),
        (None, None, None) => format!("the SIM ({} backend)", config.backend),
    }
}

/// A software SIM file that cannot be opened (missing, bad permissions, a field that breaks
/// its rules) is a configuration problem, not a reader or modem failure: it is answered as
/// `Unavailable` with the file's own error, so that the advice that follows is to fix the
/// configuration, not to check a card. Other backends' errors pass unchanged.
fn unusable_file(config: &UiccConfig, error: UiccError) -> UiccError {
    match error {
        UiccError::Io { .. } | UiccError::NoSim(_)
            if config.backend == krypton_uicc::BackendKind::Soft
                || (config.backend == krypton_uicc::BackendKind::Autodetect
                    && config.sim_file.is_some()) =>
        {
            UiccError::Unavailable(format!("the software SIM file cannot be used: {error}"))
        }
        other => other,
    }
}

/// `bytes` as a 16-byte RAND or AUTN; an `Io` error naming `what` and the length otherwise.
fn challenge_part(what: &str, bytes: &[u8]) -> Result<[u8; CHALLENGE_BYTES], UiccError> {
    <[u8; CHALLENGE_BYTES]>::try_from(bytes).map_err(|_| UiccError::Io {
        device: "uicc".into(),
        detail: format!(
            "{what} must be {CHALLENGE_BYTES} bytes, the component sent {}",
            bytes.len()
        ),
    })
}

/// The contract's `uicc-error` for a backend's error. No case carries a secret.
pub fn to_wit_error(error: UiccError) -> wit::UiccError {
    match error {
        UiccError::Unavailable(m) => wit::UiccError::Unavailable(m),
        UiccError::NoSim(m) => wit::UiccError::NoSim(m),
        e @ UiccError::Io { .. } => wit::UiccError::Io(e.to_string()),
        UiccError::Status {
            sw1, sw2, command, ..
        } => wit::UiccError::StatusWord(wit::StatusWord {
            sw1,
            sw2,
            command: command.to_string(),
        }),
        UiccError::MacFailure => wit::UiccError::MacFailure,
    }
}

/// One call's view of the SIM: the [`UiccAccess`] the host granted it, and the deadline its
/// SIM calls must keep (see the module). Implements `soracom:krypton/uicc`.
pub struct UiccCtx {
    access: UiccAccess,
    deadline: Instant,
    /// The device a SIM call is waiting on. Set when a call starts and cleared when it
    /// returns, so that it stays set when the wall-clock limit drops the call mid-wait.
    waiting: Option<String>,
}

impl UiccCtx {
    /// The SIM access of one call whose wall-clock limit is `wall` from now: SIM calls end
    /// [`WALL_RESERVE_MAX`] (or a tenth of `wall`, when less) before it.
    pub fn new(access: UiccAccess, wall: Duration) -> Self {
        let reserve = (wall / 10).min(WALL_RESERVE_MAX);
        UiccCtx {
            access,
            deadline: Instant::now() + wall.saturating_sub(reserve),
            waiting: None,
        }
    }

    /// Bound the call's SIM access by `budget` from now as well (the request's deadline).
    pub fn limit_to(&mut self, budget: Duration) {
        self.deadline = self
            .deadline
            .min(Instant::now().checked_add(budget).unwrap_or(self.deadline));
    }

    /// The instant the call's SIM access ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The device a SIM call was waiting on when the call was stopped, if one was: the call's
    /// failure is then a [`SimTimeout`], not the component's.
    pub fn stuck(&self) -> Option<SimTimeout> {
        self.waiting.clone().map(SimTimeout)
    }

    fn waiting_on(&mut self) {
        self.waiting = Some(match &self.access.0 {
            Some(shared) => shared.label.clone(),
            None => "the SIM".into(),
        });
    }
}

/// Link `soracom:krypton/uicc` into `linker`, served by the [`UiccCtx`] that `get` hands out of
/// the store data. Errors: the interface is linked already.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut UiccCtx,
) -> anyhow::Result<()> {
    wit::add_to_linker::<T, wasmtime::component::HasSelf<UiccCtx>>(linker, get)?;
    Ok(())
}

impl wit::Host for UiccCtx {
    async fn read_imsi(&mut self) -> Result<String, wit::UiccError> {
        self.waiting_on();
        let imsi = self.access.read_imsi_until(Some(self.deadline)).await;
        self.waiting = None;
        match &imsi {
            Ok(imsi) => tracing::debug!(%imsi, "uicc: IMSI read"),
            Err(e) => tracing::debug!(error = %e, "uicc: reading the IMSI failed"),
        }
        imsi.map(|i| i.to_string()).map_err(to_wit_error)
    }

    async fn authenticate(
        &mut self,
        rand: Vec<u8>,
        autn: Vec<u8>,
    ) -> Result<wit::AuthOutcome, wit::UiccError> {
        self.waiting_on();
        let outcome = self
            .access
            .authenticate_until(Some(self.deadline), &rand, &autn)
            .await;
        self.waiting = None;
        match outcome {
            Ok(AuthOutcome::Res { res, ck, ik }) => {
                // Never the values: RES, CK and IK are secrets.
                tracing::debug!("uicc: AUTHENTICATE succeeded");
                Ok(wit::AuthOutcome::Success(wit::AuthKeys {
                    res: res.expose().to_vec(),
                    ck: ck.expose().to_vec(),
                    ik: ik.expose().to_vec(),
                }))
            }
            Ok(AuthOutcome::SyncFailure { auts }) => {
                tracing::debug!("uicc: AUTHENTICATE answered a synchronisation failure");
                Ok(wit::AuthOutcome::SyncFailure(auts.to_vec()))
            }
            Err(e) => {
                tracing::debug!(error = %e, "uicc: AUTHENTICATE failed");
                Err(to_wit_error(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use krypton_uicc::soft::{SimRecord, SoftSim};

    const SIM: &str = r#"{"imsi": "001010123456789", "k": "465b5ce8b199b49faa5f0a2ee238a6bc",
        "opc": "cd63cb71954a9f4e48a5994e37a02baf", "amf": "8000", "sqn": "000000000000"}"#;

    #[tokio::test]
    async fn without_a_backend_every_call_is_unavailable() {
        let none = UiccAccess::none();
        assert!(!none.is_configured());
        assert_eq!(
            none.read_imsi().await.unwrap_err(),
            UiccError::Unavailable(NOT_CONFIGURED.into())
        );
        let err = none.authenticate(&[0; 16], &[0; 16]).await.unwrap_err();
        assert!(matches!(
            to_wit_error(err),
            wit::UiccError::Unavailable(m) if m.starts_with("no SIM access configured: ")
        ));
    }

    #[tokio::test]
    async fn a_software_sim_answers_and_bad_lengths_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.json");
        let record = SimRecord::parse(SIM.as_bytes()).unwrap();
        SoftSim::create(&path, &record).unwrap();
        let access = UiccAccess::new(UiccConfig {
            backend: BackendKind::Soft,
            sim_file: Some(path.clone()),
            ..UiccConfig::default()
        });
        assert_eq!(
            access.read_imsi().await.unwrap().as_str(),
            "001010123456789"
        );
        assert_eq!(
            access.describe().await.unwrap(),
            format!("software SIM {}", path.display())
        );
        for (rand, autn) in [(0, 16), (16, 15), (17, 16), (16, 4096)] {
            let err = access
                .authenticate(&vec![0; rand], &vec![0; autn])
                .await
                .unwrap_err();
            assert!(
                matches!(&err, UiccError::Io { detail, .. } if detail.contains("must be 16 bytes")),
                "{err}"
            );
        }
        let vector =
            krypton_uicc::aka::generate_vector(&record.subscriber(), 1, [0x80, 0], [7; 16]);
        let outcome = access
            .authenticate(&vector.rand, &vector.autn)
            .await
            .unwrap();
        assert!(matches!(outcome, AuthOutcome::Res { .. }));
        // A challenge with a stale SQN gets AUTS; a MAC from another key is refused.
        let outcome = access
            .authenticate(&vector.rand, &vector.autn)
            .await
            .unwrap();
        assert!(matches!(outcome, AuthOutcome::SyncFailure { .. }));
        let mut forged = vector.autn;
        forged[15] ^= 1;
        assert_eq!(
            access
                .authenticate(&vector.rand, &forged)
                .await
                .unwrap_err(),
            UiccError::MacFailure
        );
        assert_eq!(
            to_wit_error(UiccError::MacFailure),
            wit::UiccError::MacFailure
        );
    }

    #[test]
    fn status_words_keep_their_command() {
        let e = UiccError::Status {
            device: "modem /dev/ttyUSB2".into(),
            command: "AUTHENTICATE",
            sw1: 0x69,
            sw2: 0x82,
        };
        assert_eq!(
            to_wit_error(e),
            wit::UiccError::StatusWord(wit::StatusWord {
                sw1: 0x69,
                sw2: 0x82,
                command: "AUTHENTICATE".into()
            })
        );
    }

    /// A reader that never answers (a stuck PC/SC `SCardTransmit`), for at most 20 s.
    struct Stuck;

    impl Uicc for Stuck {
        fn describe(&self) -> String {
            "PC/SC reader \"stuck\"".into()
        }
        fn read_imsi(&mut self) -> Result<Imsi, UiccError> {
            std::thread::sleep(Duration::from_secs(20));
            Err(UiccError::NoSim("late".into()))
        }
        fn authenticate(&mut self, _: &[u8; 16], _: &[u8; 16]) -> Result<AuthOutcome, UiccError> {
            self.read_imsi().map(|_| unreachable!())
        }
    }

    /// Issue 18, item 10: a backend that ignores the deadline is abandoned at it (the call
    /// answers an `io` error naming the reader), a second call while the first still holds it
    /// is refused at once, and a call stopped while a SIM call waits is the SIM's timeout.
    #[tokio::test]
    async fn a_stuck_reader_is_abandoned_at_the_deadline() {
        let access = UiccAccess::from_uicc(Box::new(Stuck));
        let late = UiccError::Io {
            device: "PC/SC reader \"stuck\"".into(),
            detail: "no answer before the run's deadline; the host stopped waiting (check the \
                     modem or card reader)"
                .into(),
        };
        let deadline = Instant::now() + Duration::from_millis(300);
        let err = access.read_imsi_until(Some(deadline)).await.unwrap_err();
        assert!(Instant::now() >= deadline);
        assert_eq!(err, late);
        let deadline = Instant::now() + Duration::from_millis(200);
        let err = access
            .authenticate_until(Some(deadline), &[0; 16], &[0; 16])
            .await
            .unwrap_err();
        assert_eq!(err, busy("PC/SC reader \"stuck\""));
        // A deadline already passed: answered at once, nothing reaches the reader.
        let err = access
            .read_imsi_until(Some(Instant::now()))
            .await
            .unwrap_err();
        assert_eq!(err, late);

        // The call's context: its deadline is the earlier of the request's and the wall
        // limit's (less the reserve), and a call dropped while the SIM is busy names it.
        let access = UiccAccess::from_uicc(Box::new(Stuck));
        let mut ctx = UiccCtx::new(access, Duration::from_secs(20));
        let wall_bound = Instant::now() + Duration::from_secs(18);
        assert!(ctx.deadline() <= wall_bound);
        ctx.limit_to(Duration::from_secs(3600));
        assert!(
            ctx.deadline() <= wall_bound,
            "the wall limit still bounds it"
        );
        ctx.limit_to(Duration::from_secs(2));
        assert!(ctx.deadline() <= Instant::now() + Duration::from_secs(2));
        assert_eq!(ctx.stuck(), None);
        let dropped =
            tokio::time::timeout(Duration::from_millis(100), wit::Host::read_imsi(&mut ctx)).await;
        assert!(dropped.is_err());
        assert_eq!(
            ctx.stuck(),
            Some(SimTimeout("PC/SC reader \"stuck\"".into()))
        );
    }

    /// The `io` error of a call refused while an abandoned call still holds `device`.
    fn busy(device: &str) -> UiccError {
        UiccError::Io {
            device: device.into(),
            detail: "the SIM device is still busy with an earlier call that passed its \
                     deadline; try again once it answers (check the modem or card reader)"
                .into(),
        }
    }

    /// The `io` error of a call that passed its deadline on `device`.
    fn late(device: &str) -> UiccError {
        UiccError::Io {
            device: device.into(),
            detail: "no answer before the run's deadline; the host stopped waiting (check the \
                     modem or card reader)"
                .into(),
        }
    }

    /// What reached a [`Held`] backend, one entry per call: its name, and whether the call's
    /// deadline had passed when it reached the backend.
    #[derive(Default)]
    struct Probe {
        calls: Mutex<Vec<(&'static str, bool)>>,
        released: Mutex<bool>,
        release: std::sync::Condvar,
    }

    impl Probe {
        fn calls(&self) -> Vec<(&'static str, bool)> {
            self.calls.lock().unwrap().clone()
        }

        /// Let every held call answer.
        fn release(&self) {
            *self.released.lock().unwrap() = true;
            self.release.notify_all();
        }
    }

    /// A reader that hangs (a PC/SC `SCardTransmit` that does not return) until the test
    /// releases it (at most 20 s), recording each call in its [`Probe`].
    struct Held {
        probe: Arc<Probe>,
        deadline: Option<Instant>,
    }

    impl Held {
        fn hold(&mut self, call: &'static str) {
            let late = self.deadline.is_some_and(|d| Instant::now() >= d);
            self.probe.calls.lock().unwrap().push((call, late));
            let released = self.probe.released.lock().unwrap();
            let _ = self
                .probe
                .release
                .wait_timeout_while(released, Duration::from_secs(20), |r| !*r)
                .unwrap();
        }
    }

    impl Uicc for Held {
        fn describe(&self) -> String {
            "PC/SC reader \"held\"".into()
        }
        fn read_imsi(&mut self) -> Result<Imsi, UiccError> {
            self.hold("read_imsi");
            Ok(Imsi::parse("001010123456789").unwrap())
        }
        fn authenticate(&mut self, _: &[u8; 16], _: &[u8; 16]) -> Result<AuthOutcome, UiccError> {
            self.hold("authenticate");
            Err(UiccError::MacFailure)
        }
        fn set_deadline(&mut self, deadline: Option<Instant>) {
            self.deadline = deadline;
        }
    }

    fn held() -> (UiccAccess, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let access = UiccAccess::from_uicc(Box::new(Held {
            probe: probe.clone(),
            deadline: None,
        }));
        (access, probe)
    }

    /// How many holders the access's shared state has: the access itself, and one per SIM
    /// thread still alive (each owns a clone until it ends).
    fn holders(access: &UiccAccess) -> usize {
        Arc::strong_count(access.0.as_ref().unwrap())
    }

    /// Wait (at most 20 s) until every SIM thread of `access` has ended.
    async fn threads_ended(access: &UiccAccess) {
        let until = Instant::now() + Duration::from_secs(20);
        while holders(access) > 1 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(holders(access), 1, "SIM threads still alive after 20 s");
    }

    /// Issue 18, item 10: while a call that passed its deadline still holds the device, calls
    /// with a deadline are refused at once with an `io` error naming the device: no thread,
    /// nothing reaches the reader, so threads cannot pile up behind a hung reader.
    #[tokio::test]
    async fn calls_behind_an_abandoned_call_are_refused_at_once() {
        let (access, probe) = held();
        let device = "PC/SC reader \"held\"";
        let deadline = Instant::now() + Duration::from_millis(200);
        let err = access.read_imsi_until(Some(deadline)).await.unwrap_err();
        assert_eq!(err, late(device));
        assert_eq!(holders(&access), 2, "the abandoned call's thread");
        for _ in 0..16 {
            let deadline = Instant::now() + Duration::from_secs(5);
            let err = access
                .authenticate_until(Some(deadline), &[0; 16], &[0; 16])
                .await
                .unwrap_err();
            assert_eq!(err, busy(device));
            assert!(Instant::now() < deadline, "answered before its deadline");
            let err = access
                .read_imsi_until(Some(Instant::now() + Duration::from_secs(5)))
                .await
                .unwrap_err();
            assert_eq!(err, busy(device));
        }
        assert_eq!(holders(&access), 2, "no thread per refused call");
        assert_eq!(probe.calls(), [("read_imsi", false)]);

        // The reader comes back: the abandoned call ends, nothing else reached the reader, and
        // the next call is served.
        probe.release();
        threads_ended(&access).await;
        assert_eq!(probe.calls(), [("read_imsi", false)]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let imsi = access.read_imsi_until(Some(deadline)).await.unwrap();
        assert_eq!(imsi.as_str(), "001010123456789");
        assert_eq!(probe.calls(), [("read_imsi", false), ("read_imsi", false)]);
        threads_ended(&access).await;
    }

    /// Issue 18, item 10: a call that started waiting for the device while its holder was
    /// still within its deadline gives up at its own deadline, and when the reader comes back
    /// it never sends its command (an AUTHENTICATE for a caller long gone).
    #[tokio::test]
    async fn a_call_queued_behind_a_stuck_one_never_reaches_the_card_late() {
        let (access, probe) = held();
        let device = "PC/SC reader \"held\"";
        let first_deadline = Instant::now() + Duration::from_secs(2);
        let first = tokio::spawn({
            let access = access.clone();
            async move { access.read_imsi_until(Some(first_deadline)).await }
        });
        let until = Instant::now() + Duration::from_secs(20);
        while probe.calls().is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(probe.calls(), [("read_imsi", false)]);
        assert!(
            Instant::now() < first_deadline,
            "the holder is within its deadline"
        );
        // The holder is not late yet: this call waits for the device, up to its deadline.
        let deadline = first_deadline + Duration::from_secs(1);
        let err = access
            .authenticate_until(Some(deadline), &[0; 16], &[0; 16])
            .await
            .unwrap_err();
        assert_eq!(err, late(device));
        assert_eq!(first.await.unwrap().unwrap_err(), late(device));

        probe.release();
        threads_ended(&access).await;
        assert_eq!(probe.calls(), [("read_imsi", false)]);
    }
}
