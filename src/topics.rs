//! Per-loop topic tables (sans-IO): topic name → subscribers, connection → its
//! topics.
//!
//! Each loop keeps its own table and only its own connections in it, so a
//! publish touches no lock shared between loops: [`Engine::publish`] puts one
//! command in every loop's inbox and each loop delivers to its members. A
//! topic's members sit in a slab, so unsubscribing and closing cost O(topics of
//! that connection), never a scan of the topic. A topic without members is
//! removed, so the table's memory follows the live subscriptions, and those are
//! bounded by [`Options::max_topics_per_conn`] and
//! [`Options::max_topics_per_loop`] (peer-controlled input in a gateway).
//!
//! [`Engine::publish`]: crate::Engine::publish
//! [`Options::max_topics_per_conn`]: crate::Options::max_topics_per_conn
//! [`Options::max_topics_per_loop`]: crate::Options::max_topics_per_loop

use std::collections::HashMap;
use std::fmt;

use slab::Slab;

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic name is longer than `Options::max_topic_len` (or empty).
    BadName {
        /// Length of the name given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The connection already has `Options::max_topics_per_conn` topics.
    TooManyForConnection {
        /// The limit.
        max: usize,
    },
    /// The loop already has `Options::max_topics_per_loop` distinct topics.
    TooManyForLoop {
        /// The limit.
        max: usize,
    },
    /// The connection id is stale or belongs to another loop.
    NoSuchConnection,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::BadName { len, max } => {
                write!(f, "topic name of {len} bytes (must be 1..={max})")
            }
            TopicError::TooManyForConnection { max } => {
                write!(f, "connection already subscribed to {max} topics")
            }
            TopicError::TooManyForLoop { max } => write!(f, "loop already holds {max} topics"),
            TopicError::NoSuchConnection => f.write_str("no such connection on this loop"),
        }
    }
}

impl std::error::Error for TopicError {}

/// A subscriber: slab key and generation of the connection.
pub(crate) type Member = (usize, u32);

#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicLimits {
    pub(crate) max_name_len: usize,
    pub(crate) per_conn: usize,
    pub(crate) per_loop: usize,
}

#[derive(Debug)]
struct Topic {
    name: Box<str>,
    members: Slab<Member>,
}

/// One loop's topics.
#[derive(Debug)]
pub(crate) struct Topics {
    by_name: HashMap<Box<str>, usize>,
    topics: Slab<Topic>,
    /// Per connection key: `(topic key, index in that topic's members)`.
    by_conn: HashMap<usize, Vec<(usize, usize)>>,
    subscriptions: usize,
    limits: TopicLimits,
}

impl Topics {
    pub(crate) fn new(limits: TopicLimits) -> Topics {
        Topics {
            by_name: HashMap::new(),
            topics: Slab::new(),
            by_conn: HashMap::new(),
            subscriptions: 0,
            limits,
        }
    }

    /// Distinct topics with at least one member.
    pub(crate) fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Memberships, over all topics.
    pub(crate) fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Adds `conn` to `name`. `Ok(false)` when it already was a member.
    pub(crate) fn subscribe(&mut self, conn: Member, name: &str) -> Result<bool, TopicError> {
        if name.is_empty() || name.len() > self.limits.max_name_len {
            return Err(TopicError::BadName {
                len: name.len(),
                max: self.limits.max_name_len,
            });
        }
        let existing = self.by_name.get(name).copied();
        let mine = self.by_conn.get(&conn.0).map_or(&[][..], |v| v.as_slice());
        if let Some(t) = existing {
            if mine.iter().any(|&(topic, _)| topic == t) {
                return Ok(false);
            }
        }
        if mine.len() >= self.limits.per_conn {
            return Err(TopicError::TooManyForConnection {
                max: self.limits.per_conn,
            });
        }
        let topic = match existing {
            Some(t) => t,
            None => {
                if self.topics.len() >= self.limits.per_loop {
                    return Err(TopicError::TooManyForLoop {
                        max: self.limits.per_loop,
                    });
                }
                let t = self.topics.insert(Topic {
                    name: name.into(),
                    members: Slab::new(),
                });
                self.by_name.insert(name.into(), t);
                t
            }
        };
        let index = self.topics[topic].members.insert(conn);
        self.by_conn.entry(conn.0).or_default().push((topic, index));
        self.subscriptions += 1;
        Ok(true)
    }

    /// Removes connection `key` from `name`; false if it was not a member.
    pub(crate) fn unsubscribe(&mut self, key: usize, name: &str) -> bool {
        let Some(&topic) = self.by_name.get(name) else {
            return false;
        };
        let Some(mine) = self.by_conn.get_mut(&key) else {
            return false;
        };
        let Some(pos) = mine.iter().position(|&(t, _)| t == topic) else {
            return false;
        };
        let (_, index) = mine.swap_remove(pos);
        if mine.is_empty() {
            self.by_conn.remove(&key);
        }
        self.leave(topic, index);
        true
    }

    /// Removes connection `key` from every topic (it closed).
    pub(crate) fn remove_conn(&mut self, key: usize) {
        if let Some(mine) = self.by_conn.remove(&key) {
            for (topic, index) in mine {
                self.leave(topic, index);
            }
        }
    }

    fn leave(&mut self, topic: usize, index: usize) {
        let t = &mut self.topics[topic];
        t.members.remove(index);
        self.subscriptions -= 1;
        if t.members.is_empty() {
            let t = self.topics.remove(topic);
            self.by_name.remove(&t.name);
        }
    }

    /// Topics connection `key` is subscribed to.
    pub(crate) fn topics_of(&self, key: usize) -> usize {
        self.by_conn.get(&key).map_or(0, Vec::len)
    }

    /// Appends the members of `name` to `out`.
    pub(crate) fn members_into(&self, name: &str, out: &mut Vec<Member>) {
        if let Some(&t) = self.by_name.get(name) {
            out.extend(self.topics[t].members.iter().map(|(_, m)| *m));
        }
    }

    /// True if `name` has members on this loop.
    #[cfg(test)]
    fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn limits() -> TopicLimits {
        TopicLimits {
            max_name_len: 8,
            per_conn: 3,
            per_loop: 4,
        }
    }

    fn members(t: &Topics, name: &str) -> BTreeSet<Member> {
        let mut v = Vec::new();
        t.members_into(name, &mut v);
        v.into_iter().collect()
    }

    #[test]
    fn subscribe_publish_targets_and_close_leaves_everything() {
        let mut t = Topics::new(limits());
        assert_eq!(t.subscribe((1, 0), "room"), Ok(true));
        assert_eq!(t.subscribe((1, 0), "room"), Ok(false));
        assert_eq!(t.subscribe((2, 0), "room"), Ok(true));
        assert_eq!(t.subscribe((2, 0), "lobby"), Ok(true));
        assert_eq!(members(&t, "room"), [(1, 0), (2, 0)].into());
        assert_eq!((t.topic_count(), t.subscription_count()), (2, 3));
        t.remove_conn(2);
        assert_eq!(members(&t, "room"), [(1, 0)].into());
        assert!(!t.has("lobby"), "a topic without members is gone");
        assert!(t.unsubscribe(1, "room"));
        assert!(!t.unsubscribe(1, "room"));
        assert_eq!((t.topic_count(), t.subscription_count()), (0, 0));
        // A new connection in the same slot starts with nothing.
        assert_eq!(t.subscribe((1, 7), "room"), Ok(true));
        assert_eq!(members(&t, "room"), [(1, 7)].into());
    }

    #[test]
    fn limits_are_typed_errors() {
        let mut t = Topics::new(limits());
        assert_eq!(
            t.subscribe((1, 0), "123456789"),
            Err(TopicError::BadName { len: 9, max: 8 })
        );
        assert_eq!(
            t.subscribe((1, 0), ""),
            Err(TopicError::BadName { len: 0, max: 8 })
        );
        for name in ["a", "b", "c"] {
            t.subscribe((1, 0), name).expect("under the limit");
        }
        assert_eq!(
            t.subscribe((1, 0), "d"),
            Err(TopicError::TooManyForConnection { max: 3 })
        );
        t.subscribe((2, 0), "d").expect("fourth topic");
        assert_eq!(
            t.subscribe((2, 0), "e"),
            Err(TopicError::TooManyForLoop { max: 4 })
        );
        // Joining an existing topic is still fine at the loop limit.
        t.subscribe((2, 0), "a").expect("existing topic");
    }

    proptest! {
        /// Against a model: a set of (connection, topic) pairs under the same limits.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u8..4, 0usize..6, 0u8..6), 0..300)) {
            let mut t = Topics::new(limits());
            let mut model: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
            for (op, conn, topic) in ops {
                let name = format!("t{topic}");
                match op {
                    0 | 1 => {
                        let r = t.subscribe((conn, 0), &name);
                        let mine = model.get(&conn).cloned().unwrap_or_default();
                        let all: BTreeSet<&String> = model.values().flatten().collect();
                        if mine.contains(&name) {
                            prop_assert_eq!(r, Ok(false));
                        } else if mine.len() >= 3 {
                            prop_assert_eq!(r, Err(TopicError::TooManyForConnection { max: 3 }));
                        } else if !all.contains(&name) && all.len() >= 4 {
                            prop_assert_eq!(r, Err(TopicError::TooManyForLoop { max: 4 }));
                        } else {
                            prop_assert_eq!(r, Ok(true));
                            model.entry(conn).or_default().insert(name.clone());
                        }
                    }
                    2 => {
                        let was = model.get_mut(&conn).is_some_and(|s| s.remove(&name));
                        prop_assert_eq!(t.unsubscribe(conn, &name), was);
                    }
                    _ => {
                        t.remove_conn(conn);
                        model.remove(&conn);
                    }
                }
                let subs: usize = model.values().map(BTreeSet::len).sum();
                let topics: BTreeSet<&String> = model.values().flatten().collect();
                prop_assert_eq!(t.subscription_count(), subs);
                prop_assert_eq!(t.topic_count(), topics.len());
                for name in &topics {
                    let want: BTreeSet<Member> = model
                        .iter()
                        .filter(|(_, s)| s.contains(*name))
                        .map(|(c, _)| (*c, 0))
                        .collect();
                    prop_assert_eq!(members(&t, name), want);
                }
                for (c, s) in &model {
                    prop_assert_eq!(t.topics_of(*c), s.len());
                }
            }
        }
    }
}
