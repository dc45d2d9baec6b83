//! The configuration loader on arbitrary text: it must return the configuration or errors with
//! paths, never panic (TOML syntax, types, dates, and the cross-reference checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(errors) = eligo::config::Config::from_toml(text) {
            // Every error names where it is.
            assert!(errors.iter().all(|e| !e.path.is_empty()));
        }
    }
});
