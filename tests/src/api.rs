//! The querier's Prometheus HTTP API as the scenarios use it: requests and JSON answers.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use serde_json::Value;
use test_harness::http_get;

/// One answer of the querier's HTTP API: status code and parsed JSON body.
#[derive(Debug, Clone)]
pub struct QueryAnswer {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub json: Value,
}

impl QueryAnswer {
    /// The `data.result` array (empty when missing).
    pub fn result(&self) -> Vec<Value> {
        self.json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The `warnings` strings (empty when missing).
    pub fn warnings(&self) -> Vec<String> {
        self.json["warnings"]
            .as_array()
            .map(|warnings| {
                warnings
                    .iter()
                    .filter_map(|warning| warning.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether this is a `200` with `"status":"success"`.
    pub fn is_success(&self) -> bool {
        self.status == 200 && self.json["status"] == "success"
    }
}

/// GETs `path_and_query` from `addr` and parses the JSON body.
pub fn get_json(addr: SocketAddr, path_and_query: &str) -> Result<QueryAnswer> {
    let (status, body) =
        http_get(addr, path_and_query).with_context(|| format!("GET {path_and_query}"))?;
    let json = serde_json::from_str(&body)
        .with_context(|| format!("GET {path_and_query}: status {status}, body not JSON: {body}"))?;
    Ok(QueryAnswer { status, json })
}

/// `/api/v1/query` at `time_ms`, with `extra` parameters (`&dedup=false`, ...).
pub fn query_path(expr: &str, time_ms: i64, extra: &str) -> String {
    format!(
        "/api/v1/query?query={}&time={}{extra}",
        enc(expr),
        format_time(time_ms)
    )
}

/// `/api/v1/query_range` from `start_ms` to `end_ms` every `step_ms`, with `extra` parameters.
pub fn query_range_path(
    expr: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    extra: &str,
) -> String {
    format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={}{extra}",
        enc(expr),
        format_time(start_ms),
        format_time(end_ms),
        format_time(step_ms)
    )
}

/// A Prometheus API time parameter: seconds with milliseconds.
pub fn format_time(millis: i64) -> String {
    format!("{}.{:03}", millis.div_euclid(1000), millis.rem_euclid(1000))
}

/// Percent-encodes a query parameter value.
pub fn enc(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `(t_ms, value)` pairs of a matrix series' `values` (or a vector sample's `value`).
pub fn points(series: &Value) -> Vec<(i64, f64)> {
    let pairs: Vec<&Value> = match series["values"].as_array() {
        Some(values) => values.iter().collect(),
        None => vec![&series["value"]],
    };
    pairs
        .into_iter()
        .filter_map(|pair| {
            let seconds = pair[0].as_f64()?;
            let value: f64 = pair[1].as_str()?.parse().ok()?;
            Some(((seconds * 1000.0).round() as i64, value))
        })
        .collect()
}

/// The labels of a result series as `name=value` strings, sorted.
pub fn labels(series: &Value) -> Vec<String> {
    let mut labels: Vec<String> = series["metric"]
        .as_object()
        .map(|metric| {
            metric
                .iter()
                .map(|(name, value)| format!("{name}={}", value.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_promql_and_times() {
        assert_eq!(enc("up{a=\"b c\"}"), "up%7Ba%3D%22b%20c%22%7D");
        assert_eq!(format_time(1_700_000_000_005), "1700000000.005");
        let path = query_range_path("up", 1000, 2000, 500, "&dedup=false");
        assert_eq!(
            path,
            "/api/v1/query_range?query=up&start=1.000&end=2.000&step=0.500&dedup=false"
        );
    }

    #[test]
    fn reads_matrix_and_vector_points() {
        let matrix: Value =
            serde_json::from_str(r#"{"metric":{},"values":[[1.5,"1"],[2,"NaN"]]}"#).unwrap();
        let parsed = points(&matrix);
        assert_eq!(parsed[0], (1500, 1.0));
        assert_eq!(parsed[1].0, 2000);
        assert!(parsed[1].1.is_nan());
        let vector: Value =
            serde_json::from_str(r#"{"metric":{"a":"b"},"value":[3,"7"]}"#).unwrap();
        assert_eq!(points(&vector), vec![(3000, 7.0)]);
        assert_eq!(labels(&vector), vec!["a=b".to_owned()]);
    }
}
