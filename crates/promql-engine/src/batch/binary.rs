//! Binary operators over a grid.

use promql_parser::parser::BinaryExpr;

use super::{Batch, Grid};
use crate::error::Result;
use crate::eval::Evaluator;

/// Evaluates a binary expression at every step of `grid`; `None` leaves it to the step-wise
/// path.
pub(super) fn eval(
    _ev: &mut Evaluator<'_>,
    _expr: &BinaryExpr,
    _grid: Grid,
) -> Result<Option<Batch>> {
    Ok(None)
}
