//! Finding the workspace's binaries (`sidecar`, `store-gateway`, `querier`, ...).
//!
//! Cargo builds binaries of other packages only when asked, so `make test` runs
//! `cargo build --workspace --bins` before `cargo test`. The binaries are looked up in the
//! profile folder holding the running test executable (`<target>/<profile>/deps/..`), then in
//! `$CARGO_TARGET_DIR/debug` and the workspace's `target/debug`; `E2E_BIN_DIR`, when set, is
//! looked in first.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// The path of the workspace binary `name`, or an error saying how to build it.
pub fn binary(name: &str) -> Result<PathBuf> {
    let folders = candidate_folders();
    for folder in &folders {
        let candidate = folder.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let looked: Vec<String> = folders
        .iter()
        .map(|folder| folder.display().to_string())
        .collect();
    bail!(
        "the `{name}` binary is missing (looked in {}): run `cargo build --workspace --bins` \
         before the end-to-end tests (`make test` does)",
        looked.join(", ")
    )
}

fn candidate_folders() -> Vec<PathBuf> {
    let mut folders = Vec::new();
    // Another build's binaries (e.g. release ones for a heavier run): `E2E_BIN_DIR`.
    if let Some(folder) = std::env::var_os("E2E_BIN_DIR") {
        folders.push(PathBuf::from(folder));
    }
    if let Ok(executable) = std::env::current_exe()
        && let Some(deps) = executable.parent()
        && deps.ends_with("deps")
        && let Some(profile) = deps.parent()
    {
        folders.push(profile.to_path_buf());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        folders.push(PathBuf::from(target).join("debug"));
    }
    folders.push(test_harness::process::workspace_root().join("target/debug"));
    folders.dedup();
    folders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_says_how_to_build_it() {
        let error = binary("no-such-thanos-rs-binary").unwrap_err().to_string();
        assert!(error.contains("no-such-thanos-rs-binary"), "{error}");
        assert!(error.contains("cargo build --workspace --bins"), "{error}");
    }
}
