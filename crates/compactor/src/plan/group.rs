//! Compaction groups: blocks with the same downsampling resolution and the same external labels
//! once the `--deduplication.replica-label` labels are removed.
//!
//! The group key is Thanos' `"<resolution>@<labels hash>"`, the hash being Prometheus'
//! `labels.Hash()`: XXH64 (seed 0) over `name 0xff value 0xff` for every label in name order,
//! printed in decimal. It names the group in logs and the work folder
//! `<data-dir>/compact/<group key>/`.

use std::collections::BTreeMap;

use tsdb_block::meta::BlockMeta;
use xxhash_rust::xxh64::Xxh64;

/// The separator Prometheus writes after every label name and value before hashing.
const LABEL_SEPARATOR: [u8; 1] = [0xff];
/// The value Thanos gives the first replica label when removing the replica labels leaves a
/// block with no label at all.
pub const DEDUPED_LABEL_VALUE: &str = "deduped";

/// Prometheus' `labels.Hash()` of a label set (names in sorted order, as a `BTreeMap` keeps them).
pub fn labels_hash(labels: &BTreeMap<String, String>) -> u64 {
    let mut hasher = Xxh64::new(0);
    for (name, value) in labels {
        hasher.update(name.as_bytes());
        hasher.update(&LABEL_SEPARATOR);
        hasher.update(value.as_bytes());
        hasher.update(&LABEL_SEPARATOR);
    }
    hasher.digest()
}

/// Thanos' group key `"<resolution>@<labels hash>"`.
pub fn group_key(resolution: i64, labels: &BTreeMap<String, String>) -> String {
    format!("{resolution}@{}", labels_hash(labels))
}

/// A block's external labels without the replica labels, as Thanos' `ReplicaLabelRemover` leaves
/// them: when replica labels are configured and nothing is left, the first replica label is set
/// to [`DEDUPED_LABEL_VALUE`] so that the block still has a label.
pub fn strip_replica_labels(
    labels: &BTreeMap<String, String>,
    replica_labels: &[String],
) -> BTreeMap<String, String> {
    let mut stripped = labels.clone();
    for replica_label in replica_labels {
        stripped.remove(replica_label);
    }
    if stripped.is_empty()
        && let Some(first) = replica_labels.first()
    {
        stripped.insert(first.clone(), DEDUPED_LABEL_VALUE.to_owned());
    }
    stripped
}

/// The group labels of a block: its external labels (none without a `thanos` section) minus the
/// replica labels.
pub fn block_group_labels(meta: &BlockMeta, replica_labels: &[String]) -> BTreeMap<String, String> {
    let empty = BTreeMap::new();
    let labels = meta.thanos.as_ref().map_or(&empty, |thanos| &thanos.labels);
    strip_replica_labels(labels, replica_labels)
}

/// The group key of a block, see [`group_key`].
pub fn block_group_key(meta: &BlockMeta, replica_labels: &[String]) -> String {
    group_key(meta.resolution(), &block_group_labels(meta, replica_labels))
}

/// A compaction group: its blocks share resolution and (replica-less) external labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// `"<resolution>@<labels hash>"`.
    pub key: String,
    /// Downsampling resolution of every block, in milliseconds.
    pub resolution: i64,
    /// External labels of every block with the replica labels removed; a compacted block gets
    /// exactly these labels.
    pub labels: BTreeMap<String, String>,
    /// The blocks, sorted by `minTime`, then ULID (Thanos only sorts by `minTime`; the ULID makes
    /// ties deterministic). Metas are kept as fetched: their labels still hold replica labels.
    pub metas: Vec<BlockMeta>,
}

impl Group {
    /// The group key with the labels spelled out, for logs: `"<resolution>@{a=\"b\", …}"`.
    pub fn description(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        format!("{}@{{{}}}", self.resolution, labels.join(", "))
    }
}

/// Sorts metas the way groups keep them: by `minTime`, then ULID.
pub(crate) fn sort_by_min_time(metas: &mut [BlockMeta]) {
    metas.sort_by(|a, b| a.min_time.cmp(&b.min_time).then(a.ulid.cmp(&b.ulid)));
}

/// Groups blocks by resolution and replica-less external labels. Groups come sorted by key
/// (string order, as Thanos sorts them); each group's metas by `minTime`.
pub fn group_blocks(
    metas: impl IntoIterator<Item = BlockMeta>,
    replica_labels: &[String],
) -> Vec<Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for meta in metas {
        let labels = block_group_labels(&meta, replica_labels);
        let resolution = meta.resolution();
        let key = group_key(resolution, &labels);
        groups
            .entry(key.clone())
            .or_insert_with(|| Group {
                key,
                resolution,
                labels,
                metas: Vec::new(),
            })
            .metas
            .push(meta);
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    for group in &mut groups {
        sort_by_min_time(&mut group.metas);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{MetaExt, meta, numbers};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// XXH64 from the public algorithm description, written out step by step, so the key test
    /// does not only compare the crate with itself.
    fn reference_xxh64(input: &[u8], seed: u64) -> u64 {
        const P1: u64 = 0x9E37_79B1_85EB_CA87;
        const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
        const P3: u64 = 0x1656_67B1_9E37_79F9;
        const P4: u64 = 0x85EB_CA77_C2B2_AE63;
        const P5: u64 = 0x27D4_EB2F_1656_67C5;
        let round = |acc: u64, lane: u64| {
            acc.wrapping_add(lane.wrapping_mul(P2))
                .rotate_left(31)
                .wrapping_mul(P1)
        };
        let merge =
            |acc: u64, value: u64| (acc ^ round(0, value)).wrapping_mul(P1).wrapping_add(P4);
        let read64 = |bytes: &[u8]| u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let mut rest = input;
        let mut acc = if input.len() >= 32 {
            let mut v = [
                seed.wrapping_add(P1).wrapping_add(P2),
                seed.wrapping_add(P2),
                seed,
                seed.wrapping_sub(P1),
            ];
            while rest.len() >= 32 {
                for (lane, acc) in v.iter_mut().enumerate() {
                    *acc = round(*acc, read64(&rest[lane * 8..]));
                }
                rest = &rest[32..];
            }
            let mut acc = v[0]
                .rotate_left(1)
                .wrapping_add(v[1].rotate_left(7))
                .wrapping_add(v[2].rotate_left(12))
                .wrapping_add(v[3].rotate_left(18));
            for lane in v {
                acc = merge(acc, lane);
            }
            acc
        } else {
            seed.wrapping_add(P5)
        };
        acc = acc.wrapping_add(input.len() as u64);
        while rest.len() >= 8 {
            acc ^= round(0, read64(rest));
            acc = acc.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
            rest = &rest[8..];
        }
        if rest.len() >= 4 {
            let word = u64::from(u32::from_le_bytes(rest[..4].try_into().unwrap()));
            acc ^= word.wrapping_mul(P1);
            acc = acc.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
            rest = &rest[4..];
        }
        for byte in rest {
            acc ^= u64::from(*byte).wrapping_mul(P5);
            acc = acc.rotate_left(11).wrapping_mul(P1);
        }
        acc ^= acc >> 33;
        acc = acc.wrapping_mul(P2);
        acc ^= acc >> 29;
        acc = acc.wrapping_mul(P3);
        acc ^ (acc >> 32)
    }

    #[test]
    fn xxh64_matches_the_published_test_vectors() {
        // The reference implementation's sanity values (xxHash's xsum_sanity_check).
        assert_eq!(reference_xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(reference_xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(reference_xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        let long = b"Nobody inspects the spammish repetition and friends, twice over.";
        for length in 0..long.len() {
            assert_eq!(
                reference_xxh64(&long[..length], 0),
                xxhash_rust::xxh64::xxh64(&long[..length], 0),
                "length {length}"
            );
        }
    }

    #[test]
    fn group_keys_match_thanos() {
        // Keys from Thanos' own group key test (pkg/compact), computed by Go.
        assert_eq!(group_key(0, &BTreeMap::new()), "0@17241709254077376921");
        assert_eq!(
            group_key(0, &labels(&[("foo", "bar"), ("foo1", "bar2")])),
            "0@2124638872457683483"
        );
        assert_eq!(
            group_key(
                0,
                &labels(&[(
                    "foo/some..thing/some.thing/../",
                    r"a_b_c/bar-something-a\metric/a\x"
                )])
            ),
            "0@16590761456214576373"
        );
        // The hash is XXH64 over "name\xffvalue\xff…" in name order, whatever the insertion order.
        let set = labels(&[("zone", "b"), ("cluster", "eu1")]);
        let expected = reference_xxh64(b"cluster\xffeu1\xffzone\xffb\xff", 0);
        assert_eq!(labels_hash(&set), expected);
        assert_eq!(group_key(300_000, &set), format!("300000@{expected}"));
    }

    #[test]
    fn replica_labels_are_removed_and_an_empty_set_gets_deduped() {
        let replicas = vec!["replica".to_owned(), "rule_replica".to_owned()];
        let set = labels(&[("cluster", "eu1"), ("replica", "a"), ("rule_replica", "x")]);
        assert_eq!(
            strip_replica_labels(&set, &replicas),
            labels(&[("cluster", "eu1")])
        );
        assert_eq!(
            strip_replica_labels(&labels(&[("replica", "a")]), &replicas),
            labels(&[("replica", "deduped")])
        );
        // Without replica labels nothing changes, not even an empty set.
        assert_eq!(strip_replica_labels(&BTreeMap::new(), &[]), BTreeMap::new());
    }

    #[test]
    fn blocks_are_grouped_by_resolution_and_replica_less_labels() {
        let replicas = vec!["replica".to_owned()];
        let blocks = vec![
            meta(5, 40, 60).labels(&[("cluster", "a"), ("replica", "1")]),
            meta(1, 0, 20).labels(&[("cluster", "a"), ("replica", "0")]),
            meta(2, 0, 20).labels(&[("cluster", "a"), ("replica", "1")]),
            meta(3, 0, 20).labels(&[("cluster", "a")]).res(300_000),
            meta(4, 20, 40).labels(&[("cluster", "b")]),
        ];
        let groups = group_blocks(blocks, &replicas);
        assert_eq!(groups.len(), 3);
        let keys: Vec<&str> = groups.iter().map(|group| group.key.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "groups are sorted by key");
        let raw_a = groups
            .iter()
            .find(|group| group.resolution == 0 && group.labels == labels(&[("cluster", "a")]))
            .unwrap();
        assert_eq!(numbers(raw_a.metas.iter().map(|m| &m.ulid)), vec![1, 2, 5]);
        assert_eq!(raw_a.key, group_key(0, &labels(&[("cluster", "a")])));
        assert_eq!(raw_a.description(), "0@{cluster=\"a\"}");
        let five_m = groups
            .iter()
            .find(|group| group.resolution == 300_000)
            .unwrap();
        assert_eq!(numbers(five_m.metas.iter().map(|m| &m.ulid)), vec![3]);
        // Without the replica label configured, the replicas are groups of their own.
        assert_eq!(
            group_blocks(
                vec![
                    meta(1, 0, 20).labels(&[("replica", "0")]),
                    meta(2, 0, 20).labels(&[("replica", "1")])
                ],
                &[]
            )
            .len(),
            2
        );
    }

    #[test]
    fn a_block_without_thanos_section_is_raw_and_unlabelled() {
        let prometheus_block = BlockMeta::new(crate::plan::testing::id(9), 0, 10);
        assert_eq!(
            block_group_key(&prometheus_block, &[]),
            "0@17241709254077376921"
        );
    }
}
