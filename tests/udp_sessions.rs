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
