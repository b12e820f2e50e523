//! Glue between `promql-parser`'s AST and the evaluator: parsing, durations, modifiers, matchers.

use std::time::{Duration, SystemTime};

use prom_model::{MatchType, Matcher};
use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::{self, AtModifier, Expr, Offset, VectorSelector};

use crate::error::{Error, Result};

/// Parses a PromQL expression; errors are `bad_data`.
pub fn parse_expr(query: &str) -> Result<Expr> {
    parser::parse(query).map_err(|message| Error::Parse { message })
}

pub(crate) fn duration_ms(duration: &Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn offset_ms(offset: Option<&Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(duration)) => duration_ms(duration),
        Some(Offset::Neg(duration)) => -duration_ms(duration),
    }
}

pub(crate) fn system_time_ms(time: &SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => duration_ms(&after),
        Err(before) => -duration_ms(&before.duration()),
    }
}

/// The time an `@` modifier pins to, given the query's start and end.
pub(crate) fn at_ms(at: Option<&AtModifier>, start: i64, end: i64) -> Option<i64> {
    match at? {
        AtModifier::Start => Some(start),
        AtModifier::End => Some(end),
        AtModifier::At(time) => Some(system_time_ms(time)),
    }
}

/// The matcher sets of a selector: one set normally, several for `{a="1" or b="2"}`.
pub(crate) fn matcher_sets(selector: &VectorSelector) -> Result<Vec<Vec<Matcher>>> {
    let mut sets = Vec::new();
    let base = convert_matchers(&selector.matchers.matchers)?;
    let name_matcher = selector
        .name
        .as_ref()
        .map(|name| Matcher::equal(prom_model::METRIC_NAME, name.clone()));
    let with_name = |mut set: Vec<Matcher>| {
        if let Some(name) = &name_matcher
            && !set.iter().any(|m| {
                m.name() == prom_model::METRIC_NAME
                    && m.kind() == MatchType::Equal
                    && m.value() == name.value()
            })
        {
            set.push(name.clone());
        }
        set
    };
    if selector.matchers.or_matchers.is_empty() {
        sets.push(with_name(base));
    } else {
        for group in &selector.matchers.or_matchers {
            let mut set = base.clone();
            set.extend(convert_matchers(group)?);
            sets.push(with_name(set));
        }
    }
    Ok(sets)
}

fn convert_matchers(matchers: &[promql_parser::label::Matcher]) -> Result<Vec<Matcher>> {
    let mut out = Vec::with_capacity(matchers.len());
    for matcher in matchers {
        let kind = match matcher.op {
            MatchOp::Equal => MatchType::Equal,
            MatchOp::NotEqual => MatchType::NotEqual,
            MatchOp::Re(_) => MatchType::Regex,
            MatchOp::NotRe(_) => MatchType::NotRegex,
        };
        let converted =
            Matcher::new(kind, matcher.name.clone(), matcher.value.clone()).map_err(|error| {
                Error::Parse {
                    message: error.to_string(),
                }
            })?;
        out.push(converted);
    }
    Ok(out)
}

/// All matchers of a selector flattened (for `absent()` label derivation).
pub(crate) fn plain_matchers(matchers: &Matchers) -> &[promql_parser::label::Matcher] {
    &matchers.matchers
}

/// Removes redundant parentheses.
pub(crate) fn unwrap_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(paren) = expr {
        expr = &paren.expr;
    }
    expr
}

/// The matcher sets of every vector and range selector in `expr`, in tree order (a selector with
/// `or` matchers contributes one set per alternative). Useful to decide which series a query
/// can touch without evaluating it.
pub fn selector_matchers(expr: &Expr) -> Result<Vec<Vec<Matcher>>> {
    let mut out = Vec::new();
    collect_selector_matchers(expr, &mut out)?;
    Ok(out)
}

fn collect_selector_matchers(expr: &Expr, out: &mut Vec<Vec<Matcher>>) -> Result<()> {
    match expr {
        Expr::VectorSelector(selector) => out.extend(matcher_sets(selector)?),
        Expr::MatrixSelector(matrix) => out.extend(matcher_sets(&matrix.vs)?),
        Expr::Paren(paren) => collect_selector_matchers(&paren.expr, out)?,
        Expr::Unary(unary) => collect_selector_matchers(&unary.expr, out)?,
        Expr::Subquery(subquery) => collect_selector_matchers(&subquery.expr, out)?,
        Expr::Binary(binary) => {
            collect_selector_matchers(&binary.lhs, out)?;
            collect_selector_matchers(&binary.rhs, out)?;
        }
        Expr::Aggregate(aggregate) => {
            if let Some(param) = &aggregate.param {
                collect_selector_matchers(param, out)?;
            }
            collect_selector_matchers(&aggregate.expr, out)?;
        }
        Expr::Call(call) => {
            for arg in &call.args.args {
                collect_selector_matchers(arg, out)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}
