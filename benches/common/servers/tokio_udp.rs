//! The idiomatic tokio UDP reference: a `recv_from` / `send_to` loop in one task on
//! a multi-thread runtime.

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

use super::Running;

pub(super) fn start(addr: SocketAddr, loops: usize) -> io::Result<Running> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(loops)
        .enable_all()
        .build()?;
    let socket = runtime.block_on(UdpSocket::bind(addr))?;
    let addr = socket.local_addr()?;
    runtime.spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, peer) = match socket.recv_from(&mut buf).await {
                Ok(got) => got,
                // ICMP errors for earlier sends surface here; the socket is fine.
                Err(_) => continue,
            };
            let _ = socket.send_to(&buf[..n], peer).await;
        }
    });
    Ok(Running {
        addr,
        stop: Box::new(move || runtime.shutdown_background()),
    })
}
