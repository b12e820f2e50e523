//! Prometheus remote read: the request, the two answer types, their incremental decoding and
//! the order in which their series can be passed on as Thanos series.
//!
//! **Streamed answers.** `STREAMED_XOR_CHUNKS` answers are a stream of frames, each
//! `uvarint length | CRC32C of the message (4 bytes, big endian) | ChunkedReadResponse`. The
//! [`FrameDecoder`] takes the HTTP body piece by piece as it arrives and yields each complete,
//! checked frame, so the sidecar holds a partial frame and the series not yet sent, never the
//! answer. The chunks are Prometheus chunk bodies, passed on unchanged (only the encoding number
//! is translated). One series may span several consecutive frames (Prometheus cuts a frame at
//! `--storage.remote.read-max-bytes-in-frame`); they are joined.
//!
//! **Order.** The StoreAPI needs series sorted by their labels, external labels included.
//! Prometheus sorts by the labels of its TSDB and only then adds its external labels, and the
//! sidecar replaces or adds its own (the same, read from Prometheus' configuration). Write `c` for
//! a series' labels without those named like an external label (its *core*) and `L(c)` for `c`
//! merged with the external labels `E` (names disjoint from `c`'s). [`SeriesOrder`] relies on
//! one invariant, checked for every series: **the cores arrive in non-decreasing order**. Then:
//!
//! - if `c1 < c2` and `c1` is not a prefix of `c2`, `L(c1) < L(c2)` (they first differ at a
//!   core label, and every external label before it is the same in both);
//! - if `c1` is a proper prefix of `c2`, `L(c2)` sorts *before* `L(c1)` exactly when an
//!   external label name sorts after `c2`'s first label beyond `c1` (`{__name__="m"}` and
//!   `{__name__="m", job="x"}` with the external label `replica`);
//! - so every later series `t` (core `c_t >= c`) has `L(c_t) >= Q(c)`, where `Q(c)` is `L(c)`
//!   cut after `c`'s last label name: `Q(c)` is a prefix of `L(c_t)` when `c` is a prefix of
//!   `c_t`, and smaller at their first difference otherwise.
//!
//! A series is therefore held back only until a later core `c` has `Q(c)` above its labels: in
//! the usual case until the next series arrives, and in the prefix case for as long as series
//! extending it follow. What is held is the current series and the chain of its cores'
//! prefixes that arrived as series (at most one per label of the longest core), not the answer.
//! The argument decides only how long a series waits: what is passed on is checked against the
//! last series sent, so a wrong premise can fail a call, never misorder it.
//!
//! A core smaller than the one before breaks the invariant; that happens only when Prometheus'
//! series carry labels named like external labels (or the external labels changed during the
//! call). From then on every remaining series is held and sorted at the end, as a whole answer
//! would be; a series that sorts before one already sent makes the call fail rather than answer
//! out of order.
//!
//! **Samples answers.** `SAMPLES` answers (Prometheus before 2.13, or one that refuses to stream)
//! are one snappy-compressed `ReadResponse`, in no particular order: read whole, up to a size
//! limit, then sorted; their samples are encoded into XOR chunks here.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use prom_model::{Label, Labels, MatchType, Matcher, Sample};
use prost::Message;
use storeapi::chunk::{prometheus_to_thanos_encoding, raw_chunks};
use storeapi::convert::{compare_labels, sort_labels};
use storeapi::merge::sort_chunks;
use storeapi::proto::prometheus::{
    self as prompb, ChunkedReadResponse, ReadRequest, ReadResponse, read_request::ResponseType,
};
use storeapi::proto::thanos;
use tracing::warn;

use crate::error::{Error, Result};

/// How many samples go into one chunk re-encoded from a `SAMPLES` answer (as Prometheus cuts).
const SAMPLES_PER_CHUNK: usize = 120;
/// The largest frame accepted from Prometheus (Prometheus cuts frames at 1 MiB by default).
pub const MAX_FRAME_BYTES: u64 = 256 << 20;
/// The default bound on a `SAMPLES` answer, compressed and decompressed.
pub const DEFAULT_SAMPLES_ANSWER_LIMIT: u64 = 256 << 20;

/// One series of a remote read answer with Prometheus' labels (without the sidecar's external
/// labels) and Thanos wire chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSeries {
    /// Labels as Prometheus returned them.
    pub labels: Vec<thanos::Label>,
    /// Chunks, oldest first.
    pub chunks: Vec<thanos::AggrChunk>,
}

/// A remote read request for one query, asking for streamed chunks first and samples second.
pub fn read_request(matchers: &[Matcher], min_time: i64, max_time: i64) -> ReadRequest {
    ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: min_time,
            end_timestamp_ms: max_time,
            matchers: matchers.iter().map(matcher_to_prompb).collect(),
            hints: Some(prompb::ReadHints {
                start_ms: min_time,
                end_ms: max_time,
                ..Default::default()
            }),
        }],
        accepted_response_types: vec![
            ResponseType::StreamedXorChunks.into(),
            ResponseType::Samples.into(),
        ],
    }
}

fn matcher_to_prompb(matcher: &Matcher) -> prompb::LabelMatcher {
    let kind = match matcher.kind() {
        MatchType::Equal => prompb::label_matcher::Type::Eq,
        MatchType::NotEqual => prompb::label_matcher::Type::Neq,
        MatchType::Regex => prompb::label_matcher::Type::Re,
        MatchType::NotRegex => prompb::label_matcher::Type::Nre,
    };
    prompb::LabelMatcher {
        r#type: kind.into(),
        name: matcher.name().to_owned(),
        value: matcher.value().to_owned(),
    }
}

/// Prometheus' answer to a remote read request, its status and type checked.
#[derive(Debug)]
pub(crate) enum ReadAnswer {
    /// A `STREAMED_XOR_CHUNKS` answer, still to be read.
    Streamed(StreamedAnswer),
    /// A `SAMPLES` answer, read and decoded (in Prometheus' order, which is none).
    Samples {
        /// The URL asked.
        url: String,
        /// The answer's series.
        series: Vec<ReadSeries>,
    },
}

/// How an answer's body is read: each wait for more bytes from Prometheus is bounded by
/// `idle_timeout`, and a `SAMPLES` answer by `samples_limit` bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    pub(crate) idle_timeout: Duration,
    pub(crate) samples_limit: u64,
}

/// Checks Prometheus' answer and, for a `SAMPLES` answer, reads and decodes it.
pub(crate) async fn read_response(
    url: String,
    response: reqwest::Response,
    limits: BodyLimits,
) -> Result<ReadAnswer> {
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !status.is_success() {
        let mut body = Vec::new();
        let mut answer = StreamedAnswer::new(url.clone(), response, limits.idle_timeout);
        while body.len() < 512 {
            match answer.next_piece().await {
                Ok(Some(piece)) => body.extend_from_slice(&piece),
                Ok(None) | Err(_) => break,
            }
        }
        return Err(Error::PrometheusStatus {
            url,
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).chars().take(512).collect(),
        });
    }
    if content_type.starts_with("application/x-streamed-protobuf") {
        return Ok(ReadAnswer::Streamed(StreamedAnswer::new(
            url,
            response,
            limits.idle_timeout,
        )));
    }
    let too_large = |size: String| Error::AnswerTooLarge {
        url: url.clone(),
        detail: format!(
            "SAMPLES remote read answer of {size} bytes exceeds the limit of {} bytes (a Prometheus of 2.13 or later streams chunks instead)",
            limits.samples_limit
        ),
    };
    if let Some(length) = response.content_length()
        && length > limits.samples_limit
    {
        return Err(too_large(length.to_string()));
    }
    let mut answer = StreamedAnswer::new(url.clone(), response, limits.idle_timeout);
    let mut body = Vec::new();
    while let Some(piece) = answer.next_piece().await? {
        if (body.len() + piece.len()) as u64 > limits.samples_limit {
            return Err(too_large(format!("more than {}", limits.samples_limit)));
        }
        body.extend_from_slice(&piece);
    }
    let limit = usize::try_from(limits.samples_limit).unwrap_or(usize::MAX);
    match decode_samples_response(&body, limit) {
        Ok(series) => Ok(ReadAnswer::Samples { url, series }),
        Err(SamplesError::TooLarge(size)) => Err(too_large(format!("{size} (decompressed)"))),
        Err(SamplesError::Invalid(detail)) => Err(Error::PrometheusDecode { url, detail }),
    }
}

/// A streamed answer being read: the HTTP body and the frames decoded from it so far.
#[derive(Debug)]
pub(crate) struct StreamedAnswer {
    url: String,
    response: reqwest::Response,
    decoder: FrameDecoder,
    idle_timeout: Duration,
}

impl StreamedAnswer {
    fn new(url: String, response: reqwest::Response, idle_timeout: Duration) -> Self {
        Self {
            url,
            response,
            decoder: FrameDecoder::default(),
            idle_timeout,
        }
    }

    /// The URL asked.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The next piece of the body as the HTTP client received it; `None` at its end.
    async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        let piece = tokio::time::timeout(self.idle_timeout, self.response.chunk())
            .await
            .map_err(|_| Error::PrometheusTimeout {
                url: self.url.clone(),
                waited: self.idle_timeout,
            })?;
        piece.map_err(|source| Error::PrometheusRequest {
            url: self.url.clone(),
            source,
        })
    }

    /// The series of the next frame (possibly none); `None` once the answer ended cleanly.
    pub(crate) async fn next_frame(&mut self) -> Result<Option<Vec<ReadSeries>>> {
        loop {
            let frame = self
                .decoder
                .next_frame()
                .map_err(|detail| self.decode_error(detail))?;
            if let Some(frame) = frame {
                return decode_chunked_frame(frame)
                    .map(Some)
                    .map_err(|detail| self.decode_error(detail));
            }
            match self.next_piece().await? {
                Some(piece) => self.decoder.push(&piece),
                None => {
                    self.decoder
                        .finish()
                        .map_err(|detail| self.decode_error(detail))?;
                    return Ok(None);
                }
            }
        }
    }

    fn decode_error(&self, detail: String) -> Error {
        Error::PrometheusDecode {
            url: self.url.clone(),
            detail,
        }
    }
}

/// Splits a streamed answer, fed in pieces of any size, into CRC-checked frames.
///
/// It holds at most one incomplete frame besides the last piece pushed.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: BytesMut,
}

impl FrameDecoder {
    /// Appends the next bytes of the answer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete frame's message, `None` when more bytes are needed; an error for a
    /// malformed length, a frame over [`MAX_FRAME_BYTES`] or a checksum mismatch.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, String> {
        let Some((length, header)) = read_uvarint(&self.buffer)? else {
            return Ok(None);
        };
        if length > MAX_FRAME_BYTES {
            return Err(format!(
                "frame of {length} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes"
            ));
        }
        let length = usize::try_from(length).map_err(|_| "frame length overflows".to_owned())?;
        let total = header + 4 + length;
        if self.buffer.len() < total {
            return Ok(None);
        }
        let mut frame = self.buffer.split_to(total);
        frame.advance(header);
        let expected = frame.get_u32();
        let message = frame.freeze();
        let actual = crc32c::crc32c(&message);
        if actual != expected {
            return Err(format!(
                "frame checksum mismatch: expected {expected:#010x}, computed {actual:#010x}"
            ));
        }
        Ok(Some(message))
    }

    /// Checks that the answer ended between frames.
    pub fn finish(&self) -> Result<(), String> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "stream ended inside a frame ({} bytes left)",
                self.buffer.len()
            ))
        }
    }
}

/// A uvarint at the start of `bytes` and its length; `None` when incomplete.
fn read_uvarint(bytes: &[u8]) -> Result<Option<(u64, usize)>, String> {
    let mut value: u64 = 0;
    for (index, byte) in bytes.iter().enumerate() {
        if index >= 10 || (index == 9 && *byte > 1) {
            return Err("frame length varint overflows".to_owned());
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((value, index + 1)));
        }
    }
    Ok(None)
}

/// Decodes one frame's `ChunkedReadResponse` into series.
pub fn decode_chunked_frame(message: Bytes) -> Result<Vec<ReadSeries>, String> {
    let message = ChunkedReadResponse::decode(message)
        .map_err(|error| format!("chunked read response: {error}"))?;
    Ok(message
        .chunked_series
        .into_iter()
        .map(convert_chunked_series)
        .collect())
}

fn convert_labels(labels: Vec<prompb::Label>) -> Vec<thanos::Label> {
    labels
        .into_iter()
        .map(|label| thanos::Label {
            name: label.name,
            value: label.value,
        })
        .collect()
}

fn convert_chunked_series(series: prompb::ChunkedSeries) -> ReadSeries {
    let chunks = series
        .chunks
        .into_iter()
        .filter_map(|chunk| {
            let encoding = u8::try_from(chunk.r#type)
                .ok()
                .and_then(prometheus_to_thanos_encoding);
            let Some(encoding) = encoding else {
                warn!(
                    encoding = chunk.r#type,
                    "dropping a chunk whose encoding the StoreAPI cannot carry"
                );
                return None;
            };
            Some(thanos::AggrChunk {
                min_time: chunk.min_time_ms,
                max_time: chunk.max_time_ms,
                raw: Some(thanos::Chunk {
                    r#type: encoding.into(),
                    data: chunk.data.into(),
                    hash: 0,
                }),
                ..Default::default()
            })
        })
        .collect();
    ReadSeries {
        labels: convert_labels(series.labels),
        chunks,
    }
}

/// Why a `SAMPLES` answer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamplesError {
    /// The decompressed answer would have this many bytes, over the limit.
    TooLarge(usize),
    /// The answer is not snappy or not a `ReadResponse`.
    Invalid(String),
}

/// Decodes a snappy-compressed `SAMPLES` answer whose decompressed size is at most `limit`
/// bytes, and encodes its samples into XOR chunks.
pub fn decode_samples_response(body: &[u8], limit: usize) -> Result<Vec<ReadSeries>, SamplesError> {
    let size = snap::raw::decompress_len(body)
        .map_err(|error| SamplesError::Invalid(format!("snappy: {error}")))?;
    if size > limit {
        return Err(SamplesError::TooLarge(size));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|error| SamplesError::Invalid(format!("snappy: {error}")))?;
    let response = ReadResponse::decode(raw.as_slice())
        .map_err(|error| SamplesError::Invalid(format!("read response: {error}")))?;
    let mut out = Vec::new();
    for result in response.results {
        for series in result.timeseries {
            let mut samples: Vec<Sample> = series
                .samples
                .iter()
                .map(|sample| Sample::new(sample.timestamp, sample.value))
                .collect();
            samples.sort_by_key(|sample| sample.t);
            out.push(ReadSeries {
                labels: convert_labels(series.labels),
                chunks: raw_chunks(&samples, SAMPLES_PER_CHUNK),
            });
        }
    }
    Ok(out)
}

/// Adds `external` to `labels` (an external label replaces a series label of the same name) and
/// returns them sorted.
pub fn with_external_labels(labels: Vec<thanos::Label>, external: &Labels) -> Vec<thanos::Label> {
    let mut merged: Vec<thanos::Label> = labels
        .into_iter()
        .filter(|label| external.get(&label.name).is_none())
        .collect();
    merged.extend(external.iter().map(|Label { name, value }| thanos::Label {
        name: name.clone(),
        value: value.clone(),
    }));
    sort_labels(&mut merged);
    merged
}

/// Labels ordered as the StoreAPI orders series.
#[derive(Debug, Clone, PartialEq)]
struct SortKey(Vec<thanos::Label>);

impl Eq for SortKey {}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_labels(&self.0, &other.0)
    }
}

/// Turns the series of a remote read answer, in the order Prometheus sends them, into Thanos
/// series (external labels added, split series joined, chunks sorted) in label order, passing
/// each on as soon as no later series can sort before it; see the [module docs](self).
#[derive(Debug)]
pub struct SeriesOrder {
    external: Labels,
    /// Series not passed on yet, by their final labels, with their chunks so far.
    pending: BTreeMap<SortKey, Vec<thanos::AggrChunk>>,
    /// The core of the last series taken.
    previous_core: Option<Vec<thanos::Label>>,
    /// The labels of the last series passed on.
    last_sent: Option<Vec<thanos::Label>>,
    /// Whether the cores' order could not be relied on: everything is held to the end.
    hold_all: bool,
}

impl SeriesOrder {
    /// For a streamed answer, whose series Prometheus sorts.
    pub fn streamed(external: Labels) -> Self {
        Self {
            external,
            pending: BTreeMap::new(),
            previous_core: None,
            last_sent: None,
            hold_all: false,
        }
    }

    /// For an answer in no particular order: every series is held and sorted at the end.
    pub fn unordered(external: Labels) -> Self {
        Self {
            hold_all: true,
            ..Self::streamed(external)
        }
    }

    /// Series held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Takes the next series of the answer and appends to `ready` every series that no later
    /// one can precede. Fails when `series` sorts before a series already passed on.
    pub fn push(
        &mut self,
        series: ReadSeries,
        ready: &mut Vec<thanos::Series>,
    ) -> Result<(), String> {
        let mut core: Vec<thanos::Label> = series
            .labels
            .iter()
            .filter(|label| self.external.get(&label.name).is_none())
            .cloned()
            .collect();
        sort_labels(&mut core);
        let labels = with_external_labels(series.labels, &self.external);
        if let Some(last) = &self.last_sent
            && compare_labels(&labels, last).is_le()
        {
            return Err(format!(
                "prometheus answered series out of order: {} after {} (do its series carry labels named like its external labels?)",
                label_text(&labels),
                label_text(last)
            ));
        }
        if !self.hold_all
            && let Some(previous) = &self.previous_core
            && compare_labels(&core, previous).is_lt()
        {
            warn!(
                series = %label_text(&labels),
                "prometheus' series are not in the order of their labels without external labels; holding the rest of the answer to sort it"
            );
            self.hold_all = true;
        }
        if !self.hold_all {
            let bound = self.lower_bound(&core);
            while let Some(entry) = self.pending.first_entry() {
                if compare_labels(&entry.key().0, &bound).is_ge() {
                    break;
                }
                let (key, chunks) = entry.remove_entry();
                self.pass_on(key.0, chunks, ready);
            }
        }
        self.pending
            .entry(SortKey(labels))
            .or_default()
            .extend(series.chunks);
        self.previous_core = Some(core);
        Ok(())
    }

    /// Appends every series still held, in order: the answer ended.
    pub fn finish(&mut self, ready: &mut Vec<thanos::Series>) {
        while let Some((key, chunks)) = self.pending.pop_first() {
            self.pass_on(key.0, chunks, ready);
        }
    }

    /// `Q(core)`: the labels of `core` with the external labels, cut after `core`'s last name.
    fn lower_bound(&self, core: &[thanos::Label]) -> Vec<thanos::Label> {
        let Some(last) = core.last() else {
            return Vec::new();
        };
        let mut bound = core.to_vec();
        bound.extend(
            self.external
                .iter()
                .filter(|label| label.name < last.name)
                .map(|label| thanos::Label {
                    name: label.name.clone(),
                    value: label.value.clone(),
                }),
        );
        sort_labels(&mut bound);
        bound
    }

    fn pass_on(
        &mut self,
        labels: Vec<thanos::Label>,
        mut chunks: Vec<thanos::AggrChunk>,
        ready: &mut Vec<thanos::Series>,
    ) {
        sort_chunks(&mut chunks);
        self.last_sent = Some(labels.clone());
        ready.push(thanos::Series { labels, chunks });
    }
}

fn label_text(labels: &[thanos::Label]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|label| format!("{}={:?}", label.name, label.value))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests;
