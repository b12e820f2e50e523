//! Building a plan's nodes from `promql-parser`'s AST.

use promql_parser::label::Matchers;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, SubqueryExpr, VectorMatchCardinality,
    VectorSelector,
};

use super::PlanContext;
use super::function::Function;
use super::node::{
    ANCHOR_MAX_HEIGHT, Aggregate, AggregateOp, Binary, Grouping, Node, NodeKind, ResultType,
    SampleType, Selector, Subquery, VectorMatching,
};
use crate::binary::{Card, Op};
use crate::error::{Error, Result};
use crate::parse::{at_ms, duration_ms, matcher_sets, offset_ms};

/// Builds nodes for one query; numbers selectors in tree order.
pub(super) struct Builder<'a> {
    context: &'a PlanContext,
    /// Selectors numbered so far.
    pub(super) selectors: usize,
}

impl<'a> Builder<'a> {
    pub(super) fn new(context: &'a PlanContext) -> Self {
        Self {
            context,
            selectors: 0,
        }
    }

    /// The node of `expr` (parentheses dropped).
    pub(super) fn node(&mut self, expr: &Expr) -> Result<Node> {
        let result_type = result_type(expr.value_type());
        let (kind, step_invariant) = match expr {
            Expr::Paren(paren) => return self.node(&paren.expr),
            Expr::NumberLiteral(number) => (NodeKind::Number(number.val), true),
            Expr::StringLiteral(string) => (NodeKind::String(string.val.clone()), true),
            Expr::VectorSelector(selector) => {
                let selector = self.selector(selector)?;
                let invariant = selector.at_ms.is_some();
                (NodeKind::VectorSelector(selector), invariant)
            }
            Expr::MatrixSelector(matrix) => {
                let selector = self.selector(&matrix.vs)?;
                let invariant = selector.at_ms.is_some();
                let range_ms = duration_ms(&matrix.range);
                (NodeKind::MatrixSelector { selector, range_ms }, invariant)
            }
            Expr::Unary(unary) => {
                let inner = self.node(&unary.expr)?;
                let invariant = inner.step_invariant;
                (NodeKind::Neg(Box::new(inner)), invariant)
            }
            Expr::Call(call) => self.call(call)?,
            Expr::Aggregate(aggregate) => self.aggregate(aggregate)?,
            Expr::Binary(binary) => self.binary(binary)?,
            Expr::Subquery(subquery) => self.subquery(subquery)?,
            Expr::Extension(_) => {
                return Err(Error::exec("extension expressions are not supported"));
            }
        };
        Ok(Node {
            kind,
            result_type,
            sample_type: SampleType::Float,
            step_invariant,
            anchor: None,
        })
    }

    fn selector(&mut self, selector: &VectorSelector) -> Result<Selector> {
        // The matchers as written, converted by the same code as the full sets.
        let written = VectorSelector {
            name: None,
            matchers: Matchers {
                matchers: selector.matchers.matchers.clone(),
                or_matchers: Vec::new(),
            },
            offset: None,
            at: None,
        };
        let matchers = matcher_sets(&written)?.into_iter().flatten().collect();
        let id = self.selectors;
        self.selectors += 1;
        Ok(Selector {
            id,
            name: selector.name.clone(),
            matchers,
            matcher_sets: matcher_sets(selector)?,
            offset_ms: offset_ms(selector.offset.as_ref()),
            at_ms: at_ms(selector.at.as_ref(), self.context.start, self.context.end),
        })
    }

    fn call(&mut self, call: &Call) -> Result<(NodeKind, bool)> {
        let name = call.func.name;
        let Some(function) = Function::from_name(name) else {
            // The wording evaluation used when it met such a call.
            return Err(Error::exec(format!("function {name:?} is not supported")));
        };
        let annotates = function.range_arg().is_some()
            || matches!(
                function,
                Function::HistogramQuantile
                    | Function::HistogramFraction
                    | Function::HistogramQuantiles
            );
        let mut args = Vec::with_capacity(call.args.args.len());
        for arg in &call.args.args {
            let node = self.node(arg)?;
            args.push(if annotates { anchored(node, arg) } else { node });
        }
        let invariant = !args.is_empty()
            && args.iter().all(|arg| arg.step_invariant)
            && !function.is_time_dependent();
        Ok((NodeKind::Call { function, args }, invariant))
    }

    fn aggregate(&mut self, aggregate: &AggregateExpr) -> Result<(NodeKind, bool)> {
        let name = aggregate.op.to_string();
        let Some(op) = AggregateOp::from_name(&name) else {
            return Err(Error::exec(format!(
                "aggregation {name:?} is not supported"
            )));
        };
        let grouping = match &aggregate.modifier {
            Some(modifier) => Grouping {
                without: !modifier.is_include(),
                labels: modifier.labels().labels.clone(),
            },
            None => Grouping::default(),
        };
        let param = match &aggregate.param {
            Some(param) => Some(anchored(self.node(param)?, param)),
            None => None,
        };
        let expr = self.node(&aggregate.expr)?;
        let invariant = expr.step_invariant && param.as_ref().is_none_or(|p| p.step_invariant);
        let node = Aggregate {
            op,
            grouping,
            param,
            expr,
        };
        Ok((NodeKind::Aggregate(Box::new(node)), invariant))
    }

    fn binary(&mut self, binary: &BinaryExpr) -> Result<(NodeKind, bool)> {
        let op = Op::parse(&binary.op.to_string())?;
        let lhs = self.node(&binary.lhs)?;
        let rhs = self.node(&binary.rhs)?;
        let matching = (lhs.result_type == ResultType::Vector
            && rhs.result_type == ResultType::Vector)
            .then(|| vector_matching(binary, op));
        let invariant = lhs.step_invariant && rhs.step_invariant;
        let node = Binary {
            op,
            lhs,
            rhs,
            return_bool: binary.return_bool(),
            matching,
        };
        Ok((NodeKind::Binary(Box::new(node)), invariant))
    }

    fn subquery(&mut self, subquery: &SubqueryExpr) -> Result<(NodeKind, bool)> {
        let expr = self.node(&subquery.expr)?;
        let at = at_ms(subquery.at.as_ref(), self.context.start, self.context.end);
        let step_ms = subquery
            .step
            .as_ref()
            .map(duration_ms)
            .filter(|step| *step > 0)
            .unwrap_or(self.context.default_subquery_step)
            .max(1);
        let node = Subquery {
            expr,
            range_ms: duration_ms(&subquery.range),
            step_ms,
            offset_ms: offset_ms(subquery.offset.as_ref()),
            at_ms: at,
        };
        Ok((NodeKind::Subquery(Box::new(node)), at.is_some()))
    }
}

/// `node` with the printed form of `expr` as its anchor, when it is shallow enough.
fn anchored(mut node: Node, expr: &Expr) -> Node {
    if node.within_height(ANCHOR_MAX_HEIGHT) {
        node.anchor = Some(expr.to_string());
    }
    node
}

/// The matching of two vector operands, as `binary::Matching::from_expr` reads it; the set
/// operators are many-to-many whatever is written.
fn vector_matching(binary: &BinaryExpr, op: Op) -> VectorMatching {
    let mut matching = VectorMatching {
        on: false,
        labels: Vec::new(),
        card: Card::OneToOne,
        include: Vec::new(),
        fill_lhs: None,
        fill_rhs: None,
    };
    if let Some(modifier) = &binary.modifier {
        match &modifier.matching {
            Some(LabelModifier::Include(labels)) => {
                matching.on = true;
                matching.labels = labels.labels.clone();
            }
            Some(LabelModifier::Exclude(labels)) => matching.labels = labels.labels.clone(),
            None => {}
        }
        match &modifier.card {
            VectorMatchCardinality::OneToOne => {}
            VectorMatchCardinality::ManyToOne(labels) => {
                matching.card = Card::ManyToOne;
                matching.include = labels.labels.clone();
            }
            VectorMatchCardinality::OneToMany(labels) => {
                matching.card = Card::OneToMany;
                matching.include = labels.labels.clone();
            }
            VectorMatchCardinality::ManyToMany => matching.card = Card::ManyToMany,
        }
        matching.fill_lhs = modifier.fill_values.lhs;
        matching.fill_rhs = modifier.fill_values.rhs;
    }
    if op.is_set() {
        matching.card = Card::ManyToMany;
    }
    matching
}

fn result_type(value_type: ValueType) -> ResultType {
    match value_type {
        ValueType::Scalar => ResultType::Scalar,
        ValueType::Vector => ResultType::Vector,
        ValueType::Matrix => ResultType::Matrix,
        ValueType::String => ResultType::String,
    }
}
