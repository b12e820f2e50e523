//! Rewriting a block under a new ULID: read with [`BlockReader`], write with [`BlockWriter`].

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::chunkenc::{CutRule, Encoding, XorIterator, cut_xor_chunks};
use crate::error::Result;
use crate::meta::BlockMeta;
use crate::postings::Postings;
use crate::reader::BlockReader;
use crate::writer::{BlockWriter, ChunkData};

/// Writes the block at `block_dir` again as a new block under `out_dir` and returns its meta and
/// folder. Chunks are copied as they are; tombstones are applied (deleted chunks dropped, partly
/// deleted XOR chunks re-encoded), so the new block has an empty tombstones file. The time range
/// of the source block is kept.
pub fn rewrite_block(block_dir: &Path, out_dir: &Path) -> Result<(BlockMeta, PathBuf)> {
    let block = BlockReader::open(block_dir)?;
    let symbols: Vec<String> = block
        .index()
        .all_symbols()?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut writer = BlockWriter::create(out_dir, symbols)?;
    writer.set_time_range(block.meta().min_time, block.meta().max_time);
    let mut all = block.index().all_postings()?;
    let mut chunks: Vec<(i64, i64, Encoding, Cow<'_, [u8]>)> = Vec::new();
    while let Some(series_ref) = all.next() {
        let entry = block.index().series(series_ref)?;
        let tombstones = block.tombstones(series_ref);
        chunks.clear();
        for meta in &entry.chunks {
            let (encoding, data) = block.chunk(meta.chunk_ref)?;
            let touched = tombstones
                .iter()
                .any(|(from, to)| *from <= meta.max_time && meta.min_time <= *to);
            if !touched || encoding != Encoding::Xor {
                chunks.push((meta.min_time, meta.max_time, encoding, Cow::Borrowed(data)));
                continue;
            }
            let kept = XorIterator::new(data)
                .filter(|(t, _)| !tombstones.iter().any(|(from, to)| from <= t && t <= to));
            for chunk in cut_xor_chunks(kept, CutRule::compaction())? {
                chunks.push((
                    chunk.min_time,
                    chunk.max_time,
                    Encoding::Xor,
                    Cow::Owned(chunk.data),
                ));
            }
        }
        let data: Vec<ChunkData<'_>> = chunks
            .iter()
            .map(|(min_time, max_time, encoding, data)| ChunkData {
                min_time: *min_time,
                max_time: *max_time,
                encoding: *encoding,
                data,
            })
            .collect();
        writer.add_series(&entry.labels, &data)?;
    }
    writer.finish()
}
