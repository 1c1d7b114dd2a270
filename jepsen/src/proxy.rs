//! A userspace TCP proxy for one directed link between two nodes, with run-time control of
//! one-way latency, stalls and cuts.
//!
//! Invariant: bytes leave in the order they arrived, each no earlier than its arrival time plus
//! the delay in force when it arrived. Latency is a delay queue per direction (a reader stamps
//! chunks, a writer releases them when due), so a 75 ms link still carries many chunks per 75 ms
//! instead of one. Only loopback targets are accepted and the proxy listens on 127.0.0.1 only.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Which way bytes travel through a link proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the dialing node to the target: requests.
    Forward,
    /// From the target back to the dialing node: responses.
    Backward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectionState {
    /// One-way latency added to every byte.
    pub delay: Duration,
    /// Bytes are held (not dropped) until healed; TCP backpressure stops the sender once the
    /// queue is full, as on a link that silently loses everything.
    pub stalled: bool,
}

/// Everything that can be controlled on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkState {
    pub forward: DirectionState,
    pub backward: DirectionState,
    /// Existing connections are dropped and new ones closed on arrival.
    pub cut: bool,
}

impl LinkState {
    fn direction(&self, d: Direction) -> &DirectionState {
        match d {
            Direction::Forward => &self.forward,
            Direction::Backward => &self.backward,
        }
    }

    fn direction_mut(&mut self, d: Direction) -> &mut DirectionState {
        match d {
            Direction::Forward => &mut self.forward,
            Direction::Backward => &mut self.backward,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy target {target} is not a loopback address")]
    NotLoopback { target: SocketAddr },
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(#[source] io::Error),
}

/// Largest chunk read at once.
const CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction before the reader stops reading (≤ 16 MiB): enough for a
/// loaded link at 75 ms one-way, small enough that a stall pushes back on the sender.
const QUEUE_CHUNKS: usize = 1024;

/// One directed link. Dropping it closes the listener and every connection through it.
pub struct LinkProxy {
    local_addr: SocketAddr,
    target: SocketAddr,
    state: watch::Sender<LinkState>,
    accept: JoinHandle<()>,
}

impl LinkProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `target`, with `delay` one-way
    /// latency in each direction.
    pub async fn start(target: SocketAddr, delay: Duration) -> Result<LinkProxy, ProxyError> {
        if !target.ip().is_loopback() {
            return Err(ProxyError::NotLoopback { target });
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(ProxyError::Bind)?;
        let local_addr = listener.local_addr().map_err(ProxyError::Bind)?;
        let mut initial = LinkState::default();
        initial.forward.delay = delay;
        initial.backward.delay = delay;
        let (state, rx) = watch::channel(initial);
        let accept = tokio::spawn(accept_loop(listener, target, rx));
        Ok(LinkProxy {
            local_addr,
            target,
            state,
            accept,
        })
    }

    /// Where the dialing node connects instead of the target.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    /// Applies to bytes arriving from now on; bytes already queued keep their release time.
    pub fn set_delay(&self, direction: Direction, delay: Duration) {
        self.state
            .send_modify(|s| s.direction_mut(direction).delay = delay);
    }

    /// Holds bytes going `direction` until [`heal`](Self::heal).
    pub fn stall(&self, direction: Direction) {
        self.state
            .send_modify(|s| s.direction_mut(direction).stalled = true);
    }

    /// Drops every connection and closes new ones until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.state.send_modify(|s| s.cut = true);
    }

    /// Lifts cuts and stalls (held bytes flow at once); delays stay, they are the geography.
    pub fn heal(&self) {
        self.state.send_modify(|s| {
            s.cut = false;
            s.forward.stalled = false;
            s.backward.stalled = false;
        });
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        // The accept task owns the JoinSet of connections, so this ends them all.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: watch::Receiver<LinkState>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                // A cut link accepts and drops at once: the dialer sees the connection close,
                // and the target never hears of it.
                Ok((_, _)) if state.borrow().cut => {}
                Ok((client, _)) => {
                    connections.spawn(serve(client, target, state.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(%target, error = %e, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow for the whole run.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(client: TcpStream, target: SocketAddr, mut state: watch::Receiver<LinkState>) {
    let (forward_state, backward_state) = (state.clone(), state.clone());
    let relay = async move {
        let upstream = match TcpStream::connect(target).await {
            Ok(s) => s,
            // The target is down (killed node): closing the client side is the honest answer.
            Err(e) => {
                tracing::debug!(%target, error = %e, "proxy cannot reach target");
                return;
            }
        };
        // Raft messages are small and latency-bound; Nagle would add its own delay on top.
        for s in [&client, &upstream] {
            if let Err(e) = s.set_nodelay(true) {
                tracing::debug!(error = %e, "set_nodelay failed");
            }
        }
        let (client_read, client_write) = client.into_split();
        let (upstream_read, upstream_write) = upstream.into_split();
        tokio::join!(
            pump(
                client_read,
                upstream_write,
                Direction::Forward,
                forward_state
            ),
            pump(
                upstream_read,
                client_write,
                Direction::Backward,
                backward_state
            ),
        );
    };
    tokio::select! {
        () = relay => {}
        // Cut, or the proxy is gone: dropping `relay` drops both sockets.
        _ = state.wait_for(|s| s.cut) => {}
    }
}

/// A chunk of bytes and the instant it may leave.
struct Chunk {
    bytes: Vec<u8>,
    due: Instant,
}

/// Moves one direction of one connection through a delay queue.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    state: watch::Receiver<LinkState>,
) {
    let (queue, mut due) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let reader_state = state.clone();
    let read = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let delay = reader_state.borrow().direction(direction).delay;
            let chunk = Chunk {
                bytes: buf[..n].to_vec(),
                due: Instant::now() + delay,
            };
            if queue.send(chunk).await.is_err() {
                break;
            }
        }
        // Dropping `queue` tells the writer no more is coming.
    };
    let write = async move {
        let mut state = state;
        while let Some(chunk) = due.recv().await {
            tokio::time::sleep_until(chunk.due).await;
            if state
                .wait_for(|s| !s.direction(direction).stalled)
                .await
                .is_err()
            {
                return;
            }
            if to.write_all(&chunk.bytes).await.is_err() {
                return;
            }
        }
        // Pass the half-close on once everything before it has been delivered.
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::time::timeout;

    /// An echo server on loopback that counts the connections it accepted.
    async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (addr, accepted)
    }

    async fn round_trip(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
        stream.write_all(payload).await.unwrap();
        let mut back = vec![0u8; payload.len()];
        stream.read_exact(&mut back).await.unwrap();
        back
    }

    /// The connection is closed (EOF or reset) within a second.
    async fn is_closed(stream: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            timeout(Duration::from_secs(1), stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn bytes_pass_through_intact_and_in_order() {
        let (target, _) = echo_server().await;
        let proxy = LinkProxy::start(target, Duration::ZERO).await.unwrap();
        let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut r, mut w) = s.split();
        let (_, back) = tokio::join!(async { w.write_all(&payload).await.unwrap() }, async {
            let mut back = vec![0u8; payload.len()];
            r.read_exact(&mut back).await.unwrap();
            back
        });
        assert!(back == payload, "echoed bytes differ");
    }

    #[tokio::test]
    async fn latency_is_at_least_the_configured_delay_each_way() {
        let (target, _) = echo_server().await;
        let proxy = LinkProxy::start(target, Duration::ZERO).await.unwrap();
        proxy.set_delay(Direction::Forward, Duration::from_millis(40));
        proxy.set_delay(Direction::Backward, Duration::from_millis(25));
        let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
        for _ in 0..3 {
            let started = std::time::Instant::now();
            assert_eq!(round_trip(&mut s, b"ping").await, b"ping");
            assert!(
                started.elapsed() >= Duration::from_millis(65),
                "{:?}",
                started.elapsed()
            );
        }
    }

    #[tokio::test]
    async fn delay_queue_pipelines_instead_of_serializing() {
        let (target, _) = echo_server().await;
        let delay = Duration::from_millis(100);
        let proxy = LinkProxy::start(target, Duration::ZERO).await.unwrap();
        proxy.set_delay(Direction::Forward, delay);
        let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let (mut r, mut w) = s.split();
        let started = std::time::Instant::now();
        let sends = 20;
        let write = async {
            for i in 0..sends {
                w.write_all(&[i as u8; 100]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let read = async {
            let mut back = vec![0u8; sends * 100];
            r.read_exact(&mut back).await.unwrap();
            back
        };
        let (_, back) = tokio::join!(write, read);
        let elapsed = started.elapsed();
        // ~200 ms of sending + one 100 ms delay; a sleep per read would need 20 × 100 ms.
        assert!(elapsed >= delay, "{elapsed:?}");
        assert!(elapsed < delay * 8, "throughput serialized: {elapsed:?}");
        let expected: Vec<u8> = (0..sends).flat_map(|i| [i as u8; 100]).collect();
        assert_eq!(back, expected);
    }

    #[tokio::test]
    async fn cut_closes_connections_and_refuses_new_ones_until_healed() {
        let (target, accepted) = echo_server().await;
        let proxy = LinkProxy::start(target, Duration::ZERO).await.unwrap();
        let mut before = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(round_trip(&mut before, b"hi").await, b"hi");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        proxy.cut();
        assert!(
            is_closed(&mut before).await,
            "existing connection survived the cut"
        );
        // The listener still accepts at the TCP level, but the connection is dropped at once
        // and the target never sees it.
        if let Ok(mut during) = TcpStream::connect(proxy.local_addr()).await {
            let _ = during.write_all(b"hi").await;
            assert!(
                is_closed(&mut during).await,
                "new connection passed a cut link"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        proxy.heal();
        let mut after = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(round_trip(&mut after, b"back").await, b"back");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn stall_holds_bytes_and_heal_releases_them() {
        let (target, _) = echo_server().await;
        let proxy = LinkProxy::start(target, Duration::ZERO).await.unwrap();
        let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
        proxy.stall(Direction::Forward);
        s.write_all(b"held").await.unwrap();
        let mut back = [0u8; 4];
        assert!(
            timeout(Duration::from_millis(300), s.read_exact(&mut back))
                .await
                .is_err(),
            "bytes crossed a stalled link"
        );
        proxy.heal();
        timeout(Duration::from_secs(2), s.read_exact(&mut back))
            .await
            .expect("held bytes released on heal")
            .unwrap();
        assert_eq!(&back, b"held");
    }

    #[tokio::test]
    async fn non_loopback_targets_are_refused() {
        let target: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        assert!(matches!(
            LinkProxy::start(target, Duration::ZERO).await,
            Err(ProxyError::NotLoopback { .. })
        ));
    }
}
