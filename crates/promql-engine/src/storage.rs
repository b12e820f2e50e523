//! The series source the evaluator reads from, and an in-memory implementation.
//!
//! [`Queryable::select`] hands back a lazy stream of series whose samples are themselves a lazy
//! stream, so an implementation backed by TSDB chunks can decode while the engine consumes.

use std::collections::BTreeMap;
use std::fmt;

use prom_model::{Labels, Matcher, Sample};

mod memory;
mod postings;

pub use memory::MemoryStorage;

/// An error from a series source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    /// What failed.
    pub message: String,
}

impl StorageError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// What the engine is about to do with the selected series; a source may use it to prune.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectHints {
    /// First timestamp (ms, inclusive) whose samples may be needed.
    pub start: i64,
    /// Last timestamp (ms, inclusive) whose samples may be needed.
    pub end: i64,
    /// Evaluation step of the query in ms (0 for an instant query).
    pub step: i64,
    /// The function that consumes the selector, if any (`rate`, `sum`, ...).
    pub func: Option<String>,
    /// The range of a range selector in ms (0 for an instant selector).
    pub range: i64,
    /// Grouping labels of the enclosing aggregation.
    pub grouping: Vec<String>,
    /// Whether `grouping` is a `by` list (true) or a `without` list (false).
    pub by: bool,
}

/// A lazy stream of samples in time order.
pub type SampleStream<'a> = Box<dyn Iterator<Item = Result<Sample, StorageError>> + 'a>;

/// One selected series: its labels and a lazy stream of its float samples.
pub struct SelectedSeries<'a> {
    /// The series' labels.
    pub labels: Labels,
    /// Its samples within the hinted time range (more are allowed; the engine filters).
    pub samples: SampleStream<'a>,
    /// Start timestamps (created-at times) of samples, keyed by sample timestamp, when the source
    /// knows them; `rate`, `increase`, `irate`, `resets` and `start_timestamp` use them.
    pub start_timestamps: Option<BTreeMap<i64, i64>>,
}

impl fmt::Debug for SelectedSeries<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedSeries")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// A lazy stream of selected series, sorted by labels (relied on only when the source says so:
/// [`Queryable::streams_sorted`]).
pub type SeriesStream<'a> = Box<dyn Iterator<Item = Result<SelectedSeries<'a>, StorageError>> + 'a>;

/// A source of series: everything the evaluator needs from storage.
pub trait Queryable {
    /// The series matching all `matchers`, with samples covering `hints.start..=hints.end`.
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SeriesStream<'a>, StorageError>;

    /// Whether every stream [`select`](Self::select) returns is sorted by labels (a label set
    /// may repeat, adjacent). The engine then reads a selector it reads once as the series
    /// arrive, one block at a time, instead of collecting the whole selection first, and fails
    /// the query if a series arrives out of order. False (the default): every selection is
    /// collected and sorted before the query is evaluated.
    fn streams_sorted(&self) -> bool {
        false
    }
}
