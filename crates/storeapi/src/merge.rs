//! K-way merge of sorted `Series` response streams (what a querier's proxy does over its stores).
//!
//! Every input is a stream of `SeriesResponse` frames whose series are sorted by labels
//! (compatibility sheet §1.6 rule 1); `series` and `batch` frames are both understood. The merged
//! stream yields one `series` frame per distinct label set, in label order. Series with equal
//! labels, from different inputs or from consecutive frames of one input, become one series whose
//! chunks are sorted by `(min_time, max_time)`, with exact duplicate chunks (the same chunk
//! served by two replicas of a store) kept once. `warning` and `hints` frames are passed through
//! as soon as they arrive. An input's error is yielded in place and that input is dropped from the
//! merge; the caller decides whether to go on (partial response) or stop.
//!
//! The merge keeps one head series per input in a binary heap, so each output series costs
//! `O(log k)` comparisons for `k` inputs, and never buffers more than one series per input (plus
//! the rest of a batch frame).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::convert::compare_labels;
use crate::proto::thanos::{self, SeriesResponse, series_response};

/// A boxed stream of `Series` responses, as a tonic client returns them (after boxing).
pub type SeriesResponseStream<E = tonic::Status> =
    Pin<Box<dyn Stream<Item = Result<SeriesResponse, E>> + Send>>;

/// The merge of several sorted `Series` response streams; see the [module docs](self).
#[derive(Debug)]
pub struct MergedSeries<S> {
    inputs: Vec<Input<S>>,
    heap: BinaryHeap<Head>,
    /// Inputs that have no series in the heap and have not ended.
    needs_refill: Vec<usize>,
    /// The series being assembled from heads with equal labels.
    current: Option<thanos::Series>,
}

#[derive(Debug)]
struct Input<S> {
    stream: S,
    /// The not yet merged rest of a `batch` frame.
    queued: VecDeque<thanos::Series>,
}

/// One input's next series; ordered so that the heap's top is the smallest label set.
#[derive(Debug)]
struct Head {
    series: thanos::Series,
    input: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_labels(&other.series.labels, &self.series.labels)
            .then_with(|| other.input.cmp(&self.input))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

/// Merges sorted `Series` response streams; see the [module docs](self).
pub fn merge_series<S, E>(streams: impl IntoIterator<Item = S>) -> MergedSeries<S>
where
    S: Stream<Item = Result<SeriesResponse, E>> + Unpin,
{
    let inputs: Vec<Input<S>> = streams
        .into_iter()
        .map(|stream| Input {
            stream,
            queued: VecDeque::new(),
        })
        .collect();
    MergedSeries {
        needs_refill: (0..inputs.len()).collect(),
        heap: BinaryHeap::with_capacity(inputs.len()),
        inputs,
        current: None,
    }
}

/// What polling one input produced.
enum Refill<E> {
    /// The input has a head in the heap, or has ended.
    Settled,
    /// A frame to pass through (warning, hints) or an error to report.
    Yield(Result<SeriesResponse, E>),
    /// The input is not ready.
    Pending,
}

impl<S, E> MergedSeries<S>
where
    S: Stream<Item = Result<SeriesResponse, E>> + Unpin,
{
    /// Polls input `index` until it has a head series, ends, fails, passes a frame through or
    /// is not ready.
    fn refill(&mut self, index: usize, cx: &mut Context<'_>) -> Refill<E> {
        let input = &mut self.inputs[index];
        loop {
            if let Some(series) = input.queued.pop_front() {
                self.heap.push(Head {
                    series,
                    input: index,
                });
                return Refill::Settled;
            }
            match Pin::new(&mut input.stream).poll_next(cx) {
                Poll::Pending => return Refill::Pending,
                Poll::Ready(None) => return Refill::Settled,
                Poll::Ready(Some(Err(error))) => return Refill::Yield(Err(error)),
                Poll::Ready(Some(Ok(response))) => match response.result {
                    Some(series_response::Result::Series(series)) => {
                        self.heap.push(Head {
                            series,
                            input: index,
                        });
                        return Refill::Settled;
                    }
                    Some(series_response::Result::Batch(batch)) => {
                        input.queued.extend(batch.series)
                    }
                    Some(
                        other @ (series_response::Result::Warning(_)
                        | series_response::Result::Hints(_)),
                    ) => {
                        return Refill::Yield(Ok(SeriesResponse {
                            result: Some(other),
                        }));
                    }
                    None => {}
                },
            }
        }
    }

    /// Refills every input that needs it; `Some` is a frame to yield first, `Pending` when an
    /// input is not ready.
    fn refill_all(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<SeriesResponse, E>>> {
        let mut position = 0;
        let mut any_pending = false;
        while position < self.needs_refill.len() {
            let index = self.needs_refill[position];
            match self.refill(index, cx) {
                Refill::Settled => {
                    self.needs_refill.swap_remove(position);
                }
                Refill::Pending => {
                    any_pending = true;
                    position += 1;
                }
                Refill::Yield(Ok(frame)) => return Poll::Ready(Some(Ok(frame))),
                Refill::Yield(Err(error)) => {
                    // The failed input leaves the merge; the others go on.
                    self.needs_refill.swap_remove(position);
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
        if any_pending {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    }
}

impl<S, E> Stream for MergedSeries<S>
where
    S: Stream<Item = Result<SeriesResponse, E>> + Unpin,
{
    type Item = Result<SeriesResponse, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.refill_all(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(frame)) => return Poll::Ready(Some(frame)),
                Poll::Ready(None) => {}
            }
            // Every live input now has its head in the heap.
            let head_differs = match (this.heap.peek(), &this.current) {
                (None, _) => true,
                (Some(head), Some(current)) => {
                    compare_labels(&head.series.labels, &current.labels) != Ordering::Equal
                }
                (Some(_), None) => false,
            };
            if head_differs {
                return Poll::Ready(
                    this.current
                        .take()
                        .map(|series| Ok(series_frame(finish_series(series)))),
                );
            }
            if let Some(head) = this.heap.pop() {
                match &mut this.current {
                    Some(current) => current.chunks.extend(head.series.chunks),
                    None => this.current = Some(head.series),
                }
                this.needs_refill.push(head.input);
            }
        }
    }
}

/// A `series` response frame.
pub fn series_frame(series: thanos::Series) -> SeriesResponse {
    SeriesResponse {
        result: Some(series_response::Result::Series(series)),
    }
}

/// A `warning` response frame.
pub fn warning_frame(warning: impl Into<String>) -> SeriesResponse {
    SeriesResponse {
        result: Some(series_response::Result::Warning(warning.into())),
    }
}

/// Sorts a merged series' chunks by `(min_time, max_time)` and drops exact duplicates.
fn finish_series(mut series: thanos::Series) -> thanos::Series {
    sort_chunks(&mut series.chunks);
    series.chunks.dedup();
    series
}

/// Sorts chunks by time range; chunks with equal ranges are ordered by their raw bytes so that
/// duplicates end up adjacent.
pub fn sort_chunks(chunks: &mut [thanos::AggrChunk]) {
    chunks.sort_by(|left, right| {
        left.min_time
            .cmp(&right.min_time)
            .then_with(|| left.max_time.cmp(&right.max_time))
            .then_with(|| raw_bytes(left).cmp(raw_bytes(right)))
    });
}

fn raw_bytes(chunk: &thanos::AggrChunk) -> &[u8] {
    chunk.raw.as_ref().map_or(&[], |raw| &raw.data[..])
}

#[cfg(test)]
mod tests;
