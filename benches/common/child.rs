//! The parent's handle on one server child process.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::procstat;
use super::servers::{ALLOCS, LISTENING, ServerKind};
use super::wire::Proto;

/// How long a child may take to start listening, answer `stats`, or exit.
const REPLY_DEADLINE: Duration = Duration::from_secs(10);
/// Longer than tether's default 5 s drain on stop, so a slow drain is told from a hang.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// A server running in a child process, pinned to its own CPU. Dropping it kills
/// the child; [`ServerChild::quit`] stops it politely first.
pub struct ServerChild {
    kind: ServerKind,
    child: Child,
    stdin: ChildStdin,
    /// Lines the child prints, read by a helper thread so that every wait has a deadline.
    lines: Receiver<String>,
    addr: SocketAddr,
}

impl ServerChild {
    /// Starts `kind` serving `proto` with `loops` event loops on a fresh loopback port.
    pub fn spawn(kind: ServerKind, proto: Proto, loops: usize) -> io::Result<ServerChild> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--server", &kind.to_string(), "--proto", &proto.to_string()])
            .args(["--addr", "127.0.0.1:0", "--loops", &loops.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
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
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected first line {line:?}"),
                )
            })?;
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cpu_time(&self) -> io::Result<Duration> {
        procstat::cpu_time(self.child.id())
    }

    pub fn rss_bytes(&self) -> io::Result<u64> {
        procstat::rss_bytes(self.child.id())
    }

    pub fn peak_rss_bytes(&self) -> io::Result<u64> {
        procstat::peak_rss_bytes(self.child.id())
    }

    /// Asks the child for its allocation count without waiting for the answer, so
    /// the load generator is never paused; [`ServerChild::allocations`] collects it.
    pub fn request_allocations(&mut self) -> io::Result<()> {
        self.stdin.write_all(b"stats\n")
    }

    /// The answer to the oldest unanswered [`ServerChild::request_allocations`].
    pub fn allocations(&mut self) -> io::Result<u64> {
        let line = self.next_line()?;
        line.strip_prefix(ALLOCS)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected reply {line:?}"),
                )
            })
    }

    /// Tells the child to stop and waits for it to exit; a child that does not
    /// exit in time is killed, and that is reported as an error.
    pub fn quit(mut self) -> io::Result<()> {
        // A child that already died cannot read this; its exit status tells more.
        let _ = self.stdin.write_all(b"quit\n");
        let deadline = Instant::now() + EXIT_DEADLINE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                return Err(io::Error::other(format!(
                    "{} server exited with {status}",
                    self.kind
                )));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{} server did not exit within {EXIT_DEADLINE:?}; killed",
                self.kind
            ),
        ))
    }

    fn next_line(&mut self) -> io::Result<String> {
        self.lines.recv_timeout(REPLY_DEADLINE).map_err(|e| {
            let why = match e {
                RecvTimeoutError::Timeout => format!("no answer within {REPLY_DEADLINE:?}"),
                RecvTimeoutError::Disconnected => "exited".to_owned(),
            };
            io::Error::other(format!("{} server {why}", self.kind))
        })
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
