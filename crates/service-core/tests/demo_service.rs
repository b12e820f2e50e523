//! Starts the `service-core-demo` binary (a tiny service on the shared runtime) and checks what
//! every thanos-rs service promises from the outside: probes, metrics, log formats, `--version`,
//! error exit codes and a clean SIGTERM shutdown that lets in-flight requests finish.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = env!("CARGO_BIN_EXE_service-core-demo");

struct Demo {
    child: Child,
    http: SocketAddr,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start(extra_args: &[&str]) -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let given_http = extra_args
        .iter()
        .find_map(|arg| arg.strip_prefix("--http-address="));
    let http = given_http.map_or_else(free_address, |address| address.parse().unwrap());
    let grpc = free_address();
    let child = Command::new(DEMO)
        .arg(format!("--http-address={http}"))
        .arg(format!("--grpc-address={grpc}"))
        .args(
            extra_args
                .iter()
                .filter(|arg| !arg.starts_with("--http-address=")),
        )
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    Demo {
        child,
        http,
        stderr_path,
        _dir: dir,
    }
}

impl Demo {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap()
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "demo still running; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `path` until it answers `status`.
    fn wait_for_status(&mut self, path: &str, status: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((answered, _)) = get(self.http, path)
                && answered == status
            {
                return;
            }
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("demo exited with {exit}; stderr:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "{path} never answered {status}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// One HTTP/1.1 GET; returns the status code and body.
fn get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn send_sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// The whole life of a service, with logs in `format`; returns its stderr.
fn check_lifecycle(format: &str) -> String {
    let mut demo = start(&[
        &format!("--log.format={format}"),
        "--demo.ready-delay=3s",
        "--http-grace-period=20s",
        "--grpc-grace-period=20s",
    ]);
    demo.wait_for_status("/-/healthy", 200, Duration::from_secs(30));
    let (status, body) = get(demo.http, "/-/ready").unwrap();
    assert_eq!(status, 503, "ready before the readiness delay: {body}");
    assert!(body.contains("not ready"), "{body}");
    demo.wait_for_status("/-/ready", 200, Duration::from_secs(30));

    let (status, metrics) = get(demo.http, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("thanos_build_info{"), "{metrics}");

    let http = demo.http;
    let in_flight = std::thread::spawn(move || get(http, "/slow/1500"));
    std::thread::sleep(Duration::from_millis(400));
    send_sigterm(&demo.child);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(demo.http).is_err(),
        "still accepting after SIGTERM"
    );
    let (status, body) = in_flight.join().unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "done after 1500ms"));
    let exit = demo.wait_exit(Duration::from_secs(15));
    assert!(exit.success(), "exit {exit}; stderr:\n{}", demo.stderr());
    demo.stderr()
}

#[test]
fn logfmt_lifecycle() {
    let stderr = check_lifecycle("logfmt");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 5, "{stderr}");
    for line in &lines {
        assert!(line.starts_with("ts="), "not logfmt: {line}");
        assert!(
            line.contains(" level=") && line.contains(" msg="),
            "not logfmt: {line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|line| line.contains("msg=\"caught signal, exiting\" signal=SIGTERM")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("msg=\"slow request done\"")),
        "{stderr}"
    );
}

#[test]
fn json_lifecycle() {
    let stderr = check_lifecycle("json");
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert!(
            value["ts"].is_string() && value["level"].is_string(),
            "{line}"
        );
        messages.push(value["msg"].as_str().unwrap().to_owned());
        if value["msg"] == "caught signal, exiting" {
            assert_eq!(value["signal"], "SIGTERM");
        }
    }
    assert!(
        messages
            .iter()
            .any(|message| message == "caught signal, exiting"),
        "{stderr}"
    );
    assert!(
        messages.iter().any(|message| message == "exiting"),
        "{stderr}"
    );
}

#[test]
fn version_flag() {
    let output = Command::new(DEMO).arg("--version").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let expected = format!("service-core-demo {} (branch: ", env!("CARGO_PKG_VERSION"));
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(stdout.contains("revision: "), "{stdout}");
}

#[test]
fn bad_flag_is_a_usage_error() {
    let output = Command::new(DEMO).arg("--log.level=loud").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--log.level"), "{stderr}");
}

#[test]
fn startup_failure_exits_1_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let mut demo = start(&[&format!("--http-address={address}")]);
    let exit = demo.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(1));
    let stderr = demo.stderr();
    let last = stderr.lines().last().unwrap();
    assert_eq!(
        last,
        format!("service-core-demo: listen on {address}: Address already in use (os error 98)"),
        "{stderr}"
    );
}
