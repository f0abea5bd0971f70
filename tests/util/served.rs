//! An example program run as a server for a test: started with its flags,
//! its address read from its `listening on` line, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;

use super::{DEADLINE, example};

/// A running example server.
pub struct Served {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Served {
    /// Runs example `name` with `args`; `None` (with a notice) when the binary
    /// was not built (its features are off).
    pub fn start(name: &str, args: &[&str]) -> Option<Served> {
        let path = example(name);
        if !path.exists() {
            println!("notice: example {name} not built (features off); skipping");
            return None;
        }
        let mut child = Command::new(path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("example starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("{name} did not announce itself"));
        let addr = line.parse().expect("a host:port");
        Some(Served { child, addr })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
