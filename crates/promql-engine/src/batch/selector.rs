//! Selectors over a grid: instant selectors (lookback, staleness, `offset`, `@`) and range
//! functions over range selectors, each series walked once with cursors that only move forward.

use prom_model::{Labels, is_stale_nan};

use std::borrow::Cow;

use super::parallel::chunked;
use super::{Batch, Grid, Row};
use crate::annotations;
use crate::error::{Error, Result};
use crate::eval::{Evaluator, LoadedSeries, RangeVector};
use crate::functions::absent_labels;
use crate::plan::{Function, Node, NodeKind, Selector};
use crate::range_functions::{
    check_smoothing_factors, compute, note_possible_non_counter, start_time_overlap,
};
use crate::value::Point;

/// Series handled per block by the streaming forms ([`instant_each`], [`apply_views_each`]):
/// enough to keep every core busy, few enough that a consumer folding rows as they come (an
/// aggregation) never holds many.
pub(super) const BLOCK: usize = 1024;

/// A consumer of rows, handed them one at a time in order (with the evaluator, to account for
/// what it holds).
pub(crate) type Sink<'s> = dyn FnMut(&mut Evaluator<'_>, Row) -> Result<()> + 's;

/// The newest sample of each series within the lookback window, at every step.
pub(super) fn instant(ev: &mut Evaluator<'_>, selector: &Selector, grid: Grid) -> Result<Batch> {
    let mut rows = Vec::new();
    instant_each(ev, selector, grid, &mut |_, row| {
        rows.push(row);
        Ok(())
    })?;
    Ok(Batch::Vector(rows))
}

/// [`instant`], handing rows to `sink` block by block instead of returning them.
pub(super) fn instant_each(
    ev: &mut Evaluator<'_>,
    selector: &Selector,
    grid: Grid,
    sink: &mut Sink<'_>,
) -> Result<()> {
    instant_values(
        ev,
        selector,
        grid,
        &|series, index| series.points[index].v,
        sink,
    )
}

/// The sample each series shows at each step (the newest within the lookback window, unless
/// a stale marker), turned into a value by `value(series, index of the sample)`.
///
/// The selector's series are read block by block ([`Evaluator::next_block`]): a selector read
/// once is decoded one block at a time, and each block is dropped once its rows are made.
fn instant_values(
    ev: &mut Evaluator<'_>,
    selector: &Selector,
    grid: Grid,
    value: &(dyn Fn(&LoadedSeries, usize) -> f64 + Sync),
    sink: &mut Sink<'_>,
) -> Result<()> {
    let lookback = ev.settings.lookback_delta;
    let references: Vec<i64> = grid
        .timestamps()
        .map(|ts| selector.reference_time(ts))
        .collect();
    let each = |series: &LoadedSeries| -> Option<Row> {
        let points = &series.points;
        let mut values = vec![None; grid.len];
        let mut any = false;
        let mut end = 0;
        for (step, &reference) in references.iter().enumerate() {
            if end > 0 && points[end - 1].t > reference {
                // `@` and offsets keep references in order; restart if one does not.
                end = 0;
            }
            while end < points.len() && points[end].t <= reference {
                end += 1;
            }
            if end == 0 {
                continue;
            }
            let point = points[end - 1];
            if point.t <= reference.saturating_sub(lookback) || is_stale_nan(point.v) {
                continue;
            }
            values[step] = Some(value(series, end - 1));
            any = true;
        }
        any.then(|| Row {
            labels: series.labels.clone(),
            drop_name: false,
            values,
        })
    };
    let mut pass = ev.pass(selector)?;
    while let Some(block) = ev.next_block(&mut pass, BLOCK)? {
        let loaded = block.series();
        let work = loaded.len().saturating_mul(grid.len);
        let (rows, _) = chunked(
            ev.settings,
            loaded.len(),
            work,
            || (),
            |_, index| each(&loaded[index]),
        )?;
        ev.drop_block(block);
        sink_block(ev, rows.into_iter().flatten().collect(), sink)?;
    }
    Ok(())
}

/// Hands a block's rows to `sink` in order, counting them as held while they are handed over.
fn sink_block(ev: &mut Evaluator<'_>, rows: Vec<Row>, sink: &mut Sink<'_>) -> Result<()> {
    let held: usize = rows.iter().map(Row::present).sum();
    ev.add_samples(held)?;
    let mut outcome = Ok(());
    for row in rows {
        outcome = sink(ev, row);
        if outcome.is_err() {
            break;
        }
    }
    ev.release_samples(held);
    outcome
}

/// One series as a range function sees it: samples without stale markers, in time order.
#[derive(Debug, Clone)]
pub(crate) struct WindowSeries {
    /// The series' labels.
    pub(crate) labels: Labels,
    /// Whether the series was already marked for name removal.
    pub(crate) drop_name: bool,
    /// Its samples, stale markers removed.
    pub(crate) points: Vec<Point>,
    /// Start timestamps aligned with `points`, when known (straight from a selector only).
    pub(crate) start_timestamps: Option<Vec<i64>>,
}

/// How a range function's windows are placed: each step's window is `(end - range, end]`.
#[derive(Debug, Clone)]
pub(crate) struct Windows {
    /// Window length (ms).
    pub(crate) range: i64,
    /// The end of the window at each step of the grid (ms, inclusive).
    pub(crate) ends: Vec<i64>,
}

/// `f(selector[range])` for a range function `f`; `None` when the call is something else.
pub(super) fn range_function(
    ev: &mut Evaluator<'_>,
    function: Function,
    args: &[Node],
    grid: Grid,
) -> Result<Option<Batch>> {
    if !is_over_selector(function, args) {
        return Ok(None);
    }
    let mut rows = Vec::new();
    range_function_each(ev, function, args, grid, &mut |_, row| {
        rows.push(row);
        Ok(())
    })?;
    Ok(Some(Batch::Vector(rows)))
}

/// The range selector a call of `function` reads, if it is a range function over one.
pub(super) fn range_selector(function: Function, args: &[Node]) -> Option<(&Node, &Selector)> {
    let arg = args.get(function.range_arg()?)?;
    match &arg.kind {
        NodeKind::MatrixSelector { selector, .. } => Some((arg, selector)),
        _ => None,
    }
}

/// Whether a call of `function` is a range function over a range selector.
pub(super) fn is_over_selector(function: Function, args: &[Node]) -> bool {
    range_selector(function, args).is_some()
}

/// [`range_function`] for a call [`is_over_selector`] accepts, handing rows to `sink` block by
/// block instead of returning them.
pub(super) fn range_function_each(
    ev: &mut Evaluator<'_>,
    function: Function,
    args: &[Node],
    grid: Grid,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let name = function.name();
    let Some((arg, selector)) = range_selector(function, args) else {
        return Err(Error::exec(format!(
            "expected a range selector as the argument of {name}"
        )));
    };
    let NodeKind::MatrixSelector {
        range_ms: range, ..
    } = arg.kind
    else {
        return Err(Error::exec(format!(
            "expected a range selector as the argument of {name}"
        )));
    };
    let scalars = scalar_args(ev, function, args, grid)?;
    let windows = Windows {
        range,
        ends: grid
            .timestamps()
            .map(|ts| selector.reference_time(ts))
            .collect(),
    };
    let call = RangeCall {
        function,
        args,
        arg,
        from_selector: true,
    };
    let mut state = RangeState::new(grid);
    let mut pass = ev.pass(selector)?;
    while let Some(block) = ev.next_block(&mut pass, BLOCK)? {
        let loaded = block.series();
        let outcomes = apply_block(
            ev,
            &call,
            (loaded.len(), &|index| SeriesView::loaded(&loaded[index])),
            &windows,
            &scalars,
            grid,
            &mut state,
        )?;
        ev.drop_block(block);
        take_outcomes(ev, &call, outcomes, sink)?;
    }
    finish_range(ev, &call, &scalars, state, sink)
}

/// The scalar arguments of range function `function` at each step (`quantile_over_time`'s φ,
/// `predict_linear`'s t, the smoothing factors), as `[argument][step]`.
pub(crate) fn scalar_args(
    ev: &mut Evaluator<'_>,
    function: Function,
    args: &[Node],
    grid: Grid,
) -> Result<Vec<Vec<f64>>> {
    let name = function.name();
    let indexes: &[usize] = match function {
        Function::QuantileOverTime => &[0],
        Function::PredictLinear => &[1],
        Function::DoubleExponentialSmoothing => &[1, 2],
        _ => &[],
    };
    let mut out = Vec::with_capacity(indexes.len());
    for &index in indexes {
        let arg = args
            .get(index)
            .ok_or_else(|| Error::exec(format!("missing argument {index} of {name}")))?;
        let batch = super::eval(ev, arg, grid)?;
        super::release(ev, &batch);
        out.push(batch.into_scalar()?);
    }
    Ok(out)
}

/// A call of a range function.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RangeCall<'e> {
    /// The function.
    pub(crate) function: Function,
    /// All its arguments.
    pub(crate) args: &'e [Node],
    /// The range-vector argument (for annotations and `absent_over_time`'s labels).
    pub(crate) arg: &'e Node,
    /// Whether `arg` is a range selector (as opposed to a subquery).
    pub(crate) from_selector: bool,
}

/// Applies a range function to every series' window at every step; `scalars` are its scalar
/// arguments per step ([`scalar_args`]).
pub(crate) fn apply(
    ev: &mut Evaluator<'_>,
    call: &RangeCall<'_>,
    series: impl Iterator<Item = WindowSeries>,
    windows: &Windows,
    scalars: &[Vec<f64>],
    grid: Grid,
) -> Result<Batch> {
    let series: Vec<WindowSeries> = series.collect();
    let mut rows = Vec::new();
    apply_views_each(
        ev,
        call,
        (series.len(), &|index| SeriesView::of(&series[index])),
        windows,
        scalars,
        grid,
        &mut |_, row| {
            rows.push(row);
            Ok(())
        },
    )?;
    Ok(Batch::Vector(rows))
}

/// One series as [`apply_views_each`] reads it, borrowed where possible.
pub(crate) struct SeriesView<'a> {
    labels: &'a Labels,
    drop_name: bool,
    points: Cow<'a, [Point]>,
    start_timestamps: Option<Cow<'a, [i64]>>,
}

impl<'a> SeriesView<'a> {
    fn of(series: &'a WindowSeries) -> Self {
        Self {
            labels: &series.labels,
            drop_name: series.drop_name,
            points: Cow::Borrowed(&series.points),
            start_timestamps: series.start_timestamps.as_deref().map(Cow::Borrowed),
        }
    }

    /// A loaded selector series without its stale markers (copied only if it has any).
    fn loaded(series: &'a LoadedSeries) -> Self {
        let stale = series.points.iter().any(|point| is_stale_nan(point.v));
        if !stale {
            return Self {
                labels: &series.labels,
                drop_name: false,
                points: Cow::Borrowed(&series.points),
                start_timestamps: series.start_timestamps.as_deref().map(Cow::Borrowed),
            };
        }
        let keep: Vec<usize> = (0..series.points.len())
            .filter(|&i| !is_stale_nan(series.points[i].v))
            .collect();
        Self {
            labels: &series.labels,
            drop_name: false,
            points: Cow::Owned(keep.iter().map(|&i| series.points[i]).collect()),
            start_timestamps: series.start_timestamps.as_ref().map(|sts| {
                Cow::Owned(
                    keep.iter()
                        .map(|&i| sts.get(i).copied().unwrap_or(0))
                        .collect(),
                )
            }),
        }
    }
}

/// What one series' windows gave.
struct SeriesOutcome {
    row: Option<Row>,
    /// Set when a counter function saw a window of this series: its metric name, and whether
    /// its start timestamps overlap (annotations are made afterwards, in series order).
    counter_note: Option<(Option<String>, bool)>,
}

/// Per-thread totals over the steps.
struct StepTotals {
    /// Whether any series has a sample in the window, per step.
    non_empty: Vec<bool>,
    /// Samples in all series' windows, per step: what Prometheus' evaluator holds then.
    in_windows: Vec<usize>,
}

/// The series a range function reads: how many, and each by index.
pub(crate) type Views<'v, 'a> = (usize, &'v (dyn Fn(usize) -> SeriesView<'a> + Sync));

/// [`apply`] over series given by index, handing rows to `sink` in series order, block by
/// block; within a block, series are processed in parallel when the work is large, and
/// annotations are made in series order afterwards.
pub(crate) fn apply_views_each(
    ev: &mut Evaluator<'_>,
    call: &RangeCall<'_>,
    (count, view): Views<'_, '_>,
    windows: &Windows,
    scalars: &[Vec<f64>],
    grid: Grid,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let mut state = RangeState::new(grid);
    for first in (0..count).step_by(BLOCK) {
        let block = BLOCK.min(count - first);
        let outcomes = apply_block(
            ev,
            call,
            (block, &|index| view(first + index)),
            windows,
            scalars,
            grid,
            &mut state,
        )?;
        take_outcomes(ev, call, outcomes, sink)?;
    }
    finish_range(ev, call, scalars, state, sink)
}

/// What a range function's pass over the blocks of its series gathers for the end.
struct RangeState {
    /// Whether any series has a sample in the window, per step.
    non_empty: Vec<bool>,
    /// Samples in all series' windows so far, per step.
    in_windows: Vec<usize>,
}

impl RangeState {
    fn new(grid: Grid) -> Self {
        Self {
            non_empty: vec![false; grid.len],
            in_windows: vec![0; grid.len],
        }
    }
}

/// Applies the range function to one block of series (in parallel when the work is large),
/// returning their outcomes in series order.
fn apply_block(
    ev: &mut Evaluator<'_>,
    call: &RangeCall<'_>,
    (count, view): Views<'_, '_>,
    windows: &Windows,
    scalars: &[Vec<f64>],
    grid: Grid,
    state: &mut RangeState,
) -> Result<Vec<SeriesOutcome>> {
    let name = call.function.name();
    let keeps_name = call.function.keeps_name();
    let counter_function = matches!(call.function, Function::Rate | Function::Increase);
    let each = |totals: &mut StepTotals, index: usize| -> SeriesOutcome {
        let one = view(index);
        let points: &[Point] = &one.points;
        let sts = one.start_timestamps.as_deref();
        let mut step_scalars = vec![0.0; scalars.len()];
        let mut context = RangeVector {
            range: windows.range,
            ..RangeVector::default()
        };
        let mut values = vec![None; grid.len];
        let mut any = false;
        let mut counter_note = None;
        let (mut from, mut to) = (0usize, 0usize);
        let mut previous: Option<(usize, i64, Option<f64>)> = None;
        for (step, &end) in windows.ends.iter().enumerate() {
            let start = end.saturating_sub(windows.range);
            if to > 0 && points[to - 1].t > end || from > 0 && points[from - 1].t > start {
                (from, to) = (0, 0);
            }
            while from < points.len() && points[from].t <= start {
                from += 1;
            }
            to = to.max(from);
            while to < points.len() && points[to].t <= end {
                to += 1;
            }
            if from == to {
                continue;
            }
            totals.non_empty[step] = true;
            totals.in_windows[step] += to - from;
            if call.function == Function::AbsentOverTime {
                continue;
            }
            if counter_function && counter_note.is_none() {
                let overlap = sts.is_some_and(|sts| start_time_overlap(points, sts));
                counter_note = Some((one.labels.metric_name().map(str::to_string), overlap));
            }
            for (slot, values) in step_scalars.iter_mut().zip(scalars) {
                *slot = values.get(step).copied().unwrap_or(f64::NAN);
            }
            // A window pinned by `@` is the same at every step: compute it once (the value of
            // `predict_linear` also depends on the step's time).
            let value = match previous {
                Some((previous_step, previous_end, value))
                    if previous_end == end
                        && call.function != Function::PredictLinear
                        && scalars.iter().all(|values| {
                            values.get(step).map(|v| v.to_bits())
                                == values.get(previous_step).map(|v| v.to_bits())
                        }) =>
                {
                    value
                }
                _ => {
                    context.window_end = end;
                    let window_sts = sts.map(|sts| &sts[from..to]);
                    compute(
                        name,
                        &points[from..to],
                        window_sts,
                        &context,
                        &step_scalars,
                        grid.ts(step),
                    )
                }
            };
            previous = Some((step, end, value));
            if value.is_some() {
                values[step] = value;
                any = true;
            }
        }
        SeriesOutcome {
            row: any.then(|| Row {
                labels: one.labels.clone(),
                drop_name: !keeps_name || one.drop_name,
                values,
            }),
            counter_note,
        }
    };
    let init = || StepTotals {
        non_empty: vec![false; grid.len],
        in_windows: vec![0; grid.len],
    };
    let points: usize = (0..count).map(|index| view(index).points.len()).sum();
    let work = range_work(count, grid.len, points, windows);
    let (outcomes, parts) = chunked(ev.settings, count, work, init, each)?;
    for part in parts {
        for (step, (some, held)) in part.non_empty.iter().zip(&part.in_windows).enumerate() {
            state.non_empty[step] |= *some;
            state.in_windows[step] += held;
        }
    }
    // What Prometheus' evaluator holds at its fullest step, with every window of the series.
    let peak = state.in_windows.iter().copied().max().unwrap_or(0);
    ev.add_samples(peak)?;
    ev.release_samples(peak);
    Ok(outcomes)
}

/// The work of a range function over `count` series holding `points` samples: series times
/// steps times the samples a window holds (at least one), since most functions read every sample
/// of each window (`predict_linear` over 30m at a 15s step reads 120 per step).
fn range_work(count: usize, steps: usize, points: usize, windows: &Windows) -> usize {
    let (Some(first), Some(last)) = (windows.ends.first(), windows.ends.last()) else {
        return count.saturating_mul(steps);
    };
    let span = last
        .saturating_sub(*first)
        .saturating_add(windows.range)
        .max(1);
    let per_series = points / count.max(1);
    let per_window = i64::try_from(per_series)
        .unwrap_or(i64::MAX)
        .saturating_mul(windows.range)
        / span;
    let per_window = usize::try_from(per_window).unwrap_or(usize::MAX).max(1);
    count.saturating_mul(steps).saturating_mul(per_window)
}

/// Makes a block's annotations in series order and hands its rows to `sink`.
fn take_outcomes(
    ev: &mut Evaluator<'_>,
    call: &RangeCall<'_>,
    outcomes: Vec<SeriesOutcome>,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let mut rows = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        if let Some((metric, overlap)) = &outcome.counter_note {
            if *overlap {
                let metric = metric.as_deref().unwrap_or("");
                ev.annotations.warn(
                    annotations::start_time_overlap(metric),
                    call.arg.anchor.as_deref(),
                );
            }
            if call.from_selector {
                note_possible_non_counter(ev, metric.as_deref(), call.arg.anchor.as_deref());
            }
        }
        rows.extend(outcome.row);
    }
    sink_block(ev, rows, sink)
}

/// After the last block: the per-step checks, and `absent_over_time`'s row.
fn finish_range(
    ev: &mut Evaluator<'_>,
    call: &RangeCall<'_>,
    scalars: &[Vec<f64>],
    state: RangeState,
    sink: &mut Sink<'_>,
) -> Result<()> {
    check_steps(ev, call, scalars, &state.non_empty)?;
    if call.function == Function::AbsentOverTime {
        let values = state
            .non_empty
            .iter()
            .map(|&non_empty| (!non_empty).then_some(1.0))
            .collect::<Vec<_>>();
        if values.iter().any(Option::is_some) {
            sink(
                ev,
                Row {
                    labels: absent_labels(call.arg),
                    drop_name: true,
                    values,
                },
            )?;
        }
    }
    Ok(())
}

/// The per-step checks Prometheus makes on a non-empty range vector: an invalid
/// `quantile_over_time` φ warns, invalid smoothing factors fail.
fn check_steps(
    ev: &mut Evaluator<'_>,
    call: &RangeCall<'_>,
    scalars: &[Vec<f64>],
    non_empty: &[bool],
) -> Result<()> {
    let not_empty = RangeVector {
        series: vec![crate::value::Series {
            labels: Labels::empty(),
            points: Vec::new(),
            drop_name: false,
        }],
        ..RangeVector::default()
    };
    for (step, _) in non_empty.iter().enumerate().filter(|(_, some)| **some) {
        let at = |index: usize| {
            scalars
                .get(index)
                .and_then(|values| values.get(step))
                .copied()
                .unwrap_or(f64::NAN)
        };
        match call.function {
            Function::QuantileOverTime => {
                let q = at(0);
                if q.is_nan() || !(0.0..=1.0).contains(&q) {
                    let anchor = call.args.first().and_then(|arg| arg.anchor.as_deref());
                    ev.annotations
                        .warn(annotations::invalid_quantile(q), anchor);
                }
            }
            Function::DoubleExponentialSmoothing => {
                check_smoothing_factors(&[at(0), at(1)], &not_empty)?;
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// What [`instant`] selects, but each value is `value(t, start)` of the selected sample: its
/// timestamp and its start timestamp (0 when unknown). For `timestamp(selector)` and
/// `start_timestamp(selector)`, which report when the sample was taken, not the step.
pub(super) fn instant_times(
    ev: &mut Evaluator<'_>,
    selector: &Selector,
    grid: Grid,
    value: impl Fn(i64, i64) -> f64 + Sync,
) -> Result<Vec<Row>> {
    let of_sample = |series: &LoadedSeries, index: usize| {
        let start = series
            .start_timestamps
            .as_ref()
            .and_then(|sts| sts.get(index).copied())
            .unwrap_or(0);
        value(series.points[index].t, start)
    };
    let mut rows = Vec::new();
    instant_values(ev, selector, grid, &of_sample, &mut |_, row| {
        rows.push(row);
        Ok(())
    })?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::parallel::MIN_PARALLEL_WORK;

    /// Windows of `range` ms ending every `step` ms over 8h.
    fn windows(range: i64, step: i64) -> Windows {
        Windows {
            range,
            ends: (0..=8 * 3_600_000 / step).map(|k| k * step).collect(),
        }
    }

    #[test]
    fn range_work_weighs_the_samples_each_window_reads() {
        // 10 series scraped every 15s over 8h: 1,920 samples each.
        let (count, points) = (10, 19_200);
        let long = windows(30 * 60_000, 15_000);
        let short = windows(60_000, 15_000);
        let steps = long.ends.len();
        // 30m windows hold ~113 samples: worth both cores, though series x steps is not.
        assert!(count * steps < MIN_PARALLEL_WORK);
        assert!(range_work(count, steps, points, &long) >= MIN_PARALLEL_WORK);
        // 1m windows hold ~4: still below.
        assert!(range_work(count, steps, points, &short) < MIN_PARALLEL_WORK);
        // A window holds at least one sample's work; no windows, no weighting.
        assert_eq!(range_work(5, 3, 0, &long), 15);
        let none = Windows {
            range: 60_000,
            ends: Vec::new(),
        };
        assert_eq!(range_work(5, 0, 100, &none), 0);
        assert_eq!(range_work(0, 0, 0, &none), 0);
    }
}
