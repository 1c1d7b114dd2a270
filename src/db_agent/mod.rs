//! `arbiter db-agent`: one per region, next to the region's PostgreSQL. It turns the arbiter's
//! write lease into the database's state:
//!
//! ```text
//!  arbiter ──lease granted (token t)──▶ promote (standby only) → fence check(resource, t) → writable
//!          ──lease lost (revoked, fenced, refused, or the keeper's own deadline)──▶ read-only
//!                                         + end sessions with a transaction open
//!  database ──WAL LSN, pg_stat_replication──▶ ReportCheckpoint + link heartbeat ──▶ arbiter
//!  controller ──driver webhook (epoch, leaderTerm)──▶ obeyed only if not older than the last
//! ```
//!
//! - [`database`]: the SQL the agent runs.
//! - [`replication_report`]: WAL positions and lag to `ReplicationCoordinator`.
//! - [`action_guard`]: the persisted `(epoch, leader term)` high-water mark of obeyed actions.
//! - [`http`]: `--listen`: `/livez`, `/v1/agent/status`, `/metrics`, `POST /v1/agent/actions`.
//! - [`metrics`]: the agent's Prometheus instruments.
//!
//! Invariants: the database is writable only while the agent holds the lease and after the
//! fence carries the lease's token; the loss of the lease — whatever its cause, including the
//! [`LeaseKeeper`]'s local deadline when no arbiter node answers — turns it read-only at once,
//! before the agent asks for the lease again. The agent never seeks the lease while its
//! database may still be writable, nor while its database is (or may be) a standby and the
//! resource has never been leased: the first holder is the primary's agent.

pub mod action_guard;
pub mod database;
pub mod http;
pub mod metrics;
pub mod replication_report;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbiter_client::{
    ArbiterClient, ClientError, ClientOptions, FencingToken, HolderId, KeeperOptions, LeaseKeeper,
    LeaseSpec, LossCause, RegionId, ResourceId,
};
use arbiter_core::failover_plan::check_promotion;
use arbiter_core::replication::{EpochId, ReplicationLink, ReplicationMode};
use arbiter_core::WallMillis;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api_client::{Answer, ApiClient, Patience};
use crate::http_client::HttpClient;
use action_guard::{ActionGuard, ActionStamp, GuardError};
use database::{Database, DbError};
use metrics::AgentMetrics;
use replication_report::{ReportSummary, Reporter};

/// Events kept for `/v1/agent/status`.
const EVENTS_KEPT: usize = 50;

/// Everything the agent needs, validated by the CLI (or a test).
pub struct DbAgentConfig {
    pub region: RegionId,
    /// The lease holder: the identity name of the agent's credential.
    pub holder: HolderId,
    pub resource: ResourceId,
    pub lease_ttl: Duration,
    pub database: Database,
    pub grpc_endpoints: Vec<String>,
    pub http_endpoints: Vec<String>,
    pub client_options: ClientOptions,
    pub http: HttpClient,
    /// Where the obeyed-action high-water mark lives.
    pub state_dir: PathBuf,
    /// How often replication progress is reported.
    pub report_interval: Duration,
    /// Pause before asking again for a refused lease or retrying a failed database step.
    pub retry_interval: Duration,
    /// Bearer token the action webhook requires; `None` only on a loopback `--listen`.
    pub webhook_token: Option<String>,
    /// Target region → the `application_name` of its standby, where it is not the region name.
    pub standby_names: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("state dir: {0}")]
    State(#[from] GuardError),
    #[error("arbiter: {0}")]
    Arbiter(#[from] ClientError),
    #[error("--listen: {0}")]
    Listen(std::io::Error),
    #[error(
        "the action webhook would be open to anyone on {0}: give --webhook-token-file, or \
         listen on a loopback address"
    )]
    UnauthenticatedWebhook(std::net::SocketAddr),
}

/// The lease as the agent holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum LeaseView {
    /// Not held; the agent asks again every retry interval (or is told to stand down).
    Waiting {
        reason: String,
    },
    Held {
        token: u64,
    },
}

/// What `/v1/agent/status` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    pub region: String,
    pub resource: String,
    pub holder: String,
    pub lease: LeaseView,
    /// Whether the agent has opened the database for writes (under the lease).
    pub writable: bool,
    /// Set by a controller action moving traffic out of this region: the agent does not ask
    /// for the lease until an action moves it back.
    pub stood_down: bool,
    pub obeyed_action: Option<ActionStamp>,
    pub replication: ReportSummary,
    /// Newest last: what the agent did and when.
    pub events: VecDeque<AgentEvent>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentEvent {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    pub what: String,
}

/// State shared by the lease loop, the reporter and the HTTP handlers.
pub struct Shared {
    pub config: DbAgentConfig,
    pub metrics: AgentMetrics,
    status: Mutex<AgentStatus>,
    /// Held by the webhook while it checks, records and carries out an action, so two actions
    /// are decided one after the other.
    guard: tokio::sync::Mutex<ActionGuard>,
    /// true: do not hold the lease (a controller moved traffic away from this region).
    stand_down: watch::Sender<bool>,
    /// A controller moved traffic to this region: its failover passed the promotion gate (or
    /// an operator's break-glass overrode it), so a standby here need not judge it again.
    called_in: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn status(&self) -> AgentStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut AgentStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Logs `what` and keeps it for the status page.
    fn event(&self, what: String) {
        tracing::info!(region = %self.config.region, "{what}");
        self.update(|status| {
            if status.events.len() == EVENTS_KEPT {
                status.events.pop_front();
            }
            status.events.push_back(AgentEvent {
                at_unix_ms: now_millis(),
                what,
            });
        });
    }

    /// Turns the database read-only and ends open transactions; retried until it succeeds (a
    /// database that does not answer takes no writes either) or `give_up` resolves.
    async fn close(&self, why: &str) {
        loop {
            match self.config.database.close_for_writes().await {
                Ok(terminated) => {
                    self.metrics.writable.set(0);
                    self.metrics.transition("read_only");
                    self.metrics
                        .sessions_terminated
                        .inc_by(terminated.len() as u64);
                    self.update(|s| s.writable = false);
                    self.event(format!(
                        "database read-only ({why}); ended {} session(s) with an open \
                         transaction{}",
                        terminated.len(),
                        if terminated.is_empty() {
                            String::new()
                        } else {
                            format!(": pids {terminated:?}")
                        }
                    ));
                    return;
                }
                Err(e) => {
                    tracing::warn!(region = %self.config.region, error = %e,
                        "cannot turn the database read-only yet; retrying");
                    tokio::time::sleep(self.config.retry_interval).await;
                }
            }
        }
    }

    /// Promote, fence, open: each step retried until it succeeds. A stale token is final.
    async fn take_office(&self, token: FencingToken) -> Result<(), DbError> {
        let db = &self.config.database;
        loop {
            let attempt = async {
                if db.promote_if_standby().await? {
                    self.metrics.promotions.inc();
                    self.event(format!("standby promoted (lease token {token})"));
                }
                db.raise_fence(&self.config.resource, token).await?;
                self.event(format!(
                    "fence of {} raised to token {token}",
                    self.config.resource
                ));
                db.open_for_writes().await?;
                Ok::<(), DbError>(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e @ DbError::StaleToken { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(region = %self.config.region, error = %e,
                        "cannot take office yet; retrying while the lease lasts");
                    tokio::time::sleep(self.config.retry_interval).await;
                }
            }
        }
    }
}

/// Runs the agent until `shutdown` resolves: the HTTP server on `listener`, the lease loop and
/// the replication reporter. On shutdown the database is turned read-only before the lease is
/// given back.
pub async fn run(
    config: DbAgentConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let addr = listener.local_addr().map_err(AgentError::Listen)?;
    if config.webhook_token.is_none() && !addr.ip().is_loopback() {
        return Err(AgentError::UnauthenticatedWebhook(addr));
    }
    let guard = ActionGuard::open(&config.state_dir)?;
    let client =
        ArbiterClient::connect(config.grpc_endpoints.clone(), config.client_options.clone())
            .await?;
    let shared = Arc::new(Shared {
        metrics: AgentMetrics::new(config.region.as_str()),
        status: Mutex::new(AgentStatus {
            region: config.region.to_string(),
            resource: config.resource.to_string(),
            holder: config.holder.to_string(),
            lease: LeaseView::Waiting {
                reason: "starting".into(),
            },
            writable: false,
            stood_down: false,
            obeyed_action: guard.obeyed(),
            replication: ReportSummary::default(),
            events: VecDeque::new(),
        }),
        guard: tokio::sync::Mutex::new(guard),
        stand_down: watch::Sender::new(false),
        called_in: std::sync::atomic::AtomicBool::new(false),
        config,
    });
    if shared.config.webhook_token.is_none() {
        tracing::warn!(%addr, "the action webhook takes no credentials (loopback only)");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(http::serve(shared.clone(), listener, {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }));
    let reporter = tokio::spawn(report_loop(shared.clone(), stop_rx.clone()));
    // Boxed so that it can be dropped here, not at the end of the function.
    let mut leases = Box::pin(lease_loop(shared.clone(), client));
    tokio::select! {
        _ = shutdown => {}
        _ = &mut leases => {}
    }
    // The lease loop goes first (its keeper stops renewing, and nothing can open the database
    // again), then the database is closed. The lease is not given back: an agent restarted
    // within the TTL takes it up again instead of handing the region's writes away.
    drop(leases);
    shared.close("the agent is stopping").await;
    let _ = stop_tx.send(true);
    let _ = reporter.await;
    let _ = server.await;
    Ok(())
}

/// The arbiter nodes' HTTP API as this agent reaches it (link reports, the promotion gate).
fn arbiter_api(config: &DbAgentConfig) -> ApiClient {
    ApiClient::new(
        config.http_endpoints.clone(),
        config.http.clone(),
        Duration::from_secs(2),
    )
    .with_patience(Patience::Brief)
}

/// Forever: close → wait for the lease → take office → hold → on loss close at once.
async fn lease_loop(shared: Arc<Shared>, client: ArbiterClient) {
    let config = &shared.config;
    let api = arbiter_api(config);
    let spec = LeaseSpec {
        region: Some(config.region.clone()),
        ..LeaseSpec::new(
            config.resource.as_str(),
            config.holder.as_str(),
            config.lease_ttl,
        )
    };
    shared.close("starting without the lease").await;
    loop {
        // Stood down by the controller: wait to be called back.
        let mut stood_down = shared.stand_down.subscribe();
        if *stood_down.borrow() {
            shared.update(|s| {
                s.lease = LeaseView::Waiting {
                    reason: "stood down by a controller action".into(),
                }
            });
            let _ = stood_down.wait_for(|down| !*down).await;
        }
        if let Some(reason) = standby_must_wait(&shared, &client, &api).await {
            shared.update(|s| s.lease = LeaseView::Waiting { reason });
            tokio::time::sleep(config.retry_interval).await;
            continue;
        }
        let keeper = match LeaseKeeper::acquire(&client, &spec, KeeperOptions::default()).await {
            Ok(Ok(keeper)) => keeper,
            Ok(Err(refusal)) => {
                shared.update(|s| {
                    s.lease = LeaseView::Waiting {
                        reason: refusal.to_string(),
                    }
                });
                tracing::debug!(%refusal, "lease not granted; asking again later");
                tokio::time::sleep(config.retry_interval).await;
                continue;
            }
            Err(e) => {
                let reason = match &e {
                    ClientError::Server {
                        code: tonic::Code::PermissionDenied | tonic::Code::Unauthenticated,
                        ..
                    } => format!(
                        "{e} (is --holder {} the name of the credential's identity, and is it \
                         a region identity of {}?)",
                        config.holder, config.region
                    ),
                    _ => e.to_string(),
                };
                tracing::warn!(%reason, "cannot ask for the lease");
                shared.update(|s| s.lease = LeaseView::Waiting { reason });
                tokio::time::sleep(config.retry_interval).await;
                continue;
            }
        };
        let token = keeper.token();
        shared.metrics.lease_held.set(1);
        shared.update(|s| s.lease = LeaseView::Held { token: token.0 });
        shared.event(format!(
            "lease on {} granted, token {token}",
            config.resource
        ));
        let lost = keeper.lost();
        tokio::pin!(lost);
        let stand_down = async {
            let _ = stood_down.wait_for(|down| *down).await;
        };
        tokio::pin!(stand_down);
        let cause = tokio::select! {
            biased;
            cause = &mut lost => Some(describe(&cause)),
            _ = &mut stand_down => Some("stood down by a controller action".to_string()),
            taken = shared.take_office(token) => match taken {
                Ok(()) => {
                    shared.metrics.writable.set(1);
                    shared.metrics.transition("writable");
                    shared.update(|s| s.writable = true);
                    shared.event(format!("database writable under token {token}"));
                    None
                }
                Err(e) => Some(format!("could not take office: {e}")),
            },
        };
        let cause = match cause {
            Some(cause) => cause,
            None => tokio::select! {
                biased;
                cause = &mut lost => describe(&cause),
                _ = &mut stand_down => "stood down by a controller action".to_string(),
            },
        };
        // At once: every moment between the loss and this is a window for a stale write
        // (which the fence still refuses once a newer holder has written).
        shared.close(&format!("lease lost: {cause}")).await;
        shared.metrics.lease_held.set(0);
        shared.update(|s| s.lease = LeaseView::Waiting { reason: cause });
        // Give the lease back if it is still ours (stood down, or could not take office).
        if keeper.is_valid() {
            if let Err(e) = keeper.release().await {
                tracing::warn!(error = %e, "could not release the lease; it lapses by its TTL");
            }
        }
        tokio::time::sleep(config.retry_interval).await;
    }
}

/// Why this agent must not ask for the lease yet, if it must not. Only an agent whose database
/// is (or may be) a standby is held back, since a grant would promote it:
///
/// - while the resource has never been leased: a free lease nobody ever held is the start of
///   the deployment, not a failover; granted to a standby's agent it would promote the standby
///   beside a healthy primary (whose agent may simply have started later), forking the data;
/// - while the promotion gate refuses, unless a controller moved traffic here: the same check
///   the controller makes before an automatic failover (Patroni's `maximum_lag_on_failover`),
///   on every replication link into this region as last reported — declared, active, lag
///   within the link's RPO target. Without it, a lagging standby would be promoted by the old
///   holder's lease simply running out, whatever the controller decided. A controller's shift
///   to this region (its own gate passed, or an operator's break-glass) lifts it.
async fn standby_must_wait(
    shared: &Shared,
    client: &ArbiterClient,
    api: &ApiClient,
) -> Option<String> {
    match shared.config.database.role().await {
        Ok(database::DbRole::Primary) => return None,
        Ok(database::DbRole::Standby) => {}
        // Unknown: it might be a standby. A database that does not answer could take no
        // writes under the lease anyway.
        Err(e) => {
            return Some(format!(
                "cannot tell whether the database is a standby: {e}"
            ))
        }
    }
    let resource = &shared.config.resource;
    match client.current_epoch(resource).await {
        Ok(epoch) if epoch.0 == 0 => {
            return Some(format!(
                "the database is a standby and {resource} has never been leased: the \
                 primary's agent takes it first"
            ))
        }
        Ok(_) => {}
        Err(e) => return Some(format!("cannot read the lease's epoch: {e}")),
    }
    if shared.called_in.load(std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    let region = &shared.config.region;
    let links = match api.get("/v1/replication/links").await {
        Answer::Done(body) => body["links"].as_array().cloned().unwrap_or_default(),
        other => return Some(format!("cannot read the replication links: {other:?}")),
    };
    let inbound: Vec<&serde_json::Value> = links
        .iter()
        .filter(|l| l["targetRegion"].as_str() == Some(region.as_str()))
        .collect();
    if inbound.is_empty() {
        return Some(format!(
            "promotion gate: no replication link into {region} is declared, so the standby's \
             lag is unknown (a controller failover or break-glass to {region} lifts this)"
        ));
    }
    for link in inbound {
        let source = RegionId::new(link["sourceRegion"].as_str().unwrap_or_default());
        let mode = match link["replicationMode"].as_str() {
            Some("SYNC") => ReplicationMode::Sync,
            _ => ReplicationMode::Async,
        };
        let reported = ReplicationLink {
            source_region: source.clone(),
            target_region: region.clone(),
            replication_mode: mode,
            last_sent_epoch_id: EpochId(0),
            last_received_epoch_id: EpochId(0),
            replication_lag_ms: link["replicationLagMs"].as_u64().unwrap_or(u64::MAX),
            is_link_active: link["isLinkActive"].as_bool().unwrap_or(false),
            last_heartbeat_at: WallMillis(0),
        };
        if let Err(refusal) = check_promotion(&source, region, Some(&reported)) {
            return Some(format!(
                "promotion gate: {refusal} (a controller failover or break-glass to {region} \
                 lifts this)"
            ));
        }
    }
    None
}

fn describe(cause: &LossCause) -> String {
    match cause {
        LossCause::DeadlinePassed => {
            "no renewal before the lease's deadline (arbiter unreachable or without quorum)".into()
        }
        LossCause::Refused(refusal) => format!("renewal refused: {refusal}"),
        LossCause::Released => "released".into(),
        LossCause::Stopped => "keeper stopped".into(),
    }
}

/// Every report interval: read the database's progress and report it.
async fn report_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let config = &shared.config;
    let api = arbiter_api(config);
    let mut reporter = Reporter::new(
        config.region.clone(),
        config.grpc_endpoints.clone(),
        config.client_options.clone(),
        api,
        config.standby_names.clone(),
    );
    let mut ticker = tokio::time::interval(config.report_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let round = async {
            match config.database.progress().await {
                Ok(progress) => {
                    shared
                        .metrics
                        .wal_position
                        .set(progress.lsn.min(i64::MAX as u64) as i64);
                    let summary = reporter.report(&progress).await;
                    for link in &summary.links {
                        shared
                            .metrics
                            .link(&link.target_region, link.lag_ms, link.pending_bytes);
                    }
                    summary
                }
                Err(e) => ReportSummary {
                    last_error: Some(format!("reading progress: {e}")),
                    ..ReportSummary::default()
                },
            }
        };
        // A round can wait on unreachable nodes for seconds; stopping does not wait for it.
        let summary = tokio::select! {
            summary = round => summary,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Some(error) = &summary.last_error {
            tracing::debug!(%error, "replication report incomplete");
        }
        shared.update(|s| s.replication = summary);
    }
}

/// The controller's action, as the DR controller's drivers send it (`DriverCall`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionCall {
    pub action: String,
    #[serde(default)]
    pub failover_id: Option<String>,
    #[serde(default)]
    pub task_track_id: Option<String>,
    #[serde(default)]
    pub from_region: Option<String>,
    #[serde(default)]
    pub to_region: Option<String>,
    #[serde(default)]
    pub reason: String,
    pub epoch: u64,
    pub leader_term: u64,
}

/// What the agent did with an obeyed action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ActionEffect {
    /// Traffic leaves this region: the database is read-only and the lease given back; the
    /// agent does not ask for it again until an action brings traffic back.
    StoodDown,
    /// Traffic comes (back) to this region: the agent asks for the lease; promotion follows
    /// the grant.
    Resumed,
    /// Nothing for this region's database to do.
    Noted,
}

impl Shared {
    /// Checks `call` against the high-water mark, records it, then carries it out.
    pub async fn obey(
        &self,
        call: &ActionCall,
    ) -> Result<Result<ActionEffect, action_guard::StaleAction>, GuardError> {
        let stamp = ActionStamp {
            epoch: call.epoch,
            leader_term: call.leader_term,
        };
        let mut guard = self.guard.lock().await;
        if let Err(stale) = guard.admit(stamp)? {
            self.metrics.action("stale");
            self.event(format!(
                "refused {} from a deposed or older decision: {stale}",
                call.action
            ));
            return Ok(Err(stale));
        }
        self.update(|s| s.obeyed_action = Some(stamp));
        let region = self.config.region.as_str();
        let effect = if call.from_region.as_deref() == Some(region) {
            self.stand_down.send_replace(true);
            self.called_in
                .store(false, std::sync::atomic::Ordering::SeqCst);
            self.update(|s| s.stood_down = true);
            self.close(&format!("{} away from {region} at {stamp}", call.action))
                .await;
            ActionEffect::StoodDown
        } else if call.to_region.as_deref() == Some(region) {
            self.stand_down.send_replace(false);
            self.called_in
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.update(|s| s.stood_down = false);
            ActionEffect::Resumed
        } else {
            ActionEffect::Noted
        };
        self.metrics.action("obeyed");
        self.event(format!(
            "obeyed {} ({stamp}, failover {:?}, task {:?}): {effect:?}; {}",
            call.action, call.failover_id, call.task_track_id, call.reason
        ));
        Ok(Ok(effect))
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
