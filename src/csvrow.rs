//! One CSV row writer for every CSV eligo writes (change batches, reject reports, discrepancy
//! reports, run summaries): RFC 4180 quoting, CRLF line ends. Reports that people open in a
//! spreadsheet also neutralize cells that start like a formula.

/// Whether cells that start like a spreadsheet formula (`=`, `+`, `-`, `@`) are prefixed with
/// `'` so that spreadsheets show them as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formulas {
    Keep,
    Neutralize,
}

/// Appends one row: fields with a comma, quote or line break are quoted, quotes doubled.
pub fn write<T: AsRef<str>>(out: &mut Vec<u8>, fields: &[T], formulas: Formulas) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        field(out, f.as_ref(), formulas);
    }
    end(out);
}

/// Appends one field, quoted if it needs to be (no separator: the caller writes the commas
/// and [`end`]s the row).
pub fn field(out: &mut Vec<u8>, f: &str, formulas: Formulas) {
    let guarded;
    // The four are ASCII, so the first byte tells (a char pattern decoded the first char).
    let formula = matches!(f.as_bytes().first(), Some(b'=' | b'+' | b'-' | b'@'));
    let f = if formulas == Formulas::Neutralize && formula {
        guarded = format!("'{f}");
        guarded.as_str()
    } else {
        f
    };
    bytes(out, f.as_bytes());
}

/// [`field`] of bytes, without formula guard: quoted if it needs to be, quotes doubled.
pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    if needs_quotes(b) {
        quoted(out, b);
    } else {
        out.extend_from_slice(b);
    }
}

/// Appends `b` quoted, its quotes doubled. The JSON columns of a change row are most of the
/// CSV's bytes and have a quote every few bytes, so instead of a search and a copy per quote
/// this stores eight bytes at a time into room made once, and per quote in them one more
/// quote and one more store of the rest of the eight. Kept out of line: inlined, its
/// registers made every call of [`bytes`] save and restore them, quoted or not (most cells
/// of a row are not).
#[inline(never)]
fn quoted(out: &mut Vec<u8>, b: &[u8]) {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    let start = out.len();
    // Every byte doubled, the two quotes around, and slack for a whole word stored at the end.
    out.resize(start + 2 * b.len() + 10, 0);
    let dst = &mut out[start..];
    dst[0] = b'"';
    // Bytes are written at `j`; before each eight of them `j <= 1 + 2 * read`, so a store of
    // eight stays within the room made.
    let mut j = 1;
    let mut words = b.chunks_exact(8);
    for c in &mut words {
        let mut w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let x = w ^ QUOTES;
        // The high bit of every byte of `x` that is zero (every quote of `w`); exact, no
        // carry crosses a byte.
        let mut quotes = !(((x & LOW7) + LOW7) | x | LOW7);
        // Bytes of `w` not yet accounted for.
        let mut left = 8;
        loop {
            dst[j..j + 8].copy_from_slice(&w.to_le_bytes());
            if quotes == 0 {
                j += left;
                break;
            }
            // Up to and with the first quote left: written; the quote once more after it.
            let n = (quotes.trailing_zeros() / 8) as usize + 1;
            dst[j + n] = b'"';
            j += n + 1;
            left -= n;
            if left == 0 {
                break;
            }
            // n < 8 here.
            w >>= 8 * n;
            quotes >>= 8 * n;
        }
    }
    for &c in words.remainder() {
        // A quote written after each byte, kept only when the byte was a quote.
        dst[j..j + 2].copy_from_slice(&[c, b'"']);
        j += 1 + usize::from(c == b'"');
    }
    // `dst[j]` is the closing quote.
    dst[j] = b'"';
    out.truncate(start + j + 1);
}

/// Whether a field holds a comma, quote or line break. Long fields (messages, JSON columns)
/// are searched with memchr; a loop is cheaper for the short ones, most of a row.
fn needs_quotes(b: &[u8]) -> bool {
    if b.len() >= 32 {
        memchr::memchr3(b',', b'"', b'\n', b).is_some() || memchr::memchr(b'\r', b).is_some()
    } else {
        b.iter().any(|&c| matches!(c, b',' | b'"' | b'\n' | b'\r'))
    }
}

/// Ends a row.
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_needs_quoting_and_guards_formulas_on_request() {
        let mut out = Vec::new();
        write(
            &mut out,
            &["a", "b,c", "say \"hi\"", "=1+1"],
            Formulas::Keep,
        );
        write(&mut out, &["=1+1", "-2"], Formulas::Neutralize);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,\"b,c\",\"say \"\"hi\"\"\",=1+1\r\n'=1+1,'-2\r\n"
        );
    }

    #[test]
    fn quoting_is_the_plain_doubling_for_every_mix_of_quotes() {
        // Every string of up to 19 bytes over a quote, a letter and a comma (a quote at every
        // place of the eight-byte words and the tail), in a pseudo-random sample past 10.
        let alphabet = [b'"', b'a', b','];
        let mut seed = 1u64;
        for len in 0..20usize {
            let count = if len <= 10 {
                3usize.pow(len as u32)
            } else {
                20_000
            };
            for k in 0..count {
                let mut v = Vec::with_capacity(len);
                let mut n = if len <= 10 {
                    k
                } else {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 20) as usize
                };
                for _ in 0..len {
                    v.push(alphabet[n % 3]);
                    n /= 3;
                    if len > 10 && n == 0 {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        n = (seed >> 20) as usize;
                    }
                }
                let mut want = b"x\"".to_vec();
                for &c in &v {
                    want.push(c);
                    if c == b'"' {
                        want.push(b'"');
                    }
                }
                want.push(b'"');
                let mut got = b"x".to_vec();
                quoted(&mut got, &v);
                assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&v));
            }
        }
    }

    #[test]
    fn field_doubles_every_quote_wherever_it_is() {
        for (f, want) in [
            ("\"", "\"\"\"\""),
            ("\"\"", "\"\"\"\"\"\""),
            ("a\"", "\"a\"\"\""),
            ("\"a", "\"\"\"a\""),
            ("{\"k\":\"v\"}", "\"{\"\"k\"\":\"\"v\"\"}\""),
            ("a\rb", "\"a\rb\""),
            ("plain", "plain"),
            ("", ""),
            // Fields of 32 bytes or more are searched another way: the same answers.
            (
                "a long message without anything to quote in it",
                "a long message without anything to quote in it",
            ),
            (
                "a long message that ends in a carriage return\r",
                "\"a long message that ends in a carriage return\r\"",
            ),
            (
                "a long message, with a comma in the middle of it",
                "\"a long message, with a comma in the middle of it\"",
            ),
        ] {
            let mut out = Vec::new();
            field(&mut out, f, Formulas::Keep);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{f:?}");
        }
    }
}
