//! Creating listening sockets with the options the engine needs.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use mio::net::{TcpListener, UdpSocket, UnixListener};
use socket2::{Domain, Protocol, Socket, Type};

use super::SocketOptions;

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

/// Binds a Unix stream listener at `path`.
///
/// A socket file left behind by a process that died is removed first, but only
/// after a connect to it is refused: a live server's socket is never stolen.
pub(crate) fn bind_unix(
    path: &Path,
    backlog: i32,
    opts: &SocketOptions,
) -> io::Result<UnixListener> {
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running server", path.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)?,
            Err(e) => return Err(e),
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    if let Some(mode) = opts.unix_mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    socket.listen(backlog)?;
    Ok(UnixListener::from_std(socket.into()))
}

fn set_reuse_port(socket: &Socket, on: bool) -> io::Result<()> {
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    if on {
        socket.set_reuse_port(true)?;
    }
    let _ = (socket, on);
    Ok(())
}
