//! Validation of one transaction set against a schema (SNIP levels 1 to 5).
//!
//! [`SetValidator`] takes the segments between ST and SE one at a time. It places each one with
//! the generic [`structure::Walker`], checks its elements ([`element`]), records the header and
//! each member loop ([`record::Record`]) and, when a member loop closes, runs the situational and
//! balancing rules over it ([`situational`]). Findings inside a member are held until the member
//! ends so they can carry the member's business unit (REF*0F) for the 999 CTX segment; memory is
//! bounded by one member.

pub mod element;
pub mod record;
pub mod situational;
pub mod structure;

use crate::finding::{Ack, Finding, Location, Text, Trigger};
use crate::lexer::{Fields, Segment, Splitter};
use crate::schema::{CodeSets, Schema, SegmentIds, Usage};
use element::ElementCtx;
use record::{Placed, Record};
use situational::RuleSet;
use structure::{Missing, Placement, Walker};

/// How a transaction's "business unit" (the member an error belongs to) is found; for the 834
/// this is REF*0F in loop 2000, reported as `SUBSCRIBER NUMBER REF02`.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    pub loop_id: String,
    pub segment: Vec<u8>,
    pub qualifier: Vec<u8>,
    pub element: usize,
    pub ctx_name: String,
}

impl UnitSpec {
    pub fn for_834() -> UnitSpec {
        UnitSpec {
            loop_id: "2000".into(),
            segment: b"REF".to_vec(),
            qualifier: b"0F".to_vec(),
            element: 2,
            ctx_name: "SUBSCRIBER NUMBER REF02".into(),
        }
    }
}

/// Everything a set validation reads but does not change; shared by all threads.
pub struct Standards {
    pub schema: Schema,
    pub codesets: CodeSets,
    pub segment_ids: SegmentIds,
    pub unit: Option<UnitSpec>,
    pub rules: RuleSet,
}

/// Receives what the set validator produces.
pub trait SetSink {
    /// Adjusts a finding (a trading-partner policy may change its severity) before the set's
    /// disposition counts it; called once per finding, just before [`SetSink::finding`].
    fn adjust(&mut self, _f: &mut Finding) {}
    fn finding(&mut self, f: Finding);
    /// The header (ST up to the first member) is complete.
    fn header(&mut self, _rec: &Record, _std: &Standards) {}
    /// One member loop is complete; its findings were delivered just before.
    fn member(&mut self, _rec: &Record, _std: &Standards) {}
}

/// Counters the balancing rules and summaries need.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub members: u64,
    pub subscribers: u64,
    pub dependents: u64,
}

/// Most findings kept for one member loop (the 999 writer reports far fewer).
pub const MAX_MEMBER_FINDINGS: usize = 10_000;

/// Counters of a set that add up across pieces of it checked separately ([`crate::split`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Additive {
    pub tally: Tally,
    pub rejecting: usize,
    pub warnings: usize,
    pub standard_errors: usize,
    /// Repetitions of the member loop so far.
    pub units: u32,
}

impl Additive {
    pub fn plus(self, o: Additive) -> Additive {
        Additive {
            tally: Tally {
                members: self.tally.members + o.tally.members,
                subscribers: self.tally.subscribers + o.tally.subscribers,
                dependents: self.tally.dependents + o.tally.dependents,
            },
            rejecting: self.rejecting + o.rejecting,
            warnings: self.warnings + o.warnings,
            standard_errors: self.standard_errors + o.standard_errors,
            units: self.units.saturating_add(o.units),
        }
    }
}

/// Where a finding about segment `seg` (ID `id`, in loop `loop_ix`) is: the set's `base`
/// (ISA13/GS06/ST02) and the segment's position.
fn location_in(
    std: &Standards,
    base: &Location,
    position: u32,
    seg: &Segment<'_>,
    id: &[u8],
    loop_ix: Option<usize>,
) -> Location {
    let mut loc = base.clone();
    loc.line = seg.position().line;
    loc.offset = seg.position().offset;
    loc.segment_position = Some(position);
    loc.segment_id = Some(Text::shared(&String::from_utf8_lossy(id)));
    loc.loop_id = loop_ix.map(|l| Text::shared(&std.schema.loops[l].id));
    loc
}

/// A segment's ID packed ([`crate::schema::pack`]), element 1 up to its first component
/// separator `comp` (the qualifier the walker matches), that packed, and element 1 whole packed.
/// `id` and `element1` are the segment `raw`'s ID and element 1 (which starts right after the
/// ID's separator).
///
/// Both are nearly always short and followed by more of the segment: then each is one 8-byte
/// load from `raw` (the ID's bytes from its first, element 1's from its first), masked to its
/// length, where [`crate::schema::pack`] picked the bytes one by one after a jump on the
/// length (and the walker packed the ID on its own). The separator is looked for in element
/// 1's word, masked the same way (a separator of 0 is no exception here: the word holds the
/// segment's bytes, not a key's zeros). Otherwise (a value too long to pack, a segment that
/// ends within eight bytes of element 1's start) [`first_component`]. Inline for the same
/// reason as that.
#[inline(always)]
fn segment_keys<'a>(
    raw: &'a [u8],
    id: &'a [u8],
    element1: &'a [u8],
    comp: u8,
) -> (Option<u64>, &'a [u8], Option<u64>, Option<u64>) {
    let (m, n) = (id.len(), element1.len());
    if m | n <= 7 {
        if let Some(head) = raw.get(..m + 9) {
            // The bytes of a key: its high `len` bytes (at most 7); its length below.
            const HIGH: [u64; 8] = {
                let mut h = [0u64; 8];
                let mut k = 1;
                while k < 8 {
                    h[k] = !(u64::MAX >> (8 * k));
                    k += 1;
                }
                h
            };
            let word = |at: usize| {
                let c = &head[at..at + 8];
                u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
            };
            let id_key = word(0) & HIGH[m & 7] | m as u64;
            let w = word(m + 1);
            let whole = w & HIGH[n & 7] | n as u64;
            let hits = crate::lexer::zero_bytes(w ^ u64::from_ne_bytes([comp; 8])) & HIGH[n & 7];
            if hits == 0 {
                return (Some(id_key), element1, Some(whole), Some(whole));
            }
            let i = hits.leading_zeros() as usize / 8;
            let first = element1.get(..i).unwrap_or(element1);
            return (
                Some(id_key),
                first,
                Some(whole & HIGH[i & 7] | i as u64),
                Some(whole),
            );
        }
    }
    let (first, first_key, whole) = first_component(element1, comp);
    (crate::schema::pack(id), first, first_key, whole)
}

/// Element 1 up to its first component separator `comp` (the qualifier the walker matches),
/// that packed ([`crate::schema::pack`]), and element 1 whole packed.
///
/// Element 1 is nearly always a short code: it is packed once, and the separator looked for
/// in the packed bytes all at once ([`crate::lexer::zero_bytes`]); the first component's key
/// is then the whole key cut short. A byte-by-byte search cost about 28 instructions a
/// segment. A value too long to pack, or a separator of 0 (which the unused bytes of a key
/// hold), is searched as bytes. Inline: a call cost as much as the search.
#[inline(always)]
fn first_component(element1: &[u8], comp: u8) -> (&[u8], Option<u64>, Option<u64>) {
    let whole = crate::schema::pack(element1);
    match whole {
        Some(key) if comp != 0 => {
            // A key holds the bytes in its high `len` bytes (at most 7), its length below.
            let high = |n: usize| !(u64::MAX >> (8 * n));
            let n = element1.len();
            let hits = crate::lexer::zero_bytes(key ^ u64::from_ne_bytes([comp; 8])) & high(n);
            if hits == 0 {
                return (element1, whole, whole);
            }
            let i = hits.leading_zeros() as usize / 8;
            let first = element1.get(..i).unwrap_or(element1);
            (first, Some(key & high(i) | i as u64), whole)
        }
        _ => first_component_searched(element1, comp),
    }
}

/// [`first_component`] for an element 1 that does not pack (N3's address, N4's city).
#[inline(never)]
fn first_component_searched(element1: &[u8], comp: u8) -> (&[u8], Option<u64>, Option<u64>) {
    let first = match crate::lexer::find_byte(comp, element1) {
        Some(i) => &element1[..i],
        None => element1,
    };
    (
        first,
        crate::schema::pack(first),
        crate::schema::pack(element1),
    )
}

/// Tables a set validator fills that hold for every set checked against the same standards
/// (the segments found clean, the walker's searches): handed from one set's validator to the
/// next, so that a file of many small sets does not start an empty table for each.
#[derive(Default, Clone)]
pub struct Caches<'s> {
    std: Option<&'s Standards>,
    clean: element::CleanSegments,
    searches: structure::SearchMemo,
    /// The rules' member and header indexes ([`situational::Index::for_next_set`]).
    member_index: situational::Index,
    header_index: situational::Index,
    /// The header and member records, for their buffers (cleared before reuse): grown anew
    /// for every set, they cost a file of many small sets a dozen reallocations a set.
    header: Record,
    member: Record,
}

/// Validates one transaction set, segment by segment.
#[derive(Clone)]
pub struct SetValidator<'s> {
    std: &'s Standards,
    policy: Option<&'s dyn crate::check::FindingPolicy>,
    sender: String,
    /// The group the set is for (header REF*38), once the header is complete.
    group: Option<String>,
    walker: Walker,
    base: Location,
    position: u32,
    header: Record,
    member: Record,
    in_member: bool,
    unit_depth: Option<usize>,
    pending: Vec<Finding>,
    missing: Vec<Missing>,
    errors: Vec<Finding>,
    open: Vec<usize>,
    /// Changed whenever `open` is: the records tell by it whether their instance stacks are
    /// in step with `open` ([`Record::push`]). Not state (only compared with itself).
    open_gen: u64,
    /// The member loop's ID packed ([`crate::schema::pack`]), when it packs.
    unit_key: Option<u64>,
    pub tally: Tally,
    /// Number of findings with severity error that reject the set (X12/guide level).
    pub rejecting: usize,
    pub warnings: usize,
    /// Reported findings (errors or warnings) with X12 standard (not `I`) codes: IK502 `5`
    /// rather than `I5`.
    pub standard_errors: usize,
    last_at: crate::lexer::Position,
    state: situational::SetState,
    /// Findings of the current member counted but not kept (over [`MAX_MEMBER_FINDINGS`]).
    unlisted: u64,
    /// The open member is a stand-in for the unseen member before a piece of the set checked
    /// on its own ([`SetValidator::boundary_fork`]): closing it reports nothing.
    phantom: bool,
    /// Scratch: the element separators of a segment the lexer did not split (an ISA-less
    /// segment built by a caller), found once and shared by the walker, the element checks and
    /// the record. Not state (rewritten per segment).
    splitter: Splitter,
    /// Scratch: the element checks' view of the set's separators, kept while the delimiters
    /// stay the same (they are an interchange's).
    seps: element::Separators,
    /// Cache: segments the element checks found clean (not state: it only saves work).
    clean: element::CleanSegments,
    /// The index the header rules run with at the set's end, kept for its tables (not state:
    /// it forgets the header before each use).
    header_index: situational::Index,
}

impl<'s> SetValidator<'s> {
    pub fn new(
        std: &'s Standards,
        policy: Option<&'s dyn crate::check::FindingPolicy>,
        sender: String,
    ) -> Self {
        SetValidator {
            std,
            policy,
            sender,
            group: None,
            walker: Walker::new(),
            base: Location::default(),
            position: 0,
            header: Record::default(),
            member: Record::default(),
            in_member: false,
            unit_depth: None,
            pending: Vec::new(),
            missing: Vec::new(),
            errors: Vec::new(),
            open: Vec::new(),
            open_gen: 0,
            unit_key: std
                .unit
                .as_ref()
                .and_then(|u| crate::schema::pack(u.loop_id.as_bytes())),
            tally: Tally::default(),
            rejecting: 0,
            warnings: 0,
            standard_errors: 0,
            last_at: crate::lexer::Position::default(),
            state: situational::SetState::default(),
            unlisted: 0,
            phantom: false,
            splitter: Splitter::default(),
            seps: element::Separators::new(crate::lexer::Delimiters::DEFAULT),
            clean: element::CleanSegments::default(),
            header_index: situational::Index::default(),
        }
    }

    /// Takes the tables this validator filled, for the next set's ([`SetValidator::adopt`]).
    pub fn take_caches(&mut self) -> Caches<'s> {
        Caches {
            std: Some(self.std),
            clean: std::mem::take(&mut self.clean),
            searches: self.walker.take_memo(),
            member_index: self.state.take_index(),
            header_index: std::mem::take(&mut self.header_index),
            header: std::mem::take(&mut self.header),
            member: std::mem::take(&mut self.member),
        }
    }

    /// Uses the tables an earlier set's validator filled, if it checked against the same
    /// standards (before [`SetValidator::start`]).
    pub fn adopt(&mut self, c: Caches<'s>) {
        if c.std.is_some_and(|s| std::ptr::eq(s, self.std)) {
            self.clean = c.clean;
            self.walker.put_memo(c.searches);
            self.state = situational::SetState::with_index(c.member_index);
            self.header_index = c.header_index;
            // What `Record::default` holds, in the buffers of the last set's records.
            self.header = c.header;
            self.header.clear(crate::lexer::Delimiters::DEFAULT);
            self.member = c.member;
            self.member.clear(crate::lexer::Delimiters::DEFAULT);
        }
    }

    /// Exchanges the tables that only save work (the segments found clean, the walker's
    /// searches, the rules' indexes) with `c`. A thread that checks piece after piece of a
    /// set ([`crate::split`]) keeps them from one piece to the next: a piece starts from a
    /// copy of the validator, whose tables start empty, and filling them again cost every
    /// piece its first members' element checks and searches in full. Tables of other
    /// standards are dropped rather than used.
    pub fn swap_caches(&mut self, c: &mut Caches<'s>) {
        if !c.std.is_some_and(|s| std::ptr::eq(s, self.std)) {
            *c = Caches {
                std: Some(self.std),
                ..Caches::default()
            };
        }
        std::mem::swap(&mut self.clean, &mut c.clean);
        let memo = self.walker.take_memo();
        self.walker
            .put_memo(std::mem::replace(&mut c.searches, memo));
        self.state.swap_index(&mut c.member_index);
        std::mem::swap(&mut self.header_index, &mut c.header_index);
    }

    /// Where the member loop sits in the walker while a member is open: the depth of the loop
    /// that contains it and its child index there.
    fn unit_slot(&self) -> Option<(usize, usize)> {
        let ud = self.unit_depth?;
        let parent = ud.checked_sub(1)?;
        Some((parent, self.walker.cursor(parent)?))
    }

    /// True right after a segment opened a member loop that may repeat without limit: the
    /// point where a set can be cut into pieces checked in parallel.
    pub fn at_member_start(&self) -> bool {
        let Some((parent, child)) = self.unit_slot() else {
            return false;
        };
        let unbounded = match self.std.schema.loops
            [self.walker.open_loops().nth(parent).unwrap_or(0)]
        .children
        .get(child)
        {
            Some(crate::schema::Child::Loop(l)) => self.std.schema.loops[*l].repeat.is_none(),
            _ => false,
        };
        unbounded
            && self.in_member
            && !self.phantom
            && self.member.segs.len() == 1
            && self.walker.depth() == parent + 2
    }

    /// The state of this set just before a later member opens, as far as it can be known
    /// without the members in between: same header, envelope and loop stack up to the member
    /// loop; a stand-in for the member before (closing it reports nothing); additive counters
    /// at zero; the S3 subscriber unknown. Must be called in the state
    /// [`at_member_start`](Self::at_member_start) describes. `position` is the set position of
    /// the segment before the member's first.
    pub fn boundary_fork(&self, position: u32) -> SetValidator<'s> {
        let mut v = self.clone();
        if let Some((parent, child)) = self.unit_slot() {
            v.walker.truncate(parent + 1);
            v.walker.set_count(parent, child, 0);
        }
        v.open.clear();
        v.open.extend(v.walker.open_loops());
        v.open_gen += 1;
        v.member.clear(self.member.delims);
        v.phantom = true;
        v.pending.clear();
        v.unlisted = 0;
        v.position = position;
        v.set_additive(Additive::default());
        v.state.subscriber_id = None;
        v.state.subscriber_unknown = true;
        v.state.needed_unknown = false;
        v
    }

    /// Sets the count of segments seen so far (ST = 1).
    pub fn set_position(&mut self, position: u32) {
        self.position = position;
    }

    /// The counters that add up across pieces.
    pub fn additive(&self) -> Additive {
        let units = self
            .unit_slot()
            .map(|(d, c)| self.walker.count(d, c))
            .unwrap_or(0);
        Additive {
            tally: self.tally,
            rejecting: self.rejecting,
            warnings: self.warnings,
            standard_errors: self.standard_errors,
            units,
        }
    }

    pub fn set_additive(&mut self, a: Additive) {
        self.tally = a.tally;
        self.rejecting = a.rejecting;
        self.warnings = a.warnings;
        self.standard_errors = a.standard_errors;
        if let Some((d, c)) = self.unit_slot() {
            self.walker.set_count(d, c, a.units);
        }
    }

    /// Same state, apart from the additive counters and the S3 subscriber: the test that a
    /// piece checked from a [`boundary_fork`](Self::boundary_fork) started where the pieces
    /// before it really ended.
    pub fn same_boundary(&self, o: &SetValidator<'_>) -> bool {
        let Some((d, c)) = self.unit_slot() else {
            return false;
        };
        self.position == o.position
            && self.in_member == o.in_member
            && self.unit_depth == o.unit_depth
            && !self.phantom
            && !o.phantom
            && self.unlisted == o.unlisted
            && self.last_at == o.last_at
            && self.group == o.group
            && self.base == o.base
            && self.sender == o.sender
            && self.pending == o.pending
            && self.member == o.member
            && self.header == o.header
            && self.open == o.open
            && self.walker.same_except(&o.walker, d, c)
    }

    /// True when a piece's rules needed the subscriber from before the piece.
    pub fn needed_unknown(&self) -> bool {
        self.state.needed_unknown
    }

    /// Takes the S3 subscriber from the state before this piece when the piece saw none.
    pub fn inherit_subscriber(&mut self, before: &SetValidator<'_>) {
        if self.state.subscriber_unknown {
            self.state.subscriber_id = before.state.subscriber_id.clone();
            self.state.subscriber_unknown = before.state.subscriber_unknown;
        }
    }

    /// Starts a set at its ST segment (position 1). `base` carries ISA13/GS06/ST02.
    pub fn start<S: SetSink>(&mut self, st: &Segment<'_>, base: Location, sink: &mut S) {
        self.base = base;
        self.position = 0;
        self.tally = Tally::default();
        self.rejecting = 0;
        self.warnings = 0;
        self.standard_errors = 0;
        self.state = situational::SetState::with_index(self.state.take_index());
        self.group = None;
        self.in_member = false;
        self.unit_depth = None;
        self.pending.clear();
        self.header.clear(st.delimiters());
        self.member.clear(st.delimiters());
        self.walker.start(&self.std.schema);
        self.position = 1;
        let root_st = match self.std.schema.loops[0].children.first() {
            Some(crate::schema::Child::Segment(s)) => *s,
            _ => 0,
        };
        self.open.clear();
        self.open.extend(self.walker.open_loops());
        self.open_gen += 1;
        let mut splitter = std::mem::take(&mut self.splitter);
        // The lexer found the separators while looking for the terminator; a segment built
        // otherwise is split here.
        let fields = match st.fields() {
            Some(f) => f,
            None => splitter.split(st.raw(), st.delimiters().element),
        };
        let placed = Placed {
            seg_ix: root_st,
            key: crate::schema::pack(fields.id()).unwrap_or(u64::MAX),
            qual: crate::schema::pack(fields.element(1)).unwrap_or(u64::MAX),
            position: 1,
        };
        self.header
            .push(st, &fields, placed, &self.open, 0, self.open_gen);
        self.check_elements(root_st, st, &fields);
        self.splitter = splitter;
        self.flush_header_findings(sink);
    }

    /// Is loop `l` the member loop ([`UnitSpec::loop_id`])? By packed ID when it packs (a
    /// loop opens for two segments in five: a string compare was a `memcmp` call each).
    #[inline]
    fn is_unit_loop(&self, l: usize) -> bool {
        let lp = &self.std.schema.loops[l];
        match (self.unit_key, &self.std.unit) {
            (Some(k), _) => lp.key == k,
            (None, Some(u)) => lp.id == u.loop_id,
            (None, None) => false,
        }
    }

    fn location(&self, seg: &Segment<'_>, id: &[u8], loop_ix: Option<usize>) -> Location {
        location_in(self.std, &self.base, self.position, seg, id, loop_ix)
    }

    fn emit(&mut self, mut f: Finding) {
        if self.unit_depth.is_some() && self.pending.len() >= MAX_MEMBER_FINDINGS {
            // A member's findings wait for its end (they carry its REF*0F). Past the cap they
            // still count for the disposition but are not kept: memory stays bounded whatever
            // the member holds.
            self.count(&f);
            self.unlisted += 1;
            return;
        }
        // Loop ids of the root are not guide loops: say "header" / "trailer" instead of ST_LOOP.
        if f.location.loop_id.as_deref() == Some(self.std.schema.loops[0].id.as_str()) {
            f.location.loop_id = None;
        }
        self.pending.push(f);
    }

    /// The element checks of a placed segment. Most segments repeat one found clean before
    /// ([`element::CleanSegments`]): they are settled here with one lookup, without the set-up
    /// of the checks (their context, the separators, the findings' scratch vector), which
    /// cost more than the lookup. Forced inline: with the walker and the record inline in
    /// [`Self::segment`] a plain `#[inline]` left it a call.
    #[inline(always)]
    fn check_elements(&mut self, seg_ix: usize, seg: &Segment<'_>, fields: &Fields<'_>) {
        let usage = self.std.schema.segments[seg_ix].usage;
        let probe = if usage == Usage::NotUsed {
            element::Probe::Unremembered
        } else {
            self.clean.probe(seg.delimiters(), seg_ix, seg.raw())
        };
        if probe == element::Probe::Clean && seg.leading_blanks() == 0 {
            return;
        }
        self.check_elements_in_full(seg_ix, seg, fields, probe);
    }

    /// [`Self::check_elements`] for a segment not settled by the lookup; `probe` says whether
    /// it was found clean before (it has leading blanks to report, then), and otherwise where
    /// to remember it if it is clean now.
    #[inline(never)]
    fn check_elements_in_full(
        &mut self,
        seg_ix: usize,
        seg: &Segment<'_>,
        fields: &Fields<'_>,
        probe: element::Probe,
    ) {
        // Checked into `self.errors` in place (not taken and put back: that cost a call per
        // segment to drop the empty vector left behind).
        let std = self.std;
        if !self.seps.is_for(seg.delimiters()) {
            self.seps = element::Separators::new(seg.delimiters());
        }
        let def = &std.schema.segments[seg_ix];
        let (base, position) = (&self.base, self.position);
        let make_loc = || location_in(std, base, position, seg, &def.id, Some(def.loop_ix));
        let ctx = ElementCtx {
            codesets: &std.codesets,
            seps: &self.seps,
            loc: &make_loc,
        };
        let out = &mut self.errors;
        out.clear();
        if def.usage == Usage::NotUsed {
            let mut f = Finding::new(
                "IG-S-NOT-USED",
                2,
                Ack::Segment("I4"),
                format!(
                    "{} ({}) is marked Not Used by the guide",
                    String::from_utf8_lossy(&def.id),
                    def.name
                ),
            );
            f.location = make_loc();
            out.push(f);
        } else if probe != element::Probe::Clean {
            element::check_segment_and_periods(&ctx, def, seg, fields, out);
            if let (true, element::Probe::Miss(at)) = (out.is_empty(), probe) {
                self.clean.insert(seg.delimiters(), at, seg.raw());
            }
            // The envelope layer checks every element of ST and SE and reports them through
            // IK502 (1, 3, 4, 6, 7, 23, I6): the same fault is not an IK3/IK4 as well.
            let envelope_elements = match def.id.as_slice() {
                b"ST" | b"SE" if def.loop_ix == std.schema.root() => def.elements.len(),
                _ => 0,
            };
            if envelope_elements > 0 {
                out.retain(|f| {
                    !(matches!(f.ack, Ack::Element(_))
                        && f.location
                            .element
                            .is_some_and(|e| usize::from(e.element) <= envelope_elements))
                });
            }
        }
        if seg.leading_blanks() > 0 {
            let mut f = Finding::new(
                "X12-S-LEADING-BLANKS",
                1,
                Ack::Segment("1"),
                "spaces or tabs before the segment ID (indented files are not valid X12)",
            );
            f.location = make_loc();
            out.push(f);
        }
        // Nearly every segment is clean: skip the ordering and hand-over then.
        if !out.is_empty() {
            let mut out = std::mem::take(&mut self.errors);
            out.sort_by_key(|f| {
                f.location
                    .element
                    .map(|e| (e.element, e.component, e.repetition))
            });
            for f in out.drain(..) {
                self.emit(f);
            }
            self.errors = out;
        }
    }

    /// Feeds one segment between ST and SE (SE included).
    ///
    /// Inline in its caller (`Checker::segment`, once a segment): the call and the frame of
    /// this large function cost about 17 instructions a segment.
    #[inline(always)]
    pub fn segment<S: SetSink>(&mut self, seg: &Segment<'_>, sink: &mut S) {
        self.position = self.position.saturating_add(1);
        self.last_at = seg.position();
        let schema = &self.std.schema;
        // The lexer found the separators while looking for the terminator; a segment built
        // otherwise is split here, with the splitter taken out of `self` (and put back at the
        // end) only then.
        let mut splitter = Splitter::default();
        let lexed = seg.fields();
        let fields = match lexed {
            Some(f) => f,
            None => {
                splitter = std::mem::take(&mut self.splitter);
                splitter.split(seg.raw(), seg.delimiters().element)
            }
        };
        let id = fields.id();
        // Qualifiers are compared on the first component (999 CTX01 is a composite).
        let element1 = fields.element(1);
        let (id_key, first, first_key, element1_key) =
            segment_keys(seg.raw(), id, element1, seg.delimiters().component);
        self.errors.clear();
        self.missing.clear();
        let placement = self.walker.place(
            schema,
            id,
            id_key,
            first,
            first_key,
            &mut self.missing,
            &mut self.errors,
        );
        // Nearly every segment places cleanly, with nothing missing before it: the scratch
        // vectors are taken out of `self` (to report from them) only when they hold something.
        if !self.missing.is_empty() {
            let missing = std::mem::take(&mut self.missing);
            self.report_missing(seg, &missing);
            self.missing = missing;
        }
        if !self.errors.is_empty() {
            let loop_now = self.walker.current_loop();
            let mut errors = std::mem::take(&mut self.errors);
            for mut f in errors.drain(..) {
                f.location = self.location(seg, id, loop_now);
                self.emit(f);
            }
            self.errors = errors;
        }
        match placement {
            Placement::Unplaced => {
                if !schema.knows_segment(id) {
                    let (fid, ack, msg) = if self.std.segment_ids.contains(id) {
                        (
                            "X12-S-NOT-IN-SET",
                            Ack::Segment("6"),
                            format!(
                                "{} is an X12 segment but not part of the {} transaction",
                                String::from_utf8_lossy(id),
                                schema.transaction
                            ),
                        )
                    } else {
                        (
                            "X12-S-UNRECOGNIZED",
                            Ack::Set("5"),
                            format!(
                                "{:?} is not a recognized segment ID",
                                String::from_utf8_lossy(id)
                            ),
                        )
                    };
                    let mut f = Finding::new(fid, 1, ack, msg);
                    f.location = self.location(seg, id, self.walker.current_loop());
                    self.emit(f);
                }
            }
            Placement::Placed {
                seg: seg_ix,
                opened,
                closed,
            } => {
                // The open loops change only when a placement opens or closes one, and then
                // as it says: `closed` innermost loops left, then one entered if `opened`.
                if opened > 0 || closed > 0 {
                    self.open
                        .truncate(self.open.len().saturating_sub(usize::from(closed)));
                    if let Some(l) = self.walker.current_loop().filter(|_| opened > 0) {
                        self.open.push(l);
                    }
                    self.open_gen += 1;
                    debug_assert!(self.open.iter().copied().eq(self.walker.open_loops()));
                }
                let depth = self.open.len();
                // Did a member loop end, or a new one begin?
                let opened_unit = opened > 0 && self.is_unit_loop(self.open[depth - 1]);
                if let Some(ud) = self.unit_depth {
                    if depth <= ud || opened_unit && depth == ud + 1 {
                        self.close_member(sink);
                    }
                }
                if opened_unit {
                    if !self.in_member {
                        self.flush_header_findings(sink);
                        sink.header(&self.header, self.std);
                    }
                    self.in_member = true;
                    self.unit_depth = Some(depth - 1);
                    self.member.clear(seg.delimiters());
                    self.tally.members += 1;
                    match fields.element(1) {
                        b"Y" => self.tally.subscribers += 1,
                        b"N" => self.tally.dependents += 1,
                        _ => {}
                    }
                }
                let position = self.position;
                let (rec, rd) = match self.unit_depth {
                    Some(ud) if self.in_member && depth > ud => (&mut self.member, ud),
                    _ => (&mut self.header, 0),
                };
                if opened > 0 && depth > rd + 1 {
                    rec.new_instance_at(depth - 1 - rd);
                }
                // The walker matched the ID with the schema segment's: its packed ID is the
                // segment's. Element 1 is the qualifier it packed unless a component
                // separator cut that short.
                let placed = Placed {
                    seg_ix,
                    key: schema.segments[seg_ix].key,
                    qual: element1_key.unwrap_or(u64::MAX),
                    position,
                };
                rec.push(seg, &fields, placed, &self.open, rd, self.open_gen);
                self.check_elements(seg_ix, seg, &fields);
                if !self.in_member {
                    self.flush_header_findings(sink);
                }
            }
        }
        if self.unit_depth.is_none() {
            // Outside an open member nothing waits: deliver now (also for unplaced segments,
            // whose findings otherwise pile up until the next placed one).
            self.flush_header_findings(sink);
        }
        if lexed.is_none() {
            self.splitter = splitter;
        }
    }

    fn report_missing(&mut self, seg: &Segment<'_>, missing: &[Missing]) {
        self.report_missing_at(seg.position(), missing);
    }

    fn report_missing_at(&mut self, at: crate::lexer::Position, missing: &[Missing]) {
        let schema = &self.std.schema;
        for m in missing {
            let def = &schema.segments[m.seg];
            if def.id == b"SE" {
                continue; // SE missing is reported by the envelope (IK502 2).
            }
            let what = if m.is_loop {
                format!(
                    "required loop {} ({}) is missing: its first segment {} was not found",
                    schema.loops[m.loop_ix].id,
                    schema.loops[m.loop_ix].name,
                    String::from_utf8_lossy(&def.id)
                )
            } else {
                format!(
                    "required segment {} ({}) is missing",
                    String::from_utf8_lossy(&def.id),
                    def.name
                )
            };
            let mut f = Finding::new("X12-S-REQUIRED-MISSING", 2, Ack::Segment("3"), what);
            let mut loc = self.base.clone();
            loc.line = at.line;
            loc.offset = at.offset;
            loc.segment_position = Some(self.position);
            loc.segment_id = Some(Text::shared(&String::from_utf8_lossy(&def.id)));
            loc.loop_id = Some(Text::shared(&schema.loops[m.loop_ix].id));
            f.location = loc;
            self.emit(f);
        }
    }

    fn close_member<S: SetSink>(&mut self, sink: &mut S) {
        if !self.in_member || self.unit_depth.is_none() {
            return;
        }
        self.unit_depth = None;
        if self.phantom {
            // The stand-in for a member another piece checks: what would close it (required
            // children missing at this point) is that piece's to report.
            self.phantom = false;
            self.pending.clear();
            self.unlisted = 0;
            return;
        }
        self.std.rules.check_member(
            &self.std.schema,
            &self.header,
            &self.member,
            self.position,
            &mut self.state,
            &mut self.pending,
        );
        if self.unlisted > 0 {
            let mut f = Finding::new(
                "X12-FINDINGS-CAPPED",
                1,
                Ack::Report,
                format!(
                    "{} more finding(s) in this member were counted for the set's disposition but not listed (at most {MAX_MEMBER_FINDINGS} are kept per member)",
                    self.unlisted
                ),
            );
            f.severity = crate::finding::Severity::Warning;
            f.location.segment_position = Some(self.position);
            f.location.line = self.last_at.line;
            self.pending.push(f);
            self.unlisted = 0;
        }
        self.fill_base();
        // The business unit is looked up only for a member with findings (most have none).
        let bu = if self.pending.is_empty() {
            None
        } else {
            self.std.unit.as_ref().and_then(|u| {
                let key = crate::schema::pack(&u.segment);
                self.member.segs.iter().enumerate().find_map(|(i, rs)| {
                    if key.is_some_and(|k| k != rs.key) {
                        return None;
                    }
                    let s = self.member.segment(i);
                    (s.id() == u.segment.as_slice() && s.element(1) == u.qualifier.as_slice())
                        .then(|| String::from_utf8_lossy(s.element(u.element)).into_owned())
                })
            })
        };
        let mut pending = std::mem::take(&mut self.pending);
        for mut f in pending.drain(..) {
            f.location.member = bu.as_deref().map(Text::shared);
            if self.admit(&mut f) {
                self.count(&f);
                sink.finding(f);
            }
        }
        self.pending = pending;
        sink.member(&self.member, self.std);
    }

    /// Applies the trading-partner policy; false drops the finding.
    fn admit(&mut self, f: &mut Finding) -> bool {
        if self.group.is_none() && !self.header.is_empty() {
            self.group = self.header.iter().find_map(|(_, s)| {
                (s.id() == b"REF" && s.element(1) == b"38")
                    .then(|| String::from_utf8_lossy(s.element(2)).into_owned())
            });
        }
        match self.policy {
            Some(p) => p.adjust(f, &self.sender, self.group.as_deref()),
            None => true,
        }
    }

    fn count(&mut self, f: &Finding) {
        if f.ack == Ack::Report {
            return;
        }
        match f.severity {
            crate::finding::Severity::Error => self.rejecting += 1,
            crate::finding::Severity::Warning => self.warnings += 1,
        }
        // IK502 `5` versus `I5` looks at every error the 999 reports, warnings included.
        if !f.ack.is_implementation() {
            self.standard_errors += 1;
        }
    }

    fn flush_header_findings<S: SetSink>(&mut self, sink: &mut S) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        for mut f in pending.drain(..) {
            if self.admit(&mut f) {
                self.count(&f);
                sink.finding(f);
            }
        }
        self.pending = pending;
    }

    /// Ends the set. `se_seen` is false when the set ended without its SE (EOF, GE, next ST).
    /// Header rules (balancing) run here. Returns the number of segments counted, ST..SE.
    pub fn finish<S: SetSink>(&mut self, se_seen: bool, sink: &mut S) -> u32 {
        if !se_seen {
            let mut missing = std::mem::take(&mut self.missing);
            missing.clear();
            self.walker.finish(&self.std.schema, &mut missing);
            self.report_missing_at(self.last_at, &missing);
            self.missing = missing;
        }
        self.close_member(sink);
        if !self.in_member {
            sink.header(&self.header, self.std);
        }
        self.std.rules.check_set_with(
            &self.std.schema,
            &self.header,
            &self.tally,
            self.position,
            &mut self.header_index,
            &mut self.pending,
        );
        self.fill_base();
        self.flush_header_findings(sink);
        self.position
    }

    /// Rule findings are built without the envelope part of their location: add it.
    fn fill_base(&mut self) {
        for f in &mut self.pending {
            if f.location.isa13.is_none() {
                f.location.isa13 = self.base.isa13.clone();
                f.location.gs06 = self.base.gs06.clone();
                f.location.st02 = self.base.st02.clone();
            }
        }
    }

    pub fn trigger_of(rec: &Record, i: usize, element: u8) -> Trigger {
        let r = &rec.segs[i];
        Trigger {
            segment_id: String::from_utf8_lossy(rec.segment(i).id()).into_owned(),
            segment_position: r.position,
            element: Some(crate::finding::ElementPos {
                element,
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{first_component, segment_keys};
    use crate::schema::pack;

    /// The packed search for the component separator agrees with a byte search, for every
    /// separator position, length (packing and not) and separator byte, 0 included.
    #[test]
    fn first_component_agrees_with_a_byte_search() {
        let bytes = [b'A', b'0', b':', b'>', 0, 1, 7, 0xff, b'^'];
        for comp in [b':', b'>', 0u8, 1, 7, 0xff, b'^'] {
            for len in 0..=9usize {
                for seed in 0..200u32 {
                    let v: Vec<u8> = (0..len)
                        .map(|i| bytes[((seed >> (i % 5)) as usize + i * 7 + seed as usize) % 9])
                        .collect();
                    let first = match v.iter().position(|&b| b == comp) {
                        Some(i) => &v[..i],
                        None => &v[..],
                    };
                    assert_eq!(
                        first_component(&v, comp),
                        (first, pack(first), pack(&v)),
                        "{v:?} {comp}"
                    );
                }
            }
        }
    }

    /// The keys read as words from the segment agree with packing the ID and element 1 and
    /// [`first_component`], for IDs and elements 1 of every length up to 9 (packing and not),
    /// with 0 to 10 bytes after element 1 (the words reach past its end or not), any separator
    /// byte (0 included, which a key's unused bytes hold) and the bytes after element 1 the
    /// separator or not.
    #[test]
    fn segment_keys_agree_with_packing() {
        let bytes = [b'A', b'0', b':', b'>', 0, 1, 7, 0xff, b'^'];
        let pick =
            |seed: u32, i: usize| bytes[((seed >> (i % 5)) as usize + i * 7 + seed as usize) % 9];
        for comp in [b':', b'>', 0u8, 1, 7, 0xff, b'^'] {
            for id_len in 0..=9usize {
                for len in 0..=9usize {
                    for tail in [0usize, 1, 3, 7, 8, 10] {
                        for seed in 0..40u32 {
                            let id: Vec<u8> = (0..id_len)
                                .map(|i| b'A' + (i as u8 + seed as u8) % 26)
                                .collect();
                            let e1: Vec<u8> = (0..len).map(|i| pick(seed, i)).collect();
                            let rest: Vec<u8> = (0..tail).map(|i| pick(seed + 1, i + 3)).collect();
                            let raw = [&id[..], b"*", &e1[..], &rest[..]].concat();
                            let (first, first_key, whole) = first_component(&e1, comp);
                            assert_eq!(
                                segment_keys(&raw, &raw[..id_len], &raw[id_len + 1..][..len], comp),
                                (pack(&id), first, first_key, whole),
                                "{raw:?} {comp}"
                            );
                        }
                    }
                }
            }
        }
    }
}
