//! The fan-out bench's wire protocol, shared by the load client and every server.
//!
//! A connection's first byte says what it is: [`SUBSCRIBE`] joins the one room
//! (the server answers [`JOINED`] once the connection is a member, so the client
//! publishes only to a complete room), [`PUBLISH`] makes it the publisher. The
//! publisher then sends messages, each one frame:
//!
//! ```text
//! | u32 BE: bytes that follow | u64 BE: sequence number | pattern ............ |
//! ```
//!
//! and the server writes each message, unchanged and whole, to every member. The
//! pattern byte at offset `i` of the frame is `i as u8 ^ seq as u8 ^ 0x5a`, so a
//! byte that is lost, duplicated, reordered across messages or corrupted is seen by
//! the client, which checks every byte of every delivery. The ticker scenario's
//! server sends frames of the same shape, numbered by tick.

/// First byte of a subscriber connection.
pub const SUBSCRIBE: u8 = b'S';
/// First byte of the publisher connection.
pub const PUBLISH: u8 = b'P';
/// The server's one-byte answer to [`SUBSCRIBE`], once the connection is a member.
pub const JOINED: u8 = b'J';

/// Bytes of the length field.
pub const LEN_FIELD: usize = 4;
/// Bytes of length field and sequence number: the smallest message.
pub const HEADER: usize = LEN_FIELD + 8;
/// The largest message a server accepts from the publisher.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Writes message `seq` of `size` bytes (header included) into `out`.
pub fn encode(seq: u64, out: &mut [u8]) {
    let size = out.len();
    debug_assert!((HEADER..=MAX_MESSAGE).contains(&size));
    out[..LEN_FIELD].copy_from_slice(&((size - LEN_FIELD) as u32).to_be_bytes());
    out[LEN_FIELD..HEADER].copy_from_slice(&seq.to_be_bytes());
    let key = seq as u8 ^ 0x5a;
    for (i, b) in out.iter_mut().enumerate().skip(HEADER) {
        *b = i as u8 ^ key;
    }
}

/// The length of the whole message at the front of `buf`, once its length field
/// is there. A server uses it to find message boundaries.
pub fn message_len(buf: &[u8]) -> Option<usize> {
    let field: [u8; LEN_FIELD] = *buf.first_chunk()?;
    Some(LEN_FIELD + u32::from_be_bytes(field) as usize)
}

/// Checks one delivered message of `size` bytes and returns its sequence number.
pub fn verify(msg: &[u8], size: usize) -> Result<u64, String> {
    if msg.len() != size || message_len(msg) != Some(size) {
        return Err(format!(
            "message of {} bytes with length field {:?}, expected {size}",
            msg.len(),
            message_len(msg)
        ));
    }
    let seq = u64::from_be_bytes(msg[LEN_FIELD..HEADER].try_into().expect("8 bytes"));
    let key = seq as u8 ^ 0x5a;
    // Folded with `|` so the loop vectorises; the slow search runs only on failure.
    let wrong = msg
        .iter()
        .enumerate()
        .skip(HEADER)
        .fold(0u8, |acc, (i, &b)| acc | (b ^ i as u8 ^ key));
    if wrong != 0 {
        let at = (HEADER..size)
            .find(|&i| msg[i] != i as u8 ^ key)
            .unwrap_or(HEADER);
        return Err(format!("message {seq}: wrong byte at offset {at}"));
    }
    Ok(seq)
}
