//! `authgate migrate`: an oauth2-proxy deployment (Helm values, TOML config,
//! alpha config, flags, `OAUTH2_PROXY_*` variables) into an authgate config.
//!
//! Inputs ([`inputs`], [`alpha`]) are read into one oauth2-proxy option
//! model ([`options`], named by [`catalog`]) with oauth2-proxy's precedence
//! (flags over variables over the file); [`writer`] turns that model into
//! the authgate YAML and one report line per option not carried, or
//! carried with a difference. The config is then checked by authgate's own
//! loader, so what `migrate` prints, `check` accepts. It never widens
//! access: a restriction it cannot carry fails the run.

pub mod alpha;
pub mod catalog;
pub mod inputs;
pub mod options;
pub mod verify;
pub mod writer;

use std::path::PathBuf;

use serde_yaml::Value as Yaml;

use options::{Options, Refused};

/// One input file and what it is.
#[derive(Debug, Clone)]
pub enum Input {
    /// The chart's values file (`--helm-values`).
    Helm(PathBuf),
    /// oauth2-proxy's TOML config (`--config`).
    Config(PathBuf),
    /// oauth2-proxy's alpha config (`--alpha-config`).
    Alpha(PathBuf),
}

impl Input {
    /// The file name as given, for messages.
    pub fn name(&self) -> String {
        match self {
            Input::Helm(p) | Input::Config(p) | Input::Alpha(p) => p.display().to_string(),
        }
    }
}

/// What `authgate migrate` was given.
#[derive(Debug, Default, Clone)]
pub struct Request {
    /// `--helm-values`.
    pub helm_values: Option<PathBuf>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--alpha-config`.
    pub alpha_config: Option<PathBuf>,
    /// oauth2-proxy flags after `--`.
    pub flags: Vec<String>,
    /// The environment (only `OAUTH2_PROXY_*` is read).
    pub env: Vec<(String, String)>,
}

/// Why no config was written (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// An input file could not be read.
    #[error("{file}: {message}")]
    Unreadable {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// An input file is not valid TOML/YAML.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// oauth2-proxy itself would refuse this input (its reason).
    #[error("refused, as oauth2-proxy refuses it: {0}")]
    Refused(Refused),
}

/// The report on stderr: one line per option not carried or carried with
/// a difference, and the restrictions that could not be carried.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines in the order found.
    pub lines: Vec<String>,
    /// Access restrictions that could not be carried: the run fails.
    pub refusals: usize,
}

impl Report {
    /// `NAME: carried as KEY` (a difference worth knowing).
    pub fn carried(&mut self, name: &str, how: &str) {
        self.lines.push(format!("{name}: carried as {how}"));
    }

    /// `NAME: not carried: WHY`.
    pub fn not_carried(&mut self, name: &str, why: &str) {
        self.lines.push(format!("{name}: not carried: {why}"));
    }

    /// `NAME: warning: TEXT`.
    pub fn warn(&mut self, name: &str, text: &str) {
        self.lines.push(format!("{name}: warning: {text}"));
    }

    /// A problem that stops the run (exit 1) that is not about access.
    pub fn refuse(&mut self, name: &str, why: &str) {
        self.refusals += 1;
        self.lines.push(format!("{name}: {why}"));
    }

    /// An access restriction that cannot be carried: migrate exits 1.
    pub fn restriction(&mut self, name: &str, why: &str) {
        self.refusals += 1;
        self.lines.push(format!(
            "{name}: cannot be carried: {why}; refusing to write a config that would let more users in"
        ));
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The authgate config (YAML), when one was written.
    pub config: Option<String>,
    /// The report lines.
    pub lines: Vec<String>,
}

/// Runs the migration.
///
/// # Errors
/// [`MigrateError`] when an input cannot be read or parsed, or oauth2-proxy
/// would refuse it. A restriction that cannot be carried is not an error:
/// the [`Outcome`] then has no config and the report says why.
pub fn run(request: &Request) -> Result<Outcome, MigrateError> {
    let mut options = Options::default();
    let mut report = Report::default();
    let refused = MigrateError::Refused;

    // The chart's values: its flags, variables, config file and alpha config.
    let helm = match &request.helm_values {
        Some(path) => {
            let input = Input::Helm(path.clone());
            let text = read(&input)?;
            let values: Yaml = serde_yaml::from_str(&text)
                .map_err(|e| inputs::yaml_error(&input.name(), "", &e))?;
            Some(inputs::read_helm(&values, &input, &mut report)?)
        }
        None => None,
    };

    // Flags: the chart's extraArgs, then the command line's.
    let mut flag_args: Vec<String> = helm.as_ref().map(|h| h.flags.clone()).unwrap_or_default();
    flag_args.extend(request.flags.iter().cloned());
    let flag_files =
        inputs::read_flags(&flag_args, "flags", &mut options, &mut report).map_err(refused)?;

    // Variables: the process environment, then those the chart sets.
    inputs::read_env(&request.env, &mut options, &mut report).map_err(refused)?;
    if let Some(h) = &helm {
        inputs::apply_helm_env(&h.env, &mut options, &mut report).map_err(refused)?;
    }

    // The TOML config file.
    if let Some(toml) = helm.as_ref().and_then(|h| h.toml.as_ref()) {
        let input = Input::Config(
            format!(
                "{} (config.configFile)",
                request
                    .helm_values
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
            .into(),
        );
        inputs::read_toml(toml, &input, &mut options)?;
    }
    let config_path = request
        .config
        .clone()
        .or(flag_files.config.map(PathBuf::from));
    if let Some(path) = config_path {
        let input = Input::Config(path);
        inputs::read_toml(&read(&input)?, &input, &mut options)?;
    }

    // The alpha config replaces the legacy provider, header, upstream and
    // listener options; oauth2-proxy refuses those as flags or file keys then.
    let alpha_path = request
        .alpha_config
        .clone()
        .or(flag_files.alpha_config.map(PathBuf::from));
    let alpha_doc = match alpha_path {
        Some(path) => {
            let input = Input::Alpha(path);
            let text = read(&input)?;
            Some((
                serde_yaml::from_str::<Yaml>(&text)
                    .map_err(|e| inputs::yaml_error(&input.name(), "", &e))?,
                input.name(),
            ))
        }
        None => helm
            .as_ref()
            .and_then(|h| h.alpha.clone())
            .map(|a| (a, "helm alphaConfig".to_string())),
    };
    let alpha = match alpha_doc {
        Some((doc, origin)) => {
            let legacy: Vec<(&'static str, options::Setting)> = options
                .iter()
                .filter(|(flag, _)| {
                    catalog::by_flag(flag).is_some_and(|s| s.group != catalog::Group::Core)
                })
                .map(|(f, s)| (f, s.clone()))
                .collect();
            for (flag, setting) in legacy {
                match setting.source {
                    options::Source::Flag => {
                        return Err(refused(Refused(format!(
                            "unknown flag: --{flag} (with an alpha config, oauth2-proxy takes this from the alpha config only)"
                        ))))
                    }
                    options::Source::File => {
                        return Err(refused(Refused(format!(
                            "{}: failed to load core options: '' has invalid keys: {}",
                            setting.origin,
                            catalog::by_flag(flag).map_or(flag, |s| s.cfg)
                        ))))
                    }
                    options::Source::Env => {
                        options.remove(flag);
                        report.not_carried(
                            &setting.origin,
                            "oauth2-proxy ignores it when an alpha config is used (the alpha config's value is carried)",
                        );
                    }
                }
            }
            Some(alpha::read(&doc, &origin, &mut options, &mut report).map_err(refused)?)
        }
        None => None,
    };

    // The allow-list of e-mail addresses: read now, it is a restriction.
    let emails = match helm.as_ref().and_then(|h| h.emails.clone()) {
        Some(list) => Some(list),
        None => match options.text("authenticated-emails-file") {
            Some(path) => {
                let input = Input::Config(PathBuf::from(path));
                Some(read(&input)?.lines().map(String::from).collect())
            }
            None => None,
        },
    };

    let config = writer::write(&options, alpha.as_ref(), emails, &mut report)?;
    let written = verify::finish(config, &mut report);
    let config = if report.refusals > 0 { None } else { written };
    Ok(Outcome {
        config,
        lines: report.lines,
    })
}

fn read(input: &Input) -> Result<String, MigrateError> {
    let path = match input {
        Input::Helm(p) | Input::Config(p) | Input::Alpha(p) => p,
    };
    std::fs::read_to_string(path).map_err(|err| MigrateError::Unreadable {
        file: input.name(),
        message: format!("cannot read: {err}"),
    })
}
