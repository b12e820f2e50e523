//! The `sidecar` binary next to a real Prometheus 2.42, with moto as the S3 bucket.

// Test helpers outside #[test] functions panic on unexpected failures by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use prom_model::{Labels, Sample};
use storeapi::SeriesData;
use storeapi::proto::thanos;
use storeapi::proto::thanos::info::InfoRequest;
use storeapi::proto::thanos::label_matcher::Type as MatcherType;
use storeapi::testing::{StoreFactory, TestStore, collect_series, matcher, series_request};
use test_harness::{Moto, Process, Prometheus, PrometheusConfig, free_port, wait_until};
use tsdb_block::meta::BlockMeta;

use common::{Sidecar, block_dirs, open_bucket, promtool_blocks, s3_config};

fn external() -> Vec<(String, String)> {
    vec![
        ("cluster".to_owned(), "test".to_owned()),
        ("replica".to_owned(), "a".to_owned()),
    ]
}

/// Two series over three hours: promtool cuts them into two blocks.
fn block_series() -> Vec<SeriesData> {
    let samples: Vec<Sample> = (0..180)
        .map(|minute| Sample::new(minute * 60_000, minute as f64))
        .collect();
    vec![
        SeriesData::new(
            Labels::from_pairs([("__name__", "shipped"), ("instance", "x")]),
            samples.clone(),
        ),
        SeriesData::new(
            Labels::from_pairs([("__name__", "shipped"), ("instance", "y")]),
            samples,
        ),
    ]
}

/// A Prometheus whose TSDB holds the promtool blocks of [`block_series`].
fn prometheus_with_blocks(work: &tempfile::TempDir) -> Prometheus {
    let data = work.path().join("data");
    promtool_blocks(&block_series(), &data).unwrap();
    Prometheus::start(PrometheusConfig {
        external_labels: external(),
        data_dir: Some(data),
        ..PrometheusConfig::default()
    })
    .unwrap()
}

#[test]
fn refuses_to_start_without_external_labels() {
    let prometheus = Prometheus::start(PrometheusConfig::default()).unwrap();
    let mut sidecar = Sidecar::spawn(&[format!("--prometheus.url={}", prometheus.url())]).unwrap();
    let mut status = None;
    wait_until("sidecar to exit", Duration::from_secs(60), || {
        status = sidecar.process.try_wait().unwrap();
        status.is_some()
    })
    .unwrap();
    let status = status.unwrap();
    assert!(
        !status.success(),
        "sidecar must fail without external labels"
    );
    let log = sidecar.process.log();
    let last = log
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.starts_with("sidecar: ") && last.contains("has no external labels"),
        "last line: {last}\n{log}"
    );
}

#[test]
fn not_ready_without_prometheus_and_gives_up_after_ready_timeout() {
    let unused = free_port();
    let mut sidecar = Sidecar::spawn(&[
        format!("--prometheus.url=http://127.0.0.1:{unused}"),
        "--prometheus.ready_timeout=5s".to_owned(),
    ])
    .unwrap();
    let http = sidecar.http;
    wait_until("sidecar /-/healthy", Duration::from_secs(30), || {
        matches!(test_harness::http_get(http, "/-/healthy"), Ok((200, _)))
    })
    .unwrap();
    let (status, _) = test_harness::http_get(http, "/-/ready").unwrap();
    assert_ne!(status, 200, "ready before prometheus answered");
    let mut exit = None;
    wait_until("sidecar to give up", Duration::from_secs(60), || {
        exit = sidecar.process.try_wait().unwrap();
        exit.is_some()
    })
    .unwrap();
    assert!(!exit.unwrap().success());
    let log = sidecar.process.log();
    let last = log
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.starts_with("sidecar: ") && last.contains("not ready after"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ships_blocks_exactly_once_across_restarts_in_operator_form() {
    let work = tempfile::tempdir().unwrap();
    let prometheus = prometheus_with_blocks(&work);
    let moto = Moto::start().unwrap();
    moto.create_bucket("thanos").unwrap();
    let yaml = s3_config(&moto.endpoint(), "thanos");
    // What the Prometheus Operator mounts as prometheus.http-client-file.yaml.
    let http_client_file = work.path().join("prometheus.http-client-file.yaml");
    std::fs::write(
        &http_client_file,
        "tls_config:\n  insecure_skip_verify: true\n",
    )
    .unwrap();
    let args = vec![
        "sidecar".to_owned(),
        format!("--prometheus.url={}/", prometheus.url()),
        format!("--tsdb.path={}", prometheus.data_dir().display()),
        format!("--objstore.config={yaml}"),
        "--reloader.watch-interval=5m".to_owned(),
        "--prometheus.http-client-file".to_owned(),
        http_client_file.display().to_string(),
        "--shipper.sync-interval=1s".to_owned(),
    ];
    let local_blocks = block_dirs(prometheus.data_dir()).unwrap();
    assert_eq!(local_blocks.len(), 2, "promtool should cut two blocks");

    let sidecar = Sidecar::start(&args).unwrap();
    sidecar.wait_passes(3.0).unwrap();
    assert_eq!(sidecar.metric("thanos_shipper_uploads_total").unwrap(), 2.0);
    assert_eq!(
        sidecar
            .metric("thanos_shipper_upload_failures_total")
            .unwrap(),
        0.0
    );

    let bucket = open_bucket(&yaml).await.unwrap();
    for block in &local_blocks {
        let id = block.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = bucket.get(&format!("{id}/meta.json")).await.unwrap();
        let meta = BlockMeta::from_json(&bytes, "bucket").unwrap();
        let thanos = meta.thanos.expect("thanos section");
        let labels: BTreeMap<String, String> = external().into_iter().collect();
        assert_eq!(thanos.labels, labels);
        assert_eq!(thanos.source, "sidecar");
        assert_eq!(thanos.downsample.resolution, 0);
        for file in &thanos.files {
            if file.rel_path == "meta.json" {
                continue;
            }
            let local_size = std::fs::metadata(block.join(&file.rel_path)).unwrap().len();
            assert_eq!(file.size_bytes as u64, local_size, "{}", file.rel_path);
            let remote = bucket
                .get(&format!("{id}/{}", file.rel_path))
                .await
                .unwrap();
            assert_eq!(remote.len() as u64, local_size);
        }
        assert!(thanos.files.iter().any(|file| file.rel_path == "index"));
    }
    let objects_before = bucket.iter_recursive("").await.unwrap();
    let log = sidecar.process.log();
    assert!(
        log.contains("--reloader.watch-interval=5m")
            && log.contains("ignoring Thanos sidecar flag"),
        "{log}"
    );
    drop(sidecar);

    // A restarted sidecar uploads nothing again.
    let sidecar = Sidecar::start(&args).unwrap();
    sidecar.wait_passes(3.0).unwrap();
    assert_eq!(sidecar.metric("thanos_shipper_uploads_total").unwrap(), 0.0);
    assert_eq!(bucket.iter_recursive("").await.unwrap(), objects_before);
    let record =
        std::fs::read_to_string(prometheus.data_dir().join("thanos.shipper.json")).unwrap();
    for block in &local_blocks {
        let id = block.file_name().unwrap().to_string_lossy().into_owned();
        assert!(record.contains(&id), "{record}");
    }
}

fn start_moto_on(port: u16, log_dir: &std::path::Path) -> Process {
    let mut command = Command::new(test_harness::require_program("moto_server").unwrap());
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .current_dir(log_dir);
    let process = Process::spawn("moto", command, log_dir).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until("moto to answer", Duration::from_secs(60), || {
        raw_request(addr, "GET", "/").is_ok()
    })
    .unwrap();
    assert_eq!(raw_request(addr, "PUT", "/thanos").unwrap(), 200);
    process
}

fn raw_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_resume_after_the_bucket_was_unreachable() {
    let work = tempfile::tempdir().unwrap();
    let prometheus = prometheus_with_blocks(&work);
    let port = free_port();
    let moto_dir = tempfile::tempdir().unwrap();
    let mut moto = start_moto_on(port, moto_dir.path());
    moto.kill();
    let endpoint = format!("127.0.0.1:{port}");
    let yaml = s3_config(&endpoint, "thanos");
    let sidecar = Sidecar::start(&[
        format!("--prometheus.url={}", prometheus.url()),
        format!("--tsdb.path={}", prometheus.data_dir().display()),
        format!("--objstore.config={yaml}"),
        "--shipper.sync-interval=1s".to_owned(),
    ])
    .unwrap();
    wait_until("a failed upload", Duration::from_secs(120), || {
        sidecar
            .metric("thanos_shipper_upload_failures_total")
            .is_ok_and(|failures| failures >= 1.0)
    })
    .unwrap();
    assert_eq!(sidecar.metric("thanos_shipper_uploads_total").unwrap(), 0.0);

    let _moto = start_moto_on(port, moto_dir.path());
    wait_until("uploads after the outage", Duration::from_secs(120), || {
        sidecar
            .metric("thanos_shipper_uploads_total")
            .is_ok_and(|uploads| uploads >= 2.0)
    })
    .unwrap();
    let bucket = open_bucket(&yaml).await.unwrap();
    for block in block_dirs(prometheus.data_dir()).unwrap() {
        let id = block.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            bucket.exists(&format!("{id}/meta.json")).await.unwrap(),
            "{id}"
        );
        assert!(bucket.exists(&format!("{id}/index")).await.unwrap(), "{id}");
        assert!(
            bucket.exists(&format!("{id}/chunks/000001")).await.unwrap(),
            "{id}"
        );
    }
    sidecar
        .wait_passes(sidecar.metric("thanos_shipper_dir_syncs_total").unwrap() + 2.0)
        .unwrap();
    assert_eq!(sidecar.metric("thanos_shipper_uploads_total").unwrap(), 2.0);
}

/// `up[1m]` as Prometheus' HTTP API returns it: labels without external labels → samples.
fn prometheus_range_vector(
    prometheus: &Prometheus,
    at_millis: i64,
) -> BTreeMap<String, Vec<Sample>> {
    let body = prometheus
        .get(&format!(
            "/api/v1/query?query=up%5B1m%5D&time={}.{:03}",
            at_millis / 1000,
            at_millis % 1000
        ))
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        json["data"]["result"]
            .as_array()
            .is_some_and(|result| !result.is_empty()),
        "{body}"
    );
    let mut out = BTreeMap::new();
    for result in json["data"]["result"].as_array().unwrap() {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(result["metric"].clone()).unwrap();
        let samples = result["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
                let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
                Sample::new(t, v)
            })
            .collect();
        out.insert(format!("{labels:?}"), samples);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn series_equal_prometheus_answers_and_errors_are_clear() {
    let mut prometheus = Prometheus::start(PrometheusConfig {
        external_labels: external(),
        scrape_interval: Duration::from_secs(1),
        ..PrometheusConfig::default()
    })
    .unwrap();
    let sidecar = Sidecar::start(&[format!("--prometheus.url={}", prometheus.url())]).unwrap();
    wait_until("three scrapes of up", Duration::from_secs(60), || {
        prometheus
            .get("/api/v1/query?query=count_over_time(up%5B1m%5D)%3E%3D3")
            .is_ok_and(|body| body.contains("\"value\""))
    })
    .unwrap();
    let (mut store, mut info) = sidecar.clients().await.unwrap();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let expected = prometheus_range_vector(&prometheus, now);
    assert!(!expected.is_empty());
    let request = series_request(
        now - 60_000,
        now,
        vec![matcher(MatcherType::Eq, "__name__", "up")],
    );
    let result = collect_series(&mut store, request).await.unwrap();
    let mut actual = BTreeMap::new();
    for series in result.series {
        let mut labels: BTreeMap<String, String> = series
            .labels
            .iter()
            .map(|label| (label.name.clone(), label.value.clone()))
            .collect();
        for (name, value) in external() {
            assert_eq!(labels.remove(&name), Some(value), "external label {name}");
        }
        let mut samples = Vec::new();
        for chunk in &series.chunks {
            let raw = chunk.raw.as_ref().unwrap();
            samples.extend(
                storeapi::chunk::decode_float_samples(raw)
                    .unwrap()
                    .into_iter()
                    .filter(|sample| sample.t >= now - 60_000 && sample.t <= now),
            );
        }
        actual.insert(format!("{labels:?}"), samples);
    }
    assert_eq!(actual, expected);

    assert_eq!(sidecar.metric("thanos_sidecar_prometheus_up").unwrap(), 1.0);
    let info = info.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.component_type, "sidecar");
    let store_info = info.store.unwrap();
    assert_eq!(store_info.max_time, i64::MAX);
    assert!(store_info.min_time <= now, "{}", store_info.min_time);
    let request = series_request(
        now - 60_000,
        now,
        vec![
            matcher(MatcherType::Eq, "__name__", "up"),
            matcher(MatcherType::Eq, "replica", "b"),
        ],
    );
    assert!(
        collect_series(&mut store, request)
            .await
            .unwrap()
            .series
            .is_empty()
    );

    // Prometheus gone: a clear Unavailable, quickly.
    prometheus.process().kill();
    let request = series_request(
        now - 60_000,
        now,
        vec![matcher(MatcherType::Eq, "__name__", "up")],
    );
    let started = std::time::Instant::now();
    let error = collect_series(&mut store, request).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error}");
    assert!(error.message().contains("prometheus"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Loads the acceptance data into Prometheus with promtool and starts a sidecar next to it.
struct PrometheusSidecarFactory;

impl StoreFactory for PrometheusSidecarFactory {
    async fn start(&self, external_labels: Labels, series: Vec<SeriesData>) -> TestStore {
        let work = tempfile::tempdir().unwrap();
        let data = work.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        if !series.is_empty() {
            promtool_blocks(&series, &data).unwrap();
        }
        let prometheus = Prometheus::start(PrometheusConfig {
            external_labels: external_labels
                .iter()
                .map(|label| (label.name.clone(), label.value.clone()))
                .collect(),
            data_dir: Some(data),
            ..PrometheusConfig::default()
        })
        .unwrap();
        let sidecar = Sidecar::start(&[format!("--prometheus.url={}", prometheus.url())]).unwrap();
        let (store, info) = sidecar.clients().await.unwrap();
        TestStore {
            store,
            info,
            guard: Box::new((sidecar, prometheus, work)),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn passes_the_storeapi_acceptance_suite() {
    storeapi::testing::run_acceptance(&PrometheusSidecarFactory).await;
}

/// Series that exercise the order of a streamed answer: `m` is a prefix of series that sort
/// before it once the external labels are added, `big` is long enough for Prometheus to split
/// it over several frames (its frames hold 1 MiB), `collide` carries the external label name
/// `replica` itself, and `many` is many small series.
fn order_series() -> Vec<SeriesData> {
    let few: Vec<Sample> = (0..30)
        .map(|index| Sample::new(index * 15_000, index as f64))
        .collect();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let big: Vec<Sample> = (0..140_000)
        .map(|index| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            Sample::new(index * 250, (state % 1_000_000) as f64 / 7.0)
        })
        .collect();
    let mut series = vec![SeriesData::new(
        Labels::from_pairs([("__name__", "big"), ("instance", "x")]),
        big,
    )];
    for pairs in [
        vec![("__name__", "m")],
        vec![("__name__", "m"), ("instance", "x")],
        vec![("__name__", "m"), ("instance", "x"), ("job", "j")],
        vec![("__name__", "m"), ("instance", "y")],
        vec![("__name__", "m"), ("zone", "z")],
        vec![("__name__", "collide"), ("a", "1")],
        vec![("__name__", "collide"), ("replica", "b")],
    ] {
        series.push(SeriesData::new(Labels::from_pairs(pairs), few.clone()));
    }
    for index in 0..2_000 {
        series.push(SeriesData::new(
            Labels::from_pairs([("__name__", "many"), ("i", &format!("{index:04}"))]),
            few.clone(),
        ));
    }
    series
}

/// What the sidecar answered before it streamed, from a remote read of our own: the whole
/// answer with external labels, sorted (stably), equal label sets joined, chunks sorted; and
/// how many series entries Prometheus' frames held.
async fn whole_answer_sorted(
    prometheus: &Prometheus,
    matchers: &[prom_model::Matcher],
    external: &Labels,
) -> (Vec<thanos::Series>, usize) {
    use prost::Message;
    use sidecar::remote_read::{
        FrameDecoder, decode_chunked_frame, read_request, with_external_labels,
    };
    let request = read_request(matchers, i64::MIN + 1, i64::MAX);
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap();
    objstore::tls::install_crypto_provider();
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/read", prometheus.url()))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let bytes = answer.bytes().await.unwrap();
    let mut decoder = FrameDecoder::default();
    decoder.push(&bytes);
    let mut series = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        for read in decode_chunked_frame(frame).unwrap() {
            series.push(thanos::Series {
                labels: with_external_labels(read.labels, external),
                chunks: read.chunks,
            });
        }
    }
    decoder.finish().unwrap();
    let entries = series.len();
    series.sort_by(|left, right| storeapi::convert::compare_labels(&left.labels, &right.labels));
    let mut joined: Vec<thanos::Series> = Vec::new();
    for one in series {
        match joined.last_mut() {
            Some(last) if last.labels == one.labels => last.chunks.extend(one.chunks),
            _ => joined.push(one),
        }
    }
    for one in &mut joined {
        storeapi::merge::sort_chunks(&mut one.chunks);
    }
    (joined, entries)
}

/// Every series of every frame of a Series call, as sent (split series are not joined).
async fn series_as_sent(
    store: &mut storeapi::StoreClient<tonic::transport::Channel>,
    request: thanos::SeriesRequest,
) -> Vec<thanos::Series> {
    use thanos::series_response::Result as Frame;
    let mut stream = store.series(request).await.unwrap().into_inner();
    let mut series = Vec::new();
    while let Some(frame) = stream.message().await.unwrap() {
        match frame.result {
            Some(Frame::Series(one)) => series.push(one),
            Some(Frame::Batch(batch)) => series.extend(batch.series),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    series
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_series_equal_the_whole_answer_sorted() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    promtool_blocks(&order_series(), &data).unwrap();
    let prometheus = Prometheus::start(PrometheusConfig {
        external_labels: external(),
        data_dir: Some(data),
        ..PrometheusConfig::default()
    })
    .unwrap();
    let sidecar = Sidecar::start(&[format!("--prometheus.url={}", prometheus.url())]).unwrap();
    let (mut store, _) = sidecar.clients().await.unwrap();
    let external_labels = Labels::from_pairs(external());
    let queries: Vec<Vec<prom_model::Matcher>> = vec![
        vec![prom_model::Matcher::new(prom_model::MatchType::Regex, "__name__", ".+").unwrap()],
        vec![prom_model::Matcher::equal("__name__", "m")],
        vec![prom_model::Matcher::equal("__name__", "big")],
        vec![
            prom_model::Matcher::new(prom_model::MatchType::Regex, "__name__", "m|collide")
                .unwrap(),
        ],
        vec![prom_model::Matcher::new(prom_model::MatchType::Regex, "instance", "x|y").unwrap()],
        vec![
            prom_model::Matcher::equal("__name__", "many"),
            prom_model::Matcher::new(prom_model::MatchType::Regex, "i", "1.*").unwrap(),
        ],
    ];
    for matchers in &queries {
        let (expected, _) = whole_answer_sorted(&prometheus, matchers, &external_labels).await;
        assert!(!expected.is_empty(), "{matchers:?}");
        let wire: Vec<thanos::LabelMatcher> = matchers
            .iter()
            .map(|one| {
                let kind = match one.kind() {
                    prom_model::MatchType::Equal => MatcherType::Eq,
                    prom_model::MatchType::NotEqual => MatcherType::Neq,
                    prom_model::MatchType::Regex => MatcherType::Re,
                    prom_model::MatchType::NotRegex => MatcherType::Nre,
                };
                matcher(kind, one.name(), one.value())
            })
            .collect();
        for batch_size in [0, 1, 64] {
            let mut request = series_request(i64::MIN + 1, i64::MAX, wire.clone());
            request.response_batch_size = batch_size;
            let got = series_as_sent(&mut store, request).await;
            let label_sets = |series: &[thanos::Series]| -> Vec<Vec<thanos::Label>> {
                series.iter().map(|one| one.labels.clone()).collect()
            };
            assert_eq!(
                label_sets(&got),
                label_sets(&expected),
                "{matchers:?}, batch size {batch_size}"
            );
            assert!(
                got == expected,
                "{matchers:?}, batch size {batch_size}: chunks differ"
            );
        }
        let mut request = series_request(i64::MIN + 1, i64::MAX, wire.clone());
        request.skip_chunks = true;
        let got = series_as_sent(&mut store, request).await;
        let labels_only: Vec<thanos::Series> = expected
            .iter()
            .map(|one| thanos::Series {
                labels: one.labels.clone(),
                chunks: Vec::new(),
            })
            .collect();
        assert_eq!(got, labels_only, "{matchers:?}, skip_chunks");
    }
    // The prefix case: Prometheus sends m{}, m{instance="x"}, m{instance="x", job="j"},
    // m{instance="y"}, m{zone="z"} (by their own labels); with the external labels the order
    // changes.
    let request = series_request(
        i64::MIN + 1,
        i64::MAX,
        vec![matcher(MatcherType::Eq, "__name__", "m")],
    );
    let order: Vec<String> = series_as_sent(&mut store, request)
        .await
        .iter()
        .map(|one| {
            one.labels
                .iter()
                .filter(|label| {
                    label.name != "__name__" && label.name != "cluster" && label.name != "replica"
                })
                .map(|label| format!("{}={}", label.name, label.value))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(
        order,
        ["instance=x,job=j", "instance=x", "instance=y", "", "zone=z"]
    );
    // `big` came in several frames and left as one series.
    let (big, entries) = whole_answer_sorted(
        &prometheus,
        &[prom_model::Matcher::equal("__name__", "big")],
        &external_labels,
    )
    .await;
    assert_eq!(big.len(), 1);
    assert!(entries > 1, "prometheus sent big in {entries} frame(s)");
}
