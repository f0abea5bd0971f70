//! Commands from other threads, and stopping.

use super::*;
use crate::timer::deadline::instant_after;

impl<H: EventHandler> EventLoop<H> {
    /// Applies the commands other threads queued, in order. Payloads are queued
    /// on their connections as they are (no copy) and go out in the dirty pass
    /// at the end of this iteration: every send to one connection from this
    /// batch, consecutive or not, shares one `writev`.
    pub(super) fn drain_inbox(&mut self) {
        let mut commands = std::mem::take(&mut self.commands);
        self.core
            .engine
            .inbox(self.core.loop_id)
            .drain_into(&mut commands);
        for cmd in commands.drain(..) {
            match cmd {
                Command::Send(id, data) => self.queue_command_payload(id, data),
                Command::Broadcast(ids, data) => {
                    for id in ids {
                        self.queue_command_payload(id, data.clone());
                    }
                }
                Command::Publish(topic, data) => {
                    let mut peers = self.conns.all();
                    let mut ctx = LoopCtx {
                        core: &mut self.core,
                        own: None,
                        peers: &mut peers,
                    };
                    ctx.publish_local(&topic, &data);
                }
                Command::Close(id) => {
                    if let Some(key) = self.lookup(id) {
                        self.close(key, CloseReason::Local);
                    }
                }
                Command::Wake(id) => {
                    if let Some(key) = self.lookup(id) {
                        self.callback(key, Callback::Wake);
                    }
                }
                Command::Adopt(stream, tag) => {
                    if self.stopping.is_some() {
                        let counters = self.core.engine.counters(self.core.loop_id);
                        counters.open.fetch_sub(1, Ordering::Relaxed);
                    } else {
                        self.open(stream, true, tag);
                    }
                }
                Command::Stop { drain } => self.begin_stop(drain),
                Command::Connect(req) => self.dial_requested(*req),
            }
        }
        self.commands = commands;
    }

    /// Queues a payload from another thread on connection `id`, if it is live.
    fn queue_command_payload(&mut self, id: ConnId, data: bytes::Bytes) {
        if let Some(key) = self.lookup(id) {
            if let Some(slot) = self.conns.get_mut(key) {
                if slot.io.is_open() {
                    self.core.queue_shared(key, &mut slot.io, data);
                }
            }
        }
    }

    /// The slab key of `id`, if that connection is still the one in its slot.
    pub(super) fn lookup(&self, id: ConnId) -> Option<usize> {
        let key = id.slot as usize;
        match self.conns.get(key) {
            Some(slot) if slot.io.generation == id.generation => Some(key),
            _ => {
                bump(
                    &self.core.engine.counters(self.core.loop_id).stale_commands,
                    1,
                );
                log::debug!(
                    "loop {}: dropped a command for stale {id}",
                    self.core.loop_id
                );
                None
            }
        }
    }

    pub(super) fn begin_stop(&mut self, drain: Duration) {
        if self.stopping.is_some() {
            return;
        }
        for mut l in self.listeners.drain(..) {
            let _ = l.inner.socket.deregister(self.poll.registry());
            if let Some(file) = &l.inner.unix_path {
                file.remove_if_ours();
            }
        }
        self.ready_accepts.clear();
        self.stopping = Some(instant_after(self.core.now, drain));
        self.with_ctx(|h, ctx| h.on_shutdown(ctx));
        self.close_flushed_while_stopping();
    }

    pub(super) fn close_flushed_while_stopping(&mut self) {
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, s)| s.io.outbound.is_none())
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            self.close(key, CloseReason::Shutdown);
        }
    }
}
