//! Splitting one series' float samples into XOR chunks where Prometheus would split them.
//!
//! Two rules exist upstream. The head appender ([`CutRule::Head`]) aims at 120 samples per chunk
//! but keeps chunks inside the chunk range (the block range, 2h by default): when a chunk reaches
//! a quarter of the target it re-estimates its end so the rest of the range splits into equal
//! chunks, and it cuts early at twice the target or when the chunk passed 1005 bytes. Re-encoding
//! during compaction ([`CutRule::Every`]) simply cuts every 120 samples; re-encoding after
//! deletions cuts on size only. Matching these decides whether our blocks are byte-identical to
//! Prometheus' for the same samples.

use super::xor::XorEncoder;
use crate::error::{Error, Result};

/// Hard size limit of an XOR chunk in bytes.
pub const MAX_BYTES_PER_XOR_CHUNK: usize = 1024;
/// A chunk larger than this is closed before the next append, leaving room for the largest
/// possible sample (19 bytes) under [`MAX_BYTES_PER_XOR_CHUNK`].
pub const MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND: usize = MAX_BYTES_PER_XOR_CHUNK - 19;
/// Prometheus' default target of samples per chunk.
pub const DEFAULT_SAMPLES_PER_CHUNK: u16 = 120;
/// Prometheus' default chunk range: the 2h block range, in milliseconds.
pub const DEFAULT_CHUNK_RANGE_MS: i64 = 2 * 60 * 60 * 1000;

/// When to close a chunk and start the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutRule {
    /// The head appender's rule.
    Head {
        /// Target samples per chunk (upstream `samplesPerChunk`, default 120).
        samples_per_chunk: u16,
        /// Chunks never cross a multiple of this many milliseconds (default 2h).
        chunk_range_ms: i64,
    },
    /// A fixed sample count, optionally with a size cap.
    Every {
        /// Cut once the chunk holds this many samples.
        samples: u16,
        /// Also cut once the chunk grew past this many bytes.
        max_bytes: Option<usize>,
    },
}

impl CutRule {
    /// The head appender with Prometheus' defaults: 120 samples, 2h range.
    pub fn head() -> Self {
        Self::head_with_range(DEFAULT_CHUNK_RANGE_MS)
    }

    /// The head appender with 120 samples per chunk and the given chunk range in milliseconds.
    pub fn head_with_range(chunk_range_ms: i64) -> Self {
        Self::Head {
            samples_per_chunk: DEFAULT_SAMPLES_PER_CHUNK,
            chunk_range_ms,
        }
    }

    /// Compaction re-encoding as upstream's series-to-chunk encoder does it: every 120 samples.
    pub fn compaction() -> Self {
        Self::Every {
            samples: DEFAULT_SAMPLES_PER_CHUNK,
            max_bytes: None,
        }
    }

    /// Every 120 samples or once the chunk passed 1005 bytes, whichever comes first.
    pub fn compaction_with_size_cap() -> Self {
        Self::Every {
            samples: DEFAULT_SAMPLES_PER_CHUNK,
            max_bytes: Some(MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND),
        }
    }

    /// Re-encoding after deletions as upstream does it: on size only (past 1005 bytes).
    pub fn size_only() -> Self {
        Self::Every {
            samples: XorEncoder::MAX_SAMPLES,
            max_bytes: Some(MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND),
        }
    }
}

impl Default for CutRule {
    fn default() -> Self {
        Self::head()
    }
}

/// A finished XOR chunk with its time range.
#[derive(Debug, Clone, PartialEq)]
pub struct XorChunk {
    /// Timestamp of the first sample.
    pub min_time: i64,
    /// Timestamp of the last sample (inclusive).
    pub max_time: i64,
    /// Number of samples.
    pub num_samples: u16,
    /// The chunk data as stored (count + bit stream).
    pub data: Vec<u8>,
}

/// Splits one series' samples, given in increasing time order, into XOR chunks.
#[derive(Debug, Clone)]
pub struct ChunkCutter {
    rule: CutRule,
    current: Option<OpenChunk>,
    completed: Vec<XorChunk>,
    last_timestamp: Option<i64>,
}

#[derive(Debug, Clone)]
struct OpenChunk {
    encoder: XorEncoder,
    min_time: i64,
    max_time: i64,
    /// The head rule's current estimate of where this chunk must end.
    next_at: i64,
}

impl ChunkCutter {
    /// A cutter applying `rule`. Degenerate settings are clamped: at least one sample per chunk
    /// and a chunk range of at least 1 ms.
    pub fn new(rule: CutRule) -> Self {
        let rule = match rule {
            CutRule::Head {
                samples_per_chunk,
                chunk_range_ms,
            } => CutRule::Head {
                samples_per_chunk: samples_per_chunk.max(1),
                chunk_range_ms: chunk_range_ms.max(1),
            },
            CutRule::Every { samples, max_bytes } => CutRule::Every {
                samples: samples.max(1),
                max_bytes,
            },
        };
        Self {
            rule,
            current: None,
            completed: Vec::new(),
            last_timestamp: None,
        }
    }

    /// Appends a sample; its timestamp must be greater than the previous one's.
    pub fn push(&mut self, t: i64, v: f64) -> Result<()> {
        if let Some(last) = self.last_timestamp
            && t <= last
        {
            return Err(Error::InvalidInput {
                writer: "chunk cutter",
                detail: format!("sample at {t} is not after the previous sample at {last}"),
            });
        }
        self.last_timestamp = Some(t);
        let cut = match &mut self.current {
            None => true,
            Some(open) => Self::should_cut(self.rule, open, t),
        };
        if cut {
            self.close_current();
            self.current = Some(OpenChunk {
                encoder: XorEncoder::new(),
                min_time: t,
                max_time: t,
                next_at: match self.rule {
                    CutRule::Head { chunk_range_ms, .. } => range_end(t, chunk_range_ms),
                    CutRule::Every { .. } => i64::MAX,
                },
            });
        }
        let open = self
            .current
            .as_mut()
            .expect("a chunk was opened above if none was");
        let appended = open.encoder.append(t, v);
        debug_assert!(appended, "full chunks are cut before appending");
        open.max_time = t;
        Ok(())
    }

    /// Chunks closed so far, removed from the cutter.
    pub fn take_completed(&mut self) -> Vec<XorChunk> {
        std::mem::take(&mut self.completed)
    }

    /// All remaining chunks, including the open one.
    pub fn finish(mut self) -> Vec<XorChunk> {
        self.close_current();
        self.completed
    }

    fn should_cut(rule: CutRule, open: &mut OpenChunk, t: i64) -> bool {
        let num_samples = open.encoder.num_samples();
        if num_samples == XorEncoder::MAX_SAMPLES {
            return true;
        }
        match rule {
            CutRule::Head {
                samples_per_chunk, ..
            } => {
                if open.encoder.len() > MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND {
                    return true;
                }
                if num_samples == samples_per_chunk / 4 {
                    open.next_at = estimate_chunk_end(open.min_time, open.max_time, open.next_at);
                }
                t >= open.next_at || u32::from(num_samples) >= 2 * u32::from(samples_per_chunk)
            }
            CutRule::Every { samples, max_bytes } => {
                num_samples >= samples || max_bytes.is_some_and(|max| open.encoder.len() > max)
            }
        }
    }

    fn close_current(&mut self) {
        if let Some(open) = self.current.take()
            && !open.encoder.is_empty()
        {
            self.completed.push(XorChunk {
                min_time: open.min_time,
                max_time: open.max_time,
                num_samples: open.encoder.num_samples(),
                data: open.encoder.into_bytes(),
            });
        }
    }
}

/// Cuts a whole series at once.
pub fn cut_xor_chunks(
    samples: impl IntoIterator<Item = (i64, f64)>,
    rule: CutRule,
) -> Result<Vec<XorChunk>> {
    let mut cutter = ChunkCutter::new(rule);
    for (t, v) in samples {
        cutter.push(t, v)?;
    }
    Ok(cutter.finish())
}

/// End of the chunk range holding `t`: the next multiple of `width` above it (Go's truncating
/// division, as upstream).
fn range_end(t: i64, width: i64) -> i64 {
    (t / width).wrapping_mul(width).wrapping_add(width)
}

/// Upstream's re-estimate at a quarter of the target: split what is left of the range into
/// chunks as long as four times the current one, using the same float arithmetic.
fn estimate_chunk_end(start: i64, current: i64, range_end: i64) -> i64 {
    let covered = current.wrapping_sub(start).wrapping_add(1) as f64;
    let chunks_left = range_end.wrapping_sub(start) as f64 / (covered * 4.0);
    if chunks_left <= 1.0 {
        return range_end;
    }
    (start as f64 + range_end.wrapping_sub(start) as f64 / chunks_left.floor()) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::decode_xor;

    fn check(samples: &[(i64, f64)], rule: CutRule, expected_counts: &[u16]) {
        let chunks = cut_xor_chunks(samples.iter().copied(), rule).unwrap();
        let counts: Vec<u16> = chunks.iter().map(|chunk| chunk.num_samples).collect();
        assert_eq!(counts, expected_counts);
        let mut decoded = Vec::new();
        for chunk in &chunks {
            let chunk_samples = decode_xor(&chunk.data).unwrap();
            assert_eq!(chunk_samples.first().unwrap().0, chunk.min_time);
            assert_eq!(chunk_samples.last().unwrap().0, chunk.max_time);
            decoded.extend(chunk_samples);
        }
        assert_eq!(decoded.len(), samples.len());
    }

    fn regular(start: i64, step: i64, count: usize) -> Vec<(i64, f64)> {
        (0..count)
            .map(|index| (start + step * index as i64, index as f64))
            .collect()
    }

    #[test]
    fn head_rule_fills_a_two_hour_range_with_equal_chunks() {
        // 15s scrapes over 2h: 480 samples, four chunks of 120 as Prometheus produces.
        check(
            &regular(0, 15_000, 480),
            CutRule::head(),
            &[120, 120, 120, 120],
        );
        // 60s scrapes: 120 samples per 2h range, one chunk per range.
        check(&regular(0, 60_000, 240), CutRule::head(), &[120, 120]);
    }

    #[test]
    fn head_rule_cuts_at_range_boundaries_and_at_twice_the_target() {
        // Starting mid-range: the first chunk stops at the range end (1h of 60s samples).
        check(&regular(3_600_000, 60_000, 120), CutRule::head(), &[60, 60]);
        // 1s samples with a long range: the quarter-point estimate cannot keep up, 240 caps.
        let samples = regular(0, 1, 1000);
        let chunks = cut_xor_chunks(samples, CutRule::head_with_range(1 << 40)).unwrap();
        assert!(chunks.iter().all(|chunk| chunk.num_samples <= 240));
    }

    #[test]
    fn head_rule_cuts_large_chunks_on_size() {
        let samples: Vec<(i64, f64)> = (0..240)
            .map(|index| {
                (
                    index * 10_000 + (index * index) % 7919,
                    f64::from_bits((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                )
            })
            .collect();
        let chunks = cut_xor_chunks(samples, CutRule::head()).unwrap();
        assert!(chunks.len() > 2);
        for chunk in &chunks {
            assert!(
                chunk.data.len() <= MAX_BYTES_PER_XOR_CHUNK,
                "{}",
                chunk.data.len()
            );
        }
    }

    #[test]
    fn compaction_rule_cuts_every_120_samples() {
        check(
            &regular(0, 15_000, 250),
            CutRule::compaction(),
            &[120, 120, 10],
        );
        check(
            &regular(0, 1, 5),
            CutRule::Every {
                samples: 2,
                max_bytes: None,
            },
            &[2, 2, 1],
        );
    }

    #[test]
    fn out_of_order_samples_are_refused() {
        let mut cutter = ChunkCutter::new(CutRule::head());
        cutter.push(10, 1.0).unwrap();
        let error = cutter.push(10, 2.0).unwrap_err();
        assert!(error.to_string().contains("not after"), "{error}");
        assert_eq!(cutter.finish().len(), 1);
    }

    #[test]
    fn estimate_matches_upstream_arithmetic() {
        // 30 samples 15s apart cover 435s; 7200s / (436s * 4) = 4.1 -> 4 chunks of 1800s.
        assert_eq!(estimate_chunk_end(0, 435_000, 7_200_000), 1_800_000);
        assert_eq!(estimate_chunk_end(0, 7_000_000, 7_200_000), 7_200_000);
        assert_eq!(range_end(-1, 7_200_000), 7_200_000);
        assert_eq!(range_end(7_200_000, 7_200_000), 14_400_000);
    }
}
