//! moto's S3 server (`moto_server`, from PyPI): an independent S3 implementation that accepts
//! any credentials.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{Process, free_port, require_program, wait_until};

/// A running moto S3 server on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Moto {
    process: Process,
    addr: SocketAddr,
    _work_dir: tempfile::TempDir,
}

impl Moto {
    /// Starts `moto_server` on a free port and waits until it answers HTTP.
    pub fn start() -> Result<Self> {
        Self::spawn(&[], |addr| http_request(addr, "GET", "/").is_ok())
    }

    /// Starts `moto_server` serving HTTPS with the PEM certificate chain and key at these paths
    /// and waits until it accepts connections. [`Moto::create_bucket`] speaks plain HTTP, so the
    /// caller creates buckets over TLS itself.
    pub fn start_tls(cert_file: &Path, key_file: &Path) -> Result<Self> {
        let cert = cert_file
            .to_str()
            .context("certificate path is not UTF-8")?;
        let key = key_file.to_str().context("key path is not UTF-8")?;
        Self::spawn(&["-c", cert, "-k", key], |addr| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
        })
    }

    fn spawn(extra_args: &[&str], ready: impl Fn(SocketAddr) -> bool) -> Result<Self> {
        let binary = require_program("moto_server")?;
        let work_dir = tempfile::tempdir()?;
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut command = Command::new(binary);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .args(extra_args)
            .current_dir(work_dir.path());
        let process = Process::spawn("moto", command, work_dir.path())?;
        let ready = wait_until("moto_server to answer", Duration::from_secs(60), || {
            ready(addr)
        });
        if let Err(error) = ready {
            process.print_log();
            return Err(error);
        }
        Ok(Self {
            process,
            addr,
            _work_dir: work_dir,
        })
    }

    /// `host:port` of the S3 API (Thanos' `endpoint`, used with `insecure: true`).
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates a bucket (moto accepts unsigned bucket creation).
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let (status, body) = http_request(self.addr, "PUT", &format!("/{bucket}"))?;
        if status != 200 {
            bail!("create bucket {bucket} on moto: status {status}: {body}");
        }
        Ok(())
    }

    /// The server process (to print its log, or kill it in fault tests).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// A minimal HTTP/1.0 request without a body: the status code and the body.
fn http_request(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("http response without header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("http response without status code")?;
    Ok((status, body.to_owned()))
}
