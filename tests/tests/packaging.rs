//! The packaging checks (`scripts/check-packaging.sh`): the Dockerfile passes hadolint, the Helm
//! charts lint, render and validate against the Kubernetes schemas with every value set, and each
//! flag the charts render for a component is accepted by that component's binary built here, each
//! `dnssrv+` endpoint names a headless Service port of the release, and the querier starts with
//! the rendered args; the compactor is rendered as one pod per bucket (a single-replica
//! `Recreate` Deployment running `--wait`, its data dir on a PVC) only where it is enabled.
//! helm, kubernetes-validate and hadolint come from `scripts/install-test-deps.sh`; a missing one
//! fails the test.

use std::path::PathBuf;
use std::process::Command;

/// The service binaries the charts and the Prometheus Operator's sidecar args are checked against.
const BINARIES: [&str; 4] = ["sidecar", "store-gateway", "querier", "compactor"];

#[test]
fn charts_and_dockerfile_pass_the_packaging_checks() {
    for program in ["helm", "kubernetes-validate", "hadolint"] {
        test_harness::require_program(program).unwrap();
    }
    // One folder holding every binary, wherever the target folder put each.
    let bin_dir = tempfile::tempdir().unwrap();
    for name in BINARIES {
        let path: PathBuf = e2e::binary(name).unwrap();
        std::os::unix::fs::symlink(&path, bin_dir.path().join(name)).unwrap();
    }
    let root = test_harness::process::workspace_root();
    let output = Command::new("bash")
        .arg(root.join("scripts/check-packaging.sh"))
        .arg(bin_dir.path())
        .current_dir(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        output.status.success(),
        "check-packaging.sh failed:\n{report}"
    );

    assert!(stdout.contains("all packaging checks passed"), "{report}");
    // Each rendered workload of each value set (3 in ci/ today) and of each standalone subchart:
    // at least 3 + 1 querier and 2 + 1 store gateway workloads.
    let querier_checks = stdout.matches(": querier accepts ").count();
    let store_gateway_checks = stdout.matches(": store-gateway accepts ").count();
    assert!(
        querier_checks >= 4,
        "querier workloads checked: {querier_checks}\n{report}"
    );
    assert!(
        store_gateway_checks >= 3,
        "store-gateway workloads checked: {store_gateway_checks}\n{report}"
    );
    assert!(
        stdout.contains("prometheus-operator-sidecar-args.txt: sidecar accepts 14 args"),
        "{report}"
    );
    // The querier finds the store gateway through the SRV name of its headless Service's grpc
    // port, and the charts render Go's `:port` listen addresses.
    let srv = "--endpoint=dnssrv+_grpc._tcp.thanos-rs-storegateway-headless.observability.svc.cluster.local";
    assert!(stdout.contains(srv), "{report}");
    assert!(
        stdout.contains(
            ": headless Service observability/thanos-rs-storegateway-headless has port grpc"
        ),
        "{report}"
    );
    assert!(
        stdout.contains("--grpc-address=:10901 --http-address=:10902"),
        "{report}"
    );
    // The querier started with the rendered args of each value set and looked its DNS names up.
    assert_eq!(
        stdout
            .matches("ok   querier started with the rendered args")
            .count(),
        3,
        "{report}"
    );
    // The compactor: rendered by its chart on its own and by ci/full-values.yaml (the only value
    // set enabling it), its flags accepted by the compactor binary, with the chart's retention
    // values and `--wait` before the extra flags; a single Recreate pod with the chart's PVC.
    let compactor_checks = stdout.matches(": compactor accepts ").count();
    assert_eq!(
        compactor_checks, 2,
        "compactor workloads checked: {compactor_checks}\n{report}"
    );
    assert!(
        stdout.contains(
            "--retention.resolution-raw=90d --retention.resolution-5m=180d \
             --retention.resolution-1h=0d --consistency-delay=1h --wait \
             --deduplication.replica-label=prometheus_replica"
        ),
        "{report}"
    );
    assert!(
        stdout.contains(
            "ok   Deployment/thanos-rs-compactor: single compactor: replicas 1, strategy \
             Recreate, --wait, --data-dir=/data on PVC thanos-rs-compactor (rendered), objstore.yml \
             from Secret thanos-objstore, probes /-/healthy and /-/ready on :10902, Service \
             thanos-rs-compactor port http"
        ),
        "{report}"
    );
    assert!(
        stdout.contains(
            "ok   Deployment/check-compactor: single compactor: replicas 1, strategy Recreate"
        ),
        "{report}"
    );
    // Off by default: the value sets that do not enable it render no compactor.
    assert!(
        stdout.contains("ok   default.yaml: no compactor rendered"),
        "{report}"
    );
    assert!(
        stdout.contains("ok   query-only.yaml: no compactor rendered"),
        "{report}"
    );
    // The negative checks ran and each refused its broken input (6 of them the compactor's).
    assert_eq!(stdout.matches(": refused (").count(), 15, "{report}");
}
