//! Function calls: every function, argument nodes, anchors, and what the plan refuses.

use super::{call, plan};
use crate::plan::{Function, NodeKind, ResultType, build};

/// One call of every function the engine evaluates.
const CALLS: &[&str] = &[
    "abs(x)",
    "absent(x)",
    "absent_over_time(x[5m])",
    "acos(x)",
    "acosh(x)",
    "asin(x)",
    "asinh(x)",
    "atan(x)",
    "atanh(x)",
    "avg_over_time(x[5m])",
    "ceil(x)",
    "changes(x[5m])",
    "clamp(x, 0, 1)",
    "clamp_max(x, 1)",
    "clamp_min(x, 0)",
    "cos(x)",
    "cosh(x)",
    "count_over_time(x[5m])",
    "day_of_month(x)",
    "day_of_week()",
    "day_of_year(x)",
    "days_in_month()",
    "deg(x)",
    "delta(x[5m])",
    "deriv(x[5m])",
    "double_exponential_smoothing(x[5m], 0.5, 0.5)",
    "end()",
    "exp(x)",
    "first_over_time(x[5m])",
    "floor(x)",
    "histogram_avg(x)",
    "histogram_count(x)",
    "histogram_fraction(0, 1, x)",
    "histogram_quantile(0.9, x)",
    r#"histogram_quantiles(x, "q", 0.5, 0.9)"#,
    "histogram_stddev(x)",
    "histogram_stdvar(x)",
    "histogram_sum(x)",
    "hour(x)",
    "idelta(x[5m])",
    "increase(x[5m])",
    "info(x)",
    "irate(x[5m])",
    r#"label_join(x, "d", ";", "a", "b")"#,
    r#"label_replace(x, "d", "$1", "s", "(.*)")"#,
    "last_over_time(x[5m])",
    "ln(x)",
    "log10(x)",
    "log2(x)",
    "mad_over_time(x[5m])",
    "max_of(1, 2)",
    "max_over_time(x[5m])",
    "min_of(1, 2)",
    "min_over_time(x[5m])",
    "minute()",
    "month(x)",
    "pi()",
    "predict_linear(x[5m], 60)",
    "present_over_time(x[5m])",
    "quantile_over_time(0.5, x[5m])",
    "rad(x)",
    "range()",
    "rate(x[5m])",
    "resets(x[5m])",
    "round(x, 2)",
    "scalar(x)",
    "sgn(x)",
    "sin(x)",
    "sinh(x)",
    "sort(x)",
    r#"sort_by_label(x, "a")"#,
    r#"sort_by_label_desc(x, "a")"#,
    "sort_desc(x)",
    "sqrt(x)",
    "start()",
    "start_timestamp(x)",
    "stddev_over_time(x[5m])",
    "stdvar_over_time(x[5m])",
    "step()",
    "sum_over_time(x[5m])",
    "tan(x)",
    "tanh(x)",
    "time()",
    "timestamp(x)",
    "ts_of_first_over_time(x[5m])",
    "ts_of_last_over_time(x[5m])",
    "ts_of_max_over_time(x[5m])",
    "ts_of_min_over_time(x[5m])",
    "vector(1)",
    "year(x)",
];

#[test]
fn every_function_is_resolved_from_its_call() {
    let mut seen = Vec::new();
    for query in CALLS {
        let plan = plan(query);
        let (function, args) = call(plan.root());
        let written = query.split('(').next().unwrap_or_default();
        assert_eq!(function.name(), written, "{query}");
        assert_eq!(Function::from_name(written), Some(function));
        // The argument nodes are there, in order, with their own types.
        let expected_args = query.matches(',').count() + usize::from(!query.ends_with("()"));
        assert_eq!(args.len(), expected_args, "{query}");
        if let Some(index) = function.range_arg() {
            assert_eq!(args[index].result_type, ResultType::Matrix, "{query}");
            assert!(args[index].anchor.is_some(), "{query}");
        } else {
            assert!(
                args.iter().all(|arg| arg.result_type != ResultType::Matrix),
                "{query}"
            );
        }
        let scalar = matches!(
            function,
            Function::Pi
                | Function::Time
                | Function::Scalar
                | Function::Start
                | Function::End
                | Function::Range
                | Function::Step
                | Function::MaxOf
                | Function::MinOf
        );
        let expected = if scalar {
            ResultType::Scalar
        } else {
            ResultType::Vector
        };
        assert_eq!(plan.root().result_type, expected, "{query}");
        seen.push(function);
    }
    // Every variant has a call above, and every name maps back to its variant.
    for function in Function::ALL {
        assert!(seen.contains(function), "no call of {}", function.name());
    }
    assert_eq!(seen.len(), Function::ALL.len());
}

#[test]
fn call_arguments_keep_their_nodes() {
    let plan = plan(r#"label_replace(rate(x[5m]), "dst", "$1", "src", "(.*)")"#);
    let (function, args) = call(plan.root());
    assert_eq!(function, Function::LabelReplace);
    assert_eq!(call(&args[0]).0, Function::Rate);
    let strings: Vec<&NodeKind> = args[1..].iter().map(|arg| &arg.kind).collect();
    let expected: Vec<NodeKind> = ["dst", "$1", "src", "(.*)"]
        .iter()
        .map(|text| NodeKind::String(text.to_string()))
        .collect();
    assert_eq!(strings, expected.iter().collect::<Vec<_>>());
    // label_replace does not annotate: no anchors on its arguments.
    assert!(args.iter().all(|arg| arg.anchor.is_none()));
}

#[test]
fn anchors_are_the_printed_arguments() {
    let query = "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))";
    let plan = plan(query);
    let (_, args) = call(plan.root());
    assert_eq!(args[0].anchor.as_deref(), Some("0.9"));
    let anchor = args[1].anchor.as_deref().unwrap_or_default();
    assert!(query.contains(anchor), "{anchor}");
    // A deep argument carries none, so deep queries are not printed once per level.
    let deep = format!("rate(({}x{})[5m:])", "-(".repeat(150), ")".repeat(150));
    let plan = super::plan(&deep);
    let (_, args) = call(plan.root());
    assert_eq!(args[0].anchor, None);
    let shallow = format!("rate(({}x{})[5m:])", "-(".repeat(20), ")".repeat(20));
    let plan = super::plan(&shallow);
    let (_, args) = call(plan.root());
    assert!(args[0].anchor.is_some());
}

#[test]
fn unsupported_functions_fail_as_evaluation_did() {
    let Ok(expr) = crate::parse_expr("integral(x[5m])") else {
        // The parser does not accept it: nothing for the plan to refuse.
        return;
    };
    let error = build(&expr, &super::context()).expect_err("integral is not evaluated");
    assert_eq!(error.kind(), crate::ErrorKind::Execution);
    assert_eq!(error.to_string(), r#"function "integral" is not supported"#);
    assert_eq!(Function::from_name("integral"), None);
    assert_eq!(Function::from_name("xrate"), None);
}

#[test]
fn deep_queries_build_and_drop() {
    let levels = 3_000;
    let query = format!("{}x{}", "-(".repeat(levels), ")".repeat(levels));
    let plan = plan(&query);
    assert!(plan.depth() > levels, "{}", plan.depth());
    let mut node = plan.root();
    let mut negations = 0;
    while let NodeKind::Neg(inner) = &node.kind {
        negations += 1;
        node = inner;
    }
    assert_eq!(negations, levels);
    assert!(matches!(node.kind, NodeKind::VectorSelector(_)));
    drop(plan);
}
