//! The filters of a pass, as Thanos' meta fetcher applies them, and the states they give.
//!
//! Order (Thanos' compactor order; the store gateway's is the same without replica labels):
//! time window, relabel selection, consistency delay, deletion marks older than a delay, replica
//! label removal (a modifier, not a filter), duplicates. Each block ends in exactly one
//! [`BlockState`]; only [`BlockState::Loaded`] blocks are in [`Snapshot::metas`].
//!
//! [`Snapshot::metas`]: crate::Snapshot::metas

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tsdb_block::meta::{BlockMeta, DeletionMark, source};
use ulid::Ulid;

use crate::relabel::{BLOCK_ID_LABEL, RelabelConfig};
use crate::time::TimeBound;

/// The state a block directory ends a pass in, named as Thanos' `thanos_blocks_meta_synced`
/// `state` label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockState {
    /// Passed every filter: in [`Snapshot::metas`](crate::Snapshot::metas).
    Loaded,
    /// No `meta.json`: a partial upload, or a block being deleted.
    NoMetaJson,
    /// `meta.json` is not a valid meta.
    CorruptedMetaJson,
    /// Its `meta.json` or a mark could not be read (a bucket error): state unknown this pass.
    Failed,
    /// Outside `--min-time`/`--max-time`.
    TimeExcluded,
    /// Dropped by `--selector.relabel-config`.
    LabelExcluded,
    /// Younger than the consistency delay.
    TooFresh,
    /// Marked for deletion longer ago than the deletion-mark delay.
    MarkedForDeletion,
    /// Its sources are all in another block of the same resolution and external labels.
    Duplicate,
}

impl BlockState {
    /// Every state, in the order the metric is seeded.
    pub const ALL: [BlockState; 9] = [
        Self::Loaded,
        Self::NoMetaJson,
        Self::CorruptedMetaJson,
        Self::Failed,
        Self::TimeExcluded,
        Self::LabelExcluded,
        Self::TooFresh,
        Self::MarkedForDeletion,
        Self::Duplicate,
    ];

    /// The `state` label value Thanos uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::NoMetaJson => "no-meta-json",
            Self::CorruptedMetaJson => "corrupted-meta-json",
            Self::Failed => "failed",
            Self::TimeExcluded => "time-excluded",
            Self::LabelExcluded => "label-excluded",
            Self::TooFresh => "too-fresh",
            Self::MarkedForDeletion => "marked-for-deletion",
            Self::Duplicate => "duplicate",
        }
    }
}

/// Which filters a pass applies. [`Filters::default`] lets every block with a readable meta
/// through (Thanos' raw fetcher): no time window, no selection, no delays, no deduplication.
#[derive(Debug, Clone)]
pub struct Filters {
    /// `--min-time`: blocks ending before it are [`BlockState::TimeExcluded`].
    pub min_time: TimeBound,
    /// `--max-time`: blocks starting after it are [`BlockState::TimeExcluded`].
    pub max_time: TimeBound,
    /// `--selector.relabel-config`, applied to the external labels plus `__block_id`.
    pub relabel: RelabelConfig,
    /// `--consistency-delay`: blocks uploaded more recently are [`BlockState::TooFresh`], unless
    /// written by the compactor or a repair (sources `compactor`, `compactor.repair`,
    /// `bucket.repair`). Zero disables it.
    pub consistency_delay: Duration,
    /// Blocks whose deletion mark is older than this are [`BlockState::MarkedForDeletion`] (the
    /// store gateway's `--ignore-deletion-marks-delay`, the compactor's `--delete-delay`/2);
    /// `None` keeps marked blocks (bucket web).
    pub deletion_mark_delay: Option<Duration>,
    /// Hide blocks whose sources another block covers ([`BlockState::Duplicate`]).
    pub deduplicate: bool,
    /// The compactor's `--deduplication.replica-label`: removed from the external labels of the
    /// metas that pass (counted in `blocks_meta_modified{modified="replica-label-removed"}`),
    /// before deduplication, so replicas fall in one group. A block left without labels gets
    /// `<first replica label>="deduped"`, as Thanos does.
    pub replica_labels: Vec<String>,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            min_time: TimeBound::Absolute(i64::MIN),
            max_time: TimeBound::Absolute(i64::MAX),
            relabel: RelabelConfig::default(),
            consistency_delay: Duration::ZERO,
            deletion_mark_delay: None,
            deduplicate: false,
            replica_labels: Vec::new(),
        }
    }
}

/// The state a meta gets from the selection filters (time window, relabel), `None` when it is
/// in scope. Blocks out of scope are not this fetcher's concern at all: their marks are not read.
pub(crate) fn select(filters: &Filters, meta: &BlockMeta, now_millis: i64) -> Option<BlockState> {
    let (min_time, max_time) = (
        filters.min_time.millis(now_millis),
        filters.max_time.millis(now_millis),
    );
    if meta.max_time < min_time || meta.min_time > max_time {
        return Some(BlockState::TimeExcluded);
    }
    if !filters.relabel.is_empty() {
        let mut labels: BTreeMap<String, String> = meta
            .thanos
            .as_ref()
            .map(|thanos| thanos.labels.clone())
            .unwrap_or_default();
        labels.insert(BLOCK_ID_LABEL.to_owned(), meta.ulid.to_string());
        // Thanos drops a block whose relabelled label set is dropped or empty.
        match filters.relabel.process(labels) {
            Some(kept) if !kept.is_empty() => {}
            _ => return Some(BlockState::LabelExcluded),
        }
    }
    None
}

/// Whether a meta is younger than the consistency delay (by upload time, else the ULID's time)
/// and not exempt by its source.
pub(crate) fn too_fresh(filters: &Filters, meta: &BlockMeta, now_millis: i64) -> bool {
    if filters.consistency_delay.is_zero() {
        return false;
    }
    let thanos = meta.thanos.as_ref();
    let source = thanos.map(|thanos| thanos.source.as_str()).unwrap_or("");
    if [
        source::COMPACTOR,
        source::COMPACTOR_REPAIR,
        source::BUCKET_REPAIR,
    ]
    .contains(&source)
    {
        return false;
    }
    let created = thanos
        .and_then(|thanos| thanos.upload_time_millis())
        .unwrap_or(meta.ulid.timestamp_ms() as i64);
    let delay = i64::try_from(filters.consistency_delay.as_millis()).unwrap_or(i64::MAX);
    now_millis.saturating_sub(created) < delay
}

/// Whether a deletion mark is older than the delay (Thanos: strictly more seconds than the delay).
pub(crate) fn deletion_delay_passed(
    filters: &Filters,
    mark: &DeletionMark,
    now_millis: i64,
) -> bool {
    let Some(delay) = filters.deletion_mark_delay else {
        return false;
    };
    let age_seconds = now_millis / 1000 - mark.deletion_time;
    age_seconds > i64::try_from(delay.as_secs()).unwrap_or(i64::MAX)
}

/// Removes the replica labels from the metas' external labels; returns how many labels were
/// removed.
pub(crate) fn remove_replica_labels(
    replica_labels: &[String],
    metas: &mut BTreeMap<Ulid, BlockMeta>,
) -> usize {
    let Some(first) = replica_labels.first() else {
        return 0;
    };
    let mut removed = 0;
    for meta in metas.values_mut() {
        let thanos = meta.thanos.get_or_insert_with(Default::default);
        for label in replica_labels {
            if thanos.labels.remove(label).is_some() {
                removed += 1;
            }
        }
        if thanos.labels.is_empty() {
            tracing::warn!(block = %meta.ulid, label = %first, "block has no labels left, adding one with value deduped");
            thanos.labels.insert(first.clone(), "deduped".to_owned());
        }
    }
    removed
}

/// Blocks whose compaction sources are all in another block of the same resolution and external
/// labels. A block without sources counts as its own source. Of blocks with equal source sets
/// the newest (largest ULID) is kept; Thanos keeps the oldest, but the store gateway has always
/// served the newest copy, which is what a re-run compaction replaces the older one with.
pub(crate) fn duplicates(metas: &BTreeMap<Ulid, BlockMeta>) -> Vec<Ulid> {
    type Group = (i64, Option<BTreeMap<String, String>>);
    let mut groups: BTreeMap<Group, Vec<(Ulid, BTreeSet<Ulid>)>> = BTreeMap::new();
    for (id, meta) in metas {
        let sources: BTreeSet<Ulid> = if meta.compaction.sources.is_empty() {
            BTreeSet::from([meta.ulid])
        } else {
            meta.compaction.sources.iter().copied().collect()
        };
        let labels = meta
            .thanos
            .as_ref()
            .map(|thanos| thanos.labels.clone())
            .filter(|labels| !labels.is_empty());
        groups
            .entry((meta.resolution(), labels))
            .or_default()
            .push((*id, sources));
    }
    let mut duplicate = Vec::new();
    for members in groups.values_mut() {
        // Larger source sets first, then newer blocks first: a block can only be covered by one
        // that comes before it.
        members.sort_by(|left, right| {
            right
                .1
                .len()
                .cmp(&left.1.len())
                .then_with(|| right.0.cmp(&left.0))
        });
        let mut covering: Vec<&BTreeSet<Ulid>> = Vec::new();
        for (id, sources) in members.iter() {
            if covering.iter().any(|cover| sources.is_subset(cover)) {
                duplicate.push(*id);
            } else {
                covering.push(sources);
            }
        }
    }
    duplicate.sort();
    duplicate
}

#[cfg(test)]
mod tests {
    use tsdb_block::meta::ThanosMeta;

    use super::*;

    fn meta(id: u128, sources: &[u128]) -> BlockMeta {
        let mut meta = BlockMeta::new(Ulid(id), 0, 1);
        meta.compaction.sources = sources.iter().map(|source| Ulid(*source)).collect();
        meta
    }

    fn by_id(metas: impl IntoIterator<Item = BlockMeta>) -> BTreeMap<Ulid, BlockMeta> {
        metas.into_iter().map(|meta| (meta.ulid, meta)).collect()
    }

    fn labelled(mut meta: BlockMeta, labels: &[(&str, &str)], resolution: i64) -> BlockMeta {
        let labels = labels
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        meta.thanos = Some(ThanosMeta::new(labels, resolution, source::SIDECAR));
        meta
    }

    #[test]
    fn blocks_compacted_into_others_are_duplicates() {
        let metas = by_id([
            meta(1, &[1]),
            meta(2, &[2]),
            meta(3, &[1, 2]),
            meta(4, &[4]),
            meta(5, &[4]),
            meta(6, &[]),
        ]);
        assert_eq!(duplicates(&metas), [Ulid(1), Ulid(2), Ulid(4)]);
    }

    #[test]
    fn duplicates_are_only_found_within_resolution_and_labels() {
        let metas = by_id([
            labelled(meta(1, &[1]), &[("cluster", "a")], 0),
            labelled(meta(2, &[1, 2]), &[("cluster", "b")], 0),
            labelled(meta(3, &[1, 2]), &[("cluster", "a")], 300_000),
            labelled(meta(4, &[4]), &[("cluster", "a")], 0),
            labelled(meta(5, &[4, 9]), &[("cluster", "a")], 0),
        ]);
        assert_eq!(duplicates(&metas), [Ulid(4)]);
    }

    #[test]
    fn replica_labels_are_removed_and_an_empty_set_gets_deduped() {
        let mut metas = by_id([
            labelled(meta(1, &[1]), &[("cluster", "a"), ("replica", "0")], 0),
            labelled(meta(2, &[2]), &[("replica", "1")], 0),
            labelled(meta(3, &[3]), &[("cluster", "a")], 0),
        ]);
        let replica_labels = vec!["replica".to_owned(), "rule_replica".to_owned()];
        assert_eq!(remove_replica_labels(&replica_labels, &mut metas), 2);
        let labels = |id: u128| metas[&Ulid(id)].thanos.as_ref().unwrap().labels.clone();
        assert_eq!(labels(1), BTreeMap::from([("cluster".into(), "a".into())]));
        assert_eq!(
            labels(2),
            BTreeMap::from([("replica".into(), "deduped".into())])
        );
        assert_eq!(labels(3), BTreeMap::from([("cluster".into(), "a".into())]));
        assert_eq!(remove_replica_labels(&[], &mut metas), 0);
    }

    #[test]
    fn selection_by_time_and_labels() {
        let mut filters = Filters {
            min_time: TimeBound::Absolute(100),
            max_time: TimeBound::Relative(-1_000),
            ..Filters::default()
        };
        let block = |min, max| {
            let mut meta = labelled(meta(7, &[7]), &[("cluster", "eu1")], 0);
            (meta.min_time, meta.max_time) = (min, max);
            meta
        };
        let now = 10_000;
        assert_eq!(
            select(&filters, &block(0, 99), now),
            Some(BlockState::TimeExcluded)
        );
        assert_eq!(select(&filters, &block(0, 100), now), None);
        assert_eq!(select(&filters, &block(9_000, 9_500), now), None);
        assert_eq!(
            select(&filters, &block(9_001, 9_500), now),
            Some(BlockState::TimeExcluded)
        );
        filters.relabel =
            RelabelConfig::parse("- action: keep\n  source_labels: [cluster]\n  regex: us.*\n")
                .unwrap();
        assert_eq!(
            select(&filters, &block(0, 100), now),
            Some(BlockState::LabelExcluded)
        );
        filters.relabel = RelabelConfig::parse(&format!(
            "- action: keep\n  source_labels: [{BLOCK_ID_LABEL}]\n  regex: {}\n",
            Ulid(7)
        ))
        .unwrap();
        assert_eq!(select(&filters, &block(0, 100), now), None);
        filters.relabel = RelabelConfig::parse("- action: labeldrop\n  regex: .*\n").unwrap();
        assert_eq!(
            select(&filters, &block(0, 100), now),
            Some(BlockState::LabelExcluded)
        );
    }

    #[test]
    fn consistency_delay_uses_upload_time_then_ulid_time_and_exempts_compactor_blocks() {
        let filters = Filters {
            consistency_delay: Duration::from_secs(60),
            ..Filters::default()
        };
        let now = 1_000_000_000;
        let young = Ulid::from_parts((now - 30_000) as u64, 1);
        let old = Ulid::from_parts((now - 90_000) as u64, 1);
        let with = |id: Ulid, source: &str, upload: Option<i64>| {
            let mut meta = BlockMeta::new(id, 0, 1);
            let mut thanos = ThanosMeta::new(BTreeMap::new(), 0, source);
            if let Some(upload) = upload {
                thanos.set_upload_time_millis(upload);
            }
            meta.thanos = Some(thanos);
            meta
        };
        assert!(too_fresh(
            &filters,
            &with(young, source::SIDECAR, None),
            now
        ));
        assert!(!too_fresh(&filters, &with(old, source::SIDECAR, None), now));
        // An old ULID uploaded just now (a shipper catching up) is too fresh.
        assert!(too_fresh(
            &filters,
            &with(old, source::SIDECAR, Some(now - 1_000)),
            now
        ));
        for exempt in [
            source::COMPACTOR,
            source::COMPACTOR_REPAIR,
            source::BUCKET_REPAIR,
        ] {
            assert!(
                !too_fresh(&filters, &with(young, exempt, None), now),
                "{exempt}"
            );
        }
        assert!(!too_fresh(
            &Filters::default(),
            &with(young, source::SIDECAR, None),
            now
        ));
    }

    #[test]
    fn deletion_marks_count_after_the_delay() {
        let filters = Filters {
            deletion_mark_delay: Some(Duration::from_secs(100)),
            ..Filters::default()
        };
        let now = 1_000_000;
        let mark = |seconds_ago: i64| DeletionMark::new(Ulid(1), now / 1000 - seconds_ago, "");
        assert!(!deletion_delay_passed(&filters, &mark(100), now));
        assert!(deletion_delay_passed(&filters, &mark(101), now));
        assert!(!deletion_delay_passed(
            &Filters::default(),
            &mark(1_000),
            now
        ));
    }

    #[test]
    fn state_names_follow_thanos() {
        let names: Vec<&str> = BlockState::ALL.iter().map(|state| state.as_str()).collect();
        assert_eq!(
            names,
            [
                "loaded",
                "no-meta-json",
                "corrupted-meta-json",
                "failed",
                "time-excluded",
                "label-excluded",
                "too-fresh",
                "marked-for-deletion",
                "duplicate"
            ]
        );
    }
}
