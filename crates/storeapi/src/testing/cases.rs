//! The acceptance data set and the checks of [`run_acceptance`](super::run_acceptance).

use prom_model::{Labels, Sample};
use tonic::Code;

use super::{TestStore, collect_series, label_strings, matcher, samples_in_range, series_request};
use crate::memory::SeriesData;
use crate::proto::thanos::info::InfoRequest;
use crate::proto::thanos::label_matcher::Type::{Eq, Neq, Nre, Re};
use crate::proto::thanos::{self, LabelMatcher};

/// Oldest sample of the acceptance data (ms).
pub const DATA_MIN_TIME: i64 = 0;
/// Newest sample of the acceptance data (ms).
pub const DATA_MAX_TIME: i64 = 299 * STEP;

const STEP: i64 = 15_000;
/// Far beyond every sample.
const FUTURE: (i64, i64) = (10_000_000_000, 20_000_000_000);

/// The external labels every acceptance store carries.
pub fn external_labels() -> Labels {
    Labels::from_pairs([("region", "eu-west"), ("replica", "r1")])
}

fn samples(from: i64, to: i64) -> Vec<Sample> {
    (from..=to)
        .step_by(STEP as usize)
        .map(|t| Sample::new(t, (t / STEP) as f64 * 1.5))
        .collect()
}

/// The series of the acceptance data set (own labels, without external labels).
pub fn acceptance_data() -> Vec<SeriesData> {
    let early = || samples(0, 600_000);
    vec![
        SeriesData::new(
            Labels::from_pairs([("__name__", "up"), ("job", "api"), ("instance", "a")]),
            early(),
        ),
        SeriesData::new(
            Labels::from_pairs([("__name__", "up"), ("job", "api"), ("instance", "b")]),
            early(),
        ),
        SeriesData::new(
            Labels::from_pairs([("__name__", "up"), ("job", "db"), ("instance", "c")]),
            samples(705_000, 900_000),
        ),
        SeriesData::new(
            Labels::from_pairs([
                ("__name__", "requests_total"),
                ("job", "api"),
                ("code", "200"),
            ]),
            early(),
        ),
        SeriesData::new(
            Labels::from_pairs([
                ("__name__", "requests_total"),
                ("job", "api"),
                ("code", "500"),
            ]),
            early(),
        ),
        SeriesData::new(
            Labels::from_pairs([("__name__", "multiline"), ("path", "a\nb")]),
            early(),
        ),
        SeriesData::new(
            Labels::from_pairs([("__name__", "collide"), ("region", "series-value")]),
            early(),
        ),
        SeriesData::new(
            Labels::from_pairs([("__name__", "long"), ("job", "batch")]),
            samples(0, DATA_MAX_TIME),
        ),
    ]
}

/// The expected label sets, external labels added, sorted, as text.
fn expected(sets: &[&[(&str, &str)]]) -> Vec<String> {
    let mut all: Vec<Labels> = sets
        .iter()
        .map(|pairs| {
            let mut labels = Labels::from_pairs(pairs.iter().copied());
            for label in &external_labels() {
                labels.set(label.name.clone(), label.value.clone());
            }
            labels
        })
        .collect();
    all.sort();
    all.iter().map(Labels::to_string).collect()
}

const UP_A: &[(&str, &str)] = &[("__name__", "up"), ("job", "api"), ("instance", "a")];
const UP_B: &[(&str, &str)] = &[("__name__", "up"), ("job", "api"), ("instance", "b")];
const UP_C: &[(&str, &str)] = &[("__name__", "up"), ("job", "db"), ("instance", "c")];
const REQ_200: &[(&str, &str)] = &[
    ("__name__", "requests_total"),
    ("job", "api"),
    ("code", "200"),
];
const REQ_500: &[(&str, &str)] = &[
    ("__name__", "requests_total"),
    ("job", "api"),
    ("code", "500"),
];
const MULTILINE: &[(&str, &str)] = &[("__name__", "multiline"), ("path", "a\nb")];
const COLLIDE: &[(&str, &str)] = &[("__name__", "collide")];
const LONG: &[(&str, &str)] = &[("__name__", "long"), ("job", "batch")];

async fn check_series(
    store: &mut TestStore,
    case: &str,
    range: (i64, i64),
    matchers: Vec<LabelMatcher>,
    want: &[&[(&str, &str)]],
) {
    let request = series_request(range.0, range.1, matchers);
    let result = match collect_series(&mut store.store, request).await {
        Ok(result) => result,
        Err(status) => panic!("{case}: Series failed: {status}"),
    };
    assert_eq!(
        label_strings(case, &result.series),
        expected(want),
        "{case}"
    );
    assert!(
        result.warnings.is_empty(),
        "{case}: unexpected warnings {:?}",
        result.warnings
    );
}

/// A `Series` case: name, time range, matchers, expected series (own labels).
type SeriesCase = (
    &'static str,
    (i64, i64),
    Vec<LabelMatcher>,
    Vec<&'static [(&'static str, &'static str)]>,
);

pub(super) async fn series_selection(store: &mut TestStore) {
    let all = (DATA_MIN_TIME, DATA_MAX_TIME);
    let cases: Vec<SeriesCase> = vec![
        (
            "equal",
            all,
            vec![matcher(Eq, "job", "api")],
            vec![UP_A, UP_B, REQ_200, REQ_500],
        ),
        (
            "not equal",
            all,
            vec![matcher(Eq, "__name__", "up"), matcher(Neq, "job", "api")],
            vec![UP_C],
        ),
        (
            "regex alternation",
            all,
            vec![matcher(Re, "instance", "a|b")],
            vec![UP_A, UP_B],
        ),
        (
            "regex is anchored",
            all,
            vec![matcher(Re, "job", "ap")],
            vec![],
        ),
        (
            "regex any matches missing label",
            all,
            vec![
                matcher(Re, "__name__", "up|multiline"),
                matcher(Re, "path", ".*"),
            ],
            vec![UP_A, UP_B, UP_C, MULTILINE],
        ),
        (
            "regex dot matches newline",
            all,
            vec![matcher(Re, "path", "a.b")],
            vec![MULTILINE],
        ),
        (
            "not regex",
            all,
            vec![
                matcher(Eq, "__name__", "up"),
                matcher(Nre, "instance", "a.*"),
            ],
            vec![UP_B, UP_C],
        ),
        (
            "equal empty matches missing label",
            all,
            vec![matcher(Eq, "__name__", "up"), matcher(Eq, "code", "")],
            vec![UP_A, UP_B, UP_C],
        ),
        (
            "not equal empty requires label",
            all,
            vec![matcher(Neq, "code", "")],
            vec![REQ_200, REQ_500],
        ),
        (
            "external label matches",
            all,
            vec![
                matcher(Eq, "region", "eu-west"),
                matcher(Eq, "__name__", "up"),
            ],
            vec![UP_A, UP_B, UP_C],
        ),
        (
            "external label mismatch",
            all,
            vec![matcher(Eq, "region", "us")],
            vec![],
        ),
        (
            "external label wins over series label",
            all,
            vec![matcher(Eq, "__name__", "collide")],
            vec![COLLIDE],
        ),
        (
            "unknown label value",
            all,
            vec![matcher(Eq, "nonexistent", "x")],
            vec![],
        ),
        (
            "all series",
            all,
            vec![matcher(Re, "__name__", ".+")],
            vec![UP_A, UP_B, UP_C, REQ_200, REQ_500, MULTILINE, COLLIDE, LONG],
        ),
        (
            "late range",
            (650_000, 1_000_000),
            vec![matcher(Eq, "__name__", "up")],
            vec![UP_C],
        ),
        (
            "early range",
            (0, 300_000),
            vec![matcher(Eq, "__name__", "up")],
            vec![UP_A, UP_B],
        ),
        (
            "single inclusive instant",
            (900_000, 900_000),
            vec![matcher(Eq, "__name__", "up")],
            vec![UP_C],
        ),
        (
            "gap between data",
            (600_001, 699_999),
            vec![matcher(Eq, "__name__", "up")],
            vec![],
        ),
        (
            "future range",
            FUTURE,
            vec![matcher(Re, "__name__", ".+")],
            vec![],
        ),
    ];
    for (case, range, matchers, want) in cases {
        check_series(store, case, range, matchers, &want).await;
    }
}

pub(super) async fn chunk_contents(store: &mut TestStore) {
    let data = acceptance_data();
    for (case, name, range) in [
        ("full range samples", "long", (DATA_MIN_TIME, DATA_MAX_TIME)),
        ("partial range samples", "long", (1_000_000, 2_000_000)),
        ("short series samples", "multiline", (300_000, 450_000)),
    ] {
        let request = series_request(range.0, range.1, vec![matcher(Eq, "__name__", name)]);
        let result = match collect_series(&mut store.store, request).await {
            Ok(result) => result,
            Err(status) => panic!("{case}: Series failed: {status}"),
        };
        assert_eq!(result.series.len(), 1, "{case}: one series expected");
        let got = samples_in_range(case, &result.series[0], range.0, range.1);
        let mut want: Vec<Sample> = data
            .iter()
            .find(|series| series.labels.metric_name() == Some(name))
            .map(|series| series.samples.clone())
            .unwrap_or_default();
        want.retain(|sample| sample.t >= range.0 && sample.t <= range.1);
        assert!(!want.is_empty(), "{case}: the case must cover samples");
        assert_eq!(got, want, "{case}");
        let chunks = &result.series[0].chunks;
        assert!(
            chunks
                .windows(2)
                .all(|pair| pair[0].min_time <= pair[1].min_time),
            "{case}: chunks must be ordered by min_time"
        );
        assert!(
            chunks.iter().all(|chunk| chunk.min_time <= chunk.max_time),
            "{case}: chunk time ranges must not be inverted"
        );
    }
}

pub(super) async fn skip_chunks_and_limit(store: &mut TestStore) {
    let mut request = series_request(
        DATA_MIN_TIME,
        DATA_MAX_TIME,
        vec![matcher(Eq, "job", "api")],
    );
    request.skip_chunks = true;
    let result = match collect_series(&mut store.store, request).await {
        Ok(result) => result,
        Err(status) => panic!("skip_chunks: Series failed: {status}"),
    };
    assert_eq!(
        label_strings("skip_chunks", &result.series),
        expected(&[UP_A, UP_B, REQ_200, REQ_500])
    );
    assert!(
        result.series.iter().all(|series| series.chunks.is_empty()),
        "skip_chunks: chunks must be left out"
    );

    let mut request = series_request(
        DATA_MIN_TIME,
        DATA_MAX_TIME,
        vec![matcher(Re, "__name__", ".+")],
    );
    request.limit = 2;
    let result = match collect_series(&mut store.store, request).await {
        Ok(result) => result,
        Err(status) => panic!("limit: Series failed: {status}"),
    };
    assert_eq!(
        label_strings("limit", &result.series),
        expected(&[COLLIDE, LONG]),
        "limit"
    );
}

pub(super) async fn batching(store: &mut TestStore) {
    let all_series = || {
        series_request(
            DATA_MIN_TIME,
            DATA_MAX_TIME,
            vec![matcher(Re, "__name__", ".+")],
        )
    };
    let unbatched = match collect_series(&mut store.store, all_series()).await {
        Ok(result) => result,
        Err(status) => panic!("unbatched: Series failed: {status}"),
    };
    assert_eq!(
        unbatched.batch_frames, 0,
        "batch frames sent to a client that did not ask"
    );
    for batch_size in [1, 3] {
        let mut request = all_series();
        request.response_batch_size = batch_size;
        let batched = match collect_series(&mut store.store, request).await {
            Ok(result) => result,
            Err(status) => panic!("batch size {batch_size}: Series failed: {status}"),
        };
        assert_eq!(
            batched.series, unbatched.series,
            "batch size {batch_size}: same series expected"
        );
        if batch_size <= 1 {
            assert_eq!(
                batched.batch_frames, 0,
                "batch size {batch_size}: no batch frames expected"
            );
        } else {
            assert!(
                batched.batch_frames > 0,
                "batch size {batch_size}: batch frames expected"
            );
            let limit = usize::try_from(batch_size).unwrap_or(usize::MAX);
            assert!(
                batched.largest_batch <= limit,
                "batch size {batch_size}: a batch held {} series",
                batched.largest_batch
            );
        }
    }
}

pub(super) async fn without_replica_labels(store: &mut TestStore) {
    let info = match store.info.info(InfoRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(status) => panic!("info: {status}"),
    };
    let supported = info
        .store
        .is_some_and(|store| store.supports_without_replica_labels);
    if !supported {
        return;
    }
    let mut request = series_request(
        DATA_MIN_TIME,
        DATA_MAX_TIME,
        vec![matcher(Eq, "__name__", "up")],
    );
    request.without_replica_labels = vec!["replica".to_owned()];
    let result = match collect_series(&mut store.store, request).await {
        Ok(result) => result,
        Err(status) => panic!("without_replica_labels: Series failed: {status}"),
    };
    let got = label_strings("without_replica_labels", &result.series);
    let want: Vec<String> = [UP_A, UP_B, UP_C]
        .iter()
        .map(|pairs| {
            let mut labels = Labels::from_pairs(pairs.iter().copied());
            labels.set("region", "eu-west");
            labels.to_string()
        })
        .collect();
    assert_eq!(got, want, "without_replica_labels");
}

async fn check_names(
    store: &mut TestStore,
    case: &str,
    range: (i64, i64),
    matchers: Vec<LabelMatcher>,
    want: &[&str],
) {
    let request = thanos::LabelNamesRequest {
        start: range.0,
        end: range.1,
        matchers,
        ..Default::default()
    };
    let names = match store.store.label_names(request).await {
        Ok(response) => response.into_inner().names,
        Err(status) => panic!("{case}: LabelNames failed: {status}"),
    };
    assert_eq!(names, want, "{case}");
}

pub(super) async fn label_names(store: &mut TestStore) {
    let all = (DATA_MIN_TIME, DATA_MAX_TIME);
    let every = [
        "__name__", "code", "instance", "job", "path", "region", "replica",
    ];
    check_names(store, "names of all series", all, vec![], &every).await;
    check_names(
        store,
        "names with any-name matcher",
        all,
        vec![matcher(Re, "__name__", ".+")],
        &every,
    )
    .await;
    check_names(
        store,
        "names with matcher",
        all,
        vec![matcher(Eq, "job", "db")],
        &["__name__", "instance", "job", "region", "replica"],
    )
    .await;
    check_names(
        store,
        "names with external label mismatch",
        all,
        vec![matcher(Eq, "region", "us")],
        &[],
    )
    .await;
    check_names(store, "names in a range without data", FUTURE, vec![], &[]).await;
}

async fn check_values(
    store: &mut TestStore,
    case: &str,
    label: &str,
    range: (i64, i64),
    matchers: Vec<LabelMatcher>,
    want: &[&str],
) {
    let request = thanos::LabelValuesRequest {
        label: label.to_owned(),
        start: range.0,
        end: range.1,
        matchers,
        ..Default::default()
    };
    let values = match store.store.label_values(request).await {
        Ok(response) => response.into_inner().values,
        Err(status) => panic!("{case}: LabelValues failed: {status}"),
    };
    assert_eq!(values, want, "{case}");
}

pub(super) async fn label_values(store: &mut TestStore) {
    let all = (DATA_MIN_TIME, DATA_MAX_TIME);
    check_values(
        store,
        "values of job",
        "job",
        all,
        vec![],
        &["api", "batch", "db"],
    )
    .await;
    check_values(
        store,
        "values with matcher",
        "job",
        all,
        vec![matcher(Eq, "__name__", "up")],
        &["api", "db"],
    )
    .await;
    check_values(
        store,
        "values with regex matcher",
        "code",
        all,
        vec![matcher(Re, "__name__", "requests_.*")],
        &["200", "500"],
    )
    .await;
    check_values(
        store,
        "values of external label",
        "region",
        all,
        vec![],
        &["eu-west"],
    )
    .await;
    check_values(
        store,
        "values of unknown label",
        "nonexistent",
        all,
        vec![],
        &[],
    )
    .await;
    check_values(
        store,
        "values in a range without data",
        "job",
        FUTURE,
        vec![],
        &[],
    )
    .await;
}

pub(super) async fn invalid_matchers(store: &mut TestStore) {
    let request = series_request(DATA_MIN_TIME, DATA_MAX_TIME, vec![matcher(Re, "job", "a(")]);
    match collect_series(&mut store.store, request).await {
        Ok(result) => panic!(
            "bad regex: expected an error, got {} series",
            result.series.len()
        ),
        Err(status) => assert_eq!(status.code(), Code::InvalidArgument, "bad regex: {status}"),
    }
    let request = thanos::LabelValuesRequest {
        label: "job".to_owned(),
        start: DATA_MIN_TIME,
        end: DATA_MAX_TIME,
        matchers: vec![matcher(Nre, "job", "(")],
        ..Default::default()
    };
    match store.store.label_values(request).await {
        Ok(response) => panic!(
            "bad regex in LabelValues: expected an error, got {:?}",
            response.into_inner()
        ),
        Err(status) => assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "bad regex in LabelValues: {status}"
        ),
    }
}

pub(super) async fn info(store: &mut TestStore) {
    let info = match store.info.info(InfoRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(status) => panic!("info: {status}"),
    };
    assert!(
        !info.component_type.is_empty(),
        "info: ComponentType must be set"
    );
    let external = external_labels();
    let sets: Vec<String> = info
        .label_sets
        .iter()
        .map(
            |set| match crate::convert::labels_from_proto(set.labels.clone()) {
                Ok(labels) => labels.to_string(),
                Err(error) => panic!("info: invalid label set: {error}"),
            },
        )
        .collect();
    assert!(
        sets.contains(&external.to_string()),
        "info: label sets {sets:?} lack {external}"
    );
    let Some(store_info) = info.store else {
        panic!("info: a store must advertise the store API");
    };
    assert!(
        store_info.min_time <= DATA_MIN_TIME && store_info.max_time >= DATA_MAX_TIME,
        "info: time range [{}, {}] does not cover the data",
        store_info.min_time,
        store_info.max_time
    );
    // The legacy method was removed from Thanos in v0.37; a store may not serve it.
    match store.store.info(thanos::InfoRequest {}).await {
        Err(status) if status.code() == Code::Unimplemented => {}
        Err(status) => panic!("legacy info: {status}"),
        Ok(response) => {
            let legacy = response.into_inner();
            assert!(
                legacy.min_time <= DATA_MIN_TIME && legacy.max_time >= DATA_MAX_TIME,
                "legacy info: time range does not cover the data"
            );
            let expected_set = crate::convert::labels_to_proto(&external);
            assert!(
                legacy
                    .label_sets
                    .iter()
                    .any(|set| set.labels == expected_set),
                "legacy info: label sets lack {external}"
            );
        }
    }
}

pub(super) async fn empty_store(store: &mut TestStore) {
    check_series(
        store,
        "empty store",
        (DATA_MIN_TIME, DATA_MAX_TIME),
        vec![matcher(Re, "__name__", ".+")],
        &[],
    )
    .await;
    check_values(
        store,
        "empty store values",
        "job",
        (DATA_MIN_TIME, DATA_MAX_TIME),
        vec![],
        &[],
    )
    .await;
}
