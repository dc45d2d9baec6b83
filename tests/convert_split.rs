//! Issue 6: converting one large set in pieces on several threads gives exactly what converting
//! it in sequence gives: the same batch bytes (JSON Lines and CSV) and the same summary (counts,
//! issues in order, errors), on generated change and full files with one or several sets, with
//! tiny pieces so that each file is cut hundreds of times, on files where the guesses must fail
//! (damage at piece boundaries), and through the command line.

mod pieces;
mod util;

use eligo::batch::{convert_x12, convert_x12_file, ChangeWriter, ConvertSummary, Format};
use eligo::check::Engine;
use eligo::finding::Severity;
use eligo::split::{SplitOptions, SplitStats};
use pieces::{boundary_damages, broken_envelopes, file_with, opts, subscriber_starts};
use std::process::Command;
use util::generated;

fn sequential(engine: &Engine, bytes: &[u8], format: Format) -> (Vec<u8>, ConvertSummary) {
    let mut w = ChangeWriter::new(Vec::new(), format).unwrap();
    let s = convert_x12(engine, "in.x12", bytes, &mut w).unwrap();
    (w.into_inner().unwrap(), s)
}

fn split(
    engine: &Engine,
    bytes: &[u8],
    format: Format,
    o: SplitOptions,
) -> (Vec<u8>, ConvertSummary, SplitStats) {
    let f = file_with(bytes);
    let mut w = ChangeWriter::new(Vec::new(), format).unwrap();
    let (s, stats) = convert_x12_file(engine, "in.x12", f.as_file(), &mut w, o).unwrap();
    (w.into_inner().unwrap(), s, stats)
}

/// Converts in sequence and in pieces of each size; asserts the same bytes and summary, and
/// returns the sequential result and the stats of each split.
fn assert_same_in_pieces(
    name: &str,
    engine: &Engine,
    bytes: &[u8],
    pieces: &[u64],
) -> (ConvertSummary, Vec<SplitStats>) {
    let mut all = Vec::new();
    let mut summary = ConvertSummary::default();
    for format in [Format::Jsonl, Format::Csv] {
        let (want, want_summary) = sequential(engine, bytes, format);
        for &piece in pieces {
            let (got, got_summary, stats) = split(engine, bytes, format, opts(piece));
            if want != got {
                let first = want.iter().zip(&got).position(|(a, b)| a != b);
                panic!(
                    "{name}, {format:?}, piece {piece}: batch differs from the sequential one at byte {first:?} ({} vs {} bytes); {stats:?}",
                    want.len(),
                    got.len()
                );
            }
            assert_eq!(
                want_summary, got_summary,
                "{name}, {format:?}, piece {piece}: {stats:?}"
            );
            all.push(stats);
        }
        summary = want_summary;
    }
    (summary, all)
}

#[test]
fn clean_and_faulty_files_convert_the_same_in_pieces() {
    let engine = Engine::embedded();
    for (size, seed, rate, full, sets) in [
        (0.5, 1, 0.0, false, 1),
        (0.5, 2, 0.05, false, 3),
        (0.6, 3, 2.0, false, 1),
        (0.5, 4, 0.0, true, 1),
        (0.8, 5, 0.02, true, 4),
    ] {
        let bytes = generated(size, seed, rate, full, sets);
        let name = format!("seed {seed} rate {rate} full {full} sets {sets}");
        let pieces = [2_000, 30_000];
        let (summary, stats) = assert_same_in_pieces(&name, &engine, &bytes, &pieces);
        if rate == 0.0 {
            assert!(summary.records > 1_000, "{name}: {summary:?}");
        }
        for (s, piece) in stats.iter().zip(pieces.iter().cycle()) {
            // The file really was cut, and the guesses held: a clean generated file never
            // needs the sequential fallback.
            let per_set = (size * 1_000_000.0) as u64 / u64::from(sets);
            let expected = if per_set > 5 * piece {
                per_set / piece / 2 * u64::from(sets)
            } else {
                0
            };
            assert!(
                s.pieces >= expected,
                "{name} piece {piece}: only {s:?} (expected >= {expected} pieces)"
            );
            if rate == 0.0 {
                assert_eq!(s.fallbacks, 0, "{name} piece {piece}: {s:?}");
            }
        }
    }
}

/// An engine whose trading-partner policy makes every finding a warning, so that damaged sets
/// are still accepted and their changes written: what the fallback converts shows in the batch.
fn lenient() -> Engine {
    let mut engine = Engine::embedded();
    engine.policy = Some(Box::new(
        |f: &mut eligo::finding::Finding, _: &str, _: Option<&str>| {
            f.severity = Severity::Warning;
            true
        },
    ));
    engine
}

/// Offsets of every `INS*Y*` segment start (the places pieces are cut).

#[test]
fn corruptions_at_piece_boundaries_convert_the_same() {
    let strict = Engine::embedded();
    let lenient = lenient();
    let clean = generated(0.3, 21, 0.0, false, 1);
    let starts = subscriber_starts(&clean);
    assert!(starts.len() > 100);
    let mut variants = boundary_damages();
    // A relationship code that cannot be converted: an issue, reported in order.
    variants.push((
        "unconvertible member",
        Box::new(|b: &mut Vec<u8>, at: usize| {
            b[at + 6..at + 8].copy_from_slice(b"99");
        }),
    ));
    for (name, damage) in &variants {
        let mut bytes = clean.clone();
        for &at in starts.iter().rev().step_by(7) {
            damage(&mut bytes, at);
        }
        for (which, engine) in [("strict", &strict), ("lenient", &lenient)] {
            let label = format!("{name} ({which})");
            let (summary, stats) = assert_same_in_pieces(&label, engine, &bytes, &[2_000]);
            assert!(stats.iter().all(|s| s.regions > 0), "{label}: {stats:?}");
            if which == "lenient" {
                assert!(summary.records > 100, "{label}: {summary:?}");
            }
            if name.contains("missing") {
                assert!(stats.iter().all(|s| s.fallbacks > 0), "{label}: {stats:?}");
            }
        }
    }
}

#[test]
fn truncated_and_multi_interchange_files_convert_the_same() {
    let engine = lenient();
    let one = generated(0.3, 31, 0.05, false, 1);
    let two = generated(0.3, 32, 0.05, true, 2);
    for (name, bytes) in broken_envelopes(&one, &two) {
        let (_, stats) = assert_same_in_pieces(name, &engine, &bytes, &[2_500, 9_000]);
        assert!(stats.iter().all(|s| s.pieces > 1), "{name}: {stats:?}");
    }
}

/// The command line: `ELIGO_JOBS=2` with tiny pieces against one job, JSON Lines and CSV, to
/// standard output and to a file; standard error and the exit status too.
#[test]
fn cli_converts_one_file_in_pieces_with_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for (i, (seed, rate, full, sets)) in [(41, 0.0, false, 1), (42, 0.05, true, 3)]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("in{i}.x12"));
        std::fs::write(&path, generated(0.4, seed, rate, full, sets)).unwrap();
        inputs.push(path);
    }
    let run = |jobs: &str, input: &std::path::Path, extra: &[&str], out: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eligo"));
        c.env("ELIGO_JOBS", jobs)
            .env("ELIGO_SPLIT_PIECE", "3000")
            .arg("convert")
            .arg(input)
            .args(extra);
        if let Some(o) = out {
            c.arg("-o").arg(dir.path().join(o));
        }
        let r = c.output().unwrap();
        let file = out.map(|o| std::fs::read(dir.path().join(o)).unwrap());
        (r.status.code(), r.stdout, r.stderr, file)
    };
    for input in &inputs {
        for extra in [&[][..], &["--to", "csv"][..]] {
            let one = run("1", input, extra, None);
            let two = run("2", input, extra, None);
            assert!(one.1.len() > 10_000, "{input:?} {extra:?}");
            assert_eq!(one, two, "{input:?} {extra:?}");
            let one = run("1", input, extra, Some("one.out"));
            let two = run("2", input, extra, Some("two.out"));
            assert_eq!(one, two, "{input:?} {extra:?} -o");
        }
    }
}
