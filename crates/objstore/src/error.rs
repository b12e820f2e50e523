//! Errors of the object-storage layer.
//!
//! Callers decide what to do with an error through [`Error::kind`] (or the shortcut
//! [`Error::is_not_found`]), never by matching message text. Messages are lowercase, name the
//! action and the object, and never contain a secret: configuration errors quote key names, not
//! values.

use std::path::PathBuf;

/// What went wrong, coarsely: enough for a caller to choose between "absent", "retry later" and
/// "give up".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object does not exist. Expected in normal operation (e.g. a block without a marker).
    NotFound,
    /// The objstore configuration is invalid or names an unsupported provider.
    Config,
    /// The store refused the credentials (wrong key, bad signature, missing permission).
    Denied,
    /// A requested byte range does not fit the object.
    InvalidRange,
    /// A local file or directory could not be read.
    LocalIo,
    /// Any other failure talking to the store, after the configured retries.
    Backend,
}

/// An object-storage error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither or both of `--objstore.config-file` and `--objstore.config` were given.
    #[error("exactly one of --objstore.config-file and --objstore.config must be given ({given})")]
    ConfigFlags {
        /// What was given instead.
        given: &'static str,
    },
    /// The objstore configuration file could not be read.
    #[error("read objstore config file {path}: {source}")]
    ReadConfigFile {
        /// The file named by `--objstore.config-file`.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// The objstore YAML is malformed, has an unknown key, lacks a required key or holds an
    /// invalid value. The message names the key, never a secret value.
    #[error("parse objstore config: {message}")]
    InvalidConfig {
        /// What is wrong, naming the key.
        message: String,
    },
    /// The `type` names a provider this implementation does not support.
    #[error("objstore type {provider:?} is not supported (supported: S3, AZURE, GCS, FILESYSTEM)")]
    UnsupportedProvider {
        /// The `type` as written.
        provider: String,
    },
    /// The client for a provider could not be built from a valid-looking configuration.
    #[error("create {provider} client: {source}")]
    CreateClient {
        /// `S3`, `AZURE`, `GCS` or `FILESYSTEM`.
        provider: &'static str,
        /// What the client library said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The bucket's metrics could not be registered (e.g. a bucket of the same name already
    /// registered them on this registry).
    #[error("register bucket metrics: {source}")]
    RegisterMetrics {
        /// What the registry said.
        source: prometheus::Error,
    },
    /// The object does not exist.
    #[error("{operation} {name:?} in bucket {bucket}: object not found")]
    NotFound {
        /// The operation, as named in metrics (`get`, `get_range`, `attributes`, ...).
        operation: &'static str,
        /// The bucket's name.
        bucket: String,
        /// The object's name.
        name: String,
    },
    /// A range starts past the end of the object or is otherwise unsatisfiable.
    #[error(
        "{operation} {name:?} in bucket {bucket}: range {start}..{end} starts past the end of the \
         object ({size} bytes)"
    )]
    InvalidRange {
        /// The operation, as named in metrics.
        operation: &'static str,
        /// The bucket's name.
        bucket: String,
        /// The object's name.
        name: String,
        /// First byte requested.
        start: u64,
        /// One past the last byte requested.
        end: u64,
        /// The object's size.
        size: u64,
    },
    /// The store refused the request's credentials or permissions.
    #[error("{operation} {name:?} in bucket {bucket}: access denied: {source}")]
    Denied {
        /// The operation, as named in metrics.
        operation: &'static str,
        /// The bucket's name.
        bucket: String,
        /// The object's name (or prefix, for listings).
        name: String,
        /// What the store said.
        source: Box<object_store::Error>,
    },
    /// Any other failure of an operation, after retries.
    #[error("{operation} {name:?} in bucket {bucket}: {source}")]
    Backend {
        /// The operation, as named in metrics.
        operation: &'static str,
        /// The bucket's name.
        bucket: String,
        /// The object's name (or prefix, for listings).
        name: String,
        /// What the store said.
        source: Box<object_store::Error>,
    },
    /// A local file to upload could not be read, or a local directory could not be walked.
    #[error("read local path {path}: {source}")]
    LocalIo {
        /// The local path.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// Creating the Azure container at start-up (`storage_create_container`) failed.
    #[error("create azure container {container:?}: {message}")]
    CreateContainer {
        /// The container's name.
        container: String,
        /// What went wrong (status and service error code, no credentials).
        message: String,
    },
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ConfigFlags { .. }
            | Error::ReadConfigFile { .. }
            | Error::InvalidConfig { .. }
            | Error::UnsupportedProvider { .. }
            | Error::CreateClient { .. }
            | Error::RegisterMetrics { .. } => ErrorKind::Config,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::InvalidRange { .. } => ErrorKind::InvalidRange,
            Error::Denied { .. } => ErrorKind::Denied,
            Error::LocalIo { .. } => ErrorKind::LocalIo,
            Error::Backend { .. } | Error::CreateContainer { .. } => ErrorKind::Backend,
        }
    }

    /// Whether the object does not exist (as opposed to a failure to find out).
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// Builds an [`Error::InvalidConfig`].
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::InvalidConfig {
            message: message.into(),
        }
    }

    /// Classifies an `object_store` error of `operation` on `name`.
    pub(crate) fn from_store(
        operation: &'static str,
        bucket: &str,
        name: &str,
        source: object_store::Error,
    ) -> Self {
        let bucket = bucket.to_owned();
        let name = name.to_owned();
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound {
                operation,
                bucket,
                name,
            },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Error::Denied {
                operation,
                bucket,
                name,
                source: Box::new(source),
            },
            other => Error::Backend {
                operation,
                bucket,
                name,
                source: Box::new(other),
            },
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
