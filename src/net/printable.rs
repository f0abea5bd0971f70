//! Untrusted text made safe to print in a log line or an error message.

/// The longest input, in characters, an error message repeats whole.
pub(crate) const MAX_SHOWN: usize = 128;

/// `s` whole, with control characters escaped (`\n`, `\u{1b}`, …).
pub(crate) fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    if c.is_control() {
        out.extend(c.escape_default());
    } else {
        out.push(c);
    }
}

/// `s` with control characters escaped (`\n`, `\u{1b}`, …) and cut after
/// [`MAX_SHOWN`] characters, saying how long the whole was.
pub(crate) fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_SHOWN + 32));
    for (i, c) in s.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push_str(&format!("… ({} bytes in all)", s.len()));
            break;
        }
        push_escaped(&mut out, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_cuts_long_input() {
        assert_eq!(printable("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(printable("/tmp/ok.sock"), "/tmp/ok.sock");
        let long = "x".repeat(10_000);
        let shown = printable(&long);
        assert!(shown.len() < MAX_SHOWN + 40, "{}", shown.len());
        assert!(shown.ends_with("(10000 bytes in all)"), "{shown}");
    }
}
