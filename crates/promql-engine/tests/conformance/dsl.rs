//! Parser for Prometheus' `.test` script DSL (spec §5).

use prom_model::Labels;

/// One command of a script, with the 1-based line it starts on.
#[derive(Debug)]
pub(crate) enum Command {
    Clear,
    Load {
        interval: i64,
        nhcb: bool,
        series: Vec<LoadSeries>,
    },
    Eval(Box<EvalCase>),
}

#[derive(Debug)]
pub(crate) struct LoadSeries {
    pub(crate) labels: Labels,
    /// `None` marks a skipped slot.
    pub(crate) values: Vec<Option<f64>>,
    pub(crate) histogram: bool,
    /// Start-timestamp offsets from an `@st` line, per slot (`None` = unknown).
    pub(crate) start_offsets: Option<Vec<Option<i64>>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Expected {
    Scalar(f64),
    String(String),
    Series {
        labels: Labels,
        values: Vec<Option<f64>>,
    },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AnnotationExpectation {
    pub(crate) exact: Vec<String>,
    pub(crate) regex: Vec<String>,
    pub(crate) any: bool,
    pub(crate) none: bool,
}

#[derive(Debug)]
pub(crate) struct EvalCase {
    pub(crate) query: String,
    /// Instant: `start == end`, `step == 0`.
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) step: i64,
    pub(crate) range: bool,
    pub(crate) fail: bool,
    pub(crate) fail_msg: Option<String>,
    pub(crate) fail_regex: Option<String>,
    pub(crate) ordered: bool,
    pub(crate) warn: AnnotationExpectation,
    pub(crate) info: AnnotationExpectation,
    pub(crate) range_vector: Option<(i64, i64, i64)>,
    pub(crate) expected: Vec<Expected>,
    /// Why the case cannot be run here, if it cannot.
    pub(crate) unsupported: Option<String>,
}

/// Parses a Prometheus duration (`5m`, `1h30m`, `10s53ms`, `0`); a bare number is seconds.
pub(crate) fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    if text == "0" {
        return Some(0);
    }
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if let Ok(seconds) = body.parse::<f64>()
        && !body.is_empty()
        && body.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        let ms = (seconds * 1000.0).round() as i64;
        return Some(if negative { -ms } else { ms });
    }
    let mut total: i64 = 0;
    let mut rest = body;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let factor = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total += number * factor;
    }
    Some(if negative { -total } else { total })
}

/// Parses a number as the DSL does: Go floats, `Inf`, `NaN`, hex/octal ints, durations.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let (sign, body) = match lower.strip_prefix('-') {
        Some(rest) => (-1.0, rest.to_string()),
        None => (1.0, lower.trim_start_matches('+').to_string()),
    };
    match body.as_str() {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if let Some(hex) = body.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|v| sign * v as f64);
    }
    if body.len() > 1 && body.starts_with('0') && body.chars().all(|c| c.is_ascii_digit()) {
        return i64::from_str_radix(&body[1..], 8)
            .ok()
            .map(|v| sign * v as f64);
    }
    if body
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && let Ok(value) = body.replace('_', "").parse::<f64>()
    {
        return Some(sign * value);
    }
    parse_duration(text).map(|ms| ms as f64 / 1000.0)
}

/// Splits a series line into its label part and the rest.
pub(crate) fn parse_series_desc(line: &str) -> Option<(Labels, &str)> {
    let line = line.trim();
    let mut labels = Labels::empty();
    let bytes = line.as_bytes();
    let mut pos = 0;
    // Metric name.
    while pos < bytes.len()
        && (bytes[pos].is_ascii_alphanumeric() || bytes[pos] == b'_' || bytes[pos] == b':')
    {
        pos += 1;
    }
    if pos > 0 {
        labels.set("__name__", &line[..pos]);
    }
    if pos < bytes.len() && bytes[pos] == b'{' {
        pos += 1;
        loop {
            while pos < bytes.len()
                && (bytes[pos] == b' ' || bytes[pos] == b',' || bytes[pos] == b'\t')
            {
                pos += 1;
            }
            if pos >= bytes.len() {
                return None;
            }
            if bytes[pos] == b'}' {
                pos += 1;
                break;
            }
            let name = if bytes[pos] == b'"' {
                let (text, used) = parse_quoted(&line[pos..])?;
                pos += used;
                text
            } else {
                let start = pos;
                while pos < bytes.len()
                    && (bytes[pos].is_ascii_alphanumeric() || bytes[pos] == b'_')
                {
                    pos += 1;
                }
                line[start..pos].to_string()
            };
            while pos < bytes.len() && bytes[pos] == b' ' {
                pos += 1;
            }
            if pos < bytes.len() && bytes[pos] == b'=' {
                pos += 1;
                while pos < bytes.len() && bytes[pos] == b' ' {
                    pos += 1;
                }
                let (value, used) = parse_quoted(&line[pos..])?;
                pos += used;
                labels.set(name, value);
            } else {
                labels.set("__name__", name);
            }
        }
    }
    if pos == 0 {
        return None;
    }
    Some((labels, &line[pos..]))
}

/// Parses a Go-quoted string (double quotes, back quotes or single quotes) at the start of `text`.
pub(crate) fn parse_quoted(text: &str) -> Option<(String, usize)> {
    let mut chars = text.char_indices();
    let (_, quote) = chars.next()?;
    if quote != '"' && quote != '`' && quote != '\'' {
        return None;
    }
    let mut out = String::new();
    while let Some((index, c)) = chars.next() {
        if c == quote {
            return Some((out, index + c.len_utf8()));
        }
        if c == '\\' && quote != '`' {
            let (_, escaped) = chars.next()?;
            match escaped {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'u' | 'x' | 'U' => {
                    let width = match escaped {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut code = String::new();
                    for _ in 0..width {
                        code.push(chars.next()?.1);
                    }
                    out.push(char::from_u32(u32::from_str_radix(&code, 16).ok()?)?);
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// Expands the value items of a series line; `Err` carries why it cannot be expanded here.
pub(crate) fn parse_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    if text.contains("{{") {
        return Err("native histogram literal".to_string());
    }
    let mut out = Vec::new();
    for item in text.split_whitespace() {
        if item == "_" {
            out.push(None);
            continue;
        }
        if item == "stale" {
            out.push(Some(prom_model::stale_nan()));
            continue;
        }
        if let Some(count) = item.strip_prefix("_x") {
            let n: usize = count.parse().map_err(|_| format!("bad item {item}"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        let (base, times) = match item.rfind('x') {
            Some(index)
                if index > 0
                    && index + 1 < item.len()
                    && item[index + 1..].chars().all(|c| c.is_ascii_digit()) =>
            {
                let count = item[index + 1..]
                    .parse::<usize>()
                    .map_err(|_| format!("bad item {item}"))?;
                (&item[..index], Some(count))
            }
            _ => (item, None),
        };
        if let Some(value) = parse_number(base) {
            match times {
                None => out.push(Some(value)),
                Some(n) => out.extend(std::iter::repeat_n(Some(value), n + 1)),
            }
            continue;
        }
        let split = base
            .char_indices()
            .skip(1)
            .find(|&(index, c)| {
                (c == '+' || c == '-') && !matches!(base.as_bytes()[index - 1], b'e' | b'E')
            })
            .map(|(index, _)| index)
            .ok_or_else(|| format!("bad item {item}"))?;
        let start = parse_number(&base[..split]).ok_or_else(|| format!("bad item {item}"))?;
        let delta = parse_number(&base[split + 1..]).ok_or_else(|| format!("bad item {item}"))?;
        let delta = if &base[split..split + 1] == "-" {
            -delta
        } else {
            delta
        };
        let n = times.ok_or_else(|| format!("bad item {item}"))?;
        let mut value = start;
        for _ in 0..=n {
            out.push(Some(value));
            value += delta;
        }
    }
    Ok(out)
}

fn is_blank(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// Parses a whole script.
pub(crate) fn parse_script(text: &str) -> Result<Vec<(usize, Command)>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if is_blank(line) {
            i += 1;
            continue;
        }
        let line_no = i + 1;
        let word = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut block = Vec::new();
        let mut j = i + 1;
        while j < lines.len() && !is_blank(lines[j]) {
            block.push(lines[j].trim());
            j += 1;
        }
        if word == "clear" {
            commands.push((line_no, Command::Clear));
            i += 1;
            continue;
        }
        i = j;
        if word.starts_with("load") {
            commands.push((line_no, parse_load(line, &block)?));
        } else if word.starts_with("eval") {
            commands.push((
                line_no,
                Command::Eval(Box::new(parse_eval(line_no, line, &block)?)),
            ));
        } else {
            return Err(format!("line {line_no}: unknown command {word:?}"));
        }
    }
    Ok(commands)
}

fn parse_signed_duration(text: &str) -> Option<i64> {
    match text.as_bytes().first()? {
        b'-' => parse_duration(&text[1..]).map(|ms| -ms),
        b'+' => parse_duration(&text[1..]),
        _ => parse_duration(text),
    }
}

/// Expands the items of an `@st` line into per-slot offsets in ms.
fn parse_start_offsets(text: &str) -> Result<Vec<Option<i64>>, String> {
    let mut out = Vec::new();
    for item in text.split_whitespace() {
        if item == "_" {
            out.push(None);
            continue;
        }
        if let Some(count) = item.strip_prefix("_x") {
            let n: usize = count.parse().map_err(|_| format!("bad @st item {item}"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        let (base, times) = match item.rfind('x') {
            Some(index)
                if index > 0
                    && index + 1 < item.len()
                    && item[index + 1..].chars().all(|c| c.is_ascii_digit()) =>
            {
                let count = item[index + 1..]
                    .parse::<usize>()
                    .map_err(|_| format!("bad @st item {item}"))?;
                (&item[..index], Some(count))
            }
            _ => (item, None),
        };
        if let Some(value) = parse_signed_duration(base) {
            out.extend(std::iter::repeat_n(Some(value), times.map_or(1, |n| n + 1)));
            continue;
        }
        let split = base
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == '+' || c == '-')
            .map(|(index, _)| index)
            .ok_or_else(|| format!("bad @st item {item}"))?;
        let start =
            parse_signed_duration(&base[..split]).ok_or_else(|| format!("bad @st item {item}"))?;
        let delta =
            parse_duration(&base[split + 1..]).ok_or_else(|| format!("bad @st item {item}"))?;
        let delta = if &base[split..=split] == "-" {
            -delta
        } else {
            delta
        };
        let n = times.ok_or_else(|| format!("bad @st item {item}"))?;
        for k in 0..=n {
            out.push(Some(start + delta * k as i64));
        }
    }
    Ok(out)
}

fn parse_load(line: &str, block: &[&str]) -> Result<Command, String> {
    let mut parts = line.split_whitespace();
    let word = parts.next().unwrap_or("");
    let interval = parts
        .next()
        .and_then(parse_duration)
        .ok_or_else(|| format!("bad load line {line:?}"))?;
    let mut series = Vec::new();
    let mut pending_offsets: Vec<(Labels, Vec<Option<i64>>)> = Vec::new();
    for entry in block {
        let Some((labels, rest)) = parse_series_desc(entry) else {
            return Err(format!("bad series line {entry:?}"));
        };
        if let Some(items) = rest.trim_start().strip_prefix("@st") {
            pending_offsets.push((labels, parse_start_offsets(items)?));
            continue;
        }
        let start_offsets = pending_offsets
            .iter()
            .position(|(pending, _)| *pending == labels)
            .map(|index| pending_offsets.remove(index).1);
        match parse_values(rest) {
            Ok(values) => series.push(LoadSeries {
                labels,
                values,
                histogram: false,
                start_offsets,
            }),
            Err(_) => series.push(LoadSeries {
                labels,
                values: Vec::new(),
                histogram: true,
                start_offsets,
            }),
        }
    }
    Ok(Command::Load {
        interval,
        nhcb: word.eq_ignore_ascii_case("load_with_nhcb"),
        series,
    })
}

fn parse_annotation_line(target: &mut AnnotationExpectation, rest: &str) {
    let rest = rest.trim();
    if let Some(msg) = rest.strip_prefix("msg:") {
        target.exact.push(msg.trim().to_string());
    } else if let Some(regex) = rest.strip_prefix("regex:") {
        target.regex.push(regex.trim().to_string());
    } else {
        target.any = true;
    }
}

fn parse_eval(line_no: usize, line: &str, block: &[&str]) -> Result<EvalCase, String> {
    let (command, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let command = command.to_ascii_lowercase();
    let rest = rest.trim();
    let mut case = EvalCase {
        query: String::new(),
        start: 0,
        end: 0,
        step: 0,
        range: false,
        fail: command == "eval_fail",
        fail_msg: None,
        fail_regex: None,
        ordered: command == "eval_ordered",
        warn: AnnotationExpectation::default(),
        info: AnnotationExpectation::default(),
        range_vector: None,
        expected: Vec::new(),
        unsupported: None,
    };
    if command == "eval_warn" {
        case.warn.any = true;
    }
    if command == "eval_info" {
        case.info.any = true;
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    let position = |index: usize| -> usize {
        // Byte offset of the `index`-th word in `rest`.
        let mut offset = 0;
        let mut seen = 0;
        let bytes = rest.as_bytes();
        while offset < bytes.len() {
            while offset < bytes.len() && bytes[offset].is_ascii_whitespace() {
                offset += 1;
            }
            if seen == index {
                return offset;
            }
            while offset < bytes.len() && !bytes[offset].is_ascii_whitespace() {
                offset += 1;
            }
            seen += 1;
        }
        bytes.len()
    };
    match words.first().copied() {
        Some("instant") if words.get(1) == Some(&"at") => {
            let at = words
                .get(2)
                .and_then(|w| parse_duration(w))
                .ok_or_else(|| format!("line {line_no}: bad time"))?;
            case.start = at;
            case.end = at;
            case.query = rest[position(3)..].trim().to_string();
        }
        Some("range")
            if words.get(1) == Some(&"from")
                && words.get(3) == Some(&"to")
                && words.get(5) == Some(&"step") =>
        {
            case.range = true;
            case.start = words
                .get(2)
                .and_then(|w| parse_duration(w))
                .ok_or_else(|| format!("line {line_no}: bad start"))?;
            case.end = words
                .get(4)
                .and_then(|w| parse_duration(w))
                .ok_or_else(|| format!("line {line_no}: bad end"))?;
            case.step = words
                .get(6)
                .and_then(|w| parse_duration(w))
                .ok_or_else(|| format!("line {line_no}: bad step"))?;
            case.query = rest[position(7)..].trim().to_string();
        }
        _ => return Err(format!("line {line_no}: bad eval line {line:?}")),
    }
    for entry in block {
        if let Some(rest) = entry.strip_prefix("expect ") {
            let rest = rest.trim();
            let (kind, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match kind {
                "fail" => {
                    case.fail = true;
                    let tail = tail.trim();
                    if let Some(msg) = tail.strip_prefix("msg:") {
                        case.fail_msg = Some(msg.trim().to_string());
                    } else if let Some(regex) = tail.strip_prefix("regex:") {
                        case.fail_regex = Some(regex.trim().to_string());
                    }
                }
                "warn" => parse_annotation_line(&mut case.warn, tail),
                "info" => parse_annotation_line(&mut case.info, tail),
                "no_warn" => case.warn.none = true,
                "no_info" => case.info.none = true,
                "ordered" => case.ordered = true,
                "string" => {
                    let (value, _) = parse_quoted(tail.trim())
                        .ok_or_else(|| format!("line {line_no}: bad string"))?;
                    case.expected.push(Expected::String(value));
                }
                "range" => {
                    let parts: Vec<&str> = tail.split_whitespace().collect();
                    // `vector from A to B step C`
                    let from = parts.get(2).and_then(|w| parse_duration(w));
                    let to = parts.get(4).and_then(|w| parse_duration(w));
                    let step = parts.get(6).and_then(|w| parse_duration(w));
                    match (from, to, step) {
                        (Some(a), Some(b), Some(c)) => case.range_vector = Some((a, b, c)),
                        _ => return Err(format!("line {line_no}: bad expect range line")),
                    }
                }
                other => return Err(format!("line {line_no}: unknown expectation {other:?}")),
            }
            continue;
        }
        if let Some(msg) = entry.strip_prefix("expected_fail_message") {
            case.fail_msg = Some(msg.trim().to_string());
            continue;
        }
        if let Some(regex) = entry.strip_prefix("expected_fail_regexp") {
            case.fail_regex = Some(regex.trim().to_string());
            continue;
        }
        if let Some(value) =
            parse_number(entry.trim()).filter(|_| !entry.contains(char::is_whitespace))
        {
            case.expected.push(Expected::Scalar(value));
            continue;
        }
        let Some((labels, rest)) = parse_series_desc(entry) else {
            return Err(format!("line {line_no}: bad expectation {entry:?}"));
        };
        match parse_values(rest) {
            Ok(values) => case.expected.push(Expected::Series { labels, values }),
            Err(reason) => {
                case.unsupported = Some(reason);
            }
        }
    }
    Ok(case)
}
