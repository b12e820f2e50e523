//! The kernels of `histogram_quantile` and `histogram_fraction` over classic (`le`-labelled)
//! buckets: `le` parsing, the quantile and fraction of one set of buckets (grouped and
//! evaluated over a grid by `batch::functions::histogram`).

const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// One classic bucket: its upper bound (`le`) and cumulative count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    /// The bucket's upper bound.
    pub(crate) upper: f64,
    /// Observations at or below `upper`.
    pub(crate) count: f64,
}

/// Query text that locates the quantile argument and the bucket argument in annotations.
#[derive(Debug, Default)]
pub(crate) struct Anchors {
    /// The quantile (or first scalar) argument's text.
    pub(crate) parameter: Option<String>,
    /// The bucket vector argument's text.
    pub(crate) buckets: Option<String>,
}

impl Anchors {
    pub(crate) fn of(args: &[crate::plan::Node], parameter: usize, buckets: usize) -> Self {
        Self {
            parameter: args.get(parameter).and_then(|arg| arg.anchor.clone()),
            buckets: args.get(buckets).and_then(|arg| arg.anchor.clone()),
        }
    }
}

/// Parses an `le` value as Go's `strconv.ParseFloat` would accept it.
pub(crate) fn parse_le(value: &str) -> Option<f64> {
    let trimmed = value.trim_start_matches(['+', '-']);
    let lower = trimmed.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Some(if value.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower == "nan" {
        return Some(f64::NAN);
    }
    if lower.starts_with("0x") {
        let digits = lower.trim_start_matches("0x");
        let parsed = i64::from_str_radix(digits, 16).ok()? as f64;
        return Some(if value.starts_with('-') {
            -parsed
        } else {
            parsed
        });
    }
    value.replace('_', "").parse::<f64>().ok()
}

fn sort_and_coalesce(mut buckets: Vec<Bucket>) -> Vec<Bucket> {
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        match out.last_mut() {
            Some(last) if last.upper == bucket.upper => last.count += bucket.count,
            _ => out.push(bucket),
        }
    }
    out
}

fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / sum.min(f64::MAX) < epsilon
}

/// Forces bucket counts to be non-decreasing; returns whether a real decrease was fixed.
fn ensure_monotonic(buckets: &mut [Bucket]) -> bool {
    let mut forced = false;
    let mut previous = buckets[0].count;
    for bucket in buckets.iter_mut().skip(1) {
        let current = bucket.count;
        if current == previous {
            continue;
        }
        if almost_equal(previous, current, SMALL_DELTA_TOLERANCE) {
            bucket.count = previous;
            continue;
        }
        if current < previous {
            bucket.count = previous;
            forced = true;
            continue;
        }
        previous = current;
    }
    forced
}

/// The `q`-quantile of one histogram's buckets, and whether monotonicity had to be forced.
pub(crate) fn bucket_quantile(q: f64, buckets: Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    let mut sorted = buckets;
    sorted.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if sorted.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return (f64::NAN, false);
    }
    let mut buckets = sort_and_coalesce(sorted);
    let forced = ensure_monotonic(&mut buckets);
    if buckets.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let search_len = buckets.len() - 1;
    let b = buckets[..search_len].partition_point(|bucket| bucket.count < rank);
    let value = if b == buckets.len() - 1 {
        buckets[buckets.len() - 2].upper
    } else if b == 0 && buckets[0].upper <= 0.0 {
        buckets[0].upper
    } else {
        let mut start = 0.0;
        let end = buckets[b].upper;
        let mut count = buckets[b].count;
        if b > 0 {
            start = buckets[b - 1].upper;
            count -= buckets[b - 1].count;
            rank -= buckets[b - 1].count;
        }
        start + (end - start) * (rank / count)
    };
    (value, forced)
}

/// The fraction of one histogram's observations between `lower` and `upper`.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: Vec<Bucket>) -> f64 {
    let mut sorted = buckets;
    sorted.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if sorted.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return f64::NAN;
    }
    let buckets = sort_and_coalesce(sorted);
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].upper <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (index, bucket) in buckets.iter().enumerate() {
        if index > 0 {
            lower_bound = buckets[index - 1].upper;
        }
        let upper_bound = bucket.upper;
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                bucket.count
            } else {
                rank + (bucket.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = bucket.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// OpenMetrics float text: Go's `%g`, with `.0` appended to integral values.
pub(crate) fn openmetrics_float(value: f64) -> String {
    let text = crate::format::go_g(value);
    if value.is_finite() && !text.contains(['.', 'e']) {
        format!("{text}.0")
    } else {
        text
    }
}
