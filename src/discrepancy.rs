//! The discrepancy report of full files: after a full file (BGN08 `4`/`RX`) is compared with a
//! group's enrollment ([`crate::fullfile`]), what differs, per group: members on the file but not
//! in our enrollment, members in our enrollment but not on the file, and field-level differences
//! (name, birth date, gender, address, plan, coverage level, division, PCP), with counts.
//!
//! Pure: the run hands it each comparison and writes the CSV and HTML it renders. Member data is
//! masked unless asked otherwise, like the reject report.

use crate::changes::{ChangeKind, ChangeRecord};
use crate::enrollment::{Coverage, MemberData};
use crate::finding::mask;
use crate::fullfile::Comparison;
use serde::Serialize;

/// What one full file showed for one group.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupDiscrepancy {
    pub file: String,
    pub group_id: String,
    /// Active members we held before the file.
    pub enrolled: usize,
    /// On the file, not (actively) enrolled with us: (member id, subscriber id).
    pub not_enrolled: Vec<(String, String)>,
    /// Enrolled with us, missing from the file, and what happened to them
    /// (`terminated`, `reported`).
    pub not_on_file: Vec<(String, &'static str)>,
    /// Field-level differences of members on both sides.
    pub differences: Vec<FieldDifference>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDifference {
    pub member_id: String,
    pub field: &'static str,
    pub ours: String,
    pub file: String,
}

impl GroupDiscrepancy {
    /// Builds the report section of one comparison.
    pub fn from_comparison(file: &str, group_id: &str, cmp: &Comparison) -> GroupDiscrepancy {
        let mut d = GroupDiscrepancy::new(file, group_id, cmp.active_before);
        for r in &cmp.changes {
            d.change(r);
        }
        d.reported(&cmp.omitted_reported);
        d
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

    /// Adds one change the comparison gave.
    pub fn change(&mut self, r: &ChangeRecord) {
        match r.kind {
            ChangeKind::AddSubscriber | ChangeKind::AddDependent => self
                .not_enrolled
                .push((r.member_id.clone(), r.subscriber_id.clone())),
            ChangeKind::MemberChange => {
                if let Some(old) = &r.old {
                    self.differences
                        .extend(field_differences(&r.member_id, old, &r.new));
                }
            }
            ChangeKind::TerminateMember if is_implied(r) => {
                self.not_on_file.push((r.member_id.clone(), "terminated"))
            }
            _ => {}
        }
    }

    /// Adds the omitted members the policy only reports.
    pub fn reported(&mut self, members: &[String]) {
        self.not_on_file
            .extend(members.iter().map(|m| (m.clone(), "reported")));
    }

    pub fn is_empty(&self) -> bool {
        self.not_enrolled.is_empty() && self.not_on_file.is_empty() && self.differences.is_empty()
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

/// One CSV for the run: `file,group_id,kind,member_id,field,ours,file_value`.
pub fn csv(sections: &[GroupDiscrepancy], unmask: bool) -> Vec<u8> {
    let mut out = b"file,group_id,kind,member_id,subscriber_id,field,ours,on_file\r\n".to_vec();
    let mut row =
        |cols: &[&str]| crate::csvrow::write(&mut out, cols, crate::csvrow::Formulas::Keep);
    for s in sections {
        for (m, sub) in &s.not_enrolled {
            row(&[
                &s.file,
                &s.group_id,
                "on_file_not_enrolled",
                m,
                sub,
                "",
                "",
                "",
            ]);
        }
        for (m, what) in &s.not_on_file {
            row(&[
                &s.file,
                &s.group_id,
                "enrolled_not_on_file",
                m,
                "",
                what,
                "",
                "",
            ]);
        }
        for d in &s.differences {
            row(&[
                &s.file,
                &s.group_id,
                "field_difference",
                &d.member_id,
                "",
                d.field,
                &shown(d.field, &d.ours, unmask),
                &shown(d.field, &d.file, unmask),
            ]);
        }
    }
    out
}

fn esc(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained HTML page (no scripts or fetches needed to read it).
pub fn html(sections: &[GroupDiscrepancy], as_of: &str, unmask: bool) -> String {
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
            s.not_enrolled.len(),
            s.not_on_file.len(),
            s.differences.len()
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
        }
        if !s.not_on_file.is_empty() {
            b.push_str("<h3>In our enrollment, not on the file</h3><table><tr><th>Member</th><th>Outcome (group policy)</th></tr>");
            for (m, what) in &s.not_on_file {
                b.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(m), what));
            }
            b.push_str("</table>");
        }
        if !s.differences.is_empty() {
            b.push_str("<h3>Field differences</h3><table class=\"diffs\"><tr><th>Member</th><th>Field</th><th>Ours</th><th>On the file</th></tr>");
            for d in &s.differences {
                b.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&d.member_id),
                    d.field,
                    esc(&shown(d.field, &d.ours, unmask)),
                    esc(&shown(d.field, &d.file, unmask))
                ));
            }
            b.push_str("</table>");
        }
    }
    b.push_str("</body></html>\n");
    b
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
        let s = GroupDiscrepancy {
            file: "f.x12".into(),
            group_id: "G".into(),
            enrolled: 1,
            differences: field_differences(
                "9001",
                &person("SMITH", "1980-01-01"),
                &person("SMITH", "1981-02-03"),
            ),
            ..Default::default()
        };
        let masked = String::from_utf8(csv(std::slice::from_ref(&s), false)).unwrap();
        assert!(
            masked.contains("birth_date,9999-99-99,9999-99-99"),
            "{masked}"
        );
        assert!(!masked.contains("1981"));
        let open = String::from_utf8(csv(&[s], true)).unwrap();
        assert!(open.contains("birth_date,1980-01-01,1981-02-03"), "{open}");
    }
}
