//! Client and server set-up shared by every StoreAPI user: message sizes, compression.
//!
//! Thanos servers and clients allow messages up to `math.MaxInt32` bytes; tonic's default 4 MiB
//! decode limit would break large `Series` frames and `LabelValues` replies, so every helper
//! here raises both limits to [`MAX_MESSAGE_SIZE`]. TLS is configured by the caller (see
//! `service-core`): these helpers take a ready [`Channel`] or add services to a ready server.
//!
//! Compression: gzip through tonic. Thanos also registers a `snappy` codec (framed snappy);
//! tonic 0.14 has a closed set of compression encodings, so a server accepts snappy-compressed
//! requests through [`SnappyDecompressionLayer`] (it rewrites them to uncompressed frames before
//! tonic sees them). Our clients cannot send snappy; they use gzip or nothing.
//!
//! Servers answer uncompressed, whatever the client accepts: Thanos' Go servers compress an
//! answer only when the request came compressed (and Thanos' clients send none by default), and
//! chunk data is XOR-compressed already, so gzip would cost the sender most of its CPU time for
//! little gain (measured: 70% of a store gateway's CPU on a large `Series` answer).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tower::{Layer, Service};

use crate::error::{Error, Result};
use crate::proto::thanos::info::info_client::InfoClient;
use crate::proto::thanos::info::info_server::{Info, InfoServer};
use crate::proto::thanos::store_client::StoreClient;
use crate::proto::thanos::store_server::{Store, StoreServer};

/// Largest message sent or accepted, as Thanos sets it (`math.MaxInt32`).
pub const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// The gRPC compression name Thanos registers for framed snappy.
pub const SNAPPY: &str = "snappy";

const GRPC_ENCODING: &str = "grpc-encoding";

/// How a client compresses its requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// No compression (Thanos' default, `--grpc-compression=none`).
    #[default]
    None,
    /// gzip requests; gzip responses are accepted.
    Gzip,
}

/// A `thanos.Store` client on `channel` with Thanos' message limits.
///
/// Responses compressed with gzip are always accepted; `compression` decides the requests.
pub fn store_client(channel: Channel, compression: Compression) -> StoreClient<Channel> {
    let client = StoreClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
        .accept_compressed(CompressionEncoding::Gzip);
    match compression {
        Compression::None => client,
        Compression::Gzip => client.send_compressed(CompressionEncoding::Gzip),
    }
}

/// A `thanos.info.Info` client on `channel` with Thanos' message limits.
pub fn info_client(channel: Channel, compression: Compression) -> InfoClient<Channel> {
    let client = InfoClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
        .accept_compressed(CompressionEncoding::Gzip);
    match compression {
        Compression::None => client,
        Compression::Gzip => client.send_compressed(CompressionEncoding::Gzip),
    }
}

/// The `thanos.Store` service for `store`, with Thanos' message limits, accepting gzip requests
/// and answering uncompressed (see the [module docs](self)).
pub fn store_server<S: Store>(store: S) -> StoreServer<S> {
    StoreServer::new(store)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
        .accept_compressed(CompressionEncoding::Gzip)
}

/// The `thanos.info.Info` service for `info`, configured as [`store_server`].
pub fn info_server<I: Info>(info: I) -> InfoServer<I> {
    InfoServer::new(info)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
        .accept_compressed(CompressionEncoding::Gzip)
}

/// A plain-text channel to `http://{address}` (for tests and in-cluster use without TLS).
pub async fn connect(address: SocketAddr) -> Result<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?;
    Ok(endpoint.connect().await?)
}

/// A running test or embedded gRPC server; stops when dropped.
#[derive(Debug)]
pub struct RunningServer {
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(sender) = self.shutdown.take() {
            // The server may already be gone; then there is nobody to tell.
            let _ = sender.send(());
        }
        match (&mut self.task).await {
            Ok(result) => Ok(result?),
            Err(join_error) => Err(Error::Listen {
                address: self.address.to_string(),
                source: std::io::Error::other(join_error),
            }),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
    }
}

/// Serves a `thanos.Store` and a `thanos.info.Info` service on `address` (e.g. `127.0.0.1:0`)
/// in a background task, with snappy request decompression; for tests and simple embedding.
pub async fn serve_store<S, I>(address: &str, store: S, info: I) -> Result<RunningServer>
where
    S: Store,
    I: Info,
{
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| Error::Listen {
            address: address.to_owned(),
            source,
        })?;
    let local_address = listener.local_addr().map_err(|source| Error::Listen {
        address: address.to_owned(),
        source,
    })?;
    let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .layer(SnappyDecompressionLayer)
        .add_service(store_server(store))
        .add_service(info_server(info));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = receiver.await;
    }));
    Ok(RunningServer {
        address: local_address,
        shutdown: Some(sender),
        task,
    })
}

/// Server layer that accepts Thanos' `snappy` request compression; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct SnappyDecompressionLayer;

impl<S> Layer<S> for SnappyDecompressionLayer {
    type Service = SnappyDecompression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SnappyDecompression { inner }
    }
}

/// The service made by [`SnappyDecompressionLayer`].
#[derive(Debug, Clone)]
pub struct SnappyDecompression<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for SnappyDecompression<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let is_snappy = request
            .headers()
            .get(GRPC_ENCODING)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(SNAPPY.as_bytes()));
        if !is_snappy {
            return Box::pin(self.inner.call(request));
        }
        // The ready service handles this request; a fresh clone waits for the next one.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            parts.headers.remove(GRPC_ENCODING);
            let collected = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let status = tonic::Status::internal(format!("read request body: {error}"));
                    return Ok(status.into_http());
                }
            };
            let decompressed = match decompress_grpc_frames(&collected) {
                Ok(bytes) => bytes,
                Err(detail) => {
                    let status =
                        tonic::Status::internal(format!("decompress snappy request: {detail}"));
                    return Ok(status.into_http());
                }
            };
            ready
                .call(http::Request::from_parts(
                    parts,
                    Body::new(Full::new(decompressed)),
                ))
                .await
        })
    }
}

/// Rewrites gRPC length-prefixed frames (`flag | u32 length | message`) so that every frame
/// with the compressed flag holds its snappy-decompressed message and the flag cleared.
fn decompress_grpc_frames(mut input: &[u8]) -> std::result::Result<Bytes, String> {
    let mut output = BytesMut::with_capacity(input.len() * 2);
    while !input.is_empty() {
        let [flag, l0, l1, l2, l3, rest @ ..] = input else {
            return Err(format!("truncated frame header of {} bytes", input.len()));
        };
        let length = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
        let Some((message, remainder)) = rest.split_at_checked(length) else {
            return Err(format!("frame of {length} bytes has only {}", rest.len()));
        };
        match flag {
            0 => append_frame(&mut output, message)?,
            1 => {
                let plain = snappy_decompress(message)?;
                append_frame(&mut output, &plain)?;
            }
            other => return Err(format!("unknown frame flag {other}")),
        }
        input = remainder;
    }
    Ok(output.freeze())
}

fn append_frame(output: &mut BytesMut, message: &[u8]) -> std::result::Result<(), String> {
    let length =
        u32::try_from(message.len()).map_err(|_| format!("message of {} bytes", message.len()))?;
    output.put_u8(0);
    output.put_u32(length);
    output.put_slice(message);
    Ok(())
}

/// Decodes the snappy *framed* (stream) format Thanos' codec writes.
fn snappy_decompress(message: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut plain = Vec::new();
    std::io::copy(&mut snap::read::FrameDecoder::new(message), &mut plain)
        .map_err(|error| error.to_string())?;
    Ok(plain)
}

/// Encodes `message` in the snappy framed format, as Thanos' `snappy` codec does (used by
/// tests of servers, since our clients cannot send snappy through tonic).
pub fn snappy_compress(message: &[u8]) -> Vec<u8> {
    let mut encoder = snap::write::FrameEncoder::new(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = std::io::Write::write_all(&mut encoder, message);
    encoder.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut bytes = vec![flag];
        bytes.extend_from_slice(&(message.len() as u32).to_be_bytes());
        bytes.extend_from_slice(message);
        bytes
    }

    #[test]
    fn snappy_frames_are_rewritten_uncompressed() {
        let message = b"hello hello hello hello".repeat(10);
        let mut input = frame(1, &snappy_compress(&message));
        input.extend(frame(0, b"plain"));
        let output = decompress_grpc_frames(&input).unwrap();
        let mut expected = frame(0, &message);
        expected.extend(frame(0, b"plain"));
        assert_eq!(output.as_ref(), expected.as_slice());
    }

    #[test]
    fn broken_frames_are_errors() {
        assert!(decompress_grpc_frames(&[0, 0, 0]).is_err());
        assert!(decompress_grpc_frames(&frame(0, b"abc")[..6]).is_err());
        assert!(decompress_grpc_frames(&frame(1, b"not snappy")).is_err());
        assert!(decompress_grpc_frames(&frame(2, b"")).is_err());
    }
}
