//! The outside view: every integration test, in one test binary.
//!
//! Each file under `tests/` is one module here, about one capability; they
//! share the harness in `tests/support`. One binary instead of one per file
//! because every binary is a release link with thin LTO (about a minute
//! each on two cores): CI builds one instead of two dozen.
//! `cargo test --release --test integration MODULE::` runs one file's tests.

#[path = "support/redis_servers.rs"]
mod redis_servers;
mod support;

mod access_log;
mod assertion;
mod cli;
mod dns;
mod edges;
mod extauthz;
mod faults;
mod flows;
mod forward_auth;
mod fuzz_corpus;
mod head_deadlines;
mod image;
mod key_rotation;
mod login;
mod migrate;
mod nodelay;
mod otel_tracing;
mod policies;
mod proxy;
mod redis_cluster;
mod redis_sentinel;
mod redis_tls;
mod reload;
mod replicas;
mod secret_rotation;
mod shutdown;
mod startup;
mod upgrade;
