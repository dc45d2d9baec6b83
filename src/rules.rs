//! Business rules: WEDI SNIP levels 6 (product type / line of service) and 7 (trading partner),
//! applied to normalized change records with the plan's configuration.
//!
//! A syntax-valid change can still be wrong for the employer group it claims to be for: a plan
//! the division does not offer, a child past the age limit, a termination sent months late.
//! This module decides, for each [`ChangeRecord`] of one file, which business findings it has,
//! whether it is rejected (any finding of severity error), the transaction status it starts in
//! (`Incomplete`, `Pending - awaiting Family Health Statement`, or `Pending`), and the invoice it
//! first appears on.
//!
//! It is pure: no I/O, no clock. The day comes in [`RuleContext::as_of`]; the configuration's
//! policies (`[[policies]]`) can turn any rule into a warning or switch it off for a sender or a
//! group, until a date. A business reject concerns one member's change, never the whole file.
//!
//! Family context: the rules read a file in order. A family is a run of consecutive changes with
//! the same group and subscriber id (the 834 sends the subscriber's loop, then the dependents').
//! [`Assessor`] keeps what must be remembered across families (members already seen, subscribers
//! already sent), so a streaming caller holds only one family at a time; [`assess`] runs it over
//! a whole slice.
//!
//! ```
//! use eligo::config::Config;
//! use eligo::rules::{assess, RuleContext};
//! let config = Config::embedded();
//! let ctx = RuleContext {
//!     config: &config,
//!     as_of: chrono::NaiveDate::from_ymd_opt(2025, 1, 11).unwrap(),
//!     sender: Some("ACMEHR"),
//!     file_date: None,
//! };
//! assert!(assess(&ctx, &[]).is_empty());
//! ```

use crate::changes::{ChangeKind, ChangeRecord, SourceTrace};
use crate::config::{Action, Config, Group, Plan};
use crate::enrollment::{CoverageLevel, MaintenanceReason, Relationship};
use crate::finding::{Ack, ElementPos, Finding, Location, Severity, Text};
use crate::lifecycle::TransactionStatus;
use chrono::{Datelike, Months, NaiveDate};
use std::borrow::Borrow;
use std::collections::HashSet;

/// What the rules need besides the changes.
#[derive(Debug, Clone, Copy)]
pub struct RuleContext<'a> {
    pub config: &'a Config,
    /// The processing day: invoice periods and policy expiry are counted from it.
    pub as_of: NaiveDate,
    /// The sender (ISA06 / GS02, trimmed; `PORTAL` for portal exports). `None` skips
    /// `BR-SENDER-GROUP`.
    pub sender: Option<&'a str>,
    /// The day the sender created the file (GS04). Retroactive and far-future windows are
    /// counted from it, so a file processed late is not held against its sender; without it,
    /// from `as_of`.
    pub file_date: Option<NaiveDate>,
}

impl RuleContext<'_> {
    fn reference_day(&self) -> NaiveDate {
        self.file_date.unwrap_or(self.as_of)
    }
}

/// The rules' verdict on one change, in the order of the changes assessed. (It held a copy of
/// the change's id, which nothing read: an allocation, a copy and a free for every change of
/// a run; runperf15.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub status: TransactionStatus,
    pub findings: Vec<Finding>,
    /// The invoice the change first appears on, `YYYY-MM` (None for a rejected change or a
    /// change of an unknown group).
    pub invoice_period: Option<String>,
    /// True when a finding has severity error: the change is not applied.
    pub rejected: bool,
}

/// A catalogue entry: what a rule means and how a sender fixes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleInfo {
    pub id: &'static str,
    /// WEDI SNIP level: 6 or 7.
    pub level: u8,
    /// The severity unless a policy says otherwise.
    pub severity: Severity,
    pub title: &'static str,
    pub why: &'static str,
    pub fix: &'static str,
}

macro_rules! rules {
    ($( $konst:ident = $id:literal, $level:literal, $sev:ident, $title:literal, $why:literal, $fix:literal; )+) => {
        $( pub const $konst: &str = $id; )+
        const CATALOGUE: &[RuleInfo] = &[
            $( RuleInfo { id: $id, level: $level, severity: Severity::$sev, title: $title, why: $why, fix: $fix }, )+
        ];
    };
}

rules! {
    SENDER_GROUP = "BR-SENDER-GROUP", 7, Error,
        "sender may not send for this group",
        "Only a registered trading partner may send changes, and only for the employer groups it is set up for (T1).",
        "Check ISA06/GS02 and the group number in REF*38. If the sender really administers this group, ask the plan to add the group to the partner's set-up; otherwise send the change from the right account.";
    GROUP_UNKNOWN = "BR-GROUP-UNKNOWN", 7, Error,
        "employer group not set up",
        "The group number (REF*38 or N1*P5 N104) must identify an employer group of this plan (T3).",
        "Send the group number exactly as on the group's set-up letter in REF*38.";
    DIVISION_UNKNOWN = "BR-DIVISION-UNKNOWN", 7, Error,
        "division not set up for the group",
        "A division (2750 REF*19, or 2000 REF*DX) must be one configured for the group, because the plans offered depend on it (T5).",
        "Correct the division code in the 2750 loop (N1*75*DIVISION, REF*19) to one of the group's divisions, or ask the plan to add the division.";
    PLAN_UNKNOWN = "BR-PLAN-UNKNOWN", 6, Error,
        "plan code not in the catalogue",
        "HD04 must name a plan of this plan's product catalogue (P1, T4).",
        "Send the plan code from the group's benefit summary in HD04, spelled exactly.";
    PLAN_OFFERED = "BR-PLAN-OFFERED", 7, Error,
        "plan not offered in the division on the effective date",
        "A member may only be enrolled in a plan the employer offers to the member's division on the coverage's effective date (T4, T5).",
        "Enroll the member in a plan the division offers on that date, correct the division, or correct the effective date (DTP*348).";
    PLAN_LINE = "BR-PLAN-LINE", 6, Error,
        "insurance line does not match the plan",
        "HD03 (insurance line) must be the line of the plan named in HD04, e.g. DEN for a dental plan (P1).",
        "Send HD03 matching the plan: HLT for medical plans, DEN for dental, VIS for vision.";
    COVERAGE_LEVEL = "BR-COVERAGE-LEVEL", 6, Error,
        "coverage level not offered by the plan",
        "HD05 must be one of the coverage levels (tiers) the plan offers (P2).",
        "Send one of the plan's coverage levels in HD05 (the rejected value and the allowed ones are in the message).";
    COVERAGE_DEPENDENTS = "BR-COVERAGE-DEPENDENTS", 6, Error,
        "coverage level inconsistent with the dependents enrolled",
        "The tier in HD05 must agree with the dependents sent with the subscriber: EMP none, ESP one spouse, ECH children only, FAM at least one dependent, E1D exactly one, and so on (P3). Checked when the subscriber is added or audited with the family.",
        "Send the tier that matches the family (e.g. ECH for a subscriber with children), or send the missing or extra dependents' loops.";
    RELATIONSHIP = "BR-RELATIONSHIP", 6, Error,
        "relationship not eligible for group coverage",
        "INS02 must be a relationship the group's plans cover as a dependent: spouse or life partner, or a child (natural, step, adopted, foster, ward) (T7).",
        "Correct INS02. A parent, sibling or other relative cannot be enrolled as a dependent on a group plan.";
    AGE_LIMIT = "BR-AGE-LIMIT", 7, Error,
        "dependent child over the age limit",
        "A child is covered until the group's dependent age limit (usually 26) unless disabled; INS10 = Y says the child is disabled (T7).",
        "Check the birth date in DMG02. If the child is disabled, send INS10 = Y (and the 2200 DSB); otherwise do not enroll the child.";
    EFFECTIVE_PLAN_YEAR = "BR-EFFECTIVE-PLAN-YEAR", 7, Error,
        "effective date outside the plan year",
        "Adds and plan changes must take effect inside the group's current plan year (T6).",
        "Correct the effective date (DTP*348 or DTP*303). Changes for the next plan year are accepted once the renewal is loaded.";
    EFFECTIVE_BEFORE_GROUP = "BR-EFFECTIVE-BEFORE-GROUP", 7, Error,
        "effective date before the group's",
        "No coverage can start or change before the employer group itself is covered (T6).",
        "Correct the effective date to the group's effective date or later.";
    TERM_BEFORE_EFFECTIVE = "BR-TERM-BEFORE-EFFECTIVE", 7, Error,
        "termination before the effective date",
        "A coverage cannot end (DTP*349, DTP*357) before it begins (DTP*348) (T6).",
        "Correct the end or begin date; to undo a coverage sent in error, send HD01 = 002 (cancel) instead.";
    RETRO_LIMIT = "BR-RETRO-LIMIT", 7, Error,
        "retroactive change beyond the group's window",
        "Adds and terminations may be at most the group's retro_days (default 60) before the file date; older changes need the account manager's approval (T6).",
        "Ask the plan's account manager to approve the retroactive change; it is then entered by hand. Do not resend it in a file.";
    FUTURE_DATE = "BR-FUTURE-DATE", 7, Warning,
        "effective date far in the future",
        "A date further ahead than run.future_days (default 180) is often a typing error (T6).",
        "Check the effective date. Nothing to do if it is right.";
    PCP_REQUIRED = "BR-PCP-REQUIRED", 6, Error,
        "plan requires a primary care provider",
        "HMO and POS plans with pcp_required need a PCP (2310 NM1*P3) on every enrollment in the plan (P5).",
        "Send the member's PCP in loop 2310 (NM1*P3 with the NPI) under the HD of the plan.";
    PCP_NOT_ALLOWED = "BR-PCP-NOT-ALLOWED", 6, Error,
        "PCP sent for a plan without PCPs",
        "PCP selections and changes are only for plans that use a PCP (P5).",
        "Remove the 2310 NM1*P3 loop for this plan, or check that HD04 names the right plan.";
    INCOMPLETE = "BR-INCOMPLETE", 7, Warning,
        "subscriber add missing data; held as Incomplete",
        "The administrative system needs name, birth date, gender, residence address and an effective date to enroll a subscriber. Without them the change is held in status Incomplete, not rejected (T15).",
        "Send the missing values (listed in the message) in a change for the subscriber; the held add then goes on.";
    DUPLICATE_MEMBER = "BR-DUPLICATE-MEMBER", 7, Error,
        "same member twice in one file",
        "A member's loop must appear once per file; a second one may contradict the first, so it is not applied (T11).",
        "Merge the two loops into one, or send the second change in a later file.";
    NO_SUBSCRIBER = "BR-NO-SUBSCRIBER", 7, Error,
        "dependent without its subscriber",
        "A dependent's loop must follow its subscriber's loop in the same file (T8), so the plan can tie the dependent to the right family.",
        "Send the subscriber's loop (INS*Y*18, with INS03 001 if nothing changes for the subscriber) before the dependent's.";
    SSN_FORMAT = "BR-SSN-FORMAT", 7, Error,
        "SSN in an impossible format",
        "An SSN (NM108 = 34) has nine digits, and no SSN has area 000, 666 or 900-999, group 00 or serial 0000 (T17).",
        "Send the member's real SSN, or send the member id with NM108 = ZZ if it is not an SSN.";
    BROKER_LICENSE = "BR-BROKER-LICENSE", 7, Warning,
        "broker licence number not nine digits",
        "The broker's licence (1000C N1*BO N104) is nine digits; a seven-digit one is padded with 00 automatically (T14). Anything else cannot be matched to a broker, so no commission is paid until it is fixed.",
        "Send the broker's nine-digit licence number in N104 of N1*BO.";
}

/// Every business rule, in a stable order.
pub fn catalogue() -> Vec<RuleInfo> {
    CATALOGUE.to_vec()
}

/// One rule's entry.
pub fn rule_info(id: &str) -> Option<&'static RuleInfo> {
    CATALOGUE.iter().find(|r| r.id == id)
}

/// Assesses the changes of one file or batch, in order (family context: subscriber before
/// dependents, duplicates). The result has the same order and length as `changes`.
pub fn assess(ctx: &RuleContext, changes: &[ChangeRecord]) -> Vec<Assessment> {
    assess_with(&mut Assessor::default(), ctx, changes)
}

/// [`assess`] with the rules' memory of the file so far: `changes` continue a file whose
/// earlier changes `a` has seen. They must start at a family boundary (a family cut in two
/// would lose its subscriber), so the caller hands over whole families.
///
/// The changes may be boxed: a run moves its records from thread to thread and keeps them to
/// read the next ones into, and a record is about a kilobyte (docs/performance.md, runperf15).
pub fn assess_with<R: Borrow<ChangeRecord>>(
    a: &mut Assessor,
    ctx: &RuleContext,
    changes: &[R],
) -> Vec<Assessment> {
    let mut out = Vec::with_capacity(changes.len());
    assess_into(a, ctx, changes, &mut out);
    out
}

/// [`assess_with`], its assessments appended to `out`. Why: a run assesses its changes by the
/// chunk, and a new vector per chunk (tens of kilobytes) was memory the allocator handed out
/// afresh, its pages faulted in again chunk after chunk; the run keeps one and drains it.
pub fn assess_into<R: Borrow<ChangeRecord>>(
    a: &mut Assessor,
    ctx: &RuleContext,
    changes: &[R],
    out: &mut Vec<Assessment>,
) {
    out.reserve(changes.len());
    let mut start = 0;
    for i in 1..=changes.len() {
        if i == changes.len() || !same_family(record(&changes[i - 1]), record(&changes[i])) {
            a.family_into(ctx, &changes[start..i], out);
            start = i;
        }
    }
}

/// The record `r` holds (itself, or the one in its box).
fn record<R: Borrow<ChangeRecord>>(r: &R) -> &ChangeRecord {
    r.borrow()
}

/// True when two consecutive changes belong to the same family.
pub fn same_family(a: &ChangeRecord, b: &ChangeRecord) -> bool {
    a.group_id == b.group_id && a.subscriber_id == b.subscriber_id
}

/// The rules' memory across the families of one file.
///
/// It grows with the file's members, so it keeps a 128-bit fingerprint of each key rather
/// than the key's strings: about 20 bytes a member instead of ~150 (a 1 GB change file has
/// millions of members). Two keys share a fingerprint with a probability near 2^-128 per pair,
/// far below any other failure; the fingerprint uses fixed keys, so runs stay deterministic.
#[derive(Debug, Default)]
pub struct Assessor {
    /// Members already seen (group, subscriber, member key).
    members: HashSet<u128, Fingerprints>,
    /// Subscribers whose own loop has been seen (group, subscriber id).
    subscribers: HashSet<u128, Fingerprints>,
    /// The key being fingerprinted (a buffer kept from member to member).
    key: Key,
    /// The texts the last findings were located with, shared by the next ones that have them.
    texts: Texts,
    /// Where each member loop of a family starts and ends (a buffer kept from family to family).
    runs: Vec<(usize, usize)>,
}

/// A finding's set key (ISA13, GS06, ST02) and subscriber, kept as shared [`Text`]s from one
/// finding to the next: they are the same for every finding of a set or family, so a finding
/// takes a reference to each rather than four copies (docs/performance.md, runperf13).
#[derive(Debug, Default)]
struct Texts {
    isa13: Option<Text>,
    gs06: Option<Text>,
    st02: Option<Text>,
    member: Option<Text>,
}

/// `slot`'s text when it is `s`, else a new shared text of `s`, kept in `slot` for the next.
fn shared(slot: &mut Option<Text>, s: &str) -> Text {
    match slot {
        Some(t) if t.as_str() == s => t.clone(),
        _ => slot.insert(Text::shared(s)).clone(),
    }
}

/// Hashes a set of fingerprints: a fingerprint is already a keyed hash, evenly spread, so it
/// is its own hash (its halves folded) rather than SipHashed again, which cost a run about a
/// tenth of the rules' time. Nothing iterates these sets, so no order depends on it.
#[derive(Debug, Default, Clone, Copy)]
struct Fingerprints;

impl std::hash::BuildHasher for Fingerprints {
    type Hasher = Folded;
    fn build_hasher(&self) -> Folded {
        Folded(0)
    }
}

/// The [`Hasher`](std::hash::Hasher) of [`Fingerprints`].
#[derive(Debug)]
struct Folded(u64);

impl std::hash::Hasher for Folded {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= (v as u64) ^ ((v >> 64) as u64);
    }
    /// Anything but a u128 (never hashed here): fold its bytes in, still deterministic.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

/// A 128-bit fingerprint of `parts` (two SipHash-2-4 passes with fixed keys and distinct
/// domain tags over [`Key`]'s bytes).
#[cfg(test)]
fn fingerprint(parts: &[Option<&str>]) -> u128 {
    let mut k = Key::default();
    for p in parts {
        k.push(*p);
    }
    k.fingerprint()
}

/// The bytes a fingerprint hashes, built part by part: each part a presence byte, then, when
/// present, its length (8 bytes) and its bytes, so ("ab", "c") and ("a", "bc") differ, and so
/// do `None` and `Some("")`. Hashed whole, with one `write` per SipHash pass: hashing each
/// part through `Hash` cost four small writes a part (SipHash's buffering of each), about
/// twice the hashing itself (docs/performance.md, runperf3). A key's prefix is fingerprinted
/// on the way (the subscriber's key is the member's without its last part).
#[derive(Debug, Default)]
struct Key(Vec<u8>);

impl Key {
    fn clear(&mut self) {
        self.0.clear();
    }

    fn push(&mut self, part: Option<&str>) {
        match part {
            None => self.0.push(0),
            Some(p) => {
                self.0.push(1);
                self.0.extend_from_slice(&(p.len() as u64).to_le_bytes());
                self.0.extend_from_slice(p.as_bytes());
            }
        }
    }

    fn fingerprint(&self) -> u128 {
        use std::hash::Hasher;
        let half = |tag: u8| {
            #[allow(deprecated)]
            let mut h = std::hash::SipHasher::new_with_keys(0x656c_6967_6f00 + u64::from(tag), 0);
            h.write(&self.0);
            h.finish()
        };
        (u128::from(half(1)) << 64) | u128::from(half(2))
    }
}

/// Which occurrence of a member a change comes from: the X12 set, or the portal row.
/// ([`same_occurrence`] compares two without building it.)
fn occurrence(r: &ChangeRecord) -> (String, u64) {
    match &r.source {
        SourceTrace::X12 {
            file,
            isa13,
            gs06,
            st02,
            ..
        } => (format!("{file}/{isa13}/{gs06}/{st02}"), 0),
        SourceTrace::Portal {
            file, first_row, ..
        } => (file.clone(), *first_row),
    }
}

/// Whether two changes come from the same occurrence: `occurrence(a) == occurrence(b)`, without
/// formatting either for the common case (two changes of one X12 set).
fn same_occurrence(a: &ChangeRecord, b: &ChangeRecord) -> bool {
    match (&a.source, &b.source) {
        (
            SourceTrace::X12 {
                file: f1,
                isa13: i1,
                gs06: g1,
                st02: s1,
                ..
            },
            SourceTrace::X12 {
                file: f2,
                isa13: i2,
                gs06: g2,
                st02: s2,
                ..
            },
        ) => {
            // "{file}/{isa13}/{gs06}/{st02}" compared: the parts equal, or (a file name
            // holds '/') the same bytes joined otherwise.
            let (p1, p2) = ([f1, i1, g1, s1], [f2, i2, g2, s2]);
            if p1 == p2 {
                return true;
            }
            let len = |p: &[&String; 4]| p.iter().map(|s| s.len()).sum::<usize>();
            len(&p1) == len(&p2)
                && p1
                    .iter()
                    .enumerate()
                    .flat_map(|(i, s)| (i > 0).then_some(b'/').into_iter().chain(s.bytes()))
                    .eq(p2
                        .iter()
                        .enumerate()
                        .flat_map(|(i, s)| (i > 0).then_some(b'/').into_iter().chain(s.bytes())))
        }
        _ => occurrence(a) == occurrence(b),
    }
}

/// Whether two changes are of the same member: `member_key(a) == member_key(b)`, comparing the
/// ids when both have one (the common case) rather than copying them.
fn same_member(a: &ChangeRecord, b: &ChangeRecord) -> bool {
    if !a.member_id.is_empty() && !b.member_id.is_empty() {
        return a.member_id == b.member_id;
    }
    member_key(a) == member_key(b)
}

/// What tells a member apart within its family: its id, or (a dependent without one) its
/// relationship, name and birth date. Borrowed when it is the id.
fn member_key(r: &ChangeRecord) -> std::borrow::Cow<'_, str> {
    if !r.member_id.is_empty() {
        return std::borrow::Cow::Borrowed(&r.member_id);
    }
    // A dependent without its own id: its name and birth date tell it apart.
    let name = r.new.name.as_ref().map(|n| {
        format!(
            "{}|{}",
            n.last.to_ascii_uppercase(),
            n.first.clone().unwrap_or_default().to_ascii_uppercase()
        )
    });
    let dob = r
        .new
        .demographics
        .as_ref()
        .and_then(|d| d.birth_date)
        .map(|d| d.to_string());
    std::borrow::Cow::Owned(format!(
        "{}|{}|{}",
        r.relationship.code(),
        name.unwrap_or_default(),
        dob.unwrap_or_default()
    ))
}

impl Assessor {
    /// Assesses one family (consecutive changes with one group and subscriber id).
    pub fn family(&mut self, ctx: &RuleContext, family: &[ChangeRecord]) -> Vec<Assessment> {
        let mut out = Vec::with_capacity(family.len());
        self.family_into(ctx, family, &mut out);
        out
    }

    /// [`Assessor::family`], its assessments appended to `out`: a run assesses its changes by
    /// the chunk, and a vector per family cost an allocation and a copy of each assessment.
    fn family_into<R: Borrow<ChangeRecord>>(
        &mut self,
        ctx: &RuleContext,
        family: &[R],
        out: &mut Vec<Assessment>,
    ) {
        // Runs of consecutive changes of one member from one occurrence are one member loop
        // (a buffer kept from family to family).
        let mut runs = std::mem::take(&mut self.runs);
        runs.clear();
        for (i, r) in family.iter().map(record).enumerate() {
            match runs.last_mut() {
                Some((s, e))
                    if same_member(record(&family[*s]), r)
                        && same_occurrence(record(&family[*s]), r) =>
                {
                    *e = i + 1
                }
                _ => runs.push((i, i + 1)),
            }
        }
        let subscriber_division = family
            .iter()
            .map(record)
            .find(|r| r.relationship == Relationship::SelfSubscriber)
            .and_then(|r| r.division.as_deref().or(r.new.division.as_deref()));
        // The subscriber's key (group, subscriber id) and its fingerprint, from the run that
        // made them: the next runs of the family have the same, so each is hashed once a family
        // rather than once a member loop (two SipHash passes of the four a loop cost).
        let mut prefix: Option<(usize, u128, usize)> = None;
        for &(s, e) in &runs {
            let first = record(&family[s]);
            let k = &mut self.key;
            let sub_key = match prefix {
                Some((p, sub_key, len)) if same_family(record(&family[p]), first) => {
                    k.0.truncate(len);
                    sub_key
                }
                _ => {
                    k.clear();
                    k.push(first.group_id.as_deref());
                    k.push(Some(first.subscriber_id.as_str()));
                    let sub_key = k.fingerprint();
                    prefix = Some((s, sub_key, k.0.len()));
                    sub_key
                }
            };
            k.push(Some(&member_key(first)));
            let key = k.fingerprint();
            let duplicate = !self.members.insert(key);
            let is_sub = first.relationship == Relationship::SelfSubscriber;
            let orphan = if is_sub {
                self.subscribers.insert(sub_key);
                false
            } else {
                matches!(first.source, SourceTrace::X12 { .. })
                    && !self.subscribers.contains(&sub_key)
            };
            for r in family[s..e].iter().map(record) {
                let mut c = Check::new(ctx, r, &mut self.texts);
                if duplicate {
                    c.add(
                        DUPLICATE_MEMBER,
                        INS02,
                        None,
                        format!(
                            "member {} of subscriber {} appears more than once in this file; this later loop is not applied",
                            show_member(r),
                            r.subscriber_id
                        ),
                    );
                }
                if orphan {
                    c.add(
                        NO_SUBSCRIBER,
                        INS02,
                        Some(r.relationship.code().into()),
                        format!(
                            "the dependent's subscriber {} has no loop before it in this file",
                            r.subscriber_id
                        ),
                    );
                }
                // Borrowed: a copy of the division for every change cost an allocation each.
                let division = r
                    .division
                    .as_deref()
                    .or_else(|| (!is_sub).then_some(subscriber_division).flatten());
                c.run(division, family);
                out.push(c.finish());
            }
        }
        self.runs = runs;
    }
}

fn show_member(r: &ChangeRecord) -> String {
    if r.member_id.is_empty() {
        format!("({})", r.relationship.label())
    } else {
        r.member_id.clone()
    }
}

/// Where in the member loop a finding points: segment id, element and implementation-guide loop.
/// The report finds the segment among the member's by id and the finding's value.
#[derive(Debug, Clone, Copy)]
struct Spot {
    segment: &'static str,
    element: u8,
    loop_id: &'static str,
}

const fn spot(segment: &'static str, element: u8, loop_id: &'static str) -> Spot {
    Spot {
        segment,
        element,
        loop_id,
    }
}

const INS02: Spot = spot("INS", 2, "2000");
const INS03: Spot = spot("INS", 3, "2000");
const REF38: Spot = spot("REF", 2, "HEADER");
const ISA06: Spot = spot("ISA", 6, "ISA");
const DIVISION: Spot = spot("REF", 2, "2750");
const HD03: Spot = spot("HD", 3, "2300");
const HD04: Spot = spot("HD", 4, "2300");
const HD05: Spot = spot("HD", 5, "2300");
const PCP: Spot = spot("NM1", 9, "2310");
const DMG02: Spot = spot("DMG", 2, "2100A");
const NM109: Spot = spot("NM1", 9, "2100A");
const N104_BROKER: Spot = spot("N1", 4, "1000C");
const DTP_COVERAGE: Spot = spot("DTP", 3, "2300");
const DTP_MEMBER: Spot = spot("DTP", 3, "2000");

fn d8(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// The rules for one change.
struct Check<'c, 'a> {
    ctx: &'c RuleContext<'a>,
    r: &'c ChangeRecord,
    group: Option<&'a Group>,
    findings: Vec<Finding>,
    status: TransactionStatus,
    texts: &'c mut Texts,
}

const DEPENDENT_CHILD: &[Relationship] = &[
    Relationship::Child,
    Relationship::Stepchild,
    Relationship::AdoptedChild,
    Relationship::FosterChild,
];

const ELIGIBLE_DEPENDENT: &[Relationship] = &[
    Relationship::Spouse,
    Relationship::LifePartner,
    Relationship::Child,
    Relationship::Stepchild,
    Relationship::AdoptedChild,
    Relationship::FosterChild,
    Relationship::Ward,
    Relationship::CourtAppointedGuardian,
    Relationship::SponsoredDependent,
];

fn is_spouse(r: Relationship) -> bool {
    matches!(r, Relationship::Spouse | Relationship::LifePartner)
}

impl<'c, 'a> Check<'c, 'a> {
    fn new(ctx: &'c RuleContext<'a>, r: &'c ChangeRecord, texts: &'c mut Texts) -> Self {
        let group = r.group_id.as_deref().and_then(|g| ctx.config.group(g));
        Check {
            ctx,
            r,
            group,
            findings: Vec::new(),
            status: TransactionStatus::Pending,
            texts,
        }
    }

    /// Adds a finding for `rule`, with the severity the policies give it (or none if ignored).
    fn add(&mut self, rule: &'static str, spot: Spot, value: Option<String>, message: String) {
        let info = rule_info(rule).expect("rule is in the catalogue");
        let severity = match self.ctx.config.action_for(
            rule,
            self.ctx.sender,
            self.r.group_id.as_deref(),
            self.ctx.as_of,
        ) {
            Some(Action::Ignore) => return,
            Some(Action::Warn) => Severity::Warning,
            Some(Action::Reject) => Severity::Error,
            None => info.severity,
        };
        let mut loc = Location {
            member: Some(shared(&mut self.texts.member, &self.r.subscriber_id)),
            segment_id: Some(spot.segment.into()),
            element: Some(ElementPos {
                element: spot.element,
                ..Default::default()
            }),
            loop_id: Some(spot.loop_id.into()),
            ..Location::default()
        };
        match &self.r.source {
            SourceTrace::X12 {
                isa13,
                gs06,
                st02,
                first_segment,
                ..
            } => {
                loc.isa13 = Some(shared(&mut self.texts.isa13, isa13));
                loc.gs06 = Some(shared(&mut self.texts.gs06, gs06));
                loc.st02 = Some(shared(&mut self.texts.st02, st02));
                loc.segment_position = Some(*first_segment);
            }
            SourceTrace::Portal { first_row, .. } => loc.line = *first_row,
        }
        let phi = spot.loop_id == "2100A";
        let mut f = Finding::new(rule, info.level, Ack::Report, message);
        f.severity = severity;
        f.location = loc;
        f.value = value;
        f.phi = phi;
        self.findings.push(f);
    }

    fn finish(self) -> Assessment {
        let rejected = self.findings.iter().any(|f| f.severity == Severity::Error);
        let invoice_period = match (rejected, self.group) {
            (false, Some(g)) => Some(invoice_period(g, self.ctx.as_of, self.r.effective_date)),
            _ => None,
        };
        Assessment {
            status: self.status,
            findings: self.findings,
            invoice_period,
            rejected,
        }
    }

    fn run<R: Borrow<ChangeRecord>>(&mut self, division: Option<&str>, family: &[R]) {
        let r = self.r;
        let ctx = self.ctx;
        // Sender and group.
        let Some(group_id) = r.group_id.as_deref() else {
            self.add(
                GROUP_UNKNOWN,
                REF38,
                None,
                "no group number was sent (REF*38 or N1*P5 N104)".into(),
            );
            return;
        };
        let Some(group) = self.group else {
            self.add(
                GROUP_UNKNOWN,
                REF38,
                Some(group_id.into()),
                format!("group {group_id:?} is not an employer group of this plan"),
            );
            return;
        };
        if let Some(sender) = ctx.sender {
            match ctx.config.partner(sender) {
                None => self.add(
                    SENDER_GROUP,
                    ISA06,
                    Some(sender.into()),
                    format!("sender {sender:?} is not a registered trading partner"),
                ),
                Some(p) if !p.groups.iter().any(|g| g == group_id) => self.add(
                    SENDER_GROUP,
                    ISA06,
                    Some(sender.into()),
                    format!(
                        "sender {sender:?} ({}) may not send changes for group {group_id} ({})",
                        p.name, group.name
                    ),
                ),
                Some(_) => {}
            }
        }
        // Division.
        let division = match division {
            Some(d) => match group.division(d) {
                Some(_) => Some(d),
                None => {
                    let known: Vec<&str> = group.divisions.iter().map(|d| d.id.as_str()).collect();
                    self.add(
                        DIVISION_UNKNOWN,
                        DIVISION,
                        Some(d.into()),
                        format!(
                            "division {d:?} is not a division of group {group_id}; its divisions are {}",
                            known.join(", ")
                        ),
                    );
                    return;
                }
            },
            None => None,
        };
        let kind = r.kind;
        let is_add = matches!(
            kind,
            ChangeKind::AddSubscriber | ChangeKind::AddDependent | ChangeKind::AddCoverage
        );
        let enrolls = is_add
            || matches!(
                kind,
                ChangeKind::PlanChange
                    | ChangeKind::Reinstate
                    | ChangeKind::Audit
                    | ChangeKind::CoverageLevelChange
            );
        // Relationship.
        if r.relationship != Relationship::SelfSubscriber
            && enrolls
            && !ELIGIBLE_DEPENDENT.contains(&r.relationship)
        {
            self.add(
                RELATIONSHIP,
                INS02,
                Some(r.relationship.code().into()),
                format!(
                    "relationship {} ({}) is not eligible for coverage as a dependent",
                    r.relationship.code(),
                    r.relationship.label()
                ),
            );
        }
        // Plans.
        let offer_day = match kind {
            // An audit restates coverage already on file: the plan must be offered today.
            ChangeKind::Audit => Some(ctx.as_of),
            _ => r.effective_date,
        };
        for cov in &r.new.coverages {
            let Some(code) = cov.plan.as_deref() else {
                continue;
            };
            let Some(plan) = ctx.config.plan(code) else {
                if enrolls {
                    self.add(
                        PLAN_UNKNOWN,
                        HD04,
                        Some(code.into()),
                        format!("plan {code:?} is not in the plan catalogue"),
                    );
                }
                continue;
            };
            if cov.insurance_line.code() != plan.line {
                self.add(
                    PLAN_LINE,
                    HD03,
                    Some(cov.insurance_line.code().into()),
                    format!(
                        "HD03 {} does not match plan {code:?}, whose line is {}",
                        cov.insurance_line.code(),
                        plan.line
                    ),
                );
            }
            if let Some(level) = cov.coverage_level {
                if !plan.coverage_levels.iter().any(|l| l == level.code()) {
                    self.add(
                        COVERAGE_LEVEL,
                        HD05,
                        Some(level.code().into()),
                        format!(
                            "coverage level {} is not offered by plan {code:?} (it offers {})",
                            level.code(),
                            plan.coverage_levels.join(", ")
                        ),
                    );
                }
            }
            if let Some(day) = offer_day.filter(|_| enrolls) {
                self.offered(group, division, plan, day);
            }
            // PCP.
            let needs_pcp = is_add || kind == ChangeKind::PlanChange;
            if plan.pcp_required && needs_pcp && cov.pcp.is_none() && cov.end.is_none() {
                self.add(
                    PCP_REQUIRED,
                    HD04,
                    Some(code.into()),
                    format!(
                        "plan {code:?} ({}) requires a primary care provider and none was sent",
                        plan.name
                    ),
                );
            }
            if !plan.pcp_required && cov.pcp.is_some() {
                let id = cov
                    .pcp
                    .as_ref()
                    .and_then(|p| p.npi.clone().or(p.provider_id.clone()));
                self.add(
                    PCP_NOT_ALLOWED,
                    PCP,
                    id,
                    format!(
                        "a PCP was sent for plan {code:?} ({}), which does not use PCPs",
                        plan.name
                    ),
                );
            }
            // Tier against the family.
            if r.relationship == Relationship::SelfSubscriber
                && matches!(kind, ChangeKind::AddSubscriber | ChangeKind::Audit)
            {
                if let Some(level) = cov.coverage_level {
                    self.tier(level, cov.insurance_line.code(), family);
                }
            }
        }
        // Dates.
        self.dates(group);
        // Age.
        if DEPENDENT_CHILD.contains(&r.relationship) && enrolls {
            self.age(group);
        }
        // SSN.
        if let Some(ssn) = r.new.ssn.as_deref() {
            if !ssn_possible(ssn) {
                self.add(
                    SSN_FORMAT,
                    NM109,
                    Some(ssn.into()),
                    "the SSN in NM109 (NM108 = 34) is not a possible SSN".into(),
                );
            }
        }
        // Broker.
        if let Some(lic) = r.broker_license.as_deref() {
            if !(lic.len() == 9 && lic.bytes().all(|b| b.is_ascii_digit())) {
                self.add(
                    BROKER_LICENSE,
                    N104_BROKER,
                    Some(lic.into()),
                    format!("broker licence {lic:?} is neither nine nor seven digits"),
                );
            }
        }
        // Status (only for changes that go on).
        if kind == ChangeKind::AddSubscriber {
            let missing = missing_subscriber_data(r);
            if !missing.is_empty() {
                self.add(
                    INCOMPLETE,
                    INS03,
                    None,
                    format!(
                        "subscriber add is missing {}; it is held as Incomplete",
                        missing.join(", ")
                    ),
                );
                self.status = TransactionStatus::Incomplete;
                return;
            }
        }
        let newborn = r.reason == Some(MaintenanceReason::Birth);
        if group.needs_fhs()
            && (kind == ChangeKind::AddSubscriber || (kind == ChangeKind::AddDependent && !newborn))
        {
            self.status = TransactionStatus::PendingFhs;
        }
    }

    fn offered(&mut self, group: &Group, division: Option<&str>, plan: &Plan, day: NaiveDate) {
        let offers = |d: &crate::config::Division| {
            d.plans.iter().any(|o| o.plan == plan.code && o.covers(day))
        };
        let ok = match division.and_then(|d| group.division(d)) {
            Some(d) => offers(d),
            // No division sent: the plan must be offered in one of the group's divisions.
            None => group.divisions.iter().any(offers),
        };
        if !ok {
            let where_ = match division {
                Some(d) => format!("division {d} of group {}", group.id),
                None => format!("any division of group {}", group.id),
            };
            self.add(
                PLAN_OFFERED,
                HD04,
                Some(plan.code.clone()),
                format!(
                    "plan {:?} ({}) is not offered in {where_} on {day}",
                    plan.code, plan.name
                ),
            );
        }
    }

    fn tier<R: Borrow<ChangeRecord>>(&mut self, level: CoverageLevel, line: &str, family: &[R]) {
        // The dependents sent with the subscriber that enroll in the same line.
        let mut seen = HashSet::new();
        let deps: Vec<Relationship> = family
            .iter()
            .map(record)
            .filter(|d| d.relationship != Relationship::SelfSubscriber)
            .filter(|d| {
                matches!(d.kind, ChangeKind::AddDependent | ChangeKind::Audit)
                    && d.new
                        .coverages
                        .iter()
                        .any(|c| c.insurance_line.code() == line)
            })
            .filter(|d| seen.insert(member_key(d)))
            .map(|d| d.relationship)
            .collect();
        let spouses = deps.iter().filter(|r| is_spouse(**r)).count();
        let children = deps.len() - spouses;
        let n = deps.len();
        use CoverageLevel::*;
        let ok = match level {
            EmployeeOnly | Individual => n == 0,
            EmployeeAndSpouse => spouses == 1 && children == 0,
            EmployeeAndChildren => children >= 1 && spouses == 0,
            Family => n >= 1,
            TwoParty => n == 1,
            EmployeeAndOneDependent => n == 1,
            EmployeeAndTwoDependents => n == 2,
            EmployeeAndThreeDependents => n == 3,
            EmployeeAndOneOrMore => n >= 1,
            EmployeeAndTwoOrMore => n >= 2,
            EmployeeAndThreeOrMore => n >= 3,
            EmployeeAndFourOrMore => n >= 4,
            EmployeeAndFiveOrMore => n >= 5,
            // Tiers without the subscriber are for 032 subscriber loops; not judged here.
            ChildrenOnly | DependentsOnly | SpouseAndChildren | SpouseOnly => true,
        };
        if !ok {
            self.add(
                COVERAGE_DEPENDENTS,
                HD05,
                Some(level.code().into()),
                format!(
                    "coverage level {} ({}) does not match the {line} dependents sent with the subscriber: {spouses} spouse(s), {children} child(ren)",
                    level.code(),
                    level.label()
                ),
            );
        }
    }

    fn dates(&mut self, group: &Group) {
        let r = self.r;
        let ctx = self.ctx;
        let kind = r.kind;
        // Coverage end before its begin, whatever the change.
        for cov in &r.new.coverages {
            if let (Some(b), Some(e)) = (cov.begin, cov.end) {
                if e < b {
                    self.add(
                        TERM_BEFORE_EFFECTIVE,
                        DTP_COVERAGE,
                        Some(d8(e)),
                        format!("coverage ends on {e}, before it begins on {b}"),
                    );
                }
            }
        }
        let Some(eff) = r.effective_date else { return };
        if kind == ChangeKind::Audit {
            return;
        }
        let is_term = matches!(
            kind,
            ChangeKind::TerminateMember | ChangeKind::TerminateCoverage
        );
        let on_coverage = r
            .new
            .coverages
            .iter()
            .any(|c| c.begin == Some(eff) || c.end == Some(eff));
        let date_spot = if on_coverage {
            DTP_COVERAGE
        } else {
            DTP_MEMBER
        };
        if is_term {
            if let Some(b) = r.new.coverages.iter().filter_map(|c| c.begin).max() {
                if eff < b && r.new.coverages.iter().all(|c| c.end.is_none()) {
                    self.add(
                        TERM_BEFORE_EFFECTIVE,
                        date_spot,
                        Some(d8(eff)),
                        format!("termination on {eff} is before the coverage begins on {b}"),
                    );
                }
            }
        }
        if eff < group.effective {
            self.add(
                EFFECTIVE_BEFORE_GROUP,
                date_spot,
                Some(d8(eff)),
                format!(
                    "effective date {eff} is before group {} is effective ({})",
                    group.id, group.effective
                ),
            );
        } else if matches!(
            kind,
            ChangeKind::AddSubscriber
                | ChangeKind::AddDependent
                | ChangeKind::AddCoverage
                | ChangeKind::PlanChange
                | ChangeKind::CoverageLevelChange
                | ChangeKind::Reinstate
        ) {
            let (start, end) = group.plan_year();
            if eff < start || eff > end {
                self.add(
                    EFFECTIVE_PLAN_YEAR,
                    date_spot,
                    Some(d8(eff)),
                    format!(
                        "effective date {eff} is outside group {}'s plan year {start} to {end}",
                        group.id
                    ),
                );
            }
        }
        let day = ctx.reference_day();
        let retro_kind = is_term
            || matches!(
                kind,
                ChangeKind::AddSubscriber
                    | ChangeKind::AddDependent
                    | ChangeKind::AddCoverage
                    | ChangeKind::Reinstate
            );
        if retro_kind {
            let limit = day - chrono::Days::new(group.retro_days as u64);
            if eff < limit {
                self.add(
                    RETRO_LIMIT,
                    date_spot,
                    Some(d8(eff)),
                    format!(
                        "{} effective {eff} is {} days before the file date {day}; group {} allows {} days",
                        if is_term { "termination" } else { "add" },
                        (day - eff).num_days(),
                        group.id,
                        group.retro_days
                    ),
                );
            }
        }
        let future = day + chrono::Days::new(ctx.config.run.future_days as u64);
        if eff > future {
            self.add(
                FUTURE_DATE,
                date_spot,
                Some(d8(eff)),
                format!(
                    "effective date {eff} is more than {} days after the file date {day}",
                    ctx.config.run.future_days
                ),
            );
        }
    }

    fn age(&mut self, group: &Group) {
        let r = self.r;
        let Some(dob) = r.new.demographics.as_ref().and_then(|d| d.birth_date) else {
            return;
        };
        let on = match r.kind {
            ChangeKind::Audit => self.ctx.as_of,
            _ => r.effective_date.unwrap_or(self.ctx.as_of),
        };
        let age = age_on(dob, on);
        if age >= group.dependent_age_limit && r.new.handicapped != Some(true) {
            self.add(
                AGE_LIMIT,
                DMG02,
                Some(d8(dob)),
                format!(
                    "the child is {age} on {on}; group {} covers children until {} unless disabled (INS10 = Y)",
                    group.id, group.dependent_age_limit
                ),
            );
        }
    }
}

/// Whole years from `dob` to `on`.
pub fn age_on(dob: NaiveDate, on: NaiveDate) -> u32 {
    let mut years = on.year() - dob.year();
    if (on.month(), on.day()) < (dob.month(), dob.day()) {
        years -= 1;
    }
    years.max(0) as u32
}

/// False for values no SSN can have: not nine digits (dashes allowed in the usual places), area
/// 000, 666 or 900–999, group 00, serial 0000.
pub fn ssn_possible(v: &str) -> bool {
    let digits: String = v.chars().filter(|c| *c != '-').collect();
    if digits.len() != 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if v.contains('-') && !(v.len() == 11 && &v[3..4] == "-" && &v[6..7] == "-") {
        return false;
    }
    let area = &digits[0..3];
    area != "000"
        && area != "666"
        && !area.starts_with('9')
        && &digits[3..5] != "00"
        && &digits[5..9] != "0000"
}

/// What a subscriber add lacks that the administrative system needs.
fn missing_subscriber_data(r: &ChangeRecord) -> Vec<&'static str> {
    let d = &r.new;
    let mut m = Vec::new();
    match &d.name {
        Some(n) if !n.last.is_empty() && n.first.is_some() => {}
        _ => m.push("first and last name (NM103, NM104)"),
    }
    let demo = d.demographics.as_ref();
    if demo.and_then(|x| x.birth_date).is_none() {
        m.push("birth date (DMG02)");
    }
    if demo.and_then(|x| x.gender).is_none() {
        m.push("gender (DMG03)");
    }
    match &d.residence {
        Some(a) if !a.line1.is_empty() && !a.city.is_empty() && a.postal_code.is_some() => {}
        _ => m.push("residence address (N3, N4)"),
    }
    if r.effective_date.is_none() {
        m.push("effective date (DTP*348)");
    }
    if d.coverages.is_empty() {
        m.push("a coverage (HD)");
    }
    m
}

/// The invoice (`YYYY-MM`) a change processed on `as_of` first appears on.
///
/// The invoice of month M is cut on the group's `invoice_day` of M; changes arriving fewer than
/// `invoice_cutoff_days` before that day go on the next month's invoice (T16). A change effective
/// in a later month first appears on that month's invoice.
pub fn invoice_period(group: &Group, as_of: NaiveDate, effective: Option<NaiveDate>) -> String {
    let month_start = |d: NaiveDate| d.with_day(1).unwrap_or(d);
    let cut = |m: NaiveDate| {
        let invoice = m.with_day(group.invoice_day).unwrap_or(m);
        invoice - chrono::Days::new(group.invoice_cutoff_days as u64)
    };
    let mut m = month_start(as_of);
    if as_of > cut(m) {
        m = m.checked_add_months(Months::new(1)).unwrap_or(m);
    }
    if let Some(e) = effective.map(month_start) {
        if e > m {
            m = e;
        }
    }
    year_month(m)
}

/// `d` as `YYYY-MM` (chrono's `%Y-%m`), written directly for the years of four digits.
fn year_month(d: NaiveDate) -> String {
    let (y, m) = (d.year(), d.month());
    if !(0..=9999).contains(&y) {
        return d.format("%Y-%m").to_string();
    }
    let (y, m) = (y as u32, m as u8);
    let digit = |v: u32| char::from(b'0' + (v % 10) as u8);
    let mut s = String::with_capacity(7);
    s.push(digit(y / 1000));
    s.push(digit(y / 100));
    s.push(digit(y / 10));
    s.push(digit(y));
    s.push('-');
    s.push(digit(u32::from(m) / 10));
    s.push(digit(u32::from(m)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_text_is_kept_while_it_is_asked_for_again() {
        let mut slot = None;
        let a = shared(&mut slot, "0001");
        let b = shared(&mut slot, "0001");
        let same = |x: &Text, y: &Text| match (x, y) {
            (Text::Shared(x), Text::Shared(y)) => std::sync::Arc::ptr_eq(x, y),
            _ => false,
        };
        assert!(same(&a, &b));
        let c = shared(&mut slot, "0002");
        assert_eq!((a.as_str(), c.as_str()), ("0001", "0002"));
        assert!(!same(&a, &c) && same(&c, &shared(&mut slot, "0002")));
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn fingerprints_keep_keys_apart() {
        let f = |p: &[Option<&str>]| fingerprint(p);
        assert_ne!(f(&[Some("ab"), Some("c")]), f(&[Some("a"), Some("bc")]));
        assert_ne!(f(&[None, Some("1")]), f(&[Some(""), Some("1")]));
        assert_ne!(f(&[Some("G"), Some("1")]), f(&[Some("G"), Some("2")]));
        assert_eq!(f(&[Some("G"), Some("1")]), f(&[Some("G"), Some("1")]));
    }

    #[test]
    fn catalogue_ids_are_unique_and_documented() {
        let c = catalogue();
        let ids: HashSet<&str> = c.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), c.len());
        for r in &c {
            assert!(r.id.starts_with("BR-"));
            assert!(matches!(r.level, 6 | 7));
            assert!(!r.why.is_empty() && !r.fix.is_empty());
        }
    }

    #[test]
    fn ages_count_whole_years() {
        assert_eq!(age_on(day(1999, 2, 1), day(2025, 1, 31)), 25);
        assert_eq!(age_on(day(1999, 2, 1), day(2025, 2, 1)), 26);
    }

    #[test]
    fn impossible_ssns() {
        assert!(ssn_possible("123456789"));
        assert!(ssn_possible("123-45-6789"));
        for bad in [
            "12345678",
            "000456789",
            "666456789",
            "900456789",
            "123006789",
            "123450000",
            "12-345-6789",
        ] {
            assert!(!ssn_possible(bad), "{bad}");
        }
    }

    #[test]
    fn invoice_period_moves_past_the_cutoff() {
        let g = Config::embedded().group("GRP1001").unwrap().clone();
        // invoice day 15, cut-off 5 days: the 10th is the last day for this month's invoice.
        assert_eq!(invoice_period(&g, day(2025, 1, 10), None), "2025-01");
        assert_eq!(invoice_period(&g, day(2025, 1, 11), None), "2025-02");
        assert_eq!(
            invoice_period(&g, day(2025, 1, 5), Some(day(2025, 3, 1))),
            "2025-03"
        );
        assert_eq!(invoice_period(&g, day(2025, 12, 20), None), "2026-01");
    }
}
