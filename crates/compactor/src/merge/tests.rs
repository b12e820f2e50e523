//! Unit tests of the block merge: blocks written with `BlockWriter`, merged, read back.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prom_model::{Labels, MatchType, Matcher};
use tsdb_block::chunkenc::Encoding;
use tsdb_block::meta::{BlockMeta, ThanosMeta};
use tsdb_block::reader::BlockReader;
use tsdb_block::tombstones::{Interval, Tombstones};
use tsdb_block::writer::{BlockWriter, ChunkData, symbols_of};
use ulid::Ulid;

use super::*;

mod encodings;

type Series = BTreeMap<Labels, Vec<(i64, f64)>>;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// Regular samples `start, start+step, ...` below `end`, valued by `value(t)`.
fn regular(start: i64, end: i64, step: i64, value: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (0..)
        .map(|index| start + index * step)
        .take_while(|t| *t < end)
        .map(|t| (t, value(t)))
        .collect()
}

/// Writes a block of `series` covering `[min_time, max_time)`, with `complete` adjusting its meta.
fn write_block_with(
    parent: &Path,
    min_time: i64,
    max_time: i64,
    series: &Series,
    complete: impl FnOnce(&mut BlockMeta),
) -> PathBuf {
    let mut writer = BlockWriter::create(parent, symbols_of(series.keys())).unwrap();
    writer.set_time_range(min_time, max_time);
    for (labels, samples) in series {
        writer.add_series_samples(labels, samples).unwrap();
    }
    writer.finish_with(complete).unwrap().1
}

fn write_block(parent: &Path, min_time: i64, max_time: i64, series: &Series) -> PathBuf {
    write_block_with(parent, min_time, max_time, series, |_| {})
}

/// Every series of a block with its float samples.
fn read_block(dir: &Path) -> Series {
    let block = BlockReader::open(dir).unwrap();
    let all = Matcher::new(MatchType::Regex, "__name__", "(?s:.*)").unwrap();
    let mut out = Series::new();
    for selected in block
        .select(std::slice::from_ref(&all), i64::MIN, i64::MAX)
        .unwrap()
    {
        let selected = selected.unwrap();
        let mut samples = Vec::new();
        block.samples(&selected, &mut samples).unwrap();
        out.insert(selected.labels, samples);
    }
    out
}

fn options(dedup: DedupFunc) -> MergeOptions {
    MergeOptions {
        dedup,
        labels: BTreeMap::from([("cluster".to_owned(), "eu1".to_owned())]),
        resolution: 0,
    }
}

fn merge(sources: &[PathBuf], out: &Path, dedup: DedupFunc) -> (Option<Merged>, MergeCounters) {
    merge_blocks_counted(sources, out, &options(dedup)).unwrap()
}

/// Union of the series, samples merged by timestamp (first given wins).
fn union(parts: &[&Series]) -> Series {
    let mut out = Series::new();
    for part in parts {
        for (labels, samples) in *part {
            let entry = out.entry(labels.clone()).or_default();
            for sample in samples {
                if !entry.iter().any(|(t, _)| *t == sample.0) {
                    entry.push(*sample);
                }
            }
            entry.sort_by_key(|(t, _)| *t);
        }
    }
    out
}

fn bits(series: &Series) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    series
        .iter()
        .map(|(labels, samples)| {
            (
                labels.clone(),
                samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
            )
        })
        .collect()
}

fn some_series(block: i64, range: (i64, i64), count: usize) -> Series {
    (0..count)
        .filter(|index| (*index as i64 + block) % 5 != 0)
        .map(|index| {
            let name = format!("metric_{}", index % 3);
            let labels = labels(&[
                ("__name__", &name),
                ("instance", &format!("host-{index:03}")),
            ]);
            let samples = regular(range.0, range.1, 15_000, |t| {
                (t / 1000) as f64 * (index as f64 + 0.5)
            });
            (labels, samples)
        })
        .collect()
}

#[test]
fn adjacent_blocks_pass_every_chunk_through() {
    let dir = tempfile::tempdir().unwrap();
    let parts: Vec<Series> = (0..3)
        .map(|block| some_series(block, (block * 2 * HOUR, (block + 1) * 2 * HOUR), 40))
        .collect();
    let sources: Vec<PathBuf> = parts
        .iter()
        .enumerate()
        .map(|(block, part)| {
            let block = block as i64;
            write_block(dir.path(), block * 2 * HOUR, (block + 1) * 2 * HOUR, part)
        })
        .collect();
    let out = dir.path().join("out");
    let (merged, counters) = merge(&sources, &out, DedupFunc::OneToOne);
    let merged = merged.unwrap();
    let expected = union(&parts.iter().collect::<Vec<_>>());
    assert_eq!(bits(&read_block(&merged.dir)), bits(&expected));
    assert_eq!(counters.chunks_decoded, 0, "{counters:?}");
    assert_eq!(counters.chunks_deduplicated, 0);
    assert_eq!(counters.chunks_passed_through, merged.meta.stats.num_chunks);
    let samples: usize = expected.values().map(Vec::len).sum();
    assert_eq!(merged.meta.stats.num_samples, samples as u64);
    assert_eq!(merged.meta.stats.num_series, expected.len() as u64);
    assert_eq!((merged.meta.min_time, merged.meta.max_time), (0, 6 * HOUR));
    assert_eq!(merged.dir, out.join(merged.meta.ulid.to_string()));
    // Nothing but the block is left in the output folder.
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn duplicate_uploads_merge_into_one_copy_without_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let part = some_series(1, (0, 2 * HOUR), 30);
    let first = write_block(dir.path(), 0, 2 * HOUR, &part);
    let second = write_block(dir.path(), 0, 2 * HOUR, &part);
    let (merged, counters) = merge(
        &[first, second],
        &dir.path().join("out"),
        DedupFunc::OneToOne,
    );
    let merged = merged.unwrap();
    assert_eq!(bits(&read_block(&merged.dir)), bits(&part));
    assert_eq!(counters.chunks_decoded, 0, "{counters:?}");
    assert_eq!(counters.chunks_deduplicated, merged.meta.stats.num_chunks);
    // Also under penalty de-duplication.
    let first = write_block(dir.path(), 0, 2 * HOUR, &part);
    let second = write_block(dir.path(), 0, 2 * HOUR, &part);
    let (merged, _) = merge(
        &[first, second],
        &dir.path().join("out2"),
        DedupFunc::Penalty,
    );
    assert_eq!(bits(&read_block(&merged.unwrap().dir)), bits(&part));
}

#[test]
fn one_to_one_keeps_the_first_sources_sample_on_equal_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let series = labels(&[("__name__", "up")]);
    // Both cover 0..60m every 15s; b also has samples in between; values differ.
    let a: Series = [(series.clone(), regular(0, HOUR, 15_000, |_| 1.0))].into();
    let b: Series = [(series.clone(), regular(0, HOUR, 7_500, |_| 2.0))].into();
    let a_dir = write_block(dir.path(), 0, HOUR, &a);
    let b_dir = write_block(dir.path(), 0, HOUR, &b);
    let (merged, counters) = merge(
        &[a_dir.clone(), b_dir.clone()],
        &dir.path().join("ab"),
        DedupFunc::OneToOne,
    );
    let read = read_block(&merged.unwrap().dir);
    assert_eq!(bits(&read), bits(&union(&[&a, &b])));
    assert!(counters.chunks_decoded > 0);
    let got = &read[&series];
    assert!(got.iter().all(|(t, v)| (*v == 1.0) == (t % 15_000 == 0)));
    // Chunks were cut again every 120 samples.
    let out = BlockReader::open(&read_merged_dir(&dir.path().join("ab"))).unwrap();
    let all = out.index().all_postings().unwrap();
    let refs = tsdb_block::postings::collect(all);
    let entry = out.index().series(refs[0]).unwrap();
    assert_eq!(entry.chunks.len(), 4, "480 samples");
    // The other order keeps b's values.
    let (merged, _) = merge(&[b_dir, a_dir], &dir.path().join("ba"), DedupFunc::OneToOne);
    let read = read_block(&merged.unwrap().dir);
    assert!(read[&series].iter().all(|(_, v)| *v == 2.0));
}

fn read_merged_dir(out: &Path) -> PathBuf {
    std::fs::read_dir(out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// Two replicas scraping every 15 s, 1 s apart, each down for a while at a different time.
fn replicas(value_a: impl Fn(i64) -> f64, value_b: impl Fn(i64) -> f64) -> (Series, Series) {
    let series = labels(&[("__name__", "requests_total"), ("job", "api")]);
    let a: Vec<(i64, f64)> = regular(0, 2 * HOUR, 15_000, value_a)
        .into_iter()
        .filter(|(t, _)| !(10 * MINUTE..20 * MINUTE).contains(t))
        .collect();
    let b: Vec<(i64, f64)> = regular(1_000, 2 * HOUR, 15_000, value_b)
        .into_iter()
        .filter(|(t, _)| !(40 * MINUTE..55 * MINUTE).contains(t))
        .collect();
    ([(series.clone(), a)].into(), [(series, b)].into())
}

#[test]
fn penalty_fills_each_replicas_gap_from_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = replicas(|_| 1.0, |_| 2.0);
    let sources = [
        write_block(dir.path(), 0, 2 * HOUR, &a),
        write_block(dir.path(), 0, 2 * HOUR, &b),
    ];
    let (merged, _) = merge(&sources, &dir.path().join("out"), DedupFunc::Penalty);
    let read = read_block(&merged.unwrap().dir);
    let (_, samples) = read.iter().next().unwrap();
    let gaps: Vec<i64> = samples
        .windows(2)
        .map(|pair| pair[1].0 - pair[0].0)
        .collect();
    // No gap beyond one switch (penalty window of two intervals plus the offset), and no
    // doubled sampling rate.
    assert!(
        gaps.iter().all(|gap| (14_000..=46_000).contains(gap)),
        "{gaps:?}"
    );
    assert!(
        samples
            .iter()
            .any(|(t, v)| *v == 2.0 && (10 * MINUTE..20 * MINUTE).contains(t))
    );
    assert!(
        samples
            .iter()
            .any(|(t, v)| *v == 1.0 && (40 * MINUTE..55 * MINUTE).contains(t))
    );
    assert!(
        samples.len() < 2 * 480 * 3 / 4,
        "{} samples: replicas doubled",
        samples.len()
    );
    // One-to-one keeps both replicas' samples instead.
    let (merged, _) = merge(&sources, &dir.path().join("chain"), DedupFunc::OneToOne);
    let read = read_block(&merged.unwrap().dir);
    assert_eq!(bits(&read), bits(&union(&[&a, &b])));
}

#[test]
fn penalty_keeps_counter_values_and_resets_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    // A counter reset at 1h in both replicas (a restart of the target); b counts from a lower
    // base, so a switch between them steps down: stored values are not adjusted.
    let counter = |base: f64| move |t: i64| base + ((t % HOUR) / 15_000) as f64;
    let (a, b) = replicas(counter(1000.0), counter(10.0));
    let sources = [
        write_block(dir.path(), 0, 2 * HOUR, &a),
        write_block(dir.path(), 0, 2 * HOUR, &b),
    ];
    let (merged, _) = merge(&sources, &dir.path().join("out"), DedupFunc::Penalty);
    let read = read_block(&merged.unwrap().dir);
    let (labels, samples) = read.iter().next().unwrap();
    let raw = union(&[&a, &b]);
    for (t, v) in samples {
        let stored = raw[labels].iter().find(|(at, _)| at == t).unwrap().1;
        assert_eq!(*v, stored, "value at {t} changed");
    }
    let resets = samples
        .windows(2)
        .filter(|pair| pair[1].1 < pair[0].1)
        .count();
    // The real reset at 1h plus the switches into and out of b's gap-filling run.
    assert!(resets >= 2, "{resets} decreases");
    assert!(
        samples
            .iter()
            .any(|(t, v)| *t >= HOUR && *t < HOUR + MINUTE && *v < 1010.0)
    );
}

#[test]
fn tombstones_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let part = some_series(1, (0, 2 * HOUR), 6);
    let source = write_block(dir.path(), 0, 2 * HOUR, &part);
    let next_part = some_series(2, (2 * HOUR, 4 * HOUR), 6);
    let next = write_block(dir.path(), 2 * HOUR, 4 * HOUR, &next_part);
    let block = BlockReader::open(&source).unwrap();
    let refs = tsdb_block::postings::collect(block.index().all_postings().unwrap());
    drop(block);
    let mut tombstones = Tombstones::new();
    // Series 0: 10m..=25m (inside and across chunk boundaries); series 1: everything.
    tombstones.add_interval(refs[0], Interval::new(10 * MINUTE, 25 * MINUTE));
    tombstones.add_interval(refs[1], Interval::new(i64::MIN, i64::MAX));
    tombstones.write_to_dir(&source).unwrap();
    let mut expected = part.clone();
    let keys: Vec<Labels> = expected.keys().cloned().collect();
    expected
        .get_mut(&keys[0])
        .unwrap()
        .retain(|(t, _)| !(10 * MINUTE..=25 * MINUTE).contains(t));
    expected.remove(&keys[1]);
    let (merged, counters) = merge(
        &[source, next],
        &dir.path().join("out"),
        DedupFunc::OneToOne,
    );
    let merged = merged.unwrap();
    assert_eq!(
        bits(&read_block(&merged.dir)),
        bits(&union(&[&expected, &next_part]))
    );
    assert!(
        counters.chunks_decoded >= 1 && counters.chunks_decoded <= 2,
        "{counters:?}"
    );
    assert_eq!(merged.meta.stats.num_tombstones, 0);
    assert_eq!(
        std::fs::read(merged.dir.join("tombstones")).unwrap().len(),
        9
    );
}

#[test]
fn odd_labels_merge_in_label_order() {
    let dir = tempfile::tempdir().unwrap();
    let long = "ü".repeat(5_000);
    let many: Vec<(String, String)> = (0..120)
        .map(|index| (format!("l{index:03}"), format!("v{index}")))
        .collect();
    let mut a = Series::new();
    let mut b = Series::new();
    let odd = [
        labels(&[("__name__", "m"), ("a", "x")]),
        labels(&[("__name__", "m"), ("a", "x"), ("b", "y")]),
        labels(&[("__name__", "m"), ("a", "日本 🔥 \"quote\" \\ \n")]),
        labels(&[("__name__", "m"), ("a", &long)]),
        Labels::from_pairs(many.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
        labels(&[("zzz", "no metric name")]),
    ];
    for (index, series) in odd.iter().enumerate() {
        let samples = regular(0, HOUR, 30_000, |t| t as f64 + index as f64);
        // Some series in one block only, some in both.
        if index != 3 {
            a.insert(series.clone(), samples.clone());
        }
        if index % 2 == 1 || index == 0 {
            b.insert(
                series.clone(),
                regular(HOUR, 2 * HOUR, 30_000, |t| t as f64),
            );
        }
    }
    let sources = [
        write_block(dir.path(), 0, HOUR, &a),
        write_block(dir.path(), HOUR, 2 * HOUR, &b),
    ];
    let (merged, _) = merge(&sources, &dir.path().join("out"), DedupFunc::OneToOne);
    let read = read_block(&merged.unwrap().dir);
    assert_eq!(bits(&read), bits(&union(&[&a, &b])));
    // An absent label is not an empty one: {a="x"} and {a="x", b="y"} stay two series, the
    // shorter first, and no series gains an empty-valued label.
    let a_x: Vec<&Labels> = read.keys().filter(|l| l.get("a") == Some("x")).collect();
    assert_eq!(a_x.len(), 2);
    assert_eq!(a_x[0].get("b"), None);
    assert!(
        read.keys()
            .all(|labels| labels.iter().all(|label| !label.value.is_empty()))
    );
    assert!(read.keys().any(|labels| labels.len() == 120));
}

#[test]
fn no_samples_writes_no_block() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write_block(dir.path(), 0, HOUR, &Series::new());
    let part = some_series(1, (HOUR, 2 * HOUR), 4);
    let deleted = write_block(dir.path(), HOUR, 2 * HOUR, &part);
    let block = BlockReader::open(&deleted).unwrap();
    let mut tombstones = Tombstones::new();
    for series_ref in tsdb_block::postings::collect(block.index().all_postings().unwrap()) {
        tombstones.add_interval(series_ref, Interval::new(0, 3 * HOUR));
    }
    drop(block);
    tombstones.write_to_dir(&deleted).unwrap();
    let out = dir.path().join("out");
    let (merged, _) = merge(&[empty, deleted.clone()], &out, DedupFunc::OneToOne);
    assert!(merged.is_none());
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing left behind"
    );
    // The same block without tombstones does merge.
    std::fs::remove_file(deleted.join("tombstones")).unwrap();
    assert!(merge(&[deleted], &out, DedupFunc::OneToOne).0.is_some());
}

/// Rewrites the first series entry of `block`'s index so its second chunk starts where the first
/// ends (the delta byte set to 0), fixing the entry's checksum.
fn make_second_chunk_out_of_order(block: &Path) {
    let path = block.join("index");
    let mut bytes = std::fs::read(&path).unwrap();
    let toc = bytes.len() - 52;
    let series_offset = u64::from_be_bytes(bytes[toc + 8..toc + 16].try_into().unwrap()) as usize;
    let mut at = series_offset.next_multiple_of(16);
    let uvarint = |bytes: &[u8], at: &mut usize| -> u64 {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    };
    let length = uvarint(&bytes, &mut at) as usize;
    let body = at;
    let label_count = uvarint(&bytes, &mut at);
    for _ in 0..2 * label_count {
        uvarint(&bytes, &mut at);
    }
    let chunk_count = uvarint(&bytes, &mut at);
    assert!(chunk_count >= 2);
    for _ in 0..3 {
        uvarint(&bytes, &mut at); // first chunk: min time (varint), length, ref
    }
    assert_eq!(
        bytes[at], 1,
        "second chunk starts 1 ms after the first ends"
    );
    bytes[at] = 0;
    let checksum = tsdb_block::encoding::crc32c(&bytes[body..body + length]);
    bytes[body + length..body + length + 4].copy_from_slice(&checksum.to_be_bytes());
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn out_of_order_chunks_name_their_block() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_block(dir.path(), 0, HOUR, &some_series(1, (0, HOUR), 4));
    // Samples every ms at first so the first chunk ends exactly 1 ms before the second starts.
    let series = labels(&[("__name__", "a_first")]);
    let bad_part: Series = [(series, regular(HOUR, HOUR + 240, 1, |t| t as f64))].into();
    let bad = write_block(dir.path(), HOUR, 2 * HOUR, &bad_part);
    make_second_chunk_out_of_order(&bad);
    let bad_ulid = BlockMeta::read_from_dir(&bad).unwrap().ulid;
    let out = dir.path().join("out");
    let error = merge_blocks(&[good, bad], &out, &options(DedupFunc::OneToOne)).unwrap_err();
    match &error {
        MergeError::BadBlock {
            block,
            problem,
            detail,
        } => {
            assert_eq!(*block, bad_ulid);
            assert_eq!(*problem, BlockProblem::OutOfOrderChunks);
            assert!(detail.contains("a_first"), "{detail}");
            assert!(detail.contains(&(HOUR + 119).to_string()), "{detail}");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(error.block(), Some(bad_ulid));
    assert!(error.to_string().contains(&bad_ulid.to_string()), "{error}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "unfinished block removed"
    );
}

#[test]
fn corrupt_chunk_names_its_block() {
    let dir = tempfile::tempdir().unwrap();
    let part = some_series(1, (0, HOUR), 4);
    let good = write_block(dir.path(), 0, HOUR, &part);
    let bad = write_block(
        dir.path(),
        HOUR,
        2 * HOUR,
        &some_series(1, (HOUR, 2 * HOUR), 4),
    );
    let segment = bad.join("chunks/000001");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[20] ^= 0xFF;
    std::fs::write(&segment, bytes).unwrap();
    let bad_ulid = BlockMeta::read_from_dir(&bad).unwrap().ulid;
    let error = merge_blocks(
        &[good, bad],
        &dir.path().join("out"),
        &options(DedupFunc::Penalty),
    )
    .unwrap_err();
    assert!(
        matches!(error, MergeError::BadBlock { block, problem: BlockProblem::Corrupt, .. } if block == bad_ulid),
        "{error}"
    );
    let missing = dir.path().join(Ulid::new().to_string());
    let error = merge_blocks(
        &[missing],
        &dir.path().join("out"),
        &options(DedupFunc::OneToOne),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            MergeError::BadBlock {
                problem: BlockProblem::Unreadable,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn meta_is_thanos_compactors() {
    let dir = tempfile::tempdir().unwrap();
    let extensions = |value: serde_json::Value| {
        move |meta: &mut BlockMeta| {
            let mut thanos = ThanosMeta::new(BTreeMap::new(), 0, "sidecar");
            thanos.extensions = Some(value);
            meta.thanos = Some(thanos);
            meta.compaction.level = 2;
            let own = meta.ulid;
            meta.compaction.sources = vec![own, Ulid::from_parts(1, 7)];
        }
    };
    let first = write_block_with(
        dir.path(),
        0,
        2 * HOUR,
        &some_series(1, (0, 2 * HOUR), 3),
        extensions(serde_json::json!({"a": 1, "b": {"x": true}, "c": "first"})),
    );
    let second = write_block_with(
        dir.path(),
        2 * HOUR,
        4 * HOUR,
        &some_series(2, (2 * HOUR, 4 * HOUR), 3),
        extensions(serde_json::json!({"b": 2, "c": "second"})),
    );
    // A level-1 block without a thanos section: skipped by the extensions' AND.
    let third = write_block(
        dir.path(),
        4 * HOUR,
        5 * HOUR,
        &some_series(3, (4 * HOUR, 5 * HOUR), 3),
    );
    let metas: Vec<BlockMeta> = [&first, &second, &third]
        .iter()
        .map(|dir| BlockMeta::read_from_dir(dir).unwrap())
        .collect();
    let sources = vec![first, second, third];
    let options = MergeOptions {
        dedup: DedupFunc::OneToOne,
        labels: BTreeMap::from([
            ("cluster".to_owned(), "eu1".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]),
        resolution: 300_000,
    };
    let merged = merge_blocks(&sources, &dir.path().join("out"), &options)
        .unwrap()
        .unwrap();
    let meta = BlockMeta::read_from_dir(&merged.dir).unwrap();
    assert_eq!(meta, merged.meta);
    assert_ne!(
        metas.iter().map(|m| m.ulid).find(|u| *u == meta.ulid),
        Some(meta.ulid)
    );
    assert_eq!((meta.min_time, meta.max_time), (0, 5 * HOUR));
    assert_eq!(meta.compaction.level, 3);
    let mut expected_sources: Vec<Ulid> = metas.iter().map(|m| m.ulid).collect();
    expected_sources.push(Ulid::from_parts(1, 7));
    expected_sources.sort();
    assert_eq!(meta.compaction.sources, expected_sources);
    let parents: Vec<(Ulid, i64, i64)> = meta
        .compaction
        .parents
        .iter()
        .map(|p| (p.ulid, p.min_time, p.max_time))
        .collect();
    let expected_parents: Vec<(Ulid, i64, i64)> = metas
        .iter()
        .map(|m| (m.ulid, m.min_time, m.max_time))
        .collect();
    assert_eq!(parents, expected_parents);
    let thanos = meta.thanos.as_ref().unwrap();
    assert_eq!(thanos.labels, options.labels);
    assert_eq!(thanos.downsample.resolution, 300_000);
    assert_eq!(thanos.source, "compactor");
    assert!(thanos.files.is_empty());
    // Index stats as Thanos' health check measures them: a chunk is at most 1 KiB or so.
    assert!(
        (100..1100).contains(&thanos.index_stats.chunk_max_size),
        "{:?}",
        thanos.index_stats
    );
    assert!(
        thanos.index_stats.series_max_size >= 16,
        "{:?}",
        thanos.index_stats
    );
    assert_eq!(
        thanos.extensions,
        Some(serde_json::json!({"b": {"x": true}, "c": "first"}))
    );
    let read = read_block(&merged.dir);
    let samples: usize = read.values().map(Vec::len).sum();
    assert_eq!(meta.stats.num_samples, samples as u64);
    assert_eq!(meta.stats.num_float_samples, samples as u64);
    assert_eq!(meta.stats.num_series, read.len() as u64);
    assert!(meta.stats.num_chunks >= read.len() as u64);
    // Without any extensions object, none is written.
    assert_eq!(meta::common_extensions(&[&metas[2]]), None);
}

#[test]
fn many_series_merge_while_read_pages_are_released() {
    // More series than RELEASE_EVERY, so mapped pages already read are released mid-merge
    // (a series whose pages were released is read again correctly if needed).
    let dir = tempfile::tempdir().unwrap();
    let part = |block: i64| -> Series {
        (0..9_000)
            .filter(|index| (index + block) % 4 != 0)
            .map(|index| {
                let labels = labels(&[("__name__", "many"), ("i", &format!("{index:05}"))]);
                let start = block * HOUR;
                (
                    labels,
                    regular(start, start + HOUR, 5 * MINUTE, |t| (t + index) as f64),
                )
            })
            .collect()
    };
    let (a, b) = (part(0), part(1));
    let sources = [
        write_block(dir.path(), 0, HOUR, &a),
        write_block(dir.path(), HOUR, 2 * HOUR, &b),
    ];
    let (merged, counters) = merge(&sources, &dir.path().join("out"), DedupFunc::OneToOne);
    let merged = merged.unwrap();
    assert_eq!(bits(&read_block(&merged.dir)), bits(&union(&[&a, &b])));
    assert_eq!(counters.chunks_decoded, 0);
    assert!(merged.meta.stats.num_series > 2 * RELEASE_EVERY);
}
