//! `Buf` against a `VecDeque<u8>` model: every operation the input names is
//! applied to both, and after each one the readable bytes must be identical
//! and the capacity promises (`reserve`, `spare_mut`, `shrink_to`) kept.
//!
//! Each operation is one opcode byte followed by its arguments; sizes are
//! small so that growth, compaction and rewinding all happen within a few
//! hundred bytes of input.

#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use tether::buffer::{Buf, ConsumeError};

/// Reads operation arguments off the input; zeros once it runs out.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// 0 to 4095: enough to cross the 64-byte minimum and several doublings.
    fn size(&mut self) -> usize {
        let hi = usize::from(self.byte().unwrap_or(0) & 0x0f);
        let lo = usize::from(self.byte().unwrap_or(0));
        hi << 8 | lo
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }
}

/// Bytes to append: taken from the input when there are enough, else a
/// counter, so long appends need not cost long inputs.
fn payload(input: &mut Input<'_>, n: usize, counter: &mut u8) -> Vec<u8> {
    let mut out = input.bytes(n).to_vec();
    while out.len() < n {
        *counter = counter.wrapping_add(1);
        out.push(*counter);
    }
    out
}

fn check(buf: &Buf, model: &VecDeque<u8>) {
    assert_eq!(buf.len(), model.len());
    assert_eq!(buf.is_empty(), model.is_empty());
    assert!(buf.capacity() >= buf.len());
    let (a, b) = model.as_slices();
    let slice = buf.as_slice();
    assert_eq!(slice.len(), a.len() + b.len());
    assert_eq!(&slice[..a.len()], a);
    assert_eq!(&slice[a.len()..], b);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };
    let initial = input.size();
    let mut buf = Buf::with_capacity(initial);
    assert_eq!(buf.capacity(), initial);
    let mut model = VecDeque::new();
    let mut counter = 0u8;
    while let Some(op) = input.byte() {
        match op % 8 {
            0 => {
                let n = input.size();
                let bytes = payload(&mut input, n, &mut counter);
                buf.extend_from_slice(&bytes);
                model.extend(&bytes);
            }
            1 => {
                let min = input.size();
                let fill = input.size();
                let spare = buf.spare_mut(min);
                assert!(spare.len() >= min, "spare {} < {min}", spare.len());
                let n = fill.min(spare.len());
                let bytes = payload(&mut input, n, &mut counter);
                spare[..n].copy_from_slice(&bytes);
                buf.commit(n);
                model.extend(&bytes);
            }
            2 => {
                let n = input.size();
                let available = model.len();
                match buf.try_consume(n) {
                    Ok(()) => {
                        assert!(n <= available);
                        model.drain(..n);
                    }
                    Err(e) => {
                        assert_eq!(
                            e,
                            ConsumeError {
                                requested: n,
                                available
                            }
                        );
                    }
                }
            }
            3 => {
                let additional = input.size();
                buf.reserve(additional);
                assert!(
                    buf.spare_mut(0).len() >= additional,
                    "reserve({additional}) left less spare space"
                );
            }
            4 => {
                buf.clear();
                model.clear();
            }
            5 => {
                let target = input.size();
                let before = buf.capacity();
                buf.shrink_to(target);
                if before > target && model.len() <= target {
                    assert_eq!(buf.capacity(), target);
                } else {
                    assert_eq!(buf.capacity(), before);
                }
            }
            6 => {
                // Consume a valid prefix with the panicking variant.
                if !model.is_empty() {
                    let n = usize::from(input.byte().unwrap_or(0)) % (model.len() + 1);
                    buf.consume(n);
                    model.drain(..n);
                }
            }
            _ => {
                // A clone is an independent copy.
                let copy = buf.clone();
                check(&copy, &model);
                assert_eq!(copy.capacity(), buf.capacity());
            }
        }
        check(&buf, &model);
    }
});
