//! Downsampling checked sample by sample against a plain reference computed from the raw
//! samples, for raw → 5m and for raw → 5m → 1h.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prom_model::{Labels, stale_nan};
use tsdb_block::chunkenc::{AggrChunk, AggrType, Encoding, decode_xor, encode_xor};
use tsdb_block::meta::{BlockMeta, ThanosMeta};
use tsdb_block::postings::Postings;
use tsdb_block::reader::BlockReader;
use tsdb_block::writer::{BlockWriter, ChunkData, symbols_of};
use ulid::Ulid;

use super::*;

const HOUR: i64 = 3_600_000;
/// An unaligned start, so windows and chunk ranges do not line up with the data.
const BASE: i64 = 1_700_000_123_457;

type Samples = Vec<(i64, f64)>;

/// A deterministic pseudo-random sequence in `[0, 1)`.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A counter scraped at `times`, growing by random amounts, reset every `reset_every` samples.
fn counter_at(times: impl IntoIterator<Item = i64>, reset_every: usize, seed: u64) -> Samples {
    let mut random = Lcg(seed);
    let mut value = 100.0 * random.next();
    let mut samples = Vec::new();
    for (index, t) in times.into_iter().enumerate() {
        if index > 0 && index % reset_every == 0 {
            value = 3.0 * random.next();
        } else {
            value += 10.0 * random.next();
        }
        samples.push((t, value));
    }
    samples
}

fn labels(name: &str) -> Labels {
    Labels::from_pairs([("__name__", "m".to_owned()), ("case", name.to_owned())])
}

/// The test series, in label order.
fn cases() -> Vec<(Labels, Samples)> {
    let dense = counter_at((0..11_520).map(|i| BASE + i * 15_000), 4_000, 1);
    let gaps = counter_at(
        (0..5_760)
            .map(|i| BASE + i * 30_000)
            .filter(|t| !(5 * HOUR..8 * HOUR).contains(&(t - BASE)))
            .filter(|t| !(30 * HOUR..31 * HOUR + 7).contains(&(t - BASE))),
        100_000,
        2,
    );
    let mut with_nans = counter_at((0..2_880).map(|i| BASE + i * 60_000), 900, 3);
    for (index, sample) in with_nans.iter_mut().enumerate() {
        if index % 7 == 3 {
            sample.1 = f64::NAN;
        } else if index % 11 == 5 {
            sample.1 = stale_nan();
        }
    }
    let mut random = Lcg(4);
    let mut t = BASE;
    let irregular_times: Vec<i64> = (0..3_000)
        .map(|_| {
            t += 1_000 + (random.next() * 400_000.0) as i64;
            t
        })
        .collect();
    let irregular = counter_at(irregular_times, 250, 5);
    let resets = counter_at((0..5_000).map(|i| BASE + 7 * HOUR + i * 20_000), 13, 6);
    let all_nan: Samples = (0..50).map(|i| (BASE + i * 60_000, f64::NAN)).collect();
    let single = vec![(BASE + 20 * HOUR + 12_345, 42.5)];
    let mut all = vec![
        (labels("all_nan"), all_nan),
        (labels("dense"), dense),
        (labels("gaps"), gaps),
        (labels("irregular"), irregular),
        (labels("nans"), with_nans),
        (labels("resets"), resets),
        (labels("single"), single),
    ];
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn source_meta_edit(meta: &mut BlockMeta, min_time: i64, max_time: i64) {
    meta.min_time = min_time;
    meta.max_time = max_time;
    meta.compaction.level = 3;
    meta.compaction.sources = vec![Ulid::from_parts(1, 1), Ulid::from_parts(2, 2)];
    let external = BTreeMap::from([("replica".to_owned(), "a".to_owned())]);
    meta.thanos = Some(ThanosMeta::new(external, RESOLUTION_RAW, "sidecar"));
}

/// A raw block of `series` spanning 48h from [`BASE`].
fn raw_block(parent: &Path, series: &[(Labels, Samples)]) -> PathBuf {
    let mut writer =
        BlockWriter::create(parent, symbols_of(series.iter().map(|(l, _)| l))).unwrap();
    for (labels, samples) in series {
        writer.add_series_samples(labels, samples).unwrap();
    }
    let (_, dir) = writer
        .finish_with(|meta| source_meta_edit(meta, BASE, BASE + 48 * HOUR))
        .unwrap();
    dir
}

/// One output chunk read back: its index times and each aggregate's samples.
#[derive(Debug)]
struct ReadChunk {
    min_time: i64,
    max_time: i64,
    parts: [Option<Samples>; 5],
}

fn read_block(dir: &Path) -> BTreeMap<Labels, Vec<ReadChunk>> {
    let block = BlockReader::open(dir).unwrap();
    let mut postings = block.index().all_postings().unwrap();
    let mut out = BTreeMap::new();
    while let Some(series_ref) = postings.next() {
        let entry = block.index().series(series_ref).unwrap();
        let chunks = entry
            .chunks
            .iter()
            .map(|meta| {
                let (encoding, data) = block.chunk(meta.chunk_ref).unwrap();
                assert_eq!(encoding, Encoding::ThanosAggr);
                let parts = AggrChunk::new(data).parts().unwrap();
                ReadChunk {
                    min_time: meta.min_time,
                    max_time: meta.max_time,
                    parts: parts.map(|part| {
                        part.map(|part| {
                            assert_eq!(part.encoding, Encoding::Xor);
                            decode_xor(part.data).unwrap()
                        })
                    }),
                }
            })
            .collect();
        out.insert(entry.labels, chunks);
    }
    out
}

/// One expected window: timestamp, count, sum, min, max, counter.
type Window = (i64, f64, f64, f64, f64, f64);

/// The plain reference: the raw samples (NaNs dropped) of one output chunk, grouped by window;
/// each window at its end, the chunk's last at the chunk's last sample; the counter runs from
/// the chunk's first raw value, adding increases and, after a drop, the new value.
fn reference_windows(part: &[(i64, f64)], resolution: i64) -> Vec<Window> {
    let mut windows: BTreeMap<i64, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counter = part[0].1;
    for (index, &(t, v)) in part.iter().enumerate() {
        if index > 0 {
            let previous = part[index - 1].1;
            counter += if v >= previous { v - previous } else { v };
        }
        windows
            .entry(t.div_euclid(resolution))
            .or_default()
            .push((v, counter));
    }
    let last_t = part[part.len() - 1].0;
    windows
        .into_iter()
        .map(|(index, values)| {
            let end = ((index + 1) * resolution - 1).min(last_t);
            let count = values.len() as f64;
            let sum: f64 = values.iter().map(|(v, _)| v).sum();
            let min = values.iter().map(|(v, _)| *v).fold(f64::INFINITY, f64::min);
            let max = values
                .iter()
                .map(|(v, _)| *v)
                .fold(f64::NEG_INFINITY, f64::max);
            (end, count, sum, min, max, values[values.len() - 1].1)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_close(got: &[(i64, f64)], expected: &[(i64, f64)], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: {got:?} vs {expected:?}");
    for (g, e) in got.iter().zip(expected) {
        assert!(
            g.0 == e.0 && close(g.1, e.1),
            "{what}: got {g:?}, expected {e:?}"
        );
    }
}

/// Checks one series' output chunks against the reference built from its raw samples. The
/// raw samples are split where the chunks end (each chunk's counter ends with its last raw
/// sample's timestamp); at 5m no window may be split between chunks.
fn check_series(name: &str, raw: &[(i64, f64)], chunks: &[ReadChunk], resolution: i64) {
    // 5m chunks come from whole windows of raw samples; 1h chunks follow 5m chunk boundaries.
    let aligned = resolution == RESOLUTION_5M;
    let clean: Samples = raw.iter().copied().filter(|(_, v)| !v.is_nan()).collect();
    assert!(!chunks.is_empty(), "{name}: no chunks");
    let mut rest = clean.as_slice();
    for (index, chunk) in chunks.iter().enumerate() {
        let what = format!("{name} chunk {index}");
        let counter = chunk.parts[AggrType::Counter.index()].as_ref().unwrap();
        let end = counter[counter.len() - 1].0;
        let split = rest
            .iter()
            .position(|(t, _)| *t > end)
            .unwrap_or(rest.len());
        let (part, after) = rest.split_at(split);
        rest = after;
        assert!(!part.is_empty(), "{what}: no raw samples up to {end}");
        let windows = reference_windows(part, resolution);
        let column = |pick: fn(&Window) -> f64| -> Samples {
            windows.iter().map(|w| (w.0, pick(w))).collect()
        };
        let part_of = |aggregate: AggrType| chunk.parts[aggregate.index()].as_ref().unwrap();
        assert_eq!(part_of(AggrType::Count), &column(|w| w.1), "{what}: count");
        assert_close(
            part_of(AggrType::Sum),
            &column(|w| w.2),
            &format!("{what}: sum"),
        );
        assert_eq!(part_of(AggrType::Min), &column(|w| w.3), "{what}: min");
        assert_eq!(part_of(AggrType::Max), &column(|w| w.4), "{what}: max");
        let mut expected_counter = vec![part[0]];
        expected_counter.extend(column(|w| w.5));
        expected_counter.push((part[part.len() - 1].0, part[part.len() - 1].1));
        assert_close(counter, &expected_counter, &format!("{what}: counter"));
        assert_eq!(
            (chunk.min_time, chunk.max_time),
            (windows[0].0, windows[windows.len() - 1].0),
            "{what}: chunk times"
        );
        if let (true, Some(next)) = (aligned, rest.first()) {
            assert_ne!(
                next.0.div_euclid(resolution),
                end.div_euclid(resolution),
                "{what}: window split between chunks"
            );
        }
    }
    assert!(
        rest.is_empty(),
        "{name}: {} raw samples after the last chunk",
        rest.len()
    );
}

/// Raw → 5m → 1h over [`cases`]: returns the three block folders.
fn downsample_cases(parent: &Path) -> (Vec<(Labels, Samples)>, PathBuf, Downsampled, Downsampled) {
    let series = cases();
    let raw = raw_block(parent, &series);
    let five = downsample_block(&raw, parent, RESOLUTION_5M)
        .unwrap()
        .unwrap();
    let hour = downsample_block(&five.dir, parent, RESOLUTION_1H)
        .unwrap()
        .unwrap();
    (series, raw, five, hour)
}

#[test]
fn raw_to_5m_and_5m_to_1h_match_the_reference_sample_by_sample() {
    let dir = tempfile::tempdir().unwrap();
    let (series, _, five, hour) = downsample_cases(dir.path());
    let five_read = read_block(&five.dir);
    let hour_read = read_block(&hour.dir);
    assert!(
        !five_read.contains_key(&labels("all_nan")),
        "an all-NaN series is left out"
    );
    assert!(!hour_read.contains_key(&labels("all_nan")));
    for (labels, raw) in &series {
        let Some(chunks) = five_read.get(labels) else {
            assert!(raw.iter().all(|(_, v)| v.is_nan()), "{labels} missing");
            continue;
        };
        check_series(&format!("5m {labels}"), raw, chunks, RESOLUTION_5M);
        check_series(
            &format!("1h {labels}"),
            raw,
            &hour_read[labels],
            RESOLUTION_1H,
        );
    }
    // 48h at 15s: 576 windows, 5 chunks of at most 140 aggregates by Thanos' sizing.
    let dense = &five_read[&labels("dense")];
    assert_eq!(dense.len(), 5);
    let single = &five_read[&labels("single")];
    assert_eq!(single.len(), 1);
    assert_eq!(
        single[0].parts[AggrType::Counter.index()]
            .as_ref()
            .unwrap()
            .len(),
        3
    );
    assert!(hour_read[&labels("dense")].len() == 1);
}

#[test]
fn output_meta_keeps_the_source_and_sets_the_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let (series, raw, five, hour) = downsample_cases(dir.path());
    let source = BlockMeta::read_from_dir(&raw).unwrap();
    for (block, resolution) in [(&five, RESOLUTION_5M), (&hour, RESOLUTION_1H)] {
        let meta = &block.meta;
        assert_eq!(BlockMeta::read_from_dir(&block.dir).unwrap(), *meta);
        assert_eq!(block.dir, dir.path().join(meta.ulid.to_string()));
        assert_ne!(meta.ulid, source.ulid);
        assert_eq!(
            (meta.min_time, meta.max_time),
            (source.min_time, source.max_time)
        );
        assert_eq!(meta.compaction.level, 3);
        assert_eq!(meta.compaction.sources, source.compaction.sources);
        let thanos = meta.thanos.as_ref().unwrap();
        assert_eq!(thanos.downsample.resolution, resolution);
        assert_eq!(thanos.source, "compactor");
        assert_eq!(thanos.labels, source.thanos.as_ref().unwrap().labels);
        assert!(thanos.files.is_empty());
        let read = read_block(&block.dir);
        assert_eq!(meta.stats.num_series, series.len() as u64 - 1);
        assert_eq!(meta.stats.num_series, read.len() as u64);
        let chunks: usize = read.values().map(Vec::len).sum();
        assert_eq!(meta.stats.num_chunks, chunks as u64);
        let counts: usize = read
            .values()
            .flatten()
            .map(|chunk| chunk.parts[0].as_ref().unwrap().len())
            .sum();
        assert_eq!(meta.stats.num_samples, counts as u64);
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn out_of_order_and_repeated_samples_are_merged_not_fatal() {
    // Our index writer refuses overlapping chunks, so the overlap is built inside one chunk:
    // the samples of two overlapping scrapes one after the other, going back in time, some
    // timestamps repeated exactly. The reader merges them like overlapping chunks.
    let dir = tempfile::tempdir().unwrap();
    let series = labels("overlap");
    let first: Samples = (0..400).map(|i| (BASE + i * 30_000, i as f64)).collect();
    let second: Samples = (200..700)
        .map(|i| {
            let shift = if i < 300 { 0 } else { 7_000 };
            (BASE + i * 30_000 + shift, i as f64)
        })
        .collect();
    let both: Samples = first.iter().chain(&second).copied().collect();
    let data = encode_xor(&both).into_bytes();
    let max_time = both.iter().map(|(t, _)| *t).max().unwrap();
    let mut writer = BlockWriter::create(dir.path(), symbols_of([&series])).unwrap();
    let chunk = ChunkData {
        min_time: BASE,
        max_time,
        encoding: Encoding::Xor,
        data: &data,
    };
    writer.add_series(&series, &[chunk]).unwrap();
    let (_, raw) = writer
        .finish_with(|meta| source_meta_edit(meta, BASE, BASE + 48 * HOUR))
        .unwrap();

    let five = downsample_block(&raw, dir.path(), RESOLUTION_5M)
        .unwrap()
        .unwrap();
    let mut merged: BTreeMap<i64, f64> = BTreeMap::new();
    for (t, v) in &both {
        merged.entry(*t).or_insert(*v);
    }
    let merged: Samples = merged.into_iter().collect();
    let read = read_block(&five.dir);
    check_series("overlap 5m", &merged, &read[&series], RESOLUTION_5M);
    let hour = downsample_block(&five.dir, dir.path(), RESOLUTION_1H)
        .unwrap()
        .unwrap();
    check_series(
        "overlap 1h",
        &merged,
        &read_block(&hour.dir)[&series],
        RESOLUTION_1H,
    );
}

#[test]
fn histogram_series_are_left_out_and_empty_blocks_give_none() {
    let dir = tempfile::tempdir().unwrap();
    let series = labels("histogram");
    // Only the two-byte header is read; the body is never decoded.
    let fake_histogram = [0u8, 3, 0xAB, 0xCD];
    let mut writer = BlockWriter::create(dir.path(), symbols_of([&series])).unwrap();
    let data = [ChunkData {
        min_time: BASE,
        max_time: BASE + 60_000,
        encoding: Encoding::Histogram,
        data: &fake_histogram,
    }];
    writer.add_series(&series, &data).unwrap();
    let (_, raw) = writer
        .finish_with(|meta| source_meta_edit(meta, BASE, BASE + 48 * HOUR))
        .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    assert!(
        downsample_block(&raw, &out, RESOLUTION_5M)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn wrong_resolutions_and_corrupt_chunks_are_source_errors() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_block(dir.path(), &cases()[1..3]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    for resolution in [RESOLUTION_RAW, 12_345] {
        let error = downsample_block(&raw, &out, resolution).unwrap_err();
        assert!(
            matches!(error, DownsampleError::Resolution { .. }),
            "{error}"
        );
        assert!(error.is_bad_source());
    }
    let five = downsample_block(&raw, &out, RESOLUTION_5M)
        .unwrap()
        .unwrap();
    let error = downsample_block(&five.dir, &out, RESOLUTION_5M).unwrap_err();
    assert!(
        matches!(error, DownsampleError::Resolution { .. }),
        "{error}"
    );

    // Damage the first chunk's data (past the 8-byte segment header and its length byte).
    let segment = raw.join("chunks").join("000001");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[20] ^= 0xFF;
    std::fs::write(&segment, bytes).unwrap();
    let error = downsample_block(&raw, &out, RESOLUTION_5M).unwrap_err();
    assert!(error.is_bad_source(), "{error}");
    let DownsampleError::SourceChunk { series, block, .. } = &error else {
        panic!("expected a chunk error, got {error}");
    };
    assert!(series.contains("dense"), "{error}");
    assert_eq!(
        block.to_string(),
        raw.file_name().unwrap().to_string_lossy()
    );
    // Only the earlier good output remains under `out`.
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let missing = downsample_block(&dir.path().join("nope"), &out, RESOLUTION_5M).unwrap_err();
    assert!(
        matches!(missing, DownsampleError::SourceBlock { .. }),
        "{missing}"
    );
}

#[test]
fn many_series_downsample_while_read_pages_are_released() {
    // More series than RELEASE_EVERY, so the source's mapped pages already read are released
    // mid-walk, at both steps; every series still comes out exactly as the reference says.
    let dir = tempfile::tempdir().unwrap();
    let count = 2 * RELEASE_EVERY as usize + 1_000;
    let series: Vec<(Labels, Samples)> = (0..count)
        .map(|index| {
            let step = 60_000 + (index as i64 % 7) * 45_000;
            let times =
                (0..20 + index as i64 % 90).map(|i| BASE + (index as i64) * 1_000 + i * step);
            (
                labels(&format!("many{index:05}")),
                counter_at(times, 25 + index % 40, index as u64),
            )
        })
        .collect();
    let raw = raw_block(dir.path(), &series);
    let five = downsample_block(&raw, dir.path(), RESOLUTION_5M)
        .unwrap()
        .unwrap();
    let hour = downsample_block(&five.dir, dir.path(), RESOLUTION_1H)
        .unwrap()
        .unwrap();
    let five_read = read_block(&five.dir);
    let hour_read = read_block(&hour.dir);
    assert_eq!(five_read.len(), count);
    assert_eq!(hour_read.len(), count);
    assert_eq!(five.meta.stats.num_series, count as u64);
    for (labels, raw) in &series {
        check_series(
            &format!("5m {labels}"),
            raw,
            &five_read[labels],
            RESOLUTION_5M,
        );
        check_series(
            &format!("1h {labels}"),
            raw,
            &hour_read[labels],
            RESOLUTION_1H,
        );
    }
}
