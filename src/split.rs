//! In-file parallel checking: one large transaction set is cut into pieces at subscriber
//! boundaries and the pieces are checked on several threads, with exactly the findings a
//! sequential check gives.
//!
//! The state a piece starts in is only known once everything before it was checked. Between
//! two members, though, nearly all of it is the same everywhere in a set: the envelope, the
//! header, the loop stack up to the member loop. So every piece after the first starts from
//! that common state (a *boundary fork*): its segment position and line number come from
//! counting terminators and line breaks, which is cheap, and the counters that add up (members,
//! errors, member-loop repetitions) start at zero. The piece before it checks one segment more
//! than its share, the first segment of the next piece, which closes its last member; then the
//! two states at that point are compared field by field. Only when they are equal are the later
//! piece's findings used; otherwise the rest of the set is checked in sequence from the real
//! state, so a wrong guess costs time and never changes a finding. Pieces are cut only before
//! `INS*Y` (a subscriber), so the one rule that looks back across members (834-S3: a
//! dependent's REF*0F equals its subscriber's) starts afresh; a piece that still needed the
//! member before it is checked again too.
//!
//! What a piece delivers is the observer's to say ([`Split`]): each piece reports to an
//! observer of its own, which the file's observer takes back, piece by piece in order, once
//! the piece's start state proved right; a piece whose guess was wrong is dropped whole.
//! `check` and `ack` ([`check_file`], for observers that do without member records) keep each
//! piece's findings; `convert` ([`crate::batch::convert_x12_file`]) keeps the encoded change
//! records of the members the piece closed. A piece's results wait in memory until the pieces
//! before it are done; at most a few pieces are in flight, so memory stays bounded whatever
//! the file size. The file is read with positional reads rather than mapped, so the page cache
//! is not counted as the process's memory (and a file cut short while it is read reads as a
//! shorter file, not as a `SIGBUS`); a piece's bytes are usually read once, by the planner,
//! which counts them and hands them to the piece's thread (`Planner::next_piece`).

use crate::check::{
    check_stream, is_envelope, Checker, Engine, GroupInfo, GroupResult, InterchangeInfo, Observer,
    SetInfo, SetResult, Ta1Result,
};
use crate::finding::Finding;
use crate::lexer::{Delimiters, LexErrorKind, Lexer, Position, Token};
use crate::validate::record::Record;
use crate::validate::{Additive, Caches, Standards};
use memchr::memmem;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

/// How a file is cut up.
#[derive(Debug, Clone, Copy)]
pub struct SplitOptions {
    /// Threads checking pieces; 1 checks in sequence.
    pub jobs: usize,
    /// Bytes per piece (a piece ends at the first subscriber after this many bytes).
    pub piece: u64,
    /// A file shorter than this is read in sequence. (A set in a longer file is cut when it
    /// goes on past its first piece.)
    pub min_set: u64,
}

impl SplitOptions {
    /// `jobs` threads, pieces of 512 KiB (or `ELIGO_SPLIT_PIECE` bytes, which the tests use
    /// to cut small files into many pieces), files of at least 8 pieces. (Half the 1 MiB of
    /// before, with twice the pieces in flight: the same bytes queued, half the memory per
    /// piece; a converted piece's output is 3.5 times its input.)
    pub fn new(jobs: usize) -> SplitOptions {
        let piece = std::env::var("ELIGO_SPLIT_PIECE")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|p| *p > 0)
            .unwrap_or(512 << 10);
        SplitOptions {
            jobs: jobs.max(1),
            piece,
            min_set: piece.saturating_mul(8),
        }
    }
}

/// What the cutting did, for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SplitStats {
    /// Sets (or rests of sets) checked in pieces.
    pub regions: u64,
    /// Pieces whose results were used.
    pub pieces: u64,
    /// Pieces whose guessed start state was wrong (the rest of their set was checked in
    /// sequence).
    pub fallbacks: u64,
}

/// An observer whose work on the members of a set can be done in pieces on other threads.
///
/// Inside a set, between two members, a piece sees only [`Observer::finding`] and
/// [`Observer::member`] (and [`Observer::header`] never: the header is complete before the
/// first cut). So the observer hands each piece a fresh observer, [`Split::piece`], built from
/// what stays the same between the members of one set (its header, its envelope ids), and
/// later takes it back with [`Split::merge`]: the result must be what the observer would have
/// become had it seen the piece's events itself.
pub trait Split: Observer {
    /// What a piece reports to; it runs on another thread.
    type Piece: Observer + Send;
    /// A fresh observer for a piece of the open set. Called between two members of a set,
    /// once per piece, often before the pieces ahead of it are merged (so it may use only what
    /// stays the same within a set). None when this observer does not take pieces: the rest of
    /// the file is then read in sequence.
    fn piece(&mut self) -> Option<Self::Piece>;
    /// Takes back a piece whose start state proved right, pieces in file order.
    fn merge(&mut self, piece: Self::Piece);
}

/// An observer that does without member records, as a [`Split`]: a piece keeps its findings,
/// and merging delivers them.
struct Findings<'o, O: Observer>(&'o mut O);

impl<O: Observer> Observer for Findings<'_, O> {
    fn finding(&mut self, f: Finding) {
        self.0.finding(f);
    }
    fn interchange_start(&mut self, i: &InterchangeInfo) {
        self.0.interchange_start(i);
    }
    fn interchange_end(&mut self, i: &InterchangeInfo, ta1: Ta1Result, groups: u32) {
        self.0.interchange_end(i, ta1, groups);
    }
    fn group_start(&mut self, g: &GroupInfo) {
        self.0.group_start(g);
    }
    fn group_end(&mut self, r: &GroupResult) {
        self.0.group_end(r);
    }
    fn set_start(&mut self, s: &SetInfo) {
        self.0.set_start(s);
    }
    fn header(&mut self, rec: &Record, std: &Standards) {
        self.0.header(rec, std);
    }
    fn member(&mut self, rec: &Record, std: &Standards) {
        self.0.member(rec, std);
    }
    fn set_end(&mut self, r: &SetResult) {
        self.0.set_end(r);
    }
    fn wants_records(&self) -> bool {
        self.0.wants_records()
    }
}

impl<O: Observer> Split for Findings<'_, O> {
    type Piece = Vec<Finding>;
    fn piece(&mut self) -> Option<Vec<Finding>> {
        Some(Vec::new())
    }
    fn merge(&mut self, piece: Vec<Finding>) {
        for f in piece {
            self.0.finding(f);
        }
    }
}

/// Checks one file, cutting its large sets into pieces checked on `opts.jobs` threads when
/// the observer does without member records ([`Observer::wants_records`]); otherwise reads it
/// in sequence like [`check_stream`].
pub fn check_file<O: Observer>(
    engine: &Engine,
    file: &File,
    observer: &mut O,
    opts: SplitOptions,
) -> SplitStats {
    if observer.wants_records() {
        check_stream(
            engine,
            io::BufReader::with_capacity(1 << 16, file),
            observer,
        );
        return SplitStats::default();
    }
    split_file(engine, file, &mut Findings(observer), opts)
}

/// Checks one file, cutting its large sets into pieces checked on `opts.jobs` threads, each
/// piece reporting to its own observer ([`Split`]); small files, one job, or an observer that
/// takes no pieces read the file in sequence like [`check_stream`].
pub fn split_file<S: Split>(
    engine: &Engine,
    file: &File,
    observer: &mut S,
    opts: SplitOptions,
) -> SplitStats {
    let mut stats = SplitStats::default();
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if opts.jobs < 2 || len < opts.min_set || !cfg!(unix) {
        check_stream(
            engine,
            io::BufReader::with_capacity(1 << 16, file),
            observer,
        );
        return stats;
    }
    let mut checker = Checker::new(engine);
    let mut lexer = Lexer::with_options(RangeReader::new(file, 0, len), engine.lexer);
    // Offset before which no set is cut: the rest of a set too small to be worth it, or the
    // stretch after a failed guess.
    let mut quiet_until = 0u64;
    let mut spare = Spare::default();
    while let Some(tok) = lexer.next_token() {
        match tok {
            Token::Segment(seg) => {
                let delims = seg.delimiters();
                let at = seg.position().offset;
                checker.segment(&seg, observer);
                if at < quiet_until || !checker.at_member_start() {
                    continue;
                }
                let after = lexer.checkpoint();
                let region = Region {
                    engine,
                    file,
                    len,
                    delims,
                    opts,
                };
                match region.run(&mut checker, after, observer, &mut stats, &mut spare) {
                    Outcome::NotWorth { set_end } => quiet_until = set_end,
                    Outcome::Resume { at, blocked } => {
                        if blocked {
                            // A guess failed here: read a little in sequence before cutting
                            // again, so that a run of odd members is not guessed at over and
                            // over.
                            quiet_until = at.offset.saturating_add(opts.piece.saturating_mul(2));
                        }
                        lexer = Lexer::resume(
                            RangeReader::new(file, at.offset, len),
                            engine.lexer,
                            delims,
                            at,
                        );
                    }
                }
            }
            Token::Warning(e) | Token::Error(e) => checker.lex_error(e, observer),
        }
    }
    checker.finish(observer);
    stats
}

/// Reads `[pos, end)` of a file with positional reads: several readers share one handle.
pub(crate) struct RangeReader<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl<'f> RangeReader<'f> {
    pub(crate) fn new(file: &'f File, pos: u64, end: u64) -> Self {
        RangeReader { file, pos, end }
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = read_at(self.file, &mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, at)
}

#[cfg(not(unix))]
fn read_at(_file: &File, _buf: &mut [u8], _at: u64) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "positional reads",
    ))
}

/// Reads `[from, to)` of a file of `len` bytes (or up to its end) into the front of `buf` and
/// returns how many bytes were read. `buf` keeps its length from read to read, so its bytes
/// stay initialized: clearing it and refilling it with `read_to_end` zeroed the spare room
/// before every read (a `memset` as long as the read: 29 M of the planning thread's 59 M
/// instructions on a 10 MB file).
fn read_range(file: &File, from: u64, to: u64, len: u64, buf: &mut Vec<u8>) -> io::Result<usize> {
    let want = usize::try_from(to.min(len).saturating_sub(from)).unwrap_or(usize::MAX);
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut got = 0;
    while got < want {
        match read_at(file, &mut buf[got..want], from + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// True when a segment starts at `buf[i]`: the byte before it, line breaks skipped, is the
/// segment terminator. (Terminators never occur in data, so this is exact; a position too
/// close to the start of `buf` to tell is not taken.)
fn starts_segment(buf: &[u8], i: usize, terminator: u8) -> bool {
    let mut j = i;
    while j > 0 && matches!(buf[j - 1], b'\r' | b'\n') && buf[j - 1] != terminator {
        j -= 1;
    }
    j > 0 && buf[j - 1] == terminator
}

/// Occurrences of `a` and of `b` in `s`: memchr's counting runs on the widest vectors the CPU
/// has (AVX2 where there is), which the compiler's own loop could not use in a baseline x86-64
/// build (two passes of it cost as much as a plain byte-wise fold over both).
fn count_bytes(s: &[u8], a: u8, b: u8) -> (u64, u64) {
    let na = memchr::memchr_iter(a, s).count() as u64;
    let nb = if b == a {
        na
    } else {
        memchr::memchr_iter(b, s).count() as u64
    };
    (na, nb)
}

/// Bytes kept before a searched range to see the terminator in front of a match.
const LOOK_BEHIND: u64 = 64;
/// How far past its target a piece looks for the next subscriber before it takes the rest.
const SEARCH_LIMIT_PIECES: u64 = 16;

/// One piece of a set: where it starts, what position its first segment follows, and where
/// the next piece starts (its first segment is checked by both).
#[derive(Debug, Clone, Copy)]
struct Piece {
    index: usize,
    start: Position,
    /// Set position of the segment before the piece's first.
    position: u32,
    /// Offset of the next piece's first segment (an `INS*Y`); None for the last piece.
    boundary: Option<u64>,
    /// Where this piece's reading stops: right after the boundary segment, or the end of file.
    end: u64,
}

/// A piece and the first of its bytes, as the planner read them: `bytes[..filled]` is the
/// file from the piece's start on (the whole piece, when its boundary lay in the first
/// window after its target).
struct Planned {
    piece: Piece,
    bytes: Vec<u8>,
    filled: usize,
}

/// Cuts the rest of a set into pieces, one after the other, counting line breaks and
/// terminators on the way.
struct Planner<'f> {
    file: &'f File,
    len: u64,
    term: u8,
    /// `INS*Y*`: where pieces start.
    subscriber: memmem::Finder<'static>,
    /// `SE*`: where the set, and cutting, ends.
    set_end: memmem::Finder<'static>,
    piece: u64,
    jobs: u64,
    /// The file's bytes from the last read's start; `filled` of them are valid.
    buf: Vec<u8>,
    filled: usize,
    next: Option<(Position, u32)>,
    index: usize,
    /// A piece planned already, handed out by the next call of [`Planner::next_piece`].
    ready: Option<Planned>,
    /// Buffers of checked pieces, for the next pieces' bytes.
    pool: Vec<Vec<u8>>,
    /// Where the set's trailer starts, once a planned piece was found to hold it.
    trailer: Option<u64>,
}

/// How far past a point the planner reads to find the next subscriber: usually a few hundred
/// bytes away.
const WINDOW: u64 = 16 << 10;
/// Bytes read past a searched range, to see the terminator of a segment found at its end.
const LOOK_AHEAD: u64 = 512;
/// Bytes the planner counts per read ([`Planner::count_range`]).
const COUNT_CHUNK: u64 = 32 << 10;
/// The longest first read of a piece handed to its thread ([`Planner::next_piece`]): a
/// 512 KiB piece and its window fit; `ELIGO_SPLIT_PIECE` may ask for far more.
const PREFIX_LIMIT: u64 = 2 << 20;

impl Planner<'_> {
    /// Reads `[from, to)` into the buffer.
    fn read(&mut self, from: u64, to: u64) -> io::Result<()> {
        self.filled = read_range(self.file, from, to, self.len, &mut self.buf)?;
        Ok(())
    }

    /// In `buf`, which holds the file from `lo`: the first subscriber segment starting in
    /// `[from, to)`. `Some(None)` when one was found without a terminator after it in the
    /// buffer (searching stops there).
    fn search(&self, buf: &[u8], lo: u64, from: u64, to: u64) -> Option<Option<(u64, u64)>> {
        let at =
            |o: u64| usize::try_from(o.saturating_sub(lo)).map_or(buf.len(), |i| i.min(buf.len()));
        let (mut from_i, scan_end) = (at(from), at(to));
        let finder = &self.subscriber;
        while from_i < scan_end {
            let i = finder.find(&buf[from_i..])? + from_i;
            if i >= scan_end {
                return None;
            }
            if starts_segment(buf, i, self.term) {
                return Some(
                    memchr::memchr(self.term, &buf[i..])
                        .map(|t| (lo + i as u64, lo + (i + t + 1) as u64)),
                );
            }
            from_i = i + 1;
        }
        None
    }

    /// The first subscriber segment starting at or after `from`, searching at most to `limit`;
    /// with the offset just past that segment's terminator.
    fn find(&mut self, from: u64, limit: u64) -> io::Result<Option<(u64, u64)>> {
        // Read little at a time: a subscriber is usually a few hundred bytes away.
        let limit = limit.min(self.len);
        let mut at = from;
        while at < limit {
            let lo = at.saturating_sub(LOOK_BEHIND);
            let hi = at.saturating_add(WINDOW).min(self.len);
            self.read(lo, hi.saturating_add(LOOK_AHEAD))?;
            if let Some(found) = self.search(&self.buf[..self.filled], lo, at, hi.min(limit)) {
                return Ok(found);
            }
            at = hi;
        }
        Ok(None)
    }

    /// Line breaks and segment terminators in `[from, to)`, and where the first set trailer
    /// (SE) in it starts, if one does; read [`COUNT_CHUNK`] bytes at a time into the planner's
    /// buffer.
    ///
    /// Why in chunks: the piece itself was read in one go (512 KiB, and its whole length
    /// again when the next subscriber lay beyond the window), so the planner's buffer was a
    /// piece long, and each piece's bytes went through the cache of the core the planning
    /// thread ran on, beside a piece's checking thread (L2 is 512 KiB per core on an EPYC
    /// VM of ours). A chunk-sized buffer is reused from one read to the next: 0.9 M fewer
    /// instructions on a 10 MB file, a few hundred KB less peak RSS; no change in CPU time
    /// could be seen on that (noisy) VM.
    fn count_range(&mut self, from: u64, to: u64) -> io::Result<(u64, u64, Option<u64>)> {
        let (mut lines, mut terms) = (0, 0);
        let mut at = from;
        while at < to {
            let stop = at.saturating_add(COUNT_CHUNK).min(to);
            let lo = at.saturating_sub(LOOK_BEHIND);
            // Two bytes past the chunk (within the range): an `SE*` starting at its end.
            let fit = stop.saturating_add(2).min(to);
            self.read(lo, fit)?;
            let (l, t, se) = self.count(&self.buf[..self.filled], lo, at, stop, fit);
            lines += l;
            terms += t;
            if se.is_some() {
                return Ok((lines, terms, se));
            }
            at = stop;
        }
        Ok((lines, terms, None))
    }

    /// In `buf`, which holds the file from `lo`: line breaks and segment terminators in
    /// `[from, to)`, and where the first set trailer (SE) starting in it and ending by `fit`
    /// starts, if one does.
    fn count(&self, buf: &[u8], lo: u64, from: u64, to: u64, fit: u64) -> (u64, u64, Option<u64>) {
        let at =
            |o: u64| usize::try_from(o.saturating_sub(lo)).map_or(buf.len(), |i| i.min(buf.len()));
        let (skip, stop) = (at(from), at(to));
        let body = &buf[skip..stop.max(skip)];
        let (lines, terms) = count_bytes(body, b'\n', self.term);
        let se = self
            .set_end
            .find_iter(&buf[skip..at(fit).max(skip)])
            .take_while(|&i| i < body.len())
            .find(|&i| starts_segment(buf, skip + i, self.term))
            .map(|i| lo + (skip + i) as u64);
        (lines, terms, se)
    }

    /// How many bytes the `index`th piece, starting at `at`, spans before its search for the
    /// next subscriber: `piece`, but less near the end of the file, down to an eighth of it.
    /// With full pieces to the end, the threads did not finish together: one checked the last
    /// piece alone while the others idled, on average half a piece (about 5 % of the wall time
    /// of a 10 MB file on two cores). The first pieces are smaller too (an eighth, a quarter,
    /// a half): a thread can start only once its piece is planned, and the planning of the
    /// first (a read and a count of its bytes) is serial time.
    fn piece_size(&self, at: u64, index: usize) -> u64 {
        let rest = self.len.saturating_sub(at);
        let ramp = self.piece >> (3 - index.min(3));
        (rest / self.jobs.saturating_mul(2).max(1))
            .min(self.piece)
            .min(ramp)
            .max(self.piece / 8)
            .max(1)
    }

    /// Plans the next piece and reads its first bytes.
    ///
    /// The piece is read once, from its start through the window after its target in which
    /// the next subscriber usually lies, into a buffer the piece's thread lexes from
    /// ([`Lexer::resume_filled`]). Before, the planner read the piece in small chunks to
    /// count it and the piece's thread read it again: two kernel copies of every byte of a
    /// split file (the planner's was a third of its thread's time). When the subscriber is
    /// further away, or the piece longer than [`PREFIX_LIMIT`], the search goes on and the
    /// whole piece is counted in chunks as before (rare: the bytes read first are read
    /// again), and the piece's thread reads what its buffer lacks.
    fn next_piece(&mut self) -> io::Result<Option<Planned>> {
        if let Some(planned) = self.ready.take() {
            return Ok(Some(planned));
        }
        let Some((start, position)) = self.next.take() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        let last = Piece {
            index,
            start,
            position,
            boundary: None,
            end: self.len,
        };
        let target = start
            .offset
            .saturating_add(self.piece_size(start.offset, index));
        let limit = target.saturating_add(self.piece.saturating_mul(SEARCH_LIMIT_PIECES));
        let window_end = target.saturating_add(WINDOW).min(self.len);
        let read_to = window_end.saturating_add(LOOK_AHEAD).min(self.len);
        let mut bytes = self.pool.pop().unwrap_or_default();
        let filled = if read_to.saturating_sub(start.offset) <= PREFIX_LIMIT {
            read_range(self.file, start.offset, read_to, self.len, &mut bytes)?
        } else {
            0
        };
        let planned = |piece: Piece, bytes: Vec<u8>| {
            // Never more than the piece: its thread must not see the next one's bytes.
            let span =
                usize::try_from(piece.end.saturating_sub(piece.start.offset)).unwrap_or(usize::MAX);
            Some(Planned {
                piece,
                filled: filled.min(span),
                bytes,
            })
        };
        // The next subscriber is searched for from the target on, usually a few hundred bytes
        // away, in the bytes just read (the first window, as `find` would read it); then the
        // piece's bytes are counted.
        let quick = match filled {
            0 => None,
            n => self.search(&bytes[..n], start.offset, target, window_end.min(limit)),
        };
        // (`search` only returns a subscriber whose terminator is in the bytes, so the piece,
        // up to and past its boundary, is all in them.)
        let (b, after, (lines, terms, se)) = match quick {
            Some(None) => return Ok(planned(last, bytes)),
            Some(Some((b, after))) => {
                let counts = self.count(&bytes[..filled], start.offset, start.offset, b, b);
                (b, after, counts)
            }
            None => {
                let Some((b, after)) = self.find(window_end.max(target), limit)? else {
                    return Ok(planned(last, bytes));
                };
                (b, after, self.count_range(start.offset, b)?)
            }
        };
        if se.is_some() {
            self.trailer = se;
            return Ok(planned(last, bytes));
        }
        let Ok(terms) = u32::try_from(terms) else {
            return Ok(planned(last, bytes));
        };
        self.next = Some((
            Position {
                offset: b,
                line: start.line + lines,
            },
            position.saturating_add(terms),
        ));
        Ok(planned(
            Piece {
                boundary: Some(b),
                end: after,
                ..last
            },
            bytes,
        ))
    }
}

/// The planner's buffers, kept from one region to the next: every set of a file is planned
/// once at its first member (and a set that ends inside its first piece goes no further,
/// [`Outcome::NotWorth`]), and a fresh buffer per set was zeroed and faulted in again.
#[derive(Default)]
struct Spare {
    /// [`Planner::buf`].
    chunk: Vec<u8>,
    /// [`Planner::pool`].
    pool: Vec<Vec<u8>>,
}

/// How a region ended for the driver.
enum Outcome {
    /// The rest of the set is small: check it in sequence; `set_end` is where its SE starts.
    NotWorth { set_end: u64 },
    /// The region was checked; go on reading at `at`. `blocked`: a guess failed there.
    Resume { at: Position, blocked: bool },
}

/// How one piece ended.
#[derive(Debug)]
enum End {
    /// It checked the next piece's first segment too; reading could go on at the position.
    Boundary(Position),
    /// It stopped before an envelope segment, an interchange-level error or the end of the
    /// file; reading goes on at the position.
    Stopped(Position),
    /// Its first segment was not the one planned: nothing of it can be used.
    Invalid,
}

struct Done<'e, P> {
    /// The piece's observer, with everything the piece reported.
    observer: P,
    end: End,
    /// The state at the end of the piece.
    checker: Checker<'e>,
    /// For a piece after the first: the state right after its first segment.
    first: Option<Checker<'e>>,
    /// The additive counters before the boundary segment was checked.
    before_boundary: Additive,
}

struct Region<'a, 'e> {
    engine: &'e Engine,
    file: &'a File,
    len: u64,
    delims: Delimiters,
    opts: SplitOptions,
}

impl<'e> Region<'_, 'e> {
    /// Checks the rest of the open set in pieces, starting at `after` (just past the segment
    /// that opened a member), merging the pieces into `obs` in order and leaving `checker` in
    /// the state a sequential check would have at the returned position.
    fn run<S: Split>(
        &self,
        checker: &mut Checker<'e>,
        after: Position,
        obs: &mut S,
        stats: &mut SplitStats,
        spare: &mut Spare,
    ) -> Outcome {
        let e = self.delims.element;
        let mut planner = Planner {
            file: self.file,
            len: self.len,
            term: self.delims.segment,
            subscriber: memmem::Finder::new(&[b'I', b'N', b'S', e, b'Y', e]).into_owned(),
            set_end: memmem::Finder::new(&[b'S', b'E', e]).into_owned(),
            piece: self.opts.piece,
            jobs: self.opts.jobs as u64,
            buf: std::mem::take(&mut spare.chunk),
            filled: 0,
            next: Some((after, checker.set_position())),
            index: 0,
            ready: None,
            pool: std::mem::take(&mut spare.pool),
            trailer: None,
        };
        let outcome = self.plan_and_check(&mut planner, checker, after, obs, stats);
        spare.chunk = std::mem::take(&mut planner.buf);
        spare.pool = std::mem::take(&mut planner.pool);
        if let Some(unused) = planner.ready.take() {
            spare.pool.push(unused.bytes);
        }
        outcome
    }

    /// [`Region::run`] with its planner.
    fn plan_and_check<S: Split>(
        &self,
        planner: &mut Planner<'_>,
        checker: &mut Checker<'e>,
        after: Position,
        obs: &mut S,
        stats: &mut SplitStats,
    ) -> Outcome {
        // The first piece is planned before any thread starts: a set that ends inside it is
        // not worth cutting. (A search for the set's SE over the next 4 MiB decided this
        // before, serially, ≈ 1 ms of a two-job 10 MB check's 52; a set that ends further
        // away is cut, its pieces shared by the threads.) It waits in `planner.ready`, where
        // `Region::run` takes its buffer back if it is not used.
        match planner.next_piece() {
            Ok(Some(first)) => {
                planner.ready = Some(first);
                if let Some(se) = planner.trailer {
                    return Outcome::NotWorth { set_end: se };
                }
            }
            Ok(None) | Err(_) => return Outcome::NotWorth { set_end: self.len },
        }
        let Some(first_observer) = obs.piece() else {
            return Outcome::NotWorth { set_end: self.len };
        };
        let seen = checker.take_seen();
        let Some(template) = checker.boundary_fork(0) else {
            checker.restore_seen(seen);
            return Outcome::NotWorth {
                set_end: after.offset,
            };
        };
        stats.regions += 1;
        let (state, at, blocked) = self.pieces(
            checker.clone(),
            first_observer,
            &template,
            planner,
            obs,
            stats,
        );
        *checker = state;
        checker.restore_seen(seen);
        Outcome::Resume { at, blocked }
    }

    /// Plans, checks and merges the pieces; returns the final state, where to read on, and
    /// whether a guess failed.
    fn pieces<S: Split>(
        &self,
        first: Checker<'e>,
        first_observer: S::Piece,
        template: &Checker<'e>,
        planner: &mut Planner<'_>,
        obs: &mut S,
        stats: &mut SplitStats,
    ) -> (Checker<'e>, Position, bool) {
        let jobs = self.opts.jobs;
        // Pieces planned ahead of the merge: enough queued work that no thread waits while
        // the merging thread writes a piece's output or is descheduled (2 x jobs + 2 left
        // the threads of a split convert idle at times: 1.3-1.4x on two cores instead of
        // 1.5-1.6x under the same load).
        let window = 4 * jobs + 4;
        let cancel = AtomicBool::new(false);
        type Job<'e, P> = (Planned, Checker<'e>, P);
        let (job_tx, job_rx) = mpsc::channel::<Job<'e, S::Piece>>();
        let job_rx = Mutex::new(job_rx);
        // A piece's results, and its buffer back for the planner's pool.
        type Checked<'e, P> = (usize, Option<Done<'e, P>>, Vec<u8>);
        let (done_tx, done_rx) = mpsc::channel::<Checked<'e, S::Piece>>();
        std::thread::scope(|s| {
            for _ in 0..jobs {
                let (job_rx, done_tx, cancel) = (&job_rx, done_tx.clone(), &cancel);
                s.spawn(move || {
                    let mut kept = Kept::default();
                    loop {
                        let job = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((planned, start, observer)) = job else {
                            return;
                        };
                        let index = planned.piece.index;
                        let (done, bytes) = if cancel.load(Ordering::Relaxed) {
                            (None, planned.bytes)
                        } else {
                            let (done, bytes) =
                                self.check_piece(planned, start, observer, &mut kept);
                            (Some(done), bytes)
                        };
                        if done_tx.send((index, done, bytes)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(done_tx);
            let mut merge =
                Merge::new(first.clone(), planner.next.map(|n| n.0).unwrap_or_default());
            let mut first = Some((first, first_observer));
            let (mut planned, mut planning_done) = (0usize, false);
            let mut waiting: BTreeMap<usize, Option<Done<'e, S::Piece>>> = BTreeMap::new();
            let result = 'run: loop {
                while !planning_done && planned < merge.next + window {
                    match planner.next_piece() {
                        Ok(Some(job)) => {
                            let piece = &job.piece;
                            planning_done = piece.boundary.is_none();
                            let (start, observer) = match first.take() {
                                Some(c) => c,
                                None => match obs.piece() {
                                    Some(o) => (template.with_position(piece.position), o),
                                    None => {
                                        planning_done = true;
                                        continue;
                                    }
                                },
                            };
                            planned += 1;
                            if job_tx.send((job, start, observer)).is_err() {
                                planning_done = true;
                            }
                        }
                        Ok(None) | Err(_) => planning_done = true,
                    }
                }
                if merge.next >= planned {
                    // Planning failed before the set's end: go on in sequence from the last
                    // merged state.
                    break 'run merge.fallback();
                }
                let Ok((i, done, bytes)) = done_rx.recv() else {
                    break 'run merge.fallback();
                };
                // At most one buffer per piece in flight is ever made.
                planner.pool.push(bytes);
                waiting.insert(i, done);
                while let Some(done) = waiting.remove(&merge.next) {
                    let end = merge.take(done, obs);
                    match &end {
                        Some((_, _, true)) => stats.fallbacks += 1,
                        _ => stats.pieces += 1,
                    }
                    if let Some(end) = end {
                        break 'run end;
                    }
                }
            };
            cancel.store(true, Ordering::Relaxed);
            drop(job_tx);
            result
        })
    }

    /// Checks one piece from its start state, reporting to the piece's own observer.
    fn check_piece<P: Observer>(
        &self,
        planned: Planned,
        start: Checker<'e>,
        mut observer: P,
        kept: &mut Kept<'e>,
    ) -> (Done<'e, P>, Vec<u8>) {
        let Planned {
            piece,
            bytes,
            filled,
        } = planned;
        let mut checker = start;
        checker.swap_set_caches(&mut kept.caches);
        let mut first: Option<Checker<'e>> = None;
        let forked = piece.index > 0;
        let mut before_boundary = Additive::default();
        let reader = RangeReader::new(self.file, piece.start.offset + filled as u64, piece.end);
        let mut lexer = Lexer::resume_filled(
            reader,
            self.engine.lexer,
            self.delims,
            piece.start,
            bytes,
            filled,
        );
        // The piece ends at its boundary segment (checked here too) or at what only the
        // sequential checker handles. The per-segment test is one comparison, and
        // `Checker::piece_segment` tests for the envelope once and goes straight to the set's
        // validator, past `Checker::segment`'s dispatch (13.9 M fewer instructions of a
        // two-job 10 MB check's 797 M). The first segment of a forked piece is checked before
        // the loop.
        let boundary = piece.boundary.unwrap_or(u64::MAX);
        let end = 'piece: {
            if forked {
                // The first segment must be the subscriber planned.
                let Some(tok) = lexer.next_token() else {
                    break 'piece End::Stopped(lexer.checkpoint());
                };
                let seg = match tok {
                    Token::Segment(seg)
                        if seg.position().offset == piece.start.offset && seg.id() == b"INS" =>
                    {
                        seg
                    }
                    _ => break 'piece End::Invalid,
                };
                let at_boundary = seg.position().offset == boundary;
                if at_boundary {
                    before_boundary = checker.additive();
                }
                checker.segment(&seg, &mut observer);
                first = Some(checker.clone());
                if at_boundary {
                    break 'piece End::Boundary(lexer.checkpoint());
                }
            }
            loop {
                let cp = lexer.checkpoint();
                let Some(tok) = lexer.next_token() else {
                    break End::Stopped(lexer.checkpoint());
                };
                // The segment is borrowed where the lexer left it (`ref`): moved out, it was
                // copied with loads that waited on the stores that had just written it (a
                // failed store-to-load forward, ≈ 18 % of this loop's own time).
                let at_boundary = match tok {
                    Token::Segment(ref seg) => {
                        let at = seg.position().offset;
                        if at < boundary {
                            if !checker.piece_segment(seg, &mut observer) {
                                break End::Stopped(cp);
                            }
                            false
                        } else if at > boundary || is_envelope(seg.id()) {
                            break End::Stopped(cp);
                        } else {
                            before_boundary = checker.additive();
                            checker.segment(seg, &mut observer);
                            true
                        }
                    }
                    Token::Warning(e) | Token::Error(e) => {
                        let interchange_level = !matches!(
                            e.kind,
                            LexErrorKind::SegmentTooLong { .. } | LexErrorKind::UnterminatedSegment
                        );
                        if interchange_level || e.pos.offset >= boundary {
                            break End::Stopped(cp);
                        }
                        checker.lex_error(e, &mut observer);
                        false
                    }
                };
                if at_boundary {
                    break End::Boundary(lexer.checkpoint());
                }
            }
        };
        checker.swap_set_caches(&mut kept.caches);
        let done = Done {
            observer,
            end,
            checker,
            first,
            before_boundary,
        };
        (done, lexer.into_buffer())
    }
}

/// What a thread checking pieces keeps from one piece to the next: the set validator's caches
/// ([`Checker::swap_set_caches`]). Each piece starts from a copy of the checker, whose caches
/// start empty; refilling them cost each piece its first members' checks in full. (The
/// lexer's buffer comes with the piece, from the planner's pool: a fresh one per piece zeroed
/// its bytes and faulted its pages in again.)
#[derive(Default)]
struct Kept<'e> {
    caches: Caches<'e>,
}

/// Joins the pieces' results in order.
struct Merge<'e> {
    next: usize,
    /// Sum of the additive counters of the pieces merged, up to their boundaries.
    sum: Additive,
    /// The real state right after the last merged piece's boundary segment (counters
    /// absolute), and where reading would go on from it.
    real: Checker<'e>,
    real_at: Position,
}

impl<'e> Merge<'e> {
    fn new(start: Checker<'e>, at: Position) -> Self {
        Merge {
            next: 0,
            sum: Additive::default(),
            real: start,
            real_at: at,
        }
    }

    /// Go on in sequence from the last real state (the region's start before any piece was
    /// merged).
    fn fallback(&mut self) -> (Checker<'e>, Position, bool) {
        (self.real.clone(), self.real_at, true)
    }

    /// Merges the next piece; returns the region's end when it is reached (or a guess
    /// failed).
    fn take<S: Split>(
        &mut self,
        done: Option<Done<'e, S::Piece>>,
        obs: &mut S,
    ) -> Option<(Checker<'e>, Position, bool)> {
        let index = self.next;
        self.next += 1;
        let Some(done) = done else {
            return Some(self.fallback());
        };
        let valid = !matches!(done.end, End::Invalid)
            && (index == 0
                || done
                    .first
                    .as_ref()
                    .is_some_and(|g| self.real.same_boundary(g))
                    && !done.checker.needed_unknown());
        if !valid {
            return Some(self.fallback());
        }
        obs.merge(done.observer);
        let mut state = done.checker;
        if index > 0 {
            state.inherit_subscriber(&self.real);
        }
        let own = state.additive();
        let absolute = self.sum.plus(own);
        state.set_additive(absolute);
        match done.end {
            End::Boundary(at) => {
                // Up to the boundary the piece's own counts; the boundary segment's member is
                // the next piece's to count, its errors (closing this piece's last member) ours.
                let before = done.before_boundary;
                self.sum = self.sum.plus(Additive {
                    tally: before.tally,
                    units: before.units,
                    ..own
                });
                self.real = state;
                self.real_at = at;
                None
            }
            End::Stopped(at) => Some((state, at, false)),
            // Not reached (an invalid piece was turned away above); falling back is the safe
            // answer all the same.
            End::Invalid => Some(self.fallback()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    fn planner(file: &File, len: u64) -> Planner<'_> {
        Planner {
            file,
            len,
            term: b'~',
            subscriber: memmem::Finder::new(b"INS*Y*").into_owned(),
            set_end: memmem::Finder::new(b"SE*").into_owned(),
            piece: 512 << 10,
            jobs: 2,
            buf: Vec::new(),
            filled: 0,
            next: None,
            index: 0,
            ready: None,
            pool: Vec::new(),
            trailer: None,
        }
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().expect("temp file");
        f.write_all(bytes).expect("write");
        f.rewind().expect("rewind");
        f
    }

    /// Member segments up to `at`, an `SE` starting exactly there (when asked), more after.
    fn body(at: usize, with_se: bool) -> Vec<u8> {
        // "NM1*IL*1*SE*…": an `SE*` inside a segment, never a trailer.
        let filler = b"NM1*IL*1*SE*JOHN~\nREF*0F*123456789~\n";
        let mut v = Vec::new();
        while v.len() + filler.len() < at {
            v.extend_from_slice(filler);
        }
        // Pad with a segment whose length puts the next one exactly at `at`.
        let pad = at - v.len();
        if pad >= 5 {
            v.extend_from_slice(b"DTP*");
            v.extend(std::iter::repeat_n(b'X', pad - 5));
            v.push(b'~');
        } else {
            v.extend(std::iter::repeat_n(b'\n', pad));
        }
        assert_eq!(v.len(), at);
        if with_se {
            v.extend_from_slice(b"SE*9*0001~\n");
        }
        for _ in 0..3000 {
            v.extend_from_slice(filler);
        }
        v
    }

    /// Plans every piece of `bytes` (pieces of `piece` bytes) and checks what each hands its
    /// thread: the file's own bytes from the piece's start, never past its end, and start
    /// positions equal to a direct count.
    fn plan_all(bytes: &[u8], piece: u64, jobs: u64) -> Vec<Planned> {
        let file = file_with(bytes);
        let mut p = planner(&file, bytes.len() as u64);
        (p.piece, p.jobs) = (piece, jobs);
        p.next = Some((Position { offset: 0, line: 1 }, 0));
        let mut all = Vec::new();
        while let Some(planned) = p.next_piece().expect("read") {
            let Piece {
                start,
                position,
                end,
                boundary,
                ..
            } = planned.piece;
            let from = start.offset as usize;
            assert!(
                planned.filled as u64 <= end - start.offset,
                "piece at {from}"
            );
            assert_eq!(
                &planned.bytes[..planned.filled],
                &bytes[from..from + planned.filled],
                "piece at {from}"
            );
            let (lines, terms) = count_bytes(&bytes[..from], b'\n', b'~');
            assert_eq!(
                (start.line, position as u64),
                (1 + lines, terms),
                "piece at {from}"
            );
            if let Some(b) = boundary {
                assert!(bytes[b as usize..].starts_with(b"INS*Y*"), "boundary {b}");
                assert_eq!(bytes[end as usize - 1], b'~', "boundary {b}");
            }
            let last = boundary.is_none();
            all.push(planned);
            if last {
                break;
            }
        }
        all
    }

    fn members(n: usize, gap: impl Fn(usize) -> usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend_from_slice(b"INS*Y*18*021*28*A***FT~\nREF*0F*123456789~\n");
            for _ in 0..gap(i) {
                v.extend_from_slice(b"NM1*IL*1*DOE*JOHN~\nDTP*356*D8*20250101~\n");
            }
        }
        v
    }

    #[test]
    fn planned_pieces_carry_their_own_bytes() {
        // Subscribers close together: every boundary found in the bytes read at first, the
        // whole piece handed over.
        let bytes = members(4000, |_| 1);
        let planned = plan_all(&bytes, 4096, 2);
        assert!(planned.len() > 20);
        for p in &planned[..planned.len() - 1] {
            assert_eq!(p.filled as u64, p.piece.end - p.piece.start.offset);
        }
        // Now and then a member far longer than the search window: those boundaries are
        // found by the chunked search, and only the bytes read at first are handed over.
        let bytes = members(400, |i| if i % 50 == 7 { 1200 } else { 2 });
        let planned = plan_all(&bytes, 4096, 2);
        assert!(planned
            .iter()
            .any(|p| (p.filled as u64) < p.piece.end - p.piece.start.offset));
        // Pieces longer than the limit: nothing read ahead for the thread.
        let planned = plan_all(&members(100_000, |_| 2), PREFIX_LIMIT * 4, 1);
        let long = |p: &&Planned| p.piece.end - p.piece.start.offset + WINDOW > PREFIX_LIMIT;
        assert!(planned.iter().filter(long).count() >= 2);
        assert!(planned.iter().filter(long).all(|p| p.filled == 0));
        assert!(planned.iter().take(1).all(|p| p.filled > 0));
    }

    #[test]
    fn chunked_count_finds_a_trailer_at_every_chunk_edge() {
        let chunk = COUNT_CHUNK as usize;
        for from in [0usize, 1, 700] {
            for at in [
                chunk - 3,
                chunk - 2,
                chunk - 1,
                chunk,
                chunk + 1,
                2 * chunk - 1,
                2 * chunk + 1,
            ] {
                let at = at + from;
                let bytes = body(at, true);
                let file = file_with(&bytes);
                let mut p = planner(&file, bytes.len() as u64);
                let (lines, terms, se) = p
                    .count_range(from as u64, bytes.len() as u64)
                    .expect("read");
                assert_eq!(se, Some(at as u64), "from {from}, SE at {at}");
                // The counts reach at least the chunk holding the trailer.
                let (l, t) = count_bytes(&bytes[from..at], b'\n', b'~');
                assert!(lines >= l && terms >= t, "from {from}, SE at {at}");
            }
        }
    }

    #[test]
    fn chunked_count_is_the_whole_range_count_without_a_trailer() {
        let bytes = body(3 * COUNT_CHUNK as usize + 17, false);
        let file = file_with(&bytes);
        let mut p = planner(&file, bytes.len() as u64);
        for (from, to) in [
            (0, bytes.len()),
            (5, bytes.len() - 9),
            (100, 100),
            (40_000, 70_001),
        ] {
            let got = p.count_range(from as u64, to as u64).expect("read");
            let (l, t) = count_bytes(&bytes[from..to], b'\n', b'~');
            assert_eq!(got, (l, t, None), "[{from}, {to})");
        }
        // A trailer that would end past `to` is not one the range holds.
        let bytes = body(COUNT_CHUNK as usize, true);
        let file = file_with(&bytes);
        let mut p = planner(&file, bytes.len() as u64);
        let at = COUNT_CHUNK;
        assert_eq!(p.count_range(0, at + 2).expect("read").2, None);
        assert_eq!(p.count_range(0, at + 3).expect("read").2, Some(at));
    }
}
