//! The output block's `meta.json` as Thanos' compactor writes it.

use serde_json::{Map, Value};
use tsdb_block::meta::{BlockDesc, BlockMeta, IndexStats, ThanosMeta};

use super::MergeOptions;
use super::source::Source;

/// Thanos' `source` of compacted blocks.
pub(super) const COMPACTOR_SOURCE: &str = "compactor";

/// Completes the meta the block writer made (ULID, time range, stats): level, sources, parents
/// (Prometheus' `CompactBlockMetas`) and the `thanos` section with the output's index stats (no
/// `files`: the uploader adds them).
pub(super) fn complete(
    meta: &mut BlockMeta,
    sources: &[Source],
    options: &MergeOptions,
    index_stats: IndexStats,
) {
    let metas: Vec<&BlockMeta> = sources.iter().map(|source| source.reader.meta()).collect();
    meta.compaction.level = metas
        .iter()
        .map(|source| source.compaction.level)
        .max()
        .unwrap_or(0)
        + 1;
    let mut all_sources: Vec<ulid::Ulid> = metas
        .iter()
        .flat_map(|source| source.compaction.sources.iter().copied())
        .collect();
    all_sources.sort_unstable();
    all_sources.dedup();
    meta.compaction.sources = all_sources;
    meta.compaction.parents = metas
        .iter()
        .map(|source| BlockDesc {
            ulid: source.ulid,
            min_time: source.min_time,
            max_time: source.max_time,
        })
        .collect();
    let mut thanos = ThanosMeta::new(options.labels.clone(), options.resolution, COMPACTOR_SOURCE);
    thanos.extensions = common_extensions(&metas);
    thanos.index_stats = index_stats;
    meta.thanos = Some(thanos);
}

/// Thanos' AND of the sources' `extensions`: the keys present in every source that has an
/// extensions object, with the values of the first such source. Sources without one (or with
/// a non-object value) are skipped, as Thanos skips them; `None` when no source has one.
pub(super) fn common_extensions(metas: &[&BlockMeta]) -> Option<Value> {
    let mut combined: Option<Map<String, Value>> = None;
    for meta in metas {
        let Some(Value::Object(extensions)) = meta
            .thanos
            .as_ref()
            .and_then(|thanos| thanos.extensions.as_ref())
        else {
            continue;
        };
        match &mut combined {
            None => combined = Some(extensions.clone()),
            Some(combined) => combined.retain(|key, _| extensions.contains_key(key)),
        }
    }
    combined.map(Value::Object)
}
