//! Azure IoT Hub through Azure DPS (target `azure-iot`): P6 register, P7 poll the
//! registration until `assigned`. A registration in flight is kept in the store
//! ([`AZURE_PENDING`]) so that a restart resumes it instead of registering the device again.

use super::common::{Call, Prepared, checked_str, host_name, post, prepare_plain};
use crate::client::{Capabilities, Method, Run, retry_after_ms};
use crate::types::bundle::{AzureIotBundle, Bundle, FORMAT_VERSION};
use crate::types::identifiers as id;
use crate::types::json::{json_object, json_type, optional_str, request_body, required_str};
use crate::types::model::{AuthMode, Error, Report};
use crate::types::validate::credentials;
use serde_json::{Map, Value};

/// P6: start a DPS registration.
pub const REGISTER: &str = "/v1/provisioning/azure/iot/register";
/// P7 (network mode: `GET`; SIM mode: `POST`): the registration's status; the `operationId`
/// follows.
pub const REGISTRATIONS: &str = "/v1/provisioning/azure/iot/registrations/";

/// The calls, in order.
pub const CALLS: &[Call] = &[
    post(REGISTER),
    Call {
        method: Method::Get,
        path: "/v1/provisioning/azure/iot/registrations/{operationId}",
    },
];

/// Check the request parameters: `deviceId`, when given, is the registration ID Krypton sends
/// to DPS ([`id::dps_registration_id`]). Errors: [`Error::InvalidRequest`] naming `deviceId`.
pub fn prepare(params: Option<Map<String, Value>>) -> Result<Prepared, Error> {
    if let Some(value) = params.as_ref().and_then(|p| p.get("deviceId")) {
        match value {
            Value::String(s) => id::dps_registration_id(s).map_err(|r| {
                Error::InvalidRequest(format!("deviceId is not a DPS registration ID: {r}"))
            })?,
            Value::Null => {}
            other => {
                return Err(Error::InvalidRequest(format!(
                    "deviceId must be a string, got {}",
                    json_type(other)
                )));
            }
        }
    }
    prepare_plain(params)
}

/// After the bundle is stored: forget the registration in flight (a failure only means a later
/// run polls a finished operation once more), and when the device came back on another hub or
/// under another device ID, say so in one log line and add `previousHost` /
/// `previousDeviceId` to the report.
pub fn after_store(
    caps: &mut dyn Capabilities,
    previous: Option<&Bundle>,
    stored: &Bundle,
    report: &mut Report,
) {
    if let Err(e) = caps.store_delete(AZURE_PENDING) {
        caps.log(&format!(
            "azure-iot: could not forget the finished registration: {e}"
        ));
    }
    if let (Some(Bundle::AzureIot(old)), Bundle::AzureIot(new)) = (previous, stored) {
        let mut changes = Vec::new();
        if old.host != new.host {
            changes.push(format!("IoT Hub `{}` -> `{}`", old.host, new.host));
            report
                .identifiers
                .push(("previousHost".into(), old.host.clone()));
        }
        if old.device_id != new.device_id {
            changes.push(format!(
                "device ID `{}` -> `{}`",
                old.device_id, new.device_id
            ));
            report
                .identifiers
                .push(("previousDeviceId".into(), old.device_id.clone()));
        }
        if !changes.is_empty() {
            caps.log(&format!(
                "azure-iot: the device moved: {}",
                changes.join(", ")
            ));
        }
    }
}

/// DPS states that mean "keep polling". Krypton relays DPS's vocabulary (`assigning`,
/// `assigned`, `failed`, `disabled`, `unassigned`); `unassigned` is the state before DPS
/// starts work, so it is treated as pending too.
fn is_pending(status: &str) -> bool {
    matches!(status, "assigning" | "unassigned")
}

/// Store name of an Azure registration in flight.
pub const AZURE_PENDING: &str = "azure-iot-pending";
/// A stored in-flight registration older than this is not resumed, ms (DPS keeps operation
/// status for a limited time; a day-old one is registered anew).
pub const AZURE_PENDING_MAX_AGE_MS: u64 = 60 * 60 * 1000;

/// A registration in flight, stored between `register` and `assigned` so that a crash or a
/// power cut resumes polling instead of registering again.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PendingRegistration {
    operation_id: String,
    started_at_ms: u64,
}

/// The registration to resume, if a recent one is stored. A record that cannot be parsed, is
/// too old or holds an unusable operation ID is ignored (registered anew).
/// Errors: [`Error::Storage`] when the store itself fails: a registration must not be started
/// without knowing whether one is in flight.
fn pending_registration(run: &mut Run<'_>) -> Result<Option<String>, Error> {
    let Some(bytes) = run.caps.store_get(AZURE_PENDING)? else {
        return Ok(None);
    };
    let Ok(pending) = serde_json::from_slice::<PendingRegistration>(&bytes) else {
        return Ok(None);
    };
    let age = run.caps.unix_ms().saturating_sub(pending.started_at_ms);
    let id_ok = id::dps_operation_id(&pending.operation_id).is_ok();
    Ok((id_ok && age < AZURE_PENDING_MAX_AGE_MS).then_some(pending.operation_id))
}

/// P6 + P7: register (or resume a stored registration), then poll until `assigned`. Network
/// mode polls with `GET`, as SORACOM's sample does; the wait is the run's poll interval (the
/// sample uses 1 s) or Krypton's `Retry-After` when longer; the loop ends at the operation
/// deadline. The bundle is checked; nothing is stored here but the registration in flight.
pub fn obtain(run: &mut Run<'_>, prepared: Prepared) -> Result<Bundle, Error> {
    let body = prepared.body;
    let poll_ms = run.poll_interval_ms;
    if let Some(op) = pending_registration(run)? {
        run.caps
            .log(&format!("resuming registration {op} found in the store"));
        match poll_registration(run, op.clone(), poll_ms, 0) {
            // DPS no longer knows it: register anew.
            Err(Error::HttpStatus { status: 404, .. }) => {
                run.caps.log(&format!(
                    "registration {op} is unknown to Krypton; registering anew"
                ));
                let _ = run.caps.store_delete(AZURE_PENDING);
            }
            other => return other,
        }
    }
    let register = run.call(Method::Post, REGISTER, Some(body))?;
    let obj = json_object(&register.body)?;
    let op = checked_str(&obj, "operationId", id::dps_operation_id)?.to_string();
    if let Some(status) = optional_str(&obj, "status")?
        && !is_pending(status)
        && status != "assigned"
    {
        return Err(Error::RegistrationFailed {
            operation_id: op,
            status: status.to_string(),
        });
    }
    // Remember it before the first wait: from here a restart resumes instead of registering.
    let pending = PendingRegistration {
        operation_id: op.clone(),
        started_at_ms: run.caps.unix_ms(),
    };
    run.caps.store_put(
        AZURE_PENDING,
        &serde_json::to_vec(&pending).expect("serializes"),
    )?;
    run.caps.log(&format!(
        "registration {op} started; polling until assigned"
    ));
    let first_wait = retry_after_ms(&register, run.caps.unix_ms()).unwrap_or(0);
    poll_registration(run, op, poll_ms, first_wait)
}

/// Poll P7 until `assigned` (the bundle), another final status (the pending registration is
/// forgotten) or the deadline (it is kept, to be resumed).
fn poll_registration(
    run: &mut Run<'_>,
    op: String,
    poll_ms: u64,
    first_wait: u64,
) -> Result<Bundle, Error> {
    let path = format!("{REGISTRATIONS}{op}");
    let mut wait = first_wait.max(poll_ms);
    let mut polls = 0u32;
    let not_assigned = |polls: u32, budget_ms: u64| {
        Error::Timeout(format!(
            "Azure registration {op} was not assigned within the {budget_ms} ms deadline ({polls} polls); \
             the next run resumes it"
        ))
    };
    loop {
        // A wait that ends at or after the deadline (a sleep may overshoot) is the same outcome.
        if wait >= run.deadline.remaining(run.caps) {
            return Err(not_assigned(polls, run.deadline.budget_ms));
        }
        run.caps.sleep_ms(wait);
        if run.deadline.remaining(run.caps) == 0 {
            return Err(not_assigned(polls, run.deadline.budget_ms));
        }
        polls += 1;
        // Network mode polls with GET, as SORACOM's sample; SIM mode with a signed POST, as
        // SORACOM's clients, whose body carries the `operationId` in `requestParameters`.
        let (method, body) = if run.sim_key().is_some() {
            let mut params = Map::new();
            params.insert("operationId".into(), Value::String(op.clone()));
            (Method::Post, Some(request_body(Some(&params))))
        } else {
            (Method::Get, None)
        };
        let response = match run.call(method, &path, body) {
            Ok(response) => response,
            // The deadline ran out during this poll: the registration is still in flight.
            Err(Error::Timeout(_)) if run.deadline.remaining(run.caps) == 0 => {
                return Err(not_assigned(polls, run.deadline.budget_ms));
            }
            Err(e) => return Err(e),
        };
        let obj = json_object(&response.body)?;
        let status = required_str(&obj, "status")?;
        if status == "assigned" {
            let now = run.caps.unix_ms();
            let bundle = assigned(&obj, op, now);
            if bundle.is_err() {
                // Asking again would get the same answer: forget the registration, so that
                // nothing of this run stays in the store.
                let _ = run.caps.store_delete(AZURE_PENDING);
            }
            return bundle;
        }
        if !is_pending(status) {
            let _ = run.caps.store_delete(AZURE_PENDING);
            return Err(Error::RegistrationFailed {
                operation_id: op,
                status: status.to_string(),
            });
        }
        wait = retry_after_ms(&response, run.caps.unix_ms())
            .unwrap_or(0)
            .max(poll_ms);
    }
}

/// The bundle from an `assigned` registration status (P7).
fn assigned(obj: &Map<String, Value>, op: String, now: u64) -> Result<Bundle, Error> {
    let device_id = checked_str(obj, "deviceId", id::iot_hub_device_id)?.to_string();
    let host = host_name(obj, "host")?;
    let creds = credentials(
        required_str(obj, "certificate")?,
        required_str(obj, "privateKey")?,
        optional_str(obj, "rootCaCertificate")?,
    )?;
    Ok(Bundle::AzureIot(AzureIotBundle {
        format_version: FORMAT_VERSION,
        obtained_at_ms: now,
        mode: AuthMode::default(),
        device_id,
        host,
        operation_id: op,
        certificate: creds.certificate,
        private_key: creds.private_key,
        root_ca_certificate: creds.root_ca_certificate,
    }))
}
