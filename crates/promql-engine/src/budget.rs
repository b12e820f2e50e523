//! A memory budget shared by every query of a process (the querier's `--query.memory-budget`).
//!
//! `--query.max-samples` bounds one query; N heavy queries at once can still take N times that.
//! A [`MemoryBudget`] bounds them together: as a query loads series and holds samples, its
//! evaluator reserves an estimate of the bytes they take from the shared budget (points at 16
//! bytes, label sets at their string lengths plus fixed overheads, other held samples at
//! [`HELD_SAMPLE_BYTES`]), never giving back before the query ends, and returns all of it when
//! the query finishes, fails or is dropped. The first [`QUERY_ALLOWANCE`] bytes of each query are
//! its own, so that light queries keep answering while heavy ones hold the whole budget. A query whose next reservation does not fit fails with
//! [`Error::MemoryBudget`](crate::Error::MemoryBudget) (`execution`, 422) instead of growing the
//! process; the queries already running keep what they hold and finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prom_model::Labels;

use crate::error::{Error, Result};

/// Estimated bytes of a sample held outside selector data (an element of a step's vector, a
/// point of a result or a subquery cache entry), label clones included on average.
pub(crate) const HELD_SAMPLE_BYTES: usize = 64;

/// Bytes reserved at once, at least: fewer atomic operations for many small reservations.
const RESERVE_CHUNK: usize = 1 << 20;

/// What each query may hold before it draws on the shared budget: small queries keep answering
/// while heavy ones have taken the whole budget. With at most N queries running at once
/// (`--query.max-concurrent`) the queries hold at most the budget plus N times this.
pub const QUERY_ALLOWANCE: usize = 2 << 20;

/// A budget of bytes shared by concurrent queries.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The budget's size in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved by running queries now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// One query's share of a budget (of the evaluator's, or of a caller's for data it holds for
/// the query, such as store answers); returned when dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    budget: Option<Arc<MemoryBudget>>,
    /// Bytes the query is estimated to hold.
    needed: usize,
    /// Bytes taken from the budget (`needed` rounded up to the next chunk).
    taken: usize,
}

impl Reservation {
    /// A reservation from `budget` (none: nothing is counted).
    pub fn new(budget: Option<Arc<MemoryBudget>>) -> Self {
        Self {
            budget,
            needed: 0,
            taken: 0,
        }
    }

    /// Accounts for `bytes` more held by the query; fails with
    /// [`Error::MemoryBudget`](crate::Error::MemoryBudget) when the budget has no room for them.
    pub fn grow(&mut self, bytes: usize) -> Result<()> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        self.needed = self.needed.saturating_add(bytes);
        let charged = self.needed.saturating_sub(QUERY_ALLOWANCE);
        if charged <= self.taken {
            return Ok(());
        }
        let shortfall = charged - self.taken;
        let wanted = shortfall.max(RESERVE_CHUNK);
        if budget.try_reserve(wanted) {
            self.taken += wanted;
            return Ok(());
        }
        if wanted > shortfall && budget.try_reserve(shortfall) {
            self.taken += shortfall;
            return Ok(());
        }
        Err(Error::MemoryBudget {
            limit: budget.limit(),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.taken);
        }
    }
}

/// Estimated heap bytes of a label set.
pub(crate) fn labels_bytes(labels: &Labels) -> usize {
    labels
        .iter()
        .map(|label| 48 + label.name.len() + label.value.len())
        .sum::<usize>()
        + 24
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_return_it_when_dropped() {
        let budget = Arc::new(MemoryBudget::new(2 * RESERVE_CHUNK + RESERVE_CHUNK / 2));
        let mut first = Reservation::new(Some(Arc::clone(&budget)));
        // Within the query's own allowance: nothing drawn.
        first.grow(QUERY_ALLOWANCE).expect("fits");
        assert_eq!(budget.used(), 0);
        first.grow(100).expect("fits");
        assert_eq!(budget.used(), RESERVE_CHUNK);
        first.grow(RESERVE_CHUNK).expect("fits");
        assert_eq!(budget.used(), 2 * RESERVE_CHUNK);
        let mut second = Reservation::new(Some(Arc::clone(&budget)));
        // Less than a chunk is left: the exact shortfall is taken.
        second.grow(QUERY_ALLOWANCE + 10).expect("fits");
        assert_eq!(budget.used(), 2 * RESERVE_CHUNK + 10);
        let error = second.grow(RESERVE_CHUNK).expect_err("over the budget");
        assert!(matches!(error, Error::MemoryBudget { .. }), "{error}");
        drop(first);
        assert_eq!(budget.used(), 10);
        drop(second);
        assert_eq!(budget.used(), 0);
        // A small query still fits in its allowance when the budget is taken.
        let mut hog = Reservation::new(Some(Arc::clone(&budget)));
        hog.grow(QUERY_ALLOWANCE + budget.limit())
            .expect("takes it all");
        let mut small = Reservation::new(Some(Arc::clone(&budget)));
        small.grow(64 << 10).expect("within the allowance");
        assert!(small.grow(QUERY_ALLOWANCE).is_err());
        // No budget: nothing is counted.
        let mut free = Reservation::new(None);
        free.grow(usize::MAX).expect("unbounded");
    }
}
