//! Outbound connections: non-blocking connect, connect timeout, redial with
//! backoff. The connection then runs through the same callbacks as an accepted one.

use std::io;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Interest, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::core::{DialInfo, PendingClose, SlotIo};
use super::{
    CONNECTING, Callback, EventLoop, MAX_CONN_KEY, NO_LISTENER, REG_READ, REG_WRITE, Slot,
};
use crate::client::backoff::Backoff;
use crate::client::{ConnectFailure, ConnectOptions, DialRequest, Redial};
use crate::handler::EventHandler;
use crate::net::ListenAddr;
use crate::net::SocketOptions;
use crate::net::stream::Stream;
use crate::timeouts::Timing;
use crate::timer::deadline::ms_after;

/// A link waiting for its next attempt, holding the application's state.
pub(super) struct PendingDial<S> {
    info: Box<DialInfo>,
    state: S,
}

impl<H: EventHandler> EventLoop<H> {
    /// A `Connect` command arrived.
    pub(super) fn dial_requested(&mut self, req: DialRequest) {
        let DialRequest {
            dial,
            addr,
            state,
            options,
        } = req;
        let state = match state.downcast::<H::State>() {
            Ok(state) => *state,
            Err(_) => {
                log::error!(
                    "loop {}: {dial} to {addr} dropped: its state is not the handler's State type",
                    self.core.loop_id
                );
                return;
            }
        };
        let ConnectOptions {
            timeout,
            reconnect,
            #[cfg(feature = "tls")]
            tls,
            ..
        } = options;
        let backoff = reconnect.map(|p| Backoff::new(p, dial.as_u64() ^ self.core.now_ms));
        let info = Box::new(DialInfo {
            dial,
            addr,
            timeout,
            backoff,
            #[cfg(feature = "tls")]
            tls,
        });
        self.start_dial(PendingDial { info, state });
    }

    /// Starts one non-blocking connect attempt.
    pub(super) fn start_dial(&mut self, pending: PendingDial<H::State>) {
        if self.stopping.is_some() {
            return;
        }
        let PendingDial { info, state } = pending;
        let mut stream = match connect_nonblocking(&info.addr, &self.opts.socket) {
            Ok(s) => s,
            Err(error) => return self.dial_failed(info, state, error),
        };
        let key = self.conns.vacant_key();
        if key > MAX_CONN_KEY {
            return self.dial_failed(info, state, io::Error::other("connection slab full"));
        }
        if let Err(error) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.dial_failed(info, state, error);
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut timing = Timing::new(self.core.now_ms);
        let deadline = ms_after(self.core.now_ms, info.timeout);
        timing.entry = Some(
            self.core
                .conn_wheel
                .insert(deadline, (key as u32, generation)),
        );
        self.core.note_deadline(deadline);
        self.conns.insert(Slot {
            io: SlotIo {
                stream,
                generation,
                flags: CONNECTING | REG_READ | REG_WRITE,
                listener: NO_LISTENER,
                inbound: None,
                outbound: None,
                timing,
                dial: Some(info),
                close: PendingClose::None,
                dropped: 0,
                layer: None,
            },
            state,
        });
    }

    /// An event on a connection still connecting: it either completed or failed.
    pub(super) fn connect_event(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let outcome = match slot.io.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match slot.io.stream.check_connected() {
                Ok(_) => Ok(()),
                // Not connected yet and no error: a spurious wakeup.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(()) => self.established(key),
            Err(error) => self.connecting_failed(key, error),
        }
    }

    fn established(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.io.flags &= !CONNECTING;
        if let Some(entry) = slot.io.timing.entry.take() {
            self.core.conn_wheel.cancel(entry);
        }
        slot.io.timing = Timing::new(self.core.now_ms);
        if let Some(backoff) = slot.io.dial.as_mut().and_then(|d| d.backoff.as_mut()) {
            backoff.on_connected(self.core.now_ms);
        }
        let counters = self.core.engine.counters(self.core.loop_id);
        counters
            .open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::stats::bump(&counters.accepted, 1);
        self.update_interest(key);
        self.rearm(key);
        if !self.dialed_layer(key) {
            self.callback(key, Callback::Open);
        }
    }

    /// The attempt in slot `key` failed (error or connect timeout).
    pub(super) fn connecting_failed(&mut self, key: usize, error: io::Error) {
        let Some(slot) = self.conns.try_remove(key) else {
            return;
        };
        if let Some(entry) = slot.io.timing.entry {
            self.core.conn_wheel.cancel(entry);
        }
        let Slot { io, state } = slot;
        let dial = io.dial;
        match dial {
            Some(info) => self.dial_failed(info, state, error),
            None => log::error!(
                "loop {}: a connecting slot without dial info",
                self.core.loop_id
            ),
        }
    }

    /// Tells the handler, then schedules the next attempt if the policy allows.
    fn dial_failed(&mut self, mut info: Box<DialInfo>, mut state: H::State, error: io::Error) {
        let now = self.core.now_ms;
        let retry_in = if self.stopping.is_some() {
            None
        } else {
            info.backoff.as_mut().and_then(|b| b.next_delay(now))
        };
        let failure = ConnectFailure {
            dial: info.dial,
            addr: info.addr.clone(),
            error,
            retry_in,
            attempt: info.backoff.as_ref().map_or(1, |b| b.attempt().max(1)),
        };
        self.with_ctx(|h, ctx| h.on_connect_failed(ctx, &failure, &mut state));
        if let Some(delay) = retry_in {
            self.schedule_dial(PendingDial { info, state }, delay);
        }
    }

    /// An established dialed connection closed: redial if its policy says so.
    pub(super) fn maybe_redial(&mut self, mut info: Box<DialInfo>, mut state: H::State) {
        if self.stopping.is_some() {
            return;
        }
        let Some(delay) = info
            .backoff
            .as_mut()
            .and_then(|b| b.next_delay(self.core.now_ms))
        else {
            return;
        };
        let redial = Redial {
            dial: info.dial,
            addr: info.addr.clone(),
            delay,
            attempt: info.backoff.as_ref().map_or(1, |b| b.attempt()),
        };
        self.with_ctx(|h, ctx| h.on_reconnecting(ctx, &redial, &mut state));
        self.schedule_dial(PendingDial { info, state }, delay);
    }

    fn schedule_dial(&mut self, pending: PendingDial<H::State>, delay: Duration) {
        let at = ms_after(self.core.now_ms, delay);
        let key = self.pending_dials.insert(pending);
        self.dial_wheel.insert(at, key as u32);
        self.core.note_deadline(at);
    }

    /// Starts the attempts whose delay is over.
    pub(super) fn run_due_dials(&mut self) {
        while let Some((_, key)) = self.dial_wheel.poll_expired(self.core.now_ms) {
            if let Some(pending) = self.pending_dials.try_remove(key as usize) {
                self.start_dial(pending);
            }
        }
    }
}

/// Starts a non-blocking connect; completion is reported as writability.
fn connect_nonblocking(addr: &ListenAddr, opts: &SocketOptions) -> io::Result<Stream> {
    let (socket, target, tcp) = match addr {
        ListenAddr::Tcp(sa) => {
            let socket = Socket::new(Domain::for_address(*sa), Type::STREAM, Some(Protocol::TCP))?;
            (socket, socket2::SockAddr::from(*sa), true)
        }
        ListenAddr::Unix(path) => (
            Socket::new(Domain::UNIX, Type::STREAM, None)?,
            socket2::SockAddr::unix(path)?,
            false,
        ),
        _ => return Err(io::Error::from(io::ErrorKind::Unsupported)),
    };
    socket.set_nonblocking(true)?;
    if tcp {
        opts.apply_device(&socket)?;
    }
    opts.apply_to_conn(&socket2::SockRef::from(&socket), tcp)?;
    match socket.connect(&target) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(if tcp {
        Stream::Tcp(TcpStream::from_std(socket.into()))
    } else {
        Stream::Unix(mio::net::UnixStream::from_std(socket.into()))
    })
}
