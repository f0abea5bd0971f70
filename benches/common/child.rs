//! The parent's handle on one server child process.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::procstat;
use super::servers::{ALLOCS, CPU, LISTENING, ServerKind};
use super::wire::Proto;

/// How long a child may take to start listening, answer `stats`, or exit.
const REPLY_DEADLINE: Duration = Duration::from_secs(10);
/// Longer than tether's default 5 s drain on stop, so a slow drain is told from a hang.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// Both deadlines are multiplied by this for a child run under a tool (valgrind is
/// 20 to 100 times slower, and writes its profile at exit).
const SLOW_FACTOR: u32 = 12;

/// How to start a server child.
#[derive(Clone, Debug)]
pub struct Launch {
    pub kind: ServerKind,
    pub proto: Proto,
    /// UDP echo instead of TCP echo.
    pub udp: bool,
    pub loops: usize,
    /// A command the child runs under, e.g. `valgrind --tool=callgrind`; empty for none.
    pub wrapper: Vec<String>,
}

impl Launch {
    pub fn tcp(kind: ServerKind, proto: Proto, loops: usize) -> Launch {
        Launch {
            kind,
            proto,
            udp: false,
            loops,
            wrapper: Vec::new(),
        }
    }

    pub fn udp(kind: ServerKind, loops: usize) -> Launch {
        Launch {
            udp: true,
            ..Launch::tcp(kind, Proto::Raw, loops)
        }
    }
}

/// A server running in a child process, pinned to its own CPU. Dropping it kills
/// the child; [`ServerChild::quit`] stops it politely first.
pub struct ServerChild {
    kind: ServerKind,
    child: Child,
    stdin: ChildStdin,
    /// Lines the child prints, read by a helper thread so that every wait has a deadline.
    lines: Receiver<String>,
    addr: SocketAddr,
    reply_deadline: Duration,
    exit_deadline: Duration,
}

impl ServerChild {
    /// Starts `kind` serving `proto` with `loops` event loops on a fresh loopback port.
    pub fn spawn(kind: ServerKind, proto: Proto, loops: usize) -> io::Result<ServerChild> {
        ServerChild::launch(&Launch::tcp(kind, proto, loops))
    }

    /// Starts a server child as `launch` says.
    pub fn launch(launch: &Launch) -> io::Result<ServerChild> {
        let Launch {
            kind,
            proto,
            udp,
            loops,
            ref wrapper,
        } = *launch;
        let exe = std::env::current_exe()?;
        let mut command = match wrapper.split_first() {
            Some((tool, tool_args)) => {
                let mut command = Command::new(tool);
                command.args(tool_args).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        command
            .args(["--server", &kind.to_string(), "--proto", &proto.to_string()])
            .args(["--addr", "127.0.0.1:0", "--loops", &loops.to_string()]);
        if udp {
            command.arg("--udp");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| match wrapper.first() {
                Some(tool) => io::Error::new(e.kind(), format!("cannot run {tool}: {e}")),
                None => e,
            })?;
        let slow = if wrapper.is_empty() { 1 } else { SLOW_FACTOR };
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
            reply_deadline: REPLY_DEADLINE * slow,
            exit_deadline: EXIT_DEADLINE * slow,
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

    /// The child's process id (for `perf stat -p`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's CPU time in nanoseconds, as the child itself reads it
    /// (`CLOCK_PROCESS_CPUTIME_ID`). Waits for the answer: only call it with no
    /// [`ServerChild::request_allocations`] unanswered.
    pub fn cpu_nanos(&mut self) -> io::Result<u64> {
        self.stdin.write_all(b"cpu\n")?;
        let line = self.next_line()?;
        line.strip_prefix(CPU)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected reply {line:?}"),
                )
            })
    }

    /// Context switches of the child's threads other than its main one (which
    /// only talks to the parent): how often the server's loops woke up.
    pub fn loop_wakeups(&self) -> io::Result<u64> {
        procstat::context_switches_except_main(self.child.id())
    }

    /// User plus system CPU time from `/proc` (10 ms ticks).
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
        let deadline = Instant::now() + self.exit_deadline;
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
                "{} server did not exit within {:?}; killed",
                self.kind, self.exit_deadline
            ),
        ))
    }

    fn next_line(&mut self) -> io::Result<String> {
        let deadline = self.reply_deadline;
        self.lines.recv_timeout(deadline).map_err(|e| {
            let why = match e {
                RecvTimeoutError::Timeout => format!("no answer within {deadline:?}"),
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
