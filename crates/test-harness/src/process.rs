//! Spawning, waiting for and killing real programs.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running program, killed on drop. Its output goes to a log file, printed by
/// [`Process::print_log`] and automatically when the owning thread is panicking.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl Process {
    /// Starts `command` with its stdout and stderr captured to `log_dir/<name>.log`.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        let log_path = log_dir.join(format!("{name}.log"));
        let log =
            File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("start {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log_path,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The captured output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Prints the captured output to stderr (shown by the test runner on failure).
    #[allow(
        clippy::print_stderr,
        reason = "the harness reports to the test runner on stderr"
    )]
    pub fn print_log(&self) {
        eprintln!(
            "----- {} log ({}) -----",
            self.name,
            self.log_path.display()
        );
        eprintln!("{}", self.log());
        eprintln!("----- end of {} log -----", self.name);
    }

    /// Whether the process has exited, with its status.
    pub fn try_wait(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (a name `kill` knows: `STOP`, `CONT`, `KILL`, ...) without waiting.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.child.id());
        }
        Ok(())
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log();
        }
        self.kill();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, never one this process handed out
/// before (the kernel may offer a just-released port again, and two programs of one test would
/// then race for it).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1");
        let port = listener
            .local_addr()
            .expect("local address of a bound listener")
            .port();
        let fresh = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(port);
        if fresh {
            return port;
        }
    }
}

/// The path of `program`: on `PATH`, or in the project's `.tools/bin`. A missing program is an
/// error that says how to install it.
pub fn require_program(program: &str) -> Result<PathBuf> {
    let tools = workspace_root().join(".tools/bin").join(program);
    if tools.is_file() {
        return Ok(tools);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(program);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "{program} is not installed: run `make test-deps` (scripts/install-test-deps.sh) to install \
         what the tests need"
    )
}

/// The workspace root (the folder holding `Cargo.lock`), found upward from this crate.
pub fn workspace_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("Cargo.lock").exists() {
        if !dir.pop() {
            return PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        }
    }
    dir
}

/// Polls `probe` every 100 ms until it returns true or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut probe: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if probe() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// A minimal HTTP/1.0 GET: the status code and the body. Enough for readiness probes and small
/// JSON answers without pulling an HTTP client into every test.
pub fn http_get(addr: SocketAddr, path_and_query: &str) -> Result<(u16, String)> {
    http_get_within(addr, path_and_query, Duration::from_secs(30))
}

/// [`http_get`] waiting up to `read_timeout` for the answer (heavy queries under load).
pub fn http_get_within(
    addr: SocketAddr,
    path_and_query: &str,
    read_timeout: Duration,
) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(read_timeout))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_is_an_error_naming_it() {
        let error = require_program("no-such-program-thanos-rs").unwrap_err();
        assert!(error.to_string().contains("no-such-program-thanos-rs"));
    }

    #[test]
    fn process_output_is_captured_and_killed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "echo hello; sleep 30"]);
        let process = Process::spawn("sh", command, dir.path()).unwrap();
        let pid = process.pid();
        wait_until("echo", Duration::from_secs(5), || {
            process.log().contains("hello")
        })
        .unwrap();
        drop(process);
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z");
        assert!(!alive, "process {pid} still running after drop");
    }
}
