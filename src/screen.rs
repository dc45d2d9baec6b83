//! Screening: runs the business rules ([`crate::rules`]) over a checked stream, one family at a
//! time, and collects the reject report ([`crate::report`]).
//!
//! [`Screen`] is fed by an observer (the convert observer in [`crate::batch`], or [`CheckScreen`]
//! for `eligo check`): envelope events, findings, and each member loop's change records with the
//! loop's segments as received. It buffers one family (the subscriber's loop and the dependents'
//! after it), assesses it when the next family starts or the set ends, and hands back the changes
//! with their verdict. Memory is bounded by the largest family, not the file.
//!
//! It does no I/O: the caller writes the batch and the report files.

use crate::changes::{self, ChangeRecord, HeaderContext};
use crate::check::{
    GroupInfo, GroupResult, InterchangeInfo, Observer, SetInfo, SetResult, Ta1Result,
};
use crate::config::Config;
use crate::finding::{Finding, Severity};
use crate::report::{RawSegment, RejectReport, SetReject};
use crate::rules::{same_family, Assessment, Assessor, RuleContext};
use crate::validate::record::Record;
use crate::validate::Standards;
use chrono::NaiveDate;
use std::rc::Rc;

/// X12 findings kept per rejected set for the report (the 999 has them all).
const MAX_SET_FINDINGS: usize = 50;

/// A change with the rules' verdict; `record.status` and `record.invoice_period` are filled.
#[derive(Debug, Clone)]
pub struct Screened {
    pub record: ChangeRecord,
    pub assessment: Assessment,
}

/// The business-rule stage of one input file.
pub struct Screen<'c> {
    config: &'c Config,
    as_of: NaiveDate,
    file: String,
    assessor: Assessor,
    sender: Option<String>,
    file_date: Option<NaiveDate>,
    isa13: String,
    gs06: String,
    st02: String,
    family: Vec<(ChangeRecord, Rc<Vec<RawSegment>>)>,
    set_findings: Vec<Finding>,
    set_error_count: u64,
    /// Report entries before the current set's: a set the 999 rejects is reported as a set.
    set_entries_start: usize,
    /// Everything to report so far.
    pub report: RejectReport,
}

impl<'c> Screen<'c> {
    /// `file` is the input's name as shown in the report.
    pub fn new(config: &'c Config, as_of: NaiveDate, file: &str) -> Self {
        Screen {
            config,
            as_of,
            file: file.to_string(),
            assessor: Assessor::default(),
            sender: None,
            file_date: None,
            isa13: String::new(),
            gs06: String::new(),
            st02: String::new(),
            family: Vec::new(),
            set_findings: Vec::new(),
            set_error_count: 0,
            set_entries_start: 0,
            report: RejectReport::new(as_of),
        }
    }

    /// Sets the sender for inputs without an interchange (portal exports).
    pub fn set_sender(&mut self, sender: Option<&str>) {
        self.sender = sender.map(str::to_string);
    }

    pub fn interchange_start(&mut self, i: &InterchangeInfo) {
        let s = i.sender_id.trim();
        self.sender = (!s.is_empty()).then(|| s.to_string());
        self.isa13 = i.isa13.clone();
    }

    pub fn group_start(&mut self, g: &GroupInfo) {
        self.file_date = crate::validate::element::parse_date(g.gs04.as_bytes());
        self.gs06 = g.gs06.clone();
    }

    pub fn set_start(&mut self, s: &SetInfo) {
        self.st02 = s.st02.clone();
        self.set_findings.clear();
        self.set_error_count = 0;
        self.set_entries_start = self.report.entries.len();
    }

    /// An X12 finding (levels 1–5), kept in case the set is rejected.
    pub fn finding(&mut self, f: &Finding) {
        if f.severity == Severity::Error && f.location.st02.is_some() {
            self.set_error_count += 1;
            if self.set_findings.len() < MAX_SET_FINDINGS {
                self.set_findings.push(f.clone());
            }
        }
    }

    /// The end of a set: assesses the last family, and reports the set if the 999 rejects it.
    pub fn set_end(&mut self, r: &SetResult) -> Vec<Screened> {
        let out = self.flush();
        if r.code == 'R' {
            // Nothing in the set is applied; its members' business findings would only repeat
            // what the sender fixes when resending the set.
            self.report.entries.truncate(self.set_entries_start);
            self.report.add_set_reject(SetReject {
                file: self.file.clone(),
                sender: self.sender.clone(),
                isa13: self.isa13.clone(),
                gs06: self.gs06.clone(),
                st02: r.info.st02.clone(),
                codes: r.errors.iter().map(|c| c.to_string()).collect(),
                members: r.members,
                error_count: self.set_error_count,
                findings: std::mem::take(&mut self.set_findings),
            });
        }
        out
    }

    /// A rejected group or interchange: its sets' members are not applied either; the report
    /// lists the envelope finding.
    pub fn envelope_reject(&mut self, what: &str, code: &str) {
        self.report.add_set_reject(SetReject {
            file: self.file.clone(),
            sender: self.sender.clone(),
            isa13: self.isa13.clone(),
            gs06: if what == "group" {
                self.gs06.clone()
            } else {
                String::new()
            },
            st02: String::new(),
            codes: vec![format!("{what} {code}")],
            members: 0,
            error_count: 0,
            findings: Vec::new(),
        });
    }

    /// One member loop's changes and its segments. Returns the previous family's changes, with
    /// their verdicts, when this loop starts a new family.
    pub fn member(&mut self, records: Vec<ChangeRecord>, rec: &Record) -> Vec<Screened> {
        let raw = Rc::new(raw_segments(rec));
        let mut out = Vec::new();
        for r in records {
            if let Some((last, _)) = self.family.last() {
                if !same_family(last, &r) {
                    out.extend(self.flush());
                }
            }
            self.family.push((r, Rc::clone(&raw)));
        }
        out
    }

    /// Changes without segments (portal rows), assessed as one batch in order.
    pub fn records(&mut self, records: Vec<ChangeRecord>) -> Vec<Screened> {
        let raw = Rc::new(Vec::new());
        let mut out = Vec::new();
        for r in records {
            if let Some((last, _)) = self.family.last() {
                if !same_family(last, &r) {
                    out.extend(self.flush());
                }
            }
            self.family.push((r, Rc::clone(&raw)));
        }
        out.extend(self.flush());
        out
    }

    /// Assesses the buffered family.
    pub fn flush(&mut self) -> Vec<Screened> {
        if self.family.is_empty() {
            return Vec::new();
        }
        // The records apart from their segments: assessed where they are, not copied first.
        let (records, raws): (Vec<ChangeRecord>, Vec<Rc<Vec<RawSegment>>>) =
            std::mem::take(&mut self.family).into_iter().unzip();
        let ctx = RuleContext {
            config: self.config,
            as_of: self.as_of,
            sender: self.sender.as_deref(),
            file_date: self.file_date,
        };
        let verdicts = self.assessor.family(&ctx, &records);
        let mut out = Vec::with_capacity(records.len());
        for ((mut record, raw), mut a) in records.into_iter().zip(raws).zip(verdicts) {
            for f in &mut a.findings {
                crate::report::locate(f, &raw);
            }
            record.status = (!a.rejected).then_some(a.status);
            record.invoice_period = a.invoice_period.clone();
            if !a.findings.is_empty() {
                // The loop's last change with findings takes its segments; one before it
                // takes a copy.
                let raw = Rc::try_unwrap(raw).unwrap_or_else(|shared| (*shared).clone());
                self.report
                    .add_change(&self.file, self.sender.as_deref(), &record, &a, raw);
            }
            out.push(Screened {
                record,
                assessment: a,
            });
        }
        out
    }
}

/// The segments of a recorded member loop, as received.
pub fn raw_segments(rec: &Record) -> Vec<RawSegment> {
    rec.iter()
        .map(|(r, seg)| RawSegment {
            position: r.position,
            line: r.at.line,
            id: String::from_utf8_lossy(seg.id()).into_owned(),
            elements: seg
                .elements()
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect(),
        })
        .collect()
}

/// `eligo check --config`: forwards every event to the printer and adds the business findings
/// of each member, in input order.
pub struct CheckScreen<'c, O> {
    pub inner: O,
    pub screen: Screen<'c>,
    file: String,
    isa13: String,
    gs06: String,
    st02: String,
    header: Option<HeaderContext>,
    /// Changes assessed, rejected, and held (Incomplete or awaiting a Family Health Statement).
    pub changes: u64,
    pub rejected: u64,
    pub held: u64,
}

impl<'c, O: Observer> CheckScreen<'c, O> {
    pub fn new(inner: O, screen: Screen<'c>, file: &str) -> Self {
        CheckScreen {
            inner,
            screen,
            file: file.to_string(),
            isa13: String::new(),
            gs06: String::new(),
            st02: String::new(),
            header: None,
            changes: 0,
            rejected: 0,
            held: 0,
        }
    }

    fn emit(&mut self, screened: Vec<Screened>) {
        for s in screened {
            self.changes += 1;
            if s.assessment.rejected {
                self.rejected += 1;
            } else if s.assessment.status.is_held() {
                self.held += 1;
            }
            for f in s.assessment.findings {
                self.inner.finding(f);
            }
        }
    }
}

impl<O: Observer> Observer for CheckScreen<'_, O> {
    fn finding(&mut self, f: Finding) {
        self.screen.finding(&f);
        self.inner.finding(f);
    }
    fn interchange_start(&mut self, i: &InterchangeInfo) {
        self.isa13 = i.isa13.clone();
        self.screen.interchange_start(i);
        self.inner.interchange_start(i);
    }
    fn interchange_end(&mut self, i: &InterchangeInfo, ta1: Ta1Result, groups: u32) {
        if ta1.code == 'R' {
            self.screen
                .envelope_reject("interchange", &format!("TA1 R {}", ta1.note));
        }
        self.inner.interchange_end(i, ta1, groups);
    }
    fn group_start(&mut self, g: &GroupInfo) {
        self.gs06 = g.gs06.clone();
        self.screen.group_start(g);
        self.inner.group_start(g);
    }
    fn group_end(&mut self, r: &GroupResult) {
        if r.code == 'R' {
            self.screen.envelope_reject("group", "AK9 R");
        }
        self.inner.group_end(r);
    }
    fn set_start(&mut self, s: &SetInfo) {
        self.st02 = s.st02.clone();
        self.header = None;
        self.screen.set_start(s);
        self.inner.set_start(s);
    }
    fn header(&mut self, rec: &Record, std: &Standards) {
        self.header = Some(HeaderContext::from_record(
            rec,
            &self.file,
            &self.isa13,
            &self.gs06,
            &self.st02,
        ));
        self.inner.header(rec, std);
    }
    fn member(&mut self, rec: &Record, std: &Standards) {
        if let Some(h) = &self.header {
            // A loop that cannot be converted has X12 findings already; the rules skip it.
            if let Ok(records) = changes::member_loop(rec, std).and_then(|m| changes::derive(h, &m))
            {
                let out = self.screen.member(records, rec);
                self.emit(out);
            }
        }
        self.inner.member(rec, std);
    }
    fn set_end(&mut self, r: &SetResult) {
        let out = self.screen.set_end(r);
        self.emit(out);
        self.inner.set_end(r);
    }
}
