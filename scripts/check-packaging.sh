#!/usr/bin/env bash
# Checks the packaging: docker/Dockerfile and the Helm charts under charts/, offline.
#
#   1. hadolint docker/Dockerfile; every image a chart names (thanos-rs/<binary>) is a Dockerfile
#      target with ENTRYPOINT /usr/bin/<binary>.
#   2. helm dependency build + helm lint --strict --with-subcharts of the umbrella chart, helm lint
#      --strict of it with each value set in charts/thanos-rs/ci/, and of every subchart on its own.
#   3. helm template of each value set, validated with kubernetes-validate --strict (Kubernetes
#      $K8S_VERSION schemas; CRDs such as ServiceMonitor have none and only warn).
#   4. Every flag the rendered workloads pass to a thanos-rs binary is accepted by that binary
#      (BIN_DIR/<binary>: listed in its --help, and `<binary> <args...> --help` exits 0), and the
#      sidecar accepts the Prometheus Operator's command line
#      (charts/thanos-rs/examples/prometheus-operator-sidecar-args.txt). Each querier --endpoint
#      naming a Service of the same release matches it: `dnssrv+_<port>._tcp.<svc>...` needs a
#      headless Service with a port named <port>, `dns+<svc>...:<port>` one publishing <port>.
#   5. The querier, run with the rendered args of each umbrella value set (listen ports swapped
#      for free ones, still in the `:port` form), answers /-/healthy and looks up each of its
#      dns+/dnssrv+/dnssrvnoa+ endpoints.
#   6. One compactor per bucket: the compactor chart on its own and each value set that enables
#      it (compactor.enabled) render exactly one compactor, a Deployment of 1 replica with
#      strategy Recreate running --wait, its --data-dir on a PVC (or emptyDir), its objstore.yml
#      from a Secret, probes on /-/healthy and /-/ready and a Service on its http port; the
#      other value sets render none.
#   7. Each check is shown to fail on a broken input (schema type error, missing bucket config,
#      unknown flag, bad flag value, SRV port name missing, SRV name of a ClusterIP Service,
#      querier that exits at start, invalid manifest; for the compactor: a replicaCount value, a
#      malformed retention, a rolling update, a querier flag, a second replica, no --wait), so a
#      check that silently passes everything is caught.
#
# Usage: scripts/check-packaging.sh [BIN_DIR]   (default: $THANOS_RS_BIN_DIR or target/debug;
#        build first: cargo build -p sidecar -p store-gateway -p querier -p compactor)
# Needs helm, kubernetes-validate and hadolint: scripts/install-test-deps.sh installs them into
# .tools/bin. A missing tool or binary is a failure, never a skip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.tools/bin:$PATH"
bin_dir=$(cd "${1:-${THANOS_RS_BIN_DIR:-$root/target/debug}}" && pwd)
k8s_version="${K8S_VERSION:-1.30.0}"
umbrella="$root/charts/thanos-rs"

fail() { echo "check-packaging: FAIL: $*" >&2; exit 1; }
step() { echo "check-packaging: $*"; }

for tool in helm kubernetes-validate hadolint; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/install-test-deps.sh"
done
# PyYAML for the flag check: the interpreter of the kubernetes-validate install (it depends on it).
kv_python=$(head -1 "$(readlink -f "$(command -v kubernetes-validate)")" | sed -n 's/^#!//p')
[ -x "$kv_python" ] && "$kv_python" -c 'import yaml' 2>/dev/null ||
  fail "no Python with PyYAML next to kubernetes-validate (scripts/install-test-deps.sh)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/flags.py" <<'PY'
"""Checks that every flag a rendered chart passes to a thanos-rs binary is one that binary accepts,
and that each --endpoint naming a Service of the same manifest matches that Service.

Usage: check-packaging-flags.py BIN_DIR RENDERED.yaml [--args-file ARGS.txt --binary NAME]

For each container of a workload (Deployment, StatefulSet, DaemonSet, Job, CronJob) whose image
repository ends in `thanos-rs/<binary>`, the binary `BIN_DIR/<binary>`:
  1. must list every `--flag` of the container's args in its `--help` output, and
  2. must accept the whole argument list: `<binary> <args...> --help` exits 0 (clap checks each
     flag and parses each value before it reaches `--help`, so an unknown flag, a bad value or a
     repeated single-value flag fails here).
With --args-file (one argument a line, `#` comments), the file's arguments are checked with step 2
only, and flags missing from `--help` are listed (the sidecar logs and ignores the Prometheus
Operator's flags it does not implement).
Exits 1 on any failure, and also when a rendered file holds no thanos-rs container at all.
"""

import re
import subprocess
import sys
from pathlib import Path

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
HELP_FLAG = re.compile(r"^\s+(?:-\w, )?--([A-Za-z0-9][A-Za-z0-9._-]*)")
_help_cache: dict[str, set[str]] = {}


def help_flags(binary: Path) -> set[str]:
    key = str(binary)
    if key not in _help_cache:
        out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise SystemExit(f"{binary} --help exited {out.returncode}: {out.stderr.strip()}")
        flags = {m.group(1) for line in out.stdout.splitlines() if (m := HELP_FLAG.match(line))}
        if len(flags) < 5:
            raise SystemExit(f"{binary} --help lists only {sorted(flags)}: cannot parse it")
        _help_cache[key] = flags
    return _help_cache[key]


def flag_names(args: list[str]) -> list[str]:
    return [a[2:].split("=", 1)[0] for a in args if a.startswith("--") and len(a) > 2]


def run_with_help(binary: Path, args: list[str]) -> str | None:
    out = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return f"exit {out.returncode}: {' '.join(out.stderr.split())}"
    return None


def workload_containers(doc: dict):
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    pod = ((spec.get("template") or {}).get("spec")) or {}
    yield from pod.get("initContainers") or []
    yield from pod.get("containers") or []


def binary_of(image: str) -> str | None:
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: repository.rfind(":")]
    parts = repository.split("/")
    if len(parts) >= 2 and parts[-2] == "thanos-rs":
        return parts[-1]
    return None


SRV_ENDPOINT = re.compile(r"^dnssrv(?:noa)?\+_([^.]+)\._tcp\.([^.]+)\.([^.]+)\.svc\.(.+)$")
DNS_ENDPOINT = re.compile(r"^dns\+([^.:]+)\.([^.:]+)\.svc\.[^:]+:(\d+)$")


def rendered_services(docs: list) -> dict[tuple[str, str], dict]:
    return {
        (d["metadata"]["name"], str(d["metadata"].get("namespace", "default"))): d.get("spec") or {}
        for d in docs
        if isinstance(d, dict) and d.get("kind") == "Service"
    }


def check_endpoints(name: str, args: list[str], services: dict) -> int:
    """An endpoint naming a Service of the same release must match it: `dnssrv+_<port>._tcp.<svc>`
    needs a headless Service with a port named <port> (else there is no SRV name, or only one
    target), `dns+<svc>...:<port>` a headless Service publishing that port. Services not rendered
    here (e.g. kube-prometheus-stack's) are only listed."""
    failures = 0
    for arg in args:
        if not arg.startswith("--endpoint="):
            continue
        endpoint = arg.split("=", 1)[1]
        if m := SRV_ENDPOINT.match(endpoint):
            port_name, svc, namespace = m.group(1), m.group(2), m.group(3)
            spec = services.get((svc, namespace))
            if spec is None:
                print(f"ok   {name}: {endpoint}: Service {namespace}/{svc} is not in this release")
                continue
            port_names = [p.get("name") for p in spec.get("ports") or []]
            if port_name not in port_names:
                print(f"FAIL {name}: {endpoint}: Service {namespace}/{svc} has no port named {port_name} ({port_names})")
                failures += 1
            elif spec.get("clusterIP") != "None":
                print(f"FAIL {name}: {endpoint}: Service {namespace}/{svc} is not headless (one SRV target, not one per pod)")
                failures += 1
            else:
                print(f"ok   {name}: {endpoint}: headless Service {namespace}/{svc} has port {port_name}")
        elif m := DNS_ENDPOINT.match(endpoint):
            svc, namespace, port = m.group(1), m.group(2), int(m.group(3))
            spec = services.get((svc, namespace))
            if spec is None:
                print(f"ok   {name}: {endpoint}: Service {namespace}/{svc} is not in this release")
                continue
            ports = [p.get("port") for p in spec.get("ports") or []]
            if port not in ports or spec.get("clusterIP") != "None":
                print(f"FAIL {name}: {endpoint}: Service {namespace}/{svc} is not headless with port {port} ({ports})")
                failures += 1
            else:
                print(f"ok   {name}: {endpoint}: headless Service {namespace}/{svc} has port {port}")
    return failures


def check_rendered(bin_dir: Path, rendered: Path) -> int:
    failures = 0
    checked = 0
    docs = list(yaml.safe_load_all(rendered.read_text()))
    services = rendered_services(docs)
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") not in WORKLOADS:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        for container in workload_containers(doc):
            component = binary_of(str(container.get("image", "")))
            if component is None:
                continue
            binary = bin_dir / component
            if not binary.is_file():
                print(f"FAIL {name}: image {container['image']} but no binary {binary}")
                failures += 1
                continue
            args = [str(a) for a in (container.get("command") or [])[1:]] + [
                str(a) for a in container.get("args") or []
            ]
            known = help_flags(binary)
            unknown = [f for f in flag_names(args) if f not in known]
            if unknown:
                print(f"FAIL {name}: {component} --help has no {', '.join('--' + f for f in unknown)}")
                failures += 1
            error = run_with_help(binary, args)
            if error:
                print(f"FAIL {name}: `{component} <args> --help` refused the rendered args: {error}")
                failures += 1
            failures += check_endpoints(name, args, services)
            checked += 1
            print(f"ok   {name}: {component} accepts {len(flag_names(args))} flags: {' '.join(args)}")
    if checked == 0:
        print(f"FAIL {rendered}: no thanos-rs container rendered")
        failures += 1
    return failures


def check_args_file(bin_dir: Path, args_file: Path, component: str) -> int:
    args = [
        line.strip()
        for line in args_file.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    binary = bin_dir / component
    if not binary.is_file():
        print(f"FAIL {args_file}: no binary {binary}")
        return 1
    error = run_with_help(binary, args)
    if error:
        print(f"FAIL {args_file}: `{component} <args> --help` refused them: {error}")
        return 1
    known = help_flags(binary)
    ignored = [f for f in flag_names(args) if f not in known]
    print(
        f"ok   {args_file.name}: {component} accepts {len(args)} args"
        + (f" (logged and ignored: {', '.join('--' + f for f in ignored)})" if ignored else "")
    )
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[2] == "--args-file":
        return 1 if check_args_file(Path(argv[1]), Path(argv[3]), argv[4]) else 0
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    return 1 if check_rendered(Path(argv[1]), Path(argv[2])) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
PY
cat >"$work/start.py" <<'PY'
"""Starts the querier with the args a chart rendered and checks that it serves and resolves them.

Usage: check-packaging-start.py BIN_DIR RENDERED.yaml

The querier Deployment's args are run as they are, except that the ports of --grpc-address and
--http-address (kept in their `:port` form) are swapped for free ones. The querier must answer
/-/healthy on the HTTP port within 30 s and count a DNS lookup for each dns+/dnssrv+/dnssrvnoa+
endpoint (thanos_query_endpoints_dns_lookups_total; the cluster names do not resolve here, a
failed lookup is logged and kept, not fatal) without exiting.
"""

import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except Exception as error:  # connection refused while starting
        return 0, str(error)


def main(bin_dir: Path, rendered: Path) -> int:
    args = None
    for doc in yaml.safe_load_all(rendered.read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if str(container.get("image", "")).split("@")[0].rsplit(":", 1)[0].endswith("thanos-rs/querier"):
                    args = [str(a) for a in container.get("args") or []]
    if args is None:
        print(f"FAIL {rendered}: no querier Deployment")
        return 1
    http, grpc = free_port(), free_port()
    swapped = []
    for arg in args:
        for flag, port in (("--http-address=", http), ("--grpc-address=", grpc)):
            if arg.startswith(flag):
                if not re.fullmatch(re.escape(flag) + r":\d+", arg):
                    print(f"FAIL {arg}: not in the :port form")
                    return 1
                arg = f"{flag}:{port}"
        swapped.append(arg)
    dns_endpoints = [a for a in args if re.match(r"--endpoint=(dns|dnssrv|dnssrvnoa)\+", a)]
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([bin_dir / "querier", *swapped], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        lookups = 0
        while time.monotonic() < deadline and process.poll() is None:
            status, _ = get(f"http://127.0.0.1:{http}/-/healthy")
            if status == 200:
                _, metrics = get(f"http://127.0.0.1:{http}/metrics")
                m = re.search(r"^thanos_query_endpoints_dns_lookups_total (\d+)", metrics, re.M)
                lookups = int(m.group(1)) if m else 0
                if lookups >= len(dns_endpoints):
                    break
            time.sleep(0.3)
        exited = process.poll()
    finally:
        process.terminate()
        process.wait(timeout=10)
    log.seek(0)
    output = log.read().decode(errors="replace")
    if exited is not None or status != 200 or lookups < len(dns_endpoints):
        print(f"FAIL querier {' '.join(swapped)}: exited {exited}, /-/healthy {status}, "
              f"{lookups} DNS lookups for {len(dns_endpoints)} DNS endpoints\n{output}")
        return 1
    print(f"ok   querier started with the rendered args (ports :{grpc}, :{http}): /-/healthy 200, "
          f"{lookups} DNS lookups for {' '.join(dns_endpoints)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
PY
cat >"$work/compactor.py" <<'PY'
"""Checks the compactor workloads of a rendered manifest: one compactor per bucket.

Usage: check-packaging-compactor.py RENDERED.yaml EXPECTED_COUNT

The manifest must hold EXPECTED_COUNT (0 or 1) workloads whose image is thanos-rs/compactor. Each
must be a Deployment of one replica with strategy Recreate (never two compactors on the bucket,
even during an update) whose container runs `--wait` (the last of --wait/--no-wait) and has:
  - its --data-dir mounted from a PersistentVolumeClaim (one rendered here, or an existing one
    when none is) or an emptyDir;
  - the directory of --objstore.config-file mounted from a Secret holding that file name;
  - liveness on /-/healthy and readiness on /-/ready, both on the port named http, which is the
    port of --http-address;
  - a Service of the manifest selecting its pods with a port whose targetPort is http.
Exits 1 on any failure.
"""

import sys
from pathlib import Path

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


def is_compactor(image: str) -> bool:
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository[: repository.rfind(":")]
    return repository.endswith("thanos-rs/compactor")


def flag_value(args: list[str], flag: str) -> str | None:
    value = None
    for arg in args:
        if arg.startswith(f"--{flag}="):
            value = arg.split("=", 1)[1]
    return value


def waits(args: list[str]) -> bool:
    state = False
    for arg in args:
        if arg in ("--wait", "-w"):
            state = True
        elif arg == "--no-wait":
            state = False
    return state


def mount_of(container: dict, path: str) -> dict | None:
    for mount in container.get("volumeMounts") or []:
        if mount.get("mountPath", "").rstrip("/") == path.rstrip("/"):
            return mount
    return None


def check_workload(doc: dict, docs: list, problems: list[str]) -> str:
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    namespace = doc["metadata"].get("namespace", "default")
    spec = doc.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    pod_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    container = next(c for c in pod.get("containers") or [] if is_compactor(str(c.get("image", ""))))
    args = [str(a) for a in container.get("args") or []]
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}

    def fail(message: str) -> None:
        problems.append(f"FAIL {name}: {message}")

    if doc["kind"] != "Deployment":
        fail(f"is a {doc['kind']}, not a Deployment")
    if spec.get("replicas") != 1:
        fail(f"replicas {spec.get('replicas')}, not 1: only one compactor may run against a bucket")
    strategy = (spec.get("strategy") or {}).get("type")
    if strategy != "Recreate":
        fail(f"strategy {strategy}, not Recreate: an update would run two compactors at once")
    if not waits(args):
        fail("does not run --wait (it would exit after one pass and be restarted)")

    data_dir = flag_value(args, "data-dir")
    data = "no --data-dir"
    if data_dir is None:
        fail("has no --data-dir")
    elif (mount := mount_of(container, data_dir)) is None:
        fail(f"--data-dir={data_dir} is not a mounted volume (the root filesystem is read-only)")
    else:
        volume = volumes.get(mount["name"]) or {}
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            rendered = any(
                d.get("kind") == "PersistentVolumeClaim"
                and d["metadata"]["name"] == claim
                and d["metadata"].get("namespace", "default") == namespace
                for d in docs
            )
            data = f"--data-dir={data_dir} on PVC {claim} ({'rendered' if rendered else 'existing'})"
        elif "emptyDir" in volume:
            data = f"--data-dir={data_dir} on an emptyDir"
        else:
            fail(f"--data-dir={data_dir} is on volume {mount['name']}, neither a PVC nor an emptyDir")

    objstore = flag_value(args, "objstore.config-file")
    secret = "no objstore"
    if objstore is None:
        fail("has no --objstore.config-file")
    else:
        directory, _, file_name = objstore.rpartition("/")
        mount = mount_of(container, directory)
        volume = volumes.get(mount["name"]) if mount else None
        source = (volume or {}).get("secret")
        items = [i.get("path") for i in (source or {}).get("items") or []]
        if source is None:
            fail(f"{directory} (of --objstore.config-file) is not mounted from a Secret")
        elif items and file_name not in items:
            fail(f"Secret {source.get('secretName')} mounted at {directory} has no item {file_name} ({items})")
        else:
            secret = f"{file_name} from Secret {source.get('secretName')}"

    http_address = flag_value(args, "http-address") or ""
    http_port = http_address.rsplit(":", 1)[-1]
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    if str(ports.get("http")) != http_port:
        fail(f"container port http {ports.get('http')} is not the port of --http-address={http_address}")
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") != "http":
            fail(f"{probe} is {get or 'missing'}, not GET {path} on port http")

    services = [
        d["metadata"]["name"]
        for d in docs
        if d.get("kind") == "Service"
        and d["metadata"].get("namespace", "default") == namespace
        and (d.get("spec") or {}).get("selector")
        and all(pod_labels.get(k) == v for k, v in d["spec"]["selector"].items())
        and any(p.get("targetPort") == "http" for p in d["spec"].get("ports") or [])
    ]
    if not services:
        fail("no Service selects its pods on port http")

    return (
        f"ok   {name}: single compactor: replicas 1, strategy Recreate, --wait, {data}, {secret}, "
        f"probes /-/healthy and /-/ready on :{http_port}, Service {', '.join(services)} port http"
    )


def main(rendered: Path, expected: int) -> int:
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if isinstance(d, dict)]
    workloads = [
        d
        for d in docs
        if d.get("kind") in WORKLOADS
        and any(
            is_compactor(str(c.get("image", "")))
            for c in ((((d.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [])
        )
    ]
    if len(workloads) != expected:
        names = [f"{d['kind']}/{d['metadata']['name']}" for d in workloads]
        print(f"FAIL {rendered.name}: {len(workloads)} compactor workloads {names}, expected {expected}")
        return 1
    if expected == 0:
        print(f"ok   {rendered.name}: no compactor rendered")
        return 0
    problems: list[str] = []
    lines = [check_workload(d, docs, problems) for d in workloads]
    if problems:
        print("\n".join(problems))
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in ("0", "1"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
PY
flags() { "$kv_python" "$work/flags.py" "$@"; }
compactor_check() { "$kv_python" "$work/compactor.py" "$@"; }
# 1 when the value set $1 enables the compactor (compactor.enabled; the umbrella's default is off).
compactor_enabled() {
  "$kv_python" -c 'import sys, yaml; v = yaml.safe_load(open(sys.argv[1])) or {}; print(1 if (v.get("compactor") or {}).get("enabled") else 0)' "$1"
}
# Runs "$@" expecting a failure whose output contains $expect.
expect_failure() {
  local what=$1 expect=$2
  shift 2
  if "$@" >"$work/negative.out" 2>&1; then
    cat "$work/negative.out" >&2
    fail "$what: the check passed a broken input"
  fi
  grep -qF -- "$expect" "$work/negative.out" || {
    cat "$work/negative.out" >&2
    fail "$what: failed without saying '$expect'"
  }
  step "ok   $what: refused ($expect)"
}

step "helm $(helm version --short), $(kubernetes-validate --version 2>&1 | head -1 | sed 's/^/kubernetes-validate /'), $(hadolint --version), binaries from $bin_dir"

# 1. Dockerfile.
step "hadolint docker/Dockerfile"
hadolint "$root/docker/Dockerfile"
targets=$(sed -n 's/^FROM runtime AS \([a-z0-9-]*\).*/\1/p' "$root/docker/Dockerfile")
[ -n "$targets" ] || fail "docker/Dockerfile has no 'FROM runtime AS <component>' stage"
built=$(sed -n 's/^ARG BINARIES="\(.*\)"/\1/p' "$root/docker/Dockerfile")
for target in $targets; do
  grep -qx "ENTRYPOINT \[\"/usr/bin/$target\"\]" "$root/docker/Dockerfile" ||
    fail "Dockerfile stage $target has no ENTRYPOINT [\"/usr/bin/$target\"]"
  [[ " $built " == *" $target "* ]] || fail "Dockerfile stage $target is not in ARG BINARIES ($built)"
done
for repository in $(grep -h '^  repository: thanos-rs/' "$root"/charts/*/values.yaml | awk '{print $2}'); do
  [[ " $(echo $targets) " == *" ${repository#thanos-rs/} "* ]] ||
    fail "a chart uses image $repository but docker/Dockerfile has no target ${repository#thanos-rs/}"
done
step "ok   Dockerfile targets: $(echo $targets)"

# 2 + 3 + 4. Charts.
step "helm dependency build charts/thanos-rs"
helm dependency build "$umbrella" >/dev/null
for chart in "$root"/charts/*/; do
  chart=${chart%/}
  [ -f "$chart/Chart.yaml" ] && [ "$chart" != "$umbrella" ] || continue
  step "helm lint --strict charts/$(basename "$chart") (standalone)"
  helm lint --strict "$chart" --set-string global.objstoreConfig='type: FILESYSTEM' >"$work/lint.out" 2>&1 ||
    { cat "$work/lint.out" >&2; fail "helm lint charts/$(basename "$chart")"; }
  helm template check "$chart" --set-string global.objstoreConfig='type: FILESYSTEM' >"$work/standalone.yaml"
  kubernetes-validate --strict --quiet -k "$k8s_version" "$work/standalone.yaml"
  flags "$bin_dir" "$work/standalone.yaml"
  if [ "$(basename "$chart")" = compactor ]; then
    cp "$work/standalone.yaml" "$work/compactor-standalone.yaml"
    compactor_check "$work/compactor-standalone.yaml" 1
  fi
done
# --with-subcharts lints each subchart with the values given to the umbrella as they are (not its
# own block), so it runs with a global value only; each value set is then linted through the
# umbrella, which checks every subchart's block against that subchart's values.schema.json.
step "helm lint --strict --with-subcharts charts/thanos-rs"
helm lint --strict --with-subcharts "$umbrella" --set-string global.objstoreConfig='type: FILESYSTEM' >"$work/lint.out" 2>&1 ||
  { cat "$work/lint.out" >&2; fail "helm lint --with-subcharts charts/thanos-rs"; }
value_sets=("$umbrella"/ci/*-values.yaml)
[ -f "${value_sets[0]}" ] || fail "no value sets in charts/thanos-rs/ci/"
for values in "${value_sets[@]}"; do
  name=$(basename "$values" -values.yaml)
  step "value set $name: helm lint --strict, template, kubernetes-validate --strict -k $k8s_version, flags, compactor"
  helm lint --strict "$umbrella" -f "$values" >"$work/lint.out" 2>&1 ||
    { cat "$work/lint.out" >&2; fail "helm lint with $name"; }
  helm template thanos-rs "$umbrella" --namespace observability -f "$values" >"$work/$name.yaml"
  kubernetes-validate --strict --quiet -k "$k8s_version" "$work/$name.yaml"
  flags "$bin_dir" "$work/$name.yaml"
  compactor_check "$work/$name.yaml" "$(compactor_enabled "$values")"
done
grep -q '^compactor:' "$umbrella/values.yaml" && [ "$(compactor_enabled "$umbrella/values.yaml")" = 0 ] ||
  fail "charts/thanos-rs/values.yaml must list compactor with enabled: false (one compactor per bucket)"
[ "$(compactor_enabled "$umbrella/ci/full-values.yaml")" = 1 ] || fail "ci/full-values.yaml must enable the compactor"
for name in default full query-only; do
  step "value set $name: querier started with its rendered args"
  "$kv_python" "$work/start.py" "$bin_dir" "$work/$name.yaml"
done
step "sidecar with the Prometheus Operator's args"
flags "$bin_dir" --args-file "$umbrella/examples/prometheus-operator-sidecar-args.txt" sidecar

# 6. Each check fails on a broken input.
default_values="$umbrella/ci/default-values.yaml"
expect_failure "schema (helm lint)" "replicaCount: Invalid type" \
  helm lint --strict "$umbrella" -f "$default_values" --set query.replicaCount=abc
expect_failure "schema typo (helm lint)" "Additional property replicaLabels is not allowed" \
  helm lint --strict "$umbrella" -f "$default_values" --set 'query.replicaLabels[0]=x'
expect_failure "bucket config required (helm template)" "set objstoreConfig or existingObjstoreSecret" \
  helm template thanos-rs "$umbrella"
helm template thanos-rs "$umbrella" -f "$default_values" --set 'query.extraFlags[0]=--no-such-flag=1' >"$work/bad-flag.yaml"
expect_failure "unknown flag (flag check)" "querier --help has no --no-such-flag" flags "$bin_dir" "$work/bad-flag.yaml"
helm template thanos-rs "$umbrella" -f "$default_values" --set 'storegateway.extraFlags[0]=--sync-block-duration=soon' >"$work/bad-value.yaml"
expect_failure "bad flag value (flag check)" "refused the rendered args" flags "$bin_dir" "$work/bad-value.yaml"
helm template thanos-rs "$umbrella" --namespace observability -f "$default_values" \
  --set 'query.stores[0]=dnssrv+_grpcx._tcp.thanos-rs-storegateway-headless.observability.svc.cluster.local' >"$work/bad-srv.yaml"
expect_failure "SRV name without a port of that name (endpoint check)" "has no port named grpcx" flags "$bin_dir" "$work/bad-srv.yaml"
helm template thanos-rs "$umbrella" --namespace observability -f "$default_values" \
  --set 'query.stores[0]=dnssrv+_grpc._tcp.thanos-rs-storegateway.observability.svc.cluster.local' >"$work/not-headless.yaml"
expect_failure "SRV name of a ClusterIP Service (endpoint check)" "is not headless" flags "$bin_dir" "$work/not-headless.yaml"
helm template thanos-rs "$umbrella" -f "$default_values" --set 'query.extraFlags[0]=--http.config=/nonexistent' >"$work/no-start.yaml"
expect_failure "querier that exits (start check)" "exited 1" "$kv_python" "$work/start.py" "$bin_dir" "$work/no-start.yaml"
expect_failure "compactor has no replicaCount (helm lint)" "Additional property replicaCount is not allowed" \
  helm lint --strict "$umbrella" -f "$default_values" --set compactor.enabled=true --set compactor.replicaCount=2
expect_failure "compactor retention (helm lint)" "retentionResolutionRaw: Does not match pattern" \
  helm lint --strict "$umbrella" -f "$default_values" --set compactor.enabled=true --set compactor.retentionResolutionRaw=30days
expect_failure "compactor rolling update (helm template)" "updateStrategy.type must be Recreate" \
  helm template thanos-rs "$umbrella" -f "$default_values" --set compactor.enabled=true --set compactor.updateStrategy.type=RollingUpdate
helm template thanos-rs "$umbrella" -f "$default_values" --set compactor.enabled=true \
  --set 'compactor.extraFlags[0]=--query.timeout=5m' >"$work/compactor-querier-flag.yaml"
expect_failure "querier flag given to the compactor (flag check)" "compactor --help has no --query.timeout" \
  flags "$bin_dir" "$work/compactor-querier-flag.yaml"
sed 's/^  replicas: 1$/  replicas: 2/' "$work/compactor-standalone.yaml" >"$work/compactor-two.yaml"
cmp -s "$work/compactor-standalone.yaml" "$work/compactor-two.yaml" && fail "could not break the compactor manifest for the negative check"
expect_failure "two compactor replicas (compactor check)" "replicas 2, not 1" compactor_check "$work/compactor-two.yaml" 1
helm template thanos-rs "$umbrella" -f "$default_values" --set compactor.enabled=true \
  --set 'compactor.args={--data-dir=/data,--objstore.config-file=/conf/objstore/objstore.yml,--http-address=:10902}' >"$work/compactor-no-wait.yaml"
expect_failure "compactor without --wait (compactor check)" "does not run --wait" compactor_check "$work/compactor-no-wait.yaml" 1
sed 's/^  replicas: 1$/  replicas: "one"/' "$work/default.yaml" >"$work/bad-manifest.yaml"
cmp -s "$work/default.yaml" "$work/bad-manifest.yaml" && fail "could not break the default manifest for the negative check"
expect_failure "invalid manifest (kubernetes-validate)" "replicas" \
  kubernetes-validate --strict --quiet -k "$k8s_version" "$work/bad-manifest.yaml"

step "all packaging checks passed"
