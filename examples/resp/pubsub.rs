//! PUBLISH, SUBSCRIBE and UNSUBSCRIBE over tether's topics: each message is
//! encoded once and published as one `Bytes` (the loop's own subscribers get it
//! directly, every other loop through one command). A table shared by the loops
//! counts each channel's subscribers, for PUBLISH's reply.

use std::borrow::BorrowMut;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tether::codec::resp::RespWrite;
use tether::{Conn, ConnId};

use crate::commands::{Argv, arity_error};

/// Longest channel name served, bytes (its topic name is at most twice that
/// plus two); `main` sets `Options::max_topic_len` from it.
pub const MAX_CHANNEL: usize = 1024;

/// The topic of a Redis channel. A channel that is UTF-8, non-empty and does
/// not start with NUL is its own topic; any other (channels are bytes) becomes
/// NUL, `x` and its hex digits, which no channel of the first kind can equal.
fn topic_of(channel: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(channel) {
        Ok(s) if !s.is_empty() && !s.starts_with('\0') => s.into(),
        _ => {
            let mut t = String::with_capacity(2 + 2 * channel.len());
            t.push_str("\0x");
            for b in channel {
                t.push_str(&format!("{b:02x}"));
            }
            t.into()
        }
    }
}

/// Subscribers per channel, on every loop.
#[derive(Default)]
pub struct Channels {
    members: HashMap<Vec<u8>, Vec<ConnId>>,
}

pub type Shared = Arc<Mutex<Channels>>;

fn lock(channels: &Shared) -> std::sync::MutexGuard<'_, Channels> {
    channels.lock().unwrap_or_else(|p| p.into_inner())
}

/// The channels one connection is subscribed to.
#[derive(Default)]
pub struct Subscriptions {
    channels: Vec<Vec<u8>>,
}

impl Subscriptions {
    pub fn is_subscribed(&self) -> bool {
        !self.channels.is_empty()
    }
}

/// The commands allowed while subscribed (RESP2).
pub fn allowed_while_subscribed(argv: &Argv<'_>) -> bool {
    ["SUBSCRIBE", "UNSUBSCRIBE", "PING", "QUIT"]
        .iter()
        .any(|c| argv.is(0, c))
}

/// Handles a pub/sub command; false if `argv` is not one.
pub fn execute<S: BorrowMut<Subscriptions>>(
    channels: &Shared,
    conn: &mut Conn<'_, S>,
    argv: &Argv<'_>,
) -> bool {
    if argv.is(0, "PUBLISH") {
        if argv.len() != 3 {
            arity_error(conn, argv.get(0));
            return true;
        }
        let (channel, payload) = (argv.get(1), argv.get(2));
        let mut message = Vec::with_capacity(payload.len() + channel.len() + 32);
        message.put_array(3);
        message.put_bulk(b"message");
        message.put_bulk(channel);
        message.put_bulk(payload);
        let message = Bytes::from(message);
        let receivers = lock(channels).members.get(channel).map_or(0, Vec::len);
        if receivers > 0 {
            conn.publish(&topic_of(channel), message);
        }
        conn.put_integer(receivers as i64);
    } else if argv.is(0, "SUBSCRIBE") {
        if argv.len() < 2 {
            arity_error(conn, argv.get(0));
            return true;
        }
        for channel in argv.from(1) {
            let id = conn.id();
            let known = conn
                .state_mut()
                .borrow_mut()
                .channels
                .iter()
                .any(|c| c == channel);
            if !known {
                if channel.len() > MAX_CHANNEL {
                    conn.put_error(b"ERR channel name too long");
                    continue;
                }
                if let Err(e) = conn.subscribe(&topic_of(channel)) {
                    conn.put_error(format!("ERR {e}").as_bytes());
                    continue;
                }
                conn.state_mut()
                    .borrow_mut()
                    .channels
                    .push(channel.to_vec());
                lock(channels)
                    .members
                    .entry(channel.to_vec())
                    .or_default()
                    .push(id);
            }
            let count = conn.state_mut().borrow_mut().channels.len();
            reply(conn, b"subscribe", Some(channel), count);
        }
    } else if argv.is(0, "UNSUBSCRIBE") {
        let named: Vec<Vec<u8>> = if argv.len() > 1 {
            argv.from(1).map(<[u8]>::to_vec).collect()
        } else {
            conn.state_mut().borrow_mut().channels.clone()
        };
        if named.is_empty() {
            reply(conn, b"unsubscribe", None, 0);
        }
        for channel in named {
            let id = conn.id();
            conn.unsubscribe(&topic_of(&channel));
            leave(channels, &channel, id);
            let mine = conn.state_mut().borrow_mut();
            mine.channels.retain(|c| *c != channel);
            let count = mine.channels.len();
            reply(conn, b"unsubscribe", Some(&channel), count);
        }
    } else {
        return false;
    }
    true
}

/// `*3 kind channel count`, the confirmation of (un)subscribing.
fn reply<S>(conn: &mut Conn<'_, S>, kind: &[u8], channel: Option<&[u8]>, count: usize) {
    conn.put_array(3);
    conn.put_bulk(kind);
    match channel {
        Some(c) => conn.put_bulk(c),
        None => conn.put_null_bulk(),
    }
    conn.put_integer(count as i64);
}

fn leave(channels: &Shared, channel: &[u8], id: ConnId) {
    let mut all = lock(channels);
    if let Some(members) = all.members.get_mut(channel) {
        members.retain(|m| *m != id);
        if members.is_empty() {
            all.members.remove(channel);
        }
    }
}

/// A closed connection leaves all its channels.
pub fn drop_connection(channels: &Shared, subs: &mut Subscriptions, id: ConnId) {
    for channel in std::mem::take(&mut subs.channels) {
        leave(channels, &channel, id);
    }
}
