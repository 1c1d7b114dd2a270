//! `arbiter pg install-fence`: puts the `arbiter_fence` schema into a PostgreSQL database (see
//! [`arbiter_client::pg_fence`]), idempotently: a second run changes nothing and says so.
//!
//! The connection string comes from `--dsn` or `ARBITER_PG_DSN`, libpq style
//! (`host=/var/run/postgresql dbname=app user=postgres`) or a `postgresql://` URL. No TLS:
//! connect over a unix socket or loopback. Exit codes as every command ([`super::exit`]):
//! 2 no or bad connection string, 5 the database did not answer, 4 it refused (a standby, a
//! newer fence version, missing privileges), 1 anything else.

use std::process::ExitCode;
use std::time::Duration;

use arbiter_client::pg_fence::{self, InstallError, Installed};
use clap::{Args, Subcommand};
use serde_json::json;

use super::exit::Failure;
use super::output::OutputArgs;

/// How long to wait for the database to answer the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Subcommand, Debug)]
pub enum PgCommand {
    /// Install the fencing schema (`arbiter_fence.check(resource, token)` and its floor table)
    /// into a database, or upgrade it; running it again changes nothing.
    InstallFence(InstallFenceArgs),
}

#[derive(Args, Debug)]
pub struct InstallFenceArgs {
    /// The database: `host=/run/postgresql dbname=app user=postgres` or
    /// `postgresql://user@host/db`. Install on the primary; standbys get it by replication.
    #[arg(long, env = "ARBITER_PG_DSN", hide_env_values = true)]
    dsn: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(command: PgCommand) -> anyhow::Result<ExitCode> {
    match command {
        PgCommand::InstallFence(args) => install_fence(args).await,
    }
}

async fn install_fence(args: InstallFenceArgs) -> anyhow::Result<ExitCode> {
    let dsn = args.dsn.as_deref().ok_or_else(|| {
        Failure::usage("no database given: pass --dsn CONNSTRING or set ARBITER_PG_DSN")
    })?;
    let mut config: tokio_postgres::Config = dsn
        .parse()
        .map_err(|e| Failure::usage(format!("--dsn does not parse as a connection string: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let database = config.get_dbname().unwrap_or("(default)").to_string();
    let (mut client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| Failure::unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
    let connection = tokio::spawn(connection);
    let installed = pg_fence::install(&mut client).await;
    drop(client);
    // The connection task ends once the client is gone; its own error, if any, is already in
    // the install's result.
    let _ = connection.await;
    let installed = installed.map_err(|e| match &e {
        InstallError::NewerInstalled { .. } | InstallError::InRecovery => {
            Failure::refused(e.to_string())
        }
        InstallError::Database(db) if db.as_db_error().is_some() => {
            Failure::refused(format!("refused by PostgreSQL: {e}"))
        }
        InstallError::Database(_) => Failure::unavailable(format!("PostgreSQL: {e}")),
    })?;
    let (text, changed, previous, version) = match installed {
        Installed::Installed { from, version } => (
            match from {
                Some(from) => format!(
                    "arbiter_fence upgraded from version {from} to {version} in database {database}"
                ),
                None => format!("arbiter_fence version {version} installed in database {database}"),
            },
            true,
            from,
            version,
        ),
        Installed::AlreadyCurrent { version } => (
            format!(
                "arbiter_fence version {version} already installed in database {database}; nothing changed"
            ),
            false,
            Some(version),
            version,
        ),
    };
    args.output.result(
        text,
        json!({
            "schema": "arbiter_fence",
            "database": database,
            "version": version,
            "previousVersion": previous,
            "changed": changed,
            "staleTokenSqlstate": pg_fence::STALE_TOKEN_SQLSTATE,
        }),
    );
    Ok(ExitCode::SUCCESS)
}
