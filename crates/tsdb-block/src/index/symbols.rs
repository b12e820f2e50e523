//! The symbol table: every label name and value of the index, sorted, referenced by ordinal.

use crate::encoding::Decoder;
use crate::error::{Error, Result};
use crate::index::{SAMPLING_FACTOR, read_section};
use crate::source::ByteSource;

const SECTION: &str = "symbol table";

/// A v2 symbol table read in place: only the offset of every 32nd symbol is kept in memory.
#[derive(Debug, Clone)]
pub struct Symbols {
    /// Absolute offset of the symbol table section (its `len` field).
    section_offset: u64,
    /// Absolute offset just past the last symbol.
    end: u64,
    count: u32,
    /// Absolute offset of symbols `0, 32, 64, ...`.
    samples: Vec<u64>,
}

impl Symbols {
    /// Reads and checks the symbol table whose `len` field is at `offset`.
    pub fn load(source: &dyn ByteSource, offset: u64) -> Result<Self> {
        let (body, body_offset) = read_section(source, offset, SECTION)?;
        let mut decoder = Decoder::new(body, body_offset);
        let count = decoder
            .be_u32()
            .map_err(|e| e.in_section(source.name(), SECTION))?;
        // Every symbol takes at least one byte, so a bogus count cannot make us allocate much.
        if u64::from(count) > decoder.remaining() as u64 {
            return Err(decoder
                .error(format!(
                    "{count} symbols cannot fit in {} bytes",
                    decoder.remaining()
                ))
                .in_section(source.name(), SECTION));
        }
        let mut samples = Vec::with_capacity(count as usize / SAMPLING_FACTOR + 1);
        let mut previous: Option<&str> = None;
        for index in 0..count as usize {
            if index.is_multiple_of(SAMPLING_FACTOR) {
                samples.push(decoder.offset());
            }
            let start = decoder.offset();
            let symbol = decoder
                .uvarint_str()
                .map_err(|e| e.in_section(source.name(), SECTION))?;
            if previous.is_some_and(|previous| previous >= symbol) {
                return Err(Error::Corrupt {
                    file: source.name().to_owned(),
                    section: SECTION,
                    offset: start,
                    detail: format!("symbol {symbol:?} is not above the one before it"),
                });
            }
            previous = Some(symbol);
        }
        Ok(Self {
            section_offset: offset,
            end: decoder.offset(),
            count,
            samples,
        })
    }

    /// How many symbols there are.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The symbol with ordinal `ordinal`.
    pub fn lookup<'a>(&self, source: &'a dyn ByteSource, ordinal: u64) -> Result<&'a str> {
        if ordinal >= u64::from(self.count) {
            return Err(Error::Corrupt {
                file: source.name().to_owned(),
                section: SECTION,
                offset: self.section_offset,
                detail: format!("symbol {ordinal} out of range ({} symbols)", self.count),
            });
        }
        let ordinal = ordinal as usize;
        let mut decoder = self.decoder_at(source, self.samples[ordinal / SAMPLING_FACTOR])?;
        for _ in 0..ordinal % SAMPLING_FACTOR {
            decoder
                .uvarint_str()
                .map_err(|e| e.in_section(source.name(), SECTION))?;
        }
        decoder
            .uvarint_str()
            .map_err(|e| e.in_section(source.name(), SECTION))
    }

    /// The ordinal of `symbol`, if the table has it.
    pub fn reverse_lookup(&self, source: &dyn ByteSource, symbol: &str) -> Result<Option<u32>> {
        // The last sample whose symbol is <= the one sought.
        let mut low = 0usize;
        let mut high = self.samples.len();
        while low < high {
            let middle = low + (high - low) / 2;
            let sampled = self
                .decoder_at(source, self.samples[middle])?
                .uvarint_str()
                .map_err(|e| e.in_section(source.name(), SECTION))?;
            if sampled <= symbol {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        if low == 0 {
            return Ok(None);
        }
        let first = (low - 1) * SAMPLING_FACTOR;
        let last = (first + SAMPLING_FACTOR).min(self.count as usize);
        let mut decoder = self.decoder_at(source, self.samples[low - 1])?;
        for ordinal in first..last {
            let candidate = decoder
                .uvarint_str()
                .map_err(|e| e.in_section(source.name(), SECTION))?;
            if candidate == symbol {
                return Ok(Some(ordinal as u32));
            }
            if candidate > symbol {
                break;
            }
        }
        Ok(None)
    }

    /// Every symbol, in order.
    pub fn all<'a>(&self, source: &'a dyn ByteSource) -> Result<Vec<&'a str>> {
        let Some(first) = self.samples.first() else {
            return Ok(Vec::new());
        };
        let mut decoder = self.decoder_at(source, *first)?;
        let mut symbols = Vec::with_capacity(self.count as usize);
        for _ in 0..self.count {
            symbols.push(
                decoder
                    .uvarint_str()
                    .map_err(|e| e.in_section(source.name(), SECTION))?,
            );
        }
        Ok(symbols)
    }

    fn decoder_at<'a>(&self, source: &'a dyn ByteSource, offset: u64) -> Result<Decoder<'a>> {
        let bytes = source.read(offset, self.end.saturating_sub(offset), SECTION)?;
        Ok(Decoder::new(bytes, offset))
    }
}
