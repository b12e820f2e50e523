//! The plan's node types.

use prom_model::{Label, Labels, METRIC_NAME, Matcher};

use super::function::Function;
use crate::binary::{Card, Op};

/// The PromQL type of a node's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultType {
    /// One number per step.
    Scalar,
    /// An instant vector per step.
    Vector,
    /// A range vector (a window of samples per series) per step.
    Matrix,
    /// A string literal.
    String,
}

/// What kind of sample values a node produces.
///
/// Only floats exist today. Native histograms join as a second variant (`Histogram`) plus
/// `Mixed` for nodes whose series may hold either kind (a selector cannot know from the query
/// alone; storage decides per series, so selectors would be `Mixed`). The builder would then
/// derive the field bottom-up: `histogram_count`/`histogram_sum`/`histogram_quantile`... map
/// `Histogram` or `Mixed` to `Float`, `rate`/`sum`/`+` keep their input's kind, comparisons
/// and most math functions take only floats. The evaluator reads it to choose a float-only
/// kernel (the present `Row { values: Vec<Option<f64>> }`) or one whose rows also carry
/// histogram slots, so float-only queries pay nothing for histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SampleType {
    /// Float samples only (every node, until native histograms are supported).
    Float,
}

/// One node of a plan: what it computes, its result type, and whether it is step invariant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// What the node computes.
    pub(crate) kind: NodeKind,
    /// The PromQL type of its result.
    pub(crate) result_type: ResultType,
    /// The kind of samples it produces.
    pub(crate) sample_type: SampleType,
    /// Whether its value is the same at every evaluation time (Prometheus' rule: literals,
    /// `@`-pinned selectors and subqueries, and operators, aggregations and functions other
    /// than the time-dependent ones over such inputs). The evaluator computes such a node once
    /// and repeats its value over the steps.
    pub(crate) step_invariant: bool,
    /// The expression as the parser prints it, which annotations quote to point at their
    /// position in the query. Set on the arguments of range and histogram functions and on
    /// aggregation parameters (the nodes annotations are about), when the expression is at
    /// most [`ANCHOR_MAX_HEIGHT`] levels deep; `None` elsewhere.
    pub(crate) anchor: Option<String>,
}

/// Nodes deeper than this carry no anchor text, so a deeply nested query does not print its
/// tree once per level (an annotation about such a node points at the query's start).
pub(crate) const ANCHOR_MAX_HEIGHT: usize = 100;

/// What a node computes. Parentheses are not represented: a parenthesized expression is its
/// inner node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    /// A number literal.
    Number(f64),
    /// A string literal.
    String(String),
    /// An instant vector selector: the newest sample within the lookback of each step.
    VectorSelector(Selector),
    /// A range vector selector `selector[range]`.
    MatrixSelector {
        /// The series and their time modifiers.
        selector: Selector,
        /// The window's length (ms): samples in `(t - range, t]`.
        range_ms: i64,
    },
    /// A function call.
    Call {
        /// The function.
        function: Function,
        /// Its arguments, in order.
        args: Vec<Node>,
    },
    /// An aggregation.
    Aggregate(Box<Aggregate>),
    /// A binary operator.
    Binary(Box<Binary>),
    /// Unary minus.
    Neg(Box<Node>),
    /// A subquery `expr[range:step]`.
    Subquery(Box<Subquery>),
}

/// A vector selector with its modifiers resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selector {
    /// Position among the plan's selectors (tree order, dense from 0), so per-query data can be
    /// kept in a vector indexed by it.
    pub(crate) id: usize,
    /// The metric name written before the braces, if any.
    pub(crate) name: Option<String>,
    /// The label matchers written in the braces (without the name and `or` alternatives);
    /// `absent()` derives its labels from them.
    pub(crate) matchers: Vec<Matcher>,
    /// What storage is asked for: one matcher set per `or` alternative (one set without `or`),
    /// each including the name matcher.
    pub(crate) matcher_sets: Vec<Vec<Matcher>>,
    /// `offset` (ms; negative for `offset -5m`; 0 without).
    pub(crate) offset_ms: i64,
    /// `@` resolved to a timestamp (ms), `start()` and `end()` to the query's start and end.
    pub(crate) at_ms: Option<i64>,
}

impl Selector {
    /// The time the selector reads at when evaluated at `ts`: the `@` time or `ts`, minus the
    /// offset.
    pub(crate) fn reference_time(&self, ts: i64) -> i64 {
        self.at_ms.unwrap_or(ts).saturating_sub(self.offset_ms)
    }
}

/// The aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggregateOp {
    /// `sum`.
    Sum,
    /// `avg`.
    Avg,
    /// `count`.
    Count,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `group`.
    Group,
    /// `stddev`.
    Stddev,
    /// `stdvar`.
    Stdvar,
    /// `quantile(q, v)`.
    Quantile,
    /// `count_values("label", v)`.
    CountValues,
    /// `topk(k, v)`.
    Topk,
    /// `bottomk(k, v)`.
    Bottomk,
    /// `limitk(k, v)` (experimental).
    Limitk,
    /// `limit_ratio(r, v)` (experimental).
    LimitRatio,
}

impl AggregateOp {
    /// Every operator.
    pub(crate) const ALL: &'static [AggregateOp] = &[
        AggregateOp::Sum,
        AggregateOp::Avg,
        AggregateOp::Count,
        AggregateOp::Min,
        AggregateOp::Max,
        AggregateOp::Group,
        AggregateOp::Stddev,
        AggregateOp::Stdvar,
        AggregateOp::Quantile,
        AggregateOp::CountValues,
        AggregateOp::Topk,
        AggregateOp::Bottomk,
        AggregateOp::Limitk,
        AggregateOp::LimitRatio,
    ];

    /// The PromQL name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AggregateOp::Sum => "sum",
            AggregateOp::Avg => "avg",
            AggregateOp::Count => "count",
            AggregateOp::Min => "min",
            AggregateOp::Max => "max",
            AggregateOp::Group => "group",
            AggregateOp::Stddev => "stddev",
            AggregateOp::Stdvar => "stdvar",
            AggregateOp::Quantile => "quantile",
            AggregateOp::CountValues => "count_values",
            AggregateOp::Topk => "topk",
            AggregateOp::Bottomk => "bottomk",
            AggregateOp::Limitk => "limitk",
            AggregateOp::LimitRatio => "limit_ratio",
        }
    }

    /// The operator named `name`.
    pub(crate) fn from_name(name: &str) -> Option<AggregateOp> {
        AggregateOp::ALL
            .iter()
            .copied()
            .find(|op| op.name() == name)
    }

    /// Whether the operator takes a parameter before the vector.
    #[cfg(test)]
    pub(crate) fn has_param(self) -> bool {
        matches!(
            self,
            AggregateOp::Quantile
                | AggregateOp::CountValues
                | AggregateOp::Topk
                | AggregateOp::Bottomk
                | AggregateOp::Limitk
                | AggregateOp::LimitRatio
        )
    }
}

/// The grouping clause of an aggregation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Grouping {
    /// `without` (else `by`).
    pub(crate) without: bool,
    /// The labels named in the clause.
    pub(crate) labels: Vec<String>,
}

impl Grouping {
    /// The output labels of the group `labels` belongs to.
    pub(crate) fn key(&self, labels: &Labels) -> Labels {
        project(labels, &self.labels, !self.without)
    }
}

/// `labels` restricted to `names` (`by`, `on`), or without them and the metric name
/// (`without`, `ignoring`).
pub(crate) fn project(labels: &Labels, names: &[String], keep_named: bool) -> Labels {
    let kept: Vec<Label> = labels
        .iter()
        .filter(|label| {
            if keep_named {
                names.contains(&label.name)
            } else {
                label.name != METRIC_NAME && !names.contains(&label.name)
            }
        })
        .cloned()
        .collect();
    Labels::from_sorted(kept)
}

/// An aggregation `op by|without (labels) (param, expr)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Aggregate {
    /// The operator.
    pub(crate) op: AggregateOp,
    /// `by`/`without` and the labels (`by ()` when no clause is written).
    pub(crate) grouping: Grouping,
    /// The parameter (`k`, `q`, `ratio`, the `count_values` label), for the operators with one.
    pub(crate) param: Option<Node>,
    /// The aggregated vector.
    pub(crate) expr: Node,
}

/// A binary operator with its modifiers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Binary {
    /// The operator.
    pub(crate) op: Op,
    /// The left operand.
    pub(crate) lhs: Node,
    /// The right operand.
    pub(crate) rhs: Node,
    /// `bool`: comparisons return 0/1 instead of filtering.
    pub(crate) return_bool: bool,
    /// How the operands' series are matched; `Some` only when both operands are instant
    /// vectors.
    pub(crate) matching: Option<VectorMatching>,
}

/// How the series of two instant vectors are matched.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VectorMatching {
    /// `on` (else `ignoring`, also when no clause is written).
    pub(crate) on: bool,
    /// The labels of `on`/`ignoring`.
    pub(crate) labels: Vec<String>,
    /// The cardinality: one-to-one by default, many-to-one for `group_left`, one-to-many for
    /// `group_right`, many-to-many for the set operators.
    pub(crate) card: Card,
    /// The labels `group_left`/`group_right` copy from the "one" side.
    pub(crate) include: Vec<String>,
    /// `fill_left` / `fill` value for a missing left operand.
    pub(crate) fill_lhs: Option<f64>,
    /// `fill_right` / `fill` value for a missing right operand.
    pub(crate) fill_rhs: Option<f64>,
}

/// A subquery with its modifiers resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subquery {
    /// The inner expression.
    pub(crate) expr: Node,
    /// The window's length (ms).
    pub(crate) range_ms: i64,
    /// The inner step (ms): the written one, else the query's default subquery step; at least 1.
    pub(crate) step_ms: i64,
    /// `offset` (ms; 0 without).
    pub(crate) offset_ms: i64,
    /// `@` resolved to a timestamp (ms).
    pub(crate) at_ms: Option<i64>,
}

impl Subquery {
    /// The end of the window when evaluated at `ts`: the `@` time or `ts`, minus the offset.
    pub(crate) fn reference_time(&self, ts: i64) -> i64 {
        self.at_ms.unwrap_or(ts).saturating_sub(self.offset_ms)
    }
}

impl Node {
    /// The direct children, in evaluation order (an aggregation's parameter first).
    pub(crate) fn children(&self) -> Vec<&Node> {
        match &self.kind {
            NodeKind::Number(_)
            | NodeKind::String(_)
            | NodeKind::VectorSelector(_)
            | NodeKind::MatrixSelector { .. } => Vec::new(),
            NodeKind::Call { args, .. } => args.iter().collect(),
            NodeKind::Aggregate(aggregate) => {
                aggregate.param.iter().chain([&aggregate.expr]).collect()
            }
            NodeKind::Binary(binary) => vec![&binary.lhs, &binary.rhs],
            NodeKind::Neg(inner) => vec![inner],
            NodeKind::Subquery(subquery) => vec![&subquery.expr],
        }
    }

    /// Whether the subtree is at most `limit` levels deep (looks no deeper than that).
    pub(crate) fn within_height(&self, limit: usize) -> bool {
        limit > 0
            && self
                .children()
                .into_iter()
                .all(|child| child.within_height(limit - 1))
    }

    /// Whether the evaluator computes this node at one step and repeats the value over a grid
    /// of several steps: a step-invariant node other than a literal or a negation (which are
    /// as cheap to compute at every step, a negation's operand being repeated itself). These
    /// are the largest step-invariant subtrees that read data, and their descendants.
    pub(crate) fn evaluated_once(&self) -> bool {
        self.step_invariant && !self.is_literal() && !matches!(self.kind, NodeKind::Neg(_))
    }

    /// Whether the node is a number or string literal (cheaper to repeat than to cache).
    pub(crate) fn is_literal(&self) -> bool {
        matches!(self.kind, NodeKind::Number(_) | NodeKind::String(_))
    }
}
