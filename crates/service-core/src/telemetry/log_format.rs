//! Thanos-like log lines: `ts=... caller=file.rs:12 level=info msg="..." key=value` (logfmt) or
//! one JSON object a line, written to stderr.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::flags::LogFormat;

/// Formats events as logfmt or JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThanosFormat {
    pub(crate) format: LogFormat,
}

/// An event's fields, `message` split out.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    pairs: Vec<(String, FieldValue)>,
}

enum FieldValue {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, FieldValue::Text(value.to_owned()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::Number(value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::Number(value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match serde_json::Number::from_f64(value) {
            Some(number) => self.push(field, FieldValue::Number(number)),
            None => self.push(field, FieldValue::Text(value.to_string())),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, FieldValue::Text(crate::status::error_chain(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, FieldValue::Text(format!("{value:?}")));
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: FieldValue) {
        if field.name() == "message" {
            let text = match value {
                FieldValue::Text(text) => text,
                FieldValue::Number(number) => number.to_string(),
                FieldValue::Bool(flag) => flag.to_string(),
            };
            self.message = Some(text);
            return;
        }
        // `r#type` and friends arrive with their raw prefix.
        let name = field.name().trim_start_matches("r#").to_owned();
        self.pairs.push((name, value));
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// `2026-11-25T10:43:54.123Z` for a time since the epoch (saturating 292 million years on).
pub(crate) fn format_timestamp(since_epoch: std::time::Duration) -> String {
    let unix_millis = i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX);
    prom_model::time::format_rfc3339_millis_fixed(unix_millis)
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value.chars().any(|character| {
            character == ' ' || character == '=' || character == '"' || character.is_control()
        })
}

fn write_logfmt_value(out: &mut String, value: &str) {
    if !needs_quotes(value) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for character in value.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            other if other.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(other));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// Renders one log line (without the newline).
pub(crate) fn render_line(
    format: LogFormat,
    timestamp: &str,
    caller: &str,
    level: &Level,
    event: &Event<'_>,
) -> String {
    let mut fields = Fields::default();
    event.record(&mut fields);
    let message = fields.message.unwrap_or_default();
    match format {
        LogFormat::Logfmt => {
            let mut line = String::with_capacity(128);
            let _ = write!(
                line,
                "ts={timestamp} caller={caller} level={} msg=",
                level_name(level)
            );
            write_logfmt_value(&mut line, &message);
            for (name, value) in fields.pairs {
                line.push(' ');
                line.push_str(&name);
                line.push('=');
                match value {
                    FieldValue::Text(text) => write_logfmt_value(&mut line, &text),
                    FieldValue::Number(number) => line.push_str(&number.to_string()),
                    FieldValue::Bool(flag) => line.push_str(if flag { "true" } else { "false" }),
                }
            }
            line
        }
        LogFormat::Json => {
            let mut object = serde_json::Map::new();
            object.insert("ts".to_owned(), timestamp.into());
            object.insert("caller".to_owned(), caller.into());
            object.insert("level".to_owned(), level_name(level).into());
            object.insert("msg".to_owned(), message.into());
            for (name, value) in fields.pairs {
                let json = match value {
                    FieldValue::Text(text) => serde_json::Value::String(text),
                    FieldValue::Number(number) => serde_json::Value::Number(number),
                    FieldValue::Bool(flag) => serde_json::Value::Bool(flag),
                };
                object.insert(name, json);
            }
            serde_json::Value::Object(object).to_string()
        }
    }
}

impl<S, N> FormatEvent<S, N> for ThanosFormat
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let file = metadata.file().unwrap_or(metadata.target());
        let file_name = file.rsplit('/').next().unwrap_or(file);
        let caller = match metadata.line() {
            Some(line) => format!("{file_name}:{line}"),
            None => file_name.to_owned(),
        };
        let line = render_line(
            self.format,
            &format_timestamp(since_epoch),
            &caller,
            metadata.level(),
            event,
        );
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn capture(format: LogFormat) -> String {
        let output = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(ThanosFormat { format })
            .with_writer(output.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                block = "01H",
                size = 42_u64,
                ok = true,
                path = "a b",
                "uploaded block"
            );
        });
        String::from_utf8(output.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn logfmt_line() {
        let line = capture(LogFormat::Logfmt);
        assert!(line.starts_with("ts=20"), "{line}");
        assert!(line.contains(" caller=log_format.rs:"), "{line}");
        assert!(
            line.ends_with(
                " level=info msg=\"uploaded block\" block=01H size=42 ok=true path=\"a b\"\n"
            ),
            "{line}"
        );
    }

    #[test]
    fn json_line() {
        let line = capture(LogFormat::Json);
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["level"], "info");
        assert_eq!(value["msg"], "uploaded block");
        assert_eq!(value["block"], "01H");
        assert_eq!(value["size"], 42);
        assert_eq!(value["ok"], true);
        assert!(value["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn quotes_logfmt_values() {
        let mut out = String::new();
        write_logfmt_value(&mut out, "say \"hi\"\nnow");
        assert_eq!(out, r#""say \"hi\"\nnow""#);
        out.clear();
        write_logfmt_value(&mut out, "");
        assert_eq!(out, "\"\"");
        out.clear();
        write_logfmt_value(&mut out, "plain");
        assert_eq!(out, "plain");
    }

    #[test]
    fn formats_timestamps() {
        assert_eq!(format_timestamp(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(Duration::from_millis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            format_timestamp(Duration::from_secs(1_795_603_434)),
            "2026-11-25T10:43:54.000Z"
        );
    }
}
