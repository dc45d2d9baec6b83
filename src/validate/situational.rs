//! Situational (SNIP level 4) and balancing (level 3) rules.
use super::record::Record;
use super::Tally;
use crate::finding::Finding;
use crate::schema::Schema;

/// The rules of one transaction, loaded from `schemas/x12/*.rules.json`.
#[derive(Debug, Default)]
pub struct RuleSet {}

impl RuleSet {
    pub fn check_member(&self, _s: &Schema, _h: &Record, _m: &Record, _out: &mut Vec<Finding>) {}
    pub fn check_set(&self, _s: &Schema, _h: &Record, _t: &Tally, _out: &mut Vec<Finding>) {}
}
impl RuleSet {
    pub fn from_json(_t: &str) -> Result<RuleSet, crate::schema::SchemaError> {
        Ok(RuleSet {})
    }
}
