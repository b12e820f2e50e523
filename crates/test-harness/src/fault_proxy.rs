//! A TCP proxy on 127.0.0.1 that injects network faults between a client and a server (a bucket
//! in the fault tests): delays, stalls, closed connections, connections cut mid-answer and HTTP
//! error answers. The fault can be changed at any time and applies to connections already open
//! (a client's pooled keep-alive connections included), not only to new ones.
//!
//! Plain threads: one accepting, two per connection (one each way). Each side reads with a short
//! timeout, so an idle connection notices a new fault within [`TICK`].

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// How often an idle connection looks at the current fault.
const TICK: Duration = Duration::from_millis(50);

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    None,
    /// Forward every piece of data (either way) after this delay: a slow bucket.
    Delay(Duration),
    /// Forward nothing, either way, while the fault lasts; connections stay open and new ones are
    /// accepted (a hung server). What was held is forwarded when the fault ends.
    Stall,
    /// Close every connection at once (open ones within [`TICK`]) and every new one right after
    /// accepting it.
    Close,
    /// Answer every request on a new connection with this HTTP status and an S3 error body, then
    /// close it; connections opened before the fault are closed at their next activity.
    HttpStatus(u16),
    /// Let each connection carry this many more bytes from the server (counted from when the
    /// fault was set, or from the connection's start), then close it in the middle of the answer.
    CutAfter(u64),
    /// Forward this many more bytes from the server (all connections together, counted from
    /// when the fault was set), then behave as [`Fault::Close`]: a server that dies in the middle
    /// of a client's work.
    CloseAfterTotal(u64),
}

/// Counters of what the proxy did.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    faulted: AtomicU64,
    bytes_down: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    /// The fault and its epoch (incremented on every change).
    fault: Mutex<(Fault, u64)>,
    stop: AtomicBool,
    counters: Counters,
    /// Bytes from the server since the fault was last set (for [`Fault::CloseAfterTotal`]).
    down_since_set: AtomicU64,
}

impl Shared {
    /// Whether [`Fault::CloseAfterTotal`]'s budget is used up.
    fn total_spent(&self, fault: Fault) -> bool {
        matches!(fault, Fault::CloseAfterTotal(limit)
            if self.down_since_set.load(Ordering::Relaxed) >= limit)
    }

    fn fault(&self) -> (Fault, u64) {
        *self
            .fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running proxy from a free 127.0.0.1 port to `upstream`; stopped on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts forwarding a free port of 127.0.0.1 to `upstream`, without a fault.
    pub fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the fault proxy")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            fault: Mutex::new((Fault::None, 0)),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            down_since_set: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("fault-proxy-accept".to_owned())
            .spawn(move || accept_loop(&listener, &accepting))?;
        Ok(Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The proxy's address (give it to the client instead of the server's).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` of the proxy (an S3 `endpoint`).
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Sets the fault; it applies to open connections too.
    pub fn set(&self, fault: Fault) {
        let mut current = self
            .shared
            .fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = (fault, current.1 + 1);
        self.shared.down_since_set.store(0, Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.counters.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed, cut or answered with an error status by a fault so far.
    pub fn faulted(&self) -> u64 {
        self.shared.counters.faulted.load(Ordering::Relaxed)
    }

    /// Bytes forwarded from the server to clients so far.
    pub fn bytes_down(&self) -> u64 {
        self.shared.counters.bytes_down.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the acceptor up; it sees the stop flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = stream else { continue };
        shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(shared);
        let _ = std::thread::Builder::new()
            .name("fault-proxy-conn".to_owned())
            .spawn(move || serve(client, &shared));
    }
}

/// One client connection: refused, answered with an error, or joined to a new upstream
/// connection by two pumps.
fn serve(client: TcpStream, shared: &Arc<Shared>) {
    let (fault, epoch) = shared.fault();
    if shared.total_spent(fault) {
        shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    match fault {
        Fault::Close => {
            shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Fault::HttpStatus(status) => {
            shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
            answer_error(client, status);
            return;
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(2)) else {
        // The server is down: the client sees its connection closed, as with a dead server
        // behind a load balancer.
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client_clone), Ok(server_clone)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up_shared = Arc::clone(shared);
    let up = std::thread::Builder::new()
        .name("fault-proxy-up".to_owned())
        .spawn(move || pump(client_clone, server_clone, &up_shared, false, epoch));
    pump(server, client, shared, true, epoch);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

/// Answers the first request of `client` with `status` and an S3-style XML error, then closes.
fn answer_error(mut client: TcpStream, status: u16) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServiceUnavailable</Code>\
                <Message>injected by the fault proxy</Message></Error>";
    let reason = match status {
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Injected Fault",
    };
    // One write: a formatted write to a socket goes out in pieces.
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes());
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Both);
}

/// Copies `from` to `to` under the current fault until either side closes. `down` is the
/// server-to-client direction (the one [`Fault::CutAfter`] counts).
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, down: bool, start_epoch: u64) {
    let close = |from: &TcpStream, to: &TcpStream| {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    };
    let _ = from.set_read_timeout(Some(TICK));
    let mut buf = vec![0u8; 16 * 1024];
    let mut epoch = start_epoch;
    // Bytes this connection may still carry down under `CutAfter`, for the fault's epoch.
    let mut allowance: Option<u64> = None;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            close(&from, &to);
            return;
        }
        let (fault, now_epoch) = shared.fault();
        if now_epoch != epoch {
            epoch = now_epoch;
            allowance = None;
        }
        if shared.total_spent(fault) {
            shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
            close(&from, &to);
            return;
        }
        match fault {
            Fault::Close => {
                shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
                close(&from, &to);
                return;
            }
            Fault::HttpStatus(_) if epoch != start_epoch => {
                shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
                close(&from, &to);
                return;
            }
            Fault::Stall => {
                std::thread::sleep(TICK);
                continue;
            }
            _ => {}
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(_) => {
                close(&from, &to);
                return;
            }
        };
        // The fault may have changed while the read waited; hold data while stalled.
        let data = &buf[..n];
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                close(&from, &to);
                return;
            }
            match shared.fault().0 {
                Fault::Stall => std::thread::sleep(TICK),
                Fault::Delay(delay) => {
                    std::thread::sleep(delay);
                    break;
                }
                Fault::Close => {
                    shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
                    close(&from, &to);
                    return;
                }
                Fault::CloseAfterTotal(limit) if down => {
                    let before = shared
                        .down_since_set
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    if before + data.len() as u64 > limit {
                        let keep = usize::try_from(limit.saturating_sub(before))
                            .unwrap_or(data.len())
                            .min(data.len());
                        let _ = to.write_all(&data[..keep]);
                        shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
                        close(&from, &to);
                        return;
                    }
                    break;
                }
                Fault::CloseAfterTotal(_) if shared.total_spent(shared.fault().0) => {
                    shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
                    close(&from, &to);
                    return;
                }
                Fault::CutAfter(limit) if down => {
                    let left = allowance.get_or_insert(limit);
                    if (data.len() as u64) > *left {
                        let keep = usize::try_from(*left).unwrap_or(data.len());
                        let _ = to.write_all(&data[..keep]);
                        shared
                            .counters
                            .bytes_down
                            .fetch_add(keep as u64, Ordering::Relaxed);
                        shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
                        close(&from, &to);
                        return;
                    }
                    *left -= data.len() as u64;
                    break;
                }
                _ => break,
            }
        }
        if to.write_all(data).is_err() {
            close(&from, &to);
            return;
        }
        if down {
            shared
                .counters
                .bytes_down
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo-like server: answers every line with `pong:<line>`, many times over one
    /// connection.
    fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                let mut answer = b"pong:".to_vec();
                                answer.extend_from_slice(&buf[..n]);
                                answer.extend_from_slice(&[b'x'; 100]);
                                if stream.write_all(&answer).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn exchange(stream: &mut TcpStream, message: &str) -> std::io::Result<String> {
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(message.as_bytes())?;
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn faults_apply_to_open_and_new_connections() {
        let proxy = FaultProxy::start(server()).unwrap();
        let mut open = TcpStream::connect(proxy.addr()).unwrap();
        assert!(exchange(&mut open, "a").unwrap().starts_with("pong:a"));

        proxy.set(Fault::Stall);
        assert!(
            exchange(&mut open, "b").is_err(),
            "a stalled proxy answered"
        );
        proxy.set(Fault::None);
        std::thread::sleep(TICK * 4);
        let mut held = vec![0u8; 4096];
        let n = open.read(&mut held).unwrap();
        assert!(String::from_utf8_lossy(&held[..n]).starts_with("pong:b"));

        proxy.set(Fault::CutAfter(10));
        let cut = exchange(&mut open, "c").unwrap();
        assert_eq!(cut.len(), 10, "{cut}");
        let mut rest = [0u8; 16];
        assert_eq!(open.read(&mut rest).unwrap_or(0), 0);

        proxy.set(Fault::CloseAfterTotal(150));
        let mut first = TcpStream::connect(proxy.addr()).unwrap();
        assert_eq!(exchange(&mut first, "f").unwrap().len(), 106);
        let mut second = TcpStream::connect(proxy.addr()).unwrap();
        assert_eq!(exchange(&mut second, "g").unwrap().len(), 44);
        std::thread::sleep(TICK * 4);
        assert!(exchange(&mut first, "h").unwrap_or_default().is_empty());

        proxy.set(Fault::HttpStatus(503));
        let mut fresh = TcpStream::connect(proxy.addr()).unwrap();
        let mut answer = exchange(&mut fresh, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut rest = String::new();
        let _ = fresh.read_to_string(&mut rest);
        answer.push_str(&rest);
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.ends_with("</Error>"), "{answer}");

        proxy.set(Fault::None);
        let mut again = TcpStream::connect(proxy.addr()).unwrap();
        assert!(exchange(&mut again, "d").unwrap().starts_with("pong:d"));
        proxy.set(Fault::Close);
        std::thread::sleep(TICK * 4);
        let closed = exchange(&mut again, "e").unwrap_or_default();
        assert!(closed.is_empty(), "a closed connection answered {closed}");
        assert!(proxy.faulted() >= 3, "{}", proxy.faulted());
        assert!(proxy.accepted() >= 3);
    }
}
