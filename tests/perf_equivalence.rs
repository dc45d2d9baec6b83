//! Issue 6: speed work must not change what eligo says. Generated files with injected errors are
//! checked, acknowledged and converted, and the results compared with golden files recorded
//! before the validator was optimized (`tests/data/perf/`). Re-record them only for an intended
//! change of output, with `ELIGO_BLESS=1 cargo test --test perf_equivalence`.

mod util;

use eligo::ack::{AckSettings, AckWriter};
use eligo::batch::{convert_x12, ChangeWriter, Format};
use eligo::check::{check_stream, Engine};
use eligo::finding::Finding;
use std::path::PathBuf;
use util::generated;

fn golden(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/perf")
        .join(name);
    if std::env::var_os("ELIGO_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap();
    if expected != actual {
        let e = String::from_utf8_lossy(&expected);
        let a = String::from_utf8_lossy(actual);
        let first = e.lines().zip(a.lines()).position(|(x, y)| x != y);
        panic!(
            "{name}: output differs from the golden file (first differing line {first:?}; {} vs {} lines)",
            e.lines().count(),
            a.lines().count()
        );
    }
}

fn findings_jsonl(engine: &Engine, input: &[u8]) -> Vec<u8> {
    let mut fs: Vec<Finding> = Vec::new();
    check_stream(engine, input, &mut fs);
    let mut out = Vec::new();
    for f in &fs {
        serde_json::to_writer(&mut out, f).unwrap();
        out.push(b'\n');
    }
    out
}

fn ack(engine: &Engine, input: &[u8]) -> Vec<u8> {
    let mut settings = AckSettings::from_env();
    settings.now = chrono::NaiveDate::from_ymd_opt(2025, 1, 11)
        .and_then(|d| d.and_hms_opt(6, 30, 0))
        .unwrap();
    let mut w = AckWriter::new(Vec::new(), settings);
    check_stream(engine, input, &mut w);
    w.into_inner().unwrap()
}

const CASES: &[(&str, u64, f64, bool, u32)] = &[
    ("change-2pct", 9, 2.0, false, 1),
    ("change-8pct-3sets", 10, 8.0, false, 3),
    ("full-5pct-2sets", 11, 5.0, true, 2),
];

#[test]
fn findings_and_acks_are_unchanged() {
    let engine = Engine::embedded();
    for &(name, seed, rate, full, sets) in CASES {
        let input = generated(0.4, seed, rate, full, sets);
        golden(
            &format!("{name}.findings.jsonl"),
            &findings_jsonl(&engine, &input),
        );
        golden(&format!("{name}.999"), &ack(&engine, &input));
    }
}

#[test]
fn change_records_are_unchanged() {
    let engine = Engine::embedded();
    for (name, seed, full) in [("change-clean", 21u64, false), ("full-clean", 22, true)] {
        let input = generated(0.06, seed, 0.0, full, 2);
        let mut w = ChangeWriter::new(Vec::new(), Format::Jsonl).unwrap();
        convert_x12(&engine, "perf.x12", input.as_slice(), &mut w).unwrap();
        golden(&format!("{name}.jsonl"), &w.into_inner().unwrap());
    }
}

/// The run's batch CSV row, built from the JSON it already wrote for the record
/// (`Encoder::encode_csv_from_json`), is byte for byte the row `Encoder::encode` gives, with and
/// without the rules' verdict, for generated change and full files.
#[test]
fn csv_rows_from_written_json_equal_encoded_rows() {
    use eligo::batch::Encoder;
    use eligo::changes::ChangeRecord;
    use eligo::lifecycle::TransactionStatus;
    let engine = Engine::embedded();
    let mut n = 0;
    for (seed, full) in [(31u64, false), (32, true)] {
        let input = generated(0.3, seed, 0.0, full, 2);
        let mut w = ChangeWriter::new(Vec::new(), Format::Jsonl).unwrap();
        convert_x12(&engine, "perf.x12", input.as_slice(), &mut w).unwrap();
        let lines = w.into_inner().unwrap();
        for (i, line) in lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let mut r: ChangeRecord = serde_json::from_slice(line).unwrap();
            if i % 3 == 1 {
                r.status = Some(TransactionStatus::Pending);
                r.invoice_period = Some("2025-02".into());
            }
            let mut enc = Encoder::new(Format::Csv);
            let expected = enc.encode(&r).unwrap().to_vec();
            let mut json = Vec::new();
            let spans = r.write_json(&mut json).unwrap();
            let mut enc2 = Encoder::new(Format::Csv);
            assert_eq!(
                enc2.encode_csv_from_json(&r, &json, &spans).unwrap(),
                expected
            );
            n += 1;
        }
    }
    assert!(n > 500, "{n} records");
}
