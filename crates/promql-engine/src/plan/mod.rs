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
//! # How the evaluator reads it
//!
//! `batch::eval(ev, &Node, grid)` matches on [`NodeKind`]: selectors read the data
//! `Evaluator::prefetch` selected for them, kept in a vector indexed by [`Selector::id`], at
//! [`Selector::reference_time`]; calls dispatch on [`Function`] (a range function's argument is
//! found by [`Function::range_arg`]); aggregations on [`AggregateOp`] and their [`Grouping`];
//! binary operators on [`Binary::op`], [`Binary::return_bool`] and [`Binary::matching`];
//! subqueries place their inner steps with [`Subquery::step_ms`] and
//! [`Subquery::reference_time`]. Annotations quote a node's [`Node::anchor`]. A node for which
//! [`Node::evaluated_once`] holds is computed at one step of a range query and repeated (not
//! every `step_invariant` node: literals are as cheap to repeat, and an aggregation over
//! `x > bool 0.7` keeps streaming its input).
//!
//! `Evaluator::prefetch` walks the plan the same way to select every selector's series.
//! The only modules that read `promql-parser`'s types are this module's `build`, `parse`,
//! `syntax`, `depth` and the engine's entry points.

mod build;
mod function;
mod node;
#[cfg(test)]
mod tests;

use promql_parser::parser::Expr;

pub(crate) use function::Function;
pub(crate) use node::{
    Aggregate, AggregateOp, Binary, Grouping, Node, NodeKind, ResultType, SampleType, Selector,
    Subquery, VectorMatching, project,
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

/// A query's plan: the root node and how many selectors were numbered while building it.
///
/// A plan as deep as the query's nesting is built and dropped where the stack has room for
/// its depth (see `depth`), as the AST is.
#[derive(Debug)]
pub(crate) struct Plan {
    root: Option<Node>,
    depth: usize,
    /// How many selectors (vector and matrix) the plan has; their ids are `0..selectors`.
    pub(crate) selectors: usize,
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
    #[cfg(test)]
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
        selectors: builder.selectors,
    })
}
