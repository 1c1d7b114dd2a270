//! Accepting TLS connections on a listening socket, for tonic and axum alike.
//!
//! Invariant: the accept loop never waits on a handshake. Each handshake runs in its own task,
//! bounded in number ([`MAX_HANDSHAKES`]) and in time ([`HANDSHAKE_TIMEOUT`]), so a client
//! that connects and says nothing, or a flood of them, can neither stall other clients nor make
//! the node spawn without limit. A refused handshake (wrong CA, no node identity on the peer
//! port, plain TCP) is logged with the port and the remote address and then dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::{NodeTls, PortKind};
use crate::auth::PeerCertificates;

/// Handshakes in progress per port; further connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;
/// A handshake that has not finished by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub type ServerTlsStream = TlsStream<TcpStream>;

/// Starts accepting on `listener` until `stop` turns true; yields established TLS streams.
pub fn accept(
    listener: TcpListener,
    tls: Arc<NodeTls>,
    port: PortKind,
    mut stop: watch::Receiver<bool>,
) -> mpsc::Receiver<ServerTlsStream> {
    let (tx, rx) = mpsc::channel(MAX_HANDSHAKES);
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::pin!(stopped);
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (tcp, remote) = tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // EMFILE and friends: pause instead of spinning on the error.
                        tracing::warn!(port = port.name(), error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.server(port));
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(stream).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(port = port.name(), %remote, error = %e, "TLS handshake refused");
                    }
                    Err(_) => {
                        tracing::warn!(port = port.name(), %remote, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    rx
}

/// What the HTTP edge records of each connection: the client certificate chain its handshake
/// verified, if the client presented one (none on a plain TCP listener). Handlers see it as
/// `ConnectInfo<ClientChain>`; the auth middleware reads it from there.
#[derive(Debug, Clone)]
pub struct ClientChain(pub Option<PeerCertificates>);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientChain
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        let certificates = stream.io().get_ref().1.peer_certificates();
        ClientChain(certificates.map(|chain| PeerCertificates(Arc::new(chain.to_vec()))))
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for ClientChain
{
    fn connect_info(_: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        ClientChain(None)
    }
}

/// The accepted TLS streams as an axum listener.
pub struct TlsListener {
    streams: mpsc::Receiver<ServerTlsStream>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(streams: mpsc::Receiver<ServerTlsStream>, local: SocketAddr) -> Self {
        TlsListener { streams, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = ServerTlsStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.streams.recv().await {
            Some(stream) => {
                let remote = stream
                    .get_ref()
                    .0
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                (stream, remote)
            }
            // The accept loop has stopped (shutdown): no more connections will come, and the
            // graceful shutdown that stopped it ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
