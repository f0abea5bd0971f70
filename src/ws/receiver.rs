//! Turning received bytes into whole messages (sans-IO): unmasking,
//! reassembling fragments, validating text as it arrives, inflating.

use super::close::CloseFrame;
use super::deflate::Inflater;
use super::error::WsError;
use super::frame::{FrameHeader, OpCode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// Which end of the connection this is: a server expects masked frames, a
/// client unmasked ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The accepting end.
    #[default]
    Server,
    /// The dialing end.
    Client,
}

/// One thing received: a whole data message or a control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, validated UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping (answered automatically with a pong).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame, code and reason checked.
    Close(CloseFrame<'a>),
}

/// The result of [`Receiver::read`].
#[derive(Debug)]
pub enum Read<'a> {
    /// No whole frame at the front of the input yet.
    Incomplete,
    /// A frame of `len` bytes was taken in (a fragment of a message still
    /// incomplete): consume it and read again.
    Absorbed(usize),
    /// A frame of `len` bytes completed `message`.
    Message(usize, Message<'a>),
}

/// A message being reassembled from fragments.
#[derive(Debug)]
struct Partial {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    utf8: Utf8Validator,
}

/// The receiving half of one connection. Small while idle: one byte of role
/// and flags and two empty boxes.
#[derive(Debug, Default)]
pub struct Receiver {
    role: Role,
    /// permessage-deflate was agreed: RSV1 marks compressed messages.
    deflate: bool,
    /// Reset the inflater after each message (the peer does not take context over).
    reset_inflate: bool,
    partial: Option<Box<Partial>>,
    /// The last message reassembled or inflated, kept to lend it out (boxed:
    /// an idle connection pays one pointer for it, not a `Vec`'s three words).
    #[allow(clippy::box_collection)]
    done: Option<Box<Vec<u8>>>,
    inflater: Option<Box<Inflater>>,
}

impl Receiver {
    /// A receiver for `role`, with permessage-deflate on or off.
    pub fn new(role: Role) -> Receiver {
        Receiver {
            role,
            ..Receiver::default()
        }
    }

    /// Turns on permessage-deflate; `reset_each_message` when the peer agreed
    /// to no context takeover.
    pub fn enable_deflate(&mut self, reset_each_message: bool) {
        self.deflate = true;
        self.reset_inflate = reset_each_message;
    }

    /// True while a fragmented message is incomplete.
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Reads the frame at the front of `input`. Unmasked payloads of
    /// unfragmented messages are lent straight from `input`; masked ones are
    /// unmasked into `scratch` (cleared first) and lent from there, so a
    /// steady stream of unfragmented messages allocates nothing.
    ///
    /// # Errors
    ///
    /// A [`WsError`], after which the connection must be failed with its close
    /// code; messages longer than `max_message` bytes are refused as soon as a
    /// header announces it.
    pub fn read<'a>(
        &'a mut self,
        input: &'a [u8],
        scratch: &'a mut Vec<u8>,
        max_message: usize,
    ) -> Result<Read<'a>, WsError> {
        // The last reassembled message was handled: an idle connection keeps
        // no buffer.
        self.done = None;
        let Some(h) = FrameHeader::parse(input)? else {
            return Ok(Read::Incomplete);
        };
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(WsError::Protocol("unmasked frame from a client")),
            (Role::Client, true) => return Err(WsError::Protocol("masked frame from a server")),
            _ => {}
        }
        let data_start = matches!(h.opcode, OpCode::Text | OpCode::Binary);
        if h.rsv1 && !(self.deflate && data_start) {
            return Err(WsError::Protocol("reserved bit set"));
        }
        let so_far = self.partial.as_ref().map_or(0, |p| p.data.len());
        let compressed = h.rsv1
            || (h.opcode == OpCode::Continuation
                && self.partial.as_ref().is_some_and(|p| p.compressed));
        if !h.opcode.is_control()
            && !compressed
            && (so_far as u64).saturating_add(h.payload_len) > max_message as u64
        {
            return Err(WsError::MessageTooBig { max: max_message });
        }
        let len = usize::try_from(h.payload_len)
            .map_err(|_| WsError::MessageTooBig { max: max_message })?;
        let Some(end) = h
            .header_len
            .checked_add(len)
            .filter(|&end| end <= input.len())
        else {
            return Ok(Read::Incomplete);
        };
        let raw = &input[h.header_len..end];
        match h.opcode {
            OpCode::Ping | OpCode::Pong | OpCode::Close => {
                let payload = unmask(raw, h.mask, scratch);
                let msg = match h.opcode {
                    OpCode::Ping => Message::Ping(payload),
                    OpCode::Pong => Message::Pong(payload),
                    _ => Message::Close(CloseFrame::parse(payload)?),
                };
                Ok(Read::Message(end, msg))
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(WsError::Protocol("new message inside a fragmented one"));
                }
                let text = h.opcode == OpCode::Text;
                if !h.fin {
                    let mut p = Box::new(Partial {
                        text,
                        compressed,
                        data: Vec::new(),
                        utf8: Utf8Validator::default(),
                    });
                    self.append(&mut p, raw, h.mask, max_message)?;
                    self.partial = Some(p);
                    return Ok(Read::Absorbed(end));
                }
                let payload: &[u8] = if compressed {
                    let inflater = self.inflater.get_or_insert_with(Box::default);
                    let done = self.done.insert(Box::default());
                    let input = unmask(raw, h.mask, scratch);
                    inflater.feed(input, done, max_message)?;
                    inflater.finish(done, max_message, self.reset_inflate)?;
                    &done[..]
                } else {
                    unmask(raw, h.mask, scratch)
                };
                Ok(Read::Message(end, lend(text, payload)?))
            }
            OpCode::Continuation => {
                let Some(mut p) = self.partial.take() else {
                    return Err(WsError::Protocol("continuation without a message"));
                };
                self.append(&mut p, raw, h.mask, max_message)?;
                if !h.fin {
                    self.partial = Some(p);
                    return Ok(Read::Absorbed(end));
                }
                if p.compressed {
                    let inflater = self.inflater.get_or_insert_with(Box::default);
                    let before = p.data.len();
                    inflater.finish(&mut p.data, max_message, self.reset_inflate)?;
                    if p.text && !p.utf8.feed(&p.data[before..]) {
                        return Err(WsError::InvalidUtf8);
                    }
                }
                if p.text && !p.utf8.finish() {
                    return Err(WsError::InvalidUtf8);
                }
                let text = p.text;
                let done = self.done.insert(Box::new(std::mem::take(&mut p.data)));
                Ok(Read::Message(end, lend(text, done)?))
            }
        }
    }

    /// Adds a fragment's payload to `p`, checking text as it grows.
    fn append(
        &mut self,
        p: &mut Partial,
        raw: &[u8],
        mask: Option<[u8; 4]>,
        max: usize,
    ) -> Result<(), WsError> {
        let before = p.data.len();
        if p.compressed {
            let mut unmasked = raw.to_vec();
            if let Some(key) = mask {
                apply_mask(&mut unmasked, key, 0);
            }
            let inflater = self.inflater.get_or_insert_with(Box::default);
            inflater.feed(&unmasked, &mut p.data, max)?;
        } else {
            p.data.extend_from_slice(raw);
            if let Some(key) = mask {
                apply_mask(&mut p.data[before..], key, 0);
            }
        }
        if p.text && !p.utf8.feed(&p.data[before..]) {
            return Err(WsError::InvalidUtf8);
        }
        Ok(())
    }
}

/// The payload itself when unmasked, else unmasked into `scratch`.
fn unmask<'a>(raw: &'a [u8], mask: Option<[u8; 4]>, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    match mask {
        None => raw,
        Some(key) => {
            scratch.clear();
            scratch.extend_from_slice(raw);
            apply_mask(scratch, key, 0);
            scratch
        }
    }
}

fn lend(text: bool, payload: &[u8]) -> Result<Message<'_>, WsError> {
    if text {
        std::str::from_utf8(payload)
            .map(Message::Text)
            .map_err(|_| WsError::InvalidUtf8)
    } else {
        Ok(Message::Binary(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::encode_frame;
    use proptest::prelude::*;

    /// Everything `rx` makes of `input`, fed `chunk` bytes at a time.
    fn run(rx: &mut Receiver, input: &[u8], chunk: usize) -> Result<Vec<(u8, Vec<u8>)>, WsError> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let mut pos = 0;
        let mut avail = 0;
        while pos < input.len() {
            avail = (avail + chunk).min(input.len());
            loop {
                match rx.read(&input[pos..avail], &mut scratch, 1 << 20)? {
                    Read::Incomplete => break,
                    Read::Absorbed(n) => pos += n,
                    Read::Message(n, m) => {
                        pos += n;
                        out.push(match m {
                            Message::Text(t) => (1, t.as_bytes().to_vec()),
                            Message::Binary(b) => (2, b.to_vec()),
                            Message::Ping(b) => (9, b.to_vec()),
                            Message::Pong(b) => (10, b.to_vec()),
                            Message::Close(c) => (8, c.reason.as_bytes().to_vec()),
                        });
                    }
                }
            }
            if avail == input.len() && pos < input.len() {
                break;
            }
        }
        Ok(out)
    }

    fn frame(out: &mut Vec<u8>, fin: bool, op: OpCode, payload: &[u8], mask: Option<[u8; 4]>) {
        encode_frame(out, fin, false, op, mask, payload);
    }

    #[test]
    fn idle_receiver_is_small() {
        assert!(std::mem::size_of::<Receiver>() <= 32);
        assert!(std::mem::size_of::<crate::ws::WsState>() <= 64);
    }

    #[test]
    fn fragments_with_pings_between() {
        let key = Some([1, 2, 3, 4]);
        let mut wire = Vec::new();
        let text = "ab€cd".as_bytes();
        frame(&mut wire, false, OpCode::Text, &text[..3], key);
        frame(&mut wire, true, OpCode::Ping, b"p", key);
        frame(&mut wire, false, OpCode::Continuation, &text[3..4], key);
        frame(&mut wire, true, OpCode::Continuation, &text[4..], key);
        for chunk in 1..wire.len() {
            let got = run(&mut Receiver::new(Role::Server), &wire, chunk).unwrap();
            assert_eq!(got, vec![(9, b"p".to_vec()), (1, text.to_vec())]);
        }
    }

    #[test]
    fn protocol_errors() {
        let cases: Vec<(Vec<u8>, WsError)> = vec![
            (
                vec![0x81, 0x00],
                WsError::Protocol("unmasked frame from a client"),
            ),
            (
                vec![0x80, 0x80, 0, 0, 0, 0],
                WsError::Protocol("continuation without a message"),
            ),
            (
                vec![0xc1, 0x80, 0, 0, 0, 0],
                WsError::Protocol("reserved bit set"),
            ),
            (
                vec![0x81, 0x82, 0, 0, 0, 0, 0xc0, 0xaf],
                WsError::InvalidUtf8,
            ),
            (
                vec![0x82, 0xff, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0],
                WsError::MessageTooBig { max: 1 << 20 },
            ),
        ];
        for (wire, err) in cases {
            assert_eq!(
                run(&mut Receiver::new(Role::Server), &wire, wire.len()),
                Err(err)
            );
        }
        let mut wire = Vec::new();
        frame(&mut wire, false, OpCode::Text, b"a", None);
        frame(&mut wire, true, OpCode::Text, b"b", None);
        assert!(run(&mut Receiver::new(Role::Client), &wire, 100).is_err());
    }

    #[test]
    fn compressed_fragments() {
        let mut d = crate::ws::deflate::Deflater::new(false);
        let mut z = Vec::new();
        let msg = "compress me, compress me, compress me".repeat(20);
        d.compress(msg.as_bytes(), &mut z);
        let mut wire = Vec::new();
        let (a, b) = z.split_at(z.len() / 2);
        encode_frame(&mut wire, false, true, OpCode::Text, Some([9, 8, 7, 6]), a);
        encode_frame(
            &mut wire,
            true,
            false,
            OpCode::Continuation,
            Some([5, 4, 3, 2]),
            b,
        );
        encode_frame(
            &mut wire,
            true,
            true,
            OpCode::Binary,
            Some([5, 4, 3, 2]),
            &z,
        );
        let mut rx = Receiver::new(Role::Server);
        rx.enable_deflate(false);
        let got = run(&mut rx, &wire, 7).unwrap();
        assert_eq!(
            got,
            vec![(1, msg.as_bytes().to_vec()), (2, msg.as_bytes().to_vec())]
        );
    }

    proptest! {
        #[test]
        fn any_split_of_any_messages(msgs in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300), 1usize..4), 1..6), chunk in 1usize..64, key: [u8; 4]) {
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for (text, data, pieces) in &msgs {
                let data = if *text { String::from_utf8_lossy(data).into_owned().into_bytes() } else { data.clone() };
                let step = data.len().div_ceil(*pieces).max(1);
                let parts: Vec<&[u8]> = if data.is_empty() { vec![&data[..]] } else { data.chunks(step).collect() };
                for (i, part) in parts.iter().enumerate() {
                    let op = if i > 0 { OpCode::Continuation } else if *text { OpCode::Text } else { OpCode::Binary };
                    frame(&mut wire, i + 1 == parts.len(), op, part, Some(key));
                }
                want.push((if *text { 1 } else { 2 }, data));
            }
            let got = run(&mut Receiver::new(Role::Server), &wire, chunk).unwrap();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), chunk in 1usize..32) {
            let _ = run(&mut Receiver::new(Role::Server), &data, chunk);
            let mut rx = Receiver::new(Role::Client);
            rx.enable_deflate(true);
            let _ = run(&mut rx, &data, chunk);
        }
    }
}
