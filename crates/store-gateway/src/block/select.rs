//! Selecting from one block: matchers → postings → series entries → chunks, every step a batch
//! of coalesced ranged reads, postings and series looked up in the index cache first.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use bytes::Bytes;
use prom_model::{Label, Labels, MatchType, Matcher};
use storeapi::proto::thanos;
use tsdb_block::chunkenc::Encoding;
use tsdb_block::encoding::{Decoder, crc32c};
use tsdb_block::index::{ChunkMeta, SERIES_ALIGNMENT};

use super::Block;
use super::aggr::StoredChunk;
use super::bounds::{SelectedChunk, with_read_lengths};
use crate::cache::{CacheKey, IndexCache, decode_postings, encode_postings};
use crate::error::{Error, Result};
use crate::header::{IndexHeader, SymbolMemo, decode_postings as decode_postings_list};
use crate::limits::Limiter;

/// Bytes read for a series entry whose size is not known yet.
const SERIES_SIZE_ESTIMATE: u64 = 16 * 1024;
/// Bytes read for a chunk whose size is not known yet (Thanos' `maxChunkSize`).
const CHUNK_SIZE_ESTIMATE: u64 = 16_000;

/// What to select from a block.
#[derive(Debug, Clone)]
pub(crate) struct BlockQuery {
    pub(crate) matchers: Vec<Matcher>,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) skip_chunks: bool,
}

impl BlockQuery {
    /// The chunks of one series (all of them, in index order) that overlap the query's time
    /// range, with the bytes to read for each (measured on all of them, see
    /// [`with_read_lengths`]).
    pub(crate) fn chunks_in_range(
        &self,
        chunks: Vec<ChunkMeta>,
        estimate: u64,
    ) -> Vec<SelectedChunk> {
        let mut selected = with_read_lengths(chunks, estimate);
        selected.retain(|chunk| {
            chunk.meta.max_time >= self.min_time && chunk.meta.min_time <= self.max_time
        });
        selected
    }
}

/// Where one request's index reads come from (the index cache, then the bucket) and what
/// counts them (its limits).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reads<'a> {
    pub(crate) cache: &'a dyn IndexCache,
    pub(crate) limiter: &'a Limiter,
}

/// A series selected from one block, external labels added, with its chunks in range and the
/// bytes to read for each.
#[derive(Debug)]
pub(crate) struct SelectedSeries {
    pub(crate) labels: Labels,
    pub(crate) chunks: Vec<SelectedChunk>,
}

/// Sorted-set helpers over series references.
fn intersect(left: &[u64], right: &[u64]) -> Vec<u64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < left.len() && j < right.len() {
        match left[i].cmp(&right[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(left[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract(base: &[u64], remove: &[u64]) -> Vec<u64> {
    let mut j = 0;
    let mut out = Vec::with_capacity(base.len());
    for value in base {
        while j < remove.len() && remove[j] < *value {
            j += 1;
        }
        if j < remove.len() && remove[j] == *value {
            continue;
        }
        out.push(*value);
    }
    out
}

fn union(lists: Vec<&Vec<u64>>) -> Vec<u64> {
    let mut all: Vec<u64> = lists.into_iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// How one matcher acts on postings.
enum Term {
    /// Intersect with the union of these lists (name, value, offset).
    Positive(Vec<(String, String, u64)>),
    /// Subtract the union of these lists.
    Negative(Vec<(String, String, u64)>),
}

impl Block {
    /// The matchers left for the index after those on external labels are checked against the
    /// block's external labels (an external label wins); `None` when the block cannot match.
    pub(crate) fn index_matchers(&self, matchers: &[Matcher]) -> Option<Vec<Matcher>> {
        let mut left = Vec::with_capacity(matchers.len());
        for matcher in matchers {
            match self.external.get(matcher.name()) {
                Some(value) if !matcher.matches(value) => return None,
                Some(_) => {}
                None => left.push(matcher.clone()),
            }
        }
        Some(left)
    }

    /// The references of the series matching `matchers` (index matchers only), sorted, looked
    /// up as expanded postings in the index cache first. No matchers select every series.
    pub(super) async fn postings(
        &self,
        header: &IndexHeader,
        matchers: &[Matcher],
        reads: Reads<'_>,
    ) -> Result<Vec<u64>> {
        if matchers.is_empty() {
            return self.expand_postings(header, matchers, reads).await;
        }
        let key = CacheKey::expanded_postings(&self.id, matchers);
        let cached = reads.cache.fetch(std::slice::from_ref(&key)).await;
        if let Some(value) = cached.get(&key)
            && let Some(refs) = decode_postings(value)
        {
            reads.limiter.add_bytes(value.len() as u64, "postings")?;
            return Ok(refs);
        }
        let refs = self.expand_postings(header, matchers, reads).await?;
        if let Some(value) = encode_postings(&refs) {
            reads.cache.store(vec![(key, value)]).await;
        }
        Ok(refs)
    }

    /// The references of the series matching `matchers`, from the postings lists.
    async fn expand_postings(
        &self,
        header: &IndexHeader,
        matchers: &[Matcher],
        reads: Reads<'_>,
    ) -> Result<Vec<u64>> {
        let all = || -> Vec<(String, String, u64)> {
            header
                .values("")
                .iter()
                .map(|(value, offset)| (String::new(), value.clone(), *offset))
                .collect()
        };
        let must_be_set: BTreeSet<&str> = matchers
            .iter()
            .filter(|matcher| !matcher.matches_empty())
            .map(Matcher::name)
            .collect();
        let mut terms = Vec::new();
        for matcher in matchers {
            if matcher.name().is_empty() && matcher.value().is_empty() {
                terms.push(Term::Positive(all()));
                continue;
            }
            let is_not = matches!(matcher.kind(), MatchType::NotEqual | MatchType::NotRegex);
            let values = header.values(matcher.name());
            if must_be_set.contains(matcher.name()) && !(is_not && matcher.matches_empty()) {
                let matching: Vec<_> = values
                    .iter()
                    .filter(|(value, _)| matcher.matches(value))
                    .map(|(value, offset)| (matcher.name().to_owned(), value.clone(), *offset))
                    .collect();
                if matching.is_empty() {
                    return Ok(Vec::new());
                }
                terms.push(Term::Positive(matching));
            } else {
                let rejected = values
                    .iter()
                    .filter(|(value, _)| !matcher.matches(value))
                    .map(|(value, offset)| (matcher.name().to_owned(), value.clone(), *offset))
                    .collect();
                terms.push(Term::Negative(rejected));
            }
        }
        if !terms.iter().any(|term| matches!(term, Term::Positive(_))) {
            terms.push(Term::Positive(all()));
        }
        let wanted: Vec<&(String, String, u64)> = terms
            .iter()
            .flat_map(|term| match term {
                Term::Positive(lists) | Term::Negative(lists) => lists.iter(),
            })
            .collect();
        let lists = self.fetch_postings(header, &wanted, reads).await?;
        let empty = Vec::new();
        let union_of = |entries: &[(String, String, u64)]| {
            union(
                entries
                    .iter()
                    .map(|(_, _, offset)| lists.get(offset).unwrap_or(&empty))
                    .collect(),
            )
        };
        let mut result: Option<Vec<u64>> = None;
        for term in &terms {
            if let Term::Positive(entries) = term {
                let refs = union_of(entries);
                result = Some(match result {
                    None => refs,
                    Some(previous) => intersect(&previous, &refs),
                });
            }
        }
        let mut result = result.unwrap_or_default();
        for term in &terms {
            if let Term::Negative(entries) = term {
                result = subtract(&result, &union_of(entries));
            }
        }
        Ok(result)
    }

    /// Postings lists by offset: from the cache, the rest with one coalesced read.
    async fn fetch_postings(
        &self,
        header: &IndexHeader,
        wanted: &[&(String, String, u64)],
        reads: Reads<'_>,
    ) -> Result<HashMap<u64, Vec<u64>>> {
        let mut unique: Vec<&(String, String, u64)> = wanted.to_vec();
        unique.sort_by_key(|entry| entry.2);
        unique.dedup_by_key(|entry| entry.2);
        let keys: Vec<CacheKey> = unique
            .iter()
            .map(|(name, value, _)| CacheKey::postings(&self.id, name, value))
            .collect();
        let cached = reads.cache.fetch(&keys).await;
        let mut lists = HashMap::with_capacity(unique.len());
        let mut missing = Vec::new();
        let mut touched = 0_u64;
        for (entry, key) in unique.iter().zip(&keys) {
            let hit = cached
                .get(key)
                .and_then(|value| Some((value.len(), decode_postings(value)?)));
            match hit {
                Some((size, refs)) => {
                    touched += size as u64;
                    lists.insert(entry.2, refs);
                }
                None => missing.push((entry.2, *key)),
            }
        }
        reads.limiter.add_bytes(touched, "postings")?;
        if !missing.is_empty() {
            let ranges: Vec<Range<u64>> = missing
                .iter()
                .map(|(offset, _)| header.list_range(*offset))
                .collect();
            reads.limiter.add_ranges(&ranges, "postings")?;
            let fetched = self.get_ranges("index", &ranges).await?;
            let mut to_cache = Vec::with_capacity(missing.len());
            for ((offset, key), bytes) in missing.into_iter().zip(fetched) {
                let refs = decode_postings_list(&bytes, offset).map_err(|source| Error::Block {
                    block: self.id,
                    action: "read postings",
                    source,
                })?;
                if let Some(value) = encode_postings(&refs) {
                    to_cache.push((key, value));
                }
                lists.insert(offset, refs);
            }
            reads.cache.store(to_cache).await;
        }
        Ok(lists)
    }

    pub(crate) async fn get_ranges(&self, file: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let name = self.object(file);
        self.bucket
            .get_ranges(&name, ranges)
            .await
            .map_err(|source| Error::bucket(format!("read {name}"), source))
    }

    /// The end of the series section.
    fn series_end(header: &IndexHeader) -> u64 {
        let toc = &header.toc;
        [toc.label_indices, toc.postings, toc.postings_table]
            .into_iter()
            .filter(|offset| *offset > toc.series)
            .min()
            .unwrap_or(toc.postings_table)
    }

    /// The bodies of the series entries of `refs` (sorted): fetched entries (`uvarint len |
    /// body | crc`) are checked against their checksum, cached bodies were checked when they
    /// were fetched.
    pub(super) async fn fetch_series(
        &self,
        header: &IndexHeader,
        refs: &[u64],
        reads: Reads<'_>,
    ) -> Result<Vec<Bytes>> {
        let keys: Vec<CacheKey> = refs
            .iter()
            .map(|reference| CacheKey::series(&self.id, reference.saturating_mul(SERIES_ALIGNMENT)))
            .collect();
        let cached = reads.cache.fetch(&keys).await;
        let touched = cached.values().map(|body| body.len() as u64).sum();
        reads.limiter.add_bytes(touched, "series")?;
        let end = Self::series_end(header);
        let estimate = self
            .meta
            .thanos
            .as_ref()
            .map(|thanos| thanos.index_stats.series_max_size)
            .and_then(|size| u64::try_from(size).ok())
            .filter(|size| *size > 0)
            .map_or(SERIES_SIZE_ESTIMATE, |size| size + 16);
        let mut missing: Vec<(usize, Range<u64>)> = Vec::new();
        for (position, reference) in refs.iter().enumerate() {
            if cached.contains_key(&keys[position]) {
                continue;
            }
            let start = reference.saturating_mul(SERIES_ALIGNMENT);
            let next = refs
                .get(position + 1)
                .map_or(end, |next| next.saturating_mul(SERIES_ALIGNMENT));
            missing.push((
                position,
                start..next.min(start + estimate).min(end).max(start),
            ));
        }
        let ranges: Vec<Range<u64>> = missing.iter().map(|(_, range)| range.clone()).collect();
        let fetched = if ranges.is_empty() {
            Vec::new()
        } else {
            reads.limiter.add_ranges(&ranges, "series")?;
            self.get_ranges("index", &ranges).await?
        };
        let mut entries: Vec<Option<Bytes>> =
            keys.iter().map(|key| cached.get(key).cloned()).collect();
        let mut to_cache = Vec::new();
        for ((position, range), bytes) in missing.into_iter().zip(fetched) {
            let entry = match entry_length(&bytes) {
                Some(length) if length <= bytes.len() => bytes.slice(..length),
                Some(length) => {
                    let exact = range.start..range.start + length as u64;
                    let refetch = [exact];
                    reads.limiter.add_ranges(&refetch, "series")?;
                    self.get_ranges("index", &refetch).await?.remove(0)
                }
                None => return Err(self.corrupt_series(range.start, "series entry length")),
            };
            let body = self.checked_body(&entry)?;
            // A copy: the fetched entry shares the buffer of a whole coalesced read, which a
            // cached slice would keep alive.
            to_cache.push((keys[position], Bytes::copy_from_slice(&body)));
            entries[position] = Some(body);
        }
        reads.cache.store(to_cache).await;
        Ok(entries.into_iter().flatten().collect())
    }

    fn corrupt_series(&self, offset: u64, detail: &str) -> Error {
        Error::Block {
            block: self.id,
            action: "read series",
            source: tsdb_block::Error::Corrupt {
                file: "index".to_owned(),
                section: "series",
                offset,
                detail: detail.to_owned(),
            },
        }
    }

    fn series_decode_error(&self, error: tsdb_block::encoding::DecodeError) -> Error {
        Error::Block {
            block: self.id,
            action: "read series",
            source: error.in_section("index", "series"),
        }
    }

    /// The body of a series entry (`uvarint len | body | crc`), checked against its checksum.
    fn checked_body(&self, entry: &Bytes) -> Result<Bytes> {
        let fail = |error| self.series_decode_error(error);
        let mut decoder = Decoder::new(entry, 0);
        let length = decoder.uvarint_len().map_err(fail)?;
        let body = decoder.bytes(length).map_err(fail)?;
        let stored = decoder.be_u32().map_err(fail)?;
        if stored != crc32c(body) {
            return Err(self.corrupt_series(0, "checksum mismatch"));
        }
        Ok(entry.slice_ref(body))
    }

    /// Decodes the body of a series entry into its index labels (without external labels) and
    /// chunk metas. The labels have room for the block's external labels.
    pub(super) fn decode_entry(
        &self,
        symbols: &mut SymbolMemo<'_>,
        body: &[u8],
    ) -> Result<(Labels, Vec<ChunkMeta>)> {
        let fail = |error| self.series_decode_error(error);
        let mut decoder = Decoder::new(body, 0);
        let label_count = decoder.uvarint().map_err(fail)?;
        if label_count > body.len() as u64 {
            return Err(self.corrupt_series(0, "too many labels"));
        }
        let mut labels = Vec::with_capacity(label_count as usize + self.external.len());
        for _ in 0..label_count {
            let name = decoder.uvarint().map_err(fail)?;
            let value = decoder.uvarint().map_err(fail)?;
            let (Some(name), Some(value)) = (symbols.symbol(name), symbols.symbol(value)) else {
                return Err(self.corrupt_series(0, "unknown symbol reference"));
            };
            labels.push(Label::new(name, value));
        }
        let chunk_count = decoder.uvarint().map_err(fail)?;
        if chunk_count > body.len() as u64 {
            return Err(self.corrupt_series(0, "too many chunks"));
        }
        let mut chunks: Vec<ChunkMeta> = Vec::with_capacity(chunk_count as usize);
        for _ in 0..chunk_count {
            let chunk = match chunks.last() {
                None => {
                    let min_time = decoder.varint().map_err(fail)?;
                    let max_time = min_time.wrapping_add(decoder.uvarint().map_err(fail)? as i64);
                    ChunkMeta {
                        min_time,
                        max_time,
                        chunk_ref: decoder.uvarint().map_err(fail)?,
                    }
                }
                Some(previous) => {
                    let min_time = previous
                        .max_time
                        .wrapping_add(decoder.uvarint().map_err(fail)? as i64);
                    let max_time = min_time.wrapping_add(decoder.uvarint().map_err(fail)? as i64);
                    let chunk_ref = previous
                        .chunk_ref
                        .wrapping_add(decoder.varint().map_err(fail)? as u64);
                    ChunkMeta {
                        min_time,
                        max_time,
                        chunk_ref,
                    }
                }
            };
            chunks.push(chunk);
        }
        Ok((Labels::from_sorted(labels), chunks))
    }

    /// The series matching `query`, sorted by labels, with the chunk metas in range; series
    /// without chunks in range are left out.
    pub(crate) async fn select(
        &self,
        query: &BlockQuery,
        reads: Reads<'_>,
    ) -> Result<Vec<SelectedSeries>> {
        let Some(matchers) = self.index_matchers(&query.matchers) else {
            return Ok(Vec::new());
        };
        if self.meta.max_time <= query.min_time || self.meta.min_time > query.max_time {
            return Ok(Vec::new());
        }
        let header = self.header().await?;
        let refs = self.postings(&header, &matchers, reads).await?;
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        reads.limiter.add_series(refs.len() as u64)?;
        let entries = self.fetch_series(&header, &refs, reads).await?;
        let mut selected = Vec::with_capacity(entries.len());
        let mut symbols = header.symbol_memo();
        let estimate = self.chunk_size_estimate();
        for entry in entries {
            let (mut labels, chunks) = self.decode_entry(&mut symbols, &entry)?;
            for label in &self.external {
                labels.set(label.name.clone(), label.value.clone());
            }
            let chunks = query.chunks_in_range(chunks, estimate);
            if !chunks.is_empty() {
                selected.push(SelectedSeries { labels, chunks });
            }
        }
        selected.sort_by(|left, right| left.labels.cmp(&right.labels));
        Ok(selected)
    }

    /// Bytes read for a chunk whose length nothing else bounds: `chunk_max_size` + 16 from
    /// the meta's `index_stats` when known, else [`CHUNK_SIZE_ESTIMATE`].
    pub(crate) fn chunk_size_estimate(&self) -> u64 {
        self.meta
            .thanos
            .as_ref()
            .map(|thanos| thanos.index_stats.chunk_max_size)
            .and_then(|size| u64::try_from(size).ok())
            .filter(|size| *size > 0)
            .map_or(CHUNK_SIZE_ESTIMATE, |size| size + 16)
    }

    /// The chunks of `selected`, as stored: raw chunks with Thanos encoding numbers,
    /// downsampled chunks as their aggregate data; data without encoding byte. A chunk is read
    /// up to the next selected chunk of its segment, its read length or the block-wide
    /// estimate, whichever comes first; one found longer is read again, exactly.
    pub(crate) async fn load_chunks(
        &self,
        selected: &[SelectedChunk],
        limiter: &Limiter,
    ) -> Result<HashMap<u64, StoredChunk>> {
        let estimate = self.chunk_size_estimate();
        let mut by_segment: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
        for chunk in selected {
            let length = chunk.read_length.unwrap_or(estimate).min(estimate);
            by_segment
                .entry(chunk.segment())
                .or_default()
                .push((chunk.offset(), length));
        }
        let mut chunks = HashMap::with_capacity(selected.len());
        for (segment, mut reads) in by_segment {
            // The same chunk twice: the longer read length.
            reads.sort_unstable_by(|left, right| left.0.cmp(&right.0).then(right.1.cmp(&left.1)));
            reads.dedup_by_key(|(offset, _)| *offset);
            let size = self.segment_size(segment).await?;
            let file = format!("chunks/{}", tsdb_block::chunks::segment_file_name(segment));
            let ranges: Vec<Range<u64>> = reads
                .iter()
                .enumerate()
                .map(|(position, (offset, length))| {
                    let next = reads.get(position + 1).map_or(size, |(next, _)| *next);
                    *offset
                        ..next
                            .min(offset.saturating_add(*length))
                            .min(size)
                            .max(*offset)
                })
                .collect();
            limiter.add_ranges(&ranges, "chunks")?;
            let mut fetched = self.get_ranges(&file, &ranges).await?;
            // length field + encoding byte + data + CRC
            let (short, exact): (Vec<usize>, Vec<Range<u64>>) = fetched
                .iter()
                .zip(&ranges)
                .enumerate()
                .filter_map(|(position, (bytes, range))| match entry_length(bytes) {
                    Some(length) if length >= bytes.len() => Some((
                        position,
                        range.start..range.start.saturating_add(length as u64 + 1).min(size),
                    )),
                    _ => None,
                })
                .unzip();
            if !exact.is_empty() {
                limiter.add_ranges(&exact, "chunks")?;
                let refetched = self.get_ranges(&file, &exact).await?;
                for (position, bytes) in short.into_iter().zip(refetched) {
                    fetched[position] = bytes;
                }
            }
            for ((offset, _), bytes) in reads.iter().zip(fetched) {
                let framed =
                    tsdb_block::chunks::parse_chunk(&bytes, *offset, &file).map_err(|source| {
                        Error::Block {
                            block: self.id,
                            action: "read chunk",
                            source,
                        }
                    })?;
                // A view of the bytes read, not a copy.
                let data = bytes.slice_ref(framed.data);
                let stored = if framed.encoding == Encoding::ThanosAggr {
                    let data_start = framed.data.as_ptr() as usize - bytes.as_ptr() as usize;
                    StoredChunk::Aggregate {
                        data,
                        file: file.clone(),
                        offset: offset + data_start as u64,
                    }
                } else {
                    let encoding =
                        storeapi::chunk::prometheus_to_thanos_encoding(framed.encoding.as_u8())
                            .ok_or_else(|| {
                                self.corrupt_series(*offset, "unsupported chunk encoding")
                            })?;
                    StoredChunk::Raw(thanos::Chunk {
                        r#type: encoding.into(),
                        data,
                        hash: 0,
                    })
                };
                chunks.insert((u64::from(segment) << 32) | offset, stored);
            }
        }
        Ok(chunks)
    }

    /// Label names of the series matching `query` (all names when there are no index
    /// matchers), with the external label names.
    pub(crate) async fn label_names(
        &self,
        query: &BlockQuery,
        reads: Reads<'_>,
    ) -> Result<BTreeSet<String>> {
        let Some(matchers) = self.index_matchers(&query.matchers) else {
            return Ok(BTreeSet::new());
        };
        let mut names: BTreeSet<String> = self
            .external
            .iter()
            .map(|label| label.name.clone())
            .collect();
        if matchers.is_empty() {
            let header = self.header().await?;
            names.extend(header.label_names().map(str::to_owned));
            return Ok(names);
        }
        let selected = self.select(query, reads).await?;
        if selected.is_empty() {
            return Ok(BTreeSet::new());
        }
        for series in selected {
            names.extend(series.labels.iter().map(|label| label.name.clone()));
        }
        Ok(names)
    }

    /// Values of `name` among the series matching `query`.
    pub(crate) async fn label_values(
        &self,
        name: &str,
        query: &BlockQuery,
        reads: Reads<'_>,
    ) -> Result<BTreeSet<String>> {
        let Some(matchers) = self.index_matchers(&query.matchers) else {
            return Ok(BTreeSet::new());
        };
        if matchers.is_empty() {
            if let Some(value) = self.external.get(name) {
                return Ok(BTreeSet::from([value.to_owned()]));
            }
            let header = self.header().await?;
            return Ok(header
                .values(name)
                .iter()
                .map(|(value, _)| value.clone())
                .collect());
        }
        let selected = self.select(query, reads).await?;
        Ok(selected
            .iter()
            .filter_map(|series| series.labels.get(name).map(str::to_owned))
            .collect())
    }
}

/// The total length of a `uvarint len | len bytes | ...` frame's length field plus `len`,
/// plus 4 for the CRC of series entries; `None` when the varint is cut.
fn entry_length(bytes: &[u8]) -> Option<usize> {
    let mut decoder = Decoder::new(bytes, 0);
    let length = decoder.uvarint().ok()?;
    let field = decoder.offset() as usize;
    usize::try_from(length)
        .ok()?
        .checked_add(field)?
        .checked_add(4)
}
