//! Unit tests of the frame decoder, the streaming order and the samples decoder.

use super::*;

fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut length = message.len() as u64;
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&crc32c::crc32c(message).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Feeds `pieces` one after the other, collecting every frame; the first error ends it.
fn decode_pieces(pieces: &[&[u8]]) -> Result<Vec<Vec<u8>>, String> {
    let mut decoder = FrameDecoder::default();
    let mut frames = Vec::new();
    for piece in pieces {
        decoder.push(piece);
        while let Some(frame) = decoder.next_frame()? {
            frames.push(frame.to_vec());
        }
    }
    decoder.finish()?;
    Ok(frames)
}

fn three_frames() -> (Vec<Vec<u8>>, Vec<u8>) {
    // 300 bytes take a two-byte length; an empty message is a frame too.
    let messages = vec![vec![7_u8; 300], b"abc".to_vec(), Vec::new()];
    let bytes = messages.iter().flat_map(|message| frame(message)).collect();
    (messages, bytes)
}

#[test]
fn frames_split_at_every_byte_boundary_decode_the_same() {
    let (messages, bytes) = three_frames();
    assert_eq!(decode_pieces(&[&bytes]).unwrap(), messages);
    for split in 0..=bytes.len() {
        let (left, right) = bytes.split_at(split);
        assert_eq!(
            decode_pieces(&[left, right]).unwrap(),
            messages,
            "split at {split}"
        );
        for second in split..=bytes.len() {
            let (middle, last) = right.split_at(second - split);
            assert_eq!(
                decode_pieces(&[left, middle, last]).unwrap(),
                messages,
                "split at {split} and {second}"
            );
        }
    }
    let single_bytes: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode_pieces(&single_bytes).unwrap(), messages);
}

#[test]
fn a_frame_is_returned_as_soon_as_it_is_complete() {
    let (messages, bytes) = three_frames();
    let first_end = frame(&messages[0]).len();
    let mut decoder = FrameDecoder::default();
    decoder.push(&bytes[..first_end - 1]);
    assert_eq!(decoder.next_frame().unwrap(), None);
    decoder.push(&bytes[first_end - 1..first_end]);
    assert_eq!(decoder.next_frame().unwrap().unwrap().to_vec(), messages[0]);
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(decoder.next_frame().unwrap(), None);
}

#[test]
fn a_checksum_mismatch_is_an_error_wherever_the_bytes_are_split() {
    let (_, mut bytes) = three_frames();
    // The last byte of the first message.
    let position = frame(&[7_u8; 300]).len() - 1;
    bytes[position] ^= 1;
    for split in 0..=bytes.len() {
        let (left, right) = bytes.split_at(split);
        let error = decode_pieces(&[left, right]).unwrap_err();
        assert!(
            error.contains("checksum mismatch"),
            "split at {split}: {error}"
        );
    }
    let mut checksum = frame(b"abc");
    checksum[1] ^= 0x80;
    assert!(
        decode_pieces(&[&checksum])
            .unwrap_err()
            .contains("checksum")
    );
}

#[test]
fn a_truncated_stream_is_an_error_at_every_cut_inside_a_frame() {
    let (messages, bytes) = three_frames();
    let mut boundaries = vec![0];
    for message in &messages {
        boundaries.push(boundaries.last().unwrap() + frame(message).len());
    }
    for cut in 0..bytes.len() {
        let result = decode_pieces(&[&bytes[..cut]]);
        if let Some(complete) = boundaries.iter().position(|&end| end == cut) {
            assert_eq!(result.unwrap(), messages[..complete], "cut at {cut}");
        } else {
            let error = result.unwrap_err();
            assert!(
                error.contains("ended inside a frame"),
                "cut at {cut}: {error}"
            );
        }
    }
}

#[test]
fn malformed_lengths_are_errors() {
    let too_long = [0xff_u8; 11];
    assert!(
        decode_pieces(&[&too_long])
            .unwrap_err()
            .contains("overflows")
    );
    let overflowing = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
    assert!(
        decode_pieces(&[&overflowing])
            .unwrap_err()
            .contains("overflows")
    );
    let mut huge = Vec::new();
    let mut length = MAX_FRAME_BYTES + 1;
    while length >= 0x80 {
        huge.push((length as u8) | 0x80);
        length >>= 7;
    }
    huge.push(length as u8);
    assert!(
        decode_pieces(&[&huge])
            .unwrap_err()
            .contains("exceeds the limit")
    );
}

fn samples_body(series: usize, samples: i64) -> Vec<u8> {
    let response = ReadResponse {
        results: vec![prompb::QueryResult {
            timeseries: (0..series)
                .map(|index| prompb::TimeSeries {
                    labels: vec![prompb::Label {
                        name: "__name__".into(),
                        value: format!("up{index}"),
                    }],
                    samples: (0..samples)
                        .map(|i| prompb::Sample {
                            value: i as f64,
                            timestamp: i * 1000,
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }],
    };
    snap::raw::Encoder::new()
        .compress_vec(&response.encode_to_vec())
        .unwrap()
}

#[test]
fn the_fuzz_seeds_are_the_answers_they_are_named_after() {
    let external = Labels::from_pairs([("replica", "a")]);
    let seed = include_bytes!("../../fuzz/seeds/remote_read/streamed-prefix-and-split");
    let mut order = SeriesOrder::streamed(external.clone());
    let mut out = Vec::new();
    for frame in decode_pieces(&[&seed[1..]]).unwrap() {
        for series in decode_chunked_frame(Bytes::from(frame)).unwrap() {
            order.push(series, &mut out).unwrap();
        }
    }
    order.finish(&mut out);
    let text: Vec<String> = out.iter().map(|one| label_text(&one.labels)).collect();
    assert_eq!(
        text,
        [
            r#"{__name__="m", instance="x", replica="a"}"#,
            r#"{__name__="m", replica="a"}"#,
            r#"{__name__="n", job="j", replica="a"}"#,
            r#"{__name__="n", replica="a"}"#,
        ]
    );
    assert_eq!(out[0].chunks.len(), 2, "the split series is joined");
    let truncated = include_bytes!("../../fuzz/seeds/remote_read/streamed-truncated");
    assert!(decode_pieces(&[&truncated[1..]]).is_err());
    let samples = include_bytes!("../../fuzz/seeds/remote_read/samples");
    assert_eq!(
        decode_samples_response(&samples[1..], 1 << 20)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn samples_answers_become_xor_chunks() {
    let series = decode_samples_response(&samples_body(1, 200), usize::MAX).unwrap();
    assert_eq!(series.len(), 1);
    let chunks = &series[0].chunks;
    assert_eq!(chunks.len(), 2);
    assert_eq!((chunks[0].min_time, chunks[0].max_time), (0, 119_000));
    let samples = storeapi::chunk::decode_float_samples(chunks[1].raw.as_ref().unwrap()).unwrap();
    assert_eq!(samples.len(), 80);
    assert_eq!(samples[0], Sample::new(120_000, 120.0));
}

#[test]
fn samples_answers_over_the_limit_are_refused_before_decompressing() {
    let body = samples_body(50, 100);
    let size = snap::raw::decompress_len(&body).unwrap();
    assert!(decode_samples_response(&body, size).is_ok());
    assert_eq!(
        decode_samples_response(&body, size - 1).unwrap_err(),
        SamplesError::TooLarge(size)
    );
    // A snappy header claiming 1 GiB.
    let claim = [0x80, 0x80, 0x80, 0x80, 0x04];
    assert!(matches!(
        decode_samples_response(&claim, 1 << 20),
        Err(SamplesError::TooLarge(_))
    ));
    assert!(matches!(
        decode_samples_response(b"\x05garbage", 1 << 20),
        Err(SamplesError::Invalid(_))
    ));
}

#[test]
fn external_labels_win() {
    let external = Labels::from_pairs([("region", "eu"), ("replica", "a")]);
    let labels = vec![
        thanos::Label {
            name: "__name__".into(),
            value: "x".into(),
        },
        thanos::Label {
            name: "region".into(),
            value: "series".into(),
        },
    ];
    let merged = with_external_labels(labels, &external);
    assert_eq!(
        label_text(&merged),
        r#"{__name__="x", region="eu", replica="a"}"#
    );
}

fn labels(text: &str) -> Vec<thanos::Label> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            thanos::Label {
                name: name.to_owned(),
                value: value.to_owned(),
            }
        })
        .collect()
}

fn chunk(min_time: i64) -> thanos::AggrChunk {
    thanos::AggrChunk {
        min_time,
        max_time: min_time + 1,
        raw: Some(thanos::Chunk::default()),
        ..Default::default()
    }
}

fn read_series(text: &str, min_time: i64) -> ReadSeries {
    ReadSeries {
        labels: labels(text),
        chunks: vec![chunk(min_time)],
    }
}

/// What the sidecar answered before it streamed: every series with external labels, sorted
/// (stably), equal label sets joined, chunks sorted.
fn sort_whole_answer(answer: &[ReadSeries], external: &Labels) -> Vec<thanos::Series> {
    let mut series: Vec<thanos::Series> = answer
        .iter()
        .map(|read| thanos::Series {
            labels: with_external_labels(read.labels.clone(), external),
            chunks: read.chunks.clone(),
        })
        .collect();
    series.sort_by(|left, right| compare_labels(&left.labels, &right.labels));
    let mut joined: Vec<thanos::Series> = Vec::new();
    for one in series {
        match joined.last_mut() {
            Some(last) if last.labels == one.labels => last.chunks.extend(one.chunks),
            _ => joined.push(one),
        }
    }
    for one in &mut joined {
        sort_chunks(&mut one.chunks);
    }
    joined
}

/// Pushes `answer` and returns what came out, checking after each push that what was held
/// back is at most `max_held` series.
fn stream_through(
    order: &mut SeriesOrder,
    answer: &[ReadSeries],
    max_held: usize,
) -> Result<Vec<thanos::Series>, String> {
    let mut out = Vec::new();
    for series in answer {
        order.push(series.clone(), &mut out)?;
        assert!(order.held() <= max_held, "held {}", order.held());
    }
    order.finish(&mut out);
    Ok(out)
}

#[test]
fn a_series_waits_only_while_series_extending_it_may_sort_before_it() {
    let external = Labels::from_pairs([("replica", "a")]);
    // Prometheus' order (by TSDB labels); it adds its external label itself.
    let answer = [
        read_series("__name__=m,replica=a", 0),
        read_series("__name__=m,instance=x,replica=a", 0),
        read_series("__name__=m,instance=x,replica=a", 10),
        read_series("__name__=m,instance=y,replica=a", 0),
        read_series("__name__=m,instance=y,job=j,replica=a", 0),
        read_series("__name__=m,instance=y,zone=z,replica=a", 0),
        read_series("__name__=n,replica=a", 0),
    ];
    let mut order = SeriesOrder::streamed(external.clone());
    let mut out = Vec::new();
    order.push(answer[0].clone(), &mut out).unwrap();
    order.push(answer[1].clone(), &mut out).unwrap();
    assert!(
        out.is_empty(),
        "m{{replica}} sorts after m{{instance=x,replica}}"
    );
    order.push(answer[2].clone(), &mut out).unwrap();
    order.push(answer[3].clone(), &mut out).unwrap();
    assert_eq!(out.len(), 1, "m{{instance=x}} is complete");
    assert_eq!(out[0].chunks.len(), 2, "split series are joined");
    assert_eq!(order.held(), 2);
    let mut order = SeriesOrder::streamed(external.clone());
    let got = stream_through(&mut order, &answer, 3).unwrap();
    assert_eq!(got, sort_whole_answer(&answer, &external));
    let text: Vec<String> = got.iter().map(|one| label_text(&one.labels)).collect();
    assert_eq!(
        text,
        [
            r#"{__name__="m", instance="x", replica="a"}"#,
            r#"{__name__="m", instance="y", job="j", replica="a"}"#,
            r#"{__name__="m", instance="y", replica="a"}"#,
            r#"{__name__="m", instance="y", replica="a", zone="z"}"#,
            r#"{__name__="m", replica="a"}"#,
            r#"{__name__="n", replica="a"}"#,
        ]
    );
}

#[test]
fn the_usual_answer_holds_one_series() {
    let external = Labels::from_pairs([("cluster", "c"), ("replica", "a")]);
    let answer: Vec<ReadSeries> = (0..100)
        .map(|index| read_series(&format!("__name__=up,instance=i{index:03},job=j"), 0))
        .collect();
    let mut order = SeriesOrder::streamed(external.clone());
    let got = stream_through(&mut order, &answer, 1).unwrap();
    assert_eq!(got, sort_whole_answer(&answer, &external));
}

/// A small deterministic generator (xorshift64*).
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

/// Random answers as Prometheus sends them: TSDB series sorted by their labels, each with
/// its external labels merged in (the series' own label wins), some split in two frames.
fn random_answer(random: &mut Random, external: &Labels, collide: bool) -> Vec<ReadSeries> {
    let names = ["__name__", "a", "cluster", "job", "replica", "zz"];
    let mut tsdb: Vec<Vec<thanos::Label>> = Vec::new();
    for _ in 0..random.below(12) {
        let mut series = Vec::new();
        for name in names {
            let is_external = external.get(name).is_some();
            if (is_external && !collide) || random.below(2) == 0 {
                continue;
            }
            series.push(thanos::Label {
                name: name.to_owned(),
                value: format!("v{}", random.below(3)),
            });
        }
        tsdb.push(series);
    }
    tsdb.sort_by(|left, right| compare_labels(left, right));
    tsdb.dedup();
    let mut answer = Vec::new();
    for (index, series) in tsdb.into_iter().enumerate() {
        let mut sent = series.clone();
        for label in external.iter() {
            if !series.iter().any(|own| own.name == label.name) {
                sent.push(thanos::Label {
                    name: label.name.clone(),
                    value: label.value.clone(),
                });
            }
        }
        sort_labels(&mut sent);
        let frames = 1 + random.below(2);
        for part in 0..frames {
            answer.push(ReadSeries {
                labels: sent.clone(),
                chunks: vec![chunk(i64::try_from(index as u64 * 10 + part).unwrap())],
            });
        }
    }
    answer
}

#[test]
fn streamed_order_equals_sorting_the_whole_answer() {
    let external_sets = [
        Labels::from_pairs([("replica", "r")]),
        Labels::from_pairs([("cluster", "c"), ("replica", "r")]),
        Labels::from_pairs([("a", "x")]),
        Labels::from_pairs([("zz", "x")]),
        Labels::empty(),
    ];
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    for round in 0..20_000 {
        let external = &external_sets[round % external_sets.len()];
        let answer = random_answer(&mut random, external, false);
        let mut order = SeriesOrder::streamed(external.clone());
        let got = stream_through(&mut order, &answer, 7)
            .unwrap_or_else(|error| panic!("{answer:?}: {error}"));
        assert_eq!(got, sort_whole_answer(&answer, external), "{answer:?}");
    }
}

#[test]
fn colliding_labels_are_sorted_or_refused_never_misordered() {
    let external = Labels::from_pairs([("cluster", "c"), ("replica", "r")]);
    let mut random = Random(42);
    let (mut sorted, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let answer = random_answer(&mut random, &external, true);
        let mut order = SeriesOrder::streamed(external.clone());
        match stream_through(&mut order, &answer, usize::MAX) {
            Ok(got) => {
                assert_eq!(got, sort_whole_answer(&answer, &external), "{answer:?}");
                sorted += 1;
            }
            Err(error) => {
                assert!(error.contains("out of order"), "{error}");
                refused += 1;
            }
        }
    }
    assert!(sorted > 0, "sorted {sorted}, refused {refused}");
}

#[test]
fn unordered_answers_are_sorted_at_the_end() {
    let external = Labels::from_pairs([("replica", "a")]);
    let answer = [
        read_series("__name__=b", 0),
        read_series("__name__=a", 0),
        read_series("__name__=b", 5),
    ];
    let mut order = SeriesOrder::unordered(external.clone());
    let mut out = Vec::new();
    for series in &answer {
        order.push(series.clone(), &mut out).unwrap();
    }
    assert!(out.is_empty());
    order.finish(&mut out);
    assert_eq!(out, sort_whole_answer(&answer, &external));
    assert_eq!(out[1].chunks.len(), 2);
}
