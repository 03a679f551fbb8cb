//! Signed versions through an OCI registry (issue 9, part 2), against Debian's real
//! `docker-registry`: `publish` pushes the Wasm OCI artifact layout that `skopeo` reads, the
//! signature is a referrer found through the referrers tag, a pull gives back the same bytes, and
//! what a registry may send wrong is refused with a clear error.

use super::registry_support::*;
use super::support::*;
use krypton_host::component::DEFAULT_COMPONENT;
use krypton_host::signing;
use krypton_host_cli::registry::{
    self, OCI_EMPTY_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, Registry,
    RegistryError, SIGNATURE_ARTIFACT_TYPE, Settings, Source, WASM_CONFIG_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE,
};
use serde_json::{Value, json};
use std::path::Path;

const REAL_VERSION: &str = env!("CARGO_PKG_VERSION");

fn skopeo_raw(reference: &str) -> (Vec<u8>, Value) {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = serde_json::from_slice(&out.stdout).unwrap();
    (out.stdout, value)
}

/// A key pair: the PKCS#8 file and the verifying key.
pub fn key_file(dir: &Path) -> (std::path::PathBuf, ed25519_dalek::VerifyingKey) {
    let (pem, public) = signing::generate_key_pem().unwrap();
    let path = dir.join("signing.pem");
    std::fs::write(&path, pem).unwrap();
    (path, signing::parse_public_key(&public).unwrap())
}

/// `publish COMPONENT --to REFERENCE --insecure` (plain HTTP to a registry on loopback).
fn publish_to(component: &Path, to: &str) -> Cli {
    cli([
        "publish",
        component.to_str().unwrap(),
        "--to",
        to,
        "--insecure",
    ])
}

fn insecure() -> Settings {
    Settings {
        insecure: true,
        ..Settings::default()
    }
}

#[tokio::test]
async fn publish_writes_the_wasm_layout_skopeo_reads_and_a_pull_gives_the_same_bytes() {
    if !registry_tools_present(true) {
        return;
    }
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = key_file(tmp.path());
    let component = tmp.path().join("krypton.wasm");
    std::fs::write(&component, DEFAULT_COMPONENT).unwrap();
    let to = reg.reference("krypton/component:v1");
    let (code, out, err) = publish_to(&component, &to)
        .args(["--signing-key", key.to_str().unwrap()])
        .json()
        .run()
        .await
        .parts();
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    let digest = answer["digest"].as_str().unwrap().to_string();
    let layer = format!("sha256:{}", signing::digest_hex(DEFAULT_COMPONENT));
    assert_eq!(answer["tag"], "v1");
    assert_eq!(answer["layerDigest"], layer.as_str());
    assert_eq!(answer["version"], REAL_VERSION);
    assert_eq!(answer["referrers"], "referrers-tag");
    let sig_digest = answer["signatureDigest"].as_str().unwrap().to_string();

    // skopeo reads the manifest: the standard media types, the layer is the component.
    let (raw, manifest) = skopeo_raw(&to);
    assert_eq!(registry::sha256_digest(&raw), digest);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], OCI_MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["layers"][0]["mediaType"], WASM_LAYER_MEDIA_TYPE);
    assert_eq!(manifest["layers"][0]["digest"], layer.as_str());
    assert_eq!(manifest["layers"][0]["size"], DEFAULT_COMPONENT.len());
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        REAL_VERSION
    );
    // The referrers tag (OCI distribution spec 1.1 fallback) lists the signature.
    let tag = registry::referrers_tag(&digest);
    let (_, index) = skopeo_raw(&reg.reference(&format!("krypton/component:{tag}")));
    assert_eq!(index["mediaType"], OCI_INDEX_MEDIA_TYPE);
    assert_eq!(index["manifests"][0]["digest"], sig_digest.as_str());
    assert_eq!(
        index["manifests"][0]["artifactType"],
        SIGNATURE_ARTIFACT_TYPE
    );
    let (_, referrer) = skopeo_raw(&reg.reference(&format!("krypton/component@{sig_digest}")));
    assert_eq!(referrer["subject"]["digest"], digest.as_str());
    assert_eq!(referrer["artifactType"], SIGNATURE_ARTIFACT_TYPE);

    // The library pulls the same bytes and the signature, which verifies for this version.
    let source = Source::parse(&format!("oci://{to}")).unwrap();
    let client = Registry::new(&source, &insecure()).unwrap();
    assert_eq!(client.resolve(&source).await.unwrap(), digest);
    let pulled = client.pull(&source, &digest).await.unwrap();
    assert!(pulled.component == DEFAULT_COMPONENT, "other bytes pulled");
    assert_eq!(pulled.signatures.len(), 1);
    assert_eq!(
        signing::verify(&public, &pulled.component, &pulled.signatures[0]).unwrap(),
        REAL_VERSION
    );
    assert_eq!(pulled.version_annotation.as_deref(), Some(REAL_VERSION));
    // resolve (HEAD) + manifest + layer + referrers API (404) + referrers tag + referrer
    // manifest + signature blob.
    assert_eq!(client.requests(), 7);

    // Publishing again with the .sig beside the file (no key): the same manifest digest is
    // not guaranteed (created differs) but the signature is the same file, listed once more.
    std::fs::write(signing::signature_path(&component), &pulled.signatures[0]).unwrap();
    let (code, out, err) = publish_to(&component, &reg.reference("krypton/component:v1-again"))
        .run()
        .await
        .parts();
    assert_eq!(code, 0, "{err}");
    let again = out.trim();
    assert!(registry::is_sha256_digest(again), "{out}");
    assert!(err.contains("signature sha256:"), "{err}");
    let source = Source::parse(&reg.reference("krypton/component:v1-again")).unwrap();
    let pulled = client.pull(&source, again).await.unwrap();
    assert_eq!(
        signing::verify(&public, &pulled.component, &pulled.signatures[0]).unwrap(),
        REAL_VERSION
    );
}

/// Push a manifest (and the blobs it names) as a hostile publisher would.
async fn push_raw(reference: &str, blobs: &[&[u8]], manifest: &Value) -> String {
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let reference: oci_client::Reference = reference.parse().unwrap();
    for blob in blobs {
        client
            .push_blob(&reference, blob, &registry::sha256_digest(blob))
            .await
            .unwrap();
    }
    let body = serde_json::to_vec(manifest).unwrap();
    let digest = registry::sha256_digest(&body);
    client
        .push_manifest_raw(
            &reference,
            body,
            http::HeaderValue::from_static(OCI_MANIFEST_MEDIA_TYPE),
        )
        .await
        .unwrap();
    digest
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": registry::sha256_digest(bytes), "size": bytes.len()})
}

#[tokio::test]
async fn wrong_types_oversized_and_lying_artifacts_and_a_registry_down_are_refused_clearly() {
    if !registry_tools_present(false) {
        return;
    }
    let mut reg = TestRegistry::start();
    let wasm: &[u8] = b"\0asm\x0d\0\x01\0not really a component";
    let config: &[u8] = b"{}";
    let manifest = |layer_type: &str, config_type: &str, size: Option<u64>| {
        let mut layer = descriptor(layer_type, wasm);
        if let Some(size) = size {
            layer["size"] = json!(size);
        }
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": descriptor(config_type, config),
            "layers": [layer],
        })
    };
    let cases = [
        (
            "tar",
            manifest(
                "application/vnd.oci.image.layer.v1.tar",
                WASM_CONFIG_MEDIA_TYPE,
                None,
            ),
            "exactly one layer of type application/wasm",
        ),
        (
            "image",
            manifest(
                WASM_LAYER_MEDIA_TYPE,
                "application/vnd.oci.image.config.v1+json",
                None,
            ),
            "not a Wasm component (application/vnd.wasm.config.v0+json)",
        ),
        (
            "huge",
            manifest(
                WASM_LAYER_MEDIA_TYPE,
                WASM_CONFIG_MEDIA_TYPE,
                Some(64 * 1024 * 1024 + 1),
            ),
            "more than the 67108864 accepted for a component",
        ),
        (
            "short",
            manifest(WASM_LAYER_MEDIA_TYPE, WASM_CONFIG_MEDIA_TYPE, Some(8)),
            "more than the 8 accepted",
        ),
    ];
    for (tag, body, expected) in cases {
        let reference = reg.reference(&format!("bad/component:{tag}"));
        let digest = push_raw(&reference, &[wasm, config], &body).await;
        let source = Source::parse(&reference).unwrap();
        let client = Registry::new(&source, &insecure()).unwrap();
        assert_eq!(client.resolve(&source).await.unwrap(), digest);
        let err = client.pull(&source, &digest).await.unwrap_err();
        assert!(matches!(err, RegistryError::Invalid(_)), "{tag}: {err:?}");
        assert!(err.to_string().contains(expected), "{tag}: {err}");
        assert!(!err.is_transient(), "{tag}");
    }
    // A tag that does not exist, a digest the registry does not have.
    let source = Source::parse(&reg.reference("bad/component:missing")).unwrap();
    let client = Registry::new(&source, &insecure()).unwrap();
    let err = client.resolve(&source).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound(_)), "{err:?}");
    let absent = format!("sha256:{}", "0".repeat(64));
    assert!(matches!(
        client.pull(&source, &absent).await.unwrap_err(),
        RegistryError::NotFound(_)
    ));

    // The registry down: unreachable (retried by a daemon); publish exits 4 with advice.
    reg.stop();
    let err = client
        .resolve(&Source::parse(&reg.reference("bad/component:tar")).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable(_)), "{err:?}");
    assert!(err.is_transient());
    let tmp = tempfile::tempdir().unwrap();
    let component = tmp.path().join("c.wasm");
    std::fs::write(&component, DEFAULT_COMPONENT).unwrap();
    let (code, _, err) = publish_to(&component, &reg.reference("krypton/component:v1"))
        .run()
        .await
        .parts();
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("is the registry running"), "{err}");
}

#[tokio::test]
async fn a_registry_that_lies_about_digests_is_refused() {
    // A fake registry on loopback: its manifest is not the digest asked for, or its blob is
    // not the layer's digest. No real registry sends that; a hostile or broken proxy could.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let wasm: &[u8] = b"\0asm\x0d\0\x01\0component bytes";
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": descriptor(WASM_CONFIG_MEDIA_TYPE, b"{}"),
        "layers": [descriptor(WASM_LAYER_MEDIA_TYPE, wasm)],
    }))
    .unwrap();
    let manifest_digest = registry::sha256_digest(&manifest);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = manifest.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let served = served.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = stream.read(&mut request).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&request[..n]).to_string();
                // Every manifest request, whatever digest it names: the one manifest.
                let (content_type, body): (&str, Vec<u8>) = if line.contains("/manifests/") {
                    (OCI_MANIFEST_MEDIA_TYPE, served.clone())
                } else {
                    // Every blob: same length as the component, other bytes.
                    (
                        "application/octet-stream",
                        b"\0asm\x0d\0\x01\0COMPONENT BYTES".to_vec(),
                    )
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                if !line.starts_with("HEAD") {
                    let _ = stream.write_all(&body).await;
                }
            });
        }
    });
    let source = Source::parse(&format!("{addr}/liar/component:v1")).unwrap();
    let client = Registry::new(&source, &insecure()).unwrap();
    // Asked for another digest, it sends this manifest: refused.
    let other = format!("sha256:{}", "1".repeat(64));
    let err = client.pull(&source, &other).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "the manifest {other} arrived with sha256 {manifest_digest}"
        )),
        "{err}"
    );
    // Streamed to a file as the follower does: refused, and nothing left behind.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("layer.wasm");
    let mut bytes = 0;
    let layer = registry::Descriptor {
        media_type: WASM_LAYER_MEDIA_TYPE.into(),
        digest: registry::sha256_digest(wasm),
        size: wasm.len() as u64,
        artifact_type: None,
        annotations: None,
    };
    let err = client
        .layer_to_file(&source, &layer, &dest, &mut bytes)
        .await
        .unwrap_err();
    assert_eq!(err.lookup, registry::Lookup::Layer);
    assert!(
        err.to_string().starts_with(&format!(
            "layer lookup failed: refused what the registry sent: the blob {}",
            layer.digest
        )),
        "{err}"
    );
    assert_eq!(bytes, wasm.len() as u64);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // The right manifest, a blob with other bytes: refused.
    let err = client.pull(&source, &manifest_digest).await.unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "the blob {} arrived as {} bytes with sha256",
            registry::sha256_digest(wasm),
            wasm.len()
        )),
        "{err}"
    );
    server.abort();
}

#[tokio::test]
async fn publish_refuses_bad_references_and_plain_http_off_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let component = tmp.path().join("c.wasm");
    std::fs::write(&component, DEFAULT_COMPONENT).unwrap();
    for (to, extra, expected) in [
        ("krypton/component:v1", None, "names no registry host"),
        (
            "127.0.0.1:5000/krypton/component",
            None,
            "has no tag or digest",
        ),
        (
            "registry.example/krypton/component:v1",
            Some("--insecure"),
            "only to a registry on this machine",
        ),
    ] {
        let mut args = vec!["publish", component.to_str().unwrap(), "--to", to];
        args.extend(extra);
        let (code, _, err) = run_cli(&args).await;
        assert_eq!(code, 3, "{to}: {err}");
        assert!(err.contains(expected), "{to}: {err}");
    }
    // A .sig for other bytes is refused before anything is pushed.
    std::fs::write(
        signing::signature_path(&component),
        signing::sign(
            &ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
            b"other bytes",
            "0.1.0",
        )
        .unwrap(),
    )
    .unwrap();
    let (code, _, err) = publish_to(&component, "127.0.0.1:9/krypton/component:v1")
        .run()
        .await
        .parts();
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("for other bytes"), "{err}");
}

/// A daemon following `krypton/component:stable` of a registry, serving v1 (the built-in
/// component signed as [`REAL_VERSION`] with `key`), and what it was started with.
struct Following {
    tmp: tempfile::TempDir,
    key: ed25519_dalek::SigningKey,
    stable: Source,
    client: Registry,
    /// v1's manifest digest.
    v1: String,
    config: std::path::PathBuf,
    socket: std::path::PathBuf,
    log: std::path::PathBuf,
    daemon: tokio::process::Child,
}

/// Publish v1 to `reg` and start a daemon following it; returns once it serves v1.
async fn following_v1(reg: &TestRegistry) -> Following {
    let tmp = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let public = public_key_b64(&key);
    let stable = Source::parse(&reg.reference("krypton/component:stable")).unwrap();
    let client = Registry::new(&stable, &insecure()).unwrap();
    let sig = signing::sign(&key, DEFAULT_COMPONENT, REAL_VERSION).unwrap();
    let v1 = client
        .publish(
            &stable,
            DEFAULT_COMPONENT,
            Some(REAL_VERSION),
            Some(sig.as_bytes()),
        )
        .await
        .unwrap()
        .digest;
    let config = daemon_config(tmp.path(), &reg.addr, &public);
    let socket = tmp.path().join("control.sock");
    let log = tmp.path().join("daemon.log");
    let daemon = spawn_daemon(&config, &log);
    wait_for("v1", &log, async || {
        status(&socket).await.get("manifest") == Some(&v1)
    })
    .await;
    Following {
        tmp,
        key,
        stable,
        client,
        v1,
        config,
        socket,
        log,
        daemon,
    }
}

/// `dir/gateway.toml`: the tag of `registry` signed by `public`, an endpoint where nothing
/// listens.
fn daemon_config(dir: &Path, registry: &str, public: &str) -> std::path::PathBuf {
    GatewayToml::default()
        .following(dir, registry, public)
        .string("endpoint", &format!("https://127.0.0.1:{}", closed_port()))
        .target("arc")
        .write(&dir.join("gateway.toml"))
}

/// The daemon's status words (`key=value`), empty while it is not answering.
async fn status(socket: &Path) -> std::collections::HashMap<String, String> {
    daemon_status(socket).await
}

async fn wait_for(what: &str, log: &Path, ok: impl AsyncFn() -> bool) {
    for _ in 0..600 {
        if ok().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "timed out waiting for {what}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[tokio::test]
async fn a_daemon_keeps_serving_through_bad_artifacts_and_a_registry_down_and_restarts_offline() {
    if !registry_tools_present(false) {
        return;
    }
    let mut reg = TestRegistry::start();
    let Following {
        tmp,
        v1,
        config,
        socket,
        log,
        daemon,
        ..
    } = following_v1(&reg).await;
    let blobs = tmp.path().join("state/registry/blobs");
    let kept = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let sha = signing::digest_hex(DEFAULT_COMPONENT);
    let only_v1 = vec![format!("{sha}.wasm"), format!("{sha}.wasm.sig")];
    assert_eq!(kept(&blobs), only_v1);

    // A malformed artifact under the tag: logged once, retried, nothing kept, v1 serves.
    let wasm: &[u8] = b"\0asm\x0d\0\x01\0";
    let bad = push_raw(
        &reg.reference("krypton/component:stable"),
        &[wasm, b"{}"],
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": descriptor(WASM_CONFIG_MEDIA_TYPE, b"{}"),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", wasm)],
        }),
    )
    .await;
    wait_for("the bad artifact tried 3 times", &log, async || {
        status(&socket)
            .await
            .get("polls")
            .is_some_and(|p| p.parse::<u32>().unwrap() >= 5)
            && std::fs::read_to_string(&log)
                .unwrap()
                .contains("pulling the new digest failed")
    })
    .await;
    let before = status(&socket).await["polls"].parse::<u32>().unwrap();
    wait_for("three more polls", &log, async || {
        status(&socket).await["polls"].parse::<u32>().unwrap() >= before + 3
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("pulling the new digest failed").count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("exactly one layer of type application/wasm"),
        "{text}"
    );
    assert!(text.contains(&bad));
    assert_eq!(text.matches("new digest at the tag").count(), 1, "{text}");
    let s = status(&socket).await;
    assert_eq!(s["manifest"], v1);
    assert_eq!(
        s["refused"], "0",
        "a malformed artifact is retried, not remembered"
    );
    assert_eq!(kept(&blobs), only_v1);

    // The registry down: logged once, still serving v1.
    reg.stop();
    let before = status(&socket).await["polls"].parse::<u32>().unwrap();
    wait_for("three polls with the registry down", &log, async || {
        status(&socket).await["polls"].parse::<u32>().unwrap() >= before + 3
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("registry poll failed").count(), 1, "{text}");
    assert!(text.contains("the registry could not be reached"), "{text}");
    assert_eq!(status(&socket).await["manifest"], v1);
    stop(daemon).await;

    // A restart without the registry serves the kept component.
    let log2 = tmp.path().join("daemon2.log");
    let daemon = spawn_daemon(&config, &log2);
    wait_for("v1 after a restart offline", &log2, async || {
        status(&socket).await.get("manifest") == Some(&v1)
    })
    .await;
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(
        text.contains("starting with the component kept from the registry"),
        "{text}"
    );
    stop(daemon).await;

    // Nothing kept and no registry: the start fails and says why (exit 3).
    std::fs::remove_dir_all(tmp.path().join("state/registry")).unwrap();
    let (code, _, err) = run_cli(&["run", "--config", config.to_str().unwrap()]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("the registry could not be reached"), "{err}");
}

/// `pulled=DIGEST/BYTES,…` of a status: the bytes counted for `digest`.
fn pulled(status: &std::collections::HashMap<String, String>, digest: &str) -> Option<u64> {
    status.get("pulled")?.split(',').find_map(|entry| {
        let (d, n) = entry.rsplit_once('/')?;
        (d == digest).then(|| n.parse().unwrap())
    })
}

/// Issue 18, item 1: trust is checked before the layer is fetched. Measured from the
/// registry's own access log: an unsigned digest under the tag costs no layer byte (however
/// many polls), a signed one costs its layer once.
#[tokio::test]
async fn an_unsigned_digest_costs_no_layer_byte_and_a_signed_one_its_layer_once() {
    if !registry_tools_present(false) {
        return;
    }
    let reg = TestRegistry::start();
    let Following {
        // Kept to the end: the daemon runs in it.
        tmp: _tmp,
        key,
        stable,
        client,
        v1,
        socket,
        log,
        daemon,
        ..
    } = following_v1(&reg).await;
    let v1_layer = registry::sha256_digest(DEFAULT_COMPONENT);
    assert_eq!(
        reg.blob_gets(&v1_layer),
        (1, DEFAULT_COMPONENT.len() as u64),
        "the first start pulls v1's layer once"
    );

    // Unsigned, other bytes: several polls, not one layer byte.
    let unsigned = variant(5);
    let unsigned_layer = registry::sha256_digest(&unsigned);
    let u = client
        .publish(&stable, &unsigned, Some(REAL_VERSION), None)
        .await
        .unwrap()
        .digest;
    wait_for("the unsigned digest looked at", &log, async || {
        std::fs::read_to_string(&log).unwrap().contains(&u)
    })
    .await;
    let before = status(&socket).await["polls"].parse::<u32>().unwrap();
    wait_for("four more polls", &log, async || {
        status(&socket).await["polls"].parse::<u32>().unwrap() >= before + 4
    })
    .await;
    assert_eq!(
        reg.blob_gets(&unsigned_layer),
        (0, 0),
        "an unsigned digest costs no layer byte"
    );
    let s = status(&socket).await;
    assert_eq!(s["manifest"], v1);
    let spent = pulled(&s, &u).unwrap();
    assert!(
        spent > 0 && spent < 16 * 1024,
        "manifest and listings only: {spent} bytes"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("referrers tag lookup failed") && !text.contains("unsigned: no signature"),
        "a missing referrers tag is a lookup failure, not an unsigned verdict:\n{text}"
    );

    // Signed, a higher version: its layer once.
    let v2_bytes = with_version("0.3.1");
    let v2_layer = registry::sha256_digest(&v2_bytes);
    let sig = signing::sign(&key, &v2_bytes, "0.3.1").unwrap();
    let v2 = client
        .publish(&stable, &v2_bytes, Some("0.3.1"), Some(sig.as_bytes()))
        .await
        .unwrap()
        .digest;
    wait_for("v2 swapped in", &log, async || {
        status(&socket).await.get("manifest") == Some(&v2)
    })
    .await;
    let s = status(&socket).await;
    assert_eq!(s["serving"], signing::digest_hex(&v2_bytes));
    assert_eq!(reg.blob_gets(&v2_layer), (1, v2_bytes.len() as u64));
    assert!(pulled(&s, &v2).unwrap() > v2_bytes.len() as u64);
    assert_eq!(reg.blob_gets(&unsigned_layer), (0, 0));
    // The same counts as one JSON object.
    let json = cli([
        "reload",
        "--socket",
        socket.to_str().unwrap(),
        "--status",
        "--json",
    ])
    .run()
    .await
    .json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["manifest"], v2);
    assert_eq!(json["pulled"][&u], spent);
    assert_eq!(json["pulled"][&v2], pulled(&s, &v2).unwrap());
    println!(
        "layer bytes pulled: unsigned digest 0, signed digest {} (one layer of {} bytes); \
         status pulled: unsigned {spent} bytes (manifest, listings), signed {}",
        reg.blob_gets(&v2_layer).1,
        v2_bytes.len(),
        pulled(&s, &v2).unwrap()
    );
    stop(daemon).await;
}

/// Issue 18, item 9: a new state directory starts its floor from the version the host is built
/// with; other bytes signed as the serving version are refused (as a downgrade is); removing
/// `accepted-version` under a running daemon lowers nothing.
#[tokio::test]
async fn a_fresh_floor_a_same_version_swap_and_a_deleted_floor_file_let_nothing_older_in() {
    if !registry_tools_present(false) {
        return;
    }
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[12; 32]);
    let public = public_key_b64(&key);
    let stable = Source::parse(&reg.reference("krypton/component:stable")).unwrap();
    let client = Registry::new(&stable, &insecure()).unwrap();
    let publish = async |bytes: &[u8], version: &str| {
        let sig = signing::sign(&key, bytes, version).unwrap();
        client
            .publish(&stable, bytes, Some(version), Some(sig.as_bytes()))
            .await
            .unwrap()
            .digest
    };
    // An older signed release under the tag, a new state directory: refused at start.
    let older = with_version("0.2.9");
    let old = publish(&older, "0.2.9").await;
    let config = daemon_config(tmp.path(), &reg.addr, &public);
    let socket = tmp.path().join("control.sock");
    let log = tmp.path().join("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    let mut exited = None;
    for _ in 0..600 {
        if let Some(code) = daemon.try_wait().unwrap() {
            exited = Some(code);
            break;
        }
        assert_eq!(
            status(&socket).await.get("manifest"),
            None,
            "a new state directory serves 0.2.9 ({old}), older than this build"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(exited.and_then(|c| c.code()), Some(3), "{text}");
    assert!(
        text.contains(&format!("version 0.2.9 is lower than {REAL_VERSION}")),
        "{text}"
    );

    // The built version: serves.
    let v1 = publish(DEFAULT_COMPONENT, REAL_VERSION).await;
    let daemon = spawn_daemon(&config, &log);
    wait_for("v1", &log, async || {
        status(&socket).await.get("manifest") == Some(&v1)
    })
    .await;
    // Other bytes signed as the serving version: refused for good, v1 serves.
    let same = publish(&variant(6), REAL_VERSION).await;
    wait_for("the same-version swap refused", &log, async || {
        status(&socket).await.get("refused").map(String::as_str) == Some("1")
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("same-version swap"), "{text}");
    assert!(text.contains(&same));
    assert_eq!(
        status(&socket).await["serving"],
        signing::digest_hex(DEFAULT_COMPONENT)
    );
    // The floor file removed under the running daemon, an older release published: refused.
    std::fs::remove_file(tmp.path().join("state/accepted-version")).unwrap();
    let older2 = with_version("0.2.8");
    let old2 = publish(&older2, "0.2.8").await;
    wait_for("the older release refused", &log, async || {
        status(&socket).await.get("refused").map(String::as_str) == Some("2")
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("version 0.2.8 is lower than {REAL_VERSION}")),
        "{text}"
    );
    assert!(text.contains(&old2));
    let s = status(&socket).await;
    assert_eq!(s["manifest"], v1);
    assert_eq!(s["serving"], signing::digest_hex(DEFAULT_COMPONENT));
    stop(daemon).await;
}

/// Issue 18, items 5 and 17: referrers as registries and other tools write them. A referrers
/// tag listing 16 other signature referrers (each naming another subject) before the real
/// signature; a signature listed without `artifactType`, whose manifest's config media type
/// says what it is (as tools following the OCI 1.1 release candidates write it).
#[tokio::test]
async fn a_signature_behind_junk_referrers_or_listed_without_artifact_type_is_found() {
    if !registry_tools_present(false) {
        return;
    }
    let reg = TestRegistry::start();
    let key = ed25519_dalek::SigningKey::from_bytes(&[13; 32]);
    let empty = b"{}";
    for (tag, junk, typed) in [("junk", 16, true), ("untyped", 0, false)] {
        let reference = reg.reference(&format!("krypton/component:{tag}"));
        let source = Source::parse(&reference).unwrap();
        let client = Registry::new(&source, &insecure()).unwrap();
        let bytes = variant(if typed { 8 } else { 9 });
        let subject = client
            .publish(&source, &bytes, Some(REAL_VERSION), None)
            .await
            .unwrap()
            .digest;
        let sig = signing::sign(&key, &bytes, REAL_VERSION).unwrap();
        // A signature referrer of `subject_digest`, pushed by digest.
        let referrer = async |sig: &[u8], subject_digest: &str, typed: bool| {
            let mut manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                "config": descriptor(
                    if typed { OCI_EMPTY_MEDIA_TYPE } else { SIGNATURE_ARTIFACT_TYPE },
                    empty
                ),
                "layers": [descriptor(SIGNATURE_ARTIFACT_TYPE, sig)],
                "subject": {"mediaType": OCI_MANIFEST_MEDIA_TYPE, "digest": subject_digest, "size": 100},
            });
            if typed {
                manifest["artifactType"] = json!(SIGNATURE_ARTIFACT_TYPE);
            }
            let body = serde_json::to_vec(&manifest).unwrap();
            let digest = registry::sha256_digest(&body);
            push_raw(
                &reg.reference(&format!("krypton/component@{digest}")),
                &[sig, empty],
                &manifest,
            )
            .await;
            json!({"mediaType": OCI_MANIFEST_MEDIA_TYPE, "digest": digest, "size": body.len()})
        };
        let mut entries = Vec::new();
        for i in 0..junk {
            let other = format!("sha256:{i:064x}");
            let mut entry = referrer(format!("{{\"junk\":{i}}}").as_bytes(), &other, true).await;
            entry["artifactType"] = json!(SIGNATURE_ARTIFACT_TYPE);
            entries.push(entry);
        }
        // A typed referrer padded to 100 KB (a real one is about 600 bytes): listed, never
        // fetched, so junk referrers of an unsigned digest cost little per poll.
        let mut big_digest = None;
        if typed {
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                "artifactType": SIGNATURE_ARTIFACT_TYPE,
                "config": descriptor(OCI_EMPTY_MEDIA_TYPE, empty),
                "layers": [descriptor(SIGNATURE_ARTIFACT_TYPE, b"junk")],
                "subject": {"mediaType": OCI_MANIFEST_MEDIA_TYPE, "digest": subject, "size": 100},
                "annotations": {"padding": "x".repeat(100_000)},
            });
            let body = serde_json::to_vec(&manifest).unwrap();
            let digest = registry::sha256_digest(&body);
            push_raw(
                &reg.reference(&format!("krypton/component@{digest}")),
                &[b"junk", empty],
                &manifest,
            )
            .await;
            entries.push(
                json!({"mediaType": OCI_MANIFEST_MEDIA_TYPE, "digest": digest,
                "size": body.len(), "artifactType": SIGNATURE_ARTIFACT_TYPE}),
            );
            big_digest = Some(digest);
        }
        let mut real = referrer(sig.as_bytes(), &subject, typed).await;
        if typed {
            real["artifactType"] = json!(SIGNATURE_ARTIFACT_TYPE);
        }
        entries.push(real);
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_MEDIA_TYPE,
            "manifests": entries,
        });
        let body = serde_json::to_vec(&index).unwrap();
        oci_client::Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::Http,
            ..Default::default()
        })
        .push_manifest_raw(
            &reg.reference(&format!(
                "krypton/component:{}",
                registry::referrers_tag(&subject)
            ))
            .parse()
            .unwrap(),
            body,
            http::HeaderValue::from_static(OCI_INDEX_MEDIA_TYPE),
        )
        .await
        .unwrap();
        let pulled = client.pull(&source, &subject).await.unwrap();
        assert_eq!(pulled.component, bytes, "{tag}");
        let verified: Vec<String> = pulled
            .signatures
            .iter()
            .filter_map(|s| signing::verify(&key.verifying_key(), &bytes, s).ok())
            .collect();
        assert_eq!(verified, vec![REAL_VERSION.to_string()], "{tag}");
        if let Some(big) = &big_digest {
            let fetched: Vec<_> = reg
                .accesses()
                .into_iter()
                .filter(|a| a.path.ends_with(&format!("/manifests/{big}")) && a.method == "GET")
                .filter(|a| a.agent.starts_with("krypton-host/"))
                .collect();
            assert_eq!(fetched, vec![], "the oversized referrer was fetched");
        }
    }
}
