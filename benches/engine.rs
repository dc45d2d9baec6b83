//! `cargo bench`: throughput of each stage on a generated ~8 MB 834 change file (MB/s).
//!
//! - `lexer`: bytes to segments only (the floor of every command).
//! - `check`: the whole validator (`check_stream`) with an observer that only counts findings.
//! - `convert`: validation plus change derivation and JSONL encoding (`convert_x12`);
//!   `convert_csv` the same with CSV rows.
//! - `encode_jsonl`, `encode_csv`: convert's own last step alone, on the file's change records
//!   (about 37,000): each record's JSON written once, hashed for its `change_id` and encoded
//!   (`Encoder::encode_sealing`). Throughput is of the input file, comparable with `convert`.
//! - `ack`: validation plus 999 writing, on a file with 2 % of members in error.
//!
//! Inputs come from the seeded generator ([`eligo::gen`]), so every run measures the same bytes.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eligo::ack::{AckSettings, AckWriter};
use eligo::batch::{convert_x12, ChangeWriter, Encoder, Format};
use eligo::changes::ChangeRecord;
use eligo::check::{check_stream, Engine, Observer};
use eligo::finding::Finding;
use eligo::gen::{generate, GenOptions};
use eligo::lexer::{Lexer, Token};
use std::hint::black_box;
use std::time::Duration;

fn input(error_rate: f64) -> Vec<u8> {
    let opts = GenOptions {
        size_mb: 8.0,
        seed: 42,
        error_rate,
        ..GenOptions::default()
    };
    let mut buf = Vec::with_capacity(9 << 20);
    generate(&opts, &mut buf).expect("generating into memory cannot fail");
    buf
}

/// Counts findings and drops them.
#[derive(Default)]
struct Count(u64);

impl Observer for Count {
    fn finding(&mut self, _f: Finding) {
        self.0 += 1;
    }
}

fn engine(c: &mut Criterion) {
    let clean = input(0.0);
    let faulty = input(2.0);
    let engine = Engine::embedded();
    let mut g = c.benchmark_group("engine");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(clean.len() as u64));

    g.bench_function("lexer", |b| {
        b.iter(|| {
            let mut lx = Lexer::new(clean.as_slice());
            let mut n = 0u64;
            while let Some(t) = lx.next_token() {
                if let Token::Segment(s) = t {
                    n += s.raw().len() as u64;
                }
            }
            black_box(n)
        })
    });
    g.bench_function("check", |b| {
        b.iter(|| {
            let mut obs = Count::default();
            check_stream(&engine, clean.as_slice(), &mut obs);
            black_box(obs.0)
        })
    });
    g.bench_function("convert", |b| {
        b.iter(|| {
            let mut w = ChangeWriter::new(Vec::with_capacity(64 << 20), Format::Jsonl).unwrap();
            let s = convert_x12(&engine, "bench.x12", clean.as_slice(), &mut w).unwrap();
            black_box((s.records, w.into_inner().unwrap().len()))
        })
    });
    g.bench_function("convert_csv", |b| {
        b.iter(|| {
            let mut w = ChangeWriter::new(Vec::with_capacity(64 << 20), Format::Csv).unwrap();
            let s = convert_x12(&engine, "bench.x12", clean.as_slice(), &mut w).unwrap();
            black_box((s.records, w.into_inner().unwrap().len()))
        })
    });
    let records: Vec<ChangeRecord> = {
        let mut w = ChangeWriter::new(Vec::new(), Format::Jsonl).unwrap();
        convert_x12(&engine, "bench.x12", clean.as_slice(), &mut w).unwrap();
        let jsonl = w.into_inner().unwrap();
        jsonl
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut r: ChangeRecord = serde_json::from_slice(l).expect("a record");
                r.change_id.clear();
                r
            })
            .collect()
    };
    for (name, format) in [("encode_jsonl", Format::Jsonl), ("encode_csv", Format::Csv)] {
        g.bench_function(name, |b| {
            let mut enc = Encoder::new(format);
            b.iter(|| {
                let mut n = 0usize;
                for r in &records {
                    n += enc.encode_sealing(r).unwrap().len();
                }
                black_box(n)
            })
        });
    }
    g.throughput(Throughput::Bytes(faulty.len() as u64));
    g.bench_function("ack", |b| {
        b.iter(|| {
            let mut settings = AckSettings::from_env();
            settings.now = chrono::NaiveDate::from_ymd_opt(2025, 1, 11)
                .and_then(|d| d.and_hms_opt(6, 30, 0))
                .expect("valid date");
            let mut w = AckWriter::new(Vec::new(), settings);
            check_stream(&engine, faulty.as_slice(), &mut w);
            black_box(w.into_inner().unwrap().len())
        })
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
