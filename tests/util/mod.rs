//! Helpers shared by the integration tests: an observer that keeps everything, and the 999
//! round trip (write the acknowledgement, then check it with the same engine).
#![allow(dead_code)] // each test binary uses a different part

use eligo::ack::{AckSettings, AckWriter};
use eligo::check::{
    check_stream, Engine, GroupResult, InterchangeInfo, Observer, SetResult, Ta1Result,
};
use eligo::finding::{Finding, Severity};
use std::sync::OnceLock;

/// Everything the checker reported, in order.
#[derive(Default, Debug)]
pub struct Collector {
    pub findings: Vec<Finding>,
    pub ta1: Vec<Ta1Result>,
    pub groups: Vec<GroupResult>,
    pub sets: Vec<SetResult>,
}

impl Collector {
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    pub fn ids(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.id).collect()
    }

    /// One line per finding, for assertion messages.
    pub fn describe(&self) -> String {
        self.findings
            .iter()
            .map(|f| {
                format!(
                    "{} {:?} {} {:?}@{:?} el {:?}: {}",
                    f.id,
                    f.severity,
                    f.ack.label(),
                    f.location.segment_id,
                    f.location.segment_position,
                    f.location.element.map(|e| e.to_string()),
                    f.message
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Observer for Collector {
    fn finding(&mut self, f: Finding) {
        self.findings.push(f);
    }
    fn interchange_end(&mut self, _i: &InterchangeInfo, ta1: Ta1Result, _groups: u32) {
        self.ta1.push(ta1);
    }
    fn group_end(&mut self, r: &GroupResult) {
        self.groups.push(r.clone());
    }
    fn set_end(&mut self, r: &SetResult) {
        self.sets.push(r.clone());
    }
}

/// The embedded engine, built once per test binary (parsing the schemas is not free).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::embedded)
}

pub fn check(engine: &Engine, input: &[u8]) -> Collector {
    let mut c = Collector::default();
    check_stream(engine, input, &mut c);
    c
}

/// Fixed clock and control numbers, so that acknowledgements are reproducible.
pub fn ack_settings() -> AckSettings {
    AckSettings {
        next_isa13: 1,
        next_gs06: 1,
        now: chrono::NaiveDate::from_ymd_opt(2025, 1, 10)
            .and_then(|d| d.and_hms_opt(9, 30, 0))
            .expect("valid time"),
        delimiters: None,
        sender: None,
        max_ik3_per_set: 100,
        always_ta1: false,
    }
}

/// The acknowledgement interchanges eligo writes for `input`.
pub fn ack(engine: &Engine, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = AckWriter::new(&mut out, ack_settings());
    check_stream(engine, input, &mut w);
    w.into_inner().expect("writing to a Vec cannot fail");
    out
}

pub fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/samples/834/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The TA1 segment (without terminator), if any.
pub fn ta1(ack: &str) -> Option<String> {
    ack.lines()
        .find(|l| l.starts_with("TA1*"))
        .map(|l| l.trim_end_matches('~').to_string())
}

/// The lines from AK1 to AK9 of every 999, terminators removed.
pub fn body(ack: &str) -> String {
    let mut on = false;
    let mut out = Vec::new();
    for l in ack.lines() {
        let l = l.trim_end_matches('~');
        if l.starts_with("AK1*") {
            on = true;
        }
        if on {
            out.push(l.to_string());
        }
        if l.starts_with("AK9*") {
            on = false;
        }
    }
    out.join("\n")
}

/// A generated 834 (eligo::gen), in memory.
pub fn generated(size_mb: f64, seed: u64, error_rate: f64, full: bool, sets: u32) -> Vec<u8> {
    let opts = eligo::gen::GenOptions {
        size_mb,
        seed,
        full,
        error_rate,
        sets,
    };
    let mut buf = Vec::new();
    eligo::gen::generate(&opts, &mut buf).expect("generating into memory cannot fail");
    buf
}
