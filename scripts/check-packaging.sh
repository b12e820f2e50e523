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
#   6. Each check is shown to fail on a broken input (schema type error, missing bucket config,
#      unknown flag, bad flag value, SRV port name missing, SRV name of a ClusterIP Service,
#      querier that exits at start, invalid manifest), so a check that silently passes everything is caught.
#
# Usage: scripts/check-packaging.sh [BIN_DIR]   (default: $THANOS_RS_BIN_DIR or target/debug;
#        build first: cargo build -p sidecar -p store-gateway -p querier)
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
flags() { "$kv_python" "$work/flags.py" "$@"; }
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
  step "value set $name: helm lint --strict, template, kubernetes-validate --strict -k $k8s_version, flags"
  helm lint --strict "$umbrella" -f "$values" >"$work/lint.out" 2>&1 ||
    { cat "$work/lint.out" >&2; fail "helm lint with $name"; }
  helm template thanos-rs "$umbrella" --namespace observability -f "$values" >"$work/$name.yaml"
  kubernetes-validate --strict --quiet -k "$k8s_version" "$work/$name.yaml"
  flags "$bin_dir" "$work/$name.yaml"
done
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
sed 's/^  replicas: 1$/  replicas: "one"/' "$work/default.yaml" >"$work/bad-manifest.yaml"
cmp -s "$work/default.yaml" "$work/bad-manifest.yaml" && fail "could not break the default manifest for the negative check"
expect_failure "invalid manifest (kubernetes-validate)" "replicas" \
  kubernetes-validate --strict --quiet -k "$k8s_version" "$work/bad-manifest.yaml"

step "all packaging checks passed"
