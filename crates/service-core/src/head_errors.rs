//! Prometheus' error JSON for the errors hyper answers by itself, before any handler runs: 414
//! (request URI over hyper's 65,534 bytes) and 431 (request head over the buffer). hyper writes
//! them with an empty body; on API paths (`/api/` in the request line) [`ApiHeadErrors`] rewrites
//! that answer into one with `{"status":"error","errorType":"bad_data","error":...}`, as every
//! other error of the API has.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::status::{ApiError, ErrorKind};

/// How much of a request's first bytes is kept to tell an API path.
const REQUEST_PREFIX: usize = 256;

/// A server connection whose hyper-written 414 and 431 answers on API paths carry error JSON.
#[derive(Debug)]
pub(crate) struct ApiHeadErrors<S> {
    inner: S,
    /// The first bytes of the request being read.
    request: Vec<u8>,
    /// An answer was written since the last read: the next bytes read start a new request.
    answered: bool,
    /// A rewritten answer being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> ApiHeadErrors<S> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            request: Vec::with_capacity(REQUEST_PREFIX),
            answered: false,
            pending: None,
        }
    }

    fn is_api_request(&self) -> bool {
        let line = self
            .request
            .split(|byte| *byte == b'\n')
            .next()
            .unwrap_or(&[]);
        let target = line.splitn(3, |byte| *byte == b' ').nth(1).unwrap_or(&[]);
        target.windows(5).any(|window| window == b"/api/")
    }
}

/// The JSON answer that replaces hyper's empty one, or `None` for any other write.
fn rewrite(answer: &[u8]) -> Option<Vec<u8>> {
    let (status, reason, message) =
        if answer.starts_with(b"HTTP/1.1 414 ") || answer.starts_with(b"HTTP/1.0 414 ") {
            (
                414,
                "URI Too Long",
                "request URI too long: longer than 65,534 bytes; send a long query as a POST form",
            )
        } else if answer.starts_with(b"HTTP/1.1 431 ") || answer.starts_with(b"HTTP/1.0 431 ") {
            (
                431,
                "Request Header Fields Too Large",
                "request header fields too large: the request head is longer than 1 MiB",
            )
        } else {
            return None;
        };
    // Only hyper's own answer, whose body is empty, never a handler's answer with a body.
    let head = String::from_utf8_lossy(answer).to_ascii_lowercase();
    if !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let body = ApiError::new(ErrorKind::BadData, message).to_json();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<S: AsyncWrite + Unpin> ApiHeadErrors<S> {
    /// Writes what is left of a rewritten answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = self.pending.as_mut() {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero)));
                }
                Poll::Ready(Ok(count)) => *written += count,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ApiHeadErrors<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                if this.answered {
                    this.answered = false;
                    this.request.clear();
                }
                let room = REQUEST_PREFIX.saturating_sub(this.request.len());
                this.request
                    .extend_from_slice(&read[..read.len().min(room)]);
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ApiHeadErrors<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        }
        if !this.answered
            && this.is_api_request()
            && let Some(answer) = rewrite(buf)
        {
            this.answered = true;
            this.pending = Some((answer, 0));
            // hyper's own answer is taken whole and replaced; the replacement goes out now or
            // on the next write, flush or shutdown.
            return match this.drain(cx) {
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                _ => Poll::Ready(Ok(buf.len())),
            };
        }
        this.answered = true;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn exchange(request: &[u8], answer: &[u8]) -> Vec<u8> {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut server = ApiHeadErrors::new(server);
        let mut client = client;
        client.write_all(request).await.unwrap();
        let mut buffer = vec![0u8; request.len()];
        server.read_exact(&mut buffer).await.unwrap();
        server.write_all(answer).await.unwrap();
        server.shutdown().await.unwrap();
        drop(server);
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        received
    }

    #[tokio::test]
    async fn api_head_errors_get_json_and_other_answers_pass() {
        let empty_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let got = exchange(b"GET /api/v1/query?query=up HTTP/1.1\r\n", empty_431).await;
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("content-type: application/json"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["errorType"], "bad_data");
        assert!(text.contains(&format!("content-length: {}", body.len())));

        let empty_414 = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        let got = exchange(b"POST /prefix/api/v1/query_range HTTP/1.1\r\n", empty_414).await;
        assert!(
            String::from_utf8(got)
                .unwrap()
                .contains("\"errorType\":\"bad_data\"")
        );

        // A handler's 414 with a body is left alone.
        let with_body = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 2\r\n\r\n{}";
        let got = exchange(b"GET /api/v1/x HTTP/1.1\r\n", with_body).await;
        assert_eq!(got, with_body);
        // Not an API path, or not a head error: unchanged.
        let got = exchange(b"GET /metrics HTTP/1.1\r\n", empty_431).await;
        assert_eq!(got, empty_431);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let got = exchange(b"GET /api/v1/labels HTTP/1.1\r\n", ok).await;
        assert_eq!(got, ok);
    }
}
