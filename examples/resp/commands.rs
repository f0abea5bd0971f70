//! Command dispatch: the Redis commands this server knows, against the
//! keyspace, with replies written straight into the connection's output.

use std::collections::{HashMap, HashSet, VecDeque};

use tether::codec::resp::{Args, RespWrite, parse_i64};

use crate::keyspace::{Keyspace, Value};

const WRONGTYPE: &[u8] = b"WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INTEGER: &[u8] = b"ERR value is not an integer or out of range";
const SYNTAX: &[u8] = b"ERR syntax error";

/// A command's arguments with the first few at hand (no allocation).
pub struct Argv<'a> {
    head: [&'a [u8]; 8],
    len: usize,
    all: Args<'a>,
}

impl<'a> Argv<'a> {
    pub fn new(args: Args<'a>) -> Self {
        let mut head: [&[u8]; 8] = [&[]; 8];
        let mut len = 0;
        for arg in args.clone() {
            if len < head.len() {
                head[len] = arg;
            }
            len += 1;
        }
        Argv {
            head,
            len,
            all: args,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, i: usize) -> &'a [u8] {
        match self.head.get(i) {
            Some(arg) if i < self.len => arg,
            _ => self.all.clone().nth(i).unwrap_or(&[]),
        }
    }

    /// Arguments from the `from`th on.
    pub fn from(&self, from: usize) -> impl Iterator<Item = &'a [u8]> + Clone {
        self.all.clone().skip(from)
    }

    pub fn is(&self, i: usize, name: &str) -> bool {
        self.get(i).eq_ignore_ascii_case(name.as_bytes())
    }
}

/// What the connection does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Quit,
}

/// Writes `ERR wrong number of arguments for '<cmd>' command`.
pub fn arity_error(out: &mut impl RespWrite, name: &[u8]) {
    out.put(b"-ERR wrong number of arguments for '");
    put_lower(out, name);
    out.put(b"' command\r\n");
}

fn put_lower(out: &mut impl RespWrite, name: &[u8]) {
    for chunk in name.chunks(32) {
        let mut lower = [0u8; 32];
        for (d, s) in lower.iter_mut().zip(chunk) {
            *d = s.to_ascii_lowercase();
        }
        out.put(&lower[..chunk.len()]);
    }
}

/// Writes Redis's reply to an unknown command.
pub fn unknown_command(out: &mut impl RespWrite, argv: &Argv<'_>) {
    out.put(b"-ERR unknown command '");
    put_sanitized(out, argv.get(0));
    out.put(b"', with args beginning with: ");
    for arg in argv.from(1).take(8) {
        out.put(b"'");
        put_sanitized(out, arg);
        out.put(b"' ");
    }
    out.put(b"\r\n");
}

/// A peer's bytes inside an error line: at most 128, CR and LF replaced.
fn put_sanitized(out: &mut impl RespWrite, text: &[u8]) {
    for chunk in text[..text.len().min(128)].chunks(32) {
        let mut clean = [0u8; 32];
        for (d, s) in clean.iter_mut().zip(chunk) {
            *d = if matches!(s, b'\r' | b'\n') { b' ' } else { *s };
        }
        out.put(&clean[..chunk.len()]);
    }
}

fn parse_u64(text: &[u8]) -> Option<u64> {
    parse_i64(text).and_then(|n| u64::try_from(n).ok())
}

/// Runs one keyspace command. Pub/sub and connection commands are handled by
/// the caller, which knows the connection.
pub fn execute(db: &mut Keyspace, out: &mut impl RespWrite, argv: &Argv<'_>, now: u64) -> Outcome {
    let name = argv.get(0);
    let n = argv.len();
    // (command, minimum arguments including the name, exact?)
    let arity = |min: usize, exact: bool| if exact { n == min } else { n >= min };
    macro_rules! need {
        ($min:expr, $exact:expr) => {
            if !arity($min, $exact) {
                arity_error(out, name);
                return Outcome::Continue;
            }
        };
    }
    let is = |cmd: &str| name.eq_ignore_ascii_case(cmd.as_bytes());
    if is("GET") {
        need!(2, true);
        match db.get(argv.get(1), now).map(|e| &e.value) {
            Some(Value::Str(s)) => out.put_bulk(s),
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_null_bulk(),
        }
    } else if is("SET") {
        need!(3, false);
        set(db, out, argv, now);
    } else if is("PING") {
        match n {
            1 => out.put(b"+PONG\r\n"),
            2 => out.put_bulk(argv.get(1)),
            _ => arity_error(out, name),
        }
    } else if is("ECHO") {
        need!(2, true);
        out.put_bulk(argv.get(1));
    } else if is("DEL") {
        need!(2, false);
        let removed = argv.from(1).filter(|k| db.remove(k)).count();
        out.put_integer(removed as i64);
    } else if is("EXISTS") {
        need!(2, false);
        let found = argv.from(1).filter(|k| db.get(k, now).is_some()).count();
        out.put_integer(found as i64);
    } else if is("INCR") || is("DECR") {
        need!(2, true);
        incr_by(db, out, argv.get(1), if is("INCR") { 1 } else { -1 }, now);
    } else if is("INCRBY") || is("DECRBY") {
        need!(3, true);
        match parse_i64(argv.get(2)) {
            Some(by) if is("INCRBY") => incr_by(db, out, argv.get(1), by, now),
            Some(by) if by != i64::MIN => incr_by(db, out, argv.get(1), -by, now),
            _ => out.put_error(NOT_INTEGER),
        }
    } else if is("EXPIRE") || is("PEXPIRE") {
        need!(3, true);
        let scale = if is("EXPIRE") { 1000 } else { 1 };
        match parse_i64(argv.get(2)).and_then(|t| t.checked_mul(scale)) {
            Some(ms) => {
                let at = now.saturating_add_signed(ms);
                out.put_integer(i64::from(db.expire_at(argv.get(1), at, now)));
            }
            None => out.put_error(NOT_INTEGER),
        }
    } else if is("TTL") || is("PTTL") {
        need!(2, true);
        let ms = db.pttl(argv.get(1), now);
        out.put_integer(if ms < 0 || is("PTTL") {
            ms
        } else {
            (ms + 500) / 1000
        });
    } else if is("MSET") {
        if n < 3 || n % 2 == 0 {
            arity_error(out, name);
            return Outcome::Continue;
        }
        let mut pairs = argv.from(1);
        while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
            db.set_str(k, v, now);
        }
        out.put(b"+OK\r\n");
    } else if is("MGET") {
        need!(2, false);
        out.put_array(n - 1);
        for key in argv.from(1) {
            match db.get(key, now).map(|e| &e.value) {
                Some(Value::Str(s)) => out.put_bulk(s),
                _ => out.put_null_bulk(),
            }
        }
    } else if is("LPUSH") || is("RPUSH") {
        need!(3, false);
        let front = is("LPUSH");
        let entry = db.get_or_insert(argv.get(1), now, || Value::List(VecDeque::new()));
        let Value::List(list) = &mut entry.value else {
            out.put_error(WRONGTYPE);
            return Outcome::Continue;
        };
        for v in argv.from(2) {
            if front {
                list.push_front(v.to_vec());
            } else {
                list.push_back(v.to_vec());
            }
        }
        out.put_integer(list.len() as i64);
    } else if is("LPOP") || is("RPOP") {
        need!(2, true);
        let front = is("LPOP");
        match db.get(argv.get(1), now).map(|e| &mut e.value) {
            Some(Value::List(list)) => {
                match if front {
                    list.pop_front()
                } else {
                    list.pop_back()
                } {
                    Some(v) => out.put_bulk(&v),
                    None => out.put_null_bulk(),
                }
                db.drop_if_empty(argv.get(1));
            }
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_null_bulk(),
        }
    } else if is("LLEN") {
        need!(2, true);
        match db.get(argv.get(1), now).map(|e| &e.value) {
            Some(Value::List(list)) => out.put_integer(list.len() as i64),
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_integer(0),
        }
    } else if is("LRANGE") {
        need!(4, true);
        let (Some(start), Some(stop)) = (parse_i64(argv.get(2)), parse_i64(argv.get(3))) else {
            out.put_error(NOT_INTEGER);
            return Outcome::Continue;
        };
        match db.get(argv.get(1), now).map(|e| &e.value) {
            Some(Value::List(list)) => {
                let len = list.len() as i64;
                let norm = |i: i64| if i < 0 { (len + i).max(0) } else { i };
                let (start, stop) = (norm(start), norm(stop).min(len - 1));
                if start > stop {
                    out.put_array(0);
                } else {
                    out.put_array((stop - start + 1) as usize);
                    for v in list.range(start as usize..=stop as usize) {
                        out.put_bulk(v);
                    }
                }
            }
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_array(0),
        }
    } else if is("SADD") {
        need!(3, false);
        let entry = db.get_or_insert(argv.get(1), now, || Value::Set(HashSet::new()));
        let Value::Set(set) = &mut entry.value else {
            out.put_error(WRONGTYPE);
            return Outcome::Continue;
        };
        let added = argv
            .from(2)
            .filter(|m| !set.contains(*m) && set.insert(m.to_vec()))
            .count();
        out.put_integer(added as i64);
    } else if is("SREM") {
        need!(3, false);
        match db.get(argv.get(1), now).map(|e| &mut e.value) {
            Some(Value::Set(set)) => {
                let removed = argv.from(2).filter(|m| set.remove(*m)).count();
                out.put_integer(removed as i64);
                db.drop_if_empty(argv.get(1));
            }
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_integer(0),
        }
    } else if is("SMEMBERS") {
        need!(2, true);
        match db.get(argv.get(1), now).map(|e| &e.value) {
            Some(Value::Set(set)) => {
                out.put_array(set.len());
                set.iter().for_each(|m| out.put_bulk(m));
            }
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_array(0),
        }
    } else if is("SCARD") {
        need!(2, true);
        match db.get(argv.get(1), now).map(|e| &e.value) {
            Some(Value::Set(set)) => out.put_integer(set.len() as i64),
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_integer(0),
        }
    } else if is("SPOP") {
        need!(2, true);
        match db.get(argv.get(1), now).map(|e| &mut e.value) {
            Some(Value::Set(set)) => {
                // HashSet iteration order is randomized per process.
                let member = set.iter().next().cloned();
                match member {
                    Some(m) => {
                        set.remove(&m);
                        out.put_bulk(&m);
                    }
                    None => out.put_null_bulk(),
                }
                db.drop_if_empty(argv.get(1));
            }
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_null_bulk(),
        }
    } else if is("HSET") {
        if n < 4 || n % 2 != 0 {
            arity_error(out, name);
            return Outcome::Continue;
        }
        let entry = db.get_or_insert(argv.get(1), now, || Value::Hash(HashMap::new()));
        let Value::Hash(hash) = &mut entry.value else {
            out.put_error(WRONGTYPE);
            return Outcome::Continue;
        };
        let mut pairs = argv.from(2);
        let mut added = 0;
        while let (Some(f), Some(v)) = (pairs.next(), pairs.next()) {
            match hash.get_mut(f) {
                Some(old) => {
                    old.clear();
                    old.extend_from_slice(v);
                }
                None => {
                    hash.insert(f.to_vec(), v.to_vec());
                    added += 1;
                }
            }
        }
        out.put_integer(added);
    } else if is("HGET") {
        need!(3, true);
        match db.get(argv.get(1), now).map(|e| &e.value) {
            Some(Value::Hash(hash)) => match hash.get(argv.get(2)) {
                Some(v) => out.put_bulk(v),
                None => out.put_null_bulk(),
            },
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_null_bulk(),
        }
    } else if is("HDEL") {
        need!(3, false);
        match db.get(argv.get(1), now).map(|e| &mut e.value) {
            Some(Value::Hash(hash)) => {
                let removed = argv.from(2).filter(|f| hash.remove(*f).is_some()).count();
                out.put_integer(removed as i64);
                db.drop_if_empty(argv.get(1));
            }
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_integer(0),
        }
    } else if is("HGETALL") {
        need!(2, true);
        match db.get(argv.get(1), now).map(|e| &e.value) {
            Some(Value::Hash(hash)) => {
                out.put_array(hash.len() * 2);
                for (f, v) in hash {
                    out.put_bulk(f);
                    out.put_bulk(v);
                }
            }
            Some(_) => out.put_error(WRONGTYPE),
            None => out.put_array(0),
        }
    } else if is("CONFIG") {
        need!(2, false);
        if !argv.is(1, "GET") || n != 3 {
            out.put_error(b"ERR CONFIG supports only GET <parameter> here");
            return Outcome::Continue;
        }
        // Enough for redis-benchmark and redis-cli: persistence is off.
        let param = argv.get(2);
        if param.eq_ignore_ascii_case(b"save") {
            out.put_command(&[b"save", b""]);
        } else if param.eq_ignore_ascii_case(b"appendonly") {
            out.put_command(&[b"appendonly", b"no"]);
        } else {
            out.put_array(0);
        }
    } else if is("COMMAND") {
        // `COMMAND`, `COMMAND DOCS`, `COMMAND COUNT`: redis-cli asks at start
        // for hints; an empty answer means "no hints".
        if argv.is(1, "COUNT") {
            out.put_integer(0);
        } else {
            out.put_array(0);
        }
    } else if is("SELECT") {
        need!(2, true);
        if argv.get(1) == b"0" {
            out.put(b"+OK\r\n");
        } else {
            out.put_error(b"ERR DB index is out of range");
        }
    } else if is("FLUSHALL") || is("FLUSHDB") {
        db.clear(now);
        out.put(b"+OK\r\n");
    } else if is("DBSIZE") {
        need!(1, true);
        out.put_integer(db.len() as i64);
    } else if is("QUIT") {
        out.put(b"+OK\r\n");
        return Outcome::Quit;
    } else {
        unknown_command(out, argv);
    }
    Outcome::Continue
}

fn set(db: &mut Keyspace, out: &mut impl RespWrite, argv: &Argv<'_>, now: u64) {
    let (key, value) = (argv.get(1), argv.get(2));
    let mut ttl_ms: Option<u64> = None;
    let (mut nx, mut xx) = (false, false);
    let mut i = 3;
    while i < argv.len() {
        if argv.is(i, "NX") {
            nx = true;
        } else if argv.is(i, "XX") {
            xx = true;
        } else if (argv.is(i, "EX") || argv.is(i, "PX")) && i + 1 < argv.len() {
            let scale = if argv.is(i, "EX") { 1000 } else { 1 };
            match parse_u64(argv.get(i + 1)).and_then(|t| t.checked_mul(scale)) {
                Some(ms) if ms > 0 => ttl_ms = Some(ms),
                _ => {
                    out.put_error(b"ERR invalid expire time in 'set' command");
                    return;
                }
            }
            i += 1;
        } else {
            out.put_error(SYNTAX);
            return;
        }
        i += 1;
    }
    if nx && xx {
        out.put_error(SYNTAX);
        return;
    }
    let exists = db.get(key, now).is_some();
    if (nx && exists) || (xx && !exists) {
        out.put_null_bulk();
        return;
    }
    db.set_str(key, value, now);
    if let Some(ms) = ttl_ms {
        db.expire_at(key, now.saturating_add(ms), now);
    }
    out.put(b"+OK\r\n");
}

fn incr_by(db: &mut Keyspace, out: &mut impl RespWrite, key: &[u8], by: i64, now: u64) {
    let entry = db.get_or_insert(key, now, || Value::Str(b"0".to_vec()));
    let Value::Str(s) = &mut entry.value else {
        out.put_error(WRONGTYPE);
        return;
    };
    let Some(n) = parse_i64(s).and_then(|n| n.checked_add(by)) else {
        out.put_error(NOT_INTEGER);
        return;
    };
    // `:n\r\n` without its framing is the decimal text (no allocation: the
    // string keeps its capacity).
    s.clear();
    s.put_integer(n);
    s.truncate(s.len() - 2);
    s.remove(0);
    out.put_integer(n);
}
