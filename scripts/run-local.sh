#!/usr/bin/env bash
# `make run`: the whole thanos-rs stack on this machine, on a filesystem bucket under .run/.
#
# Starts two Prometheus replicas (external labels replica="a" and replica="b") scraping themselves
# and every thanos-rs component, a sidecar for each, the store gateway and the querier
# (--query.replica-label=replica), plus each further thanos-rs component whose crate the workspace
# has (frontend, compactor, bucket-web). Everything listens on 127.0.0.1. One log file per
# component in .run/logs/; Ctrl-C stops everything. A second run reuses .run/ (Prometheus data,
# the shipper state, the bucket).
# THANOS_RS_OBJSTORE_CONFIG_FILE=path points the stack at another bucket (S3, Azure, ...) given as
# Thanos objstore YAML.
set -euo pipefail
started=$SECONDS
root=$(cd "$(dirname "$0")/.." && pwd)
run="$root/.run"
logs="$run/logs"
mkdir -p "$logs" "$run/bucket"

# A missing Prometheus is installed (Debian's package) while the binaries build: the two overlap.
install_pid=""
if ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "make run: installing Debian's prometheus package in the background ($logs/install-prometheus.log)"
    [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) \
      >"$logs/install-prometheus.log" 2>&1 &
    install_pid=$!
  else
    echo "make run: Prometheus is missing: install it (Debian/Ubuntu: sudo apt-get install prometheus) and run again" >&2
    exit 1
  fi
fi

# Components: name, http port, grpc port (0: none), binary, flags. A component starts when its
# crate exists in the workspace; the flags are the crates' real `Config` flags.
components=()
add_component() { [ -f "$root/crates/$4/src/main.rs" ] && components+=("$*") || true; }

objstore_file=${THANOS_RS_OBJSTORE_CONFIG_FILE:-$run/objstore.yml}
if [ -z "${THANOS_RS_OBJSTORE_CONFIG_FILE:-}" ]; then
  printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$run/bucket" >"$objstore_file"
elif [ ! -r "$objstore_file" ]; then
  echo "make run: THANOS_RS_OBJSTORE_CONFIG_FILE=$objstore_file is not a readable file" >&2
  exit 1
fi

add_component sidecar-a 10902 10901 sidecar --prometheus.url=http://127.0.0.1:9090 --tsdb.path="$run/prometheus-a" --objstore.config-file="$objstore_file"
add_component sidecar-b 10912 10911 sidecar --prometheus.url=http://127.0.0.1:9091 --tsdb.path="$run/prometheus-b" --objstore.config-file="$objstore_file"
add_component store-gateway 10922 10921 store-gateway --data-dir="$run/store-gateway" --objstore.config-file="$objstore_file" --sync-block-duration=1m
add_component querier 10932 10931 querier --query.replica-label=replica --endpoint=127.0.0.1:10901 --endpoint=127.0.0.1:10911 --endpoint=127.0.0.1:10921
add_component frontend 10942 0 frontend --query-frontend.downstream-url=http://127.0.0.1:10932
add_component compactor 10952 0 compactor --wait --data-dir="$run/compactor" --objstore.config-file="$objstore_file"
add_component bucket-web 10962 0 bucket-web --objstore.config-file="$objstore_file"

# Every port must be free: say which one is taken instead of failing later in a log file.
ports=(9090 9091)
for entry in "${components[@]}"; do
  set -- $entry
  ports+=("$2")
  [ "$3" != 0 ] && ports+=("$3")
done
for port in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "make run: port 127.0.0.1:$port is already in use (another make run?); stop that program first" >&2
    exit 1
  fi
done

packages=()
for entry in "${components[@]}"; do
  set -- $entry
  [[ " ${packages[*]} " == *" -p $4 "* ]] || packages+=(-p "$4")
done
# The `local` profile (root Cargo.toml): optimised (opt-level 1) without debug info, much quicker
# to build from a clean clone than `release`.
echo "make run: building the binaries (cargo profile local, ${#components[@]} components)"
build_started=$SECONDS
cargo build --profile local --bins --quiet "${packages[@]}"
echo "make run: built in $((SECONDS - build_started)) s"
if [ -n "$install_pid" ] && ! wait "$install_pid"; then
  echo "make run: installing prometheus failed; see $logs/install-prometheus.log" >&2
  exit 1
fi
bin="${CARGO_TARGET_DIR:-$root/target}/local"

pids=()
stopping=0
stop() {
  trap - INT TERM EXIT
  stopping=1
  echo
  echo "make run: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Give everything 20 s to exit cleanly, then kill what is left.
  for _ in $(seq 200); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "make run: stopped; data kept in $run"
}
trap stop INT TERM EXIT

# Each component runs in its own session, so Ctrl-C reaches only this script, whose trap stops
# everything in order (SIGTERM, then SIGKILL after 20 s).
launcher=()
command -v setsid >/dev/null && launcher=(setsid)
start() { # name, command...
  local name=$1
  shift
  "${launcher[@]}" "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
}

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
  flags=(--http-address=127.0.0.1:$http --http-grace-period=5s)
  [ "$grpc" != 0 ] && flags+=(--grpc-address=127.0.0.1:$grpc --grpc-grace-period=5s)
  start "$name" "$bin/$binary" "${flags[@]}" "$@"
done

# Wait (at most 2 minutes) until every component answers /-/ready.
ready_urls=(http://127.0.0.1:9090/-/ready http://127.0.0.1:9091/-/ready)
for entry in "${components[@]}"; do
  set -- $entry
  ready_urls+=("http://127.0.0.1:$2/-/ready")
done
for url in "${ready_urls[@]}"; do
  for _ in $(seq 1200); do
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && break
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "make run: a component exited during start-up; see $logs/" >&2; exit 1; }
    done
    sleep 0.1
  done
  curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null || echo "make run: $url is not ready yet; see $logs/" >&2
done

# The querier answers a query through every store (an empty `up` until the first scrape).
answer=""
for entry in "${components[@]}"; do
  set -- $entry
  [ "$1" = querier ] || continue
  for _ in $(seq 100); do
    if body=$(curl -fsS --max-time 5 "http://127.0.0.1:$2/api/v1/query?query=up" 2>/dev/null) &&
      [[ "$body" == *'"status":"success"'* ]]; then
      answer="; the querier answers queries"
      break
    fi
    sleep 0.2
  done
  [ -n "$answer" ] || echo "make run: the querier does not answer /api/v1/query yet; see $logs/querier.log" >&2
done

echo
echo "thanos-rs is running, ready $((SECONDS - started)) s after make run started$answer (Ctrl-C stops everything):"
echo "  Prometheus replica a   http://127.0.0.1:9090"
echo "  Prometheus replica b   http://127.0.0.1:9091"
for entry in "${components[@]}"; do
  set -- $entry
  printf '  %-22s http://127.0.0.1:%s%s\n' "$1" "$2" "$([ "$3" != 0 ] && echo "  gRPC 127.0.0.1:$3")"
done
[ ${#components[@]} -eq 0 ] && echo "  (no thanos-rs services in the workspace yet)"
echo "  bucket                 $objstore_file"
echo "  logs                   $logs/"
for entry in "${components[@]}"; do
  set -- $entry
  [ "$1" = querier ] && echo "  try: curl 'http://127.0.0.1:$2/api/v1/query?query=up'"
done
wait -n "${pids[@]}" || true
[ "$stopping" = 1 ] || echo "make run: a component exited; see $logs/" >&2
