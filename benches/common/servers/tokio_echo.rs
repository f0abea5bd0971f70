//! The idiomatic tokio reference: a multi-thread runtime and a task per connection,
//! written the way the tokio and tokio-util examples teach.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::Running;
use crate::common::wire::Proto;

pub(super) fn start(proto: Proto, addr: SocketAddr, loops: usize) -> io::Result<Running> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(loops)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(TcpListener::bind(addr))?;
    let addr = listener.local_addr()?;
    runtime.spawn(accept_loop(listener, proto));
    Ok(Running {
        addr,
        stop: Box::new(move || runtime.shutdown_background()),
    })
}

async fn accept_loop(listener: TcpListener, proto: Proto) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("tokio server: accept: {e}");
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("tokio server: set_nodelay: {e}");
        }
        tokio::spawn(async move {
            // A peer that resets its connection is routine at the end of a run.
            let _ = match proto {
                Proto::Raw => echo_raw(stream).await,
                Proto::Frame => echo_frames(stream).await,
            };
        });
    }
}

async fn echo_raw(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn echo_frames(stream: TcpStream) -> io::Result<()> {
    let mut frames = Framed::new(stream, LengthDelimitedCodec::new());
    loop {
        // A pipelining peer sends several frames at once: answer them with one
        // write, flushing only when no further frame is ready, as the raw echo does
        // by writing back whole reads. (`send` would flush, a syscall, per frame.)
        let next = match frames.next().now_or_never() {
            Some(next) => next,
            None => {
                SinkExt::<Bytes>::flush(&mut frames).await?;
                frames.next().await
            }
        };
        match next {
            Some(frame) => frames.feed(frame?.freeze()).await?,
            None => return SinkExt::<Bytes>::flush(&mut frames).await,
        }
    }
}
