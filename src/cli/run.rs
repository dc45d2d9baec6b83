//! Flags and wiring of `eligo run` and the lifecycle commands (`hold`, `confirm`, `fhs`,
//! `transactions`, `runs`). The work is done by `eligo::run` and `eligo::store`; this module
//! parses flags, sets up logging, and prints.

use chrono::NaiveDate;
use clap::{Args, Subcommand, ValueEnum};
use eligo::config::Config;
use eligo::lifecycle::TransactionStatus;
use eligo::run::{RunError, RunOptions, RunOutcome};
use eligo::store::{SqliteStore, Store, TransactionFilter};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags every state command takes.
#[derive(Args, Clone)]
pub struct Common {
    /// Configuration file (default: the embedded samples/eligo.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Log format on standard error: text for people, json for log collectors.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// More detailed logs.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// Business date of the run (default: today, or the date of SOURCE_DATE_EPOCH).
    #[arg(long)]
    pub as_of: Option<NaiveDate>,
    /// First copy the bundled samples (samples/inbound) into the first inbound folder, skipping
    /// files already recorded, so the samples themselves are never moved. Unless --as-of is
    /// given, the demo runs as of 2025-01-11, the night after the samples were sent, so that
    /// the business rules judge them on their own dates.
    #[arg(long)]
    pub demo: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Subcommand)]
pub enum HoldCmd {
    /// List held full files.
    List(Common),
    /// Release a held file: its changes are submitted by the next run.
    Release {
        id: i64,
        #[command(flatten)]
        common: Common,
    },
    /// Reject a held file: its changes are never applied.
    Reject {
        id: i64,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
pub struct ConfirmArgs {
    /// The administrative system's confirmation CSV: `change_id[,confirmed_on]` (docs/run.md).
    pub file: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Subcommand)]
pub enum FhsCmd {
    /// Record a received Family Health Statement: the member's waiting changes are released
    /// and submitted by the next run.
    Receive {
        /// Member id (REF*0F / member id of the change).
        #[arg(long)]
        member: String,
        #[arg(long)]
        group: Option<String>,
        /// Date the statement was received (default: today).
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
pub struct TransactionsArgs {
    #[arg(long)]
    pub group: Option<String>,
    /// Status, spelled as the plan spells it (`Submitted`, `pending-fhs`, ...).
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub member: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

fn init_logs(c: &Common) {
    let default = if c.verbose { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ELIGO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match c.log_format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}

fn load_config(c: &Common) -> Result<Config, ExitCode> {
    let (name, text) = match &c.config {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (p.display().to_string(), t),
            Err(e) => {
                eprintln!("eligo: {}: {e}", p.display());
                return Err(ExitCode::from(1));
            }
        },
        None => (
            "embedded default configuration".to_string(),
            eligo::config::DEFAULT_TOML.to_string(),
        ),
    };
    Config::from_toml(&text).map_err(|errors| {
        for e in errors {
            eprintln!("eligo: {name}: {e}");
        }
        ExitCode::from(1)
    })
}

/// Opens the store under the run lock (the lifecycle commands never interleave with a run).
fn open_store(c: &Common) -> Result<(Config, eligo::run::RunLock, SqliteStore), ExitCode> {
    init_logs(c);
    let cfg = load_config(c)?;
    if let Some(p) = cfg
        .paths
        .state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        let _ = std::fs::create_dir_all(p);
    }
    let lock = eligo::run::lock(&cfg.paths.state).map_err(|e| {
        eprintln!("eligo: {e}");
        ExitCode::from(e.exit_code())
    })?;
    let store = SqliteStore::open(&cfg.paths.state).map_err(|e| {
        eprintln!("eligo: {e}");
        ExitCode::from(2)
    })?;
    Ok((cfg, lock, store))
}

fn today() -> NaiveDate {
    eligo::ack::clock_from_env().date()
}

fn at() -> String {
    eligo::ack::clock_from_env()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// `eligo run`. Exit status: 0 the run completed (rejected files are data, in the reports);
/// 1 it could not start (lock held, bad configuration); 2 it failed part-way.
pub fn run(a: RunArgs) -> ExitCode {
    init_logs(&a.common);
    let config = match load_config(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if a.demo {
        if let Err(e) = stage_demo(&config) {
            eprintln!("eligo: --demo: {e}");
            return ExitCode::from(1);
        }
    }
    let as_of = a.as_of.or_else(|| {
        a.demo
            .then(|| NaiveDate::from_ymd_opt(2025, 1, 11))
            .flatten()
    });
    let opts = RunOptions {
        config,
        as_of,
        progress: std::io::stderr().is_terminal(),
    };
    match eligo::run::run(&opts) {
        Ok(o) => {
            print_summary(&o);
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "run failed");
            eprintln!("eligo: {e}");
            if let RunError::Io(_) | RunError::Store(_) = e {
                eprintln!("eligo: nothing of the failed part was recorded; the next run redoes it");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Copies samples/inbound into the first inbound folder, skipping what the ledger has seen.
fn stage_demo(cfg: &Config) -> Result<(), String> {
    let src = Path::new("samples/inbound");
    let dest = cfg
        .paths
        .inbound
        .first()
        .ok_or("no inbound folder configured")?;
    std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    if let Some(p) = cfg
        .paths
        .state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
    }
    // The run lock first: a run in progress holds the store's journal lock for minutes on a
    // large night, and the ledger it is writing is not final; the demo says so at once
    // instead of waiting on the store. The lock is released before the run takes it again.
    let _lock = eligo::run::lock(&cfg.paths.state).map_err(|e| e.to_string())?;
    let mut store = SqliteStore::open(&cfg.paths.state).map_err(|e| e.to_string())?;
    let entries = std::fs::read_dir(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut n = 0;
    for e in entries.flatten() {
        let path = e.path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let sha: String =
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&data))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        if store
            .file_by_sha(&sha)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            continue;
        }
        eligo::fsio::write_atomic(&dest.join(e.file_name()), &data, true)
            .map_err(|e| e.to_string())?;
        n += 1;
    }
    tracing::info!(files = n, folder = %dest.display(), "demo: samples copied to the inbound folder");
    Ok(())
}

fn print_summary(o: &RunOutcome) {
    let secs = o.elapsed.as_secs_f64();
    for s in &o.skipped {
        println!("skipped: {s}");
    }
    let Some(s) = &o.summary else {
        println!(
            "nothing to do: no new files ({} withdrawn, {} purged) in {secs:.1}s",
            o.withdrawn, o.purged
        );
        return;
    };
    println!(
        "run {}{} as of {}",
        s.run_id,
        if o.resumed { " (resumed)" } else { "" },
        s.as_of
    );
    let processed = s.files.iter().filter(|f| f.status == "processed").count();
    println!(
        "files:   {} ({} processed, {} duplicate, {} quarantined, {} held)",
        s.files.len(),
        processed,
        s.duplicates,
        s.quarantined,
        s.held.len()
    );
    println!(
        "sets:    {} accepted, {} rejected",
        s.sets_accepted, s.sets_rejected
    );
    println!(
        "changes: {} submitted, {} waiting",
        s.changes_submitted, s.changes_waiting
    );
    for (k, n) in &s.changes_by_kind {
        println!("  {k:<24} {n}");
    }
    if !s.rejects_by_rule.is_empty() {
        println!("rejects by rule:");
        for (k, n) in &s.rejects_by_rule {
            println!("  {k:<24} {n}");
        }
    }
    for h in &s.held {
        println!(
            "held:    #{} {} group {}: {} of {} active members would be terminated (eligo hold list)",
            h.hold_id, h.file, h.group, h.implied_terminations, h.active_members
        );
    }
    if s.omitted_reported > 0 {
        println!(
            "omitted: {} member(s) missing from full files, reported",
            s.omitted_reported
        );
    }
    if o.withdrawn + o.purged > 0 {
        println!("lifecycle: {} withdrawn, {} purged", o.withdrawn, o.purged);
    }
    println!("outputs:");
    for p in &s.outputs {
        println!("  {p}");
    }
    println!("time:    {secs:.1}s");
}

pub fn hold(cmd: HoldCmd) -> ExitCode {
    let (common, action) = match &cmd {
        HoldCmd::List(c) => (c, None),
        HoldCmd::Release { id, common } => (common, Some((*id, "released"))),
        HoldCmd::Reject { id, common } => (common, Some((*id, "rejected"))),
    };
    let (_cfg, _lock, mut store) = match open_store(common) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let result = (|| -> Result<ExitCode, eligo::store::StoreError> {
        let Some((id, to)) = action else {
            println!("id\tstatus\trun\tgroup\tactive\tterminations\tfile");
            for h in store.holds()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    h.id, h.status, h.run_id, h.group_id, h.active, h.terminations, h.file_name
                );
            }
            return Ok(ExitCode::SUCCESS);
        };
        let Some(h) = store.hold(id)? else {
            eprintln!("eligo: no hold {id}");
            return Ok(ExitCode::from(1));
        };
        if h.status != "held" {
            eprintln!("eligo: hold {id} is already {}", h.status);
            return Ok(ExitCode::from(1));
        }
        store.begin()?;
        store.set_hold(id, to, &at())?;
        let mut n = 0;
        if to == "released" {
            for r in store.held_changes(id)? {
                store.insert_transaction(
                    &r,
                    TransactionStatus::Pending,
                    today(),
                    h.run_id,
                    &format!("hold {id} released"),
                )?;
                n += 1;
            }
        }
        store.commit()?;
        println!(
            "hold {id} ({}, group {}) {to}{}",
            h.file_name,
            h.group_id,
            if to == "released" {
                format!(": {n} change(s) will be submitted by the next run")
            } else {
                String::new()
            }
        );
        Ok(ExitCode::SUCCESS)
    })();
    result.unwrap_or_else(|e| {
        let _ = store.rollback();
        eprintln!("eligo: {e}");
        ExitCode::from(2)
    })
}

pub fn confirm(a: ConfirmArgs) -> ExitCode {
    let (_cfg, _lock, mut store) = match open_store(&a.common) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match confirm_file(&mut store, &a.file) {
        Ok((ok, bad)) => {
            println!(
                "{}: {ok} transaction(s) completed, {bad} not",
                a.file.display()
            );
            ExitCode::from(if bad > 0 { 1 } else { 0 })
        }
        Err(e) => {
            let _ = store.rollback();
            eprintln!("eligo: {}: {e}", a.file.display());
            ExitCode::from(2)
        }
    }
}

fn confirm_file(store: &mut SqliteStore, file: &Path) -> Result<(u64, u64), String> {
    let mut rdr = csv::Reader::from_path(file).map_err(|e| e.to_string())?;
    let headers = rdr.headers().map_err(|e| e.to_string())?.clone();
    let col = |n: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(n))
    };
    let id_col = col("change_id").ok_or("no change_id column")?;
    let on_col = col("confirmed_on");
    let (mut ok, mut bad) = (0, 0);
    store.begin().map_err(|e| e.to_string())?;
    for (i, row) in rdr.records().enumerate() {
        let row = row.map_err(|e| e.to_string())?;
        let id = row.get(id_col).unwrap_or("").trim();
        let on = on_col
            .and_then(|c| row.get(c))
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_string())
            .unwrap_or_else(at);
        match store.set_status(
            id,
            TransactionStatus::Completed,
            &on,
            &format!("confirmed by {}", file.display()),
        ) {
            Ok(()) => ok += 1,
            Err(e) => {
                eprintln!("eligo: {}: row {}: {e}", file.display(), i + 2);
                bad += 1;
            }
        }
    }
    store.commit().map_err(|e| e.to_string())?;
    Ok((ok, bad))
}

pub fn fhs(cmd: FhsCmd) -> ExitCode {
    let FhsCmd::Receive {
        member,
        group,
        date,
        common,
    } = cmd;
    let (_cfg, _lock, mut store) = match open_store(&common) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let on = date.map(|d| d.to_string()).unwrap_or_else(at);
    let result = (|| -> Result<u64, eligo::store::StoreError> {
        let f = TransactionFilter {
            group,
            status: Some(TransactionStatus::PendingFhs),
            member: Some(member),
        };
        store.begin()?;
        let mut n = 0;
        for t in store.transactions(&f)? {
            store.set_status(
                &t.change_id,
                TransactionStatus::Pending,
                &on,
                "Family Health Statement received",
            )?;
            n += 1;
        }
        store.commit()?;
        Ok(n)
    })();
    match result {
        Ok(0) => {
            eprintln!(
                "eligo: no transaction of that member is waiting for a Family Health Statement"
            );
            ExitCode::from(1)
        }
        Ok(n) => {
            println!("{n} transaction(s) released; the next run submits them");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = store.rollback();
            eprintln!("eligo: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn transactions(a: TransactionsArgs) -> ExitCode {
    let status = match a.status.as_deref().map(TransactionStatus::parse) {
        Some(None) => {
            eprintln!("eligo: unknown status; one of: Pending, Submitted, Completed, Incomplete, pending-fhs, Withdrawn");
            return ExitCode::from(2);
        }
        Some(s) => s,
        None => None,
    };
    let (_cfg, _lock, mut store) = match open_store(&a.common) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let f = TransactionFilter {
        group: a.group,
        status,
        member: a.member,
    };
    match store.transactions(&f) {
        Ok(rows) => {
            println!("date\tchange\tgroup\tmember\tkind\tstatus\trun\tbatch");
            for t in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.transaction_date,
                    t.change_id,
                    t.group_id.unwrap_or_default(),
                    t.member_id,
                    t.kind,
                    t.status,
                    t.run_id,
                    t.batch_run_id.map(|b| b.to_string()).unwrap_or("-".into())
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eligo: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn runs(c: Common) -> ExitCode {
    let (_cfg, _lock, mut store) = match open_store(&c) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match store.runs() {
        Ok(rows) => {
            println!("run\tstarted\tas_of\tstatus\tcounts");
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    r.id, r.started, r.as_of, r.status, r.counts
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eligo: {e}");
            ExitCode::from(2)
        }
    }
}
