//! Fencing inside PostgreSQL, against real PostgreSQL 15 servers (`arbiter::pg_cluster`):
//! `arbiter pg install-fence` (the real binary), `arbiter_fence.check` through the SDK's
//! fenced transaction, the floor across a restart, a streaming standby and its promotion,
//! concurrent writers (the holder's transactions side by side, a raise waiting for them), and
//! the SDK refusing a lease it knows is lost.
//!
//! Without PostgreSQL these tests fail (`PgInstall::locate` names what is missing): CI installs
//! Debian `postgresql`.

mod common;

use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arbiter::pg_cluster::{PgOptions, PgServer};
use arbiter_client::pg_fence::{
    self, fenced_transaction, fenced_transaction_with_token, FencedWriteError,
};
use arbiter_client::{
    ArbiterClient, ClientOptions, FencingToken, KeeperOptions, LeaseKeeper, LeaseSpec, LossCause,
    ResourceId, StaleToken,
};
use common::*;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio_postgres::{Client, Transaction};

const RESOURCE: &str = "db/payments";

/// `arbiter pg install-fence` with `args` (and `env`), as an operator would run it.
fn install_fence(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(binary());
    command
        .args(["pg", "install-fence"])
        .args(args)
        .env_remove("ARBITER_PG_DSN");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run arbiter pg install-fence")
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "install-fence failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

/// A primary with the fence installed (through the CLI) and an application table.
async fn fenced_primary(options: PgOptions) -> PgServer {
    let primary = PgServer::start_primary("us-east-1", options)
        .await
        .expect("PostgreSQL 15 must be installed (Debian `postgresql`)");
    let installed = json_of(&install_fence(
        &["--dsn", &primary.dsn("postgres"), "-o", "json"],
        &[],
    ));
    assert_eq!(installed["changed"], true, "{installed}");
    assert_eq!(installed["version"], pg_fence::FENCE_VERSION);
    primary
        .query(
            "CREATE TABLE app_writes (id bigserial PRIMARY KEY, token bigint NOT NULL, \
             note text NOT NULL, seq bigint)",
        )
        .await
        .expect("create the application table");
    primary
}

/// One fenced write of `note` with `token`, through the SDK.
async fn write(
    db: &mut Client,
    token: u64,
    note: &str,
) -> Result<u64, FencedWriteError<tokio_postgres::Error>> {
    let note = note.to_string();
    fenced_transaction_with_token(
        db,
        &ResourceId::new(RESOURCE),
        FencingToken(token),
        move |tx| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO app_writes (token, note) VALUES ($1, $2)",
                    &[&(token as i64), &note],
                )
                .await
            })
        },
    )
    .await
}

fn assert_stale<T: std::fmt::Debug>(
    result: Result<T, FencedWriteError<tokio_postgres::Error>>,
    presented: u64,
    floor: u64,
) {
    match result {
        Err(FencedWriteError::Stale(stale)) => assert_eq!(
            stale,
            StaleToken {
                presented: FencingToken(presented),
                highest: FencingToken(floor)
            }
        ),
        other => panic!("expected a stale-token refusal, got {other:?}"),
    }
}

async fn floor(server: &PgServer) -> Option<String> {
    server
        .query_one(&format!(
            "SELECT token::text FROM arbiter_fence.floor WHERE resource = '{RESOURCE}'"
        ))
        .await
        .expect("read the floor")
}

async fn count(server: &PgServer, filter: &str) -> u64 {
    server
        .query_one(&format!("SELECT count(*) FROM app_writes WHERE {filter}"))
        .await
        .expect("count rows")
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_fence_is_idempotent_and_says_what_is_missing() {
    init_tracing();
    let primary = fenced_primary(PgOptions::default()).await;
    let fingerprint = "SELECT string_agg(x, ',') FROM ( \
        SELECT xmin::text AS x FROM pg_proc WHERE proname = 'check' \
          AND pronamespace = 'arbiter_fence'::regnamespace \
        UNION ALL SELECT xmin::text FROM arbiter_fence.schema_version \
        UNION ALL SELECT xmin::text FROM pg_class WHERE relname = 'floor' \
          AND relnamespace = 'arbiter_fence'::regnamespace) t";
    let before = primary.query_one(fingerprint).await.expect("fingerprint");

    tracing::info!("phase: the second install, from ARBITER_PG_DSN, changes nothing");
    let again = json_of(&install_fence(
        &["-o", "json"],
        &[("ARBITER_PG_DSN", &primary.dsn("postgres"))],
    ));
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["previousVersion"], pg_fence::FENCE_VERSION);
    assert_eq!(again["staleTokenSqlstate"], "AF001");
    let after = primary.query_one(fingerprint).await.expect("fingerprint");
    assert_eq!(before, after, "a second install rewrote the fence");
    let table = install_fence(&["--dsn", &primary.dsn("postgres")], &[]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("nothing changed"));

    tracing::info!("phase: clear errors and exit codes");
    let missing = install_fence(&[], &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ARBITER_PG_DSN"));
    let garbage = install_fence(&["--dsn", "host=/x port=notaport"], &[]);
    assert_eq!(garbage.status.code(), Some(2), "{garbage:?}");
    let nobody = install_fence(
        &[
            "--dsn",
            &format!(
                "host={} dbname=postgres",
                primary.socket_dir().join("nowhere").display()
            ),
        ],
        &[],
    );
    assert_eq!(nobody.status.code(), Some(5), "{nobody:?}");
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("cannot connect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_tokens_are_refused_and_the_floor_survives_a_restart() {
    init_tracing();
    let mut primary = fenced_primary(PgOptions::default()).await;
    let mut db = primary.connect("postgres").await.expect("connect");

    tracing::info!("phase: a first token, then a higher one, are accepted and recorded");
    assert_eq!(write(&mut db, 5, "holder-a").await.expect("token 5"), 1);
    assert_eq!(floor(&primary).await.as_deref(), Some("5"));
    write(&mut db, 9, "holder-b").await.expect("token 9");
    assert_eq!(floor(&primary).await.as_deref(), Some("9"));
    write(&mut db, 9, "holder-b again")
        .await
        .expect("the same holder's token is allowed again");

    tracing::info!("phase: the old holder's token is refused and nothing it wrote commits");
    assert_stale(write(&mut db, 5, "stale").await, 5, 9);
    assert_eq!(count(&primary, "note = 'stale'").await, 0);
    assert_eq!(floor(&primary).await.as_deref(), Some("9"));
    // The connection is still usable after the refusal (the transaction was rolled back).
    write(&mut db, 9, "after the refusal")
        .await
        .expect("the connection survives a refusal");

    tracing::info!("phase: an application role may pass the check but not move the floor");
    primary
        .query(
            "CREATE ROLE app LOGIN; GRANT INSERT ON app_writes TO app; \
             GRANT USAGE ON SEQUENCE app_writes_id_seq TO app",
        )
        .await
        .expect("create the application role");
    let (mut app, connection) = tokio_postgres::connect(
        &primary.dsn("postgres").replace("user=postgres", "user=app"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect as app");
    tokio::spawn(connection);
    write(&mut app, 9, "as app")
        .await
        .expect("app passes the check");
    let lowered = app
        .execute("UPDATE arbiter_fence.floor SET token = 0", &[])
        .await
        .expect_err("app may not write the floor");
    assert_eq!(
        lowered.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    assert_stale(write(&mut app, 5, "stale as app").await, 5, 9);
    drop(app);

    tracing::info!("phase: restart PostgreSQL; the floor is still there");
    drop(db);
    primary.stop().await.expect("fast shutdown");
    primary.start().await.expect("restart");
    let mut db = primary.connect("postgres").await.expect("reconnect");
    assert_eq!(floor(&primary).await.as_deref(), Some("9"));
    assert_stale(write(&mut db, 5, "stale after restart").await, 5, 9);
    assert_eq!(count(&primary, "note LIKE 'stale%'").await, 0);
    write(&mut db, 12, "holder-c").await.expect("token 12");
    assert_eq!(floor(&primary).await.as_deref(), Some("12"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_replicates_and_holds_on_a_promoted_standby() {
    init_tracing();
    let mut primary = fenced_primary(PgOptions::default()).await;
    let standby = PgServer::start_standby(&primary, "us-west-2", PgOptions::default())
        .await
        .expect("start a standby");
    primary
        .wait_streaming("us-west-2")
        .await
        .expect("the standby streams");

    tracing::info!("phase: two holders write on the primary: tokens 10, then 20");
    let mut db = primary.connect("postgres").await.expect("connect");
    write(&mut db, 10, "old holder").await.expect("token 10");
    write(&mut db, 20, "new holder").await.expect("token 20");
    let lsn = primary.current_lsn().await.expect("lsn");
    standby.wait_replayed(&lsn).await.expect("replayed");
    assert_eq!(floor(&standby).await.as_deref(), Some("20"));
    let on_standby = install_fence(&["--dsn", &standby.dsn("postgres")], &[]);
    assert_eq!(on_standby.status.code(), Some(4), "{on_standby:?}");
    assert!(String::from_utf8_lossy(&on_standby.stderr).contains("standby"));

    tracing::info!("phase: the primary dies (SIGKILL); the standby is promoted");
    drop(db);
    primary.kill().await.expect("kill the primary");
    standby.promote().await.expect("promote");

    tracing::info!("phase: the old token is refused on the promoted standby");
    let mut db = standby.connect("postgres").await.expect("connect");
    assert_stale(write(&mut db, 10, "stale on the new primary").await, 10, 20);
    assert_eq!(count(&standby, "note LIKE 'stale%'").await, 0);
    write(&mut db, 20, "holder 20 goes on")
        .await
        .expect("token 20");
    write(&mut db, 30, "next holder").await.expect("token 30");
    assert_eq!(floor(&standby).await.as_deref(), Some("30"));
    assert_eq!(count(&standby, "true").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_commit_a_lower_token_after_a_higher_one() {
    init_tracing();
    // Commit timestamps give the real commit order of the rows to check.
    let primary =
        fenced_primary(PgOptions::default().setting("track_commit_timestamp", "on")).await;
    primary
        .query("CREATE SEQUENCE commit_order")
        .await
        .expect("sequence");
    const WRITES: u64 = 40;
    let primary = Arc::new(primary);
    let old_committed = Arc::new(AtomicU64::new(0));

    let writer = |token: u64, after_old: u64| {
        let primary = primary.clone();
        let old_committed = old_committed.clone();
        tokio::spawn(async move {
            let mut db = primary.connect("postgres").await.expect("connect");
            // The newer holder starts once the older one has committed a few writes, so the
            // two interleave.
            let start = std::time::Instant::now();
            while old_committed.load(Ordering::SeqCst) < after_old {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "writer {token} never started"
                );
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let (mut committed, mut stale) = (0u64, 0u64);
            for i in 0..WRITES {
                let result = fenced_transaction_with_token(
                    &mut db,
                    &ResourceId::new(RESOURCE),
                    FencingToken(token),
                    move |tx| {
                        Box::pin(async move {
                            tx.execute(
                                "INSERT INTO app_writes (token, note, seq) \
                                 VALUES ($1, $2, nextval('commit_order'))",
                                &[&(token as i64), &format!("{token}-{i}")],
                            )
                            .await
                        })
                    },
                )
                .await;
                match result {
                    Ok(_) => {
                        committed += 1;
                        if token == 100 {
                            old_committed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(FencedWriteError::Stale(s)) => {
                        assert_eq!(s.presented, FencingToken(token));
                        assert_eq!(s.highest, FencingToken(200));
                        stale += 1;
                    }
                    Err(e) => panic!("writer {token}: {e}"),
                }
            }
            (committed, stale)
        })
    };
    let old = writer(100, 0);
    let new = writer(200, 5);
    let (old_ok, old_stale) = old.await.expect("old writer");
    let (new_ok, new_stale) = new.await.expect("new writer");
    tracing::info!(old_ok, old_stale, new_ok, new_stale, "writers done");
    assert_eq!(new_ok, WRITES, "the newest holder is never refused");
    assert_eq!(new_stale, 0);
    assert_eq!(old_ok + old_stale, WRITES);
    assert!(
        old_ok >= 5,
        "the old holder wrote before the new one started"
    );

    // In commit order, no token-100 row follows a token-200 row.
    let order = primary
        .query(
            "SELECT token::text FROM app_writes \
             ORDER BY pg_xact_commit_timestamp(xmin), seq",
        )
        .await
        .expect("rows in commit order");
    let tokens: Vec<u64> = order
        .iter()
        .map(|t| t.as_deref().and_then(|t| t.parse().ok()).expect("token"))
        .collect();
    assert_eq!(tokens.len() as u64, old_ok + new_ok);
    let first_new = tokens
        .iter()
        .position(|t| *t == 200)
        .expect("token 200 rows");
    assert!(
        tokens[first_new..].iter().all(|t| *t == 200),
        "a lower token committed after a higher one: {tokens:?}"
    );
    // The same by the sequence each transaction drew while it held the floor's row lock.
    let by_seq = primary
        .query("SELECT token::text FROM app_writes ORDER BY seq")
        .await
        .expect("rows by seq");
    assert_eq!(by_seq, order);
}

/// Client sessions waiting for a lock.
async fn lock_waiters(server: &PgServer) -> u64 {
    server
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND backend_type = 'client backend'",
        )
        .await
        .expect("pg_stat_activity")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Opens a transaction that has passed the check for `token` and written one row.
async fn open_fenced(server: &PgServer, token: u64) -> Client {
    let client = server.connect("postgres").await.expect("connect");
    client
        .batch_execute(&format!(
            "BEGIN; SELECT arbiter_fence.check('{RESOURCE}', {token}); \
             INSERT INTO app_writes (token, note) VALUES ({token}, 'open')"
        ))
        .await
        .expect("an open fenced transaction");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holders_transactions_run_side_by_side_and_a_raise_waits_for_them() {
    init_tracing();
    let primary = Arc::new(fenced_primary(PgOptions::default()).await);
    // The floor row exists (a resource's very first check inserts it, and that insert is
    // waited for like any uncommitted row).
    let mut db = primary.connect("postgres").await.expect("connect");
    write(&mut db, 5, "first").await.expect("the first write");
    let first = open_fenced(&primary, 5).await;
    // The same token again while the first is open: not held up (version 1 was).
    let second = tokio::time::timeout(Duration::from_secs(10), open_fenced(&primary, 5))
        .await
        .expect("a second transaction of the same holder waited for the first");
    second.batch_execute("COMMIT").await.expect("commit");

    // A newer token waits for the open old-token transaction...
    let raise = {
        let primary = primary.clone();
        tokio::spawn(async move {
            let mut db = primary.connect("postgres").await.expect("connect");
            write(&mut db, 6, "raise").await
        })
    };
    let started = std::time::Instant::now();
    while lock_waiters(&primary).await == 0 {
        assert!(
            !raise.is_finished(),
            "the raise did not wait for the open transaction"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the raise never waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...which still commits: it checked before the floor moved.
    first
        .batch_execute("COMMIT")
        .await
        .expect("the old holder's open write commits");
    tokio::time::timeout(Duration::from_secs(10), raise)
        .await
        .expect("the raise finished once the old transaction ended")
        .expect("task")
        .expect("the raise");
    assert_eq!(floor(&primary).await.as_deref(), Some("6"));
    assert_stale(write(&mut db, 5, "late").await, 5, 6);

    // Two transactions raising to the same token: the second waits, then passes as an equal.
    let raiser = open_fenced(&primary, 7).await;
    let follower = {
        let primary = primary.clone();
        tokio::spawn(async move {
            let mut db = primary.connect("postgres").await.expect("connect");
            write(&mut db, 7, "follower").await
        })
    };
    let started = std::time::Instant::now();
    while lock_waiters(&primary).await == 0 {
        assert!(!follower.is_finished(), "the follower did not wait");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the follower never waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    raiser.batch_execute("COMMIT").await.expect("commit");
    tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("the follower finished")
        .expect("task")
        .expect("an equal token passes once the floor is raised");
    assert_eq!(
        count(&primary, "token = 5").await,
        3,
        "every write of token 5 but the late one"
    );
    assert_eq!(count(&primary, "token = 7").await, 2);
}

/// A fenced write of a row noted `note`.
fn insert(
    note: &'static str,
) -> impl for<'t> FnOnce(&'t Transaction<'t>) -> BoxFuture<'t, Result<u64, tokio_postgres::Error>> {
    move |tx| {
        Box::pin(async move {
            tx.execute(
                "INSERT INTO app_writes (token, note) VALUES (0, $1)",
                &[&note],
            )
            .await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_refuses_a_lease_it_knows_is_lost_and_a_newer_holder_fences_the_old() {
    init_tracing();
    let primary = fenced_primary(PgOptions::default()).await;
    let mut db = primary.connect("postgres").await.expect("connect");
    let cluster = TestCluster::start(3, &[]).await;
    let options = ClientOptions {
        attempt_timeout: Duration::from_secs(1),
        call_deadline: Duration::from_secs(5),
        ..client_options()
    };
    let client = ArbiterClient::connect(cluster.endpoints(), options)
        .await
        .expect("valid endpoints");
    let resource = ResourceId::new(RESOURCE);
    let ttl = Duration::from_secs(3);

    tracing::info!("phase: the holder writes under its lease");
    let spec = LeaseSpec::new(RESOURCE, "proxy-east", ttl);
    let keeper = LeaseKeeper::acquire(&client, &spec, KeeperOptions::default())
        .await
        .expect("cluster reachable")
        .expect("free resource");
    let old_token = keeper.token();
    fenced_transaction(&mut db, &keeper, insert("under the lease"))
        .await
        .expect("a valid lease writes");
    assert_eq!(
        floor(&primary).await,
        Some(old_token.0.to_string()),
        "the floor is the lease's token"
    );

    tracing::info!("phase: the lease is revoked; the SDK refuses before sending anything");
    client
        .revoke(&resource, "pg fence test", "operator")
        .await
        .expect("cluster reachable")
        .expect("a held lease can be revoked");
    tokio::time::timeout(ttl, keeper.lost())
        .await
        .expect("the keeper learns of the revoke within its TTL");
    match fenced_transaction(&mut db, &keeper, insert("after the revoke")).await {
        Err(FencedWriteError::LeaseLost { token, cause, .. }) => {
            assert_eq!(token, old_token);
            assert!(matches!(cause, LossCause::Refused(_)), "{cause:?}");
        }
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert_eq!(count(&primary, "note = 'after the revoke'").await, 0);

    tracing::info!("phase: a newer holder writes; the old token is refused by the database");
    // A revoked lease blocks new grants until its holder's deadline has passed.
    let west = LeaseSpec::new(RESOURCE, "proxy-west", ttl);
    let deadline = tokio::time::Instant::now() + ttl * 2 + Duration::from_secs(5);
    let new_keeper = loop {
        match LeaseKeeper::acquire(&client, &west, KeeperOptions::default()).await {
            Ok(Ok(keeper)) => break keeper,
            Ok(Err(refusal)) => assert!(refusal.is_retryable(), "{refusal}"),
            Err(error) => assert!(error.is_retryable(), "{error}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no grant after the revoked lease's deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let new_token = new_keeper.token();
    assert!(new_token > old_token);
    fenced_transaction_with_token(&mut db, &resource, new_token, insert("new holder"))
        .await
        .expect("the new holder writes");
    let stale =
        fenced_transaction_with_token(&mut db, &resource, old_token, insert("old token")).await;
    assert_stale(stale, old_token.0, new_token.0);
    assert_eq!(count(&primary, "note = 'old token'").await, 0);
}
