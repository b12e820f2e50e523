//! `snappy` gRPC compression (Thanos' `pkg/extgrpc/snappy`: the framed/stream snappy format).
//!
//! tonic 0.14 cannot register custom compression codecs (`CompressionEncoding` is a closed enum
//! of gzip, deflate and zstd), so this is done one level down: a tower layer in front of the gRPC
//! server decompresses request messages sent with `grpc-encoding: snappy` and hands tonic plain
//! messages. Responses go back uncompressed (`identity`), which every gRPC client accepts.

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tonic::body::Body;

use crate::error::BoxError;
use crate::grpc::MAX_MESSAGE_SIZE;

/// gRPC message prefix: 1 byte compressed flag, 4 bytes big-endian length.
const PREFIX_LEN: usize = 5;

/// Compresses one gRPC message payload in the snappy framed format (for clients and tests).
pub fn snappy_compress(message: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut encoder = snap::write::FrameEncoder::new(Vec::new());
    std::io::Write::write_all(&mut encoder, message)?;
    encoder
        .into_inner()
        .map_err(|error| std::io::Error::other(error.to_string()))
}

/// Decompresses one snappy-framed gRPC message payload, refusing more than
/// [`MAX_MESSAGE_SIZE`] bytes of output.
pub fn snappy_decompress(compressed: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut output = Vec::new();
    snap::read::FrameDecoder::new(compressed)
        .take(MAX_MESSAGE_SIZE as u64 + 1)
        .read_to_end(&mut output)?;
    if output.len() > MAX_MESSAGE_SIZE {
        return Err(std::io::Error::other(
            "decompressed message larger than the size limit",
        ));
    }
    Ok(output)
}

/// The tower layer; [`crate::GrpcServer`] installs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnappyDecompressionLayer;

impl<S> tower::Layer<S> for SnappyDecompressionLayer {
    type Service = SnappyDecompression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SnappyDecompression { inner }
    }
}

/// The service [`SnappyDecompressionLayer`] produces.
#[derive(Debug, Clone)]
pub struct SnappyDecompression<S> {
    inner: S,
}

impl<S> tower::Service<Request<Body>> for SnappyDecompression<S>
where
    S: tower::Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let is_snappy =
            request.headers().get("grpc-encoding") == Some(&HeaderValue::from_static("snappy"));
        if !is_snappy {
            return self.inner.call(request);
        }
        let (mut parts, body) = request.into_parts();
        parts.headers.remove("grpc-encoding");
        self.inner
            .call(Request::from_parts(parts, Body::new(decompress_body(body))))
    }
}

type FrameResult = Result<Frame<Bytes>, BoxError>;

/// Re-frames `body`, decompressing every message whose compressed flag is set.
fn decompress_body(
    body: Body,
) -> StreamBody<Pin<Box<dyn futures_util::Stream<Item = FrameResult> + Send>>> {
    struct State {
        body: Body,
        buffer: BytesMut,
        finished: bool,
    }
    let state = State {
        body,
        buffer: BytesMut::new(),
        finished: false,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            match next_message(&mut state.buffer) {
                Ok(Some(message)) => return Some((Ok(Frame::data(message)), state)),
                Ok(None) => {}
                Err(error) => {
                    state.finished = true;
                    state.buffer.clear();
                    return Some((Err(error), state));
                }
            }
            if state.finished {
                if state.buffer.is_empty() {
                    return None;
                }
                state.buffer.clear();
                return Some((Err("truncated gRPC message".into()), state));
            }
            match state.body.frame().await {
                None => state.finished = true,
                Some(Err(error)) => {
                    state.finished = true;
                    return Some((Err(error.into()), state));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => state.buffer.put(data),
                    Err(frame) => return Some((Ok(frame), state)),
                },
            }
        }
    });
    let boxed: Pin<Box<dyn futures_util::Stream<Item = FrameResult> + Send>> = Box::pin(stream);
    StreamBody::new(boxed)
}

/// Takes one complete message off `buffer`, returning it re-framed uncompressed.
fn next_message(buffer: &mut BytesMut) -> Result<Option<Bytes>, BoxError> {
    if buffer.len() < PREFIX_LEN {
        return Ok(None);
    }
    let compressed = buffer[0];
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < PREFIX_LEN + length {
        return Ok(None);
    }
    buffer.advance(PREFIX_LEN);
    let payload = buffer.split_to(length);
    let message = match compressed {
        0 => payload.to_vec(),
        1 => snappy_decompress(&payload)?,
        other => return Err(format!("invalid gRPC compressed flag {other}").into()),
    };
    let message_len = u32::try_from(message.len())?;
    let mut framed = BytesMut::with_capacity(PREFIX_LEN + message.len());
    framed.put_u8(0);
    framed.put_u32(message_len);
    framed.put_slice(&message);
    Ok(Some(framed.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut framed = vec![flag];
        framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        framed.extend_from_slice(payload);
        framed
    }

    fn collect(chunks: Vec<Vec<u8>>) -> Result<Vec<u8>, String> {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|chunk| Ok::<_, std::io::Error>(Frame::data(Bytes::from(chunk)))),
        );
        let body = Body::new(StreamBody::new(stream));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut output = Vec::new();
            let mut decoded = decompress_body(body);
            while let Some(frame) = decoded.frame().await {
                let frame = frame.map_err(|error| error.to_string())?;
                output.extend_from_slice(&frame.into_data().unwrap());
            }
            Ok(output)
        })
    }

    #[test]
    fn decompresses_split_messages() {
        let first = b"first message".repeat(100);
        let second = b"second".to_vec();
        let mut wire = frame(1, &snappy_compress(&first).unwrap());
        wire.extend(frame(0, &second));
        // Deliver the bytes in awkward pieces.
        let chunks: Vec<Vec<u8>> = wire.chunks(7).map(<[u8]>::to_vec).collect();
        let mut expected = frame(0, &first);
        expected.extend(frame(0, &second));
        assert_eq!(collect(chunks).unwrap(), expected);
    }

    #[test]
    fn refuses_corrupt_and_truncated_input() {
        let corrupt = frame(1, b"definitely not snappy");
        assert!(collect(vec![corrupt]).is_err());
        let mut truncated = frame(0, b"abcdef");
        truncated.truncate(8);
        assert_eq!(
            collect(vec![truncated]).unwrap_err(),
            "truncated gRPC message"
        );
    }

    #[test]
    fn framed_format_round_trips() {
        let message = b"series frame".repeat(1000);
        let compressed = snappy_compress(&message).unwrap();
        // Stream identifier chunk of the framing format.
        assert_eq!(&compressed[..10], b"\xff\x06\x00\x00sNaPpY");
        assert_eq!(snappy_decompress(&compressed).unwrap(), message);
    }
}
