//! Errors of the data model.

/// An error building a model value from untrusted input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A regex matcher's pattern does not compile.
    #[error("invalid regex {pattern:?} for label {name:?}: {source}")]
    InvalidRegex {
        /// The label the matcher applies to.
        name: String,
        /// The pattern as given.
        pattern: String,
        /// What the regex compiler said.
        source: regex::Error,
    },
    /// A label set names the same label twice.
    #[error("duplicate label name {name:?}")]
    DuplicateLabel {
        /// The repeated name.
        name: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
