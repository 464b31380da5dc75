//! `Secret<T>`: a value (client secret, cookie key, token) whose `Debug`
//! prints `[redacted]`, so a stray `{:?}` on a config or a session never
//! writes it to a log.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that must never appear in logs, spans or `Debug` output. Read it
/// with [`Secret::expose`], at the one place that needs the bytes.
///
/// Serialises transparently (the session format stores tokens as plain
/// strings); only `Debug` is redacted.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub const fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself; call it only where the value is used.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn serde_is_transparent() {
        let s = Secret::new(String::from("t"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"t\"");
        let back: Secret<String> = serde_json::from_str("\"t\"").unwrap();
        assert_eq!(back, s);
    }
}
