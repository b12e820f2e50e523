//! Replica de-duplication: Thanos' penalty algorithm (compatibility sheet §6.2), own code.
//!
//! Series that differ only in replica labels arrive as one merged series whose chunks come from
//! several replicas. The chunks are first split into non-overlapping *lanes* (pseudo-replicas),
//! each lane is decoded to samples, and the lanes are folded pairwise with
//! [`prom_model::dedup::penalty_merge`] (the sample-level algorithm, shared with the compactor):
//! the output follows one replica and switches to another only when the followed one has a gap
//! larger than twice the last observed sample interval (5s before any interval is known), so a
//! gap in one replica is filled by another without doubling the sampling rate.
//!
//! Known limitation: lanes are rebuilt from chunk timing because the replica labels are removed
//! before the proxy merge. When two replicas scrape less than about 200 ms apart and both cut a
//! chunk at the same moment, their chunks cannot be told apart, so a lane may switch replicas
//! without the counter adjustment (a counter can then step down; seen in 4 of 300 random cases
//! with a replica lagging by 5). The fix is to keep the replica identity through the merge, as
//! Thanos does by sorting replica labels last and merging replicas pairwise.

use prom_model::Sample;
use prom_model::dedup::{chain_merge, penalty_merge};
use storeapi::proto::thanos;

use crate::series::decode_chunks;

/// Where a chunk lies in time, for [`split_lanes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    /// The chunk's first timestamp.
    pub min_time: i64,
    /// The chunk's last timestamp.
    pub max_time: i64,
    /// The chunk's mean sample interval, when it has two samples.
    pub interval: Option<i64>,
}

impl Span {
    fn of(chunk: &thanos::AggrChunk, samples: &[Sample]) -> Self {
        let interval = match samples {
            [first, .., last] if last.t > first.t => {
                let steps = i64::try_from(samples.len() - 1).unwrap_or(i64::MAX);
                Some((last.t - first.t) / steps).filter(|interval| *interval > 0)
            }
            _ => None,
        };
        Span {
            min_time: chunk.min_time,
            max_time: chunk.max_time,
            interval,
        }
    }
}

/// Splits chunks (as spans, sorted by `min_time`) into lanes of non-overlapping chunks and
/// returns each lane's chunk indices.
///
/// Replica labels are gone by now, so a lane stands in for a replica and should hold one
/// replica's chunks only. Chunks are first linked into chains: a chunk continues the chunk that
/// ended one interval (its own mean one, within half an interval) before it starts, closest
/// pairs first, so each chain is one replica's uninterrupted run. Chains (a replica that came up
/// or restarted starts a new one) then go, by start, into the free lane idle longest, normally
/// the lane their replica had before its outage. First fit on single chunks instead put a
/// replica's next chunk behind another replica that had just stopped: the lane the replica left
/// then looked exhausted and the penalty earned by the switch hid its following samples (a 10s+
/// hole although it scraped every 2s), and the replica change inside a lane was neither
/// penalised nor counter-adjusted.
pub(crate) fn split_lanes(spans: &[Span]) -> Vec<Vec<usize>> {
    // Candidate links (distance, from, to), found by binary search over chunk ends.
    let mut by_end: Vec<(i64, usize)> = spans
        .iter()
        .enumerate()
        .map(|(index, span)| (span.max_time, index))
        .collect();
    by_end.sort_unstable();
    let mut links: Vec<(u64, usize, usize)> = Vec::new();
    for (to, span) in spans.iter().enumerate() {
        let Some(interval) = span.interval else {
            continue;
        };
        let expected = span.min_time.saturating_sub(interval);
        let slack = interval / 2;
        let low = by_end.partition_point(|(end, _)| *end < expected.saturating_sub(slack));
        for (end, from) in by_end.iter().skip(low) {
            if *end > expected.saturating_add(slack) || *end >= span.min_time {
                break;
            }
            links.push((end.abs_diff(expected), *from, to));
        }
    }
    links.sort_unstable();
    let mut next: Vec<Option<usize>> = vec![None; spans.len()];
    let mut has_previous = vec![false; spans.len()];
    for (_, from, to) in links {
        if next[from].is_none() && !has_previous[to] {
            next[from] = Some(to);
            has_previous[to] = true;
        }
    }
    // Chains by start (heads come in `min_time` order), each into the lane idle longest.
    let mut lanes: Vec<(i64, Vec<usize>)> = Vec::new();
    for head in (0..spans.len()).filter(|index| !has_previous[*index]) {
        let mut chain = vec![head];
        while let Some(following) = chain.last().and_then(|last| next[*last]) {
            chain.push(following);
        }
        let start = spans[head].min_time;
        let end = chain.last().map_or(start, |last| spans[*last].max_time);
        let idle = lanes
            .iter_mut()
            .filter(|(lane_end, _)| *lane_end < start)
            .min_by_key(|(lane_end, _)| *lane_end);
        match idle {
            Some((lane_end, lane)) => {
                *lane_end = end;
                lane.extend(chain);
            }
            None => lanes.push((end, chain)),
        }
    }
    lanes.into_iter().map(|(_, lane)| lane).collect()
}

/// Decodes a series' chunks to samples in `[min_time, max_time]`: with `dedup` overlapping
/// replicas are merged by penalty, otherwise samples are merged by timestamp (first wins).
pub(crate) fn series_samples(
    chunks: &[thanos::AggrChunk],
    min_time: i64,
    max_time: i64,
    dedup: bool,
    aggregate: crate::downsample::Aggregate,
) -> Result<Vec<Sample>, String> {
    let counter = aggregate == crate::downsample::Aggregate::Counter;
    let decoded = decode_chunks(chunks, aggregate)?;
    let in_range = |sample: &&Sample| sample.t >= min_time && sample.t <= max_time;
    // One chunk, or chunks one after the other without merging replicas: the lanes would be
    // one lane (or lanes that never share a timestamp, merged back into time order), so the
    // answer is the chunks' samples in order.
    let disjoint = chunks
        .windows(2)
        .all(|pair| pair[0].max_time < pair[1].min_time);
    if chunks.len() == 1 || (!dedup && disjoint) {
        let kept = decoded.iter().flatten().filter(in_range).count();
        let mut samples = Vec::with_capacity(kept);
        samples.extend(decoded.iter().flatten().filter(in_range).copied());
        return Ok(samples);
    }
    Ok(merge_lanes(
        chunks, &decoded, min_time, max_time, dedup, counter,
    ))
}

/// The samples in `[min_time, max_time]` of decoded chunks split into lanes
/// ([`split_lanes`]), merged by penalty (`dedup`) or by timestamp.
fn merge_lanes(
    chunks: &[thanos::AggrChunk],
    decoded: &[Vec<Sample>],
    min_time: i64,
    max_time: i64,
    dedup: bool,
    counter: bool,
) -> Vec<Sample> {
    let in_range = |sample: &&Sample| sample.t >= min_time && sample.t <= max_time;
    let spans: Vec<Span> = chunks
        .iter()
        .zip(decoded)
        .map(|(chunk, samples)| Span::of(chunk, samples))
        .collect();
    let mut merged: Option<Vec<Sample>> = None;
    for lane in split_lanes(&spans) {
        let samples: Vec<Sample> = lane
            .iter()
            .filter_map(|index| decoded.get(*index))
            .flatten()
            .filter(in_range)
            .copied()
            .collect();
        merged = Some(match merged {
            None => samples,
            Some(previous) if dedup => penalty_merge(&previous, &samples, counter),
            Some(previous) => chain_merge(&previous, &samples),
        });
    }
    merged.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks one after the other, without de-duplication, come out as the lanes' merge
    /// would give them: as one chunk, with gaps, with single-sample chunks, cut by the range.
    #[test]
    fn disjoint_chunks_skip_the_lanes_with_the_same_answer() {
        use storeapi::chunk::xor_chunk;

        let chunk = |times: &[i64]| {
            let samples: Vec<Sample> = times
                .iter()
                .map(|t| Sample::new(*t, *t as f64 / 7.0))
                .collect();
            thanos::AggrChunk {
                min_time: times[0],
                max_time: times[times.len() - 1],
                raw: Some(xor_chunk(&samples)),
                ..Default::default()
            }
        };
        let every = |from: i64, to: i64, step: usize| (from..=to).step_by(step).collect::<Vec<_>>();
        let layouts = [
            vec![chunk(&every(0, 300, 15))],
            vec![chunk(&every(0, 300, 15)), chunk(&every(315, 600, 15))],
            vec![
                chunk(&every(0, 300, 15)),
                chunk(&[320]),
                chunk(&every(330, 600, 15)),
                chunk(&every(2_000, 2_300, 30)),
            ],
            vec![
                chunk(&[5]),
                chunk(&[10]),
                chunk(&[12]),
                chunk(&every(13, 100, 1)),
            ],
        ];
        let aggregate = crate::downsample::Aggregate::Average;
        for chunks in layouts {
            let decoded = decode_chunks(&chunks, aggregate).unwrap();
            for (min_time, max_time) in [(0, i64::MAX), (10, 320), (301, 2_100), (700, 1_000)] {
                let fast = series_samples(&chunks, min_time, max_time, false, aggregate).unwrap();
                let lanes = merge_lanes(&chunks, &decoded, min_time, max_time, false, false);
                assert_eq!(fast, lanes, "{min_time}..={max_time}");
            }
        }
    }

    #[test]
    fn lanes_split_overlaps() {
        let span = |min_time, max_time| Span {
            min_time,
            max_time,
            interval: None,
        };
        let spans = [span(0, 10), span(5, 15), span(11, 20), span(16, 30)];
        assert_eq!(split_lanes(&spans), vec![vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn lanes_follow_the_interval() {
        let span = |min_time, max_time, interval| Span {
            min_time,
            max_time,
            interval,
        };
        // Chunk 2 starts at 20 with interval 4, so its replica's previous sample was at 16: it
        // continues chunk 1 (ended 16), not chunk 0 (ended 18, the later end). Chunk 3 follows
        // no chunk's end by one interval (a restart) and takes the free lane, chunk 0's.
        let spans = [
            span(0, 18, Some(2)),
            span(1, 16, Some(4)),
            span(20, 40, Some(4)),
            span(30, 50, Some(2)),
        ];
        assert_eq!(split_lanes(&spans), vec![vec![0, 3], vec![1, 2]]);
        // A restart with two lanes free takes the one idle longest.
        let spans = [
            span(0, 10, Some(2)),
            span(1, 30, Some(2)),
            span(32, 50, Some(2)),
            span(60, 80, Some(2)),
        ];
        assert_eq!(split_lanes(&spans), vec![vec![0, 3], vec![1, 2]]);
    }
}

#[cfg(test)]
mod replica_properties {
    //! Property tests: replicas with outages, restarts, jitter and varied chunking, merged into
    //! one series (as the proxy does once replica labels are gone) and de-duplicated.

    use super::*;
    use crate::downsample::Aggregate;

    const INTERVAL: i64 = 2_000;
    const END: i64 = 1_200_000;

    /// xorshift64: deterministic pseudo-random numbers without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn range(&mut self, low: i64, high: i64) -> i64 {
            low + (self.next() % ((high - low) as u64 + 1)) as i64
        }
    }

    /// A replica's samples (value = `id`, so the source of an output sample is known) and its
    /// chunks: `per_chunk` samples each, a new chunk after every outage (a restart).
    fn replica(
        rng: &mut Rng,
        id: f64,
        outages: &[(i64, i64)],
        per_chunk: usize,
    ) -> (Vec<Sample>, Vec<thanos::AggrChunk>) {
        let phase = rng.range(INTERVAL, 2 * INTERVAL - 1);
        let (mut all, mut run, mut chunks) = (Vec::new(), Vec::new(), Vec::new());
        let mut t = phase;
        while t < END {
            let at = t + rng.range(-INTERVAL / 20, INTERVAL / 20);
            if outages.iter().any(|(from, to)| (*from..*to).contains(&at)) {
                chunks.extend(storeapi::chunk::raw_chunks(&run, per_chunk));
                run.clear();
            } else if all.last().is_none_or(|last: &Sample| last.t < at) {
                run.push(Sample::new(at, id));
                all.push(Sample::new(at, id));
            }
            t += INTERVAL;
        }
        chunks.extend(storeapi::chunk::raw_chunks(&run, per_chunk));
        (all, chunks)
    }

    /// Gaps `(t1, t2)` of `out` longer than `limit` where the union of all replicas had data
    /// at least every `2.3 * INTERVAL / 2` — i.e. a replica could have filled them.
    fn covered_gaps(out: &[Sample], union: &[Sample], limit: i64) -> Vec<(i64, i64)> {
        out.windows(2)
            .map(|pair| (pair[0].t, pair[1].t))
            .filter(|(t1, t2)| t2 - t1 > limit)
            .filter(|(t1, t2)| {
                let inside: Vec<i64> = union
                    .iter()
                    .map(|sample| sample.t)
                    .filter(|t| (*t1..=*t2).contains(t))
                    .collect();
                inside
                    .windows(2)
                    .all(|pair| pair[1] - pair[0] <= INTERVAL * 23 / 20)
            })
            .collect()
    }

    struct Case {
        union: Vec<Sample>,
        chunks: Vec<thanos::AggrChunk>,
        /// Thanos' per-replica answer: each replica's own samples folded pairwise.
        reference: Vec<Sample>,
    }

    /// `replicas` replicas, each down 0..=2 times for 1s..2m; outages of different replicas
    /// are at least 2m apart, so some replica always has data.
    fn case(rng: &mut Rng, replicas: usize) -> Case {
        let mut slots: Vec<i64> = Vec::new();
        let (mut union, mut chunks) = (Vec::new(), Vec::new());
        let mut reference: Option<Vec<Sample>> = None;
        for id in 0..replicas {
            let mut outages = Vec::new();
            for _ in 0..rng.range(0, 2) {
                let from = rng.range(0, END / 240_000 - 1) * 240_000 + rng.range(0, 100_000);
                let slot = from / 240_000;
                if slots.contains(&slot) {
                    continue;
                }
                slots.push(slot);
                outages.push((from, from + rng.range(1_000, 120_000)));
            }
            let per_chunk = rng.range(20, 130) as usize;
            let (samples, replica_chunks) = replica(rng, id as f64, &outages, per_chunk);
            union.extend(samples.iter().copied());
            chunks.extend(replica_chunks);
            reference = Some(match reference {
                None => samples,
                Some(previous) => penalty_merge(&previous, &samples, false),
            });
        }
        union.sort_by_key(|sample| sample.t);
        storeapi::merge::sort_chunks(&mut chunks);
        Case {
            union,
            chunks,
            reference: reference.unwrap_or_default(),
        }
    }

    fn deduplicated(chunks: &[thanos::AggrChunk]) -> Vec<Sample> {
        series_samples(chunks, 0, END, true, Aggregate::Sum).unwrap()
    }

    /// The longest gap a switch may cost: the other replica's penalty window (twice the last
    /// interval) plus up to one of its intervals, with jitter.
    const SWITCH_GAP: i64 = 3 * INTERVAL + INTERVAL / 2;

    fn check_case(case: &Case, seed: u64) {
        let out = deduplicated(&case.chunks);
        assert!(
            out.windows(2).all(|pair| pair[0].t < pair[1].t),
            "seed {seed}: not strictly increasing"
        );
        // Every sample is one of the replicas' own samples.
        assert!(
            out.iter()
                .all(|sample| case.union.binary_search_by_key(&sample.t, |s| s.t).is_ok()),
            "seed {seed}: invented sample"
        );
        assert_eq!(
            out.first().map(|sample| sample.t),
            case.union.first().map(|sample| sample.t),
            "seed {seed}: start"
        );
        let gaps = covered_gaps(&out, &case.union, SWITCH_GAP);
        assert!(
            gaps.is_empty(),
            "seed {seed}: gaps another replica could fill: {gaps:?}"
        );
        // Thanos on the same replicas keeps the same bound (the bound is not too tight).
        let reference_gaps = covered_gaps(&case.reference, &case.union, SWITCH_GAP);
        assert!(
            reference_gaps.is_empty(),
            "seed {seed}: reference {reference_gaps:?}"
        );
    }

    /// Consecutive samples of different replicas (values differ) closer than the other
    /// replica's penalty window allows, minus jitter.
    fn close_switches(out: &[Sample]) -> Vec<(Sample, Sample)> {
        out.windows(3)
            .filter(|window| window[2].v != window[1].v)
            .filter(|window| {
                let step = window[1].t - window[0].t;
                window[2].t - window[1].t < step.min(INTERVAL) - INTERVAL / 5
            })
            .map(|window| (window[1], window[2]))
            .collect()
    }

    #[test]
    fn two_replicas_with_outages_and_restarts() {
        for seed in 1..=600u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            check_case(&case(&mut rng, 2), seed);
        }
    }

    #[test]
    fn three_replicas_with_outages_and_restarts() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
            check_case(&case(&mut rng, 3), seed);
        }
    }

    /// Consecutive samples of different replicas are as far apart as Thanos' per-replica merge
    /// keeps them: a lane must not carry a replica change the penalty never sees.
    #[test]
    fn switches_keep_the_penalty_window() {
        for seed in 1..=600u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let case = case(&mut rng, 2);
            assert!(
                close_switches(&case.reference).is_empty(),
                "seed {seed}: reference"
            );
            let close = close_switches(&deduplicated(&case.chunks));
            assert!(close.is_empty(), "seed {seed}: {close:?}");
        }
    }

    /// The report's shape: replica a is killed after T, b's chunk ends a few seconds later and
    /// its next chunk follows; a restarts at T+x with a new chunk. b's samples must fill the
    /// hole (first-fit lanes put b's next chunk behind a's, and the penalty earned by the
    /// switch then skipped 10s of b).
    #[test]
    fn killed_replica_does_not_hide_the_other() {
        let a_before: Vec<Sample> = (0..=50)
            .map(|i| Sample::new(710_213 + i * 2_000, 0.0))
            .collect();
        let a_after: Vec<Sample> = (0..50)
            .map(|i| Sample::new(863_242 + i * 2_000, 0.0))
            .collect();
        let b: Vec<Sample> = (0..120)
            .map(|i| Sample::new(711_213 + i * 2_000, 1.0))
            .collect();
        let b_first = b.iter().take_while(|s| s.t <= 815_213).count();
        let mut chunks = storeapi::chunk::raw_chunks(&a_before, 120);
        chunks.extend(storeapi::chunk::raw_chunks(&a_after, 120));
        chunks.extend(storeapi::chunk::raw_chunks(&b[..b_first], 120));
        chunks.extend(storeapi::chunk::raw_chunks(&b[b_first..], 120));
        storeapi::merge::sort_chunks(&mut chunks);
        let out = series_samples(&chunks, 0, 2_000_000, true, Aggregate::Sum).unwrap();
        let gaps: Vec<(i64, i64)> = out
            .windows(2)
            .map(|pair| (pair[0].t, pair[1].t))
            .filter(|(t1, t2)| t2 - t1 > 6_000)
            .collect();
        assert!(gaps.is_empty(), "{gaps:?}");
        assert!(out.iter().any(|s| s.t == 819_213 && s.v == 1.0), "{out:?}");
        assert_eq!(
            out.last().map(|s| s.t),
            b.last().map(|s| s.t).max(a_after.last().map(|s| s.t))
        );
    }
}
