//! `SessionTable` driven by arbitrary operations against a map model: sessions
//! expire exactly when idle for the timeout, the cap holds, ended ids never
//! resolve again, and nothing panics whatever the sequence.

#![no_main]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::Input;
use libfuzzer_sys::fuzz_target;
use tether::udp_session::{InsertError, SessionId, SessionTable};

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 4000))
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let idle = u64::from(input.u16() % 1000);
    let max = usize::from(input.byte() % 32);
    let mut table: SessionTable<u64> = SessionTable::new(0, max, idle, 0);
    let mut model: BTreeMap<SocketAddr, (SessionId, u64)> = BTreeMap::new();
    let mut dead: Vec<SessionId> = Vec::new();
    let mut now = 0u64;
    for _ in 0..(data.len() / 2) {
        let (op, a) = (input.byte() % 4, input.byte() % 40);
        match op {
            0 => match (table.insert(addr(a), now, now), model.get(&addr(a))) {
                (Err(InsertError::Exists(id)), Some((mid, _))) => assert_eq!(id, *mid),
                (Err(InsertError::Full), None) => assert!(model.len() >= max),
                (Ok(id), None) => {
                    model.insert(addr(a), (id, now));
                }
                (got, want) => panic!("insert {got:?} against {want:?}"),
            },
            1 => {
                if let Some(e) = model.get_mut(&addr(a)) {
                    assert!(table.touch(e.0, now));
                    e.1 = now;
                }
            }
            2 => {
                if let Some((id, _)) = model.remove(&addr(a)) {
                    assert!(table.remove(id).is_some());
                    dead.push(id);
                }
            }
            _ => {
                now += u64::from(a) * 13;
                while let Some(e) = table.poll_expired(now) {
                    let (id, last) = model.remove(&e.addr).expect("expired a live session");
                    assert_eq!(id, e.id);
                    assert!(idle > 0 && last + idle <= now);
                    dead.push(id);
                }
                if idle > 0 {
                    assert!(model.values().all(|(_, last)| last + idle > now));
                }
            }
        }
        assert_eq!(table.len(), model.len());
        for id in &dead {
            assert!(table.get(*id).is_none());
        }
    }
});
