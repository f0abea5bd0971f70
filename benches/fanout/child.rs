//! The parent's handle on one server child process.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::servers::{ALLOCS, COPIES, CPU, LISTENING, ServerKind};

/// How long a child may take to start listening, answer a command, or exit.
const DEADLINE: Duration = Duration::from_secs(10);

/// A server running in a child process. Dropping it kills the child;
/// [`ServerChild::quit`] stops it politely first.
pub struct ServerChild {
    kind: ServerKind,
    child: Child,
    stdin: ChildStdin,
    /// Lines the child prints, read by a helper thread so that every wait has a deadline.
    lines: Receiver<String>,
    addr: SocketAddr,
}

/// A server's counters at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Counters {
    pub cpu_nanos: u64,
    pub allocs: u64,
    pub copies: u64,
}

impl ServerChild {
    /// Starts `kind` with `loops` event loops on a fresh loopback port.
    pub fn spawn(kind: ServerKind, loops: usize) -> io::Result<ServerChild> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--server", &kind.to_string(), "--addr", "127.0.0.1:0"])
            .args(["--loops", &loops.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // From here on, dropping `server` kills the child on every error path.
        let mut server = ServerChild {
            kind,
            child,
            stdin,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = server.next_line()?;
        server.addr = line
            .strip_prefix(LISTENING)
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| unexpected(&line))?;
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's process id (for `perf stat -p`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time, allocations and payload copies so far, as the child counts them.
    pub fn counters(&mut self) -> io::Result<Counters> {
        Ok(Counters {
            cpu_nanos: self.ask("cpu", CPU)?,
            allocs: self.ask("stats", ALLOCS)?,
            copies: self.ask("copies", COPIES)?,
        })
    }

    fn ask(&mut self, command: &str, prefix: &str) -> io::Result<u64> {
        writeln!(self.stdin, "{command}")?;
        let line = self.next_line()?;
        line.strip_prefix(prefix)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| unexpected(&line))
    }

    /// Tells the child to stop and waits for it to exit; a child that does not
    /// exit in time is killed, and that is reported as an error.
    pub fn quit(mut self) -> io::Result<()> {
        // A child that already died cannot read this; its exit status tells more.
        let _ = self.stdin.write_all(b"quit\n");
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return match status.success() {
                    true => Ok(()),
                    false => Err(io::Error::other(format!(
                        "{} server exited with {status}",
                        self.kind
                    ))),
                };
            }
            thread::sleep(Duration::from_millis(5));
        }
        Err(io::Error::other(format!(
            "{} server did not exit within {DEADLINE:?}; killed",
            self.kind
        )))
    }

    fn next_line(&mut self) -> io::Result<String> {
        self.lines
            .recv_timeout(DEADLINE)
            .map_err(|_| io::Error::other(format!("{} server did not answer", self.kind)))
    }
}

fn unexpected(line: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected line {line:?}"),
    )
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
