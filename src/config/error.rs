//! Problems found while loading the configuration.

/// One problem, named by the key's full dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
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
