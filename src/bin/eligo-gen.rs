//! eligo-gen: a seeded generator of large, realistic X12 834 (005010X220A1) enrollment files.
//!
//! Writes one interchange holding one functional group with `--sets K` transaction sets. The
//! sets are filled with families (a subscriber with 0–4 dependents) until the output reaches
//! about `--size-mb` MiB. Everything is fictional: employer ACME MANUFACTURING (ISA06 `ACMEHR`),
//! payer ELIGO HEALTH PLAN (ISA08 `ELIGOPLAN`), Connecticut addresses, and member ids in the
//! 9xx area (sent with NM108 `ZZ`, never as SSNs).
//!
//! The same seed and options always give the same bytes. Each family is a pure function of
//! (seed, family index), and the program makes two passes. The first pass generates into a
//! discarding writer, to learn how many families fit in each set and the QTY totals for its
//! header. The second pass writes the file. SE01, GE01 and IEA01 are counted while writing.
//!
//! The generator itself is [`eligo::gen`]; this file is its command line.

use eligo::gen;
use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "\
eligo-gen: write a seeded, realistic X12 834 (005010X220A1) file

USAGE:
    eligo-gen --size-mb N --seed S [--full] [--error-rate PCT] [--sets K] [-o FILE]
              [--manifest FILE]

OPTIONS:
    --size-mb N        approximate output size in MiB (decimals allowed; default 1)
    --seed S           PRNG seed, an unsigned 64-bit integer (default 1)
    --full             full/verify file: BGN08 4, every INS03/HD01 030
                       (default: change file, BGN08 2, a mix of 021/001/024/025)
    --error-rate PCT   percent of members (0-100) that carry exactly one realistic error
                       (default 0: the file is valid)
    --sets K           number of ST/SE transaction sets in the group (default 1)
    -o, --output FILE  write to FILE instead of standard output
    --manifest FILE    write one tab-separated line per injected error:
                       ST02, segment position (ST = 1), segment id, REF*0F, kind, expected 999
    -h, --help         print this help

A summary (sets, members, bytes, errors by kind, time) goes to standard error.
";

// ------------------------------------------------------------------------------------------
// options

struct Options {
    gen: gen::GenOptions,
    output: Option<String>,
    manifest: Option<String>,
}

enum Parsed {
    Run(Options),
    Help,
}

fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options {
        gen: gen::GenOptions::default(),
        output: None,
        manifest: None,
    };
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (args[i].clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--full" => o.gen.full = true,
            "--size-mb" => {
                let v = value("--size-mb")?;
                o.gen.size_mb = v
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| format!("--size-mb: not a positive number: {v}"))?;
            }
            "--seed" => {
                let v = value("--seed")?;
                o.gen.seed = v
                    .parse()
                    .map_err(|_| format!("--seed: not an unsigned integer: {v}"))?;
            }
            "--error-rate" => {
                let v = value("--error-rate")?;
                o.gen.error_rate = v
                    .parse()
                    .ok()
                    .filter(|x: &f64| (0.0..=100.0).contains(x))
                    .ok_or_else(|| format!("--error-rate: not a percentage 0-100: {v}"))?;
            }
            "--sets" => {
                let v = value("--sets")?;
                o.gen.sets = v
                    .parse()
                    .ok()
                    .filter(|k: &u32| (1..=99_999).contains(k))
                    .ok_or_else(|| format!("--sets: not an integer 1-99999: {v}"))?;
            }
            "-o" | "--output" => o.output = Some(value("--output")?),
            "--manifest" => o.manifest = Some(value("--manifest")?),
            other => return Err(format!("unknown argument: {other}")),
        }
        i += 1;
    }
    Ok(Parsed::Run(o))
}

fn run(o: &Options) -> io::Result<()> {
    let started = Instant::now();
    let mut sink: Box<dyn Write> = match &o.output {
        Some(path) => Box::new(File::create(path)?),
        None => Box::new(io::stdout().lock()),
    };
    let mut manifest: Option<Box<dyn Write>> = match &o.manifest {
        Some(path) => Some(Box::new(File::create(path)?)),
        None => None,
    };
    let st = gen::generate_with_manifest(
        &o.gen,
        &mut sink,
        manifest.as_mut().map(|m| m as &mut dyn Write),
    )?;
    let bytes = st.bytes;
    let secs = started.elapsed().as_secs_f64();
    let mut msg = format!(
        "eligo-gen: {} bytes ({:.1} MiB), {} set(s), {} families, {} members ({} subscribers, {} dependents), {:.2} s, {:.0} MiB/s\n",
        bytes,
        bytes as f64 / 1_048_576.0,
        st.sets,
        st.families,
        st.subscribers + st.dependents,
        st.subscribers,
        st.dependents,
        secs,
        bytes as f64 / 1_048_576.0 / secs.max(1e-9),
    );
    let total_faults: u64 = st.faults.iter().sum();
    if total_faults > 0 {
        msg.push_str(&format!("eligo-gen: {total_faults} injected errors:"));
        for (f, n) in gen::FAULTS.iter().zip(st.faults) {
            if n > 0 {
                msg.push_str(&format!(" {}={}", f.name(), n));
            }
        }
        msg.push('\n');
    }
    eprint!("{msg}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(o)) => match run(&o) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("eligo-gen: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("eligo-gen: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
