//! Wire compatibility: messages encode to the bytes Thanos' and Prometheus' field numbers and
//! types dictate (computed by hand from the .proto definitions), and hand-written bytes decode.

use prost::Message;
use storeapi::MemoryStore;
use storeapi::proto::thanos::info::info_server::InfoServer;
use storeapi::proto::thanos::store_server::StoreServer;
use storeapi::proto::{hintspb, prometheus, thanos};
use tonic::server::NamedService;

fn check_encoding<M: Message + Default + PartialEq + std::fmt::Debug>(
    message: &M,
    expected: &[u8],
) {
    assert_eq!(message.encode_to_vec(), expected, "encoding of {message:?}");
    match M::decode(expected) {
        Ok(decoded) => assert_eq!(&decoded, message, "decoding back"),
        Err(error) => panic!("decoding {expected:02X?}: {error}"),
    }
}

fn label(name: &str, value: &str) -> thanos::Label {
    thanos::Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// `a="b"`: field 1 and 2, both length-delimited.
const LABEL_A_B: [u8; 6] = [0x0A, 0x01, b'a', 0x12, 0x01, b'b'];

#[test]
fn label_and_matcher() {
    check_encoding(&label("a", "b"), &LABEL_A_B);
    let matcher = thanos::LabelMatcher {
        r#type: thanos::label_matcher::Type::Re.into(),
        name: "job".to_owned(),
        value: "x".to_owned(),
    };
    check_encoding(
        &matcher,
        &[0x08, 0x02, 0x12, 0x03, b'j', b'o', b'b', 0x1A, 0x01, b'x'],
    );
    let nre = thanos::LabelMatcher {
        r#type: thanos::label_matcher::Type::Nre.into(),
        ..Default::default()
    };
    check_encoding(&nre, &[0x08, 0x03]);
}

#[test]
fn series_request_fields() {
    let request = thanos::SeriesRequest {
        min_time: -1,
        max_time: 2,
        partial_response_strategy: thanos::PartialResponseStrategy::Abort.into(),
        skip_chunks: true,
        without_replica_labels: vec!["r".to_owned()],
        limit: 5,
        response_batch_size: 64,
        ..Default::default()
    };
    let mut expected = vec![0x08];
    // int64 -1 is a ten-byte varint (not zig-zag).
    expected.extend([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    expected.extend([0x10, 0x02]); // 2 max_time
    expected.extend([0x38, 0x01]); // 7 partial_response_strategy ABORT
    expected.extend([0x40, 0x01]); // 8 skip_chunks
    expected.extend([0x72, 0x01, b'r']); // 14 without_replica_labels
    expected.extend([0x78, 0x05]); // 15 limit
    expected.extend([0x80, 0x01, 0x40]); // 16 response_batch_size (two-byte tag)
    check_encoding(&request, &expected);

    let hinted = thanos::SeriesRequest {
        aggregates: vec![thanos::Aggr::Count.into(), thanos::Aggr::Counter.into()],
        max_resolution_window: 300_000,
        query_hints: Some(thanos::QueryHints {
            step_millis: 1,
            func: Some(thanos::Func {
                name: "f".to_owned(),
            }),
            grouping: Some(thanos::Grouping {
                by: true,
                labels: vec!["g".to_owned()],
            }),
            range: Some(thanos::Range { millis: 2 }),
            ..Default::default()
        }),
        shard_info: Some(thanos::ShardInfo {
            shard_index: 1,
            total_shards: 2,
            by: true,
            labels: vec!["s".to_owned()],
        }),
        ..Default::default()
    };
    let mut expected = vec![0x20, 0xE0, 0xA7, 0x12]; // 4 max_resolution_window = 300000
    expected.extend([0x2A, 0x02, 0x01, 0x05]); // 5 aggregates, packed
    // 12 query_hints: 1 step, 2 func{1 name}, 4 grouping{1 by, 3 labels}, 5 range{1 millis}
    expected.extend([0x62, 0x12, 0x08, 0x01, 0x12, 0x03, 0x0A, 0x01, b'f']);
    expected.extend([
        0x22, 0x05, 0x08, 0x01, 0x1A, 0x01, b'g', 0x2A, 0x02, 0x08, 0x02,
    ]);
    // 13 shard_info
    expected.extend([
        0x6A, 0x09, 0x08, 0x01, 0x10, 0x02, 0x18, 0x01, 0x22, 0x01, b's',
    ]);
    check_encoding(&hinted, &expected);
}

#[test]
fn series_response_frames() {
    let series = thanos::Series {
        labels: vec![label("a", "b")],
        chunks: vec![],
    };
    let mut series_bytes = vec![0x0A, 0x06];
    series_bytes.extend(LABEL_A_B);

    let mut expected = vec![0x0A, 0x08];
    expected.extend(&series_bytes);
    check_encoding(&storeapi::merge::series_frame(series.clone()), &expected);

    check_encoding(&storeapi::merge::warning_frame("w"), &[0x12, 0x01, b'w']);

    let batch = thanos::SeriesResponse {
        result: Some(thanos::series_response::Result::Batch(
            thanos::SeriesBatch {
                series: vec![series],
            },
        )),
    };
    let mut expected = vec![0x22, 0x0A, 0x0A, 0x08];
    expected.extend(&series_bytes);
    check_encoding(&batch, &expected);

    let hints = thanos::SeriesResponse {
        result: Some(thanos::series_response::Result::Hints(prost_types::Any {
            type_url: "t".to_owned(),
            value: vec![7],
        })),
    };
    check_encoding(&hints, &[0x1A, 0x06, 0x0A, 0x01, b't', 0x12, 0x01, 0x07]);
}

#[test]
fn chunks() {
    let chunk = thanos::Chunk {
        r#type: thanos::chunk::Encoding::FloatHistogram.into(),
        data: vec![1, 2].into(),
        hash: 7,
    };
    check_encoding(&chunk, &[0x08, 0x02, 0x12, 0x02, 0x01, 0x02, 0x18, 0x07]);
    let aggregate = thanos::AggrChunk {
        min_time: 1,
        max_time: 2,
        raw: Some(thanos::Chunk {
            data: vec![9].into(),
            ..Default::default()
        }),
        counter: Some(Box::default()),
        ..Default::default()
    };
    // XOR is 0, so the raw chunk's type is not written; an empty counter is still present.
    check_encoding(
        &aggregate,
        &[
            0x08, 0x01, 0x10, 0x02, 0x1A, 0x03, 0x12, 0x01, 0x09, 0x42, 0x00,
        ],
    );
}

#[test]
fn label_requests_and_responses() {
    let names = thanos::LabelNamesRequest {
        start: 1,
        end: 2,
        matchers: vec![thanos::LabelMatcher {
            r#type: 0,
            name: "a".to_owned(),
            value: "b".to_owned(),
        }],
        limit: 4,
        ..Default::default()
    };
    check_encoding(
        &names,
        &[
            0x18, 0x01, 0x20, 0x02, 0x32, 0x06, 0x12, 0x01, b'a', 0x1A, 0x01, b'b', 0x40, 0x04,
        ],
    );
    let values = thanos::LabelValuesRequest {
        label: "job".to_owned(),
        start: 1,
        end: 2,
        without_replica_labels: vec!["r".to_owned()],
        limit: 3,
        ..Default::default()
    };
    check_encoding(
        &values,
        &[
            0x0A, 0x03, b'j', b'o', b'b', 0x20, 0x01, 0x28, 0x02, 0x42, 0x01, b'r', 0x48, 0x03,
        ],
    );
    let response = thanos::LabelValuesResponse {
        values: vec!["v".to_owned()],
        warnings: vec!["w".to_owned()],
        hints: None,
    };
    check_encoding(&response, &[0x0A, 0x01, b'v', 0x12, 0x01, b'w']);
}

#[test]
fn info_response() {
    let info = thanos::info::InfoResponse {
        label_sets: vec![thanos::ZLabelSet {
            labels: vec![label("a", "b")],
        }],
        component_type: "store".to_owned(),
        store: Some(thanos::info::StoreInfo {
            min_time: 1,
            max_time: 2,
            supports_sharding: true,
            supports_without_replica_labels: true,
            tsdb_infos: vec![thanos::info::TsdbInfo {
                labels: Some(thanos::ZLabelSet::default()),
                min_time: 3,
                max_time: 0,
            }],
            supports_projections: true,
        }),
        exemplars: Some(thanos::info::ExemplarsInfo {
            min_time: 0,
            max_time: 5,
        }),
        query: Some(thanos::info::QueryApiInfo {}),
        ..Default::default()
    };
    // 1 label_sets: one ZLabelSet holding one label.
    let mut expected = vec![0x0A, 0x08, 0x0A, 0x06];
    expected.extend(LABEL_A_B);
    expected.extend([0x12, 0x05, b's', b't', b'o', b'r', b'e']);
    // 3 store: 1 min, 2 max, 3 sharding, 5 without_replica_labels (4 is reserved),
    // 6 tsdb_infos {1 labels (empty, present), 2 min_time}, 7 projections
    expected.extend([0x1A, 0x10, 0x08, 0x01, 0x10, 0x02, 0x18, 0x01, 0x28, 0x01]);
    expected.extend([0x32, 0x04, 0x0A, 0x00, 0x10, 0x03, 0x38, 0x01]);
    expected.extend([0x3A, 0x02, 0x10, 0x05]); // 7 exemplars
    expected.extend([0x42, 0x00]); // 8 query: present and empty means "served"
    check_encoding(&info, &expected);

    let legacy = thanos::InfoResponse {
        min_time: 1,
        store_type: thanos::StoreType::Debug.into(),
        ..Default::default()
    };
    check_encoding(&legacy, &[0x10, 0x01, 0x20, 0x06]);
}

#[test]
fn hints_and_query_stats() {
    let stats = hintspb::QueryStats {
        blocks_queried: 1,
        chunks_fetch_count: 2,
        merge_duration: Some(prost_types::Duration {
            seconds: 1,
            nanos: 5,
        }),
        ..Default::default()
    };
    // Field 19 and field 22 need two-byte tags.
    check_encoding(
        &stats,
        &[
            0x08, 0x01, 0x98, 0x01, 0x02, 0xB2, 0x01, 0x04, 0x08, 0x01, 0x10, 0x05,
        ],
    );
    let response = hintspb::SeriesResponseHints {
        queried_blocks: vec![hintspb::Block { id: "x".to_owned() }],
        query_stats: None,
    };
    check_encoding(&response, &[0x0A, 0x03, 0x0A, 0x01, b'x']);
    let request = hintspb::SeriesRequestHints {
        block_matchers: vec![],
        enable_query_stats: true,
    };
    check_encoding(&request, &[0x10, 0x01]);
}

#[test]
fn prometheus_remote_read() {
    let request = prometheus::ReadRequest {
        queries: vec![prometheus::Query {
            start_timestamp_ms: 1,
            end_timestamp_ms: 2,
            matchers: vec![],
            hints: None,
        }],
        accepted_response_types: vec![
            prometheus::read_request::ResponseType::StreamedXorChunks.into(),
        ],
    };
    check_encoding(
        &request,
        &[0x0A, 0x04, 0x08, 0x01, 0x10, 0x02, 0x12, 0x01, 0x01],
    );
    let chunked = prometheus::ChunkedReadResponse {
        chunked_series: vec![prometheus::ChunkedSeries {
            labels: vec![],
            chunks: vec![prometheus::Chunk {
                min_time_ms: 1,
                max_time_ms: 2,
                r#type: prometheus::chunk::Encoding::Xor.into(),
                data: vec![7],
            }],
        }],
        query_index: 3,
    };
    check_encoding(
        &chunked,
        &[
            0x0A, 0x0B, 0x12, 0x09, 0x08, 0x01, 0x10, 0x02, 0x18, 0x01, 0x22, 0x01, 0x07, 0x10,
            0x03,
        ],
    );
    let sample = prometheus::Sample {
        value: 1.0,
        timestamp: 2,
    };
    check_encoding(&sample, &[0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F, 0x10, 0x02]);
    let histogram = prometheus::Histogram {
        schema: -1,
        ..Default::default()
    };
    // sint32 is zig-zag: -1 is 1.
    check_encoding(&histogram, &[0x20, 0x01]);
}

#[test]
fn decoding_hand_written_bytes_skips_unknown_fields() {
    // A Series frame with an extra unknown field 99 (varint) a newer Thanos might add.
    let mut bytes = vec![0x0A, 0x0B, 0x0A, 0x06];
    bytes.extend(LABEL_A_B);
    bytes.extend([0x98, 0x06, 0x01]); // field 99, varint 1: tag (99 << 3) = 792
    let frame = thanos::SeriesResponse::decode(bytes.as_slice()).unwrap();
    match frame.result {
        Some(thanos::series_response::Result::Series(series)) => {
            assert_eq!(series.labels, vec![label("a", "b")]);
        }
        other => panic!("expected a series frame, got {other:?}"),
    }
    // LabelNamesResponse with names in field 1 and warnings in field 2.
    let names = thanos::LabelNamesResponse::decode(
        &[0x0A, 0x01, b'n', 0x0A, 0x01, b'm', 0x12, 0x01, b'w'][..],
    )
    .unwrap();
    assert_eq!(names.names, ["n", "m"]);
    assert_eq!(names.warnings, ["w"]);
}

#[test]
fn grpc_service_names() {
    assert_eq!(
        <StoreServer<MemoryStore> as NamedService>::NAME,
        "thanos.Store"
    );
    assert_eq!(
        <InfoServer<MemoryStore> as NamedService>::NAME,
        "thanos.info.Info"
    );
}
