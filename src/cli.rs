//! Command-line definitions only.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "authgate",
    version,
    about = "OpenID Connect authenticating reverse proxy and Envoy ext_authz provider"
)]
pub struct Cli {
    /// Log format on stderr (filter with RUST_LOG, e.g. `info,authgate=debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: proxy, ext_authz listeners and metrics, as configured.
    Run {
        #[arg(long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file, print every problem, exit 0 or 1.
    Check {
        #[arg(long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
    },
    /// Print a fresh 32-byte cookie secret (base64url).
    Secret,
    /// Run a self-contained demo on 127.0.0.1: proxy, development IdP and echo upstream.
    Demo {
        #[arg(long, default_value_t = 4180)]
        port: u16,
    },
}
