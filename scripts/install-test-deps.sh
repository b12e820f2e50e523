#!/usr/bin/env bash
# Installs every real program the tests start, from the registries this project may use:
# Debian (prometheus/promtool, memcached, redis), PyPI (moto's S3 server), npm (Azurite) and
# crates.io (s3s-fs, an S3 server that checks request signatures). Idempotent: what is present is
# kept. Programs from PyPI, npm and crates.io go to a per-user cache
# ($THANOS_RS_TOOLS_DIR, default ~/.cache/thanos-rs/tools) that the checkout's .tools links to, so a
# fresh clone on the same machine does not build them again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -e "$root/.tools" ] || [ -L "$root/.tools" ]; then
  cache="${THANOS_RS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/thanos-rs/tools}"
  mkdir -p "$cache"
  ln -sfn "$cache" "$root/.tools"
fi
mkdir -p "$root/.tools"
# The real path: venv scripts and links record it, and it must outlive this checkout.
tools=$(cd "$root/.tools" && pwd -P)
mkdir -p "$tools/bin"

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v memcached >/dev/null || need_apt+=(memcached)
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    echo "install-test-deps: need root (or sudo) to install: ${need_apt[*]}" >&2
    exit 1
  fi
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  # Debian's packages start their services on install; tests start their own on free ports.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
    $sudo_cmd chmod +x /usr/sbin/policy-rc.d
  fi
  echo "install-test-deps: apt-get install ${need_apt[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$tools/venv/bin/moto_server" ]; then
  echo "install-test-deps: pip install moto[server]"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q 'moto[server]==5.*'
fi
ln -sf "$tools/venv/bin/moto_server" "$tools/bin/moto_server"

if [ ! -x "$tools/node_modules/.bin/azurite-blob" ]; then
  echo "install-test-deps: npm install azurite"
  # `npm init -y` would derive the package name from the folder (".tools"), which npm rejects.
  [ -f "$tools/package.json" ] || printf '{"name":"thanos-rs-test-tools","private":true}\n' >"$tools/package.json"
  (cd "$tools" && npm install --silent --no-audit --no-fund azurite@3)
fi
ln -sf "$tools/node_modules/.bin/azurite-blob" "$tools/bin/azurite-blob"

if [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "install-test-deps: cargo install s3s-fs"
  cargo install --quiet --locked --root "$tools/s3s" s3s-fs --version 0.14.1 --features binary
  ln -sf "$tools/s3s/bin/s3s-fs" "$tools/bin/s3s-fs"
fi
echo "install-test-deps: ready (prometheus, promtool, memcached, redis-server, moto_server, azurite-blob, s3s-fs)"
