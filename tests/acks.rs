//! Acknowledgements for every sample file, compared with the expectations written by hand in
//! `samples/834/README.md` (which were made independently of the code and cross-checked with
//! pyx12 where pyx12 covers the rule).

mod util;
use eligo::ack::{AckSettings, AckWriter};
use eligo::check::{check_stream, Engine};
use eligo::finding::Finding;
use util::{body, ta1};

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

fn ack_bytes(input: &[u8]) -> String {
    let engine = Engine::embedded();
    let mut out = Vec::new();
    let mut w = AckWriter::new(&mut out, settings());
    check_stream(&engine, input, &mut w);
    w.into_inner().unwrap();
    String::from_utf8(out).unwrap()
}

fn ack(path: &str) -> String {
    let bytes = std::fs::read(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    ack_bytes(&bytes)
}

fn expect(path: &str, ta1_line: &str, expected_body: &str) {
    let a = ack(path);
    assert_eq!(ta1(&a).as_deref(), Some(ta1_line), "TA1 of {path}:\n{a}");
    assert_eq!(body(&a), expected_body.trim(), "999 of {path}:\n{a}");
}

#[test]
fn clean_change_file_is_accepted() {
    expect(
        "samples/834/clean-change.x12",
        "TA1*000001001*250110*0830*A*000",
        "AK1*BE*1001*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK2*834*0002*005010X220A1
IK5*A
AK9*A*2*2*2",
    );
}

#[test]
fn clean_full_file_is_accepted() {
    expect(
        "samples/834/clean-full.x12",
        "TA1*000001002*250110*0830*A*000",
        "AK1*BE*1002*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK9*A*1*1*1",
    );
}

#[test]
fn wrong_segment_count_rejects_the_set_ik502_4() {
    expect(
        "samples/834/errors/bad-se-count.x12",
        "TA1*000001101*250110*0830*A*000",
        "AK1*BE*1101*005010X220A1
AK2*834*0001*005010X220A1
IK5*R*4
AK9*R*1*1*0",
    );
}

#[test]
fn envelope_errors_reject_the_interchange_with_only_a_ta1() {
    for (path, line) in [
        (
            "samples/834/errors/ieagroups-mismatch.x12",
            "TA1*000001102*250110*0830*R*021",
        ),
        (
            "samples/834/errors/isa-iea-control-mismatch.x12",
            "TA1*000001103*250110*0830*R*001",
        ),
        (
            "samples/834/errors/missing-iea.x12",
            "TA1*000001104*250110*0830*R*023",
        ),
        (
            "samples/834/errors/truncated-mid-segment.x12",
            "TA1*000001116*250110*0830*R*023",
        ),
    ] {
        let a = ack(path);
        assert_eq!(ta1(&a).as_deref(), Some(line), "{path}:\n{a}");
        assert!(!a.contains("GS*"), "no 999 after a TA1 R: {path}:\n{a}");
        assert!(a.trim_end().ends_with("IEA*0*000000900~"), "{a}");
    }
}

#[test]
fn bad_date_and_gender_give_ik4_8_and_7_with_business_unit() {
    expect(
        "samples/834/errors/bad-date-and-gender.x12",
        "TA1*000001105*250110*0830*A*000",
        "AK1*BE*1105*005010X220A1
AK2*834*0001*005010X220A1
IK3*DMG*17**8
CTX*SUBSCRIBER NUMBER REF02:900445555
IK4*2*1251*8*20230230
IK4*3*1068*7*X
IK5*R*5
AK9*R*1*1*0",
    );
}

#[test]
fn missing_required_segment_is_ik304_3_without_business_unit() {
    expect(
        "samples/834/errors/missing-ref0f.x12",
        "TA1*000001106*250110*0830*A*000",
        "AK1*BE*1106*005010X220A1
AK2*834*0001*005010X220A1
IK3*REF*7**3
IK5*R*5
AK9*R*1*1*0",
    );
}

#[test]
fn termination_without_date_is_situational_i6_with_trigger() {
    expect(
        "samples/834/errors/term-without-date.x12",
        "TA1*000001107*250110*0830*A*000",
        "AK1*BE*1107*005010X220A1
AK2*834*0001*005010X220A1
IK3*DTP*8**I6
CTX*SITUATIONAL TRIGGER*INS*6**3
CTX*SUBSCRIBER NUMBER REF02:900447777
IK5*R*I5
AK9*R*1*1*0",
    );
}

#[test]
fn paired_syntax_note_is_ik403_2_without_value() {
    expect(
        "samples/834/errors/ins11-without-ins12.x12",
        "TA1*000001108*250110*0830*A*000",
        "AK1*BE*1108*005010X220A1
AK2*834*0001*005010X220A1
IK3*INS*6**8
CTX*SUBSCRIBER NUMBER REF02:900448888
IK4*12*1251*2
IK5*R*5
AK9*R*1*1*0",
    );
}

#[test]
fn duplicate_st02_rejects_the_second_set_and_partially_accepts() {
    expect(
        "samples/834/errors/duplicate-st02.x12",
        "TA1*000001109*250110*0830*A*000",
        "AK1*BE*1109*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK2*834*0001*005010X220A1
IK5*R*23
AK9*P*2*2*1",
    );
}

#[test]
fn unsupported_functional_group_omits_ak2() {
    expect(
        "samples/834/errors/wrong-transaction-837.x12",
        "TA1*000001110*250110*0830*A*000",
        "AK1*HC*1110*005010X222A1
AK9*R*1*1*0*1",
    );
}

#[test]
fn bad_state_and_zip_are_code_and_pattern_errors() {
    expect(
        "samples/834/errors/bad-state-zip.x12",
        "TA1*000001111*250110*0830*A*000",
        "AK1*BE*1111*005010X220A1
AK2*834*0001*005010X220A1
IK3*N4*10**8
CTX*SUBSCRIBER NUMBER REF02:900451111
IK4*2*156*7*XX
IK4*3*116*I12*1234
IK5*R*5
AK9*R*1*1*0",
    );
}

#[test]
fn quantity_totals_are_balanced() {
    expect(
        "samples/834/errors/qty-mismatch.x12",
        "TA1*000001112*250110*0830*A*000",
        "AK1*BE*1112*005010X220A1
AK2*834*0001*005010X220A1
IK3*QTY*4**8
IK4*2*380*I12*3
IK5*R*I5
AK9*R*1*1*0",
    );
}

#[test]
fn unknown_segment_ids_get_no_ik3_but_foreign_x12_segments_do() {
    expect(
        "samples/834/errors/unknown-segment.x12",
        "TA1*000001113*250110*0830*A*000",
        "AK1*BE*1113*005010X220A1
AK2*834*0001*005010X220A1
IK3*CLM*13**6
CTX*SUBSCRIBER NUMBER REF02:900453333
IK5*R*5
AK9*R*1*1*0",
    );
}

#[test]
fn one_bad_set_of_two_gives_partial_acceptance() {
    expect(
        "samples/834/errors/two-sets-one-bad.x12",
        "TA1*000001114*250110*0830*A*000",
        "AK1*BE*1114*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK2*834*0002*005010X220A1
IK3*HD*12**8
CTX*SUBSCRIBER NUMBER REF02:900454555
IK4*5*1207*7*EMQ
IK5*R*5
AK9*P*2*2*1",
    );
}

#[test]
fn group_trailer_mismatch_rejects_the_group() {
    expect(
        "samples/834/errors/gs-ge-mismatch.x12",
        "TA1*000001115*250110*0830*A*000",
        "AK1*BE*1115*005010X220A1
AK2*834*0001*005010X220A1
IK5*A
AK9*R*1*1*0*4",
    );
}

#[test]
fn unreadable_files_get_no_acknowledgement() {
    assert_eq!(ack("samples/834/errors/empty.x12"), "");
    assert_eq!(ack("samples/834/errors/garbage.bin"), "");
}

#[test]
fn envelope_is_swapped_and_uses_our_control_numbers_and_clock() {
    let a = ack("samples/834/clean-full.x12");
    let lines: Vec<&str> = a.lines().collect();
    assert_eq!(
        lines[0],
        "ISA*00*          *00*          *ZZ*ELIGOPLAN      *ZZ*ACMEHR         *250111*0630*^*00501*000000900*0*T*:~"
    );
    assert_eq!(lines[0].len(), 106);
    assert_eq!(lines[1], "TA1*000001002*250110*0830*A*000~");
    assert_eq!(
        lines[2],
        "GS*FA*ELIGOPLAN*ACMEHR*20250111*0630*70*X*005010X231A1~"
    );
    assert_eq!(lines[3], "ST*999*0001*005010X231A1~");
    let se = lines.iter().find(|l| l.starts_with("SE*")).unwrap();
    // ST, AK1, AK2, IK5, AK9, SE.
    assert_eq!(*se, "SE*6*0001~");
    assert_eq!(lines[lines.len() - 2], "GE*1*70~");
    assert_eq!(lines[lines.len() - 1], "IEA*1*000000900~");
}

#[test]
fn output_is_byte_identical_across_runs() {
    let a = ack("samples/834/errors/two-sets-one-bad.x12");
    let b = ack("samples/834/errors/two-sets-one-bad.x12");
    assert_eq!(a, b);
}

#[test]
fn our_999s_are_valid_999s() {
    // Every acknowledgement eligo writes must pass eligo's own 999 (005010X231A1) validation.
    let engine = Engine::embedded();
    let dir = format!("{}/samples/834", env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .chain(std::fs::read_dir(format!("{dir}/errors")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "x12"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 15);
    for p in paths {
        let a = ack_bytes(&std::fs::read(&p).unwrap());
        if a.is_empty() {
            continue; // nothing to acknowledge (unreadable_files_get_no_acknowledgement)
        }
        let mut findings: Vec<Finding> = Vec::new();
        check_stream(&engine, a.as_bytes(), &mut findings);
        let errors: Vec<_> = findings
            .iter()
            .filter(|f| f.severity == eligo::finding::Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}\n{a}", p.display());
    }
}

#[test]
fn one_acknowledgement_per_interchange_with_ta1_first() {
    let one = std::fs::read(format!(
        "{}/samples/834/clean-full.x12",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut two = one.clone();
    two.extend_from_slice(&one);
    let a = ack_bytes(&two);
    assert_eq!(a.matches("ISA*").count(), 2);
    assert_eq!(a.matches("IEA*").count(), 2);
    for ic in a.split("ISA*").skip(1) {
        let ta1 = ic.find("TA1*").unwrap();
        let gs = ic.find("GS*").unwrap();
        assert!(ta1 < gs);
    }
    // The second interchange reuses ISA13 1002: within one file that is a duplicate, which the
    // nightly run's ledger reports (TA1 025); the checker alone acknowledges both.
    assert!(a.contains("000000900") && a.contains("000000901"));
}
