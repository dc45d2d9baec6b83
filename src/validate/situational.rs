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
use crate::finding::{Ack, ElementPos, Finding, Location, Severity, Text, Trigger};
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
    /// The loop: its [`RuleSet::loops`] entry.
    Loop(usize),
    /// The segment ID, packed, and the [`Target`] that finds it.
    Segment(String, Option<u64>, usize),
}

/// What rules look segments up by: a packed segment ID and, optionally, the codes an element
/// must hold (element 1, the qualifier, for the lookups rules write; another element for the
/// needs a value test implies, see [`need_of_codes`]). Rules name a few dozen of these; each
/// member's segments are sorted into them once ([`Index`]) rather than every rule scanning the
/// member.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    key: u64,
    /// `None`: any qualifier.
    quals: Option<Vec<Qual>>,
    /// The element `quals` are tested on: 1 (the segment's packed qualifier answers it) or
    /// another (compared by its bytes).
    element: usize,
}

/// A qualifier code, packed when it packs (else only its bytes can match).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Qual {
    bytes: Vec<u8>,
    key: Option<u64>,
}

impl Qual {
    fn new(q: &str) -> Qual {
        Qual::from_bytes(q.as_bytes())
    }

    fn from_bytes(q: &[u8]) -> Qual {
        Qual {
            bytes: q.to_vec(),
            key: crate::schema::pack(q),
        }
    }

    /// Is `v`, whose [`crate::schema::pack`] is `packed`, this code? One integer comparison
    /// when the code packs (codes are a few bytes long): the value is packed once for all the
    /// codes it is compared with.
    #[inline(always)]
    fn is(&self, v: &[u8], packed: Option<u64>) -> bool {
        match self.key {
            Some(k) => packed == Some(k),
            None => short_eq(&self.bytes, v),
        }
    }

    /// Does element `element` of record segment `i` hold this code?
    #[inline]
    fn matches(&self, rec: &Record, i: usize, element: usize) -> bool {
        match self.key {
            Some(k) if element == 1 => rec.segs[i].qual == k,
            _ => rec.element(i, element) == self.bytes.as_slice(),
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
                .is_none_or(|qs| qs.iter().any(|q| q.matches(rec, i, self.element)))
    }

    /// Does record segment `i` hold one of the codes that [`RuleSet::by_key`] lists as
    /// [`UNPACKED_QUAL`] for this target (the segment's ID already matched)?
    /// The element is read once and compared with [`short_eq`]: this runs for every segment
    /// with the target's ID.
    #[inline]
    fn matches_bytes(&self, rec: &Record, i: usize) -> bool {
        let Some(qs) = &self.quals else {
            return false;
        };
        let v = rec.element(i, self.element);
        let by_bytes = self.element != 1;
        qs.iter()
            .any(|q| (by_bytes || q.key.is_none()) && short_eq(&q.bytes, v))
    }
}

/// The codes of the targets that one element of segments with one ID must hold, where they are
/// compared by value rather than by the segment's packed qualifier ([`UNPACKED_QUAL`]): `INS03`
/// is `024`, `025` or `021`, `INS05` is `C`. [`Index::build`] reads and packs the element once
/// for all of them, where testing each target read it again and compared it byte by byte.
#[derive(Debug, Clone)]
struct ByElem {
    key: u64,
    element: usize,
    /// Each code with the target it is one of.
    codes: Vec<(Qual, usize)>,
}

/// The [`ByElem`] groups of `targets`' codes that are matched by bytes: every qualifier of a
/// target on an element other than 1, and those that do not pack of one on element 1.
fn by_elem(targets: &[Target]) -> Vec<ByElem> {
    let mut groups: Vec<ByElem> = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        let Some(qs) = &target.quals else { continue };
        for q in qs {
            if target.element == 1 && q.key.is_some() {
                continue;
            }
            let at = groups
                .iter()
                .position(|g| g.key == target.key && g.element == target.element);
            let g = match at {
                Some(n) => &mut groups[n],
                None => {
                    groups.push(ByElem {
                        key: target.key,
                        element: target.element,
                        codes: Vec::new(),
                    });
                    let last = groups.len() - 1;
                    &mut groups[last]
                }
            };
            g.codes.push((q.clone(), t));
        }
    }
    groups.sort_by_key(|g| (g.key, g.element));
    groups
}

/// [`RuleSet::by_key`]'s qualifier for a target that takes any qualifier, and for one with a
/// qualifier that does not pack or codes on an element other than 1. Packed values end in a byte below 8 and a record's unpacked
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
            element: 1,
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
                    element: 1,
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

/// A loop that rules name, as a scope or in a `loop` condition: its instances are listed once
/// per member ([`Index::loops`]) instead of every rule filtering all instances.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoopRef {
    id: String,
    /// `id` packed; `None` when it does not pack (then it is compared whole).
    key: Option<u64>,
}

impl LoopRef {
    fn matches(&self, l: &crate::schema::Loop) -> bool {
        match self.key {
            Some(k) => l.key == k,
            None => l.id == self.id,
        }
    }
}

/// Registers the loop `id` in `loops` (once) and returns its index.
fn intern_loop(loops: &mut Vec<LoopRef>, id: &str) -> usize {
    let r = LoopRef {
        id: id.to_string(),
        key: crate::schema::pack(id.as_bytes()),
    };
    match loops.iter().position(|x| *x == r) {
        Some(i) => i,
        None => {
            loops.push(r);
            loops.len() - 1
        }
    }
}

/// No segment (in [`Index`] tables).
const NONE: u32 = u32::MAX;

/// An element reference compiled: the record to look in, the [`Target`] to look up, and the
/// element. What [`Ctx::find`] needs, with nothing to parse or compare by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    area: Area,
    target: usize,
    /// The segment ID packed: a segment-scoped rule's own segment answers a scope reference
    /// with the same ID (whatever its qualifier).
    key: u64,
    element: usize,
}

impl Slot {
    fn of(r: &ElementRef) -> Slot {
        Slot {
            area: r.area,
            target: r.target,
            key: r.key,
            element: r.element,
        }
    }
}

/// A list of codes, compared with a value by length and bytes (the codes rules list are a
/// few bytes long, so this beats packing the value first: measured, packing the value for
/// one integer comparison per code cost `check` 4 M more instructions on 10 MB), or with a
/// value packed already (element 1, [`super::record::RecSeg::qual`]) by integers.
#[derive(Debug, Clone, Default)]
struct Codes {
    bytes: Vec<Box<[u8]>>,
    /// The codes that pack, packed: a value that packs is one of the codes when its key is
    /// one of these (a code too long to pack is no such value).
    keys: Vec<u64>,
}

impl Codes {
    fn new<S: AsRef<[u8]>>(codes: &[S]) -> Codes {
        Codes {
            bytes: codes.iter().map(|s| s.as_ref().into()).collect(),
            keys: codes
                .iter()
                .filter_map(|s| crate::schema::pack(s.as_ref()))
                .collect(),
        }
    }

    /// Is `v` one of the codes?
    #[inline]
    fn contains(&self, v: &[u8]) -> bool {
        self.bytes.iter().any(|x| short_eq(x, v))
    }

    /// Is the value whose [`crate::schema::pack`] is `key` one of the codes?
    ///
    /// `any` rather than `contains`: measured, `contains` cost `check` 1.2 M more
    /// instructions on 10 MB.
    #[inline]
    #[allow(clippy::manual_contains)]
    fn contains_key(&self, key: u64) -> bool {
        self.keys.iter().any(|&k| k == key)
    }
}

/// A condition compiled ([`Cond`] with its references resolved to [`Slot`]s, its segment
/// lookups to targets, its loops to [`LoopRef`]s and its code lists to [`Codes`]): evaluating
/// it allocates nothing, compares no strings and hashes nothing.
#[derive(Debug, Clone)]
enum Plan {
    /// `in_`: `None` when the rule lists none (any value passes).
    Value {
        of: Slot,
        in_: Option<Codes>,
        not_in: Codes,
    },
    Present(Slot),
    DateOrder(Slot, Slot),
    Segment(usize),
    Loop {
        slot: usize,
        where_: Option<Box<Plan>>,
    },
    Pattern(Slot, Pattern),
    All(Vec<Plan>),
    Any(Vec<Plan>),
    Not(Box<Plan>),
}

/// Compiles `c` (whose targets are interned), registering its loops in `loops`.
fn compile(c: &Cond, loops: &mut Vec<LoopRef>) -> Plan {
    match c {
        Cond::Value { of, r#in, not_in } => Plan::Value {
            of: Slot::of(of),
            in_: (!r#in.is_empty()).then(|| Codes::new(r#in)),
            not_in: Codes::new(not_in),
        },
        Cond::Present(of) => Plan::Present(Slot::of(of)),
        Cond::DateOrder { earlier, later } => Plan::DateOrder(Slot::of(earlier), Slot::of(later)),
        Cond::Segment { target, .. } => Plan::Segment(*target),
        Cond::Loop { id, r#where, .. } => Plan::Loop {
            slot: intern_loop(loops, id),
            where_: r#where.as_ref().map(|w| Box::new(compile(w, loops))),
        },
        Cond::Pattern { of, is } => Plan::Pattern(Slot::of(of), *is),
        Cond::All(cs) => Plan::All(cs.iter().map(|c| compile(c, loops)).collect()),
        Cond::Any(cs) => Plan::Any(cs.iter().map(|c| compile(c, loops)).collect()),
        Cond::Not(c) => Plan::Not(Box::new(compile(c, loops))),
    }
}

/// A test of one element's value as code lists: the slot, the codes it must be one of (`None`:
/// any) and those it must not be; an absent element's value is empty ([`Ctx::eval`]).
type ValueTest = (Slot, Option<Vec<Box<[u8]>>>, Vec<Box<[u8]>>);

/// `p` as a [`ValueTest`] when it is one: a value test, or a present element (not empty).
fn as_value(p: &Plan) -> Option<ValueTest> {
    match p {
        Plan::Value { of, in_, not_in } => Some((
            *of,
            in_.as_ref().map(|c| c.bytes.clone()),
            not_in.bytes.clone(),
        )),
        Plan::Present(of) => Some((*of, None, vec![Box::from(&b""[..])])),
        _ => None,
    }
}

/// The negation of `v`, when one value test says it.
fn negate(v: ValueTest) -> Option<ValueTest> {
    match v {
        (of, None, not_in) => Some((of, Some(not_in), Vec::new())),
        (of, Some(in_), not_in) if not_in.is_empty() => Some((of, None, in_)),
        _ => None,
    }
}

/// `a` and `b` (`all`) or `a` or `b`, two tests of the same slot, as one test when one says it.
fn merge(a: ValueTest, b: ValueTest, all: bool) -> Option<ValueTest> {
    let union = |mut x: Vec<Box<[u8]>>, y: Vec<Box<[u8]>>| {
        for c in y {
            if !x.contains(&c) {
                x.push(c);
            }
        }
        x
    };
    let meet = |x: Vec<Box<[u8]>>, y: &[Box<[u8]>]| -> Vec<Box<[u8]>> {
        x.into_iter().filter(|c| y.contains(c)).collect()
    };
    match (a, b, all) {
        ((of, x, xn), (_, y, yn), true) => {
            let in_ = match (x, y) {
                (Some(x), Some(y)) => Some(meet(x, &y)),
                (x, y) => x.or(y),
            };
            Some((of, in_, union(xn, yn)))
        }
        ((of, Some(x), xn), (_, Some(y), yn), false) if xn.is_empty() && yn.is_empty() => {
            Some((of, Some(union(x, y)), Vec::new()))
        }
        ((of, None, xn), (_, None, yn), false) => Some((of, None, meet(xn, &yn))),
        _ => None,
    }
}

fn value_plan((of, in_, not_in): ValueTest) -> Plan {
    Plan::Value {
        of,
        in_: in_.map(|c| Codes::new(&c)),
        not_in: Codes::new(&not_in),
    }
}

/// `p` with the tests of one element that an `all`, `any` or `not` combines made one value
/// test (the value of an absent element being empty, `not: present` is the value `""` and
/// `present` any value but `""`): the N4 rules' `any: [not: present N404, N404 in US]` is
/// `N404 in ["", US]`, a leaf [`Ctx::eval`] tests inline where the nest cost a few calls of
/// [`Ctx::eval_rest`] per N4. The tests are pure, so the order they are asked in does not
/// change the answer. For evaluation only: [`needs`] reads the plan as written.
fn simplify(p: Plan) -> Plan {
    match p {
        Plan::Not(q) => {
            let q = simplify(*q);
            match as_value(&q).and_then(negate) {
                Some(v) => value_plan(v),
                None => Plan::Not(Box::new(q)),
            }
        }
        Plan::All(ps) => combine(ps, true),
        Plan::Any(ps) => combine(ps, false),
        Plan::Loop { slot, where_ } => Plan::Loop {
            slot,
            where_: where_.map(|w| Box::new(simplify(*w))),
        },
        p => p,
    }
}

/// [`simplify`] of `all` (or `any`) of `ps`: each value test merged into an earlier one of the
/// same slot when [`merge`] can; one test left is the test itself.
fn combine(ps: Vec<Plan>, all: bool) -> Plan {
    let mut out: Vec<Plan> = Vec::new();
    for p in ps.into_iter().map(simplify) {
        let merged = as_value(&p).and_then(|v| {
            out.iter().enumerate().find_map(|(k, q)| {
                let w = as_value(q).filter(|w| w.0 == v.0)?;
                merge(w, v.clone(), all).map(|m| (k, m))
            })
        });
        match merged {
            Some((k, m)) => out[k] = value_plan(m),
            None => out.push(p),
        }
    }
    match (out.len(), all) {
        (1, _) => out.pop().unwrap_or(Plan::All(Vec::new())),
        (_, true) => Plan::All(out),
        (_, false) => Plan::Any(out),
    }
}

/// A segment a rule cannot fire without: when a member has none that `target` matches (in
/// the header, for `header`), the rule is skipped for the whole member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Need {
    header: bool,
    target: usize,
}

/// The [`Need`] a value of `s` implies: none when a segment-scoped rule's own segment (packed
/// ID `own`) may answer the reference whatever the targets say.
fn need_of(s: &Slot, own: Option<u64>) -> Vec<Need> {
    if s.area == Area::Scope && own.is_some_and(|k| k == s.key) {
        return Vec::new();
    }
    vec![Need {
        header: s.area == Area::Header,
        target: s.target,
    }]
}

/// What a value test that only the codes `codes` pass (or that only they fail) needs: the
/// segment of `s`, and, when `s` reads an element of a segment looked up by ID alone, a segment
/// with that ID whose element holds one of the codes (a [`Target`] interned for it, so the
/// member's index answers it with one table read). The value is that element of a segment with
/// that ID: the member (or header) holds such a segment whenever the test passes (fails). Rules keyed on a qualifier (`INS01`
/// is `Y`, `HD01` is `024`) or on another code (`INS03` is `024`, `INS05` is `C`) are so
/// skipped for the members without one.
fn need_of_codes(
    s: &Slot,
    own: Option<u64>,
    codes: &Codes,
    targets: &mut Vec<Target>,
) -> Vec<Need> {
    let mut v = need_of(s, own);
    // Not for the header's elements other than 1: a condition on the header alone is
    // evaluated once per member already, and every header target costs a scan of the header
    // per member.
    let header_other = s.area == Area::Header && s.element != 1;
    if v.is_empty() || s.element == 0 || header_other || targets[s.target].quals.is_some() {
        return v;
    }
    let quals = codes.bytes.iter().map(|c| Qual::from_bytes(c)).collect();
    let target = intern(
        targets,
        Target {
            key: s.key,
            quals: Some(quals),
            element: s.element,
        },
    );
    v.push(Need {
        header: s.area == Area::Header,
        target,
    });
    v
}

/// Adds the needs `add` to `v`, once each.
fn add_needs(v: &mut Vec<Need>, add: Vec<Need>) {
    for n in add {
        if !v.contains(&n) {
            v.push(n);
        }
    }
}

/// The segments that must be present for `p` to evaluate to `truth` (a necessary condition,
/// not a sufficient one: an empty list says nothing). A missing element's value is empty, so a
/// value test needs its segment only when the empty value fails it. Qualified lookups the
/// needs call for are interned in `targets`.
fn needs(p: &Plan, truth: bool, own: Option<u64>, targets: &mut Vec<Target>) -> Vec<Need> {
    match (p, truth) {
        (Plan::Value { of, in_, .. }, true) => match in_ {
            Some(c) if !c.contains(b"") => need_of_codes(of, own, c, targets),
            _ => Vec::new(),
        },
        // With no codes it must be one of, a value fails only by being one of `not_in`: the
        // segment holding it is there (`INS03` must not be `030` needs an `INS` whose INS03
        // is `030`). Rules that forbid a code are so skipped for the members without it.
        (
            Plan::Value {
                of,
                in_: None,
                not_in,
            },
            false,
        ) if !not_in.contains(b"") => need_of_codes(of, own, not_in, targets),
        (Plan::Present(of), true) => need_of(of, own),
        (Plan::DateOrder(a, b), false) => {
            let mut v = need_of(a, own);
            add_needs(&mut v, need_of(b, own));
            v
        }
        (Plan::Segment(t), true) => vec![Need {
            header: false,
            target: *t,
        }],
        // The condition is evaluated in each instance, without a segment of its own.
        (
            Plan::Loop {
                where_: Some(w), ..
            },
            true,
        ) => needs(w, true, None, targets),
        (Plan::Pattern(of, _), false) => need_of(of, own),
        // Every part must hold: what any of them needs.
        (Plan::All(ps), true) | (Plan::Any(ps), false) => {
            let mut v = Vec::new();
            for p in ps {
                let n = needs(p, truth, own, targets);
                add_needs(&mut v, n);
            }
            v
        }
        // One part is enough: what all of them need.
        (Plan::Any(ps), true) | (Plan::All(ps), false) => {
            let mut all = Vec::new();
            for p in ps {
                all.push(needs(p, truth, own, targets));
            }
            let mut all = all.into_iter();
            let first = all.next().unwrap_or_default();
            all.fold(first, |acc, n| {
                acc.into_iter().filter(|x| n.contains(x)).collect()
            })
        }
        (Plan::Not(q), t) => needs(q, !t, own, targets),
        _ => Vec::new(),
    }
}

/// `need` without the needs that another one implies: a segment with an ID is present when
/// one with that ID and a given qualifier is.
fn drop_implied(need: &mut Vec<Need>, targets: &[Target]) {
    let all = need.clone();
    need.retain(|n| {
        let t = &targets[n.target];
        t.quals.is_some()
            || !all.iter().any(|m| {
                m.header == n.header
                    && targets[m.target].key == t.key
                    && targets[m.target].quals.is_some()
            })
    });
}

/// True when `p` reads nothing but the set header: its value is the same for every scope.
fn header_only(p: &Plan) -> bool {
    match p {
        Plan::Value { of, .. } | Plan::Present(of) | Plan::Pattern(of, _) => {
            of.area == Area::Header
        }
        Plan::DateOrder(a, b) => a.area == Area::Header && b.area == Area::Header,
        Plan::Segment(_) | Plan::Loop { .. } => false,
        Plan::All(ps) | Plan::Any(ps) => ps.iter().all(header_only),
        Plan::Not(p) => header_only(p),
    }
}

/// One rule compiled.
#[derive(Debug)]
struct RulePlan {
    /// Segments the rule cannot fire without ([`needs`] of `when` true and `require` false).
    need: Vec<Need>,
    /// The member part of `need` as a mask of targets (bit `t` for target `t`), tested against
    /// [`Index::present`] with one AND; `None` when a needed target is numbered 64 or more
    /// (then the list is walked).
    member_need: Option<u64>,
    /// `when` reads only the header: evaluated once per member, not once per scope.
    when_header: bool,
    when: Option<Plan>,
    require: Plan,
    /// The trigger element, and the element a [`Report::Element`] names.
    trigger: Option<Slot>,
    of: Option<Slot>,
}

/// Entries of [`Index::masks`] (a power of two).
const MASKS: usize = 128;

/// Entries of [`Index::shapes`] (a power of two).
const SHAPES: usize = 32;

/// One record's segments sorted into the rule set's [`Target`]s, and its loop instances into
/// the rule set's [`LoopRef`]s: built once per member (and once per set for the header), so
/// that every lookup a rule makes is one table read.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// The number of targets (the width of [`Index::first_in`]'s rows).
    width: usize,
    /// For each target, the record index of the first segment it matches, or [`NONE`]. In a
    /// member's index with at most 64 targets, only for [`RuleSet::first_read`]'s (the others
    /// are [`NONE`]; [`Index::present`] says whether they match): most lookups are within an
    /// instance ([`Index::first_in`]), and each target met first cost a write here.
    first: Vec<u32>,
    /// Per loop instance of the record (row `n` for instance `n`), per target: the first of
    /// the instance's own segments it matches. Every instance has its row, also those of loops
    /// no rule names (a few in a hundred): a segment's row is its instance, with no table
    /// from instances to rows to fill per member and read per segment.
    first_in: Vec<u32>,
    /// For each target that a `header.` reference looks up, the first header segment it
    /// matches ([`NONE`] elsewhere).
    head: Vec<u32>,
    /// For each of [`RuleSet::header_dates`], `(target, element, date)`: the first eight bytes
    /// of that header element, `None` when the segment is absent or the element shorter, as
    /// [`Ctx::eval_dates`] reads it. Computed with `head`: the DMG rule compares BGN03 with
    /// every member's birth date (24,464 times in the 10 MB file), and the header's side is the
    /// same for all of a set's members.
    head_dates: Vec<(usize, usize, Option<[u8; 8]>)>,
    /// For each rule: may it fire as far as the header alone can tell (the header segments it
    /// needs are there, and its header-only `when` holds)? Read for every member, computed
    /// with `head` only when the header has changed ([`Index::head_for`]).
    head_fire: Vec<bool>,
    /// The header `head` and `head_fire` were computed for: its number of segments and where
    /// they are stored. A set's header only grows (segments are appended, never changed), and
    /// is complete before its first member, so they are computed once per set rather than
    /// once per member; a header of another length, or another record (a copy of the
    /// validator), computes them again.
    head_for: Option<(usize, usize)>,
    /// For each [`RuleSet::loops`] entry, the record's instances of that loop, in order.
    loops: Vec<Vec<u32>>,
    /// For each [`RuleSet::seg_scopes`] entry, the record's segments of that ID, in order.
    seg_scopes: Vec<Vec<u32>>,
    /// Bit `t` is set when target `t` (of the first 64) matches a segment of the record: the
    /// member needs of every rule tested with one AND ([`RulePlan::member_need`]).
    present: u64,
    /// The rules that may fire in some member as far as the header can tell (not header-scoped,
    /// `head_fire`), in rule order, each with its [`RulePlan::member_need`]: computed with
    /// `head_fire`, so that a member walks only these and tests each one's needs with a mask.
    live: Vec<(u32, Option<u64>)>,
    /// The union of the `live` rules' [`RulePlan::member_need`] masks: the targets whose
    /// presence decides which of them may fire. A member's shape is `present` less the other
    /// targets, which only split one shape into many (a DTP or a PLA no need names), each
    /// filled on its first use and evicting the others from the direct-mapped table.
    live_need: u64,
    /// The `live` rules whose member needs a member of a given shape ([`Index::present`] and
    /// [`Index::live_need`]) holds: a direct-mapped table of [`SHAPES`] entries
    /// `(shape, rules)`, filled on first
    /// use and emptied whenever `live` changes ([`Index::may_fire`]). Members are of a few
    /// shapes (a subscriber with coverage, a dependent, a termination), so most of them walk a
    /// list of the rules that may fire instead of testing every live rule's needs.
    shapes: Vec<(Option<u64>, Vec<u32>)>,
    /// For each schema segment, its packed ID and the ranges of [`RuleSet::by_key`] and
    /// [`RuleSet::by_elem`] entries for that ID: looked up once per set rather than once per
    /// recorded segment (a recorded segment whose ID differs from its schema segment's is
    /// looked up itself).
    slots: Vec<(u64, u32, u32, u32, u32)>,
    /// The targets a schema segment's recorded segments match by packed qualifier or any
    /// qualifier, as a mask, for the pairs (schema segment, qualifier) met so far: a
    /// direct-mapped table of [`MASKS`] entries `(schema segment + 1, qualifier, mask)`, used
    /// when the rules have at most 64 targets. A set meets a few dozen pairs (`DTP*348` in
    /// 2300, `REF*0F` in 2000), so one hash and one comparison replace the scan of the
    /// segment's `by_key` entries (18 for a DTP). Small (3 KiB) and filled on first use: a
    /// fresh index is made for every set (twice: members and header).
    masks: Vec<(u32, u64, u64)>,
    /// For each schema loop, the [`RuleSet::loops`] entry it is, or [`NONE`] (the entries
    /// have distinct IDs, so a loop is at most one of them).
    loop_slots: Vec<u32>,
}

impl Index {
    /// This index for the next set checked against the same rules and schema: it keeps the
    /// tables that depend on nothing else (the schema segments' `by_key` ranges, the loop
    /// slots, the qualifier mask table) and its buffers, and forgets what it knew of a
    /// header. A fresh index per set rebuilt those tables (a few thousand instructions and a
    /// dozen allocations), which a file of many small sets paid for every set, twice. The
    /// header must be forgotten: a new set's header may have the length and the storage of
    /// the last one's, which is all [`Index::head_for`] compares.
    pub fn for_next_set(mut self) -> Index {
        self.forget_header();
        self
    }

    fn forget_header(&mut self) {
        self.head_for = None;
        self.head.clear();
        self.head_fire.clear();
        self.live.clear();
        self.live_need = 0;
        self.shapes.clear();
    }

    /// The entry of [`Index::shapes`] that lists the `live` rules this member may fire in,
    /// as far as its needs as a mask tell: a rule whose needs the mask does not cover
    /// ([`RulePlan::member_need`] `None`) is listed, and its needs are tested by the caller.
    fn may_fire(&mut self) -> usize {
        if self.shapes.len() != SHAPES {
            self.shapes.clear();
            self.shapes.resize_with(SHAPES, Default::default);
        }
        let present = self.present & self.live_need;
        let h = (present.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize & (SHAPES - 1);
        let (shape, rules) = &mut self.shapes[h];
        if *shape != Some(present) {
            *shape = Some(present);
            rules.clear();
            rules.extend(
                self.live
                    .iter()
                    .filter(|(_, need)| need.is_none_or(|m| present & m == m))
                    .map(|&(r, _)| r),
            );
        }
        h
    }

    /// Sorts `rec`'s segments into the tables. A `member` index fills [`Index::first`] only
    /// for the targets its rules read there ([`RuleSet::first_read`]) when the rules have at
    /// most 64 targets; the header's (for the header rules) fills it whole.
    fn build(
        &mut self,
        rules: &RuleSet,
        schema: &Schema,
        header: &Record,
        rec: &Record,
        member: bool,
    ) {
        let by_key = rules.by_key.as_slice();
        let range = |key: u64| {
            let lo = by_key.partition_point(|e| e.0 < key);
            (lo, lo + by_key[lo..].partition_point(|e| e.0 == key))
        };
        if self.slots.len() != schema.segments.len() || self.loop_slots.len() != schema.loops.len()
        {
            let by_elem = rules.by_elem.as_slice();
            self.slots.clear();
            self.slots.extend(schema.segments.iter().map(|d| {
                let (lo, hi) = range(d.key);
                let elo = by_elem.partition_point(|g| g.key < d.key);
                let ehi = elo + by_elem[elo..].partition_point(|g| g.key == d.key);
                (d.key, lo as u32, hi as u32, elo as u32, ehi as u32)
            }));
            self.masks.clear();
            self.loop_slots.clear();
            self.loop_slots.extend(schema.loops.iter().map(|l| {
                (0..rules.loops.len() as u32)
                    .find(|&s| rules.loops[s as usize].matches(l))
                    .unwrap_or(NONE)
            }));
        }
        let width = rules.targets.len();
        self.width = width;
        let narrow = width <= 64;
        let firsts = if member { rules.first_read } else { u64::MAX };
        if narrow && self.masks.is_empty() {
            self.masks.resize(MASKS, (0, 0, 0));
        }
        self.first.clear();
        self.first.resize(width, NONE);
        self.loops.resize_with(rules.loops.len(), Vec::new);
        self.loops.iter_mut().for_each(Vec::clear);
        self.seg_scopes
            .resize_with(rules.seg_scopes.len(), Vec::new);
        self.seg_scopes.iter_mut().for_each(Vec::clear);
        self.present = 0;
        for (n, inst) in rec.instances.iter().enumerate() {
            let s = self.loop_slots.get(inst.loop_ix).copied().unwrap_or(NONE);
            if let Some(l) = self.loops.get_mut(s as usize) {
                l.push(n as u32);
            }
        }
        self.first_in.clear();
        self.first_in.resize(rec.instances.len() * width, NONE);
        // The tables written for every segment, borrowed apart from `self` once: written
        // through `self`, each hit reloaded them and stored `present` again.
        let Index {
            first,
            first_in,
            seg_scopes,
            slots,
            masks,
            ..
        } = self;
        let mut present = 0u64;
        let masks: Option<&mut [(u32, u64, u64); MASKS]> = masks.as_mut_slice().try_into().ok();
        let mut masks = masks.filter(|_| narrow);
        for (i, rs) in rec.segs.iter().enumerate() {
            let memo = match slots.get(rs.seg_ix) {
                Some(&(key, lo, hi, elo, ehi)) if key == rs.key => {
                    if lo == hi {
                        continue;
                    }
                    masks.as_deref_mut().map(|m| (m, lo, hi, elo, ehi))
                }
                _ => None,
            };
            let Some((masks, lo, hi, elo, ehi)) = memo else {
                let (lo, hi) = range(rs.key);
                if lo == hi {
                    continue;
                }
                for &(_, q, t) in &by_key[lo..hi] {
                    let hit = q == rs.qual
                        || q == ANY_QUAL
                        || (q == UNPACKED_QUAL && rules.targets[t].matches_bytes(rec, i));
                    if hit {
                        Self::hit(
                            rules,
                            (first, first_in, seg_scopes, &mut present),
                            width,
                            i,
                            rs.instance,
                            t,
                        );
                    }
                }
                continue;
            };
            let slot = rs.seg_ix as u32 + 1;
            let h = ((rs.qual ^ u64::from(slot)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56)
                as usize
                & (MASKS - 1);
            let e = &mut masks[h];
            if e.0 != slot || e.1 != rs.qual {
                let mask = by_key[lo as usize..hi as usize]
                    .iter()
                    .filter(|&&(_, q, _)| q == rs.qual || q == ANY_QUAL)
                    .fold(0, |acc, &(_, _, t)| acc | 1 << t);
                *e = (slot, rs.qual, mask);
            }
            let mut hits = e.2;
            // The targets matched by an element's value ([`UNPACKED_QUAL`]): each element
            // read and packed once.
            if elo != ehi {
                for g in rules
                    .by_elem
                    .get(elo as usize..ehi as usize)
                    .unwrap_or_default()
                {
                    let v = rec.element(i, g.element);
                    let packed = crate::schema::pack(v);
                    for (q, t) in &g.codes {
                        if q.is(v, packed) {
                            hits |= 1 << t;
                        }
                    }
                }
            }
            if hits == 0 {
                continue;
            }
            // Narrow: every target is below 64, so `present` says which have a first segment
            // (and `first` holds it for the targets read there).
            let mut new = hits & !present & firsts;
            present |= hits;
            while new != 0 {
                let t = new.trailing_zeros() as usize;
                new &= new - 1;
                if let Some(f) = first.get_mut(t) {
                    *f = i as u32;
                }
            }
            // A segment outside every instance (the header's) has no row: the range is past
            // the table's end (saturating, so that it stays so where `usize` is 32 bits).
            let base = (rs.instance as usize).saturating_mul(width);
            if let Some(cells) = first_in.get_mut(base..base.saturating_add(width)) {
                let mut each = hits;
                while each != 0 {
                    let t = each.trailing_zeros() as usize;
                    each &= each - 1;
                    if let Some(c) = cells.get_mut(t) {
                        if *c == NONE {
                            *c = i as u32;
                        }
                    }
                }
            }
            let mut scoped = hits & rules.seg_scope_mask;
            while scoped != 0 {
                let t = scoped.trailing_zeros() as usize;
                scoped &= scoped - 1;
                if let Some(&s) = rules.seg_scope_of.get(t) {
                    if let Some(v) = seg_scopes.get_mut(s as usize) {
                        v.push(i as u32);
                    }
                }
            }
        }
        self.present = present;
        let key = (header.segs.len(), header.segs.as_ptr() as usize);
        if self.head_for != Some(key) || self.head.len() != width {
            self.head.clear();
            self.head.resize(width, NONE);
            for &t in &rules.header_targets {
                let target = &rules.targets[t];
                self.head[t] = (0..header.segs.len())
                    .find(|&i| target.matches(header, i))
                    .map_or(NONE, |i| i as u32);
            }
            self.head_dates.clear();
            for &(t, element) in &rules.header_dates {
                let date = (self.head[t] != NONE)
                    .then(|| header.element(self.head[t] as usize, element))
                    .and_then(|v| v.first_chunk::<8>().copied());
                self.head_dates.push((t, element, date));
            }
            self.head_for = Some(key);
            // Computed by the caller, with `head` ([`RuleSet::header_fire`]).
            self.head_fire.clear();
        }
    }

    /// Record segment `i`, in instance `row` (its row of `first_in`), matches target `t`: the
    /// general case (a segment whose schema segment has another ID, or more than 64 targets),
    /// for the tables [`Index::build`] borrows.
    #[inline]
    fn hit(
        rules: &RuleSet,
        (first, first_in, seg_scopes, present): (&mut [u32], &mut [u32], &mut [Vec<u32>], &mut u64),
        width: usize,
        i: usize,
        row: u32,
        t: usize,
    ) {
        if first[t] == NONE {
            first[t] = i as u32;
            if t < 64 {
                *present |= 1 << t;
            }
        }
        if let Some(c) = first_in.get_mut((row as usize).saturating_mul(width).saturating_add(t)) {
            if *c == NONE {
                *c = i as u32;
            }
        }
        if let Some(&s) = rules.seg_scope_of.get(t) {
            if s != NONE {
                seg_scopes[s as usize].push(i as u32);
            }
        }
    }

    /// The first of instance `inst`'s own segments that target `t` matches.
    #[inline(always)]
    fn in_instance(&self, inst: u32, t: usize) -> u32 {
        self.first_in
            .get((inst as usize).saturating_mul(self.width).saturating_add(t))
            .copied()
            .unwrap_or(NONE)
    }
}

#[derive(Debug)]
struct Rule {
    id: &'static str,
    def: RuleDef,
    scope: Scope,
    ack_code: &'static str,
    plan: RulePlan,
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
    /// The [`UNPACKED_QUAL`] entries of `by_key` grouped by segment ID and element, sorted by
    /// ID ([`ByElem`]).
    by_elem: Vec<ByElem>,
    /// Every loop the rules name (scopes and `loop` conditions).
    loops: Vec<LoopRef>,
    /// The targets of segment scopes (`segment:N4`), whose segments [`Index::seg_scopes`]
    /// lists; `seg_scope_of` maps a target to its entry here, or [`NONE`].
    seg_scopes: Vec<usize>,
    seg_scope_of: Vec<u32>,
    /// The targets below 64 that `seg_scope_of` maps to an entry, as a mask: a segment's
    /// targets are tested against it at once rather than one by one.
    seg_scope_mask: u64,
    /// The targets that `header.` references look up ([`Index::head`]).
    header_targets: Vec<usize>,
    /// The `header.` elements that date orders compare, `(target, element)`: read once per
    /// header ([`Index::head_dates`]).
    header_dates: Vec<(usize, usize)>,
    /// The targets below 64 whose [`Index::first`] a member's rules may read: those of
    /// `member.` references, and every target of a rule not scoped to a loop (its lookups are
    /// not within an instance). A loop-scoped rule looks its scope's segments up in
    /// [`Index::first_in`], so most targets (an HD, a DTP of 2300) are never read in `first`,
    /// and a member's index does not write them there ([`Index::build`]).
    first_read: u64,
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

/// Calls `f` with every target `p` looks up and the area it is looked up in (`None` for a
/// segment test, which looks in the scope).
fn plan_targets(p: &Plan, f: &mut impl FnMut(Option<Area>, usize)) {
    match p {
        Plan::Value { of, .. } | Plan::Present(of) | Plan::Pattern(of, _) => {
            f(Some(of.area), of.target)
        }
        Plan::DateOrder(a, b) => {
            f(Some(a.area), a.target);
            f(Some(b.area), b.target);
        }
        Plan::Segment(t) => f(None, *t),
        Plan::Loop { where_, .. } => {
            if let Some(w) = where_ {
                plan_targets(w, f);
            }
        }
        Plan::All(ps) | Plan::Any(ps) => ps.iter().for_each(|p| plan_targets(p, f)),
        Plan::Not(p) => plan_targets(p, f),
    }
}

/// Adds the `(target, element)` of the `header.` references that date orders in `p` compare
/// to `out`.
fn header_dates(p: &Plan, out: &mut Vec<(usize, usize)>) {
    match p {
        Plan::DateOrder(a, b) => {
            for s in [a, b] {
                if s.area == Area::Header && !out.contains(&(s.target, s.element)) {
                    out.push((s.target, s.element));
                }
            }
        }
        Plan::Loop { where_, .. } => {
            if let Some(w) = where_ {
                header_dates(w, out);
            }
        }
        Plan::All(ps) | Plan::Any(ps) => ps.iter().for_each(|p| header_dates(p, out)),
        Plan::Not(p) => header_dates(p, out),
        Plan::Value { .. } | Plan::Present(_) | Plan::Pattern(..) | Plan::Segment(_) => {}
    }
}

/// Adds the targets of `header.` references in `p` to `out`.
fn header_targets(p: &Plan, out: &mut Vec<usize>) {
    let mut add = |s: &Slot| {
        if s.area == Area::Header && !out.contains(&s.target) {
            out.push(s.target);
        }
    };
    match p {
        Plan::Value { of, .. } | Plan::Present(of) | Plan::Pattern(of, _) => add(of),
        Plan::DateOrder(a, b) => {
            add(a);
            add(b);
        }
        Plan::Segment(_) => {}
        Plan::Loop { where_, .. } => {
            if let Some(w) = where_ {
                header_targets(w, out);
            }
        }
        Plan::All(ps) | Plan::Any(ps) => ps.iter().for_each(|p| header_targets(p, out)),
        Plan::Not(p) => header_targets(p, out),
    }
}

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
        let mut loops = Vec::new();
        let mut seg_scopes: Vec<usize> = Vec::new();
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
                            element: 1,
                        },
                    );
                    if key.is_some() && !seg_scopes.contains(&target) {
                        seg_scopes.push(target);
                    }
                    Scope::Segment(id.to_string(), key, target)
                }
                s => Scope::Loop(intern_loop(&mut loops, s)),
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
            let when = def.when.as_ref().map(|w| compile(w, &mut loops));
            let require = compile(&def.require, &mut loops);
            let own = match &scope {
                Scope::Segment(_, key, _) => Some(key.unwrap_or(u64::MAX)),
                _ => None,
            };
            let mut need = match &when {
                Some(w) => needs(w, true, own, &mut targets),
                None => Vec::new(),
            };
            let also = needs(&require, false, own, &mut targets);
            add_needs(&mut need, also);
            if let Scope::Segment(_, Some(_), target) = scope {
                // The rule applies at each segment with its ID, which its target lists: a
                // member without one has no scope for it (N4, DMG: most members).
                add_needs(
                    &mut need,
                    vec![Need {
                        header: false,
                        target,
                    }],
                );
            }
            drop_implied(&mut need, &targets);
            if matches!(scope, Scope::Segment(_, None, _)) {
                // An ID that does not pack: its segments' keys are not their own.
                need.clear();
            }
            let member_need = need
                .iter()
                .filter(|n| !n.header)
                .try_fold(0u64, |m, n| (n.target < 64).then(|| m | 1 << n.target));
            let plan = RulePlan {
                need,
                member_need,
                when_header: when.as_ref().is_some_and(header_only),
                when: when.map(simplify),
                require: simplify(require),
                trigger: def.trigger.as_ref().map(Slot::of),
                of: match &def.report {
                    Report::Element { of, .. } => Some(Slot::of(of)),
                    Report::MissingSegment { .. } => None,
                },
            };
            // Rule ids are few and live as long as the process: leaking them gives the
            // `&'static str` ids that findings carry.
            let id: &'static str = Box::leak(def.id.clone().into_boxed_str());
            rules.push(Rule {
                id,
                def,
                scope,
                ack_code,
                plan,
            });
        }
        let mut by_key: Vec<(u64, u64, usize)> = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            match &t.quals {
                None => by_key.push((t.key, ANY_QUAL, i)),
                Some(qs) => {
                    for q in qs {
                        let q = match q.key {
                            Some(k) if t.element == 1 => k,
                            _ => UNPACKED_QUAL,
                        };
                        by_key.push((t.key, q, i));
                    }
                }
            }
        }
        by_key.sort_unstable();
        by_key.dedup();
        let by_elem = by_elem(&targets);
        let mut seg_scope_of = vec![NONE; targets.len()];
        for (n, &t) in seg_scopes.iter().enumerate() {
            seg_scope_of[t] = n as u32;
        }
        let seg_scope_mask = seg_scopes
            .iter()
            .filter(|&&t| t < 64)
            .fold(0u64, |m, &t| m | 1 << t);
        let mut head = Vec::new();
        for r in &rules {
            let p = &r.plan;
            if let Some(w) = &p.when {
                header_targets(w, &mut head);
            }
            header_targets(&p.require, &mut head);
            for n in &p.need {
                if n.header && !head.contains(&n.target) {
                    head.push(n.target);
                }
            }
            for s in p.trigger.iter().chain(&p.of) {
                if s.area == Area::Header && !head.contains(&s.target) {
                    head.push(s.target);
                }
            }
        }
        let mut dates = Vec::new();
        for r in &rules {
            if let Some(w) = &r.plan.when {
                header_dates(w, &mut dates);
            }
            header_dates(&r.plan.require, &mut dates);
        }
        let mut first_read = 0u64;
        for r in &rules {
            let in_loop = matches!(r.scope, Scope::Loop(_));
            let mut add = |area: Option<Area>, t: usize| {
                let read = match area {
                    Some(Area::Member) => true,
                    Some(Area::Header) => false,
                    Some(Area::Scope) | None => !in_loop,
                };
                if read && t < 64 {
                    first_read |= 1 << t;
                }
            };
            let p = &r.plan;
            if let Some(w) = &p.when {
                plan_targets(w, &mut add);
            }
            plan_targets(&p.require, &mut add);
            for s in p.trigger.iter().chain(&p.of) {
                add(Some(s.area), s.target);
            }
        }
        Ok(RuleSet {
            rules,
            targets,
            by_key,
            by_elem,
            loops,
            seg_scopes,
            seg_scope_of,
            seg_scope_mask,
            header_targets: head,
            header_dates: dates,
            first_read,
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
        state.index.build(self, schema, header, member, true);
        if state.index.head_fire.len() != self.rules.len() {
            self.header_fire(schema, header, &mut state.index);
        }
        let shape = state.index.may_fire();
        let index = &state.index;
        let ctx = Ctx {
            schema,
            header,
            member,
            index,
            closing_position,
        };
        for &r in &index.shapes[shape].1 {
            let rule = &self.rules[r as usize];
            if rule.plan.member_need.is_none() && !ctx.member_may_fire(rule) {
                continue;
            }
            match &rule.scope {
                Scope::Header => {}
                Scope::Loop(n) => {
                    for &inst in &index.loops[*n] {
                        ctx.apply(rule, Some(inst), None, out);
                    }
                }
                Scope::Segment(_, Some(_), target) => {
                    let s = self.seg_scope_of[*target] as usize;
                    for &i in &index.seg_scopes[s] {
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
        if self.enrollment {
            same_subscriber_id(member, state, out);
        }
    }

    /// Fills `index.head_fire` ([`Ctx::header_may_fire`] of every rule) from its header
    /// lookups, and `index.live` from it.
    fn header_fire(&self, schema: &Schema, header: &Record, index: &mut Index) {
        let mut fire = std::mem::take(&mut index.head_fire);
        fire.clear();
        let ctx = Ctx {
            schema,
            header,
            // Header-only conditions read nothing of the member.
            member: header,
            index,
            closing_position: 0,
        };
        fire.extend(self.rules.iter().map(|r| ctx.header_may_fire(r)));
        index.live.clear();
        index.shapes.clear();
        index.live_need = 0;
        for (n, (rule, &head_fire)) in self.rules.iter().zip(&fire).enumerate() {
            if !matches!(rule.scope, Scope::Header) && head_fire {
                index.live.push((n as u32, rule.plan.member_need));
                index.live_need |= rule.plan.member_need.unwrap_or(0);
            }
        }
        index.head_fire = fire;
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
        self.check_set_with(schema, header, tally, closing_position, &mut index, out);
    }

    /// [`RuleSet::check_set`] with an index kept from set to set ([`Index::for_next_set`]):
    /// only a fresh one's tables are built again.
    pub fn check_set_with(
        &self,
        schema: &Schema,
        header: &Record,
        tally: &Tally,
        closing_position: u32,
        index: &mut Index,
        out: &mut Vec<Finding>,
    ) {
        index.forget_header();
        index.build(self, schema, header, header, false);
        let index = &*index;
        let ctx = Ctx {
            schema,
            header,
            member: header,
            index,
            closing_position,
        };
        for rule in self
            .rules
            .iter()
            .filter(|r| matches!(r.scope, Scope::Header))
        {
            if ctx.may_fire(rule) {
                ctx.apply(rule, None, None, out);
            }
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

impl SetState {
    /// The state a set starts in, with `index` kept from an earlier set checked against the
    /// same rules ([`Index::for_next_set`]).
    pub fn with_index(index: Index) -> SetState {
        SetState {
            index: index.for_next_set(),
            ..SetState::default()
        }
    }

    /// Takes the member index (for the next set's [`SetState::with_index`]).
    pub fn take_index(&mut self) -> Index {
        std::mem::take(&mut self.index)
    }

    /// Exchanges the member index with `other` (another copy's, kept for its tables): the
    /// index taken in forgets the header it was computed for, which may be another set's.
    pub fn swap_index(&mut self, other: &mut Index) {
        std::mem::swap(&mut self.index, other);
        self.index.forget_header();
    }
}

struct Ctx<'a> {
    schema: &'a Schema,
    header: &'a Record,
    member: &'a Record,
    /// `member`'s index (and the header lookups).
    index: &'a Index,
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
    /// target matches; a segment-scoped rule's own segment for a scope reference to its ID.
    #[inline(always)]
    fn find(&self, s: &Slot, scope: Option<u32>, seg: Option<usize>) -> Option<usize> {
        let i = match s.area {
            Area::Scope => {
                if let Some(i) = seg {
                    if self.member.segs[i].key == s.key {
                        return Some(i);
                    }
                }
                match scope {
                    Some(inst) => self.index.in_instance(inst, s.target),
                    None => self.index.first[s.target],
                }
            }
            Area::Member => self.index.first[s.target],
            Area::Header => self.index.head[s.target],
        };
        (i != NONE).then_some(i as usize)
    }

    #[inline(always)]
    fn value(&self, s: &Slot, scope: Option<u32>, seg: Option<usize>) -> Option<&[u8]> {
        let i = self.find(s, scope, seg)?;
        Some(self.record(s.area).element(i, s.element))
    }

    /// Evaluates `p`. The leaf tests that most `when`s and `require`s are (a value, a present
    /// element, a segment) inline, where they are asked; the rest out of line
    /// ([`Ctx::eval_rest`]). A call per test, with the frame the whole evaluator needs, cost
    /// about as much as the test itself.
    #[inline(always)]
    fn eval(&self, p: &Plan, scope: Option<u32>, seg: Option<usize>) -> bool {
        match p {
            Plan::Value { of, in_, not_in } => {
                let at = self.find(of, scope, seg);
                if let Some(i) = at.filter(|_| of.element == 1) {
                    // Element 1 is packed in the segment's entry when it packs (u64::MAX when
                    // not): the codes are compared with it without reading the element.
                    let key = self.record(of.area).segs[i].qual;
                    if key != u64::MAX {
                        return in_.as_ref().is_none_or(|c| c.contains_key(key))
                            && !not_in.contains_key(key);
                    }
                }
                let v = at.map_or(&b""[..], |i| self.record(of.area).element(i, of.element));
                in_.as_ref().is_none_or(|c| c.contains(v)) && !not_in.contains(v)
            }
            Plan::Present(of) => self.value(of, scope, seg).is_some_and(|v| !v.is_empty()),
            Plan::Segment(t) => match scope {
                Some(inst) => self.index.in_instance(inst, *t) != NONE,
                None => self.index.first[*t] != NONE,
            },
            _ => self.eval_rest(p, scope, seg),
        }
    }

    /// [`Ctx::eval`] of the tests that are not leaves, and of the rarer leaves.
    #[inline(never)]
    fn eval_rest(&self, p: &Plan, scope: Option<u32>, seg: Option<usize>) -> bool {
        match p {
            Plan::Value { .. } | Plan::Present(_) | Plan::Segment(_) => self.eval(p, scope, seg),
            Plan::Loop { slot, where_ } => self.eval_loop(*slot, where_.as_deref(), scope),
            Plan::Pattern(of, is) => self.value(of, scope, seg).is_none_or(|v| is.matches(v)),
            Plan::DateOrder(earlier, later) => self.eval_dates(earlier, later, scope, seg),
            Plan::All(ps) => ps.iter().all(|p| self.eval(p, scope, seg)),
            Plan::Any(ps) => ps.iter().any(|p| self.eval(p, scope, seg)),
            Plan::Not(p) => !self.eval(p, scope, seg),
        }
    }

    /// [`Plan::Loop`], out of line: it is rarer than the value tests, and kept inline it made
    /// every [`Ctx::eval`] call pay for its larger frame.
    #[inline(never)]
    fn eval_loop(&self, slot: usize, where_: Option<&Plan>, scope: Option<u32>) -> bool {
        self.index.loops[slot].iter().any(|&inst| {
            scope.is_none_or(|s| self.member.within(inst, s))
                && where_.is_none_or(|w| self.eval(w, Some(inst), None))
        })
    }

    /// The first eight bytes of a date order's element: a header element's from
    /// [`Index::head_dates`], read once per header.
    #[inline(always)]
    fn date(&self, s: &Slot, scope: Option<u32>, seg: Option<usize>) -> Option<&[u8; 8]> {
        if s.area == Area::Header {
            let mut read = self.index.head_dates.iter();
            if let Some((_, _, d)) = read.find(|d| (d.0, d.1) == (s.target, s.element)) {
                return d.as_ref();
            }
        }
        self.value(s, scope, seg).and_then(|v| v.first_chunk::<8>())
    }

    /// [`Plan::DateOrder`], out of line like [`Ctx::eval_loop`].
    #[inline(never)]
    fn eval_dates(
        &self,
        earlier: &Slot,
        later: &Slot,
        scope: Option<u32>,
        seg: Option<usize>,
    ) -> bool {
        match (self.date(earlier, scope, seg), self.date(later, scope, seg)) {
            (Some(a), Some(b)) => dates_in_order(a, b),
            _ => true,
        }
    }

    /// False when the rule cannot fire anywhere in the member: a segment it needs is absent,
    /// or its `when` reads only the header and is false.
    fn may_fire(&self, rule: &Rule) -> bool {
        self.header_may_fire(rule) && self.member_may_fire(rule)
    }

    /// The header's part of [`Ctx::may_fire`]: the header segments the rule needs are there
    /// and its header-only `when` holds. The same for every member of a set.
    fn header_may_fire(&self, rule: &Rule) -> bool {
        let p = &rule.plan;
        p.need
            .iter()
            .all(|n| !n.header || self.index.head[n.target] != NONE)
            && (!p.when_header || p.when.as_ref().is_none_or(|w| self.eval(w, None, None)))
    }

    /// The member's part of [`Ctx::may_fire`]: the member segments the rule needs are there
    /// ([`Index::present`] below 64: a member's `first` holds only the targets read there).
    #[inline]
    fn member_may_fire(&self, rule: &Rule) -> bool {
        rule.plan.need.iter().all(|n| {
            n.header
                || if n.target < 64 {
                    self.index.present & 1 << n.target != 0
                } else {
                    self.index.first[n.target] != NONE
                }
        })
    }

    /// Inline in [`RuleSet::check_member`]'s loops, which call it for every scope of every
    /// rule that may fire: the call cost a fifth of what the (mostly passing) tests do.
    #[inline(always)]
    fn apply(&self, rule: &Rule, scope: Option<u32>, seg: Option<usize>, out: &mut Vec<Finding>) {
        let p = &rule.plan;
        if let Some(w) = p.when.as_ref().filter(|_| !p.when_header) {
            if !self.eval(w, scope, seg) {
                return;
            }
        }
        if self.eval(&p.require, scope, seg) {
            return;
        }
        let trigger = p.trigger.and_then(|t| self.find(&t, scope, seg));
        let of = p.of.and_then(|t| self.find(&t, scope, seg));
        self.report(rule, scope, trigger, of, out);
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

    /// The finding for a rule that failed at `scope`: `trigger_at` and `of_at` are where the
    /// rule's trigger and reported element were found.
    fn report(
        &self,
        rule: &Rule,
        scope: Option<u32>,
        trigger_at: Option<usize>,
        of_at: Option<usize>,
        out: &mut Vec<Finding>,
    ) {
        let d = &rule.def;
        let trigger = d.trigger.as_ref().and_then(|t| {
            let i = trigger_at?;
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
            Text::shared(&self.schema.loops[self.member.instances[s as usize].loop_ix].id)
        });
        let mut f = match &d.report {
            Report::MissingSegment { id, qualifier } => {
                let mut f = Finding::new(rule.id, d.snip, Ack::Segment("I6"), d.message.clone());
                f.location = Location {
                    segment_position: Some(self.expected_position(scope, id, qualifier.as_deref())),
                    segment_id: Some(Text::shared(id)),
                    loop_id,
                    ..Location::default()
                };
                f
            }
            Report::Element { of, code } => {
                let _ = code;
                let rec = self.record(of.area);
                let found = of_at;
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
                        (
                            rs.position,
                            rs.at.line,
                            rs.at.offset,
                            Some(Text::shared(&l.id)),
                        )
                    }
                    None => (self.closing_position, 0, 0, loop_id),
                };
                f.location = Location {
                    line,
                    offset,
                    segment_position: Some(pos),
                    segment_id: Some(Text::shared(&of.segment)),
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

impl Pattern {
    #[inline(never)]
    fn matches(self, v: &[u8]) -> bool {
        match self {
            Pattern::UsZip => (v.len() == 5 || v.len() == 9) && v.iter().all(u8::is_ascii_digit),
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
}

/// Real CCYYMMDD dates order like their bytes; a missing or unreadable one is another rule's
/// finding, so the order holds.
#[inline]
fn dates_in_order(earlier: &[u8; 8], later: &[u8; 8]) -> bool {
    // In order, the answer is true whatever the two are, and most pairs are in order: the
    // dates are validated only when the order is wrong. (Eight bytes compared as a big-endian
    // integer are compared as a slice would be, without the call.)
    u64::from_be_bytes(*earlier) <= u64::from_be_bytes(*later)
        || !(super::element::is_date(earlier) && super::element::is_date(later))
}

/// A [`Ctx`] with the rules whose targets [`Reference`]'s lookups test.
#[cfg(test)]
struct Reference<'a> {
    ctx: Ctx<'a>,
    rules: &'a RuleSet,
}

#[cfg(test)]
impl<'a> std::ops::Deref for Reference<'a> {
    type Target = Ctx<'a>;

    fn deref(&self) -> &Ctx<'a> {
        &self.ctx
    }
}

/// The rules as first written: an interpreter over the parsed [`Cond`]s that looks every
/// segment up by scanning the record. Kept (for tests) as the reference the compiled
/// [`Plan`]s must agree with.
#[cfg(test)]
impl Reference<'_> {
    fn ref_find(&self, r: &ElementRef, scope: Option<u32>, seg: Option<usize>) -> Option<usize> {
        let rec = self.record(r.area);
        if r.area == Area::Scope {
            if let Some(i) = seg {
                if rec.segs[i].key == r.key {
                    return Some(i);
                }
            }
        }
        let scope = if r.area == Area::Scope { scope } else { None };
        let target = &self.rules.targets[r.target];
        (0..rec.segs.len()).find(|&i| {
            scope.is_none_or(|inst| rec.segs[i].instance == inst) && target.matches(rec, i)
        })
    }

    fn ref_value(&self, r: &ElementRef, scope: Option<u32>, seg: Option<usize>) -> Option<&[u8]> {
        let i = self.ref_find(r, scope, seg)?;
        Some(self.record(r.area).element(i, r.element))
    }

    fn ref_eval(&self, c: &Cond, scope: Option<u32>, seg: Option<usize>) -> bool {
        match c {
            Cond::Value { of, r#in, not_in } => {
                let v = self.ref_value(of, scope, seg).unwrap_or_default();
                let in_ok = r#in.is_empty() || r#in.iter().any(|x| x.as_bytes() == v);
                let not_ok = !not_in.iter().any(|x| x.as_bytes() == v);
                in_ok && not_ok
            }
            Cond::Present(of) => self
                .ref_value(of, scope, seg)
                .is_some_and(|v| !v.is_empty()),
            Cond::Segment { target, .. } => (0..self.member.segs.len()).any(|i| {
                scope.is_none_or(|inst| self.member.segs[i].instance == inst)
                    && self.rules.targets[*target].matches(self.member, i)
            }),
            Cond::Loop { id, r#where, key } => self
                .member
                .instances_of_key(self.schema, id, *key)
                .filter(|inst| scope.is_none_or(|s| self.member.within(*inst, s)))
                .any(|inst| {
                    r#where
                        .as_ref()
                        .is_none_or(|w| self.ref_eval(w, Some(inst), None))
                }),
            Cond::Pattern { of, is } => {
                let Some(v) = self.ref_value(of, scope, seg) else {
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
                let date = |r: &ElementRef| {
                    self.ref_value(r, scope, seg)
                        .and_then(|v| v.get(..8))
                        .filter(|d| super::element::is_date(d))
                };
                match (date(earlier), date(later)) {
                    (Some(a), Some(b)) => a <= b,
                    _ => true,
                }
            }
            Cond::All(cs) => cs.iter().all(|c| self.ref_eval(c, scope, seg)),
            Cond::Any(cs) => cs.iter().any(|c| self.ref_eval(c, scope, seg)),
            Cond::Not(c) => !self.ref_eval(c, scope, seg),
        }
    }

    fn ref_apply(
        &self,
        rule: &Rule,
        scope: Option<u32>,
        seg: Option<usize>,
        out: &mut Vec<Finding>,
    ) {
        let d = &rule.def;
        if let Some(w) = &d.when {
            if !self.ref_eval(w, scope, seg) {
                return;
            }
        }
        if self.ref_eval(&d.require, scope, seg) {
            return;
        }
        let trigger = d
            .trigger
            .as_ref()
            .and_then(|t| self.ref_find(t, scope, seg));
        let of = match &d.report {
            Report::Element { of, .. } => self.ref_find(of, scope, seg),
            Report::MissingSegment { .. } => None,
        };
        self.report(rule, scope, trigger, of, out);
    }
}

#[cfg(test)]
impl RuleSet {
    /// [`RuleSet::check_member`]'s rules through the reference interpreter (without the
    /// cross-member rule in code).
    fn check_member_reference(
        &self,
        schema: &Schema,
        header: &Record,
        member: &Record,
        closing_position: u32,
        out: &mut Vec<Finding>,
    ) {
        let index = Index::default();
        let ctx = Reference {
            ctx: Ctx {
                schema,
                header,
                member,
                index: &index,
                closing_position,
            },
            rules: self,
        };
        for rule in &self.rules {
            match &rule.scope {
                Scope::Header => {}
                Scope::Loop(n) => {
                    let l = &self.loops[*n];
                    for inst in member.instances_of_key(schema, &l.id, l.key) {
                        ctx.ref_apply(rule, Some(inst), None, out);
                    }
                }
                Scope::Segment(id, _, target) => {
                    for i in 0..member.segs.len() {
                        let hit = if self.targets[*target].key == u64::MAX {
                            member.segment(i).id() == id.as_bytes()
                        } else {
                            self.targets[*target].matches(member, i)
                        };
                        if hit {
                            ctx.ref_apply(rule, None, Some(i), out);
                        }
                    }
                }
            }
        }
    }

    /// [`RuleSet::check_set`]'s header rules through the reference interpreter.
    fn check_set_reference(
        &self,
        schema: &Schema,
        header: &Record,
        closing_position: u32,
        out: &mut Vec<Finding>,
    ) {
        let index = Index::default();
        let ctx = Reference {
            ctx: Ctx {
                schema,
                header,
                member: header,
                index: &index,
                closing_position,
            },
            rules: self,
        };
        for rule in self
            .rules
            .iter()
            .filter(|r| matches!(r.scope, Scope::Header))
        {
            ctx.ref_apply(rule, None, None, out);
        }
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
        // The first of each is all that is read, and both lead the member (INS, REF*0F).
        if ins01.is_some() && ref0f.is_some() {
            break;
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

    /// Records every header and member of an interchange, as the rules see them.
    #[derive(Default)]
    struct Records {
        header: Vec<Record>,
        members: Vec<(usize, Record)>,
    }

    impl crate::check::Observer for Records {
        fn finding(&mut self, _f: Finding) {}
        fn header(&mut self, rec: &Record, _std: &crate::validate::Standards) {
            self.header.push(rec.clone());
        }
        fn member(&mut self, rec: &Record, _std: &crate::validate::Standards) {
            self.members
                .push((self.header.len().saturating_sub(1), rec.clone()));
        }
    }

    /// A tiny deterministic PRNG (xorshift64*), so that the mutations below need no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
            v[self.below(v.len())]
        }
    }

    /// Values that the 834 rules test, by element; dates in and out of order and unreadable.
    const POOLS: &[(&str, &[&str])] = &[
        ("INS01", &["Y", "N", "X", ""]),
        ("INS02", &["18", "01", "19", ""]),
        ("INS03", &["021", "024", "025", "030", "001", ""]),
        ("INS05", &["A", "C", ""]),
        ("INS07", &["", "1"]),
        ("INS08", &["FT", "", "PT"]),
        ("HD01", &["021", "024", "025", "030", "001", "", "X"]),
        ("BGN08", &["2", "4", "RX", ""]),
        ("NM101", &["IL", "74", "70", "P3", "QD", ""]),
        (
            "DTP01",
            &[
                "348", "349", "303", "356", "357", "336", "337", "338", "339", "340", "341", "344",
                "345", "360", "361", "090", "091", "007",
            ],
        ),
        (
            "DTP03",
            &[
                "20240101",
                "20231231",
                "20250230",
                "2024010",
                "20240101-20240201",
                "",
            ],
        ),
        ("N402", &["CT", "ON", ""]),
        (
            "N403",
            &[
                "06001",
                "060011234",
                "K1A0B1",
                "1234",
                "A1B2C3",
                "",
                "12345678901",
            ],
        ),
        ("N404", &["US", "CA", "MX", "", "USA"]),
        ("DMG01", &["D8", "", "RD8"]),
        ("DMG02", &["19800101", "20991231", "2024", ""]),
        ("BGN03", &["20250110", "19000101", ""]),
    ];

    /// Breaks a generated file the way senders do (values swapped, segments dropped, repeated
    /// or inserted), so that every rule both holds and fails somewhere.
    fn mutate(x12: &[u8], rng: &mut Rng, rate: usize) -> Vec<u8> {
        let text = String::from_utf8_lossy(x12).into_owned();
        let mut out: Vec<String> = Vec::new();
        for seg in text.split('~') {
            let id = seg.trim().split('*').next().unwrap_or("").to_string();
            if id == "BGN" && rng.below(2) == 0 {
                // The file's reporting period, sometimes half of it or out of order.
                out.push(seg.to_string());
                for q in ["090", "091"] {
                    if rng.below(4) > 0 {
                        out.push(format!("\nDTP*{q}*D8*{}", rng.pick(POOLS[10].1)));
                    }
                }
                continue;
            }
            if ["ISA", "IEA", "GS", "GE", "ST", "SE"].contains(&id.as_str())
                || rng.below(100) >= rate
            {
                out.push(seg.to_string());
                continue;
            }
            match rng.below(20) {
                0 => continue,
                1 => {
                    out.push(seg.to_string());
                    out.push(seg.to_string());
                    continue;
                }
                2 => out.push("\nPLA*2*1P*20240101*AI".into()),
                3 => out.push("\nLS*2700".into()),
                4..=7 if id == "DTP" => {
                    // A pair of dates in the same loop, for the date-order rules.
                    let pairs = [
                        ("356", "357"),
                        ("336", "337"),
                        ("338", "339"),
                        ("340", "341"),
                        ("348", "349"),
                        ("344", "345"),
                        ("360", "361"),
                        ("090", "091"),
                    ];
                    let (a, b) = pairs[rng.below(pairs.len())];
                    let dates = POOLS[10].1;
                    out.push(seg.to_string());
                    out.push(format!("\nDTP*{a}*D8*{}", rng.pick(dates)));
                    out.push(format!("\nDTP*{b}*D8*{}", rng.pick(dates)));
                    continue;
                }
                _ => {}
            }
            let mut f: Vec<String> = seg.split('*').map(str::to_string).collect();
            if id == "INS" || id == "N4" {
                while f.len() < 9 {
                    f.push(String::new());
                }
            }
            for i in 1..f.len().min(10) {
                let name = format!("{id}{i:02}");
                if let Some((_, pool)) = POOLS.iter().find(|(n, _)| *n == name) {
                    if rng.below(2) == 0 {
                        f[i] = rng.pick(pool).to_string();
                    }
                }
            }
            out.push(f.join("*"));
        }
        out.join("~").into_bytes()
    }

    /// The headers and members of generated file `seed`, broken by [`mutate`].
    fn mutated_records(engine: &crate::check::Engine, seed: u64) -> Records {
        let opts = crate::gen::GenOptions {
            size_mb: 0.02,
            seed,
            full: seed % 3 == 0,
            error_rate: (seed % 4 * 10) as f64,
            sets: 1 + (seed % 2) as u32,
        };
        let mut x12 = Vec::new();
        crate::gen::generate(&opts, &mut x12).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let x12 = mutate(&x12, &mut rng, 5 + (seed % 5) as usize * 10);
        let mut recs = Records::default();
        crate::check::check_stream(engine, x12.as_slice(), &mut recs);
        recs
    }

    /// The compiled plans and the reference interpreter give the same findings, in the same
    /// order, for every member and header of many broken files; and between them the files
    /// make every rule fire.
    #[test]
    fn plans_agree_with_the_interpreter() {
        let engine = crate::check::Engine::embedded();
        let std = &engine.standards[0];
        let mut rules = RuleSet::from_json(crate::schema::embedded::X220A1_RULES).unwrap();
        rules.enrollment = false;
        let mut fired: std::collections::BTreeSet<&str> = Default::default();
        let (mut members, mut findings) = (0, 0);
        for seed in 1..=80u64 {
            let recs = mutated_records(&engine, seed);
            let mut state = SetState::default();
            for (h, m) in &recs.members {
                let header = &recs.header[*h];
                let close = m.segs.last().map_or(0, |s| s.position + 1);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                rules.check_member(&std.schema, header, m, close, &mut state, &mut a);
                rules.check_member_reference(&std.schema, header, m, close, &mut b);
                assert_eq!(a, b, "seed {seed}, member at {:?}", m.segs.first());
                fired.extend(a.iter().map(|f| f.id));
                members += 1;
                findings += a.len();
            }
            for header in &recs.header {
                let close = header.segs.last().map_or(0, |s| s.position + 1);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let tally = Tally::default();
                rules.check_set(&std.schema, header, &tally, close, &mut a);
                rules.check_set_reference(&std.schema, header, close, &mut b);
                assert_eq!(a, b, "seed {seed}, header");
                fired.extend(a.iter().map(|f| f.id));
            }
        }
        assert!(
            members > 1000 && findings > 1000,
            "{members} members, {findings} findings"
        );
        // The generator writes no 2200 (DSB) or 2320 (COB) loops: their date-order rules are
        // the same plan as the other date-order rules.
        let missing: Vec<&str> = rules
            .rules
            .iter()
            .map(|r| r.id)
            .filter(|id| !fired.contains(id) && !["834-S24F", "834-S24G"].contains(id))
            .collect();
        assert!(missing.is_empty(), "rules that never fired: {missing:?}");
    }

    /// The member index and the shape memo agree with the long way on broken files: every
    /// target's first segment is the first that [`Target::matches`] finds (the codes matched
    /// by value through [`RuleSet::by_elem`]), and the rules a member's shape lists
    /// ([`Index::may_fire`]), less those without a mask whose needs then fail, are the live
    /// rules whose needs hold, walked one by one. Several sets and many shapes per file, so that the memo's
    /// entries are reused, replaced and emptied.
    #[test]
    fn shape_memo_agrees_with_the_needs() {
        let engine = crate::check::Engine::embedded();
        let std = &engine.standards[0];
        let rules = RuleSet::from_json(crate::schema::embedded::X220A1_RULES).unwrap();
        assert!(rules.targets.len() <= 64 && !rules.by_elem.is_empty());
        assert!(!rules.header_dates.is_empty());
        let mut index = Index::default();
        let (mut members, mut shapes) = (0, std::collections::BTreeSet::new());
        for seed in 1..=60u64 {
            let recs = mutated_records(&engine, seed);
            let mut last_header = usize::MAX;
            for (h, m) in &recs.members {
                let header = &recs.header[*h];
                if *h != last_header {
                    index = index.for_next_set();
                    last_header = *h;
                }
                index.build(&rules, &std.schema, header, m, true);
                if index.head_fire.len() != rules.rules.len() {
                    rules.header_fire(&std.schema, header, &mut index);
                }
                // The header's dates are those of this header (BGN03), absent or short ones too.
                assert_eq!(index.head_dates.len(), rules.header_dates.len());
                for &(t, element, date) in &index.head_dates {
                    let at = (0..header.segs.len()).find(|&i| rules.targets[t].matches(header, i));
                    let read = at.and_then(|i| header.element(i, element).first_chunk().copied());
                    assert_eq!(date, read, "seed {seed}");
                }
                for (t, target) in rules.targets.iter().enumerate() {
                    let first = (0..m.segs.len()).find(|&i| target.matches(m, i));
                    let read = rules.first_read & 1 << t != 0;
                    assert_eq!(
                        index.first[t],
                        first.filter(|_| read).map_or(NONE, |i| i as u32),
                        "seed {seed}, target {target:?}"
                    );
                    assert_eq!(index.present & 1 << t != 0, first.is_some());
                }
                let shape = index.may_fire();
                shapes.insert(index.present & index.live_need);
                let ctx = Ctx {
                    schema: &std.schema,
                    header,
                    member: m,
                    index: &index,
                    closing_position: 0,
                };
                // As [`RuleSet::check_member`] walks them: the mask is trusted where there is one.
                let memo: Vec<u32> = index.shapes[shape]
                    .1
                    .iter()
                    .copied()
                    .filter(|&r| {
                        let rule = &rules.rules[r as usize];
                        rule.plan.member_need.is_some() || ctx.member_may_fire(rule)
                    })
                    .collect();
                let walked: Vec<u32> = index
                    .live
                    .iter()
                    .map(|&(r, _)| r)
                    .filter(|&r| ctx.member_may_fire(&rules.rules[r as usize]))
                    .collect();
                assert_eq!(memo, walked, "seed {seed}, member at {:?}", m.segs.first());
                members += 1;
            }
        }
        assert!(
            members > 1000 && shapes.len() > SHAPES,
            "{members} members, {} shapes",
            shapes.len()
        );
    }

    /// [`RuleSet::first_read`]: the targets a `member.` reference or a rule not scoped to a
    /// loop looks up are read in [`Index::first`]; those only loop-scoped rules look up (an
    /// HD, a DTP of 2300) are not, and a member's index leaves them out.
    #[test]
    fn first_read_names_the_lookups_outside_instances() {
        let rules = RuleSet::from_json(crate::schema::embedded::X220A1_RULES).unwrap();
        let read = |id: &[u8]| {
            let key = crate::schema::pack_const(id);
            let ts: Vec<usize> = (0..rules.targets.len())
                .filter(|&t| rules.targets[t].key == key)
                .collect();
            assert!(!ts.is_empty(), "{}", String::from_utf8_lossy(id));
            ts.iter().any(|&t| rules.first_read & 1 << t != 0)
        };
        // `member.INS03` (a 2300 rule), and the segment-scoped rules' N4 and DMG.
        assert!(read(b"INS") && read(b"N4") && read(b"DMG"));
        // Only 2000 and 2300 rules look these up, within their instances.
        assert!(!read(b"HD") && !read(b"PLA") && !read(b"LE"));
    }

    #[test]
    fn needs_are_necessary() {
        let rules = RuleSet::from_json(crate::schema::embedded::X220A1_RULES).unwrap();
        let need = |id: &str| {
            let r = rules.rules.iter().find(|r| r.id == id).unwrap();
            r.plan
                .need
                .iter()
                .map(|n| (n.header, rules.targets[n.target].key))
                .collect::<Vec<_>>()
        };
        let dtp = crate::schema::pack_const(b"DTP");
        let pla = crate::schema::pack_const(b"PLA");
        // Two dates out of order need both dates.
        assert_eq!(need("834-S24A"), vec![(false, dtp), (false, dtp)]);
        // A value test that an absent value fails needs its segment ...
        assert!(need("834-S18").contains(&(false, pla)));
        // ... but not one that an absent value passes, nor the rule's own segment beyond
        // the one its scope needs.
        let n4 = crate::schema::pack_const(b"N4");
        assert_eq!(need("834-S23"), vec![(false, n4)]);
        assert_eq!(need("834-S22"), vec![(false, n4)]);
        // A value test on element 1 needs a segment with one of its codes there (and that
        // implies the segment itself).
        let ins = crate::schema::pack_const(b"INS");
        let qualified = |id: &str| {
            let r = rules.rules.iter().find(|r| r.id == id).unwrap();
            r.plan
                .need
                .iter()
                .map(|n| &rules.targets[n.target])
                .map(|t| {
                    (
                        t.key,
                        t.quals
                            .as_ref()
                            .map(|qs| qs.iter().map(|q| q.bytes.clone()).collect::<Vec<_>>()),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(qualified("834-S1"), vec![(ins, Some(vec![b"Y".to_vec()]))]);
        assert_eq!(qualified("834-S2B"), vec![(ins, Some(vec![b"N".to_vec()]))]);
        // ... and so does one on another element (INS05 is C), but not on the header's.
        let on = |id: &str, element: usize, code: &str| {
            let r = rules.rules.iter().find(|r| r.id == id).unwrap();
            r.plan.need.iter().any(|n| {
                let t = &rules.targets[n.target];
                t.element == element && t.quals == Some(vec![Qual::new(code)])
            })
        };
        assert!(on("834-S14", 5, "C"));
        assert!(on("834-S6", 3, "024"));
        assert!(on("834-S27", 3, "025"));
        assert!(!on("834-S5", 8, "2"));
        // A code a value must not be is needed for the test to fail: INS03 must not be 030
        // (on another element) and HD01 must not be 030 (the qualifier).
        assert!(on("834-S5", 3, "030"));
        assert!(on("834-S5H", 1, "030"));
        assert!(on("834-S2", 2, "18"));
        // The rule's own segment answers element 1 of a segment scope: no member segment is
        // needed but the scope's (and the header's BGN, for BGN03).
        let dmg = crate::schema::pack_const(b"DMG");
        assert!(need("834-S26")
            .iter()
            .all(|&(header, key)| header || key == dmg));
        // A header-only condition is evaluated once per member.
        let s4 = rules.rules.iter().find(|r| r.id == "834-S4").unwrap();
        assert!(s4.plan.when_header);
        let s1 = rules.rules.iter().find(|r| r.id == "834-S1").unwrap();
        assert!(!s1.plan.when_header);
    }

    #[test]
    fn embedded_rules_load() {
        let rs = RuleSet::from_json(crate::schema::embedded::X220A1_RULES).unwrap();
        assert!(rs.catalogue().len() >= 10);
    }

    #[test]
    fn date_order_validates_only_pairs_out_of_order() {
        // The answer the order gave when both values were validated first.
        fn date(v: &[u8; 8]) -> Option<&[u8; 8]> {
            Some(v).filter(|d| super::super::element::is_date(*d))
        }
        let validated_first = |a: &[u8; 8], b: &[u8; 8]| match (date(a), date(b)) {
            (Some(a), Some(b)) => a <= b,
            _ => true,
        };
        let values: [&[u8; 8]; 9] = [
            b"20250101",
            b"20241231",
            b"20250229",
            b"20240229",
            b"17991231",
            b"2025013A",
            b"99991231",
            b"00000000",
            b"20251301",
        ];
        for a in values {
            for b in values {
                assert_eq!(dates_in_order(a, b), validated_first(a, b), "{a:?} {b:?}");
            }
        }
    }
}
