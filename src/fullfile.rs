//! Full-file compare: a full file (BGN08 `4` or `RX`) lists every member of a group as the sender
//! has it today (INS03 `030`, audit). Compared with the enrollment the plan holds, it gives the
//! changes: adds for members not enrolled, a `member_change` for members whose values differ, and
//! for active members the file no longer lists, what the group's `omission` policy says:
//! terminate them, report them, or nothing.
//!
//! Also here: [`apply`], the effect of a submitted change on the stored enrollment.
//!
//! Pure: no store, no files. Memory holds the group's enrollment (one entry per member).

use crate::changes::{ChangeKind, ChangeRecord, SourceTrace};
use crate::config::OmissionPolicy;
use crate::enrollment::{MemberData, Relationship};
use crate::store::Enrolled;
use chrono::{Datelike, Duration, NaiveDate};
use std::collections::{HashMap, HashSet};

/// What comparing one full file for one group gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// The derived changes, in file order, implied terminations last.
    pub changes: Vec<ChangeRecord>,
    /// Members the file omits that the policy only reports (member ids).
    pub omitted_reported: Vec<String>,
    /// Implied terminations among `changes`.
    pub implied_terminations: usize,
    /// Active members before the file.
    pub active_before: usize,
}

impl Comparison {
    /// Whether implied terminations exceed `share` of the active members (the hold rule).
    pub fn exceeds(&self, share: f64) -> bool {
        self.active_before > 0
            && self.implied_terminations as f64 / self.active_before as f64 > share
    }
}

/// The effective date of an implied termination: the file date minus `lookback_days`, or the
/// end of the previous month if that is later.
pub fn termination_date(file_date: NaiveDate, lookback_days: u32) -> NaiveDate {
    let back = file_date - Duration::days(i64::from(lookback_days));
    let prev_month_end = file_date
        .with_day(1)
        .and_then(|d| d.pred_opt())
        .unwrap_or(back);
    back.max(prev_month_end)
}

/// Compares the records of one full file for one group with that group's enrollment.
///
/// `listed` are the file's records for the group (audit records become adds or changes; other
/// kinds pass through). `trace` is the source trace given to implied terminations.
///
/// This is the whole comparison in memory, the reference for the run's streamed one, which
/// uses the same pieces ([`against`], [`omitted`], [`implied_termination`]) without holding
/// the file or the enrollment.
pub fn compare(
    policy: OmissionPolicy,
    lookback_days: u32,
    file_date: NaiveDate,
    current: &[Enrolled],
    listed: Vec<ChangeRecord>,
    trace: &SourceTrace,
) -> Comparison {
    let by_id: HashMap<&str, &Enrolled> =
        current.iter().map(|e| (e.member_id.as_str(), e)).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Comparison {
        active_before: current.iter().filter(|e| e.active).count(),
        ..Default::default()
    };
    for r in listed {
        seen.insert(r.member_id.clone());
        let enrolled = by_id.get(r.member_id.as_str()).copied();
        out.changes.extend(against(r, enrolled, file_date));
    }
    let omitted = omitted(
        current.iter().filter(|e| e.active).map(|e| &e.member_id),
        &seen,
    );
    match policy {
        OmissionPolicy::Never => {}
        OmissionPolicy::Report => out.omitted_reported = omitted,
        OmissionPolicy::Terminate => {
            let eff = termination_date(file_date, lookback_days);
            for m in omitted {
                let e = by_id[m.as_str()];
                out.changes.push(implied_termination(e, eff, trace));
                out.implied_terminations += 1;
            }
        }
    }
    out
}

/// What one record of a full file gives against the member's enrollment before the file
/// (`enrolled`: the member's row, active or not, if the plan has one): an audit record of a
/// member not actively enrolled is an add, of one whose data differ a `member_change` (with
/// the old data), of one whose data are the same nothing; other kinds pass through.
pub fn against(
    mut r: ChangeRecord,
    enrolled: Option<&Enrolled>,
    file_date: NaiveDate,
) -> Option<ChangeRecord> {
    if r.kind != ChangeKind::Audit {
        return Some(r);
    }
    match enrolled.filter(|e| e.active) {
        None => {
            r.kind = if r.relationship == Relationship::SelfSubscriber {
                ChangeKind::AddSubscriber
            } else {
                ChangeKind::AddDependent
            };
            r.effective_date = r.effective_date.or(Some(file_date));
            Some(r.seal())
        }
        Some(e) if e.data != r.new => {
            r.kind = ChangeKind::MemberChange;
            r.old = Some(e.data.clone());
            r.effective_date = Some(file_date);
            Some(r.seal())
        }
        Some(_) => None,
    }
}

/// The active members (`active`, any order) that the file does not list (`listed`), sorted by
/// member id: the order implied terminations and reported omissions take.
pub fn omitted<'a>(
    active: impl IntoIterator<Item = &'a String>,
    listed: &HashSet<String>,
) -> Vec<String> {
    let mut v: Vec<String> = active
        .into_iter()
        .filter(|m| !listed.contains(*m))
        .cloned()
        .collect();
    v.sort_unstable();
    v
}

/// The termination implied for an active member the file omits, effective `eff`
/// ([`termination_date`]); `trace` names the file and set, without a segment range.
pub fn implied_termination(e: &Enrolled, eff: NaiveDate, trace: &SourceTrace) -> ChangeRecord {
    ChangeRecord {
        schema: crate::changes::SCHEMA_VERSION.to_string(),
        change_id: String::new(),
        kind: ChangeKind::TerminateMember,
        effective_date: Some(eff),
        group_id: Some(e.group_id.clone()),
        division: e.data.division.clone(),
        subscriber_id: e.subscriber_id.clone(),
        member_id: e.member_id.clone(),
        relationship: e.relationship,
        reason: None,
        new: MemberData {
            coverages: e.data.coverages.clone(),
            ..MemberData::default()
        },
        old: None,
        source: trace.clone(),
        broker_license: None,
        status: None,
        invoice_period: None,
    }
    .seal()
}

/// What a submitted change does to its member's enrollment row, said without the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Update<'a> {
    /// The member becomes `active`, and with `data` the member's data is that (without, the
    /// stored data stays). A store can write this without reading the row first (see
    /// [`crate::store::Store::set_member`]): adds, audits and member changes replace the data,
    /// terminations and reinstatements only flip `active`.
    Set {
        active: bool,
        data: Option<&'a MemberData>,
    },
    /// A partial change (an address, a plan, a PCP...): merged into the stored data by
    /// [`apply`], which needs the row.
    Merge,
}

/// How change `r` updates its member's row (what [`apply`] does).
pub fn update(r: &ChangeRecord) -> Update<'_> {
    match r.kind {
        ChangeKind::AddSubscriber
        | ChangeKind::AddDependent
        | ChangeKind::Audit
        | ChangeKind::MemberChange => Update::Set {
            active: true,
            data: Some(&r.new),
        },
        ChangeKind::TerminateMember | ChangeKind::Cancel => Update::Set {
            active: false,
            data: None,
        },
        ChangeKind::Reinstate => Update::Set {
            active: true,
            data: None,
        },
        _ => Update::Merge,
    }
}

/// The row of a member change `r` creates, when the store has none (None: the change has no
/// group, so touches no enrollment): inactive, with no data, until [`apply`] moves it.
fn new_member(r: &ChangeRecord) -> Option<Enrolled> {
    Some(Enrolled {
        group_id: r.group_id.clone()?,
        member_id: r.member_id.clone(),
        subscriber_id: r.subscriber_id.clone(),
        relationship: r.relationship,
        active: false,
        data: MemberData::default(),
    })
}

/// The enrollment after a submitted change (None: the change does not touch enrollment).
pub fn apply(current: Option<Enrolled>, r: &ChangeRecord) -> Option<Enrolled> {
    r.group_id.as_ref()?;
    let mut e = match current {
        Some(e) => e,
        None => new_member(r)?,
    };
    match update(r) {
        Update::Set { active, data } => {
            e.active = active;
            if let Some(n) = data {
                e.data = n.clone();
            }
        }
        Update::Merge => {
            // Partial changes carry only what changed: merge it.
            let (n, d) = (&r.new, &mut e.data);
            if n.name.is_some() {
                d.name = n.name.clone();
            }
            if n.demographics.is_some() {
                d.demographics = n.demographics.clone();
            }
            if n.residence.is_some() {
                d.residence = n.residence.clone();
            }
            if n.mailing.is_some() {
                d.mailing = n.mailing.clone();
            }
            if n.division.is_some() {
                d.division = n.division.clone();
            }
            for c in &n.coverages {
                match d
                    .coverages
                    .iter_mut()
                    .find(|x| x.insurance_line == c.insurance_line)
                {
                    Some(x) => *x = c.clone(),
                    None => d.coverages.push(c.clone()),
                }
            }
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::SCHEMA_VERSION;
    use crate::enrollment::PersonName;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn trace() -> SourceTrace {
        SourceTrace::X12 {
            file: "full.x12".into(),
            isa13: "1".into(),
            gs06: "1".into(),
            st02: "0001".into(),
            first_segment: 0,
            last_segment: 0,
        }
    }

    fn data(last: &str) -> MemberData {
        MemberData {
            name: Some(PersonName {
                last: last.into(),
                first: None,
                middle: None,
                prefix: None,
                suffix: None,
            }),
            ..MemberData::default()
        }
    }

    fn audit(id: &str, last: &str) -> ChangeRecord {
        ChangeRecord {
            schema: SCHEMA_VERSION.into(),
            change_id: String::new(),
            kind: ChangeKind::Audit,
            effective_date: None,
            group_id: Some("G".into()),
            division: None,
            subscriber_id: id.into(),
            member_id: id.into(),
            relationship: Relationship::SelfSubscriber,
            reason: None,
            new: data(last),
            old: None,
            source: trace(),
            broker_license: None,
            status: None,
            invoice_period: None,
        }
        .seal()
    }

    fn enrolled(id: &str, last: &str, active: bool) -> Enrolled {
        Enrolled {
            group_id: "G".into(),
            member_id: id.into(),
            subscriber_id: id.into(),
            relationship: Relationship::SelfSubscriber,
            active,
            data: data(last),
        }
    }

    #[test]
    fn new_members_are_adds_changed_ones_changes_same_ones_nothing() {
        let cur = vec![enrolled("A", "ONE", true), enrolled("B", "TWO", true)];
        let listed = vec![audit("A", "ONE"), audit("B", "TWOO"), audit("C", "THREE")];
        let c = compare(
            OmissionPolicy::Terminate,
            30,
            d("2025-02-01"),
            &cur,
            listed,
            &trace(),
        );
        let kinds: Vec<_> = c
            .changes
            .iter()
            .map(|r| (r.kind, r.member_id.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (ChangeKind::MemberChange, "B"),
                (ChangeKind::AddSubscriber, "C")
            ]
        );
        assert_eq!(c.changes[0].old, Some(data("TWO")));
        assert_eq!(c.implied_terminations, 0);
        for r in &c.changes {
            assert_eq!(r.change_id, r.compute_id());
        }
    }

    #[test]
    fn omitted_members_follow_the_policy() {
        let cur = vec![
            enrolled("A", "ONE", true),
            enrolled("B", "TWO", true),
            enrolled("Z", "GONE", false),
        ];
        let listed = || vec![audit("A", "ONE")];
        let t = compare(
            OmissionPolicy::Terminate,
            30,
            d("2025-02-10"),
            &cur,
            listed(),
            &trace(),
        );
        assert_eq!(t.changes.len(), 1);
        assert_eq!(t.changes[0].kind, ChangeKind::TerminateMember);
        assert_eq!(t.changes[0].member_id, "B");
        // 2025-02-10 minus 30 days is 2025-01-11; the end of January is later.
        assert_eq!(t.changes[0].effective_date, Some(d("2025-01-31")));
        assert_eq!((t.implied_terminations, t.active_before), (1, 2));
        assert!(t.exceeds(0.2));
        assert!(!t.exceeds(0.5));

        let r = compare(
            OmissionPolicy::Report,
            30,
            d("2025-02-10"),
            &cur,
            listed(),
            &trace(),
        );
        assert!(r.changes.is_empty());
        assert_eq!(r.omitted_reported, vec!["B".to_string()]);
        assert!(!r.exceeds(0.0));

        let n = compare(
            OmissionPolicy::Never,
            30,
            d("2025-02-10"),
            &cur,
            listed(),
            &trace(),
        );
        assert!(n.changes.is_empty() && n.omitted_reported.is_empty());
    }

    #[test]
    fn termination_date_is_lookback_or_previous_month_end() {
        assert_eq!(termination_date(d("2025-02-10"), 30), d("2025-01-31"));
        assert_eq!(termination_date(d("2025-02-10"), 5), d("2025-02-05"));
        assert_eq!(termination_date(d("2025-03-01"), 0), d("2025-03-01"));
    }

    #[test]
    fn apply_adds_terminates_and_reinstates() {
        let add = ChangeRecord {
            kind: ChangeKind::AddSubscriber,
            ..audit("A", "ONE")
        };
        let e = apply(None, &add).unwrap();
        assert!(e.active);
        let term = ChangeRecord {
            kind: ChangeKind::TerminateMember,
            new: MemberData::default(),
            ..audit("A", "ONE")
        };
        let e = apply(Some(e), &term).unwrap();
        assert!(!e.active);
        assert_eq!(e.data, data("ONE"));
        let re = ChangeRecord {
            kind: ChangeKind::Reinstate,
            ..term.clone()
        };
        assert!(apply(Some(e), &re).unwrap().active);
    }
}
