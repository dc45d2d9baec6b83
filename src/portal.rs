//! The employer/broker portal's CSV exports (transaction log and client roster), read into the
//! same enrollment model and change records as the 834.
//!
//! The layouts (column names, types, required columns, code lists) are data:
//! `schemas/portal/transactions.v1.json` and `schemas/portal/roster.v1.json`, embedded here.
//! Reading checks every row against its layout first, then maps it; a bad row (missing column,
//! bad date, unknown code) is reported with file, row (1-based, the header is row 1) and column,
//! and reading goes on. Values are never put in errors: they may be PHI. Rows are read one
//! transaction (or one roster member) at a time, so memory does not grow with the file.
//!
//! Which transactions become changes: every status except `Withdrawn` (the user took it back)
//! and `Incomplete` (not actionable). Pending ones are emitted with their status in the source
//! trace so the loading system can hold them.

use crate::batch::ChangeSink;
use crate::changes::{ChangeKind, ChangeRecord, PortalLayout, SourceTrace, SCHEMA_VERSION};
use crate::enrollment::*;
use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{self, Read};

const TRANSACTIONS_JSON: &str = include_str!("../schemas/portal/transactions.v1.json");
const ROSTER_JSON: &str = include_str!("../schemas/portal/roster.v1.json");

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Text,
    Date,
    Datetime,
    Integer,
    Code,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// The column must be in the header and every row must give a value.
    pub required: bool,
    #[serde(default)]
    pub codes: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// One CSV layout.
#[derive(Debug, Clone, Deserialize)]
pub struct Layout {
    pub layout: String,
    pub version: u32,
    pub description: String,
    /// Consecutive rows with equal values in these columns form one transaction / member.
    pub group_by: Vec<String>,
    pub columns: Vec<Column>,
}

impl Layout {
    pub fn transactions() -> Layout {
        serde_json::from_str(TRANSACTIONS_JSON).unwrap_or_else(|_| Layout::empty())
    }
    pub fn roster() -> Layout {
        serde_json::from_str(ROSTER_JSON).unwrap_or_else(|_| Layout::empty())
    }
    fn empty() -> Layout {
        Layout {
            layout: String::new(),
            version: 0,
            description: String::new(),
            group_by: Vec::new(),
            columns: Vec::new(),
        }
    }
}

/// What is wrong with a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortalErrorKind {
    #[error("required column is missing from the header")]
    MissingColumn,
    #[error("required value is empty")]
    MissingValue,
    #[error("not a date YYYY-MM-DD")]
    BadDate,
    #[error("not a date and time YYYY-MM-DDTHH:MM:SS")]
    BadDateTime,
    #[error("not a whole number")]
    BadNumber,
    #[error("unknown code")]
    UnknownCode,
    #[error("the header matches no portal layout (transactions or roster)")]
    UnknownLayout,
    #[error("unreadable CSV: {0}")]
    Csv(String),
    #[error("rejected with another row of the same transaction")]
    Companion,
}

/// A rejected row: file, row and column, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: row {row}{}: {kind}", column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
pub struct PortalError {
    pub file: String,
    pub row: u64,
    pub column: Option<String>,
    pub kind: PortalErrorKind,
}

/// What reading one export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalSummary {
    pub records: u64,
    /// Transactions not applied because of their status.
    pub skipped: u64,
    pub errors: Vec<PortalError>,
}

/// A checked row: typed values by column name.
#[derive(Debug, Default)]
struct Row {
    number: u64,
    text: HashMap<String, String>,
    dates: HashMap<String, NaiveDate>,
    ints: HashMap<String, u32>,
}

impl Row {
    fn get(&self, c: &str) -> Option<String> {
        self.text.get(c).filter(|v| !v.is_empty()).cloned()
    }
    fn date(&self, c: &str) -> Option<NaiveDate> {
        self.dates.get(c).copied()
    }
    fn code<T>(&self, c: &str, f: fn(&str) -> Option<T>) -> Option<T> {
        self.get(c).and_then(|v| f(&v))
    }
}

/// Parses a code value of a named list; `None` when the value is unknown.
fn code_ok(list: &str, v: &str) -> bool {
    match list {
        "transaction_type" => transaction_kind(v, false).is_some(),
        "status" => PortalStatus::from_label(v).is_some(),
        "relationship" => relationship(v).is_some(),
        "reason" => MaintenanceReason::from_label(v).is_some(),
        "gender" => Gender::from_label(v).is_some(),
        "marital_status" => MaritalStatus::from_label(v).is_some(),
        "employment_status" => EmploymentStatus::from_label(v).is_some(),
        "insurance_line" => insurance_line(v).is_some(),
        "coverage_level" => CoverageLevel::from_label(v).is_some(),
        "card_type" => CardType::from_label(v).is_some(),
        "card_action" => CardAction::from_label(v).is_some(),
        _ => false,
    }
}

/// Portal words that differ from the model's labels.
fn relationship(v: &str) -> Option<Relationship> {
    match normalize_label(v).as_str() {
        "employee" | "subscriber" => Some(Relationship::SelfSubscriber),
        _ => Relationship::from_label(v),
    }
}

fn insurance_line(v: &str) -> Option<InsuranceLine> {
    match normalize_label(v).as_str() {
        "medical" => Some(InsuranceLine::Health),
        _ => InsuranceLine::from_label(v),
    }
}

fn transaction_kind(v: &str, has_coverage: bool) -> Option<ChangeKind> {
    match normalize_label(v).as_str() {
        "termination" | "terminate" => Some(if has_coverage {
            ChangeKind::TerminateCoverage
        } else {
            ChangeKind::TerminateMember
        }),
        "reinstatement" => Some(ChangeKind::Reinstate),
        "cancellation" => Some(ChangeKind::Cancel),
        "pcp_change" | "primary_care_provider_change" => Some(ChangeKind::PcpChange),
        _ => ChangeKind::from_label(v),
    }
}

fn check_row(
    file: &str,
    layout: &Layout,
    index: &[Option<usize>],
    rec: &csv::StringRecord,
    number: u64,
) -> Result<Row, PortalError> {
    let mut row = Row {
        number,
        ..Row::default()
    };
    let err = |col: &Column, kind| PortalError {
        file: file.to_string(),
        row: number,
        column: Some(col.name.clone()),
        kind,
    };
    for (col, ix) in layout.columns.iter().zip(index) {
        let v = ix.and_then(|i| rec.get(i)).unwrap_or("").trim();
        if v.is_empty() {
            if col.required {
                return Err(err(col, PortalErrorKind::MissingValue));
            }
            continue;
        }
        match col.ty {
            ColumnType::Text => {}
            ColumnType::Date => match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
                Ok(d) if v.len() == 10 => {
                    row.dates.insert(col.name.clone(), d);
                }
                _ => return Err(err(col, PortalErrorKind::BadDate)),
            },
            ColumnType::Datetime => {
                if NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S").is_err() {
                    return Err(err(col, PortalErrorKind::BadDateTime));
                }
            }
            ColumnType::Integer => match v.parse::<u32>() {
                Ok(n) => {
                    row.ints.insert(col.name.clone(), n);
                }
                Err(_) => return Err(err(col, PortalErrorKind::BadNumber)),
            },
            ColumnType::Code => {
                if !code_ok(col.codes.as_deref().unwrap_or(""), v) {
                    return Err(err(col, PortalErrorKind::UnknownCode));
                }
            }
        }
        row.text.insert(col.name.clone(), v.to_string());
    }
    Ok(row)
}

fn name(row: &Row, prefix: &str) -> Option<PersonName> {
    let last = row.get(&format!("{prefix}last_name"))?;
    Some(PersonName {
        last,
        first: row.get(&format!("{prefix}first_name")),
        middle: row.get(&format!("{prefix}middle_name")),
        prefix: None,
        suffix: None,
    })
}

fn demographics(row: &Row) -> Option<Demographics> {
    let d = Demographics {
        birth_date: row.date("birth_date"),
        gender: row.code("gender", Gender::from_label),
        marital_status: row.code("marital_status", MaritalStatus::from_label),
    };
    (!d.is_empty()).then_some(d)
}

fn address(row: &Row) -> Option<Address> {
    Some(Address {
        line1: row.get("address_line1")?,
        line2: row.get("address_line2"),
        city: row.get("city").unwrap_or_default(),
        state: row.get("state"),
        postal_code: row.get("zip"),
        country: None,
    })
}

fn contacts(row: &Row) -> Vec<Contact> {
    let mut out = Vec::new();
    if let Some(v) = row.get("home_phone") {
        out.push(Contact {
            kind: ContactKind::HomePhone,
            value: v,
        });
    }
    if let Some(v) = row.get("email") {
        out.push(Contact {
            kind: ContactKind::Email,
            value: v,
        });
    }
    out
}

fn coverage(row: &Row) -> Option<Coverage> {
    let mut c = Coverage::new(row.code("coverage_type", insurance_line)?);
    c.plan = row.get("plan_code");
    c.coverage_level = row.code("coverage_level", CoverageLevel::from_label);
    c.begin = row.date("coverage_begin");
    c.end = row.date("coverage_end");
    if row.get("pcp_npi").is_some() || row.get("pcp_last_name").is_some() {
        c.pcp = Some(Provider {
            name: name(row, "pcp_").unwrap_or_default(),
            npi: row.get("pcp_npi"),
            provider_id: None,
            change_reason: row.code("pcp_change_reason", MaintenanceReason::from_label),
        });
    }
    if let Some(card_type) = row.code("card_type", CardType::from_label) {
        c.id_cards.push(IdCard {
            card_type,
            plan: row.get("plan_code"),
            count: row.ints.get("card_count").copied(),
            action: row.code("card_action", CardAction::from_label),
        });
    }
    Some(c)
}

/// Everything the portal says about the member (for adds and audits).
fn snapshot(first: &Row, coverages: Vec<Coverage>) -> MemberData {
    MemberData {
        name: name(first, ""),
        demographics: demographics(first),
        residence: address(first),
        contacts: contacts(first),
        employment_status: first.code("employment_status", EmploymentStatus::from_label),
        coverages,
        ..MemberData::default()
    }
}

fn base(file: &str, layout: PortalLayout, rows: &[Row], kind: ChangeKind) -> ChangeRecord {
    let first = &rows[0];
    ChangeRecord {
        schema: SCHEMA_VERSION.to_string(),
        change_id: String::new(),
        kind,
        effective_date: first.date("effective_date"),
        group_id: first.get("group_id"),
        division: first.get("division_id"),
        subscriber_id: first.get("subscriber_id").unwrap_or_default(),
        member_id: first.get("member_id").unwrap_or_default(),
        relationship: first
            .code("relationship", relationship)
            .unwrap_or(Relationship::SelfSubscriber),
        reason: first.code("reason", MaintenanceReason::from_label),
        new: MemberData::default(),
        old: None,
        source: SourceTrace::Portal {
            file: file.to_string(),
            layout,
            first_row: first.number,
            last_row: rows.last().map_or(first.number, |r| r.number),
            transaction_id: first.get("transaction_id"),
            status: first.code("status", PortalStatus::from_label),
        },
        broker_license: None,
        status: None,
        invoice_period: None,
    }
}

/// One transaction (its rows) → at most one change; `None` when its status says not to apply it.
fn transaction(file: &str, rows: &[Row]) -> Option<ChangeRecord> {
    let first = rows.first()?;
    let status = first.code("status", PortalStatus::from_label)?;
    if matches!(status, PortalStatus::Withdrawn | PortalStatus::Incomplete) {
        return None;
    }
    let covs: Vec<Coverage> = rows.iter().filter_map(coverage).collect();
    let kind = transaction_kind(&first.get("transaction_type")?, !covs.is_empty())?;
    let eff = first.date("effective_date");
    let mut r = base(file, PortalLayout::Transactions, rows, kind);
    let with_dates = |begin: bool, end: bool| -> Vec<Coverage> {
        covs.iter()
            .cloned()
            .map(|mut c| {
                if begin {
                    c.begin = c.begin.or(eff);
                }
                if end {
                    c.end = c.end.or(eff);
                }
                c
            })
            .collect()
    };
    r.new = match kind {
        ChangeKind::AddSubscriber | ChangeKind::AddDependent | ChangeKind::Audit => {
            snapshot(first, with_dates(true, false))
        }
        ChangeKind::MemberChange => snapshot(first, covs.clone()),
        ChangeKind::AddCoverage | ChangeKind::Reinstate => MemberData {
            coverages: with_dates(true, false),
            ..MemberData::default()
        },
        ChangeKind::TerminateCoverage | ChangeKind::TerminateMember => MemberData {
            coverages: with_dates(false, true),
            ..MemberData::default()
        },
        ChangeKind::AddressChange => MemberData {
            residence: address(first),
            contacts: contacts(first),
            ..MemberData::default()
        },
        ChangeKind::NameChange => {
            r.old = name(first, "prior_").map(|n| MemberData {
                name: Some(n),
                ..MemberData::default()
            });
            MemberData {
                name: name(first, ""),
                ..MemberData::default()
            }
        }
        ChangeKind::DemographicChange => MemberData {
            demographics: demographics(first),
            ..MemberData::default()
        },
        ChangeKind::DivisionChange => MemberData {
            division: first.get("division_id"),
            ..MemberData::default()
        },
        ChangeKind::PcpChange
        | ChangeKind::PlanChange
        | ChangeKind::CoverageLevelChange
        | ChangeKind::IdCardOrder
        | ChangeKind::Cancel
        | ChangeKind::CoverageCorrection => MemberData {
            coverages: covs.clone(),
            ..MemberData::default()
        },
    };
    Some(r.seal())
}

/// One roster member (its rows) → an audit change, like an 834 INS03 `030` loop.
fn roster_member(file: &str, rows: &[Row]) -> Option<ChangeRecord> {
    let first = rows.first()?;
    let covs: Vec<Coverage> = rows.iter().filter_map(coverage).collect();
    let mut r = base(file, PortalLayout::Roster, rows, ChangeKind::Audit);
    r.effective_date = covs.iter().filter_map(|c| c.begin).min();
    r.reason = None;
    r.new = snapshot(first, covs);
    Some(r.seal())
}

/// Reads one portal export (either layout, told apart by its header) and writes its changes.
pub fn convert_csv<R: Read, S: ChangeSink>(
    file: &str,
    input: R,
    sink: &mut S,
) -> io::Result<PortalSummary> {
    let mut summary = PortalSummary::default();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let header = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            summary.errors.push(PortalError {
                file: file.to_string(),
                row: 1,
                column: None,
                kind: PortalErrorKind::Csv(csv_kind(&e)),
            });
            return Ok(summary);
        }
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let (layout, kind) = if names.iter().any(|n| n == "transaction_id") {
        (Layout::transactions(), PortalLayout::Transactions)
    } else if names.iter().any(|n| n == "coverage_begin") {
        (Layout::roster(), PortalLayout::Roster)
    } else {
        summary.errors.push(PortalError {
            file: file.to_string(),
            row: 1,
            column: None,
            kind: PortalErrorKind::UnknownLayout,
        });
        return Ok(summary);
    };
    let index: Vec<Option<usize>> = layout
        .columns
        .iter()
        .map(|c| names.iter().position(|n| *n == c.name))
        .collect();
    let missing: Vec<PortalError> = layout
        .columns
        .iter()
        .zip(&index)
        .filter(|(c, ix)| c.required && ix.is_none())
        .map(|(c, _)| PortalError {
            file: file.to_string(),
            row: 1,
            column: Some(c.name.clone()),
            kind: PortalErrorKind::MissingColumn,
        })
        .collect();
    if !missing.is_empty() {
        summary.errors.extend(missing);
        return Ok(summary);
    }
    let key_ix: Vec<Option<usize>> = layout
        .group_by
        .iter()
        .map(|k| names.iter().position(|n| n == k))
        .collect();

    // The current group: its key, its good rows, and whether a row of it was bad.
    let mut key: Option<Vec<String>> = None;
    let mut rows: Vec<Row> = Vec::new();
    let mut bad: Option<u64> = None;
    let mut flush = |rows: &mut Vec<Row>,
                     bad: &mut Option<u64>,
                     summary: &mut PortalSummary|
     -> io::Result<()> {
        if let Some(bad_row) = bad.take() {
            for r in rows.iter() {
                summary.errors.push(PortalError {
                    file: file.to_string(),
                    row: r.number,
                    column: None,
                    kind: PortalErrorKind::Companion,
                });
            }
            let _ = bad_row;
        } else if !rows.is_empty() {
            let rec = match kind {
                PortalLayout::Transactions => transaction(file, rows),
                PortalLayout::Roster => roster_member(file, rows),
            };
            match rec {
                Some(r) => {
                    sink.change(&r)?;
                    summary.records += 1;
                }
                None => summary.skipped += 1,
            }
        }
        rows.clear();
        Ok(())
    };
    let mut record = csv::StringRecord::new();
    let mut number = 1u64;
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                number += 1;
                summary.errors.push(PortalError {
                    file: file.to_string(),
                    row: number,
                    column: None,
                    kind: PortalErrorKind::Csv(csv_kind(&e)),
                });
                continue;
            }
        }
        number += 1;
        let k: Vec<String> = key_ix
            .iter()
            .map(|ix| {
                ix.and_then(|i| record.get(i))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .collect();
        if key.as_ref() != Some(&k) {
            flush(&mut rows, &mut bad, &mut summary)?;
            key = Some(k);
        }
        match check_row(file, &layout, &index, &record, number) {
            Ok(row) => rows.push(row),
            Err(e) => {
                summary.errors.push(e);
                bad = Some(number);
            }
        }
    }
    flush(&mut rows, &mut bad, &mut summary)?;
    Ok(summary)
}

/// A CSV error without the offending bytes (they may be PHI).
fn csv_kind(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        csv::ErrorKind::UnequalLengths { .. } => "wrong number of fields".into(),
        csv::ErrorKind::Io(_) => "read error".into(),
        _ => "malformed CSV".into(),
    }
}
