//! Configuration: the public API (`load`, `load_str`, …) and the pipeline
//! that runs them. The YAML file (`file`, serde DTOs) becomes the typed
//! `model` through `tree` (text to DTO), `validate` (one module per section)
//! and `dns` (the upstream hosts), collecting `error::Problem`s by key.
//!
//! Loading runs once at start-up (and for `authgate check`), in this order:
//! parse the YAML into a tree, expand `${VAR}` in its strings, deserialize the
//! tree into the file DTO, and validate it into the model. There is no
//! network I/O (no DNS: upstream host names are checked by syntax and
//! resolved by the proxy while it runs). Every step collects problems
//! instead of stopping, so the user sees them all at once, each named by its
//! full key path. Nothing that passes here is parsed again later: the Redis
//! URL, for one, becomes a typed [`RedisTopology`] that the session layer
//! only consumes, so `check` and `run` cannot disagree on it.

mod dns;
mod duration;
mod env;
mod error;
mod file;
pub mod model;
mod tree;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use dns::{UpstreamAddr, UpstreamAddrError};
pub use duration::{parse_duration, DurationError};
pub use env::EnvLookup;
pub use error::{ConfigError, Problem};
pub use model::*;

use validate::Validator;

// === Entry points ===

/// Loads and validates the file at `path`, reading `${VAR}`s from the process
/// environment. No network call.
///
/// # Errors
/// Every problem found, each under its dotted key (`cookie.secret: …`); an
/// unreadable file is one problem named by its path.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, &process_env)
}

/// [`load`] with an injectable environment (tests, or a caller that has
/// already captured the environment).
///
/// # Errors
/// As [`load`].
pub fn load_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    let yaml = std::fs::read_to_string(path).map_err(|err| {
        ConfigError(vec![Problem::new(
            path.display().to_string(),
            format!("cannot read the configuration file: {err}"),
        )])
    })?;
    load_str_with_env(&yaml, env)
}

/// Loads configuration text, with `${VAR}`s from the process environment.
///
/// # Errors
/// Every problem found, each under its dotted key.
pub fn load_str(yaml: &str) -> Result<Config, ConfigError> {
    load_str_with_env(yaml, &process_env)
}

/// Loads configuration text with an injectable environment.
///
/// # Errors
/// Every problem found, each under its dotted key.
///
/// A key whose value is already known to be wrong (an unset `${VAR}`, a
/// serde type error) gets no second, derived complaint.
pub fn load_str_with_env(yaml: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut tree = tree::parse_tree(yaml).map_err(|problem| ConfigError(vec![problem]))?;

    // A key whose value is already known to be wrong gets no second,
    // derived complaint (an unexpanded `${X}` is not also "an invalid URL").
    env::expand_tree(&mut tree, env, &mut problems);
    let mut settled: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
    tree::stringify_scalars(&mut tree);

    let Some(file) = tree::deserialize_collecting(tree, &mut problems, &mut settled) else {
        return Err(ConfigError(problems));
    };

    let mut validator = Validator::default();
    let staged = validator.validate(file);
    let upstreams = dns::upstream_targets(staged.upstreams, &mut validator.problems);
    problems.extend(
        validator
            .problems
            .into_iter()
            .filter(|p| !tree::is_settled(&p.key, &settled)),
    );

    match (problems.is_empty(), staged.parts) {
        (true, Some(parts)) => Ok(Config {
            server: parts.server,
            provider: parts.provider,
            cookie: parts.cookie,
            session: parts.session,
            authorization: parts.authorization,
            redirect: parts.redirect,
            upstreams,
            headers: parts.headers,
            policies: parts.policies,
            assertion: parts.assertion,
            telemetry: staged.telemetry.unwrap_or_default(),
        }),
        (true, None) => Err(ConfigError(vec![Problem::new(
            "(root)",
            "invalid configuration",
        )])),
        (false, _) => Err(ConfigError(problems)),
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
