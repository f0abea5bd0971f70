//! tether through its topics, written as a user would write it.
//!
//! A member's first byte subscribes it to the room's topic (`Conn::subscribe`)
//! and it is answered [`wire::JOINED`]. The publisher's reads are split into
//! messages; the complete ones of each read are copied once into one `Bytes` and
//! published with `Conn::publish`, as the mio loop writes them: this loop's
//! members get it at once, the other loop's through one command. The
//! `tether-per-message` variant publishes each message on its own instead, a
//! zero-copy slice of that `Bytes`, as a chat server publishes each line.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use tether::{Action, Conn, EventHandler};

use super::{Running, count_copies};
use crate::wire;

/// The room's topic.
const ROOM: &str = "room";

pub(super) fn start(addr: SocketAddr, loops: usize, per_message: bool) -> io::Result<Running> {
    super::start_tether(addr, loops, move |_| Room { per_message })
}

#[derive(Default, PartialEq, Eq)]
enum Role {
    #[default]
    New,
    Member,
    Publisher,
}

struct Room {
    /// One publish per message instead of one per read.
    per_message: bool,
}

impl EventHandler for Room {
    type State = Role;

    fn on_traffic(&mut self, conn: &mut Conn<'_, Role>) -> Action {
        let mut input = conn.read_buf();
        if *conn.state() == Role::New {
            let Some(&first) = input.first() else {
                return Action::Continue;
            };
            match first {
                wire::SUBSCRIBE => {
                    if conn.subscribe(ROOM).is_err() {
                        return Action::Close;
                    }
                    conn.write(&[wire::JOINED]);
                    *conn.state_mut() = Role::Member;
                }
                wire::PUBLISH => *conn.state_mut() = Role::Publisher,
                _ => return Action::Close,
            }
            conn.consume(1);
            input = &input[1..];
        }
        if *conn.state() != Role::Publisher {
            conn.consume(input.len());
            return Action::Continue;
        }
        let mut ends = [0usize; 64];
        let mut count = 0;
        let mut at = 0;
        while let Some(len) = wire::message_len(&input[at..]) {
            if len > wire::MAX_MESSAGE {
                return Action::Close;
            }
            if input.len() - at < len || count == ends.len() {
                break;
            }
            at += len;
            ends[count] = at;
            count += 1;
        }
        if count == 0 {
            return Action::Continue;
        }
        let messages = Bytes::copy_from_slice(&input[..at]);
        count_copies(count as u64);
        if self.per_message {
            let mut start = 0;
            for &end in &ends[..count] {
                conn.publish(ROOM, messages.slice(start..end));
                start = end;
            }
        } else {
            conn.publish(ROOM, messages);
        }
        conn.consume(at);
        Action::Continue
    }
}
