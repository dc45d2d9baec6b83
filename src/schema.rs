//! Implementation-guide schemas as data.
//!
//! A schema file under `schemas/x12/` describes one transaction (loops, segments, elements, code
//! lists, syntax notes). This module loads it with serde and compiles it into a flat arena that
//! the generic validator walks: loops and segments become indices, code lists become sorted byte
//! strings. Nothing here knows the 834 in particular: a new transaction is a new JSON file.
//!
//! The 834 and 999 schemas and the external code sets are embedded in the binary, so eligo runs
//! without `schemas/` on disk; loading them parses about 300 KB of JSON once per process.

use serde::Deserialize;
use std::borrow::Cow;

/// Usage of a segment, loop or element as the implementation guide states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Usage {
    #[serde(rename = "R")]
    Required,
    #[serde(rename = "S")]
    Situational,
    #[serde(rename = "N")]
    NotUsed,
}

/// X12 data element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ElementType {
    AN,
    ID,
    DT,
    TM,
    R,
    N0,
    N1,
    N2,
    N3,
    N4,
    N5,
    N6,
    N7,
    N8,
    N9,
    B,
    /// A composite: its parts are in `components`.
    C,
}

/// X12 syntax note kinds (paired, required, exclusion, conditional, list conditional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SyntaxKind {
    P,
    R,
    E,
    C,
    L,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SyntaxNote {
    pub kind: SyntaxKind,
    pub seqs: Vec<u8>,
    /// `seqs` as bit masks, worked out when the schema is compiled ([`SyntaxNote::compiled`]).
    #[serde(skip)]
    masks: NoteMasks,
}

/// A syntax note's element positions as bit masks (bit `n` for element `n`), so that the
/// element checks settle a note that holds with a few operations on the mask of the elements
/// sent ([`SyntaxNote::holds`]) instead of looking each element up. A segment that is checked
/// in full evaluates two notes on average, and nearly all of them hold.
#[derive(Debug, Clone, Copy, Default)]
struct NoteMasks {
    /// Every element of the note.
    all: u64,
    /// The first element (the one a C or L note is conditional on).
    first: u64,
    /// The others.
    rest: u64,
    /// The masks say exactly what the note says: its elements are distinct, there is at least
    /// one, and each is 1 to 63. False (a note the masks cannot settle) until compiled.
    exact: bool,
}

impl SyntaxNote {
    /// The note with its masks worked out.
    pub fn compiled(&self) -> SyntaxNote {
        let mut m = NoteMasks::default();
        let distinct = self
            .seqs
            .iter()
            .enumerate()
            .all(|(i, s)| !self.seqs[..i].contains(s));
        m.exact =
            !self.seqs.is_empty() && distinct && self.seqs.iter().all(|s| (1..64).contains(s));
        if m.exact {
            m.all = self.seqs.iter().fold(0, |a, s| a | 1u64 << s);
            m.first = 1u64 << self.seqs[0];
            m.rest = m.all & !m.first;
        }
        SyntaxNote {
            kind: self.kind,
            seqs: self.seqs.clone(),
            masks: m,
        }
    }

    /// True when the note holds for a segment whose elements sent (not empty) are the bits of
    /// `sent` (bit `n` for element `n`, up to 63). False says nothing: the note is then checked
    /// element by element, which reports what is wrong.
    #[inline]
    pub fn holds(&self, sent: u64) -> bool {
        let m = &self.masks;
        if !m.exact {
            return false;
        }
        let p = sent & m.all;
        match self.kind {
            // All or none.
            SyntaxKind::P => p == 0 || p == m.all,
            // At least one.
            SyntaxKind::R => p != 0,
            // At most one.
            SyntaxKind::E => p & p.wrapping_sub(1) == 0,
            // The first needs all the others.
            SyntaxKind::C => p & m.first == 0 || p & m.rest == m.rest,
            // The first needs one of the others.
            SyntaxKind::L => p & m.first == 0 || p & m.rest != 0,
        }
    }
}

/// A string of a schema file, borrowed from the JSON text unless it holds an escape. The
/// schema's strings are copied once more when it is compiled; parsed as owned strings, each
/// of its ≈ 3,600 strings cost an allocation and a free more, serial time before a check
/// starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ElementDef<'a> {
    pub seq: u8,
    #[serde(borrow)]
    pub id: Text<'a>,
    #[serde(borrow)]
    pub de: Text<'a>,
    #[serde(borrow)]
    pub name: Text<'a>,
    pub usage: Usage,
    #[serde(rename = "type")]
    pub ty: ElementType,
    pub min: u32,
    pub max: u32,
    /// Allowed repetitions; `None` means unbounded.
    pub repeat: Option<u32>,
    #[serde(borrow)]
    pub codes: Option<Vec<Text<'a>>>,
    /// Name of an external code set under `schemas/codesets/`.
    #[serde(borrow)]
    pub external: Option<Text<'a>>,
    /// True when the value is member data (PHI): it is masked wherever people read findings.
    #[serde(default)]
    pub phi: bool,
    /// For a date/period (DE 1251): the seq of the element holding its format qualifier.
    pub format_qualifier: Option<u8>,
    #[serde(borrow)]
    pub components: Option<Vec<ElementDef<'a>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SegmentDef<'a> {
    #[serde(borrow)]
    pub id: Text<'a>,
    #[serde(borrow)]
    pub name: Text<'a>,
    pub usage: Usage,
    pub pos: u32,
    pub max_use: Option<u32>,
    #[serde(default)]
    pub syntax: Vec<SyntaxNote>,
    #[serde(borrow)]
    pub elements: Vec<ElementDef<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LoopDef<'a> {
    #[serde(borrow)]
    pub id: Text<'a>,
    #[serde(borrow)]
    pub name: Text<'a>,
    pub usage: Usage,
    pub pos: u32,
    pub repeat: Option<u32>,
    #[serde(borrow)]
    pub children: Vec<NodeDef<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeDef<'a> {
    #[serde(borrow)]
    Loop(LoopDef<'a>),
    #[serde(borrow)]
    Segment(SegmentDef<'a>),
}

/// The file format of `schemas/x12/*.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct SchemaFile<'a> {
    pub format: String,
    pub transaction: String,
    pub implementation: String,
    pub functional_id: String,
    pub name: String,
    #[serde(borrow)]
    pub root: LoopDef<'a>,
}

/// Index of a loop in [`Schema::loops`].
pub type LoopIx = usize;
/// Index of a segment in [`Schema::segments`].
pub type SegIx = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Segment(SegIx),
    Loop(LoopIx),
}

/// A loop in the compiled arena.
#[derive(Debug)]
pub struct Loop {
    pub id: String,
    pub name: String,
    pub usage: Usage,
    pub repeat: Option<u32>,
    pub parent: Option<LoopIx>,
    pub children: Vec<Child>,
    /// The loop's first segment, which starts each repetition.
    pub trigger: SegIx,
    /// True for the LS/LE-bounded block, whose segments report a loop id in IK303/CTX04.
    pub bounded: bool,
    /// `id` packed ([`pack`]); `u64::MAX` when it is longer than 7 bytes.
    pub key: u64,
    /// For each child, the packed ID of the segment that matches it (the segment itself, or a
    /// loop's trigger): the walker compares these before looking at qualifiers.
    pub child_keys: Vec<u64>,
    /// `required_before[i]`: how many of the first `i` children are required (one entry more
    /// than children), so the walker can tell that a stretch of children it skipped or closed
    /// holds nothing required without looking at each.
    pub required_before: Vec<u32>,
    /// The IDs a search of an open instance of this loop can find, as bits
    /// ([`id_bit`] of each child's packed ID; the trigger left out except in the root, whose
    /// search starts at child 0): a segment whose bit is not set is certainly not in the
    /// loop, which the walker settles without looking the search up.
    pub child_ids: u64,
}

/// The bit of a packed segment ID in [`Loop::child_ids`]: one of 64, from the ID's
/// multiplicative hash (distinct IDs may share a bit; that only makes the test say "maybe").
#[inline(always)]
pub fn id_bit(id: u64) -> u64 {
    1 << (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

/// A segment in the compiled arena.
#[derive(Debug)]
pub struct Segment {
    pub id: Vec<u8>,
    /// `id` packed, for fast comparison.
    pub key: u64,
    /// Qualifier codes packed (see [`pack`]).
    qualifier_keys: Option<Vec<u64>>,
    pub name: String,
    pub usage: Usage,
    pub max_use: Option<u32>,
    pub loop_ix: LoopIx,
    /// Position of this segment among its loop's children.
    pub child_ix: usize,
    pub pos: u32,
    pub syntax: Vec<SyntaxNote>,
    pub elements: Vec<Element>,
    /// How many elements lead up to the last required one (0 when none is required): a
    /// segment that sends at least this many leaves no required element unsent.
    pub required_through: usize,
    /// The positions in `elements` of the dates/periods with a format qualifier (DTP03,
    /// DMG02): the period check reads these, rather than scanning every element (eleven for a
    /// DMG) of each segment that has one.
    pub periods: Vec<usize>,
    /// Values of the first element that select this variant (REF*0F vs REF*1L), if any.
    pub qualifier: Option<Vec<Vec<u8>>>,
}

/// An element (or component) in the compiled arena.
#[derive(Debug)]
pub struct Element {
    pub seq: u8,
    pub id: String,
    pub de: String,
    pub name: String,
    pub usage: Usage,
    pub ty: ElementType,
    pub min: u32,
    pub max: u32,
    pub repeat: Option<u32>,
    /// Sorted allowed codes.
    pub codes: Option<Vec<Vec<u8>>>,
    /// The same codes packed into integers (all codes of the 834 and 999 are at most 7 bytes)
    /// in a hash set, so a lookup is one multiply and usually one comparison rather than a
    /// binary search's unpredictable branches.
    packed: Option<CodeTable>,
    /// True when a value found in `packed` has no fault at all: every code is letters, digits
    /// and spaces, of an allowed length, of a type with no further check (ID, or AN without
    /// trailing spaces) and there is no external code set. A value that is one of the codes is
    /// then valid after one lookup (and holds no separator unless a separator is a letter,
    /// digit or space); the others go through every check, in order.
    codes_pass: bool,
    pub external: Option<String>,
    pub phi: bool,
    pub format_qualifier: Option<u8>,
    pub components: Vec<Element>,
}

impl Element {
    #[inline]
    pub fn allows_code(&self, v: &[u8]) -> bool {
        match (&self.packed, &self.codes) {
            (Some(p), _) => pack(v).is_some_and(|k| p.contains(k)),
            (None, Some(c)) => c.binary_search_by(|x| x.as_slice().cmp(v)).is_ok(),
            (None, None) => true,
        }
    }

    /// True when `v` is one of the codes and so has no fault (see `codes_pass`); false says
    /// nothing.
    #[inline]
    pub fn is_passing_code(&self, v: &[u8]) -> bool {
        match &self.packed {
            Some(p) if self.codes_pass => pack(v).is_some_and(|k| p.contains(k)),
            _ => false,
        }
    }
}

/// A set of packed codes ([`pack`]): open addressing with linear probing, at most half full,
/// built once per element of the schema.
#[derive(Debug)]
struct CodeTable {
    /// Power-of-two many slots; [`CodeTable::EMPTY`] where no code is.
    slots: Vec<u64>,
    /// `64 - log2(slots.len())`: the hash is the top bits of a multiplicative hash.
    shift: u32,
}

impl CodeTable {
    /// Never a packed value (their last byte is a length below 8).
    const EMPTY: u64 = u64::MAX;

    fn new(keys: &[u64]) -> CodeTable {
        let size = (keys.len() * 2).next_power_of_two().max(8);
        let mut t = CodeTable {
            slots: vec![Self::EMPTY; size],
            shift: 64 - size.trailing_zeros(),
        };
        for &k in keys {
            let mut i = t.slot(k);
            while t.slots[i] != Self::EMPTY && t.slots[i] != k {
                i = (i + 1) & (size - 1);
            }
            t.slots[i] = k;
        }
        t
    }

    #[inline]
    fn slot(&self, k: u64) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn contains(&self, k: u64) -> bool {
        let mask = self.slots.len() - 1;
        let mut i = self.slot(k);
        loop {
            match self.slots[i] {
                s if s == k => return true,
                Self::EMPTY => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }
}

/// A compiled transaction schema.
#[derive(Debug)]
pub struct Schema {
    pub transaction: String,
    pub implementation: String,
    pub functional_id: String,
    pub name: String,
    pub loops: Vec<Loop>,
    pub segments: Vec<Segment>,
    /// Every segment ID the transaction uses anywhere.
    pub known_ids: Vec<Vec<u8>>,
    /// No segment's qualifier list is left unpacked (each list that exists packs), so a strict
    /// match never reads element 1's bytes: the walker's search for a segment whose element 1
    /// does not pack (N3's street, N4's city) depends on its ID alone, and is remembered.
    pub qualifier_lists_pack: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("schema: {0}")]
    Invalid(String),
}

impl Schema {
    pub fn from_json(text: &str) -> Result<Schema, SchemaError> {
        let file: SchemaFile = serde_json::from_str(text)?;
        if file.format != "eligo-x12-schema/1" {
            return Err(SchemaError::Invalid(format!(
                "unknown schema format {:?}",
                file.format
            )));
        }
        let mut s = Schema {
            transaction: file.transaction,
            implementation: file.implementation,
            functional_id: file.functional_id,
            name: file.name,
            loops: Vec::new(),
            segments: Vec::new(),
            known_ids: Vec::new(),
            qualifier_lists_pack: false,
        };
        s.add_loop(&file.root, None)?;
        let mut ids: Vec<Vec<u8>> = s.segments.iter().map(|g| g.id.clone()).collect();
        ids.sort();
        ids.dedup();
        s.known_ids = ids;
        s.qualifier_lists_pack = s
            .segments
            .iter()
            .all(|g| g.qualifier.is_none() || g.qualifier_keys.is_some());
        Ok(s)
    }

    fn add_loop(
        &mut self,
        def: &LoopDef<'_>,
        parent: Option<LoopIx>,
    ) -> Result<LoopIx, SchemaError> {
        let ix = self.loops.len();
        self.loops.push(Loop {
            id: def.id.as_str().to_owned(),
            name: def.name.as_str().to_owned(),
            usage: def.usage,
            repeat: def.repeat,
            parent,
            children: Vec::new(),
            trigger: usize::MAX,
            bounded: def.id.as_str() == "LS_LOOP",
            key: pack(def.id.as_str().as_bytes()).unwrap_or(u64::MAX),
            child_keys: Vec::new(),
            required_before: Vec::new(),
            child_ids: 0,
        });
        // The walker's memo tags hold a child's index in 30 bits (`SearchMemo::tag`).
        if def.children.len() >= 1 << 30 {
            return Err(SchemaError::Invalid(format!(
                "loop {} has too many children",
                def.id.as_str()
            )));
        }
        let mut children = Vec::with_capacity(def.children.len());
        for (child_ix, node) in def.children.iter().enumerate() {
            children.push(match node {
                NodeDef::Segment(sd) => {
                    let six = self.segments.len();
                    let elements: Vec<Element> = sd.elements.iter().map(compile_element).collect();
                    // The qualifier is the first element's code list, or for a composite
                    // (999 CTX01) its first component's.
                    let qualifier = elements
                        .first()
                        .and_then(|e| {
                            e.codes
                                .clone()
                                .or_else(|| e.components.first()?.codes.clone())
                        })
                        .filter(|_| sd.id.as_str() != "ST" && sd.id.as_str() != "SE");
                    let qualifier_keys = qualifier.as_ref().and_then(|q| {
                        let mut p: Vec<u64> = q.iter().map(|v| pack(v)).collect::<Option<_>>()?;
                        p.sort_unstable();
                        Some(p)
                    });
                    let required_through = elements
                        .iter()
                        .rposition(|e| e.usage == Usage::Required)
                        .map_or(0, |i| i + 1);
                    let periods = (0..elements.len())
                        .filter(|&i| elements[i].format_qualifier.is_some())
                        .collect();
                    self.segments.push(Segment {
                        required_through,
                        periods,
                        key: pack(sd.id.as_str().as_bytes()).unwrap_or(u64::MAX),
                        qualifier_keys,
                        id: sd.id.as_str().as_bytes().to_vec(),
                        name: sd.name.as_str().to_owned(),
                        usage: sd.usage,
                        max_use: sd.max_use,
                        loop_ix: ix,
                        child_ix,
                        pos: sd.pos,
                        syntax: sd.syntax.iter().map(SyntaxNote::compiled).collect(),
                        elements,
                        qualifier,
                    });
                    Child::Segment(six)
                }
                NodeDef::Loop(ld) => Child::Loop(self.add_loop(ld, Some(ix))?),
            });
        }
        let trigger = match children.first() {
            Some(Child::Segment(s)) => *s,
            _ => {
                return Err(SchemaError::Invalid(format!(
                    "loop {} does not start with a segment",
                    def.id.as_str()
                )))
            }
        };
        let child_keys: Vec<u64> = children
            .iter()
            .map(|c| match *c {
                Child::Segment(s) => self.segments[s].key,
                Child::Loop(l) => self.segments[self.loops[l].trigger].key,
            })
            .collect();
        let mut required_before = Vec::with_capacity(children.len() + 1);
        let mut n = 0u32;
        required_before.push(n);
        for c in &children {
            let usage = match *c {
                Child::Segment(s) => self.segments[s].usage,
                Child::Loop(l) => self.loops[l].usage,
            };
            n += u32::from(usage == Usage::Required);
            required_before.push(n);
        }
        self.loops[ix].children = children;
        // A loop's own trigger is never searched inside an instance (`Walker::search_loop`):
        // only the root's search starts at its first child.
        let searched = usize::from(parent.is_some());
        self.loops[ix].child_ids = child_keys
            .get(searched..)
            .map_or(0, |ks: &[u64]| ks.iter().fold(0, |m, &k| m | id_bit(k)));
        self.loops[ix].child_keys = child_keys;
        self.loops[ix].required_before = required_before;
        self.loops[ix].trigger = trigger;
        Ok(ix)
    }

    /// True when `id` is used anywhere in this transaction.
    pub fn knows_segment(&self, id: &[u8]) -> bool {
        self.known_ids
            .binary_search_by(|x| x.as_slice().cmp(id))
            .is_ok()
    }

    /// Does segment `six` accept a segment with this ID and first element?
    pub fn matches(&self, six: SegIx, id: &[u8], first: &[u8], strict: bool) -> bool {
        let Some(key) = pack(id) else { return false };
        key == self.segments[six].key && self.qualifier_matches(six, pack(first), first, strict)
    }

    /// The qualifier half of [`Schema::matches`], for a segment whose ID is known to match;
    /// `first_key` is `pack(first)`.
    #[inline]
    pub fn qualifier_matches(
        &self,
        six: SegIx,
        first_key: Option<u64>,
        first: &[u8],
        strict: bool,
    ) -> bool {
        let s = &self.segments[six];
        match (&s.qualifier_keys, &s.qualifier, strict) {
            // Most segments have a handful of qualifiers: a straight scan beats a binary
            // search's unpredictable branches there.
            (Some(k), _, true) if k.len() <= 16 => first_key.is_some_and(|f| k.contains(&f)),
            (Some(k), _, true) => first_key.is_some_and(|f| k.binary_search(&f).is_ok()),
            (None, Some(q), true) => q.binary_search_by(|x| x.as_slice().cmp(first)).is_ok(),
            _ => true,
        }
    }

    /// The root loop (the transaction set: ST ... SE).
    pub fn root(&self) -> LoopIx {
        0
    }

    /// Finds the first segment definition with this ID (used to name things in messages).
    pub fn segment_by_id(&self, id: &[u8]) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }
}

/// Packs up to 8 bytes into a `u64` that orders like the bytes (length in the low bits keeps
/// "A" and "A\0" apart). `None` for longer values.
#[inline]
pub fn pack(v: &[u8]) -> Option<u64> {
    // Every code and qualifier of every segment goes through here: a few overlapping loads
    // instead of a loop over the bytes. Bytes loaded twice land on the same place, so or-ing
    // them is harmless.
    let n = v.len();
    let k = match v {
        [] => 0,
        [a] => (*a as u64) << 56,
        [a, b] => (*a as u64) << 56 | (*b as u64) << 48,
        [a, b, c] => (*a as u64) << 56 | (*b as u64) << 48 | (*c as u64) << 40,
        [a, b, c, d, ..] if n <= 7 => {
            let head = u32::from_be_bytes([*a, *b, *c, *d]) as u64;
            let t = &v[n - 4..];
            let tail = u32::from_be_bytes([t[0], t[1], t[2], t[3]]) as u64;
            head << 32 | tail << (8 * (8 - n))
        }
        _ => return None,
    };
    Some(k | n as u64)
}

/// [`pack`] for IDs known at compile time (at most 7 bytes).
pub const fn pack_const(v: &[u8]) -> u64 {
    assert!(v.len() <= 7);
    let mut k = 0u64;
    let mut i = 0;
    while i < v.len() {
        k |= (v[i] as u64) << (56 - 8 * i);
        i += 1;
    }
    k | v.len() as u64
}

fn compile_element(d: &ElementDef<'_>) -> Element {
    let codes = d.codes.as_ref().map(|c| {
        let mut v: Vec<Vec<u8>> = c.iter().map(|s| s.as_str().as_bytes().to_vec()).collect();
        v.sort();
        v.dedup();
        v
    });
    let packed = codes.as_ref().and_then(|c| {
        let p: Vec<u64> = c.iter().map(|v| pack(v)).collect::<Option<_>>()?;
        Some(CodeTable::new(&p))
    });
    let codes_pass = packed.is_some()
        && d.external.is_none()
        && matches!(d.ty, ElementType::ID | ElementType::AN)
        && codes.iter().flatten().all(|c| {
            let len = c.len() as u32;
            c.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ')
                && len >= d.min
                && (d.max == 0 || len <= d.max)
                && !(d.ty == ElementType::AN && len > d.min.max(1) && c.last() == Some(&b' '))
        });
    Element {
        packed,
        codes_pass,
        seq: d.seq,
        id: d.id.as_str().to_owned(),
        de: d.de.as_str().to_owned(),
        name: d.name.as_str().to_owned(),
        usage: d.usage,
        ty: d.ty,
        min: d.min,
        max: d.max,
        repeat: d.repeat,
        codes,
        external: d.external.as_ref().map(|e| e.as_str().to_owned()),
        phi: d.phi,
        format_qualifier: d.format_qualifier,
        components: d
            .components
            .as_ref()
            .map(|c| c.iter().map(compile_element).collect())
            .unwrap_or_default(),
    }
}

/// An external code set (`schemas/codesets/*.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct CodeSetFile {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub as_of: Option<String>,
    pub codes: Vec<String>,
}

/// External code sets by name ("states", "countries").
///
/// A short list searched by name rather than a `HashMap`: there are two sets, and hashing the
/// name cost more than the whole lookup (about 590 instructions a call, checkperf26).
#[derive(Debug, Default)]
pub struct CodeSets {
    sets: Vec<(String, CodeSet)>,
}

/// One external code set: codes of up to 7 bytes (all of them in the embedded sets) as sorted
/// [`pack`]ed integers, so that a lookup compares integers rather than byte strings; longer
/// codes apart.
#[derive(Debug, Default)]
struct CodeSet {
    packed: Vec<u64>,
    long: Vec<Vec<u8>>,
}

impl CodeSets {
    pub fn add_json(&mut self, text: &str) -> Result<(), SchemaError> {
        let f: CodeSetFile = serde_json::from_str(text)?;
        let mut set = CodeSet::default();
        for code in f.codes {
            match pack(code.as_bytes()) {
                Some(k) => set.packed.push(k),
                None => set.long.push(code.into_bytes()),
            }
        }
        set.packed.sort_unstable();
        set.packed.dedup();
        set.long.sort();
        set.long.dedup();
        match self.sets.iter_mut().find(|(id, _)| *id == f.id) {
            Some((_, old)) => *old = set,
            None => self.sets.push((f.id, set)),
        }
        Ok(())
    }

    /// `Some(true/false)` for a known set, `None` when the set is not loaded.
    pub fn contains(&self, set: &str, v: &[u8]) -> Option<bool> {
        let (_, c) = self.sets.iter().find(|(id, _)| id == set)?;
        Some(match pack(v) {
            Some(k) => c.packed.binary_search(&k).is_ok(),
            None => c.long.binary_search_by(|x| x.as_slice().cmp(v)).is_ok(),
        })
    }
}

/// X12 segment identifiers (code source 77), to tell a real X12 segment that does not belong in
/// this transaction (IK304 `6`) from an unknown ID (no IK3 possible, X12 RFI 1257).
#[derive(Debug, Default)]
pub struct SegmentIds {
    ids: Vec<Vec<u8>>,
}

#[derive(Deserialize)]
struct SegmentIdsFile {
    ids: Vec<String>,
}

impl SegmentIds {
    pub fn from_json(text: &str) -> Result<Self, SchemaError> {
        let f: SegmentIdsFile = serde_json::from_str(text)?;
        let mut ids: Vec<Vec<u8>> = f.ids.into_iter().map(String::into_bytes).collect();
        ids.sort();
        ids.dedup();
        Ok(SegmentIds { ids })
    }
    pub fn contains(&self, id: &[u8]) -> bool {
        self.ids.binary_search_by(|x| x.as_slice().cmp(id)).is_ok()
    }
}

/// Embedded copies of the files under `schemas/`.
pub mod embedded {
    pub const X220A1: &str = include_str!("../schemas/x12/834.005010X220A1.json");
    pub const X231A1: &str = include_str!("../schemas/x12/999.005010X231A1.json");
    pub const X220A1_RULES: &str = include_str!("../schemas/x12/834.005010X220A1.rules.json");
    pub const SEGMENT_IDS: &str = include_str!("../schemas/x12/segment-ids.json");
    pub const STATES: &str = include_str!("../schemas/codesets/states.json");
    pub const COUNTRIES: &str = include_str!("../schemas/codesets/countries.json");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's strings are borrowed from the JSON text; one with an escape cannot be and
    /// must come out decoded all the same.
    #[test]
    fn escaped_schema_strings_are_decoded() {
        let json = r#"{"format": "eligo-x12-schema/1", "transaction": "834",
            "implementation": "X", "functional_id": "BE", "name": "T",
            "root": {"id": "ST_\u004cOOP", "name": "Head\"er", "usage": "R", "pos": 1,
              "repeat": null, "children": [{"segment": {"id": "S\u0054", "name": "a\\b",
              "usage": "R", "pos": 1, "max_use": 1, "elements": [{"seq": 1, "id": "ST01",
              "de": "1\u00343", "name": "n\u00e9", "usage": "R", "type": "ID", "min": 1,
              "max": 3, "repeat": null, "codes": ["A\u0042", "CD"], "external": "st\u0061tes",
              "format_qualifier": null, "components": null}]}}]}}"#;
        let s = Schema::from_json(json).expect("valid schema");
        assert_eq!(s.loops[0].id, "ST_LOOP");
        assert_eq!(s.loops[0].name, "Head\"er");
        assert_eq!(s.segments[0].id, b"ST");
        assert_eq!(s.segments[0].name, "a\\b");
        let e = &s.segments[0].elements[0];
        assert_eq!((e.de.as_str(), e.name.as_str()), ("143", "né"));
        assert_eq!(e.codes, Some(vec![b"AB".to_vec(), b"CD".to_vec()]));
        assert_eq!(e.external.as_deref(), Some("states"));
        assert!(e.allows_code(b"AB") && !e.allows_code(b"A"));
    }

    #[test]
    fn pack_places_each_byte_as_the_byte_loop_did() {
        let by_loop = |v: &[u8]| -> Option<u64> {
            if v.len() > 7 {
                return None;
            }
            let mut k = 0u64;
            for (i, b) in v.iter().enumerate() {
                k |= (*b as u64) << (56 - 8 * i);
            }
            Some(k | v.len() as u64)
        };
        let bytes: Vec<u8> = (0..=255u8)
            .rev()
            .chain(b"0F1LAZ*:~ ".iter().copied())
            .collect();
        for len in 0..=9 {
            for start in 0..bytes.len() - 9 {
                let v = &bytes[start..start + len];
                assert_eq!(pack(v), by_loop(v), "{v:?}");
                if len <= 7 {
                    assert_eq!(pack(v), Some(pack_const(v)));
                }
            }
        }
    }

    #[test]
    fn a_passing_code_is_one_without_any_fault() {
        let s = Schema::from_json(embedded::X220A1).unwrap();
        let mut passing = 0;
        for e in s.segments.iter().flat_map(|s| &s.elements) {
            for c in e.codes.iter().flatten() {
                if e.is_passing_code(c) {
                    passing += 1;
                    assert!(
                        e.external.is_none() && matches!(e.ty, ElementType::ID | ElementType::AN)
                    );
                    assert!(c.len() as u32 >= e.min && (e.max == 0 || c.len() as u32 <= e.max));
                }
            }
            assert!(!e.is_passing_code(b"not a code"));
        }
        assert!(passing > 100, "{passing}");
    }

    #[test]
    fn code_tables_hold_exactly_their_codes() {
        for n in [0usize, 1, 2, 7, 8, 9, 30, 200] {
            let codes: Vec<Vec<u8>> = (0..n).map(|i| format!("{i:03}").into_bytes()).collect();
            let keys: Vec<u64> = codes.iter().map(|c| pack(c).unwrap()).collect();
            let t = CodeTable::new(&keys);
            assert!(keys.iter().all(|k| t.contains(*k)), "{n} codes");
            for other in [&b""[..], b"1", b"0000", b"999", b"A1"] {
                let want = codes.iter().any(|c| c.as_slice() == other);
                assert_eq!(
                    t.contains(pack(other).unwrap()),
                    want,
                    "{n} codes, {other:?}"
                );
            }
        }
    }

    /// Code set lookups: codes short enough to pack and longer ones, values of every length
    /// around them, an unknown set, and a set loaded again (the later list wins).
    #[test]
    fn code_sets_find_short_and_long_codes() {
        let mut sets = CodeSets::default();
        let json = r#"{"id": "t", "name": "T", "codes": ["NY", "A", "LONGCODE1", "CA", "NY", ""]}"#;
        sets.add_json(json).unwrap();
        for v in ["NY", "A", "LONGCODE1", "CA", ""] {
            assert_eq!(sets.contains("t", v.as_bytes()), Some(true), "{v}");
        }
        for v in ["N", "NYC", "A\0", "LONGCODE", "LONGCODE12", "ca", "ABCDEFG"] {
            assert_eq!(sets.contains("t", v.as_bytes()), Some(false), "{v}");
        }
        assert_eq!(sets.contains("u", b"NY"), None);
        sets.add_json(r#"{"id": "t", "name": "T", "codes": ["TX"]}"#)
            .unwrap();
        assert_eq!(sets.contains("t", b"TX"), Some(true));
        assert_eq!(sets.contains("t", b"NY"), Some(false));
        let mut embedded = CodeSets::default();
        embedded.add_json(embedded::STATES).unwrap();
        embedded.add_json(embedded::COUNTRIES).unwrap();
        assert_eq!(embedded.contains("states", b"NY"), Some(true));
        assert_eq!(embedded.contains("states", b"ZZ"), Some(false));
        assert_eq!(embedded.contains("countries", b"US"), Some(true));
    }
}
