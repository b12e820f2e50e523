//! The public entry points: [`Engine`], its options, instant and range queries.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use prom_model::{Labels, METRIC_NAME};
use promql_parser::parser::Expr;

use crate::batch::{self, Batch, Grid};
use crate::budget::{MemoryBudget, Reservation};
use crate::depth::{expr_depth, with_stack};
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::parse::parse_expr;
use crate::plan::{self, Plan, PlanContext, ResultType};
use crate::storage::Queryable;
use crate::value::{Element, Point, QueryResult, Series, Value};

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (default 5m).
    pub lookback_delta: Duration,
    /// Most samples a query may hold at once (default 50,000,000).
    pub max_samples: usize,
    /// Longest a query may run (default 2m).
    pub timeout: Duration,
    /// Step of subqueries written without one (default 1m).
    pub default_subquery_step: Duration,
    /// Memory shared by all queries of this engine and its clones (default: none).
    pub memory_budget: Option<Arc<MemoryBudget>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step: Duration::from_secs(60),
            memory_budget: None,
        }
    }
}

/// Per-query settings.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Overrides the engine's lookback delta.
    pub lookback_delta: Option<Duration>,
    /// Overrides the engine's timeout (the shorter of the two wins).
    pub timeout: Option<Duration>,
    /// Set to `true` (from any thread) to cancel the query.
    pub cancel: Option<Arc<AtomicBool>>,
    /// The query's share of the memory budget, shared with the caller (default: a new one).
    pub reservation: Option<Arc<Reservation>>,
}

/// Settings resolved for one evaluation.
#[derive(Debug)]
pub(crate) struct EvalSettings {
    pub(crate) lookback_delta: i64,
    pub(crate) max_samples: usize,
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: Option<Arc<AtomicBool>>,
    pub(crate) default_subquery_step: i64,
    pub(crate) reservation: Arc<Reservation>,
}

impl EvalSettings {
    /// Fails if the query was cancelled or ran past its deadline.
    pub(crate) fn check_interrupt(&self, phase: &'static str) -> Result<()> {
        if let Some(cancel) = &self.cancel
            && cancel.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(Error::Canceled { phase });
        }
        if let Some(deadline) = self.deadline
            && Instant::now() >= deadline
        {
            return Err(Error::Timeout { phase });
        }
        Ok(())
    }
}

/// A PromQL engine: stateless apart from its options; queries run synchronously.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    options: EngineOptions,
}

fn to_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Engine {
    /// An engine with `options`.
    pub fn new(options: EngineOptions) -> Self {
        Self { options }
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// A reservation from the engine's memory budget for a query starting now: pass it in
    /// [`QueryOptions::reservation`] and count in it what the caller holds for the same query.
    pub fn reservation(&self) -> Arc<Reservation> {
        Arc::new(Reservation::new(self.options.memory_budget.clone()))
    }

    fn settings(&self, query: &QueryOptions) -> EvalSettings {
        let timeout = match query.timeout {
            Some(timeout) => timeout.min(self.options.timeout),
            None => self.options.timeout,
        };
        EvalSettings {
            lookback_delta: to_ms(query.lookback_delta.unwrap_or(self.options.lookback_delta)),
            max_samples: self.options.max_samples,
            deadline: Instant::now().checked_add(timeout),
            cancel: query.cancel.clone(),
            default_subquery_step: to_ms(self.options.default_subquery_step).max(1),
            reservation: query
                .reservation
                .clone()
                .unwrap_or_else(|| self.reservation()),
        }
    }

    /// Evaluates `query` at `time` (ms since the epoch).
    pub fn instant_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        time: i64,
        options: &QueryOptions,
    ) -> Result<QueryResult> {
        let expr = parse_expr(query)?;
        self.instant_query_expr(storage, &expr, query, time, options)
    }

    /// Evaluates an already parsed expression at `time`; `query` is its text, used to place
    /// annotation positions.
    pub fn instant_query_expr(
        &self,
        storage: &dyn Queryable,
        expr: &Expr,
        query: &str,
        time: i64,
        options: &QueryOptions,
    ) -> Result<QueryResult> {
        with_stack(expr_depth(expr), || {
            self.eval_instant(storage, expr, query, time, options)
        })
    }

    fn eval_instant(
        &self,
        storage: &dyn Queryable,
        expr: &Expr,
        query: &str,
        time: i64,
        options: &QueryOptions,
    ) -> Result<QueryResult> {
        let settings = self.settings(options);
        let plan = build_plan(expr, &settings, (time, time, 0))?;
        let root = plan.root();
        let mut ev = Evaluator::new(storage, &settings, time, time, 0);
        ev.prefetch(&plan)?;
        ev.check_interrupt("query execution")?;
        let value = if root.result_type == ResultType::Matrix {
            // A range vector is only a result at the root of an instant query.
            Value::Matrix(finish_matrix(batch::matrix::eval(&mut ev, root, time)?)?)
        } else {
            match batch::eval(&mut ev, root, Grid::new(time, time, 0))? {
                Batch::Scalar(values) => Value::Scalar {
                    t: time,
                    v: values.first().copied().unwrap_or(f64::NAN),
                },
                Batch::String(v) => Value::String { t: time, v },
                Batch::Vector(rows) => {
                    let vector = rows
                        .into_iter()
                        .filter_map(|row| {
                            let v = row.values.first().copied().flatten()?;
                            Some(Element {
                                labels: row.labels,
                                t: time,
                                v,
                                drop_name: row.drop_name,
                            })
                        })
                        .collect();
                    Value::Vector(finish_vector(vector, time)?)
                }
            }
        };
        let (warnings, infos) = ev.annotations.render(query);
        Ok(QueryResult {
            value,
            warnings,
            infos,
        })
    }

    /// Evaluates `query` at every `start + k*step <= end` (ms); the result is a matrix sorted by
    /// labels.
    pub fn range_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        options: &QueryOptions,
    ) -> Result<QueryResult> {
        let expr = parse_expr(query)?;
        self.range_query_expr(storage, &expr, query, start, end, step, options)
    }

    /// Range-query form of [`Engine::instant_query_expr`].
    #[allow(clippy::too_many_arguments)]
    pub fn range_query_expr(
        &self,
        storage: &dyn Queryable,
        expr: &Expr,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        options: &QueryOptions,
    ) -> Result<QueryResult> {
        with_stack(expr_depth(expr), || {
            self.eval_range(storage, expr, query, (start, end, step), options)
        })
    }

    fn eval_range(
        &self,
        storage: &dyn Queryable,
        expr: &Expr,
        query: &str,
        (start, end, step): (i64, i64, i64),
        options: &QueryOptions,
    ) -> Result<QueryResult> {
        if step <= 0 {
            return Err(Error::BadParameter {
                message: "zero or negative query resolution step widths are not accepted. Try a positive integer".to_string(),
            });
        }
        if end < start {
            return Err(Error::BadParameter {
                message: "end timestamp must not be before start time".to_string(),
            });
        }
        // Step times are `start + k * step` with `k * step <= end - start`: with the span
        // representable, no step arithmetic (here or in the fast path) overflows.
        if end.checked_sub(start).is_none() {
            return Err(Error::BadParameter {
                message: "end timestamp too far after start time".to_string(),
            });
        }
        check_range_query_type(expr)?;
        let settings = self.settings(options);
        let plan = build_plan(expr, &settings, (start, end, step))?;
        let mut ev = Evaluator::new(storage, &settings, start, end, step);
        ev.prefetch(&plan)?;
        let grid = Grid::new(start, end, step);
        let series: Vec<Series> = match batch::eval(&mut ev, plan.root(), grid)? {
            Batch::Scalar(values) => vec![Series {
                labels: Labels::empty(),
                points: values
                    .into_iter()
                    .enumerate()
                    .map(|(step, v)| Point {
                        t: grid.ts(step),
                        v,
                    })
                    .collect(),
                drop_name: false,
            }],
            Batch::Vector(rows) => rows
                .into_iter()
                .map(|row| Series {
                    labels: row.labels,
                    points: row
                        .values
                        .into_iter()
                        .enumerate()
                        .filter_map(|(step, v)| {
                            Some(Point {
                                t: grid.ts(step),
                                v: v?,
                            })
                        })
                        .collect(),
                    drop_name: row.drop_name,
                })
                .collect(),
            Batch::String(_) => {
                return Err(Error::exec(
                    "invalid expression type \"string\" for range query, must be Scalar or instant Vector",
                ));
            }
        };
        let value = Value::Matrix(finish_matrix(series)?);
        let (warnings, infos) = ev.annotations.render(query);
        Ok(QueryResult {
            value,
            warnings,
            infos,
        })
    }
}

/// The plan of `expr` for a query over `(start, end, step)` run with `settings`.
pub(crate) fn build_plan(
    expr: &Expr,
    settings: &EvalSettings,
    (start, end, step): (i64, i64, i64),
) -> Result<Plan> {
    plan::build(
        expr,
        &PlanContext {
            start,
            end,
            step,
            lookback: settings.lookback_delta,
            default_subquery_step: settings.default_subquery_step,
        },
    )
}

fn check_range_query_type(expr: &Expr) -> Result<()> {
    let value_type = expr.value_type();
    let name = value_type.to_string();
    if name == "vector" || name == "scalar" {
        return Ok(());
    }
    Err(Error::Parse {
        message: format!(
            "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
            expr_type_word(&name)
        ),
    })
}

fn expr_type_word(name: &str) -> &str {
    match name {
        "matrix" => "range vector",
        other => other,
    }
}

/// Removes `__name__` and the other metadata labels (`__type__`, `__unit__`).
pub(crate) fn drop_metadata_labels(labels: &Labels) -> Labels {
    labels.without(&[METRIC_NAME, "__type__", "__unit__"])
}

/// Applies delayed name removal to an instant vector and rejects duplicate label sets.
fn finish_vector(mut vector: Vec<Element>, time: i64) -> Result<Vec<Element>> {
    for element in &mut vector {
        if element.drop_name {
            element.labels = drop_metadata_labels(&element.labels);
            element.drop_name = false;
        }
        element.t = time;
    }
    let mut seen = std::collections::HashSet::with_capacity(vector.len());
    for element in &vector {
        if !seen.insert(&element.labels) {
            return Err(Error::exec(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(vector)
}

/// Applies delayed name removal to a matrix, merges series that now share labels (failing when
/// they overlap in time) and sorts by labels.
///
/// A stable sort keeps series of equal labels in their order (merged in that order) and costs
/// one comparison per series when the input is already sorted, as a selection is.
fn finish_matrix(mut series: Vec<Series>) -> Result<Vec<Series>> {
    for one in &mut series {
        if one.drop_name {
            one.labels = drop_metadata_labels(&one.labels);
            one.drop_name = false;
        }
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut merged: Vec<Series> = Vec::with_capacity(series.len());
    for one in series {
        match merged.last_mut() {
            Some(existing) if existing.labels == one.labels => {
                existing.points.extend(one.points);
                existing.points.sort_by_key(|p| p.t);
                if existing
                    .points
                    .windows(2)
                    .any(|pair| pair[0].t == pair[1].t)
                {
                    return Err(Error::exec(
                        "vector cannot contain metrics with the same labelset",
                    ));
                }
            }
            _ => merged.push(one),
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &[(&str, &str)], times: &[i64], drop_name: bool) -> Series {
        Series {
            labels: Labels::from_pairs(pairs.to_vec()),
            points: times.iter().map(|&t| Point { t, v: t as f64 }).collect(),
            drop_name,
        }
    }

    #[test]
    fn a_matrix_is_sorted_and_series_sharing_labels_after_name_removal_are_merged() {
        let finished = finish_matrix(vec![
            series(&[("__name__", "b"), ("job", "x")], &[30, 40], true),
            series(&[("job", "w")], &[10], false),
            series(&[("__name__", "a"), ("job", "x")], &[10, 20], true),
            series(&[("__name__", "a"), ("job", "y")], &[10], false),
        ])
        .unwrap_or_else(|error| panic!("{error}"));
        let summary: Vec<(String, Vec<i64>, bool)> = finished
            .iter()
            .map(|s| {
                (
                    s.labels.to_string(),
                    s.points.iter().map(|p| p.t).collect(),
                    s.drop_name,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("{__name__=\"a\", job=\"y\"}".to_string(), vec![10], false),
                ("{job=\"w\"}".to_string(), vec![10], false),
                ("{job=\"x\"}".to_string(), vec![10, 20, 30, 40], false),
            ]
        );
    }

    #[test]
    fn series_sharing_labels_and_a_timestamp_are_an_error() {
        let result = finish_matrix(vec![
            series(&[("__name__", "a"), ("job", "x")], &[10, 20], true),
            series(&[("__name__", "b"), ("job", "x")], &[20], true),
        ]);
        assert!(
            matches!(&result, Err(error) if error.to_string().contains("same labelset")),
            "{result:?}"
        );
    }
}
