//! The store gateway's errors and their client-visible status.

use service_core::{ErrorKind, HasErrorKind};

/// `Result` with the store gateway's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while configuring, syncing or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag or configuration file is invalid.
    #[error("invalid configuration {what}: {message}")]
    Config {
        /// Which flag or file.
        what: &'static str,
        /// What is wrong.
        message: String,
    },

    /// A bucket operation failed.
    #[error("{action}")]
    Bucket {
        /// What was being done (`read index of block <ulid>`).
        action: String,
        /// The cause.
        source: objstore::Error,
    },

    /// A block's files are malformed.
    #[error("block {block}: {action}")]
    Block {
        /// The block's ULID.
        block: ulid::Ulid,
        /// What was being read.
        action: &'static str,
        /// The cause.
        source: tsdb_block::Error,
    },

    /// The index-header file on local disk could not be written or read.
    #[error("index-header {path}")]
    LocalFile {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// A request-level limit was exceeded.
    #[error("{message}")]
    LimitExceeded {
        /// The limit.
        kind: crate::limits::LimitKind,
        /// What was exceeded, with the limit and the count.
        message: String,
    },

    /// The request is malformed (bad matcher, bad hints).
    #[error("bad request: {0}")]
    BadRequest(String),

    /// A shared cache server answered with a protocol error.
    #[error("cache {server}: {message}")]
    Cache {
        /// The server address.
        server: String,
        /// What went wrong.
        message: String,
    },

    /// An unexpected failure on our side (a panicked task).
    #[error("internal error: {0}")]
    Internal(String),

    /// The shared service runtime failed.
    #[error(transparent)]
    Service(#[from] service_core::Error),

    /// Metrics could not be registered.
    #[error("register metrics")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    /// A bucket error wrapped with the action it interrupted.
    pub(crate) fn bucket(action: impl Into<String>, source: objstore::Error) -> Self {
        Self::Bucket {
            action: action.into(),
            source,
        }
    }
}

impl HasErrorKind for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Config { .. } | Self::BadRequest(_) => ErrorKind::BadData,
            Self::LimitExceeded { .. } => ErrorKind::ResourceExhausted,
            Self::Bucket { .. } | Self::Cache { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        service_core::grpc_status(&error)
    }
}
