//! Subqueries: `expr[range:step]` evaluates `expr` at every multiple of `step` in the window.
//!
//! The batch path evaluates them: range functions over a subquery in `batch::subquery`
//! (segments of inner steps shared by consecutive windows), a subquery at the root of an
//! instant query in `batch::matrix`. Both place inner timestamps at absolute multiples of the
//! step given here.

use promql_parser::parser::SubqueryExpr;

use crate::eval::Evaluator;
use crate::parse::duration_ms;

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
}
