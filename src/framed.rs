//! Frames over a connection: a codec splits the stream inside `on_traffic`.
//!
//! There is no frame-level handler trait mirroring [`EventHandler`]: a handler is
//! an ordinary [`EventHandler`] whose [`on_traffic`](EventHandler::on_traffic)
//! calls [`decode_frames`], and every other callback (`on_open`, `on_tick`,
//! `on_timer`, …) is the plain one, so a callback added to [`EventHandler`] is
//! there for framed handlers too. The code after [`decode_frames`] returns runs
//! once per read, after all of its frames: the end-of-batch hook, where a handler
//! answers the frames of one read with one write, flushes a batch, or counts.

use crate::codec::{Codec, CodecError, Decoded, MAX_HEADER_LEN};
use crate::conn::Conn;
use crate::reason::{Action, CloseReason};

/// Decodes every complete frame of `conn`'s unread input with `codec` and calls
/// `on_frame` with each payload, borrowed from the input (no copy).
///
/// Each frame is consumed when `on_frame` returns, whatever it did with
/// [`Conn::consume`]: framing owns the input position. A partial frame is kept
/// for the next read. Decoding stops at the first frame whose `on_frame` returns
/// anything but [`Action::Continue`] or closes the connection, and that action is
/// returned; otherwise [`Action::Continue`]. A protocol violation (oversized
/// length, malformed varint, line too long, …) closes the connection with
/// [`CloseReason::Protocol`] naming the error. Frames written with
/// [`FrameConn::write_frame`] are counted in [`Engine::stats`](crate::Engine::stats)
/// once per call.
///
/// A codec that keeps decoding state per stream (`!codec.is_stateless()`, as
/// [`Delimited`](crate::codec::Delimited)) must be one per connection, kept in the
/// connection's state; a stateless one (as
/// [`LengthPrefixed`](crate::codec::LengthPrefixed)) can be the handler's, shared
/// by the loop's connections.
///
/// # Examples
///
/// A length-prefixed echo that answers all the frames of one read with one write
/// (everything written in a callback goes out together after it):
///
/// ```no_run
/// use tether::codec::LengthPrefixed;
/// use tether::{Action, Conn, Engine, EventHandler, decode_frames};
///
/// struct FrameEcho {
///     codec: LengthPrefixed,
/// }
///
/// impl EventHandler for FrameEcho {
///     type State = ();
///
///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
///         decode_frames(conn, &mut self.codec, |conn, frame| match conn.write_frame(frame) {
///             Ok(()) => Action::Continue,
///             Err(_) => Action::Close,
///         })
///         // Code here runs once per read, after all of its frames.
///     }
/// }
///
/// let engine = Engine::builder(|_| FrameEcho { codec: LengthPrefixed::new() })
///     .listen("127.0.0.1:9001")
///     .start()?;
/// # Ok::<(), tether::Error>(())
/// ```
pub fn decode_frames<S, C: Codec>(
    conn: &mut Conn<'_, S>,
    codec: &mut C,
    mut on_frame: impl FnMut(&mut FrameConn<'_, '_, S, C>, &[u8]) -> Action,
) -> Action {
    let mut frames_out = 0;
    let action = loop {
        let input = conn.read_buf();
        match codec.decode(input) {
            Ok(Decoded::Frame(frame)) => {
                // Counted before the handler runs, so a frame whose handler
                // panics is counted too.
                count_frames(conn, 1, 0);
                let start = conn.consumed;
                let mut framed = FrameConn {
                    conn: &mut *conn,
                    codec: &*codec,
                    written: 0,
                };
                let action = on_frame(&mut framed, frame.payload(input));
                frames_out += framed.written;
                conn.consumed = start + frame.consumed();
                if action != Action::Continue || conn.is_closing() {
                    break action;
                }
            }
            Ok(Decoded::Incomplete { .. }) => break Action::Continue,
            Err(e) => {
                conn.close_with(CloseReason::Protocol(e));
                break Action::Continue;
            }
        }
    };
    count_frames(conn, 0, frames_out);
    action
}

/// [`decode_frames`] with a codec that keeps decoding state per stream, kept in
/// the connection's state at `slot`: made from `prototype` on the connection's
/// first read, then resumed where that connection's last read left it. Set the
/// slot to `None` in `on_open` when a redialed link starts a new stream.
///
/// # Examples
///
/// ```no_run
/// use tether::codec::Delimited;
/// use tether::{Action, Conn, EventHandler, decode_frames_with_state_codec};
///
/// struct Lines {
///     prototype: Delimited,
/// }
///
/// impl EventHandler for Lines {
///     type State = Option<Delimited>;
///
///     fn on_traffic(&mut self, conn: &mut Conn<'_, Option<Delimited>>) -> Action {
///         decode_frames_with_state_codec(conn, |s| s, &self.prototype, |conn, line| {
///             let _ = conn.write_frame(line);
///             Action::Continue
///         })
///     }
/// }
/// ```
pub fn decode_frames_with_state_codec<S, C: Codec>(
    conn: &mut Conn<'_, S>,
    slot: fn(&mut S) -> &mut Option<C>,
    prototype: &C,
    on_frame: impl FnMut(&mut FrameConn<'_, '_, S, C>, &[u8]) -> Action,
) -> Action {
    let mut codec = slot(conn.state_mut())
        .take()
        .unwrap_or_else(|| prototype.clone());
    let action = decode_frames(conn, &mut codec, on_frame);
    *slot(conn.state_mut()) = Some(codec);
    action
}

#[inline]
fn count_frames<S>(conn: &Conn<'_, S>, frames_in: u64, frames_out: u64) {
    let counters = conn.engine().counters(conn.loop_id());
    if frames_in > 0 {
        crate::stats::bump(&counters.frames_in, frames_in);
    }
    if frames_out > 0 {
        crate::stats::bump(&counters.frames_out, frames_out);
    }
}

/// Queues `payload` on `conn` as one frame of `codec` (header, payload, and the
/// trailer when the codec has one), outside [`decode_frames`]: from `on_tick`,
/// `on_timer`, `on_open`, or with another codec.
///
/// # Errors
///
/// The codec's error when the payload cannot be framed (too long for the length
/// field or `max_frame_len`, contains the delimiter, …); nothing is written then.
pub fn write_frame<S, C: Codec>(
    conn: &mut Conn<'_, S>,
    codec: &C,
    payload: &[u8],
) -> Result<(), CodecError> {
    queue_frame(conn, codec, payload)?;
    count_frames(conn, 0, 1);
    Ok(())
}

/// Header, payload and trailer, appended to the connection's output in one go.
#[inline]
fn queue_frame<S, C: Codec>(
    conn: &mut Conn<'_, S>,
    codec: &C,
    payload: &[u8],
) -> Result<(), CodecError> {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = codec.encode_header(payload, &mut header)?;
    let trailer = codec.encode_trailer();
    conn.write_in_place(|buf| {
        buf.reserve(MAX_HEADER_LEN + payload.len() + trailer.len());
        // The whole header buffer, then cut back to the header: a fixed-size
        // copy the compiler inlines, where a copy of `n` bytes calls memcpy.
        let at = buf.len() + n;
        buf.extend_from_slice(&header);
        buf.truncate(at);
        buf.extend_from_slice(payload);
        if !trailer.is_empty() {
            buf.extend_from_slice(trailer);
        }
    });
    Ok(())
}

/// Builds one frame of `codec` in place in `conn`'s output, outside
/// [`decode_frames`]: `fill` writes the payload (see [`FrameWriter`]), then the
/// header is written in front of it.
///
/// # Errors
///
/// The codec's error when the payload cannot be framed; nothing is written then.
pub fn build_frame<S, C: Codec>(
    conn: &mut Conn<'_, S>,
    codec: &C,
    fill: impl FnOnce(&mut FrameWriter<'_>),
) -> Result<(), CodecError> {
    conn.write_in_place(|buf| frame_in_place(buf, codec, fill))?;
    count_frames(conn, 0, 1);
    Ok(())
}

/// A connection as [`decode_frames`]'s callback sees it: the [`Conn`] (through
/// `Deref`) plus [`write_frame`](FrameConn::write_frame) with the codec that
/// decoded the frame.
#[derive(Debug)]
pub struct FrameConn<'c, 'a, S, C> {
    conn: &'c mut Conn<'a, S>,
    codec: &'c C,
    written: u64,
}

impl<S, C: Codec> FrameConn<'_, '_, S, C> {
    /// Queues `payload` as one frame: the codec's header, the payload, its trailer.
    /// The payload is not copied anywhere but into the outbound queue.
    ///
    /// # Errors
    ///
    /// The codec's error when the payload cannot be framed (too long for the length
    /// field or `max_frame_len`, contains the delimiter, …); nothing is written then.
    #[inline]
    pub fn write_frame(&mut self, payload: &[u8]) -> Result<(), CodecError> {
        queue_frame(self.conn, self.codec, payload)?;
        self.written += 1;
        Ok(())
    }

    /// Builds one frame in place in the output: `fill` writes the payload
    /// straight into the connection's output buffer (see [`FrameWriter`]), then
    /// the codec's header is written in front of it and its trailer after it. No
    /// intermediate `Vec` holds the payload.
    ///
    /// # Errors
    ///
    /// The codec's error when the payload cannot be framed; nothing is written then.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::fmt::Write as _;
    /// use tether::codec::LengthPrefixed;
    /// use tether::{Action, Conn, EventHandler, decode_frames};
    ///
    /// struct Sizes(LengthPrefixed);
    ///
    /// impl EventHandler for Sizes {
    ///     type State = ();
    ///
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///         decode_frames(conn, &mut self.0, |conn, frame| {
    ///             let built = conn.build_frame(|out| {
    ///                 let _ = write!(out, "{} bytes: ", frame.len());
    ///                 out.extend_from_slice(frame);
    ///             });
    ///             built.map_or(Action::Close, |()| Action::Continue)
    ///         })
    ///     }
    /// }
    /// ```
    #[inline]
    pub fn build_frame(
        &mut self,
        fill: impl FnOnce(&mut FrameWriter<'_>),
    ) -> Result<(), CodecError> {
        self.conn
            .write_in_place(|buf| frame_in_place(buf, self.codec, fill))?;
        self.written += 1;
        Ok(())
    }

    /// The codec that decoded this frame.
    pub fn codec(&self) -> &C {
        self.codec
    }
}

impl<'a, S, C> std::ops::Deref for FrameConn<'_, 'a, S, C> {
    type Target = Conn<'a, S>;
    fn deref(&self) -> &Conn<'a, S> {
        self.conn
    }
}

impl<'a, S, C> std::ops::DerefMut for FrameConn<'_, 'a, S, C> {
    fn deref_mut(&mut self) -> &mut Conn<'a, S> {
        self.conn
    }
}

/// A frame's payload being built in place, in the connection's output
/// ([`FrameConn::build_frame`]): appended piece by piece, then the header is
/// written in front of it, so the payload is never assembled elsewhere first.
#[derive(Debug)]
pub struct FrameWriter<'b> {
    buf: &'b mut Vec<u8>,
    payload_at: usize,
}

impl FrameWriter<'_> {
    /// Appends `data` to the payload.
    #[inline]
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Appends one byte to the payload.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.buf.push(byte);
    }

    /// The payload so far, to patch a field written earlier.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.payload_at..]
    }

    /// Bytes of payload so far.
    pub fn len(&self) -> usize {
        self.buf.len() - self.payload_at
    }

    /// True while nothing is written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::io::Write for FrameWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Write for FrameWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends one frame to `buf`: room for the header, the payload `fill` writes,
/// then the header written in front of it (the payload moved once only when the
/// header's length differs from [`Codec::header_room`]) and the trailer. On a
/// codec error `buf` is left as it was.
fn frame_in_place<C: Codec>(
    buf: &mut Vec<u8>,
    codec: &C,
    fill: impl FnOnce(&mut FrameWriter<'_>),
) -> Result<(), CodecError> {
    let start = buf.len();
    let room = codec.header_room().min(MAX_HEADER_LEN);
    buf.extend_from_slice(&[0; MAX_HEADER_LEN]);
    buf.truncate(start + room);
    let payload_at = start + room;
    fill(&mut FrameWriter { buf, payload_at });
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = match codec.encode_header(&buf[payload_at..], &mut header) {
        Ok(n) => n,
        Err(e) => {
            buf.truncate(start);
            return Err(e);
        }
    };
    if n < room {
        buf.copy_within(payload_at.., start + n);
        buf.truncate(buf.len() - (room - n));
    } else if n > room {
        let end = buf.len();
        buf.resize(end + (n - room), 0);
        buf.copy_within(payload_at..end, start + n);
    }
    buf[start..start + n].copy_from_slice(&header[..n]);
    buf.extend_from_slice(codec.encode_trailer());
    Ok(())
}
