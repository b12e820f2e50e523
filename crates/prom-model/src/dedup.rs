//! Replica de-duplication of sample lists: Thanos' penalty algorithm (compatibility sheet §6.2)
//! and the one-to-one chain merge, shared by the querier (query-time de-duplication) and the
//! compactor (vertical compaction and offline de-duplication). Own code.
//!
//! Both take replicas as time-ordered sample slices and return one time-ordered list with
//! strictly increasing timestamps.

use crate::Sample;

/// Penalty applied to the other replica before any sample interval is known (ms).
pub const INITIAL_PENALTY: i64 = 5000;

/// Merges two sample lists by timestamp; on equal timestamps the sample of `left` is kept.
/// This is the one-to-one merge (Prometheus' chained series merge with a fixed winner).
pub fn chain_merge(left: &[Sample], right: &[Sample]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() || j < right.len() {
        match (left.get(i), right.get(j)) {
            (Some(a), Some(b)) if a.t < b.t => {
                out.push(*a);
                i += 1;
            }
            (Some(a), Some(b)) if a.t == b.t => {
                out.push(*a);
                i += 1;
                j += 1;
            }
            (_, Some(b)) => {
                out.push(*b);
                j += 1;
            }
            (Some(a), None) => {
                out.push(*a);
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Index of the first sample at or after `t`, never before `from` (iterators only move forward).
fn seek(samples: &[Sample], from: usize, t: i64) -> usize {
    from + samples[from..].partition_point(|sample| sample.t < t)
}

/// Merges replicas `a` and `b` with Thanos' penalty rule: the output follows one replica and
/// switches to the other only when the followed one has a gap larger than twice the last
/// observed sample interval ([`INITIAL_PENALTY`] before any interval is known), so a gap in one
/// replica is filled by the other without doubling the sampling rate. On equal timestamps `a`
/// wins. More replicas fold pairwise, left to right.
///
/// With `counter`, a switch to a replica whose value is below the last emitted one adds the
/// difference to that replica's values from then on, so the switch is not a fake counter reset
/// (the querier does this for `rate`, `increase`, `irate` and `resets`; Thanos' compactor never
/// does: stored values are not adjusted).
pub fn penalty_merge(a: &[Sample], b: &[Sample], counter: bool) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::with_capacity(a.len().max(b.len()));
    let (mut ia, mut ib) = (0usize, 0usize);
    let (mut pen_a, mut pen_b) = (0i64, 0i64);
    let mut last_t: Option<i64> = None;
    let mut last_from_a: Option<bool> = None;
    let (mut offset_a, mut offset_b) = (0.0f64, 0.0f64);
    loop {
        let next_from = |penalty: i64| match last_t {
            Some(t) => t.saturating_add(1).saturating_add(penalty),
            None => i64::MIN,
        };
        ia = seek(a, ia, next_from(pen_a));
        ib = seek(b, ib, next_from(pen_b));
        let (sample_a, sample_b) = (a.get(ia), b.get(ib));
        let (picked, use_a) = match (sample_a, sample_b) {
            (None, None) => break,
            (None, Some(sb)) => {
                pen_b = 0;
                (*sb, false)
            }
            (Some(sa), None) => {
                pen_a = 0;
                (*sa, true)
            }
            (Some(sa), Some(sb)) => {
                let use_a = sa.t <= sb.t;
                let picked = if use_a { *sa } else { *sb };
                let penalty = match last_t {
                    Some(t) => picked.t.saturating_sub(t).saturating_mul(2),
                    None => INITIAL_PENALTY,
                };
                if use_a {
                    pen_b = penalty;
                    pen_a = 0;
                } else {
                    pen_a = penalty;
                    pen_b = 0;
                }
                (picked, use_a)
            }
        };
        let mut emitted = picked;
        if counter {
            let offset = if use_a { &mut offset_a } else { &mut offset_b };
            if let (Some(previous), Some(from_a)) = (out.last(), last_from_a)
                && from_a != use_a
                && picked.v + *offset < previous.v
            {
                *offset = previous.v - picked.v;
            }
            emitted.v = picked.v + *offset;
        }
        out.push(emitted);
        last_from_a = Some(use_a);
        last_t = Some(picked.t);
        if use_a {
            ia += 1;
        } else {
            ib += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(times: impl IntoIterator<Item = i64>, value: f64) -> Vec<Sample> {
        times.into_iter().map(|t| Sample::new(t, value)).collect()
    }

    fn check(a: &[Sample], b: &[Sample], expected_times: &[i64]) {
        let merged = penalty_merge(a, b, false);
        let times: Vec<i64> = merged.iter().map(|s| s.t).collect();
        assert_eq!(times, expected_times);
    }

    #[test]
    fn identical_replicas_are_not_doubled() {
        let a = samples((0..10).map(|i| i * 15_000), 1.0);
        let b = samples((0..10).map(|i| i * 15_000 + 1_000), 2.0);
        let merged = penalty_merge(&a, &b, false);
        assert_eq!(merged, a);
    }

    #[test]
    fn gap_in_one_replica_is_filled_by_the_other() {
        // a misses 60s..=120s; b is offset by 2s and complete.
        let a: Vec<Sample> = (0..20)
            .map(|i| i * 15_000)
            .filter(|t| !(60_000..=120_000).contains(t))
            .map(|t| Sample::new(t, 1.0))
            .collect();
        let b = samples((0..20).map(|i| i * 15_000 + 2_000), 2.0);
        let merged = penalty_merge(&a, &b, false);
        let gaps: Vec<i64> = merged.windows(2).map(|w| w[1].t - w[0].t).collect();
        // A switch costs at most one penalty window (twice the interval) plus the offset.
        assert!(
            gaps.iter().all(|gap| *gap >= 13_000 && *gap <= 32_000),
            "{gaps:?}"
        );
        for t in [92_000, 107_000, 122_000] {
            assert!(
                merged.iter().any(|s| s.t == t && s.v == 2.0),
                "{t} from b: {merged:?}"
            );
        }
        assert_eq!(merged.first().map(|s| s.t), Some(0));
        assert_eq!(merged.last().map(|s| s.t), Some(19 * 15_000 + 2_000));
    }

    #[test]
    fn exhausted_replica_hands_over() {
        // b's 20000 falls inside its penalty window after a's 10000; 40000 does not.
        check(
            &samples([0, 10_000], 1.0),
            &samples([5_000, 20_000, 40_000], 2.0),
            &[0, 10_000, 40_000],
        );
        check(&[], &samples([1, 2], 2.0), &[1, 2]);
    }

    #[test]
    fn counter_switch_is_not_a_reset() {
        // b lags a by 40 and takes over after a's gap; its values are lifted to continue a.
        let a = vec![Sample::new(0, 100.0), Sample::new(15_000, 110.0)];
        let b: Vec<Sample> = (0..6)
            .map(|i| Sample::new(i * 15_000 + 1_000, 70.0 + 10.0 * i as f64))
            .collect();
        let merged = penalty_merge(&a, &b, true);
        assert!(merged.windows(2).all(|w| w[1].v >= w[0].v), "{merged:?}");
        let plain = penalty_merge(&a, &b, false);
        assert!(plain.windows(2).any(|w| w[1].v < w[0].v), "{plain:?}");
    }

    #[test]
    fn chain_keeps_first_on_ties() {
        let merged = chain_merge(&samples([1, 3], 1.0), &samples([2, 3], 2.0));
        assert_eq!(
            merged,
            vec![
                Sample::new(1, 1.0),
                Sample::new(2, 2.0),
                Sample::new(3, 1.0)
            ]
        );
    }
}
