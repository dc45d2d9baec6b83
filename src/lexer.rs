//! Splits a byte stream into X12 segments.
//!
//! The lexer owns delimiter detection (from each ISA) and segment boundaries, nothing else: it
//! does not know what an 834 is, nor what a valid envelope looks like. It reads through a buffer
//! that it refills from any [`Read`], hands out borrowed [`Segment`] views into that buffer, and
//! never holds more than one segment plus one read chunk in memory, so a multi-gigabyte file costs
//! the same memory as a small one. A segment longer than [`LexerOptions::max_segment_len`] is an
//! error rather than an allocation, so a file without terminators cannot exhaust memory.
//!
//! Formatting that senders add between segments (CR, LF, CRLF, and a UTF-8 byte order mark before
//! the first ISA) is skipped and counted for line numbers. Spaces or tabs in front of a segment are
//! skipped too, but reported through [`Segment::leading_blanks`] so that the validator can flag
//! them: they are not allowed by the standard.

use memchr::{memchr, memchr_iter, memmem};
use std::io::{self, Read};

/// The four delimiters of one interchange, read from its ISA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Delimiters {
    pub element: u8,
    pub component: u8,
    /// ISA11 in version 00501; `None` when ISA11 is not a usable separator.
    pub repetition: Option<u8>,
    pub segment: u8,
}

impl Delimiters {
    /// The delimiters most senders use; also what eligo writes unless told otherwise.
    pub const DEFAULT: Delimiters = Delimiters {
        element: b'*',
        component: b':',
        repetition: Some(b'^'),
        segment: b'~',
    };

    /// The delimiters as one integer, equal for equal delimiters only (a repetition
    /// separator takes 9 bits: present, and its byte), for comparing them in one step.
    #[inline]
    pub fn key(&self) -> u64 {
        let rep = self.repetition.map_or(0, |r| 0x100 | u64::from(r));
        u64::from(self.element)
            | u64::from(self.component) << 8
            | u64::from(self.segment) << 16
            | rep << 24
    }

    /// True if `b` is one of the delimiters (data may never contain one).
    pub fn is_delimiter(&self, b: u8) -> bool {
        b == self.element || b == self.component || b == self.segment || self.repetition == Some(b)
    }
}

/// Where a segment starts in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Position {
    /// Byte offset of the segment's first byte (its ID) from the start of the stream.
    pub offset: u64,
    /// 1-based line of the segment's first byte.
    pub line: u64,
}

/// One segment, borrowed from the lexer's buffer. Valid until the next call to
/// [`Lexer::next_segment`].
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// The segment without its terminator.
    raw: &'a [u8],
    delims: Delimiters,
    pos: Position,
    leading_blanks: u32,
    /// The element separators' offsets in `raw`, when the lexer found them in its pass over
    /// the segment ([`Scan`]); `None` for a segment built otherwise (then [`Splitter`] finds
    /// them).
    seps: Option<&'a [u32]>,
}

impl<'a> Segment<'a> {
    /// Builds a segment view over `raw` (no terminator). Used by tests and by code that replays
    /// stored segments.
    pub fn new(raw: &'a [u8], delims: Delimiters, pos: Position) -> Self {
        Segment {
            raw,
            delims,
            pos,
            leading_blanks: 0,
            seps: None,
        }
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    pub fn delimiters(&self) -> Delimiters {
        self.delims
    }
    pub fn position(&self) -> Position {
        self.pos
    }
    /// Spaces or tabs that stood before the segment ID (an error the validator reports).
    pub fn leading_blanks(&self) -> u32 {
        self.leading_blanks
    }

    /// The segment split at its element separators, when the lexer found them while looking
    /// for the terminator (every segment but the ISA it reads); `None` otherwise.
    #[inline]
    pub fn fields(&self) -> Option<Fields<'a>> {
        self.seps.map(|seps| Fields {
            raw: self.raw,
            seps,
        })
    }

    /// The segment identifier: everything before the first element separator.
    pub fn id(&self) -> &'a [u8] {
        if let Some(f) = self.fields() {
            return f.id();
        }
        match find_byte(self.delims.element, self.raw) {
            Some(i) => &self.raw[..i],
            None => self.raw,
        }
    }

    /// The data elements after the ID, in order; element 1 first. Empty elements are empty
    /// slices. A trailing separator yields a trailing empty element.
    pub fn elements(&self) -> Elements<'a> {
        let rest = find_byte(self.delims.element, self.raw).map(|i| &self.raw[i + 1..]);
        Elements {
            rest,
            sep: self.delims.element,
        }
    }

    /// Element `n` (1-based), or an empty slice when the segment is shorter.
    pub fn element(&self, n: usize) -> &'a [u8] {
        if let Some(f) = self.fields() {
            return f.element(n);
        }
        self.elements().nth(n.wrapping_sub(1)).unwrap_or(b"")
    }
}

/// Finds every element separator of a segment once: [`Fields`] then hands out any element
/// without scanning again. The validator splits each segment so once and shares the result
/// between the walker, the element checks and the member record, which used to scan the
/// segment each on their own. Keeps its buffer from segment to segment.
#[derive(Debug, Clone, Default)]
pub struct Splitter {
    /// At least as long as the longest segment split so far (a segment of `n` bytes has at
    /// most `n` separators), so the scan writes without growing it.
    buf: Vec<u32>,
}

impl Splitter {
    /// `raw` split at the element separator `sep`.
    pub fn split<'a>(&'a mut self, raw: &'a [u8], sep: u8) -> Fields<'a> {
        if self.buf.len() < raw.len() {
            self.buf.resize(raw.len(), 0);
        }
        let out = &mut self.buf[..raw.len()];
        let mut n = 0usize;
        // Eight bytes at a time: a byte of `x ^ pattern` is zero exactly where `raw` holds
        // `sep`; `zero_bytes` sets the high bit of those bytes and of no other.
        let pattern = u64::from_ne_bytes([sep; 8]);
        let load = |i: usize| {
            let c = &raw[i..i + 8];
            u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ pattern
        };
        let mut put = |base: usize, mut zero: u64| {
            while zero != 0 {
                out[n] = (base + zero.trailing_zeros() as usize / 8) as u32;
                n += 1;
                zero &= zero - 1;
            }
        };
        let len = raw.len();
        if len < 8 {
            for (i, b) in raw.iter().enumerate() {
                if *b == sep {
                    put(i, 0x80);
                }
            }
        } else {
            let mut i = 0;
            while i + 8 <= len {
                put(i, zero_bytes(load(i)));
                i += 8;
            }
            if i < len {
                // The last eight bytes, without those the loop above already looked at.
                let seen = 8 - (len - i);
                put(
                    len - 8,
                    zero_bytes(load(len - 8)) & (u64::MAX << (8 * seen)),
                );
            }
        }
        Fields {
            raw,
            seps: &self.buf[..n],
        }
    }
}

/// The high bit of every byte of `x` that is zero, and no other bit: the low seven bits are
/// added to 0x7f (so a byte with any of them set carries into its high bit, and no carry
/// crosses into the next byte), then the byte's own high bit is or-ed in.
#[inline]
pub(crate) fn zero_bytes(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Nonzero exactly when some byte of `x` is zero, and its lowest set bit is then the high bit
/// of the first zero byte: no byte below that one borrows, so none of them is flagged (the
/// bytes above it may be, where the subtraction borrowed). That is all the terminator test
/// needs, in one operation fewer than [`zero_bytes`], which is exact for every byte.
#[inline]
fn first_zero(x: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    x.wrapping_sub(ONES) & !x & HIGH
}

/// Masked with [`HIGH`], the high bit of each byte of `x` below 11 (a line break is 10), and
/// perhaps of bytes above such a byte (where the subtraction borrowed), and no other: nonzero
/// exactly when some byte is below 11, and, as a borrow only moves up, a mask of the bytes
/// below a given one keeps it exact for them. Three operations where an exact [`zero_bytes`]
/// of `x ^ NL` takes five. Unmasked, because the scan ors these together word by word and
/// masks once at the end (the mask distributes over the or): one operation less a word.
#[inline]
fn below_11(x: u64) -> u64 {
    const ELEVEN: u64 = u64::from_ne_bytes([11; 8]);
    x.wrapping_sub(ELEVEN) & !x
}

/// The high bit of every byte.
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// A segment with its element separators found ([`Splitter`]): the same values as
/// [`Segment::id`], [`Segment::element`] and [`Segment::elements`], without a scan per call.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    raw: &'a [u8],
    seps: &'a [u32],
}

impl<'a> Fields<'a> {
    pub fn id(&self) -> &'a [u8] {
        match self.seps.first() {
            Some(&i) => &self.raw[..i as usize],
            None => self.raw,
        }
    }

    /// The element separators' offsets in the segment.
    pub fn separators(&self) -> &'a [u32] {
        self.seps
    }

    /// The number of elements after the ID (a trailing separator counts an empty one).
    pub fn len(&self) -> usize {
        self.seps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seps.is_empty()
    }

    /// Element `n` (1-based), or an empty slice when the segment is shorter.
    #[inline]
    pub fn element(&self, n: usize) -> &'a [u8] {
        if n == 0 || n > self.seps.len() {
            return b"";
        }
        let start = self.seps[n - 1] as usize + 1;
        let end = self.seps.get(n).map_or(self.raw.len(), |&e| e as usize);
        &self.raw[start..end]
    }

    /// The elements after the ID, element 1 first.
    pub fn elements(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (raw, seps) = (self.raw, self.seps);
        (1..=seps.len()).map(move |n| {
            let start = seps[n - 1] as usize + 1;
            let end = seps.get(n).map_or(raw.len(), |&e| e as usize);
            &raw[start..end]
        })
    }
}

/// Iterator over a segment's elements.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    rest: Option<&'a [u8]>,
    sep: u8,
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        // Elements are short: a plain scan beats a SIMD search's setup cost here.
        match rest.iter().position(|b| *b == self.sep) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Finds `b` in a short slice (an element or a segment): a plain scan, which beats a SIMD
/// search's setup cost on the few dozen bytes X12 values have; long slices use `memchr`.
#[inline]
pub fn find_byte(b: u8, s: &[u8]) -> Option<usize> {
    if s.len() < 64 {
        s.iter().position(|x| *x == b)
    } else {
        memchr(b, s)
    }
}

/// One pass over a segment's bytes that finds its terminator, its element separators (their
/// offsets, for [`Fields`]) and the line breaks before the terminator (for line numbers),
/// sixteen bytes at a time on x86-64 (SSE2) and eight elsewhere ([`zero_bytes`]). The lexer
/// used to search for the terminator with `memchr`, then count the line breaks, then the
/// validator split the segment: three passes over the same few dozen bytes. The scan resumes
/// where it stopped when the lexer reads more input in the middle of a segment (offsets are
/// from the segment's first byte, which the refill may move but keeps first).
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    /// Where the scan goes on: the bytes before it hold no terminator.
    at: usize,
    /// Element separators written to the caller's buffer so far.
    found: usize,
    /// The line breaks before the terminator, once it is found.
    newlines: u64,
    /// Nonzero when a byte scanned so far may be a line break ([`below_11`]): the words are
    /// not counted one by one (two thirds of the scan's tests were for line breaks, which a
    /// segment almost never holds); the segment is counted again when this is set.
    control: u64,
}

/// The terminator and the element separator repeated in every byte of a block: what [`Scan`]
/// compares each block (and, in the low half, each word) with. The lexer keeps them with the
/// interchange's delimiters, and the scan reads them there: made for every segment, the two
/// SSE2 splats, and the copies of them the scan kept on the stack, were ≈ 25 instructions a
/// segment.
#[derive(Debug, Clone, Copy, Default)]
struct Patterns {
    term: u128,
    elem: u128,
}

impl Patterns {
    fn new(delims: Delimiters) -> Patterns {
        Patterns {
            term: u128::from_ne_bytes([delims.segment; 16]),
            elem: u128::from_ne_bytes([delims.element; 16]),
        }
    }
}

impl Scan {
    /// Scans `seg` (the segment's bytes from its first, up to the end of what is buffered)
    /// from where the last call stopped; returns the terminator's offset once found. The
    /// separators before it are in `seps[..self.found]` and the line breaks before it are
    /// counted in `self.newlines`. Inlined into [`Lexer::read_segment`] (its one caller), so
    /// that the scan's state stays in registers: called, it cost a prologue, an epilogue and
    /// the state's stores and loads for every segment.
    ///
    /// With `SEPS` false the separators are not noted (`seps` is left as it is): for a
    /// caller that only copies the segment's bytes.
    #[inline(always)]
    fn run<const SEPS: bool>(
        &mut self,
        seg: &[u8],
        seps: &mut Vec<u32>,
        pat: &Patterns,
    ) -> Option<usize> {
        self.run_in::<SEPS, WIDE>(seg, seps, pat)
    }

    /// [`run`](Self::run), sixteen bytes at a time first when `WIDE` (x86-64, whose SSE2
    /// compares a 16-byte block with a byte and gives the matches as a 16-bit mask in three
    /// instructions, where the eight-byte word takes five to eight for an exact mask), then
    /// eight at a time ([`zero_bytes`]) for what is left, then byte by byte. A parameter rather
    /// than only a `cfg`, so that the tests run the word-only scan of the other targets here too.
    #[inline(always)]
    fn run_in<const SEPS: bool, const WIDE: bool>(
        &mut self,
        seg: &[u8],
        seps: &mut Vec<u32>,
        pat: &Patterns,
    ) -> Option<usize> {
        let len = seg.len();
        let mut at = self.at;
        let mut n = self.found;
        let mut control = self.control;
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if WIDE {
            use safe_arch::{
                cmp_eq_mask_i8_m128i, load_unaligned_m128i, m128i, move_mask_i8_m128i,
                set_splat_i8_m128i,
            };
            let term = m128i::from(pat.term);
            let elem = m128i::from(pat.elem);
            let nl = set_splat_i8_m128i(b'\n' as i8);
            // The line breaks' masks, or-ed block by block (nonzero when there is one).
            let mut breaks = 0u32;
            while let Some(c) = seg.get(at..).and_then(<[u8]>::first_chunk::<16>) {
                let v = load_unaligned_m128i(c);
                let mask = |p| move_mask_i8_m128i(cmp_eq_mask_i8_m128i(v, p)) as u32;
                let zt = mask(term);
                let lf = mask(nl);
                if zt != 0 {
                    let before = (zt & zt.wrapping_neg()) - 1;
                    if SEPS {
                        put::<1>(seps, &mut n, at, u64::from(mask(elem) & before));
                    }
                    self.found = n;
                    let i = at + zt.trailing_zeros() as usize;
                    self.at = i;
                    self.count_newlines(seg, i, control | u64::from(breaks | (lf & before)));
                    return Some(i);
                }
                if SEPS {
                    put::<1>(seps, &mut n, at, u64::from(mask(elem)));
                }
                breaks |= lf;
                at += 16;
            }
            // Fewer than sixteen bytes left: the words' flag (masked with `HIGH` below).
            if breaks != 0 {
                control = HIGH;
            }
        }
        while at + 8 <= len {
            let c = &seg[at..at + 8];
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let zt = first_zero(w ^ pat.term as u64);
            let low = below_11(w);
            if zt != 0 {
                // Only what stands before the terminator: the bits below its high bit.
                let before = (zt & zt.wrapping_neg()) - 1;
                if SEPS {
                    put::<8>(seps, &mut n, at, zero_bytes(w ^ pat.elem as u64) & before);
                }
                self.found = n;
                let i = at + (zt.trailing_zeros() as usize) / 8;
                self.at = i;
                self.count_newlines(seg, i, (control | (low & before)) & HIGH);
                return Some(i);
            }
            if SEPS {
                put::<8>(seps, &mut n, at, zero_bytes(w ^ pat.elem as u64));
            }
            control |= low;
            at += 8;
        }
        self.control = control & HIGH;
        // Fewer than eight bytes left in the buffer: one at a time.
        while at < len {
            let b = seg[at];
            if b == pat.term as u8 {
                self.found = n;
                self.at = at;
                self.count_newlines(seg, at, self.control);
                return Some(at);
            }
            if SEPS && b == pat.elem as u8 {
                if seps.len() <= n {
                    seps.resize(n + 64, 0);
                }
                seps[n] = at as u32;
                n += 1;
            }
            if b == b'\n' {
                self.control = u64::MAX;
            }
            at += 1;
        }
        self.at = at;
        self.found = n;
        None
    }

    /// Counts the line breaks in `seg[..end]` (the segment before its terminator) when
    /// `control` says there may be any: out of line, as a segment almost never holds one (and
    /// sliced there, so the usual segment pays no bounds check for it).
    #[inline(always)]
    fn count_newlines(&mut self, seg: &[u8], end: usize, control: u64) {
        if control != 0 {
            self.newlines = newlines_in(seg, end);
        }
    }
}

/// Whether [`Scan`] goes sixteen bytes at a time before it goes eight at a time.
const WIDE: bool = cfg!(all(target_arch = "x86_64", target_feature = "sse2"));

/// Notes the offsets of the bytes flagged in `mask` (`BITS` bits a byte, the lowest byte's
/// lowest) for the block of at most sixteen bytes at `base`, in `seps[n..]`. Room for a whole
/// block's worth is made once for a block that holds any: not for every block (most hold
/// none) nor per separator. The writes go through a slice taken once: through the `Vec`,
/// its pointer and length were loaded again for every separator (the store might have
/// changed them, as far as the compiler could tell).
#[inline(always)]
fn put<const BITS: u32>(seps: &mut Vec<u32>, n: &mut usize, base: usize, mut mask: u64) {
    if mask != 0 {
        if seps.len() < *n + 16 {
            seps.resize(*n + 64, 0);
        }
        let seps = seps.as_mut_slice();
        while mask != 0 {
            seps[*n] = (base + (mask.trailing_zeros() / BITS) as usize) as u32;
            *n += 1;
            mask &= mask - 1;
        }
    }
}

#[cold]
#[inline(never)]
fn newlines_in(seg: &[u8], end: usize) -> u64 {
    memchr_iter(b'\n', &seg[..end]).count() as u64
}

/// Whether `head` (the buffered bytes from a segment's first) starts an interchange: `ISA`
/// and a byte that is not a letter or digit (the element separator). The first byte alone
/// tells most segments apart: one compare, where the three bytes were put together and
/// compared for every segment.
#[inline(always)]
fn is_isa(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] == b'I' && &head[1..3] == b"SA" && !head[3].is_ascii_alphanumeric()
}

/// Splits `value` on `sep`: components of a composite or repetitions of an element.
pub fn split(value: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    value.split(move |b| *b == sep)
}

/// Why the lexer could not produce a segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LexErrorKind {
    /// The stream is empty (or holds only whitespace).
    Empty,
    /// Bytes that are not an ISA where an interchange must start. `len` bytes were skipped up to
    /// the next ISA (or the end).
    NotAnInterchange { len: u64 },
    /// An ISA too short to hold its 16 elements and terminator.
    TruncatedIsa,
    /// The ISA's separators are not at the fixed offsets (the ISA is not 106 bytes); the
    /// delimiters were taken by splitting instead.
    IsaNotFixedWidth,
    /// The delimiters read from the ISA are unusable (letters, digits, duplicates).
    BadDelimiters {
        which: &'static str,
        /// The 16 ISA elements, cut at the separator positions that were found (fixed offsets,
        /// or the split positions of a non-fixed-width ISA), so that the interchange can still
        /// be acknowledged (TA1). Not serialized: ISA02/ISA04 may hold passwords.
        #[serde(skip)]
        elements: Vec<String>,
    },
    /// A segment exceeded the length limit without a terminator.
    SegmentTooLong { limit: usize },
    /// The stream ended inside a segment (no terminator).
    UnterminatedSegment,
    /// An I/O error while reading.
    Io { message: String },
}

/// A lexer error with the position where it happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LexError {
    pub kind: LexErrorKind,
    pub pos: Position,
}

impl std::fmt::Display for LexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            LexErrorKind::Empty => write!(f, "the file is empty"),
            LexErrorKind::NotAnInterchange { len } => write!(
                f,
                "{len} byte(s) that are not an X12 interchange (expected \"ISA\")"
            ),
            LexErrorKind::TruncatedIsa => write!(
                f,
                "ISA segment is truncated: it needs 16 elements and a segment terminator"
            ),
            LexErrorKind::IsaNotFixedWidth => write!(
                f,
                "ISA is not fixed-width (106 bytes with separators at fixed offsets); delimiters were guessed by splitting"
            ),
            LexErrorKind::BadDelimiters { which, .. } => {
                write!(f, "invalid delimiters in the ISA: {which}")
            }
            LexErrorKind::SegmentTooLong { limit } => write!(
                f,
                "segment longer than {limit} bytes without a segment terminator"
            ),
            LexErrorKind::UnterminatedSegment => {
                write!(f, "the file ends inside a segment (no segment terminator)")
            }
            LexErrorKind::Io { message } => write!(f, "read error: {message}"),
        }
    }
}

/// Tunables of the lexer.
#[derive(Debug, Clone, Copy)]
pub struct LexerOptions {
    /// Longest segment accepted, in bytes (default 1 MiB). The 834's longest legal segment is
    /// a few hundred bytes.
    pub max_segment_len: usize,
    /// How much to read at a time (default 256 KiB).
    pub chunk: usize,
}

impl LexerOptions {
    /// The most the lexer's buffer ever holds, in bytes: the longest segment it accepts (or a
    /// whole ISA, which is read in one piece and may be longer than a tiny
    /// [`max_segment_len`](Self::max_segment_len)) plus one read chunk.
    pub fn buffer_bound(&self) -> usize {
        self.max_segment_len.max(ISA_WINDOW) + self.chunk
    }
}

impl Default for LexerOptions {
    fn default() -> Self {
        LexerOptions {
            max_segment_len: 1 << 20,
            chunk: 256 << 10,
        }
    }
}

/// Offsets of the 16 element separators in a fixed-width ISA.
const ISA_SEPARATORS: [usize; 16] = [
    3, 6, 17, 20, 31, 34, 50, 53, 69, 76, 81, 83, 89, 99, 101, 103,
];
/// Length of a fixed-width ISA including its terminator.
pub const ISA_LEN: usize = 106;
/// How far the lexer looks for the end of an ISA that is not fixed-width.
const ISA_WINDOW: usize = 512;

/// What the lexer produced.
#[derive(Debug)]
pub enum Token<'a> {
    Segment(Segment<'a>),
    /// A recoverable problem; lexing goes on after it.
    Warning(LexError),
    /// An error after which this interchange cannot be read further; the lexer resumes at the
    /// next ISA, if any.
    Error(LexError),
}

/// The streaming segment reader.
pub struct Lexer<R> {
    inner: R,
    opts: LexerOptions,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Stream offset of `buf[0]`.
    base: u64,
    line: u64,
    delims: Option<Delimiters>,
    pending_warning: Option<LexError>,
    seen_any: bool,
    bom_checked: bool,
    /// The element separators of the segment being read ([`Scan`]); reused from segment to
    /// segment.
    seps: Vec<u32>,
    /// [`Patterns`] of `delims`, made when they are set.
    patterns: Patterns,
}

impl<R: Read> Lexer<R> {
    pub fn new(inner: R) -> Self {
        Self::with_options(inner, LexerOptions::default())
    }

    pub fn with_options(inner: R, opts: LexerOptions) -> Self {
        Self::with_buffer(inner, opts, Vec::with_capacity(opts.chunk))
    }

    fn with_buffer(inner: R, opts: LexerOptions, buf: Vec<u8>) -> Self {
        Lexer {
            inner,
            opts,
            buf,
            start: 0,
            end: 0,
            eof: false,
            base: 0,
            line: 1,
            delims: None,
            pending_warning: None,
            seen_any: false,
            bom_checked: false,
            seps: Vec::new(),
            patterns: Patterns::default(),
        }
    }

    /// A lexer that starts in the middle of an interchange whose delimiters are known: `inner`
    /// yields the input from stream offset `at.offset`, which is line `at.line`. In-file
    /// parallel checking ([`crate::split`]) reads each piece of a large set this way; the
    /// tokens are the ones a lexer reading from the start would produce from that offset on,
    /// provided `at` is right after a segment terminator.
    pub fn resume(inner: R, opts: LexerOptions, delims: Delimiters, at: Position) -> Self {
        Self::resume_in(inner, opts, delims, at, Vec::with_capacity(opts.chunk))
    }

    /// [`resume`](Self::resume) reading into `buf`, the buffer of an earlier lexer
    /// ([`into_buffer`](Self::into_buffer)): a thread that checks piece after piece of a set
    /// keeps one buffer, where a fresh one per piece zeroed 256 KiB and faulted its pages in
    /// again (≈ 3 M instructions on a 10 MB file). Its bytes are stale but initialized, so
    /// reads go straight into them.
    pub fn resume_in(
        inner: R,
        opts: LexerOptions,
        delims: Delimiters,
        at: Position,
        buf: Vec<u8>,
    ) -> Self {
        let mut lexer = Self::with_buffer(inner, opts, buf);
        lexer.base = at.offset;
        lexer.line = at.line;
        lexer.delims = Some(delims);
        lexer.patterns = Patterns::new(delims);
        lexer.seen_any = true;
        lexer.bom_checked = true;
        lexer
    }

    /// [`resume_in`](Self::resume_in) with the first `filled` bytes of the input already in
    /// `buf`: `buf[..filled]` is the input from `at.offset` on, and `inner` yields what
    /// follows it. The in-file split's planner reads a piece once, to count its lines and
    /// find where it ends, and hands those bytes over; reading them again here was a second
    /// kernel copy of every byte of the file.
    pub fn resume_filled(
        inner: R,
        opts: LexerOptions,
        delims: Delimiters,
        at: Position,
        buf: Vec<u8>,
        filled: usize,
    ) -> Self {
        let mut lexer = Self::resume_in(inner, opts, delims, at, buf);
        lexer.end = filled.min(lexer.buf.len());
        lexer
    }

    /// The read buffer, for a later lexer's [`resume_in`](Self::resume_in).
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Where the next token's search begins (before any line breaks or blanks are skipped):
    /// the point to [`resume`](Self::resume) from to get the same tokens again.
    pub fn checkpoint(&self) -> Position {
        self.pos()
    }

    /// Delimiters of the interchange being read, once its ISA was seen.
    pub fn delimiters(&self) -> Option<Delimiters> {
        self.delims
    }

    /// Bytes the read buffer has room for. It never exceeds [`LexerOptions::buffer_bound`];
    /// exposed so that tests can check that memory stays bounded whatever the input.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn pos(&self) -> Position {
        Position {
            offset: self.base + self.start as u64,
            line: self.line,
        }
    }

    /// Reads more input; keeps `buf[start..end]`. Returns false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        let want = self.end + self.opts.chunk;
        if self.buf.len() < want {
            // Exact: the default doubling could make the buffer twice the documented bound.
            self.buf.reserve_exact(want - self.buf.len());
            self.buf.resize(want, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Ensures at least `n` bytes are buffered after `start`, unless the input ends first.
    fn ensure(&mut self, n: usize) -> io::Result<bool> {
        while self.end - self.start < n {
            if !self.fill()? {
                return Ok(self.end - self.start >= n);
            }
        }
        Ok(true)
    }

    fn io_error(&self, e: io::Error) -> Token<'static> {
        Token::Error(LexError {
            kind: LexErrorKind::Io {
                message: e.to_string(),
            },
            pos: self.pos(),
        })
    }

    /// Skips CR/LF (and, before the first ISA, a BOM); counts lines. Returns the number of
    /// spaces/tabs skipped right before the next segment. Out of line: the usual segment,
    /// after at most one line break, does not come here ([`token`](Self::token)).
    #[inline(never)]
    fn skip_formatting(&mut self) -> io::Result<u32> {
        if !self.bom_checked {
            self.ensure(3)?;
            if self.buf[self.start..self.end].starts_with(b"\xEF\xBB\xBF") {
                self.start += 3;
            }
            self.bom_checked = true;
        }
        let mut blanks = 0u32;
        loop {
            if self.start == self.end && !self.fill()? {
                return Ok(blanks);
            }
            let b = self.buf[self.start];
            match b {
                b'\n' => {
                    self.line += 1;
                    blanks = 0;
                }
                b'\r' => blanks = 0,
                b' ' | b'\t' => blanks += 1,
                _ => return Ok(blanks),
            }
            self.start += 1;
        }
    }

    /// Produces the next token, or `None` at the end of the input.
    ///
    /// Always inlined: called, it wrote the token to memory with 8-byte stores that the
    /// caller read back at once with 16-byte loads to move it, and a load that spans two
    /// stores in flight waits for them to retire (a failed store-to-load forward). That stall
    /// took ≈ 80 % of `check_stream`'s own time (≈ 4 % of a check); inlined, the token's
    /// fields stay in registers.
    #[inline(always)]
    pub fn next_token(&mut self) -> Option<Token<'_>> {
        self.token::<true>()
    }

    /// [`next_token`](Self::next_token) for a caller that only copies each segment's bytes:
    /// the segment's element separators are not noted (its [`Segment::fields`] is `None`, and
    /// [`Segment::elements`] finds them again). The tokens, positions and lines are the same;
    /// the scan is about a third shorter per segment (`eligo run` reads back the segments of
    /// its changes with findings this way, most of the file).
    #[inline(always)]
    pub fn next_token_unsplit(&mut self) -> Option<Token<'_>> {
        self.token::<false>()
    }

    #[inline(always)]
    fn token<const SEPS: bool>(&mut self) -> Option<Token<'_>> {
        // Tested before it is taken: `take` writes the field back for every segment.
        if self.pending_warning.is_some() {
            if let Some(w) = self.pending_warning.take() {
                return Some(Token::Warning(w));
            }
        }
        // The usual segment first: inside an interchange, at most one line break (LF or CRLF)
        // before it, six bytes buffered (the line break and the four the ISA test reads), its
        // first byte not formatting, and not an ISA. The general path below gives the same
        // token for it (no blanks, no refill) after ≈ 30 more instructions of tests and loads,
        // most of them of lexer fields that the previous segment's check had pushed out of
        // registers; it is left for blanks, blank lines, the buffer's last bytes and ISAs.
        let (delims, blanks) = 'head: {
            if let (true, Some(delims)) = (self.bom_checked, self.delims) {
                let head = self.buf.get(self.start..self.end);
                if let Some(c) = head.and_then(<[u8]>::first_chunk::<6>) {
                    let skip = match c {
                        [b'\n', ..] => 1,
                        [b'\r', b'\n', ..] => 2,
                        _ => 0,
                    };
                    if c[skip] > b' ' && !is_isa(&c[skip..]) {
                        self.line += u64::from(skip != 0);
                        self.start += skip;
                        self.seen_any = true;
                        break 'head (delims, 0);
                    }
                }
            }
            let blanks = match self.skip_formatting() {
                Ok(b) => b,
                Err(e) => return Some(self.io_error(e)),
            };
            if self.start == self.end {
                if !self.seen_any {
                    self.seen_any = true;
                    return Some(Token::Error(LexError {
                        kind: LexErrorKind::Empty,
                        pos: self.pos(),
                    }));
                }
                return None;
            }
            self.seen_any = true;
            if let Err(e) = self.ensure(4) {
                return Some(self.io_error(e));
            }
            if is_isa(&self.buf[self.start..self.end]) {
                return Some(self.read_isa(blanks));
            }
            let Some(delims) = self.delims else {
                return Some(self.skip_junk());
            };
            (delims, blanks)
        };
        self.read_segment::<SEPS>(delims, blanks)
    }

    /// Skips bytes up to the next `ISA` that could start an interchange.
    fn skip_junk(&mut self) -> Token<'_> {
        let pos = self.pos();
        let mut skipped: u64 = 0;
        // The bytes at `start` are known not to begin an interchange, so search from 1.
        let mut from = 1usize;
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = avail.get(from..).and_then(|a| memmem::find(a, b"ISA")) {
                let i = i + from;
                self.line += memchr_iter(b'\n', &avail[..i]).count() as u64;
                self.start += i;
                skipped += i as u64;
                break;
            }
            // Keep the last 2 bytes: "ISA" may straddle the chunk boundary.
            let keep = avail.len().min(2);
            let drop = avail.len() - keep;
            self.line += memchr_iter(b'\n', &avail[..drop]).count() as u64;
            self.start += drop;
            skipped += drop as u64;
            from = if drop == 0 { from } else { 0 };
            match self.fill() {
                Ok(true) => continue,
                Ok(false) => {
                    let rest = &self.buf[self.start..self.end];
                    self.line += memchr_iter(b'\n', rest).count() as u64;
                    skipped += rest.len() as u64;
                    self.start = self.end;
                    break;
                }
                Err(e) => return self.io_error(e),
            }
        }
        // Anything up to here belongs to no interchange.
        self.delims = None;
        Token::Error(LexError {
            kind: LexErrorKind::NotAnInterchange { len: skipped },
            pos,
        })
    }

    fn read_isa(&mut self, blanks: u32) -> Token<'_> {
        let pos = self.pos();
        if let Err(e) = self.ensure(ISA_LEN) {
            return self.io_error(e);
        }
        let avail = &self.buf[self.start..self.end];
        let elem = avail[3];
        let fixed = avail.len() >= ISA_LEN && ISA_SEPARATORS.iter().all(|&i| avail[i] == elem);
        let (len, delims, warning, seps) = if fixed {
            let rep = avail[82];
            let version = &avail[84..89];
            let delims = Delimiters {
                element: elem,
                component: avail[104],
                repetition: if version == b"00501" { Some(rep) } else { None },
                segment: avail[105],
            };
            (ISA_LEN, delims, None, ISA_SEPARATORS)
        } else {
            // Not fixed-width: find the 16th separator by scanning a bounded window. Buffer the
            // whole window first, or the result would depend on how the input was chunked.
            if let Err(e) = self.ensure(ISA_WINDOW) {
                return self.io_error(e);
            }
            let avail = &self.buf[self.start..self.end];
            let window = &avail[..avail.len().min(ISA_WINDOW)];
            let seps: Vec<usize> = memchr_iter(elem, window).take(16).collect();
            if seps.len() < 16 || seps[15] + 2 >= window.len() {
                // Cannot even find the ISA's end: give up on this interchange.
                self.start += 3;
                self.delims = None;
                return Token::Error(LexError {
                    kind: LexErrorKind::TruncatedIsa,
                    pos,
                });
            }
            let s16 = seps[15];
            let isa12 = &window[seps[11] + 1..seps[12]];
            let delims = Delimiters {
                element: elem,
                component: window[s16 + 1],
                repetition: if isa12 == b"00501" && seps[11] == seps[10] + 2 {
                    Some(window[seps[10] + 1])
                } else {
                    None
                },
                segment: window[s16 + 2],
            };
            let mut at = [0usize; 16];
            at.copy_from_slice(&seps);
            (
                s16 + 3,
                delims,
                Some(LexError {
                    kind: LexErrorKind::IsaNotFixedWidth,
                    pos,
                }),
                at,
            )
        };
        let mut delims = delims;
        // A repetition separator that is a letter, digit or another delimiter cannot be used:
        // splitting on it would cut data apart. The envelope layer reports ISA11 (TA1 016).
        if let Some(r) = delims.repetition {
            if r.is_ascii_alphanumeric()
                || r == b' '
                || r == delims.element
                || r == delims.component
                || r == delims.segment
            {
                delims.repetition = None;
            }
        }
        if let Some(which) = bad_delimiters(&delims) {
            let elements = isa_elements(&self.buf[self.start..self.end], &seps);
            // Skip past the ISA; everything up to the next ISA is unreadable.
            self.start += 3;
            self.delims = None;
            return Token::Error(LexError {
                kind: LexErrorKind::BadDelimiters { which, elements },
                pos,
            });
        }
        self.delims = Some(delims);
        self.patterns = Patterns::new(delims);
        let seg_start = self.start;
        self.start += len;
        if delims.segment == b'\n' {
            self.line += 1;
        }
        self.pending_warning = warning;
        Token::Segment(Segment {
            raw: &self.buf[seg_start..seg_start + len - 1],
            delims,
            pos,
            leading_blanks: blanks,
            seps: None,
        })
    }

    /// Always inlined into [`next_token`](Self::next_token), for the reason given there.
    #[inline(always)]
    fn read_segment<const SEPS: bool>(
        &mut self,
        delims: Delimiters,
        blanks: u32,
    ) -> Option<Token<'_>> {
        // The segment's position is taken where it is used, not kept from here: a refill
        // moves `start` and `base` by the same amount and leaves `line`, so `pos()` is the
        // same until the segment is consumed, and a copy kept across the scan was stores and
        // loads for every segment.
        let mut scan = Scan::default();
        let term_at = loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = scan.run::<SEPS>(avail, &mut self.seps, &self.patterns) {
                break i;
            }
            if scan.at > self.opts.max_segment_len {
                // Drop the runaway bytes and resynchronise at the next terminator or ISA.
                return Some(self.runaway(self.pos(), delims));
            }
            match self.fill() {
                Ok(true) => continue,
                Ok(false) => {
                    let pos = self.pos();
                    let rest = &self.buf[self.start..self.end];
                    self.line += memchr_iter(b'\n', rest).count() as u64;
                    self.start = self.end;
                    return Some(Token::Error(LexError {
                        kind: LexErrorKind::UnterminatedSegment,
                        pos,
                    }));
                }
                Err(e) => return Some(self.io_error(e)),
            }
        };
        if term_at > self.opts.max_segment_len {
            return Some(self.runaway(self.pos(), delims));
        }
        let pos = self.pos();
        let seg_start = self.start;
        // Line breaks inside a segment are invalid data, but they still move the line count.
        self.line += scan.newlines;
        if delims.segment == b'\n' {
            self.line += 1;
        }
        self.start += term_at + 1;
        Some(Token::Segment(Segment {
            raw: &self.buf[seg_start..seg_start + term_at],
            delims,
            pos,
            leading_blanks: blanks,
            seps: SEPS.then(|| &self.seps[..scan.found]),
        }))
    }

    /// Discards a segment that exceeded the limit, up to its terminator (read chunk by chunk so
    /// memory stays bounded), and reports it.
    fn runaway(&mut self, pos: Position, delims: Delimiters) -> Token<'_> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = memchr(delims.segment, avail) {
                self.line += memchr_iter(b'\n', &avail[..i]).count() as u64;
                self.start += i + 1;
                break;
            }
            self.line += memchr_iter(b'\n', avail).count() as u64;
            self.start = self.end;
            match self.fill() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => return self.io_error(e),
            }
        }
        Token::Error(LexError {
            kind: LexErrorKind::SegmentTooLong {
                limit: self.opts.max_segment_len,
            },
            pos,
        })
    }
}

/// The 16 elements of an ISA whose element separators stand at `seps` (ISA16 is the one byte
/// after the last separator).
fn isa_elements(isa: &[u8], seps: &[usize]) -> Vec<String> {
    (0..16)
        .map(|i| {
            let from = seps[i] + 1;
            let to = seps.get(i + 1).copied().unwrap_or(from + 1);
            String::from_utf8_lossy(&isa[from..to]).into_owned()
        })
        .collect()
}

fn bad_delimiters(d: &Delimiters) -> Option<&'static str> {
    let usable = |b: u8| !(b.is_ascii_alphanumeric() || b == b' ');
    if !usable(d.element) {
        return Some("element separator (ISA byte 4) is a letter, digit or space");
    }
    if !usable(d.component) {
        return Some("component separator (ISA16) is a letter, digit or space");
    }
    if !(usable(d.segment) || d.segment == b'\n') || d.segment == b' ' {
        return Some("segment terminator is a letter, digit or space");
    }
    if d.element == d.component || d.element == d.segment || d.component == d.segment {
        return Some("element separator, component separator and segment terminator must differ");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const ISA: &str = "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *240105*0930*^*00501*000000123*0*P*:~";

    fn collect(input: &[u8], chunk: usize) -> Vec<String> {
        collect_with(input, chunk, true)
    }

    /// The tokens as text, from [`Lexer::next_token`] or, without `split`,
    /// [`Lexer::next_token_unsplit`].
    fn collect_with(input: &[u8], chunk: usize, split: bool) -> Vec<String> {
        let mut lx = Lexer::with_options(
            input,
            LexerOptions {
                max_segment_len: 64,
                chunk,
            },
        );
        let mut out = Vec::new();
        loop {
            let t = if split {
                lx.next_token()
            } else {
                lx.next_token_unsplit()
            };
            let Some(t) = t else { break };
            out.push(match t {
                Token::Segment(s) => format!(
                    "{}@{}:{}",
                    String::from_utf8_lossy(s.raw()),
                    s.position().line,
                    s.position().offset
                ),
                Token::Warning(e) => format!("W:{:?}", e.kind),
                Token::Error(e) => format!("E:{:?}@{}", e.kind, e.pos.line),
            });
        }
        out
    }

    #[test]
    fn unsplit_tokens_are_the_same_tokens() {
        let long = "N1*".to_string() + &"X*".repeat(40);
        for input in [
            format!("{ISA}\nGS*BE*A~\r\nST*834*0001~  INS*Y*18~\nREF*0F*1\n2~"),
            format!("{ISA}GS*BE~{long}~ST*834~SE*2*0001~{ISA}GS~"),
            format!("{ISA}GS*BE*A~ST*834*0001"),
            format!("junk{ISA}GS**~~ST~"),
        ] {
            for chunk in [1, 3, 8, 9, 4096] {
                assert_eq!(
                    collect_with(input.as_bytes(), chunk, false),
                    collect(input.as_bytes(), chunk),
                    "{input:?} {chunk}"
                );
            }
        }
    }

    #[test]
    fn a_lexer_resumed_with_bytes_in_hand_gives_the_same_tokens() {
        let long = "N1*".to_string() + &"X*".repeat(20);
        let input = format!(
            "{ISA}\nGS*BE*A~\r\nST*834*0001~INS*Y*18~\nREF*0F*1\n2~{long}~  DTP*356~SE*6*0001~"
        );
        let opts = |chunk| LexerOptions {
            max_segment_len: 64,
            chunk,
        };
        let text = |t: Token<'_>| match t {
            Token::Segment(s) => format!("{}@{:?}", String::from_utf8_lossy(s.raw()), s.position()),
            Token::Warning(e) => format!("W:{:?}@{:?}", e.kind, e.pos),
            Token::Error(e) => format!("E:{:?}@{:?}", e.kind, e.pos),
        };
        // The tokens from the INS on, and where it starts, from a lexer that read it all.
        let mut lx = Lexer::with_options(input.as_bytes(), opts(4096));
        let mut all = Vec::new();
        let mut from = None;
        while let Some(t) = lx.next_token() {
            if let Token::Segment(s) = &t {
                if s.id() == b"INS" {
                    from = Some((s.position(), s.delimiters()));
                }
            }
            if from.is_some() {
                all.push(text(t));
            }
        }
        let (at, delims) = from.expect("an INS");
        let rest = &input.as_bytes()[at.offset as usize..];
        for chunk in [1, 5, 64, 4096] {
            for filled in [0, 1, 3, 10, 11, 12, 30, rest.len() - 1, rest.len()] {
                // Stale bytes after the filled ones must never be read.
                let mut buf = rest[..filled].to_vec();
                buf.extend_from_slice(b"~~~~ISA*~~~");
                let mut lx =
                    Lexer::resume_filled(&rest[filled..], opts(chunk), delims, at, buf, filled);
                let mut got = Vec::new();
                while let Some(t) = lx.next_token() {
                    got.push(text(t));
                }
                assert_eq!(got, all, "chunk {chunk}, {filled} bytes in hand");
            }
        }
    }

    #[test]
    fn isa_is_exactly_106_bytes() {
        assert_eq!(ISA.len(), ISA_LEN);
    }

    #[test]
    fn splits_segments_with_any_line_endings_and_tiny_chunks() {
        for sep in ["", "\n", "\r\n", "\r"] {
            let input = format!("{ISA}{sep}GS*BE*A~{sep}ST*834*0001~{sep}");
            for chunk in [1, 2, 7, 4096] {
                let toks = collect(input.as_bytes(), chunk);
                assert_eq!(toks.len(), 3, "{sep:?} {chunk}: {toks:?}");
                assert!(toks[1].starts_with("GS*BE*A@"), "{toks:?}");
                assert!(toks[2].starts_with("ST*834*0001@"), "{toks:?}");
            }
        }
        let toks = collect(format!("{ISA}\nGS*BE~\r\nST~").as_bytes(), 3);
        assert_eq!(toks[1], "GS*BE@2:107");
        assert_eq!(toks[2], "ST@3:115");
    }

    #[test]
    fn takes_delimiters_from_each_isa() {
        let isa2 = ISA
            .replace('*', "|")
            .replace("|:~", "|>!")
            .replace("|^|", "|~|");
        let input = format!("{ISA}GS*X:Y~IEA*0*1~{isa2}GS|A>B!");
        let mut lx = Lexer::new(input.as_bytes());
        let mut ids = Vec::new();
        while let Some(t) = lx.next_token() {
            if let Token::Segment(s) = t {
                ids.push((String::from_utf8_lossy(s.id()).to_string(), s.delimiters()));
            }
        }
        assert_eq!(ids.len(), 5);
        assert_eq!(ids[4].0, "GS");
        assert_eq!(ids[4].1.element, b'|');
        assert_eq!(ids[4].1.component, b'>');
        assert_eq!(ids[4].1.segment, b'!');
        assert_eq!(ids[4].1.repetition, Some(b'~'));
    }

    /// `token`'s quick test is "above a space": a low byte that is not formatting
    /// (here 0x01 and 0x0B, right after a line feed) still starts the segment, and blanks,
    /// blank lines and CR LF still move the line and offset as the byte-by-byte loop does.
    #[test]
    fn low_bytes_after_a_line_feed_start_a_segment() {
        let input = format!("{ISA}\n\x01GS*BE~\n\x0bST~\n \tSE~\n\n\r\nGE~");
        for chunk in [1, 2, 3, 4096] {
            let toks = collect(input.as_bytes(), chunk);
            assert_eq!(
                toks[1..],
                ["\x01GS*BE@2:107", "\x0bST@3:115", "SE@4:122", "GE@7:129"],
                "{chunk}"
            );
        }
    }

    /// `token`'s quick path (at most one LF or CRLF, six bytes buffered, not an ISA) against
    /// the general one: one byte a read never has six buffered, so it takes the general path
    /// for every segment; every chunk size gives the same tokens. `INS` and `ISAX` start like
    /// an ISA and are not; a lone CR, a CR before a blank, blank lines and segments whose
    /// ID is shorter than the ISA test's four bytes go the general way.
    #[test]
    fn quick_path_tokens_are_the_general_paths() {
        let input =
            format!("{ISA}\r\nINS*Y~\rISAX*1~\r\nIS~I~\n\r\nN1*IL~\r \nDTP*3~\n\nREF~\r\rSE*1~");
        let want = collect(input.as_bytes(), 1);
        assert_eq!(
            want[1..],
            [
                "INS*Y@2:108",
                "ISAX*1@2:115",
                "IS@3:124",
                "I@3:127",
                "N1*IL@5:132",
                "DTP*3@6:141",
                "REF@8:149",
                "SE*1@8:155"
            ]
        );
        for chunk in [2, 3, 5, 6, 7, 11, 4096] {
            assert_eq!(collect(input.as_bytes(), chunk), want, "{chunk}");
        }
    }

    #[test]
    fn bom_and_blank_lines_are_skipped() {
        let input = format!("\u{feff}\n\n{ISA}\nGS*BE~");
        let toks = collect(input.as_bytes(), 5);
        assert!(toks[0].ends_with(":@3:5"), "{toks:?}");
        assert_eq!(toks.len(), 2);
    }

    #[test]
    fn empty_input_is_an_error() {
        assert_eq!(collect(b"", 8), vec!["E:Empty@1"]);
        assert_eq!(collect(b"\r\n\n", 8), vec!["E:Empty@3"]);
    }

    #[test]
    fn garbage_is_reported_and_skipped_to_next_isa() {
        let input = format!("hello\x00\x01world\n{ISA}GS~");
        let toks = collect(input.as_bytes(), 3);
        assert_eq!(toks[0], "E:NotAnInterchange { len: 13 }@1");
        assert!(toks[1].starts_with("ISA*"), "{toks:?}");
        let bin: Vec<u8> = (0..200u32).map(|i| ((i * 37 + 11) % 256) as u8).collect();
        let toks = collect(&bin, 16);
        assert_eq!(toks.len(), 1, "{toks:?}");
        assert!(toks[0].starts_with("E:NotAnInterchange { len: 200 }"));
    }

    #[test]
    fn truncated_segment_and_truncated_isa() {
        let toks = collect(format!("{ISA}GS*BE*AB").as_bytes(), 4);
        assert_eq!(toks[1], "E:UnterminatedSegment@1");
        let toks = collect(b"ISA*00*   *00", 4);
        assert_eq!(
            toks,
            vec!["E:TruncatedIsa@1", "E:NotAnInterchange { len: 10 }@1"]
        );
    }

    #[test]
    fn runaway_segment_is_bounded() {
        let long = "X".repeat(1000);
        let input = format!("{ISA}GS*{long}~ST*834~");
        let toks = collect(input.as_bytes(), 16);
        assert_eq!(toks[1], "E:SegmentTooLong { limit: 64 }@1");
        assert!(toks[2].starts_with("ST*834@"));
    }

    #[test]
    fn unpadded_isa_is_read_with_a_warning() {
        let isa = "ISA*00* *00* *ZZ*123456789 *ZZ*VBA *190424*1302*^*00501*000000001*0*P*:~";
        let toks = collect(format!("{isa}\nGS*BE~").as_bytes(), 7);
        assert!(toks[0].starts_with("ISA*00* *00*"), "{toks:?}");
        assert_eq!(toks[1], "W:IsaNotFixedWidth");
        assert!(toks[2].starts_with("GS*BE@2"));
    }

    #[test]
    fn bad_delimiters_are_rejected() {
        let isa = ISA.replace(":~", "A~");
        let toks = collect(isa.as_bytes(), 200);
        assert!(toks[0].starts_with("E:BadDelimiters"), "{toks:?}");
    }

    #[test]
    fn elements_and_components() {
        let d = Delimiters::DEFAULT;
        let s = Segment::new(b"NM1*IL*1*DOE**:B:C", d, Position::default());
        assert_eq!(s.id(), b"NM1");
        let e: Vec<&[u8]> = s.elements().collect();
        assert_eq!(e, vec![&b"IL"[..], b"1", b"DOE", b"", b":B:C"]);
        assert_eq!(s.element(3), b"DOE");
        assert_eq!(s.element(9), b"");
        let c: Vec<&[u8]> = split(s.element(5), b':').collect();
        assert_eq!(c, vec![&b""[..], b"B", b"C"]);
        let bare = Segment::new(b"SE", d, Position::default());
        assert_eq!(bare.elements().count(), 0);
    }

    /// The scan finds what the three searches it replaced found (the terminator with
    /// `memchr`, the line breaks before it, the element separators), at every length and
    /// position, whatever the delimiters (a line break may be the terminator or the element
    /// separator), and when the bytes arrive in pieces, moved in memory between them (the
    /// lexer refilling its buffer mid-segment). Both scans: the sixteen-byte one of x86-64
    /// and the eight-byte one of the other targets.
    #[test]
    fn scan_finds_terminator_separators_and_line_breaks() {
        #[cfg(target_arch = "x86_64")]
        const {
            assert!(WIDE, "x86-64 scans sixteen bytes at a time")
        };
        let mut seed = 5u64;
        let mut seps = Vec::new();
        let mut moved = Vec::new();
        for (term, elem) in [(b'~', b'*'), (b'\n', b'*'), (b'~', b'\n')] {
            let delims = Delimiters {
                element: elem,
                component: b':',
                repetition: None,
                segment: term,
            };
            // With the bytes next to a line break and other control bytes, which the scan's
            // line-break test (`below_11`) flags or must not.
            let alphabet = [
                term, elem, b'\n', b'A', 0x8A, b'\r', 0xFF, b'*', 0x00, 0x09, 0x0B, 0x0C, 0x7F,
                0x80, b'\n', b' ',
            ];
            for len in 0..120usize {
                for round in 0..30 {
                    let mut next = || {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        seed >> 32
                    };
                    // Most rounds draw from all sixteen bytes; some from the first two only
                    // (delimiters packed close), some mostly letters (long runs without any).
                    let pick = match round % 3 {
                        0 => 16,
                        1 => 2,
                        _ => 3,
                    };
                    let s: Vec<u8> = (0..len)
                        .map(|_| {
                            let r = next() as usize;
                            if pick == 3 && r % 8 != 0 {
                                b'A'
                            } else {
                                alphabet[(r >> 4) % pick]
                            }
                        })
                        .collect();
                    let want_term = memchr(term, &s);
                    let body = &s[..want_term.unwrap_or(len)];
                    let want_nl = body.iter().filter(|b| **b == b'\n').count() as u64;
                    let want_seps: Vec<u32> = body
                        .iter()
                        .enumerate()
                        .filter(|(_, b)| **b == elem)
                        .map(|(i, _)| i as u32)
                        .collect();
                    // Whole, in two pieces and in three, the later pieces at another address.
                    let a = next() as usize % (len + 1);
                    let b = a + next() as usize % (len - a + 1);
                    let cases = [
                        vec![len],
                        vec![len / 3, len],
                        vec![len.saturating_sub(5), len],
                        vec![a, len],
                        vec![a, b, len],
                    ];
                    for (wide, pieces) in [false, true]
                        .iter()
                        .flat_map(|w| cases.iter().map(move |p| (*w, p)))
                    {
                        let mut scan = Scan::default();
                        let pat = Patterns::new(delims);
                        let mut got = None;
                        for (k, &cut) in pieces.iter().enumerate() {
                            // The piece at an offset of 0 to 15 bytes, as a refill may move it.
                            let shift = (k * 7 + len) % 16;
                            moved.clear();
                            moved.resize(shift, b'~');
                            moved.extend_from_slice(&s[..cut]);
                            let piece = &moved[shift..];
                            got = if wide {
                                scan.run_in::<true, WIDE>(piece, &mut seps, &pat)
                            } else {
                                scan.run_in::<true, false>(piece, &mut seps, &pat)
                            };
                            if got.is_some() {
                                break;
                            }
                        }
                        let ctx = || format!("{s:?} pieces {pieces:?} wide {wide}");
                        assert_eq!(got, want_term, "{}", ctx());
                        if got.is_some() {
                            assert_eq!(scan.newlines, want_nl, "{}", ctx());
                            assert_eq!(&seps[..scan.found], &want_seps[..], "{}", ctx());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fields_split_like_segment() {
        let d = Delimiters::DEFAULT;
        // Every length up to 40 and every mix of the separator, the bytes next to it and
        // high bytes, so that each position of the eight-byte chunks and the tail is covered.
        let alphabet = [b'*', b'A', b')', b'+', 0x80, 0xAA, 0xFF, 0x00];
        let mut seed = 7u64;
        let mut splitter = Splitter::default();
        for len in 0..40usize {
            for _ in 0..200 {
                let raw: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        alphabet[(seed >> 60) as usize % alphabet.len()]
                    })
                    .collect();
                let s = Segment::new(&raw, d, Position::default());
                let f = splitter.split(&raw, d.element);
                assert_eq!(f.id(), s.id());
                let a: Vec<&[u8]> = f.elements().collect();
                let b: Vec<&[u8]> = s.elements().collect();
                assert_eq!(a, b, "{raw:?}");
                assert_eq!(f.len(), b.len());
                for n in 0..len + 2 {
                    assert_eq!(f.element(n), s.element(n));
                }
            }
        }
    }
}
