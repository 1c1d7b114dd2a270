//! The PostgreSQL harness itself (`arbiter::pg_cluster`), on what drills rely on beyond the
//! fence: a synchronous standby holds the primary's commits, and SIGSTOP of the standby (every
//! process of it) stops it from confirming them until SIGCONT.

mod common;

use std::time::Duration;

use arbiter::pg_cluster::{PgOptions, PgServer};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_synchronous_standby_holds_commits_until_it_resumes() {
    init_tracing();
    // A standby's name is its cluster_name, which it reports as its application_name.
    let sync = PgOptions::default().setting("synchronous_standby_names", "\"us-west-2\"");
    let primary = PgServer::start_primary("us-east-1", sync)
        .await
        .expect("PostgreSQL 15 must be installed (Debian `postgresql`)");
    assert!(primary.pid().is_some());
    let standby = PgServer::start_standby(&primary, "us-west-2", PgOptions::default())
        .await
        .expect("start a standby");
    primary
        .wait_streaming("us-west-2")
        .await
        .expect("the standby streams");
    primary
        .wait_synchronous("us-west-2")
        .await
        .expect("the standby becomes the synchronous one");
    assert_eq!(
        standby
            .query_one("SELECT pg_is_in_recovery()")
            .await
            .expect("recovery")
            .as_deref(),
        Some("t")
    );

    tracing::info!("phase: a commit is acknowledged once the standby has it");
    let db = primary.connect("postgres").await.expect("connect");
    db.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await
        .expect("a synchronous commit");

    tracing::info!("phase: with the standby paused (SIGSTOP), a commit waits");
    standby.pause().expect("SIGSTOP the standby");
    let pending = tokio::spawn(async move {
        db.execute("INSERT INTO t VALUES (2)", &[])
            .await
            .map(|_| db)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pending.is_finished(),
        "a commit returned without its synchronous standby"
    );

    tracing::info!("phase: resumed, the standby confirms and the commit returns");
    standby.resume().expect("SIGCONT the standby");
    let db = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the commit returns once the standby is back")
        .expect("task")
        .expect("the insert commits");
    let count: i64 = db
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 2);
}
