//! A real memcached server on 127.0.0.1, for the shared index cache tests.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::process::{Process, free_port, require_program, wait_until};

/// A running `memcached`, killed on drop.
#[derive(Debug)]
pub struct Memcached {
    process: Process,
    addr: SocketAddr,
    _work_dir: tempfile::TempDir,
}

impl Memcached {
    /// Starts `memcached` on a free port (TCP only) and waits until it accepts connections.
    pub fn start() -> Result<Self> {
        let binary = require_program("memcached")?;
        let work_dir = tempfile::tempdir()?;
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut command = Command::new(binary);
        command.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
        ]);
        // memcached refuses to run as root without a user.
        command.args(["-u", "root"]);
        let process = Process::spawn("memcached", command, work_dir.path())?;
        if let Err(error) = wait_until(
            "memcached to accept connections",
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

    /// `host:port` as Thanos' `addresses` entries want it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The server process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
