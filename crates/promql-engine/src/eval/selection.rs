//! Selector data: selected from the [`Queryable`] once per query, decoded only when and as far
//! as it is read.
//!
//! A selector read once ([`SelectPlan::single_pass`]: not inside a subquery, whose inner
//! expression is evaluated segment by segment) is read through a [`Pass`]: its series are
//! decoded one block at a time and each block is dropped once consumed, so a query holds the
//! decoded samples of one block, not of every selected series.
//!
//! **Streamed selections.** When the store streams in label order
//! ([`Queryable::streams_sorted`]), a selector read once with one matcher set is not selected by
//! [`Evaluator::prefetch`]: it stays deferred until its pass starts, which selects it and pulls
//! its series from the store's stream as blocks are read (adjacent repeats of a label set
//! skipped; a series out of label order fails the query). The store's work of producing the
//! series then overlaps the engine's work on the blocks already read. A reader that needs the
//! whole selection first (the label sets an aggregation counts its groups over,
//! [`Evaluator::selector_label_sets`], or [`Evaluator::materialized`]) selects a deferred
//! selection then, as prefetch would have.
//!
//! **Collected selections.** [`Evaluator::prefetch`] selects every other selector's series
//! (label sets sorted and de-duplicated across matcher sets) but keeps each series' samples as
//! the store's lazy stream. Any reader other than a pass ([`Evaluator::materialized`]) decodes
//! the whole selection once and keeps it for the query; a selection already consumed by a pass
//! is selected again for it.
//!
//! **Budget.** Label sets are reserved from the memory budget when selected (or pulled from a
//! stream); samples decoded for the whole query when decoded; a pass's blocks as the most bytes
//! of blocks held at once, counted series by series as a block is decoded (so a refused query
//! stops one series over its share, not a block over it).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;

use prom_model::{Labels, Matcher};

use super::{Evaluator, LoadedSeries};
use crate::budget::labels_bytes;
use crate::error::{Error, Result};
use crate::plan::Selector;
use crate::storage::{Queryable, SampleStream, SelectHints, SelectedSeries, SeriesStream};
use crate::value::Point;

/// How a selector's series are selected, kept to select them again.
#[derive(Debug, Clone)]
pub(crate) struct SelectPlan {
    /// The selector's matcher sets (more than one for `or`-ed matchers).
    pub(crate) matcher_sets: Vec<Vec<Matcher>>,
    /// The time range and context handed to the store.
    pub(crate) hints: SelectHints,
    /// Whether the batch evaluator reads the selector once, so its samples need not be kept.
    pub(crate) single_pass: bool,
}

impl SelectPlan {
    /// Whether a pass may read the selection as the store streams it (read once, one matcher
    /// set: no merge across streams).
    fn streamable(&self) -> bool {
        self.single_pass && self.matcher_sets.len() == 1
    }
}

/// The state of one selector's data.
enum Data<'a> {
    /// Not selected yet: selected when a pass starts and read as the store streams it.
    Deferred,
    /// Selected, samples not decoded; in label order.
    Pending(Vec<SelectedSeries<'a>>),
    /// Decoded for the whole query.
    Loaded(Rc<Vec<LoadedSeries>>),
    /// Handed to a [`Pass`]; selected again if read again.
    Taken,
}

/// One selector's plan and data.
struct Entry<'a> {
    plan: SelectPlan,
    data: Data<'a>,
}

/// The selections of a query, indexed by [`Selector::id`].
#[derive(Default)]
pub(crate) struct Selections<'a> {
    entries: RefCell<Vec<Option<Entry<'a>>>>,
    /// Bytes of decoded pass blocks held now, and the most held at once (what is reserved).
    blocks: Cell<(usize, usize)>,
}

impl Selections<'_> {
    /// Makes room for the selections of `selectors` selectors.
    pub(super) fn reserve(&self, selectors: usize) {
        let mut entries = self.entries.borrow_mut();
        if entries.len() < selectors {
            entries.resize_with(selectors, || None);
        }
    }
}

/// One read of a selector's series in order, block by block ([`Evaluator::next_block`]).
pub(crate) struct Pass<'a> {
    source: PassSource<'a>,
}

enum PassSource<'a> {
    /// Decoded for the query already: blocks are ranges of it.
    Loaded(Rc<Vec<LoadedSeries>>, usize),
    /// Decoded block by block as the pass goes.
    Lazy(std::vec::IntoIter<SelectedSeries<'a>>),
    /// Pulled from the store's stream and decoded block by block as the pass goes.
    Stream(Box<StreamPass<'a>>),
}

/// A pass over a selection as the store streams it.
struct StreamPass<'a> {
    series: std::iter::Fuse<SeriesStream<'a>>,
    /// The labels of the last series of the previous block, to check the order against.
    last: Option<Labels>,
    /// The selector's matchers, to name it in an error.
    matchers: Vec<Matcher>,
}

/// Consecutive series of a [`Pass`]; give it back with [`Evaluator::drop_block`].
pub(crate) struct Block {
    series: BlockSeries,
    /// Bytes decoded for this block alone.
    bytes: usize,
}

enum BlockSeries {
    Shared(Rc<Vec<LoadedSeries>>, Range<usize>),
    Owned(Vec<LoadedSeries>),
}

impl Block {
    /// The block's series, in label order.
    pub(crate) fn series(&self) -> &[LoadedSeries] {
        match &self.series {
            BlockSeries::Shared(all, range) => all.get(range.clone()).unwrap_or_default(),
            BlockSeries::Owned(series) => series,
        }
    }
}

impl<'a> Evaluator<'a> {
    /// Selects the series of `selector` (samples not decoded), or defers it to its pass when
    /// the pass can read it as the store streams it, and records how.
    pub(super) fn select_pending(&mut self, selector: &Selector, plan: SelectPlan) -> Result<()> {
        let data = if plan.streamable() && self.storage.streams_sorted() {
            Data::Deferred
        } else {
            Data::Pending(self.select_series(&plan)?)
        };
        self.selections.reserve(selector.id + 1);
        if let Some(slot) = self.selections.entries.borrow_mut().get_mut(selector.id) {
            *slot = Some(Entry { plan, data });
        }
        Ok(())
    }

    /// The series matching any of the plan's matcher sets, in label order, each once (the
    /// first matcher set's wins); their label sets are reserved from the budget.
    fn select_series(&self, plan: &SelectPlan) -> Result<Vec<SelectedSeries<'a>>> {
        let mut by_labels: BTreeMap<Labels, SelectedSeries<'a>> = BTreeMap::new();
        let mut sorted: Vec<SelectedSeries<'a>> = Vec::new();
        // One matcher set streamed in label order (as stores stream) needs no map.
        let mut ordered = plan.matcher_sets.len() == 1;
        for matchers in &plan.matcher_sets {
            let stream = self.storage.select(matchers, &plan.hints)?;
            for series in stream {
                self.check_interrupt("query preparation")?;
                let series = series?;
                if ordered {
                    match sorted.last() {
                        Some(last) if last.labels == series.labels => continue,
                        Some(last) if last.labels > series.labels => {
                            // Out of order: sort through the map from here on.
                            ordered = false;
                            by_labels.extend(sorted.drain(..).map(|s| (s.labels.clone(), s)));
                        }
                        _ => {
                            self.reservation.grow(labels_bytes(&series.labels))?;
                            sorted.push(series);
                            continue;
                        }
                    }
                }
                if !by_labels.contains_key(&series.labels) {
                    self.reservation.grow(labels_bytes(&series.labels))?;
                    by_labels.insert(series.labels.clone(), series);
                }
            }
        }
        if ordered {
            return Ok(sorted);
        }
        Ok(by_labels.into_values().collect())
    }

    /// Decodes one selected series: points in time order, start timestamps aligned.
    fn decode(&self, series: SelectedSeries<'a>) -> Result<(LoadedSeries, usize)> {
        let points = decode_points(series.samples)?;
        let start_timestamps: Option<Vec<i64>> = series.start_timestamps.map(|known| {
            points
                .iter()
                .map(|p| known.get(&p.t).copied().unwrap_or(0))
                .collect()
        });
        let bytes = points.len().saturating_mul(std::mem::size_of::<Point>())
            + start_timestamps.as_ref().map_or(0, |sts| sts.len() * 8);
        Ok((
            LoadedSeries {
                labels: series.labels,
                points,
                start_timestamps,
            },
            bytes,
        ))
    }

    /// The decoded series of `selector` for the whole query (decoded on first use, selected
    /// again if a pass consumed them).
    pub(crate) fn materialized(&self, selector: &Selector) -> Result<Rc<Vec<LoadedSeries>>> {
        let key = selector.id;
        let (pending, plan) = {
            let mut entries = self.selections.entries.borrow_mut();
            let Some(entry) = entries.get_mut(key).and_then(Option::as_mut) else {
                return Err(Error::exec("selector evaluated without prefetched data"));
            };
            match std::mem::replace(&mut entry.data, Data::Taken) {
                Data::Loaded(loaded) => {
                    entry.data = Data::Loaded(Rc::clone(&loaded));
                    return Ok(loaded);
                }
                Data::Pending(series) => (Some(series), entry.plan.clone()),
                Data::Deferred | Data::Taken => (None, entry.plan.clone()),
            }
        };
        let pending = match pending {
            Some(series) => series,
            None => self.select_series(&plan)?,
        };
        let mut loaded = Vec::with_capacity(pending.len());
        for series in pending {
            self.check_interrupt("query preparation")?;
            let (series, bytes) = self.decode(series)?;
            self.reservation.grow(bytes)?;
            loaded.push(series);
        }
        let loaded = Rc::new(loaded);
        if let Some(entry) = self
            .selections
            .entries
            .borrow_mut()
            .get_mut(key)
            .and_then(Option::as_mut)
        {
            entry.data = Data::Loaded(Rc::clone(&loaded));
        }
        Ok(loaded)
    }

    /// Starts a read of `selector`'s series in label order: lazily decoded when the selector is
    /// read once and not decoded yet (selected now and read as the store streams it when
    /// deferred), else over the data decoded for the query.
    pub(crate) fn pass(&self, selector: &Selector) -> Result<Pass<'a>> {
        let deferred = {
            let mut entries = self.selections.entries.borrow_mut();
            match entries.get_mut(selector.id).and_then(Option::as_mut) {
                Some(entry) if entry.plan.single_pass => {
                    match std::mem::replace(&mut entry.data, Data::Taken) {
                        Data::Pending(series) => {
                            return Ok(Pass {
                                source: PassSource::Lazy(series.into_iter()),
                            });
                        }
                        Data::Deferred => Some(entry.plan.clone()),
                        other => {
                            entry.data = other;
                            None
                        }
                    }
                }
                _ => None,
            }
        };
        if let Some(plan) = deferred {
            return self.stream_pass(plan);
        }
        Ok(Pass {
            source: PassSource::Loaded(self.materialized(selector)?, 0),
        })
    }

    /// A pass over a deferred selection: selects it now, to be read as the store streams it.
    fn stream_pass(&self, plan: SelectPlan) -> Result<Pass<'a>> {
        let storage: &'a dyn Queryable = self.storage;
        let matchers = plan.matcher_sets.into_iter().next().unwrap_or_default();
        let series = storage.select(&matchers, &plan.hints)?;
        Ok(Pass {
            source: PassSource::Stream(Box::new(StreamPass {
                series: series.fuse(),
                last: None,
                matchers,
            })),
        })
    }

    /// Pulls the series of the next block of `stream` into `block` (up to `max`), decoding and
    /// charging each as it comes; `bytes` counts the bytes held for the block so far.
    fn pull_block(
        &self,
        stream: &mut StreamPass<'a>,
        max: usize,
        block: &mut Vec<LoadedSeries>,
        bytes: &mut usize,
    ) -> Result<()> {
        while block.len() < max {
            self.check_interrupt("query execution")?;
            let Some(series) = stream.series.next() else {
                break;
            };
            let series = series?;
            let previous = block
                .last()
                .map(|last| &last.labels)
                .or(stream.last.as_ref());
            match previous {
                Some(previous) if *previous == series.labels => continue,
                Some(previous) if *previous > series.labels => {
                    return Err(Error::exec(format!(
                        "store returned series out of label order for selector {{{}}}: {} after {}",
                        stream
                            .matchers
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        series.labels,
                        previous
                    )));
                }
                _ => {}
            }
            self.reservation.grow(labels_bytes(&series.labels))?;
            let (one, size) = self.decode(series)?;
            self.hold_block_bytes(size)?;
            *bytes = bytes.saturating_add(size);
            block.push(one);
        }
        if let Some(last) = block.last() {
            stream.last = Some(last.labels.clone());
        }
        Ok(())
    }

    /// The next block of at most `max` series of `pass` (`None` once it is done). Decoded
    /// bytes count against the memory budget as long as the block is held.
    pub(crate) fn next_block(&self, pass: &mut Pass<'a>, max: usize) -> Result<Option<Block>> {
        match &mut pass.source {
            PassSource::Stream(stream) => {
                let mut block = Vec::new();
                let mut bytes = 0usize;
                if let Err(error) = self.pull_block(stream, max.max(1), &mut block, &mut bytes) {
                    self.release_block_bytes(bytes);
                    return Err(error);
                }
                if block.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Block {
                    series: BlockSeries::Owned(block),
                    bytes,
                }))
            }
            PassSource::Loaded(all, next) => {
                if *next >= all.len() {
                    return Ok(None);
                }
                let end = next.saturating_add(max.max(1)).min(all.len());
                let range = *next..end;
                *next = end;
                Ok(Some(Block {
                    series: BlockSeries::Shared(Rc::clone(all), range),
                    bytes: 0,
                }))
            }
            PassSource::Lazy(series) => {
                let mut block = Vec::new();
                let mut bytes = 0usize;
                for one in series.by_ref().take(max.max(1)) {
                    // Each series is charged as soon as it is decoded, not once the block is
                    // complete: a query refused by the budget then stops one series over it
                    // instead of a whole block over it.
                    let decoded = self
                        .check_interrupt("query execution")
                        .and_then(|()| self.decode(one))
                        .and_then(|(one, size)| {
                            self.hold_block_bytes(size)?;
                            Ok((one, size))
                        });
                    let (one, size) = match decoded {
                        Ok(decoded) => decoded,
                        Err(error) => {
                            self.release_block_bytes(bytes);
                            return Err(error);
                        }
                    };
                    bytes = bytes.saturating_add(size);
                    block.push(one);
                }
                if block.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Block {
                    series: BlockSeries::Owned(block),
                    bytes,
                }))
            }
        }
    }

    /// Counts `bytes` more of decoded pass blocks as held, reserving a new peak from the
    /// budget (nothing counted when the reservation fails).
    fn hold_block_bytes(&self, bytes: usize) -> Result<()> {
        let (held, peak) = self.selections.blocks.get();
        let held = held.saturating_add(bytes);
        if held > peak {
            self.reservation.grow(held - peak)?;
        }
        self.selections.blocks.set((held, held.max(peak)));
        Ok(())
    }

    /// Stops counting `bytes` of decoded pass blocks as held.
    fn release_block_bytes(&self, bytes: usize) {
        let (held, peak) = self.selections.blocks.get();
        self.selections
            .blocks
            .set((held.saturating_sub(bytes), peak));
    }

    /// Frees a block of a [`Pass`].
    pub(crate) fn drop_block(&self, block: Block) {
        self.release_block_bytes(block.bytes);
    }

    /// Calls `each` with the label set of every series of `selector`, in order, without
    /// decoding samples (a deferred selection is selected now); false (nothing called) when a
    /// pass has consumed the selection.
    pub(crate) fn selector_label_sets(
        &self,
        selector: &Selector,
        each: &mut dyn FnMut(&Labels),
    ) -> Result<bool> {
        let deferred = self
            .selections
            .entries
            .borrow()
            .get(selector.id)
            .and_then(Option::as_ref)
            .filter(|entry| matches!(entry.data, Data::Deferred))
            .map(|entry| entry.plan.clone());
        if let Some(plan) = deferred {
            let series = self.select_series(&plan)?;
            if let Some(entry) = self
                .selections
                .entries
                .borrow_mut()
                .get_mut(selector.id)
                .and_then(Option::as_mut)
            {
                entry.data = Data::Pending(series);
            }
        }
        let entries = self.selections.entries.borrow();
        let Some(entry) = entries.get(selector.id).and_then(Option::as_ref) else {
            return Err(Error::exec("selector evaluated without prefetched data"));
        };
        match &entry.data {
            Data::Pending(series) => series.iter().for_each(|series| each(&series.labels)),
            Data::Loaded(series) => series.iter().for_each(|series| each(&series.labels)),
            Data::Deferred | Data::Taken => return Ok(false),
        }
        Ok(true)
    }

    /// Most samples held at once so far (for tests).
    #[cfg(test)]
    pub(crate) fn samples_peak(&self) -> usize {
        self.peak_held
    }

    /// Bytes of decoded pass blocks held now, and the most held at once (for tests).
    #[cfg(test)]
    pub(crate) fn block_bytes_held(&self) -> (usize, usize) {
        self.selections.blocks.get()
    }
}

/// A series' samples as points in time order. Sources should stream in time order; the samples
/// of one that does not are sorted and a repeated timestamp kept once.
pub(crate) fn decode_points(samples: SampleStream<'_>) -> Result<Vec<Point>> {
    // Sized once when the source knows its length (no regrowth, no slack).
    let mut points = Vec::with_capacity(samples.size_hint().0);
    for sample in samples {
        let sample = sample?;
        points.push(Point {
            t: sample.t,
            v: sample.v,
        });
    }
    if !points.is_sorted_by_key(|p| p.t) {
        points.sort_by_key(|p| p.t);
        points.dedup_by_key(|p| p.t);
    }
    Ok(points)
}
