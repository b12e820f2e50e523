//! Brings our query results and Prometheus' HTTP API answers into one comparable shape.

use std::collections::BTreeMap;

use promql_engine::{QueryResult, Value};

/// One result series (an instant vector element is a series with one point).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// `{a="b", ...}` with labels sorted by name.
    pub(crate) labels: String,
    /// `(timestamp ms, value)`.
    pub(crate) points: Vec<(i64, f64)>,
}

/// A normalised answer.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// A value: its type name and rows in the order the server returned them.
    Rows { kind: String, rows: Vec<Row> },
    /// An error (only the fact is compared, not the wording).
    Error(String),
}

fn render_labels(pairs: impl IntoIterator<Item = (String, String)>) -> String {
    let sorted: BTreeMap<String, String> = pairs.into_iter().collect();
    let inner: Vec<String> = sorted
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Our engine's answer.
pub(crate) fn from_engine(result: Result<QueryResult, promql_engine::Error>) -> Answer {
    let result = match result {
        Ok(result) => result,
        Err(error) => return Answer::Error(error.to_string()),
    };
    let labels_of = |labels: &prom_model::Labels| {
        render_labels(
            labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect::<Vec<_>>(),
        )
    };
    let (kind, rows) = match result.value {
        Value::Scalar { t, v } => (
            "scalar",
            vec![Row {
                labels: "scalar".into(),
                points: vec![(t, v)],
            }],
        ),
        Value::String { .. } => ("string", Vec::new()),
        Value::Vector(vector) => (
            "vector",
            vector
                .iter()
                .map(|e| Row {
                    labels: labels_of(&e.labels),
                    points: vec![(e.t, e.v)],
                })
                .collect(),
        ),
        Value::Matrix(matrix) => (
            "matrix",
            matrix
                .iter()
                .map(|s| Row {
                    labels: labels_of(&s.labels),
                    points: s.points.iter().map(|p| (p.t, p.v)).collect(),
                })
                .collect(),
        ),
    };
    Answer::Rows {
        kind: kind.into(),
        rows,
    }
}

fn parse_point(point: &serde_json::Value) -> Option<(i64, f64)> {
    let pair = point.as_array()?;
    let t = pair.first()?.as_f64()?;
    let text = pair.get(1)?.as_str()?;
    let v = match text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(((t * 1000.0).round() as i64, v))
}

fn metric_labels(item: &serde_json::Value) -> String {
    let pairs = item
        .get("metric")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    render_labels(pairs)
}

/// Prometheus' HTTP answer (`/api/v1/query` or `/api/v1/query_range`), given the body; an
/// unreadable body is reported as `Err`.
pub(crate) fn from_prometheus(body: &str) -> Result<Answer, String> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|error| format!("bad json {error}: {body}"))?;
    if json["status"] != "success" {
        return Ok(Answer::Error(format!(
            "{}: {}",
            json["errorType"].as_str().unwrap_or_default(),
            json["error"].as_str().unwrap_or_default()
        )));
    }
    let data = &json["data"];
    let kind = data["resultType"].as_str().unwrap_or_default().to_string();
    let result = &data["result"];
    let bad = || format!("unexpected answer shape: {body}");
    let rows = match kind.as_str() {
        "scalar" => vec![Row {
            labels: "scalar".into(),
            points: vec![parse_point(result).ok_or_else(bad)?],
        }],
        "string" => Vec::new(),
        "vector" => {
            let mut rows = Vec::new();
            for item in result.as_array().ok_or_else(bad)? {
                rows.push(Row {
                    labels: metric_labels(item),
                    points: vec![parse_point(&item["value"]).ok_or_else(bad)?],
                });
            }
            rows
        }
        "matrix" => {
            let mut rows = Vec::new();
            for item in result.as_array().ok_or_else(bad)? {
                let mut points = Vec::new();
                for point in item["values"].as_array().ok_or_else(bad)? {
                    points.push(parse_point(point).ok_or_else(bad)?);
                }
                rows.push(Row {
                    labels: metric_labels(item),
                    points,
                });
            }
            rows
        }
        _ => return Err(bad()),
    };
    Ok(Answer::Rows { kind, rows })
}

/// Values agree: both NaN, equal, or within a relative 1e-6 (the conformance tolerance), or
/// within 1e-9 absolute near zero.
pub(crate) fn values_agree(ours: f64, theirs: f64) -> bool {
    if ours.is_nan() || theirs.is_nan() {
        return ours.is_nan() && theirs.is_nan();
    }
    if ours == theirs {
        return true;
    }
    let difference = (ours - theirs).abs();
    difference <= 1e-6 * ours.abs().max(theirs.abs()) || difference <= 1e-9
}

fn describe_rows(rows: &[Row]) -> String {
    let mut text = String::new();
    for row in rows.iter().take(6) {
        let points: Vec<String> = row
            .points
            .iter()
            .take(4)
            .map(|(t, v)| format!("{v}@{t}"))
            .collect();
        let more = if row.points.len() > 4 {
            format!(" …(+{})", row.points.len() - 4)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "    {} => {}{more}\n",
            row.labels,
            points.join(" ")
        ));
    }
    if rows.len() > 6 {
        text.push_str(&format!("    … {} rows in all\n", rows.len()));
    }
    text
}

/// Compares two answers; `ordered` also checks the sequence of values (for `sort`/`sort_desc`).
/// Returns a readable description of the first differences.
pub(crate) fn diff(ours: &Answer, theirs: &Answer, ordered: bool) -> Option<String> {
    match (ours, theirs) {
        (Answer::Error(_), Answer::Error(_)) => None,
        (Answer::Error(error), Answer::Rows { rows, .. }) => Some(format!(
            "  ours failed: {error}\n  prometheus answered:\n{}",
            describe_rows(rows)
        )),
        (Answer::Rows { rows, .. }, Answer::Error(error)) => Some(format!(
            "  prometheus failed: {error}\n  ours answered:\n{}",
            describe_rows(rows)
        )),
        (
            Answer::Rows {
                kind: our_kind,
                rows: our_rows,
            },
            Answer::Rows {
                kind: their_kind,
                rows: their_rows,
            },
        ) => {
            if our_kind != their_kind {
                return Some(format!(
                    "  result type: ours {our_kind}, prometheus {their_kind}"
                ));
            }
            if ordered {
                let our_values: Vec<f64> = our_rows.iter().map(|r| r.points[0].1).collect();
                let their_values: Vec<f64> = their_rows.iter().map(|r| r.points[0].1).collect();
                let same = our_values.len() == their_values.len()
                    && our_values
                        .iter()
                        .zip(&their_values)
                        .all(|(a, b)| values_agree(*a, *b));
                if !same {
                    return Some(format!(
                        "  order of values differs\n  ours: {our_values:?}\n  prometheus: {their_values:?}"
                    ));
                }
            }
            let mut ours_sorted = our_rows.clone();
            let mut theirs_sorted = their_rows.clone();
            ours_sorted.sort_by(|a, b| a.labels.cmp(&b.labels));
            theirs_sorted.sort_by(|a, b| a.labels.cmp(&b.labels));
            let our_labels: Vec<&str> = ours_sorted.iter().map(|r| r.labels.as_str()).collect();
            let their_labels: Vec<&str> = theirs_sorted.iter().map(|r| r.labels.as_str()).collect();
            if our_labels != their_labels {
                let only_ours: Vec<&&str> = our_labels
                    .iter()
                    .filter(|l| !their_labels.contains(l))
                    .take(5)
                    .collect();
                let only_theirs: Vec<&&str> = their_labels
                    .iter()
                    .filter(|l| !our_labels.contains(l))
                    .take(5)
                    .collect();
                return Some(format!(
                    "  series differ ({} ours, {} prometheus)\n  only ours: {only_ours:?}\n  only prometheus: {only_theirs:?}",
                    our_labels.len(),
                    their_labels.len()
                ));
            }
            for (our_row, their_row) in ours_sorted.iter().zip(&theirs_sorted) {
                let our_times: Vec<i64> = our_row.points.iter().map(|p| p.0).collect();
                let their_times: Vec<i64> = their_row.points.iter().map(|p| p.0).collect();
                if our_times != their_times {
                    let only_ours: Vec<&i64> = our_times
                        .iter()
                        .filter(|t| !their_times.contains(t))
                        .take(5)
                        .collect();
                    let only_theirs: Vec<&i64> = their_times
                        .iter()
                        .filter(|t| !our_times.contains(t))
                        .take(5)
                        .collect();
                    return Some(format!(
                        "  {}: timestamps differ ({} ours, {} prometheus); only ours {only_ours:?}, only prometheus {only_theirs:?}",
                        our_row.labels,
                        our_times.len(),
                        their_times.len()
                    ));
                }
                for (ours_point, theirs_point) in our_row.points.iter().zip(&their_row.points) {
                    if !values_agree(ours_point.1, theirs_point.1) {
                        return Some(format!(
                            "  {} at {}: ours {} prometheus {}",
                            our_row.labels, ours_point.0, ours_point.1, theirs_point.1
                        ));
                    }
                }
            }
            None
        }
    }
}
