//! Rule 7: lease expiry runs on the leader's monotonic clock, so a step of the wall clock
//! changes nothing: a step forward expires no lease early, a step back keeps none alive late.
//!
//! Every node runs under libfaketime (`LD_PRELOAD`), which fakes `CLOCK_REALTIME` from an
//! offset file that this test rewrites, and leaves `CLOCK_MONOTONIC` alone
//! (`DONT_FAKE_MONOTONIC=1`): the nodes see what an NTP step or an operator's `date -s` would
//! show them. The nodes' JSON logs, stamped by the wall clock, show that the step reached them.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbiter_client::{ArbiterClient, LeaseSpec, Refusal, ResourceId};
use common::*;
use tokio::time::{sleep, Instant};

/// Debian's `libfaketime`; the thread-safe build, as the nodes are multi-threaded.
const SHIM: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
/// Ten minutes: far beyond any TTL here, well inside the certificates' validity.
const STEP_S: i64 = 600;
const LONG_TTL: Duration = Duration::from_secs(10);
const SHORT_TTL: Duration = Duration::from_secs(2);

/// The nodes' wall-clock offset, read by libfaketime on every clock read.
struct WallClock {
    file: PathBuf,
}

impl WallClock {
    fn new(dir: &Path) -> WallClock {
        let clock = WallClock {
            file: dir.join("faketime"),
        };
        clock.set(0);
        clock
    }

    /// Sets every node's wall clock to the real time plus `offset_s`. Written whole and
    /// renamed into place, so no clock read sees half a value.
    fn set(&self, offset_s: i64) {
        let next = self.file.with_extension("next");
        std::fs::write(&next, format!("{offset_s:+}\n")).expect("write the clock offset");
        std::fs::rename(&next, &self.file).expect("install the clock offset");
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", SHIM),
            ("FAKETIME_TIMESTAMP_FILE", &self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
            ("ARBITER_LOG", "info,arbiter=debug"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// Seconds since midnight UTC of a JSON log line's `timestamp` (`…THH:MM:SS.fffZ`).
fn second_of_day(line: &str) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let stamp = value["timestamp"].as_str()?;
    let time = stamp.split('T').nth(1)?;
    let mut parts = time.split(':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds: i64 = parts.next()?.get(..2)?.parse().ok()?;
    Some(hours * 3_600 + minutes * 60 + seconds)
}

/// Whether node `log`'s last line is stamped `offset_s` (± 60 s) from the real time: the
/// node's wall clock took the step.
fn log_shows_offset(log: &Path, offset_s: i64) -> bool {
    let Ok(text) = std::fs::read_to_string(log) else {
        return false;
    };
    let Some(stamped) = text.lines().rev().find_map(second_of_day) else {
        return false;
    };
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
        % 86_400;
    let ahead = (stamped - real).rem_euclid(86_400);
    let expected = offset_s.rem_euclid(86_400);
    let distance = (ahead - expected).abs();
    distance.min(86_400 - distance) <= 60
}

/// Asks for `spec` until granted within `within`; returns when the grant's reply came.
async fn acquire_when_free(client: &ArbiterClient, spec: &LeaseSpec, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        match client.acquire(spec).await {
            Ok(Ok(_)) => return Instant::now(),
            Ok(Err(Refusal::HeldBy { .. })) => {}
            Ok(Err(refusal)) => panic!("refused for another reason: {refusal}"),
            Err(error) => assert!(error.is_retryable(), "{error}"),
        }
        assert!(
            Instant::now() < deadline,
            "{} not granted within {within:?}",
            spec.resource
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wall_clock_step_neither_expires_a_lease_early_nor_keeps_it_late() {
    init_tracing();
    assert!(
        Path::new(SHIM).exists(),
        "{SHIM} is missing: install Debian's libfaketime (.ci/run does)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = WallClock::new(dir.path());
    let mut specs = cluster_specs(dir.path(), 3, &["--log-format", "json"]);
    for spec in &mut specs {
        spec.env = clock.env();
    }
    let cluster = TestCluster::start_specs(dir, specs).await;
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let leader_log = cluster.node(leader.node_id).spec.log_path();
    let client = patient_client(cluster.endpoints()).await;

    let long = LeaseSpec::new("db/long", "proxy-a", LONG_TTL);
    let long_grant = client
        .acquire(&long)
        .await
        .expect("cluster reachable")
        .expect("free resource");
    let long_resource = ResourceId::new("db/long");

    tracing::info!("phase: every node's wall clock jumps {STEP_S} s forward");
    clock.set(STEP_S);
    // The expiry loop runs after the step: a short lease taken now expires on its own TTL.
    let short = LeaseSpec::new("db/short", "proxy-s", SHORT_TTL);
    client
        .acquire(&short)
        .await
        .expect("cluster reachable")
        .expect("free resource");
    let short_taken = Instant::now();
    eventually(
        "the leader's log stamped with the stepped clock",
        Duration::from_secs(10),
        || async { log_shows_offset(&leader_log, STEP_S).then_some(()) },
    )
    .await;
    let successor = LeaseSpec::new("db/short", "proxy-t", SHORT_TTL);
    let freed = acquire_when_free(&client, &successor, SHORT_TTL * 5).await;
    assert!(freed - short_taken >= SHORT_TTL, "expired early");
    // The long lease, granted before the step, is still live: a step forward expired nothing.
    let renewal = client
        .keep_alive(&long_resource, &long_grant.holder, long_grant.token)
        .await
        .expect("cluster reachable")
        .unwrap_or_else(|refusal| {
            panic!("the lease granted before the step was expired by it: {refusal}")
        });

    tracing::info!("phase: every node's wall clock jumps {} s back", 2 * STEP_S);
    clock.set(-STEP_S);
    // Renewed before the step back and never again: it ends one TTL after that renewal, not
    // twenty minutes later.
    let taken_over = LeaseSpec::new("db/long", "proxy-b", LONG_TTL);
    let granted = acquire_when_free(&client, &taken_over, LONG_TTL * 3).await;
    eventually(
        "the leader's log stamped with the clock stepped back",
        Duration::from_secs(10),
        || async { log_shows_offset(&leader_log, -STEP_S).then_some(()) },
    )
    .await;
    let after_renewal = granted - renewal.sent_at;
    tracing::info!(?after_renewal, "long lease taken over");
    assert!(
        after_renewal >= LONG_TTL,
        "expired {after_renewal:?} after its renewal"
    );
}
