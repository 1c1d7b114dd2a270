//! A leader cut off from both followers while a holder renews through it: the old leader
//! refuses to renew (it cannot confirm a quorum), the holder reports the loss by its own
//! deadline, and the followers' new leader grants the lease to someone else only after that
//! deadline.
//!
//! The partition is real, not a pause: every directed Raft link crosses a userspace proxy (the
//! jepsen harness's `LinkProxy`; nodes dial peers through it with `--dial ID=ADDR`), and the
//! test cuts the four links between the leader and its followers. The old leader keeps
//! running and answering clients; the followers keep talking to each other and elect a new
//! leader. Every time below is on this process's monotonic clock, the holder's clock.

mod common;

// The harness's proxy, shared rather than copied; this test only cuts and heals links.
#[allow(dead_code)]
#[path = "../jepsen/src/proxy.rs"]
mod link_proxy;

use std::collections::BTreeMap;
use std::time::Duration;

use arbiter::local_cluster::wait_for_leader;
use arbiter_client::{
    ArbiterClient, ClientError, KeeperOptions, LeaseKeeper, LeaseSpec, LossCause, Refusal,
    ResourceId, Validity,
};
use common::*;
use link_proxy::LinkProxy;
use tokio::time::{sleep, timeout, Instant};

const NODES: u64 = 3;
const TTL: Duration = Duration::from_secs(2);
const RESOURCE: &str = "db/ledger";

/// A three-node cluster whose Raft links each cross a proxy, keyed by (from, to).
struct LinkedCluster {
    cluster: TestCluster,
    links: BTreeMap<(u64, u64), LinkProxy>,
}

impl LinkedCluster {
    async fn start() -> LinkedCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut specs = cluster_specs(dir.path(), NODES as usize, &[]);
        let mut links = BTreeMap::new();
        for from in 1..=NODES {
            for to in (1..=NODES).filter(|to| *to != from) {
                let target = specs[TestCluster::index(to)].listeners.peer();
                let proxy = LinkProxy::start(target, Duration::ZERO)
                    .await
                    .expect("link proxy on loopback");
                specs[TestCluster::index(from)]
                    .extra_args
                    .extend(["--dial".to_string(), format!("{to}={}", proxy.local_addr())]);
                links.insert((from, to), proxy);
            }
        }
        let cluster = TestCluster::start_specs(dir, specs).await;
        LinkedCluster { cluster, links }
    }

    /// Cuts both directions of every link between `node` and the others.
    fn isolate(&self, node: u64) {
        for ((from, to), link) in &self.links {
            if *from == node || *to == node {
                link.cut();
            }
        }
    }

    fn heal(&self) {
        self.links.values().for_each(LinkProxy::heal);
    }
}

/// What the successor saw: every refusal before its grant, and the grant with its reply time.
struct Succession {
    refusals: Vec<Refusal>,
    grant: arbiter_client::Grant,
    replied_at: Instant,
}

/// Asks for the lease until it is granted, within `within`; errors (no leader yet) and
/// refusals are retried, refusals recorded.
async fn acquire_when_free(
    client: &ArbiterClient,
    spec: &LeaseSpec,
    within: Duration,
) -> Succession {
    let deadline = Instant::now() + within;
    let mut refusals = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no grant within {within:?}: {refusals:?}"
        );
        match client.acquire(spec).await {
            Ok(Ok(grant)) => {
                return Succession {
                    refusals,
                    grant,
                    replied_at: Instant::now(),
                }
            }
            Ok(Err(refusal)) => refusals.push(refusal),
            Err(error) => assert!(error.is_retryable(), "{error}"),
        }
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_its_followers_cannot_renew_and_its_holder_stops_by_its_deadline() {
    init_tracing();
    let linked = LinkedCluster::start().await;
    let leader = linked.cluster.leader(Duration::from_secs(20)).await;
    let old_leader = leader.node_id;
    let followers: Vec<String> = linked
        .cluster
        .running()
        .filter(|n| n.spec.id != old_leader)
        .map(|n| n.ready.grpc_addr.clone())
        .collect();

    tracing::info!(
        old_leader,
        "phase: a holder that reaches only the leader takes the lease"
    );
    // The holder sits on the leader's side of the partition: it knows no other node.
    let holder_client = patient_client(vec![leader.grpc_addr.clone()]).await;
    let spec = LeaseSpec::new(RESOURCE, "proxy-old", TTL);
    let keeper = LeaseKeeper::acquire(&holder_client, &spec, KeeperOptions::default())
        .await
        .expect("leader reachable")
        .expect("free resource");
    let granted_until = keeper.valid_until().expect("valid after the grant");
    eventually(
        "a renewal through the leader",
        Duration::from_secs(5),
        || {
            let until = keeper.valid_until();
            async move { until.filter(|u| *u > granted_until) }
        },
    )
    .await;

    tracing::info!("phase: cut the leader's links to both followers");
    linked.isolate(old_leader);
    let cut_at = Instant::now();

    // The successor is on the followers' side. It starts asking at once, so a grant made too
    // early would be seen, not hidden behind the holder's loss.
    let successor = {
        let client = patient_client(followers.clone()).await;
        let spec = LeaseSpec::new(RESOURCE, "proxy-new", TTL);
        tokio::spawn(async move { acquire_when_free(&client, &spec, TTL * 10).await })
    };

    // The holder's loss is watched from now on, so the checks below do not delay noticing it.
    let loss = {
        let lost = keeper.lost();
        tokio::spawn(async move {
            let cause = timeout(TTL * 2, lost).await;
            (cause, Instant::now())
        })
    };

    tracing::info!("phase: a keep-alive at the old leader is not renewed");
    let raw = patient_client(vec![leader.grpc_addr.clone()]).await;
    let resource = ResourceId::new(RESOURCE);
    let sent = Instant::now();
    let answer = raw
        .keep_alive(&resource, keeper.holder(), keeper.token())
        .await;
    tracing::info!(?answer, took = ?sent.elapsed(), "keep-alive at the isolated leader");
    match &answer {
        Err(error) => assert!(
            matches!(
                error,
                ClientError::NotLeader { .. }
                    | ClientError::OutcomeUnknown { .. }
                    | ClientError::Unavailable { .. }
                    | ClientError::GaveUp { .. }
            ),
            "not a quorum failure: {error}"
        ),
        Ok(Ok(renewal)) => panic!("the isolated leader renewed the lease: {renewal:?}"),
        Ok(Err(refusal)) => panic!("refused for a reason other than the partition: {refusal}"),
    }

    tracing::info!("phase: the holder reports the loss by its own deadline");
    let (cause, observed) = loss.await.expect("the loss watcher did not panic");
    let cause = cause.expect("the holder stops without the isolated leader renewing");
    assert_eq!(cause, LossCause::DeadlinePassed);
    let Validity::Lost { at: deadline, .. } = keeper.validity() else {
        panic!("lost() resolved but the keeper is still valid");
    };
    // Every renewal that counted was sent before the cut.
    assert!(
        deadline <= cut_at + TTL,
        "deadline {:?} after the cut: a renewal counted that no quorum confirmed",
        deadline - cut_at
    );
    assert!(observed >= deadline, "reported before its deadline");
    assert!(
        observed - deadline < Duration::from_millis(250),
        "loss reported {:?} after the deadline",
        observed - deadline
    );

    tracing::info!("phase: the followers' new leader grants the lease only after that deadline");
    let new_leader = wait_for_leader(&followers, Duration::from_secs(20), &client_options())
        .await
        .expect("the followers elect a leader");
    assert_ne!(new_leader.node_id, old_leader);
    assert!(new_leader.term > leader.term);
    let succession = timeout(TTL * 12, successor)
        .await
        .expect("the successor finishes")
        .expect("the successor did not panic");
    tracing::info!(
        refusals = succession.refusals.len(),
        granted_after_deadline = ?(succession.replied_at - deadline),
        sent_after_deadline = ?succession.grant.sent_at.checked_duration_since(deadline),
        "successor granted"
    );
    assert!(
        succession.replied_at > deadline,
        "granted to the successor {:?} before the old holder's deadline",
        deadline - succession.replied_at
    );
    assert!(succession.grant.token > keeper.token());
    // Until then the new leader said who was in the way.
    assert!(
        !succession.refusals.is_empty(),
        "never refused: the wait was not observed"
    );
    for refusal in &succession.refusals {
        assert!(
            matches!(refusal, Refusal::HeldBy { holder, .. } if holder.as_str() == "proxy-old"),
            "{refusal:?}"
        );
    }

    linked.heal();
}
