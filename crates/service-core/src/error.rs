//! Errors of the service runtime itself: configuration, listeners, TLS, telemetry.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A boxed error as returned by run-group actors and service `run` functions.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while setting up or running the shared runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration file could not be read.
    #[error("read {what} file {path}")]
    ReadFile {
        /// What the file holds (`http.config`, `TLS certificate`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// A YAML configuration was malformed or named something unsupported.
    #[error("parse {what}: {message}")]
    Config {
        /// Which configuration (`http.config`, `tracing.config`).
        what: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// PEM certificates or keys could not be used.
    #[error("load TLS material {path}: {message}")]
    Tls {
        /// The file with the certificate, key or CA.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A TLS configuration could not be assembled.
    #[error("build TLS configuration: {0}")]
    TlsConfig(String),

    /// A listener could not be bound.
    #[error("listen on {address}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },

    /// The gRPC transport failed.
    #[error("serve gRPC on {address}")]
    Grpc {
        /// The listening address.
        address: SocketAddr,
        /// The cause.
        source: tonic::transport::Error,
    },

    /// A gRPC client endpoint was malformed.
    #[error("gRPC endpoint {endpoint}: {message}")]
    GrpcEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        message: String,
    },

    /// The tracing or logging pipeline could not be installed.
    #[error("initialise telemetry: {0}")]
    Telemetry(String),

    /// A metric could not be registered.
    #[error("register metric")]
    Metrics(#[from] prometheus::Error),

    /// A signal handler could not be installed.
    #[error("install signal handler")]
    Signal(#[source] std::io::Error),

    /// A run-group actor failed.
    #[error("{actor}")]
    Actor {
        /// The actor's name.
        actor: String,
        /// Its error.
        source: BoxError,
    },

    /// A run-group actor panicked.
    #[error("{actor} panicked")]
    ActorPanicked {
        /// The actor's name.
        actor: String,
    },
}
