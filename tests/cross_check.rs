//! An independent parser as a cross-check: the `x12-types` crate (typed 834 and 999 structures,
//! parsed with nom from a whole string) must read eligo's clean samples and eligo's own 999s,
//! and find the same number of member loops and acknowledged sets eligo counts. It cannot
//! stream or give positions, which is why eligo does not use it to validate (README, design
//! notes), but two parsers agreeing on structure is cheap assurance.

use eligo::ack::{AckSettings, AckWriter};
use eligo::check::{check_stream, Engine};
use eligo::output::FileSummary;
use x12_types::util::Parser;
use x12_types::v005010::{Transmission, _834, _999};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn x12_types_reads_the_clean_samples_with_the_same_members() {
    let engine = Engine::embedded();
    for path in ["samples/834/clean-change.x12", "samples/834/clean-full.x12"] {
        let text = read(path);
        let mut summary = FileSummary::default();
        check_stream(&engine, text.as_bytes(), &mut summary);
        assert!(summary.clean(), "{path}");
        let (rest, t) = Transmission::<_834>::parse(&text)
            .unwrap_or_else(|e| panic!("x12-types cannot read {path}: {e}"));
        assert!(rest.trim().is_empty(), "{path}: x12-types left {rest:?}");
        let members: usize = t
            .functional_group
            .iter()
            .flat_map(|g| g.segments.iter())
            .map(|s| s.loop_2000.len())
            .sum();
        assert_eq!(members as u64, summary.members, "{path}");
    }
}

#[test]
fn x12_types_reads_our_999s() {
    let engine = Engine::embedded();
    for path in [
        "samples/834/clean-change.x12",
        "samples/834/errors/two-sets-one-bad.x12",
        "samples/834/errors/bad-date-and-gender.x12",
    ] {
        let mut out = Vec::new();
        let mut w = AckWriter::new(&mut out, AckSettings::from_env());
        check_stream(&engine, read(path).as_bytes(), &mut w);
        w.into_inner().unwrap();
        // x12-types expects GS right after ISA: leave out our TA1 (it is checked elsewhere).
        let ack: String = String::from_utf8(out)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("TA1"))
            .map(|l| format!("{l}\n"))
            .collect();
        let (rest, t) = Transmission::<_999>::parse(&ack)
            .unwrap_or_else(|e| panic!("x12-types cannot read our 999 for {path}: {e}\n{ack}"));
        assert!(rest.trim().is_empty(), "{path}: x12-types left {rest:?}");
        let sets: usize = t
            .functional_group
            .iter()
            .flat_map(|g| g.segments.iter())
            .map(|s| s.loop_ak2.len())
            .sum();
        assert_eq!(sets, ack.matches("AK2*").count(), "{path}");
    }
}
