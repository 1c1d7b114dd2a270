//! Write leases and fencing over three real nodes, through the SDK and the CLI: two holders
//! racing through hand-overs and leader kills never overlap; a holder cut off from every node
//! stops by its own deadline; a revoked holder is refused at once and fenced; the CLI flow a
//! new user would try.
//!
//! Every interval and time below is on this process's monotonic clock, which is the clock the
//! holders' deadlines are computed on.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbiter_client::{
    ArbiterClient, ClientOptions, FencedResource, FencingToken, KeeperOptions, LeaseKeeper,
    LeaseSpec, LossCause, Refusal, ResourceId, StaleToken, Validity,
};
use common::*;
use rand::{Rng, SeedableRng};
use tokio::time::{sleep, timeout, Instant};

async fn client(endpoints: Vec<String>) -> ArbiterClient {
    let options = ClientOptions {
        attempt_timeout: Duration::from_secs(1),
        call_deadline: Duration::from_secs(5),
        ..client_options()
    };
    ArbiterClient::connect(endpoints, options)
        .await
        .expect("valid endpoints")
}

/// One holder's validity, from the moment its grant came back to the moment it stopped
/// believing it held the lease.
#[derive(Debug, Clone)]
struct Held {
    holder: String,
    token: FencingToken,
    start: Instant,
    end: Instant,
    cause: LossCause,
}

const RACE_RESOURCE: &str = "db/orders";
const HANDOVERS: usize = 100;
const LEADER_KILLS: usize = 5;
/// Every `LAPSE_EVERY`-th hand-over lets the lease lapse instead of releasing it.
const LAPSE_EVERY: usize = 4;
const RACE_TTL: Duration = Duration::from_millis(800);

/// One racer: acquire (polling while refused), write while valid for a short while, then
/// release or let it lapse; again, until `HANDOVERS` grants have been made between both.
async fn race(
    racer: &'static str,
    seed: u64,
    client: ArbiterClient,
    grants: Arc<AtomicUsize>,
    fence: Arc<FencedResource>,
    rejected_writes: Arc<Mutex<Vec<(String, StaleToken)>>>,
) -> Vec<Held> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut held = Vec::new();
    // A fresh holder name per grant, as a restarted proxy would have: a grant is never the
    // previous one handed back, so every grant mints a token.
    let mut generation = 0;
    let write = |token: FencingToken, holder: &str| {
        if let Err(stale) = fence.write(token, || ()) {
            rejected_writes
                .lock()
                .expect("no panics while held")
                .push((holder.to_string(), stale));
        }
    };
    while grants.load(Ordering::SeqCst) < HANDOVERS {
        let holder = format!("{racer}-{generation}");
        let spec = LeaseSpec::new(RACE_RESOURCE, holder.clone(), RACE_TTL);
        let keeper = match LeaseKeeper::acquire(&client, &spec, KeeperOptions::default()).await {
            Ok(Ok(keeper)) => keeper,
            Ok(Err(refusal)) => {
                assert!(refusal.is_retryable(), "{holder}: {refusal}");
                sleep(Duration::from_millis(rng.random_range(5..15))).await;
                continue;
            }
            Err(error) => {
                assert!(error.is_retryable(), "{holder}: {error}");
                sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let start = Instant::now();
        generation += 1;
        if !keeper.is_valid() {
            // The acquire took longer than the TTL (retries across a leader kill): the grant's
            // validity was over before its reply came, so the holder never held it.
            tracing::info!(%holder, token = %keeper.token(), "grant arrived after its deadline");
            continue;
        }
        let validity = keeper.subscribe();
        let lost = keeper.lost();
        let slot = grants.fetch_add(1, Ordering::SeqCst);
        let hold_until = start + Duration::from_millis(rng.random_range(10..60));
        while Instant::now() < hold_until && keeper.is_valid() {
            write(keeper.token(), &holder);
            sleep(Duration::from_millis(5)).await;
        }
        if slot % LAPSE_EVERY == LAPSE_EVERY - 1 {
            // Let it lapse: no more renewals, and keep writing for as long as the holder itself
            // believes it may — right up to its deadline. The other racer can only get the
            // lease through the leader's expiry.
            keeper.stop_renewing();
            while keeper.is_valid() {
                write(keeper.token(), &holder);
                sleep(Duration::from_millis(2)).await;
            }
        } else if keeper.is_valid() {
            // Outcome of the release itself does not matter: validity ended before it was sent,
            // and an unreleased lease lapses.
            let _ = keeper.release().await;
        }
        lost.await;
        let ended = validity.borrow().clone();
        let Validity::Lost { token, cause, at } = ended else {
            panic!("{holder}: lost() resolved while still valid");
        };
        held.push(Held {
            holder,
            token,
            start,
            end: at,
            cause,
        });
        sleep(Duration::from_millis(rng.random_range(0..20))).await;
    }
    held
}

#[tokio::test(flavor = "multi_thread")]
async fn two_holders_race_through_handovers_and_leader_kills_without_overlap() {
    init_tracing();
    let mut cluster = TestCluster::start(3, &[]).await;
    let client = client(cluster.endpoints()).await;
    let grants = Arc::new(AtomicUsize::new(0));
    let fence = Arc::new(FencedResource::new());
    let rejected = Arc::new(Mutex::new(Vec::new()));
    let racers: Vec<_> = [("a", 1), ("b", 2)]
        .into_iter()
        .map(|(racer, seed)| {
            tokio::spawn(race(
                racer,
                seed,
                client.clone(),
                grants.clone(),
                fence.clone(),
                rejected.clone(),
            ))
        })
        .collect();

    for kill in 1..=LEADER_KILLS {
        let after = kill * HANDOVERS / (LEADER_KILLS + 1);
        eventually(&format!("{after} grants"), Duration::from_secs(120), || {
            let grants = grants.clone();
            async move { (grants.load(Ordering::SeqCst) >= after).then_some(()) }
        })
        .await;
        let leader = cluster.leader(Duration::from_secs(10)).await;
        tracing::info!(
            kill,
            leader = leader.node_id,
            after,
            "phase: kill -9 the leader"
        );
        cluster.kill(leader.node_id);
        let new_leader = cluster.leader(Duration::from_secs(10)).await;
        assert_ne!(new_leader.node_id, leader.node_id);
        cluster.restart(leader.node_id).await;
    }

    let mut held = Vec::new();
    for racer in racers {
        held.extend(
            timeout(Duration::from_secs(180), racer)
                .await
                .expect("racers finish in time")
                .expect("racer did not panic"),
        );
    }

    tracing::info!("phase: check the recorded intervals");
    held.sort_by_key(|h| h.start);
    assert!(held.len() >= HANDOVERS, "only {} grants", held.len());
    let lapsed = held
        .iter()
        .filter(|h| h.cause == LossCause::DeadlinePassed)
        .count();
    let released = held
        .iter()
        .filter(|h| h.cause == LossCause::Released)
        .count();
    let alternations = held
        .windows(2)
        .filter(|w| w[0].holder.as_bytes()[0] != w[1].holder.as_bytes()[0])
        .count();
    tracing::info!(
        grants = held.len(),
        lapsed,
        released,
        alternations,
        "race summary"
    );
    assert!(lapsed >= HANDOVERS / LAPSE_EVERY - 1, "{lapsed} lapses");
    assert!(released >= HANDOVERS / 2, "{released} releases");
    assert!(
        alternations >= 10,
        "the racers barely alternated ({alternations})"
    );
    for h in &held {
        assert!(h.start <= h.end, "{h:?} ended before it started");
    }
    for pair in held.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            after.token > before.token,
            "tokens must strictly increase: {before:?} then {after:?}"
        );
        assert!(
            before.end <= after.start,
            "two holders valid at once for {:?}: {before:?} and {after:?}",
            before.end - after.start
        );
    }
    let rejected = rejected.lock().expect("racers are done");
    assert!(
        rejected.is_empty(),
        "a holder wrote with a stale token while it believed it held the lease: {rejected:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_holder_cut_off_from_every_node_reports_the_loss_by_its_deadline() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let client = client(cluster.endpoints()).await;
    let ttl = Duration::from_secs(2);
    let spec = LeaseSpec::new("db/payments", "proxy-eu", ttl);
    let keeper = LeaseKeeper::acquire(&client, &spec, KeeperOptions::default())
        .await
        .expect("cluster reachable")
        .expect("free resource");
    let granted_until = keeper.valid_until().expect("valid after the grant");
    eventually("a renewal", Duration::from_secs(5), || {
        let until = keeper.valid_until();
        async move { until.filter(|u| *u > granted_until) }
    })
    .await;

    // A writer that checks validity before every write, as a proxy does.
    let keeper = Arc::new(keeper);
    let last_write = Arc::new(Mutex::new(None::<Instant>));
    let writer = {
        let (keeper, last_write) = (keeper.clone(), last_write.clone());
        tokio::spawn(async move {
            while keeper.is_valid() {
                *last_write.lock().expect("writer only") = Some(Instant::now());
                sleep(Duration::from_millis(1)).await;
            }
        })
    };

    tracing::info!("phase: SIGSTOP every node");
    for node in cluster.running() {
        node.signal(libc::SIGSTOP);
    }
    let stopped_at = Instant::now();
    let cause = timeout(ttl * 2, keeper.lost())
        .await
        .expect("the loss is reported without any node answering");
    let observed = Instant::now();
    for node in cluster.running() {
        node.signal(libc::SIGCONT);
    }

    assert_eq!(cause, LossCause::DeadlinePassed);
    let Validity::Lost { at: deadline, .. } = keeper.validity() else {
        panic!("lost() resolved but the keeper is still valid");
    };
    // Every successful request was sent before the stop, so the deadline is at most one TTL
    // (less the drift margin) after it.
    assert!(
        deadline <= stopped_at + ttl,
        "deadline {:?} after the stop",
        deadline - stopped_at
    );
    assert!(!keeper.is_valid());
    writer.await.expect("writer ends");
    let last_write = last_write.lock().expect("writer done").expect("it wrote");
    assert!(last_write < deadline, "a write at or after the deadline");
    let signal_delay = observed - deadline;
    tracing::info!(
        ?signal_delay,
        valid_after_stop = ?(deadline - stopped_at),
        "lost signal vs deadline"
    );
    assert!(
        signal_delay < Duration::from_millis(250),
        "loss reported {signal_delay:?} after the deadline"
    );

    tracing::info!("phase: nodes resume; the arbiter frees the lease and refuses the old token");
    cluster.leader(Duration::from_secs(10)).await;
    let resource = ResourceId::new("db/payments");
    let successor = LeaseSpec::new("db/payments", "proxy-us", ttl);
    let grant = eventually("the lapsed lease to be granted again", ttl * 5, || {
        let (client, successor) = (client.clone(), successor.clone());
        async move { client.acquire(&successor).await.ok()?.ok() }
    })
    .await;
    assert!(grant.token > keeper.token());
    let refused = client
        .keep_alive(&resource, keeper.holder(), keeper.token())
        .await
        .expect("cluster reachable");
    assert_eq!(
        refused,
        Err(Refusal::StaleToken {
            presented: keeper.token(),
            current: grant.token,
        })
    );
    // The holder's own view agrees, from the same moment.
    let Validity::Lost { at, .. } = keeper.validity() else {
        panic!("valid again after the arbiter came back");
    };
    assert_eq!(at, deadline);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_holder_is_refused_at_once_and_fenced_by_the_new_epoch() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let client = client(cluster.endpoints()).await;
    let resource = ResourceId::new("db/inventory");
    let ttl = Duration::from_secs(3);
    let options = KeeperOptions::default();
    let spec = LeaseSpec::new(resource.as_str(), "proxy-west", ttl);
    let keeper = LeaseKeeper::acquire(&client, &spec, options.clone())
        .await
        .expect("cluster reachable")
        .expect("free resource");
    let old_token = keeper.token();
    let fence = FencedResource::new();
    fence.write(old_token, || ()).expect("the holder writes");
    // The last deadline the holder counted before it learnt of the revoke: until then it may
    // write, so no successor may be granted before it.
    let last_deadline = {
        let mut validity = keeper.subscribe();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                match &*validity.borrow_and_update() {
                    Validity::Valid { until, .. } => last = Some(*until),
                    Validity::Lost { .. } => return last,
                }
                if validity.changed().await.is_err() {
                    return last;
                }
            }
        })
    };

    tracing::info!("phase: revoke");
    let revoked = client
        .revoke(&resource, "region drill", "dr-controller")
        .await
        .expect("cluster reachable")
        .expect("a held lease can be revoked");
    let revoked_at = Instant::now();
    assert_eq!(revoked.displaced_holder.as_str(), "proxy-west");
    assert_eq!(revoked.displaced_token, old_token);
    assert!(revoked.epoch > old_token);

    let refused = client
        .keep_alive(&resource, keeper.holder(), old_token)
        .await
        .expect("cluster reachable");
    let refused_after = revoked_at.elapsed();
    assert_eq!(
        refused,
        Err(Refusal::StaleToken {
            presented: old_token,
            current: revoked.epoch
        })
    );

    // The keeper learns it at its next renewal.
    let cause = timeout(ttl, keeper.lost())
        .await
        .expect("the keeper stops within one renewal interval");
    let stopped_after = revoked_at.elapsed();
    assert!(
        matches!(cause, LossCause::Refused(Refusal::StaleToken { .. })),
        "{cause:?}"
    );
    assert!(!keeper.is_valid());
    tracing::info!(
        ?refused_after,
        ?stopped_after,
        "revoke → keep-alive refused, revoke → keeper stopped"
    );
    assert!(stopped_after < ttl / 3 + Duration::from_millis(500));

    tracing::info!("phase: the resource learns the epoch and fences the old token");
    let epoch = client.current_epoch(&resource).await.expect("epoch");
    assert_eq!(epoch, revoked.epoch);
    fence.observe_epoch(epoch);
    assert_eq!(
        fence.write(old_token, || ()),
        Err(StaleToken {
            presented: old_token,
            highest: epoch
        })
    );
    let check = client
        .validate_token(&resource, old_token)
        .await
        .expect("validate");
    assert!(!check.valid);
    assert_eq!(check.current_epoch, epoch);

    tracing::info!("phase: a new holder waits out the old deadline, then writes above the epoch");
    let successor = LeaseSpec::new(resource.as_str(), "proxy-east", ttl);
    let first = client.acquire(&successor).await.expect("reachable");
    assert!(
        matches!(&first, Err(Refusal::Draining { holder, .. }) if holder.as_str() == "proxy-west"),
        "{first:?}"
    );
    let grant = eventually("the drained resource to be granted", ttl * 3, || {
        let (client, successor) = (client.clone(), successor.clone());
        async move { client.acquire(&successor).await.ok()?.ok() }
    })
    .await;
    let granted_by = Instant::now();
    let old_deadline = last_deadline
        .await
        .expect("the deadline watcher did not panic")
        .expect("valid before the revoke");
    assert!(
        granted_by > old_deadline,
        "the successor was granted {:?} before the revoked holder's deadline",
        old_deadline - granted_by
    );
    tracing::info!(after_old_deadline = ?(granted_by - old_deadline), "successor granted");
    assert!(grant.token > epoch);
    fence
        .write(grant.token, || ())
        .expect("the new holder writes");
}

/// Runs `arbiter lease ...` against the cluster; returns (exit code, stdout, stderr).
async fn cli(cluster: &TestCluster, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(binary())
        .arg("lease")
        .args(args)
        .arg("--endpoints")
        .arg(cluster.endpoints().join(","))
        .args(cli_credentials())
        .output()
        .await
        .expect("the CLI runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_refuses_a_second_holder_by_name_and_grants_it_after_release() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let acquire = |holder: &'static str| {
        [
            "acquire",
            "--resource",
            "db/carts",
            "--holder",
            holder,
            "--ttl",
            "5",
        ]
    };

    let (code, out, err) = cli(
        &cluster,
        &[&acquire("proxy-east")[..], &["--json"]].concat(),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let first = json(&out)["token"].as_u64().expect("a token");

    let (code, out, err) = cli(&cluster, &acquire("proxy-west")).await;
    assert_eq!(code, 4, "refused: {out}{err}");
    assert!(err.contains("proxy-east"), "names the holder: {err}");
    let (code, out, _) = cli(
        &cluster,
        &[&acquire("proxy-west")[..], &["--json"]].concat(),
    )
    .await;
    assert_eq!(code, 4);
    assert_eq!(json(&out)["refusal"]["holder"], "proxy-east");

    let (code, out, _) = cli(&cluster, &["show", "--resource", "db/carts", "--json"]).await;
    assert_eq!(code, 0);
    let shown = json(&out);
    assert_eq!(shown["state"], "HELD");
    assert_eq!(shown["holder"], "proxy-east");
    assert_eq!(shown["token"], first);

    let token = first.to_string();
    let lease = [
        "--resource",
        "db/carts",
        "--holder",
        "proxy-east",
        "--token",
        &token,
    ];
    let (code, out, err) = cli(&cluster, &[&["keepalive"][..], &lease[..]].concat()).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(&cluster, &[&["release"][..], &lease[..]].concat()).await;
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = cli(&cluster, &acquire("proxy-west")).await;
    assert_eq!(code, 0, "{out}{err}");
    let second: u64 = out.trim().parse().expect("stdout is the bare token");
    assert!(second > first, "{second} after {first}");

    let (code, out, err) = cli(
        &cluster,
        &[
            "revoke",
            "--resource",
            "db/carts",
            "--reason",
            "drill",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let revoked = json(&out);
    assert_eq!(revoked["displaced_holder"], "proxy-west");
    assert!(revoked["epoch"].as_u64() > Some(second));
    let second = second.to_string();
    let (code, _, err) = cli(
        &cluster,
        &[
            "keepalive",
            "--resource",
            "db/carts",
            "--holder",
            "proxy-west",
            "--token",
            &second,
        ],
    )
    .await;
    assert_eq!(code, 4, "a revoked lease cannot be renewed: {err}");
    assert!(err.contains("not current"), "{err}");
}

/// `keep_alive_streamed` against real nodes: many leases renewed at once over the client's
/// one stream, a wrong token refused by kind, and after the leader is killed the stream is
/// dropped and renewals reach the new leader, which re-timed the lease with a full TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_keep_alives_renew_many_leases_and_follow_a_new_leader() {
    init_tracing();
    let mut cluster = TestCluster::start(3, &[]).await;
    let client = client(cluster.endpoints()).await;
    let ttl = Duration::from_secs(5);
    let mut grants = Vec::new();
    for i in 0..16 {
        let spec = LeaseSpec::new(format!("db/streamed-{i}"), format!("proxy-{i}"), ttl);
        grants.push(
            client
                .acquire(&spec)
                .await
                .expect("reachable")
                .expect("free"),
        );
    }

    tracing::info!("phase: 16 leases x 4 renewals at once on one stream");
    let batch = Instant::now();
    let renewals = futures::future::join_all(grants.iter().cycle().take(64).map(|grant| {
        let client = client.clone();
        async move {
            let before = Instant::now();
            let renewal = client
                .keep_alive_streamed(&grant.resource, &grant.holder, grant.token)
                .await;
            (before, renewal)
        }
    }))
    .await;
    // A renewal falls back to the unary call only after the stream failed it or stayed
    // silent for the attempt timeout (1 s here): finishing sooner means the stream answered
    // each one by its request id.
    assert!(
        batch.elapsed() < client.options().attempt_timeout,
        "the stream answered: {:?}",
        batch.elapsed()
    );
    for (before, renewal) in renewals {
        let renewal = renewal.expect("reachable").expect("renewed");
        assert_eq!(renewal.ttl, ttl);
        assert!(
            renewal.sent_at >= before,
            "sent_at is the send, not earlier"
        );
    }

    tracing::info!("phase: a token that is not the lease's is refused by kind");
    let grant = &grants[0];
    let wrong = FencingToken(grant.token.0 + 1);
    let refusal = client
        .keep_alive_streamed(&grant.resource, &grant.holder, wrong)
        .await
        .expect("reachable")
        .expect_err("refused");
    assert!(
        matches!(refusal, Refusal::StaleToken { presented, .. } if presented == wrong),
        "{refusal:?}"
    );

    tracing::info!("phase: the leader dies; renewals find the new one");
    let old = cluster.leader(Duration::from_secs(10)).await;
    cluster.kill(old.node_id);
    let renewed = eventually(
        "a streamed renewal at the new leader",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let grant = grant.clone();
            async move {
                client
                    .keep_alive_streamed(&grant.resource, &grant.holder, grant.token)
                    .await
                    .ok()?
                    .ok()
            }
        },
    )
    .await;
    assert_eq!(renewed.ttl, ttl);
    let new = cluster.leader(Duration::from_secs(10)).await;
    assert_ne!(new.node_id, old.node_id);
    let new_addr = &cluster.endpoints()[TestCluster::index(new.node_id)];
    let port = new_addr.rsplit_once(':').expect("host:port").1;
    assert!(
        client.leader_guess().ends_with(&format!(":{port}")),
        "the client now streams to the new leader {new_addr}, not {}",
        client.leader_guess()
    );
}
