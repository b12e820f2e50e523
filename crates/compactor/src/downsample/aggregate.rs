//! Window aggregation and aggregate-chunk building, with Thanos' rules (sheet §4.2).
//!
//! A window of resolution `r` holding `t` ends at `t - t % r + r - 1`; each window gives one
//! aggregate at its end, except the last window of a batch, whose aggregate sits at the batch's
//! last timestamp so that consecutive chunks never overlap. Raw series are cut into batches of
//! about `len / chunks + 1` samples, extended to whole windows ([`downsample_raw`]); aggregate
//! series are re-aggregated along their chunk boundaries ([`downsample_aggregates`]), because a
//! counter chunk's first and last raw values must survive every level.

use prom_model::is_stale_nan;
use tsdb_block::chunkenc::{AggrPart, AggrType, Encoding, XorEncoder, encode_aggr_chunk};

/// The raw scrape interval Thanos assumes when sizing chunks (one minute).
const ASSUMED_RAW_INTERVAL_MS: i64 = 60_000;
/// Chunks are made numerous enough to hold at most this many aggregates on average.
const TARGET_SAMPLES_PER_CHUNK: usize = 140;

/// One output chunk: its aggregate timestamps' range and its encoded aggregate data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputChunk {
    /// The first aggregate's timestamp (the counter's first raw sample may lie before it, as
    /// in Thanos' blocks).
    pub(crate) min_time: i64,
    /// The last aggregate's timestamp.
    pub(crate) max_time: i64,
    /// [`encode_aggr_chunk`] data.
    pub(crate) data: Vec<u8>,
}

/// One chunk of an already downsampled series, decoded: each present aggregate's samples.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct InputChunk {
    /// The chunk's `min_time` from the index.
    pub(crate) min_time: i64,
    /// The chunk's `max_time` from the index.
    pub(crate) max_time: i64,
    /// Samples per aggregate, indexed as [`AggrType::index`]; `None` when absent.
    pub(crate) aggregates: [Option<Vec<(i64, f64)>>; 5],
}

/// An output chunk would need more samples than an XOR chunk can count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkFull {
    /// The aggregate whose chunk overflowed.
    pub(crate) aggregate: AggrType,
}

/// The inclusive end of the window of `resolution` that holds `t` (Go's truncating `%`).
pub(crate) fn window_end(t: i64, resolution: i64) -> i64 {
    t - (t % resolution) + resolution - 1
}

/// How many chunks a series over `[min_time, max_time]` with `count` input samples at
/// `input_resolution` becomes at `output_resolution`: enough for at most
/// [`TARGET_SAMPLES_PER_CHUNK`] aggregates each on average.
pub(crate) fn target_chunk_count(
    min_time: i64,
    max_time: i64,
    input_resolution: i64,
    output_resolution: i64,
    count: usize,
) -> usize {
    let span = max_time.saturating_sub(min_time);
    let max_samples = (span / output_resolution) as f64;
    // The fraction of the span the input fills; infinite (so 1) for a zero span.
    let fullness = (count as f64 / (span as f64 / input_resolution as f64)).min(1.0);
    let expected = (max_samples * fullness) as usize + 1;
    // The fewest chunks that bring `expected / chunks` (integer division) to the target.
    expected / (TARGET_SAMPLES_PER_CHUNK + 1) + 1
}

/// Running statistics of one window, plus the counter across the whole batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Aggregator {
    total: u64,
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    /// The counter since the batch's first sample, resets applied.
    pub(crate) counter: f64,
    last: f64,
}

impl Aggregator {
    fn new() -> Self {
        let mut aggregator = Self {
            total: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            counter: 0.0,
            last: 0.0,
        };
        aggregator.start_window();
        aggregator
    }

    fn start_window(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
    }

    fn add(&mut self, value: f64) {
        if self.total == 0 {
            self.counter = value;
        } else if value < self.last {
            // A reset: the counter restarted from zero.
            self.counter += value;
        } else {
            self.counter += value - self.last;
        }
        self.last = value;
        self.total += 1;
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }
}

/// Aggregates `samples` (sorted by time) into windows of `resolution`, calling `emit` with each
/// window's timestamp and statistics; the last window's timestamp is clamped to the last
/// sample's. Staleness markers are skipped. Returns the last timestamp emitted, `None` when
/// nothing was.
pub(crate) fn aggregate_windows(
    samples: &[(i64, f64)],
    resolution: i64,
    mut emit: impl FnMut(i64, &Aggregator),
) -> Option<i64> {
    let last_time = samples.last()?.0;
    let mut aggregator = Aggregator::new();
    let mut window: Option<i64> = None;
    for &(t, v) in samples {
        if is_stale_nan(v) {
            continue;
        }
        match window {
            Some(end) if t <= end => {}
            _ => {
                if let Some(end) = window {
                    emit(end, &aggregator);
                }
                aggregator.start_window();
                window = Some(window_end(t, resolution).min(last_time));
            }
        }
        aggregator.add(v);
    }
    let end = window?;
    emit(end, &aggregator);
    Some(end)
}

/// An XOR encoder that reports a full chunk instead of dropping samples.
#[derive(Debug)]
struct PartEncoder {
    aggregate: AggrType,
    encoder: XorEncoder,
}

impl PartEncoder {
    fn new(aggregate: AggrType) -> Self {
        Self {
            aggregate,
            encoder: XorEncoder::new(),
        }
    }

    fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkFull> {
        if self.encoder.append(t, v) {
            Ok(())
        } else {
            Err(ChunkFull {
                aggregate: self.aggregate,
            })
        }
    }
}

/// The five encoders of one output chunk and its aggregate time range.
#[derive(Debug)]
struct ChunkBuilder {
    parts: [Option<PartEncoder>; 5],
    min_time: i64,
    max_time: i64,
}

impl ChunkBuilder {
    fn new() -> Self {
        Self {
            parts: [None, None, None, None, None],
            min_time: i64::MAX,
            max_time: i64::MIN,
        }
    }

    fn part(&mut self, aggregate: AggrType) -> &mut PartEncoder {
        self.parts[aggregate.index()].get_or_insert_with(|| PartEncoder::new(aggregate))
    }

    /// Appends an aggregate sample, widening the chunk's time range.
    fn append_aggregate(&mut self, aggregate: AggrType, t: i64, v: f64) -> Result<(), ChunkFull> {
        self.min_time = self.min_time.min(t);
        self.max_time = self.max_time.max(t);
        self.part(aggregate).append(t, v)
    }

    /// The chunk, `None` when no aggregate was appended.
    fn finish(self) -> Option<OutputChunk> {
        if self.min_time > self.max_time {
            return None;
        }
        let parts: [Option<AggrPart<'_>>; 5] = std::array::from_fn(|index| {
            self.parts[index].as_ref().map(|part| AggrPart {
                encoding: Encoding::Xor,
                data: part.encoder.bytes(),
            })
        });
        Some(OutputChunk {
            min_time: self.min_time,
            max_time: self.max_time,
            data: encode_aggr_chunk(&parts),
        })
    }
}

/// Raw float samples (sorted by time, unique timestamps, staleness markers removed; other
/// NaNs are dropped here after sizing, as Thanos does) to aggregate chunks at `resolution`.
pub(crate) fn downsample_raw(
    samples: &[(i64, f64)],
    resolution: i64,
) -> Result<Vec<OutputChunk>, ChunkFull> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Ok(Vec::new());
    };
    let chunk_count = target_chunk_count(
        first.0,
        last.0,
        ASSUMED_RAW_INTERVAL_MS,
        resolution,
        samples.len(),
    );
    let batch_size = samples.len() / chunk_count + 1;
    let mut chunks = Vec::with_capacity(chunk_count);
    let mut batch: Vec<(i64, f64)> = Vec::with_capacity(batch_size.min(samples.len()));
    let mut rest = samples;
    while !rest.is_empty() {
        let mut end = batch_size.min(rest.len());
        // Take the rest of the window the batch ends in, so no window is split.
        let window = window_end(rest[end - 1].0, resolution);
        while end < rest.len() && rest[end].0 <= window {
            end += 1;
        }
        batch.clear();
        batch.extend(rest[..end].iter().filter(|(_, v)| !v.is_nan()));
        rest = &rest[end..];
        if let Some(chunk) = raw_batch_chunk(&batch, resolution)? {
            chunks.push(chunk);
        }
    }
    Ok(chunks)
}

/// One chunk from one batch of NaN-free raw samples.
fn raw_batch_chunk(
    batch: &[(i64, f64)],
    resolution: i64,
) -> Result<Option<OutputChunk>, ChunkFull> {
    let (Some(&(first_t, first_v)), Some(&(_, last_v))) = (batch.first(), batch.last()) else {
        return Ok(None);
    };
    let mut builder = ChunkBuilder::new();
    // The counter starts with the first raw sample, so readers can detect a reset against the
    // previous chunk.
    builder.part(AggrType::Counter).append(first_t, first_v)?;
    let mut failure = Ok(());
    let last_window = aggregate_windows(batch, resolution, |t, aggregator| {
        if failure.is_err() {
            return;
        }
        failure = append_raw_aggregates(&mut builder, t, aggregator);
    });
    failure?;
    if let Some(last_window) = last_window {
        // And ends with the last raw value again, at the same timestamp.
        builder
            .part(AggrType::Counter)
            .append(last_window, last_v)?;
    }
    Ok(builder.finish())
}

fn append_raw_aggregates(
    builder: &mut ChunkBuilder,
    t: i64,
    aggregator: &Aggregator,
) -> Result<(), ChunkFull> {
    builder.append_aggregate(AggrType::Count, t, aggregator.count as f64)?;
    builder.append_aggregate(AggrType::Sum, t, aggregator.sum)?;
    builder.append_aggregate(AggrType::Min, t, aggregator.min)?;
    builder.append_aggregate(AggrType::Max, t, aggregator.max)?;
    builder.append_aggregate(AggrType::Counter, t, aggregator.counter)
}

/// Chunks of an aggregated series at `input_resolution` (sorted by `min_time`) to chunks at
/// `resolution`: counts and sums are summed, minima and maxima kept, the counter continued
/// across resets and chunk boundaries. Chunks are grouped whole, never split; overlapping
/// chunks always land in the same group.
pub(crate) fn downsample_aggregates(
    chunks: &[InputChunk],
    input_resolution: i64,
    resolution: i64,
) -> Result<Vec<OutputChunk>, ChunkFull> {
    let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
        return Ok(Vec::new());
    };
    let count_samples: usize = chunks
        .iter()
        .map(|chunk| {
            chunk.aggregates[AggrType::Count.index()]
                .as_ref()
                .map_or(0, Vec::len)
        })
        .sum();
    let max_time = chunks
        .iter()
        .map(|chunk| chunk.max_time)
        .max()
        .unwrap_or(last.max_time);
    let chunk_count = target_chunk_count(
        first.min_time,
        max_time,
        input_resolution,
        resolution,
        count_samples,
    );
    let batch_size = (chunks.len() / chunk_count).max(1);
    let mut output = Vec::with_capacity(chunk_count);
    let mut rest = chunks;
    while !rest.is_empty() {
        let mut end = batch_size.min(rest.len());
        let mut batch_max = rest[..end].iter().map(|c| c.max_time).max().unwrap_or(0);
        while end < rest.len() && rest[end].min_time <= batch_max {
            batch_max = batch_max.max(rest[end].max_time);
            end += 1;
        }
        if let Some(chunk) = aggregate_batch_chunk(&rest[..end], resolution)? {
            output.push(chunk);
        }
        rest = &rest[end..];
    }
    Ok(output)
}

/// One output chunk from a group of aggregate chunks.
fn aggregate_batch_chunk(
    batch: &[InputChunk],
    resolution: i64,
) -> Result<Option<OutputChunk>, ChunkFull> {
    let mut builder = ChunkBuilder::new();
    let mut samples: Vec<(i64, f64)> = Vec::new();
    for aggregate in [AggrType::Count, AggrType::Sum, AggrType::Min, AggrType::Max] {
        samples.clear();
        for chunk in batch {
            if let Some(part) = &chunk.aggregates[aggregate.index()] {
                samples.extend(part.iter().filter(|(_, v)| !is_stale_nan(*v)));
            }
        }
        sort_dedup(&mut samples);
        let mut failure = Ok(());
        aggregate_windows(&samples, resolution, |t, aggregator| {
            let value = match aggregate {
                // Counts of counts add up, as sums do.
                AggrType::Count | AggrType::Sum => aggregator.sum,
                AggrType::Min => aggregator.min,
                AggrType::Max | AggrType::Counter => aggregator.max,
            };
            if failure.is_ok() {
                failure = builder.append_aggregate(aggregate, t, value);
            }
        });
        failure?;
    }
    let counters = batch
        .iter()
        .filter_map(|chunk| chunk.aggregates[AggrType::Counter.index()].as_deref());
    let (counter, last_raw) = apply_counter_resets(counters);
    if let (Some(&(first_t, first_v)), Some(last_raw)) = (counter.first(), last_raw) {
        builder.part(AggrType::Counter).append(first_t, first_v)?;
        let mut failure = Ok(());
        let last_window = aggregate_windows(&counter, resolution, |t, aggregator| {
            if failure.is_ok() {
                failure = builder.append_aggregate(AggrType::Counter, t, aggregator.counter);
            }
        });
        failure?;
        if let Some(last_window) = last_window {
            builder
                .part(AggrType::Counter)
                .append(last_window, last_raw)?;
        }
    }
    Ok(builder.finish())
}

/// Sorts by time and keeps the first sample of each timestamp; a no-op on sorted input.
pub(crate) fn sort_dedup(samples: &mut Vec<(i64, f64)>) {
    if samples.windows(2).all(|pair| pair[0].0 < pair[1].0) {
        return;
    }
    samples.sort_by_key(|(t, _)| *t);
    samples.dedup_by_key(|(t, _)| *t);
}

/// Thanos' `ApplyCounterResetsSeriesIterator`, expanded: the counter chunks of one series in
/// order to one increasing counter, plus the true last raw value. A chunk's first sample is
/// its first raw value, compared with the previous chunk's last raw value to find a reset
/// between them; a sample repeating the previous timestamp is the true last raw value, not a
/// sample. Samples going back in time and NaNs are skipped.
pub(crate) fn apply_counter_resets<'a>(
    chunks: impl IntoIterator<Item = &'a [(i64, f64)]>,
) -> (Vec<(i64, f64)>, Option<f64>) {
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut last: Option<(i64, f64)> = None;
    let mut total = 0.0;
    for chunk in chunks {
        for &(t, v) in chunk {
            if v.is_nan() {
                continue;
            }
            match last {
                None => {
                    total = v;
                    last = Some((t, v));
                    out.push((t, total));
                }
                Some((last_t, last_v)) if t > last_t => {
                    total += if v >= last_v { v - last_v } else { v };
                    last = Some((t, v));
                    out.push((t, total));
                }
                Some((last_t, _)) if t == last_t => last = Some((t, v)),
                Some(_) => {}
            }
        }
    }
    (out, last.map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_one_millisecond_before_the_next_multiple() {
        assert_eq!(window_end(0, 300_000), 299_999);
        assert_eq!(window_end(299_999, 300_000), 299_999);
        assert_eq!(window_end(300_000, 300_000), 599_999);
        assert_eq!(window_end(3_600_001, 3_600_000), 7_199_999);
    }

    #[test]
    fn chunk_counts_follow_thanos_sizing() {
        // 48h at 15s: 575 possible 5m windows, fully covered: 576 expected aggregates, so 5
        // chunks (576/4 = 144 is still above 140).
        assert_eq!(
            target_chunk_count(0, 11_519 * 15_000, 60_000, 300_000, 11_520),
            5
        );
        // One sample, zero span.
        assert_eq!(target_chunk_count(7, 7, 60_000, 300_000, 1), 1);
        // 141 windows fully covered: 2 chunks; 140: 1.
        assert_eq!(
            target_chunk_count(0, 140 * 300_000, 60_000, 300_000, 10_000),
            2
        );
        assert_eq!(
            target_chunk_count(0, 139 * 300_000, 60_000, 300_000, 10_000),
            1
        );
        // Half-filled range: 280 windows at fullness 0.5 -> 141 expected -> 2 chunks.
        assert_eq!(
            target_chunk_count(0, 280 * 300_000, 300_000, 300_000, 140),
            2
        );
    }

    fn decoded(chunks: Vec<OutputChunk>) -> Vec<InputChunk> {
        chunks
            .into_iter()
            .map(|chunk| {
                let parts = tsdb_block::chunkenc::AggrChunk::new(&chunk.data)
                    .parts()
                    .unwrap();
                InputChunk {
                    min_time: chunk.min_time,
                    max_time: chunk.max_time,
                    aggregates: parts.map(|part| {
                        part.map(|part| tsdb_block::chunkenc::decode_xor(part.data).unwrap())
                    }),
                }
            })
            .collect()
    }

    #[test]
    fn overlapping_aggregate_chunks_are_grouped_and_never_overlap_in_the_output() {
        const HOUR: i64 = 3_600_000;
        let first: Vec<(i64, f64)> = (0..1_200).map(|i| (i * 300_000, i as f64)).collect();
        let second: Vec<(i64, f64)> = (600..2_400)
            .map(|i| (i * 300_000 + 60_000, i as f64))
            .collect();
        let mut input = decoded(downsample_raw(&first, 300_000).unwrap());
        input.extend(decoded(downsample_raw(&second, 300_000).unwrap()));
        input.sort_by_key(|chunk| chunk.min_time);
        assert!(
            input
                .windows(2)
                .any(|pair| pair[0].max_time >= pair[1].min_time)
        );
        let output = decoded(downsample_aggregates(&input, 300_000, HOUR).unwrap());
        assert!(output.len() >= 2, "{} chunks", output.len());
        for pair in output.windows(2) {
            assert!(pair[0].max_time < pair[1].min_time, "output chunks overlap");
        }
        let mut counted = 0.0;
        for chunk in &output {
            // The counter part repeats its last timestamp by design; the others never do.
            for part in chunk.aggregates[..AggrType::Counter.index()]
                .iter()
                .flatten()
            {
                assert!(part.windows(2).all(|pair| pair[0].0 < pair[1].0));
            }
            let count = chunk.aggregates[AggrType::Count.index()].as_ref().unwrap();
            counted += count.iter().map(|(_, v)| v).sum::<f64>();
        }
        // Every raw sample is counted, overlapped ones once: the 5m windows of both inputs
        // coincide where they overlap, so the first's are kept there. Only a chunk's last
        // window, whose timestamp is clamped to its last sample, can differ from the other
        // input's and be counted twice: at most once per input chunk.
        let overlap = (600..1_200).count() as f64;
        let expected = (first.len() + second.len()) as f64 - overlap;
        assert!(
            counted >= expected && counted <= expected + input.len() as f64,
            "{counted} counted, {expected} expected"
        );
    }

    #[test]
    fn counter_resets_are_applied_across_chunks() {
        // Chunk 1: raw first 10, aggregates, true last 2 (a reset inside); chunk 2 starts at 1,
        // below 2: a reset between chunks.
        let first = [(0, 10.0), (5, 15.0), (9, 17.0), (9, 2.0)];
        let second = [(12, 1.0), (15, 4.0), (15, 4.0)];
        let (counter, last) = apply_counter_resets([&first[..], &second[..]]);
        assert_eq!(
            counter,
            vec![(0, 10.0), (5, 15.0), (9, 17.0), (12, 18.0), (15, 21.0)]
        );
        assert_eq!(last, Some(4.0));
    }
}
