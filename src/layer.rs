//! A connection's transport layer: the PROXY protocol header read before the
//! first callback, and TLS. The event loop keeps one, boxed, only for
//! connections that have either; it feeds it what the socket gave and seals
//! what the handler wrote, and the handler sees plaintext alone.

use std::net::SocketAddr;
use std::time::Duration;

use crate::buffer::{Buf, BufferPool};
use crate::proxy::{self, Parsed, ProxyConfig, ProxyError, ProxyHeader};
use crate::reason::CloseReason;

/// Bytes held back while a header or a TLS record is incomplete: a TLS record
/// is at most 16 KiB plus overhead, a handshake message at most 64 KiB
/// (rustls's limit), a PROXY header at most its configured limit.
const MAX_HELD: usize = 80 * 1024;

/// Default time a TLS client has to finish its handshake.
pub(crate) const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the builder was told about layers, and the per-listener table it
/// makes of that at start.
#[derive(Debug, Clone)]
pub(crate) struct LayerSetup {
    /// Indexes of the `tls://` listeners.
    pub(crate) tls_listeners: Vec<usize>,
    pub(crate) proxy: Option<ProxyConfig>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    pub(crate) handshake_timeout: Duration,
    /// `(listener index, settings)` of every listener with a layer.
    pub(crate) table: Vec<(usize, ListenerLayer)>,
}

impl Default for LayerSetup {
    fn default() -> Self {
        LayerSetup {
            tls_listeners: Vec::new(),
            proxy: None,
            #[cfg(feature = "tls")]
            tls: None,
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            table: Vec::new(),
        }
    }
}

impl LayerSetup {
    /// Fills the table for the parsed listen addresses.
    pub(crate) fn build(&mut self, addrs: &[crate::net::ListenAddr]) -> Result<(), &'static str> {
        use crate::net::ListenAddr;
        self.table.clear();
        for (i, addr) in addrs.iter().enumerate() {
            let stream = matches!(addr, ListenAddr::Tcp(_) | ListenAddr::Unix(_));
            let wants_tls = self.tls_listeners.contains(&i);
            if wants_tls && !stream {
                return Err("tls:// needs a stream address");
            }
            let layer = ListenerLayer {
                proxy: if stream { self.proxy } else { None },
                #[cfg(feature = "tls")]
                tls: match (wants_tls, &self.tls) {
                    (true, Some(c)) => Some(c.clone()),
                    (true, None) => {
                        return Err("a tls:// listener needs EngineBuilder::tls_config");
                    }
                    _ => None,
                },
                handshake_timeout: self.handshake_timeout,
            };
            #[cfg(not(feature = "tls"))]
            if wants_tls {
                return Err("tls:// listeners need the `tls` feature");
            }
            if !layer.is_empty() {
                self.table.push((i, layer));
            }
        }
        Ok(())
    }
}

/// Transport settings of one listener.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListenerLayer {
    pub(crate) proxy: Option<ProxyConfig>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) handshake_timeout: Duration,
}

impl ListenerLayer {
    /// How long a connection may take from accept to `on_open`.
    pub(crate) fn deadline(&self) -> Duration {
        let proxy = self.proxy.map_or(Duration::ZERO, |p| p.timeout);
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return proxy + self.handshake_timeout;
        }
        proxy
    }

    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return false;
        }
        self.proxy.is_none()
    }
}

enum Stage {
    /// Waiting for the PROXY header.
    Proxy(ProxyConfig),
    /// Waiting for the TLS handshake to complete.
    Handshake,
    /// The handler has been told (`on_open` ran).
    Open,
}

/// One connection's layer state.
pub(crate) struct Layer {
    stage: Stage,
    header: Option<Box<ProxyHeader>>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsSession>,
    /// Input not processable yet (a partial header or record); pooled, and
    /// only while something is held.
    held: Option<Box<Buf>>,
    /// The pre-open deadline's entry on the loop's user wheel.
    pub(crate) deadline: Option<crate::timer::TimerId>,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("open", &matches!(self.stage, Stage::Open))
            .field("header", &self.header)
            .field("held", &self.held.as_ref().map(|b| b.len()))
            .finish_non_exhaustive()
    }
}

/// The loop's buffers for layers, shared by all of its connections.
#[derive(Debug, Default)]
pub(crate) struct LayerBufs {
    /// Plaintext decrypted by the last `feed`.
    pub(crate) plain: Vec<u8>,
    /// Records to send produced by the last `feed`, `seal` or `close_notify`.
    pub(crate) sealed: Vec<u8>,
}

/// What one `feed` produced.
#[derive(Debug, Default)]
pub(crate) struct Fed {
    /// The layer just became open: `on_open` is due before any input.
    pub(crate) opened: bool,
    /// Bytes for the handler, in `LayerBufs::plain`.
    pub(crate) plain: usize,
    /// The peer ended the TLS session (close_notify).
    pub(crate) peer_closed: bool,
}

impl Layer {
    /// The layer for a connection accepted by a listener with `cfg`; `None` when
    /// the listener has none.
    pub(crate) fn accepted(cfg: &ListenerLayer) -> Result<Option<Box<Layer>>, CloseReason> {
        if cfg.is_empty() {
            return Ok(None);
        }
        #[cfg(feature = "tls")]
        let tls = match &cfg.tls {
            Some(c) => Some(crate::tls::TlsSession::server(c.clone()).map_err(CloseReason::Tls)?),
            None => None,
        };
        let mut layer = Layer {
            stage: Stage::Handshake,
            header: None,
            #[cfg(feature = "tls")]
            tls,
            held: None,
            deadline: None,
        };
        layer.stage = match cfg.proxy {
            Some(p) => Stage::Proxy(p),
            None => layer.after_proxy(),
        };
        Ok(Some(Box::new(layer)))
    }

    /// The layer of a dialed TLS connection; its first flight goes to `out`.
    #[cfg(feature = "tls")]
    pub(crate) fn dialed(
        tls: &crate::tls::ClientTls,
        out: &mut Vec<u8>,
    ) -> Result<Box<Layer>, CloseReason> {
        let mut session =
            crate::tls::TlsSession::client(tls.config.clone(), tls.server_name.clone())
                .map_err(CloseReason::Tls)?;
        session.start(out).map_err(CloseReason::Tls)?;
        Ok(Box::new(Layer {
            stage: Stage::Handshake,
            header: None,
            tls: Some(session),
            held: None,
            deadline: None,
        }))
    }

    fn after_proxy(&self) -> Stage {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return Stage::Handshake;
        }
        Stage::Open
    }

    /// True while the loop must pass input through `feed` and output through
    /// `seal`; false for a plain connection whose PROXY header is done.
    #[inline]
    pub(crate) fn intercepts(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return true;
        }
        !matches!(self.stage, Stage::Open)
    }

    /// True before `on_open` ran.
    pub(crate) fn is_pending(&self) -> bool {
        !matches!(self.stage, Stage::Open)
    }

    /// The reason to close with when the pre-open deadline passes while still
    /// pending.
    pub(crate) fn timeout_reason(&self) -> Option<CloseReason> {
        match self.stage {
            Stage::Proxy(_) => Some(CloseReason::Proxy(ProxyError::Timeout)),
            #[cfg(feature = "tls")]
            Stage::Handshake => Some(CloseReason::Tls(crate::tls::TlsError::HandshakeTimeout)),
            #[cfg(not(feature = "tls"))]
            Stage::Handshake => None,
            Stage::Open => None,
        }
    }

    /// The reason to close with when the peer closes while still pending.
    pub(crate) fn eof_reason(&self) -> Option<CloseReason> {
        match self.stage {
            Stage::Proxy(_) => Some(CloseReason::Proxy(ProxyError::Truncated)),
            _ => None,
        }
    }

    /// The client address the PROXY header named.
    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.header.as_ref().and_then(|h| h.source())
    }

    /// The PROXY header received, if any.
    pub(crate) fn proxy_header(&self) -> Option<&ProxyHeader> {
        self.header.as_deref()
    }

    /// The TLS session, if any.
    #[cfg(feature = "tls")]
    pub(crate) fn tls(&self) -> Option<&crate::tls::TlsSession> {
        self.tls.as_ref()
    }

    /// Processes `input` (fresh from the socket, in the loop's read buffer):
    /// strips the PROXY header, decrypts TLS records into `bufs.plain`, queues
    /// handshake records in `bufs.sealed`, keeps what is incomplete.
    ///
    /// On error, `bufs.sealed` may hold an alert to send before closing.
    pub(crate) fn feed(
        &mut self,
        input: &mut [u8],
        pool: &mut BufferPool,
        bufs: &mut LayerBufs,
    ) -> Result<Fed, CloseReason> {
        bufs.plain.clear();
        bufs.sealed.clear();
        let mut fed = Fed::default();
        let mut held = self.held.take();
        if held
            .as_ref()
            .is_some_and(|h| h.len() + input.len() > MAX_HELD)
        {
            if let Some(h) = held {
                pool.give(h);
            }
            return Err(self.overflow());
        }
        if let Some(h) = held.as_mut() {
            pool.append(h, input, MAX_HELD);
        }
        let result = {
            let work: &mut [u8] = match held.as_mut() {
                Some(h) => h.as_mut_slice(),
                None => input,
            };
            self.process(work, bufs, &mut fed)
        };
        let used = match result {
            Ok(used) => used,
            Err(e) => {
                if let Some(h) = held {
                    pool.give(h);
                }
                return Err(e);
            }
        };
        // Keep the unprocessed tail for next time, in a pooled buffer.
        match held {
            Some(mut h) => {
                h.consume(used);
                if h.is_empty() {
                    pool.give(h);
                } else {
                    self.held = Some(h);
                }
            }
            None if used < input.len() => {
                let mut h = pool.take();
                pool.append(&mut h, &input[used..], MAX_HELD);
                self.held = Some(h);
            }
            None => {}
        }
        Ok(fed)
    }

    fn overflow(&self) -> CloseReason {
        match self.stage {
            Stage::Proxy(cfg) => CloseReason::Proxy(ProxyError::TooLong {
                limit: cfg.max_header,
            }),
            _ => CloseReason::InboundOverflow,
        }
    }

    /// Returns how much of `work` was used.
    fn process(
        &mut self,
        work: &mut [u8],
        bufs: &mut LayerBufs,
        fed: &mut Fed,
    ) -> Result<usize, CloseReason> {
        let mut used = 0;
        if let Stage::Proxy(cfg) = self.stage {
            match proxy::parse(work, cfg.mode, cfg.max_header) {
                Ok(Parsed::Header { header, len }) => {
                    self.header = Some(Box::new(header));
                    used = len;
                }
                Ok(Parsed::Incomplete) => return Ok(0),
                Ok(Parsed::Absent) if !cfg.required => {}
                Ok(Parsed::Absent) => return Err(CloseReason::Proxy(ProxyError::Missing)),
                Err(e) => return Err(CloseReason::Proxy(e)),
            }
            self.stage = self.after_proxy();
            fed.opened = matches!(self.stage, Stage::Open);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            used += tls
                .receive(&mut work[used..], &mut bufs.plain, &mut bufs.sealed)
                .map_err(CloseReason::Tls)?;
            if matches!(self.stage, Stage::Handshake) && tls.is_established() {
                self.stage = Stage::Open;
                fed.opened = true;
            }
            fed.plain = bufs.plain.len();
            fed.peer_closed = tls.peer_closed();
            return Ok(used);
        }
        // No TLS: what follows the header is the application's.
        bufs.plain.extend_from_slice(&work[used..]);
        fed.plain = bufs.plain.len();
        Ok(work.len())
    }

    /// Encrypts `plaintext` into `out` (TLS); false when there is no TLS and the
    /// plaintext is to be sent as it is.
    pub(crate) fn seal(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, CloseReason> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            tls.send(plaintext, out).map_err(CloseReason::Tls)?;
            return Ok(true);
        }
        let _ = (plaintext, out);
        Ok(false)
    }

    /// Appends close_notify to `out` for an established TLS session.
    pub(crate) fn close_notify(&mut self, out: &mut Vec<u8>) {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_mut() {
            tls.close_notify(out);
        }
        let _ = out;
    }

    /// Returns the held buffer to the pool.
    pub(crate) fn release(&mut self, pool: &mut BufferPool) {
        if let Some(h) = self.held.take() {
            pool.give(h);
        }
    }
}
