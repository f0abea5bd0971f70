//! The push gateway example with a real redis-server: two gateways share one
//! Redis; a PUBLISH reaches the subscribers of both; after Redis is killed
//! and restarted both reconnect and re-subscribe, and the next PUBLISH
//! reaches everyone again. Skipped with a notice when redis-server is
//! missing.
#![cfg(feature = "ws")]

mod util;
mod ws_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::{DEADLINE, example, have_tool};
use ws_common::Peer;

/// A redis-server on `port`, without persistence.
fn redis(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let end = Instant::now() + DEADLINE;
    while command(port, &["PING"]).is_none() {
        assert!(Instant::now() < end, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Sends one command to Redis and returns its reply line (first line).
fn command(port: u16, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(DEADLINE)).ok()?;
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(out.as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    // A reply ends with CRLF; NUMSUB answers an array: four lines.
    let lines = if args[0] == "PUBSUB" { 4 } else { 1 };
    while reply.iter().filter(|&&b| b == b'\n').count() < lines {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&reply).into_owned())
}

/// Waits until `topic` has `n` subscribed Redis connections.
fn await_numsub(port: u16, topic: &str, n: usize) {
    let end = Instant::now() + DEADLINE;
    let want = format!(":{n}\r\n");
    loop {
        if command(port, &["PUBSUB", "NUMSUB", topic]).is_some_and(|r| r.ends_with(&want)) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{topic} never had {n} subscribers in redis"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn gateway(redis_port: u16) -> (Child, SocketAddr) {
    let mut child = Command::new(example("push"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--loops",
            "2",
            "--redis",
            &format!("127.0.0.1:{redis_port}"),
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the push example (cargo build --features ws --example push)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening on")
        .parse()
        .unwrap();
    (child, addr)
}

fn subscriber(addr: SocketAddr, topic: &str) -> Peer {
    let (mut p, _) = Peer::connect_path(addr, "/ws", None);
    p.send(true, 0, 1, format!("SUB {topic}").as_bytes());
    p.expect_echo(1, format!("OK SUB {topic}").as_bytes());
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    // SAFETY: kill(2) on a child we spawned and have not waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < end, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn post(addr: SocketAddr, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn two_gateways_one_redis_publish_reaches_all_and_survives_a_redis_restart() {
    if !have_tool("redis-server") {
        return;
    }
    let port = free_port();
    let mut redis_child = redis(port);
    let (a, a_addr) = gateway(port);
    let (b, b_addr) = gateway(port);
    let mut subs = vec![
        subscriber(a_addr, "news"),
        subscriber(a_addr, "news"),
        subscriber(b_addr, "news"),
        subscriber(b_addr, "news"),
    ];
    let mut other = subscriber(b_addr, "other");
    await_numsub(port, "news", 2);
    assert_eq!(
        command(port, &["PUBLISH", "news", "hello"]).as_deref(),
        Some(":2\r\n")
    );
    for s in &mut subs {
        s.expect_echo(1, b"hello");
    }

    // HTTP publishing reaches the subscribers of that gateway.
    let res = post(a_addr, "/publish/news", "via http");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    for s in &mut subs[..2] {
        s.expect_echo(1, b"via http");
    }

    // UNSUB: the last subscriber of a topic unsubscribes the link.
    other.send(true, 0, 1, b"UNSUB other");
    other.expect_echo(1, b"OK UNSUB other");
    await_numsub(port, "other", 0);

    // Redis goes away and comes back: both gateways reconnect and subscribe
    // again to what their clients want.
    redis_child.kill().unwrap();
    redis_child.wait().unwrap();
    let mut redis_child = redis(port);
    await_numsub(port, "news", 2);
    assert_eq!(
        command(port, &["PUBLISH", "news", "after restart"]).as_deref(),
        Some(":2\r\n")
    );
    for s in &mut subs {
        s.expect_echo(1, b"after restart");
    }

    assert!(terminate(a).success());
    assert!(terminate(b).success());
    redis_child.kill().unwrap();
    let _ = redis_child.wait();
}

#[test]
fn push_answers_help_and_usage_errors() {
    let run = |args: &[&str]| {
        let out = Command::new(example("push"))
            .args(args)
            .output()
            .expect("the push example");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("usage: push"), "{out}");
    assert_eq!(run(&["--bogus"]).0, Some(2));
    assert_eq!(run(&["--redis", "no-port"]).0, Some(2));
    assert_eq!(run(&["--loops", "0"]).0, Some(2));
}
