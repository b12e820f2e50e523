//! Function calls: dispatch, instant-vector functions, label functions, date functions.
//!
//! Functions over range vectors live in [`crate::range_functions`]; `histogram_quantile` and
//! `histogram_fraction` over classic buckets in [`crate::histogram`].

use prom_model::{Labels, METRIC_NAME};
use promql_parser::parser::{Call, Expr};

use crate::annotations;
use crate::error::{Error, Result};
use crate::eval::{Evaluator, StepValue};
use crate::parse::unwrap_parens;
use crate::value::Element;

/// Neumaier-compensated addition: returns the new sum and compensation.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    if t.is_infinite() {
        (t, 0.0)
    } else if sum.abs() >= inc.abs() {
        (t, c + ((sum - t) + inc))
    } else {
        (t, c + ((inc - t) + sum))
    }
}

/// The `q`-quantile of `values` with linear interpolation (Prometheus' `quantile`).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| {
        // NaN sorts first, as Go's sort with `isNaN(a) || a < b` does.
        match (a.is_nan(), b.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Go's `math.Max` / `math.Min`: NaN wins.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Evaluates a function call at `ts`.
pub(crate) fn eval(ev: &mut Evaluator<'_>, call: &Call, ts: i64) -> Result<StepValue> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|arg| arg.as_ref()).collect();
    if crate::range_functions::handles(name) {
        return crate::range_functions::eval(ev, name, &args, ts).map(StepValue::Vector);
    }
    let secs = |ms: i64| ms as f64 / 1000.0;
    match name {
        "time" => Ok(StepValue::Scalar(secs(ts))),
        "pi" => Ok(StepValue::Scalar(std::f64::consts::PI)),
        "start" => Ok(StepValue::Scalar(secs(ev.start))),
        "end" => Ok(StepValue::Scalar(secs(ev.end))),
        "range" => Ok(StepValue::Scalar(secs(ev.end - ev.start))),
        "step" => Ok(StepValue::Scalar(secs(ev.step))),
        "max_of" | "min_of" => {
            let a = scalar_arg(ev, &args, 0, ts)?;
            let b = scalar_arg(ev, &args, 1, ts)?;
            Ok(StepValue::Scalar(if name == "max_of" {
                go_max(a, b)
            } else {
                go_min(a, b)
            }))
        }
        "vector" => {
            let value = scalar_arg(ev, &args, 0, ts)?;
            Ok(StepValue::Vector(vec![Element {
                labels: Labels::empty(),
                t: ts,
                v: value,
                drop_name: false,
            }]))
        }
        "scalar" => {
            let vector = vector_arg(ev, &args, 0, ts)?;
            let value = if vector.len() == 1 {
                vector[0].v
            } else {
                f64::NAN
            };
            Ok(StepValue::Scalar(value))
        }
        "absent" => {
            let vector = vector_arg(ev, &args, 0, ts)?;
            if !vector.is_empty() {
                return Ok(StepValue::Vector(Vec::new()));
            }
            let labels = args
                .first()
                .map(|arg| absent_labels(arg))
                .unwrap_or_default();
            Ok(StepValue::Vector(vec![Element {
                labels,
                t: ts,
                v: 1.0,
                drop_name: false,
            }]))
        }
        "label_replace" | "label_join" => relabel(ev, name, &args, ts),
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => sort(ev, name, &args, ts),
        "timestamp" => {
            let from_selector = args
                .first()
                .is_some_and(|arg| matches!(unwrap_parens(arg), Expr::VectorSelector(_)));
            let vector = vector_arg(ev, &args, 0, ts)?;
            Ok(StepValue::Vector(
                vector
                    .into_iter()
                    .map(|element| {
                        let t = if from_selector { element.t } else { ts };
                        Element {
                            v: t as f64 / 1000.0,
                            t: ts,
                            drop_name: true,
                            labels: element.labels,
                        }
                    })
                    .collect(),
            ))
        }
        "start_timestamp" => {
            let Some(Expr::VectorSelector(selector)) = args.first() else {
                // Start timestamps are only known straight out of a selector.
                vector_arg(ev, &args, 0, ts)?;
                return Ok(StepValue::Vector(Vec::new()));
            };
            let selected = ev.select_instant(selector, ts)?;
            Ok(StepValue::Vector(
                selected
                    .into_iter()
                    .map(|(element, start)| Element {
                        labels: element.labels,
                        t: ts,
                        v: start as f64 / 1000.0,
                        drop_name: true,
                    })
                    .collect(),
            ))
        }
        "histogram_quantile" => {
            let q = scalar_arg(ev, &args, 0, ts)?;
            let vector = vector_arg(ev, &args, 1, ts)?;
            let anchors = crate::histogram::Anchors::of(&args, 0, 1);
            crate::histogram::histogram_quantile(ev, q, vector, ts, &anchors).map(StepValue::Vector)
        }
        "histogram_fraction" => {
            let lower = scalar_arg(ev, &args, 0, ts)?;
            let upper = scalar_arg(ev, &args, 1, ts)?;
            let vector = vector_arg(ev, &args, 2, ts)?;
            let anchors = crate::histogram::Anchors::of(&args, 0, 2);
            crate::histogram::histogram_fraction(ev, lower, upper, vector, ts, &anchors)
                .map(StepValue::Vector)
        }
        "histogram_quantiles" => {
            let vector = vector_arg(ev, &args, 0, ts)?;
            let label = string_arg(&args, 1)?;
            let mut quantiles = Vec::new();
            for index in 2..args.len() {
                quantiles.push(scalar_arg(ev, &args, index, ts)?);
            }
            let anchors = crate::histogram::Anchors::of(&args, 2, 0);
            crate::histogram::histogram_quantiles(ev, &label, &quantiles, vector, ts, &anchors)
                .map(StepValue::Vector)
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            // Only native histograms carry these; float samples are ignored.
            vector_arg(ev, &args, 0, ts)?;
            Ok(StepValue::Vector(Vec::new()))
        }
        "round" => {
            let to_nearest = if args.len() > 1 {
                scalar_arg(ev, &args, 1, ts)?
            } else {
                1.0
            };
            let inverse = 1.0 / to_nearest;
            map_values(ev, &args, ts, |v| round_to(v, inverse))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let vector = vector_arg(ev, &args, 0, ts)?;
            let (min, max) = match name {
                "clamp" => (scalar_arg(ev, &args, 1, ts)?, scalar_arg(ev, &args, 2, ts)?),
                "clamp_min" => (scalar_arg(ev, &args, 1, ts)?, f64::INFINITY),
                _ => (f64::NEG_INFINITY, scalar_arg(ev, &args, 1, ts)?),
            };
            if max < min {
                return Ok(StepValue::Vector(Vec::new()));
            }
            Ok(StepValue::Vector(
                vector
                    .into_iter()
                    .map(|element| Element {
                        v: clamp(element.v, min, max),
                        t: ts,
                        drop_name: true,
                        labels: element.labels,
                    })
                    .collect(),
            ))
        }
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => date_function(ev, name, &args, ts),
        "info" => crate::info::eval(ev, &args, ts),
        _ => match math_function(name) {
            Some(function) => map_values(ev, &args, ts, function),
            None => Err(Error::exec(format!("function {name:?} is not supported"))),
        },
    }
}

/// `round`'s rounding of `v` to the nearest multiple of `1 / inverse` (ties up).
pub(crate) fn round_to(v: f64, inverse: f64) -> f64 {
    (v * inverse + 0.5).floor() / inverse
}

/// `clamp`'s value of `v` between `min` and `max` (NaN wins).
pub(crate) fn clamp(v: f64, min: f64, max: f64) -> f64 {
    go_max(min, go_min(max, v))
}

/// The function of a one-argument math function (`abs`, `ln`, `sgn`, ...), if `name` is one.
pub(crate) fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

pub(crate) fn scalar_arg(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    index: usize,
    ts: i64,
) -> Result<f64> {
    let arg = args
        .get(index)
        .ok_or_else(|| Error::exec(format!("missing argument {index}")))?;
    ev.eval_scalar(arg, ts)
}

pub(crate) fn vector_arg(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    index: usize,
    ts: i64,
) -> Result<Vec<Element>> {
    let arg = args
        .get(index)
        .ok_or_else(|| Error::exec(format!("missing argument {index}")))?;
    ev.eval_vector(arg, ts)
}

pub(crate) fn string_arg(args: &[&Expr], index: usize) -> Result<String> {
    match args.get(index).map(|arg| unwrap_parens(arg)) {
        Some(Expr::StringLiteral(string)) => Ok(string.val.clone()),
        _ => Err(Error::exec(format!(
            "expected string literal as argument {index}"
        ))),
    }
}

fn map_values(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    ts: i64,
    function: impl Fn(f64) -> f64,
) -> Result<StepValue> {
    let vector = vector_arg(ev, args, 0, ts)?;
    Ok(StepValue::Vector(
        vector
            .into_iter()
            .map(|element| Element {
                v: function(element.v),
                t: ts,
                drop_name: true,
                labels: element.labels,
            })
            .collect(),
    ))
}

/// The labels `absent(selector)` reports: the selector's equality matchers, except the name and
/// any label matched more than once or by a non-equality matcher.
pub(crate) fn absent_labels(expr: &Expr) -> Labels {
    let matchers = match expr {
        Expr::VectorSelector(selector) => &selector.matchers,
        Expr::MatrixSelector(matrix) => &matrix.vs.matchers,
        _ => return Labels::empty(),
    };
    let mut labels = Labels::empty();
    let mut seen: Vec<&str> = Vec::new();
    for matcher in crate::parse::plain_matchers(matchers) {
        if matcher.name == METRIC_NAME {
            continue;
        }
        let is_equal = matches!(matcher.op, promql_parser::label::MatchOp::Equal);
        if is_equal && !seen.contains(&matcher.name.as_str()) {
            labels.set(matcher.name.clone(), matcher.value.clone());
            seen.push(&matcher.name);
        } else {
            labels.remove(&matcher.name);
        }
    }
    labels
}

/// Prometheus 3 accepts any non-empty UTF-8 label name (a Rust `str` is always UTF-8).
fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// A `label_replace` or `label_join` call's string arguments, checked, ready to relabel series.
pub(crate) enum Relabel {
    /// `label_replace(v, destination, replacement, source, regex)`.
    Replace {
        destination: String,
        replacement: String,
        source: String,
        regex: regex::Regex,
    },
    /// `label_join(v, destination, separator, sources...)`.
    Join {
        destination: String,
        separator: String,
        sources: Vec<String>,
    },
}

impl Relabel {
    /// Reads and checks the string arguments of `label_replace` / `label_join` (`name`).
    pub(crate) fn of(name: &str, args: &[&Expr]) -> Result<Self> {
        if name == "label_replace" {
            let destination = string_arg(args, 1)?;
            let replacement = string_arg(args, 2)?;
            let source = string_arg(args, 3)?;
            let pattern = string_arg(args, 4)?;
            let regex = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|_| {
                Error::exec(format!(
                    "invalid regular expression in label_replace(): {pattern}"
                ))
            })?;
            if !is_valid_label_name(&destination) {
                return Err(Error::exec(format!(
                    "invalid destination label name in label_replace(): {destination}"
                )));
            }
            return Ok(Relabel::Replace {
                destination,
                replacement,
                source,
                regex,
            });
        }
        let destination = string_arg(args, 1)?;
        let separator = string_arg(args, 2)?;
        let mut sources = Vec::new();
        for index in 3..args.len() {
            let source = string_arg(args, index)?;
            if !is_valid_label_name(&source) {
                return Err(Error::exec(format!(
                    "invalid source label name in label_join(): {source}"
                )));
            }
            sources.push(source);
        }
        if !is_valid_label_name(&destination) {
            return Err(Error::exec(format!(
                "invalid destination label name in label_join(): {destination}"
            )));
        }
        Ok(Relabel::Join {
            destination,
            separator,
            sources,
        })
    }

    /// Relabels one series: sets the destination label and keeps a name written there.
    pub(crate) fn apply(&self, labels: &mut Labels, drop_name: &mut bool) {
        match self {
            Relabel::Replace {
                destination,
                replacement,
                source,
                regex,
            } => {
                let value = labels.get(source).unwrap_or("").to_string();
                if let Some(captures) = regex.captures(&value) {
                    let mut expanded = String::new();
                    captures.expand(replacement, &mut expanded);
                    labels.set(destination.clone(), expanded);
                    if destination == METRIC_NAME {
                        *drop_name = false;
                    }
                }
            }
            Relabel::Join {
                destination,
                separator,
                sources,
            } => {
                let values: Vec<&str> = sources
                    .iter()
                    .map(|source| labels.get(source).unwrap_or(""))
                    .collect();
                let joined = values.join(separator);
                labels.set(destination.clone(), joined);
                if destination == METRIC_NAME {
                    *drop_name = false;
                }
            }
        }
    }
}

fn relabel(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], ts: i64) -> Result<StepValue> {
    let relabel = Relabel::of(name, args)?;
    let mut vector = vector_arg(ev, args, 0, ts)?;
    for element in &mut vector {
        relabel.apply(&mut element.labels, &mut element.drop_name);
        element.t = ts;
    }
    Ok(StepValue::Vector(vector))
}

/// Warns that sorting does nothing in a range query, when the query is one.
pub(crate) fn note_sort(ev: &mut Evaluator<'_>, name: &str) {
    if ev.start != ev.end {
        ev.annotations
            .warn(annotations::sort_in_range_query(), Some(name));
    }
}

/// `sort_by_label`'s order: by the named labels (natural order), then by all labels.
pub(crate) fn label_order(
    labels: &[String],
    descending: bool,
    a: &Labels,
    b: &Labels,
) -> std::cmp::Ordering {
    for label in labels {
        let left = a.get(label).unwrap_or("");
        let right = b.get(label).unwrap_or("");
        if left == right {
            continue;
        }
        let order = natural_cmp(left, right);
        return if descending { order.reverse() } else { order };
    }
    let order = a.cmp(b);
    if descending { order.reverse() } else { order }
}

fn sort(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], ts: i64) -> Result<StepValue> {
    note_sort(ev, name);
    let mut vector = vector_arg(ev, args, 0, ts)?;
    for element in &mut vector {
        element.t = ts;
    }
    match name {
        "sort" => vector.sort_by(|a, b| crate::aggregate::ascending_nan_last(a.v, b.v)),
        "sort_desc" => vector.sort_by(|a, b| crate::aggregate::descending_nan_last(a.v, b.v)),
        _ => {
            let mut labels = Vec::new();
            for index in 1..args.len() {
                labels.push(string_arg(args, index)?);
            }
            let descending = name == "sort_by_label_desc";
            vector.sort_by(|a, b| label_order(&labels, descending, &a.labels, &b.labels));
        }
    }
    Ok(StepValue::Vector(vector))
}

/// Natural ordering: digit runs compare by numeric value, everything else bytewise.
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let start_i = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let start_j = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let left = std::str::from_utf8(&a[start_i..i])
                .unwrap_or("")
                .trim_start_matches('0');
            let right = std::str::from_utf8(&b[start_j..j])
                .unwrap_or("")
                .trim_start_matches('0');
            let order = left.len().cmp(&right.len()).then_with(|| left.cmp(right));
            if order != Ordering::Equal {
                return order;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

/// Date function `name` (`hour`, `year`, ...) of a Unix time in seconds.
pub(crate) fn date_value(name: &str, seconds: f64) -> f64 {
    let civil = prom_model::time::DateTime::from_unix_seconds(seconds as i64);
    match name {
        "days_in_month" => f64::from(civil.days_in_month()),
        "day_of_month" => f64::from(civil.day),
        "day_of_week" => f64::from(civil.weekday()),
        "day_of_year" => f64::from(civil.day_of_year()),
        "hour" => f64::from(civil.hour),
        "minute" => f64::from(civil.minute),
        "month" => f64::from(civil.month),
        _ => civil.year as f64,
    }
}

fn date_function(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], ts: i64) -> Result<StepValue> {
    let compute = |seconds: f64| date_value(name, seconds);
    if args.is_empty() {
        return Ok(StepValue::Vector(vec![Element {
            labels: Labels::empty(),
            t: ts,
            v: compute((ts / 1000) as f64),
            drop_name: false,
        }]));
    }
    let vector = vector_arg(ev, args, 0, ts)?;
    Ok(StepValue::Vector(
        vector
            .into_iter()
            .map(|element| Element {
                v: compute(element.v),
                t: ts,
                drop_name: true,
                labels: element.labels,
            })
            .collect(),
    ))
}
