//! Errors of block reading and writing.

use std::path::PathBuf;

/// An error reading or writing a block.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. `"read"`, `"create"`, `"rename"`.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file's content is not what the format allows.
    #[error("corrupt {file}: {section} at offset {offset}: {detail}")]
    Corrupt {
        /// The file, e.g. `index` or `chunks/000001`.
        file: String,
        /// The section of the file, e.g. `"symbol table"`, `"series"`, `"chunk"`.
        section: &'static str,
        /// The byte offset within the file where the problem was found.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// Input given by the caller breaks a writer's rules (e.g. series out of order).
    #[error("invalid input to {writer}: {detail}")]
    InvalidInput {
        /// The writer that refused the input.
        writer: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// `meta.json` does not parse or has an unsupported version.
    #[error("invalid meta.json {path}: {detail}")]
    InvalidMeta {
        /// The meta file (or a description of where it came from).
        path: String,
        /// What is wrong.
        detail: String,
    },
}

impl Error {
    /// An I/O error with its action and path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
