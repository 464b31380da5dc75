//! Problems found while loading the configuration, each named by its key.

/// One problem, named by the key's full dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key's full dotted path (`cookie.secret`, `upstreams[0].url`), or
    /// `(yaml)`, `(root)` or the file's path for problems of the whole file.
    pub key: String,
    /// What is wrong, in one line; never echoes a secret value.
    pub message: String,
}

impl Problem {
    /// A problem under `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem at once, so users fix their file in one pass.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration ({} problem(s))", .0.len())]
pub struct ConfigError(pub Vec<Problem>);

impl ConfigError {
    /// The problems, one per line as `key: message` (what `check` prints).
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(Problem::to_string)
    }

    /// The problems, for callers that want to inspect keys.
    pub fn problems(&self) -> &[Problem] {
        &self.0
    }
}
