//! The portal CSV reader on arbitrary bytes: it must return without panicking, reporting bad
//! rows as errors, whatever the input (any header, quoting, encoding or row length).
#![no_main]

use eligo::batch::{ChangeWriter, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if let Ok(mut w) = ChangeWriter::new(&mut out, Format::Jsonl) {
        let _ = eligo::portal::convert_csv("fuzz.csv", data, &mut w);
    }
});
