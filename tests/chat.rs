//! The chat example over loopback: its line protocol, rooms spanning both loops,
//! its flags and its exit on SIGTERM.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use util::*;

/// A running `chat --loops 2` and where it listens.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(example("chat"))
            .args(["--addr", "127.0.0.1:0", "--loops", "2"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run the chat example");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }

    /// SIGTERM, then the exit status within the deadline.
    fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "no exit within {DEADLINE:?} of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One chat client: send lines, read lines with the deadline.
struct Client {
    out: TcpStream,
    lines: BufReader<TcpStream>,
}

impl Client {
    fn connect(server: &Server) -> Client {
        let out = connect(server.addr);
        out.set_read_timeout(Some(DEADLINE)).unwrap();
        Client {
            lines: BufReader::new(out.try_clone().unwrap()),
            out,
        }
    }

    fn send(&mut self, line: &str) {
        self.out.write_all(line.as_bytes()).unwrap();
        self.out.write_all(b"\n").unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.lines.read_line(&mut line).expect("a line in time");
        assert!(n > 0, "connection closed");
        assert!(line.ends_with('\n'), "{line:?}");
        line.pop();
        line
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }
}

/// Clients joined to `room` in turn; connections alternate between the loops.
fn joined(server: &Server, room: &str, n: usize) -> Vec<Client> {
    (1..=n)
        .map(|i| {
            let mut c = Client::connect(server);
            assert_eq!(c.ask(&format!("JOIN {room}")), format!("JOINED {room} {i}"));
            c
        })
        .collect()
}

#[test]
fn a_message_reaches_every_member_on_both_loops_the_sender_included() {
    let server = Server::start();
    let mut members = joined(&server, "lobby", 4);
    members[1].send("MSG hello, room");
    for m in &mut members {
        assert_eq!(m.line(), "MSG hello, room");
    }
    // Messages from several senders keep each sender's order at every member.
    for (i, m) in members.iter_mut().enumerate() {
        m.send(&format!("MSG {i}-a\r"));
        m.send(&format!("MSG {i}-b"));
    }
    for m in &mut members {
        let got: Vec<String> = (0..8).map(|_| m.line()).collect();
        for i in 0..4 {
            let a = got.iter().position(|l| *l == format!("MSG {i}-a"));
            let b = got.iter().position(|l| *l == format!("MSG {i}-b"));
            assert!(a.is_some() && a < b, "{got:?}");
        }
    }
    assert!(server.terminate().success());
}

#[test]
fn leaving_and_switching_rooms_end_membership() {
    let server = Server::start();
    let mut a = joined(&server, "one", 3);
    // The third member switches rooms; the second leaves.
    assert_eq!(a[2].ask("JOIN two"), "JOINED two 1");
    assert_eq!(a[1].ask("LEAVE"), "LEFT");
    a[0].send("MSG only me");
    assert_eq!(a[0].line(), "MSG only me");
    // Had the others still been members of "one", that line would come first.
    assert_eq!(a[1].ask("MSG nowhere"), "ERR not in a room");
    assert_eq!(a[2].ask("MSG in two"), "MSG in two");
    // Counts follow: one left, one switched, one closed.
    let mut late = Client::connect(&server);
    assert_eq!(late.ask("JOIN one"), "JOINED one 2");
    drop(a.remove(0));
    let mut later = Client::connect(&server);
    let end = Instant::now() + DEADLINE;
    loop {
        // The close reaches the server on its own time: ask again until it has.
        let reply = later.ask("JOIN one");
        if reply == "JOINED one 2" {
            break;
        }
        assert_eq!(reply, "JOINED one 3");
        assert!(Instant::now() < end, "the closed member still counts");
    }
    assert!(server.terminate().success());
}

#[test]
fn bad_commands_get_err_and_a_long_line_closes() {
    let server = Server::start();
    let mut c = Client::connect(&server);
    assert_eq!(c.ask("MSG early"), "ERR not in a room");
    assert_eq!(c.ask("LEAVE"), "ERR not in a room");
    assert!(c.ask("HELLO").starts_with("ERR "));
    assert!(c.ask("").starts_with("ERR "));
    assert!(c.ask("JOIN").starts_with("ERR "));
    assert!(c.ask("JOIN has space").starts_with("ERR "));
    assert_eq!(c.ask("JOIN ok"), "JOINED ok 1");
    // Exactly 4 KiB is a line; one byte more is not.
    let text = "x".repeat(4096 - 4);
    assert_eq!(c.ask(&format!("MSG {text}")), format!("MSG {text}"));
    c.out.write_all(&[b'y'; 4097]).unwrap();
    assert_eq!(c.line(), "ERR line too long");
    let mut rest = String::new();
    assert_eq!(c.lines.read_line(&mut rest).unwrap(), 0, "closed: {rest:?}");
    // The others are unharmed.
    let mut d = Client::connect(&server);
    assert_eq!(d.ask("JOIN ok"), "JOINED ok 1");
    assert!(server.terminate().success());
}

#[test]
fn help_exits_0_and_usage_errors_exit_2() {
    let help = Command::new(example("chat"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--loops"));
    for args in [
        &["--loops", "zero"][..],
        &["--bogus"],
        &["--addr", "udp://127.0.0.1:0"],
    ] {
        let out = Command::new(example("chat")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
