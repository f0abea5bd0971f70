//! WebSocket (RFC 6455) over the reactor (feature `ws`), with
//! permessage-deflate (RFC 7692).
//!
//! Two layers:
//!
//! - **Sans-IO pieces**, usable on their own and tested without sockets:
//!   [`FrameHeader`] parsing and [`encode_header`], [`apply_mask`] (eight
//!   bytes at a time), [`Utf8Validator`] (incremental, split code points),
//!   [`CloseFrame`] and [`CloseCode`], the handshake ([`accept_key`],
//!   [`Offer`], [`read_request`]) and the [`Receiver`] that turns bytes into
//!   whole messages.
//! - **On the reactor**: a per-loop [`Endpoint`] and a per-connection
//!   [`WsState`] in the handler's `State`, called from your own callbacks
//!   ([`Endpoint::serve`] in `on_traffic`, [`Endpoint::heartbeat`] in
//!   `on_heartbeat`, [`Endpoint::timer`] in `on_timer`). A server takes the
//!   upgrade request itself (standalone), through tether's HTTP layer
//!   ([`Endpoint::upgrade`] from a [`crate::http::Server::serve`] route), or
//!   through any other ([`Endpoint::accept`]); a client dials and calls
//!   [`Endpoint::connect`].
//!
//! # What it guarantees
//!
//! - Messages arrive whole: unfragmented ones lent from the input (or, masked,
//!   from the loop's scratch buffer): no allocation per message.
//! - Text is validated as it arrives, across fragments; invalid UTF-8 fails
//!   with 1007 at the first bad byte.
//! - Reserved bits and opcodes, fragmented or long control frames, stray
//!   continuations and wrong masking fail with 1002; messages over
//!   [`Config::max_message`] with 1009, as soon as a header announces them.
//! - Pings are answered; a close is answered with the same code and the
//!   connection closes once that is sent.
//! - A message sent to many connections can be framed once with
//!   [`server_frame`].

mod close;
mod deflate;
mod endpoint;
mod error;
mod frame;
mod handshake;
mod mask;
mod receiver;
mod upgrade;
mod utf8;

pub use close::{CloseCode, CloseFrame, close_payload};
pub use deflate::DeflateParams;
pub use endpoint::{
    CLOSE_TIMER, Config, Endpoint, Event, PONG_TIMER, WsConn, WsState, server_frame,
};
pub use error::WsError;
pub use frame::{
    FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, encode_frame, encode_header,
};
pub use handshake::{Agreed, HandshakeError, Offer, accept_key, read_request};
pub use mask::apply_mask;
pub use receiver::{Message, Read, Receiver, Role};
pub use utf8::Utf8Validator;
