//! `arbiter-jepsen placement-bench`: how long a us-east-1 outage takes to reach a COMPLETED
//! failover when the Raft leader — and with it the DR controller — starts in us-east-1 versus
//! in eu-central-1, over the planning WAN triangle (70/90/150 ms RTT through the link proxies).
//!
//! Each run is a fresh three-node cluster (`--preferred-leader` names the arm's region, so
//! placement puts the leader there), three stand-in regional gateways and three probe agents
//! (London, Tokyo, Sydney). The outage kills node 1 (`kill -9`) and stops us-east-1's gateway
//! at the same instant; the clock stops when the failover event reads COMPLETED. Arms alternate
//! run by run, so drift of the machine hits both alike.
//!
//! Invariant: every run is bounded (cluster start, placement, failover each have a deadline)
//! and leaves nothing running: nodes are stopped, agents and gateways dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arbiter::dr::probe_agent::{self, ProbeAgentConfig};
use arbiter::http_client::HttpClient;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use arbiter::config::Profile;
use arbiter_core::NodeId;

use crate::cluster::{Cluster, ClusterConfig};
use crate::nemesis::Effects;
use crate::network::{region_of, DelayTable};

/// The two arms: where placement puts the leader before us-east-1 goes dark.
pub const ARMS: [&str; 2] = ["us-east-1", "eu-central-1"];
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
const PLACED_TIMEOUT: Duration = Duration::from_secs(90);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(120);

/// DR settings of every run: the defaults but a 1 s drain (the default 30 s would only add
/// the same constant to both arms) and a 100 ms controller tick.
const DR_CONFIG: &str = r#"
[raft]
leader_move_cooldown_ms = 1000
[dr]
drain_ms = 1000
tick_ms = 100
"#;

pub struct BenchConfig {
    pub runs: usize,
    pub binary: PathBuf,
    pub dir: PathBuf,
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Sample {
    pub arm: &'static str,
    /// Outage → the failover event appears (outage consensus, decision logged).
    pub decided: Duration,
    /// Outage → the event reads COMPLETED.
    pub completed: Duration,
    /// Whether the term changed between the outage and completion (an election happened).
    pub election: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("run {run} ({arm}): {reason}")]
    Run {
        run: usize,
        arm: &'static str,
        reason: String,
    },
}

pub async fn run(config: &BenchConfig) -> Result<Vec<Sample>, BenchError> {
    let mut samples = Vec::new();
    for run in 1..=config.runs {
        for arm in ARMS {
            let dir = config.dir.join(format!("run-{run}-{arm}"));
            let sample = one_run(config, arm, &dir)
                .await
                .map_err(|reason| BenchError::Run { run, arm, reason })?;
            eprintln!(
                "run {run}/{} leader in {arm:<12}: decided {:>6.2} s, COMPLETED {:>6.2} s{}",
                config.runs,
                sample.decided.as_secs_f64(),
                sample.completed.as_secs_f64(),
                if sample.election {
                    " (election during the failover)"
                } else {
                    ""
                }
            );
            samples.push(sample);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(samples)
}

async fn one_run(config: &BenchConfig, arm: &'static str, dir: &Path) -> Result<Sample, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("run dir: {e}"))?;
    let dr = dir.join("dr.toml");
    std::fs::write(&dr, DR_CONFIG).map_err(|e| format!("dr config: {e}"))?;
    let mut cluster = Cluster::start(&ClusterConfig {
        binary: config.binary.clone(),
        nodes: 3,
        root: dir.join("nodes"),
        profile: Profile::Wan,
        delays: DelayTable::wan_triangle(),
        extra_args: vec![
            "--config".into(),
            dr.display().to_string(),
            "--preferred-leader".into(),
            arm.into(),
        ],
        lazyfs: false,
    })
    .await
    .map_err(|e| format!("cluster start: {e}"))?;
    let result = measure(&mut cluster, arm).await;
    cluster.stop().await;
    result
}

async fn measure(cluster: &mut Cluster, arm: &'static str) -> Result<Sample, String> {
    let http = cluster
        .credentials()
        .http_client()
        .map_err(|e| format!("credentials: {e}"))?;
    let (gateways, mut stops) = start_gateways().await?;
    // Dropping a sender stops its agent or gateway; kept alive until the run ends.
    let mut agents = Vec::new();
    for vantage in ["london", "tokyo", "sydney"] {
        let (stop, stopped) = oneshot::channel::<()>();
        let agent = ProbeAgentConfig {
            vantage: vantage.into(),
            targets: gateways.clone(),
            arbiters: cluster.client_http_endpoints(),
            arbiter_http: http.clone(),
            interval: PROBE_INTERVAL,
            timeout: PROBE_INTERVAL.mul_f64(0.8),
        };
        tokio::spawn(probe_agent::run(agent, async {
            let _ = stopped.await;
        }));
        agents.push(stop);
    }

    let deadline = Instant::now() + PLACED_TIMEOUT;
    let leader = loop {
        if let Some(id) = cluster.leader().await {
            if region_of(id) == arm {
                break id;
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the leader did not reach {arm} in {PLACED_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let endpoints = cluster.client_http_endpoints();
    let term_before = term_of(&http, &endpoints[leader as usize - 1])
        .await
        .ok_or("cannot read the leader's term before the outage")?;
    // The controller registers the regions once per term; the outage must find them.
    let deadline = Instant::now() + PLACED_TIMEOUT;
    while !regions_registered(&http, &endpoints).await {
        if Instant::now() > deadline {
            return Err("the DR controller did not register the regions".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // us-east-1 goes dark: node and gateway at once.
    let east: NodeId = 1;
    cluster.apply(&Effects {
        kill: [east].into(),
        ..Effects::default()
    });
    stops.retain(|(region, _)| region != "us-east-1");
    let outage = Instant::now();
    let survivors: Vec<String> = endpoints[1..].to_vec();
    let mut decided = None;
    let deadline = outage + FAILOVER_TIMEOUT;
    let completed = loop {
        if let Some(event) = latest_event(&http, &survivors, "us-east-1").await {
            decided.get_or_insert_with(|| outage.elapsed());
            if event["eventStatus"] == "COMPLETED" {
                break outage.elapsed();
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no COMPLETED failover within {FAILOVER_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut term_after = None;
    for endpoint in &survivors {
        term_after = term_after.max(term_of(&http, endpoint).await);
    }
    drop(agents);
    drop(stops);
    Ok(Sample {
        arm,
        decided: decided.unwrap_or(completed),
        completed,
        election: term_after.is_some_and(|t| t > term_before),
    })
}

type GatewayStops = Vec<(String, oneshot::Sender<()>)>;

/// One stand-in gateway per region on loopback: (region, health URL) and their stop handles.
async fn start_gateways() -> Result<(Vec<(String, String)>, GatewayStops), String> {
    let mut targets = Vec::new();
    let mut stops = Vec::new();
    for region in ["us-east-1", "us-west-2", "eu-central-1"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("gateway bind: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("gateway addr: {e}"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(arbiter::gateway::serve(region.into(), listener, async {
            let _ = stopped.await;
        }));
        targets.push((region.to_string(), format!("http://{addr}/v1/health/check")));
        stops.push((region.to_string(), stop));
    }
    Ok((targets, stops))
}

async fn get(http: &HttpClient, endpoint: &str, path: &str) -> Option<Value> {
    let url = format!("{}{path}", http.base_url(endpoint));
    let response = http
        .request("GET", &url, None, Duration::from_secs(2))
        .await
        .ok()?;
    if !response.is_success() {
        return None;
    }
    serde_json::from_slice(&response.body).ok()
}

async fn term_of(http: &HttpClient, endpoint: &str) -> Option<u64> {
    get(http, endpoint, "/v1/cluster/status").await?["term"].as_u64()
}

async fn regions_registered(http: &HttpClient, endpoints: &[String]) -> bool {
    for endpoint in endpoints {
        if let Some(body) = get(http, endpoint, "/v1/regions").await {
            return body["regions"].as_array().is_some_and(|r| r.len() == 3);
        }
    }
    false
}

/// The newest failover event of `region`, from whichever node answers (the leader).
async fn latest_event(http: &HttpClient, endpoints: &[String], region: &str) -> Option<Value> {
    for endpoint in endpoints {
        let path = format!("/v1/failover-events?failedRegion={region}");
        if let Some(body) = get(http, endpoint, &path).await {
            return body["events"].as_array()?.first().cloned();
        }
    }
    None
}

/// Median, min and max of one arm, and how many of its runs saw an election.
pub fn summarize(samples: &[Sample], arm: &str) -> Option<(Duration, Duration, Duration, usize)> {
    let mut times: Vec<Duration> = samples
        .iter()
        .filter(|s| s.arm == arm)
        .map(|s| s.completed)
        .collect();
    times.sort_unstable();
    let elections = samples
        .iter()
        .filter(|s| s.arm == arm && s.election)
        .count();
    Some((
        *times.get(times.len() / 2)?,
        *times.first()?,
        *times.last()?,
        elections,
    ))
}

/// The same for the decision (the event logged).
pub fn median_decided(samples: &[Sample], arm: &str) -> Option<Duration> {
    let mut times: Vec<Duration> = samples
        .iter()
        .filter(|s| s.arm == arm)
        .map(|s| s.decided)
        .collect();
    times.sort_unstable();
    times.get(times.len() / 2).copied()
}
