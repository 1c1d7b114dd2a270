//! The drill's client load through edge routers: two `arbiter edge` processes (points of
//! presence) in front of the region gateways, and HTTP clients that keep sending
//! `GET /orders` through them for the whole run. What clients saw across the fault goes into
//! the report: requests failed, retried, and how soon their answers came from another region.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// One answer a client got.
#[derive(Debug, Clone)]
pub struct EdgeAnswer {
    pub at: Instant,
    /// 0 when no answer came at all (the edge itself unreachable or too slow).
    pub status: u16,
    pub region: String,
    pub retried: bool,
}

/// Clients sending through the edges until stopped.
pub struct EdgeLoad {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<EdgeAnswer>>>,
    workers: tokio::task::JoinSet<()>,
}

/// Longest a client waits for an edge's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

impl EdgeLoad {
    /// `clients` loops, each sending one request every `pause` (plus the answer's time),
    /// alternating between `edges`. Bounded by `stop` and by a count per client.
    pub fn start(edges: Vec<SocketAddr>, clients: usize, pause: Duration) -> EdgeLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let mut workers = tokio::task::JoinSet::new();
        for i in 0..clients {
            let (stop, answers, edges) = (stop.clone(), answers.clone(), edges.clone());
            workers.spawn(async move {
                let client: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new()).build_http();
                for n in 0..1_000_000usize {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let edge = edges[(i + n) % edges.len()];
                    let answer = ask(&client, edge).await;
                    answers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(answer);
                    tokio::time::sleep(pause).await;
                }
            });
        }
        EdgeLoad {
            stop,
            answers,
            workers,
        }
    }

    /// Stops the clients and returns every answer, in the order they came.
    pub async fn stop(mut self) -> Vec<EdgeAnswer> {
        self.stop.store(true, Ordering::Relaxed);
        while self.workers.join_next().await.is_some() {}
        let mut answers =
            std::mem::take(&mut *self.answers.lock().unwrap_or_else(|e| e.into_inner()));
        answers.sort_by_key(|a| a.at);
        answers
    }
}

async fn ask(client: &Client<HttpConnector, Full<Bytes>>, edge: SocketAddr) -> EdgeAnswer {
    let failed = |status| EdgeAnswer {
        at: Instant::now(),
        status,
        region: String::new(),
        retried: false,
    };
    let Ok(request) = hyper::Request::get(format!("http://{edge}/orders"))
        .header("x-drill", "edge-load")
        .body(Full::new(Bytes::new()))
    else {
        return failed(0);
    };
    let response = match tokio::time::timeout(CLIENT_TIMEOUT, client.request(request)).await {
        Ok(Ok(response)) => response,
        _ => return failed(0),
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let region = header("x-arbiter-region").unwrap_or_default();
    let retried = header("x-arbiter-retried-from").is_some();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    EdgeAnswer {
        at: Instant::now(),
        status,
        region,
        retried,
    }
}

/// What the clients behind the edges saw, times in milliseconds after the fault.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeFigures {
    pub edges: usize,
    pub requests: u64,
    pub failed: u64,
    pub failed_after_fault: u64,
    /// Answered after one retry in another region.
    pub retried: u64,
    /// The first answer from another region than the failed one after the fault: the
    /// client-visible traffic shift.
    pub client_shift_ms: Option<u64>,
    /// The last answer the failed region gave (negative: before the fault).
    pub last_failed_region_answer_ms: Option<i64>,
    /// The edges' last request sent to the failed region, as the edges report it.
    pub last_sent_to_failed_region_ms: Option<i64>,
}

impl EdgeFigures {
    pub fn from_answers(
        answers: &[EdgeAnswer],
        edges: usize,
        failed_region: &str,
        t0: Instant,
        last_sent_ms: Option<i64>,
    ) -> EdgeFigures {
        let rel = |at: Instant| -> i64 {
            if at >= t0 {
                at.duration_since(t0).as_millis() as i64
            } else {
                -(t0.duration_since(at).as_millis() as i64)
            }
        };
        let ok = |a: &&EdgeAnswer| a.status == 200;
        EdgeFigures {
            edges,
            requests: answers.len() as u64,
            failed: answers.iter().filter(|a| a.status != 200).count() as u64,
            failed_after_fault: answers
                .iter()
                .filter(|a| a.at > t0 && a.status != 200)
                .count() as u64,
            retried: answers.iter().filter(|a| a.retried).count() as u64,
            client_shift_ms: answers
                .iter()
                .filter(ok)
                .find(|a| a.at > t0 && a.region != failed_region)
                .map(|a| a.at.duration_since(t0).as_millis() as u64),
            last_failed_region_answer_ms: answers
                .iter()
                .filter(ok)
                .filter(|a| a.region == failed_region)
                .map(|a| rel(a.at))
                .max(),
            last_sent_to_failed_region_ms: last_sent_ms,
        }
    }
}
