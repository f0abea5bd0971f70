//! Close status codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use std::fmt;

use super::error::WsError;

/// A close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page left).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: a protocol error.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection dropped without a close frame (never sent).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with the message type (invalid UTF-8).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: a policy was violated.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not agree to.
    pub const EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL: CloseCode = CloseCode(1011);

    /// True for codes a peer may put in a close frame: 1000–1003, 1007–1014
    /// (the IANA registry) and 3000–4999 (libraries and applications).
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A close frame's content: a status code and a reason, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code; [`CloseCode::NO_STATUS`] when the frame had none.
    pub code: CloseCode,
    /// The reason, UTF-8, possibly empty.
    pub reason: &'a str,
}

impl<'a> CloseFrame<'a> {
    /// Parses a received close payload: empty, or a sendable code and a UTF-8
    /// reason.
    ///
    /// # Errors
    ///
    /// A one-byte payload or a code outside [`CloseCode::is_sendable`] is a
    /// protocol error (1002); a reason that is not UTF-8 is
    /// [`WsError::InvalidUtf8`] (1007).
    pub fn parse(payload: &'a [u8]) -> Result<CloseFrame<'a>, WsError> {
        match payload {
            [] => Ok(CloseFrame {
                code: CloseCode::NO_STATUS,
                reason: "",
            }),
            [_] => Err(WsError::Protocol("one-byte close payload")),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_sendable() {
                    return Err(WsError::InvalidCloseCode(code.0));
                }
                let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
                Ok(CloseFrame { code, reason })
            }
        }
    }
}

/// Builds a close payload into `out`: the code and as much of `reason` as fits
/// the 125-byte control frame limit (cut on a character boundary). Returns its
/// length. A code that may not be sent ([`CloseCode::NO_STATUS`]) gives an
/// empty payload.
pub fn close_payload(out: &mut [u8; 125], code: CloseCode, reason: &str) -> usize {
    if !code.is_sendable() {
        return 0;
    }
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    2 + end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autobahn_seven_codes() {
        for ok in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let p = ok.to_be_bytes();
            assert_eq!(CloseFrame::parse(&p).unwrap().code, CloseCode(ok));
        }
        for bad in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let p = bad.to_be_bytes();
            assert_eq!(CloseFrame::parse(&p), Err(WsError::InvalidCloseCode(bad)));
        }
        assert!(CloseFrame::parse(&[3]).is_err());
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8, 0xff]),
            Err(WsError::InvalidUtf8)
        );
    }

    #[test]
    fn long_reasons_are_cut_on_a_boundary() {
        let mut out = [0u8; 125];
        let reason = "é".repeat(100);
        let n = close_payload(&mut out, CloseCode::NORMAL, &reason);
        assert_eq!(n, 124);
        let f = CloseFrame::parse(&out[..n]).unwrap();
        assert_eq!(f.reason.len(), 122);
    }
}
