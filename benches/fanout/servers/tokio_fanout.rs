//! The idiomatic tokio reference: a multi-thread runtime, a reader and a writer
//! task per member, one `tokio::sync::broadcast` channel for the room.
//!
//! The publisher's reader task splits its stream with tokio-util's
//! `LengthDelimitedCodec` (keeping the header, so each message is forwarded whole)
//! and sends each message, a `Bytes`, into the channel; each member's writer task
//! receives it and writes it with `write_all`. The channel holds more messages than
//! the client ever has in flight, so no member lags.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::Running;
use crate::wire;

/// Messages the room's channel holds for its slowest member.
const CHANNEL: usize = 4096;

pub(super) fn start(addr: SocketAddr, loops: usize) -> io::Result<Running> {
    let (runtime, listener) = bind(addr, loops)?;
    let addr = listener.local_addr()?;
    let (room, _) = broadcast::channel(CHANNEL);
    runtime.spawn(accept_loop(listener, Arc::new(room)));
    Ok(Running {
        addr,
        stop: Box::new(move || runtime.shutdown_background()),
        copies: Box::new(super::copies),
    })
}

/// A multi-thread runtime of `loops` workers and a listener bound on it.
pub(super) fn bind(
    addr: SocketAddr,
    loops: usize,
) -> io::Result<(tokio::runtime::Runtime, TcpListener)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(loops.max(1))
        .enable_all()
        .build()?;
    let listener = runtime.block_on(TcpListener::bind(addr))?;
    Ok((runtime, listener))
}

async fn accept_loop(listener: TcpListener, room: Arc<broadcast::Sender<Bytes>>) {
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
        let room = Arc::clone(&room);
        tokio::spawn(async move {
            // A peer that resets its connection is routine at the end of a run.
            let _ = serve(stream, &room).await;
        });
    }
}

async fn serve(mut stream: TcpStream, room: &broadcast::Sender<Bytes>) -> io::Result<()> {
    match stream.read_u8().await? {
        wire::SUBSCRIBE => member(stream, room.subscribe()).await,
        wire::PUBLISH => publisher(stream, room).await,
        _ => Ok(()),
    }
}

/// A member: its writer task sends it every message of the room.
pub(super) async fn member(
    stream: TcpStream,
    mut rx: broadcast::Receiver<Bytes>,
) -> io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let writer = tokio::spawn(async move {
        writer.write_all(&[wire::JOINED]).await?;
        loop {
            match rx.recv().await {
                Ok(message) => writer.write_all(&message).await?,
                Err(e) => return Err::<(), _>(io::Error::other(e)),
            }
        }
    });
    // Members send nothing more; their end of stream ends the writer too.
    let mut sink = [0u8; 64];
    while reader.read(&mut sink).await? > 0 {}
    writer.abort();
    Ok(())
}

async fn publisher(stream: TcpStream, room: &broadcast::Sender<Bytes>) -> io::Result<()> {
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(wire::LEN_FIELD)
        .max_frame_length(wire::MAX_MESSAGE)
        // Keep the header: the frame is forwarded whole.
        .length_adjustment(wire::LEN_FIELD as isize)
        .num_skip(0)
        .new_codec();
    let mut messages = FramedRead::new(stream, codec);
    while let Some(message) = messages.next().await {
        // No member yet is no error: the message reaches no one.
        let _ = room.send(message?.freeze());
    }
    Ok(())
}
