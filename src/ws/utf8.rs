//! Incremental UTF-8 validation of a text message arriving in fragments.

/// Validates UTF-8 fed in pieces, with code points split across pieces.
///
/// It fails as soon as a piece makes the text invalid, without waiting for
/// the end of the message (as Autobahn's "fail fast" cases require).
///
/// # Examples
///
/// ```
/// use tether::ws::Utf8Validator;
///
/// let euro = "€".as_bytes(); // three bytes
/// let mut v = Utf8Validator::default();
/// assert!(v.feed(&euro[..1]));
/// assert!(v.feed(&euro[1..]));
/// assert!(v.finish());
///
/// let mut v = Utf8Validator::default();
/// assert!(!v.feed(&[0xc0, 0x80])); // an overlong encoding fails at once
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Utf8Validator {
    /// The start of a code point cut by the end of the last piece.
    tail: [u8; 4],
    tail_len: u8,
}

impl Utf8Validator {
    /// Checks the next piece; false once the text can no longer be valid.
    pub fn feed(&mut self, mut data: &[u8]) -> bool {
        if self.tail_len > 0 {
            let have = usize::from(self.tail_len);
            let need = char_len(self.tail[0]).saturating_sub(have);
            let take = need.min(data.len());
            let mut cp = self.tail;
            cp[have..have + take].copy_from_slice(&data[..take]);
            match std::str::from_utf8(&cp[..have + take]) {
                Ok(_) => {
                    self.tail_len = 0;
                    data = &data[take..];
                }
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete: the piece was shorter than the code point.
                    self.tail = cp;
                    self.tail_len = (have + take) as u8;
                    return true;
                }
                Err(_) => return false,
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let rest = &data[e.valid_up_to()..];
                self.tail[..rest.len()].copy_from_slice(rest);
                self.tail_len = rest.len() as u8;
                true
            }
            Err(_) => false,
        }
    }

    /// True if everything fed so far ends on a code point boundary.
    pub fn finish(&self) -> bool {
        self.tail_len == 0
    }
}

/// The length a UTF-8 sequence starting with `lead` claims (1 for anything
/// that is not a multi-byte lead, which `from_utf8` then rejects).
fn char_len(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pieces_valid(data: &[u8], cuts: &[usize]) -> bool {
        let mut v = Utf8Validator::default();
        let mut at = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        for c in cuts {
            if !v.feed(&data[at..c]) {
                return false;
            }
            at = c;
        }
        v.feed(&data[at..]) && v.finish()
    }

    #[test]
    fn autobahn_six_cases() {
        // Surrogates, overlongs, code points past U+10FFFF, lone continuations.
        for bad in [
            &[0xed, 0xa0, 0x80][..],
            &[0xc0, 0xaf],
            &[0xf4, 0x90, 0x80, 0x80],
            &[0x80],
            &[
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            ],
        ] {
            for cut in 0..=bad.len() {
                assert!(!pieces_valid(bad, &[cut]), "{bad:x?} cut at {cut}");
            }
        }
        let good = "κόσμε\u{10ffff}\u{fffd}".as_bytes();
        for cut in 0..=good.len() {
            for cut2 in cut..=good.len() {
                assert!(pieces_valid(good, &[cut, cut2]));
            }
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        let mut v = Utf8Validator::default();
        // 0xf4 0x90 can never start a valid code point: no need to wait.
        assert!(!v.feed(&[0xf4, 0x90]));
        let mut v = Utf8Validator::default();
        assert!(v.feed(&[0xf4]));
        assert!(!v.feed(&[0x90]));
    }

    proptest! {
        #[test]
        fn agrees_with_std(data in proptest::collection::vec(any::<u8>(), 0..40), cuts in proptest::collection::vec(any::<usize>(), 0..5)) {
            prop_assert_eq!(pieces_valid(&data, &cuts), std::str::from_utf8(&data).is_ok());
        }

        #[test]
        fn valid_text_in_pieces(s in "\\PC{0,20}", cuts in proptest::collection::vec(any::<usize>(), 0..5)) {
            prop_assert!(pieces_valid(s.as_bytes(), &cuts));
        }
    }
}
