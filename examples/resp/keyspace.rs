//! The keyspace: Redis's data types, with expiries on a timer wheel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use tether::timer::{TimerId, TimerWheel};

/// A stored value.
pub enum Value {
    Str(Vec<u8>),
    List(VecDeque<Vec<u8>>),
    Set(HashSet<Vec<u8>>),
    Hash(HashMap<Vec<u8>, Vec<u8>>),
}

/// A key's value and its expiry, if any.
pub struct Entry {
    pub value: Value,
    expiry: Option<Expiry>,
}

#[derive(Clone, Copy)]
struct Expiry {
    at_ms: u64,
    timer: TimerId,
}

/// All keys, shared by every loop (see the README: one keyspace, one lock
/// taken once per batch of commands).
pub struct Keyspace {
    map: HashMap<Vec<u8>, Entry>,
    /// One timer per key with a TTL; its payload is the key.
    wheel: TimerWheel<Vec<u8>>,
    origin: Instant,
}

impl Keyspace {
    pub fn new() -> Self {
        Keyspace {
            map: HashMap::new(),
            wheel: TimerWheel::new(0),
            origin: Instant::now(),
        }
    }

    /// Milliseconds since the keyspace was made, from a loop's clock.
    pub fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// The live entry of `key`: an expired one is removed first (lazy expiry,
    /// as Redis does; the wheel removes the others in [`Keyspace::expire_due`]).
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Entry> {
        if !self.wheel.is_empty() && self.map.get(key)?.expired(now_ms) {
            self.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }

    /// The entry of `key`, created with `make` when missing.
    pub fn get_or_insert(
        &mut self,
        key: &[u8],
        now_ms: u64,
        make: impl FnOnce() -> Value,
    ) -> &mut Entry {
        if self.get(key, now_ms).is_none() {
            self.map.insert(
                key.to_vec(),
                Entry {
                    value: make(),
                    expiry: None,
                },
            );
        }
        self.map.get_mut(key).expect("inserted above")
    }

    /// Sets a string value, reusing the old allocation when the key exists;
    /// clears any TTL.
    pub fn set_str(&mut self, key: &[u8], value: &[u8], now_ms: u64) {
        let entry = self.get_or_insert(key, now_ms, || Value::Str(Vec::new()));
        let timer = entry.expiry.take().map(|e| e.timer);
        match &mut entry.value {
            Value::Str(s) => {
                s.clear();
                s.extend_from_slice(value);
            }
            other => *other = Value::Str(value.to_vec()),
        }
        if let Some(timer) = timer {
            self.wheel.cancel(timer);
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.map.remove(key) {
            Some(entry) => {
                if let Some(e) = entry.expiry {
                    self.wheel.cancel(e.timer);
                }
                true
            }
            None => false,
        }
    }

    /// Removes `key` if it holds an empty collection (Redis deletes those).
    pub fn drop_if_empty(&mut self, key: &[u8]) {
        let empty = match self.map.get(key).map(|e| &e.value) {
            Some(Value::List(l)) => l.is_empty(),
            Some(Value::Set(s)) => s.is_empty(),
            Some(Value::Hash(h)) => h.is_empty(),
            _ => false,
        };
        if empty {
            self.remove(key);
        }
    }

    /// Gives `key` a deadline; false when the key does not exist.
    pub fn expire_at(&mut self, key: &[u8], at_ms: u64, now_ms: u64) -> bool {
        if at_ms <= now_ms {
            return self.remove(key);
        }
        let Some(entry) = self.get(key, now_ms) else {
            return false;
        };
        let old = entry.expiry.take();
        if let Some(old) = old {
            self.wheel.cancel(old.timer);
        }
        let timer = self.wheel.insert(at_ms, key.to_vec());
        if let Some(entry) = self.map.get_mut(key) {
            entry.expiry = Some(Expiry { at_ms, timer });
        }
        true
    }

    /// Milliseconds left: -2 without the key, -1 without a TTL.
    pub fn pttl(&mut self, key: &[u8], now_ms: u64) -> i64 {
        match self.get(key, now_ms) {
            None => -2,
            Some(Entry { expiry: None, .. }) => -1,
            Some(Entry {
                expiry: Some(e), ..
            }) => (e.at_ms - now_ms) as i64,
        }
    }

    /// Removes every key whose deadline has passed.
    pub fn expire_due(&mut self, now_ms: u64) {
        while let Some((id, key)) = self.wheel.poll_expired(now_ms) {
            let ours = self
                .map
                .get(&key)
                .and_then(|e| e.expiry)
                .is_some_and(|e| e.timer == id);
            if ours {
                self.map.remove(&key);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn clear(&mut self, now_ms: u64) {
        self.map.clear();
        self.wheel = TimerWheel::new(now_ms);
    }
}

impl Entry {
    fn expired(&self, now_ms: u64) -> bool {
        self.expiry.is_some_and(|e| e.at_ms <= now_ms)
    }
}
