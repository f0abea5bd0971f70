#![no_main]

mod common;

use common::{Input, check_raw, check_round_trip, split_payloads};
use libfuzzer_sys::fuzz_target;
use tether::codec::{Codec, Decoded, Varint};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let max = match input.u16() {
        0xffff => usize::MAX,
        0xfffe => tether::codec::DEFAULT_MAX_FRAME_LEN,
        n => usize::from(n),
    };
    let seed = input.u64();
    let codec = Varint::new()
        .max_frame_len(max)
        .reject_empty(flags & 1 != 0);
    let rest = input.rest();
    check_raw(&codec, rest, seed);
    check_round_trip(&codec, &split_payloads(rest, seed), seed, |payload, _| {
        payload.to_vec()
    });

    // Any accepted prefix re-encodes to the same bytes: only canonical
    // encodings are accepted.
    let mut unbounded = Varint::new().max_frame_len(usize::MAX);
    if let Ok(decoded) = unbounded.decode(rest) {
        let header = match decoded {
            Decoded::Frame(frame) => frame.start(),
            Decoded::Incomplete { needed } => {
                let Some(end) = rest.iter().position(|b| b & 0x80 == 0) else {
                    return;
                };
                assert_eq!(
                    needed,
                    (end + 1 + decode_value(&rest[..=end]) as usize) - rest.len()
                );
                end + 1
            }
        };
        let value = decode_value(&rest[..header]);
        let mut encoded = Vec::new();
        let mut v = value;
        while v >= 0x80 {
            encoded.push(v as u8 | 0x80);
            v >>= 7;
        }
        encoded.push(v as u8);
        assert_eq!(encoded, &rest[..header]);
    }
});

fn decode_value(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .enumerate()
        .fold(0, |acc, (i, b)| acc | u64::from(b & 0x7f) << (7 * i))
}
