//! Per-query evaluation state: selector data, sample accounting, annotations.
//!
//! The batch path (`crate::batch`) evaluates the query's plan (`crate::plan`) over an
//! [`Evaluator`]. Every selector's series are selected from the [`Queryable`] once per query
//! (see [`Evaluator::prefetch`]), before evaluation, except that a selector read once from a
//! store streaming in label order is selected when its read starts and read as the store
//! streams it; their samples are decoded only when read: a selector read once block by block,
//! each block dropped once consumed, any other for the whole query (see [`selection`]). The
//! samples held are counted against the sample limit ([`Evaluator::add_samples`]).

mod selection;
pub(crate) use selection::decode_points;

use prom_model::Labels;

use crate::annotations::Annotations;
use crate::budget::{HELD_SAMPLE_BYTES, Reservation};
use crate::engine::EvalSettings;
use crate::error::{Error, Result};
use crate::plan::{Node, NodeKind, Plan, Selector};
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
            step_samples: 0,
            peak_held: 0,
            reservation: std::sync::Arc::clone(&settings.reservation),
        }
    }

    /// Selects the series of every selector of `plan` for the whole query (or defers the
    /// selection to the selector's read, see [`selection`]); their samples are decoded when
    /// read.
    pub(crate) fn prefetch(&mut self, plan: &Plan) -> Result<()> {
        self.selections.reserve(plan.selectors);
        self.plan(plan.root(), &PlanPath::default(), 0)
    }

    fn plan(&mut self, node: &Node, path: &PlanPath, range: i64) -> Result<()> {
        match &node.kind {
            NodeKind::VectorSelector(selector) => self.load(selector, path, range),
            NodeKind::MatrixSelector { selector, range_ms } => self.load(selector, path, *range_ms),
            NodeKind::Neg(inner) => self.plan(inner, path, range),
            NodeKind::Binary(binary) => {
                let mut inner = path.clone();
                inner.func = None;
                self.plan(&binary.lhs, &inner, 0)?;
                self.plan(&binary.rhs, &inner, 0)
            }
            NodeKind::Aggregate(aggregate) => {
                let mut inner = path.clone();
                inner.func = Some(aggregate.op.name().to_string());
                inner.grouping = aggregate.grouping.labels.clone();
                inner.by = !aggregate.grouping.without;
                if let Some(param) = &aggregate.param {
                    self.plan(param, path, 0)?;
                }
                self.plan(&aggregate.expr, &inner, 0)
            }
            NodeKind::Call { function, args } => {
                let mut inner = path.clone();
                inner.func = Some(function.name().to_string());
                for arg in args {
                    self.plan(arg, &inner, 0)?;
                }
                Ok(())
            }
            NodeKind::Subquery(subquery) => {
                let mut inner = path.clone();
                inner.subquery_offset = inner.subquery_offset.saturating_add(subquery.offset_ms);
                inner.subquery_range = inner.subquery_range.saturating_add(subquery.range_ms);
                if let Some(at) = subquery.at_ms {
                    inner.subquery_offset = subquery.offset_ms;
                    inner.subquery_range = subquery.range_ms;
                    inner.subquery_at = Some(at);
                }
                inner.func = None;
                inner.in_subquery = true;
                self.plan(&subquery.expr, &inner, 0)
            }
            NodeKind::Number(_) | NodeKind::String(_) => Ok(()),
        }
    }

    fn load(&mut self, selector: &Selector, path: &PlanPath, range: i64) -> Result<()> {
        let (mut start, mut end) = (self.start, self.end);
        if let Some(at) = path.subquery_at {
            start = at;
            end = at;
        }
        // A selector's own `@` pins it: enclosing subqueries' ranges and offsets move only the
        // evaluation times, which the `@` overrides.
        let mut subquery_range = path.subquery_range;
        let mut subquery_offset = path.subquery_offset;
        if let Some(at) = selector.at_ms {
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
        let offset = selector.offset_ms;
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
            matcher_sets: selector.matcher_sets.clone(),
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
}
