//! Prometheus remote read: the request, the two answer types, and their conversion to Thanos
//! series.
//!
//! `STREAMED_XOR_CHUNKS` answers are a stream of frames, each `uvarint length | CRC32C of the
//! message (4 bytes, big endian) | ChunkedReadResponse`; the chunks are Prometheus chunk bodies
//! and are passed on unchanged (only the encoding number is translated). `SAMPLES` answers (old
//! Prometheus) are one snappy-compressed `ReadResponse`; their samples are encoded into XOR chunks
//! here.

use prom_model::{Label, Labels, MatchType, Matcher, Sample};
use prost::Message;
use storeapi::chunk::{prometheus_to_thanos_encoding, raw_chunks};
use storeapi::proto::prometheus::{
    self as prompb, ChunkedReadResponse, ReadRequest, ReadResponse, read_request::ResponseType,
};
use storeapi::proto::thanos;

use tracing::warn;

use crate::error::{Error, Result};

/// How many samples go into one chunk re-encoded from a `SAMPLES` answer (as Prometheus cuts).
const SAMPLES_PER_CHUNK: usize = 120;
/// The largest frame accepted from Prometheus (Prometheus' own limit is 50 MB per frame).
const MAX_FRAME_BYTES: u64 = 256 << 20;

/// One series of a remote read answer with Prometheus' labels (without the sidecar's external
/// labels) and Thanos wire chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSeries {
    /// Labels as Prometheus returned them.
    pub labels: Vec<thanos::Label>,
    /// Chunks, oldest first.
    pub chunks: Vec<thanos::AggrChunk>,
}

/// A decoded remote read answer.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// Series in the order Prometheus sent them (one series may span several entries).
    pub series: Vec<ReadSeries>,
    /// Whether Prometheus answered in the streamed chunk format.
    pub streamed: bool,
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

/// Reads and decodes Prometheus' answer to a remote read request.
pub(crate) async fn read_response(url: String, response: reqwest::Response) -> Result<ReadOutcome> {
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(Error::PrometheusStatus {
            url,
            status: status.as_u16(),
            body: body.chars().take(512).collect(),
        });
    }
    if content_type.starts_with("application/x-streamed-protobuf") {
        read_streamed(url, response).await
    } else {
        let body = response
            .bytes()
            .await
            .map_err(|source| Error::PrometheusRequest {
                url: url.clone(),
                source,
            })?;
        decode_samples_response(&body).map_err(|detail| Error::PrometheusDecode { url, detail })
    }
}

async fn read_streamed(url: String, mut response: reqwest::Response) -> Result<ReadOutcome> {
    let mut decoder = FrameDecoder::default();
    let mut outcome = ReadOutcome {
        series: Vec::new(),
        streamed: true,
    };
    loop {
        let piece = response
            .chunk()
            .await
            .map_err(|source| Error::PrometheusRequest {
                url: url.clone(),
                source,
            })?;
        let Some(piece) = piece else { break };
        decoder.buffer.extend_from_slice(&piece);
        while let Some(frame) = decoder
            .next_frame()
            .map_err(|detail| Error::PrometheusDecode {
                url: url.clone(),
                detail,
            })?
        {
            let message = ChunkedReadResponse::decode(frame.as_slice()).map_err(|error| {
                Error::PrometheusDecode {
                    url: url.clone(),
                    detail: format!("chunked read response: {error}"),
                }
            })?;
            for series in message.chunked_series {
                outcome.series.push(convert_chunked_series(series));
            }
        }
    }
    if !decoder.buffer.is_empty() {
        return Err(Error::PrometheusDecode {
            url,
            detail: format!(
                "stream ended inside a frame ({} bytes left)",
                decoder.buffer.len()
            ),
        });
    }
    Ok(outcome)
}

/// Splits the streamed answer into CRC-checked frames.
#[derive(Debug, Default)]
pub(crate) struct FrameDecoder {
    pub(crate) buffer: Vec<u8>,
}

impl FrameDecoder {
    /// The next complete frame's message bytes, `None` when more bytes are needed.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Vec<u8>>, String> {
        let Some((length, header)) = read_uvarint(&self.buffer)? else {
            return Ok(None);
        };
        if length > MAX_FRAME_BYTES {
            return Err(format!("frame of {length} bytes exceeds the limit"));
        }
        let length = length as usize;
        let total = header + 4 + length;
        if self.buffer.len() < total {
            return Ok(None);
        }
        let mut crc_bytes = [0_u8; 4];
        crc_bytes.copy_from_slice(&self.buffer[header..header + 4]);
        let expected = u32::from_be_bytes(crc_bytes);
        let message = self.buffer[header + 4..total].to_vec();
        let actual = crc32c::crc32c(&message);
        if actual != expected {
            return Err(format!(
                "frame checksum mismatch: expected {expected:#010x}, computed {actual:#010x}"
            ));
        }
        self.buffer.drain(..total);
        Ok(Some(message))
    }
}

/// A uvarint at the start of `bytes` and its length; `None` when incomplete.
fn read_uvarint(bytes: &[u8]) -> Result<Option<(u64, usize)>, String> {
    let mut value: u64 = 0;
    for (index, byte) in bytes.iter().enumerate() {
        if index >= 10 {
            return Err("frame length varint overflows".to_owned());
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((value, index + 1)));
        }
    }
    Ok(None)
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

/// Decodes a snappy-compressed `SAMPLES` answer and encodes its samples into XOR chunks.
pub(crate) fn decode_samples_response(body: &[u8]) -> Result<ReadOutcome, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|error| format!("snappy: {error}"))?;
    let response = ReadResponse::decode(raw.as_slice()).map_err(|error| error.to_string())?;
    let mut outcome = ReadOutcome::default();
    for result in response.results {
        for series in result.timeseries {
            let mut samples: Vec<Sample> = series
                .samples
                .iter()
                .map(|sample| Sample::new(sample.timestamp, sample.value))
                .collect();
            samples.sort_by_key(|sample| sample.t);
            outcome.series.push(ReadSeries {
                labels: convert_labels(series.labels),
                chunks: raw_chunks(&samples, SAMPLES_PER_CHUNK),
            });
        }
    }
    Ok(outcome)
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
    storeapi::convert::sort_labels(&mut merged);
    merged
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

    #[test]
    fn frames_are_split_and_checked() {
        let first = vec![7_u8; 300];
        let second = b"abc".to_vec();
        let mut bytes = frame(&first);
        bytes.extend(frame(&second));
        let mut decoder = FrameDecoder::default();
        decoder.buffer.extend_from_slice(&bytes[..100]);
        assert_eq!(decoder.next_frame().unwrap(), None);
        decoder.buffer.extend_from_slice(&bytes[100..]);
        assert_eq!(decoder.next_frame().unwrap(), Some(first));
        assert_eq!(decoder.next_frame().unwrap(), Some(second));
        assert_eq!(decoder.next_frame().unwrap(), None);
        assert!(decoder.buffer.is_empty());

        let mut corrupt = frame(b"hello");
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let mut decoder = FrameDecoder { buffer: corrupt };
        assert!(decoder.next_frame().unwrap_err().contains("checksum"));
    }

    #[test]
    fn samples_answers_become_xor_chunks() {
        let response = ReadResponse {
            results: vec![prompb::QueryResult {
                timeseries: vec![prompb::TimeSeries {
                    labels: vec![prompb::Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    }],
                    samples: (0..200)
                        .map(|i| prompb::Sample {
                            value: f64::from(i),
                            timestamp: i64::from(i) * 1000,
                        })
                        .collect(),
                    ..Default::default()
                }],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&response.encode_to_vec())
            .unwrap();
        let outcome = decode_samples_response(&body).unwrap();
        assert_eq!(outcome.series.len(), 1);
        let chunks = &outcome.series[0].chunks;
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[0].min_time, chunks[0].max_time), (0, 119_000));
        let samples =
            storeapi::chunk::decode_float_samples(chunks[1].raw.as_ref().unwrap()).unwrap();
        assert_eq!(samples.len(), 80);
        assert_eq!(samples[0], Sample::new(120_000, 120.0));
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
        let text: Vec<String> = merged
            .iter()
            .map(|label| format!("{}={}", label.name, label.value))
            .collect();
        assert_eq!(text, ["__name__=x", "region=eu", "replica=a"]);
    }
}
