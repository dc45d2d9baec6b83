//! The whole engine on arbitrary bytes: `check_stream` and the TA1/999 writer must return
//! without panicking, whatever the input.
#![no_main]

use eligo::ack::{AckSettings, AckWriter};
use eligo::check::{check_stream, Engine, Observer};
use eligo::finding::Finding;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Count(usize);

impl Observer for Count {
    fn finding(&mut self, _f: Finding) {
        self.0 += 1;
    }
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::embedded)
}

fuzz_target!(|data: &[u8]| {
    let e = engine();
    let mut count = Count(0);
    check_stream(e, data, &mut count);
    let mut settings = AckSettings::from_env();
    settings.now = fixed_now();
    let mut out = Vec::new();
    let mut w = AckWriter::new(&mut out, settings);
    check_stream(e, data, &mut w);
    w.into_inner().expect("writing to a Vec cannot fail");
    // The acknowledgement is input too: checking it must not panic either.
    check_stream(e, &out[..], &mut count);
});

/// A fixed clock, so that a crash reproduces byte for byte.
fn fixed_now() -> chrono::NaiveDateTime {
    chrono::DateTime::from_timestamp(1_736_500_000, 0)
        .expect("valid timestamp")
        .naive_utc()
}
