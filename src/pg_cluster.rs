//! Local PostgreSQL servers for tests, the jepsen harness and drills: a primary from `initdb`, a
//! streaming standby from `pg_basebackup -R`, promotion, and the faults a drill needs (SIGKILL,
//! SIGSTOP of the postmaster).
//!
//! Invariants:
//! - No TCP: every server listens on a unix socket in its own temp dir only
//!   (`listen_addresses=''`), so no port is ever picked or shared. A standby streams from its
//!   primary over that socket (`primary_conninfo` with `host=<socket dir>`).
//! - PostgreSQL refuses to run as root: when this process is root, every PostgreSQL program runs
//!   as the unprivileged `postgres` user (setgid/setuid in the child before exec) on a temp dir
//!   owned by that user. The postmaster is our direct child, so its pid is the one we signal;
//!   the rest of the server (backends, walsender, walreceiver, ...) are its children, each in
//!   a session of its own (PostgreSQL calls setsid), found through `/proc` when the whole
//!   server is to be stopped or killed.
//! - A [`PgServer`] owns its postmaster and temp dir: dropping it stops that postmaster
//!   (immediate shutdown, SIGKILL after a deadline), reaps it and removes the dir.
//! - Every wait polls a condition until a deadline; none sleeps and hopes.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// The directory of PostgreSQL's programs when `ARBITER_PG_BIN` is unset: Debian's
/// `postgresql` 15.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Only names the socket file (`.s.PGSQL.5432`): each server has a socket dir of its own.
pub const SOCKET_PORT: u16 = 5432;
/// The superuser `initdb` creates.
pub const SUPERUSER: &str = "postgres";
/// How long a server may take to accept connections, a standby to stream, a promotion.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long a stop may take before SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// Poll period of every wait.
const POLL: Duration = Duration::from_millis(25);

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL not found: {0} (install Debian `postgresql` 15, or set ARBITER_PG_BIN)")]
    Missing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed ({status}): {output}")]
    Command {
        what: String,
        status: String,
        output: String,
    },
    #[error("{what}: not done after {after:?}; server log tail:\n{log_tail}")]
    Timeout {
        what: String,
        after: Duration,
        log_tail: String,
    },
    #[error("{name}: the postmaster exited ({status}); server log tail:\n{log_tail}")]
    Exited {
        name: String,
        status: String,
        log_tail: String,
    },
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

/// Where PostgreSQL's programs are, and whom they run as.
#[derive(Debug, Clone)]
pub struct PgInstall {
    bin: PathBuf,
    run_as: Option<(libc::uid_t, libc::gid_t)>,
}

impl PgInstall {
    /// `ARBITER_PG_BIN` or [`DEFAULT_PG_BIN`]; an error (never a silent skip) when `postgres`,
    /// `initdb`, `pg_basebackup` or `pg_isready` is missing, or when running as root without a
    /// `postgres` user.
    pub fn locate() -> Result<PgInstall, PgError> {
        let bin = std::env::var_os("ARBITER_PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN));
        for program in ["postgres", "initdb", "pg_basebackup", "pg_isready"] {
            if !bin.join(program).is_file() {
                return Err(PgError::Missing(format!(
                    "{} does not exist",
                    bin.join(program).display()
                )));
            }
        }
        // SAFETY: geteuid has no preconditions.
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user()?)
        } else {
            None
        };
        Ok(PgInstall { bin, run_as })
    }

    /// A command for one of PostgreSQL's programs, run as the unprivileged user when we are
    /// root.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.env_remove("PGDATA").env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            // SAFETY: between fork and exec only async-signal-safe calls (setgroups, setgid,
            // setuid), on values computed before the fork.
            unsafe {
                command.pre_exec(move || {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command
    }

    /// Makes `path` belong to the user PostgreSQL runs as.
    fn hand_over(&self, path: &Path) -> Result<(), PgError> {
        let Some((uid, gid)) = self.run_as else {
            return Ok(());
        };
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(io(format!("chown {}", path.display())))
    }
}

fn postgres_user() -> Result<(libc::uid_t, libc::gid_t), PgError> {
    let name = CString::new(SUPERUSER).map_err(|_| PgError::Missing("user name".into()))?;
    // SAFETY: getpwnam returns null or a pointer to a static record we read at once, before any
    // other passwd call on this thread.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(PgError::Missing(
            "running as root, and there is no `postgres` user to run PostgreSQL as".into(),
        ));
    }
    // SAFETY: non-null, see above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok((uid, gid))
}

/// Extra `-c name=value` settings for one server (e.g. `synchronous_standby_names`).
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    pub settings: Vec<(String, String)>,
}

impl PgOptions {
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// One PostgreSQL server (primary or standby) in a temp dir of its own.
#[derive(Debug)]
pub struct PgServer {
    name: String,
    install: PgInstall,
    root: PathBuf,
    options: PgOptions,
    postmaster: Option<Child>,
}

impl PgServer {
    /// `initdb` (trust authentication on the socket, superuser `postgres`) and start a primary
    /// named `name` (its `cluster_name`, which a standby reports as its `application_name`).
    pub async fn start_primary(name: &str, options: PgOptions) -> Result<PgServer, PgError> {
        let install = PgInstall::locate()?;
        let mut server = PgServer::create(name, install, options)?;
        let output = server
            .install
            .command("initdb")
            .arg("-D")
            .arg(server.data_dir())
            .args(["-U", SUPERUSER, "-A", "trust", "--no-locale", "-E", "UTF8"])
            // No fsync of the fresh cluster: a test's data dir does not outlive the machine.
            .args(["--no-sync", "--no-instructions"])
            .output()
            .map_err(io("run initdb"))?;
        check("initdb", &output)?;
        server.start().await?;
        Ok(server)
    }

    /// A streaming standby of `primary`: `pg_basebackup -R` over the primary's socket, then
    /// start. Returns once it accepts connections; see [`PgServer::wait_streaming`].
    pub async fn start_standby(
        primary: &PgServer,
        name: &str,
        options: PgOptions,
    ) -> Result<PgServer, PgError> {
        let mut server = PgServer::create(name, primary.install.clone(), options)?;
        let output = server
            .install
            .command("pg_basebackup")
            .arg("-h")
            .arg(primary.socket_dir())
            .arg("-p")
            .arg(SOCKET_PORT.to_string())
            .args(["-U", SUPERUSER, "-D"])
            .arg(server.data_dir())
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .output()
            .map_err(io("run pg_basebackup"))?;
        check("pg_basebackup", &output)?;
        server.start().await?;
        Ok(server)
    }

    fn create(name: &str, install: PgInstall, options: PgOptions) -> Result<PgServer, PgError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "arbiter-pg-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            name
        ));
        std::fs::create_dir(&root).map_err(io(format!("create {}", root.display())))?;
        let server = PgServer {
            name: name.to_string(),
            install,
            root,
            options,
            postmaster: None,
        };
        let sockets = server.socket_dir();
        std::fs::create_dir(&sockets).map_err(io(format!("create {}", sockets.display())))?;
        server.install.hand_over(&server.root)?;
        server.install.hand_over(&sockets)?;
        Ok(server)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The directory holding the server's unix socket: the `host` of a connection string.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// A libpq / tokio-postgres connection string for `dbname` over the unix socket.
    pub fn dsn(&self, dbname: &str) -> String {
        format!(
            "host={} port={SOCKET_PORT} user={SUPERUSER} dbname={dbname}",
            self.socket_dir().display()
        )
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// Starts the postmaster on the existing data dir (after [`PgServer::stop`]) and waits
    /// until it accepts connections.
    pub async fn start(&mut self) -> Result<(), PgError> {
        if self.postmaster.is_some() {
            return Ok(());
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io("open the server log"))?;
        let log_err = log.try_clone().map_err(io("open the server log"))?;
        let mut command = self.install.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-k")
            .arg(self.socket_dir())
            .args(["-p", &SOCKET_PORT.to_string()])
            .args(["-c", "listen_addresses="])
            .args(["-c", &format!("cluster_name={}", self.name)]);
        for (name, value) in &self.options.settings {
            command.args(["-c", &format!("{name}={value}")]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io("start postgres"))?;
        self.postmaster = Some(child);
        self.wait_accepting().await
    }

    /// Polls `pg_isready` until the server accepts connections, failing at once if the
    /// postmaster exits.
    async fn wait_accepting(&mut self) -> Result<(), PgError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.postmaster.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.postmaster = None;
                    return Err(PgError::Exited {
                        name: self.name.clone(),
                        status: status.to_string(),
                        log_tail: self.log_tail(),
                    });
                }
            }
            let ready = Command::new(self.install.bin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(self.socket_dir())
                .args(["-p", &SOCKET_PORT.to_string(), "-U", SUPERUSER])
                .status()
                .map_err(io("run pg_isready"))?;
            if ready.success() {
                return Ok(());
            }
            self.until(started, STARTUP_DEADLINE, "accept connections")?;
            tokio::time::sleep(POLL).await;
        }
    }

    fn until(&self, started: Instant, deadline: Duration, what: &str) -> Result<(), PgError> {
        if started.elapsed() >= deadline {
            return Err(PgError::Timeout {
                what: format!("{}: {what}", self.name),
                after: deadline,
                log_tail: self.log_tail(),
            });
        }
        Ok(())
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A new connection to `dbname` (its connection task runs on the current runtime).
    pub async fn connect(&self, dbname: &str) -> Result<Client, PgError> {
        let (client, connection) = tokio_postgres::connect(&self.dsn(dbname), NoTls).await?;
        tokio::spawn(async move {
            // The connection ends with an error when the server is killed; the client's next
            // call reports it.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Runs `sql` on a fresh connection to `postgres` and returns the first column of each row
    /// as text (NULL as `None`).
    pub async fn query(&self, sql: &str) -> Result<Vec<Option<String>>, PgError> {
        let client = self.connect(SUPERUSER).await?;
        let rows = client.simple_query(sql).await?;
        Ok(rows
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).map(str::to_string))
                }
                _ => None,
            })
            .collect())
    }

    /// The first column of the first row of `sql`.
    pub async fn query_one(&self, sql: &str) -> Result<Option<String>, PgError> {
        Ok(self.query(sql).await?.into_iter().next().flatten())
    }

    /// Polls `sql` (a single boolean) until it is true.
    pub async fn wait_until(&self, what: &str, sql: &str) -> Result<(), PgError> {
        let started = Instant::now();
        loop {
            // A server still starting up or shutting down refuses connections: keep polling.
            if let Ok(Some(value)) = self.query_one(sql).await {
                if value == "t" {
                    return Ok(());
                }
            }
            self.until(started, STARTUP_DEADLINE, what)?;
            tokio::time::sleep(POLL).await;
        }
    }

    /// On a primary: waits until the standby named `standby` streams from it.
    pub async fn wait_streaming(&self, standby: &str) -> Result<(), PgError> {
        self.wait_standby(standby, "state = 'streaming'", "streaming")
            .await
    }

    /// On a primary with `synchronous_standby_names`: waits until the standby named `standby`
    /// is its synchronous standby (which takes its first flush report after streaming starts).
    pub async fn wait_synchronous(&self, standby: &str) -> Result<(), PgError> {
        self.wait_standby(standby, "sync_state = 'sync'", "synchronous")
            .await
    }

    /// Waits until `pg_stat_replication` has a row for `standby` meeting `condition`.
    async fn wait_standby(
        &self,
        standby: &str,
        condition: &str,
        what: &str,
    ) -> Result<(), PgError> {
        let sql = format!(
            "SELECT count(*) > 0 FROM pg_stat_replication \
             WHERE application_name = {} AND {condition}",
            quote_literal(standby)
        );
        self.wait_until(&format!("standby {standby} {what}"), &sql)
            .await
    }

    /// The primary's current WAL position.
    pub async fn current_lsn(&self) -> Result<String, PgError> {
        self.query_one("SELECT pg_current_wal_lsn()::text")
            .await?
            .ok_or_else(|| PgError::Missing("pg_current_wal_lsn returned NULL".into()))
    }

    /// On a standby: waits until it has replayed the WAL up to `lsn`.
    pub async fn wait_replayed(&self, lsn: &str) -> Result<(), PgError> {
        let sql = format!(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= {}::pg_lsn, false)",
            quote_literal(lsn)
        );
        self.wait_until(&format!("replay to {lsn}"), &sql).await
    }

    /// Promotes a standby (`pg_promote`) and waits until it has left recovery.
    pub async fn promote(&self) -> Result<(), PgError> {
        let promoted = self.query_one("SELECT pg_promote(true, 60)").await?;
        if promoted.as_deref() != Some("t") {
            return Err(PgError::Command {
                what: format!("{}: pg_promote", self.name),
                status: format!("{promoted:?}"),
                output: self.log_tail(),
            });
        }
        self.wait_until("leave recovery", "SELECT NOT pg_is_in_recovery()")
            .await
    }

    /// Fast shutdown (SIGINT: sessions ended, a checkpoint written); [`PgServer::start`] brings
    /// it back on the same data dir.
    pub async fn stop(&mut self) -> Result<(), PgError> {
        self.stop_with(libc::SIGINT).await
    }

    /// SIGKILL of every process of the server: a crash of its host. Nothing is flushed or
    /// handed over; the data dir keeps what reached it.
    pub async fn kill(&mut self) -> Result<(), PgError> {
        self.signal_group(libc::SIGKILL)?;
        self.stop_with(libc::SIGKILL).await
    }

    /// SIGKILL of the postmaster alone: its backends notice their parent is gone and exit.
    pub async fn kill_postmaster(&mut self) -> Result<(), PgError> {
        self.stop_with(libc::SIGKILL).await
    }

    /// SIGSTOP of every process of the server: a hung host. Connections hang, the walsender
    /// stops streaming and a standby stops receiving and confirming.
    pub fn pause(&self) -> Result<(), PgError> {
        self.signal_group(libc::SIGSTOP)
    }

    /// SIGCONT after [`PgServer::pause`].
    pub fn resume(&self) -> Result<(), PgError> {
        self.signal_group(libc::SIGCONT)
    }

    /// `signal` to every process of the server: the postmaster is stopped first so that it
    /// forks no child we would miss, then its children and itself get `signal`.
    fn signal_group(&self, signal: libc::c_int) -> Result<(), PgError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        if signal != libc::SIGCONT {
            self.signal(libc::SIGSTOP)?;
        }
        for child in children_of(pid) {
            // SAFETY: a child of our unreaped postmaster, which alone reaps it: while the
            // postmaster is stopped its children's pids cannot be reused. (For SIGCONT it runs;
            // a pid reused in between would get a SIGCONT, which a running process ignores.)
            // One that exited in between is simply gone (ESRCH, ignored).
            unsafe { libc::kill(child as libc::pid_t, signal) };
        }
        self.signal(signal)
    }

    fn signal(&self, signal: libc::c_int) -> Result<(), PgError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        // SAFETY: kill on our own unreaped child's pid: it cannot have been reused.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            return Err(PgError::Io {
                what: format!("signal {signal} to postmaster {pid}"),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    async fn stop_with(&mut self, signal: libc::c_int) -> Result<(), PgError> {
        if self.postmaster.is_none() {
            return Ok(());
        }
        self.signal_group(libc::SIGCONT)?;
        self.signal(signal)?;
        let started = Instant::now();
        while started.elapsed() < STOP_DEADLINE {
            if self.reaped()? {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        self.signal_group(libc::SIGKILL)?;
        if let Some(mut child) = self.postmaster.take() {
            child.wait().map_err(io("reap postgres"))?;
        }
        Err(PgError::Timeout {
            what: format!("{}: stop", self.name),
            after: STOP_DEADLINE,
            log_tail: self.log_tail(),
        })
    }

    fn reaped(&mut self) -> Result<bool, PgError> {
        let Some(child) = self.postmaster.as_mut() else {
            return Ok(true);
        };
        match child.try_wait().map_err(io("reap postgres"))? {
            Some(_) => {
                self.postmaster = None;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl Drop for PgServer {
    /// Immediate shutdown (SIGQUIT: backends ended at once, no checkpoint), SIGKILL of the
    /// whole group if it is not gone by the deadline; then the temp dir goes.
    fn drop(&mut self) {
        if self.postmaster.is_some() {
            let _ = self.signal_group(libc::SIGCONT);
            let _ = self.signal(libc::SIGQUIT);
            let started = Instant::now();
            let mut gone = false;
            while started.elapsed() < STOP_DEADLINE {
                if self.reaped().unwrap_or(false) {
                    gone = true;
                    break;
                }
                std::thread::sleep(POLL);
            }
            if !gone {
                let _ = self.signal_group(libc::SIGKILL);
                if let Some(mut child) = self.postmaster.take() {
                    let _ = child.wait();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The pids whose parent is `parent`, from `/proc/<pid>/stat` (field 4, after the command name
/// in parentheses, which may itself hold spaces and parentheses).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after_name = &stat[stat.rfind(')')? + 1..];
                    after_name.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn check(what: &str, output: &std::process::Output) -> Result<(), PgError> {
    if output.status.success() {
        return Ok(());
    }
    Err(PgError::Command {
        what: what.to_string(),
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// A SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
