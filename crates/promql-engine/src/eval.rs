//! Per-query evaluation state: selector data, sample accounting, annotations.
//!
//! The batch path (`crate::batch`) evaluates the expression over an [`Evaluator`]. Selector
//! data is loaded from the [`Queryable`] once per query (see [`Evaluator::prefetch`]) and then
//! sliced per step, so evaluation never goes back to storage; the samples held are counted
//! against the sample limit ([`Evaluator::add_samples`]).

mod selection;

use std::rc::Rc;

use prom_model::Labels;
use promql_parser::parser::{Expr, VectorSelector};

use crate::annotations::Annotations;
use crate::budget::{HELD_SAMPLE_BYTES, Reservation};
use crate::engine::EvalSettings;
use crate::error::{Error, Result};
use crate::parse::{at_ms, duration_ms, matcher_sets, offset_ms};
use crate::storage::{Queryable, SelectHints};
use crate::value::{Point, Series};

/// A range vector at one evaluation step: series with the points of their window (the
/// context range functions' kernels read: the window's length and end, whether it holds series).
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeVector {
    pub(crate) series: Vec<Series>,
    /// Window length in ms.
    pub(crate) range: i64,
    /// End of the window (inclusive), i.e. evaluation time minus offset, or the `@` time.
    pub(crate) window_end: i64,
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
    /// Step-invariant (`@`-pinned) sub-expressions of a range query, by node address.
    invariant: std::collections::HashSet<usize>,
    /// Samples held by the batches alive (see [`Evaluator::add_samples`]).
    pub(crate) step_samples: usize,
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
            invariant: std::collections::HashSet::new(),
            step_samples: 0,
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

    /// Accounts for `count` more samples held.
    pub(crate) fn add_samples(&mut self, count: usize) -> Result<()> {
        self.step_samples += count;
        self.check_samples(0)
    }

    /// Fails if the samples held plus `extra` exceed the limit.
    ///
    /// A new peak of samples held is reserved from the memory budget.
    pub(crate) fn check_samples(&mut self, extra: usize) -> Result<()> {
        let held = self.step_samples.saturating_add(extra);
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

    /// Stops counting `count` samples as held (a batch was consumed).
    pub(crate) fn release_samples(&mut self, count: usize) {
        self.step_samples = self.step_samples.saturating_sub(count);
    }

    /// Whether `expr` is the root of a step-invariant (`@`-pinned) sub-expression of a range
    /// query: its value is the same at every step.
    pub(crate) fn is_invariant(&self, expr: &Expr) -> bool {
        !self.invariant.is_empty() && self.invariant.contains(&(expr as *const Expr as usize))
    }

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
}
