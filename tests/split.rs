//! Issue 6: checking one large set in pieces on several threads gives exactly what checking it
//! in sequence gives: every observer event (findings, set, group and interchange results) and
//! the 999, on generated files with and without errors, with tiny pieces so that each file is
//! cut hundreds of times, and on files where the guesses must fail (corruptions right at piece
//! boundaries, dependents without their subscriber).

mod pieces;
mod util;

use eligo::ack::{AckSettings, AckWriter};
use eligo::check::{check_stream, Engine, EventLog};
use eligo::split::{check_file, SplitOptions, SplitStats};
use pieces::{boundary_damages, broken_envelopes, file_with, opts, subscriber_starts};
use util::generated;

fn sequential(engine: &Engine, bytes: &[u8]) -> Vec<String> {
    let mut ev = EventLog::default();
    check_stream(engine, bytes, &mut ev);
    ev.0
}

fn split(engine: &Engine, bytes: &[u8], o: SplitOptions) -> (Vec<String>, SplitStats) {
    let f = file_with(bytes);
    let mut ev = EventLog::default();
    let stats = check_file(engine, f.as_file(), &mut ev, o);
    (ev.0, stats)
}

fn assert_same(name: &str, a: &[String], b: &[String]) {
    if a != b {
        let first = a.iter().zip(b).position(|(x, y)| x != y);
        panic!(
            "{name}: split check differs from the sequential one at event {first:?} ({} vs {} events)\nsequential: {:?}\nsplit:      {:?}",
            a.len(),
            b.len(),
            first.and_then(|i| a.get(i)),
            first.and_then(|i| b.get(i)),
        );
    }
}

#[test]
fn clean_and_faulty_files_give_the_same_events_in_pieces() {
    let engine = Engine::embedded();
    for (size, seed, rate, full, sets) in [
        (0.5, 1, 0.0, false, 1),
        (0.5, 2, 0.05, false, 1),
        (0.6, 3, 0.2, false, 1),
        (0.5, 4, 0.05, true, 1),
        (0.8, 5, 0.1, false, 3),
    ] {
        let bytes = generated(size, seed, rate, full, sets);
        let want = sequential(&engine, &bytes);
        for piece in [2_000, 7_777, 50_000] {
            let (got, stats) = split(&engine, &bytes, opts(piece));
            assert_same(
                &format!("seed {seed} rate {rate} piece {piece}"),
                &want,
                &got,
            );
            // The file really was cut, and the guesses held: a clean generated file never
            // needs the sequential fallback, a faulty one rarely.
            let expected = (size * 1_000_000.0) as u64 / piece / 2;
            assert!(
                stats.pieces >= expected,
                "seed {seed} piece {piece}: only {stats:?} (expected >= {expected} pieces)"
            );
            if rate == 0.0 {
                assert_eq!(stats.fallbacks, 0, "seed {seed} piece {piece}: {stats:?}");
            }
        }
    }
}

#[test]
fn the_999_is_the_same_in_pieces() {
    let engine = Engine::embedded();
    let bytes = generated(0.5, 11, 0.08, false, 2);
    let ack = |split_it: bool| {
        let mut settings = AckSettings::from_env();
        settings.now = chrono::NaiveDate::from_ymd_opt(2025, 1, 11)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        let mut out = Vec::new();
        let mut w = AckWriter::new(&mut out, settings);
        if split_it {
            let f = file_with(&bytes);
            let stats = check_file(&engine, f.as_file(), &mut w, opts(3_000));
            assert!(stats.pieces > 10, "{stats:?}");
        } else {
            check_stream(&engine, bytes.as_slice(), &mut w);
        }
        w.into_inner().unwrap();
        out
    };
    assert_eq!(
        String::from_utf8(ack(false)).unwrap(),
        String::from_utf8(ack(true)).unwrap()
    );
}

/// Offsets of every `INS*Y*` segment start (the places pieces are cut).

#[test]
fn corruptions_at_piece_boundaries_change_nothing() {
    let engine = Engine::embedded();
    let clean = generated(0.4, 21, 0.0, false, 1);
    let starts = subscriber_starts(&clean);
    assert!(starts.len() > 100);
    // Each variant damages the file right before or at subscriber boundaries, where the
    // guessed state is most likely to be wrong.
    let mut variants = boundary_damages();
    // A bad byte inside the subscriber's INS.
    variants.push((
        "bad element",
        Box::new(|b: &mut Vec<u8>, at: usize| {
            b[at + 6] = b'#';
        }),
    ));
    for (name, damage) in &variants {
        let mut bytes = clean.clone();
        // Damage every 7th boundary, from the end so offsets stay valid.
        for &at in starts.iter().rev().step_by(7) {
            damage(&mut bytes, at);
        }
        let want = sequential(&engine, &bytes);
        for piece in [1_500, 4_000] {
            let (got, stats) = split(&engine, &bytes, opts(piece));
            assert_same(&format!("{name}, piece {piece}"), &want, &got);
            assert!(stats.regions > 0, "{name}: {stats:?}");
            if name.contains("missing") {
                // A subscriber without REF*0F leaves its dependents to the member before:
                // the guess fails and the sequential fallback runs.
                assert!(stats.fallbacks > 0, "{name}: {stats:?}");
            }
        }
    }
}

#[test]
fn truncated_and_multi_interchange_files_are_the_same_in_pieces() {
    let engine = Engine::embedded();
    let one = generated(0.3, 31, 0.05, false, 1);
    let two = generated(0.3, 32, 0.05, false, 2);
    for (name, bytes) in broken_envelopes(&one, &two) {
        let want = sequential(&engine, &bytes);
        for piece in [2_500, 9_000] {
            let (got, stats) = split(&engine, &bytes, opts(piece));
            assert_same(&format!("{name}, piece {piece}"), &want, &got);
            assert!(stats.pieces > 1, "{name}: {stats:?}");
        }
    }
}
