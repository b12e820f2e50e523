//! Aggregation operators over a grid.

use promql_parser::parser::AggregateExpr;

use super::{Batch, Grid};
use crate::error::Result;
use crate::eval::Evaluator;

/// Evaluates an aggregation at every step of `grid`; `None` leaves it to the step-wise path.
pub(super) fn eval(
    _ev: &mut Evaluator<'_>,
    _expr: &AggregateExpr,
    _grid: Grid,
) -> Result<Option<Batch>> {
    Ok(None)
}
