//! The engine's error type and its client-visible classification.

/// How a client should see an error; mirrors the `errorType` values of the Prometheus HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query text or a parameter is malformed (`bad_data`, HTTP 400).
    BadData,
    /// Evaluation failed (`execution`, HTTP 422).
    Execution,
    /// The query ran past its deadline (`timeout`, HTTP 503).
    Timeout,
    /// The caller cancelled the query (`canceled`, HTTP 499).
    Canceled,
    /// The series source failed (`internal`, HTTP 500).
    Internal,
}

impl ErrorKind {
    /// The `errorType` string Prometheus uses for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadData => "bad_data",
            ErrorKind::Execution => "execution",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Canceled => "canceled",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error from parsing or evaluating a query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The query text does not parse or fails a static check.
    #[error("{message}")]
    Parse {
        /// The parser's message.
        message: String,
    },
    /// A query parameter (time range, step) is invalid.
    #[error("{message}")]
    BadParameter {
        /// What is wrong.
        message: String,
    },
    /// Evaluation failed, worded as Prometheus words it.
    #[error("{message}")]
    Execution {
        /// What went wrong.
        message: String,
    },
    /// The query would hold more samples in memory than allowed.
    #[error("query processing would load too many samples into memory in {phase}")]
    TooManySamples {
        /// The phase that hit the limit (`query execution`).
        phase: &'static str,
    },
    /// The query would take more of the memory budget shared by concurrent queries than is left.
    #[error(
        "query processing would exceed the memory budget of {limit} bytes shared by concurrent queries"
    )]
    MemoryBudget {
        /// The budget's size in bytes.
        limit: usize,
    },
    /// The query ran past its timeout.
    #[error("query timed out in {phase}")]
    Timeout {
        /// The phase that noticed the deadline.
        phase: &'static str,
    },
    /// The query was cancelled by its caller.
    #[error("query was canceled in {phase}")]
    Canceled {
        /// The phase that noticed the cancellation.
        phase: &'static str,
    },
    /// The series source failed.
    #[error("select series: {source}")]
    Storage {
        /// The source's error.
        #[from]
        source: crate::storage::StorageError,
    },
}

impl Error {
    /// The client-visible class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Parse { .. } | Error::BadParameter { .. } => ErrorKind::BadData,
            Error::Execution { .. } | Error::TooManySamples { .. } | Error::MemoryBudget { .. } => {
                ErrorKind::Execution
            }
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Canceled { .. } => ErrorKind::Canceled,
            Error::Storage { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn exec(message: impl Into<String>) -> Self {
        Error::Execution {
            message: message.into(),
        }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
