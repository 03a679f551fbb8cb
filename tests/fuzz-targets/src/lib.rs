//! The fuzz targets of `fuzz/` as plain functions: each takes the fuzzer's bytes and runs one
//! parser of untrusted input, panicking only when an invariant breaks (a panic is the crash a
//! fuzzer reports). `fuzz/fuzz_targets/<name>.rs` calls [`TARGETS`]`[<name>]` under
//! libFuzzer (`cargo +nightly fuzz run <name>`, nightly only: cargo-fuzz builds with `-Z`
//! sanitizer flags); this crate's tests call the same functions on stable with the seed
//! corpora of `fuzz/corpus/<name>/` and generated inputs, so `cargo test` exercises every
//! target.
//!
//! Input shapes:
//! * the response targets (one per Krypton operation, and `keys_api` for SIM mode's Keys API):
//!   the bytes are the bodies of Krypton's successive answers, separated by [`SEPARATOR`]
//!   (a byte never found in UTF-8 text); each is a `200` answer, and a call after the last
//!   one fails like a dead connection;
//! * `pem_key`: certificate, private key and (optional) root CA PEM texts, separated by
//!   [`SEPARATOR`];
//! * `stored_bundle`: the first byte picks the target, the rest is its stored bundle (every
//!   file on disk is untrusted input too);
//! * every other target: the whole input is the file or header value.

use krypton_guest::client::{
    Capabilities, Endpoint, HttpRequest, HttpResponse, MAX_RETRY_AFTER_MS, SendFailure,
    retry_after_ms,
};
use krypton_guest::types::model::{
    AuthKeys, AuthMode, AuthOutcome, Error, KeyCacheUse, ProvisionRequest, Report, RetryPolicy,
    SecretBytes, SimOptions, Target, Timeouts, UiccError,
};
use std::collections::{BTreeMap, VecDeque};

/// The byte that separates the parts of a multi-part input (0xFF is never part of UTF-8).
pub const SEPARATOR: u8 = 0xff;

/// The endpoint the response targets call (nothing is sent: [`FakeCaps`] answers).
pub const ENDPOINT: &str = "https://krypton.example:8036";

/// The fake SIM's CK: a canary that must never appear in a report, an error or a log line.
pub const CANARY_CK: &[u8; 16] = b"CANARY-CK-FUZZ!!";

/// Wall-clock time of [`FakeCaps`] at monotonic 0, ms since the Unix epoch (2027-01-01).
pub const FAKE_EPOCH_MS: u64 = 1_798_761_600_000;

/// A fuzz target: its name (the file in `fuzz/fuzz_targets/` and the corpus directory) and
/// its body.
pub type FuzzTarget = (&'static str, fn(&[u8]));

/// Every target, by name: the guest's response parsers, its PEM/key loader and stored-bundle
/// reader, `Retry-After`, and (feature `host`) the host's parsers.
pub const TARGETS: &[FuzzTarget] = &[
    ("azure_iot", azure_iot),
    ("aws_iot", aws_iot),
    ("aws_cognito", aws_cognito),
    ("aws_cognito_openid", aws_cognito_openid),
    ("inventory", inventory),
    ("arc", arc),
    ("air_subscriber_metadata", air_subscriber_metadata),
    ("air_userdata", air_userdata),
    ("keys_api", keys_api),
    ("pem_key", pem_key),
    ("stored_bundle", stored_bundle),
    ("retry_after", retry_after),
    #[cfg(feature = "host")]
    ("doctor_wireguard", host::doctor_wireguard),
    #[cfg(feature = "host")]
    ("doctor_soratun", host::doctor_soratun),
    #[cfg(feature = "host")]
    ("gateway_config", host::gateway_config),
    #[cfg(feature = "host")]
    ("signature_file", host::signature_file),
    #[cfg(feature = "host")]
    ("host_pem", host::host_pem),
    #[cfg(feature = "host")]
    ("sim_file", host::sim_file),
];

/// The target named `name`. Panics on an unknown name (a fuzz target file names its own).
pub fn target(name: &str) -> fn(&[u8]) {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target `{name}`"))
        .1
}

/// The parts of a multi-part input, split at [`SEPARATOR`].
pub fn parts(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == SEPARATOR).collect()
}

/// A scripted environment for the component's logic: answers from a queue, a clock that
/// moves only when the logic sleeps or sends, an in-memory store, a SIM that always
/// authenticates with [`CANARY_CK`].
#[derive(Default)]
pub struct FakeCaps {
    /// The answers still to give, in order; a send after the last one fails (not transient).
    pub responses: VecDeque<Result<HttpResponse, SendFailure>>,
    /// Every request sent: method, path.
    pub sent: Vec<(String, String)>,
    /// Monotonic time, ms.
    pub now_ms: u64,
    /// How long each send takes, ms.
    pub send_ms: u64,
    /// Every sleep, ms.
    pub slept_ms: Vec<u64>,
    /// The secret store.
    pub store: BTreeMap<String, Vec<u8>>,
    /// Log lines.
    pub logs: Vec<String>,
    /// The random numbers to give, in turn (0 when empty).
    pub random: VecDeque<u64>,
}

impl FakeCaps {
    /// A fake whose answers are `200` with each of `bodies`.
    pub fn with_bodies(bodies: &[&[u8]]) -> Self {
        FakeCaps {
            responses: bodies
                .iter()
                .map(|b| {
                    Ok(HttpResponse {
                        status: 200,
                        headers: vec![],
                        body: b.to_vec(),
                    })
                })
                .collect(),
            send_ms: 5,
            ..FakeCaps::default()
        }
    }
}

impl Capabilities for FakeCaps {
    fn send(
        &mut self,
        _endpoint: &Endpoint,
        request: &HttpRequest,
        _timeouts: Timeouts,
        _total_ms: u64,
        max_body: usize,
    ) -> Result<HttpResponse, SendFailure> {
        self.sent
            .push((format!("{:?}", request.method), request.path.clone()));
        self.now_ms += self.send_ms;
        let answer = self.responses.pop_front().unwrap_or_else(|| {
            Err(SendFailure {
                error: Error::Timeout("the scripted answers ran out".into()),
                transient: false,
            })
        });
        // The host reads at most `max_body` bytes; a longer body never reaches the component.
        match answer {
            Ok(r) if r.body.len() > max_body => Err(SendFailure {
                error: Error::Timeout("body over the cap".into()),
                transient: false,
            }),
            other => other,
        }
    }
    fn monotonic_ms(&self) -> u64 {
        self.now_ms
    }
    fn unix_ms(&self) -> u64 {
        FAKE_EPOCH_MS + self.now_ms
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.slept_ms.push(ms);
        self.now_ms += ms;
    }
    fn random_u64(&mut self) -> u64 {
        self.random.pop_front().unwrap_or(0)
    }
    fn log(&mut self, line: &str) {
        self.logs.push(line.to_string());
    }
    fn store_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.store.get(name).cloned())
    }
    fn store_put(&mut self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.store.insert(name.to_string(), value.to_vec());
        Ok(())
    }
    fn store_delete(&mut self, name: &str) -> Result<bool, Error> {
        Ok(self.store.remove(name).is_some())
    }
    fn read_imsi(&mut self) -> Result<String, UiccError> {
        Ok("440101234567890".into())
    }
    fn authenticate(&mut self, _rand: &[u8], _autn: &[u8]) -> Result<AuthOutcome, UiccError> {
        Ok(AuthOutcome::Success(AuthKeys {
            res: SecretBytes::new(b"RES-FUZZ".to_vec()),
            ck: SecretBytes::new(CANARY_CK.to_vec()),
            ik: SecretBytes::new(b"CANARY-IK-FUZZ!!".to_vec()),
        }))
    }
}

/// The request the response targets make: network mode (or SIM), one attempt, a 60 s
/// deadline, 1 s between Azure polls; Inventory with its required `endpoint` parameter.
pub fn request(target: Target, mode: AuthMode) -> ProvisionRequest {
    ProvisionRequest {
        target,
        mode,
        endpoint: ENDPOINT.into(),
        request_parameters: (target == Target::Inventory)
            .then(|| r#"{"endpoint":"gw-0042"}"#.into()),
        force: false,
        deadline_ms: 60_000,
        poll_interval_ms: 1000,
        timeouts: Timeouts {
            connect_ms: 10_000,
            first_byte_ms: 30_000,
            between_bytes_ms: 30_000,
        },
        retry: RetryPolicy {
            max_attempts: 1,
            base_delay_ms: 500,
            max_delay_ms: 8_000,
        },
        sim: SimOptions {
            key_cache: KeyCacheUse::Bypass,
        },
    }
}

/// Provision `target` in `mode` with Krypton's answers from `data` (see the crate docs): the
/// environment afterwards and the outcome.
pub fn provision(target: Target, mode: AuthMode, data: &[u8]) -> (FakeCaps, Result<Report, Error>) {
    let mut caps = FakeCaps::with_bodies(&parts(data));
    let outcome = krypton_guest::ops::provision(&mut caps, &request(target, mode));
    (caps, outcome)
}

/// Provision `target` with Krypton's answers from `data`, then check the invariants: a
/// failed run stores no bundle for the target; a successful one stores a bundle that reads
/// back valid, whose report names it; no text carries the SIM's CK.
fn provision_with(target: Target, mode: AuthMode, data: &[u8]) {
    let (caps, outcome) = provision(target, mode, data);
    let mut caps = caps;
    let name = target.bundle_name();
    match &outcome {
        Ok(report) => {
            assert_eq!(report.bundle, name);
            let stored = krypton_guest::ops::load(&mut caps, target)
                .unwrap_or_else(|e| panic!("a stored bundle does not read back: {e}"));
            assert!(stored.is_some(), "success without a stored bundle");
        }
        Err(_) => assert!(
            !caps.store.contains_key(name),
            "a failed run stored a bundle"
        ),
    }
    let canary = String::from_utf8_lossy(CANARY_CK).into_owned();
    let texts = caps
        .logs
        .iter()
        .cloned()
        .chain(outcome.as_ref().err().map(|e| format!("{e} {e:?}")))
        .chain(outcome.as_ref().ok().map(|r| format!("{r:?}")));
    for text in texts {
        assert!(!text.contains(&canary), "the CK reached a text: {text}");
    }
}

/// Azure IoT (P6 register, P7 polls): the bodies of the register answer and of each poll.
pub fn azure_iot(data: &[u8]) {
    provision_with(Target::AzureIot, AuthMode::Network, data);
}

/// AWS IoT (P1, or P1 + P2 + P3 when P1 answers without certificates).
pub fn aws_iot(data: &[u8]) {
    provision_with(Target::AwsIot, AuthMode::Network, data);
}

/// Amazon Cognito credentials (P4).
pub fn aws_cognito(data: &[u8]) {
    provision_with(Target::AwsCognito, AuthMode::Network, data);
}

/// Amazon Cognito OpenID token (P5).
pub fn aws_cognito_openid(data: &[u8]) {
    provision_with(Target::AwsCognitoOpenid, AuthMode::Network, data);
}

/// SORACOM Inventory bootstrap (P9).
pub fn inventory(data: &[u8]) {
    provision_with(Target::Inventory, AuthMode::Network, data);
}

/// SORACOM Arc bootstrap (P10), the source of `wireguard-config` (rendered when it succeeds).
pub fn arc(data: &[u8]) {
    provision_with(Target::Arc, AuthMode::Network, data);
    let (mut caps, outcome) = provision(Target::Arc, AuthMode::Network, data);
    if outcome.is_ok() {
        let addresses = ["54.250.252.67".to_string(), "2001:db8::1".to_string()];
        if let Ok(text) = krypton_guest::formats::wireguard_config(&mut caps, &addresses) {
            assert!(text.contains("[Peer]"), "{text}");
        }
    }
}

/// SORACOM Air subscriber metadata (P11).
pub fn air_subscriber_metadata(data: &[u8]) {
    provision_with(Target::SubscriberMetadata, AuthMode::Network, data);
}

/// SORACOM Air userdata (P12).
pub fn air_userdata(data: &[u8]) {
    provision_with(Target::Userdata, AuthMode::Network, data);
}

/// SIM mode: the Keys API's challenge and verify answers, then the operation's
/// (`subscriber-metadata`): every request after the challenge is signed with the fake SIM's
/// CK, which must never reach a text.
pub fn keys_api(data: &[u8]) {
    provision_with(Target::SubscriberMetadata, AuthMode::Sim, data);
}

/// The PEM/key loader: certificate chain, private key (PKCS#1, PKCS#8, SEC1; RSA, P-256,
/// P-384) and root CA as Krypton sends them; when they load, the key in the export shape.
pub fn pem_key(data: &[u8]) {
    let parts = parts(data);
    let text = |i: usize| {
        parts
            .get(i)
            .map(|p| String::from_utf8_lossy(p).into_owned())
    };
    let (cert, key, root) = (
        text(0).unwrap_or_default(),
        text(1).unwrap_or_default(),
        text(2),
    );
    let Ok(creds) = krypton_guest::types::validate::credentials(&cert, &key, root.as_deref())
    else {
        return;
    };
    let certs =
        krypton_guest::types::validate::parse_certificates("certificate", &creds.certificate)
            .expect("a checked certificate parses again");
    let leaf = &certs.first().expect("a leaf").cert;
    krypton_guest::types::validate::exportable_key("privateKey", creds.private_key.expose(), leaf)
        .expect("a checked key exports");
}

/// A stored bundle (first byte: the target), read as `status` and `export` read it, then
/// rendered in each of the target's export formats.
pub fn stored_bundle(data: &[u8]) {
    let Some((first, bytes)) = data.split_first() else {
        return;
    };
    let all = krypton_guest::ops::OPERATIONS;
    let target = all[usize::from(*first) % all.len()].target;
    let mut caps = FakeCaps::default();
    caps.store
        .insert(target.bundle_name().to_string(), bytes.to_vec());
    let _ = krypton_guest::ops::status(&mut caps, target);
    for format in krypton_guest::formats::names_for(target) {
        let _ = krypton_guest::formats::render_export(
            &mut caps,
            target,
            format,
            "/etc/krypton",
            &["54.250.252.67".to_string()],
        );
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): never more than [`MAX_RETRY_AFTER_MS`].
pub fn retry_after(data: &[u8]) {
    let response = HttpResponse {
        status: 503,
        headers: vec![(
            "retry-after".into(),
            String::from_utf8_lossy(data).into_owned(),
        )],
        body: vec![],
    };
    if let Some(ms) = retry_after_ms(&response, FAKE_EPOCH_MS) {
        assert!(ms <= MAX_RETRY_AFTER_MS, "{ms}");
    }
}

/// The host's parsers of files a user or operator gives it.
#[cfg(feature = "host")]
pub mod host {
    use krypton_host_cli::daemon::GatewayConfig;
    use krypton_host_cli::doctor::Tunnel;
    use std::net::IpAddr;

    /// Addresses every parsed tunnel is asked about.
    const PROBES: [&str; 4] = ["54.250.252.67", "100.127.0.1", "2001:db8::1", "10.0.0.1"];

    fn check_tunnel(tunnel: &Tunnel) {
        let missing: Vec<IpAddr> = PROBES
            .iter()
            .map(|p| p.parse().unwrap())
            .filter(|ip| !tunnel.routes(*ip))
            .collect();
        // A wg-quick fix is the host's; soratun's is the component's, given the host's routes.
        let fix = tunnel.fix(&missing).unwrap_or_else(|| {
            krypton_guest::ops::arc::soratun_route_fix(&krypton_host_cli::doctor::host_routes(
                &missing,
            ))
        });
        for ip in &missing {
            assert!(fix.contains(&ip.to_string()), "{fix}");
        }
    }

    /// `doctor --wireguard`: the `AllowedIPs` of a `wg-quick` file, and the fix it prints.
    pub fn doctor_wireguard(data: &[u8]) {
        if let Ok(tunnel) = Tunnel::from_wireguard(&String::from_utf8_lossy(data)) {
            check_tunnel(&tunnel);
        }
    }

    /// `doctor --soratun-config`: soratun's `arc.json` as the component reads it, the
    /// entries as the host checks them, and the fix the component words.
    pub fn doctor_soratun(data: &[u8]) {
        use krypton_host::bindings::RouteEntry;
        use krypton_host_cli::doctor::TunnelSource;
        if let Ok(entries) = krypton_guest::ops::arc::soratun_routes(&String::from_utf8_lossy(data))
        {
            let entries = entries
                .into_iter()
                .map(|e| RouteEntry {
                    location: e.location,
                    entry: e.entry,
                    problem: e.problem,
                })
                .collect();
            check_tunnel(&Tunnel::from_entries(TunnelSource::Soratun, entries));
        }
    }

    /// `run --config`: `gateway.toml`, every key checked; then what the daemon derives.
    pub fn gateway_config(data: &[u8]) {
        if let Ok(config) = GatewayConfig::parse(&String::from_utf8_lossy(data)) {
            let _ = config.coverage_name();
            let _ = config.uicc_access();
        }
    }

    /// A component's `.sig` file against a fixed key and component: never accepted (the
    /// fuzzer does not hold the key) unless it is the real signature of the seed.
    pub fn signature_file(data: &[u8]) {
        let key = signing_key();
        let component = b"\0asm\x0d\0\x01\0";
        if let Ok(version) = krypton_host::signing::verify(&key.verifying_key(), component, data) {
            // Only the genuine signature of this version can verify (strict RFC 8032
            // verification admits no second encoding of a signature).
            let genuine = krypton_host::signing::sign(&key, component, &version).unwrap();
            let signature = |text: &[u8]| {
                let value: serde_json::Value = serde_json::from_slice(text).unwrap();
                let b64 = value["signature"].as_str().unwrap().trim().to_string();
                base64_decode(&b64)
            };
            assert_eq!(
                signature(data),
                signature(genuine.as_bytes()),
                "a .sig file other than the genuine one verified"
            );
        }
    }

    /// Standard base64 (RFC 4648 §4), as `.sig` files carry it.
    fn base64_decode(text: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("a verified signature is base64")
    }

    /// The fixed ed25519 key of [`signature_file`] (RFC 8032 §7.1 test 1's secret key).
    pub fn signing_key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ])
    }

    /// The host's PEM loaders: `--ca-file` (the TLS roots it adds) and the daemon's trusted
    /// public key and `sign`'s private key.
    pub fn host_pem(data: &[u8]) {
        let _ = krypton_host::capability::http::OutboundPolicy::new(Vec::new(), Some(data));
        let text = String::from_utf8_lossy(data);
        let _ = krypton_host::signing::parse_public_key(&text);
        let _ = krypton_host::signing::parse_signing_key(&text);
    }

    /// `--sim-file`: the software SIM's record; a record that loads writes back the same.
    pub fn sim_file(data: &[u8]) {
        if let Ok(record) = krypton_uicc::soft::SimRecord::parse(data) {
            let again = krypton_uicc::soft::SimRecord::parse(record.to_json().as_bytes())
                .expect("a written record parses");
            assert_eq!(again.imsi.as_str(), record.imsi.as_str());
            assert_eq!(again.sqn, record.sqn);
        }
    }
}
