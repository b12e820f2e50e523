//! The querier's HTTP API parameters from outside: a query string and a form body (the input is
//! split at its first NUL byte) parsed into a [`Form`] as the handlers parse them, then every
//! parameter the handlers read: `time`/`start`/`end` (Unix seconds or RFC 3339), `step`,
//! `timeout`, `lookback_delta`, `max_source_resolution`, `dedup`, `partial_response`,
//! `limit`, `match[]` and `storeMatch[]`, plus the range checks of `query_range` and the time
//! range of `series`/`labels`. The accepted times, range and lookback then go to the engine as
//! the handlers send them (a few fixed queries over a small in-memory store). Never panics; a
//! time that parses is written back (seconds and RFC 3339) into text that parses to the same
//! time, and checked ranges hold what they promise.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prom_model::time::format_rfc3339_millis;
use prom_model::{Labels, Sample};
use promql_engine::{Engine, EngineOptions, MemoryStorage, ParsedExpr, QueryOptions, parse_expr};
use querier::downsample::{max_resolution_window, parse_source_resolution};
use querier::fuzzing;
use querier::params::{
    Form, format_timestamp, parse_bool_param, parse_duration_param, parse_time, parse_time_param,
};

/// Times this far from 1970 (about 31,000 years) survive the trip through float seconds.
const EXACT_MS: i64 = 1_000_000_000_000_000;

/// Queries over the instant, range and subquery paths of the engine, including the aggregated
/// fast path.
const QUERIES: [&str; 4] = [
    "x",
    "sum by (job) (rate(x[5m]))",
    "max_over_time(x[10m:1m] offset 1m)",
    "x @ end()",
];

struct Evaluation {
    engine: Engine,
    storage: MemoryStorage,
    queries: Vec<(ParsedExpr, &'static str)>,
}

fn evaluation() -> &'static Evaluation {
    static EVALUATION: OnceLock<Evaluation> = OnceLock::new();
    EVALUATION.get_or_init(|| {
        let mut storage = MemoryStorage::new();
        for (job, slope) in [("a", 1.0), ("b", -2.5)] {
            let labels = Labels::from_pairs([("__name__", "x"), ("job", job)]);
            storage.append(
                labels,
                (0..=40).map(|i| Sample::new(i * 15_000, slope * i as f64)),
            );
        }
        let engine = Engine::new(EngineOptions {
            max_samples: 200_000,
            timeout: Duration::from_millis(200),
            ..EngineOptions::default()
        });
        let queries = QUERIES
            .iter()
            .map(|query| (parse_expr(query).expect("a fixed query parses"), *query))
            .collect();
        Evaluation {
            engine,
            storage,
            queries,
        }
    })
}

fn query_options(form: &Form) -> QueryOptions {
    let lookback_delta = parse_duration_param(form, "lookback_delta")
        .ok()
        .flatten()
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(ms.unsigned_abs()));
    QueryOptions {
        lookback_delta,
        ..QueryOptions::default()
    }
}

fn evaluate(form: &Form) {
    let evaluation = evaluation();
    let options = query_options(form);
    if let Ok(time) = parse_time_param(form, "time", 0) {
        for (expr, query) in &evaluation.queries {
            let _ = evaluation.engine.instant_query_expr(
                &evaluation.storage,
                expr,
                query,
                time,
                &options,
            );
        }
    }
    if let Ok((start, end, step)) = fuzzing::range_params(form, 60_000) {
        for (expr, query) in &evaluation.queries {
            let _ = evaluation.engine.range_query_expr(
                &evaluation.storage,
                expr,
                query,
                start,
                end,
                step,
                &options,
            );
        }
    }
}

fn times(form: &Form) {
    for name in ["time", "start", "end"] {
        let _ = parse_time_param(form, name, 0);
        for value in form.all(name) {
            let Some(ms) = parse_time(value) else {
                continue;
            };
            if ms.abs() < EXACT_MS {
                assert_eq!(parse_time(&format_timestamp(ms)), Some(ms), "{value:?}");
                let rfc3339 = format_rfc3339_millis(ms);
                if (-62_167_219_200_000..253_402_300_800_000).contains(&ms) {
                    // Years 0..=9999, the ones RFC 3339 can write.
                    assert_eq!(parse_time(&rfc3339), Some(ms), "{value:?} as {rfc3339}");
                }
            }
        }
    }
}

fn ranges(form: &Form) {
    if let Ok((start, end, step)) = fuzzing::range_params(form, 60_000) {
        assert!(start <= end && step > 0);
        let points = (i128::from(end) - i128::from(start)) / i128::from(step);
        assert!(points <= 11_000, "{points} points accepted");
        let requested = parse_source_resolution(form.get("max_source_resolution"));
        if let Ok(requested) = requested {
            let _ = max_resolution_window(requested, true, step, 3_600_000);
        }
    }
    if let Ok((start, end)) = fuzzing::time_range(form) {
        assert!(start <= end);
    }
}

fuzz_target!(|data: &[u8]| {
    let (query, body) = match data.iter().position(|&byte| byte == 0) {
        Some(at) => (std::str::from_utf8(&data[..at]).ok(), &data[at + 1..]),
        None => (None, data),
    };
    let form = Form::parse(query, body);
    times(&form);
    for name in ["step", "timeout", "lookback_delta"] {
        let _ = parse_duration_param(&form, name);
    }
    let _ = parse_source_resolution(form.get("max_source_resolution"));
    for name in ["dedup", "partial_response"] {
        let _ = parse_bool_param(&form, name, true);
    }
    ranges(&form);
    evaluate(&form);
    let _ = fuzzing::limit(&form);
    for param in ["match[]", "storeMatch[]"] {
        if let Ok(sets) = fuzzing::selector_sets(&form, param) {
            assert!(sets.len() >= form.all(param).len());
        }
    }
});
