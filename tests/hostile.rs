//! Hostile input (issue 7, "Reliability and PHI safety"): every one of these has a defined outcome,
//! and the big ones are generated on the fly through a `Read`, so the test itself never holds
//! them, and run in bounded memory (measured with a per-thread counting allocator).

mod util;

use eligo::check::{check_stream, Observer, SetResult, Ta1Result};
use eligo::finding::{Ack, Finding, Severity};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use util::{ack, check, engine, sample};

// ---------------------------------------------------------------------------------------------
// Memory measurement: live heap bytes of the current thread, and their peak. Per thread, so
// that tests running in parallel do not disturb each other.

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let v = live.get() + delta;
        live.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            track(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            track(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        track(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            track(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the most heap it held at once on this thread.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, (PEAK.with(Cell::get) - base).max(0) as usize)
}

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Lazily generated input

/// Pieces, each sent `n` times, in order; nothing is held but the pieces themselves.
struct Generated {
    parts: Vec<(Vec<u8>, u64)>,
    part: usize,
    sent: u64,
    at: usize,
}

impl Generated {
    fn new(parts: Vec<(Vec<u8>, u64)>) -> Self {
        Generated {
            parts,
            part: 0,
            sent: 0,
            at: 0,
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            let Some((bytes, times)) = self.parts.get(self.part) else {
                break;
            };
            if self.sent == *times || bytes.is_empty() {
                self.part += 1;
                self.sent = 0;
                self.at = 0;
                continue;
            }
            let k = (bytes.len() - self.at).min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&bytes[self.at..self.at + k]);
            n += k;
            self.at += k;
            if self.at == bytes.len() {
                self.at = 0;
                self.sent += 1;
            }
        }
        Ok(n)
    }
}

/// Counts findings by id and keeps only the first few, so that millions of findings cost nothing
/// in the test itself.
#[derive(Default)]
struct Summary {
    by_id: BTreeMap<&'static str, u64>,
    first: Vec<Finding>,
    sets: Vec<SetResult>,
    ta1: Vec<Ta1Result>,
}

impl Observer for Summary {
    fn finding(&mut self, f: Finding) {
        *self.by_id.entry(f.id).or_default() += 1;
        if self.first.len() < 20 {
            self.first.push(f);
        }
    }
    fn interchange_end(&mut self, _i: &eligo::check::InterchangeInfo, t: Ta1Result, _g: u32) {
        self.ta1.push(t);
    }
    fn set_end(&mut self, r: &SetResult) {
        self.sets.push(r.clone());
    }
}

const ISA: &str = "ISA*00*          *00*          *ZZ*ACMEHR         *ZZ*ELIGOPLAN      *250110*0830*^*00501*000000001*0*P*:~\n";
const GS: &str = "GS*BE*ACMEHR*ELIGOPLAN*20250110*0830*1*X*005010X220A1~\n";
const HEADER: &str = "ST*834*0001*005010X220A1~\nBGN*00*HOSTILE1*20250110*0830****2~\nREF*38*GRP1001~\nN1*P5*ACME MANUFACTURING*FI*069990001~\nN1*IN*ELIGO HEALTH PLAN*FI*069990002~\n";
/// Segments in HEADER.
const HEADER_SEGS: u64 = 5;
const MEMBER: &str = "INS*Y*18*021*28*A***FT~\nREF*0F*900112222~\nNM1*IL*1*DOE*JOHN****ZZ*900112222~\nDMG*D8*19840303*M~\nHD*021**HLT*HLT GOLD 1000*EMP~\nDTP*348*D8*20250201~\n";
const MEMBER_SEGS: u64 = 6;

fn trailer(segments: u64) -> Vec<u8> {
    format!("SE*{segments}*0001~\nGE*1*1~\nIEA*1*000000001~\n").into_bytes()
}

fn run(input: impl Read) -> (Summary, usize) {
    let e = engine();
    peak_heap(|| {
        let mut s = Summary::default();
        check_stream(e, input, &mut s);
        s
    })
}

// ---------------------------------------------------------------------------------------------
// Size

/// 50 MB without a single terminator: one SegmentTooLong finding (IK502 5), then the set ends
/// without SE; the lexer never holds more than its limit plus a chunk.
#[test]
fn a_segment_that_never_ends_is_cut_off_in_bounded_memory() {
    let input = Generated::new(vec![
        (format!("{ISA}{GS}{HEADER}NM1*IL*1*").into_bytes(), 1),
        (vec![b'A'; 64 << 10], 800),
    ]);
    let (s, peak) = run(input);
    assert_eq!(
        s.by_id.get("X12-SEGMENT-TOO-LONG"),
        Some(&1),
        "{:?}",
        s.by_id
    );
    let too_long = s.first.iter().find(|f| f.id == "X12-SEGMENT-TOO-LONG");
    assert_eq!(too_long.map(|f| f.ack), Some(Ack::Set("5")));
    assert_eq!(s.sets.len(), 1);
    assert_eq!(s.sets[0].code, 'R');
    assert!(s.sets[0].errors.contains(&"5"), "{:?}", s.sets[0]);
    assert_eq!(
        s.ta1,
        vec![Ta1Result {
            code: 'R',
            note: "023"
        }]
    );
    assert!(peak < 4 * MIB, "peak heap {peak} bytes");
}

/// The same through the real binary, fed through a pipe.
#[test]
fn the_binary_reports_a_runaway_segment_from_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eligo"))
        .args(["check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run eligo");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let mut g = Generated::new(vec![
            (format!("{ISA}{GS}{HEADER}NM1*IL*1*").into_bytes(), 1),
            (vec![b'A'; 64 << 10], 160),
        ]);
        // The binary may stop reading early; a broken pipe is not a failure here.
        let _ = std::io::copy(&mut g, &mut stdin);
    });
    let out = child.wait_with_output().expect("eligo ends");
    writer.join().expect("writer thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("segment longer than 1048576 bytes"),
        "{stdout}"
    );
}

/// Tiny segments per set in the tests below. 2 million take about 10 s each in a debug build with
/// the same flat memory (checked by hand), so the suite uses fewer.
const TINY: u64 = 500_000;

/// Hundreds of thousands of tiny segments inside one member: each is over REF*0F's maximum use
/// and is reported (IK304 5), yet memory stays flat.
#[test]
fn millions_of_tiny_segments_in_a_member_run_in_bounded_memory() {
    let segments = 1 + HEADER_SEGS - 1 + 1 + TINY + 1;
    let input = Generated::new(vec![
        (
            format!("{ISA}{GS}{HEADER}INS*Y*18*021*28*A***FT~\n").into_bytes(),
            1,
        ),
        (b"REF*0F*1~".to_vec(), TINY),
        (trailer(segments), 1),
    ]);
    let (s, peak) = run(input);
    assert_eq!(s.sets.len(), 1, "{:?}", s.by_id);
    assert_eq!(s.sets[0].code, 'R');
    assert_eq!(s.sets[0].segments as u64, segments);
    assert_eq!(s.by_id.get("X12-SE-MISSING"), None);
    assert!(
        s.by_id.get("X12-S-OVER-MAX-USE").copied().unwrap_or(0) >= 1,
        "{:?}",
        s.by_id
    );
    // Past the per-member cap the rest are counted, and one finding says how many were not
    // listed: nothing disappears silently.
    assert_eq!(
        s.by_id.get("X12-FINDINGS-CAPPED"),
        Some(&1),
        "{:?}",
        s.by_id
    );
    eprintln!("peak heap {peak} bytes for {TINY} segments");
    assert!(
        peak < 16 * MIB,
        "peak heap {peak} bytes for {TINY} segments"
    );
}

/// The same number of tiny segments in the header (where REF*0F has no place at all).
#[test]
fn millions_of_tiny_segments_in_the_header_run_in_bounded_memory() {
    let segments = HEADER_SEGS + TINY + 1;
    let input = Generated::new(vec![
        (format!("{ISA}{GS}{HEADER}").into_bytes(), 1),
        (b"REF*38*1~".to_vec(), TINY),
        (trailer(segments), 1),
    ]);
    let (s, peak) = run(input);
    assert_eq!(s.sets.len(), 1, "{:?}", s.by_id);
    assert_eq!(s.sets[0].code, 'R');
    eprintln!("peak heap {peak} bytes for {TINY} segments");
    assert!(
        peak < 16 * MIB,
        "peak heap {peak} bytes for {TINY} segments"
    );
}

/// Members in one set: the 2000 loop may repeat without limit, and each member is checked and
/// let go before the next.
const MEMBERS: u64 = 100_000;

#[test]
fn a_hundred_thousand_members_are_accepted_in_bounded_memory() {
    let segments = HEADER_SEGS + MEMBERS * MEMBER_SEGS + 1;
    let input = Generated::new(vec![
        (format!("{ISA}{GS}{HEADER}").into_bytes(), 1),
        (MEMBER.as_bytes().to_vec(), MEMBERS),
        (trailer(segments), 1),
    ]);
    let (s, peak) = run(input);
    assert!(s.by_id.is_empty(), "{:?}\n{:#?}", s.by_id, s.first);
    assert_eq!(s.sets.len(), 1);
    assert_eq!(s.sets[0].code, 'A');
    assert_eq!(s.sets[0].members, MEMBERS);
    assert!(
        peak < 16 * MIB,
        "peak heap {peak} bytes for {MEMBERS} members"
    );
}

// ---------------------------------------------------------------------------------------------
// Bytes that are not X12 data

fn clean_change_with(from: &str, to: &[u8]) -> Vec<u8> {
    let s = sample("clean-change.x12");
    let at = s
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .expect("text is in the sample");
    [&s[..at], to, &s[at + from.len()..]].concat()
}

/// The findings of `input` on NM1's 3rd element (the last name), as IK403 codes.
fn nm103_codes(input: &[u8]) -> Vec<&'static str> {
    check(engine(), input)
        .findings
        .iter()
        .filter(|f| {
            f.location.segment_id.as_deref() == Some("NM1")
                && f.location.element.map(|e| e.element) == Some(3)
        })
        .map(|f| f.ack.code())
        .collect()
}

#[test]
fn non_utf8_bytes_in_an_element_are_invalid_characters() {
    let input = clean_change_with("*KOWALSKI*DANIEL", b"*KOWAL\xC3\x28SKI*DANIEL");
    assert_eq!(nm103_codes(&input), vec!["6"]);
    // The 999 names the element and code but does not echo bytes it cannot carry.
    let out = String::from_utf8(ack(engine(), &input)).expect("the 999 is ASCII");
    assert!(out.contains("IK4*3*1035*6~"), "{out}");
}

#[test]
fn control_characters_in_an_element_are_invalid_characters() {
    for c in [b'\x07', b'\x1B', b'\x7F', b'\t'] {
        let input = clean_change_with(
            "*KOWALSKI*DANIEL",
            &[b"*KOWAL", &[c][..], b"SKI*DANIEL"].concat(),
        );
        assert_eq!(nm103_codes(&input), vec!["6"], "byte {c:#04x}");
    }
}

#[test]
fn nul_bytes_in_an_element_are_invalid_characters() {
    let input = clean_change_with("*KOWALSKI*DANIEL", b"*KOWAL\0SKI*DANIEL");
    assert_eq!(nm103_codes(&input), vec!["6"]);
}

#[test]
fn a_file_of_nul_bytes_is_not_an_interchange() {
    let c = check(engine(), &[0u8; 4096]);
    assert_eq!(c.ids(), vec!["X12-NOT-AN-INTERCHANGE"]);
    assert!(ack(engine(), &[0u8; 4096]).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Files with nothing in them

fn eligo(args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("in.x12");
    std::fs::write(&path, input).expect("write input");
    let mut all: Vec<&str> = args.to_vec();
    let p = path.to_string_lossy().into_owned();
    all.push(&p);
    let out = Command::new(env!("CARGO_BIN_EXE_eligo"))
        .args(&all)
        .output()
        .expect("run eligo");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Empty, whitespace-only and BOM-only files: "the file is empty", exit 1, and no
/// acknowledgement (there is no ISA to address it to).
#[test]
fn empty_whitespace_and_bom_only_files_are_empty() {
    for input in [
        &b""[..],
        b" \r\n\t\n  \n",
        b"\xEF\xBB\xBF",
        b"\xEF\xBB\xBF\r\n",
    ] {
        let c = check(engine(), input);
        assert_eq!(c.ids(), vec!["X12-EMPTY-FILE"], "{input:?}");
        let (code, stdout, _) = eligo(&["check"], input);
        assert_eq!(code, Some(1), "{input:?}: {stdout}");
        assert!(stdout.contains("the file is empty"), "{stdout}");
        let (code, stdout, stderr) = eligo(&["ack"], input);
        assert_eq!(code, Some(1), "{input:?}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("no interchange"), "{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Envelopes that differ from the usual

/// Version 00401 (ISA11 is the standards id `U`, not a repetition separator): the interchange
/// is rejected with TA1 `R`, note 003 (a known version that is not supported), and no 999.
#[test]
fn an_00401_interchange_is_rejected_with_a_ta1() {
    let s = String::from_utf8(sample("clean-change.x12")).expect("ASCII sample");
    let input = s.replacen("*^*00501*", "*U*00401*", 1);
    let c = check(engine(), input.as_bytes());
    assert_eq!(
        c.ta1,
        vec![Ta1Result {
            code: 'R',
            note: "003"
        }],
        "{}",
        c.describe()
    );
    let out = String::from_utf8(ack(engine(), input.as_bytes())).expect("ASCII ack");
    assert!(out.contains("TA1*000001001*250110*0830*R*003~"), "{out}");
    assert!(!out.contains("ST*999"), "{out}");
}

/// Replaces the delimiters of a sample (which uses `* : ^ ~`).
fn with_delimiters(input: &[u8], e: u8, c: u8, r: u8, t: u8) -> Vec<u8> {
    input
        .iter()
        .map(|&b| match b {
            b'*' => e,
            b':' => c,
            b'^' => r,
            b'~' => t,
            _ => b,
        })
        .collect()
}

#[test]
fn interchanges_with_different_delimiters_in_one_file() {
    let change = sample("clean-change.x12");
    let full = sample("clean-full.x12");
    for b in [b'|', b'>', b'}', b'!'] {
        assert!(!change.contains(&b) && !full.contains(&b), "{}", b as char);
    }
    let input = [
        change.clone(),
        with_delimiters(&full, b'|', b'>', b'}', b'!'),
        with_delimiters(&change, 0x1D, 0x1F, 0x1E, 0x1C),
    ]
    .concat();
    let c = check(engine(), &input);
    assert!(c.findings.is_empty(), "{}", c.describe());
    assert_eq!(c.ta1.len(), 3);
    assert_eq!(c.sets.len(), 5);
    assert!(c.sets.iter().all(|s| s.code == 'A'));
    // One acknowledgement per interchange, each in the delimiters it answers.
    let out = ack(engine(), &input);
    assert_eq!(check(engine(), &out).errors().count(), 0);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("AK9*A*2*2*2~"), "{text}");
    assert!(text.contains("AK9|A|1|1|1!"), "{text}");
    assert!(text.contains("AK9\x1DA\x1D2\x1D2\x1D2\x1C"), "{text}");
}

fn same_outcome(a: &[u8], b: &[u8]) {
    let (x, y) = (check(engine(), a), check(engine(), b));
    assert_eq!(x.ids(), y.ids());
    assert_eq!(x.ta1, y.ta1);
    let codes = |c: &util::Collector| {
        c.sets
            .iter()
            .map(|s| (s.code, s.segments))
            .collect::<Vec<_>>()
    };
    assert_eq!(codes(&x), codes(&y));
    assert_eq!(ack(engine(), a), ack(engine(), b));
}

#[test]
fn crlf_everywhere_changes_nothing() {
    for name in ["clean-change.x12", "errors/bad-date-and-gender.x12"] {
        let s = sample(name);
        let crlf: Vec<u8> = s
            .iter()
            .flat_map(|&b| {
                if b == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect();
        same_outcome(&s, &crlf);
    }
}

#[test]
fn everything_on_one_line_changes_nothing() {
    for name in ["clean-change.x12", "errors/bad-date-and-gender.x12"] {
        let s = sample(name);
        let one: Vec<u8> = s.iter().copied().filter(|&b| b != b'\n').collect();
        same_outcome(&s, &one);
    }
}

/// Findings keep their line numbers on CRLF files (a CR is not a line of its own).
#[test]
fn line_numbers_count_crlf_once() {
    let s = String::from_utf8(sample("errors/bad-date-and-gender.x12")).expect("ASCII");
    let lf = check(engine(), s.as_bytes());
    let crlf = check(engine(), s.replace('\n', "\r\n").as_bytes());
    let lines = |c: &util::Collector| {
        c.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.location.line)
            .collect::<Vec<_>>()
    };
    assert!(!lines(&lf).is_empty());
    assert_eq!(lines(&lf), lines(&crlf));
}
