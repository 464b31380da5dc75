//! Fuzz target `session_cookie`: the body is `authgate_fuzz::session_cookie` (shared with the
//! corpus replay in `tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::session_cookie(data));
