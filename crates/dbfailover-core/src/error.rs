//! Error types of the core.

use thiserror::Error;

/// A configuration that cannot be used. Names the setting and the (masked) value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value that is not allowed.
    #[error("invalid setting `{key}` = `{value}`: {reason}")]
    InvalidSetting {
        /// The setting's full key, such as `health_check.failure_threshold`.
        key: String,
        /// The offending value, with any password masked.
        value: String,
        /// What is allowed instead.
        reason: String,
    },
}

impl ConfigError {
    /// An invalid setting.
    pub fn invalid(
        key: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidSetting {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// The key of the offending setting.
    pub fn key(&self) -> &str {
        match self {
            Self::InvalidSetting { key, .. } => key,
        }
    }
}
