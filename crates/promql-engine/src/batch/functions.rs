//! Functions of instant vectors and scalars over a grid.
//!
//! Every function except the range functions (see [`super::selector`] and [`super::subquery`])
//! is evaluated here (`info` in [`super::info`]) for all steps at
//! once: scalar arguments are evaluated over the grid once, labels are rewritten once per
//! series, and per-step work touches only numbers. The per-value kernels live in the
//! function library (`functions::math_function`, `round_to`, `clamp`, `date_value`, `Relabel`,
//! `histogram::bucket_quantile`, ...).

mod histogram;
#[cfg(test)]
mod tests;

use prom_model::Labels;

use super::{Batch, Grid, Row};
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::functions::{
    Relabel, absent_labels, clamp, date_value, go_max, go_min, label_order, math_function,
    note_sort, round_to, string_arg,
};
use crate::plan::{Function, Node, NodeKind};

/// Evaluates a function call at every step of `grid`; `None` for a range function (those are
/// evaluated by the selector and subquery paths) or an unknown name.
pub(super) fn eval(
    ev: &mut Evaluator<'_>,
    function: Function,
    args: &[Node],
    grid: Grid,
) -> Result<Option<Batch>> {
    if function.range_arg().is_some() {
        return Ok(None);
    }
    let name = function.name();
    let secs = |ms: i64| ms as f64 / 1000.0;
    let constant = |value: f64| Batch::Scalar(vec![value; grid.len]);
    let batch = match function {
        Function::Time => Batch::Scalar(grid.timestamps().map(secs).collect()),
        Function::Pi => constant(std::f64::consts::PI),
        Function::Start => constant(secs(ev.start)),
        Function::End => constant(secs(ev.end)),
        Function::Range => constant(secs(ev.end - ev.start)),
        Function::Step => constant(secs(ev.step)),
        Function::MaxOf | Function::MinOf => {
            let a = scalar(ev, args, 0, grid)?;
            let b = scalar(ev, args, 1, grid)?;
            let pick = if function == Function::MaxOf {
                go_max
            } else {
                go_min
            };
            Batch::Scalar(a.into_iter().zip(b).map(|(a, b)| pick(a, b)).collect())
        }
        Function::Vector => {
            let values = scalar(ev, args, 0, grid)?;
            Batch::Vector(vec![Row {
                labels: Labels::empty(),
                drop_name: false,
                values: values.into_iter().map(Some).collect(),
            }])
        }
        Function::Scalar => {
            let rows = vector(ev, args, 0, grid)?;
            let mut found: Vec<Option<f64>> = vec![None; grid.len];
            let mut count = vec![0usize; grid.len];
            for row in &rows {
                for (step, value) in row.values.iter().enumerate() {
                    if let Some(v) = value {
                        count[step] += 1;
                        found[step] = Some(*v);
                    }
                }
            }
            Batch::Scalar(
                found
                    .into_iter()
                    .zip(count)
                    .map(|(value, count)| match (value, count) {
                        (Some(v), 1) => v,
                        _ => f64::NAN,
                    })
                    .collect(),
            )
        }
        Function::Absent => {
            let rows = vector(ev, args, 0, grid)?;
            let mut values = vec![Some(1.0); grid.len];
            for row in &rows {
                for (slot, value) in values.iter_mut().zip(&row.values) {
                    if value.is_some() {
                        *slot = None;
                    }
                }
            }
            if values.iter().all(Option::is_none) {
                Batch::Vector(Vec::new())
            } else {
                let labels = args.first().map(absent_labels).unwrap_or_default();
                Batch::Vector(vec![Row {
                    labels,
                    drop_name: false,
                    values,
                }])
            }
        }
        Function::LabelReplace | Function::LabelJoin => {
            let relabel = Relabel::of(name, args)?;
            let mut rows = vector(ev, args, 0, grid)?;
            for (index, row) in rows.iter_mut().enumerate() {
                if index % 256 == 0 {
                    ev.check_interrupt("query execution")?;
                }
                relabel.apply(&mut row.labels, &mut row.drop_name);
            }
            // Rows that now share a label set stay apart: a step where two of them hold a
            // value fails when the query finishes, as it does step by step.
            Batch::Vector(rows)
        }
        Function::Sort | Function::SortDesc | Function::SortByLabel | Function::SortByLabelDesc => {
            sort(ev, function, args, grid)?
        }
        Function::Timestamp => {
            let arg = args
                .first()
                .ok_or_else(|| Error::exec("missing argument 0"))?;
            let mut rows = match &arg.kind {
                NodeKind::VectorSelector(selector) => {
                    super::selector::instant_times(ev, selector, grid, |t, _| secs(t))?
                }
                _ => {
                    let mut rows = vector(ev, args, 0, grid)?;
                    for row in &mut rows {
                        for (step, value) in row.values.iter_mut().enumerate() {
                            if value.is_some() {
                                *value = Some(secs(grid.ts(step)));
                            }
                        }
                    }
                    rows
                }
            };
            for row in &mut rows {
                row.drop_name = true;
            }
            Batch::Vector(rows)
        }
        Function::StartTimestamp => match args.first().map(|arg| &arg.kind) {
            // Start timestamps are only known straight out of a selector.
            Some(NodeKind::VectorSelector(selector)) => {
                let mut rows =
                    super::selector::instant_times(ev, selector, grid, |_, start| secs(start))?;
                for row in &mut rows {
                    row.drop_name = true;
                }
                Batch::Vector(rows)
            }
            _ => {
                vector(ev, args, 0, grid)?;
                Batch::Vector(Vec::new())
            }
        },
        Function::Info => super::info::eval(ev, args, grid)?,
        Function::HistogramQuantile => histogram::quantile(ev, args, grid)?,
        Function::HistogramFraction => histogram::fraction(ev, args, grid)?,
        Function::HistogramQuantiles => histogram::quantiles(ev, args, grid)?,
        Function::HistogramCount
        | Function::HistogramSum
        | Function::HistogramAvg
        | Function::HistogramStddev
        | Function::HistogramStdvar => {
            // Only native histograms carry these; float samples are ignored.
            vector(ev, args, 0, grid)?;
            Batch::Vector(Vec::new())
        }
        Function::Round => {
            let to_nearest = if args.len() > 1 {
                scalar(ev, args, 1, grid)?
            } else {
                vec![1.0; grid.len]
            };
            let inverse: Vec<f64> = to_nearest.iter().map(|to| 1.0 / to).collect();
            let rows = vector(ev, args, 0, grid)?;
            map_rows(rows, |step, v| Some(round_to(v, inverse[step])))
        }
        Function::Clamp | Function::ClampMin | Function::ClampMax => {
            let rows = vector(ev, args, 0, grid)?;
            let (min, max) = match function {
                Function::Clamp => (scalar(ev, args, 1, grid)?, scalar(ev, args, 2, grid)?),
                Function::ClampMin => (scalar(ev, args, 1, grid)?, vec![f64::INFINITY; grid.len]),
                _ => (
                    vec![f64::NEG_INFINITY; grid.len],
                    scalar(ev, args, 1, grid)?,
                ),
            };
            map_rows(rows, |step, v| {
                let (min, max) = (min[step], max[step]);
                // An empty range empties the vector at that step.
                (max >= min || min.is_nan() || max.is_nan()).then(|| clamp(v, min, max))
            })
        }
        _ if function.is_date() => {
            if args.is_empty() {
                Batch::Vector(vec![Row {
                    labels: Labels::empty(),
                    drop_name: false,
                    values: grid
                        .timestamps()
                        .map(|ts| Some(date_value(name, (ts / 1000) as f64)))
                        .collect(),
                }])
            } else {
                let rows = vector(ev, args, 0, grid)?;
                map_rows(rows, |_, v| Some(date_value(name, v)))
            }
        }
        _ => match math_function(name) {
            Some(function) => {
                let rows = vector(ev, args, 0, grid)?;
                map_rows(rows, |_, v| Some(function(v)))
            }
            None => return Ok(None),
        },
    };
    Ok(Some(batch))
}

/// Scalar argument `index` at every step.
pub(super) fn scalar(
    ev: &mut Evaluator<'_>,
    args: &[Node],
    index: usize,
    grid: Grid,
) -> Result<Vec<f64>> {
    let arg = args
        .get(index)
        .ok_or_else(|| Error::exec(format!("missing argument {index}")))?;
    let batch = super::eval(ev, arg, grid)?;
    super::release(ev, &batch);
    batch.into_scalar()
}

/// Instant-vector argument `index` at every step; its samples are no longer counted as held
/// (the function's result, which replaces it, is).
pub(super) fn vector(
    ev: &mut Evaluator<'_>,
    args: &[Node],
    index: usize,
    grid: Grid,
) -> Result<Vec<Row>> {
    let arg = args
        .get(index)
        .ok_or_else(|| Error::exec(format!("missing argument {index}")))?;
    let batch = super::eval(ev, arg, grid)?;
    super::release(ev, &batch);
    batch.into_vector()
}

/// Maps every present value with `function(step, value)` (`None` removes it) and marks the
/// rows for name removal; rows left without values are dropped.
fn map_rows(mut rows: Vec<Row>, function: impl Fn(usize, f64) -> Option<f64>) -> Batch {
    for row in &mut rows {
        row.drop_name = true;
        for (step, value) in row.values.iter_mut().enumerate() {
            if let Some(v) = *value {
                *value = function(step, v);
            }
        }
    }
    rows.retain(|row| row.values.iter().any(Option::is_some));
    Batch::Vector(rows)
}

/// `sort`, `sort_desc`, `sort_by_label`, `sort_by_label_desc`.
///
/// The label orders are the same at every step, so the rows are sorted once. The value orders
/// differ from step to step while rows have one order: rows are ordered by the first step at
/// which they have a value, then by that value, which is each step's order for an instant
/// query (and a subquery step) and the order in which a step-by-step evaluation first lists
/// them otherwise. A range query's result is sorted by labels in the end anyway.
fn sort(ev: &mut Evaluator<'_>, function: Function, args: &[Node], grid: Grid) -> Result<Batch> {
    note_sort(ev, function.name());
    let mut rows = vector(ev, args, 0, grid)?;
    match function {
        Function::Sort | Function::SortDesc => {
            let order = if function == Function::Sort {
                crate::aggregate::ascending_nan_last
            } else {
                crate::aggregate::descending_nan_last
            };
            let first = |row: &Row| {
                row.values
                    .iter()
                    .enumerate()
                    .find_map(|(step, value)| value.map(|v| (step, v)))
                    .unwrap_or((usize::MAX, f64::NAN))
            };
            rows.sort_by(|a, b| {
                let ((step_a, a), (step_b, b)) = (first(a), first(b));
                step_a.cmp(&step_b).then_with(|| order(a, b))
            });
        }
        _ => {
            let mut labels = Vec::new();
            for index in 1..args.len() {
                labels.push(string_arg(args, index)?);
            }
            let descending = function == Function::SortByLabelDesc;
            rows.sort_by(|a, b| label_order(&labels, descending, &a.labels, &b.labels));
        }
    }
    Ok(Batch::Vector(rows))
}
