//! eligo's verdict on the 30 public 834 and 999 files in `../shared/reference/public-samples`
//! (written by others; see its README for sources and pyx12's verdicts). Where eligo differs
//! from pyx12, the reason is written next to the expectation. The folder sits beside the
//! project on developer machines and in CI; the test is skipped, loudly, where it is absent.

use eligo::check::{check_stream, Engine};
use eligo::finding::{Finding, Severity};
use eligo::output::FileSummary;
use std::collections::BTreeSet;
use std::path::PathBuf;

struct Both(Vec<Finding>, FileSummary);

impl eligo::check::Observer for Both {
    fn finding(&mut self, f: Finding) {
        self.1.finding(f.clone());
        self.0.push(f);
    }
    fn interchange_end(
        &mut self,
        i: &eligo::check::InterchangeInfo,
        t: eligo::check::Ta1Result,
        g: u32,
    ) {
        self.1.interchange_end(i, t, g);
    }
    fn group_end(&mut self, r: &eligo::check::GroupResult) {
        self.1.group_end(r);
    }
    fn set_end(&mut self, r: &eligo::check::SetResult) {
        self.1.set_end(r);
    }
}

/// (file number, clean, error ids that must be among the findings, why).
const EXPECTED: &[(&str, bool, &[&str], &str)] = &[
    ("01", true, &[], "x12.org example 4"),
    ("02", true, &[], "x12.org example 9"),
    ("03", true, &[], "x12.org example 10"),
    ("04", true, &[], "TR3 example, all on one line"),
    ("05", true, &[], "TR3 example with a PCP"),
    ("06", true, &[], "TR3 example, full-time student"),
    ("07", true, &[], "DOB correction with NM101 IL and a 2100B: accepted, since S13 (2100B => NM101 74) is deliberately not a rule"),
    ("08", true, &[], "TR3 example"),
    ("09", true, &[], "TR3 example"),
    ("10", true, &[], "TR3 example"),
    ("11", true, &[], "pyx12 test file"),
    ("12", false, &["834-S2B", "834-S3"], "pyx12 accepts it; its dependents carry INS08 and another REF*0F than their subscriber (README: rules 2 and 8)"),
    ("13", true, &[], "pyx12 test file"),
    ("14", false, &["X12-TA1-016"], "pyx12 accepts it; its ISA11 is U, which in 00501 must be a repetition separator, not a letter (strict choice, TA1 016)"),
    ("15", true, &[], "pyx12 test file with a 2700 block"),
    ("16", true, &[], "eMedNY daily changes"),
    ("17", false, &["834-S1B"], "pyx12 accepts it; subscribers without INS08 (README: rule 8)"),
    ("18", false, &["X12-E-TOO-LONG"], "INS06-1 padded with spaces"),
    ("19", false, &["X12-S-LEADING-BLANKS", "X12-E-TRAILING-SPACES", "X12-E-REQUIRED-MISSING"], "indented, BGN and INS elements shifted, trailing spaces"),
    ("20", false, &["X12-S-LEADING-BLANKS", "X12-E-CONDITIONAL-MISSING"], "indented, INS elements shifted (pyx12: P1112)"),
    ("21", false, &["X12-TA1-022", "X12-TA1-006", "X12-TA1-008"], "the ISA is not fixed-width"),
    ("22", false, &["X12-E-TOO-MANY-COMPONENTS", "X12-TA1-023"], "ISA16 empty: read as fixed-width, `~` becomes the component separator and the line break the terminator, so every segment is malformed"),
    ("23", false, &["X12-AK905-2", "X12-IK502-I6"], "a 999 with GS08 005010X231 (the base guide), not the supported 005010X231A1"),
    ("24", false, &["X12-AK905-2"], "as 23"),
    ("25", true, &[], "the TR3 999 example with both CTX forms; pyx12 rejects it only through its CTX counting bug"),
    ("26", true, &[], "a 999 on one line, ISA16 |"),
    ("27", true, &[], "a rejecting 999 is itself valid"),
    ("28", false, &["X12-S-UNEXPECTED", "X12-S-OVER-MAX-USE", "X12-IK502-4"], "deliberately broken: IK5 before AK1, two IK5s, wrong SE01"),
    ("29", false, &["X12-TA1-001"], "IEA02 differs from ISA13 (GS05 with 97 seconds is a warning: no AK905 code exists)"),
    ("30", false, &["X12-S-LEADING-BLANKS", "X12-E-TOO-SHORT"], "indented; AK202 too short"),
];

#[test]
fn verdicts_on_the_public_samples() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/public-samples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("SKIPPED: {} is not here", dir.display());
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "x12"))
        .collect();
    files.sort();
    assert_eq!(files.len(), EXPECTED.len());
    let engine = Engine::embedded();
    for (path, (num, clean, ids, why)) in files.iter().zip(EXPECTED) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(num), "{name} vs {num}");
        let bytes = std::fs::read(path).unwrap();
        let mut both = Both(Vec::new(), FileSummary::default());
        check_stream(&engine, &bytes[..], &mut both);
        let errors: BTreeSet<&str> = both
            .0
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.id)
            .collect();
        assert_eq!(both.1.clean(), *clean, "{name} ({why}): {errors:?}");
        for id in *ids {
            assert!(errors.contains(id), "{name} ({why}): no {id} in {errors:?}");
        }
    }
}
