//! TLS: tether's `tls://` listener against tokio-rustls, same certificate, same
//! rustls (0.23, `ring`), same run.
//!
//! ```text
//! cargo bench -p tether-bench --bench tls -- [--rounds 3] [--secs 2] [--conns 8] [--idle 10000]
//! ```
//!
//! Each server is a child process (this binary re-executed with `--server
//! tether|tokio`) with one thread serving (tether: one loop; tokio: a
//! current-thread runtime, a task per connection reading into a 4 KiB array).
//! The parent is the client: blocking rustls clients, one thread per
//! connection. Servers take turns (A B A B …) for `--rounds` rounds, and the
//! table shows medians over rounds of:
//!
//! - echo, 64 B and 4 KiB: round trips per second and per server CPU-second,
//!   `--conns` connections each keeping one request in flight;
//! - handshakes: new TLS 1.3 sessions (no resumption) per second and per server
//!   CPU-second, each connecting, echoing one byte and closing;
//! - idle: server RSS growth per connection with `--idle` handshaken, idle
//!   connections open.
//!
//! The client shares the machine with the server, so rates are bounded by it;
//! per-server-CPU-second figures are the comparison.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::procstat;
use rustls::pki_types::ServerName;

const KINDS: [&str; 2] = ["tether", "tokio"];

// ---- the servers (child side) ----

fn server_config(dir: &str) -> Arc<rustls::ServerConfig> {
    let dir = std::path::Path::new(dir);
    let cfg = tether::tls::server_config_from_pem(&dir.join("cert.pem"), &dir.join("key.pem"))
        .expect("certificate files");
    Arc::new(cfg)
}

fn serve(kind: &str, certs: &str) -> io::Result<()> {
    let _ = common::sys::raise_open_file_limit();
    let cfg = server_config(certs);
    match kind {
        "tether" => {
            let engine = tether::Engine::builder(|_| common::servers::Echo)
                .loops(1)
                .listen("tls://127.0.0.1:0")
                .tls_config(cfg)
                .start()
                .map_err(io::Error::other)?;
            println!("listening on {}", engine.local_addrs()[0]);
            wait_for_stdin_eof();
            engine.stop();
            Ok(())
        }
        "tokio" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                println!("listening on {}", listener.local_addr()?);
                let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                std::thread::spawn(|| {
                    wait_for_stdin_eof();
                    std::process::exit(0);
                });
                loop {
                    let (sock, _) = listener.accept().await?;
                    let _ = sock.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let Ok(mut tls) = acceptor.accept(sock).await else {
                            return;
                        };
                        let mut buf = [0u8; 4096];
                        loop {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if tls.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            })
        }
        other => Err(io::Error::other(format!("unknown server {other}"))),
    }
}

fn wait_for_stdin_eof() {
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
}

// ---- the client (parent side) ----

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(kind: &str, certs: &str) -> io::Result<Server> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--server", kind, "--certs", certs])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io::Error::other(format!("{kind}: {line:?}")))?;
        Ok(Server { child, addr })
    }

    fn cpu(&self) -> Duration {
        procstat::cpu_time(self.child.id()).unwrap_or_default()
    }

    fn rss(&self) -> u64 {
        procstat::rss_bytes(self.child.id()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Client = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn client_config(certs: &str) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(format!("{certs}/cert.pem")).expect("cert");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).expect("a certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

fn dial(cfg: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> io::Result<Client> {
    let sock = TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("localhost").expect("a name");
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
    let mut c = rustls::StreamOwned::new(conn, sock);
    // One byte each way: the handshake is complete on both sides.
    c.write_all(b"x")?;
    c.read_exact(&mut [0u8; 1])?;
    Ok(c)
}

/// Runs `work` on `conns` threads for `secs`; returns operations done, wall
/// time and server CPU time.
fn timed(
    server: &Server,
    conns: usize,
    secs: f64,
    work: impl Fn(&AtomicBool, &AtomicU64) -> io::Result<()> + Sync,
) -> (u64, Duration, Duration) {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let cpu0 = server.cpu();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..conns {
            s.spawn(|| {
                if let Err(e) = work(&stop, &done) {
                    eprintln!("client: {e}");
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    (
        done.load(Ordering::Relaxed),
        t0.elapsed(),
        server.cpu().saturating_sub(cpu0),
    )
}

#[derive(Default, Clone, Copy)]
struct Rates {
    per_sec: f64,
    per_cpu_sec: f64,
}

fn rates((n, wall, cpu): (u64, Duration, Duration)) -> Rates {
    Rates {
        per_sec: n as f64 / wall.as_secs_f64(),
        per_cpu_sec: n as f64 / cpu.as_secs_f64().max(1e-3),
    }
}

fn echo(server: &Server, cfg: &Arc<rustls::ClientConfig>, size: usize, a: &Args) -> Rates {
    rates(timed(server, a.conns, a.secs, |stop, done| {
        let mut c = dial(cfg, server.addr)?;
        let msg = vec![0x5a; size];
        let mut back = vec![0; size];
        while !stop.load(Ordering::Relaxed) {
            c.write_all(&msg)?;
            c.read_exact(&mut back)?;
            if back != msg {
                return Err(io::Error::other("echo mismatch"));
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }))
}

fn handshakes(server: &Server, cfg: &Arc<rustls::ClientConfig>, a: &Args) -> Rates {
    rates(timed(server, a.conns, a.secs, |stop, done| {
        while !stop.load(Ordering::Relaxed) {
            let mut c = dial(cfg, server.addr)?;
            c.conn.send_close_notify();
            let _ = c.flush();
            done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }))
}

/// Server RSS growth per idle, handshaken connection.
fn idle(server: &Server, cfg: &Arc<rustls::ClientConfig>, n: usize) -> f64 {
    let before = server.rss();
    let threads = 4;
    let held: Vec<Vec<Client>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .filter_map(|_| dial(cfg, server.addr).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let open: usize = held.iter().map(Vec::len).sum();
    // Let the server settle (tokio frees handshake buffers lazily).
    std::thread::sleep(Duration::from_millis(300));
    let after = server.rss();
    drop(held);
    if open < n {
        eprintln!("idle: only {open} of {n} connections opened");
    }
    after.saturating_sub(before) as f64 / open.max(1) as f64
}

struct Args {
    rounds: usize,
    secs: f64,
    conns: usize,
    idle: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        rounds: 3,
        secs: 2.0,
        conns: 8,
        idle: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--secs" => a.secs = value()?.parse().map_err(|e| format!("{e}"))?,
            "--conns" => a.conns = value()?.parse().map_err(|e| format!("{e}"))?,
            "--idle" => a.idle = value()?.parse().map_err(|e| format!("{e}"))?,
            "--bench" => {}
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if let (Some(i), Some(j)) = (
        argv.iter().position(|a| a == "--server"),
        argv.iter().position(|a| a == "--certs"),
    ) {
        return match serve(&argv[i + 1], &argv[j + 1]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tls bench: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = common::sys::raise_open_file_limit();
    let dir = std::env::temp_dir().join(format!("tether-tls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a certificate");
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), c.key_pair.serialize_pem()).expect("write");
    let certs = dir.to_string_lossy().into_owned();
    let cfg = client_config(&certs);

    // [kind][metric] -> samples
    let names = ["echo 64 B", "echo 4 KiB", "handshakes"];
    let mut per_sec = vec![vec![Vec::new(); 3]; 2];
    let mut per_cpu = vec![vec![Vec::new(); 3]; 2];
    let mut idle_bytes = vec![Vec::new(); 2];
    for round in 0..a.rounds {
        for (k, kind) in KINDS.iter().enumerate() {
            let server = match Server::start(kind, &certs) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{kind}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let results = [
                echo(&server, &cfg, 64, &a),
                echo(&server, &cfg, 4096, &a),
                handshakes(&server, &cfg, &a),
            ];
            for (m, r) in results.iter().enumerate() {
                per_sec[k][m].push(r.per_sec);
                per_cpu[k][m].push(r.per_cpu_sec);
            }
            if a.idle > 0 {
                idle_bytes[k].push(idle(&server, &cfg, a.idle));
            }
            eprintln!("round {round} {kind}: done");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let load = procstat::load_average().map_or("?".into(), |l| format!("{l:.2}"));
    println!(
        "TLS, {} rounds of {} s, {} connections, one server thread; load average {load}",
        a.rounds, a.secs, a.conns
    );
    println!(
        "{:<12} {:>14} {:>14} {:>16} {:>16} {:>8}",
        "case", "tether /s", "tokio /s", "tether /CPU-s", "tokio /CPU-s", "ratio"
    );
    for (m, name) in names.iter().enumerate() {
        let (ts, ks) = (median(per_sec[0][m].clone()), median(per_sec[1][m].clone()));
        let (tc, kc) = (median(per_cpu[0][m].clone()), median(per_cpu[1][m].clone()));
        println!(
            "{name:<12} {ts:>14.0} {ks:>14.0} {tc:>16.0} {kc:>16.0} {:>7.2}x",
            tc / kc.max(1e-9)
        );
    }
    if a.idle > 0 {
        let (t, k) = (median(idle_bytes[0].clone()), median(idle_bytes[1].clone()));
        println!(
            "{:<12} {:>14} {:>14}   RSS per idle connection at {}: tether {:.1} KiB, tokio-rustls {:.1} KiB ({:.2}x)",
            "idle",
            "",
            "",
            a.idle,
            t / 1024.0,
            k / 1024.0,
            t / k.max(1e-9)
        );
    }
    ExitCode::SUCCESS
}
