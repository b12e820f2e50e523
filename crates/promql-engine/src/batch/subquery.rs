//! Range functions over subqueries: `f(<expr>[range:step])` for every step of a grid.
//!
//! The inner expression is evaluated with [`super::eval`] over aligned inner grids (timestamps
//! at absolute multiples of the subquery step, as Prometheus places them),
//! its rows become the points of [`WindowSeries`], and the range function is applied to every
//! outer step's window `(end - range, end]` by [`selector::apply`](super::selector::apply),
//! where `end` is the step's time (or the `@` time) minus the offset.
//!
//! **Segments.** The inner timestamps needed by consecutive outer steps form runs (windows that
//! overlap or touch); gaps between runs (outer steps far apart relative to the range, such as
//! `[5m:1s]` at a 1h step) are never evaluated. A run is evaluated in segments of at most
//! [`segment_len`] inner steps: the larger of half a window and the number of outer steps,
//! within 1,024..=11,000. Inner points are kept in a buffer from the oldest window still to be
//! computed onwards; after each segment the outer steps whose windows it completed are
//! computed and the points no later window reaches are dropped. So each inner timestamp is
//! evaluated once, a segment's inner grid is never longer than a range query may be, and the
//! buffer holds at most a window and a segment.
//!
//! **Samples.** The buffered points are samples held (counted as [`super::eval`] returns them,
//! released as they are dropped); [`selector::apply`](super::selector::apply) counts the
//! largest window once more while it runs, as the window is held both in the buffer and in
//! the range vector the function reads. A fine-step subquery such as `count_over_time(x[8h:1ms])`
//! therefore stops with the sample limit's error once the buffer reaches the limit, and checks
//! the deadline at every segment.
//!
//! **Order and names.** Output rows are sorted by labels, the order in which a subquery's series
//! are listed at a step. Inner rows with the same labels are one series (their points in
//! time order); its `drop_name` in a window is whether any of the window's points had it, which
//! matters only for `last_over_time` and `first_over_time` (the other functions always drop the
//! name).

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};

use prom_model::Labels;

use super::selector::{RangeCall, WindowSeries, Windows, apply, scalar_args};
use super::{Batch, Grid, Row};
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::plan::{Function, Node, NodeKind, Subquery};
use crate::value::Point;

/// Fewest inner steps evaluated at once (unless the run is shorter).
const MIN_SEGMENT: usize = 1024;
/// Most inner steps evaluated at once: a range query's limit of points per series.
const MAX_SEGMENT: usize = 11_000;
/// How many series are handled between two interrupt checks.
const INTERRUPT_EVERY: usize = 256;

/// `f(<expr>[range:step])` for a range function `f`; `None` when `call` is something else.
pub(super) fn range_function(
    ev: &mut Evaluator<'_>,
    function: Function,
    args: &[Node],
    grid: Grid,
) -> Result<Option<Batch>> {
    let Some(arg) = function.range_arg().and_then(|index| args.get(index)) else {
        return Ok(None);
    };
    let NodeKind::Subquery(subquery) = &arg.kind else {
        return Ok(None);
    };
    let scalars = scalar_args(ev, function, args, grid)?;
    let plan = Plan::new(subquery, grid);
    let call = RangeCall {
        function,
        args,
        arg,
        from_selector: false,
    };
    let mut run = Run {
        plan: &plan,
        call: &call,
        scalars: &scalars,
        grid,
        buffer: BTreeMap::new(),
        held: 0,
        out: BTreeMap::new(),
        out_held: 0,
    };
    let outcome = run.all(ev, &subquery.expr);
    ev.release_samples(run.held + run.out_held);
    outcome?;
    let rows = run
        .out
        .into_iter()
        .map(|((labels, drop_name), values)| Row {
            labels,
            drop_name,
            values,
        })
        .collect();
    Ok(Some(Batch::Vector(rows)))
}

/// Where each outer step's window lies and which inner timestamps it covers.
#[derive(Debug)]
struct Plan {
    /// The subquery step (ms).
    step: i64,
    /// The subquery range (ms).
    range: i64,
    /// Each outer step's window end (inclusive).
    ends: Vec<i64>,
    /// Each window's first inner timestamp.
    firsts: Vec<i64>,
    /// Each window's last inner timestamp (before `firsts` when the window has none).
    lasts: Vec<i64>,
    /// Most inner steps evaluated at once.
    segment: usize,
}

impl Plan {
    fn new(subquery: &Subquery, grid: Grid) -> Self {
        let range = subquery.range_ms;
        let step = subquery.step_ms;
        let ends: Vec<i64> = grid
            .timestamps()
            .map(|ts| subquery.reference_time(ts))
            .collect();
        let firsts = ends
            .iter()
            .map(|&end| first_inner(end.saturating_sub(range), step))
            .collect();
        let lasts = ends
            .iter()
            .map(|&end| end.saturating_sub(end.rem_euclid(step)))
            .collect();
        let window_steps = usize::try_from(range / step).unwrap_or(usize::MAX);
        Self {
            step,
            range,
            ends,
            firsts,
            lasts,
            segment: segment_len(window_steps, grid.len),
        }
    }

    /// Whether outer step `index`'s window covers no inner timestamp.
    fn is_empty(&self, index: usize) -> bool {
        self.lasts[index] < self.firsts[index]
    }
}

/// A subquery's inner result over a segment as rows: a scalar becomes one row without labels.
pub(super) fn inner_rows(batch: Batch) -> Result<Vec<Row>> {
    match batch {
        Batch::Scalar(values) => Ok(vec![Row {
            labels: Labels::empty(),
            drop_name: false,
            values: values.into_iter().map(Some).collect(),
        }]),
        Batch::Vector(rows) => Ok(rows),
        other => Err(Error::exec(format!(
            "subquery is only allowed on instant vector, got {}",
            other.type_name()
        ))),
    }
}

/// The first inner timestamp after `window_start`: the first multiple of the subquery step
/// after it.
pub(super) fn first_inner(window_start: i64, step: i64) -> i64 {
    let first = step * (window_start / step);
    if first <= window_start {
        first.saturating_add(step)
    } else {
        first
    }
}

/// Most inner steps evaluated at once for windows of `window_steps` inner steps and `outer`
/// outer steps: half a window (so the buffer holds at most 1.5 windows) or, when larger, as
/// many as there are outer steps (a grid the size of the query's own), within
/// [`MIN_SEGMENT`]..=[`MAX_SEGMENT`].
fn segment_len(window_steps: usize, outer: usize) -> usize {
    (window_steps / 2)
        .max(outer)
        .clamp(MIN_SEGMENT, MAX_SEGMENT)
}

/// Buffered inner points of one label set, in time order.
#[derive(Debug, Default)]
struct Buffered {
    points: Vec<Point>,
    /// Whether each point's element was marked for name removal.
    drops: Vec<bool>,
}

impl Buffered {
    /// The indexes of the points in `(after, upto]`.
    fn span(&self, after: i64, upto: i64) -> std::ops::Range<usize> {
        let from = self.points.partition_point(|point| point.t <= after);
        let to = self.points.partition_point(|point| point.t <= upto);
        from..to.max(from)
    }
}

/// The state of one call's evaluation.
struct Run<'a> {
    plan: &'a Plan,
    call: &'a RangeCall<'a>,
    scalars: &'a [Vec<f64>],
    grid: Grid,
    /// Inner points by label set (sorted, as a subquery's series are).
    buffer: BTreeMap<Labels, Buffered>,
    /// Samples in `buffer`.
    held: usize,
    /// Output values by label set and name removal, one slot per outer step.
    out: BTreeMap<(Labels, bool), Vec<Option<f64>>>,
    /// Samples in `out`.
    out_held: usize,
}

impl Run<'_> {
    /// Computes every outer step, segment by segment.
    fn all(&mut self, ev: &mut Evaluator<'_>, inner: &Node) -> Result<()> {
        let plan = self.plan;
        let n = plan.ends.len();
        let mut evaluated: Option<i64> = None;
        let mut done = 0;
        while done < n {
            let mut ready = done;
            while ready < n
                && (plan.is_empty(ready) || evaluated.is_some_and(|e| plan.lasts[ready] <= e))
            {
                ready += 1;
            }
            if ready > done {
                self.emit(ev, done, ready)?;
                if let Some(&first) = plan.firsts.get(ready) {
                    self.forget_before(ev, first);
                }
                done = ready;
                continue;
            }
            let from = match evaluated {
                Some(last) if last.saturating_add(plan.step) >= plan.firsts[done] => {
                    last.saturating_add(plan.step)
                }
                _ => plan.firsts[done],
            };
            let to = self.segment_end(done, from);
            let len = usize::try_from((to - from) / plan.step)
                .unwrap_or(MAX_SEGMENT - 1)
                .saturating_add(1);
            let segment = Grid {
                start: from,
                step: if len > 1 { plan.step } else { 0 },
                len,
            };
            let batch = super::eval(ev, inner, segment)?;
            self.held += batch.samples();
            self.absorb(ev, batch, segment)?;
            evaluated = Some(segment.ts(len - 1));
        }
        Ok(())
    }

    /// The last inner timestamp of the segment starting at `from`: the end of the run of
    /// overlapping windows from outer step `done`, at most [`Plan::segment`] inner steps on.
    fn segment_end(&self, done: usize, from: i64) -> i64 {
        let plan = self.plan;
        let span = i64::try_from(plan.segment - 1).unwrap_or(i64::MAX);
        let limit = from.saturating_add(plan.step.saturating_mul(span));
        let mut end = plan.lasts[done];
        for index in done + 1..plan.ends.len() {
            if end >= limit {
                break;
            }
            if plan.is_empty(index) {
                continue;
            }
            if plan.firsts[index] > end.saturating_add(plan.step) {
                break;
            }
            end = end.max(plan.lasts[index]);
        }
        end.min(limit)
    }

    /// Adds a segment's inner result to the buffer.
    fn absorb(&mut self, ev: &mut Evaluator<'_>, batch: Batch, segment: Grid) -> Result<()> {
        let rows = inner_rows(batch)?;
        // Label sets met more than once in this segment (rows differing only in name removal)
        // get their new points sorted by time.
        let mut unsorted: Vec<Labels> = Vec::new();
        for (index, row) in rows.into_iter().enumerate() {
            if index % INTERRUPT_EVERY == 0 {
                ev.check_interrupt("query execution")?;
            }
            let repeated = self.buffer.get(&row.labels).is_some_and(|buffered| {
                buffered
                    .points
                    .last()
                    .is_some_and(|point| point.t >= segment.start)
            });
            if repeated && !unsorted.contains(&row.labels) {
                unsorted.push(row.labels.clone());
            }
            let buffered = self.buffer.entry(row.labels).or_default();
            for (step, value) in row.values.into_iter().enumerate() {
                if let Some(v) = value {
                    buffered.points.push(Point {
                        t: segment.ts(step),
                        v,
                    });
                    buffered.drops.push(row.drop_name);
                }
            }
        }
        for labels in unsorted {
            if let Some(buffered) = self.buffer.get_mut(&labels) {
                let from = buffered.points.partition_point(|p| p.t < segment.start);
                let mut tail: Vec<(Point, bool)> = buffered.points[from..]
                    .iter()
                    .copied()
                    .zip(buffered.drops[from..].iter().copied())
                    .collect();
                tail.sort_by_key(|(point, _)| point.t);
                for (offset, (point, drop)) in tail.into_iter().enumerate() {
                    buffered.points[from + offset] = point;
                    buffered.drops[from + offset] = drop;
                }
            }
        }
        Ok(())
    }

    /// Computes outer steps `done..ready`, whose windows are all in the buffer.
    fn emit(&mut self, ev: &mut Evaluator<'_>, done: usize, ready: usize) -> Result<()> {
        let plan = self.plan;
        let ends = &plan.ends[done..ready];
        let (after, upto) = (ends[0].saturating_sub(plan.range), ends[ends.len() - 1]);
        let keeps_name = self.call.function.keeps_name();
        let mut mixed: HashSet<Labels> = HashSet::new();
        let mut series = Vec::new();
        for (index, (labels, buffered)) in self.buffer.iter().enumerate() {
            if index % INTERRUPT_EVERY == 0 {
                ev.check_interrupt("query execution")?;
            }
            let span = buffered.span(after, upto);
            let drops = &buffered.drops[span.clone()];
            let Some(&drop_name) = drops.first() else {
                continue;
            };
            let drop_name = if drops.iter().any(|&drop| drop != drop_name) {
                // Decided per window below.
                if keeps_name {
                    mixed.insert(labels.clone());
                }
                false
            } else {
                drop_name
            };
            series.push(WindowSeries {
                labels: labels.clone(),
                drop_name,
                points: buffered.points[span].to_vec(),
                start_timestamps: None,
            });
        }
        let windows = Windows {
            range: plan.range,
            ends: ends.to_vec(),
        };
        let scalars: Vec<Vec<f64>> = self
            .scalars
            .iter()
            .map(|values| {
                values
                    .get(done..ready)
                    .map(<[f64]>::to_vec)
                    .unwrap_or_default()
            })
            .collect();
        let grid = Grid {
            start: self.grid.ts(done),
            step: self.grid.step,
            len: ready - done,
        };
        let batch = apply(ev, self.call, series.into_iter(), &windows, &scalars, grid)?;
        let produced = batch.samples();
        ev.add_samples(produced)?;
        self.out_held += produced;
        let n = plan.ends.len();
        for row in batch.into_vector()? {
            if mixed.contains(&row.labels) {
                let Some(buffered) = self.buffer.get(&row.labels) else {
                    continue;
                };
                for (step, value) in row.values.iter().enumerate() {
                    let Some(v) = *value else { continue };
                    let end = ends[step];
                    let span = buffered.span(end.saturating_sub(plan.range), end);
                    let drop_name = buffered.drops[span].iter().any(|&drop| drop);
                    self.out
                        .entry((row.labels.clone(), drop_name))
                        .or_insert_with(|| vec![None; n])[done + step] = Some(v);
                }
                continue;
            }
            let slots = self
                .out
                .entry((row.labels, row.drop_name))
                .or_insert_with(|| vec![None; n]);
            for (slot, value) in slots[done..ready].iter_mut().zip(row.values) {
                if value.is_some() {
                    *slot = value;
                }
            }
        }
        Ok(())
    }

    /// Drops the buffered points before `first`, which no later window reaches.
    fn forget_before(&mut self, ev: &mut Evaluator<'_>, first: i64) {
        let mut dropped = 0;
        self.buffer.retain(|_, buffered| {
            let cut = buffered.points.partition_point(|point| point.t < first);
            buffered.points.drain(..cut);
            buffered.drops.drain(..cut);
            dropped += cut;
            !buffered.points.is_empty()
        });
        self.held -= dropped;
        ev.release_samples(dropped);
    }
}
