//! Planning of [`Bucket::get_ranges`](crate::Bucket::get_ranges): which requests to send so that
//! nearby ranges of one object are fetched together.

use std::ops::Range;

use bytes::Bytes;

/// The requests to send and where each requested range lies in their answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RangePlan {
    /// Byte ranges to request, sorted by start, non-overlapping.
    pub(crate) fetches: Vec<Range<u64>>,
    /// For each requested range, in request order: the fetch holding it (`None` for an empty
    /// range, which needs no request) and its offset within that fetch.
    pub(crate) parts: Vec<Option<(usize, u64)>>,
}

impl RangePlan {
    /// Each requested range's bytes, cut from `fetched` (the answers to [`Self::fetches`], in
    /// order; an answer may stop short at the object's end). A range starting past the end of
    /// its fetch's answer is an error: the range and the object size the answer shows.
    pub(crate) fn place(
        &self,
        ranges: &[Range<u64>],
        fetched: &[Bytes],
    ) -> Result<Vec<Bytes>, (Range<u64>, u64)> {
        let mut parts = Vec::with_capacity(ranges.len());
        for (range, placement) in ranges.iter().zip(&self.parts) {
            let Some((fetch_index, offset)) = *placement else {
                parts.push(Bytes::new());
                continue;
            };
            let (Some(data), Some(fetch)) =
                (fetched.get(fetch_index), self.fetches.get(fetch_index))
            else {
                return Err((range.clone(), 0));
            };
            let available = data.len() as u64;
            if offset >= available {
                return Err((range.clone(), fetch.start + available));
            }
            let end = (offset + (range.end - range.start)).min(available);
            // Offsets are within `data`, checked above, so they fit in usize.
            parts.push(data.slice(offset as usize..end as usize));
        }
        Ok(parts)
    }
}

/// Merges `ranges` whose gap is below `max_gap` bytes (touching and overlapping ranges always
/// merge) while a merged request stays within `max_merged_size` bytes.
pub(crate) fn plan(ranges: &[Range<u64>], max_gap: u64, max_merged_size: u64) -> RangePlan {
    let mut order: Vec<usize> = (0..ranges.len())
        .filter(|&index| ranges[index].start < ranges[index].end)
        .collect();
    order.sort_by_key(|&index| (ranges[index].start, ranges[index].end));

    let mut fetches: Vec<Range<u64>> = Vec::new();
    let mut parts = vec![None; ranges.len()];
    for index in order {
        let range = &ranges[index];
        let merged = match fetches.last_mut() {
            Some(current) => {
                let gap = range.start.saturating_sub(current.end);
                let overlaps_or_touches = range.start <= current.end;
                let merged_end = current.end.max(range.end);
                let fits = merged_end - current.start <= max_merged_size;
                if overlaps_or_touches || (gap < max_gap && fits) {
                    current.end = merged_end;
                    true
                } else {
                    false
                }
            }
            None => false,
        };
        if !merged {
            fetches.push(range.clone());
        }
        let fetch_index = fetches.len() - 1;
        parts[index] = Some((fetch_index, range.start - fetches[fetch_index].start));
    }
    RangePlan { fetches, parts }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn check(ranges: &[Range<u64>], max_gap: u64, expected_fetches: &[Range<u64>]) {
        let planned = plan(ranges, max_gap, 1 << 20);
        assert_eq!(
            planned.fetches, expected_fetches,
            "ranges {ranges:?} gap {max_gap}"
        );
        for (index, range) in ranges.iter().enumerate() {
            match planned.parts[index] {
                None => assert!(range.is_empty(), "range {range:?} has no fetch"),
                Some((fetch, offset)) => {
                    let holder = &planned.fetches[fetch];
                    assert_eq!(holder.start + offset, range.start);
                    assert!(range.end <= holder.end, "{range:?} not inside {holder:?}");
                }
            }
        }
    }

    #[test]
    fn nearby_ranges_merge_far_ones_do_not() {
        check(&[0..10, 20..30, 1000..1010], 64, &[0..30, 1000..1010]);
        check(&[1000..1010, 0..10, 20..30], 64, &[0..30, 1000..1010]);
        check(&[0..10, 20..30], 0, &[0..10, 20..30]);
        check(&[0..10, 10..30], 0, &[0..30]);
        check(&[0..100, 50..60, 90..200], 0, &[0..200]);
        check(&[5..5, 0..10], 64, &[0..10]);
        check(&[], 64, &[]);
    }

    #[test]
    fn merged_requests_stay_within_the_size_limit() {
        let planned = plan(&[0..600, 610..1200], 64, 1000);
        assert_eq!(planned.fetches, vec![0..600, 610..1200]);
        // A single range larger than the limit is still fetched whole.
        let planned = plan(&[0..5000], 64, 1000);
        assert_eq!(planned.fetches, vec![0..5000]);
    }
}
