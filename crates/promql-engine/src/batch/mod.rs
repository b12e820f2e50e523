//! The evaluation path: every node of the query's plan (`crate::plan`) evaluated once for all
//! steps of a query.
//!
//! A node is evaluated over a [`Grid`] of evaluation timestamps (one step for an instant query,
//! the query's steps for a range query, a subquery's aligned inner steps inside a subquery) and
//! yields a [`Batch`]: a scalar per step, a string, or an instant vector for every step at once
//! as [`Row`]s, one per output series, each with a value slot per step. Everything that depends
//! on labels (output label sets, aggregation groups, vector matching) is therefore computed once
//! per series, not once per step, and per-step work touches only numbers. A range vector is a
//! result only at the root of an instant query ([`matrix`]).
//!
//! Children are evaluated before their parent and released once the parent has its result; the
//! samples a batch holds are counted against the query's sample limit while it lives
//! ([`Evaluator::add_samples`], [`Evaluator::release_samples`]).
//!
//! **Invariant:** a grid's result equals the results of its steps evaluated one at a time, bit
//! for bit (the tests compare range grids with single steps, `testing`): each step applies the
//! same per-series kernels (`range_functions::compute`, `binary::apply`, the aggregation update
//! rules) to the same values in the same order; an instant query lists its series in
//! Prometheus' order.

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

use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::plan::{Node, NodeKind};

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
    /// some step. Rows are listed by the first step at which they have a value, then by their
    /// order at that step: at the first step (the only one of an instant query) in the order
    /// an evaluation of that step alone lists its elements.
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

/// Evaluates `node` at every timestamp of `grid`.
///
/// The samples of the result are counted as held ([`Evaluator::add_samples`]); the caller
/// releases them ([`release`]) when it no longer holds the result.
pub(crate) fn eval(ev: &mut Evaluator<'_>, node: &Node, grid: Grid) -> Result<Batch> {
    ev.check_interrupt("query execution")?;
    if grid.len > 1 && ev.start != ev.end && node.evaluated_once() {
        // Step invariant (pinned by `@`) in a range query: the value is the same at every step,
        // so it is computed at one step and repeated, as Prometheus evaluates a step-invariant
        // expression once.
        let one = eval(ev, node, Grid::new(grid.start, grid.start, 0))?;
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
    let batch = match &node.kind {
        NodeKind::Number(value) => Batch::Scalar(vec![*value; grid.len]),
        NodeKind::String(text) => Batch::String(text.clone()),
        NodeKind::VectorSelector(selector) => selector::instant(ev, selector, grid)?,
        NodeKind::Neg(inner) => {
            let inner = eval(ev, inner, grid)?;
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
        NodeKind::Call { function, args } => {
            let (function, args) = (*function, args.as_slice());
            let batch = match selector::range_function(ev, function, args, grid)? {
                Some(batch) => Some(batch),
                None => match subquery::range_function(ev, function, args, grid)? {
                    Some(batch) => Some(batch),
                    None => functions::eval(ev, function, args, grid)?,
                },
            };
            match batch {
                Some(batch) => batch,
                None => {
                    let name = function.name();
                    return Err(Error::exec(if function.range_arg().is_some() {
                        format!("missing range vector argument for {name}")
                    } else {
                        format!("function {name:?} is not supported")
                    }));
                }
            }
        }
        NodeKind::Aggregate(aggregate) => match aggregate::eval(ev, aggregate, grid)? {
            Some(batch) => batch,
            None => {
                return Err(Error::exec(format!(
                    "aggregation {:?} is not supported",
                    aggregate.op.name()
                )));
            }
        },
        NodeKind::Binary(binary) => binary::eval(ev, binary, grid)?,
        NodeKind::MatrixSelector { .. } | NodeKind::Subquery(_) => {
            return Err(Error::exec(
                "expected scalar, string or instant vector, got matrix",
            ));
        }
    };
    ev.add_samples(batch.samples())?;
    Ok(batch)
}

/// Evaluates `node`, which must yield an instant vector.
pub(crate) fn eval_vector(ev: &mut Evaluator<'_>, node: &Node, grid: Grid) -> Result<Vec<Row>> {
    eval(ev, node, grid)?.into_vector()
}

/// Stops counting the samples of `batch` as held.
pub(crate) fn release(ev: &mut Evaluator<'_>, batch: &Batch) {
    ev.release_samples(batch.samples());
}

/// Stops counting the samples of `rows` as held.
pub(crate) fn release_rows(ev: &mut Evaluator<'_>, rows: &[Row]) {
    ev.release_samples(rows.iter().map(Row::present).sum());
}
