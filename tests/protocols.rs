//! UDP, Unix domain sockets, several listeners on one engine, socket options.

mod util;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;

use tether::net::{Keepalive, ListenAddr, SocketOptions};
use tether::{Action, Conn, Datagram, Engine, EventHandler, Options};
use util::*;

/// Echoes streams and datagrams; reports (listener, is_unix) per open.
struct Both {
    tx: Sender<(Option<usize>, bool)>,
}

impl EventHandler for Both {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.tx.send((conn.listener(), conn.is_unix()));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }

    fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
        let mut reply = vec![dgram.listener() as u8];
        reply.extend_from_slice(dgram.data());
        let _ = dgram.reply(&reply);
        Action::Continue
    }
}

fn sock_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tether-{}-{name}.sock", std::process::id()))
}

fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

#[test]
fn udp_echo_from_many_peers_across_two_loops() {
    let (tx, _rx) = channel();
    let engine = Engine::builder(move |_| Both { tx: tx.clone() })
        .loops(2)
        .listen("udp://127.0.0.1:0")
        .start()
        .unwrap();
    let server = engine.local_addrs()[0];
    let peers: Vec<UdpSocket> = (0..16).map(|_| udp_client()).collect();
    let mut buf = [0u8; 2048];
    // Windows of 8 datagrams per peer: loopback never drops so few in flight.
    for round in 0..16u32 {
        for (p, s) in peers.iter().enumerate() {
            for k in 0..8u32 {
                let msg = [p as u32, round, k].map(u32::to_be_bytes).concat();
                s.send_to(&msg, server).unwrap();
            }
        }
        for (p, s) in peers.iter().enumerate() {
            for k in 0..8u32 {
                let (n, from) = s.recv_from(&mut buf).expect("an echo within the deadline");
                assert_eq!(from, server);
                let want = [p as u32, round, k].map(u32::to_be_bytes).concat();
                assert_eq!(buf[0], 0, "listener tag");
                assert_eq!(&buf[1..n], &want[..], "peer {p} round {round}");
            }
        }
    }
    let stats = engine.stats();
    assert_eq!(stats.total.datagrams_in, 16 * 16 * 8);
    assert_eq!(stats.total.datagrams_out, 16 * 16 * 8);
    assert!(
        stats.loops.iter().all(|l| l.datagrams_in > 0),
        "SO_REUSEPORT spread 16 peers over both loops: {:?}",
        stats
            .loops
            .iter()
            .map(|l| l.datagrams_in)
            .collect::<Vec<_>>()
    );
    engine.stop();
}

#[test]
fn largest_and_empty_datagrams_echo_whole() {
    let (tx, _rx) = channel();
    let engine = Engine::builder(move |_| Both { tx: tx.clone() })
        .loops(1)
        .listen("udp4://127.0.0.1:0")
        .start()
        .unwrap();
    let server = engine.local_addrs()[0];
    let s = udp_client();
    let mut buf = vec![0u8; 70_000];
    // The largest IPv4 UDP payload minus the one-byte tag the handler prepends.
    let big = pattern(65_506, 1);
    s.send_to(&big, server).unwrap();
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert_eq!(n, big.len() + 1);
    assert!(buf[1..n] == big[..]);
    s.send_to(&[], server).unwrap();
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert_eq!(n, 1, "an empty datagram is delivered and answered");
    engine.stop();
}

#[test]
fn unix_stream_echo_and_socket_file_lifecycle() {
    let path = sock_path("echo");
    // A stale file left by a dead server is replaced.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut opts = Options::default();
    opts.socket.unix_mode = Some(0o600);
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| Both { tx: tx.clone() })
        .options(opts)
        .loops(2)
        .listen(format!("unix://{}", path.display()))
        .start()
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(engine.listen_addrs(), [ListenAddr::Unix(path.clone())]);
    assert!(engine.local_addrs().is_empty());

    // A live server's socket is never taken over.
    let (tx2, _rx2) = channel();
    let err = Engine::builder(move |_| Both { tx: tx2.clone() })
        .listen(format!("unix://{}", path.display()))
        .start()
        .unwrap_err();
    assert!(
        matches!(err, tether::Error::Io(ref e) if e.kind() == std::io::ErrorKind::AddrInUse),
        "{err}"
    );

    let mut clients: Vec<UnixStream> = (0..4)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.set_read_timeout(Some(DEADLINE)).unwrap();
        let msg = pattern(10_000, i as u64);
        c.write_all(&msg).unwrap();
        let mut got = vec![0; msg.len()];
        std::io::Read::read_exact(c, &mut got).unwrap();
        assert!(got == msg);
        assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), (Some(0), true));
    }
    engine.stop();
    assert!(!path.exists(), "the socket file is removed on stop");
}

#[test]
fn one_engine_serves_tcp_udp_and_unix_with_listener_tags() {
    let path = sock_path("mixed");
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| Both { tx: tx.clone() })
        .loops(2)
        .listen("tcp://127.0.0.1:0")
        .listen("udp://127.0.0.1:0")
        .listen(format!("unix://{}", path.display()))
        .start()
        .unwrap();
    let addrs = engine.listen_addrs().to_vec();
    let (ListenAddr::Tcp(tcp), ListenAddr::Udp(udp)) = (&addrs[0], &addrs[1]) else {
        panic!("{addrs:?}")
    };
    let mut t = connect(*tcp);
    roundtrip(&mut t, b"over tcp");
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), (Some(0), false));
    let mut u = UnixStream::connect(&path).unwrap();
    u.write_all(b"over unix").unwrap();
    let mut got = [0u8; 9];
    std::io::Read::read_exact(&mut u, &mut got).unwrap();
    assert_eq!(&got, b"over unix");
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), (Some(2), true));
    let d = udp_client();
    d.send_to(b"over udp", udp).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = d.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"\x01over udp");
    engine.stop();
}

/// Reads the options of each accepted connection back.
struct Probe {
    tx: Sender<String>,
}

impl EventHandler for Probe {
    type State = ();
    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let s = conn.socket();
        let report = format!(
            "nodelay={} keepalive={} idle={:?} interval={:?} retries={:?} linger={:?} sndbuf>={} rcvbuf>={}",
            s.tcp_nodelay().unwrap(),
            s.keepalive().unwrap(),
            s.tcp_keepalive_time().unwrap(),
            s.tcp_keepalive_interval().unwrap(),
            s.tcp_keepalive_retries().unwrap(),
            s.linger().unwrap(),
            s.send_buffer_size().unwrap() >= 256 * 1024,
            s.recv_buffer_size().unwrap() >= 256 * 1024,
        );
        let _ = self.tx.send(report);
        Action::Continue
    }
    fn on_traffic(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
        Action::Continue
    }
}

#[test]
fn socket_options_are_applied_and_read_back() {
    let mut opts = Options::default();
    opts.socket = SocketOptions::default();
    opts.socket.keepalive = Some(Keepalive {
        idle: Duration::from_secs(30),
        interval: Some(Duration::from_secs(5)),
        retries: Some(4),
    });
    opts.socket.linger = Some(Duration::from_secs(1));
    opts.socket.send_buffer_size = Some(256 * 1024);
    opts.socket.recv_buffer_size = Some(256 * 1024);
    opts.socket.bind_device = Some("lo".into());
    opts.socket.ipv6_only = Some(true);
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| Probe { tx: tx.clone() })
        .options(opts)
        .loops(1)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let _c = connect(engine.local_addrs()[0]);
    assert_eq!(
        rx.recv_timeout(DEADLINE).unwrap(),
        "nodelay=true keepalive=true idle=30s interval=5s retries=4 linger=Some(1s) sndbuf>=true rcvbuf>=true"
    );
    engine.stop();

    // IPV6_V6ONLY on an IPv6 listener: an IPv4 client cannot reach it.
    let mut v6 = Options::default();
    v6.socket.ipv6_only = Some(true);
    let (tx, _rx) = channel();
    if let Ok(engine) = Engine::builder(move |_| Probe { tx: tx.clone() })
        .options(v6)
        .loops(1)
        .listen("tcp6://[::]:0")
        .start()
    {
        let port = engine.local_addrs()[0].port();
        let v4: SocketAddr = ([127, 0, 0, 1], port).into();
        assert!(std::net::TcpStream::connect_timeout(&v4, DEADLINE).is_err());
        engine.stop();
    }
}

#[test]
fn bad_device_is_reported_when_binding() {
    let mut opts = Options::default();
    opts.socket.bind_device = Some("no-such-device0".into());
    let (tx, _rx) = channel();
    let err = Engine::builder(move |_| Probe { tx: tx.clone() })
        .options(opts)
        .listen("127.0.0.1:0")
        .start()
        .unwrap_err();
    assert!(matches!(err, tether::Error::Io(_)), "{err}");
}

#[test]
fn batched_udp_echoes_and_flags_truncated_datagrams() {
    let mut opts = Options::default();
    opts.udp_batch = 32;
    opts.udp_max_datagram = 512;
    /// Replies with a truncation marker and the payload.
    struct Trunc;
    impl EventHandler for Trunc {
        type State = ();
        fn on_traffic(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
            Action::Continue
        }
        fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
            let mut reply = vec![dgram.truncated() as u8];
            reply.extend_from_slice(dgram.data());
            let _ = dgram.reply(&reply);
            Action::Continue
        }
    }
    let engine = Engine::builder(|_| Trunc)
        .options(opts)
        .loops(1)
        .listen("udp://127.0.0.1:0")
        .start()
        .unwrap();
    let server = engine.local_addrs()[0];
    let s = udp_client();
    let mut buf = vec![0u8; 4096];
    for k in 0..100u32 {
        s.send_to(&k.to_be_bytes(), server).unwrap();
    }
    for k in 0..100u32 {
        let (n, _) = s.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[&[0u8][..], &k.to_be_bytes()[..]].concat()[..]);
    }
    let long = pattern(1000, 9);
    s.send_to(&long, server).unwrap();
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert_eq!(n, 513, "the first 512 bytes, flagged");
    assert_eq!(buf[0], 1);
    assert_eq!(&buf[1..n], &long[..512]);
    engine.stop();
}

/// Dials, writes a greeting on open, reports what comes back.
struct UnixClient {
    tx: Sender<Vec<u8>>,
}

impl EventHandler for UnixClient {
    type State = ();
    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        assert!(conn.is_unix());
        assert!(conn.peer_addr().is_err(), "a Unix socket has no IP peer");
        conn.write(b"ping over unix");
        Action::Continue
    }
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        let _ = self.tx.send(data.to_vec());
        conn.consume(data.len());
        Action::Continue
    }
}

#[test]
fn engine_dials_unix_sockets_and_refuses_udp_targets() {
    let path = sock_path("dial");
    let (tx, _rx) = channel();
    let server = Engine::builder(move |_| Both { tx: tx.clone() })
        .loops(1)
        .listen(format!("unix://{}", path.display()))
        .start()
        .unwrap();
    let (tx, rx) = channel();
    let client = Engine::builder(move |_| UnixClient { tx: tx.clone() })
        .loops(1)
        .start()
        .unwrap();
    client.connect(ListenAddr::Unix(path.clone()), ()).unwrap();
    let mut got = Vec::new();
    while got.len() < 14 {
        got.extend(rx.recv_timeout(DEADLINE).expect("the echo"));
    }
    assert_eq!(got, b"ping over unix");
    let udp: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(
        client.connect(ListenAddr::Udp(udp), ()),
        Err(tether::SendError::UnsupportedAddr)
    );
    client.stop();
    server.stop();
}

fn unix_engine(path: &std::path::Path) -> Result<Engine, tether::Error> {
    let (tx, _rx) = channel();
    Engine::builder(move |_| Both { tx: tx.clone() })
        .loops(1)
        .listen(format!("unix://{}", path.display()))
        .start()
}

fn refused_as(err: tether::Error, kind: std::io::ErrorKind) {
    assert!(
        matches!(err, tether::Error::Io(ref e) if e.kind() == kind),
        "want {kind:?}, got {err}"
    );
}

#[test]
fn unix_start_never_removes_what_is_not_a_socket() {
    use std::os::unix::fs::FileTypeExt;
    // A regular file.
    let file = sock_path("regular");
    std::fs::write(&file, b"precious").unwrap();
    refused_as(
        unix_engine(&file).unwrap_err(),
        std::io::ErrorKind::AlreadyExists,
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");

    // A FIFO.
    let fifo = sock_path("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    refused_as(
        unix_engine(&fifo).unwrap_err(),
        std::io::ErrorKind::AlreadyExists,
    );
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // A symbolic link, to a file and to a stale socket: the link is not a socket.
    let link = sock_path("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    refused_as(
        unix_engine(&link).unwrap_err(),
        std::io::ErrorKind::AlreadyExists,
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    let stale = sock_path("stale-target");
    drop(UnixListener::bind(&stale).unwrap());
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&stale, &link).unwrap();
    refused_as(
        unix_engine(&link).unwrap_err(),
        std::io::ErrorKind::AlreadyExists,
    );
    assert!(
        std::fs::symlink_metadata(&stale)
            .unwrap()
            .file_type()
            .is_socket()
    );

    for p in [file, fifo, link, stale] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn unix_stop_removes_only_the_socket_this_engine_bound() {
    // A regular file swapped in after bind survives stop.
    let path = sock_path("swapped");
    let engine = unix_engine(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"not yours").unwrap();
    engine.stop();
    assert_eq!(std::fs::read(&path).unwrap(), b"not yours");
    std::fs::remove_file(&path).unwrap();

    // So does another server's socket bound at the same path meanwhile.
    let engine = unix_engine(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let other = UnixListener::bind(&path).unwrap();
    engine.stop();
    UnixStream::connect(&path).expect("the other server's socket is still there");
    drop(other);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn unix_start_next_to_a_live_server_with_a_full_backlog_fails_at_once() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let path = sock_path("busy");
    let live = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    live.bind(&SockAddr::unix(&path).unwrap()).unwrap();
    live.listen(0).unwrap();
    // Fill the accept queue: the next connect would block.
    let mut queued = Vec::new();
    loop {
        let c = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        match c.connect(&SockAddr::unix(&path).unwrap()) {
            Ok(()) => queued.push(c),
            Err(_) => break,
        }
        assert!(queued.len() < 1024, "the backlog never filled");
    }
    let (tx, rx) = channel();
    let probe_path = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(unix_engine(&probe_path).map(drop));
    });
    let got = rx
        .recv_timeout(DEADLINE)
        .expect("start returns next to a busy server instead of hanging");
    refused_as(got.unwrap_err(), std::io::ErrorKind::AddrInUse);
    drop(queued);
    drop(live);
    std::fs::remove_file(&path).unwrap();
}

/// A UDP socket sharing `server`'s address (SO_REUSEPORT), connected elsewhere
/// so the kernel never hands it the server's traffic: what it sends carries the
/// server's own address as its source.
fn spoofer(server: SocketAddr) -> UdpSocket {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&server.into()).unwrap();
    let elsewhere = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(&elsewhere.local_addr().unwrap().into()).unwrap();
    s.into()
}

/// Waits until the engine's UDP counters stop moving for `quiet`; panics if
/// they still move at the deadline (a reflection loop never goes quiet).
fn quiet_udp(engine: &Engine, quiet: Duration) -> tether::Counts {
    let end = std::time::Instant::now() + DEADLINE;
    let mut last = engine.stats().total;
    let mut since = std::time::Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = engine.stats().total;
        let moved = (now.datagrams_in, now.datagrams_out, now.datagrams_reflected)
            != (
                last.datagrams_in,
                last.datagrams_out,
                last.datagrams_reflected,
            );
        assert!(
            std::time::Instant::now() < end,
            "UDP traffic never went quiet: {} in, {} out",
            now.datagrams_in,
            now.datagrams_out
        );
        if moved {
            since = std::time::Instant::now();
            last = now;
        } else if since.elapsed() >= quiet {
            return now;
        }
    }
}

fn udp_echo(allow_own_source: bool) -> Engine {
    let (tx, _rx) = channel();
    let mut opts = Options::default();
    opts.loops = 1;
    opts.reuse_port = true;
    opts.udp_allow_own_source = allow_own_source;
    Engine::builder(move |_| Both { tx: tx.clone() })
        .options(opts)
        .listen("udp://127.0.0.1:0")
        .start()
        .unwrap()
}

#[test]
fn a_datagram_from_the_servers_own_address_is_dropped_not_echoed_for_ever() {
    let engine = udp_echo(false);
    let server = engine.local_addrs()[0];
    let spoof = spoofer(server);
    for _ in 0..5 {
        spoof.send_to(b"loop me", server).unwrap();
    }
    let counts = quiet_udp(&engine, Duration::from_millis(300));
    assert_eq!(counts.datagrams_reflected, 5);
    assert_eq!((counts.datagrams_in, counts.datagrams_out), (5, 0));
    // Everyone else is still answered.
    let c = udp_client();
    c.send_to(b"hello", server).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[1..n], b"hello");
    engine.stop();

    // Allowed on request: the datagram is delivered (and the loop starts,
    // which is why it is off by default).
    let engine = udp_echo(true);
    let server = engine.local_addrs()[0];
    spoofer(server).send_to(b"loop me", server).unwrap();
    stats_until(&engine, "the datagram delivered", |s| {
        s.total.datagrams_in >= 2
    });
    assert_eq!(engine.stats().total.datagrams_reflected, 0);
    engine.stop();
}
