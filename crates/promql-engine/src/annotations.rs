//! Warning and info annotations, rendered as Prometheus renders them.
//!
//! The parser's AST carries no source positions, so an annotation remembers a piece of query text
//! (usually a metric name) and the position suffix ` (line:col)` is derived from its first
//! occurrence in the query when the result is built. That matches Prometheus whenever the
//! offending sub-expression starts with that text.

/// The level of an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Warning,
    Info,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Annotation {
    level: Level,
    message: String,
    anchor: Option<String>,
}

/// Annotations collected while evaluating one query.
#[derive(Debug, Default)]
pub(crate) struct Annotations {
    items: Vec<Annotation>,
}

impl Annotations {
    pub(crate) fn add(&mut self, level: Level, message: String, anchor: Option<String>) {
        let annotation = Annotation {
            level,
            message,
            anchor,
        };
        if !self.items.contains(&annotation) {
            self.items.push(annotation);
        }
    }

    pub(crate) fn warn(&mut self, message: String, anchor: Option<&str>) {
        self.add(Level::Warning, message, anchor.map(str::to_string));
    }

    pub(crate) fn info(&mut self, message: String, anchor: Option<&str>) {
        self.add(Level::Info, message, anchor.map(str::to_string));
    }

    /// Renders warnings and infos with the ` (line:col)` suffix derived from `query`.
    pub(crate) fn render(&self, query: &str) -> (Vec<String>, Vec<String>) {
        let mut warnings = Vec::new();
        let mut infos = Vec::new();
        for annotation in &self.items {
            let position = position_of(query, annotation.anchor.as_deref());
            let text = format!("{} {}", annotation.message, position);
            let target = match annotation.level {
                Level::Warning => &mut warnings,
                Level::Info => &mut infos,
            };
            if !target.contains(&text) {
                target.push(text);
            }
        }
        (warnings, infos)
    }
}

fn position_of(query: &str, anchor: Option<&str>) -> String {
    let offset = anchor
        .filter(|anchor| !anchor.is_empty())
        .and_then(|anchor| query.find(anchor))
        .unwrap_or(0);
    let before = &query[..offset];
    let line = before.matches('\n').count() + 1;
    let column = match before.rfind('\n') {
        Some(newline) => offset - newline,
        None => offset + 1,
    };
    format!("({line}:{column})")
}

/// `PromQL info: metric might not be a counter, ...`
pub(crate) fn possible_non_counter(metric: &str) -> String {
    format!(
        "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}"
    )
}

/// `PromQL warning: quantile value should be between 0 and 1, got ...`
pub(crate) fn invalid_quantile(q: f64) -> String {
    format!(
        "PromQL warning: quantile value should be between 0 and 1, got {}",
        crate::format::go_g(q)
    )
}

/// `PromQL warning: ratio value should be between -1 and 1, got ..., capping to ...`
pub(crate) fn invalid_ratio(ratio: f64, to: f64) -> String {
    format!(
        "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
        crate::format::go_g(ratio),
        crate::format::go_g(to)
    )
}

/// `PromQL warning: bucket label "le" is missing or has a malformed value of ...`
pub(crate) fn bad_bucket_label(metric: &str, le: &str) -> String {
    let base = format!(
        "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?}"
    );
    if metric.is_empty() {
        base
    } else {
        format!("{base} for metric name {metric:?}")
    }
}

/// `PromQL info: input to histogram_quantile needed to be fixed for monotonicity ...`
///
/// Prometheus appends the bucket range and time span merged over all steps; only the stable
/// prefix is produced here.
pub(crate) fn forced_monotonicity(metric: &str) -> String {
    let base = "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)";
    if metric.is_empty() {
        base.to_string()
    } else {
        format!("{base} for metric name {metric:?}")
    }
}

/// `PromQL warning: sort is ineffective for range queries ...`
pub(crate) fn sort_in_range_query() -> String {
    "PromQL warning: sort is ineffective for range queries since results are always ordered by labels"
        .to_string()
}

/// `PromQL warning: sample has start time that overlaps with previous sample timestamp ...`
pub(crate) fn start_time_overlap(metric: &str) -> String {
    format!(
        "PromQL warning: sample has start time that overlaps with previous sample timestamp for metric {metric:?}"
    )
}
