//! Every fuzz corpus replayed as an ordinary test: each file in
//! `fuzz/corpus/<target>/` (the seeds taken from the unit tests, and every
//! crash input kept after its fix) goes through the same body the cargo-fuzz
//! target runs (`fuzz/src/lib.rs`, included here), so `cargo test` checks
//! the fuzzers' properties without nightly features or libFuzzer.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod bodies;

use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// Runs `body` on every file of `fuzz/corpus/<target>`, then fails naming
/// each input that panicked (the assertion message is printed by the hook).
fn replay(target: &str) {
    let body = bodies::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .unwrap_or_else(|| panic!("no fuzz body named {target}"));
    let dir = corpus_dir().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no seeds", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).unwrap();
            std::panic::catch_unwind(|| body(&data)).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: inputs that fail: {failed:#?}");
}

#[test]
fn every_corpus_directory_has_a_target_and_every_target_a_corpus() {
    let mut dirs: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut targets: Vec<String> = bodies::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    targets.sort();
    assert_eq!(dirs, targets);
}

#[test]
fn session_cookie_corpus_parses_opens_and_round_trips() {
    replay("session_cookie");
}

#[test]
fn path_corpus_normalises_idempotently() {
    replay("path");
}

#[test]
fn redirect_corpus_never_accepts_an_off_site_target() {
    replay("redirect");
}

#[test]
fn grpc_check_corpus_becomes_a_rooted_request_view() {
    replay("grpc_check");
}

#[test]
fn config_corpus_loads_or_names_its_problems() {
    replay("config");
}
