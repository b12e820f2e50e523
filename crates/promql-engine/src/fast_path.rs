//! Series-major evaluation of the heaviest common shape of range queries.
//!
//! The evaluator walks the AST once per step, cloning the labels of every input series at every
//! step. For `aggr [by|without (...)] (f(selector[r]))` and `aggr [by|without (...)] (selector)`,
//! with `aggr` one of `sum avg min max count group` and `f` a range function without scalar
//! arguments, this module instead computes every step of a range query in one pass over the
//! series: group keys are computed once per series, each window slides forward with two cursors,
//! and only the small aggregated result is materialised per step. The evaluator then hands out
//! the precomputed vector when it reaches the node ([`Evaluator::eval`]).
//!
//! **Invariant:** results are bit-identical to the step-wise path: per-series values come from
//! the same function ([`crate::range_functions::compute`]), and each step's accumulators see the
//! series in the same order (the selector's label order) with the same update rules as
//! `aggregate`. Shapes the module does not cover (start timestamps, `@`, subqueries, other
//! operators, too many groups) are left to the step-wise path.

use std::collections::HashMap;

use prom_model::{Labels, is_stale_nan};
use promql_parser::parser::{AggregateExpr, Expr, VectorSelector};

use crate::aggregate::Grouping;
use crate::error::{Error, Result};
use crate::eval::{Evaluator, LoadedSeries, RangeVector};
use crate::functions::kahan_inc;
use crate::parse::{duration_ms, offset_ms, unwrap_parens};
use crate::value::{Element, Point};

/// Range functions computed here: those whose only argument is the range vector.
const FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "avg_over_time",
    "sum_over_time",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "changes",
    "resets",
    "deriv",
];

const OPERATORS: &[&str] = &["sum", "avg", "min", "max", "count", "group"];

/// Most `groups × steps` accumulators one node may hold.
const MAX_ACCUMULATORS: usize = 1 << 21;

/// The input of a covered aggregation.
enum Input<'e> {
    /// `f(selector[range])`.
    Range {
        function: &'e str,
        selector: &'e VectorSelector,
        range: i64,
        arg: &'e Expr,
    },
    /// A bare instant selector.
    Instant(&'e VectorSelector),
}

/// Precomputes every covered aggregation of a range query (not inside subqueries).
pub(crate) fn precompute(ev: &mut Evaluator<'_>, expr: &Expr) -> Result<()> {
    if ev.step <= 0 || ev.end <= ev.start {
        return Ok(());
    }
    walk(ev, expr)
}

fn walk(ev: &mut Evaluator<'_>, expr: &Expr) -> Result<()> {
    match expr {
        Expr::Paren(paren) => walk(ev, &paren.expr),
        Expr::Unary(unary) => walk(ev, &unary.expr),
        Expr::Binary(binary) => {
            walk(ev, &binary.lhs)?;
            walk(ev, &binary.rhs)
        }
        Expr::Call(call) => {
            for arg in &call.args.args {
                walk(ev, arg)?;
            }
            Ok(())
        }
        Expr::Aggregate(aggregate) => {
            if ev.is_invariant(expr) {
                return Ok(());
            }
            if let Some(input) = covered(aggregate) {
                if let Some(steps) = compute(ev, aggregate, &input)? {
                    ev.set_precomputed(expr, steps);
                }
                return Ok(());
            }
            if let Some(param) = &aggregate.param {
                walk(ev, param)?;
            }
            walk(ev, &aggregate.expr)
        }
        // Subqueries evaluate their inner expression at other timestamps; selectors and
        // literals are cheap enough step by step.
        _ => Ok(()),
    }
}

fn covered(aggregate: &AggregateExpr) -> Option<Input<'_>> {
    if aggregate.param.is_some() || !OPERATORS.contains(&aggregate.op.to_string().as_str()) {
        return None;
    }
    match unwrap_parens(&aggregate.expr) {
        Expr::VectorSelector(selector) if selector.at.is_none() => Some(Input::Instant(selector)),
        Expr::Call(call) => {
            let function = call.func.name;
            if !FUNCTIONS.contains(&function) || call.args.args.len() != 1 {
                return None;
            }
            let arg: &Expr = &call.args.args[0];
            match arg {
                Expr::MatrixSelector(matrix) if matrix.vs.at.is_none() => Some(Input::Range {
                    function,
                    selector: &matrix.vs,
                    range: duration_ms(&matrix.range),
                    arg,
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// One group's running aggregate at one step; mirrors `aggregate::Group` for the covered
/// operators.
#[derive(Debug, Clone, Copy, Default)]
struct Accumulator {
    seen: bool,
    /// Index of the first series that contributed: orders the groups of a step as the
    /// step-wise path does.
    first_series: u32,
    value: f64,
    kahan: f64,
    mean: f64,
    count: f64,
    incremental_mean: bool,
}

impl Accumulator {
    fn start(&mut self, op: &str, f: f64, series: u32) {
        *self = Accumulator {
            seen: true,
            first_series: series,
            value: if op == "group" { 1.0 } else { f },
            kahan: 0.0,
            mean: f,
            count: 1.0,
            incremental_mean: false,
        };
    }

    fn add(&mut self, op: &str, f: f64) {
        match op {
            "sum" => (self.value, self.kahan) = kahan_inc(f, self.value, self.kahan),
            "avg" => {
                self.count += 1.0;
                if !self.incremental_mean {
                    let (sum, c) = kahan_inc(f, self.value, self.kahan);
                    if !sum.is_infinite() {
                        self.value = sum;
                        self.kahan = c;
                        return;
                    }
                    self.incremental_mean = true;
                    self.mean = self.value / (self.count - 1.0);
                    self.kahan /= self.count - 1.0;
                }
                let q = (self.count - 1.0) / self.count;
                (self.mean, self.kahan) = kahan_inc(f / self.count, q * self.mean, q * self.kahan);
            }
            "max" if self.value < f || self.value.is_nan() => self.value = f,
            "min" if self.value > f || self.value.is_nan() => self.value = f,
            "count" => self.count += 1.0,
            _ => {}
        }
    }

    fn finish(&self, op: &str) -> f64 {
        match op {
            "sum" => {
                if self.value.is_infinite() {
                    self.value
                } else {
                    self.value + self.kahan
                }
            }
            "avg" => {
                if self.incremental_mean {
                    self.mean + self.kahan
                } else {
                    self.value / self.count + self.kahan / self.count
                }
            }
            "count" => self.count,
            _ => self.value,
        }
    }
}

/// Cursor over one series' points for increasing evaluation times.
struct Window<'s> {
    points: &'s [Point],
    has_stale: bool,
    from: usize,
    to: usize,
    scratch: Vec<Point>,
}

impl<'s> Window<'s> {
    fn new(series: &'s LoadedSeries) -> Self {
        Self {
            points: &series.points,
            has_stale: series.points.iter().any(|p| is_stale_nan(p.v)),
            from: 0,
            to: 0,
            scratch: Vec::new(),
        }
    }

    /// Points in `(start, end]` without stale markers; `start` and `end` never decrease.
    fn range(&mut self, start: i64, end: i64) -> &[Point] {
        while self.to < self.points.len() && self.points[self.to].t <= end {
            self.to += 1;
        }
        while self.from < self.to && self.points[self.from].t <= start {
            self.from += 1;
        }
        let slice = &self.points[self.from..self.to];
        if !self.has_stale {
            return slice;
        }
        self.scratch.clear();
        self.scratch
            .extend(slice.iter().copied().filter(|p| !is_stale_nan(p.v)));
        &self.scratch
    }

    /// The newest point at or before `reference`, if newer than `reference - lookback` and not
    /// a stale marker.
    fn latest(&mut self, reference: i64, lookback: i64) -> Option<Point> {
        while self.to < self.points.len() && self.points[self.to].t <= reference {
            self.to += 1;
        }
        let point = *self.points.get(self.to.checked_sub(1)?)?;
        if point.t <= reference.saturating_sub(lookback) || is_stale_nan(point.v) {
            return None;
        }
        Some(point)
    }
}

/// Evaluates a covered aggregation at every step; `None` when it is left to the step-wise path.
fn compute(
    ev: &mut Evaluator<'_>,
    aggregate: &AggregateExpr,
    input: &Input<'_>,
) -> Result<Option<Vec<Option<Vec<Element>>>>> {
    let selector = match input {
        Input::Range { selector, .. } | Input::Instant(selector) => *selector,
    };
    let loaded = ev.loaded(selector)?;
    if loaded
        .iter()
        .any(|series| series.start_timestamps.is_some())
    {
        return Ok(None);
    }
    let grouping = Grouping::of(aggregate);
    let mut group_of_key: HashMap<Labels, usize> = HashMap::new();
    let mut group_labels: Vec<Labels> = Vec::new();
    let mut series_group = Vec::with_capacity(loaded.len());
    for series in loaded.iter() {
        let key = grouping.key(&series.labels);
        let next = group_labels.len();
        let group = *group_of_key.entry(key.clone()).or_insert(next);
        if group == next {
            group_labels.push(key);
        }
        series_group.push(group);
    }
    let steps = usize::try_from((ev.end - ev.start) / ev.step + 1).unwrap_or(usize::MAX);
    if group_labels.len().saturating_mul(steps) > MAX_ACCUMULATORS {
        return Ok(None);
    }
    let op = aggregate.op.to_string();
    let offset = offset_ms(selector.offset.as_ref());
    let lookback = ev.settings.lookback_delta;
    let mut accumulators = vec![Accumulator::default(); group_labels.len() * steps];
    let mut step_samples = vec![0usize; steps];
    let drop_name = match input {
        Input::Range { function, .. } => {
            *function != "last_over_time" && *function != "first_over_time"
        }
        Input::Instant(_) => false,
    };
    for (index, series) in loaded.iter().enumerate() {
        if index % 256 == 0 {
            ev.check_interrupt("query execution")?;
        }
        let series_index = u32::try_from(index).unwrap_or(u32::MAX);
        let group = series_group[index];
        let accumulators = &mut accumulators[group * steps..(group + 1) * steps];
        let mut window = Window::new(series);
        let mut produced = false;
        for (step, accumulator) in accumulators.iter_mut().enumerate() {
            let ts = ev.start + step as i64 * ev.step;
            let reference = ts.saturating_sub(offset);
            let value = match input {
                Input::Instant(_) => window.latest(reference, lookback).map(|point| {
                    step_samples[step] += 1;
                    point.v
                }),
                Input::Range {
                    function, range, ..
                } => {
                    let points = window.range(reference.saturating_sub(*range), reference);
                    if points.is_empty() {
                        None
                    } else {
                        // Prometheus notes a possible non-counter for any series with samples
                        // in the window, even when the function has too few to return a value.
                        produced = true;
                        step_samples[step] += points.len();
                        let matrix = RangeVector {
                            series: Vec::new(),
                            start_timestamps: Vec::new(),
                            range: *range,
                            window_end: reference,
                        };
                        crate::range_functions::compute(function, points, None, &matrix, &[], ts)
                    }
                }
            };
            let Some(value) = value else { continue };
            produced = true;
            if accumulator.seen {
                accumulator.add(&op, value);
            } else {
                accumulator.start(&op, value, series_index);
            }
        }
        if produced
            && let Input::Range {
                function: "rate" | "increase",
                arg,
                ..
            } = input
        {
            crate::range_functions::note_possible_non_counter(ev, series.labels.metric_name(), arg);
        }
    }
    if step_samples
        .iter()
        .any(|&samples| samples.saturating_add(ev.result_samples) > ev.settings.max_samples)
    {
        return Err(Error::TooManySamples {
            phase: "query execution",
        });
    }
    let mut out = Vec::with_capacity(steps);
    for step in 0..steps {
        let mut present: Vec<(u32, usize)> = (0..group_labels.len())
            .filter(|&group| accumulators[group * steps + step].seen)
            .map(|group| (accumulators[group * steps + step].first_series, group))
            .collect();
        present.sort_unstable();
        let ts = ev.start + step as i64 * ev.step;
        let vector = present
            .into_iter()
            .map(|(_, group)| Element {
                labels: group_labels[group].clone(),
                t: ts,
                v: accumulators[group * steps + step].finish(&op),
                drop_name,
            })
            .collect();
        out.push(Some(vector));
    }
    Ok(Some(out))
}
