//! The index file, format v2: symbols, series, postings, the postings offset table and the TOC.
//!
//! [`IndexWriter`] writes the layout current Prometheus writes (no legacy label indices: the TOC's
//! label-index and label-offset-table fields point at the postings and the postings offset table,
//! which is what upstream does since 3.7; Prometheus 2.42's reader never reads those sections).
//! [`IndexReader`] reads it over any [`ByteSource`](crate::source::ByteSource), keeping only the
//! TOC, a sample of the symbols and a sample of the postings offset table in memory, as upstream.
//! [`postings_for_matchers`] selects series with Prometheus' matcher semantics.

mod matchers;
mod reader;
mod spill;
mod symbols;
mod writer;

pub use matchers::postings_for_matchers;
pub use reader::{IndexReader, SeriesEntry};
pub use symbols::Symbols;
pub use writer::IndexWriter;

use crate::encoding::{Decoder, Encoder};
use crate::error::{Error, Result};

/// The magic number at the start of an index file.
pub const MAGIC: u32 = 0xBAAA_D700;
/// Index format version 1 (legacy: symbol references are byte offsets).
pub const FORMAT_V1: u8 = 1;
/// Index format version 2 (symbol references are ordinals).
pub const FORMAT_V2: u8 = 2;
/// Size of the header: magic and version.
pub const HEADER_LEN: u64 = 5;
/// Size of the table of contents at the end of the file.
pub const TOC_LEN: u64 = 6 * 8 + 4;
/// Series entries start at multiples of this; a series reference is the offset divided by it.
pub const SERIES_ALIGNMENT: u64 = 16;
/// Every how many entries the readers keep a symbol or a postings offset table value in memory.
pub const SAMPLING_FACTOR: usize = 32;

/// One chunk of a series as the index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkMeta {
    /// Timestamp of the chunk's first sample (ms, inclusive).
    pub min_time: i64,
    /// Timestamp of the chunk's last sample (ms, inclusive).
    pub max_time: i64,
    /// Where the chunk is: `(segment index << 32) | offset in the segment`.
    pub chunk_ref: u64,
}

/// The table of contents: absolute offsets of the sections (0 = absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Toc {
    /// Symbol table.
    pub symbols: u64,
    /// First series entry (before its alignment padding).
    pub series: u64,
    /// Legacy label indices (equal to `postings` when not written).
    pub label_indices: u64,
    /// Legacy label offset table (equal to `postings_table` when not written).
    pub label_indices_table: u64,
    /// First postings list (before its alignment padding).
    pub postings: u64,
    /// Postings offset table.
    pub postings_table: u64,
}

impl Toc {
    /// Decodes the TOC from the last [`TOC_LEN`] bytes of an index of `file_len` bytes.
    pub fn decode(bytes: &[u8], file_len: u64) -> Result<Self> {
        let base = file_len.saturating_sub(TOC_LEN);
        let corrupt = |detail: String| Error::Corrupt {
            file: "index".to_owned(),
            section: "toc",
            offset: base,
            detail,
        };
        if bytes.len() as u64 != TOC_LEN {
            return Err(corrupt(format!(
                "toc needs {TOC_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let (body, checksum) = bytes.split_at(48);
        let mut decoder = Decoder::new(bytes, base);
        let expected = crate::encoding::crc32c(body);
        let read =
            |decoder: &mut Decoder<'_>| decoder.be_u64().map_err(|e| e.in_section("index", "toc"));
        let toc = Self {
            symbols: read(&mut decoder)?,
            series: read(&mut decoder)?,
            label_indices: read(&mut decoder)?,
            label_indices_table: read(&mut decoder)?,
            postings: read(&mut decoder)?,
            postings_table: read(&mut decoder)?,
        };
        let stored = u32::from_be_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
        if stored != expected {
            return Err(corrupt(format!(
                "checksum mismatch: stored {stored:#010x}, computed {expected:#010x}"
            )));
        }
        for (name, offset) in [
            ("symbol table", toc.symbols),
            ("series", toc.series),
            ("postings", toc.postings),
            ("postings offset table", toc.postings_table),
        ] {
            if offset > base {
                return Err(corrupt(format!("{name} offset {offset} is past the toc")));
            }
        }
        Ok(toc)
    }

    /// The 52 encoded bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut encoder = Encoder::with_capacity(TOC_LEN as usize);
        for offset in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ] {
            encoder.put_be_u64(offset);
        }
        encoder.put_crc32c_since(0);
        encoder.into_vec()
    }
}

/// Reads a section written as `len` (u32 BE), `len` bytes, CRC32C of those bytes; checks the CRC
/// and returns the body with its absolute offset.
pub(crate) fn read_section<'a>(
    source: &'a dyn crate::source::ByteSource,
    offset: u64,
    section: &'static str,
) -> Result<(&'a [u8], u64)> {
    let length_bytes = source.read(offset, 4, section)?;
    let length = u64::from(u32::from_be_bytes([
        length_bytes[0],
        length_bytes[1],
        length_bytes[2],
        length_bytes[3],
    ]));
    let body_offset = offset + 4;
    let body = source.read(body_offset, length, section)?;
    let checksum_bytes = source.read(body_offset + length, 4, section)?;
    let stored = u32::from_be_bytes([
        checksum_bytes[0],
        checksum_bytes[1],
        checksum_bytes[2],
        checksum_bytes[3],
    ]);
    let computed = crate::encoding::crc32c(body);
    if stored != computed {
        return Err(Error::Corrupt {
            file: source.name().to_owned(),
            section,
            offset,
            detail: format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        });
    }
    Ok((body, body_offset))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prom_model::{Labels, MatchType, Matcher};

    use super::*;
    use crate::postings::collect;
    use crate::source::MemorySource;

    fn series_set(count: usize) -> Vec<Labels> {
        let mut all: Vec<Labels> = (0..count)
            .map(|index| {
                let mut labels = Labels::from_pairs([
                    ("__name__", format!("metric_{}", index % 3)),
                    ("instance", format!("host-{}", index % 7)),
                ]);
                if index % 2 == 0 {
                    labels.set("job", if index % 4 == 0 { "api" } else { "db" });
                }
                if index % 5 == 0 {
                    labels.set("path", format!("/a b \\\"q\" ü {index}"));
                }
                labels.set("id", index.to_string());
                labels
            })
            .collect();
        all.sort();
        all
    }

    fn write_index(series: &[Labels]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let symbols: BTreeSet<String> = series
            .iter()
            .flat_map(|labels| {
                labels
                    .iter()
                    .flat_map(|l| [l.name.clone(), l.value.clone()])
            })
            .collect();
        let mut writer = IndexWriter::create(&path, symbols).unwrap();
        for (index, labels) in series.iter().enumerate() {
            let base = 8 + index as u64 * 100;
            let chunks = [
                ChunkMeta {
                    min_time: -5,
                    max_time: 10,
                    chunk_ref: base,
                },
                ChunkMeta {
                    min_time: 11,
                    max_time: 11,
                    chunk_ref: base + 50,
                },
            ];
            writer.add_series(labels, &chunks[..index % 3]).unwrap();
        }
        writer.finish().unwrap();
        std::fs::read(&path).unwrap()
    }

    fn open(bytes: Vec<u8>) -> Result<IndexReader> {
        IndexReader::new(Box::new(MemorySource::new("index", bytes)))
    }

    fn check_matchers(reader: &IndexReader, series: &[Labels], matchers: &[Matcher]) {
        let refs = collect(postings_for_matchers(reader, matchers).unwrap());
        let selected: Vec<Labels> = refs
            .iter()
            .map(|r| reader.series(*r).unwrap().labels)
            .collect();
        let expected: Vec<Labels> = if matchers.is_empty() {
            Vec::new()
        } else {
            series
                .iter()
                .filter(|labels| {
                    matchers
                        .iter()
                        .all(|m| m.matches(labels.get(m.name()).unwrap_or("")))
                })
                .cloned()
                .collect()
        };
        assert_eq!(selected, expected, "{matchers:?}");
    }

    #[test]
    fn written_index_reads_back() {
        let series = series_set(500);
        let reader = open(write_index(&series)).unwrap();
        assert_eq!(
            reader.label_names(),
            vec!["__name__", "id", "instance", "job", "path"]
        );
        assert_eq!(reader.label_values("job").unwrap(), vec!["api", "db"]);
        assert_eq!(reader.label_values("id").unwrap().len(), 500);
        assert!(reader.label_values("nope").unwrap().is_empty());
        let all = collect(reader.all_postings().unwrap());
        assert_eq!(all.len(), 500);
        for (index, series_ref) in all.iter().enumerate() {
            let entry = reader.series(*series_ref).unwrap();
            assert_eq!(entry.labels, series[index]);
            assert_eq!(entry.chunks.len(), index % 3);
            if index % 3 == 2 {
                assert_eq!(
                    entry.chunks[1],
                    ChunkMeta {
                        min_time: 11,
                        max_time: 11,
                        chunk_ref: 8 + index as u64 * 100 + 50
                    }
                );
            }
        }
        let values: Vec<&str> = reader.label_values("id").unwrap();
        for value in values.iter().step_by(7) {
            let refs = collect(reader.postings("id", &[value]).unwrap());
            assert_eq!(refs.len(), 1);
            assert_eq!(
                reader.series(refs[0]).unwrap().labels.get("id"),
                Some(*value)
            );
        }
        assert!(collect(reader.postings("id", &["x"]).unwrap()).is_empty());
        assert!(collect(reader.postings("id", &["0"]).unwrap()).len() == 1);
    }

    /// The symbol table and the postings offset table reach the file in 64 KiB pieces; tables of
    /// several pieces must read back whole, checksums included.
    #[test]
    fn tables_larger_than_one_write_piece_read_back() {
        let series: Vec<Labels> = {
            let mut all: Vec<Labels> = (0..6000)
                .map(|index| {
                    Labels::from_pairs([
                        ("__name__", "requests_total".to_owned()),
                        ("path", format!("/api/v1/some/rather/long/path/{index:06}")),
                    ])
                })
                .collect();
            all.sort();
            all
        };
        let reader = open(write_index(&series)).unwrap();
        let toc = reader.toc();
        assert!(
            toc.series - toc.symbols > 3 << 16,
            "symbol table spans pieces"
        );
        assert!(
            reader.source().len() - toc.postings_table > 3 << 16,
            "postings offset table spans pieces"
        );
        let mut expected: Vec<String> = series
            .iter()
            .flat_map(|labels| {
                labels
                    .iter()
                    .flat_map(|l| [l.name.clone(), l.value.clone()])
                    .collect::<Vec<_>>()
            })
            .collect();
        expected.sort();
        expected.dedup();
        assert_eq!(reader.all_symbols().unwrap(), expected);
        let values = reader.label_values("path").unwrap();
        assert_eq!(values.len(), 6000);
        for (index, value) in values.iter().enumerate().step_by(97) {
            let refs = collect(reader.postings("path", &[value]).unwrap());
            assert_eq!(refs.len(), 1);
            assert_eq!(reader.series(refs[0]).unwrap().labels, series[index]);
        }
    }

    #[test]
    fn matchers_select_like_prometheus() {
        let series = series_set(200);
        let reader = open(write_index(&series)).unwrap();
        let m = |kind, name: &str, value: &str| Matcher::new(kind, name, value).unwrap();
        use MatchType::*;
        let cases: Vec<Vec<Matcher>> = vec![
            vec![],
            vec![m(Equal, "job", "api")],
            vec![m(Equal, "job", "")],
            vec![m(NotEqual, "job", "")],
            vec![m(NotEqual, "job", "api")],
            vec![m(Regex, "job", "api|db"), m(Equal, "__name__", "metric_1")],
            vec![m(Regex, "job", ".*"), m(NotRegex, "instance", "host-[1-3]")],
            vec![m(Regex, "job", ".+"), m(NotEqual, "job", "db")],
            vec![m(Regex, "job", "|api"), m(Equal, "__name__", "metric_2")],
            vec![m(NotRegex, "path", ".*ü.*")],
            vec![
                m(Regex, "instance", "host-(1|2)"),
                m(Regex, "id", "1.*"),
                m(NotEqual, "job", "api"),
            ],
            vec![m(Equal, "nope", "x")],
            vec![m(Equal, "nope", "")],
            vec![m(Regex, "__name__", "(?s:.*)")],
            vec![m(Equal, "job", "none")],
        ];
        for matchers in cases {
            check_matchers(&reader, &series, &matchers);
        }
    }

    #[test]
    fn reads_from_prefetched_ranges_only() {
        let series = series_set(100);
        let bytes = write_index(&series);
        let toc =
            Toc::decode(&bytes[bytes.len() - TOC_LEN as usize..], bytes.len() as u64).unwrap();
        let range = |from: u64, to: u64| bytes[from as usize..to as usize].to_vec();
        let mut source = crate::source::RangesSource::new("index", bytes.len() as u64);
        // What a store gateway keeps: header, symbols, postings offset table and TOC.
        source.insert(0, range(0, toc.series)).unwrap();
        source
            .insert(
                toc.postings_table,
                range(toc.postings_table, bytes.len() as u64),
            )
            .unwrap();
        let reader = IndexReader::new(Box::new(source.clone())).unwrap();
        assert_eq!(reader.label_values("job").unwrap(), vec!["api", "db"]);
        let error = reader.postings("job", &["api"]).map(collect).unwrap_err();
        assert!(error.to_string().contains("not fetched"), "{error}");
        // Fetch postings and series, then everything reads.
        source
            .insert(toc.series, range(toc.series, toc.postings))
            .unwrap();
        source
            .insert(toc.postings, range(toc.postings, toc.postings_table))
            .unwrap();
        let reader = IndexReader::new(Box::new(source)).unwrap();
        let matchers = [Matcher::new(MatchType::Equal, "job", "api").unwrap()];
        check_matchers(&reader, &series, &matchers);
    }

    #[test]
    fn empty_index_is_readable() {
        let reader = open(write_index(&[])).unwrap();
        assert!(reader.label_names().is_empty());
        assert!(collect(reader.all_postings().unwrap()).is_empty());
    }

    #[test]
    fn corrupt_bytes_give_errors_not_panics() {
        let bytes = write_index(&series_set(20));
        let mut errors = 0;
        for position in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[position] ^= flip;
                let Ok(reader) = open(damaged) else {
                    errors += 1;
                    continue;
                };
                let Ok(mut refs) = reader.all_postings().map(collect) else {
                    errors += 1;
                    continue;
                };
                refs.extend([0, 1, 1 << 40, u64::MAX]);
                for series_ref in refs {
                    let _ = reader.series(series_ref);
                }
                for name in reader.label_names() {
                    let _ = reader.label_values(name);
                }
            }
        }
        assert!(errors > bytes.len(), "{errors}");
        for length in 0..bytes.len() {
            assert!(open(bytes[..length].to_vec()).is_err(), "{length}");
        }
    }

    #[test]
    fn toc_round_trips_and_checks_its_crc() {
        let toc = Toc {
            symbols: 5,
            series: 40,
            label_indices: 100,
            label_indices_table: 200,
            postings: 100,
            postings_table: 200,
        };
        let mut bytes = toc.encode();
        assert_eq!(Toc::decode(&bytes, 300).unwrap(), toc);
        bytes[3] ^= 1;
        let error = Toc::decode(&bytes, 300).unwrap_err();
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
    }
}
