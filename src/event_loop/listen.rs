//! A loop's listening sockets: accepting streams, reading datagrams.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::{TcpListener, UdpSocket, UnixListener};
use mio::{Interest, Registry, Token};

use crate::net::stream::Stream;

/// A listening socket of any family.
#[derive(Debug)]
pub(crate) enum ListenSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
    Udp(UdpSocket),
}

impl ListenSocket {
    /// Accepts one stream (never called for UDP).
    pub(super) fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            ListenSocket::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), Some(a))),
            ListenSocket::Unix(l) => l.accept().map(|(s, _)| (Stream::Unix(s), None)),
            ListenSocket::Udp(_) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
        }
    }

    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let source: &mut dyn Source = match self {
            ListenSocket::Tcp(l) => l,
            ListenSocket::Unix(l) => l,
            ListenSocket::Udp(s) => s,
        };
        registry.register(source, token, Interest::READABLE)
    }

    pub(super) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        let source: &mut dyn Source = match self {
            ListenSocket::Tcp(l) => l,
            ListenSocket::Unix(l) => l,
            ListenSocket::Udp(s) => s,
        };
        registry.deregister(source)
    }
}

/// What the engine hands a loop for each listening socket.
#[derive(Debug)]
pub(crate) struct LoopListener {
    pub(crate) socket: ListenSocket,
    /// Index of the address in the order given to the builder.
    pub(crate) tag: usize,
    /// This loop accepts for every loop (one listener for all, balanced).
    pub(crate) shared: bool,
    /// The socket file to remove when the engine stops (if still ours).
    pub(crate) unix_path: Option<crate::net::socket_file::SocketFile>,
}

pub(super) struct Listener {
    pub(super) inner: LoopListener,
    /// Accepting is paused after EMFILE/ENFILE until then.
    pub(super) paused_until: Option<Instant>,
    pub(super) backoff: Duration,
}
