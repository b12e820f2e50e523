//! Step invariance: the plan's flags against `invariant::invariant_roots`, which the evaluator
//! uses until it switches over to the plan.

use std::collections::HashSet;

use promql_parser::parser::Expr;

use super::plan;
use crate::plan::{Node, NodeKind};

/// For each node in tree order (parentheses skipped): whether `invariant_roots` has it or an
/// ancestor cached, i.e. whether the evaluator computes it once. `None` for literals and
/// unary minus, which it never records itself.
fn covered_by_roots(expr: &Expr, roots: &HashSet<usize>, above: bool, out: &mut Vec<Option<bool>>) {
    let here = above || roots.contains(&(expr as *const Expr as usize));
    let children: Vec<&Expr> = match expr {
        Expr::Paren(paren) => return covered_by_roots(&paren.expr, roots, above, out),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {
            out.push(None);
            return;
        }
        Expr::Unary(unary) => {
            out.push(None);
            return covered_by_roots(&unary.expr, roots, here, out);
        }
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) | Expr::Extension(_) => Vec::new(),
        Expr::Call(call) => call.args.args.iter().map(|arg| arg.as_ref()).collect(),
        Expr::Aggregate(aggregate) => {
            let mut kids: Vec<&Expr> = aggregate.param.iter().map(|p| p.as_ref()).collect();
            kids.push(&aggregate.expr);
            kids
        }
        Expr::Binary(binary) => vec![&binary.lhs, &binary.rhs],
        Expr::Subquery(subquery) => vec![&subquery.expr],
    };
    out.push(Some(here));
    for child in children {
        covered_by_roots(child, roots, here, out);
    }
}

/// The same walk over the plan: a node is computed once when it or an ancestor is.
fn covered_by_plan(node: &Node, above: bool, out: &mut Vec<Option<bool>>) {
    let here = above || node.evaluated_once();
    if node.is_literal() || matches!(node.kind, NodeKind::Neg(_)) {
        out.push(None);
    } else {
        out.push(Some(here));
    }
    for child in node.children() {
        covered_by_plan(child, here, out);
    }
}

fn assert_same_as_invariant_roots(query: &str) {
    let expr = crate::parse_expr(query).unwrap_or_else(|error| panic!("{query}: {error}"));
    let roots = crate::invariant::invariant_roots(&expr);
    let mut expected = Vec::new();
    covered_by_roots(&expr, &roots, false, &mut expected);
    let plan = plan(query);
    let mut actual = Vec::new();
    covered_by_plan(plan.root(), false, &mut actual);
    assert_eq!(actual, expected, "{query}");
}

#[test]
fn step_invariance_matches_invariant_roots() {
    let queries = [
        "foo",
        "foo @ 100",
        "foo @ start()",
        "foo[5m] @ end()",
        "rate(foo[5m])",
        "rate(foo[5m] @ 100)",
        "rate(foo[5m] @ 100) + bar",
        "rate(foo[5m] @ 100) + bar @ 50",
        "sum(foo @ 10) + bar",
        "sum by (a) (rate(foo[1m] @ end()))",
        "topk(3, foo @ 10)",
        "topk(scalar(bar), foo @ 10)",
        "quantile(0.9, foo @ 10) / on(a) group_left sum(bar)",
        r#"count_values("v", foo @ 1)"#,
        "-(foo @ 10) + bar",
        "-(foo @ 10) * 2",
        "-foo @ 10",
        "(foo @ 10)",
        "((foo @ 10) + (bar @ 20))",
        "1 + 2",
        "vector(1)",
        "vector(1) + foo",
        "pi()",
        "time()",
        "vector(time())",
        "abs(foo @ 1) and bar",
        "foo @ 1 or bar @ 2",
        "foo[10m:1m] @ 100",
        "max_over_time(foo[10m:1m] @ 100)",
        "max_over_time((foo @ 5)[10m:1m])",
        "max_over_time(rate(foo[1m] @ 5)[10m:1m]) + bar",
        "rate(foo[1m])[30m:] @ start()",
        "max_over_time(rate(foo[1m])[10m:1m] @ 100)[1h:]",
        "max_over_time(max_over_time((foo @ 3)[5m:])[10m:1m])",
        r#"label_replace(foo @ 1, "a", "$1", "b", "(.*)")"#,
        r#"histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m] @ 100)))"#,
        "clamp(foo @ 1, 0, scalar(bar))",
        "clamp(foo @ 1, 0, 1)",
        "absent(foo @ 1)",
        "sort(foo @ 1)",
        "round(foo @ 1, 0.5) > bool 1",
        "foo @ 1 unless on(a) bar",
    ];
    for query in queries {
        assert_same_as_invariant_roots(query);
    }
}

#[test]
fn time_dependent_functions_are_not_invariant() {
    for query in [
        "time()",
        "timestamp(foo @ 10)",
        "hour(foo @ 10)",
        "day_of_week(vector(1))",
        "predict_linear(foo[5m] @ 10, 60)",
        "start_timestamp(foo @ 10)",
        "info(foo @ 10)",
    ] {
        let plan = plan(query);
        assert!(!plan.root().step_invariant, "{query}");
        // The arguments themselves are, as Prometheus marks them; `invariant_roots` leaves
        // them out (it drops the children of a call all of whose arguments are invariant, even
        // when the call itself is not), which only means they are evaluated at every step.
        for arg in plan.root().children() {
            assert!(arg.step_invariant, "{query}");
        }
    }
}

#[test]
fn literals_and_operators_over_them_are_invariant() {
    for (query, invariant) in [
        ("1", true),
        (r#""text""#, true),
        ("1 + 2 * 3", true),
        ("-(1)", true),
        ("vector(1)", true),
        ("sum(vector(1))", true),
        ("pi()", false),
        ("foo + 1", false),
        ("foo[5m:1m] @ 1", true),
        ("foo[5m:1m]", false),
        ("(foo @ 1)[5m:1m]", false),
    ] {
        assert_eq!(plan(query).root().step_invariant, invariant, "{query}");
    }
    // Literals and negations are invariant but not cached themselves.
    for (query, once) in [
        ("1", false),
        ("-(foo @ 1)", false),
        ("1 + 2", true),
        ("-foo", false),
    ] {
        assert_eq!(plan(query).root().evaluated_once(), once, "{query}");
    }
}
