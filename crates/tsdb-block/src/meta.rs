//! `meta.json`: Prometheus' block description plus Thanos' `thanos` section, and Thanos' block
//! marks (`deletion-mark.json`, `no-compact-mark.json`, `no-downsample-mark.json`).
//!
//! Reading accepts any JSON layout, tolerates `null` where Go would and keeps unknown keys so
//! that a read-modify-write round trip loses nothing. Writing reproduces Go's `encoding/json`
//! output: struct field order, `omitempty` rules, sorted map keys, tab indentation and the
//! escaping of `<`, `>`, `&`, U+2028 and U+2029. Prometheus writes no trailing newline; Thanos,
//! which writes metas holding a `thanos` section, ends the file with one.

mod marks;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use prom_model::time::{format_rfc3339_millis, parse_rfc3339_millis};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use ulid::Ulid;

use crate::error::{Error, Result};

pub use marks::{
    DeletionMark, Mark, NoCompactMark, NoDownsampleMark, no_compact_reason, no_downsample_reason,
};

/// File name of the block meta.
pub const META_FILENAME: &str = "meta.json";
/// The only meta format version.
pub const META_VERSION_1: i64 = 1;
/// The only version of the `thanos` section (0, i.e. absent, reads as 1).
pub const THANOS_META_VERSION_1: i64 = 1;
/// Go's zero `time.Time`, which Thanos writes for an unset upload time.
pub const ZERO_UPLOAD_TIME: &str = "0001-01-01T00:00:00Z";
/// Compaction hint of blocks made from out-of-order samples.
pub const COMPACTION_HINT_FROM_OUT_OF_ORDER: &str = "from-out-of-order";

/// Thanos' `thanos.source` values.
pub mod source {
    /// Uploaded by the sidecar.
    pub const SIDECAR: &str = "sidecar";
    /// Written by receive.
    pub const RECEIVE: &str = "receive";
    /// Produced by the compactor.
    pub const COMPACTOR: &str = "compactor";
    /// Repaired by the compactor.
    pub const COMPACTOR_REPAIR: &str = "compactor.repair";
    /// Written by the ruler.
    pub const RULER: &str = "ruler";
    /// Repaired with `tools bucket`.
    pub const BUCKET_REPAIR: &str = "bucket.repair";
    /// Rewritten with `tools bucket rewrite`.
    pub const BUCKET_REWRITE: &str = "bucket.rewrite";
    /// Uploaded with `tools bucket upload-blocks`.
    pub const BUCKET_UPLOAD: &str = "bucket.upload";
    /// Made by tests.
    pub const TEST: &str = "test";
}

/// A block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// The block's ULID, also its folder name.
    pub ulid: Ulid,
    /// First millisecond covered, inclusive.
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// End of the covered range, exclusive.
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    /// Counts of the block's content.
    #[serde(default)]
    pub stats: BlockStats,
    /// How the block came to be.
    #[serde(default)]
    pub compaction: BlockMetaCompaction,
    /// Meta format version, always [`META_VERSION_1`].
    #[serde(default)]
    pub version: i64,
    /// Thanos' section; absent in blocks Prometheus wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
    /// Keys this version does not know, kept for round trips.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stats`: each count is omitted when zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// Samples of all kinds.
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero_u64")]
    pub num_samples: u64,
    /// Float samples.
    #[serde(
        rename = "numFloatSamples",
        default,
        skip_serializing_if = "is_zero_u64"
    )]
    pub num_float_samples: u64,
    /// Native histogram samples.
    #[serde(
        rename = "numHistogramSamples",
        default,
        skip_serializing_if = "is_zero_u64"
    )]
    pub num_histogram_samples: u64,
    /// Series.
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero_u64")]
    pub num_series: u64,
    /// Chunks.
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero_u64")]
    pub num_chunks: u64,
    /// Tombstone intervals.
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero_u64")]
    pub num_tombstones: u64,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `compaction`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockMetaCompaction {
    /// 1 for a block cut from the head; max(parent levels) + 1 after a compaction.
    #[serde(default)]
    pub level: u32,
    /// All level-1 blocks that went into this block.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<Ulid>,
    /// The compaction produced no samples; the block can go.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    /// Direct inputs of the compaction that made this block.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub parents: Vec<BlockDesc>,
    /// A compaction of this block failed before.
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    /// Provenance hints such as [`COMPACTION_HINT_FROM_OUT_OF_ORDER`], kept sorted.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hints: Vec<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A block named by ULID and time range (`compaction.parents`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    /// The parent's ULID.
    pub ulid: Ulid,
    /// Its first millisecond.
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// Its exclusive end.
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

/// The `thanos` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// Section version; 0 (omitted) means 1.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub version: i64,
    /// External labels of the producer (and tenant).
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Downsampling state.
    #[serde(default)]
    pub downsample: Downsample,
    /// What wrote the block, see [`source`].
    #[serde(default)]
    pub source: String,
    /// Deprecated list of segment file names.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub segment_files: Vec<String>,
    /// Files of the block with sizes, sorted by relative path.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub files: Vec<ThanosFile>,
    /// Rewrites (deletions, relabels) applied to the block.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rewrites: Vec<Rewrite>,
    /// Index size statistics (always written, possibly `{}`).
    #[serde(default)]
    pub index_stats: IndexStats,
    /// Arbitrary extension data (e.g. `parquet_migrated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
    /// When meta.json was uploaded, RFC 3339 as Go writes it; `None` for Go's zero time.
    #[serde(
        default,
        serialize_with = "serialize_upload_time",
        deserialize_with = "deserialize_upload_time"
    )]
    pub upload_time: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `thanos.downsample`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downsample {
    /// Resolution in milliseconds: 0 (raw), 300000 (5m) or 3600000 (1h).
    #[serde(default)]
    pub resolution: i64,
}

/// One entry of `thanos.files`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosFile {
    /// Path relative to the block folder, e.g. `chunks/000001`.
    pub rel_path: String,
    /// Size in bytes (omitted for `meta.json`).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
    /// Optional content hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ObjectHash>,
}

/// A file hash (`{"hashFunc": "SHA256", "value": "<hex>"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHash {
    /// Hash function name, `SHA256`.
    #[serde(rename = "hashFunc", default)]
    pub hash_func: String,
    /// Hex digest.
    #[serde(default)]
    pub value: String,
}

/// One entry of `thanos.rewrites`. Relabel configs are kept as JSON values (their keys come out
/// sorted, not in Go's struct order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rewrite {
    /// Level-1 sources of the rewritten block.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<Ulid>,
    /// Deletions applied, in order.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub deletions_applied: Vec<DeletionRequest>,
    /// Relabel configs applied.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub relabels_applied: Vec<Value>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A deletion applied by a rewrite.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeletionRequest {
    /// The series selector, as Thanos wrote it.
    #[serde(default)]
    pub matchers: Value,
    /// Deleted time ranges (inclusive).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub intervals: Vec<DeletionInterval>,
    /// Request id, omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A deleted time range in a [`DeletionRequest`]; Go writes the untagged field names `Mint` and
/// `Maxt` (and reads them case-insensitively).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionInterval {
    /// First deleted millisecond.
    #[serde(rename = "Mint", alias = "mint", default)]
    pub min_time: i64,
    /// Last deleted millisecond (inclusive).
    #[serde(rename = "Maxt", alias = "maxt", default)]
    pub max_time: i64,
}

/// `thanos.index_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    /// Largest series entry in the index, bytes.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub series_max_size: i64,
    /// Largest chunk, bytes.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub chunk_max_size: i64,
}

impl BlockMeta {
    /// The meta of a fresh level-1 block: it is its own source, version 1, empty stats.
    pub fn new(ulid: Ulid, min_time: i64, max_time: i64) -> Self {
        Self {
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: BlockMetaCompaction {
                level: 1,
                sources: vec![ulid],
                ..BlockMetaCompaction::default()
            },
            version: META_VERSION_1,
            thanos: None,
            extra: Map::new(),
        }
    }

    /// Parses and validates `meta.json` bytes; `origin` names the file in errors.
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Self> {
        let invalid = |detail: String| Error::InvalidMeta {
            path: origin.to_owned(),
            detail,
        };
        let meta: Self =
            serde_json::from_slice(bytes).map_err(|error| invalid(error.to_string()))?;
        if meta.version != META_VERSION_1 {
            return Err(invalid(format!(
                "unsupported meta version {}",
                meta.version
            )));
        }
        if let Some(thanos) = &meta.thanos
            && thanos.version != 0
            && thanos.version != THANOS_META_VERSION_1
        {
            return Err(invalid(format!(
                "unsupported thanos section version {}",
                thanos.version
            )));
        }
        Ok(meta)
    }

    /// The bytes Prometheus (no `thanos` section) or Thanos (with one) would write.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = to_go_json(self, true);
        if self.thanos.is_some() {
            bytes.push(b'\n');
        }
        bytes
    }

    /// Reads and validates `<block_dir>/meta.json`.
    pub fn read_from_dir(block_dir: &Path) -> Result<Self> {
        let path = block_dir.join(META_FILENAME);
        let bytes = fs::read(&path).map_err(|error| Error::io("read", &path, error))?;
        Self::from_json(&bytes, &path.display().to_string())
    }

    /// Writes `<block_dir>/meta.json` atomically (temporary file, sync, rename, folder sync) and
    /// returns its size.
    pub fn write_to_dir(&self, block_dir: &Path) -> Result<u64> {
        let bytes = self.to_json();
        write_atomically(&block_dir.join(META_FILENAME), &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// The compaction level-1 sources as Thanos uses them for deduplication.
    pub fn sources(&self) -> &[Ulid] {
        &self.compaction.sources
    }

    /// Downsampling resolution in milliseconds (0 without a `thanos` section).
    pub fn resolution(&self) -> i64 {
        self.thanos
            .as_ref()
            .map_or(0, |thanos| thanos.downsample.resolution)
    }
}

impl ThanosMeta {
    /// A version-1 section with external labels, resolution and source.
    pub fn new(labels: BTreeMap<String, String>, resolution: i64, source: &str) -> Self {
        Self {
            version: THANOS_META_VERSION_1,
            labels,
            downsample: Downsample { resolution },
            source: source.to_owned(),
            ..Self::default()
        }
    }

    /// The upload time in Unix milliseconds, if set and well-formed.
    pub fn upload_time_millis(&self) -> Option<i64> {
        self.upload_time.as_deref().and_then(parse_rfc3339_millis)
    }

    /// Sets the upload time from Unix milliseconds.
    pub fn set_upload_time_millis(&mut self, unix_millis: i64) {
        self.upload_time = Some(format_rfc3339_millis(unix_millis));
    }
}

/// Writes `bytes` to `path` through `<path>.tmp`: write, sync, rename, then sync the folder.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = Path::new(&temporary);
    let mut file =
        File::create(temporary).map_err(|error| Error::io("create", temporary, error))?;
    file.write_all(bytes)
        .map_err(|error| Error::io("write", temporary, error))?;
    file.sync_all()
        .map_err(|error| Error::io("sync", temporary, error))?;
    drop(file);
    fs::rename(temporary, path).map_err(|error| Error::io("rename", temporary, error))?;
    if let Some(parent) = path.parent() {
        crate::chunks::sync_dir(parent)?;
    }
    Ok(())
}

/// Serialises `value` as Go's `encoding/json` does: compact or with tab indentation, with the
/// HTML-sensitive characters and the JavaScript line separators escaped.
pub(crate) fn to_go_json<T: Serialize>(value: &T, indent: bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(512);
    let result = if indent {
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        value.serialize(&mut serializer)
    } else {
        serde_json::to_writer(&mut bytes, value)
    };
    // Metadata types have string keys and no floats: serialising into memory cannot fail.
    result.expect("metadata serialises into memory");
    escape_like_go(bytes)
}

/// `<`, `>`, `&` only occur inside JSON strings here, so a plain byte substitution matches Go.
fn escape_like_go(bytes: Vec<u8>) -> Vec<u8> {
    let needs_escape = bytes
        .iter()
        .any(|&byte| matches!(byte, b'<' | b'>' | b'&' | 0xE2));
    if !needs_escape {
        return bytes;
    }
    let mut escaped = Vec::with_capacity(bytes.len() + 16);
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'<' => escaped.extend_from_slice(b"\\u003c"),
            b'>' => escaped.extend_from_slice(b"\\u003e"),
            b'&' => escaped.extend_from_slice(b"\\u0026"),
            0xE2 if bytes.get(index + 1) == Some(&0x80)
                && matches!(bytes.get(index + 2), Some(0xA8 | 0xA9)) =>
            {
                let last = if bytes[index + 2] == 0xA8 { b"8" } else { b"9" };
                escaped.extend_from_slice(b"\\u202");
                escaped.extend_from_slice(last);
                index += 2;
            }
            byte => escaped.push(byte),
        }
        index += 1;
    }
    escaped
}

fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn serialize_upload_time<S: serde::Serializer>(
    upload_time: &Option<String>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(upload_time.as_deref().unwrap_or(ZERO_UPLOAD_TIME))
}

fn deserialize_upload_time<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<String>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.filter(|text| !is_zero_time(text)))
}

/// Whether an RFC 3339 time is Go's zero time (in any offset notation).
fn is_zero_time(text: &str) -> bool {
    text.is_empty() || parse_rfc3339_millis(text) == parse_rfc3339_millis(ZERO_UPLOAD_TIME)
}

fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests;
