//! `arbiter edge`: the global traffic layer. An HTTP reverse proxy, one per point of presence,
//! that routes every request to a regional gateway by the routing table the arbiter publishes.
//!
//! ```text
//!  clients ──▶ edge (this) ──▶ region gateways (us-east-1, us-west-2, eu-central-1)
//!               │  ▲
//!   report ─────┘  └──── RoutingService/Watch (leader-following, whole table per change)
//! ```
//!
//! Invariants:
//! - **The table is the arbiter's.** The edge routes by the newest routing snapshot it has
//!   (tenant rows, weights, region health; see [`routes`]) and by nothing it decided itself,
//!   except that it never sends to a gateway its own probes cannot reach. Snapshots only move
//!   forward ([`arbiter_client::RoutingWatch`]).
//! - **Stateless, and honest when cut off.** Nothing is kept on disk. When no arbiter node
//!   answers, the edge keeps routing by its last table and says so: `/healthz` reports the
//!   routing `STALE` and `arbiter_edge_routing_stale` is 1.
//! - **A shift drops nothing that can be kept.** New requests follow a new table at once;
//!   requests already sent to the source region run on. When a shift empties its source
//!   (weight 0) the edge lets those requests finish for the shift's `drainTimeoutSeconds`
//!   and then cuts them. The edge reports its routing version and requests in flight to the
//!   leader every second, which makes the shift's `drainActiveCount` and
//!   `dnsPropagationStatus` real figures.
//! - **Failures fail fast, and are retried once where that is safe.** Connect and response
//!   timeouts bound every attempt. A request whose connection was refused was never sent, so
//!   it is retried once in another region whatever its method; one that may have reached the
//!   gateway is retried only when idempotent (GET, HEAD, OPTIONS, or carrying an
//!   `Idempotency-Key`).
//! - **Header hygiene.** Hop-by-hop headers (and any the `Connection` header names) are never
//!   forwarded either way; `X-Forwarded-For`, `Forwarded`, `X-Forwarded-Proto` and
//!   `X-Forwarded-Host` are added. Oversized or malformed headers and bad tenant names are
//!   answered 400 here and never reach a gateway.

mod admin;
mod proxy;
pub mod routes;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arbiter_client::ArbiterClient;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api_client::{Answer, ApiClient, Retry};
use crate::http_client::HttpClient;
use routes::{Local, Policy, RoundRobin, RouteTable};

pub use proxy::{MAX_TENANT_LEN, TENANT_HEADER_DEFAULT};

/// Everything an edge needs to run.
#[derive(Clone)]
pub struct EdgeConfig {
    /// This edge's name: its point of presence, and the identity it reports as.
    pub name: String,
    /// (region, gateway base URL such as `http://10.0.0.5:8080`).
    pub gateways: Vec<(String, Uri)>,
    /// Arbiter gRPC endpoints, for the routing watch (credentials in `arbiter`).
    pub arbiter: ArbiterClient,
    /// Arbiter HTTP endpoints and client, for the edge's reports; `None` reports nothing.
    pub report_to: Option<(Vec<String>, HttpClient)>,
    /// Header naming the tenant (`x-tenant-id` by default); `None` reads no header.
    pub tenant_header: Option<hyper::header::HeaderName>,
    /// Path prefix before a tenant name, e.g. `/tenants/`; `None` reads no path.
    pub tenant_path_prefix: Option<String>,
    pub policy: Policy,
    pub connect_timeout: Duration,
    /// Longest wait for a gateway's response headers, per attempt.
    pub response_timeout: Duration,
    pub probe_interval: Duration,
    /// The path each gateway is probed at (any HTTP answer counts as reachable).
    pub probe_path: String,
    pub report_interval: Duration,
    /// Largest request body accepted (bodies are buffered so a request can be retried).
    pub max_body_bytes: usize,
    /// Largest total size of a request's headers, and most headers, before a 400.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// TLS roots for `https://` gateways.
    pub upstream_tls: Arc<rustls::ClientConfig>,
}

impl EdgeConfig {
    /// The defaults for everything but the name, gateways and arbiter.
    pub fn new(
        name: String,
        gateways: Vec<(String, Uri)>,
        arbiter: ArbiterClient,
        upstream_tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        EdgeConfig {
            name,
            gateways,
            arbiter,
            report_to: None,
            tenant_header: Some(hyper::header::HeaderName::from_static(
                TENANT_HEADER_DEFAULT,
            )),
            tenant_path_prefix: None,
            policy: Policy::Weighted,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(10),
            probe_interval: Duration::from_secs(1),
            probe_path: "/v1/health/check".into(),
            report_interval: Duration::from_secs(1),
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            upstream_tls,
        }
    }
}

type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One region's gateway as this edge sees it.
struct Upstream {
    region: String,
    base: Uri,
    client: UpstreamClient,
    in_flight: AtomicU64,
    sent_total: AtomicU64,
    /// Requests answered by the gateway (any status), failed, and retried elsewhere.
    answered_total: AtomicU64,
    failed_total: AtomicU64,
    /// Wall-clock milliseconds of the last request sent (0: none yet).
    last_sent_ms: AtomicU64,
    /// Smoothed probe round trip in microseconds (0: none yet).
    rtt_us: AtomicU64,
    reachable: AtomicBool,
    /// Requests are numbered as they are sent; a drain cut applies to those numbered up to
    /// the cut's number: `(number, deadline)`.
    sequence: AtomicU64,
    cut: watch::Sender<Option<(u64, Instant)>>,
}

impl Upstream {
    fn local(&self) -> Local {
        let rtt = self.rtt_us.load(Ordering::Relaxed);
        Local {
            reachable: self.reachable.load(Ordering::Relaxed),
            rtt: (rtt > 0).then(|| Duration::from_micros(rtt)),
        }
    }
}

/// The routing watch's state, for health and metrics.
#[derive(Debug, Clone, Default)]
struct WatchState {
    connected: bool,
    /// When the watch last failed (while disconnected).
    disconnected_since: Option<Instant>,
    last_error: Option<String>,
    last_snapshot_at: Option<Instant>,
}

/// What the request path, the loops and the admin endpoints share.
pub struct Edge {
    config: EdgeConfig,
    table: RwLock<Option<Arc<RouteTable>>>,
    round_robin: Mutex<RoundRobin>,
    upstreams: BTreeMap<String, Arc<Upstream>>,
    watch: Mutex<WatchState>,
    /// Drain orders acted on (task ids), so each is acted on once.
    drains_seen: Mutex<HashSet<String>>,
    started: Instant,
    counters: proxy::Counters,
}

impl Edge {
    pub fn new(config: EdgeConfig) -> Result<Arc<Edge>, String> {
        if config.gateways.is_empty() {
            return Err("an edge needs at least one --region-gateway".into());
        }
        let mut upstreams = BTreeMap::new();
        for (region, base) in &config.gateways {
            match base.scheme_str() {
                Some("http" | "https") => {}
                _ => {
                    return Err(format!(
                        "gateway {base} of {region}: expected http:// or https://"
                    ))
                }
            }
            if base.authority().is_none() {
                return Err(format!("gateway {base} of {region}: no host"));
            }
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(config.connect_timeout));
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*config.upstream_tls).clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            let client = Client::builder(TokioExecutor::new())
                // Idle connections to a region the edge stopped sending to close on their own.
                .pool_idle_timeout(Duration::from_secs(10))
                .build(https);
            let upstream = Upstream {
                region: region.clone(),
                base: base.clone(),
                client,
                in_flight: AtomicU64::new(0),
                sent_total: AtomicU64::new(0),
                answered_total: AtomicU64::new(0),
                failed_total: AtomicU64::new(0),
                last_sent_ms: AtomicU64::new(0),
                rtt_us: AtomicU64::new(0),
                // Reachable until a probe or a connection says otherwise.
                reachable: AtomicBool::new(true),
                sequence: AtomicU64::new(0),
                cut: watch::channel(None).0,
            };
            if upstreams
                .insert(region.clone(), Arc::new(upstream))
                .is_some()
            {
                return Err(format!("region {region} has two gateways"));
            }
        }
        Ok(Arc::new(Edge {
            config,
            table: RwLock::new(None),
            round_robin: Mutex::new(RoundRobin::default()),
            upstreams,
            watch: Mutex::new(WatchState::default()),
            drains_seen: Mutex::new(HashSet::new()),
            started: Instant::now(),
            counters: proxy::Counters::default(),
        }))
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The table routed by now (`None` before the first snapshot).
    pub fn table(&self) -> Option<Arc<RouteTable>> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn watch_state(&self) -> WatchState {
        self.watch.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the edge routes by a table it can no longer confirm (the watch is down).
    pub fn routing_stale(&self) -> bool {
        !self.watch_state().connected
    }

    fn local(&self, region: &str) -> Local {
        self.upstreams.get(region).map_or(
            Local {
                reachable: false,
                rtt: None,
            },
            |u| u.local(),
        )
    }

    /// Installs a new snapshot, and starts the drain clock of every shift that just emptied
    /// its source.
    fn install(&self, table: RouteTable) {
        let now = Instant::now();
        {
            let mut seen = self.drains_seen.lock().unwrap_or_else(|e| e.into_inner());
            // Forget finished shifts: the set holds only what the table still lists.
            seen.retain(|id| table.drains.iter().any(|d| &d.task_track_id == id));
            for drain in &table.drains {
                if table.weight_of(&drain.source) != Some(0)
                    || !seen.insert(drain.task_track_id.clone())
                {
                    continue;
                }
                if let Some(upstream) = self.upstreams.get(&drain.source) {
                    let sent = upstream.sequence.load(Ordering::SeqCst);
                    upstream.cut.send_replace(Some((sent, now + drain.timeout)));
                    tracing::info!(
                        task = %drain.task_track_id, source = %drain.source,
                        in_flight = upstream.in_flight.load(Ordering::Relaxed),
                        timeout_s = drain.timeout.as_secs(),
                        "draining: requests in flight to the source finish within the drain timeout"
                    );
                }
            }
        }
        let index = table.applied_index;
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(table));
        tracing::debug!(index, "routing table installed");
    }

    /// Routes by `snapshot` from now on, as if the watch had delivered it (benchmarks, and
    /// tests that need a table without a cluster). An older snapshot is ignored.
    pub fn route_by(&self, snapshot: arbiter_client::proto::RoutingSnapshot) {
        if self
            .table()
            .is_some_and(|t| t.applied_index >= snapshot.applied_index)
        {
            return;
        }
        self.install(RouteTable::from(snapshot));
    }

    /// What the edge reports to the leader.
    fn report(&self) -> serde_json::Value {
        let regions: serde_json::Map<String, serde_json::Value> = self
            .upstreams
            .values()
            .map(|u| {
                let rtt = u.rtt_us.load(Ordering::Relaxed);
                (
                    u.region.clone(),
                    json!({
                        "inFlight": u.in_flight.load(Ordering::Relaxed),
                        "sentTotal": u.sent_total.load(Ordering::Relaxed),
                        "rttMs": (rtt > 0).then(|| rtt as f64 / 1000.0),
                        "reachable": u.reachable.load(Ordering::Relaxed),
                    }),
                )
            })
            .collect();
        json!({
            "edge": self.config.name,
            "appliedIndex": self.table().map_or(0, |t| t.applied_index),
            "routingStale": self.routing_stale(),
            "regions": regions,
        })
    }
}

/// Where a running edge listens.
#[derive(Debug, Clone, Copy)]
pub struct EdgeAddrs {
    pub proxy: SocketAddr,
    pub admin: Option<SocketAddr>,
}

/// Runs `edge` until `shutdown` resolves: the proxy on `listener` (TLS when `tls` is given),
/// the admin endpoints (`/healthz`, `/readyz`, `/metrics`) on `admin`, the routing watch, the
/// gateway probes and the reports.
pub async fn run(
    edge: Arc<Edge>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    admin: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(follow_routing(edge.clone(), stop.clone()));
    tasks.spawn(probe_gateways(edge.clone(), stop.clone()));
    if edge.config.report_to.is_some() {
        tasks.spawn(report_loop(edge.clone(), stop.clone()));
    }
    if let Some(admin) = admin {
        let edge = edge.clone();
        let mut stop = stop.clone();
        tasks.spawn(async move {
            let app = admin::router(edge);
            if let Err(e) = axum::serve(admin, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
            {
                tracing::warn!(error = %e, "edge admin endpoints stopped");
            }
        });
    }
    let served = proxy::serve(edge, listener, tls, async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    tasks.shutdown().await;
    served
}

/// Follows the routing table until `stop`; never gives up on the arbiter.
async fn follow_routing(edge: Arc<Edge>, mut stop: watch::Receiver<bool>) {
    let mut watch = edge.config.arbiter.watch_routing(None);
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            next = watch.next() => next,
        };
        match next {
            Ok(snapshot) => {
                edge.install(RouteTable::from(snapshot));
                let mut state = edge.watch.lock().unwrap_or_else(|e| e.into_inner());
                if !state.connected && state.disconnected_since.is_some() {
                    tracing::info!("routing watch back: the table is current again");
                }
                *state = WatchState {
                    connected: true,
                    disconnected_since: None,
                    last_error: None,
                    last_snapshot_at: Some(Instant::now()),
                };
            }
            Err(e) => {
                let mut state = edge.watch.lock().unwrap_or_else(|e| e.into_inner());
                if state.connected || state.disconnected_since.is_none() {
                    tracing::warn!(error = %e, "routing watch lost: routing by the last known table");
                }
                state.connected = false;
                state.disconnected_since.get_or_insert_with(Instant::now);
                state.last_error = Some(e.to_string());
            }
        }
    }
}

/// Measures each gateway's round trip every probe interval; any HTTP answer counts as
/// reachable (whether the region is healthy is the arbiter's call, from several vantage
/// points, not one edge's).
async fn probe_gateways(edge: Arc<Edge>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(edge.config.probe_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = ticker.tick() => {}
        }
        let probes = edge.upstreams.values().map(|upstream| {
            let edge = edge.clone();
            let upstream = upstream.clone();
            async move { proxy::probe(&edge, &upstream).await }
        });
        futures::future::join_all(probes).await;
    }
}

async fn report_loop(edge: Arc<Edge>, mut stop: watch::Receiver<bool>) {
    let Some((nodes, http)) = edge.config.report_to.clone() else {
        return;
    };
    let api = ApiClient::new(
        nodes,
        http,
        edge.config.report_interval.max(Duration::from_millis(500)),
    );
    let mut ticker = tokio::time::interval(edge.config.report_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = ticker.tick() => {}
        }
        let body = edge.report();
        match api
            .send("POST", "/v1/edges/report", Some(&body), Retry::Always)
            .await
        {
            Answer::Done(_) => warned = false,
            Answer::Refused { status, body, .. } => {
                tracing::warn!(status, %body, "the arbiter refused the edge report");
            }
            Answer::Unavailable(why) | Answer::Unknown(why) => {
                if !warned {
                    tracing::warn!(%why, "no arbiter took the edge report");
                    warned = true;
                }
            }
        }
    }
}
