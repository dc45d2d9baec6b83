//! One test per bug, headed by where it was found. Inputs are inline and minimized.

mod util;

use eligo::check::Ta1Result;
use eligo::lexer::{Lexer, LexerOptions, Token};
use util::{ack, check, engine};

const ISA: &str = "ISA*00*          *00*          *ZZ*ACMEHR         *ZZ*ELIGOPLAN      *250110*0830*^*00501*000001001*1*T*:~";

/// Issue 7, found by `lexer_is_independent_of_chunk_size`: an ISA wider than 106 bytes was
/// `TruncatedIsa` when read in small chunks (only 106 bytes were buffered before the 512-byte
/// window was scanned) and read correctly with large chunks.
#[test]
fn wide_isa_is_read_whatever_the_chunk_size() {
    let input = b"ISA*00*                    *00*                    *ZZ*ACMEHR                        *ZZ*ELIGOPLAN                                     *250110*0830*^*00501*000000001*0*P*:~IEA*1*000000001~";
    for chunk in [1, 7, 4096] {
        let mut lx = Lexer::with_options(
            &input[..],
            LexerOptions {
                max_segment_len: 200,
                chunk,
            },
        );
        match lx.next_token() {
            Some(Token::Segment(s)) => assert_eq!(s.id(), b"ISA", "chunk {chunk}"),
            other => panic!("chunk {chunk}: {other:?}"),
        }
    }
}

/// Issue 7, found by `acknowledgements_pass_our_own_999_check`: a TA1 between ISA and GS was
/// "a segment outside a transaction set" (TA1 024), so eligo rejected its own acknowledgements.
#[test]
fn a_ta1_at_interchange_level_is_accepted() {
    let input = format!("{ISA}TA1*000000001*250110*0830*A*000~IEA*0*000001001~");
    let c = check(engine(), input.as_bytes());
    assert!(c.findings.is_empty(), "{}", c.describe());
    assert_eq!(
        c.ta1,
        vec![Ta1Result {
            code: 'A',
            note: "000"
        }]
    );
}

/// Issue 7, found by `every_dropped_duplicated_or_merged_segment_is_detected`: a second ISA
/// before the first one's IEA closed the first interchange as accepted, with no finding.
#[test]
fn an_isa_before_iea_rejects_the_open_interchange() {
    let input = format!("{ISA}{ISA}IEA*0*000001001~");
    let c = check(engine(), input.as_bytes());
    assert_eq!(
        c.ta1,
        vec![
            Ta1Result {
                code: 'R',
                note: "023"
            },
            Ta1Result {
                code: 'A',
                note: "000"
            }
        ]
    );
}

/// Issue 7, found by `a_structural_corruption_is_never_accepted_silently`: IK402 carried the
/// composite reference `C040`, which is not a number, so the 999 was invalid.
#[test]
fn ik402_is_left_out_for_composites() {
    // BGN merged with REF*38: REF's elements land in BGN, and REF04 (C040) is reported.
    let input = concat!(
        "ISA*00*          *00*          *ZZ*ACMEHR         *ZZ*ELIGOPLAN      *250110*0830*^*00501*000001001*1*T*:~",
        "GS*BE*ACMEHR*ELIGOPLAN*20250110*0830*1001*X*005010X220A1~",
        "ST*834*0001*005010X220A1~",
        "BGN*00*ACME250110CHG1*20250110*0830****2~",
        "REF*38*GRP1001*X*D8:20250201~",
        "SE*4*0001~GE*1*1001~IEA*1*000001001~"
    );
    let out = String::from_utf8(ack(engine(), input.as_bytes())).expect("ASCII");
    assert!(!out.contains("*C0"), "{out}");
    assert!(out.contains("IK4*4**"), "{out}");
    assert_eq!(check(engine(), out.as_bytes()).errors().count(), 0, "{out}");
}

/// Issue 7, found by `acknowledgements_pass_our_own_999_check`: a set whose ST01 is not one the
/// 999 guide lists for AK201 (here `999` inside a BE group). The guide asks AK2 to echo ST01 and
/// ST02 exactly, so it is echoed and rejected with IK502 `1`; the only thing our own 999 check
/// may object to is that echo (AK201 not in its code list).
#[test]
fn a_set_the_999_cannot_name_is_echoed_and_rejected() {
    let input = format!(
        "{ISA}GS*BE*ACMEHR*ELIGOPLAN*20250110*0830*1001*X*005010X220A1~ST*999*0001*005010X231A1~SE*2*0001~GE*1*1001~IEA*1*000001001~"
    );
    let out = String::from_utf8(ack(engine(), input.as_bytes())).expect("ASCII");
    assert!(
        out.contains("AK2*999*0001*005010X231A1~\nIK5*R*1~"),
        "{out}"
    );
    assert!(out.contains("AK9*R*1*1*0"), "{out}");
    let checked = check(engine(), out.as_bytes());
    let errors: Vec<_> = checked.errors().collect();
    assert!(
        errors
            .iter()
            .all(|f| f.location.segment_id.as_deref() == Some("AK2")),
        "{out}\n{errors:#?}"
    );
}
