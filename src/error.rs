//! The crate's one error type.
//!
//! Every variant says what was being attempted; the underlying error is kept as the
//! `source()`, so `main` can print the whole cause chain and exit non-zero.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// A configuration value is missing or malformed.
    Config { key: String, reason: String },
    /// An operating-system operation failed.
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A PostgreSQL operation failed.
    Database {
        context: String,
        source: postgres::Error,
    },
    /// A child process (initdb, postgres, pg_dump, ...) failed or misbehaved.
    Process { context: String, detail: String },
    /// An S3 request failed (network, credentials, or a non-2xx answer).
    Storage {
        context: String,
        source: s3::error::S3Error,
    },
    /// A backup was refused or failed verification: missing, incomplete, corrupt, or
    /// not matching its manifest. Nothing was changed because of it.
    Refused { context: String, detail: String },
    /// Anything else, described in words, with an optional cause.
    Other {
        context: String,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn db(context: impl Into<String>, source: postgres::Error) -> Self {
        Error::Database {
            context: context.into(),
            source,
        }
    }

    pub fn process(context: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Process {
            context: context.into(),
            detail: detail.into(),
        }
    }

    pub fn storage(context: impl Into<String>, source: s3::error::S3Error) -> Self {
        Error::Storage {
            context: context.into(),
            source,
        }
    }

    pub fn refused(context: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Refused {
            context: context.into(),
            detail: detail.into(),
        }
    }

    /// True for `Refused`: the input was bad, as opposed to the job failing.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Error::Refused { .. })
    }

    /// True for `Config`.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config { .. })
    }

    pub fn other(context: impl Into<String>) -> Self {
        Error::Other {
            context: context.into(),
            source: None,
        }
    }

    pub fn with_source(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Other {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// The error and all its causes on one line, `: `-separated, for logs and `main`.
    pub fn chain(&self) -> String {
        chain(self)
    }
}

/// Any error and all its causes on one line, `: `-separated.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        cause = inner.source();
    }
    out
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { key, reason } => write!(f, "invalid configuration {key}: {reason}"),
            Error::Io { context, .. } => f.write_str(context),
            Error::Database { context, .. } => f.write_str(context),
            Error::Process { context, detail } if detail.is_empty() => f.write_str(context),
            Error::Process { context, detail } => write!(f, "{context}: {detail}"),
            Error::Storage { context, .. } => f.write_str(context),
            Error::Refused { context, detail } if detail.is_empty() => f.write_str(context),
            Error::Refused { context, detail } => write!(f, "{context}: {detail}"),
            Error::Other { context, .. } => f.write_str(context),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Database { source, .. } => Some(source),
            Error::Storage { source, .. } => Some(source),
            Error::Other {
                source: Some(source),
                ..
            } => Some(source.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_prints_every_cause() {
        let err = Error::io(
            "binding 127.0.0.1:1",
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        );
        assert_eq!(err.chain(), "binding 127.0.0.1:1: denied");
    }
}
