//! Chunk encodings: the XOR float chunk in full, other encodings carried as typed opaque bytes.
//!
//! - [`XorEncoder`] / [`XorIterator`]: encoding 1, byte-identical to Prometheus.
//! - [`ChunkCutter`]: where Prometheus closes one chunk and starts the next ([`CutRule`]).
//! - [`AggrChunk`] / [`encode_aggr_chunk`]: Thanos' downsampled aggregate chunk (0xFF) container,
//!   its five sub-chunks read and written ([`aggr`]).
//! - [`Encoding`]: the encoding ids of segment files and remote read. Histogram chunks (2, 3),
//!   and the newer XOR2 and start-timestamp encodings (4-6) are not decoded here; blocks holding
//!   them read and copy fine, and
//!   [`Encoding::sample_count`] reads their header.

pub mod aggr;
mod bstream;
mod cutter;
mod xor;
mod xor_batch;

pub use aggr::{AggrChunk, AggrPart, AggrType, encode_aggr_chunk};
pub use cutter::{
    ChunkCutter, CutRule, DEFAULT_CHUNK_RANGE_MS, DEFAULT_SAMPLES_PER_CHUNK,
    MAX_BYTES_PER_XOR_CHUNK, MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND, XorChunk, cut_xor_chunks,
};
pub use xor::{XorEncoder, XorIterator, decode_xor, encode_xor};
pub use xor_batch::{BatchDecodeError, decode_xor_chunks, decodes_side_by_side};

/// A chunk encoding id, as the byte before each chunk's data in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encoding {
    /// 1: XOR float chunk.
    Xor,
    /// 2: integer native histograms.
    Histogram,
    /// 3: float native histograms.
    FloatHistogram,
    /// 4: XOR2, the newer float encoding.
    Xor2,
    /// 5: integer native histograms with start timestamps.
    HistogramSt,
    /// 6: float native histograms with start timestamps.
    FloatHistogramSt,
    /// 0xFF: Thanos' downsampled aggregate chunk (count, sum, min, max, counter sub-chunks).
    ThanosAggr,
}

impl Encoding {
    /// The encoding with id `id`; `None` for 0 ("none", invalid in files) and unknown ids.
    pub fn from_u8(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Xor),
            2 => Some(Self::Histogram),
            3 => Some(Self::FloatHistogram),
            4 => Some(Self::Xor2),
            5 => Some(Self::HistogramSt),
            6 => Some(Self::FloatHistogramSt),
            0xFF => Some(Self::ThanosAggr),
            _ => None,
        }
    }

    /// The id written to files.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Xor => 1,
            Self::Histogram => 2,
            Self::FloatHistogram => 3,
            Self::Xor2 => 4,
            Self::HistogramSt => 5,
            Self::FloatHistogramSt => 6,
            Self::ThanosAggr => 0xFF,
        }
    }

    /// Upstream's name for the encoding (`XOR`, `histogram`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Xor => "XOR",
            Self::Histogram => "histogram",
            Self::FloatHistogram => "floathistogram",
            Self::Xor2 => "XOR2",
            Self::HistogramSt => "histogramST",
            Self::FloatHistogramSt => "floathistogramST",
            Self::ThanosAggr => "aggr",
        }
    }

    /// Whether samples of this encoding are floats (XOR or XOR2).
    pub fn is_float(self) -> bool {
        matches!(self, Self::Xor | Self::Xor2)
    }

    /// Whether samples of this encoding are native histograms.
    pub fn is_histogram(self) -> bool {
        matches!(
            self,
            Self::Histogram | Self::FloatHistogram | Self::HistogramSt | Self::FloatHistogramSt
        )
    }

    /// The sample count in the header of chunk `data`, without decoding samples. `None` when
    /// the data is shorter than the header or the encoding has no single count (Thanos'
    /// aggregate chunk).
    pub fn sample_count(self, data: &[u8]) -> Option<u16> {
        let count = match data {
            [high, low, ..] => u16::from_be_bytes([*high, *low]),
            _ => return None,
        };
        match self {
            Self::Xor | Self::Histogram | Self::FloatHistogram | Self::Xor2 => Some(count),
            // The top two bits of these hold the counter-reset header.
            Self::HistogramSt | Self::FloatHistogramSt => Some(count & 0x3FFF),
            Self::ThanosAggr => None,
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

#[cfg(test)]
mod tests;
