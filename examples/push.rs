//! A push gateway: WebSocket subscribers, HTTP and Redis publishers.
//!
//! ```text
//! cargo run --release --features ws --example push -- --addr 127.0.0.1:8090 --redis 127.0.0.1:6379
//! websocat ws://127.0.0.1:8090/ws        # then type: SUB news
//! curl -d 'hello' http://127.0.0.1:8090/publish/news
//! redis-cli PUBLISH news 'hello from redis'
//! ```
//!
//! WebSocket clients connect to `/ws` and send text `SUB <topic>` or
//! `UNSUB <topic>` (answered `OK SUB <topic>`, `OK UNSUB <topic>`, or `ERR
//! <why>`; at most 64 topics each). Every message published to a topic reaches each of its subscribers
//! as one text message (binary if it is not UTF-8), framed once for all of
//! them. Publishing: `POST /publish/<topic>` (the body is the message; it
//! reaches this gateway's subscribers), and with `--redis HOST:PORT`,
//! `PUBLISH <topic> <msg>` in Redis: the gateway keeps one subscribed Redis
//! connection (tether's own client with the RESP codec), subscribed to
//! exactly the topics its clients want, reconnecting with backoff (the first
//! retry within 1 s) and re-subscribing after each reconnect, so every
//! gateway sharing that Redis delivers a message published once to all of its
//! subscribers.
//!
//! On by default: heartbeat pings (`--heartbeat-ms`, default 30000) with a
//! pong deadline (`--pong-timeout-ms`, default 10000), an idle timeout
//! (`--idle-timeout-ms`, default 120000), a frame timeout
//! (`--frame-timeout-ms`, default 10000), and the slow-subscriber policy: a
//! subscriber whose backlog passes `--max-backpressure` bytes (default 1 MiB)
//! is closed (`Options::max_backpressure` with `SlowSubscriber::Close`), the
//! others are not slowed. `--loops N` (default: cores), `--max-connections N` (default
//! 100000). Prints `listening on <addr>`; stops on SIGINT or SIGTERM.

mod common;

use std::borrow::{Borrow, BorrowMut};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tether::client::backoff::BackoffPolicy;
use tether::codec::resp::{Decoded, Frame, Resp, RespWrite};
use tether::http::{HttpConn, Request, Response, Served, Server};
use tether::net::ListenAddr;
use tether::ws::{self, CloseCode, Endpoint, Event, Message, OpCode, WsState};
use tether::{
    Action, CloseReason, Conn, ConnId, ConnectOptions, Engine, EventHandler, Idle, Options,
    SlowSubscriber,
};

const USAGE: &str = "[--addr HOST:PORT] [--loops N] [--redis HOST:PORT] [--heartbeat-ms MS] \
                     [--pong-timeout-ms MS] [--max-backpressure BYTES] [--frame-timeout-ms MS] \
                     [--idle-timeout-ms MS] [--max-connections N]";

/// Longest topic name a client may subscribe to.
const MAX_TOPIC: usize = 128;
/// Most topics one client may subscribe to.
const MAX_TOPICS_PER_CONN: usize = 64;

/// The gateway's topics: who subscribed to each (on any loop), which is what
/// the Redis link should be subscribed to, and the link while it is up.
/// Messages themselves go through tether's topics (each loop's own table);
/// this is only the bookkeeping for the link and the counts.
#[derive(Default)]
struct Wanted {
    link: Option<ConnId>,
    subscribers: HashMap<String, Vec<ConnId>>,
}

type Shared = Arc<Mutex<Wanted>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Wanted> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection: an HTTP client (perhaps upgraded to a WebSocket), or the
/// Redis link.
#[derive(Default)]
struct Link {
    http: HttpConn,
    ws: WsState,
    /// The topics this WebSocket subscribed to.
    topics: Vec<Box<str>>,
    redis: bool,
}

impl Borrow<HttpConn> for Link {
    fn borrow(&self) -> &HttpConn {
        &self.http
    }
}

impl BorrowMut<HttpConn> for Link {
    fn borrow_mut(&mut self) -> &mut HttpConn {
        &mut self.http
    }
}

impl Borrow<WsState> for Link {
    fn borrow(&self) -> &WsState {
        &self.ws
    }
}

impl BorrowMut<WsState> for Link {
    fn borrow_mut(&mut self) -> &mut WsState {
        &mut self.ws
    }
}

struct Push {
    http: Server,
    ws: Endpoint,
    resp: Resp,
    wanted: Shared,
    faults: common::PeerFaults,
}

impl EventHandler for Push {
    type State = Link;

    fn on_open(&mut self, conn: &mut Conn<'_, Link>) -> Action {
        if conn.state().redis {
            // The link is quiet when nothing is published: no idle or
            // heartbeat checks on it.
            conn.set_idle_timeout(Idle::All, None);
            conn.set_heartbeat(None);
            let mut wanted = lock(&self.wanted);
            wanted.link = Some(conn.id());
            let topics: Vec<&[u8]> = wanted.subscribers.keys().map(|t| t.as_bytes()).collect();
            log::info!("redis link up; subscribing to {} topics", topics.len());
            if !topics.is_empty() {
                let mut cmd = vec![&b"SUBSCRIBE"[..]];
                cmd.extend(topics);
                let mut out = Vec::new();
                out.put_command(&cmd);
                conn.write(&out);
            }
        }
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Link>) -> Action {
        if conn.state().redis {
            return self.redis_traffic(conn);
        }
        if !conn.state().http.is_upgraded() {
            let (ws, wanted) = (&self.ws, &self.wanted);
            let served = self
                .http
                .serve(conn, |req, res| route(ws, wanted, req, res));
            if served != Served::Upgraded {
                return Action::Continue;
            }
        }
        let wanted = &self.wanted;
        self.ws.serve(conn, |ws, event| {
            if let Event::Message(Message::Text(text)) = event {
                command(wanted, ws, text);
            }
        })
    }

    fn on_heartbeat(&mut self, conn: &mut Conn<'_, Link>) -> Action {
        self.ws.heartbeat(conn)
    }

    fn on_timer(&mut self, conn: &mut Conn<'_, Link>, key: u64) -> Action {
        self.ws.timer(conn, key)
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Link>, reason: &CloseReason) {
        self.faults.record(reason);
        let id = conn.id();
        let engine = conn.engine().clone();
        let state = conn.state_mut();
        let mut wanted = lock(&self.wanted);
        if state.redis {
            log::warn!("redis link lost: {reason}");
            if wanted.link == Some(id) {
                wanted.link = None;
            }
            return;
        }
        for topic in state.topics.drain(..) {
            release(&mut wanted, &engine, &topic, id);
        }
    }
}

impl Push {
    /// Messages from Redis: `message <topic> <payload>` goes to the topic's
    /// subscribers on every loop; subscription confirmations are dropped.
    fn redis_traffic(&mut self, conn: &mut Conn<'_, Link>) -> Action {
        loop {
            let input = conn.read_buf();
            let (frame, used) = match self.resp.decode(input) {
                Ok(Decoded::Frame(frame, used)) => (frame, used),
                Ok(Decoded::Incomplete { .. }) => return Action::Continue,
                Err(e) => {
                    log::warn!("redis link: {e}");
                    return Action::Close;
                }
            };
            if let Frame::Array(items) | Frame::Push(items) = frame {
                let mut it = items.iter();
                if let (
                    Some(Frame::Bulk(b"message")),
                    Some(Frame::Bulk(topic)),
                    Some(Frame::Bulk(msg)),
                ) = (it.next(), it.next(), it.next())
                {
                    if let Ok(topic) = std::str::from_utf8(topic) {
                        publish(&self.wanted, conn, topic, msg);
                    }
                }
            } else if let Frame::Error(e) = frame {
                log::warn!("redis link: {}", String::from_utf8_lossy(e));
            }
            conn.consume(used);
        }
    }
}

/// Publishes `msg` to `topic` on every loop, framed once for all subscribers
/// (text when it is UTF-8, binary otherwise): each subscriber's queue shares
/// the same `Bytes`. A subscriber whose backlog passed
/// `Options::max_backpressure` is closed by the engine (the slow-subscriber
/// policy); the others are not slowed. Returns how many subscribers the
/// gateway has for the topic.
fn publish(wanted: &Shared, conn: &mut Conn<'_, Link>, topic: &str, msg: &[u8]) -> usize {
    let op = if std::str::from_utf8(msg).is_ok() {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let subscribers = lock(wanted).subscribers.get(topic).map_or(0, Vec::len);
    if subscribers > 0 {
        conn.publish(topic, ws::server_frame(op, msg));
    }
    subscribers
}

fn route(ws: &Endpoint, wanted: &Shared, req: &Request<'_>, res: &mut Response<'_, '_, Link>) {
    match (req.method(), req.path()) {
        ("GET", "/ws") => {
            if let Err(e) = ws.upgrade(req, res) {
                log::debug!("refused a websocket upgrade: {e}");
            }
        }
        ("POST", path) if path.starts_with("/publish/") => {
            let topic = &path["/publish/".len()..];
            if !valid_topic(topic) {
                return res.status(400).body(b"bad topic\n");
            }
            let n = publish(wanted, res.conn(), topic, req.body());
            let body = format!("published to {n}\n");
            res.header("Content-Type", "text/plain")
                .body(body.as_bytes());
        }
        _ => res.status(404).body(b""),
    }
}

fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC
        && topic
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'?' && b != b'[')
}

/// A client's `SUB <topic>` or `UNSUB <topic>`.
fn command(wanted: &Shared, ws: &mut ws::WsConn<'_, '_, Link>, text: &str) {
    let (verb, topic) = text.split_once(' ').unwrap_or((text, ""));
    if !valid_topic(topic) {
        ws.send_text("ERR bad topic");
        return;
    }
    match verb {
        "SUB" => {
            let id = ws.conn().id();
            let topics = &ws.conn().state().topics;
            let known = topics.iter().any(|t| &**t == topic);
            if !known && topics.len() >= MAX_TOPICS_PER_CONN {
                ws.send_text("ERR too many topics");
                return;
            }
            if !known {
                if let Err(e) = ws.conn().subscribe(topic) {
                    ws.send_text(&format!("ERR {e}"));
                    return;
                }
                ws.conn().state_mut().topics.push(topic.into());
                let mut wanted = lock(wanted);
                let ids = wanted.subscribers.entry(topic.to_string()).or_default();
                ids.push(id);
                if ids.len() == 1 {
                    if let Some(link) = wanted.link {
                        redis_command(ws.conn().engine(), link, b"SUBSCRIBE", topic);
                    }
                }
            }
            ws.send_text(&format!("OK SUB {topic}"));
        }
        "UNSUB" => {
            let id = ws.conn().id();
            let at = ws.conn().state().topics.iter().position(|t| &**t == topic);
            if let Some(at) = at {
                ws.conn().state_mut().topics.swap_remove(at);
                ws.conn().unsubscribe(topic);
                let engine = ws.conn().engine().clone();
                release(&mut lock(wanted), &engine, topic, id);
            }
            ws.send_text(&format!("OK UNSUB {topic}"));
        }
        _ => ws.close(CloseCode::POLICY, "expected SUB <topic> or UNSUB <topic>"),
    }
}

/// `id` leaves `topic`; the last one to leave unsubscribes the link.
fn release(wanted: &mut Wanted, engine: &Engine, topic: &str, id: ConnId) {
    let Some(ids) = wanted.subscribers.get_mut(topic) else {
        return;
    };
    ids.retain(|&i| i != id);
    if ids.is_empty() {
        wanted.subscribers.remove(topic);
        if let Some(link) = wanted.link {
            redis_command(engine, link, b"UNSUBSCRIBE", topic);
        }
    }
}

/// Sends a command on the Redis link (from any loop). A link that is going
/// down drops it; the next link subscribes from `Wanted` anyway.
fn redis_command(engine: &Engine, link: ConnId, verb: &[u8], topic: &str) {
    let mut out = Vec::new();
    out.put_command(&[verb, topic.as_bytes()]);
    let _ = engine.send(link, out);
}

struct Args {
    addr: String,
    options: Options,
    redis: Option<SocketAddr>,
    pong_timeout: Duration,
}

fn parse_args(cli: &mut common::Cli) -> Result<Args, common::Usage> {
    let mut addr = "127.0.0.1:8090".to_string();
    let mut options = Options::default();
    let mut redis = None;
    let mut heartbeat = Some(Duration::from_secs(30));
    let mut pong_timeout = Duration::from_secs(10);
    options.max_backpressure = 1 << 20;
    options.slow_subscriber = SlowSubscriber::Close;
    let mut limits = common::ServerLimits {
        frame_timeout: Some(Duration::from_secs(10)),
        idle_timeout: Some(Duration::from_secs(120)),
        max_connections: 100_000,
        memory_budget: None,
    };
    while let Some(flag) = cli.flag() {
        match flag.as_str() {
            "--addr" => {
                addr = common::address(&flag, cli.value(&flag)?, |a| match a {
                    ListenAddr::Udp(_) => Err("WebSocket needs a stream; use host:port"),
                    _ => Ok(()),
                })?
            }
            "--loops" => options.loops = cli.number(&flag, 1..=1024)?,
            "--redis" => {
                let v = cli.value(&flag)?;
                let resolved = v
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("--redis {}: not a HOST:PORT", common::shown(&v)))?;
                redis = Some(resolved);
            }
            "--heartbeat-ms" => heartbeat = cli.millis(&flag)?,
            "--pong-timeout-ms" => pong_timeout = cli.positive_millis(&flag)?,
            "--max-backpressure" => options.max_backpressure = cli.number(&flag, 1024..=1 << 30)?,
            other => {
                if !limits.flag(cli, other)? {
                    return Err(cli.unknown(other));
                }
            }
        }
    }
    limits.apply(&mut options);
    options.heartbeat = heartbeat;
    Ok(Args {
        addr,
        options,
        redis,
        pong_timeout,
    })
}

fn main() -> ExitCode {
    let (args, signals) = match common::start("push", USAGE, "info", parse_args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let faults = common::PeerFaults::default();
    faults.report_every("push", common::FAULT_SUMMARY_EVERY);
    let wanted = Shared::default();
    let config = ws::Config {
        pong_timeout: args.pong_timeout,
        ..ws::Config::default()
    };
    let factory_wanted = Arc::clone(&wanted);
    let engine = Engine::builder(move |_| Push {
        http: Server::new().server_name("tether-push"),
        ws: Endpoint::new(config.clone()),
        resp: Resp::client(),
        wanted: Arc::clone(&factory_wanted),
        faults: faults.clone(),
    })
    .options(args.options)
    .listen(args.addr.as_str())
    .start();
    if let (Ok(engine), Some(addr)) = (&engine, args.redis) {
        // The first retry within 1 s (full jitter below 500 ms), then
        // doubling up to 5 s; forever.
        let policy = BackoffPolicy::default()
            .with_initial(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(5))
            .with_reset_after(Duration::from_secs(2));
        let link = Link {
            redis: true,
            ..Link::default()
        };
        let options = ConnectOptions::default()
            .timeout(Duration::from_secs(2))
            .reconnect(policy)
            .on_loop(0);
        if let Err(e) = engine.connect_with(addr, link, options) {
            eprintln!("push: cannot dial redis at {addr}: {e}");
            return ExitCode::FAILURE;
        }
    }
    common::serve_until_signal("push", engine, signals)
}
