//! The per-value and per-series kernels of the function library, shared by the batch path
//! (`batch::functions`, `batch::selector`, `batch::aggregate`): compensated sums, quantiles,
//! Go's min/max, `round`, `clamp`, the math and date functions, `absent`'s labels,
//! `label_replace`/`label_join` relabelling and `sort_by_label`'s natural order.
//!
//! Functions over range vectors live in [`crate::range_functions`]; `histogram_quantile` and
//! `histogram_fraction` over classic buckets in [`crate::histogram`].

use prom_model::{Labels, METRIC_NAME, MatchType};

use crate::annotations;
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::plan::{Node, NodeKind};

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

pub(crate) fn string_arg(args: &[Node], index: usize) -> Result<String> {
    match args.get(index).map(|arg| &arg.kind) {
        Some(NodeKind::String(string)) => Ok(string.clone()),
        _ => Err(Error::exec(format!(
            "expected string literal as argument {index}"
        ))),
    }
}

/// The labels `absent(selector)` reports: the selector's equality matchers, except the name and
/// any label matched more than once or by a non-equality matcher.
pub(crate) fn absent_labels(node: &Node) -> Labels {
    let selector = match &node.kind {
        NodeKind::VectorSelector(selector) | NodeKind::MatrixSelector { selector, .. } => selector,
        _ => return Labels::empty(),
    };
    let mut labels = Labels::empty();
    let mut seen: Vec<&str> = Vec::new();
    for matcher in &selector.matchers {
        let name = matcher.name();
        if name == METRIC_NAME {
            continue;
        }
        let is_equal = matcher.kind() == MatchType::Equal;
        if is_equal && !seen.contains(&name) {
            labels.set(name.to_string(), matcher.value().to_string());
            seen.push(name);
        } else {
            labels.remove(name);
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
    pub(crate) fn of(name: &str, args: &[Node]) -> Result<Self> {
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
