//! The compactor's errors. A bucket error is *retryable* (the pass is retried after
//! `--wait-interval`, counted in `thanos_compact_retries_total`); a problem of one group's blocks
//! stops only that group ([`crate::plan`] and the driver decide); the rest end `--wait` mode.

/// `Result` with the compactor's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while configuring or running the compactor.
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

    /// A bucket operation failed (retryable).
    #[error("{action}")]
    Bucket {
        /// What was being done (`download block <ulid>`).
        action: String,
        /// The cause.
        source: objstore::Error,
    },

    /// A local file or directory could not be written or read.
    #[error("local file {path}")]
    LocalFile {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// A block's files could not be read or written.
    #[error("block {block}: {action}")]
    Block {
        /// The block's ULID.
        block: ulid::Ulid,
        /// What was being done.
        action: &'static str,
        /// The cause.
        source: tsdb_block::Error,
    },

    /// A blocking task panicked or was cancelled.
    #[error("{what} did not finish: {message}")]
    Task {
        /// The task.
        what: &'static str,
        /// The join error.
        message: String,
    },

    /// Listing the bucket or reading its metas failed (retryable).
    #[error("fetch block metas")]
    Fetch(#[source] Box<block_fetcher::Error>),

    /// A merge failed for a reason other than a bad source block (its output could not be
    /// written).
    #[error("merge")]
    Merge(#[source] Box<crate::merge::MergeError>),

    /// Groups are stopped by problems and `--no-debug.halt-on-error` asks to exit.
    #[error("compaction groups stopped (--no-debug.halt-on-error): {0}")]
    GroupsStopped(String),

    /// A metric could not be registered.
    #[error("register metrics")]
    Metrics(#[from] prometheus::Error),

    /// The HTTP server failed.
    #[error("HTTP server")]
    Service(#[from] service_core::Error),
}

impl Error {
    /// A bucket error for `action`.
    pub(crate) fn bucket(action: impl Into<String>, source: objstore::Error) -> Self {
        Self::Bucket {
            action: action.into(),
            source,
        }
    }

    /// A local file error at `path`.
    pub(crate) fn local(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::LocalFile {
            path: path.to_owned(),
            source,
        }
    }

    /// Whether retrying later may succeed: bucket and local disk trouble, and a block that
    /// changed under the pass (deleted while it was being downloaded); the next pass starts
    /// from a new listing.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Bucket { .. }
                | Self::LocalFile { .. }
                | Self::Block { .. }
                | Self::Fetch(_)
                | Self::Merge(_)
        )
    }
}
