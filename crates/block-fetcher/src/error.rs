//! The fetcher's error type.

use std::path::PathBuf;

/// What can go wrong while building a fetcher or running a pass.
///
/// A pass fails only when the bucket cannot be listed; a block whose meta or mark cannot be read
/// is reported in the [`Snapshot`](crate::Snapshot) instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bucket listing failed: nothing is known about this pass.
    #[error("list bucket")]
    List {
        /// The bucket's error.
        #[source]
        source: objstore::Error,
    },
    /// `--selector.relabel-config` is not a valid relabel configuration.
    #[error("invalid selector.relabel-config: {message}")]
    Relabel {
        /// What is wrong with it.
        message: String,
    },
    /// The local meta cache directory cannot be created.
    #[error("create meta cache directory {path}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The fetcher's metrics cannot be registered (a name registered twice).
    #[error("register metrics")]
    Metrics(#[from] prometheus::Error),
}

/// The fetcher's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
