//! The evaluation path: every node evaluated once for all steps of a query.
//!
//! A node is evaluated over a [`Grid`] of evaluation timestamps (one step for an instant query,
//! the query's steps for a range query, a subquery's aligned inner steps inside a subquery) and
//! yields a [`Batch`]: a scalar per step, a string, or an instant vector for every step at once
//! as [`Row`]s, one per output series, each with a value slot per step. Everything that depends
//! on labels (output label sets, aggregation groups, vector matching) is therefore computed once
//! per series, not once per step, and per-step work touches only numbers.
//!
//! Children are evaluated before their parent and released once the parent has its result; the
//! samples a batch holds are counted against the query's sample limit while it lives
//! ([`Evaluator::add_samples`], [`Evaluator::release_samples`]).
//!
//! A node this module does not evaluate itself goes to [`fallback`], which runs the step-wise
//! evaluator at each timestamp of the grid. On the query's own grid, the instant-vector children
//! of such a node are evaluated here first and handed to the step-wise evaluator ready made, so
//! only the unsupported node itself runs step by step.
//!
//! **Invariant:** results equal the step-wise evaluator's: per-series kernels are shared
//! (`range_functions::compute`, `binary::apply`, the aggregation update rules), and each step
//! sees the series of a vector in the order the step-wise evaluator would produce them.

mod aggregate;
mod binary;
mod functions;
mod info;
pub(crate) mod matrix;
mod parallel;
mod selector;
mod subquery;
#[cfg(test)]
mod testing;

use prom_model::Labels;
use promql_parser::parser::Expr;
use promql_parser::parser::value::ValueType;

use crate::error::{Error, Result};
use crate::eval::{Evaluator, StepValue};
use crate::parse::unwrap_parens;
use crate::value::Element;

/// The evaluation timestamps of a node: `start + k * step` for `k < len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    /// First timestamp (ms).
    pub(crate) start: i64,
    /// Distance between timestamps (ms); 0 when `len == 1`.
    pub(crate) step: i64,
    /// Number of timestamps (at least 1).
    pub(crate) len: usize,
}

impl Grid {
    /// The grid `start, start + step, ..., <= end`.
    pub(crate) fn new(start: i64, end: i64, step: i64) -> Self {
        if step <= 0 || end <= start {
            return Self {
                start,
                step: 0,
                len: 1,
            };
        }
        let len = usize::try_from((end - start) / step).unwrap_or(usize::MAX - 1) + 1;
        Self { start, step, len }
    }

    /// The `index`-th timestamp.
    pub(crate) fn ts(&self, index: usize) -> i64 {
        self.start
            .saturating_add(self.step.saturating_mul(index as i64))
    }

    /// Every timestamp in order.
    pub(crate) fn timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len).map(|index| self.ts(index))
    }
}

/// One output series over a grid.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// The series' labels.
    pub(crate) labels: Labels,
    /// Delayed name removal: `__name__` is dropped when the query finishes.
    pub(crate) drop_name: bool,
    /// The value at each step of the grid; `None` where the series has no sample.
    pub(crate) values: Vec<Option<f64>>,
}

impl Row {
    /// How many steps hold a value.
    pub(crate) fn present(&self) -> usize {
        self.values.iter().filter(|value| value.is_some()).count()
    }
}

/// A node's value at every step of a grid.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Batch {
    /// A scalar per step.
    Scalar(Vec<f64>),
    /// A string (the same at every step).
    String(String),
    /// An instant vector per step, series by series. A row is kept only if it has a value at
    /// some step; rows are in the order the step-wise evaluator would list the elements.
    Vector(Vec<Row>),
}

impl Batch {
    /// Samples held: one per scalar step and per present value.
    pub(crate) fn samples(&self) -> usize {
        match self {
            Batch::Scalar(values) => values.len(),
            Batch::String(_) => 0,
            Batch::Vector(rows) => rows.iter().map(Row::present).sum(),
        }
    }

    /// The PromQL type name.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Batch::Scalar(_) => "scalar",
            Batch::String(_) => "string",
            Batch::Vector(_) => "vector",
        }
    }

    /// The rows, or an error naming the type found.
    pub(crate) fn into_vector(self) -> Result<Vec<Row>> {
        match self {
            Batch::Vector(rows) => Ok(rows),
            other => Err(Error::exec(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    /// The scalar values, or an error naming the type found.
    pub(crate) fn into_scalar(self) -> Result<Vec<f64>> {
        match self {
            Batch::Scalar(values) => Ok(values),
            other => Err(Error::exec(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }
}

/// Evaluates `expr` at every timestamp of `grid`.
///
/// The samples of the result are counted as held ([`Evaluator::add_samples`]); the caller
/// releases them ([`release`]) when it no longer holds the result.
pub(crate) fn eval(ev: &mut Evaluator<'_>, expr: &Expr, grid: Grid) -> Result<Batch> {
    ev.check_interrupt("query execution")?;
    if grid.len > 1 && ev.is_invariant(expr) {
        // Pinned by `@`: the value is the same at every step, so it is computed at one step and
        // repeated, as Prometheus evaluates a step-invariant expression once.
        let one = eval(ev, expr, Grid::new(grid.start, grid.start, 0))?;
        release(ev, &one);
        let batch = match one {
            Batch::Scalar(values) => {
                Batch::Scalar(vec![values.first().copied().unwrap_or(f64::NAN); grid.len])
            }
            Batch::String(text) => Batch::String(text),
            Batch::Vector(rows) => Batch::Vector(
                rows.into_iter()
                    .map(|row| Row {
                        values: vec![row.values.first().copied().flatten(); grid.len],
                        ..row
                    })
                    .collect(),
            ),
        };
        ev.add_samples(batch.samples())?;
        return Ok(batch);
    }
    let batch = match expr {
        Expr::NumberLiteral(number) => Batch::Scalar(vec![number.val; grid.len]),
        Expr::StringLiteral(string) => Batch::String(string.val.clone()),
        Expr::Paren(paren) => return eval(ev, &paren.expr, grid),
        Expr::VectorSelector(selector) => selector::instant(ev, selector, grid)?,
        Expr::Unary(unary) => {
            let inner = eval(ev, &unary.expr, grid)?;
            release(ev, &inner);
            match inner {
                Batch::Scalar(values) => Batch::Scalar(values.into_iter().map(|v| -v).collect()),
                Batch::Vector(mut rows) => {
                    for row in &mut rows {
                        row.drop_name = true;
                        for value in row.values.iter_mut().flatten() {
                            *value = -*value;
                        }
                    }
                    Batch::Vector(rows)
                }
                other => {
                    return Err(Error::exec(format!(
                        "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                        other.type_name()
                    )));
                }
            }
        }
        Expr::Call(call) => {
            let batch = match selector::range_function(ev, call, grid)? {
                Some(batch) => Some(batch),
                None => match subquery::range_function(ev, call, grid)? {
                    Some(batch) => Some(batch),
                    None => functions::eval(ev, call, grid)?,
                },
            };
            match batch {
                Some(batch) => batch,
                None => return fallback(ev, expr, grid),
            }
        }
        Expr::Aggregate(aggregate) => match aggregate::eval(ev, aggregate, grid)? {
            Some(batch) => batch,
            None => return fallback(ev, expr, grid),
        },
        Expr::Binary(binary) => match binary::eval(ev, binary, grid)? {
            Some(batch) => batch,
            None => return fallback(ev, expr, grid),
        },
        _ => return fallback(ev, expr, grid),
    };
    ev.add_samples(batch.samples())?;
    Ok(batch)
}

/// Evaluates `expr`, which must yield an instant vector.
pub(crate) fn eval_vector(ev: &mut Evaluator<'_>, expr: &Expr, grid: Grid) -> Result<Vec<Row>> {
    eval(ev, expr, grid)?.into_vector()
}

/// Stops counting the samples of `batch` as held.
pub(crate) fn release(ev: &mut Evaluator<'_>, batch: &Batch) {
    ev.release_samples(batch.samples());
}

/// Stops counting the samples of `rows` as held.
pub(crate) fn release_rows(ev: &mut Evaluator<'_>, rows: &[Row]) {
    ev.release_samples(rows.iter().map(Row::present).sum());
}

/// Evaluates `expr` with the step-wise evaluator at each timestamp of `grid`.
///
/// On the query's own grid its instant-vector children (other than bare selectors, whose sample
/// timestamps `timestamp()` needs) are evaluated here first and handed over per step.
pub(crate) fn fallback(ev: &mut Evaluator<'_>, expr: &Expr, grid: Grid) -> Result<Batch> {
    if ev.is_query_grid(grid) {
        for child in children(expr) {
            if child.value_type() != ValueType::Vector
                || matches!(unwrap_parens(child), Expr::VectorSelector(_))
            {
                continue;
            }
            let rows = eval_vector(ev, child, grid)?;
            release_rows(ev, &rows);
            ev.set_precomputed(child, to_steps(rows, grid));
        }
    }
    let mut scalars: Vec<f64> = Vec::new();
    let mut string: Option<String> = None;
    let mut rows: Vec<Row> = Vec::new();
    let mut index_of: std::collections::HashMap<(Labels, bool), usize> =
        std::collections::HashMap::new();
    let mut kind: Option<&'static str> = None;
    for (step, ts) in grid.timestamps().enumerate() {
        ev.check_interrupt("query execution")?;
        let before = ev.step_samples;
        let value = ev.eval(expr, ts)?;
        ev.step_samples = before;
        let this_kind = value.type_name();
        if kind.is_some_and(|kind| kind != this_kind) {
            return Err(Error::exec(format!(
                "expression changed type between steps: {} and {this_kind}",
                kind.unwrap_or_default()
            )));
        }
        kind = Some(this_kind);
        match value {
            StepValue::Scalar(v) => scalars.push(v),
            StepValue::String(v) => string = Some(v),
            StepValue::Vector(elements) => {
                ev.add_samples(elements.len())?;
                for element in elements {
                    let key = (element.labels, element.drop_name);
                    let index = match index_of.get(&key) {
                        Some(&index) => index,
                        None => {
                            rows.push(Row {
                                labels: key.0.clone(),
                                drop_name: key.1,
                                values: vec![None; grid.len],
                            });
                            index_of.insert(key, rows.len() - 1);
                            rows.len() - 1
                        }
                    };
                    if rows[index].values[step].replace(element.v).is_some() {
                        return Err(Error::exec(
                            "vector cannot contain metrics with the same labelset",
                        ));
                    }
                }
            }
            StepValue::Matrix(_) => {
                return Err(Error::exec(format!(
                    "expected scalar, string or instant vector, got {this_kind}"
                )));
            }
        }
    }
    let batch = match kind {
        Some("scalar") => Batch::Scalar(scalars),
        Some("string") => Batch::String(string.unwrap_or_default()),
        _ => {
            let held: usize = rows.iter().map(Row::present).sum();
            ev.release_samples(held);
            Batch::Vector(rows)
        }
    };
    ev.add_samples(batch.samples())?;
    Ok(batch)
}

/// The direct children of a node.
fn children(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::Paren(paren) => vec![&paren.expr],
        Expr::Unary(unary) => vec![&unary.expr],
        Expr::Binary(binary) => vec![&binary.lhs, &binary.rhs],
        Expr::Aggregate(aggregate) => {
            let mut out: Vec<&Expr> = vec![&aggregate.expr];
            if let Some(param) = &aggregate.param {
                out.push(param);
            }
            out
        }
        Expr::Call(call) => call.args.args.iter().map(|arg| arg.as_ref()).collect(),
        Expr::Subquery(subquery) => vec![&subquery.expr],
        _ => Vec::new(),
    }
}

/// The elements of `rows` at each step of `grid`, in row order.
pub(crate) fn to_steps(rows: Vec<Row>, grid: Grid) -> Vec<Option<Vec<Element>>> {
    let mut steps: Vec<Vec<Element>> = vec![Vec::new(); grid.len];
    for row in rows {
        for (step, value) in row.values.iter().enumerate() {
            if let Some(v) = value {
                steps[step].push(Element {
                    labels: row.labels.clone(),
                    t: grid.ts(step),
                    v: *v,
                    drop_name: row.drop_name,
                });
            }
        }
    }
    steps.into_iter().map(Some).collect()
}
