//! The raw mio reference: a minimal hand-written single-threaded readiness loop.
//!
//! One listener, a slab of connections, one shared 64 KiB read buffer; bytes are
//! written back straight from that buffer. Only what a short write leaves behind is
//! copied, into the connection's own `unsent` buffer, and only then is WRITABLE
//! interest registered. This is the practical limit of a readiness-based design, the
//! yardstick for tether's overhead. It trusts its peer (the load generator reads
//! everything it is sent), so it does not stop reading while output is pending.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::{process, thread};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use super::Running;
use crate::common::wire::{self, Proto};

const LISTENER: Token = Token(usize::MAX);
const READ_BUFFER: usize = 64 * 1024;

pub(super) fn start(proto: Proto, addr: SocketAddr) -> io::Result<Running> {
    let mut listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    thread::Builder::new()
        .name("mio-echo".into())
        .spawn(move || {
            if let Err(e) = serve(poll, &listener, proto) {
                // Exit at once so the parent sees a dead server, not a silent one.
                eprintln!("mio server: {e}");
                process::exit(1);
            }
        })?;
    // The loop thread ends with the child process; it needs no stop of its own.
    Ok(Running {
        addr,
        stop: Box::new(|| {}),
    })
}

fn serve(mut poll: Poll, listener: &TcpListener, proto: Proto) -> io::Result<()> {
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        }
        for event in &events {
            if event.token() == LISTENER {
                accept_all(listener, poll.registry(), &mut conns)?;
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let registry = poll.registry();
            let mut open = true;
            if event.is_writable() {
                open = conn.flush(registry).is_ok();
            }
            if open && event.is_readable() {
                open = matches!(conn.read_and_echo(registry, &mut buf, proto), Ok(true));
            }
            if !open {
                // Closing the socket also removes it from the epoll set.
                conns.remove(key);
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    registry: &Registry,
    conns: &mut Slab<Conn>,
) -> io::Result<()> {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        stream.set_nodelay(true)?;
        let entry = conns.vacant_entry();
        let token = Token(entry.key());
        registry.register(&mut stream, token, Interest::READABLE)?;
        entry.insert(Conn {
            stream,
            token,
            unsent: Vec::new(),
            partial: Vec::new(),
        });
    }
}

struct Conn {
    stream: TcpStream,
    token: Token,
    /// Output a short write left behind; WRITABLE interest is registered while non-empty.
    unsent: Vec<u8>,
    /// Frame mode: the start of a frame whose end has not arrived yet.
    partial: Vec<u8>,
}

impl Conn {
    /// Reads until `WouldBlock`, echoing as it goes; `Ok(false)` once the peer closed.
    fn read_and_echo(
        &mut self,
        registry: &Registry,
        buf: &mut [u8],
        proto: Proto,
    ) -> io::Result<bool> {
        loop {
            let n = match self.stream.read(buf) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match proto {
                Proto::Raw => self.send(registry, &buf[..n])?,
                Proto::Frame => self.echo_frames(registry, &buf[..n])?,
            }
        }
    }

    /// Echoes every complete frame; keeps the incomplete tail for the next read.
    fn echo_frames(&mut self, registry: &Registry, data: &[u8]) -> io::Result<()> {
        if self.partial.is_empty() {
            // Common case: frames are parsed in the shared buffer, nothing is copied.
            let complete = frames_len(data)?;
            self.send(registry, &data[..complete])?;
            self.partial.extend_from_slice(&data[complete..]);
        } else {
            let mut pending = std::mem::take(&mut self.partial);
            pending.extend_from_slice(data);
            let complete = frames_len(&pending)?;
            self.send(registry, &pending[..complete])?;
            pending.drain(..complete);
            self.partial = pending;
        }
        Ok(())
    }

    /// Writes `data` directly; what does not fit waits in `unsent`.
    fn send(&mut self, registry: &Registry, mut data: &[u8]) -> io::Result<()> {
        if !self.unsent.is_empty() {
            self.unsent.extend_from_slice(data);
            return Ok(());
        }
        while !data.is_empty() {
            match self.stream.write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.unsent.extend_from_slice(data);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    return registry.reregister(&mut self.stream, self.token, interest);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes out `unsent`; drops WRITABLE interest once it is empty.
    fn flush(&mut self, registry: &Registry) -> io::Result<()> {
        let mut written = 0;
        while written < self.unsent.len() {
            match self.stream.write(&self.unsent[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.unsent.drain(..written);
        if self.unsent.is_empty() && written > 0 {
            registry.reregister(&mut self.stream, self.token, Interest::READABLE)?;
        }
        Ok(())
    }
}

fn frames_len(data: &[u8]) -> io::Result<usize> {
    wire::complete_frames_len(data).map_err(|len| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is too large"),
        )
    })
}
