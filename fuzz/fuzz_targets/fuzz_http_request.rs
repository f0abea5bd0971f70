#![no_main]

//! The HTTP request path on arbitrary bytes: the chunked decoder fed in
//! pieces agrees with one-shot decoding and stays within its limit, and the
//! request framing ([`tether::http::frame_request`], the server's own
//! framing without a socket) never panics, never frames past its input, and a
//! prefix frames the same request as the whole or fails only if it does.

use libfuzzer_sys::fuzz_target;
use tether::http::{ChunkedDecoder, frame_request};

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, data)) = data.split_first() else {
        return;
    };
    let limit = u64::from(cfg) * 4;

    // Chunked: whole against pieces.
    let mut whole = Vec::new();
    let one = ChunkedDecoder::new(limit).decode(data, |d| whole.extend_from_slice(d));
    if let Ok((used, _)) = one {
        assert!(used <= data.len());
        assert!(whole.len() as u64 <= limit);
    }
    let step = usize::from(cfg % 7) + 1;
    let mut pieces = Vec::new();
    let mut decoder = ChunkedDecoder::new(limit);
    let mut fed = 0;
    let mut outcome = Ok((0, false));
    for chunk in data.chunks(step) {
        match decoder.decode(chunk, |d| pieces.extend_from_slice(d)) {
            Ok((used, done)) => {
                fed += used;
                outcome = Ok((fed, done));
                if done {
                    break;
                }
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    match (one, outcome) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("one-shot {a:?}, in pieces {b:?}"),
    }
    assert_eq!(whole, pieces);

    // Request framing: a prefix frames as the whole does.
    let full = frame_request(data);
    if let Ok(Some(len)) = full {
        assert!(len > 0 && len <= data.len());
    }
    let cut = data.len() * usize::from(cfg) / 256;
    match (frame_request(&data[..cut]), full) {
        (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b, "a prefix framed differently"),
        (Ok(Some(a)), other) => panic!("a prefix framed {a} bytes, the whole {other:?}"),
        (Err(a), Err(_)) => {
            let _ = a;
        }
        (Err(a), other) => panic!("a prefix failed ({a}), the whole {other:?}"),
        (Ok(None), _) => {}
    }
});
