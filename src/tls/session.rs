//! The sans-IO TLS driver: ciphertext in, plaintext out, ciphertext queued.

use std::sync::Arc;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{ClientConfig, ServerConfig};

use super::TlsError;

/// One TLS session driven without I/O over rustls's unbuffered API.
///
/// The caller owns every byte buffer: [`TlsSession::receive`] decrypts the
/// ciphertext it is given, appends the plaintext to one vector and any records to
/// send (handshake messages, alerts, tickets) to another, and says how much of
/// the input it used; the rest is the start of a record still arriving, to be
/// given again with the bytes that follow. [`TlsSession::send`] encrypts
/// plaintext into the outgoing vector. The session keeps no buffer of its own
/// beyond rustls's state, so an idle session holds no record bytes at all.
///
/// # Examples
///
/// A session fed by hand (in the event loop, the loop does this with the
/// connection's socket):
///
/// ```no_run
/// # fn demo(config: std::sync::Arc<rustls::ServerConfig>, wire: &mut Vec<u8>) -> Result<(), tether::tls::TlsError> {
/// use tether::tls::TlsSession;
///
/// let mut session = TlsSession::server(config)?;
/// let (mut plain, mut out) = (Vec::new(), Vec::new());
/// let used = session.receive(wire, &mut plain, &mut out)?;
/// wire.drain(..used); // keep the partial record for next time
/// // send `out` to the peer; hand `plain` to the application
/// # Ok(()) }
/// ```
pub struct TlsSession {
    side: Side,
    established: bool,
    peer_closed: bool,
    close_sent: bool,
}

enum Side {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = match self.side {
            Side::Server(_) => "server",
            Side::Client(_) => "client",
        };
        f.debug_struct("TlsSession")
            .field("side", &side)
            .field("established", &self.established)
            .field("peer_closed", &self.peer_closed)
            .field("close_sent", &self.close_sent)
            .finish()
    }
}

/// Bounded state changes per call: a peer cannot keep a call spinning.
const MAX_STEPS: usize = 64;

impl TlsSession {
    /// A server session.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] if rustls refuses the configuration.
    pub fn server(config: Arc<ServerConfig>) -> Result<TlsSession, TlsError> {
        let conn = UnbufferedServerConnection::new(config).map_err(TlsError::Config)?;
        Ok(TlsSession::new(Side::Server(conn)))
    }

    /// A client session for the server `name`. Call [`TlsSession::start`] to
    /// produce its first flight.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] if rustls refuses the configuration.
    pub fn client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsSession, TlsError> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(TlsError::Config)?;
        Ok(TlsSession::new(Side::Client(conn)))
    }

    fn new(side: Side) -> TlsSession {
        TlsSession {
            side,
            established: false,
            peer_closed: false,
            close_sent: false,
        }
    }

    /// Appends to `out` what the session has to send before hearing from the
    /// peer (a client's hello; nothing for a server).
    ///
    /// # Errors
    ///
    /// As [`TlsSession::receive`].
    pub fn start(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        let mut plain = Vec::new();
        self.receive(&mut [], &mut plain, out).map(|_| ())
    }

    /// Processes the ciphertext `incoming`: appends decrypted application data to
    /// `plain` and records to send to `out`. Returns how many bytes of `incoming`
    /// were used; the rest is an incomplete record to present again, unchanged,
    /// in front of the next bytes.
    ///
    /// # Errors
    ///
    /// [`TlsError::Handshake`] or [`TlsError::Session`] when the peer's data is
    /// refused. The alert telling the peer why is appended to `out` first; send
    /// it, then close.
    pub fn receive(
        &mut self,
        incoming: &mut [u8],
        plain: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<usize, TlsError> {
        let mut flags = Flags {
            established: self.established,
            peer_closed: self.peer_closed,
        };
        let result = match &mut self.side {
            Side::Server(c) => receive(c, incoming, plain, out, &mut flags),
            Side::Client(c) => receive(c, incoming, plain, out, &mut flags),
        };
        self.established = flags.established;
        self.peer_closed = flags.peer_closed;
        result.map_err(|e| self.fail(e, out))
    }

    /// Encrypts `plaintext` into `out`. Before the handshake completes, and after
    /// close_notify was sent, nothing is written.
    ///
    /// # Errors
    ///
    /// [`TlsError::Session`] if rustls refuses (its keys are exhausted).
    pub fn send(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if plaintext.is_empty() || !self.established || self.close_sent {
            return Ok(());
        }
        let result = self.write_traffic(out, Op::Encrypt(plaintext));
        result.map_err(|e| self.fail(e, out))
    }

    /// Appends a close_notify alert to `out` (once; only once established).
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        if !self.established || self.close_sent {
            return;
        }
        self.close_sent = true;
        let _ = self.write_traffic(out, Op::CloseNotify);
    }

    /// True once the handshake completed: application data flows both ways.
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// True once the peer sent close_notify: it will send no more data.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The ALPN protocol agreed on, once established.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.side {
            Side::Server(c) => c.alpn_protocol(),
            Side::Client(c) => c.alpn_protocol(),
        }
    }

    /// The TLS version agreed on, once established.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.side {
            Side::Server(c) => c.protocol_version(),
            Side::Client(c) => c.protocol_version(),
        }
    }

    /// Types an error by phase and appends the alerts rustls queued for it.
    fn fail(&mut self, e: rustls::Error, out: &mut Vec<u8>) -> TlsError {
        for _ in 0..MAX_STEPS {
            let more = match &mut self.side {
                Side::Server(c) => drain_one(c, out),
                Side::Client(c) => drain_one(c, out),
            };
            if !more {
                break;
            }
        }
        if self.established {
            TlsError::Session(e)
        } else {
            TlsError::Handshake(e)
        }
    }

    fn write_traffic(&mut self, out: &mut Vec<u8>, op: Op<'_>) -> Result<(), rustls::Error> {
        match &mut self.side {
            Side::Server(c) => write_traffic(c, out, op),
            Side::Client(c) => write_traffic(c, out, op),
        }
    }
}

/// What to do once rustls is in its write state.
#[derive(Clone, Copy)]
enum Op<'a> {
    Encrypt(&'a [u8]),
    CloseNotify,
}

struct Flags {
    established: bool,
    peer_closed: bool,
}

/// rustls's two connection types, one interface.
trait Records {
    type Data;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Records for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Records for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

fn receive<C: Records>(
    conn: &mut C,
    incoming: &mut [u8],
    plain: &mut Vec<u8>,
    out: &mut Vec<u8>,
    flags: &mut Flags,
) -> Result<usize, rustls::Error> {
    let mut offset = 0;
    // Each step either consumes input, emits output or changes state; the bound
    // is a guard, generous for any real flight of records.
    let max_steps = MAX_STEPS + incoming.len() / 5;
    for _ in 0..max_steps {
        let UnbufferedStatus { mut discard, state } = conn.records(&mut incoming[offset..]);
        let mut done = false;
        match state? {
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(record) = r.next_record() {
                    let record = record?;
                    discard += record.discard;
                    plain.extend_from_slice(record.payload);
                }
            }
            ConnectionState::EncodeTlsData(mut e) => encode(out, |buf| e.encode(buf))?,
            ConnectionState::TransmitTlsData(t) => t.done(),
            ConnectionState::PeerClosed => flags.peer_closed = true,
            ConnectionState::WriteTraffic(_) => {
                flags.established = true;
                done = true;
            }
            ConnectionState::Closed => {
                flags.peer_closed = true;
                done = true;
            }
            // BlockedHandshake: more bytes needed. Early data is not enabled.
            _ => done = true,
        }
        offset += discard;
        if done {
            return Ok(offset);
        }
    }
    Err(rustls::Error::General(
        "TLS record processing did not settle".into(),
    ))
}

/// Encodes one pending record, if any; false when nothing more is queued.
fn drain_one<C: Records>(conn: &mut C, out: &mut Vec<u8>) -> bool {
    match conn.records(&mut []).state {
        Ok(ConnectionState::EncodeTlsData(mut e)) => encode(out, |buf| e.encode(buf)).is_ok(),
        Ok(ConnectionState::TransmitTlsData(t)) => {
            t.done();
            true
        }
        _ => false,
    }
}

fn write_traffic<C: Records>(
    conn: &mut C,
    out: &mut Vec<u8>,
    op: Op<'_>,
) -> Result<(), rustls::Error> {
    // Records rustls still has queued (tickets, key updates) go first.
    for _ in 0..MAX_STEPS {
        match conn.records(&mut []).state? {
            ConnectionState::EncodeTlsData(mut e) => encode(out, |buf| e.encode(buf))?,
            ConnectionState::TransmitTlsData(t) => t.done(),
            ConnectionState::WriteTraffic(mut w) => {
                let guess = match op {
                    Op::Encrypt(data) => data.len() + (data.len() / 16_384 + 1) * 64,
                    Op::CloseNotify => 64,
                };
                return append_with(out, guess, |buf| {
                    let r = match op {
                        Op::Encrypt(data) => w.encrypt(data, buf),
                        Op::CloseNotify => w.queue_close_notify(buf),
                    };
                    match r {
                        Ok(n) => Ok(n),
                        Err(EncryptError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => Err(Retry::Need(required_size)),
                        Err(e) => Err(Retry::Fail(rustls::Error::General(e.to_string()))),
                    }
                });
            }
            // Not established, or closed both ways: nothing may be sent.
            _ => return Ok(()),
        }
    }
    Ok(())
}

fn encode(
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), rustls::Error> {
    append_with(out, 512, |buf| match f(buf) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Err(Retry::Need(required_size))
        }
        Err(e) => Err(Retry::Fail(rustls::Error::General(e.to_string()))),
    })
}

enum Retry {
    Need(usize),
    Fail(rustls::Error),
}

/// Lets `f` write into fresh room at the end of `out`, growing it once to the
/// size `f` asks for if `guess` was short.
fn append_with(
    out: &mut Vec<u8>,
    guess: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Retry>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    out.resize(start + guess, 0);
    let result = match f(&mut out[start..]) {
        Err(Retry::Need(required)) => {
            out.resize(start + required, 0);
            f(&mut out[start..])
        }
        other => other,
    };
    match result {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(Retry::Need(_)) => {
            out.truncate(start);
            Err(rustls::Error::General("TLS output size".into()))
        }
        Err(Retry::Fail(e)) => {
            out.truncate(start);
            Err(e)
        }
    }
}
