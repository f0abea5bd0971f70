//! tether-load's resp protocol against a real redis-server (skipped with a
//! notice where it is not installed): SET and GET over random keys, pipelined,
//! with no error reply; a bad command's error replies are counted.

mod util;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::{json_number, run_json};

struct Redis {
    child: Child,
    addr: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis() -> Option<Redis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let child = match Command::new("redis-server")
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
    {
        Ok(c) => c,
        Err(e) => {
            println!(
                "notice: redis-server not runnable ({e}); skipping (apt-get install redis-server)"
            );
            return None;
        }
    };
    let addr = format!("127.0.0.1:{port}");
    let redis = Redis { child, addr };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&redis.addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(redis)
}

fn run(name: &str, redis: &Redis, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["--addr", &redis.addr, "--proto", "resp", "--duration", "1s"];
    args.extend(extra);
    let (code, json, _) = run_json(name, &args);
    (code, json)
}

#[test]
fn set_and_get_against_redis_server() {
    let Some(redis) = redis() else { return };
    for test in ["set", "get", "ping", "incr", "lpush"] {
        let (code, json) = run(
            test,
            &redis,
            &[
                "--resp-test",
                test,
                "--keyspace",
                "1000",
                "--conns",
                "10",
                "--depth",
                "16",
                "--loops",
                "1",
            ],
        );
        assert_eq!(code, Some(0), "{test}");
        assert!(json_number(&json, "requests") > 1000.0, "{test}");
        assert_eq!(json_number(&json, "errors"), 0.0, "{test}");
    }
}

#[test]
fn error_replies_are_counted() {
    let Some(redis) = redis() else { return };
    let (code, json) = run(
        "err",
        &redis,
        &[
            "--command",
            "NOSUCHCOMMAND __rand_int__",
            "--keyspace",
            "10",
            "--conns",
            "2",
            "--depth",
            "4",
        ],
    );
    assert_eq!(code, Some(0));
    let requests = json_number(&json, "requests");
    assert!(requests > 10.0);
    assert_eq!(json_number(&json, "refused"), requests);
}
