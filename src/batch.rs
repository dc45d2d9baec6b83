//! Change batches: encoding change records as JSON Lines or CSV, and the [`ConvertObserver`]
//! that turns the checker's events into records for the sets that may be applied.
//!
//! Disposition: a set's changes are written only if the set is accepted (IK5 `A` or `E`), its
//! group is not rejected (AK9 `R`) and its interchange is not rejected (TA1 `R`). The group and
//! interchange verdicts arrive after the members, so each interchange's records are spooled to an
//! anonymous temporary file (never a growing `Vec`) and copied to the output at IEA; memory stays
//! bounded by one member loop whatever the file size.
//!
//! This module writes bytes to a [`Write`] it is given; it does not open or name output files.

use crate::changes::{self, ChangeRecord, HeaderContext};
use crate::check::{
    GroupInfo, GroupResult, InterchangeInfo, Observer, SetInfo, SetResult, Ta1Result,
};
use crate::finding::Finding;
use crate::validate::record::Record;
use crate::validate::Standards;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

/// Output format of a change batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

/// The CSV columns, in order (docs/convert.md documents each).
pub const CSV_COLUMNS: &[&str] = &[
    "change_id",
    "kind",
    "effective_date",
    "group_id",
    "division",
    "subscriber_id",
    "member_id",
    "relationship",
    "reason",
    "last_name",
    "first_name",
    "middle_name",
    "birth_date",
    "gender",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "coverage_count",
    "insurance_line",
    "plan",
    "coverage_level",
    "coverage_begin",
    "coverage_end",
    "pcp_npi",
    "source_type",
    "source_file",
    "source_ref",
    "new_json",
    "old_json",
    "status",
    "invoice_period",
];

/// Turns records into bytes, one line (JSONL) or one row (CSV) at a time.
pub struct Encoder {
    format: Format,
    buf: Vec<u8>,
}

fn s<T: serde::Serialize>(v: Option<&T>) -> String {
    match v.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::String(s))) => s,
        Some(Ok(serde_json::Value::Null)) | None => String::new(),
        Some(Ok(other)) => other.to_string(),
        Some(Err(_)) => String::new(),
    }
}

impl Encoder {
    pub fn new(format: Format) -> Encoder {
        Encoder {
            format,
            buf: Vec::new(),
        }
    }

    /// The bytes that open an output (the CSV header row; nothing for JSONL).
    pub fn preamble(&mut self) -> io::Result<Vec<u8>> {
        match self.format {
            Format::Jsonl => Ok(Vec::new()),
            Format::Csv => {
                let mut out = Vec::new();
                crate::csvrow::write(&mut out, CSV_COLUMNS, crate::csvrow::Formulas::Keep);
                Ok(out)
            }
        }
    }

    /// Encodes one record.
    pub fn encode(&mut self, r: &ChangeRecord) -> io::Result<&[u8]> {
        self.buf.clear();
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.buf, r)?;
                self.buf.push(b'\n');
            }
            Format::Csv => {
                let name = r.new.name.as_ref();
                let demo = r.new.demographics.as_ref();
                let addr = r.new.residence.as_ref().or(r.new.mailing.as_ref());
                let cov = r.new.coverages.first();
                let (stype, sfile, sref) = match &r.source {
                    changes::SourceTrace::X12 {
                        file,
                        isa13,
                        gs06,
                        st02,
                        first_segment,
                        last_segment,
                    } => (
                        "x12",
                        file.clone(),
                        format!("{isa13}/{gs06}/{st02}/{first_segment}-{last_segment}"),
                    ),
                    changes::SourceTrace::Portal {
                        file,
                        first_row,
                        last_row,
                        ..
                    } => (
                        "portal",
                        file.clone(),
                        format!("rows {first_row}-{last_row}"),
                    ),
                };
                let row: Vec<String> = vec![
                    r.change_id.clone(),
                    r.kind.label().to_string(),
                    s(r.effective_date.as_ref()),
                    r.group_id.clone().unwrap_or_default(),
                    r.division.clone().unwrap_or_default(),
                    r.subscriber_id.clone(),
                    r.member_id.clone(),
                    r.relationship.label().to_string(),
                    r.reason.map(|x| x.label().to_string()).unwrap_or_default(),
                    name.map(|n| n.last.clone()).unwrap_or_default(),
                    name.and_then(|n| n.first.clone()).unwrap_or_default(),
                    name.and_then(|n| n.middle.clone()).unwrap_or_default(),
                    s(demo.and_then(|d| d.birth_date.as_ref())),
                    demo.and_then(|d| d.gender)
                        .map(|g| g.label().to_string())
                        .unwrap_or_default(),
                    addr.map(|a| a.line1.clone()).unwrap_or_default(),
                    addr.and_then(|a| a.line2.clone()).unwrap_or_default(),
                    addr.map(|a| a.city.clone()).unwrap_or_default(),
                    addr.and_then(|a| a.state.clone()).unwrap_or_default(),
                    addr.and_then(|a| a.postal_code.clone()).unwrap_or_default(),
                    r.new.coverages.len().to_string(),
                    cov.map(|c| c.insurance_line.label().to_string())
                        .unwrap_or_default(),
                    cov.and_then(|c| c.plan.clone()).unwrap_or_default(),
                    cov.and_then(|c| c.coverage_level)
                        .map(|l| l.label().to_string())
                        .unwrap_or_default(),
                    s(cov.and_then(|c| c.begin.as_ref())),
                    s(cov.and_then(|c| c.end.as_ref())),
                    cov.and_then(|c| c.pcp.as_ref())
                        .and_then(|p| p.npi.clone())
                        .unwrap_or_default(),
                    stype.to_string(),
                    sfile,
                    sref,
                    serde_json::to_string(&r.new)?,
                    match &r.old {
                        Some(o) => serde_json::to_string(o)?,
                        None => String::new(),
                    },
                    r.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
                    r.invoice_period.clone().unwrap_or_default(),
                ];
                crate::csvrow::write(&mut self.buf, &row, crate::csvrow::Formulas::Keep);
            }
        }
        Ok(&self.buf)
    }
}

/// Where change records go.
pub trait ChangeSink {
    fn change(&mut self, r: &ChangeRecord) -> io::Result<()>;
}

/// Writes encoded records to any writer, counting them.
pub struct ChangeWriter<W: Write> {
    pub inner: W,
    pub encoder: Encoder,
    pub records: u64,
}

impl<W: Write> ChangeWriter<W> {
    /// Starts an output: writes the CSV header when the format has one.
    pub fn new(mut inner: W, format: Format) -> io::Result<ChangeWriter<W>> {
        let mut encoder = Encoder::new(format);
        inner.write_all(&encoder.preamble()?)?;
        Ok(ChangeWriter {
            inner,
            encoder,
            records: 0,
        })
    }

    pub fn into_inner(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> ChangeSink for ChangeWriter<W> {
    fn change(&mut self, r: &ChangeRecord) -> io::Result<()> {
        let bytes = self.encoder.encode(r)?;
        self.inner.write_all(bytes)?;
        self.records += 1;
        Ok(())
    }
}

/// A member loop that could not be converted: where, and why (no member data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertIssue {
    pub file: String,
    pub isa13: String,
    pub gs06: String,
    pub st02: String,
    pub error: changes::DeriveError,
}

impl std::fmt::Display for ConvertIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: ISA13 {} GS06 {} ST02 {}: {}",
            self.file, self.isa13, self.gs06, self.st02, self.error
        )
    }
}

/// Counts of what a conversion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertSummary {
    pub records: u64,
    pub sets_applied: u64,
    /// Sets whose changes were dropped (set, group or interchange rejected).
    pub sets_dropped: u64,
    /// Records derived but dropped with their set.
    pub records_dropped: u64,
    pub issues: Vec<ConvertIssue>,
    /// Findings with severity error seen while checking (the 999/report path reports them).
    pub errors: u64,
    /// With business rules: changes rejected by them (not written), and changes written in a
    /// held status (Incomplete, awaiting a Family Health Statement).
    pub business_rejected: u64,
    pub held: u64,
}

struct SetSpan {
    start: u64,
    end: u64,
    records: u64,
    accepted: bool,
    group: u32,
}

/// An [`Observer`] that converts each accepted set's members into change records.
pub struct ConvertObserver<'o, S: Write> {
    file: String,
    out: &'o mut ChangeWriter<S>,
    spool: Option<BufWriter<File>>,
    spool_len: u64,
    encoder: Encoder,
    isa13: String,
    gs06: String,
    st02: String,
    header: Option<HeaderContext>,
    group: u32,
    sets: Vec<SetSpan>,
    set_start: u64,
    set_records: u64,
    error: Option<io::Error>,
    /// The business rules, when a configuration is given.
    screen: Option<crate::screen::Screen<'o>>,
    pub summary: ConvertSummary,
}

impl<'o, S: Write> ConvertObserver<'o, S> {
    /// `file` is the input's name as it goes in the source trace (use the base name).
    pub fn new(file: &str, out: &'o mut ChangeWriter<S>) -> Self {
        let format = out.encoder.format;
        ConvertObserver {
            file: file.to_string(),
            out,
            spool: None,
            spool_len: 0,
            encoder: Encoder::new(format),
            isa13: String::new(),
            gs06: String::new(),
            st02: String::new(),
            header: None,
            group: 0,
            sets: Vec::new(),
            set_start: 0,
            set_records: 0,
            error: None,
            screen: None,
            summary: ConvertSummary::default(),
        }
    }

    /// Applies the business rules: rejected changes are not written, the others carry their
    /// status and invoice period.
    pub fn with_rules(mut self, screen: crate::screen::Screen<'o>) -> Self {
        self.screen = Some(screen);
        self
    }

    /// The reject report collected so far (empty without rules).
    pub fn take_report(&mut self) -> Option<crate::report::RejectReport> {
        self.screen.as_mut().map(|s| {
            let as_of = s.report.as_of;
            std::mem::replace(&mut s.report, crate::report::RejectReport::new(as_of))
        })
    }

    fn write_screened(&mut self, screened: Vec<crate::screen::Screened>) {
        for s in screened {
            if s.assessment.rejected {
                self.summary.business_rejected += 1;
                continue;
            }
            if s.assessment.status.is_held() {
                self.summary.held += 1;
            }
            let res = self.write_spooled(&s.record);
            self.io(res);
        }
    }

    /// Ends the conversion: the first I/O error, if any, and the summary.
    pub fn finish(self) -> io::Result<ConvertSummary> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.summary),
        }
    }

    fn spool(&mut self) -> io::Result<&mut BufWriter<File>> {
        if self.spool.is_none() {
            self.spool = Some(BufWriter::with_capacity(1 << 16, tempfile::tempfile()?));
            self.spool_len = 0;
        }
        self.spool
            .as_mut()
            .ok_or_else(|| io::Error::other("spool not open"))
    }

    fn write_spooled(&mut self, r: &ChangeRecord) -> io::Result<()> {
        self.spool()?;
        let bytes = self.encoder.encode(r)?;
        let spool = self
            .spool
            .as_mut()
            .ok_or_else(|| io::Error::other("spool not open"))?;
        spool.write_all(bytes)?;
        self.spool_len += bytes.len() as u64;
        self.set_records += 1;
        Ok(())
    }

    /// Copies the accepted sets of the interchange to the output and empties the spool.
    fn release(&mut self, accepted: bool) -> io::Result<()> {
        let sets = std::mem::take(&mut self.sets);
        let Some(spool) = self.spool.take() else {
            for s in &sets {
                self.tally(s, accepted);
            }
            return Ok(());
        };
        let mut file = spool.into_inner().map_err(|e| e.into_error())?;
        let mut buf = vec![0u8; 1 << 16];
        for s in &sets {
            self.tally(s, accepted);
            if !(accepted && s.accepted) {
                continue;
            }
            file.seek(SeekFrom::Start(s.start))?;
            let mut left = s.end - s.start;
            while left > 0 {
                let n = (left.min(buf.len() as u64)) as usize;
                file.read_exact(&mut buf[..n])?;
                self.out.inner.write_all(&buf[..n])?;
                left -= n as u64;
            }
            self.out.records += s.records;
        }
        // Keep the file for the next interchange, emptied.
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        self.spool = Some(BufWriter::with_capacity(1 << 16, file));
        self.spool_len = 0;
        Ok(())
    }

    fn tally(&mut self, s: &SetSpan, ic_accepted: bool) {
        if ic_accepted && s.accepted {
            self.summary.sets_applied += 1;
            self.summary.records += s.records;
        } else {
            self.summary.sets_dropped += 1;
            self.summary.records_dropped += s.records;
        }
    }

    fn io<T>(&mut self, r: io::Result<T>) {
        if let Err(e) = r {
            if self.error.is_none() {
                self.error = Some(e);
            }
        }
    }
}

impl<S: Write> Observer for ConvertObserver<'_, S> {
    fn finding(&mut self, f: Finding) {
        if f.severity == crate::finding::Severity::Error {
            self.summary.errors += 1;
        }
        if let Some(s) = &mut self.screen {
            s.finding(&f);
        }
    }

    fn interchange_start(&mut self, i: &InterchangeInfo) {
        if let Some(s) = &mut self.screen {
            s.interchange_start(i);
        }
        self.isa13 = i.isa13.clone();
        self.sets.clear();
    }

    fn interchange_end(&mut self, _i: &InterchangeInfo, ta1: Ta1Result, _groups: u32) {
        if let (Some(s), 'R') = (&mut self.screen, ta1.code) {
            s.envelope_reject("interchange", &format!("TA1 R {}", ta1.note));
        }
        let r = self.release(ta1.code != 'R');
        self.io(r);
    }

    fn group_start(&mut self, g: &GroupInfo) {
        if let Some(s) = &mut self.screen {
            s.group_start(g);
        }
        self.gs06 = g.gs06.clone();
        self.group += 1;
    }

    fn group_end(&mut self, r: &GroupResult) {
        if let (Some(s), 'R') = (&mut self.screen, r.code) {
            s.envelope_reject("group", "AK9 R");
        }
        if r.code == 'R' {
            let g = self.group;
            for s in self.sets.iter_mut().filter(|s| s.group == g) {
                s.accepted = false;
            }
        }
    }

    fn set_start(&mut self, s: &SetInfo) {
        if let Some(sc) = &mut self.screen {
            sc.set_start(s);
        }
        self.st02 = s.st02.clone();
        self.header = None;
        self.set_start = self.spool_len;
        self.set_records = 0;
    }

    fn header(&mut self, rec: &Record, _std: &Standards) {
        self.header = Some(HeaderContext::from_record(
            rec,
            &self.file,
            &self.isa13,
            &self.gs06,
            &self.st02,
        ));
    }

    fn member(&mut self, rec: &Record, std: &Standards) {
        let Some(h) = self.header.take() else { return };
        let result = changes::member_loop(rec, std).and_then(|m| changes::derive(&h, &m));
        self.header = Some(h);
        match result {
            Ok(records) => match &mut self.screen {
                Some(screen) => {
                    let out = screen.member(records, rec);
                    self.write_screened(out);
                }
                None => {
                    for r in &records {
                        let res = self.write_spooled(r);
                        self.io(res);
                    }
                }
            },
            Err(error) => self.summary.issues.push(ConvertIssue {
                file: self.file.clone(),
                isa13: self.isa13.clone(),
                gs06: self.gs06.clone(),
                st02: self.st02.clone(),
                error,
            }),
        }
    }

    fn set_end(&mut self, r: &SetResult) {
        if let Some(screen) = &mut self.screen {
            let out = screen.set_end(r);
            self.write_screened(out);
        }
        self.sets.push(SetSpan {
            start: self.set_start,
            end: self.spool_len,
            records: self.set_records,
            accepted: r.code == 'A' || r.code == 'E',
            group: self.group,
        });
        self.set_start = self.spool_len;
        self.set_records = 0;
    }
}

/// Converts one 834 stream, writing the accepted sets' changes to `out`.
pub fn convert_x12<R: Read, W: Write>(
    engine: &crate::check::Engine,
    file: &str,
    input: R,
    out: &mut ChangeWriter<W>,
) -> io::Result<ConvertSummary> {
    let mut obs = ConvertObserver::new(file, out);
    crate::check::check_stream(engine, input, &mut obs);
    obs.finish()
}
