//! Runs parsed `.test` cases against the engine and compares results (spec §5.5).

use std::time::Duration;

use prom_model::{Labels, Sample, is_stale_nan};
use promql_engine::{
    Engine, EngineOptions, MemoryStorage, QueryOptions, QueryResult, Queryable, SelectHints, Value,
};

use crate::dsl::{AnnotationExpectation, Command, EvalCase, Expected};

/// Outcome of one eval case.
#[derive(Debug)]
pub(crate) enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

/// Storage state of one script.
pub(crate) struct Script {
    engine: Engine,
    floats: MemoryStorage,
    histograms: MemoryStorage,
    /// How many `@`-rewritten variants were checked.
    pub(crate) at_rewrites: std::cell::Cell<usize>,
}

impl Script {
    pub(crate) fn new() -> Self {
        let options = EngineOptions {
            lookback_delta: Duration::from_secs(300),
            max_samples: 10_000,
            timeout: Duration::from_secs(100),
            default_subquery_step: Duration::from_secs(60),
            memory_budget: None,
        };
        Self {
            engine: Engine::new(options),
            floats: MemoryStorage::new(),
            histograms: MemoryStorage::new(),
            at_rewrites: std::cell::Cell::new(0),
        }
    }

    /// Applies a `clear` or `load`; evaluates an `eval`.
    pub(crate) fn apply(&mut self, command: &Command) -> Option<Outcome> {
        match command {
            Command::Clear => {
                self.floats.clear();
                self.histograms.clear();
                None
            }
            Command::Load {
                interval,
                nhcb,
                series,
            } => {
                for one in series {
                    if one.histogram {
                        self.histograms
                            .append(one.labels.clone(), [Sample::new(0, 0.0)]);
                        continue;
                    }
                    let samples: Vec<Sample> = one
                        .values
                        .iter()
                        .enumerate()
                        .filter_map(|(index, value)| {
                            value.map(|v| Sample::new(index as i64 * interval, v))
                        })
                        .collect();
                    self.floats.append(one.labels.clone(), samples);
                    if let Some(offsets) = &one.start_offsets {
                        let starts = one.values.iter().zip(offsets).enumerate().filter_map(
                            |(index, (value, offset))| {
                                value.map(|_| {
                                    let t = index as i64 * interval;
                                    (t, offset.map_or(0, |offset| t + offset))
                                })
                            },
                        );
                        self.floats.set_start_timestamps(one.labels.clone(), starts);
                    }
                    if *nhcb && let Some(name) = one.labels.metric_name() {
                        let base = name
                            .strip_suffix("_bucket")
                            .or_else(|| name.strip_suffix("_count"))
                            .or_else(|| name.strip_suffix("_sum"));
                        if let Some(base) = base {
                            let mut labels = one.labels.without(&["le"]);
                            labels.set("__name__", base);
                            self.histograms.append(labels, [Sample::new(0, 0.0)]);
                        }
                    }
                }
                None
            }
            Command::Eval(case) => Some(self.eval(case)),
        }
    }

    fn touches_histograms(&self, query: &str) -> bool {
        let Ok(expr) = promql_engine::parse_expr(query) else {
            return false;
        };
        let Ok(sets) = promql_engine::selector_matchers(&expr) else {
            return false;
        };
        let hints = SelectHints {
            start: i64::MIN,
            end: i64::MAX,
            ..SelectHints::default()
        };
        sets.iter().any(|matchers| {
            self.histograms
                .select(matchers, &hints)
                .map(|mut stream| stream.next().is_some())
                .unwrap_or(false)
        })
    }

    fn eval(&self, case: &EvalCase) -> Outcome {
        if let Some(reason) = &case.unsupported {
            return Outcome::Skipped(reason.clone());
        }
        if case.query.contains("{{") {
            return Outcome::Skipped("native histogram literal".to_string());
        }
        if let Err(error) = promql_engine::parse_expr(&case.query) {
            if case.fail {
                // The engine words parse errors as Prometheus does, so a given message must
                // match, except for syntax the parser cannot read at all (there the error only
                // says where reading stopped, not what Prometheus objects to).
                return match check_failure(case, &error.to_string()) {
                    Outcome::Failed(reason) => match unsupported_syntax(&case.query) {
                        Some(feature) => Outcome::Skipped(format!(
                            "parser cannot read: {feature} ({error}; Prometheus reports its own message)"
                        )),
                        None => Outcome::Failed(reason),
                    },
                    other => other,
                };
            }
            return Outcome::Skipped(format!("parser cannot read: {error}"));
        }
        if self.touches_histograms(&case.query) {
            // The expectations need histograms, but the float part must still evaluate without
            // panicking (the result is not compared).
            let _ = self.engine.instant_query(
                &self.floats,
                &case.query,
                case.end,
                &QueryOptions::default(),
            );
            return Outcome::Skipped("selects native histogram series".to_string());
        }
        if case.range {
            let result = self.engine.range_query(
                &self.floats,
                &case.query,
                case.start,
                case.end,
                case.step,
                &QueryOptions::default(),
            );
            return match check_outcome(case, result) {
                Ok(()) => Outcome::Passed,
                Err(message) => Outcome::Failed(message),
            };
        }
        let Ok(expr) = promql_engine::parse_expr(&case.query) else {
            return Outcome::Failed("query no longer parses".to_string());
        };
        let mut variants = vec![(expr.clone(), case.query.clone(), case.start)];
        variants.extend(crate::at_rewrite::variants(&expr, case.start));
        self.at_rewrites
            .set(self.at_rewrites.get() + variants.len() - 1);
        for (index, (expr, text, time)) in variants.iter().enumerate() {
            if let Err(message) = self.check_instant(case, expr, text, *time) {
                if index == 0 {
                    return Outcome::Failed(message);
                }
                return Outcome::Failed(format!("@ rewrite {text:?} at {time}ms: {message}"));
            }
        }
        Outcome::Passed
    }

    /// Runs one instant query (the original or an `@` rewrite) and, unless excluded, the same as
    /// a short range query, comparing both with the expectations.
    fn check_instant(
        &self,
        case: &EvalCase,
        expr: &promql_parser::parser::Expr,
        text: &str,
        time: i64,
    ) -> Result<(), String> {
        let result = self.engine.instant_query_expr(
            &self.floats,
            expr,
            text,
            time,
            &QueryOptions::default(),
        );
        let succeeded = result
            .as_ref()
            .is_ok_and(|r| matches!(r.value, Value::Vector(_) | Value::Scalar { .. }));
        check_outcome(case, result)?;
        if case.fail || !succeeded || case.ordered || case.range_vector.is_some() {
            return Ok(());
        }
        if ["start()", "end()", "range()", "step()"]
            .iter()
            .any(|f| text.contains(f))
        {
            return Ok(());
        }
        self.check_as_range_query(case, expr, text, time)
            .map_err(|message| format!("range-query consistency: {message}"))
    }

    /// Re-runs an instant case as a range query `t-1m .. t+1m` and checks the middle step.
    fn check_as_range_query(
        &self,
        case: &EvalCase,
        expr: &promql_parser::parser::Expr,
        text: &str,
        time: i64,
    ) -> Result<(), String> {
        let result = self
            .engine
            .range_query_expr(
                &self.floats,
                expr,
                text,
                time - 60_000,
                time + 60_000,
                60_000,
                &QueryOptions::default(),
            )
            .map_err(|error| format!("unexpected error: {error}"))?;
        let Value::Matrix(matrix) = result.value else {
            return Err("range query did not return a matrix".to_string());
        };
        let mut vector = Vec::new();
        for series in matrix {
            if let Some(point) = series.points.iter().find(|p| p.t == time) {
                vector.push((series.labels.clone(), point.v));
            }
        }
        let expected_scalar = case
            .expected
            .iter()
            .any(|e| matches!(e, Expected::Scalar(_)));
        if expected_scalar {
            if let [(labels, value)] = vector.as_slice()
                && labels.is_empty()
                && let Some(Expected::Scalar(expected)) = case.expected.first()
                && almost_equal(*expected, *value)
            {
                return Ok(());
            }
            return Err("scalar differs".to_string());
        }
        compare_vector(&case.expected, &vector, false)
    }
}

/// Checks a query's outcome (error or value and annotations) against the expectations.
fn check_outcome(
    case: &EvalCase,
    result: Result<QueryResult, promql_engine::Error>,
) -> Result<(), String> {
    let result = match result {
        Err(error) => {
            if case.fail {
                return match check_failure(case, &error.to_string()) {
                    Outcome::Failed(message) => Err(message),
                    _ => Ok(()),
                };
            }
            return Err(format!("unexpected error: {error}"));
        }
        Ok(result) => result,
    };
    if case.fail {
        return Err("expected an error, query succeeded".to_string());
    }
    check_annotations("warn", &case.warn, &result.warnings)?;
    check_annotations("info", &case.info, &result.infos)?;
    check_result(case, &result)
}

/// Syntax of Prometheus 3 that `promql-parser` cannot read, if `query` uses it.
fn unsupported_syntax(query: &str) -> Option<&'static str> {
    let words: Vec<&str> = query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    ["anchored", "smoothed"]
        .into_iter()
        .find(|modifier| words.contains(modifier))
        .map(|modifier| match modifier {
            "anchored" => "the anchored range modifier",
            _ => "the smoothed range modifier",
        })
}

fn check_failure(case: &EvalCase, message: &str) -> Outcome {
    if let Some(expected) = &case.fail_msg
        && expected.trim() != message.trim()
    {
        return Outcome::Failed(format!("expected error {expected:?}, got {message:?}"));
    }
    if let Some(pattern) = &case.fail_regex {
        match regex::Regex::new(pattern) {
            Ok(regex) if regex.is_match(message) => {}
            _ => return Outcome::Failed(format!("error {message:?} does not match {pattern:?}")),
        }
    }
    Outcome::Passed
}

fn check_annotations(
    level: &str,
    expectation: &AnnotationExpectation,
    actual: &[String],
) -> Result<(), String> {
    if expectation.none {
        if !actual.is_empty() {
            return Err(format!("expected no {level} annotations, got {actual:?}"));
        }
        return Ok(());
    }
    let expects_some =
        expectation.any || !expectation.exact.is_empty() || !expectation.regex.is_empty();
    if !expects_some {
        return Ok(());
    }
    if actual.is_empty() {
        return Err(format!("expected {level} annotations, got none"));
    }
    let regexes: Vec<regex::Regex> = expectation
        .regex
        .iter()
        .filter_map(|pattern| regex::Regex::new(pattern).ok())
        .collect();
    for exact in &expectation.exact {
        if !actual.iter().any(|a| a == exact) {
            return Err(format!("expected {level} {exact:?}, got {actual:?}"));
        }
    }
    for regex in &regexes {
        if !actual.iter().any(|a| regex.is_match(a)) {
            return Err(format!(
                "expected {level} matching {:?}, got {actual:?}",
                regex.as_str()
            ));
        }
    }
    if !expectation.any {
        for annotation in actual {
            let matched = expectation.exact.iter().any(|e| e == annotation)
                || regexes.iter().any(|r| r.is_match(annotation));
            if !matched {
                return Err(format!("unexpected {level} annotation {annotation:?}"));
            }
        }
    }
    Ok(())
}

/// Float equality with the runner's tolerance (stale NaN only equals stale NaN).
pub(crate) fn almost_equal(a: f64, b: f64) -> bool {
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    const EPSILON: f64 = 1e-6;
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || sum < MIN_NORMAL {
        return diff < EPSILON * MIN_NORMAL;
    }
    diff / sum.min(f64::MAX) < EPSILON
}

fn check_result(case: &EvalCase, result: &QueryResult) -> Result<(), String> {
    match &result.value {
        Value::Scalar { v, .. } => match case.expected.as_slice() {
            [Expected::Scalar(expected)] if almost_equal(*expected, *v) => Ok(()),
            _ => Err(format!("got scalar {v}, expected {:?}", case.expected)),
        },
        Value::String { v, .. } => match case.expected.as_slice() {
            [Expected::String(expected)] if expected == v => Ok(()),
            _ => Err(format!("got string {v:?}, expected {:?}", case.expected)),
        },
        Value::Vector(vector) => {
            if case.range_vector.is_some() {
                return Err("expected a range vector, got an instant vector".to_string());
            }
            let actual: Vec<(Labels, f64)> =
                vector.iter().map(|e| (e.labels.clone(), e.v)).collect();
            compare_vector(&case.expected, &actual, case.ordered)
        }
        Value::Matrix(matrix) => {
            let (start, step) = if case.range {
                (case.start, case.step)
            } else if let Some((from, _, step)) = case.range_vector {
                (from, step)
            } else {
                return Err("got a range vector without `expect range vector`".to_string());
            };
            let mut expected_series = Vec::new();
            for expected in &case.expected {
                match expected {
                    Expected::Series { labels, values } => expected_series.push((labels, values)),
                    other => return Err(format!("unexpected expectation {other:?} for a matrix")),
                }
            }
            if matrix
                .windows(2)
                .any(|pair| pair[0].labels >= pair[1].labels)
            {
                return Err("matrix is not sorted by labels".to_string());
            }
            if matrix.len() != expected_series.len() {
                return Err(format!(
                    "expected {} series, got {}: {:?}",
                    expected_series.len(),
                    matrix.len(),
                    matrix
                        .iter()
                        .map(|s| s.labels.to_string())
                        .collect::<Vec<_>>()
                ));
            }
            for (labels, values) in expected_series {
                let Some(series) = matrix.iter().find(|s| &s.labels == labels) else {
                    return Err(format!("missing series {labels}"));
                };
                let expected_points: Vec<(i64, f64)> = values
                    .iter()
                    .enumerate()
                    .filter_map(|(k, v)| v.map(|v| (start + k as i64 * step, v)))
                    .collect();
                if expected_points.len() != series.points.len()
                    || expected_points
                        .iter()
                        .zip(&series.points)
                        .any(|((t, v), p)| *t != p.t || !almost_equal(*v, p.v))
                {
                    return Err(format!(
                        "series {labels}: expected {expected_points:?}, got {:?}",
                        series.points.iter().map(|p| (p.t, p.v)).collect::<Vec<_>>()
                    ));
                }
            }
            Ok(())
        }
    }
}

fn compare_vector(
    expected: &[Expected],
    actual: &[(Labels, f64)],
    ordered: bool,
) -> Result<(), String> {
    let mut wanted = Vec::new();
    for expectation in expected {
        match expectation {
            Expected::Series { labels, values } => {
                if values.len() != 1 {
                    return Err(format!("expected exactly one value for {labels}"));
                }
                wanted.push((labels.clone(), values[0]));
            }
            other => return Err(format!("got a vector, expected {other:?}")),
        }
    }
    if wanted.len() != actual.len() {
        return Err(format!(
            "expected {} elements, got {}: {:?}",
            wanted.len(),
            actual.len(),
            actual
                .iter()
                .map(|(l, v)| format!("{l} {v}"))
                .collect::<Vec<_>>()
        ));
    }
    for (index, (labels, value)) in wanted.iter().enumerate() {
        let Some(position) = actual.iter().position(|(l, _)| l == labels) else {
            return Err(format!(
                "missing {labels}; got {:?}",
                actual
                    .iter()
                    .map(|(l, v)| format!("{l} {v}"))
                    .collect::<Vec<_>>()
            ));
        };
        if ordered && position != index {
            return Err(format!("{labels} at position {position}, expected {index}"));
        }
        let got = actual[position].1;
        match value {
            Some(v) if almost_equal(*v, got) => {}
            _ => return Err(format!("{labels}: expected {value:?}, got {got}")),
        }
    }
    Ok(())
}
