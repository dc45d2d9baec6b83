//! The generic loop walker: places each segment of a transaction set in the schema's loop tree.
//!
//! It keeps a stack of open loop instances with per-child use counts, which is all the state a
//! set needs (bounded by the schema's depth, never by the data). For each segment it searches
//! forward from the current place in the innermost loop, then in each enclosing loop, for a
//! segment or a loop trigger that accepts it, first matching qualifiers strictly (REF*0F versus
//! REF*1L), then by segment ID alone so that a bad qualifier is reported on its element rather
//! than as a misplaced segment. Required children that were skipped over, or never seen before a
//! loop closed, are reported as missing at the position of the segment that revealed it, as
//! pyx12 and the 999 guide do.

use crate::finding::{Ack, Finding};
use crate::schema::{id_bit, Child, LoopIx, Schema, SegIx, Usage};
use std::ops::Range;

/// A segment's ID and first element, packed once for the whole search.
struct Key<'a> {
    id: u64,
    /// [`id_bit`] of `id`, tested against each open loop's [`crate::schema::Loop::child_ids`].
    bit: u64,
    first_key: Option<u64>,
    first: &'a [u8],
}

impl Key<'_> {
    /// Given that the IDs match: does child `c` accept the segment (qualifiers)?
    #[inline]
    fn accepts(&self, schema: &Schema, c: Child, strict: bool) -> bool {
        let six = match c {
            Child::Segment(s) => s,
            Child::Loop(l) => schema.loops[l].trigger,
        };
        schema.qualifier_matches(six, self.first_key, self.first, strict)
    }
}

/// One open loop instance.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Frame {
    loop_ix: LoopIx,
    /// The loop's part of the memo tag ([`SearchMemo::tag`] with cursor 0, not strict), set
    /// when the loop opens: a search then only adds its cursor and strictness.
    tag: u64,
    /// The loop's [`crate::schema::Loop::child_ids`]: the IDs its search can find.
    ids: u64,
    /// Index of the child matched last.
    cursor: usize,
    /// Uses of each child in this instance (segment uses or loop repetitions).
    counts: Vec<u32>,
}

/// What the walker decided for one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The segment is `seg` of the schema; `opened` loops were entered (outermost first is not
    /// kept; only how many), `closed` loops were left before it.
    Placed { seg: SegIx, opened: u8, closed: u8 },
    /// The segment could not be placed; the walker state is unchanged.
    Unplaced,
}

/// Loops left or entered by the last placement, for consumers that build member records.
#[derive(Debug, Default, Clone)]
pub struct Walker {
    stack: Vec<Frame>,
    depth: usize,
    memo: SearchMemo,
}

/// Cache: what the search of one open loop found, by (loop, cursor, segment ID, qualifier).
///
/// A loop's search depends on nothing else (the schema is the one the walker started with),
/// and a set repeats the same few hundred of these for every member: one lookup instead of a
/// scan of the loop's children and their qualifiers. A direct-mapped table of fixed size (an
/// entry takes its slot from the one before), kept only for qualifiers that pack.
#[derive(Debug, Default)]
pub struct SearchMemo {
    /// The schema the searches are of (its address: the walker started with it).
    schema: usize,
    /// [`MEMO_SLOTS`] slots once the first search is remembered (an array: a slot's index,
    /// the hash's top bits, needs no bounds check).
    slots: Option<Box<[MemoSlot; MEMO_SLOTS]>>,
}

/// A copy starts empty: it only saves work (a piece of a set checked on its own fills its own).
impl Clone for SearchMemo {
    fn clone(&self) -> Self {
        SearchMemo::default()
    }
}

const MEMO_SLOTS: usize = 1024;

/// The memo's first element for a segment whose element 1 does not pack: no packed value
/// (whose low byte is its length, 0 to 7) is this.
const NO_FIRST: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemoSlot {
    /// Loop, cursor, whether the loop is the root, strictness ([`SearchMemo::tag`]); `u64::MAX`
    /// in an empty slot.
    tag: u64,
    id: u64,
    first: u64,
    /// The child found, plus one; 0 for none.
    found: u32,
}

impl SearchMemo {
    fn tag(loop_ix: LoopIx, cursor: usize, root: bool, strict: bool) -> u64 {
        (loop_ix as u64) << 32 | (cursor as u64) << 2 | u64::from(root) << 1 | u64::from(strict)
    }

    fn slot(tag: u64, id: u64, first: u64) -> usize {
        let h =
            (tag ^ id.rotate_left(17) ^ first.rotate_left(41)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - MEMO_SLOTS.trailing_zeros())) as usize
    }

    /// `Some(found)` when the search is remembered.
    #[inline]
    fn get(&self, tag: u64, id: u64, first: u64) -> Option<Option<usize>> {
        let e = &self.slots.as_ref()?[Self::slot(tag, id, first)];
        (e.tag == tag && e.id == id && e.first == first).then(|| (e.found as usize).checked_sub(1))
    }

    /// The table with every slot empty, built on the heap (an array built on the stack made
    /// the validator's inlined per-segment frame 32 KiB, probed page by page at every call).
    #[cold]
    #[inline(never)]
    fn empty_slots() -> Box<[MemoSlot; MEMO_SLOTS]> {
        let empty = MemoSlot {
            tag: u64::MAX,
            id: 0,
            first: 0,
            found: 0,
        };
        let slots: Box<[MemoSlot]> = vec![empty; MEMO_SLOTS].into_boxed_slice();
        slots
            .try_into()
            .unwrap_or_else(|_| unreachable!("MEMO_SLOTS slots"))
    }

    fn put(&mut self, tag: u64, id: u64, first: u64, found: Option<usize>) {
        let slots = self.slots.get_or_insert_with(Self::empty_slots);
        slots[Self::slot(tag, id, first)] = MemoSlot {
            tag,
            id,
            first,
            found: found.map_or(0, |c| c as u32 + 1),
        };
    }
}

/// A missing required child found while moving forward or closing a loop.
#[derive(Debug, Clone, Copy)]
pub struct Missing {
    pub seg: SegIx,
    /// True when the missing child is a whole loop (its trigger segment is reported).
    pub is_loop: bool,
    pub loop_ix: LoopIx,
}

impl Walker {
    pub fn new() -> Walker {
        Walker::default()
    }

    /// Starts a set: the root loop is open and its first child (ST) is matched.
    pub fn start(&mut self, schema: &Schema) {
        self.depth = 0;
        // The searches remembered are those of the schema the walker last started with.
        let id = std::ptr::from_ref(schema) as usize;
        if self.memo.schema != id {
            self.memo.schema = id;
            self.memo.slots = None;
        }
        self.push(schema, schema.root(), 0);
    }

    /// Inline: a loop opens for two segments in five, and the call cost a fifth of the work.
    #[inline(always)]
    fn push(&mut self, schema: &Schema, loop_ix: LoopIx, cursor: usize) {
        let lp = &schema.loops[loop_ix];
        let n = lp.children.len();
        // `Loop::child_ids` leaves the trigger out for every loop but the root, as the search
        // does for every frame but the outermost: the root is that frame, and only it.
        debug_assert_eq!(self.depth == 0, lp.parent.is_none());
        if self.stack.len() <= self.depth {
            self.stack.push(Frame::default());
        }
        let f = &mut self.stack[self.depth];
        f.loop_ix = loop_ix;
        f.tag = SearchMemo::tag(loop_ix, 0, self.depth == 0, false);
        f.ids = lp.child_ids;
        f.cursor = cursor;
        // The counts are zeroed in place (a `memset`) and grown, by pushes, only when short
        // (42 k of the 184 k loops opened in the 10 MB file). A `clear` and a `resize` relied
        // on the inliner, which outlined `resize` once `SetValidator::segment` grew: a loop
        // writing the zeros one by one, ~68 instructions for every loop opened. Growing with
        // `resize` when short counted 0.9 M more than these pushes in the merged build.
        f.counts.truncate(n);
        f.counts.fill(0);
        while f.counts.len() < n {
            f.counts.push(0);
        }
        f.counts[cursor] = 1;
        self.depth += 1;
    }

    /// The innermost open loop.
    pub fn current_loop(&self) -> Option<LoopIx> {
        self.depth.checked_sub(1).map(|d| self.stack[d].loop_ix)
    }

    /// Open loops, outermost first.
    pub fn open_loops(&self) -> impl Iterator<Item = LoopIx> + '_ {
        self.stack[..self.depth].iter().map(|f| f.loop_ix)
    }

    #[inline(always)]
    fn search(&mut self, schema: &Schema, key: &Key<'_>, strict: bool) -> Option<(usize, usize)> {
        // Innermost first. A count down over the open frames (not `enumerate().rev()`, whose
        // index cost a division by the frame's size at every step).
        let frames = &self.stack[..self.depth];
        let mut d = frames.len();
        while d > 0 {
            d -= 1;
            let f = &frames[d];
            // No child of the loop has the segment's ID (the common case for the loops a
            // segment closes): nothing to search or look up.
            if f.ids & key.bit == 0 {
                debug_assert_eq!(Self::search_loop(schema, f, d, key, false), None);
                continue;
            }
            let found = match key.first_key {
                Some(first) => {
                    // Cursors fit the tag: a schema's loops have fewer than 2^30 children.
                    debug_assert!(f.cursor < 1 << 30);
                    let tag = f.tag | (f.cursor as u64) << 2 | u64::from(strict);
                    debug_assert_eq!(tag, SearchMemo::tag(f.loop_ix, f.cursor, d == 0, strict));
                    match self.memo.get(tag, key.id, first) {
                        Some(found) => found,
                        None => {
                            let found = Self::search_loop(schema, f, d, key, strict);
                            self.memo.put(tag, key.id, first, found);
                            found
                        }
                    }
                }
                None => Self::search_unpacked(&mut self.memo, schema, f, d, key, strict),
            };
            if let Some(ci) = found {
                return Some((d, ci));
            }
        }
        None
    }

    /// [`Self::search`] of one loop for a segment whose element 1 does not pack (N3's street,
    /// N4's city: about one segment in twenty). Without a packed qualifier a strict match can
    /// only pass a child that has no qualifier list, or one whose list did not pack; when the
    /// schema has none of the latter the search depends on the ID alone, and is remembered
    /// under [`NO_FIRST`]. Out of line, to keep the per-segment path small.
    #[inline(never)]
    fn search_unpacked(
        memo: &mut SearchMemo,
        schema: &Schema,
        f: &Frame,
        d: usize,
        key: &Key<'_>,
        strict: bool,
    ) -> Option<usize> {
        if !schema.qualifier_lists_pack {
            return Self::search_loop(schema, f, d, key, strict);
        }
        let tag = f.tag | (f.cursor as u64) << 2 | u64::from(strict);
        if let Some(found) = memo.get(tag, key.id, NO_FIRST) {
            debug_assert_eq!(found, Self::search_loop(schema, f, d, key, strict));
            return found;
        }
        let found = Self::search_loop(schema, f, d, key, strict);
        memo.put(tag, key.id, NO_FIRST, found);
        found
    }

    /// The child of the open loop `f` (at depth `d`) that accepts the segment, from its cursor on.
    fn search_loop(
        schema: &Schema,
        f: &Frame,
        d: usize,
        key: &Key<'_>,
        strict: bool,
    ) -> Option<usize> {
        let lp = &schema.loops[f.loop_ix];
        // Siblings sharing a position may come in any order (REF*0F, REF*1L, REF*17...).
        let mut start = f.cursor;
        if let Child::Segment(s) = lp.children[f.cursor] {
            let pos = schema.segments[s].pos;
            while start > 0 {
                match lp.children[start - 1] {
                    Child::Segment(p) if schema.segments[p].pos == pos => start -= 1,
                    _ => break,
                }
            }
        }
        // A loop's own trigger never repeats inside the instance: a second one starts the
        // next repetition, found one level up.
        let mut ci = start.max(usize::from(d > 0));
        // A scan over the packed IDs alone (most children have another ID), then the
        // qualifiers of each child whose ID matches.
        while let Some(k) = lp
            .child_keys
            .get(ci..)
            .and_then(|ks| ks.iter().position(|&k| k == key.id))
        {
            ci += k;
            if key.accepts(schema, lp.children[ci], strict) {
                return Some(ci);
            }
            ci += 1;
        }
        None
    }

    /// True when the segment would fit earlier in one of the open loops (out of order).
    fn search_behind(&self, schema: &Schema, key: &Key<'_>) -> bool {
        for d in (0..self.depth).rev() {
            let f = &self.stack[d];
            let lp = &schema.loops[f.loop_ix];
            for ci in usize::from(d > 0)..f.cursor {
                if lp.child_keys[ci] == key.id && key.accepts(schema, lp.children[ci], true) {
                    return true;
                }
            }
        }
        false
    }

    /// Reports the required children of `f` in `range` that were never seen.
    ///
    /// Forced inline: a plain `#[inline]` was dropped once `SetValidator::segment` grew (a
    /// call twice a segment, 4.2 M instructions in the 10 MB file).
    #[inline(always)]
    fn required_unseen(
        schema: &Schema,
        f: &Frame,
        range: std::ops::Range<usize>,
        missing: &mut Vec<Missing>,
    ) {
        let lp = &schema.loops[f.loop_ix];
        // Most stretches skipped or closed hold no required child: nothing to look at then.
        // That is settled here, inline: the call cost as much as the test, twice a segment.
        let required = |i: usize| lp.required_before.get(i).copied().unwrap_or(0);
        if range.is_empty() || required(range.end) == required(range.start) {
            return;
        }
        Self::unseen(schema, f, range, missing);
    }

    /// [`Self::required_unseen`] for a stretch that holds a required child.
    #[inline(never)]
    fn unseen(schema: &Schema, f: &Frame, range: Range<usize>, missing: &mut Vec<Missing>) {
        let lp = &schema.loops[f.loop_ix];
        for ci in range {
            if f.counts[ci] > 0 {
                continue;
            }
            match lp.children[ci] {
                Child::Segment(s) if schema.segments[s].usage == Usage::Required => {
                    missing.push(Missing {
                        seg: s,
                        is_loop: false,
                        loop_ix: f.loop_ix,
                    })
                }
                Child::Loop(l) if schema.loops[l].usage == Usage::Required => {
                    missing.push(Missing {
                        seg: schema.loops[l].trigger,
                        is_loop: true,
                        loop_ix: l,
                    })
                }
                _ => {}
            }
        }
    }

    /// Closes loops deeper than `depth`, reporting required children never seen.
    #[inline]
    fn close_to(&mut self, schema: &Schema, depth: usize, missing: &mut Vec<Missing>) -> u8 {
        // Most segments close nothing: that is settled here, without a call.
        if self.depth <= depth {
            return 0;
        }
        self.close_loops(schema, depth, missing)
    }

    /// [`Self::close_to`] when there is a loop to close.
    #[inline(never)]
    fn close_loops(&mut self, schema: &Schema, depth: usize, missing: &mut Vec<Missing>) -> u8 {
        let mut closed = 0;
        while self.depth > depth {
            let f = &self.stack[self.depth - 1];
            Self::required_unseen(schema, f, f.cursor + 1..f.counts.len(), missing);
            self.depth -= 1;
            closed += 1;
        }
        closed
    }

    /// Places one segment. Missing required children discovered on the way go to `missing`;
    /// structural errors about the segment itself go to `errors` (with only id, code and message
    /// filled in: the caller adds positions).
    /// `id_key` is `pack(id)` and `first_key` is `pack(first)` (the caller keeps it for the
    /// record; both are packed with element 1's key, [`crate::validate`]'s `segment_keys`).
    ///
    /// Inline in [`crate::validate::SetValidator::segment`], its one caller per segment: the
    /// call passed seven arguments through the stack and saved and restored a large frame
    /// (about 35 instructions a segment).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // inline: no call passes them
    pub fn place(
        &mut self,
        schema: &Schema,
        id: &[u8],
        id_key: Option<u64>,
        first: &[u8],
        first_key: Option<u64>,
        missing: &mut Vec<Missing>,
        errors: &mut Vec<Finding>,
    ) -> Placement {
        // An ID longer than 7 bytes is in no schema (pack gives None): it matches nothing.
        let key = id_key.map(|id_key| Key {
            id: id_key,
            bit: id_bit(id_key),
            first_key,
            first,
        });
        // Strict first, then by ID alone; one inline search for both (a call per segment
        // cost more than a memo lookup). A plain loop, not a `find_map` closure: with `place`
        // inline the compiler made the closure a call of its own.
        let mut found = None;
        if let Some(k) = &key {
            for strict in [true, false] {
                found = self.search(schema, k, strict);
                if found.is_some() {
                    break;
                }
            }
        }
        let Some((d, ci)) = found else {
            if key.as_ref().is_some_and(|k| self.search_behind(schema, k)) {
                errors.push(Finding::new(
                    "X12-S-OUT-OF-ORDER",
                    1,
                    Ack::Segment("7"),
                    format!(
                        "{} is not in its proper sequence",
                        String::from_utf8_lossy(id)
                    ),
                ));
            } else if schema.knows_segment(id) {
                errors.push(Finding::new(
                    "X12-S-UNEXPECTED",
                    1,
                    Ack::Segment("2"),
                    format!(
                        "{} is not expected here: no loop open at this point accepts it",
                        String::from_utf8_lossy(id)
                    ),
                ));
            }
            return Placement::Unplaced;
        };
        let closed = self.close_to(schema, d + 1, missing);
        let f = &mut self.stack[d];
        let from = f.cursor;
        if ci > from {
            Self::required_unseen(schema, f, from + 1..ci, missing);
        }
        f.cursor = ci;
        let count = &mut f.counts[ci];
        *count = count.saturating_add(1);
        let uses = *count;
        match schema.loops[f.loop_ix].children[ci] {
            Child::Segment(s) => {
                let seg = &schema.segments[s];
                if seg.max_use.is_some_and(|m| uses > m) {
                    errors.push(Finding::new(
                        "X12-S-OVER-MAX-USE",
                        2,
                        Ack::Segment("5"),
                        format!(
                            "{} ({}) is used {} times; at most {} allowed",
                            String::from_utf8_lossy(&seg.id),
                            seg.name,
                            uses,
                            seg.max_use.unwrap_or(0)
                        ),
                    ));
                }
                Placement::Placed {
                    seg: s,
                    opened: 0,
                    closed,
                }
            }
            Child::Loop(l) => {
                let lp = &schema.loops[l];
                if lp.repeat.is_some_and(|m| uses > m) {
                    errors.push(Finding::new(
                        "X12-S-LOOP-OVER-MAX",
                        2,
                        Ack::Segment("4"),
                        format!(
                            "loop {} ({}) occurs {} times; at most {} allowed",
                            lp.id,
                            lp.name,
                            uses,
                            lp.repeat.unwrap_or(0)
                        ),
                    ));
                }
                let trigger = lp.trigger;
                self.push(schema, l, 0);
                Placement::Placed {
                    seg: trigger,
                    opened: 1,
                    closed,
                }
            }
        }
    }

    /// Takes the searches this walker remembers (for another walker of the same schema).
    pub fn take_memo(&mut self) -> SearchMemo {
        std::mem::take(&mut self.memo)
    }

    /// Remembers the searches of another walker (they are forgotten at [`Walker::start`] if
    /// they were of another schema).
    pub fn put_memo(&mut self, memo: SearchMemo) {
        self.memo = memo;
    }

    /// Number of open loops.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Forgets the loops deeper than `depth` without reporting anything: used to build the
    /// state a set is in between two member loops, for in-file parallel checking.
    pub fn truncate(&mut self, depth: usize) {
        self.depth = self.depth.min(depth);
    }

    /// Uses of child `child` in the open loop at `depth` (0 = the root).
    pub fn count(&self, depth: usize, child: usize) -> u32 {
        self.stack[..self.depth]
            .get(depth)
            .and_then(|f| f.counts.get(child).copied())
            .unwrap_or(0)
    }

    /// Sets the uses of child `child` in the open loop at `depth`.
    pub fn set_count(&mut self, depth: usize, child: usize, n: u32) {
        if let Some(c) = self.stack[..self.depth]
            .get_mut(depth)
            .and_then(|f| f.counts.get_mut(child))
        {
            *c = n;
        }
    }

    /// The child the loop at `depth` matched last.
    pub fn cursor(&self, depth: usize) -> Option<usize> {
        self.stack[..self.depth].get(depth).map(|f| f.cursor)
    }

    /// Same open loops, cursors and use counts, apart from the uses of `child` at `depth`
    /// (a count that adds up across pieces of a set checked in parallel).
    pub fn same_except(&self, other: &Walker, depth: usize, child: usize) -> bool {
        self.depth == other.depth
            && self.stack[..self.depth]
                .iter()
                .zip(&other.stack[..other.depth])
                .enumerate()
                .all(|(d, (a, b))| {
                    if d != depth {
                        return a == b;
                    }
                    a.loop_ix == b.loop_ix
                        && a.cursor == b.cursor
                        && a.counts.len() == b.counts.len()
                        && a.counts
                            .iter()
                            .zip(&b.counts)
                            .enumerate()
                            .all(|(i, (x, y))| i == child || x == y)
                })
    }

    /// Ends the set: closes every loop and reports required children never seen.
    pub fn finish(&mut self, schema: &Schema, missing: &mut Vec<Missing>) {
        self.close_to(schema, 0, missing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::{Lexer, Token};
    use crate::schema::pack;

    /// A frame of loop `l` of `schema` at `cursor`, as `Walker::push` opens it (no uses yet),
    /// and its depth: the root is the outermost frame, every other loop is deeper.
    fn frame_at(schema: &Schema, l: LoopIx, cursor: usize) -> (Frame, usize) {
        let lp = &schema.loops[l];
        let f = Frame {
            loop_ix: l,
            tag: 0,
            ids: lp.child_ids,
            cursor,
            counts: vec![0; lp.children.len()],
        };
        (f, usize::from(lp.parent.is_some()))
    }

    /// The search key of a segment with packed ID `id` whose element 1 does not pack.
    fn unpacked_key(id: u64, first: &[u8]) -> Key<'_> {
        Key {
            id,
            bit: id_bit(id),
            first_key: None,
            first,
        }
    }

    /// A loop's ID bits are a true filter: for every loop of both bundled schemas, every
    /// cursor and every segment ID of the transaction (with a few that are in no schema), an
    /// ID whose bit is not in `Loop::child_ids` is found by neither search of the loop, strict
    /// or by ID alone, whatever its first element. The walker skips those searches.
    #[test]
    fn loop_id_bits_skip_only_searches_that_find_nothing() {
        let mut skipped = 0;
        for text in [
            crate::schema::embedded::X220A1,
            crate::schema::embedded::X231A1,
        ] {
            let schema = Schema::from_json(text).unwrap();
            let mut ids: Vec<&[u8]> = schema.known_ids.iter().map(|i| i.as_slice()).collect();
            ids.extend([&b"ZZZ"[..], b"N9", b"IEA", b"A"]);
            for (l, lp) in schema.loops.iter().enumerate() {
                for cursor in 0..lp.children.len() {
                    let (f, d) = frame_at(&schema, l, cursor);
                    for &id in &ids {
                        let key = unpacked_key(pack(id).unwrap(), b"");
                        if lp.child_ids & key.bit != 0 {
                            continue;
                        }
                        skipped += 1;
                        // By ID alone every qualifier is accepted: nothing found means no
                        // child with the ID is searched at all.
                        for strict in [false, true] {
                            assert_eq!(Walker::search_loop(&schema, &f, d, &key, strict), None);
                        }
                    }
                }
            }
        }
        // Most loops hold a few of the 40-odd IDs: the filter settles most pairs.
        assert!(skipped > 1000, "{skipped}");
    }

    /// A search for a segment whose element 1 does not pack is remembered under its ID alone
    /// only when that is all it depends on: with `qualifier_lists_pack`, every loop, cursor and
    /// ID of the bundled 834 finds the same child for any such element 1 (an N3 street, an
    /// empty one, a code too long to pack), strict or not; a qualifier list that does not pack
    /// turns the flag off.
    #[test]
    fn unpacked_first_elements_search_by_id_alone() {
        let text = crate::schema::embedded::X220A1;
        let schema = Schema::from_json(text).unwrap();
        assert!(schema.qualifier_lists_pack);
        let long = text.replacen("\"0F\"", "\"0FTOOLONG\"", 1);
        assert_ne!(long, text);
        assert!(!Schema::from_json(&long).unwrap().qualifier_lists_pack);
        let firsts: [&[u8]; 4] = [b"1898 ELM CT", b"0FTOOLONG", b"SOUTHINGTON", b"12345678"];
        let mut found = 0;
        for (l, lp) in schema.loops.iter().enumerate() {
            for cursor in 0..lp.children.len() {
                let (f, d) = frame_at(&schema, l, cursor);
                for id in &schema.known_ids {
                    let id = pack(id).unwrap();
                    for strict in [true, false] {
                        let search = |first: &[u8]| {
                            let key = unpacked_key(id, first);
                            Walker::search_loop(&schema, &f, d, &key, strict)
                        };
                        let a = search(b"");
                        found += usize::from(a.is_some());
                        for first in firsts {
                            assert_eq!(search(first), a);
                        }
                    }
                }
            }
        }
        assert!(found > 100, "{found}");
    }

    /// The searches a walker remembers change no placement: at every segment of generated and
    /// damaged files, a copy of the walker (which starts with nothing remembered) places the
    /// segment as the walker itself does, and reports the same missing children and errors.
    #[test]
    fn remembered_searches_place_as_fresh_ones() {
        let schema = Schema::from_json(crate::schema::embedded::X220A1).unwrap();
        for seed in 1..=6u64 {
            let o = crate::gen::GenOptions {
                size_mb: 0.05,
                seed,
                full: seed % 2 == 0,
                error_rate: 20.0,
                sets: 2,
            };
            let mut x12 = Vec::new();
            crate::gen::generate(&o, &mut x12).unwrap();
            // Drop and repeat a few segments so that loops close early and segments misplace.
            let text = String::from_utf8(x12).unwrap();
            let damaged: Vec<&str> = text
                .split('~')
                .enumerate()
                .flat_map(|(i, s)| match (i as u64 * seed) % 23 {
                    _ if i < 4 => vec![s],
                    0 => vec![],
                    1 => vec![s, s],
                    _ => vec![s],
                })
                .collect();
            let damaged = damaged.join("~");
            let mut lexer = Lexer::new(damaged.as_bytes());
            let mut walker = Walker::new();
            let mut placed = 0;
            while let Some(tok) = lexer.next_token() {
                let Token::Segment(seg) = tok else { continue };
                let id = seg.id();
                if id == b"ST" {
                    walker.start(&schema);
                    continue;
                }
                if walker.depth() == 0 || matches!(id, b"ISA" | b"GS" | b"GE" | b"IEA") {
                    continue;
                }
                let first = seg.element(1);
                let mut fresh = walker.clone();
                let (mut m1, mut e1, mut m2, mut e2) = (vec![], vec![], vec![], vec![]);
                let a = fresh.place(&schema, id, pack(id), first, pack(first), &mut m1, &mut e1);
                let b = walker.place(&schema, id, pack(id), first, pack(first), &mut m2, &mut e2);
                assert_eq!(a, b);
                assert_eq!(
                    m1.iter().map(|m| (m.seg, m.loop_ix)).collect::<Vec<_>>(),
                    m2.iter().map(|m| (m.seg, m.loop_ix)).collect::<Vec<_>>()
                );
                assert_eq!(e1, e2);
                assert!(fresh.same_except(&walker, usize::MAX, 0));
                placed += 1;
            }
            assert!(placed > 1000);
        }
    }
}
