//! The evaluator: walks the AST at one evaluation timestamp at a time.
//!
//! Range queries call [`Evaluator::eval`] once per step; subqueries call it once per inner step.
//! Selector data is loaded from the [`Queryable`] once per query (see [`Evaluator::prefetch`]) and
//! then sliced per step, so the per-step walk never touches storage.

mod selection;

use std::collections::HashMap;
use std::rc::Rc;

use prom_model::{Labels, is_stale_nan};
use promql_parser::parser::{Expr, UnaryExpr, VectorSelector};

use crate::annotations::Annotations;
use crate::budget::{HELD_SAMPLE_BYTES, Reservation};
use crate::engine::EvalSettings;
use crate::error::{Error, Result};
use crate::parse::{at_ms, duration_ms, matcher_sets, offset_ms};
use crate::storage::{Queryable, SelectHints};
use crate::value::{Element, Point, Series};

/// A range vector at one evaluation step: series with the points of their window.
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeVector {
    pub(crate) series: Vec<Series>,
    /// Start timestamps aligned with each series' points (only straight from a range selector).
    pub(crate) start_timestamps: Vec<Option<Vec<i64>>>,
    /// Window length in ms.
    pub(crate) range: i64,
    /// End of the window (inclusive), i.e. evaluation time minus offset, or the `@` time.
    pub(crate) window_end: i64,
}

/// A value at one evaluation step.
#[derive(Debug, Clone)]
pub(crate) enum StepValue {
    Scalar(f64),
    String(String),
    Vector(Vec<Element>),
    Matrix(RangeVector),
}

impl StepValue {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            StepValue::Scalar(_) => "scalar",
            StepValue::String(_) => "string",
            StepValue::Vector(_) => "vector",
            StepValue::Matrix(_) => "matrix",
        }
    }
}

/// Raw series of one selector, points in time order (stale markers included).
#[derive(Debug)]
pub(crate) struct LoadedSeries {
    pub(crate) labels: Labels,
    pub(crate) points: Vec<Point>,
    /// Start timestamps aligned with `points` (0 = unknown), if the source has them.
    pub(crate) start_timestamps: Option<Vec<i64>>,
}

/// Per-query evaluation state.
pub(crate) struct Evaluator<'a> {
    pub(crate) storage: &'a dyn Queryable,
    pub(crate) settings: &'a EvalSettings,
    /// Query start and end (ms); `@ start()` / `@ end()` refer to them.
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Query step in ms (0 for instant queries).
    pub(crate) step: i64,
    pub(crate) annotations: Annotations,
    /// Every selector's series (see [`selection`]).
    selections: selection::Selections<'a>,
    /// Inner results of subqueries by node (see [`crate::subquery`]).
    pub(crate) subquery_cache: HashMap<usize, crate::subquery::SubqueryCache>,
    /// Samples held by `subquery_cache`.
    pub(crate) cached_samples: usize,
    /// Step-invariant sub-expressions (by node address) and their value once computed.
    invariant: std::collections::HashSet<usize>,
    invariant_values: HashMap<usize, StepValue>,
    /// Vectors of nodes computed for every step of a range query by [`crate::batch`], by
    /// node address and step index; each is handed out once.
    precomputed: HashMap<usize, Vec<Option<Vec<Element>>>>,
    /// Samples held by the step currently being evaluated.
    pub(crate) step_samples: usize,
    /// Samples held by the accumulated result of a range query.
    pub(crate) result_samples: usize,
    /// Most samples held at once so far (their estimate is reserved from the memory budget).
    peak_held: usize,
    /// This query's share of the memory budget, returned when its last holder drops it.
    reservation: std::sync::Arc<Reservation>,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// Context a selector inherits from the enclosing nodes while planning its time range.
#[derive(Debug, Clone, Default)]
struct PlanPath {
    subquery_offset: i64,
    subquery_range: i64,
    subquery_at: Option<i64>,
    func: Option<String>,
    grouping: Vec<String>,
    by: bool,
    /// Inside a subquery, whose inner expression is evaluated segment by segment.
    in_subquery: bool,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        storage: &'a dyn Queryable,
        settings: &'a EvalSettings,
        start: i64,
        end: i64,
        step: i64,
    ) -> Self {
        Self {
            storage,
            settings,
            start,
            end,
            step,
            annotations: Annotations::default(),
            selections: selection::Selections::default(),
            subquery_cache: HashMap::new(),
            cached_samples: 0,
            invariant: std::collections::HashSet::new(),
            invariant_values: HashMap::new(),
            precomputed: HashMap::new(),
            step_samples: 0,
            result_samples: 0,
            peak_held: 0,
            reservation: std::sync::Arc::clone(&settings.reservation),
        }
    }

    /// Selects the series of every selector in `expr` for the whole query; their samples are
    /// decoded when read (see [`selection`]).
    pub(crate) fn prefetch(&mut self, expr: &Expr) -> Result<()> {
        if self.start != self.end {
            self.invariant = crate::invariant::invariant_roots(expr);
        }
        self.plan(expr, &PlanPath::default(), 0)
    }

    fn plan(&mut self, expr: &Expr, path: &PlanPath, range: i64) -> Result<()> {
        match expr {
            Expr::VectorSelector(selector) => self.load(selector, path, range),
            Expr::MatrixSelector(matrix) => self.load(&matrix.vs, path, duration_ms(&matrix.range)),
            Expr::Paren(paren) => self.plan(&paren.expr, path, range),
            Expr::Unary(unary) => self.plan(&unary.expr, path, range),
            Expr::Binary(binary) => {
                let mut inner = path.clone();
                inner.func = None;
                self.plan(&binary.lhs, &inner, 0)?;
                self.plan(&binary.rhs, &inner, 0)
            }
            Expr::Aggregate(aggregate) => {
                let mut inner = path.clone();
                inner.func = Some(aggregate.op.to_string());
                match &aggregate.modifier {
                    Some(modifier) => {
                        inner.grouping = modifier.labels().labels.clone();
                        inner.by = modifier.is_include();
                    }
                    None => {
                        inner.grouping = Vec::new();
                        inner.by = true;
                    }
                }
                if let Some(param) = &aggregate.param {
                    self.plan(param, path, 0)?;
                }
                self.plan(&aggregate.expr, &inner, 0)
            }
            Expr::Call(call) => {
                let mut inner = path.clone();
                inner.func = Some(call.func.name.to_string());
                for arg in &call.args.args {
                    self.plan(arg, &inner, 0)?;
                }
                Ok(())
            }
            Expr::Subquery(subquery) => {
                let mut inner = path.clone();
                inner.subquery_offset += offset_ms(subquery.offset.as_ref());
                inner.subquery_range += duration_ms(&subquery.range);
                if let Some(at) = at_ms(subquery.at.as_ref(), self.start, self.end) {
                    inner.subquery_offset = offset_ms(subquery.offset.as_ref());
                    inner.subquery_range = duration_ms(&subquery.range);
                    inner.subquery_at = Some(at);
                }
                inner.func = None;
                inner.in_subquery = true;
                self.plan(&subquery.expr, &inner, 0)
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
        }
    }

    fn load(&mut self, selector: &VectorSelector, path: &PlanPath, range: i64) -> Result<()> {
        let (mut start, mut end) = (self.start, self.end);
        if let Some(at) = path.subquery_at {
            start = at;
            end = at;
        }
        // A selector's own `@` pins it: enclosing subqueries' ranges and offsets move only the
        // evaluation times, which the `@` overrides.
        let mut subquery_range = path.subquery_range;
        let mut subquery_offset = path.subquery_offset;
        if let Some(at) = at_ms(selector.at.as_ref(), self.start, self.end) {
            start = at;
            end = at;
            subquery_range = 0;
            subquery_offset = 0;
        }
        start = start.saturating_sub(if range == 0 {
            self.settings.lookback_delta
        } else {
            range
        });
        let offset = offset_ms(selector.offset.as_ref());
        start = start
            .saturating_sub(offset)
            .saturating_sub(subquery_range)
            .saturating_sub(subquery_offset);
        end = end.saturating_sub(offset).saturating_sub(subquery_offset);
        let hints = SelectHints {
            start: start.saturating_add(1),
            end,
            step: self.step,
            func: path.func.clone(),
            range,
            grouping: path.grouping.clone(),
            by: path.by,
        };
        let plan = selection::SelectPlan {
            matcher_sets: matcher_sets(selector)?,
            hints,
            single_pass: !path.in_subquery,
        };
        self.select_pending(selector, plan)
    }

    /// Fails if the query was cancelled or ran past its deadline.
    pub(crate) fn check_interrupt(&self, phase: &'static str) -> Result<()> {
        self.settings.check_interrupt(phase)
    }

    /// Accounts for `count` more samples held by the current step.
    pub(crate) fn add_samples(&mut self, count: usize) -> Result<()> {
        self.step_samples += count;
        self.check_samples(0)
    }

    /// Fails if the samples held (by the current step, the accumulated result and the
    /// subquery caches) plus `extra` exceed the limit.
    ///
    /// A new peak of samples held is reserved from the memory budget.
    pub(crate) fn check_samples(&mut self, extra: usize) -> Result<()> {
        let held = self
            .step_samples
            .saturating_add(self.result_samples)
            .saturating_add(self.cached_samples)
            .saturating_add(extra);
        if held > self.settings.max_samples {
            return Err(Error::TooManySamples {
                phase: "query execution",
            });
        }
        if held > self.peak_held {
            self.reservation
                .grow((held - self.peak_held).saturating_mul(HELD_SAMPLE_BYTES))?;
            self.peak_held = held;
        }
        Ok(())
    }

    /// Stops counting `count` samples as held by the current step (a batch was consumed).
    pub(crate) fn release_samples(&mut self, count: usize) {
        self.step_samples = self.step_samples.saturating_sub(count);
    }

    /// Whether `grid` is the query's own grid of evaluation timestamps.
    pub(crate) fn is_query_grid(&self, grid: crate::batch::Grid) -> bool {
        grid == crate::batch::Grid::new(self.start, self.end, self.step)
    }

    /// Whether `expr` is the root of a step-invariant (`@`-pinned) sub-expression of a range
    /// query: its value is the same at every step.
    pub(crate) fn is_invariant(&self, expr: &Expr) -> bool {
        !self.invariant.is_empty() && self.invariant.contains(&(expr as *const Expr as usize))
    }

    /// Stores the vectors of `expr` for every step of the range query (index = step number).
    pub(crate) fn set_precomputed(&mut self, expr: &Expr, steps: Vec<Option<Vec<Element>>>) {
        self.precomputed.insert(expr as *const Expr as usize, steps);
    }

    /// Takes the precomputed vector of `expr` at `ts`, if there is one.
    fn take_precomputed(&mut self, key: usize, ts: i64) -> Option<Vec<Element>> {
        let steps = self.precomputed.get_mut(&key)?;
        let index = if self.step <= 0 {
            if ts != self.start {
                return None;
            }
            0
        } else {
            if ts < self.start || (ts - self.start) % self.step != 0 {
                return None;
            }
            usize::try_from((ts - self.start) / self.step).ok()?
        };
        steps.get_mut(index)?.take()
    }

    /// Evaluates `expr` at `ts` (ms).
    pub(crate) fn eval(&mut self, expr: &Expr, ts: i64) -> Result<StepValue> {
        let key = expr as *const Expr as usize;
        if !self.precomputed.is_empty()
            && let Some(vector) = self.take_precomputed(key, ts)
        {
            return Ok(StepValue::Vector(vector));
        }
        if !self.invariant.is_empty() && self.invariant.contains(&key) {
            if let Some(value) = self.invariant_values.get(&key) {
                return Ok(value.clone());
            }
            let value = self.eval_node(expr, ts)?;
            self.invariant_values.insert(key, value.clone());
            return Ok(value);
        }
        self.eval_node(expr, ts)
    }

    fn eval_node(&mut self, expr: &Expr, ts: i64) -> Result<StepValue> {
        match expr {
            Expr::NumberLiteral(number) => Ok(StepValue::Scalar(number.val)),
            Expr::StringLiteral(string) => Ok(StepValue::String(string.val.clone())),
            Expr::Paren(paren) => self.eval(&paren.expr, ts),
            Expr::Unary(unary) => self.eval_unary(unary, ts),
            Expr::VectorSelector(selector) => self
                .eval_vector_selector(selector, ts)
                .map(StepValue::Vector),
            Expr::MatrixSelector(matrix) => {
                let range = duration_ms(&matrix.range);
                self.eval_range_selector(&matrix.vs, range, ts)
                    .map(StepValue::Matrix)
            }
            Expr::Subquery(subquery) => self.eval_subquery(subquery, ts).map(StepValue::Matrix),
            Expr::Aggregate(aggregate) => crate::aggregate::eval(self, aggregate, ts),
            Expr::Binary(binary) => crate::binary::eval(self, binary, ts),
            Expr::Call(call) => crate::functions::eval(self, call, ts),
            Expr::Extension(_) => Err(Error::exec("extension expressions are not supported")),
        }
    }

    /// Evaluates an expression that must yield an instant vector.
    pub(crate) fn eval_vector(&mut self, expr: &Expr, ts: i64) -> Result<Vec<Element>> {
        match self.eval(expr, ts)? {
            StepValue::Vector(vector) => Ok(vector),
            other => Err(Error::exec(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates an expression that must yield a scalar.
    pub(crate) fn eval_scalar(&mut self, expr: &Expr, ts: i64) -> Result<f64> {
        match self.eval(expr, ts)? {
            StepValue::Scalar(value) => Ok(value),
            other => Err(Error::exec(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates an expression that must yield a range vector.
    pub(crate) fn eval_matrix(&mut self, expr: &Expr, ts: i64) -> Result<RangeVector> {
        match self.eval(expr, ts)? {
            StepValue::Matrix(matrix) => Ok(matrix),
            other => Err(Error::exec(format!(
                "expected range vector, got {}",
                other.type_name()
            ))),
        }
    }

    fn eval_unary(&mut self, unary: &UnaryExpr, ts: i64) -> Result<StepValue> {
        match self.eval(&unary.expr, ts)? {
            StepValue::Scalar(value) => Ok(StepValue::Scalar(-value)),
            StepValue::Vector(mut vector) => {
                for element in &mut vector {
                    element.v = -element.v;
                    element.drop_name = true;
                    element.t = ts;
                }
                Ok(StepValue::Vector(vector))
            }
            other => Err(Error::exec(format!(
                "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    /// The decoded series of `selector`, kept for the rest of the query.
    pub(crate) fn loaded(&self, selector: &VectorSelector) -> Result<Rc<Vec<LoadedSeries>>> {
        self.materialized(selector)
    }

    /// The reference time of a selector at `ts`: the `@` time or `ts`, minus the offset.
    pub(crate) fn reference_time(
        &self,
        at: Option<&promql_parser::parser::AtModifier>,
        offset: Option<&promql_parser::parser::Offset>,
        ts: i64,
    ) -> i64 {
        at_ms(at, self.start, self.end)
            .unwrap_or(ts)
            .saturating_sub(offset_ms(offset))
    }

    fn eval_vector_selector(&mut self, selector: &VectorSelector, ts: i64) -> Result<Vec<Element>> {
        let selected = self.select_instant(selector, ts)?;
        Ok(selected.into_iter().map(|(element, _)| element).collect())
    }

    /// The newest sample of each series in the lookback window, with its start timestamp (0 when
    /// unknown).
    pub(crate) fn select_instant(
        &mut self,
        selector: &VectorSelector,
        ts: i64,
    ) -> Result<Vec<(Element, i64)>> {
        let loaded = self.loaded(selector)?;
        let reference = self.reference_time(selector.at.as_ref(), selector.offset.as_ref(), ts);
        let lookback_start = reference.saturating_sub(self.settings.lookback_delta);
        let mut out = Vec::new();
        for series in loaded.iter() {
            let end = series.points.partition_point(|p| p.t <= reference);
            if end == 0 {
                continue;
            }
            let point = series.points[end - 1];
            if point.t <= lookback_start || is_stale_nan(point.v) {
                continue;
            }
            let start_timestamp = series
                .start_timestamps
                .as_ref()
                .and_then(|sts| sts.get(end - 1).copied())
                .unwrap_or(0);
            out.push((
                Element {
                    labels: series.labels.clone(),
                    t: point.t,
                    v: point.v,
                    drop_name: false,
                },
                start_timestamp,
            ));
        }
        self.add_samples(out.len())?;
        Ok(out)
    }

    fn eval_range_selector(
        &mut self,
        selector: &VectorSelector,
        range: i64,
        ts: i64,
    ) -> Result<RangeVector> {
        let loaded = self.loaded(selector)?;
        let window_end = self.reference_time(selector.at.as_ref(), selector.offset.as_ref(), ts);
        let window_start = window_end.saturating_sub(range);
        let mut series_out = Vec::new();
        let mut start_timestamps = Vec::new();
        let mut total = 0;
        for series in loaded.iter() {
            let from = series.points.partition_point(|p| p.t <= window_start);
            let to = series.points.partition_point(|p| p.t <= window_end);
            let kept: Vec<usize> = (from..to)
                .filter(|&i| !is_stale_nan(series.points[i].v))
                .collect();
            if kept.is_empty() {
                continue;
            }
            total += kept.len();
            start_timestamps.push(series.start_timestamps.as_ref().map(|sts| {
                kept.iter()
                    .map(|&i| sts.get(i).copied().unwrap_or(0))
                    .collect()
            }));
            series_out.push(Series {
                labels: series.labels.clone(),
                points: kept.iter().map(|&i| series.points[i]).collect(),
                drop_name: false,
            });
        }
        self.add_samples(total)?;
        Ok(RangeVector {
            series: series_out,
            start_timestamps,
            range,
            window_end,
        })
    }
}
