//! The raw mio UDP reference: one socket, one loop, one `recv_from` and one
//! `send_to` per datagram, straight from one buffer. The practical limit of a
//! readiness loop that does not batch.

use std::io;
use std::net::SocketAddr;
use std::{process, thread};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::Running;

const SOCKET: Token = Token(0);
/// Larger than any datagram the load generator sends.
const BUFFER: usize = 2048;

pub(super) fn start(addr: SocketAddr) -> io::Result<Running> {
    let mut socket = UdpSocket::bind(addr)?;
    let addr = socket.local_addr()?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    thread::Builder::new()
        .name("mio-udp".into())
        .spawn(move || {
            if let Err(e) = serve(poll, &socket) {
                eprintln!("mio udp server: {e}");
                process::exit(1);
            }
        })?;
    Ok(Running {
        addr,
        stop: Box::new(|| {}),
    })
}

fn serve(mut poll: Poll, socket: &UdpSocket) -> io::Result<()> {
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; BUFFER];
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        }
        // One socket: any event means "read until the kernel has no more".
        if events.is_empty() {
            continue;
        }
        loop {
            let (n, peer) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors for earlier sends surface here; the socket is fine.
                Err(_) => continue,
            };
            // A reply the kernel refuses (full send buffer) is dropped, as UDP may.
            let _ = socket.send_to(&buf[..n], peer);
        }
    }
}
