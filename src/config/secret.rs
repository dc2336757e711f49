//! Secrets in configuration: written `env:NAME`, `file:/path` or (discouraged) literally, resolved when
//! used, and wrapped so that `Debug` and logs show `[redacted]` instead of the value.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// Where a secret comes from, as written in the configuration. Never holds the secret itself unless it
/// was written literally, and even then never prints it.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Empty,
    Env(String),
    File(std::path::PathBuf),
    Literal(String),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Empty => f.write_str("SecretRef::Empty"),
            SecretRef::Env(name) => write!(f, "SecretRef::Env({name})"),
            SecretRef::File(path) => write!(f, "SecretRef::File({})", path.display()),
            SecretRef::Literal(_) => f.write_str("SecretRef::Literal([redacted])"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(SecretRef::parse(&text))
    }
}

impl SecretRef {
    pub fn parse(text: &str) -> Self {
        if text.is_empty() {
            SecretRef::Empty
        } else if let Some(name) = text.strip_prefix("env:") {
            SecretRef::Env(name.to_string())
        } else if let Some(path) = text.strip_prefix("file:") {
            SecretRef::File(path.into())
        } else {
            SecretRef::Literal(text.to_string())
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, SecretRef::Empty)
    }

    /// Reads the secret; `None` when the configuration left it empty.
    pub fn resolve(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        let value = match self {
            SecretRef::Empty => return Ok(None),
            SecretRef::Literal(v) => v.clone(),
            SecretRef::Env(name) => std::env::var(name).map_err(|_| ConfigError::Invalid {
                key: key.to_string(),
                reason: format!("environment variable {name} is not set"),
            })?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Invalid {
                    key: key.to_string(),
                    reason: format!("cannot read {}: {e}", path.display()),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(ConfigError::Invalid {
                key: key.to_string(),
                reason: "the secret is empty".into(),
            });
        }
        Ok(Some(Secret(SecretString::from(value))))
    }

    /// Validation at start-up: the variable or file must be there.
    pub(super) fn check(&self, key: &str) -> Result<(), ConfigError> {
        self.resolve(key).map(|_| ())
    }
}

/// A resolved secret. `Debug` prints `[redacted]`; the value is reachable only through `expose`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let literal = SecretRef::parse("hunter2");
        assert!(!format!("{literal:?}").contains("hunter2"));
        let resolved = literal.resolve("k").unwrap().unwrap();
        assert!(!format!("{resolved:?}").contains("hunter2"));
        assert_eq!(resolved.expose(), "hunter2");
    }

    #[test]
    fn missing_environment_secret_names_the_key_and_the_variable() {
        let r = SecretRef::parse("env:HEADROOM_TEST_SURELY_UNSET_VARIABLE");
        let err = r
            .resolve("sources[0].bearer_token")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sources[0].bearer_token"), "{err}");
        assert!(err.contains("HEADROOM_TEST_SURELY_UNSET_VARIABLE"), "{err}");
    }
}
