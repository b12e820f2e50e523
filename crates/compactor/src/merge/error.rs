//! What can go wrong merging blocks: a problem of one source block (named, so the driver can stop
//! only its group and mark or report that block) or a failure writing the output.

use std::path::PathBuf;

use ulid::Ulid;

/// An error of [`merge_blocks`](super::merge_blocks).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// A source block cannot be merged as it is.
    #[error("source block {block}: {problem}: {detail}")]
    BadBlock {
        /// The faulty source block.
        block: Ulid,
        /// What kind of problem it has.
        problem: BlockProblem,
        /// What exactly: series labels, chunk times, file and offset where known.
        detail: String,
    },
    /// A source folder that does not open as a block and whose name is not a ULID.
    #[error("source {path}: {detail}")]
    UnknownSource {
        /// The folder given as a source.
        path: PathBuf,
        /// Why it does not open.
        detail: String,
    },
    /// Writing the output block failed (disk full, permissions, ...).
    #[error("write block {block}: {source}")]
    Write {
        /// The output block's ULID.
        block: Ulid,
        /// The block writer's error.
        source: tsdb_block::Error,
    },
    /// Preparing the output folder failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. `"create"`.
        action: &'static str,
        /// The folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// The kind of problem a source block has ([`MergeError::BadBlock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockProblem {
    /// A series has a chunk starting at or before the end of the chunk before it (other than an
    /// exact duplicate of its time range), Thanos' `OutOfOrderChunksError`: with
    /// `--compact.skip-block-with-out-of-order-chunks` the block is marked no-compact.
    OutOfOrderChunks,
    /// Chunks that cannot be merged (histogram, aggregate or XOR2 chunks) overlap chunks of
    /// the same series from another block.
    OverlappingChunks,
    /// The block's files do not decode: checksum, bounds, series order, chunk data.
    Corrupt,
    /// The block's files cannot be read (missing file, I/O error, unreadable `meta.json`).
    Unreadable,
}

impl std::fmt::Display for BlockProblem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::OutOfOrderChunks => "out-of-order chunks",
            Self::OverlappingChunks => "overlapping chunks that cannot be merged",
            Self::Corrupt => "corrupt",
            Self::Unreadable => "unreadable",
        })
    }
}

impl MergeError {
    /// The source block at fault, for [`MergeError::BadBlock`].
    pub fn block(&self) -> Option<Ulid> {
        match self {
            Self::BadBlock { block, .. } => Some(*block),
            _ => None,
        }
    }

    pub(super) fn bad(block: Ulid, problem: BlockProblem, detail: String) -> Self {
        Self::BadBlock {
            block,
            problem,
            detail,
        }
    }

    /// A read error of source `block`, classified.
    pub(super) fn reading(block: Ulid, context: String, error: &tsdb_block::Error) -> Self {
        let problem = match error {
            tsdb_block::Error::Io { .. } => BlockProblem::Unreadable,
            _ => BlockProblem::Corrupt,
        };
        Self::bad(block, problem, format!("{context}: {error}"))
    }
}
