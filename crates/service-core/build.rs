//! Bakes version facts into the crate: git revision and branch (when built inside a git work
//! tree, else `unknown`), the compiler version and the target platform.
//!
//! `THANOS_RS_REVISION` / `THANOS_RS_BRANCH` override git (for builds from a source tarball or a
//! Docker context without `.git`). Only a change to this file or those variables re-runs it, so
//! a long-lived incremental build may report an older revision; release and CI builds start
//! clean and report the right one.

use std::process::Command;

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=THANOS_RS_REVISION");
    println!("cargo:rerun-if-env-changed=THANOS_RS_BRANCH");

    let revision = std::env::var("THANOS_RS_REVISION")
        .ok()
        .or_else(|| command_output("git", &["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let branch = std::env::var("THANOS_RS_BRANCH")
        .ok()
        .or_else(|| command_output("git", &["rev-parse", "--abbrev-ref", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = command_output(&rustc, &["--version"])
        .and_then(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());

    println!("cargo:rustc-env=SERVICE_CORE_REVISION={revision}");
    println!("cargo:rustc-env=SERVICE_CORE_BRANCH={branch}");
    println!("cargo:rustc-env=SERVICE_CORE_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=SERVICE_CORE_TARGET={target}");
}
