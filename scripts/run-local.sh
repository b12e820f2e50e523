#!/usr/bin/env bash
# `make run`: the whole thanos-rs stack on this machine, on a filesystem bucket under .run/.
#
# Starts two Prometheus replicas (external labels replica="a" and replica="b") scraping themselves
# and every thanos-rs component, then each thanos-rs component whose binary the workspace builds.
# One log file per component in .run/logs/; Ctrl-C stops everything. A second run reuses .run/.
# THANOS_RS_OBJSTORE_CONFIG_FILE=path points the stack at another bucket (S3, Azure, ...) given as
# Thanos objstore YAML.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run="$root/.run"
logs="$run/logs"
mkdir -p "$logs" "$run/bucket"

if ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "make run: installing Debian's prometheus package"
    [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "make run: Prometheus is missing: install it (Debian/Ubuntu: sudo apt-get install prometheus) and run again" >&2
    exit 1
  fi
fi

echo "make run: building release binaries"
cargo build --release --workspace --bins --quiet
bin="$root/target/release"

objstore_file=${THANOS_RS_OBJSTORE_CONFIG_FILE:-$run/objstore.yml}
if [ -z "${THANOS_RS_OBJSTORE_CONFIG_FILE:-}" ]; then
  printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$run/bucket" >"$objstore_file"
fi

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "make run: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

start() { # name, command...
  local name=$1
  shift
  "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
}

# Components: name, http port, grpc port, binary, flags. Only those whose binary exists start.
components=()
add_component() { [ -x "$bin/$4" ] && components+=("$*") || true; }
add_component sidecar-a 10902 10901 sidecar --prometheus.url=http://127.0.0.1:9090 --tsdb.path="$run/prometheus-a" --objstore.config-file="$objstore_file"
add_component sidecar-b 10912 10911 sidecar --prometheus.url=http://127.0.0.1:9091 --tsdb.path="$run/prometheus-b" --objstore.config-file="$objstore_file"
add_component store-gateway 10922 10921 store-gateway --data-dir="$run/store-gateway" --objstore.config-file="$objstore_file"
add_component querier 10932 10931 querier --query.replica-label=replica --endpoint=127.0.0.1:10901 --endpoint=127.0.0.1:10911 --endpoint=127.0.0.1:10921
add_component frontend 10942 0 frontend --query-frontend.downstream-url=http://127.0.0.1:10932
add_component compactor 10952 0 compactor --wait --data-dir="$run/compactor" --objstore.config-file="$objstore_file"
add_component bucket-web 10962 0 bucket-web --objstore.config-file="$objstore_file"

targets=""
for entry in "${components[@]}"; do
  set -- $entry
  targets+="\"127.0.0.1:$2\", "
done

for replica in a b; do
  port=9090
  [ "$replica" = b ] && port=9091
  dir="$run/prometheus-$replica"
  mkdir -p "$dir"
  cat >"$run/prometheus-$replica.yml" <<YAML
global:
  scrape_interval: 15s
  external_labels:
    cluster: local
    replica: "$replica"
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$port"]
  - job_name: thanos-rs
    static_configs:
      - targets: [${targets%, }]
YAML
  start "prometheus-$replica" prometheus --config.file="$run/prometheus-$replica.yml" \
    --storage.tsdb.path="$dir" --storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h \
    --storage.tsdb.retention.time=1d --web.listen-address=127.0.0.1:$port --web.enable-lifecycle
done

for entry in "${components[@]}"; do
  set -- $entry
  name=$1 http=$2 grpc=$3 binary=$4
  shift 4
  flags=(--http-address=127.0.0.1:$http)
  [ "$grpc" != 0 ] && flags+=(--grpc-address=127.0.0.1:$grpc)
  start "$name" "$bin/$binary" "${flags[@]}" "$@"
done

echo
echo "thanos-rs is running (Ctrl-C stops everything):"
echo "  Prometheus replica a   http://127.0.0.1:9090"
echo "  Prometheus replica b   http://127.0.0.1:9091"
for entry in "${components[@]}"; do
  set -- $entry
  printf '  %-22s http://127.0.0.1:%s%s\n' "$1" "$2" "$([ "$3" != 0 ] && echo "  gRPC 127.0.0.1:$3")"
done
[ ${#components[@]} -eq 0 ] && echo "  (no thanos-rs services are built yet; the block tool is $bin/tsdb-block)"
echo "  bucket                 $objstore_file"
echo "  logs                   $logs/"
wait -n "${pids[@]}" || true
echo "make run: a component exited; see $logs/" >&2
