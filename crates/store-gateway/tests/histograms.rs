//! Native histogram chunks (Prometheus encodings 2 and 3) pass through the store gateway: a
//! block written with hand-encoded histogram and float-histogram chunks is served by Series
//! with Thanos' chunk encodings HISTOGRAM (1) and FLOAT_HISTOGRAM (2) and the bytes unchanged.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use prom_model::Labels;
use storeapi::proto::thanos;
use tsdb_block::chunkenc::Encoding;
use tsdb_block::meta::{BlockMeta, ThanosMeta};
use tsdb_block::writer::{BlockWriter, ChunkData, symbols_of};

/// Writes bits most significant first, as Prometheus' bit stream does.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: u8,
}

impl BitWriter {
    fn bit(&mut self, bit: bool) {
        if self.bits == 0 {
            self.bytes.push(0);
        }
        if bit {
            *self.bytes.last_mut().unwrap() |= 0x80 >> self.bits;
        }
        self.bits = (self.bits + 1) % 8;
    }

    fn bits(&mut self, value: u64, count: u32) {
        for shift in (0..count).rev() {
            self.bit((value >> shift) & 1 == 1);
        }
    }

    fn byte(&mut self, value: u8) {
        self.bits(u64::from(value), 8);
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> bool {
        let bit = self.bytes[self.position / 8] & (0x80 >> (self.position % 8)) != 0;
        self.position += 1;
        bit
    }

    fn bits(&mut self, count: u32) -> u64 {
        (0..count).fold(0, |value, _| (value << 1) | u64::from(self.bit()))
    }
}

/// Widths of the varbit buckets after their 1..8 bit prefixes `10`, `110`, ... `11111111`.
const VARBIT_WIDTHS: [u32; 8] = [3, 6, 9, 12, 18, 25, 56, 64];

/// Prometheus' varbit integer: `0` for zero, else a prefix of ones naming the bucket, then the
/// value's two's complement in the bucket's width.
fn put_varbit_int(writer: &mut BitWriter, value: i64) {
    if value == 0 {
        writer.bit(false);
        return;
    }
    for (index, width) in VARBIT_WIDTHS.iter().enumerate() {
        let limit = 1i64.checked_shl(width - 1).unwrap_or(i64::MAX);
        if *width == 64 || (-(limit - 1) <= value && value <= limit) {
            let ones = index as u32 + 1;
            writer.bits((1 << ones) - 1, ones);
            if ones < 8 {
                writer.bit(false);
            }
            let mask = if *width == 64 {
                u64::MAX
            } else {
                (1 << width) - 1
            };
            writer.bits(value as u64 & mask, *width);
            return;
        }
    }
}

fn put_varbit_uint(writer: &mut BitWriter, value: u64) {
    if value == 0 {
        writer.bit(false);
        return;
    }
    for (index, width) in VARBIT_WIDTHS.iter().enumerate() {
        if *width == 64 || value < 1 << width {
            let ones = index as u32 + 1;
            writer.bits((1 << ones) - 1, ones);
            if ones < 8 {
                writer.bit(false);
            }
            writer.bits(value, *width);
            return;
        }
    }
}

fn read_bucket(reader: &mut BitReader<'_>) -> Option<u32> {
    let mut ones = 0;
    while ones < 8 && reader.bit() {
        ones += 1;
    }
    (ones > 0).then(|| VARBIT_WIDTHS[ones - 1])
}

fn read_varbit_int(reader: &mut BitReader<'_>) -> i64 {
    let Some(width) = read_bucket(reader) else {
        return 0;
    };
    let raw = reader.bits(width);
    if width == 64 {
        return raw as i64;
    }
    // Values above 2^(width-1) are negative.
    if raw > 1 << (width - 1) {
        raw as i64 - (1 << width)
    } else {
        raw as i64
    }
}

fn read_varbit_uint(reader: &mut BitReader<'_>) -> u64 {
    read_bucket(reader).map_or(0, |width| reader.bits(width))
}

/// One native histogram sample: schema 0, zero threshold 0, one positive span of two buckets.
#[derive(Debug, PartialEq)]
struct Sample {
    t: i64,
    count: u64,
    zero_count: u64,
    sum: f64,
    /// Absolute bucket counts.
    buckets: [u64; 2],
}

/// The chunk header shared by both encodings: count 1, flags 0 (reset unknown), zero threshold
/// 0, schema 0, one positive span (length 2, offset 0), no negative spans.
fn header(writer: &mut BitWriter) {
    writer.bits(1, 16);
    writer.byte(0);
    writer.byte(0);
    put_varbit_int(writer, 0);
    put_varbit_uint(writer, 1);
    put_varbit_uint(writer, 2);
    put_varbit_int(writer, 0);
    put_varbit_uint(writer, 0);
}

/// An integer histogram chunk (encoding 2) of one sample; buckets stored as deltas.
fn histogram_chunk(sample: &Sample) -> Vec<u8> {
    let mut writer = BitWriter::default();
    header(&mut writer);
    put_varbit_int(&mut writer, sample.t);
    put_varbit_uint(&mut writer, sample.count);
    put_varbit_uint(&mut writer, sample.zero_count);
    writer.bits(sample.sum.to_bits(), 64);
    put_varbit_int(&mut writer, sample.buckets[0] as i64);
    put_varbit_int(
        &mut writer,
        sample.buckets[1] as i64 - sample.buckets[0] as i64,
    );
    writer.bytes
}

/// A float histogram chunk (encoding 3) of one sample: every value a raw float64.
fn float_histogram_chunk(sample: &Sample) -> Vec<u8> {
    let mut writer = BitWriter::default();
    header(&mut writer);
    put_varbit_int(&mut writer, sample.t);
    for value in [
        sample.count as f64,
        sample.zero_count as f64,
        sample.sum,
        sample.buckets[0] as f64,
        sample.buckets[1] as f64,
    ] {
        writer.bits(value.to_bits(), 64);
    }
    writer.bytes
}

/// Reads the header back, checking every layout field.
fn read_header<'a>(data: &'a [u8]) -> BitReader<'a> {
    let mut reader = BitReader {
        bytes: data,
        position: 0,
    };
    assert_eq!(reader.bits(16), 1, "sample count");
    assert_eq!(reader.bits(8), 0, "flags");
    assert_eq!(reader.bits(8), 0, "zero threshold");
    assert_eq!(read_varbit_int(&mut reader), 0, "schema");
    assert_eq!(read_varbit_uint(&mut reader), 1, "positive spans");
    assert_eq!(read_varbit_uint(&mut reader), 2, "span length");
    assert_eq!(read_varbit_int(&mut reader), 0, "span offset");
    assert_eq!(read_varbit_uint(&mut reader), 0, "negative spans");
    reader
}

fn decode_histogram(data: &[u8]) -> Sample {
    let mut reader = read_header(data);
    let t = read_varbit_int(&mut reader);
    let count = read_varbit_uint(&mut reader);
    let zero_count = read_varbit_uint(&mut reader);
    let sum = f64::from_bits(reader.bits(64));
    let first = read_varbit_int(&mut reader);
    let second = first + read_varbit_int(&mut reader);
    assert!(data.len() * 8 - reader.position < 8, "only padding is left");
    Sample {
        t,
        count,
        zero_count,
        sum,
        buckets: [first as u64, second as u64],
    }
}

fn decode_float_histogram(data: &[u8]) -> Sample {
    let mut reader = read_header(data);
    let t = read_varbit_int(&mut reader);
    let mut values = [0f64; 5];
    for value in &mut values {
        *value = f64::from_bits(reader.bits(64));
    }
    assert!(data.len() * 8 - reader.position < 8, "only padding is left");
    Sample {
        t,
        count: values[0] as u64,
        zero_count: values[1] as u64,
        sum: values[2],
        buckets: [values[3] as u64, values[4] as u64],
    }
}

#[test]
fn hand_encoded_histogram_chunks_round_trip() {
    for t in [
        0,
        1,
        -3,
        4,
        1_700_000_000_000,
        -1_700_000_000_000,
        i64::MAX,
        i64::MIN,
    ] {
        let sample = Sample {
            t,
            count: 6,
            zero_count: 1,
            sum: 7.5,
            buckets: [3, 2],
        };
        assert_eq!(decode_histogram(&histogram_chunk(&sample)), sample);
        assert_eq!(
            decode_float_histogram(&float_histogram_chunk(&sample)),
            sample
        );
    }
    // Small values take the short buckets: `10` + 3 bits, `110` + 6 bits.
    let mut writer = BitWriter::default();
    put_varbit_int(&mut writer, -1);
    put_varbit_uint(&mut writer, 9);
    assert_eq!(writer.bytes, vec![0b1011_1110, 0b0010_0100]);
}

#[test]
fn series_returns_histogram_chunks_unchanged_with_thanos_encodings() {
    let t0 = START * 1000;
    let sample = Sample {
        t: t0,
        count: 6,
        zero_count: 1,
        sum: 7.5,
        buckets: [3, 2],
    };
    let histogram = histogram_chunk(&sample);
    let float_histogram = float_histogram_chunk(&Sample {
        t: t0 + 60_000,
        ..sample
    });
    let bucket = tempfile::tempdir().unwrap();
    let series = [
        Labels::from_pairs([("__name__", "h_float"), ("job", "a")]),
        Labels::from_pairs([("__name__", "h_int"), ("job", "a")]),
        Labels::from_pairs([("__name__", "x_float"), ("job", "a")]),
    ];
    let mut writer = BlockWriter::create(bucket.path(), symbols_of(&series)).unwrap();
    writer
        .add_series(
            &series[0],
            &[ChunkData {
                min_time: t0 + 60_000,
                max_time: t0 + 60_000,
                encoding: Encoding::FloatHistogram,
                data: &float_histogram,
            }],
        )
        .unwrap();
    writer
        .add_series(
            &series[1],
            &[ChunkData {
                min_time: t0,
                max_time: t0,
                encoding: Encoding::Histogram,
                data: &histogram,
            }],
        )
        .unwrap();
    writer
        .add_series_samples(&series[2], &[(t0, 1.0), (t0 + 60_000, 2.0)])
        .unwrap();
    let (_, dir) = writer.finish().unwrap();
    let mut meta = BlockMeta::read_from_dir(&dir).unwrap();
    let external = BTreeMap::from([("cluster".to_owned(), "eu1".to_owned())]);
    meta.thanos = Some(ThanosMeta::new(external, 0, "test"));
    meta.write_to_dir(&dir).unwrap();

    let gateway = Gateway::start(&fs_objstore(bucket.path()), &[]).unwrap();
    let result = runtime()
        .block_on(series_of(&gateway, vec![eq("job", "a")]))
        .unwrap();
    let by_name: BTreeMap<String, &thanos::Series> = result
        .series
        .iter()
        .map(|series| {
            let name = series
                .labels
                .iter()
                .find(|label| label.name == "__name__")
                .map(|label| label.value.clone())
                .unwrap_or_default();
            (name, series)
        })
        .collect();
    assert_eq!(
        by_name.keys().collect::<Vec<_>>(),
        ["h_float", "h_int", "x_float"]
    );
    let only_chunk = |name: &str| -> thanos::Chunk {
        let series = by_name[name];
        assert!(
            series
                .labels
                .iter()
                .any(|label| label.name == "cluster" && label.value == "eu1"),
            "{name}: external label"
        );
        assert_eq!(series.chunks.len(), 1, "{name}: chunks");
        series.chunks[0].raw.clone().unwrap()
    };
    let int_chunk = only_chunk("h_int");
    assert_eq!(int_chunk.r#type, 1, "HISTOGRAM");
    assert_eq!(int_chunk.r#type, thanos::chunk::Encoding::Histogram as i32);
    assert_eq!(int_chunk.data, histogram);
    assert_eq!(decode_histogram(&int_chunk.data), sample);
    let float_chunk = only_chunk("h_float");
    assert_eq!(float_chunk.r#type, 2, "FLOAT_HISTOGRAM");
    assert_eq!(
        float_chunk.r#type,
        thanos::chunk::Encoding::FloatHistogram as i32
    );
    assert_eq!(float_chunk.data, float_histogram);
    assert_eq!(decode_float_histogram(&float_chunk.data).t, t0 + 60_000);
    let xor_chunk = only_chunk("x_float");
    assert_eq!(xor_chunk.r#type, 0, "XOR");
    let by_name_xor = by_name["x_float"];
    assert_eq!(by_name_xor.chunks[0].min_time, t0);
    assert_eq!(by_name_xor.chunks[0].max_time, t0 + 60_000);
    assert_eq!(by_name["h_int"].chunks[0].min_time, t0);
}

async fn series_of(
    gateway: &Gateway,
    matchers: Vec<thanos::LabelMatcher>,
) -> Result<storeapi::testing::SeriesResult, tonic::Status> {
    series(gateway, request(matchers)).await
}
