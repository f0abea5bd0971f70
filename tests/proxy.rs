//! PROXY protocol listeners over real loopback sockets: v1 and v2 headers by
//! hand (whole, trickled, with TLVs), malformed, missing and late headers, and
//! HAProxy itself (`send-proxy`, `send-proxy-v2`) in front of the engine.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use tether::proxy::{ProxyConfig, ProxyHeader, ProxyMode, Tlv, Version, tlv_type};
use tether::{Action, CloseReason, Conn, Engine, EventHandler};
use util::served::Served;
use util::{DEADLINE, connect, read_n, read_to_eof};

/// Answers each `whoami\n` with `peer socket_peer authority\n`; reports opens
/// and close reasons.
struct Whoami {
    tx: Sender<String>,
}

impl EventHandler for Whoami {
    type State = ();

    fn on_open(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.tx.send("open".into());
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        while let Some(end) = conn.read_buf().iter().position(|&b| b == b'\n') {
            let line = conn.read_buf()[..end].to_vec();
            conn.consume(end + 1);
            if line == b"whoami" {
                let authority = conn
                    .proxy_header()
                    .and_then(|h| h.authority())
                    .unwrap_or("-")
                    .to_string();
                let answer = format!(
                    "{} {} {authority}\n",
                    conn.peer_addr().unwrap(),
                    conn.socket_peer_addr().unwrap()
                );
                conn.write(answer.as_bytes());
            }
        }
        Action::Continue
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) {
        let _ = self.tx.send(format!("close {}", util::reason_name(reason)));
    }
}

fn engine(cfg: ProxyConfig) -> (Engine, SocketAddr, Receiver<String>) {
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| Whoami { tx: tx.clone() })
        .loops(1)
        .listen("127.0.0.1:0")
        .proxy_protocol(cfg)
        .start()
        .expect("engine");
    let addr = engine.local_addrs()[0];
    (engine, addr, rx)
}

fn ask(s: &mut TcpStream) -> String {
    s.write_all(b"whoami\n").unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

fn closed_by_proxy(engine: &Engine, n: u64) {
    util::stats_until(engine, "proxy closes", |c| c.total.closed_by.proxy >= n);
}

#[test]
fn v1_header_names_the_client_and_the_balancer_stays_visible() {
    let (engine, addr, rx) = engine(ProxyConfig::new(ProxyMode::V1));
    let mut s = connect(addr);
    let local = s.local_addr().unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.7 192.0.2.8 4321 443\r\n")
        .unwrap();
    assert_eq!(ask(&mut s), format!("192.0.2.7:4321 {local} -"));
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "open");
    engine.stop();
}

#[test]
fn v2_header_with_tlvs_trickled_byte_by_byte_with_data_behind_it() {
    let (engine, addr, _rx) = engine(ProxyConfig::new(ProxyMode::Any));
    let mut tlvs = Vec::new();
    Tlv {
        kind: tlv_type::AUTHORITY,
        value: b"example.test",
    }
    .encode(&mut tlvs);
    let header = ProxyHeader::with_parts(
        Version::V2,
        tether::proxy::Command::Proxy,
        tether::proxy::Transport::Stream,
        tether::proxy::Addresses::Inet {
            source: "[2001:db8::9]:999".parse().unwrap(),
            destination: "[2001:db8::1]:443".parse().unwrap(),
        },
        tlvs,
    );
    // Trickled: one byte per write.
    let mut s = connect(addr);
    let local = s.local_addr().unwrap();
    for b in header.encode() {
        s.write_all(&[b]).unwrap();
    }
    assert_eq!(
        ask(&mut s),
        format!("[2001:db8::9]:999 {local} example.test")
    );
    // Whole, with the first request in the same segment.
    let mut s = connect(addr);
    let local = s.local_addr().unwrap();
    let mut wire = header.encode();
    wire.extend_from_slice(b"whoami\n");
    s.write_all(&wire).unwrap();
    assert_eq!(
        ask(&mut s).lines().next().map(str::to_owned),
        Some(format!("[2001:db8::9]:999 {local} example.test"))
    );
    engine.stop();
}

#[test]
fn malformed_missing_and_late_headers_close_unheard() {
    let cfg = ProxyConfig::new(ProxyMode::Any).timeout(Duration::from_millis(300));
    let (engine, addr, rx) = engine(cfg);
    let cases: [&[u8]; 4] = [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
        &[b'P'; 1],
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut s = connect(addr);
        s.write_all(case).unwrap();
        s.write_all(b"whoami\n").ok();
        // Closed without an answer (the last case by the deadline).
        assert!(read_to_eof(&mut s).is_empty(), "case {i}");
        closed_by_proxy(&engine, i as u64 + 1);
    }
    // Silence past the deadline.
    let mut s = connect(addr);
    assert!(read_to_eof(&mut s).is_empty());
    closed_by_proxy(&engine, 5);
    // The handler heard of none of them.
    assert!(rx.try_recv().is_err());
    // A good one still works.
    let mut s = connect(addr);
    s.write_all(b"PROXY UNKNOWN\r\n").unwrap();
    let local = s.local_addr().unwrap();
    assert_eq!(ask(&mut s), format!("{local} {local} -"));
    engine.stop();
}

#[test]
fn optional_header_serves_plain_clients_with_their_socket_address() {
    let (engine, addr, _rx) = engine(ProxyConfig::new(ProxyMode::Any).required(false));
    let mut s = connect(addr);
    let local = s.local_addr().unwrap();
    assert_eq!(ask(&mut s), format!("{local} {local} -"));
    let mut s = connect(addr);
    s.write_all(b"PROXY TCP4 10.1.1.1 10.1.1.2 5 6\r\n")
        .unwrap();
    assert_eq!(ask(&mut s).split(' ').next(), Some("10.1.1.1:5"));
    engine.stop();
}

#[test]
fn oversized_v2_header_is_refused_from_its_preamble() {
    let cfg = ProxyConfig::new(ProxyMode::V2).max_header(256);
    let (engine, addr, _rx) = engine(cfg);
    let mut s = connect(addr);
    let mut wire = tether::proxy::V2_SIGNATURE.to_vec();
    wire.extend_from_slice(&[0x21, 0x11, 0x10, 0x00]);
    s.write_all(&wire).unwrap();
    assert!(read_to_eof(&mut s).is_empty());
    closed_by_proxy(&engine, 1);
    engine.stop();
}

// ---- HAProxy ----

struct Haproxy {
    child: Child,
    _dir: TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy in TCP mode on a free port, forwarding to `backend` with `send`
/// (`send-proxy` or `send-proxy-v2`). `None` (with a notice) if not installed.
fn haproxy(backend: SocketAddr, send: &str) -> Option<(Haproxy, SocketAddr)> {
    if !util::have_tool("haproxy") {
        return None;
    }
    // Tests run in parallel: each HAProxy gets its own directory.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tether-haproxy-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let cfg = format!(
        "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  server s1 {backend} {send}\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let end = std::time::Instant::now() + DEADLINE;
    while TcpStream::connect(front).is_err() {
        assert!(std::time::Instant::now() < end, "haproxy did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((
        Haproxy {
            child,
            _dir: TempDir(dir),
        },
        front,
    ))
}

#[test]
fn haproxy_send_proxy_v1_and_v2_carry_the_client_address() {
    for (mode, send) in [
        (ProxyMode::V1, "send-proxy"),
        (ProxyMode::V2, "send-proxy-v2"),
    ] {
        let (engine, addr, _rx) = engine(ProxyConfig::new(mode));
        let Some((_haproxy, front)) = haproxy(addr, send) else {
            return;
        };
        let mut s = connect(front);
        let local = s.local_addr().unwrap();
        let answer = ask(&mut s);
        let mut parts = answer.split(' ');
        assert_eq!(
            parts.next(),
            Some(local.to_string().as_str()),
            "{send}: {answer}"
        );
        // The socket peer is HAProxy's own outgoing connection, not the client.
        assert_ne!(parts.next(), Some(local.to_string().as_str()), "{send}");
        drop(s);
        engine.stop();
    }
}

#[test]
fn curl_through_haproxy_to_the_http_example_gets_its_own_address_from_whoami() {
    if !util::have_tool("curl") {
        return;
    }
    for (mode, send) in [("v2", "send-proxy-v2"), ("v1", "send-proxy")] {
        let args = [
            "--addr",
            "127.0.0.1:0",
            "--loops",
            "1",
            "--proxy-protocol",
            mode,
        ];
        let Some(server) = Served::start("http", &args) else {
            return;
        };
        let Some((_haproxy, front)) = haproxy(server.addr, send) else {
            return;
        };
        let port = free_port();
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--local-port", &port.to_string()])
            .arg(format!("http://{front}/whoami"))
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            body,
            format!("127.0.0.1:{port}"),
            "{send}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Straight to the server, without a header: refused, unanswered.
        let mut s = connect(server.addr);
        s.write_all(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert!(
            read_to_eof(&mut s).is_empty(),
            "{mode}: no header, no answer"
        );
    }
}

#[test]
fn haproxy_health_checks_are_local_commands() {
    // A v2 LOCAL header (what HAProxy's checks send): the socket address is used.
    let (engine, addr, _rx) = engine(ProxyConfig::new(ProxyMode::V2));
    let mut s = connect(addr);
    let mut wire = tether::proxy::V2_SIGNATURE.to_vec();
    wire.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    s.write_all(&wire).unwrap();
    let local = s.local_addr().unwrap();
    assert_eq!(ask(&mut s), format!("{local} {local} -"));
    let _ = read_n;
    engine.stop();
}
