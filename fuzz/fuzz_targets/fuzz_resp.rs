#![no_main]

//! RESP decoding of arbitrary bytes: no panic, frames inside the input,
//! limits honoured, decoding in chunks equal to decoding at once, and every
//! decoded frame re-encoded decodes to the same bytes again.

use libfuzzer_sys::fuzz_target;
use tether::codec::resp::{Decoded, Frame, RespWrite};
use tether::codec::Resp;

/// Decodes frames off the front of `src` until incomplete or an error;
/// returns each frame re-encoded and the error, if any.
fn decode_all(resp: &Resp, src: &[u8]) -> (Vec<Vec<u8>>, usize, bool) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        match resp.decode(&src[pos..]) {
            Ok(Decoded::Frame(frame, used)) => {
                assert!(used >= 1 && pos + used <= src.len());
                let mut bytes = Vec::new();
                bytes.put_frame(&frame);
                out.push(bytes);
                pos += used;
            }
            Ok(Decoded::Incomplete { needed }) => {
                assert!(needed >= 1);
                return (out, pos, false);
            }
            Err(_) => return (out, pos, true),
        }
    }
}

fn depth(frame: &Frame<'_>) -> usize {
    match frame {
        Frame::Array(a) | Frame::Map(a) | Frame::Set(a) | Frame::Attribute(a) | Frame::Push(a) => {
            1 + a.iter().map(|f| depth(&f)).max().unwrap_or(0)
        }
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, data)) = data.split_first() else {
        return;
    };
    let max_depth = usize::from(cfg & 7);
    let max_array = usize::from(cfg >> 3) * 2;
    let resp = Resp::new()
        .max_depth(max_depth)
        .max_array(max_array)
        .max_bulk(256)
        .max_line(64);
    let (whole, used, failed) = decode_all(&resp, data);

    // The same bytes arriving in pieces give the same frames.
    let step = usize::from(cfg % 13) + 1;
    let mut inbound = Vec::new();
    let mut pieces = Vec::new();
    let mut failed_chunked = false;
    for chunk in data.chunks(step) {
        inbound.extend_from_slice(chunk);
        let (frames, n, err) = decode_all(&resp, &inbound);
        pieces.extend(frames);
        inbound.drain(..n);
        if err {
            failed_chunked = true;
            break;
        }
    }
    assert_eq!(pieces, whole[..pieces.len()].to_vec());
    if !failed && !failed_chunked {
        assert_eq!(pieces.len(), whole.len());
    }
    let _ = used;

    // Re-encoded frames decode to themselves, within the limits.
    for bytes in &whole {
        match Resp::new().max_array(usize::MAX).decode(bytes) {
            Ok(Decoded::Frame(frame, n)) => {
                assert_eq!(n, bytes.len());
                assert!(depth(&frame) <= max_depth);
                let mut again = Vec::new();
                again.put_frame(&frame);
                assert_eq!(&again, bytes);
            }
            other => panic!("re-encoded frame does not decode: {other:?}"),
        }
    }
});
