//! Normalized change records, and how an 834 member loop becomes them.
//!
//! A [`ChangeRecord`] is what a plan's administrative system loads: one kind of change to one
//! member, effective on one date, with the new values (and the old ones where the sender says
//! them) and a trace back to its source. Its JSON form is defined once, by
//! `schemas/change-record.v1.json`.
//!
//! This module is pure: [`HeaderContext::from_record`] reads a set's header, [`member_loop`]
//! reads one validated member loop into the [`crate::enrollment`] model, and [`derive`] applies
//! the INS03 × HD01 table of `x12-834.md` §2.2. It never reads files and never decides whether a
//! set may be applied; [`crate::batch`] does that.
//!
//! ## Stable change id
//! `change_id` is the lower-case hex SHA-256 of `eligo.change.v1` + NUL + the record's JSON with
//! `change_id` set to the empty string. The JSON is canonical because the record is a struct
//! serialized in field order with no maps and no floats, and the source trace (file name,
//! ISA13, GS06, ST02 and segment range, or portal file and rows) is part of it: the same input
//! always gives the same id, and the same content from two places gives two ids.
//! [`ChangeRecord::write_json_sealing`] computes the id from the very JSON it writes (one
//! serialization for the hash and the output), [`ChangeRecord::seal`] for records that need
//! their id before they are written.
//!
//! ## Choices (where the guide leaves room)
//! - Group: header REF*38, else the sponsor's N1*P5 N104.
//! - Division: the 2750 loop whose N102 is `DIVISION` or whose REF01 is `19` (division
//!   identifier), else the 2000 REF*DX (department/agency number).
//! - INS03 `001` with HD01 `001`: a 2310 provider makes it a PCP change; an IDC makes it an ID
//!   card order; otherwise HD04 makes a plan change and HD05 a coverage-level change (the 834 does
//!   not say the old plan, so both are emitted when both are sent).
//! - A name change needs 2100B (or NM101 `74`); a DMG beside a 2100B without DMG belongs to the
//!   identity correction and is not a separate demographic change.
//! - Cancel is HD01 `002` (a coverage sent in error is removed).
//! - An INS03 `001` loop that says nothing above becomes a `member_change` with all its values.

use crate::enrollment::*;
use crate::validate::record::Record;
use crate::validate::Standards;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::ops::Range;

/// The `schema` value of every record; the JSON Schema's `$id` names the same version.
pub const SCHEMA_VERSION: &str = "eligo.change.v1";

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    AddSubscriber,
    AddDependent,
    AddCoverage,
    TerminateMember,
    TerminateCoverage,
    Cancel,
    Reinstate,
    AddressChange,
    NameChange,
    DemographicChange,
    PcpChange,
    PlanChange,
    CoverageLevelChange,
    DivisionChange,
    IdCardOrder,
    CoverageCorrection,
    MemberChange,
    Audit,
}

impl ChangeKind {
    pub const ALL: &'static [ChangeKind] = &[
        ChangeKind::AddSubscriber,
        ChangeKind::AddDependent,
        ChangeKind::AddCoverage,
        ChangeKind::TerminateMember,
        ChangeKind::TerminateCoverage,
        ChangeKind::Cancel,
        ChangeKind::Reinstate,
        ChangeKind::AddressChange,
        ChangeKind::NameChange,
        ChangeKind::DemographicChange,
        ChangeKind::PcpChange,
        ChangeKind::PlanChange,
        ChangeKind::CoverageLevelChange,
        ChangeKind::DivisionChange,
        ChangeKind::IdCardOrder,
        ChangeKind::CoverageCorrection,
        ChangeKind::MemberChange,
        ChangeKind::Audit,
    ];

    pub fn label(self) -> &'static str {
        let quoted = self.json_label();
        &quoted[1..quoted.len() - 1]
    }

    /// The label as a JSON string, quotes included: written as one copy.
    pub fn json_label(self) -> &'static str {
        match self {
            ChangeKind::AddSubscriber => r#""add_subscriber""#,
            ChangeKind::AddDependent => r#""add_dependent""#,
            ChangeKind::AddCoverage => r#""add_coverage""#,
            ChangeKind::TerminateMember => r#""terminate_member""#,
            ChangeKind::TerminateCoverage => r#""terminate_coverage""#,
            ChangeKind::Cancel => r#""cancel""#,
            ChangeKind::Reinstate => r#""reinstate""#,
            ChangeKind::AddressChange => r#""address_change""#,
            ChangeKind::NameChange => r#""name_change""#,
            ChangeKind::DemographicChange => r#""demographic_change""#,
            ChangeKind::PcpChange => r#""pcp_change""#,
            ChangeKind::PlanChange => r#""plan_change""#,
            ChangeKind::CoverageLevelChange => r#""coverage_level_change""#,
            ChangeKind::DivisionChange => r#""division_change""#,
            ChangeKind::IdCardOrder => r#""id_card_order""#,
            ChangeKind::CoverageCorrection => r#""coverage_correction""#,
            ChangeKind::MemberChange => r#""member_change""#,
            ChangeKind::Audit => r#""audit""#,
        }
    }

    pub fn from_label(s: &str) -> Option<ChangeKind> {
        let key = normalize_label(s);
        ChangeKind::ALL.iter().copied().find(|k| k.label() == key)
    }
}

/// Which portal export a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortalLayout {
    Transactions,
    Roster,
}

/// Where a change came from. Its `Deserialize` is written by hand ([`trace_de`]); the derived
/// one is [`SourceTraceDef`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceTrace {
    X12 {
        /// The input's file name (without directories, so a rerun elsewhere gives the same id).
        file: String,
        isa13: String,
        gs06: String,
        st02: String,
        /// First and last segment of the loop the change comes from (ST = 1).
        first_segment: u32,
        last_segment: u32,
    },
    Portal {
        file: String,
        layout: PortalLayout,
        /// First and last CSV row (1-based; the header is row 1).
        first_row: u64,
        last_row: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transaction_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<PortalStatus>,
    },
}

/// The derived `Deserialize` of [`SourceTrace`] (serde's remote derive: the same attributes):
/// the definition, and what [`trace_de`] falls back to when `type` is not the first key.
#[derive(Deserialize)]
#[serde(remote = "SourceTrace", tag = "type", rename_all = "snake_case")]
enum SourceTraceDef {
    X12 {
        file: String,
        isa13: String,
        gs06: String,
        st02: String,
        first_segment: u32,
        last_segment: u32,
    },
    Portal {
        file: String,
        layout: PortalLayout,
        first_row: u64,
        last_row: u64,
        #[serde(default)]
        transaction_id: Option<String>,
        #[serde(default)]
        status: Option<PortalStatus>,
    },
}

/// [`SourceTrace`] read field by field. serde's derive for an internally tagged enum first
/// copies the whole object into a generic buffer (every string once more) to find the tag;
/// eligo writes `type` first, so this reads it, then the variant's fields straight from the
/// input. Any other order goes through the buffered, derived path ([`SourceTraceDef`]).
mod trace_de {
    use super::{PortalLayout, SourceTrace, SourceTraceDef};
    use crate::enrollment::PortalStatus;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    /// A key of either variant's object.
    enum Key {
        Type,
        File,
        Isa13,
        Gs06,
        St02,
        FirstSegment,
        LastSegment,
        Layout,
        FirstRow,
        LastRow,
        TransactionId,
        Status,
        Other,
    }

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("field identifier")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                    Ok(match s {
                        "type" => Key::Type,
                        "file" => Key::File,
                        "isa13" => Key::Isa13,
                        "gs06" => Key::Gs06,
                        "st02" => Key::St02,
                        "first_segment" => Key::FirstSegment,
                        "last_segment" => Key::LastSegment,
                        "layout" => Key::Layout,
                        "first_row" => Key::FirstRow,
                        "last_row" => Key::LastRow,
                        "transaction_id" => Key::TransactionId,
                        "status" => Key::Status,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_identifier(V)
        }
    }

    /// Sets a field once (a second one is an error, as in a derived struct).
    fn once<'de, A: MapAccess<'de>, T: de::Deserialize<'de>>(
        map: &mut A,
        slot: &mut Option<T>,
        name: &'static str,
    ) -> Result<(), A::Error> {
        if slot.is_some() {
            return Err(de::Error::duplicate_field(name));
        }
        *slot = Some(map.next_value()?);
        Ok(())
    }

    fn need<T, E: de::Error>(v: Option<T>, name: &'static str) -> Result<T, E> {
        v.ok_or_else(|| E::missing_field(name))
    }

    fn x12<'de, A: MapAccess<'de>>(mut map: A) -> Result<SourceTrace, A::Error> {
        let (mut file, mut isa13, mut gs06, mut st02) = (None, None, None, None);
        let (mut first, mut last) = (None, None);
        while let Some(k) = map.next_key::<Key>()? {
            match k {
                Key::File => once(&mut map, &mut file, "file")?,
                Key::Isa13 => once(&mut map, &mut isa13, "isa13")?,
                Key::Gs06 => once(&mut map, &mut gs06, "gs06")?,
                Key::St02 => once(&mut map, &mut st02, "st02")?,
                Key::FirstSegment => once(&mut map, &mut first, "first_segment")?,
                Key::LastSegment => once(&mut map, &mut last, "last_segment")?,
                Key::Type => return Err(de::Error::duplicate_field("type")),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(SourceTrace::X12 {
            file: need(file, "file")?,
            isa13: need(isa13, "isa13")?,
            gs06: need(gs06, "gs06")?,
            st02: need(st02, "st02")?,
            first_segment: need(first, "first_segment")?,
            last_segment: need(last, "last_segment")?,
        })
    }

    fn portal<'de, A: MapAccess<'de>>(mut map: A) -> Result<SourceTrace, A::Error> {
        let (mut file, mut layout, mut first, mut last) = (None, None, None, None);
        let (mut transaction_id, mut status) = (None, None);
        while let Some(k) = map.next_key::<Key>()? {
            match k {
                Key::File => once(&mut map, &mut file, "file")?,
                Key::Layout => once::<_, PortalLayout>(&mut map, &mut layout, "layout")?,
                Key::FirstRow => once(&mut map, &mut first, "first_row")?,
                Key::LastRow => once(&mut map, &mut last, "last_row")?,
                Key::TransactionId => {
                    once::<_, Option<String>>(&mut map, &mut transaction_id, "transaction_id")?
                }
                Key::Status => once::<_, Option<PortalStatus>>(&mut map, &mut status, "status")?,
                Key::Type => return Err(de::Error::duplicate_field("type")),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(SourceTrace::Portal {
            file: need(file, "file")?,
            layout: need(layout, "layout")?,
            first_row: need(first, "first_row")?,
            last_row: need(last, "last_row")?,
            transaction_id: transaction_id.flatten(),
            status: status.flatten(),
        })
    }

    const VARIANTS: &[&str] = &["x12", "portal"];

    /// The first key (`type` when eligo wrote the object) or the tag's value, copied only when
    /// it is neither.
    enum Name {
        Type,
        X12,
        Portal,
        Other(String),
    }

    impl<'de> de::Deserialize<'de> for Name {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Name;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Name, E> {
                    Ok(match s {
                        "type" => Name::Type,
                        "x12" => Name::X12,
                        "portal" => Name::Portal,
                        _ => Name::Other(s.to_string()),
                    })
                }
            }
            d.deserialize_str(V)
        }
    }

    struct Trace;

    impl<'de> Visitor<'de> for Trace {
        type Value = SourceTrace;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("internally tagged enum SourceTrace")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SourceTrace, A::Error> {
            let first = match map.next_key::<Name>()? {
                None => return Err(de::Error::missing_field("type")),
                Some(Name::Type) => {
                    return match map.next_value::<Name>()? {
                        Name::X12 => x12(map),
                        Name::Portal => portal(map),
                        Name::Type => Err(de::Error::unknown_variant("type", VARIANTS)),
                        Name::Other(other) => Err(de::Error::unknown_variant(&other, VARIANTS)),
                    };
                }
                Some(Name::X12) => "x12".to_string(),
                Some(Name::Portal) => "portal".to_string(),
                Some(Name::Other(key)) => key,
            };
            // Another order: buffered, then the derived path.
            let mut obj = serde_json::Map::new();
            obj.insert(first, map.next_value()?);
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                obj.insert(k, v);
            }
            SourceTraceDef::deserialize(serde_json::Value::Object(obj)).map_err(de::Error::custom)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SourceTrace, A::Error> {
            let mut items = Vec::new();
            while let Some(v) = seq.next_element::<serde_json::Value>()? {
                items.push(v);
            }
            SourceTraceDef::deserialize(serde_json::Value::Array(items)).map_err(de::Error::custom)
        }
    }

    impl<'de> de::Deserialize<'de> for SourceTrace {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SourceTrace, D::Error> {
            d.deserialize_any(Trace)
        }
    }
}

/// [`SourceTrace`] borrowed (see [`RecordView`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceView<'a> {
    X12 {
        file: &'a str,
        isa13: &'a str,
        gs06: &'a str,
        st02: &'a str,
        first_segment: u32,
        last_segment: u32,
    },
    Portal {
        file: &'a str,
        layout: PortalLayout,
        first_row: u64,
        last_row: u64,
        transaction_id: Option<&'a str>,
        status: Option<PortalStatus>,
    },
}

impl<'a> From<&'a SourceTrace> for SourceView<'a> {
    fn from(t: &'a SourceTrace) -> SourceView<'a> {
        match t {
            SourceTrace::X12 {
                file,
                isa13,
                gs06,
                st02,
                first_segment,
                last_segment,
            } => SourceView::X12 {
                file,
                isa13,
                gs06,
                st02,
                first_segment: *first_segment,
                last_segment: *last_segment,
            },
            SourceTrace::Portal {
                file,
                layout,
                first_row,
                last_row,
                transaction_id,
                status,
            } => SourceView::Portal {
                file,
                layout: *layout,
                first_row: *first_row,
                last_row: *last_row,
                transaction_id: transaction_id.as_deref(),
                status: *status,
            },
        }
    }
}

impl SourceView<'_> {
    /// The owned trace.
    pub fn to_trace(&self) -> SourceTrace {
        match *self {
            SourceView::X12 {
                file,
                isa13,
                gs06,
                st02,
                first_segment,
                last_segment,
            } => SourceTrace::X12 {
                file: file.to_string(),
                isa13: isa13.to_string(),
                gs06: gs06.to_string(),
                st02: st02.to_string(),
                first_segment,
                last_segment,
            },
            SourceView::Portal {
                file,
                layout,
                first_row,
                last_row,
                transaction_id,
                status,
            } => SourceTrace::Portal {
                file: file.to_string(),
                layout,
                first_row,
                last_row,
                transaction_id: transaction_id.map(str::to_string),
                status,
            },
        }
    }
}

/// One normalized change. See `schemas/change-record.v1.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub schema: String,
    pub change_id: String,
    pub kind: ChangeKind,
    #[serde(default, deserialize_with = "crate::enrollment::date_de::opt")]
    pub effective_date: Option<NaiveDate>,
    pub group_id: Option<String>,
    pub division: Option<String>,
    pub subscriber_id: String,
    pub member_id: String,
    pub relationship: Relationship,
    pub reason: Option<MaintenanceReason>,
    pub new: MemberData,
    pub old: Option<MemberData>,
    pub source: SourceTrace,
    /// The broker's licence number (1000C N1*BO N104) with a 7-digit value left-padded with
    /// `00` (snip-levels.md T14); other values as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_license: Option<String>,
    /// Set by the business rules ([`crate::rules`]): the transaction status the change starts in.
    /// Not part of the change id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::lifecycle::TransactionStatus>,
    /// Set by the business rules: the invoice (`YYYY-MM`) the change first appears on. Not part
    /// of the change id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_period: Option<String>,
}

/// A change record borrowed: the same fields, pointing into the values they come from.
///
/// [`derive_views`] gives these, borrowed from the member loop and the set's header, so that
/// converting writes each record's JSON (and CSV row) without first copying a dozen strings
/// and the member's values into an owned [`ChangeRecord`] only to drop it; [`ChangeRecord`]
/// writes its JSON through its view ([`ChangeRecord::view`]), so both give the same bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub schema: &'a str,
    pub change_id: &'a str,
    pub kind: ChangeKind,
    pub effective_date: Option<NaiveDate>,
    pub group_id: Option<&'a str>,
    pub division: Option<&'a str>,
    pub subscriber_id: &'a str,
    pub member_id: &'a str,
    pub relationship: Relationship,
    pub reason: Option<MaintenanceReason>,
    pub new: DataView<'a>,
    pub old: Option<DataView<'a>>,
    pub source: SourceView<'a>,
    pub broker_license: Option<&'a str>,
    pub status: Option<crate::lifecycle::TransactionStatus>,
    pub invoice_period: Option<&'a str>,
}

/// Where the parts of a record's JSON are, as byte ranges of the buffer
/// [`ChangeRecord::write_json`] appended it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonSpans {
    /// The whole record, `{` to `}`.
    pub record: Range<usize>,
    /// The `change_id` value, between its quotes.
    pub change_id: Range<usize>,
    /// Everything before the rules' verdict (`status`, `invoice_period`): the record's content.
    pub content_end: usize,
    /// The `new` object.
    pub new: Range<usize>,
    /// The `old` object, or `None` when it is `null`.
    pub old: Option<Range<usize>>,
}

/// The placeholder [`ChangeRecord::write_json_sealing`] writes where the id goes.
const ID_PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl ChangeRecord {
    /// The id this record's content and source give (see the module docs). The rules' verdict
    /// (`status`, `invoice_period`) is not content: it depends on the day and configuration.
    pub fn compute_id(&self) -> String {
        let mut json = Vec::with_capacity(1024);
        let id = match self.write_json_with_id(Some(""), &mut json) {
            Ok(spans) => id_hex(&[&json[..spans.content_end], b"}"]),
            // Serializing cannot fail into a Vec; if it did, the id is that of an empty document.
            Err(_) => id_hex(&[]),
        };
        String::from_utf8_lossy(&id).into_owned()
    }

    /// Sets `change_id` from the content.
    pub fn seal(mut self) -> ChangeRecord {
        self.change_id = self.compute_id();
        self
    }

    /// Appends the record's JSON to `out`: exactly the bytes `serde_json::to_writer` writes for
    /// it (the order, the `null`s and the omitted fields of the derived `Serialize`), and where
    /// its parts are. Written by hand at the top level so that one serialization gives both the
    /// id and the output line (see [`ChangeRecord::write_json_sealing`]).
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<JsonSpans> {
        self.write_json_with_id(Some(&self.change_id), out)
    }

    /// Appends the JSON of the record sealed: with `change_id` computed from this very JSON
    /// (hashed with an empty id and without the rules' verdict, as [`ChangeRecord::compute_id`]
    /// does) instead of `self.change_id`, which is ignored. Same bytes as `self.seal()` then
    /// [`ChangeRecord::write_json`], with one serialization instead of two.
    pub fn write_json_sealing(&self, out: &mut Vec<u8>) -> serde_json::Result<JsonSpans> {
        self.view().write_json_sealing(out)
    }

    fn write_json_with_id(
        &self,
        id: Option<&str>,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<JsonSpans> {
        self.view().write_json_with_id(id, out)
    }

    /// Reads a record from its JSON (one line of a spool): what `serde_json::from_slice`
    /// reads, the same record or the same error. A line exactly as eligo writes it is read by
    /// [`crate::changejson::read_record`] without serde_json's machinery; any other goes to
    /// serde_json.
    pub fn from_json(line: &[u8]) -> serde_json::Result<ChangeRecord> {
        match crate::changejson::read_record(line) {
            Some(r) => Ok(r),
            None => serde_json::from_slice(line),
        }
    }

    /// [`ChangeRecord::from_json`] into `self`, whose strings take the values in place when
    /// the line is read by hand ([`crate::changejson::read_record_into`]), which also gives
    /// where the line's parts are (`None` when serde_json read it). On an error `self` holds
    /// part of the line: it is to be dropped.
    pub fn read_json(&mut self, line: &str) -> serde_json::Result<Option<JsonSpans>> {
        match crate::changejson::read_record_into(line, self) {
            Some(spans) => Ok(Some(spans)),
            None => {
                *self = serde_json::from_str(line)?;
                Ok(None)
            }
        }
    }

    /// The record borrowed.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            schema: &self.schema,
            change_id: &self.change_id,
            kind: self.kind,
            effective_date: self.effective_date,
            group_id: self.group_id.as_deref(),
            division: self.division.as_deref(),
            subscriber_id: &self.subscriber_id,
            member_id: &self.member_id,
            relationship: self.relationship,
            reason: self.reason,
            new: DataView::from(&self.new),
            old: self.old.as_ref().map(DataView::from),
            source: SourceView::from(&self.source),
            broker_license: self.broker_license.as_deref(),
            status: self.status,
            invoice_period: self.invoice_period.as_deref(),
        }
    }

    /// The record without what depends on where it came from (id, trace, and the sending
    /// file's broker, which only an 834 header names): two sources describing the same change
    /// give equal values.
    pub fn content(&self) -> ChangeRecord {
        let mut c = self.clone();
        c.change_id.clear();
        c.broker_license = None;
        c.status = None;
        c.invoice_period = None;
        c.source = SourceTrace::Portal {
            file: String::new(),
            layout: PortalLayout::Transactions,
            first_row: 0,
            last_row: 0,
            transaction_id: None,
            status: None,
        };
        c
    }
}

impl RecordView<'_> {
    /// The owned record.
    pub fn to_record(&self) -> ChangeRecord {
        ChangeRecord {
            schema: self.schema.to_string(),
            change_id: self.change_id.to_string(),
            kind: self.kind,
            effective_date: self.effective_date,
            group_id: self.group_id.map(str::to_string),
            division: self.division.map(str::to_string),
            subscriber_id: self.subscriber_id.to_string(),
            member_id: self.member_id.to_string(),
            relationship: self.relationship,
            reason: self.reason,
            new: self.new.to_data(),
            old: self.old.as_ref().map(DataView::to_data),
            source: self.source.to_trace(),
            broker_license: self.broker_license.map(str::to_string),
            status: self.status,
            invoice_period: self.invoice_period.map(str::to_string),
        }
    }

    /// [`ChangeRecord::write_json`] of the record viewed.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<JsonSpans> {
        self.write_json_with_id(Some(self.change_id), out)
    }

    /// [`ChangeRecord::write_json_sealing`] of the record viewed: `change_id` is computed from
    /// the JSON written, whatever `self.change_id` says.
    pub fn write_json_sealing(&self, out: &mut Vec<u8>) -> serde_json::Result<JsonSpans> {
        let spans = self.write_json_with_id(None, out)?;
        let id = id_hex(&[
            &out[spans.record.start..spans.change_id.start],
            &out[spans.change_id.end..spans.content_end],
            b"}",
        ]);
        out[spans.change_id.clone()].copy_from_slice(&id);
        Ok(spans)
    }

    /// `id: None` writes [`ID_PLACEHOLDER`].
    fn write_json_with_id(
        &self,
        id: Option<&str>,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<JsonSpans> {
        use crate::changejson::{json_key, plain_string, string, Json, Object};
        let start = out.len();
        let mut o = Object::begin(out);
        // The schema eligo writes and the placeholder need no escapes: no scan for them.
        o.key(json_key!("schema"));
        if self.schema == SCHEMA_VERSION {
            plain_string(o.out, SCHEMA_VERSION);
        } else {
            string(o.out, self.schema);
        }
        o.key(json_key!("change_id"));
        let id_start = o.out.len() + 1;
        match id {
            Some(id) => string(o.out, id),
            None => plain_string(o.out, ID_PLACEHOLDER),
        }
        let change_id = id_start..o.out.len() - 1;
        o.field(json_key!("kind"), &self.kind);
        o.field(json_key!("effective_date"), &self.effective_date);
        o.field(json_key!("group_id"), &self.group_id);
        o.field(json_key!("division"), &self.division);
        o.field(json_key!("subscriber_id"), self.subscriber_id);
        o.field(json_key!("member_id"), self.member_id);
        o.field(json_key!("relationship"), &self.relationship);
        o.field(json_key!("reason"), &self.reason);
        o.key(json_key!("new"));
        let new_start = o.out.len();
        self.new.json(o.out);
        let new = new_start..o.out.len();
        o.key(json_key!("old"));
        let old_start = o.out.len();
        self.old.json(o.out);
        let old = self.old.as_ref().map(|_| old_start..o.out.len());
        o.field(json_key!("source"), &self.source);
        o.some(json_key!("broker_license"), &self.broker_license);
        let content_end = o.out.len();
        o.some(json_key!("status"), &self.status);
        o.some(json_key!("invoice_period"), &self.invoice_period);
        o.end();
        let spans = JsonSpans {
            record: start..out.len(),
            change_id,
            content_end,
            new,
            old,
        };
        #[cfg(debug_assertions)]
        {
            // The derive is the definition: check every record debug builds write against it.
            let mut probe = self.to_record();
            probe.change_id = id.unwrap_or(ID_PLACEHOLDER).to_string();
            let want = serde_json::to_vec(&probe)?;
            debug_assert!(
                out[spans.record.clone()] == want[..],
                "changejson differs from serde_json:\n{}\n{}",
                String::from_utf8_lossy(&out[spans.record.clone()]),
                String::from_utf8_lossy(&want)
            );
        }
        Ok(spans)
    }
}

/// The bytes every record's id hashes first, up to the end of SHA-256's first 64-byte block:
/// `eligo.change.v1` + NUL (16 bytes), then the start of the record's JSON with the empty id,
/// up to the name of the third field (48 bytes). The same for every record whose `schema` is
/// [`SCHEMA_VERSION`] (all that eligo writes), so [`id_hex`] hashes it once per process and
/// resumes from the saved state: one compression of the dozen a record's id takes.
const ID_FIRST_BLOCK: &[u8; 64] =
    b"eligo.change.v1\0{\"schema\":\"eligo.change.v1\",\"change_id\":\"\",\"kind";

/// The SHA-256 state after [`ID_FIRST_BLOCK`].
fn id_first_block() -> &'static Sha256 {
    static STATE: std::sync::OnceLock<Sha256> = std::sync::OnceLock::new();
    STATE.get_or_init(|| Sha256::new_with_prefix(ID_FIRST_BLOCK))
}

/// Second blocks [`second_block`] remembers, per thread.
const SECOND_BLOCKS: usize = 16;

/// The SHA-256 state after [`ID_FIRST_BLOCK`] and then `block`, the second 64 bytes a record's
/// id hashes: the rest of `kind`, `effective_date` and the start of `group_id`, which most
/// records of a file share with many others (one kind of change, one effective date). The
/// states after the last [`SECOND_BLOCKS`] distinct second blocks are kept (per thread, replaced
/// in turn), so a record whose second block is one of them skips its compression: the bytes
/// hashed are the same, only their first two blocks' work is done once.
fn second_block(block: &[u8; 64]) -> Sha256 {
    /// Second blocks and the states after them, the next one to replace, and the one the last
    /// record used.
    type Remembered = (Vec<([u8; 64], Sha256)>, usize, usize);
    use std::cell::RefCell;
    thread_local! {
        static SEEN: RefCell<Remembered> = const { RefCell::new((Vec::new(), 0, 0)) };
    }
    SEEN.with(|seen| {
        let (states, next, last) = &mut *seen.borrow_mut();
        // The last record's block first: records of one member, and runs of members with one
        // kind of change, share it, and then the others are not compared.
        if let Some((b, h)) = states.get(*last) {
            if same_block(b, block) {
                return h.clone();
            }
        }
        if let Some(i) = states.iter().position(|(b, _)| same_block(b, block)) {
            *last = i;
            return states[i].1.clone();
        }
        let mut h = id_first_block().clone();
        h.update(block);
        if states.len() < SECOND_BLOCKS {
            *last = states.len();
            states.push((*block, h.clone()));
        } else {
            *last = *next;
            states[*next] = (*block, h.clone());
            *next = (*next + 1) % SECOND_BLOCKS;
        }
        h
    })
}

/// `a == b` inline: the arrays' `==` is a call to `memcmp`, made for every block remembered
/// on every record.
/// Without an early exit, which vectorizes: the blocks differ late if at all (they all begin
/// with the end of `change_id` and the `kind` key).
#[inline]
fn same_block(a: &[u8; 64], b: &[u8; 64]) -> bool {
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The lower-case hex SHA-256 of `eligo.change.v1` + NUL + the concatenated `parts` (a record's
/// JSON with an empty `change_id` and without the rules' verdict).
fn id_hex(parts: &[&[u8]]) -> [u8; 64] {
    // Do the parts begin with the rest of the constant first block? Compared across parts
    // (the first one usually ends where the id would be).
    let json_head = &ID_FIRST_BLOCK[SCHEMA_VERSION.len() + 1..];
    let mut seen = 0;
    for p in parts {
        let n = p.len().min(json_head.len() - seen);
        if p[..n] != json_head[seen..seen + n] {
            break;
        }
        seen += n;
        if seen == json_head.len() {
            break;
        }
    }
    let mut h;
    if seen == json_head.len() {
        let mut skip = seen;
        // The second block too, when a recent record hashed the same one.
        let mut second = [0u8; 64];
        let mut filled = 0;
        for p in parts {
            let n = p.len().min(skip);
            skip -= n;
            let p = &p[n..];
            let n = p.len().min(second.len() - filled);
            second[filled..filled + n].copy_from_slice(&p[..n]);
            filled += n;
            if filled == second.len() {
                break;
            }
        }
        let mut skip = seen;
        if filled == second.len() {
            h = second_block(&second);
            skip += second.len();
        } else {
            h = id_first_block().clone();
        }
        for p in parts {
            let n = p.len().min(skip);
            skip -= n;
            h.update(&p[n..]);
        }
    } else {
        h = Sha256::new();
        h.update(SCHEMA_VERSION.as_bytes());
        h.update([0u8]);
        for p in parts {
            h.update(p);
        }
    }
    let mut out = [0u8; 64];
    for (pair, &b) in out.chunks_exact_mut(2).zip(h.finalize().iter()) {
        pair.copy_from_slice(&HEX_PAIRS[b as usize]);
    }
    out
}

/// The two lower-case hex digits of every byte. One load per byte of the digest instead of
/// two shifts or masks and two lookups: every record's id is 32 bytes of hex.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = [HEX[b >> 4], HEX[b & 15]];
        b += 1;
    }
    t
};

/// Why a member loop could not be turned into changes. Never carries member data: it names the
/// segment position and element, not the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("segment {position} ({segment}{element:02}): {kind}")]
pub struct DeriveError {
    pub position: u32,
    pub segment: String,
    pub element: u8,
    pub kind: DeriveErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveErrorKind {
    #[error("unknown code")]
    UnknownCode,
    #[error("not a valid date CCYYMMDD")]
    BadDate,
    #[error("required value missing")]
    Missing,
    #[error("maintenance types contradict each other (x12-834.md 2.2)")]
    Contradictory,
    #[error("this maintenance type is not converted")]
    Unsupported,
}

/// What a set's header says that every member's changes need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderContext {
    pub file: String,
    pub isa13: String,
    pub gs06: String,
    pub st02: String,
    pub group_id: Option<String>,
    /// Header DTP*007.
    pub file_effective: Option<NaiveDate>,
    /// Header DTP*303.
    pub maintenance_effective: Option<NaiveDate>,
    /// 1000C N1*BO N104, normalized by [`normalize_broker_license`].
    pub broker_license: Option<String>,
}

/// A broker licence number as the plan stores it: nine digits. A seven-digit value is the same
/// licence without its two leading zeros (snip-levels.md T14) and is padded; anything else is
/// kept as sent, trimmed, for the rules to report.
pub fn normalize_broker_license(v: &str) -> String {
    let v = v.trim();
    if v.len() == 7 && v.bytes().all(|b| b.is_ascii_digit()) {
        format!("00{v}")
    } else {
        v.to_string()
    }
}

/// An element as text; invalid UTF-8 (which the validator reports) becomes U+FFFD.
fn text(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(v).into_owned(),
    }
}

fn opt(v: &[u8]) -> Option<String> {
    (!v.is_empty()).then(|| text(v))
}

/// [`crate::validate::element::parse_date`], remembering the last date read (per thread): a
/// member's dates (maintenance, eligibility, coverage begin) are mostly one date, shared with
/// the members around it, and building a `NaiveDate` costs more than comparing eight bytes.
fn parse_d8(v: &[u8]) -> Option<NaiveDate> {
    use std::cell::Cell;
    thread_local! {
        static LAST: Cell<Option<(u64, NaiveDate)>> = const { Cell::new(None) };
    }
    let key = match v {
        &[a, b, c, d, e, f, g, h] => u64::from_ne_bytes([a, b, c, d, e, f, g, h]),
        _ => return None,
    };
    if let Some((k, d)) = LAST.get() {
        if k == key {
            return Some(d);
        }
    }
    let d = crate::validate::element::parse_date(v)?;
    LAST.set(Some((key, d)));
    Some(d)
}

impl HeaderContext {
    /// Reads REF*38, N1*P5 and the header dates; the envelope ids come from the caller.
    pub fn from_record(rec: &Record, file: &str, isa13: &str, gs06: &str, st02: &str) -> Self {
        let mut h = HeaderContext {
            file: file.to_string(),
            isa13: isa13.to_string(),
            gs06: gs06.to_string(),
            st02: st02.to_string(),
            ..Default::default()
        };
        let mut sponsor = None;
        for (_, seg) in rec.iter() {
            match (seg.id(), seg.element(1)) {
                (b"REF", b"38") => h.group_id = opt(seg.element(2)),
                (b"N1", b"P5") => sponsor = opt(seg.element(4)),
                (b"DTP", b"007") => h.file_effective = parse_d8(seg.element(3)),
                (b"DTP", b"303") => h.maintenance_effective = parse_d8(seg.element(3)),
                (b"N1", b"BO") => {
                    h.broker_license = opt(seg.element(4)).map(|v| normalize_broker_license(&v))
                }
                _ => {}
            }
        }
        if h.group_id.is_none() {
            h.group_id = sponsor;
        }
        h
    }
}

/// One 2300 loop as read: what the change table needs beside the coverage itself, which is
/// `member.data.coverages` at the same index.
#[derive(Debug, Clone)]
pub struct CoverageLoop {
    pub action: MaintenanceType,
    /// 2300 DTP*303.
    pub maintenance_effective: Option<NaiveDate>,
    /// PLA03.
    pub pcp_effective: Option<NaiveDate>,
    pub first: u32,
    pub last: u32,
}

/// One 2000 loop as read: the member and what the change table needs beside it. Its values
/// are borrowed from the record's elements ([`Cow::Borrowed`]; owned only where the element
/// is not UTF-8), so reading a member copies none of them: the records derived from it borrow
/// them in turn ([`derive_views`]) and their JSON is written from the record's bytes.
#[derive(Debug, Clone)]
pub struct MemberLoop<'a> {
    pub member: MemberRead<'a>,
    /// NM101 = `74`: the 2100A name is a correction.
    pub corrected_name: bool,
    /// 2000 DTP*303, *356, *357.
    pub maintenance_effective: Option<NaiveDate>,
    pub eligibility_begin: Option<NaiveDate>,
    pub eligibility_end: Option<NaiveDate>,
    pub division: Option<Cow<'a, str>>,
    pub coverages: Vec<CoverageLoop>,
    pub first: u32,
    pub last: u32,
}

/// The [`Member`] a member loop describes, as far as changes need it (no reporting
/// categories: only the division they name is kept, in [`MemberLoop::division`]).
#[derive(Debug, Clone)]
pub struct MemberRead<'a> {
    pub subscriber_id: Cow<'a, str>,
    pub member_id: Cow<'a, str>,
    pub relationship: Relationship,
    pub maintenance: MaintenanceType,
    pub reason: Option<MaintenanceReason>,
    pub data: DataRead<'a>,
    pub prior_name: Option<NameRead<'a>>,
    pub prior_demographics: Option<Demographics>,
}

impl MemberRead<'_> {
    pub fn is_subscriber(&self) -> bool {
        self.relationship == Relationship::SelfSubscriber
    }
}

/// The [`MemberData`] of a member loop, names and addresses borrowed from the record.
#[derive(Debug, Clone, Default)]
pub struct DataRead<'a> {
    pub name: Option<NameRead<'a>>,
    pub ssn: Option<Cow<'a, str>>,
    pub demographics: Option<Demographics>,
    pub residence: Option<AddressRead<'a>>,
    pub mailing: Option<AddressRead<'a>>,
    pub contacts: Vec<Contact>,
    pub employment_status: Option<EmploymentStatus>,
    pub student_status: Option<StudentStatus>,
    pub handicapped: Option<bool>,
    pub disabilities: Vec<Disability>,
    pub coverages: Vec<Coverage>,
}

impl DataRead<'_> {
    /// The values as a change carries them (a member loop sets no `division` here).
    pub fn view(&self) -> DataView<'_> {
        DataView {
            name: self.name.as_ref().map(NameRead::view),
            ssn: self.ssn.as_deref(),
            demographics: self.demographics.as_ref(),
            residence: self.residence.as_ref().map(AddressRead::view),
            mailing: self.mailing.as_ref().map(AddressRead::view),
            contacts: &self.contacts,
            employment_status: self.employment_status,
            student_status: self.student_status,
            handicapped: self.handicapped,
            disabilities: &self.disabilities,
            coverages: &self.coverages,
            division: None,
        }
    }
}

/// A [`PersonName`] as read (NM103..NM107).
#[derive(Debug, Clone, Default)]
pub struct NameRead<'a> {
    pub last: Cow<'a, str>,
    pub first: Option<Cow<'a, str>>,
    pub middle: Option<Cow<'a, str>>,
    pub prefix: Option<Cow<'a, str>>,
    pub suffix: Option<Cow<'a, str>>,
}

impl NameRead<'_> {
    pub fn view(&self) -> NameView<'_> {
        NameView {
            last: &self.last,
            first: self.first.as_deref(),
            middle: self.middle.as_deref(),
            prefix: self.prefix.as_deref(),
            suffix: self.suffix.as_deref(),
        }
    }
}

/// An [`Address`] as read (N3, N4).
#[derive(Debug, Clone, Default)]
pub struct AddressRead<'a> {
    pub line1: Cow<'a, str>,
    pub line2: Option<Cow<'a, str>>,
    pub city: Cow<'a, str>,
    pub state: Option<Cow<'a, str>>,
    pub postal_code: Option<Cow<'a, str>>,
    pub country: Option<Cow<'a, str>>,
}

impl AddressRead<'_> {
    pub fn view(&self) -> AddressView<'_> {
        AddressView {
            line1: &self.line1,
            line2: self.line2.as_deref(),
            city: &self.city,
            state: self.state.as_deref(),
            postal_code: self.postal_code.as_deref(),
            country: self.country.as_deref(),
        }
    }
}

/// Packed segment and loop IDs ([`crate::schema::pack`]) that [`member_loop`] matches on: the
/// record keeps every segment's ID packed, so a match compares integers, not strings.
mod key {
    use crate::schema::pack_const as p;
    pub const L2000: u64 = p(b"2000");
    pub const L2100A: u64 = p(b"2100A");
    pub const L2100B: u64 = p(b"2100B");
    pub const L2100C: u64 = p(b"2100C");
    pub const L2200: u64 = p(b"2200");
    pub const L2300: u64 = p(b"2300");
    pub const L2310: u64 = p(b"2310");
    pub const L2700: u64 = p(b"2700");
    pub const L2750: u64 = p(b"2750");
    pub const LS_LOOP: u64 = p(b"LS_LOOP");
    pub const INS: u64 = p(b"INS");
    pub const REF: u64 = p(b"REF");
    pub const DTP: u64 = p(b"DTP");
    pub const NM1: u64 = p(b"NM1");
    pub const PER: u64 = p(b"PER");
    pub const N3: u64 = p(b"N3");
    pub const N4: u64 = p(b"N4");
    pub const DMG: u64 = p(b"DMG");
    pub const DSB: u64 = p(b"DSB");
    pub const HD: u64 = p(b"HD");
    pub const N1: u64 = p(b"N1");
    pub const IDC: u64 = p(b"IDC");
    pub const PLA: u64 = p(b"PLA");
    /// Qualifiers (element 1, [`crate::validate::record::RecSeg::qual`]).
    pub const Q_0F: u64 = p(b"0F");
    pub const Q_DX: u64 = p(b"DX");
    pub const Q_17: u64 = p(b"17");
    pub const Q_19: u64 = p(b"19");
    pub const Q_74: u64 = p(b"74");
    pub const Q_P3: u64 = p(b"P3");
    pub const Q_303: u64 = p(b"303");
    pub const Q_348: u64 = p(b"348");
    pub const Q_349: u64 = p(b"349");
    pub const Q_356: u64 = p(b"356");
    pub const Q_357: u64 = p(b"357");
    pub const Q_360: u64 = p(b"360");
    pub const Q_361: u64 = p(b"361");
}

/// One segment of a member record being read: its elements come from the separators the
/// validator found when it recorded the segment ([`Record::element`]), without scanning it.
struct Reader<'a> {
    rec: &'a Record,
    /// The record's bytes as text when they are UTF-8 ([`RecordText`]).
    text: RecordText<'a>,
    i: usize,
    position: u32,
}

/// A record's bytes ([`Record::bytes`]) checked as UTF-8 once, so that its elements are taken
/// as text by slicing, not each checked again: a check per element was one call per value
/// (`from_utf8` was a fifth of [`member_loop`]'s instructions).
#[derive(Clone, Copy)]
struct RecordText<'a>(Option<&'a str>);

impl<'a> RecordText<'a> {
    fn new(rec: &'a Record) -> Self {
        RecordText(std::str::from_utf8(rec.bytes()).ok())
    }

    /// `v` as text when it is UTF-8, as `std::str::from_utf8(v).ok()` gives it. `v` is an
    /// element of the record (a slice of its bytes, or empty); for a record that is UTF-8 the
    /// element is sliced from its text (a slice cut at a separator that splits a character is
    /// not a `str` boundary: `get` says so, and the element is then checked alone).
    #[inline]
    fn str(self, v: &'a [u8]) -> Option<&'a str> {
        if v.is_empty() {
            return Some("");
        }
        if let Some(t) = self.0 {
            // Where `v` lies in the record's bytes: `get` gives the text at the same addresses
            // (the same bytes), or `None` if they are not all within the text.
            let at = (v.as_ptr() as usize).wrapping_sub(t.as_ptr() as usize);
            if let Some(s) = at.checked_add(v.len()).and_then(|end| t.get(at..end)) {
                return Some(s);
            }
        }
        std::str::from_utf8(v).ok()
    }

    /// [`text`] borrowed from the element: a copy only for invalid UTF-8 (made valid as
    /// [`text`] makes it).
    #[inline]
    fn borrowed(self, v: &'a [u8]) -> Cow<'a, str> {
        // Not `String::from_utf8_lossy` alone, which walks valid text in chunks, much slower.
        match self.str(v) {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(String::from_utf8_lossy(v).into_owned()),
        }
    }

    /// [`RecordText::borrowed`], `None` for an empty element.
    #[inline]
    fn opt_borrowed(self, v: &'a [u8]) -> Option<Cow<'a, str>> {
        (!v.is_empty()).then(|| self.borrowed(v))
    }

    /// [`text`] of an element of the record, in a string of `pool` when it has one: the owned
    /// values of member loops (plans, provider names and ids, contacts) are some 80 thousand
    /// short strings per 10 MB, and each was allocated and freed anew ([`MemberSpare`] keeps
    /// them for the next member).
    fn owned_in(self, v: &'a [u8], pool: &mut Vec<String>) -> String {
        match self.borrowed(v) {
            Cow::Borrowed(s) => match pool.pop() {
                Some(mut kept) => {
                    kept.clear();
                    kept.push_str(s);
                    kept
                }
                None => s.to_owned(),
            },
            Cow::Owned(s) => s,
        }
    }

    /// [`opt`] of an element of the record, as [`RecordText::owned_in`] gives it.
    fn opt_in(self, v: &'a [u8], pool: &mut Vec<String>) -> Option<String> {
        (!v.is_empty()).then(|| self.owned_in(v, pool))
    }
}

impl<'a> Reader<'a> {
    /// Element `n` (1-based), as [`crate::lexer::Segment::element`] gives it.
    #[inline]
    fn element(&self, n: usize) -> &'a [u8] {
        self.rec.element(self.i, n)
    }
    fn err(&self, element: u8, kind: DeriveErrorKind) -> DeriveError {
        DeriveError {
            position: self.position,
            segment: text(self.rec.segment(self.i).id()),
            element,
            kind,
        }
    }
    /// Element `n` read by a code list's `from_code_bytes` (not UTF-8 is no code).
    fn code<T>(&self, n: u8, f: fn(&[u8]) -> Option<T>) -> Result<Option<T>, DeriveError> {
        let v = self.element(n as usize);
        if v.is_empty() {
            return Ok(None);
        }
        match f(v) {
            Some(t) => Ok(Some(t)),
            None => Err(self.err(n, DeriveErrorKind::UnknownCode)),
        }
    }
    fn required<T>(&self, n: u8, f: fn(&[u8]) -> Option<T>) -> Result<T, DeriveError> {
        self.code(n, f)?
            .ok_or_else(|| self.err(n, DeriveErrorKind::Missing))
    }
    fn date(&self, n: u8) -> Result<Option<NaiveDate>, DeriveError> {
        let v = self.element(n as usize);
        if v.is_empty() {
            return Ok(None);
        }
        parse_d8(v)
            .map(Some)
            .ok_or_else(|| self.err(n, DeriveErrorKind::BadDate))
    }
    fn name(&self) -> NameRead<'a> {
        NameRead {
            last: self.borrowed(3),
            first: self.opt_borrowed(4),
            middle: self.opt_borrowed(5),
            prefix: self.opt_borrowed(6),
            suffix: self.opt_borrowed(7),
        }
    }
    /// Element `n` as [`RecordText::borrowed`] gives it.
    #[inline]
    fn borrowed(&self, n: usize) -> Cow<'a, str> {
        self.text.borrowed(self.element(n))
    }
    /// Element `n` as [`RecordText::opt_borrowed`] gives it.
    #[inline]
    fn opt_borrowed(&self, n: usize) -> Option<Cow<'a, str>> {
        self.text.opt_borrowed(self.element(n))
    }
    /// Element `n` as [`opt`] gives it, in a string of `pool` ([`RecordText::owned_in`]).
    fn opt_in(&self, n: usize, pool: &mut Vec<String>) -> Option<String> {
        self.text.opt_in(self.element(n), pool)
    }
    /// [`Reader::name`] owned, in strings of `pool` (what `name().view().to_name()` gives).
    fn person_name_in(&self, pool: &mut Vec<String>) -> PersonName {
        PersonName {
            last: self.text.owned_in(self.element(3), pool),
            first: self.opt_in(4, pool),
            middle: self.opt_in(5, pool),
            prefix: self.opt_in(6, pool),
            suffix: self.opt_in(7, pool),
        }
    }
    fn demographics(&self) -> Result<Demographics, DeriveError> {
        Ok(Demographics {
            birth_date: self.date(2)?,
            gender: self.code(3, Gender::from_code_bytes)?,
            marital_status: self.code(4, MaritalStatus::from_code_bytes)?,
        })
    }
}

fn set_street<'a>(addr: &mut Option<AddressRead<'a>>, seg: &Reader<'a>) {
    let a = addr.get_or_insert_with(AddressRead::default);
    a.line1 = seg.borrowed(1);
    a.line2 = seg.opt_borrowed(2);
}

fn set_city<'a>(addr: &mut Option<AddressRead<'a>>, seg: &Reader<'a>) {
    let a = addr.get_or_insert_with(AddressRead::default);
    a.city = seg.borrowed(1);
    a.state = seg.opt_borrowed(2);
    a.postal_code = seg.opt_borrowed(3);
    a.country = seg.opt_borrowed(4);
}

/// The vectors and strings of a member loop that has been used, emptied, for the next one to
/// fill: a conversion reads thousands of member loops one after another, and each would
/// otherwise allocate (and grow, and free) its coverage lists and its owned values anew. What
/// is kept is at most what one member loop held.
#[derive(Debug, Default)]
pub struct MemberSpare {
    coverage_loops: Vec<CoverageLoop>,
    coverages: Vec<Coverage>,
    contacts: Vec<Contact>,
    disabilities: Vec<Disability>,
    /// The owned strings of the coverages and contacts ([`RecordText::owned_in`]).
    strings: Vec<String>,
}

impl MemberSpare {
    /// Keeps `m`'s vectors (emptied) and owned strings for the next member loop, leaving `m`
    /// without them. By reference: a member loop is some 800 bytes, which a move copies.
    fn keep(&mut self, m: &mut MemberLoop<'_>) {
        use std::mem::take;
        let d = &mut m.member.data;
        // Taken in place, not moved out with their coverage (a copy of each): what is left
        // is dropped without freeing a string.
        let mut kept = |s: Option<String>| {
            if let Some(s) = s {
                self.strings.push(s)
            }
        };
        for c in &mut d.coverages {
            kept(c.plan.take());
            if let Some(p) = &mut c.pcp {
                let n = &mut p.name;
                kept(Some(take(&mut n.last)));
                kept(n.first.take());
                kept(n.middle.take());
                kept(n.prefix.take());
                kept(n.suffix.take());
                kept(p.npi.take());
                kept(p.provider_id.take());
            }
            for card in &mut c.id_cards {
                kept(card.plan.take());
            }
        }
        for c in &mut d.contacts {
            kept(Some(take(&mut c.value)));
        }
        self.coverage_loops = emptied(take(&mut m.coverages));
        self.coverages = emptied(take(&mut d.coverages));
        self.contacts = emptied(take(&mut d.contacts));
        self.disabilities = emptied(take(&mut d.disabilities));
    }
}

fn emptied<T>(mut v: Vec<T>) -> Vec<T> {
    v.clear();
    v
}

/// Reads one member loop (as recorded by the validator) into the model.
pub fn member_loop<'a>(rec: &'a Record, std: &Standards) -> Result<MemberLoop<'a>, DeriveError> {
    let mut m = empty_member_loop(&mut MemberSpare::default());
    read_member_loop(rec, std, &mut m, &mut Vec::new())?;
    Ok(m)
}

/// [`member_loop`] into the vectors and strings `spare` kept from earlier ones, handed to `f`
/// where it was read, then kept in `spare` again. Not returned: a member loop is some 800
/// bytes, and returning it (through a `Result`) copied it twice per member.
pub fn with_member_loop<'a, R>(
    rec: &'a Record,
    std: &Standards,
    spare: &mut MemberSpare,
    f: impl FnOnce(&MemberLoop<'a>) -> Result<R, DeriveError>,
) -> Result<R, DeriveError> {
    let mut m = empty_member_loop(spare);
    let result = read_member_loop(rec, std, &mut m, &mut spare.strings).and_then(|()| f(&m));
    spare.keep(&mut m);
    result
}

/// A member loop with nothing read yet, in the vectors `spare` kept.
#[inline(always)]
fn empty_member_loop<'a>(spare: &mut MemberSpare) -> MemberLoop<'a> {
    use std::mem::take;
    MemberLoop {
        member: MemberRead {
            subscriber_id: Cow::Borrowed(""),
            member_id: Cow::Borrowed(""),
            relationship: Relationship::SelfSubscriber,
            maintenance: MaintenanceType::Change,
            reason: None,
            data: DataRead {
                contacts: emptied(take(&mut spare.contacts)),
                disabilities: emptied(take(&mut spare.disabilities)),
                coverages: emptied(take(&mut spare.coverages)),
                ..DataRead::default()
            },
            prior_name: None,
            prior_demographics: None,
        },
        corrected_name: false,
        maintenance_effective: None,
        eligibility_begin: None,
        eligibility_end: None,
        division: None,
        coverages: emptied(take(&mut spare.coverage_loops)),
        first: 0,
        last: 0,
    }
}

/// Reads the member loop `rec` into `m`, [`empty_member_loop`], its owned values in strings
/// of `pool`.
fn read_member_loop<'a>(
    rec: &'a Record,
    std: &Standards,
    m: &mut MemberLoop<'a>,
    pool: &mut Vec<String>,
) -> Result<(), DeriveError> {
    use key::*;
    let schema = &std.schema;
    let mut ref_dx = None;
    // The reporting categories (2000 REF*17, 2750 N1) as far as the division needs them: the
    // last one's name, and whether there is one at all.
    let mut category: Option<&[u8]> = None;
    let mut in_coverage = false;
    let mut saw_ins = false;
    let text = RecordText::new(rec);
    for (i, r) in rec.segs.iter().enumerate() {
        let seg = &Reader {
            rec,
            text,
            i,
            position: r.position,
        };
        if m.first == 0 {
            m.first = r.position;
        }
        m.last = r.position;
        let lp = schema
            .segments
            .get(r.seg_ix)
            .and_then(|s| schema.loops.get(s.loop_ix));
        // A loop ID longer than 7 bytes does not pack (its key is u64::MAX) and matches no key
        // below; the coverage arm looks at the ID itself.
        let loop_key = lp.map_or(u64::MAX, |l| l.key);
        // Element 1 as the validator packed it: equal to a key exactly when the bytes are
        // (a qualifier over 7 bytes packs to none), without finding the element.
        let q = r.qual;
        let d = &mut m.member.data;
        match (loop_key, r.key) {
            (L2000, INS) => {
                saw_ins = true;
                m.member.relationship = seg.required(2, Relationship::from_code_bytes)?;
                m.member.maintenance = seg.required(3, MaintenanceType::from_code_bytes)?;
                m.member.reason = seg.code(4, MaintenanceReason::from_code_bytes)?;
                d.employment_status = seg.code(8, EmploymentStatus::from_code_bytes)?;
                d.student_status = seg.code(9, StudentStatus::from_code_bytes)?;
                d.handicapped = match seg.element(10) {
                    b"Y" => Some(true),
                    b"N" => Some(false),
                    b"" => None,
                    _ => return Err(seg.err(10, DeriveErrorKind::UnknownCode)),
                };
            }
            (L2000, REF) => match q {
                Q_0F => m.member.subscriber_id = seg.borrowed(2),
                Q_DX => ref_dx = seg.opt_borrowed(2),
                Q_17 => category = Some(b"client_reporting_category"),
                _ => {}
            },
            (L2000, DTP) => match q {
                Q_303 => m.maintenance_effective = seg.date(3)?,
                Q_356 => m.eligibility_begin = seg.date(3)?,
                Q_357 => m.eligibility_end = seg.date(3)?,
                _ => {}
            },
            (L2100A, NM1) => {
                m.corrected_name = q == Q_74;
                d.name = Some(seg.name());
                let id = seg.opt_borrowed(9);
                if seg.element(8) == b"34" {
                    d.ssn = id;
                } else if let Some(id) = id {
                    m.member.member_id = id;
                }
            }
            (L2100A, PER) => {
                for (k, v) in [(3u8, 4usize), (5, 6), (7, 8)] {
                    if let Some(kind) = seg.code(k, ContactKind::from_code_bytes)? {
                        d.contacts.push(Contact {
                            kind,
                            value: seg.text.owned_in(seg.element(v), pool),
                        });
                    }
                }
            }
            (L2100A, N3) => set_street(&mut d.residence, seg),
            (L2100A, N4) => set_city(&mut d.residence, seg),
            (L2100A, DMG) => d.demographics = Some(seg.demographics()?),
            (L2100B, NM1) => m.member.prior_name = Some(seg.name()),
            (L2100B, DMG) => m.member.prior_demographics = Some(seg.demographics()?),
            (L2100C, N3) => set_street(&mut d.mailing, seg),
            (L2100C, N4) => set_city(&mut d.mailing, seg),
            (L2200, DSB) => d.disabilities.push(Disability {
                kind: seg.code(1, DisabilityType::from_code_bytes)?,
                start: None,
                end: None,
            }),
            (L2200, DTP) => {
                let date = seg.date(3)?;
                if let Some(dis) = d.disabilities.last_mut() {
                    match q {
                        Q_360 => dis.start = date,
                        Q_361 => dis.end = date,
                        _ => {}
                    }
                }
            }
            (L2300, HD) => {
                in_coverage = true;
                let mut c = Coverage::new(seg.required(3, InsuranceLine::from_code_bytes)?);
                c.plan = seg.opt_in(4, pool);
                c.coverage_level = seg.code(5, CoverageLevel::from_code_bytes)?;
                m.coverages.push(CoverageLoop {
                    action: seg.required(1, MaintenanceType::from_code_bytes)?,
                    maintenance_effective: None,
                    pcp_effective: None,
                    first: r.position,
                    last: r.position,
                });
                d.coverages.push(c);
            }
            (LS_LOOP | L2700 | L2750, _) => {
                in_coverage = false;
                if loop_key == L2750 {
                    match r.key {
                        N1 => category = Some(seg.element(2)),
                        REF => {
                            // The category's value; the division when it names one. (The
                            // name as bytes: only ASCII can equal `DIVISION`, as text or not.)
                            if let Some(name) = category {
                                if q == Q_19 || name.eq_ignore_ascii_case(b"DIVISION") {
                                    m.division = seg.opt_borrowed(2);
                                }
                            }
                        }
                        DTP => {
                            // A category's date: checked as the model reads it, not kept.
                            seg.date(3)?;
                        }
                        _ => {}
                    }
                }
            }
            (l, id) if in_coverage && lp.is_some_and(|lp| lp.id.starts_with("23")) => {
                let (Some(cl), Some(c)) = (m.coverages.last_mut(), d.coverages.last_mut()) else {
                    continue;
                };
                cl.last = r.position;
                match (l, id) {
                    (L2300, DTP) => match q {
                        Q_348 => c.begin = seg.date(3)?,
                        Q_349 => c.end = seg.date(3)?,
                        Q_303 => cl.maintenance_effective = seg.date(3)?,
                        _ => {}
                    },
                    (L2300, IDC) => c.id_cards.push(IdCard {
                        card_type: seg.required(2, CardType::from_code_bytes)?,
                        plan: seg.opt_in(1, pool),
                        count: seg
                            .text
                            .str(seg.element(3))
                            .and_then(|s| s.parse::<f64>().ok())
                            .filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n < 1e6)
                            .map(|n| n as u32),
                        action: seg.code(4, CardAction::from_code_bytes)?,
                    }),
                    (L2310, NM1) if q == Q_P3 => {
                        let mut p = Provider {
                            name: seg.person_name_in(pool),
                            ..Provider::default()
                        };
                        match seg.element(8) {
                            b"XX" => p.npi = seg.opt_in(9, pool),
                            _ => p.provider_id = seg.opt_in(9, pool),
                        }
                        c.pcp = Some(p);
                    }
                    (L2310, PLA) => {
                        cl.pcp_effective = seg.date(3)?;
                        let reason = seg.code(5, MaintenanceReason::from_code_bytes)?;
                        if let Some(p) = &mut c.pcp {
                            p.change_reason = reason;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !saw_ins {
        return Err(DeriveError {
            position: m.first,
            segment: "INS".into(),
            element: 1,
            kind: DeriveErrorKind::Missing,
        });
    }
    if m.member.subscriber_id.is_empty() {
        return Err(DeriveError {
            position: m.first,
            segment: "REF".into(),
            element: 2,
            kind: DeriveErrorKind::Missing,
        });
    }
    if m.member.member_id.is_empty() && m.member.is_subscriber() {
        m.member.member_id = m.member.subscriber_id.clone();
    }
    if m.division.is_none() {
        m.division = ref_dx;
    }
    Ok(())
}

/// Applies the INS03 × HD01 table (x12-834.md §2.2) to one member loop.
pub fn derive(h: &HeaderContext, m: &MemberLoop<'_>) -> Result<Vec<ChangeRecord>, DeriveError> {
    let mut out = Vec::new();
    derive_views(h, m, &mut |v| out.push(v.to_record().seal()))?;
    Ok(out)
}

/// [`derive`] without the ids: every `change_id` is empty. For writers that compute the id
/// from the JSON they write anyway ([`ChangeRecord::write_json_sealing`]).
pub fn derive_unsealed(
    h: &HeaderContext,
    m: MemberLoop<'_>,
) -> Result<Vec<ChangeRecord>, DeriveError> {
    let mut out = Vec::new();
    derive_views(h, &m, &mut |v| out.push(v.to_record()))?;
    Ok(out)
}

/// The table itself: hands each change, in order, to `emit` as a view borrowed from `h` and
/// `m` (its `change_id` empty), which a writer encodes without copying the values
/// ([`RecordView::write_json_sealing`]). All or nothing: when the loop cannot be converted the
/// error comes before any change is emitted. The view is lent, not moved: every writer only
/// reads it, and a view of several hundred bytes need not be handed over by value through the
/// `dyn` call.
pub fn derive_views<'a>(
    h: &'a HeaderContext,
    m: &'a MemberLoop<'_>,
    emit: &mut dyn FnMut(&RecordView<'a>),
) -> Result<(), DeriveError> {
    let mem = &m.member;
    let data = &mem.data;
    let record = |kind: ChangeKind,
                  eff: Option<NaiveDate>,
                  new: DataView<'a>,
                  old: Option<DataView<'a>>,
                  (first, last): (u32, u32)| {
        RecordView {
            schema: SCHEMA_VERSION,
            change_id: "",
            kind,
            effective_date: eff,
            group_id: h.group_id.as_deref(),
            division: m.division.as_deref(),
            subscriber_id: &mem.subscriber_id,
            member_id: &mem.member_id,
            relationship: mem.relationship,
            reason: mem.reason,
            new,
            old,
            source: SourceView::X12 {
                file: &h.file,
                isa13: &h.isa13,
                gs06: &h.gs06,
                st02: &h.st02,
                first_segment: first,
                last_segment: last,
            },
            broker_license: h.broker_license.as_deref(),
            status: None,
            invoice_period: None,
        }
    };
    let whole = (m.first, m.last);
    let contradiction = |c: &CoverageLoop| DeriveError {
        position: c.first,
        segment: "HD".into(),
        element: 1,
        kind: DeriveErrorKind::Contradictory,
    };
    let member_eff = m
        .maintenance_effective
        .or(h.maintenance_effective)
        .or(h.file_effective);
    let earliest_begin = data.coverages.iter().filter_map(|c| c.begin).min();
    let only = |allowed: MaintenanceType| -> Result<(), DeriveError> {
        match m.coverages.iter().find(|c| c.action != allowed) {
            Some(c) => Err(contradiction(c)),
            None => Ok(()),
        }
    };
    // The member values an add or audit carries: everything the sender said about the member
    // (made where it is used: a change or termination mostly does without it, and it is some
    // 200 bytes); a termination or reinstatement carries the coverages.
    let snapshot = || data.view();
    let coverages = DataView {
        coverages: &data.coverages,
        ..DataView::default()
    };
    match mem.maintenance {
        MaintenanceType::Addition => {
            only(MaintenanceType::Addition)?;
            let kind = if mem.is_subscriber() {
                ChangeKind::AddSubscriber
            } else {
                ChangeKind::AddDependent
            };
            let eff = earliest_begin.or(m.eligibility_begin).or(h.file_effective);
            emit(&record(kind, eff, snapshot(), None, whole));
        }
        MaintenanceType::Audit => {
            only(MaintenanceType::Audit)?;
            let eff = earliest_begin.or(h.file_effective);
            emit(&record(ChangeKind::Audit, eff, snapshot(), None, whole));
        }
        MaintenanceType::Termination => {
            only(MaintenanceType::Termination)?;
            let latest_end = data.coverages.iter().filter_map(|c| c.end).max();
            let eff = m.eligibility_end.or(latest_end).or(member_eff);
            emit(&record(
                ChangeKind::TerminateMember,
                eff,
                coverages,
                None,
                whole,
            ));
        }
        MaintenanceType::Reinstatement => {
            only(MaintenanceType::Reinstatement)?;
            let eff = earliest_begin.or(m.eligibility_begin).or(member_eff);
            emit(&record(ChangeKind::Reinstate, eff, coverages, None, whole));
        }
        MaintenanceType::Change => {
            // The first coverage the table has no change for fails the whole loop: found
            // before anything is emitted.
            let refused = m.coverages.iter().find(|c| {
                matches!(
                    c.action,
                    MaintenanceType::Audit | MaintenanceType::EmployeeInformationNotApplicable
                )
            });
            if let Some(c) = refused {
                return Err(match c.action {
                    MaintenanceType::Audit => contradiction(c),
                    _ => DeriveError {
                        kind: DeriveErrorKind::Unsupported,
                        ..contradiction(c)
                    },
                });
            }
            let mut emitted = 0usize;
            member_changes(m, member_eff, &mut |k, e, n, o| {
                emitted += 1;
                emit(&record(k, e, n, o, whole))
            });
            for (c, cov) in m.coverages.iter().zip(&data.coverages) {
                let span = (c.first, c.last);
                let one = DataView {
                    coverages: std::slice::from_ref(cov),
                    ..DataView::default()
                };
                let mut put = |kind: ChangeKind, eff: Option<NaiveDate>| {
                    emitted += 1;
                    emit(&record(kind, eff, one, None, span))
                };
                let eff_303 = c.maintenance_effective.or(member_eff);
                match c.action {
                    MaintenanceType::Addition => {
                        put(ChangeKind::AddCoverage, cov.begin.or(eff_303));
                    }
                    MaintenanceType::Termination => {
                        put(ChangeKind::TerminateCoverage, cov.end.or(eff_303));
                    }
                    MaintenanceType::Reinstatement => {
                        put(ChangeKind::Reinstate, cov.begin.or(eff_303));
                    }
                    MaintenanceType::Delete => put(
                        ChangeKind::Cancel,
                        c.maintenance_effective.or(cov.begin).or(member_eff),
                    ),
                    MaintenanceType::Correction => put(
                        ChangeKind::CoverageCorrection,
                        c.maintenance_effective.or(cov.begin).or(member_eff),
                    ),
                    MaintenanceType::Change => {
                        let eff = eff_303.or(cov.begin);
                        let mut any = false;
                        if cov.pcp.is_some() {
                            put(ChangeKind::PcpChange, c.pcp_effective.or(eff));
                            any = true;
                        }
                        if !cov.id_cards.is_empty() {
                            put(ChangeKind::IdCardOrder, eff);
                            any = true;
                        }
                        if !any && cov.plan.is_some() {
                            put(ChangeKind::PlanChange, eff);
                        }
                        if !any && cov.coverage_level.is_some() {
                            put(ChangeKind::CoverageLevelChange, eff);
                        }
                    }
                    // Refused above.
                    MaintenanceType::Audit | MaintenanceType::EmployeeInformationNotApplicable => {}
                }
            }
            if emitted == 0 {
                emit(&record(
                    ChangeKind::MemberChange,
                    member_eff,
                    snapshot(),
                    None,
                    whole,
                ));
            }
        }
        MaintenanceType::Delete
        | MaintenanceType::Correction
        | MaintenanceType::EmployeeInformationNotApplicable => {
            return Err(DeriveError {
                position: m.first,
                segment: "INS".into(),
                element: 3,
                kind: DeriveErrorKind::Contradictory,
            })
        }
    }
    Ok(())
}

/// The member-level changes of an INS03 `001` loop (name, demographics, address, division).
fn member_changes<'a>(
    m: &'a MemberLoop<'_>,
    eff: Option<NaiveDate>,
    emit: &mut dyn FnMut(ChangeKind, Option<NaiveDate>, DataView<'a>, Option<DataView<'a>>),
) {
    let d = &m.member.data;
    let prior = m.member.prior_name.as_ref().map(NameRead::view);
    if let Some(name) = d.name.as_ref().map(NameRead::view) {
        if prior.is_some_and(|p| p != name) || (prior.is_none() && m.corrected_name) {
            emit(
                ChangeKind::NameChange,
                eff,
                DataView {
                    name: Some(name),
                    ..DataView::default()
                },
                prior.map(|p| DataView {
                    name: Some(p),
                    ..DataView::default()
                }),
            );
        }
    }
    if let Some(demo) = d.demographics.as_ref().filter(|x| !x.is_empty()) {
        let old = m.member.prior_demographics.as_ref();
        let changed = match (prior, old) {
            (None, None) => true,
            (_, Some(o)) => o != demo,
            (Some(_), None) => false,
        };
        if changed {
            emit(
                ChangeKind::DemographicChange,
                eff,
                DataView {
                    demographics: Some(demo),
                    ..DataView::default()
                },
                old.map(|o| DataView {
                    demographics: Some(o),
                    ..DataView::default()
                }),
            );
        }
    }
    if d.residence.is_some() || d.mailing.is_some() {
        emit(
            ChangeKind::AddressChange,
            eff,
            DataView {
                residence: d.residence.as_ref().map(AddressRead::view),
                mailing: d.mailing.as_ref().map(AddressRead::view),
                contacts: &d.contacts,
                ..DataView::default()
            },
            None,
        );
    }
    if let Some(div) = &m.division {
        emit(
            ChangeKind::DivisionChange,
            eff,
            DataView {
                division: Some(div),
                ..DataView::default()
            },
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::TransactionStatus;

    /// The id as the definition says it, written the slow, obvious way.
    fn reference_id(r: &ChangeRecord) -> String {
        let mut probe = r.clone();
        probe.change_id.clear();
        probe.status = None;
        probe.invoice_period = None;
        let mut h = Sha256::new();
        h.update(b"eligo.change.v1\0");
        h.update(serde_json::to_vec(&probe).unwrap());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    /// Records that use every optional part, strings that need escaping, and dates outside
    /// years 0 to 9999.
    fn records() -> Vec<ChangeRecord> {
        let odd = "Ö'Brien \"Jr\" \\ a/b \u{1}\t\n\r\u{7f}\u{2028} 名";
        let full = MemberData {
            name: Some(PersonName {
                last: odd.into(),
                first: Some("A,B".into()),
                middle: Some(String::new()),
                prefix: Some("DR".into()),
                suffix: Some("III".into()),
            }),
            ssn: Some("123456789".into()),
            demographics: Some(Demographics {
                birth_date: date(-44, 3, 15),
                gender: Some(Gender::Unknown),
                marital_status: Some(MaritalStatus::Widowed),
            }),
            residence: Some(Address {
                line1: "1 MAIN ST".into(),
                line2: Some("APT \"2\"".into()),
                city: "X".into(),
                state: Some("CT".into()),
                postal_code: Some("06114".into()),
                country: Some("US".into()),
            }),
            mailing: Some(Address::default()),
            contacts: vec![Contact {
                kind: ContactKind::Email,
                value: "a@b.c".into(),
            }],
            employment_status: Some(EmploymentStatus::Retired),
            student_status: Some(StudentStatus::PartTime),
            handicapped: Some(false),
            disabilities: vec![Disability {
                kind: Some(DisabilityType::LongTerm),
                start: date(10000, 1, 1),
                end: date(2025, 12, 31),
            }],
            coverages: vec![Coverage {
                insurance_line: InsuranceLine::TwentyFourHourCare,
                plan: Some("P,1".into()),
                coverage_level: Some(CoverageLevel::Family),
                begin: date(2025, 2, 1),
                end: date(1, 1, 1),
                pcp: Some(Provider {
                    name: PersonName::default(),
                    npi: Some("1990000014".into()),
                    provider_id: Some("X".into()),
                    change_reason: Some(MaintenanceReason::PcpChange),
                }),
                id_cards: vec![IdCard {
                    card_type: CardType::Health,
                    plan: None,
                    count: Some(2),
                    action: Some(CardAction::Replace),
                }],
            }],
            division: Some("D\u{0}".into()),
        };
        let base = ChangeRecord {
            schema: SCHEMA_VERSION.into(),
            change_id: String::new(),
            kind: ChangeKind::AddSubscriber,
            effective_date: date(2025, 2, 1),
            group_id: Some("GRP\"1".into()),
            division: None,
            subscriber_id: odd.into(),
            member_id: String::new(),
            relationship: Relationship::SelfSubscriber,
            reason: Some(MaintenanceReason::InitialEnrollment),
            new: full.clone(),
            old: Some(MemberData::default()),
            source: SourceTrace::X12 {
                file: "a,b.x12".into(),
                isa13: "000000001".into(),
                gs06: "1".into(),
                st02: "0001".into(),
                first_segment: 11,
                last_segment: 31,
            },
            broker_license: Some("004471203".into()),
            status: None,
            invoice_period: None,
        };
        let mut out = Vec::new();
        for (i, kind) in ChangeKind::ALL.iter().enumerate() {
            let mut r = base.clone();
            r.kind = *kind;
            if i % 2 == 1 {
                r.effective_date = None;
                r.group_id = None;
                r.division = Some("DIV".into());
                r.reason = None;
                r.new = MemberData::default();
                r.old = None;
                r.broker_license = None;
            }
            if i % 3 == 1 {
                r.status = Some(TransactionStatus::Pending);
                r.invoice_period = Some("2025-02".into());
                r.old = Some(full.clone());
            }
            if i % 3 == 2 {
                r.change_id = "stale".into();
                r.source = SourceTrace::Portal {
                    file: "p.csv".into(),
                    layout: PortalLayout::Roster,
                    first_row: 2,
                    last_row: 3,
                    transaction_id: (i % 2 == 0).then(|| "T1".into()),
                    status: Some(PortalStatus::PendingFamilyHealthStatement),
                };
            }
            out.push(r);
        }
        out
    }

    #[test]
    fn write_json_is_what_serde_json_writes() {
        for r in records() {
            let mut out = b"prefix".to_vec();
            let spans = r.write_json(&mut out).unwrap();
            let want = serde_json::to_vec(&r).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out[6..]),
                String::from_utf8_lossy(&want)
            );
            assert_eq!(spans.record, 6..out.len());
            assert_eq!(&out[spans.change_id], r.change_id.as_bytes());
            assert_eq!(&out[spans.new], serde_json::to_vec(&r.new).unwrap());
            match (&r.old, spans.old) {
                (Some(o), Some(s)) => assert_eq!(&out[s], serde_json::to_vec(o).unwrap()),
                (None, None) => {}
                other => panic!("old span {other:?}"),
            }
        }
    }

    #[test]
    fn sealing_while_writing_gives_the_defined_id_and_the_sealed_bytes() {
        for r in records() {
            let id = reference_id(&r);
            assert_eq!(r.compute_id(), id);
            let sealed = r.clone().seal();
            assert_eq!(sealed.change_id, id);
            let mut out = Vec::new();
            let spans = r.write_json_sealing(&mut out).unwrap();
            assert_eq!(&out[spans.change_id], id.as_bytes());
            assert_eq!(out, serde_json::to_vec(&sealed).unwrap());
        }
    }

    #[test]
    fn records_read_back_are_the_records_written() {
        for r in records() {
            let json = serde_json::to_vec(&r).unwrap();
            let back: ChangeRecord = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, r);
        }
    }

    /// Records read one after another into the same record (as the run reads its spool back
    /// into records already recorded) are the records read afresh, whatever each held before:
    /// fields that one line has and the next has not, arrays longer or shorter, a portal trace,
    /// a line serde_json reads, and after a broken line.
    #[test]
    fn records_read_into_a_record_are_the_records_read_afresh() {
        let serde = |b: &[u8]| serde_json::from_slice::<ChangeRecord>(b).map_err(|e| e.to_string());
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for r in records_and_plain_records() {
            let mut json = Vec::new();
            r.write_json(&mut json).unwrap();
            lines.push(json);
        }
        let n = lines.len();
        // Each line after each other one, both ways, and broken lines among them.
        let mut order: Vec<Vec<u8>> = Vec::new();
        for i in 0..n {
            for j in 0..n {
                order.push(lines[i].clone());
                order.push(lines[j].clone());
                order.push(lines[j][..lines[j].len() / 2].to_vec());
            }
        }
        assert!(lines
            .iter()
            .any(|l| crate::changejson::read_record(l).is_some()));
        let mut slot = ChangeRecord::from_json(&lines[0]).unwrap();
        for line in &order {
            // A line cut inside a character is no JSON for serde_json either.
            let Ok(line) = std::str::from_utf8(line) else {
                assert!(serde(line).is_err());
                continue;
            };
            match slot.read_json(line) {
                Ok(_) => assert_eq!(Ok(&slot), serde(line.as_bytes()).as_ref()),
                Err(e) => {
                    assert_eq!(Err(e.to_string()), serde(line.as_bytes()));
                    slot = ChangeRecord::from_json(&lines[0]).unwrap();
                }
            }
        }
    }

    /// `records()`, which is full of escapes (serde_json reads those), and the same records
    /// without any, with non-ASCII text and plain dates, which are read by hand.
    fn records_and_plain_records() -> Vec<ChangeRecord> {
        let plain = "Ö'Brien a/b \u{7f}\u{2028} 名";
        let mut all = records();
        for mut r in records() {
            r.subscriber_id = plain.into();
            r.group_id = r.group_id.map(|_| "GRP1".into());
            for d in std::iter::once(&mut r.new).chain(r.old.as_mut()) {
                if let Some(n) = &mut d.name {
                    n.last = plain.into();
                }
                if let Some(a) = &mut d.residence {
                    a.line2 = Some("APT 2".into());
                }
                if d.division.is_some() {
                    d.division = Some("D".into());
                }
                if let Some(g) = &mut d.demographics {
                    g.birth_date = date(1980, 2, 29);
                }
                for x in &mut d.disabilities {
                    x.start = date(2024, 2, 29);
                }
                for c in &mut d.coverages {
                    c.end = date(2025, 12, 31);
                }
            }
            all.push(r);
        }
        all
    }

    #[test]
    fn records_read_by_hand_are_what_serde_json_reads() {
        let serde = |b: &[u8]| serde_json::from_slice::<ChangeRecord>(b).map_err(|e| e.to_string());
        let ours = |b: &[u8]| ChangeRecord::from_json(b).map_err(|e| e.to_string());
        let all = records_and_plain_records();
        let mut fast = 0;
        for r in &all {
            let mut json = Vec::new();
            r.write_json(&mut json).unwrap();
            assert_eq!(ours(&json), serde(&json));
            assert_eq!(ours(&json).as_ref(), Ok(r));
            if crate::changejson::read_record(&json).is_none() {
                continue;
            }
            fast += 1;
            // Whatever the hand reader takes of a broken line, it reads as serde_json does
            // (or leaves it to serde_json, whose error it then is).
            for cut in 0..json.len() {
                assert_eq!(ours(&json[..cut]), serde(&json[..cut]), "cut {cut}");
            }
            for at in 0..json.len() {
                for c in [
                    b' ', b'"', b'\\', b'0', b'9', b'a', b'}', b']', b',', b':', b'n', 1, 0xff,
                ] {
                    let mut j = json.clone();
                    j[at] = c;
                    assert_eq!(ours(&j), serde(&j), "{}", String::from_utf8_lossy(&j));
                }
            }
        }
        // The clean X12 records (a third of them have a portal trace, left to serde_json).
        assert_eq!(fast, 12);
    }

    #[test]
    fn a_source_trace_reads_as_the_derived_definition_reads_it() {
        let derived = |j: &str| {
            let mut d = serde_json::Deserializer::from_str(j);
            SourceTraceDef::deserialize(&mut d).map_err(|e| e.to_string())
        };
        let ours = |j: &str| serde_json::from_str::<SourceTrace>(j).map_err(|e| e.to_string());
        let x12 = r#""file":"a.x12","isa13":"1","gs06":"2","st02":"3","first_segment":4,"last_segment":5"#;
        let portal = r#""file":"p.csv","layout":"roster","first_row":2,"last_row":3"#;
        for j in [
            format!(r#"{{"type":"x12",{x12}}}"#),
            format!(r#"{{"type":"x12",{x12},"extra":[1,{{}}],"layout":"roster"}}"#),
            format!(r#"{{"type":"portal",{portal}}}"#),
            format!(r#"{{"type":"portal",{portal},"transaction_id":null,"status":null}}"#),
            format!(r#"{{"type":"portal",{portal},"transaction_id":"T","status":"pending"}}"#),
            format!(
                r#"{{"type":"portal",{portal},"status":"Pending - awaiting Family Health Statement"}}"#
            ),
            format!(r#"{{{x12},"type":"x12"}}"#),
            r#"{"file":"x","type":"portal","layout":"transactions","first_row":1,"last_row":1}"#
                .to_string(),
            r#"["x12","a","b","c","d",1,2]"#.to_string(),
        ] {
            assert_eq!(ours(&j), derived(&j), "{j}");
            assert!(ours(&j).is_ok(), "{j}");
        }
        // Errors: the same kind of message (positions may differ).
        for j in [
            r#"{"type":"x12","file":"a"}"#.to_string(),
            r#"{"type":"mail"}"#.to_string(),
            r#"{}"#.to_string(),
            format!(r#"{{"type":"x12",{x12},"file":"b"}}"#),
            format!(r#"{{"type":"portal",{portal},"status":"lost"}}"#),
        ] {
            let (a, b) = (ours(&j).unwrap_err(), derived(&j).unwrap_err());
            let cut = |s: &str| s.split(" at line").next().unwrap_or("").to_string();
            assert_eq!(cut(&a), cut(&b), "{j}");
        }
    }

    #[test]
    fn member_loops_read_into_kept_vectors_are_the_loops_read_fresh() {
        use crate::check::{check_stream, Engine, Observer};
        use crate::finding::Finding;
        struct Both {
            spare: MemberSpare,
            members: usize,
            most_coverages: usize,
            /// Strings kept for the next member: the values read into them are compared too.
            most_kept: usize,
        }
        impl Observer for Both {
            fn finding(&mut self, _f: Finding) {}
            fn member(&mut self, rec: &Record, std: &Standards) {
                let fresh = member_loop(rec, std).map(|m| format!("{m:?}"));
                let kept = with_member_loop(rec, std, &mut self.spare, |m| {
                    self.most_coverages = self.most_coverages.max(m.coverages.len());
                    Ok(format!("{m:?}"))
                });
                assert_eq!(format!("{fresh:?}"), format!("{kept:?}"));
                self.members += 1;
                self.most_kept = self.most_kept.max(self.spare.strings.len());
            }
        }
        let engine = Engine::embedded();
        for (seed, full, error_rate) in [(3, false, 0.0), (4, true, 0.0), (5, false, 0.05)] {
            let mut x12 = Vec::new();
            let o = crate::gen::GenOptions {
                size_mb: 0.3,
                seed,
                full,
                error_rate,
                sets: 2,
            };
            crate::gen::generate(&o, &mut x12).unwrap();
            let mut both = Both {
                spare: MemberSpare::default(),
                members: 0,
                most_coverages: 0,
                most_kept: 0,
            };
            check_stream(&engine, &x12[..], &mut both);
            assert!(both.members > 100, "{seed}: {} members", both.members);
            assert!(both.most_coverages > 1, "{seed}");
            assert!(both.most_kept > 1, "{seed}");
        }
    }

    #[test]
    fn dates_read_with_the_memo_are_the_dates_parsed() {
        // Hits, misses, and invalid values between equal valid ones (never remembered).
        let values: [&[u8]; 9] = [
            b"20250201",
            b"20250201",
            b"20250301",
            b"2025020",
            b"20250201",
            b"20251301",
            b"17991231",
            b"2025020x",
            b"20250201",
        ];
        for v in values {
            assert_eq!(
                parse_d8(v),
                crate::validate::element::parse_date(v),
                "{}",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn hex_pairs_are_the_lower_case_hex_of_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(HEX_PAIRS[b as usize][..], *format!("{b:02x}").as_bytes());
        }
    }

    #[test]
    fn ids_resumed_after_the_first_block_are_the_defined_ids() {
        assert!(ID_FIRST_BLOCK.starts_with(SCHEMA_VERSION.as_bytes()));
        let plain = |json: &[u8]| {
            let mut h = Sha256::new();
            h.update(b"eligo.change.v1\0");
            h.update(json);
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            hex
        };
        let mut json = Vec::new();
        records()[0]
            .write_json_with_id(Some(""), &mut json)
            .unwrap();
        // The saved state is taken whatever the parts' cut; a JSON that does not start with
        // the constant block (another schema, shorter than it) is hashed from the start.
        let mut other = json.clone();
        other[12] = b'E';
        for j in [&json[..], &other[..], &json[..30], b"", b"{}"] {
            for cut in 0..j.len().min(160) {
                let id = id_hex(&[&j[..cut], &j[cut..]]);
                assert_eq!(std::str::from_utf8(&id).unwrap(), plain(j), "cut {cut}");
            }
        }
        // Second blocks remembered, found again and replaced: more distinct ones than are
        // kept, each hashed twice, in parts cut inside the second block.
        for round in 0..2 {
            for k in 0..SECOND_BLOCKS * 2 + 3 {
                let mut j = json.clone();
                j[70 + k % 40] = b'a' + (k / 40) as u8 + (k % 7) as u8;
                for cut in [0, 48, 49, 100, 112, 113, j.len()] {
                    let id = id_hex(&[&j[..cut], &j[cut..]]);
                    assert_eq!(std::str::from_utf8(&id).unwrap(), plain(&j), "{round} {k}");
                }
            }
        }
        let mut r = records()[0].clone();
        r.schema = "eligo.change.v0".into();
        assert_eq!(r.compute_id(), reference_id(&r));
    }

    /// Elements taken from a record's text checked once ([`RecordText`]) are what checking
    /// each element alone gives, for records of ASCII, of multi-byte characters, with invalid
    /// UTF-8, and with an element separator (0xA9) that is also the last byte of `é`, so that
    /// elements start or end inside a character.
    #[test]
    fn elements_from_the_record_text_are_the_elements_checked_alone() {
        use crate::lexer::{Delimiters, Position, Segment, Splitter};
        use crate::validate::record::Placed;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as usize
        };
        let tokens: [&[u8]; 8] = [
            b"A",
            b"z9",
            b" ",
            "é".as_bytes(),
            "中".as_bytes(),
            "😀".as_bytes(),
            b"*",
            b"",
        ];
        let invalid: [&[u8]; 3] = [b"\xff", b"\xc3", b"\x80"];
        let (mut valid_records, mut invalid_records) = (0, 0);
        for sep in [b'*', 0xa9] {
            let delims = Delimiters {
                element: sep,
                ..Delimiters::DEFAULT
            };
            for _ in 0..400 {
                let mut rec = Record::default();
                rec.clear(delims);
                let mut splitter = Splitter::default();
                for position in 1..=1 + next(5) as u32 {
                    let mut raw = b"NM1".to_vec();
                    for _ in 0..next(9) {
                        raw.push(sep);
                        for _ in 0..next(6) {
                            if next(60) == 0 {
                                raw.extend_from_slice(invalid[next(3)]);
                            } else {
                                raw.extend_from_slice(tokens[next(8)]);
                            }
                        }
                    }
                    let seg = Segment::new(&raw, delims, Position::default());
                    let fields = splitter.split(&raw, sep);
                    let placed = Placed {
                        seg_ix: 0,
                        key: 0,
                        qual: 0,
                        position,
                    };
                    rec.push(&seg, &fields, placed, &[], 0, 0);
                }
                let text = RecordText::new(&rec);
                match text.0 {
                    Some(_) => valid_records += 1,
                    None => invalid_records += 1,
                }
                for i in 0..rec.segs.len() {
                    for n in 0..12 {
                        let v = rec.element(i, n);
                        assert_eq!(text.str(v), std::str::from_utf8(v).ok(), "{v:?}");
                        // In a kept string (not empty, as [`MemberSpare::keep`] leaves them)
                        // and in a new one.
                        let mut pool = vec![String::from("kept")];
                        let lossy = String::from_utf8_lossy(v);
                        assert_eq!(text.owned_in(v, &mut pool), lossy, "{v:?}");
                        assert_eq!(text.owned_in(v, &mut pool), lossy, "{v:?}");
                        pool.push(String::from("kept"));
                        assert_eq!(text.opt_in(v, &mut pool), opt(v), "{v:?}");
                    }
                }
            }
        }
        assert!(valid_records > 100 && invalid_records > 100);
    }
}
