//! Listening sockets that a supervisor binds once and hands to every (re)start of a node.
//!
//! Picking a free port, closing it and letting the child bind it later is a race: anything on
//! the machine may take the port in between (CI failed exactly so, `Address already in use`).
//! Here the supervisor binds the socket itself and keeps it for the node's whole life; each
//! child inherits the descriptor (`arbiter serve --listen-fd grpc=FD`), calls `listen()` on it
//! and serves. The port is never free while the supervisor runs.
//!
//! Invariants:
//! - A [`HeldSocket`] owns its port from [`HeldSocket::bind`] until it is dropped, including
//!   the time between a child's death and its restart.
//! - While no child runs, the socket is bound but **not listening**, so a connect is refused
//!   and a killed node looks dead to its peers. The child's `listen()` acts on the socket the
//!   supervisor shares with it; without [`HeldSocket::stop_listening`] after the child is
//!   reaped, the kernel would keep completing handshakes into a backlog nobody accepts, and
//!   peers would hang on a dead node instead of failing over.
//! - The supervisor's copy is close-on-exec: only the child it is meant for inherits it.

use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, Socket, Type};

/// Pending connections a node's listener queues before it accepts them.
const BACKLOG: i32 = 1024;

/// A bound TCP socket that outlives the node processes serving on it.
#[derive(Debug)]
pub struct HeldSocket {
    socket: Socket,
    addr: SocketAddr,
}

impl HeldSocket {
    /// Binds `addr` (port 0: a port the kernel picks) without listening.
    pub fn bind(addr: SocketAddr) -> std::io::Result<HeldSocket> {
        let socket = reusable_socket(addr)?;
        if addr.port() != 0 {
            socket.bind(&addr.into())?;
            return Ok(HeldSocket { socket, addr });
        }
        // Linux gives a socket's port back when `shutdown()` takes it out of LISTEN unless it
        // was bound to an explicit port (SOCK_BINDPORT_LOCK): a socket bound to port 0 would
        // lose its port at the first `stop_listening`. So a probe socket lets the kernel pick
        // the port, and the held socket binds that port explicitly while the probe still owns
        // it — allowed because both set SO_REUSEADDR and neither listens. The port is never
        // free in between.
        let probe = reusable_socket(addr)?;
        probe.bind(&addr.into())?;
        let picked = local_addr(&probe)?;
        socket.bind(&picked.into())?;
        drop(probe);
        Ok(HeldSocket {
            socket,
            addr: picked,
        })
    }

    /// The bound address (with the port the kernel picked, if it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The descriptor a child inherits; it is close-on-exec here, so the spawner must clear
    /// that flag in the child only (see `local_cluster`).
    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Returns the socket to bound-but-not-listening after the child that listened on it was
    /// reaped: pending and future connects are refused, the port stays ours. A no-op if no
    /// child ever listened.
    pub fn stop_listening(&self) -> std::io::Result<()> {
        if !self.socket.is_listener()? {
            // shutdown() on a socket that is not listening would mark it shut for reading,
            // which would stick to the next child's listener.
            return Ok(());
        }
        // On Linux, SHUT_RD on a listening socket runs tcp_disconnect: the backlog is reset
        // and the state goes back to CLOSE, keeping the explicit port binding (see `bind`).
        self.socket.shutdown(Shutdown::Read)
    }
}

fn reusable_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    // socket2 creates the socket close-on-exec.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Needed to listen again after a killed child leaves accepted connections in TIME_WAIT,
    // and for the probe trick in `bind`. It does not let anyone else take the port while it
    // is held: the kernel's port-0 allocator and outgoing connects skip bound ports, and no
    // second socket can listen on it while a child does.
    socket.set_reuse_address(true)?;
    Ok(socket)
}

fn local_addr(socket: &Socket) -> std::io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound socket has no IP address"))
}

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("fd {fd} is not an open descriptor: {source}")]
    NotOpen {
        fd: RawFd,
        #[source]
        source: std::io::Error,
    },
    #[error("fd {fd} is not a TCP stream socket")]
    NotStreamSocket { fd: RawFd },
    #[error("cannot listen on fd {fd}: {source}")]
    Listen {
        fd: RawFd,
        #[source]
        source: std::io::Error,
    },
}

/// The child's side: takes ownership of inherited descriptor `fd` (a bound TCP socket, or
/// one already listening), listens on it and returns a non-blocking listener for tokio.
///
/// Call once per descriptor: the returned listener owns and closes it.
pub fn adopt_listener(fd: RawFd) -> Result<std::net::TcpListener, AdoptError> {
    // F_GETFD only reads the descriptor flags: it proves `fd` is open before anything takes
    // ownership of it.
    // SAFETY: fcntl(2) on an arbitrary integer is harmless; it fails with EBADF if not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(AdoptError::NotOpen {
            fd,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` is open (checked above) and was handed to this process by its supervisor
    // for exactly this use; config validation rejects naming one descriptor twice, so nothing
    // else in this process owns it.
    let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let is_stream = socket.r#type().is_ok_and(|t| t == Type::STREAM)
        && socket.local_addr().is_ok_and(|a| a.as_socket().is_some());
    if !is_stream {
        // Give the descriptor back untouched: it is not ours to close.
        std::mem::forget(socket);
        return Err(AdoptError::NotStreamSocket { fd });
    }
    let listen =
        |result: std::io::Result<()>| result.map_err(|source| AdoptError::Listen { fd, source });
    // The node's own children (driver commands) must not inherit the listener.
    listen(socket.set_cloexec(true))?;
    listen(socket.listen(BACKLOG))?;
    listen(socket.set_nonblocking(true))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::net::{Ipv4Addr, TcpStream};
    use std::os::fd::IntoRawFd;

    use super::*;

    fn loopback_any() -> SocketAddr {
        (Ipv4Addr::LOCALHOST, 0).into()
    }

    fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
        TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
    }

    /// Stands in for a child process: adopts a duplicate of the held descriptor, as a child
    /// inherits one.
    fn adopt_copy(held: &HeldSocket) -> std::net::TcpListener {
        let copy = held.socket.try_clone().expect("dup").into_raw_fd();
        adopt_listener(copy).expect("adopt")
    }

    #[test]
    fn a_held_socket_refuses_until_adopted_and_again_after_the_adopter_is_gone() {
        let held = HeldSocket::bind(loopback_any()).expect("bind");
        let addr = held.local_addr();
        assert_ne!(addr.port(), 0, "the kernel picked a port");
        let refused = |what: &str| {
            let e = connect(addr).expect_err(what);
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{what}: {e}");
        };
        refused("bound, never listened");

        for round in 0..3 {
            let listener = adopt_copy(&held);
            connect(addr).unwrap_or_else(|e| panic!("round {round}: adopted socket serves: {e}"));
            drop(listener);
            // The adopter's copy is closed but ours still listens: this is the hang the
            // supervisor must undo.
            assert!(held.socket.is_listener().expect("SO_ACCEPTCONN"));
            held.stop_listening().expect("stop listening");
            refused("after stop_listening");
            assert_eq!(held.local_addr(), addr);
        }
    }

    #[test]
    fn a_stopped_socket_keeps_its_port() {
        let held = HeldSocket::bind(loopback_any()).expect("bind");
        drop(adopt_copy(&held));
        held.stop_listening().expect("stop listening");
        // Negative control for the port-0 subtlety: nobody else may bind the port now.
        let other = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let e = other
            .bind(&held.local_addr().into())
            .expect_err("the port is still held");
        assert_eq!(e.kind(), ErrorKind::AddrInUse);
    }

    #[test]
    fn adopting_something_that_is_not_a_socket_is_refused() {
        let file = tempfile::tempfile().expect("temp file");
        let fd = file.as_raw_fd();
        assert!(matches!(
            adopt_listener(fd),
            Err(AdoptError::NotStreamSocket { .. })
        ));
        // The file is still open and ours.
        assert_ne!(unsafe { libc::fcntl(fd, libc::F_GETFD) }, -1);
        assert!(matches!(
            adopt_listener(-1),
            Err(AdoptError::NotOpen { .. })
        ));
    }
}
