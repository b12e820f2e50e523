//! How many bytes to read for each chunk of a series, from the series' own chunk list.
//!
//! A chunk's stored length is only known once its length field is read, so a chunk is read
//! with a length guessed in advance and read again exactly when the guess was short. The
//! series entry lists all the series' chunks, and chunks never overlap in a segment file: a
//! chunk followed in the list by a chunk of the same segment at a larger offset ends no later
//! than that offset. Prometheus and Thanos write a series' chunks one after another, so that
//! distance is the chunk's exact length. The last chunk of a series in its segment has no such
//! neighbour; its length is estimated from the series' measured chunks (twice the largest, at
//! least [`MIN_ESTIMATE`]), or is the block-wide estimate when none is measured. The bounds are
//! computed on the full list, before the chunks are filtered by the query's time range: an
//! instant query reads only the last chunk of each series, whose earlier chunks still measure
//! it.

use tsdb_block::index::ChunkMeta;

/// The least bytes read for a chunk whose length is estimated from its series' other chunks.
const MIN_ESTIMATE: u64 = 512;
/// The least bytes read for any chunk: its length field (at most 10 bytes) and encoding byte,
/// so that a short read still tells the chunk's exact length.
const MIN_READ: u64 = 16;

/// A chunk selected for reading, with the bytes to read for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SelectedChunk {
    pub(crate) meta: ChunkMeta,
    /// Bytes to read from the chunk's offset: an upper bound on its stored length when its
    /// successor in the series says so, else an estimate that may be short (the chunk is then
    /// read again with its exact length). `None`: the block-wide estimate.
    pub(crate) read_length: Option<u64>,
}

impl SelectedChunk {
    /// The segment index of the chunk.
    pub(crate) fn segment(&self) -> u32 {
        (self.meta.chunk_ref >> 32) as u32
    }

    /// The chunk's offset in its segment.
    pub(crate) fn offset(&self) -> u64 {
        self.meta.chunk_ref & 0xFFFF_FFFF
    }
}

/// The chunks of one series (in index order) with the bytes to read for each, none above
/// `estimate` (the block-wide estimate); see the [module docs](self).
pub(crate) fn with_read_lengths(chunks: Vec<ChunkMeta>, estimate: u64) -> Vec<SelectedChunk> {
    let estimate = estimate.max(MIN_READ);
    let mut selected: Vec<SelectedChunk> = chunks
        .into_iter()
        .map(|meta| SelectedChunk {
            meta,
            read_length: None,
        })
        .collect();
    let mut largest: Option<u64> = None;
    for index in 1..selected.len() {
        let (current, next) = (&selected[index - 1], &selected[index]);
        if current.segment() == next.segment() && next.offset() > current.offset() {
            let length = next.offset() - current.offset();
            largest = largest.max(Some(length));
            selected[index - 1].read_length = Some(length.clamp(MIN_READ, estimate));
        }
    }
    if let Some(largest) = largest {
        let guess = largest
            .saturating_mul(2)
            .max(MIN_ESTIMATE)
            .clamp(MIN_READ, estimate);
        for chunk in &mut selected {
            chunk.read_length.get_or_insert(guess);
        }
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESTIMATE: u64 = 16_000;

    fn chunk(segment: u64, offset: u64) -> ChunkMeta {
        ChunkMeta {
            min_time: 0,
            max_time: 0,
            chunk_ref: (segment << 32) | offset,
        }
    }

    fn lengths(chunks: &[ChunkMeta]) -> Vec<Option<u64>> {
        let selected = with_read_lengths(chunks.to_vec(), ESTIMATE);
        let metas: Vec<ChunkMeta> = selected.iter().map(|chunk| chunk.meta).collect();
        assert_eq!(metas, chunks, "chunks kept in order");
        selected.iter().map(|chunk| chunk.read_length).collect()
    }

    /// Consecutive chunks in one segment: each is bounded by the next, the last one by twice
    /// the largest of them (at least 512 bytes, never above the block-wide estimate).
    #[test]
    fn chunks_in_one_segment() {
        assert_eq!(
            lengths(&[chunk(0, 8), chunk(0, 208), chunk(0, 508), chunk(0, 758)]),
            [Some(200), Some(300), Some(250), Some(600)]
        );
        assert_eq!(
            lengths(&[chunk(0, 8), chunk(0, 58), chunk(0, 108)]),
            [Some(50), Some(50), Some(512)]
        );
        assert_eq!(
            lengths(&[chunk(2, 100), chunk(2, 12_100)]),
            [Some(12_000), Some(ESTIMATE)]
        );
        assert_eq!(
            lengths(&[chunk(2, 100), chunk(2, 40_100)]),
            [Some(ESTIMATE), Some(ESTIMATE)]
        );
        // A distance below what any chunk takes still reads the length field.
        assert_eq!(
            lengths(&[chunk(0, 8), chunk(0, 10), chunk(0, 110)]),
            [Some(16), Some(100), Some(512)]
        );
    }

    /// A segment change mid-series: the last chunk of the first segment is estimated like the
    /// last chunk of the series.
    #[test]
    fn segment_change_mid_series() {
        assert_eq!(
            lengths(&[
                chunk(0, 1000),
                chunk(0, 1400),
                chunk(1, 8),
                chunk(1, 308),
                chunk(1, 508)
            ]),
            [Some(400), Some(800), Some(300), Some(200), Some(800)]
        );
    }

    /// One chunk, or chunks without a measurable successor: the block-wide estimate.
    #[test]
    fn single_chunk_and_nothing_measured() {
        assert_eq!(lengths(&[chunk(0, 8)]), [None]);
        assert_eq!(lengths(&[]), Vec::<Option<u64>>::new());
        assert_eq!(lengths(&[chunk(0, 8), chunk(1, 8)]), [None, None]);
        assert_eq!(lengths(&[chunk(0, 500), chunk(0, 500)]), [None, None]);
    }

    /// A successor at a smaller offset bounds nothing; the chunk is estimated.
    #[test]
    fn decreasing_offsets() {
        assert_eq!(
            lengths(&[chunk(0, 900), chunk(0, 100), chunk(0, 300), chunk(0, 50)]),
            [Some(512), Some(200), Some(512), Some(512)]
        );
        assert_eq!(
            lengths(&[chunk(0, 5000), chunk(0, 100), chunk(0, 1100)]),
            [Some(2000), Some(1000), Some(2000)]
        );
    }

    /// Estimates never exceed a small block-wide estimate (`chunk_max_size` + 16).
    #[test]
    fn block_estimate_caps_everything() {
        let selected = with_read_lengths(vec![chunk(0, 8), chunk(0, 408), chunk(0, 508)], 300);
        let got: Vec<Option<u64>> = selected.iter().map(|chunk| chunk.read_length).collect();
        assert_eq!(got, [Some(300), Some(100), Some(300)]);
    }
}
