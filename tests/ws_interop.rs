//! Interoperability with real WebSocket implementations from the registries:
//! Python `websockets` (PyPI) and Node `ws` (npm), each as a client of the
//! tether server and as a server for the tether client, with
//! permessage-deflate offered both ways. Each test skips with a notice when
//! its tool is missing (`.ci/run` installs them).
#![cfg(feature = "ws")]

mod ws_common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use tether::ws::{CloseCode, Config, Endpoint, Event, Message, WsState};
use tether::{Action, Conn, Engine, EventHandler};
use ws_common::{DEADLINE, echo_server};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn config() -> Config {
    Config {
        deflate: true,
        max_message: 4 << 20,
        ..Config::default()
    }
}

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import websockets.sync.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("notice: python3 with websockets is missing; skipping (pip install websockets)");
    }
    ok
}

fn node_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let ok = node && interop_dir().join("node_modules/ws").is_dir();
    if !ok {
        println!(
            "notice: node or the ws package is missing; skipping (npm ci --prefix tests/interop)"
        );
    }
    ok
}

/// Waits for `child` to exit within the deadline; kills it otherwise.
fn finish(mut child: Child) -> (bool, String) {
    let deadline = Instant::now() + DEADLINE * 2;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            return (status.success(), text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (false, "timed out".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a peer client against the tether echo server.
fn peer_client(program: &str, script: &str) {
    let engine = echo_server(config());
    let url = format!("ws://{}/", engine.local_addrs()[0]);
    let child = Command::new(program)
        .arg(interop_dir().join(script))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ok, out) = finish(child);
    engine.stop();
    engine.join();
    assert!(ok && out.contains("ok"), "{program} {script}: {out}");
}

/// The messages the tether client sends, the same as the peers' scripts.
fn messages() -> Vec<(bool, Vec<u8>)> {
    let mut m = vec![
        (true, b"hello".to_vec()),
        (true, "κόσμε €".repeat(100).into_bytes()),
        (true, Vec::new()),
    ];
    for n in [0usize, 125, 126, 65536, 200_000] {
        m.push((false, (0..n).map(|i| (i % 251) as u8).collect()));
    }
    m
}

/// A tether client: sends every message on open, checks the echoes in
/// order, closes with 1000 and reports how it ended.
struct Driver {
    ws: Endpoint,
    messages: Vec<(bool, Vec<u8>)>,
    next: usize,
    done: Sender<Result<(), String>>,
}

impl EventHandler for Driver {
    type State = WsState;

    fn on_open(&mut self, conn: &mut Conn<'_, WsState>) -> Action {
        self.ws.connect(conn, "127.0.0.1", "/");
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, WsState>) -> Action {
        let (messages, next, done) = (&self.messages, &mut self.next, &self.done);
        self.ws.serve(conn, |ws, event| match event {
            Event::Open => {
                for (text, data) in messages {
                    if *text {
                        ws.send_text(std::str::from_utf8(data).unwrap());
                    } else {
                        ws.send_binary(data);
                    }
                }
            }
            Event::Message(Message::Text(t)) => check(messages, next, true, t.as_bytes(), ws, done),
            Event::Message(Message::Binary(b)) => check(messages, next, false, b, ws, done),
            Event::Message(Message::Close(c)) => {
                let ok = *next == messages.len() && c.code == CloseCode::NORMAL;
                let _ = done.send(if ok {
                    Ok(())
                } else {
                    Err(format!("closed {c:?} after {next}"))
                });
            }
            Event::Message(_) => {}
        })
    }
}

fn check(
    messages: &[(bool, Vec<u8>)],
    next: &mut usize,
    text: bool,
    data: &[u8],
    ws: &mut tether::ws::WsConn<'_, '_, WsState>,
    done: &Sender<Result<(), String>>,
) {
    let want = messages.get(*next);
    if want.is_none_or(|(t, d)| *t != text || d != data) {
        let _ = done.send(Err(format!("echo {next} differs")));
        return;
    }
    *next += 1;
    if *next == messages.len() {
        ws.close(CloseCode::NORMAL, "done");
    }
}

/// Runs the tether client against a peer server started from `script`.
fn peer_server(program: &str, script: &str) {
    let mut child = Command::new(program)
        .arg(interop_dir().join(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .expect("a port line");
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| Driver {
        ws: Endpoint::new(config()),
        messages: messages(),
        next: 0,
        done: tx.clone(),
    })
    .loops(1)
    .start()
    .unwrap();
    engine
        .connect(
            format!("127.0.0.1:{port}")
                .parse::<std::net::SocketAddr>()
                .unwrap(),
            WsState::default(),
        )
        .unwrap();
    let result = rx.recv_timeout(DEADLINE * 2);
    engine.stop();
    engine.join();
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        result,
        Ok(Ok(())),
        "tether client against {program} {script}"
    );
}

#[test]
fn python_websockets_client_to_tether_server() {
    if python_ready() {
        peer_client("python3", "echo_client.py");
    }
}

#[test]
fn tether_client_to_python_websockets_server() {
    if python_ready() {
        peer_server("python3", "echo_server.py");
    }
}

#[test]
fn node_ws_client_to_tether_server() {
    if node_ready() {
        peer_client("node", "echo_client.js");
    }
}

#[test]
fn tether_client_to_node_ws_server() {
    if node_ready() {
        peer_server("node", "echo_server.js");
    }
}
