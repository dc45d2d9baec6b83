//! Printers for `eligo check`: one line per finding for people, JSON Lines for programs, and a
//! per-file summary. They are observers like the 999 writer; the human printer masks member data.

use crate::check::{GroupResult, InterchangeInfo, Observer, SetResult, Ta1Result};
use crate::finding::{Ack, Finding, Severity};
use serde::Serialize;
use std::io::Write;

/// Counts a file's outcome; also decides the exit status.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FileSummary {
    pub interchanges: u32,
    pub interchanges_rejected: u32,
    pub groups: u32,
    pub groups_rejected: u32,
    pub sets: u32,
    pub sets_accepted: u32,
    pub sets_accepted_with_errors: u32,
    pub sets_rejected: u32,
    pub members: u64,
    pub errors: u64,
    pub warnings: u64,
    /// A problem outside any set or interchange (empty file, not X12).
    pub unreadable: bool,
}

impl FileSummary {
    /// True when every set was accepted without errors and nothing was unreadable.
    pub fn clean(&self) -> bool {
        !self.unreadable
            && self.interchanges_rejected == 0
            && self.groups_rejected == 0
            && self.sets_rejected == 0
            && self.sets_accepted_with_errors == 0
            && self.errors == 0
            && self.interchanges > 0
    }

    fn count(&mut self, f: &Finding) {
        match f.severity {
            Severity::Error => self.errors += 1,
            Severity::Warning => self.warnings += 1,
        }
        if f.location.isa13.is_none() && f.severity == Severity::Error {
            self.unreadable = true;
        }
    }
}

impl Observer for FileSummary {
    fn wants_records(&self) -> bool {
        false
    }
    fn finding(&mut self, f: Finding) {
        self.count(&f);
    }
    fn interchange_end(&mut self, _i: &InterchangeInfo, ta1: Ta1Result, _g: u32) {
        self.interchanges += 1;
        if ta1.code == 'R' {
            self.interchanges_rejected += 1;
        }
    }
    fn group_end(&mut self, r: &GroupResult) {
        self.groups += 1;
        if r.code == 'R' {
            self.groups_rejected += 1;
        }
    }
    fn set_end(&mut self, r: &SetResult) {
        self.sets += 1;
        self.members += r.members;
        match r.code {
            'A' => self.sets_accepted += 1,
            'E' => self.sets_accepted_with_errors += 1,
            _ => self.sets_rejected += 1,
        }
    }
}

/// Renders one finding as `file:line: SEG at POS, loop L, ELEM: message [IK403 7]`.
pub fn human_line(file: &str, f: &Finding) -> String {
    let l = &f.location;
    let mut s = format!("{file}:{}: ", l.line);
    let mut parts = Vec::new();
    if let Some(seg) = &l.segment_id {
        match l.segment_position {
            Some(p) => parts.push(format!("{seg} at {p}")),
            None => parts.push(seg.to_string()),
        }
    }
    if let Some(lp) = &l.loop_id {
        parts.push(format!("loop {lp}"));
    }
    if let (Some(e), Some(seg)) = (&l.element, &l.segment_id) {
        parts.push(format!(
            "{seg}{:02}{}",
            e.element,
            match (e.component, e.repetition) {
                (Some(c), Some(r)) => format!("-{c} (repeat {r})"),
                (Some(c), None) => format!("-{c}"),
                (None, Some(r)) => format!(" (repeat {r})"),
                _ => String::new(),
            }
        ));
    }
    if !parts.is_empty() {
        s.push_str(&parts.join(", "));
        s.push_str(": ");
    }
    if f.severity == Severity::Warning {
        s.push_str("warning: ");
    }
    s.push_str(&f.message);
    if let Some(v) = f.display_value() {
        if !f.message.contains(&format!("{v:?}")) {
            s.push_str(&format!(" (value {v:?})"));
        }
    }
    let ctl = [
        l.isa13.as_ref().map(|v| format!("ISA13 {v}")),
        l.gs06.as_ref().map(|v| format!("GS06 {v}")),
        l.st02.as_ref().map(|v| format!("ST02 {v}")),
    ];
    let ctl: Vec<String> = ctl.into_iter().flatten().collect();
    let code = match f.ack {
        Ack::Report => String::new(),
        a => a.label(),
    };
    s.push_str(&format!(
        " [{}{}{}] ({})",
        f.id,
        if code.is_empty() { "" } else { " " },
        code,
        ctl.join(" ")
    ));
    if ctl.is_empty() {
        s.truncate(s.len() - 3);
    }
    s
}

/// Prints findings for people as they arrive.
pub struct HumanPrinter<'a, W> {
    pub out: W,
    pub file: &'a str,
    pub summary: FileSummary,
}

impl<W: Write> Observer for HumanPrinter<'_, W> {
    fn wants_records(&self) -> bool {
        false
    }
    fn finding(&mut self, f: Finding) {
        let _ = writeln!(self.out, "{}", human_line(self.file, &f));
        self.summary.finding(f);
    }
    fn interchange_end(&mut self, i: &InterchangeInfo, ta1: Ta1Result, g: u32) {
        self.summary.interchange_end(i, ta1, g);
    }
    fn group_end(&mut self, r: &GroupResult) {
        self.summary.group_end(r);
    }
    fn set_end(&mut self, r: &SetResult) {
        self.summary.set_end(r);
    }
}

/// Writes the per-file summary line.
pub fn human_summary(file: &str, s: &FileSummary) -> String {
    let verdict = if s.clean() {
        "OK"
    } else if s.unreadable
        || s.interchanges_rejected > 0
        || s.groups_rejected > 0
        || s.sets_rejected > 0
    {
        "REJECTED"
    } else {
        "ACCEPTED WITH ERRORS"
    };
    format!(
        "{file}: {verdict}: {} interchange(s) ({} rejected), {} group(s) ({} rejected), {} set(s): {} accepted, {} accepted with errors, {} rejected; {} member(s); {} error(s), {} warning(s)",
        s.interchanges,
        s.interchanges_rejected,
        s.groups,
        s.groups_rejected,
        s.sets,
        s.sets_accepted,
        s.sets_accepted_with_errors,
        s.sets_rejected,
        s.members,
        s.errors,
        s.warnings
    )
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    r#type: &'static str,
    file: &'a str,
    #[serde(flatten)]
    finding: &'a Finding,
    ack_label: String,
}

/// Writes JSON Lines: one object per finding, set, group and interchange, then a summary.
/// Values flagged as PHI are masked.
pub struct JsonPrinter<'a, W> {
    pub out: W,
    pub file: &'a str,
    pub summary: FileSummary,
}

impl<W: Write> JsonPrinter<'_, W> {
    fn line<T: Serialize>(&mut self, v: &T) {
        if let Ok(s) = serde_json::to_string(v) {
            let _ = writeln!(self.out, "{s}");
        }
    }
}

impl<W: Write> Observer for JsonPrinter<'_, W> {
    fn wants_records(&self) -> bool {
        false
    }
    fn finding(&mut self, mut f: Finding) {
        f.value = f.display_value();
        // The member's subscriber id is member data whatever the finding.
        f.location.member = f
            .location
            .member
            .as_deref()
            .map(|m| crate::finding::mask(m).into());
        let j = JsonFinding {
            r#type: "finding",
            file: self.file,
            ack_label: f.ack.label(),
            finding: &f,
        };
        self.line(&j);
        self.summary.finding(f);
    }
    fn interchange_end(&mut self, i: &InterchangeInfo, ta1: Ta1Result, g: u32) {
        #[derive(Serialize)]
        struct J<'a> {
            r#type: &'static str,
            file: &'a str,
            isa13: &'a str,
            sender: &'a str,
            receiver: &'a str,
            ta1: Ta1Result,
            groups: u32,
        }
        let j = J {
            r#type: "interchange",
            file: self.file,
            isa13: &i.isa13,
            sender: &i.sender_id,
            receiver: &i.receiver_id,
            ta1,
            groups: g,
        };
        self.line(&j);
        self.summary.interchange_end(i, ta1, g);
    }
    fn group_end(&mut self, r: &GroupResult) {
        #[derive(Serialize)]
        struct J<'a> {
            r#type: &'static str,
            file: &'a str,
            #[serde(flatten)]
            r: &'a GroupResult,
        }
        let j = J {
            r#type: "group",
            file: self.file,
            r,
        };
        self.line(&j);
        self.summary.group_end(r);
    }
    fn set_end(&mut self, r: &SetResult) {
        #[derive(Serialize)]
        struct J<'a> {
            r#type: &'static str,
            file: &'a str,
            #[serde(flatten)]
            r: &'a SetResult,
        }
        let j = J {
            r#type: "set",
            file: self.file,
            r,
        };
        self.line(&j);
        self.summary.set_end(r);
    }
}
