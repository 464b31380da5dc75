//! `authgate`: sync main; Pingora owns the runtimes.

// The library forbids `unsafe`; the one exception, the global allocator's
// calls into mimalloc, lives in this binary.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod allocator;

use std::process::ExitCode;

use clap::Parser;

use authgate::cli::{Cli, Command};

/// mimalloc: about a sixth fewer instructions per proxied request than
/// glibc's malloc (see its line in Cargo.toml for the measurements), called
/// through its plain API where the alignment allows (`allocator`).
#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` sets its logging up once its config says whether to trace.
    if !matches!(cli.command, Command::Run { .. }) {
        authgate::telemetry::init(cli.log_format);
    }
    // One process-wide TLS crypto provider for every rustls user (IdP client, Redis).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Secret => {
            println!("{}", authgate::domain::random::token(32));
            ExitCode::SUCCESS
        }
        Command::Check { config } => match authgate::config::load(&config) {
            Ok(_) => {
                println!("{}: OK", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                for line in e.lines() {
                    println!("{line}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Run { config, upgrade } => match authgate::config::load(&config) {
            Ok(cfg) => match authgate::telemetry::init_run(cli.log_format, &cfg.telemetry)
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    authgate::server::run(
                        cfg,
                        &authgate::server::RunOptions {
                            config_path: Some(config.clone()),
                            upgrade,
                        },
                    )
                }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("authgate: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                for line in e.lines() {
                    eprintln!("{line}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Demo { port } => demo(port),
        Command::Policy {
            command:
                authgate::cli::PolicyCommand::Explain {
                    config,
                    claims,
                    method,
                    url,
                },
        } => {
            let mut out = std::io::stdout();
            match authgate::policy_explain::run(&config, &claims, &method, &url, &mut out) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("authgate policy explain: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Migrate {
            helm_values,
            config,
            alpha_config,
            flags,
        } => migrate(authgate::migrate::Request {
            helm_values,
            config,
            alpha_config,
            flags,
            env: std::env::vars().collect(),
        }),
    }
}

/// `authgate migrate`: the config on stdout, the report on stderr.
fn migrate(request: authgate::migrate::Request) -> ExitCode {
    match authgate::migrate::run(&request) {
        Ok(outcome) => {
            for line in &outcome.lines {
                eprintln!("{line}");
            }
            match outcome.config {
                Some(config) => {
                    print!("{config}");
                    ExitCode::SUCCESS
                }
                None => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("authgate migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `authgate demo`: proxy, development IdP and echo upstream on 127.0.0.1.
#[cfg(feature = "demo")]
fn demo(port: u16) -> ExitCode {
    match authgate::demo::run(port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authgate demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// This build has no development IdP to run (the container image's build).
#[cfg(not(feature = "demo"))]
fn demo(_port: u16) -> ExitCode {
    eprintln!(
        "authgate demo: this build has no demo: it was built without the `demo` feature \
(as the container image is), so it carries no development identity provider. \
Build with default features for the demo: cargo build --release"
    );
    ExitCode::FAILURE
}
