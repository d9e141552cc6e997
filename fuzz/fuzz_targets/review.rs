//! Fuzz target: see `carto_wi_webhook_fuzz::review`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| carto_wi_webhook_fuzz::review::check(data));
