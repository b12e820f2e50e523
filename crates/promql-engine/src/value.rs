//! Query results: scalars, strings, instant vectors and matrices of float samples.

use prom_model::Labels;

/// One float point of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Timestamp in ms since the Unix epoch.
    pub t: i64,
    /// The value (may be NaN or ±Inf).
    pub v: f64,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// The element's labels.
    pub labels: Labels,
    /// Timestamp in ms: the evaluation time, or the sample's own time straight out of a selector.
    pub t: i64,
    /// The value.
    pub v: f64,
    /// Delayed name removal: `__name__` is to be dropped when the query finishes.
    pub drop_name: bool,
}

/// A series with several points: one row of a matrix, or one series of a range vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// Its points in time order.
    pub points: Vec<Point>,
    /// Delayed name removal: `__name__` is to be dropped when the query finishes.
    pub drop_name: bool,
}

/// A query's result value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar at a time.
    Scalar {
        /// Timestamp in ms.
        t: i64,
        /// The value.
        v: f64,
    },
    /// A string at a time.
    String {
        /// Timestamp in ms.
        t: i64,
        /// The string.
        v: String,
    },
    /// An instant vector (order is meaningful only after `sort*`, `topk`, `bottomk`).
    Vector(Vec<Element>),
    /// A matrix: the result of a range query (sorted by labels) or of an instant query whose
    /// expression is a range vector.
    Matrix(Vec<Series>),
}

impl Value {
    /// The PromQL type name (`scalar`, `string`, `vector`, `matrix`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A query's result: its value and the annotations evaluation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warning annotations (`PromQL warning: ...`), deduplicated, in first-seen order.
    pub warnings: Vec<String>,
    /// Info annotations (`PromQL info: ...`), deduplicated, in first-seen order.
    pub infos: Vec<String>,
}
