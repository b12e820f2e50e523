//! One block's part of a streamed `Series` call: postings once, then series entries and chunks
//! in bounded batches (each batch one coalesced read of series entries and one per chunk
//! segment), sent in label order through a bounded channel. A full channel stops the fetching,
//! so memory stays bounded by the batch size whatever the number of series selected.
//!
//! **Order.** The index lists series sorted by their own labels. Adding the block's external
//! labels keeps that order except where a series' labels are a proper prefix of the next
//! series' labels and the next label's name sorts before the largest external label name: then
//! the shorter series comes after its extensions (`{a="1"}` vs `{a="1",b="2"}` with external
//! `c`: `{a="1",c=..}` sorts after `{a="1",b="2",c=..}`). [`Reorder`] holds such a series back
//! until its extensions have passed, which needs at most one held series per label. When a
//! series may carry a label named like an external label or a removed replica label (the
//! index-header lists the name), the block's selection is sorted in memory instead, as Thanos
//! does for such blocks.

use std::cmp::Ordering;
use std::sync::Arc;

use prom_model::Labels;
use storeapi::convert::{compare_labels, labels_into_proto, labels_to_proto};
use storeapi::proto::thanos::{self, Aggr};
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};

use super::aggr::wire_chunk;
use super::bounds::SelectedChunk;
use super::{Block, BlockQuery, Reads, SelectedSeries};
use crate::cache::IndexCache;
use crate::error::{Error, Result};
use crate::header::IndexHeader;
use crate::limits::Limiter;
use crate::shard::ShardMatcher;

/// Series entries fetched, and series whose chunks are fetched, per batch.
pub(crate) const SERIES_BATCH: usize = 512;

/// What every block of one `Series` call shares.
#[derive(Debug)]
pub(crate) struct SeriesContext {
    pub(crate) query: BlockQuery,
    pub(crate) cache: Arc<dyn IndexCache>,
    pub(crate) limiter: Limiter,
    /// Label names dropped from every series (the requested replica labels).
    pub(crate) removed: Vec<String>,
    pub(crate) shard: Option<ShardMatcher>,
    /// The aggregate parts to fill for chunks of downsampled blocks.
    pub(crate) aggregates: Vec<Aggr>,
    /// Bounds the bucket reads of the call in flight at once.
    pub(crate) fetches: Semaphore,
}

impl SeriesContext {
    /// The call's index reads: its cache, counted by its limiter.
    pub(crate) fn reads(&self) -> Reads<'_> {
        Reads {
            cache: self.cache.as_ref(),
            limiter: &self.limiter,
        }
    }
}

/// A series of one block, ready to send.
#[derive(Debug)]
pub(crate) struct BlockSeries {
    /// The labels sent: index labels, external labels, minus removed labels.
    pub(crate) labels: Vec<thanos::Label>,
    /// The labels before removed labels were dropped, when one was: series of different blocks
    /// are one series only when these are equal too.
    pub(crate) identity: Option<Vec<thanos::Label>>,
    pub(crate) chunks: Vec<thanos::AggrChunk>,
}

impl BlockSeries {
    /// The labels that tell series apart (before removed labels were dropped).
    pub(crate) fn identity(&self) -> &[thanos::Label] {
        self.identity.as_deref().unwrap_or(&self.labels)
    }
}

/// Sending order across blocks: labels, then identity.
pub(crate) fn compare_series(
    left_labels: &[thanos::Label],
    left_identity: &[thanos::Label],
    right_labels: &[thanos::Label],
    right_identity: &[thanos::Label],
) -> Ordering {
    compare_labels(left_labels, right_labels)
        .then_with(|| compare_labels(left_identity, right_identity))
}

/// One batch of a block's series, or the error that ends the block's stream.
pub(crate) type BlockBatch = Result<Vec<BlockSeries>>;

/// A selected series with its labels as sent, before its chunks are loaded.
struct Pending {
    labels: Vec<thanos::Label>,
    identity: Option<Vec<thanos::Label>>,
    chunks: Vec<SelectedChunk>,
}

impl Pending {
    fn identity(&self) -> &[thanos::Label] {
        self.identity.as_deref().unwrap_or(&self.labels)
    }
}

/// Whether `series` (index labels) extends `shorter` with a next label whose name sorts before
/// `max_external`.
fn is_low_extension(series: &Labels, shorter: &Labels, max_external: &str) -> bool {
    series.len() > shorter.len()
        && series.as_slice()[..shorter.len()] == *shorter.as_slice()
        && series.as_slice()[shorter.len()].name.as_str() < max_external
}

/// Turns index order into the order of labels with the external labels added; see the
/// [module docs](self).
#[derive(Debug)]
struct Reorder {
    max_external: String,
    held: Vec<SelectedSeries>,
}

impl Reorder {
    fn new(max_external: String) -> Self {
        Self {
            max_external,
            held: Vec::new(),
        }
    }

    /// Takes the next series in index order; moves those now in place to `ready`.
    fn push(&mut self, next: SelectedSeries, ready: &mut Vec<SelectedSeries>) {
        while let Some(top) = self.held.last() {
            if is_low_extension(&next.labels, &top.labels, &self.max_external) {
                break;
            }
            ready.extend(self.held.pop());
        }
        self.held.push(next);
    }

    /// Moves every held series to `ready`.
    fn finish(&mut self, ready: &mut Vec<SelectedSeries>) {
        while let Some(series) = self.held.pop() {
            ready.push(series);
        }
    }
}

async fn fetch_permit(fetches: &Semaphore) -> Result<SemaphorePermit<'_>> {
    fetches
        .acquire()
        .await
        .map_err(|_| Error::Internal("series fetch limiter closed".to_owned()))
}

impl Block {
    /// Sends this block's series matching `context.query` to `sender` in batches, in label
    /// order; an error ends the stream as its last item. Returns early when the receiver is
    /// gone.
    pub(crate) async fn stream_series(
        self: Arc<Self>,
        context: Arc<SeriesContext>,
        sender: mpsc::Sender<BlockBatch>,
    ) {
        if let Err(error) = self.produce(&context, &sender).await {
            let _ = sender.send(Err(error)).await;
        }
    }

    /// Whether a series of this block may carry a label named like an external or a removed
    /// label, so that index order says nothing about the order sent.
    fn needs_sort(&self, header: &IndexHeader, removed: &[String]) -> bool {
        self.external
            .iter()
            .map(|label| label.name.as_str())
            .chain(removed.iter().map(String::as_str))
            .any(|name| header.has_label_name(name))
    }

    async fn produce(
        &self,
        context: &SeriesContext,
        sender: &mpsc::Sender<BlockBatch>,
    ) -> Result<()> {
        let query = &context.query;
        let Some(matchers) = self.index_matchers(&query.matchers) else {
            return Ok(());
        };
        if self.meta.max_time <= query.min_time || self.meta.min_time > query.max_time {
            return Ok(());
        }
        let header = self.header().await?;
        let refs = {
            let _permit = fetch_permit(&context.fetches).await?;
            self.postings(&header, &matchers, context.reads()).await?
        };
        if refs.is_empty() {
            return Ok(());
        }
        let needs_sort = self.needs_sort(&header, &context.removed);
        let max_external = self
            .external
            .iter()
            .filter(|label| !context.removed.contains(&label.name))
            .map(|label| label.name.clone())
            .next_back()
            .unwrap_or_default();
        let mut reorder = Reorder::new(max_external);
        let mut sorted_later: Vec<Pending> = Vec::new();
        let mut last: Option<(Vec<thanos::Label>, Vec<thanos::Label>)> = None;
        let mut symbols = header.symbol_memo();
        let estimate = self.chunk_size_estimate();
        let batches = refs.chunks(SERIES_BATCH);
        let batch_count = batches.len();
        for (batch_index, batch) in batches.enumerate() {
            let entries = {
                let _permit = fetch_permit(&context.fetches).await?;
                self.fetch_series(&header, batch, context.reads()).await?
            };
            let mut ready = Vec::with_capacity(entries.len());
            for entry in &entries {
                let (labels, chunks) = self.decode_entry(&mut symbols, entry)?;
                let chunks = query.chunks_in_range(chunks, estimate);
                if chunks.is_empty() {
                    continue;
                }
                let series = SelectedSeries { labels, chunks };
                if needs_sort {
                    sorted_later.push(self.pending(series, &context.removed));
                } else {
                    reorder.push(series, &mut ready);
                }
            }
            drop(entries);
            if batch_index + 1 == batch_count {
                reorder.finish(&mut ready);
            }
            let pending: Vec<Pending> = ready
                .into_iter()
                .map(|series| self.pending(series, &context.removed))
                .collect();
            if !self.send(pending, context, sender, &mut last).await? {
                return Ok(());
            }
        }
        if needs_sort {
            sorted_later.sort_by(|left, right| {
                compare_series(
                    &left.labels,
                    left.identity(),
                    &right.labels,
                    right.identity(),
                )
            });
            let mut rest = sorted_later.into_iter().peekable();
            while rest.peek().is_some() {
                let batch: Vec<Pending> = rest.by_ref().take(SERIES_BATCH).collect();
                if !self.send(batch, context, sender, &mut last).await? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The labels as sent: external labels added (they win), removed labels dropped.
    fn pending(&self, series: SelectedSeries, removed: &[String]) -> Pending {
        let mut labels = series.labels;
        for label in &self.external {
            labels.set(label.name.clone(), label.value.clone());
        }
        let identity = if removed.iter().any(|name| labels.get(name).is_some()) {
            let identity = labels_to_proto(&labels);
            for name in removed {
                labels.remove(name);
            }
            Some(identity)
        } else {
            None
        };
        Pending {
            labels: labels_into_proto(labels),
            identity,
            chunks: series.chunks,
        }
    }

    /// Filters a batch by shard, counts it against the limits, loads its chunks and sends it.
    /// `false` when the receiver is gone.
    async fn send(
        &self,
        pending: Vec<Pending>,
        context: &SeriesContext,
        sender: &mpsc::Sender<BlockBatch>,
        last: &mut Option<(Vec<thanos::Label>, Vec<thanos::Label>)>,
    ) -> Result<bool> {
        let kept: Vec<Pending> = match &context.shard {
            Some(shard) => pending
                .into_iter()
                .filter(|series| shard.matches(&series.labels))
                .collect(),
            None => pending,
        };
        let Some(tail) = kept.last() else {
            return Ok(true);
        };
        let previous = last.as_ref().map(|(labels, identity)| (labels, identity));
        let in_order = previous
            .into_iter()
            .map(|(labels, identity)| (labels.as_slice(), identity.as_slice()))
            .chain(
                kept.iter()
                    .map(|series| (series.labels.as_slice(), series.identity())),
            )
            .collect::<Vec<_>>()
            .windows(2)
            .all(|pair| compare_series(pair[0].0, pair[0].1, pair[1].0, pair[1].1).is_lt());
        if !in_order {
            return Err(Error::Internal(format!(
                "block {}: series not in label order",
                self.id
            )));
        }
        *last = Some((tail.labels.clone(), tail.identity().to_vec()));
        context.limiter.add_series(kept.len() as u64)?;
        let chunk_count: usize = kept.iter().map(|series| series.chunks.len()).sum();
        context.limiter.add_chunks(chunk_count as u64)?;
        let loaded = if context.query.skip_chunks {
            Default::default()
        } else {
            let selected: Vec<SelectedChunk> = kept
                .iter()
                .flat_map(|series| series.chunks.iter().copied())
                .collect();
            let _permit = fetch_permit(&context.fetches).await?;
            self.load_chunks(&selected, &context.limiter).await?
        };
        let mut batch = Vec::with_capacity(kept.len());
        for series in kept {
            let mut chunks = Vec::new();
            if !context.query.skip_chunks {
                chunks.reserve_exact(series.chunks.len());
                for SelectedChunk { meta, .. } in &series.chunks {
                    let Some(stored) = loaded.get(&meta.chunk_ref) else {
                        return Err(Error::Internal(format!(
                            "block {}: chunk {} was not loaded",
                            self.id, meta.chunk_ref
                        )));
                    };
                    chunks.push(wire_chunk(
                        self.id,
                        meta.min_time,
                        meta.max_time,
                        stored,
                        &context.aggregates,
                    )?);
                }
            }
            batch.push(BlockSeries {
                labels: series.labels,
                identity: series.identity,
                chunks,
            });
        }
        Ok(sender.send(Ok(batch)).await.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().map(|(name, value)| (*name, *value)))
    }

    fn with_external(series: &Labels, external: &[(&str, &str)]) -> Labels {
        let mut full = series.clone();
        for (name, value) in external {
            full.set(*name, *value);
        }
        full
    }

    /// Every series in index order through [`Reorder`] comes out sorted by its labels with the
    /// external labels added, for several external label sets.
    #[test]
    fn reorder_sorts_by_labels_with_external_labels() {
        let mut index = vec![
            labels(&[("__name__", "up")]),
            labels(&[("__name__", "up"), ("instance", "a")]),
            labels(&[("__name__", "up"), ("instance", "a"), ("job", "x")]),
            labels(&[("__name__", "up"), ("instance", "a"), ("zone", "z")]),
            labels(&[("__name__", "up"), ("instance", "b")]),
            labels(&[("__name__", "up"), ("job", "x")]),
            labels(&[("__name__", "up"), ("zz", "1")]),
            labels(&[("__name__", "upper")]),
            labels(&[("__name__", "upper"), ("a", "1"), ("b", "2")]),
            labels(&[("a", "1")]),
            labels(&[("a", "1"), ("b", "1")]),
            labels(&[("a", "1"), ("b", "1"), ("c", "1")]),
            labels(&[("a", "1"), ("c", "1")]),
        ];
        index.sort();
        let external_sets: [&[(&str, &str)]; 5] = [
            &[],
            &[("replica", "r")],
            &[("cluster", "c"), ("replica", "r")],
            &[("b0", "e")],
            &[("zzz", "e"), ("aa", "e")],
        ];
        for external in external_sets {
            let max_external = external
                .iter()
                .map(|(name, _)| (*name).to_owned())
                .max()
                .unwrap_or_default();
            let mut reorder = Reorder::new(max_external);
            let mut ready = Vec::new();
            for series in &index {
                reorder.push(
                    SelectedSeries {
                        labels: series.clone(),
                        chunks: Vec::new(),
                    },
                    &mut ready,
                );
            }
            reorder.finish(&mut ready);
            let got: Vec<Labels> = ready
                .iter()
                .map(|series| with_external(&series.labels, external))
                .collect();
            let mut expected: Vec<Labels> = index
                .iter()
                .map(|series| with_external(series, external))
                .collect();
            expected.sort();
            assert_eq!(got, expected, "external labels {external:?}");
        }
    }
}
