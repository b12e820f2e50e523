//! Plans built from real queries, field by field.

use super::*;
use crate::binary::{Card, Op};

mod functions;

/// Query start, end and the default subquery step of the test context (ms).
const START: i64 = 1_000_000;
const END: i64 = 2_000_000;
const DEFAULT_STEP: i64 = 20_000;

fn context() -> PlanContext {
    PlanContext {
        start: START,
        end: END,
        step: 15_000,
        lookback: 300_000,
        default_subquery_step: DEFAULT_STEP,
    }
}

fn plan(query: &str) -> Plan {
    let shown: String = query.chars().take(80).collect();
    let expr = crate::parse_expr(query).unwrap_or_else(|error| panic!("{shown}: {error}"));
    build(&expr, &context()).unwrap_or_else(|error| panic!("{shown}: {error}"))
}

fn selector(node: &Node) -> &Selector {
    match &node.kind {
        NodeKind::VectorSelector(selector) | NodeKind::MatrixSelector { selector, .. } => selector,
        other => panic!("not a selector: {other:?}"),
    }
}

fn call(node: &Node) -> (Function, &[Node]) {
    match &node.kind {
        NodeKind::Call { function, args } => (*function, args),
        other => panic!("not a call: {other:?}"),
    }
}

fn aggregate(node: &Node) -> &Aggregate {
    match &node.kind {
        NodeKind::Aggregate(aggregate) => aggregate,
        other => panic!("not an aggregation: {other:?}"),
    }
}

fn binary(node: &Node) -> &Binary {
    match &node.kind {
        NodeKind::Binary(binary) => binary,
        other => panic!("not a binary operator: {other:?}"),
    }
}

fn subquery(node: &Node) -> &Subquery {
    match &node.kind {
        NodeKind::Subquery(subquery) => subquery,
        other => panic!("not a subquery: {other:?}"),
    }
}

fn matcher_strings(matchers: &[prom_model::Matcher]) -> Vec<String> {
    matchers
        .iter()
        .map(|m| format!("{}{}{}", m.name(), m.kind().as_str(), m.value()))
        .collect()
}

#[test]
fn literals() {
    let number = plan("1.5");
    assert_eq!(number.root().kind, NodeKind::Number(1.5));
    assert_eq!(number.root().result_type, ResultType::Scalar);
    let string = plan(r#""abc""#);
    assert_eq!(string.root().kind, NodeKind::String("abc".to_string()));
    assert_eq!(string.root().result_type, ResultType::String);
    assert!(number.root().step_invariant && string.root().step_invariant);
    assert!(number.root().is_literal());
}

#[test]
fn vector_selector_fields() {
    let plan = plan(r#"foo{a="b", c=~"d.*"} offset 5m"#);
    let root = plan.root();
    assert_eq!(root.result_type, ResultType::Vector);
    assert_eq!(root.sample_type, SampleType::Float);
    assert!(!root.step_invariant);
    let selector = selector(root);
    assert_eq!(selector.id, 0);
    assert_eq!(selector.name.as_deref(), Some("foo"));
    assert_eq!(matcher_strings(&selector.matchers), ["a=b", "c=~d.*"]);
    assert_eq!(selector.matcher_sets.len(), 1);
    let set = matcher_strings(&selector.matcher_sets[0]);
    assert!(set.contains(&"__name__=foo".to_string()), "{set:?}");
    assert_eq!(set.len(), 3);
    assert_eq!(selector.offset_ms, 300_000);
    assert_eq!(selector.at_ms, None);
    assert_eq!(selector.reference_time(10_000_000), 9_700_000);
    assert_eq!(plan.selectors, 1);
}

#[test]
fn at_modifiers_are_resolved() {
    let cases: &[(&str, i64)] = &[
        ("foo @ 100", 100_000),
        ("foo @ 1.5", 1_500),
        ("foo @ start()", START),
        ("foo @ end()", END),
        ("foo @ end() offset 1m", END),
        ("foo offset 1m @ start()", START),
    ];
    for &(query, at) in cases {
        let plan = plan(query);
        let selector = selector(plan.root());
        assert_eq!(selector.at_ms, Some(at), "{query}");
        assert!(plan.root().step_invariant, "{query}");
        // Pinned: the evaluation time does not matter, the offset still does.
        assert_eq!(
            selector.reference_time(123),
            at - selector.offset_ms,
            "{query}"
        );
    }
    assert_eq!(selector(plan("foo offset -2m").root()).offset_ms, -120_000);
}

#[test]
fn or_matchers_give_one_set_per_alternative() {
    let plan = plan(r#"foo{a="1" or b="2"}"#);
    let selector = selector(plan.root());
    assert_eq!(selector.matcher_sets.len(), 2);
    let first = matcher_strings(&selector.matcher_sets[0]);
    let second = matcher_strings(&selector.matcher_sets[1]);
    assert!(first.contains(&"a=1".to_string()) && !first.contains(&"b=2".to_string()));
    assert!(second.contains(&"b=2".to_string()) && !second.contains(&"a=1".to_string()));
    assert!(first.contains(&"__name__=foo".to_string()));
}

#[test]
fn matrix_selector_in_range_function() {
    let plan = plan("rate(foo[5m] @ end() offset 1m)");
    let root = plan.root();
    let (function, args) = call(root);
    assert_eq!(function, Function::Rate);
    assert_eq!(root.result_type, ResultType::Vector);
    let NodeKind::MatrixSelector { selector, range_ms } = &args[0].kind else {
        panic!("not a matrix selector: {:?}", args[0].kind);
    };
    assert_eq!(*range_ms, 300_000);
    assert_eq!(selector.at_ms, Some(END));
    assert_eq!(selector.offset_ms, 60_000);
    assert_eq!(args[0].result_type, ResultType::Matrix);
    assert!(args[0].step_invariant && root.step_invariant);
    let anchor = args[0].anchor.as_deref().unwrap_or_default();
    assert!(anchor.starts_with("foo[5m]"), "{anchor}");
    assert_eq!(plan.root().anchor, None);
}

#[test]
fn parentheses_are_dropped() {
    let plan = plan("((-((foo))))");
    let NodeKind::Neg(inner) = &plan.root().kind else {
        panic!("not a negation: {:?}", plan.root().kind);
    };
    assert_eq!(selector(inner).name.as_deref(), Some("foo"));
    assert_eq!(plan.root().result_type, ResultType::Vector);
    let scalar = self::plan("-(2)");
    let NodeKind::Neg(inner) = &scalar.root().kind else {
        panic!("not a negation");
    };
    assert_eq!(inner.kind, NodeKind::Number(2.0));
    assert_eq!(scalar.root().result_type, ResultType::Scalar);
}

#[test]
fn aggregations() {
    let sum = plan("sum by (a, b) (foo)");
    let node = aggregate(sum.root());
    assert_eq!(node.op, AggregateOp::Sum);
    assert!(!node.grouping.without);
    assert_eq!(node.grouping.labels, ["a", "b"]);
    assert_eq!(node.param, None);
    assert_eq!(selector(&node.expr).name.as_deref(), Some("foo"));

    let avg = plan("avg without (c) (foo)");
    let node = aggregate(avg.root());
    assert_eq!(node.op, AggregateOp::Avg);
    assert_eq!(
        node.grouping,
        Grouping {
            without: true,
            labels: vec!["c".to_string()]
        }
    );
    let plain = plan("max(foo)");
    assert_eq!(aggregate(plain.root()).grouping, Grouping::default());

    let topk = plan("topk(3, foo) by (x)");
    let node = aggregate(topk.root());
    assert_eq!(node.op, AggregateOp::Topk);
    let param = node.param.as_ref().map(|param| &param.kind);
    assert_eq!(param, Some(&NodeKind::Number(3.0)));
    assert_eq!(
        node.param.as_ref().and_then(|p| p.anchor.as_deref()),
        Some("3")
    );
    assert_eq!(node.grouping.labels, ["x"]);

    let count_values = plan(r#"count_values("value", foo)"#);
    let node = aggregate(count_values.root());
    assert_eq!(node.op, AggregateOp::CountValues);
    let param = node.param.as_ref().map(|param| &param.kind);
    assert_eq!(param, Some(&NodeKind::String("value".to_string())));

    let cases = [
        ("sum(x)", AggregateOp::Sum),
        ("avg(x)", AggregateOp::Avg),
        ("count(x)", AggregateOp::Count),
        ("min(x)", AggregateOp::Min),
        ("max(x)", AggregateOp::Max),
        ("group(x)", AggregateOp::Group),
        ("stddev(x)", AggregateOp::Stddev),
        ("stdvar(x)", AggregateOp::Stdvar),
        ("quantile(0.9, x)", AggregateOp::Quantile),
        (r#"count_values("v", x)"#, AggregateOp::CountValues),
        ("topk(1, x)", AggregateOp::Topk),
        ("bottomk(1, x)", AggregateOp::Bottomk),
        ("limitk(1, x)", AggregateOp::Limitk),
        ("limit_ratio(0.5, x)", AggregateOp::LimitRatio),
    ];
    assert_eq!(cases.len(), AggregateOp::ALL.len());
    for (query, op) in cases {
        let plan = plan(query);
        let node = aggregate(plan.root());
        assert_eq!(node.op, op, "{query}");
        assert_eq!(node.param.is_some(), op.has_param(), "{query}");
        assert_eq!(AggregateOp::from_name(op.name()), Some(op));
        assert_eq!(plan.root().result_type, ResultType::Vector);
    }
}

#[test]
fn binary_operators_and_matching() {
    let plan_of = |query: &str| plan(query);
    let on = plan_of("a + on(x) group_left(y, z) b");
    let node = binary(on.root());
    assert_eq!(node.op, Op::Add);
    assert!(!node.return_bool);
    let matching = node.matching.as_ref().expect("vector matching");
    assert!(matching.on);
    assert_eq!(matching.labels, ["x"]);
    assert_eq!(matching.card, Card::ManyToOne);
    assert_eq!(matching.include, ["y", "z"]);
    assert_eq!((matching.fill_lhs, matching.fill_rhs), (None, None));

    let ignoring = plan_of("a / ignoring(z) group_right b");
    let matching = binary(ignoring.root()).matching.clone().expect("matching");
    assert!(!matching.on);
    assert_eq!(matching.labels, ["z"]);
    assert_eq!(matching.card, Card::OneToMany);
    assert!(matching.include.is_empty());

    let plain = plan_of("a - b");
    let matching = binary(plain.root()).matching.clone().expect("matching");
    assert_eq!((matching.on, matching.card), (false, Card::OneToOne));
    assert!(matching.labels.is_empty());

    let compare = plan_of("a > bool b");
    assert_eq!(binary(compare.root()).op, Op::Gt);
    assert!(binary(compare.root()).return_bool);

    let scalars = plan_of("1 >= bool 2");
    assert!(binary(scalars.root()).return_bool);
    assert_eq!(binary(scalars.root()).matching, None);
    assert_eq!(scalars.root().result_type, ResultType::Scalar);
    let mixed = plan_of("a * 2");
    assert_eq!(binary(mixed.root()).matching, None);
    assert_eq!(mixed.root().result_type, ResultType::Vector);

    for (query, op) in [
        ("a and b", Op::And),
        ("a or on(x) b", Op::Or),
        ("a unless ignoring(y) b", Op::Unless),
    ] {
        let plan = plan_of(query);
        let node = binary(plan.root());
        assert_eq!(node.op, op, "{query}");
        let card = node.matching.as_ref().map(|m| m.card);
        assert_eq!(card, Some(Card::ManyToMany), "{query}");
    }

    let fill = plan_of("a + fill(0) c");
    let matching = binary(fill.root()).matching.clone().expect("matching");
    assert_eq!(
        (matching.fill_lhs, matching.fill_rhs),
        (Some(0.0), Some(0.0))
    );
    let sides = plan_of("a - on(job) fill_left(1) fill_right(2) c");
    let matching = binary(sides.root()).matching.clone().expect("matching");
    assert_eq!(
        (matching.fill_lhs, matching.fill_rhs),
        (Some(1.0), Some(2.0))
    );
    assert_eq!(matching.labels, ["job"]);

    let ops = [
        ("+", Op::Add),
        ("-", Op::Sub),
        ("*", Op::Mul),
        ("/", Op::Div),
        ("%", Op::Mod),
        ("^", Op::Pow),
        ("atan2", Op::Atan2),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">", Op::Gt),
        ("<", Op::Lt),
        (">=", Op::Ge),
        ("<=", Op::Le),
    ];
    for (token, op) in ops {
        let query = format!("a {token} b");
        assert_eq!(binary(plan_of(&query).root()).op, op, "{query}");
    }
}

#[test]
fn subqueries() {
    let explicit = plan("foo[1h:5m]");
    let node = subquery(explicit.root());
    assert_eq!((node.range_ms, node.step_ms), (3_600_000, 300_000));
    assert_eq!((node.offset_ms, node.at_ms), (0, None));
    assert_eq!(explicit.root().result_type, ResultType::Matrix);
    assert!(!explicit.root().step_invariant);

    let default_step = plan("foo[1h:]");
    assert_eq!(subquery(default_step.root()).step_ms, DEFAULT_STEP);

    let pinned = plan("rate(foo[1m])[30m:] offset 2m @ start()");
    let node = subquery(pinned.root());
    assert_eq!(node.at_ms, Some(START));
    assert_eq!(node.offset_ms, 120_000);
    assert_eq!(node.step_ms, DEFAULT_STEP);
    assert_eq!(node.reference_time(END), START - 120_000);
    assert!(pinned.root().step_invariant);
    assert_eq!(call(&node.expr).0, Function::Rate);

    let nested = plan("max_over_time(rate(foo[1m])[10m:1m])[1h:] offset 1m");
    let outer = subquery(nested.root());
    assert_eq!(
        (outer.range_ms, outer.step_ms, outer.offset_ms),
        (3_600_000, DEFAULT_STEP, 60_000)
    );
    let (function, args) = call(&outer.expr);
    assert_eq!(function, Function::MaxOverTime);
    let inner = subquery(&args[0]);
    assert_eq!(
        (inner.range_ms, inner.step_ms, inner.offset_ms),
        (600_000, 60_000, 0)
    );
    assert!(
        args[0]
            .anchor
            .as_deref()
            .is_some_and(|a| a.contains("[10m:1m]"))
    );
    assert_eq!(nested.selectors, 1);
}

#[test]
fn selectors_are_numbered_in_tree_order() {
    let plan = plan("a + rate(b[5m]) + sum(c @ 1) + max_over_time(d[5m:])");
    let mut ids = Vec::new();
    let mut pending = vec![plan.root()];
    while let Some(node) = pending.pop() {
        match &node.kind {
            NodeKind::VectorSelector(s) | NodeKind::MatrixSelector { selector: s, .. } => {
                ids.push((s.name.clone().unwrap_or_default(), s.id));
            }
            _ => {}
        }
        pending.extend(node.children().into_iter().rev());
    }
    let expected = [("a", 0), ("b", 1), ("c", 2), ("d", 3)];
    let expected: Vec<(String, usize)> =
        expected.iter().map(|(n, i)| (n.to_string(), *i)).collect();
    assert_eq!(ids, expected);
    assert_eq!(plan.selectors, 4);
}
