//! The one oauth2-proxy option model every input is read into: each option
//! set once, with where it came from, and oauth2-proxy's precedence (a flag
//! over an `OAUTH2_PROXY_*` variable over the config file) applied as values
//! arrive. Values are parsed as oauth2-proxy parses them (Go booleans and
//! durations, comma-separated slices), and a value it would refuse is refused
//! here with its reason.

use std::collections::BTreeMap;
use std::time::Duration;

use super::catalog::{Kind, OptionSpec};

/// Where a value came from; a later variant wins over an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The TOML config file (`--config`, the chart's `config.configFile`).
    File,
    /// An `OAUTH2_PROXY_*` variable (the chart's secrets and Redis settings too).
    Env,
    /// A command-line flag (the chart's `extraArgs`, `config.cookieName`).
    Flag,
}

/// A value as written, before the option's kind is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// Text (a flag's value, a variable, a TOML string).
    Text(String),
    /// A TOML or YAML boolean.
    Bool(bool),
    /// A TOML array.
    List(Vec<String>),
    /// A flag given without `=value`.
    Bare,
}

/// A value parsed for its option's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Text, durations and integers (durations already checked).
    Text(String),
    /// A boolean.
    Bool(bool),
    /// A string slice.
    List(Vec<String>),
}

/// One option's winning value.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The parsed value.
    pub value: Value,
    /// Which kind of input set it.
    pub source: Source,
    /// Where exactly, for messages (`--cookie-expire`, `OAUTH2_PROXY_COOKIE_SECRET`, `oauth2_proxy.cfg: cookie_secret`).
    pub origin: String,
    /// The environment variable the value lives in at run time, when it came
    /// from the environment: secrets are then written as `${VAR}`, not in clear.
    pub env_ref: Option<String>,
}

/// oauth2-proxy would refuse this input; the text is its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Every option set by any input, keyed by flag name.
#[derive(Debug, Default)]
pub struct Options {
    settings: BTreeMap<&'static str, Setting>,
}

impl Options {
    /// Records `raw` for `spec` from `source`, unless a higher-precedence
    /// source already set it. Repeated slice flags accumulate, as with pflag.
    ///
    /// # Errors
    /// [`Refused`] when oauth2-proxy would refuse the value (a boolean that
    /// is not one, a malformed duration or integer, a list for a scalar).
    pub fn set(
        &mut self,
        spec: &'static OptionSpec,
        raw: Raw,
        source: Source,
        origin: &str,
        env_ref: Option<String>,
    ) -> Result<(), Refused> {
        let value = parse(spec, raw, origin)?;
        match self.settings.get_mut(spec.flag) {
            Some(old) if old.source > source => return Ok(()),
            Some(old) if old.source == source && source == Source::Flag => {
                if let (Value::List(have), Value::List(more)) = (&mut old.value, &value) {
                    have.extend(more.iter().cloned());
                    return Ok(());
                }
            }
            _ => {}
        }
        self.settings.insert(
            spec.flag,
            Setting {
                value,
                source,
                origin: origin.to_string(),
                env_ref,
            },
        );
        Ok(())
    }

    /// The setting for flag name `flag`, if any input set it.
    pub fn get(&self, flag: &str) -> Option<&Setting> {
        self.settings.get(flag)
    }

    /// Every setting, by flag name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Setting)> {
        self.settings.iter().map(|(k, v)| (*k, v))
    }

    /// Text value of `flag` (also durations and integers); None when unset.
    pub fn text(&self, flag: &str) -> Option<&str> {
        match &self.get(flag)?.value {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// Boolean value of `flag`; None when unset.
    pub fn flag(&self, flag: &str) -> Option<bool> {
        match self.get(flag)?.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// Slice value of `flag`; None when unset.
    pub fn list(&self, flag: &str) -> Option<&[String]> {
        match &self.get(flag)?.value {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// Removes `flag` (an input that oauth2-proxy ignores in the chosen mode).
    pub fn remove(&mut self, flag: &str) -> Option<Setting> {
        self.settings.remove(flag)
    }
}

/// Applies the option's kind to a raw value.
fn parse(spec: &OptionSpec, raw: Raw, origin: &str) -> Result<Value, Refused> {
    let refuse = |why: String| Refused(format!("{origin}: {why}"));
    match (spec.kind, raw) {
        (Kind::Bool, Raw::Bare) => Ok(Value::Bool(true)),
        (Kind::Bool, Raw::Bool(b)) => Ok(Value::Bool(b)),
        (Kind::Bool, Raw::Text(t)) => go_bool(&t).map(Value::Bool).ok_or_else(|| {
            refuse(format!(
                "invalid argument {t:?}: strconv.ParseBool: parsing {t:?}: invalid syntax"
            ))
        }),
        (Kind::List, Raw::List(l)) => Ok(Value::List(l)),
        (Kind::List, Raw::Text(t)) => Ok(Value::List(split_csv(&t))),
        (Kind::List, Raw::Bool(b)) => Ok(Value::List(vec![b.to_string()])),
        (Kind::Duration, Raw::Text(t)) => go_duration(&t)
            .map(|_| Value::Text(t.trim().to_string()))
            .ok_or_else(|| {
                refuse(format!(
                    "invalid argument {t:?}: time: invalid duration {t:?}"
                ))
            }),
        (Kind::Int, Raw::Text(t)) => t
            .trim()
            .parse::<i64>()
            .map(|_| Value::Text(t.trim().to_string()))
            .map_err(|_| {
                refuse(format!(
                    "invalid argument {t:?}: strconv.ParseInt: parsing {t:?}: invalid syntax"
                ))
            }),
        (Kind::Text, Raw::Text(t)) => Ok(Value::Text(t)),
        (Kind::Text | Kind::Duration | Kind::Int, Raw::Bool(b)) => {
            parse(spec, Raw::Text(b.to_string()), origin)
        }
        (_, Raw::Bare) => Err(refuse(format!("flag needs an argument: --{}", spec.flag))),
        (_, Raw::List(_)) => Err(refuse(format!(
            "'{}' expected a single value, got a list",
            spec.cfg
        ))),
    }
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// pflag's string-slice syntax: comma-separated, blanks trimmed, empty
/// items dropped (`--email-domain=""` sets an empty list).
pub fn split_csv(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches('"').to_string())
        .collect()
}

/// Go's `time.ParseDuration` (`1h30m`, `1.5h`, `90s`, `0`), non-negative.
pub fn go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Some(Duration::from_secs_f64(total))
}

/// A duration as authgate writes it: whole hours, minutes or seconds
/// (rounded up to a second: authgate's durations are whole seconds).
pub fn authgate_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if d.subsec_nanos() > 0 {
        secs += 1;
    }
    if secs == 0 {
        "0s".into()
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::catalog::by_flag;

    fn spec(flag: &str) -> &'static OptionSpec {
        by_flag(flag).unwrap()
    }

    #[test]
    fn flags_win_over_env_over_file_whatever_the_order() {
        let mut o = Options::default();
        let s = spec("cookie-name");
        o.set(
            s,
            Raw::Text("flag".into()),
            Source::Flag,
            "--cookie-name",
            None,
        )
        .unwrap();
        o.set(s, Raw::Text("file".into()), Source::File, "f", None)
            .unwrap();
        o.set(s, Raw::Text("env".into()), Source::Env, "E", None)
            .unwrap();
        assert_eq!(o.text("cookie-name"), Some("flag"));
        let mut o = Options::default();
        o.set(s, Raw::Text("file".into()), Source::File, "f", None)
            .unwrap();
        o.set(s, Raw::Text("env".into()), Source::Env, "E", None)
            .unwrap();
        assert_eq!(o.text("cookie-name"), Some("env"));
    }

    #[test]
    fn repeated_slice_flags_accumulate_and_split_on_commas() {
        let mut o = Options::default();
        let s = spec("email-domain");
        o.set(
            s,
            Raw::Text("a.com,b.com".into()),
            Source::Flag,
            "--email-domain",
            None,
        )
        .unwrap();
        o.set(
            s,
            Raw::Text("c.com".into()),
            Source::Flag,
            "--email-domain",
            None,
        )
        .unwrap();
        assert_eq!(o.list("email-domain").unwrap(), ["a.com", "b.com", "c.com"]);
    }

    #[test]
    fn values_oauth2_proxy_refuses_are_refused_with_its_reason() {
        let mut o = Options::default();
        let err = o
            .set(
                spec("cookie-secure"),
                Raw::Text("maybe".into()),
                Source::Flag,
                "--cookie-secure",
                None,
            )
            .unwrap_err();
        assert!(err.0.contains("strconv.ParseBool"), "{err}");
        let err = o
            .set(
                spec("cookie-expire"),
                Raw::Text("7d".into()),
                Source::Flag,
                "--cookie-expire",
                None,
            )
            .unwrap_err();
        assert!(err.0.contains("invalid duration"), "{err}");
        assert!(o
            .set(
                spec("cookie-name"),
                Raw::Bare,
                Source::Flag,
                "--cookie-name",
                None
            )
            .is_err());
    }

    #[test]
    fn go_durations_become_authgate_durations() {
        let cases = [
            ("12h", "12h"),
            ("1h30m", "90m"),
            ("168h0m0s", "168h"),
            ("90s", "90s"),
            ("1.5h", "90m"),
            ("0", "0s"),
            ("500ms", "1s"),
        ];
        for (go, ours) in cases {
            assert_eq!(authgate_duration(go_duration(go).unwrap()), ours, "{go}");
        }
        for bad in ["", "7d", "h", "1x", "-"] {
            assert!(go_duration(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn go_booleans() {
        assert_eq!(go_bool("T"), Some(true));
        assert_eq!(go_bool("0"), Some(false));
        assert_eq!(go_bool("yes"), None);
    }
}
