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
mod tests {
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
        let seed = include_bytes!("../fuzz/seeds/remote_read/streamed-prefix-and-split");
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
        let truncated = include_bytes!("../fuzz/seeds/remote_read/streamed-truncated");
        assert!(decode_pieces(&[&truncated[1..]]).is_err());
        let samples = include_bytes!("../fuzz/seeds/remote_read/samples");
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
        let samples =
            storeapi::chunk::decode_float_samples(chunks[1].raw.as_ref().unwrap()).unwrap();
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
}
