//! The fenced resources as a real database: a PostgreSQL 15 server of the run's own, with the
//! arbiter's fence installed (`arbiter_fence`, as `arbiter pg install-fence` installs it).
//!
//! Every lease-holder write is one transaction that passes `arbiter_fence.check(resource,
//! token)` and inserts a row; the database refuses a token below its floor (SQLSTATE `AF001`).
//! Like the in-process store it believes only writers and the arbiter: the floor rises with
//! each checked token and with the epochs the epoch reader passes on. The accepted writes are
//! what the table holds at the end, read back from the database. Under `--unsafe-no-fencing`
//! writes skip the check (the negative control).

use arbiter::pg_cluster::{PgError, PgOptions, PgServer};
use arbiter_client::pg_fence::{self, FencedWriteError};
use arbiter_client::{ResourceId, StaleToken};
use arbiter_core::{FencingToken, HolderId};
use futures::FutureExt;
use serde_json::Value;
use tokio_postgres::Client;

use crate::fenced_store::{AcceptedWrite, Fencing};

const DATABASE: &str = "postgres";

/// What became of one write.
#[derive(Debug)]
pub enum PgWrite {
    Accepted,
    Stale(StaleToken),
    /// The outcome is unknown (the connection or commit failed).
    Unknown(String),
}

/// One write as the table keeps it.
struct Row {
    resource: String,
    holder: String,
    token: i64,
    value: String,
    time_ns: i64,
}

impl Row {
    async fn insert(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        tx.execute(
            "INSERT INTO jepsen_writes (resource, holder, token, value, time_ns) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &self.resource,
                &self.holder,
                &self.token,
                &self.value,
                &self.time_ns,
            ],
        )
        .await
    }
}

pub struct PgFencedStore {
    server: PgServer,
    fencing: Fencing,
}

impl PgFencedStore {
    /// Starts the server (as the unprivileged `postgres` user, on a unix socket only),
    /// installs the fence and the writes table.
    pub async fn start(fencing: Fencing) -> Result<PgFencedStore, PgError> {
        let server = PgServer::start_primary("jepsen-fence", PgOptions::default()).await?;
        let store = PgFencedStore { server, fencing };
        let mut client = store.server.connect(DATABASE).await?;
        pg_fence::install(&mut client)
            .await
            .map_err(|e| PgError::Missing(format!("cannot install the fence: {e}")))?;
        client
            .batch_execute(
                "CREATE TABLE jepsen_writes (
                     id bigserial PRIMARY KEY,
                     resource text NOT NULL,
                     holder text NOT NULL,
                     token bigint NOT NULL,
                     value text NOT NULL,
                     time_ns bigint NOT NULL
                 )",
            )
            .await
            .map_err(|e| PgError::Missing(format!("cannot create the writes table: {e}")))?;
        Ok(store)
    }

    async fn connect(&self) -> Result<Client, String> {
        self.server
            .connect(DATABASE)
            .await
            .map_err(|e| format!("connect: {e}"))
    }

    /// One write in a transaction of its own: fenced (unless the control is on), then insert.
    pub async fn write(
        &self,
        resource: &str,
        holder: &HolderId,
        token: FencingToken,
        value: &Value,
        time_ns: u64,
    ) -> PgWrite {
        let mut client = match self.connect().await {
            Ok(client) => client,
            // Nothing was sent: the write certainly did not happen, but say so plainly.
            Err(e) => return PgWrite::Unknown(e),
        };
        let row = Row {
            resource: resource.to_string(),
            holder: holder.to_string(),
            token: i64::try_from(token.0).unwrap_or(i64::MAX),
            value: value.to_string(),
            time_ns: i64::try_from(time_ns).unwrap_or(i64::MAX),
        };
        let result = match self.fencing {
            Fencing::Enforce => pg_fence::fenced_transaction_with_token(
                &mut client,
                &ResourceId::new(resource),
                token,
                move |tx| async move { row.insert(tx).await }.boxed(),
            )
            .await
            .map(drop),
            Fencing::AcceptAll => {
                async {
                    let tx = client
                        .transaction()
                        .await
                        .map_err(FencedWriteError::Database)?;
                    row.insert(&tx).await.map_err(FencedWriteError::Write)?;
                    tx.commit().await.map_err(FencedWriteError::Database)
                }
                .await
            }
        };
        match result {
            Ok(_) => PgWrite::Accepted,
            Err(FencedWriteError::Stale(stale)) => PgWrite::Stale(stale),
            Err(e) => PgWrite::Unknown(e.to_string()),
        }
    }

    /// The arbiter reported `epoch` for `resource`: raise the database's floor to it, as a
    /// fence refresher would (an epoch at or below the floor changes nothing).
    pub async fn observe_epoch(&self, resource: &str, epoch: FencingToken) {
        if self.fencing == Fencing::AcceptAll {
            return;
        }
        let Ok(mut client) = self.connect().await else {
            return;
        };
        let raised = pg_fence::fenced_transaction_with_token(
            &mut client,
            &ResourceId::new(resource),
            epoch,
            |_| async { Ok::<(), tokio_postgres::Error>(()) }.boxed(),
        )
        .await;
        if let Err(e) = raised {
            if !e.is_stale() {
                tracing::debug!(resource, %epoch, error = %e, "epoch not passed to the database");
            }
        }
    }

    /// Every write the database holds, in commit order of their ids.
    pub async fn accepted(&self) -> Result<Vec<AcceptedWrite>, String> {
        let client = self.connect().await?;
        let rows = client
            .query(
                "SELECT resource, holder, token, value, time_ns FROM jepsen_writes ORDER BY id",
                &[],
            )
            .await
            .map_err(|e| format!("read the writes: {e}"))?;
        Ok(rows
            .iter()
            .map(|row| AcceptedWrite {
                resource: row.get(0),
                holder: HolderId::new(row.get::<_, String>(1)),
                token: FencingToken(row.get::<_, i64>(2) as u64),
                value: serde_json::from_str(row.get::<_, &str>(3)).unwrap_or(Value::Null),
                time_ns: row.get::<_, i64>(4) as u64,
            })
            .collect())
    }
}
