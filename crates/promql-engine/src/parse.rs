//! Glue between `promql-parser`'s AST and the plan builder: parsing, durations, modifiers, matchers.

use std::time::{Duration, SystemTime};

use prom_model::{MatchType, Matcher};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, AtModifier, Expr, Offset, VectorSelector};

use crate::depth::{MAX_DEPTH, ParsedExpr, with_stack};
use crate::error::{Error, Result};

/// Parses a PromQL expression; errors are `bad_data`.
///
/// Parse errors are worded as Prometheus words them (`1:5: parse error: unclosed left
/// parenthesis`, see the `syntax` module). When the query fails to parse for a reason the
/// checker does not recognise (syntax the parser does not support), the error is the parser's
/// own message, without a position.
///
/// String literals are read as Go reads them, as bytes: a label name given as a literal that is
/// not valid UTF-8 (`label_replace(x, "\xff", ...)`) is rejected here with the `execution` error
/// Prometheus raises when it evaluates the call, which `promql-parser` cannot notice (it decodes
/// `\xff` to `ÿ`).
///
/// A query nested deeper than [`MAX_DEPTH`](crate::depth::MAX_DEPTH) levels of operators and
/// brackets is refused before it is parsed; shallower ones are parsed, checked and later
/// evaluated and dropped on a stack deep enough for them (see the `depth` module).
pub fn parse_expr(query: &str) -> Result<ParsedExpr> {
    let bound = crate::depth::depth_bound(query);
    if bound > MAX_DEPTH {
        return Err(Error::Parse {
            message: format!(
                "parse error: query is nested too deeply: more than {MAX_DEPTH} levels of \
                 operators and brackets"
            ),
        });
    }
    with_stack(bound, || {
        // `promql-parser` reads escapes in raw strings; hand it those as double-quoted ones.
        let requoted = crate::syntax::requote_raw_strings(query);
        let expr = parser::parse(requoted.as_deref().unwrap_or(query)).map_err(|message| {
            Error::Parse {
                message: match crate::syntax::check(query) {
                    Some(error) => error.render(query),
                    None => message,
                },
            }
        })?;
        let expr = ParsedExpr::new(expr, query.len());
        reject_invalid_utf8_label_names(query, &expr)?;
        Ok(expr)
    })
}

/// What a string literal is used for, when it names a label Prometheus validates.
#[derive(Clone, Copy)]
enum LabelNameUse {
    Other,
    ReplaceDestination,
    JoinDestination,
    JoinSource,
    CountValuesLabel,
}

fn reject_invalid_utf8_label_names(query: &str, expr: &Expr) -> Result<()> {
    let (count, invalid) = crate::syntax::invalid_utf8_strings(query);
    if invalid.is_empty() {
        return Ok(());
    }
    let mut uses = Vec::new();
    collect_string_uses(expr, LabelNameUse::Other, &mut uses);
    if uses.len() != count {
        // Literals the AST does not hold as strings (quoted label names in grouping clauses):
        // the source order cannot be matched, so nothing is claimed.
        return Ok(());
    }
    for (index, bytes) in invalid {
        let name = String::from_utf8_lossy(&bytes);
        let message = match uses.get(index) {
            Some(LabelNameUse::ReplaceDestination) => {
                format!("invalid destination label name in label_replace(): {name}")
            }
            Some(LabelNameUse::JoinDestination) => {
                format!("invalid destination label name in label_join(): {name}")
            }
            Some(LabelNameUse::JoinSource) => {
                format!("invalid source label name in label_join(): {name}")
            }
            Some(LabelNameUse::CountValuesLabel) => {
                format!(
                    "invalid label name {}",
                    crate::syntax::go_quote_bytes(&bytes)
                )
            }
            Some(LabelNameUse::Other) | None => continue,
        };
        return Err(Error::Execution { message });
    }
    Ok(())
}

/// The use of every string literal of `expr`, in source order.
fn collect_string_uses(expr: &Expr, role: LabelNameUse, out: &mut Vec<LabelNameUse>) {
    match expr {
        Expr::StringLiteral(_) => out.push(role),
        Expr::Paren(paren) => collect_string_uses(&paren.expr, role, out),
        Expr::Unary(unary) => collect_string_uses(&unary.expr, LabelNameUse::Other, out),
        Expr::Subquery(subquery) => {
            collect_string_uses(&subquery.expr, LabelNameUse::Other, out);
        }
        Expr::Binary(binary) => {
            collect_string_uses(&binary.lhs, LabelNameUse::Other, out);
            collect_string_uses(&binary.rhs, LabelNameUse::Other, out);
        }
        Expr::Aggregate(aggregate) => {
            if let Some(param) = &aggregate.param {
                let role = if aggregate.op.to_string() == "count_values" {
                    LabelNameUse::CountValuesLabel
                } else {
                    LabelNameUse::Other
                };
                collect_string_uses(param, role, out);
            }
            collect_string_uses(&aggregate.expr, LabelNameUse::Other, out);
        }
        Expr::Call(call) => {
            for (index, arg) in call.args.args.iter().enumerate() {
                let role = match (call.func.name, index) {
                    ("label_replace", 1) => LabelNameUse::ReplaceDestination,
                    ("label_join", 1) => LabelNameUse::JoinDestination,
                    ("label_join", i) if i >= 3 => LabelNameUse::JoinSource,
                    _ => LabelNameUse::Other,
                };
                collect_string_uses(arg, role, out);
            }
        }
        Expr::NumberLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
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

/// The matcher sets of every vector and range selector in `expr`, in tree order (a selector with
/// `or` matchers contributes one set per alternative). Useful to decide which series a query
/// can touch without evaluating it.
pub fn selector_matchers(expr: &Expr) -> Result<Vec<Vec<Matcher>>> {
    let mut out = Vec::new();
    with_stack(crate::depth::expr_depth(expr), || {
        collect_selector_matchers(expr, &mut out)
    })?;
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
