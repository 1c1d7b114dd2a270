//! What the db-agent does to its PostgreSQL: promote, raise the fence, open and close it for
//! writes, and read its replication progress.
//!
//! Invariant: the agent never leaves its database writable without the lease. Closing is
//! `ALTER SYSTEM SET default_transaction_read_only = on` + reload (every session's next
//! transaction is read-only) and then the end of every session that has a transaction open
//! (it may have begun read-write before the reload); opening happens only after promotion and
//! after the fence holds the lease's token, so a write that slips past the read-only default
//! (`BEGIN READ WRITE`) still meets the fence.
//!
//! Every call opens a fresh connection with a connect timeout: the agent must act on a server
//! that was restarted or promoted under it, and must never wait forever on one that hangs.

use std::time::Duration;

use arbiter_client::pg_fence;
use arbiter_client::{FencingToken, ResourceId};
use tokio_postgres::{Client, Config, NoTls};

/// Bound on every connect and on every statement batch.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("--pg-dsn does not parse as a connection string: {0}")]
    BadDsn(tokio_postgres::Error),
    #[error("PostgreSQL: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    #[error("pg_promote did not finish: the server is still in recovery")]
    PromotionUnfinished,
    #[error("the fence refused token {presented}: the database has seen token {highest}")]
    StaleToken {
        presented: FencingToken,
        highest: FencingToken,
    },
    #[error("fencing token {0} does not fit a bigint")]
    TokenOutOfRange(FencingToken),
}

/// The database's role as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbRole {
    Primary,
    Standby,
}

/// One standby as its primary sees it (`pg_stat_replication`), positions in bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct StandbyProgress {
    pub application_name: String,
    pub sent_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    /// `greatest(replay_lag, write_lag)`; `None` when PostgreSQL has no recent sample.
    pub lag: Option<Duration>,
    /// `sync_state` is `sync` or `quorum`: commits wait for this standby's flush.
    pub synchronous: bool,
}

/// A snapshot of the database's replication position.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub role: DbRole,
    /// The primary's `pg_current_wal_lsn()`, or the standby's `pg_last_wal_replay_lsn()`.
    pub lsn: u64,
    /// On a primary: its standbys.
    pub standbys: Vec<StandbyProgress>,
}

/// A PostgreSQL server, reached as a superuser (`ALTER SYSTEM`, `pg_promote` and
/// `pg_terminate_backend` of other roles' sessions need one).
#[derive(Clone)]
pub struct Database {
    config: Config,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The DSN may hold a password: only its database name is shown.
        f.debug_struct("Database")
            .field("dbname", &self.config.get_dbname())
            .finish()
    }
}

impl Database {
    pub fn new(dsn: &str) -> Result<Database, DbError> {
        let mut config: Config = dsn.parse().map_err(DbError::BadDsn)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(STATEMENT_TIMEOUT);
        }
        config.application_name("arbiter-db-agent");
        Ok(Database { config })
    }

    async fn connect(&self) -> Result<Client, DbError> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            // Ends when the client is dropped, or with an error the client's calls report.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Runs `work` on a fresh connection, bounded by `limit`.
    async fn with_client<T, F>(&self, limit: Duration, work: F) -> Result<T, DbError>
    where
        F: for<'c> FnOnce(&'c mut Client) -> futures::future::BoxFuture<'c, Result<T, DbError>>,
    {
        tokio::time::timeout(limit, async {
            let mut client = self.connect().await?;
            work(&mut client).await
        })
        .await
        .map_err(|_| DbError::Timeout(limit))?
    }

    pub async fn role(&self) -> Result<DbRole, DbError> {
        self.with_client(STATEMENT_TIMEOUT, |client| {
            Box::pin(async move { role_of(client).await })
        })
        .await
    }

    /// Promotes a standby (`pg_promote(wait => true)`); a primary is left as it is. Returns
    /// whether it promoted.
    pub async fn promote_if_standby(&self) -> Result<bool, DbError> {
        // pg_promote waits up to 60 s by default; allow for it.
        self.with_client(STATEMENT_TIMEOUT + Duration::from_secs(60), |client| {
            Box::pin(async move {
                if role_of(client).await? == DbRole::Primary {
                    return Ok(false);
                }
                let promoted: bool = client
                    .query_one("SELECT pg_promote(wait => true)", &[])
                    .await?
                    .get(0);
                if !promoted || role_of(client).await? != DbRole::Primary {
                    return Err(DbError::PromotionUnfinished);
                }
                Ok(true)
            })
        })
        .await
    }

    /// `arbiter_fence.check(resource, token)` in a read-write transaction of its own: from
    /// its commit on, the database refuses every lower token for `resource`.
    pub async fn raise_fence(
        &self,
        resource: &ResourceId,
        token: FencingToken,
    ) -> Result<(), DbError> {
        let presented = i64::try_from(token.0).map_err(|_| DbError::TokenOutOfRange(token))?;
        let resource = resource.clone();
        self.with_client(STATEMENT_TIMEOUT, move |client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                // Explicitly read-write: the database is still read-only by default here.
                tx.batch_execute("SET TRANSACTION READ WRITE").await?;
                if let Err(e) = tx
                    .execute(
                        "SELECT arbiter_fence.check($1, $2)",
                        &[&resource.as_str(), &presented],
                    )
                    .await
                {
                    return Err(match pg_fence::stale_token(&e, token) {
                        Some(stale) => DbError::StaleToken {
                            presented: stale.presented,
                            highest: stale.highest,
                        },
                        None => e.into(),
                    });
                }
                tx.commit().await?;
                Ok(())
            })
        })
        .await
    }

    /// Lets new transactions write.
    pub async fn open_for_writes(&self) -> Result<(), DbError> {
        self.with_client(STATEMENT_TIMEOUT, |client| {
            Box::pin(async move {
                // Two statements, not one batch: a multi-statement query is one implicit
                // transaction, and ALTER SYSTEM refuses to run inside one.
                client
                    .batch_execute("ALTER SYSTEM SET default_transaction_read_only = off")
                    .await?;
                client.batch_execute("SELECT pg_reload_conf()").await?;
                Ok(())
            })
        })
        .await
    }

    /// Makes every new transaction read-only, then ends every other session with a
    /// transaction open. Returns the pids it terminated.
    ///
    /// Sessions with an open transaction are ended whether or not they have written yet
    /// (`backend_xid` is assigned only at the first write): a transaction begun before the
    /// reload may be read-write and write later. A standby is read-only by nature; the setting
    /// is still written (`ALTER SYSTEM` works in recovery), so it stays read-only when promoted
    /// until the agent opens it.
    pub async fn close_for_writes(&self) -> Result<Vec<i32>, DbError> {
        #[cfg(feature = "mutant-agent-stays-writable")]
        return Ok(Vec::new());
        self.with_client(STATEMENT_TIMEOUT, |client| {
            Box::pin(async move {
                client
                    .batch_execute("ALTER SYSTEM SET default_transaction_read_only = on")
                    .await?;
                client.batch_execute("SELECT pg_reload_conf()").await?;
                let rows = client
                    // Victims chosen first (MATERIALIZED): in one WHERE clause the planner
                    // may call pg_terminate_backend before the test that spares this session.
                    .query(
                        "WITH victims AS MATERIALIZED ( \
                           SELECT pid FROM pg_stat_activity \
                           WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
                             AND (backend_xid IS NOT NULL OR xact_start IS NOT NULL)) \
                         SELECT pid FROM victims WHERE pg_terminate_backend(pid)",
                        &[],
                    )
                    .await?;
                Ok(rows.iter().map(|row| row.get(0)).collect())
            })
        })
        .await
    }

    /// Whether new transactions are read-only by default (as the server's config says).
    pub async fn read_only_by_default(&self) -> Result<bool, DbError> {
        self.with_client(STATEMENT_TIMEOUT, |client| {
            Box::pin(async move {
                let setting: String = client
                    .query_one(
                        "SELECT setting FROM pg_settings \
                         WHERE name = 'default_transaction_read_only'",
                        &[],
                    )
                    .await?
                    .get(0);
                Ok(setting == "on")
            })
        })
        .await
    }

    /// The replication position now: LSNs as byte offsets (`lsn - '0/0'`).
    pub async fn progress(&self) -> Result<Progress, DbError> {
        self.with_client(STATEMENT_TIMEOUT, |client| {
            Box::pin(async move {
                let role = role_of(client).await?;
                let lsn_sql = match role {
                    DbRole::Primary => "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint",
                    DbRole::Standby => {
                        "SELECT coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0)"
                    }
                };
                let lsn: i64 = client.query_one(lsn_sql, &[]).await?.get(0);
                let standbys = match role {
                    DbRole::Standby => Vec::new(),
                    DbRole::Primary => client
                        .query(
                            "SELECT application_name, \
                                    (sent_lsn - '0/0'::pg_lsn)::bigint, \
                                    (replay_lsn - '0/0'::pg_lsn)::bigint, \
                                    (extract(epoch FROM greatest(replay_lag, write_lag)) \
                                       * 1000)::bigint, \
                                    sync_state IN ('sync', 'quorum') \
                             FROM pg_stat_replication",
                            &[],
                        )
                        .await?
                        .iter()
                        .map(|row| StandbyProgress {
                            application_name: row.get(0),
                            sent_lsn: row.get::<_, Option<i64>>(1).map(|v| v.max(0) as u64),
                            replay_lsn: row.get::<_, Option<i64>>(2).map(|v| v.max(0) as u64),
                            lag: row
                                .get::<_, Option<i64>>(3)
                                .map(|ms| Duration::from_millis(ms.max(0) as u64)),
                            synchronous: row.get::<_, Option<bool>>(4).unwrap_or(false),
                        })
                        .collect(),
                };
                Ok(Progress {
                    role,
                    lsn: lsn.max(0) as u64,
                    standbys,
                })
            })
        })
        .await
    }
}

/// The server's message and SQLSTATE where there is one (`tokio_postgres::Error` alone prints
/// only "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

async fn role_of(client: &Client) -> Result<DbRole, DbError> {
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .get(0);
    Ok(if in_recovery {
        DbRole::Standby
    } else {
        DbRole::Primary
    })
}

/// An LSN as PostgreSQL prints it (`16/B374D848`).
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lsns_print_as_postgresql_does() {
        assert_eq!(super::lsn_text(0x16_B374_D848), "16/B374D848");
        assert_eq!(super::lsn_text(0x300_0000), "0/3000000");
    }
}
