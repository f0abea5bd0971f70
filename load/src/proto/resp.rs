//! `resp`: Redis commands (RESP2 arrays of bulk strings), pipelined, and their
//! replies decoded in place by [`tether::codec::Resp`]. An error reply is
//! counted as refused; a reply that does not decode fails the run.
//!
//! The commands follow redis-benchmark: `ping` (`PING` as a bulk array), `set`
//! (`SET key:__rand_int__ <data>`), `get`, `incr` (`INCR counter:__rand_int__`),
//! `lpush` (`LPUSH mylist <data>`), or a `--command` template. In a template,
//! `__rand_int__` becomes a random 12-digit number below `--keyspace` (left as
//! is without a keyspace, as redis-benchmark does) and `__data__` the `--size`
//! payload of `x` bytes.

use std::fmt;

use tether::codec::Resp as RespDecoder;
use tether::codec::resp::{Decoded, Frame, RespWrite};

use super::{ProtoError, Protocol, Responses};
use crate::rng::Rng;

const RAND: &str = "__rand_int__";
const DATA: &str = "__data__";
const RAND_DIGITS: usize = 12;

/// The commands of `--resp-test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespTest {
    /// `PING`.
    Ping,
    /// `SET key:__rand_int__ <data>`.
    Set,
    /// `GET key:__rand_int__`.
    Get,
    /// `INCR counter:__rand_int__`.
    Incr,
    /// `LPUSH mylist <data>`.
    Lpush,
}

impl RespTest {
    /// Parses a `--resp-test` name.
    pub fn parse(name: &str) -> Option<RespTest> {
        Some(match name.to_ascii_lowercase().as_str() {
            "ping" => RespTest::Ping,
            "set" => RespTest::Set,
            "get" => RespTest::Get,
            "incr" => RespTest::Incr,
            "lpush" => RespTest::Lpush,
            _ => return None,
        })
    }

    /// The command as a template.
    pub fn template(self) -> &'static str {
        match self {
            RespTest::Ping => "PING",
            RespTest::Set => "SET key:__rand_int__ __data__",
            RespTest::Get => "GET key:__rand_int__",
            RespTest::Incr => "INCR counter:__rand_int__",
            RespTest::Lpush => "LPUSH mylist __data__",
        }
    }
}

impl fmt::Display for RespTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RespTest::Ping => "ping",
            RespTest::Set => "set",
            RespTest::Get => "get",
            RespTest::Incr => "incr",
            RespTest::Lpush => "lpush",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Vec<u8>),
    Rand,
    Data,
}

/// One command template, sent over and over.
#[derive(Debug, Clone)]
pub struct Resp {
    args: Vec<Vec<Part>>,
    data: Vec<u8>,
    keyspace: Option<u64>,
    decoder: RespDecoder,
}

impl Resp {
    /// The command `template` (words separated by spaces), with `size` bytes of
    /// data and keys below `keyspace`.
    pub fn new(template: &str, size: usize, keyspace: Option<u64>) -> Resp {
        let args = template
            .split_ascii_whitespace()
            .map(|word| parts(word, keyspace.is_some()))
            .collect();
        Resp {
            args,
            data: vec![b'x'; size],
            keyspace,
            decoder: RespDecoder::client(),
        }
    }
}

/// Splits a word into literal text and placeholders.
fn parts(word: &str, random: bool) -> Vec<Part> {
    let mut out = Vec::new();
    let mut rest = word;
    while !rest.is_empty() {
        let next = [(RAND, Part::Rand), (DATA, Part::Data)]
            .into_iter()
            .filter(|(_, part)| random || *part != Part::Rand)
            .filter_map(|(p, part)| rest.find(p).map(|at| (at, p.len(), part)))
            .min_by_key(|(at, _, _)| *at);
        match next {
            Some((at, len, part)) => {
                if at > 0 {
                    out.push(Part::Text(rest.as_bytes()[..at].to_vec()));
                }
                out.push(part);
                rest = &rest[at + len..];
            }
            None => {
                out.push(Part::Text(rest.as_bytes().to_vec()));
                rest = "";
            }
        }
    }
    out
}

impl Protocol for Resp {
    type Conn = ();

    fn request(&self, _conn: &mut (), _index: u32, rng: &mut Rng, out: &mut Vec<u8>) {
        // One random number per command, shared by its placeholders (a SET
        // then reads back its own key in a `SET k v; GET k` template).
        let mut digits = [b'0'; RAND_DIGITS];
        if let Some(n) = self.keyspace {
            let mut v = rng.below(n.max(1));
            for d in digits.iter_mut().rev() {
                *d = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        out.put_line(b'*', self.args.len() as i64);
        for arg in &self.args {
            let len: usize = arg
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.len(),
                    Part::Rand => RAND_DIGITS,
                    Part::Data => self.data.len(),
                })
                .sum();
            out.put_line(b'$', len as i64);
            for p in arg {
                out.extend_from_slice(match p {
                    Part::Text(t) => t,
                    Part::Rand => &digits,
                    Part::Data => &self.data,
                });
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    fn responses(
        &self,
        _conn: &mut (),
        _index: u32,
        input: &[u8],
        in_flight: u32,
    ) -> Result<Responses, ProtoError> {
        let mut r = Responses::default();
        while r.consumed < input.len() {
            let rest = &input[r.consumed..];
            match self.decoder.decode(rest) {
                Ok(Decoded::Frame(frame, used)) => {
                    if r.completed == in_flight {
                        return Err(ProtoError::Unexpected { bytes: rest.len() });
                    }
                    r.consumed += used;
                    r.completed += 1;
                    if matches!(frame, Frame::Error(_) | Frame::BulkError(_)) {
                        r.refused += 1;
                    }
                }
                Ok(Decoded::Incomplete { .. }) => break,
                Err(e) => return Err(ProtoError::Malformed(e.to_string())),
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(p: &Resp) -> Vec<u8> {
        let mut out = Vec::new();
        p.request(&mut (), 0, &mut Rng::new(7), &mut out);
        out
    }

    #[test]
    fn commands_are_bulk_arrays() {
        assert_eq!(
            one(&Resp::new("PING", 3, None)),
            b"*1\r\n$4\r\nPING\r\n".to_vec()
        );
        assert_eq!(
            one(&Resp::new(RespTest::Set.template(), 3, None)),
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n".to_vec()
        );
        let keyed = one(&Resp::new(RespTest::Get.template(), 3, Some(1000)));
        let text = String::from_utf8(keyed).unwrap();
        assert!(
            text.starts_with("*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000"),
            "{text}"
        );
    }

    #[test]
    fn replies_are_counted_and_errors_refused() {
        let p = Resp::new("GET k", 3, None);
        let wire = b"$3\r\nabc\r\n-ERR no\r\n$-1\r\n:5\r\n+OK\r\n$5\r\nab";
        let r = p.responses(&mut (), 0, wire, 10).unwrap();
        assert_eq!((r.completed, r.refused), (5, 1));
        assert_eq!(&wire[r.consumed..], b"$5\r\nab");
        assert!(matches!(
            p.responses(&mut (), 0, b"+OK\r\n+OK\r\n", 1),
            Err(ProtoError::Unexpected { .. })
        ));
        assert!(p.responses(&mut (), 0, b"?what\r\n", 1).is_err());
    }
}
