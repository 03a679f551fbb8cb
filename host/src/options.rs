//! [`ProvisionOptions`]: how one provisioning run behaves, with the defaults every caller shares
//! (the CLI's `provision`, the daemon's passes, embedders, the tests).

use crate::bindings::{
    AuthMode, HttpTimeouts, KeyCacheUse, ProvisionRequest, RetryPolicy, SimOptions, Target,
};
use crate::sandbox::SandboxLimits;
use std::time::Duration;

/// The whole-run deadline an operator may set, s, inclusive: 1 s to 1 day (`--deadline-secs`,
/// the daemon's `limits.deadline_secs`).
pub const DEADLINE_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400;

/// The knobs of one provisioning run besides its target and Krypton endpoint (the component
/// names the default endpoint of each mode: [`crate::component::facts::Facts::endpoint`]). `Default` gives
/// the values `krypton-host provision --help` documents: network mode, no request parameters,
/// no force, the SIM-mode key cache reused, a 120 s deadline, a 1 s poll interval, 10 s connect and 30 s read timeouts, and 4
/// attempts per call with a 500 ms to 8 s backoff.
///
/// Durations reach the component in whole milliseconds (`u32`, saturating at about 49 days);
/// the contract's `provision-request` record says what each one bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionOptions {
    /// How the device authenticates to Krypton (`network`: over SORACOM Air or Arc).
    pub mode: AuthMode,
    /// `requestParameters` as JSON object text, or `None` to send `{}`.
    pub request_parameters: Option<String>,
    /// Call Krypton even when a usable bundle is stored.
    pub force: bool,
    /// The whole operation: every call, retry wait and registration poll.
    pub deadline: Duration,
    /// Wait between registration polls when Krypton sends no `Retry-After`.
    pub poll_interval: Duration,
    /// TCP connect plus TLS handshake, per request.
    pub connect_timeout: Duration,
    /// Until the first response byte, and between two body chunks, per request.
    pub read_timeout: Duration,
    /// Attempts per Krypton call, the first included (1: no retry).
    pub max_attempts: u32,
    /// Backoff base (doubled per attempt, full jitter).
    pub backoff_base: Duration,
    /// Backoff ceiling.
    pub backoff_max: Duration,
    /// SIM-authenticated mode: reuse the cached Keys API session (`reuse`, the default),
    /// `bypass` it, or `clear` it first. Ignored in network mode.
    pub key_cache: KeyCacheUse,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        ProvisionOptions {
            mode: AuthMode::Network,
            request_parameters: None,
            force: false,
            deadline: Self::DEFAULT_DEADLINE,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            read_timeout: Self::DEFAULT_READ_TIMEOUT,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            backoff_base: Self::DEFAULT_BACKOFF_BASE,
            backoff_max: Self::DEFAULT_BACKOFF_MAX,
            key_cache: KeyCacheUse::Reuse,
        }
    }
}

/// Whole milliseconds of `d`, saturating at `u32::MAX`.
fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl ProvisionOptions {
    /// Default [`Self::deadline`]: 120 s.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
    /// Default [`Self::poll_interval`]: 1 s.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
    /// Default [`Self::connect_timeout`]: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default [`Self::read_timeout`]: 30 s.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default [`Self::max_attempts`]: 4.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
    /// Default [`Self::backoff_base`]: 500 ms.
    pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);
    /// Default [`Self::backoff_max`]: 8 s.
    pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(8);

    /// Slack between the operation deadline and the wall-clock limit of the whole call: past
    /// the deadline plus this, the host stops a component that ignores its own deadline.
    pub const WALL_SLACK: Duration = Duration::from_secs(60);

    /// The contract's `provision-request` for `target` at `endpoint` (a Krypton base URL such
    /// as `https://krypton.example:8036`) with these options.
    pub fn request(&self, target: Target, endpoint: &str) -> ProvisionRequest {
        ProvisionRequest {
            target,
            mode: self.mode,
            endpoint: endpoint.to_string(),
            request_parameters: self.request_parameters.clone(),
            force: self.force,
            deadline_ms: ms(self.deadline),
            poll_interval_ms: ms(self.poll_interval),
            timeouts: HttpTimeouts {
                connect_ms: ms(self.connect_timeout),
                first_byte_ms: ms(self.read_timeout),
                between_bytes_ms: ms(self.read_timeout),
            },
            retry: RetryPolicy {
                max_attempts: self.max_attempts,
                base_delay_ms: ms(self.backoff_base),
                max_delay_ms: ms(self.backoff_max),
            },
            sim: SimOptions {
                key_cache: self.key_cache,
            },
        }
    }

    /// The default sandbox limits with a wall-clock limit of the deadline plus
    /// [`Self::WALL_SLACK`].
    pub fn sandbox_limits(&self) -> SandboxLimits {
        SandboxLimits {
            wall: self.deadline.saturating_add(Self::WALL_SLACK),
            ..SandboxLimits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_reach_the_request_in_milliseconds() {
        let options = ProvisionOptions::default();
        let request = options.request(Target::Arc, "https://krypton.example:8036");
        assert_eq!(request.deadline_ms, 120_000);
        assert_eq!(request.poll_interval_ms, 1_000);
        assert_eq!(
            request.timeouts,
            HttpTimeouts {
                connect_ms: 10_000,
                first_byte_ms: 30_000,
                between_bytes_ms: 30_000,
            }
        );
        assert_eq!(
            request.retry,
            RetryPolicy {
                max_attempts: 4,
                base_delay_ms: 500,
                max_delay_ms: 8_000,
            }
        );
        assert_eq!(options.sandbox_limits().wall, Duration::from_secs(180));
        let long = ProvisionOptions {
            deadline: Duration::from_secs(u64::MAX),
            ..ProvisionOptions::default()
        };
        assert_eq!(long.request(Target::Arc, "x").deadline_ms, u32::MAX);
        assert_eq!(request.sim.key_cache, KeyCacheUse::Reuse);
    }
}
