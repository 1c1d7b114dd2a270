//! The drill's cross-region replication link: the us-west-2 standby reaches the us-east-1
//! primary through this TCP → unix-socket forwarder, which holds every chunk for half the
//! round trip in each direction (the seed's 70 ms between regions; `tc netem` is not
//! available everywhere, so the WAN is simulated here) and can be cut while both databases stay
//! up (the partition scenarios).
//!
//! Invariant: once [`Link::cut`] returns, no byte crosses: open connections are dropped and new
//! ones are closed on accept. Bytes keep their order in each direction.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub struct Link {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Link {
    /// Listens on a kernel-chosen loopback port and forwards each connection to `socket`,
    /// each way `one_way` late.
    pub async fn start(socket: PathBuf, one_way: Duration) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, cut_rx) = watch::channel(false);
        let socket = Arc::new(socket);
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *cut_rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let socket = socket.clone();
                let mut cut = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = UnixStream::connect(socket.as_path()).await else {
                        return;
                    };
                    let (a_read, a_write) = inbound.into_split();
                    let (b_read, b_write) = outbound.into_split();
                    tokio::select! {
                        _ = delayed_copy(a_read, b_write, one_way) => {}
                        _ = delayed_copy(b_read, a_write, one_way) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Ok(Link { addr, cut, task })
    }

    /// Where the standby connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read, in order.
async fn delayed_copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin + Send + 'static,
    delay: Duration,
) {
    // Bounded: a reader far ahead of a slow writer waits instead of filling memory.
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    // The writer drains what was read before the reader saw the end.
    tokio::join!(reader, writer);
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
