//! Downsampled blocks over the StoreAPI: block choice by `max_resolution_window`, the requested
//! aggregates of 0xFF chunks, the errors for absent aggregates, and the sample limit.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use storeapi::chunk::decode_float_samples;
use storeapi::proto::thanos::{self, Aggr};
use tsdb_block::chunkenc::{AggrPart, Encoding, encode_aggr_chunk, encode_xor};
use tsdb_block::meta::ThanosMeta;
use tsdb_block::writer::{BlockWriter, ChunkData};

/// An hour boundary, in ms.
const T0: i64 = 1_699_999_200_000;
const RES_5M: i64 = 300_000;
const SCRAPE: i64 = 15_000;
const SPAN: i64 = 2 * 3_600_000;

/// Raw samples of `load{s="a"}`: one every 15 s over two hours, values varying.
fn samples() -> Vec<(i64, f64)> {
    (0..SPAN / SCRAPE)
        .map(|index| (T0 + index * SCRAPE, ((index * 37) % 101) as f64))
        .collect()
}

/// Per 5m window: (window end, count, sum, max).
fn windows(samples: &[(i64, f64)]) -> Vec<(i64, f64, f64, f64)> {
    let mut windows: Vec<(i64, f64, f64, f64)> = Vec::new();
    for &(t, v) in samples {
        let end = t - t.rem_euclid(RES_5M) + RES_5M - 1;
        match windows.last_mut() {
            Some(window) if window.0 == end => {
                window.1 += 1.0;
                window.2 += v;
                window.3 = window.3.max(v);
            }
            _ => windows.push((end, 1.0, v, v)),
        }
    }
    windows
}

/// Writes a block of `load{s="a"}` over the two hours into `bucket`: raw, or at 5m with count,
/// sum and max aggregates (min and counter absent, as in a histogram's downsampled chunk), one
/// aggregate chunk an hour. Returns its id.
fn write_block(bucket: &Path, resolution: i64) -> String {
    let labels = prom_model::Labels::from_pairs([("__name__", "load"), ("s", "a")]);
    let symbols = tsdb_block::writer::symbols_of([&labels]);
    let mut writer = BlockWriter::create(bucket, symbols).unwrap();
    let raw = samples();
    if resolution == 0 {
        writer.add_series_samples(&labels, &raw).unwrap();
    } else {
        let all = windows(&raw);
        let mut chunks = Vec::new();
        for hour in all.chunks(12) {
            let part = |value: fn(&(i64, f64, f64, f64)) -> f64| {
                let points: Vec<(i64, f64)> = hour.iter().map(|w| (w.0, value(w))).collect();
                encode_xor(&points).into_bytes()
            };
            let (count, sum, max) = (part(|w| w.1), part(|w| w.2), part(|w| w.3));
            let part = |data| {
                Some(AggrPart {
                    encoding: Encoding::Xor,
                    data,
                })
            };
            let data = encode_aggr_chunk(&[part(&count), part(&sum), None, part(&max), None]);
            chunks.push((hour[0].0, hour[hour.len() - 1].0, data));
        }
        let data: Vec<ChunkData<'_>> = chunks
            .iter()
            .map(|(min_time, max_time, data)| ChunkData {
                min_time: *min_time,
                max_time: *max_time,
                encoding: Encoding::ThanosAggr,
                data,
            })
            .collect();
        writer.add_series(&labels, &data).unwrap();
    }
    writer.set_time_range(T0, T0 + SPAN);
    let (mut meta, dir) = writer.finish().unwrap();
    meta.thanos = Some(ThanosMeta::new(
        BTreeMap::from([("cluster".to_owned(), "ds".to_owned())]),
        resolution,
        if resolution == 0 {
            "sidecar"
        } else {
            "compactor"
        },
    ));
    meta.write_to_dir(&dir).unwrap();
    meta.ulid.to_string()
}

fn downsampled_request(window: i64, aggregates: &[Aggr]) -> thanos::SeriesRequest {
    thanos::SeriesRequest {
        max_resolution_window: window,
        aggregates: aggregates
            .iter()
            .map(|aggregate| *aggregate as i32)
            .collect(),
        ..request(vec![eq("__name__", "load")])
    }
}

#[test]
fn downsampled_blocks_answer_the_requested_aggregates_at_their_resolution() {
    let bucket = tempfile::tempdir().unwrap();
    let raw_id = write_block(bucket.path(), 0);
    let downsampled_id = write_block(bucket.path(), RES_5M);
    let gateway = Gateway::start(&fs_objstore(bucket.path()), &[]).unwrap();
    let runtime = runtime();
    let call = |request| runtime.block_on(series(&gateway, request));
    let expected = windows(&samples());

    // Window 0: the raw block only, raw chunks.
    let raw = call(downsampled_request(0, &[Aggr::Max])).unwrap();
    assert_eq!(queried_blocks(&raw), vec![raw_id.clone()]);
    let chunks = &raw.series[0].chunks;
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk.raw.is_some() && chunk.max.is_none())
    );
    let raw_samples: usize = chunks
        .iter()
        .map(|chunk| {
            decode_float_samples(chunk.raw.as_ref().unwrap())
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(raw_samples, samples().len());

    // Window 5m: the 5m block only, exactly the requested parts.
    let max = call(downsampled_request(RES_5M, &[Aggr::Max])).unwrap();
    assert_eq!(queried_blocks(&max), vec![downsampled_id.clone()]);
    let mut maxima = Vec::new();
    for chunk in &max.series[0].chunks {
        assert!(chunk.raw.is_none() && chunk.count.is_none() && chunk.sum.is_none());
        let part = chunk.max.as_deref().unwrap();
        assert_eq!(part.r#type, thanos::chunk::Encoding::Xor as i32);
        maxima.extend(decode_float_samples(part).unwrap());
    }
    let got: Vec<(i64, f64)> = maxima.iter().map(|s| (s.t, s.v)).collect();
    let want: Vec<(i64, f64)> = expected.iter().map(|w| (w.0, w.3)).collect();
    assert_eq!(got, want);
    let average = call(downsampled_request(3_600_000, &[Aggr::Count, Aggr::Sum])).unwrap();
    let first = &average.series[0].chunks[0];
    let counts = decode_float_samples(first.count.as_deref().unwrap()).unwrap();
    let sums = decode_float_samples(first.sum.as_deref().unwrap()).unwrap();
    assert!(
        counts
            .iter()
            .all(|count| count.v == (RES_5M / SCRAPE) as f64)
    );
    assert_eq!(sums[0].v, expected[0].2);
    assert!(first.max.is_none() && first.min.is_none());

    // An absent aggregate, or none, is an error with a message.
    for aggregates in [&[Aggr::Min][..], &[Aggr::Max, Aggr::Counter][..]] {
        let error = call(downsampled_request(RES_5M, aggregates)).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error}");
        assert!(error.message().contains("does not exist"), "{error}");
    }
    let error = call(downsampled_request(RES_5M, &[Aggr::Raw])).unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error}");
    // A raw block answers whatever is asked.
    assert!(call(downsampled_request(0, &[Aggr::Min])).is_ok());

    // Label calls read blocks of every resolution, as Thanos' do.
    let values = runtime
        .block_on(async {
            gateway
                .client()
                .await
                .label_values(thanos::LabelValuesRequest {
                    label: "s".to_owned(),
                    start: T0,
                    end: T0 + SPAN,
                    ..Default::default()
                })
                .await
        })
        .unwrap()
        .into_inner();
    assert_eq!(values.values, vec!["a".to_owned()]);
    let hints: storeapi::proto::hintspb::LabelValuesResponseHints =
        storeapi::hints::unpack(values.hints.as_ref().unwrap()).unwrap();
    let mut label_blocks: Vec<String> = hints.queried_blocks.into_iter().map(|b| b.id).collect();
    label_blocks.sort();
    let mut both = vec![raw_id.clone(), downsampled_id.clone()];
    both.sort();
    assert_eq!(label_blocks, both);
    drop(gateway);

    // Samples are counted 120 a chunk, aggregate chunks too: the two 5m chunks fit in 240, the
    // raw block's four chunks do not.
    let limited = Gateway::start(
        &fs_objstore(bucket.path()),
        &["--store.limits.request-samples=240"],
    )
    .unwrap();
    let call = |request| runtime.block_on(series(&limited, request));
    assert_eq!(max.series[0].chunks.len(), 2);
    assert!(call(downsampled_request(RES_5M, &[Aggr::Max])).is_ok());
    let error = call(downsampled_request(0, &[Aggr::Max])).unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted, "{error}");
}
