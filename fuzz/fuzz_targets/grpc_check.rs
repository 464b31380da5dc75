//! Fuzz target `grpc_check`: the body is `authgate_fuzz::grpc_check` (shared with the
//! corpus replay in `tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::grpc_check(data));
