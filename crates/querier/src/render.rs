//! JSON bodies of Prometheus' HTTP API, written by hand so numbers come out exactly as
//! Prometheus writes them (timestamps as JSON numbers in seconds, values as strings).

use prom_model::Labels;
use promql_engine::Value;

use crate::params::{write_timestamp, write_value};

/// Appends `text` as a JSON string literal, escaped as `serde_json` escapes it: `"` and `\\`,
/// the short forms `\b \f \n \r \t`, other control characters as `\u00xx`; everything else
/// (non-ASCII included) as is.
fn push_string(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut plain_from = 0;
    for (index, byte) in text.bytes().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `byte` is ASCII, so `index` is a char boundary.
        out.push_str(&text[plain_from..index]);
        plain_from = index + 1;
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(&text[plain_from..]);
    out.push('"');
}

/// Appends a sample value as a JSON string.
fn push_value(out: &mut String, value: f64) {
    out.push('"');
    write_value(out, value);
    out.push('"');
}

fn push_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push(',');
    push_value(out, v);
    out.push(']');
}

fn push_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (index, label) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_string(out, &label.name);
        out.push(':');
        push_string(out, &label.value);
    }
    out.push('}');
}

fn push_strings(out: &mut String, items: &[String]) {
    out.push('[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_string(out, item);
    }
    out.push(']');
}

/// Appends `{"resultType":...,"result":...}` for a query value.
fn push_query_data(out: &mut String, value: &Value) {
    out.push_str("{\"resultType\":\"");
    out.push_str(match value {
        Value::Scalar { .. } => "scalar",
        Value::String { .. } => "string",
        Value::Vector(_) => "vector",
        Value::Matrix(_) => "matrix",
    });
    out.push_str("\",\"result\":");
    match value {
        Value::Scalar { t, v } => push_point(out, *t, *v),
        Value::String { t, v } => {
            out.push('[');
            write_timestamp(out, *t);
            out.push(',');
            push_string(out, v);
            out.push(']');
        }
        Value::Vector(elements) => {
            out.push('[');
            for (index, element) in elements.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, &element.labels);
                out.push_str(",\"value\":");
                push_point(out, element.t, element.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (index, one) in series.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, &one.labels);
                out.push_str(",\"values\":[");
                for (position, point) in one.points.iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    push_point(out, point.t, point.v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
}

/// Appends the `warnings` and `infos` fields (when not empty) and closes the envelope.
fn finish_success(out: &mut String, warnings: &[String], infos: &[String]) {
    for (name, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            push_strings(out, list);
        }
    }
    out.push('}');
}

/// A JSON string literal.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_string(&mut out, text);
    out
}

/// A label set as a JSON object.
pub fn labels(labels: &Labels) -> String {
    let mut out = String::new();
    push_labels(&mut out, labels);
    out
}

/// `{"resultType":...,"result":...}` for a query value.
pub fn query_data(value: &Value) -> String {
    let mut out = String::new();
    push_query_data(&mut out, value);
    out
}

/// The success envelope around a query value, with `warnings` and `infos` when present: what
/// [`success`] gives around [`query_data`], written in one pass into one buffer.
pub fn query_success(value: &Value, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::from("{\"status\":\"success\",\"data\":");
    push_query_data(&mut out, value);
    finish_success(&mut out, warnings, infos);
    out
}

/// The success envelope around raw JSON `data`, with `warnings` and `infos` when present.
pub fn success(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    out.push_str("{\"status\":\"success\",\"data\":");
    out.push_str(data);
    finish_success(&mut out, warnings, infos);
    out
}

/// A JSON array of strings.
pub fn strings(items: &[String]) -> String {
    let mut out = String::new();
    push_strings(&mut out, items);
    out
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
        assert_eq!(
            query_success(&vector, &[], &["i".to_owned()]),
            success(&query_data(&vector), &[], &["i".to_owned()])
        );
    }

    /// Strings are escaped exactly as `serde_json` escapes them, every ASCII character and
    /// some beyond.
    #[test]
    fn strings_escape_like_serde_json() {
        let mut texts: Vec<String> = (0u8..=0x7f)
            .map(|byte| char::from(byte).to_string())
            .collect();
        texts.push("a\u{0}b\"c\\d\u{7f}é😀\u{1f}\n".to_owned());
        texts.push(String::new());
        texts.push((0u8..=0x7f).map(char::from).collect());
        for text in texts {
            let expected = serde_json::Value::String(text.clone()).to_string();
            assert_eq!(string(&text), expected, "{text:?}");
        }
    }

    /// Timestamps and values render as `params::format_timestamp` and `format_value` spell
    /// them.
    #[test]
    fn points_render_like_the_params_formatters() {
        use crate::params::{format_timestamp, format_value};
        for t in [
            0,
            1,
            -1,
            10,
            100,
            999,
            1000,
            1001,
            1010,
            1100,
            -1500,
            -20,
            1_699_992_307_120,
            i64::MIN,
            i64::MAX,
        ] {
            for v in [
                0.0,
                -0.0,
                1.5,
                -1e-7,
                1e300,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                0.1 + 0.2,
            ] {
                let mut out = String::new();
                push_point(&mut out, t, v);
                assert_eq!(
                    out,
                    format!("[{},{}]", format_timestamp(t), string(&format_value(v)))
                );
            }
        }
    }
}
