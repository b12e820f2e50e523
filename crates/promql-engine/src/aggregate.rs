//! Aggregation operators: `sum avg min max count group stddev stdvar quantile count_values topk
//! bottomk limitk limit_ratio`, with `by` / `without`.

use std::collections::HashMap;

use prom_model::{Label, Labels, METRIC_NAME};
use promql_parser::parser::{AggregateExpr, Expr};

use crate::annotations;
use crate::error::{Error, Result};
use crate::eval::{Evaluator, StepValue};
use crate::functions::{kahan_inc, quantile};
use crate::value::Element;

/// Grouping of an aggregation.
pub(crate) struct Grouping {
    without: bool,
    labels: Vec<String>,
}

impl Grouping {
    /// The grouping of `expr` (`by ()` when it has no modifier).
    pub(crate) fn of(expr: &AggregateExpr) -> Self {
        match &expr.modifier {
            Some(modifier) => Grouping {
                without: !modifier.is_include(),
                labels: modifier.labels().labels.clone(),
            },
            None => Grouping {
                without: false,
                labels: Vec::new(),
            },
        }
    }

    /// The output labels of the group `labels` belongs to.
    pub(crate) fn key(&self, labels: &Labels) -> Labels {
        if self.without {
            let kept: Vec<Label> = labels
                .iter()
                .filter(|label| label.name != METRIC_NAME && !self.labels.contains(&label.name))
                .cloned()
                .collect();
            Labels::from_sorted(kept)
        } else {
            let kept: Vec<Label> = labels
                .iter()
                .filter(|label| self.labels.contains(&label.name))
                .cloned()
                .collect();
            Labels::from_sorted(kept)
        }
    }
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, expr: &AggregateExpr, ts: i64) -> Result<StepValue> {
    let op = expr.op.to_string();
    let grouping = Grouping::of(expr);
    if op == "count_values" {
        let label = match expr.param.as_deref().map(crate::parse::unwrap_parens) {
            Some(Expr::StringLiteral(string)) => string.val.clone(),
            _ => return Err(Error::exec("count_values requires a string parameter")),
        };
        if label.is_empty() {
            return Err(Error::exec(format!("invalid label name {label:?}")));
        }
        let input = ev.eval_vector(&expr.expr, ts)?;
        return Ok(StepValue::Vector(count_values(input, &label, grouping, ts)));
    }
    let param = match &expr.param {
        Some(param) => Some(ev.eval_scalar(param, ts)?),
        _ => None,
    };
    let input = ev.eval_vector(&expr.expr, ts)?;
    let output = match op.as_str() {
        "topk" | "bottomk" | "limitk" | "limit_ratio" => {
            select_k(ev, &op, param.unwrap_or(f64::NAN), input, &grouping, expr)?
        }
        _ => {
            if op == "quantile"
                && let Some(q) = param
                && (q.is_nan() || !(0.0..=1.0).contains(&q))
            {
                let anchor = expr.param.as_ref().map(|param| param.to_string());
                ev.annotations
                    .warn(annotations::invalid_quantile(q), anchor.as_deref());
            }
            aggregate(&op, param.unwrap_or(f64::NAN), input, &grouping, ts)?
        }
    };
    Ok(StepValue::Vector(output))
}

#[derive(Debug)]
struct Group {
    labels: Labels,
    value: f64,
    kahan: f64,
    mean: f64,
    count: f64,
    incremental_mean: bool,
    values: Vec<f64>,
    drop_name: bool,
}

fn aggregate(
    op: &str,
    param: f64,
    input: Vec<Element>,
    grouping: &Grouping,
    ts: i64,
) -> Result<Vec<Element>> {
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Group> = HashMap::new();
    for element in input {
        let key = grouping.key(&element.labels);
        let f = element.v;
        let Some(group) = groups.get_mut(&key) else {
            let value = match op {
                "stddev" | "stdvar" => {
                    if f.is_nan() || f.is_infinite() {
                        f64::NAN
                    } else {
                        0.0
                    }
                }
                "group" => 1.0,
                _ => f,
            };
            order.push(key.clone());
            groups.insert(
                key.clone(),
                Group {
                    labels: key,
                    value,
                    kahan: 0.0,
                    mean: f,
                    count: 1.0,
                    incremental_mean: false,
                    values: vec![f],
                    drop_name: element.drop_name,
                },
            );
            continue;
        };
        group.drop_name |= element.drop_name;
        match op {
            "sum" => (group.value, group.kahan) = kahan_inc(f, group.value, group.kahan),
            "avg" => {
                group.count += 1.0;
                let mut done = false;
                if !group.incremental_mean {
                    let (sum, c) = kahan_inc(f, group.value, group.kahan);
                    if !sum.is_infinite() {
                        group.value = sum;
                        group.kahan = c;
                        done = true;
                    } else {
                        group.incremental_mean = true;
                        group.mean = group.value / (group.count - 1.0);
                        group.kahan /= group.count - 1.0;
                    }
                }
                if !done {
                    let q = (group.count - 1.0) / group.count;
                    (group.mean, group.kahan) =
                        kahan_inc(f / group.count, q * group.mean, q * group.kahan);
                }
            }
            "max" => {
                if group.value < f || group.value.is_nan() {
                    group.value = f;
                }
            }
            "min" => {
                if group.value > f || group.value.is_nan() {
                    group.value = f;
                }
            }
            "count" => group.count += 1.0,
            "group" => {}
            "stddev" | "stdvar" => {
                group.count += 1.0;
                let delta = f - group.mean;
                group.mean += delta / group.count;
                group.value += delta * (f - group.mean);
            }
            "quantile" => group.values.push(f),
            other => {
                return Err(Error::exec(format!(
                    "aggregation {other:?} is not supported"
                )));
            }
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for key in order {
        let Some(mut group) = groups.remove(&key) else {
            continue;
        };
        let value = match op {
            "sum" => {
                if group.value.is_infinite() {
                    group.value
                } else {
                    group.value + group.kahan
                }
            }
            "avg" => {
                if group.incremental_mean {
                    group.mean + group.kahan
                } else {
                    group.value / group.count + group.kahan / group.count
                }
            }
            "count" => group.count,
            "stdvar" => group.value / group.count,
            "stddev" => (group.value / group.count).sqrt(),
            "quantile" => quantile(param, &mut group.values),
            _ => group.value,
        };
        out.push(Element {
            labels: group.labels,
            t: ts,
            v: value,
            drop_name: group.drop_name,
        });
    }
    Ok(out)
}

fn select_k(
    ev: &mut Evaluator<'_>,
    op: &str,
    param: f64,
    input: Vec<Element>,
    grouping: &Grouping,
    expr: &AggregateExpr,
) -> Result<Vec<Element>> {
    let mut ratio = 0.0;
    if op == "limit_ratio" {
        if param.is_nan() {
            return Err(Error::exec("Ratio value is NaN"));
        }
        let anchor = expr.param.as_ref().map(|p| p.to_string());
        if param > 1.0 {
            ev.annotations
                .warn(annotations::invalid_ratio(param, 1.0), anchor.as_deref());
        }
        if param < -1.0 {
            ev.annotations
                .warn(annotations::invalid_ratio(param, -1.0), anchor.as_deref());
        }
        if param == 0.0 {
            return Ok(Vec::new());
        }
        ratio = param.clamp(-1.0, 1.0);
    } else {
        if param < 1.0 {
            return Ok(Vec::new());
        }
        if param.is_nan() {
            return Err(Error::exec("Parameter value is NaN"));
        }
        if param >= 9.223372036854776e18 {
            return Err(Error::exec(format!(
                "Scalar value {} overflows int64",
                crate::format::go_v(param)
            )));
        }
    }
    let k = if param.is_finite() { param as usize } else { 0 };
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Element>> = HashMap::new();
    for element in input {
        let key = grouping.key(&element.labels);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(element);
    }
    let mut out = Vec::new();
    for key in order {
        let Some(mut members) = groups.remove(&key) else {
            continue;
        };
        match op {
            "topk" => {
                members.sort_by(|a, b| descending_nan_last(a.v, b.v));
                members.truncate(k);
            }
            "bottomk" => {
                members.sort_by(|a, b| ascending_nan_last(a.v, b.v));
                members.truncate(k);
            }
            "limitk" => members.truncate(k),
            _ => members.retain(|element| ratio_sample(ratio, &element.labels)),
        }
        out.extend(members);
    }
    Ok(out)
}

/// Orders values descending with NaN last.
pub(crate) fn descending_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Orders values ascending with NaN last.
pub(crate) fn ascending_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Whether `limit_ratio(ratio, ...)` keeps a series: its label hash, scaled to `[0, 1]`, falls in
/// the first `ratio` of the range (or the last `-ratio` for a negative ratio).
fn ratio_sample(ratio: f64, labels: &Labels) -> bool {
    let offset = crate::hash::labels_hash(labels) as f64 / u64::MAX as f64;
    (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio)
}

fn count_values(input: Vec<Element>, label: &str, grouping: Grouping, ts: i64) -> Vec<Element> {
    let mut grouping = grouping;
    if !grouping.without {
        grouping.labels.push(label.to_string());
    }
    let mut order: Vec<Labels> = Vec::new();
    let mut counts: HashMap<Labels, f64> = HashMap::new();
    for element in input {
        let mut labels = element.labels.clone();
        labels.set(label.to_string(), format_f(element.v));
        let key = grouping.key(&labels);
        let count = counts.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            0.0
        });
        *count += 1.0;
    }
    order
        .into_iter()
        .map(|labels| {
            let v = counts.get(&labels).copied().unwrap_or(0.0);
            Element {
                labels,
                t: ts,
                v,
                drop_name: false,
            }
        })
        .collect()
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn format_f(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    format!("{value}")
}
