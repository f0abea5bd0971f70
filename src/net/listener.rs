//! Creating listening sockets with the options the engine needs.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use mio::net::{TcpListener, UdpSocket, UnixListener};
use socket2::{Domain, Protocol, Socket, Type};

use super::SocketOptions;
use super::socket_file::{self, SocketFile};

/// Binds a non-blocking TCP listener. `reuse_port` lets every loop bind its own
/// listener to the same address so that the kernel spreads connections.
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    reuse_port: bool,
    backlog: i32,
    opts: &SocketOptions,
) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    opts.apply_before_bind(&socket, addr.is_ipv6())?;
    set_reuse_port(&socket, reuse_port)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Binds a non-blocking UDP socket; with `reuse_port` each loop binds its own and
/// the kernel spreads datagrams by source.
pub(crate) fn bind_udp(
    addr: SocketAddr,
    reuse_port: bool,
    opts: &SocketOptions,
) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    opts.apply_before_bind(&socket, addr.is_ipv6())?;
    set_reuse_port(&socket, reuse_port)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// Binds a Unix stream listener at `path`, and returns it with the identity of
/// the socket file it created (to be removed on stop only if still the same).
///
/// A socket file left behind by a process that died is removed first, but only
/// a socket and only after a non-blocking connect to it is refused: a live
/// server's socket is never stolen, and nothing that is not a socket is ever
/// deleted (see [`socket_file`](super::socket_file)).
pub(crate) fn bind_unix(
    path: &Path,
    backlog: i32,
    opts: &SocketOptions,
) -> io::Result<(UnixListener, SocketFile)> {
    socket_file::clear_stale(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    let file = SocketFile::bound_at(path)?;
    let ready = (|| {
        if let Some(mode) = opts.unix_mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        socket.listen(backlog)
    })();
    if let Err(e) = ready {
        file.remove_if_ours();
        return Err(e);
    }
    Ok((UnixListener::from_std(socket.into()), file))
}

fn set_reuse_port(socket: &Socket, on: bool) -> io::Result<()> {
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    if on {
        socket.set_reuse_port(true)?;
    }
    let _ = (socket, on);
    Ok(())
}
