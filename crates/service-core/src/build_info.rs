//! Version facts for `--version` and the `thanos_build_info` gauge.

use prometheus::{IntGaugeVec, Opts, Registry};

/// The workspace version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binaries were built from (`unknown` outside git).
pub const REVISION: &str = env!("SERVICE_CORE_REVISION");
/// The git branch the binaries were built from (`unknown` outside git).
pub const BRANCH: &str = env!("SERVICE_CORE_BRANCH");
/// The compiler version, e.g. `1.95.0`.
pub const RUSTC_VERSION: &str = env!("SERVICE_CORE_RUSTC_VERSION");
/// The target triple.
pub const TARGET: &str = env!("SERVICE_CORE_TARGET");

/// What `--version` prints after the program name.
pub const VERSION_SUMMARY: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (branch: ",
    env!("SERVICE_CORE_BRANCH"),
    ", revision: ",
    env!("SERVICE_CORE_REVISION"),
    ")"
);

/// What `--version` prints in long form (`--version` with clap's long version).
pub const VERSION_DETAILS: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (branch: ",
    env!("SERVICE_CORE_BRANCH"),
    ", revision: ",
    env!("SERVICE_CORE_REVISION"),
    ")\n  rust version:     rustc ",
    env!("SERVICE_CORE_RUSTC_VERSION"),
    "\n  platform:         ",
    env!("SERVICE_CORE_TARGET"),
);

/// Go's name for the architecture, as Thanos' `goarch` label shows it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Registers `thanos_build_info{version,revision,branch,goarch,goos,goversion,tags} 1`, with
/// Thanos' label names so dashboards keep working; `goversion` holds the Rust compiler version.
pub fn register_build_info(registry: &Registry) -> Result<(), prometheus::Error> {
    let opts = Opts::new(
        "thanos_build_info",
        "A metric with a constant '1' value labeled by version, revision, branch, goversion from which thanos was built, and the goos and goarch for the build.",
    );
    let gauge = IntGaugeVec::new(
        opts,
        &[
            "version",
            "revision",
            "branch",
            "goarch",
            "goos",
            "goversion",
            "tags",
        ],
    )?;
    let goversion = format!("rustc{RUSTC_VERSION}");
    gauge
        .with_label_values(&[
            VERSION,
            REVISION,
            BRANCH,
            go_arch(),
            std::env::consts::OS,
            goversion.as_str(),
            "",
        ])
        .set(1);
    registry.register(Box::new(gauge))
}

#[cfg(test)]
mod tests {
    use prometheus::Encoder;

    use super::*;

    #[test]
    fn build_info_has_thanos_labels() {
        let registry = Registry::new();
        register_build_info(&registry).unwrap();
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        let line = text
            .lines()
            .find(|line| line.starts_with("thanos_build_info{"))
            .unwrap();
        for label in [
            "version=\"",
            "revision=\"",
            "branch=\"",
            "goarch=\"",
            "goos=\"",
            "goversion=\"rustc",
            "tags=\"",
        ] {
            assert!(line.contains(label), "{line} lacks {label}");
        }
        assert!(line.ends_with("} 1"), "{line}");
        assert!(VERSION_SUMMARY.starts_with(VERSION));
    }
}
