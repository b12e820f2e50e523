use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const STALE_NAN: u64 = 0x7FF0_0000_0000_0002;

/// Encodes `samples`, checks the bytes decode back bit for bit and returns the chunk data.
fn check_round_trip(samples: &[(i64, f64)]) -> Vec<u8> {
    let encoder = encode_xor(samples);
    assert_eq!(usize::from(encoder.num_samples()), samples.len());
    assert_eq!(encoder.len(), encoder.bytes().len());
    let decoded = decode_xor(encoder.bytes()).unwrap();
    assert_eq!(decoded.len(), samples.len());
    for (index, (got, want)) in decoded.iter().zip(samples).enumerate() {
        assert_eq!(got.0, want.0, "timestamp of sample {index}");
        assert_eq!(
            got.1.to_bits(),
            want.1.to_bits(),
            "value bits of sample {index}"
        );
    }
    encoder.into_bytes()
}

#[test]
fn empty_chunk_is_the_zero_count() {
    let encoder = XorEncoder::new();
    assert_eq!(encoder.bytes(), &[0, 0]);
    assert!(encoder.is_empty());
    assert_eq!(XorIterator::new(&[0, 0]).count(), 0);
}

#[test]
fn golden_bytes_of_a_small_chunk_computed_by_hand() {
    // t0=1000 -> zig-zag 2000 -> d0 0f; 1.0 -> 3ff0..; delta 1000 -> e8 07; value unchanged: 0;
    // dod 0: 0; 2.0 ^ 1.0 = 0x7ff0.. -> 1 1 00001 001011 11111111111, zero padded.
    let bytes = check_round_trip(&[(1000, 1.0), (2000, 1.0), (3000, 2.0)]);
    let expected = [
        0x00, 0x03, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xe8, 0x07, 0x30, 0x97, 0xff, 0xc0,
    ];
    assert_eq!(bytes, expected);
}

/// The samples of `testdata/promtool-edge-values.om` (3.14159 is a value there, not an attempt at π).
#[allow(clippy::approx_constant)]
fn promtool_edge_samples() -> Vec<(i64, f64)> {
    vec![
        (1000, 1.0),
        (2000, 1.0),
        (3000, 2.0),
        (4005, 2.5),
        (5000, -0.0),
        (5001, f64::INFINITY),
        (9000, f64::NEG_INFINITY),
        (79_000, 1e300),
        (679_000, 3.14159),
        (2_000_000, 3.14159),
        (2_000_015, 42.0),
        (2_000_030, 7e-300),
    ]
}

#[test]
fn matches_a_chunk_written_by_prometheus() {
    let segment = include_bytes!("../../testdata/promtool-edge-values-000001");
    // Segment header (8 bytes), uvarint length 0x63, encoding 1, data, CRC.
    assert_eq!(segment[8], 0x63);
    assert_eq!(segment[9], 1);
    let data = &segment[10..10 + 0x63];
    let samples = promtool_edge_samples();
    let decoded = decode_xor(data).unwrap();
    assert_eq!(decoded.len(), samples.len());
    for (got, want) in decoded.iter().zip(&samples) {
        assert_eq!(got.0, want.0);
        assert_eq!(got.1.to_bits(), want.1.to_bits());
    }
    assert_eq!(check_round_trip(&samples), data);
}

#[test]
fn special_values_round_trip_bit_for_bit() {
    let values = [
        f64::NAN,
        f64::from_bits(STALE_NAN),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::MAX,
        f64::MIN,
        f64::from_bits(STALE_NAN),
        1.0,
        f64::from_bits(u64::MAX),
        f64::from_bits(0x8000_0000_0000_0001),
    ];
    let samples: Vec<(i64, f64)> = values
        .iter()
        .enumerate()
        .map(|(index, &value)| (index as i64 * 15_000, value))
        .collect();
    check_round_trip(&samples);
}

#[test]
fn timestamp_extremes_and_every_delta_of_delta_bucket_round_trip() {
    let mut timestamps = vec![0i64, 10, 20, 19, 25];
    let mut t = 25i64;
    let mut delta = 6i64;
    // Step through the edges of each bucket, both signs, including the asymmetric limits.
    for dod in [
        0,
        1,
        -1,
        8191,
        8192,
        -8191,
        -8192,
        8193,
        65535,
        65536,
        -65535,
        -65536,
        65537,
        524287,
        524288,
        -524287,
        -524288,
        524289,
        1 << 40,
        -(1 << 40),
        0,
        0,
    ] {
        delta += dod;
        t += delta;
        timestamps.push(t);
    }
    let mut samples: Vec<(i64, f64)> = timestamps.into_iter().map(|t| (t, t as f64)).collect();
    check_round_trip(&samples);
    // Negative first timestamp, backwards second sample, and the extremes of i64.
    samples = vec![
        (-5_000, 1.0),
        (-10_000, 2.0),
        (i64::MAX, 3.0),
        (i64::MIN, 4.0),
        (0, 5.0),
        (i64::MAX, 6.0),
    ];
    check_round_trip(&samples);
}

#[test]
fn one_sample_and_the_maximum_sample_count() {
    check_round_trip(&[(i64::MIN, f64::from_bits(STALE_NAN))]);
    let samples: Vec<(i64, f64)> = (0..i64::from(u16::MAX))
        .map(|index| (index * 1000, (index % 13) as f64))
        .collect();
    check_round_trip(&samples);
    let mut encoder = encode_xor(&samples);
    assert_eq!(encoder.num_samples(), u16::MAX);
    let before = encoder.bytes().to_vec();
    assert!(!encoder.append(1 << 40, 1.0));
    assert_eq!(encoder.bytes(), before);
}

#[test]
fn random_series_round_trip() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let count = rng.random_range(1..400);
        let mut t: i64 = rng.random_range(-1_000_000..1_000_000_000_000);
        let mut samples = Vec::with_capacity(count);
        let mut value: f64 = rng.random_range(-1e6..1e6);
        for _ in 0..count {
            t += match rng.random_range(0..10) {
                0 => rng.random_range(1..i64::from(u32::MAX)),
                1..=3 => rng.random_range(1..100),
                _ => 15_000,
            };
            value = match rng.random_range(0..6) {
                0 => f64::from_bits(rng.random()),
                1 => value + 1.0,
                2 => value,
                3 => value * 1.0001,
                4 => rng.random_range(0..10) as f64,
                _ => -value,
            };
            samples.push((t, value));
        }
        check_round_trip(&samples);
    }
}

#[test]
fn truncated_chunks_report_an_error_with_offset() {
    let samples: Vec<(i64, f64)> = (0..50)
        .map(|index| (index * 15_000, index as f64 * 1.5))
        .collect();
    let bytes = check_round_trip(&samples);
    for cut in 0..bytes.len() {
        let mut iterator = XorIterator::with_offset(&bytes[..cut], 1000);
        let yielded = iterator.by_ref().count();
        assert!(yielded < samples.len(), "cut at {cut} yielded everything");
        let error = iterator.err().expect("a truncated chunk is an error");
        if cut >= 2 {
            assert_eq!(
                iterator.num_samples(),
                50,
                "the announced count survives the error"
            );
        }
        assert!(
            error.offset >= 1000 && error.offset <= 1000 + cut as u64,
            "{error:?}"
        );
    }
}

#[test]
fn arbitrary_bytes_never_panic_and_honour_the_count() {
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..20_000 {
        let length = rng.random_range(0..64);
        let mut bytes: Vec<u8> = (0..length).map(|_| rng.random()).collect();
        if length >= 2 && rng.random_bool(0.5) {
            bytes[0] = 0;
        }
        let mut iterator = XorIterator::new(&bytes);
        let total = iterator.num_samples();
        let yielded = iterator.by_ref().count();
        assert!(yielded <= usize::from(total));
        assert!(yielded == usize::from(total) || iterator.err().is_some());
    }
}

#[test]
fn flipped_bits_in_valid_chunks_never_panic() {
    let samples: Vec<(i64, f64)> = (0..120)
        .map(|index| (index * 15_000 + index % 3, (index as f64).sqrt()))
        .collect();
    let bytes = check_round_trip(&samples);
    for bit in 0..bytes.len() * 8 {
        let mut corrupt = bytes.clone();
        corrupt[bit / 8] ^= 0x80 >> (bit % 8);
        let mut iterator = XorIterator::new(&corrupt);
        let total = iterator.num_samples();
        assert!(iterator.by_ref().count() <= usize::from(total));
    }
}

#[test]
fn encoding_ids_match_prometheus() {
    for id in 0..=255u8 {
        if let Some(encoding) = Encoding::from_u8(id) {
            assert_eq!(encoding.as_u8(), id);
        }
    }
    assert_eq!(Encoding::from_u8(0), None);
    assert_eq!(Encoding::from_u8(1), Some(Encoding::Xor));
    assert_eq!(Encoding::from_u8(2), Some(Encoding::Histogram));
    assert_eq!(Encoding::from_u8(3), Some(Encoding::FloatHistogram));
    assert_eq!(Encoding::from_u8(7), None);
    assert_eq!(
        Encoding::Histogram.sample_count(&[0x01, 0x02, 0x40]),
        Some(258)
    );
    assert_eq!(
        Encoding::HistogramSt.sample_count(&[0xC1, 0x02, 0]),
        Some(258)
    );
    assert_eq!(Encoding::Xor.sample_count(&[1]), None);
    assert_eq!(Encoding::Xor.to_string(), "XOR");
}

/// A plain bit-at-a-time XOR decoder, written from the layout alone: the samples before the
/// first problem, and whether there was one.
fn reference_decode(data: &[u8]) -> (Vec<(i64, f64)>, bool) {
    let bit = |position: usize| -> Option<u64> {
        let byte = data.get(position / 8)?;
        Some(u64::from(byte >> (7 - position % 8) & 1))
    };
    let bits = |position: &mut usize, count: u32| -> Option<u64> {
        let mut value = 0u64;
        for _ in 0..count {
            value = (value << 1) | bit(*position)?;
            *position += 1;
        }
        Some(value)
    };
    let uvarint = |position: &mut usize| -> Option<u64> {
        let mut value = 0u64;
        for index in 0..10 {
            let byte = bits(position, 8)?;
            if index == 9 && byte > 1 {
                return None;
            }
            value |= (byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    };
    let mut samples = Vec::new();
    let Some(header) = data.first_chunk::<2>() else {
        return (samples, true);
    };
    let total = u16::from_be_bytes(*header);
    let mut position = 16;
    let (mut timestamp, mut delta, mut value, mut leading, mut significant) =
        (0i64, 0u64, 0u64, 0u32, 64u32);
    for index in 0..total {
        let step = (|| -> Option<()> {
            if index == 0 {
                let raw = uvarint(&mut position)?;
                timestamp = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
                value = bits(&mut position, 64)?;
                return Some(());
            }
            if index == 1 {
                delta = uvarint(&mut position)?;
            } else {
                let mut ones = 0;
                while ones < 4 && bit(position)? == 1 {
                    ones += 1;
                    position += 1;
                }
                if ones < 4 {
                    position += 1;
                }
                let width = [0, 14, 17, 20, 64][ones];
                let raw = bits(&mut position, width)?;
                let dod = if width == 0 || width == 64 || raw <= 1 << (width - 1) {
                    raw
                } else {
                    raw.wrapping_sub(1 << width)
                };
                delta = delta.wrapping_add(dod);
            }
            timestamp = timestamp.wrapping_add(delta as i64);
            if bits(&mut position, 1)? == 1 {
                if bits(&mut position, 1)? == 1 {
                    leading = bits(&mut position, 5)? as u32;
                    significant = match bits(&mut position, 6)? as u32 {
                        0 => 64,
                        count => count,
                    };
                    if leading + significant > 64 {
                        return None;
                    }
                }
                let payload = bits(&mut position, significant)?;
                value ^= payload << (64 - leading - significant);
            }
            Some(())
        })();
        if step.is_none() {
            return (samples, true);
        }
        samples.push((timestamp, f64::from_bits(value)));
    }
    (samples, false)
}

/// Decodes `data` with `next` and with `decode_xor` and checks both against
/// [`reference_decode`].
fn check_against_reference(data: &[u8]) {
    let (want, want_error) = reference_decode(data);
    let bits_of = |samples: &[(i64, f64)]| -> Vec<(i64, u64)> {
        samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    };
    let mut iterator = XorIterator::new(data);
    let by_next: Vec<(i64, f64)> = iterator.by_ref().collect();
    assert_eq!(bits_of(&by_next), bits_of(&want), "next() on {data:02x?}");
    assert_eq!(
        iterator.err().is_some(),
        want_error,
        "next() error on {data:02x?}"
    );
    match decode_xor(data) {
        Ok(samples) => {
            assert!(!want_error);
            assert_eq!(bits_of(&samples), bits_of(&want));
        }
        Err(error) => {
            assert!(want_error, "{error:?}");
            assert!(!error.detail.is_empty());
        }
    }
}

/// Checks the batch paths against [`reference_decode`], including a hand-over from `next` to
/// the batch loop after `skip` samples.
fn check_batch_against_reference(data: &[u8], skip: usize) {
    let (want, want_error) = reference_decode(data);
    let bits_of = |samples: &[(i64, f64)]| -> Vec<(i64, u64)> {
        samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    };
    let mut iterator = XorIterator::new(data);
    let mut got: Vec<(i64, f64)> = iterator.by_ref().take(skip).collect();
    let result = iterator.for_each_sample(|t, v| got.push((t, v)));
    assert_eq!(bits_of(&got), bits_of(&want), "skip {skip} on {data:02x?}");
    assert_eq!(result.is_err(), want_error, "skip {skip} on {data:02x?}");
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    let result = XorIterator::new(data).decode_columns(&mut timestamps, &mut values);
    let columns: Vec<(i64, f64)> = timestamps.into_iter().zip(values).collect();
    assert_eq!(bits_of(&columns), bits_of(&want), "columns on {data:02x?}");
    assert_eq!(result.is_err(), want_error, "columns on {data:02x?}");
}

#[test]
fn fast_paths_agree_with_a_bit_at_a_time_decoder() {
    let mut rng = StdRng::seed_from_u64(23);
    for _ in 0..300 {
        let count = rng.random_range(1..150);
        let mut t: i64 = rng.random_range(-1_000_000..1_000_000_000);
        let mut value: f64 = rng.random_range(-1e3..1e3);
        let samples: Vec<(i64, f64)> = (0..count)
            .map(|_| {
                t += match rng.random_range(0..12) {
                    0 => rng.random_range(1..i64::from(u32::MAX)),
                    1 => rng.random_range(1..200_000),
                    2..=4 => 15_000 + rng.random_range(-9_000..9_000),
                    _ => 15_000,
                };
                value = match rng.random_range(0..5) {
                    0 => f64::from_bits(rng.random()),
                    1 => value,
                    2 => value + rng.random_range(1..100) as f64,
                    _ => rng.random_range(0.0..100.0),
                };
                (t, value)
            })
            .collect();
        let bytes = check_round_trip(&samples);
        check_against_reference(&bytes);
        check_batch_against_reference(&bytes, rng.random_range(0..4));
        // Cut short: the tail paths must notice where the data ends.
        let cut = rng.random_range(0..bytes.len());
        check_against_reference(&bytes[..cut]);
        check_batch_against_reference(&bytes[..cut], rng.random_range(0..4));
        // Flipped bits: unusual windows and buckets anywhere.
        let mut corrupt = bytes.clone();
        for _ in 0..3 {
            let bit = rng.random_range(16..corrupt.len() * 8);
            corrupt[bit / 8] ^= 0x80 >> (bit % 8);
        }
        check_against_reference(&corrupt);
        check_batch_against_reference(&corrupt, rng.random_range(0..4));
    }
    for _ in 0..3_000 {
        let length = rng.random_range(2..48);
        let mut bytes: Vec<u8> = (0..length).map(|_| rng.random()).collect();
        bytes[0] = 0;
        check_against_reference(&bytes);
        check_batch_against_reference(&bytes, 0);
    }
}

#[test]
fn long_runs_of_two_bit_samples_decode_at_every_cut() {
    // Unchanged values at a steady interval are 2-bit samples: runs of them cross the batch
    // decoder's windows at every bit offset and end inside its padded tail copy. A few changes
    // break the runs so every control path meets a window boundary somewhere.
    let samples: Vec<(i64, f64)> = (0..700i64)
        .map(|index| {
            let value = match index {
                0..=299 => 7.0,
                300..=349 => index as f64,
                _ if index % 97 == 0 => f64::from_bits(0x7FF8_0000_0000_0001),
                _ => -3.5,
            };
            (index * 15_000 + i64::from(index % 211 == 0), value)
        })
        .collect();
    let bytes = check_round_trip(&samples);
    check_against_reference(&bytes);
    for cut in 0..bytes.len() {
        check_against_reference(&bytes[..cut]);
        check_batch_against_reference(&bytes[..cut], cut % 3);
    }
}

#[test]
fn columns_append_to_existing_contents_and_keep_the_prefix_on_error() {
    let samples: Vec<(i64, f64)> = (0..90)
        .map(|index| (index * 15_000, (index / 4) as f64))
        .collect();
    let bytes = check_round_trip(&samples);
    let (mut timestamps, mut values) = (vec![-1i64], vec![-1.0f64]);
    XorIterator::new(&bytes)
        .decode_columns(&mut timestamps, &mut values)
        .unwrap();
    assert_eq!(timestamps.len(), 91);
    assert_eq!((timestamps[0], values[0]), (-1, -1.0));
    assert_eq!((timestamps[90], values[90]), samples[89]);
    let mut pairs = vec![(5i64, 5.0f64)];
    let cut = &bytes[..bytes.len() - 3];
    let error = XorIterator::new(cut).decode_into(&mut pairs).unwrap_err();
    assert!(error.offset as usize <= cut.len());
    let (want, _) = reference_decode(cut);
    assert_eq!(pairs[0], (5, 5.0));
    assert_eq!(pairs.len(), 1 + want.len());
    assert_eq!(&pairs[1..], &want[..]);
}

#[test]
fn a_corrupt_count_on_a_short_chunk_allocates_little() {
    // The header claims 65535 samples; 12 bytes hold at most 48.
    let bytes = [0xFF, 0xFF, 0x02, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0];
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    assert!(
        XorIterator::new(&bytes)
            .decode_columns(&mut timestamps, &mut values)
            .is_err()
    );
    assert!(timestamps.capacity() <= 48 && values.capacity() <= 48);
    let mut pairs = Vec::new();
    assert!(XorIterator::new(&bytes).decode_into(&mut pairs).is_err());
    assert!(pairs.capacity() <= 48);
}

/// A plain bit-at-a-time XOR encoder following Prometheus' rules step by step: zero counts
/// computed for every value, the leading count clamped to 31 before it is compared with the
/// window's, a new window whenever either count falls short.
fn reference_encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut bits: Vec<bool> = Vec::new();
    let put = |bits: &mut Vec<bool>, value: u64, count: u32| {
        bits.extend((0..count).rev().map(|bit| value >> bit & 1 == 1));
    };
    let varint_bytes = |mut value: u64| -> Vec<u8> {
        let mut bytes = Vec::new();
        while value >= 0x80 {
            bytes.push(value as u8 | 0x80);
            value >>= 7;
        }
        bytes.push(value as u8);
        bytes
    };
    let fits = |dod: i64, width: u32| -(1i64 << (width - 1)) < dod && dod <= 1i64 << (width - 1);
    let (mut last_t, mut last_delta, mut last_v) = (0i64, 0i64, 0u64);
    let mut window: Option<(u32, u32)> = None;
    for (index, &(t, v)) in samples.iter().enumerate() {
        let value = v.to_bits();
        match index {
            0 => {
                for byte in varint_bytes(((t << 1) ^ (t >> 63)) as u64) {
                    put(&mut bits, u64::from(byte), 8);
                }
                put(&mut bits, value, 64);
            }
            _ => {
                let delta = t.wrapping_sub(last_t);
                if index == 1 {
                    for byte in varint_bytes(delta as u64) {
                        put(&mut bits, u64::from(byte), 8);
                    }
                } else {
                    let dod = delta.wrapping_sub(last_delta);
                    if dod == 0 {
                        put(&mut bits, 0, 1);
                    } else if fits(dod, 14) {
                        put(&mut bits, 0b10, 2);
                        put(&mut bits, dod as u64 & 0x3FFF, 14);
                    } else if fits(dod, 17) {
                        put(&mut bits, 0b110, 3);
                        put(&mut bits, dod as u64 & 0x1FFFF, 17);
                    } else if fits(dod, 20) {
                        put(&mut bits, 0b1110, 4);
                        put(&mut bits, dod as u64 & 0xFFFFF, 20);
                    } else {
                        put(&mut bits, 0b1111, 4);
                        put(&mut bits, dod as u64, 64);
                    }
                }
                last_delta = delta;
                let xor = value ^ last_v;
                if xor == 0 {
                    put(&mut bits, 0, 1);
                } else {
                    let leading = xor.leading_zeros().min(31);
                    let trailing = xor.trailing_zeros();
                    match window {
                        Some((window_leading, window_trailing))
                            if leading >= window_leading && trailing >= window_trailing =>
                        {
                            let significant = 64 - window_leading - window_trailing;
                            put(&mut bits, 0b10, 2);
                            put(&mut bits, xor >> window_trailing, significant);
                        }
                        _ => {
                            window = Some((leading, trailing));
                            let significant = 64 - leading - trailing;
                            put(&mut bits, 0b11, 2);
                            put(&mut bits, u64::from(leading), 5);
                            put(&mut bits, u64::from(significant & 0x3F), 6);
                            put(&mut bits, xor >> trailing, significant);
                        }
                    }
                }
            }
        }
        last_t = t;
        last_v = value;
    }
    let mut bytes = (samples.len() as u16).to_be_bytes().to_vec();
    bytes.extend(bits.chunks(8).map(|byte| {
        byte.iter()
            .enumerate()
            .fold(0u8, |acc, (index, &bit)| acc | u8::from(bit) << (7 - index))
    }));
    bytes
}

#[test]
fn encoder_bytes_equal_a_bit_at_a_time_encoder() {
    // Values chosen to exercise every window decision: unchanged, small integer steps, random
    // full-precision values, tiny bit patterns (more than 31 leading zeros in the XOR), sign
    // flips and special values; timestamps in every delta-of-delta bucket.
    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..400 {
        let count = rng.random_range(1..200);
        let mut t: i64 = rng.random_range(-1_000_000..1_000_000_000);
        let mut value: f64 = rng.random_range(-1e6..1e6);
        let samples: Vec<(i64, f64)> = (0..count)
            .map(|_| {
                t = t.wrapping_add(match rng.random_range(0..10) {
                    0 => rng.random_range(i64::from(i32::MIN)..i64::from(i32::MAX)),
                    1 => rng.random_range(-600_000..600_000),
                    2..=4 => 15_000 + rng.random_range(-20..20),
                    _ => 15_000,
                });
                value = match rng.random_range(0..8) {
                    0 => value,
                    1 => value + rng.random_range(1..100) as f64,
                    2 => rng.random_range(0.0..100.0),
                    3 => f64::from_bits(rng.random_range(0..1 << 20)),
                    4 => f64::from_bits(value.to_bits() ^ (1 << rng.random_range(0..64))),
                    5 => -value,
                    6 => [f64::NAN, f64::INFINITY, 0.0, -0.0][rng.random_range(0..4)],
                    _ => f64::from_bits(rng.random()),
                };
                (t, value)
            })
            .collect();
        let encoded = encode_xor(&samples);
        assert_eq!(encoded.bytes(), reference_encode(&samples), "{samples:?}");
    }
}
