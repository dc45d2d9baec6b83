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
    let f = if formulas == Formulas::Neutralize && f.starts_with(['=', '+', '-', '@']) {
        guarded = format!("'{f}");
        guarded.as_str()
    } else {
        f
    };
    let b = f.as_bytes();
    if needs_quotes(b) {
        out.push(b'"');
        let mut from = 0;
        for q in memchr::memchr_iter(b'"', b) {
            out.extend_from_slice(&b[from..=q]);
            out.push(b'"');
            from = q + 1;
        }
        out.extend_from_slice(&b[from..]);
        out.push(b'"');
    } else {
        out.extend_from_slice(b);
    }
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
