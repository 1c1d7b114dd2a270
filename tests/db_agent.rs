//! `arbiter db-agent` against a real arbiter cluster and real PostgreSQL 15 servers
//! (`arbiter::pg_cluster`): a us-east-1 primary and its us-west-2 streaming standby, one agent
//! each, run in-process through `arbiter::db_agent::run` with region identities.
//!
//! - The region holding the lease has a writable database; when its lease is revoked its
//!   database turns read-only within the lease's deadline (new writes fail with SQLSTATE 25006,
//!   an open write transaction is ended), and the other region's agent, once granted the lease,
//!   promotes its standby and raises the fence, so the old token is refused there (AF001).
//! - `GetSyncMetrics` for us-east-1 → us-west-2 is fed by the databases' WAL positions: bytes
//!   pending and lag while the standby is paused, nothing pending once it has caught up.
//! - Controller actions older than the last obeyed (epoch, leader term) are refused, also after
//!   the agent restarts; newer ones are obeyed; the webhook wants its token.
//! - With every arbiter node gone, the agent's database turns read-only by the lease's deadline
//!   (the keeper's own timer): the seed's isolated region.
//!
//! Without PostgreSQL these tests fail (`PgInstall::locate` names what is missing): CI installs
//! Debian `postgresql`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use arbiter::auth::issue::TokenGrant;
use arbiter::auth::Role;
use arbiter::db_agent::database::Database;
use arbiter::db_agent::{self, DbAgentConfig};
use arbiter::http_client::HttpClient;
use arbiter::pg_cluster::{PgOptions, PgServer};
use arbiter::tls::ClientCredentials;
use arbiter_client::pg_fence::{self, fenced_transaction_with_token, FencedWriteError};
use arbiter_client::proto::replication::replication_coordinator_client::ReplicationCoordinatorClient;
use arbiter_client::proto::replication::{SyncMetricsRequest, SyncMetricsResponse};
use arbiter_client::{
    ArbiterClient, BearerToken, ClientOptions, FencingToken, HolderId, RegionId, ResourceId,
};
use common::*;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;

const RESOURCE: &str = "db/primary";
const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";
const TTL: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(60);
const WEBHOOK_TOKEN: &str = "webhook-secret-for-tests";

/// A region identity for the agent of `region`.
fn agent_identity(region: &str) -> TokenGrant {
    TokenGrant {
        identity: format!("db-agent-{region}"),
        role: Role::Region,
        region: Some(region.into()),
        vantage: None,
    }
}

/// One agent, running in this process until stopped.
struct Agent {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), db_agent::AgentError>>>,
}

impl Agent {
    async fn start(
        cluster: &TestCluster,
        region: &str,
        token: &str,
        db: &PgServer,
        state_dir: &Path,
    ) -> Agent {
        let credentials = ClientCredentials {
            token: Some(token.to_string()),
            token_file: None,
            ..certs().operator()
        };
        let config = DbAgentConfig {
            region: RegionId::new(region),
            holder: HolderId::new(format!("db-agent-{region}")),
            resource: ResourceId::new(RESOURCE),
            lease_ttl: TTL,
            database: Database::new(&db.dsn("postgres")).expect("dsn"),
            grpc_endpoints: cluster.endpoints(),
            http_endpoints: cluster
                .specs
                .iter()
                .map(|s| s.listeners.http().to_string())
                .collect(),
            client_options: ClientOptions {
                token: Some(BearerToken::new(token).expect("token")),
                ..client_options()
            },
            http: credentials.http_client().expect("https client"),
            state_dir: state_dir.to_path_buf(),
            report_interval: Duration::from_millis(200),
            retry_interval: Duration::from_millis(300),
            webhook_token: Some(WEBHOOK_TOKEN.into()),
            standby_names: BTreeMap::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(db_agent::run(config, listener, async move {
            let _ = stopped.await;
        }));
        Agent {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `GET path` at the agent's port with `token` (None: no credential); the status code.
    async fn get(&self, path: &str, token: Option<&str>) -> Option<(u16, Vec<u8>)> {
        let response = HttpClient::new(None, token)
            .request(
                "GET",
                &format!("http://{}{path}", self.addr),
                None,
                Duration::from_secs(2),
            )
            .await
            .ok()?;
        Some((response.status, response.body))
    }

    async fn status(&self) -> Option<Value> {
        let (_, body) = self.get("/v1/agent/status", Some(WEBHOOK_TOKEN)).await?;
        serde_json::from_slice(&body).ok()
    }

    /// Waits up to `timeout` for an event of the agent's that contains `text`.
    async fn await_event(&self, what: &str, text: &str, timeout: Duration) {
        eventually(what, timeout, || async {
            let status = self.status().await?;
            status["events"]
                .as_array()?
                .iter()
                .any(|e| e["what"].as_str().is_some_and(|w| w.contains(text)))
                .then_some(())
        })
        .await;
    }

    /// Waits until the agent holds the lease and has opened its database; returns the token.
    async fn writable(&self, what: &str) -> u64 {
        eventually(what, WAIT, || async {
            let status = self.status().await?;
            (status["writable"] == json!(true) && status["lease"]["state"] == json!("held"))
                .then(|| status["lease"]["token"].as_u64())
                .flatten()
        })
        .await
    }

    /// `POST /v1/agent/actions` with `token` (None: no credential).
    async fn act(&self, token: Option<&str>, action: Value) -> (u16, Value) {
        let client = HttpClient::new(None, token);
        let body = serde_json::to_vec(&action).expect("json");
        let response = client
            .request(
                "POST",
                &format!("http://{}/v1/agent/actions", self.addr),
                Some(&body),
                Duration::from_secs(10),
            )
            .await
            .expect("the agent answers");
        (
            response.status,
            serde_json::from_slice(&response.body).unwrap_or(Value::Null),
        )
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("the agent stops")
                .expect("the agent task")
                .expect("the agent ran");
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A primary (us-east-1) with the fence and an application table, and its streaming standby
/// (us-west-2) that has replayed both.
async fn primary_and_standby() -> (PgServer, PgServer) {
    let primary = PgServer::start_primary(EAST, PgOptions::default())
        .await
        .expect("PostgreSQL 15 must be installed (Debian `postgresql`)");
    let mut db = primary.connect("postgres").await.expect("connect");
    pg_fence::install(&mut db).await.expect("install the fence");
    primary
        .query(
            "CREATE TABLE app_writes (id bigserial PRIMARY KEY, note text NOT NULL, \
             payload text)",
        )
        .await
        .expect("create the application table");
    // Feedback every second, so the primary's view of the standby's replay is fresh.
    let standby = PgServer::start_standby(
        &primary,
        WEST,
        PgOptions::default().setting("wal_receiver_status_interval", "1s"),
    )
    .await
    .expect("start the standby");
    primary.wait_streaming(WEST).await.expect("streaming");
    let lsn = primary.current_lsn().await.expect("lsn");
    standby.wait_replayed(&lsn).await.expect("replayed");
    (primary, standby)
}

/// An unfenced insert on a fresh connection.
async fn insert(db: &PgServer, note: &str) -> Result<u64, tokio_postgres::Error> {
    let client = db.connect("postgres").await.expect("connect");
    client
        .execute("INSERT INTO app_writes (note) VALUES ($1)", &[&note])
        .await
}

async fn count(db: &PgServer, note: &str) -> u64 {
    db.query_one(&format!(
        "SELECT count(*) FROM app_writes WHERE note = '{note}'"
    ))
    .await
    .expect("count")
    .and_then(|n| n.parse().ok())
    .expect("a count")
}

/// A fenced write of `note` under `token`, through the SDK.
async fn fenced_write(
    db: &PgServer,
    token: u64,
    note: &str,
) -> Result<u64, FencedWriteError<tokio_postgres::Error>> {
    let mut client = db.connect("postgres").await.expect("connect");
    let note = note.to_string();
    fenced_transaction_with_token(
        &mut client,
        &ResourceId::new(RESOURCE),
        FencingToken(token),
        move |tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO app_writes (note) VALUES ($1)", &[&note])
                    .await
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_turns_the_region_read_only_and_the_granted_region_promotes() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    dr_bootstrapped(&leader.http_addr, WAIT).await;
    let east_token = cluster.issue(agent_identity(EAST)).await;
    let west_token = cluster.issue(agent_identity(WEST)).await;
    let (primary, standby) = primary_and_standby().await;
    let state = tempfile::tempdir().expect("temp dir");

    tracing::info!("phase 1: the standby's agent, started first, leaves the never-held lease");
    let west = Agent::start(
        &cluster,
        WEST,
        &west_token,
        &standby,
        &state.path().join("west"),
    )
    .await;
    eventually("the west agent to wait for the lease", WAIT, || async {
        let status = west.status().await?;
        (status["lease"]["state"] == json!("waiting")
            && status["lease"]["reason"]
                .as_str()?
                .contains("has never been leased"))
        .then_some(())
    })
    .await;

    tracing::info!("phase 1: the east agent holds the lease; its database takes writes");
    let east = Agent::start(
        &cluster,
        EAST,
        &east_token,
        &primary,
        &state.path().join("east"),
    )
    .await;
    let east_lease = east.writable("the east agent to open its database").await;
    assert_eq!(
        standby
            .query_one("SELECT pg_is_in_recovery()::text")
            .await
            .expect("ask the standby"),
        Some("true".into()),
        "the standby was promoted at the start"
    );
    insert(&primary, "east-before")
        .await
        .expect("a write at the lease holder");
    eventually(
        "the west agent to wait for the held lease",
        WAIT,
        || async {
            let status = west.status().await?;
            (status["lease"]["state"] == json!("waiting")
                && status["writable"] == json!(false)
                && !status["lease"]["reason"]
                    .as_str()?
                    .contains("has never been leased"))
            .then_some(())
        },
    )
    .await;

    tracing::info!("phase 2: a write transaction is open at east when the lease is revoked");
    let open = primary.connect("postgres").await.expect("connect");
    open.batch_execute("BEGIN; INSERT INTO app_writes (note) VALUES ('east-open')")
        .await
        .expect("an open write transaction");
    let operator = ArbiterClient::connect(cluster.endpoints(), client_options())
        .await
        .expect("connect");
    let revoked_at = Instant::now();
    operator
        .revoke(
            &ResourceId::new(RESOURCE),
            "test: east is cut off",
            "operator",
        )
        .await
        .expect("revoke sent")
        .expect("revoke applied");

    tracing::info!("phase 3: east turns read-only within the lease's deadline");
    eventually("the east database to refuse writes", TTL, || async {
        match insert(&primary, "east-after").await {
            Err(e) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(
        revoked_at.elapsed() < TTL,
        "read-only after {:?}",
        revoked_at.elapsed()
    );
    // New sessions turn read-only at the reload, a moment before the agent ends the open
    // ones: a COMMIT sent in between would still succeed. Wait for the agent to finish.
    east.await_event(
        "the east agent to end open transactions",
        "read-only (lease lost",
        TTL,
    )
    .await;
    assert!(
        open.batch_execute("COMMIT").await.is_err(),
        "the open write transaction was not ended"
    );
    assert_eq!(
        count(&primary, "east-open").await,
        0,
        "the open transaction committed"
    );
    // Writes that came before the agent acted took effect; none after.
    let before = count(&primary, "east-after").await;
    let refused = insert(&primary, "east-after").await.expect_err("read-only");
    assert_eq!(refused.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
    assert_eq!(count(&primary, "east-after").await, before);
    let status = east.status().await.expect("east status");
    assert_eq!(status["writable"], json!(false), "{status}");
    assert!(
        status["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["what"]
                .as_str()
                .is_some_and(|w| w.contains("read-only (lease lost"))),
        "{status}"
    );
    // The controller moves traffic away from east, as a failover does after the fence: the
    // east agent stands down instead of asking for the lease again once it drains.
    let (code, answer) = east
        .act(
            Some(WEBHOOK_TOKEN),
            json!({"action": "shift_traffic", "fromRegion": EAST, "toRegion": WEST,
                   "weights": [[WEST, 100.0]], "reason": "test failover",
                   "epoch": east_lease + 1, "leaderTerm": leader.term}),
        )
        .await;
    assert_eq!(
        (code, &answer["effect"]),
        (200, &json!("stoodDown")),
        "{answer}"
    );

    tracing::info!("phase 4: west is granted the lease, promotes its standby, raises the fence");
    let west_lease = west
        .writable("the west agent to promote and open its database")
        .await;
    assert!(west_lease > east_lease);
    assert_eq!(
        standby
            .query_one("SELECT pg_is_in_recovery()")
            .await
            .expect("query"),
        Some("f".into())
    );
    assert_eq!(
        count(&standby, "east-before").await,
        1,
        "replicated before the failover"
    );
    fenced_write(&standby, west_lease, "west-fenced")
        .await
        .expect("a fenced write under the west lease");
    match fenced_write(&standby, east_lease, "east-stale").await {
        Err(FencedWriteError::Stale(stale)) => {
            assert_eq!(stale.presented, FencingToken(east_lease));
            assert_eq!(stale.highest, FencingToken(west_lease));
        }
        other => panic!("east's old token was not refused: {other:?}"),
    }
    assert_eq!(count(&standby, "east-stale").await, 0);
    let status = east.status().await.expect("east status");
    assert_eq!(status["stoodDown"], json!(true), "{status}");
    assert_eq!(status["lease"]["state"], json!("waiting"), "{status}");

    west.stop().await;
    east.stop().await;
}

async fn sync_metrics(grpc: &str) -> Option<SyncMetricsResponse> {
    let mut coordinator = ReplicationCoordinatorClient::new(grpc_channel(grpc).ok()?);
    coordinator
        .get_sync_metrics(SyncMetricsRequest {
            source_region: EAST.into(),
            target_region: WEST.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_metrics_come_from_wal_positions_and_stale_actions_are_refused() {
    init_tracing();
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    dr_bootstrapped(&leader.http_addr, WAIT).await;
    let (status, link) = http_with_token(
        &leader.http_addr,
        Some(&operator_token()),
        "PUT",
        "/v1/replication/links",
        Some(json!({"sourceRegion": EAST, "targetRegion": WEST, "replicationMode": "ASYNC"})),
    )
    .await;
    assert_eq!(status, 200, "{link}");
    let east_token = cluster.issue(agent_identity(EAST)).await;
    let (primary, standby) = primary_and_standby().await;
    let state = tempfile::tempdir().expect("temp dir");
    let east = Agent::start(&cluster, EAST, &east_token, &primary, state.path()).await;
    east.writable("the east agent to open its database").await;
    let grpc = leader.grpc_addr.clone();

    tracing::info!("phase 1: writes flow; the link is reported active with throughput");
    for i in 0..50 {
        insert(&primary, &format!("warm-{i}")).await.expect("write");
    }
    eventually("throughput measured from WAL positions", WAIT, || async {
        let metrics = sync_metrics(&grpc).await?;
        (metrics.throughput_bytes_per_sec > 0.0).then_some(())
    })
    .await;

    tracing::info!("phase 2: the standby hangs while writes continue: bytes pending, lag grows");
    standby.pause().expect("pause the standby");
    let payload = "x".repeat(1_000);
    let client = primary.connect("postgres").await.expect("connect");
    for _ in 0..200 {
        client
            .execute(
                "INSERT INTO app_writes (note, payload) VALUES ('paused', $1)",
                &[&payload],
            )
            .await
            .expect("an async primary keeps writing");
    }
    let written_lsn = primary.current_lsn().await.expect("lsn");
    let metrics = eventually("pending bytes and lag while paused", WAIT, || async {
        let metrics = sync_metrics(&grpc).await?;
        (metrics.pending_bytes_count >= 200_000 && metrics.replication_lag_ms > 0)
            .then_some(metrics)
    })
    .await;
    tracing::info!(?metrics, %written_lsn, "paused standby");
    // The agent's own view is published at the end of its report round, which may still be
    // running when the arbiter already has the round's checkpoint: wait for it.
    let agent_view = eventually("the agent's view to show bytes pending", WAIT, || async {
        let view = east.status().await?;
        let pending = view["replication"]["links"][0]["pendingBytes"].as_u64()?;
        (pending > 0).then_some(view)
    })
    .await;
    let link = &agent_view["replication"]["links"][0];
    assert_eq!(link["targetRegion"], json!(WEST), "{agent_view}");

    tracing::info!("phase 3: resumed, the standby catches up: nothing pending");
    standby.resume().expect("resume the standby");
    standby.wait_replayed(&written_lsn).await.expect("replayed");
    eventually("nothing pending once replayed", WAIT, || async {
        let metrics = sync_metrics(&grpc).await?;
        (metrics.pending_bytes_count == 0).then_some(())
    })
    .await;

    tracing::info!("phase 4: actions are obeyed only if not older than the last obeyed");
    let action = |epoch: u64, term: u64| {
        json!({"action": "scale_standby", "failoverId": format!("fo-{epoch}"),
               "fromRegion": "eu-central-1", "toRegion": WEST, "weights": [],
               "reason": "test", "epoch": epoch, "leaderTerm": term})
    };
    let (code, _) = east.act(None, action(100, 3)).await;
    assert_eq!(code, 401, "an action without the webhook token");
    for path in ["/v1/agent/status", "/metrics"] {
        let (code, _) = east.get(path, None).await.expect("the agent answers");
        assert_eq!(code, 401, "GET {path} without the webhook token");
        let (code, _) = east
            .get(path, Some("wrong"))
            .await
            .expect("the agent answers");
        assert_eq!(code, 401, "GET {path} with a wrong token");
    }
    let (code, _) = east.get("/livez", None).await.expect("the agent answers");
    assert_eq!(code, 200, "liveness takes no credential");
    let (code, _) = east.act(Some("wrong"), action(100, 3)).await;
    assert_eq!(code, 401, "an action with a wrong token");
    let (code, answer) = east.act(Some(WEBHOOK_TOKEN), action(100, 3)).await;
    assert_eq!((code, &answer["obeyed"]), (200, &json!(true)), "{answer}");
    let (code, answer) = east.act(Some(WEBHOOK_TOKEN), action(99, 9)).await;
    assert_eq!(code, 409, "an older decision from a newer term: {answer}");
    let (code, answer) = east.act(Some(WEBHOOK_TOKEN), action(100, 2)).await;
    assert_eq!(
        code, 409,
        "the same decision from a deposed leader: {answer}"
    );
    assert_eq!(answer["lastObeyed"], json!({"epoch": 100, "leaderTerm": 3}));
    let (code, _) = east.act(Some(WEBHOOK_TOKEN), json!({"action": "x"})).await;
    assert_eq!(code, 400, "an action without epoch and term");

    tracing::info!("phase 5: the agent restarts and still refuses what it refused");
    east.stop().await;
    let east = Agent::start(&cluster, EAST, &east_token, &primary, state.path()).await;
    east.writable("the restarted east agent to hold the lease again")
        .await;
    let (code, answer) = east.act(Some(WEBHOOK_TOKEN), action(100, 2)).await;
    assert_eq!(code, 409, "forgotten across a restart: {answer}");
    let (code, answer) = east.act(Some(WEBHOOK_TOKEN), action(101, 1)).await;
    assert_eq!(
        (code, &answer["obeyed"]),
        (200, &json!(true)),
        "a newer decision: {answer}"
    );

    tracing::info!(
        "phase 6: no arbiter answers: read-only by the lease's deadline, on the agent's own clock"
    );
    insert(&primary, "before-isolation")
        .await
        .expect("writable while the lease holds");
    for id in 1..=3 {
        cluster.kill(id);
    }
    let isolated_at = Instant::now();
    eventually(
        "the isolated region's database to refuse writes",
        TTL + Duration::from_secs(2),
        || async {
            match insert(&primary, "isolated").await {
                Err(e) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => Some(()),
                _ => None,
            }
        },
    )
    .await;
    assert!(
        isolated_at.elapsed() < TTL + Duration::from_millis(500),
        "read-only {:?} after the arbiter went away (TTL {TTL:?})",
        isolated_at.elapsed()
    );
    // The agent makes the database read-only first and records why afterwards (once it has
    // ended the open sessions), so the event may trail the refusal seen above by a moment.
    east.await_event(
        "the agent's events to say why it stood down",
        "no renewal before the lease's deadline",
        Duration::from_secs(5),
    )
    .await;
    east.stop().await;
}

/// The real binary refuses, with exit 2 and a message naming the flag, what it cannot run
/// safely: no database, or an action webhook open to anyone off loopback.
#[test]
fn the_binary_refuses_a_missing_database_and_an_open_webhook_off_loopback() {
    let run = |args: &[&str]| {
        std::process::Command::new(binary())
            .arg("db-agent")
            .args(args)
            .env_remove("ARBITER_PG_DSN")
            .env_remove("ARBITER_DB_AGENT_WEBHOOK_TOKEN_FILE")
            .output()
            .expect("run arbiter db-agent")
    };
    let missing = run(&["--region", EAST]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--pg-dsn"));
    let open = run(&[
        "--region",
        EAST,
        "--pg-dsn",
        "host=/nonexistent dbname=app",
        "--listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(open.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&open.stderr).contains("--webhook-token-file"));
}

/// The promotion gate on the standby's side: with the link into us-west-2 last reported
/// inactive, its agent does not take over a lease that ran out, until a controller's shift of
/// traffic to us-west-2 (its own gate passed, or break-glass) calls it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_behind_the_promotion_gate_waits_for_the_controller() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    dr_bootstrapped(&leader.http_addr, WAIT).await;
    let east_token = cluster.issue(agent_identity(EAST)).await;
    let west_token = cluster.issue(agent_identity(WEST)).await;
    let (primary, standby) = primary_and_standby().await;
    let state = tempfile::tempdir().expect("temp dir");
    let east = Agent::start(
        &cluster,
        EAST,
        &east_token,
        &primary,
        &state.path().join("east"),
    )
    .await;
    east.writable("the east agent to open its database").await;
    let west = Agent::start(
        &cluster,
        WEST,
        &west_token,
        &standby,
        &state.path().join("west"),
    )
    .await;

    tracing::info!("phase 1: east's agent goes; its last word is that the link is down");
    east.stop().await;
    let (status, body) = http_with_token(
        &leader.http_addr,
        Some(&east_token),
        "POST",
        "/v1/replication/links/heartbeat",
        Some(
            json!({"sourceRegion": EAST, "targetRegion": WEST, "lastSentEpochId": 0,
                    "lastReceivedEpochId": 0, "replicationLagMs": 0, "isLinkActive": false}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let operator = ArbiterClient::connect(cluster.endpoints(), client_options())
        .await
        .expect("connect");
    let resource = ResourceId::new(RESOURCE);
    operator
        .revoke(&resource, "test: east is gone", "operator")
        .await
        .expect("revoke sent")
        .expect("revoke applied");

    tracing::info!("phase 2: the lease frees; the gated standby's agent leaves it alone");
    eventually("the revoked lease to free", WAIT, || async {
        let info = operator.get(&resource).await.ok()?;
        info.lease.is_none().then_some(())
    })
    .await;
    // Bounded look: several of the agent's retry rounds (300 ms) after the lease is free.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        let status = west.status().await.expect("west status");
        assert_eq!(status["lease"]["state"], json!("waiting"), "{status}");
        let reason = status["lease"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("promotion gate"), "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        standby
            .query_one("SELECT pg_is_in_recovery()::text")
            .await
            .expect("ask the standby"),
        Some("true".into()),
        "a gated standby was promoted"
    );

    tracing::info!("phase 3: the controller moves traffic to west: its agent takes over");
    let (code, answer) = west
        .act(
            Some(WEBHOOK_TOKEN),
            json!({"action": "shift_traffic", "fromRegion": EAST, "toRegion": WEST,
                   "weights": [[WEST, 100.0]], "reason": "break-glass failover",
                   "epoch": 1_000_000, "leaderTerm": leader.term}),
        )
        .await;
    assert_eq!((code, &answer["obeyed"]), (200, &json!(true)), "{answer}");
    west.writable("the called-in west agent to open its database")
        .await;
    west.stop().await;
}
