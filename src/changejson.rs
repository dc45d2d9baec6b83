//! The JSON of a change record, written by hand into a byte buffer: the very bytes
//! `serde_json::to_writer` writes for the derived `Serialize` impls (same field order, same
//! `null`s, same omitted fields, same string escapes), about three times faster.
//!
//! Converting writes one record per change, so this is the innermost loop of `eligo convert`;
//! serde's derived code goes through a generic serializer state machine and `io::Write` calls
//! per token, and escapes strings one byte at a time. The `Serialize` derives stay the
//! definition (`schemas/change-record.v1.json` describes them, and reading records back uses
//! them): every field here follows its derive, `ChangeRecord::write_json` checks the result
//! against serde_json in debug builds (so every test that converts checks it), and the tests
//! of [`crate::changes`] compare both on records that fill every field.
//!
//! This module only formats values; [`crate::changes`] owns the record and its id.

use crate::changes::{ChangeKind, PortalLayout, SourceTrace, SourceView};
use crate::enrollment::*;
use crate::lifecycle::TransactionStatus;
use chrono::NaiveDate;

/// A value with a JSON form.
pub trait Json {
    fn json(&self, out: &mut Vec<u8>);
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it: `"` and `\`, the short forms
/// `\b \t \n \f \r`, other control characters as `\u00xx`; nothing else (not `/`, not DEL, not
/// non-ASCII).
pub fn string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    // Almost every value needs no escape: one pass to find out, then one copy.
    if needs_escape(b) {
        return escaped(out, b);
    }
    // No `reserve` first: the three appends check the capacity anyway, and the buffer is
    // one written into record after record (it seldom has to grow).
    out.push(b'"');
    out.extend_from_slice(b);
    out.push(b'"');
}

/// [`string`] for a value that needs an escape. Apart, and cold: a few values in a file need
/// it, and in one function with the plain copy its frame was set up for every value (five
/// instructions of the hundred a value cost, in callgrind).
#[cold]
#[inline(never)]
fn escaped(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'"');
    let mut from = 0;
    for (i, &c) in b.iter().enumerate() {
        let short = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&b[from..i]);
        from = i + 1;
        if short == 0 {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 15) as usize]);
        } else {
            out.push(b'\\');
            out.push(short);
        }
    }
    out.extend_from_slice(&b[from..]);
    out.push(b'"');
}

/// Appends `s`, which the caller knows needs no escape (a constant of eligo's own), as a JSON
/// string: [`string`] without its scan.
#[inline]
pub fn plain_string(out: &mut Vec<u8>, s: &str) {
    debug_assert!(!needs_escape(s.as_bytes()), "{s:?}");
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// True when `b` holds a byte [`string`] escapes (a control character, `"` or `\\`). Eight
/// bytes at a time: this runs over every value of every record.
#[inline]
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of a byte is set in `(x - n) & !x` when some byte of `x` is below `n` (`n`
    // at most 0x80; bytes from 0x80 up never count): control characters directly, `"` and
    // `\` as the zero bytes of `x` xor-ed with them.
    let bad = |x: u64| {
        let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x;
        let (q, s) = (x ^ (ONES * b'"' as u64), x ^ (ONES * b'\\' as u64));
        (below(x, 0x20) | below(q, 1) | below(s, 1)) & HIGH != 0
    };
    let word = |c: &[u8]| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    if b.len() < 8 {
        // Most values are short (codes, ids, dates): one word too, made of the first and the
        // last four bytes (overlapping, all of them bytes of `b`).
        if b.len() < 4 {
            return b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        }
        let half = |c: &[u8]| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        return bad(half(b) | half(&b[b.len() - 4..]) << 32);
    }
    let mut chunks = b.chunks_exact(8);
    if chunks.any(|c| bad(word(c))) {
        return true;
    }
    // The last eight bytes, some of them seen already.
    bad(word(&b[b.len() - 8..]))
}

/// The two decimal digits of 0 to 99, for `uint` and `date`.
const PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Appends an unsigned integer in decimal. Two digits a division (from a table of the pairs),
/// as itoa does: the segment numbers of every record are five or six digits, and a digit at a
/// time was 120 instructions a number.
pub fn uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n >= 100 {
        let r = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[r..r + 2]);
    }
    if n >= 10 {
        let r = n as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[r..r + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a date as chrono's `Serialize` writes it (its `Debug` form: `YYYY-MM-DD`, with a
/// sign and more digits outside years 0 to 9999), without the quotes.
pub fn date(out: &mut Vec<u8>, d: &NaiveDate) {
    use chrono::Datelike;
    use std::cell::Cell;
    // The last date written and its text (per thread): a record's dates are mostly one, and
    // the records around it have the same; chrono works out the month and day from the day of
    // the year each time they are asked for.
    thread_local! {
        static LAST: Cell<Option<(NaiveDate, [u8; 10])>> = const { Cell::new(None) };
    }
    if let Some((last, text)) = LAST.get() {
        if last == *d {
            out.extend_from_slice(&text);
            return;
        }
    }
    let y = d.year();
    if (0..=9999).contains(&y) {
        let (y, m, day) = (y as u32, d.month(), d.day());
        // Digit pairs from the table, as `uint`: four lookups instead of eight divisions.
        let pair = |n: u32| {
            let i = n as usize * 2;
            [PAIRS[i], PAIRS[i + 1]]
        };
        let ([c0, c1], [y0, y1]) = (pair(y / 100), pair(y % 100));
        let ([m0, m1], [d0, d1]) = (pair(m), pair(day));
        let text = [c0, c1, y0, y1, b'-', m0, m1, b'-', d0, d1];
        out.extend_from_slice(&text);
        LAST.set(Some((*d, text)));
    } else {
        use std::io::Write;
        let _ = write!(out, "{d:?}");
    }
}

impl Json for str {
    fn json(&self, out: &mut Vec<u8>) {
        string(out, self)
    }
}

impl Json for String {
    fn json(&self, out: &mut Vec<u8>) {
        string(out, self)
    }
}

impl Json for NaiveDate {
    fn json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        date(out, self);
        out.push(b'"');
    }
}

impl Json for bool {
    fn json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl Json for u8 {
    fn json(&self, out: &mut Vec<u8>) {
        uint(out, u64::from(*self))
    }
}

impl Json for u32 {
    fn json(&self, out: &mut Vec<u8>) {
        uint(out, u64::from(*self))
    }
}

impl Json for u64 {
    fn json(&self, out: &mut Vec<u8>) {
        uint(out, *self)
    }
}

/// `null` for `None` (fields without `skip_serializing_if`).
impl<T: Json> Json for Option<T> {
    fn json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

/// A borrowed value has the JSON of the value (serde serializes through references too).
impl<T: Json + ?Sized> Json for &T {
    #[inline]
    fn json(&self, out: &mut Vec<u8>) {
        (**self).json(out)
    }
}

impl<T: Json> Json for Vec<T> {
    fn json(&self, out: &mut Vec<u8>) {
        self.as_slice().json(out)
    }
}

impl<T: Json> Json for [T] {
    fn json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.json(out);
        }
        out.push(b']');
    }
}

/// Appends a code list's label as a JSON string, without the escape test: labels are
/// constants of this crate made of lower-case letters, digits and `_`
/// (`labels_need_no_escape` checks every one), and a record holds a dozen of them.
#[inline]
fn label(out: &mut Vec<u8>, s: &'static str) {
    debug_assert!(!needs_escape(s.as_bytes()), "{s:?}");
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Code lists serialize as their label, copied with its quotes (`json_label`; checked against
/// the label in `labels_need_no_escape`).
macro_rules! labels {
    ($($t:ty),+) => {$(
        impl Json for $t {
            fn json(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(self.json_label().as_bytes())
            }
        }
    )+};
}

/// Every code list, handed to the macro `$m` (the writer's and the test's): the model's and
/// the change's kind.
macro_rules! code_lists {
    ($m:ident) => {
        crate::enrollment::code_enums!($m, ChangeKind);
    };
}

code_lists!(labels);

impl Json for TransactionStatus {
    fn json(&self, out: &mut Vec<u8>) {
        label(out, self.as_str())
    }
}

impl Json for PortalLayout {
    fn json(&self, out: &mut Vec<u8>) {
        label(
            out,
            match self {
                PortalLayout::Transactions => "transactions",
                PortalLayout::Roster => "roster",
            },
        )
    }
}

/// A key as [`Object`] writes it: `,"name":`, comma and all (cut before the first key), so
/// that a key costs one copy of a constant instead of four pushes. Keys are plain ASCII
/// identifiers: no escaping.
macro_rules! json_key {
    ($k:literal) => {
        concat!(",\"", $k, "\":")
    };
}
pub(crate) use json_key;

/// An object being written: `{`, then `"key":value` pairs separated by commas, then `}`.
pub struct Object<'a> {
    pub out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    pub fn begin(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, first: true }
    }

    /// Writes a key made by [`json_key`] (`,"key":`), without its comma if it is the first.
    #[inline]
    pub fn key(&mut self, key: &'static str) {
        let k = key.as_bytes();
        let k = if self.first {
            k.get(1..).unwrap_or_default()
        } else {
            k
        };
        self.out.extend_from_slice(k);
        self.first = false;
    }

    /// A field that is always written.
    #[inline]
    pub fn field<T: Json + ?Sized>(&mut self, key: &'static str, v: &T) {
        self.key(key);
        v.json(self.out);
    }

    /// A field with `skip_serializing_if = "Option::is_none"`.
    #[inline]
    pub fn some<T: Json>(&mut self, key: &'static str, v: &Option<T>) {
        if let Some(v) = v {
            self.field(key, v);
        }
    }

    /// A field with `skip_serializing_if = "Vec::is_empty"`.
    #[inline]
    pub fn items<T: Json>(&mut self, key: &'static str, v: &[T]) {
        if !v.is_empty() {
            self.field(key, v);
        }
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

impl Json for PersonName {
    fn json(&self, out: &mut Vec<u8>) {
        NameView::from(self).json(out)
    }
}

impl Json for NameView<'_> {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.field(json_key!("last"), self.last);
        o.some(json_key!("first"), &self.first);
        o.some(json_key!("middle"), &self.middle);
        o.some(json_key!("prefix"), &self.prefix);
        o.some(json_key!("suffix"), &self.suffix);
        o.end();
    }
}

impl Json for Demographics {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.some(json_key!("birth_date"), &self.birth_date);
        o.some(json_key!("gender"), &self.gender);
        o.some(json_key!("marital_status"), &self.marital_status);
        o.end();
    }
}

impl Json for Address {
    fn json(&self, out: &mut Vec<u8>) {
        AddressView::from(self).json(out)
    }
}

impl Json for AddressView<'_> {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.field(json_key!("line1"), self.line1);
        o.some(json_key!("line2"), &self.line2);
        o.field(json_key!("city"), self.city);
        o.some(json_key!("state"), &self.state);
        o.some(json_key!("postal_code"), &self.postal_code);
        o.some(json_key!("country"), &self.country);
        o.end();
    }
}

impl Json for Contact {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.field(json_key!("kind"), &self.kind);
        o.field(json_key!("value"), &self.value);
        o.end();
    }
}

impl Json for Disability {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.some(json_key!("kind"), &self.kind);
        o.some(json_key!("start"), &self.start);
        o.some(json_key!("end"), &self.end);
        o.end();
    }
}

impl Json for Provider {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.field(json_key!("name"), &self.name);
        o.some(json_key!("npi"), &self.npi);
        o.some(json_key!("provider_id"), &self.provider_id);
        o.some(json_key!("change_reason"), &self.change_reason);
        o.end();
    }
}

impl Json for IdCard {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.field(json_key!("card_type"), &self.card_type);
        o.some(json_key!("plan"), &self.plan);
        o.some(json_key!("count"), &self.count);
        o.some(json_key!("action"), &self.action);
        o.end();
    }
}

impl Json for Coverage {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.field(json_key!("insurance_line"), &self.insurance_line);
        o.some(json_key!("plan"), &self.plan);
        o.some(json_key!("coverage_level"), &self.coverage_level);
        o.some(json_key!("begin"), &self.begin);
        o.some(json_key!("end"), &self.end);
        o.some(json_key!("pcp"), &self.pcp);
        o.items(json_key!("id_cards"), &self.id_cards);
        o.end();
    }
}

impl Json for MemberData {
    fn json(&self, out: &mut Vec<u8>) {
        DataView::from(self).json(out)
    }
}

impl Json for DataView<'_> {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.some(json_key!("name"), &self.name);
        o.some(json_key!("ssn"), &self.ssn);
        o.some(json_key!("demographics"), &self.demographics);
        o.some(json_key!("residence"), &self.residence);
        o.some(json_key!("mailing"), &self.mailing);
        o.items(json_key!("contacts"), self.contacts);
        o.some(json_key!("employment_status"), &self.employment_status);
        o.some(json_key!("student_status"), &self.student_status);
        o.some(json_key!("handicapped"), &self.handicapped);
        o.items(json_key!("disabilities"), self.disabilities);
        o.items(json_key!("coverages"), self.coverages);
        o.some(json_key!("division"), &self.division);
        o.end();
    }
}

/// Internally tagged (`"type"` first), snake_case variant names.
impl Json for SourceTrace {
    fn json(&self, out: &mut Vec<u8>) {
        SourceView::from(self).json(out)
    }
}

/// The start of an X12 trace's JSON, up to the `first_segment` value: the same for every
/// record of a set. Encoded once per thread for the last set seen, and copied while the
/// values are the same (compared as values: the cache holds its own copies).
fn x12_trace_start(out: &mut Vec<u8>, values: [&str; 4]) {
    thread_local! {
        static LAST: std::cell::RefCell<([String; 4], Vec<u8>)> = Default::default();
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        let (seen, json) = &mut *last;
        if json.is_empty() || *seen != values {
            json.clear();
            for ((key, value), held) in [
                &br#""type":"x12","file":"#[..],
                br#","isa13":"#,
                br#","gs06":"#,
                br#","st02":"#,
            ]
            .into_iter()
            .zip(values)
            .zip(seen.iter_mut())
            {
                json.extend_from_slice(key);
                string(json, value);
                held.clear();
                held.push_str(value);
            }
            json.extend_from_slice(br#","first_segment":"#);
        }
        out.extend_from_slice(json);
    })
}

impl Json for SourceView<'_> {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        match *self {
            SourceView::X12 {
                file,
                isa13,
                gs06,
                st02,
                first_segment,
                last_segment,
            } => {
                let out = &mut *o.out;
                x12_trace_start(out, [file, isa13, gs06, st02]);
                uint(out, u64::from(first_segment));
                out.extend_from_slice(br#","last_segment":"#);
                uint(out, u64::from(last_segment));
            }
            SourceView::Portal {
                file,
                layout,
                first_row,
                last_row,
                transaction_id,
                status,
            } => {
                o.field(json_key!("type"), "portal");
                o.field(json_key!("file"), file);
                o.field(json_key!("layout"), &layout);
                o.field(json_key!("first_row"), &first_row);
                o.field(json_key!("last_row"), &last_row);
                o.some(json_key!("transaction_id"), &transaction_id);
                o.some(json_key!("status"), &status);
            }
        }
        o.end();
    }
}

/// Reads back a record as eligo's own writer wrote it (the JSON above, one line of a spool),
/// or `None` for anything else: then [`crate::changes::ChangeRecord::from_json`] reads it with
/// serde_json, which stays the definition.
///
/// `eligo run` reads every change it spooled back once; serde_json's derived readers go
/// through a generic state machine per token, look each key up by name and scan each string
/// for escapes byte by byte. Here the fields are expected in the writer's order (`null` taken
/// for an absent `Option`, as the derive takes it), strings without any escape, labels exactly
/// as written, dates as `YYYY-MM-DD`, integers in plain digits, no white space. Anything else
/// (another order, an unknown key, an escape, a label to normalize, a portal trace, an error)
/// is left to serde_json, so what this accepts it reads as serde_json reads it and nothing
/// depends on it being complete.
pub fn read_record(line: &[u8]) -> Option<crate::changes::ChangeRecord> {
    // The line's UTF-8 checked once (serde_json checks each string; invalid UTF-8 outside a
    // string is no JSON either): one pass, where a check per string cost a call per value.
    let text = std::str::from_utf8(line).ok()?;
    let mut record = blank_record();
    read_record_into(text, &mut record).map(|_| record)
}

/// [`read_record`] into `record`, a record read before: its strings (and its vectors' values)
/// take the line's values in place, so the memory they hold is used again. Every field is
/// set, as [`read_record`] sets it. Gives where the line's parts are, as
/// [`crate::changes::ChangeRecord::write_json`] gives them for the record it writes; `None`
/// when the line is left to serde_json, and `record` then holds a mix of both lines, to be
/// replaced.
///
/// Why in place: `eligo run` reads back every change it spooled, and a new record cost an
/// allocation for each of its two dozen strings, and a free of each when it was dropped after
/// the store had it; the run reads each chunk into the records of a chunk already recorded
/// (docs/performance.md, runperf10). Why the spans: the run splices the rules' verdict into
/// the line, and searched the line for its parts again to do so (runperf21).
pub fn read_record_into(
    line: &str,
    record: &mut crate::changes::ChangeRecord,
) -> Option<crate::changes::JsonSpans> {
    let r = &mut Reader {
        text: line,
        b: line.as_bytes(),
        i: 0,
    };
    let spans = r.record_in(record)?;
    (r.i == line.len()).then_some(spans)
}

/// Where the JSON string whose content starts `b` ends: the index of its closing `"`, or `None`
/// when a byte [`string`] escapes (`\\`, a control character) comes before it, or none does.
///
/// Why: the reader found the quote (`memchr`) and then checked the content for such bytes
/// ([`needs_escape`]): two calls and two passes over each of the ≈700 thousand values of a
/// 10 MB run's spool, most of them a dozen bytes. This is one pass, eight bytes at a time, as
/// [`needs_escape`] tests them (docs/performance.md, runperf7).
#[inline]
fn string_end(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // As in `needs_escape`: the high bit of each byte below 0x20, `"` or `\`. A byte flagged
    // may set a borrow that flags a byte after it wrongly, never one before it: the first
    // byte flagged (the lowest, the words being read little-endian) is one of them.
    let flags = |x: u64| {
        let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x;
        let (q, s) = (x ^ (ONES * b'"' as u64), x ^ (ONES * b'\\' as u64));
        (below(x, 0x20) | below(q, 1) | below(s, 1)) & HIGH
    };
    let mut i = 0;
    while let Some(c) = b.get(i..i + 8) {
        let m = flags(u64::from_le_bytes([
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
        ]));
        if m != 0 {
            let at = i + (m.trailing_zeros() / 8) as usize;
            return (b[at] == b'"').then_some(at);
        }
        i += 8;
    }
    for (at, &c) in b.iter().enumerate().skip(i) {
        if c == b'"' {
            return Some(at);
        }
        if c < 0x20 || c == b'\\' {
            return None;
        }
    }
    None
}

/// A cursor over a line being read by [`read_record`]; every method gives `None` (and the
/// line goes to serde_json) as soon as the bytes are not what the writer writes.
struct Reader<'a> {
    /// The line, valid UTF-8, and its bytes.
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

/// One object's fields in turn: `first` until a field has been read (no comma before it).
struct Fields {
    first: bool,
}

impl<'a> Reader<'a> {
    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    #[inline(always)]
    fn literal(&mut self, s: &[u8]) -> bool {
        let hit = self.b[self.i..].starts_with(s);
        if hit {
            self.i += s.len();
        }
        hit
    }

    /// `{`, then the object's fields.
    #[inline]
    fn begin(&mut self) -> Option<Fields> {
        self.eat(b'{')?;
        Some(Fields { first: true })
    }

    /// Whether `"name":` (after a comma unless it is the first field) comes next; if so it is
    /// read.
    ///
    /// Why always inlined, with the methods that pass a key name on (`need`, `opt_field`,
    /// `opt_key`) and `literal`: inlined where the name is a constant, its compare is a few
    /// loads; `need` and the optional fields' readers were left as calls, and each compare was
    /// a call to `memcmp`, about a ninth of reading a spool back (docs/performance.md,
    /// runperf21).
    #[inline(always)]
    fn key(&mut self, f: &mut Fields, name: &str) -> bool {
        let rest = &self.b[self.i..];
        let comma = usize::from(!f.first);
        if !f.first && rest.first() != Some(&b',') {
            return false;
        }
        let rest = &rest[comma..];
        let n = name.len();
        let hit = rest.len() > n + 2
            && rest[0] == b'"'
            && &rest[1..=n] == name.as_bytes()
            && rest[n + 1] == b'"'
            && rest[n + 2] == b':';
        if hit {
            self.i += comma + n + 3;
            f.first = false;
        }
        hit
    }

    /// A field that must come next.
    #[inline(always)]
    fn need(&mut self, f: &mut Fields, name: &str) -> Option<()> {
        self.key(f, name).then_some(())
    }

    /// A string without escapes, borrowed.
    #[inline]
    fn str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        // A backslash (an escape, perhaps of a quote found too early) or a raw control
        // character (serde_json's error) before the closing quote: left to serde_json.
        let n = string_end(&self.b[start..])?;
        self.i += n + 1;
        // Between two quotes: on character boundaries.
        self.text.get(start..start + n)
    }

    /// A string without escapes, into `s`: its buffer is reused (records read back into the
    /// records of a chunk already recorded, [`read_record_into`]).
    #[inline]
    fn string_in(&mut self, s: &mut String) -> Option<()> {
        let v = self.str()?;
        s.clear();
        s.push_str(v);
        Some(())
    }

    /// `null` as `None`, else `read`'s value into `slot`, into the value it holds if any.
    #[inline]
    fn opt_in<T: Default>(
        &mut self,
        slot: &mut Option<T>,
        read: impl FnOnce(&mut Self, &mut T) -> Option<()>,
    ) -> Option<()> {
        if self.literal(b"null") {
            *slot = None;
            return Some(());
        }
        read(self, slot.get_or_insert_with(T::default))
    }

    /// An optional field read in place ([`Reader::opt_in`]): `None` when its key does not
    /// come next.
    #[inline(always)]
    fn opt_field<T: Default>(
        &mut self,
        f: &mut Fields,
        name: &str,
        slot: &mut Option<T>,
        read: impl FnOnce(&mut Self, &mut T) -> Option<()>,
    ) -> Option<()> {
        if self.key(f, name) {
            self.opt_in(slot, read)
        } else {
            *slot = None;
            Some(())
        }
    }

    /// An optional field's value (`None` when its key does not come next or it is `null`).
    #[inline(always)]
    fn opt_key<T>(
        &mut self,
        f: &mut Fields,
        name: &str,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        if self.key(f, name) {
            self.opt(read)
        } else {
            Some(None)
        }
    }

    /// `null` as `None`, else `read`'s value.
    #[inline]
    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.literal(b"null") {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// A label exactly as written.
    #[inline]
    fn label<T>(&mut self, from: fn(&str) -> Option<T>) -> Option<T> {
        from(self.str()?)
    }

    /// A date as `YYYY-MM-DD` with ten plain digits and a valid day.
    fn date(&mut self) -> Option<NaiveDate> {
        let s = self.str()?;
        if let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *s.as_bytes() {
            let digits = [y0, y1, y2, y3, m0, m1, d0, d1];
            if digits.iter().all(u8::is_ascii_digit) {
                let n = |ds: &[u8]| ds.iter().fold(0u32, |a, &c| a * 10 + u32::from(c - b'0'));
                let (y, m, d) = (n(&digits[..4]), n(&digits[4..6]), n(&digits[6..]));
                return NaiveDate::from_ymd_opt(y as i32, m, d);
            }
        }
        None
    }

    /// An unsigned integer in plain digits (no sign, no leading zero, no fraction or
    /// exponent: what follows must be a comma or a brace, which the caller expects).
    fn uint(&mut self) -> Option<u64> {
        let rest = &self.b[self.i..];
        let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 19 || (n > 1 && rest[0] == b'0') {
            return None;
        }
        self.i += n;
        Some(
            rest[..n]
                .iter()
                .fold(0u64, |a, &c| a * 10 + u64::from(c - b'0')),
        )
    }

    fn bool(&mut self) -> Option<bool> {
        if self.literal(b"true") {
            Some(true)
        } else if self.literal(b"false") {
            Some(false)
        } else {
            None
        }
    }

    /// An array of `read`'s values.
    fn items<T>(&mut self, read: fn(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.eat(b'[')?;
        let mut v = Vec::new();
        if self.eat(b']').is_some() {
            return Some(v);
        }
        loop {
            v.push(read(self)?);
            if self.eat(b',').is_none() {
                self.eat(b']')?;
                return Some(v);
            }
        }
    }

    /// An array read in place into `v`: its values are read into those `v` holds (a `blank`
    /// one added where it has too few), and the ones left over dropped. An absent key is an
    /// empty array.
    fn items_field<T>(
        &mut self,
        f: &mut Fields,
        name: &str,
        v: &mut Vec<T>,
        read: fn(&mut Self, &mut T) -> Option<()>,
        blank: fn() -> T,
    ) -> Option<()> {
        let mut n = 0;
        if self.key(f, name) {
            self.eat(b'[')?;
            if self.eat(b']').is_none() {
                loop {
                    if n == v.len() {
                        v.push(blank());
                    }
                    read(self, v.get_mut(n)?)?;
                    n += 1;
                    if self.eat(b',').is_none() {
                        self.eat(b']')?;
                        break;
                    }
                }
            }
        }
        v.truncate(n);
        Some(())
    }

    fn name_in(&mut self, n: &mut PersonName) -> Option<()> {
        let f = &mut self.begin()?;
        self.need(f, "last")?;
        self.string_in(&mut n.last)?;
        self.opt_field(f, "first", &mut n.first, Self::string_in)?;
        self.opt_field(f, "middle", &mut n.middle, Self::string_in)?;
        self.opt_field(f, "prefix", &mut n.prefix, Self::string_in)?;
        self.opt_field(f, "suffix", &mut n.suffix, Self::string_in)?;
        self.eat(b'}')
    }

    fn demographics(&mut self) -> Option<Demographics> {
        let f = &mut self.begin()?;
        let d = Demographics {
            birth_date: self.opt_key(f, "birth_date", Self::date)?,
            gender: self.opt_key(f, "gender", |r| r.label(Gender::from_exact_label))?,
            marital_status: self.opt_key(f, "marital_status", |r| {
                r.label(MaritalStatus::from_exact_label)
            })?,
        };
        self.eat(b'}')?;
        Some(d)
    }

    fn address_in(&mut self, a: &mut Address) -> Option<()> {
        let f = &mut self.begin()?;
        self.need(f, "line1")?;
        self.string_in(&mut a.line1)?;
        self.opt_field(f, "line2", &mut a.line2, Self::string_in)?;
        self.need(f, "city")?;
        self.string_in(&mut a.city)?;
        self.opt_field(f, "state", &mut a.state, Self::string_in)?;
        self.opt_field(f, "postal_code", &mut a.postal_code, Self::string_in)?;
        self.opt_field(f, "country", &mut a.country, Self::string_in)?;
        self.eat(b'}')
    }

    fn contact_in(&mut self, c: &mut Contact) -> Option<()> {
        let f = &mut self.begin()?;
        self.need(f, "kind")?;
        c.kind = self.label(ContactKind::from_exact_label)?;
        self.need(f, "value")?;
        self.string_in(&mut c.value)?;
        self.eat(b'}')
    }

    fn disability(&mut self) -> Option<Disability> {
        let f = &mut self.begin()?;
        let d = Disability {
            kind: self.opt_key(f, "kind", |r| r.label(DisabilityType::from_exact_label))?,
            start: self.opt_key(f, "start", Self::date)?,
            end: self.opt_key(f, "end", Self::date)?,
        };
        self.eat(b'}')?;
        Some(d)
    }

    fn provider_in(&mut self, p: &mut Provider) -> Option<()> {
        let f = &mut self.begin()?;
        self.need(f, "name")?;
        self.name_in(&mut p.name)?;
        self.opt_field(f, "npi", &mut p.npi, Self::string_in)?;
        self.opt_field(f, "provider_id", &mut p.provider_id, Self::string_in)?;
        p.change_reason = self.opt_key(f, "change_reason", |r| {
            r.label(MaintenanceReason::from_exact_label)
        })?;
        self.eat(b'}')
    }

    fn id_card(&mut self) -> Option<IdCard> {
        let f = &mut self.begin()?;
        self.need(f, "card_type")?;
        let mut c = IdCard {
            card_type: self.label(CardType::from_exact_label)?,
            plan: None,
            count: None,
            action: None,
        };
        self.opt_field(f, "plan", &mut c.plan, Self::string_in)?;
        c.count = self.opt_key(f, "count", |r| u32::try_from(r.uint()?).ok())?;
        c.action = self.opt_key(f, "action", |r| r.label(CardAction::from_exact_label))?;
        self.eat(b'}')?;
        Some(c)
    }

    fn coverage_in(&mut self, c: &mut Coverage) -> Option<()> {
        let f = &mut self.begin()?;
        self.need(f, "insurance_line")?;
        c.insurance_line = self.label(InsuranceLine::from_exact_label)?;
        self.opt_field(f, "plan", &mut c.plan, Self::string_in)?;
        c.coverage_level = self.opt_key(f, "coverage_level", |r| {
            r.label(CoverageLevel::from_exact_label)
        })?;
        c.begin = self.opt_key(f, "begin", Self::date)?;
        c.end = self.opt_key(f, "end", Self::date)?;
        self.opt_field(f, "pcp", &mut c.pcp, Self::provider_in)?;
        c.id_cards = if self.key(f, "id_cards") {
            self.items(Self::id_card)?
        } else {
            Vec::new()
        };
        self.eat(b'}')
    }

    fn data_in(&mut self, d: &mut MemberData) -> Option<()> {
        let f = &mut self.begin()?;
        self.opt_field(f, "name", &mut d.name, Self::name_in)?;
        self.opt_field(f, "ssn", &mut d.ssn, Self::string_in)?;
        d.demographics = self.opt_key(f, "demographics", Self::demographics)?;
        self.opt_field(f, "residence", &mut d.residence, Self::address_in)?;
        self.opt_field(f, "mailing", &mut d.mailing, Self::address_in)?;
        self.items_field(f, "contacts", &mut d.contacts, Self::contact_in, || {
            Contact {
                kind: ContactKind::HomePhone,
                value: String::new(),
            }
        })?;
        d.employment_status = self.opt_key(f, "employment_status", |r| {
            r.label(EmploymentStatus::from_exact_label)
        })?;
        d.student_status = self.opt_key(f, "student_status", |r| {
            r.label(StudentStatus::from_exact_label)
        })?;
        d.handicapped = self.opt_key(f, "handicapped", Self::bool)?;
        d.disabilities = if self.key(f, "disabilities") {
            self.items(Self::disability)?
        } else {
            Vec::new()
        };
        self.items_field(f, "coverages", &mut d.coverages, Self::coverage_in, || {
            Coverage::new(InsuranceLine::Health)
        })?;
        self.opt_field(f, "division", &mut d.division, Self::string_in)?;
        self.eat(b'}')
    }

    /// An X12 trace, `type` first (a portal trace is left to serde_json), into `t` (into its
    /// strings when it is an X12 trace).
    fn trace_in(&mut self, t: &mut SourceTrace) -> Option<()> {
        let f = &mut self.begin()?;
        self.need(f, "type")?;
        if self.str()? != "x12" {
            return None;
        }
        if !matches!(t, SourceTrace::X12 { .. }) {
            *t = blank_trace();
        }
        let SourceTrace::X12 {
            file,
            isa13,
            gs06,
            st02,
            first_segment,
            last_segment,
        } = t
        else {
            return None;
        };
        self.need(f, "file")?;
        self.string_in(file)?;
        self.need(f, "isa13")?;
        self.string_in(isa13)?;
        self.need(f, "gs06")?;
        self.string_in(gs06)?;
        self.need(f, "st02")?;
        self.string_in(st02)?;
        self.need(f, "first_segment")?;
        *first_segment = u32::try_from(self.uint()?).ok()?;
        self.need(f, "last_segment")?;
        *last_segment = u32::try_from(self.uint()?).ok()?;
        self.eat(b'}')
    }

    /// The record, and where its parts are in the line (the record itself ends where the
    /// line does, which the caller checks).
    fn record_in(
        &mut self,
        r: &mut crate::changes::ChangeRecord,
    ) -> Option<crate::changes::JsonSpans> {
        let f = &mut self.begin()?;
        self.need(f, "schema")?;
        self.string_in(&mut r.schema)?;
        self.need(f, "change_id")?;
        let id_start = self.i + 1;
        self.string_in(&mut r.change_id)?;
        let change_id = id_start..self.i - 1;
        self.need(f, "kind")?;
        let kind = self.str()?;
        r.kind = ChangeKind::ALL
            .iter()
            .copied()
            .find(|k| k.label() == kind)?;
        self.need(f, "effective_date")?;
        r.effective_date = self.opt(Self::date)?;
        self.need(f, "group_id")?;
        self.opt_in(&mut r.group_id, Self::string_in)?;
        self.need(f, "division")?;
        self.opt_in(&mut r.division, Self::string_in)?;
        self.need(f, "subscriber_id")?;
        self.string_in(&mut r.subscriber_id)?;
        self.need(f, "member_id")?;
        self.string_in(&mut r.member_id)?;
        self.need(f, "relationship")?;
        r.relationship = self.label(Relationship::from_exact_label)?;
        self.need(f, "reason")?;
        r.reason = self.opt(|r| r.label(MaintenanceReason::from_exact_label))?;
        self.need(f, "new")?;
        let new_start = self.i;
        self.data_in(&mut r.new)?;
        let new = new_start..self.i;
        self.need(f, "old")?;
        let old_start = self.i;
        self.opt_in(&mut r.old, Self::data_in)?;
        let old = r.old.is_some().then_some(old_start..self.i);
        self.need(f, "source")?;
        self.trace_in(&mut r.source)?;
        self.opt_field(f, "broker_license", &mut r.broker_license, Self::string_in)?;
        let content_end = self.i;
        r.status = self.opt_key(f, "status", |r| {
            let s = r.str()?;
            TransactionStatus::ALL.into_iter().find(|t| t.as_str() == s)
        })?;
        self.opt_field(f, "invoice_period", &mut r.invoice_period, Self::string_in)?;
        self.eat(b'}')?;
        Some(crate::changes::JsonSpans {
            record: 0..self.i,
            change_id,
            content_end,
            new,
            old,
        })
    }
}

/// An X12 trace with nothing in it yet, to be read into.
fn blank_trace() -> SourceTrace {
    SourceTrace::X12 {
        file: String::new(),
        isa13: String::new(),
        gs06: String::new(),
        st02: String::new(),
        first_segment: 0,
        last_segment: 0,
    }
}

/// A record with nothing in it yet, to be read into.
pub(crate) fn blank_record() -> crate::changes::ChangeRecord {
    crate::changes::ChangeRecord {
        schema: String::new(),
        change_id: String::new(),
        kind: ChangeKind::AddSubscriber,
        effective_date: None,
        group_id: None,
        division: None,
        subscriber_id: String::new(),
        member_id: String::new(),
        relationship: Relationship::SelfSubscriber,
        reason: None,
        new: MemberData::default(),
        old: None,
        source: blank_trace(),
        broker_license: None,
        status: None,
        invoice_period: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_escape_agrees_with_a_byte_scan() {
        let slow = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        for len in 0..20 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[at] = c;
                    assert_eq!(needs_escape(&v), slow(&v), "{v:?}");
                    v[at] = 0x9f;
                    v[len - 1 - at] = c;
                    assert_eq!(needs_escape(&v), slow(&v), "{v:?}");
                }
            }
        }
    }

    /// [`string_end`] against what it replaced: the first quote, if no byte before it needs
    /// an escape.
    #[test]
    fn a_string_ends_where_the_quote_and_escape_scans_end_it() {
        let slow = |b: &[u8]| {
            let n = memchr::memchr(b'"', b)?;
            (!needs_escape(&b[..n])).then_some(n)
        };
        let specials = [
            b'"', b'\\', 0, 0x1f, 0x20, b'!', b'#', b'[', b']', 0x7f, 0x80, 0xa2, 0xdc, 0xff,
        ];
        for len in 0..26 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[at] = c;
                    assert_eq!(string_end(&v), slow(&v), "{v:?}");
                    // A second special byte after (or before) it, and bytes with the high bit
                    // set around (a borrow through them must not flag them).
                    for &d in &specials {
                        let mut w = v.clone();
                        w[len - 1 - at] = d;
                        assert_eq!(string_end(&w), slow(&w), "{w:?}");
                        for x in w.iter_mut().filter(|x| **x == b'a') {
                            *x = 0x9f;
                        }
                        assert_eq!(string_end(&w), slow(&w), "{w:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut all = String::new();
        for c in (0u8..=0x7f).map(char::from) {
            all.push(c);
        }
        all.push_str("é名\u{2028}\u{fffd}");
        for s in [all.as_str(), "", "plain", "\"", "\\\\", "a\u{0}b", "end\n"] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn numbers_and_dates_are_written_as_serde_json_writes_them() {
        // Around every power of ten (where a number gains a digit, and an odd count of them).
        let powers = (0..20).map(|e| 10u64.pow(e));
        let around = powers.flat_map(|p| [p - 1, p, p + 1, p.saturating_mul(9).saturating_add(8)]);
        let some = [0u64, 7, 99, 100, 4_294_967_295, u64::MAX];
        for n in some.into_iter().chain(around) {
            let mut out = Vec::new();
            uint(&mut out, n);
            assert_eq!(out, serde_json::to_vec(&n).unwrap(), "{n}");
        }
        // Every number of up to four digits, and a spread of six-digit segment numbers.
        for n in (0..10_000u64).chain((100_000..1_000_000).step_by(997)) {
            let mut out = Vec::new();
            uint(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes(), "{n}");
        }
        for (y, m, d) in [
            (2025, 2, 1),
            (0, 1, 1),
            (9999, 12, 31),
            (-1, 6, 5),
            (10000, 1, 1),
        ] {
            let v = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            let mut out = Vec::new();
            v.json(&mut out);
            assert_eq!(out, serde_json::to_vec(&v).unwrap());
        }
    }

    #[test]
    fn dates_written_again_and_in_turn_are_written_as_serde_json_writes_them() {
        // The same date twice in a row (the memo's hit), then others in turn, and a date
        // outside 0..=9999 between two equal ones (it is not remembered).
        let ymd = [
            (2025, 2, 1),
            (2025, 2, 1),
            (2025, 3, 1),
            (2025, 2, 1),
            (10000, 1, 1),
            (2025, 2, 1),
            (2024, 2, 29),
        ];
        for (y, m, d) in ymd {
            let v = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            let mut out = Vec::new();
            v.json(&mut out);
            assert_eq!(out, serde_json::to_vec(&v).unwrap(), "{v:?}");
        }
    }

    #[test]
    fn dates_from_the_pair_table_are_the_debug_form() {
        // Every year 0 to 9999 (each digit of the year in every place) and every day of a
        // leap year and of a common one (each month and day), against chrono's own text.
        let years = (0..=9999).flat_map(|y| [(y, 1, 1), (y, 12, 31)]);
        let days = [2024, 2025]
            .into_iter()
            .flat_map(|y| (1..=12).flat_map(move |m| (1..=31).map(move |d| (y, m, d))));
        for (y, m, d) in years.chain(days) {
            let Some(v) = NaiveDate::from_ymd_opt(y, m, d) else {
                continue;
            };
            let mut out = Vec::new();
            date(&mut out, &v);
            assert_eq!(out, format!("{v:?}").into_bytes(), "{v:?}");
        }
    }

    #[test]
    fn labels_need_no_escape() {
        type Label<T> = fn(T) -> &'static str;
        fn all<T: Copy>(v: &[T], label: Label<T>, json_label: Option<Label<T>>) {
            for &x in v {
                let l = label(x);
                // What `Json` writes: the label as serde_json writes the string.
                let mut quoted = Vec::new();
                super::label(&mut quoted, l);
                assert_eq!(quoted, serde_json::to_vec(l).unwrap(), "{l:?}");
                if let Some(json_label) = json_label {
                    assert_eq!(json_label(x).as_bytes(), quoted, "{l:?}");
                }
                assert!(!l.is_empty() && !needs_escape(l.as_bytes()), "{l:?}");
                // Independently of `needs_escape`: printable ASCII without a quote or a
                // backslash (a status label holds spaces and a hyphen).
                assert!(
                    l.bytes()
                        .all(|c| (b' '..=b'~').contains(&c) && c != b'"' && c != b'\\'),
                    "{l:?}"
                );
            }
        }
        macro_rules! each {
            ($($t:ident),+) => {$(
                all($t::ALL, $t::label, Some($t::json_label));
            )+};
        }
        code_lists!(each);
        all(&TransactionStatus::ALL, |s| s.as_str(), None);
    }

    #[test]
    fn labels_are_the_serde_names() {
        for k in ChangeKind::ALL {
            let mut out = Vec::new();
            k.json(&mut out);
            assert_eq!(out, serde_json::to_vec(k).unwrap());
        }
        for s in TransactionStatus::ALL {
            let mut out = Vec::new();
            s.json(&mut out);
            assert_eq!(out, serde_json::to_vec(&s).unwrap());
        }
        for l in [PortalLayout::Transactions, PortalLayout::Roster] {
            let mut out = Vec::new();
            l.json(&mut out);
            assert_eq!(out, serde_json::to_vec(&l).unwrap());
        }
    }
}
