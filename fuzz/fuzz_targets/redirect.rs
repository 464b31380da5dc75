//! Fuzz target `redirect`: the body is `authgate_fuzz::redirect_validate` (shared with the
//! corpus replay in `tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::redirect_validate(data));
