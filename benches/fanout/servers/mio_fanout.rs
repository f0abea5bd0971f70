//! The hand-written mio fan-out loop: the practical limit.
//!
//! One thread per loop, each with its own `SO_REUSEPORT` listener, a slab of
//! connections and one 64 KiB read buffer. The loop that reads the publisher
//! copies each read's complete messages once into one shared `Bytes`, writes it
//! straight to each of its own members (one `write` each; only what the socket
//! does not take is queued, as a refcounted slice) and hands the same `Bytes` to
//! every other loop through a channel and a `Waker`. A loop woken with several
//! messages writes them to each member in one `writev`. Nothing is allocated or
//! copied per member. It trusts its peers (the client reads everything), so it has
//! no slow-member policy.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::{process, thread};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;
use socket2::{Domain, Socket, Type};

use super::{Running, count_copies};
use crate::wire;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
/// Room for a whole partial message plus a full read.
const READ_BUFFER: usize = 64 * 1024 + wire::MAX_MESSAGE;
/// Segments written in one `writev`; more wait for the next one.
const MAX_IOVECS: usize = 64;

/// How one loop reaches the others.
struct Peer {
    tx: Sender<Bytes>,
    waker: Arc<Waker>,
}

pub(super) fn start(addr: SocketAddr, loops: usize) -> io::Result<Running> {
    let loops = loops.max(1);
    let mut addr = addr;
    let mut polls = Vec::new();
    let mut listeners = Vec::new();
    let mut peers = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..loops {
        let mut listener = bind_reuse_port(addr)?;
        addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel();
        peers.push(Peer { tx, waker });
        inboxes.push(rx);
        polls.push(poll);
        listeners.push(listener);
    }
    let peers = Arc::new(peers);
    for (id, ((poll, listener), inbox)) in polls.into_iter().zip(listeners).zip(inboxes).enumerate()
    {
        let peers = Arc::clone(&peers);
        thread::Builder::new()
            .name(format!("mio-fanout-{id}"))
            .spawn(move || {
                let mut fanout = Loop {
                    id,
                    peers,
                    inbox,
                    conns: Slab::new(),
                };
                if let Err(e) = fanout.serve(poll, &listener) {
                    // Exit at once so the parent sees a dead server, not a silent one.
                    eprintln!("mio server: {e}");
                    process::exit(1);
                }
            })?;
    }
    // The loop threads end with the child process; they need no stop of their own.
    Ok(Running {
        addr,
        stop: Box::new(|| {}),
        copies: Box::new(super::copies),
    })
}

fn bind_reuse_port(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(TcpListener::from_std(socket.into()))
}

#[derive(PartialEq, Eq)]
enum Role {
    /// Nothing read yet.
    New,
    Member,
    Publisher,
}

struct Conn {
    stream: TcpStream,
    token: Token,
    /// Whether WRITABLE interest is registered (exactly while `unsent` is not empty).
    writable_interest: bool,
    role: Role,
    /// The publisher's incomplete last message.
    partial: Vec<u8>,
    /// What the socket has not taken yet, in order.
    unsent: VecDeque<Bytes>,
}

struct Loop {
    id: usize,
    peers: Arc<Vec<Peer>>,
    inbox: Receiver<Bytes>,
    conns: Slab<Conn>,
}

impl Loop {
    fn serve(&mut self, mut poll: Poll, listener: &TcpListener) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; READ_BUFFER];
        let mut batch = Vec::new();
        loop {
            match poll.poll(&mut events, None) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => result?,
            }
            let registry = poll.registry();
            for event in &events {
                match event.token() {
                    LISTENER => self.accept_all(listener, registry)?,
                    WAKER => {
                        batch.extend(self.inbox.try_iter());
                        self.deliver_local(registry, &batch);
                        batch.clear();
                    }
                    Token(key) => {
                        let mut open = true;
                        if event.is_writable() {
                            open = self.flush(key, registry).is_ok();
                        }
                        if open && event.is_readable() {
                            open = self.read(key, registry, &mut buf).unwrap_or(false);
                        }
                        if !open {
                            // Closing the socket also removes it from the epoll set.
                            self.conns.remove(key);
                        }
                    }
                }
            }
        }
    }

    fn accept_all(&mut self, listener: &TcpListener, registry: &Registry) -> io::Result<()> {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nodelay(true)?;
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    registry.register(&mut stream, token, Interest::READABLE)?;
                    entry.insert(Conn {
                        stream,
                        token,
                        writable_interest: false,
                        role: Role::New,
                        partial: Vec::new(),
                        unsent: VecDeque::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what `key` sent; false when it is gone.
    fn read(&mut self, key: usize, registry: &Registry, buf: &mut [u8]) -> io::Result<bool> {
        loop {
            let conn = &mut self.conns[key];
            // The publisher's partial message goes first in the buffer.
            let kept = conn.partial.len();
            buf[..kept].copy_from_slice(&conn.partial);
            let n = match conn.stream.read(&mut buf[kept..]) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut input = &buf[..kept + n];
            if conn.role == Role::New {
                conn.role = match input[0] {
                    wire::SUBSCRIBE => Role::Member,
                    wire::PUBLISH => Role::Publisher,
                    _ => return Ok(false),
                };
                input = &input[1..];
                if conn.role == Role::Member {
                    conn.unsent.push_back(Bytes::from_static(&[wire::JOINED]));
                    self.flush(key, registry)?;
                }
            }
            let conn = &mut self.conns[key];
            if conn.role != Role::Publisher {
                continue;
            }
            let whole = complete_prefix(input)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "message too long"))?;
            conn.partial.clear();
            conn.partial.extend_from_slice(&input[whole..]);
            if whole == 0 {
                continue;
            }
            let messages = Bytes::copy_from_slice(&input[..whole]);
            count_copies(count_messages(&messages));
            for (id, peer) in self.peers.iter().enumerate() {
                if id != self.id && peer.tx.send(messages.clone()).is_ok() {
                    peer.waker.wake()?;
                }
            }
            self.deliver_local(registry, std::slice::from_ref(&messages));
        }
    }

    /// Queues `batch` to every member of this loop and writes it.
    fn deliver_local(&mut self, registry: &Registry, batch: &[Bytes]) {
        if batch.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        for (key, conn) in &mut self.conns {
            if conn.role != Role::Member {
                continue;
            }
            let backlog = !conn.unsent.is_empty();
            conn.unsent.extend(batch.iter().cloned());
            // A member with a backlog waits for WRITABLE, already registered.
            if !backlog && conn.write_unsent(registry).is_err() {
                gone.push(key);
            }
        }
        for key in gone {
            self.conns.remove(key);
        }
    }

    fn flush(&mut self, key: usize, registry: &Registry) -> io::Result<()> {
        self.conns[key].write_unsent(registry)
    }
}

impl Conn {
    /// Writes the queue with `writev` until it is empty or the socket is full;
    /// WRITABLE interest is held exactly while something is left.
    fn write_unsent(&mut self, registry: &Registry) -> io::Result<()> {
        while !self.unsent.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = self.unsent.len().min(MAX_IOVECS);
            for (slice, segment) in slices.iter_mut().zip(&self.unsent) {
                *slice = IoSlice::new(segment);
            }
            let mut n = match self.stream.write_vectored(&slices[..count]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.want_writable(registry, true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            while n > 0 {
                let front = self.unsent.front_mut().expect("written bytes were queued");
                if n >= front.len() {
                    n -= front.len();
                    self.unsent.pop_front();
                } else {
                    let _ = front.split_to(n);
                    n = 0;
                }
            }
        }
        self.want_writable(registry, false)
    }

    fn want_writable(&mut self, registry: &Registry, on: bool) -> io::Result<()> {
        if self.writable_interest == on {
            return Ok(());
        }
        self.writable_interest = on;
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        registry.reregister(&mut self.stream, self.token, interest)
    }
}

/// How many bytes at the front of `input` are whole messages; `None` when a
/// length field exceeds [`wire::MAX_MESSAGE`].
fn complete_prefix(input: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(len) = wire::message_len(&input[at..]) {
        if len > wire::MAX_MESSAGE {
            return None;
        }
        if input.len() - at < len {
            break;
        }
        at += len;
    }
    Some(at)
}

fn count_messages(mut messages: &[u8]) -> u64 {
    let mut n = 0;
    while let Some(len) = wire::message_len(messages) {
        messages = &messages[len..];
        n += 1;
    }
    n
}
