//! The one error type for infrastructure failures.

use std::time::Duration;

use crate::model::InvalidInput;

/// A boxed source error from a backend driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An infrastructure failure: the one error type of the crate.
///
/// Business results (sold out, rate limited, ...) are values of
/// [`Outcome`](crate::Outcome), never errors. An [`Error`] means a backend or
/// the configuration failed; every backend maps its driver's errors into it,
/// so driver types never appear in this crate's public signatures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A backend (Redis, MySQL, Kafka, ...) failed.
    #[error("{backend} backend failed during {operation}: {source}")]
    Backend {
        /// Which backend, e.g. `"redis"`.
        backend: &'static str,
        /// What it was asked to do, e.g. `"reserve"`.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A port call did not answer in time.
    #[error("{operation} did not answer within {after:?}")]
    Timeout {
        /// The port operation, e.g. `"reserve"`.
        operation: &'static str,
        /// The configured timeout.
        after: Duration,
    },
    /// The configuration is unusable; the message says what to change.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An input value was rejected.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
}

impl Error {
    /// Wraps a backend driver's error.
    pub fn backend(
        backend: &'static str,
        operation: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend {
            backend,
            operation,
            source: source.into(),
        }
    }

    /// The same failure for another caller: the kind, backend and
    /// operation kept, a driver's error kept as its message.
    pub(crate) fn shared_copy(&self) -> Self {
        match self {
            Error::Backend {
                backend,
                operation,
                source,
            } => Error::backend(backend, operation, source.to_string()),
            Error::Timeout { operation, after } => Error::Timeout {
                operation,
                after: *after,
            },
            Error::Config(message) => Error::Config(message.clone()),
            Error::Invalid(e) => Error::Invalid(e.clone()),
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Backend { .. } | Error::Timeout { .. })
    }
}

/// `Result<T, flashsale::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
