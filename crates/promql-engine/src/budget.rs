//! A memory budget shared by every query of a process (the querier's `--query.memory-budget`).
//!
//! `--query.max-samples` bounds one query; N heavy queries at once can still take N times that.
//! A [`MemoryBudget`] bounds them together: as a query loads series and holds samples, its
//! evaluator reserves an estimate of the bytes they take from the shared budget (points at 16
//! bytes, label sets at their string lengths plus fixed overheads, other held samples at
//! [`HELD_SAMPLE_BYTES`]), never giving back before the query ends, and returns all of it when
//! the query finishes, fails or is dropped. The first [`QUERY_ALLOWANCE`] bytes of each query are
//! its own, so that light queries keep answering while heavy ones hold the whole budget. A query
//! whose next reservation does not fit fails with
//! [`Error::MemoryBudget`](crate::Error::MemoryBudget) (`execution`, 422) instead of growing the
//! process, unless it is the oldest running query: that one may take up to the whole budget for
//! itself, so that some query always finishes (without it, sixteen heavy queries each took part
//! of the budget and all failed). The others then fail at their next reservation, so the
//! overdraft is brief; the queries hold at most twice the budget, plus the allowances.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prom_model::Labels;

use crate::error::{Error, Result};

/// Estimated bytes of a sample held outside selector data: a value slot of a batch row (16
/// bytes, `Option<f64>`) plus its share of the row's label set and allocation; a point of a
/// result or a buffered subquery point is the same size. (An evaluator cloning labels into
/// every element of every step, as the engine's earlier step-wise one did, needs 64.)
pub(crate) const HELD_SAMPLE_BYTES: usize = 24;

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
    /// Tickets of the live reservations, in the order their queries started.
    live: Mutex<BTreeSet<u64>>,
    next_ticket: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            live: Mutex::new(BTreeSet::new()),
            next_ticket: AtomicU64::new(0),
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

    fn force_reserve(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    fn release(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    fn admit(&self) -> u64 {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut live) = self.live.lock() {
            live.insert(ticket);
        }
        ticket
    }

    fn leave(&self, ticket: u64) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(&ticket);
        }
    }

    fn is_oldest(&self, ticket: u64) -> bool {
        self.live
            .lock()
            .is_ok_and(|live| live.first() == Some(&ticket))
    }
}

/// One query's share of a budget: the evaluator's, and a caller's for data it holds for the
/// same query (store answers); shared by reference, returned when the last reference is dropped.
///
/// A reservation that does not fit fails, except for the oldest running query, which may take up
/// to the whole budget for itself even while others hold the rest: the oldest query always makes
/// progress instead of every query holding part of the budget and all failing, and the others
/// fail at their next reservation (the budget is then over its limit) and give theirs back. A
/// query needing more than the whole budget fails even alone.
#[derive(Debug)]
pub struct Reservation {
    budget: Option<Arc<MemoryBudget>>,
    ticket: u64,
    /// (bytes the query is estimated to hold, bytes taken from the budget).
    held: Mutex<(usize, usize)>,
}

impl Reservation {
    /// A reservation from `budget` (none: nothing is counted), for a query starting now.
    pub fn new(budget: Option<Arc<MemoryBudget>>) -> Self {
        let ticket = budget.as_ref().map_or(0, |budget| budget.admit());
        Self {
            budget,
            ticket,
            held: Mutex::new((0, 0)),
        }
    }

    /// Accounts for `bytes` more held by the query; fails with
    /// [`Error::MemoryBudget`](crate::Error::MemoryBudget) when the budget has no room for them
    /// and the query is not the oldest running one.
    pub fn grow(&self, bytes: usize) -> Result<()> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let Ok(mut held) = self.held.lock() else {
            return Err(Error::exec("memory reservation poisoned"));
        };
        let (needed, taken) = &mut *held;
        *needed = needed.saturating_add(bytes);
        let charged = needed.saturating_sub(QUERY_ALLOWANCE);
        if charged <= *taken {
            return Ok(());
        }
        let shortfall = charged - *taken;
        let wanted = shortfall.max(RESERVE_CHUNK);
        if budget.try_reserve(wanted) {
            *taken += wanted;
        } else if wanted > shortfall && budget.try_reserve(shortfall) {
            *taken += shortfall;
        } else if budget.is_oldest(self.ticket) && *taken + shortfall <= budget.limit() {
            budget.force_reserve(shortfall);
            *taken += shortfall;
        } else {
            *needed = needed.saturating_sub(bytes);
            return Err(Error::MemoryBudget {
                limit: budget.limit(),
            });
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            let taken = self.held.lock().map_or(0, |held| held.1);
            budget.release(taken);
            budget.leave(self.ticket);
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
        let first = Reservation::new(Some(Arc::clone(&budget)));
        let second = Reservation::new(Some(Arc::clone(&budget)));
        // Within the query's own allowance: nothing drawn.
        second.grow(QUERY_ALLOWANCE).expect("fits");
        assert_eq!(budget.used(), 0);
        second.grow(100).expect("fits");
        assert_eq!(budget.used(), RESERVE_CHUNK);
        second.grow(RESERVE_CHUNK).expect("fits");
        assert_eq!(budget.used(), 2 * RESERVE_CHUNK);
        let third = Reservation::new(Some(Arc::clone(&budget)));
        // Less than a chunk is left: the exact shortfall is taken.
        third.grow(QUERY_ALLOWANCE + 10).expect("fits");
        assert_eq!(budget.used(), 2 * RESERVE_CHUNK + 10);
        // No room, and not the oldest query: refused.
        let error = third.grow(RESERVE_CHUNK).expect_err("over the budget");
        assert!(matches!(error, Error::MemoryBudget { .. }), "{error}");
        assert!(second.grow(2 * RESERVE_CHUNK).is_err());
        // The oldest query may go over the budget, so it always finishes.
        first
            .grow(QUERY_ALLOWANCE + RESERVE_CHUNK)
            .expect("the oldest goes over");
        assert_eq!(budget.used(), 3 * RESERVE_CHUNK + 10);
        drop(first);
        assert_eq!(budget.used(), 2 * RESERVE_CHUNK + 10);
        // Now the second is the oldest.
        second.grow(RESERVE_CHUNK).expect("the oldest goes over");
        drop(second);
        drop(third);
        assert_eq!(budget.used(), 0);
        // A small query still fits in its allowance when the budget is taken.
        let hog = Reservation::new(Some(Arc::clone(&budget)));
        hog.grow(QUERY_ALLOWANCE + budget.limit())
            .expect("takes it all");
        let small = Reservation::new(Some(Arc::clone(&budget)));
        small.grow(64 << 10).expect("within the allowance");
        assert!(small.grow(QUERY_ALLOWANCE).is_err());
        // No budget: nothing is counted.
        let free = Reservation::new(None);
        free.grow(usize::MAX).expect("unbounded");
    }
}
