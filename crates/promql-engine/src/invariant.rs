//! Step invariance: sub-expressions whose value cannot change with the evaluation time.
//!
//! A selector or subquery pinned with `@` reads the same data at every step, and so does any
//! operator or function (other than the time-dependent ones) over such inputs. The evaluator
//! computes those once per query, as Prometheus does by wrapping them in a step-invariant node.

use std::collections::HashSet;

use promql_parser::parser::Expr;

/// Functions whose value depends on the evaluation time or the sample time itself.
const TIME_DEPENDENT: &[&str] = &[
    "time",
    "timestamp",
    "start_timestamp",
    "predict_linear",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "info",
];

/// Node addresses of the largest step-invariant sub-expressions that read data.
pub(crate) fn invariant_roots(expr: &Expr) -> HashSet<usize> {
    let mut roots = HashSet::new();
    visit(expr, &mut roots);
    roots
}

/// Returns whether `expr` is step invariant; records invariant children of variant parents.
fn visit(expr: &Expr, roots: &mut HashSet<usize>) -> bool {
    let invariant = match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => return true,
        Expr::VectorSelector(selector) => selector.at.is_some(),
        Expr::MatrixSelector(matrix) => matrix.vs.at.is_some(),
        Expr::Subquery(subquery) => {
            if subquery.at.is_some() {
                true
            } else {
                visit(&subquery.expr, roots);
                false
            }
        }
        Expr::Paren(paren) => return visit(&paren.expr, roots),
        Expr::Unary(unary) => return visit(&unary.expr, roots),
        Expr::Binary(binary) => children(&[&binary.lhs, &binary.rhs], roots),
        Expr::Aggregate(aggregate) => {
            let mut kids: Vec<&Expr> = vec![&aggregate.expr];
            if let Some(param) = &aggregate.param {
                kids.push(param);
            }
            children(&kids, roots)
        }
        Expr::Call(call) => {
            let kids: Vec<&Expr> = call.args.args.iter().map(|arg| arg.as_ref()).collect();
            let all = children(&kids, roots);
            all && !TIME_DEPENDENT.contains(&call.func.name) && !kids.is_empty()
        }
        Expr::Extension(_) => false,
    };
    if invariant {
        roots.insert(expr as *const Expr as usize);
    }
    invariant
}

fn children(kids: &[&Expr], roots: &mut HashSet<usize>) -> bool {
    let mut all = true;
    for kid in kids {
        all &= visit(kid, roots);
    }
    if all {
        // The parent is invariant and will be cached as a whole; drop the children's entries.
        for kid in kids {
            roots.remove(&(*kid as *const Expr as usize));
        }
    }
    all
}
