//! A change's segments read again, as received, from its input file.
//!
//! The reject report points every business finding at the segment (and line) that holds the
//! offending value, and shows an analyst the member's segments. `eligo run` applies changes
//! long after the parse, from spooled records that keep only their set and segment range:
//! holding every member's segments until then would take gigabytes on a large file, and
//! reading the whole file once more for the report costs a second parse. So the parse notes
//! where some member loops start (a [`SetMarks`] per set, one mark per [`SPACING`] bytes of
//! input) and [`SegmentReader`] reads a range from the nearest mark before it with positional
//! reads. The changes with findings arrive in file order, so the reader mostly goes on from
//! where it stopped: all of them together cost at most one more pass of the lexer over the
//! parts of the file that hold them.

use crate::lexer::{Delimiters, Lexer, LexerOptions, Position, Segment, Token};
use crate::report::RawSegment;
use crate::split::RangeReader;
use std::collections::HashMap;
use std::fs::File;
use std::io;

/// ISA13, GS06 and ST02 of a set.
pub type SetKey = (String, String, String);

/// A [`SetKey`] borrowed from a change's source trace.
pub type SetRef<'a> = (&'a str, &'a str, &'a str);

/// Whether `key` names the set `set`.
fn is_set(key: &SetKey, set: SetRef<'_>) -> bool {
    key.0 == set.0 && key.1 == set.1 && key.2 == set.2
}

/// At most one mark per this many bytes of a set: a range is found by lexing at most this far
/// past its mark (a 1 GB file needs about 65,000 marks, 1.5 MB).
pub const SPACING: u64 = 16 << 10;

/// Where a member loop starts: its first segment's position in the set (ST = 1) and in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub position: u32,
    pub at: Position,
}

/// Marks of one set, in increasing order, at least [`SPACING`] bytes apart.
#[derive(Debug, Clone, Default)]
pub struct SetMarks {
    delims: Option<Delimiters>,
    marks: Vec<Mark>,
}

impl SetMarks {
    /// Notes the start of a member loop; kept when it is far enough past the last mark.
    pub fn note(&mut self, delims: Delimiters, m: Mark) {
        self.delims.get_or_insert(delims);
        match self.marks.last() {
            Some(l) if m.position <= l.position || m.at.offset < l.at.offset + SPACING => {}
            _ => self.marks.push(m),
        }
    }

    /// Notes the marks of the next part of the set (a piece parsed on another thread).
    pub fn append(&mut self, other: SetMarks) {
        if let Some(d) = other.delims {
            for m in other.marks {
                self.note(d, m);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

/// The marks of every set of one input file.
#[derive(Debug, Default)]
pub struct LoopIndex {
    sets: HashMap<SetKey, SetMarks>,
}

impl LoopIndex {
    /// Files the marks of a set that ended. A set whose key was seen before in the file (a
    /// duplicate ST02, which the 999 rejects) keeps the marks of its first occurrence.
    pub fn insert(&mut self, key: SetKey, marks: SetMarks) {
        if !marks.is_empty() {
            self.sets.entry(key).or_insert(marks);
        }
    }
}

/// One segment of a [`Segments`]: its place in the set and the file, and its bytes.
#[derive(Debug, Clone, Copy)]
struct Copied {
    position: u32,
    at: Position,
    start: usize,
    end: usize,
}

/// Segments of one range of a set, copied from the file.
#[derive(Debug, Default)]
pub struct Segments {
    delims: Option<Delimiters>,
    buf: Vec<u8>,
    segs: Vec<Copied>,
}

/// One segment as received, borrowed from a [`Segments`].
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub position: u32,
    pub segment: Segment<'a>,
}

impl Segments {
    fn clear(&mut self, delims: Delimiters) {
        self.delims = Some(delims);
        self.buf.clear();
        self.segs.clear();
    }

    fn push(&mut self, position: u32, seg: &Segment<'_>) {
        let start = self.buf.len();
        self.buf.extend_from_slice(seg.raw());
        self.segs.push(Copied {
            position,
            at: seg.position(),
            start,
            end: self.buf.len(),
        });
    }

    /// The segments at positions `first..=last`, in order.
    pub fn range(&self, first: u32, last: u32) -> impl Iterator<Item = Received<'_>> + '_ {
        let delims = self.delims.unwrap_or(Delimiters::DEFAULT);
        self.segs
            .iter()
            .filter(move |s| s.position >= first && s.position <= last)
            .map(move |s| Received {
                position: s.position,
                segment: Segment::new(&self.buf[s.start..s.end], delims, s.at),
            })
    }

    fn covers(&self, first: u32, last: u32) -> bool {
        match (self.segs.first(), self.segs.last()) {
            (Some(a), Some(b)) => a.position <= first && last <= b.position,
            _ => false,
        }
    }
}

impl Received<'_> {
    /// The segment as the report keeps it.
    ///
    /// The elements' vector is made at its size (one element per separator): collected from
    /// the iterator, which gives no size, it grew from 4 to 8 to 16, two reallocations for
    /// most member segments (docs/performance.md, runperf16).
    pub fn to_raw(&self) -> RawSegment {
        let sep = self.segment.delimiters().element;
        let n = self.segment.raw().iter().filter(|&&b| b == sep).count();
        let mut elements = Vec::with_capacity(n);
        elements.extend(
            self.segment
                .elements()
                .map(|x| String::from_utf8_lossy(x).into_owned()),
        );
        RawSegment {
            position: self.position,
            line: self.segment.position().line,
            id: String::from_utf8_lossy(self.segment.id()).into_owned(),
            elements,
        }
    }
}

/// Reads a file from an offset on with positional reads, so that a cursor and the reader
/// that made it share one open file without sharing a file offset.
struct FileAt {
    file: File,
    pos: u64,
}

impl io::Read for FileAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = RangeReader::new(&self.file, self.pos, u64::MAX).read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Where a [`SegmentReader`] stopped: a lexer inside a set, and the position of its next segment.
struct Cursor {
    set: SetKey,
    lexer: Lexer<FileAt>,
    next: u32,
}

/// How much the cursor's lexer reads at a time: a member loop is a few hundred bytes, and a
/// mark at most [`SPACING`] before it.
const CHUNK: usize = 16 << 10;

/// Reads ranges of segments of one input file again, with the file's [`LoopIndex`].
pub struct SegmentReader {
    file: File,
    index: LoopIndex,
    cursor: Option<Cursor>,
    /// The set of the last range asked for. It is kept, and overwritten in place when the set
    /// changes, so that asking for a range (once per change with findings) copies no key
    /// and the marks are looked up with it.
    key: SetKey,
    /// Whether `segments` holds a range of `key`'s set.
    filled: bool,
    segments: Segments,
}

impl SegmentReader {
    pub fn new(file: File, index: LoopIndex) -> Self {
        SegmentReader {
            file,
            index,
            cursor: None,
            key: SetKey::default(),
            filled: false,
            segments: Segments::default(),
        }
    }

    /// The segments at positions `first..=last` of a set, as received; `None` when the set has
    /// no marks (its members were never seen) or the range starts before its first member.
    /// Ranges asked for in file order are read in one pass; one inside the last range read is
    /// served from it (the changes of one member loop share its segments).
    pub fn read(
        &mut self,
        set: SetRef<'_>,
        first: u32,
        last: u32,
    ) -> io::Result<Option<&Segments>> {
        if first > last {
            return Ok(None);
        }
        let same = is_set(&self.key, set);
        if same && self.filled && self.segments.covers(first, last) {
            return Ok(Some(&self.segments));
        }
        self.filled = false;
        if !same {
            for (k, s) in [
                (&mut self.key.0, set.0),
                (&mut self.key.1, set.1),
                (&mut self.key.2, set.2),
            ] {
                k.clear();
                k.push_str(s);
            }
        }
        let Some(marks) = self.index.sets.get(&self.key) else {
            return Ok(None);
        };
        let Some(delims) = marks.delims else {
            return Ok(None);
        };
        let i = marks.marks.partition_point(|m| m.position <= first);
        let Some(mark) = i.checked_sub(1).map(|i| marks.marks[i]) else {
            return Ok(None);
        };
        // Go on from the cursor when it is in this set, not past `first`, and no mark lies
        // between it and `first` (from which lexing would be shorter).
        let reuse = self
            .cursor
            .as_ref()
            .is_some_and(|c| is_set(&c.set, set) && c.next <= first && c.next >= mark.position);
        if !reuse {
            let file = self.file.try_clone()?;
            let opts = LexerOptions {
                chunk: CHUNK,
                ..LexerOptions::default()
            };
            self.cursor = Some(Cursor {
                set: self.key.clone(),
                lexer: Lexer::resume(
                    FileAt {
                        file,
                        pos: mark.at.offset,
                    },
                    opts,
                    delims,
                    mark.at,
                ),
                next: mark.position,
            });
        }
        let Some(c) = self.cursor.as_mut() else {
            return Ok(None);
        };
        self.segments.clear(delims);
        let mut lost = false;
        while c.next <= last {
            // Only the segments' bytes are kept: the lexer need not note their separators.
            match c.lexer.next_token_unsplit() {
                Some(Token::Segment(seg)) => {
                    let position = c.next;
                    c.next += 1;
                    if position >= first {
                        self.segments.push(position, &seg);
                    }
                }
                Some(Token::Warning(_)) => {}
                // The parse read this part of the file: an error or its end here means the
                // file changed since (the run re-hashes it, so this does not happen), or an
                // envelope error the parse also met. The segments read so far are what there is.
                Some(Token::Error(_)) | None => {
                    lost = true;
                    break;
                }
            }
        }
        if lost {
            self.cursor = None;
        }
        self.filled = true;
        Ok(Some(&self.segments))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Every segment of the file by (set key, position), and the marks a parse would note
    /// (one at each INS: the member loops' first segments).
    /// Line and bytes of each segment by set and position.
    type Segs = HashMap<(SetKey, u32), (u64, Vec<u8>)>;

    fn sequential(x12: &[u8]) -> (Segs, LoopIndex) {
        let mut lexer = Lexer::new(x12);
        let mut all = HashMap::new();
        let mut index = LoopIndex::default();
        let (mut isa13, mut gs06, mut key) = (String::new(), String::new(), SetKey::default());
        let mut marks = SetMarks::default();
        let mut position = 0u32;
        while let Some(tok) = lexer.next_token() {
            let Token::Segment(seg) = tok else { continue };
            let text = |n| String::from_utf8_lossy(seg.element(n)).into_owned();
            match seg.id() {
                b"ISA" => isa13 = text(13),
                b"GS" => gs06 = text(6),
                b"ST" => {
                    key = (isa13.clone(), gs06.clone(), text(2));
                    position = 0;
                }
                _ => {}
            }
            position += 1;
            if seg.id() == b"INS" {
                marks.note(
                    seg.delimiters(),
                    Mark {
                        position,
                        at: seg.position(),
                    },
                );
            }
            if seg.id() == b"SE" {
                index.insert(key.clone(), std::mem::take(&mut marks));
            }
            all.insert(
                (key.clone(), position),
                (seg.position().line, seg.raw().to_vec()),
            );
        }
        (all, index)
    }

    #[test]
    fn ranges_read_again_equal_a_sequential_read_in_any_order() {
        let mut x12 = Vec::new();
        let o = crate::gen::GenOptions {
            size_mb: 0.4,
            seed: 5,
            full: false,
            error_rate: 0.0,
            sets: 2,
        };
        crate::gen::generate(&o, &mut x12).unwrap();
        // Line breaks after every terminator: lines must come out right too.
        let term = x12[105];
        let x12: Vec<u8> = x12
            .iter()
            .flat_map(|&b| {
                if b == term {
                    vec![b, b'\r', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&x12).unwrap();
        let (all, index) = sequential(&x12);
        let keys: Vec<SetKey> = index.sets.keys().cloned().collect();
        assert_eq!(keys.len(), 2);
        assert!(
            index.sets.values().all(|m| m.marks.len() > 5),
            "too few marks"
        );
        let mut reader = SegmentReader::new(file, index);
        // Forward, backward, within the last range, across marks, in both sets.
        let mut seed = 7u64;
        let mut next = |n: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % u64::from(n)) as u32
        };
        for i in 0..400 {
            let set = &keys[(i / 50) % 2];
            let max = all
                .keys()
                .filter(|(k, _)| k == set)
                .map(|(_, p)| *p)
                .max()
                .unwrap();
            let first = if i % 7 == 3 {
                5 + next(20)
            } else {
                5 + next(max - 40)
            };
            let last = first + next(30);
            let Some(segs) = reader.read((&set.0, &set.1, &set.2), first, last).unwrap() else {
                // Only a range before the set's first member has no mark.
                assert!(first < 20, "no segments for {first}..={last}");
                continue;
            };
            let got: Vec<(u32, u64, Vec<u8>)> = segs
                .range(first, last)
                .map(|s| {
                    (
                        s.position,
                        s.segment.position().line,
                        s.segment.raw().to_vec(),
                    )
                })
                .collect();
            let want: Vec<(u32, u64, Vec<u8>)> = (first..=last)
                .filter_map(|p| all.get(&(set.clone(), p)).map(|(l, r)| (p, *l, r.clone())))
                .collect();
            assert_eq!(got, want, "{first}..={last}");
        }
    }

    #[test]
    fn marks_keep_their_distance_and_order() {
        let d = Delimiters::DEFAULT;
        let at = |offset| Position { offset, line: 1 };
        let mut m = SetMarks::default();
        for (position, offset) in [(5, 100), (9, 200), (20, 100 + SPACING), (15, 300 + SPACING)] {
            m.note(
                d,
                Mark {
                    position,
                    at: at(offset),
                },
            );
        }
        let kept: Vec<u32> = m.marks.iter().map(|m| m.position).collect();
        assert_eq!(kept, [5, 20]);
        let mut piece = SetMarks::default();
        piece.note(
            d,
            Mark {
                position: 30,
                at: at(100 + 2 * SPACING),
            },
        );
        m.append(piece);
        assert_eq!(m.marks.len(), 3);
    }
}
