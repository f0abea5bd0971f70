//! The RESP connection handler: commands decoded in place, run against the
//! shared keyspace, answered straight into the connection's output.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tether::codec::Resp;
use tether::codec::resp::{Decoded, RespWrite};
use tether::{Action, CloseReason, Conn, EventHandler, LoopCtx};

use crate::commands::{self, Argv, Outcome};
use crate::keyspace::Keyspace;
use crate::pubsub::{self, Subscriptions};

/// Commands are flat arrays of bulk strings; a bulk string may not exceed what
/// a connection may buffer anyway.
const DECODER: Resp = Resp::new()
    .max_bulk(4 * 1024 * 1024)
    .max_array(1024 * 1024)
    .max_depth(1);

/// How often a loop removes expired keys (lookups also expire lazily).
const EXPIRY_SWEEP: Duration = Duration::from_millis(100);

pub struct Server {
    db: Arc<Mutex<Keyspace>>,
    channels: pubsub::Shared,
}

impl Server {
    /// A loop's handler over the keyspace and channels every loop shares.
    pub fn new(db: Arc<Mutex<Keyspace>>, channels: pubsub::Shared) -> Self {
        Server { db, channels }
    }
}

/// Per connection.
#[derive(Default)]
pub struct Client {
    /// Don't decode again until this many bytes are buffered (a large bulk
    /// string arriving in pieces is not rescanned per read).
    want: usize,
    subs: Subscriptions,
}

impl std::borrow::Borrow<Subscriptions> for Client {
    fn borrow(&self) -> &Subscriptions {
        &self.subs
    }
}

impl std::borrow::BorrowMut<Subscriptions> for Client {
    fn borrow_mut(&mut self) -> &mut Subscriptions {
        &mut self.subs
    }
}

fn lock(db: &Mutex<Keyspace>) -> MutexGuard<'_, Keyspace> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EventHandler for Server {
    type State = Client;

    fn on_traffic(&mut self, conn: &mut Conn<'_, Client>) -> Action {
        let input = conn.read_buf();
        if input.len() < conn.state().want {
            return Action::Continue;
        }
        let mut db: Option<MutexGuard<'_, Keyspace>> = None;
        let mut pos = 0;
        let mut want = 0;
        while pos < input.len() {
            match DECODER.decode(&input[pos..]) {
                Ok(Decoded::Frame(frame, used)) => {
                    pos += used;
                    let args = match frame.args() {
                        Ok(args) => args,
                        Err(e) => {
                            protocol_error(conn, &e);
                            break;
                        }
                    };
                    let argv = Argv::new(args);
                    if argv.len() == 0 {
                        continue; // an empty inline line
                    }
                    if conn.state().subs.is_subscribed() {
                        if !pubsub::allowed_while_subscribed(&argv) {
                            conn.put_error(
                                b"ERR only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                            );
                            continue;
                        }
                        if argv.is(0, "PING") {
                            conn.put_array(2);
                            conn.put_bulk(b"pong");
                            conn.put_bulk(argv.get(1));
                            continue;
                        }
                    }
                    if pubsub::execute(&self.channels, conn, &argv) {
                        continue;
                    }
                    let db = db.get_or_insert_with(|| lock(&self.db));
                    let now = db.ms(conn.now());
                    if commands::execute(db, conn, &argv, now) == Outcome::Quit {
                        conn.close_after_flush();
                        break;
                    }
                }
                Ok(Decoded::Incomplete { needed }) => {
                    want = (input.len() - pos).saturating_add(needed);
                    break;
                }
                Err(e) => {
                    protocol_error(conn, &e);
                    break;
                }
            }
        }
        conn.state_mut().want = want;
        conn.consume(pos);
        Action::Continue
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Client>, _reason: &CloseReason) {
        let id = conn.id();
        pubsub::drop_connection(&self.channels, &mut conn.state_mut().subs, id);
    }

    fn on_tick(&mut self, ctx: &mut LoopCtx<'_, Self::State>) -> Option<Duration> {
        let mut db = lock(&self.db);
        let now = db.ms(ctx.now());
        db.expire_due(now);
        Some(EXPIRY_SWEEP)
    }
}

/// Redis's answer to a broken stream: an error line, then the close.
fn protocol_error(conn: &mut Conn<'_, Client>, e: &tether::codec::resp::RespError) {
    let line = format!("ERR Protocol error: {e}");
    conn.put_error(line.as_bytes());
    conn.close_after_flush();
}
