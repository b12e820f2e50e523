//! Thanos' block marks: small JSON files next to `meta.json` in the bucket.
//!
//! Thanos writes them with Go's compact `json.Marshal` (no indentation, no trailing newline) and
//! refuses a mark whose `version` is not 1.

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ulid::Ulid;

use super::to_go_json;
use crate::error::{Error, Result};

/// Reasons Thanos gives for no-compact marks.
pub mod no_compact_reason {
    /// Marked by an operator.
    pub const MANUAL: &str = "manual";
    /// The index grew past the compactor's limit.
    pub const INDEX_SIZE_EXCEEDING: &str = "index-size-exceeding";
    /// The index holds out-of-order chunks.
    pub const OUT_OF_ORDER_CHUNK: &str = "block-index-out-of-order-chunk";
    /// Overlapping downsampled blocks cannot be compacted vertically.
    pub const DOWNSAMPLE_VERTICAL_COMPACTION: &str = "downsample-vertical-compaction";
}

/// Reasons Thanos gives for no-downsample marks.
pub mod no_downsample_reason {
    /// Marked by an operator.
    pub const MANUAL: &str = "manual";
}

/// A block mark file.
pub trait Mark: Serialize + DeserializeOwned {
    /// Its file name inside the block folder.
    const FILE_NAME: &'static str;

    /// The block it marks.
    fn block(&self) -> Ulid;

    /// The `version` field.
    fn version(&self) -> i64;

    /// Parses and checks the version (1) of a mark's bytes.
    fn from_json(bytes: &[u8]) -> Result<Self> {
        let invalid = |detail: String| Error::InvalidMeta {
            path: Self::FILE_NAME.to_owned(),
            detail,
        };
        let mark: Self =
            serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?;
        if mark.version() != 1 {
            return Err(invalid(format!(
                "unsupported mark version {}",
                mark.version()
            )));
        }
        Ok(mark)
    }

    /// The bytes Thanos writes.
    fn to_json(&self) -> Vec<u8> {
        to_go_json(self, false)
    }
}

/// `deletion-mark.json`: the block is to be deleted after the delete delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    /// The marked block.
    pub id: Ulid,
    /// Always 1.
    pub version: i64,
    /// Free text, omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// When the block was marked, Unix seconds.
    pub deletion_time: i64,
}

impl DeletionMark {
    /// A version-1 mark.
    pub fn new(id: Ulid, deletion_time_unix_seconds: i64, details: &str) -> Self {
        Self {
            id,
            version: 1,
            details: details.to_owned(),
            deletion_time: deletion_time_unix_seconds,
        }
    }
}

impl Mark for DeletionMark {
    const FILE_NAME: &'static str = "deletion-mark.json";

    fn block(&self) -> Ulid {
        self.id
    }

    fn version(&self) -> i64 {
        self.version
    }
}

/// `no-compact-mark.json`: the compactor leaves the block alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCompactMark {
    /// The marked block.
    pub id: Ulid,
    /// Always 1.
    pub version: i64,
    /// Free text, omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// When the block was marked, Unix seconds.
    pub no_compact_time: i64,
    /// See [`no_compact_reason`].
    #[serde(default)]
    pub reason: String,
}

impl NoCompactMark {
    /// A version-1 mark.
    pub fn new(id: Ulid, no_compact_time_unix_seconds: i64, reason: &str, details: &str) -> Self {
        Self {
            id,
            version: 1,
            details: details.to_owned(),
            no_compact_time: no_compact_time_unix_seconds,
            reason: reason.to_owned(),
        }
    }
}

impl Mark for NoCompactMark {
    const FILE_NAME: &'static str = "no-compact-mark.json";

    fn block(&self) -> Ulid {
        self.id
    }

    fn version(&self) -> i64 {
        self.version
    }
}

/// `no-downsample-mark.json`: the compactor does not downsample the block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDownsampleMark {
    /// The marked block.
    pub id: Ulid,
    /// Always 1.
    pub version: i64,
    /// Free text, omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// When the block was marked, Unix seconds.
    pub no_downsample_time: i64,
    /// See [`no_downsample_reason`].
    #[serde(default)]
    pub reason: String,
}

impl NoDownsampleMark {
    /// A version-1 mark.
    pub fn new(
        id: Ulid,
        no_downsample_time_unix_seconds: i64,
        reason: &str,
        details: &str,
    ) -> Self {
        Self {
            id,
            version: 1,
            details: details.to_owned(),
            no_downsample_time: no_downsample_time_unix_seconds,
            reason: reason.to_owned(),
        }
    }
}

impl Mark for NoDownsampleMark {
    const FILE_NAME: &'static str = "no-downsample-mark.json";

    fn block(&self) -> Ulid {
        self.id
    }

    fn version(&self) -> i64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01DN3SK96XDAEKRB1AN30AAW6E";

    #[test]
    fn marks_serialise_like_go_and_parse_back() {
        let id: Ulid = ID.parse().unwrap();
        let deletion = DeletionMark::new(id, 1_700_000_000, "");
        let bytes = deletion.to_json();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            format!(r#"{{"id":"{ID}","version":1,"deletion_time":1700000000}}"#)
        );
        assert_eq!(DeletionMark::from_json(&bytes).unwrap(), deletion);
        let no_compact = NoCompactMark::new(id, 5, no_compact_reason::MANUAL, "a<b");
        assert_eq!(
            String::from_utf8(no_compact.to_json()).unwrap(),
            format!(
                r#"{{"id":"{ID}","version":1,"details":"a\u003cb","no_compact_time":5,"reason":"manual"}}"#
            )
        );
        assert_eq!(
            NoCompactMark::from_json(&no_compact.to_json()).unwrap(),
            no_compact
        );
        let no_downsample = NoDownsampleMark::new(id, 6, no_downsample_reason::MANUAL, "");
        assert_eq!(
            NoDownsampleMark::from_json(&no_downsample.to_json()).unwrap(),
            no_downsample
        );
        assert_eq!(no_downsample.block(), id);
        assert_eq!(NoDownsampleMark::FILE_NAME, "no-downsample-mark.json");
    }

    #[test]
    fn wrong_versions_and_garbage_are_refused() {
        let wrong = format!(r#"{{"id":"{ID}","version":2,"deletion_time":1}}"#);
        let error = DeletionMark::from_json(wrong.as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("unsupported mark version 2"),
            "{error}"
        );
        assert!(DeletionMark::from_json(b"{\"id\":").is_err());
        assert!(NoCompactMark::from_json(b"{\"id\":\"nope\",\"version\":1}").is_err());
    }
}
