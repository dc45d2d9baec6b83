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

use crate::changes::{self, ChangeRecord, HeaderContext, RecordView, SourceView};
use crate::check::{
    GroupInfo, GroupResult, InterchangeInfo, Observer, SetInfo, SetResult, Ta1Result,
};
use crate::finding::Finding;
use crate::validate::record::Record;
use crate::validate::Standards;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

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

/// Turns records into bytes, one line (JSONL) or one row (CSV) at a time, into buffers it
/// reuses: encoding a record allocates nothing once the buffers have grown.
pub struct Encoder {
    format: Format,
    buf: Vec<u8>,
    /// The record's JSON, for a CSV row (its id and its `new`/`old` columns come from it).
    json: Vec<u8>,
    /// One CSV field being built (the source reference).
    text: Vec<u8>,
}

impl Encoder {
    pub fn new(format: Format) -> Encoder {
        Encoder {
            format,
            buf: Vec::with_capacity(4096),
            json: Vec::with_capacity(4096),
            text: Vec::new(),
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

    /// Encodes one record, as it is (its `change_id` already set).
    pub fn encode(&mut self, r: &ChangeRecord) -> io::Result<&[u8]> {
        self.encode_with(&r.view(), false)
    }

    /// Encodes one record with the `change_id` its content gives, whatever `r.change_id` says:
    /// the same bytes as `encode(&r.clone().seal())`, with the record serialized once instead
    /// of twice (see [`ChangeRecord::write_json_sealing`]).
    pub fn encode_sealing(&mut self, r: &ChangeRecord) -> io::Result<&[u8]> {
        self.encode_with(&r.view(), true)
    }

    fn encode_with(&mut self, r: &RecordView<'_>, seal: bool) -> io::Result<&[u8]> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let res = self.encode_into(r, seal, &mut buf);
        self.buf = buf;
        res.map(|()| &self.buf[..])
    }

    /// Appends the encoding of one record to `out` ([`Encoder::encode_with`] without the copy
    /// out of the encoder's buffer: JSON Lines are written where they go). On an error `out`
    /// is left as it was.
    pub fn encode_into(
        &mut self,
        r: &RecordView<'_>,
        seal: bool,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let write = |r: &RecordView<'_>, out: &mut Vec<u8>| {
            if seal {
                r.write_json_sealing(out)
            } else {
                r.write_json(out)
            }
        };
        let start = out.len();
        let res = match self.format {
            Format::Jsonl => write(r, out)
                .map(|_| out.push(b'\n'))
                .map_err(io::Error::from),
            Format::Csv => {
                let mut json = std::mem::take(&mut self.json);
                json.clear();
                let row = write(r, &mut json)
                    .map_err(io::Error::other)
                    .and_then(|spans| self.csv_into(out, r, &json, &spans));
                self.json = json;
                row
            }
        };
        if res.is_err() {
            out.truncate(start);
        }
        res
    }

    /// The CSV row of `r` from its JSON already written: `json` holds what
    /// [`ChangeRecord::write_json`] appended and `spans` is what it returned. The same bytes as
    /// [`Encoder::encode`] on a CSV encoder, without serializing the record again (the run
    /// writes the same JSON to its JSON Lines batch and the store).
    pub fn encode_csv_from_json(
        &mut self,
        r: &ChangeRecord,
        json: &[u8],
        spans: &changes::JsonSpans,
    ) -> io::Result<&[u8]> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let res = self.csv_into(&mut buf, &r.view(), json, spans);
        self.buf = buf;
        res.map(|()| &self.buf[..])
    }

    /// Appends the CSV row of `r` to `out`.
    fn csv_into(
        &mut self,
        out: &mut Vec<u8>,
        r: &RecordView<'_>,
        json: &[u8],
        spans: &changes::JsonSpans,
    ) -> io::Result<()> {
        // The JSON is what `write_json` wrote from `&str` values: UTF-8 without a check.
        let text = |range: std::ops::Range<usize>| {
            json.get(range)
                .ok_or_else(|| io::Error::other("record JSON spans out of range"))
        };
        let id = text(spans.change_id.clone())?;
        let new = text(spans.new.clone())?;
        let old = match spans.old.clone() {
            Some(range) => text(range)?,
            None => b"",
        };
        let t = &mut self.text;
        t.clear();
        let sfile = match r.source {
            SourceView::X12 {
                file,
                isa13,
                gs06,
                st02,
                first_segment,
                last_segment,
            } => {
                // `{isa13}/{gs06}/{st02}/{first_segment}-{last_segment}`, without `fmt`.
                for (part, sep) in [(isa13, b'/'), (gs06, b'/'), (st02, b'/')] {
                    t.extend_from_slice(part.as_bytes());
                    t.push(sep);
                }
                crate::changejson::uint(t, u64::from(first_segment));
                t.push(b'-');
                crate::changejson::uint(t, u64::from(last_segment));
                file
            }
            SourceView::Portal {
                file,
                first_row,
                last_row,
                ..
            } => {
                t.extend_from_slice(b"rows ");
                crate::changejson::uint(t, first_row);
                t.push(b'-');
                crate::changejson::uint(t, last_row);
                file
            }
        };
        csv_row(out, r, id, sfile, t, new, old);
        Ok(())
    }
}

/// Appends a record's CSV row (the columns of [`CSV_COLUMNS`]); `id`, `new` and `old` are the
/// record's `change_id` and JSON values, `sref` its source reference.
fn csv_row(
    out: &mut Vec<u8>,
    r: &RecordView<'_>,
    id: &[u8],
    sfile: &str,
    sref: &[u8],
    new: &[u8],
    old: &[u8],
) {
    let mut row = CsvRow { out, first: true };
    let name = r.new.name;
    let demo = r.new.demographics;
    let addr = r.new.residence.or(r.new.mailing);
    let cov = r.new.coverages.first();
    row.bytes(id);
    row.field(r.kind.label());
    row.date(r.effective_date.as_ref());
    row.field(r.group_id.unwrap_or_default());
    row.field(r.division.unwrap_or_default());
    row.field(r.subscriber_id);
    row.field(r.member_id);
    row.field(r.relationship.label());
    row.field(r.reason.map(|x| x.label()).unwrap_or_default());
    row.field(name.map(|n| n.last).unwrap_or_default());
    row.field(name.and_then(|n| n.first).unwrap_or_default());
    row.field(name.and_then(|n| n.middle).unwrap_or_default());
    row.date(demo.and_then(|d| d.birth_date.as_ref()));
    row.field(
        demo.and_then(|d| d.gender)
            .map(|g| g.label())
            .unwrap_or_default(),
    );
    row.field(addr.map(|a| a.line1).unwrap_or_default());
    row.field(addr.and_then(|a| a.line2).unwrap_or_default());
    row.field(addr.map(|a| a.city).unwrap_or_default());
    row.field(addr.and_then(|a| a.state).unwrap_or_default());
    row.field(addr.and_then(|a| a.postal_code).unwrap_or_default());
    row.count(r.new.coverages.len());
    row.field(cov.map(|c| c.insurance_line.label()).unwrap_or_default());
    row.field(cov.and_then(|c| c.plan.as_deref()).unwrap_or_default());
    row.field(
        cov.and_then(|c| c.coverage_level)
            .map(|l| l.label())
            .unwrap_or_default(),
    );
    row.date(cov.and_then(|c| c.begin.as_ref()));
    row.date(cov.and_then(|c| c.end.as_ref()));
    row.field(
        cov.and_then(|c| c.pcp.as_ref())
            .and_then(|p| p.npi.as_deref())
            .unwrap_or_default(),
    );
    row.field(match r.source {
        SourceView::X12 { .. } => "x12",
        SourceView::Portal { .. } => "portal",
    });
    row.field(sfile);
    row.bytes(sref);
    row.bytes(new);
    row.bytes(old);
    row.field(r.status.map(|s| s.as_str()).unwrap_or_default());
    row.field(r.invoice_period.unwrap_or_default());
    crate::csvrow::end(row.out);
}

/// One CSV row being appended, field by field.
struct CsvRow<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl CsvRow<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    #[inline(always)]
    fn field(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// A field as [`crate::csvrow::field`] with [`crate::csvrow::Formulas::Keep`] writes it.
    ///
    /// Forced inline, as is `field`: left to the inliner, one of them became a call (as many
    /// as a row has fields, 7.4 M instructions in the 10 MB nightly run) after a change
    /// elsewhere in the crate.
    #[inline(always)]
    fn bytes(&mut self, v: &[u8]) {
        self.sep();
        crate::csvrow::bytes(self.out, v);
    }

    /// A date as in the JSON (`YYYY-MM-DD`; never needs quoting), or an empty field.
    fn date(&mut self, d: Option<&chrono::NaiveDate>) {
        self.sep();
        if let Some(d) = d {
            crate::changejson::date(self.out, d);
        }
    }

    fn count(&mut self, n: usize) {
        self.sep();
        crate::changejson::uint(self.out, n as u64);
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
    /// The output file itself, when the output is a file this observer may rewrite: records
    /// then go straight to the output and the spool is not used ([`ConvertObserver::direct`]).
    direct: Option<File>,
    /// Bytes spooled (or, direct, written to the output) since the last release, those in
    /// `pending` included.
    spool_len: u64,
    encoder: Encoder,
    /// Records encoded and not yet handed to the spool (or, direct, the output): encoded
    /// straight into this buffer, then written [`ConvertObserver::PENDING`] bytes or more at a
    /// time, which a `BufWriter` of that size passes on without copying them.
    pending: Vec<u8>,
    isa13: String,
    gs06: String,
    st02: String,
    /// Boxed: [`Observer::member`] takes it out and puts it back for every member (to lend it
    /// while `self` encodes), a move of a pointer instead of the whole header.
    header: Option<Box<HeaderContext>>,
    group: u32,
    sets: Vec<SetSpan>,
    set_start: u64,
    set_records: u64,
    error: Option<io::Error>,
    /// The business rules, when a configuration is given.
    screen: Option<crate::screen::Screen<'o>>,
    /// Byte buffers of merged pieces, for the next pieces ([`BufferPool`]).
    free: BufferPool,
    /// The last member loop's vectors, for the next.
    spare: changes::MemberSpare,
    pub summary: ConvertSummary,
}

impl<'o, S: Write> ConvertObserver<'o, S> {
    /// Bytes of records held in `pending` before they are written: the capacity of the
    /// spool's writer and of `convert -o`'s.
    const PENDING: usize = 1 << 16;

    /// `file` is the input's name as it goes in the source trace (use the base name).
    pub fn new(file: &str, out: &'o mut ChangeWriter<S>) -> Self {
        let format = out.encoder.format;
        ConvertObserver {
            file: file.to_string(),
            out,
            spool: None,
            direct: None,
            spool_len: 0,
            encoder: Encoder::new(format),
            pending: Vec::new(),
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
            free: BufferPool::default(),
            spare: changes::MemberSpare::default(),
            summary: ConvertSummary::default(),
        }
    }

    /// Writes records straight to the output instead of spooling them. `file` is a handle to
    /// the file the output writer writes to, at its end (a `try_clone` of it: the two share
    /// the file offset), which nothing else writes to or reads meanwhile.
    ///
    /// The spool costs about a tenth of a conversion's CPU (the records, 3.5 times the input,
    /// written to a temporary file and read back). Almost always every set is applied, and
    /// then the records are already where they belong; when a set, group or interchange is
    /// rejected, its records are cut out of the output at IEA: the later sets' records move
    /// down over them and the file is truncated. So the output holds rejected records only
    /// until their interchange ends (use it with an output that is renamed into place when
    /// complete, as `convert -o` does).
    pub fn direct(mut self, file: File) -> Self {
        self.direct = Some(file);
        self
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
            let res = self.write_spooled(&s.record.view(), false);
            self.io(res);
        }
    }

    /// Ends the conversion: the first I/O error, if any, and the summary.
    pub fn finish(mut self) -> io::Result<ConvertSummary> {
        let r = self.flush_pending();
        self.io(r);
        if self.direct.is_some() && self.spool_len > 0 && self.error.is_none() {
            // Records of an interchange that never ended are not output, as with the spool.
            let r = self.cut_unreleased();
            self.io(r);
        }
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

    /// Spools one record; `seal` computes its id while encoding it (its `change_id` is empty).
    fn write_spooled(&mut self, r: &RecordView<'_>, seal: bool) -> io::Result<()> {
        if self.direct.is_none() {
            self.spool()?;
        }
        let before = self.pending.len();
        self.encoder.encode_into(r, seal, &mut self.pending)?;
        self.spool_len += (self.pending.len() - before) as u64;
        self.set_records += 1;
        if self.pending.len() >= Self::PENDING {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Writes the records held in `pending` to the spool (or, direct, the output): before
    /// anything else is written there or the spool is read.
    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut pending = std::mem::take(&mut self.pending);
        let res = match self.direct {
            Some(_) => self.out.inner.write_all(&pending),
            None => self.spool().and_then(|spool| spool.write_all(&pending)),
        };
        pending.clear();
        self.pending = pending;
        res
    }

    /// Copies the accepted sets of the interchange to the output and empties the spool.
    fn release(&mut self, accepted: bool) -> io::Result<()> {
        self.flush_pending()?;
        if self.direct.is_some() {
            return self.release_direct(accepted);
        }
        let sets = std::mem::take(&mut self.sets);
        let Some(spool) = self.spool.take() else {
            for s in &sets {
                self.tally(s, accepted);
            }
            return Ok(());
        };
        let mut file = spool.into_inner().map_err(|e| e.into_error())?;
        for s in &sets {
            self.tally(s, accepted);
            if !(accepted && s.accepted) {
                continue;
            }
            file.seek(SeekFrom::Start(s.start))?;
            // `io::copy` lets the kernel copy file to file (or pipe) where it can
            // (copy_file_range, sendfile, splice) instead of through a buffer of ours.
            let len = s.end - s.start;
            if io::copy(&mut (&mut file).take(len), &mut self.out.inner)? != len {
                return Err(io::ErrorKind::UnexpectedEof.into());
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

    /// [`ConvertObserver::release`] when the records went straight to the output: nothing to
    /// do when every byte since the last release belongs to a set that is applied; otherwise
    /// the applied sets' records move down over the others and the output is truncated.
    fn release_direct(&mut self, accepted: bool) -> io::Result<()> {
        let sets = std::mem::take(&mut self.sets);
        for s in &sets {
            self.tally(s, accepted);
        }
        // The spans are contiguous from where each set started; bytes outside them (sets of
        // an interchange that never ended) are dropped too.
        let covered: u64 = sets.iter().map(|s| s.end - s.start).sum();
        let len = std::mem::take(&mut self.spool_len);
        if accepted && sets.iter().all(|s| s.accepted) && covered == len {
            self.out.records += sets.iter().map(|s| s.records).sum::<u64>();
            return Ok(());
        }
        self.out.inner.flush()?;
        let mut file = self
            .direct
            .as_ref()
            .ok_or_else(|| io::Error::other("no direct output"))?;
        let base = file
            .metadata()?
            .len()
            .checked_sub(len)
            .ok_or_else(|| io::Error::other("output shorter than its records"))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut to = base;
        for s in sets.iter().filter(|s| accepted && s.accepted) {
            let (mut from, end) = (base + s.start, base + s.end);
            if from == to {
                from = end;
                to = end;
            }
            // Moving down (`to` < `from`) chunk by chunk never overwrites a byte not yet read.
            while from < end {
                let n = (end - from).min(buf.len() as u64) as usize;
                file.seek(SeekFrom::Start(from))?;
                file.read_exact(&mut buf[..n])?;
                file.seek(SeekFrom::Start(to))?;
                file.write_all(&buf[..n])?;
                from += n as u64;
                to += n as u64;
            }
            self.out.records += s.records;
        }
        file.set_len(to)?;
        file.seek(SeekFrom::End(0))?;
        Ok(())
    }

    /// Cuts off the records written since the last release (their interchange never ended).
    fn cut_unreleased(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        self.out.inner.flush()?;
        let len = std::mem::take(&mut self.spool_len);
        let mut file = self
            .direct
            .as_ref()
            .ok_or_else(|| io::Error::other("no direct output"))?;
        let keep = file
            .metadata()?
            .len()
            .checked_sub(len)
            .ok_or_else(|| io::Error::other("output shorter than its records"))?;
        file.set_len(keep)?;
        file.seek(SeekFrom::End(0))?;
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
        self.header = Some(Box::new(HeaderContext::from_record(
            rec,
            &self.file,
            &self.isa13,
            &self.gs06,
            &self.st02,
        )));
    }

    fn member(&mut self, rec: &Record, std: &Standards) {
        let Some(h) = self.header.take() else { return };
        // Out of `self` while the member loop is read into it, as the header is.
        let mut spare = std::mem::take(&mut self.spare);
        let result = changes::with_member_loop(rec, std, &mut spare, |m| {
            match self.screen.is_some() {
                // The rules look at owned, sealed records.
                true => changes::derive(&h, m).map(|records| {
                    if let Some(screen) = &mut self.screen {
                        let out = screen.member(records, rec);
                        self.write_screened(out);
                    }
                }),
                // Without rules nothing needs the ids before they are written: each record is
                // encoded from a view into the member loop and the header, its id computed
                // from the JSON written (one serialization, no owned record).
                false => changes::derive_views(&h, m, &mut |v| {
                    let res = self.write_spooled(v, true);
                    self.io(res);
                }),
            }
        });
        self.spare = spare;
        self.header = Some(h);
        match result {
            Ok(()) => {}
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

/// The output buffers of a split conversion's pieces, handed back by the merge once their
/// bytes are written, and taken by a piece when its first record is encoded (on the converting
/// thread), not when the piece is planned.
///
/// A piece's output is a few MB (3.5 times its input), and fresh memory costs a page fault per
/// 4 KiB. The splitter plans `4 x jobs + 4` pieces ahead of the merge; had each planned piece
/// taken its buffer then, the first dozen pieces of every conversion would all have needed
/// fresh ones (7,300 page faults with two jobs on a 10 MB file against 490 with one: most of
/// the extra CPU of two jobs). Taken when used, a buffer is needed only for the pieces being
/// converted and those done but not yet merged, and the merged ones come back in time.
#[derive(Clone, Default)]
struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BufferPool {
    /// Buffers kept at most: more than the pieces ever converting or waiting at once.
    const KEEP: usize = 16;

    /// Room a fresh buffer starts with: a default piece's output (512 KiB of input, 3.5 times
    /// that as JSON Lines, more as CSV). Growing from nothing copied each buffer about twice,
    /// into fresh pages each time; room not written to is never touched.
    const FRESH: usize = 2 << 20;

    /// A buffer from the pool, or a fresh one.
    fn take(&self) -> Vec<u8> {
        let mut free = self.0.lock().unwrap_or_else(|e| e.into_inner());
        free.pop()
            .unwrap_or_else(|| Vec::with_capacity(Self::FRESH))
    }

    /// Gives a buffer back, emptied (dropped when the pool is full).
    fn put(&self, mut bytes: Vec<u8>) {
        if bytes.capacity() == 0 {
            return;
        }
        let mut free = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < Self::KEEP {
            bytes.clear();
            free.push(bytes);
        }
    }
}

/// What a piece of a set converted on another thread ([`crate::split`]) produced: the encoded
/// records of the members it closed, as [`ConvertObserver::member`] would have spooled them,
/// with its counts and issues.
pub struct ConvertPiece {
    file: String,
    isa13: String,
    gs06: String,
    st02: String,
    header: Option<HeaderContext>,
    encoder: Encoder,
    /// Empty (unallocated) until the first record, then a buffer from `pool`.
    bytes: Vec<u8>,
    pool: BufferPool,
    records: u64,
    errors: u64,
    issues: Vec<ConvertIssue>,
    error: Option<io::Error>,
    /// The last member loop's vectors, for the next.
    spare: changes::MemberSpare,
}

impl Observer for ConvertPiece {
    fn finding(&mut self, f: Finding) {
        if f.severity == crate::finding::Severity::Error {
            self.errors += 1;
        }
    }

    fn member(&mut self, rec: &Record, std: &Standards) {
        let Some(h) = &self.header else { return };
        if self.bytes.capacity() == 0 {
            self.bytes = self.pool.take();
        }
        let (encoder, bytes, records, error) = (
            &mut self.encoder,
            &mut self.bytes,
            &mut self.records,
            &mut self.error,
        );
        let result = changes::with_member_loop(rec, std, &mut self.spare, |m| {
            changes::derive_views(h, m, &mut |v| match encoder.encode_into(v, true, bytes) {
                Ok(()) => *records += 1,
                Err(e) => {
                    if error.is_none() {
                        *error = Some(e);
                    }
                }
            })
        });
        match result {
            Ok(()) => {}
            Err(error) => self.issues.push(ConvertIssue {
                file: self.file.clone(),
                isa13: self.isa13.clone(),
                gs06: self.gs06.clone(),
                st02: self.st02.clone(),
                error,
            }),
        }
    }
}

/// Without business rules, a set's members convert one by one, each from the set's header
/// alone, so pieces of a set convert on their own; with rules ([`crate::screen`] keeps state
/// across members) the file is read in sequence.
impl<S: Write> crate::split::Split for ConvertObserver<'_, S> {
    type Piece = ConvertPiece;

    fn piece(&mut self) -> Option<ConvertPiece> {
        if self.screen.is_some() {
            return None;
        }
        Some(ConvertPiece {
            file: self.file.clone(),
            isa13: self.isa13.clone(),
            gs06: self.gs06.clone(),
            st02: self.st02.clone(),
            header: self.header.as_deref().cloned(),
            encoder: Encoder::new(self.encoder.format),
            bytes: Vec::new(),
            pool: self.free.clone(),
            records: 0,
            errors: 0,
            issues: Vec::new(),
            error: None,
            spare: changes::MemberSpare::default(),
        })
    }

    fn merge(&mut self, piece: ConvertPiece) {
        self.summary.errors += piece.errors;
        self.summary.issues.extend(piece.issues);
        if let Some(e) = piece.error {
            self.io::<()>(Err(e));
        }
        let bytes = piece.bytes;
        if !bytes.is_empty() {
            let r = self.flush_pending();
            self.io(r);
            let res = match self.direct {
                Some(_) => self.out.inner.write_all(&bytes),
                None => self.spool().and_then(|spool| spool.write_all(&bytes)),
            };
            self.io(res);
            self.spool_len += bytes.len() as u64;
            self.set_records += piece.records;
        }
        self.free.put(bytes);
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

/// Converts one 834 file like [`convert_x12`], with its large sets cut into pieces converted
/// on `opts.jobs` threads ([`crate::split`]): the same bytes and summary.
pub fn convert_x12_file<W: Write>(
    engine: &crate::check::Engine,
    file: &str,
    input: &File,
    out: &mut ChangeWriter<W>,
    opts: crate::split::SplitOptions,
) -> io::Result<(ConvertSummary, crate::split::SplitStats)> {
    convert_x12_file_to(engine, file, input, out, opts, None)
}

/// [`convert_x12_file`], writing the records straight to the output file when `direct` is a
/// handle to it ([`ConvertObserver::direct`]): no spool.
pub fn convert_x12_file_to<W: Write>(
    engine: &crate::check::Engine,
    file: &str,
    input: &File,
    out: &mut ChangeWriter<W>,
    opts: crate::split::SplitOptions,
    direct: Option<&File>,
) -> io::Result<(ConvertSummary, crate::split::SplitStats)> {
    let mut obs = ConvertObserver::new(file, out);
    if let Some(f) = direct {
        obs = obs.direct(f.try_clone()?);
    }
    let stats = crate::split::split_file(engine, input, &mut obs, opts);
    obs.finish().map(|s| (s, stats))
}
