//! The nightly run: inbound files in, acknowledgements, a change batch, a reject report and a
//! summary out, with every file, change and transaction recorded in the [`Store`].
//!
//! ## Order of work, and why a crash at any point is harmless
//! 1. **Lock** (`<state>.lock`, an exclusive SQLite lock the OS drops if the process dies).
//! 2. **Tidy**: inputs of committed runs still in an inbound folder are moved out (a crash after
//!    commit); staging folders of finished runs are removed; PendingFhs transactions past their
//!    days are withdrawn; old records are purged.
//! 3. **Register** (one store transaction): a run row, and a ledger row per ready input with its
//!    hash, sender, ISA13, duplicate verdict and a block of our control numbers. If a run is
//!    found open (a crash before its commit), it is resumed instead: same inputs, same clock,
//!    same control numbers, so the same outputs.
//! 4. **Parse** every input in parallel (rayon), and a large set of one in pieces on every core
//!    ([`crate::split`]): validation, acknowledgement, change records spooled to temporary
//!    files (bounded memory).
//! 5. **Apply** in file-name order inside one store transaction: full-file compare, holds,
//!    assessment, changes, transactions, enrollment; the batch is written to the run's staging
//!    folder as it goes, then the acknowledgements, reject report and summary.
//! 6. **Publish**: staged files are renamed into place (each fsynced first).
//! 7. **Commit** the store transaction: only now are the inputs recorded as processed.
//! 8. **Archive**: inputs move to the archive (or quarantine), each marked in the ledger.
//!
//! Before 7 nothing durable says the inputs were applied, and a rerun redoes 4–7 from the same
//! registered state, writing byte-identical files over any published ones. After 7 a rerun only
//! finishes 8. `ELIGO_CRASH_AT=<point>` aborts the process at one of [`CRASH_POINTS`] (tests).
//!
//! This module is orchestration: it has no CLI and prints nothing but logs.

use crate::ack::{AckSettings, AckWriter};
use crate::batch::{self, ChangeSink, ChangeWriter, ConvertObserver};
use crate::changes::{ChangeKind, ChangeRecord, HeaderContext, SourceTrace};
use crate::check::{
    check_stream, Engine, GroupInfo, GroupResult, InterchangeInfo, Observer, SetInfo, SetResult,
    Ta1Result,
};
use crate::config::{Config, OmissionPolicy};
use crate::finding::{Finding, Severity};
use crate::fsio;
use crate::lifecycle::TransactionStatus;
use crate::member_segments::{LoopIndex, Mark, SegmentReader, SetMarks};
use crate::store::{FileRow, SqliteStore, Store, StoreError};
use crate::validate::record::Record;
use crate::validate::Standards;
use chrono::{NaiveDate, NaiveDateTime};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Where `ELIGO_CRASH_AT` can abort a run, in the order a run reaches them.
pub const CRASH_POINTS: &[&str] = &[
    "after-lock",
    "after-register",
    "after-parse",
    "mid-stage",
    "after-stage",
    "mid-publish",
    "before-commit",
    "after-commit",
    "mid-archive",
    "after-archive",
];

/// The state store's page cache during a run, in MiB. The run's other memory is ≈25 MB on
/// change files of any size (one member loop per file, the reject page's first entries,
/// streamed outputs), plus, for a full file, its group's member ids and discrepancy report
/// (see [`Ctx::apply_x12`]); the cache adds a fixed
/// amount to that, and SQLite's sorter as much again while it sorts the run's change ids at
/// commit, never an amount that grows with the file. The run's rows are appended in rowid
/// order and their ids filed sorted (see [`SqliteStore::set_cache_limit`]), so a larger cache
/// buys little: 4, 16 and 48 MiB ran a 100 MB file in the same time.
const RUN_CACHE_MIB: u64 = 16;

/// Aborts the process when `ELIGO_CRASH_AT` names this point (crash tests).
fn crash_point(name: &str) {
    if std::env::var("ELIGO_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("eligo: ELIGO_CRASH_AT={name}: aborting");
        std::process::abort();
    }
}

/// Why a run failed. [`RunError::exit_code`] maps each to the documented exit status.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("another eligo run is in progress (lock {0} is held); this one exits")]
    Locked(PathBuf),
    #[error("cannot start: {0}")]
    Setup(String),
    #[error("run failed: {0}")]
    Io(#[from] io::Error),
    #[error("run failed: {0}")]
    Store(#[from] StoreError),
}

impl RunError {
    /// 1: the run could not start (nothing was done); 2: it failed part-way (nothing of the
    /// failed part was recorded; the next run redoes it).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Locked(_) | RunError::Setup(_) => 1,
            RunError::Io(_) | RunError::Store(_) => 2,
        }
    }
}

/// What the caller decides.
pub struct RunOptions {
    pub config: Config,
    /// The business date (default: the clock's date).
    pub as_of: Option<NaiveDate>,
    /// Show progress bars (only on a terminal).
    pub progress: bool,
}

/// One input as the summary shows it (no member data).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FileReport {
    pub name: String,
    pub kind: String,
    pub sender: Option<String>,
    pub status: String,
    pub sets_accepted: u64,
    pub sets_rejected: u64,
    pub changes: u64,
    pub acknowledgement: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct HoldReport {
    pub hold_id: i64,
    pub file: String,
    pub group: String,
    pub active_members: u64,
    pub implied_terminations: u64,
}

/// The run summary (`reports/run-NNNNNN.summary.json`). Deterministic: no elapsed time.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub run_id: i64,
    pub as_of: String,
    pub started: String,
    pub files: Vec<FileReport>,
    pub duplicates: u64,
    pub quarantined: u64,
    pub sets_accepted: u64,
    pub sets_rejected: u64,
    pub changes_by_kind: BTreeMap<String, u64>,
    /// Changes written to this run's batch (Submitted).
    pub changes_submitted: u64,
    /// Changes recorded but waiting (Incomplete, Pending FHS) or held.
    pub changes_waiting: u64,
    pub rejects_by_rule: BTreeMap<String, u64>,
    pub held: Vec<HoldReport>,
    pub omitted_reported: u64,
    pub outputs: Vec<String>,
}

/// What [`run`] returns.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// None when there was nothing to do.
    pub summary: Option<Summary>,
    pub resumed: bool,
    pub withdrawn: u64,
    pub purged: u64,
    pub skipped: Vec<String>,
    pub elapsed: Duration,
}

// ---------------------------------------------------------------------------------------------
// Business rules.

use crate::rules::RuleContext;

/// One row of the reject report: no member data, only where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRow {
    pub file: String,
    pub level: &'static str,
    pub isa13: String,
    pub gs06: String,
    pub st02: String,
    /// TA1 note, AK9 codes or IK5 codes; row and column for portal rows.
    pub codes: String,
    /// Rule ids of the error findings, `;`-separated.
    pub rules: String,
}

/// The run's summary of rejected files and sets (one row per file or set, no member data). The
/// member-level reject report, with findings and what to do, is `<run>.reject.html` / `.csv`.
fn write_reject_report(path: &Path, rows: &[RejectRow]) -> io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(b"file,level,isa13,gs06,st02,codes,rules\r\n");
    for r in rows {
        let fields = [
            r.file.as_str(),
            r.level,
            &r.isa13,
            &r.gs06,
            &r.st02,
            &r.codes,
            &r.rules,
        ];
        crate::csvrow::write(&mut out, &fields, crate::csvrow::Formulas::Keep);
    }
    fsio::write_atomic(path, &out, false)
}

// ---------------------------------------------------------------------------------------------
// Lock.

/// Held for the whole run: an exclusive lock on `<state>.lock`, released by the OS when the
/// process ends, however it ends.
pub struct RunLock {
    _conn: rusqlite::Connection,
}

/// Takes the run lock, or says who holds it.
pub fn lock(state: &Path) -> Result<RunLock, RunError> {
    let mut p = state.as_os_str().to_owned();
    p.push(".lock");
    let path = PathBuf::from(p);
    let conn = rusqlite::Connection::open(&path)
        .map_err(|e| RunError::Setup(format!("{}: {e}", path.display())))?;
    let taken = conn
        .busy_timeout(Duration::ZERO)
        .and_then(|_| conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;"));
    match taken {
        Ok(()) => Ok(RunLock { _conn: conn }),
        Err(_) => Err(RunError::Locked(path)),
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery.

/// An inbound file ready to be taken.
#[derive(Debug, Clone)]
struct Candidate {
    path: PathBuf,
    name: String,
}

fn is_portal(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

fn marker(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".done");
    PathBuf::from(p)
}

/// The readiness rule: a regular file (never a symlink) whose name does not start with `.`, that
/// has a `NAME.done` marker beside it or was last modified at least `min_age` ago.
fn discover(cfg: &Config, skipped: &mut Vec<String>) -> io::Result<Vec<Candidate>> {
    let min_age = Duration::from_secs(cfg.run.min_age_seconds);
    let now = SystemTime::now();
    let mut out = Vec::new();
    for dir in &cfg.paths.inbound {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with(".done") {
                continue;
            }
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)?;
            if meta.file_type().is_symlink() {
                tracing::warn!(file = %name, "skipped: symbolic links in inbound folders are never followed");
                skipped.push(format!("{name}: symbolic link"));
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or(Duration::ZERO);
            if age < min_age && !marker(&path).exists() {
                tracing::info!(file = %name, "not ready: still being written (too recent, no .done marker)");
                skipped.push(format!("{name}: not ready"));
                continue;
            }
            out.push(Candidate { path, name });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.path.cmp(&b.path)));
    Ok(out)
}

/// Hash, first interchange's sender and ISA13, and how many ISA segments there may be.
struct Sniff {
    sha256: String,
    sender: Option<String>,
    isa13: Option<String>,
    interchanges: u32,
}

fn sniff(path: &Path) -> io::Result<Sniff> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut head = Vec::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut count = 0u32;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if head.len() < 512 {
            head.extend_from_slice(&buf[..n.min(512 - head.len())]);
        }
        carry.extend_from_slice(&buf[..n]);
        count += memchr::memmem::find_iter(&carry, b"ISA").count() as u32;
        let keep = carry.len().min(2);
        carry.drain(..carry.len() - keep);
        // The kept bytes cannot hold a whole "ISA", so nothing is counted twice.
    }
    let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let text = head.trim_ascii_start();
    let (mut sender, mut isa13) = (None, None);
    if text.len() > 4 && text.starts_with(b"ISA") {
        let sep = text[3];
        let els: Vec<&[u8]> = text.split(|b| *b == sep).collect();
        if els.len() > 13 {
            let s = String::from_utf8_lossy(els[6]).trim().to_string();
            let i = String::from_utf8_lossy(els[13]).trim().to_string();
            sender = (!s.is_empty()).then_some(s);
            isa13 = (!i.is_empty()).then_some(i);
        }
    }
    Ok(Sniff {
        sha256,
        sender,
        isa13,
        interchanges: count,
    })
}

// ---------------------------------------------------------------------------------------------
// Parse (parallel).

/// Which set a record came from, and what its header says.
#[derive(Debug, Clone)]
struct SetHead {
    full: bool,
    group: Option<String>,
    /// The file's effective date (DTP*007): a full file's members are compared as of it.
    file_date: Option<NaiveDate>,
    /// The day the sender created the file (GS04): the rules' retroactive and future windows
    /// count from it, as in `eligo convert --config`.
    created: Option<NaiveDate>,
}

type SetKey = (String, String, String);

enum Parsed {
    Quarantine(String),
    Duplicate {
        ack: Vec<u8>,
    },
    X12 {
        ack: Vec<u8>,
        spool: File,
        heads: HashMap<SetKey, SetHead>,
        rejects: Vec<RejectRow>,
        accepted: u64,
        rejected: u64,
        /// Where member loops start, to read a rejected change's segments again.
        loops: LoopIndex,
    },
    Portal {
        spool: File,
        rejects: Vec<RejectRow>,
        rows_ok: u64,
    },
}

/// Observes one file for the run: the 999/TA1 writer, the change converter and the reject rows.
struct Tee<'a> {
    file: String,
    ack: AckWriter<Vec<u8>>,
    conv: ConvertObserver<'a, BufWriter<File>>,
    heads: HashMap<SetKey, SetHead>,
    rejects: Vec<RejectRow>,
    ids: (String, String, String),
    /// GS04 of the current group.
    created: Option<NaiveDate>,
    header: Option<HeaderContext>,
    rules: Vec<&'static str>,
    group_rules: Vec<&'static str>,
    ic_rules: Vec<&'static str>,
    accepted_in_group: u64,
    accepted_in_ic: u64,
    accepted: u64,
    rejected: u64,
    /// Member loop starts of the current set, and of the sets before it.
    marks: SetMarks,
    loops: LoopIndex,
}

/// Notes where the member loop `rec` starts.
fn note_member(marks: &mut SetMarks, rec: &Record) {
    if let Some(first) = rec.segs.first() {
        marks.note(
            rec.delims,
            Mark {
                position: first.position,
                at: first.at,
            },
        );
    }
}

fn joined(v: &[&'static str]) -> String {
    let mut v: Vec<&str> = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v.join(";")
}

impl Observer for Tee<'_> {
    fn finding(&mut self, f: Finding) {
        if f.severity == Severity::Error {
            self.rules.push(f.id);
            self.group_rules.push(f.id);
            self.ic_rules.push(f.id);
        }
        self.conv.finding(f.clone());
        self.ack.finding(f);
    }
    fn interchange_start(&mut self, i: &InterchangeInfo) {
        self.ids.0 = i.isa13.clone();
        self.ic_rules.clear();
        self.accepted_in_ic = 0;
        self.ack.interchange_start(i);
        self.conv.interchange_start(i);
    }
    fn interchange_end(&mut self, i: &InterchangeInfo, ta1: Ta1Result, groups: u32) {
        if ta1.code == 'R' {
            self.rejects.push(RejectRow {
                file: self.file.clone(),
                level: "interchange",
                isa13: i.isa13.clone(),
                gs06: String::new(),
                st02: String::new(),
                codes: format!("TA1 {}", ta1.note),
                rules: joined(&self.ic_rules),
            });
            self.accepted -= self.accepted_in_ic;
            self.rejected += self.accepted_in_ic;
        }
        self.ack.interchange_end(i, ta1, groups);
        self.conv.interchange_end(i, ta1, groups);
    }
    fn group_start(&mut self, g: &GroupInfo) {
        self.ids.1 = g.gs06.clone();
        self.created = crate::validate::element::parse_date(g.gs04.as_bytes());
        self.group_rules.clear();
        self.accepted_in_group = 0;
        self.ack.group_start(g);
        self.conv.group_start(g);
    }
    fn group_end(&mut self, r: &GroupResult) {
        if r.code == 'R' {
            self.rejects.push(RejectRow {
                file: self.file.clone(),
                level: "group",
                isa13: self.ids.0.clone(),
                gs06: r.info.gs06.clone(),
                st02: String::new(),
                codes: format!("AK9 R {}", r.errors.join(" ")).trim().to_string(),
                rules: joined(&self.group_rules),
            });
            self.accepted -= self.accepted_in_group;
            self.rejected += self.accepted_in_group;
            self.accepted_in_ic -= self.accepted_in_group;
        }
        self.ack.group_end(r);
        self.conv.group_end(r);
    }
    fn set_start(&mut self, s: &SetInfo) {
        self.ids.2 = s.st02.clone();
        self.rules.clear();
        self.header = None;
        self.marks = SetMarks::default();
        self.ack.set_start(s);
        self.conv.set_start(s);
    }
    fn header(&mut self, rec: &Record, std: &Standards) {
        let mut full = false;
        for (_, seg) in rec.iter() {
            if seg.id() == b"BGN" {
                full = matches!(seg.element(8), b"4" | b"RX");
            }
        }
        let h = HeaderContext::from_record(rec, &self.file, &self.ids.0, &self.ids.1, &self.ids.2);
        self.heads.insert(
            self.ids.clone(),
            SetHead {
                full,
                group: h.group_id.clone(),
                file_date: h.file_effective,
                created: self.created,
            },
        );
        self.header = Some(h);
        self.ack.header(rec, std);
        self.conv.header(rec, std);
    }
    fn member(&mut self, rec: &Record, std: &Standards) {
        note_member(&mut self.marks, rec);
        self.ack.member(rec, std);
        self.conv.member(rec, std);
    }
    fn set_end(&mut self, r: &SetResult) {
        self.loops
            .insert(self.ids.clone(), std::mem::take(&mut self.marks));
        if r.code == 'R' {
            self.rejected += 1;
            self.rejects.push(RejectRow {
                file: self.file.clone(),
                level: "set",
                isa13: self.ids.0.clone(),
                gs06: self.ids.1.clone(),
                st02: r.info.st02.clone(),
                codes: format!("IK5 R {}", r.errors.join(" ")).trim().to_string(),
                rules: joined(&self.rules),
            });
        } else {
            self.accepted += 1;
            self.accepted_in_group += 1;
            self.accepted_in_ic += 1;
        }
        self.ack.set_end(r);
        self.conv.set_end(r);
    }
}

/// What a piece of a set parsed on another thread ([`crate::split`]) gives the run: the
/// converter's piece, and the piece's findings in order. Between two members the [`Tee`] only
/// collects error ids and hands findings to the acknowledgement writer (which uses no member
/// records), so keeping the findings and replaying them at merge time makes the same ack, the
/// same reject rows and the same change records as a sequential read.
struct TeePiece {
    conv: batch::ConvertPiece,
    findings: Vec<Finding>,
    marks: SetMarks,
}

impl Observer for TeePiece {
    fn finding(&mut self, f: Finding) {
        self.conv.finding(f.clone());
        self.findings.push(f);
    }
    fn member(&mut self, rec: &Record, std: &Standards) {
        note_member(&mut self.marks, rec);
        self.conv.member(rec, std);
    }
}

impl crate::split::Split for Tee<'_> {
    type Piece = TeePiece;
    fn piece(&mut self) -> Option<TeePiece> {
        self.conv.piece().map(|conv| TeePiece {
            conv,
            findings: Vec::new(),
            marks: SetMarks::default(),
        })
    }
    fn merge(&mut self, piece: TeePiece) {
        self.conv.merge(piece.conv);
        self.marks.append(piece.marks);
        for f in piece.findings {
            // What `Tee::finding` does, less the converter's part (its piece counted them).
            if f.severity == Severity::Error {
                self.rules.push(f.id);
                self.group_rules.push(f.id);
                self.ic_rules.push(f.id);
            }
            self.ack.finding(f);
        }
    }
}

/// Writes only the TA1 `025` (duplicate interchange) for each interchange of a duplicate file.
struct DuplicateAck(AckWriter<Vec<u8>>);

impl Observer for DuplicateAck {
    fn finding(&mut self, _f: Finding) {}
    fn interchange_start(&mut self, i: &InterchangeInfo) {
        self.0.interchange_start(i);
    }
    fn interchange_end(&mut self, i: &InterchangeInfo, _ta1: Ta1Result, _groups: u32) {
        self.0.interchange_end(
            i,
            Ta1Result {
                code: 'R',
                note: "025",
            },
            0,
        );
    }
}

fn ack_settings(cfg: &Config, f: &FileRow, now: NaiveDateTime) -> AckSettings {
    let mut s = AckSettings::from_env();
    s.now = now;
    s.next_isa13 = f.isa13_base.max(1);
    s.next_gs06 = f.gs06_base.max(1);
    s.sender = cfg
        .plan
        .ack_sender
        .as_deref()
        .and_then(|s| s.split_once(':'))
        .map(|(q, id)| (q.to_string(), id.to_string()));
    s
}

/// `jobs`: threads that may parse pieces of the file's large sets ([`crate::split`]).
fn parse_file(
    engine: &Engine,
    cfg: &Config,
    f: &FileRow,
    now: NaiveDateTime,
    jobs: usize,
) -> io::Result<Parsed> {
    let file = match File::open(&f.path) {
        Ok(i) => i,
        Err(e) => return Ok(Parsed::Quarantine(format!("cannot read: {}", e.kind()))),
    };
    // The content is hashed again: a file that changed since it was registered (a sender still
    // writing, or rewriting it) is quarantined, never applied half old, half new.
    let h = if f.kind != "portal" && f.duplicate_of.is_none() {
        // An interchange to apply is parsed in pieces on several threads, with positional
        // reads, and hashed afterwards through the same handle: a byte changed before the
        // parse read it, or after, is still changed when the hash reads it, so the digest
        // differs from the registered one either way.
        let parsed = parse_x12(engine, cfg, f, now, &file, jobs)?;
        let mut h = Sha256::new();
        let mut r = &file;
        r.rewind()?;
        io::copy(&mut BufReader::with_capacity(1 << 16, r), &mut h)?;
        (parsed, h)
    } else {
        let mut hashing = Hashing {
            inner: BufReader::with_capacity(1 << 16, file),
            h: Sha256::new(),
        };
        let parsed = parse_content(engine, cfg, f, now, &mut hashing)?;
        io::copy(&mut hashing, &mut io::sink())?;
        (parsed, hashing.h)
    };
    let (parsed, h) = h;
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if digest != f.sha256 {
        return Ok(Parsed::Quarantine(
            "changed while being read: its content differs from when it was registered".into(),
        ));
    }
    Ok(parsed)
}

/// Hashes what it reads.
struct Hashing<R> {
    inner: R,
    h: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
}

/// Parses a portal export, or a duplicate X12 file (its TA1s only).
fn parse_content<R: Read>(
    engine: &Engine,
    cfg: &Config,
    f: &FileRow,
    now: NaiveDateTime,
    input: R,
) -> io::Result<Parsed> {
    if f.kind == "portal" {
        let spool = tempfile::tempfile()?;
        let mut w = ChangeWriter::new(BufWriter::new(spool), batch::Format::Jsonl)?;
        let s = crate::portal::convert_csv(&f.name, input, &mut w)?;
        let spool = w.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        if s.records == 0 && !s.errors.is_empty() && s.errors.iter().all(|e| e.row <= 1) {
            return Ok(Parsed::Quarantine("not a known portal export".into()));
        }
        if f.duplicate_of.is_some() {
            return Ok(Parsed::Duplicate { ack: Vec::new() });
        }
        let rejects = s
            .errors
            .iter()
            .map(|e| RejectRow {
                file: f.name.clone(),
                level: "row",
                isa13: String::new(),
                gs06: String::new(),
                st02: String::new(),
                codes: format!("row {} {}", e.row, e.column.clone().unwrap_or_default()),
                rules: format!("PORTAL-{:?}", e.kind)
                    .chars()
                    .take_while(|c| *c != '(' && *c != ' ' && *c != '{')
                    .collect(),
            })
            .collect();
        return Ok(Parsed::Portal {
            spool,
            rejects,
            rows_ok: s.records,
        });
    }
    // A duplicate X12 file (an X12 file to apply goes to `parse_x12`).
    let mut d = DuplicateAck(AckWriter::new(Vec::new(), ack_settings(cfg, f, now)));
    check_stream(engine, input, &mut d);
    let written = d.0.written;
    let ack = d.0.into_inner()?;
    if written == 0 {
        return Ok(Parsed::Quarantine("no interchange could be read".into()));
    }
    Ok(Parsed::Duplicate { ack })
}

/// Parses an X12 file to apply: acknowledgement, reject rows, set headers and spooled change
/// records, with its large sets cut into pieces parsed on `jobs` threads.
fn parse_x12(
    engine: &Engine,
    cfg: &Config,
    f: &FileRow,
    now: NaiveDateTime,
    input: &File,
    jobs: usize,
) -> io::Result<Parsed> {
    let spool = tempfile::tempfile()?;
    // The converter writes the records straight into the spool and cuts a rejected
    // interchange's records out of it at IEA ([`ConvertObserver::direct`]), instead of
    // spooling each interchange in a file of its own and copying its accepted sets here: every
    // record was written twice and copied once more by the kernel (docs/performance.md,
    // runperf3). Nothing else reads or writes the spool until the parse ends.
    let direct = spool.try_clone()?;
    let mut w = ChangeWriter::new(
        BufWriter::with_capacity(1 << 16, spool),
        batch::Format::Jsonl,
    )?;
    let mut tee = Tee {
        file: f.name.clone(),
        ack: AckWriter::new(Vec::new(), ack_settings(cfg, f, now)),
        conv: ConvertObserver::new(&f.name, &mut w).direct(direct),
        heads: HashMap::new(),
        rejects: Vec::new(),
        ids: Default::default(),
        created: None,
        header: None,
        rules: Vec::new(),
        group_rules: Vec::new(),
        ic_rules: Vec::new(),
        accepted_in_group: 0,
        accepted_in_ic: 0,
        accepted: 0,
        rejected: 0,
        marks: SetMarks::default(),
        loops: LoopIndex::default(),
    };
    let stats = crate::split::split_file(
        engine,
        input,
        &mut tee,
        crate::split::SplitOptions::new(jobs),
    );
    tracing::debug!(file = %f.name, regions = stats.regions, pieces = stats.pieces, fallbacks = stats.fallbacks, "parsed");
    let Tee {
        ack,
        conv,
        heads,
        rejects,
        accepted,
        rejected,
        loops,
        ..
    } = tee;
    conv.finish()?;
    let written = ack.written;
    let ack = ack.into_inner()?;
    if written == 0 {
        return Ok(Parsed::Quarantine("no interchange could be read".into()));
    }
    let spool = w.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    Ok(Parsed::X12 {
        ack,
        spool,
        heads,
        rejects,
        accepted,
        rejected,
        loops,
    })
}

/// Reads back spooled JSON Lines records, one at a time.
///
/// Each line is read as bytes into one buffer reused for every line and handed to
/// [`ChangeRecord::from_json`] (which checks the UTF-8 of the strings it reads: `BufRead::lines`
/// validated every line once more and allocated a `String` for it). Lines end as `lines` ends
/// them (`\n` or `\r\n`, the last one perhaps without).
fn spooled(mut f: File) -> io::Result<impl Iterator<Item = io::Result<ChangeRecord>>> {
    f.rewind()?;
    Ok(records_of(f))
}

fn records_of<R: Read>(f: R) -> impl Iterator<Item = io::Result<ChangeRecord>> {
    let mut r = SpoolReader::new(f);
    let mut line = Lines::default();
    std::iter::from_fn(move || {
        line.clear();
        r.next(&mut line)
    })
}

/// The spooled lines of a chunk's records (line breaks aside), one after another in one
/// buffer, each with where its parts are when the reader found them
/// ([`ChangeRecord::read_json`]), for [`with_verdict`].
///
/// Why: a vector per line cost an allocation and a free for every change of the run, and a
/// copy of the line besides the one read; the buffers go back to the reading to be filled
/// again ([`Ctx::emit_spooled`]). Why text: each line's UTF-8 is checked once, as it is read
/// ([`SpoolReader::next_with`]); the reader and the splice of the verdict each checked it
/// again (runperf21).
#[derive(Debug, Default)]
struct Lines {
    text: String,
    /// Where each line ends in `text` (the last one at its end), on a character boundary.
    ends: Vec<usize>,
    /// Where each line's parts are, within the line (`None`: read by serde_json).
    spans: Vec<Option<crate::changes::JsonSpans>>,
}

impl Lines {
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.spans.clear();
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Line `i`, if there are that many.
    fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = match i.checked_sub(1) {
            Some(before) => *self.ends.get(before)?,
            None => 0,
        };
        self.text.get(start..end)
    }

    /// Where line `i`'s parts are, if the reader found them.
    fn spans(&self, i: usize) -> Option<&crate::changes::JsonSpans> {
        self.spans.get(i)?.as_ref()
    }

    /// Where the next line starts.
    fn end(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Removes the last line.
    fn pop(&mut self) {
        self.ends.pop();
        self.spans.pop();
        self.text.truncate(self.end());
    }

    /// Moves the last line to the end of `to`.
    fn move_last(&mut self, to: &mut Lines) {
        if self.ends.is_empty() {
            return;
        }
        let last = self.len() - 1;
        if let Some(line) = self.get(last) {
            to.text.push_str(line);
            to.ends.push(to.text.len());
            to.spans.push(self.spans.get(last).cloned().flatten());
        }
        self.pop();
    }
}

/// Records, each in a box of its own: the records of a run's chunks, and those kept to be read
/// into again.
///
/// Why boxed: a record is about a kilobyte, and each move of one (out of the pool of spare
/// records, out of the reader, into its chunk, back into the pool) was a copy of it, which
/// cost more than its strings' allocations did before they were reused (docs/performance.md,
/// runperf15). A box moves as a pointer.
#[allow(clippy::vec_box)]
type Records = Vec<Box<ChangeRecord>>;

/// Reads a spool's records from where its reader is.
struct SpoolReader<R> {
    r: BufReader<R>,
    /// Records already recorded, read into again ([`ChangeRecord::read_json`]) before a new
    /// one is made: their strings keep their memory.
    spare: Records,
}

impl<R: Read> SpoolReader<R> {
    fn new(f: R) -> Self {
        SpoolReader {
            r: BufReader::with_capacity(1 << 16, f),
            spare: Vec::new(),
        }
    }

    /// The next record, its line added to `lines` as their last (only when it decodes);
    /// `None` at the spool's end.
    fn next(&mut self, lines: &mut Lines) -> Option<io::Result<ChangeRecord>> {
        Self::next_with(&mut self.r, lines, |line| {
            let mut r = crate::changejson::blank_record();
            r.read_json(line).map(|spans| (r, spans))
        })
    }

    /// [`SpoolReader::next`], boxed, read into a spare record where there is one, its line's
    /// spans kept with the line.
    fn next_boxed(&mut self, lines: &mut Lines) -> Option<io::Result<Box<ChangeRecord>>> {
        let spare = &mut self.spare;
        Self::next_with(&mut self.r, lines, |line| {
            let mut r = spare
                .pop()
                .unwrap_or_else(|| Box::new(crate::changejson::blank_record()));
            r.read_json(line).map(|spans| (r, spans))
        })
    }

    /// The next line of `r`, added to `lines` as their last, with the spans `read` gives,
    /// when `read` decodes it.
    #[allow(clippy::type_complexity)]
    fn next_with<T>(
        r: &mut BufReader<R>,
        lines: &mut Lines,
        read: impl FnOnce(&str) -> serde_json::Result<(T, Option<crate::changes::JsonSpans>)>,
    ) -> Option<io::Result<T>> {
        let start = lines.end();
        lines.text.truncate(start);
        // A line that is not UTF-8 is an error of its own (and no JSON): its bytes are read
        // and dropped, and the next call reads the line after it.
        match r.read_line(&mut lines.text) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                lines.text.truncate(start);
                return Some(Err(e));
            }
        }
        if lines.text.ends_with('\n') {
            lines.text.pop();
            if lines.text.ends_with('\r') {
                lines.text.pop();
            }
        }
        match lines.text.get(start..).map(read) {
            Some(Ok((r, spans))) => {
                lines.ends.push(lines.text.len());
                lines.spans.push(spans);
                Some(Ok(r))
            }
            Some(Err(e)) => {
                lines.text.truncate(start);
                Some(Err(io::Error::other(e)))
            }
            None => Some(Err(io::Error::other("a spooled line out of its buffer"))),
        }
    }
}

/// Appends what [`ChangeRecord::write_json`] writes for `r` to `out`, from `line`, the
/// spooled JSON of `r` without its verdict, and `spans`, where the spool's reader found its
/// parts ([`ChangeRecord::read_json`]): the line's content, then `r`'s verdict (`status`,
/// `invoice_period`) as the writer writes it (in `tail`, a buffer of the caller's). Gives the
/// spans of what was appended, in `out`; appends nothing when the line is not UTF-8.
///
/// Why: a spooled record's JSON was written by the parse; writing it again for the batch and
/// the store cost about a twentieth of the run's instructions (docs/performance.md, runperf6).
/// Why straight into `out`, the chunk's JSON: the line was copied into a buffer of its own
/// first, and from there into the chunk's, a kilobyte copied twice per change (runperf15).
fn with_verdict(
    line: &str,
    spans: crate::changes::JsonSpans,
    r: &ChangeRecord,
    out: &mut String,
    tail: &mut Vec<u8>,
) -> io::Result<crate::changes::JsonSpans> {
    use crate::changejson::{json_key, Json};
    let content = line
        .get(..spans.content_end)
        .ok_or_else(|| io::Error::other("a spooled record's spans out of its line"))?;
    tail.clear();
    if let Some(status) = &r.status {
        tail.extend_from_slice(json_key!("status").as_bytes());
        status.json(tail);
    }
    if let Some(period) = &r.invoice_period {
        tail.extend_from_slice(json_key!("invoice_period").as_bytes());
        crate::changejson::string(tail, period);
    }
    tail.push(b'}');
    let tail = std::str::from_utf8(tail).map_err(io::Error::other)?;
    let start = out.len();
    out.push_str(content);
    out.push_str(tail);
    let mut spans = shifted(spans, start);
    spans.record = start..out.len();
    Ok(spans)
}

/// `spans` of a record's JSON moved on by `by` bytes (where it was appended).
fn shifted(spans: crate::changes::JsonSpans, by: usize) -> crate::changes::JsonSpans {
    let on = |r: std::ops::Range<usize>| r.start + by..r.end + by;
    crate::changes::JsonSpans {
        record: on(spans.record),
        change_id: on(spans.change_id),
        content_end: spans.content_end + by,
        new: on(spans.new),
        old: spans.old.map(on),
    }
}

/// Bytes of a spool read before they are handed back ([`Releasing`]).
const RELEASE_STEP: u64 = 16 << 20;

/// A spool read from its start for the last time, whose bytes already read are punched out of
/// the file (`fallocate(PUNCH_HOLE)`) every [`RELEASE_STEP`] bytes.
///
/// Why: the spool is about 3.5 times the input, and it is written whole before the apply reads
/// it back, while the apply writes the batch, the reports and the store. Without the holes the
/// run's page cache held the whole spool until the run's end, and every page the apply wrote
/// was a page the kernel had to find afresh: on the test machine (a VM whose free memory goes
/// back to the host) the run's system time grew 41 times for 10 times the input, most of it in
/// the first touch of those pages (docs/performance.md, runperf5). Punched, the spool's pages
/// (and their disk blocks, not yet written back for the most part) are freed as it is read, and
/// the apply's writes reuse them. Only an optimization: where punching fails (another file
/// system, another OS) the spool is read as before.
struct Releasing {
    file: File,
    /// Bytes read from the file so far (it was read from its start).
    read: u64,
    /// Bytes from the start already punched out.
    released: u64,
}

impl Releasing {
    fn new(file: File) -> Releasing {
        Releasing {
            file,
            read: 0,
            released: 0,
        }
    }
}

impl Read for Releasing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if self.read - self.released >= RELEASE_STEP {
            // Whole pages only; what was read is in the reader's buffer already.
            let upto = self.read & !0xfff;
            punch(&self.file, self.released, upto - self.released);
            self.released = upto;
        }
        Ok(n)
    }
}

/// Frees `len` bytes of `file` from `offset` (a hole; the size stays). Failure is ignored: the
/// bytes then stay until the file is dropped, as before.
#[cfg(target_os = "linux")]
fn punch(file: &File, offset: u64, len: u64) {
    use rustix::fs::{fallocate, FallocateFlags};
    let _ = fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    );
}

#[cfg(not(target_os = "linux"))]
fn punch(_file: &File, _offset: u64, _len: u64) {}

/// The set a spooled X12 record came from, borrowed from it (empty for a portal row).
fn set_of(r: &ChangeRecord) -> (&str, &str, &str) {
    match &r.source {
        SourceTrace::X12 {
            isa13, gs06, st02, ..
        } => (isa13, gs06, st02),
        _ => ("", "", ""),
    }
}

/// Whether `key` names the set `set`.
fn same_set(key: &SetKey, set: (&str, &str, &str)) -> bool {
    (key.0.as_str(), key.1.as_str(), key.2.as_str()) == set
}

/// The spooled records of one set, read again from the start of the spool.
fn set_records(
    spool: &File,
    key: &SetKey,
) -> io::Result<impl Iterator<Item = io::Result<ChangeRecord>>> {
    let key = key.clone();
    Ok(spooled(spool.try_clone()?)?.filter(move |r| match r {
        Ok(r) => same_set(&key, set_of(r)),
        Err(_) => true,
    }))
}

/// Changes handed to [`Ctx::emit`] at a time.
const CHUNK: usize = 1024;

/// Cuts a file's changes into chunks for [`Ctx::emit`]: about [`CHUNK`] changes each, cut only
/// where a family ends and wherever the set changes, so the rules see each family whole and
/// each chunk has one reference day (the set's GS04).
#[derive(Default)]
struct Chunks {
    records: Records,
    set: SetKey,
    day: Option<NaiveDate>,
}

impl Chunks {
    /// Takes `r` (from `set`, or from the set it names when `None`, whose rules count from
    /// `day`); returns the chunk to emit before it when `r` starts a new one.
    fn push(
        &mut self,
        r: Box<ChangeRecord>,
        set: Option<&SetKey>,
        day: Option<NaiveDate>,
    ) -> Option<(Records, Option<NaiveDate>)> {
        let set = match set {
            Some(k) => (k.0.as_str(), k.1.as_str(), k.2.as_str()),
            None => set_of(&r),
        };
        let new_set = !same_set(&self.set, set);
        let cut = self.records.last().is_some_and(|last| {
            new_set || (self.records.len() >= CHUNK && !crate::rules::same_family(last, &r))
        });
        if new_set {
            // Only where the set changes: not three strings copied per change.
            self.set = (set.0.to_string(), set.1.to_string(), set.2.to_string());
        }
        // The next chunk's vector is sized for a whole chunk (and a family beyond it): grown
        // by doubling, it moved every record again at each step.
        let done = cut.then(|| {
            let next = Vec::with_capacity(CHUNK + CHUNK / 16);
            (std::mem::replace(&mut self.records, next), self.day)
        });
        self.day = day;
        self.records.push(r);
        done
    }

    /// The last chunk, if any.
    fn finish(self) -> Option<(Records, Option<NaiveDate>)> {
        (!self.records.is_empty()).then_some((self.records, self.day))
    }
}

/// Where a full set's derived changes go: to a hold (recorded, not applied), or to the batch
/// in chunks, through a spool first when the set lists a member twice; each also goes to the
/// group's discrepancy report.
struct Derived {
    report: crate::discrepancy::GroupDiscrepancy,
    hold: Option<i64>,
    spool: Option<BufWriter<File>>,
    chunks: Chunks,
    key: SetKey,
    day: Option<NaiveDate>,
    /// Changes applied or held so far.
    emitted: u64,
}

impl Derived {
    fn take(
        &mut self,
        ctx: &mut Ctx,
        file: &FileRow,
        sender: Option<&str>,
        c: ChangeRecord,
    ) -> Result<(), RunError> {
        self.report.change(&c)?;
        if let Some(hold) = self.hold {
            ctx.store
                .insert_change(&c, ctx.run_id, Some(file.id), Some(hold))?;
            ctx.summary.changes_waiting += 1;
        } else if let Some(w) = &mut self.spool {
            serde_json::to_writer(&mut *w, &c).map_err(io::Error::other)?;
            io::Write::write_all(w, b"\n")?;
        } else if let Some((chunk, day)) = self.chunks.push(Box::new(c), Some(&self.key), self.day)
        {
            self.emitted += ctx.emit(file, sender, day, chunk)?;
        }
        Ok(())
    }

    /// Emits what is left (and the spool, if any); returns the number of changes emitted, and
    /// hands the group's discrepancy report to the run.
    fn finish(
        mut self,
        ctx: &mut Ctx,
        file: &FileRow,
        sender: Option<&str>,
    ) -> Result<u64, RunError> {
        if let Some(w) = self.spool.take() {
            let f = w.into_inner().map_err(|e| e.into_error())?;
            for r in spooled(f)? {
                let r = Box::new(r?);
                if let Some((chunk, day)) = self.chunks.push(r, Some(&self.key), self.day) {
                    self.emitted += ctx.emit(file, sender, day, chunk)?;
                }
            }
        }
        if let Some((chunk, day)) = self.chunks.finish() {
            self.emitted += ctx.emit(file, sender, day, chunk)?;
        }
        ctx.discrepancies.push(self.report);
        Ok(if self.hold.is_some() { 0 } else { self.emitted })
    }
}

/// A chunk of a spool's records cut ([`Chunks`]) with their lines, to be prepared.
struct Cut {
    records: Records,
    lines: Lines,
    day: Option<NaiveDate>,
}

/// A recorded chunk's buffers, back to [`cut_spool`] to be read into again: its lines' buffer,
/// and its records, whose strings the next records are read into.
#[derive(Default)]
struct Reuse {
    lines: Lines,
    records: Records,
}

/// Reads a spool's records from its start (the `last` reading hands what it read back to the
/// file system, [`Releasing`]), keeps those `route` gives a reference day (`Some`; it sees each
/// record where it was decoded, which a move of a record, a kilobyte, costs), and
/// sends them to `out` cut into chunks with their lines, reading each line straight into its
/// chunk's buffer (taken from `free`, or new) and each record into one recorded before (from
/// `free` too) where there is one. Stops at the first error, which it sends, or
/// when `out` is closed.
fn cut_spool<F>(
    mut spool: File,
    last: bool,
    mut route: F,
    free: &std::sync::mpsc::Receiver<Reuse>,
    out: &std::sync::mpsc::SyncSender<io::Result<Cut>>,
) where
    F: FnMut(&ChangeRecord) -> Option<Option<NaiveDate>>,
{
    if let Err(e) = spool.rewind() {
        let _ = out.send(Err(e));
        return;
    }
    let input: Box<dyn Read> = if last {
        Box::new(Releasing::new(spool))
    } else {
        Box::new(spool)
    };
    let mut reader = SpoolReader::new(input);
    let fresh = |reader: &mut SpoolReader<Box<dyn Read>>| {
        let Reuse { mut lines, records } = free.try_recv().unwrap_or_default();
        // Chunks differ in size: records left from the last ones are kept with these (dropped,
        // they were made again for a later chunk).
        if reader.spare.len() < records.len() {
            let left = std::mem::replace(&mut reader.spare, records);
            reader.spare.extend(left);
        } else {
            reader.spare.extend(records);
        }
        lines.clear();
        lines
    };
    let mut chunks = Chunks::default();
    // The lines of the records in `chunks`, in order (and of the record being read last).
    let mut lines = fresh(&mut reader);
    while let Some(r) = reader.next_boxed(&mut lines) {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        };
        let Some(day) = route(&r) else {
            lines.pop();
            reader.spare.push(r);
            continue;
        };
        if let Some((records, day)) = chunks.push(r, None, day) {
            // `r` is the first record of the next chunk: its line goes with it.
            let mut next = fresh(&mut reader);
            lines.move_last(&mut next);
            let lines = std::mem::replace(&mut lines, next);
            if out
                .send(Ok(Cut {
                    records,
                    lines,
                    day,
                }))
                .is_err()
            {
                return;
            }
        }
    }
    if let Some((records, day)) = chunks.finish() {
        let _ = out.send(Ok(Cut {
            records,
            lines,
            day,
        }));
    }
}

// ---------------------------------------------------------------------------------------------
// Apply, stage, publish.

fn safe_component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if c.is_empty() || c.starts_with('.') {
        format!("_{c}")
    } else {
        c
    }
}

/// Staged outputs: files written under the run's staging folder, with where each goes.
struct Stage {
    dir: PathBuf,
    files: Vec<(PathBuf, PathBuf)>,
}

impl Stage {
    fn new(dir: PathBuf) -> io::Result<Stage> {
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(Stage {
            dir,
            files: Vec::new(),
        })
    }

    /// A staging path for a file that will be published at `dest`.
    fn path(&mut self, dest: PathBuf) -> PathBuf {
        let p = self.dir.join(format!("{:04}", self.files.len()));
        self.files.push((p.clone(), dest));
        p
    }

    fn write(&mut self, dest: PathBuf, data: &[u8], private: bool) -> io::Result<()> {
        let p = self.path(dest);
        fsio::write_atomic(&p, data, private)?;
        crash_point("mid-stage");
        Ok(())
    }

    fn publish(&self) -> io::Result<()> {
        // Every destination folder must exist and take a file before the first rename: an
        // unwritable or missing outbound folder then fails the run with nothing published.
        // (A full disk already failed while staging: renames allocate nothing.)
        for (_, to) in &self.files {
            let parent = to.parent().unwrap_or(Path::new("."));
            fs::create_dir_all(parent)?;
            tempfile::Builder::new()
                .prefix(".eligo-probe-")
                .tempfile_in(parent)?;
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (i, (from, to)) in self.files.iter().enumerate() {
            let parent = to.parent().unwrap_or(Path::new(".")).to_path_buf();
            if fs::rename(from, to).is_err() {
                // Another file system: copy atomically instead.
                let data = fs::read(from)?;
                fsio::write_atomic(to, &data, true)?;
            }
            if i == 0 {
                fsio::sync_dir(&parent)?;
                crash_point("mid-publish");
            }
            if !dirs.contains(&parent) {
                dirs.push(parent);
            }
        }
        for d in dirs {
            fsio::sync_dir(&d)?;
        }
        Ok(())
    }
}

/// The run's change batch, written as it is built.
struct Batch {
    jsonl: ChangeWriter<BufWriter<File>>,
    csv: ChangeWriter<BufWriter<File>>,
    /// Bytes of JSON Lines written so far: where the next record starts, which the store
    /// keeps instead of the record (see [`Store::insert_change_unstored`]).
    offset: u64,
}

impl Batch {
    fn add(&mut self, r: &ChangeRecord) -> io::Result<()> {
        let w = &mut self.jsonl;
        let bytes = w.encoder.encode(r)?;
        self.offset += bytes.len() as u64;
        io::Write::write_all(&mut w.inner, bytes)?;
        w.records += 1;
        self.csv.change(r)
    }
    /// [`Batch::add`] of a record already encoded: `json` is what `ChangeRecord::write_json`
    /// wrote (the bytes of `serde_json::to_string(r)`), `row` its CSV row (taken from that JSON
    /// by [`batch::Encoder::encode_csv_from_json`]) or why it could not be encoded.
    fn add_encoded(&mut self, json: &str, row: io::Result<&[u8]>) -> io::Result<()> {
        let w = &mut self.jsonl;
        io::Write::write_all(&mut w.inner, json.as_bytes())?;
        io::Write::write_all(&mut w.inner, b"\n")?;
        w.records += 1;
        self.offset += json.len() as u64 + 1;
        let c = &mut self.csv;
        io::Write::write_all(&mut c.inner, row?)?;
        c.records += 1;
        Ok(())
    }
    fn finish(self) -> io::Result<()> {
        for w in [self.jsonl, self.csv] {
            let f = w.into_inner()?.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
        }
        Ok(())
    }
}

/// Adds one to `name`'s count; the name is copied only the first time it is counted (a
/// change's kind and its rules' ids were copied for every change).
fn count(counts: &mut BTreeMap<String, u64>, name: &str) {
    match counts.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            counts.insert(name.to_string(), 1);
        }
    }
}

/// The log's reason for moving a change into run `run_id`'s batch.
fn batch_reason(run_id: i64) -> String {
    format!("batch run-{run_id:06}")
}

/// What follows a change into the batch: the count, and the group's enrollment. `new_json`
/// is the JSON of `r.new` when the caller has it (within the record's JSON).
fn submitted(
    summary: &mut Summary,
    store: &mut crate::store::Writer<'_>,
    r: &ChangeRecord,
    new_json: Option<&str>,
) -> Result<(), RunError> {
    summary.changes_submitted += 1;
    let Some(g) = r.group_id.as_deref() else {
        return Ok(());
    };
    match crate::fullfile::update(r) {
        // Written without reading (and decoding) the member's row first: the row the
        // change gives a new member, which the store merges into a stored one.
        crate::fullfile::Update::Set { active, data } => match new_json {
            Some(json) => store.set_member_of(g, r, active, data.map(|_| json))?,
            None => {
                if let Some(e) = crate::fullfile::apply(None, r) {
                    store.set_member(&e, data.is_some())?;
                }
            }
        },
        crate::fullfile::Update::Merge => {
            let cur = store.member(g, &r.member_id)?;
            if let Some(e) = crate::fullfile::apply(cur, r) {
                store.put_member(&e)?;
            }
        }
    }
    Ok(())
}

struct Ctx<'a> {
    cfg: &'a Config,
    store: &'a mut SqliteStore,
    run_id: i64,
    as_of: NaiveDate,
    at: String,
    batch: Batch,
    summary: Summary,
    omissions: Vec<(String, String, String)>,
    /// What each full file showed against the enrollment, per group.
    discrepancies: Vec<crate::discrepancy::GroupDiscrepancy>,
    /// The work on each change that needs no store, done ahead of it (see [`Prep`]).
    prep: Prep,
}

/// The member-level reject report of a run: the changes the page shows, and every change's CSV
/// rows beyond them, spilled to a temporary file.
struct RejectOutputs {
    report: crate::report::RejectReport,
    reject_rows: fsio::AtomicFile,
}

/// Changes with findings the reject page shows whole (the CSV has them all).
const MAX_REPORT_ENTRIES: usize = 2_000;

/// The part of applying a change that does not need the store: the business rules, the reject
/// report, and the record's bytes (its JSON, and its batch CSV row when it is submitted now).
/// It keeps what that part remembers from change to change, so it can run on a thread of its
/// own ahead of the store's statements ([`Ctx::emit_spooled`]), or inline ([`Ctx::emit`]); either
/// way every change of the run goes through it once, in order.
struct Prep {
    /// The business rules' memory of the file being applied (members and subscribers seen):
    /// a dependent's subscriber and a repeated member are found wherever the file has them,
    /// as `eligo convert --config` finds them, whatever the chunks the run emits.
    assessor: crate::rules::Assessor,
    /// The rules' assessments of the chunk being prepared (a buffer kept from chunk to chunk).
    assessed: Vec<crate::rules::Assessment>,
    /// Member-level business rejects and warnings of the run.
    report: crate::report::RejectReport,
    /// The input being applied, to read a change's segments again for the reject report.
    segments: Option<SegmentReader>,
    /// The reject CSV, written as the run goes: its header, then every change's business rows
    /// in order (the page's entries come first, and are final when added), in the staging
    /// folder; the X12 set rejects are appended at the end.
    /// (Taken when the apply is over.)
    reject_rows: Option<BufWriter<fsio::AtomicFile>>,
    /// The reject CSV rows of the change being prepared (a buffer kept from change to change).
    rows: Vec<u8>,
    /// The JSON of the change being prepared (a buffer kept likewise).
    json: Vec<u8>,
    /// Encodes the batch's CSV rows.
    csv: batch::Encoder,
}

/// What becomes of a change assessed.
enum Fate {
    /// Rejected: recorded, never submitted (the reject CSV lists it).
    Rejected,
    /// Recorded to wait (for an FHS, a later day): the store keeps its JSON.
    Waits,
    /// Submitted in this run, with its batch CSV row (bytes of [`Prepared::csv`]), or why it
    /// could not be encoded (the error surfaces where the row is written).
    Submitted(io::Result<std::ops::Range<usize>>),
}

/// What preparing a change gave: its assessment, where its JSON is in [`Prepared::json`], and
/// what becomes of it.
struct Verdict {
    assessment: crate::rules::Assessment,
    json: std::ops::Range<usize>,
    /// Where the record's `new` object is in [`Prepared::json`]: the member's data as the
    /// enrollment row keeps it (serde_json's bytes of `r.new`).
    new: std::ops::Range<usize>,
    fate: Fate,
}

/// A chunk of changes prepared, in order, for [`Ctx::record`]. Its buffers go back to be
/// prepared into again ([`Ctx::emit_spooled`]).
#[derive(Default)]
struct Prepared {
    /// The chunk's records, with the rules' verdict set; the first `verdicts.len()` are
    /// prepared. (Kept where the chunk put them: a record is large, and moving each again
    /// cost as much as a tenth of the apply.)
    records: Records,
    /// The records' lines as spooled, one per record, or none (records not read from a spool).
    lines: Lines,
    verdicts: Vec<Verdict>,
    /// The changes' JSON, one after another.
    json: String,
    /// The batch CSV rows of the changes submitted now, one after another.
    csv: Vec<u8>,
    /// The error that cut the chunk short: it surfaces after the changes before it are
    /// recorded, where applying the changes one by one would have met it.
    failed: Option<RunError>,
}

impl Prepared {
    fn failed(e: RunError) -> Prepared {
        Prepared {
            failed: Some(e),
            ..Default::default()
        }
    }
}

impl Prep {
    fn new(as_of: NaiveDate, reject_rows: Option<BufWriter<fsio::AtomicFile>>) -> Prep {
        Prep {
            assessor: Default::default(),
            assessed: Vec::new(),
            report: crate::report::RejectReport::new(as_of),
            segments: None,
            reject_rows,
            rows: Vec::new(),
            json: Vec::new(),
            csv: batch::Encoder::new(batch::Format::Csv),
        }
    }

    /// Points `findings` of change `r` at the segments that hold their values, read again
    /// from the input; returns the change's segments as received when `keep` (the reject page
    /// shows them). A change without X12 segments, or whose input cannot be read again, keeps
    /// the position of its loop's first segment and shows none.
    fn locate(
        &mut self,
        r: &ChangeRecord,
        findings: &mut [Finding],
        keep: bool,
    ) -> Vec<crate::report::RawSegment> {
        let (
            Some(reader),
            SourceTrace::X12 {
                isa13,
                gs06,
                st02,
                first_segment,
                last_segment,
                ..
            },
        ) = (self.segments.as_mut(), &r.source)
        else {
            return Vec::new();
        };
        let (first, last) = (*first_segment, *last_segment);
        if first == 0 {
            return Vec::new();
        }
        let segs = match reader.read((isa13, gs06, st02), first, last) {
            Ok(Some(segs)) => segs,
            Ok(None) => return Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e.kind(), "cannot read an input again for the reject report's segments");
                return Vec::new();
            }
        };
        for f in findings.iter_mut() {
            crate::report::locate_in(f, segs.range(first, last));
        }
        if keep {
            segs.range(first, last).map(|s| s.to_raw()).collect()
        } else {
            Vec::new()
        }
    }

    /// Assesses a chunk of changes and prepares each for the store, in order, into `p`'s
    /// buffers (emptied first); stops at the first error (kept in [`Prepared::failed`]).
    fn prepare(
        &mut self,
        actx: &RuleContext,
        file: &FileRow,
        changes: Records,
        mut lines: Lines,
        mut p: Prepared,
    ) -> Prepared {
        let mut assessed = std::mem::take(&mut self.assessed);
        assessed.clear();
        crate::rules::assess_into(&mut self.assessor, actx, &changes, &mut assessed);
        if lines.len() != changes.len() {
            lines.clear();
        }
        p.records = changes;
        p.lines = lines;
        p.verdicts.clear();
        p.json.clear();
        p.csv.clear();
        p.failed = None;
        for (i, (r, a)) in p.records.iter_mut().zip(assessed.drain(..)).enumerate() {
            // A line whose parts the reader found: the record's JSON up to its verdict.
            let line = p.lines.get(i).zip(p.lines.spans(i));
            let r = &mut **r;
            let v = self.prepare_one(file, actx.sender, (r, line), a, &mut p.json, &mut p.csv);
            match v {
                Ok(v) => p.verdicts.push(v),
                Err(e) => {
                    p.failed = Some(e);
                    break;
                }
            }
        }
        self.assessed = assessed;
        p
    }

    fn prepare_one(
        &mut self,
        file: &FileRow,
        sender: Option<&str>,
        (r, line): (
            &mut ChangeRecord,
            Option<(&str, &crate::changes::JsonSpans)>,
        ),
        mut a: crate::rules::Assessment,
        all_json: &mut String,
        all_csv: &mut Vec<u8>,
    ) -> Result<Verdict, RunError> {
        if !a.findings.is_empty() {
            // The first MAX_REPORT_ENTRIES changes with findings are kept whole (the page
            // shows them with their segments); the rest go straight to the CSV, spilled to
            // disk, so memory stays bounded on a bad night. Both point each finding at the
            // segment that holds its value.
            let on_page = self.report.entries.len() < MAX_REPORT_ENTRIES;
            let raw = self.locate(r, &mut a.findings, on_page);
            let mut rows = std::mem::take(&mut self.rows);
            rows.clear();
            self.report.change_csv_rows(
                &file.name,
                sender,
                r,
                &a,
                crate::report::ReportOptions::default(),
                &mut rows,
            );
            if let Some(out) = self.reject_rows.as_mut() {
                io::Write::write_all(out, &rows)?;
            }
            self.rows = rows;
            if on_page {
                self.report.add_change(&file.name, sender, r, &a, raw);
            } else {
                self.report.not_shown += 1;
            }
        }
        // A spooled record without a verdict: its line is its JSON up to the verdict.
        let spooled = match line {
            Some((line, spans)) if r.status.is_none() && r.invoice_period.is_none() => {
                Some((line, spans.clone()))
            }
            _ => None,
        };
        r.status = Some(a.status);
        // The verdict's copy is not read again: it is moved, not copied.
        r.invoice_period = a.invoice_period.take();
        // One encoding for the store's record and the batch's JSON Lines: the same text,
        // written by `ChangeRecord::write_json` (serde_json's bytes, without its generic
        // serializer), or the spooled line with the verdict written as it writes it; the
        // batch's CSV row takes its JSON columns from it.
        // Either is appended to the chunk's JSON whole or not at all, and `spans` are where.
        let mut buf = std::mem::take(&mut self.json);
        let written = match spooled {
            Some((line, spans)) => with_verdict(line, spans, r, all_json, &mut buf),
            None => {
                buf.clear();
                r.write_json(&mut buf)
                    .map_err(io::Error::other)
                    .and_then(|spans| {
                        let json = std::str::from_utf8(&buf).map_err(io::Error::other)?;
                        let start = all_json.len();
                        all_json.push_str(json);
                        Ok(shifted(spans, start))
                    })
            }
        };
        self.json = buf;
        let spans = written?;
        let json = spans.record.clone();
        let new = spans.new.clone();
        let fate = if a.rejected {
            Fate::Rejected
        } else if a.status == TransactionStatus::Pending {
            let start = all_csv.len();
            let row = self
                .csv
                .encode_csv_from_json(r, all_json.as_bytes(), &spans);
            Fate::Submitted(row.map(|row| {
                all_csv.extend_from_slice(row);
                start..all_csv.len()
            }))
        } else {
            Fate::Waits
        };
        Ok(Verdict {
            assessment: a,
            json,
            new,
            fate,
        })
    }
}

/// Prepared chunks waiting for the store at most (besides the one being prepared and the one
/// being recorded): memory stays bounded whatever the file.
const PREPARED_AHEAD: usize = 2;

impl Ctx<'_> {
    /// Assesses, records and (when Pending) submits changes; returns how many were recorded.
    fn emit(
        &mut self,
        file: &FileRow,
        sender: Option<&str>,
        file_date: Option<NaiveDate>,
        changes: Records,
    ) -> Result<u64, RunError> {
        let actx = RuleContext {
            config: self.cfg,
            as_of: self.as_of,
            sender,
            file_date,
        };
        let mut p = self
            .prep
            .prepare(&actx, file, changes, Lines::default(), Prepared::default());
        self.record(file, &mut p)
    }

    /// [`Ctx::emit`] of a spool's records, in chunks ([`Chunks`]), as a pipeline over three
    /// threads: one decodes the spool and cuts it into chunks ([`cut_spool`]), one prepares each
    /// chunk ([`Prep`]), and this one records what is prepared in the store, in order. `route`
    /// sees each record (on the decoding thread) and gives its reference day (`Some`), or `None`
    /// to leave it out; a chunk holds the records of one set (the one each record names).
    /// The first error of any stage ends the pipeline and is returned: a record's error is met
    /// after the records before it are recorded, as in applying them one by one.
    fn emit_spooled<F>(
        &mut self,
        file: &FileRow,
        sender: Option<&str>,
        spool: File,
        last: bool,
        route: F,
    ) -> Result<u64, RunError>
    where
        F: FnMut(&ChangeRecord) -> Option<Option<NaiveDate>> + Send,
    {
        use std::sync::mpsc::sync_channel;
        let (cfg, as_of) = (self.cfg, self.as_of);
        // The preparing thread has the run's `Prep` meanwhile (`record` never uses it); it is
        // put back whatever happens.
        let mut prep = std::mem::replace(&mut self.prep, Prep::new(as_of, None));
        let result = std::thread::scope(|s| {
            let (tx, rx) = sync_channel::<Prepared>(PREPARED_AHEAD);
            // Chunks recorded come back to be prepared into: their buffers are reused, not
            // allocated (and page-faulted) afresh for each chunk; their lines' buffers and
            // their records go back to be read into.
            let (spent, recycled) = sync_channel::<Prepared>(PREPARED_AHEAD + 2);
            let (lines_back, free_lines) = sync_channel::<Reuse>(PREPARED_AHEAD + 4);
            // At most one chunk cut waits to be prepared (besides the one being cut).
            let (cut_tx, cut_rx) = sync_channel::<io::Result<Cut>>(1);
            let decode = s.spawn(move || cut_spool(spool, last, route, &free_lines, &cut_tx));
            let prep = &mut prep;
            let stage = s.spawn(move || {
                for cut in cut_rx {
                    let Cut {
                        records,
                        lines,
                        day,
                    } = match cut {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = tx.send(Prepared::failed(e.into()));
                            return;
                        }
                    };
                    let actx = RuleContext {
                        config: cfg,
                        as_of,
                        sender,
                        file_date: day,
                    };
                    let mut spent = recycled.try_recv().unwrap_or_default();
                    let _ = lines_back.try_send(Reuse {
                        lines: std::mem::take(&mut spent.lines),
                        records: std::mem::take(&mut spent.records),
                    });
                    let p = prep.prepare(&actx, file, records, lines, spent);
                    let failed = p.failed.is_some();
                    // A failed send means the store's side stopped on an error of its own,
                    // which it returns.
                    if tx.send(p).is_err() || failed {
                        return;
                    }
                }
            });
            let mut total = 0;
            let recorded = rx.iter().try_for_each(|mut p| {
                total += self.record(file, &mut p)?;
                // Only a buffer to reuse: when the preparing thread is done or the way back is
                // full, it is dropped here instead.
                let _ = spent.try_send(p);
                Ok::<(), RunError>(())
            });
            // Unblocks the preparing thread if the store's side stopped early (and it the
            // decoding one).
            drop(rx);
            let prepared = stage.join();
            let decoded = decode.join();
            recorded?;
            match (prepared, decoded) {
                (Ok(()), Ok(())) => Ok(total),
                _ => Err(RunError::Io(io::Error::other(
                    "the thread preparing changes for the store failed",
                ))),
            }
        });
        self.prep = prep;
        result
    }

    /// Records prepared changes in the store and writes the submitted ones to the batch;
    /// returns how many were recorded.
    fn record(&mut self, file: &FileRow, p: &mut Prepared) -> Result<u64, RunError> {
        let mut n = 0;
        // The store's statements held for the whole chunk (see `Writer`), and the log's reason
        // for the changes submitted now.
        let mut w = self.store.writer();
        let reason = batch_reason(self.run_id);
        // The records and verdicts stay in `p`: the preparing thread hands the records back to
        // be read into, or drops them, when it reuses `p`'s buffers, off this thread, which is
        // the apply's critical path.
        for (r, c) in p.records.iter().zip(p.verdicts.iter_mut()) {
            let a = &c.assessment;
            let json = &p.json[c.json.clone()];
            // Only a change that waits is read from the store again (by the run that submits
            // it): a change submitted now keeps where its batch line starts, a rejected one
            // (never submitted; the reject CSV lists it) nothing.
            match &c.fate {
                Fate::Rejected => {
                    w.insert_change_unstored(r, self.run_id, Some(file.id), None)?;
                }
                Fate::Submitted(_) => w.insert_change_unstored(
                    r,
                    self.run_id,
                    Some(file.id),
                    Some(self.batch.offset),
                )?,
                Fate::Waits => {
                    w.insert_change_json(r, json, self.run_id, Some(file.id), None)?;
                }
            }
            n += 1;
            count(&mut self.summary.changes_by_kind, r.kind.label());
            for f in &a.findings {
                if f.severity == Severity::Error {
                    count(&mut self.summary.rejects_by_rule, f.id);
                }
            }
            match std::mem::replace(&mut c.fate, Fate::Rejected) {
                Fate::Rejected => {}
                Fate::Submitted(row) => {
                    // Received Pending in this run and written to the batch at once: the same
                    // rows as recording it Pending and then submitting it (`Ctx::submit`).
                    let row = row.map(|range| &p.csv[range]);
                    self.batch.add_encoded(json, row)?;
                    w.insert_submitted(r, self.as_of, self.run_id, "received", &self.at, &reason)?;
                    let new = p.json.get(c.new.clone());
                    submitted(&mut self.summary, &mut w, r, new)?;
                }
                Fate::Waits => {
                    w.insert_transaction(r, a.status, self.as_of, self.run_id, "received")?;
                    self.summary.changes_waiting += 1;
                }
            }
        }
        match p.failed.take() {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Writes a Pending change already recorded (released since an earlier run) to the batch:
    /// Submitted, and the enrollment follows it.
    fn submit(&mut self, r: &ChangeRecord) -> Result<(), RunError> {
        self.batch.add(r)?;
        self.store.set_status(
            &r.change_id,
            TransactionStatus::Submitted,
            &self.at,
            &batch_reason(self.run_id),
        )?;
        self.store.set_batch(&r.change_id, self.run_id)?;
        submitted(&mut self.summary, &mut self.store.writer(), r, None)
    }

    /// Applies one X12 file's spooled changes: change sets directly, full sets by compare.
    ///
    /// Memory stays bounded for full files too: a full set's records are read from the spool
    /// twice, once for the member ids it lists (which give the omitted members, hence the hold
    /// decision) and once to derive its changes, each against the member's enrollment row as
    /// it was before the file (read one at a time). Derived changes go straight to the batch,
    /// except in a set that lists a member twice: there a change applied early would alter
    /// what a later record is compared with, so its changes are spooled first and emitted
    /// after, as [`crate::fullfile::compare`] does in memory. What grows with the group is its
    /// member ids and its discrepancy report, not its members' data.
    fn apply_x12(
        &mut self,
        file: &FileRow,
        spool: File,
        heads: &HashMap<SetKey, SetHead>,
    ) -> Result<(u64, bool), RunError> {
        let mut total = 0;
        let mut held = false;
        let sender = file.sender.clone();
        let sender = sender.as_deref();
        let reread = spool.try_clone()?;
        // Full sets, in the order they first appear: the member ids each lists, and whether
        // one is listed twice.
        let mut full: Vec<(SetKey, HashSet<String>, bool)> = Vec::new();
        // Only full sets read the spool again.
        let last = !heads.values().any(|h| h.full);
        // The set of the record before and its head: a set's records come one after another,
        // and its key is copied only where the set changes.
        let mut at: Option<(SetKey, Option<&SetHead>)> = None;
        total += self.emit_spooled(file, sender, spool, last, |r| {
            let set = set_of(r);
            let (key, head) = match at.take() {
                Some((key, head)) if same_set(&key, set) => (key, head),
                _ => {
                    let key = (set.0.to_string(), set.1.to_string(), set.2.to_string());
                    let head = heads.get(&key);
                    (key, head)
                }
            };
            let result = if head.is_some_and(|h| h.full) {
                match full.iter_mut().find(|(k, _, _)| *k == key) {
                    Some((_, ids, twice)) => *twice |= !ids.insert(r.member_id.clone()),
                    None => full.push((key.clone(), HashSet::from([r.member_id.clone()]), false)),
                }
                None
            } else {
                Some(head.and_then(|h| h.created))
            };
            at = Some((key, head));
            result
        })?;
        for (key, listed, twice) in full {
            let head = &heads[&key];
            let records = set_records(&reread, &key)?;
            let Some(gid) = head.group.clone() else {
                let mut chunks = Chunks::default();
                for r in records {
                    if let Some((c, day)) = chunks.push(Box::new(r?), Some(&key), head.created) {
                        total += self.emit(file, sender, day, c)?;
                    }
                }
                if let Some((c, day)) = chunks.finish() {
                    total += self.emit(file, sender, day, c)?;
                }
                continue;
            };
            let group = self.cfg.groups.iter().find(|g| g.id == gid);
            let policy = group.map(|g| g.omission).unwrap_or_default();
            let lookback = group.map(|g| g.omission_lookback_days).unwrap_or(0);
            let file_date = head.file_date.unwrap_or(self.as_of);
            let active = self.store.active_members(&gid)?;
            let active_before = active.len();
            let omitted = crate::fullfile::omitted(&active, &listed);
            drop((active, listed));
            let implied = match policy {
                OmissionPolicy::Terminate => omitted.len(),
                _ => 0,
            };
            let exceeds = crate::fullfile::Comparison {
                implied_terminations: implied,
                active_before,
                ..Default::default()
            }
            .exceeds(self.cfg.run.hold_termination_share);
            let hold = if exceeds {
                let hold = self.store.insert_hold(
                    file.id,
                    self.run_id,
                    &gid,
                    active_before as i64,
                    implied as i64,
                )?;
                tracing::warn!(file = %file.name, group = %gid, hold, terminations = implied, active = active_before, "full file held: it would terminate too large a share of the group");
                self.summary.held.push(HoldReport {
                    hold_id: hold,
                    file: file.name.clone(),
                    group: gid.clone(),
                    active_members: active_before as u64,
                    implied_terminations: implied as u64,
                });
                held = true;
                Some(hold)
            } else {
                None
            };
            let trace = SourceTrace::X12 {
                file: file.name.clone(),
                isa13: key.0.clone(),
                gs06: key.1.clone(),
                st02: key.2.clone(),
                first_segment: 0,
                last_segment: 0,
            };
            let mut derived = Derived {
                report: crate::discrepancy::GroupDiscrepancy::new(&file.name, &gid, active_before),
                hold,
                spool: if twice && hold.is_none() {
                    Some(BufWriter::new(tempfile::tempfile()?))
                } else {
                    None
                },
                chunks: Chunks::default(),
                key: key.clone(),
                day: Some(file_date),
                emitted: 0,
            };
            for r in records {
                let r = r?;
                let enrolled = match r.kind {
                    ChangeKind::Audit => self.store.member(&gid, &r.member_id)?,
                    _ => None,
                };
                if let Some(c) = crate::fullfile::against(r, enrolled.as_ref(), file_date) {
                    derived.take(self, file, sender, c)?;
                }
            }
            match policy {
                OmissionPolicy::Never => {}
                OmissionPolicy::Report => {
                    derived.report.reported(&omitted)?;
                    for m in &omitted {
                        self.omissions
                            .push((file.name.clone(), gid.clone(), m.clone()));
                    }
                    self.summary.omitted_reported += omitted.len() as u64;
                }
                OmissionPolicy::Terminate => {
                    let eff = crate::fullfile::termination_date(file_date, lookback);
                    for m in &omitted {
                        // Listed as active above, in this same store transaction, and no
                        // change of this file has touched a member it does not list.
                        let e = self.store.member(&gid, m)?.ok_or_else(|| {
                            io::Error::other(format!("enrolled member vanished: group {gid}"))
                        })?;
                        let c = crate::fullfile::implied_termination(&e, eff, &trace);
                        derived.take(self, file, sender, c)?;
                    }
                }
            }
            total += derived.finish(self, file, sender)?;
        }
        Ok((total, held))
    }
}

fn now_string(now: NaiveDateTime) -> String {
    now.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn ack_name(f: &FileRow) -> String {
    if f.kind == "portal" {
        format!("{}.{:06}.ack.csv", f.name, f.run_id)
    } else {
        format!("{}.{:09}.ack.x12", f.name, f.isa13_base)
    }
}

/// Moves an input out of the inbound folder, and its `.done` marker away.
fn archive_one(cfg: &Config, f: &FileRow) -> io::Result<()> {
    let base = if f.status == "quarantined" {
        &cfg.paths.quarantine
    } else {
        &cfg.paths.archive
    };
    let dir = base.join(format!("run-{:06}", f.run_id));
    let src = Path::new(&f.path);
    let dest = dir.join(&f.name);
    if src.exists() {
        fs::create_dir_all(&dir)?;
        if fs::rename(src, &dest).is_err() {
            let data = fs::read(src)?;
            fsio::write_atomic(&dest, &data, true)?;
            fs::remove_file(src)?;
        }
        fsio::sync_dir(&dir)?;
        if let Some(p) = src.parent() {
            fsio::sync_dir(p)?;
        }
    }
    let m = marker(src);
    if m.exists() {
        fs::remove_file(m)?;
    }
    Ok(())
}

fn staging_root(cfg: &Config) -> PathBuf {
    cfg.paths
        .state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("staging")
}

/// Finishes what committed runs left undone (archive moves, staging folders).
fn tidy(cfg: &Config, store: &mut SqliteStore) -> Result<(), RunError> {
    for f in store.unarchived_files()? {
        archive_one(cfg, &f)?;
        store.set_archived(f.id)?;
        tracing::info!(file = %f.name, run = f.run_id, "moved out of inbound (left by an interrupted run)");
    }
    for r in store.runs()? {
        if r.status == "committed" {
            let d = staging_root(cfg).join(format!("run-{:06}", r.id));
            if d.exists() {
                fs::remove_dir_all(&d)?;
            }
            store.set_run(r.id, "done", &r.counts)?;
        }
    }
    Ok(())
}

/// Withdraws FHS-pending transactions past their days; purges records past retention.
fn housekeeping(
    cfg: &Config,
    store: &mut SqliteStore,
    as_of: NaiveDate,
    at: &str,
) -> Result<(u64, u64), RunError> {
    store.begin()?;
    let mut withdrawn = 0;
    let limit = as_of - chrono::Duration::days(i64::from(cfg.run.fhs_days));
    let f = crate::store::TransactionFilter {
        status: Some(TransactionStatus::PendingFhs),
        ..Default::default()
    };
    for t in store.transactions(&f)? {
        if t.transaction_date <= limit {
            store.set_status(
                &t.change_id,
                TransactionStatus::Withdrawn,
                at,
                &format!(
                    "no Family Health Statement within {} days",
                    cfg.run.fhs_days
                ),
            )?;
            withdrawn += 1;
        }
    }
    let before = as_of
        .checked_sub_months(chrono::Months::new(cfg.run.retention_months))
        .unwrap_or(as_of);
    let purged = store.purge(before)?;
    store.commit()?;
    Ok((withdrawn, purged))
}

/// Runs the nightly job. See the module documentation for the order of work.
pub fn run(opts: &RunOptions) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let cfg = &opts.config;
    let state = &cfg.paths.state;
    if let Some(p) = state.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(p).map_err(|e| RunError::Setup(format!("{}: {e}", p.display())))?;
    }
    let _lock = lock(state)?;
    crash_point("after-lock");
    let mut store = SqliteStore::open(state)?;
    store.set_cache_limit(RUN_CACHE_MIB << 20)?;
    tidy(cfg, &mut store)?;

    let clock = crate::ack::clock_from_env();
    let mut skipped = Vec::new();
    let (withdrawn, purged) = housekeeping(
        cfg,
        &mut store,
        opts.as_of.unwrap_or(clock.date()),
        &now_string(clock),
    )?;

    // Register, or resume an interrupted run.
    let (run_id, now, as_of, resumed) = match store.open_run()? {
        Some(r) => {
            let now =
                NaiveDateTime::parse_from_str(&r.started, "%Y-%m-%dT%H:%M:%S").unwrap_or(clock);
            tracing::info!(run = r.id, "resuming a run that did not finish");
            (r.id, now, r.as_of, true)
        }
        None => {
            let cands = discover(cfg, &mut skipped)?;
            let waiting = store.unbatched(TransactionStatus::Pending)?;
            if cands.is_empty() && waiting.is_empty() {
                tracing::info!("nothing to do: no new inbound files, no released changes");
                return Ok(RunOutcome {
                    summary: None,
                    resumed: false,
                    withdrawn,
                    purged,
                    skipped,
                    elapsed: started.elapsed(),
                });
            }
            let as_of = opts.as_of.unwrap_or(clock.date());
            store.begin()?;
            let id = store.create_run(&now_string(clock), as_of)?;
            for c in &cands {
                let s = sniff(&c.path)?;
                let portal = is_portal(&c.name);
                let sender = if portal {
                    Some("PORTAL".to_string())
                } else {
                    s.sender.clone()
                };
                let dup = match store.file_by_sha(&s.sha256)? {
                    Some(d) => Some(d.id),
                    None => match (&sender, &s.isa13) {
                        (Some(snd), Some(i)) if !portal => {
                            store.file_by_interchange(snd, i)?.map(|d| d.id)
                        }
                        _ => None,
                    },
                };
                let n = if portal { 0 } else { s.interchanges.max(1) };
                let (isa13_base, gs06_base) = if n > 0 {
                    (store.reserve("isa13", n)?, store.reserve("gs06", n)?)
                } else {
                    (0, 0)
                };
                store.insert_file(&FileRow {
                    id: 0,
                    run_id: id,
                    name: c.name.clone(),
                    path: c.path.to_string_lossy().into_owned(),
                    sha256: s.sha256,
                    kind: if portal { "portal" } else { "x12" }.into(),
                    sender,
                    isa13: s.isa13,
                    isa13_base,
                    gs06_base,
                    duplicate_of: dup,
                    status: if dup.is_some() {
                        "duplicate"
                    } else {
                        "registered"
                    }
                    .into(),
                    changes: 0,
                    archived: false,
                })?;
            }
            store.commit()?;
            tracing::info!(run = id, files = cands.len(), "run registered");
            (id, clock, as_of, false)
        }
    };
    crash_point("after-register");

    let files = store.run_files(run_id)?;
    let mut engine = Engine::embedded();
    engine.receiver_ids = cfg.plan.receiver_ids.clone();
    let bar = if opts.progress {
        indicatif::ProgressBar::new(files.len() as u64).with_style(
            indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} files")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_message("parsing");
    // Each file's large sets are parsed in pieces on this many threads (besides rayon's
    // threads parsing several files at once): one big file, the usual night, uses every core.
    let jobs = std::env::var("ELIGO_JOBS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let parsed: Vec<io::Result<Parsed>> = files
        .par_iter()
        .map(|f| {
            let r = parse_file(&engine, cfg, f, now, jobs);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    crash_point("after-parse");

    // Apply inside one store transaction, staging outputs as we go.
    let stage_dir = staging_root(cfg).join(format!("run-{run_id:06}"));
    let mut stage = Stage::new(stage_dir)?;
    let rid = format!("run-{run_id:06}");
    let jsonl_path = stage.path(cfg.paths.batches.join(format!("{rid}.changes.jsonl")));
    let csv_path = stage.path(cfg.paths.batches.join(format!("{rid}.changes.csv")));
    let open = |p: &Path| -> io::Result<BufWriter<File>> {
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        Ok(BufWriter::with_capacity(1 << 16, f))
    };
    let batch = Batch {
        jsonl: ChangeWriter::new(open(&jsonl_path)?, batch::Format::Jsonl)?,
        csv: ChangeWriter::new(open(&csv_path)?, batch::Format::Csv)?,
        offset: 0,
    };
    store.begin()?;
    // Absolute, so that the store's references hold from any working directory.
    let published = cfg.paths.batches.join(format!("{rid}.changes.jsonl"));
    let published = std::path::absolute(&published).unwrap_or(published);
    store.set_run_batch(run_id, &published.to_string_lossy())?;
    let mut ctx = Ctx {
        cfg,
        store: &mut store,
        run_id,
        as_of,
        at: now_string(now),
        batch,
        summary: Summary {
            run_id,
            as_of: as_of.to_string(),
            started: now_string(now),
            ..Default::default()
        },
        omissions: Vec::new(),
        discrepancies: Vec::new(),
        prep: Prep::new(
            as_of,
            Some(BufWriter::with_capacity(1 << 16, {
                let mut f = fsio::AtomicFile::create(&stage.dir.join("reject.csv"), true)?;
                io::Write::write_all(
                    &mut f,
                    &crate::report::RejectReport::new(as_of)
                        .csv(crate::report::ReportOptions::default()),
                )?;
                f
            })),
        ),
    };
    let result = apply_all(&mut ctx, &files, parsed, &mut stage);
    let report = std::mem::replace(
        &mut ctx.prep.report,
        crate::report::RejectReport::new(as_of),
    );
    let mut discrepancies = std::mem::take(&mut ctx.discrepancies);
    let reject_rows = ctx.prep.reject_rows.take();
    let result = result.and_then(|(summary, omissions, rejects, batch)| {
        batch.finish()?;
        let reject_rows = reject_rows
            .ok_or_else(|| io::Error::other("the reject CSV was taken twice"))?
            .into_inner()
            .map_err(|e| e.into_error())?;
        if !discrepancies.is_empty() {
            let p = stage.path(cfg.paths.reports.join(format!("{rid}.discrepancies.csv")));
            let mut out = BufWriter::with_capacity(1 << 16, fsio::AtomicFile::create(&p, true)?);
            crate::discrepancy::write_csv(&mut discrepancies, &mut out)?;
            out.into_inner().map_err(|e| e.into_error())?.commit()?;
            crash_point("mid-stage");
            stage.write(
                cfg.paths.reports.join(format!("{rid}.discrepancies.html")),
                crate::discrepancy::html(&discrepancies, &as_of.to_string()).as_bytes(),
                true,
            )?;
        }
        finish_stage(
            cfg,
            &rid,
            summary,
            &omissions,
            &rejects,
            RejectOutputs {
                report,
                reject_rows,
            },
            &mut stage,
        )
    });
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = store.rollback();
            return Err(e);
        }
    };
    crash_point("after-stage");
    stage.publish()?;
    crash_point("before-commit");
    let counts = serde_json::json!({
        "files": summary.files.len(),
        "duplicates": summary.duplicates,
        "quarantined": summary.quarantined,
        "sets_accepted": summary.sets_accepted,
        "sets_rejected": summary.sets_rejected,
        "changes_submitted": summary.changes_submitted,
        "changes_waiting": summary.changes_waiting,
        "held": summary.held.len(),
    });
    store.set_run(run_id, "committed", &counts)?;
    store.commit()?;
    crash_point("after-commit");

    for (i, f) in store.run_files(run_id)?.iter().enumerate() {
        archive_one(cfg, f)?;
        store.set_archived(f.id)?;
        if i == 0 {
            crash_point("mid-archive");
        }
    }
    crash_point("after-archive");
    let _ = fs::remove_dir_all(&stage.dir);
    store.set_run(run_id, "done", &counts)?;
    tracing::info!(
        run = run_id,
        files = summary.files.len(),
        submitted = summary.changes_submitted,
        held = summary.held.len(),
        "run completed"
    );
    Ok(RunOutcome {
        summary: Some(summary),
        resumed,
        withdrawn,
        purged,
        skipped,
        elapsed: started.elapsed(),
    })
}

type Applied = (
    Summary,
    Vec<(String, String, String)>,
    Vec<RejectRow>,
    Batch,
);

fn apply_all(
    ctx: &mut Ctx<'_>,
    files: &[FileRow],
    parsed: Vec<io::Result<Parsed>>,
    stage: &mut Stage,
) -> Result<Applied, RunError> {
    // Changes released since the last run (holds released, FHS received) go first.
    for t in ctx.store.unbatched(TransactionStatus::Pending)? {
        if let Some(r) = ctx.store.change(&t.change_id)? {
            *ctx.summary
                .changes_by_kind
                .entry(r.kind.label().to_string())
                .or_default() += 1;
            ctx.submit(&r)?;
        }
    }
    let mut rejects = Vec::new();
    for (f, p) in files.iter().zip(parsed) {
        let p = p?;
        // The rules' "in this file" (repeated members, dependents' subscribers) is per file.
        ctx.prep.assessor = Default::default();
        let mut rep = FileReport {
            name: f.name.clone(),
            kind: f.kind.clone(),
            sender: f.sender.clone(),
            ..Default::default()
        };
        let sender_dir = ctx
            .cfg
            .paths
            .outbound
            .join(safe_component(f.sender.as_deref().unwrap_or("UNKNOWN")));
        let (status, changes) = match p {
            Parsed::Quarantine(why) => {
                tracing::warn!(file = %f.name, reason = %why, "quarantined");
                ctx.summary.quarantined += 1;
                ("quarantined", 0)
            }
            Parsed::Duplicate { ack } => {
                tracing::warn!(file = %f.name, "duplicate: acknowledged, not applied");
                ctx.summary.duplicates += 1;
                let data = if f.kind == "portal" {
                    b"file,status\r\n"
                        .iter()
                        .chain(format!("{},duplicate\r\n", f.name).as_bytes())
                        .copied()
                        .collect()
                } else {
                    ack
                };
                stage.write(sender_dir.join(ack_name(f)), &data, true)?;
                rep.acknowledgement = Some(ack_name(f));
                ("duplicate", 0)
            }
            Parsed::X12 {
                ack,
                spool,
                heads,
                rejects: rj,
                accepted,
                rejected,
                loops,
            } => {
                stage.write(sender_dir.join(ack_name(f)), &ack, true)?;
                rep.acknowledgement = Some(ack_name(f));
                rep.sets_accepted = accepted;
                rep.sets_rejected = rejected;
                for r in &rj {
                    for rule in r.rules.split(';').filter(|s| !s.is_empty()) {
                        *ctx.summary
                            .rejects_by_rule
                            .entry(rule.to_string())
                            .or_default() += 1;
                    }
                }
                rejects.extend(rj);
                // A file that cannot be opened again only costs the report its segments.
                ctx.prep.segments = File::open(&f.path)
                    .ok()
                    .map(|input| SegmentReader::new(input, loops));
                let applied = ctx.apply_x12(f, spool, &heads);
                ctx.prep.segments = None;
                let (n, held) = applied?;
                (if held { "held" } else { "processed" }, n)
            }
            Parsed::Portal {
                spool,
                rejects: rj,
                rows_ok,
            } => {
                let mut ack = b"file,changes,rows_rejected\r\n".to_vec();
                ack.extend_from_slice(
                    format!("{},{},{}\r\n", f.name, rows_ok, rj.len()).as_bytes(),
                );
                stage.write(sender_dir.join(ack_name(f)), &ack, true)?;
                rep.acknowledgement = Some(ack_name(f));
                for r in &rj {
                    *ctx.summary
                        .rejects_by_rule
                        .entry(r.rules.clone())
                        .or_default() += 1;
                }
                rejects.extend(rj);
                let total = ctx.emit_spooled(f, Some("PORTAL"), spool, true, |_| Some(None))?;
                ("processed", total)
            }
        };
        ctx.summary.sets_accepted += rep.sets_accepted;
        ctx.summary.sets_rejected += rep.sets_rejected;
        rep.status = status.to_string();
        rep.changes = changes;
        ctx.store.set_file_status(f.id, status, changes as i64)?;
        tracing::info!(file = %f.name, status, changes, sets_accepted = rep.sets_accepted, sets_rejected = rep.sets_rejected, "file applied");
        ctx.summary.files.push(rep);
    }
    let batch = std::mem::replace(
        &mut ctx.batch,
        Batch {
            jsonl: ChangeWriter::new(BufWriter::new(tempfile::tempfile()?), batch::Format::Jsonl)?,
            csv: ChangeWriter::new(BufWriter::new(tempfile::tempfile()?), batch::Format::Csv)?,
            offset: 0,
        },
    );
    Ok((
        std::mem::take(&mut ctx.summary),
        std::mem::take(&mut ctx.omissions),
        rejects,
        batch,
    ))
}

fn finish_stage(
    cfg: &Config,
    rid: &str,
    mut summary: Summary,
    omissions: &[(String, String, String)],
    rejects: &[RejectRow],
    rejected: RejectOutputs,
    stage: &mut Stage,
) -> Result<Summary, RunError> {
    let RejectOutputs {
        mut report,
        mut reject_rows,
    } = rejected;
    let rej = stage.path(cfg.paths.reports.join(format!("{rid}.rejects.csv")));
    write_reject_report(&rej, rejects)?;
    // The analysts' page: business rejects per member, and every rejected file or set.
    for r in rejects {
        report.add_set_reject(crate::report::SetReject {
            file: r.file.clone(),
            sender: None,
            isa13: r.isa13.clone(),
            gs06: r.gs06.clone(),
            st02: r.st02.clone(),
            codes: [format!("{}: {}", r.level, r.codes), r.rules.clone()]
                .into_iter()
                .filter(|c| !c.is_empty())
                .collect(),
            members: 0,
            error_count: 0,
            findings: Vec::new(),
        });
    }
    let opts = crate::report::ReportOptions::default();
    // reject.csv: the header and every business row were written as the run went; the X12
    // set rejects end it. Its size costs no memory and it is written once.
    let sets_only = crate::report::RejectReport {
        as_of: report.as_of,
        entries: Vec::new(),
        set_rejects: report.set_rejects.clone(),
        not_shown: 0,
    };
    let sets_csv = sets_only.csv(opts);
    let header_end = sets_csv
        .iter()
        .position(|b| *b == b'\n')
        .map_or(sets_csv.len(), |i| i + 1);
    io::Write::write_all(&mut reject_rows, &sets_csv[header_end..])?;
    reject_rows.commit_to(&stage.path(cfg.paths.reports.join(format!("{rid}.reject.csv"))))?;
    {
        // Streamed: the page's data is never held whole in memory.
        let p = stage.path(cfg.paths.reports.join(format!("{rid}.reject.html")));
        let mut out = BufWriter::with_capacity(1 << 16, fsio::AtomicFile::create(&p, true)?);
        report.write_html(opts, &mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.commit()?;
        crash_point("mid-stage");
    }
    let mut om = b"file,group_id,member_id\r\n".to_vec();
    for (f, g, m) in omissions {
        om.extend_from_slice(format!("{f},{g},{m}\r\n").as_bytes());
    }
    stage.write(
        cfg.paths.reports.join(format!("{rid}.omissions.csv")),
        &om,
        true,
    )?;
    let mut outputs: Vec<String> = stage
        .files
        .iter()
        .map(|(_, d)| d.to_string_lossy().into_owned())
        .collect();
    outputs.push(
        cfg.paths
            .reports
            .join(format!("{rid}.summary.json"))
            .to_string_lossy()
            .into_owned(),
    );
    summary.outputs = outputs;
    let mut json = serde_json::to_vec_pretty(&summary).map_err(io::Error::other)?;
    json.push(b'\n');
    stage.write(
        cfg.paths.reports.join(format!("{rid}.summary.json")),
        &json,
        false,
    )?;
    Ok(summary)
}

/// Kinds in a fixed order, for printing.
pub fn kind_order() -> &'static [ChangeKind] {
    ChangeKind::ALL
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spooled line with the verdict spliced in is what writing the record with its verdict
    /// gives, bytes and spans, for the records of the sample files (with and without an old
    /// data, a verdict, an invoice period).
    #[test]
    fn a_spooled_line_with_its_verdict_is_the_record_written_with_it() {
        let engine = crate::check::Engine::embedded();
        let mut records = Vec::new();
        for name in ["clean-change.x12", "clean-full.x12", "business-rejects.x12"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("samples/834")
                .join(name);
            let mut w = ChangeWriter::new(Vec::new(), batch::Format::Jsonl).unwrap();
            batch::convert_x12(&engine, name, File::open(path).unwrap(), &mut w).unwrap();
            let out = w.into_inner().unwrap();
            for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                records.push(ChangeRecord::from_json(line).unwrap());
            }
        }
        assert!(records.len() > 10);
        let mut r0 = records[0].clone();
        r0.status = None;
        r0.invoice_period = None;
        let mut checked = 0;
        for mut r in records {
            r.status = None;
            r.invoice_period = None;
            for variant in 0..3 {
                let mut r = r.clone();
                if variant == 1 {
                    r.old = Some(r.new.clone());
                    r.change_id = r.compute_id();
                }
                let mut line = Vec::new();
                r.write_json(&mut line).unwrap();
                let line = String::from_utf8(line).unwrap();
                let mut read = crate::changejson::blank_record();
                let spans = read.read_json(&line).unwrap().expect("a line as written");
                assert_eq!(read, r);
                r.status = Some(TransactionStatus::Pending);
                if variant != 2 {
                    r.invoice_period = Some("2025-02".into());
                }
                let mut want = Vec::new();
                let want_spans = r.write_json(&mut want).unwrap();
                // Appended after another record's JSON: the spans are where it went.
                let mut got = String::from("{\"before\":1}");
                let at = got.len();
                let got_spans = with_verdict(&line, spans, &r, &mut got, &mut Vec::new()).unwrap();
                assert_eq!(&got[at..], String::from_utf8_lossy(&want));
                assert_eq!(got_spans, shifted(want_spans, at));
                checked += 1;
            }
        }
        assert!(checked > 30);
        // Not a line as written (white space after its brace): read by serde_json, without
        // spans, so written anew.
        let mut line = b"{ ".to_vec();
        let mut r = r0.clone();
        r.write_json(&mut line).unwrap();
        line.remove(2);
        let line = String::from_utf8(line).unwrap();
        assert_eq!(r.read_json(&line).unwrap(), None);
        assert_eq!(r, r0);
    }

    /// The spool's reader keeps each record's line (line break aside, `\n` or `\r\n`, the
    /// last perhaps without) as the last of its lines, and none of a line that does not decode
    /// or is not UTF-8; a line moved to another buffer leaves the others as they were.
    #[test]
    fn a_spool_reader_keeps_each_records_line_in_one_buffer() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/834/clean-change.x12");
        let engine = crate::check::Engine::embedded();
        let mut w = ChangeWriter::new(Vec::new(), batch::Format::Jsonl).unwrap();
        batch::convert_x12(&engine, "c.x12", File::open(path).unwrap(), &mut w).unwrap();
        let out = w.into_inner().unwrap();
        let want: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert!(want.len() >= 3);
        let mut spool = Vec::new();
        spool.extend_from_slice(want[0]);
        spool.extend_from_slice(b"\r\nnot a record\n\xffnot UTF-8\n");
        for l in &want[1..] {
            spool.extend_from_slice(l);
            spool.push(b'\n');
        }
        spool.pop();
        let mut reader = SpoolReader::new(&spool[..]);
        let mut lines = Lines::default();
        assert!(reader.next(&mut lines).unwrap().is_ok());
        assert!(reader.next(&mut lines).unwrap().is_err());
        assert!(reader.next(&mut lines).unwrap().is_err());
        while let Some(r) = reader.next(&mut lines) {
            r.unwrap();
        }
        assert_eq!(lines.len(), want.len());
        fn get(lines: &Lines, i: usize) -> Option<&[u8]> {
            lines.get(i).map(str::as_bytes)
        }
        for (i, l) in want.iter().enumerate() {
            assert_eq!(get(&lines, i), Some(*l));
        }
        assert_eq!(lines.get(want.len()), None);
        let mut other = Lines::default();
        lines.move_last(&mut other);
        assert_eq!(get(&other, 0), want.last().copied());
        assert_eq!(lines.len(), want.len() - 1);
        assert_eq!(get(&lines, 0), Some(want[0]));
    }

    /// A spool read for the last time gives every byte as written, and what was read is
    /// punched out of the file (zeros where it was) while the file keeps its size.
    #[test]
    fn a_spool_read_for_the_last_time_reads_whole_and_is_freed_behind() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..RELEASE_STEP + 100_000)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        io::Write::write_all(&mut f, &data).unwrap();
        f.rewind().unwrap();
        let mut back = Vec::new();
        let mut r = BufReader::with_capacity(1 << 16, Releasing::new(f.try_clone().unwrap()));
        r.read_to_end(&mut back).unwrap();
        assert!(back == data, "the bytes read differ from the bytes written");
        assert_eq!(f.metadata().unwrap().len(), data.len() as u64);
        if cfg!(target_os = "linux") {
            let mut first = [1u8; 4096];
            f.rewind().unwrap();
            f.read_exact(&mut first).unwrap();
            // A file system without holes leaves the bytes: only then may they remain.
            let punched = first.iter().all(|&b| b == 0);
            let kept = first[..] == data[..4096];
            assert!(punched || kept);
        }
    }

    fn row(path: &Path, sha256: String) -> FileRow {
        FileRow {
            id: 1,
            run_id: 1,
            name: "f.x12".into(),
            path: path.to_string_lossy().into_owned(),
            sha256,
            kind: "x12".into(),
            sender: Some("ACMEHR".into()),
            isa13: None,
            isa13_base: 1,
            gs06_base: 1,
            duplicate_of: None,
            status: "registered".into(),
            changes: 0,
            archived: false,
        }
    }

    /// A file rewritten between registration (hash) and parsing is quarantined, not applied.
    #[test]
    fn a_file_that_changed_while_being_read_is_quarantined() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.x12");
        let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/834/clean-full.x12");
        fs::write(&p, fs::read(sample).unwrap()).unwrap();
        let cfg = Config::embedded();
        let engine = Engine::embedded();
        let now =
            NaiveDateTime::parse_from_str("2025-01-11 06:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        // Unchanged since registration: parsed.
        let same = sniff(&p).unwrap().sha256;
        assert!(matches!(
            parse_file(&engine, &cfg, &row(&p, same), now, 2).unwrap(),
            Parsed::X12 { .. }
        ));
        // Registered with the content it had before the sender rewrote it.
        let before = "0".repeat(64);
        match parse_file(&engine, &cfg, &row(&p, before), now, 2).unwrap() {
            Parsed::Quarantine(why) => assert!(why.contains("changed while being read"), "{why}"),
            _ => panic!("a changed file must be quarantined"),
        }
    }

    /// The apply's pipeline loses no error: a spool that cannot be read back to its end fails
    /// the apply with the reading's error, after the chunks before it are recorded (as applying
    /// the records one by one did), never as a shorter file applied in full.
    #[test]
    fn a_spool_that_cannot_be_read_back_fails_the_apply_after_the_changes_before_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.x12");
        let mut x12 = Vec::new();
        let opts = crate::gen::GenOptions {
            size_mb: 1.0,
            ..Default::default()
        };
        crate::gen::generate(&opts, &mut x12).unwrap();
        fs::write(&p, &x12).unwrap();
        let cfg = Config::embedded();
        let mut engine = Engine::embedded();
        engine.receiver_ids = cfg.plan.receiver_ids.clone();
        let now =
            NaiveDateTime::parse_from_str("2025-01-11 06:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let as_of = now.date();
        let mut store = SqliteStore::open(&d.path().join("state.db")).unwrap();
        store.begin().unwrap();
        let run_id = store.create_run(&now_string(now), as_of).unwrap();
        let mut file = row(&p, sniff(&p).unwrap().sha256);
        file.run_id = run_id;
        store.insert_file(&file).unwrap();
        let file = store.run_files(run_id).unwrap().remove(0);
        let Parsed::X12 {
            mut spool, heads, ..
        } = parse_file(&engine, &cfg, &file, now, 1).unwrap()
        else {
            panic!("a generated change file parses");
        };
        let records = spooled(spool.try_clone().unwrap()).unwrap().count();
        assert!(
            records > 2 * CHUNK,
            "{records} records: not enough for two chunks"
        );
        spool.seek(io::SeekFrom::End(0)).unwrap();
        io::Write::write_all(&mut spool, b"not a change record\n").unwrap();
        let tmp = || BufWriter::new(tempfile::tempfile().unwrap());
        let mut ctx = Ctx {
            cfg: &cfg,
            store: &mut store,
            run_id,
            as_of,
            at: now_string(now),
            batch: Batch {
                jsonl: ChangeWriter::new(tmp(), batch::Format::Jsonl).unwrap(),
                csv: ChangeWriter::new(tmp(), batch::Format::Csv).unwrap(),
                offset: 0,
            },
            summary: Summary::default(),
            omissions: Vec::new(),
            discrepancies: Vec::new(),
            prep: Prep::new(as_of, None),
        };
        let err = ctx.apply_x12(&file, spool, &heads).unwrap_err();
        assert!(
            matches!(&err, RunError::Io(e) if e.to_string().contains("expected")),
            "{err}"
        );
        let recorded: u64 = ctx.summary.changes_by_kind.values().sum();
        assert!(
            recorded >= CHUNK as u64 && recorded < records as u64,
            "{recorded} of {records} recorded before the error"
        );
    }
}
