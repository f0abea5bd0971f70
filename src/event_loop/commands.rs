//! Commands from other threads, and stopping.

use super::*;
use crate::timer::deadline::instant_after;

impl<H: EventHandler> EventLoop<H> {
    pub(super) fn drain_inbox(&mut self) {
        let mut commands = std::mem::take(&mut self.commands);
        self.core
            .engine
            .inbox(self.core.loop_id)
            .drain_into(&mut commands);
        // Consecutive sends to one connection are gathered in the scratch buffer
        // and go out in one write; any other command flushes them first, so the
        // order of commands is kept.
        let mut gathering: Option<usize> = None;
        for cmd in commands.drain(..) {
            if let Command::Send(id, data) = &cmd {
                if let Some(key) = self.lookup(*id) {
                    if gathering != Some(key) {
                        self.flush_gathered(gathering.take());
                        gathering = Some(key);
                    }
                    self.core.scratch.extend_from_slice(data);
                }
                continue;
            }
            self.flush_gathered(gathering.take());
            match cmd {
                Command::Send(..) => {}
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
        self.flush_gathered(gathering);
        self.commands = commands;
    }

    pub(super) fn flush_gathered(&mut self, key: Option<usize>) {
        if let Some(key) = key {
            if !self.seal_scratch(key) || !self.flush_scratch(key) {
                self.core.scratch.clear();
            }
        }
    }

    /// The slab key of `id`, if that connection is still the one in its slot.
    pub(super) fn lookup(&self, id: ConnId) -> Option<usize> {
        let key = id.slot as usize;
        match self.conns.get(key) {
            Some(slot) if slot.generation == id.generation => Some(key),
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
            .filter(|(_, s)| s.outbound.is_none())
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            self.close(key, CloseReason::Shutdown);
        }
    }
}
