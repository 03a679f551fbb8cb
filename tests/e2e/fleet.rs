//! A fleet following one tag (issue 9, part 2): 20 `krypton-host run` daemons on this machine,
//! each with its own store, state directory and control socket, polling one tag of Debian's
//! `docker-registry` every second. A new signed version converges on all of them; one that traps
//! in its first calls is rolled back everywhere; an older signed one is refused everywhere, once;
//! an unsigned one without a referrers listing is left unserved (and its layer unfetched). Convergence times and registry requests are printed, not asserted.

use super::registry_support::*;
use super::support::*;
use krypton_host::signing;
use krypton_host_cli::registry::{Registry, Settings, Source};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DAEMONS: usize = 20;
const REAL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The hostile test component answering the `arc` target list (it writes a bundle, then traps
/// in `provision arc`), reporting `version` (7 bytes) instead of `hostile`: the same length, so
/// the copy stays a valid component (as `hostile_targets.rs` patches its marker).
pub fn trapping(version: &[u8; 7]) -> Vec<u8> {
    let mut bytes = hostile_wasm();
    let marker = b"krypton-hostile-targets:empty";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the marker");
    bytes[at + 24..at + 24 + 5].copy_from_slice(b"arc\0\0");
    let mut i = 0;
    while let Some(p) = bytes[i..].windows(7).position(|w| w == b"hostile") {
        bytes[i + p..i + p + 7].copy_from_slice(version);
        i += p + 7;
    }
    bytes
}

/// One daemon of the fleet.
struct Gateway {
    socket: PathBuf,
    log: PathBuf,
    child: tokio::process::Child,
}

async fn statuses(fleet: &[Gateway]) -> Vec<HashMap<String, String>> {
    let mut all = Vec::new();
    for g in fleet {
        all.push(daemon_status(&g.socket).await);
    }
    all
}

/// Wait (at most `limit`) until every daemon's status satisfies `ok`; the time it took.
async fn converge(
    fleet: &[Gateway],
    what: &str,
    limit: Duration,
    ok: impl Fn(&HashMap<String, String>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let all = statuses(fleet).await;
        let done = all.iter().filter(|s| ok(s)).count();
        if done == fleet.len() {
            return started.elapsed();
        }
        if started.elapsed() > limit {
            let late = all.iter().position(|s| !ok(s)).unwrap_or(0);
            let log = std::fs::read_to_string(&fleet[late].log).unwrap_or_default();
            panic!(
                "{what}: {done}/{} after {limit:?}; the status of one not there {:?}; its log:\n{log}",
                fleet.len(),
                all[late]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn publish(
    client: &Registry,
    tag: &Source,
    bytes: &[u8],
    signature: Option<(&ed25519_dalek::SigningKey, &str)>,
) -> String {
    let sig = signature.map(|(key, version)| signing::sign(key, bytes, version).unwrap());
    client
        .publish(
            tag,
            bytes,
            signature.map(|(_, v)| v),
            sig.as_deref().map(str::as_bytes),
        )
        .await
        .unwrap()
        .digest
}

/// Daemon `dir`'s configuration: its own store, state and socket in `dir`, the tag of
/// `registry` signed by `public`, the fixture's mock.
fn config(fx: &Fixture, dir: &Path, registry: &str, public: &str) -> GatewayToml {
    fx.gateway()
        .following(dir, registry, public)
        .set("check_interval_secs", 2)
        .table("[limits]\ncpu_ms = 2000")
        .table("[backoff]\nbase_secs = 1\nmax_secs = 2")
        .target("arc")
}

fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_gateways_follow_one_tag_roll_back_together_and_refuse_together() {
    if !registry_tools_present(false) {
        return;
    }
    let reg = TestRegistry::start();
    let fx = Fixture::new().await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let public = public_key_b64(&key);
    let stable = Source::parse(&reg.reference("krypton/component:stable")).unwrap();
    let client = Registry::new(
        &stable,
        &Settings {
            insecure: true,
            ..Settings::default()
        },
    )
    .unwrap();
    let v1 = publish(&client, &stable, &variant(1), Some((&key, REAL_VERSION))).await;

    let started = Instant::now();
    let mut fleet = Vec::new();
    for i in 0..DAEMONS {
        let dir = fx.path(&format!("gw{i:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = config(&fx, &dir, &reg.addr, &public).write(&dir.join("gateway.toml"));
        let log = dir.join("daemon.log");
        let child = spawn_daemon(&file, &log);
        fleet.push(Gateway {
            socket: dir.join("control.sock"),
            log,
            child,
        });
    }
    let limit = Duration::from_secs(60);
    converge(&fleet, "v1 at start", limit, |s| {
        s.get("manifest") == Some(&v1)
    })
    .await;
    println!(
        "fleet: {DAEMONS} daemons started on v1 in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let before = reg.requests();

    // v2, a higher version (other bytes signed as the serving version would be refused):
    // every daemon swaps it in.
    let v2_bytes = super::registry_support::with_version("0.3.1");
    let v2_sha = signing::digest_hex(&v2_bytes);
    let v2 = publish(&client, &stable, &v2_bytes, Some((&key, "0.3.1"))).await;
    let took = converge(&fleet, "v2", limit, |s| {
        s.get("manifest") == Some(&v2) && s.get("serving") == Some(&v2_sha)
    })
    .await;
    println!(
        "fleet: v2 converged on {DAEMONS} daemons in {:.2} s (poll interval 1 s)",
        took.as_secs_f64()
    );

    // v3 traps in its first provision call: every daemon rolls back to v2 and remembers it.
    let v3 = publish(
        &client,
        &stable,
        &trapping(b"0.9.0-h"),
        Some((&key, "0.9.0-h")),
    )
    .await;
    let took = converge(&fleet, "v3 rolled back", limit, |s| {
        s.get("manifest") == Some(&v2)
            && s.get("serving") == Some(&v2_sha)
            && s.get("refused").map(String::as_str) == Some("1")
    })
    .await;
    println!(
        "fleet: v3 (traps) rolled back on {DAEMONS} daemons in {:.2} s",
        took.as_secs_f64()
    );

    // v4 unsigned: this registry has no referrers API and v4 no referrers tag, which proves
    // nothing (a signature may be on its way), so it is not refused for good: every daemon
    // keeps serving v2 and asks again with a back-off, without fetching v4's layer.
    let v4 = publish(&client, &stable, &variant(4), None).await;
    let took = converge(&fleet, "v4 looked at", limit, |s| {
        s.get("serving") == Some(&v2_sha) && s.get("pulled").is_some_and(|p| p.contains(&v4))
    })
    .await;
    println!(
        "fleet: v4 (unsigned, no referrers tag) left unserved by {DAEMONS} daemons in {:.2} s",
        took.as_secs_f64()
    );

    // An older signed version re-published under the tag: a downgrade, refused by all.
    let old = publish(
        &client,
        &stable,
        &trapping(b"0.1.0-h"),
        Some((&key, "0.1.0-h")),
    )
    .await;
    let took = converge(&fleet, "downgrade refused", limit, |s| {
        s.get("serving") == Some(&v2_sha) && s.get("refused").map(String::as_str) == Some("2")
    })
    .await;
    println!(
        "fleet: 0.1.0-h (older, signed) refused by {DAEMONS} daemons in {:.2} s",
        took.as_secs_f64()
    );

    // A few more polls: nothing is pulled again, each refusal was logged once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = statuses(&fleet).await;
    let mut daemon_requests = 0u64;
    let mut polls = 0u64;
    for (g, s) in fleet.iter().zip(&all) {
        assert_eq!(s.get("serving"), Some(&v2_sha));
        assert_eq!(s.get("refused").map(String::as_str), Some("2"));
        daemon_requests += s["requests"].parse::<u64>().unwrap();
        polls += s["polls"].parse::<u64>().unwrap();
        assert_eq!(
            count(&g.log, "registry component refused"),
            2,
            "{}",
            g.log.display()
        );
        assert_eq!(
            count(&g.log, &format!("digest={v3}")),
            2,
            "v3: pulled once, refused once"
        );
        assert_eq!(
            count(&g.log, "rolled back"),
            2,
            "the lifecycle's line and the refusal"
        );
        assert_eq!(count(&g.log, "unsigned: no signature referrer"), 0);
        assert!(count(&g.log, "referrers tag lookup failed") >= 1);
        assert_eq!(count(&g.log, "refusing a downgrade"), 1);
        assert!(count(&g.log, &v4) >= 1 && count(&g.log, &old) >= 1);
    }
    println!(
        "fleet: registry requests: {daemon_requests} by the daemons in {polls} polls ({:.2} per poll), \
         {} in the registry's access log since v1 ({} in all, publishes included)",
        daemon_requests as f64 / polls.max(1) as f64,
        reg.requests() - before,
        reg.requests()
    );
    for g in fleet {
        stop(g.child).await;
    }
    fx.stop().await;
}
