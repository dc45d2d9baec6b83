//! Helpers shared by the in-file split tests (`split.rs` for check and ack, `convert_split.rs`
//! for convert): a file to read with positional reads, small pieces, the subscriber
//! boundaries where a file is cut, and the damage done right there, where a guessed start
//! state is most likely to be wrong.
#![allow(dead_code)] // each test binary uses a different part

use eligo::split::SplitOptions;
use std::io::Write;

/// `bytes` in a temporary file (the split reads a file, not a slice).
pub fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    f
}

/// Two jobs and pieces of `piece` bytes; sets of four pieces are already cut.
pub fn opts(piece: u64) -> SplitOptions {
    SplitOptions {
        jobs: 2,
        piece,
        min_set: piece * 4,
    }
}

/// Offsets of every subscriber's INS (where pieces may start).
pub fn subscriber_starts(bytes: &[u8]) -> Vec<usize> {
    memchr::memmem::find_iter(bytes, b"INS*Y*")
        .filter(|&i| i > 0 && matches!(bytes[i - 1], b'~' | b'\n'))
        .collect()
}

/// Damages a file at one offset.
pub type Damage = dyn Fn(&mut Vec<u8>, usize);

/// The damage both split tests do at subscriber boundaries; each adds its own.
pub fn boundary_damages() -> Vec<(&'static str, Box<Damage>)> {
    vec![
        // A dependent whose subscriber is another one's: S3 needs the member before.
        (
            "dependent of an unseen subscriber",
            Box::new(|b: &mut Vec<u8>, at: usize| {
                let ins = b"INS*N*19*021*28*A***FT~REF*0F*ZZZ999999~REF*1L*G1~NM1*IL*1*DOE*JO~DMG*D8*20100101*M~HD*021**HLT*PLAN1*DEP~DTP*348*D8*20250101~";
                b.splice(at..at, ins.iter().copied());
            }),
        ),
        // A segment the walker cannot place in the middle of a member.
        (
            "unplaceable segment",
            Box::new(|b: &mut Vec<u8>, at: usize| {
                b.splice(at..at, b"BGN*00*X*20250101*1200****2~".iter().copied());
            }),
        ),
        // A missing required segment (the subscriber's REF*0F): the INS that follows reports
        // it, and the guessed start state is wrong, so the fallback must run.
        (
            "required segment missing",
            Box::new(|b: &mut Vec<u8>, at: usize| {
                let next = memchr::memchr(b'~', &b[at..]).unwrap() + at + 1;
                let end = memchr::memchr(b'~', &b[next..]).unwrap() + next + 1;
                b.drain(next..end);
            }),
        ),
        // Line breaks after terminators (line numbers must still come out right).
        (
            "line breaks",
            Box::new(|b: &mut Vec<u8>, at: usize| {
                b.splice(at..at, b"\r\n\n".iter().copied());
            }),
        ),
    ]
}

/// `one` and `two` joined into one file of two interchanges, `one` cut off two thirds in, and
/// `one` without its last SE: where the envelope, not a member, ends a piece.
pub fn broken_envelopes(one: &[u8], two: &[u8]) -> [(&'static str, Vec<u8>); 3] {
    let mut joined = one.to_vec();
    joined.extend_from_slice(b"\n");
    joined.extend_from_slice(two);
    let truncated = one[..one.len() * 2 / 3].to_vec();
    let mut no_se = one.to_vec();
    if let Some(i) = memchr::memmem::rfind(&no_se, b"~SE*") {
        let end = memchr::memchr(b'~', &no_se[i + 1..]).unwrap() + i + 2;
        no_se.drain(i + 1..end);
    }
    [
        ("joined", joined),
        ("truncated", truncated),
        ("no SE", no_se),
    ]
}
