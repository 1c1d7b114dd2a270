//! Fencing inside PostgreSQL (feature `postgres`): the database itself refuses a write carrying
//! a token below the highest one it has accepted for the resource.
//!
//! [`install`] puts the `arbiter_fence` schema ([`INSTALL_SQL`], version [`FENCE_VERSION`]) into
//! a database; [`fenced_transaction`] runs a caller's writes in a transaction that first calls
//! `arbiter_fence.check(resource, token)` with the lease's token.
//!
//! Invariant: a fenced transaction commits only if, while it held the resource's floor row
//! lock, its token was at or above the floor — so once a transaction with token `t` committed,
//! no transaction with a token below `t` commits on that database or on any standby promoted
//! from it (the floor is a table, replicated with the rows it protects).
//!
//! The helpers use the session's isolation level (PostgreSQL's default, READ COMMITTED, under
//! which a check waiting on a newer holder's row lock re-reads the committed floor). Under
//! REPEATABLE READ or SERIALIZABLE the same race ends in SQLSTATE 40001 instead
//! ([`FencedWriteError::Database`]): retry, and the retry meets the new floor.

use tokio::time::Instant;

use futures::future::BoxFuture;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};

use crate::fenced_resource::StaleToken;
use crate::lease_keeper::{LeaseKeeper, LossCause, Validity};
use crate::types::{FencingToken, ResourceId};

/// The schema version [`INSTALL_SQL`] creates; recorded in `arbiter_fence.schema_version`.
pub const FENCE_VERSION: i32 = 2;

/// The fence's SQL: schema, floor table, `arbiter_fence.check`, grants, version row.
pub const INSTALL_SQL: &str = include_str!("pg_fence.sql");

/// The SQLSTATE `arbiter_fence.check` raises for a token below the floor (DETAIL `floor <n>`).
pub const STALE_TOKEN_SQLSTATE: &str = "AF001";

/// Serialises concurrent installs on one database (`pg_advisory_xact_lock` key: "arbiter" in
/// ASCII, so it is recognisable in `pg_locks`).
const INSTALL_LOCK_KEY: i64 = 0x0061_7262_6974_6572;

/// What [`install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The schema was created or upgraded from `from` (`None`: it was absent).
    Installed { from: Option<i32>, version: i32 },
    /// This version was already there; nothing was changed.
    AlreadyCurrent { version: i32 },
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the database has arbiter_fence version {installed}, newer than this binary's {supported}: upgrade arbiter")]
    NewerInstalled { installed: i32, supported: i32 },
    #[error("the database is a standby in recovery (read-only): install the fence on the primary; it replicates")]
    InRecovery,
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// Installs or upgrades the fence, idempotently: in one transaction, under an advisory lock so
/// two installs do not interleave, and only when the recorded version is older than
/// [`FENCE_VERSION`].
pub async fn install(client: &mut Client) -> Result<Installed, InstallError> {
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .get(0);
    if in_recovery {
        return Err(InstallError::InRecovery);
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK_KEY])
        .await?;
    let has_schema: bool = tx
        .query_one(
            "SELECT to_regclass('arbiter_fence.schema_version') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    let installed: Option<i32> = if has_schema {
        tx.query_opt("SELECT version FROM arbiter_fence.schema_version", &[])
            .await?
            .map(|row| row.get(0))
    } else {
        None
    };
    match installed {
        Some(version) if version == FENCE_VERSION => {
            tx.commit().await?;
            Ok(Installed::AlreadyCurrent { version })
        }
        Some(installed) if installed > FENCE_VERSION => Err(InstallError::NewerInstalled {
            installed,
            supported: FENCE_VERSION,
        }),
        from => {
            tx.batch_execute(INSTALL_SQL).await?;
            tx.commit().await?;
            Ok(Installed::Installed {
                from,
                version: FENCE_VERSION,
            })
        }
    }
}

/// Why a fenced transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum FencedWriteError<E> {
    /// The holder's lease is lost or past its deadline on the holder's own clock: nothing was
    /// sent (or, when found before commit, the transaction was rolled back).
    #[error("the lease on {resource} (token {token}) is not valid: {cause:?}")]
    LeaseLost {
        resource: ResourceId,
        token: FencingToken,
        cause: LossCause,
    },
    /// The database's floor is above the token: a newer holder has written. The transaction
    /// was rolled back; nothing it wrote is kept. Not retryable with this token.
    #[error("refused by the database: {0}")]
    Stale(StaleToken),
    /// The token does not fit PostgreSQL's `bigint`.
    #[error("fencing token {0} does not fit a bigint")]
    TokenOutOfRange(FencingToken),
    /// Begin, the check or commit failed. A failed commit leaves the outcome unknown.
    #[error("database: {0}")]
    Database(tokio_postgres::Error),
    /// The caller's writes failed; the transaction was rolled back.
    #[error("write: {0}")]
    Write(E),
}

impl<E> FencedWriteError<E> {
    /// The database refused the token (a newer lease holder has written).
    pub fn is_stale(&self) -> bool {
        matches!(self, FencedWriteError::Stale(_))
    }
}

/// Runs `write` in a transaction fenced by `lease`'s token: refuses at once when the lease is
/// already lost or past its deadline, then begin → `arbiter_fence.check` → `write` → (lease
/// still valid?) → commit.
///
/// ```ignore
/// fenced_transaction(&mut db, &keeper, |tx| Box::pin(async move {
///     tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1", &[]).await
/// })).await?;
/// ```
pub async fn fenced_transaction<T, E, F>(
    client: &mut Client,
    lease: &LeaseKeeper,
    write: F,
) -> Result<T, FencedWriteError<E>>
where
    F: for<'t> FnOnce(&'t Transaction<'t>) -> BoxFuture<'t, Result<T, E>>,
{
    let still_valid = || lease_valid(lease.resource(), lease.token(), lease.validity());
    still_valid()?;
    let tx = begin_fenced(client, lease.resource(), lease.token()).await?;
    let value = write(&tx).await.map_err(FencedWriteError::Write)?;
    // The database fence already orders us against any newer holder; this check keeps a holder
    // whose lease ran out during `write` from committing at all, as the lease promises.
    still_valid()?;
    tx.commit().await.map_err(FencedWriteError::Database)?;
    Ok(value)
}

/// [`fenced_transaction`] with an explicit resource and token, for holders that keep their
/// lease some other way. The caller is responsible for the lease still being valid.
pub async fn fenced_transaction_with_token<T, E, F>(
    client: &mut Client,
    resource: &ResourceId,
    token: FencingToken,
    write: F,
) -> Result<T, FencedWriteError<E>>
where
    F: for<'t> FnOnce(&'t Transaction<'t>) -> BoxFuture<'t, Result<T, E>>,
{
    let tx = begin_fenced(client, resource, token).await?;
    let value = write(&tx).await.map_err(FencedWriteError::Write)?;
    tx.commit().await.map_err(FencedWriteError::Database)?;
    Ok(value)
}

/// Begins a transaction and passes the fence check in it. Dropping the returned transaction
/// without commit rolls it back.
async fn begin_fenced<'c, E>(
    client: &'c mut Client,
    resource: &ResourceId,
    token: FencingToken,
) -> Result<Transaction<'c>, FencedWriteError<E>> {
    let presented = i64::try_from(token.0).map_err(|_| FencedWriteError::TokenOutOfRange(token))?;
    let tx = client
        .transaction()
        .await
        .map_err(FencedWriteError::Database)?;
    if let Err(e) = tx
        .execute(
            "SELECT arbiter_fence.check($1, $2)",
            &[&resource.as_str(), &presented],
        )
        .await
    {
        return Err(match stale_token(&e, token) {
            Some(stale) => FencedWriteError::Stale(stale),
            None => FencedWriteError::Database(e),
        });
    }
    Ok(tx)
}

fn lease_valid<E>(
    resource: &ResourceId,
    token: FencingToken,
    validity: Validity,
) -> Result<(), FencedWriteError<E>> {
    let cause = match validity {
        Validity::Valid { until, .. } if Instant::now() < until => return Ok(()),
        Validity::Valid { .. } => LossCause::DeadlinePassed,
        Validity::Lost { cause, .. } => cause,
    };
    Err(FencedWriteError::LeaseLost {
        resource: resource.clone(),
        token,
        cause,
    })
}

/// The [`StaleToken`] an `AF001` error from `arbiter_fence.check` carries, if `error` is one.
pub fn stale_token(error: &tokio_postgres::Error, presented: FencingToken) -> Option<StaleToken> {
    let db = error.as_db_error()?;
    if db.code() != &SqlState::from_code(STALE_TOKEN_SQLSTATE) {
        return None;
    }
    let floor = db.detail()?.strip_prefix("floor ")?.trim().parse().ok()?;
    Some(StaleToken {
        presented,
        highest: FencingToken(floor),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_script_records_the_version_it_claims() {
        assert!(INSTALL_SQL.contains(&format!("schema version {FENCE_VERSION}.")));
        assert!(INSTALL_SQL.contains(&format!("VALUES (true, {FENCE_VERSION})")));
        assert!(INSTALL_SQL.contains(&format!("ERRCODE = '{STALE_TOKEN_SQLSTATE}'")));
    }

    #[test]
    fn a_lease_past_its_deadline_is_refused_before_anything_is_sent() {
        let resource = ResourceId::new("db");
        let past = Validity::Valid {
            token: FencingToken(7),
            until: Instant::now(),
        };
        match lease_valid::<()>(&resource, FencingToken(7), past) {
            Err(FencedWriteError::LeaseLost { cause, .. }) => {
                assert_eq!(cause, LossCause::DeadlinePassed)
            }
            other => panic!("expected LeaseLost, got {other:?}"),
        }
        let lost = Validity::Lost {
            token: FencingToken(7),
            cause: LossCause::Released,
            at: Instant::now(),
        };
        assert!(matches!(
            lease_valid::<()>(&resource, FencingToken(7), lost),
            Err(FencedWriteError::LeaseLost {
                cause: LossCause::Released,
                ..
            })
        ));
    }
}
