#![no_main]

mod common;

use common::{Input, check_raw, check_round_trip};
use libfuzzer_sys::fuzz_target;
use tether::codec::FixedLength;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let len = usize::from(input.byte());
    let seed = input.u64();
    let Ok(codec) = FixedLength::new(len) else {
        assert_eq!(len, 0);
        return;
    };
    let rest = input.rest();
    check_raw(&codec, rest, seed);
    // Whole frames plus the short tail, which encoding must refuse.
    let payloads: Vec<&[u8]> = rest.chunks(len).collect();
    check_round_trip(&codec, &payloads, seed, |payload, framed| {
        assert_eq!(payload, framed);
        payload.to_vec()
    });
});
