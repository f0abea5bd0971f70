//! The elastic buffer and the pool against a `VecDeque<u8>` model.

use std::collections::VecDeque;

use proptest::prelude::*;
use tether::buffer::{Buf, BufferPool, ConsumeError};

#[derive(Debug, Clone)]
enum Op {
    Extend(Vec<u8>),
    Consume(usize),
    ReadInto(Vec<u8>),
    Reserve(usize),
    Clear,
    Shrink(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::Extend),
        4 => (0usize..400).prop_map(Op::Consume),
        2 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::ReadInto),
        1 => (0usize..1000).prop_map(Op::Reserve),
        1 => Just(Op::Clear),
        1 => (1usize..512).prop_map(Op::Shrink),
    ]
}

proptest! {
    #[test]
    fn buf_behaves_like_a_fifo(cap in 0usize..128, ops in proptest::collection::vec(op(), 0..200)) {
        let mut buf = Buf::with_capacity(cap);
        let mut model: VecDeque<u8> = VecDeque::new();
        for op in ops {
            match op {
                Op::Extend(bytes) => {
                    buf.extend_from_slice(&bytes);
                    model.extend(&bytes);
                }
                Op::Consume(n) => {
                    let r = buf.try_consume(n);
                    if n <= model.len() {
                        prop_assert_eq!(r, Ok(()));
                        model.drain(..n);
                    } else {
                        prop_assert_eq!(r, Err(ConsumeError { requested: n, available: model.len() }));
                    }
                }
                Op::ReadInto(bytes) => {
                    // As a socket read would: fill part of the spare space, commit.
                    let spare = buf.spare_mut(bytes.len());
                    prop_assert!(spare.len() >= bytes.len());
                    spare[..bytes.len()].copy_from_slice(&bytes);
                    buf.commit(bytes.len());
                    model.extend(&bytes);
                }
                Op::Reserve(n) => {
                    buf.reserve(n);
                    prop_assert!(buf.capacity() - buf.len() >= n);
                }
                Op::Clear => {
                    buf.clear();
                    model.clear();
                }
                Op::Shrink(n) => {
                    let before = buf.capacity();
                    buf.shrink_to(n);
                    prop_assert!(buf.capacity() == before || buf.capacity() == n);
                }
            }
            prop_assert_eq!(buf.len(), model.len());
            prop_assert_eq!(buf.is_empty(), model.is_empty());
            prop_assert!(buf.as_slice().iter().eq(model.iter()));
            prop_assert!(buf.len() <= buf.capacity());
        }
    }
}

#[test]
fn consume_all_rewinds_so_appends_never_move_bytes() {
    let mut buf = Buf::with_capacity(16);
    for _ in 0..1000 {
        buf.extend_from_slice(&[1; 10]);
        buf.consume(10);
    }
    assert_eq!(buf.capacity(), 16, "no growth from a balanced stream");
}

#[test]
fn growth_is_bounded_by_the_bytes_held() {
    let mut buf = Buf::with_capacity(64);
    buf.extend_from_slice(&[0; 1000]);
    assert!(buf.capacity() < 2 * 1000 + 64);
    buf.consume(990);
    buf.extend_from_slice(&[0; 900]);
    // 910 bytes held: compaction reuses the storage instead of growing.
    assert!(buf.capacity() <= 2 * 1000 + 64);
}

#[test]
#[should_panic(expected = "consume(5) with only 3 unread bytes")]
fn consume_past_the_end_panics_with_figures() {
    let mut buf = Buf::with_capacity(8);
    buf.extend_from_slice(b"abc");
    let err = buf.try_consume(5).unwrap_err();
    panic!(
        "consume({}) with only {} unread bytes",
        err.requested, err.available
    );
}

#[test]
fn pool_reuses_and_bounds_what_it_keeps() {
    let mut pool = BufferPool::new(1024, 2);
    let a = pool.take();
    let mut b = pool.take();
    let c = pool.take();
    assert_eq!(pool.stats().lent, 3);
    b.extend_from_slice(&[0; 10_000]);
    pool.give(a);
    pool.give(b);
    pool.give(c);
    let s = pool.stats();
    assert_eq!(s.lent, 0);
    assert_eq!(s.idle, 2, "keeps at most max_idle");
    assert_eq!(
        s.idle_bytes,
        2 * 1024,
        "a buffer that grew past the cap is shrunk"
    );
    let again = pool.take();
    assert!(again.is_empty());
    assert_eq!(pool.stats().idle, 1);
}
