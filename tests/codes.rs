//! One test per TA105, AK905, IK502, IK304 and IK403 code in the README table ("Codes eligo
//! emits") that `tests/acks.rs` does not already cover. Each test starts from the tiny valid 834
//! below, applies one mutation, and compares the acknowledgement with an expectation worked out
//! by hand from `shared/docs/x12-999-ta1.md` and `shared/docs/x12-basics.md` before the test
//! was first run.
//!
//! The base interchange (ISA14 = `1`, so every readable interchange gets a TA1):
//!
//! ```text
//! ISA*00*          *00*          *ZZ*ACMEHR         *ZZ*ELIGOPLAN      *250110*0830*^*00501*000002001*1*T*:~
//! GS*BE*ACMEHR*ELIGOPLAN*20250110*0830*2001*X*005010X220A1~
//! ST*834*0001*005010X220A1~                  1
//! BGN*00*CODES0001*20250110*0830****2~       2
//! REF*38*GRP1001~                            3
//! N1*P5*ACME MANUFACTURING*FI*069990001~     4
//! N1*IN*ELIGO HEALTH PLAN*FI*069990002~      5
//! INS*Y*18*021*28*A***FT~                    6
//! REF*0F*900112222~                          7
//! NM1*IL*1*KOWALSKI*DANIEL****ZZ*900112222~  8
//! DMG*D8*19840303*M~                         9
//! HD*021**HLT*HLT GOLD 1000*EMP~             10
//! DTP*348*D8*20250201~                       11
//! SE*12*0001~                                12
//! GE*1*2001~
//! IEA*1*000002001~
//! ```

mod util;
use eligo::ack::{AckSettings, AckWriter};
use eligo::check::{check_stream, Engine};
use eligo::finding::{Finding, Severity};
use util::{body, ta1};

const ISA: &str = "ISA*00*          *00*          *ZZ*ACMEHR         *ZZ*ELIGOPLAN      *250110*0830*^*00501*000002001*1*T*:~";
const GS: &str = "GS*BE*ACMEHR*ELIGOPLAN*20250110*0830*2001*X*005010X220A1";
const GE: &str = "GE*1*2001";
const IEA: &str = "IEA*1*000002001";
/// ST up to the last segment before SE; [`with_se`] adds the SE.
const SET: &[&str] = &[
    "ST*834*0001*005010X220A1",
    "BGN*00*CODES0001*20250110*0830****2",
    "REF*38*GRP1001",
    "N1*P5*ACME MANUFACTURING*FI*069990001",
    "N1*IN*ELIGO HEALTH PLAN*FI*069990002",
    "INS*Y*18*021*28*A***FT",
    "REF*0F*900112222",
    "NM1*IL*1*KOWALSKI*DANIEL****ZZ*900112222",
    "DMG*D8*19840303*M",
    "HD*021**HLT*HLT GOLD 1000*EMP",
    "DTP*348*D8*20250201",
];
/// The TA1 of the base interchange (and of every interchange whose envelope is fine).
const TA1_OK: &str = "TA1*000002001*250110*0830*A*000";
/// The business-unit CTX of the one member (its REF*0F).
const BU: &str = "CTX*SUBSCRIBER NUMBER REF02:900112222";

// ---------------------------------------------------------------------------------------------
// Building inputs

fn base() -> Vec<String> {
    SET.iter().map(|s| s.to_string()).collect()
}

/// The set with one segment replaced (the segment must occur exactly once).
fn replaced(from: &str, to: &str) -> Vec<String> {
    let mut set = base();
    assert_eq!(set.iter().filter(|s| *s == from).count(), 1, "{from}");
    for s in &mut set {
        if s == from {
            *s = to.to_string();
        }
    }
    set
}

/// The set with segments inserted after `after` (which must occur exactly once).
fn inserted_after(after: &str, segs: &[&str]) -> Vec<String> {
    let mut set = base();
    let i = set.iter().position(|s| s == after).expect(after);
    assert_eq!(set.iter().filter(|s| *s == after).count(), 1, "{after}");
    for (k, s) in segs.iter().enumerate() {
        set.insert(i + 1 + k, s.to_string());
    }
    set
}

/// Appends the SE: SE01 = segments ST..SE inclusive, SE02 = ST02, so that a mutation never
/// introduces a count error by accident.
fn with_se(mut set: Vec<String>) -> Vec<String> {
    let st02 = set[0].split('*').nth(2).unwrap_or("").to_string();
    let n = set.len() + 1;
    set.push(format!("SE*{n}*{st02}"));
    set
}

/// Joins segments into a file: `~` and a line break after each.
fn file(isa: &str, segs: &[String]) -> Vec<u8> {
    let mut out = String::from(isa);
    out.push('\n');
    for s in segs {
        out.push_str(s);
        out.push_str("~\n");
    }
    out.into_bytes()
}

/// GS, the set with its SE, GE and IEA.
fn envelope(set: Vec<String>) -> Vec<String> {
    let mut segs = vec![GS.to_string()];
    segs.extend(with_se(set));
    segs.push(GE.to_string());
    segs.push(IEA.to_string());
    segs
}

/// The base ISA with element `n` (1-based) replaced; the segment stays 106 bytes when the new
/// value has the old length.
fn isa_with(n: usize, value: &str) -> String {
    let raw = ISA.trim_end_matches('~');
    let mut e: Vec<&str> = raw.split('*').collect();
    e[n] = value;
    format!("{}~", e.join("*"))
}

/// A whole interchange around one set (SE added).
fn interchange(set: Vec<String>) -> Vec<u8> {
    file(ISA, &envelope(set))
}

// ---------------------------------------------------------------------------------------------
// Running the checker and the acknowledgement writer

fn settings() -> AckSettings {
    AckSettings {
        next_isa13: 900,
        next_gs06: 70,
        now: chrono::NaiveDate::from_ymd_opt(2025, 1, 11)
            .unwrap()
            .and_hms_opt(6, 30, 0)
            .unwrap(),
        delimiters: None,
        sender: None,
        max_ik3_per_set: 100,
        always_ta1: false,
    }
}

fn ack_with(engine: &Engine, settings: AckSettings, input: &[u8]) -> String {
    let mut out = Vec::new();
    let mut w = AckWriter::new(&mut out, settings);
    check_stream(engine, input, &mut w);
    w.into_inner().unwrap();
    String::from_utf8(out).unwrap()
}

fn ack(input: &[u8]) -> String {
    ack_with(&Engine::embedded(), settings(), input)
}

fn findings_with(engine: &Engine, input: &[u8]) -> Vec<Finding> {
    let mut f: Vec<Finding> = Vec::new();
    check_stream(engine, input, &mut f);
    f
}

fn findings(input: &[u8]) -> Vec<Finding> {
    findings_with(&Engine::embedded(), input)
}

/// Asserts a finding with this rule id and acknowledgement label (`TA105 011`, `IK403 7`).
#[track_caller]
fn assert_finding(findings: &[Finding], id: &str, label: &str) {
    assert!(
        findings
            .iter()
            .any(|f| f.id == id && f.ack.label() == label),
        "no {id} [{label}] in {:#?}",
        findings
            .iter()
            .map(|f| format!("{} [{}] {}", f.id, f.ack.label(), f.message))
            .collect::<Vec<_>>()
    );
}

/// The interchange is rejected by its TA1 alone: no 999 follows.
#[track_caller]
fn expect_rejected(input: &[u8], ta1_line: &str) -> Vec<Finding> {
    let a = ack(input);
    assert_eq!(ta1(&a).as_deref(), Some(ta1_line), "{a}");
    assert!(!a.contains("GS*"), "no 999 after a TA1 R:\n{a}");
    assert!(a.trim_end().ends_with("IEA*0*000000900~"), "{a}");
    findings(input)
}

/// The TA1 accepts the interchange and the 999 body (AK1..AK9) is exactly `expected`.
#[track_caller]
fn expect_999(input: &[u8], expected: &str) -> Vec<Finding> {
    let a = ack(input);
    assert_eq!(ta1(&a).as_deref(), Some(TA1_OK), "{a}");
    assert_eq!(body(&a), expected.trim(), "{a}");
    findings(input)
}

#[test]
fn the_base_interchange_is_valid() {
    let input = interchange(base());
    let f = expect_999(
        &input,
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK9*A*1*1*1",
    );
    assert!(f.is_empty(), "{f:#?}");
    // with_se counted ST..SE.
    assert!(String::from_utf8(input).unwrap().contains("SE*12*0001~"));
}

// ---------------------------------------------------------------------------------------------
// TA1 TA105 (x12-999-ta1.md §6.4; the ISA element → note code map is pyx12's). Any note code
// rejects the interchange (TA104 R) and no 999 is sent (§6.1).

#[test]
fn ta1_003_known_version_not_supported() {
    // 00401 is a real version, but not ours: 003, not 017 (x12-basics.md §7).
    let f = expect_rejected(
        &file(&isa_with(12, "00401"), &envelope(base())),
        "TA1*000002001*250110*0830*R*003",
    );
    assert_finding(&f, "X12-TA1-003", "TA105 003");
}

#[test]
fn ta1_004_invalid_segment_terminator() {
    // A letter as segment terminator (ISA byte 105): x12-basics.md §3 step 8. The ISA is still
    // fixed-width, so its control number, date and time can be read for the TA1.
    let isa = ISA.replace(":~", ":X");
    let f = expect_rejected(
        &file(&isa, &envelope(base())),
        "TA1*000002001*250110*0830*R*004",
    );
    assert_finding(&f, "X12-BAD-DELIMITERS", "TA105 004");
}

#[test]
fn ta1_005_invalid_sender_qualifier() {
    let f = expect_rejected(
        &file(&isa_with(5, "XX"), &envelope(base())),
        "TA1*000002001*250110*0830*R*005",
    );
    assert_finding(&f, "X12-TA1-005", "TA105 005");
}

#[test]
fn ta1_006_invalid_sender_id() {
    let f = expect_rejected(
        &file(&isa_with(6, &" ".repeat(15)), &envelope(base())),
        "TA1*000002001*250110*0830*R*006",
    );
    assert_finding(&f, "X12-TA1-006", "TA105 006");
}

#[test]
fn ta1_007_invalid_receiver_qualifier() {
    let f = expect_rejected(
        &file(&isa_with(7, "XX"), &envelope(base())),
        "TA1*000002001*250110*0830*R*007",
    );
    assert_finding(&f, "X12-TA1-007", "TA105 007");
}

#[test]
fn ta1_008_invalid_receiver_id() {
    let f = expect_rejected(
        &file(&isa_with(8, &" ".repeat(15)), &envelope(base())),
        "TA1*000002001*250110*0830*R*008",
    );
    assert_finding(&f, "X12-TA1-008", "TA105 008");
}

#[test]
fn ta1_009_unknown_receiver_id() {
    let mut engine = Engine::embedded();
    engine.receiver_ids = vec!["OTHERPLAN".to_string()];
    let input = interchange(base());
    let a = ack_with(&engine, settings(), &input);
    assert_eq!(
        ta1(&a).as_deref(),
        Some("TA1*000002001*250110*0830*R*009"),
        "{a}"
    );
    assert!(!a.contains("GS*"), "{a}");
    assert_finding(&findings_with(&engine, &input), "X12-TA1-009", "TA105 009");
    // Our own id is accepted.
    engine.receiver_ids = vec!["ELIGOPLAN".to_string()];
    let a = ack_with(&engine, settings(), &input);
    assert_eq!(ta1(&a).as_deref(), Some(TA1_OK), "{a}");
}

#[test]
fn ta1_010_invalid_authorization_qualifier() {
    let f = expect_rejected(
        &file(&isa_with(1, "01"), &envelope(base())),
        "TA1*000002001*250110*0830*R*010",
    );
    assert_finding(&f, "X12-TA1-010", "TA105 010");
}

#[test]
fn ta1_011_invalid_authorization_information() {
    // ISA02 has 9 characters instead of 10. The only way ISA02 can be wrong is its length, which
    // also breaks the fixed width (022). One TA1 carries one note, the first error found
    // (x12-999-ta1.md §6.1); x12-basics.md §3 step 4 allows either 022 or the element-specific
    // code. The element check of the ISA comes first, so the TA1 says 011.
    let f = expect_rejected(
        &file(&isa_with(2, &" ".repeat(9)), &envelope(base())),
        "TA1*000002001*250110*0830*R*011",
    );
    assert_finding(&f, "X12-TA1-011", "TA105 011");
    assert_finding(&f, "X12-TA1-022", "TA105 022");
}

#[test]
fn ta1_012_invalid_security_qualifier() {
    let f = expect_rejected(
        &file(&isa_with(3, "02"), &envelope(base())),
        "TA1*000002001*250110*0830*R*012",
    );
    assert_finding(&f, "X12-TA1-012", "TA105 012");
}

#[test]
fn ta1_013_invalid_security_information() {
    // As for 011: 11 characters, so the ISA is not fixed-width either; the element code is
    // reported.
    let f = expect_rejected(
        &file(&isa_with(4, &" ".repeat(11)), &envelope(base())),
        "TA1*000002001*250110*0830*R*013",
    );
    assert_finding(&f, "X12-TA1-013", "TA105 013");
    assert_finding(&f, "X12-TA1-022", "TA105 022");
}

#[test]
fn ta1_014_invalid_isa09_date() {
    // 30 February. TA102 echoes ISA09 (§6.2), but a date that does not exist would make the
    // TA1 itself invalid, so our own creation date (250111 in these tests) stands in; TA101
    // (ISA13) still identifies the interchange and TA105 014 says what was wrong.
    let f = expect_rejected(
        &file(&isa_with(9, "250230"), &envelope(base())),
        "TA1*000002001*250111*0830*R*014",
    );
    assert_finding(&f, "X12-TA1-014", "TA105 014");
}

#[test]
fn ta1_015_invalid_isa10_time() {
    let f = expect_rejected(
        // As for 014: an impossible time is replaced by our own (0630 in these tests).
        &file(&isa_with(10, "2460"), &envelope(base())),
        "TA1*000002001*250110*0630*R*015",
    );
    assert_finding(&f, "X12-TA1-015", "TA105 015");
}

#[test]
fn ta1_016_isa11_not_a_repetition_separator() {
    // The 00401 standards identifier `U` in a 00501 ISA: a letter cannot be the repetition
    // separator (README strict defaults).
    let f = expect_rejected(
        &file(&isa_with(11, "U"), &envelope(base())),
        "TA1*000002001*250110*0830*R*016",
    );
    assert_finding(&f, "X12-TA1-016", "TA105 016");
}

#[test]
fn ta1_017_invalid_version() {
    let f = expect_rejected(
        &file(&isa_with(12, "00599"), &envelope(base())),
        "TA1*000002001*250110*0830*R*017",
    );
    assert_finding(&f, "X12-TA1-017", "TA105 017");
}

#[test]
fn ta1_018_invalid_control_number() {
    // ISA13 must be positive (x12-basics.md §2); IEA02 repeats it so that 001 does not fire.
    let mut segs = envelope(base());
    *segs.last_mut().unwrap() = "IEA*1*000000000".into();
    let f = expect_rejected(
        &file(&isa_with(13, "000000000"), &segs),
        "TA1*000000000*250110*0830*R*018",
    );
    assert_finding(&f, "X12-TA1-018", "TA105 018");
}

#[test]
fn ta1_019_invalid_acknowledgment_requested() {
    // The TA1 is sent although ISA14 does not ask for one: the envelope is bad (§6.1).
    let f = expect_rejected(
        &file(&isa_with(14, "2"), &envelope(base())),
        "TA1*000002001*250110*0830*R*019",
    );
    assert_finding(&f, "X12-TA1-019", "TA105 019");
}

#[test]
fn ta1_020_invalid_test_indicator() {
    let f = expect_rejected(
        &file(&isa_with(15, "X"), &envelope(base())),
        "TA1*000002001*250110*0830*R*020",
    );
    assert_finding(&f, "X12-TA1-020", "TA105 020");
}

#[test]
fn ta1_022_isa_with_wrong_element_count() {
    // An element separator where ISA15 should be: the separators are still at their fixed
    // offsets, but the ISA now has 17 elements. The control structure is found wrong before its
    // elements are checked, so 022 is the note (ISA15, now empty, is also 020).
    let isa = ISA.replace("*1*T*:~", "*1***:~");
    assert_eq!(isa.len(), 106);
    let f = expect_rejected(
        &file(&isa, &envelope(base())),
        "TA1*000002001*250110*0830*R*022",
    );
    assert_finding(&f, "X12-TA1-022", "TA105 022");
    assert_finding(&f, "X12-TA1-020", "TA105 020");
}

#[test]
fn ta1_024_segment_outside_a_set() {
    // A segment between GS and ST belongs to no transaction set (invalid interchange content).
    let mut segs = envelope(base());
    segs.insert(1, "REF*38*GRP1001".into());
    let f = expect_rejected(&file(ISA, &segs), "TA1*000002001*250110*0830*R*024");
    assert_finding(&f, "X12-TA1-024", "TA105 024");
}

#[test]
fn ta1_026_invalid_element_separator() {
    // A space as element separator: still at every fixed offset, so the ISA can be read by
    // position, but unusable (x12-basics.md §3 step 8).
    let isa = ISA.replace('*', " ");
    assert_eq!(isa.len(), 106);
    let f = expect_rejected(
        &file(&isa, &envelope(base())),
        "TA1*000002001*250110*0830*R*026",
    );
    assert_finding(&f, "X12-BAD-DELIMITERS", "TA105 026");
}

#[test]
fn ta1_027_invalid_component_separator() {
    let isa = ISA.replace(":~", "A~");
    let f = expect_rejected(
        &file(&isa, &envelope(base())),
        "TA1*000002001*250110*0830*R*027",
    );
    assert_finding(&f, "X12-BAD-DELIMITERS", "TA105 027");
}

// ---------------------------------------------------------------------------------------------
// AK9 AK905 (x12-999-ta1.md §4.4: a group error rejects the group, AK904 0; AK2 loops are
// omitted only for 1 and 2).

#[test]
fn ak905_2_group_version_not_supported() {
    // GS08 without the A1 addendum. The group is not analysed: no AK2 (§3 "Omit only when the
    // group itself could not be read (AK905 1/2)"); AK903 still counts the ST seen. AK103 echoes
    // GS08.
    let mut segs = envelope(base());
    segs[0] = GS.replace("005010X220A1", "005010X220");
    let f = expect_999(
        &file(ISA, &segs),
        "AK1*BE*2001*005010X220
AK9*R*1*1*0*2",
    );
    assert_finding(&f, "X12-AK905-2", "AK905 2");
}

#[test]
fn ak905_3_group_trailer_missing() {
    let mut segs = envelope(base());
    segs.retain(|s| !s.starts_with("GE*"));
    let f = expect_999(
        &file(ISA, &segs),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK9*R*1*1*0*3",
    );
    assert_finding(&f, "X12-GE-MISSING", "AK905 3");
}

#[test]
fn ak905_5_set_count_mismatch() {
    // AK902 echoes GE01 (2), AK903 counts the one set received.
    let mut segs = envelope(base());
    for s in &mut segs {
        if s == GE {
            *s = "GE*2*2001".into();
        }
    }
    let f = expect_999(
        &file(ISA, &segs),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK9*R*2*1*0*5",
    );
    assert_finding(&f, "X12-AK905-5", "AK905 5");
}

#[test]
fn ak905_6_group_control_number_syntax() {
    // 10 digits: GS06 is N0 1/9. GE02 repeats it so that 4 does not fire; AK102 echoes it.
    let mut segs = envelope(base());
    segs[0] = GS.replace("*2001*", "*1000002001*");
    for s in &mut segs {
        if s == GE {
            *s = "GE*1*1000002001".into();
        }
    }
    let f = expect_999(
        &file(ISA, &segs),
        "AK1*BE*1000002001*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK9*R*1*1*0*6",
    );
    assert_finding(&f, "X12-AK905-6", "AK905 6");
}

#[test]
fn ak905_19_group_control_number_not_unique() {
    // Two groups with GS06 2001: the first is fine, the second is rejected. One 999 set per
    // group (§1).
    let mut segs = vec![GS.to_string()];
    segs.extend(with_se(base()));
    segs.push(GE.into());
    segs.push(GS.to_string());
    segs.extend(with_se(base()));
    segs.push(GE.into());
    segs.push("IEA*2*000002001".into());
    let f = expect_999(
        &file(ISA, &segs),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK9*A*1*1*1
AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK9*R*1*1*0*19",
    );
    assert_finding(&f, "X12-AK905-19", "AK905 19");
}

// ---------------------------------------------------------------------------------------------
// IK5 IK502 (x12-999-ta1.md §4.1)

#[test]
fn ik502_1_transaction_set_not_supported() {
    // An 837 set inside a BE group: the set is echoed (AK201 837) and rejected, not analysed.
    let f = expect_999(
        &interchange(replaced(
            "ST*834*0001*005010X220A1",
            "ST*837*0001*005010X220A1",
        )),
        "AK1*BE*2001*005010X220A1
AK2*837*0001*005010X220A1
IK5*R*1
AK9*R*1*1*0",
    );
    assert_finding(&f, "X12-IK502-1", "IK502 1");
}

#[test]
fn ik502_2_set_trailer_missing() {
    let mut segs = envelope(base());
    segs.retain(|s| !s.starts_with("SE*"));
    let f = expect_999(
        &file(ISA, &segs),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK5*R*2
AK9*R*1*1*0",
    );
    assert_finding(&f, "X12-SE-MISSING", "IK502 2");
}

#[test]
fn ik502_3_control_number_mismatch() {
    let mut segs = envelope(base());
    for s in &mut segs {
        if s == "SE*12*0001" {
            *s = "SE*12*0002".into();
        }
    }
    let f = expect_999(
        &file(ISA, &segs),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK5*R*3
AK9*R*1*1*0",
    );
    assert_finding(&f, "X12-IK502-3", "IK502 3");
}

#[test]
fn ik502_6_transaction_set_identifier_missing() {
    // AK201 echoes ST01, here empty; the set is not analysed further.
    let f = expect_999(
        &interchange(replaced(
            "ST*834*0001*005010X220A1",
            "ST**0001*005010X220A1",
        )),
        "AK1*BE*2001*005010X220A1
AK2**0001*005010X220A1
IK5*R*6
AK9*R*1*1*0",
    );
    assert_finding(&f, "X12-IK502-6", "IK502 6");
}

#[test]
fn ik502_7_control_number_syntax() {
    // ST02 of 3 characters (AN 4/9); SE02 repeats it so that 3 does not fire.
    let f = expect_999(
        &interchange(replaced(
            "ST*834*0001*005010X220A1",
            "ST*834*001*005010X220A1",
        )),
        "AK1*BE*2001*005010X220A1
AK2*834*001*005010X220A1
IK5*R*7
AK9*R*1*1*0",
    );
    assert_finding(&f, "X12-IK502-7", "IK502 7");
}

#[test]
fn ik502_i6_implementation_convention_not_supported() {
    // ST03 differs from GS08 and from the guide; AK203 echoes ST03 (RFI 1438).
    let f = expect_999(
        &interchange(replaced(
            "ST*834*0001*005010X220A1",
            "ST*834*0001*005010X220",
        )),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220
IK5*R*I6
AK9*R*1*1*0",
    );
    assert_finding(&f, "X12-IK502-I6", "IK502 I6");
}

#[test]
fn ik502_i5_only_implementation_errors() {
    // A subscriber without INS08 (rule 834-S1B, IK403 I9): the only error is a TR3 one, so I5.
    let f = expect_999(
        &interchange(replaced("INS*Y*18*021*28*A***FT", "INS*Y*18*021*28*A")),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*INS*6**8
CTX*SUBSCRIBER NUMBER REF02:900112222
IK4*8*584*I9
CTX*SITUATIONAL TRIGGER*INS*6**1
IK5*R*I5
AK9*R*1*1*0",
    );
    assert_finding(&f, "834-S1B", "IK403 I9");
}

// ---------------------------------------------------------------------------------------------
// IK3 IK304 (x12-999-ta1.md §4.2)

#[test]
fn ik304_1_blanks_before_segment_id() {
    let f = expect_999(
        &interchange(replaced("REF*38*GRP1001", " REF*38*GRP1001")),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*REF*3**1
IK5*R*5
AK9*R*1*1*0",
    );
    assert_finding(&f, "X12-S-LEADING-BLANKS", "IK304 1");
}

#[test]
fn ik304_2_unexpected_segment() {
    // PLA belongs to loop 2310, which is not open after the 2300 DTP; nor does it fit earlier.
    let f = expect_999(
        &interchange(inserted_after(
            "DTP*348*D8*20250201",
            &["PLA*2*1P*20250301**AH"],
        )),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*PLA*12**2
{BU}
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-S-UNEXPECTED", "IK304 2");
}

#[test]
fn ik304_4_loop_over_max() {
    // Loop 2100D (employer, NM1*36) repeats at most 3 times: the 4th (position 13) is over.
    let f = expect_999(
        &interchange(inserted_after(
            "DMG*D8*19840303*M",
            &[
                "NM1*36*2*ACME MANUFACTURING",
                "NM1*36*2*ACME MANUFACTURING",
                "NM1*36*2*ACME MANUFACTURING",
                "NM1*36*2*ACME MANUFACTURING",
            ],
        )),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*NM1*13**4
{BU}
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-S-LOOP-OVER-MAX", "IK304 4");
}

#[test]
fn ik304_5_segment_over_max_use() {
    // The 2300 DTP may be used 6 times: the 7th (position 17) is over.
    let f = expect_999(
        &interchange(inserted_after(
            "DTP*348*D8*20250201",
            &["DTP*348*D8*20250201"; 6],
        )),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*DTP*17**5
{BU}
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-S-OVER-MAX-USE", "IK304 5");
}

#[test]
fn ik304_7_segment_out_of_order() {
    // The header REF*38 after the first N1: it belongs before loop 1000A.
    let mut set = base();
    set.swap(2, 3);
    assert_eq!(set[3], "REF*38*GRP1001");
    let f = expect_999(
        &interchange(set),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*REF*4**7
IK5*R*5
AK9*R*1*1*0",
    );
    assert_finding(&f, "X12-S-OUT-OF-ORDER", "IK304 7");
}

// ---------------------------------------------------------------------------------------------
// IK4 IK403 (x12-999-ta1.md §4.3; IK404 echoes the value except for 1, 2, I9 and values that
// hold a delimiter or a control character, §3.1)

#[test]
fn ik403_1_required_element_missing() {
    let f = expect_999(
        &interchange(replaced(
            "NM1*IL*1*KOWALSKI*DANIEL****ZZ*900112222",
            "NM1*IL*1**DANIEL****ZZ*900112222",
        )),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*NM1*8**8
{BU}
IK4*3*1035*1
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-E-REQUIRED-MISSING", "IK403 1");
}

#[test]
fn ik403_3_too_many_elements() {
    // DTP defines 3 elements. A 4th has no data element number, so IK402 is empty.
    let f = expect_999(
        &interchange(replaced("DTP*348*D8*20250201", "DTP*348*D8*20250201*X")),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*DTP*11**8
{BU}
IK4*4**3*X
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-E-TOO-MANY-ELEMENTS", "IK403 3");
}

#[test]
fn ik403_4_element_too_short() {
    // NM109 is AN 2/80.
    let f = expect_999(
        &interchange(replaced(
            "NM1*IL*1*KOWALSKI*DANIEL****ZZ*900112222",
            "NM1*IL*1*KOWALSKI*DANIEL****ZZ*9",
        )),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*NM1*8**8
{BU}
IK4*9*67*4*9
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-E-TOO-SHORT", "IK403 4");
}

#[test]
fn ik403_5_element_too_long() {
    // REF02 is AN 1/50; a header segment, so no business unit.
    let long = "G".repeat(51);
    let f = expect_999(
        &interchange(replaced("REF*38*GRP1001", &format!("REF*38*{long}"))),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*REF*3**8
IK4*2*127*5*{long}
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-E-TOO-LONG", "IK403 5");
}

#[test]
fn ik403_6_invalid_character() {
    // A tab inside NM103: control characters are never allowed (x12-basics.md §8). The value is
    // not echoed because it holds a control character.
    let f = expect_999(
        &interchange(replaced(
            "NM1*IL*1*KOWALSKI*DANIEL****ZZ*900112222",
            "NM1*IL*1*KOWAL\tSKI*DANIEL****ZZ*900112222",
        )),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*NM1*8**8
{BU}
IK4*3*1035*6
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-E-INVALID-CHARACTER", "IK403 6");
}

#[test]
fn ik403_9_invalid_time() {
    let f = expect_999(
        &interchange(replaced(
            "BGN*00*CODES0001*20250110*0830****2",
            "BGN*00*CODES0001*20250110*2460****2",
        )),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*BGN*2**8
IK4*4*337*9*2460
IK5*R*5
AK9*R*1*1*0",
    );
    assert_finding(&f, "X12-E-INVALID-TIME", "IK403 9");
}

#[test]
fn ik403_10_exclusion_violated() {
    // N4 syntax note E0207: N402 and N407 may not both be sent. The second one present (N407)
    // is reported, with its value. N404 US keeps C0704 and the address rules satisfied.
    let f = expect_999(
        &interchange(inserted_after(
            "NM1*IL*1*KOWALSKI*DANIEL****ZZ*900112222",
            &["N4*HARTFORD*CT*06114*US***CT"],
        )),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*N4*9**8
{BU}
IK4*7*1715*10*CT
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-E-EXCLUSION", "IK403 10");
}

#[test]
fn ik403_12_too_many_repetitions() {
    // COB04 repeats at most 9 times; the 10th repetition is reported at IK401 4::10 (C030:
    // element, no component, repetition). The value holds the repetition separator: not echoed.
    let f = expect_999(
        &interchange(inserted_after(
            "DTP*348*D8*20250201",
            &["COB*P*GRP99*1*1^1^1^1^1^1^1^1^1^1"],
        )),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*COB*12**8
{BU}
IK4*4::10*1365*12
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-E-TOO-MANY-REPETITIONS", "IK403 12");
}

#[test]
fn ik403_13_too_many_components() {
    // NM103 is a simple element; a component separator in it makes a second component. The
    // value holds a delimiter: not echoed.
    let f = expect_999(
        &interchange(replaced(
            "NM1*IL*1*KOWALSKI*DANIEL****ZZ*900112222",
            "NM1*IL*1*KOWALSKI:J*DANIEL****ZZ*900112222",
        )),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*NM1*8**8
{BU}
IK4*3*1035*13
IK5*R*5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "X12-E-TOO-MANY-COMPONENTS", "IK403 13");
}

#[test]
fn ik403_i9_situational_element_missing() {
    // COBRA (INS05 C) needs INS07 (834-S14); the trigger is INS05 of the same segment, so the
    // IK4 gets an element-context CTX (§3.1 order: IK3, business unit, IK4, its CTX).
    let f = expect_999(
        &interchange(replaced("INS*Y*18*021*28*A***FT", "INS*Y*18*021*28*C***FT")),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*INS*6**8
{BU}
IK4*7*1219*I9
CTX*SITUATIONAL TRIGGER*INS*6**5
IK5*R*I5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "834-S14", "IK403 I9");
}

#[test]
fn ik403_i10_not_used_element_present() {
    // BGN07 is Not Used in the 834 guide.
    let f = expect_999(
        &interchange(replaced(
            "BGN*00*CODES0001*20250110*0830****2",
            "BGN*00*CODES0001*20250110*0830***ZZ*2",
        )),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*BGN*2**8
IK4*7*640*I10*ZZ
IK5*R*I5
AK9*R*1*1*0",
    );
    assert_finding(&f, "IG-E-NOT-USED", "IK403 I10");
}

#[test]
fn ik403_i13_situational_element_present() {
    // A German address with a state (834-S23: no N402 outside US/CA); the trigger is N404.
    let f = expect_999(
        &interchange(inserted_after(
            "NM1*IL*1*KOWALSKI*DANIEL****ZZ*900112222",
            &["N4*BERLIN*NY*10115*DE"],
        )),
        &format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*N4*9**8
{BU}
IK4*2*156*I13*NY
CTX*SITUATIONAL TRIGGER*N4*9**4
IK5*R*I5
AK9*R*1*1*0"
        ),
    );
    assert_finding(&f, "834-S23", "IK403 I13");
}

// ---------------------------------------------------------------------------------------------
// Dispositions and limits

#[test]
fn warning_only_set_is_accepted_with_errors() {
    // A partner policy downgrades the invalid time to a warning: the set is applied but the
    // error is noted (IK501 E with IK502 5, §4.1), and a group whose sets are all accepted with
    // at least one E is AK901 E with AK904 = AK903 (§4.4).
    let mut engine = Engine::embedded();
    engine.policy = Some(Box::new(|f: &mut Finding, _: &str, _: Option<&str>| {
        if f.id == "X12-E-INVALID-TIME" {
            f.severity = Severity::Warning;
        }
        true
    }));
    let input = interchange(replaced(
        "BGN*00*CODES0001*20250110*0830****2",
        "BGN*00*CODES0001*20250110*2460****2",
    ));
    let a = ack_with(&engine, settings(), &input);
    assert_eq!(ta1(&a).as_deref(), Some(TA1_OK), "{a}");
    assert_eq!(
        body(&a),
        "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*BGN*2**8
IK4*4*337*9*2460
IK5*E*5
AK9*E*1*1*1",
        "{a}"
    );
    let f = findings_with(&engine, &input);
    assert!(f
        .iter()
        .all(|f| f.severity == Severity::Warning && f.id == "X12-E-INVALID-TIME"));
}

#[test]
fn ik3_loops_are_capped_per_set() {
    // Three segments in error; with max_ik3_per_set = 2 only the first two IK3 loops are
    // written. The disposition still counts every error.
    let mut set = replaced(
        "BGN*00*CODES0001*20250110*0830****2",
        "BGN*00*CODES0001*20250110*2460****2",
    );
    for s in &mut set {
        if s == "NM1*IL*1*KOWALSKI*DANIEL****ZZ*900112222" {
            *s = "NM1*IL*1**DANIEL****ZZ*900112222".into();
        }
        if s == "DMG*D8*19840303*M" {
            *s = "DMG*D8*19840303*X".into();
        }
    }
    let input = interchange(set);
    let capped = AckSettings {
        max_ik3_per_set: 2,
        ..settings()
    };
    let a = ack_with(&Engine::embedded(), capped, &input);
    assert_eq!(
        body(&a),
        format!(
            "AK1*BE*2001*005010X220A1
AK2*834*0001*005010X220A1
IK3*BGN*2**8
IK4*4*337*9*2460
IK3*NM1*8**8
{BU}
IK4*3*1035*1
IK5*R*5
AK9*R*1*1*0"
        ),
        "{a}"
    );
    // Without the cap all three are written.
    let a = ack(&input);
    assert_eq!(a.matches("IK3*").count(), 3, "{a}");
    assert!(a.contains("IK3*DMG*9**8~\nCTX*SUBSCRIBER NUMBER REF02:900112222~\nIK4*3*1068*7*X~"));
    assert_eq!(findings(&input).len(), 3);
}
