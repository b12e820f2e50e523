//! The sidecar's error type and its client-visible status.

use service_core::{ErrorKind, HasErrorKind};

/// `Result` with the sidecar's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the sidecar.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag value is malformed.
    #[error("invalid flag --{flag}: {detail}")]
    InvalidFlag {
        /// The flag's name without dashes.
        flag: &'static str,
        /// What is wrong with the value.
        detail: String,
    },
    /// Prometheus could not be reached or answered with a transport error.
    #[error("request prometheus {url}: {source}")]
    PrometheusRequest {
        /// The URL asked.
        url: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// Prometheus answered with a non-success status.
    #[error("prometheus {url} answered {status}: {body}")]
    PrometheusStatus {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Prometheus' answer could not be decoded.
    #[error("decode prometheus answer from {url}: {detail}")]
    PrometheusDecode {
        /// The URL asked.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// Prometheus did not answer, or stopped sending its answer, for too long.
    #[error("prometheus {url} sent nothing for {waited:?}")]
    PrometheusTimeout {
        /// The URL asked.
        url: String,
        /// How long the sidecar waited.
        waited: std::time::Duration,
    },
    /// Prometheus' answer is larger than the sidecar accepts.
    #[error("prometheus answer from {url} refused: {detail}")]
    AnswerTooLarge {
        /// The URL asked.
        url: String,
        /// The size and the limit.
        detail: String,
    },
    /// A Series call exceeded `--store.limits.request-series` or `--store.limits.request-samples`.
    #[error("{message}")]
    LimitExceeded {
        /// Which limit, its value and the count that exceeded it.
        message: String,
    },
    /// Prometheus did not become ready in time.
    #[error("prometheus at {url} not ready after {waited_secs}s: {last_error}")]
    PrometheusNotReady {
        /// The Prometheus base URL.
        url: String,
        /// How long the sidecar waited.
        waited_secs: u64,
        /// The last probe's failure.
        last_error: String,
    },
    /// Prometheus has no external labels; the sidecar cannot identify its data.
    #[error(
        "prometheus at {url} has no external labels (global.external_labels): the sidecar needs unique external labels per Prometheus replica"
    )]
    NoExternalLabels {
        /// The Prometheus base URL.
        url: String,
    },
    /// A request from a StoreAPI client is malformed.
    #[error("invalid request: {detail}")]
    InvalidRequest {
        /// What is wrong.
        detail: String,
    },
    /// A wire conversion failed (a bad matcher, a bad label set).
    #[error(transparent)]
    StoreApi(#[from] storeapi::Error),
    /// Object storage failed.
    #[error("{action}: {source}")]
    Objstore {
        /// What the sidecar was doing.
        action: String,
        /// The bucket's error.
        source: objstore::Error,
    },
    /// A block in the TSDB folder could not be read or prepared.
    #[error("{action} {path}: {source}")]
    LocalIo {
        /// What the sidecar was doing.
        action: &'static str,
        /// The file or folder.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// A block's `meta.json` could not be read or written.
    #[error("block meta {path}: {source}")]
    BlockMeta {
        /// The block folder.
        path: String,
        /// What tsdb-block said.
        source: tsdb_block::Error,
    },
    /// The shipper state file is malformed.
    #[error("read shipper file {path}: {detail}")]
    ShipperFile {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A metric could not be registered.
    #[error("register metrics: {detail}")]
    Metrics {
        /// What the registry said.
        detail: String,
    },
    /// A server or lifecycle part of service-core failed.
    #[error(transparent)]
    Service(#[from] service_core::Error),
}

impl HasErrorKind for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidFlag { .. } | Self::InvalidRequest { .. } => ErrorKind::BadData,
            Self::StoreApi(_) => ErrorKind::BadData,
            Self::PrometheusRequest { source, .. } if source.is_timeout() => ErrorKind::Timeout,
            Self::PrometheusTimeout { .. } => ErrorKind::Timeout,
            Self::AnswerTooLarge { .. } | Self::LimitExceeded { .. } => {
                ErrorKind::ResourceExhausted
            }
            Self::PrometheusRequest { .. }
            | Self::PrometheusNotReady { .. }
            | Self::PrometheusStatus { .. } => ErrorKind::Unavailable,
            Self::Objstore { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        service_core::grpc_status(&error)
    }
}
