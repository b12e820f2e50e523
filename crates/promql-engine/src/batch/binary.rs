//! Binary operators over a grid.
//!
//! Both operands are evaluated once for the whole grid. Scalar operands give a value per step;
//! vector operands are matched series by series: every row's matching signature is computed
//! once, the rows of the other side are indexed by signature once, and the per-step loops only
//! check presence and combine numbers with the per-value kernel ([`crate::binary::apply`]).
//! Vector-vector arithmetic and comparisons live in [`matching`].

mod matching;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use prom_model::Labels;

use super::{Batch, Grid, Row};
use crate::binary::{Matching, Op, apply, changes_metric_schema};
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::plan::Binary;

/// How many rows are processed between two interrupt checks.
const INTERRUPT_EVERY: usize = 256;

/// Evaluates a binary expression at every step of `grid`.
pub(super) fn eval(ev: &mut Evaluator<'_>, expr: &Binary, grid: Grid) -> Result<Batch> {
    let (op, return_bool) = (expr.op, expr.return_bool);
    let lhs = super::eval(ev, &expr.lhs, grid)?;
    let rhs = super::eval(ev, &expr.rhs, grid)?;
    let held = lhs.samples() + rhs.samples();
    let batch = match (lhs, rhs) {
        (Batch::Scalar(lhs), Batch::Scalar(rhs)) => Batch::Scalar(
            lhs.iter()
                .zip(&rhs)
                .map(|(&l, &r)| scalar_scalar(op, l, r))
                .collect(),
        ),
        (Batch::Vector(rows), Batch::Scalar(scalars)) => {
            Batch::Vector(vector_scalar(ev, op, rows, &scalars, false, return_bool)?)
        }
        (Batch::Scalar(scalars), Batch::Vector(rows)) => {
            Batch::Vector(vector_scalar(ev, op, rows, &scalars, true, return_bool)?)
        }
        (Batch::Vector(lhs), Batch::Vector(rhs)) => {
            let Some(matching) = &expr.matching else {
                return Err(Error::exec(
                    "vector matching missing between two instant vectors",
                ));
            };
            let rows = if op.is_set() {
                set_operation(ev, op, lhs, rhs, matching, grid)?
            } else {
                matching::vector_vector(ev, op, &lhs, &rhs, matching, return_bool, grid)?
            };
            Batch::Vector(rows)
        }
        (l, r) => {
            return Err(Error::exec(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            )));
        }
    };
    ev.release_samples(held);
    Ok(batch)
}

/// Two scalars: comparisons give 1 or 0.
fn scalar_scalar(op: Op, lhs: f64, rhs: f64) -> f64 {
    let (value, holds) = apply(op, lhs, rhs);
    if op.is_comparison() {
        if holds { 1.0 } else { 0.0 }
    } else {
        value
    }
}

/// A vector and a scalar per step (`scalar_on_left`: the scalar is the left operand).
///
/// Without `bool`, a comparison keeps the vector's value where it holds. Row by row: an
/// aggregation applies it to rows as they stream in.
pub(super) fn vector_scalar(
    ev: &mut Evaluator<'_>,
    op: Op,
    rows: Vec<Row>,
    scalars: &[f64],
    scalar_on_left: bool,
    return_bool: bool,
) -> Result<Vec<Row>> {
    let marks_name = changes_metric_schema(op) || return_bool;
    let mut out = Vec::with_capacity(rows.len());
    for (index, mut row) in rows.into_iter().enumerate() {
        if index % INTERRUPT_EVERY == 0 {
            ev.check_interrupt("query execution")?;
        }
        let mut any = false;
        for (slot, &scalar) in row.values.iter_mut().zip(scalars) {
            let Some(vector_value) = *slot else { continue };
            let (l, r) = if scalar_on_left {
                (scalar, vector_value)
            } else {
                (vector_value, scalar)
            };
            let (mut value, mut keep) = apply(op, l, r);
            if op.is_comparison() && scalar_on_left {
                value = vector_value;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            *slot = keep.then_some(value);
            any |= keep;
        }
        if !any {
            continue;
        }
        row.drop_name |= marks_name;
        out.push(row);
    }
    Ok(out)
}

/// `and`, `or`, `unless` between two vectors: rows pass through unchanged where (`and`) or
/// where not (`unless`) the other side has a series with the same signature at that step; `or`
/// is the left rows followed by the right rows at the steps the left side lacks their signature.
fn set_operation(
    ev: &mut Evaluator<'_>,
    op: Op,
    lhs: Vec<Row>,
    rhs: Vec<Row>,
    matching: &Matching,
    grid: Grid,
) -> Result<Vec<Row>> {
    let (filtered, other) = match op {
        Op::Or => (rhs, lhs),
        _ => (lhs, rhs),
    };
    // Signatures of the filtered side, and at which steps the other side has each of them.
    let mut ids: HashMap<Labels, usize> = HashMap::new();
    let mut filtered_ids = Vec::with_capacity(filtered.len());
    for (index, row) in filtered.iter().enumerate() {
        if index % INTERRUPT_EVERY == 0 {
            ev.check_interrupt("query execution")?;
        }
        let next = ids.len();
        filtered_ids.push(*ids.entry(matching.signature(&row.labels)).or_insert(next));
    }
    let mut present: Vec<Option<Vec<bool>>> = vec![None; ids.len()];
    for (index, row) in other.iter().enumerate() {
        if index % INTERRUPT_EVERY == 0 {
            ev.check_interrupt("query execution")?;
        }
        let Some(&id) = ids.get(&matching.signature(&row.labels)) else {
            continue;
        };
        let steps = present[id].get_or_insert_with(|| vec![false; grid.len]);
        for (seen, value) in steps.iter_mut().zip(&row.values) {
            *seen |= value.is_some();
        }
    }
    // `and` keeps values where the signature is present, `or` and `unless` where it is absent.
    let keep_where_present = op == Op::And;
    let mut out = Vec::with_capacity(filtered.len() + if op == Op::Or { other.len() } else { 0 });
    if op == Op::Or {
        out.extend(other);
    }
    for (mut row, id) in filtered.into_iter().zip(filtered_ids) {
        match &present[id] {
            None if keep_where_present => continue,
            None => {}
            Some(steps) => {
                let mut any = false;
                for (value, &seen) in row.values.iter_mut().zip(steps) {
                    if seen != keep_where_present {
                        *value = None;
                    }
                    any |= value.is_some();
                }
                if !any {
                    continue;
                }
            }
        }
        out.push(row);
    }
    Ok(out)
}
