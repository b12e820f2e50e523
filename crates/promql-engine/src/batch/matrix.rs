//! A range vector at the root of an instant query: `foo[5m]` (with `offset`/`@`) or a subquery
//! `expr[1h:1m]`, the only place a range vector is a result.
//!
//! A matrix selector yields each selected series' samples in its window `(end - range, end]`,
//! stale markers left out and series without samples dropped; `end` is the query time (or the
//! `@` time) minus the offset. A subquery evaluates its inner expression with [`super::eval`]
//! over the inner timestamps of its window, aligned to absolute multiples of the subquery step
//! (as range functions over subqueries see them), in segments of at most [`MAX_SEGMENT`] inner
//! steps so a fine step never builds a longer grid than a range query may have. Inner rows
//! with the same labels are one series (marked for name removal if any of them is); series are
//! listed by labels. Every point returned counts as a sample held.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use prom_model::{Labels, is_stale_nan};

use super::Grid;
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::plan::{Node, NodeKind, ResultType, Selector, Subquery};
use crate::value::{Point, Series};

/// Most inner steps of a subquery evaluated at once: a range query's limit of points per
/// series.
const MAX_SEGMENT: usize = 11_000;

/// Evaluates `expr`, whose type is a range vector, at `ts`.
pub(crate) fn eval(ev: &mut Evaluator<'_>, node: &Node, ts: i64) -> Result<Vec<Series>> {
    match &node.kind {
        NodeKind::MatrixSelector { selector, range_ms } => {
            self::selector(ev, selector, *range_ms, ts)
        }
        NodeKind::Subquery(subquery) => self::subquery(ev, subquery, ts),
        _ => Err(Error::exec(format!(
            "expected range vector, got {}",
            match node.result_type {
                ResultType::Scalar => "scalar",
                ResultType::Vector => "vector",
                ResultType::Matrix => "matrix",
                ResultType::String => "string",
            }
        ))),
    }
}

/// The samples of a matrix selector's window at `ts`.
fn selector(
    ev: &mut Evaluator<'_>,
    selector: &Selector,
    range_ms: i64,
    ts: i64,
) -> Result<Vec<Series>> {
    let loaded = ev.materialized(selector)?;
    let end = selector.reference_time(ts);
    let start = end.saturating_sub(range_ms);
    let mut out = Vec::new();
    let mut total = 0;
    for series in loaded.iter() {
        let from = series.points.partition_point(|p| p.t <= start);
        let to = series.points.partition_point(|p| p.t <= end);
        let points: Vec<Point> = series.points[from..to.max(from)]
            .iter()
            .copied()
            .filter(|point| !is_stale_nan(point.v))
            .collect();
        if points.is_empty() {
            continue;
        }
        total += points.len();
        out.push(Series {
            labels: series.labels.clone(),
            points,
            drop_name: false,
        });
    }
    ev.add_samples(total)?;
    Ok(out)
}

/// A series being assembled from a subquery's inner rows.
#[derive(Debug, Default)]
struct Assembling {
    drop_name: bool,
    points: Vec<Point>,
}

/// The inner points of a subquery's window at `ts`.
fn subquery(ev: &mut Evaluator<'_>, subquery: &Subquery, ts: i64) -> Result<Vec<Series>> {
    let step = subquery.step_ms;
    let end = subquery.reference_time(ts);
    let first = super::subquery::first_inner(end.saturating_sub(subquery.range_ms), step);
    let mut by_labels: BTreeMap<Labels, Assembling> = BTreeMap::new();
    let mut from = first;
    while from <= end {
        let remaining = usize::try_from((end - from) / step)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let len = remaining.min(MAX_SEGMENT);
        let segment = Grid {
            start: from,
            step: if len > 1 { step } else { 0 },
            len,
        };
        // The segment's samples stay counted: they are the result's points.
        let batch = super::eval(ev, &subquery.expr, segment)?;
        let rows = super::subquery::inner_rows(batch)?;
        for row in rows {
            let series = by_labels.entry(row.labels).or_default();
            series.drop_name |= row.drop_name;
            for (index, value) in row.values.into_iter().enumerate() {
                if let Some(v) = value {
                    series.points.push(Point {
                        t: segment.ts(index),
                        v,
                    });
                }
            }
        }
        let span = i64::try_from(len).unwrap_or(i64::MAX).saturating_mul(step);
        from = match from.checked_add(span) {
            Some(next) => next,
            None => break,
        };
    }
    Ok(by_labels
        .into_iter()
        .map(|(labels, mut series)| {
            // Rows sharing labels (differing in name removal) each add their points in turn.
            if !series.points.is_sorted_by_key(|point| point.t) {
                series.points.sort_by_key(|point| point.t);
            }
            Series {
                labels,
                points: series.points,
                drop_name: series.drop_name,
            }
        })
        .collect())
}
