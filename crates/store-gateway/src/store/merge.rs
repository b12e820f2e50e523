//! The lazy k-way merge of the blocks' sorted series streams into `Series` response frames.
//!
//! Each block sends batches of series in label order through its own bounded channel; the
//! merge keeps the next series of every block in a binary heap, joins series with the same
//! labels (the same series in several blocks: chunks concatenated, sorted by time, exact
//! duplicates dropped) and sends frames through the bounded response channel. It holds at most
//! one batch per block, and a slow client (a full response channel) stops it, which in turn
//! stops the blocks' fetching.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use storeapi::merge::{series_frame, sort_chunks};
use storeapi::proto::thanos::{self, SeriesResponse, series_response};
use tokio::sync::mpsc;
use tonic::Status;

use crate::block::{BlockBatch, BlockSeries, compare_series};
use crate::error::Result;

/// The frames of a response, as the gRPC layer takes them.
pub(crate) type FrameSender = mpsc::Sender<Result<SeriesResponse, Status>>;

/// One block's stream.
struct Source {
    receiver: mpsc::Receiver<BlockBatch>,
    queue: VecDeque<BlockSeries>,
}

impl Source {
    /// The block's next series; `None` when the block is done.
    async fn next(&mut self) -> Result<Option<BlockSeries>> {
        loop {
            if let Some(series) = self.queue.pop_front() {
                return Ok(Some(series));
            }
            match self.receiver.recv().await {
                None => return Ok(None),
                Some(Err(error)) => return Err(error),
                Some(Ok(batch)) => self.queue = batch.into(),
            }
        }
    }
}

/// A block's next series; the heap's top is the first in sending order.
struct Head {
    series: BlockSeries,
    source: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_series(
            &other.series.labels,
            other.series.identity(),
            &self.series.labels,
            self.series.identity(),
        )
        .then_with(|| other.source.cmp(&self.source))
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

/// Packs series into frames: one per frame, or `batch` frames when the request asked for them.
struct Framer<'a> {
    sender: &'a FrameSender,
    batch_size: usize,
    /// Series to send at most (0 = no limit).
    limit: usize,
    pending: Vec<thanos::Series>,
    sent: usize,
}

/// Whether to go on after a series was framed.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// The request's series limit is reached.
    Full,
    /// The client is gone.
    Gone,
}

impl Framer<'_> {
    async fn push(&mut self, series: thanos::Series) -> Flow {
        self.sent += 1;
        if self.batch_size <= 1 {
            if self.sender.send(Ok(series_frame(series))).await.is_err() {
                return Flow::Gone;
            }
        } else {
            self.pending.push(series);
            if self.pending.len() >= self.batch_size && !self.flush().await {
                return Flow::Gone;
            }
        }
        if self.limit > 0 && self.sent >= self.limit {
            Flow::Full
        } else {
            Flow::Continue
        }
    }

    /// Sends the pending batch; `false` when the client is gone.
    async fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let series = std::mem::take(&mut self.pending);
        let frame = SeriesResponse {
            result: Some(series_response::Result::Batch(thanos::SeriesBatch {
                series,
            })),
        };
        self.sender.send(Ok(frame)).await.is_ok()
    }
}

/// The series to send: `series` with the chunks of the equal series of other blocks (`more`)
/// appended in one allocation, sorted and without duplicates when there were any.
fn finish(series: BlockSeries, more: Vec<Vec<thanos::AggrChunk>>) -> thanos::Series {
    let mut chunks = series.chunks;
    if !more.is_empty() {
        chunks.reserve_exact(more.iter().map(Vec::len).sum());
        for other in more {
            chunks.extend(other);
        }
        sort_chunks(&mut chunks);
        chunks.dedup();
    }
    thanos::Series {
        labels: series.labels,
        chunks,
    }
}

/// Merges the blocks' streams into frames sent to `sender`: `limit` series at most (0 = all),
/// `batch_size` per frame when above 1. Returns the number of series sent, or `None` when the
/// client went away; a block's error ends the merge.
pub(crate) async fn merge_blocks(
    receivers: Vec<mpsc::Receiver<BlockBatch>>,
    sender: &FrameSender,
    limit: usize,
    batch_size: usize,
) -> Result<Option<usize>> {
    let mut sources: Vec<Source> = receivers
        .into_iter()
        .map(|receiver| Source {
            receiver,
            queue: VecDeque::new(),
        })
        .collect();
    let mut heap = BinaryHeap::with_capacity(sources.len());
    for (index, source) in sources.iter_mut().enumerate() {
        if let Some(series) = source.next().await? {
            heap.push(Head {
                series,
                source: index,
            });
        }
    }
    let mut framer = Framer {
        sender,
        batch_size,
        limit,
        pending: Vec::new(),
        sent: 0,
    };
    // The series being joined, and the chunk lists of the equal series of other blocks (joined
    // once at the end: growing one list block by block would copy it again at every doubling).
    let mut current: Option<(BlockSeries, Vec<Vec<thanos::AggrChunk>>)> = None;
    while let Some(Head { series, source }) = heap.pop() {
        if let Some(next) = sources[source].next().await? {
            heap.push(Head {
                series: next,
                source,
            });
        }
        match &mut current {
            Some((same, more))
                if same.labels == series.labels && same.identity() == series.identity() =>
            {
                more.push(series.chunks);
            }
            _ => {
                if let Some((done, more)) = current.replace((series, Vec::new())) {
                    match framer.push(finish(done, more)).await {
                        Flow::Continue => {}
                        Flow::Full => break,
                        Flow::Gone => return Ok(None),
                    }
                }
            }
        }
    }
    if let Some((done, more)) = current.take()
        && (limit == 0 || framer.sent < limit)
        && framer.push(finish(done, more)).await == Flow::Gone
    {
        return Ok(None);
    }
    if !framer.flush().await {
        return Ok(None);
    }
    Ok(Some(framer.sent))
}
