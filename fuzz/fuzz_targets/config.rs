//! Fuzz target: see `carto_wi_webhook_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| carto_wi_webhook_fuzz::config::check(data));
