//! Descriptor exhaustion: accepting pauses with a growing delay instead of
//! spinning, and resumes once descriptors are free again.
//!
//! The server runs in a child process (this test binary re-executed) whose
//! RLIMIT_NOFILE is lowered, so the limit does not starve the test harness.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

const CHILD_ENV: &str = "TETHER_EMFILE_CHILD";
const FD_LIMIT: u64 = 48;

fn child() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the rlimit we pass.
    let rc = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = FD_LIMIT;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim)
    };
    assert_eq!(rc, 0, "setrlimit");
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .init();
    let (factory, _rx) = recorder();
    let engine = one_loop(factory);
    println!("listening on {}", engine.local_addrs()[0]);
    // Serve until the parent closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    engine.stop();
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn emfile_pauses_accepting_without_spinning_and_recovers() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child();
    }
    let mut server = Command::new(std::env::current_exe().unwrap())
        .args([
            "emfile_pauses_accepting_without_spinning_and_recovers",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("child printed its address").unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.parse().unwrap();
        }
    };

    // More connections than the child has descriptors: the kernel completes them
    // all (backlog), the server can accept only some.
    let mut clients: Vec<_> = (0..2 * FD_LIMIT).map(|_| connect(addr)).collect();
    roundtrip(&mut clients[0], b"first is served");

    // While saturated the loop must sleep between accept attempts, not spin.
    let before = cpu_ticks(server.id());
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(server.id()) - before;
    let elapsed = window.elapsed();
    assert!(
        used * 10 < 3 * 100 * elapsed.as_secs().max(1),
        "server used {used} ticks of CPU in {elapsed:?} while out of descriptors"
    );

    // Free descriptors: the backlog must be accepted and served.
    let mut last = clients.pop().unwrap();
    clients.truncate(1);
    roundtrip(&mut last, b"accepted after descriptors were freed");
    roundtrip(&mut clients[0], b"old connection unharmed");

    drop(server.stdin.take());
    let out = server.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert!(
        stderr.contains("pausing accepts"),
        "EMFILE was hit: {stderr}"
    );
}
