//! Deeply nested and long-chained queries: parsed, evaluated, printed and dropped without
//! overflowing the stack, on a thread whose stack is small; deeper than the limit, refused with a
//! parse error. A stack overflow aborts this test binary, so every test here fails loudly if any
//! recursion runs out of room.

use std::time::Instant;

use prom_model::{Labels, Sample};
use promql_engine::{
    Engine, ErrorKind, MAX_DEPTH, MAX_FORMAT_COST, MemoryStorage, QueryOptions, Value, expr_depth,
    parse_expr,
};

/// The stack of the threads the queries run on: far less than any deep query needs.
const SMALL_STACK: usize = 256 * 1024;

fn storage() -> MemoryStorage {
    let mut storage = MemoryStorage::new();
    let labels = Labels::from_pairs([("__name__", "x"), ("job", "a")]);
    storage.append(labels, (0..=40).map(|i| Sample::new(i * 15_000, 2.0)));
    storage
}

/// Runs `f` on a new thread with a small stack (as a service's worker would run it).
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the query thread panicked")
}

fn parens(n: usize) -> String {
    format!("{}x{}", "(".repeat(n), ")".repeat(n))
}

fn calls(n: usize) -> String {
    format!("{}x{}", "abs(".repeat(n), ")".repeat(n))
}

fn minuses(n: usize) -> String {
    format!("{}x", "-".repeat(n))
}

fn chain(term: &str, n: usize) -> String {
    vec![term; n].join(" + ")
}

/// The value of `query` at 600s, instant and as a 5-step range query, evaluated on a small stack;
/// also printed in canonical form and dropped there.
fn evaluate(query: String) -> (f64, f64) {
    on_small_stack(move || {
        let storage = storage();
        let engine = Engine::default();
        let options = QueryOptions::default();
        let expr = parse_expr(&query).unwrap_or_else(|error| panic!("parse: {error}"));
        match expr.prettify() {
            Ok(pretty) => {
                assert!(expr.depth() * query.len() <= MAX_FORMAT_COST && !pretty.is_empty())
            }
            Err(error) => {
                assert!(expr.depth() * query.len() > MAX_FORMAT_COST, "{error}");
                assert_eq!(error.kind(), ErrorKind::BadData);
            }
        }
        let instant = engine
            .instant_query_expr(&storage, &expr, &query, 600_000, &options)
            .unwrap_or_else(|error| panic!("instant: {error}"));
        let range = engine
            .range_query_expr(&storage, &expr, &query, 540_000, 600_000, 15_000, &options)
            .unwrap_or_else(|error| panic!("range: {error}"));
        drop(expr);
        let instant = match instant.value {
            Value::Vector(vector) if vector.len() == 1 => vector[0].v,
            Value::Scalar { v, .. } => v,
            other => panic!("unexpected instant result {other:?}"),
        };
        let range = match range.value {
            Value::Matrix(matrix) if matrix.len() == 1 && matrix[0].points.len() == 5 => {
                matrix[0].points[4].v
            }
            other => panic!("unexpected range result {other:?}"),
        };
        (instant, range)
    })
}

#[test]
fn eight_thousand_parentheses() {
    assert_eq!(evaluate(parens(8_000)), (2.0, 2.0));
}

#[test]
fn two_thousand_nested_calls() {
    assert_eq!(evaluate(calls(2_000)), (2.0, 2.0));
}

#[test]
fn three_thousand_unary_minuses() {
    assert_eq!(evaluate(minuses(3_000)), (2.0, 2.0));
    assert_eq!(evaluate(minuses(3_001)), (-2.0, -2.0));
}

#[test]
fn three_thousand_term_chains() {
    assert_eq!(evaluate(chain("1", 3_000)), (3_000.0, 3_000.0));
    assert_eq!(evaluate(chain("x", 3_000)), (6_000.0, 6_000.0));
    let powers = vec!["1"; 3_000].join(" ^ ");
    assert_eq!(evaluate(powers), (1.0, 1.0));
}

#[test]
fn nested_aggregations_and_subqueries() {
    let mut query = "x".to_owned();
    for _ in 0..500 {
        query = format!("sum by (job) ({query})");
    }
    assert_eq!(evaluate(query), (2.0, 2.0));
    let mut query = "x".to_owned();
    for _ in 0..200 {
        query = format!("max_over_time(({query})[1m:30s])");
    }
    assert_eq!(evaluate(query), (2.0, 2.0));
}

#[test]
fn formatting_is_bounded() {
    // Within the budget: printed as Prometheus prints it, on a small stack.
    let query = vec!["sum(rate(x[5m]))"; 300].join(" + ");
    let pretty = on_small_stack(move || parse_expr(&query).map(|expr| expr.prettify()))
        .expect("parses")
        .expect("formats");
    assert!(pretty.starts_with("    "), "{}", &pretty[..40]);
    assert!(pretty.contains("\n+\n"));
    // Beyond it: refused quickly instead of printing for minutes.
    let started = Instant::now();
    let error = on_small_stack(|| parse_expr(&parens(8_000)).map(|expr| expr.prettify()))
        .expect("parses")
        .expect_err("too costly to format");
    assert!(
        error.to_string().contains("too deeply nested to format"),
        "{error}"
    );
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn depth_is_counted_without_recursion() {
    let expr = on_small_stack(|| parse_expr(&parens(5_000)).map(|expr| expr.depth()));
    assert_eq!(expr.expect("parses"), 5_001);
    let expr = on_small_stack(|| {
        parse_expr(&chain("x", 4_000)).map(|expr| (expr.depth(), expr_depth(&expr)))
    });
    assert_eq!(expr.expect("parses"), (4_000, 4_000));
}

#[test]
fn deeper_than_the_limit_is_a_parse_error() {
    for query in [
        parens(MAX_DEPTH + 1),
        calls(MAX_DEPTH + 1),
        minuses(MAX_DEPTH + 1),
        chain("1", MAX_DEPTH + 2),
        // Unclosed: refused by its depth before the syntax checker would recurse on it.
        "(".repeat(MAX_DEPTH * 5),
    ] {
        let started = Instant::now();
        let error = on_small_stack(move || parse_expr(&query).map(|_| ()))
            .expect_err("deeper than the limit");
        assert_eq!(error.kind(), ErrorKind::BadData);
        assert!(
            error.to_string().contains("nested too deeply"),
            "unexpected error: {error}"
        );
        assert!(
            started.elapsed().as_secs() < 5,
            "refusing took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn deep_syntax_errors_are_reported_not_overflowed() {
    // The syntax checker (recursive descent) re-reads a query the parser refused.
    let query = format!("{}x +{}", "(".repeat(5_000), ")".repeat(5_000));
    let error = on_small_stack(move || parse_expr(&query).map(|_| ())).expect_err("invalid");
    assert_eq!(error.kind(), ErrorKind::BadData);
    assert!(error.to_string().contains("parse error"), "{error}");
    let query = format!("{}x", "(".repeat(5_000));
    let error = on_small_stack(move || parse_expr(&query).map(|_| ())).expect_err("unclosed");
    assert!(
        error.to_string().contains("unclosed left parenthesis"),
        "{error}"
    );
}

#[test]
fn engine_entry_points_taking_text_are_safe_too() {
    let value = on_small_stack(|| {
        let query = parens(6_000);
        Engine::default()
            .instant_query(&storage(), &query, 600_000, &QueryOptions::default())
            .map(|result| result.value)
    });
    match value.expect("evaluates") {
        Value::Vector(vector) => assert_eq!(vector[0].v, 2.0),
        other => panic!("unexpected {other:?}"),
    }
}
