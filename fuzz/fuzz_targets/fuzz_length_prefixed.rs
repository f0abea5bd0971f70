#![no_main]

mod common;

use common::{Input, check_raw, check_round_trip, split_payloads};
use libfuzzer_sys::fuzz_target;
use tether::codec::{Endian, LengthPrefixed};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let width = [1, 2, 3, 4, 8, 0, 5, 7][usize::from(flags & 7)];
    let endian = if flags & 8 != 0 {
        Endian::Little
    } else {
        Endian::Big
    };
    let includes_header = flags & 16 != 0;
    let reject_empty = flags & 32 != 0;
    let offset = usize::from(input.byte() % 20);
    let adjustment = match input.byte() {
        0 => i64::MIN,
        1 => i64::MAX,
        2 => input.u64() as i64,
        b => i64::from(b as i8),
    };
    let strip = match input.byte() {
        255 => None,
        b => Some(usize::from(b % 24)),
    };
    let max = match input.u16() {
        0xffff => usize::MAX,
        0xfffe => tether::codec::DEFAULT_MAX_FRAME_LEN,
        n => usize::from(n),
    };
    let seed = input.u64();

    let mut builder = LengthPrefixed::builder()
        .length_field_offset(offset)
        .length_field_width(width)
        .endian(endian)
        .length_adjustment(adjustment)
        .length_includes_header(includes_header)
        .max_frame_len(max)
        .reject_empty(reject_empty);
    if let Some(strip) = strip {
        builder = builder.initial_bytes_to_strip(strip);
    }
    let Ok(codec) = builder.build() else {
        assert!(![1, 2, 3, 4, 8].contains(&width) || includes_header);
        return;
    };
    let strip = strip.unwrap_or(codec.header_len());
    let rest = input.rest();
    check_raw(&codec, rest, seed);
    check_round_trip(&codec, &split_payloads(rest, seed), seed, |_, framed| {
        framed[strip..].to_vec()
    });
});
