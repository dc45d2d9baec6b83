//! A recorded stretch of a transaction set: the header, or one member loop (2000) with
//! everything nested in it. It owns a copy of the segments' bytes so that rules and the change
//! normalizer can look at the whole member after it ends; memory is bounded by the largest
//! member loop, and the buffers are reused from member to member.

use crate::lexer::{Delimiters, Fields, Position, Segment};
use crate::schema::{LoopIx, Schema, SegIx};

/// Most segments one record keeps. The largest member the 834 guide allows is far smaller.
pub const MAX_SEGMENTS: usize = 50_000;

/// A loop instance inside a record: which loop, and which instance contains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    pub loop_ix: LoopIx,
    pub parent: Option<u32>,
}

/// One placed segment of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecSeg {
    pub seg_ix: SegIx,
    /// The segment ID packed ([`crate::schema::pack`]), for fast lookups by rules.
    pub key: u64,
    /// Element 1 (the qualifier of REF, DTP, NM1 ...) packed; `u64::MAX` when it does not
    /// pack (longer than 7 bytes), which no packed value equals.
    pub qual: u64,
    /// Innermost loop instance the segment belongs to.
    pub instance: u32,
    /// Position in the set, ST = 1.
    pub position: u32,
    pub at: Position,
    start: u32,
    end: u32,
    /// The segment's element separators (offsets from `start`) are
    /// `Record::seps[sep_lo..sep_lo + sep_n]`: elements are found without scanning.
    sep_lo: u32,
    sep_n: u32,
}

/// What the validator knows of a segment it records besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub seg_ix: SegIx,
    /// The segment ID packed ([`RecSeg::key`]): the schema segment's, which the walker matched.
    pub key: u64,
    /// Element 1 packed ([`RecSeg::qual`]).
    pub qual: u64,
    /// Position in the set, ST = 1.
    pub position: u32,
}

/// The header or one member of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    buf: Vec<u8>,
    pub segs: Vec<RecSeg>,
    pub instances: Vec<Instance>,
    pub delims: Delimiters,
    /// Instance open at each depth while recording (loop stack mirror).
    open: Vec<u32>,
    /// Element separator offsets of every segment, in order ([`RecSeg::sep_lo`]).
    seps: Vec<u32>,
    /// The open loops `open` was last reconciled with ([`Record::push`]).
    synced: Synced,
}

/// Which open loops a record's instance stack is in step with: the caller's generation of
/// them and the record's depth among them, or nothing (after a clear or a new instance).
///
/// Not state: it only lets [`Record::push`] skip a reconcile that would change nothing, so any
/// two compare equal (a piece of a set checked on its own ends with the same record as the
/// whole set's walk, but not with the same generations).
#[derive(Debug, Clone, Copy, Default)]
struct Synced(Option<(u64, usize)>);

impl PartialEq for Synced {
    fn eq(&self, _: &Synced) -> bool {
        true
    }
}

impl Eq for Synced {}

impl Default for Record {
    fn default() -> Self {
        Record {
            buf: Vec::new(),
            segs: Vec::new(),
            instances: Vec::new(),
            delims: Delimiters::DEFAULT,
            open: Vec::new(),
            seps: Vec::new(),
            synced: Synced::default(),
        }
    }
}

impl Record {
    pub fn clear(&mut self, delims: Delimiters) {
        self.buf.clear();
        self.segs.clear();
        self.instances.clear();
        self.open.clear();
        self.seps.clear();
        self.synced = Synced::default();
        self.delims = delims;
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Records a segment placed in the loops `open_loops` (outermost first, from the walker).
    /// `record_depth` is how many of the outer loops lie above this record (they are not part of
    /// it). `fields` is `seg` split with the record's element separator. `generation` names
    /// `open_loops`: the caller changes it whenever the open loops change, so that a record
    /// already in step with them skips the reconcile (most segments open and close nothing).
    ///
    /// Inline (forced: a plain `#[inline]` left it a call): the validator calls it once a
    /// segment, and the call's seven arguments and frame cost about 20 instructions of its ~150.
    #[inline(always)]
    pub fn push(
        &mut self,
        seg: &Segment<'_>,
        fields: &Fields<'_>,
        placed: Placed,
        open_loops: &[LoopIx],
        record_depth: usize,
        generation: u64,
    ) {
        if self.segs.len() >= MAX_SEGMENTS {
            // A loop this long is not an 834 member (and its set is rejected for the segments
            // over their maximum use); keep memory bounded rather than record it all.
            return;
        }
        let synced = Some((generation, record_depth));
        if self.synced.0 != synced {
            self.reconcile(open_loops.get(record_depth..).unwrap_or(&[]));
            self.synced = Synced(synced);
        }
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(seg.raw());
        let end = self.buf.len() as u32;
        let sep_lo = self.seps.len() as u32;
        self.seps.extend_from_slice(fields.separators());
        self.segs.push(RecSeg {
            key: placed.key,
            qual: placed.qual,
            seg_ix: placed.seg_ix,
            instance: self.open.last().copied().unwrap_or(u32::MAX),
            position: placed.position,
            at: seg.position(),
            start,
            end,
            sep_lo,
            sep_n: fields.len() as u32,
        });
    }

    /// Tells the record that the segment about to be pushed starts a new instance of the loop at
    /// walker depth `depth` (the loop's trigger repeated).
    pub fn new_instance_at(&mut self, depth_in_record: usize) {
        self.open.truncate(depth_in_record);
        self.synced = Synced::default();
    }

    /// Brings the stack of open instances in step with the loops `inner` the walker has open
    /// inside this record: a loop at the same depth with the same index is the same instance
    /// unless the segment is that loop's trigger ([`Record::new_instance_at`]).
    fn reconcile(&mut self, inner: &[LoopIx]) {
        let mut keep = 0;
        while keep < self.open.len()
            && keep < inner.len()
            && self.instances[self.open[keep] as usize].loop_ix == inner[keep]
        {
            keep += 1;
        }
        self.open.truncate(keep);
        for &l in &inner[keep..] {
            let parent = self.open.last().copied();
            self.instances.push(Instance { loop_ix: l, parent });
            self.open.push((self.instances.len() - 1) as u32);
        }
    }

    pub fn segment(&self, i: usize) -> Segment<'_> {
        let r = &self.segs[i];
        Segment::new(
            &self.buf[r.start as usize..r.end as usize],
            self.delims,
            r.at,
        )
    }

    /// Element `n` (1-based) of segment `i`, as [`Segment::element`] gives it, from the
    /// separators found when it was recorded.
    #[inline]
    pub fn element(&self, i: usize, n: usize) -> &[u8] {
        let r = &self.segs[i];
        if n == 0 || n > r.sep_n as usize {
            return b"";
        }
        let at = r.sep_lo as usize + n;
        let from = (r.start + self.seps[at - 1] + 1) as usize;
        let to = if n < r.sep_n as usize {
            (r.start + self.seps[at]) as usize
        } else {
            r.end as usize
        };
        self.buf.get(from..to).unwrap_or_default()
    }

    /// The recorded segments' bytes, one after another: [`Record::element`] returns slices of
    /// them, so a reader may check their UTF-8 once per record rather than once per element.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Segments with their record entries.
    pub fn iter(&self) -> impl Iterator<Item = (&RecSeg, Segment<'_>)> {
        self.segs
            .iter()
            .enumerate()
            .map(|(i, r)| (r, self.segment(i)))
    }

    /// True when instance `inst` is `ancestor` or nested in it.
    pub fn within(&self, inst: u32, ancestor: u32) -> bool {
        let mut cur = Some(inst);
        while let Some(c) = cur {
            if c == ancestor {
                return true;
            }
            cur = self.instances.get(c as usize).and_then(|i| i.parent);
        }
        false
    }

    /// Instances of loop `loop_id` (by schema id), in order.
    pub fn instances_of<'a>(
        &'a self,
        schema: &'a Schema,
        loop_id: &'a str,
    ) -> impl Iterator<Item = u32> + 'a {
        self.instances
            .iter()
            .enumerate()
            .filter(move |(_, i)| schema.loops[i.loop_ix].id == loop_id)
            .map(|(n, _)| n as u32)
    }

    /// Instances of loop `loop_id` whose packed ID ([`crate::schema::pack`]) is `key`, in
    /// order; compares integers rather than strings when the ID packs.
    pub fn instances_of_key<'a>(
        &'a self,
        schema: &'a Schema,
        loop_id: &'a str,
        key: Option<u64>,
    ) -> impl Iterator<Item = u32> + 'a {
        self.instances
            .iter()
            .enumerate()
            .filter(move |(_, i)| {
                let l = &schema.loops[i.loop_ix];
                match key {
                    Some(k) => l.key == k,
                    None => l.id == loop_id,
                }
            })
            .map(|(n, _)| n as u32)
    }

    /// Segments (record indices) that lie in instance `inst` or below it.
    pub fn segments_in(&self, inst: Option<u32>) -> impl Iterator<Item = usize> + '_ {
        self.segs
            .iter()
            .enumerate()
            .filter(move |(_, s)| match inst {
                None => true,
                Some(i) => self.within(s.instance, i),
            })
            .map(|(n, _)| n)
    }
}
