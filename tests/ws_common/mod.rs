//! Shared by the WebSocket tests: tether echo endpoints (server and client)
//! and a raw peer on std sockets that sends any bytes, legal or not, and
//! reads frames with deadlines.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tether::ws::{Config, Endpoint, Event, Message, WsState, accept_key};
use tether::{Action, Conn, Engine, EventHandler, Options};

pub const DEADLINE: Duration = Duration::from_secs(10);

/// Echoes text and binary messages, standalone (no HTTP layer) or as a
/// client that dialed a peer.
pub struct Echo {
    pub ws: Endpoint,
    pub client: bool,
}

impl EventHandler for Echo {
    type State = WsState;

    fn on_open(&mut self, conn: &mut Conn<'_, WsState>) -> Action {
        if self.client {
            self.ws.connect(conn, "localhost", "/");
        }
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, WsState>) -> Action {
        self.ws.serve(conn, |ws, event| match event {
            Event::Message(Message::Text(t)) => ws.send_text(t),
            Event::Message(Message::Binary(b)) => ws.send_binary(b),
            _ => {}
        })
    }

    fn on_heartbeat(&mut self, conn: &mut Conn<'_, WsState>) -> Action {
        self.ws.heartbeat(conn)
    }

    fn on_timer(&mut self, conn: &mut Conn<'_, WsState>, key: u64) -> Action {
        self.ws.timer(conn, key)
    }
}

fn options(config: &Config) -> Options {
    let mut o = Options::default();
    o.loops = 1;
    o.max_inbound = config.max_message + (1 << 20);
    o.max_outbound = 2 * config.max_message + (1 << 20);
    o
}

/// A tether echo server on an ephemeral loopback port.
pub fn echo_server(config: Config) -> Engine {
    echo_server_with(config, |_| {})
}

/// [`echo_server`] with engine options changed by `tune` (a heartbeat, say).
pub fn echo_server_with(config: Config, tune: impl FnOnce(&mut Options)) -> Engine {
    let mut opts = options(&config);
    tune(&mut opts);
    Engine::builder(move |_| Echo {
        ws: Endpoint::new(config.clone()),
        client: false,
    })
    .options(opts)
    .listen("127.0.0.1:0")
    .start()
    .expect("an engine on loopback")
}

/// A tether echo client engine (no listener); dial with [`Engine::connect`].
pub fn echo_client(config: Config) -> Engine {
    let opts = options(&config);
    Engine::builder(move |_| Echo {
        ws: Endpoint::new(config.clone()),
        client: true,
    })
    .options(opts)
    .start()
    .expect("an engine")
}

/// One frame as read by the raw peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub op: u8,
    pub payload: Vec<u8>,
}

/// A raw WebSocket peer: as a client it masks what it sends and expects
/// unmasked frames; as a server the reverse.
pub struct Peer {
    pub stream: TcpStream,
    pub client: bool,
    buf: Vec<u8>,
    pub inflate: Option<Decompress>,
    pub deflate: Option<Compress>,
    /// The agreement says this side takes no context over between messages.
    pub reset_compress: bool,
}

impl Peer {
    fn new(stream: TcpStream, client: bool) -> Peer {
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Peer {
            stream,
            client,
            buf: Vec::new(),
            inflate: None,
            deflate: None,
            reset_compress: false,
        }
    }

    /// Connects to a server and does the handshake, with `extensions` offered;
    /// returns the peer and the response head.
    pub fn connect(addr: SocketAddr, extensions: Option<&str>) -> (Peer, String) {
        Peer::connect_path(addr, "/", extensions)
    }

    /// [`Peer::connect`] asking for `path`.
    pub fn connect_path(addr: SocketAddr, path: &str, extensions: Option<&str>) -> (Peer, String) {
        let stream = TcpStream::connect(addr).unwrap();
        let mut p = Peer::new(stream, true);
        let ext = extensions.map_or(String::new(), |e| {
            format!("Sec-WebSocket-Extensions: {e}\r\n")
        });
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
        );
        p.stream.write_all(req.as_bytes()).unwrap();
        let head = p.read_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        if head.contains("permessage-deflate") {
            p.enable_deflate();
            p.reset_compress = head.contains("client_no_context_takeover");
        }
        (p, head)
    }

    /// Accepts one connection on `listener` and answers its handshake with
    /// `extensions` agreed.
    pub fn accept(listener: &TcpListener, extensions: Option<&str>) -> (Peer, String) {
        listener.set_nonblocking(false).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut p = Peer::new(stream, false);
        let head = p.read_head();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("a key")
            .trim()
            .to_string();
        let accept = accept_key(key.as_bytes());
        let ext = extensions.map_or(String::new(), |e| {
            format!("Sec-WebSocket-Extensions: {e}\r\n")
        });
        let res = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{ext}\r\n",
            std::str::from_utf8(&accept).unwrap()
        );
        p.stream.write_all(res.as_bytes()).unwrap();
        if let Some(ext) = extensions {
            p.enable_deflate();
            p.reset_compress = ext.contains("server_no_context_takeover");
        }
        (p, head)
    }

    pub fn enable_deflate(&mut self) {
        self.inflate = Some(Decompress::new(false));
        self.deflate = Some(Compress::new(Compression::default(), false));
    }

    fn read_head(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end + 4].to_vec()).unwrap();
                self.buf.drain(..end + 4);
                return head;
            }
            assert!(Instant::now() < deadline, "no handshake head");
            assert!(self.fill(), "closed during the handshake");
        }
    }

    /// Reads more; false on EOF or reset.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                true
            }
            Err(_) => false,
        }
    }

    /// Encodes a frame exactly as given (any bits, any opcode).
    pub fn encode(&self, fin: bool, rsv: u8, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | op];
        let mask_bit = if self.client { 0x80 } else { 0 };
        let len = payload.len();
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if len <= 0xffff {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if self.client {
            let key = [0x12, 0x34, 0x56, 0x78];
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        // The other side may have closed already (a failed connection): not
        // this function's concern.
        let _ = self.stream.write_all(bytes);
    }

    pub fn send(&mut self, fin: bool, rsv: u8, op: u8, payload: &[u8]) {
        let f = self.encode(fin, rsv, op, payload);
        self.send_raw(&f);
    }

    /// Sends `payload` as one compressed message (RSV1) of `op`.
    pub fn send_compressed(&mut self, op: u8, payload: &[u8]) {
        let z = self.compress(payload);
        self.send(true, 4, op, &z);
    }

    pub fn compress(&mut self, payload: &[u8]) -> Vec<u8> {
        let c = self.deflate.as_mut().expect("deflate agreed");
        let mut out = Vec::with_capacity(payload.len() + 1024);
        let mut input = payload;
        loop {
            let before = c.total_in();
            c.compress_vec(input, &mut out, FlushCompress::Sync)
                .unwrap();
            input = &input[(c.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        if self.reset_compress {
            c.reset();
        }
        out
    }

    fn decompress(&mut self, data: &[u8]) -> Vec<u8> {
        let d = self.inflate.as_mut().expect("deflate agreed");
        let mut input = data.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(data.len() * 4 + 1024);
        let mut rest = &input[..];
        loop {
            let before = d.total_in();
            d.decompress_vec(rest, &mut out, FlushDecompress::Sync)
                .unwrap();
            rest = &rest[(d.total_in() - before) as usize..];
            if rest.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        out
    }

    /// The next frame; `None` once the connection closed. Panics after the
    /// deadline.
    pub fn frame(&mut self) -> Option<Frame> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some((f, n)) = self.parse() {
                self.buf.drain(..n);
                return Some(f);
            }
            assert!(Instant::now() < deadline, "no frame within the deadline");
            if !self.fill() {
                return None;
            }
        }
    }

    fn parse(&self) -> Option<(Frame, usize)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let masked = b[1] & 0x80 != 0;
        assert_eq!(masked, !self.client, "masking from the other side");
        let (len, mut at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        let key = if masked {
            if b.len() < at + 4 {
                return None;
            }
            at += 4;
            Some([b[at - 4], b[at - 3], b[at - 2], b[at - 1]])
        } else {
            None
        };
        if b.len() < at + len {
            return None;
        }
        let mut payload = b[at..at + len].to_vec();
        if let Some(k) = key {
            for (i, x) in payload.iter_mut().enumerate() {
                *x ^= k[i & 3];
            }
        }
        Some((
            Frame {
                fin: b[0] & 0x80 != 0,
                rsv: (b[0] >> 4) & 7,
                op: b[0] & 0x0f,
                payload,
            },
            at + len,
        ))
    }

    /// The next whole data message, reassembled and inflated: (opcode, data).
    /// Pongs are skipped.
    pub fn message(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut op = 0;
        let mut compressed = false;
        let mut data = Vec::new();
        loop {
            let f = self.frame()?;
            if f.op == 10 {
                continue;
            }
            assert!(
                f.op != 8,
                "close {:?} instead of a message",
                close_code(&f.payload)
            );
            if f.op != 0 {
                op = f.op;
                compressed = f.rsv & 4 != 0;
            }
            data.extend_from_slice(&f.payload);
            if f.fin {
                break;
            }
        }
        if compressed {
            data = self.decompress(&data);
        }
        Some((op, data))
    }

    /// Expects a data message equal to `(op, data)`.
    pub fn expect_echo(&mut self, op: u8, data: &[u8]) {
        let (got_op, got) = self.message().expect("an echo, not a close");
        assert_eq!(got_op, op);
        assert!(
            got == data,
            "echo of {} bytes differs ({} bytes back): {:?}",
            data.len(),
            got.len(),
            String::from_utf8_lossy(&got)
        );
    }

    /// Expects a close frame with one of `codes` (`None`: an empty payload),
    /// then the end of the connection.
    pub fn expect_close(&mut self, codes: &[Option<u16>]) {
        loop {
            let f = self
                .frame()
                .expect("a close frame, not the end of the connection");
            if f.op == 10 {
                continue;
            }
            assert_eq!(f.op, 8, "a close frame, not {f:?}");
            let code = close_code(&f.payload);
            assert!(
                codes.contains(&code),
                "close code {code:?}, expected {codes:?}"
            );
            break;
        }
        self.expect_end();
    }

    /// Expects the connection to end (after at most pongs and a close).
    pub fn expect_end(&mut self) {
        loop {
            match self.frame() {
                None => return,
                Some(f) if f.op == 10 || f.op == 8 => continue,
                Some(f) => panic!("a frame {f:?} after the close"),
            }
        }
    }
}

pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// The two ways to run a case: a raw client against a tether server, and a
/// tether client against a raw server.
pub enum Side {
    Server(Engine),
    Client(Engine, TcpListener),
}

impl Side {
    pub fn server(config: Config) -> Side {
        Side::Server(echo_server(config))
    }

    pub fn client(config: Config) -> Side {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Side::Client(echo_client(config), listener)
    }

    /// A raw peer connected to the tether side, handshake done, with
    /// `extensions` offered (as client) or answered (as server).
    pub fn peer(&self, extensions: Option<&str>) -> Peer {
        match self {
            Side::Server(engine) => Peer::connect(engine.local_addrs()[0], extensions).0,
            Side::Client(engine, listener) => {
                engine
                    .connect(listener.local_addr().unwrap(), WsState::default())
                    .unwrap();
                Peer::accept(listener, extensions).0
            }
        }
    }

    pub fn stop(self) {
        match self {
            Side::Server(e) | Side::Client(e, _) => {
                e.stop();
                e.join();
            }
        }
    }
}
