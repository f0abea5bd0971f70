//! SipHash-2-4 (Aumasson and Bernstein): a keyed pseudo-random function for
//! short inputs, here the MAC of the stateless session cookies.
//!
//! `std`'s hasher is SipHash-1-3 with keys it does not expose, so cookies could
//! not be checked against a known key in tests nor shared between two engines;
//! this is the reference algorithm with the key as an argument.

/// The 128-bit key.
pub(crate) type Key = [u64; 2];

struct State {
    v: [u64; 4],
}

impl State {
    fn new(key: Key) -> Self {
        State {
            v: [
                key[0] ^ 0x736f_6d65_7073_6575,
                key[1] ^ 0x646f_7261_6e64_6f6d,
                key[0] ^ 0x6c79_6765_6e65_7261,
                key[1] ^ 0x7465_6462_7974_6573,
            ],
        }
    }

    fn round(&mut self) {
        let v = &mut self.v;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    fn absorb(&mut self, m: u64) {
        self.v[3] ^= m;
        self.round();
        self.round();
        self.v[0] ^= m;
    }
}

/// SipHash-2-4 of `data` under `key`.
pub(crate) fn siphash24(key: Key, data: &[u8]) -> u64 {
    let mut s = State::new(key);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        s.absorb(u64::from_le_bytes(w));
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    last[7] = data.len() as u8;
    s.absorb(u64::from_le_bytes(last));
    s.v[2] ^= 0xff;
    for _ in 0..4 {
        s.round();
    }
    s.v[0] ^ s.v[1] ^ s.v[2] ^ s.v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vectors of the SipHash paper: key 00..0f, messages
    /// 00, 00 01, 00 01 02, …
    #[test]
    fn matches_reference_vectors() {
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        let msg: Vec<u8> = (0..64).collect();
        assert_eq!(siphash24(key, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(key, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(key, &msg[..7]), 0xab02_00f5_8b01_d137);
        assert_eq!(siphash24(key, &msg[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(key, &msg[..15]), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(key, &msg[..63]), 0x958a_324c_eb06_4572);
    }
}
