//! Vertical query sharding (`SeriesRequest.shard_info`), as Thanos' `ShardMatcher`: a series
//! belongs to shard `xxhash64(labels) % total_shards`, where the hashed labels are those named
//! in `shard_info.labels` (`by`) or all others (`without`), each written as
//! `name 0xff value 0xff`.

use std::collections::HashSet;

use storeapi::proto::thanos;

/// Decides which series belong to the requested shard.
#[derive(Debug)]
pub(crate) struct ShardMatcher {
    labels: HashSet<String>,
    by: bool,
    total: u64,
    index: u64,
}

impl ShardMatcher {
    /// `None` when the request is not sharded.
    pub(crate) fn new(info: Option<&thanos::ShardInfo>) -> Option<Self> {
        let info = info?;
        if info.total_shards < 1 {
            return None;
        }
        Some(Self {
            labels: info.labels.iter().cloned().collect(),
            by: info.by,
            total: info.total_shards as u64,
            index: u64::try_from(info.shard_index).unwrap_or(u64::MAX),
        })
    }

    /// Whether a series with `labels` is in the shard.
    pub(crate) fn matches(&self, labels: &[thanos::Label]) -> bool {
        let mut buffer = Vec::with_capacity(128);
        for label in labels {
            if self.labels.contains(&label.name) == self.by {
                buffer.extend_from_slice(label.name.as_bytes());
                buffer.push(0xff);
                buffer.extend_from_slice(label.value.as_bytes());
                buffer.push(0xff);
            }
        }
        xxhash64(&buffer) % self.total == self.index
    }
}

const PRIME1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME5: u64 = 0x27D4_EB2F_1656_67C5;

fn read_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

fn read_u32(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u64::from(u32::from_le_bytes(word))
}

fn round(accumulator: u64, input: u64) -> u64 {
    accumulator
        .wrapping_add(input.wrapping_mul(PRIME2))
        .rotate_left(31)
        .wrapping_mul(PRIME1)
}

fn merge_round(accumulator: u64, value: u64) -> u64 {
    (accumulator ^ round(0, value))
        .wrapping_mul(PRIME1)
        .wrapping_add(PRIME4)
}

/// XXH64 with seed 0 (what `cespare/xxhash.Sum64` computes).
pub(crate) fn xxhash64(input: &[u8]) -> u64 {
    let mut rest = input;
    let mut hash = if input.len() >= 32 {
        let mut v = [
            PRIME1.wrapping_add(PRIME2),
            PRIME2,
            0,
            0u64.wrapping_sub(PRIME1),
        ];
        while rest.len() >= 32 {
            for (lane, value) in v.iter_mut().enumerate() {
                *value = round(*value, read_u64(&rest[lane * 8..]));
            }
            rest = &rest[32..];
        }
        let mut hash = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for value in v {
            hash = merge_round(hash, value);
        }
        hash
    } else {
        PRIME5
    };
    hash = hash.wrapping_add(input.len() as u64);
    while rest.len() >= 8 {
        hash = (hash ^ round(0, read_u64(rest)))
            .rotate_left(27)
            .wrapping_mul(PRIME1)
            .wrapping_add(PRIME4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        hash = (hash ^ read_u32(rest).wrapping_mul(PRIME1))
            .rotate_left(23)
            .wrapping_mul(PRIME2)
            .wrapping_add(PRIME3);
        rest = &rest[4..];
    }
    for byte in rest {
        hash = (hash ^ u64::from(*byte).wrapping_mul(PRIME5))
            .rotate_left(11)
            .wrapping_mul(PRIME1);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(PRIME2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(PRIME3);
    hash ^ (hash >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_matches_reference_values() {
        assert_eq!(xxhash64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxhash64(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            xxhash64(b"Nobody inspects the spammish repetition"),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    #[test]
    fn every_series_is_in_exactly_one_shard() {
        let label = |name: &str, value: &str| thanos::Label {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        for index in 0..50 {
            let labels = vec![
                label("__name__", "up"),
                label("instance", &format!("i{index}")),
            ];
            let owners = (0..3)
                .filter(|shard| {
                    let info = thanos::ShardInfo {
                        shard_index: *shard,
                        total_shards: 3,
                        by: false,
                        labels: vec![],
                    };
                    ShardMatcher::new(Some(&info)).is_some_and(|matcher| matcher.matches(&labels))
                })
                .count();
            assert_eq!(owners, 1);
        }
        assert!(ShardMatcher::new(Some(&thanos::ShardInfo::default())).is_none());
    }
}
