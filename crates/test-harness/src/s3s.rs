//! `s3s-fs` (crates.io): an S3 server over a local folder that verifies SigV4 signatures, so a
//! wrong secret key is refused as on AWS.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{Process, free_port, require_program, wait_until};

/// A running s3s-fs server on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct S3sFs {
    process: Process,
    addr: SocketAddr,
    data_dir: PathBuf,
    access_key: String,
    secret_key: String,
    _work_dir: tempfile::TempDir,
}

impl S3sFs {
    /// Starts s3s-fs on a free port with the given credentials, over a fresh temporary folder.
    pub fn start(access_key: &str, secret_key: &str) -> Result<Self> {
        let binary = require_program("s3s-fs")?;
        let work_dir = tempfile::tempdir()?;
        let data_dir = work_dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut command = Command::new(binary);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", access_key, "--secret-key", secret_key])
            .arg(&data_dir);
        let process = Process::spawn("s3s-fs", command, work_dir.path())?;
        let ready = wait_until(
            "s3s-fs to accept connections",
            Duration::from_secs(30),
            || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok(),
        );
        if let Err(error) = ready {
            process.print_log();
            return Err(error);
        }
        Ok(Self {
            process,
            addr,
            data_dir,
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            _work_dir: work_dir,
        })
    }

    /// `host:port` of the S3 API (Thanos' `endpoint`, used with `insecure: true`).
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The access key the server accepts.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key the server accepts.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Creates a bucket: s3s-fs serves each folder of its data folder as a bucket.
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let path = self.data_dir.join(bucket);
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))
    }

    /// The server process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The folder served: each bucket is a folder in it, each object a file (tests may change
    /// objects behind the server's back, e.g. truncate or delete them).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Kills the server (SIGKILL): connections to its port are refused until [`S3sFs::restart`].
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port and folder (killing it first if it runs) and
    /// waits until it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        self.process.kill();
        let binary = require_program("s3s-fs")?;
        let mut command = Command::new(binary);
        command
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
            ])
            .args([
                "--access-key",
                &self.access_key,
                "--secret-key",
                &self.secret_key,
            ])
            .arg(&self.data_dir);
        let name = format!("s3s-fs.after-{}", self.process.pid());
        self.process = Process::spawn(&name, command, self._work_dir.path())?;
        let addr = self.addr;
        let ready = wait_until(
            "s3s-fs to accept connections again",
            Duration::from_secs(30),
            || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok(),
        );
        if let Err(error) = ready {
            self.process.print_log();
            return Err(error);
        }
        Ok(())
    }
}
