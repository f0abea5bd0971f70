//! UDP sessions: the sans-IO table and cookies against a model, on a virtual clock.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use proptest::prelude::*;
use tether::udp_session::{CookieKey, Cookies, InsertError, SessionId, SessionTable};

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], 4000u16.wrapping_add(n)))
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u16),
    Touch(u16),
    Remove(u16),
    Advance(u64),
    StaleLookup(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u16..24).prop_map(Op::Insert),
        4 => (0u16..24).prop_map(Op::Touch),
        1 => (0u16..24).prop_map(Op::Remove),
        3 => (0u64..400).prop_map(Op::Advance),
        1 => any::<usize>().prop_map(Op::StaleLookup),
    ]
}

struct Model {
    /// addr -> (id, last_active, state)
    live: BTreeMap<u16, (SessionId, u64, u64)>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Sessions expire exactly when idle for the timeout, never early, never
    /// kept; the cap holds; ended sessions' ids never resolve again.
    #[test]
    fn table_matches_model(ops in proptest::collection::vec(op(), 1..200), idle in 1u64..300, max in 1usize..12) {
        let mut table: SessionTable<u64> = SessionTable::new(3, max, idle, 0);
        let mut model = Model { live: BTreeMap::new() };
        let mut dead: Vec<SessionId> = Vec::new();
        let mut now = 0u64;
        let mut next_state = 0u64;
        for op in ops {
            match op {
                Op::Insert(a) => {
                    next_state += 1;
                    let got = table.insert(addr(a), next_state, now);
                    match model.live.get(&a) {
                        Some(&(id, _, _)) => prop_assert_eq!(got, Err(InsertError::Exists(id))),
                        None if model.live.len() >= max => prop_assert_eq!(got, Err(InsertError::Full)),
                        None => {
                            let id = got.expect("room for it");
                            prop_assert_eq!(id.tag(), 3);
                            model.live.insert(a, (id, now, next_state));
                        }
                    }
                }
                Op::Touch(a) => {
                    if let Some(entry) = model.live.get_mut(&a) {
                        prop_assert!(table.touch(entry.0, now));
                        entry.1 = now;
                    }
                }
                Op::Remove(a) => {
                    if let Some((id, _, state)) = model.live.remove(&a) {
                        prop_assert_eq!(table.remove(id), Some((addr(a), state)));
                        prop_assert_eq!(table.remove(id), None);
                        dead.push(id);
                    }
                }
                Op::Advance(dt) => {
                    now += dt;
                    let mut expired = BTreeMap::new();
                    while let Some(e) = table.poll_expired(now) {
                        expired.insert(e.id, (e.addr, e.state));
                    }
                    let due: Vec<u16> = model
                        .live
                        .iter()
                        .filter(|(_, (_, last, _))| last + idle <= now)
                        .map(|(a, _)| *a)
                        .collect();
                    prop_assert_eq!(expired.len(), due.len());
                    for a in due {
                        let (id, _, state) = model.live.remove(&a).unwrap();
                        prop_assert_eq!(expired.get(&id), Some(&(addr(a), state)));
                        dead.push(id);
                    }
                }
                Op::StaleLookup(i) => {
                    if !dead.is_empty() {
                        let id = dead[i % dead.len()];
                        prop_assert!(table.get(id).is_none());
                        prop_assert!(!table.touch(id, now));
                    }
                }
            }
            prop_assert_eq!(table.len(), model.live.len());
            for (a, (id, _, state)) in &model.live {
                prop_assert_eq!(table.lookup(addr(*a)), Some(*id));
                prop_assert_eq!(table.get(*id), Some(state));
            }
            if let Some(next) = table.next_expiry() {
                let earliest = model.live.values().map(|(_, last, _)| last + idle).min();
                prop_assert!(earliest.is_some_and(|e| next <= e), "next_expiry {} after {:?}", next, earliest);
            }
        }
    }
}

#[test]
fn no_idle_timeout_never_expires() {
    let mut table: SessionTable<()> = SessionTable::new(0, 4, 0, 0);
    let id = table.insert(addr(1), (), 0).unwrap();
    assert!(table.next_expiry().is_none());
    assert!(table.poll_expired(u64::MAX / 2).is_none());
    assert!(table.get(id).is_some());
}

#[test]
fn ids_from_another_table_do_not_resolve() {
    let mut a: SessionTable<u8> = SessionTable::new(1, 4, 0, 0);
    let mut b: SessionTable<u8> = SessionTable::new(2, 4, 0, 0);
    let ia = a.insert(addr(1), 1, 0).unwrap();
    let _ = b.insert(addr(1), 2, 0).unwrap();
    assert!(b.get(ia).is_none());
}

#[test]
fn iteration_sees_every_session_once() {
    let mut table: SessionTable<u16> = SessionTable::new(0, 100, 0, 0);
    for n in 0..50 {
        table.insert(addr(n), n, 0).unwrap();
    }
    for n in (0..50).step_by(3) {
        let id = table.lookup(addr(n)).unwrap();
        table.remove(id).unwrap();
    }
    for (_, _, s) in table.iter_mut() {
        *s += 1000;
    }
    let seen: Vec<u16> = table.iter().map(|(_, _, s)| *s - 1000).collect();
    let want: Vec<u16> = (0..50).filter(|n| n % 3 != 0).collect();
    assert_eq!(seen, want);
}

proptest! {
    /// A cookie checks only for the address it was minted for, within one to two
    /// buckets; a guessed cookie does not check.
    #[test]
    fn cookies_bind_address_and_time(key in any::<[u8; 16]>(), a in any::<u16>(), b in any::<u16>(),
                                     t in 0u64..1_000_000, dt in 0u64..5_000, guess in any::<[u8; 8]>()) {
        let c = Cookies::new(CookieKey::from_bytes(key), 1_000);
        let cookie = c.mint(addr(a), t);
        let later = t + dt;
        let bucket_gap = later / 1_000 - t / 1_000;
        prop_assert_eq!(c.check(addr(a), &cookie, later), bucket_gap <= 1);
        if a != b {
            prop_assert!(!c.check(addr(b), &cookie, t));
        }
        if guess != cookie {
            prop_assert!(!c.check(addr(a), &guess, t));
        }
    }
}

// ---- the reactor side: real loopback sockets ----

mod util;

use std::net::UdpSocket;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use tether::udp_session::{Admit, NewSource, Session, SessionClose, SessionOptions};
use tether::{Action, Conn, Engine, EventHandler, LoopCtx};
use util::DEADLINE;

#[derive(Debug, Clone, PartialEq)]
enum SEv {
    Open(SocketAddr),
    Close(SocketAddr, SessionClose),
    Challenged(SocketAddr),
}

/// A server that admits a source only after a cookie round trip: a first
/// datagram `H` is answered `C<cookie>`; `H<cookie>` opens the session. Session
/// datagrams are echoed; every 10 ms the tick sends `tick` to every session.
struct CookieServer {
    events: Sender<SEv>,
    sessions: Vec<tether::udp_session::SessionId>,
}

impl EventHandler for CookieServer {
    type State = u32;

    fn on_traffic(&mut self, _conn: &mut Conn<'_, u32>) -> Action {
        Action::Close
    }

    fn on_new_source(&mut self, src: &mut NewSource<'_>) -> Admit {
        let data = src.data();
        if data.first() == Some(&b'H') && src.check_cookie(&data[1..]) {
            return Admit::Open;
        }
        let mut reply = vec![b'C'];
        reply.extend_from_slice(&src.cookie());
        let _ = src.reply(&reply);
        let _ = self.events.send(SEv::Challenged(src.peer()));
        Admit::Drop
    }

    fn on_session_open(&mut self, s: &mut Session<'_, u32>) -> Action {
        self.sessions.push(s.id());
        let _ = self.events.send(SEv::Open(s.peer()));
        Action::Continue
    }

    fn on_session_datagram(&mut self, s: &mut Session<'_, u32>, data: &[u8], _t: bool) -> Action {
        *s.state_mut() += 1;
        if data == b"bye" {
            return Action::Close;
        }
        s.send(data);
        Action::Continue
    }

    fn on_session_close(&mut self, s: &mut Session<'_, u32>, reason: SessionClose) {
        self.sessions.retain(|id| *id != s.id());
        let _ = self.events.send(SEv::Close(s.peer(), reason));
    }

    fn on_tick(&mut self, ctx: &mut LoopCtx<'_, Self::State>) -> Option<Duration> {
        let mut udp = ctx.udp();
        for id in &self.sessions {
            udp.send(*id, b"tick");
        }
        Some(Duration::from_millis(10))
    }
}

fn cookie_server(idle: Duration) -> (Engine, SocketAddr, Receiver<SEv>) {
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| CookieServer {
        events: tx.clone(),
        sessions: Vec::new(),
    })
    .loops(1)
    .listen_sessions(
        "udp://127.0.0.1:0",
        SessionOptions::new()
            .max_sessions(8)
            .idle_timeout(Some(idle)),
    )
    .start()
    .unwrap();
    let addr = engine.local_addrs()[0];
    (engine, addr, rx)
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

fn recv(s: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = s.recv(&mut buf).expect("a datagram before the deadline");
    buf[..n].to_vec()
}

/// Receives until a datagram other than `tick` arrives.
fn recv_not_tick(s: &UdpSocket) -> Vec<u8> {
    loop {
        let d = recv(s);
        if d != b"tick" {
            return d;
        }
    }
}

fn wait_ev(rx: &Receiver<SEv>, want: &SEv) {
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) if ev == *want => return,
            Ok(_) => continue,
            Err(_) => panic!("no {want:?} before the deadline"),
        }
    }
}

/// Does the cookie round trip; returns the cookie.
fn join(s: &UdpSocket, server: SocketAddr) -> Vec<u8> {
    s.send_to(b"H", server).unwrap();
    let c = recv(s);
    assert_eq!(c[0], b'C');
    let mut hello = vec![b'H'];
    hello.extend_from_slice(&c[1..]);
    s.send_to(&hello, server).unwrap();
    // The hello itself is delivered to the new session and echoed.
    assert_eq!(recv_not_tick(s), hello);
    c[1..].to_vec()
}

#[test]
fn session_opens_after_cookie_round_trip_echoes_and_ticks() {
    let (engine, server, rx) = cookie_server(Duration::from_secs(30));
    let c = client();
    join(&c, server);
    wait_ev(&rx, &SEv::Open(c.local_addr().unwrap()));
    c.send_to(b"ping", server).unwrap();
    assert_eq!(recv_not_tick(&c), b"ping");
    // The tick reaches the session by id from on_tick.
    while recv(&c) != b"tick" {}
    c.send_to(b"bye", server).unwrap();
    wait_ev(
        &rx,
        &SEv::Close(c.local_addr().unwrap(), SessionClose::Local),
    );
    engine.stop();
}

#[test]
fn spoofed_sources_create_no_session() {
    let (engine, server, rx) = cookie_server(Duration::from_secs(30));
    let honest = client();
    let cookie = join(&honest, server);
    wait_ev(&rx, &SEv::Open(honest.local_addr().unwrap()));
    // A sender that never received at its address has no cookie for it: a
    // guessed one, or one minted for another address, opens nothing.
    let spoofer = client();
    for bad in [vec![b'H'; 9], [&b"H"[..], &cookie].concat(), b"H".to_vec()] {
        spoofer.send_to(&bad, server).unwrap();
        assert_eq!(recv(&spoofer)[0], b'C');
    }
    // Many sources without cookies: each costs one reply, none a session.
    let others: Vec<UdpSocket> = (0..20).map(|_| client()).collect();
    for o in &others {
        o.send_to(b"H", server).unwrap();
        assert_eq!(recv(o)[0], b'C');
    }
    let opened: Vec<SEv> = rx
        .try_iter()
        .filter(|e| matches!(e, SEv::Open(_)))
        .collect();
    assert!(opened.is_empty(), "unexpected sessions: {opened:?}");
    // The honest session still works.
    honest.send_to(b"still here", server).unwrap();
    assert_eq!(recv_not_tick(&honest), b"still here");
    engine.stop();
}

#[test]
fn idle_sessions_time_out() {
    let (engine, server, rx) = cookie_server(Duration::from_millis(200));
    let a = client();
    join(&a, server);
    wait_ev(&rx, &SEv::Open(a.local_addr().unwrap()));
    let opened = Instant::now();
    wait_ev(
        &rx,
        &SEv::Close(a.local_addr().unwrap(), SessionClose::IdleTimeout),
    );
    assert!(opened.elapsed() >= Duration::from_millis(190));
    engine.stop();
}

#[test]
fn the_session_cap_holds_and_stop_closes_every_session() {
    let (engine, server, rx) = cookie_server(Duration::from_secs(30));
    // Cap of 8: the ninth admitted source is dropped, not opened.
    let peers: Vec<UdpSocket> = (0..9).map(|_| client()).collect();
    for p in &peers[..8] {
        join(p, server);
    }
    peers[8].send_to(b"H", server).unwrap();
    peers[8]
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        peers[8].recv(&mut buf).is_err(),
        "a full table answers nothing"
    );
    engine.stop();
    // Every open session closes on stop.
    let closes = rx
        .iter()
        .filter(|e| matches!(e, SEv::Close(_, SessionClose::Shutdown)))
        .count();
    assert_eq!(closes, 8);
}

/// Dialed sessions: one engine dials another's session listener from
/// `on_boot` and exchanges datagrams through `Udp` only.
struct Dialer {
    server: SocketAddr,
    events: Sender<Vec<u8>>,
}

impl EventHandler for Dialer {
    type State = ();

    fn on_traffic(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
        Action::Close
    }

    fn on_boot(&mut self, ctx: &mut LoopCtx<'_, Self::State>) {
        let id = ctx.udp().connect(self.server).unwrap();
        assert!(ctx.udp().send(id, b"H"));
    }

    fn on_session_datagram(&mut self, s: &mut Session<'_, ()>, data: &[u8], _t: bool) -> Action {
        assert_eq!(s.listener(), None);
        if data[0] == b'C' {
            let mut hello = b"H".to_vec();
            hello.extend_from_slice(&data[1..]);
            s.send(&hello);
        } else if data != b"tick" {
            let _ = self.events.send(data.to_vec());
        }
        Action::Continue
    }

    fn on_session_close(&mut self, _s: &mut Session<'_, ()>, reason: SessionClose) {
        let _ = self.events.send(reason.to_string().into_bytes());
    }
}

#[test]
fn dialed_sessions_talk_to_a_session_listener() {
    let (server, addr, rx) = cookie_server(Duration::from_secs(30));
    let (tx, got) = channel();
    let dialer = Engine::builder(move |_| Dialer {
        server: addr,
        events: tx.clone(),
    })
    .loops(1)
    .start()
    .unwrap();
    let hello = got.recv_timeout(DEADLINE).expect("the echoed hello");
    assert_eq!(hello[0], b'H');
    assert_eq!(hello.len(), 9);
    assert!(matches!(rx.recv_timeout(DEADLINE), Ok(SEv::Challenged(_))));
    dialer.stop();
    assert_eq!(got.recv_timeout(DEADLINE).unwrap(), b"engine shutdown");
    server.stop();
}

/// A TCP connection's callback reaches a UDP session of the same loop by id:
/// a TCP line `go` makes the server send `from tcp` to every session.
struct Bridge {
    sessions: Vec<tether::udp_session::SessionId>,
    opened: Sender<()>,
}

impl EventHandler for Bridge {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let n = conn.read_buf().len();
        conn.consume(n);
        let mut udp = conn.udp();
        for id in &self.sessions {
            assert!(udp.send(*id, b"from tcp"));
        }
        Action::Continue
    }

    fn on_session_open(&mut self, s: &mut Session<'_, ()>) -> Action {
        self.sessions.push(s.id());
        let _ = self.opened.send(());
        Action::Continue
    }
}

#[test]
fn a_tcp_callback_sends_to_a_udp_session() {
    let (tx, opened) = channel();
    let engine = Engine::builder(move |_| Bridge {
        sessions: Vec::new(),
        opened: tx.clone(),
    })
    .loops(1)
    .listen_sessions("udp://127.0.0.1:0", SessionOptions::new())
    .listen("tcp://127.0.0.1:0")
    .start()
    .unwrap();
    let (udp_addr, tcp_addr) = (engine.local_addrs()[0], engine.local_addrs()[1]);
    let c = client();
    c.send_to(b"hi", udp_addr).unwrap(); // the default hook admits every source
    opened.recv_timeout(DEADLINE).expect("a session");
    let mut tcp = std::net::TcpStream::connect(tcp_addr).unwrap();
    std::io::Write::write_all(&mut tcp, b"go").unwrap();
    assert_eq!(recv(&c), b"from tcp");
    engine.stop();
}

#[test]
fn listen_sessions_refuses_a_tcp_address() {
    let started = Engine::builder(|_| Bridge {
        sessions: Vec::new(),
        opened: channel().0,
    })
    .listen_sessions("tcp://127.0.0.1:0", SessionOptions::new())
    .start();
    assert!(matches!(started, Err(tether::Error::InvalidOption(_))));
}
