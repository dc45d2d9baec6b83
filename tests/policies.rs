//! Trading-partner policies change outcomes: a finding rejected, then warned, then ignored, and
//! a waiver that lapses after its end date.

use chrono::NaiveDate;
use eligo::ack::{AckSettings, AckWriter};
use eligo::check::{check_stream, Engine};
use eligo::config::Config;
use std::sync::Arc;

const FILE: &str = "samples/834/errors/term-without-date.x12";

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// The IK5 line of the one set in FILE under the given policies on `as_of`.
fn ik5(policies: &str, as_of: &str) -> String {
    let mut text = eligo::config::DEFAULT_TOML
        .split("[[policies]]")
        .next()
        .unwrap()
        .to_string();
    text.push_str(policies);
    let config = Arc::new(Config::from_toml(&text).expect("valid config"));
    let mut engine = Engine::embedded();
    engine.policy = Some(Box::new(config.policy(day(as_of))));
    let input = std::fs::read(format!("{}/{FILE}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut out = Vec::new();
    let mut w = AckWriter::new(
        &mut out,
        AckSettings {
            now: day("2025-01-11").and_hms_opt(0, 0, 0).unwrap(),
            ..AckSettings::from_env()
        },
    );
    check_stream(&engine, &input[..], &mut w);
    w.into_inner().unwrap();
    let text = String::from_utf8(out).unwrap();
    text.lines()
        .filter(|l| l.starts_with("IK5") || l.starts_with("AK9"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn without_a_policy_the_situational_rule_rejects() {
    assert_eq!(ik5("", "2025-01-10"), "IK5*R*I5~ AK9*R*1*1*0~");
}

#[test]
fn reject_warn_ignore_change_the_outcome() {
    let p = |action: &str| format!("[[policies]]\nrule = \"834-S6\"\naction = \"{action}\"\n");
    assert_eq!(ik5(&p("reject"), "2025-01-10"), "IK5*R*I5~ AK9*R*1*1*0~");
    // A warning is still reported in the 999, but the set is accepted with errors.
    assert_eq!(ik5(&p("warn"), "2025-01-10"), "IK5*E*I5~ AK9*E*1*1*1~");
    assert_eq!(ik5(&p("ignore"), "2025-01-10"), "IK5*A~ AK9*A*1*1*1~");
}

#[test]
fn a_waiver_lapses_after_its_end_date() {
    let waiver = "[[policies]]\nrule = \"834-S6\"\naction = \"ignore\"\nuntil = 2025-01-31\n";
    assert_eq!(ik5(waiver, "2025-01-31"), "IK5*A~ AK9*A*1*1*1~");
    assert_eq!(ik5(waiver, "2025-02-01"), "IK5*R*I5~ AK9*R*1*1*0~");
}

#[test]
fn sender_and_group_scopes_apply_only_to_their_sender_and_group() {
    let other_sender =
        "[[policies]]\nrule = \"834-S6\"\naction = \"ignore\"\nsender = \"SOMEONEELSE\"\n";
    assert_eq!(ik5(other_sender, "2025-01-10"), "IK5*R*I5~ AK9*R*1*1*0~");
    let this_sender = "[[policies]]\nrule = \"834-S6\"\naction = \"ignore\"\nsender = \"ACMEHR\"\n";
    assert_eq!(ik5(this_sender, "2025-01-10"), "IK5*A~ AK9*A*1*1*1~");
    let other_group = "[[policies]]\nrule = \"834-S6\"\naction = \"ignore\"\ngroup = \"GRP2002\"\n";
    assert_eq!(ik5(other_group, "2025-01-10"), "IK5*R*I5~ AK9*R*1*1*0~");
    let this_group = "[[policies]]\nrule = \"834-S6\"\naction = \"warn\"\ngroup = \"GRP1001\"\n";
    assert_eq!(ik5(this_group, "2025-01-10"), "IK5*E*I5~ AK9*E*1*1*1~");
}

#[test]
fn envelope_findings_follow_policies_too() {
    // IEA01 wrong: TA1 R 021 by default; waived, the interchange is processed.
    let input = std::fs::read(format!(
        "{}/samples/834/errors/ieagroups-mismatch.x12",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let run = |policies: &str| {
        let mut text = eligo::config::DEFAULT_TOML
            .split("[[policies]]")
            .next()
            .unwrap()
            .to_string();
        text.push_str(policies);
        let config = Arc::new(Config::from_toml(&text).unwrap());
        let mut engine = Engine::embedded();
        engine.policy = Some(Box::new(config.policy(day("2025-01-10"))));
        let mut out = Vec::new();
        let mut w = AckWriter::new(&mut out, AckSettings::from_env());
        check_stream(&engine, &input[..], &mut w);
        w.into_inner().unwrap();
        String::from_utf8(out).unwrap()
    };
    assert!(run("").contains("*R*021~"));
    let waived = run("[[policies]]\nrule = \"X12-TA1-021\"\naction = \"warn\"\n");
    assert!(waived.contains("*A*000~"), "{waived}");
    assert!(waived.contains("AK9*A*1*1*1~"), "{waived}");
}
