//! Issue 6: `convert -o` writes records straight to the output file instead of spooling them
//! (`ConvertObserver::direct`), and cuts the records of rejected sets, groups and interchanges
//! out of it when their verdict comes. The file must end up with exactly the bytes and the
//! summary of the spooled conversion: files where some sets are applied and others dropped,
//! several interchanges, a truncated file and a set without SE (records of an interchange
//! that never ends), in sequence and in pieces.

mod pieces;
mod util;

use eligo::batch::{convert_x12, convert_x12_file_to, ChangeWriter, ConvertSummary, Format};
use eligo::check::Engine;
use eligo::split::SplitOptions;
use pieces::{broken_envelopes, file_with, opts};
use std::io::{Read, Seek, SeekFrom};
use util::generated;

fn spooled(engine: &Engine, bytes: &[u8], format: Format) -> (Vec<u8>, ConvertSummary) {
    let mut w = ChangeWriter::new(Vec::new(), format).unwrap();
    let s = convert_x12(engine, "in.x12", bytes, &mut w).unwrap();
    (w.into_inner().unwrap(), s)
}

/// Converts into a file that already holds `prefix` (an earlier file's records), writing
/// straight to it; returns what follows the prefix.
fn direct(
    engine: &Engine,
    bytes: &[u8],
    format: Format,
    o: SplitOptions,
    prefix: &[u8],
) -> (Vec<u8>, ConvertSummary) {
    let mut input = file_with(bytes);
    // One job reads the file from where it stands.
    input.as_file_mut().seek(SeekFrom::Start(0)).unwrap();
    let mut out = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut out, prefix).unwrap();
    let inner = std::io::BufWriter::new(out.try_clone().unwrap());
    let mut w = ChangeWriter::new(inner, format).unwrap();
    let (s, _) =
        convert_x12_file_to(engine, "in.x12", input.as_file(), &mut w, o, Some(&out)).unwrap();
    w.into_inner().unwrap();
    let mut got = Vec::new();
    out.seek(SeekFrom::Start(0)).unwrap();
    out.read_to_end(&mut got).unwrap();
    assert_eq!(&got[..prefix.len()], prefix);
    (got[prefix.len()..].to_vec(), s)
}

#[test]
fn records_written_straight_to_the_output_are_the_spooled_ones() {
    let engine = Engine::embedded();
    // Some sets rejected, others applied, in one interchange.
    let mixed = generated(0.6, 51, 0.01, false, 12);
    let full = generated(0.4, 52, 0.01, true, 6);
    let mut files = vec![("mixed", mixed.clone()), ("full", full.clone())];
    files.extend(broken_envelopes(&mixed, &full));
    let mut cut = false;
    for (name, bytes) in &files {
        for format in [Format::Jsonl, Format::Csv] {
            let (want, want_summary) = spooled(&engine, bytes, format);
            cut |= want_summary.sets_applied > 0 && want_summary.records_dropped > 0;
            for o in [SplitOptions::new(1), opts(4_000), opts(40_000)] {
                for prefix in [&b""[..], b"{\"earlier\":1}\n"] {
                    let (got, got_summary) = direct(&engine, bytes, format, o, prefix);
                    assert!(
                        want == got,
                        "{name} {format:?} {o:?}: {} bytes spooled, {} direct; {want_summary:?} {got_summary:?}",
                        want.len(),
                        got.len()
                    );
                    assert_eq!(want_summary, got_summary, "{name} {format:?} {o:?}");
                }
            }
        }
    }
    assert!(cut, "no file had both applied and dropped sets");
}

/// Several files on two jobs: each file converts into a temporary file of its own (straight,
/// its rejected sets cut out) which is then appended to the batch in the order given. The
/// batch, standard error and exit status are those of one job, to standard output and with
/// `-o`, JSON Lines and CSV, with a portal CSV, an unreadable file and rejected sets among
/// the inputs.
#[test]
fn several_files_on_two_jobs_give_the_batch_of_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = Vec::new();
    for (i, (seed, rate, full, sets)) in [(61, 0.0, false, 1), (62, 0.05, false, 4)]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("gen{i}.x12"));
        std::fs::write(&path, generated(0.3, seed, rate, full, sets)).unwrap();
        inputs.push(path);
    }
    for name in [
        "two-sets-one-bad.x12",
        "transactions-20250110.csv",
        "garbage.bin",
        "clean-change.x12",
    ] {
        inputs.push(root.join("samples/inbound").join(name));
    }
    inputs.push(dir.path().join("missing.x12"));
    let run = |jobs: &str, extra: &[&str], out: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_eligo"));
        c.env("ELIGO_JOBS", jobs)
            .arg("convert")
            .args(&inputs)
            .args(extra);
        if let Some(o) = out {
            c.arg("-o").arg(dir.path().join(o));
        }
        let r = c.output().unwrap();
        let file = out.map(|o| std::fs::read(dir.path().join(o)).unwrap());
        (r.status.code(), r.stdout, r.stderr, file)
    };
    for extra in [&[][..], &["--to", "csv"][..]] {
        let one = run("1", extra, None);
        assert!(one.1.len() > 10_000, "{extra:?}");
        assert_eq!(one, run("2", extra, None), "{extra:?}");
        let one = run("1", extra, Some("one.out"));
        assert_eq!(one, run("2", extra, Some("two.out")), "{extra:?} -o");
    }
}
