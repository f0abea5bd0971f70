#![no_main]

mod common;

use common::{Input, check_raw, check_round_trip, split_payloads};
use libfuzzer_sys::fuzz_target;
use tether::codec::Delimited;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let keep = flags & 1 != 0;
    let reject_empty = flags & 2 != 0;
    // Delimiters from a small alphabet collide with the data and with
    // themselves far more often than arbitrary bytes would.
    let small_alphabet = flags & 4 != 0;
    let delimiter: Vec<u8> = input
        .bytes(1 + usize::from(flags >> 5))
        .iter()
        .map(|&b| {
            if small_alphabet {
                b"ab\r\n"[usize::from(b & 3)]
            } else {
                b
            }
        })
        .collect();
    let max = match input.byte() {
        255 => tether::codec::DEFAULT_MAX_FRAME_LEN,
        254 => usize::MAX,
        n => usize::from(n),
    };
    let seed = input.u64();
    let Ok(codec) = Delimited::new(delimiter.clone()) else {
        assert!(delimiter.is_empty());
        return;
    };
    let codec = codec
        .keep_delimiter(keep)
        .reject_empty(reject_empty)
        .max_frame_len(max);
    let rest = input.rest();
    let data: Vec<u8> = if small_alphabet {
        rest.iter()
            .map(|&b| b"ab\r\nx"[usize::from(b % 5)])
            .collect()
    } else {
        rest.to_vec()
    };
    check_raw(&codec, &data, seed);
    check_round_trip(
        &codec,
        &split_payloads(&data, seed),
        seed,
        |payload, framed| {
            if keep {
                framed.to_vec()
            } else {
                payload.to_vec()
            }
        },
    );
});
