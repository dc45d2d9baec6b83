//! The plan's configuration: trading partners, employer groups with their divisions and plans,
//! the product catalogue, finding policies, and where the nightly run reads and writes.
//!
//! One TOML file, described for people by `schemas/config.v1.json` and checked here with
//! `deny_unknown_fields` plus the cross-references serde cannot see (a partner naming a group
//! that does not exist, a division offering an unknown plan, dates out of order). Every error
//! names the path of the offending value, such as `groups[1].divisions[0].plans[2].plan`.
//! A default configuration, the one under `samples/`, is embedded so `eligo run` works with no
//! set-up.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;

/// The embedded default configuration (`samples/eligo.toml`).
pub const DEFAULT_TOML: &str = include_str!("../samples/eligo.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub plan: PlanSettings,
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub run: RunSettings,
    #[serde(default)]
    pub partners: Vec<Partner>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub plans: Vec<Plan>,
    #[serde(default)]
    pub policies: Vec<PolicyRule>,
}

/// Who we are.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    pub name: String,
    /// Our interchange ids (ISA08). An interchange addressed to another id gets TA1 `009`.
    #[serde(default)]
    pub receiver_ids: Vec<String>,
    /// Our ISA05:ISA06 on acknowledgements, e.g. `ZZ:ELIGOPLAN`.
    #[serde(default)]
    pub ack_sender: Option<String>,
}

/// Folders of the nightly run. Relative paths are relative to the working directory.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    pub inbound: Vec<PathBuf>,
    pub outbound: PathBuf,
    pub batches: PathBuf,
    pub reports: PathBuf,
    pub archive: PathBuf,
    pub quarantine: PathBuf,
    pub state: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            inbound: vec![PathBuf::from("samples/inbound")],
            outbound: PathBuf::from("var/outbound"),
            batches: PathBuf::from("var/batches"),
            reports: PathBuf::from("var/reports"),
            archive: PathBuf::from("var/archive"),
            quarantine: PathBuf::from("var/quarantine"),
            state: PathBuf::from("var/eligo.db"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    /// A file is taken only when it has not changed for this many seconds (still being written
    /// otherwise). A `NAME.done` marker beside it makes it ready at once.
    pub min_age_seconds: u64,
    /// A full file that would terminate more than this share of a group's active members is held
    /// for an analyst instead of applied.
    pub hold_termination_share: f64,
    /// Transaction records older than this many months are purged.
    pub retention_months: u32,
    /// Days a Family Health Statement may take before the change is withdrawn.
    pub fhs_days: u32,
    /// Dates further in the future than this many days are flagged.
    pub future_days: u32,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            min_age_seconds: 0,
            hold_termination_share: 0.2,
            retention_months: 24,
            fhs_days: 45,
            future_days: 180,
        }
    }
}

/// A sender: an employer HR system, a benefit administrator, or the portal.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    /// ISA06 / GS02, trimmed.
    pub id: String,
    pub name: String,
    /// Groups this partner may send for.
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    CtSmallGroup,
    MaSmallGroup,
    SmallGroup,
    LargeGroup,
    Individual,
    Medicare,
    Medicaid,
}

/// What a full file does with members it no longer lists (issue: termination by omission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OmissionPolicy {
    /// Members missing from a full file are terminated.
    Terminate,
    /// They are listed for an analyst; nothing changes. The safe default.
    #[default]
    Report,
    /// Full files only add and change.
    Never,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The group number senders put in REF*38 (or N1*P5 N104).
    pub id: String,
    pub name: String,
    pub market: Market,
    /// First day the group is covered.
    #[serde(deserialize_with = "de_date")]
    pub effective: NaiveDate,
    /// First day of the current plan year; it lasts one year.
    #[serde(deserialize_with = "de_date")]
    pub plan_year_start: NaiveDate,
    /// Day of the month invoices are cut (1–28).
    pub invoice_day: u32,
    /// Changes arriving fewer than this many days before the invoice day go on the next
    /// month's invoice.
    #[serde(default = "default_cutoff")]
    pub invoice_cutoff_days: u32,
    /// Adds and terms may be at most this many days retroactive.
    #[serde(default = "default_retro")]
    pub retro_days: u32,
    /// Dependent children are covered until this age unless disabled.
    #[serde(default = "default_age_limit")]
    pub dependent_age_limit: u32,
    /// Non-newborn adds need a signed Family Health Statement. Defaults to true for a
    /// Connecticut small group.
    #[serde(default)]
    pub fhs_required: Option<bool>,
    #[serde(default)]
    pub omission: OmissionPolicy,
    /// With `omission = "terminate"`: the termination date is the file date minus at most this
    /// many days (the end of the previous month if that is later).
    #[serde(default)]
    pub omission_lookback_days: u32,
    #[serde(default)]
    pub divisions: Vec<Division>,
}

fn default_cutoff() -> u32 {
    5
}
fn default_retro() -> u32 {
    60
}
fn default_age_limit() -> u32 {
    26
}

impl Group {
    pub fn needs_fhs(&self) -> bool {
        self.fhs_required
            .unwrap_or(self.market == Market::CtSmallGroup)
    }

    /// The plan year containing `d`, as (first day, last day), counted from `plan_year_start`.
    pub fn plan_year(&self) -> (NaiveDate, NaiveDate) {
        let start = self.plan_year_start;
        let end = start
            .checked_add_months(chrono::Months::new(12))
            .and_then(|d| d.pred_opt())
            .unwrap_or(start);
        (start, end)
    }

    pub fn division(&self, id: &str) -> Option<&Division> {
        self.divisions.iter().find(|d| d.id == id)
    }
}

/// A sub-group (division) of an employer and the plans it offers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Division {
    pub id: String,
    pub name: String,
    pub plans: Vec<Offer>,
}

/// A plan offered in a division between two dates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    pub plan: String,
    #[serde(deserialize_with = "de_date")]
    pub from: NaiveDate,
    #[serde(default, deserialize_with = "de_opt_date")]
    pub to: Option<NaiveDate>,
}

impl Offer {
    pub fn covers(&self, d: NaiveDate) -> bool {
        self.from <= d && self.to.is_none_or(|t| d <= t)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProductType {
    Hmo,
    Pos,
    Ppo,
    Epo,
    Indemnity,
    Dental,
    Vision,
    Other,
}

/// A product in the catalogue.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// What senders put in HD04 (or REF*1L / REF*CE).
    pub code: String,
    pub name: String,
    /// Insurance line (HD03): HLT, DEN, VIS, ...
    pub line: String,
    pub product: ProductType,
    /// Coverage levels (HD05) the plan offers: EMP, ESP, ECH, FAM, ...
    pub coverage_levels: Vec<String>,
    #[serde(default)]
    pub pcp_required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Reject,
    Warn,
    Ignore,
}

/// A severity override for one finding id, globally or for a sender or group, optionally until
/// a date (a temporary waiver while a partner fixes its feed).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    pub rule: String,
    pub action: Action,
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// Last day the override applies; from the day after, the default severity is back.
    #[serde(default, deserialize_with = "de_opt_date")]
    pub until: Option<NaiveDate>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A problem in a configuration file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Where: `groups[0].divisions[1].plans[0].plan`, or `line 12, column 3` for syntax.
    pub path: String,
    pub message: String,
}

impl Config {
    /// Parses and checks a configuration. All problems are returned, not only the first.
    pub fn from_toml(text: &str) -> Result<Config, Vec<ConfigError>> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let path = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    let col = span.start
                        - text[..span.start.min(text.len())]
                            .rfind('\n')
                            .map_or(0, |i| i + 1)
                        + 1;
                    format!("line {line}, column {col}")
                }
                None => "config".to_string(),
            };
            vec![ConfigError {
                path,
                message: e.message().to_string(),
            }]
        })?;
        let errors = cfg.check();
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// The embedded default configuration.
    pub fn embedded() -> Config {
        Config::from_toml(DEFAULT_TOML).expect("the embedded configuration is valid")
    }

    /// Cross-reference checks that serde cannot express.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |path: String, message: String| errs.push(ConfigError { path, message });
        let plan_codes: HashSet<&str> = self.plans.iter().map(|p| p.code.as_str()).collect();
        let group_ids: HashSet<&str> = self.groups.iter().map(|g| g.id.as_str()).collect();
        dupes(
            self.plans.iter().map(|p| p.code.as_str()),
            "plans",
            "code",
            &mut err,
        );
        dupes(
            self.groups.iter().map(|g| g.id.as_str()),
            "groups",
            "id",
            &mut err,
        );
        dupes(
            self.partners.iter().map(|p| p.id.as_str()),
            "partners",
            "id",
            &mut err,
        );
        if let Some(s) = &self.plan.ack_sender {
            match s.split_once(':') {
                Some((q, id)) if q.len() == 2 && !id.is_empty() && id.len() <= 15 => {}
                _ => err(
                    "plan.ack_sender".into(),
                    format!("{s:?} must be QUALIFIER:ID with a 2-character qualifier and an id of at most 15 characters"),
                ),
            }
        }
        if !(0.0..=1.0).contains(&self.run.hold_termination_share) {
            err(
                "run.hold_termination_share".into(),
                "must be between 0 and 1 (a share of the group's active members)".into(),
            );
        }
        for (i, p) in self.partners.iter().enumerate() {
            for (j, g) in p.groups.iter().enumerate() {
                if !group_ids.contains(g.as_str()) {
                    err(
                        format!("partners[{i}].groups[{j}]"),
                        format!("group {g:?} is not defined in [[groups]]"),
                    );
                }
            }
        }
        for (i, p) in self.plans.iter().enumerate() {
            if p.coverage_levels.is_empty() {
                err(
                    format!("plans[{i}].coverage_levels"),
                    "a plan needs at least one coverage level".into(),
                );
            }
            for (j, l) in p.coverage_levels.iter().enumerate() {
                const LEVELS: &[&str] = &[
                    "CHD", "DEP", "E1D", "E2D", "E3D", "E5D", "E6D", "E7D", "E8D", "E9D", "ECH",
                    "EMP", "ESP", "FAM", "IND", "SPC", "SPO", "TWO",
                ];
                if !LEVELS.contains(&l.as_str()) {
                    err(
                        format!("plans[{i}].coverage_levels[{j}]"),
                        format!("{l:?} is not an HD05 coverage level code"),
                    );
                }
            }
        }
        for (i, g) in self.groups.iter().enumerate() {
            if !(1..=28).contains(&g.invoice_day) {
                err(
                    format!("groups[{i}].invoice_day"),
                    "must be a day of the month from 1 to 28".into(),
                );
            }
            if g.plan_year_start < g.effective {
                err(
                    format!("groups[{i}].plan_year_start"),
                    "the plan year cannot start before the group's effective date".into(),
                );
            }
            dupes(
                g.divisions.iter().map(|d| d.id.as_str()),
                &format!("groups[{i}].divisions"),
                "id",
                &mut err,
            );
            for (j, d) in g.divisions.iter().enumerate() {
                for (k, o) in d.plans.iter().enumerate() {
                    let at = format!("groups[{i}].divisions[{j}].plans[{k}]");
                    if !plan_codes.contains(o.plan.as_str()) {
                        err(
                            format!("{at}.plan"),
                            format!("plan {:?} is not defined in [[plans]]", o.plan),
                        );
                    }
                    if o.to.is_some_and(|t| t < o.from) {
                        err(format!("{at}.to"), "ends before it starts".into());
                    }
                }
            }
        }
        for (i, p) in self.policies.iter().enumerate() {
            if let Some(g) = &p.group {
                if !group_ids.contains(g.as_str()) {
                    err(
                        format!("policies[{i}].group"),
                        format!("group {g:?} is not defined in [[groups]]"),
                    );
                }
            }
            if p.rule.trim().is_empty() {
                err(format!("policies[{i}].rule"), "names no finding id".into());
            }
        }
        errs
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn plan(&self, code: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.code == code)
    }

    pub fn partner(&self, id: &str) -> Option<&Partner> {
        self.partners.iter().find(|p| p.id == id)
    }

    /// The action configured for finding `rule` from `sender` for `group` on `day`: the most
    /// specific unexpired override (sender and group, then sender, then group, then global).
    pub fn action_for(
        &self,
        rule: &str,
        sender: Option<&str>,
        group: Option<&str>,
        day: NaiveDate,
    ) -> Option<Action> {
        let live = |p: &&PolicyRule| p.rule == rule && p.until.is_none_or(|u| day <= u);
        let specificity = |p: &PolicyRule| -> Option<u8> {
            let s = match &p.sender {
                Some(s) if Some(s.as_str()) == sender => 2,
                Some(_) => return None,
                None => 0,
            };
            let g = match &p.group {
                Some(g) if Some(g.as_str()) == group => 1,
                Some(_) => return None,
                None => 0,
            };
            Some(s + g)
        };
        self.policies
            .iter()
            .filter(live)
            .filter_map(|p| specificity(p).map(|s| (s, p.action)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, a)| a)
    }
}

/// Dates may be written as TOML dates (`2025-01-01`) or strings (`"2025-01-01"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum DateIn {
    Toml(toml::value::Datetime),
    Text(String),
}

fn to_date<E: serde::de::Error>(d: DateIn) -> Result<NaiveDate, E> {
    let text = match d {
        DateIn::Toml(t) => match (t.date, t.time) {
            (Some(d), None) => {
                return NaiveDate::from_ymd_opt(d.year as i32, d.month as u32, d.day as u32)
                    .ok_or_else(|| E::custom("not a calendar date"))
            }
            _ => return Err(E::custom("expected a date without a time, like 2025-01-01")),
        },
        DateIn::Text(s) => s,
    };
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|_| E::custom(format!("{text:?} is not a date like 2025-01-01")))
}

fn de_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    to_date(DateIn::deserialize(d)?)
}

fn de_opt_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    Ok(Some(to_date(DateIn::deserialize(d)?)?))
}

/// The configuration's `[[policies]]` as a [`crate::check::FindingPolicy`] for one run day.
pub struct ConfigPolicy {
    config: std::sync::Arc<Config>,
    as_of: NaiveDate,
}

impl Config {
    /// The policy of this configuration as it stands on `as_of` (waivers past their `until`
    /// date no longer apply).
    pub fn policy(self: &std::sync::Arc<Self>, as_of: NaiveDate) -> ConfigPolicy {
        ConfigPolicy {
            config: self.clone(),
            as_of,
        }
    }
}

impl crate::check::FindingPolicy for ConfigPolicy {
    fn adjust(&self, f: &mut crate::finding::Finding, sender: &str, group: Option<&str>) -> bool {
        use crate::finding::Severity;
        match self
            .config
            .action_for(f.id, Some(sender), group, self.as_of)
        {
            Some(Action::Ignore) => false,
            Some(Action::Warn) => {
                f.severity = Severity::Warning;
                true
            }
            Some(Action::Reject) => {
                f.severity = Severity::Error;
                true
            }
            None => true,
        }
    }
}

fn dupes<'a>(
    ids: impl Iterator<Item = &'a str>,
    list: &str,
    field: &str,
    err: &mut impl FnMut(String, String),
) {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        if !seen.insert(id) {
            err(
                format!("{list}[{i}].{field}"),
                format!("{id:?} is defined twice"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_configuration_is_valid() {
        let c = Config::embedded();
        assert!(!c.groups.is_empty());
        assert!(!c.plans.is_empty());
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let e = Config::from_toml("[plan]\nname = \"x\"\nbogus = 1\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].path.starts_with("line 3"), "{e:?}");
        assert!(e[0].message.contains("bogus"), "{e:?}");
    }

    #[test]
    fn cross_references_are_checked_with_paths() {
        let text = r#"
[plan]
name = "P"
[[partners]]
id = "S"
name = "S"
groups = ["NOPE"]
[[plans]]
code = "A"
name = "A"
line = "HLT"
product = "hmo"
coverage_levels = ["EMP", "XYZ"]
[[groups]]
id = "G"
name = "G"
market = "large-group"
effective = 2024-01-01
plan_year_start = 2023-01-01
invoice_day = 31
[[groups.divisions]]
id = "D"
name = "D"
plans = [{ plan = "B", from = 2024-01-01, to = 2023-01-01 }]
"#;
        let e = Config::from_toml(text).unwrap_err();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "partners[0].groups[0]",
                "plans[0].coverage_levels[1]",
                "groups[0].invoice_day",
                "groups[0].plan_year_start",
                "groups[0].divisions[0].plans[0].plan",
                "groups[0].divisions[0].plans[0].to",
            ]
        );
    }

    #[test]
    fn most_specific_unexpired_override_wins() {
        let mut c = Config::embedded();
        let day = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        c.policies = vec![
            PolicyRule {
                rule: "R".into(),
                action: Action::Warn,
                sender: None,
                group: None,
                until: None,
                reason: None,
            },
            PolicyRule {
                rule: "R".into(),
                action: Action::Ignore,
                sender: Some("S".into()),
                group: None,
                until: Some(NaiveDate::from_ymd_opt(2025, 5, 31).unwrap()),
                reason: None,
            },
            PolicyRule {
                rule: "R".into(),
                action: Action::Reject,
                sender: None,
                group: Some("G".into()),
                until: None,
                reason: None,
            },
        ];
        assert_eq!(
            c.action_for("R", Some("S"), Some("G"), day),
            Some(Action::Reject)
        );
        assert_eq!(c.action_for("R", Some("S"), None, day), Some(Action::Warn));
        let before = NaiveDate::from_ymd_opt(2025, 5, 31).unwrap();
        assert_eq!(
            c.action_for("R", Some("S"), None, before),
            Some(Action::Ignore)
        );
        assert_eq!(c.action_for("OTHER", None, None, day), None);
    }
}
