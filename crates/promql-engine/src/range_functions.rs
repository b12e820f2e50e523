//! Functions over range vectors: `rate` and friends, `*_over_time`, `deriv`, `predict_linear`,
//! `changes`, `resets`, `double_exponential_smoothing`, `absent_over_time`.

use crate::annotations;
use crate::error::{Error, Result};
use crate::eval::{Evaluator, RangeVector};
use crate::functions::{kahan_inc, quantile};
use crate::value::Point;

pub(crate) fn note_possible_non_counter(
    ev: &mut Evaluator<'_>,
    metric: Option<&str>,
    anchor: Option<&str>,
) {
    let Some(metric) = metric else { return };
    if ["_total", "_sum", "_count", "_bucket"]
        .iter()
        .any(|suffix| metric.ends_with(suffix))
    {
        return;
    }
    ev.annotations
        .info(annotations::possible_non_counter(metric), anchor);
}

pub(crate) fn check_smoothing_factors(scalars: &[f64], matrix: &RangeVector) -> Result<()> {
    if matrix.series.is_empty() {
        return Ok(());
    }
    let (sf, tf) = (scalars[0], scalars[1]);
    if sf <= 0.0 || sf >= 1.0 || sf.is_nan() {
        return Err(Error::exec(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 || tf.is_nan() {
        return Err(Error::exec(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    Ok(())
}

/// Whether a sample's start timestamp reaches back before the previous sample (a data problem).
pub(crate) fn start_time_overlap(points: &[Point], sts: &[i64]) -> bool {
    (1..points.len().min(sts.len()))
        .any(|i| sts[i] != 0 && sts[i] < points[i - 1].t && sts[i] != sts[i - 1])
}

/// Whether a start timestamp marks a counter reset between two samples.
fn is_start_timestamp_reset(
    previous_st: i64,
    previous_t: i64,
    current_st: i64,
    current_t: i64,
) -> bool {
    if current_st == 0 || current_st >= current_t || current_st < previous_t {
        return false;
    }
    if current_st > previous_t {
        return true;
    }
    // The start timestamp points at the previous sample: a delta sample, unless the previous
    // start timestamp is unknown (a cumulative series with unknown start) or invalid.
    if previous_st > previous_t {
        return false;
    }
    previous_st != 0 && previous_st != previous_t
}

fn reset_between(points: &[Point], sts: Option<&[i64]>, i: usize) -> bool {
    if points[i].v < points[i - 1].v {
        return true;
    }
    match sts {
        Some(sts) if i < sts.len() => {
            is_start_timestamp_reset(sts[i - 1], points[i - 1].t, sts[i], points[i].t)
        }
        _ => false,
    }
}

pub(crate) fn compute(
    name: &str,
    points: &[Point],
    sts: Option<&[i64]>,
    matrix: &RangeVector,
    scalars: &[f64],
    ts: i64,
) -> Option<f64> {
    let first = points.first()?;
    let last = points.last()?;
    Some(match name {
        "rate" => extrapolated_rate(points, sts, matrix, true, true)?,
        "increase" => extrapolated_rate(points, sts, matrix, true, false)?,
        "delta" => extrapolated_rate(points, None, matrix, false, false)?,
        "irate" => instant_value(points, sts, true)?,
        "idelta" => instant_value(points, None, false)?,
        "avg_over_time" => average(points),
        "sum_over_time" => {
            let (mut sum, mut c) = (0.0, 0.0);
            for point in points {
                (sum, c) = kahan_inc(point.v, sum, c);
            }
            if sum.is_infinite() { sum } else { sum + c }
        }
        "count_over_time" => points.len() as f64,
        "min_over_time" => compare(points, |cur, best| cur < best || best.is_nan()).v,
        "max_over_time" => compare(points, |cur, best| cur > best || best.is_nan()).v,
        "ts_of_min_over_time" => {
            compare(points, |cur, best| cur <= best || best.is_nan()).t as f64 / 1000.0
        }
        "ts_of_max_over_time" => {
            compare(points, |cur, best| cur >= best || best.is_nan()).t as f64 / 1000.0
        }
        "last_over_time" => last.v,
        "first_over_time" => first.v,
        "ts_of_first_over_time" => first.t as f64 / 1000.0,
        "ts_of_last_over_time" => last.t as f64 / 1000.0,
        "present_over_time" => 1.0,
        "stddev_over_time" => variance(points).sqrt(),
        "stdvar_over_time" => variance(points),
        "quantile_over_time" => {
            let mut values: Vec<f64> = points.iter().map(|p| p.v).collect();
            quantile(scalars[0], &mut values)
        }
        "mad_over_time" => {
            let mut values: Vec<f64> = points.iter().map(|p| p.v).collect();
            if values.iter().any(|v| v.is_nan()) {
                f64::NAN
            } else {
                let median = quantile(0.5, &mut values);
                let mut deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
                quantile(0.5, &mut deviations)
            }
        }
        "changes" => {
            let mut changes = 0;
            for pair in points.windows(2) {
                let (prev, cur) = (pair[0].v, pair[1].v);
                if cur != prev && !(cur.is_nan() && prev.is_nan()) {
                    changes += 1;
                }
            }
            f64::from(changes)
        }
        "resets" => (1..points.len())
            .filter(|&i| reset_between(points, sts, i))
            .count() as f64,
        "deriv" => {
            if points.len() < 2 {
                return None;
            }
            linear_regression(points, first.t).0
        }
        "predict_linear" => {
            if points.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(points, ts);
            slope * scalars[0] + intercept
        }
        "double_exponential_smoothing" | "holt_winters" => {
            smoothing(points, scalars[0], scalars[1])?
        }
        _ => return None,
    })
}

fn compare(points: &[Point], better: impl Fn(f64, f64) -> bool) -> Point {
    let mut best = points[0];
    for point in points {
        if better(point.v, best.v) {
            best = *point;
        }
    }
    best
}

fn average(points: &[Point]) -> f64 {
    let (mut sum, mut count) = (points[0].v, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for point in &points[1..] {
        count += 1.0;
        if !incremental {
            let (new_sum, new_c) = kahan_inc(point.v, sum, c);
            if !new_sum.is_infinite() {
                sum = new_sum;
                c = new_c;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(point.v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn variance(points: &[Point]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for point in points {
        count += 1.0;
        let delta = point.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (point.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// `rate`, `increase` and `delta` with Prometheus' extrapolation to the window boundaries. With
/// a start timestamp inside the window, counters assume a zero sample there instead of
/// extrapolating to the left (which also makes a single sample enough).
fn extrapolated_rate(
    points: &[Point],
    sts: Option<&[i64]>,
    matrix: &RangeVector,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let first = *points.first()?;
    let last = *points.last()?;
    let intervals = points.len() - 1;
    let range_start = matrix.window_end - matrix.range;
    let range_end = matrix.window_end;
    let mut result = last.v - first.v;
    if is_counter {
        for i in 1..points.len() {
            if reset_between(points, sts, i) {
                result += points[i - 1].v;
            }
        }
    }
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last.t) as f64 / 1000.0;
    let mut sampled = (last.t - first.t) as f64 / 1000.0;
    let average_gap = if intervals > 0 {
        sampled / intervals as f64
    } else {
        0.0
    };
    let threshold = average_gap * 1.1;
    let first_st = sts.and_then(|sts| sts.first().copied()).unwrap_or(0);
    if is_counter && first_st != 0 && first_st > range_start && first_st < first.t {
        to_start = 0.0;
        sampled = (last.t - first_st) as f64 / 1000.0;
        result += first.v;
    } else if intervals == 0 {
        return None;
    } else {
        if to_start >= threshold {
            to_start = average_gap / 2.0;
        }
        if is_counter {
            let mut to_zero = to_start;
            if result > 0.0 && first.v >= 0.0 {
                to_zero = sampled * (first.v / result);
            }
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
    }
    if to_end >= threshold {
        to_end = average_gap / 2.0;
    }
    let mut factor = if sampled != 0.0 {
        (sampled + to_start + to_end) / sampled
    } else {
        1.0
    };
    if is_rate {
        factor /= matrix.range as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` / `idelta`: the last two samples.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a < b)` differs from `a >= b` for NaN, on purpose.
fn instant_value(points: &[Point], sts: Option<&[i64]>, is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let last_index = points.len() - 1;
    let previous = points[last_index - 1];
    let last = points[last_index];
    let interval = last.t - previous.t;
    if interval == 0 {
        return None;
    }
    let st_reset = match sts {
        Some(sts) if last_index < sts.len() => {
            is_start_timestamp_reset(sts[last_index - 1], previous.t, sts[last_index], last.t)
        }
        _ => false,
    };
    let mut value = last.v;
    if !is_rate || !(last.v < previous.v || st_reset) {
        value = last.v - previous.v;
    }
    if is_rate {
        value /= interval as f64 / 1000.0;
    }
    Some(value)
}

/// Least-squares slope and intercept, with times relative to `intercept_time` in seconds.
pub(crate) fn linear_regression(points: &[Point], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let initial = points[0].v;
    let mut constant = true;
    for (index, point) in points.iter().enumerate() {
        if constant && index > 0 && point.v != initial {
            constant = false;
        }
        n += 1.0;
        let x = (point.t - intercept_time) as f64 / 1000.0;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(point.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * point.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if constant {
        if initial.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, initial);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let covariance = sum_xy - sum_x * sum_y / n;
    let variance = sum_x2 - sum_x * sum_x / n;
    let slope = covariance / variance;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Holt's double exponential smoothing.
fn smoothing(points: &[Point], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = points[0].v;
    let mut b = points[1].v - points[0].v;
    for (i, point) in points.iter().enumerate().skip(1) {
        let x = sf * point.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}
