//! The querier's errors and their client-visible status.

use service_core::{ErrorKind, HasErrorKind};

/// `Result` with the querier's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while configuring the querier or answering a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag is invalid.
    #[error("invalid flag {flag}: {message}")]
    Config {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },

    /// A request parameter is invalid (`bad_data`).
    #[error("{0}")]
    BadData(String),

    /// A store failed and partial responses are disabled.
    #[error("{0}")]
    StoreFailed(String),

    /// A per-query fetch limit was exceeded (422, `execution`).
    #[error("{0}")]
    QueryLimit(String),

    /// The query ran out of time.
    #[error("{0}")]
    Timeout(String),

    /// PromQL evaluation failed.
    #[error(transparent)]
    Engine(#[from] promql_engine::Error),

    /// The shared service runtime failed.
    #[error(transparent)]
    Service(#[from] service_core::Error),

    /// Metrics could not be registered.
    #[error("register metrics")]
    Metrics(#[from] prometheus::Error),

    /// A blocking evaluation task was lost.
    #[error("evaluation task: {0}")]
    Task(String),
}

impl HasErrorKind for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } | Error::BadData(_) => ErrorKind::BadData,
            Error::StoreFailed(_) => ErrorKind::Execution,
            Error::QueryLimit(_) => ErrorKind::ResourceExhausted,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Engine(error) => match error.kind() {
                promql_engine::ErrorKind::BadData => ErrorKind::BadData,
                promql_engine::ErrorKind::Timeout => ErrorKind::Timeout,
                promql_engine::ErrorKind::Canceled => ErrorKind::Canceled,
                // Thanos answers every other evaluation failure, store failures included, as
                // `execution` (422).
                promql_engine::ErrorKind::Execution | promql_engine::ErrorKind::Internal => {
                    ErrorKind::Execution
                }
            },
            Error::Service(_) | Error::Metrics(_) | Error::Task(_) => ErrorKind::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        service_core::grpc_status(&error)
    }
}
