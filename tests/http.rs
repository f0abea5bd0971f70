//! The HTTP/1.1 layer against real clients (curl, wrk) and hostile input,
//! over loopback.
#![cfg(feature = "http")]

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use tether::http::{HttpConn, Served, Server};
use tether::{Action, Conn, Engine, EventHandler, Options};
use util::*;

/// `/plaintext`, `/echo` (the body back), `/upgrade` (switches to raw echo).
struct App {
    http: Server,
}

impl EventHandler for App {
    type State = HttpConn;

    fn on_traffic(&mut self, conn: &mut Conn<'_, HttpConn>) -> Action {
        let served = self.http.serve(conn, |req, res| match req.path() {
            "/plaintext" => res
                .header("Content-Type", "text/plain")
                .body(b"Hello, World!"),
            "/echo" => res.body(req.body()),
            "/upgrade" if req.is_upgrade() => {
                res.upgrade(&[("Upgrade", b"echo")]);
            }
            _ => res.status(404).body(b"not found"),
        });
        if served == Served::Upgraded {
            let data = conn.read_buf();
            conn.write(data);
            conn.consume(data.len());
        }
        Action::Continue
    }
}

fn server() -> (Engine, SocketAddr) {
    let mut options = Options::default();
    options.loops = 1;
    options.frame_timeout = Some(Duration::from_millis(300));
    let engine = Engine::builder(|_| App {
        http: Server::new()
            .server_name("tether-test")
            .max_head(4096)
            .max_headers(16)
            .max_body(64 * 1024),
    })
    .options(options)
    .listen("127.0.0.1:0")
    .start()
    .expect("engine");
    let addr = engine.local_addrs()[0];
    (engine, addr)
}

/// One response: (status, head, body), read with the deadline.
fn read_response(s: &mut TcpStream, pending: &mut Vec<u8>) -> (u16, String, Vec<u8>) {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            let status: u16 = head[9..12].parse().expect("a status code");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while pending.len() < end + 4 + len {
                fill(s, pending);
            }
            let body = pending[end + 4..end + 4 + len].to_vec();
            pending.drain(..end + 4 + len);
            return (status, head, body);
        }
        fill(s, pending);
    }
}

fn fill(s: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("read within the deadline");
    assert!(n > 0, "EOF before a complete response");
    pending.extend_from_slice(&buf[..n]);
}

/// The answer to `request`, then EOF.
fn rejected_with(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut s = connect(addr);
    s.write_all(request).unwrap();
    let mut pending = Vec::new();
    let (status, head, _) = read_response(&mut s, &mut pending);
    assert!(head.contains("Connection: close"), "{head}");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("EOF after the error");
    status
}

#[test]
fn curl_get_chunked_post_and_http10() {
    if !have_tool("curl") {
        return;
    }
    let (engine, addr) = server();
    let url = |path: &str| format!("http://{addr}{path}");
    let out = Command::new("curl")
        .args(["-sS", "-i", &url("/plaintext")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Server: tether-test\r\n") && text.contains("\r\nDate: "));
    assert!(text.ends_with("\r\n\r\nHello, World!"), "{text}");

    let body = pattern(20_000, 7);
    let mut curl = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
        ])
        .arg(url("/echo"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    curl.stdin.take().unwrap().write_all(&body).unwrap();
    let out = curl.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, body);

    let out = Command::new("curl")
        .args(["-sS", "-i", "--http1.0", &url("/plaintext")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with("Hello, World!"), "{text}");
    engine.stop();
}

#[test]
fn sixteen_pipelined_requests_in_one_write_are_answered_in_order() {
    let (engine, addr) = server();
    let mut s = connect(addr);
    let mut batch = Vec::new();
    for i in 0..16 {
        let path = if i % 2 == 0 { "/plaintext" } else { "/missing" };
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    s.write_all(&batch).unwrap();
    let mut pending = Vec::new();
    for i in 0..16 {
        let (status, _, body) = read_response(&mut s, &mut pending);
        if i % 2 == 0 {
            assert_eq!((status, &body[..]), (200, &b"Hello, World!"[..]));
        } else {
            assert_eq!(status, 404);
        }
    }
    // HTTP/1.0 keep-alive and a final close.
    s.write_all(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let (_, head, _) = read_response(&mut s, &mut pending);
    assert!(head.contains("Connection: keep-alive"), "{head}");
    s.write_all(
        b"GET /plaintext HTTP/1.1\r\nConnection: close\r\n\r\nGET /plaintext HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    let (_, head, _) = read_response(&mut s, &mut pending);
    assert!(head.contains("Connection: close"), "{head}");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing answered after Connection: close");
    engine.stop();
}

#[test]
fn bodies_by_length_chunked_and_after_100_continue() {
    let (engine, addr) = server();
    let mut s = connect(addr);
    let mut pending = Vec::new();
    // A Content-Length body split across writes.
    s.write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello")
        .unwrap();
    std::thread::yield_now();
    s.write_all(b"world").unwrap();
    let (status, _, body) = read_response(&mut s, &mut pending);
    assert_eq!((status, &body[..]), (200, &b"helloworld"[..]));
    // A chunked body in pieces, with an extension and a trailer.
    for piece in [
        &b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc"[..],
        b"\r\n4\r\ndefg\r\n0\r\nTrailer: 1\r\n",
        b"\r\n",
    ] {
        s.write_all(piece).unwrap();
    }
    let (status, _, body) = read_response(&mut s, &mut pending);
    assert_eq!((status, &body[..]), (200, &b"abcdefg"[..]));
    // Expect: 100-continue: the interim answer comes before the body is sent.
    s.write_all(b"PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        .unwrap();
    while pending.len() < 25 {
        fill(&mut s, &mut pending);
    }
    assert_eq!(&pending[..25], b"HTTP/1.1 100 Continue\r\n\r\n");
    pending.drain(..25);
    s.write_all(b"abc").unwrap();
    let (status, _, body) = read_response(&mut s, &mut pending);
    assert_eq!((status, &body[..]), (200, &b"abc"[..]));
    engine.stop();
}

#[test]
fn hostile_requests_get_their_status_and_a_close() {
    let (engine, addr) = server();
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.resize(8000, b'a');
    assert_eq!(rejected_with(addr, &big), 431);
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..40 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(rejected_with(addr, &many), 431);
    assert_eq!(
        rejected_with(
            addr,
            b"POST /echo HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"
        ),
        413
    );
    assert_eq!(
        rejected_with(
            addr,
            b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        ),
        400
    );
    assert_eq!(
        rejected_with(
            addr,
            b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\n"
        ),
        413
    );
    assert_eq!(
        rejected_with(
            addr,
            b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        400
    );
    assert_eq!(
        rejected_with(addr, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
        400
    );
    assert_eq!(rejected_with(addr, b"\x16\x03\x01\x00\x00\r\n\r\n"), 400);
    engine.stop();
}

#[test]
fn an_unfinished_head_is_closed_by_the_frame_timeout() {
    let (engine, addr) = server();
    let mut s = connect(addr);
    // Slowloris: a head that never ends, trickled.
    s.write_all(b"GET /plaintext HTTP/1.1\r\nX-a: ").unwrap();
    for _ in 0..3 {
        let _ = s.write_all(b"a");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut rest = Vec::new();
    let started = std::time::Instant::now();
    s.read_to_end(&mut rest)
        .expect("closed within the deadline");
    assert!(rest.is_empty());
    assert!(started.elapsed() < DEADLINE);
    engine.stop();
}

#[test]
fn upgrade_hands_over_the_bytes_after_the_request() {
    let (engine, addr) = server();
    let mut s = connect(addr);
    s.write_all(
        b"GET /upgrade HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly bytes",
    )
    .unwrap();
    let mut pending = Vec::new();
    let (status, head, _) = read_response(&mut s, &mut pending);
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("Upgrade: echo") && head.contains("Connection: Upgrade"));
    while pending.len() < 11 {
        fill(&mut s, &mut pending);
    }
    assert_eq!(&pending[..], b"early bytes");
    roundtrip(&mut s, b"GET / HTTP/1.1\r\n\r\n");
    engine.stop();
}

#[test]
fn wrk_runs_without_errors() {
    if !have_tool("wrk") {
        return;
    }
    let (engine, addr) = server();
    let out = Command::new("wrk")
        .args(["-t1", "-c16", "-d1s", &format!("http://{addr}/plaintext")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Requests/sec"), "{text}");
    assert!(!text.contains("Socket errors"), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    engine.stop();
}

#[test]
fn http_example_serves_techempower_endpoints() {
    use std::io::BufRead;
    let mut child = Command::new(example("http"))
        .args(["--addr", "127.0.0.1:0", "--loops", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line.trim()["listening on ".len()..].parse().unwrap();
    let mut s = connect(addr);
    s.write_all(
        b"GET /plaintext HTTP/1.1\r\n\r\nGET /json HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    let mut pending = Vec::new();
    let (status, head, body) = read_response(&mut s, &mut pending);
    assert_eq!((status, &body[..]), (200, &b"Hello, World!"[..]));
    assert!(head.contains("Content-Type: text/plain") && head.contains("Server: tether"));
    assert!(head.contains("\r\nDate: "), "{head}");
    let (status, head, body) = read_response(&mut s, &mut pending);
    assert_eq!(
        (status, &body[..]),
        (200, &br#"{"message":"Hello, World!"}"#[..])
    );
    assert!(head.contains("Content-Type: application/json"));
    assert_eq!(read_response(&mut s, &mut pending).0, 404);
    let _ = child.kill();
    let _ = child.wait();
    let help = Command::new(example("http"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let bad = Command::new(example("http"))
        .arg("--nope")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
