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
