use std::collections::BTreeMap;
use std::task::Poll;

use futures_util::StreamExt;
use futures_util::stream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::proto::thanos::{Chunk, SeriesBatch, chunk};

type Frame = Result<SeriesResponse, String>;

fn label_list(pairs: &[(&str, &str)]) -> Vec<thanos::Label> {
    pairs
        .iter()
        .map(|(name, value)| thanos::Label {
            name: (*name).to_owned(),
            value: (*value).to_owned(),
        })
        .collect()
}

fn chunk_at(min_time: i64, max_time: i64, byte: u8) -> thanos::AggrChunk {
    thanos::AggrChunk {
        min_time,
        max_time,
        raw: Some(Chunk {
            r#type: chunk::Encoding::Xor.into(),
            data: vec![byte].into(),
            hash: 0,
        }),
        ..Default::default()
    }
}

fn series(pairs: &[(&str, &str)], chunks: Vec<thanos::AggrChunk>) -> thanos::Series {
    thanos::Series {
        labels: label_list(pairs),
        chunks,
    }
}

/// A stream that is not ready every other poll (waking itself), like a network stream.
fn stuttering(frames: Vec<Frame>) -> Pin<Box<dyn Stream<Item = Frame> + Send>> {
    let mut frames = frames.into_iter();
    let mut ready = false;
    Box::pin(stream::poll_fn(move |cx| {
        ready = !ready;
        if ready {
            Poll::Ready(frames.next())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }))
}

fn run(inputs: Vec<Vec<Frame>>) -> Vec<Frame> {
    let streams: Vec<_> = inputs.into_iter().map(stuttering).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(merge_series(streams).collect::<Vec<_>>())
}

fn as_series(frames: &[Frame]) -> Vec<thanos::Series> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Ok(SeriesResponse {
                result: Some(series_response::Result::Series(series)),
            }) => Some(series.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn equal_labels_across_inputs_are_merged_with_sorted_chunks() {
    let left = vec![
        Ok(series_frame(series(
            &[("a", "1")],
            vec![chunk_at(10, 19, 1)],
        ))),
        Ok(series_frame(series(&[("a", "3")], vec![chunk_at(0, 9, 2)]))),
    ];
    let right = vec![
        Ok(series_frame(series(
            &[("a", "1")],
            vec![chunk_at(0, 9, 3), chunk_at(10, 19, 1)],
        ))),
        Ok(series_frame(series(&[("a", "2")], vec![chunk_at(0, 9, 4)]))),
    ];
    let output = as_series(&run(vec![left, right]));
    let expected = vec![
        series(&[("a", "1")], vec![chunk_at(0, 9, 3), chunk_at(10, 19, 1)]),
        series(&[("a", "2")], vec![chunk_at(0, 9, 4)]),
        series(&[("a", "3")], vec![chunk_at(0, 9, 2)]),
    ];
    assert_eq!(output, expected);
}

#[test]
fn warnings_pass_through_and_errors_drop_only_their_input() {
    let left = vec![
        Ok(warning_frame("store down")),
        Ok(series_frame(series(&[("a", "1")], vec![]))),
    ];
    let right = vec![
        Ok(series_frame(series(&[("a", "0")], vec![]))),
        Err("broken".to_owned()),
        Ok(series_frame(series(&[("a", "9")], vec![]))),
    ];
    let output = run(vec![left, right]);
    let warnings: Vec<_> = output
        .iter()
        .filter(|frame| {
            matches!(frame, Ok(SeriesResponse { result: Some(series_response::Result::Warning(w)) }) if w == "store down")
        })
        .collect();
    assert_eq!(warnings.len(), 1);
    assert!(
        output
            .iter()
            .any(|frame| frame == &Err("broken".to_owned()))
    );
    assert_eq!(
        as_series(&output),
        vec![series(&[("a", "0")], vec![]), series(&[("a", "1")], vec![])]
    );
}

#[test]
fn no_inputs_and_empty_inputs_end_at_once() {
    assert!(run(Vec::new()).is_empty());
    assert!(run(vec![Vec::new(), Vec::new()]).is_empty());
}

/// Random inputs: each a sorted list of distinct label sets drawn from a small universe (so
/// inputs overlap), sent as single frames, split frames or batches.
fn random_inputs(rng: &mut StdRng) -> Vec<Vec<Frame>> {
    let universe: Vec<Vec<thanos::Label>> = (0..12)
        .map(|index| {
            let mut labels = label_list(&[("__name__", "m")]);
            labels.push(thanos::Label {
                name: "i".to_owned(),
                value: format!("{}", index % 7),
            });
            if index >= 7 {
                labels.push(thanos::Label {
                    name: "x".to_owned(),
                    value: "y".to_owned(),
                });
            }
            labels
        })
        .collect();
    let input_count = rng.random_range(0..40);
    let mut inputs = Vec::new();
    for _ in 0..input_count {
        let mut chosen: Vec<Vec<thanos::Label>> = universe
            .iter()
            .filter(|_| rng.random_bool(0.4))
            .cloned()
            .collect();
        chosen.sort_by(|left, right| compare_labels(left, right));
        let mut frames = Vec::new();
        let mut batch: Vec<thanos::Series> = Vec::new();
        for labels in chosen {
            let chunk_count = rng.random_range(0..4);
            let chunks: Vec<_> = (0..chunk_count)
                .map(|_| {
                    let start = rng.random_range(0..5) * 10;
                    chunk_at(start, start + 9, rng.random_range(0..3))
                })
                .collect();
            let kind = rng.random_range(0..3);
            if kind < 2 && !batch.is_empty() {
                // Keep the stream sorted: a pending batch goes out before a plain frame.
                frames.push(Ok(SeriesResponse {
                    result: Some(series_response::Result::Batch(SeriesBatch {
                        series: std::mem::take(&mut batch),
                    })),
                }));
            }
            match kind {
                0 => frames.push(Ok(series_frame(thanos::Series { labels, chunks }))),
                1 => {
                    let (first, second) = chunks.split_at(chunks.len() / 2);
                    frames.push(Ok(series_frame(thanos::Series {
                        labels: labels.clone(),
                        chunks: first.to_vec(),
                    })));
                    frames.push(Ok(series_frame(thanos::Series {
                        labels,
                        chunks: second.to_vec(),
                    })));
                }
                _ => batch.push(thanos::Series { labels, chunks }),
            }
            if batch.len() >= 3 || (!batch.is_empty() && rng.random_bool(0.3)) {
                frames.push(Ok(SeriesResponse {
                    result: Some(series_response::Result::Batch(SeriesBatch {
                        series: std::mem::take(&mut batch),
                    })),
                }));
            }
        }
        if !batch.is_empty() {
            frames.push(Ok(SeriesResponse {
                result: Some(series_response::Result::Batch(SeriesBatch {
                    series: batch,
                })),
            }));
        }
        inputs.push(frames);
    }
    inputs
}

/// The merge computed the obvious way: group everything by labels in a sorted map.
fn expected_merge(inputs: &[Vec<Frame>]) -> Vec<thanos::Series> {
    let mut grouped: BTreeMap<Vec<(String, String)>, Vec<thanos::AggrChunk>> = BTreeMap::new();
    let mut add = |series: &thanos::Series| {
        let key = series
            .labels
            .iter()
            .map(|label| (label.name.clone(), label.value.clone()))
            .collect();
        grouped
            .entry(key)
            .or_default()
            .extend(series.chunks.iter().cloned());
    };
    for frame in inputs.iter().flatten() {
        match frame {
            Ok(SeriesResponse {
                result: Some(series_response::Result::Series(series)),
            }) => add(series),
            Ok(SeriesResponse {
                result: Some(series_response::Result::Batch(batch)),
            }) => batch.series.iter().for_each(&mut add),
            _ => {}
        }
    }
    grouped
        .into_iter()
        .map(|(key, mut chunks)| {
            sort_chunks(&mut chunks);
            chunks.dedup();
            thanos::Series {
                labels: key
                    .into_iter()
                    .map(|(name, value)| thanos::Label { name, value })
                    .collect(),
                chunks,
            }
        })
        .collect()
}

#[test]
fn random_merges_match_a_sorted_map() {
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = random_inputs(&mut rng);
        let expected = expected_merge(&inputs);
        let output = run(inputs);
        assert!(
            output.iter().all(Result::is_ok),
            "seed {seed}: unexpected error"
        );
        assert_eq!(as_series(&output), expected, "seed {seed}");
        assert_eq!(
            output.len(),
            expected.len(),
            "seed {seed}: one frame per series"
        );
    }
}

#[test]
fn many_inputs_stay_fast() {
    let inputs: Vec<Vec<Frame>> = (0..500)
        .map(|input| {
            (0..40)
                .map(|index| {
                    let value = format!("{:05}", index * 500 + input);
                    Ok(series_frame(series(
                        &[("s", &value)],
                        vec![chunk_at(0, 1, 0)],
                    )))
                })
                .collect()
        })
        .collect();
    let started = std::time::Instant::now();
    let output = as_series(&run(inputs));
    assert_eq!(output.len(), 20_000);
    assert!(
        output
            .windows(2)
            .all(|pair| compare_labels(&pair[0].labels, &pair[1].labels) == Ordering::Less),
        "output must be strictly sorted"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
