//! Subqueries: `expr[range:step]` evaluates `expr` at every multiple of `step` in the window.
//!
//! Inner results are kept per node and inner timestamp, because consecutive outer steps (of a
//! range query, or of an enclosing subquery) share most inner timestamps: they are aligned to
//! absolute multiples of the subquery step. The kept results are samples held in memory like any
//! other, so they count against `--query.max-samples` as they are stored, and they are kept
//! compactly: each distinct label set once per node, each point as a label-set number and a
//! value (16 bytes), not as an element with its own copy of the labels. A fine-step subquery
//! such as `count_over_time(x[8h:1ms])` therefore fails with the sample limit's error after
//! holding at most the limit's worth of 16-byte points, and checks the deadline at every inner
//! step.

use std::collections::{BTreeMap, HashMap};

use prom_model::Labels;
use promql_parser::parser::SubqueryExpr;

use crate::error::{Error, Result};
use crate::eval::{Evaluator, RangeVector, StepValue};
use crate::parse::duration_ms;
use crate::value::{Point, Series};

/// The kept inner results of one subquery node.
#[derive(Debug, Default)]
pub(crate) struct SubqueryCache {
    /// Distinct label sets seen, numbered by position.
    labels: Vec<Labels>,
    ids: HashMap<Labels, u32>,
    /// Inner results by inner timestamp.
    steps: BTreeMap<i64, CachedStep>,
}

/// One inner result.
#[derive(Debug)]
enum CachedStep {
    Scalar(f64),
    Vector(Vec<CachedPoint>),
}

impl CachedStep {
    fn samples(&self) -> usize {
        match self {
            CachedStep::Scalar(_) => 1,
            CachedStep::Vector(points) => points.len(),
        }
    }
}

/// One element of an inner vector: its label set's number, name removal flag and value.
#[derive(Debug, Clone, Copy)]
struct CachedPoint {
    id: u32,
    drop_name: bool,
    v: f64,
}

impl SubqueryCache {
    /// The number of `labels`, adding it if new.
    fn intern(&mut self, labels: Labels) -> Result<u32> {
        if let Some(id) = self.ids.get(&labels) {
            return Ok(*id);
        }
        let id = u32::try_from(self.labels.len())
            .map_err(|_| Error::exec("subquery produced more than 2^32 series"))?;
        self.labels.push(labels.clone());
        self.ids.insert(labels, id);
        Ok(id)
    }

    /// Drops the results before `first`; returns how many samples they held.
    fn forget_before(&mut self, first: i64) -> usize {
        let kept = self.steps.split_off(&first);
        let dropped = std::mem::replace(&mut self.steps, kept);
        dropped.values().map(CachedStep::samples).sum()
    }
}

/// A series being assembled from inner results.
struct Assembling {
    drop_name: bool,
    points: Vec<Point>,
}

impl Evaluator<'_> {
    /// A subquery's step in ms: its own, or the engine's default evaluation interval when it
    /// has none (at least 1).
    pub(crate) fn subquery_step(&self, subquery: &SubqueryExpr) -> i64 {
        subquery
            .step
            .as_ref()
            .map(duration_ms)
            .filter(|step| *step > 0)
            .unwrap_or(self.settings.default_subquery_step)
            .max(1)
    }

    /// Evaluates a subquery at `ts`: the range vector of its inner expression over the window.
    pub(crate) fn eval_subquery(
        &mut self,
        subquery: &SubqueryExpr,
        ts: i64,
    ) -> Result<RangeVector> {
        let range = duration_ms(&subquery.range);
        let step = self.subquery_step(subquery);
        let window_end = self.reference_time(subquery.at.as_ref(), subquery.offset.as_ref(), ts);
        let window_start = window_end.saturating_sub(range);
        let mut first = step * (window_start / step);
        if first <= window_start {
            first = first.saturating_add(step);
        }
        let saved_samples = self.step_samples;
        let key = subquery as *const SubqueryExpr as usize;
        let mut cache = self.subquery_cache.remove(&key).unwrap_or_default();
        let forgotten = cache.forget_before(first);
        self.cached_samples = self.cached_samples.saturating_sub(forgotten);
        let outcome = self.fill_window(subquery, &mut cache, (first, window_end, step));
        self.subquery_cache.insert(key, cache);
        let by_id = outcome?;
        self.step_samples = saved_samples;
        let total = by_id.values().map(|series| series.points.len()).sum();
        self.add_samples(total)?;
        let cache = self.subquery_cache.get(&key);
        let mut series: Vec<Series> = by_id
            .into_iter()
            .map(|(id, assembled)| Series {
                labels: cache
                    .and_then(|cache| cache.labels.get(id as usize))
                    .cloned()
                    .unwrap_or_default(),
                points: assembled.points,
                drop_name: assembled.drop_name,
            })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(RangeVector {
            // Subqueries cut the propagation of start timestamps.
            start_timestamps: vec![None; series.len()],
            series,
            range,
            window_end,
        })
    }

    /// Evaluates (or takes from `cache`) the inner expression at every inner timestamp from
    /// `first` to `end`, and assembles the points by label set number.
    fn fill_window(
        &mut self,
        subquery: &SubqueryExpr,
        cache: &mut SubqueryCache,
        (first, end, step): (i64, i64, i64),
    ) -> Result<HashMap<u32, Assembling>> {
        let mut by_id: HashMap<u32, Assembling> = HashMap::new();
        let mut assembled = 0usize;
        let scalar_id = cache.intern(Labels::empty())?;
        let mut inner_ts = first;
        while inner_ts <= end {
            self.check_interrupt("expression evaluation")?;
            if !cache.steps.contains_key(&inner_ts) {
                let before = self.step_samples;
                let value = self.eval(&subquery.expr, inner_ts)?;
                self.step_samples = before;
                let cached = match value {
                    StepValue::Scalar(v) => CachedStep::Scalar(v),
                    StepValue::Vector(vector) => {
                        let mut points = Vec::with_capacity(vector.len());
                        for element in vector {
                            points.push(CachedPoint {
                                id: cache.intern(element.labels)?,
                                drop_name: element.drop_name,
                                v: element.v,
                            });
                        }
                        CachedStep::Vector(points)
                    }
                    other => {
                        return Err(Error::exec(format!(
                            "subquery is only allowed on instant vector, got {}",
                            other.type_name()
                        )));
                    }
                };
                self.cached_samples += cached.samples();
                cache.steps.insert(inner_ts, cached);
            }
            let Some(cached) = cache.steps.get(&inner_ts) else {
                return Err(Error::exec("subquery result missing from its cache"));
            };
            // The window's points are held twice: in the cache and in the result.
            assembled += cached.samples();
            self.check_samples(assembled)?;
            let mut push = |id: u32, drop_name: bool, v: f64| {
                let series = by_id.entry(id).or_insert_with(|| Assembling {
                    drop_name,
                    points: Vec::new(),
                });
                series.drop_name |= drop_name;
                series.points.push(Point { t: inner_ts, v });
            };
            match cached {
                CachedStep::Scalar(v) => push(scalar_id, false, *v),
                CachedStep::Vector(points) => {
                    for point in points {
                        push(point.id, point.drop_name, point.v);
                    }
                }
            }
            inner_ts = match inner_ts.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
        Ok(by_id)
    }
}
