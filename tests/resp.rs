//! The RESP server example against redis-cli, redis-benchmark and hostile
//! input, over loopback.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use util::served::Served;
use util::*;

/// The `resp` example on an ephemeral port, killed when dropped.
fn resp_server(loops: &str) -> Served {
    Served::start("resp", &["--addr", "127.0.0.1:0", "--loops", loops])
        .expect("the resp example is built with the tests")
}

/// The server's port, as redis-cli and redis-benchmark take it.
fn port(server: &Served) -> String {
    server.addr.port().to_string()
}

/// Runs `commands` (one per line) through one redis-cli and returns its
/// output lines.
fn cli(server: &Served, commands: &str) -> Vec<String> {
    let mut child = Command::new("redis-cli")
        .args(["-p", &port(server)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn redis_cli_runs_every_command() {
    if !have_tool("redis-cli") {
        return;
    }
    let server = resp_server("2");
    let cases: &[(&str, &[&str])] = &[
        ("PING", &["PONG"]),
        ("PING hello", &["hello"]),
        ("ECHO hi", &["hi"]),
        ("SET k v", &["OK"]),
        ("GET k", &["v"]),
        ("SET k w NX", &[""]),
        ("SET k w XX", &["OK"]),
        ("SET fresh 1 XX", &[""]),
        ("SET ttl v EX 100", &["OK"]),
        ("TTL ttl", &["100"]),
        ("PEXPIRE ttl 50000", &["1"]),
        ("TTL ttl", &["50"]),
        ("PTTL k", &["-1"]),
        ("PTTL nope", &["-2"]),
        ("EXPIRE k 1000", &["1"]),
        ("EXISTS k nope", &["1"]),
        ("DEL k nope", &["1"]),
        ("INCR n", &["1"]),
        ("INCRBY n 41", &["42"]),
        ("DECR n", &["41"]),
        ("INCR k2", &["1"]),
        ("MSET a 1 b 2", &["OK"]),
        ("MGET a b c", &["1", "2", ""]),
        ("RPUSH l x y", &["2"]),
        ("LPUSH l w", &["3"]),
        ("LRANGE l 0 -1", &["w", "x", "y"]),
        ("LLEN l", &["3"]),
        ("LPOP l", &["w"]),
        ("RPOP l", &["y"]),
        ("SADD s a b a", &["2"]),
        ("SCARD s", &["2"]),
        ("SREM s a", &["1"]),
        ("SMEMBERS s", &["b"]),
        ("SPOP s", &["b"]),
        ("SCARD s", &["0"]),
        ("HSET h f 1 g 2", &["2"]),
        ("HGET h f", &["1"]),
        ("HDEL h f", &["1"]),
        ("HGETALL h", &["g", "2"]),
        // redis-cli prints a blank line after an error and for an empty array.
        (
            "GET l",
            &[
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                "",
            ],
        ),
        ("CONFIG GET save", &["save", ""]),
        ("COMMAND DOCS", &[""]),
        ("SELECT 0", &["OK"]),
        ("SELECT 1", &["ERR DB index is out of range", ""]),
        (
            "NOSUCH x",
            &[
                "ERR unknown command 'NOSUCH', with args beginning with: 'x' ",
                "",
            ],
        ),
        (
            "GET",
            &["ERR wrong number of arguments for 'get' command", ""],
        ),
        ("FLUSHALL", &["OK"]),
        ("DBSIZE", &["0"]),
        ("SET after flush", &["OK"]),
        ("DBSIZE", &["1"]),
    ];
    let script: String = cases.iter().map(|(c, _)| format!("{c}\n")).collect();
    let got = cli(&server, &script);
    let expected: Vec<String> = cases
        .iter()
        .flat_map(|(_, out)| out.iter().map(|s| s.to_string()))
        .collect();
    assert_eq!(got, expected);

    // A key with a 30 ms TTL is gone once that has passed (waited for with
    // the deadline, not a sleep).
    assert_eq!(
        cli(&server, "SET brief v PX 30\nEXISTS brief\n"),
        ["OK", "1"]
    );
    let end = std::time::Instant::now() + DEADLINE;
    while cli(&server, "EXISTS brief\n") != ["0"] {
        assert!(std::time::Instant::now() < end, "the key did not expire");
    }
    assert_eq!(cli(&server, "DBSIZE\n"), ["1"]);
}

#[test]
fn inline_commands_and_protocol_errors_close_the_connection() {
    let server = resp_server("1");
    let mut s = connect(server.addr);
    s.write_all(b"PING\r\nSET a 1\nGET a\r\n\r\n").unwrap();
    assert_eq!(read_n(&mut s, 7 + 5 + 7), b"+PONG\r\n+OK\r\n$1\r\n1\r\n");
    // QUIT answers, then closes; what follows it is not run.
    s.write_all(b"*1\r\n$4\r\nQUIT\r\nPING\r\n").unwrap();
    assert_eq!(read_to_eof(&mut s), b"+OK\r\n");
    for hostile in [
        &b"*1\r\n$99999999999\r\n"[..],
        b"*99999999\r\n",
        b"*1\r\n*1\r\n$4\r\nPING\r\n",
        b"*1\r\n:1\r\n",
        b"$x\r\n",
    ] {
        let mut s = connect(server.addr);
        s.write_all(hostile).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)
            .expect("a close within the deadline");
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("-ERR Protocol error: "), "{reply}");
        assert!(
            reply.ends_with("\r\n") && reply.lines().count() == 1,
            "{reply}"
        );
    }
}

#[test]
fn redis_benchmark_reports_no_error() {
    if !have_tool("redis-benchmark") {
        return;
    }
    let server = resp_server("1");
    let out = Command::new("redis-benchmark")
        .args(["-p", &port(&server), "-q", "-n", "20000", "-t"])
        .arg("ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,lrange_100,mset")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let lower = text.to_lowercase();
    assert!(
        !lower.contains("error") && !lower.contains("warning"),
        "{text}"
    );
    for test in [
        "PING_INLINE",
        "PING_MBULK",
        "SET",
        "GET",
        "MSET",
        "LRANGE_100",
    ] {
        assert!(text.contains(test), "{test} missing: {text}");
    }
}

#[test]
fn redis_cli_subscribe_in_one_process_publish_in_another() {
    if !have_tool("redis-cli") {
        return;
    }
    let server = resp_server("2");
    let mut sub = Command::new("redis-cli")
        .args(["-p", &port(&server), "subscribe", "news", "sport"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = BufReader::new(sub.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(DEADLINE)
            .expect("a line from the subscriber")
    };
    let confirmations: Vec<String> = (0..6).map(|_| next()).collect();
    assert_eq!(
        confirmations,
        ["subscribe", "news", "1", "subscribe", "sport", "2"]
    );
    // Several publishers, one connection each, spread over both loops.
    for i in 0..4 {
        let msg = format!("hello {i}");
        assert_eq!(cli(&server, &format!("PUBLISH news \"{msg}\"\n")), ["1"]);
        let got: Vec<String> = (0..3).map(|_| next()).collect();
        assert_eq!(got, ["message", "news", msg.as_str()]);
    }
    assert_eq!(cli(&server, "PUBLISH nobody x\n"), ["0"]);
    let _ = sub.kill();
    let _ = sub.wait();

    // The protocol as a raw client sees it: confirmations, the subscribed-mode
    // restriction, UNSUBSCRIBE of everything.
    let mut s = connect(server.addr);
    s.write_all(b"SUBSCRIBE a\r\nGET x\r\nPING\r\nUNSUBSCRIBE\r\nGET x\r\n")
        .unwrap();
    let mut want = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n".to_vec();
    want.extend_from_slice(b"-ERR only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
    want.extend_from_slice(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    want.extend_from_slice(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n");
    want.extend_from_slice(b"$-1\r\n");
    assert_eq!(
        String::from_utf8_lossy(&read_n(&mut s, want.len())),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn resp_example_flags() {
    let help = Command::new(example("resp"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("usage: resp"));
    let bad = Command::new(example("resp"))
        .arg("--loops")
        .arg("0")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
