//! The query plan: the engine's own expression tree, built once per query from the parser's AST.
//!
//! [`build`] turns a `promql-parser` [`Expr`] into a [`Plan`] of [`Node`]s holding everything
//! evaluation needs, resolved once: selectors with converted matchers, `offset` in ms and `@`
//! as a timestamp (`start()`/`end()` included); functions as a [`Function`] enum;
//! aggregations as an [`AggregateOp`] with their [`Grouping`]; binary operators as
//! `binary::Op` with `bool` and their [`VectorMatching`]; unary minus; subqueries with their
//! step (the default one applied), offset and `@`; literals. Parentheses are dropped. Every
//! node carries its [`ResultType`], its [`SampleType`] (the slot native histograms will use)
//! and whether it is step invariant, computed here rather than looked up by node address.
//! So the evaluator never reads the parser's types, and the parser can be replaced by
//! changing only this module's `build`.
//!
//! Errors the parser and `syntax` raise (parse, node and type checks) stay there: a plan is
//! built from an AST that passed them. `build` fails only on what it cannot represent: a
//! function or aggregation the engine does not evaluate (`integral`), with the `execution`
//! error evaluation raised for it before.
//!
//! # How `batch` consumes it (the switch-over)
//!
//! `batch::eval(ev, &Node, grid)` replaces `batch::eval(ev, &Expr, grid)`; every `Expr` match
//! arm maps to a `NodeKind` arm:
//!
//! - `Expr::NumberLiteral` / `StringLiteral` -> [`NodeKind::Number`] / [`NodeKind::String`];
//!   `Expr::Paren` disappears (and with it `unwrap_parens`);
//! - `Expr::VectorSelector` -> [`NodeKind::VectorSelector`]: `selector::instant` takes a
//!   [`Selector`]; `ev.reference_time(selector.at, selector.offset, ts)` becomes
//!   [`Selector::reference_time`]; loaded data is keyed by [`Selector::id`] instead of the
//!   node's address;
//! - `Expr::Unary` -> [`NodeKind::Neg`];
//! - `Expr::Call` -> [`NodeKind::Call`]: `call.func.name` string matches become [`Function`]
//!   matches; "is the argument a matrix selector / subquery" is a match on the argument's
//!   `kind` ([`Function::range_arg`] says which argument); `arg.to_string()` anchors become
//!   `arg.anchor`;
//! - `Expr::Aggregate` -> [`NodeKind::Aggregate`]: `op.to_string()` becomes [`AggregateOp`],
//!   `Grouping::of` becomes [`Aggregate::grouping`];
//! - `Expr::Binary` -> [`NodeKind::Binary`]: `Op::parse(&op.to_string())` becomes
//!   [`Binary::op`], `return_bool()` [`Binary::return_bool`], `Matching::from_expr`
//!   [`Binary::matching`];
//! - `Expr::Subquery` -> [`NodeKind::Subquery`]: `ev.subquery_step` becomes
//!   [`Subquery::step_ms`], the cache is keyed by [`Subquery::id`];
//! - `ev.is_invariant(expr)` becomes [`Node::evaluated_once`] (on a grid of more than one
//!   step such a node is evaluated at one step and repeated); not `step_invariant`, which is
//!   also true for literals (`aggregate::stream_source` would stop streaming `x > bool 0.7`).
//!
//! The selector prefetch (`Evaluator::prefetch`) walks the plan the same way.

// Nothing uses the plan yet: the evaluator switches over to it next, and this goes then.
#![allow(dead_code)]

mod build;
mod function;
mod node;
#[cfg(test)]
mod tests;

use promql_parser::parser::Expr;

// Used by the evaluator after the switch-over (and by the tests until then).
#[allow(unused_imports)]
pub(crate) use function::Function;
#[allow(unused_imports)]
pub(crate) use node::{
    ANCHOR_MAX_HEIGHT, Aggregate, AggregateOp, Binary, Grouping, Node, NodeKind, ResultType,
    SampleType, Selector, Subquery, VectorMatching,
};

use crate::depth::{expr_depth, with_stack};
use crate::error::Result;

/// What a plan is built for: the query's time range and the settings modifiers resolve with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanContext {
    /// Query start (ms); `@ start()` resolves to it.
    pub(crate) start: i64,
    /// Query end (ms); `@ end()` resolves to it. Equal to `start` for an instant query.
    pub(crate) end: i64,
    /// Query step (ms); 0 for an instant query.
    pub(crate) step: i64,
    /// How far back an instant selector looks for a sample (ms).
    pub(crate) lookback: i64,
    /// The step of subqueries written without one (ms).
    pub(crate) default_subquery_step: i64,
}

/// A query's plan: the root node and what was numbered while building it.
///
/// A plan as deep as the query's nesting is built and dropped where the stack has room for
/// its depth (see `depth`), as the AST is.
#[derive(Debug)]
pub(crate) struct Plan {
    root: Option<Node>,
    depth: usize,
    /// The context the plan was built with.
    pub(crate) context: PlanContext,
    /// How many selectors (vector and matrix) the plan has; their ids are `0..selectors`.
    pub(crate) selectors: usize,
    /// How many subqueries the plan has; their ids are `0..subqueries`.
    pub(crate) subqueries: usize,
}

impl Plan {
    /// The root node.
    pub(crate) fn root(&self) -> &Node {
        static EMPTY: Node = Node {
            kind: NodeKind::Number(0.0),
            result_type: ResultType::Scalar,
            sample_type: SampleType::Float,
            step_invariant: true,
            anchor: None,
        };
        self.root.as_ref().unwrap_or(&EMPTY)
    }

    /// The nesting depth of the tree (as `depth::expr_depth` of the AST it was built from).
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        if let Some(root) = self.root.take() {
            with_stack(self.depth, move || drop(root));
        }
    }
}

/// Builds the plan of `expr` for a query run with `context`.
pub(crate) fn build(expr: &Expr, context: &PlanContext) -> Result<Plan> {
    let depth = expr_depth(expr);
    let mut builder = build::Builder::new(context);
    let root = with_stack(depth, || builder.node(expr))?;
    Ok(Plan {
        root: Some(root),
        depth,
        context: *context,
        selectors: builder.selectors,
        subqueries: builder.subqueries,
    })
}
