//! Command-line definitions only.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "authgate",
    version,
    about = "OpenID Connect authenticating reverse proxy and Envoy ext_authz provider"
)]
/// `authgate [--log-format F] COMMAND`.
pub struct Cli {
    /// Log format on stderr (filter with RUST_LOG, e.g. `info,authgate=debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
/// Log output format on stderr.
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: proxy, ext_authz listeners and metrics, as configured.
    Run {
        /// The YAML configuration file.
        #[arg(long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
        /// Zero-downtime binary upgrade: take over the listening sockets of
        /// the running authgate through `server.upgrade_sock` (it hands
        /// them over on `SIGQUIT`, then drains) instead of binding them.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a configuration file, print every problem, exit 0 or 1.
    Check {
        /// The YAML configuration file.
        #[arg(long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
    },
    /// Print a fresh 32-byte cookie secret (base64url).
    Secret,
    /// Per-route policies (`policies` in the config).
    Policy {
        /// What to do with them.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Print an authgate config for an oauth2-proxy deployment (stdout) and
    /// what was not carried over (stderr); exit 0 when a config was written.
    Migrate {
        /// The oauth2-proxy Helm chart's values file.
        #[arg(long)]
        helm_values: Option<PathBuf>,
        /// oauth2-proxy's TOML config file (its `--config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// oauth2-proxy's alpha config (its `--alpha-config`).
        #[arg(long)]
        alpha_config: Option<PathBuf>,
        /// oauth2-proxy flags, after `--` (`OAUTH2_PROXY_*` variables are read too).
        #[arg(last = true)]
        flags: Vec<String>,
    },
    /// Run a self-contained demo on 127.0.0.1: proxy, development IdP and echo upstream.
    #[cfg_attr(
        not(feature = "demo"),
        command(about = "Not in this build (built without the `demo` feature): exits 1")
    )]
    Demo {
        /// The proxy's port on 127.0.0.1 (the IdP and the upstream get free ports).
        #[arg(long, default_value_t = 4180)]
        port: u16,
    },
}

/// `authgate policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print, for one request and a set of claims, each policy in order
    /// (matched?, each condition's result) and the decision; exit 0
    /// allowed, 1 forbidden, 2 bad input. Never contacts the IdP.
    Explain {
        /// The YAML configuration file.
        #[arg(long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
        /// A JSON object: the ID token's (or bearer token's) claims.
        #[arg(long)]
        claims: PathBuf,
        /// The request's method (GET, POST, ...).
        method: String,
        /// The request's absolute URL (https://host/path?query).
        url: String,
    },
}
