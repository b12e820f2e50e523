//! Aggregation operators: `sum avg min max count group stddev stdvar quantile count_values topk
//! bottomk limitk limit_ratio`, with `by` / `without`.

use prom_model::Labels;

use crate::annotations;
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::functions::kahan_inc;
use crate::plan::{Node, NodeKind};

/// The reducing aggregations (everything but `topk bottomk limitk limit_ratio count_values`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reduce {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `count`
    Count,
    /// `group`
    Group,
    /// `stddev`
    Stddev,
    /// `stdvar`
    Stdvar,
    /// `quantile` (its values are collected by the caller, see [`crate::functions::quantile`])
    Quantile,
}

impl Reduce {
    /// The reduction named `op`, if it is one.
    pub(crate) fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "sum" => Reduce::Sum,
            "avg" => Reduce::Avg,
            "min" => Reduce::Min,
            "max" => Reduce::Max,
            "count" => Reduce::Count,
            "group" => Reduce::Group,
            "stddev" => Reduce::Stddev,
            "stdvar" => Reduce::Stdvar,
            "quantile" => Reduce::Quantile,
            _ => return None,
        })
    }
}

/// The running state of one group's reduction at one step: the update rules the batch
/// aggregations apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Acc {
    value: f64,
    kahan: f64,
    mean: f64,
    count: f64,
    incremental_mean: bool,
}

impl Acc {
    /// The state after the group's first value `f`.
    pub(crate) fn start(op: Option<Reduce>, f: f64) -> Self {
        let value = match op {
            Some(Reduce::Stddev | Reduce::Stdvar) => {
                if f.is_nan() || f.is_infinite() {
                    f64::NAN
                } else {
                    0.0
                }
            }
            Some(Reduce::Group) => 1.0,
            _ => f,
        };
        Acc {
            value,
            kahan: 0.0,
            mean: f,
            count: 1.0,
            incremental_mean: false,
        }
    }

    /// Adds a further value `f` (not for [`Reduce::Quantile`], whose values the caller keeps).
    pub(crate) fn add(&mut self, op: Reduce, f: f64) {
        match op {
            Reduce::Sum => (self.value, self.kahan) = kahan_inc(f, self.value, self.kahan),
            Reduce::Avg => {
                self.count += 1.0;
                let mut done = false;
                if !self.incremental_mean {
                    let (sum, c) = kahan_inc(f, self.value, self.kahan);
                    if !sum.is_infinite() {
                        self.value = sum;
                        self.kahan = c;
                        done = true;
                    } else {
                        self.incremental_mean = true;
                        self.mean = self.value / (self.count - 1.0);
                        self.kahan /= self.count - 1.0;
                    }
                }
                if !done {
                    let q = (self.count - 1.0) / self.count;
                    (self.mean, self.kahan) =
                        kahan_inc(f / self.count, q * self.mean, q * self.kahan);
                }
            }
            Reduce::Max => {
                if self.value < f || self.value.is_nan() {
                    self.value = f;
                }
            }
            Reduce::Min => {
                if self.value > f || self.value.is_nan() {
                    self.value = f;
                }
            }
            Reduce::Count => self.count += 1.0,
            Reduce::Group | Reduce::Quantile => {}
            Reduce::Stddev | Reduce::Stdvar => {
                self.count += 1.0;
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (f - self.mean);
            }
        }
    }

    /// The group's result (for [`Reduce::Quantile`] the caller computes it from the values).
    pub(crate) fn finish(&self, op: Option<Reduce>) -> f64 {
        match op {
            Some(Reduce::Sum) => {
                if self.value.is_infinite() {
                    self.value
                } else {
                    self.value + self.kahan
                }
            }
            Some(Reduce::Avg) => {
                if self.incremental_mean {
                    self.mean + self.kahan
                } else {
                    self.value / self.count + self.kahan / self.count
                }
            }
            Some(Reduce::Count) => self.count,
            Some(Reduce::Stdvar) => self.value / self.count,
            Some(Reduce::Stddev) => (self.value / self.count).sqrt(),
            _ => self.value,
        }
    }
}

/// Warns (once per distinct value) when a `quantile` parameter is outside `[0, 1]`.
pub(crate) fn check_quantile(ev: &mut Evaluator<'_>, q: f64, anchor: Option<&str>) {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        ev.annotations
            .warn(annotations::invalid_quantile(q), anchor);
    }
}

/// The label name of `count_values`: its string parameter, which must not be empty.
pub(crate) fn count_values_label(param: Option<&Node>) -> Result<String> {
    let label = match param.map(|param| &param.kind) {
        Some(NodeKind::String(string)) => string.clone(),
        _ => return Err(Error::exec("count_values requires a string parameter")),
    };
    if label.is_empty() {
        return Err(Error::exec(format!("invalid label name {label:?}")));
    }
    Ok(label)
}

/// What `topk bottomk limitk limit_ratio` keep of each group at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Selection {
    /// Nothing (`k < 1`, ratio 0).
    Nothing,
    /// At most `k` elements.
    K(usize),
    /// The elements [`ratio_keeps`] keeps at this ratio (in `[-1, 1]`, not 0).
    Ratio(f64),
}

/// Validates the parameter of `topk bottomk limitk limit_ratio` at one step: errors and
/// annotations as Prometheus raises them.
pub(crate) fn selection(
    ev: &mut Evaluator<'_>,
    op: &str,
    param: f64,
    anchor: Option<&str>,
) -> Result<Selection> {
    if op == "limit_ratio" {
        if param.is_nan() {
            return Err(Error::exec("Ratio value is NaN"));
        }
        if param > 1.0 {
            ev.annotations
                .warn(annotations::invalid_ratio(param, 1.0), anchor);
        }
        if param < -1.0 {
            ev.annotations
                .warn(annotations::invalid_ratio(param, -1.0), anchor);
        }
        if param == 0.0 {
            return Ok(Selection::Nothing);
        }
        return Ok(Selection::Ratio(param.clamp(-1.0, 1.0)));
    }
    if param < 1.0 {
        return Ok(Selection::Nothing);
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
    Ok(Selection::K(if param.is_finite() {
        param as usize
    } else {
        0
    }))
}

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

/// Where a series falls for `limit_ratio`: its label hash scaled to `[0, 1]`.
pub(crate) fn ratio_offset(labels: &Labels) -> f64 {
    crate::hash::labels_hash(labels) as f64 / u64::MAX as f64
}

/// Whether `limit_ratio(ratio, ...)` keeps a series at `offset` ([`ratio_offset`]): it falls in
/// the first `ratio` of the range (or the last `-ratio` for a negative ratio).
pub(crate) fn ratio_keeps(ratio: f64, offset: f64) -> bool {
    (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio)
}

pub(crate) fn format_f(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    format!("{value}")
}
