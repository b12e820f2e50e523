//! Downsampling errors: a bad source block apart from a failure to write the output.

use std::path::PathBuf;

use ulid::Ulid;

/// Why a block could not be downsampled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownsampleError {
    /// The source block's resolution cannot be downsampled to the one asked for.
    #[error(
        "downsample block {block} to resolution {resolution}: its resolution is {source_resolution}"
    )]
    Resolution {
        /// The source block.
        block: Ulid,
        /// The source block's resolution (ms).
        source_resolution: i64,
        /// The resolution asked for (ms).
        resolution: i64,
    },
    /// The source block does not open, or its index does not read.
    #[error("read source block {dir}: {source}")]
    SourceBlock {
        /// The source block's folder.
        dir: PathBuf,
        /// What went wrong.
        source: tsdb_block::Error,
    },
    /// A chunk of a source series does not read, decode or fit the format.
    #[error("source block {block}: series {series}: chunk {min_time}..{max_time}: {detail}")]
    SourceChunk {
        /// The source block.
        block: Ulid,
        /// The series' labels.
        series: String,
        /// The chunk's first timestamp, as the index records it.
        min_time: i64,
        /// The chunk's last timestamp, as the index records it.
        max_time: i64,
        /// What is wrong.
        detail: String,
    },
    /// The downsampled block could not be written.
    #[error("write downsampled block of {block} under {dir}: {source}")]
    Output {
        /// The source block.
        block: Ulid,
        /// The folder the output block was being written into.
        dir: PathBuf,
        /// What went wrong.
        source: tsdb_block::Error,
    },
}

impl DownsampleError {
    /// Whether the source block is at fault (corrupt or unsupported data): retrying the same
    /// block will fail the same way. Otherwise writing the output failed (disk full, I/O).
    pub fn is_bad_source(&self) -> bool {
        match self {
            Self::Resolution { .. } | Self::SourceChunk { .. } => true,
            Self::SourceBlock { source, .. } => !matches!(source, tsdb_block::Error::Io { .. }),
            Self::Output { .. } => false,
        }
    }
}
