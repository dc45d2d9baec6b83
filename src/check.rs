//! The envelope layer: interchanges, functional groups and transaction sets.
//!
//! [`Checker`] takes lexer tokens, checks ISA/IEA, GS/GE and ST/SE (fixed widths, control numbers,
//! counts, versions, uniqueness), hands each set's segments to a [`SetValidator`] chosen by the
//! group's functional identifier, and reports structure events and findings to an [`Observer`].
//! It decides the dispositions that the acknowledgements carry (TA1, AK9, IK5) but writes
//! nothing itself. Errors never stop the stream: a bad set, group or interchange is closed with
//! the right code and reading goes on with the next one.

use crate::finding::{Ack, Finding, Location, Severity, Text};
use crate::lexer::{
    Delimiters, LexError, LexErrorKind, Lexer, LexerOptions, Position, Segment, Token,
};
use crate::schema::{embedded, CodeSets, Schema, SegmentIds};
use crate::validate::record::Record;
use crate::validate::situational::RuleSet;
use crate::validate::{Additive, Caches, SetSink, SetValidator, Standards, UnitSpec};
use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, OnceLock};

/// The interchange header as received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InterchangeInfo {
    pub isa13: String,
    pub sender_qualifier: String,
    pub sender_id: String,
    pub receiver_qualifier: String,
    pub receiver_id: String,
    /// ISA09 (YYMMDD) and ISA10 (HHMM) as received.
    pub date: String,
    pub time: String,
    pub ack_requested: bool,
    /// ISA15: `P` or `T`.
    pub usage: String,
    pub version: String,
    #[serde(skip)]
    pub delimiters: Delimiters,
    pub position: Position,
}

/// The interchange's TA1 disposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Ta1Result {
    /// TA104: `A`, `E` or `R`.
    pub code: char,
    /// TA105 note code.
    pub note: &'static str,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GroupInfo {
    pub gs01: String,
    pub gs02: String,
    pub gs03: String,
    pub gs04: String,
    pub gs05: String,
    pub gs06: String,
    pub gs08: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupResult {
    pub info: GroupInfo,
    /// GE01 as received (None when GE is missing).
    pub ge01: Option<String>,
    pub received: u32,
    pub accepted: u32,
    /// AK901.
    pub code: char,
    /// AK905..AK909.
    pub errors: Vec<&'static str>,
    /// False when the group's transaction is not supported: its sets were not analysed (the 999
    /// then carries no AK2 loops).
    pub analysed: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SetInfo {
    pub st01: String,
    pub st02: String,
    pub st03: String,
    pub position: Position,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SetResult {
    pub info: SetInfo,
    /// IK501: `A`, `E` or `R`.
    pub code: char,
    /// IK502..IK506.
    pub errors: Vec<&'static str>,
    pub segments: u32,
    pub members: u64,
}

/// Receives everything the checker finds, in input order.
pub trait Observer {
    fn finding(&mut self, f: Finding);
    fn interchange_start(&mut self, _i: &InterchangeInfo) {}
    fn interchange_end(&mut self, _i: &InterchangeInfo, _ta1: Ta1Result, _groups: u32) {}
    fn group_start(&mut self, _g: &GroupInfo) {}
    fn group_end(&mut self, _r: &GroupResult) {}
    fn set_start(&mut self, _s: &SetInfo) {}
    fn header(&mut self, _rec: &Record, _std: &Standards) {}
    fn member(&mut self, _rec: &Record, _std: &Standards) {}
    fn set_end(&mut self, _r: &SetResult) {}
    /// Whether this observer uses [`Observer::header`] and [`Observer::member`]. Those that
    /// do not let a large set be checked in pieces on several threads ([`crate::split`]),
    /// which delivers findings and envelope events only.
    fn wants_records(&self) -> bool {
        true
    }
}

/// An observer that writes down every event it gets, one line of text each, in order: the
/// findings and the interchange, group and set results, not the member records (so a large
/// set may be checked in pieces, [`crate::split`]). For comparing two ways of checking the
/// same bytes: the split's tests and its fuzz target compare a split check's log with a
/// sequential check's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventLog(pub Vec<String>);

impl Observer for EventLog {
    fn finding(&mut self, f: Finding) {
        self.0.push(format!("{f:?}"));
    }
    fn interchange_start(&mut self, i: &InterchangeInfo) {
        self.0.push(format!("ISA {i:?}"));
    }
    fn interchange_end(&mut self, i: &InterchangeInfo, ta1: Ta1Result, groups: u32) {
        self.0.push(format!("IEA {i:?} {ta1:?} {groups}"));
    }
    fn group_start(&mut self, g: &GroupInfo) {
        self.0.push(format!("GS {g:?}"));
    }
    fn group_end(&mut self, r: &GroupResult) {
        self.0.push(format!("GE {r:?}"));
    }
    fn set_start(&mut self, s: &SetInfo) {
        self.0.push(format!("ST {s:?}"));
    }
    fn set_end(&mut self, r: &SetResult) {
        self.0.push(format!("SE {r:?}"));
    }
    fn wants_records(&self) -> bool {
        false
    }
}

/// A trading-partner policy: sets a finding's severity knowing who sent it and for which group,
/// or drops it (returns false). Applied before a finding counts toward any disposition.
pub trait FindingPolicy: Send + Sync {
    fn adjust(&self, f: &mut Finding, sender: &str, group: Option<&str>) -> bool;
}

/// Any closure can be a policy (handy in tests).
impl<F: Fn(&mut Finding, &str, Option<&str>) -> bool + Send + Sync> FindingPolicy for F {
    fn adjust(&self, f: &mut Finding, sender: &str, group: Option<&str>) -> bool {
        self(f, sender, group)
    }
}

/// Loaded standards, by functional identifier (GS01), and checker settings.
pub struct Engine {
    pub standards: Vec<Arc<Standards>>,
    /// Standards parsed only when a group first asks for them (after [`Engine::standards`]).
    deferred: Vec<Deferred>,
    /// Our own interchange ids (ISA08); when not empty, other receivers get TA1 `009`.
    pub receiver_ids: Vec<String>,
    pub lexer: LexerOptions,
    /// Adjusts each finding's severity before it is counted (trading-partner policy).
    pub policy: Option<Box<dyn FindingPolicy>>,
}

/// A standard parsed the first time a group of its functional identifier is checked. Every
/// command starts by building the engine, before any thread starts, and nearly every input
/// is 834s only: the 999 schema (with its own code sets and segment ids) took ≈ 1.9 M of the
/// engine's 10 M instructions, serial time on every run.
struct Deferred {
    functional_id: &'static str,
    make: fn() -> Standards,
    loaded: OnceLock<Standards>,
}

impl Deferred {
    fn get(&self) -> &Standards {
        self.loaded.get_or_init(self.make)
    }
}

impl Engine {
    /// The embedded 834 (005010X220A1) and 999 (005010X231A1) standards; the 999's is parsed
    /// when a 999 group is first met.
    pub fn embedded() -> Engine {
        let s834 = Schema::from_json(embedded::X220A1).expect("embedded 834 schema is valid");
        let rules834 = RuleSet::from_json(embedded::X220A1_RULES).expect("embedded 834 rules");
        Engine {
            standards: vec![Arc::new(Standards {
                schema: s834,
                codesets: embedded_codesets(),
                segment_ids: embedded_segment_ids(),
                unit: Some(UnitSpec::for_834()),
                rules: rules834,
            })],
            deferred: vec![Deferred {
                functional_id: "FA",
                make: embedded_999,
                loaded: OnceLock::new(),
            }],
            receiver_ids: Vec::new(),
            lexer: LexerOptions::default(),
            policy: None,
        }
    }

    fn for_group(&self, gs01: &str) -> Option<&Standards> {
        if let Some(s) = self
            .standards
            .iter()
            .find(|s| s.schema.functional_id == gs01)
        {
            return Some(s.as_ref());
        }
        self.deferred
            .iter()
            .find(|d| d.functional_id == gs01)
            .map(Deferred::get)
    }
}

fn embedded_codesets() -> CodeSets {
    let mut codesets = CodeSets::default();
    codesets
        .add_json(embedded::STATES)
        .expect("embedded states code set is valid");
    codesets
        .add_json(embedded::COUNTRIES)
        .expect("embedded countries code set is valid");
    codesets
}

fn embedded_segment_ids() -> SegmentIds {
    SegmentIds::from_json(embedded::SEGMENT_IDS).expect("embedded segment ids")
}

/// The embedded 999 (005010X231A1) standard.
fn embedded_999() -> Standards {
    Standards {
        schema: Schema::from_json(embedded::X231A1).expect("embedded 999 schema is valid"),
        codesets: embedded_codesets(),
        segment_ids: embedded_segment_ids(),
        unit: None,
        rules: RuleSet::default(),
    }
}

/// Checks a whole stream.
pub fn check_stream<R: Read, O: Observer>(engine: &Engine, input: R, observer: &mut O) {
    let mut lexer = Lexer::with_options(input, engine.lexer);
    let mut checker = Checker::new(engine);
    while let Some(tok) = lexer.next_token() {
        match tok {
            Token::Segment(seg) => checker.segment(&seg, observer),
            Token::Warning(e) | Token::Error(e) => checker.lex_error(e, observer),
        }
    }
    checker.finish(observer);
}

/// The envelope's segments, which end a piece of a set ([`crate::split`]): only the
/// sequential checker handles them.
pub(crate) fn is_envelope(id: &[u8]) -> bool {
    matches!(id, b"ISA" | b"IEA" | b"GS" | b"GE" | b"ST" | b"SE")
}

#[derive(Clone)]
struct Interchange {
    info: InterchangeInfo,
    /// TA1 note codes found, in order; the first one is reported.
    notes: Vec<&'static str>,
    groups: u32,
    gs06_seen: HashSet<String>,
}

#[derive(Clone)]
struct Group<'e> {
    info: GroupInfo,
    std: Option<&'e Standards>,
    received: u32,
    accepted: u32,
    /// Sets accepted with errors noted (IK501 `E`).
    noted: u32,
    errors: Vec<&'static str>,
    st02_seen: HashSet<String>,
}

#[derive(Clone)]
struct Set<'e> {
    info: SetInfo,
    validator: Option<SetValidator<'e>>,
    errors: Vec<&'static str>,
    position: u32,
}

/// The envelope state machine.
#[derive(Clone)]
pub struct Checker<'e> {
    engine: &'e Engine,
    ic: Option<Interchange>,
    group: Option<Group<'e>>,
    set: Option<Set<'e>>,
    /// Where the input ended (or the last segment began): missing trailers are reported there.
    last: Position,
    /// What the last set's validator remembered, for the next set's ([`Caches`]).
    caches: Caches<'e>,
}

/// Forwards the set validator's output to the observer (the validator applied the policy).
struct Bridge<'a, O> {
    obs: &'a mut O,
}

impl<O: Observer> SetSink for Bridge<'_, O> {
    fn finding(&mut self, f: Finding) {
        self.obs.finding(f);
    }
    fn header(&mut self, rec: &Record, std: &Standards) {
        self.obs.header(rec, std);
    }
    fn member(&mut self, rec: &Record, std: &Standards) {
        self.obs.member(rec, std);
    }
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

impl<'e> Checker<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        Checker {
            engine,
            ic: None,
            group: None,
            set: None,
            last: Position::default(),
            caches: Caches::default(),
        }
    }

    fn base_location(&self, at: Position) -> Location {
        Location {
            line: at.line,
            offset: at.offset,
            isa13: self.ic.as_ref().map(|i| Text::shared(&i.info.isa13)),
            gs06: self.group.as_ref().map(|g| Text::shared(&g.info.gs06)),
            st02: self.set.as_ref().map(|s| Text::shared(&s.info.st02)),
            ..Location::default()
        }
    }

    /// Reports an envelope finding after the trading-partner policy; returns whether it still
    /// rejects (an error that was neither ignored nor downgraded).
    fn emit<O: Observer>(&self, obs: &mut O, mut f: Finding) -> bool {
        if let (Some(p), Some(ic)) = (&self.engine.policy, &self.ic) {
            if !p.adjust(&mut f, &ic.info.sender_id, None) {
                return false;
            }
        }
        let counts = f.severity == Severity::Error;
        obs.finding(f);
        counts
    }

    #[allow(clippy::too_many_arguments)] // one call shape for every envelope check
    fn envelope_finding<O: Observer>(
        &self,
        obs: &mut O,
        id: &'static str,
        ack: Ack,
        at: Position,
        seg: &str,
        element: Option<u8>,
        value: Option<&[u8]>,
        message: String,
    ) -> bool {
        let id = if matches!(id, "X12-ENVELOPE" | "X12-GROUP" | "X12-SET") {
            crate::catalog::envelope_id(ack)
        } else {
            id
        };
        let mut f = Finding::new(id, 1, ack, message);
        f.location = self.base_location(at);
        f.location.segment_id = Some(Text::shared(seg));
        f.location.element = element.map(|e| crate::finding::ElementPos {
            element: e,
            ..Default::default()
        });
        if let Some(v) = value {
            f = f.with_value(v, false);
        }
        self.emit(obs, f)
    }

    /// Reports a functional group (AK905) or transaction set (IK502) envelope error; it
    /// rejects the group or set unless a policy says otherwise.
    #[allow(clippy::too_many_arguments)]
    fn envelope_error<O: Observer>(
        &mut self,
        obs: &mut O,
        id: &'static str,
        ack: Ack,
        at: Position,
        seg: &str,
        element: Option<u8>,
        value: Option<&[u8]>,
        message: String,
    ) {
        let counts = self.envelope_finding(obs, id, ack, at, seg, element, value, message);
        let errors = match ack {
            Ack::Group(_) => self.group.as_mut().map(|g| &mut g.errors),
            _ => self.set.as_mut().map(|s| &mut s.errors),
        };
        if let Some(e) = errors.filter(|_| counts) {
            e.push(ack.code());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ta1<O: Observer>(
        &mut self,
        obs: &mut O,
        note: &'static str,
        at: Position,
        seg: &str,
        element: Option<u8>,
        value: Option<&[u8]>,
        message: String,
    ) {
        let counts = self.envelope_finding(
            obs,
            "X12-ENVELOPE",
            Ack::Ta1(note),
            at,
            seg,
            element,
            value,
            message,
        );
        if let Some(ic) = self.ic.as_mut().filter(|_| counts) {
            ic.notes.push(note);
        }
    }

    pub fn lex_error<O: Observer>(&mut self, e: LexError, obs: &mut O) {
        self.last = e.pos;
        let msg = e.to_string();
        match e.kind {
            LexErrorKind::IsaNotFixedWidth => {
                // Reported against the interchange just opened.
                self.ta1(obs, "022", e.pos, "ISA", None, None, msg);
            }
            LexErrorKind::SegmentTooLong { .. } => {
                if self.set.is_some() {
                    let mut f = Finding::new("X12-SEGMENT-TOO-LONG", 1, Ack::Set("5"), msg);
                    f.location = self.base_location(e.pos);
                    let counts = self.emit(obs, f);
                    if let Some(s) = self.set.as_mut().filter(|_| counts) {
                        s.errors.push("5");
                    }
                } else {
                    self.ta1(obs, "024", e.pos, "?", None, None, msg);
                }
            }
            LexErrorKind::UnterminatedSegment => {
                // The end of the file came inside a segment: the envelope is incomplete.
                let mut f = Finding::new("X12-TRUNCATED", 1, Ack::Report, msg);
                f.location = self.base_location(e.pos);
                self.emit(obs, f);
            }
            LexErrorKind::BadDelimiters { which, elements } => {
                self.finish_interchange(obs, e.pos, false);
                let note = if which.starts_with("component") {
                    "027"
                } else if which.starts_with("segment") {
                    "004"
                } else {
                    "026"
                };
                // The ISA's elements could still be cut at their separator positions: open the
                // interchange so that it gets its TA1 (R), written with our default delimiters
                // since its own are unusable. Nothing after the ISA can be read, so it closes at
                // once.
                let opened = elements.len() == 16;
                if opened {
                    let isa: Vec<&[u8]> = elements.iter().map(|v| v.as_bytes()).collect();
                    self.open_interchange(obs, &isa, Delimiters::DEFAULT, e.pos);
                }
                let mut f = Finding::new("X12-BAD-DELIMITERS", 1, Ack::Ta1(note), msg);
                f.location = self.base_location(e.pos);
                f.location.segment_id = Some("ISA".into());
                self.emit(obs, f);
                if opened {
                    if let Some(ic) = &mut self.ic {
                        ic.notes.push(note);
                    }
                    self.finish_interchange(obs, e.pos, true);
                }
            }
            LexErrorKind::Empty
            | LexErrorKind::NotAnInterchange { .. }
            | LexErrorKind::TruncatedIsa
            | LexErrorKind::Io { .. } => {
                self.finish_interchange(obs, e.pos, false);
                let id = match e.kind {
                    LexErrorKind::Empty => "X12-EMPTY-FILE",
                    LexErrorKind::Io { .. } => "IO-ERROR",
                    _ => "X12-NOT-AN-INTERCHANGE",
                };
                let mut f = Finding::new(id, 1, Ack::Report, msg);
                f.location = self.base_location(e.pos);
                self.emit(obs, f);
            }
        }
    }

    pub fn segment<O: Observer>(&mut self, seg: &Segment<'_>, obs: &mut O) {
        self.last = seg.position();
        let id = seg.id();
        match id {
            b"ISA" => return self.isa(seg, obs),
            b"IEA" => return self.iea(seg, obs),
            b"GS" => return self.gs(seg, obs),
            b"GE" => return self.ge(seg, obs),
            b"ST" => return self.st(seg, obs),
            _ => {}
        }
        // Inside a set (nearly every segment) the first test settles it: the ID compare waits.
        if self.set.is_none() && self.group.is_none() && self.ic.is_some() && id == b"TA1" {
            // Interchange acknowledgements stand between ISA and the first GS.
            return self.ta1_segment(seg, obs);
        }
        if self.set.is_none() {
            let at = seg.position();
            let what = text(id);
            if self.ic.is_none() {
                let mut f = Finding::new(
                    "X12-OUTSIDE-INTERCHANGE",
                    1,
                    Ack::Report,
                    format!("segment {what} outside any interchange (after IEA, before ISA)"),
                );
                f.location = self.base_location(at);
                self.emit(obs, f);
            } else {
                self.ta1(
                    obs,
                    "024",
                    at,
                    &what,
                    None,
                    None,
                    format!(
                        "segment {what} outside a transaction set (expected GS, ST, GE or IEA)"
                    ),
                );
            }
            return;
        }
        let is_se = id == b"SE";
        if let Some(set) = &mut self.set {
            set.position = set.position.saturating_add(1);
            if let Some(v) = &mut set.validator {
                let mut bridge = Bridge { obs };
                v.segment(seg, &mut bridge);
            }
        }
        if is_se {
            self.se(seg, obs);
        }
    }

    /// [`segment`](Self::segment) for a segment inside a piece of a set ([`crate::split`]):
    /// false, with nothing done, for an envelope segment (ISA, IEA, GS, GE, ST, SE), which
    /// only the sequential checker handles.
    pub fn piece_segment<O: Observer>(&mut self, seg: &Segment<'_>, obs: &mut O) -> bool {
        if is_envelope(seg.id()) {
            return false;
        }
        let Some(set) = &mut self.set else {
            self.segment(seg, obs);
            return true;
        };
        self.last = seg.position();
        set.position = set.position.saturating_add(1);
        if let Some(v) = &mut set.validator {
            let mut bridge = Bridge { obs };
            v.segment(seg, &mut bridge);
        }
        true
    }

    fn ta1_segment<O: Observer>(&mut self, seg: &Segment<'_>, obs: &mut O) {
        let e: Vec<&[u8]> = seg.elements().collect();
        let ok = e.len() == 5
            && e[0].len() == 9
            && e[0].iter().all(u8::is_ascii_digit)
            && is_yymmdd(e[1])
            && e[2].len() == 4
            && crate::validate::element::is_time(e[2])
            && matches!(e[3], b"A" | b"E" | b"R")
            && e[4].len() == 3
            && e[4].iter().all(u8::is_ascii_digit);
        if !ok {
            self.ta1(
                obs,
                "024",
                seg.position(),
                "TA1",
                None,
                None,
                "TA1 must be TA1*<9-digit control number>*<YYMMDD>*<HHMM>*<A|E|R>*<3-digit note>"
                    .into(),
            );
        }
    }

    /// Opens an interchange from its ISA elements (element 1 first).
    fn open_interchange<O: Observer>(
        &mut self,
        obs: &mut O,
        e: &[&[u8]],
        delimiters: Delimiters,
        at: Position,
    ) {
        let get = |n: usize| e.get(n - 1).copied().unwrap_or(b"");
        let trim = |v: &[u8]| text(v).trim_end().to_string();
        let info = InterchangeInfo {
            isa13: text(get(13)),
            sender_qualifier: text(get(5)),
            sender_id: trim(get(6)),
            receiver_qualifier: text(get(7)),
            receiver_id: trim(get(8)),
            date: text(get(9)),
            time: text(get(10)),
            ack_requested: get(14) == b"1",
            usage: text(get(15)),
            version: text(get(12)),
            delimiters,
            position: at,
        };
        self.ic = Some(Interchange {
            info,
            notes: Vec::new(),
            groups: 0,
            gs06_seen: HashSet::new(),
        });
        obs.interchange_start(&self.ic.as_ref().expect("just set").info);
    }

    fn isa<O: Observer>(&mut self, seg: &Segment<'_>, obs: &mut O) {
        let at = seg.position();
        if self.ic.is_some() {
            // A new ISA before IEA: the previous interchange ended prematurely (TA1 023).
            self.finish_interchange(obs, at, false);
        }
        let e: Vec<&[u8]> = seg.elements().collect();
        let get = |n: usize| e.get(n - 1).copied().unwrap_or(b"");
        self.open_interchange(obs, &e, seg.delimiters(), at);
        type IsaCheck = (usize, &'static str, fn(&[u8]) -> bool, &'static str);
        let checks: [IsaCheck; 14] = [
            (
                1,
                "010",
                |v| v == b"00" || v == b"03",
                "ISA01 must be 00 or 03",
            ),
            (2, "011", |v| v.len() == 10, "ISA02 must be 10 characters"),
            (
                3,
                "012",
                |v| v == b"00" || v == b"01",
                "ISA03 must be 00 or 01",
            ),
            (4, "013", |v| v.len() == 10, "ISA04 must be 10 characters"),
            (
                5,
                "005",
                is_id_qualifier,
                "ISA05 is not a valid interchange ID qualifier",
            ),
            (
                6,
                "006",
                |v| v.len() == 15 && v.iter().any(|b| *b != b' '),
                "ISA06 must be 15 characters, not blank",
            ),
            (
                7,
                "007",
                is_id_qualifier,
                "ISA07 is not a valid interchange ID qualifier",
            ),
            (
                8,
                "008",
                |v| v.len() == 15 && v.iter().any(|b| *b != b' '),
                "ISA08 must be 15 characters, not blank",
            ),
            (9, "014", is_yymmdd, "ISA09 is not a valid date YYMMDD"),
            (
                10,
                "015",
                |v| v.len() == 4 && crate::validate::element::is_time(v),
                "ISA10 is not a valid time HHMM",
            ),
            (12, "017", |v| v == b"00501", "ISA12 must be 00501"),
            (
                13,
                "018",
                |v| v.len() == 9 && v.iter().all(u8::is_ascii_digit) && v != b"000000000",
                "ISA13 must be 9 digits, positive",
            ),
            (
                14,
                "019",
                |v| v == b"0" || v == b"1",
                "ISA14 must be 0 or 1",
            ),
            (
                15,
                "020",
                |v| v == b"P" || v == b"T",
                "ISA15 must be P or T",
            ),
        ];
        if e.len() != 16 {
            self.ta1(
                obs,
                "022",
                at,
                "ISA",
                None,
                None,
                format!("ISA has {} elements; it must have 16", e.len()),
            );
        }
        for (n, note, ok, msg) in checks {
            let v = get(n);
            if !ok(v) {
                let note = if n == 12 && is_known_version(v) {
                    "003"
                } else {
                    note
                };
                self.ta1(
                    obs,
                    note,
                    at,
                    "ISA",
                    Some(n as u8),
                    Some(v),
                    msg.to_string(),
                );
            }
        }
        let d = seg.delimiters();
        if d.repetition.is_none() && get(12) == b"00501" {
            self.ta1(obs, "016", at, "ISA", Some(11), Some(get(11)), "ISA11 must be the repetition separator in version 00501: not a letter, digit, space or another delimiter".into());
        }
        if !self.engine.receiver_ids.is_empty() {
            let rid = text(get(8)).trim_end().to_string();
            if !self.engine.receiver_ids.contains(&rid) {
                self.ta1(
                    obs,
                    "009",
                    at,
                    "ISA",
                    Some(8),
                    Some(get(8)),
                    format!("ISA08 {rid:?} is not one of our interchange ids"),
                );
            }
        }
    }

    fn iea<O: Observer>(&mut self, seg: &Segment<'_>, obs: &mut O) {
        let at = seg.position();
        if self.ic.is_none() {
            let mut f = Finding::new(
                "X12-OUTSIDE-INTERCHANGE",
                1,
                Ack::Report,
                "IEA without a matching ISA",
            );
            f.location = self.base_location(at);
            self.emit(obs, f);
            return;
        }
        self.missing_trailers(obs, at);
        let (groups, isa13) = {
            let ic = self.ic.as_ref().expect("checked");
            (ic.groups, ic.info.isa13.clone())
        };
        let iea01 = seg.element(1);
        if iea01 != groups.to_string().as_bytes() {
            self.ta1(
                obs,
                "021",
                at,
                "IEA",
                Some(1),
                Some(iea01),
                format!(
                    "IEA01 says {} group(s); the interchange has {groups}",
                    text(iea01)
                ),
            );
        }
        let iea02 = seg.element(2);
        if iea02 != isa13.as_bytes() {
            self.ta1(
                obs,
                "001",
                at,
                "IEA",
                Some(2),
                Some(iea02),
                format!("IEA02 {:?} does not match ISA13 {isa13:?}", text(iea02)),
            );
        }
        self.finish_interchange(obs, at, true);
    }

    /// Closes an open set and group that lack their trailers.
    fn missing_trailers<O: Observer>(&mut self, obs: &mut O, at: Position) {
        if self.set.is_some() {
            self.envelope_error(
                obs,
                "X12-SE-MISSING",
                Ack::Set("2"),
                at,
                "SE",
                None,
                None,
                "transaction set trailer SE is missing".into(),
            );
            self.end_set(obs, None);
        }
        if self.group.is_some() {
            self.envelope_error(
                obs,
                "X12-GE-MISSING",
                Ack::Group("3"),
                at,
                "GE",
                None,
                None,
                "functional group trailer GE is missing".into(),
            );
            self.end_group(obs, None);
        }
    }

    fn finish_interchange<O: Observer>(&mut self, obs: &mut O, at: Position, trailer_seen: bool) {
        if self.ic.is_none() {
            return;
        }
        if !trailer_seen {
            self.missing_trailers(obs, at);
            self.ta1(
                obs,
                "023",
                at,
                "IEA",
                None,
                None,
                "the interchange ends without IEA (file truncated?)".into(),
            );
        }
        let ic = self.ic.take().expect("checked");
        let ta1 = match ic.notes.first() {
            Some(n) => Ta1Result { code: 'R', note: n },
            None => Ta1Result {
                code: 'A',
                note: "000",
            },
        };
        obs.interchange_end(&ic.info, ta1, ic.groups);
    }

    fn gs<O: Observer>(&mut self, seg: &Segment<'_>, obs: &mut O) {
        let at = seg.position();
        if self.ic.is_none() {
            let mut f = Finding::new(
                "X12-OUTSIDE-INTERCHANGE",
                1,
                Ack::Report,
                "GS outside an interchange",
            );
            f.location = self.base_location(at);
            self.emit(obs, f);
            return;
        }
        if self.set.is_some() || self.group.is_some() {
            self.missing_trailers(obs, at);
        }
        let info = GroupInfo {
            gs01: text(seg.element(1)),
            gs02: text(seg.element(2)),
            gs03: text(seg.element(3)),
            gs04: text(seg.element(4)),
            gs05: text(seg.element(5)),
            gs06: text(seg.element(6)),
            gs08: text(seg.element(8)),
        };
        let std = self.engine.for_group(&info.gs01);
        let ic = self.ic.as_mut().expect("checked");
        ic.groups += 1;
        let duplicate = !ic.gs06_seen.insert(info.gs06.clone());
        self.group = Some(Group {
            info,
            std,
            received: 0,
            accepted: 0,
            noted: 0,
            errors: Vec::new(),
            st02_seen: HashSet::new(),
        });
        obs.group_start(&self.group.as_ref().expect("set").info);
        let g = self.group.as_ref().expect("set").info.clone();
        let mut errs: Vec<(&'static str, u8, &[u8], String)> = Vec::new();
        match std {
            None => errs.push((
                "1",
                1,
                seg.element(1),
                format!(
                    "functional group {:?} is not supported (this receiver takes BE 834 groups)",
                    g.gs01
                ),
            )),
            Some(s) if s.schema.implementation != g.gs08 => errs.push((
                "2",
                8,
                seg.element(8),
                format!(
                    "GS08 {:?} is not supported; expected {}",
                    g.gs08, s.schema.implementation
                ),
            )),
            _ => {}
        }
        let gs06 = seg.element(6);
        if gs06.is_empty() || gs06.len() > 9 || !gs06.iter().all(u8::is_ascii_digit) {
            errs.push((
                "6",
                6,
                gs06,
                "GS06 must be a number of 1 to 9 digits".into(),
            ));
        } else if duplicate {
            errs.push((
                "19",
                6,
                gs06,
                format!("GS06 {:?} is not unique within the interchange", g.gs06),
            ));
        }
        for (code, n, v, msg) in errs {
            self.envelope_error(
                obs,
                "X12-GROUP",
                Ack::Group(code),
                at,
                "GS",
                Some(n),
                Some(v),
                msg,
            );
        }
        // GS04/GS05 have no AK905 code: report them without rejecting the group.
        if crate::validate::element::parse_date(seg.element(4)).is_none() {
            let mut f = Finding::new(
                "X12-GS-DATE",
                1,
                Ack::Report,
                "GS04 is not a valid date CCYYMMDD",
            );
            f.location = self.base_location(at);
            f.location.segment_id = Some("GS".into());
            f.severity = Severity::Warning;
            self.emit(obs, f.with_value(seg.element(4), false));
        }
        if !crate::validate::element::is_time(seg.element(5)) {
            let mut f = Finding::new(
                "X12-GS-TIME",
                1,
                Ack::Report,
                "GS05 is not a valid time HHMM[SS[D[D]]]",
            );
            f.location = self.base_location(at);
            f.location.segment_id = Some("GS".into());
            f.severity = Severity::Warning;
            self.emit(obs, f.with_value(seg.element(5), false));
        }
    }

    fn ge<O: Observer>(&mut self, seg: &Segment<'_>, obs: &mut O) {
        let at = seg.position();
        if self.group.is_none() {
            self.ta1(
                obs,
                "024",
                at,
                "GE",
                None,
                None,
                "GE without a matching GS".into(),
            );
            return;
        }
        if self.set.is_some() {
            self.envelope_error(
                obs,
                "X12-SE-MISSING",
                Ack::Set("2"),
                at,
                "SE",
                None,
                None,
                "transaction set trailer SE is missing".into(),
            );
            self.end_set(obs, None);
        }
        let g = self.group.as_ref().expect("checked");
        let (received, gs06) = (g.received, g.info.gs06.clone());
        let ge01 = seg.element(1);
        let ge02 = seg.element(2);
        let mut errs = Vec::new();
        if ge01 != received.to_string().as_bytes() {
            errs.push((
                "5",
                1,
                ge01,
                format!("GE01 says {} set(s); the group has {received}", text(ge01)),
            ));
        }
        if ge02 != gs06.as_bytes() {
            errs.push((
                "4",
                2,
                ge02,
                format!("GE02 {:?} does not match GS06 {gs06:?}", text(ge02)),
            ));
        }
        for (code, n, v, msg) in errs {
            self.envelope_error(
                obs,
                "X12-GROUP",
                Ack::Group(code),
                at,
                "GE",
                Some(n),
                Some(v),
                msg,
            );
        }
        self.end_group(obs, Some(text(ge01)));
    }

    fn end_group<O: Observer>(&mut self, obs: &mut O, ge01: Option<String>) {
        let Some(g) = self.group.take() else { return };
        let code = if !g.errors.is_empty() || g.accepted == 0 {
            'R'
        } else if g.accepted < g.received {
            'P'
        } else if g.noted > 0 {
            'E'
        } else {
            'A'
        };
        let result = GroupResult {
            analysed: g.std.is_some(),
            info: g.info,
            ge01,
            received: g.received,
            accepted: if g.errors.is_empty() { g.accepted } else { 0 },
            code,
            errors: g.errors,
        };
        obs.group_end(&result);
    }

    fn st<O: Observer>(&mut self, seg: &Segment<'_>, obs: &mut O) {
        let at = seg.position();
        if self.set.is_some() {
            self.envelope_error(
                obs,
                "X12-SE-MISSING",
                Ack::Set("2"),
                at,
                "SE",
                None,
                None,
                "transaction set trailer SE is missing before the next ST".into(),
            );
            self.end_set(obs, None);
        }
        if self.group.is_none() {
            self.ta1(
                obs,
                "024",
                at,
                "ST",
                None,
                None,
                "ST outside a functional group (no GS)".into(),
            );
            return;
        }
        let info = SetInfo {
            st01: text(seg.element(1)),
            st02: text(seg.element(2)),
            st03: text(seg.element(3)),
            position: at,
        };
        let g = self.group.as_mut().expect("checked");
        g.received += 1;
        let duplicate = !g.st02_seen.insert(info.st02.clone());
        let std = g.std;
        let gs08 = g.info.gs08.clone();
        self.set = Some(Set {
            info: info.clone(),
            validator: None,
            errors: Vec::new(),
            position: 1,
        });
        obs.set_start(&info);
        let mut errs: Vec<(&'static str, u8, String)> = Vec::new();
        let supported = std.is_some_and(|s| s.schema.transaction == info.st01);
        if info.st01.is_empty() {
            errs.push(("6", 1, "ST01 is missing".into()));
        } else if !supported {
            errs.push((
                "1",
                1,
                format!(
                    "transaction set {:?} is not supported in this group",
                    info.st01
                ),
            ));
        }
        let st02 = seg.element(2);
        if st02.len() < 4 || st02.len() > 9 || !st02.iter().all(|b| (0x21..0x7f).contains(b)) {
            errs.push(("7", 2, "ST02 must be 4 to 9 characters".into()));
        } else if duplicate {
            errs.push((
                "23",
                2,
                format!("ST02 {:?} is not unique within the group", info.st02),
            ));
        }
        if let Some(s) = std.filter(|_| supported) {
            if info.st03 != s.schema.implementation || info.st03 != gs08 {
                errs.push((
                    "I6",
                    3,
                    format!(
                        "ST03 {:?} must be {} and equal GS08",
                        info.st03, s.schema.implementation
                    ),
                ));
            }
        }
        for (code, n, msg) in errs {
            let v = seg.element(n as usize);
            self.envelope_error(
                obs,
                "X12-SET",
                Ack::Set(code),
                at,
                "ST",
                Some(n),
                Some(v),
                msg,
            );
        }
        if let Some(std) = std.filter(|_| supported) {
            let sender = self
                .ic
                .as_ref()
                .map(|i| i.info.sender_id.clone())
                .unwrap_or_default();
            let mut v = SetValidator::new(std, self.engine.policy.as_deref(), sender);
            v.adopt(std::mem::take(&mut self.caches));
            let base = self.base_location(at);
            let mut bridge = Bridge { obs };
            v.start(seg, base, &mut bridge);
            if let Some(s) = &mut self.set {
                s.validator = Some(v);
            }
        }
    }

    fn se<O: Observer>(&mut self, seg: &Segment<'_>, obs: &mut O) {
        let at = seg.position();
        let (count, st02) = {
            let s = self.set.as_ref().expect("in a set");
            (s.position, s.info.st02.clone())
        };
        let se01 = seg.element(1);
        let se02 = seg.element(2);
        let mut errs = Vec::new();
        if se01 != count.to_string().as_bytes() {
            errs.push((
                "4",
                1,
                se01,
                format!(
                    "SE01 says {} segment(s); the set has {count} (ST to SE)",
                    text(se01)
                ),
            ));
        }
        if se02 != st02.as_bytes() {
            errs.push((
                "3",
                2,
                se02,
                format!("SE02 {:?} does not match ST02 {st02:?}", text(se02)),
            ));
        }
        for (code, n, v, msg) in errs {
            self.envelope_error(
                obs,
                "X12-SET",
                Ack::Set(code),
                at,
                "SE",
                Some(n),
                Some(v),
                msg,
            );
        }
        self.end_set(obs, Some(()));
    }

    fn end_set<O: Observer>(&mut self, obs: &mut O, se: Option<()>) {
        let Some(mut s) = self.set.take() else { return };
        let (mut rejecting, mut warnings, mut members, mut standard) = (0, 0, 0, 0);
        if let Some(v) = &mut s.validator {
            let mut bridge = Bridge { obs };
            v.finish(se.is_some(), &mut bridge);
            rejecting = v.rejecting;
            warnings = v.warnings;
            standard = v.standard_errors;
            members = v.tally.members;
            self.caches = v.take_caches();
        }
        let code = if !s.errors.is_empty() || rejecting > 0 {
            'R'
        } else if warnings > 0 {
            'E'
        } else {
            'A'
        };
        let mut errors = s.errors.clone();
        if rejecting > 0 || warnings > 0 {
            errors.push(if standard == 0 { "I5" } else { "5" });
        }
        if code == 'R' && errors.is_empty() {
            errors.push("5");
        }
        errors.dedup();
        errors.truncate(5);
        if let Some(g) = &mut self.group {
            if code != 'R' {
                g.accepted += 1;
            }
            if code == 'E' {
                g.noted += 1;
            }
        }
        obs.set_end(&SetResult {
            info: s.info,
            code,
            errors,
            segments: s.position,
            members,
        });
    }

    /// The set's validator, when a supported set is open.
    fn validator(&self) -> Option<&SetValidator<'e>> {
        self.set.as_ref().and_then(|s| s.validator.as_ref())
    }

    fn validator_mut(&mut self) -> Option<&mut SetValidator<'e>> {
        self.set.as_mut().and_then(|s| s.validator.as_mut())
    }

    /// True right after a segment opened a member loop of an open set: where the rest of the
    /// set can be checked in pieces ([`crate::split`]).
    pub fn at_member_start(&self) -> bool {
        self.validator().is_some_and(|v| v.at_member_start())
    }

    /// Moves out the control numbers seen so far (ST02s of the group, GS06s of the
    /// interchange), so that copies of the checker made inside a set stay cheap; pieces of a
    /// set never read them. [`Checker::restore_seen`] puts them back.
    pub fn take_seen(&mut self) -> (HashSet<String>, HashSet<String>) {
        let gs06 = self
            .ic
            .as_mut()
            .map(|i| std::mem::take(&mut i.gs06_seen))
            .unwrap_or_default();
        let st02 = self
            .group
            .as_mut()
            .map(|g| std::mem::take(&mut g.st02_seen))
            .unwrap_or_default();
        (gs06, st02)
    }

    pub fn restore_seen(&mut self, seen: (HashSet<String>, HashSet<String>)) {
        if let Some(i) = &mut self.ic {
            i.gs06_seen = seen.0;
        }
        if let Some(g) = &mut self.group {
            g.st02_seen = seen.1;
        }
    }

    /// The checker as it would be just before a later member of the open set, as far as that
    /// is known without the members in between ([`SetValidator::boundary_fork`]). `position` is
    /// the set position of the segment before that member. None outside
    /// [`at_member_start`](Self::at_member_start).
    pub fn boundary_fork(&self, position: u32) -> Option<Checker<'e>> {
        let v = self.validator().filter(|v| v.at_member_start())?;
        let fork = v.boundary_fork(position);
        let mut c = self.clone();
        if let Some(s) = &mut c.set {
            s.position = position;
            s.validator = Some(fork);
        }
        Some(c)
    }

    /// Exchanges the open set's caches with `c` ([`SetValidator::swap_caches`]): a thread
    /// checking pieces of sets ([`crate::split`]) keeps them from piece to piece.
    pub fn swap_set_caches(&mut self, c: &mut Caches<'e>) {
        if let Some(v) = self.validator_mut() {
            v.swap_caches(c);
        }
    }

    /// The open set's segment count so far (ST = 1).
    pub fn set_position(&self) -> u32 {
        self.set.as_ref().map(|s| s.position).unwrap_or(0)
    }

    /// A copy whose open set has counted `position` segments so far.
    pub fn with_position(&self, position: u32) -> Checker<'e> {
        let mut c = self.clone();
        if let Some(s) = &mut c.set {
            s.position = position;
            if let Some(v) = &mut s.validator {
                v.set_position(position);
            }
        }
        c
    }

    /// Same state apart from the counters that add up and the S3 subscriber (see
    /// [`SetValidator::same_boundary`]), envelope included.
    pub fn same_boundary(&self, o: &Checker<'_>) -> bool {
        let (Some(a), Some(b)) = (&self.set, &o.set) else {
            return false;
        };
        let (Some(va), Some(vb)) = (&a.validator, &b.validator) else {
            return false;
        };
        self.last == o.last
            && a.position == b.position
            && a.errors == b.errors
            && a.info.position == b.info.position
            && self.ic.as_ref().map(|i| &i.notes) == o.ic.as_ref().map(|i| &i.notes)
            && self.group.as_ref().map(|g| &g.errors) == o.group.as_ref().map(|g| &g.errors)
            && va.same_boundary(vb)
    }

    /// The open set's counters that add up across pieces.
    pub fn additive(&self) -> Additive {
        self.validator().map(|v| v.additive()).unwrap_or_default()
    }

    pub fn set_additive(&mut self, a: Additive) {
        if let Some(v) = self.validator_mut() {
            v.set_additive(a);
        }
    }

    /// True when the piece needed a member from before it (see [`SetValidator::needed_unknown`]).
    pub fn needed_unknown(&self) -> bool {
        self.validator().is_some_and(|v| v.needed_unknown())
    }

    pub fn inherit_subscriber(&mut self, before: &Checker<'_>) {
        if let (Some(v), Some(b)) = (self.validator_mut(), before.validator()) {
            v.inherit_subscriber(b);
        }
    }

    /// Ends the stream: closes whatever is still open.
    pub fn finish<O: Observer>(&mut self, obs: &mut O) {
        let at = self.last;
        if self.ic.is_some() {
            self.finish_interchange(obs, at, false);
        }
    }
}

fn is_id_qualifier(v: &[u8]) -> bool {
    matches!(
        v,
        b"01" | b"14" | b"20" | b"27" | b"28" | b"29" | b"30" | b"33" | b"ZZ"
    )
}

fn is_known_version(v: &[u8]) -> bool {
    matches!(
        v,
        b"00401"
            | b"00402"
            | b"00403"
            | b"00404"
            | b"00405"
            | b"00406"
            | b"00500"
            | b"00502"
            | b"00503"
            | b"00504"
            | b"00505"
            | b"00600"
            | b"00601"
            | b"00602"
            | b"00700"
            | b"00701"
    )
}

fn is_yymmdd(v: &[u8]) -> bool {
    if v.len() != 6 || !v.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n = |i: usize| ((v[i] - b'0') * 10 + (v[i + 1] - b'0')) as u32;
    // The century does not matter for validity except for 29 February.
    chrono::NaiveDate::from_ymd_opt(2000 + n(0) as i32, n(2), n(4)).is_some()
}

/// Collects findings only; handy for tests and library users.
impl Observer for Vec<Finding> {
    fn wants_records(&self) -> bool {
        false
    }
    fn finding(&mut self, f: Finding) {
        self.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_standards_are_found_by_their_own_functional_id() {
        let engine = Engine::embedded();
        for d in &engine.deferred {
            assert_eq!(d.get().schema.functional_id, d.functional_id);
            let found = engine
                .for_group(d.functional_id)
                .expect("deferred standard");
            assert!(std::ptr::eq(found, d.get()));
        }
        assert!(engine.for_group("BE").is_some());
        assert!(engine.for_group("ZZ").is_none());
    }
}
