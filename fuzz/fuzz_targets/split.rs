//! In-file parallel checking on arbitrary bytes: cut into tiny pieces and checked on two
//! threads, a file must give exactly the events a sequential check gives (every finding, every
//! set, group and interchange result, in order), and neither may panic. A differential target:
//! the split's guesses (a piece starts from the state common to all members of a set, checked
//! against the real one at the merge) must never change a finding, whatever the input.
#![no_main]

use eligo::check::{check_stream, Engine, EventLog};
use eligo::split::{check_file, SplitOptions};
use libfuzzer_sys::fuzz_target;
use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::sync::{Mutex, OnceLock};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::embedded)
}

/// The split reads a file (positional reads, its length): one scratch file per process,
/// rewritten for every input.
fn scratch() -> &'static Mutex<File> {
    static FILE: OnceLock<Mutex<File>> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("eligo-fuzz-split-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("a scratch file in the temp folder");
        // Unlinked at once: the handle is all that is needed, and nothing is left behind.
        let _ = std::fs::remove_file(&path);
        Mutex::new(file)
    })
}

fuzz_target!(|data: &[u8]| {
    let e = engine();
    let mut sequential = EventLog::default();
    check_stream(e, data, &mut sequential);
    let mut file = scratch().lock().unwrap_or_else(|p| p.into_inner());
    file.set_len(0).expect("truncate the scratch file");
    file.rewind().expect("rewind the scratch file");
    file.write_all(data).expect("write the scratch file");
    // Pieces of 64 and 300 bytes: a subscriber or two each, so that small inputs are cut too.
    for piece in [64, 300] {
        let opts = SplitOptions {
            jobs: 2,
            piece,
            min_set: 0,
        };
        let mut split = EventLog::default();
        check_file(e, &file, &mut split, opts);
        if split.0 != sequential.0 {
            let at = split.0.iter().zip(&sequential.0).position(|(a, b)| a != b);
            panic!(
                "pieces of {piece} bytes: event {at:?} differs ({} events split, {} in sequence)\nsplit:      {:?}\nsequential: {:?}",
                split.0.len(),
                sequential.0.len(),
                at.and_then(|i| split.0.get(i)),
                at.and_then(|i| sequential.0.get(i)),
            );
        }
    }
});
