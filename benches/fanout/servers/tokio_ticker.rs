//! The tokio ticker reference: `tokio::time::interval` at 60 Hz, one message per
//! tick sent into a broadcast channel, a writer task per member.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

use super::tokio_fanout::{bind, member};
use super::{Running, TICK_PERIOD, TICK_SIZE};
use crate::wire;

pub(super) fn start(addr: SocketAddr, loops: usize) -> io::Result<Running> {
    let (runtime, listener) = bind(addr, loops)?;
    let addr = listener.local_addr()?;
    // Room for 17 s of ticks: a member that falls that far behind is dropped.
    let (room, _) = broadcast::channel(1024);
    runtime.spawn(tick(room.clone(), TICK_PERIOD));
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let rx = room.subscribe();
            tokio::spawn(async move {
                let mut stream = stream;
                if stream.read_u8().await.ok() == Some(wire::SUBSCRIBE) {
                    let _ = member(stream, rx).await;
                }
            });
        }
    });
    Ok(Running {
        addr,
        stop: Box::new(move || runtime.shutdown_background()),
        copies: Box::new(super::copies),
    })
}

async fn tick(room: broadcast::Sender<Bytes>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    for seq in 0.. {
        interval.tick().await;
        let mut message = vec![0; TICK_SIZE];
        wire::encode(seq, &mut message);
        let _ = room.send(Bytes::from(message));
    }
}
