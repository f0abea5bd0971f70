//! The endpoints: TechEmpower's plaintext and JSON tests, `/whoami`, 404
//! otherwise.

use tether::http::{HttpConn, Request, Response};

pub fn route(req: &Request<'_>, res: &mut Response<'_, '_, HttpConn>) {
    match (req.method(), req.path()) {
        ("GET", "/plaintext") => res
            .header("Content-Type", "text/plain")
            .body(b"Hello, World!"),
        ("GET", "/json") => {
            let mut buf = [0u8; 64];
            let len = json_message(&mut buf, "Hello, World!");
            res.header("Content-Type", "application/json")
                .body(&buf[..len]);
        }
        ("GET", "/whoami") => {
            let who = match res.conn().peer_addr() {
                Ok(addr) => addr.to_string(),
                Err(_) => "unknown".to_string(),
            };
            res.header("Content-Type", "text/plain")
                .body(who.as_bytes());
        }
        _ => res.status(404).body(b""),
    }
}

/// Serializes `{"message":<text>}` into `out`; returns its length (text that
/// does not fit is cut at a character boundary, never an invalid document).
fn json_message(out: &mut [u8; 64], text: &str) -> usize {
    const OPEN: &[u8] = b"{\"message\":\"";
    out[..OPEN.len()].copy_from_slice(OPEN);
    let mut len = OPEN.len();
    for c in text.chars() {
        let mut tmp = [0u8; 6];
        let piece: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            c if (c as u32) < 0x20 => {
                let hex = b"0123456789abcdef";
                tmp = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    hex[(c as usize) >> 4],
                    hex[(c as usize) & 15],
                ];
                &tmp
            }
            c => c.encode_utf8(&mut tmp[..4]).as_bytes(),
        };
        if len + piece.len() + 2 > out.len() {
            break;
        }
        out[len..len + piece.len()].copy_from_slice(piece);
        len += piece.len();
    }
    out[len..len + 2].copy_from_slice(b"\"}");
    len + 2
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_is_escaped() {
        let mut buf = [0u8; 64];
        let n = super::json_message(&mut buf, "a\"b\\c\n");
        assert_eq!(&buf[..n], br#"{"message":"a\"b\\c\u000a"}"#);
    }
}
