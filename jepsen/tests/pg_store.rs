//! The PostgreSQL fenced store against a real PostgreSQL 15 (Debian `postgresql`; .ci/run
//! installs it): what it believes comes only from the tokens writers present and the epochs
//! the arbiter reports, the database refuses below its floor, and the negative control
//! refuses nothing.

use arbiter_core::{FencingToken, HolderId};
use arbiter_jepsen::fenced_store::Fencing;
use arbiter_jepsen::pg_store::{PgFencedStore, PgWrite};
use serde_json::json;

async fn write(store: &PgFencedStore, token: u64) -> PgWrite {
    store
        .write(
            "db/a",
            &HolderId::new(format!("p{token}")),
            FencingToken(token),
            &json!(format!("w{token}")),
            token,
        )
        .await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn the_database_refuses_below_what_writers_and_the_arbiter_told_it() {
    runtime().block_on(async {
        let store = PgFencedStore::start(Fencing::Enforce)
            .await
            .expect("PostgreSQL 15 starts (Debian postgresql, run as root or its owner)");
        assert!(matches!(write(&store, 10).await, PgWrite::Accepted));
        // Token 20 was granted, but nobody told the database: 10 still gets in.
        assert!(matches!(write(&store, 10).await, PgWrite::Accepted));
        assert!(matches!(write(&store, 20).await, PgWrite::Accepted));
        match write(&store, 10).await {
            PgWrite::Stale(stale) => {
                assert_eq!(
                    (stale.presented, stale.highest),
                    (FencingToken(10), FencingToken(20))
                )
            }
            other => panic!("token 10 after 20: {other:?}"),
        }
        // The arbiter reports epoch 30 (a revoke): 20 is refused before 30 ever writes.
        store.observe_epoch("db/a", FencingToken(30)).await;
        assert!(matches!(write(&store, 20).await, PgWrite::Stale(_)));
        let accepted = store.accepted().await.expect("read back");
        let tokens: Vec<u64> = accepted.iter().map(|w| w.token.0).collect();
        assert_eq!(
            tokens,
            [10, 10, 20],
            "the table holds the accepted writes only"
        );
        assert_eq!(accepted[2].value, json!("w20"));
    });
}

#[test]
fn without_fencing_the_database_takes_every_token() {
    runtime().block_on(async {
        let store = PgFencedStore::start(Fencing::AcceptAll)
            .await
            .expect("PostgreSQL 15 starts");
        assert!(matches!(write(&store, 20).await, PgWrite::Accepted));
        assert!(matches!(write(&store, 10).await, PgWrite::Accepted));
        let tokens: Vec<u64> = store
            .accepted()
            .await
            .expect("read back")
            .iter()
            .map(|w| w.token.0)
            .collect();
        assert_eq!(tokens, [20, 10]);
    });
}
