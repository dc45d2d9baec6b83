//! Business rules (issue 4): for each rule, a member that breaks it and one that does not.
//! Records are built directly from a clean subscriber add and changed one thing at a time; the
//! last tests run the sample file through the real 834 path.

use chrono::NaiveDate;
use eligo::changes::{ChangeKind, ChangeRecord, SourceTrace, SCHEMA_VERSION};
use eligo::config::{Action, Config, PolicyRule};
use eligo::enrollment::*;
use eligo::finding::Severity;
use eligo::lifecycle::TransactionStatus;
use eligo::rules::{self, assess, Assessment, RuleContext};

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn coverage(line: InsuranceLine, plan: &str, level: Option<CoverageLevel>) -> Coverage {
    let mut c = Coverage::new(line);
    c.plan = Some(plan.into());
    c.coverage_level = level;
    c.begin = Some(day(2025, 2, 1));
    c
}

fn pcp() -> Provider {
    Provider {
        name: PersonName {
            last: "WELBY".into(),
            ..Default::default()
        },
        npi: Some("1990000014".into()),
        ..Default::default()
    }
}

/// A clean subscriber add: GRP1001, division ASSEMBLY, Dental Plus EMP, effective 2025-02-01.
fn subscriber(id: &str) -> ChangeRecord {
    ChangeRecord {
        schema: SCHEMA_VERSION.into(),
        change_id: String::new(),
        kind: ChangeKind::AddSubscriber,
        effective_date: Some(day(2025, 2, 1)),
        group_id: Some("GRP1001".into()),
        division: Some("ASSEMBLY".into()),
        subscriber_id: id.into(),
        member_id: id.into(),
        relationship: Relationship::SelfSubscriber,
        reason: Some(MaintenanceReason::InitialEnrollment),
        new: MemberData {
            name: Some(PersonName {
                last: "TESTER".into(),
                first: Some("PAT".into()),
                ..Default::default()
            }),
            demographics: Some(Demographics {
                birth_date: Some(day(1980, 1, 1)),
                gender: Some(Gender::Female),
                marital_status: None,
            }),
            residence: Some(Address {
                line1: "1 MAIN ST".into(),
                city: "HARTFORD".into(),
                state: Some("CT".into()),
                postal_code: Some("06103".into()),
                ..Default::default()
            }),
            coverages: vec![coverage(
                InsuranceLine::Dental,
                "DENTAL PLUS",
                Some(CoverageLevel::EmployeeOnly),
            )],
            ..Default::default()
        },
        old: None,
        source: SourceTrace::X12 {
            file: "t.x12".into(),
            isa13: "000000001".into(),
            gs06: "1".into(),
            st02: "0001".into(),
            first_segment: 10,
            last_segment: 20,
        },
        broker_license: None,
        status: None,
        invoice_period: None,
    }
}

/// A dependent add for `sub`'s family.
fn dependent(sub: &str, id: &str, rel: Relationship, dob: NaiveDate) -> ChangeRecord {
    let mut r = subscriber(sub);
    r.kind = ChangeKind::AddDependent;
    r.member_id = id.into();
    r.relationship = rel;
    r.division = None;
    r.new.residence = None;
    r.new.demographics.as_mut().unwrap().birth_date = Some(dob);
    r.new.coverages[0].coverage_level = None;
    r
}

fn with_config<T>(
    config: &Config,
    changes: &[ChangeRecord],
    f: impl FnOnce(Vec<Assessment>) -> T,
) -> T {
    let ctx = RuleContext {
        config,
        as_of: day(2025, 1, 11),
        sender: Some("ACMEHR"),
        file_date: Some(day(2025, 1, 10)),
    };
    f(assess(&ctx, changes))
}

fn run(changes: &[ChangeRecord]) -> Vec<Assessment> {
    with_config(&Config::embedded(), changes, |a| a)
}

fn ids(a: &Assessment) -> Vec<&'static str> {
    a.findings.iter().map(|f| f.id).collect()
}

/// Asserts that `bad` (the last change) has `rule` and is rejected, and `good` has no finding.
fn breaks(rule: &str, bad: &[ChangeRecord], good: &[ChangeRecord]) {
    let a = run(bad);
    let last = a.last().unwrap();
    assert!(
        ids(last).contains(&rule),
        "{rule} expected, got {:?}",
        ids(last)
    );
    let sev = rules::rule_info(rule).unwrap().severity;
    assert_eq!(last.rejected, sev == Severity::Error, "{rule}");
    let a = run(good);
    for x in &a {
        assert!(
            !ids(x).contains(&rule),
            "{rule} not expected, got {:?}",
            ids(x)
        );
    }
}

#[test]
fn clean_add_has_no_findings() {
    let a = run(&[subscriber("900000001")]);
    assert_eq!(a.len(), 1);
    assert!(a[0].findings.is_empty(), "{:?}", a[0].findings);
    assert!(!a[0].rejected);
    // GRP1001 is a CT small group: the add waits for its Family Health Statement.
    assert_eq!(a[0].status, TransactionStatus::PendingFhs);
    // Processed on the 11th: past the 10th (invoice day 15 - 5), so February's invoice.
    assert_eq!(a[0].invoice_period.as_deref(), Some("2025-02"));
}

#[test]
fn sender_group() {
    let good = subscriber("900000001");
    let mut bad = good.clone();
    bad.group_id = Some("GRP2002".into());
    bad.division = Some("MAIN".into());
    bad.new.coverages[0].begin = Some(day(2025, 7, 1));
    bad.effective_date = Some(day(2025, 7, 1));
    breaks(rules::SENDER_GROUP, &[bad], &[good]);
}

#[test]
fn group_unknown() {
    let good = subscriber("900000001");
    let mut bad = good.clone();
    bad.group_id = Some("GRP9999".into());
    breaks(rules::GROUP_UNKNOWN, &[bad], &[good]);
}

#[test]
fn division_unknown() {
    let good = subscriber("900000001");
    let mut bad = good.clone();
    bad.division = Some("WAREHOUSE".into());
    breaks(rules::DIVISION_UNKNOWN, &[bad], &[good]);
}

#[test]
fn plan_unknown() {
    let good = subscriber("900000001");
    let mut bad = good.clone();
    bad.new.coverages[0].plan = Some("DENTAL DELUXE".into());
    breaks(rules::PLAN_UNKNOWN, &[bad], &[good]);
}

#[test]
fn plan_offered_in_division_on_the_date() {
    let mut good = subscriber("900000001");
    good.new.coverages = vec![coverage(
        InsuranceLine::Health,
        "HLT SILVER 2500",
        Some(CoverageLevel::EmployeeOnly),
    )];
    good.new.coverages[0].pcp = Some(pcp());
    let mut bad = good.clone();
    bad.division = Some("OFFICE".into());
    breaks(rules::PLAN_OFFERED, &[bad], &[good]);
}

#[test]
fn plan_line() {
    let good = subscriber("900000001");
    let mut bad = good.clone();
    bad.new.coverages[0].insurance_line = InsuranceLine::Vision;
    breaks(rules::PLAN_LINE, &[bad], &[good]);
}

#[test]
fn coverage_level_offered() {
    let good = subscriber("900000001");
    let mut bad = good.clone();
    bad.new.coverages[0].plan = Some("DENTAL BASIC".into());
    bad.new.coverages[0].coverage_level = Some(CoverageLevel::EmployeeAndSpouse);
    breaks(rules::COVERAGE_LEVEL, &[bad], &[good]);
}

#[test]
fn coverage_level_consistent_with_dependents() {
    let child = dependent(
        "900000001",
        "900000002",
        Relationship::Child,
        day(2010, 1, 1),
    );
    let mut sub = subscriber("900000001");
    sub.new.coverages[0].coverage_level = Some(CoverageLevel::EmployeeAndSpouse);
    let mut good = subscriber("900000001");
    good.new.coverages[0].coverage_level = Some(CoverageLevel::EmployeeAndChildren);
    // The tier finding is on the subscriber (first), so check it there.
    let a = run(&[sub, child.clone()]);
    assert!(
        ids(&a[0]).contains(&rules::COVERAGE_DEPENDENTS),
        "{:?}",
        ids(&a[0])
    );
    assert!(a[0].rejected);
    assert!(
        !a[1].rejected,
        "the child is judged on its own: {:?}",
        ids(&a[1])
    );
    let a = run(&[good, child]);
    assert!(a.iter().all(|x| x.findings.is_empty()), "{a:?}");
    // EMP with no dependents is fine; EMP with a spouse is not.
    let spouse = dependent(
        "900000001",
        "900000003",
        Relationship::Spouse,
        day(1981, 1, 1),
    );
    let a = run(&[subscriber("900000001"), spouse]);
    assert!(ids(&a[0]).contains(&rules::COVERAGE_DEPENDENTS));
}

#[test]
fn relationship_eligible() {
    let sub = subscriber("900000001");
    let mut fam = sub.clone();
    fam.new.coverages[0].coverage_level = Some(CoverageLevel::Family);
    let good = dependent(
        "900000001",
        "900000002",
        Relationship::Spouse,
        day(1981, 1, 1),
    );
    let bad = dependent(
        "900000001",
        "900000002",
        Relationship::Parent,
        day(1950, 1, 1),
    );
    breaks(rules::RELATIONSHIP, &[fam.clone(), bad], &[fam, good]);
}

#[test]
fn age_limit_unless_disabled() {
    let mut fam = subscriber("900000001");
    fam.new.coverages[0].coverage_level = Some(CoverageLevel::EmployeeAndChildren);
    // 26 on 2025-01-15, before the effective date.
    let bad = dependent(
        "900000001",
        "900000002",
        Relationship::Child,
        day(1999, 1, 15),
    );
    let young = dependent(
        "900000001",
        "900000002",
        Relationship::Child,
        day(1999, 3, 1),
    );
    let mut disabled = bad.clone();
    disabled.new.handicapped = Some(true);
    breaks(rules::AGE_LIMIT, &[fam.clone(), bad], &[fam.clone(), young]);
    breaks(
        rules::AGE_LIMIT,
        &[
            fam.clone(),
            dependent(
                "900000001",
                "900000002",
                Relationship::Stepchild,
                day(1990, 1, 1),
            ),
        ],
        &[fam, disabled],
    );
}

#[test]
fn effective_inside_plan_year() {
    let good = subscriber("900000001");
    let mut bad = good.clone();
    bad.effective_date = Some(day(2026, 1, 1));
    bad.new.coverages[0].begin = Some(day(2026, 1, 1));
    breaks(rules::EFFECTIVE_PLAN_YEAR, &[bad], &[good]);
}

#[test]
fn effective_not_before_group() {
    let mut good = subscriber("900000001");
    good.kind = ChangeKind::AddressChange;
    good.effective_date = Some(day(2025, 1, 1));
    let mut bad = good.clone();
    bad.effective_date = Some(day(2019, 12, 1));
    breaks(rules::EFFECTIVE_BEFORE_GROUP, &[bad], &[good]);
}

#[test]
fn termination_not_before_effective() {
    let mut good = subscriber("900000001");
    good.kind = ChangeKind::TerminateCoverage;
    good.effective_date = Some(day(2025, 2, 28));
    good.new.coverages[0].begin = Some(day(2025, 1, 1));
    good.new.coverages[0].end = Some(day(2025, 2, 28));
    let mut bad = good.clone();
    bad.new.coverages[0].begin = Some(day(2025, 3, 1));
    breaks(rules::TERM_BEFORE_EFFECTIVE, &[bad], &[good]);
}

#[test]
fn retro_beyond_window() {
    let mut good = subscriber("900000001");
    good.kind = ChangeKind::TerminateMember;
    good.new = MemberData::default();
    good.effective_date = Some(day(2024, 11, 15)); // 56 days before the file date
    let mut bad = good.clone();
    bad.effective_date = Some(day(2024, 11, 1)); // 70 days
    breaks(rules::RETRO_LIMIT, &[bad], &[good]);
}

#[test]
fn far_future_is_a_warning() {
    let mut good = subscriber("900000001");
    good.kind = ChangeKind::AddressChange;
    good.new = MemberData::default();
    let mut bad = good.clone();
    bad.effective_date = Some(day(2025, 9, 1));
    breaks(rules::FUTURE_DATE, &[bad.clone()], &[good]);
    assert!(!run(&[bad])[0].rejected, "a warning does not reject");
}

#[test]
fn pcp_required() {
    let mut good = subscriber("900000001");
    good.new.coverages = vec![coverage(
        InsuranceLine::Health,
        "HLT GOLD 1000",
        Some(CoverageLevel::EmployeeOnly),
    )];
    good.new.coverages[0].pcp = Some(pcp());
    let mut bad = good.clone();
    bad.new.coverages[0].pcp = None;
    breaks(rules::PCP_REQUIRED, &[bad], &[good]);
}

#[test]
fn pcp_only_on_pcp_plans() {
    let mut good = subscriber("900000001");
    good.kind = ChangeKind::PcpChange;
    good.new = MemberData {
        coverages: vec![coverage(InsuranceLine::Health, "HLT GOLD 1000", None)],
        ..Default::default()
    };
    good.new.coverages[0].pcp = Some(pcp());
    let mut bad = good.clone();
    bad.new.coverages[0].plan = Some("HLT PLATINUM 500".into());
    breaks(rules::PCP_NOT_ALLOWED, &[bad], &[good]);
}

#[test]
fn subscriber_add_missing_data_is_incomplete() {
    let good = subscriber("900000001");
    let mut bad = good.clone();
    bad.new.residence = None;
    bad.new.demographics.as_mut().unwrap().gender = None;
    breaks(rules::INCOMPLETE, &[bad.clone()], &[good]);
    let a = &run(&[bad])[0];
    assert_eq!(a.status, TransactionStatus::Incomplete);
    assert!(!a.rejected);
    assert!(
        a.findings[0].message.contains("gender"),
        "{}",
        a.findings[0].message
    );
}

#[test]
fn family_health_statement_for_non_newborn_adds_in_ct_small_group() {
    let mut fam = subscriber("900000001");
    fam.new.coverages[0].coverage_level = Some(CoverageLevel::EmployeeAndChildren);
    let mut newborn = dependent(
        "900000001",
        "900000002",
        Relationship::Child,
        day(2025, 1, 2),
    );
    newborn.reason = Some(MaintenanceReason::Birth);
    let mut older = dependent(
        "900000001",
        "900000003",
        Relationship::Child,
        day(2015, 1, 2),
    );
    older.reason = Some(MaintenanceReason::InitialEnrollment);
    let a = run(&[fam.clone(), newborn, older]);
    assert_eq!(a[0].status, TransactionStatus::PendingFhs);
    assert_eq!(a[1].status, TransactionStatus::Pending);
    assert_eq!(a[2].status, TransactionStatus::PendingFhs);
    // A large group needs no statement.
    let mut large = fam;
    large.group_id = Some("GRP2002".into());
    large.division = Some("MAIN".into());
    large.effective_date = Some(day(2025, 7, 1));
    large.new.coverages[0].begin = Some(day(2025, 7, 1));
    large.new.coverages[0].coverage_level = Some(CoverageLevel::EmployeeOnly);
    let config = Config::embedded();
    let ctx = RuleContext {
        config: &config,
        as_of: day(2025, 6, 1),
        sender: Some("PORTAL"),
        file_date: None,
    };
    let a = assess(&ctx, &[large]);
    assert!(a[0].findings.is_empty(), "{:?}", a[0].findings);
    assert_eq!(a[0].status, TransactionStatus::Pending);
}

#[test]
fn same_member_twice() {
    let a = subscriber("900000001");
    let mut b = a.clone();
    if let SourceTrace::X12 { st02, .. } = &mut b.source {
        *st02 = "0002".into();
    }
    breaks(
        rules::DUPLICATE_MEMBER,
        &[a.clone(), b],
        &[a, subscriber("900000002")],
    );
}

#[test]
fn dependent_without_subscriber() {
    let dep = dependent(
        "900000001",
        "900000002",
        Relationship::Spouse,
        day(1981, 1, 1),
    );
    let mut fam = subscriber("900000001");
    fam.new.coverages[0].coverage_level = Some(CoverageLevel::EmployeeAndSpouse);
    breaks(
        rules::NO_SUBSCRIBER,
        std::slice::from_ref(&dep),
        &[fam, dep.clone()],
    );
}

#[test]
fn ssn_in_impossible_format() {
    let mut good = subscriber("900000001");
    good.new.ssn = Some("123456789".into());
    let mut bad = good.clone();
    bad.new.ssn = Some("666123456".into());
    breaks(rules::SSN_FORMAT, &[bad.clone()], &[good]);
    // The SSN is member data: the finding says so, and shows it masked.
    let f = &run(&[bad])[0].findings[0];
    assert!(f.phi);
    assert_eq!(f.display_value().as_deref(), Some("999999999"));
}

#[test]
fn broker_license() {
    let mut good = subscriber("900000001");
    good.broker_license = Some(eligo::changes::normalize_broker_license("4471203"));
    assert_eq!(good.broker_license.as_deref(), Some("004471203"));
    let mut bad = good.clone();
    bad.broker_license = Some(eligo::changes::normalize_broker_license("44712"));
    breaks(rules::BROKER_LICENSE, &[bad], &[good]);
}

#[test]
fn policies_change_severity() {
    let mut config = Config::embedded();
    config.policies.push(PolicyRule {
        rule: rules::PCP_REQUIRED.into(),
        action: Action::Warn,
        sender: Some("ACMEHR".into()),
        group: None,
        until: None,
        reason: None,
    });
    config.policies.push(PolicyRule {
        rule: rules::AGE_LIMIT.into(),
        action: Action::Ignore,
        sender: None,
        group: Some("GRP1001".into()),
        until: None,
        reason: None,
    });
    let mut hmo = subscriber("900000001");
    hmo.new.coverages = vec![coverage(
        InsuranceLine::Health,
        "HLT GOLD 1000",
        Some(CoverageLevel::EmployeeAndChildren),
    )];
    let mut child = dependent(
        "900000001",
        "900000002",
        Relationship::Child,
        day(1990, 1, 1),
    );
    child.new.coverages = vec![coverage(InsuranceLine::Health, "HLT GOLD 1000", None)];
    child.new.coverages[0].pcp = Some(pcp());
    with_config(&config, &[hmo, child], |a| {
        assert_eq!(ids(&a[0]), vec![rules::PCP_REQUIRED]);
        assert_eq!(a[0].findings[0].severity, Severity::Warning);
        assert!(!a[0].rejected);
        assert!(a[1].findings.is_empty(), "ignored: {:?}", a[1].findings);
    });
}

#[test]
fn a_reject_concerns_one_member_only() {
    let mut bad = subscriber("900000001");
    bad.new.coverages[0].plan = Some("NOPE".into());
    let a = run(&[bad, subscriber("900000002"), subscriber("900000003")]);
    assert!(a[0].rejected);
    assert!(!a[1].rejected && !a[2].rejected);
    assert_eq!(a[0].invoice_period, None);
    assert_eq!(a[1].invoice_period.as_deref(), Some("2025-02"));
}

#[test]
fn every_rule_is_in_the_catalogue_with_a_fix() {
    let c = rules::catalogue();
    assert!(c.len() >= 20);
    for r in &c {
        assert!(r.fix.len() > 20 && r.why.len() > 20, "{}", r.id);
    }
}

/// The sample file through the real path: check -> member loops -> changes -> rules.
#[test]
fn sample_business_rejects_through_the_834_path() {
    let engine = eligo::check::Engine::embedded();
    let config = Config::embedded();
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/834/business-rejects.x12"
    ))
    .unwrap();
    let mut out = eligo::batch::ChangeWriter::new(Vec::new(), eligo::batch::Format::Jsonl).unwrap();
    let screen = eligo::screen::Screen::new(&config, day(2025, 1, 11), "business-rejects.x12");
    let mut obs =
        eligo::batch::ConvertObserver::new("business-rejects.x12", &mut out).with_rules(screen);
    eligo::check::check_stream(&engine, &bytes[..], &mut obs);
    let report = obs.take_report().unwrap();
    let summary = obs.finish().unwrap();
    assert_eq!(summary.business_rejected, 5);
    assert_eq!(summary.records, 1, "only the clean add is written");
    let mut found: Vec<&str> = report
        .entries
        .iter()
        .flat_map(|e| e.findings.iter().map(|f| f.id))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            "BR-AGE-LIMIT",
            "BR-COVERAGE-DEPENDENTS",
            "BR-PCP-REQUIRED",
            "BR-PLAN-OFFERED",
            "BR-RETRO-LIMIT"
        ]
    );
    // The finding points at the offending segment: the child's DMG, position 36.
    let age = report
        .entries
        .iter()
        .flat_map(|e| &e.findings)
        .find(|f| f.id == "BR-AGE-LIMIT")
        .unwrap();
    assert_eq!(age.location.segment_position, Some(36));
    assert_eq!(age.location.segment_id.as_deref(), Some("DMG"));
    let text = String::from_utf8(out.into_inner().unwrap()).unwrap();
    assert!(text.contains("\"status\":\"Pending - awaiting Family Health Statement\""));
    assert!(text.contains("\"invoice_period\":\"2025-02\""));
    assert!(text.contains("\"broker_license\":\"004471203\""));
}
