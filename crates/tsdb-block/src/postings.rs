//! Postings: ascending lists of series references, and the iterators that combine them.
//!
//! A [`Postings`] is a cursor over strictly increasing [`SeriesRef`]s. [`intersect`], [`merge`] and
//! [`without`] combine cursors lazily, seeking rather than scanning where they can, as Prometheus'
//! postings iterators do; [`ListPostings`] reads an on-disk list (big-endian `u32` references) in
//! place without copying it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A series reference: in index format v2, the series entry's byte offset divided by 16.
pub type SeriesRef = u64;

/// A cursor over strictly increasing series references.
pub trait Postings {
    /// Moves to the next reference and returns it; `None` once exhausted.
    fn next(&mut self) -> Option<SeriesRef>;

    /// Moves to the first reference `>= target` and returns it. Stays put when the current
    /// reference already satisfies that; never moves backwards.
    fn seek(&mut self, target: SeriesRef) -> Option<SeriesRef>;
}

/// Boxed postings of any kind.
pub type BoxPostings<'a> = Box<dyn Postings + Send + 'a>;

/// Drains `postings` into a vector.
pub fn collect(mut postings: impl Postings) -> Vec<SeriesRef> {
    let mut refs = Vec::new();
    while let Some(series) = postings.next() {
        refs.push(series);
    }
    refs
}

impl<P: Postings + ?Sized> Postings for Box<P> {
    fn next(&mut self) -> Option<SeriesRef> {
        (**self).next()
    }

    fn seek(&mut self, target: SeriesRef) -> Option<SeriesRef> {
        (**self).seek(target)
    }
}

/// Postings with no references.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyPostings;

impl Postings for EmptyPostings {
    fn next(&mut self) -> Option<SeriesRef> {
        None
    }

    fn seek(&mut self, _target: SeriesRef) -> Option<SeriesRef> {
        None
    }
}

/// A sorted slice of references stored as big-endian `u32`s, read in place.
#[derive(Debug, Clone)]
pub struct ListPostings<'a> {
    bytes: &'a [u8],
    next_index: usize,
    current: Option<SeriesRef>,
}

impl<'a> ListPostings<'a> {
    /// Postings over `bytes`, whose length must be a multiple of 4 (extra bytes are ignored).
    pub fn new(bytes: &'a [u8]) -> Self {
        let whole = bytes.len() / 4 * 4;
        Self {
            bytes: &bytes[..whole],
            next_index: 0,
            current: None,
        }
    }

    /// How many references the list holds.
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn at(&self, index: usize) -> SeriesRef {
        let start = index * 4;
        let word = &self.bytes[start..start + 4];
        u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
    }
}

impl Postings for ListPostings<'_> {
    fn next(&mut self) -> Option<SeriesRef> {
        if self.next_index >= self.len() {
            self.current = None;
            self.next_index = self.len() + 1;
            return None;
        }
        let value = self.at(self.next_index);
        self.next_index += 1;
        self.current = Some(value);
        self.current
    }

    fn seek(&mut self, target: SeriesRef) -> Option<SeriesRef> {
        if let Some(current) = self.current
            && current >= target
        {
            return Some(current);
        }
        if self.next_index >= self.len() {
            return self.next();
        }
        // Binary search among the references not yet visited.
        let mut low = self.next_index;
        let mut high = self.len();
        while low < high {
            let middle = low + (high - low) / 2;
            if self.at(middle) < target {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        self.next_index = low;
        self.next()
    }
}

/// A sorted vector of references.
#[derive(Debug, Clone, Default)]
pub struct VecPostings {
    refs: Vec<SeriesRef>,
    next_index: usize,
    current: Option<SeriesRef>,
}

impl VecPostings {
    /// Postings over `refs`, which must be strictly increasing (checked in debug builds).
    pub fn new(refs: Vec<SeriesRef>) -> Self {
        debug_assert!(refs.windows(2).all(|pair| pair[0] < pair[1]));
        Self {
            refs,
            next_index: 0,
            current: None,
        }
    }
}

impl Postings for VecPostings {
    fn next(&mut self) -> Option<SeriesRef> {
        self.current = self.refs.get(self.next_index).copied();
        self.next_index = (self.next_index + 1).min(self.refs.len() + 1);
        self.current
    }

    fn seek(&mut self, target: SeriesRef) -> Option<SeriesRef> {
        if let Some(current) = self.current
            && current >= target
        {
            return Some(current);
        }
        let rest = self.refs.get(self.next_index..).unwrap_or(&[]);
        self.next_index += rest.partition_point(|value| *value < target);
        self.next()
    }
}

/// The references present in every one of `lists`; empty when `lists` is empty.
pub fn intersect<'a>(mut lists: Vec<BoxPostings<'a>>) -> BoxPostings<'a> {
    match lists.len() {
        0 => Box::new(EmptyPostings),
        1 => lists.remove(0),
        _ => Box::new(Intersect {
            lists,
            current: None,
        }),
    }
}

struct Intersect<'a> {
    lists: Vec<BoxPostings<'a>>,
    current: Option<SeriesRef>,
}

impl Intersect<'_> {
    /// Seeks every list to `target` or beyond until all agree; returns the agreed reference.
    fn align(&mut self, mut target: SeriesRef) -> Option<SeriesRef> {
        'retry: loop {
            for list in &mut self.lists {
                let found = list.seek(target)?;
                if found > target {
                    target = found;
                    continue 'retry;
                }
            }
            return Some(target);
        }
    }
}

impl Postings for Intersect<'_> {
    fn next(&mut self) -> Option<SeriesRef> {
        let first = self.lists.first_mut()?.next();
        self.current = first.and_then(|target| self.align(target));
        self.current
    }

    fn seek(&mut self, target: SeriesRef) -> Option<SeriesRef> {
        if let Some(current) = self.current
            && current >= target
        {
            return Some(current);
        }
        let first = self.lists.first_mut()?.seek(target);
        self.current = first.and_then(|start| self.align(start));
        self.current
    }
}

/// The references present in any of `lists`, each once.
pub fn merge<'a>(mut lists: Vec<BoxPostings<'a>>) -> BoxPostings<'a> {
    match lists.len() {
        0 => Box::new(EmptyPostings),
        1 => lists.remove(0),
        _ => Box::new(Merge {
            lists,
            heap: BinaryHeap::new(),
            started: false,
            current: None,
        }),
    }
}

struct Merge<'a> {
    lists: Vec<BoxPostings<'a>>,
    /// The current reference of every list not yet exhausted, smallest on top.
    heap: BinaryHeap<Reverse<(SeriesRef, usize)>>,
    started: bool,
    current: Option<SeriesRef>,
}

impl Merge<'_> {
    fn start(&mut self) {
        if !self.started {
            self.started = true;
            for (index, list) in self.lists.iter_mut().enumerate() {
                if let Some(value) = list.next() {
                    self.heap.push(Reverse((value, index)));
                }
            }
        }
    }

    /// Moves every list whose reference is below `bound` with `advance`, then reads the minimum.
    fn advance_below(
        &mut self,
        bound: SeriesRef,
        advance: impl Fn(&mut BoxPostings<'_>) -> Option<SeriesRef>,
    ) -> Option<SeriesRef> {
        while let Some(Reverse((value, index))) = self.heap.peek().copied() {
            if value >= bound {
                break;
            }
            self.heap.pop();
            if let Some(next) = advance(&mut self.lists[index]) {
                self.heap.push(Reverse((next, index)));
            }
        }
        self.current = self.heap.peek().map(|Reverse((value, _))| *value);
        self.current
    }
}

impl Postings for Merge<'_> {
    fn next(&mut self) -> Option<SeriesRef> {
        if !self.started {
            self.start();
            self.current = self.heap.peek().map(|Reverse((value, _))| *value);
            return self.current;
        }
        let current = self.current?;
        self.advance_below(current.saturating_add(1), |list| list.next())
    }

    fn seek(&mut self, target: SeriesRef) -> Option<SeriesRef> {
        self.start();
        if let Some(current) = self.current
            && current >= target
        {
            return Some(current);
        }
        self.advance_below(target, |list| list.seek(target))
    }
}

/// The references of `base` that are not in `remove`.
pub fn without<'a>(base: BoxPostings<'a>, remove: BoxPostings<'a>) -> BoxPostings<'a> {
    Box::new(Without { base, remove })
}

struct Without<'a> {
    base: BoxPostings<'a>,
    remove: BoxPostings<'a>,
}

impl Without<'_> {
    fn skip_removed(&mut self, mut candidate: Option<SeriesRef>) -> Option<SeriesRef> {
        while let Some(value) = candidate {
            if self.remove.seek(value) != Some(value) {
                return Some(value);
            }
            candidate = self.base.next();
        }
        None
    }
}

impl Postings for Without<'_> {
    fn next(&mut self) -> Option<SeriesRef> {
        let candidate = self.base.next();
        self.skip_removed(candidate)
    }

    fn seek(&mut self, target: SeriesRef) -> Option<SeriesRef> {
        let candidate = self.base.seek(target);
        self.skip_removed(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(refs: &[SeriesRef]) -> BoxPostings<'static> {
        Box::new(VecPostings::new(refs.to_vec()))
    }

    #[test]
    fn list_postings_next_and_seek() {
        let bytes: Vec<u8> = [2u32, 4, 8, 16]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let mut postings = ListPostings::new(&bytes);
        assert_eq!(postings.seek(3), Some(4));
        assert_eq!(postings.seek(4), Some(4));
        assert_eq!(postings.next(), Some(8));
        assert_eq!(postings.seek(17), None);
        assert_eq!(postings.next(), None);
        assert_eq!(collect(ListPostings::new(&bytes)), vec![2, 4, 8, 16]);
    }

    #[test]
    fn intersection_merge_and_difference() {
        let check = |postings: BoxPostings<'static>, expected: &[SeriesRef]| {
            assert_eq!(collect(postings), expected);
        };
        check(
            intersect(vec![
                list(&[1, 2, 3, 5, 8]),
                list(&[2, 3, 4, 8]),
                list(&[0, 3, 8, 9]),
            ]),
            &[3, 8],
        );
        check(intersect(vec![list(&[1, 2]), list(&[])]), &[]);
        check(intersect(vec![]), &[]);
        check(
            merge(vec![list(&[1, 5]), list(&[2, 5, 7]), list(&[]), list(&[0])]),
            &[0, 1, 2, 5, 7],
        );
        check(
            without(list(&[1, 2, 3, 4, 5]), list(&[2, 4, 6])),
            &[1, 3, 5],
        );
        check(
            without(
                intersect(vec![
                    merge(vec![list(&[1, 3]), list(&[2, 4])]),
                    list(&[1, 2, 3]),
                ]),
                list(&[2]),
            ),
            &[1, 3],
        );
    }

    #[test]
    fn seek_on_combinations() {
        let mut merged = merge(vec![list(&[1, 5, 9]), list(&[2, 6, 10])]);
        assert_eq!(merged.seek(6), Some(6));
        assert_eq!(merged.seek(3), Some(6));
        assert_eq!(merged.next(), Some(9));
        let mut both = intersect(vec![list(&[1, 4, 6, 9]), list(&[4, 5, 6, 9])]);
        assert_eq!(both.seek(5), Some(6));
        assert_eq!(both.next(), Some(9));
        assert_eq!(both.next(), None);
        let mut rest = without(list(&[1, 2, 3, 4]), list(&[3]));
        assert_eq!(rest.seek(3), Some(4));
    }
}
