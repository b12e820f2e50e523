//! Series-parallel work: independent per-series computations split over the machine's cores.
//!
//! A node whose work is a pure function of each input series (a range function over its windows,
//! an instant selector's lookback) hands it to [`chunked`], which cuts the series into one
//! contiguous chunk per thread and returns the results in series order, so the output (and the
//! order of annotations made from it afterwards) is the same as a sequential run's.

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use crate::engine::EvalSettings;
use crate::error::Result;

/// Below this much work (series times steps) a node runs on the calling thread.
pub(super) const MIN_PARALLEL_WORK: usize = 200_000;

/// How often (in series) a worker checks for cancellation and the deadline.
const INTERRUPT_EVERY: usize = 256;

/// Threads a node may use: the cores available to the process (cgroup limits included), at
/// most 8.
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, NonZeroUsize::get)
            .clamp(1, 8)
    })
}

/// Runs `each(state, index)` for every index in `0..count`, in parallel when `work` (an
/// estimate of the total cost, e.g. series × steps) is large enough.
///
/// Every thread starts its own state with `init`; the results come back in index order, with
/// the states of all threads (in chunk order) for the caller to merge.
pub(crate) fn chunked<S, T>(
    settings: &EvalSettings,
    count: usize,
    work: usize,
    init: impl Fn() -> S + Sync,
    each: impl Fn(&mut S, usize) -> T + Sync,
) -> Result<(Vec<T>, Vec<S>)>
where
    S: Send,
    T: Send,
{
    let threads = threads().min(count.max(1));
    let run = |range: std::ops::Range<usize>| -> Result<(Vec<T>, S)> {
        let mut state = init();
        let mut out = Vec::with_capacity(range.len());
        for (done, index) in range.enumerate() {
            if done % INTERRUPT_EVERY == 0 {
                settings.check_interrupt("query execution")?;
            }
            out.push(each(&mut state, index));
        }
        Ok((out, state))
    };
    if threads <= 1 || work < MIN_PARALLEL_WORK {
        let (out, state) = run(0..count)?;
        return Ok((out, vec![state]));
    }
    let per_thread = count.div_ceil(threads);
    let parts: Vec<Result<(Vec<T>, S)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|part| {
                let from = (part * per_thread).min(count);
                let to = ((part + 1) * per_thread).min(count);
                let run = &run;
                scope.spawn(move || run(from..to))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    let mut out = Vec::with_capacity(count);
    let mut states = Vec::with_capacity(parts.len());
    for part in parts {
        let (values, state) = part?;
        out.extend(values);
        states.push(state);
    }
    Ok((out, states))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EvalSettings {
        EvalSettings {
            lookback_delta: 300_000,
            max_samples: usize::MAX,
            deadline: None,
            cancel: None,
            default_subquery_step: 60_000,
            reservation: std::sync::Arc::new(crate::budget::Reservation::new(None)),
        }
    }

    #[test]
    fn results_keep_index_order_and_states_cover_every_index() {
        for (count, work) in [(0, 0), (5, 10), (1000, usize::MAX), (7, usize::MAX)] {
            let (out, states) = chunked(
                &settings(),
                count,
                work,
                || 0usize,
                |seen, index| {
                    *seen += 1;
                    index * 2
                },
            )
            .unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(out, (0..count).map(|i| i * 2).collect::<Vec<_>>());
            assert_eq!(states.iter().sum::<usize>(), count);
        }
    }

    #[test]
    fn a_cancelled_query_stops() {
        let mut settings = settings();
        settings.cancel = Some(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
            true,
        )));
        let result = chunked(&settings, 10_000, usize::MAX, || (), |_, index| index);
        assert!(result.is_err());
    }
}
