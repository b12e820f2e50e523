//! A real redis server on 127.0.0.1, for the shared index cache tests.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::process::{Process, free_port, require_program, wait_until};

/// A running `redis-server` without persistence, killed on drop.
#[derive(Debug)]
pub struct Redis {
    process: Process,
    addr: SocketAddr,
    _work_dir: tempfile::TempDir,
}

impl Redis {
    /// Starts `redis-server` on a free port and waits until it accepts connections.
    pub fn start() -> Result<Self> {
        let binary = require_program("redis-server")?;
        let work_dir = tempfile::tempdir()?;
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut command = Command::new(binary);
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(work_dir.path());
        let process = Process::spawn("redis", command, work_dir.path())?;
        if let Err(error) = wait_until(
            "redis-server to accept connections",
            Duration::from_secs(20),
            || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        ) {
            process.print_log();
            return Err(error);
        }
        Ok(Self {
            process,
            addr,
            _work_dir: work_dir,
        })
    }

    /// `host:port` as Thanos' `addr` wants it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The server process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
