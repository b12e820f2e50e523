//! Upstream's extra check: an instant query rewritten so that every selector and subquery
//! without `@` is pinned to the evaluation time must give the same result at other times.

use std::time::{Duration, SystemTime};

use promql_parser::parser::{AtModifier, Expr};

/// Functions whose result depends on the evaluation time itself (no rewrite for those).
const UNSAFE_FUNCTIONS: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
];

fn system_time(ms: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(magnitude)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// Pins selectors and subqueries; returns false if the expression uses an unsafe function.
fn pin(expr: &mut Expr, at: &AtModifier) -> bool {
    match expr {
        Expr::VectorSelector(selector) => {
            selector.at.get_or_insert_with(|| at.clone());
            true
        }
        Expr::MatrixSelector(matrix) => {
            matrix.vs.at.get_or_insert_with(|| at.clone());
            true
        }
        Expr::Subquery(subquery) => {
            // Selectors inside a pinned subquery keep their own timing.
            subquery.at.get_or_insert_with(|| at.clone());
            is_safe(&subquery.expr)
        }
        Expr::Paren(paren) => pin(&mut paren.expr, at),
        Expr::Unary(unary) => pin(&mut unary.expr, at),
        Expr::Binary(binary) => pin(&mut binary.lhs, at) & pin(&mut binary.rhs, at),
        Expr::Aggregate(aggregate) => {
            let mut safe = true;
            if let Some(param) = &mut aggregate.param {
                safe &= pin(param, at);
            }
            safe & pin(&mut aggregate.expr, at)
        }
        Expr::Call(call) => {
            let mut safe = !UNSAFE_FUNCTIONS.contains(&call.func.name);
            for arg in &mut call.args.args {
                safe &= pin(arg, at);
            }
            safe
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => true,
    }
}

fn is_safe(expr: &Expr) -> bool {
    let mut copy = expr.clone();
    let Some(epoch) = system_time(0) else {
        return true;
    };
    pin(&mut copy, &AtModifier::At(epoch))
}

/// The rewritten expression, its text and the evaluation times to run it at.
pub(crate) fn variants(expr: &Expr, time: i64) -> Vec<(Expr, String, i64)> {
    let Some(at) = system_time(time) else {
        return Vec::new();
    };
    let mut pinned = expr.clone();
    if !pin(&mut pinned, &AtModifier::At(at)) {
        return Vec::new();
    }
    let text = pinned.to_string();
    let times: Vec<i64> = if time == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * time, 0, time / 5, time, 10 * time]
    };
    times
        .into_iter()
        .map(|t| (pinned.clone(), text.clone(), t))
        .collect()
}
