//! TLS listeners and dials over real loopback sockets: rustls's own client,
//! `openssl s_client`, `curl --cacert` and `openssl s_server` as peers; the
//! handshake timeout, garbage, untrusted clients and close_notify.
#![cfg(feature = "tls")]

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tether::tls::ClientTls;
use tether::{Action, CloseReason, Conn, ConnectOptions, Engine, EventHandler};
use util::served::Served;
use util::{DEADLINE, connect, have_tool as have};

struct Certs {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    dir: std::path::PathBuf,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Certs {
    /// A self-signed certificate for `localhost` and 127.0.0.1 (another one,
    /// with its own key, for the tag `other`), also written as PEM files. The
    /// pairs are fixed files in tests/data/tls (see its README).
    fn new(tag: &str) -> Certs {
        let name = if tag == "other" { "other" } else { "localhost" };
        let fixture = |ext: &str| {
            let path = format!("{}/tests/data/tls/{name}.{ext}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let dir = std::env::temp_dir().join(format!("tether-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), fixture("cert.pem")).unwrap();
        std::fs::write(dir.join("key.pem"), fixture("key.pem")).unwrap();
        Certs {
            cert: CertificateDer::from(fixture("cert.der")),
            key: PrivatePkcs8KeyDer::from(fixture("key.der")).into(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn server(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Echoes; `bye\n` closes after flush; `http` answers any request with a fixed
/// HTTP response; reports opens (with ALPN) and close reasons.
struct Echo {
    tx: Sender<String>,
}

impl EventHandler for Echo {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let alpn = conn
            .tls()
            .and_then(|t| t.alpn_protocol())
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let _ = self.tx.send(format!("open {}", alpn.unwrap_or_default()));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        if data.starts_with(b"GET ") {
            if data.windows(4).any(|w| w == b"\r\n\r\n") {
                conn.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n",
                );
                conn.consume(data.len());
                conn.close_after_flush();
            }
            return Action::Continue;
        }
        conn.write(data);
        conn.consume(data.len());
        if data.ends_with(b"bye\n") {
            conn.close_after_flush();
        }
        Action::Continue
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) {
        let _ = self.tx.send(format!("close {}", util::reason_name(reason)));
    }
}

fn server(
    certs: &Certs,
    alpn: &[&[u8]],
) -> (Engine, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| Echo { tx: tx.clone() })
        .loops(1)
        .listen("tls://127.0.0.1:0")
        .tls_config(certs.server(alpn))
        .tls_handshake_timeout(Duration::from_millis(400))
        .start()
        .expect("engine");
    let addr = engine.local_addrs()[0];
    (engine, addr, rx)
}

fn rustls_client(
    certs: &Certs,
    addr: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(certs.client(), name).unwrap();
    rustls::StreamOwned::new(conn, connect(addr))
}

#[test]
fn echo_small_and_large_through_rustls_and_close_notify() {
    let certs = Certs::new("echo");
    let (engine, addr, rx) = server(&certs, &[b"echo"]);
    let mut c = rustls_client(&certs, addr);
    for len in [64, 4096, 300_000] {
        let msg = util::pattern(len, len as u64);
        c.write_all(&msg).unwrap();
        let mut got = vec![0; len];
        c.read_exact(&mut got).unwrap();
        assert!(got == msg, "{len} bytes echoed");
    }
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "open ");
    c.write_all(b"bye\n").unwrap();
    let mut rest = Vec::new();
    // A clean close: close_notify, so no UnexpectedEof.
    c.read_to_end(&mut rest).expect("close_notify before FIN");
    assert_eq!(rest, b"bye\n");
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "close Local");
    engine.stop();
}

#[test]
fn alpn_is_negotiated() {
    let certs = Certs::new("alpn");
    let (engine, addr, rx) = server(&certs, &[b"h2", b"echo"]);
    let name = ServerName::try_from("localhost").unwrap();
    let mut cfg = (*certs.client()).clone();
    cfg.alpn_protocols = vec![b"echo".to_vec()];
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut c = rustls::StreamOwned::new(conn, connect(addr));
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "open echo");
    engine.stop();
}

#[test]
fn handshake_timeout_garbage_and_untrusted_clients_close_unheard() {
    let certs = Certs::new("bad");
    let (engine, addr, rx) = server(&certs, &[]);
    // Silence: the handshake deadline.
    let mut s = connect(addr);
    assert_eq!(s.read(&mut [0u8; 64]).unwrap(), 0);
    util::stats_until(&engine, "a handshake timeout", |s| {
        s.total.closed_by.tls >= 1
    });
    // Plain HTTP at a TLS port: an alert, then the close.
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got.first(), Some(&21), "an alert record: {got:?}");
    util::stats_until(&engine, "a refused handshake", |s| {
        s.total.closed_by.tls >= 2
    });
    // A client that does not trust the certificate.
    let other = Certs::new("other");
    let mut c = rustls_client(&other, addr);
    assert!(
        c.write_all(b"x")
            .and_then(|_| c.read(&mut [0u8; 1]))
            .is_err()
    );
    util::stats_until(&engine, "an untrusting client", |s| {
        s.total.closed_by.tls >= 3
    });
    assert!(rx.try_recv().is_err(), "the handler heard of none");
    engine.stop();
}

#[test]
fn openssl_s_client_echoes() {
    if !have("openssl") {
        return;
    }
    let certs = Certs::new("s_client");
    let (engine, addr, _rx) = server(&certs, &[]);
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-servername",
            "localhost",
        ])
        .args([
            "-connect",
            &addr.to_string(),
            "-CAfile",
            &certs.path("cert.pem"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello over openssl\n").unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let reader = std::thread::spawn(move || {
        out.read_line(&mut line).unwrap();
        line
    });
    let line = recv_thread(reader);
    assert_eq!(line, "hello over openssl\n");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    engine.stop();
}

/// Joins a reader thread, killing the test at the deadline instead of hanging.
fn recv_thread(t: std::thread::JoinHandle<String>) -> String {
    let end = std::time::Instant::now() + DEADLINE;
    while !t.is_finished() {
        assert!(
            std::time::Instant::now() < end,
            "no answer within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    t.join().unwrap()
}

#[test]
fn curl_with_cacert_gets_a_response() {
    if !have("curl") {
        return;
    }
    let certs = Certs::new("curl");
    let (engine, addr, _rx) = server(&certs, &[b"http/1.1"]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            &certs.path("cert.pem"),
        ])
        .arg(format!("https://localhost:{}/", addr.port()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello\n");
    engine.stop();
}

#[test]
fn http_example_serves_https_to_curl() {
    if !have("curl") {
        return;
    }
    let certs = Certs::new("http-example");
    let (cert, key) = (certs.path("cert.pem"), certs.path("key.pem"));
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--loops",
        "1",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let Some(server) = Served::start("http", &args) else {
        return;
    };
    let get = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert", &cert])
            .arg(format!("https://localhost:{}{path}", server.addr.port()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(get("/plaintext"), "Hello, World!");
    assert!(get("/whoami").starts_with("127.0.0.1:"));
}

#[test]
fn echo_example_over_tls() {
    let certs = Certs::new("echo-example");
    let (cert, key) = (certs.path("cert.pem"), certs.path("key.pem"));
    let args = [
        "--addr",
        "tls://127.0.0.1:0",
        "--loops",
        "1",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let Some(server) = Served::start("echo", &args) else {
        return;
    };
    let mut c = rustls_client(&certs, server.addr);
    c.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
}

/// A dialed client: writes `hello\n` once open, reports what comes back.
struct Dialer {
    tx: Sender<String>,
}

impl EventHandler for Dialer {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        conn.write(b"hello tls\n");
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        if let Some(end) = data.iter().position(|&b| b == b'\n') {
            let _ = self
                .tx
                .send(String::from_utf8_lossy(&data[..end]).into_owned());
            conn.consume(end + 1);
        }
        Action::Continue
    }
}

#[test]
fn tether_client_against_openssl_s_server() {
    if !have("openssl") {
        return;
    }
    let certs = Certs::new("s_server");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-rev", "-quiet", "-accept", &port.to_string()])
        .args([
            "-cert",
            &certs.path("cert.pem"),
            "-key",
            &certs.path("key.pem"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let end = std::time::Instant::now() + DEADLINE;
    while TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < end, "s_server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| Dialer { tx: tx.clone() })
        .loops(1)
        .start()
        .unwrap();
    let tls = ClientTls::new(certs.client(), "localhost").unwrap();
    engine
        .connect_with(addr, (), ConnectOptions::default().tls(tls))
        .unwrap();
    // -rev answers each line reversed.
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "slt olleh");
    engine.stop();
    let _ = server.kill();
    let _ = server.wait();
}
