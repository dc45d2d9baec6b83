//! Element-level checks of one segment against its schema definition: usage, repetitions,
//! components, data types, lengths, code lists, external code sets and the X12 syntax notes
//! between elements. Each failure becomes one finding with its IK403 code.

use crate::finding::{Ack, ElementPos, Finding, Location};
use crate::lexer::{find_byte, split, Delimiters, Fields, Segment};
use crate::schema::{self, CodeSets, ElementType, SyntaxKind, Usage};
use chrono::NaiveDate;

/// Everything an element check needs besides the segment.
pub struct ElementCtx<'a> {
    pub codesets: &'a CodeSets,
    /// The segment's repetition and component separators ([`Separators::new`]), worked out
    /// once per set rather than per segment.
    pub seps: &'a Separators,
    /// Builds the location (set, segment position, loop) that findings start from; called only
    /// when there is a finding, so clean segments allocate nothing.
    pub loc: &'a dyn Fn() -> Location,
}

#[cold]
#[inline(never)]
fn finding(
    ctx: &ElementCtx<'_>,
    id: &'static str,
    snip: u8,
    code: &'static str,
    def: &schema::Element,
    pos: ElementPos,
    message: String,
) -> Finding {
    let mut f = Finding::new(id, snip, Ack::Element(code), message);
    f.location = (ctx.loc)();
    f.location.element = Some(pos);
    f.location.data_element = Some(def.de.clone());
    f
}

/// The finding for element `seq` of a segment that defines fewer. Out of line and cold, as
/// [`finding`] is, so the element loop of [`check_segment_and_periods`] stays small: its code
/// layout showed in every segment's cost.
#[cold]
#[inline(never)]
fn too_many_elements(
    ctx: &ElementCtx<'_>,
    def: &schema::Segment,
    seq: usize,
    value: &[u8],
) -> Finding {
    let mut f = Finding::new(
        "X12-E-TOO-MANY-ELEMENTS",
        1,
        Ack::Element("3"),
        format!(
            "{} has {} or more elements; it defines {}",
            def.name,
            seq,
            def.elements.len()
        ),
    );
    f.location = (ctx.loc)();
    f.location.element = Some(ElementPos {
        element: seq.min(255) as u8,
        ..Default::default()
    });
    f.with_value(value, false)
}

/// The finding for a required element sent empty or not sent (`how`): cold and out of line
/// with its message's formatting, as [`too_many_elements`] is, so the element loop keeps no
/// `format!` set-up of its own.
#[cold]
#[inline(never)]
fn required_missing(
    ctx: &ElementCtx<'_>,
    ed: &schema::Element,
    pos: ElementPos,
    how: &str,
) -> Finding {
    finding(
        ctx,
        "X12-E-REQUIRED-MISSING",
        2,
        "1",
        ed,
        pos,
        format!("{} ({}) is required but {how}", ed.id, ed.name),
    )
}

/// The finding for a value sent in an element the guide marks Not Used (cold, as above).
#[cold]
#[inline(never)]
fn not_used(ctx: &ElementCtx<'_>, ed: &schema::Element, pos: ElementPos, value: &[u8]) -> Finding {
    finding(
        ctx,
        "IG-E-NOT-USED",
        2,
        "I10",
        ed,
        pos,
        format!(
            "{} ({}) is marked Not Used by the guide but was sent",
            ed.id, ed.name
        ),
    )
    .with_value(value, ed.phi)
}

/// The finding for a segment that ends with an element separator (cold, as above).
#[cold]
#[inline(never)]
fn trailing_separator(ctx: &ElementCtx<'_>) -> Finding {
    let mut f = Finding::new(
        "X12-S-TRAILING-SEPARATOR",
        1,
        Ack::Segment("8"),
        "segment ends with an element separator; trailing empty elements must be omitted",
    );
    f.location = (ctx.loc)();
    f
}

/// Segments whose element checks found nothing, remembered by their bytes.
///
/// What [`check_segment_and_periods`] finds depends on nothing but the schema segment, the
/// segment's bytes and the delimiters (the code sets are fixed): a segment with the same bytes,
/// placed as the same schema segment, as one found clean is clean too. Most segments of an 834
/// repeat byte for byte from member to member (`HD*021**HLT*...`, `DTP*348*D8*...`, `LX*1`,
/// `REF*1L*...`): on a generated change file about two thirds are settled by one lookup
/// instead of checking each element again. A direct-mapped table of fixed size (a clean
/// segment takes its slot from the one before), so memory does not grow with the input.
///
/// The lookup's cost on the real CPU is its cache misses, not its instructions: the table is
/// read once a segment at a random slot while the input streams through the caches. So it is
/// kept small (8,192 slots: a 32 KiB tag array that a miss is decided from, and 256 KiB of
/// bytes read only when the tag matches) and holds only segments of up to 32 bytes: on the
/// 100 MB bench file the longer ones are nearly all names and addresses seen once, which
/// only pushed repeating segments out (72 % of the segments are settled either way, with half
/// the writes to the table).
#[derive(Debug, Default)]
pub struct CleanSegments {
    /// The delimiters the remembered segments were split with ([`Delimiters::key`]); `None`
    /// before the first is remembered. Compared for every segment looked up: one integer
    /// rather than the five fields.
    delims: Option<u64>,
    /// Each slot's [`tag`]: [`CLEAN_SLOTS`] once the first segment is remembered.
    tags: Vec<u32>,
    /// Each slot's bytes, read only when its tag matches.
    bytes: Vec<CleanBytes>,
}

/// A copy starts empty: the table only saves work, and a copy (a piece of a set checked on
/// its own) fills its own rather than copying it.
impl Clone for CleanSegments {
    fn clone(&self) -> Self {
        CleanSegments::default()
    }
}

/// Longest segment remembered (see [`CleanSegments`]: 87 % of the bench file's segments; 56
/// before, which settled no more of them).
const CLEAN_BYTES: usize = 32;
/// Slots of the table. checkperf22 had 16,384 slots of 64 bytes (1 MiB, from 4,096: fewer
/// instructions); on the real CPU its loads missed the cache (the lead's profile), and this
/// table, with a slightly lower hit rate, runs faster (docs/performance.md, checkperf25).
const CLEAN_SLOTS: usize = 8192;
/// Bits of a slot number.
const SLOT_BITS: u32 = CLEAN_SLOTS.trailing_zeros();
/// The tag of a slot nothing was remembered in: no [`tag`] (its schema segment would be
/// `0xFFFF`, which is never remembered).
const EMPTY_TAG: u32 = u32::MAX;

/// A slot's bytes, aligned so that none straddles two cache lines.
#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
struct CleanBytes([u8; CLEAN_BYTES]);

/// What [`CleanSegments::probe`] found for a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Found clean before: nothing to check.
    Clean,
    /// Not known clean; where it goes if found clean now. Kept from the lookup so that
    /// remembering the segment does not hash its bytes a second time.
    Miss(Slot),
    /// Not remembered at all (too long, or a Not Used segment, which is never clean).
    Unremembered,
}

/// A segment's slot and tag (see [`Probe::Miss`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    ix: usize,
    tag: u32,
}

/// A slot's tag: the schema segment (16 bits), the length (8) and 8 bits of the hash that did
/// not choose the slot. The schema segment and length are exact, so a tag that differs is a
/// miss decided without the bytes; one that matches still has every byte compared.
#[inline]
fn tag(seg_ix: usize, len: usize, h: u64) -> u32 {
    seg_ix as u32 | (len as u32) << 16 | ((h >> (56 - SLOT_BITS)) as u32 & 0xFF) << 24
}

impl CleanSegments {
    /// Looks up `raw`, placed as schema segment `seg_ix` and split with `d`: [`Probe::Clean`]
    /// when it was found clean. Forced inline into the segment loop: a plain `#[inline]` left
    /// it a call, whose frame and returned value cost about a fifth of the lookup.
    #[inline(always)]
    pub fn probe(&self, d: Delimiters, seg_ix: usize, raw: &[u8]) -> Probe {
        if raw.len() > CLEAN_BYTES || seg_ix >= 0xFFFF {
            return Probe::Unremembered;
        }
        let h = hash_of(seg_ix, raw);
        let at = Slot {
            ix: (h >> (64 - SLOT_BITS)) as usize,
            tag: tag(seg_ix, raw.len(), h),
        };
        let hit = self.delims == Some(d.key())
            && self.tags.get(at.ix) == Some(&at.tag)
            && self
                .bytes
                .get(at.ix)
                .is_some_and(|b| same_bytes(&b.0[..raw.len()], raw));
        if hit {
            Probe::Clean
        } else {
            Probe::Miss(at)
        }
    }

    /// Remembers that `raw` (see [`CleanSegments::probe`], which gave `at` for it) was found
    /// clean.
    pub fn insert(&mut self, d: Delimiters, at: Slot, raw: &[u8]) {
        if raw.len() > CLEAN_BYTES || at.ix >= CLEAN_SLOTS {
            return;
        }
        if self.delims != Some(d.key()) {
            self.delims = Some(d.key());
            self.tags.clear();
            self.bytes.clear();
        }
        if self.tags.is_empty() {
            self.tags.resize(CLEAN_SLOTS, EMPTY_TAG);
            self.bytes.resize(CLEAN_SLOTS, CleanBytes([0; CLEAN_BYTES]));
        }
        if let (Some(t), Some(b)) = (self.tags.get_mut(at.ix), self.bytes.get_mut(at.ix)) {
            *t = at.tag;
            copy_bytes(&mut b.0[..raw.len()], raw);
        }
    }
}

/// `a == b` for slices of the same length, eight bytes at a time (the last eight overlap the
/// ones before): at these lengths a `memcmp` call costs more than the comparison.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return schema::pack(a) == schema::pack(b);
    }
    let word = |s: &[u8], i: usize| {
        let c = &s[i..i + 8];
        u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
    };
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// `a.copy_from_slice(b)` for slices of the same length, eight bytes at a time as in
/// [`same_bytes`]: at these lengths a `memcpy` call costs more than the copy.
#[inline]
fn copy_bytes(a: &mut [u8], b: &[u8]) {
    let n = a.len();
    if n < 8 || n != b.len() {
        return a.copy_from_slice(b);
    }
    let mut i = 0;
    while i + 8 < n {
        a[i..i + 8].copy_from_slice(&b[i..i + 8]);
        i += 8;
    }
    a[n - 8..].copy_from_slice(&b[n - 8..]);
}

/// A multiplicative hash of a segment's bytes, eight at a time (the last eight overlap the ones
/// before when the length is not a multiple of eight), and of `seg_ix`: its top bits choose
/// the slot, the next eight go into the tag.
#[inline]
fn hash_of(seg_ix: usize, raw: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let word = |i: usize| {
        let c = &raw[i..i + 8];
        u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
    };
    let mut h = (seg_ix as u64) << 8 | raw.len() as u64;
    if raw.len() < 8 {
        h = (h ^ schema::pack(raw).unwrap_or(0)).wrapping_mul(K);
    } else {
        let mut i = 0;
        while i + 8 < raw.len() {
            h = (h.rotate_left(23) ^ word(i)).wrapping_mul(K);
            i += 8;
        }
        h = (h.rotate_left(23) ^ word(raw.len() - 8)).wrapping_mul(K);
    }
    h
}

/// Checks every element of `seg` against `def`, then the date/period elements against their
/// qualifiers; pushes findings to `out`. `fields` is `seg` split into elements.
pub fn check_segment_and_periods(
    ctx: &ElementCtx<'_>,
    def: &schema::Segment,
    seg: &Segment<'_>,
    fields: &Fields<'_>,
    out: &mut Vec<Finding>,
) {
    // The syntax notes and periods read elements through `fields` (an index, no scan) rather
    // than from a per-segment array of values, which cost more to fill than they read. They see
    // the elements the checks went through: none past the last one `def` defines (the checks
    // stop at a segment with too many), as the array held them.
    let seen = check_segment_values(ctx, def, seg, fields, out);
    let limit = if def.elements.len() < 64 {
        seen.min(def.elements.len())
    } else {
        usize::MAX
    };
    periods(
        ctx,
        def,
        |n| if n <= limit { fields.element(n) } else { b"" },
        out,
    );
}

/// The element checks of [`check_segment_and_periods`]. Returns how many elements the segment
/// has, as far as the checks went (one past those `def` defines when it has too many).
fn check_segment_values(
    ctx: &ElementCtx<'_>,
    def: &schema::Segment,
    seg: &Segment<'_>,
    fields: &Fields<'_>,
    out: &mut Vec<Finding>,
) -> usize {
    debug_assert!(ctx.seps.is_for(seg.delimiters()));
    let seps = ctx.seps;
    let mut count = 0usize;
    let mut trailing_empty = false;
    // The elements sent empty, bit `n` for element `n` up to 63, for the syntax notes: kept
    // for the empty ones (fewer, and off the path of a value's checks) rather than the others.
    let mut empty = 0u64;
    for (i, value) in fields.elements().enumerate() {
        count = i + 1;
        trailing_empty = value.is_empty();
        let seq = i + 1;
        let Some(ed) = def.elements.get(i) else {
            out.push(too_many_elements(ctx, def, seq, value));
            return count;
        };
        let pos = ElementPos {
            element: seq as u8,
            ..Default::default()
        };
        if value.is_empty() {
            if seq < 64 {
                empty |= 1 << seq;
            }
            if ed.usage == Usage::Required {
                out.push(required_missing(ctx, ed, pos, "empty"));
            }
            continue;
        }
        if ed.usage == Usage::NotUsed {
            out.push(not_used(ctx, ed, pos, value));
            continue;
        }
        // Half the values are codes: one lookup settles those that are valid, before any scan
        // of their bytes (a code holds no separator that is punctuation).
        if !seps.always && ed.is_passing_code(value) {
            continue;
        }
        let mask = classify(value);
        if ed.ty != ElementType::C && !seps.may_split(mask) {
            // The common case: one simple value, no repetitions or components.
            if let Some(f) = fault(ctx.codesets, ed, value, mask) {
                out.push(report(ctx, ed, value, pos, f));
            }
            continue;
        }
        check_repetitions(ctx, ed, value, mask, pos, seps, out);
    }
    if count > 0 && trailing_empty {
        out.push(trailing_separator(ctx));
    }
    if !def.syntax.is_empty() {
        let limit = count.min(63);
        let value = |n: usize| if n <= limit { fields.element(n) } else { b"" };
        // Elements 1 to `limit`, less the empty ones.
        let sent = (2u64.wrapping_shl(limit as u32)).wrapping_sub(2) & !empty;
        // Nearly every note holds, which the mask of the elements sent tells in a few
        // operations; the others are checked element by element, which words the findings.
        // Elements past the 63rd count as not sent in both, as they did before.
        for note in &def.syntax {
            if !note.holds(sent) {
                check_syntax_note(ctx, def, note, &value, out);
            }
        }
    }
    // Required elements beyond the last one sent.
    if count >= def.required_through {
        return count;
    }
    for ed in def.elements.iter().skip(count) {
        if ed.usage == Usage::Required {
            let pos = ElementPos {
                element: ed.seq,
                ..Default::default()
            };
            out.push(required_missing(ctx, ed, pos, "missing"));
        }
    }
    count
}

#[inline(never)]
fn check_repetitions(
    ctx: &ElementCtx<'_>,
    ed: &schema::Element,
    value: &[u8],
    mask: u8,
    pos: ElementPos,
    seps: &Separators,
    out: &mut Vec<Finding>,
) {
    let has_reps = seps
        .repetition
        .is_some_and(|r| may_hold(mask, r) && find_byte(r, value).is_some());
    if !has_reps {
        return check_value(ctx, ed, value, mask, pos, seps.component, out);
    }
    let rep_sep = seps.repetition.unwrap_or(0);
    let allowed = ed.repeat.unwrap_or(u32::MAX);
    for (r, rep) in split(value, rep_sep).enumerate() {
        let rpos = ElementPos {
            repetition: Some((r + 1).min(u16::MAX as usize) as u16),
            ..pos
        };
        if r as u32 >= allowed {
            out.push(
                finding(
                    ctx,
                    "X12-E-TOO-MANY-REPETITIONS",
                    1,
                    "12",
                    ed,
                    rpos,
                    format!("{} ({}) allows {} repetition(s)", ed.id, ed.name, allowed),
                )
                .with_value(value, ed.phi),
            );
            return;
        }
        check_value(ctx, ed, rep, classify(rep), rpos, seps.component, out);
    }
}

/// `value` is classified: `mask` is [`classify`] of it.
fn check_value(
    ctx: &ElementCtx<'_>,
    ed: &schema::Element,
    value: &[u8],
    mask: u8,
    pos: ElementPos,
    comp_sep: u8,
    out: &mut Vec<Finding>,
) {
    if ed.ty != ElementType::C {
        if may_hold(mask, comp_sep) && find_byte(comp_sep, value).is_some() {
            out.push(
                finding(
                    ctx,
                    "X12-E-TOO-MANY-COMPONENTS",
                    1,
                    "13",
                    ed,
                    pos,
                    format!("{} ({}) is not a composite", ed.id, ed.name),
                )
                .with_value(value, ed.phi),
            );
            return;
        }
        return check_classified(ctx, ed, value, mask, pos, out);
    }
    let mut n = 0usize;
    let mut seen = [false; 16];
    for (c, comp) in split(value, comp_sep).enumerate() {
        n = c + 1;
        let cpos = ElementPos {
            component: Some((c + 1).min(255) as u8),
            ..pos
        };
        let Some(cd) = ed.components.get(c) else {
            out.push(
                finding(
                    ctx,
                    "X12-E-TOO-MANY-COMPONENTS",
                    1,
                    "13",
                    ed,
                    cpos,
                    format!(
                        "{} ({}) has {} components",
                        ed.id,
                        ed.name,
                        ed.components.len()
                    ),
                )
                .with_value(value, ed.phi),
            );
            return;
        };
        if c < 16 {
            seen[c] = !comp.is_empty();
        }
        if comp.is_empty() {
            if cd.usage == Usage::Required {
                out.push(finding(
                    ctx,
                    "X12-E-REQUIRED-MISSING",
                    2,
                    "1",
                    cd,
                    cpos,
                    format!("{} ({}) is required but empty", cd.id, cd.name),
                ));
            }
            continue;
        }
        if cd.usage == Usage::NotUsed {
            out.push(
                finding(
                    ctx,
                    "IG-E-NOT-USED",
                    2,
                    "I10",
                    cd,
                    cpos,
                    format!("{} ({}) is marked Not Used but was sent", cd.id, cd.name),
                )
                .with_value(comp, cd.phi),
            );
            continue;
        }
        check_simple(ctx, cd, comp, cpos, out);
    }
    for (c, cd) in ed.components.iter().enumerate().skip(n) {
        if cd.usage == Usage::Required && !seen.get(c).copied().unwrap_or(false) {
            out.push(finding(
                ctx,
                "X12-E-REQUIRED-MISSING",
                2,
                "1",
                cd,
                ElementPos {
                    component: Some((c + 1) as u8),
                    ..pos
                },
                format!("{} ({}) is required but missing", cd.id, cd.name),
            ));
        }
    }
}

/// Byte classes for one-pass checks of a value: each byte's bits are OR-ed together, so one
/// scan tells whether a value is plain (digits, letters, spaces) and the slower exact scans
/// (separators, disallowed bytes, digit counts) run only when the bits say they can matter.
const CTRL: u8 = 1;
/// Not `0`-`9`.
const NONDIGIT: u8 = 2;
/// Printable ASCII other than letters, digits and space (where separators usually are).
const PUNCT: u8 = 4;

static CLASS: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let mut bits = 0;
        if !allowed_byte(c) {
            bits |= CTRL;
        } else if !(c.is_ascii_alphanumeric() || c == b' ') {
            bits |= PUNCT;
        }
        if !c.is_ascii_digit() {
            bits |= NONDIGIT;
        }
        t[b] = bits;
        b += 1;
    }
    t
}

/// The OR of the classes of `v`'s bytes (0 for an empty value).
#[inline]
fn classify(v: &[u8]) -> u8 {
    v.iter().fold(0, |m, b| m | CLASS[*b as usize])
}

/// False when a value with class `mask` cannot contain `sep` (a letter, digit or space
/// separator is always searched for).
#[inline]
fn may_hold(mask: u8, sep: u8) -> bool {
    let c = CLASS[sep as usize] & (CTRL | PUNCT);
    c == 0 || mask & c != 0
}

/// The repetition and component separators of the segment being checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Separators {
    repetition: Option<u8>,
    component: u8,
    /// The classes (control, punctuation) of both separators: a value whose mask has none of
    /// them holds neither.
    bits: u8,
    /// A separator is a letter, digit or space: every value must be searched.
    always: bool,
}

impl Separators {
    pub fn new(d: Delimiters) -> Self {
        let (repetition, component) = (d.repetition, d.component);
        let class = |b: u8| CLASS[b as usize] & (CTRL | PUNCT);
        let rep = repetition.map(class);
        let comp = class(component);
        Separators {
            repetition,
            component,
            bits: rep.unwrap_or(0) | comp,
            always: rep == Some(0) || comp == 0,
        }
    }

    /// True when these are the separators of delimiters `d`.
    #[inline]
    pub fn is_for(&self, d: Delimiters) -> bool {
        self.repetition == d.repetition && self.component == d.component
    }

    /// False when a value with class `mask` holds neither separator.
    #[inline]
    fn may_split(&self, mask: u8) -> bool {
        self.always || mask & self.bits != 0
    }
}

/// True for bytes allowed in X12 5010 data: the basic and extended character sets (printable
/// ASCII). Control characters and non-ASCII bytes are not.
const fn allowed_byte(b: u8) -> bool {
    b >= 0x20 && b < 0x7f
}

/// Checks one simple value (an element or a component).
pub fn check_simple(
    ctx: &ElementCtx<'_>,
    ed: &schema::Element,
    value: &[u8],
    pos: ElementPos,
    out: &mut Vec<Finding>,
) {
    check_classified(ctx, ed, value, classify(value), pos, out)
}

/// What is wrong with a simple value, found by [`fault`]; [`report`] words it.
enum Fault {
    Character(u8),
    Type {
        id: &'static str,
        code: &'static str,
        what: &'static str,
    },
    TooShort(u32),
    TooLong(u32),
    TrailingSpaces,
    Code,
    External,
}

/// [`check_simple`] for a value whose [`classify`] mask is known.
#[inline]
fn check_classified(
    ctx: &ElementCtx<'_>,
    ed: &schema::Element,
    value: &[u8],
    mask: u8,
    pos: ElementPos,
    out: &mut Vec<Finding>,
) {
    if let Some(f) = fault(ctx.codesets, ed, value, mask) {
        out.push(report(ctx, ed, value, pos, f));
    }
}

/// The first fault of a simple value, in the order the checks have always run: characters,
/// type, length, trailing spaces, code list, external code set.
#[inline(always)]
fn fault(codesets: &CodeSets, ed: &schema::Element, value: &[u8], mask: u8) -> Option<Fault> {
    // Half the values are codes: one lookup settles those that are valid.
    if ed.is_passing_code(value) {
        return None;
    }
    if mask & CTRL != 0 {
        if let Some(b) = value.iter().find(|b| !allowed_byte(**b)) {
            return Some(Fault::Character(*b));
        }
    }
    // Only digits (and at least one): a number whose length is its byte count.
    let all_digits = mask & NONDIGIT == 0 && !value.is_empty();
    let numeric = matches!(
        ed.ty,
        ElementType::N0
            | ElementType::N1
            | ElementType::N2
            | ElementType::N3
            | ElementType::N4
            | ElementType::N5
            | ElementType::N6
            | ElementType::N7
            | ElementType::N8
            | ElementType::N9
    );
    // Lengths: the sign and decimal point of numbers do not count.
    let len = match ed.ty {
        ElementType::R if all_digits => value.len(),
        ElementType::R => value.iter().filter(|b| b.is_ascii_digit()).count(),
        _ if numeric => value.len() - usize::from(value.first() == Some(&b'-')),
        _ => value.len(),
    } as u32;
    let type_error = if numeric && all_digits {
        None
    } else if numeric {
        let digits = value.strip_prefix(b"-").unwrap_or(value);
        (digits.is_empty() || !digits.iter().all(u8::is_ascii_digit)).then_some((
            "X12-E-INVALID-CHARACTER",
            "6",
            "must be a whole number",
        ))
    } else {
        match ed.ty {
            ElementType::R => (!all_digits && !is_decimal(value)).then_some((
                "X12-E-INVALID-CHARACTER",
                "6",
                "must be a decimal number",
            )),
            ElementType::DT => (!is_date(value)).then_some((
                "X12-E-INVALID-DATE",
                "8",
                "is not a real date in the form CCYYMMDD",
            )),
            ElementType::TM => (!is_time(value)).then_some((
                "X12-E-INVALID-TIME",
                "9",
                "is not a valid time HHMM[SS[D[D]]]",
            )),
            _ => None,
        }
    };
    if let Some((id, code, what)) = type_error {
        return Some(Fault::Type { id, code, what });
    }
    if len < ed.min {
        return Some(Fault::TooShort(len));
    }
    if ed.max > 0 && len > ed.max {
        return Some(Fault::TooLong(len));
    }
    if matches!(ed.ty, ElementType::AN) && len > ed.min.max(1) && value.last() == Some(&b' ') {
        return Some(Fault::TrailingSpaces);
    }
    // Most elements have no code list: skip the call for them.
    if ed.codes.is_some() && !ed.allows_code(value) {
        return Some(Fault::Code);
    }
    if let Some(set) = &ed.external {
        if codesets.contains(set, value) == Some(false) {
            return Some(Fault::External);
        }
    }
    None
}

/// The finding for a [`Fault`]; out of line, as findings are rare.
#[cold]
#[inline(never)]
fn report(
    ctx: &ElementCtx<'_>,
    ed: &schema::Element,
    value: &[u8],
    pos: ElementPos,
    fault: Fault,
) -> Finding {
    let (id, snip, code, msg) = match fault {
        Fault::Character(b) => (
            "X12-E-INVALID-CHARACTER",
            1,
            "6",
            format!(
                "{} ({}) contains the byte 0x{:02X}, which is not allowed in X12 data",
                ed.id, ed.name, b
            ),
        ),
        Fault::Type { id, code, what } => (id, 1, code, format!("{} ({}) {what}", ed.id, ed.name)),
        Fault::TooShort(len) => (
            "X12-E-TOO-SHORT",
            1,
            "4",
            format!(
                "{} ({}) is {} character(s); the minimum is {}",
                ed.id, ed.name, len, ed.min
            ),
        ),
        Fault::TooLong(len) => (
            "X12-E-TOO-LONG",
            1,
            "5",
            format!(
                "{} ({}) is {} character(s); the maximum is {}",
                ed.id, ed.name, len, ed.max
            ),
        ),
        Fault::TrailingSpaces => (
            "X12-E-TRAILING-SPACES",
            1,
            "6",
            format!("{} ({}) has trailing spaces", ed.id, ed.name),
        ),
        Fault::Code => (
            "X12-E-INVALID-CODE",
            2,
            "7",
            format!(
                "{:?} is not a valid code for {} ({})",
                String::from_utf8_lossy(value),
                ed.id,
                ed.name
            ),
        ),
        Fault::External => (
            "EXT-INVALID-CODE",
            5,
            "7",
            format!(
                "{:?} is not in the {} code set for {} ({})",
                String::from_utf8_lossy(value),
                ed.external.as_deref().unwrap_or_default(),
                ed.id,
                ed.name
            ),
        ),
    };
    finding(ctx, id, snip, code, ed, pos, msg).with_value(value, ed.phi)
}

/// Checks a date/period against its format qualifier (DTP02, DMG01, INS11: `D8` or `RD8`).
fn check_period(
    ctx: &ElementCtx<'_>,
    ed: &schema::Element,
    qualifier: &[u8],
    value: &[u8],
    pos: ElementPos,
    out: &mut Vec<Finding>,
) {
    let ok = match qualifier {
        b"D8" => is_date(value),
        b"RD8" => match value.iter().position(|b| *b == b'-') {
            // Real CCYYMMDD dates order like their bytes.
            Some(i) => {
                let (a, b) = (&value[..i], &value[i + 1..]);
                is_date(a) && is_date(b) && a <= b
            }
            None => false,
        },
        _ => return,
    };
    if !ok {
        out.push(
            finding(
                ctx,
                "X12-E-INVALID-DATE",
                1,
                "8",
                ed,
                pos,
                format!(
                    "{} ({}) is not a valid {} date{}",
                    ed.id,
                    ed.name,
                    String::from_utf8_lossy(qualifier),
                    if qualifier == b"RD8" {
                        " range CCYYMMDD-CCYYMMDD with start <= end"
                    } else {
                        " CCYYMMDD"
                    }
                ),
            )
            .with_value(value, ed.phi),
        );
    }
}

#[inline(never)]
fn check_syntax_note<'v>(
    ctx: &ElementCtx<'_>,
    def: &schema::Segment,
    note: &schema::SyntaxNote,
    value: &impl Fn(usize) -> &'v [u8],
    out: &mut Vec<Finding>,
) {
    let is = |s: u8| !value(s as usize).is_empty();
    let elem = |s: u8| def.elements.get((s as usize).wrapping_sub(1));
    let rule = || {
        let name: String = note.seqs.iter().map(|s| format!("{s:02}")).collect();
        format!("{:?}{}", note.kind, name)
    };
    let missing = |s: u8, why: String, out: &mut Vec<Finding>| {
        if let Some(ed) = elem(s) {
            out.push(finding(
                ctx,
                "X12-E-CONDITIONAL-MISSING",
                1,
                "2",
                ed,
                ElementPos {
                    element: s,
                    ..Default::default()
                },
                why,
            ));
        }
    };
    let Some((&first, rest)) = note.seqs.split_first() else {
        return;
    };
    match note.kind {
        SyntaxKind::P => {
            if note.seqs.iter().any(|s| is(*s)) {
                for s in note.seqs.iter().filter(|s| !is(**s)) {
                    missing(
                        *s,
                        format!(
                            "{}{:02} is required: syntax note {} pairs these elements",
                            String::from_utf8_lossy(&def.id),
                            s,
                            rule()
                        ),
                        out,
                    );
                }
            }
        }
        SyntaxKind::R => {
            if !note.seqs.iter().any(|s| is(*s)) {
                missing(
                    first,
                    format!(
                        "at least one of the elements of syntax note {} is required",
                        rule()
                    ),
                    out,
                );
            }
        }
        SyntaxKind::E => {
            if let Some(second) = note.seqs.iter().filter(|s| is(**s)).nth(1) {
                if let Some(ed) = elem(*second) {
                    out.push(
                        finding(
                            ctx,
                            "X12-E-EXCLUSION",
                            1,
                            "10",
                            ed,
                            ElementPos {
                                element: *second,
                                ..Default::default()
                            },
                            format!(
                                "only one of the elements of syntax note {} may be sent",
                                rule()
                            ),
                        )
                        .with_value(value(*second as usize), ed.phi),
                    );
                }
            }
        }
        SyntaxKind::C => {
            if is(first) {
                for s in rest.iter().filter(|s| !is(**s)) {
                    missing(
                        *s,
                        format!(
                            "{}{:02} is required when {}{:02} is present (syntax note {})",
                            String::from_utf8_lossy(&def.id),
                            s,
                            String::from_utf8_lossy(&def.id),
                            first,
                            rule()
                        ),
                        out,
                    );
                }
            }
        }
        SyntaxKind::L => {
            if is(first) && !rest.iter().any(|s| is(*s)) {
                if let Some(&s) = rest.first() {
                    missing(
                        s,
                        format!(
                            "one of the other elements of syntax note {} is required",
                            rule()
                        ),
                        out,
                    );
                }
            }
        }
    }
}

/// Checks date/period elements against their qualifiers.
fn periods<'v>(
    ctx: &ElementCtx<'_>,
    def: &schema::Segment,
    element: impl Fn(usize) -> &'v [u8],
    out: &mut Vec<Finding>,
) {
    for &i in &def.periods {
        let ed = &def.elements[i];
        let Some(q) = ed.format_qualifier else {
            continue;
        };
        let value = element(ed.seq as usize);
        if value.is_empty() || ed.usage == Usage::NotUsed {
            continue;
        }
        let qualifier = element(q as usize);
        check_period(
            ctx,
            ed,
            qualifier,
            value,
            ElementPos {
                element: ed.seq,
                ..Default::default()
            },
            out,
        );
    }
}

/// Parses `CCYYMMDD`; years before 1800 are rejected as pyx12 does.
pub fn parse_date(v: &[u8]) -> Option<NaiveDate> {
    if v.len() != 8 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |a: usize, b: usize| -> u32 {
        v[a..b]
            .iter()
            .fold(0, |acc, d| acc * 10 + (d - b'0') as u32)
    };
    let y = n(0, 4) as i32;
    if y < 1800 {
        return None;
    }
    NaiveDate::from_ymd_opt(y, n(4, 6), n(6, 8))
}

/// True when `v` is a date [`parse_date`] accepts, without building it. The eight bytes are
/// read as one integer: a byte is a digit when its high half is 3 and adding 6 leaves it so
/// (no byte can carry into the next), and the digit pairs are combined lane by lane, in about
/// a third of the instructions of a byte-by-byte read (26,339 D8 dates in the 10 MB file).
pub fn is_date(v: &[u8]) -> bool {
    let Some(b) = v.first_chunk::<8>().filter(|_| v.len() == 8) else {
        return false;
    };
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    let x = u64::from_be_bytes(*b);
    if x & HIGH != THREES || x.wrapping_add(0x0606_0606_0606_0606) & HIGH != THREES {
        return false;
    }
    // Byte 0 (the first digit) is the top byte; each 16-bit lane becomes its two digits' value.
    let digits = x & 0x0F0F_0F0F_0F0F_0F0F;
    const LOW: u64 = 0x00FF_00FF_00FF_00FF;
    let pairs = (digits >> 8 & LOW) * 10 + (digits & LOW);
    let lane = |n: u32| (pairs >> (16 * n) & 0xFFFF) as u32;
    let (y, m, d) = (lane(3) * 100 + lane(2), lane(1), lane(0));
    if y < 1800 || !(1..=12).contains(&m) || d == 0 {
        return false;
    }
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    d <= days
}

/// `HHMM`, `HHMMSS`, `HHMMSSD` or `HHMMSSDD`.
pub fn is_time(v: &[u8]) -> bool {
    if !matches!(v.len(), 4 | 6 | 7 | 8) || !v.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let two = |i: usize| (v[i] - b'0') * 10 + (v[i + 1] - b'0');
    two(0) < 24 && two(2) < 60 && (v.len() < 6 || two(4) < 60)
}

fn is_decimal(v: &[u8]) -> bool {
    let v = v.strip_prefix(b"-").unwrap_or(v);
    let (int, frac) = match v.iter().position(|b| *b == b'.') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match frac {
        None => !int.is_empty() && digits(int),
        Some(f) => !f.is_empty() && digits(f) && digits(int),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(c: &CleanSegments, d: Delimiters, seg_ix: usize, raw: &[u8]) -> bool {
        c.probe(d, seg_ix, raw) == Probe::Clean
    }

    /// What the validator does for a segment it found clean.
    fn remember(c: &mut CleanSegments, d: Delimiters, seg_ix: usize, raw: &[u8]) {
        if let Probe::Miss(at) = c.probe(d, seg_ix, raw) {
            c.insert(d, at, raw);
        }
    }

    #[test]
    fn clean_segments_are_remembered_by_bytes_schema_segment_and_delimiters() {
        let d = Delimiters::DEFAULT;
        let mut clean = CleanSegments::default();
        assert!(!contains(&clean, d, 3, b"LX*1"));
        remember(&mut clean, d, 3, b"LX*1");
        assert!(contains(&clean, d, 3, b"LX*1"));
        // Another schema segment, other bytes, a prefix, other delimiters: not the same.
        assert!(!contains(&clean, d, 4, b"LX*1"));
        assert!(!contains(&clean, d, 3, b"LX*2"));
        assert!(!contains(&clean, d, 3, b"LX*"));
        let other = Delimiters {
            component: b'>',
            ..d
        };
        assert!(!contains(&clean, other, 3, b"LX*1"));
        // Every length up to the longest kept, each byte significant.
        let long: Vec<u8> = (0..CLEAN_BYTES as u8).map(|i| b'A' + i % 26).collect();
        for n in 1..=CLEAN_BYTES {
            remember(&mut clean, d, 7, &long[..n]);
            assert!(contains(&clean, d, 7, &long[..n]));
            let mut changed = long[..n].to_vec();
            changed[n - 1] ^= 1;
            assert!(!contains(&clean, d, 7, &changed));
        }
        // Longer segments are not kept.
        let longer = [b'A'; CLEAN_BYTES + 1];
        remember(&mut clean, d, 7, &longer);
        assert!(!contains(&clean, d, 7, &longer));
        // New delimiters forget the rest; a copy starts empty.
        remember(&mut clean, other, 3, b"LX*1");
        assert!(!contains(&clean, d, 7, &long[..CLEAN_BYTES]));
        assert!(contains(&clean, other, 3, b"LX*1"));
        assert!(!contains(&clean.clone(), other, 3, b"LX*1"));
    }

    /// [`schema::SyntaxNote::holds`] never passes a note that the element-by-element check
    /// reports, and (for notes it can settle) passes every one that check does not report.
    #[test]
    fn syntax_note_masks_agree_with_the_element_by_element_check() {
        let schema = schema::Schema::from_json(schema::embedded::X220A1).unwrap();
        let def = schema
            .segments
            .iter()
            .find(|s| s.elements.len() >= 7)
            .unwrap();
        let codesets = CodeSets::default();
        let seps = Separators::new(Delimiters::DEFAULT);
        let loc = Location::default;
        let ctx = ElementCtx {
            codesets: &codesets,
            seps: &seps,
            loc: &loc,
        };
        let seq_lists: [&[u8]; 10] = [
            &[1, 2],
            &[2, 5, 7],
            &[3],
            &[6, 1, 4],
            &[1, 1, 2],
            &[],
            &[0, 2],
            &[2, 64],
            &[63, 1],
            &[3, 200],
        ];
        let mut settled = 0;
        for kind in ["P", "R", "E", "C", "L"] {
            for seqs in seq_lists {
                let json = format!(r#"{{"kind":"{kind}","seqs":{seqs:?}}}"#);
                let note: schema::SyntaxNote = serde_json::from_str::<schema::SyntaxNote>(&json)
                    .unwrap()
                    .compiled();
                let exact = !seqs.is_empty()
                    && seqs.iter().all(|s| (1..64).contains(s))
                    && seqs.iter().enumerate().all(|(i, s)| !seqs[..i].contains(s));
                // Notes the check can report on (an L note of one element never is).
                let shown = exact
                    && seqs.iter().all(|s| usize::from(*s) <= def.elements.len())
                    && !(kind == "L" && seqs.len() == 1);
                for bits in 0u64..256 {
                    // Elements 1 to 7 from `bits`, and element 63 with element 1.
                    let mut sent = (bits & 0x7F) << 1;
                    if bits & 1 != 0 {
                        sent |= 1 << 63;
                    }
                    let value = |n: usize| {
                        if n < 64 && sent & 1 << n != 0 {
                            &b"X"[..]
                        } else {
                            b""
                        }
                    };
                    let mut out = Vec::new();
                    check_syntax_note(&ctx, def, &note, &value, &mut out);
                    if note.holds(sent) {
                        assert!(out.is_empty(), "{json} {sent:#x}");
                        settled += 1;
                    } else if shown {
                        assert!(!out.is_empty(), "{json} {sent:#x}");
                    }
                }
            }
        }
        assert!(settled > 1000, "{settled}");
    }

    #[test]
    fn dates_times_and_decimals() {
        assert!(parse_date(b"20240229").is_some());
        assert!(parse_date(b"20230229").is_none());
        assert!(parse_date(b"17991231").is_none());
        assert!(parse_date(b"2024022").is_none());
        assert!(is_time(b"2359"));
        assert!(is_time(b"235959"));
        assert!(is_time(b"23595999"));
        assert!(!is_time(b"2460"));
        assert!(!is_time(b"102497"));
        assert!(!is_time(b"12345"));
        assert!(is_decimal(b"10.5"));
        assert!(is_decimal(b"-.5"));
        assert!(is_decimal(b"10"));
        assert!(!is_decimal(b"1e5"));
        assert!(!is_decimal(b"10."));
        assert!(!is_decimal(b"."));
        assert!(!is_decimal(b"1,000"));
    }

    #[test]
    fn is_date_agrees_with_parse_date() {
        let mut checked = 0;
        for y in [
            0u32, 1799, 1800, 1900, 1999, 2000, 2023, 2024, 2100, 2400, 9999,
        ] {
            for m in 0..=13u32 {
                for d in 0..=32u32 {
                    let v = format!("{y:04}{m:02}{d:02}");
                    assert_eq!(
                        is_date(v.as_bytes()),
                        parse_date(v.as_bytes()).is_some(),
                        "{v}"
                    );
                    checked += 1;
                }
            }
        }
        for v in [
            &b""[..],
            b"2024011",
            b"202401011",
            b"2024-1-1",
            b"2024O101",
            b" 2024010",
        ] {
            assert_eq!(is_date(v), parse_date(v).is_some(), "{v:?}");
        }
        assert!(checked > 4000);
        // Every byte in every position of a real date, and of the last day of February.
        for base in [&b"20240131"[..], b"20240229", b"18000101", b"99991231"] {
            for at in 0..8 {
                for byte in 0..=255u8 {
                    let mut v = base.to_vec();
                    v[at] = byte;
                    assert_eq!(is_date(&v), parse_date(&v).is_some(), "{v:?}");
                }
            }
        }
    }
}
