//! Issue 18, item 16: answers that disagree with themselves. A DPS answer whose `deviceId` is
//! not its certificate's subject CN (DPS X.509 attestation registers a device under its
//! certificate's CN) is stored, and reported: a log line, `warnings` in `provision --json`
//! and its text, and the same in `status`.

use super::support::*;
use krypton_mock::MockConfig;
use serde_json::{Value, json};

#[tokio::test]
async fn an_azure_device_id_that_is_not_the_certificate_cn_is_stored_and_reported() {
    let fx = Fixture::with_config(MockConfig {
        assigning_polls: 0,
        azure_certificate_cn: Some("gw-other-0001".into()),
        ..MockConfig::default()
    })
    .await;
    let run = fx
        .provision("azure-iot")
        .poll_ms(100)
        .verbose()
        .json()
        .run()
        .await;
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let report = run.json();
    let message = "deviceId `440101234567890` is not the certificate's subject CN \
                   (`gw-other-0001`): DPS X.509 attestation registers a device under its \
                   certificate's CN, so IoT Hub may refuse this device, or it was given another \
                   device's identity; check the DPS enrollment and the deviceId Krypton sent";
    let expected = json!([{"check": "device-id-vs-certificate-cn", "message": message}]);
    assert_eq!(report["ok"], true);
    assert_eq!(report["deviceId"], "440101234567890");
    assert_eq!(report["certificate"]["subject"], "CN=gw-other-0001");
    assert_eq!(report["warnings"], expected);
    // The log says it, once.
    let warned: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("device-id-vs-certificate-cn"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", run.stderr);
    assert!(
        warned[0].contains(&format!(
            "azure-iot: warning: device-id-vs-certificate-cn: {message}"
        )),
        "{}",
        warned[0]
    );
    // Stored as Krypton sent it.
    let bundle = read_bundle(&fx.store, "azure-iot");
    assert_eq!(bundle["deviceId"], "440101234567890");
    let issued = &fx.mock.issued()[0];
    assert_eq!(
        bundle["certificate"],
        issued.certificate_pem.replace("\r\n", "\n")
    );

    // `status --json` and `status` text say it too.
    let status = fx.status(Some("azure-iot")).json().run().await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: Value = status.json();
    assert_eq!(status["bundles"][0]["deviceId"], "440101234567890");
    assert_eq!(status["bundles"][0]["warnings"], expected);
    let text = fx.status(Some("azure-iot")).run().await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains(&format!(
            "  warning                  device-id-vs-certificate-cn: {message}\n"
        )),
        "{}",
        text.stdout
    );
    fx.stop().await;
}

#[tokio::test]
async fn an_azure_answer_that_agrees_with_itself_has_no_warning() {
    let fx = Fixture::with_config(MockConfig {
        assigning_polls: 0,
        ..MockConfig::default()
    })
    .await;
    let run = fx.provision("azure-iot").poll_ms(100).json().run().await;
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(run.json()["warnings"], json!([]));
    let status = fx.status(None).json().run().await.json();
    assert_eq!(status["bundles"][0]["warnings"], json!([]));
    fx.stop().await;
}
