//! Thanos' `snappy` request compression through a real tonic server on 127.0.0.1: a client that
//! compresses its request frames as Go's snappy codec does must be served.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use prom_model::{Labels, Sample};
use storeapi::proto::thanos;
use storeapi::proto::thanos::store_client::StoreClient;
use storeapi::transport::{SNAPPY, connect, serve_store, snappy_compress};
use storeapi::{MemoryStore, SeriesData};
use tonic::body::Body;
use tonic::transport::Channel;

/// Rewrites every outgoing gRPC frame as a snappy-compressed one (or, with `corrupt`, as
/// garbage flagged compressed) and sets `grpc-encoding: snappy`.
#[derive(Clone)]
struct SnappyRequests {
    inner: Channel,
    corrupt: bool,
}

fn compress_frames(mut input: &[u8], corrupt: bool) -> Bytes {
    let mut output = BytesMut::new();
    while input.len() >= 5 {
        let length = u32::from_be_bytes([input[1], input[2], input[3], input[4]]) as usize;
        let message = &input[5..5 + length];
        let compressed = if corrupt {
            b"garbage".to_vec()
        } else {
            snappy_compress(message)
        };
        output.put_u8(1);
        output.put_u32(compressed.len() as u32);
        output.put_slice(&compressed);
        input = &input[5 + length..];
    }
    output.freeze()
}

impl tower::Service<http::Request<Body>> for SnappyRequests {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The polled-ready channel serves this call; a fresh clone waits for the next one.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let corrupt = self.corrupt;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let plain = body
                .collect()
                .await
                .expect("collect request body")
                .to_bytes();
            parts
                .headers
                .insert("grpc-encoding", http::HeaderValue::from_static(SNAPPY));
            let compressed = Body::new(Full::new(compress_frames(&plain, corrupt)));
            inner
                .call(http::Request::from_parts(parts, compressed))
                .await
        })
    }
}

async fn client(
    corrupt: bool,
) -> (
    StoreClient<SnappyRequests>,
    storeapi::transport::RunningServer,
) {
    let store = MemoryStore::new(
        Labels::from_pairs([("replica", "a")]),
        vec![SeriesData::new(
            Labels::from_pairs([("__name__", "up")]),
            vec![Sample::new(1, 1.0), Sample::new(2, 2.0)],
        )],
    );
    let server = serve_store("127.0.0.1:0", store.clone(), store)
        .await
        .expect("start in-memory store");
    let channel = connect(server.address()).await.expect("connect");
    (
        StoreClient::new(SnappyRequests {
            inner: channel,
            corrupt,
        }),
        server,
    )
}

fn request() -> thanos::LabelValuesRequest {
    thanos::LabelValuesRequest {
        label: "replica".to_owned(),
        start: 0,
        end: 10,
        ..Default::default()
    }
}

#[tokio::test]
async fn snappy_compressed_requests_are_served() {
    let (mut client, server) = client(false).await;
    let values = client
        .label_values(request())
        .await
        .unwrap()
        .into_inner()
        .values;
    assert_eq!(values, ["a"]);
    let series_request = thanos::SeriesRequest {
        min_time: 0,
        max_time: 10,
        matchers: vec![thanos::LabelMatcher {
            r#type: 0,
            name: "__name__".to_owned(),
            value: "up".to_owned(),
        }],
        ..Default::default()
    };
    let mut stream = client.series(series_request).await.unwrap().into_inner();
    let mut frames = 0;
    while let Some(frame) = stream.message().await.unwrap() {
        assert!(matches!(
            frame.result,
            Some(thanos::series_response::Result::Series(_))
        ));
        frames += 1;
    }
    assert_eq!(frames, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn corrupt_snappy_is_an_error_status() {
    let (mut client, _server) = client(true).await;
    let status = client.label_values(request()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal, "{status}");
    assert!(status.message().contains("snappy"), "{status}");
}
