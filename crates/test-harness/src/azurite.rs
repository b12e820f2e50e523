//! Azurite's blob service (`azurite-blob`, from npm): the Azure Blob Storage emulator.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::process::{Process, free_port, require_program, wait_until};

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";

/// Azurite's well-known development account key (public, not a secret).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service on 127.0.0.1, killed on drop. Data lives in a temporary folder
/// (`--location`), so memory stays bounded; telemetry is disabled.
#[derive(Debug)]
pub struct Azurite {
    process: Process,
    addr: SocketAddr,
    _work_dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts `azurite-blob` on a free port and waits until it accepts connections.
    pub fn start() -> Result<Self> {
        let binary = require_program("azurite-blob")?;
        let work_dir = tempfile::tempdir()?;
        let data_dir = work_dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut command = Command::new(binary);
        command
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(&data_dir)
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--loose"]);
        let process = Process::spawn("azurite", command, work_dir.path())?;
        let ready = wait_until(
            "azurite to accept connections",
            Duration::from_secs(60),
            || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok(),
        );
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

    /// The account's blob endpoint, `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn blob_endpoint(&self) -> String {
        format!("http://{}/{AZURITE_ACCOUNT}", self.addr)
    }

    /// A connection string for the development account (Thanos' `storage_connection_string`).
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={};",
            self.blob_endpoint()
        )
    }

    /// The server process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
