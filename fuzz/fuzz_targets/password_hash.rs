#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_harness::password_hash(data));
