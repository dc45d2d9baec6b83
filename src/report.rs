//! The reject report an EDI analyst opens the morning after a run: a CSV of every business
//! finding and every X12-rejected set, and one self-contained HTML page (inline CSS and
//! JavaScript, no network fetches) with counts by group, sender and rule, a table that filters by
//! group, rule and severity, and for each reject the member's segments as received with the
//! offending segment and element highlighted, and what to do about it.
//!
//! Member data is masked by default: birth dates (DMG02) and SSNs (NM109 after NM108 `34`, and
//! finding values marked PHI) keep only their shape (`99999999`). [`ReportOptions::unmask`] shows
//! them, for an analyst who needs to and is allowed to.
//!
//! This module builds bytes; [`RejectReport::write`] is the only function that touches files, and
//! it writes them atomically with mode 0600.
//!
//! ## CSV columns
//! `kind` (`business` or `x12`), `file`, `sender`, `group_id`, `division`, `isa13`, `gs06`,
//! `st02`, `segment_position`, `segment_id`, `element`, `row` (portal CSV row), `subscriber_id`,
//! `member_id`, `change_kind`, `effective_date`, `rule_id`, `level` (SNIP), `severity`,
//! `disposition` (`rejected`, `held`, `accepted`, `set rejected`), `status`, `message`, `value`
//! (masked unless unmasked), `fix`, `change_id`.

use crate::changejson::{json_key, Json, Object};
use crate::changes::{ChangeRecord, SourceTrace};
use crate::finding::{mask, Finding, Severity};
use crate::rules::{rule_info, Assessment};
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// One segment as received: id and elements (element 1 first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawSegment {
    /// Position in the set, ST = 1.
    pub position: u32,
    /// Line in the input file (1-based).
    pub line: u64,
    pub id: String,
    pub elements: Vec<String>,
}

/// A transaction set the 999 rejected (or a rejected group or interchange): nothing in it is
/// applied, and the sender resends it whole.
#[derive(Debug, Clone, Serialize)]
pub struct SetReject {
    pub file: String,
    pub sender: Option<String>,
    pub isa13: String,
    pub gs06: String,
    pub st02: String,
    /// IK502.. codes (or `group AK9 R`, `interchange TA1 R 021`).
    pub codes: Vec<String>,
    pub members: u64,
    pub error_count: u64,
    pub findings: Vec<Finding>,
}

/// One change with business findings.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub file: String,
    pub sender: Option<String>,
    pub group_id: Option<String>,
    pub division: Option<String>,
    pub subscriber_id: String,
    pub member_id: String,
    pub member_name: Option<String>,
    pub change_kind: &'static str,
    pub change_id: String,
    pub effective_date: Option<NaiveDate>,
    pub rejected: bool,
    pub status: &'static str,
    /// `ISA13/GS06/ST02 segments A-B`, or `rows A-B`.
    pub source: String,
    pub row: Option<u64>,
    pub findings: Vec<Finding>,
    pub segments: Vec<RawSegment>,
}

impl Entry {
    fn disposition(&self) -> &'static str {
        disposition(self.rejected, self.status)
    }

    /// The entry's CSV columns, borrowed.
    fn row(&self) -> RowFields<'_> {
        RowFields {
            file: &self.file,
            sender: self.sender.as_deref(),
            group_id: self.group_id.as_deref(),
            division: self.division.as_deref(),
            row: self.row,
            subscriber_id: &self.subscriber_id,
            member_id: &self.member_id,
            change_kind: self.change_kind,
            effective_date: self.effective_date,
            disposition: self.disposition(),
            status: self.status,
            change_id: &self.change_id,
            findings: &self.findings,
        }
    }
}

/// What became of a change with findings, as the report says it.
fn disposition(rejected: bool, status: &str) -> &'static str {
    if rejected {
        "rejected"
    } else if status != "Pending" {
        "held"
    } else {
        "accepted"
    }
}

/// What a change's business CSV rows say, borrowed from an [`Entry`] or straight from the
/// change and its assessment: a bad night writes a row per finding of every change, and copying
/// each field into an entry first cost more than writing the rows.
struct RowFields<'a> {
    file: &'a str,
    sender: Option<&'a str>,
    group_id: Option<&'a str>,
    division: Option<&'a str>,
    row: Option<u64>,
    subscriber_id: &'a str,
    member_id: &'a str,
    change_kind: &'static str,
    effective_date: Option<NaiveDate>,
    disposition: &'static str,
    status: &'a str,
    change_id: &'a str,
    findings: &'a [Finding],
}

/// How the report shows member data.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportOptions {
    /// Show birth dates and SSNs as received.
    pub unmask: bool,
}

/// The report of one run.
#[derive(Debug, Clone)]
pub struct RejectReport {
    pub as_of: NaiveDate,
    pub entries: Vec<Entry>,
    pub set_rejects: Vec<SetReject>,
    /// Changes with findings left out of `entries` to keep the page (and memory) bounded;
    /// they are in the CSV.
    pub not_shown: usize,
}

/// A segment as received, as [`locate`] sees it: the report's copy ([`RawSegment`]) or one
/// read again from the input ([`crate::member_segments::Received`]).
pub trait ReceivedSegment {
    fn position(&self) -> u32;
    fn line(&self) -> u64;
    fn id(&self) -> &[u8];
    /// Element `n` (1-based); `None` when the segment is shorter.
    fn element(&self, n: usize) -> Option<&[u8]>;
}

impl<T: ReceivedSegment> ReceivedSegment for &T {
    fn position(&self) -> u32 {
        (**self).position()
    }
    fn line(&self) -> u64 {
        (**self).line()
    }
    fn id(&self) -> &[u8] {
        (**self).id()
    }
    fn element(&self, n: usize) -> Option<&[u8]> {
        (**self).element(n)
    }
}

impl ReceivedSegment for RawSegment {
    fn position(&self) -> u32 {
        self.position
    }
    fn line(&self) -> u64 {
        self.line
    }
    fn id(&self) -> &[u8] {
        self.id.as_bytes()
    }
    fn element(&self, n: usize) -> Option<&[u8]> {
        n.checked_sub(1)
            .and_then(|i| self.elements.get(i))
            .map(String::as_bytes)
    }
}

impl ReceivedSegment for crate::member_segments::Received<'_> {
    fn position(&self) -> u32 {
        self.position
    }
    fn line(&self) -> u64 {
        self.segment.position().line
    }
    fn id(&self) -> &[u8] {
        self.segment.id()
    }
    fn element(&self, n: usize) -> Option<&[u8]> {
        self.segment.elements().nth(n.checked_sub(1)?)
    }
}

/// Points a business finding at the exact segment of the member loop: the first segment with
/// the finding's segment id whose element holds the finding's value (or the first with that id).
pub fn locate(f: &mut Finding, raw: &[RawSegment]) {
    locate_in(f, raw.iter());
}

/// [`locate`] over any segments as received, in order.
pub fn locate_in<S: ReceivedSegment>(f: &mut Finding, segs: impl Iterator<Item = S>) {
    let (Some(id), Some(el)) = (f.location.segment_id.as_deref(), f.location.element) else {
        return;
    };
    let lo = f.location.segment_position.unwrap_or(0);
    let value = f.value.as_deref().map(str::as_bytes);
    let mut first_in_span = None;
    let mut by_value = None;
    for s in segs {
        if s.id() != id.as_bytes() || s.position() < lo {
            continue;
        }
        if value.is_some() && s.element(el.element as usize) == value {
            by_value = Some((s.position(), s.line()));
            break;
        }
        if first_in_span.is_none() {
            first_in_span = Some((s.position(), s.line()));
        }
    }
    if let Some((position, line)) = by_value.or(first_in_span) {
        f.location.segment_position = Some(position);
        f.location.line = line;
    }
}

/// Whether [`masked_segment`] may change `s` (the segments that carry member data).
fn masks(s: &RawSegment) -> bool {
    matches!(s.id.as_str(), "DMG" | "NM1" | "REF")
}

fn masked_segment(s: &RawSegment) -> RawSegment {
    let mut out = s.clone();
    match s.id.as_str() {
        "DMG" => {
            if let Some(e) = out.elements.get_mut(1) {
                *e = mask(e);
            }
        }
        "NM1" if s.elements.get(7).is_some_and(|q| q == "34") => {
            if let Some(e) = out.elements.get_mut(8) {
                *e = mask(e);
            }
        }
        "REF" if s.elements.first().is_some_and(|q| q == "SY") => {
            if let Some(e) = out.elements.get_mut(1) {
                *e = mask(e);
            }
        }
        _ => {}
    }
    out
}

fn shown_value(f: &Finding, opts: ReportOptions) -> String {
    shown_value_ref(f, opts).into_owned()
}

/// [`shown_value`], borrowed unless it is masked.
fn shown_value_ref(f: &Finding, opts: ReportOptions) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    match &f.value {
        Some(v) if f.phi && !opts.unmask => Cow::Owned(mask(v)),
        Some(v) => Cow::Borrowed(v),
        None => Cow::Borrowed(""),
    }
}

fn text_or_empty(v: &Option<crate::finding::Text>) -> String {
    v.as_deref().unwrap_or_default().to_string()
}

fn csv_row(out: &mut Vec<u8>, fields: &[String]) {
    crate::csvrow::write(out, fields, crate::csvrow::Formulas::Neutralize);
}

/// The CSV rows of one change's findings (`kind` business), as [`RejectReport::csv`] writes
/// them: the fields written one by one from where they are (a bad night has a row per finding
/// of every rejected change). Numbers, element positions and dates are written as digits
/// straight into `out`: a formatter per field cost more than the rest of the row, and digits,
/// colons and a date of years 0 to 9999 never need quotes or a formula guard. `num` is a
/// buffer kept by the caller for the dates outside those years.
fn business_rows(out: &mut Vec<u8>, e: &RowFields, opts: ReportOptions, num: &mut String) {
    use crate::csvrow::Formulas::Neutralize;
    fn text(out: &mut Vec<u8>, v: &str) {
        out.push(b',');
        crate::csvrow::field(out, v, Neutralize);
    }
    for f in e.findings {
        let l = &f.location;
        crate::csvrow::field(out, "business", Neutralize);
        text(out, e.file);
        text(out, e.sender.unwrap_or(""));
        text(out, e.group_id.unwrap_or(""));
        text(out, e.division.unwrap_or(""));
        text(out, l.isa13.as_deref().unwrap_or(""));
        text(out, l.gs06.as_deref().unwrap_or(""));
        text(out, l.st02.as_deref().unwrap_or(""));
        number_cell(out, l.segment_position.map(u64::from));
        text(out, l.segment_id.as_deref().unwrap_or(""));
        element_cell(out, l.element);
        number_cell(out, e.row);
        text(out, e.subscriber_id);
        text(out, e.member_id);
        text(out, e.change_kind);
        date_cell(out, num, e.effective_date);
        text(out, f.id);
        number_cell(out, Some(u64::from(f.snip)));
        text(out, severity(f.severity));
        text(out, e.disposition);
        text(out, e.status);
        text(out, &f.message);
        text(out, &shown_value_ref(f, opts));
        text(out, rule_info(f.id).map(|r| r.fix).unwrap_or(""));
        text(out, e.change_id);
        crate::csvrow::end(out);
    }
}

/// A comma and a number cell (empty for `None`).
fn number_cell(out: &mut Vec<u8>, v: Option<u64>) {
    out.push(b',');
    if let Some(v) = v {
        crate::changejson::uint(out, v);
    }
}

/// A comma and an element position cell, as [`ElementPos`](crate::finding::ElementPos)'s
/// `Display` writes it (`3`, `3:1`, `3::2`, `3:1:2`).
fn element_cell(out: &mut Vec<u8>, p: Option<crate::finding::ElementPos>) {
    out.push(b',');
    let Some(p) = p else { return };
    crate::changejson::uint(out, u64::from(p.element));
    match (p.component, p.repetition) {
        (Some(c), r) => {
            out.push(b':');
            crate::changejson::uint(out, u64::from(c));
            if let Some(r) = r {
                out.push(b':');
                crate::changejson::uint(out, u64::from(r));
            }
        }
        (None, Some(r)) => {
            out.extend_from_slice(b"::");
            crate::changejson::uint(out, u64::from(r));
        }
        (None, None) => {}
    }
}

/// A comma and a date cell: `YYYY-MM-DD` written directly for years 0 to 9999; any other
/// year (a sign, so maybe a formula guard) through chrono's `Display` and the quoting writer.
fn date_cell(out: &mut Vec<u8>, num: &mut String, d: Option<NaiveDate>) {
    use chrono::Datelike;
    use std::fmt::Write as _;
    out.push(b',');
    let Some(d) = d else { return };
    if (0..=9999).contains(&d.year()) {
        crate::changejson::date(out, &d);
    } else {
        num.clear();
        write!(num, "{d}").expect("writing to a String does not fail");
        crate::csvrow::field(out, num, crate::csvrow::Formulas::Neutralize);
    }
}

/// The CSV header.
pub const CSV_COLUMNS: &[&str] = &[
    "kind",
    "file",
    "sender",
    "group_id",
    "division",
    "isa13",
    "gs06",
    "st02",
    "segment_position",
    "segment_id",
    "element",
    "row",
    "subscriber_id",
    "member_id",
    "change_kind",
    "effective_date",
    "rule_id",
    "level",
    "severity",
    "disposition",
    "status",
    "message",
    "value",
    "fix",
    "change_id",
];

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

impl RejectReport {
    pub fn new(as_of: NaiveDate) -> Self {
        RejectReport {
            as_of,
            entries: Vec::new(),
            set_rejects: Vec::new(),
            not_shown: 0,
        }
    }

    /// Adds one assessed change (only its findings are reported).
    pub fn add_change(
        &mut self,
        file: &str,
        sender: Option<&str>,
        r: &ChangeRecord,
        a: &Assessment,
        raw: Vec<RawSegment>,
    ) {
        let (source, row) = match &r.source {
            SourceTrace::X12 {
                isa13,
                gs06,
                st02,
                first_segment,
                last_segment,
                ..
            } => (
                format!("ISA13 {isa13} / GS06 {gs06} / ST02 {st02}, segments {first_segment}-{last_segment}"),
                None,
            ),
            SourceTrace::Portal {
                first_row,
                last_row,
                ..
            } => (format!("rows {first_row}-{last_row}"), Some(*first_row)),
        };
        // The member's whole loop: the loop the change comes from is inside it.
        self.entries.push(Entry {
            file: file.to_string(),
            sender: sender.map(str::to_string),
            group_id: r.group_id.clone(),
            division: r.division.clone(),
            subscriber_id: r.subscriber_id.clone(),
            member_id: r.member_id.clone(),
            member_name: r.new.name.as_ref().map(|n| match &n.first {
                Some(f) => format!("{}, {f}", n.last),
                None => n.last.clone(),
            }),
            change_kind: r.kind.label(),
            change_id: r.change_id.clone(),
            effective_date: r.effective_date,
            rejected: a.rejected,
            status: if a.rejected { "" } else { a.status.as_str() },
            source,
            row,
            findings: a.findings.clone(),
            segments: raw,
        });
    }

    /// Appends to `out` the CSV rows [`RejectReport::csv`] would write for this change, had
    /// it been added with [`RejectReport::add_change`] (no header, no entry kept): a run
    /// writes the rows of the changes beyond those its page shows this way.
    pub fn change_csv_rows(
        &self,
        file: &str,
        sender: Option<&str>,
        r: &ChangeRecord,
        a: &Assessment,
        opts: ReportOptions,
        out: &mut Vec<u8>,
    ) {
        let status = if a.rejected { "" } else { a.status.as_str() };
        let fields = RowFields {
            file,
            sender,
            group_id: r.group_id.as_deref(),
            division: r.division.as_deref(),
            row: match &r.source {
                SourceTrace::X12 { .. } => None,
                SourceTrace::Portal { first_row, .. } => Some(*first_row),
            },
            subscriber_id: &r.subscriber_id,
            member_id: &r.member_id,
            change_kind: r.kind.label(),
            effective_date: r.effective_date,
            disposition: disposition(a.rejected, status),
            status,
            change_id: &r.change_id,
            findings: &a.findings,
        };
        business_rows(out, &fields, opts, &mut String::new());
    }

    pub fn add_set_reject(&mut self, s: SetReject) {
        self.set_rejects.push(s);
    }

    /// Appends another file's report.
    pub fn merge(&mut self, other: RejectReport) {
        self.entries.extend(other.entries);
        self.set_rejects.extend(other.set_rejects);
    }

    pub fn rejected_changes(&self) -> usize {
        self.entries.iter().filter(|e| e.rejected).count()
    }

    /// The CSV: one row per finding.
    pub fn csv(&self, opts: ReportOptions) -> Vec<u8> {
        let mut out = Vec::new();
        let header: Vec<String> = CSV_COLUMNS.iter().map(|s| s.to_string()).collect();
        csv_row(&mut out, &header);
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let mut num = String::new();
        for e in &self.entries {
            business_rows(&mut out, &e.row(), opts, &mut num);
        }
        for s in &self.set_rejects {
            let summary = Finding::new(
                "X12-SET-REJECTED",
                1,
                crate::finding::Ack::Report,
                format!(
                    "transaction set rejected by the 999 ({}); resend the whole set",
                    s.codes.join(" ")
                ),
            );
            let findings: Vec<&Finding> = if s.findings.is_empty() {
                vec![&summary]
            } else {
                s.findings.iter().collect()
            };
            for f in findings {
                let l = &f.location;
                csv_row(
                    &mut out,
                    &[
                        "x12".into(),
                        s.file.clone(),
                        o(&s.sender),
                        String::new(),
                        String::new(),
                        s.isa13.clone(),
                        s.gs06.clone(),
                        s.st02.clone(),
                        l.segment_position
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        text_or_empty(&l.segment_id),
                        l.element.map(|p| p.to_string()).unwrap_or_default(),
                        String::new(),
                        text_or_empty(&l.member),
                        String::new(),
                        String::new(),
                        String::new(),
                        f.id.to_string(),
                        f.snip.to_string(),
                        severity(f.severity).into(),
                        "set rejected".into(),
                        String::new(),
                        f.message.clone(),
                        shown_value(f, opts),
                        "Correct the set and resend it whole: none of its members was applied."
                            .into(),
                        String::new(),
                    ],
                );
            }
        }
        out
    }

    /// One entry of the page's data (as a value: the tests' reference for [`EntryData`]).
    #[cfg(test)]
    fn entry_json(e: &Entry, opts: ReportOptions) -> serde_json::Value {
        let finding = |f: &Finding| {
            let info = rule_info(f.id);
            serde_json::json!({
                "rule": f.id,
                "level": f.snip,
                "severity": severity(f.severity),
                "message": f.message,
                "value": shown_value(f, opts),
                "position": f.location.segment_position,
                "segment": f.location.segment_id,
                "element": f.location.element.map(|e| e.element),
                "title": info.map(|i| i.title),
                "why": info.map(|i| i.why),
                "fix": info.map(|i| i.fix),
            })
        };
        let segs: Vec<RawSegment> = if opts.unmask {
            e.segments.clone()
        } else {
            e.segments.iter().map(masked_segment).collect()
        };
        serde_json::json!({
            "file": e.file,
            "sender": e.sender.clone().unwrap_or_default(),
            "group": e.group_id.clone().unwrap_or_default(),
            "division": e.division.clone().unwrap_or_default(),
            "subscriber": e.subscriber_id,
            "member": e.member_id,
            "name": e.member_name,
            "kind": e.change_kind,
            "effective": e.effective_date.map(|d| d.to_string()),
            "disposition": e.disposition(),
            "status": e.status,
            "source": e.source,
            "findings": e.findings.iter().map(finding).collect::<Vec<_>>(),
            "segments": segs,
        })
    }

    /// The data the HTML page renders, masked as asked.
    #[cfg(test)]
    fn json(&self, opts: ReportOptions) -> serde_json::Value {
        let mut v = self.frame(opts);
        v["entries"] = self
            .entries
            .iter()
            .map(|e| Self::entry_json(e, opts))
            .collect();
        v
    }

    /// [`RejectReport::json`], with an empty `entries` list.
    fn frame(&self, opts: ReportOptions) -> serde_json::Value {
        let entries: Vec<serde_json::Value> = Vec::new();
        let sets: Vec<serde_json::Value> = self
            .set_rejects
            .iter()
            .map(|s| {
                serde_json::json!({
                    "file": s.file,
                    "sender": s.sender.clone().unwrap_or_default(),
                    "isa13": s.isa13, "gs06": s.gs06, "st02": s.st02,
                    "codes": s.codes,
                    "members": s.members,
                    "errors": s.error_count,
                    "findings": s.findings.iter().map(|f| serde_json::json!({
                        "rule": f.id,
                        "ack": f.ack.label(),
                        "message": f.message,
                        "position": f.location.segment_position,
                        "segment": f.location.segment_id,
                        "element": f.location.element.map(|e| e.to_string()),
                        "value": shown_value(f, opts),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "as_of": self.as_of.to_string(),
            "masked": !opts.unmask,
            "entries": entries,
            "sets": sets,
        })
    }

    /// The page's one-line summary (shown when scripts are off).
    fn summary_line(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &self.entries {
            *counts.entry(e.disposition()).or_default() += 1;
        }
        format!(
            "{} change(s) with findings: {} rejected, {} held, {} accepted with warnings; {} X12 set reject(s).",
            self.entries.len(),
            counts.get("rejected").unwrap_or(&0),
            counts.get("held").unwrap_or(&0),
            counts.get("accepted").unwrap_or(&0),
            self.set_rejects.len()
        )
    }

    /// The self-contained HTML page.
    pub fn html(&self, opts: ReportOptions) -> String {
        let mut out = Vec::new();
        self.write_html(opts, &mut out)
            .expect("writing to a Vec does not fail");
        String::from_utf8(out).expect("the page is UTF-8")
    }

    /// Writes the page to `out`, one entry at a time: memory holds one entry's data, not the
    /// whole page's (a night's page carries up to thousands of members with their segments).
    pub fn write_html<W: io::Write>(&self, opts: ReportOptions, mut out: W) -> io::Result<()> {
        use io::Write as _;
        let summary = self.summary_line();
        let (head, tail) = HTML_TEMPLATE
            .split_once("@DATA@")
            .expect("the template has a data slot");
        let fill = |t: &str| {
            t.replace("@AS_OF@", &self.as_of.to_string())
                .replace("@NOSCRIPT@", &summary)
        };
        let body = if self.not_shown > 0 {
            format!(
                "<body><p style=\"background:#fff3cd;padding:.5em\">This page shows the first {} changes with findings; {} more are listed in the CSV beside it.</p>",
                self.entries.len(),
                self.not_shown
            )
        } else {
            "<body>".to_string()
        };
        // The data cannot hold "<body>" (every '<' is escaped), so the first one is the
        // template's, before the data slot.
        out.write_all(fill(head).replacen("<body>", &body, 1).as_bytes())?;
        // The data: the whole value with an empty entries list, the entries spliced in. A
        // key written `"entries":[]` can only be the top-level one: quotes inside strings are
        // escaped, and no other object has such a key.
        let frame = self.frame(opts).to_string();
        let (before, after) = frame
            .split_once("\"entries\":[]")
            .expect("the data has an entries list");
        let mut data = ScriptSafe(&mut out);
        data.write_all(before.as_bytes())?;
        data.write_all(b"\"entries\":[")?;
        // Each entry written into one buffer, kept from entry to entry, and escaped whole.
        let mut buf = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            buf.clear();
            if i > 0 {
                buf.push(b',');
            }
            EntryData::new(e, opts).json(&mut buf);
            data.write_all(&buf)?;
        }
        data.write_all(b"]")?;
        data.write_all(after.as_bytes())?;
        out.write_all(fill(tail).as_bytes())
    }

    /// The page as it was built before [`RejectReport::write_html`] streamed it: the whole
    /// data as one JSON value (tests check that both give the same bytes).
    #[cfg(test)]
    fn html_reference(&self, opts: ReportOptions) -> String {
        let data = self.json(opts).to_string();
        // Safe inside <script>: no "</" can close the element, no "<!--" can open a comment.
        let data = data
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026");
        let summary = self.summary_line();
        HTML_TEMPLATE
            .replace("@AS_OF@", &self.as_of.to_string())
            .replace(
                "@NOSCRIPT@",
                &summary,
            )
            .replace("@DATA@", &data)
            .replacen(
                "<body>",
                &if self.not_shown > 0 {
                    format!(
                        "<body><p style=\"background:#fff3cd;padding:.5em\">This page shows the first {} changes with findings; {} more are listed in the CSV beside it.</p>",
                        self.entries.len(),
                        self.not_shown
                    )
                } else {
                    "<body>".to_string()
                },
                1,
            )
    }

    /// Writes `reject.csv` and `reject.html` into `dir` (created if missing), atomically, with
    /// mode 0600: the report names members.
    pub fn write(&self, dir: &Path, opts: ReportOptions) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        crate::fsio::write_atomic(&dir.join("reject.csv"), &self.csv(opts), true)?;
        crate::fsio::write_atomic(&dir.join("reject.html"), self.html(opts).as_bytes(), true)
    }
}

const HTML_TEMPLATE: &str = include_str!("report.html");

/// One entry of the page's data, borrowed, written as serde_json writes
/// [`RejectReport::entry_json`]'s value: its fields in the order of the value's keys (serde_json
/// sorts an object's keys), so the bytes are the same without building the value.
///
/// Why written by hand ([`crate::changejson`]'s writer, serde_json's bytes): serde_json's
/// serializer cost twice as much for the page's entries, 52 M instructions of the 10 MB
/// run's 6,146 M (docs/performance.md, runperf21).
struct EntryData<'a> {
    disposition: &'static str,
    division: &'a str,
    effective: Option<String>,
    file: &'a str,
    findings: Vec<FindingData<'a>>,
    group: &'a str,
    kind: &'static str,
    member: &'a str,
    name: Option<&'a str>,
    segments: Vec<SegmentData<'a>>,
    sender: &'a str,
    source: &'a str,
    status: &'static str,
    subscriber: &'a str,
}

/// One finding of an [`EntryData`] (keys in sorted order, as there).
struct FindingData<'a> {
    element: Option<u8>,
    fix: Option<&'static str>,
    level: u8,
    message: &'a str,
    position: Option<u32>,
    rule: &'static str,
    segment: Option<&'a str>,
    severity: &'static str,
    title: Option<&'static str>,
    value: std::borrow::Cow<'a, str>,
    why: Option<&'static str>,
}

/// One segment of an [`EntryData`], masked unless asked (keys in sorted order, as there).
struct SegmentData<'a> {
    elements: std::borrow::Cow<'a, [String]>,
    id: &'a str,
    line: u64,
    position: u32,
}

impl<'a> EntryData<'a> {
    fn new(e: &'a Entry, opts: ReportOptions) -> Self {
        let finding = |f: &'a Finding| {
            let info = rule_info(f.id);
            FindingData {
                element: f.location.element.map(|e| e.element),
                fix: info.map(|i| i.fix),
                level: f.snip,
                message: &f.message,
                position: f.location.segment_position,
                rule: f.id,
                segment: f.location.segment_id.as_deref(),
                severity: severity(f.severity),
                title: info.map(|i| i.title),
                value: shown_value_ref(f, opts),
                why: info.map(|i| i.why),
            }
        };
        let segment = |s: &'a RawSegment| SegmentData {
            elements: if opts.unmask || !masks(s) {
                std::borrow::Cow::Borrowed(&s.elements)
            } else {
                std::borrow::Cow::Owned(masked_segment(s).elements)
            },
            id: &s.id,
            line: s.line,
            position: s.position,
        };
        EntryData {
            disposition: e.disposition(),
            division: e.division.as_deref().unwrap_or(""),
            effective: e.effective_date.map(|d| d.to_string()),
            file: &e.file,
            findings: e.findings.iter().map(finding).collect(),
            group: e.group_id.as_deref().unwrap_or(""),
            kind: e.change_kind,
            member: &e.member_id,
            name: e.member_name.as_deref(),
            segments: e.segments.iter().map(segment).collect(),
            sender: e.sender.as_deref().unwrap_or(""),
            source: &e.source,
            status: e.status,
            subscriber: &e.subscriber_id,
        }
    }
}

impl Json for EntryData<'_> {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.field(json_key!("disposition"), self.disposition);
        o.field(json_key!("division"), self.division);
        o.field(json_key!("effective"), &self.effective);
        o.field(json_key!("file"), self.file);
        o.field(json_key!("findings"), &self.findings);
        o.field(json_key!("group"), self.group);
        o.field(json_key!("kind"), self.kind);
        o.field(json_key!("member"), self.member);
        o.field(json_key!("name"), &self.name);
        o.field(json_key!("segments"), &self.segments);
        o.field(json_key!("sender"), self.sender);
        o.field(json_key!("source"), self.source);
        o.field(json_key!("status"), self.status);
        o.field(json_key!("subscriber"), self.subscriber);
        o.end();
    }
}

impl Json for FindingData<'_> {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.field(json_key!("element"), &self.element);
        o.field(json_key!("fix"), &self.fix);
        o.field(json_key!("level"), &self.level);
        o.field(json_key!("message"), self.message);
        o.field(json_key!("position"), &self.position);
        o.field(json_key!("rule"), self.rule);
        o.field(json_key!("segment"), &self.segment);
        o.field(json_key!("severity"), self.severity);
        o.field(json_key!("title"), &self.title);
        o.field(json_key!("value"), &*self.value);
        o.field(json_key!("why"), &self.why);
        o.end();
    }
}

impl Json for SegmentData<'_> {
    fn json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        o.field(json_key!("elements"), &*self.elements);
        o.field(json_key!("id"), self.id);
        o.field(json_key!("line"), &self.line);
        o.field(json_key!("position"), &self.position);
        o.end();
    }
}

/// Escapes what would be unsafe inside `<script>`: no "</" can close the element, no "<!--"
/// can open a comment. JSON stays the same value (`\u003c` is `<` to a JSON parser).
struct ScriptSafe<W>(W);

impl<W: io::Write> io::Write for ScriptSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut rest = buf;
        while let Some(i) = memchr::memchr3(b'<', b'>', b'&', rest) {
            self.0.write_all(&rest[..i])?;
            self.0.write_all(match rest[i] {
                b'<' => b"\\u003c",
                b'>' => b"\\u003e",
                _ => b"\\u0026",
            })?;
            rest = &rest[i + 1..];
        }
        self.0.write_all(rest)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Ack;

    /// The cell as the rows were written before the digit writers: `Display`, then the
    /// quoting writer with its formula guard.
    fn displayed_cell(v: Option<impl std::fmt::Display>) -> Vec<u8> {
        let mut out = vec![b','];
        let s = v.map(|v| v.to_string()).unwrap_or_default();
        crate::csvrow::field(&mut out, &s, crate::csvrow::Formulas::Neutralize);
        out
    }

    #[test]
    fn number_element_and_date_cells_match_display_through_the_quoting_writer() {
        let mut numbers: Vec<u64> = vec![0, 1, 9, 10, 99, 100, u64::MAX, u64::MAX - 1];
        for p in 0..20 {
            let t = 10u64.pow(p);
            numbers.extend([t - 1, t, t + 1, t.wrapping_mul(7) / 3]);
        }
        numbers.extend((0..2000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (i % 64)));
        for v in numbers.iter().copied().map(Some).chain([None]) {
            let mut out = Vec::new();
            number_cell(&mut out, v);
            assert_eq!(out, displayed_cell(v), "{v:?}");
        }
        let small = [0u8, 1, 9, 10, 99, 100, 255];
        let reps = [
            None,
            Some(0u16),
            Some(1),
            Some(10),
            Some(999),
            Some(u16::MAX),
        ];
        let comps = [None, Some(0u8), Some(1), Some(12), Some(255)];
        let mut positions = vec![None];
        for element in small {
            for component in comps {
                for repetition in reps {
                    positions.push(Some(crate::finding::ElementPos {
                        element,
                        component,
                        repetition,
                    }));
                }
            }
        }
        for p in positions {
            let mut out = Vec::new();
            element_cell(&mut out, p);
            assert_eq!(out, displayed_cell(p), "{p:?}");
        }
        let mut dates = vec![None, Some(NaiveDate::MIN), Some(NaiveDate::MAX)];
        for y in [
            -100_000, -10_000, -9999, -1, 0, 1, 9, 99, 999, 1000, 2025, 9999, 10_000, 200_000,
        ] {
            for (m, d) in [(1, 1), (2, 28), (9, 30), (10, 9), (12, 31)] {
                dates.push(NaiveDate::from_ymd_opt(y, m, d));
            }
        }
        let mut num = String::new();
        for d in dates {
            let mut out = Vec::new();
            date_cell(&mut out, &mut num, d);
            assert_eq!(out, displayed_cell(d), "{d:?}");
        }
    }

    fn entry(i: usize, rejected: bool, status: &'static str) -> Entry {
        let mut f = Finding::new(
            "BR-PLAN-OFFERED",
            7,
            Ack::Set("5"),
            format!("plan <b>&amp; \"{i}\"</b> is not offered </script><!--"),
        )
        .with_value(format!("HLT <GOLD> & {i}").as_bytes(), true);
        f.location.segment_position = Some(7);
        f.location.segment_id = Some("HD".into());
        Entry {
            file: format!("f<{i}>.x12"),
            sender: Some("ACME&CO".into()),
            group_id: Some("G1".into()),
            division: None,
            subscriber_id: format!("S{i}"),
            member_id: format!("M{i}"),
            member_name: Some("O'Brien <Jr> & ÉLODIE".into()),
            change_kind: "add_subscriber",
            change_id: "ab".repeat(32),
            effective_date: NaiveDate::from_ymd_opt(2025, 1, 1),
            rejected,
            status,
            source: "1/1/0001 segments 3-9".into(),
            row: None,
            findings: vec![f.clone(), f],
            segments: vec![RawSegment {
                position: 3,
                line: 3,
                id: "DMG".into(),
                elements: vec!["D8".into(), "19800101".into(), "F".into(), "<&>".into()],
            }],
        }
    }

    /// The streamed page is byte for byte the page built from the whole data value, with
    /// entries, set rejects, the not-shown banner and characters that must be escaped.
    #[test]
    fn streamed_html_equals_the_whole_value_page() {
        let mut r = RejectReport::new(NaiveDate::from_ymd_opt(2025, 1, 11).unwrap());
        let empty = r.clone();
        r.entries = (0..5)
            .map(|i| entry(i, i % 2 == 0, if i == 3 { "Pending" } else { "Incomplete" }))
            .collect();
        r.add_set_reject(SetReject {
            file: "x<&>.x12".into(),
            sender: None,
            isa13: "1".into(),
            gs06: "2".into(),
            st02: "0003".into(),
            codes: vec!["set: IK5 R 5".into(), "\"entries\":[]".into()],
            members: 2,
            error_count: 1,
            findings: Vec::new(),
        });
        let mut shown = r.clone();
        shown.not_shown = 17;
        for rep in [&empty, &r, &shown] {
            for unmask in [false, true] {
                let opts = ReportOptions { unmask };
                assert_eq!(rep.html(opts), rep.html_reference(opts));
            }
        }
    }
}
