//! The loop's side of connection layers (PROXY header, TLS; `crate::layer`):
//! feeding them input, sealing output, their pre-open deadline, close_notify.
//! Connections without a layer never reach this file.

use super::write::write_nonblocking;
use super::*;
use crate::layer::Layer;

/// The user-wheel key of a layer's pre-open deadline. No user timer can be
/// armed before `on_open`, and the entry is cancelled when the layer opens.
const LAYER_DEADLINE: u64 = u64::MAX;

impl<H: EventHandler> EventLoop<H> {
    /// The layer for a connection accepted by listener `tag`, if it has one.
    pub(super) fn listener_layer(&self, tag: u16) -> Result<Option<Box<Layer>>, CloseReason> {
        match self
            .opts
            .layers
            .table
            .iter()
            .find(|(t, _)| *t == usize::from(tag))
        {
            Some((_, cfg)) => Layer::accepted(cfg),
            None => Ok(None),
        }
    }

    /// True when the connection waits for its layer before `on_open`; arms the
    /// deadline for that.
    pub(super) fn layer_pending(&mut self, key: usize) -> bool {
        let Some(slot) = self.conns.get(key) else {
            return true;
        };
        if !slot.io.layer.as_ref().is_some_and(|l| l.is_pending()) {
            return false;
        }
        let tag = usize::from(slot.io.listener);
        let after = self
            .opts
            .layers
            .table
            .iter()
            .find(|(t, _)| *t == tag)
            .map_or(Duration::ZERO, |(_, c)| c.deadline());
        self.arm_layer_deadline(key, after);
        true
    }

    fn arm_layer_deadline(&mut self, key: usize, after: Duration) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let at = self
            .core
            .now_ms
            .saturating_add(crate::event_loop::core::ms_ceil(after) + 1);
        let timer = UserTimer {
            slot: key as u32,
            generation: slot.io.generation,
            key: LAYER_DEADLINE,
        };
        let id = self.core.user_wheel.insert(at, timer);
        self.core.note_deadline(at);
        if let Some(layer) = slot.io.layer.as_mut() {
            layer.deadline = Some(id);
        }
    }

    /// A user-wheel entry of this connection fired: true if it was the layer's
    /// deadline (and the connection, still pending, is closed).
    pub(super) fn layer_deadline(&mut self, key: usize, timer: u64) -> bool {
        if timer != LAYER_DEADLINE {
            return false;
        }
        let Some(layer) = self.conns.get(key).and_then(|s| s.io.layer.as_ref()) else {
            return false;
        };
        match layer.timeout_reason() {
            Some(reason) => {
                self.close(key, reason);
                true
            }
            None => false,
        }
    }

    /// `rbuf[..n]` arrived on a connection with a layer.
    pub(super) fn layered_read(&mut self, key: usize, n: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let Some(layer) = slot.io.layer.as_deref_mut() else {
            return;
        };
        let fed = layer.feed(
            &mut self.rbuf[..n],
            &mut self.core.pool,
            &mut self.layer_bufs,
        );
        if !layer.intercepts() {
            // A plain connection whose header is done: the hot path no longer
            // looks at the layer.
            slot.io.flags &= !LAYERED;
        }
        if fed.as_ref().is_ok_and(|f| f.opened) {
            if let Some(id) = layer.deadline.take() {
                self.core.user_wheel.cancel(id);
                // Without it the wheels may hold nothing: say so, or the loop
                // keeps reading the clock for a deadline that is gone.
                if self.core.user_wheel.is_empty() {
                    self.core.next_check = [
                        self.core.conn_wheel.next_expiry(),
                        self.dial_wheel.next_expiry(),
                    ]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(u64::MAX);
                }
            }
        }
        // Handshake records, tickets and alerts go out first.
        if !self.layer_bufs.sealed.is_empty() {
            let sealed = std::mem::take(&mut self.layer_bufs.sealed);
            let alive = match fed {
                Ok(_) => self.write_or_queue(key, &sealed),
                Err(_) => {
                    let _ = write_nonblocking(&slot.io.stream, &sealed);
                    true
                }
            };
            self.layer_bufs.sealed = sealed;
            if !alive {
                return;
            }
        }
        let fed = match fed {
            Ok(fed) => fed,
            Err(reason) => {
                self.close(key, reason);
                return;
            }
        };
        let generation = slot_generation(&self.conns, key);
        let alive = |conns: &Slots<Slot<H::State>>| slot_generation(conns, key) == generation;
        if fed.opened {
            self.callback(key, Callback::Open);
            if !alive(&self.conns) {
                return;
            }
        }
        if fed.plain > 0 {
            let Some(slot) = self.conns.get_mut(key) else {
                return;
            };
            let input = match slot.io.inbound.as_mut() {
                None => Input::Plain(fed.plain),
                Some(inbound) => {
                    if inbound.len() + fed.plain > self.opts.max_inbound {
                        self.close(key, CloseReason::InboundOverflow);
                        return;
                    }
                    let plain = &self.layer_bufs.plain[..fed.plain];
                    self.core.pool.append(inbound, plain, self.opts.max_inbound);
                    Input::Own
                }
            };
            self.callback(key, Callback::Traffic(input));
            if !alive(&self.conns) {
                return;
            }
        }
        if fed.peer_closed {
            self.peer_closed(key);
        }
    }

    /// Best effort close_notify for a connection being closed locally.
    pub(super) fn send_close_notify(&mut self, io: &mut SlotIo) {
        if let Some(layer) = io.layer.as_mut() {
            let sealed = &mut self.layer_bufs.sealed;
            sealed.clear();
            layer.close_notify(sealed);
            let _ = write_nonblocking(&io.stream, sealed);
        }
    }

    /// A dialed connection completed its connect: true if it now waits for a
    /// TLS handshake before `on_open`.
    pub(super) fn dialed_layer(&mut self, key: usize) -> bool {
        #[cfg(feature = "tls")]
        {
            let Some(slot) = self.conns.get_mut(key) else {
                return true;
            };
            let Some(tls) = slot.io.dial.as_ref().and_then(|d| d.tls.clone()) else {
                return false;
            };
            let timeout = slot.io.dial.as_ref().map_or(Duration::ZERO, |d| d.timeout);
            let mut hello = std::mem::take(&mut self.layer_bufs.sealed);
            hello.clear();
            match Layer::dialed(&tls, &mut hello) {
                Ok(layer) => {
                    slot.io.layer = Some(layer);
                    slot.io.flags |= LAYERED;
                }
                Err(reason) => {
                    self.layer_bufs.sealed = hello;
                    self.close(key, reason);
                    return true;
                }
            }
            let alive = self.write_or_queue(key, &hello);
            self.layer_bufs.sealed = hello;
            if alive {
                self.arm_layer_deadline(key, timeout);
            }
            true
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = key;
            false
        }
    }
}
