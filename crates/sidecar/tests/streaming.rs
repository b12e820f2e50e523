//! The sidecar's Series call against a scripted Prometheus: answers far larger than the memory
//! the sidecar may use, back-pressure from a slow client, cancellation, request limits, and
//! the bound on `SAMPLES` answers.
//!
//! The scripted Prometheus is a plain TCP server in this process that writes its remote read
//! answer frame by frame as the socket takes it, so how far it got shows how much the sidecar
//! read.

// Test helpers outside #[test] functions panic on unexpected failures by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prost::Message;
use storeapi::proto::prometheus as prompb;
use storeapi::proto::thanos;
use storeapi::proto::thanos::label_matcher::Type as MatcherType;
use storeapi::testing::{matcher, series_request};
use test_harness::procfs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::Sidecar;

/// What the scripted Prometheus answers to remote read.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// `series` series `{__name__="big", i="<8 digits>", replica="a"}` in streamed frames, one
    /// series per frame, each with `chunks` chunks of `chunk_bytes` bytes.
    Streamed {
        series: u64,
        chunks: u64,
        chunk_bytes: usize,
        fault: Fault,
    },
    /// A `SAMPLES` answer (`application/x-protobuf`) of `bytes` bytes without a length header.
    Samples { bytes: u64 },
}

/// What goes wrong in a streamed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Frame `n` has a wrong checksum.
    Corrupt(u64),
    /// The answer ends in the middle of frame `n`.
    Truncate(u64),
}

/// A scripted Prometheus: readiness, configuration with `replica="a"` as external label,
/// `/metrics` and remote read.
struct FakePrometheus {
    addr: SocketAddr,
    /// Frames (or 1 MiB pieces of a samples answer) fully written to a remote read connection.
    written: Arc<AtomicU64>,
    /// Set when a remote read answer ended early because the reader went away.
    reader_left: Arc<AtomicBool>,
    /// Set when a remote read answer was written completely.
    completed: Arc<AtomicBool>,
}

impl FakePrometheus {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let written = Arc::new(AtomicU64::new(0));
        let reader_left = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicBool::new(false));
        let state = (
            Arc::clone(&written),
            Arc::clone(&reader_left),
            Arc::clone(&completed),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (written, reader_left, completed) = state.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, answer, &written, &reader_left, &completed).await;
                });
            }
        });
        Self {
            addr,
            written,
            reader_left,
            completed,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }
}

/// Reads one HTTP/1.1 request (headers and a `Content-Length` body); returns its path.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut request = Vec::new();
    let mut buffer = [0_u8; 4096];
    let header_end = loop {
        if let Some(end) = request.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(None);
        }
        request.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&request[..header_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap_or(0));
    while request.len() < header_end + length {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(None);
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    Ok(Some(path))
}

async fn respond(stream: &mut TcpStream, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await
}

async fn serve(
    mut stream: TcpStream,
    answer: Answer,
    written: &AtomicU64,
    reader_left: &AtomicBool,
    completed: &AtomicBool,
) -> std::io::Result<()> {
    while let Some(path) = read_request(&mut stream).await? {
        let path = path.split('?').next().unwrap_or_default().to_owned();
        match path.as_str() {
            "/api/v1/status/config" => {
                let body = r#"{"status":"success","data":{"yaml":"global:\n  external_labels:\n    replica: a\n"}}"#;
                respond(&mut stream, "application/json", body.as_bytes()).await?;
            }
            "/metrics" => {
                let body = "prometheus_tsdb_lowest_timestamp 0\n";
                respond(&mut stream, "text/plain", body.as_bytes()).await?;
            }
            "/api/v1/read" => {
                let result = write_answer(&mut stream, answer, written).await;
                match result {
                    Ok(()) => completed.store(true, Ordering::SeqCst),
                    Err(_) => reader_left.store(true, Ordering::SeqCst),
                }
                return result;
            }
            _ => respond(&mut stream, "text/plain", b"ready").await?,
        }
    }
    Ok(())
}

/// Writes the answer after a head without a length; the body ends when the connection closes.
async fn write_answer(
    stream: &mut TcpStream,
    answer: Answer,
    written: &AtomicU64,
) -> std::io::Result<()> {
    match answer {
        Answer::Streamed {
            series,
            chunks,
            chunk_bytes,
            fault,
        } => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse\r\nConnection: close\r\n\r\n";
            stream.write_all(head.as_bytes()).await?;
            let data: Vec<u8> = (0..chunk_bytes)
                .map(|byte| (byte * 31 % 251) as u8)
                .collect();
            for index in 0..series {
                let mut frame = frame(&big_series(index, chunks, &data).encode_to_vec());
                if fault == Fault::Corrupt(index) {
                    let last = frame.len() - 1;
                    frame[last] ^= 1;
                }
                if fault == Fault::Truncate(index) {
                    stream.write_all(&frame[..frame.len() / 2]).await?;
                    break;
                }
                stream.write_all(&frame).await?;
                written.fetch_add(1, Ordering::SeqCst);
            }
        }
        Answer::Samples { bytes } => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nConnection: close\r\n\r\n";
            stream.write_all(head.as_bytes()).await?;
            let piece = vec![0_u8; 1 << 20];
            let mut left = bytes;
            while left > 0 {
                let take = left.min(piece.len() as u64) as usize;
                stream.write_all(&piece[..take]).await?;
                left -= take as u64;
                written.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    stream.shutdown().await
}

/// Series `index` of a streamed answer as Prometheus sends it (with its external label).
fn big_series(index: u64, chunks: u64, data: &[u8]) -> prompb::ChunkedReadResponse {
    let label = |name: &str, value: &str| prompb::Label {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    prompb::ChunkedReadResponse {
        chunked_series: vec![prompb::ChunkedSeries {
            labels: vec![
                label("__name__", "big"),
                label("i", &format!("{index:08}")),
                label("replica", "a"),
            ],
            chunks: (0..chunks)
                .map(|chunk| {
                    let start = i64::try_from(chunk).unwrap() * 120_000;
                    prompb::Chunk {
                        min_time_ms: start,
                        max_time_ms: start + 119_000,
                        r#type: prompb::chunk::Encoding::Xor.into(),
                        data: data.to_vec(),
                    }
                })
                .collect(),
        }],
        query_index: 0,
    }
}

/// `uvarint length | CRC32C (big endian) | message`, as Prometheus frames its answer.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 14);
    let mut length = message.len() as u64;
    while length >= 0x80 {
        out.push((length as u8) | 0x80);
        length >>= 7;
    }
    out.push(length as u8);
    out.extend_from_slice(&crc32c::crc32c(message).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn big_request(batch_size: i64) -> thanos::SeriesRequest {
    let mut request = series_request(
        0,
        i64::MAX,
        vec![matcher(MatcherType::Eq, "__name__", "big")],
    );
    request.response_batch_size = batch_size;
    request
}

fn frame_series(frame: thanos::SeriesResponse) -> Vec<thanos::Series> {
    match frame.result {
        Some(thanos::series_response::Result::Series(series)) => vec![series],
        Some(thanos::series_response::Result::Batch(batch)) => batch.series,
        _ => Vec::new(),
    }
}

async fn start_sidecar(prometheus: &FakePrometheus, flags: &[&str]) -> Sidecar {
    let mut args = vec![format!("--prometheus.url={}", prometheus.url())];
    args.extend(flags.iter().map(|flag| (*flag).to_owned()));
    tokio::task::spawn_blocking(move || Sidecar::start(&args).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_answer_streams_to_a_slow_client_in_bounded_memory() {
    const SERIES: u64 = 6_400;
    const CHUNKS: u64 = 8;
    const CHUNK_BYTES: usize = 4_096;
    let answer_mib = SERIES * CHUNKS * CHUNK_BYTES as u64 / (1 << 20);
    let prometheus = FakePrometheus::start(Answer::Streamed {
        series: SERIES,
        chunks: CHUNKS,
        chunk_bytes: CHUNK_BYTES,
        fault: Fault::None,
    })
    .await;
    let sidecar = start_sidecar(&prometheus, &[]).await;
    let pid = sidecar.process.pid();
    let before = procfs::memory(pid);
    let (mut store, _) = sidecar.clients().await.unwrap();
    let mut stream = store.series(big_request(64)).await.unwrap().into_inner();

    // A slow client: a few frames, then a pause. Prometheus' writes must stop well before the
    // end of the answer (only socket buffers and a few frames are in flight).
    let mut received: Vec<String> = Vec::new();
    let mut chunk_count = 0_u64;
    for _ in 0..4 {
        let frame = stream.message().await.unwrap().expect("a frame");
        for series in frame_series(frame) {
            chunk_count += series.chunks.len() as u64;
            received.push(label_text(&series.labels));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let written_while_slow = prometheus.written();
    let while_slow = procfs::memory(pid);

    while let Some(frame) = stream.message().await.unwrap() {
        for series in frame_series(frame) {
            chunk_count += series.chunks.len() as u64;
            received.push(label_text(&series.labels));
        }
    }
    let after = procfs::memory(pid);
    eprintln!(
        "answer of {answer_mib} MiB: sidecar RSS {} before the call, {} after 4 slow frames, peak {}; \
         prometheus had written {written_while_slow} of {SERIES} series after 4 slow frames",
        procfs::mib(before.rss_kib),
        procfs::mib(while_slow.rss_kib),
        procfs::mib(after.peak_kib),
    );
    assert!(
        written_while_slow < SERIES / 4,
        "prometheus wrote {written_while_slow} of {SERIES} series while the client read 4 frames: \
         the sidecar does not apply back-pressure"
    );
    assert!(
        after.peak_kib < 96 * 1024,
        "sidecar peak RSS {} for an answer of {answer_mib} MiB",
        procfs::mib(after.peak_kib)
    );
    assert!(prometheus.completed.load(Ordering::SeqCst));
    assert_eq!(received.len() as u64, SERIES);
    assert_eq!(chunk_count, SERIES * CHUNKS);
    let expected: Vec<String> = (0..SERIES)
        .map(|index| format!("{{__name__=\"big\", i=\"{index:08}\", replica=\"a\"}}"))
        .collect();
    assert_eq!(received, expected);
}

fn label_text(labels: &[thanos::Label]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|label| format!("{}={:?}", label.name, label.value))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_call_stops_reading_prometheus() {
    let prometheus = FakePrometheus::start(Answer::Streamed {
        series: 10_000_000,
        chunks: 4,
        chunk_bytes: 1_024,
        fault: Fault::None,
    })
    .await;
    let sidecar = start_sidecar(&prometheus, &[]).await;
    let (mut store, _) = sidecar.clients().await.unwrap();
    let mut stream = store.series(big_request(16)).await.unwrap().into_inner();
    for _ in 0..3 {
        stream.message().await.unwrap().expect("a frame");
    }
    drop(stream);
    let left = test_harness::wait_until(
        "the sidecar to close the remote read",
        Duration::from_secs(20),
        || prometheus.reader_left.load(Ordering::SeqCst),
    );
    let written = prometheus.written();
    assert!(left.is_ok(), "prometheus still writing: {written} series");
    assert!(written < 1_000_000, "{written}");
}

async fn series_error(sidecar: &Sidecar, request: thanos::SeriesRequest) -> tonic::Status {
    let (mut store, _) = sidecar.clients().await.unwrap();
    let mut stream = match store.series(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status,
    };
    loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the call ended without an error"),
            Err(status) => return status,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_limits_end_the_stream_with_resource_exhausted() {
    let prometheus = FakePrometheus::start(Answer::Streamed {
        series: 50,
        chunks: 8,
        chunk_bytes: 64,
        fault: Fault::None,
    })
    .await;
    let sidecar = start_sidecar(&prometheus, &["--store.limits.request-series=5"]).await;
    let status = series_error(&sidecar, big_request(0)).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains("series limit") && status.message().contains("limit 5"),
        "{status}"
    );
    // The request's own limit is not an error: the first series, then the end.
    let (mut store, _) = sidecar.clients().await.unwrap();
    let mut request = big_request(2);
    request.limit = 3;
    let mut stream = store.series(request).await.unwrap().into_inner();
    let mut count = 0;
    while let Some(frame) = stream.message().await.unwrap() {
        count += frame_series(frame).len();
    }
    assert_eq!(count, 3);
    drop(sidecar);

    // 8 chunks count as 960 samples: the second series exceeds 1000.
    let sidecar = start_sidecar(&prometheus, &["--store.limits.request-samples=1000"]).await;
    let status = series_error(&sidecar, big_request(0)).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains("samples limit") && status.message().contains("limit 1000"),
        "{status}"
    );
    // Without chunks there are no samples to count.
    let (mut store, _) = sidecar.clients().await.unwrap();
    let mut request = big_request(0);
    request.skip_chunks = true;
    let mut stream = store.series(request).await.unwrap().into_inner();
    let mut count = 0;
    while let Some(frame) = stream.message().await.unwrap() {
        count += frame_series(frame).len();
    }
    assert_eq!(count, 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_answer_ends_the_stream_with_an_error_naming_it() {
    for (fault, message) in [
        (Fault::Corrupt(30), "checksum mismatch"),
        (Fault::Truncate(30), "ended inside a frame"),
    ] {
        let prometheus = FakePrometheus::start(Answer::Streamed {
            series: 50,
            chunks: 2,
            chunk_bytes: 64,
            fault,
        })
        .await;
        let sidecar = start_sidecar(&prometheus, &[]).await;
        let (mut store, _) = sidecar.clients().await.unwrap();
        let mut stream = store.series(big_request(1)).await.unwrap().into_inner();
        let mut received = 0;
        let status = loop {
            match stream.message().await {
                Ok(Some(frame)) => received += frame_series(frame).len(),
                Ok(None) => panic!("{fault:?}: the call ended without an error"),
                Err(status) => break status,
            }
        };
        assert!(
            received < 30,
            "{fault:?}: {received} series before the error"
        );
        assert_eq!(status.code(), tonic::Code::Internal, "{status}");
        assert!(
            status.message().contains(message) && status.message().contains("prometheus"),
            "{fault:?}: {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_samples_answer_over_the_limit_is_refused() {
    let prometheus = FakePrometheus::start(Answer::Samples { bytes: 64 << 20 }).await;
    let sidecar = start_sidecar(
        &prometheus,
        &["--prometheus.samples-answer-limit-bytes=8388608"],
    )
    .await;
    let status = series_error(&sidecar, big_request(0)).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains("SAMPLES") && status.message().contains("8388608"),
        "{status}"
    );
    let memory = procfs::memory(sidecar.process.pid());
    assert!(
        memory.peak_kib < 64 * 1024,
        "sidecar peak RSS {}",
        procfs::mib(memory.peak_kib)
    );
}
