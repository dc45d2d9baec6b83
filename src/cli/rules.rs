//! `--config`, `--as-of`, `--report` and `--unmask` for `eligo check` and `eligo convert`.
//!
//! Business rules (SNIP levels 6–7) apply only when `--config FILE` is given: without it the
//! commands check and convert X12 and portal files exactly as before, so a run never judges a
//! member against a configuration nobody chose.

use chrono::NaiveDate;
use clap::Args;
use eligo::changes::ChangeRecord;
use eligo::config::Config;
use eligo::report::{RejectReport, ReportOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Flags of the business-rule stage.
#[derive(Args, Debug, Clone, Default)]
pub struct RuleFlags {
    /// Apply the business rules (SNIP levels 6-7) of this configuration file (see
    /// `eligo config check`). Without it no business rule runs.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The processing day for the rules (YYYY-MM-DD). Default: SOURCE_DATE_EPOCH if set, else
    /// today (UTC).
    #[arg(long, value_name = "DATE", requires = "config")]
    pub as_of: Option<String>,
    /// Write reject.csv and reject.html into this directory (mode 0600).
    #[arg(long, value_name = "DIR", requires = "config")]
    pub report: Option<PathBuf>,
    /// Show birth dates and SSNs in the report instead of masking them.
    #[arg(long, requires = "report")]
    pub unmask: bool,
}

/// The rule stage built from the flags.
pub struct RulePlan {
    pub config: Config,
    pub as_of: NaiveDate,
    pub report_dir: Option<PathBuf>,
    pub options: ReportOptions,
}

impl RuleFlags {
    /// `Ok(None)` without `--config`; `Err` carries a message for people.
    pub fn plan(&self) -> Result<Option<RulePlan>, String> {
        let Some(path) = &self.config else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config = Config::from_toml(&text).map_err(|errs| {
            errs.iter()
                .map(|e| format!("{}: {e}", path.display()))
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let as_of = match &self.as_of {
            Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| format!("--as-of {d:?} is not a date like 2025-01-11"))?,
            None => today(),
        };
        Ok(Some(RulePlan {
            config,
            as_of,
            report_dir: self.report.clone(),
            options: ReportOptions {
                unmask: self.unmask,
            },
        }))
    }
}

/// Today, from SOURCE_DATE_EPOCH (reproducible runs) or the clock.
pub fn today() -> NaiveDate {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.date_naive())
        .unwrap_or_else(|| chrono::Utc::now().date_naive())
}

impl RulePlan {
    pub fn write_report(&self, report: &RejectReport) -> io::Result<()> {
        if let Some(dir) = &self.report_dir {
            report.write(dir, self.options)?;
            eprintln!(
                "eligo: reject report: {} ({} change(s) rejected, {} set(s) rejected by the 999)",
                Path::new(dir).join("reject.html").display(),
                report.rejected_changes(),
                report.set_rejects.len()
            );
        }
        Ok(())
    }
}

/// Collects a portal export's changes so the rules can see them before they are written.
#[derive(Default)]
pub struct Collect(pub Vec<ChangeRecord>);

impl eligo::batch::ChangeSink for Collect {
    fn change(&mut self, r: &ChangeRecord) -> io::Result<()> {
        self.0.push(r.clone());
        Ok(())
    }
}
