//! The `eligo` command line: thin wiring from flags to the library.

mod cli;

use clap::{Parser, Subcommand, ValueEnum};
use cli::rules::{RuleFlags, RulePlan};
use eligo::ack::{AckSettings, AckWriter};
use eligo::check::{check_stream, Engine};
use eligo::output::{human_summary, FileSummary, HumanPrinter, JsonPrinter};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "eligo", version, about = "Batch X12 834 eligibility processor")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate 834 files (SNIP levels 1-5; 6-7 with --config) and print findings.
    ///
    /// With `--config FILE` the business rules of that configuration run on every member of the
    /// accepted and rejected sets, and `--report DIR` writes the reject report (reject.csv,
    /// reject.html). Exit status: 0 every set accepted and no business error, 1 something
    /// rejected or accepted with errors, 2 usage or I/O error.
    Check {
        /// Files to check (`-` for standard input).
        #[arg(required_unless_present = "explain")]
        files: Vec<PathBuf>,
        /// Explain a finding id (what it means, why it matters, how to fix it) and exit.
        /// `--explain all` lists every id.
        #[arg(long, value_name = "ID")]
        explain: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        #[command(flatten)]
        rules: RuleFlags,
    },
    /// Write the acknowledgement interchange(s) for a file: TA1 (if any) and 999.
    Ack {
        file: PathBuf,
        /// Output file (default: standard output). Created with mode 0600: it may echo PHI.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// First ISA13 control number to use.
        #[arg(long, default_value_t = 1)]
        isa13: u32,
        /// First GS06 group control number to use.
        #[arg(long, default_value_t = 1)]
        gs06: u32,
        /// Our interchange id qualifier and id (ISA05/ISA06), e.g. ZZ:ELIGOPLAN. Default: the
        /// inbound ISA07/ISA08.
        #[arg(long)]
        sender: Option<String>,
        /// Always send a TA1, even when the sender did not ask for one.
        #[arg(long)]
        ta1: bool,
    },
    /// Convert 834 files and portal CSV exports into a batch of normalized change records.
    ///
    /// `.csv` inputs are portal exports (transactions or roster, told apart by their header);
    /// everything else is read as X12. Only accepted sets give changes. Exit status: 0 all
    /// converted, 1 something was rejected or could not be converted, 2 usage or I/O error.
    Convert {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long = "to", value_enum, default_value = "jsonl")]
        to: BatchFormat,
        /// Output file, written atomically with mode 0600 (change records are PHI). Default:
        /// standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// With `--config`, changes that break a business rule are left out of the batch (and
        /// listed in the report); the others carry `status` and `invoice_period`.
        #[command(flatten)]
        rules: RuleFlags,
    },
    /// The nightly run: inbound files to acknowledgements, a change batch, reports (docs/run.md).
    ///
    /// Exit status: 0 the run completed (rejected files are reported, not failures), 1 it could
    /// not start (another run holds the lock, bad configuration), 2 it failed part-way.
    Run(cli::run::RunArgs),
    /// Full files held because they would terminate too many members.
    Hold {
        #[command(subcommand)]
        cmd: cli::run::HoldCmd,
    },
    /// Mark submitted transactions Completed from the administrative system's confirmation CSV.
    Confirm(cli::run::ConfirmArgs),
    /// Family Health Statements.
    Fhs {
        #[command(subcommand)]
        cmd: cli::run::FhsCmd,
    },
    /// List the transaction log.
    Transactions(cli::run::TransactionsArgs),
    /// List runs with their counts.
    Runs(cli::run::Common),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a configuration file: syntax, types, and cross-references. Exit 0 if valid.
    Check { file: PathBuf },
    /// Print the embedded default configuration.
    Default,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum BatchFormat {
    Jsonl,
    Csv,
}

fn open_input(path: &Path) -> io::Result<Box<dyn io::Read>> {
    if path.as_os_str() == "-" {
        Ok(Box::new(io::stdin().lock()))
    } else {
        Ok(Box::new(std::fs::File::open(path)?))
    }
}

/// mimalloc (its v2, built without transparent huge pages) rather than glibc's allocator.
///
/// Why: `eligo run` makes and frees millions of small values (the findings, the spooled
/// records' strings, SQLite's records) on four threads that hand them to each other; glibc's
/// `malloc`/`free` (with `malloc_consolidate`) were about 6 % of its CPU time, mimalloc's about
/// 3 %, and the run takes about 9 % less user time on the bench's 100 MB file. v2 with `no_thp`:
/// the crate's default v3 backs its memory with huge pages here, which took `check`'s peak RSS
/// from 14 to 47 MB (an earlier trial of v2 without `no_thp` saw the same); with them off it
/// is within 2 MB of glibc's (docs/performance.md, runperf17).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check {
            explain: Some(id), ..
        } => cmd_explain(&id),
        Cmd::Check {
            files,
            format,
            rules,
            ..
        } => match rules.plan() {
            Ok(plan) => cmd_check(&files, format, plan.as_ref()),
            Err(e) => usage(&e),
        },
        Cmd::Ack {
            file,
            output,
            isa13,
            gs06,
            sender,
            ta1,
        } => cmd_ack(&file, output.as_deref(), isa13, gs06, sender, ta1),
        Cmd::Convert {
            files,
            to,
            output,
            rules,
        } => {
            let format = match to {
                BatchFormat::Jsonl => eligo::batch::Format::Jsonl,
                BatchFormat::Csv => eligo::batch::Format::Csv,
            };
            match rules.plan() {
                Ok(plan) => cmd_convert(&files, format, output.as_deref(), plan.as_ref()),
                Err(e) => usage(&e),
            }
        }
        Cmd::Run(a) => cli::run::run(a),
        Cmd::Hold { cmd } => cli::run::hold(cmd),
        Cmd::Confirm(a) => cli::run::confirm(a),
        Cmd::Fhs { cmd } => cli::run::fhs(cmd),
        Cmd::Transactions(a) => cli::run::transactions(a),
        Cmd::Runs(c) => cli::run::runs(c),
        Cmd::Config { cmd } => match cmd {
            ConfigCmd::Check { file } => cmd_config_check(&file),
            ConfigCmd::Default => {
                print!("{}", eligo::config::DEFAULT_TOML);
                ExitCode::SUCCESS
            }
        },
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("eligo: {message}");
    ExitCode::from(2)
}

fn cmd_config_check(file: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("eligo: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match eligo::config::Config::from_toml(&text) {
        Ok(c) => {
            println!(
                "{}: valid: {} partner(s), {} group(s), {} plan(s), {} polic(ies)",
                file.display(),
                c.partners.len(),
                c.groups.len(),
                c.plans.len(),
                c.policies.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: {e}", file.display());
            }
            eprintln!("{}: {} error(s)", file.display(), errors.len());
            ExitCode::from(1)
        }
    }
}

fn cmd_explain(id: &str) -> ExitCode {
    let rules =
        eligo::validate::situational::RuleSet::from_json(eligo::schema::embedded::X220A1_RULES);
    let situational = rules.map(|r| r.catalogue()).unwrap_or_default();
    let entries = eligo::catalog::entries(&situational);
    if id == "all" {
        for e in &entries {
            println!("{:<28} {}", e.id, e.title);
        }
        return ExitCode::SUCCESS;
    }
    match entries.iter().find(|e| e.id.eq_ignore_ascii_case(id)) {
        Some(e) => {
            print!("{}", eligo::catalog::explain(e));
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("eligo: no finding id {id:?}; `eligo check --explain all` lists them");
            ExitCode::from(2)
        }
    }
}

/// The embedded engine, with the configuration's finding policies and receiver ids when a
/// configuration is given.
fn engine_for(plan: Option<&RulePlan>) -> Engine {
    let mut engine = Engine::embedded();
    if let Some(p) = plan {
        let config = std::sync::Arc::new(p.config.clone());
        engine.receiver_ids = config.plan.receiver_ids.clone();
        engine.policy = Some(Box::new(config.policy(p.as_of)));
    }
    engine
}

fn cmd_check(files: &[PathBuf], format: Format, plan: Option<&RulePlan>) -> ExitCode {
    match plan {
        None => check_without_rules(files, format),
        Some(plan) => check_with_rules(files, format, plan),
    }
}

/// Runs the checker and the business rules over one input, with `printer` receiving the
/// findings; the file's business findings join `report`. Returns the printer and the screen's
/// counts (changes, rejected, held).
fn screened<O: eligo::check::Observer>(
    engine: &Engine,
    input: impl io::Read,
    plan: &RulePlan,
    name: &str,
    printer: O,
    report: &mut eligo::report::RejectReport,
) -> (O, [u64; 3]) {
    let screen = eligo::screen::Screen::new(&plan.config, plan.as_of, name);
    let mut obs = eligo::screen::CheckScreen::new(printer, screen, name);
    check_stream(engine, input, &mut obs);
    report.merge(obs.screen.report);
    (obs.inner, [obs.changes, obs.rejected, obs.held])
}

/// `check --config`: files one after the other (the reject report gathers them all).
fn check_with_rules(files: &[PathBuf], format: Format, plan: &RulePlan) -> ExitCode {
    let engine = engine_for(Some(plan));
    let mut report = eligo::report::RejectReport::new(plan.as_of);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut status = 0u8;
    for path in files {
        let name = path.display().to_string();
        let input = match open_input(path) {
            Ok(i) => io::BufReader::with_capacity(1 << 16, i),
            Err(e) => {
                eprintln!("eligo: {name}: {e}");
                status = 2;
                continue;
            }
        };
        let summary: FileSummary = match format {
            Format::Human => {
                let p = HumanPrinter {
                    out: &mut out,
                    file: &name,
                    summary: FileSummary::default(),
                };
                let (p, [changes, rejected, held]) =
                    screened(&engine, input, plan, &name, p, &mut report);
                eprintln!(
                    "eligo: {name}: business rules: {changes} change(s), {rejected} rejected, {held} held"
                );
                let s = p.summary;
                let _ = writeln!(out, "{}", human_summary(&name, &s));
                s
            }
            Format::Json => {
                let p = JsonPrinter {
                    out: &mut out,
                    file: &name,
                    summary: FileSummary::default(),
                };
                let (p, _) = screened(&engine, input, plan, &name, p, &mut report);
                let s = p.summary;
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::json!({"type": "summary", "file": name, "summary": s, "clean": s.clean()})
                );
                s
            }
        };
        if !summary.clean() && status == 0 {
            status = 1;
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(2);
    }
    if let Err(e) = plan.write_report(&report) {
        eprintln!("eligo: writing the reject report: {e}");
        return ExitCode::from(2);
    }
    ExitCode::from(status)
}

/// Files checked (or converted) at once: `ELIGO_JOBS`, else one per core. Their outputs wait
/// in input order; each waiting output holds at most [`SPILL_AT`] bytes in memory, the rest in
/// a temporary file.
fn jobs() -> usize {
    std::env::var("ELIGO_JOBS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
const SPILL_AT: usize = 4 << 20;

/// `check` without business rules: files are independent, so several run at once.
fn check_without_rules(files: &[PathBuf], format: Format) -> ExitCode {
    let engine = Engine::embedded();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut status = 0u8;
    let mut failed = false;
    let threads = jobs().min(files.len());
    if threads <= 1 {
        // One file at a time: its large sets are cut into pieces checked on every core.
        let inside = jobs();
        for path in files {
            let s = check_file(&engine, path, format, &mut out, inside);
            status = status.max(s);
        }
    } else {
        // Files are independent: check several at once, print each file's output whole and in
        // the order given.
        eligo::parallel::ordered(
            files.len(),
            threads,
            2 * threads,
            |i| {
                let mut buf = eligo::parallel::SpillBuffer::new(SPILL_AT);
                let s = check_file(&engine, &files[i], format, &mut buf, 1);
                (s, buf)
            },
            |_, (s, buf)| {
                status = status.max(s);
                failed |= buf.copy_to(&mut out).is_err();
            },
        );
    }
    if failed || out.flush().is_err() {
        return ExitCode::from(2);
    }
    ExitCode::from(status)
}

/// An input to check or convert: standard input is read as a stream; a file may be cut into
/// pieces checked (and converted) on several threads ([`eligo::split`]).
enum Input {
    Stdin,
    File(std::fs::File),
}

impl Input {
    fn open(path: &Path) -> io::Result<Input> {
        if path.as_os_str() == "-" {
            Ok(Input::Stdin)
        } else {
            Ok(Input::File(std::fs::File::open(path)?))
        }
    }

    /// The input as a buffered stream.
    fn reader(self) -> io::BufReader<Box<dyn io::Read>> {
        let r: Box<dyn io::Read> = match self {
            Input::Stdin => Box::new(io::stdin().lock()),
            Input::File(f) => Box::new(f),
        };
        io::BufReader::with_capacity(1 << 16, r)
    }

    /// Checks the input; `jobs` threads may share one file.
    fn check<O: eligo::check::Observer>(&self, engine: &Engine, obs: &mut O, jobs: usize) {
        match self {
            Input::Stdin => check_stream(
                engine,
                io::BufReader::with_capacity(1 << 16, io::stdin().lock()),
                obs,
            ),
            Input::File(f) => {
                eligo::split::check_file(engine, f, obs, eligo::split::SplitOptions::new(jobs));
            }
        }
    }
}

/// Checks one file, writing its findings and summary to `out`; returns its exit status.
/// `jobs` threads may check pieces of the file's large sets.
fn check_file<W: Write>(
    engine: &Engine,
    path: &Path,
    format: Format,
    out: &mut W,
    jobs: usize,
) -> u8 {
    let name = path.display().to_string();
    let input = match Input::open(path) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("eligo: {name}: {e}");
            return 2;
        }
    };
    let summary: FileSummary = match format {
        Format::Human => {
            let mut p = HumanPrinter {
                out: &mut *out,
                file: &name,
                summary: FileSummary::default(),
            };
            input.check(engine, &mut p, jobs);
            let s = p.summary;
            let _ = writeln!(out, "{}", human_summary(&name, &s));
            s
        }
        Format::Json => {
            let mut p = JsonPrinter {
                out: &mut *out,
                file: &name,
                summary: FileSummary::default(),
            };
            input.check(engine, &mut p, jobs);
            let s = p.summary;
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({"type": "summary", "file": name, "summary": s, "clean": s.clean()})
            );
            s
        }
    };
    u8::from(!summary.clean())
}

fn cmd_ack(
    file: &Path,
    output: Option<&Path>,
    isa13: u32,
    gs06: u32,
    sender: Option<String>,
    ta1: bool,
) -> ExitCode {
    let engine = Engine::embedded();
    let input = match Input::open(file) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("eligo: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let mut settings = AckSettings::from_env();
    settings.next_isa13 = isa13;
    settings.next_gs06 = gs06;
    settings.always_ta1 = ta1;
    if let Some(s) = sender {
        match s.split_once(':') {
            Some((q, id)) if q.len() == 2 && !id.is_empty() && id.len() <= 15 => {
                settings.sender = Some((q.to_string(), id.to_string()))
            }
            _ => {
                eprintln!("eligo: --sender must be QUALIFIER:ID, e.g. ZZ:ELIGOPLAN");
                return ExitCode::from(2);
            }
        }
    }
    let mut buf = Vec::new();
    let mut writer = AckWriter::new(&mut buf, settings);
    input.check(&engine, &mut writer, jobs());
    let written = writer.written;
    if let Err(e) = writer.into_inner() {
        eprintln!("eligo: {e}");
        return ExitCode::from(2);
    }
    if written == 0 {
        eprintln!(
            "eligo: {}: no interchange could be read, so no acknowledgement can be addressed",
            file.display()
        );
        return ExitCode::from(1);
    }
    let res = match output {
        Some(p) => eligo::fsio::write_atomic(p, &buf, true),
        None => io::stdout().lock().write_all(&buf),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eligo: writing the acknowledgement: {e}");
            ExitCode::from(2)
        }
    }
}

fn cmd_convert(
    files: &[PathBuf],
    format: eligo::batch::Format,
    output: Option<&Path>,
    plan: Option<&RulePlan>,
) -> ExitCode {
    let result = match output {
        // A device or pipe (`-o /dev/null`, `-o /dev/stdout`) is written as stdout is: through
        // the spool, since what reached it cannot be taken back (eligo::fsio::is_stream).
        Some(p) if eligo::fsio::is_stream(p) => eligo::fsio::open_stream(p).and_then(|f| {
            let out = BufWriter::with_capacity(1 << 16, f);
            let (status, out) = convert_all(files, format, out, plan, None)?;
            out.into_inner().map_err(|e| e.into_error())?;
            Ok(status)
        }),
        Some(p) => eligo::fsio::AtomicFile::create(p, true).and_then(|f| {
            // The output file is only renamed into place when complete: records may go
            // straight to it rather than through a spool (eligo::batch::ConvertObserver::direct).
            let direct = f.as_file().try_clone()?;
            let out = BufWriter::with_capacity(1 << 16, f);
            let (status, f) = convert_all(files, format, out, plan, Some(&direct))?;
            f.into_inner().map_err(|e| e.into_error())?.commit()?;
            Ok(status)
        }),
        None => {
            let out = BufWriter::new(io::stdout().lock());
            convert_all(files, format, out, plan, None).map(|(s, _)| s)
        }
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("eligo: writing the change batch: {e}");
            ExitCode::from(2)
        }
    }
}

/// Converts every input into one batch; returns the exit status and the flushed writer.
/// `direct` is a handle to the file `out` writes to, if records may be written straight to it.
fn convert_all<W: Write>(
    files: &[PathBuf],
    format: eligo::batch::Format,
    out: W,
    plan: Option<&RulePlan>,
    direct: Option<&std::fs::File>,
) -> io::Result<(u8, W)> {
    if plan.is_none() {
        return convert_without_rules(files, format, out, direct);
    }
    let engine = engine_for(plan);
    let mut writer = eligo::batch::ChangeWriter::new(out, format)?;
    let mut report = plan.map(|p| eligo::report::RejectReport::new(p.as_of));
    let mut status = 0u8;
    for path in files {
        let shown = path.display().to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| shown.clone());
        let input = match open_input(path) {
            Ok(i) => io::BufReader::with_capacity(1 << 16, i),
            Err(e) => {
                eprintln!("eligo: {shown}: {e}");
                status = 2;
                continue;
            }
        };
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            let s = match plan {
                None => eligo::portal::convert_csv(&name, input, &mut writer)?,
                Some(plan) => {
                    use eligo::batch::ChangeSink;
                    let mut collect = cli::rules::Collect::default();
                    let s = eligo::portal::convert_csv(&name, input, &mut collect)?;
                    let mut screen = eligo::screen::Screen::new(&plan.config, plan.as_of, &name);
                    screen.set_sender(Some("PORTAL"));
                    let (mut rejected, mut held) = (0, 0);
                    for c in screen.records(collect.0) {
                        if c.assessment.rejected {
                            rejected += 1;
                            continue;
                        }
                        if c.assessment.status.is_held() {
                            held += 1;
                        }
                        writer.change(&c.record)?;
                    }
                    eprintln!(
                        "eligo: {shown}: business rules: {rejected} change(s) rejected, {held} held"
                    );
                    if rejected > 0 {
                        status = status.max(1);
                    }
                    if let Some(r) = &mut report {
                        r.merge(screen.report);
                    }
                    s
                }
            };
            for e in &s.errors {
                eprintln!("eligo: {e}");
            }
            eprintln!(
                "eligo: {shown}: {} change(s), {} row(s) rejected, {} transaction(s) not applied (status)",
                s.records,
                s.errors.len(),
                s.skipped
            );
            if !s.errors.is_empty() {
                status = status.max(1);
            }
        } else {
            let s = match plan {
                None => eligo::batch::convert_x12(&engine, &name, input, &mut writer)?,
                Some(plan) => {
                    let screen = eligo::screen::Screen::new(&plan.config, plan.as_of, &name);
                    let mut obs =
                        eligo::batch::ConvertObserver::new(&name, &mut writer).with_rules(screen);
                    eligo::check::check_stream(&engine, input, &mut obs);
                    let rep = obs.take_report();
                    let s = obs.finish()?;
                    eprintln!(
                        "eligo: {shown}: business rules: {} change(s) rejected, {} held",
                        s.business_rejected, s.held
                    );
                    if s.business_rejected > 0 {
                        status = status.max(1);
                    }
                    if let (Some(r), Some(rep)) = (&mut report, rep) {
                        r.merge(rep);
                    }
                    s
                }
            };
            for i in &s.issues {
                eprintln!("eligo: {i}");
            }
            eprintln!(
                "eligo: {shown}: {} change(s) from {} set(s); {} set(s) rejected or not applicable ({} change(s) dropped)",
                s.records, s.sets_applied, s.sets_dropped, s.records_dropped
            );
            if !s.issues.is_empty() || s.sets_dropped > 0 || s.errors > 0 {
                status = status.max(1);
            }
        }
    }
    if let (Some(plan), Some(report)) = (plan, &report) {
        plan.write_report(report)?;
    }
    let out = writer.into_inner()?;
    Ok((status, out))
}

/// Converts every input into one batch; returns the exit status and the flushed writer.
fn convert_without_rules<W: Write>(
    files: &[PathBuf],
    format: eligo::batch::Format,
    out: W,
    direct: Option<&std::fs::File>,
) -> io::Result<(u8, W)> {
    let engine = Engine::embedded();
    let mut writer = eligo::batch::ChangeWriter::new(out, format)?;
    let mut status = 0u8;
    let threads = jobs().min(files.len());
    if threads <= 1 {
        // One file at a time: its large sets are cut into pieces converted on every core.
        let inside = jobs();
        for path in files {
            let (s, messages) = convert_file(&engine, path, &mut writer, inside, direct)?;
            eprint!("{messages}");
            status = status.max(s);
        }
    } else {
        // Each file's records go straight to a temporary file of its own (as `convert -o`
        // writes to its output: no spool, see eligo::batch::ConvertObserver::direct), then to
        // the batch in the order the files were given, copied by the kernel. A buffer in
        // memory spilled to a file cost the merging thread a `read` and a `write` per 8 KiB,
        // and each worker its spool on top: 1.6x on two cores where `check` gets 1.96x.
        let mut result = Ok(());
        eligo::parallel::ordered(
            files.len(),
            threads,
            2 * threads,
            |i| convert_file_apart(&engine, &files[i], format),
            |_, r| {
                if result.is_err() {
                    return;
                }
                result = r.and_then(|(s, messages, records, mut part)| {
                    eprint!("{messages}");
                    status = status.max(s);
                    writer.records += records;
                    append_part(&mut part, &mut writer.inner, direct)
                });
            },
        );
        result?;
    }
    let out = writer.into_inner()?;
    Ok((status, out))
}

/// Converts one file into a temporary file of its own, records only (no CSV header); returns
/// its exit status, messages, record count and the file, rewound.
fn convert_file_apart(
    engine: &Engine,
    path: &Path,
    format: eligo::batch::Format,
) -> io::Result<(u8, String, u64, std::fs::File)> {
    use std::io::{Seek, SeekFrom};
    let part = tempfile::tempfile()?;
    let direct = part.try_clone()?;
    let mut w = eligo::batch::ChangeWriter {
        inner: BufWriter::with_capacity(1 << 16, part),
        encoder: eligo::batch::Encoder::new(format),
        records: 0,
    };
    let (s, messages) = convert_file(engine, path, &mut w, 1, Some(&direct))?;
    let records = w.records;
    let mut part = w.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    part.seek(SeekFrom::Start(0))?;
    Ok((s, messages, records, part))
}

/// Appends a converted file's records to the batch. `io::copy` lets the kernel copy file to
/// file (`copy_file_range`) or to a pipe or device (`sendfile`, `splice`); to an output file
/// it copies through `direct`, the handle the batch writes through, once the writer's buffer
/// is flushed (the two share the file offset).
fn append_part<W: Write>(
    part: &mut std::fs::File,
    out: &mut W,
    direct: Option<&std::fs::File>,
) -> io::Result<()> {
    match direct {
        Some(mut file) => {
            out.flush()?;
            io::copy(part, &mut file)?;
        }
        None => {
            io::copy(part, out)?;
        }
    }
    Ok(())
}

/// Converts one file into `writer`; returns its exit status and the messages for standard
/// error (returned rather than printed, so that parallel conversions print them in order).
/// `jobs` threads may convert pieces of an X12 file's large sets. `direct`: see
/// [`convert_all`].
fn convert_file<W: Write>(
    engine: &Engine,
    path: &Path,
    writer: &mut eligo::batch::ChangeWriter<W>,
    jobs: usize,
    direct: Option<&std::fs::File>,
) -> io::Result<(u8, String)> {
    use std::fmt::Write as _;
    let mut msg = String::new();
    let shown = path.display().to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.clone());
    let input = match Input::open(path) {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(msg, "eligo: {shown}: {e}");
            return Ok((2, msg));
        }
    };
    let mut status = 0u8;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        let s = eligo::portal::convert_csv(&name, input.reader(), writer)?;
        for e in &s.errors {
            let _ = writeln!(msg, "eligo: {e}");
        }
        let _ = writeln!(
            msg,
            "eligo: {shown}: {} change(s), {} row(s) rejected, {} transaction(s) not applied (status)",
            s.records,
            s.errors.len(),
            s.skipped
        );
        if !s.errors.is_empty() {
            status = 1;
        }
    } else {
        let s = match input {
            Input::File(f) => {
                let opts = eligo::split::SplitOptions::new(jobs);
                eligo::batch::convert_x12_file_to(engine, &name, &f, writer, opts, direct)?.0
            }
            Input::Stdin => eligo::batch::convert_x12(engine, &name, input.reader(), writer)?,
        };
        for i in &s.issues {
            let _ = writeln!(msg, "eligo: {i}");
        }
        let _ = writeln!(
            msg,
            "eligo: {shown}: {} change(s) from {} set(s); {} set(s) rejected or not applicable ({} change(s) dropped)",
            s.records, s.sets_applied, s.sets_dropped, s.records_dropped
        );
        if !s.issues.is_empty() || s.sets_dropped > 0 || s.errors > 0 {
            status = 1;
        }
    }
    Ok((status, msg))
}
