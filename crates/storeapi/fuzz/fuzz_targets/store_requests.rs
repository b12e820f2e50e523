//! StoreAPI requests from outside (any gRPC client): bytes decoded as `SeriesRequest`,
//! `LabelNamesRequest` or `LabelValuesRequest` (the first byte picks which), then converted as
//! the servers convert them (wire matchers to [`prom_model::Matcher`], `Any` hints unpacked,
//! the querier's store selection) and served by the in-memory reference store. Never panics;
//! a decoded request re-encodes to itself, a matcher that compiles converts back to the same
//! wire matcher, and a served `Series` answer is sorted and within its limit.
#![no_main]

use std::sync::OnceLock;

use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use prom_model::{Labels, Matcher, Sample};
use prost::Message;
use storeapi::convert::{compare_labels, labels_match, matcher_from_proto, matcher_to_proto};
use storeapi::hints;
use storeapi::proto::hintspb;
use storeapi::proto::thanos::{self, series_response, store_server::Store};
use storeapi::{MemoryStore, SeriesData, StoreRange, store_matches};
use tonic::Request;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime builds")
    })
}

fn store() -> &'static MemoryStore {
    static STORE: OnceLock<MemoryStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let series = [("a", 1.0), ("b", -2.5), ("c", 0.5)]
            .into_iter()
            .map(|(job, slope)| {
                SeriesData::new(
                    Labels::from_pairs([("__name__", "up"), ("job", job), ("instance", "x:1")]),
                    (0..300)
                        .map(|i| Sample::new(i * 15_000, slope * i as f64))
                        .collect(),
                )
            })
            .collect();
        MemoryStore::new(Labels::from_pairs([("replica", "r1")]), series)
    })
}

fn external_label_sets() -> &'static [Labels] {
    static SETS: OnceLock<Vec<Labels>> = OnceLock::new();
    SETS.get_or_init(|| {
        vec![
            Labels::from_pairs([("replica", "r1"), ("cluster", "eu")]),
            Labels::from_pairs([("replica", "r2")]),
        ]
    })
}

/// Converts wire matchers as every server does; a matcher that compiles must convert back to
/// the wire matcher it came from.
fn matchers(wire: &[thanos::LabelMatcher]) -> Option<Vec<Matcher>> {
    let mut compiled = Vec::with_capacity(wire.len());
    for one in wire {
        let matcher = matcher_from_proto(one).ok()?;
        assert_eq!(&matcher_to_proto(&matcher), one);
        compiled.push(matcher);
    }
    Some(compiled)
}

fn select(min_time: i64, max_time: i64, compiled: &[Matcher]) {
    let range = StoreRange {
        min_time: 0,
        max_time: 4_500_000,
        label_sets: external_label_sets(),
    };
    let _ = store_matches(range, min_time, max_time, compiled);
}

fn round_trips<M: Message + Default + PartialEq + std::fmt::Debug>(request: &M) {
    let reencoded =
        M::decode(request.encode_to_vec().as_slice()).expect("our own encoding decodes");
    assert_eq!(&reencoded, request);
}

fn series(bytes: &[u8]) {
    let Ok(request) = thanos::SeriesRequest::decode(bytes) else {
        return;
    };
    round_trips(&request);
    let Some(compiled) = matchers(&request.matchers) else {
        return;
    };
    if let Some(any) = &request.hints {
        if let Ok(unpacked) = hints::unpack::<hintspb::SeriesRequestHints>(any) {
            let _ = matchers(&unpacked.block_matchers);
        }
    }
    select(request.min_time, request.max_time, &compiled);
    let limit = request.limit;
    let response = runtime().block_on(async {
        let response = store().series(Request::new(request)).await.ok()?;
        Some(response.into_inner().collect::<Vec<_>>().await)
    });
    let Some(frames) = response else { return };
    let mut served = Vec::new();
    for frame in frames {
        match frame.expect("the memory store's frames are answers").result {
            Some(series_response::Result::Series(one)) => served.push(one),
            Some(series_response::Result::Batch(batch)) => served.extend(batch.series),
            _ => {}
        }
    }
    if limit > 0 {
        assert!(
            served.len() as u64 <= limit as u64,
            "{} series above limit {limit}",
            served.len()
        );
    }
    for pair in served.windows(2) {
        assert!(
            compare_labels(&pair[0].labels, &pair[1].labels).is_le(),
            "unsorted answer"
        );
    }
    // Every served series satisfies the matchers, except those on the one label the store
    // may drop (its external `replica`).
    let kept: Vec<Matcher> = compiled
        .iter()
        .filter(|matcher| matcher.name() != "replica")
        .cloned()
        .collect();
    for one in &served {
        assert!(
            labels_match(&one.labels, &kept),
            "a series the matchers refuse"
        );
    }
}

fn label_names(bytes: &[u8]) {
    let Ok(request) = thanos::LabelNamesRequest::decode(bytes) else {
        return;
    };
    round_trips(&request);
    let Some(compiled) = matchers(&request.matchers) else {
        return;
    };
    if let Some(any) = &request.hints {
        if let Ok(unpacked) = hints::unpack::<hintspb::LabelNamesRequestHints>(any) {
            let _ = matchers(&unpacked.block_matchers);
        }
    }
    select(request.start, request.end, &compiled);
    let limit = request.limit;
    if let Ok(response) = runtime().block_on(store().label_names(Request::new(request))) {
        let names = response.into_inner().names;
        assert!(limit <= 0 || names.len() as u64 <= limit as u64);
        assert!(
            names.windows(2).all(|pair| pair[0] < pair[1]),
            "names not sorted and distinct"
        );
    }
}

fn label_values(bytes: &[u8]) {
    let Ok(request) = thanos::LabelValuesRequest::decode(bytes) else {
        return;
    };
    round_trips(&request);
    let Some(compiled) = matchers(&request.matchers) else {
        return;
    };
    if let Some(any) = &request.hints {
        if let Ok(unpacked) = hints::unpack::<hintspb::LabelValuesRequestHints>(any) {
            let _ = matchers(&unpacked.block_matchers);
        }
    }
    select(request.start, request.end, &compiled);
    let limit = request.limit;
    if let Ok(response) = runtime().block_on(store().label_values(Request::new(request))) {
        let values = response.into_inner().values;
        assert!(limit <= 0 || values.len() as u64 <= limit as u64);
        assert!(
            values.windows(2).all(|pair| pair[0] < pair[1]),
            "values not sorted and distinct"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => series(bytes),
        1 => label_names(bytes),
        _ => label_values(bytes),
    }
});
