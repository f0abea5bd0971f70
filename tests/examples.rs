//! The example programs as users script them: their flags, their output lines,
//! their clean exit on SIGTERM.

mod util;

use std::io::{BufRead, BufReader, Lines};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Instant;

use util::*;

/// An example binary built next to this test (cargo builds examples for tests).
fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

fn spawn(name: &str, args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(example(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    let lines: Lines<BufReader<ChildStdout>> = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
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
