//! Situational rules (SNIP level 4) and balancing (level 3), as data.
//!
//! The rules of a transaction live in `schemas/x12/<tx>.<guide>.rules.json`. Each rule has a
//! scope (the header, a loop such as 2000 or 2300, or every occurrence of a segment such as N4),
//! an optional condition, a requirement, and what to report when the requirement fails (a
//! missing segment, or an element with an IK403 code), plus the trigger element that the 999
//! names in its CTX segment. Conditions are a small closed language: element values, element
//! presence, segment presence by qualifier, loop instances that satisfy a nested condition,
//! patterns, and `all`/`any`/`not`. Rules that need state across members (a dependent's REF*0F
//! equal to its subscriber's) or totals across the set (QTY balancing) are code, below, because
//! they are not about one scope.

use super::record::Record;
use super::Tally;
use crate::finding::{Ack, ElementPos, Finding, Location, Severity, Trigger};
use crate::schema::{Schema, SchemaError};
use serde::Deserialize;

/// A reference to an element: `INS03` in the scope, `member.INS03` anywhere in the member,
/// `header.BGN08` in the set header; a qualifier may follow the segment: `DTP*357.03`.
#[derive(Debug, Clone)]
struct ElementRef {
    area: Area,
    segment: String,
    /// `segment` packed, compared with [`super::record::RecSeg::key`].
    key: u64,
    qualifier: Option<String>,
    element: usize,
    /// The [`Target`] (segment and qualifier) this reference looks up, set by
    /// [`RuleSet::from_json`].
    target: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Scope,
    Member,
    Header,
}

impl<'de> Deserialize<'de> for ElementRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_ref(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("bad element reference {s:?}")))
    }
}

fn parse_ref(s: &str) -> Option<ElementRef> {
    let (area, rest) = match s.split_once('.') {
        Some(("member", r)) => (Area::Member, r),
        Some(("header", r)) => (Area::Header, r),
        _ => (Area::Scope, s),
    };
    // SEGNN or SEG*QUAL.NN
    if let Some((seg, el)) = rest.split_once('.') {
        let (segment, qualifier) = match seg.split_once('*') {
            Some((a, q)) => (a.to_string(), Some(q.to_string())),
            None => (seg.to_string(), None),
        };
        return Some(ElementRef {
            area,
            key: crate::schema::pack(segment.as_bytes())?,
            segment,
            qualifier,
            element: el.parse().ok()?,
            target: 0,
        });
    }
    let split = rest.find(|c: char| c.is_ascii_digit() && rest[..].len() > 2)?;
    // Segment IDs may end in a digit (NM1, N3, N4): the element number is the last two digits.
    let split = split.max(rest.len().checked_sub(2)?);
    Some(ElementRef {
        area,
        key: crate::schema::pack(&rest.as_bytes()[..split])?,
        segment: rest[..split].to_string(),
        qualifier: None,
        element: rest[split..].parse().ok()?,
        target: 0,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Cond {
    /// The element's value is one of these.
    Value {
        of: ElementRef,
        #[serde(default)]
        r#in: Vec<String>,
        #[serde(default)]
        not_in: Vec<String>,
    },
    /// The element is present (not empty).
    Present(ElementRef),
    /// Two dates (CCYYMMDD, or the start of a CCYYMMDD-CCYYMMDD range) are in order; true when
    /// either is absent or unreadable (that is another rule's finding).
    DateOrder {
        earlier: ElementRef,
        later: ElementRef,
    },
    /// A segment with this ID (and qualifier) is in the scope's own segments.
    Segment {
        id: String,
        #[serde(default)]
        qualifier: Vec<String>,
        /// Set by [`RuleSet::from_json`].
        #[serde(skip)]
        target: usize,
    },
    /// Some instance of this loop, inside the scope, satisfies `where`.
    Loop {
        id: String,
        #[serde(default)]
        r#where: Option<Box<Cond>>,
        /// `id` packed, set by [`RuleSet::from_json`].
        #[serde(skip)]
        key: Option<u64>,
    },
    /// The element matches a named pattern.
    Pattern {
        of: ElementRef,
        is: Pattern,
    },
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Pattern {
    /// US ZIP code: 5 or 9 digits.
    UsZip,
    /// Canadian postal code A9A9A9.
    CaPostal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Report {
    /// A segment that should be there is not: IK304 `I6` at the place it was expected.
    MissingSegment {
        id: String,
        #[serde(default)]
        qualifier: Option<String>,
    },
    /// An element of a segment in scope: IK403 with the given code (I9 missing, I12 value, I13
    /// must not be sent).
    Element { of: ElementRef, code: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: String,
    snip: u8,
    basis: String,
    scope: String,
    #[serde(default)]
    when: Option<Cond>,
    require: Cond,
    report: Report,
    #[serde(default)]
    trigger: Option<ElementRef>,
    #[serde(default)]
    severity: Option<Severity>,
    message: String,
}

#[derive(Debug, Deserialize)]
struct RulesFile {
    format: String,
    rules: Vec<RuleDef>,
}

/// A rule's scope, with the loop or segment ID packed ([`crate::schema::pack`]) so that
/// scopes are found by integer comparison.
#[derive(Debug, Clone)]
enum Scope {
    Header,
    /// The loop ID, packed, and its number in [`RuleSet::scope_loops`] (when it packs).
    Loop(String, Option<u64>, usize),
    /// The segment ID, packed, and the [`Target`] that finds it.
    Segment(String, Option<u64>, usize),
}

/// What rules look segments up by: a packed segment ID and, optionally, the codes element 1
/// must hold. Rules name a few dozen of these; each member's segments are sorted into them once
/// ([`Index`]) rather than every rule scanning the member.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    key: u64,
    /// `None`: any qualifier.
    quals: Option<Vec<Qual>>,
}

/// A qualifier code, packed when it packs (else only its bytes can match).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Qual {
    bytes: Vec<u8>,
    key: Option<u64>,
}

impl Qual {
    fn new(q: &str) -> Qual {
        Qual {
            bytes: q.as_bytes().to_vec(),
            key: crate::schema::pack(q.as_bytes()),
        }
    }

    /// Does element 1 of record segment `i` hold this code?
    #[inline]
    fn matches(&self, rec: &Record, i: usize) -> bool {
        match self.key {
            Some(k) => rec.segs[i].qual == k,
            None => rec.element(i, 1) == self.bytes.as_slice(),
        }
    }
}

impl Target {
    #[inline]
    fn matches(&self, rec: &Record, i: usize) -> bool {
        rec.segs[i].key == self.key
            && self
                .quals
                .as_ref()
                .is_none_or(|qs| qs.iter().any(|q| q.matches(rec, i)))
    }
}

/// [`RuleSet::by_key`]'s qualifier for a target that takes any qualifier, and for one with a
/// qualifier that does not pack. Packed values end in a byte below 8 and a record's unpacked
/// element 1 is `u64::MAX`, so neither equals a segment's qualifier.
const ANY_QUAL: u64 = u64::MAX - 1;
const UNPACKED_QUAL: u64 = u64::MAX - 2;

/// Registers `t` in `targets` (once) and returns its index.
fn intern(targets: &mut Vec<Target>, t: Target) -> usize {
    match targets.iter().position(|x| *x == t) {
        Some(i) => i,
        None => {
            targets.push(t);
            targets.len() - 1
        }
    }
}

fn intern_ref(targets: &mut Vec<Target>, r: &mut ElementRef) {
    r.target = intern(
        targets,
        Target {
            key: r.key,
            quals: r.qualifier.as_deref().map(|q| vec![Qual::new(q)]),
        },
    );
}

fn intern_cond(targets: &mut Vec<Target>, c: &mut Cond) {
    match c {
        Cond::Value { of, .. } | Cond::Present(of) | Cond::Pattern { of, .. } => {
            intern_ref(targets, of)
        }
        Cond::DateOrder { earlier, later } => {
            intern_ref(targets, earlier);
            intern_ref(targets, later);
        }
        Cond::Segment {
            id,
            qualifier,
            target,
        } => {
            *target = intern(
                targets,
                Target {
                    key: crate::schema::pack(id.as_bytes()).unwrap_or(u64::MAX),
                    quals: (!qualifier.is_empty())
                        .then(|| qualifier.iter().map(|q| Qual::new(q)).collect()),
                },
            );
        }
        Cond::Loop { id, r#where, key } => {
            *key = crate::schema::pack(id.as_bytes());
            if let Some(w) = r#where {
                intern_cond(targets, w);
            }
        }
        Cond::All(cs) | Cond::Any(cs) => cs.iter_mut().for_each(|c| intern_cond(targets, c)),
        Cond::Not(c) => intern_cond(targets, c),
    }
}

/// One record's segments sorted into the rule set's [`Target`]s, and its loop instances'
/// packed IDs: built once per member (and once per set for the header).
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// For each target, the record indices of the segments it matches, in order.
    hits: Vec<Vec<u32>>,
    /// For each loop instance of the record, its loop's packed ID.
    instance_keys: Vec<u64>,
    /// For each of [`RuleSet::scope_loops`], the record's instances of that loop, in order.
    scopes: Vec<Vec<u32>>,
    /// For each schema segment, its packed ID and the range of [`RuleSet::by_key`] entries for
    /// that ID: looked up once per set rather than once per recorded segment (a recorded
    /// segment whose ID differs from its schema segment's is looked up itself).
    slots: Vec<(u64, u32, u32)>,
}

impl Index {
    fn build(&mut self, rules: &RuleSet, schema: &Schema, rec: &Record) {
        self.hits.resize_with(rules.targets.len(), Vec::new);
        self.hits.iter_mut().for_each(Vec::clear);
        let by_key = rules.by_key.as_slice();
        let range = |key: u64| {
            let lo = by_key.partition_point(|e| e.0 < key);
            (lo, lo + by_key[lo..].partition_point(|e| e.0 == key))
        };
        if self.slots.len() != schema.segments.len() {
            self.slots.clear();
            self.slots.extend(schema.segments.iter().map(|d| {
                let (lo, hi) = range(d.key);
                (d.key, lo as u32, hi as u32)
            }));
        }
        for (i, rs) in rec.segs.iter().enumerate() {
            let (lo, hi) = match self.slots.get(rs.seg_ix) {
                Some(&(key, lo, hi)) if key == rs.key => (lo as usize, hi as usize),
                _ => range(rs.key),
            };
            for &(_, q, t) in &by_key[lo..hi] {
                let hit = q == rs.qual
                    || q == ANY_QUAL
                    || (q == UNPACKED_QUAL
                        && rules.targets[t].quals.as_ref().is_some_and(|qs| {
                            qs.iter().any(|q| q.key.is_none() && q.matches(rec, i))
                        }));
                if hit {
                    self.hits[t].push(i as u32);
                }
            }
        }
        self.instance_keys.clear();
        self.instance_keys
            .extend(rec.instances.iter().map(|i| schema.loops[i.loop_ix].key));
        self.scopes.resize_with(rules.scope_loops.len(), Vec::new);
        self.scopes.iter_mut().for_each(Vec::clear);
        for (n, k) in self.instance_keys.iter().enumerate() {
            if let Some(s) = rules.scope_loops.iter().position(|x| x == k) {
                self.scopes[s].push(n as u32);
            }
        }
    }

    /// Instances of the loop `id` (packed: `key`), in order.
    fn instances<'a>(
        &'a self,
        schema: &'a Schema,
        rec: &'a Record,
        id: &'a str,
        key: Option<u64>,
    ) -> impl Iterator<Item = u32> + 'a {
        self.instance_keys
            .iter()
            .enumerate()
            .filter(move |(n, k)| match key {
                Some(key) => **k == key,
                None => schema.loops[rec.instances[*n].loop_ix].id == id,
            })
            .map(|(n, _)| n as u32)
    }
}

#[derive(Debug)]
struct Rule {
    id: &'static str,
    def: RuleDef,
    scope: Scope,
    ack_code: &'static str,
}

/// The rules of one transaction.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Every segment lookup the rules make.
    targets: Vec<Target>,
    /// `(packed segment ID, packed qualifier, target)`, sorted: the targets a segment may
    /// match. A target for any qualifier has [`ANY_QUAL`]; one with a qualifier too long to pack
    /// has [`UNPACKED_QUAL`] (and is matched by its bytes).
    by_key: Vec<(u64, u64, usize)>,
    /// The packed IDs of the loops that are rule scopes: [`Index::scopes`] lists each one's
    /// instances once per member instead of every rule filtering all instances.
    scope_loops: Vec<u64>,
    /// Whether the 834 cross-member and balancing rules in code apply.
    enrollment: bool,
}

/// Catalogue entry for `eligo check --explain`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub snip: u8,
    pub basis: String,
    pub message: String,
}

const ACK_CODES: &[&str] = &["I6", "I9", "I10", "I12", "I13", "7", "8"];

impl RuleSet {
    pub fn from_json(text: &str) -> Result<RuleSet, SchemaError> {
        let f: RulesFile = serde_json::from_str(text)?;
        if f.format != "eligo-x12-rules/1" {
            return Err(SchemaError::Invalid(format!(
                "unknown rules format {:?}",
                f.format
            )));
        }
        let mut rules = Vec::new();
        let mut targets = Vec::new();
        let mut scope_loops = Vec::new();
        for mut def in f.rules {
            if let Some(w) = &mut def.when {
                intern_cond(&mut targets, w);
            }
            intern_cond(&mut targets, &mut def.require);
            if let Report::Element { of, .. } = &mut def.report {
                intern_ref(&mut targets, of);
            }
            if let Some(t) = &mut def.trigger {
                intern_ref(&mut targets, t);
            }
            let scope = match def.scope.as_str() {
                "header" => Scope::Header,
                s if s.starts_with("segment:") => {
                    let id = &s["segment:".len()..];
                    let key = crate::schema::pack(id.as_bytes());
                    let target = intern(
                        &mut targets,
                        Target {
                            key: key.unwrap_or(u64::MAX),
                            quals: None,
                        },
                    );
                    Scope::Segment(id.to_string(), key, target)
                }
                s => {
                    let key = crate::schema::pack(s.as_bytes());
                    let n = match key {
                        Some(k) => match scope_loops.iter().position(|x| *x == k) {
                            Some(n) => n,
                            None => {
                                scope_loops.push(k);
                                scope_loops.len() - 1
                            }
                        },
                        None => usize::MAX,
                    };
                    Scope::Loop(s.to_string(), key, n)
                }
            };
            let ack_code = match &def.report {
                Report::MissingSegment { .. } => "I6",
                Report::Element { code, .. } => ACK_CODES
                    .iter()
                    .find(|c| **c == code)
                    .copied()
                    .ok_or_else(|| {
                        SchemaError::Invalid(format!("rule {}: unknown IK403 code {code}", def.id))
                    })?,
            };
            // Rule ids are few and live as long as the process: leaking them gives the
            // `&'static str` ids that findings carry.
            let id: &'static str = Box::leak(def.id.clone().into_boxed_str());
            rules.push(Rule {
                id,
                def,
                scope,
                ack_code,
            });
        }
        let mut by_key: Vec<(u64, u64, usize)> = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            match &t.quals {
                None => by_key.push((t.key, ANY_QUAL, i)),
                Some(qs) => {
                    for q in qs {
                        by_key.push((t.key, q.key.unwrap_or(UNPACKED_QUAL), i));
                    }
                }
            }
        }
        by_key.sort_unstable();
        by_key.dedup();
        Ok(RuleSet {
            rules,
            targets,
            by_key,
            scope_loops,
            enrollment: true,
        })
    }

    /// What each rule checks (for `--explain` and the README).
    pub fn catalogue(&self) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .map(|r| RuleInfo {
                id: r.def.id.clone(),
                snip: r.def.snip,
                basis: r.def.basis.clone(),
                message: r.def.message.clone(),
            })
            .collect()
    }

    /// Runs the member-scoped rules over one completed member loop.
    pub fn check_member(
        &self,
        schema: &Schema,
        header: &Record,
        member: &Record,
        closing_position: u32,
        state: &mut SetState,
        out: &mut Vec<Finding>,
    ) {
        let mut index = std::mem::take(&mut state.index);
        index.build(self, schema, member);
        let ctx = Ctx {
            schema,
            header,
            member,
            targets: &self.targets,
            index: &index,
            header_indexed: false,
            closing_position,
        };
        for rule in &self.rules {
            match &rule.scope {
                Scope::Header => {}
                Scope::Loop(_, Some(_), n) => {
                    for &inst in &index.scopes[*n] {
                        ctx.apply(rule, Some(inst), None, out);
                    }
                }
                Scope::Loop(id, None, _) => {
                    for inst in index.instances(schema, member, id, None) {
                        ctx.apply(rule, Some(inst), None, out);
                    }
                }
                Scope::Segment(_, Some(_), target) => {
                    for &i in &index.hits[*target] {
                        ctx.apply(rule, None, Some(i as usize), out);
                    }
                }
                Scope::Segment(id, None, _) => {
                    // An ID too long to pack is compared whole.
                    for i in 0..member.segs.len() {
                        if member.segment(i).id() == id.as_bytes() {
                            ctx.apply(rule, None, Some(i), out);
                        }
                    }
                }
            }
        }
        state.index = index;
        if self.enrollment {
            same_subscriber_id(member, state, out);
        }
    }

    /// Runs header rules and balancing once the set is complete.
    pub fn check_set(
        &self,
        schema: &Schema,
        header: &Record,
        tally: &Tally,
        closing_position: u32,
        out: &mut Vec<Finding>,
    ) {
        let mut index = Index::default();
        index.build(self, schema, header);
        let ctx = Ctx {
            schema,
            header,
            member: header,
            targets: &self.targets,
            index: &index,
            header_indexed: true,
            closing_position,
        };
        for rule in self
            .rules
            .iter()
            .filter(|r| matches!(r.scope, Scope::Header))
        {
            ctx.apply(rule, None, None, out);
        }
        if self.enrollment {
            balance_quantities(header, tally, out);
        }
    }
}

/// State carried from member to member within one set.
#[derive(Debug, Default, Clone)]
pub struct SetState {
    /// REF*0F of the last subscriber (INS01 `Y`) seen in the set.
    pub subscriber_id: Option<Vec<u8>>,
    /// True while the members before this point have not been seen: a piece of a set checked
    /// in parallel starts so ([`crate::split`]). The first subscriber with a REF*0F ends it.
    pub subscriber_unknown: bool,
    /// A dependent was compared with the unknown subscriber: the piece's findings depend on
    /// members it did not see, and it must be checked again in sequence.
    pub needed_unknown: bool,
    /// The member index, kept to reuse its buffers.
    index: Index,
}

struct Ctx<'a> {
    schema: &'a Schema,
    header: &'a Record,
    member: &'a Record,
    /// The rule set's lookups, and `member`'s index of them.
    targets: &'a [Target],
    index: &'a Index,
    /// True when `header` is `member` (and so indexed too).
    header_indexed: bool,
    closing_position: u32,
}

impl Ctx<'_> {
    fn record(&self, area: Area) -> &Record {
        match area {
            Area::Header => self.header,
            _ => self.member,
        }
    }

    /// Finds the segment an element reference points at: its record index. The first segment
    /// of the record (of the scope's own instance, for a scope reference) that the reference's
    /// target matches.
    fn find(&self, r: &ElementRef, scope: Option<u32>, seg: Option<usize>) -> Option<usize> {
        let rec = self.record(r.area);
        if r.area == Area::Scope {
            if let Some(i) = seg {
                if rec.segs[i].key == r.key {
                    return Some(i);
                }
            }
        }
        let scope = if r.area == Area::Scope { scope } else { None };
        let in_scope = |i: usize| scope.is_none_or(|inst| rec.segs[i].instance == inst);
        if r.area == Area::Header && !self.header_indexed {
            // The header is not indexed for members: it is short, and BGN comes second.
            let target = &self.targets[r.target];
            return (0..rec.segs.len()).find(|&i| in_scope(i) && target.matches(rec, i));
        }
        self.index.hits[r.target]
            .iter()
            .map(|&i| i as usize)
            .find(|&i| in_scope(i))
    }

    fn value(&self, r: &ElementRef, scope: Option<u32>, seg: Option<usize>) -> Option<&[u8]> {
        let i = self.find(r, scope, seg)?;
        Some(self.record(r.area).element(i, r.element))
    }

    fn eval(&self, c: &Cond, scope: Option<u32>, seg: Option<usize>) -> bool {
        match c {
            Cond::Value { of, r#in, not_in } => {
                let v = self.value(of, scope, seg).unwrap_or_default();
                let in_ok = r#in.is_empty() || r#in.iter().any(|x| short_eq(x.as_bytes(), v));
                let not_ok = !not_in.iter().any(|x| short_eq(x.as_bytes(), v));
                in_ok && not_ok
            }
            Cond::Present(of) => self.value(of, scope, seg).is_some_and(|v| !v.is_empty()),
            Cond::Segment { target, .. } => self.index.hits[*target]
                .iter()
                .any(|&i| scope.is_none_or(|inst| self.member.segs[i as usize].instance == inst)),
            Cond::Loop { id, r#where, key } => self
                .index
                .instances(self.schema, self.member, id, *key)
                .filter(|inst| scope.is_none_or(|s| self.member.within(*inst, s)))
                .any(|inst| {
                    r#where
                        .as_ref()
                        .is_none_or(|w| self.eval(w, Some(inst), None))
                }),
            Cond::Pattern { of, is } => {
                let Some(v) = self.value(of, scope, seg) else {
                    return true;
                };
                match is {
                    Pattern::UsZip => {
                        (v.len() == 5 || v.len() == 9) && v.iter().all(u8::is_ascii_digit)
                    }
                    Pattern::CaPostal => {
                        v.len() == 6
                            && v.iter().enumerate().all(|(i, b)| {
                                if i % 2 == 0 {
                                    b.is_ascii_uppercase()
                                } else {
                                    b.is_ascii_digit()
                                }
                            })
                    }
                }
            }
            Cond::DateOrder { earlier, later } => {
                // Real CCYYMMDD dates order like their bytes.
                let date = |r: &ElementRef| {
                    self.value(r, scope, seg)
                        .and_then(|v| v.get(..8))
                        .filter(|d| super::element::is_date(d))
                };
                match (date(earlier), date(later)) {
                    (Some(a), Some(b)) => a <= b,
                    _ => true,
                }
            }
            Cond::All(cs) => cs.iter().all(|c| self.eval(c, scope, seg)),
            Cond::Any(cs) => cs.iter().any(|c| self.eval(c, scope, seg)),
            Cond::Not(c) => !self.eval(c, scope, seg),
        }
    }

    /// Where a missing segment would have been: the position of the first segment of the
    /// scope that comes after it in the schema's order, else the segment that closed the scope.
    fn expected_position(&self, scope: Option<u32>, seg_id: &str, qualifier: Option<&str>) -> u32 {
        let schema = self.schema;
        let rec = self.member;
        let Some(inst) = scope else {
            return self.closing_position;
        };
        let loop_ix = rec.instances[inst as usize].loop_ix;
        let lp = &schema.loops[loop_ix];
        let missing_child = lp.children.iter().position(|c| match c {
            crate::schema::Child::Segment(s) => {
                let d = &schema.segments[*s];
                d.id == seg_id.as_bytes()
                    && qualifier.is_none_or(|q| {
                        d.qualifier
                            .as_ref()
                            .is_none_or(|qs| qs.iter().any(|x| x == q.as_bytes()))
                    })
            }
            _ => false,
        });
        let Some(k) = missing_child else {
            return self.closing_position;
        };
        for (i, rs) in rec.segs.iter().enumerate() {
            if !rec.within(rs.instance, inst) {
                continue;
            }
            // The child index, within the scope loop, of the segment or of the loop holding it.
            let mut cur = rs.instance;
            let idx = if cur == inst {
                schema.segments[rs.seg_ix].child_ix
            } else {
                while rec.instances[cur as usize].parent != Some(inst) {
                    match rec.instances[cur as usize].parent {
                        Some(p) => cur = p,
                        None => break,
                    }
                }
                let l = rec.instances[cur as usize].loop_ix;
                lp.children
                    .iter()
                    .position(|c| *c == crate::schema::Child::Loop(l))
                    .unwrap_or(0)
            };
            if idx > k {
                return rec.segs[i].position;
            }
        }
        self.closing_position
    }

    fn apply(&self, rule: &Rule, scope: Option<u32>, seg: Option<usize>, out: &mut Vec<Finding>) {
        let d = &rule.def;
        if let Some(w) = &d.when {
            if !self.eval(w, scope, seg) {
                return;
            }
        }
        if self.eval(&d.require, scope, seg) {
            return;
        }
        let trigger = d.trigger.as_ref().and_then(|t| {
            let i = self.find(t, scope, seg)?;
            let rec = self.record(t.area);
            Some(Trigger {
                segment_id: t.segment.clone(),
                segment_position: rec.segs[i].position,
                element: Some(ElementPos {
                    element: t.element as u8,
                    ..Default::default()
                }),
            })
        });
        let loop_id = scope.map(|s| {
            self.schema.loops[self.member.instances[s as usize].loop_ix]
                .id
                .clone()
        });
        let mut f = match &d.report {
            Report::MissingSegment { id, qualifier } => {
                let mut f = Finding::new(rule.id, d.snip, Ack::Segment("I6"), d.message.clone());
                f.location = Location {
                    segment_position: Some(self.expected_position(scope, id, qualifier.as_deref())),
                    segment_id: Some(id.clone()),
                    loop_id,
                    ..Location::default()
                };
                f
            }
            Report::Element { of, code } => {
                let _ = code;
                let rec = self.record(of.area);
                let found = self.find(of, scope, seg);
                let mut f = Finding::new(
                    rule.id,
                    d.snip,
                    Ack::Element(rule.ack_code),
                    d.message.clone(),
                );
                let (pos, line, offset, loop_id) = match found {
                    Some(i) => {
                        let rs = &rec.segs[i];
                        let l = &self.schema.loops[self.schema.segments[rs.seg_ix].loop_ix];
                        (rs.position, rs.at.line, rs.at.offset, Some(l.id.clone()))
                    }
                    None => (self.closing_position, 0, 0, loop_id),
                };
                f.location = Location {
                    line,
                    offset,
                    segment_position: Some(pos),
                    segment_id: Some(of.segment.clone()),
                    loop_id,
                    element: Some(ElementPos {
                        element: of.element as u8,
                        ..Default::default()
                    }),
                    data_element: found
                        .and_then(|i| {
                            self.schema.segments[rec.segs[i].seg_ix]
                                .elements
                                .get(of.element.wrapping_sub(1))
                        })
                        .map(|e| e.de.clone()),
                    ..Location::default()
                };
                if let Some(i) = found {
                    let v = rec.element(i, of.element).to_vec();
                    let phi = self.schema.segments[rec.segs[i].seg_ix]
                        .elements
                        .get(of.element.wrapping_sub(1))
                        .is_some_and(|e| e.phi);
                    if !v.is_empty() {
                        f = f.with_value(&v, phi);
                    }
                }
                f
            }
        };
        if f.location.line == 0 {
            // Missing segment: point the line at the segment it was expected before.
            if let Some(rs) = self
                .member
                .segs
                .iter()
                .find(|s| s.position >= f.location.segment_position.unwrap_or(0))
            {
                f.location.line = rs.at.line;
                f.location.offset = rs.at.offset;
            }
        }
        if let Some(s) = d.severity {
            f.severity = s;
        }
        f.trigger = trigger;
        out.push(f);
    }
}

/// Byte-string equality for the short codes rules compare, without a `memcmp` call.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// S3: a dependent's REF*0F equals the preceding subscriber's in the same set.
fn same_subscriber_id(member: &Record, state: &mut SetState, out: &mut Vec<Finding>) {
    let (ins, reff) = (KEY_INS, KEY_REF);
    let mut ins01: Option<&[u8]> = None;
    let mut ref0f = None;
    for (i, rs) in member.segs.iter().enumerate() {
        if rs.key == ins && ins01.is_none() {
            ins01 = Some(member.element(i, 1));
        } else if rs.key == reff && ref0f.is_none() && rs.qual == QUAL_0F {
            ref0f = Some((rs.position, rs.at, member.element(i, 2)));
        }
    }
    let Some((position, at, id)) = ref0f else {
        return;
    };
    match ins01 {
        Some(b"Y") => {
            let sid = state.subscriber_id.get_or_insert_with(Vec::new);
            sid.clear();
            sid.extend_from_slice(id);
            state.subscriber_unknown = false;
        }
        Some(b"N") => {
            if state.subscriber_unknown {
                state.needed_unknown = true;
            }
            if let Some(sub) = &state.subscriber_id {
                if sub.as_slice() != id {
                    let mut f = Finding::new(
                        "834-S3",
                        4,
                        Ack::Element("I12"),
                        "a dependent's REF*0F must equal the subscriber identifier of the subscriber before it in the set",
                    );
                    f.location = Location {
                        line: at.line,
                        offset: at.offset,
                        segment_position: Some(position),
                        segment_id: Some("REF".into()),
                        loop_id: Some("2000".into()),
                        element: Some(ElementPos {
                            element: 2,
                            ..Default::default()
                        }),
                        data_element: Some("127".into()),
                        ..Location::default()
                    };
                    out.push(f.with_value(id, true));
                }
            }
        }
        _ => {}
    }
}

const KEY_INS: u64 = crate::schema::pack_const(b"INS");
const KEY_REF: u64 = crate::schema::pack_const(b"REF");
const QUAL_0F: u64 = crate::schema::pack_const(b"0F");

/// B1–B4: QTY control totals against the members in the set.
fn balance_quantities(header: &Record, tally: &Tally, out: &mut Vec<Finding>) {
    let mut sent: Vec<(&'static str, u64)> = Vec::new();
    for (rs, s) in header.iter() {
        if s.id() != b"QTY" {
            continue;
        }
        let (id, expected, what) = match s.element(1) {
            b"TO" => ("834-B1", tally.members, "the number of member loops (INS)"),
            b"ET" => (
                "834-B2",
                tally.subscribers,
                "the number of subscribers (INS01 Y)",
            ),
            b"DT" => (
                "834-B3",
                tally.dependents,
                "the number of dependents (INS01 N)",
            ),
            _ => continue,
        };
        let raw = s.element(2);
        let got: Option<u64> = std::str::from_utf8(raw)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64);
        if let Some(v) = got {
            sent.push((id, v));
        }
        if got != Some(expected) {
            let mut f = Finding::new(
                id,
                3,
                Ack::Element("I12"),
                format!(
                    "QTY*{} says {}; the set holds {expected}: it must equal {what}",
                    String::from_utf8_lossy(s.element(1)),
                    String::from_utf8_lossy(raw)
                ),
            );
            f.location = Location {
                line: rs.at.line,
                offset: rs.at.offset,
                segment_position: Some(rs.position),
                segment_id: Some("QTY".into()),
                element: Some(ElementPos {
                    element: 2,
                    ..Default::default()
                }),
                data_element: Some("380".into()),
                ..Location::default()
            };
            out.push(f.with_value(raw, false));
        }
    }
    let get = |k: &str| sent.iter().find(|(i, _)| *i == k).map(|(_, v)| *v);
    if let (Some(to), Some(et), Some(dt)) = (get("834-B1"), get("834-B2"), get("834-B3")) {
        if to != et + dt {
            let mut f = Finding::new(
                "834-B4",
                3,
                Ack::Report,
                format!("QTY*TO {to} is not QTY*ET {et} + QTY*DT {dt}"),
            );
            f.severity = Severity::Warning;
            out.push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_references() {
        let r = parse_ref("INS03").unwrap();
        assert_eq!(
            (r.segment.as_str(), r.element, r.area),
            ("INS", 3, Area::Scope)
        );
        let r = parse_ref("NM101").unwrap();
        assert_eq!((r.segment.as_str(), r.element), ("NM1", 1));
        let r = parse_ref("N403").unwrap();
        assert_eq!((r.segment.as_str(), r.element), ("N4", 3));
        let r = parse_ref("header.BGN08").unwrap();
        assert_eq!(
            (r.segment.as_str(), r.element, r.area),
            ("BGN", 8, Area::Header)
        );
        let r = parse_ref("member.DTP*357.03").unwrap();
        assert_eq!(
            (
                r.segment.as_str(),
                r.qualifier.as_deref(),
                r.element,
                r.area
            ),
            ("DTP", Some("357"), 3, Area::Member)
        );
    }

    #[test]
    fn embedded_rules_load() {
        let rs = RuleSet::from_json(crate::schema::embedded::X220A1_RULES).unwrap();
        assert!(rs.catalogue().len() >= 10);
    }
}
