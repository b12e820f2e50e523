//! Range functions over subqueries.

use promql_parser::parser::Call;

use super::{Batch, Grid};
use crate::error::Result;
use crate::eval::Evaluator;

/// `f(<expr>[range:step])` for a range function `f`; `None` when `call` is something else.
pub(super) fn range_function(
    _ev: &mut Evaluator<'_>,
    _call: &Call,
    _grid: Grid,
) -> Result<Option<Batch>> {
    Ok(None)
}
