//! The discrepancy report of full files: after a full file (BGN08 `4`/`RX`) is compared with a
//! group's enrollment ([`crate::fullfile`]), what differs, per group: members on the file but not
//! in our enrollment, members in our enrollment but not on the file, and field-level differences
//! (name, birth date, gender, address, plan, coverage level, division, PCP), with counts.
//!
//! The run hands it each derived change as it streams a full file, and writes the CSV and HTML
//! it renders. Member data is masked unless asked otherwise, like the reject report. Memory is
//! bounded whatever the group's size: the CSV rows are rendered as entries arrive and spill to
//! an anonymous temporary file past a megabyte ([`crate::fsio::Spill`]); the page shows the
//! first [`MAX_SHOWN`] entries of each list with the counts of all, as the reject page does.

use crate::changes::{ChangeKind, ChangeRecord};
use crate::enrollment::{Coverage, MemberData};
use crate::finding::mask;
use crate::fsio::Spill;
use crate::fullfile::Comparison;
use std::io::{self, Write};

/// Entries of each list the page shows per group (the CSV has them all).
pub const MAX_SHOWN: usize = 1_000;

/// What one full file showed for one group.
#[derive(Debug, Default)]
pub struct GroupDiscrepancy {
    pub file: String,
    pub group_id: String,
    /// Active members we held before the file.
    pub enrolled: usize,
    /// Names, birth dates and addresses in clear (fixed before the first entry: the CSV rows
    /// are rendered as entries arrive).
    unmask: bool,
    /// On the file, not (actively) enrolled with us: (member id, subscriber id); the first
    /// [`MAX_SHOWN`].
    pub not_enrolled: Vec<(String, String)>,
    /// Enrolled with us, missing from the file, and what happened to them
    /// (`terminated`, `reported`); the first [`MAX_SHOWN`].
    pub not_on_file: Vec<(String, &'static str)>,
    /// Field-level differences of members on both sides; the first [`MAX_SHOWN`].
    pub differences: Vec<FieldDifference>,
    /// How many entries each list has in all: not enrolled, not on file, differences.
    pub counts: [usize; 3],
    /// Each list's CSV rows, in order.
    rows: [Spill; 3],
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldDifference {
    pub member_id: String,
    pub field: &'static str,
    pub ours: String,
    pub file: String,
}

impl GroupDiscrepancy {
    /// Builds the report section of one comparison.
    pub fn from_comparison(
        file: &str,
        group_id: &str,
        cmp: &Comparison,
    ) -> io::Result<GroupDiscrepancy> {
        let mut d = GroupDiscrepancy::new(file, group_id, cmp.active_before);
        for r in &cmp.changes {
            d.change(r)?;
        }
        d.reported(&cmp.omitted_reported)?;
        Ok(d)
    }

    /// An empty section for a group that had `enrolled` active members before the file; the
    /// comparison's changes and reported omissions are added one by one, as they are derived
    /// (the run streams a full file rather than holding it).
    pub fn new(file: &str, group_id: &str, enrolled: usize) -> GroupDiscrepancy {
        GroupDiscrepancy {
            file: file.to_string(),
            group_id: group_id.to_string(),
            enrolled,
            ..Default::default()
        }
    }

    /// Shows names, birth dates and addresses in clear; only before the first entry.
    pub fn unmasked(mut self) -> GroupDiscrepancy {
        debug_assert_eq!(self.counts, [0; 3]);
        self.unmask = true;
        self
    }

    /// Adds one change the comparison gave.
    pub fn change(&mut self, r: &ChangeRecord) -> io::Result<()> {
        match r.kind {
            ChangeKind::AddSubscriber | ChangeKind::AddDependent => {
                self.not_enrolled_member(&r.member_id, &r.subscriber_id)
            }
            ChangeKind::MemberChange => match &r.old {
                Some(old) => field_differences(&r.member_id, old, &r.new)
                    .into_iter()
                    .try_for_each(|d| self.difference(d)),
                None => Ok(()),
            },
            ChangeKind::TerminateMember if is_implied(r) => {
                self.not_on_file_member(&r.member_id, "terminated")
            }
            _ => Ok(()),
        }
    }

    /// Adds the omitted members the policy only reports.
    pub fn reported(&mut self, members: &[String]) -> io::Result<()> {
        members
            .iter()
            .try_for_each(|m| self.not_on_file_member(m, "reported"))
    }

    fn not_enrolled_member(&mut self, member: &str, subscriber: &str) -> io::Result<()> {
        self.row(0, &["on_file_not_enrolled", member, subscriber, "", "", ""])?;
        if self.not_enrolled.len() < MAX_SHOWN {
            self.not_enrolled
                .push((member.to_string(), subscriber.to_string()));
        }
        Ok(())
    }

    fn not_on_file_member(&mut self, member: &str, what: &'static str) -> io::Result<()> {
        self.row(1, &["enrolled_not_on_file", member, "", what, "", ""])?;
        if self.not_on_file.len() < MAX_SHOWN {
            self.not_on_file.push((member.to_string(), what));
        }
        Ok(())
    }

    /// Adds one field-level difference.
    pub fn difference(&mut self, d: FieldDifference) -> io::Result<()> {
        let ours = shown(d.field, &d.ours, self.unmask);
        let file = shown(d.field, &d.file, self.unmask);
        self.row(
            2,
            &["field_difference", &d.member_id, "", d.field, &ours, &file],
        )?;
        if self.differences.len() < MAX_SHOWN {
            self.differences.push(d);
        }
        Ok(())
    }

    /// One CSV row of list `list` (the columns after file and group).
    fn row(&mut self, list: usize, cols: &[&str]) -> io::Result<()> {
        let mut line = Vec::with_capacity(128);
        let all: Vec<&str> = [self.file.as_str(), self.group_id.as_str()]
            .into_iter()
            .chain(cols.iter().copied())
            .collect();
        crate::csvrow::write(&mut line, &all, crate::csvrow::Formulas::Keep);
        self.rows[list].write_all(&line)?;
        self.counts[list] += 1;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.counts == [0; 3]
    }
}

/// Implied terminations carry the file's trace without a segment range.
fn is_implied(r: &ChangeRecord) -> bool {
    matches!(
        r.source,
        crate::changes::SourceTrace::X12 {
            first_segment: 0,
            ..
        }
    )
}

fn name(d: &MemberData) -> String {
    d.name
        .as_ref()
        .map(|n| {
            let mut s = n.last.clone();
            if let Some(f) = &n.first {
                s.push_str(", ");
                s.push_str(f);
            }
            if let Some(m) = &n.middle {
                s.push(' ');
                s.push_str(m);
            }
            s
        })
        .unwrap_or_default()
}

fn address(d: &MemberData) -> String {
    d.residence
        .as_ref()
        .map(|a| {
            let mut s = a.line1.clone();
            if let Some(l2) = &a.line2 {
                s.push_str(", ");
                s.push_str(l2);
            }
            format!(
                "{s}, {} {} {}",
                a.city,
                a.state.clone().unwrap_or_default(),
                a.postal_code.clone().unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

fn coverages(d: &MemberData, f: impl Fn(&Coverage) -> Option<String>) -> String {
    let mut v: Vec<String> = d
        .coverages
        .iter()
        .filter_map(|c| f(c).map(|x| format!("{}: {x}", c.insurance_line.code())))
        .collect();
    v.sort();
    v.join("; ")
}

/// The fields the report compares, each as text.
fn fields(d: &MemberData) -> [(&'static str, String); 8] {
    [
        ("name", name(d)),
        (
            "birth_date",
            d.demographics
                .as_ref()
                .and_then(|x| x.birth_date)
                .map(|b| b.to_string())
                .unwrap_or_default(),
        ),
        (
            "gender",
            d.demographics
                .as_ref()
                .and_then(|x| x.gender)
                .map(|g| g.label().to_string())
                .unwrap_or_default(),
        ),
        ("address", address(d)),
        ("plan", coverages(d, |c| c.plan.clone())),
        (
            "coverage_level",
            coverages(d, |c| c.coverage_level.map(|l| l.code().to_string())),
        ),
        ("division", d.division.clone().unwrap_or_default()),
        (
            "pcp",
            coverages(d, |c| {
                c.pcp
                    .as_ref()
                    .map(|p| p.npi.clone().unwrap_or_else(|| p.name.last.clone()))
            }),
        ),
    ]
}

/// The compared fields that differ between our enrollment (`ours`) and the file.
pub fn field_differences(
    member_id: &str,
    ours: &MemberData,
    file: &MemberData,
) -> Vec<FieldDifference> {
    fields(ours)
        .into_iter()
        .zip(fields(file))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((field, a), (_, b))| FieldDifference {
            member_id: member_id.to_string(),
            field,
            ours: a,
            file: b,
        })
        .collect()
}

/// Fields whose values are shown masked unless `unmask` (names, birth dates, addresses).
fn shown(field: &str, v: &str, unmask: bool) -> String {
    if unmask || !matches!(field, "name" | "birth_date" | "address") {
        v.to_string()
    } else {
        mask(v)
    }
}

/// One CSV for the run: `file,group_id,kind,member_id,subscriber_id,field,ours,on_file`, every
/// entry of every group (masked as each group was built).
pub fn write_csv(sections: &mut [GroupDiscrepancy], out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"file,group_id,kind,member_id,subscriber_id,field,ours,on_file\r\n")?;
    for s in sections {
        for rows in &mut s.rows {
            rows.copy_to(out)?;
        }
    }
    Ok(())
}

/// [`write_csv`] into memory (small reports, tests).
pub fn csv(sections: &mut [GroupDiscrepancy]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    write_csv(sections, &mut out)?;
    Ok(out)
}

fn esc(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained HTML page (no scripts or fetches needed to read it).
pub fn html(sections: &[GroupDiscrepancy], as_of: &str) -> String {
    let unmask = sections.iter().any(|s| s.unmask);
    let mut b = String::new();
    b.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>eligo full-file discrepancies</title><style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}.n{text-align:right}h2{margin-top:2em}.muted{color:#777}</style></head><body>");
    b.push_str(&format!(
        "<h1>Full-file discrepancies</h1><p class=\"muted\">As of {}. Names, birth dates and addresses are masked{}.</p>",
        esc(as_of),
        if unmask { " (unmasked on request)" } else { "" }
    ));
    b.push_str("<table id=\"counts\"><tr><th>File</th><th>Group</th><th class=n>Enrolled before</th><th class=n>On file, not enrolled</th><th class=n>Enrolled, not on file</th><th class=n>Field differences</th></tr>");
    for s in sections {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(&s.file),
            esc(&s.group_id),
            s.enrolled,
            s.counts[0],
            s.counts[1],
            s.counts[2]
        ));
    }
    b.push_str("</table>");
    for s in sections {
        b.push_str(&format!("<h2>{} — {}</h2>", esc(&s.group_id), esc(&s.file)));
        if s.is_empty() {
            b.push_str("<p>The file matches our enrollment.</p>");
            continue;
        }
        if !s.not_enrolled.is_empty() {
            b.push_str("<h3>On the file, not in our enrollment</h3><table><tr><th>Member</th><th>Subscriber</th></tr>");
            for (m, sub) in &s.not_enrolled {
                b.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td></tr>",
                    esc(m),
                    esc(sub)
                ));
            }
            b.push_str("</table>");
            more(&mut b, s.counts[0], s.not_enrolled.len());
        }
        if !s.not_on_file.is_empty() {
            b.push_str("<h3>In our enrollment, not on the file</h3><table><tr><th>Member</th><th>Outcome (group policy)</th></tr>");
            for (m, what) in &s.not_on_file {
                b.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(m), what));
            }
            b.push_str("</table>");
            more(&mut b, s.counts[1], s.not_on_file.len());
        }
        if !s.differences.is_empty() {
            b.push_str("<h3>Field differences</h3><table class=\"diffs\"><tr><th>Member</th><th>Field</th><th>Ours</th><th>On the file</th></tr>");
            for d in &s.differences {
                b.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&d.member_id),
                    d.field,
                    esc(&shown(d.field, &d.ours, s.unmask)),
                    esc(&shown(d.field, &d.file, s.unmask))
                ));
            }
            b.push_str("</table>");
            more(&mut b, s.counts[2], s.differences.len());
        }
    }
    b.push_str("</body></html>\n");
    b
}

/// The note under a list the page cut short.
fn more(b: &mut String, all: usize, shown: usize) {
    if all > shown {
        b.push_str(&format!(
            "<p class=\"muted\">… and {} more: the CSV lists all {all}.</p>",
            all - shown
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::{Demographics, PersonName};

    fn person(last: &str, born: &str) -> MemberData {
        MemberData {
            name: Some(PersonName {
                last: last.into(),
                first: Some("ANN".into()),
                middle: None,
                prefix: None,
                suffix: None,
            }),
            demographics: Some(Demographics {
                birth_date: Some(born.parse().unwrap()),
                gender: None,
                marital_status: None,
            }),
            ..MemberData::default()
        }
    }

    #[test]
    fn only_differing_fields_are_listed() {
        let d = field_differences(
            "9001",
            &person("SMITH", "1980-01-01"),
            &person("SMYTHE", "1980-01-01"),
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].field, "name");
        assert_eq!(d[0].ours, "SMITH, ANN");
        assert_eq!(d[0].file, "SMYTHE, ANN");
    }

    #[test]
    fn member_data_is_masked_unless_asked() {
        let diffs = || {
            field_differences(
                "9001",
                &person("SMITH", "1980-01-01"),
                &person("SMITH", "1981-02-03"),
            )
        };
        let mut masked = GroupDiscrepancy::new("f.x12", "G", 1);
        let mut open = GroupDiscrepancy::new("f.x12", "G", 1).unmasked();
        for d in diffs() {
            masked.difference(d.clone()).unwrap();
            open.difference(d).unwrap();
        }
        let m = String::from_utf8(csv(std::slice::from_mut(&mut masked)).unwrap()).unwrap();
        assert!(m.contains("birth_date,9999-99-99,9999-99-99"), "{m}");
        assert!(!m.contains("1981"));
        assert!(!html(&[masked], "2025-01-11").contains("1981"));
        let o = String::from_utf8(csv(std::slice::from_mut(&mut open)).unwrap()).unwrap();
        assert!(o.contains("birth_date,1980-01-01,1981-02-03"), "{o}");
        assert!(html(&[open], "2025-01-11").contains("1981-02-03"));
    }

    #[test]
    fn a_large_group_is_listed_whole_in_the_csv_and_cut_short_on_the_page() {
        let n = MAX_SHOWN + 250;
        let mut d = GroupDiscrepancy::new("f.x12", "G", 0);
        for i in 0..n {
            d.not_enrolled_member(&format!("M{i:06}"), "S").unwrap();
        }
        d.reported(&["GONE".to_string()]).unwrap();
        assert_eq!(d.counts, [n, 1, 0]);
        assert_eq!(d.not_enrolled.len(), MAX_SHOWN);
        let mut sections = [d];
        let csv = String::from_utf8(csv(&mut sections).unwrap()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + n + 1);
        assert_eq!(lines[1], "f.x12,G,on_file_not_enrolled,M000000,S,,,");
        assert_eq!(
            lines[n],
            format!("f.x12,G,on_file_not_enrolled,M{:06},S,,,", n - 1)
        );
        assert_eq!(
            lines[n + 1],
            "f.x12,G,enrolled_not_on_file,GONE,,reported,,"
        );
        let page = html(&sections, "2025-01-11");
        assert!(page.contains(&format!("<td class=n>{n}</td>")), "{page}");
        assert!(page.contains("… and 250 more: the CSV lists all 1250."));
        assert!(page.contains("M000999") && !page.contains("M001000"));
    }
}
