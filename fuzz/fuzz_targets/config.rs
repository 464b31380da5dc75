//! Fuzz target `config`: the body is `authgate_fuzz::config_yaml` (shared with the
//! corpus replay in `tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::config_yaml(data));
