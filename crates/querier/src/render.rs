//! JSON bodies of Prometheus' HTTP API, written by hand so numbers come out exactly as
//! Prometheus writes them (timestamps as JSON numbers in seconds, values as strings).

use prom_model::Labels;
use promql_engine::Value;

use crate::params::{format_timestamp, format_value};

/// A JSON string literal.
pub fn string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// A label set as a JSON object.
pub fn labels(labels: &Labels) -> String {
    let fields: Vec<String> = labels
        .iter()
        .map(|label| format!("{}:{}", string(&label.name), string(&label.value)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn point(t: i64, v: f64) -> String {
    format!("[{},{}]", format_timestamp(t), string(&format_value(v)))
}

/// `{"resultType":...,"result":...}` for a query value.
pub fn query_data(value: &Value) -> String {
    let (kind, result) = match value {
        Value::Scalar { t, v } => ("scalar", point(*t, *v)),
        Value::String { t, v } => (
            "string",
            format!("[{},{}]", format_timestamp(*t), string(v)),
        ),
        Value::Vector(elements) => {
            let items: Vec<String> = elements
                .iter()
                .map(|element| {
                    format!(
                        "{{\"metric\":{},\"value\":{}}}",
                        labels(&element.labels),
                        point(element.t, element.v)
                    )
                })
                .collect();
            ("vector", format!("[{}]", items.join(",")))
        }
        Value::Matrix(series) => {
            let items: Vec<String> = series
                .iter()
                .map(|one| {
                    let points: Vec<String> = one.points.iter().map(|p| point(p.t, p.v)).collect();
                    format!(
                        "{{\"metric\":{},\"values\":[{}]}}",
                        labels(&one.labels),
                        points.join(",")
                    )
                })
                .collect();
            ("matrix", format!("[{}]", items.join(",")))
        }
    };
    format!("{{\"resultType\":\"{kind}\",\"result\":{result}}}")
}

/// The success envelope around raw JSON `data`, with `warnings` and `infos` when present.
pub fn success(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut body = format!("{{\"status\":\"success\",\"data\":{data}");
    for (name, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            let items: Vec<String> = list.iter().map(|item| string(item)).collect();
            body.push_str(&format!(",\"{name}\":[{}]", items.join(",")));
        }
    }
    body.push('}');
    body
}

/// A JSON array of strings.
pub fn strings(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| string(item)).collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use promql_engine::{Element, Point, Series};

    use super::*;

    #[test]
    fn values_render_like_prometheus() {
        let vector = Value::Vector(vec![Element {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]),
            t: 1_500,
            v: f64::INFINITY,
            drop_name: false,
        }]);
        assert_eq!(
            query_data(&vector),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1.5,"+Inf"]}]}"#
        );
        let matrix = Value::Matrix(vec![Series {
            labels: Labels::empty(),
            points: vec![
                Point { t: 1000, v: 0.1 },
                Point {
                    t: 2000,
                    v: f64::NAN,
                },
            ],
            drop_name: false,
        }]);
        assert_eq!(
            query_data(&matrix),
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1,"0.1"],[2,"NaN"]]}]}"#
        );
        assert_eq!(
            query_data(&Value::Scalar { t: 0, v: -1e-7 }),
            r#"{"resultType":"scalar","result":[0,"-0.0000001"]}"#
        );
        assert_eq!(
            success("[]", &["w".to_owned()], &[]),
            r#"{"status":"success","data":[],"warnings":["w"]}"#
        );
    }
}
