//! The example programs as users script them: their flags, their output lines,
//! their clean exit on SIGTERM.

mod util;

use std::io::{BufRead, BufReader, Lines};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Instant;

use util::*;

fn spawn(name: &str, args: &[&str]) -> (Child, Receiver<String>) {
    let (child, out, _) = spawn_with(name, args, Stdio::null());
    (child, out)
}

/// As [`spawn`], with the lines of stderr too.
fn spawn_logging(name: &str, args: &[&str]) -> (Child, Receiver<String>, Receiver<String>) {
    spawn_with(name, args, Stdio::piped())
}

fn spawn_with(
    name: &str,
    args: &[&str],
    stderr: Stdio,
) -> (Child, Receiver<String>, Receiver<String>) {
    let mut child = Command::new(example(name))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    let out = line_channel(BufReader::new(child.stdout.take().unwrap()).lines());
    let err = match child.stderr.take() {
        Some(e) => line_channel(BufReader::new(e).lines()),
        None => channel().1,
    };
    (child, out, err)
}

fn line_channel<R: std::io::BufRead + Send + 'static>(lines: Lines<R>) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line matching `pred`, within the deadline.
fn line_where(rx: &Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line {what} within {DEADLINE:?}"),
        }
    }
}

fn listening(rx: &Receiver<String>) -> SocketAddr {
    let line = line_where(rx, "listening on", |l| l.starts_with("listening on "));
    line["listening on ".len()..].parse().expect("a host:port")
}

/// SIGTERM, then the exit status within the deadline.
fn terminate(mut child: Child) -> std::process::ExitStatus {
    // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < end,
            "no exit within {DEADLINE:?} of SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn echo_example_listens_echoes_and_stops_on_sigterm() {
    let (child, rx) = spawn(
        "echo",
        &[
            "--addr",
            "tcp://127.0.0.1:0",
            "--loops",
            "2",
            "--idle-timeout-ms",
            "0",
        ],
    );
    let addr = listening(&rx);
    let mut c = connect(addr);
    roundtrip(&mut c, b"hello from a script");
    assert!(terminate(child).success());
}

#[test]
fn client_example_pings_and_reconnects_to_frame_echo() {
    let (server, srx) = spawn(
        "frame_echo",
        &[
            "--addr",
            "127.0.0.1:0",
            "--loops",
            "1",
            "--max-frame",
            "1024",
        ],
    );
    let addr = listening(&srx).to_string();
    let (client, crx) = spawn(
        "client",
        &[
            "--addr",
            &addr,
            "--initial-backoff-ms",
            "50",
            "--max-backoff-ms",
            "200",
            "--heartbeat-ms",
            "50",
        ],
    );
    assert_eq!(
        line_where(&crx, "connected", |l| l.starts_with("connected ")),
        format!("connected {addr}")
    );
    let pong = line_where(&crx, "pong", |l| l.starts_with("pong "));
    assert!(
        pong.ends_with("us") && pong[5..pong.len() - 2].parse::<u64>().is_ok(),
        "{pong}"
    );
    // The server goes away: the client reports it and starts redialing.
    assert!(terminate(server).success());
    line_where(&crx, "disconnected", |l| l.starts_with("disconnected "));
    let retry = line_where(&crx, "reconnecting", |l| l.starts_with("reconnecting in "));
    assert!(
        retry.ends_with("(attempt 1)") && retry.contains("ms "),
        "{retry}"
    );
    assert!(terminate(client).success());
}

/// Runs an example to its exit (it must exit by itself within the deadline):
/// status code, stdout, stderr.
fn run(name: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(example(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    let end = Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{name} {args:?} did not exit by itself within {DEADLINE:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every example program built for this test run.
fn examples() -> Vec<&'static str> {
    let mut all = vec![
        "echo",
        "frame_echo",
        "client",
        "heartbeat",
        "soak",
        "resp",
        "game",
        "game_bots",
    ];
    if cfg!(feature = "http") {
        all.push("http");
    }
    if cfg!(feature = "ws") {
        all.push("push");
    }
    all
}

#[test]
fn every_example_answers_help_with_exit_0_and_usage_errors_with_exit_2() {
    for name in examples() {
        for help in ["--help", "-h"] {
            let (code, out, _) = run(name, &[help]);
            assert_eq!(code, 0, "{name} {help}");
            assert!(out.starts_with("usage: "), "{name} {help}: {out}");
        }
        let (code, _, err) = run(name, &["--no-such-flag"]);
        assert_eq!(code, 2, "{name} --no-such-flag: {err}");
        assert!(err.contains("--no-such-flag"), "{name}: {err}");
    }
    // The four servers and clients share one parser: every flag of theirs is
    // checked the same way.
    for name in ["echo", "frame_echo", "client", "heartbeat"] {
        let (code, out, _) = run(name, &["--addr", "--help"]);
        assert_eq!((code, out.starts_with("usage: ")), (0, true), "{name}");
        let bad: [&[&str]; 6] = [
            &["--addr"],
            &["--addr", "127.0.0.1:+0"],
            &["--addr", "[::1"],
            &["--addr", ":0"],
            &["--addr", "sctp://1.2.3.4:5"],
            &["--addr", "127.0.0.1:0", "extra"],
        ];
        for args in bad {
            let (code, _, err) = run(name, args);
            assert_eq!(code, 2, "{name} {args:?}: {err}");
            assert!(err.contains("usage: "), "{name} {args:?}: {err}");
        }
        let (_, _, err) = run(name, &["--addr", "[::1"]);
        assert!(
            err.contains("malformed"),
            "{name}: a syntax error, not a lookup: {err}"
        );
    }
    for args in [
        &["--max-frame", "18446744073709551615"][..],
        &["--max-frame", "0"],
        &["--max-frame", "+5"],
        &["--loops", "0"],
        &["--frame-timeout-ms", "-1"],
        &["--max-connections", "1e9"],
        &["--addr", "udp://127.0.0.1:0"],
    ] {
        let (code, _, err) = run("frame_echo", args);
        assert_eq!(code, 2, "frame_echo {args:?}: {err}");
    }
    let (code, _, err) = run("client", &["--addr", "unix:///tmp/x.sock"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run("heartbeat", &["--pings", "many"]);
    assert_eq!(code, 2, "{err}");
    // What a user typed is echoed escaped and cut, never raw.
    let long = format!("--{}\u{1b}[2J", "x".repeat(5000));
    let (code, _, err) = run("echo", &[&long]);
    assert_eq!(code, 2);
    assert!(!err.contains('\u{1b}') && err.len() < 1000, "{err}");
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[test]
fn frame_echo_serves_unix_sockets_and_removes_its_socket_on_sigterm() {
    let path = std::env::temp_dir().join(format!("tether-ex-{}.sock", std::process::id()));
    let addr = format!("unix://{}", path.display());
    let (child, rx) = spawn("frame_echo", &["--addr", &addr, "--loops", "1"]);
    let line = line_where(&rx, "listening on", |l| l.starts_with("listening on "));
    assert_eq!(line, format!("listening on {addr}"));
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let msg = frame(b"over a unix socket");
    std::io::Write::write_all(&mut c, &msg).unwrap();
    let mut got = vec![0; msg.len()];
    std::io::Read::read_exact(&mut c, &mut got).unwrap();
    assert_eq!(got, msg);
    assert!(terminate(child).success());
    assert!(!path.exists(), "the socket file is removed on exit");
}

#[test]
fn frame_echo_logs_hostile_connections_as_one_summary_not_a_line_each() {
    let (child, rx, err) = spawn_logging(
        "frame_echo",
        &[
            "--addr",
            "127.0.0.1:0",
            "--loops",
            "1",
            "--max-frame",
            "1024",
            "--fault-summary-ms",
            "300",
        ],
    );
    let addr = listening(&rx);
    const HOSTILE: usize = 40;
    for _ in 0..HOSTILE {
        let mut c = connect(addr);
        std::io::Write::write_all(&mut c, &u32::MAX.to_be_bytes()).unwrap();
        // Closed at once: the header claims more than --max-frame.
        assert!(read_to_eof(&mut c).is_empty());
    }
    let mut summed = 0;
    let mut lines = Vec::new();
    let end = Instant::now() + DEADLINE;
    while summed < HOSTILE {
        let line = err
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("summaries counted {summed} of {HOSTILE}: {lines:#?}"));
        if let Some(at) = line.find(" connections closed for peer faults") {
            assert!(line.contains("WARN"), "{line}");
            assert!(line.contains("protocol error: "), "{line}");
            let count = line[..at].rsplit(' ').next().unwrap();
            summed += count.parse::<usize>().unwrap();
        }
        lines.push(line);
    }
    assert_eq!(summed, HOSTILE);
    assert!(
        lines.len() < 10,
        "one summary per interval, not a line per connection: {lines:#?}"
    );
    assert!(terminate(child).success());
}

/// A server that holds every client with traffic that is never a pong: either
/// a header claiming 60,000 bytes, then one byte per interval, or a complete
/// one-byte frame per interval. Reports each accept.
fn hostile_server(trickle: bool, interval: std::time::Duration) -> (SocketAddr, Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            if tx.send(()).is_err() {
                return;
            }
            std::thread::spawn(move || {
                if trickle && std::io::Write::write_all(&mut s, &60_000u32.to_be_bytes()).is_err() {
                    return;
                }
                let chunk: &[u8] = if trickle { &[0] } else { &[0, 0, 0, 1, 0] };
                let end = Instant::now() + DEADLINE;
                while Instant::now() < end {
                    if std::io::Write::write_all(&mut s, chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(interval);
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn client_drops_a_server_that_trickles_or_chatters_without_answering_pings() {
    for trickle in [true, false] {
        // Traffic every 20 ms keeps a read-idle timeout of 3 × 100 ms satisfied.
        let (addr, accepts) = hostile_server(trickle, std::time::Duration::from_millis(20));
        let addr = addr.to_string();
        let (client, crx) = spawn(
            "client",
            &[
                "--addr",
                &addr,
                "--initial-backoff-ms",
                "20",
                "--heartbeat-ms",
                "100",
                "--pong-timeout-ms",
                "300",
            ],
        );
        line_where(&crx, "connected", |l| l.starts_with("connected "));
        accepts.recv_timeout(DEADLINE).unwrap();
        let gone = line_where(&crx, "disconnected", |l| l.starts_with("disconnected "));
        // Both deadlines are 300 ms: whichever comes first ends the link (the
        // pong deadline closes it locally).
        assert!(
            gone == "disconnected frame timeout" || gone == "disconnected closed locally",
            "trickle {trickle}: {gone}"
        );
        if !trickle {
            assert_eq!(gone, "disconnected closed locally");
        }
        line_where(&crx, "reconnecting", |l| l.starts_with("reconnecting in "));
        accepts.recv_timeout(DEADLINE).expect("the client redials");
        assert!(terminate(client).success());
    }
}
