//! Creating listening sockets with the options the engine needs.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// Binds a non-blocking TCP listener. `reuse_port` lets every loop bind its own
/// listener to the same address so that the kernel spreads connections.
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    reuse_port: bool,
    backlog: i32,
) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting a server must not fail on connections lingering in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}
