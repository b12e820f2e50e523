//! One listing of the bucket turned into block directories: which exist, which hold `meta.json`
//! and which marks, and when each was last written.
//!
//! [`ListingMode::Recursive`] costs one `iter` request chain for the whole bucket and gives
//! every object's size and modification time (change detection for marks, the age of partial
//! uploads). [`ListingMode::PerDirectory`] is Thanos' older way (the top level, then each block
//! directory): one request per block, no attributes, for a backend whose recursive listing is
//! unusable.

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures_util::{StreamExt, TryStreamExt};
use objstore::{Bucket, ObjectAttributes};
use tsdb_block::meta::{DeletionMark, META_FILENAME, Mark, NoCompactMark, NoDownsampleMark};
use ulid::Ulid;

/// How the fetcher lists the bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListingMode {
    /// One recursive listing with attributes (Thanos' `--block-discovery-strategy=recursive`):
    /// the cost of a pass over an unchanged bucket is this listing alone.
    #[default]
    Recursive,
    /// The top level, then one listing per block directory, without attributes: marks are read
    /// again on every pass and partial blocks have no modification time.
    PerDirectory,
}

/// A known file of a block directory as the listing saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Size and modification time, when the listing gives them.
    pub(crate) attributes: Option<ObjectAttributes>,
}

/// What one block directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BlockDir {
    pub(crate) meta: Option<Listed>,
    pub(crate) deletion_mark: Option<Listed>,
    pub(crate) no_compact_mark: Option<Listed>,
    pub(crate) no_downsample_mark: Option<Listed>,
    /// The newest modification time of any object in the directory.
    pub(crate) newest_modified: Option<SystemTime>,
}

impl BlockDir {
    /// Records one object at `relative` (the path below `<ulid>/`).
    fn add(&mut self, relative: &str, attributes: Option<ObjectAttributes>) {
        if let Some(attributes) = attributes {
            let newest = self.newest_modified.get_or_insert(attributes.last_modified);
            *newest = (*newest).max(attributes.last_modified);
        }
        let listed = Some(Listed { attributes });
        match relative {
            META_FILENAME => self.meta = listed,
            DeletionMark::FILE_NAME => self.deletion_mark = listed,
            NoCompactMark::FILE_NAME => self.no_compact_mark = listed,
            NoDownsampleMark::FILE_NAME => self.no_downsample_mark = listed,
            _ => {}
        }
    }
}

/// Block directories by ULID. Top-level names that are not ULIDs (`debug/`, anything else) are
/// ignored, as Thanos ignores them.
pub(crate) type Listing = BTreeMap<Ulid, BlockDir>;

/// The block directory and the path below it, for an object name `<ulid>/<rest>`.
fn split_block_path(name: &str) -> Option<(Ulid, &str)> {
    let (dir, rest) = name.split_once('/').unwrap_or((name, ""));
    let id = Ulid::from_string(dir).ok()?;
    Some((id, rest))
}

/// Builds the listing from `(object name, attributes)` pairs of a recursive listing.
pub(crate) fn from_objects<'a>(
    objects: impl IntoIterator<Item = (&'a str, Option<ObjectAttributes>)>,
) -> Listing {
    let mut listing = Listing::new();
    for (name, attributes) in objects {
        let Some((id, relative)) = split_block_path(name) else {
            continue;
        };
        listing.entry(id).or_default().add(relative, attributes);
    }
    listing
}

/// Lists the bucket in `mode`.
pub(crate) async fn list(
    bucket: &Bucket,
    mode: ListingMode,
    concurrency: usize,
) -> objstore::Result<Listing> {
    match mode {
        ListingMode::Recursive => {
            let objects = bucket.iter_recursive_with_attributes("").await?;
            Ok(from_objects(objects.iter().map(|(name, attributes)| {
                (name.as_str(), Some(*attributes))
            })))
        }
        ListingMode::PerDirectory => list_per_directory(bucket, concurrency).await,
    }
}

/// The top level, then each block directory (names only).
async fn list_per_directory(bucket: &Bucket, concurrency: usize) -> objstore::Result<Listing> {
    let top = bucket.iter("").await?;
    let ids: Vec<Ulid> = top
        .iter()
        .filter_map(|entry| entry.strip_suffix('/'))
        .filter_map(|dir| Ulid::from_string(dir).ok())
        .collect();
    let per_dir: Vec<(Ulid, Vec<String>)> = futures_util::stream::iter(ids)
        .map(|id| async move {
            let files = bucket.iter(&format!("{id}/")).await?;
            Ok::<_, objstore::Error>((id, files))
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut listing = Listing::new();
    for (id, files) in per_dir {
        let dir = listing.entry(id).or_default();
        for name in &files {
            if let Some((_, relative)) = split_block_path(name) {
                dir.add(relative, None);
            }
        }
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64, size: u64) -> Option<ObjectAttributes> {
        Some(ObjectAttributes {
            size,
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
        })
    }

    #[test]
    fn files_of_block_directories_are_classified() {
        let full = Ulid(1).to_string();
        let partial = Ulid(2).to_string();
        let names = [
            format!("{full}/chunks/000001"),
            format!("{full}/index"),
            format!("{full}/meta.json"),
            format!("{full}/deletion-mark.json"),
            format!("{full}/no-compact-mark.json"),
            format!("{partial}/chunks/000001"),
            format!("{partial}/no-downsample-mark.json"),
            format!("{partial}/"),
            "debug/metas/x.json".to_owned(),
            "not-a-block/meta.json".to_owned(),
        ];
        let times = [10, 30, 20, 40, 5, 100, 50, 60, 1, 1];
        let listing = from_objects(
            names
                .iter()
                .zip(times)
                .map(|(name, seconds)| (name.as_str(), at(seconds, 7))),
        );
        assert_eq!(
            listing.keys().copied().collect::<Vec<_>>(),
            [Ulid(1), Ulid(2)]
        );
        let full = &listing[&Ulid(1)];
        assert_eq!(
            full.meta,
            Some(Listed {
                attributes: at(20, 7)
            })
        );
        assert_eq!(
            full.deletion_mark,
            Some(Listed {
                attributes: at(40, 7)
            })
        );
        assert!(full.no_compact_mark.is_some() && full.no_downsample_mark.is_none());
        assert_eq!(full.newest_modified, at(40, 0).map(|a| a.last_modified));
        let partial = &listing[&Ulid(2)];
        assert!(partial.meta.is_none() && partial.deletion_mark.is_none());
        assert!(partial.no_downsample_mark.is_some());
        assert_eq!(partial.newest_modified, at(100, 0).map(|a| a.last_modified));
    }

    #[test]
    fn a_nested_meta_json_is_not_the_block_meta() {
        let id = Ulid(3).to_string();
        let name = format!("{id}/chunks/meta.json");
        let listing = from_objects([(name.as_str(), None)]);
        assert!(listing[&Ulid(3)].meta.is_none());
        assert_eq!(listing[&Ulid(3)].newest_modified, None);
    }
}
